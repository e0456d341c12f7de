//! The message trail (DESIGN.md §8): where is refund RF-1, did the reminder go out. One line per
//! event in append-only segment files: a call as it was answered, then what became of a
//! buffered one (delivered with the cloud's answer code, retried, dead-lettered, dropped,
//! expired) and what an operator did. A query folds a call's later events into its entry.
//!
//! No bodies, and nothing the log masking would mask: route names, outcomes, request and
//! message ids, and the catalogue's business key (masked like a log line when it looks like a
//! person's data). Writing costs a call one channel send: a writer thread batches the lines and
//! flushes them once a second, so the trail may lag a crash by about a second (the buffer never
//! does). Bounded: segments older than `max_age`, and the oldest past `max_bytes`, are deleted.

pub mod query;

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ring::hmac;
use serde::{Deserialize, Serialize};

use crate::config::TrailConfig;

/// One line of the trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Line {
    /// Unix milliseconds.
    pub t: u64,
    /// What happened: `call`, `delivered`, `retry`, `dead`, `dropped`, `expired`, `requeued`,
    /// `audit`.
    pub ev: Cow<'static, str>,
    /// The call's request id (the trail's thread through a message's life).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rid: String,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub dir: Cow<'static, str>,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub route: Cow<'static, str>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub peer: String,
    /// `call`: the call's outcome; `audit`: the action.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub out: Cow<'static, str>,
    #[serde(default, skip_serializing_if = "is_zero_u16")]
    pub st: u16,
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub lat: f64,
    /// The business key, masked as a log line would show it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// A keyed hash of the business key as sent: what a search by key matches (the key itself
    /// can be a person's card or ID number, so it is never stored in clear).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kh: Option<String>,
    /// The buffered message's id (`X-Prefront-Message-Id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mid: Option<String>,
    /// The buffer's record id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub att: Option<u32>,
    /// The cloud's answer code on delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Why (a retry's error kind, a dead letter's reason): never patient data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

fn is_empty(v: &str) -> bool {
    v.is_empty()
}

fn is_zero_u16(v: &u16) -> bool {
    *v == 0
}

fn is_zero_f64(v: &f64) -> bool {
    *v == 0.0
}

/// Lines waiting for the writer; past this, new lines are dropped (and counted) rather than
/// slow a call or grow without bound (a disk that stalls the writer).
const QUEUE: usize = 65_536;
/// How often the writer takes the waiting lines.
const BATCH_EVERY: Duration = Duration::from_millis(100);
/// A segment is closed and a new one started past this size (or at the first line of a new
/// day), so the oldest can be deleted whole.
const SEGMENT_BYTES: u64 = 8 << 20;
/// How often the writer flushes and checks the bounds.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Lines waiting for the writer. A call pushes its line under the lock and wakes nobody; the
/// writer takes the whole batch every `BATCH_EVERY` (a wake-up per call cost more than the line).
static PENDING: Mutex<Vec<Line>> = Mutex::new(Vec::new());
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Set when the writer is to write what is left and end.
static STOP: AtomicBool = AtomicBool::new(false);
/// The key of the business-key hashes of the trail being written.
static KEY: OnceLock<hmac::Key> = OnceLock::new();
/// The file beside the segments that holds that key (only the service may read it).
const KEY_FILE: &str = "trail.key";
static DROPPED: AtomicU64 = AtomicU64::new(0);
static WRITTEN: AtomicU64 = AtomicU64::new(0);

/// Lines dropped because the writer could not keep up or could not write.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Lines handed to the writer since start.
pub fn written() -> u64 {
    WRITTEN.load(Ordering::Relaxed)
}

/// Whether this process writes a trail (callers skip building lines when it does not).
pub fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// A business key for a line: masked for display, and its keyed hash for search.
pub fn key_fields(raw: &str) -> (Option<String>, Option<String>) {
    let masked = crate::telemetry::redact::mask_text(raw).into_owned();
    (Some(masked), KEY.get().map(|k| hash_with(k, raw)))
}

