//! Reading the trail: newest first, each call with what later became of it. Reads segment files
//! only (never the writer's state), so it works the same with the gateway running or stopped.
//! Blocks on file reads: call it off the async runtime.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{segment_start, segments, Line};

/// What to look for. Every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub request_id: Option<String>,
    /// The business key as the catalogue spells it (`refundNo=RF-1`).
    pub key: Option<String>,
    pub route: Option<String>,
    /// Matches the call's outcome when it was answered or its current state (`delivered`,
    /// `dead-lettered`, `dropped`, `expired`), or `audit` for operators' actions.
    pub outcome: Option<String>,
    /// Unix milliseconds, inclusive.
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
    pub limit: usize,
}

/// Most entries one query returns.
pub const MAX_LIMIT: usize = 1000;
/// Later events held while reading backwards; past this the oldest calls show no history.
const MAX_PENDING: usize = 200_000;

/// One call (or one operator action) with what became of it: what `GET /api/trail` serves and
/// `prefront trail` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// RFC 3339, UTC.
    pub time: String,
    pub request_id: String,
    pub direction: String,
    pub route: String,
    pub peer: String,
    /// The current state: the answer's outcome, or what became of a buffered call since.
    pub outcome: String,
    pub status: u16,
    pub latency_ms: f64,
    pub key: Option<String>,
    pub message_id: Option<String>,
    /// The buffer's record id of a queued call (what `/api/queue/messages/ID` takes).
    pub id: Option<u64>,
    pub attempts: Option<u32>,
    pub delivered_at: Option<String>,
    pub answer_code: Option<String>,
    /// Every event, oldest first: `received`, then `queued`, `retry`, `delivered`, …
    pub history: Vec<Step>,
}

/// One event in a call's life.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub time: String,
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// `GET /api/trail`'s answer, `prefront trail --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrailView {
    pub entries: Vec<Entry>,
}

/// RFC 3339 in UTC for Unix milliseconds.
pub fn rfc3339(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map_or_else(|| ms.to_string(), |t| t.to_string())
}

/// A time as an operator writes it: RFC 3339 (`2026-12-06T08:00:00+08:00`) or an age before
/// `now_ms` (`30m`, `2h`, `7d`). `None` when it is neither.
pub fn parse_time(text: &str, now_ms: u64) -> Option<u64> {
    let text = text.trim();
    if let Ok(t) = text.parse::<jiff::Timestamp>() {
        return u64::try_from(t.as_millisecond()).ok();
    }
    let age = crate::config::parse_duration(text).ok()?;
    Some(now_ms.saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX)))
}

/// The entries that match `f`, newest first, at most `f.limit` (capped at `MAX_LIMIT`).
pub fn query(dir: &Path, f: &Filter) -> Vec<Entry> {
    let limit = f.limit.clamp(1, MAX_LIMIT);
    // A key is matched by its keyed hash: the trail never holds it in clear.
    let kh = match &f.key {
        Some(k) => match super::key_hash_in(dir, k) {
            Some(h) => Some(h),
            None => return Vec::new(),
        },
        None => None,
    };
    let f = &Filter {
        key: kh,
        ..f.clone()
    };
    let mut out = Vec::new();
    // Later events of calls not reached yet (reading backwards), by request id, newest first.
    let mut pending: HashMap<String, Vec<Line>> = HashMap::new();
    let mut pending_lines = 0usize;
    for (path, _) in segments(dir).iter().rev() {
        if f.until_ms
            .zip(segment_start(path))
            .is_some_and(|(until, start)| start > until.saturating_add(7 * 86_400_000))
        {
            // Starts more than a week after `until`: even updates there are too late to matter.
            continue;
        }
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        for raw in text.lines().rev() {
            // A line being written (or cut by a crash) does not parse and is skipped.
            let Ok(line) = serde_json::from_str::<Line>(raw) else {
                continue;
            };
            match line.ev.as_ref() {
                "call" => {
                    let later = pending.remove(&line.rid).unwrap_or_default();
                    pending_lines = pending_lines.saturating_sub(later.len());
                    if let Some(entry) = call_entry(f, line, later) {
                        out.push(entry);
                    }
                }
                "audit" => {
                    if let Some(entry) = audit_entry(f, &line) {
                        out.push(entry);
                    }
                }
                _ => {
                    let wanted = !line.rid.is_empty()
                        && f.request_id.as_ref().is_none_or(|r| *r == line.rid)
                        && f.key.as_ref().is_none_or(|k| line.kh.as_ref() == Some(k))
                        && f.route.as_ref().is_none_or(|r| *r == line.route);
                    if wanted && pending_lines < MAX_PENDING {
                        pending_lines += 1;
                        pending.entry(line.rid.clone()).or_default().push(line);
                    }
                }
            }
            if out.len() >= limit {
                return out;
            }
        }
        if f.since_ms
            .zip(segment_start(path))
            .is_some_and(|(since, start)| start < since)
        {
            break;
        }
    }
    out
}

