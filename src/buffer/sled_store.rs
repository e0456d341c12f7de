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

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::codec::{self, Kind, Mark, ResultMeta, State, StoreIdent, Tomb, Undecodable};
use super::salvage::{self, Report};
use super::{
    now_ms, Admission, Commits, DeadOrLive, DeadRecord, Enqueued, Health, Outbox, OutboxError,
    Record, RecordId, RouteStats,
};

const QUEUED: u8 = b'q';
const KEYED: u8 = b'k';
const RESULT: u8 = b'r';
const DEAD: u8 = b'd';
const MARK: u8 = b'm';
const TOMB: u8 = b't';
const STATE_KEY: &[u8] = b"S";
const IDENT_KEY: &[u8] = b"I";

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

fn mark_key(route: &str) -> Vec<u8> {
    let mut k = vec![MARK];
    k.extend_from_slice(route.as_bytes());
    k
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

/// A random store id: 16 hex digits from the system's CSPRNG.
fn new_store_id() -> Result<String, OutboxError> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| storage("cannot draw a store id", "no system randomness"))?;
    Ok(data_encoding::HEXLOWER.encode(&b))
}

/// What a full read of the tree says: the figures `Inner` starts from.
struct Figures {
    depth: HashMap<String, u64>,
    used: u64,
    live: u64,
    max_id: RecordId,
    seq: u64,
    /// Keys of values that fail their checksum.
    damaged: Vec<Vec<u8>>,
    /// Ids of the records held.
    ids: HashSet<RecordId>,
    marks: std::collections::BTreeMap<String, RecordId>,
}

fn read_figures(db: &sled::Db, store_id: &str) -> Result<Figures, OutboxError> {
    let mut f = Figures {
        depth: HashMap::new(),
        used: 0,
        live: 0,
        max_id: 0,
        seq: 0,
        damaged: Vec::new(),
        ids: HashSet::new(),
        marks: std::collections::BTreeMap::new(),
    };
    for item in db.iter() {
        let (k, v) = item.map_err(|e| storage("cannot read the buffer", e))?;
        match k.first() {
            Some(&QUEUED) | Some(&DEAD) => {
                let Ok((rec, _)) = codec::decode_record(&v, store_id) else {
                    f.damaged.push(k.to_vec());
                    continue;
                };
                if let Some((route, _)) = split_queued_key(&k) {
                    *f.depth.entry(route).or_default() += 1;
                }
                f.used += v.len() as u64;
                f.live += 1;
                f.max_id = f.max_id.max(rec.id);
                f.ids.insert(rec.id);
            }
            Some(&RESULT) => f.used += v.len() as u64,
            Some(&MARK) => {
                if let Ok(m) = codec::json_payload::<Mark>(Kind::Mark, &v) {
                    f.marks.insert(m.route, m.upto);
                }
            }
            _ if &k[..] == STATE_KEY => {
                if let Ok(s) = codec::json_payload::<State>(Kind::State, &v) {
                    f.seq = s.seq;
                    f.max_id = f.max_id.max(s.max_id);
                }
            }
            _ => {}
        }
    }
    Ok(f)
}

impl SledOutbox {
    /// Opens (or creates) the store at `path` as it is: no check against a scan, no salvage.
    /// Fails if another process holds it. For the operator's commands on a stopped box.
    pub fn open(
        path: &Path,
        max_bytes: u64,
        result_ttl: Duration,
    ) -> Result<SledOutbox, OutboxError> {
        let db = open_db(path).map_err(|e| match e {
            OpenError::Sled(e) => storage("cannot open the buffer", e),
            OpenError::Panicked(m) => storage("the buffer store is damaged", m),
        })?;
        let (store, _) = Self::with_db(path, db, max_bytes, result_ttl)?;
        Ok(store)
    }

