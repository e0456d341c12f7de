//! The committer thread: group commit (one batch and one fsync for every waiting call), the
//! failing state and its recovery (close sled, open it again, settle what the fault left open),
//! the idle flush, the sweep of expired results, and a clean close.

use super::*;

/// The failing state: since when, why, and when the store is tried again.
pub(super) struct Failing {
    pub(super) since: Instant,
    pub(super) reason: String,
    pub(super) errors: u64,
    pub(super) next_try: Instant,
    pub(super) backoff: Duration,
    pub(super) last_logged: Instant,
    pub(super) unlogged: u64,
}

/// Group commit: writers take a ticket after their write; the committer thread makes everything
/// written before it started durable and hands out the tickets up to that point. Threads wait on
/// `done`; async callers watch `progress`.
pub(super) struct Durability {
    pub(super) state: Mutex<DurState>,
    pub(super) work: Condvar,
    pub(super) done: Condvar,
    pub(super) progress: tokio::sync::watch::Sender<Commits>,
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

pub(super) struct DurState {
    /// Tickets handed out.
    pub(super) requested: u64,
    /// New records for the next commit, in id order.
    pub(super) pending: Vec<Pending>,
    /// What `progress` publishes.
    pub(super) commits: Commits,
    pub(super) failing: Option<Failing>,
}

/// What the committer does next.
pub(super) enum Step {
    Commit,
    Recover,
    Idle,
    Exit,
}

impl Durability {
    pub(super) fn lock(&self) -> MutexGuard<'_, DurState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Refuses at once while the store is failing.
    pub(super) fn check(&self) -> Result<(), OutboxError> {
        let s = self.lock();
        if s.commits.closing {
            return Err(crate::buffer::closing());
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
    pub(super) fn submit(&self, record: Option<Pending>) -> u64 {
        let mut s = self.lock();
        s.requested += 1;
        s.pending.extend(record);
        self.work.notify_one();
        s.requested
    }

    /// Blocks until the commit that covers `ticket` is durable (or failed).
    pub(super) fn wait_for(&self, ticket: u64) -> Result<(), OutboxError> {
        let mut s = self.lock();
        loop {
            if let Some(outcome) = s.commits.outcome(ticket) {
                return outcome;
            }
            s = self.done.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    pub(super) fn close(&self) {
        let mut s = self.lock();
        s.commits.closing = true;
        self.work.notify_all();
        self.publish(s);
    }

    /// Wakes the threads waiting for a commit and publishes the progress to the tasks.
    pub(super) fn publish(&self, s: MutexGuard<'_, DurState>) {
        let commits = s.commits.clone();
        drop(s);
        self.done.notify_all();
        self.progress.send_replace(commits);
    }

    /// Waits for the committer's next step.
    pub(super) fn next_step(&self, idle_due: bool) -> Step {
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
    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        lock_inner(&self.inner)
    }

    pub(super) fn open_store(&self) -> Result<Arc<Open>, OutboxError> {
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
    pub(super) fn enter_failing(
        &self,
        inner: &mut Inner,
        error: &str,
        ghosts: Vec<(String, RecordId)>,
    ) {
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
    pub(super) fn run(&self) {
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
                Step::Idle => self.idle_flush(),
            }
            // Also under a steady load, which never leaves the committer idle.
            if last_sweep.elapsed() >= self.sweep_every() {
                last_sweep = Instant::now();
                let _ = self.sweep();
            }
        }
    }

    /// How often expired results, dead letters and tombstones are looked for: every minute, or
    /// more often for a short `dead_ttl`.
    fn sweep_every(&self) -> Duration {
        match self.dead_ttl_ms.load(std::sync::atomic::Ordering::Relaxed) {
            0 => SWEEP_EVERY,
            ms => (Duration::from_millis(ms) / 4).clamp(Duration::from_secs(1), SWEEP_EVERY),
        }
    }

    pub(super) fn state_behind(&self) -> bool {
        let inner = self.lock();
        inner.state_durable < inner.durable_seq
    }

    /// Writes the waiting records in one crash-atomic batch, then makes that and everything else
    /// written so far durable with one flush + fsync.
    pub(super) fn commit(&self) {
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
            let state = sidecar(&inner);
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

    /// Writes `batch` with a new state frame; a failure puts the store in the failing state.
    pub(super) fn apply(
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
            Err(e) => {
                let msg = format!("cannot write the buffer: {e}");
                self.enter_failing(inner, &msg, Vec::new());
                Err(OutboxError::Storage(msg))
            }
        }
    }

    /// Writes the sidecar state file; a failure is the store's failure.
    pub(super) fn write_sidecar(&self, state: &salvage::Sidecar) {
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
    pub(super) fn idle_flush(&self) {
        let Ok(open) = self.open_store() else {
            return;
        };
        let mut inner = self.lock();
        if inner.state_durable < inner.durable_seq
            && self
                .apply(&mut inner, &open.db, sled::Batch::default())
                .is_err()
        {
            return;
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
    pub(super) fn recover(&self) {
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

    pub(super) fn try_recover(&self) -> Result<(), String> {
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
    pub(super) fn close_cleanly(&self) {
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
        let state = sidecar(&inner);
        drop(inner);
        let _ = salvage::write_sidecar(&self.path, &state);
    }

    /// Removes expired results, dead letters past `dead_ttl` (each logged: they hold patient
    /// data) and old tombstones. Under the store's lock: a result written meanwhile is not taken.
    pub(super) fn sweep(&self) -> Result<usize, OutboxError> {
        let open = self.open_store()?;
        let now = now_ms();
        let dead_ttl = self.dead_ttl_ms.load(std::sync::atomic::Ordering::Relaxed);
        let mut inner = self.lock();
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
        let mut expired_dead = 0u64;
        let mut expired = Vec::new();
        if dead_ttl > 0 {
            for item in open.db.scan_prefix([DEAD]) {
                let (k, v) = item.map_err(|e| storage("cannot read the buffer", e))?;
                let Ok((rec, Some((_, dead_at)))) = codec::decode_record(&v, &self.store_id) else {
                    continue;
                };
                if dead_at.saturating_add(dead_ttl) > now {
                    continue;
                }
                tracing::warn!(
                    route = %rec.route,
                    id = rec.id,
                    dead_for_s = now.saturating_sub(dead_at) / 1000,
                    "buffer: a dead letter expired (buffer.dead_ttl) and was deleted"
                );
                batch.remove(k);
                tomb(&mut batch, &inner, rec.id);
                freed += v.len() as u64;
                expired_dead += 1;
                n += 1;
                if crate::trail::active() {
                    expired.push(rec);
                }
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
            inner.live = inner.live.saturating_sub(expired_dead);
            self.apply(&mut inner, &open.db, batch)?;
            inner.used = inner.used.saturating_sub(freed);
            for rec in expired {
                if let Some(mut line) = crate::buffer::trail_line(&rec, "expired") {
                    line.t = now;
                    line.why = Some("buffer.dead_ttl".into());
                    crate::trail::record(line);
                }
            }
        }
        Ok(n)
    }
}

/// Counts a repeated error; logs it (with the count) at most once a minute.
pub(super) fn note_repeat(f: &mut Failing) {
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
pub(super) fn sync_all(open: &Open, sh: &Shared) -> Result<(), String> {
    open.db.flush().map_err(|e| e.to_string())?;
    open.log.sync_data().map_err(|e| e.to_string())?;
    let mut synced = sh.blobs_synced.lock().unwrap_or_else(|p| p.into_inner());
    sync_new_blobs(&sh.path.join("blobs"), &mut synced).map_err(|e| e.to_string())
}

/// Writes accepted records (queue entry, key holders, the state) as one batch.
pub(super) fn write_pending(
    db: &sled::Db,
    inner: &mut Inner,
    pending: Vec<Pending>,
) -> Result<(), String> {
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
pub(super) fn sync_new_blobs(
    blobs: &Path,
    synced: &mut HashSet<std::ffi::OsString>,
) -> std::io::Result<()> {
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
