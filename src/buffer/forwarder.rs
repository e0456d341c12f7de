//! Delivery of buffered calls: one ordered forwarder per route (FIFO; routes independent, so one
//! bad route never blocks another), exponential backoff with jitter, at-least-once with the
//! record id as `X-Prefront-Message-Id`. A record ends delivered, or in the dead letters: refused
//! with a 4xx, out of attempts, or out of time. Nothing is silently lost.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{watch, Notify};

use super::events::{self, Event};
use super::{now_ms, AsyncOutbox, Outbox, Record, Route};
use crate::config::BufferConfig;
use crate::upstream::cloud::Cloud;
use crate::upstream::link::{jitter, Link};
use crate::upstream::Retry;

/// Route names of HIS → cloud calls start with this; the rest is the catalogue path.
pub const CLOUD_ROUTE_PREFIX: &str = Route::CLOUD_PREFIX;

/// The forwarders of every route, and the bell that wakes them after an enqueue.
#[derive(Debug)]
pub struct Forwarders {
    outbox: AsyncOutbox,
    cloud: Cloud,
    config: BufferConfig,
    /// Rung after every enqueue so a new route's forwarder starts at once.
    wake: Notify,
    /// Routes whose forwarder task is running.
    running: Mutex<HashSet<String>>,
}

/// What happened to one delivery attempt.
enum Attempt {
    Delivered,
    Dead(String),
    Retry { link_down: bool },
}

impl Forwarders {
    pub fn new(outbox: Arc<dyn Outbox>, cloud: Cloud, config: BufferConfig) -> Arc<Forwarders> {
        Arc::new(Forwarders {
            outbox: AsyncOutbox::new(outbox),
            cloud,
            config,
            wake: Notify::new(),
            running: Mutex::new(HashSet::new()),
        })
    }

