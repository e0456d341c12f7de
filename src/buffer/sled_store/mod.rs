//! The sled engine behind [`Outbox`].
//!
//! Everything lives in one sled tree, under one-byte prefixes, so that every change that touches
//! several entries is one `apply_batch` — crash-atomic in sled 0.34. Every value is a checksummed
//! frame (`codec.rs`):
//!
//! | key                          | value                                              |
//! |------------------------------|----------------------------------------------------|
//! | `q` route `\0` id (8, BE)    | a queued record                                    |
//! | `k` route `\0` key           | ids (8, BE each) of queued holders (an index)      |
//! | `r` route `\0` key           | a delivered answer in the result cache            |
//! | `d` id                       | a dead record                                      |
//! | `m` route                    | the route's delivery mark                          |
//! | `t` id                       | a tombstone: the record ended without delivery     |
//! | `S`                          | the store's state: change count, records held, ids |
//! | `I`                          | the store's random id (message ids derive from it) |
//!
//! Durability: sled's own `flush()` ends, on Linux, in `sync_file_range`, which does not survive
//! a power cut. An enqueue is acknowledged only after a real `fsync` of the log file (and of any
//! new blob file). Group commit: callers hand their record to one committer thread, which writes
//! every waiting record in one batch, then `flush` + `fsync` once for all of them and for every
//! other write made before.
//!
//! Faults (DESIGN.md §3.1): any failed write, flush or fsync puts the store in the *failing*
//! state: every ticket not yet durable is refused, calls are refused at once, and the committer
//! closes sled and opens the store again, with backoff (sled refuses every operation after one
//! I/O error, and after a failed fsync the page cache cannot be trusted). Records of a refused
//! commit ("ghosts") and deliveries that could not be recorded are settled first thing after the
//! reopen, before anything is delivered again.
//!
//! Here: the store's state and the [`Outbox`] operations. `open.rs`: opening, checking and
//! salvaging a store. `commit.rs`: the committer thread (group commit, faults, recovery).
//! `keys.rs`: the key layout. `deliver.rs`: the result cache and recording deliveries.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

mod commit;
mod deliver;
mod keys;
mod open;

use commit::*;
use deliver::delivery_batch;
use keys::*;
use open::*;

use super::codec::{self, Kind, Mark, ResultMeta, State, StoreIdent, Tomb, Undecodable};
use super::salvage::{self, Report};
use super::{
    now_ms, Admission, Commits, DeadOrLive, DeadRecord, Enqueued, Health, Outbox, OutboxError,
    Record, RecordId, RouteStats,
};

/// `last_error` is kept short: it is a diagnosis, not a log.
const MAX_ERROR_LEN: usize = 300;

/// sled's page cache. Records are written once and read once; a small cache is enough.
const CACHE_BYTES: u64 = 16 << 20;

/// The failing store is tried again after this, doubling up to `RETRY_MAX`.
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(4);
/// A repeated storage error is logged at most this often (with a count).
const LOG_EVERY: Duration = Duration::from_secs(60);
/// Writes that need no fsync reach sled's log within this (an idle flush).
const IDLE_FLUSH: Duration = Duration::from_millis(500);
/// Expired results and old tombstones are swept this often.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// The sidecar state file is rewritten at most this often (after a commit).
const SIDECAR_EVERY: Duration = Duration::from_secs(1);
/// Tombstones are kept this long (they keep a salvage from bringing back dropped records).
const TOMB_TTL_MS: u64 = 90 * 24 * 3600 * 1000;

/// A durable, fsync'd outbox in a sled directory.
pub struct SledOutbox {
    shared: Arc<Shared>,
    committer: Option<JoinHandle<()>>,
    salvage: Option<Report>,
}

impl std::fmt::Debug for SledOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledOutbox")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

