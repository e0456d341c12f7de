//! The real `prefront` binary as a child process, as an operator (or systemd) runs it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `prefront run --config …`; killed (and reaped) on drop.
pub struct RunningBinary {
    child: Child,
    /// The HIS listener's real address (the config asks for port 0).
    pub his_addr: String,
    /// Every stderr line so far (the log), collected in the background.
    log: Arc<Mutex<Vec<String>>>,
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
        let keep = log.clone();
        // Keep draining stderr so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut l) = keep.lock() {
                    l.push(line.clone());
                }
                let _ = tx.send(line);
            }
        });
        match wait_for_listen(&rx) {
            Some(his_addr) => RunningBinary {
                child,
                his_addr,
                log,
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
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let found = self.log().iter().find_map(|line| {
                if !line.contains("listening for the cloud") {
                    return None;
                }
                line.split("addr=")
                    .nth(1)
                    .and_then(|s| s.split_whitespace().next())
                    .map(|a| a.trim_matches('"').to_string())
            });
            if let Some(addr) = found {
                return addr;
            }
            assert!(
                Instant::now() < deadline,
                "no `listening for the cloud` line in the log:\n{}",
                self.log().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
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
        let started = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                // Let the reader thread take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return (s, self.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
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
