//! Outbox benchmark: prints figures, asserts nothing.
//!
//! ```text
//! cargo run --release --example outbox_bench -- [--dir DIR] [--secs N] [--threads 64]
//!     [--body 1024] [--routes 4] [--json FILE] [--keep]
//! ```
//!
//! On one disk and in one run it measures:
//!
//! 1. **raw fsync**: one thread appends `--body` bytes to a file and calls `sync_data()` after
//!    every write: what one-fsync-per-call durability would give;
//! 2. **durable enqueue**: `--threads` callers (tokio tasks on two worker threads, as in the
//!    gateway) each loop on `AsyncOutbox::enqueue` (which answers only after a real fsync, shared by
//!    group commit), over `--routes` routes: acknowledged calls/s and the p50/p99 latency of one
//!    call;
//! 3. **drain**: one thread per route does what the forwarder does per message, `head` then
//!    `delivered`, until every route is empty.
//!
//! The default directory is `target/outbox-bench-<pid>` under the current directory, because
//! /tmp may be tmpfs, where fsync costs nothing. The filesystem is printed, with a warning if it
//! is tmpfs. The data is removed at the end unless `--keep`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use prefront::buffer::sled_store::SledOutbox;
use prefront::buffer::{AsyncOutbox, Enqueued, Outbox, Route};

/// The route of the issue's example; the others make the load realistic (one FIFO per route).
const ROUTES: [&str; 8] = [
    "cloud:prefront/sendTipMessage/payment",
    "cloud:prefront/sendTipMessage/registration",
    "cloud:prefront/sendTipMessage/refund",
    "cloud:prefront/sendTipMessage/report",
    "cloud:prefront/sendTipMessage/inpatient",
    "cloud:prefront/sendTipMessage/prescription",
    "cloud:prefront/sendTipMessage/queue",
    "cloud:prefront/sendTipMessage/appointment",
];

/// Quota large enough never to trigger: the run is bounded by time instead.
const MAX_BYTES: u64 = 8 << 30;

/// The forwarder's answer for a delivered message.
const ANSWER: &[u8] = br#"{"success":true}"#;

/// Targets from the benchmark issue.
const TARGET_PER_S: f64 = 20_000.0;
const TARGET_RATIO: f64 = 10.0;

#[derive(Parser, Debug)]
#[command(about = "Outbox benchmark: raw fsync vs durable (group-committed) enqueue vs drain")]
struct Args {
    /// Directory to run in, created if absent (default: ./target/outbox-bench-<pid>). Must be on
    /// the disk under test.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Seconds for each timed phase (raw fsync, enqueue).
    #[arg(long, default_value_t = 3.0)]
    secs: f64,
    /// Concurrent enqueue callers (tasks).
    #[arg(long, default_value_t = 64)]
    threads: usize,
    /// Body size in bytes (also the size of each raw fsync'd append).
    #[arg(long, default_value_t = 1024)]
    body: usize,
    /// Routes the calls are spread over (1..=8).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(1..=8))]
    routes: u8,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Keep the data directory instead of removing it.
    #[arg(long)]
    keep: bool,
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("outbox_bench: {e}");
        std::process::exit(1);
    }
}

/// Where the benchmark writes, and what it must clean up.
struct Workdir {
    dir: PathBuf,
    created_dir: bool,
    fsync_file: PathBuf,
    sled_dir: PathBuf,
}

impl Workdir {
    fn new(dir: Option<PathBuf>) -> Result<Workdir, String> {
        let dir = match dir {
            Some(d) => d,
            None => PathBuf::from("target").join(format!("outbox-bench-{}", std::process::id())),
        };
        let created_dir = !dir.exists();
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .map_err(|e| format!("cannot resolve {}: {e}", dir.display()))?;
        let fsync_file = dir.join("raw-fsync.dat");
        let sled_dir = dir.join("sled");
        for p in [&fsync_file, &sled_dir] {
            if p.exists() {
                return Err(format!(
                    "{} already exists: give a fresh --dir (nothing was removed)",
                    p.display()
                ));
            }
        }
        Ok(Workdir {
            dir,
            created_dir,
            fsync_file,
            sled_dir,
        })
    }