/// What the store's handles and the committer thread share.
struct Shared {
    path: PathBuf,
    store_id: String,
    max_bytes: u64,
    result_ttl: Duration,
    /// The open store; `None` while it is being opened again after a fault.
    slot: RwLock<Option<Arc<Open>>>,
    /// Serialises every change, so check-then-write (keys, quota) is atomic and the figures match
    /// the tree. Lock order: `inner`, then `dur`'s state.
    inner: Mutex<Inner>,
    dur: Durability,
    /// Blob files already synced (sled never rewrites one in place).
    blobs_synced: Mutex<HashSet<std::ffi::OsString>>,
    /// `buffer.dead_ttl` in milliseconds; 0: dead letters are kept.
    dead_ttl_ms: std::sync::atomic::AtomicU64,
}

/// sled and the log file the committer fsyncs (opened for writing: on Windows `sync_data` is
/// `FlushFileBuffers`, which needs write access).
struct Open {
    db: sled::Db,
    log: File,
}

#[derive(Default)]
struct Inner {
    /// Queued records per route, those waiting for the committer included (routes with none are
    /// removed).
    depth: HashMap<String, u64>,
    /// Bytes of queued and dead records and of cached results: what the quota counts.
    used: u64,
    /// Keys of records accepted but not yet written by the committer: (route, key) → id.
    pending_keys: HashMap<(String, String), RecordId>,
    /// Records held (queued and dead).
    live: u64,
    /// The last state change numbered.
    seq: u64,
    /// The next record id.
    next_id: RecordId,
    /// The highest `seq` and record id on the platter.
    durable_seq: u64,
    durable_id: RecordId,
    /// Changes since sled's last flush.
    dirty: bool,
    /// The `durable` the last written state frame carries.
    state_durable: u64,
    /// Records written by a commit whose fsync failed: their callers were refused, so they are
    /// removed before anything is delivered again.
    ghosts: Vec<(String, RecordId)>,
    /// Delivered, but the delivery could not be recorded: removed after the reopen, never sent
    /// again while the box runs.
    unrecorded: Vec<(Record, Vec<u8>)>,
    /// When the sidecar state file was last written.
    sidecar_at: Option<Instant>,
    /// The routes' delivery marks (as in the tree), for the sidecar.
    marks: std::collections::BTreeMap<String, RecordId>,
}

/// A new record on its way into the tree: the committer writes every waiting one in one batch.
struct Pending {
    route: String,
    key: Option<String>,
    id: RecordId,
    value: Vec<u8>,
}

fn storage(what: &str, e: impl std::fmt::Display) -> OutboxError {
    OutboxError::Storage(format!("{what}: {e}"))
}

impl SledOutbox {
    /// What the start-up salvage did, if the store had to be salvaged.
    pub fn salvage_report(&self) -> Option<&Report> {
        self.salvage.as_ref()
    }

    /// The store's random id (the prefix of its message ids).
    pub fn store_id(&self) -> &str {
        &self.shared.store_id
    }