fn hash_with(key: &hmac::Key, raw: &str) -> String {
    let tag = hmac::sign(key, raw.as_bytes());
    tag.as_ref()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The hash a search for `raw` in the trail at `dir` must match; `None` when that trail has no
/// key (nothing was ever written there).
pub fn key_hash_in(dir: &Path, raw: &str) -> Option<String> {
    let bytes = std::fs::read(dir.join(KEY_FILE)).ok()?;
    (bytes.len() == 32).then(|| hash_with(&hmac::Key::new(hmac::HMAC_SHA256, &bytes), raw))
}

/// Reads the trail's hash key, or makes one (32 random bytes, mode 0600).
fn load_or_create_key(dir: &Path) -> std::io::Result<Vec<u8>> {
    let path = dir.join(KEY_FILE);
    match std::fs::read(&path) {
        Ok(b) if b.len() == 32 => return Ok(b),
        Ok(_) => {
            return Err(std::io::Error::other(format!(
                "{} is not 32 bytes: remove it (searches by key of older entries will not match)",
                path.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut key = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
        .map_err(|_| std::io::Error::other("no random numbers for the trail's key"))?;
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&path)?;
    f.write_all(&key)?;
    f.sync_all()?;
    Ok(key.to_vec())
}

/// Adds a line to the trail, if one is being written in this process. Never waits for the disk.
pub fn record(line: Line) {
    if !active() {
        return;
    }
    let mut pending = PENDING.lock().unwrap_or_else(|p| p.into_inner());
    if pending.len() >= QUEUE {
        DROPPED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    pending.push(line);
    WRITTEN.fetch_add(1, Ordering::Relaxed);
}

/// The trail's writer thread; flushes what it holds when dropped.
pub struct Writer {
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("trail::Writer")
    }
}

impl Writer {
    /// Starts writing the trail of this process into `config.path`. `None` when the trail is
    /// off or its directory cannot be made (said in the log; calls are not affected).
    pub fn start(config: &TrailConfig) -> Option<Writer> {
        if !config.enabled {
            return None;
        }
        if let Err(e) = std::fs::create_dir_all(&config.path) {
            tracing::error!(path = %config.path.display(), error = %e, "trail: cannot create its directory; the trail is off");
            return None;
        }
        match load_or_create_key(&config.path) {
            Ok(k) => {
                let _ = KEY.set(hmac::Key::new(hmac::HMAC_SHA256, &k));
            }
            Err(e) => {
                tracing::error!(path = %config.path.display(), error = %e, "trail: no key for its business-key hashes; the trail is off");
                return None;
            }
        }
        STOP.store(false, Ordering::Relaxed);
        ACTIVE.store(true, Ordering::Relaxed);
        let config = config.clone();
        let thread = std::thread::Builder::new()
            .name("prefront-trail".into())
            .spawn(move || write_loop(&config))
            .ok()?;
        Some(Writer {
            thread: Some(thread),
        })
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        ACTIVE.store(false, Ordering::Relaxed);
        // The writer writes what is waiting, then ends.
        STOP.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// The segment files of a trail directory, oldest first, with their sizes.
pub fn segments(dir: &Path) -> Vec<(PathBuf, u64)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, u64)> = rd
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("trail-") && name.ends_with(".jsonl")
        })
        .map(|e| (e.path(), e.metadata().map_or(0, |m| m.len())))
        .collect();
    // Names carry the first line's Unix milliseconds, zero-padded: they sort by time.
    out.sort();
    out
}

/// The Unix milliseconds a segment starts at, from its name.
fn segment_start(path: &Path) -> Option<u64> {
    path.file_name()?
        .to_str()?
        .strip_prefix("trail-")?
        .strip_suffix(".jsonl")?
        .parse()
        .ok()
}

struct Current {
    path: PathBuf,
    out: BufWriter<File>,
    bytes: u64,
    day: u64,
}

fn write_loop(config: &TrailConfig) {
    let mut current: Option<Current> = None;
    let mut last_flush = Instant::now();
    let mut last_prune: Option<Instant> = None;
    let mut failing = false;
    let mut scratch = Vec::with_capacity(512);
    let mut batch = Vec::new();
    loop {
        let stopping = STOP.load(Ordering::Relaxed);
        std::mem::swap(
            &mut batch,
            &mut *PENDING.lock().unwrap_or_else(|p| p.into_inner()),
        );
        for line in batch.drain(..) {
            match append(config, &mut current, &line, &mut scratch) {
                Ok(()) => failing = false,
                Err(e) => {
                    DROPPED.fetch_add(1, Ordering::Relaxed);
                    current = None;
                    if !failing {
                        tracing::error!(path = %config.path.display(), error = %e, "trail: cannot write; lines are dropped until it can (calls are not affected)");
                        failing = true;
                    }
                }
            }
        }
        if stopping {
            break;
        }
        if last_flush.elapsed() >= FLUSH_EVERY {
            if let Some(c) = current.as_mut() {
                let _ = c.out.flush();
            }
            last_flush = Instant::now();
        }
        if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            prune(config, current.as_ref().map(|c| c.path.as_path()));
            last_prune = Some(Instant::now());
        }
        std::thread::park_timeout(BATCH_EVERY);
    }
    if let Some(mut c) = current {
        let _ = c.out.flush();
        let _ = c.out.get_ref().sync_all();
    }
}

fn append(
    config: &TrailConfig,
    current: &mut Option<Current>,
    line: &Line,
    text: &mut Vec<u8>,
) -> std::io::Result<()> {
    text.clear();
    serde_json::to_writer(&mut *text, line).map_err(std::io::Error::other)?;
    text.push(b'\n');
    let day = line.t / 86_400_000;
    let rotate = current
        .as_ref()
        .is_none_or(|c| c.bytes + text.len() as u64 > SEGMENT_BYTES || c.day != day);
    if rotate {
        if let Some(mut old) = current.take() {
            old.out.flush()?;
        }
        // A name already taken (two segments in one millisecond) gets the next millisecond.
        let mut start = line.t;
        let path = loop {
            let p = config.path.join(format!("trail-{start:016}.jsonl"));
            if !p.exists() {
                break p;
            }
            start += 1;
        };
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        *current = Some(Current {
            path,
            out: BufWriter::with_capacity(64 << 10, file),
            bytes: 0,
            day,
        });
    }
    if let Some(c) = current.as_mut() {
        c.out.write_all(text)?;
        c.bytes += text.len() as u64;
    }
    Ok(())
}

/// Deletes segments past `max_age` (by their successor's start: the last line they can hold)
/// and, oldest first, those past `max_bytes`. The segment being written stays.
fn prune(config: &TrailConfig, writing: Option<&Path>) {
    let segs = segments(&config.path);
    let now = crate::clock::now_ms();
    let max_age_ms = u64::try_from(config.max_age.as_millis()).unwrap_or(u64::MAX);
    let mut total: u64 = segs.iter().map(|(_, n)| n).sum();
    for (i, (path, len)) in segs.iter().enumerate() {
        if Some(path.as_path()) == writing {
            break;
        }
        let ends = segs.get(i + 1).and_then(|(p, _)| segment_start(p));
        let too_old = ends.is_some_and(|e| now.saturating_sub(e) > max_age_ms);
        let too_big = total > config.max_bytes;
        if !too_old && !too_big {
            break;
        }
        match std::fs::remove_file(path) {
            Ok(()) => {
                total = total.saturating_sub(*len);
                tracing::info!(segment = %path.display(), bytes = len, reason = if too_old { "trail.max_age" } else { "trail.max_bytes" }, "trail: oldest segment deleted");
            }
            Err(e) => {
                tracing::warn!(segment = %path.display(), error = %e, "trail: cannot delete an old segment");
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, max_bytes: u64) -> TrailConfig {
        TrailConfig {
            enabled: true,
            path: dir.to_path_buf(),
            max_age: Duration::from_secs(3600),
            max_bytes,
        }
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("prefront-trail-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn lines_round_trip_without_empty_fields() {
        let l = Line {
            t: 1,
            ev: "call".into(),
            rid: "r1".into(),
            out: "queued".into(),
            st: 200,
            key: Some("refundNo=RF-1".into()),
            ..Line::default()
        };
        let text = serde_json::to_string(&l).unwrap_or_default();
        assert!(!text.contains("peer") && !text.contains("code"), "{text}");
        let back: Line = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(back, l);
    }

    #[test]
    fn segments_rotate_by_day_and_the_oldest_go_past_max_bytes() {
        let dir = tmp("rotate");
        std::fs::create_dir_all(&dir).unwrap_or_default();
        let c = config(&dir, 300);
        let mut current = None;
        for day in 0..4u64 {
            let line = Line {
                t: 1_700_000_000_000 + day * 86_400_000,
                ev: "call".into(),
                rid: format!("r{day}"),
                route: "prefront/sendTipMessage/payment".into(),
                ..Line::default()
            };
            append(&c, &mut current, &line, &mut Vec::new()).unwrap_or_default();
        }
        if let Some(cur) = current.as_mut() {
            cur.out.flush().unwrap_or_default();
        }
        let segs = segments(&dir);
        assert_eq!(segs.len(), 4, "one segment per day");
        prune(&c, current.as_ref().map(|c| c.path.as_path()));
        let left = segments(&dir);
        let total: u64 = left.iter().map(|(_, n)| n).sum();
        assert!(total <= 300 || left.len() == 1, "{left:?}");
        assert!(left.len() < 4, "the oldest were deleted: {left:?}");
        assert_eq!(
            left.last().map(|s| &s.0),
            segs.last().map(|s| &s.0),
            "the newest stays"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
