//! Whether an upstream is reachable right now. A connect error, a timeout or a 502/503/504 marks
//! the link down; while it is down, calls that cannot wait fail at once instead of each waiting
//! for its own timeout, and a background probe with backoff brings the link back.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::UpstreamError;
use crate::outcome::Outcome;

/// The link's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Up,
    Down,
    /// Down, and a probe is in flight.
    Probing,
}

/// One upstream's link state, shared by every caller of that upstream.
#[derive(Debug)]
pub struct Link {
    /// What the link is called in logs and metrics (`cloud`).
    name: &'static str,
    state: AtomicU8,
    /// Wakes the prober when the link goes down.
    went_down: Notify,
    /// Wakes whoever waits for the link to come back (the forwarders).
    came_up: Notify,
    /// The kind of the failure that took the link down (what a caller is told while it is).
    down_kind: Mutex<Option<Outcome>>,
}

const UP: u8 = 0;
const DOWN: u8 = 1;
const PROBING: u8 = 2;

impl Link {
    pub fn new(name: &'static str) -> Arc<Link> {
        Arc::new(Link {
            name,
            state: AtomicU8::new(UP),
            went_down: Notify::new(),
            came_up: Notify::new(),
            down_kind: Mutex::new(None),
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn state(&self) -> LinkState {
        match self.state.load(Ordering::Acquire) {
            UP => LinkState::Up,
            PROBING => LinkState::Probing,
            _ => LinkState::Down,
        }
    }

    pub fn is_up(&self) -> bool {
        self.state() == LinkState::Up
    }

    /// Whether this failure says the link itself is broken (not the one call).
    pub fn is_link_failure(e: &UpstreamError) -> bool {
        e.retry() == super::Retry::AfterLink
    }

    /// Records the outcome of a real call.
    pub fn observe<T>(&self, result: &Result<T, UpstreamError>) {
        match result {
            Ok(_) => self.mark_up(),
            Err(e) if Self::is_link_failure(e) => self.mark_down(e),
            // The upstream answered: the link works even if the answer was unusable.
            Err(_) => self.mark_up(),
        }
    }

    pub fn mark_up(&self) {
        if self.state.swap(UP, Ordering::AcqRel) != UP {
            tracing::info!(link = self.name, "link is up again");
            self.came_up.notify_waiters();
        }
    }

    pub fn mark_down(&self, why: &UpstreamError) {
        if self
            .state
            .compare_exchange(UP, DOWN, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            tracing::warn!(link = self.name, error = %why, kind = why.kind().as_str(), "link is down");
            *self.down_kind.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.kind());
            self.went_down.notify_one();
        }
    }

    /// The kind of the failure that took the link down, while it is down.
    pub fn down_kind(&self) -> Option<Outcome> {
        if self.is_up() {
            return None;
        }
        *self.down_kind.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Completes when the link is up (at once if it already is).
    pub async fn wait_up(&self) {
        loop {
            let notified = self.came_up.notified();
            if self.is_up() {
                return;
            }
            notified.await;
        }
    }

    /// Probes the upstream with `probe` while the link is down, with exponential backoff from
    /// `min` to `max`, until `shutdown` flips. `probe` returns whether the upstream answered.
    pub async fn run_prober<F, Fut>(
        self: Arc<Self>,
        probe: F,
        min: Duration,
        max: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        loop {
            if self.is_up() {
                tokio::select! {
                    _ = self.went_down.notified() => {}
                    _ = shutdown.changed() => return,
                }
                continue;
            }
            let mut delay = min;
            while !self.is_up() {
                tokio::select! {
                    _ = tokio::time::sleep(jitter(delay)) => {}
                    _ = shutdown.changed() => return,
                }
                if self.is_up() {
                    break;
                }
                let _ =
                    self.state
                        .compare_exchange(DOWN, PROBING, Ordering::AcqRel, Ordering::Acquire);
                if probe().await {
                    self.mark_up();
                } else {
                    let _ = self.state.compare_exchange(
                        PROBING,
                        DOWN,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    );
                    delay = (delay * 2).min(max);
                }
            }
        }
    }
}

/// A watched link's state as real calls last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Seen {
    /// No call has gone this way since start (or since the target came into the config).
    #[default]
    Unknown,
    Up,
    Down,
}

impl Seen {
    /// The `state` label of the metric and the page's class.
    pub fn as_str(self) -> &'static str {
        match self {
            Seen::Unknown => "unknown",
            Seen::Up => "up",
            Seen::Down => "down",
        }
    }
}

/// What real calls have shown of a link nobody probes (a HIS target).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Observed {
    pub state: Seen,
    /// Unix milliseconds when `state` began; 0 while `Unknown`.
    pub since_ms: u64,
    /// The kind of the last link failure (`upstream-connect`, `upstream-timeout`, …), kept after
    /// the link came back, and when it happened.
    pub last_error: Option<Outcome>,
    pub last_error_ms: u64,
}

