//! The operator's view of the buffer (DESIGN.md §8): what is waiting, what is dead, and the means
//! to retry or drop it. Each action returns a view in the admin API's JSON shape; the API serves
//! it and `prefront queue …` prints it (`render_*`), from the running gateway's API or from the
//! store opened directly, so the output is the same either way. Patient data in a payload is
//! masked; only `prefront queue show --unmasked` on a stopped box shows it.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::{now_ms, DeadOrLive, Outbox, OutboxError, Record, RecordId};
use crate::telemetry::redact;
use crate::trail::query::rfc3339;

/// `GET /api/queue`, `prefront queue stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueView {
    pub routes: Vec<RouteView>,
    pub used_bytes: u64,
    pub max_bytes: u64,
    pub writable: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteView {
    pub route: String,
    pub queued: u64,
    pub dead: u64,
    /// Age of the oldest waiting call; `None` when nothing waits.
    pub oldest_age_s: Option<u64>,
}

/// `GET /api/queue/messages`, `prefront queue list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessagesView {
    pub messages: Vec<MessageView>,
    /// The `after` of the next page; `None` on the last page.
    pub next: Option<RecordId>,
}

/// One buffered message; `body` (masked) only when one message is asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageView {
    pub id: RecordId,
    pub message_id: String,
    pub route: String,
    /// `queued` or `dead`.
    pub state: String,
    pub attempts: u32,
    /// RFC 3339, UTC.
    pub queued_at: String,
    pub last_error: Option<String>,
    /// The business key, masked as in logs.
    pub key: Option<String>,
    pub request_id: String,
    /// Why it is dead, and since when (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Unix milliseconds of `queued_at`, for ages.
    #[serde(default)]
    pub queued_at_ms: u64,
}

/// The answer to a retry or a drop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Changed {
    /// The message's id now: a retried message gets a new one at the tail of its queue.
    pub id: RecordId,
    /// `queued` (retried) or `dropped`.
    pub state: String,
    /// A retried message's id before the retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub was: Option<RecordId>,
}

/// `POST /api/queue/retry-dead`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retried {
    pub retried: u64,
}

/// Most messages one page lists.
pub const MAX_PAGE: usize = 1000;

/// The figures per route and the quota.
pub fn queue(outbox: &dyn Outbox, max_bytes: u64) -> Result<QueueView, OutboxError> {
    let (routes, used) = outbox.stats()?;
    let now = now_ms();
    Ok(QueueView {
        routes: routes
            .into_iter()
            .map(|r| RouteView {
                oldest_age_s: r
                    .oldest_enqueued_at_ms
                    .map(|t| now.saturating_sub(t) / 1000),
                route: r.route,
                queued: r.depth,
                dead: r.dead,
            })
            .collect(),
        used_bytes: used,
        max_bytes,
        writable: outbox.health().writable,
    })
}

fn view(r: &Record, dead: Option<(&str, u64)>, body: bool) -> MessageView {
    MessageView {
        id: r.id,
        message_id: r.message_id.clone(),
        route: r.route.clone(),
        state: if dead.is_some() { "dead" } else { "queued" }.into(),
        attempts: r.attempts,
        queued_at: rfc3339(r.enqueued_at_ms),
        queued_at_ms: r.enqueued_at_ms,
        last_error: r.last_error.clone(),
        key: r.key.as_deref().map(|k| redact::mask_text(k).into_owned()),
        request_id: r.request_id.clone(),
        dead_reason: dead.map(|(why, _)| why.to_string()),
        dead_at: dead.map(|(_, at)| rfc3339(at)),
        body: body.then(|| redact::mask_body(&r.body, 64 * 1024)),
    }
}

fn item_view(item: &DeadOrLive, body: bool) -> MessageView {
    match item {
        DeadOrLive::Live(r) => view(r, None, body),
        DeadOrLive::Dead(d) => view(&d.record, Some((&d.reason, d.dead_at_ms)), body),
    }
}

/// Queued or dead messages, oldest first, a page at a time.
pub fn messages(
    outbox: &dyn Outbox,
    dead: bool,
    route: Option<&str>,
    after: Option<RecordId>,
    limit: usize,
) -> Result<MessagesView, OutboxError> {
    let limit = limit.clamp(1, MAX_PAGE);
    // One more than asked tells whether another page follows.
    let mut items = outbox.list(dead, route, after, limit + 1)?;
    let more = items.len() > limit;
    items.truncate(limit);
    let messages: Vec<MessageView> = items.iter().map(|i| item_view(i, false)).collect();
    Ok(MessagesView {
        next: if more {
            messages.last().map(|m| m.id)
        } else {
            None
        },
        messages,
    })
}

/// One message with its payload, masked.
pub fn message(outbox: &dyn Outbox, id: RecordId) -> Result<MessageView, OutboxError> {
    let item = outbox.get(id)?.ok_or(OutboxError::NotFound(id))?;
    Ok(item_view(&item, true))
}

/// The payload of a message as it was sent, unmasked: for the operator at the box only.
pub fn unmasked_body(outbox: &dyn Outbox, id: RecordId) -> Result<String, OutboxError> {
    let item = outbox.get(id)?.ok_or(OutboxError::NotFound(id))?;
    let r = match &item {
        DeadOrLive::Live(r) => r,
        DeadOrLive::Dead(d) => &d.record,
    };
    Ok(String::from_utf8_lossy(&r.body).into_owned())
}

/// Puts a dead message back at the tail of its route; the answer names the id it has there.
pub fn retry(outbox: &dyn Outbox, id: RecordId) -> Result<Changed, OutboxError> {
    Ok(Changed {
        id: outbox.retry(id)?,
        state: "queued".into(),
        was: Some(id),
    })
}