    /// Opens the store the way the gateway does at start: the files are first read as bytes (so
    /// that sled's recovery cannot destroy what a salvage needs), then opened; if sled cannot open
    /// them, or the store lacks acknowledged records the bytes still hold, or a record fails its
    /// checksum, the store is moved aside to `<path>.corrupt-<unix time>`, a new one is started
    /// and every intact record is salvaged into it, in order. The report says what was salvaged
    /// and lost. Not damage: a store held by another process, or unreadable for permissions.
    pub fn open_checked(
        path: &Path,
        max_bytes: u64,
        result_ttl: Duration,
    ) -> Result<SledOutbox, OutboxError> {
        // The bytes first. An unreadable file is sled's to report.
        // The sidecar alone is enough: a store whose log was deleted still says what it held.
        let pre = if path.join("db").exists() || path.join(salvage::SIDECAR).exists() {
            salvage::scan_dir(path).ok()
        } else {
            None
        };
        // sled's recovery overwrites the log past a damaged message: what the scan found is kept
        // before sled opens the files, in memory when it is small, else as a copy.
        let snapshot = match &pre {
            Some(scan) if !scan.records.is_empty() && scan.lost == 0 => {
                Some(Snapshot::take(path, scan)?)
            }
            _ => None,
        };
        let damage = match &pre {
            Some(scan) if scan.lost > 0 => Some(format!(
                "{} acknowledged record(s) are missing from the store's files",
                scan.lost
            )),
            _ => None,
        };
        let damage = match damage {
            Some(d) => d,
            None => match open_db(path) {
                Err(OpenError::Panicked(m)) => m,
                Err(OpenError::Sled(e)) => {
                    if is_disk_fault(&e) {
                        // A full or failing disk is not damage: the box starts, refuses buffered
                        // calls and opens the store once the disk lets it.
                        let id = pre.as_ref().and_then(|p| p.store_id.clone());
                        let max_id = pre.as_ref().map_or(0, |p| p.max_id);
                        return Self::start_failing(
                            path,
                            max_bytes,
                            result_ttl,
                            id,
                            max_id,
                            &format!("cannot open the buffer: {e}"),
                        );
                    }
                    if !is_damage(&e) {
                        return Err(storage("cannot open the buffer", e));
                    }
                    e.to_string()
                }
                Ok(db) => {
                    let (store, figures) = Self::with_db(path, db, max_bytes, result_ttl)?;
                    let missing = pre.as_ref().map_or(0, |scan| {
                        scan.acknowledged_ids()
                            .filter(|id| !figures.ids.contains(id))
                            .count()
                    });
                    if missing == 0 && figures.damaged.is_empty() {
                        if let Some(snap) = snapshot {
                            snap.discard();
                        }
                        return Ok(store);
                    }
                    drop(store);
                    format!(
                        "the store opened without {missing} acknowledged record(s) its files hold, \
                         and {} record(s) fail their checksum",
                        figures.damaged.len()
                    )
                }
            },
        };
        let aside = aside_path(path);
        std::fs::rename(path, &aside).map_err(|e| {
            storage(
                "the buffer store is damaged and could not be moved aside",
                format!("{damage}; rename to {}: {e}", aside.display()),
            )
        })?;
        sync_parent(path);
        tracing::error!(damage = %damage, moved_to = %aside.display(), "buffer store damaged: moved aside; salvaging every intact record into a new store");
        let db = open_db(path).map_err(|e| match e {
            OpenError::Sled(e) => storage("cannot create a new buffer", e),
            OpenError::Panicked(m) => storage("cannot create a new buffer", m),
        })?;
        let (mut store, _) = Self::with_db(path, db, max_bytes, result_ttl)?;
        let mut report = match snapshot {
            Some(Snapshot::Memory {
                records,
                results,
                unreadable,
            }) => {
                let max_id = pre.as_ref().map_or(0, |p| p.max_id);
                let salvaged = store.restore(records, results, max_id, false)?;
                Report {
                    salvaged,
                    lost: pre.as_ref().map_or(0, |p| p.lost) + unreadable,
                    at_ms: now_ms(),
                    ..Report::default()
                }
            }
            Some(Snapshot::Copy(copy)) => {
                let r = store.salvage_from(&copy, pre.as_ref(), false);
                let _ = std::fs::remove_dir_all(&copy);
                r?
            }
            None => store.salvage_from(&aside, pre.as_ref(), false)?,
        };
        report.reason = damage;
        report.moved_to = aside.display().to_string();
        if let Ok(json) = serde_json::to_vec_pretty(&report) {
            let _ = std::fs::write(aside.join(salvage::REPORT_FILE), json);
        }
        super::events::emit(super::events::Event::Salvaged {
            salvaged: report.salvaged,
            lost: report.lost,
            moved_to: &report.moved_to,
        });
        store.salvage = Some(report);
        Ok(store)
    }

    /// Puts every intact record of the store directory `from` (a moved-aside or old store, read
    /// as bytes) into this one, in order, keeping message ids. At start (`renumber` false) the
    /// store is new and the records keep their ids; by hand (`renumber` true) they join the back
    /// of their queues under new ids. `earlier` is a scan made before the files were touched
    /// (its durable state counts what was acknowledged).
    pub fn salvage_from(
        &self,
        from: &Path,
        earlier: Option<&salvage::Scan>,
        renumber: bool,
    ) -> Result<Report, OutboxError> {
        let scan = salvage::scan_dir(from)
            .map_err(|e| storage(&format!("cannot read {}", from.display()), e))?;
        let fallback = new_store_id()?;
        let (records, results, unreadable) = scan
            .read(&fallback, now_ms())
            .map_err(|e| storage(&format!("cannot read {}", from.display()), e))?;
        // Lost: what the durable state counted and neither scan can account for.
        let lost = match earlier {
            Some(e) if e.state.map(|s| s.seq) > scan.state.map(|s| s.seq) => {
                let found: HashSet<RecordId> = scan.records.iter().map(|f| f.id).collect();
                let missing_now = e
                    .acknowledged_ids()
                    .filter(|id| !found.contains(id))
                    .count() as u64;
                e.lost + missing_now
            }
            _ => scan.lost,
        } + unreadable;
        let salvaged = self.restore(records, results, scan.max_id, renumber)?;
        Ok(Report {
            reason: String::new(),
            moved_to: String::new(),
            salvaged,
            lost,
            at_ms: now_ms(),
        })
    }