    /// Removes only what the benchmark created.
    fn remove(&self) {
        let _ = std::fs::remove_file(&self.fsync_file);
        let _ = std::fs::remove_dir_all(&self.sled_dir);
        if self.created_dir {
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

/// The mount that holds `path`: (mount point, source device, filesystem type).
fn filesystem_of(path: &Path) -> Option<(PathBuf, String, String)> {
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    let mut best: Option<(PathBuf, String, String)> = None;
    for line in mounts.lines() {
        let mut fields = line.split_whitespace();
        let (Some(src), Some(point), Some(fstype)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let point = PathBuf::from(unescape_mount(point));
        if !path.starts_with(&point) {
            continue;
        }
        // Longest mount point wins; at equal length the later line is the one mounted on top.
        let longer = best
            .as_ref()
            .is_none_or(|(b, _, _)| point.as_os_str().len() >= b.as_os_str().len());
        if longer {
            best = Some((point, unescape_mount(src), fstype.to_string()));
        }
    }
    best
}

/// /proc/mounts writes space, tab, newline and backslash as `\ooo` octal escapes.
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// CPU time this process has used so far (user, system), from /proc/self/stat; `None` off Linux.
fn process_cpu() -> Option<(Duration, Duration)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the `(comm)`, which may itself hold spaces: state is the 1st, utime the 12th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| -> Option<Duration> {
        // USER_HZ is 100 on every Linux architecture that matters here.
        Some(Duration::from_millis(
            fields.get(i)?.parse::<u64>().ok()? * 10,
        ))
    };
    Some((ticks(11)?, ticks(12)?))
}

/// The 1-minute load average: other work on the machine skews every figure here.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Phase 1: one write + one `sync_data` per call.
fn raw_fsync(path: &Path, body: &[u8], secs: Duration) -> Result<f64, String> {
    let mut f = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    // Make the file's own creation durable first, so the timed loop measures appends only.
    f.sync_all().map_err(|e| format!("fsync: {e}"))?;
    if let Some(parent) = path.parent() {
        let _ = File::open(parent).and_then(|d| d.sync_all());
    }
    let start = Instant::now();
    let mut n: u64 = 0;
    while start.elapsed() < secs {
        f.write_all(body).map_err(|e| format!("write: {e}"))?;
        f.sync_data().map_err(|e| format!("fsync: {e}"))?;
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

struct EnqueueFigures {
    acked: u64,
    errors: u64,
    first_error: Option<String>,
    per_s: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    elapsed: Duration,
}

/// Phase 2: `callers` tasks on a two-worker tokio runtime, as the gateway's listener runs them,
/// each looping on `AsyncOutbox::enqueue` (the gateway's path: the task waits for the group commit
/// without holding a thread) until `secs` have passed.
fn durable_enqueue(
    outbox: &Arc<SledOutbox>,
    routes: &[&'static str],
    callers: usize,
    body: &[u8],
    secs: Duration,
) -> Result<EnqueueFigures, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let body: Arc<[u8]> = Arc::from(body);
    let routes: Arc<[&'static str]> = Arc::from(routes);
    let outbox = AsyncOutbox::new(outbox.clone() as Arc<dyn Outbox>);
    let results = runtime.block_on(async {
        let start_line = Arc::new(tokio::sync::Barrier::new(callers + 1));
        let mut handles = Vec::with_capacity(callers);
        for t in 0..callers {
            let outbox = outbox.clone();
            let body = body.clone();
            let routes = routes.clone();
            let start_line = start_line.clone();
            handles.push(tokio::spawn(async move {
                let mut lat: Vec<Duration> = Vec::with_capacity(1 << 14);
                let mut errors = 0u64;
                let mut first_error = None;
                start_line.wait().await;
                let deadline = Instant::now() + secs;
                let mut n: usize = 0;
                loop {
                    let t0 = Instant::now();
                    if t0 >= deadline {
                        break;
                    }
                    let route = Route::from_stored(routes[(t + n) % routes.len()]);
                    let request_id = format!("req-{t}-{n}");
                    match outbox.enqueue(&route, None, &body, &request_id).await {
                        Ok(Enqueued::New(_)) => lat.push(t0.elapsed()),
                        Ok(other) => {
                            errors += 1;
                            first_error.get_or_insert_with(|| format!("unexpected {other:?}"));
                        }
                        Err(e) => {
                            errors += 1;
                            first_error.get_or_insert_with(|| e.to_string());
                            // A failed store stays failed: do not spin on it.
                            break;
                        }
                    }
                    n += 1;
                }
                (lat, errors, first_error, Instant::now())
            }));
        }
        start_line.wait().await;
        let start = Instant::now();
        let mut joined = Vec::with_capacity(callers);
        for h in handles {
            joined.push(h.await.map_err(|_| "a caller task panicked".to_string())?);
        }
        Ok::<_, String>((start, joined))
    });
    let (start, joined) = results?;
    let mut all: Vec<Duration> = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    let mut last_end = start;
    for (lat, e, fe, end) in joined {
        all.extend(lat);
        errors += e;
        if first_error.is_none() {
            first_error = fe;
        }
        last_end = last_end.max(end);
    }
    // Every call started before the deadline counts, so the window runs to the last answer.
    let elapsed = last_end - start;
    all.sort_unstable();
    Ok(EnqueueFigures {
        acked: all.len() as u64,
        errors,
        first_error,
        per_s: all.len() as f64 / elapsed.as_secs_f64(),
        p50: percentile(&all, 50.0),
        p99: percentile(&all, 99.0),
        max: all.last().copied().unwrap_or_default(),
        elapsed,
    })
}

/// Nearest-rank percentile of sorted durations.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Phase 3: one thread per route, `head` + `delivered` until the route is empty.
fn drain(outbox: &Arc<SledOutbox>, routes: &[&'static str]) -> Result<(u64, f64), String> {
    let start_line = Arc::new(Barrier::new(routes.len() + 1));
    let mut handles = Vec::new();
    for &route in routes {
        let outbox = outbox.clone();
        let start_line = start_line.clone();
        let h = std::thread::Builder::new()
            .name("drain".into())
            .spawn(move || -> Result<u64, String> {
                start_line.wait();
                let mut n = 0u64;
                while let Some(rec) = outbox.head(route).map_err(|e| e.to_string())? {
                    outbox.delivered(&rec, ANSWER).map_err(|e| e.to_string())?;
                    n += 1;
                }
                Ok(n)
            })
            .map_err(|e| format!("cannot start a drain thread: {e}"))?;
        handles.push(h);
    }
    start_line.wait();
    let start = Instant::now();
    let mut total = 0;
    for h in handles {
        total += h
            .join()
            .map_err(|_| "a drain thread panicked".to_string())??;
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok((
        total,
        if elapsed > 0.0 {
            total as f64 / elapsed
        } else {
            0.0
        },
    ))
}

fn run(args: Args) -> Result<(), String> {
    if !(args.secs > 0.0 && args.secs.is_finite()) {
        return Err("--secs must be a positive number".into());
    }
    if args.threads == 0 {
        return Err("--threads must be at least 1".into());
    }
    let secs = Duration::from_secs_f64(args.secs);
    let routes = &ROUTES[..args.routes as usize];
    let work = Workdir::new(args.dir.clone())?;
    let (fs_desc, fstype) = match filesystem_of(&work.dir) {
        Some((point, src, fstype)) => (
            format!("{fstype} on {src}, mounted at {}", point.display()),
            fstype,
        ),
        None => ("unknown filesystem".to_string(), "unknown".to_string()),
    };
    let result = measure(&args, secs, routes, &work, &fs_desc, &fstype);
    if args.keep {
        eprintln!("kept {}", work.dir.display());
    } else {
        work.remove();
    }
    result
}

fn measure(
    args: &Args,
    secs: Duration,
    routes: &[&'static str],
    work: &Workdir,
    fs_desc: &str,
    fstype: &str,
) -> Result<(), String> {
    if matches!(fstype, "tmpfs" | "ramfs") {
        eprintln!(
            "WARNING: {} is on {fstype}: fsync costs nothing there, so these figures say nothing \
             about durability on a disk. Use --dir on the real disk.",
            work.dir.display()
        );
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load = load_average();
    if let Some(l) = load.filter(|&l| l > cpus as f64 / 2.0) {
        eprintln!(
            "WARNING: load average {l:.2} on {cpus} cpus before the run: other work on this \
             machine will skew the figures"
        );
    }
    // A body that looks like a call's JSON, exactly `--body` bytes long.
    let mut body = br#"{"patientId":"P000000","message":""#.to_vec();
    body.resize(args.body.saturating_sub(2).max(body.len()), b'x');
    body.extend_from_slice(b"\"}");
    body.truncate(args.body);

    eprintln!(
        "phase 1/3: raw fsync, {:.1} s in {} ({fs_desc})",
        secs.as_secs_f64(),
        work.dir.display()
    );
    let raw_per_s = raw_fsync(&work.fsync_file, &body, secs)?;

    eprintln!(
        "phase 2/3: durable enqueue, {} callers over {} routes, {:.1} s",
        args.threads,
        routes.len(),
        secs.as_secs_f64()
    );
    let outbox = Arc::new(
        SledOutbox::open(&work.sled_dir, MAX_BYTES, Duration::from_secs(3600))
            .map_err(|e| format!("cannot open the outbox: {e}"))?,
    );
    let cpu_before = process_cpu();
    let enq = durable_enqueue(&outbox, routes, args.threads, &body, secs)?;
    // Cores busy in this process during the enqueue phase: near the machine's count means the
    // rate is CPU-bound, well below means it waits on the disk (or on a lock).
    let cpu_cores = cpu_before.zip(process_cpu()).map(|((u0, s0), (u1, s1))| {
        let per = |d: Duration| d.as_secs_f64() / enq.elapsed.as_secs_f64();
        (per(u1.saturating_sub(u0)), per(s1.saturating_sub(s0)))
    });
    if enq.errors > 0 {
        eprintln!(
            "WARNING: {} enqueue calls failed; first: {}",
            enq.errors,
            enq.first_error.as_deref().unwrap_or("?")
        );
    }

    eprintln!("phase 3/3: drain, one thread per route");
    let (drained, drain_per_s) = drain(&outbox, routes)?;
    if drained != enq.acked {
        eprintln!(
            "WARNING: drained {drained} records but {} were acknowledged",
            enq.acked
        );
    }
    drop(outbox);

    let ratio = if raw_per_s > 0.0 {
        enq.per_s / raw_per_s
    } else {
        0.0
    };
    let dir = work.dir.display().to_string();
    let fs_short = match fs_desc.split_once(", mounted at") {
        Some((s, _)) => s,
        None => fs_desc,
    };
    println!(
        "outbox benchmark — {}, dir {dir} ({fs_short}), body {} B, {} callers, {} routes, {:.1} s per phase",
        today(),
        args.body,
        args.threads,
        routes.len(),
        secs.as_secs_f64()
    );
    println!(
        "{:<26}{:>10} /s",
        "raw fsync (1 per call)",
        thousands(raw_per_s)
    );
    println!(
        "{:<26}{:>10} /s   p50 {}  p99 {}   {:.1}× raw fsync",
        "durable enqueue",
        thousands(enq.per_s),
        ms(enq.p50),
        ms(enq.p99),
        ratio
    );
    println!(
        "{:<26}{:>10} /s",
        "drain (head+delivered)",
        thousands(drain_per_s)
    );
    println!(
        "({} acknowledged in {:.2} s, max latency {}, {} drained{}; {cpus} cpus, load {})",
        thousands(enq.acked as f64),
        enq.elapsed.as_secs_f64(),
        ms(enq.max),
        thousands(drained as f64),
        match cpu_cores {
            Some((u, s)) => format!(
                "; enqueue used {:.2} cores ({u:.2} user + {s:.2} sys)",
                u + s
            ),
            None => String::new(),
        },
        load.map_or("?".into(), |l| format!("{l:.2} before the run")),
    );
    let met = enq.per_s >= TARGET_PER_S && ratio >= TARGET_RATIO;
    println!(
        "target ≥ {} /s and ≥ {TARGET_RATIO:.0}× raw fsync: {}",
        thousands(TARGET_PER_S),
        if met { "met" } else { "MISSED" }
    );

    if let Some(path) = &args.json {
        let json = serde_json::json!({
            "raw_fsync_per_s": round1(raw_per_s),
            "enqueue_per_s": round1(enq.per_s),
            "enqueue_p50_ms": round3(enq.p50.as_secs_f64() * 1e3),
            "enqueue_p99_ms": round3(enq.p99.as_secs_f64() * 1e3),
            "ratio_vs_raw_fsync": round3(ratio),
            "drain_per_s": round1(drain_per_s),
            "dir": dir,
            "fs": fs_short,
            "body_bytes": args.body,
            "threads": args.threads,
            "secs": args.secs,
            "routes": routes.len(),
            "enqueue_acked": enq.acked,
            "enqueue_errors": enq.errors,
            "enqueue_max_ms": round3(enq.max.as_secs_f64() * 1e3),
            "drained": drained,
            "enqueue_cpu_cores": cpu_cores.map(|(u, s)| round3(u + s)),
            "cpus": cpus,
            "load_average_1m": load,
        });
        let text = serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn ms(d: Duration) -> String {
    let m = d.as_secs_f64() * 1e3;
    if m < 10.0 {
        format!("{m:.2} ms")
    } else {
        format!("{m:.1} ms")
    }
}

/// `1234567.8` → `1,234,568`.
fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Today's UTC date as `YYYY-MM-DD` (civil-from-days, H. Hinnant).
fn today() -> String {
    let days = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}
