//! The admin listener: health, readiness and Prometheus metrics that follow what the box does.
//! Metrics are process-wide and tests in this file run side by side, so each test reads the
//! change in the series it owns (its own route, its own listener) rather than absolute values.

mod support;

use std::time::Duration;

use support::{basic_config, spawn_gateway, TestGateway};
use support::{closed_port_addr, plain_client, MockUpstream, TestPki};

const ADMIN: &str = "\n[admin]\nlisten = \"127.0.0.1:0\"\n";

fn admin_url(gw: &TestGateway, path: &str) -> String {
    gw.admin_url(path)
}

/// `/metrics`, checked to be a complete OpenMetrics exposition.
async fn scrape(gw: &TestGateway) -> String {
    let r = plain_client()
        .get(gw.admin_url("/metrics"))
        .send()
        .await
        .expect("metrics answer");
    assert_eq!(r.status(), 200);
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    let text = r.text().await.expect("metrics body");
    assert!(text.trim_end().ends_with("# EOF"), "a complete exposition");
    text
}

/// The value of the sample `series`, 0 when absent.
fn value(metrics: &str, series: &str) -> f64 {
    support::metric_sample(metrics, series).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_call_metrics_follow_the_calls() {
    let pki = TestPki::new();
    let cloud = MockUpstream::https(&pki).await;
    cloud.echo();
    let toml = basic_config(&cloud.url(), Some(&pki.ca_pem_path()), None, ADMIN);
    let gw = spawn_gateway(&toml).await;
    let client = plain_client();

    let health = client
        .get(admin_url(&gw, "/healthz"))
        .send()
        .await
        .expect("healthz answers");
    assert_eq!(health.status(), 200);
    let ready = client
        .get(admin_url(&gw, "/readyz"))
        .send()
        .await
        .expect("readyz answers");
    assert_eq!(ready.status(), 200);
    let ready = support::read_json(ready).await;
    assert_eq!(ready["ready"], true, "{ready}");

    let series = r#"prefront_calls_total{direction="his_to_cloud",route="prefront/patient/getPatientInfo",outcome="ok"}"#;
    let before = value(&scrape(&gw).await, series);
    for _ in 0..3 {
        let r = client
            .post(format!("{}/prefront/patient/getPatientInfo", gw.his_url()))
            .body(r#"{"medicalCardNumber":"001"}"#)
            .send()
            .await
            .expect("relay answers");
        assert_eq!(r.status(), 200);
    }
    let after = scrape(&gw).await;
    assert_eq!(
        value(&after, series) - before,
        3.0,
        "three calls, three counts:\n{after}"
    );
    assert!(
        value(
            &after,
            r#"prefront_call_duration_seconds_count{direction="his_to_cloud"}"#
        ) >= 3.0,
        "latencies observed"
    );
    assert_eq!(
        value(&after, r#"prefront_cloud_link_state{state="up"}"#),
        1.0,
        "the cloud answered, so the link is up"
    );
    assert_eq!(value(&after, "prefront_buffer_readable"), 1.0);
    assert!(after.contains(&format!(
        "prefront_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    )));
    let missing = client
        .get(admin_url(&gw, "/nothing"))
        .send()
        .await
        .expect("answers");
    assert_eq!(missing.status(), 404);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_calls_show_as_depth_per_route_with_the_link_down() {
    let cloud_url = format!("https://{}/", closed_port_addr());
    let toml = basic_config(&cloud_url, None, None, ADMIN);
    let gw = spawn_gateway(&toml).await;
    let client = plain_client();
    for i in 0..2 {
        let r = client
            .post(format!(
                "{}/prefront/sendTipMessage/phyReport",
                gw.his_url()
            ))
            .body(format!(r#"{{"patientName":"张三","n":{i}}}"#))
            .send()
            .await
            .expect("answers");
        assert_eq!(r.status(), 200);
        assert!(r.headers().contains_key("x-prefront-queued"), "buffered");
    }
    let m = scrape(&gw).await;
    let depth = m
        .lines()
        .find(|l| l.starts_with("prefront_buffer_depth{") && l.contains("phyReport"))
        .unwrap_or_else(|| panic!("a depth series for the route:\n{m}"));
    assert!(depth.ends_with(" 2"), "{depth}");
    assert_eq!(
        value(&m, r#"prefront_cloud_link_state{state="up"}"#),
        0.0,
        "the link is not up"
    );
    assert!(value(&m, "prefront_buffer_used_bytes") > 0.0);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_allowlist_refuses_and_counts_other_callers() {
    let pki = TestPki::new();
    let cloud = MockUpstream::https(&pki).await;
    let toml = basic_config(
        &cloud.url(),
        Some(&pki.ca_pem_path()),
        None,
        "\n[admin]\nlisten = \"127.0.0.1:0\"\nallow = [\"10.9.9.0/24\"]\n",
    );
    let gw = spawn_gateway(&toml).await;
    for path in ["/healthz", "/metrics"] {
        let r = plain_client()
            .get(admin_url(&gw, path))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        match r {
            Ok(r) => panic!(
                "{path} from a caller not on the list: refused at accept, not HTTP {}",
                r.status()
            ),
            Err(e) => assert!(
                !e.is_timeout(),
                "{path}: closed at once, not timed out: {e}"
            ),
        }
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_expiry_is_a_metric_per_tls_listener() {
    let pki = TestPki::new();
    let cloud = MockUpstream::https(&pki).await;
    let toml = format!(
        r#"
[his_listener]
listen = "127.0.0.1:0"

[cloud_listener]
listen = "127.0.0.1:0"
tls_cert = {:?}
tls_key = {:?}

[admin]
listen = "127.0.0.1:0"

[cloud]
base_url = "{}"
ca = {:?}
"#,
        pki.server_cert_path().display().to_string(),
        pki.server_key_path().display().to_string(),
        cloud.url(),
        pki.ca_pem_path().display().to_string(),
    );
    let gw = spawn_gateway(&toml).await;
    let m = scrape(&gw).await;
    let left = value(&m, r#"prefront_tls_cert_expiry_seconds{listener="cloud"}"#);
    // The test PKI's certificates run for decades.
    assert!(left > 10.0 * 365.0 * 86400.0, "cloud: {left}\n{m}");
    assert!(
        !m.contains(r#"prefront_tls_cert_expiry_seconds{listener="his"}"#),
        "the plain-HTTP HIS listener has no certificate"
    );
    gw.shutdown().await;
}

/// Each HIS target's link as the calls through it saw it: a target that refuses connections is
/// down with `upstream-connect`, one that answers is up, one never called is unknown — on
/// `/metrics` and on `/status`. A reload keeps the state of the targets it keeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn his_targets_have_a_link_state_from_real_calls() {
    let refusing = closed_port_addr();
    let unused = closed_port_addr();
    let his = MockUpstream::http().await;
    his.echo();
    let config = |third: std::net::SocketAddr| {
        basic_config(
            "http://127.0.0.1:9/",
            None,
            Some(&format!("http://{refusing}/his/{{method}}")),
            &format!(
                r#"
[[his.route]]
name = "hospital.interface.createCard"
url = "{}/card"

[[his.route]]
name = "hospital.interface.queryBalance"
kind = "soap"
url = "http://{third}/HisService.asmx"
namespace = "http://tempuri.org/"
{ADMIN}"#,
                his.url()
            ),
        )
    };
    let gw = spawn_gateway(&config(unused)).await;
    let state = |m: &str, target: &str| {
        ["up", "down", "unknown"]
            .into_iter()
            .filter(|s| {
                value(
                    m,
                    &format!(r#"prefront_his_link_state{{target="{target}",state="{s}"}}"#),
                ) == 1.0
            })
            .collect::<Vec<_>>()
    };
    let m = scrape(&gw).await;
    for target in [refusing, his.addr(), unused] {
        assert_eq!(state(&m, &target.to_string()), ["unknown"], "{m}");
    }

    let call = |name: &str| {
        plain_client()
            .post(format!("{}/his/{name}", gw.cloud_url(false)))
            .body(r#"{"hospitalId":"253"}"#)
            .send()
    };
    let r = call("hospital.interface.queryPatientInfo")
        .await
        .expect("answers");
    assert_eq!(
        r.headers()
            .get("x-prefront-error")
            .and_then(|v| v.to_str().ok()),
        Some("upstream-connect")
    );
    let r = call("hospital.interface.createCard")
        .await
        .expect("answers");
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-prefront-error").is_none());

    let m = scrape(&gw).await;
    assert_eq!(state(&m, &refusing.to_string()), ["down"], "{m}");
    assert_eq!(state(&m, &his.addr().to_string()), ["up"], "{m}");
    assert_eq!(state(&m, &unused.to_string()), ["unknown"], "{m}");
    assert!(
        m.contains(&format!(
            "prefront_his_link_state{{target=\"{refusing}\",state=\"down\"}} 1"
        )),
        "{m}"
    );

    let page = plain_client()
        .get(admin_url(&gw, "/status"))
        .send()
        .await
        .expect("status answers")
        .text()
        .await
        .expect("a page");
    let row = |target: &str| {
        let start = page
            .find(&format!(r#"<tr class="his-link" data-target="{target}">"#))
            .unwrap_or_else(|| panic!("a row for {target}:\n{page}"));
        let rest = &page[start..];
        rest[..rest.find("</tr>").unwrap_or(rest.len())].to_string()
    };
    let down = row(&refusing.to_string());
    assert!(down.contains(r#"data-value="down""#), "{down}");
    assert!(
        down.contains(r#"data-last-error="upstream-connect""#),
        "{down}"
    );
    assert!(down.contains("默认 Default"), "the default route: {down}");
    assert!(row(&his.addr().to_string()).contains(r#"data-value="up""#));
    let never = row(&unused.to_string());
    assert!(
        never.contains("Never called") && never.contains("soap"),
        "{never}"
    );

    // A reload that moves one route: the targets kept keep their state, the new one is unknown,
    // the old one is gone.
    let moved = closed_port_addr();
    gw.reload(&config(moved));
    let m = scrape(&gw).await;
    assert_eq!(state(&m, &refusing.to_string()), ["down"], "{m}");
    assert_eq!(state(&m, &his.addr().to_string()), ["up"], "{m}");
    assert_eq!(state(&m, &moved.to_string()), ["unknown"], "{m}");
    assert!(!m.contains(&format!("target=\"{unused}\"")), "{m}");
    gw.shutdown().await;
}
