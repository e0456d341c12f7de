//! The wall clock the box reads, in one place: Unix milliseconds and seconds. The code that
//! decides by time (signature freshness, link expiry, record ages) takes `now` as an argument
//! read from here, so its tests pass the time they need instead of waiting for it.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    now_ms() / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_and_milliseconds_agree() {
        let ms = now_ms();
        assert!(ms > 1_600_000_000_000, "the clock reads Unix time in ms");
        assert!(unix_now().abs_diff(ms / 1000) <= 1);
    }
}