    /// Writes salvaged records and results, oldest first, and makes them durable. Returns how
    /// many records went in.
    fn restore(
        &self,
        records: Vec<salvage::Salvaged>,
        results: Vec<(ResultMeta, Vec<u8>)>,
        max_id: RecordId,
        renumber: bool,
    ) -> Result<u64, OutboxError> {
        let sh = &self.shared;
        let mut n = 0u64;
        {
            let mut inner = self.lock();
            let open = self.open_store()?;
            let db = &open.db;
            if !renumber {
                inner.next_id = inner.next_id.max(max_id.saturating_add(1));
            }
            let mut records = records;
            if renumber {
                for (rec, _) in &mut records {
                    rec.id = inner.next_id.max(1);
                    inner.next_id = rec.id + 1;
                }
            }
            for chunk in records.chunks(256) {
                let mut batch = sled::Batch::default();
                let mut holders: HashMap<Vec<u8>, Vec<RecordId>> = HashMap::new();
                for (rec, dead) in chunk {
                    let held = db
                        .contains_key(queued_key(&rec.route, rec.id))
                        .unwrap_or(false)
                        || db.contains_key(id_key(DEAD, rec.id)).unwrap_or(false);
                    if held {
                        continue;
                    }
                    let value = codec::encode_record(
                        rec,
                        dead.as_ref().map(|(r, at)| (r.as_str(), *at)),
                        &sh.store_id,
                    );
                    inner.used += value.len() as u64;
                    inner.live += 1;
                    if dead.is_some() {
                        batch.insert(id_key(DEAD, rec.id), value);
                    } else {
                        batch.insert(queued_key(&rec.route, rec.id), value);
                        *inner.depth.entry(rec.route.clone()).or_default() += 1;
                        if let Some(key) = &rec.key {
                            let kk = keyed_key(KEYED, &rec.route, key);
                            if !holders.contains_key(&kk) {
                                let current = db.get(&kk).map_err(|e| storage("cannot read", e))?;
                                holders.insert(
                                    kk.clone(),
                                    current.map(|v| ids_in(&v).collect()).unwrap_or_default(),
                                );
                            }
                            holders.entry(kk).or_default().push(rec.id);
                        }
                    }
                    inner.next_id = inner.next_id.max(rec.id.saturating_add(1));
                    n += 1;
                }
                for (kk, mut ids) in holders {
                    ids.sort_unstable();
                    ids.dedup();
                    batch.insert(kk, ids_value(&ids));
                }
                put_state(&mut batch, &mut inner);
                db.apply_batch(batch)
                    .map_err(|e| storage("cannot write the salvaged records", e))?;
            }
            let mut batch = sled::Batch::default();
            for (meta, answer) in results {
                let v = codec::encode_result(&meta, &answer);
                let rk = keyed_key(RESULT, &meta.route, &meta.key);
                if db.contains_key(&rk).unwrap_or(true) {
                    continue;
                }
                inner.used += v.len() as u64;
                batch.insert(rk, v);
            }
            put_state(&mut batch, &mut inner);
            db.apply_batch(batch)
                .map_err(|e| storage("cannot write the salvaged results", e))?;
            inner.dirty = true;
        }
        self.durable()?;
        Ok(n)
    }

