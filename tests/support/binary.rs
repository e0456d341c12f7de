//! The real `prefront` binary as a child process, as an operator (or systemd) runs it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Poll;

/// A running `prefront run --config …`; killed (and reaped) on drop.
pub struct RunningBinary {
    child: Child,
    /// The HIS listener's real address (the config asks for port 0).
    pub his_addr: String,
    /// Every stderr line so far (the log), collected in the background.
    log: Arc<Mutex<Vec<String>>>,
    /// Set once the log reader has seen the end of stderr.
    log_ended: Arc<AtomicBool>,
}

impl RunningBinary {
    /// Starts the binary and waits (up to 15 s) until the HIS listener is bound.
    pub fn start(config: &Path) -> RunningBinary {
        RunningBinary::start_with_env(config, &[])
    }

    /// `start` with extra environment variables (e.g. systemd's `NOTIFY_SOCKET`).
    pub fn start_with_env(config: &Path, env: &[(&str, &std::ffi::OsStr)]) -> RunningBinary {
        let mut child = Command::new(env!("CARGO_BIN_EXE_prefront"))
            .args(["run", "--config"])
            .arg(config)
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("binary starts");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let log = Arc::new(Mutex::new(Vec::new()));
        let log_ended = Arc::new(AtomicBool::new(false));
        let (keep, ended) = (log.clone(), log_ended.clone());
        // Keep draining stderr so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut l) = keep.lock() {
                    l.push(line.clone());
                }
                let _ = tx.send(line);
            }
            ended.store(true, Ordering::Release);
        });
        match wait_for_listen(&rx) {
            Some(his_addr) => RunningBinary {
                child,
                his_addr,
                log,
                log_ended,
            },
            None => {
                let _ = child.kill();
                let _ = child.wait();
                let lines = log.lock().map(|l| l.join("\n")).unwrap_or_default();
                panic!("the binary did not start listening:\n{lines}");
            }
        }
    }

    pub fn his_url(&self) -> String {
        format!("http://{}", self.his_addr)
    }

    /// The child's process id (e.g. to read `/proc/<pid>/status`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The cloud listener's real address (`127.0.0.1:PORT`), from the log line
    /// `listening for the cloud … addr=…`; waits up to 15 s for it.
    pub fn cloud_addr(&self) -> String {
        self.logged_addr("listening for the cloud")
    }

    /// Sends SIGHUP: a reload, which the caller may expect refused (it reads the log).
    pub fn hup(&self) {
        let ok = Command::new("kill")
            .args(["-HUP", &self.pid().to_string()])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill -HUP {}", self.pid());
    }

    /// Sends SIGHUP and waits up to 15 s for a new `configuration reloaded` line.
    pub fn reload(&self) {
        let before = self.log().len();
        self.hup();
        Poll::new(Duration::from_secs(15), "a `configuration reloaded` line").until_blocking(
            || {
                self.log()[before..]
                    .iter()
                    .any(|l| l.contains("configuration reloaded"))
            },
        );
    }

    /// `http://<admin listener><path>`, from its `admin: GET /status … addr=…` line.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.logged_addr("admin: GET /status"))
    }

    /// The `addr=` of the first log line containing `marker` (a listener's start line); waits up
    /// to 15 s for it.
    pub fn logged_addr(&self, marker: &str) -> String {
        let found = Poll::new(Duration::from_secs(15), format!("a `{marker}` line"))
            .try_value_blocking(|| {
                self.log().iter().find_map(|line| {
                    if !line.contains(marker) {
                        return None;
                    }
                    line.split("addr=")
                        .nth(1)
                        .and_then(|s| s.split_whitespace().next())
                        .map(|a| a.trim_matches('"').to_string())
                })
            });
        found.unwrap_or_else(|e| panic!("{e}; the log:\n{}", self.log().join("\n")))
    }

    /// `http://<cloud_addr>` (the cloud listener without TLS).
    pub fn cloud_url(&self) -> String {
        format!("http://{}", self.cloud_addr())
    }

    /// The log lines written so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits (up to 15 s) for the exit; returns its status and the whole log.
    pub fn terminate(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        let status = Poll::new(Duration::from_secs(15), "the exit after SIGTERM")
            .value_blocking(|| self.child.try_wait().expect("wait"));
        // The reader thread takes the last lines (the pipe ends with the process).
        Poll::new(Duration::from_secs(5), "the end of the binary's stderr")
            .until_blocking(|| self.log_ended.load(Ordering::Acquire));
        (status, self.log())
    }
}

impl Drop for RunningBinary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for_listen(rx: &Receiver<String>) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                if line.contains("listener=\"his\"") {
                    if let Some(addr) = line
                        .split("addr=")
                        .nth(1)
                        .and_then(|s| s.split_whitespace().next())
                    {
                        return Some(addr.to_string());
                    }
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return None,
        }
    }
    None
}

/// Runs `prefront <args>` to completion (an operator command such as `queue stats`).
pub fn prefront(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prefront"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("prefront runs")
}

/// What one run of the binary printed and how it exited.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout, then stderr.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `prefront <args>` (in `cwd` when given) to completion, at most 30 s (killed and a panic
/// after that), stdout and stderr read as it goes.
pub fn run_prefront(args: &[&str], cwd: Option<&Path>) -> Run {
    use std::io::Read;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_prefront"));
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("RUST_LOG");
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let mut child = cmd.spawn().expect("spawn the prefront binary");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout piped")));
    let err = drain(Box::new(child.stderr.take().expect("stderr piped")));
    let status = Poll::new(
        Duration::from_secs(30),
        format!("prefront {args:?} to finish"),
    )
    .every(Duration::from_millis(10))
    .try_value_blocking(|| child.try_wait().expect("wait for prefront"));
    let status = status.unwrap_or_else(|e| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{e}")
    });
    Run {
        code: status.code(),
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}
