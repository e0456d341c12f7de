//! The sled engine behind [`Outbox`].
//!
//! Everything lives in one sled tree, under one-byte prefixes, so that every change that touches
//! several entries is one `apply_batch` — crash-atomic in sled 0.34:
//!
//! | key                          | value                                  |
//! |------------------------------|----------------------------------------|
//! | `q` route `\0` id (8, BE)    | a queued record                        |
//! | `k` route `\0` key           | ids (8, BE each) of queued holders     |
//! | `r` route `\0` key           | expiry (8, BE) + the delivered answer  |
//! | `d` id                       | a dead record                          |
//!
//! A record is found by id by looking in each route with a backlog (no id index to write on the
//! hot path).
//!
//! Durability: sled's own `flush()` ends, on Linux, in `sync_file_range`, which does not survive
//! a power cut. An enqueue is acknowledged only after a real `fsync` of the log file (and of any
//! new blob file). Group commit: callers hand their encoded record to one committer thread,
//! which writes every waiting record in one batch, then `flush` + `fsync` once for all of them
//! and for every other write made before; a burst of callers shares one batch and one fsync.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{
    now_ms, Admission, Commits, DeadOrLive, DeadRecord, Enqueued, Outbox, OutboxError, Record,
    RecordId, RouteStats,
};

const QUEUED: u8 = b'q';
const KEYED: u8 = b'k';
const RESULT: u8 = b'r';
const DEAD: u8 = b'd';

/// Format version of stored record values.
const VALUE_VERSION: u8 = 1;

/// `last_error` is kept short: it is a diagnosis, not a log.
const MAX_ERROR_LEN: usize = 300;

/// sled's page cache. Records are written once and read once; a small cache is enough.
const CACHE_BYTES: u64 = 16 << 20;

/// A durable, fsync'd outbox in a sled directory.
pub struct SledOutbox {
    path: PathBuf,
    tree: sled::Db,
    max_bytes: u64,
    result_ttl: Duration,
    /// Serialises every change, so check-then-write (keys, quota) is atomic and the figures below
    /// match the tree. Shared with the committer thread, which writes new records.
    inner: Arc<Mutex<Inner>>,
    durability: Arc<Durability>,
    committer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SledOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledOutbox")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Inner {
    /// Queued records per route, those waiting for the committer included (routes with none are
    /// removed).
    depth: HashMap<String, u64>,
    /// Bytes of queued and dead record values (pending ones included): what the quota counts.
    used: u64,
    /// Keys of records accepted but not yet written by the committer: (route, key) → id.
    pending_keys: HashMap<(String, String), RecordId>,
}

/// A new record on its way into the tree: the committer writes every waiting one in one batch.
struct Pending {
    route: String,
    key: Option<String>,
    id: RecordId,
    value: Vec<u8>,
}

/// Record metadata, stored as JSON before the raw body.
#[derive(Serialize, Deserialize)]
struct Meta {
    id: RecordId,
    route: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    request_id: String,
    enqueued_at_ms: u64,
    attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dead_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dead_at_ms: Option<u64>,
}

fn storage(what: &str, e: impl std::fmt::Display) -> OutboxError {
    OutboxError::Storage(format!("{what}: {e}"))
}

/// `[version][meta length u32 LE][meta JSON][body]`.
fn encode(record: &Record, dead: Option<(&str, u64)>) -> Vec<u8> {
    let meta = Meta {
        id: record.id,
        route: record.route.clone(),
        key: record.key.clone(),
        request_id: record.request_id.clone(),
        enqueued_at_ms: record.enqueued_at_ms,
        attempts: record.attempts,
        last_error: record.last_error.clone(),
        dead_reason: dead.map(|(r, _)| r.to_string()),
        dead_at_ms: dead.map(|(_, at)| at),
    };
    // Serialising a struct of strings and integers cannot fail.
    let meta = serde_json::to_vec(&meta).unwrap_or_default();
    let mut out = Vec::with_capacity(5 + meta.len() + record.body.len());
    out.push(VALUE_VERSION);
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    out.extend_from_slice(&meta);
    out.extend_from_slice(&record.body);
    out
}

