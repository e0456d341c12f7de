//! Opening the store: the scan before sled touches the files, the checks after, moving a
//! damaged store aside and salvaging it, a store that starts on a failing disk.

use super::*;

/// A random store id: 16 hex digits from the system's CSPRNG.
pub(super) fn new_store_id() -> Result<String, OutboxError> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| storage("cannot draw a store id", "no system randomness"))?;
    Ok(data_encoding::HEXLOWER.encode(&b))
}

/// What a full read of the tree says: the figures `Inner` starts from.
pub(super) struct Figures {
    pub(super) depth: HashMap<String, u64>,
    pub(super) used: u64,
    pub(super) live: u64,
    pub(super) max_id: RecordId,
    pub(super) seq: u64,
    /// Keys of values that fail their checksum.
    pub(super) damaged: Vec<Vec<u8>>,
    /// Ids of the records held.
    pub(super) ids: HashSet<RecordId>,
    pub(super) marks: std::collections::BTreeMap<String, RecordId>,
}

pub(super) fn read_figures(db: &sled::Db, store_id: &str) -> Result<Figures, OutboxError> {
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
        // A store another process holds (a running gateway) is not read, judged or moved: its
        // files change under the scan. sled takes the same lock on `db` when it opens.
        if let Ok(f) = File::open(path.join("db")) {
            if fs2::FileExt::try_lock_exclusive(&f).is_err() {
                return Err(storage(
                    "cannot open the buffer",
                    "another process holds it (is the gateway running?)",
                ));
            }
            let _ = fs2::FileExt::unlock(&f);
        }
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
        crate::buffer::events::emit(crate::buffer::events::Event::Salvaged {
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
    pub(super) fn restore(
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

    pub(super) fn with_db(
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
        let store = SledOutbox::start(Shared {
            path: path.to_path_buf(),
            store_id,
            max_bytes,
            result_ttl,
            slot: RwLock::new(Some(Arc::new(open))),
            inner: Mutex::new(inner),
            dur: Durability::default(),
            blobs_synced: Mutex::new(HashSet::new()),
            dead_ttl_ms: std::sync::atomic::AtomicU64::new(0),
        })?;
        Ok((store, figures))
    }

    /// The store around `shared`, with its committer thread running.
    fn start(shared: Shared) -> Result<SledOutbox, OutboxError> {
        let shared = Arc::new(shared);
        let sh = shared.clone();
        let committer = std::thread::Builder::new()
            .name("prefront-fsync".into())
            .spawn(move || sh.run())
            .map_err(|e| storage("cannot start the fsync thread", e))?;
        Ok(SledOutbox {
            shared,
            committer: Some(committer),
            salvage: None,
        })
    }

    /// A store that could not be opened for a disk fault: it starts failing (every buffered call
    /// refused, `/readyz` 503) and the committer opens it once the disk lets it.
    pub(super) fn start_failing(
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
        let shared = Shared {
            path: path.to_path_buf(),
            store_id,
            max_bytes,
            result_ttl,
            slot: RwLock::new(None),
            inner: Mutex::new(inner),
            dur: Durability::default(),
            blobs_synced: Mutex::new(HashSet::new()),
            dead_ttl_ms: std::sync::atomic::AtomicU64::new(0),
        };
        {
            let mut inner = shared.lock();
            shared.enter_failing(&mut inner, reason, Vec::new());
        }
        SledOutbox::start(shared)
    }
}

/// What the start-up scan found, kept before sled opens the files.
pub(super) enum Snapshot {
    Memory {
        records: Vec<salvage::Salvaged>,
        results: Vec<(ResultMeta, Vec<u8>)>,
        unreadable: u64,
    },
    /// A copy of the store's files, for a backlog too large to hold in memory.
    Copy(PathBuf),
}

/// Above this, the snapshot is a copy on disk rather than in memory.
pub(super) const SNAPSHOT_IN_MEMORY: u64 = 256 << 20;

impl Snapshot {
    pub(super) fn take(path: &Path, scan: &salvage::Scan) -> Result<Snapshot, OutboxError> {
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

    pub(super) fn discard(self) {
        if let Snapshot::Copy(copy) = self {
            let _ = std::fs::remove_dir_all(copy);
        }
    }
}

pub(super) enum OpenError {
    Sled(sled::Error),
    Panicked(String),
}

pub(super) fn open_db(path: &Path) -> Result<sled::Db, OpenError> {
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
pub(super) fn open_log(path: &Path) -> Result<File, OutboxError> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path.join("db"))
        .map_err(|e| storage("cannot open the buffer log for fsync", e))
}

/// Makes what sled wrote on open durable: its configuration file (sled rewrites it at every start
/// without a sync, so a power cut soon after a start left it empty), the log, and the directory
/// entries.
pub(super) fn make_durable(open: &Open, path: &Path) -> std::io::Result<()> {
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
pub(super) fn is_disk_fault(e: &sled::Error) -> bool {
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
pub(super) fn is_damage(e: &sled::Error) -> bool {
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

pub(super) fn aside_path(path: &Path) -> PathBuf {
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
pub(super) fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

pub(super) fn sync_parent(path: &Path) {
    if let Some(parent) = path.parent() {
        sync_dir(parent);
    }
}
