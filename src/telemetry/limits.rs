//! Limit hits (connections, header and body sizes, timeouts, client names) are logged once a
//! minute per caller and limit, not once per request: a flood must not become a log flood. Every
//! hit is still counted in the metrics.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const EVERY: Duration = Duration::from_secs(60);
/// Callers remembered before the memory is reset (a spoofed-source flood cannot grow it).
const REMEMBER: usize = 10_000;

static LAST: Mutex<Option<HashMap<(&'static str, IpAddr), Instant>>> = Mutex::new(None);

/// Counts a hit of `limit` by `peer` on `listener`, and says whether to log it now.
pub fn hit(listener: &'static str, limit: &'static str, peer: IpAddr) -> bool {
    crate::telemetry::metrics::limit_hit(listener, limit);
    once_a_minute(limit, peer)
}

/// Whether to log `what` for `peer` now (once a minute per caller), without counting it as a
/// limit hit: for refusals the call's own metric already counts.
pub fn once_a_minute(what: &'static str, peer: IpAddr) -> bool {
    let mut guard = LAST.lock().unwrap_or_else(|p| p.into_inner());
    let map = guard.get_or_insert_with(HashMap::new);
    if map.len() >= REMEMBER {
        map.clear();
    }
    let now = Instant::now();
    match map.get(&(what, peer)) {
        Some(t) if now.duration_since(*t) < EVERY => false,
        _ => {
            map.insert((what, peer), now);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_is_logged_once_a_minute_per_limit() {
        let a: IpAddr = [192, 0, 2, 1].into();
        let b: IpAddr = [192, 0, 2, 2].into();
        assert!(hit("his", "test-limit", a));
        assert!(!hit("his", "test-limit", a));
        assert!(hit("his", "test-other-limit", a));
        assert!(hit("his", "test-limit", b));
    }
}
