//! Store-and-forward (DESIGN.md §3): while an upstream is down, calls that may wait are kept on
//! disk and delivered later, in order per route, at least once. `Outbox` is the store's contract
//! (one engine today: sled, in `sled_store.rs`); the forwarders and the listeners only use it.

pub mod codec;
pub mod events;
pub mod forwarder;
pub mod operator;
pub mod policy;
pub mod salvage;
pub mod sled_store;

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use policy::Route;

/// A record's id: unique and increasing over the store's life, so ids order records.
pub type RecordId = u64;

/// One buffered call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub id: RecordId,
    /// What the upstream sees as `X-Prefront-Message-Id`: the store's random id and the
    /// sequence, unique for ever (a salvaged record keeps the one it had).
    pub message_id: String,
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

/// The group commit's progress and the store's health: the store keeps it under its lock for
/// threads that wait, and publishes a copy after every change for tasks that wait
/// (`Outbox::commits`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commits {
    /// Every ticket up to this one has an outcome: durable, unless it lies in `failed`.
    pub settled: u64,
    /// Ticket ranges (inclusive) whose commit failed, oldest first, with the error; the newest
    /// `MAX_FAILED_RANGES` are kept.
    pub failed: Vec<(u64, u64, String)>,
    /// Tickets up to this one whose range was forgotten: refused, never promised.
    pub forgotten: u64,
    /// `false` while the store cannot write (disk full, I/O error): calls are refused at once.
    pub writable: bool,
    /// Why it cannot write.
    pub reason: Option<String>,
    /// The store is closing: no further commit will be made.
    pub closing: bool,
}

/// Failed ranges kept for late waiters (one per failure episode; the store retries at most
/// about once a second).
const MAX_FAILED_RANGES: usize = 256;

impl Default for Commits {
    fn default() -> Self {
        Commits {
            settled: 0,
            failed: Vec::new(),
            forgotten: 0,
            writable: true,
            reason: None,
            closing: false,
        }
    }
}

impl Commits {
    /// What became of `ticket`: durable, never to be (and why), or `None` while it waits. A
    /// ticket of a failed commit stays refused even after later commits succeed.
    pub fn outcome(&self, ticket: u64) -> Option<Result<(), OutboxError>> {
        if ticket <= self.settled {
            if let Some((_, _, e)) = self
                .failed
                .iter()
                .find(|(from, to, _)| (*from..=*to).contains(&ticket))
            {
                return Some(Err(OutboxError::Storage(format!(
                    "the buffer could not be made durable: {e}"
                ))));
            }
            if ticket <= self.forgotten {
                return Some(Err(OutboxError::Storage(
                    "the buffer could not be made durable".to_string(),
                )));
            }
            Some(Ok(()))
        } else if self.closing {
            Some(Err(closing()))
        } else {
            None
        }
    }

    /// Refuses tickets `from..=to` (their commit failed) and settles them.
    pub fn refuse(&mut self, from: u64, to: u64, error: &str) {
        self.failed.push((from, to, error.to_string()));
        if self.failed.len() > MAX_FAILED_RANGES {
            let (_, to, _) = self.failed.remove(0);
            // Every ticket of a forgotten range up to its end stays refused (some durable ones
            // before it may be refused too: never the other way round).
            self.forgotten = self.forgotten.max(to);
        }
        self.settled = self.settled.max(to);
    }
}

/// The store's health for `/readyz`, `/metrics`, `/status` and `doctor`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// `false` while the buffer cannot write.
    pub writable: bool,
    pub reason: Option<String>,
    /// What the start-up salvage put back and could not find (0 when none was needed).
    pub salvaged: u64,
    pub lost: u64,
    /// Where a damaged store was moved at start.
    pub moved_to: Option<String>,
}

pub(crate) fn closing() -> OutboxError {
    OutboxError::Storage("the buffer is closing: shutdown".to_string())
}

/// The outbox as async code uses it. The store's methods that wait for the disk (an fsync,
/// reads that may miss the cache) run on tokio's blocking pool here, never on a runtime thread;
/// an enqueue waits for the group commit as a task, not a blocked thread. The methods that never
/// wait are reached through `store`.
#[derive(Clone)]
pub struct AsyncOutbox(Arc<dyn Outbox>);