    fn with_db(
        path: &Path,
        db: sled::Db,
        max_bytes: u64,
        result_ttl: Duration,
    ) -> Result<(SledOutbox, Figures), OutboxError> {
        let store_id = match db
            .get(IDENT_KEY)
            .map_err(|e| storage("cannot read the buffer", e))?
            .and_then(|v| codec::json_payload::<StoreIdent>(Kind::Ident, &v).ok())
        {
            Some(ident) => ident.store_id,
            None => {
                let id = new_store_id()?;
                db.insert(
                    IDENT_KEY,
                    codec::json_frame(
                        Kind::Ident,
                        &StoreIdent {
                            store_id: id.clone(),
                        },
                    ),
                )
                .map_err(|e| storage("cannot write the buffer", e))?;
                id
            }
        };
        let open = Open {
            log: open_log(path)?,
            db,
        };
        make_durable(&open, path).map_err(|e| storage("cannot make the buffer durable", e))?;
        let figures = read_figures(&open.db, &store_id)?;
        let inner = Inner {
            depth: figures.depth.clone(),
            used: figures.used,
            live: figures.live,
            seq: figures.seq,
            next_id: figures.max_id.saturating_add(1),
            durable_seq: figures.seq,
            durable_id: figures.max_id,
            state_durable: figures.seq,
            marks: figures.marks.clone(),
            ..Inner::default()
        };
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            store_id,
            max_bytes,
            result_ttl,
            slot: RwLock::new(Some(Arc::new(open))),
            inner: Mutex::new(inner),
            dur: Durability::default(),
            blobs_synced: Mutex::new(HashSet::new()),
        });
        let committer = {
            let sh = shared.clone();
            std::thread::Builder::new()
                .name("prefront-fsync".into())
                .spawn(move || sh.run())
                .map_err(|e| storage("cannot start the fsync thread", e))?
        };
        let store = SledOutbox {
            shared,
            committer: Some(committer),
            salvage: None,
        };
        Ok((store, figures))
    }

    /// A store that could not be opened for a disk fault: it starts failing (every buffered call
    /// refused, `/readyz` 503) and the committer opens it once the disk lets it.
    fn start_failing(
        path: &Path,
        max_bytes: u64,
        result_ttl: Duration,
        store_id: Option<String>,
        max_id: RecordId,
        reason: &str,
    ) -> Result<SledOutbox, OutboxError> {
        let store_id = match store_id {
            Some(id) => id,
            None => new_store_id()?,
        };
        let inner = Inner {
            next_id: max_id.saturating_add(1),
            ..Inner::default()
        };
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            store_id,
            max_bytes,
            result_ttl,
            slot: RwLock::new(None),
            inner: Mutex::new(inner),
            dur: Durability::default(),
            blobs_synced: Mutex::new(HashSet::new()),
        });
        {
            let mut inner = shared.lock();
            shared.enter_failing(&mut inner, reason, Vec::new());
        }
        let committer = {
            let sh = shared.clone();
            std::thread::Builder::new()
                .name("prefront-fsync".into())
                .spawn(move || sh.run())
                .map_err(|e| storage("cannot start the fsync thread", e))?
        };
        Ok(SledOutbox {
            shared,
            committer: Some(committer),
            salvage: None,
        })
    }

    /// What the start-up salvage did, if the store had to be salvaged.
    pub fn salvage_report(&self) -> Option<&Report> {
        self.salvage.as_ref()
    }

    /// The store's random id (the prefix of its message ids).
    pub fn store_id(&self) -> &str {
        &self.shared.store_id
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
        mut batch: sled::Batch,
    ) -> Result<(), OutboxError> {
        put_state(&mut batch, inner);
        match db.apply_batch(batch) {
            Ok(()) => {
                inner.dirty = true;
                Ok(())
            }
            Err(e) => Err(self.failed(inner, "cannot write the buffer", e)),
        }
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

    /// Removes a queued record's entries (queue, index, and its key if the key points at it).
    fn remove_queued(
        &self,
        db: &sled::Db,
        batch: &mut sled::Batch,
        qk: &[u8],
        rec: &Record,
    ) -> Result<(), OutboxError> {
        remove_queued(db, batch, qk, rec)
    }

    /// Removes expired results and old tombstones (the committer calls it now and then).
    pub fn sweep(&self) -> Result<usize, OutboxError> {
        self.shared.sweep()
    }
}

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
        self.remove_queued(&open.db, &mut batch, &qk, &rec)?;
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
        limit: usize,
    ) -> Result<Vec<DeadOrLive>, OutboxError> {
        let open = self.open_store()?;
        let store = &self.shared.store_id;
        let mut out = Vec::new();
        if dead {
            for item in open.db.scan_prefix([DEAD]) {
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
            for item in open.db.scan_prefix(route_prefix(&r)).take(limit) {
                let (_, v) = item.map_err(|e| storage("cannot read the buffer", e))?;
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

    fn retry(&self, id: RecordId) -> Result<(), OutboxError> {
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
        self.durable()
    }

    fn drop_record(&self, id: RecordId) -> Result<(), OutboxError> {
        let mut inner = self.lock();
        let open = self.open_store()?;
        let db = &open.db;
        let mut batch = sled::Batch::default();
        tomb(&mut batch, &inner, id);
        if let Some((qk, old, rec)) = self.find_queued(&inner, db, id)? {
            self.remove_queued(db, &mut batch, &qk, &rec)?;
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

impl SledOutbox {
    /// The result cache's answer for (route, key), if it has one that has not expired (an
    /// expired one is removed).
    fn cached(
        &self,
        inner: &mut Inner,
        db: &sled::Db,
        route: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, OutboxError> {
        let rk = keyed_key(RESULT, route, key);
        let Some(v) = self.get_raw(db, &rk)? else {
            return Ok(None);
        };
        match codec::decode_result(&v) {
            Ok((expires, answer)) if expires > now_ms() => Ok(Some(answer)),
            _ => {
                let mut batch = sled::Batch::default();
                batch.remove(rk);
                self.apply(inner, db, batch)?;
                inner.used = inner.used.saturating_sub(v.len() as u64);
                Ok(None)
            }
        }
    }

    fn record_delivery(
        &self,
        inner: &mut Inner,
        record: &Record,
        answer: &[u8],
    ) -> Result<(), OutboxError> {
        let open = self.open_store()?;
        let db = &open.db;
        let qk = queued_key(&record.route, record.id);
        if record.key.is_none() {
            return self.record_plain_delivery(inner, db, &qk, record);
        }
        let Some(old) = self.get_raw(db, &qk)? else {
            return Err(OutboxError::NotFound(record.id));
        };
        let mut batch = sled::Batch::default();
        let (added, marked) =
            delivery_batch(db, &mut batch, inner, &self.shared, &qk, record, answer)?;
        inner.live = inner.live.saturating_sub(1);
        self.apply(inner, db, batch)?;
        if let Some(upto) = marked {
            inner.marks.insert(record.route.clone(), upto);
        }
        inner.used = add_signed(inner.used.saturating_sub(old.len() as u64), added);
        dec_depth(inner, &record.route);
        Ok(())
    }
}

impl SledOutbox {
    /// The common delivery, a record without a key: two single writes instead of a batch (sled
    /// serialises a batch against every reader; the forwarders read all the time). Crash-safe
    /// in either order: the record out first, then the route's mark (or a tombstone); a crash
    /// between them leaves a mark behind, which only a salvage reads, and a salvage then sends
    /// the record once more (at least once).
    fn record_plain_delivery(
        &self,
        inner: &mut Inner,
        db: &sled::Db,
        qk: &[u8],
        record: &Record,
    ) -> Result<(), OutboxError> {
        let is_head = match db.scan_prefix(route_prefix(&record.route)).next() {
            Some(Ok((k, _))) => &k[..] == qk,
            Some(Err(e)) => return Err(storage("cannot read the buffer", e)),
            None => false,
        };
        let old = match db.remove(qk) {
            Ok(Some(old)) => old,
            Ok(None) => return Err(OutboxError::NotFound(record.id)),
            Err(e) => return Err(self.failed(inner, "cannot write the buffer", e)),
        };
        inner.seq += 1;
        let current = inner.marks.get(&record.route).copied().unwrap_or(0);
        let (key, value) = if is_head && record.id > current {
            let mark = Mark {
                route: record.route.clone(),
                upto: record.id,
                seq: inner.seq,
            };
            (
                mark_key(&record.route),
                codec::json_frame(Kind::Mark, &mark),
            )
        } else {
            let t = Tomb {
                id: record.id,
                seq: inner.seq,
                at_ms: now_ms(),
            };
            (id_key(TOMB, record.id), codec::json_frame(Kind::Tomb, &t))
        };
        if let Err(e) = db.insert(key, value) {
            return Err(self.failed(inner, "cannot write the buffer", e));
        }
        if is_head && record.id > current {
            inner.marks.insert(record.route.clone(), record.id);
        }
        inner.dirty = true;
        inner.live = inner.live.saturating_sub(1);
        inner.used = inner.used.saturating_sub(old.len() as u64);
        dec_depth(inner, &record.route);
        Ok(())
    }
}

/// The writes that record a delivery: the record out of its queue, the route's mark, the answer
/// in the result cache for a keyed record. Returns the bytes the result adds to the quota and the
/// mark, if the route's moved.
fn delivery_batch(
    db: &sled::Db,
    batch: &mut sled::Batch,
    inner: &Inner,
    sh: &Shared,
    qk: &[u8],
    record: &Record,
    answer: &[u8],
) -> Result<(i64, Option<RecordId>), OutboxError> {
    remove_queued(db, batch, qk, record)?;
    let mut marked = None;
    // The route's mark moves up to a delivered head; anything else delivered out of order (a
    // record salvaged in behind delivered ones) gets a tombstone of its own.
    let is_head = match db.scan_prefix(route_prefix(&record.route)).next() {
        Some(Ok((k, _))) => &k[..] == qk,
        _ => false,
    };
    let current = db
        .get(mark_key(&record.route))
        .map_err(|e| storage("cannot read the buffer", e))?
        .and_then(|v| codec::json_payload::<Mark>(Kind::Mark, &v).ok())
        .map_or(0, |m| m.upto);
    if is_head && record.id > current {
        marked = Some(record.id);
        let mark = Mark {
            route: record.route.clone(),
            upto: record.id,
            seq: inner.seq + 1,
        };
        batch.insert(
            mark_key(&record.route),
            codec::json_frame(Kind::Mark, &mark),
        );
    } else {
        tomb(batch, inner, record.id);
    }
    let mut added = 0i64;
    if let (Some(key), false) = (&record.key, sh.result_ttl.is_zero()) {
        let meta = ResultMeta {
            route: record.route.clone(),
            key: key.clone(),
            expires_ms: now_ms().saturating_add(sh.result_ttl.as_millis() as u64),
        };
        let v = codec::encode_result(&meta, answer);
        let rk = keyed_key(RESULT, &record.route, key);
        // A result it replaces leaves the quota.
        let replaced = db
            .get(&rk)
            .map_err(|e| storage("cannot read the buffer", e))?
            .map_or(0, |old| old.len() as i64);
        added = v.len() as i64 - replaced;
        batch.insert(rk, v);
    }
    Ok((added, marked))
}

/// What the start-up scan found, kept before sled opens the files.
enum Snapshot {
    Memory {
        records: Vec<salvage::Salvaged>,
        results: Vec<(ResultMeta, Vec<u8>)>,
        unreadable: u64,
    },
    /// A copy of the store's files, for a backlog too large to hold in memory.
    Copy(PathBuf),
}

/// Above this, the snapshot is a copy on disk rather than in memory.
const SNAPSHOT_IN_MEMORY: u64 = 256 << 20;

impl Snapshot {
    fn take(path: &Path, scan: &salvage::Scan) -> Result<Snapshot, OutboxError> {
        if scan.held_bytes() <= SNAPSHOT_IN_MEMORY {
            let fallback = new_store_id()?;
            let (records, results, unreadable) = scan
                .read(&fallback, now_ms())
                .map_err(|e| storage("cannot read the buffer", e))?;
            return Ok(Snapshot::Memory {
                records,
                results,
                unreadable,
            });
        }
        let copy = path.with_file_name(format!(
            "{}.startcheck",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "buffer".into())
        ));
        let _ = std::fs::remove_dir_all(&copy);
        let copied = (|| -> std::io::Result<()> {
            std::fs::create_dir_all(copy.join("blobs"))?;
            std::fs::copy(path.join("db"), copy.join("db"))?;
            if let Ok(entries) = std::fs::read_dir(path.join("blobs")) {
                for e in entries.flatten() {
                    std::fs::copy(e.path(), copy.join("blobs").join(e.file_name()))?;
                }
            }
            Ok(())
        })();
        copied.map_err(|e| {
            let _ = std::fs::remove_dir_all(&copy);
            storage(
                "cannot keep a copy of the buffer before opening it (free some disk space)",
                e,
            )
        })?;
        Ok(Snapshot::Copy(copy))
    }

    fn discard(self) {
        if let Snapshot::Copy(copy) = self {
            let _ = std::fs::remove_dir_all(copy);
        }
    }
}

enum OpenError {
    Sled(sled::Error),
    Panicked(String),
}

fn open_db(path: &Path) -> Result<sled::Db, OpenError> {
    // No background flusher: the committer flushes (and fsyncs) itself, and a flusher thread
    // logs every failure twice a second on a full disk.
    let config = sled::Config::new()
        .path(path)
        .cache_capacity(CACHE_BYTES)
        .flush_every_ms(None);
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

/// The log file, opened for writing so that it can be synced on every platform.
fn open_log(path: &Path) -> Result<File, OutboxError> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path.join("db"))
        .map_err(|e| storage("cannot open the buffer log for fsync", e))
}

/// Makes what sled wrote on open durable: its configuration file (sled rewrites it at every start
/// without a sync, so a power cut soon after a start left it empty), the log, and the directory
/// entries.
fn make_durable(open: &Open, path: &Path) -> std::io::Result<()> {
    open.db.flush().map_err(std::io::Error::other)?;
    open.log.sync_all()?;
    if let Ok(conf) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path.join("conf"))
    {
        conf.sync_all()?;
    }
    sync_dir(path);
    sync_parent(path);
    Ok(())
}

/// A full or failing disk: not the store's fault, and it may pass.
fn is_disk_fault(e: &sled::Error) -> bool {
    match e {
        sled::Error::Io(io) => {
            io.kind() == std::io::ErrorKind::StorageFull
                || io.kind() == std::io::ErrorKind::QuotaExceeded
                || matches!(io.raw_os_error(), Some(5 | 28 | 122))
        }
        _ => false,
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

fn sync_parent(path: &Path) {
    if let Some(parent) = path.parent() {
        sync_dir(parent);
    }
}

/// The failing state: since when, why, and when the store is tried again.
struct Failing {
    since: Instant,
    reason: String,
    errors: u64,
    next_try: Instant,
    backoff: Duration,
    last_logged: Instant,
    unlogged: u64,
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
            state: Mutex::new(DurState {
                requested: 0,
                pending: Vec::new(),
                commits: Commits::default(),
                failing: None,
            }),
            work: Condvar::new(),
            done: Condvar::new(),
            progress: tokio::sync::watch::Sender::new(Commits::default()),
        }
    }
}

struct DurState {
    /// Tickets handed out.
    requested: u64,
    /// New records for the next commit, in id order.
    pending: Vec<Pending>,
    /// What `progress` publishes.
    commits: Commits,
    failing: Option<Failing>,
}

/// What the committer does next.
enum Step {
    Commit,
    Recover,
    Idle,
    Exit,
}

impl Durability {
    fn lock(&self) -> MutexGuard<'_, DurState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Refuses at once while the store is failing.
    fn check(&self) -> Result<(), OutboxError> {
        let s = self.lock();
        if s.commits.closing {
            return Err(super::closing());
        }
        match &s.failing {
            Some(f) => Err(OutboxError::Storage(format!(
                "the buffer cannot write: {}",
                f.reason
            ))),
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

    /// Waits for the committer's next step.
    fn next_step(&self, idle_due: bool) -> Step {
        let mut s = self.lock();
        loop {
            if let Some(f) = &s.failing {
                if s.commits.closing {
                    return Step::Exit;
                }
                let now = Instant::now();
                if now >= f.next_try {
                    return Step::Recover;
                }
                let wait = f.next_try - now;
                s = self
                    .work
                    .wait_timeout(s, wait)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|p| p.into_inner().0);
                continue;
            }
            if s.requested > s.commits.settled {
                return Step::Commit;
            }
            if s.commits.closing {
                return Step::Exit;
            }
            if idle_due {
                return Step::Idle;
            }
            let (g, timeout) = self
                .work
                .wait_timeout(s, IDLE_FLUSH)
                .unwrap_or_else(|p| p.into_inner());
            s = g;
            if timeout.timed_out() && s.requested == s.commits.settled && !s.commits.closing {
                return Step::Idle;
            }
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock_inner(&self.inner)
    }

    fn open_store(&self) -> Result<Arc<Open>, OutboxError> {
        self.slot
            .read()
            .ok()
            .and_then(|s| s.clone())
            .ok_or_else(|| {
                OutboxError::Storage("the buffer cannot write: it is being opened again".into())
            })
    }

    /// Enters (or stays in) the failing state after `error`: every ticket handed out and not yet
    /// durable is refused, records not yet written are dropped, `ghosts` (written by the failed
    /// commit) are removed after the reopen. Logs the first error, then at most once a minute.
    fn enter_failing(&self, inner: &mut Inner, error: &str, ghosts: Vec<(String, RecordId)>) {
        inner.ghosts.extend(ghosts);
        let mut s = self.dur.lock();
        if s.requested > s.commits.settled {
            let (from, to) = (s.commits.settled + 1, s.requested);
            s.commits.refuse(from, to, error);
        }
        for p in std::mem::take(&mut s.pending) {
            if let Some(key) = p.key {
                inner.pending_keys.remove(&(p.route, key));
            }
        }
        let now = Instant::now();
        match &mut s.failing {
            None => {
                tracing::error!(error = %error, "buffer: the store cannot write; buffered calls are refused until it recovers (tried again every few seconds)");
                s.failing = Some(Failing {
                    since: now,
                    reason: error.to_string(),
                    errors: 1,
                    next_try: now + RETRY_MIN,
                    backoff: RETRY_MIN,
                    last_logged: now,
                    unlogged: 0,
                });
            }
            Some(f) => {
                f.errors += 1;
                f.reason = error.to_string();
                note_repeat(f);
            }
        }
        s.commits.writable = false;
        s.commits.reason = Some(format!("the buffer cannot write: {error}"));
        self.dur.work.notify_all();
        self.dur.publish(s);
    }

    /// The committer thread.
    fn run(&self) {
        let mut last_sweep = Instant::now();
        loop {
            let idle_due = self.lock().dirty || self.state_behind();
            match self.dur.next_step(idle_due) {
                Step::Exit => {
                    self.close_cleanly();
                    return;
                }
                Step::Commit => self.commit(),
                Step::Recover => self.recover(),
                Step::Idle => {
                    self.idle_flush();
                    if last_sweep.elapsed() >= SWEEP_EVERY {
                        last_sweep = Instant::now();
                        let _ = self.sweep();
                    }
                }
            }
        }
    }

    fn state_behind(&self) -> bool {
        let inner = self.lock();
        inner.state_durable < inner.durable_seq
    }

    /// Writes the waiting records in one crash-atomic batch, then makes that and everything else
    /// written so far durable with one flush + fsync.
    fn commit(&self) {
        let (target, state, max_id, written, open) = {
            let mut inner = self.lock();
            let (target, pending) = {
                let mut s = self.dur.lock();
                (s.requested, std::mem::take(&mut s.pending))
            };
            let ids: Vec<(String, RecordId)> =
                pending.iter().map(|p| (p.route.clone(), p.id)).collect();
            let open = match self.open_store() {
                Ok(o) => o,
                Err(e) => {
                    // Not written: forget their keys, refuse their tickets.
                    for p in pending {
                        if let Some(key) = p.key {
                            inner.pending_keys.remove(&(p.route, key));
                        }
                    }
                    self.enter_failing(&mut inner, &e.to_string(), Vec::new());
                    return;
                }
            };
            let written = write_pending(&open.db, &mut inner, pending);
            let state = salvage::Sidecar {
                state: State {
                    seq: inner.seq,
                    live: inner.live,
                    max_id: inner.next_id.saturating_sub(1),
                    durable: inner.seq,
                },
                marks: inner.marks.clone(),
            };
            (
                target,
                state,
                inner.next_id.saturating_sub(1),
                written.map(|()| ids.clone()).map_err(|e| (e, ids)),
                open,
            )
        };
        let seq = state.state.seq;
        let result = match written {
            Err((e, ids)) => Err((e, ids)),
            Ok(ids) => sync_all(&open, self).map_err(|e| (e, ids)),
        };
        drop(open);
        match result {
            Ok(()) => {
                let sidecar_due = {
                    let mut inner = self.lock();
                    inner.durable_seq = inner.durable_seq.max(seq);
                    inner.durable_id = inner.durable_id.max(max_id);
                    inner.dirty = false;
                    let due = inner
                        .sidecar_at
                        .is_none_or(|at| at.elapsed() >= SIDECAR_EVERY);
                    if due {
                        inner.sidecar_at = Some(Instant::now());
                    }
                    due
                };
                let mut s = self.dur.lock();
                s.commits.settled = s.commits.settled.max(target);
                self.dur.publish(s);
                if sidecar_due {
                    // After the answer: the callers do not wait for this one.
                    self.write_sidecar(&state);
                }
            }
            Err((e, ids)) => {
                let mut inner = self.lock();
                self.enter_failing(
                    &mut inner,
                    &format!("cannot make the buffer durable: {e}"),
                    ids,
                );
            }
        }
    }

    /// Writes the sidecar state file; a failure is the store's failure.
    fn write_sidecar(&self, state: &salvage::Sidecar) {
        if let Err(e) = salvage::write_sidecar(&self.path, state) {
            let mut inner = self.lock();
            self.enter_failing(
                &mut inner,
                &format!("cannot write the buffer's state file: {e}"),
                Vec::new(),
            );
        }
    }

    /// After a while without commits: sled's buffers go to its log (no fsync), with a state
    /// frame that says how far the platter is known to hold, so a later scan can tell
    /// acknowledged records from ones that never were.
    fn idle_flush(&self) {
        let Ok(open) = self.open_store() else {
            return;
        };
        let mut inner = self.lock();
        if inner.state_durable < inner.durable_seq {
            let mut batch = sled::Batch::default();
            put_state(&mut batch, &mut inner);
            if let Err(e) = open.db.apply_batch(batch) {
                self.enter_failing(
                    &mut inner,
                    &format!("cannot write the buffer: {e}"),
                    Vec::new(),
                );
                return;
            }
        }
        drop(inner);
        match open.db.flush() {
            Ok(_) => self.lock().dirty = false,
            Err(e) => {
                let mut inner = self.lock();
                self.enter_failing(
                    &mut inner,
                    &format!("cannot flush the buffer: {e}"),
                    Vec::new(),
                );
            }
        }
    }

    /// Closes sled and opens the store again; settles ghosts and unrecorded deliveries; makes it
    /// durable. On success the store is writable again; on failure the next try is later.
    fn recover(&self) {
        match self.try_recover() {
            Ok(()) => {
                let mut s = self.dur.lock();
                if let Some(f) = s.failing.take() {
                    tracing::warn!(
                        after_s = f.since.elapsed().as_secs(),
                        errors = f.errors,
                        "buffer: the store writes again; buffered calls are accepted"
                    );
                }
                s.commits.writable = true;
                s.commits.reason = None;
                self.dur.publish(s);
            }
            Err(e) => {
                let mut s = self.dur.lock();
                if let Some(f) = &mut s.failing {
                    f.errors += 1;
                    f.reason = e.clone();
                    f.backoff = (f.backoff * 2).min(RETRY_MAX);
                    f.next_try = Instant::now() + f.backoff;
                    note_repeat(f);
                    s.commits.reason = Some(format!("the buffer cannot write: {e}"));
                }
                self.dur.publish(s);
            }
        }
    }

    fn try_recover(&self) -> Result<(), String> {
        // 1. Let go of the failed handle: sled refuses everything after an I/O error, and its
        //    file lock must be free before the store can be opened again.
        let old = self.slot.write().ok().and_then(|mut s| s.take());
        if let Some(mut old) = old {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match Arc::try_unwrap(old) {
                    Ok(open) => {
                        drop(open);
                        break;
                    }
                    Err(still) if Instant::now() < deadline => {
                        old = still;
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(still) => {
                        if let Ok(mut s) = self.slot.write() {
                            *s = Some(still);
                        }
                        return Err("the failed store is still in use".into());
                    }
                }
            }
        }
        // 2. Open it again and read what is really there.
        std::fs::create_dir_all(&self.path)
            .map_err(|e| format!("cannot create the buffer: {e}"))?;
        let db = open_db(&self.path).map_err(|e| match e {
            OpenError::Sled(e) => format!("cannot open the buffer: {e}"),
            OpenError::Panicked(m) => format!("cannot open the buffer: {m}"),
        })?;
        if db.get(IDENT_KEY).map_err(|e| e.to_string())?.is_none() {
            // The store's files went away with the fault: a new store keeps this one's id, so its
            // message ids go on where they were.
            db.insert(
                IDENT_KEY,
                codec::json_frame(
                    Kind::Ident,
                    &StoreIdent {
                        store_id: self.store_id.clone(),
                    },
                ),
            )
            .map_err(|e| e.to_string())?;
        }
        let open = Open {
            log: open_log(&self.path).map_err(|e| e.to_string())?,
            db,
        };
        let figures = read_figures(&open.db, &self.store_id).map_err(|e| e.to_string())?;
        // 3. Settle what the fault left open, then make it durable, before anything is delivered.
        let mut inner = self.lock();
        let mut batch = sled::Batch::default();
        let mut figures = figures;
        let mut settled = 0usize;
        for (route, id) in &inner.ghosts {
            let qk = queued_key(route, *id);
            if let Some(v) = open.db.get(&qk).map_err(|e| e.to_string())? {
                if let Ok((rec, _)) = codec::decode_record(&v, &self.store_id) {
                    remove_queued(&open.db, &mut batch, &qk, &rec).map_err(|e| e.to_string())?;
                    figures.used = figures.used.saturating_sub(v.len() as u64);
                    figures.live = figures.live.saturating_sub(1);
                    if let Some(d) = figures.depth.get_mut(route) {
                        *d = d.saturating_sub(1);
                    }
                    settled += 1;
                }
            }
        }
        let ghosts = inner.ghosts.len();
        let unrecorded = std::mem::take(&mut inner.unrecorded);
        let mut kept = Vec::new();
        for (rec, answer) in unrecorded {
            let qk = queued_key(&rec.route, rec.id);
            if let Some(v) = open.db.get(&qk).map_err(|e| e.to_string())? {
                let mut single = sled::Batch::default();
                let (added, marked) =
                    delivery_batch(&open.db, &mut single, &inner, self, &qk, &rec, &answer)
                        .map_err(|e| e.to_string())?;
                if let Some(upto) = marked {
                    inner.marks.insert(rec.route.clone(), upto);
                }
                open.db.apply_batch(single).map_err(|e| e.to_string())?;
                figures.used = add_signed(figures.used.saturating_sub(v.len() as u64), added);
                figures.live = figures.live.saturating_sub(1);
                if let Some(d) = figures.depth.get_mut(&rec.route) {
                    *d = d.saturating_sub(1);
                }
            }
            kept.push(rec.id);
        }
        figures.depth.retain(|_, d| *d > 0);
        for (route, upto) in std::mem::take(&mut figures.marks) {
            let m = inner.marks.entry(route).or_default();
            *m = (*m).max(upto);
        }
        inner.depth = figures.depth;
        inner.used = figures.used;
        inner.live = figures.live;
        inner.next_id = inner.next_id.max(figures.max_id.saturating_add(1));
        inner.seq = inner.seq.max(figures.seq);
        inner.pending_keys.clear();
        put_state(&mut batch, &mut inner);
        let written = open
            .db
            .apply_batch(batch)
            .map_err(|e| e.to_string())
            .and_then(|()| sync_all(&open, self));
        if let Err(e) = written {
            // Still failing: what was settled is settled again next time.
            drop(open);
            return Err(e);
        }
        inner.ghosts.clear();
        inner.durable_seq = inner.seq;
        inner.durable_id = inner.next_id.saturating_sub(1);
        inner.dirty = false;
        if settled > 0 || !kept.is_empty() {
            tracing::warn!(
                refused = settled,
                of = ghosts,
                deliveries = kept.len(),
                "buffer: after the fault, records of refused calls were removed and deliveries recorded"
            );
        }
        if let Ok(mut s) = self.slot.write() {
            *s = Some(Arc::new(open));
        }
        Ok(())
    }

    /// The last commit on the way out: a state frame that says everything is durable, synced,
    /// and the sidecar state file to match.
    fn close_cleanly(&self) {
        let failing = self.dur.lock().failing.is_some();
        if failing {
            return;
        }
        let Ok(open) = self.open_store() else {
            return;
        };
        let mut inner = self.lock();
        // Two states: the first is made durable, the second records that it is.
        let mut batch = sled::Batch::default();
        put_state(&mut batch, &mut inner);
        if open.db.apply_batch(batch).is_err() || sync_all(&open, self).is_err() {
            return;
        }
        inner.durable_seq = inner.seq;
        let mut batch = sled::Batch::default();
        put_state(&mut batch, &mut inner);
        if open.db.apply_batch(batch).is_err() || sync_all(&open, self).is_err() {
            return;
        }
        inner.durable_seq = inner.seq;
        let state = salvage::Sidecar {
            state: State {
                seq: inner.seq,
                live: inner.live,
                max_id: inner.next_id.saturating_sub(1),
                durable: inner.seq,
            },
            marks: inner.marks.clone(),
        };
        drop(inner);
        let _ = salvage::write_sidecar(&self.path, &state);
    }

    fn sweep(&self) -> Result<usize, OutboxError> {
        let open = self.open_store()?;
        let now = now_ms();
        let mut batch = sled::Batch::default();
        let mut freed = 0u64;
        let mut n = 0;
        for item in open.db.scan_prefix([RESULT]) {
            let (k, v) = item.map_err(|e| storage("cannot read the buffer", e))?;
            if codec::decode_result(&v).map_or(true, |(exp, _)| exp <= now) {
                batch.remove(k);
                freed += v.len() as u64;
                n += 1;
            }
        }
        for item in open.db.scan_prefix([TOMB]) {
            let (k, v) = item.map_err(|e| storage("cannot read the buffer", e))?;
            if codec::json_payload::<Tomb>(Kind::Tomb, &v)
                .map_or(true, |t| t.at_ms.saturating_add(TOMB_TTL_MS) <= now)
            {
                batch.remove(k);
                n += 1;
            }
        }
        if n > 0 {
            let mut inner = self.lock();
            put_state(&mut batch, &mut inner);
            if let Err(e) = open.db.apply_batch(batch) {
                self.enter_failing(
                    &mut inner,
                    &format!("cannot write the buffer: {e}"),
                    Vec::new(),
                );
                return Err(storage("cannot write the buffer", e));
            }
            inner.used = inner.used.saturating_sub(freed);
            inner.dirty = true;
        }
        Ok(n)
    }
}

/// Counts a repeated error; logs it (with the count) at most once a minute.
fn note_repeat(f: &mut Failing) {
    f.unlogged += 1;
    if f.last_logged.elapsed() >= LOG_EVERY {
        tracing::error!(
            error = %f.reason,
            repeats = f.unlogged,
            failing_for_s = f.since.elapsed().as_secs(),
            "buffer: the store still cannot write"
        );
        f.last_logged = Instant::now();
        f.unlogged = 0;
    }
}

/// flush + fsync of the log, of new blob files and of the directory.
fn sync_all(open: &Open, sh: &Shared) -> Result<(), String> {
    open.db.flush().map_err(|e| e.to_string())?;
    open.log.sync_data().map_err(|e| e.to_string())?;
    let mut synced = sh.blobs_synced.lock().unwrap_or_else(|p| p.into_inner());
    sync_new_blobs(&sh.path.join("blobs"), &mut synced).map_err(|e| e.to_string())
}

/// Writes accepted records (queue entry, key holders, the state) as one batch.
fn write_pending(db: &sled::Db, inner: &mut Inner, pending: Vec<Pending>) -> Result<(), String> {
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
    put_state(&mut batch, inner);
    db.apply_batch(batch).map_err(|e| e.to_string())?;
    inner.dirty = true;
    Ok(())
}

/// Large values live in blob files, which sled writes without fsync. Each new blob file is synced
/// (through a handle opened for writing), then the directory.
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
            match std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(entry.path())
            {
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
