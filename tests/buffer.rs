//! Store-and-forward as the hospital lives it: the cloud goes away, the HIS keeps pushing, the
//! box acknowledges only what is on disk, and everything arrives once the cloud is back — in
//! order, once, with business keys deduplicated and poison messages out of the way.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

const DOWN: &str = "<html>503 Service Unavailable</html>";
const OK: &str = r#"{"success":true,"msg":"成功","code":"10001"}"#;

/// The cloud at `cloud_url`, the buffer in `dir` with a short backoff so outages resolve within
/// a test's patience.
fn config(cloud_url: &str, dir: &TempDir) -> ConfigToml {
    ConfigToml::basic(cloud_url, None, None, "")
        .set_path("buffer.path", &dir.path().join("buffer"))
        .set("buffer.retry_min", "50ms")
        .set("buffer.retry_max", "400ms")
        .set("admin.listen", "127.0.0.1:0")
}

/// A gateway with [`config`], changed by `patch`.
async fn gateway(
    cloud: &MockUpstream,
    patch: impl FnOnce(ConfigToml) -> ConfigToml,
) -> TestGateway {
    gateway_at(&cloud.url(), patch).await
}

async fn gateway_at(cloud_url: &str, patch: impl FnOnce(ConfigToml) -> ConfigToml) -> TestGateway {
    let dir = TempDir::new("prefront-buffer-test");
    let toml = patch(config(cloud_url, &dir)).render();
    let mut gw = spawn_gateway(&toml).await;
    gw.buffer_dir = Some(dir);
    gw
}

/// `POST <HIS listener>/<path>` with `body`, which must be answered with HTTP 200.
fn his_call(gw: &TestGateway, path: &str, body: &Value) -> Call {
    post(format!("{}/{path}", gw.his_url()))
        .body_json(body)
        .expect_status(200)
}

fn posts(cloud: &MockUpstream) -> Vec<Recorded> {
    cloud
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect()
}

/// The cloud's POSTs once there are `n` (or what there is after `within`: the caller judges).
async fn wait_for_posts(cloud: &MockUpstream, n: usize, within: Duration) -> Vec<Recorded> {
    let _ = Poll::new(within, format!("{n} POSTs at the cloud"))
        .try_until(async || posts(cloud).len() >= n)
        .await;
    posts(cloud)
}

