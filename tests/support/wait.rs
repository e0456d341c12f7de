//! Waiting for a condition instead of sleeping for a guess: [`poll_until`] (and [`Poll`] for the
//! variants) look every [`POLL_EVERY`] until the condition holds, and name what they waited for
//! when it never does.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How often a condition is looked at, unless [`Poll::every`] says otherwise.
pub const POLL_EVERY: Duration = Duration::from_millis(20);

/// Polls `cond` until it holds and returns how long that took; panics after `timeout` with
/// `timed out after … waiting for <what>`. The condition may await (`async || …`).
pub async fn poll_until(
    timeout: Duration,
    what: &str,
    cond: impl AsyncFnMut() -> bool,
) -> Duration {
    Poll::new(timeout, what).until(cond).await
}

/// The blocking [`poll_until`], for code outside a runtime (plain threads, `#[test]`).
pub fn wait_until(timeout: Duration, what: &str, cond: impl FnMut() -> bool) -> Duration {
    Poll::new(timeout, what).until_blocking(cond)
}

/// Waited `timeout` for `what` in vain.
#[derive(Debug, Clone)]
pub struct TimedOut {
    pub what: String,
    pub timeout: Duration,
}

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "timed out after {:?} waiting for {}",
            self.timeout, self.what
        )
    }
}

/// A bounded wait for `what`: [`Poll::until`] / [`Poll::value`] panic when it times out,
/// [`Poll::try_until`] / [`Poll::try_value`] return the [`TimedOut`] for the caller to judge (a
/// test that records its findings and checks on, or one that cleans up first).
#[derive(Debug, Clone)]
pub struct Poll {
    what: String,
    timeout: Duration,
    every: Duration,
}

impl Poll {
    pub fn new(timeout: Duration, what: impl Into<String>) -> Poll {
        Poll {
            what: what.into(),
            timeout,
            every: POLL_EVERY,
        }
    }

    /// Looks every `every` (a condition that costs something, or that acts, such as a call).
    pub fn every(mut self, every: Duration) -> Poll {
        self.every = every;
        self
    }

    fn timed_out(&self) -> TimedOut {
        TimedOut {
            what: self.what.clone(),
            timeout: self.timeout,
        }
    }

    /// The first `Some` of `f`, looked at until the timeout (and once more at it).
    pub async fn try_value<T>(&self, mut f: impl AsyncFnMut() -> Option<T>) -> Result<T, TimedOut> {
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Some(v) = f().await {
                return Ok(v);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(self.timed_out());
            }
            tokio::time::sleep(self.every.min(deadline - now)).await;
        }
    }

    /// How long until `cond` held.
    pub async fn try_until(
        &self,
        mut cond: impl AsyncFnMut() -> bool,
    ) -> Result<Duration, TimedOut> {
        let started = Instant::now();
        self.try_value(async || cond().await.then(|| started.elapsed()))
            .await
    }

    pub async fn value<T>(&self, f: impl AsyncFnMut() -> Option<T>) -> T {
        self.try_value(f).await.unwrap_or_else(|e| panic!("{e}"))
    }

    pub async fn until(&self, cond: impl AsyncFnMut() -> bool) -> Duration {
        self.try_until(cond).await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Poll::try_value`] blocking the thread.
    pub fn try_value_blocking<T>(&self, mut f: impl FnMut() -> Option<T>) -> Result<T, TimedOut> {
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Some(v) = f() {
                return Ok(v);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(self.timed_out());
            }
            std::thread::sleep(self.every.min(deadline - now));
        }
    }

    pub fn value_blocking<T>(&self, f: impl FnMut() -> Option<T>) -> T {
        self.try_value_blocking(f).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_until_blocking(&self, mut cond: impl FnMut() -> bool) -> Result<Duration, TimedOut> {
        let started = Instant::now();
        self.try_value_blocking(|| cond().then(|| started.elapsed()))
    }

    pub fn until_blocking(&self, cond: impl FnMut() -> bool) -> Duration {
        self.try_until_blocking(cond)
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Whether the loopback server at `server` has `accept`ed the connection whose client end is
/// `client` (Linux: the server's socket has an inode in `/proc/net/tcp` once accepted; queued
/// in the backlog it has none).
pub fn accepted(server: SocketAddr, client: SocketAddr) -> bool {
    let hex = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(v4.ip().octets()),
            v4.port()
        ),
        SocketAddr::V6(_) => panic!("accepted(): IPv4 only"),
    };
    let (local, remote) = (hex(server), hex(client));
    std::fs::read_to_string("/proc/net/tcp")
        .expect("/proc/net/tcp")
        .lines()
        .skip(1)
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 9 && f[1] == local && f[2] == remote && f[9] != "0"
        })
}