    /// Dead letters older than `ttl` are deleted (and logged) by the sweep; zero keeps them.
    pub fn set_dead_ttl(&self, ttl: Duration) {
        self.shared.dead_ttl_ms.store(
            u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Bytes of records (queued and dead) and cached results counted against `max_bytes`.
    pub fn used_bytes(&self) -> u64 {
        self.lock().used
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared.lock()
    }

    /// The open store, or why there is none.
    fn open_store(&self) -> Result<Arc<Open>, OutboxError> {
        self.shared.open_store()
    }

    /// A write failed: the store goes into the failing state (and the error out to the caller).
    fn failed(&self, inner: &mut Inner, what: &str, e: impl std::fmt::Display) -> OutboxError {
        let msg = format!("{what}: {e}");
        self.shared.enter_failing(inner, &msg, Vec::new());
        OutboxError::Storage(msg)
    }

    fn get_raw(&self, db: &sled::Db, key: &[u8]) -> Result<Option<sled::IVec>, OutboxError> {
        db.get(key)
            .map_err(|e| storage("cannot read the buffer", e))
    }

    fn apply(
        &self,
        inner: &mut Inner,
        db: &sled::Db,
        batch: sled::Batch,
    ) -> Result<(), OutboxError> {
        self.shared.apply(inner, db, batch)
    }

    /// A queued record's key in the tree, its stored value and the record. There is no id index
    /// to keep up to date on every write: the record is looked up in each route with a backlog
    /// (a few dozen at most; this is the operator's and the retry path, not the hot one).
    fn find_queued(
        &self,
        inner: &Inner,
        db: &sled::Db,
        id: RecordId,
    ) -> Result<Option<(Vec<u8>, sled::IVec, Record)>, OutboxError> {
        let mut found = None;
        for route in inner.depth.keys() {
            let qk = queued_key(route, id);
            if let Some(v) = self.get_raw(db, &qk)? {
                found = Some((qk, v));
                break;
            }
        }
        let Some((qk, v)) = found else {
            return Ok(None);
        };
        match codec::decode_record(&v, &self.shared.store_id) {
            Ok((rec, _)) => Ok(Some((qk, v, rec))),
            Err(Undecodable(e)) => Err(storage("a buffered record cannot be read", e)),
        }
    }

    /// Moves an undecodable queued value to the dead letters so its route is not wedged.
    fn quarantine(&self, qk: &[u8], value: &[u8], why: &str) -> Result<(), OutboxError> {
        let (route, id) = split_queued_key(qk).unwrap_or_default();
        tracing::error!(route = %route, id, error = %why, "buffer: an undecodable record was moved to the dead letters");
        let rec = Record {
            id,
            message_id: codec::message_id(&self.shared.store_id, id),
            route: route.clone(),
            key: None,
            body: value.to_vec(),
            request_id: String::new(),
            enqueued_at_ms: 0,
            attempts: 0,
            last_error: None,
        };
        let dead = codec::encode_record(
            &rec,
            Some((&format!("undecodable record: {why}"), now_ms())),
            &self.shared.store_id,
        );
        let mut inner = self.lock();
        let open = self.open_store()?;
        let mut batch = sled::Batch::default();
        batch.remove(qk);
        batch.insert(id_key(DEAD, id), dead.as_slice());
        self.apply(&mut inner, &open.db, batch)?;
        inner.used = inner.used.saturating_sub(value.len() as u64) + dead.len() as u64;
        dec_depth(&mut inner, &route);
        Ok(())
    }

    /// Blocks until every write made so far is fsync'd.
    fn durable(&self) -> Result<(), OutboxError> {
        let ticket = self.shared.dur.submit(None);
        self.shared.dur.wait_for(ticket)
    }
}

/// Removes a queued record's entries (queue, index, and its key if the key points at it).
fn remove_queued(
    db: &sled::Db,
    batch: &mut sled::Batch,
    qk: &[u8],
    rec: &Record,
) -> Result<(), OutboxError> {
    batch.remove(qk);
    if let Some(key) = &rec.key {
        let kk = keyed_key(KEYED, &rec.route, key);
        if let Some(v) = db
            .get(&kk)
            .map_err(|e| storage("cannot read the buffer", e))?
        {
            let rest: Vec<RecordId> = ids_in(&v).filter(|id| *id != rec.id).collect();
            if rest.is_empty() {
                batch.remove(kk);
            } else {
                batch.insert(kk, ids_value(&rest));
            }
        }
    }
    Ok(())
}

/// Adds the store's state (a new change number) to a batch.
fn put_state(batch: &mut sled::Batch, inner: &mut Inner) {
    inner.seq += 1;
    inner.state_durable = inner.durable_seq;
    let state = State {
        seq: inner.seq,
        live: inner.live,
        max_id: inner.next_id.saturating_sub(1),
        durable: inner.durable_seq,
    };
    batch.insert(STATE_KEY, codec::json_frame(Kind::State, &state));
}

fn tomb(batch: &mut sled::Batch, inner: &Inner, id: RecordId) {
    let t = Tomb {
        id,
        seq: inner.seq + 1,
        at_ms: now_ms(),
    };
    batch.insert(id_key(TOMB, id), codec::json_frame(Kind::Tomb, &t));
}

/// The sidecar file's content for the state just written (and synced).
fn sidecar(inner: &Inner) -> salvage::Sidecar {
    salvage::Sidecar {
        state: State {
            seq: inner.seq,
            live: inner.live,
            max_id: inner.next_id.saturating_sub(1),
            durable: inner.seq,
        },
        marks: inner.marks.clone(),
    }
}

fn add_signed(n: u64, delta: i64) -> u64 {
    if delta >= 0 {
        n.saturating_add(delta as u64)
    } else {
        n.saturating_sub(delta.unsigned_abs())
    }
}

fn lock_inner(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    // A panic while holding the lock leaves figures, not the tree, suspect; go on.
    inner.lock().unwrap_or_else(|p| p.into_inner())
}

fn dec_depth(inner: &mut Inner, route: &str) {
    if let Some(d) = inner.depth.get_mut(route) {
        *d = d.saturating_sub(1);
        if *d == 0 {
            inner.depth.remove(route);
        }
    }
}

impl Drop for SledOutbox {
    fn drop(&mut self) {
        self.shared.dur.close();
        if let Some(t) = self.committer.take() {
            let _ = t.join();
        }
        if let Ok(Some(open)) = self.shared.slot.read().map(|s| s.clone()) {
            let _ = open.db.flush();
        }
    }
}

impl Outbox for SledOutbox {
    fn admit(
        &self,
        route: &str,
        key: Option<&str>,
        body: &[u8],
        request_id: &str,
    ) -> Result<Admission, OutboxError> {
        let sh = &self.shared;
        let mut inner = self.lock();
        sh.dur.check()?;
        let open = self.open_store()?;
        let db = &open.db;
        if let Some(key) = key {
            let pending = inner
                .pending_keys
                .get(&(route.to_string(), key.to_string()))
                .copied();
            if let Some(id) = pending {
                drop(inner);
                // The first call may still be waiting for its fsync.
                return Ok(Admission::AfterCommit {
                    ticket: sh.dur.submit(None),
                    then: Enqueued::AlreadyQueued(id),
                });
            }
            if let Some(v) = self.get_raw(db, &keyed_key(KEYED, route, key))? {
                // The oldest queued holder of the key.
                if let Some(id) =
                    ids_in(&v).find(|id| db.contains_key(queued_key(route, *id)).unwrap_or(false))
                {
                    drop(inner);
                    return Ok(Admission::AfterCommit {
                        ticket: sh.dur.submit(None),
                        then: Enqueued::AlreadyQueued(id),
                    });
                }
            }
            if let Some(answer) = self.cached(&mut inner, db, route, key)? {
                return Ok(Admission::Now(Enqueued::Delivered(answer)));
            }
        }
        let id = inner.next_id.max(1);
        let record = Record {
            id,
            message_id: codec::message_id(&sh.store_id, id),
            route: route.to_string(),
            key: key.map(str::to_string),
            body: body.to_vec(),
            request_id: request_id.to_string(),
            enqueued_at_ms: now_ms(),
            attempts: 0,
            last_error: None,
        };
        let value = codec::encode_record(&record, None, &sh.store_id);
        let size = value.len() as u64;
        if inner.used.saturating_add(size) > sh.max_bytes {
            return Err(OutboxError::Full {
                used: inner.used,
                max: sh.max_bytes,
            });
        }
        // The committer writes it, with every other call waiting, in one batch before its fsync.
        // Submitted under `inner`, so records reach the tree in id order.
        inner.next_id = id + 1;
        inner.used += size;
        inner.live += 1;
        *inner.depth.entry(route.to_string()).or_default() += 1;
        if let Some(key) = key {
            inner
                .pending_keys
                .insert((route.to_string(), key.to_string()), id);
        }
        let ticket = sh.dur.submit(Some(Pending {
            route: route.to_string(),
            key: key.map(str::to_string),
            id,
            value,
        }));
        drop(inner);
        Ok(Admission::AfterCommit {
            ticket,
            then: Enqueued::New(id),
        })
    }

    fn message_id(&self, id: RecordId) -> String {
        codec::message_id(&self.shared.store_id, id)
    }

    fn wait_durable(&self, ticket: u64) -> Result<(), OutboxError> {
        self.shared.dur.wait_for(ticket)
    }

    fn commits(&self) -> tokio::sync::watch::Receiver<Commits> {
        self.shared.dur.progress.subscribe()
    }

    fn health(&self) -> Health {
        let c = self.shared.dur.progress.borrow();
        Health {
            writable: c.writable,
            reason: c.reason.clone(),
            salvaged: self.salvage.as_ref().map_or(0, |r| r.salvaged),
            lost: self.salvage.as_ref().map_or(0, |r| r.lost),
            moved_to: self.salvage.as_ref().map(|r| r.moved_to.clone()),
        }
    }

    fn cached_result(&self, route: &str, key: &str) -> Result<Option<Vec<u8>>, OutboxError> {
        let mut inner = self.lock();
        let open = self.open_store()?;
        self.cached(&mut inner, &open.db, route, key)
    }

    fn head(&self, route: &str) -> Result<Option<Record>, OutboxError> {
        let (durable_id, skip): (RecordId, Vec<RecordId>) = {
            let inner = self.lock();
            self.shared.dur.check()?;
            let mut skip: Vec<RecordId> = inner.ghosts.iter().map(|(_, id)| *id).collect();
            skip.extend(inner.unrecorded.iter().map(|(r, _)| r.id));
            (inner.durable_id, skip)
        };
        let open = self.open_store()?;
        loop {
            let mut first = None;
            for item in open.db.scan_prefix(route_prefix(route)) {
                let (k, v) = item.map_err(|e| storage("cannot read the buffer", e))?;
                if split_queued_key(&k).is_some_and(|(_, id)| skip.contains(&id)) {
                    continue;
                }
                first = Some((k, v));
                break;
            }
            let Some((k, v)) = first else {
                return Ok(None);
            };
            match codec::decode_record(&v, &self.shared.store_id) {
                // Not yet on the platter: its caller has no answer yet, and may get a refusal.
                Ok((rec, _)) if rec.id > durable_id => return Ok(None),
                Ok((rec, _)) => return Ok(Some(rec)),
                Err(Undecodable(why)) => self.quarantine(&k, &v, &why)?,
            }
        }
    }

    fn routes(&self) -> Result<Vec<String>, OutboxError> {
        Ok(self.lock().depth.keys().cloned().collect())
    }

    fn depth(&self, route: &str) -> Result<u64, OutboxError> {
        Ok(self.lock().depth.get(route).copied().unwrap_or(0))
    }

    fn record_attempt(&self, id: RecordId, error: &str) -> Result<(), OutboxError> {
        let mut inner = self.lock();
        let open = self.open_store()?;
        let Some((qk, old, mut rec)) = self.find_queued(&inner, &open.db, id)? else {
            return Err(OutboxError::NotFound(id));
        };
        rec.attempts = rec.attempts.saturating_add(1);
        let mut e = error.to_string();
        if e.len() > MAX_ERROR_LEN {
            let mut cut = MAX_ERROR_LEN;
            while !e.is_char_boundary(cut) {
                cut -= 1;
            }
            e.truncate(cut);
        }
        rec.last_error = Some(e);
        let value = codec::encode_record(&rec, None, &self.shared.store_id);
        if let Err(e) = open.db.insert(qk, value.as_slice()) {
            return Err(self.failed(&mut inner, "cannot write the buffer", e));
        }
        inner.dirty = true;
        inner.used = inner.used.saturating_sub(old.len() as u64) + value.len() as u64;
        Ok(())
    }

    fn delivered(&self, record: &Record, answer: &[u8]) -> Result<(), OutboxError> {
        let mut inner = self.lock();
        let result = self.record_delivery(&mut inner, record, answer);
        if let Err(OutboxError::Storage(_)) = &result {
            // Delivered but not recorded: settled after the reopen, never sent again meanwhile.
            if !inner.unrecorded.iter().any(|(r, _)| r.id == record.id) {
                inner.unrecorded.push((record.clone(), answer.to_vec()));
            }
        }
        drop(inner);
        result?;
        if record.key.is_some() && !self.shared.result_ttl.is_zero() {
            // The recorded answer is what a retry of this key gets: on disk before the caller
            // could retry.
            self.durable()?;
        }
        Ok(())
    }

    fn dead_letter(&self, record: &Record, reason: &str) -> Result<(), OutboxError> {
        let mut inner = self.lock();
        let open = self.open_store()?;
        let Some((qk, old, rec)) = self.find_queued(&inner, &open.db, record.id)? else {
            return Err(OutboxError::NotFound(record.id));
        };
        let value = codec::encode_record(&rec, Some((reason, now_ms())), &self.shared.store_id);
        let mut batch = sled::Batch::default();
        remove_queued(&open.db, &mut batch, &qk, &rec)?;
        batch.insert(id_key(DEAD, rec.id), value.as_slice());
        self.apply(&mut inner, &open.db, batch)?;
        inner.used = inner.used.saturating_sub(old.len() as u64) + value.len() as u64;
        dec_depth(&mut inner, &rec.route);
        Ok(())
    }

    fn list(
        &self,
        dead: bool,
        route: Option<&str>,
        after: Option<RecordId>,
        limit: usize,
    ) -> Result<Vec<DeadOrLive>, OutboxError> {
        let open = self.open_store()?;
        let store = &self.shared.store_id;
        let from = after.map_or(0, |a| a.saturating_add(1));
        let mut out = Vec::new();
        if dead {
            let start = id_key(DEAD, from);
            let end = [DEAD + 1];
            for item in open.db.range(start.as_slice()..end.as_slice()) {
                if out.len() >= limit {
                    break;
                }
                let (_, v) = item.map_err(|e| storage("cannot read the buffer", e))?;
                let Ok((record, Some((reason, dead_at_ms)))) = codec::decode_record(&v, store)
                else {
                    continue;
                };
                if route.is_none_or(|r| r == record.route) {
                    out.push(DeadOrLive::Dead(DeadRecord {
                        record,
                        reason,
                        dead_at_ms,
                    }));
                }
            }
            return Ok(out);
        }
        let routes = match route {
            Some(r) => vec![r.to_string()],
            None => self.routes()?,
        };
        let mut all = Vec::new();
        for r in routes {
            let start = queued_key(&r, from);
            let prefix = route_prefix(&r);
            for item in open.db.range(start.as_slice()..).take(limit) {
                let (k, v) = item.map_err(|e| storage("cannot read the buffer", e))?;
                if !k.starts_with(&prefix) {
                    break;
                }
                if let Ok((rec, _)) = codec::decode_record(&v, store) {
                    all.push(rec);
                }
            }
        }
        all.sort_by_key(|r| r.id);
        all.truncate(limit);
        Ok(all.into_iter().map(DeadOrLive::Live).collect())
    }

    fn get(&self, id: RecordId) -> Result<Option<DeadOrLive>, OutboxError> {
        let open = self.open_store()?;
        let queued = self.find_queued(&self.lock(), &open.db, id)?;
        if let Some((_, _, rec)) = queued {
            return Ok(Some(DeadOrLive::Live(rec)));
        }
        let Some(v) = self.get_raw(&open.db, &id_key(DEAD, id))? else {
            return Ok(None);
        };
        match codec::decode_record(&v, &self.shared.store_id) {
            Ok((record, Some((reason, dead_at_ms)))) => Ok(Some(DeadOrLive::Dead(DeadRecord {
                record,
                reason,
                dead_at_ms,
            }))),
            Ok((_, None)) => Err(storage("a dead record cannot be read", "no reason stored")),
            Err(Undecodable(e)) => Err(storage("a dead record cannot be read", e)),
        }
    }

    fn retry(&self, id: RecordId) -> Result<RecordId, OutboxError> {
        let mut inner = self.lock();
        let open = self.open_store()?;
        let db = &open.db;
        let dk = id_key(DEAD, id);
        let Some(old) = self.get_raw(db, &dk)? else {
            return Err(OutboxError::NotFound(id));
        };
        let (mut rec, _) = codec::decode_record(&old, &self.shared.store_id)
            .map_err(|Undecodable(e)| storage("a dead record cannot be read", e))?;
        rec.attempts = 0;
        rec.last_error = None;
        // Back of the queue: a new id, so FIFO order stays the order of the ids. The message id
        // stays: it is the same message to the cloud.
        rec.id = inner.next_id.max(1);
        inner.next_id = rec.id + 1;
        // Its age counts from now, or the TTL would send it straight back.
        rec.enqueued_at_ms = now_ms();
        let value = codec::encode_record(&rec, None, &self.shared.store_id);
        let mut batch = sled::Batch::default();
        batch.remove(dk);
        tomb(&mut batch, &inner, id);
        batch.insert(queued_key(&rec.route, rec.id), value.as_slice());
        if let Some(key) = &rec.key {
            // Another record with the key may be queued meanwhile: both hold it, oldest first.
            let kk = keyed_key(KEYED, &rec.route, key);
            let mut holders: Vec<RecordId> = match self.get_raw(db, &kk)? {
                Some(v) => ids_in(&v).collect(),
                None => Vec::new(),
            };
            holders.push(rec.id);
            batch.insert(kk, ids_value(&holders));
        }
        self.apply(&mut inner, db, batch)?;
        inner.used = inner.used.saturating_sub(old.len() as u64) + value.len() as u64;
        *inner.depth.entry(rec.route.clone()).or_default() += 1;
        drop(inner);
        self.durable()?;
        Ok(rec.id)
    }

    fn drop_record(&self, id: RecordId) -> Result<(), OutboxError> {
        let mut inner = self.lock();
        let open = self.open_store()?;
        let db = &open.db;
        let mut batch = sled::Batch::default();
        tomb(&mut batch, &inner, id);
        if let Some((qk, old, rec)) = self.find_queued(&inner, db, id)? {
            remove_queued(db, &mut batch, &qk, &rec)?;
            inner.live = inner.live.saturating_sub(1);
            self.apply(&mut inner, db, batch)?;
            inner.used = inner.used.saturating_sub(old.len() as u64);
            dec_depth(&mut inner, &rec.route);
        } else {
            let dk = id_key(DEAD, id);
            let Some(old) = self.get_raw(db, &dk)? else {
                return Err(OutboxError::NotFound(id));
            };
            batch.remove(dk);
            inner.live = inner.live.saturating_sub(1);
            self.apply(&mut inner, db, batch)?;
            inner.used = inner.used.saturating_sub(old.len() as u64);
        }
        drop(inner);
        self.durable()
    }

    fn stats(&self) -> Result<(Vec<RouteStats>, u64), OutboxError> {
        let (depths, used) = {
            let inner = self.lock();
            (inner.depth.clone(), inner.used)
        };
        let open = self.open_store()?;
        let mut by_route: HashMap<String, RouteStats> = HashMap::new();
        for (route, depth) in depths {
            let oldest = match open.db.scan_prefix(route_prefix(&route)).next() {
                Some(Ok((_, v))) => codec::decode_record(&v, &self.shared.store_id)
                    .ok()
                    .map(|(r, _)| r.enqueued_at_ms),
                Some(Err(e)) => return Err(storage("cannot read the buffer", e)),
                None => None,
            };
            by_route.insert(
                route.clone(),
                RouteStats {
                    route,
                    depth,
                    oldest_enqueued_at_ms: oldest,
                    dead: 0,
                },
            );
        }
        for item in open.db.scan_prefix([DEAD]) {
            let (_, v) = item.map_err(|e| storage("cannot read the buffer", e))?;
            let route = codec::decode_record(&v, &self.shared.store_id)
                .map(|(r, _)| r.route)
                .unwrap_or_else(|_| "?".into());
            by_route
                .entry(route.clone())
                .or_insert_with(|| RouteStats {
                    route,
                    ..RouteStats::default()
                })
                .dead += 1;
        }
        let mut out: Vec<RouteStats> = by_route.into_values().collect();
        out.sort_by(|a, b| a.route.cmp(&b.route));
        Ok((out, used))
    }
}
