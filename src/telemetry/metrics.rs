//! Prometheus metrics. Counters that follow events (calls, denials) live here and are bumped by
//! the same code that writes the event's log line; gauges (buffer depth, link state) are read
//! from the gateway's state at scrape time, so the two can never disagree.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::outcome::{Direction, Outcome, OutcomeClass};

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
    CALL_HANDLES.with(|handles| {
        let mut handles = handles.borrow_mut();
        let per_route = match handles.get_mut(route) {
            Some(v) => v,
            None => handles.entry(route.into()).or_default(),
        };
        let i = match per_route
            .iter()
            .position(|h| h.direction == direction && h.outcome == outcome)
        {
            Some(i) => i,
            None => {
                per_route.push(CallHandles::new(direction, route, outcome));
                per_route.len() - 1
            }
        };
        let h = &per_route[i];
        h.calls.inc();
        h.latency.observe(seconds);
    });
}

thread_local! {
    /// This thread's handles on the call counters it has counted into, by route: counting a
    /// call then allocates nothing and takes no lock (each label set is looked up in the
    /// `Family` once per thread). Bounded like the families themselves (routes × outcomes).
    static CALL_HANDLES: std::cell::RefCell<HashMap<Box<str>, Vec<CallHandles>>> =
        std::cell::RefCell::new(HashMap::new());
}

/// One label set's counter and its direction's latency histogram (handles sharing the
/// family's values).
struct CallHandles {
    direction: Direction,
    outcome: Outcome,
    calls: Counter,
    latency: Histogram,
}

impl CallHandles {
    fn new(direction: Direction, route: &str, outcome: Outcome) -> CallHandles {
        let m = metrics();
        let labels = CallLabels {
            direction: direction.as_str().to_string(),
            route: route.to_string(),
            outcome: outcome.as_str().to_string(),
        };
        m.call_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(labels.clone(), outcome.class());
        let calls = m.calls.get_or_create(&labels).clone();
        let latency = m
            .latency
            .get_or_create(&DirectionLabels {
                direction: direction.as_str().to_string(),
            })
            .clone();
        CallHandles {
            direction,
            outcome,
            calls,
            latency,
        }
    }
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

/// Registers the counters that follow events (calls, latency, limit hits, denials); the
/// gauges are read from a status snapshot by the admin listener.
pub fn register_counters(r: &mut Registry) {
    let m = metrics();
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
}
