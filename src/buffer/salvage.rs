//! Reading a store as plain bytes: every frame (`codec.rs`) in the log and blob files is found by
//! its magic and checked by its CRC, whatever state sled's own structures are in. From the frames
//! the scan works out which records the store still held (the best version of each id, minus
//! those a delivery mark or a tombstone says are finished), and how many acknowledged records
//! cannot be found at all.
//!
//! The start-up check runs a scan *before* sled opens the store, because sled's recovery zeroes
//! the log past a damaged message — the very bytes a salvage needs.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::codec::{self, Kind, Mark, ResultMeta, State, StoreIdent, Tomb, HEADER_LEN};
use super::{Record, RecordId};

/// Where a frame lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    file: usize,
    offset: u64,
    len: usize,
}

/// The best version of one record found.
#[derive(Debug, Clone)]
pub struct Found {
    pub id: RecordId,
    pub route: String,
    pub dead: bool,
    attempts: u32,
    loc: Loc,
}

/// What a scan of a store's files found.
#[derive(Debug, Default)]
pub struct Scan {
    files: Vec<PathBuf>,
    /// Records still held, oldest first.
    pub records: Vec<Found>,
    /// Result cache entries, the latest of each (route, key).
    results: Vec<(ResultMeta, Loc)>,
    /// The state at the last point known durable, if a state frame was found.
    pub state: Option<State>,
    /// Records the durable state counted that the scan can account for neither as held nor as
    /// finished since: acknowledged and gone.
    pub lost: u64,
    /// The highest record id seen anywhere.
    pub max_id: RecordId,
    /// The store's own id (its records' message ids derive from it), if its frame survived.
    pub store_id: Option<String>,
    /// Intact frames, and frame headers whose content failed its checksum.
    pub frames: u64,
    pub damaged_frames: u64,
}

/// Bytes read per step of the scan.
const CHUNK: usize = 4 << 20;

/// Scans the store directory `dir`: its `db` log and every file under `blobs/`.
pub fn scan_dir(dir: &Path) -> std::io::Result<Scan> {
    let mut files = vec![dir.join("db")];
    if let Ok(entries) = std::fs::read_dir(dir.join("blobs")) {
        let mut blobs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        blobs.sort();
        files.extend(blobs);
    }
    let mut acc = Acc::default();
    if let Some(state) = read_sidecar(dir) {
        acc.sidecar = Some(state);
    }
    for (i, path) in files.iter().enumerate() {
        match File::open(path) {
            Ok(f) => scan_file(i, &f, &mut acc)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(acc.finish(files))
}

#[derive(Default)]
struct Acc {
    best: HashMap<RecordId, Found>,
    states: Vec<State>,
    marks: HashMap<String, Vec<(u64, RecordId)>>,
    tombs: HashMap<RecordId, u64>,
    results: HashMap<(String, String), (ResultMeta, Loc)>,
    idents: Vec<String>,
    frames: u64,
    damaged: u64,
    /// The state file beside the log (`SIDECAR`), written after fsyncs.
    sidecar: Option<Sidecar>,
}

/// What the sidecar file holds: the state as of a recent fsync and the routes' delivery marks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sidecar {
    pub state: State,
    #[serde(default)]
    pub marks: BTreeMap<String, RecordId>,
}

/// A small file beside sled's files that holds the store's state as of a recent fsync. The log
/// holds the same frames, but a log cut short or deleted takes them with it: this file is what
/// tells that records are missing then.
pub const SIDECAR: &str = "prefront-state";

/// The sidecar file of store `dir`, if it is there and intact.
pub fn read_sidecar(dir: &Path) -> Option<Sidecar> {
    let bytes = std::fs::read(dir.join(SIDECAR)).ok()?;
    codec::json_payload::<Sidecar>(Kind::State, &bytes).ok()
}

/// Writes the sidecar file atomically (a new file, synced, renamed over the old one).
pub fn write_sidecar(dir: &Path, state: &Sidecar) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!("{SIDECAR}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    f.write_all(&codec::json_frame(Kind::State, state))?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, dir.join(SIDECAR))?;
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        d.sync_all()?;
    }
    Ok(())
}

fn read_at(f: &File, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
    let mut f = f;
    f.seek(SeekFrom::Start(offset))?;
    f.read_exact(buf)
}

