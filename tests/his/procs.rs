//! Real HIS toolkits as servers for `tests/soap_his.rs` (included there with `#[path]`): whether a
//! toolkit is here (the CI rule), bounded build steps, and server processes on loopback that are
//! stopped by their process-group id.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{closed_port_addr, Poll};

/// True when the toolkit is usable. Otherwise: under CI (env `CI` set) panics naming the install
/// step; elsewhere prints a one-line note and returns false.
pub fn toolkit_here(toolkit: &str, missing: Vec<String>, install: &str) -> bool {
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "{toolkit}: not usable here ({}); install with `{install}` (see .ci/run)",
        missing.join(", ")
    );
    assert!(std::env::var_os("CI").is_none(), "{msg}");
    eprintln!("SKIPPED {msg}");
    false
}

/// True when `program args...` exits 0 within 30 s (its output discarded).
pub fn runs_ok(program: &str, args: &[&str]) -> bool {
    let mut cmd = Command::new(program);
    cmd.args(args);
    let log = std::env::temp_dir().join(format!("prefront-probe-{}.log", std::process::id()));
    let ok = run_logged(cmd, &log, Duration::from_secs(30)).is_ok();
    let _ = std::fs::remove_file(&log);
    ok
}

/// A free loopback port (bound and released: the caller binds it right after).
pub fn free_port() -> u16 {
    closed_port_addr().port()
}

fn spawn_logged(mut cmd: Command, log: &Path) -> Result<Child, String> {
    let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    cmd.spawn()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))
}

/// Kills the process group `child` leads (only that group, by its id) and reaps the child.
fn kill_group(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs `cmd` with its output in `log`; `Err` (with the log) unless it exits 0 within
/// `timeout` (then its process group is killed).
pub fn run_logged(cmd: Command, log: &Path, timeout: Duration) -> Result<(), String> {
    let shown = format!("{cmd:?}");
    let started = Instant::now();
    let mut child = spawn_logged(cmd, log)?;
    let status = Poll::new(timeout, format!("{shown} to finish"))
        .try_value_blocking(|| child.try_wait().unwrap_or(None));
    let text = std::fs::read_to_string(log).unwrap_or_default();
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!(
            "{shown}: {s} after {:.1} s; output:\n{text}",
            started.elapsed().as_secs_f64()
        )),
        Err(e) => {
            kill_group(&mut child);
            Err(format!("{shown}: {e}: killed; output:\n{text}"))
        }
    }
}

/// [`run_logged`] that panics on failure, and prints what it ran and how long it took.
pub fn run_step(what: &str, cmd: Command, log: &Path, timeout: Duration) {
    let started = Instant::now();
    if let Err(e) = run_logged(cmd, log, timeout) {
        panic!("{what}: {e}");
    }
    println!("{what}: {:.1} s", started.elapsed().as_secs_f64());
}

/// A HIS server process on 127.0.0.1 (and everything in its process group), its output in a
/// log file; killed by its process-group id on drop.
pub struct HisServer {
    name: String,
    child: Child,
    log: PathBuf,
}

impl HisServer {
    /// Starts `cmd` and waits (bounded by `timeout`) until something accepts on each of
    /// `ports`; panics with the log if it exits or does not listen in time.
    pub fn start(
        name: &str,
        cmd: Command,
        ports: &[u16],
        log: &Path,
        timeout: Duration,
    ) -> HisServer {
        let child = spawn_logged(cmd, log).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut server = HisServer {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        };
        let started = Instant::now();
        let mut exited = None;
        let ready = Poll::new(timeout, format!("{name} to listen on {ports:?}"))
            .every(Duration::from_millis(50))
            .try_until_blocking(|| {
                if let Ok(Some(s)) = server.child.try_wait() {
                    exited = Some(s);
                    return true;
                }
                ports.iter().all(|p| {
                    let addr = SocketAddr::from(([127, 0, 0, 1], *p));
                    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
                })
            });
        if let Some(s) = exited {
            panic!(
                "{name} exited ({s}) before listening; log:\n{}",
                server.log()
            );
        }
        if let Err(e) = ready {
            panic!("{e}; {name}'s log:\n{}", server.log());
        }
        println!(
            "{name}: listening on {ports:?} after {:.1} s",
            started.elapsed().as_secs_f64()
        );
        server
    }

    /// What the server wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for HisServer {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}