#[derive(Debug)]
struct Undecodable(String);

fn decode(value: &[u8]) -> Result<(Record, Option<(String, u64)>), Undecodable> {
    let (&version, rest) = value
        .split_first()
        .ok_or_else(|| Undecodable("empty value".into()))?;
    if version != VALUE_VERSION {
        return Err(Undecodable(format!("unknown record version {version}")));
    }
    let len_bytes: [u8; 4] = rest
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Undecodable("truncated header".into()))?;
    let len = u32::from_le_bytes(len_bytes) as usize;
    let meta_bytes = rest
        .get(4..4usize.saturating_add(len))
        .ok_or_else(|| Undecodable("truncated metadata".into()))?;
    let body = rest.get(4 + len..).unwrap_or_default().to_vec();
    let meta: Meta = serde_json::from_slice(meta_bytes)
        .map_err(|e| Undecodable(format!("bad metadata: {e}")))?;
    let dead = match (meta.dead_reason, meta.dead_at_ms) {
        (Some(r), Some(at)) => Some((r, at)),
        _ => None,
    };
    Ok((
        Record {
            id: meta.id,
            route: meta.route,
            key: meta.key,
            body,
            request_id: meta.request_id,
            enqueued_at_ms: meta.enqueued_at_ms,
            attempts: meta.attempts,
            last_error: meta.last_error,
        },
        dead,
    ))
}

fn key2(prefix: u8, a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + a.len() + b.len());
    k.push(prefix);
    k.extend_from_slice(a);
    k.push(0);
    k.extend_from_slice(b);
    k
}

fn queued_key(route: &str, id: RecordId) -> Vec<u8> {
    key2(QUEUED, route.as_bytes(), &id.to_be_bytes())
}

fn route_prefix(route: &str) -> Vec<u8> {
    key2(QUEUED, route.as_bytes(), &[])
}

fn id_key(prefix: u8, id: RecordId) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(prefix);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn keyed_key(prefix: u8, route: &str, key: &str) -> Vec<u8> {
    key2(prefix, route.as_bytes(), key.as_bytes())
}

/// Route and id out of a `q` key.
fn split_queued_key(k: &[u8]) -> Option<(String, RecordId)> {
    if k.len() < 10 || k[0] != QUEUED || k[k.len() - 9] != 0 {
        return None;
    }
    let id = u64::from_be_bytes(k[k.len() - 8..].try_into().ok()?);
    let route = String::from_utf8_lossy(&k[1..k.len() - 9]).into_owned();
    Some((route, id))
}

/// The ids in a `k` entry: the queued records holding the key, oldest first.
fn ids_in(v: &[u8]) -> impl Iterator<Item = RecordId> + '_ {
    v.chunks_exact(8)
        .filter_map(|c| c.try_into().ok().map(u64::from_be_bytes))
}

fn ids_value(ids: &[RecordId]) -> Vec<u8> {
    ids.iter().flat_map(|id| id.to_be_bytes()).collect()
}

impl SledOutbox {
    /// Opens (or creates) the store at `path`. Fails if another process holds it.
    pub fn open(
        path: &Path,
        max_bytes: u64,
        result_ttl: Duration,
    ) -> Result<SledOutbox, OutboxError> {
        let db = open_db(path).map_err(|e| match e {
            OpenError::Sled(e) => storage("cannot open the buffer", e),
            OpenError::Panicked(m) => storage("the buffer store is damaged", m),
        })?;
        Self::with_db(path, db, max_bytes, result_ttl)
    }