impl std::fmt::Debug for AsyncOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AsyncOutbox")
    }
}

impl AsyncOutbox {
    pub fn new(store: Arc<dyn Outbox>) -> AsyncOutbox {
        AsyncOutbox(store)
    }

    /// The store itself: for the methods that never wait (`health`, `commits`, `depth`,
    /// `cached_result`), and for code already on a blocking thread.
    pub fn store(&self) -> &dyn Outbox {
        self.0.as_ref()
    }

    /// Runs `f` on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Outbox) -> Result<T, OutboxError> + Send + 'static,
    ) -> Result<T, OutboxError> {
        let store = self.0.clone();
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .unwrap_or_else(|e| Err(OutboxError::Storage(format!("buffer task failed: {e}"))))
    }

    /// Accepts a call like `Outbox::enqueue`, waiting for the group commit as a task: many
    /// callers wait on one fsync without one thread each. `admit` does no fsync; it takes the
    /// store's locks and may read sled's page cache.
    pub async fn enqueue(
        &self,
        route: &Route,
        key: Option<&str>,
        body: &[u8],
        request_id: &str,
    ) -> Result<Enqueued, OutboxError> {
        let store = self.store();
        let (ticket, then) = match store.admit(route.as_str(), key, body, request_id)? {
            Admission::Now(e) => return Ok(e),
            Admission::AfterCommit { ticket, then } => (ticket, then),
        };
        let mut commits = store.commits();
        let outcome = match commits.wait_for(|c| c.outcome(ticket).is_some()).await {
            Ok(c) => c.outcome(ticket),
            // The store is gone: no commit will come.
            Err(_) => None,
        };
        outcome.unwrap_or_else(|| Err(closing())).map(|()| then)
    }

    pub async fn routes(&self) -> Result<Vec<String>, OutboxError> {
        self.blocking(|o| o.routes()).await
    }

    pub async fn head(&self, route: &str) -> Result<Option<Record>, OutboxError> {
        let route = route.to_string();
        self.blocking(move |o| o.head(&route)).await
    }

    pub async fn delivered(&self, record: &Record, answer: Bytes) -> Result<(), OutboxError> {
        let record = record.clone();
        self.blocking(move |o| o.delivered(&record, &answer)).await
    }

    pub async fn dead_letter(&self, record: &Record, reason: String) -> Result<(), OutboxError> {
        let record = record.clone();
        self.blocking(move |o| o.dead_letter(&record, &reason))
            .await
    }

    pub async fn record_attempt(&self, id: RecordId, error: String) -> Result<(), OutboxError> {
        self.blocking(move |o| o.record_attempt(id, &error)).await
    }

    /// Waits until the store can write; returns `true` if shutdown was signalled meanwhile.
    pub async fn wait_writable(&self, shutdown: &mut tokio::sync::watch::Receiver<bool>) -> bool {
        let mut commits = self.store().commits();
        if commits.borrow().writable {
            return *shutdown.borrow();
        }
        tokio::select! {
            r = commits.wait_for(|c| c.writable || c.closing) => r.is_err() || *shutdown.borrow(),
            _ = shutdown.changed() => true,
        }
    }
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

impl OutboxError {
    /// The caller's outcome when the buffer did not accept a call.
    pub fn outcome(&self) -> crate::outcome::Outcome {
        match self {
            OutboxError::Full { .. } => crate::outcome::Outcome::BufferFull,
            OutboxError::NotFound(_) | OutboxError::Storage(_) => {
                crate::outcome::Outcome::BufferError
            }
        }
    }
}

