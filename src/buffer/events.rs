//! What happens to buffered calls, as typed events: each one writes its log line and moves its
//! counter in the same call, so the log and the figures cannot disagree. The operability work
//! exports the counters (with depth and oldest age per route from `Outbox::stats`) as metrics.

use std::sync::atomic::{AtomicU64, Ordering};

use super::RecordId;

/// One thing that happened in the buffer.
#[derive(Debug)]
pub enum Event<'a> {
    /// A call was accepted into the buffer (durable).
    Queued { route: &'a str, id: RecordId },
    /// A buffered call reached the cloud and was answered.
    Delivered {
        route: &'a str,
        id: RecordId,
        attempts: u32,
    },
    /// Delivered, but the cloud said `success: false`: the message ends here.
    RefusedByCloud { route: &'a str, id: RecordId },
    /// A delivery attempt failed; it will be tried again.
    Retry {
        route: &'a str,
        id: RecordId,
        error: &'a str,
    },
    /// Moved to the dead letters.
    DeadLettered {
        route: &'a str,
        id: RecordId,
        reason: &'a str,
    },
    /// A call was refused before acknowledgement (quota reached or store failure).
    NotAccepted {
        route: &'a str,
        kind: &'a str,
        error: &'a str,
    },
    /// A damaged store was moved aside at start and its intact records salvaged.
    Salvaged {
        salvaged: u64,
        lost: u64,
        moved_to: &'a str,
    },
}

/// Running totals since start.
#[derive(Debug, Default)]
pub struct Counters {
    pub queued: AtomicU64,
    pub delivered: AtomicU64,
    pub refused_by_cloud: AtomicU64,
    pub retried: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub not_accepted: AtomicU64,
    pub salvaged: AtomicU64,
    pub lost: AtomicU64,
}

/// A copy of the totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    pub queued: u64,
    pub delivered: u64,
    pub refused_by_cloud: u64,
    pub retried: u64,
    pub dead_lettered: u64,
    pub not_accepted: u64,
    pub salvaged: u64,
    pub lost: u64,
}

static COUNTERS: Counters = Counters {
    queued: AtomicU64::new(0),
    delivered: AtomicU64::new(0),
    refused_by_cloud: AtomicU64::new(0),
    retried: AtomicU64::new(0),
    dead_lettered: AtomicU64::new(0),
    not_accepted: AtomicU64::new(0),
    salvaged: AtomicU64::new(0),
    lost: AtomicU64::new(0),
};

/// Refusals are logged once, then at most once a minute with a count: a full or failing disk
/// refuses every buffered call, and each call has its own log line already.
static REFUSALS: std::sync::Mutex<Option<(std::time::Instant, u64)>> = std::sync::Mutex::new(None);
const REFUSALS_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// The process-wide totals.
pub fn totals() -> Totals {
    let c = &COUNTERS;
    Totals {
        queued: c.queued.load(Ordering::Relaxed),
        delivered: c.delivered.load(Ordering::Relaxed),
        refused_by_cloud: c.refused_by_cloud.load(Ordering::Relaxed),
        retried: c.retried.load(Ordering::Relaxed),
        dead_lettered: c.dead_lettered.load(Ordering::Relaxed),
        not_accepted: c.not_accepted.load(Ordering::Relaxed),
        salvaged: c.salvaged.load(Ordering::Relaxed),
        lost: c.lost.load(Ordering::Relaxed),
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Logs the event and counts it. Routes and ids only: never a payload.
pub fn emit(event: Event<'_>) {
    let c = &COUNTERS;
    match event {
        Event::Queued { route, id } => {
            bump(&c.queued);
            // The call's own log line says `queued` already; this one is for debugging.
            tracing::debug!(route, id, "buffer: queued");
        }
        Event::Delivered {
            route,
            id,
            attempts,
        } => {
            bump(&c.delivered);
            tracing::info!(route, id, attempts, "buffer: delivered");
        }
        Event::RefusedByCloud { route, id } => {
            bump(&c.delivered);
            bump(&c.refused_by_cloud);
            tracing::warn!(
                route,
                id,
                "buffer: the cloud refused a delivered message (success:false)"
            );
        }
        Event::Retry { route, id, error } => {
            bump(&c.retried);
            tracing::debug!(route, id, error, "buffer: delivery failed; will retry");
        }
        Event::DeadLettered { route, id, reason } => {
            bump(&c.dead_lettered);
            tracing::error!(
                route,
                id,
                reason,
                "buffer: message moved to the dead letters"
            );
        }
        Event::NotAccepted { route, kind, error } => {
            bump(&c.not_accepted);
            let mut last = REFUSALS.lock().unwrap_or_else(|p| p.into_inner());
            match &mut *last {
                Some((at, n)) if at.elapsed() < REFUSALS_EVERY => *n += 1,
                _ => {
                    let repeats = last.map_or(0, |(_, n)| n);
                    *last = Some((std::time::Instant::now(), 0));
                    drop(last);
                    if repeats > 0 {
                        tracing::error!(
                            route,
                            kind,
                            error,
                            repeats,
                            "buffer: call refused (and {repeats} more since the last report)"
                        );
                    } else {
                        tracing::error!(route, kind, error, "buffer: call refused");
                    }
                }
            }
        }
        Event::Salvaged {
            salvaged,
            lost,
            moved_to,
        } => {
            c.salvaged.fetch_add(salvaged, Ordering::Relaxed);
            c.lost.fetch_add(lost, Ordering::Relaxed);
            if lost > 0 {
                tracing::error!(salvaged, lost, moved_to, "buffer: damaged store salvaged; {lost} acknowledged record(s) could not be found intact");
            } else {
                tracing::warn!(
                    salvaged,
                    lost,
                    moved_to,
                    "buffer: damaged store salvaged; every acknowledged record found"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_moves_its_counter() {
        let before = totals();
        emit(Event::Queued { route: "r", id: 1 });
        emit(Event::Delivered {
            route: "r",
            id: 1,
            attempts: 1,
        });
        emit(Event::RefusedByCloud { route: "r", id: 2 });
        emit(Event::Retry {
            route: "r",
            id: 3,
            error: "e",
        });
        emit(Event::DeadLettered {
            route: "r",
            id: 3,
            reason: "x",
        });
        emit(Event::NotAccepted {
            route: "r",
            kind: "buffer-full",
            error: "full",
        });
        let after = totals();
        // Other tests in this process may emit too: at least ours are counted.
        assert!(after.queued > before.queued);
        assert!(
            after.delivered >= before.delivered + 2,
            "a refused delivery is a delivery"
        );
        assert!(after.refused_by_cloud > before.refused_by_cloud);
        assert!(after.retried > before.retried);
        assert!(after.dead_lettered > before.dead_lettered);
        assert!(after.not_accepted > before.not_accepted);
    }
}
