//! `GET /metrics`: the Prometheus text exposition. The counters that follow events (calls,
//! denials, limits) come from `telemetry::metrics`; every gauge is read from the same
//! `StatusSnapshot` the status page shows, so the two can never disagree.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{CertificateView, StatusSnapshot};
use crate::upstream::link::{LinkState, Seen};

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: String,
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
pub fn render(s: &StatusSnapshot) -> String {
    let mut r = Registry::with_prefix("prefront");
    crate::telemetry::metrics::register_counters(&mut r);

    let link: Family<StateLabels, Gauge> = Family::default();
    for (state, name) in [
        (LinkState::Up, "up"),
        (LinkState::Down, "down"),
        (LinkState::Probing, "probing"),
    ] {
        link.get_or_create(&StateLabels {
            state: name.to_string(),
        })
        .set(i64::from(s.cloud_link == Some(state)));
    }
    r.register(
        "cloud_link_state",
        "The link to the cloud: 1 for the current state",
        link,
    );

    // One series per configured target and state: the targets (and the `hospital` label of a
    // `[[hospital]]`'s own routes) come from the config only.
    let his: Family<Vec<(&'static str, String)>, Gauge> = Family::default();
    for row in &s.his_links {
        for state in [Seen::Up, Seen::Down, Seen::Unknown] {
            let mut labels = Vec::with_capacity(3);
            if let Some(h) = &row.hospital {
                labels.push(("hospital", h.clone()));
            }
            labels.push(("target", row.target.clone()));
            labels.push(("state", state.as_str().to_string()));
            his.get_or_create(&labels)
                .set(i64::from(row.link.state == state));
        }
    }
    r.register(
        "his_link_state",
        "Each HIS target's link (host:port; with the [[hospital]] whose routes call it) as the calls through it saw it: 1 for the current state",
        his,
    );

    let depth: Family<RouteLabels, Gauge> = Family::default();
    let oldest: Family<RouteLabels, Gauge> = Family::default();
    let dead: Family<RouteLabels, Gauge> = Family::default();
    for row in &s.buffer_routes {
        let l = RouteLabels {
            route: row.route.clone(),
        };
        depth.get_or_create(&l).set(row.depth as i64);
        dead.get_or_create(&l).set(row.dead as i64);
        oldest
            .get_or_create(&l)
            .set(row.oldest_age_s.unwrap_or(0) as i64);
    }
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
        gauge(s.buffer_used_bytes as i64),
    );
    r.register(
        "buffer_max_bytes",
        "The buffer quota (buffer.max_bytes)",
        gauge(s.buffer_max_bytes as i64),
    );
    r.register(
        "buffer_readable",
        "1 when the buffer store answered the scrape",
        gauge(i64::from(s.buffer_error.is_none())),
    );
    r.register(
        "buffer_writable",
        "1 when the buffer can accept calls; 0 while the disk is full or failing",
        gauge(i64::from(s.buffer_unwritable.is_none())),
    );
    let t = &s.buffer_totals;
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
            s.buffer_salvaged,
        ),
        (
            "buffer_lost",
            "Acknowledged records a damaged store no longer held intact",
            s.buffer_lost,
        ),
    ] {
        r.register(name, help, counter(v));
    }
    r.register(
        "streamed_bytes",
        "Bytes streamed from the LAN to the cloud (PACS images, report files)",
        counter(s.streams.bytes),
    );
    r.register(
        "streams_completed",
        "Streams that ended whole",
        counter(s.streams.completed),
    );
    r.register(
        "streams_failed",
        "Streams cut short (PACS broke off or stalled, client went away)",
        counter(s.streams.failed),
    );
    let build: Family<BuildLabels, Gauge> = Family::default();
    build
        .get_or_create(&BuildLabels {
            version: s.version.clone(),
        })
        .set(1);
    r.register("build_info", "The running version", build);
    let expiry: Family<ListenerLabels, Gauge> = Family::default();
    if let CertificateView::Listeners(rows) = &s.certificates {
        let now_s = i64::try_from(s.now_ms / 1000).unwrap_or(i64::MAX);
        for row in rows {
            if let Ok(not_after) = row.not_after_s {
                expiry
                    .get_or_create(&ListenerLabels {
                        listener: row.listener.to_string(),
                    })
                    .set(not_after.saturating_sub(now_s));
            }
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
        gauge(s.uptime.as_secs() as i64),
    );
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &r).is_err() {
        out.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listener::status::{BufferRouteRow, CertRow, HisLinkRow};
    use crate::upstream::link::Observed;

    /// Every gauge is the snapshot's figure: the page and the scrape read the same numbers.
    #[test]
    fn gauges_are_the_snapshot_s_figures() {
        let s = StatusSnapshot {
            version: "9.9.9".into(),
            now_ms: 1_000_000,
            cloud_link: Some(LinkState::Down),
            buffer_routes: vec![BufferRouteRow {
                route: "cloud:prefront/sendTipMessage/payment".into(),
                depth: 7,
                oldest_age_s: Some(42),
                dead: 2,
            }],
            buffer_used_bytes: 1234,
            buffer_max_bytes: 5678,
            buffer_unwritable: Some("disk full".into()),
            buffer_salvaged: 3,
            buffer_lost: 1,
            his_links: vec![
                HisLinkRow {
                    target: "10.1.1.10:8080".into(),
                    hospital: None,
                    routes: vec![(None, "http")],
                    link: Observed {
                        state: Seen::Down,
                        since_ms: 1,
                        last_error: Some(crate::outcome::Outcome::UpstreamConnect),
                        last_error_ms: 1,
                    },
                },
                HisLinkRow {
                    target: "10.2.1.10:8080".into(),
                    hospital: Some("253".into()),
                    routes: vec![(None, "http")],
                    link: Observed::default(),
                },
            ],
            certificates: CertificateView::Listeners(vec![CertRow {
                listener: "cloud",
                not_after_s: Ok(1_000 + 86_400),
                utc_offset_s: 0,
            }]),
            ..StatusSnapshot::default()
        };
        let text = render(&s);
        for line in [
            "prefront_cloud_link_state{state=\"down\"} 1",
            "prefront_cloud_link_state{state=\"up\"} 0",
            "prefront_his_link_state{target=\"10.1.1.10:8080\",state=\"down\"} 1",
            "prefront_his_link_state{target=\"10.1.1.10:8080\",state=\"up\"} 0",
            "prefront_his_link_state{target=\"10.1.1.10:8080\",state=\"unknown\"} 0",
            "prefront_his_link_state{hospital=\"253\",target=\"10.2.1.10:8080\",state=\"unknown\"} 1",
            "prefront_buffer_depth{route=\"cloud:prefront/sendTipMessage/payment\"} 7",
            "prefront_buffer_oldest_age_seconds{route=\"cloud:prefront/sendTipMessage/payment\"} 42",
            "prefront_buffer_dead_letters{route=\"cloud:prefront/sendTipMessage/payment\"} 2",
            "prefront_buffer_used_bytes 1234",
            "prefront_buffer_max_bytes 5678",
            "prefront_buffer_readable 1",
            "prefront_buffer_writable 0",
            "prefront_buffer_salvaged_total 3",
            "prefront_buffer_lost_total 1",
            "prefront_tls_cert_expiry_seconds{listener=\"cloud\"} 86400",
            "prefront_build_info{version=\"9.9.9\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing `{line}` in\n{text}");
        }
    }
}
