//! The text of a call's one log line, written without tracing's field visitor.
//!
//! The line reads exactly as `tracing::info!(direction, peer = %ip, route, outcome, status,
//! latency_ms, request_id = %id, "call")` reads through tracing-subscriber's default format:
//! `call direction="his_to_cloud" peer=10.0.0.5 route="prefront/…" outcome="ok" status=200
//! latency_ms=1.2 request_id=…`. Operators' scripts read these lines, so the text is
//! pinned by the tests below against tracing's own output. Writing it as the event's message
//! instead of as fields saves the visitor's per-field `Debug` escaping of every string and the
//! padding logic of `Ipv4Addr`'s `Display`: about 10,000 instructions of a relayed call's
//! 140,000 (bench/RESULTS.md, issue 20).

use std::fmt::{self, Write};
use std::net::IpAddr;

/// One call's line; `Display` writes it.
pub struct CallLine<'a> {
    pub direction: &'a str,
    pub peer: IpAddr,
    pub route: &'a str,
    pub outcome: &'a str,
    pub status: u16,
    /// Left out of the lines that do not time the call.
    pub latency_ms: Option<f64>,
    pub request_id: &'a str,
}

impl fmt::Display for CallLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("call direction=")?;
        quoted(f, self.direction)?;
        f.write_str(" peer=")?;
        match self.peer {
            IpAddr::V4(v4) => {
                let [a, b, c, d] = v4.octets();
                decimal(f, a.into())?;
                for octet in [b, c, d] {
                    f.write_char('.')?;
                    decimal(f, octet.into())?;
                }
            }
            IpAddr::V6(v6) => write!(f, "{v6}")?,
        }
        f.write_str(" route=")?;
        quoted(f, self.route)?;
        f.write_str(" outcome=")?;
        quoted(f, self.outcome)?;
        f.write_str(" status=")?;
        decimal(f, self.status.into())?;
        if let Some(ms) = self.latency_ms {
            // tracing records an f64 with `Debug` (`1.0`, not `1`).
            write!(f, " latency_ms={ms:?}")?;
        }
        f.write_str(" request_id=")?;
        f.write_str(self.request_id)
    }
}

/// A string as `Debug` writes it: quoted, escaped. Plain printable ASCII without `"` or `\`
/// (every catalogue route, kind and request id) is written as it is, the rest through `Debug`.
fn quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    if s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        f.write_char('"')?;
        f.write_str(s)?;
        f.write_char('"')
    } else {
        write!(f, "{s:?}")
    }
}

/// A number in decimal, without the formatter's width and padding machinery.
fn decimal(f: &mut fmt::Formatter<'_>, mut n: u32) -> fmt::Result {
    let mut buf = [0u8; 10];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    f.write_str(std::str::from_utf8(&buf[i..]).unwrap_or("?"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
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

    /// The line as the fields-based event wrote it, and as `CallLine` writes it.
    fn both(line: &CallLine<'_>) -> (String, String) {
        let old = through_tracing(|| match line.latency_ms {
            Some(latency_ms) => tracing::info!(
                direction = line.direction,
                peer = %line.peer,
                route = line.route,
                outcome = line.outcome,
                status = line.status,
                latency_ms,
                request_id = %line.request_id,
                "call"
            ),
            None => tracing::info!(
                direction = line.direction,
                peer = %line.peer,
                route = line.route,
                outcome = line.outcome,
                status = line.status,
                request_id = %line.request_id,
                "call"
            ),
        });
        let new = through_tracing(|| tracing::info!("{line}"));
        (old, new)
    }

    #[test]
    fn the_line_reads_exactly_as_tracings_fields_did() {
        let cases = [
            CallLine {
                direction: "his_to_cloud",
                peer: "127.0.0.1".parse().expect("ip"),
                route: "prefront/patient/getPatientInfo",
                outcome: "ok",
                status: 200,
                latency_ms: Some(1.2),
                request_id: "0c7d2a9e4f1b3a55",
            },
            CallLine {
                direction: "cloud_to_his",
                peer: "10.255.0.9".parse().expect("ip"),
                route: "hospital.interface.createCard",
                outcome: "upstream-timeout",
                status: 200,
                latency_ms: Some(3000.0),
                request_id: "rid-1.x_2",
            },
            CallLine {
                direction: "his_to_cloud",
                peer: "::1".parse().expect("ip"),
                route: "say \"hi\"\\ 挂号\n\u{7f}",
                outcome: "not-found",
                status: 404,
                latency_ms: None,
                request_id: "r",
            },
            CallLine {
                direction: "his_to_cloud",
                peer: "2001:db8::8a2e:370:7334".parse().expect("ip"),
                route: "",
                outcome: "ok",
                status: 0,
                latency_ms: Some(0.0),
                request_id: "",
            },
        ];
        for line in &cases {
            let (old, new) = both(line);
            assert!(old.starts_with("call direction="), "{old}");
            assert_eq!(new, old);
        }
    }

    #[test]
    fn numbers_are_written_in_full() {
        let mut s = String::new();
        for n in [0u32, 7, 10, 255, 65_535, u32::MAX] {
            s.clear();
            struct D(u32);
            impl fmt::Display for D {
                fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    decimal(f, self.0)
                }
            }
            write!(s, "{}", D(n)).expect("write");
            assert_eq!(s, n.to_string());
        }
    }
}
