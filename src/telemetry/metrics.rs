//! Prometheus metrics. Counters that follow events (calls, denials) live here and are bumped by
//! the same code that writes the event's log line; gauges (buffer depth, link state) are read
//! from the gateway's state at scrape time, so the two can never disagree.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::listener::State;
use crate::outcome::{Direction, Outcome, OutcomeClass};
use crate::upstream::link::LinkState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    direction: String,
    route: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

fn latency_histogram() -> Histogram {
    // 1 ms … ~16 s.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.001, 2.0, 15,
    ))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    listener: String,
    limit: String,
}

struct Metrics {
    started: Instant,
    calls: Family<CallLabels, Counter>,
    /// Every label set `calls` has, so its counters can be read back (`call_totals`): a
    /// `Family` cannot be iterated.
    call_keys: Mutex<HashMap<CallLabels, OutcomeClass>>,
    latency: Family<DirectionLabels, Histogram, fn() -> Histogram>,
    denials: Family<ListenerLabels, Counter>,
    limits: Family<LimitLabels, Counter>,
}

fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| Metrics {
        started: Instant::now(),
        calls: Family::default(),
        call_keys: Mutex::new(HashMap::new()),
        latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
        denials: Family::default(),
        limits: Family::default(),
    })
}

/// Counts one finished call (the `call` log line's twin).
pub fn call(direction: Direction, route: &str, outcome: Outcome, seconds: f64) {
    let m = metrics();
    let labels = CallLabels {
        direction: direction.as_str().to_string(),
        route: route.to_string(),
        outcome: outcome.as_str().to_string(),
    };
    if m.calls.get(&labels).is_none() {
        m.call_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(labels.clone(), outcome.class());
    }
    m.calls.get_or_create(&labels).inc();
    m.latency
        .get_or_create(&DirectionLabels {
            direction: direction.as_str().to_string(),
        })
        .observe(seconds);
}

/// `prefront_calls_total` summed over direction and route, by `OutcomeClass`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CallTotals {
    pub ok: u64,
    pub queued: u64,
    pub failed: u64,
}

/// The call counters `/metrics` exposes, added up (read from the same counters).
pub fn call_totals() -> CallTotals {
    let m = metrics();
    let keys: Vec<(CallLabels, OutcomeClass)> = m
        .call_keys
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(k, c)| (k.clone(), *c))
        .collect();
    let mut t = CallTotals::default();
    for (k, class) in keys {
        let n = m.calls.get(&k).map_or(0, |c| c.get());
        match class {
            OutcomeClass::Ok => t.ok += n,
            OutcomeClass::Queued => t.queued += n,
            OutcomeClass::Failed => t.failed += n,
        }
    }
    t
}

/// Time since the metrics started counting (the first call or scrape after the process
/// started): the `prefront_uptime_seconds` gauge.
pub fn uptime() -> Duration {
    metrics().started.elapsed()
}

/// Counts one limit hit (see `telemetry::limits`).
pub fn limit_hit(listener: &str, limit: &str) {
    metrics()
        .limits
        .get_or_create(&LimitLabels {
            listener: listener.to_string(),
            limit: limit.to_string(),
        })
        .inc();
}

/// Counts one caller refused by a listener's allowlist.
pub fn denial(listener: &str) {
    metrics()
        .denials
        .get_or_create(&ListenerLabels {
            listener: listener.to_string(),
        })
        .inc();
}

fn gauge(v: i64) -> Gauge {
    let g = Gauge::default();
    g.set(v);
    g
}

fn counter(v: u64) -> Counter {
    let c = Counter::default();
    c.inc_by(v);
    c
}