/// A link watched from the calls that use it, without a probe: up when the peer answered
/// (whatever it answered), down after a link failure (no connection, a timeout, the connection
/// cut, a gateway's 502–504), as `Link::observe` decides for the cloud. A call that never left
/// the box (a route the box cannot call) says nothing about the link.
#[derive(Debug)]
pub struct Watched {
    /// What the link is called in logs (`his 10.1.1.10:8080`).
    name: String,
    seen: Mutex<Observed>,
}

impl Watched {
    pub fn new(name: impl Into<String>) -> Arc<Watched> {
        Arc::new(Watched {
            name: name.into(),
            seen: Mutex::new(Observed::default()),
        })
    }

    pub fn get(&self) -> Observed {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the outcome of a real call.
    pub fn observe<T>(&self, result: &Result<T, UpstreamError>) {
        match result {
            Err(UpstreamError::Unsupported(_)) => {}
            Err(e) if Link::is_link_failure(e) => self.mark(Seen::Down, Some(e)),
            _ => self.mark(Seen::Up, None),
        }
    }

    fn mark(&self, state: Seen, why: Option<&UpstreamError>) {
        let now = crate::clock::now_ms();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let before = seen.state;
        if let Some(e) = why {
            seen.last_error = Some(e.kind());
            seen.last_error_ms = now;
        }
        if before == state {
            return;
        }
        seen.state = state;
        seen.since_ms = now;
        drop(seen);
        match (before, why) {
            (_, Some(e)) => {
                tracing::warn!(link = %self.name, error = %e.public_text(), kind = e.kind().as_str(), "link is down")
            }
            (Seen::Down, None) => tracing::info!(link = %self.name, "link is up again"),
            _ => {}
        }
    }
}

/// `d` scaled by a random factor in [0.5, 1.5), so many boxes (or routes) do not retry in step.
pub fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 2];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    let f = 0.5 + f64::from(u16::from_be_bytes(b)) / 65536.0;
    d.mul_f64(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_failures_are_told_from_answers() {
        assert!(Link::is_link_failure(&UpstreamError::Connect));
        assert!(Link::is_link_failure(&UpstreamError::Timeout(
            Duration::from_secs(1)
        )));
        assert!(Link::is_link_failure(&UpstreamError::Status(503)));
        assert!(!Link::is_link_failure(&UpstreamError::Status(500)));
        assert!(!Link::is_link_failure(&UpstreamError::Status(404)));
        assert!(!Link::is_link_failure(&UpstreamError::InvalidAnswer));
    }

    #[test]
    fn a_watched_link_follows_the_calls_and_keeps_the_last_error() {
        let w = Watched::new("his test");
        assert_eq!(w.get(), Observed::default());
        assert_eq!(w.get().state, Seen::Unknown);
        w.observe::<()>(&Err(UpstreamError::Unsupported(
            "route url is not a valid URL",
        )));
        assert_eq!(
            w.get().state,
            Seen::Unknown,
            "a call that never left says nothing"
        );
        w.observe::<()>(&Err(UpstreamError::Connect));
        let down = w.get();
        assert_eq!(down.state, Seen::Down);
        assert_eq!(down.last_error, Some(Outcome::UpstreamConnect));
        assert!(down.since_ms > 0);
        w.observe::<()>(&Err(UpstreamError::Timeout(Duration::from_secs(1))));
        let still = w.get();
        assert_eq!(
            still.since_ms, down.since_ms,
            "down since the first failure"
        );
        assert_eq!(still.last_error, Some(Outcome::UpstreamTimeout));
        // An answer, even an unusable one, means the link works.
        w.observe::<()>(&Err(UpstreamError::Status(500)));
        let up = w.get();
        assert_eq!(up.state, Seen::Up);
        assert_eq!(
            up.last_error,
            Some(Outcome::UpstreamTimeout),
            "kept after recovery"
        );
        w.observe::<()>(&Err(UpstreamError::Status(502)));
        assert_eq!(w.get().state, Seen::Down);
        w.observe(&Ok(()));
        assert_eq!(w.get().state, Seen::Up);
    }

    #[tokio::test]
    async fn down_then_probed_back_up() {
        let link = Link::new("test");
        link.mark_down(&UpstreamError::Connect);
        assert_eq!(link.state(), LinkState::Down);
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let tries = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let t = tries.clone();
        let prober = tokio::spawn(link.clone().run_prober(
            move || {
                let t = t.clone();
                async move { t.fetch_add(1, Ordering::SeqCst) >= 2 }
            },
            Duration::from_millis(5),
            Duration::from_millis(20),
            rx,
        ));
        tokio::time::timeout(Duration::from_secs(5), link.wait_up())
            .await
            .expect("probe brings the link back");
        assert_eq!(tries.load(Ordering::SeqCst), 3);
        prober.abort();
    }
}