    /// Opens the store; if it is damaged (not merely locked or unreadable for permissions), moves
    /// the directory aside to `<path>.corrupt-<unix time>` and starts an empty one, returning
    /// where the old one went. A restart after that does not meet the damage again.
    pub fn open_or_move_aside(
        path: &Path,
        max_bytes: u64,
        result_ttl: Duration,
    ) -> Result<(SledOutbox, Option<PathBuf>), OutboxError> {
        let damage = match open_db(path) {
            Ok(db) => return Ok((Self::with_db(path, db, max_bytes, result_ttl)?, None)),
            Err(OpenError::Panicked(m)) => m,
            Err(OpenError::Sled(e)) => {
                if !is_damage(&e) {
                    return Err(storage("cannot open the buffer", e));
                }
                e.to_string()
            }
        };
        let aside = aside_path(path);
        std::fs::rename(path, &aside).map_err(|e| {
            storage(
                "the buffer store is damaged and could not be moved aside",
                format!("{damage}; rename to {}: {e}", aside.display()),
            )
        })?;
        tracing::error!(damage = %damage, "buffer store damaged");
        let db = open_db(path).map_err(|e| match e {
            OpenError::Sled(e) => storage("cannot create a new buffer", e),
            OpenError::Panicked(m) => storage("cannot create a new buffer", m),
        })?;
        Ok((Self::with_db(path, db, max_bytes, result_ttl)?, Some(aside)))
    }

    fn with_db(
        path: &Path,
        tree: sled::Db,
        max_bytes: u64,
        result_ttl: Duration,
    ) -> Result<SledOutbox, OutboxError> {
        // The log file and the directory entries sled created must be durable before any
        // acknowledgement counts on them.
        sync_dir(path);
        if let Some(parent) = path.parent() {
            sync_dir(parent);
        }
        let log = File::open(path.join("db"))
            .map_err(|e| storage("cannot open the buffer log for fsync", e))?;
        let mut inner = Inner::default();
        let now = now_ms();
        let mut expired = sled::Batch::default();
        for item in tree.iter() {
            let (k, v) = item.map_err(|e| storage("cannot read the buffer", e))?;
            match k.first() {
                Some(&QUEUED) => {
                    if let Some((route, _)) = split_queued_key(&k) {
                        *inner.depth.entry(route).or_default() += 1;
                    }
                    inner.used += v.len() as u64;
                }
                Some(&DEAD) => inner.used += v.len() as u64,
                Some(&RESULT) if expiry(&v) <= now => expired.remove(k),
                _ => {}
            }
        }
        tree.apply_batch(expired)
            .map_err(|e| storage("cannot clean the result cache", e))?;
        let durability = Arc::new(Durability::default());
        let inner = Arc::new(Mutex::new(inner));
        let committer = {
            let d = durability.clone();
            let db = tree.clone();
            let dir = path.to_path_buf();
            let inner = inner.clone();
            std::thread::Builder::new()
                .name("prefront-fsync".into())
                .spawn(move || d.run(&db, &inner, &log, &dir))
                .map_err(|e| storage("cannot start the fsync thread", e))?
        };
        Ok(SledOutbox {
            path: path.to_path_buf(),
            tree,
            max_bytes,
            result_ttl,
            inner,
            durability,
            committer: Some(committer),
        })
    }

    /// Bytes of records (queued and dead) counted against `max_bytes`.
    pub fn used_bytes(&self) -> u64 {
        self.lock().used
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock_inner(&self.inner)
    }

    fn get_raw(&self, key: &[u8]) -> Result<Option<sled::IVec>, OutboxError> {
        self.tree
            .get(key)
            .map_err(|e| storage("cannot read the buffer", e))
    }

    fn apply(&self, batch: sled::Batch) -> Result<(), OutboxError> {
        self.tree
            .apply_batch(batch)
            .map_err(|e| storage("cannot write the buffer", e))
    }

