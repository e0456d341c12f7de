//! The values of a call's log line, written as tracing-subscriber's default format writes the
//! plain fields they replace, only cheaper.
//!
//! The line reads `call direction="his_to_cloud" peer=10.0.0.5 route="prefront/…"
//! outcome="ok" status=200 latency_ms=1.2 request_id=…`; operators' scripts read it, so the
//! tests below pin every value against tracing's own output for the field it replaces. What is
//! saved, per call line (bench/RESULTS.md, issue 20): `Debug` escaping every character of three
//! strings, `Ipv4Addr`'s `Display` going through the formatter's padding machinery, and `f64`'s
//! shortest-representation search. (Writing the whole line as the message costs more instead:
//! tracing escapes a message character by character.)

use std::fmt;
use std::net::IpAddr;

/// A string as `Debug` writes it: quoted, escaped. Plain printable ASCII without `"` or `\`
/// (every catalogue route, direction and outcome) is written as it is, the rest through `Debug`.
pub struct Quoted<'a>(pub &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        if s.bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
        {
            f.write_str("\"")?;
            f.write_str(s)?;
            f.write_str("\"")
        } else {
            write!(f, "{s:?}")
        }
    }
}

/// A caller's address, as `IpAddr`'s `Display` writes it; an IPv4 address octet by octet.
pub struct Peer(pub IpAddr);

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let IpAddr::V4(v4) = self.0 else {
            return self.0.fmt(f);
        };
        // "255.255.255.255" at most.
        let mut buf = [0u8; 15];
        let mut n = 0;
        for (i, octet) in v4.octets().into_iter().enumerate() {
            if i > 0 {
                buf[n] = b'.';
                n += 1;
            }
            if octet >= 100 {
                buf[n] = b'0' + octet / 100;
                n += 1;
            }
            if octet >= 10 {
                buf[n] = b'0' + octet / 10 % 10;
                n += 1;
            }
            buf[n] = b'0' + octet % 10;
            n += 1;
        }
        // Only ASCII digits and dots were written.
        f.write_str(std::str::from_utf8(&buf[..n]).map_err(|_| fmt::Error)?)
    }
}

/// A latency in tenths of a millisecond, as `Debug` writes the `f64` `tenths / 10` (`1.2`,
/// `3000.0`): below 2^53 tenths that is the decimal itself.
pub struct Tenths(pub u64);

impl Tenths {
    /// `seconds` rounded to a tenth of a millisecond, as the line always rounded it.
    pub fn of_seconds(seconds: f64) -> Tenths {
        // `as` saturates: a negative or NaN duration cannot come from `Instant::elapsed`.
        Tenths((seconds * 1000.0 * 10.0).round() as u64)
    }
}

impl fmt::Display for Tenths {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 >= 1 << 53 {
            return write!(f, "{:?}", self.0 as f64 / 10.0);
        }
        let mut buf = [b'0'; 20];
        let start = digits(self.0 / 10, &mut buf);
        f.write_str(std::str::from_utf8(&buf[start..]).map_err(|_| fmt::Error)?)?;
        f.write_str(".")?;
        let tenth = [b'0' + (self.0 % 10) as u8];
        f.write_str(std::str::from_utf8(&tenth).map_err(|_| fmt::Error)?)
    }
}

/// Writes the decimal digits of `n` at the end of `buf` (20 places hold any `u64`; what is left
/// of them stays as the caller filled it, `b'0'` for zero-padding) and returns where they start.
pub(super) fn digits(mut n: u64, buf: &mut [u8; 20]) -> usize {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return i;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::net::Ipv4Addr;
    use std::sync::{Arc, Mutex};

    /// What tracing-subscriber's default format writes for `event`, without time and level.
    fn through_tracing(event: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl io::Write for Sink {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.0.lock().map_err(|_| io::ErrorKind::Other)?.extend(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let out = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .with_target(false)
            .without_time()
            .with_level(false)
            .finish();
        tracing::subscriber::with_default(subscriber, event);
        let text = String::from_utf8(out.0.lock().expect("sink").clone()).expect("utf-8");
        text.trim_end().to_string()
    }

    #[test]
    fn the_line_reads_exactly_as_tracings_plain_fields_did() {
        let cases: [(&str, IpAddr, &str, &str, u16, f64, &str); 4] = [
            (
                "his_to_cloud",
                "127.0.0.1".parse().expect("ip"),
                "prefront/patient/getPatientInfo",
                "ok",
                200,
                0.0012,
                "0c7d2a9e4f1b3a55",
            ),
            (
                "cloud_to_his",
                "10.255.0.9".parse().expect("ip"),
                "hospital.interface.createCard",
                "upstream-timeout",
                200,
                3.0,
                "pf-0a0b0c0d-0000000042",
            ),
            (
                "his_to_cloud",
                "::1".parse().expect("ip"),
                "say \"hi\"\\ 挂号\n\u{7f}",
                "not-found",
                404,
                0.000_04,
                "r",
            ),
            (
                "his_to_cloud",
                "2001:db8::8a2e:370:7334".parse().expect("ip"),
                "",
                "ok",
                0,
                12_345.678_9,
                "",
            ),
        ];
        for (direction, peer, route, outcome, status, seconds, request_id) in cases {
            let latency_ms = (seconds * 1000.0 * 10.0).round() / 10.0;
            let old = through_tracing(|| {
                tracing::info!(
                    direction,
                    peer = %peer,
                    route,
                    outcome,
                    status,
                    latency_ms,
                    request_id = %request_id,
                    "call"
                )
            });
            let new = through_tracing(|| {
                tracing::info!(
                    direction = %Quoted(direction),
                    peer = %Peer(peer),
                    route = %Quoted(route),
                    outcome = %Quoted(outcome),
                    status,
                    latency_ms = %Tenths::of_seconds(seconds),
                    request_id = %request_id,
                    "call"
                )
            });
            assert!(old.starts_with("call direction="), "{old}");
            assert_eq!(new, old);
        }
    }

    #[test]
    fn a_peer_reads_as_ip_addrs_own_display() {
        for a in [0u8, 1, 9, 10, 99, 100, 127, 199, 200, 255] {
            for b in [0u8, 7, 42, 168, 255] {
                let ip = IpAddr::V4(Ipv4Addr::new(a, b, b.wrapping_mul(3), a ^ b));
                assert_eq!(Peer(ip).to_string(), ip.to_string());
            }
        }
        for text in [
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:10.0.0.1",
            "fe80::1",
        ] {
            let ip: IpAddr = text.parse().expect("ip");
            assert_eq!(Peer(ip).to_string(), ip.to_string());
        }
    }

    #[test]
    fn tenths_read_as_the_f64_debug_they_replace() {
        let mut t = 0u64;
        while t < 10_000_000 {
            assert_eq!(
                Tenths(t).to_string(),
                format!("{:?}", t as f64 / 10.0),
                "{t}"
            );
            t = t * 3 / 2 + 1;
        }
        for t in [
            0u64,
            1,
            9,
            10,
            11,
            99,
            100,
            12_345,
            999_999_999,
            (1 << 53) - 1,
            1 << 53,
        ] {
            assert_eq!(
                Tenths(t).to_string(),
                format!("{:?}", t as f64 / 10.0),
                "{t}"
            );
        }
    }
}