/// Deletes a message, queued or dead, for good.
pub fn drop_message(outbox: &dyn Outbox, id: RecordId) -> Result<Changed, OutboxError> {
    outbox.drop_record(id)?;
    Ok(Changed {
        id,
        state: "dropped".into(),
        was: None,
    })
}

/// Puts every dead message (of `route`, if given) back in its queue; returns them, each with
/// its new id.
pub fn retry_dead(
    outbox: &dyn Outbox,
    route: Option<&str>,
) -> Result<(Retried, Vec<(Record, RecordId)>), OutboxError> {
    let (routes, _) = outbox.stats()?;
    let total: u64 = routes
        .iter()
        .filter(|r| route.is_none_or(|x| x == r.route))
        .map(|r| r.dead)
        .sum();
    let mut moved = Vec::new();
    let mut after = None;
    // Bounded: each pass reads the next page of dead letters, so the passes needed are known up
    // front; a store that did not move a record cannot make this spin.
    for _ in 0..=(total / 1000 + 1) {
        let page = outbox.list(true, route, after, 1000)?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some(match last {
            DeadOrLive::Dead(d) => d.record.id,
            DeadOrLive::Live(r) => r.id,
        });
        for item in page {
            if let DeadOrLive::Dead(d) = item {
                let new_id = outbox.retry(d.record.id)?;
                moved.push((d.record, new_id));
            }
        }
    }
    Ok((
        Retried {
            retried: moved.len() as u64,
        },
        moved,
    ))
}

fn age(ms: u64) -> String {
    let s = now_ms().saturating_sub(ms) / 1000;
    human_age(s)
}

fn human_age(s: u64) -> String {
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86400, (s % 86400) / 3600),
    }
}

/// `prefront queue stats`.
pub fn render_queue(q: &QueueView) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<70} {:>8} {:>10} {:>6}",
        "route", "queued", "oldest", "dead"
    );
    let (mut depth, mut dead) = (0, 0);
    for r in &q.routes {
        depth += r.queued;
        dead += r.dead;
        let oldest = r.oldest_age_s.map(human_age).unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "{:<70} {:>8} {:>10} {:>6}",
            r.route, r.queued, oldest, r.dead
        );
    }
    let _ = writeln!(
        out,
        "total: {depth} queued, {dead} dead; {} of {} bytes used ({:.1}%){}",
        q.used_bytes,
        q.max_bytes,
        q.used_bytes as f64 * 100.0 / q.max_bytes.max(1) as f64,
        if q.writable {
            ""
        } else {
            "; THE BUFFER CANNOT WRITE (see /readyz)"
        }
    );
    out
}

fn line(m: &MessageView) -> String {
    let mut s = format!(
        "{:>20}  {:<60} age {:<8} attempts {:<4}",
        m.id,
        m.route,
        age(m.queued_at_ms),
        m.attempts
    );
    if let Some(k) = &m.key {
        let _ = write!(s, " key {k}");
    }
    match &m.dead_reason {
        Some(reason) => {
            let _ = write!(s, " DEAD: {reason}");
        }
        None => {
            if let Some(e) = &m.last_error {
                let _ = write!(s, " last error: {e}");
            }
        }
    }
    s
}

/// `prefront queue list`.
pub fn render_messages(v: &MessagesView, dead: bool) -> String {
    let mut out = String::new();
    for m in &v.messages {
        let _ = writeln!(out, "{}", line(m));
    }
    let _ = writeln!(
        out,
        "{} {} record(s){}",
        v.messages.len(),
        if dead { "dead" } else { "queued" },
        match v.next {
            Some(next) => format!(" (more: --after {next}, or a larger --limit)"),
            None => String::new(),
        }
    );
    out
}

/// `prefront queue show`; `unmasked`: the payload as sent, in place of the masked one.
pub fn render_message(m: &MessageView, unmasked: Option<&str>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "id:          {}", m.id);
    let _ = writeln!(out, "message id:  {}", m.message_id);
    let _ = writeln!(out, "route:       {}", m.route);
    let _ = writeln!(out, "state:       {}", m.state);
    let _ = writeln!(out, "request id:  {}", m.request_id);
    if let Some(k) = &m.key {
        let _ = writeln!(out, "key:         {k}");
    }
    let _ = writeln!(
        out,
        "queued at:   {} ({} ago)",
        m.queued_at,
        age(m.queued_at_ms)
    );
    let _ = writeln!(out, "attempts:    {}", m.attempts);
    if let Some(e) = &m.last_error {
        let _ = writeln!(out, "last error:  {e}");
    }
    if let (Some(why), Some(at)) = (&m.dead_reason, &m.dead_at) {
        let _ = writeln!(out, "dead since:  {at}: {why}");
    }
    let (label, body) = match unmasked {
        Some(b) => (" (UNMASKED: contains patient data)", b),
        None => (
            " (patient data masked; --unmasked on the stopped box shows it)",
            m.body.as_deref().unwrap_or(""),
        ),
    };
    let _ = writeln!(out, "payload{label}:\n{body}");
    out
}

/// `prefront queue retry|drop`.
pub fn render_changed(c: &Changed) -> String {
    match c.state.as_str() {
        "dropped" => format!("record {} dropped\n", c.id),
        _ => match c.was {
            Some(was) if was != c.id => {
                format!("record {was} is queued again as record {}\n", c.id)
            }
            _ => format!("record {} is queued again\n", c.id),
        },
    }
}

/// `prefront queue retry --all-dead`.
pub fn render_retried(r: &Retried) -> String {
    format!("{} dead record(s) queued again\n", r.retried)
}