fn in_window(f: &Filter, t: u64) -> bool {
    f.since_ms.is_none_or(|s| t >= s) && f.until_ms.is_none_or(|u| t <= u)
}

fn call_entry(f: &Filter, call: Line, later_newest_first: Vec<Line>) -> Option<Entry> {
    if !in_window(f, call.t)
        || f.request_id.as_ref().is_some_and(|r| *r != call.rid)
        || f.key.as_ref().is_some_and(|k| call.kh.as_ref() != Some(k))
        || f.route.as_ref().is_some_and(|r| *r != call.route)
    {
        return None;
    }
    let mut e = Entry {
        time: rfc3339(call.t),
        request_id: call.rid,
        direction: call.dir.into_owned(),
        route: call.route.into_owned(),
        peer: call.peer,
        outcome: call.out.to_string(),
        status: call.st,
        latency_ms: call.lat,
        key: call.key,
        message_id: call.mid,
        id: call.id,
        attempts: None,
        delivered_at: None,
        answer_code: None,
        history: vec![Step {
            time: rfc3339(call.t),
            event: "received".into(),
            detail: None,
        }],
    };
    if call.out != "ok" {
        e.history.push(Step {
            time: rfc3339(call.t),
            event: call.out.to_string(),
            detail: None,
        });
    }
    for l in later_newest_first.into_iter().rev() {
        if l.mid.is_some() {
            e.message_id = l.mid.clone();
        }
        if l.att.is_some() {
            e.attempts = l.att;
        }
        if l.ev == "requeued" && l.id.is_some() {
            // A retried message has a new id in its queue.
            e.id = l.id;
        }
        let state = match l.ev.as_ref() {
            "delivered" => {
                e.delivered_at = Some(rfc3339(l.t));
                e.answer_code = l.code.clone();
                Some("delivered")
            }
            "dead" => Some("dead-lettered"),
            "dropped" => Some("dropped"),
            "expired" => Some("expired"),
            "requeued" => Some("queued"),
            _ => None,
        };
        if let Some(s) = state {
            e.outcome = s.to_string();
        }
        e.history.push(Step {
            time: rfc3339(l.t),
            event: l.ev.into_owned(),
            detail: l.code.or(l.why),
        });
    }
    if let Some(o) = &f.outcome {
        if *o != e.outcome && *o != call.out {
            return None;
        }
    }
    Some(e)
}

fn audit_entry(f: &Filter, l: &Line) -> Option<Entry> {
    if !in_window(f, l.t)
        || f.request_id.is_some()
        || f.key.is_some()
        || f.outcome.as_ref().is_some_and(|o| o != "audit")
        || f.route.as_ref().is_some_and(|r| *r != l.route)
    {
        return None;
    }
    Some(Entry {
        time: rfc3339(l.t),
        request_id: String::new(),
        direction: "operator".into(),
        route: l.route.to_string(),
        peer: l.peer.clone(),
        outcome: "audit".into(),
        status: 0,
        latency_ms: 0.0,
        key: None,
        message_id: l.mid.clone(),
        id: l.id,
        attempts: None,
        delivered_at: None,
        answer_code: None,
        history: vec![Step {
            time: rfc3339(l.t),
            event: l.out.to_string(),
            detail: l.why.clone(),
        }],
    })
}

