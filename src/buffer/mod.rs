//! Store-and-forward (DESIGN.md §3): while an upstream is down, calls that may wait are kept on
//! disk and delivered later, in order per route, at least once. `Outbox` is the store's contract
//! (one engine today: sled, in `sled_store.rs`); the forwarders and the listeners only use it.

pub mod events;
pub mod forwarder;
pub mod operator;
pub mod sled_store;

use serde::{Deserialize, Serialize};

/// A record's id: unique and increasing over the store's life, so ids order records.
pub type RecordId = u64;

/// One buffered call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub id: RecordId,
    /// The queue it belongs to, e.g. `cloud:prefront/sendTipMessage/payment`. One FIFO per route.
    pub route: String,
    /// Business idempotency key (`refundNo=R1`), when the interface has one: a second call with
    /// the same key is not queued twice.
    pub key: Option<String>,
    /// The call's JSON body as the caller sent it (UTF-8).
    pub body: Vec<u8>,
    /// The caller's request id, passed upstream on delivery.
    pub request_id: String,
    /// Unix milliseconds when it was acknowledged.
    pub enqueued_at_ms: u64,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Why the last attempt failed (an error kind and short text, never patient data).
    pub last_error: Option<String>,
}

/// A record that will not be delivered without an operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadRecord {
    pub record: Record,
    pub reason: String,
    pub dead_at_ms: u64,
}

/// What `enqueue` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// Appended and durable on disk.
    New(RecordId),
    /// A record with the same key is already queued (not dead); nothing was written.
    AlreadyQueued(RecordId),
    /// A record with the same key was delivered within the result cache's lifetime: this is the
    /// upstream's answer to it.
    Delivered(Vec<u8>),
}

/// What `Outbox::admit` decided: the answer now, or an answer that holds once the group commit
/// numbered `ticket` is durable on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Nothing to wait for (a cached result).
    Now(Enqueued),
    /// The record (or an earlier one with the same key) is written; `then` is the answer once
    /// commit `ticket` has been fsync'd.
    AfterCommit { ticket: u64, then: Enqueued },
}

/// The group commit's progress: the store keeps it under its lock for threads that wait, and
/// publishes a copy after every commit for tasks that wait (`Outbox::commits`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Commits {
    /// Every ticket up to this one is durable.
    pub durable: u64,
    /// Set after a failed fsync: after one, the kernel may have dropped the dirty pages, so
    /// nothing written since can be promised. Every enqueue fails until a restart.
    pub failed: Option<String>,
    /// The store is closing: no further commit will be made.
    pub closing: bool,
}

impl Commits {
    /// What became of `ticket`: durable, never to be (and why), or `None` while it waits.
    pub fn outcome(&self, ticket: u64) -> Option<Result<(), OutboxError>> {
        if self.durable >= ticket {
            Some(Ok(()))
        } else if let Some(e) = &self.failed {
            Some(Err(OutboxError::Storage(format!(
                "the buffer could not be made durable: {e}"
            ))))
        } else if self.closing {
            Some(Err(closing()))
        } else {
            None
        }
    }
}

fn closing() -> OutboxError {
    OutboxError::Storage("the buffer is closing: shutdown".to_string())
}

/// Accepts a call like `Outbox::enqueue`, but waits for the group commit as an async task
/// instead of a blocked thread: many callers wait on one fsync without one thread each.
/// `admit` does no fsync; it takes the store's locks and may read sled's page cache.
pub async fn enqueue_async(
    outbox: &dyn Outbox,
    route: &str,
    key: Option<&str>,
    body: &[u8],
    request_id: &str,
) -> Result<Enqueued, OutboxError> {
    let (ticket, then) = match outbox.admit(route, key, body, request_id)? {
        Admission::Now(e) => return Ok(e),
        Admission::AfterCommit { ticket, then } => (ticket, then),
    };
    let mut commits = outbox.commits();
    let outcome = match commits.wait_for(|c| c.outcome(ticket).is_some()).await {
        Ok(c) => c.outcome(ticket),
        // The store is gone: no commit will come.
        Err(_) => None,
    };
    outcome.unwrap_or_else(|| Err(closing())).map(|()| then)
}

/// Per-route figures for the operator and the metrics.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteStats {
    pub route: String,
    pub depth: u64,
    pub oldest_enqueued_at_ms: Option<u64>,
    pub dead: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// `buffer.max_bytes` reached: refuse before acknowledging (code 40001).
    #[error("buffer full: {used} of {max} bytes used")]
    Full { used: u64, max: u64 },
    #[error("no record {0}")]
    NotFound(RecordId),
    /// The store failed to read or write; the message says what, never the payload.
    #[error("buffer storage error: {0}")]
    Storage(String),
}