fn scan_file(file: usize, f: &File, acc: &mut Acc) -> std::io::Result<()> {
    let size = f.metadata()?.len();
    let finder = memchr::memmem::Finder::new(&codec::MAGIC);
    let mut chunk = vec![0u8; CHUNK];
    let mut frame_buf = Vec::new();
    let mut base = 0u64;
    // The end of the last intact frame: a magic inside it is part of its payload.
    let mut consumed = 0u64;
    while base < size {
        let n = (size - base).min(CHUNK as u64) as usize;
        read_at(f, base, &mut chunk[..n])?;
        let window = &chunk[..n];
        // A magic that starts in the last few bytes is found again by the next chunk.
        let next_base = if base + (n as u64) < size {
            base + (n as u64) - (codec::MAGIC.len() as u64 - 1)
        } else {
            size
        };
        let mut at = 0usize;
        while let Some(hit) = finder.find(&window[at..]) {
            let pos = at + hit;
            let offset = base + pos as u64;
            at = pos + 1;
            if offset >= next_base {
                break;
            }
            if offset < consumed {
                continue;
            }
            let mut header = [0u8; HEADER_LEN];
            match read_at(f, offset, &mut header)
                .ok()
                .and_then(|_| codec::header(&header))
            {
                Some((_, len)) if offset + (HEADER_LEN + len) as u64 <= size => {
                    frame_buf.resize(HEADER_LEN + len, 0);
                    read_at(f, offset, &mut frame_buf)?;
                    match codec::unframe(&frame_buf) {
                        Ok((kind, payload)) => {
                            acc.frames += 1;
                            let loc = Loc {
                                file,
                                offset,
                                len: HEADER_LEN + len,
                            };
                            acc.take(kind, payload, loc);
                            consumed = offset + (HEADER_LEN + len) as u64;
                        }
                        Err(_) => acc.damaged += 1,
                    }
                }
                // A header cut off by the end of the file, or a stray magic.
                _ => acc.damaged += 1,
            }
        }
        base = next_base.max(consumed.min(size));
    }
    Ok(())
}

impl Acc {
    fn take(&mut self, kind: Kind, payload: &[u8], loc: Loc) {
        match kind {
            Kind::Record => {
                // Only the metadata is needed now; the body is read again if salvaged.
                let Ok((rec, dead)) = codec::record_payload(payload, "") else {
                    self.damaged += 1;
                    return;
                };
                let found = Found {
                    id: rec.id,
                    route: rec.route,
                    dead: dead.is_some(),
                    attempts: rec.attempts,
                    loc,
                };
                // The most advanced version of a record wins: dead over queued, then the one with
                // more attempts.
                let better = |old: &Found| (found.dead, found.attempts) >= (old.dead, old.attempts);
                match self.best.get(&found.id) {
                    Some(old) if !better(old) => {}
                    _ => {
                        self.best.insert(found.id, found);
                    }
                }
            }
            Kind::State => {
                if let Ok(s) = serde_json::from_slice::<State>(payload) {
                    self.states.push(s);
                }
            }
            Kind::Mark => {
                if let Ok(m) = serde_json::from_slice::<Mark>(payload) {
                    self.marks.entry(m.route).or_default().push((m.seq, m.upto));
                }
            }
            Kind::Tomb => {
                if let Ok(t) = serde_json::from_slice::<Tomb>(payload) {
                    let seq = self.tombs.entry(t.id).or_insert(t.seq);
                    *seq = (*seq).min(t.seq);
                }
            }
            Kind::Result => {
                if let Ok((meta, _)) = codec::result_payload(payload) {
                    let k = (meta.route.clone(), meta.key.clone());
                    match self.results.get(&k) {
                        Some((old, _)) if old.expires_ms >= meta.expires_ms => {}
                        _ => {
                            self.results.insert(k, (meta, loc));
                        }
                    }
                }
            }
            Kind::Ident => {
                if let Ok(i) = serde_json::from_slice::<StoreIdent>(payload) {
                    if !self.idents.contains(&i.store_id) {
                        self.idents.push(i.store_id);
                    }
                }
            }
        }
    }

    fn finish(self, files: Vec<PathBuf>) -> Scan {
        // What was acknowledged: the state at the highest point a later write knew durable, or
        // the sidecar's (written after an fsync), whichever is later.
        let mut durable = self.states.iter().map(|s| s.durable).max().unwrap_or(0);
        let mut state = self
            .states
            .iter()
            .filter(|s| s.seq <= durable)
            .max_by_key(|s| s.seq)
            .copied();
        let mut marks = self.marks;
        if let Some(side) = self.sidecar {
            if state.is_none_or(|s| side.state.seq > s.seq) {
                state = Some(side.state);
                durable = durable.max(side.state.seq);
            }
            // Its marks were durable at its seq: finished by then.
            for (route, upto) in side.marks {
                marks.entry(route).or_default().push((0, upto));
            }
        }
        let delivered_upto = |route: &str| {
            marks
                .get(route)
                .and_then(|m| m.iter().map(|(_, upto)| *upto).max())
                .unwrap_or(0)
        };
        // When a record was first seen finished (the lowest seq of a frame that ends it).
        let finished_at = |f: &Found| -> Option<u64> {
            let tomb = self.tombs.get(&f.id).copied();
            let mark = if f.dead {
                None
            } else {
                marks.get(&f.route).and_then(|m| {
                    m.iter()
                        .filter(|(_, upto)| *upto >= f.id)
                        .map(|(seq, _)| *seq)
                        .min()
                })
            };
            match (tomb, mark) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        };
        let mut held = Vec::new();
        let mut accounted = 0u64;
        let acked_max = state.map_or(0, |s| s.max_id);
        for f in self.best.values() {
            let ended =
                self.tombs.contains_key(&f.id) || (!f.dead && f.id <= delivered_upto(&f.route));
            if f.id <= acked_max {
                if !ended {
                    accounted += 1;
                } else if finished_at(f).is_some_and(|seq| seq > durable) {
                    // Held at the durable point, finished since.
                    accounted += 1;
                }
            }
            if !ended {
                held.push(f.clone());
            }
        }
        held.sort_by_key(|f| f.id);
        let mut results: Vec<(ResultMeta, Loc)> = self.results.into_values().collect();
        results.sort_by(|a, b| (&a.0.route, &a.0.key).cmp(&(&b.0.route, &b.0.key)));
        let max_id = self
            .best
            .keys()
            .copied()
            .chain(self.states.iter().map(|s| s.max_id))
            .max()
            .unwrap_or(0);
        Scan {
            files,
            records: held,
            results,
            lost: state.map_or(0, |s| s.live.saturating_sub(accounted)),
            state,
            max_id,
            store_id: self.idents.first().cloned(),
            frames: self.frames,
            damaged_frames: self.damaged,
        }
    }
}

