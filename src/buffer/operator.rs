//! The operator's view of the buffer (`prefront queue …`): what is waiting, what is dead, and
//! the means to retry or drop it. Every function returns the text to print; patient data in a
//! payload is masked unless the operator asks otherwise.

use std::fmt::Write as _;

use super::{now_ms, DeadOrLive, Outbox, OutboxError, Record, RecordId};
use crate::telemetry::redact;

fn age(ms: u64) -> String {
    let s = now_ms().saturating_sub(ms) / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86400, (s % 86400) / 3600),
    }
}

/// `queue stats`: depth, oldest age and dead letters per route, and the quota.
pub fn stats(outbox: &dyn Outbox, max_bytes: u64) -> Result<String, OutboxError> {
    let (routes, used) = outbox.stats()?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<70} {:>8} {:>10} {:>6}",
        "route", "queued", "oldest", "dead"
    );
    let (mut depth, mut dead) = (0, 0);
    for r in &routes {
        depth += r.depth;
        dead += r.dead;
        let oldest = r
            .oldest_enqueued_at_ms
            .map(age)
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "{:<70} {:>8} {:>10} {:>6}",
            r.route, r.depth, oldest, r.dead
        );
    }
    let _ = writeln!(
        out,
        "total: {depth} queued, {dead} dead; {used} of {max_bytes} bytes used ({:.1}%)",
        used as f64 * 100.0 / max_bytes.max(1) as f64
    );
    Ok(out)
}

fn line(r: &Record, dead: Option<&str>) -> String {
    let mut s = format!(
        "{:>20}  {:<60} age {:<8} attempts {:<4}",
        r.id,
        r.route,
        age(r.enqueued_at_ms),
        r.attempts
    );
    if let Some(k) = &r.key {
        let _ = write!(s, " key {}", redact::mask_text(k));
    }
    match dead {
        Some(reason) => {
            let _ = write!(s, " DEAD: {reason}");
        }
        None => {
            if let Some(e) = &r.last_error {
                let _ = write!(s, " last error: {e}");
            }
        }
    }
    s
}

/// `queue list [--dead] [--route R]`.
pub fn list(
    outbox: &dyn Outbox,
    dead: bool,
    route: Option<&str>,
    limit: usize,
) -> Result<String, OutboxError> {
    let mut out = String::new();
    let items = outbox.list(dead, route, limit)?;
    for item in &items {
        let l = match item {
            DeadOrLive::Live(r) => line(r, None),
            DeadOrLive::Dead(d) => line(&d.record, Some(&d.reason)),
        };
        let _ = writeln!(out, "{l}");
    }
    let _ = writeln!(
        out,
        "{} {} record(s){}",
        items.len(),
        if dead { "dead" } else { "queued" },
        if items.len() == limit {
            " (limit reached; use --limit)"
        } else {
            ""
        }
    );
    Ok(out)
}

/// `queue show ID [--unmasked]`.
pub fn show(outbox: &dyn Outbox, id: RecordId, unmasked: bool) -> Result<String, OutboxError> {
    let item = outbox.get(id)?.ok_or(OutboxError::NotFound(id))?;
    let (r, dead) = match &item {
        DeadOrLive::Live(r) => (r, None),
        DeadOrLive::Dead(d) => (&d.record, Some(d)),
    };
    let mut out = String::new();
    let _ = writeln!(out, "id:          {}", r.id);
    let _ = writeln!(out, "route:       {}", r.route);
    let _ = writeln!(
        out,
        "state:       {}",
        if dead.is_some() { "dead" } else { "queued" }
    );
    let _ = writeln!(out, "request id:  {}", r.request_id);
    let _ = writeln!(out, "age:         {}", age(r.enqueued_at_ms));
    let _ = writeln!(out, "attempts:    {}", r.attempts);
    if let Some(e) = &r.last_error {
        let _ = writeln!(out, "last error:  {e}");
    }
    if let Some(d) = dead {
        let _ = writeln!(out, "dead since:  {} ago: {}", age(d.dead_at_ms), d.reason);
    }
    let body = if unmasked {
        String::from_utf8_lossy(&r.body).into_owned()
    } else {
        redact::mask_body(&r.body, 64 * 1024)
    };
    let _ = writeln!(
        out,
        "payload{}:\n{body}",
        if unmasked {
            " (UNMASKED: contains patient data)"
        } else {
            " (patient data masked; --unmasked shows it)"
        }
    );
    Ok(out)
}

/// `queue retry ID` or `queue retry --all-dead`.
pub fn retry(outbox: &dyn Outbox, id: Option<RecordId>) -> Result<String, OutboxError> {
    match id {
        Some(id) => {
            outbox.retry(id)?;
            Ok(format!("record {id} is queued again\n"))
        }
        None => {
            let (routes, _) = outbox.stats()?;
            let total: u64 = routes.iter().map(|r| r.dead).sum();
            let mut n = 0u64;
            // Bounded: each pass moves a batch out of the dead letters, so the passes needed are
            // known up front; a store that did not move a record cannot make this spin.
            for _ in 0..=(total / 1000 + 1) {
                let batch = outbox.list(true, None, 1000)?;
                if batch.is_empty() {
                    break;
                }
                for item in batch {
                    if let DeadOrLive::Dead(d) = item {
                        outbox.retry(d.record.id)?;
                        n += 1;
                    }
                }
            }
            Ok(format!("{n} dead record(s) queued again\n"))
        }
    }
}

/// `queue drop ID`.
pub fn drop_record(outbox: &dyn Outbox, id: RecordId) -> Result<String, OutboxError> {
    outbox.drop_record(id)?;
    Ok(format!("record {id} dropped\n"))
}
