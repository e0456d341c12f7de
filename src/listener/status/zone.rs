//! The machine's time zone and the local times the `/status` page shows, read with `jiff`.

use std::sync::OnceLock;

use jiff::tz::{Offset, TimeZone};
use jiff::Timestamp;

/// The machine's time zone: `TZ` if set (a zone name, a TZif file's path or a POSIX rule), else
/// `/etc/localtime`, read from the system's zoneinfo; on Windows the zone the OS reports, mapped
/// to its IANA name. Where none can be read (a bare container) times are UTC, and the page says
/// `+00:00`.
#[derive(Debug, Clone)]
pub(super) struct Zone(TimeZone);

impl Zone {
    /// The offset from UTC in force at Unix second `t`, in seconds. A time outside the years
    /// -9999..=9999 is taken at the nearest end of that range.
    pub(super) fn offset_at(&self, t: i64) -> i32 {
        let at = Timestamp::from_second(t).unwrap_or(if t < 0 {
            Timestamp::MIN
        } else {
            Timestamp::MAX
        });
        self.0.to_offset(at).seconds()
    }
}

/// Read once: the page shows the zone the process started in.
pub(super) fn local_zone() -> &'static Zone {
    static ZONE: OnceLock<Zone> = OnceLock::new();
    ZONE.get_or_init(|| Zone(TimeZone::try_system().unwrap_or(TimeZone::UTC)))
}

pub(super) fn unix_s(ms: u64) -> i64 {
    i64::try_from(ms / 1000).unwrap_or(i64::MAX)
}

/// Local date and time for Unix milliseconds at a UTC offset: (`2025-03-01 14:03:12`,
/// `2025-03-01T14:03:12+08:00`).
pub fn local_time(ms: u64, utc_offset_s: i32) -> (String, String) {
    // Out-of-range inputs (past the year 9999, an offset over 26 h) cannot come from a clock or
    // a certificate; they are shown at the end of the range rather than refused.
    let at = Timestamp::from_second(unix_s(ms)).unwrap_or(Timestamp::MAX);
    let offset = Offset::from_seconds(utc_offset_s).unwrap_or(if utc_offset_s < 0 {
        Offset::MIN
    } else {
        Offset::MAX
    });
    let t = offset.to_datetime(at);
    let (y, mo, d) = (t.year(), t.month(), t.day());
    let (h, mi, s) = (t.hour(), t.minute(), t.second());
    let date_time = format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}");
    let iso = format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{}",
        offset_text(offset.seconds())
    );
    (date_time, iso)
}

