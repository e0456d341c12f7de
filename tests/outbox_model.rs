//! Model-based test of the sled outbox: random sequences of operations run against a real
//! `SledOutbox` in a temp dir and against a plain in-memory model of the `Outbox` contract
//! (a FIFO per route, the idempotency-key map, the result cache, the dead letters and the byte
//! quota), compared after every step, with restarts (drop + reopen) in between.
//!
//! The seed is printed; `OUTBOX_MODEL_SEED=<n>` (decimal or `0x` hex) replays a failing run.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prefront::buffer::sled_store::SledOutbox;
use prefront::buffer::{
    now_ms, AsyncOutbox, DeadOrLive, DeadRecord, Enqueued, Outbox, OutboxError, Record, RecordId,
    Route, RouteStats,
};
use serde_json::{json, Map, Value};

/// Three routes; the second is a string prefix of the first, so a prefix scan that leaks across
/// routes shows up.
const ROUTES: [&str; 3] = [
    "cloud:prefront/sendTipMessage/payment",
    "cloud:prefront/sendTipMessage",
    "his:notify",
];
/// A small pool, so keys collide within a route and across routes.
const KEYS: [&str; 4] = ["refundNo=R1", "refundNo=R2", "orderNo=O1", "orderNo=O2"];
/// Small enough that random sequences hit `Full` (bodies are up to 2000 bytes).
const MAX_BYTES: u64 = 40_000;
/// Long enough that no result expires during the test.
const RESULT_TTL: Duration = Duration::from_secs(3600);
const SEQUENCES: usize = 40;
const OPS_PER_SEQUENCE: usize = 150;
/// `last_error` is cut to this many bytes (at a char boundary) by the store.
const MAX_ERROR_LEN: usize = 300;
/// How many past operations a failure report shows.
const HISTORY_TAIL: usize = 25;
const LIST_ALL: usize = 1000;
/// How long a reopen waits for sled to let go of the previous handle's file lock.
const LOCK_RETRY_FOR: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// Randomness: xorshift64*, seeded from the clock unless OUTBOX_MODEL_SEED says otherwise.
// ---------------------------------------------------------------------------------------------