    /// A queued record's key in the tree, its stored value and the record. There is no id index
    /// to keep up to date on every write: the record is looked up in each route with a backlog
    /// (a few dozen at most; this is the operator's and the retry path, not the hot one).
    fn find_queued(
        &self,
        inner: &Inner,
        id: RecordId,
    ) -> Result<Option<(Vec<u8>, sled::IVec, Record)>, OutboxError> {
        let mut found = None;
        for route in inner.depth.keys() {
            let qk = queued_key(route, id);
            if let Some(v) = self.get_raw(&qk)? {
                found = Some((qk, v));
                break;
            }
        }
        let Some((qk, v)) = found else {
            return Ok(None);
        };
        match decode(&v) {
            Ok((rec, _)) => Ok(Some((qk, v, rec))),
            Err(Undecodable(e)) => Err(storage("a buffered record cannot be read", e)),
        }
    }

    /// Removes a queued record's entries (queue, index, and its key if the key points at it).
    fn remove_queued(
        &self,
        batch: &mut sled::Batch,
        qk: &[u8],
        rec: &Record,
    ) -> Result<(), OutboxError> {
        batch.remove(qk);
        if let Some(key) = &rec.key {
            let kk = keyed_key(KEYED, &rec.route, key);
            if let Some(v) = self.get_raw(&kk)? {
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

    /// Moves an undecodable queued value to the dead letters so its route is not wedged.
    fn quarantine(&self, qk: &[u8], value: &[u8], why: &str) -> Result<(), OutboxError> {
        let (route, id) = split_queued_key(qk).unwrap_or_default();
        tracing::error!(route = %route, id, error = %why, "buffer: an undecodable record was moved to the dead letters");
        let rec = Record {
            id,
            route: route.clone(),
            key: None,
            body: value.to_vec(),
            request_id: String::new(),
            enqueued_at_ms: 0,
            attempts: 0,
            last_error: None,
        };
        let dead = encode(
            &rec,
            Some((&format!("undecodable record: {why}"), now_ms())),
        );
        let mut inner = self.lock();
        let mut batch = sled::Batch::default();
        batch.remove(qk);
        batch.insert(id_key(DEAD, id), dead.as_slice());
        self.apply(batch)?;
        inner.used = inner.used.saturating_sub(value.len() as u64) + dead.len() as u64;
        dec_depth(&mut inner, &route);
        Ok(())
    }

    /// A new record id: increasing over the store's life, restarts included, and never 0.
    fn next_id(&self) -> Result<RecordId, OutboxError> {
        self.tree
            .generate_id()
            .map(|id| id.saturating_add(1))
            .map_err(|e| storage("cannot number a record", e))
    }

    /// Blocks until every write made so far is fsync'd.
    fn durable(&self) -> Result<(), OutboxError> {
        let ticket = self.durability.submit(None);
        self.durability.wait_for(ticket)
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

fn expiry(v: &[u8]) -> u64 {
    v.get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

impl Drop for SledOutbox {
    fn drop(&mut self) {
        self.durability.close();
        if let Some(t) = self.committer.take() {
            let _ = t.join();
        }
        let _ = self.tree.flush();
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
        let mut inner = self.lock();
        if let Some(key) = key {
            let pending = inner
                .pending_keys
                .get(&(route.to_string(), key.to_string()))
                .copied();
            if let Some(id) = pending {
                drop(inner);
                // The first call may still be waiting for its fsync.
                return Ok(Admission::AfterCommit {
                    ticket: self.durability.submit(None),
                    then: Enqueued::AlreadyQueued(id),
                });
            }
            if let Some(v) = self.get_raw(&keyed_key(KEYED, route, key))? {
                // The oldest queued holder of the key.
                if let Some(id) = ids_in(&v).find(|id| {
                    self.tree
                        .contains_key(queued_key(route, *id))
                        .unwrap_or(false)
                }) {
                    drop(inner);
                    // The first call may still be waiting for its fsync.
                    return Ok(Admission::AfterCommit {
                        ticket: self.durability.submit(None),
                        then: Enqueued::AlreadyQueued(id),
                    });
                }
            }
            let rk = keyed_key(RESULT, route, key);
            if let Some(v) = self.get_raw(&rk)? {
                if expiry(&v) > now_ms() {
                    return Ok(Admission::Now(Enqueued::Delivered(
                        v.get(8..).unwrap_or_default().to_vec(),
                    )));
                }
                let _ = self.tree.remove(rk);
            }
        }
        let id = self.next_id()?;
        let record = Record {
            id,
            route: route.to_string(),
            key: key.map(str::to_string),
            body: body.to_vec(),
            request_id: request_id.to_string(),
            enqueued_at_ms: now_ms(),
            attempts: 0,
            last_error: None,
        };
        let value = encode(&record, None);
        let size = value.len() as u64;
        if inner.used.saturating_add(size) > self.max_bytes {
            return Err(OutboxError::Full {
                used: inner.used,
                max: self.max_bytes,
            });
        }
        self.durability.check()?;
        // The committer writes it, with every other call waiting, in one batch before its fsync.
        // Submitted under `inner`, so records reach the tree in id order.
        inner.used += size;
        *inner.depth.entry(route.to_string()).or_default() += 1;
        if let Some(key) = key {
            inner
                .pending_keys
                .insert((route.to_string(), key.to_string()), id);
        }
        let ticket = self.durability.submit(Some(Pending {
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

    fn wait_durable(&self, ticket: u64) -> Result<(), OutboxError> {
        self.durability.wait_for(ticket)
    }

    fn commits(&self) -> tokio::sync::watch::Receiver<Commits> {
        self.durability.progress.subscribe()
    }

    fn head(&self, route: &str) -> Result<Option<Record>, OutboxError> {
        loop {
            let first = self
                .tree
                .scan_prefix(route_prefix(route))
                .next()
                .transpose()
                .map_err(|e| storage("cannot read the buffer", e))?;
            let Some((k, v)) = first else {
                return Ok(None);
            };
            match decode(&v) {
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
        let Some((qk, old, mut rec)) = self.find_queued(&inner, id)? else {
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
        let value = encode(&rec, None);
        self.tree
            .insert(qk, value.as_slice())
            .map_err(|e| storage("cannot write the buffer", e))?;
        inner.used = inner.used.saturating_sub(old.len() as u64) + value.len() as u64;
        Ok(())
    }

    fn delivered(&self, record: &Record, answer: &[u8]) -> Result<(), OutboxError> {
        let mut inner = self.lock();
        let qk = queued_key(&record.route, record.id);
        if record.key.is_none() {
            // The common case, one removal: no key to release, no answer to keep.
            let old = self
                .tree
                .remove(&qk)
                .map_err(|e| storage("cannot write the buffer", e))?
                .ok_or(OutboxError::NotFound(record.id))?;
            inner.used = inner.used.saturating_sub(old.len() as u64);
            dec_depth(&mut inner, &record.route);
            return Ok(());
        }
        let Some(old) = self.get_raw(&qk)? else {
            return Err(OutboxError::NotFound(record.id));
        };
        let rec = decode(&old)
            .map_err(|Undecodable(e)| storage("a buffered record cannot be read", e))?
            .0;
        let mut batch = sled::Batch::default();
        self.remove_queued(&mut batch, &qk, &rec)?;
        if let (Some(key), false) = (&rec.key, self.result_ttl.is_zero()) {
            let expires = now_ms().saturating_add(self.result_ttl.as_millis() as u64);
            let mut v = expires.to_be_bytes().to_vec();
            v.extend_from_slice(answer);
            batch.insert(keyed_key(RESULT, &rec.route, key), v);
        }
        self.apply(batch)?;
        inner.used = inner.used.saturating_sub(old.len() as u64);
        dec_depth(&mut inner, &rec.route);
        Ok(())
    }

    fn dead_letter(&self, record: &Record, reason: &str) -> Result<(), OutboxError> {
        let mut inner = self.lock();
        let Some((qk, old, rec)) = self.find_queued(&inner, record.id)? else {
            return Err(OutboxError::NotFound(record.id));
        };
        let value = encode(&rec, Some((reason, now_ms())));
        let mut batch = sled::Batch::default();
        self.remove_queued(&mut batch, &qk, &rec)?;
        batch.insert(id_key(DEAD, rec.id), value.as_slice());
        self.apply(batch)?;
        inner.used = inner.used.saturating_sub(old.len() as u64) + value.len() as u64;
        dec_depth(&mut inner, &rec.route);
        Ok(())
    }

    fn list(
        &self,
        dead: bool,
        route: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadOrLive>, OutboxError> {
        let mut out = Vec::new();
        if dead {
            for item in self.tree.scan_prefix([DEAD]) {
                if out.len() >= limit {
                    break;
                }
                let (_, v) = item.map_err(|e| storage("cannot read the buffer", e))?;
                let Ok((record, Some((reason, dead_at_ms)))) = decode(&v) else {
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
            for item in self.tree.scan_prefix(route_prefix(&r)).take(limit) {
                let (_, v) = item.map_err(|e| storage("cannot read the buffer", e))?;
                if let Ok((rec, _)) = decode(&v) {
                    all.push(rec);
                }
            }
        }
        all.sort_by_key(|r| r.id);
        all.truncate(limit);
        Ok(all.into_iter().map(DeadOrLive::Live).collect())
    }

    fn get(&self, id: RecordId) -> Result<Option<DeadOrLive>, OutboxError> {
        let queued = self.find_queued(&self.lock(), id)?;
        if let Some((_, _, rec)) = queued {
            return Ok(Some(DeadOrLive::Live(rec)));
        }
        let Some(v) = self.get_raw(&id_key(DEAD, id))? else {
            return Ok(None);
        };
        match decode(&v) {
            Ok((record, Some((reason, dead_at_ms)))) => Ok(Some(DeadOrLive::Dead(DeadRecord {
                record,
                reason,
                dead_at_ms,
            }))),
            Ok((_, None)) => Err(storage("a dead record cannot be read", "no reason stored")),
            Err(Undecodable(e)) => Err(storage("a dead record cannot be read", e)),
        }
    }

    fn retry(&self, id: RecordId) -> Result<(), OutboxError> {
        let mut inner = self.lock();
        let dk = id_key(DEAD, id);
        let Some(old) = self.get_raw(&dk)? else {
            return Err(OutboxError::NotFound(id));
        };
        let (mut rec, _) =
            decode(&old).map_err(|Undecodable(e)| storage("a dead record cannot be read", e))?;
        rec.attempts = 0;
        rec.last_error = None;
        // Back of the queue: a new id, so FIFO order stays the order of the ids.
        rec.id = self.next_id()?;
        // Its age counts from now, or the TTL would send it straight back.
        rec.enqueued_at_ms = now_ms();
        let value = encode(&rec, None);
        let mut batch = sled::Batch::default();
        batch.remove(dk);
        batch.insert(queued_key(&rec.route, rec.id), value.as_slice());
        if let Some(key) = &rec.key {
            // Another record with the key may be queued meanwhile: both hold it, oldest first.
            let kk = keyed_key(KEYED, &rec.route, key);
            let mut holders: Vec<RecordId> = match self.get_raw(&kk)? {
                Some(v) => ids_in(&v).collect(),
                None => Vec::new(),
            };
            holders.push(rec.id);
            batch.insert(kk, ids_value(&holders));
        }
        self.apply(batch)?;
        inner.used = inner.used.saturating_sub(old.len() as u64) + value.len() as u64;
        *inner.depth.entry(rec.route.clone()).or_default() += 1;
        drop(inner);
        self.durable()
    }

    fn drop_record(&self, id: RecordId) -> Result<(), OutboxError> {
        let mut inner = self.lock();
        let mut batch = sled::Batch::default();
        if let Some((qk, old, rec)) = self.find_queued(&inner, id)? {
            self.remove_queued(&mut batch, &qk, &rec)?;
            self.apply(batch)?;
            inner.used = inner.used.saturating_sub(old.len() as u64);
            dec_depth(&mut inner, &rec.route);
        } else {
            let dk = id_key(DEAD, id);
            let Some(old) = self.get_raw(&dk)? else {
                return Err(OutboxError::NotFound(id));
            };
            batch.remove(dk);
            self.apply(batch)?;
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
        let mut by_route: HashMap<String, RouteStats> = HashMap::new();
        for (route, depth) in depths {
            let oldest = self.head(&route)?.map(|r| r.enqueued_at_ms);
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
        for item in self.tree.scan_prefix([DEAD]) {
            let (_, v) = item.map_err(|e| storage("cannot read the buffer", e))?;
            let route = decode(&v)
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

enum OpenError {
    Sled(sled::Error),
    Panicked(String),
}

fn open_db(path: &Path) -> Result<sled::Db, OpenError> {
    let config = sled::Config::new().path(path).cache_capacity(CACHE_BYTES);
    // sled may panic on some damaged files rather than return an error; at start-up that must
    // become a clear report, not a crash loop.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| config.open())) {
        Ok(r) => r.map_err(OpenError::Sled),
        Err(p) => Err(OpenError::Panicked(
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "sled panicked while opening the store".into()),
        )),
    }
}

/// Damage (worth moving aside) as opposed to a lock held by another process, a permission
/// problem or a missing disk, which moving would not fix.
fn is_damage(e: &sled::Error) -> bool {
    match e {
        sled::Error::Corruption { .. }
        | sled::Error::ReportableBug(_)
        | sled::Error::Unsupported(_) => true,
        sled::Error::Io(io) => matches!(
            io.kind(),
            std::io::ErrorKind::InvalidData
                | std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::InvalidInput
        ),
        _ => false,
    }
}

fn aside_path(path: &Path) -> PathBuf {
    let stamp = now_ms() / 1000;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "buffer".into());
    let mut n = 0;
    loop {
        let candidate = path.with_file_name(if n == 0 {
            format!("{name}.corrupt-{stamp}")
        } else {
            format!("{name}.corrupt-{stamp}-{n}")
        });
        if !candidate.exists() {
            return candidate;
        }
        n += 1;
    }
}

/// fsync of a directory, so the entries in it are durable. Not possible on Windows, where
/// NTFS journals metadata anyway.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Group commit: writers take a ticket after their write; the committer thread makes everything
/// written before it started durable and hands out the tickets up to that point. Threads wait on
/// `done`; async callers watch `progress`.
struct Durability {
    state: Mutex<DurState>,
    work: Condvar,
    done: Condvar,
    progress: tokio::sync::watch::Sender<Commits>,
}

impl Default for Durability {
    fn default() -> Self {
        Durability {
            state: Mutex::default(),
            work: Condvar::new(),
            done: Condvar::new(),
            progress: tokio::sync::watch::Sender::new(Commits::default()),
        }
    }
}

#[derive(Default)]
struct DurState {
    /// Tickets handed out.
    requested: u64,
    /// New records for the next commit, in id order.
    pending: Vec<Pending>,
    /// Tickets made durable, a failed fsync, closing: what `progress` publishes.
    commits: Commits,
}

impl Durability {
    fn lock(&self) -> MutexGuard<'_, DurState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check(&self) -> Result<(), OutboxError> {
        match &self.lock().commits.failed {
            Some(e) => Err(storage(
                "the buffer disk failed earlier (restart the gateway after checking the disk)",
                e,
            )),
            None => Ok(()),
        }
    }

    /// Hands in a new record (if any) for the next commit; returns the ticket to wait for. Every
    /// write made to the tree before this call is covered by the same commit.
    fn submit(&self, record: Option<Pending>) -> u64 {
        let mut s = self.lock();
        s.requested += 1;
        s.pending.extend(record);
        self.work.notify_one();
        s.requested
    }

    /// Blocks until the commit that covers `ticket` is durable (or failed).
    fn wait_for(&self, ticket: u64) -> Result<(), OutboxError> {
        let mut s = self.lock();
        loop {
            if let Some(outcome) = s.commits.outcome(ticket) {
                return outcome;
            }
            s = self.done.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn close(&self) {
        let mut s = self.lock();
        s.commits.closing = true;
        self.work.notify_all();
        self.publish(s);
    }

    /// Wakes the threads waiting for a commit and publishes the progress to the tasks.
    fn publish(&self, s: MutexGuard<'_, DurState>) {
        let commits = s.commits.clone();
        drop(s);
        self.done.notify_all();
        self.progress.send_replace(commits);
    }

    /// The committer thread: writes the waiting records in one crash-atomic batch, then makes
    /// that and everything else written so far durable with one flush + fsync.
    fn run(&self, db: &sled::Db, inner: &Mutex<Inner>, log: &File, dir: &Path) {
        let mut blobs_synced: HashSet<std::ffi::OsString> = HashSet::new();
        loop {
            {
                let mut s = self.lock();
                while s.requested == s.commits.durable && !s.commits.closing {
                    s = self.work.wait(s).unwrap_or_else(|p| p.into_inner());
                }
                if s.requested == s.commits.durable {
                    return;
                }
            }
            let (target, written) = {
                // Lock order as in `enqueue`: `inner`, then the state.
                let mut inner = lock_inner(inner);
                let (target, pending) = {
                    let mut s = self.lock();
                    (s.requested, std::mem::take(&mut s.pending))
                };
                (target, write_pending(db, &mut inner, pending))
            };
            let result = written
                .and_then(|_| db.flush().map_err(|e| e.to_string()))
                .and_then(|_| log.sync_data().map_err(|e| e.to_string()))
                .and_then(|_| {
                    sync_new_blobs(&dir.join("blobs"), &mut blobs_synced).map_err(|e| e.to_string())
                });
            let mut s = self.lock();
            match result {
                Ok(()) => s.commits.durable = target,
                Err(e) => {
                    tracing::error!(error = %e, "buffer: fsync failed; buffered calls are refused until a restart");
                    s.commits.failed = Some(e);
                }
            }
            self.publish(s);
        }
    }
}

/// Writes accepted records (queue entry, id index, key holders) as one batch.
fn write_pending(db: &sled::Db, inner: &mut Inner, pending: Vec<Pending>) -> Result<(), String> {
    if pending.is_empty() {
        return Ok(());
    }
    let mut batch = sled::Batch::default();
    let mut holders: HashMap<Vec<u8>, Vec<RecordId>> = HashMap::new();
    for p in pending {
        if let Some(key) = &p.key {
            let kk = keyed_key(KEYED, &p.route, key);
            if !holders.contains_key(&kk) {
                // A retried dead letter may hold the key already.
                let current = db.get(&kk).map_err(|e| e.to_string())?;
                holders.insert(
                    kk.clone(),
                    current.map(|v| ids_in(&v).collect()).unwrap_or_default(),
                );
            }
            holders.entry(kk).or_default().push(p.id);
            inner.pending_keys.remove(&(p.route.clone(), key.clone()));
        }
        batch.insert(queued_key(&p.route, p.id), p.value);
    }
    for (kk, mut ids) in holders {
        ids.sort_unstable();
        ids.dedup();
        batch.insert(kk, ids_value(&ids));
    }
    db.apply_batch(batch).map_err(|e| e.to_string())
}

/// Large values live in blob files, which sled writes without fsync.
fn sync_new_blobs(blobs: &Path, synced: &mut HashSet<std::ffi::OsString>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(blobs) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut present = HashSet::new();
    let mut fresh = false;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if !synced.contains(&name) {
            match File::open(entry.path()) {
                Ok(f) => f.sync_all()?,
                // Removed by sled meanwhile (its record was rewritten): nothing to keep.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
            fresh = true;
        }
        present.insert(name);
    }
    if fresh {
        sync_dir(blobs);
    }
    *synced = present;
    Ok(())
}
