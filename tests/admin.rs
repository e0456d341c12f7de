//! The admin listener: health, readiness and Prometheus metrics that follow what the box does.
//! Metrics are process-wide and tests in this file run side by side, so each test reads the
//! change in the series it owns (its own route, its own listener) rather than absolute values.

mod support;

use std::time::Duration;

use support::{basic_config, spawn_gateway, TestGateway};
use support::{closed_port_addr, get, plain_client, post, MockUpstream, TestPki};

const ADMIN: &str = "\n[admin]\nlisten = \"127.0.0.1:0\"\n";

fn admin_url(gw: &TestGateway, path: &str) -> String {
    gw.admin_url(path)
}

/// `/metrics`, checked to be a complete OpenMetrics exposition.
async fn scrape(gw: &TestGateway) -> String {
    let r = get(gw.admin_url("/metrics")).send().await;
    assert_eq!(r.status, 200);
    let ct = r.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    let text = r.text();
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

    let health = get(admin_url(&gw, "/healthz")).via(&client).send().await;
    assert_eq!(health.status, 200);
    let ready = get(admin_url(&gw, "/readyz")).via(&client).send().await;
    assert_eq!(ready.status, 200);
    let ready = ready.json();
    assert_eq!(ready["ready"], true, "{ready}");

    let series = r#"prefront_calls_total{direction="his_to_cloud",route="prefront/patient/getPatientInfo",outcome="ok"}"#;
    let before = value(&scrape(&gw).await, series);
    for _ in 0..3 {
        let r = post(format!("{}/prefront/patient/getPatientInfo", gw.his_url()))
            .via(&client)
            .body(r#"{"medicalCardNumber":"001"}"#)
            .send()
            .await;
        assert_eq!(r.status, 200);
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
    let missing = get(admin_url(&gw, "/nothing")).via(&client).send().await;
    assert_eq!(missing.status, 404);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_calls_show_as_depth_per_route_with_the_link_down() {
    let cloud_url = format!("https://{}/", closed_port_addr());
    let toml = basic_config(&cloud_url, None, None, ADMIN);
    let gw = spawn_gateway(&toml).await;
    let client = plain_client();
    for i in 0..2 {
        let r = post(format!(
            "{}/prefront/sendTipMessage/phyReport",
            gw.his_url()
        ))
        .via(&client)
        .body(format!(r#"{{"patientName":"张三","n":{i}}}"#))
        .send()
        .await;
        assert_eq!(r.status, 200);
        assert!(r.queued().is_some(), "buffered");
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
        let r = get(admin_url(&gw, path))
            .timeout(Duration::from_secs(5))
            .try_send()
            .await;
        match r {
            Ok(r) => panic!(
                "{path} from a caller not on the list: refused at accept, not HTTP {}",
                r.status
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