/// The Prometheus text exposition of everything the box knows about itself.
pub fn render(state: &State) -> String {
    let m = metrics();
    let mut r = Registry::with_prefix("prefront");
    r.register(
        "calls",
        "Calls through the box by direction, route and outcome",
        m.calls.clone(),
    );
    r.register(
        "call_duration_seconds",
        "Time from a call's arrival to its answer",
        m.latency.clone(),
    );
    r.register(
        "limit_hits",
        "Requests or connections refused by a listener limit (connections, sizes, timeouts, client names)",
        m.limits.clone(),
    );
    r.register(
        "allowlist_denials",
        "Callers refused with 403 by a listener's allowlist",
        m.denials.clone(),
    );

    let link: Family<StateLabels, Gauge> = Family::default();
    let now = state.cloud.link.state();
    for (s, name) in [
        (LinkState::Up, "up"),
        (LinkState::Down, "down"),
        (LinkState::Probing, "probing"),
    ] {
        link.get_or_create(&StateLabels {
            state: name.to_string(),
        })
        .set(i64::from(now == s));
    }
    r.register(
        "cloud_link_state",
        "The link to the cloud: 1 for the current state",
        link,
    );

    let depth: Family<RouteLabels, Gauge> = Family::default();
    let oldest: Family<RouteLabels, Gauge> = Family::default();
    let dead: Family<RouteLabels, Gauge> = Family::default();
    let (buffer_ok, used) = match state.outbox.store().stats() {
        Ok((routes, used)) => {
            let now_ms = crate::buffer::now_ms();
            for s in routes {
                let l = RouteLabels {
                    route: s.route.clone(),
                };
                depth.get_or_create(&l).set(s.depth as i64);
                dead.get_or_create(&l).set(s.dead as i64);
                let age = s
                    .oldest_enqueued_at_ms
                    .map_or(0, |t| now_ms.saturating_sub(t) / 1000);
                oldest.get_or_create(&l).set(age as i64);
            }
            (true, used)
        }
        Err(_) => (false, 0),
    };
    r.register(
        "buffer_depth",
        "Calls waiting in the buffer per route",
        depth,
    );
    r.register(
        "buffer_oldest_age_seconds",
        "Age of the oldest waiting call per route",
        oldest,
    );
    r.register(
        "buffer_dead_letters",
        "Calls set aside for the operator per route",
        dead,
    );
    r.register(
        "buffer_used_bytes",
        "Bytes of the buffer quota in use",
        gauge(used as i64),
    );
    r.register(
        "buffer_max_bytes",
        "The buffer quota (buffer.max_bytes)",
        gauge(state.config.buffer.max_bytes as i64),
    );
    r.register(
        "buffer_readable",
        "1 when the buffer store answered the scrape",
        gauge(i64::from(buffer_ok)),
    );
    let health = state.outbox.store().health();
    r.register(
        "buffer_writable",
        "1 when the buffer can accept calls; 0 while the disk is full or failing",
        gauge(i64::from(health.writable)),
    );
    let t = crate::buffer::events::totals();
    for (name, help, v) in [
        ("buffer_queued", "Calls accepted into the buffer", t.queued),
        ("buffer_delivered", "Buffered calls delivered", t.delivered),
        (
            "buffer_refused_by_cloud",
            "Buffered calls the cloud answered success:false",
            t.refused_by_cloud,
        ),
        (
            "buffer_retries",
            "Failed delivery attempts that will be retried",
            t.retried,
        ),
        (
            "buffer_dead_lettered",
            "Calls moved to the dead letters",
            t.dead_lettered,
        ),
        (
            "buffer_not_accepted",
            "Calls the buffer refused (quota full, store error)",
            t.not_accepted,
        ),
        (
            "buffer_salvaged",
            "Records salvaged from a damaged store into a new one at start",
            health.salvaged,
        ),
        (
            "buffer_lost",
            "Acknowledged records a damaged store no longer held intact",
            health.lost,
        ),
    ] {
        r.register(name, help, counter(v));
    }
    let p = crate::pacs::totals();
    r.register(
        "streamed_bytes",
        "Bytes streamed from the LAN to the cloud (PACS images, report files)",
        counter(p.bytes),
    );
    r.register(
        "streams_completed",
        "Streams that ended whole",
        counter(p.completed),
    );
    r.register(
        "streams_failed",
        "Streams cut short (PACS broke off or stalled, client went away)",
        counter(p.failed),
    );
    let build: Family<BuildLabels, Gauge> = Family::default();
    build
        .get_or_create(&BuildLabels {
            version: env!("CARGO_PKG_VERSION").to_string(),
        })
        .set(1);
    r.register("build_info", "The running version", build);
    let expiry: Family<ListenerLabels, Gauge> = Family::default();
    for (listener, l) in [
        ("his", &state.config.his_listener),
        ("cloud", &state.config.cloud_listener),
    ] {
        if let Some(seconds) = l.tls.as_ref().and_then(|t| cert_seconds_left(&t.cert)) {
            expiry
                .get_or_create(&ListenerLabels {
                    listener: listener.to_string(),
                })
                .set(seconds);
        }
    }
    r.register(
        "tls_cert_expiry_seconds",
        "Seconds until the listener's certificate expires (negative: expired)",
        expiry,
    );
    r.register(
        "uptime_seconds",
        "Seconds since the process started",
        gauge(uptime().as_secs() as i64),
    );
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &r).is_err() {
        out.clear();
    }
    out
}

/// Seconds from now until the first certificate in `path` expires; `None` if it cannot be read.
pub fn cert_seconds_left(path: &std::path::Path) -> Option<i64> {
    let not_after = crate::certinfo::cert_not_after(path).ok()?;
    let now = std::time::SystemTime::now();
    Some(match not_after.duration_since(now) {
        Ok(left) => i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
        Err(past) => -i64::try_from(past.duration().as_secs()).unwrap_or(i64::MAX),
    })
}