/// A call's history on one line: `received → queued → retry ×3 → delivered (10001)`. A step's
/// detail (the answer code, why it died, who dropped it) is shown in brackets, except a retry's
/// error kind; repeats of a step are counted.
pub fn render_history(steps: &[Step]) -> String {
    let mut parts: Vec<(String, usize)> = Vec::new();
    for s in steps {
        let label = match &s.detail {
            Some(d) if s.event != "retry" => format!("{} ({d})", s.event),
            _ => s.event.clone(),
        };
        match parts.last_mut() {
            Some((last, n)) if *last == label => *n += 1,
            _ => parts.push((label, 1)),
        }
    }
    parts
        .into_iter()
        .map(|(label, n)| {
            if n > 1 {
                format!("{label} ×{n}")
            } else {
                label
            }
        })
        .collect::<Vec<_>>()
        .join(" → ")
}

/// `prefront trail`: one block per entry, newest first. Times are absolute (RFC 3339, UTC), so
/// the text is the same whoever reads the trail and when.
pub fn render(entries: &[Entry]) -> String {
    let mut out = String::new();
    let or_dash = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.to_string()
        }
    };
    for e in entries {
        let _ = writeln!(out, "{}  {}  {}", e.time, e.direction, or_dash(&e.route));
        if e.direction == "operator" {
            for s in &e.history {
                let _ = writeln!(
                    out,
                    "  action    {}{}",
                    s.event,
                    s.detail
                        .as_deref()
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default()
                );
            }
            let _ = writeln!(out, "  by        {}", or_dash(&e.peer));
        } else {
            let _ = writeln!(
                out,
                "  outcome   {} (HTTP {}, {:.1} ms)",
                e.outcome, e.status, e.latency_ms
            );
            let _ = writeln!(out, "  key       {}", e.key.as_deref().unwrap_or("-"));
            let _ = writeln!(out, "  request   {}", or_dash(&e.request_id));
            if let Some(mid) = &e.message_id {
                let record = e.id.map(|id| format!(" (record {id})")).unwrap_or_default();
                let _ = writeln!(out, "  message   {mid}{record}");
            }
            if let Some(at) = &e.delivered_at {
                let _ = writeln!(
                    out,
                    "  delivered {at}{}{}",
                    e.attempts
                        .map(|n| format!(", attempt {n}"))
                        .unwrap_or_default(),
                    e.answer_code
                        .as_deref()
                        .map(|c| format!(", answer code {c}"))
                        .unwrap_or_default()
                );
            }
            let _ = writeln!(out, "  history   {}", render_history(&e.history));
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "{} entr{} (newest first)",
        entries.len(),
        if entries.len() == 1 { "y" } else { "ies" }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TrailConfig;
    use std::time::Duration;

    fn write(dir: &Path, lines: &[Line]) {
        let c = TrailConfig {
            enabled: true,
            path: dir.to_path_buf(),
            max_age: Duration::from_secs(86400),
            max_bytes: 1 << 30,
        };
        let mut cur = None;
        for l in lines {
            super::super::append(&c, &mut cur, l, &mut Vec::new()).unwrap_or_default();
        }
        if let Some(c) = cur.as_mut() {
            std::io::Write::flush(&mut c.out).unwrap_or_default();
        }
    }

    fn line(t: u64, ev: &'static str, rid: &str) -> Line {
        Line {
            t,
            ev: ev.into(),
            rid: rid.into(),
            route: "prefront/refund".into(),
            ..Line::default()
        }
    }

    #[test]
    fn a_refund_is_found_by_its_key_with_what_became_of_it() {
        let dir = std::env::temp_dir().join(format!("prefront-trail-q-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_default();
        let t0 = 1_765_000_000_000;
        std::fs::write(dir.join("trail.key"), [7u8; 32]).unwrap_or_default();
        let key = Some("refundNo=RF-1".to_string());
        let kh = super::super::key_hash_in(&dir, "refundNo=RF-1");
        assert!(kh.is_some());
        write(
            &dir,
            &[
                Line {
                    out: "queued".into(),
                    st: 200,
                    key: key.clone(),
                    kh: kh.clone(),
                    mid: Some("abc-7".into()),
                    id: Some(7),
                    ..line(t0, "call", "r1")
                },
                Line {
                    out: "ok".into(),
                    st: 200,
                    ..line(t0 + 1, "call", "r2")
                },
                Line {
                    att: Some(1),
                    why: Some("upstream-connect".into()),
                    kh: kh.clone(),
                    ..line(t0 + 2, "retry", "r1")
                },
                Line {
                    att: Some(2),
                    code: Some("10001".into()),
                    kh: kh.clone(),
                    ..line(t0 + 3, "delivered", "r1")
                },
            ],
        );
        let found = query(
            &dir,
            &Filter {
                key: Some("refundNo=RF-1".into()),
                limit: 10,
                ..Filter::default()
            },
        );
        assert_eq!(found.len(), 1, "{found:#?}");
        let e = &found[0];
        assert_eq!(e.request_id, "r1");
        assert_eq!(e.outcome, "delivered");
        assert_eq!(e.answer_code.as_deref(), Some("10001"));
        assert_eq!(e.attempts, Some(2));
        let events: Vec<&str> = e.history.iter().map(|s| s.event.as_str()).collect();
        assert_eq!(events, ["received", "queued", "retry", "delivered"]);
        // Newest first, and the outcome filter sees the current state.
        let all = query(
            &dir,
            &Filter {
                limit: 10,
                ..Filter::default()
            },
        );
        let rids: Vec<&str> = all.iter().map(|e| e.request_id.as_str()).collect();
        assert_eq!(rids, ["r2", "r1"]);
        let delivered = query(
            &dir,
            &Filter {
                outcome: Some("delivered".into()),
                limit: 10,
                ..Filter::default()
            },
        );
        assert_eq!(delivered.len(), 1);
        // The text shows the history on one line, with the answer code.
        let text = render(&found);
        assert!(
            text.contains("history   received → queued → retry → delivered (10001)"),
            "{text}"
        );
        assert!(text.contains("message   abc-7 (record 7)"), "{text}");
        assert!(text.ends_with("1 entry (newest first)\n"), "{text}");
        // What the API serves reads back as the same entries.
        let json = serde_json::to_string(&TrailView {
            entries: all.clone(),
        })
        .unwrap_or_default();
        let back: Result<TrailView, _> = serde_json::from_str(&json);
        assert_eq!(back.ok().map(|v| v.entries), Some(all));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn times_read_as_rfc3339_or_as_an_age() {
        let now = 1_765_000_000_000;
        assert_eq!(parse_time("30m", now), Some(now - 30 * 60 * 1000));
        assert_eq!(parse_time("2025-12-06T05:46:40Z", now), Some(now));
        assert_eq!(parse_time("2025-12-06T13:46:40+08:00", now), Some(now));
        assert_eq!(parse_time("yesterday", now), None);
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn repeated_steps_are_counted_and_retry_reasons_left_out() {
        let step = |event: &str, detail: Option<&str>| Step {
            time: String::new(),
            event: event.into(),
            detail: detail.map(str::to_string),
        };
        let steps = [
            step("received", None),
            step("queued", None),
            step("retry", Some("upstream-status")),
            step("retry", Some("upstream-connect")),
            step("retry", None),
            step("delivered", Some("10002")),
        ];
        assert_eq!(
            render_history(&steps),
            "received → queued → retry ×3 → delivered (10002)"
        );
        assert_eq!(render(&[]), "0 entries (newest first)\n");
    }
}