/// The durable queue store. Every method but `admit` and `commits` blocks (disk I/O): call it
/// from `tokio::task::spawn_blocking`, or use `enqueue_async`. Implementations are shared
/// between threads.
pub trait Outbox: Send + Sync + std::fmt::Debug {
    /// Appends a call at the back of `route`'s queue and returns only once it is durable on disk
    /// (a real fsync, shared by every write made before it: group commit). With a `key`: an
    /// already queued record with that key → `AlreadyQueued`; a delivered one still in the result
    /// cache → `Delivered(answer)`; neither is written again. Refuses with `Full` when
    /// `body.len()` would take the store over its quota.
    fn enqueue(
        &self,
        route: &str,
        key: Option<&str>,
        body: &[u8],
        request_id: &str,
    ) -> Result<Enqueued, OutboxError> {
        match self.admit(route, key, body, request_id)? {
            Admission::Now(e) => Ok(e),
            Admission::AfterCommit { ticket, then } => {
                self.wait_durable(ticket)?;
                Ok(then)
            }
        }
    }

    /// The first half of `enqueue`: decides, and hands a new record to the group commit, without
    /// waiting for the fsync. The answer may be given once `commits()` shows its ticket durable.
    fn admit(
        &self,
        route: &str,
        key: Option<&str>,
        body: &[u8],
        request_id: &str,
    ) -> Result<Admission, OutboxError>;

    /// Blocks until group commit `ticket` is durable (or failed).
    fn wait_durable(&self, ticket: u64) -> Result<(), OutboxError>;

    /// The group commit's progress, updated after every commit.
    fn commits(&self) -> tokio::sync::watch::Receiver<Commits>;

    /// The oldest queued record of `route`, if any.
    fn head(&self, route: &str) -> Result<Option<Record>, OutboxError>;

    /// Every route that has queued records, in no particular order.
    fn routes(&self) -> Result<Vec<String>, OutboxError>;

    /// Number of queued records of `route`.
    fn depth(&self, route: &str) -> Result<u64, OutboxError>;

    /// Notes a failed attempt: `attempts += 1`, `last_error = error`. Need not be durable.
    fn record_attempt(&self, id: RecordId, error: &str) -> Result<(), OutboxError>;

    /// Removes a delivered record from its queue; with a key, keeps `answer` in the result cache
    /// (until `result_ttl`). Need not be durable: a record delivered again after a crash is the
    /// at-least-once promise, and the upstream sees its `X-Prefront-Message-Id` again.
    fn delivered(&self, record: &Record, answer: &[u8]) -> Result<(), OutboxError>;

    /// Moves a record from its queue to the dead letters, with the reason.
    fn dead_letter(&self, record: &Record, reason: &str) -> Result<(), OutboxError>;

    /// Queued (`dead = false`) or dead records, oldest first, optionally of one route, at most
    /// `limit`.
    fn list(
        &self,
        dead: bool,
        route: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadOrLive>, OutboxError>;

    /// One record by id, queued or dead.
    fn get(&self, id: RecordId) -> Result<Option<DeadOrLive>, OutboxError>;

    /// Puts a dead record back at the back of its route's queue (attempts reset).
    fn retry(&self, id: RecordId) -> Result<(), OutboxError>;

    /// Deletes a record, queued or dead, for good.
    fn drop_record(&self, id: RecordId) -> Result<(), OutboxError>;

    /// Figures per route (queued and dead), and bytes used against the quota.
    fn stats(&self) -> Result<(Vec<RouteStats>, u64), OutboxError>;
}

/// A record as `list`/`get` return it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadOrLive {
    Live(Record),
    Dead(DeadRecord),
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every way a wait for a commit ends, and the message the refused caller's error carries.
    #[test]
    fn a_ticket_is_durable_refused_or_still_waiting() {
        let c = |durable, failed: Option<&str>, closing| Commits {
            durable,
            failed: failed.map(str::to_string),
            closing,
        };
        assert!(c(4, None, false).outcome(5).is_none(), "still waiting");
        assert!(matches!(c(5, None, false).outcome(5), Some(Ok(()))));
        // Durable before the failure or the close: still promised.
        assert!(matches!(c(5, Some("EIO"), true).outcome(5), Some(Ok(()))));
        let err = |c: Commits| match c.outcome(5) {
            Some(Err(OutboxError::Storage(m))) => m,
            other => panic!("{other:?}"),
        };
        let failed = err(c(4, Some("EIO"), false));
        assert!(
            failed.contains("could not be made durable") && failed.contains("EIO"),
            "{failed}"
        );
        assert!(err(c(4, None, true)).contains("closing"));
        // A failure wins over closing: it is the reason to tell.
        assert!(err(c(4, Some("EIO"), true)).contains("EIO"));
    }
}
