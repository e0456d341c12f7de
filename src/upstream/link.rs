//! Whether an upstream is reachable right now. A connect error, a timeout or a 502/503/504 marks
//! the link down; while it is down, calls that cannot wait fail at once instead of each waiting
//! for its own timeout, and a background probe with backoff brings the link back.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::UpstreamError;

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
            self.went_down.notify_one();
        }
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