/// `+08:00`, `-03:30`, `+00:00`.
pub(super) fn offset_text(utc_offset_s: i32) -> String {
    let sign = if utc_offset_s < 0 { '-' } else { '+' };
    let a = utc_offset_s.unsigned_abs();
    format!("{sign}{:02}:{:02}", a / 3600, a / 60 % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(offset_s: i32) -> Zone {
        Zone(TimeZone::fixed(
            Offset::from_seconds(offset_s).expect("in range"),
        ))
    }

    /// Was a test of the hand-written POSIX `TZ` parser; jiff now reads the rule, and rules with
    /// daylight saving time are understood too.
    #[test]
    fn posix_rules_without_dst_give_their_offset() {
        let posix = |rule: &str| TimeZone::posix(rule).ok().map(Zone);
        let at = |rule: &str, t: i64| posix(rule).map(|z| z.offset_at(t));
        assert_eq!(at("CST-8", 0), Some(8 * 3600));
        assert_eq!(at("UTC0", 0), Some(0));
        assert_eq!(at("<+0330>-3:30", 0), Some(3 * 3600 + 1800));
        assert_eq!(at("EST5", 0), Some(-5 * 3600));
        // 2025-07-01 12:00 UTC is in New York's summer time; 2025-01-15 is not.
        assert_eq!(at("EST5EDT,M3.2.0,M11.1.0", 1_751_371_200), Some(-4 * 3600));
        assert_eq!(at("EST5EDT,M3.2.0,M11.1.0", 1_736_942_400), Some(-5 * 3600));
        assert!(posix("X-8").is_none());
    }

    /// A version 2 TZif file with the given transitions, types (offset, abbreviation) and footer.
    fn tzif(transitions: &[(i64, u8)], types: &[(i32, &str)], footer: &str) -> Vec<u8> {
        let chars: usize = types.iter().map(|(_, a)| a.len() + 1).sum();
        let header = |timecnt: usize, typecnt: usize| {
            let mut h = b"TZif2".to_vec();
            h.extend([0u8; 15]);
            for n in [0, 0, 0, timecnt, typecnt, chars] {
                h.extend(u32::try_from(n).unwrap().to_be_bytes());
            }
            h
        };
        let write_types = |out: &mut Vec<u8>| {
            let mut at = 0u8;
            for (o, abbr) in types {
                out.extend(o.to_be_bytes());
                out.extend([0u8, at]);
                at += u8::try_from(abbr.len() + 1).unwrap();
            }
            for (_, abbr) in types {
                out.extend(abbr.as_bytes());
                out.push(0);
            }
        };
        // Version 1 block: the same data with 32-bit times.
        let mut b = header(transitions.len(), types.len());
        for (t, _) in transitions {
            b.extend(i32::try_from(*t).unwrap().to_be_bytes());
        }
        b.extend(transitions.iter().map(|(_, i)| *i));
        write_types(&mut b);
        b.extend(header(transitions.len(), types.len()));
        for (t, _) in transitions {
            b.extend(t.to_be_bytes());
        }
        b.extend(transitions.iter().map(|(_, i)| *i));
        write_types(&mut b);
        b.extend(format!("\n{footer}\n").as_bytes());
        b
    }

    /// Was a test of the hand-written TZif parser; the same files are now read by jiff, which
    /// also checks that the last type's abbreviation matches the footer's (the hand-made files
    /// now carry one per type).
    #[test]
    fn tzif_files_give_the_offset_in_force() {
        let parse_tzif = |b: &[u8]| TimeZone::tzif("test", b).ok().map(Zone);
        let z = parse_tzif(&tzif(
            &[(-1_000, 1), (1_000, 2)],
            &[(29_143, "LMT"), (9 * 3600, "JST"), (8 * 3600, "CST")],
            "CST-8",
        ))
        .expect("parses");
        assert_eq!(z.offset_at(-5_000), 29_143, "before the first: type 0");
        assert_eq!(z.offset_at(0), 9 * 3600);
        assert_eq!(z.offset_at(1_000), 8 * 3600);
        assert_eq!(z.offset_at(2_000_000_000), 8 * 3600, "the footer rule");
        let dst = parse_tzif(&tzif(
            &[(0, 1)],
            &[(0, "LMT"), (3600, "CET")],
            "CET-1CEST,M3.5.0,M10.5.0/3",
        ))
        .expect("parses");
        assert_eq!(dst.offset_at(10), 3600, "the last transition");
        assert!(parse_tzif(b"not a tz file").is_none());
        assert_eq!(fixed(-3600).offset_at(0), -3600);
        assert_eq!(Zone(TimeZone::UTC).offset_at(0), 0);
        assert_eq!(fixed(3600).offset_at(i64::MAX), 3600, "past the year 9999");
        // The real file where the system has one.
        if let Ok(b) = std::fs::read("/usr/share/zoneinfo/Asia/Shanghai") {
            let z = parse_tzif(&b).expect("the system's Asia/Shanghai parses");
            assert_eq!(z.offset_at(1_740_809_592), 8 * 3600);
        }
    }

    #[test]
    fn local_times_past_the_year_9999_do_not_panic() {
        let (date_time, iso) = local_time(u64::MAX, 8 * 3600);
        assert!(date_time.starts_with("9999-12-3"), "{date_time}");
        assert!(iso.ends_with("+08:00"), "{iso}");
    }
}