    /// Call after an enqueue: makes sure the route's forwarder runs.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Starts a forwarder for every route with a backlog, now and whenever one appears, until
    /// `shutdown` flips.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            match self.outbox.routes().await {
                Ok(routes) => {
                    for route in routes {
                        let fresh = self
                            .running
                            .lock()
                            .map(|mut r| r.insert(route.clone()))
                            .unwrap_or(false);
                        if fresh {
                            tokio::spawn(self.clone().route_loop(route, shutdown.clone()));
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "buffer: cannot list routes"),
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Delivers `route`'s records in order until its queue is empty.
    async fn route_loop(self: Arc<Self>, route: String, mut shutdown: watch::Receiver<bool>) {
        let mut failures: u32 = 0;
        loop {
            if *shutdown.borrow() {
                break;
            }
            // A store that cannot write cannot record a delivery either: nothing is sent until
            // it can (the store logs the fault; the routes just wait).
            if self.outbox.wait_writable(&mut shutdown).await {
                break;
            }
            let head = match self.outbox.head(&route).await {
                Ok(Some(rec)) => rec,
                Ok(None) => break,
                Err(e) => {
                    if self.outbox.store().health().writable {
                        tracing::error!(route = %route, error = %e, "buffer: cannot read the queue; retrying");
                    }
                    if sleep_or_shutdown(Duration::from_secs(5), &mut shutdown).await {
                        break;
                    }
                    continue;
                }
            };
            match self.attempt(&head).await {
                Attempt::Delivered => failures = 0,
                Attempt::Dead(reason) => {
                    failures = 0;
                    let moved = self.outbox.dead_letter(&head, reason.clone()).await;
                    if let Ok(()) = moved {
                        events::emit(Event::DeadLettered {
                            route: &route,
                            id: head.id,
                            reason: &reason,
                        });
                        trail(&head, "dead", |l| l.why = Some(reason.clone()));
                    } else if let Err(e) = moved {
                        tracing::error!(route = %route, id = head.id, error = %e, "buffer: cannot move to the dead letters");
                        if sleep_or_shutdown(Duration::from_secs(5), &mut shutdown).await {
                            break;
                        }
                    }
                }
                Attempt::Retry { link_down } => {
                    failures = failures.saturating_add(1);
                    let backoff = self
                        .config
                        .retry_min
                        .saturating_mul(2u32.saturating_pow(failures.min(20) - 1))
                        .min(self.config.retry_max);
                    if link_down {
                        // The prober brings the link back; wait for it, but not past the backoff
                        // cap (the TTL must still be noticed).
                        let link: &Link = &self.cloud.link;
                        tokio::select! {
                            _ = link.wait_up() => {}
                            _ = tokio::time::sleep(self.config.retry_max) => {}
                            _ = shutdown.changed() => break,
                        }
                        if sleep_or_shutdown(jitter(self.config.retry_min), &mut shutdown).await {
                            break;
                        }
                    } else if sleep_or_shutdown(jitter(backoff), &mut shutdown).await {
                        break;
                    }
                }
            }
        }
        if let Ok(mut r) = self.running.lock() {
            r.remove(&route);
        }
        // A record may have arrived between the empty read and the removal above.
        self.wake();
    }

    /// One delivery attempt of the route's head record.
    async fn attempt(&self, rec: &Record) -> Attempt {
        let age = Duration::from_millis(now_ms().saturating_sub(rec.enqueued_at_ms));
        if age > self.config.ttl {
            return Attempt::Dead(format!(
                "not delivered within buffer.ttl ({:?}); last error: {}",
                self.config.ttl,
                rec.last_error.as_deref().unwrap_or("none")
            ));
        }
        if rec.attempts >= self.config.max_attempts {
            return Attempt::Dead(format!(
                "gave up after {} attempts; last error: {}",
                rec.attempts,
                rec.last_error.as_deref().unwrap_or("none")
            ));
        }
        let route = Route::from_stored(&rec.route);
        let Some(path) = route.cloud_path() else {
            return Attempt::Dead(format!("unknown route `{}`", rec.route));
        };
        let result = self
            .cloud
            .call(
                path,
                &rec.request_id,
                Some(&rec.message_id),
                Bytes::from(rec.body.clone()),
            )
            .await;
        match result {
            Ok(answer) => {
                // The cloud's business "no" (success:false) ends the message: recorded, not
                // retried.
                let refused = business_refusal(&answer);
                let code = crate::trail::active()
                    .then(|| answer_code(&answer))
                    .flatten();
                match self.outbox.delivered(rec, answer).await {
                    Ok(()) => {
                        trail(rec, "delivered", |l| {
                            l.att = Some(rec.attempts + 1);
                            l.code = code;
                        });
                        events::emit(if refused {
                            Event::RefusedByCloud {
                                route: &rec.route,
                                id: rec.id,
                            }
                        } else {
                            Event::Delivered {
                                route: &rec.route,
                                id: rec.id,
                                attempts: rec.attempts + 1,
                            }
                        });
                        Attempt::Delivered
                    }
                    Err(e) => {
                        // Delivered but not recorded: the store settles it once it writes again
                        // and does not hand it out meanwhile, so it is not sent twice while the
                        // box runs.
                        tracing::error!(route = %rec.route, id = rec.id, error = %e, "buffer: cannot record a delivery");
                        Attempt::Retry { link_down: false }
                    }
                }
            }
            Err(e) if e.retry() == Retry::Never => {
                Attempt::Dead(format!("the cloud refused it ({e})"))
            }
            Err(e) => {
                let link_down = e.retry() == Retry::AfterLink;
                let note = format!("{}: {e}", e.kind());
                events::emit(Event::Retry {
                    route: &rec.route,
                    id: rec.id,
                    error: &note,
                });
                trail(rec, "retry", |l| {
                    l.att = Some(rec.attempts + 1);
                    l.why = Some(e.kind().as_str().to_string());
                });
                let _ = self.outbox.record_attempt(rec.id, note).await;
                Attempt::Retry { link_down }
            }
        }
    }
}

/// A buffered message's event in the trail (DESIGN.md §8), when this process writes one.
fn trail(rec: &Record, ev: &'static str, fill: impl FnOnce(&mut crate::trail::Line)) {
    if let Some(mut line) = super::trail_line(rec, ev) {
        fill(&mut line);
        crate::trail::record(line);
    }
}

/// The `code` of the cloud's JSON answer (附四), if it has one.
fn answer_code(answer: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(answer).ok()?;
    match v.get("code")? {
        serde_json::Value::String(s) if s.len() <= 16 => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `true` when a JSON answer says `"success": false` (or the string "false").
fn business_refusal(answer: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(answer)
        .ok()
        .and_then(|v| v.get("success").cloned())
        .is_some_and(|s| s == serde_json::Value::Bool(false) || s == "false")
}

/// Sleeps `d`; returns `true` if shutdown was signalled meanwhile.
async fn sleep_or_shutdown(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => *shutdown.borrow(),
        _ = shutdown.changed() => true,
    }
}
