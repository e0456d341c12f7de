//! Values many sections share: URLs, addresses, address blocks, files, sizes, durations.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

use super::{Checker, Step};

pub(super) fn http_url(s: &str) -> Result<reqwest::Url, String> {
    let u = reqwest::Url::parse(s.trim()).map_err(|e| format!("`{s}` is not a URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!(
            "`{s}`: only http:// and https:// URLs are supported"
        ));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{s}` has no host"));
    }
    Ok(u)
}

pub(super) fn socket_addr(
    c: &mut Checker<'_>,
    at: &[Step<'_>],
    v: Option<String>,
) -> Option<SocketAddr> {
    let Some(v) = v else {
        c.problem(at, "missing: an address such as \"0.0.0.0:8080\"");
        return None;
    };
    match v.trim().parse() {
        Ok(a) => Some(a),
        Err(_) => {
            c.problem(
                at,
                format!("`{v}` is not IP:port (e.g. \"0.0.0.0:8080\" or \"[::]:8080\")"),
            );
            None
        }
    }
}

pub(super) fn nets(
    c: &mut Checker<'_>,
    at: &[Step<'_>],
    v: Option<Vec<String>>,
) -> Option<Vec<IpNet>> {
    let v = v?;
    let mut out = Vec::new();
    for (i, s) in v.iter().enumerate() {
        let mut p = at.to_vec();
        p.push(Step::Index(i));
        match parse_net(s) {
            Some(n) => out.push(n),
            None => c.problem(
                &p,
                format!("`{s}` is not an address or CIDR block (e.g. \"10.0.0.0/8\", \"::1\")"),
            ),
        }
    }
    Some(out)
}

/// A CIDR block, or a bare address meaning just that host. IPv4-mapped IPv6 blocks are turned
/// into IPv4, as peers are.
pub(super) fn parse_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    let net = match s.parse::<IpNet>() {
        Ok(n) => n,
        Err(_) => IpNet::from(s.parse::<IpAddr>().ok()?),
    };
    Some(match net {
        IpNet::V6(v6) => match v6.addr().to_ipv4_mapped() {
            Some(v4) if v6.prefix_len() >= 96 => {
                IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96).ok()?
            }
            _ => net.trunc(),
        },
        IpNet::V4(_) => net.trunc(),
    })
}

/// A private key (or secret) file that group or others can read is a warning: anyone on the
/// machine could impersonate the box.
pub(super) fn private_key_permissions(c: &mut Checker<'_>, at: &[Step<'_>], path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(path) {
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                c.warn(
                    at,
                    format!(
                        "{} is readable by group or others (mode {mode:03o}): chmod 600 it, owned by the user the service runs as",
                        path.display()
                    ),
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (c, at, path);
}

pub(super) fn existing_file(c: &mut Checker<'_>, at: &[Step<'_>], p: &str) -> Option<PathBuf> {
    let path = c.resolve(p);
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => Some(path),
        Ok(_) => {
            c.problem(at, format!("{} is not a file", path.display()));
            None
        }
        Err(e) => {
            c.problem(at, format!("cannot read {}: {e}", path.display()));
            None
        }
    }
}

pub(super) fn millis(
    c: &mut Checker<'_>,
    at: &[Step<'_>],
    v: Option<u64>,
    default: u64,
) -> Duration {
    let ms = v.unwrap_or(default);
    if ms == 0 || ms > 3_600_000 {
        c.problem(at, format!("{ms} ms: must be between 1 and 3600000"));
        return Duration::from_millis(default);
    }
    Duration::from_millis(ms)
}

pub(super) fn size(c: &mut Checker<'_>, at: &[Step<'_>], v: Option<&str>, default: u64) -> u64 {
    match v {
        None => default,
        Some(s) => parse_size(s).unwrap_or_else(|e| {
            c.problem(at, e);
            default
        }),
    }
}

pub(super) fn duration(
    c: &mut Checker<'_>,
    at: &[Step<'_>],
    v: Option<&str>,
    default: Duration,
) -> Duration {
    match v {
        None => default,
        Some(s) => parse_duration(s).unwrap_or_else(|e| {
            c.problem(at, e);
            default
        }),
    }
}

/// Parses sizes such as `1MiB`, `512KiB`, `1GiB`, `1MB`, `1000` (bytes).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|ch: char| !(ch.is_ascii_digit() || ch == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size (e.g. \"1MiB\", \"512KiB\", \"2GiB\")"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        _ => return Err(format!("`{s}`: unknown unit (use B, KiB, MiB, GiB, TiB)")),
    };
    let v = n * mult as f64;
    if !(1.0..=(1u64 << 50) as f64).contains(&v) {
        return Err(format!("`{s}` is out of range"));
    }
    Ok(v as u64)
}

/// Parses durations such as `500ms`, `30s`, `5m`, `1h`, `7d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|ch: char| !ch.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (e.g. \"30s\", \"1h\", \"7d\")"))?;
    let ms: u64 = match unit.trim() {
        "ms" => 1,
        "s" | "" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("`{s}`: unknown unit (use ms, s, m, h, d)")),
    };
    let total = n
        .checked_mul(ms)
        .filter(|&v| v > 0 && v <= 366 * 86_400_000)
        .ok_or_else(|| format!("`{s}` is out of range"))?;
    Ok(Duration::from_millis(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("1.5 KiB"), Ok(1536));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("1 parsec").is_err());
        assert!(parse_size("0").is_err());
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("1y").is_err());
        assert!(parse_duration("99999999999999999d").is_err());
    }

    #[test]
    fn nets_accept_hosts_and_fold_mapped_ipv4() {
        assert_eq!(parse_net("10.1.2.3"), "10.1.2.3/32".parse().ok());
        assert_eq!(parse_net("10.1.2.3/8"), "10.0.0.0/8".parse().ok());
        assert_eq!(parse_net("::ffff:10.0.0.0/104"), "10.0.0.0/8".parse().ok());
        assert_eq!(parse_net("::1"), "::1/128".parse().ok());
        assert_eq!(parse_net("nonsense"), None);
    }
}