/// The durable queue store, shared between threads. Two kinds of method:
/// - never waiting for the disk, fine on a connection worker: `admit` (decides and hands the
///   record to the group commit; reads sled's page cache), `commits`, `health`, `depth`,
///   `routes`, `cached_result` (a page-cache read);
/// - waiting for the disk (an fsync, or reads that may miss the cache): every other method; call
///   them from `tokio::task::spawn_blocking`, or use `enqueue_async` instead of `enqueue`.
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

    /// The `X-Prefront-Message-Id` record `id` is delivered with.
    fn message_id(&self, id: RecordId) -> String {
        id.to_string()
    }

    /// The group commit's progress and the store's health, updated after every change.
    fn commits(&self) -> tokio::sync::watch::Receiver<Commits>;

    /// Whether the store can write, and what the start-up salvage did. Never blocks.
    fn health(&self) -> Health;

    /// The recorded answer to a delivered business call with this key, while it is in the result
    /// cache (`result_ttl`).
    fn cached_result(&self, route: &str, key: &str) -> Result<Option<Vec<u8>>, OutboxError>;

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

    /// Queued (`dead = false`) or dead records, oldest first, optionally of one route, with ids
    /// above `after` (a page's last id), at most `limit`.
    fn list(
        &self,
        dead: bool,
        route: Option<&str>,
        after: Option<RecordId>,
        limit: usize,
    ) -> Result<Vec<DeadOrLive>, OutboxError>;

    /// One record by id, queued or dead.
    fn get(&self, id: RecordId) -> Result<Option<DeadOrLive>, OutboxError>;

    /// Puts a dead record back at the back of its route's queue (attempts reset); returns the
    /// id it has there (a new one: ids order a queue).
    fn retry(&self, id: RecordId) -> Result<RecordId, OutboxError>;

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

pub use crate::clock::now_ms;

/// A trail line about a buffered message (DESIGN.md §8): its request id, message id, route and
/// business key (masked, and hashed for search); `None` when this process writes no trail.
pub fn trail_line(rec: &Record, ev: &'static str) -> Option<crate::trail::Line> {
    if !crate::trail::active() {
        return None;
    }
    let (key, kh) = rec
        .key
        .as_deref()
        .map_or((None, None), crate::trail::key_fields);
    Some(crate::trail::Line {
        t: now_ms(),
        ev: ev.into(),
        rid: rec.request_id.clone(),
        route: Route::display_name(&rec.route).to_string().into(),
        key,
        kh,
        mid: Some(rec.message_id.clone()),
        id: Some(rec.id),
        ..crate::trail::Line::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every way a wait for a commit ends, and the message the refused caller's error carries.
    #[test]
    fn a_ticket_is_durable_refused_or_still_waiting() {
        let err = |o: Option<Result<(), OutboxError>>| match o {
            Some(Err(OutboxError::Storage(m))) => m,
            other => panic!("{other:?}"),
        };
        let mut c = Commits::default();
        assert!(c.outcome(1).is_none(), "still waiting");
        c.settled = 4;
        assert!(matches!(c.outcome(4), Some(Ok(()))));
        // Tickets 5..=7 fail; a later commit (8..=9) succeeds: the failed ones stay refused,
        // however late their callers look.
        c.refuse(5, 7, "EIO");
        c.settled = 9;
        for t in 5..=7 {
            let m = err(c.outcome(t));
            assert!(
                m.contains("could not be made durable") && m.contains("EIO"),
                "{m}"
            );
        }
        assert!(matches!(c.outcome(8), Some(Ok(()))));
        assert!(matches!(c.outcome(4), Some(Ok(()))));
        assert!(c.outcome(10).is_none());
        c.closing = true;
        assert!(err(c.outcome(10)).contains("closing"));
        // Durable before the failure or the close: still promised.
        assert!(matches!(c.outcome(9), Some(Ok(()))));
    }

    /// Past the kept ranges, a forgotten failed ticket is refused, never called durable.
    #[test]
    fn forgotten_failures_stay_refused() {
        let mut c = Commits::default();
        for i in 0..(MAX_FAILED_RANGES as u64 + 10) {
            c.refuse(i * 2 + 1, i * 2 + 1, "ENOSPC");
            c.settled = i * 2 + 2;
        }
        assert!(c.outcome(1).is_some_and(|r| r.is_err()));
        assert!(c.outcome(c.settled).is_some_and(|r| r.is_ok()));
    }
}