struct Rng(u64);

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl Rng {
    fn new(seed: u64) -> Rng {
        // xorshift must not start at zero.
        Rng(splitmix(seed) | 1)
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n > 0`; the modulo bias is irrelevant here).
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    fn percent(&mut self, p: usize) -> bool {
        self.below(100) < p
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn master_seed() -> u64 {
    if let Ok(s) = std::env::var("OUTBOX_MODEL_SEED") {
        let s = s.trim();
        let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => s.parse(),
        };
        return parsed.unwrap_or_else(|e| panic!("OUTBOX_MODEL_SEED={s:?} is not a u64: {e}"));
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    splitmix(nanos ^ u64::from(std::process::id()).rotate_left(32))
}

// ---------------------------------------------------------------------------------------------
// A temp dir of our own (removed on drop), so this file depends on nothing else under tests/.
// ---------------------------------------------------------------------------------------------

struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let mut n = 0u32;
        loop {
            let path =
                std::env::temp_dir().join(format!("{prefix}-{}-{nanos}-{n}", std::process::id()));
            match std::fs::create_dir(&path) {
                Ok(()) => return TempDir(path),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
                Err(e) => panic!("cannot create temp dir {}: {e}", path.display()),
            }
        }
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// The model.
// ---------------------------------------------------------------------------------------------

/// Bytes a record takes against the quota. This mirrors the store's value format (a frame:
/// `[magic 4][kind 1][length u32][crc32 u32]`, then `[meta length u32 LE][meta JSON][body]`, meta
/// fields in declaration order, `None`s skipped, the message id only when it is not the store's
/// default `<store>-<id>`); if that format changes, change this with it.
fn encoded_len(record: &Record, dead: Option<(&str, u64)>) -> u64 {
    let mut meta = Map::new();
    meta.insert("id".into(), json!(record.id));
    meta.insert("route".into(), json!(record.route));
    if let Some(k) = &record.key {
        meta.insert("key".into(), json!(k));
    }
    meta.insert("request_id".into(), json!(record.request_id));
    meta.insert("enqueued_at_ms".into(), json!(record.enqueued_at_ms));
    meta.insert("attempts".into(), json!(record.attempts));
    if let Some(e) = &record.last_error {
        meta.insert("last_error".into(), json!(e));
    }
    if let Some((reason, at)) = dead {
        meta.insert("dead_reason".into(), json!(reason));
        meta.insert("dead_at_ms".into(), json!(at));
    }
    let store = record
        .message_id
        .rsplit_once('-')
        .map_or("", |(store, _)| store);
    if record.message_id != format!("{store}-{}", record.id) {
        meta.insert("message_id".into(), json!(record.message_id));
    }
    let meta = serde_json::to_vec(&Value::Object(meta)).expect("meta serialises");
    (13 + 4 + meta.len() + record.body.len()) as u64
}

/// Bytes a cached answer takes against the quota (its expiry has 13 digits for centuries).
fn result_len(route: &str, key: &str, answer: &[u8]) -> u64 {
    let meta = json!({"route": route, "key": key, "expires_ms": 1_000_000_000_000u64});
    (13 + 4 + serde_json::to_vec(&meta).expect("serialises").len() + answer.len()) as u64
}

fn dead_len(d: &DeadRecord) -> u64 {
    encoded_len(&d.record, Some((&d.reason, d.dead_at_ms)))
}

/// `error` cut as the store cuts `last_error`.
fn truncated(error: &str) -> String {
    let mut cut = error.len().min(MAX_ERROR_LEN);
    while !error.is_char_boundary(cut) {
        cut -= 1;
    }
    error[..cut].to_string()
}

/// What the store should hold. Timestamps (`enqueued_at_ms`, `dead_at_ms`) are the store's: the
/// model learns them when a record appears, after checking they fall within the call.
#[derive(Default)]
struct Model {
    /// FIFO per route, in the order records were appended (not sorted by id: the store's
    /// order-by-id must agree with append order).
    queues: BTreeMap<String, VecDeque<Record>>,
    /// (route, key) → the answer given to `delivered` (nothing expires: long TTL).
    results: BTreeMap<(String, String), Vec<u8>>,
    dead: BTreeMap<RecordId, DeadRecord>,
    /// Highest id the store has shown so far (ids only grow, restarts included).
    max_id: RecordId,
    /// Ids that existed and are gone (delivered, retried away, dropped).
    gone: Vec<RecordId>,
    /// Bytes of queued and dead records and cached answers against the quota, kept up to date by every change
    /// below (and compared with a full recount at each restart).
    used: u64,
}

impl Model {
    fn queue(&self, route: &str) -> impl Iterator<Item = &Record> {
        self.queues.get(route).into_iter().flatten()
    }

    fn depth(&self, route: &str) -> u64 {
        self.queues.get(route).map_or(0, |q| q.len() as u64)
    }

    fn head(&self, route: &str) -> Option<&Record> {
        self.queues.get(route).and_then(|q| q.front())
    }

    fn all_queued(&self) -> Vec<&Record> {
        let mut all: Vec<&Record> = self.queues.values().flatten().collect();
        all.sort_by_key(|r| r.id);
        all
    }

    fn find_queued(&self, id: RecordId) -> Option<&Record> {
        self.queues.values().flatten().find(|r| r.id == id)
    }

    /// `used`, recounted from scratch.
    fn recount(&self) -> u64 {
        self.queues
            .values()
            .flatten()
            .map(|r| encoded_len(r, None))
            .sum::<u64>()
            + self.dead.values().map(dead_len).sum::<u64>()
            + self
                .results
                .iter()
                .map(|((route, key), answer)| result_len(route, key, answer))
                .sum::<u64>()
    }

    /// What a keyed `enqueue` answers without writing, if anything.
    fn enqueue_shortcut(&self, route: &str, key: Option<&str>) -> Option<Enqueued> {
        let rk = (route.to_string(), key?.to_string());
        // The contract: the oldest queued record of the route with that key, whoever put it
        // there (a new call or an operator's retry).
        if let Some(r) = self.queue(route).find(|r| r.key.as_deref() == key) {
            return Some(Enqueued::AlreadyQueued(r.id));
        }
        self.results.get(&rk).cloned().map(Enqueued::Delivered)
    }

    fn push(&mut self, record: Record) {
        self.max_id = self.max_id.max(record.id);
        self.used += encoded_len(&record, None);
        self.queues
            .entry(record.route.clone())
            .or_default()
            .push_back(record);
    }

    /// Takes a queued record out of its queue, freeing its key if it held it.
    fn take_queued(&mut self, id: RecordId) -> Record {
        let (route, pos) = self
            .queues
            .iter()
            .find_map(|(route, q)| {
                q.iter()
                    .position(|r| r.id == id)
                    .map(|p| (route.clone(), p))
            })
            .expect("model: queued record present");
        let q = self.queues.get_mut(&route).expect("route present");
        let rec = q.remove(pos).expect("position valid");
        if q.is_empty() {
            self.queues.remove(&route);
        }
        self.used -= encoded_len(&rec, None);
        rec
    }

    fn record_attempt(&mut self, id: RecordId, error: &str) {
        let rec = self
            .queues
            .values_mut()
            .flatten()
            .find(|r| r.id == id)
            .expect("model: queued record present");
        self.used -= encoded_len(rec, None);
        rec.attempts += 1;
        rec.last_error = Some(truncated(error));
        self.used += encoded_len(rec, None);
    }

    fn add_dead(&mut self, dead: DeadRecord) {
        self.used += dead_len(&dead);
        self.dead.insert(dead.record.id, dead);
    }

    fn take_dead(&mut self, id: RecordId) -> DeadRecord {
        let dead = self.dead.remove(&id).expect("model: dead record present");
        self.used -= dead_len(&dead);
        dead
    }

    fn stats(&self) -> Vec<RouteStats> {
        let mut by_route: BTreeMap<String, RouteStats> = BTreeMap::new();
        for (route, q) in &self.queues {
            by_route.insert(
                route.clone(),
                RouteStats {
                    route: route.clone(),
                    depth: q.len() as u64,
                    oldest_enqueued_at_ms: q.front().map(|r| r.enqueued_at_ms),
                    dead: 0,
                },
            );
        }
        for d in self.dead.values() {
            by_route
                .entry(d.record.route.clone())
                .or_insert_with(|| RouteStats {
                    route: d.record.route.clone(),
                    ..RouteStats::default()
                })
                .dead += 1;
        }
        by_route.into_values().collect()
    }
}

/// A `{:?}` text with each record body (`body: [1, 2, …]`, up to 2000 numbers) cut down to its
/// length and a hash, so a failure report stays readable and different bodies still differ.
fn abbreviate(debug: String) -> String {
    const TAG: &str = "body: [";
    let mut out = String::with_capacity(debug.len().min(4096));
    let mut rest = debug.as_str();
    while let Some(at) = rest.find(TAG) {
        let start = at + TAG.len();
        let Some(len) = rest[start..].find(']') else {
            break;
        };
        let body = &rest[start..start + len];
        let bytes = if body.is_empty() {
            0
        } else {
            body.matches(',').count() + 1
        };
        let hash = body.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        out.push_str(&rest[..at]);
        out.push_str(&format!("body: <{bytes} bytes, fnv {hash:016x}>"));
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    out
}

// ---------------------------------------------------------------------------------------------
// One random sequence against the store and the model.
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Tally {
    ops: usize,
    enqueue_new: usize,
    already_queued: usize,
    delivered_cached: usize,
    full: usize,
    deliveries: usize,
    attempts: usize,
    dead_letters: usize,
    retries: usize,
    drops: usize,
    not_found: usize,
    restarts: usize,
    /// Reopens that met the previous handle's file lock still held (see `Run::open`).
    lock_retries: usize,
    /// Time spent comparing the store with the model, and in restarts (drop + open).
    compare_time: Duration,
    restart_time: Duration,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.ops += o.ops;
        self.enqueue_new += o.enqueue_new;
        self.already_queued += o.already_queued;
        self.delivered_cached += o.delivered_cached;
        self.full += o.full;
        self.deliveries += o.deliveries;
        self.attempts += o.attempts;
        self.dead_letters += o.dead_letters;
        self.retries += o.retries;
        self.drops += o.drops;
        self.not_found += o.not_found;
        self.restarts += o.restarts;
        self.lock_retries += o.lock_retries;
        self.compare_time += o.compare_time;
        self.restart_time += o.restart_time;
    }
}

struct Run {
    seed: u64,
    sequence: usize,
    step: usize,
    history: Vec<String>,
    rng: Rng,
    dir: TempDir,
    store: Option<SledOutbox>,
    model: Model,
    tally: Tally,
    /// Ids whose `get` is checked after the current step.
    touched: Vec<RecordId>,
}

impl Run {
    fn new(seed: u64, sequence: usize) -> Run {
        let dir = TempDir::new("prefront-outbox-model");
        let mut run = Run {
            seed,
            sequence,
            step: 0,
            history: Vec::new(),
            rng: Rng::new(seed ^ splitmix(sequence as u64 + 1)),
            dir,
            store: None,
            model: Model::default(),
            tally: Tally::default(),
            touched: Vec::new(),
        };
        run.open();
        run
    }

    /// Opens the store on this run's directory. sled 0.34 releases its file lock from
    /// background threads shortly *after* the last `Db` handle is dropped
    /// (spacejam/sled#1234, #1289), so a reopen right after a drop can meet our own stale lock:
    /// retry that case (only) for a bounded time.
    fn open(&mut self) {
        let path = self.dir.path().join("buffer");
        let deadline = Instant::now() + LOCK_RETRY_FOR;
        loop {
            match SledOutbox::open(&path, MAX_BYTES, RESULT_TTL) {
                Ok(store) => {
                    self.store = Some(store);
                    return;
                }
                Err(OutboxError::Storage(e))
                    if e.contains("could not acquire lock") && Instant::now() < deadline =>
                {
                    self.tally.lock_retries += 1;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => self.fail(format!("open: unexpected error: {e:?}")),
            }
        }
    }

    fn store(&self) -> &SledOutbox {
        self.store.as_ref().expect("store open")
    }

    fn fail(&self, msg: impl std::fmt::Display) -> ! {
        let from = self.history.len().saturating_sub(HISTORY_TAIL);
        let tail: Vec<String> = self.history[from..]
            .iter()
            .enumerate()
            .map(|(i, h)| format!("    #{:<4} {h}", from + i))
            .collect();
        panic!(
            "outbox model mismatch: {msg}\n  seed {seed} (rerun with OUTBOX_MODEL_SEED={seed}), \
             sequence {}, step {}\n  last operations (the last one failed):\n{}",
            self.sequence,
            self.step,
            tail.join("\n"),
            seed = self.seed,
        )
    }

    fn ok<T>(&self, what: &str, r: Result<T, OutboxError>) -> T {
        r.unwrap_or_else(|e| self.fail(format!("{what}: unexpected error: {e:?}")))
    }

    fn check_eq<T: PartialEq + Debug>(&self, what: &str, actual: T, expected: T) {
        if actual != expected {
            self.fail(format!(
                "{what}\n    store: {}\n    model: {}",
                abbreviate(format!("{actual:?}")),
                abbreviate(format!("{expected:?}"))
            ));
        }
    }

    fn check(&self, what: &str, cond: bool) {
        if !cond {
            self.fail(what);
        }
    }

    fn expect_not_found(&mut self, what: &str, id: RecordId, r: Result<(), OutboxError>) {
        match r {
            Err(OutboxError::NotFound(n)) if n == id => self.tally.not_found += 1,
            other => self.fail(format!("{what}: want NotFound({id}), got {other:?}")),
        }
    }

    fn note(&mut self, s: String) {
        self.history.push(s);
    }

    /// Amends the description of the current operation with its outcome.
    fn outcome(&mut self, s: impl std::fmt::Display) {
        if let Some(last) = self.history.last_mut() {
            last.push_str(&format!(" -> {s}"));
        }
    }

    fn random_route(&mut self) -> &'static str {
        ROUTES[self.rng.below(ROUTES.len())]
    }

    fn random_queued_id(&mut self) -> Option<RecordId> {
        let all: Vec<RecordId> = self.model.all_queued().iter().map(|r| r.id).collect();
        (!all.is_empty()).then(|| *self.rng.pick(&all))
    }

    fn random_dead_id(&mut self) -> Option<RecordId> {
        let all: Vec<RecordId> = self.model.dead.keys().copied().collect();
        (!all.is_empty()).then(|| *self.rng.pick(&all))
    }

    fn random_gone_id(&mut self) -> RecordId {
        if self.model.gone.is_empty() || self.rng.percent(20) {
            // Never handed out yet (far beyond anything this run reaches).
            self.model.max_id + 1_000_000_000 + self.rng.below(1000) as u64
        } else {
            *self.rng.pick(&self.model.gone)
        }
    }

    /// Steps 0..50 and 100..150 fill, 50..100 mix.
    fn filling(&self) -> bool {
        (self.step / 50) % 2 == 0
    }

    fn step(&mut self) {
        self.touched.clear();
        // Weights in percent: enqueue, deliver, fail, dead-letter, retry, drop, stale, restart.
        // Sequences alternate between filling phases (so the quota is reached) and mixed ones
        // (so the store drains, keys are freed and dead letters come back).
        const FILL: [usize; 8] = [70, 6, 6, 5, 3, 2, 5, 3];
        const MIXED: [usize; 8] = [30, 17, 10, 11, 10, 9, 10, 3];
        let weights = if self.filling() { FILL } else { MIXED };
        let mut roll = self.rng.below(weights.iter().sum());
        let op = weights
            .iter()
            .position(|&w| {
                let hit = roll < w;
                roll = roll.saturating_sub(w);
                hit
            })
            .expect("roll below the sum of weights");
        match op {
            0 => self.op_enqueue(),
            1 => self.op_deliver(),
            2 => self.op_fail(),
            3 => self.op_dead_letter(),
            4 => self.op_retry(),
            5 => self.op_drop(),
            6 => self.op_stale(),
            _ => self.op_restart(),
        }
        self.tally.ops += 1;
        let t = Instant::now();
        self.compare();
        self.tally.compare_time += t.elapsed();
    }

    // --- operations -------------------------------------------------------------------------

    fn op_enqueue(&mut self) {
        let route = self.random_route();
        // Filling phases mostly write unkeyed calls: keyed ones soon all hit a holder.
        let keyed = if self.filling() { 25 } else { 70 };
        let key = if self.rng.percent(keyed) {
            Some(*self.rng.pick(&KEYS))
        } else {
            None
        };
        let len = self.rng.below(2001);
        let body = self.rng.bytes(len);
        let request_id = format!("req-{}-{}", self.sequence, self.step);
        self.note(format!(
            "enqueue({route:?}, key={key:?}, body={len}B, {request_id})"
        ));

        let shortcut = self.model.enqueue_shortcut(route, key);
        let used_before = self.model.used;
        let t0 = now_ms();
        let got = self.store().enqueue(route, key, &body, &request_id);
        let t1 = now_ms();

        match (shortcut, got) {
            (Some(want), Ok(got)) => {
                self.outcome(format!("{got:?}"));
                self.check_eq("enqueue answer (keyed, nothing written)", &got, &want);
                match got {
                    Enqueued::AlreadyQueued(id) => {
                        self.tally.already_queued += 1;
                        self.touched.push(id);
                    }
                    _ => self.tally.delivered_cached += 1,
                }
            }
            (Some(want), Err(e)) => {
                self.outcome(format!("{e:?}"));
                self.fail(format!("enqueue: want {want:?}, got error {e:?}"))
            }
            (None, Ok(Enqueued::New(id))) => {
                self.outcome(format!("New({id})"));
                self.tally.enqueue_new += 1;
                self.check(
                    &format!(
                        "enqueue: new id {id} is not above every id seen so far ({})",
                        self.model.max_id
                    ),
                    id > self.model.max_id,
                );
                let stored = match self.ok("get(new id)", self.store().get(id)) {
                    Some(DeadOrLive::Live(r)) => r,
                    other => self.fail(format!("get({id}) after New: {other:?}")),
                };
                let at = stored.enqueued_at_ms;
                self.check(
                    &format!("enqueued_at_ms {at} outside the call [{t0}, {t1}]"),
                    (t0..=t1).contains(&at),
                );
                let want = Record {
                    id,
                    message_id: format!("{}-{id}", self.store().store_id()),
                    route: route.to_string(),
                    key: key.map(str::to_string),
                    body,
                    request_id,
                    enqueued_at_ms: at,
                    attempts: 0,
                    last_error: None,
                };
                self.check_eq("record as enqueued", &stored, &want);
                let size = encoded_len(&want, None);
                self.check(
                    &format!("enqueue accepted over quota: {used_before} + {size} > {MAX_BYTES}"),
                    used_before + size <= MAX_BYTES,
                );
                self.model.push(want);
                self.touched.push(id);
            }
            (None, Ok(other)) => {
                self.outcome(format!("{other:?}"));
                self.fail(format!("enqueue: want New(_), got {other:?}"))
            }
            (None, Err(OutboxError::Full { used, max })) => {
                self.outcome(format!("Full {{ used: {used}, max: {max} }}"));
                self.tally.full += 1;
                self.check_eq("Full.used", used, used_before);
                self.check_eq("Full.max", max, MAX_BYTES);
                // The id the store drew is unknown; with a 20-digit one the record is as large
                // as it can be, so refusing is wrong if even that would have fit.
                let upper = Record {
                    id: u64::MAX,
                    message_id: format!("{}-{}", self.store().store_id(), u64::MAX),
                    route: route.to_string(),
                    key: key.map(str::to_string),
                    body,
                    request_id,
                    enqueued_at_ms: t1,
                    attempts: 0,
                    last_error: None,
                };
                let size = encoded_len(&upper, None);
                self.check(
                    &format!(
                        "enqueue refused as Full although {used_before} + {size} <= {MAX_BYTES}"
                    ),
                    used_before + size > MAX_BYTES,
                );
            }
            (None, Err(e)) => {
                self.outcome(format!("{e:?}"));
                self.fail(format!("enqueue: unexpected error {e:?}"))
            }
        }
    }

    /// `head(route)`, checked against the model.
    fn checked_head(&self, route: &str) -> Option<Record> {
        let head = self.ok("head", self.store().head(route));
        self.check_eq(
            &format!("head({route:?})"),
            head.as_ref(),
            self.model.head(route),
        );
        head
    }

    fn op_deliver(&mut self) {
        let route = self.random_route();
        self.note(format!("deliver head of {route:?}"));
        let Some(head) = self.checked_head(route) else {
            self.outcome("empty");
            return;
        };
        let len = self.rng.below(40);
        let answer = self.rng.bytes(len);
        self.outcome(format!("id {} key {:?}, answer {len}B", head.id, head.key));
        let r = self.store().delivered(&head, &answer);
        self.ok("delivered", r);
        self.tally.deliveries += 1;
        let rec = self.model.take_queued(head.id);
        if let Some(k) = rec.key {
            if let Some(old) = self.model.results.get(&(rec.route.clone(), k.clone())) {
                self.model.used -= result_len(&rec.route, &k, old);
            }
            self.model.used += result_len(&rec.route, &k, &answer);
            self.model.results.insert((rec.route, k), answer);
        }
        self.model.gone.push(head.id);
        self.touched.push(head.id);
    }

    fn op_fail(&mut self) {
        // Mostly the head (what a forwarder does), sometimes any queued record.
        let id = if self.rng.percent(60) {
            let route = self.random_route();
            self.note(format!("record_attempt on head of {route:?}"));
            match self.checked_head(route) {
                Some(h) => h.id,
                None => {
                    self.outcome("empty");
                    return;
                }
            }
        } else {
            self.note("record_attempt on a random queued record".into());
            match self.random_queued_id() {
                Some(id) => id,
                None => {
                    self.outcome("none queued");
                    return;
                }
            }
        };
        let error = match self.rng.below(4) {
            0 => "timeout: upstream did not answer in 10s".to_string(),
            1 => format!("http 503: attempt at step {}", self.step),
            // Longer than MAX_ERROR_LEN with two-byte chars at odd offsets: cut at a boundary.
            2 => format!("x{}", "é".repeat(200)),
            _ => "connect: connection refused".to_string(),
        };
        self.outcome(format!("id {id}, error {}B", error.len()));
        let r = self.store().record_attempt(id, &error);
        self.ok("record_attempt", r);
        self.tally.attempts += 1;
        self.model.record_attempt(id, &error);
        self.touched.push(id);
    }

    fn op_dead_letter(&mut self) {
        let route = self.random_route();
        self.note(format!("dead_letter head of {route:?}"));
        let Some(head) = self.checked_head(route) else {
            self.outcome("empty");
            return;
        };
        let reason = format!("http 400: rejected at step {}", self.step);
        self.outcome(format!("id {} key {:?}", head.id, head.key));
        let t0 = now_ms();
        let r = self.store().dead_letter(&head, &reason);
        let t1 = now_ms();
        self.ok("dead_letter", r);
        self.tally.dead_letters += 1;
        let rec = self.model.take_queued(head.id);
        let dead = match self.ok("get(dead)", self.store().get(head.id)) {
            Some(DeadOrLive::Dead(d)) => d,
            other => self.fail(format!("get({}) after dead_letter: {other:?}", head.id)),
        };
        self.check(
            &format!(
                "dead_at_ms {} outside the call [{t0}, {t1}]",
                dead.dead_at_ms
            ),
            (t0..=t1).contains(&dead.dead_at_ms),
        );
        let want = DeadRecord {
            record: rec,
            reason,
            dead_at_ms: dead.dead_at_ms,
        };
        self.check_eq("dead record", &dead, &want);
        self.model.add_dead(want);
        self.touched.push(head.id);
    }

    fn op_retry(&mut self) {
        self.note("retry a dead record".into());
        let Some(id) = self.random_dead_id() else {
            let gone = self.random_gone_id();
            self.outcome(format!("none dead; retry({gone}) instead"));
            let r = self.store().retry(gone).map(drop);
            self.expect_not_found("retry(unknown id)", gone, r);
            return;
        };
        let old = self.model.dead.get(&id).expect("dead").clone();
        let route = old.record.route.clone();
        let t0 = now_ms();
        let r = self.store().retry(id);
        let t1 = now_ms();
        let said = self.ok("retry", r);
        self.tally.retries += 1;
        // The store gives the record a new id at the back of its queue; find it there.
        let listed = self.ok(
            "list after retry",
            self.store().list(false, Some(&route), None, LIST_ALL),
        );
        let new = match listed.last() {
            Some(DeadOrLive::Live(r)) => r.clone(),
            other => self.fail(format!("retry({id}): back of {route:?} is {other:?}")),
        };
        self.outcome(format!("id {id} -> new id {} key {:?}", new.id, new.key));
        self.check(
            &format!(
                "retry({id}) said the new id is {said}, the queue has {}",
                new.id
            ),
            said == new.id,
        );
        self.check(
            &format!(
                "retry: new id {} is not above every id seen so far ({})",
                new.id, self.model.max_id
            ),
            new.id > self.model.max_id,
        );
        self.check(
            &format!(
                "retried enqueued_at_ms {} outside the call [{t0}, {t1}]",
                new.enqueued_at_ms
            ),
            (t0..=t1).contains(&new.enqueued_at_ms),
        );
        let want = Record {
            id: new.id,
            enqueued_at_ms: new.enqueued_at_ms,
            attempts: 0,
            last_error: None,
            ..old.record
        };
        self.check_eq("retried record", &new, &want);
        self.model.take_dead(id);
        self.model.push(want);
        self.model.gone.push(id);
        self.touched.extend([id, new.id]);
    }

    fn op_drop(&mut self) {
        let dead = self.rng.percent(50);
        let id = if dead {
            self.random_dead_id()
        } else {
            self.random_queued_id()
        };
        let kind = if dead { "dead" } else { "queued" };
        self.note(format!("drop a {kind} record"));
        let Some(id) = id else {
            self.outcome("none");
            return;
        };
        self.outcome(format!("id {id}"));
        let r = self.store().drop_record(id);
        self.ok("drop_record", r);
        self.tally.drops += 1;
        if dead {
            self.model.take_dead(id);
        } else {
            self.model.take_queued(id);
        }
        self.model.gone.push(id);
        self.touched.push(id);
    }

    /// Operations on ids that are not (or no longer) where the call wants them: `NotFound`, and
    /// nothing changes.
    fn op_stale(&mut self) {
        let gone = self.random_gone_id();
        // A record value to hand to delivered/dead_letter: any template, with the stale id.
        let template = Record {
            id: gone,
            message_id: format!("{}-{gone}", self.store().store_id()),
            route: ROUTES[0].to_string(),
            key: Some(KEYS[0].to_string()),
            body: b"{}".to_vec(),
            request_id: "stale".into(),
            enqueued_at_ms: 0,
            attempts: 0,
            last_error: None,
        };
        match self.rng.below(7) {
            0 => {
                self.note(format!("record_attempt({gone}) on a gone id"));
                let r = self.store().record_attempt(gone, "late");
                self.expect_not_found("record_attempt(gone)", gone, r);
            }
            1 => {
                self.note(format!("delivered(id {gone}) on a gone id"));
                let r = self.store().delivered(&template, b"late");
                self.expect_not_found("delivered(gone)", gone, r);
            }
            2 => {
                self.note(format!("dead_letter(id {gone}) on a gone id"));
                let r = self.store().dead_letter(&template, "late");
                self.expect_not_found("dead_letter(gone)", gone, r);
            }
            3 => {
                self.note(format!("drop_record({gone}) on a gone id"));
                let r = self.store().drop_record(gone);
                self.expect_not_found("drop_record(gone)", gone, r);
            }
            4 => {
                // retry only takes dead records.
                let Some(id) = self.random_queued_id() else {
                    self.note("retry(queued id): none queued".into());
                    return;
                };
                self.note(format!("retry({id}) on a queued id"));
                let r = self.store().retry(id).map(drop);
                self.expect_not_found("retry(queued)", id, r);
            }
            5 => {
                // dead_letter / delivered / record_attempt only take queued records.
                let Some(id) = self.random_dead_id() else {
                    self.note("delivered/dead_letter/record_attempt(dead id): none dead".into());
                    return;
                };
                let rec = self.model.dead[&id].record.clone();
                let which = self.rng.below(3);
                self.note(format!(
                    "{} on dead id {id}",
                    ["delivered", "dead_letter", "record_attempt"][which]
                ));
                let r = match which {
                    0 => self.store().delivered(&rec, b"late"),
                    1 => self.store().dead_letter(&rec, "again"),
                    _ => self.store().record_attempt(id, "late"),
                };
                self.expect_not_found("operation on a dead id", id, r);
            }
            _ => {
                self.note(format!("get({gone}) on a gone id"));
                let got = self.ok("get(gone)", self.store().get(gone));
                self.check_eq("get(gone id)", got, None);
            }
        }
    }

    fn op_restart(&mut self) {
        self.note("restart (drop + reopen)".into());
        let used = self.store().used_bytes();
        let t = Instant::now();
        drop(self.store.take());
        self.open();
        self.tally.restart_time += t.elapsed();
        self.tally.restarts += 1;
        // The reopened store recounts from disk what the running one counted incrementally.
        self.check_eq(
            "used_bytes recounted at open vs before the restart",
            self.store().used_bytes(),
            used,
        );
        self.check_eq(
            "model self-check: byte counter vs recount",
            self.model.used,
            self.model.recount(),
        );
        let mut ids: Vec<RecordId> = self.model.all_queued().iter().map(|r| r.id).collect();
        ids.extend(self.model.dead.keys());
        self.touched.extend(ids);
    }

    // --- comparison -------------------------------------------------------------------------

    /// The records of a `list(false, ..)`, which must all be live.
    fn live<'a>(&self, what: &str, items: &'a [DeadOrLive]) -> Vec<&'a Record> {
        items
            .iter()
            .map(|i| match i {
                DeadOrLive::Live(r) => r,
                DeadOrLive::Dead(d) => {
                    self.fail(format!("{what}: dead record {} listed", d.record.id))
                }
            })
            .collect()
    }

    /// The records of a `list(true, ..)`, which must all be dead.
    fn dead<'a>(&self, what: &str, items: &'a [DeadOrLive]) -> Vec<&'a DeadRecord> {
        items
            .iter()
            .map(|i| match i {
                DeadOrLive::Dead(d) => d,
                DeadOrLive::Live(r) => self.fail(format!("{what}: live record {} listed", r.id)),
            })
            .collect()
    }

    fn compare(&mut self) {
        let store = self.store();
        let model = &self.model;

        for route in ROUTES {
            self.check_eq(
                &format!("depth({route:?})"),
                self.ok("depth", store.depth(route)),
                model.depth(route),
            );
            self.checked_head(route);
            let what = format!("list(queued, {route:?})");
            let listed = self.ok(&what, store.list(false, Some(route), None, LIST_ALL));
            let want: Vec<&Record> = model.queue(route).collect();
            self.check_eq(&what, self.live(&what, &listed), want);
        }

        let routes: BTreeSet<String> = self.ok("routes", store.routes()).into_iter().collect();
        let want: BTreeSet<String> = model.queues.keys().cloned().collect();
        self.check_eq("routes()", &routes, &want);

        let what = "list(queued, all routes)";
        let all = self.ok(what, store.list(false, None, None, LIST_ALL));
        let want = model.all_queued();
        self.check_eq(what, &self.live(what, &all), &want);
        // A small limit returns the oldest ones.
        let what = "list(queued, all routes, limit 2)";
        let few = self.ok(what, store.list(false, None, None, 2));
        self.check_eq(what, &self.live(what, &few)[..], &want[..want.len().min(2)]);

        let what = "list(dead, all routes)";
        let dead = self.ok(what, store.list(true, None, None, LIST_ALL));
        let want: Vec<&DeadRecord> = model.dead.values().collect();
        self.check_eq(what, self.dead(what, &dead), want);
        let route = ROUTES[self.step % ROUTES.len()];
        let what = format!("list(dead, {route:?})");
        let dead = self.ok(&what, store.list(true, Some(route), None, LIST_ALL));
        let want: Vec<&DeadRecord> = model
            .dead
            .values()
            .filter(|d| d.record.route == route)
            .collect();
        self.check_eq(&what, self.dead(&what, &dead), want);

        let (mut stats, used) = self.ok("stats", store.stats());
        stats.sort_by(|a, b| a.route.cmp(&b.route));
        self.check_eq("stats() per route", &stats, &model.stats());
        let model_used = model.used;
        self.check_eq("stats() used bytes", used, model_used);
        self.check_eq("used_bytes()", store.used_bytes(), model_used);
        // No `used <= MAX_BYTES` here: only enqueue is held to the quota. A dead letter (reason,
        // time) or a failed attempt (`last_error`) makes a stored record larger and may take the
        // total a little over it; `op_enqueue` checks that no *enqueue* is accepted over it.

        for &id in &self.touched {
            let got = self.ok("get", store.get(id));
            let what = format!("get({id})");
            match (&got, model.find_queued(id), model.dead.get(&id)) {
                (Some(DeadOrLive::Live(r)), Some(want), _) => self.check_eq(&what, r, want),
                (Some(DeadOrLive::Dead(d)), None, Some(want)) => self.check_eq(&what, d, want),
                (None, None, None) => {}
                (got, live, dead) => self.fail(format!(
                    "{what}\n    store: {got:?}\n    model: queued {live:?}, dead {dead:?}"
                )),
            }
        }
    }
}

fn run_sequence(seed: u64, sequence: usize) -> Tally {
    let mut run = Run::new(seed, sequence);
    run.compare();
    for step in 0..OPS_PER_SEQUENCE {
        run.step = step;
        run.step();
    }
    // And once more after a last restart.
    run.step = OPS_PER_SEQUENCE;
    run.op_restart();
    run.compare();
    run.tally
}

#[test]
fn sled_outbox_matches_the_model() {
    let seed = master_seed();
    println!("outbox model: seed {seed} (set OUTBOX_MODEL_SEED={seed} to replay)");
    let started = Instant::now();
    let mut total = Tally::default();
    for sequence in 0..SEQUENCES {
        total.add(&run_sequence(seed, sequence));
    }
    let elapsed = started.elapsed();
    println!(
        "outbox model: {SEQUENCES} sequences, {} operations in {:.2?}: {} new, {} already queued, \
         {} answered from the result cache, {} full, {} delivered, {} attempts, {} dead-lettered, \
         {} retried, {} dropped, {} not-found checks, {} restarts",
        total.ops,
        elapsed,
        total.enqueue_new,
        total.already_queued,
        total.delivered_cached,
        total.full,
        total.deliveries,
        total.attempts,
        total.dead_letters,
        total.retries,
        total.drops,
        total.not_found,
        total.restarts,
    );
    println!(
        "outbox model: of which {:.2?} comparing store and model after each step, {:.2?} in \
         restarts (drop + reopen)",
        total.compare_time, total.restart_time
    );
    if total.lock_retries > 0 {
        println!(
            "outbox model: {} reopen attempt(s) met sled's file lock still held by the dropped \
             handle and were retried",
            total.lock_retries
        );
    }
    // Every kind of outcome must actually have been exercised, or the test proves little.
    assert!(total.enqueue_new > 0 && total.already_queued > 0 && total.delivered_cached > 0);
    assert!(total.full > 0, "no enqueue ever hit the quota");
    assert!(total.retries > 0 && total.drops > 0 && total.restarts > 0);
}

#[test]
fn quota_is_freed_by_delivery() {
    let dir = TempDir::new("prefront-outbox-quota");
    let store = SledOutbox::open(&dir.path().join("buffer"), MAX_BYTES, RESULT_TTL).unwrap();
    let route = ROUTES[0];
    let body = vec![b'x'; 1500];

    let mut accepted = 0;
    let full_used = loop {
        match store.enqueue(route, None, &body, &format!("fill-{accepted}")) {
            Ok(Enqueued::New(_)) => accepted += 1,
            Ok(other) => panic!("unkeyed enqueue answered {other:?}"),
            Err(OutboxError::Full { used, max }) => {
                assert_eq!(max, MAX_BYTES);
                break used;
            }
            Err(e) => panic!("enqueue: {e:?}"),
        }
        assert!(
            accepted <= 40,
            "40 000 bytes took more than 40 bodies of 1500 bytes"
        );
    };
    assert!(accepted > 0);
    assert_eq!(full_used, store.used_bytes());
    assert!(store.used_bytes() <= MAX_BYTES);
    assert!(store.used_bytes() + 1500 > MAX_BYTES);
    assert_eq!(store.depth(route).unwrap(), accepted);

    // Full stays full, and a keyed enqueue is refused alike.
    assert!(matches!(
        store.enqueue(route, Some("k"), &body, "again"),
        Err(OutboxError::Full { .. })
    ));

    // Delivering one frees its bytes: the next call of the same size goes in.
    let head = store.head(route).unwrap().expect("a head");
    store.delivered(&head, b"ok").unwrap();
    assert!(store.used_bytes() < full_used);
    assert!(matches!(
        store.enqueue(route, None, &body, "after-delivery"),
        Ok(Enqueued::New(_))
    ));
    assert!(store.used_bytes() <= MAX_BYTES);
    assert_eq!(store.depth(route).unwrap(), accepted);
    assert!(matches!(
        store.enqueue(route, None, &body, "full-again"),
        Err(OutboxError::Full { .. })
    ));

    // A dead letter still counts; dropping it frees its bytes.
    let head = store.head(route).unwrap().expect("a head");
    store.dead_letter(&head, "http 400").unwrap();
    assert!(matches!(
        store.enqueue(route, None, &body, "dead-counts"),
        Err(OutboxError::Full { .. })
    ));
    store.drop_record(head.id).unwrap();
    assert!(matches!(
        store.enqueue(route, None, &body, "after-drop"),
        Ok(Enqueued::New(_))
    ));

    // The quota survives a restart: the reopened store is just as full.
    let used = store.used_bytes();
    drop(store);
    let store = SledOutbox::open(&dir.path().join("buffer"), MAX_BYTES, RESULT_TTL).unwrap();
    assert_eq!(store.used_bytes(), used);
    assert!(matches!(
        store.enqueue(route, None, &body, "after-restart"),
        Err(OutboxError::Full { .. })
    ));
}

/// The contract (`Outbox::enqueue`): a keyed call while a record with that key is queued answers
/// `AlreadyQueued`, also when the record is a retried dead letter and a newer record with the
/// same key came and went meanwhile (found by the model test: the store once kept one holder
/// per key, and lost track of the retried one).
#[test]
fn retried_key_stays_deduplicated() {
    let dir = TempDir::new("prefront-outbox-retry-key");
    let store = SledOutbox::open(&dir.path().join("buffer"), MAX_BYTES, RESULT_TTL).unwrap();
    let (route, key) = (ROUTES[0], Some("refundNo=R1"));

    let Ok(Enqueued::New(first)) = store.enqueue(route, key, b"{}", "r1") else {
        panic!("first enqueue");
    };
    let rec = store.head(route).unwrap().unwrap();
    store.dead_letter(&rec, "http 400").unwrap();
    let Ok(Enqueued::New(second)) = store.enqueue(route, key, b"{}", "r2") else {
        panic!("second enqueue (key freed by the dead letter)");
    };
    store.retry(first).unwrap();
    assert_eq!(store.depth(route).unwrap(), 2);
    // The newer record leaves the queue without an answer (dropped by the operator).
    store.drop_record(second).unwrap();
    let retried = store
        .head(route)
        .unwrap()
        .expect("the retried record is queued");
    assert_eq!(retried.key.as_deref(), key);

    assert_eq!(
        store.enqueue(route, key, b"{}", "r3").unwrap(),
        Enqueued::AlreadyQueued(retried.id),
        "a record with this key is queued, so the call must not be queued again"
    );
}

/// `AsyncOutbox::enqueue` (the listener's path): many callers wait on the group commit as tasks, not
/// threads. Every acknowledged call is a distinct record that a reopened store still holds, in
/// the order the ids say; callers with the same key share one record.
#[test]
fn async_callers_share_commits_and_lose_nothing() {
    let dir = TempDir::new("prefront-outbox-async");
    let path = dir.path().join("buffer");
    let store: std::sync::Arc<dyn Outbox> =
        std::sync::Arc::new(SledOutbox::open(&path, MAX_BYTES, RESULT_TTL).unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (route, keyed) = (ROUTES[0], ROUTES[1]);
    let (plain, same_key): (Vec<Enqueued>, Vec<Enqueued>) = runtime.block_on(async {
        let mut plain = Vec::new();
        let mut keyed_calls = Vec::new();
        for i in 0..200 {
            let s = store.clone();
            plain.push(tokio::spawn(async move {
                let body = format!("{{\"n\":{i}}}");
                AsyncOutbox::new(s)
                    .enqueue(
                        &Route::from_stored(route),
                        None,
                        body.as_bytes(),
                        &format!("r{i}"),
                    )
                    .await
            }));
        }
        for i in 0..20 {
            let s = store.clone();
            keyed_calls.push(tokio::spawn(async move {
                AsyncOutbox::new(s)
                    .enqueue(
                        &Route::from_stored(keyed),
                        Some("refundNo=R9"),
                        b"{}",
                        &format!("k{i}"),
                    )
                    .await
            }));
        }
        let mut a = Vec::new();
        for t in plain {
            a.push(t.await.unwrap().expect("acknowledged"));
        }
        let mut b = Vec::new();
        for t in keyed_calls {
            b.push(t.await.unwrap().expect("acknowledged"));
        }
        (a, b)
    });
    let ids: BTreeSet<u64> = plain
        .iter()
        .map(|e| match e {
            Enqueued::New(id) => *id,
            other => panic!("a call without a key is always new: {other:?}"),
        })
        .collect();
    assert_eq!(ids.len(), 200, "200 distinct records");
    let new_keyed = same_key
        .iter()
        .filter(|e| matches!(e, Enqueued::New(_)))
        .count();
    assert_eq!(new_keyed, 1, "one record for one key: {same_key:?}");
    assert!(
        same_key
            .iter()
            .all(|e| matches!(e, Enqueued::New(_) | Enqueued::AlreadyQueued(_))),
        "{same_key:?}"
    );

    drop(runtime);
    drop(store);
    let store = SledOutbox::open(&path, MAX_BYTES, RESULT_TTL).unwrap();
    assert_eq!(store.depth(route).unwrap(), 200);
    assert_eq!(store.depth(keyed).unwrap(), 1);
    let mut held = Vec::new();
    while let Some(rec) = store.head(route).unwrap() {
        held.push(rec.id);
        store.delivered(&rec, b"{}").unwrap();
    }
    assert_eq!(held, ids.into_iter().collect::<Vec<_>>(), "FIFO by id");
}
