//! Who may call a listener. Decided on the TCP peer address; `X-Forwarded-For` is believed only
//! from the listener's `trusted_proxies`, read right to left, so a caller cannot forge its way in.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::HeaderMap;
use ipnet::IpNet;

/// What the TCP peer alone already tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerAccess {
    Allowed,
    Denied,
    /// A trusted proxy: each request's `X-Forwarded-For` decides.
    Proxy,
}

/// A listener's allowlist and its rate-limited denial log.
#[derive(Debug)]
pub struct AccessPolicy {
    allow: Vec<IpNet>,
    trusted_proxies: Vec<IpNet>,
    /// Last time a denial was logged per caller, so a scanner cannot flood the log.
    last_logged: Mutex<HashMap<IpAddr, Instant>>,
}

/// Denials of one caller are logged at most once per this interval.
const LOG_EVERY: Duration = Duration::from_secs(60);
/// Bound on remembered callers; the map is cleared past it (a burst of logs, never unbounded memory).
const MAX_REMEMBERED: usize = 10_000;

impl AccessPolicy {
    pub fn new(allow: Vec<IpNet>, trusted_proxies: Vec<IpNet>) -> AccessPolicy {
        AccessPolicy {
            allow,
            trusted_proxies,
            last_logged: Mutex::new(HashMap::new()),
        }
    }

    /// Decides on a new connection's peer. IPv4-mapped IPv6 peers count as IPv4.
    pub fn on_connect(&self, peer: IpAddr) -> PeerAccess {
        let peer = peer.to_canonical();
        if contains(&self.trusted_proxies, peer) {
            PeerAccess::Proxy
        } else if contains(&self.allow, peer) {
            PeerAccess::Allowed
        } else {
            PeerAccess::Denied
        }
    }

    /// The client behind a trusted proxy: the rightmost `X-Forwarded-For` entry that is not
    /// itself a trusted proxy (all headers, in order). An unparsable entry ends the walk and is
    /// the client, which no allowlist contains.
    pub fn client_behind_proxy(&self, peer: IpAddr, headers: &HeaderMap) -> Option<IpAddr> {
        let mut chain: Vec<&str> = Vec::new();
        for v in headers.get_all("x-forwarded-for") {
            let Ok(s) = v.to_str() else { return None };
            chain.extend(s.split(',').map(str::trim).filter(|s| !s.is_empty()));
        }
        let mut client = peer.to_canonical();
        for entry in chain.iter().rev() {
            let ip = parse_forwarded_ip(entry)?.to_canonical();
            client = ip;
            if !contains(&self.trusted_proxies, ip) {
                break;
            }
        }
        Some(client)
    }

    /// Whether the client (after any proxy resolution) is allowed.
    pub fn allows(&self, client: IpAddr) -> bool {
        contains(&self.allow, client.to_canonical())
    }

    /// True when a denial of `who` should be logged now.
    pub fn should_log_denial(&self, who: IpAddr) -> bool {
        let Ok(mut map) = self.last_logged.lock() else {
            return true;
        };
        let now = Instant::now();
        if map.len() >= MAX_REMEMBERED {
            map.clear();
        }
        match map.get(&who) {
            Some(t) if now.duration_since(*t) < LOG_EVERY => false,
            _ => {
                map.insert(who, now);
                true
            }
        }
    }
}

fn contains(nets: &[IpNet], ip: IpAddr) -> bool {
    nets.iter().any(|n| n.contains(&ip))
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:443`.
fn parse_forwarded_ip(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Some(sa.ip());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(v: &[&str]) -> Vec<IpNet> {
        v.iter().filter_map(|s| s.parse().ok()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn peers_are_matched_ipv4_and_ipv6_and_mapped() {
        let p = AccessPolicy::new(nets(&["10.0.0.0/8", "fd00::/8"]), vec![]);
        assert_eq!(p.on_connect(ip("10.2.3.4")), PeerAccess::Allowed);
        assert_eq!(p.on_connect(ip("::ffff:10.2.3.4")), PeerAccess::Allowed);
        assert_eq!(p.on_connect(ip("fd12::1")), PeerAccess::Allowed);
        assert_eq!(p.on_connect(ip("11.0.0.1")), PeerAccess::Denied);
        assert_eq!(p.on_connect(ip("::ffff:11.0.0.1")), PeerAccess::Denied);
    }

    #[test]
    fn forwarded_for_is_read_right_to_left_past_trusted_proxies() {
        let p = AccessPolicy::new(nets(&["10.0.0.0/8"]), nets(&["192.168.1.0/24"]));
        let mut h = HeaderMap::new();
        // The leftmost entry is whatever the caller wrote; only the proxy's own append counts.
        h.append(
            "x-forwarded-for",
            "10.9.9.9, 203.0.113.7".parse().expect("hv"),
        );
        h.append("x-forwarded-for", "192.168.1.20".parse().expect("hv"));
        let c = p.client_behind_proxy(ip("192.168.1.10"), &h);
        assert_eq!(c, Some(ip("203.0.113.7")));
        assert!(!p.allows(ip("203.0.113.7")));
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", "garbage".parse().expect("hv"));
        assert_eq!(p.client_behind_proxy(ip("192.168.1.10"), &h), None);
        assert_eq!(
            p.client_behind_proxy(ip("192.168.1.10"), &HeaderMap::new()),
            Some(ip("192.168.1.10"))
        );
    }

    #[test]
    fn denials_are_logged_once_a_minute_per_caller() {
        let p = AccessPolicy::new(vec![], vec![]);
        assert!(p.should_log_denial(ip("1.2.3.4")));
        assert!(!p.should_log_denial(ip("1.2.3.4")));
        assert!(p.should_log_denial(ip("1.2.3.5")));
    }
}