/// A record to put back, as the scan read it.
pub type Salvaged = (Record, Option<(String, u64)>);

impl Scan {
    /// Ids of the records held that were acknowledged (at or below the durable state's highest
    /// id): what a store that opened must hold.
    pub fn acknowledged_ids(&self) -> impl Iterator<Item = RecordId> + '_ {
        let max = self.state.map_or(0, |s| s.max_id);
        self.records
            .iter()
            .map(|f| f.id)
            .filter(move |id| *id <= max)
    }

    /// Bytes of the held records' frames.
    pub fn held_bytes(&self) -> u64 {
        self.records.iter().map(|f| f.loc.len as u64).sum()
    }

    /// Reads the held records back from the files, oldest first, and the unexpired results.
    /// `fallback_store` names the records whose own store id was lost with its frame.
    #[allow(clippy::type_complexity)]
    pub fn read(
        &self,
        fallback_store: &str,
        now_ms: u64,
    ) -> std::io::Result<(Vec<Salvaged>, Vec<(ResultMeta, Vec<u8>)>, u64)> {
        let store = self.store_id.as_deref().unwrap_or(fallback_store);
        let mut handles: HashMap<usize, File> = HashMap::new();
        let mut frame = |loc: Loc| -> std::io::Result<Option<Vec<u8>>> {
            let f = match handles.entry(loc.file) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(File::open(&self.files[loc.file])?)
                }
            };
            let mut buf = vec![0u8; loc.len];
            Ok(read_at(f, loc.offset, &mut buf).ok().map(|_| buf))
        };
        let mut records = Vec::with_capacity(self.records.len());
        let mut unreadable = 0u64;
        for found in &self.records {
            let got = frame(found.loc)?.and_then(|bytes| match codec::unframe(&bytes) {
                Ok((Kind::Record, payload)) => codec::record_payload(payload, store).ok(),
                _ => None,
            });
            match got {
                Some(r) => records.push(r),
                // Changed since the scan (a store still in use): counted, not guessed at.
                None => unreadable += 1,
            }
        }
        let mut results = Vec::new();
        for (meta, loc) in &self.results {
            if meta.expires_ms <= now_ms {
                continue;
            }
            if let Some(bytes) = frame(*loc)? {
                if let Ok((Kind::Result, payload)) = codec::unframe(&bytes) {
                    if let Ok((m, answer)) = codec::result_payload(payload) {
                        results.push((m, answer.to_vec()));
                    }
                }
            }
        }
        Ok((records, results, unreadable))
    }
}

/// What a salvage did, for the log, `/status`, `/metrics` and `doctor`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Why the store was salvaged.
    pub reason: String,
    /// Where the damaged store was moved (empty for `queue salvage PATH`).
    pub moved_to: String,
    /// Records put into the new store (queued and dead).
    pub salvaged: u64,
    /// Acknowledged records that could not be found intact.
    pub lost: u64,
    /// Unix milliseconds of the salvage.
    pub at_ms: u64,
}

use serde::{Deserialize, Serialize};

/// The file a salvage leaves in the moved-aside directory (read by `doctor`).
pub const REPORT_FILE: &str = "salvage-report.json";

/// The moved-aside stores next to `path` and their salvage reports, newest first.
pub fn moved_aside(path: &Path) -> Vec<(PathBuf, Option<Report>)> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let prefix = format!("{}.corrupt-", name.to_string_lossy());
    let mut out: Vec<(PathBuf, Option<Report>)> = std::fs::read_dir(parent)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| {
            let report = std::fs::read(e.path().join(REPORT_FILE))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            (e.path(), report)
        })
        .collect();
    out.sort_by(|a, b| b.0.cmp(&a.0));
    out
}
