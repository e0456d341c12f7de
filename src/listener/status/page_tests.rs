//! Tests of the `/status` page's HTML on snapshots made by hand.

use super::*;
use crate::listener::status::{
    BufferRouteRow, DeadLetterRow, ErrorRow, HisLinkRow, Notice, PageView, Search, SearchRow,
};
use crate::outcome::Outcome;
use crate::telemetry::metrics::CallTotals;
use crate::telemetry::recent::RecentError;
use crate::trail::query::Entry;
use crate::upstream::link::Observed;

fn err(route: &str, outcome: &str) -> ErrorRow {
    ErrorRow {
        error: RecentError {
            at_ms: 1_740_809_592_000, // 2025-03-01 06:13:12 UTC
            direction: "his_to_cloud".into(),
            route: route.into(),
            outcome: outcome.into(),
            status: 200,
            request_id: "pf-1".into(),
        },
        utc_offset_s: 8 * 3600,
    }
}

#[test]
fn an_empty_state_renders_a_whole_page() {
    let html = render(&StatusSnapshot::default());
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.trim_end().ends_with("</html>"));
    assert!(html.contains(r#"<meta http-equiv="refresh" content="5">"#));
    assert!(html.contains(r#"id="buffer-empty""#), "{html}");
    assert!(html.contains(r#"id="errors-empty""#));
    assert!(html.contains("No HIS route configured"));
    assert!(
        html.contains(r#"data-value="unknown""#),
        "no link state given"
    );
    assert!(html.contains("证书到期 Certificate expiry"));
    // Self-contained: no scripts, no external resources.
    for banned in ["<script", "src=", "href=", "@import", "url("] {
        assert!(!html.contains(banned), "{banned}");
    }
}

/// A disk that fails and a store salvaged at start are shown in red, with the reason and
/// the figures; a healthy buffer shows neither.
#[test]
fn a_failing_disk_and_a_salvage_are_shown() {
    let healthy = render(&StatusSnapshot::default());
    assert!(!healthy.contains(r#"id="buffer-unwritable""#));
    assert!(!healthy.contains(r#"id="buffer-salvage""#));
    let s = StatusSnapshot {
        buffer_unwritable: Some("the buffer cannot write: No space left on device".into()),
        buffer_salvage: Some((10, 3, "/var/lib/prefront/buffer.corrupt-1".into())),
        ..StatusSnapshot::default()
    };
    let html = render(&s);
    assert!(
        html.contains(r#"<p class="warn" id="buffer-unwritable">"#)
            && html.contains("No space left on device"),
        "{html}"
    );
    assert!(
        html.contains(r#"<p class="warn" id="buffer-salvage">"#)
            && html.contains("10 record(s) salvaged, 3 lost")
            && html.contains("buffer.corrupt-1"),
        "{html}"
    );
}

#[test]
fn values_from_config_and_calls_are_escaped() {
    let evil = r#"<script>alert("x")</script>&'"#;
    let s = StatusSnapshot {
        cloud_target: evil.into(),
        his_links: vec![HisLinkRow {
            target: evil.into(),
            hospital: Some(evil.into()),
            routes: vec![(Some(evil.into()), "http"), (None, "http")],
            link: Observed::default(),
        }],
        buffer_routes: vec![BufferRouteRow {
            route: evil.into(),
            depth: 1,
            oldest_age_s: Some(1),
            dead: 0,
        }],
        buffer_error: Some(evil.into()),
        buffer_unwritable: Some(evil.into()),
        buffer_salvage: Some((1, 2, evil.into())),
        errors: vec![ErrorRow {
            error: RecentError {
                direction: evil.into(),
                request_id: evil.into(),
                ..err(evil, evil).error
            },
            utc_offset_s: 0,
        }],
        version: evil.into(),
        ..StatusSnapshot::default()
    };
    let html = render(&s);
    assert!(!html.contains("<script"), "{html}");
    assert!(!html.contains(r#""x""#));
    assert!(html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"));
    assert_eq!(escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
}

#[test]
fn numbers_carry_their_metric_names() {
    let s = StatusSnapshot {
        cloud_link: Some(LinkState::Down),
        buffer_routes: vec![BufferRouteRow {
            route: "cloud:prefront/sendTipMessage/payment".into(),
            depth: 2,
            oldest_age_s: Some(192),
            dead: 3,
        }],
        buffer_used_bytes: 1536,
        buffer_max_bytes: 1 << 30,
        calls: CallTotals {
            ok: 7,
            queued: 2,
            failed: 1,
        },
        errors: vec![err("unknown", "unknown-path")],
        ..StatusSnapshot::default()
    };
    let html = render(&s);
    for cell in [
        r#"<td class="mono">prefront/sendTipMessage/payment <span class="muted">→ 云平台 cloud</span></td>"#,
        r#"data-metric="prefront_buffer_depth" data-route="cloud:prefront/sendTipMessage/payment" data-value="2">2<"#,
        r#"data-metric="prefront_buffer_oldest_age_seconds" data-route="cloud:prefront/sendTipMessage/payment" data-value="192">3 min 12 s<"#,
        r#"data-metric="prefront_buffer_dead_letters" data-route="cloud:prefront/sendTipMessage/payment" data-value="3">"#,
        r#"data-metric="prefront_buffer_used_bytes" id="buffer-used" data-value="1536">1.5 KiB<"#,
        r#"data-metric="prefront_buffer_max_bytes" id="buffer-max" data-value="1073741824">1.0 GiB<"#,
        r#"id="calls-ok" data-class="ok" data-value="7">7<"#,
        r#"id="calls-failed" data-class="failed" data-value="1">1<"#,
        r#"data-metric="prefront_cloud_link_state" data-value="down"><span class="state down">断开 Down<"#,
        r#"data-outcome="unknown-path""#,
        r#"<time datetime="2025-03-01T14:13:12+08:00">2025-03-01 14:13:12</time>"#,
    ] {
        assert!(html.contains(cell), "{cell}\n{html}");
    }
}

#[test]
fn his_targets_show_their_link_as_calls_saw_it() {
    let at = 1_740_809_592_000; // 2025-03-01 06:13:12 UTC
    let s = StatusSnapshot {
        utc_offset_s: 8 * 3600,
        his_links: vec![
            HisLinkRow {
                target: "10.1.1.10:8080".into(),
                hospital: None,
                routes: vec![
                    (None, "http"),
                    (Some("hospital.interface.a".into()), "http"),
                    (Some("hospital.interface.b".into()), "soap"),
                    (Some("hospital.interface.c".into()), "http"),
                ],
                link: Observed {
                    state: Seen::Down,
                    since_ms: at,
                    last_error: Some(Outcome::UpstreamConnect),
                    last_error_ms: at,
                },
            },
            HisLinkRow {
                target: "10.1.1.11:80".into(),
                hospital: None,
                routes: vec![(Some("hospital.interface.d".into()), "soap")],
                link: Observed::default(),
            },
            HisLinkRow {
                target: "10.2.1.10:8080".into(),
                hospital: Some("253".into()),
                routes: vec![
                    (None, "http"),
                    (Some("hospital.interface.e".into()), "http"),
                ],
                link: Observed::default(),
            },
        ],
        ..StatusSnapshot::default()
    };
    let html = render(&s);
    for want in [
        r#"<tr class="his-link" data-target="10.1.1.10:8080"><td>HIS <span class="muted">http, soap</span>"#,
        r#"title="默认 Default ([his] url), hospital.interface.a, hospital.interface.b, hospital.interface.c">默认 Default ([his] url), hospital.interface.a, hospital.interface.b, +1 个 more</div>"#,
        r#"data-metric="prefront_his_link_state" data-target="10.1.1.10:8080" data-value="down"><span class="state down">断开 Down</span> <span class="muted">自 since <time datetime="2025-03-01T14:13:12+08:00">2025-03-01 14:13:12</time></span><div class="muted">错误 error <span class="mono" data-last-error="upstream-connect">upstream-connect</span>"#,
        r#"data-target="10.1.1.11:80" data-value="unknown"><span class="state unknown">未调用 Never called</span></td>"#,
        // A hospital's own routes: its id in the row, the cell and the name of its default.
        r#"<tr class="his-link" data-hospital="253" data-target="10.2.1.10:8080"><td>HIS <span class="hospital">医院 Hospital <b class="mono">253</b></span> <span class="muted">http</span>"#,
        r#"title="默认 Default (hospital 253 his), hospital.interface.e""#,
        r#"data-metric="prefront_his_link_state" data-hospital="253" data-target="10.2.1.10:8080" data-value="unknown""#,
    ] {
        assert!(html.contains(want), "{want}\n{html}");
    }
}

fn entry(rid: &str, events: &[(&str, Option<&str>)]) -> Entry {
    Entry {
        time: "2025-03-01T06:13:12Z".into(),
        request_id: rid.into(),
        direction: "his_to_cloud".into(),
        route: "prefront/sendTipMessage/phyReport".into(),
        peer: "127.0.0.1".into(),
        outcome: "delivered".into(),
        status: 200,
        latency_ms: 1.0,
        key: Some("refundNo=RF-1".into()),
        message_id: None,
        id: Some(7),
        attempts: Some(4),
        delivered_at: None,
        answer_code: Some("10001".into()),
        history: events
            .iter()
            .map(|(e, d)| crate::trail::query::Step {
                time: "2025-03-01T06:13:12Z".into(),
                event: (*e).into(),
                detail: d.map(str::to_string),
            })
            .collect(),
    }
}

fn dead(id: u64, route: &str) -> DeadLetterRow {
    DeadLetterRow {
        route: route.into(),
        id,
        request_id: format!("pf-{id}"),
        age_s: 192,
        attempts: 3,
        reason: "cloud answered HTTP 400".into(),
    }
}

#[test]
fn a_search_shows_each_call_with_its_history() {
    let e = entry(
        "pf-<1>",
        &[
            ("received", None),
            ("queued", None),
            ("retry", Some("upstream-connect")),
            ("retry", Some("upstream-connect")),
            ("retry", Some("upstream-connect")),
            ("delivered", Some("10001")),
        ],
    );
    let html = render(&StatusSnapshot {
        page: PageView {
            search: Some(Search {
                q: "pf-<1>".into(),
                by: Some("request_id"),
                entries: vec![SearchRow {
                    entry: e,
                    at_ms: 1_740_809_592_000,
                    utc_offset_s: 8 * 3600,
                }],
                problem: None,
            }),
            ..PageView::default()
        },
        ..StatusSnapshot::default()
    });
    for want in [
        r#"<form method="get" action="/status" id="search-form"><input type="search" name="q" id="q" value="pf-&lt;1&gt;""#,
        r#"<p class="muted" id="search-found" data-by="request_id">1 条 entries 按请求编号 by request id</p>"#,
        r#"<tr class="trail-entry" data-request-id="pf-&lt;1&gt;" data-outcome="delivered" data-id="7"><td class="mono"><time datetime="2025-03-01T14:13:12+08:00">2025-03-01 14:13:12</time></td>"#,
        r#">received</span> → <span title="2025-03-01T06:13:12Z">queued</span> → <span title="2025-03-01T06:13:12Z">retry ×3</span> → <span title="2025-03-01T06:13:12Z">delivered (10001)</span></td>"#,
        r#"id="refresh-paused""#,
        "此视图不自动刷新 This view does not refresh itself",
    ] {
        assert!(html.contains(want), "{want}\n{html}");
    }
    assert!(
        !html.contains("http-equiv=\"refresh\""),
        "search results stay put"
    );
    let none = render(&StatusSnapshot {
        page: PageView {
            search: Some(Search {
                q: "nothing".into(),
                ..Search::default()
            }),
            ..PageView::default()
        },
        ..StatusSnapshot::default()
    });
    assert!(none.contains(r#"id="search-none""#), "{none}");
}

#[test]
fn dead_letters_have_retry_and_drop_buttons_with_the_form_key() {
    let route = "cloud:prefront/sendTipMessage/payment";
    let base = StatusSnapshot {
        buffer_routes: vec![BufferRouteRow {
            route: route.into(),
            depth: 0,
            oldest_age_s: None,
            dead: 25,
        }],
        page: PageView {
            dead_letters: vec![dead(3, route), dead(9, route)],
            form_key: Some("k3y".into()),
            ..PageView::default()
        },
        ..StatusSnapshot::default()
    };
    let html = render(&base);
    for want in [
        r#"<form method="post" id="dead-form"><input type="hidden" name="form_key" value="k3y"><button type="submit" disabled hidden aria-hidden="true"></button>"#,
        r#"<tr class="dead-letter" data-id="3" data-route="cloud:prefront/sendTipMessage/payment" data-request-id="pf-3"><td class="mono">prefront/sendTipMessage/payment</td><td class="n mono">3</td><td class="mono">pf-3</td><td class="n">3 min 12 s</td><td class="n">3</td><td>cloud answered HTTP 400</td>"#,
        r#"<button type="submit" formaction="/api/queue/messages/9/retry" id="retry-9">重试 Retry</button> <button type="submit" formaction="/api/queue/messages/9/drop" id="drop-9" class="danger">删除 Drop</button>"#,
        "还有 23 条 23 more",
    ] {
        assert!(html.contains(want), "{want}\n{html}");
    }
    assert!(!html.contains(r#"name="token""#), "no token configured");
    assert!(
        html.contains(r#"<meta http-equiv="refresh" content="5">"#),
        "a click needs no typing: the page keeps refreshing"
    );

    let with_token = render(&StatusSnapshot {
        page: PageView {
            token_required: true,
            notice: Some(Notice::Retried(3)),
            ..base.page.clone()
        },
        ..base.clone()
    });
    assert!(with_token.contains(r#"<input type="password" name="token" id="token" required"#));
    assert!(with_token.contains(
        r#"<p id="notice" class="notice ok" data-notice="retried-3">已重试 Retried: 消息 message 3"#
    ));
    assert!(
        !with_token.contains("http-equiv=\"refresh\""),
        "the token is being typed"
    );

    let no_key = render(&StatusSnapshot {
        page: PageView {
            form_key: None,
            ..base.page.clone()
        },
        ..base
    });
    assert!(no_key.contains(r#"id="retry-3" disabled>"#), "{no_key}");
    assert!(!no_key.contains("<form method=\"post\""));
}

#[test]
fn certificates_show_their_expiry_and_days_left() {
    let now_ms = 1_740_809_592_000; // 2025-03-01 06:13:12 UTC
    let now_s = 1_740_809_592;
    let row = |listener, not_after_s| CertRow {
        listener,
        not_after_s,
        utc_offset_s: 8 * 3600,
    };
    let html = render(&StatusSnapshot {
        now_ms,
        certificates: CertificateView::Listeners(vec![
            row("cloud", Ok(now_s + 89 * 86_400 + 60)),
            row("his", Ok(now_s + 10 * 86_400 + 60)),
        ]),
        ..StatusSnapshot::default()
    });
    assert!(
        html.contains(r#"<td class="n" data-metric="prefront_tls_cert_expiry_seconds" data-listener="cloud" data-value="7689660" data-days-left="89" data-not-after="2025-05-29T14:14:12+08:00"><time datetime="2025-05-29T14:14:12+08:00">2025-05-29</time> · 剩 89 天 89 days left</td>"#),
        "{html}"
    );
    assert!(
        html.contains(r#"<td class="n soon" data-metric="prefront_tls_cert_expiry_seconds" data-listener="his" data-value="864060" data-days-left="10""#)
    );
    let html = render(&StatusSnapshot {
        now_ms,
        certificates: CertificateView::Listeners(vec![
            row("cloud", Ok(now_s - 3 * 86_400)),
            row("his", Err("<cert.pem>: no PEM certificate".into())),
        ]),
        ..StatusSnapshot::default()
    });
    assert!(html.contains("已过期 expired 3 天 days ago"), "{html}");
    assert!(html.contains(r#"title="&lt;cert.pem&gt;: no PEM certificate">无法读取 cannot read"#));
    let html = render(&StatusSnapshot {
        certificates: CertificateView::Listeners(Vec::new()),
        ..StatusSnapshot::default()
    });
    assert!(html.contains("— 无证书 none"));
}

#[test]
fn durations_bytes_and_times_read_like_people_write_them() {
    assert_eq!(human_duration(0), "0 s");
    assert_eq!(human_duration(45), "45 s");
    assert_eq!(human_duration(192), "3 min 12 s");
    assert_eq!(human_duration(3600 * 5 + 180 + 9), "5 h 3 min");
    assert_eq!(human_duration(86_400 * 2 + 3600 * 4 + 5), "2 d 4 h");
    assert_eq!(human_bytes(512), "512 B");
    assert_eq!(human_bytes(1536), "1.5 KiB");
    assert_eq!(human_bytes(1 << 30), "1.0 GiB");
    assert_eq!(
        local_time(0, 0),
        (
            "1970-01-01 00:00:00".to_string(),
            "1970-01-01T00:00:00+00:00".to_string()
        )
    );
    assert_eq!(
        local_time(1_709_164_800_000, 8 * 3600).0,
        "2024-02-29 08:00:00",
        "a leap day"
    );
    assert_eq!(
        local_time(1_740_809_592_000, -(3 * 3600 + 1800)).1,
        "2025-03-01T02:43:12-03:30"
    );
}

#[test]
fn the_vrrp_role_shows_only_when_known() {
    let none = render(&StatusSnapshot::default());
    assert!(!none.contains("vrrp-role"), "{none}");
    let html = render(&StatusSnapshot {
        vrrp_role: Some("MASTER".into()),
        ..StatusSnapshot::default()
    });
    assert!(
        html.contains(r#"VRRP role <b id="vrrp-role">MASTER</b>"#),
        "{html}"
    );
}
