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

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// A client that does not follow redirects (a form post is answered 303 to the page).
fn form_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a client")
}

/// A gateway with `[admin] token_file`, and one reminder dead in its buffer (the cloud refused
/// it with HTTP 400); the cloud then answers 503, so a message put back waits in the queue.
/// Returns the gateway, the cloud, the dead message's id and the dirs to keep.
async fn gateway_with_a_dead_letter() -> (TestGateway, MockUpstream, String, support::TempDir) {
    let dir = support::TempDir::new("prefront-admin-forms");
    let token_file = dir.path().join("admin.token");
    support::write_secret(&token_file, &format!("{TOKEN}\n"));
    let cloud = MockUpstream::http().await;
    cloud.set_down(true);
    let toml = basic_config(
        &format!("{}/", cloud.url()),
        None,
        None,
        &format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = {:?}\n\n[buffer]\npath = {:?}\nretry_min = \"50ms\"\nretry_max = \"300ms\"\n",
            token_file.display().to_string(),
            dir.path().join("buffer").display().to_string(),
        ),
    );
    let gw = spawn_gateway(&toml).await;
    let r = plain_client()
        .post(format!("{}/prefront/sendTipMessage/payment", gw.his_url()))
        .header("x-request-id", "forms-dead-1")
        .body(r#"{"patientName":"张三","payAmount":"12.50"}"#)
        .send()
        .await
        .expect("answers");
    let id = r
        .headers()
        .get("x-prefront-queued")
        .and_then(|v| v.to_str().ok())
        .expect("buffered while the cloud is down")
        .to_string();
    cloud.respond(
        "/prefront/sendTipMessage/payment",
        400,
        r#"{"error":"refused"}"#,
    );
    cloud.set_down(false);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while message_state(&gw, &id).await != "dead" {
        assert!(
            std::time::Instant::now() < deadline,
            "message {id} never died"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cloud.respond("/prefront/sendTipMessage/payment", 503, "busy");
    (gw, cloud, id, dir)
}

/// `queued`, `dead`, or `gone` (404), from the JSON API with the token.
async fn message_state(gw: &TestGateway, id: &str) -> String {
    let r = plain_client()
        .get(gw.admin_url(&format!("/api/queue/messages/{id}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("the API answers");
    if r.status() == 404 {
        return "gone".into();
    }
    let v = support::read_json(r).await;
    v["state"].as_str().unwrap_or_default().to_string()
}

/// The record id of the queued message with `request_id`.
async fn queued_id_of(gw: &TestGateway, request_id: &str) -> String {
    let r = plain_client()
        .get(gw.admin_url("/api/queue/messages?dead=false"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("the API answers");
    let v = support::read_json(r).await;
    v["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["request_id"] == request_id)
        .and_then(|m| m["id"].as_u64())
        .unwrap_or_else(|| panic!("{request_id} is queued: {v}"))
        .to_string()
}

/// The form key the status page embeds.
async fn form_key_of_page(gw: &TestGateway) -> String {
    let page = plain_client()
        .get(gw.admin_url("/status"))
        .send()
        .await
        .expect("status answers")
        .text()
        .await
        .expect("a page");
    let at = page
        .find(r#"name="form_key" value=""#)
        .unwrap_or_else(|| panic!("the page has a form key:\n{page}"));
    let rest = &page[at + r#"name="form_key" value=""#.len()..];
    rest[..rest.find('"').expect("a closed value")].to_string()
}

/// The status page's buttons post forms: without this process's form key a form post is
/// refused (403) and nothing changes, as is a call from another web page; a wrong token changes
/// nothing either; the right key and token retry and drop, answered 303 to the page with a
/// notice. The JSON API is unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_forms_need_the_form_key_and_the_token() {
    let (gw, _cloud, id, _dir) = gateway_with_a_dead_letter().await;
    let client = form_client();
    let post = |path: String, body: String| {
        client
            .post(gw.admin_url(&path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let retry = format!("/api/queue/messages/{id}/retry");
    let drop = format!("/api/queue/messages/{id}/drop");

    // No form key, a wrong one, an empty one: 403, nothing changed.
    for body in [
        format!("token={TOKEN}"),
        format!("form_key=0000&token={TOKEN}"),
        format!("form_key=&token={TOKEN}"),
    ] {
        for path in [&retry, &drop] {
            let r = post(path.clone(), body.clone()).await.expect("answers");
            assert_eq!(r.status(), 403, "{path} {body}");
            assert!(r
                .text()
                .await
                .unwrap_or_default()
                .contains("Nothing was changed"));
        }
    }
    assert_eq!(message_state(&gw, &id).await, "dead");
    // A call from a web page that is not a form, with a token or without: refused too.
    for bearer in [true, false] {
        let mut req = client
            .post(gw.admin_url(&retry))
            .header("origin", "http://evil.example")
            .header("content-type", "text/plain")
            .body("x");
        if bearer {
            req = req.bearer_auth(TOKEN);
        }
        assert_eq!(req.send().await.expect("answers").status(), 403);
    }
    assert_eq!(message_state(&gw, &id).await, "dead");

    // The page's key with a wrong token or none: back to the page with a notice; nothing changed.
    let key = form_key_of_page(&gw).await;
    assert_eq!(key.len(), 64, "{key}");
    for body in [
        format!("form_key={key}&token=wrong"),
        format!("form_key={key}"),
    ] {
        let r = post(drop.clone(), body).await.expect("answers");
        assert_eq!(r.status(), 303);
        assert_eq!(
            r.headers().get("location").and_then(|v| v.to_str().ok()),
            Some("/status?done=token")
        );
    }
    assert_eq!(message_state(&gw, &id).await, "dead");
    let page = plain_client()
        .get(gw.admin_url("/status?done=token"))
        .send()
        .await
        .expect("answers")
        .text()
        .await
        .expect("a page");
    assert!(page.contains(r#"data-notice="token""#), "{page}");

    // Key and token: retried (back in the queue), then dropped.
    let ok = format!("form_key={key}&token={TOKEN}");
    let r = post(retry.clone(), ok.clone()).await.expect("answers");
    assert_eq!(r.status(), 303);
    // Back at the tail of its queue, under a new record id (the message id stays): the notice
    // names the id it has now.
    assert_eq!(message_state(&gw, &id).await, "gone");
    let old = id;
    let id = queued_id_of(&gw, "forms-dead-1").await;
    assert_ne!(id, old);
    assert_eq!(
        r.headers().get("location").and_then(|v| v.to_str().ok()),
        Some(format!("/status?done=retried-{id}").as_str())
    );
    let retry = format!("/api/queue/messages/{id}/retry");
    let drop = format!("/api/queue/messages/{id}/drop");
    let r = post(retry.clone(), ok.clone()).await.expect("answers");
    assert_eq!(
        r.headers().get("location").and_then(|v| v.to_str().ok()),
        Some(format!("/status?done=notdead-{id}").as_str()),
        "a queued message is not retried"
    );
    assert_eq!(message_state(&gw, &id).await, "queued");
    let r = post(drop.clone(), ok.clone()).await.expect("answers");
    assert_eq!(
        r.headers().get("location").and_then(|v| v.to_str().ok()),
        Some(format!("/status?done=dropped-{id}").as_str())
    );
    assert_eq!(message_state(&gw, &id).await, "gone");
    let r = post(drop.clone(), ok.clone()).await.expect("answers");
    assert_eq!(
        r.headers().get("location").and_then(|v| v.to_str().ok()),
        Some(format!("/status?done=missing-{id}").as_str())
    );
    // A body past the limit is not read.
    let r = post(retry.clone(), format!("{ok}&pad={}", "x".repeat(8192)))
        .await
        .expect("answers");
    assert_eq!(r.status(), 413);

    // The JSON API as before: the bearer token, JSON answers; a form body with a bearer token is
    // an API call, not a form.
    let r = client
        .post(gw.admin_url(&retry))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("")
        .send()
        .await
        .expect("answers");
    assert_eq!(r.status(), 403, "no bearer: a form, without a key");
    let r = client
        .post(gw.admin_url(&retry))
        .bearer_auth(TOKEN)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("")
        .send()
        .await
        .expect("answers");
    assert_eq!(r.status(), 404, "the API's own answer");
    assert_eq!(
        support::read_json(r).await["error"],
        format!("no such message {id}")
    );
    let r = client
        .delete(gw.admin_url(&format!("/api/queue/messages/{id}")))
        .send()
        .await
        .expect("answers");
    assert_eq!(r.status(), 401, "DELETE still needs the bearer token");
    gw.shutdown().await;
}