/// Whether every route's buffer is empty, by `/metrics`.
async fn buffer_empty(gw: &TestGateway) -> bool {
    let m = gw.metrics().await;
    m.lines()
        .filter(|l| l.starts_with("prefront_buffer_depth{"))
        .all(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) == Some(0.0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_down_200_reminders_queued_then_all_delivered_once_in_order() {
    // The cloud is gone: nothing listens at its address.
    let addr = closed_port_addr();
    let gw = gateway_at(&format!("http://{addr}"), |c| c).await;
    let routes = [
        "prefront/sendTipMessage/payment",
        "prefront/sendTipMessage/lisReport",
    ];
    let mut ids = std::collections::HashSet::new();
    for i in 0..200 {
        let path = routes[i % 2];
        let r = his_call(&gw, path, &json!({"hospitalId": "253", "seq": i}))
            .send()
            .await;
        let (queued, error, v) = (r.queued(), r.error_kind(), r.json());
        assert_eq!(error, None, "{v}");
        assert_eq!(v["code"], "10001", "notify calls are accepted: {v}");
        assert_eq!(v["success"], true);
        let id = queued.expect("X-Prefront-Queued on every accepted call");
        assert!(ids.insert(id.to_string()), "ids are unique");
    }
    // The cloud comes back where it was.
    let cloud = MockUpstream::http_at(addr).await;
    cloud.respond_default(200, OK);
    let delivered = wait_for_posts(&cloud, 200, Duration::from_secs(30)).await;
    assert_eq!(delivered.len(), 200, "all 200 delivered, none twice");
    let mut last: HashMap<String, i64> = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    for r in &delivered {
        let seq = r.json()["seq"].as_i64().expect("seq");
        assert!(seen.insert(seq), "delivered once: {seq}");
        let prev = last.insert(r.path.clone(), seq).unwrap_or(-1);
        assert!(
            seq > prev,
            "in order per route: {} after {prev} on {}",
            seq,
            r.path
        );
        let id = r
            .header("x-prefront-message-id")
            .expect("message id for dedup");
        // `<store id>-<sequence>`: the sequence is the one the HIS was given, the random store
        // id makes it unique for ever.
        let (store, seq_part) = id.rsplit_once('-').expect("store-sequence");
        assert!(
            store.len() == 16 && store.bytes().all(|b| b.is_ascii_hexdigit()),
            "{id}"
        );
        assert!(ids.contains(seq_part), "the id the HIS was given: {id}");
    }
    // Once the backlog is gone, calls go straight through again.
    poll_until(Duration::from_secs(10), "an empty buffer", async || {
        buffer_empty(&gw).await
    })
    .await;
    let r = his_call(&gw, routes[0], &json!({"seq": 999})).send().await;
    let (queued, v) = (r.queued(), r.json());
    assert_eq!(
        (queued, v),
        (None, serde_json::from_str::<Value>(OK).expect("json"))
    );
    assert_eq!(posts(&cloud).len(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_fail_fast_while_the_link_is_down() {
    let cloud = MockUpstream::http().await;
    cloud.respond_default(503, DOWN);
    let gw = gateway(&cloud, |c| c).await;
    // The first call finds out; the link is down after it.
    let r = his_call(&gw, "prefront/patient/getPatientInfo", &json!({}))
        .send()
        .await;
    let error = r.error_kind();
    assert_eq!(error, Some("upstream-status"));
    cloud.set_delay(Duration::from_secs(3));
    let started = Instant::now();
    let r = his_call(&gw, "prefront/patient/getPatientInfo", &json!({}))
        .send()
        .await;
    let (queued, error, v) = (r.queued(), r.error_kind(), r.json());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "no waiting for a timeout"
    );
    assert_eq!(
        (queued, error, v["code"].as_str()),
        (None, Some("link-down"), Some("10003"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunds_are_deduplicated_by_key_and_the_real_answer_comes_later() {
    let cloud = MockUpstream::http().await;
    cloud.respond_default(503, DOWN);
    let gw = gateway(&cloud, |c| c).await;
    let path = "prefront/hospitalizationCosts/hisRefund";
    let refund =
        json!({"hospitalId": "253", "refundNo": "RE202611250001", "refundAmount": "12.50"});
    let r = his_call(&gw, path, &refund).send().await;
    let (q1, v) = (r.queued(), r.json());
    assert_eq!(
        (v["code"].as_str(), v["success"].as_bool()),
        (Some("10002"), Some(false)),
        "refunds: state unknown, retry"
    );
    let r = his_call(&gw, path, &refund).send().await;
    let (q2, v) = (r.queued(), r.json());
    assert_eq!(v["code"], "10002");
    assert_eq!(q1, q2, "the same key is not queued twice");
    // A business call without a refund number cannot be deduplicated: not buffered.
    let r = his_call(&gw, path, &json!({"hospitalId": "253"}))
        .send()
        .await;
    let (q, error, v) = (r.queued(), r.error_kind(), r.json());
    assert_eq!(
        (q, error, v["code"].as_str()),
        (None, Some("link-down"), Some("10003"))
    );
    // Non-refund business calls are answered 40004.
    let r = his_call(
        &gw,
        "prefront/patient/cancelInsuranceOrder",
        &json!({"hisTradeId": "T1"}),
    )
    .send()
    .await;
    let (q, v) = (r.queued(), r.json());
    assert_eq!((v["code"].as_str(), q.is_some()), (Some("40004"), true));

    let before = posts(&cloud).len();
    let real = r#"{"success":true,"msg":"退款成功","code":"10001","data":{"refundNo":"RE202611250001","flag_success":"REFUNDED"}}"#;
    cloud.respond_default(200, real);
    // Both messages delivered: wait for the buffer to drain, not for a count of POSTs (a 503'd
    // retry of one route can land in the count while the other route is still waiting).
    poll_until(Duration::from_secs(20), "the buffer drained", async || {
        buffer_empty(&gw).await
    })
    .await;
    let seen = posts(&cloud);
    let refunds: Vec<_> = seen[before..]
        .iter()
        .filter(|r| r.path == format!("/{path}"))
        .collect();
    assert_eq!(refunds.len(), 1, "one refund delivered, not two");
    // With the link up, a retry with the same number gets the recorded answer, and the cloud is
    // not asked a second time (DESIGN.md §3).
    let delivered = posts(&cloud).len();
    let r = his_call(&gw, path, &refund).send().await;
    let (q, error, v) = (r.queued(), r.error_kind(), r.json());
    assert_eq!((q, error), (None, None));
    assert_eq!(v, serde_json::from_str::<Value>(real).expect("json"));
    // Watching for a resend that must not come: a quiet period, not a condition.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        posts(&cloud).len(),
        delivered,
        "the delivered refund is not sent again"
    );
    // The link drops again (a query finds out); the HIS retries with the same number and gets
    // the real answer.
    cloud.respond_default(503, DOWN);
    let r = his_call(&gw, "prefront/patient/getPatientInfo", &json!({}))
        .send()
        .await;
    assert_eq!(r.error_kind(), Some("upstream-status"), "the link is down");
    let r = his_call(&gw, path, &refund).send().await;
    let (q, v) = (r.queued(), r.json());
    assert_eq!(q, None);
    assert_eq!(v, serde_json::from_str::<Value>(real).expect("json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_goes_to_the_dead_letters_and_the_route_moves_on() {
    let cloud = MockUpstream::http().await;
    cloud.respond_default(503, DOWN);
    let gw = gateway(&cloud, |c| c.set("buffer.max_attempts", 3)).await;
    let path = "prefront/sendTipMessage/patientQueue";
    his_call(&gw, path, &json!({"seq": 1})).send().await;
    his_call(&gw, path, &json!({"seq": 2})).send().await;
    // The cloud answers 500 for everything now: the head fails until it runs out of attempts…
    cloud.respond_default(500, "{\"error\":\"boom\"}");
    let tried = posts(&cloud).len();
    poll_until(
        Duration::from_secs(10),
        "a delivery answered 500",
        async || posts(&cloud).len() > tried,
    )
    .await;
    let before = posts(&cloud).len();
    // …then 4xx for this route (refused for good) while the rest of the cloud works.
    cloud.respond(&format!("/{path}"), 400, "{\"error\":\"bad request\"}");
    let r = his_call(&gw, "prefront/sendTipMessage/lisReport", &json!({"seq": 3}))
        .send()
        .await;
    let v = r.json();
    assert_eq!(v["code"], "10001");
    cloud.respond_default(200, OK);
    let seen = wait_for_posts(&cloud, before + 3, Duration::from_secs(20)).await;
    assert!(
        seen.iter()
            .any(|r| r.path == "/prefront/sendTipMessage/lisReport"),
        "other routes are not blocked"
    );
    // The patientQueue route drains into the dead letters instead of blocking forever: a call
    // every 200 ms until one is not queued behind a backlog.
    Poll::new(Duration::from_secs(10), "the patientQueue route to unblock")
        .every(Duration::from_millis(200))
        .until(async || {
            let r = his_call(&gw, path, &json!({"seq": 4})).send().await;
            let (q, v) = (r.queued(), r.json());
            if q.is_none() {
                // No backlog left: the call went straight to the cloud (and was refused with 400).
                assert_eq!(v["code"], "10003");
            }
            q.is_none()
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_refuses_with_40001_before_acknowledging() {
    let cloud = MockUpstream::http().await;
    cloud.respond_default(503, DOWN);
    let gw = gateway(&cloud, |c| c.set("buffer.max_bytes", "4KiB")).await;
    let big = "x".repeat(900);
    let mut accepted = 0;
    let mut refused = None;
    for i in 0..20 {
        let r = his_call(
            &gw,
            "prefront/sendTipMessage/payment",
            &json!({"seq": i, "pad": big}),
        )
        .send()
        .await;
        if r.queued().is_some() {
            accepted += 1;
        } else {
            refused = Some(r);
            break;
        }
    }
    let r = refused.expect("the quota is reached");
    assert_eq!(
        (r.error_kind(), r.json()["code"].as_str()),
        (Some("buffer-full"), Some("40001"))
    );
    assert!(accepted >= 1);
    // Everything accepted is still delivered.
    cloud.respond_default(200, OK);
    let before = posts(&cloud).len();
    poll_until(Duration::from_secs(20), "the buffer drained", async || {
        buffer_empty(&gw).await
    })
    .await;
    assert!(posts(&cloud).len() >= before + accepted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_route_delivery_overrides_the_catalogue() {
    let addr = closed_port_addr();
    let routes = "\n[[cloud.route]]\npath = \"prefront/sendTipMessage/patientQueue\"\ndelivery = \"direct\"\n\n\
                  [[cloud.route]]\npath = \"prefront/patient/genCard\"\ndelivery = \"buffer\"\n";
    let dir = TempDir::new("prefront-buffer-route");
    let toml = config(&format!("http://{addr}"), &dir)
        .merge(routes)
        .render();
    let gw = spawn_gateway(&toml).await;
    // A notify made `direct` is not kept: queue positions are stale by the time the link returns.
    let r = his_call(
        &gw,
        "prefront/sendTipMessage/patientQueue",
        &json!({"seq": 1}),
    )
    .send()
    .await;
    let (q, error, v) = (r.queued(), r.error_kind(), r.json());
    assert_eq!((q, v["code"].as_str()), (None, Some("10003")));
    assert!(
        matches!(error, Some("upstream-connect" | "link-down")),
        "{error:?}"
    );
    // A business call without an idempotency key, made `buffer`: accepted (40004), delivered later.
    let r = his_call(
        &gw,
        "prefront/patient/genCard",
        &json!({"hospitalId": "253"}),
    )
    .send()
    .await;
    let (q, v) = (r.queued(), r.json());
    assert!(q.is_some(), "{v}");
    assert_eq!(v["code"], "40004");
    // Without the override, the same kind of call (no key) fails fast.
    let r = his_call(&gw, "prefront/patient/cancelInsuranceOrder", &json!({}))
        .send()
        .await;
    let (q, v) = (r.queued(), r.json());
    assert_eq!((q, v["code"].as_str()), (None, Some("10003")));
    let cloud = MockUpstream::http_at(addr).await;
    cloud.respond_default(200, OK);
    let seen = wait_for_posts(&cloud, 1, Duration::from_secs(15)).await;
    assert_eq!(seen[0].path, "/prefront/patient/genCard");
    assert!(seen[0].header("x-prefront-message-id").is_some());
}

/// Dead letters hold patient data: they are deleted after `buffer.dead_ttl` (DESIGN.md §8), by
/// the running box.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_expire_after_dead_ttl() {
    let cloud = MockUpstream::http().await;
    cloud.respond_default(503, DOWN);
    let dir = TempDir::new("prefront-dead-ttl");
    let toml = config(&cloud.url(), &dir)
        .set("buffer.dead_ttl", "2s")
        .render();
    let gw = spawn_gateway(&toml).await;
    let path = "prefront/sendTipMessage/patientQueue";
    let r = his_call(&gw, path, &json!({"seq": 1})).send().await;
    let (queued, v) = (r.queued(), r.json());
    assert!(queued.is_some(), "buffered while the cloud is down: {v}");
    // The cloud refuses it for good: a dead letter.
    cloud.respond_default(400, "{\"error\":\"bad request\"}");
    let series = format!("prefront_buffer_dead_letters{{route=\"cloud:{path}\"}}");
    let dead = |m: &str| metric_sample(m, &series).unwrap_or(0.0);
    poll_until(
        Duration::from_secs(15),
        "the call to be dead-lettered",
        async || dead(&gw.metrics().await) >= 1.0,
    )
    .await;
    // Kept for dead_ttl (2 s), then deleted without anyone asking.
    let kept = poll_until(
        Duration::from_secs(15),
        "the dead letter's deletion",
        async || dead(&gw.metrics().await) <= 0.0,
    )
    .await;
    assert!(
        kept >= Duration::from_millis(1500),
        "not before dead_ttl: {kept:?}"
    );
    gw.shutdown().await;
}
