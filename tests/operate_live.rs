//! The operator's story with the box running (DESIGN.md §8), against the real binary and a
//! simulated cloud on loopback: the cloud is away, reminders and a refund wait in the buffer,
//! one route's message is refused and dead-lettered; `prefront queue …` looks, retries and drops
//! without stopping anything, `prefront trail --key refundNo=…` tells where the refund went; the
//! same through the admin API with curl-like calls (bearer token from `[admin] token_file`, 401
//! without it), every change audited; and once the box is stopped, the same commands print the
//! same from the files. The admin API refuses bad input with 400/404 `{"error"}`, never a panic.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

const PHONE: &str = "13812345678";
const NAME: &str = "张三丰";
const DOWN: &str = r#"{"error":"cloud down"}"#;
const OK: &str = r#"{"success":true,"msg":"成功","code":"10001","data":null}"#;
const TOKEN: &str = "0123456789abcdef0123456789abcdef";
const PHY: &str = "prefront/sendTipMessage/phyReport";
const PAYMENT: &str = "prefront/sendTipMessage/payment";
const LIS: &str = "prefront/sendTipMessage/lisReport";
const REFUND: &str = "prefront/hospitalizationCosts/hisRefund";

/// A config for a cloud at `cloud` with the admin API at `admin`, its token in a 0600 file.
fn write_config(dir: &Path, cloud: SocketAddr, admin: SocketAddr) -> PathBuf {
    let token_file = dir.join("admin.token");
    support::write_secret(&token_file, &format!("{TOKEN}\n"));
    ConfigToml::basic(&format!("http://{cloud}"), None, None, "")
        .set("admin.listen", admin.to_string())
        .set_path("admin.token_file", &token_file)
        .set_path("buffer.path", &dir.join("buffer"))
        .set("buffer.retry_min", "50ms")
        .set("buffer.retry_max", "300ms")
        .write(&dir.join("prefront.toml"))
}

/// One run of `prefront <args> --config <config>`.
struct Run {
    ok: bool,
    out: String,
    err: String,
}

/// `prefront <args> --config <config>`, off the runtime's threads (the simulated cloud runs
/// on them).
async fn cli(config: &Path, args: &[&str]) -> Run {
    let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    all.extend(["--config".to_string(), config.display().to_string()]);
    let out = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        prefront(&refs)
    })
    .await
    .expect("the command ran");
    Run {
        ok: out.status.success(),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `cli`, asserting success; its stdout.
async fn cli_ok(config: &Path, args: &[&str]) -> String {
    let r = cli(config, args).await;
    assert!(r.ok, "prefront {args:?} failed:\n{}{}", r.out, r.err);
    r.out
}

/// Posts a call to the HIS listener; the buffer's record id and the answer's code.
async fn call(gw: &RunningBinary, path: &str, body: &str) -> (String, String) {
    let resp = plain_client()
        .post(format!("{}/{path}", gw.his_url()))
        .body(body.to_string())
        .send()
        .await
        .expect("the gateway answers");
    let queued = resp
        .headers()
        .get("x-prefront-queued")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("{path}: not queued: {:?}", resp.headers()));
    let v = read_json(resp).await;
    (queued, v["code"].as_str().unwrap_or_default().to_string())
}

/// Record ids in `queue list` output, in the order listed.
fn ids(list: &str) -> Vec<String> {
    list.lines()
        .filter(|l| l.contains(" cloud:"))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// The `queue list` line of record `id`.
fn line_of<'a>(list: &'a str, id: &str) -> Option<&'a str> {
    list.lines()
        .find(|l| l.split_whitespace().next() == Some(id))
}

/// Polls `prefront <args>` until its output satisfies `done` (at most 20 s); returns it.
async fn cli_until(config: &Path, args: &[&str], done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = cli_ok(config, args).await;
        if done(&out) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "prefront {args:?} never showed what was expected; last:\n{out}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A client of the admin API: `curl -H "Authorization: Bearer …"`.
struct ApiClient {
    base: String,
    token: Option<&'static str>,
}

impl ApiClient {
    async fn send(&self, method: reqwest::Method, path: &str) -> (u16, Value) {
        let mut req = plain_client().request(method, format!("{}{path}", self.base));
        if let Some(t) = self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("the admin API answers");
        let status = resp.status().as_u16();
        (status, read_json(resp).await)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path).await
    }

    /// Asserts `status` and an `{"error": "…"}` answer; returns the text.
    async fn refused(&self, method: reqwest::Method, path: &str, status: u16) -> String {
        let (got, v) = self.send(method.clone(), path).await;
        assert_eq!(got, status, "{method} {path}: {v}");
        v["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path}: no {{\"error\"}}: {v}"))
            .to_string()
    }
}

/// Waits (at most 10 s) until a log line contains every one of `parts`.
async fn wait_for_log(gw: &RunningBinary, parts: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gw.log().iter().any(|l| parts.iter().all(|p| l.contains(p))) {
        assert!(
            Instant::now() < deadline,
            "no log line with {parts:?}:\n{}",
            gw.log().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_works_the_queue_and_the_trail_with_the_box_running() {
    let dir = TempDir::new("prefront-operate-live");
    let cloud = MockUpstream::http().await;
    cloud.respond_default(503, DOWN);
    let admin = closed_port_addr();
    let config = write_config(dir.path(), cloud.addr(), admin);
    let gw = RunningBinary::start(&config);

    // The cloud is away: reminders and a refund wait in the buffer.
    let patient = |n: u32| {
        format!(r#"{{"hospitalId":"253","patientName":"{NAME}","phone":"{PHONE}","seq":{n}}}"#)
    };
    let mut phy = Vec::new();
    for n in 1..=3 {
        let (id, code) = call(&gw, PHY, &patient(n)).await;
        assert_eq!(code, "10001", "a reminder is the box's to deliver now");
        phy.push(id);
    }
    let (payment, _) = call(&gw, PAYMENT, r#"{"hospitalId":"253","seq":"pay-1"}"#).await;
    let (lis, _) = call(&gw, LIS, r#"{"hospitalId":"253","seq":"lis-1"}"#).await;
    let refund_body = format!(
        r#"{{"hospitalId":"253","refundNo":"RF-1","patientName":"{NAME}","refundFee":"12.50"}}"#
    );
    let (refund, code) = call(&gw, REFUND, &refund_body).await;
    assert_eq!(code, "10002", "a refund waits with 'state unknown'");

    // `queue stats` and `list` with the box running: through the admin API.
    let stats = cli_ok(&config, &["queue", "stats"]).await;
    assert!(stats.contains("total: 6 queued, 0 dead"), "{stats}");
    let row = stats
        .lines()
        .find(|l| l.starts_with(&format!("cloud:{PHY}")))
        .unwrap_or_else(|| panic!("{stats}"));
    assert_eq!(row.split_whitespace().nth(1), Some("3"), "{stats}");
    let list = cli_ok(&config, &["queue", "list"]).await;
    let all = ids(&list);
    assert_eq!(all.len(), 6, "{list}");
    for id in phy.iter().chain([&payment, &lis, &refund]) {
        assert!(all.contains(id), "{id} listed:\n{list}");
    }
    assert!(
        line_of(&list, &refund).is_some_and(|l| l.contains("key refundNo=RF-1")),
        "{list}"
    );
    // A page at a time: `--limit` and the `--after` the page names.
    let first = cli_ok(&config, &["queue", "list", "--limit", "4"]).await;
    let page1 = ids(&first);
    assert_eq!(page1, all[..4], "{first}");
    let more = format!("(more: --after {}", page1[3]);
    assert!(first.contains(&more), "{first}");
    let second = cli_ok(
        &config,
        &["queue", "list", "--limit", "4", "--after", &page1[3]],
    )
    .await;
    assert_eq!(ids(&second), all[4..], "{second}");
    assert!(!second.contains("(more:"), "{second}");

    // `show`: masked; `--unmasked` is for a stopped box only.
    let shown = cli_ok(&config, &["queue", "show", &phy[0]]).await;
    assert!(shown.contains("state:       queued"), "{shown}");
    assert!(
        shown.contains(&format!("route:       cloud:{PHY}")),
        "{shown}"
    );
    for secret in [PHONE, NAME] {
        assert!(!shown.contains(secret), "`{secret}` shown:\n{shown}");
    }
    let r = cli(&config, &["queue", "show", &phy[0], "--unmasked"]).await;
    assert!(!r.ok, "{}", r.out);
    assert!(r.err.contains("the gateway is running"), "{}", r.err);
    assert!(!r.out.contains(PHONE) && !r.err.contains(PHONE));
    // `salvage` writes into the store the gateway holds: refused, with the reason.
    let r = cli(
        &config,
        &[
            "queue",
            "salvage",
            &dir.path().join("old").display().to_string(),
        ],
    )
    .await;
    assert!(!r.ok);
    assert!(r.err.contains("salvage needs it stopped"), "{}", r.err);
    // A message that is not there, and one that is not dead: said plainly, exit non-zero.
    let r = cli(&config, &["queue", "show", "999999"]).await;
    assert!(
        !r.ok && r.err.contains("no such message 999999"),
        "{}",
        r.err
    );
    let r = cli(&config, &["queue", "retry", &phy[0]]).await;
    assert!(!r.ok && r.err.contains("is queued, not dead"), "{}", r.err);

    // The cloud refuses two routes' messages for good (HTTP 400): they go to the dead letters.
    let refused = r#"{"error":"bad request"}"#;
    cloud.respond(&format!("/{PAYMENT}"), 400, refused);
    cloud.respond(&format!("/{LIS}"), 400, refused);
    let dead = cli_until(&config, &["queue", "list", "--dead"], |out| {
        ids(out).len() == 2
    })
    .await;
    assert!(
        line_of(&dead, &payment).is_some_and(|l| l.contains("DEAD: the cloud refused it")),
        "{dead}"
    );
    assert!(line_of(&dead, &lis).is_some(), "{dead}");
    let stats = cli_ok(&config, &["queue", "stats"]).await;
    assert!(stats.contains("total: 4 queued, 2 dead"), "{stats}");

    // The operator retries the payment reminder (the cloud will take it now) and drops the
    // second phyReport reminder, with the CLI; the lisReport one and the third reminder below
    // with the API.
    cloud.respond(&format!("/{PAYMENT}"), 503, DOWN);
    let out = cli_ok(&config, &["queue", "retry", &payment]).await;
    let requeued = out
        .strip_prefix(&format!("record {payment} is queued again as record "))
        .map(|id| id.trim().to_string())
        .unwrap_or_else(|| panic!("{out}"));
    // The id the CLI names is the one the message has now.
    let shown = cli_ok(&config, &["queue", "show", &requeued]).await;
    assert!(shown.contains("state:       queued"), "{shown}");
    let out = cli_ok(&config, &["queue", "drop", &phy[1]]).await;
    assert_eq!(out, format!("record {} dropped\n", phy[1]));
    let r = cli(&config, &["queue", "show", &phy[1]]).await;
    assert!(!r.ok && r.err.contains("no such message"), "{}", r.err);
    wait_for_log(
        &gw,
        &[
            "audit",
            &format!("message {payment} queued again as {requeued}"),
            "peer=127.0.0.1",
        ],
    )
    .await;
    wait_for_log(&gw, &["audit", &format!("message {} dropped", phy[1])]).await;

    // The same operations through the admin API, with the token (and not without it).
    let api = ApiClient {
        base: format!("http://{admin}"),
        token: Some(TOKEN),
    };
    let anonymous = ApiClient {
        base: api.base.clone(),
        token: None,
    };
    let wrong = ApiClient {
        base: api.base.clone(),
        token: Some("not-the-token-at-all-000000000000"),
    };
    for c in [&anonymous, &wrong] {
        for path in ["/api/queue", "/api/queue/messages", "/api/trail"] {
            let e = c.refused(reqwest::Method::GET, path, 401).await;
            assert!(e.contains("Bearer"), "{e}");
        }
        c.refused(
            reqwest::Method::DELETE,
            &format!("/api/queue/messages/{}", phy[2]),
            401,
        )
        .await;
    }
    let (status, q) = api.get("/api/queue").await;
    assert_eq!(status, 200, "{q}");
    let phy_route = q["routes"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["route"] == format!("cloud:{PHY}")))
        .unwrap_or_else(|| panic!("{q}"));
    assert_eq!(phy_route["queued"], 2, "{q}");
    let (status, m) = api.get("/api/queue/messages?dead=true").await;
    assert_eq!(status, 200, "{m}");
    let dead_ids: Vec<String> = m["messages"]
        .as_array()
        .map(|a| a.iter().map(|m| m["id"].to_string()).collect())
        .unwrap_or_default();
    assert_eq!(dead_ids, std::slice::from_ref(&lis), "{m}");
    let (status, m) = api.get(&format!("/api/queue/messages/{}", phy[2])).await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(m["state"], "queued");
    let body = m["body"].as_str().unwrap_or_default();
    assert!(
        body.contains("seq") && !body.contains(PHONE) && !body.contains(NAME),
        "{m}"
    );
    cloud.respond(&format!("/{LIS}"), 503, DOWN);
    let (status, v) = api
        .send(
            reqwest::Method::POST,
            &format!("/api/queue/messages/{lis}/retry"),
        )
        .await;
    assert_eq!((status, v["state"].as_str()), (200, Some("queued")), "{v}");
    let e = api
        .refused(
            reqwest::Method::POST,
            &format!("/api/queue/messages/{lis}/retry"),
            404,
        )
        .await;
    assert!(
        e.contains(&lis),
        "a retried message leaves the dead letters: {e}"
    );
    let (status, v) = api
        .send(
            reqwest::Method::DELETE,
            &format!("/api/queue/messages/{}", phy[2]),
        )
        .await;
    assert_eq!((status, v["state"].as_str()), (200, Some("dropped")), "{v}");
    let (status, v) = api
        .send(reqwest::Method::POST, "/api/queue/retry-dead")
        .await;
    assert_eq!((status, &v["retried"]), (200, &Value::from(0)), "{v}");
    wait_for_log(&gw, &["audit", &format!("message {lis} queued again as ")]).await;
    wait_for_log(&gw, &["audit", &format!("message {} dropped", phy[2])]).await;
    wait_for_log(&gw, &["audit", "0 dead message(s) queued again"]).await;
    let stats = cli_ok(&config, &["queue", "stats"]).await;
    assert!(stats.contains("total: 4 queued, 0 dead"), "{stats}");

    // The cloud comes back: everything left is delivered; the dropped reminders never were.
    cloud.respond(&format!("/{PAYMENT}"), 200, OK);
    cloud.respond(&format!("/{LIS}"), 200, OK);
    cloud.respond_default(200, OK);
    let stats = cli_until(&config, &["queue", "stats"], |out| {
        out.contains("total: 0 queued, 0 dead")
    })
    .await;
    for gone in [r#""seq":2"#, r#""seq":3"#] {
        assert!(
            !cloud
                .requests()
                .iter()
                .any(|r| r.body_text().contains(gone)),
            "a dropped reminder ({gone}) was sent"
        );
    }
    for sent in [r#""seq":1"#, "pay-1", "lis-1", "RF-1"] {
        assert!(
            cloud
                .requests()
                .iter()
                .any(|r| r.body_text().contains(sent)),
            "{sent} was delivered"
        );
    }

    // Where is refund RF-1? Received, queued, (retried,) delivered with the cloud's answer code.
    let trail = cli_until(&config, &["trail", "--key", "refundNo=RF-1"], |out| {
        out.contains("delivered (10001)")
    })
    .await;
    assert!(trail.contains(REFUND), "{trail}");
    assert!(trail.contains("history   received → queued → "), "{trail}");
    assert!(trail.contains("outcome   delivered (HTTP 200"), "{trail}");
    assert!(trail.contains("key       refundNo=RF-1"), "{trail}");
    assert!(trail.ends_with("1 entry (newest first)\n"), "{trail}");
    let json = cli_ok(&config, &["trail", "--key", "refundNo=RF-1", "--json"]).await;
    let v: Value = serde_json::from_str(&json).expect("--json prints JSON");
    let e = &v["entries"][0];
    assert_eq!(e["outcome"], "delivered", "{v}");
    assert_eq!(e["answer_code"], "10001", "{v}");
    assert_eq!(e["id"].to_string(), refund, "{v}");
    let events: Vec<&str> = e["history"]
        .as_array()
        .map(|h| h.iter().filter_map(|s| s["event"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(events.first().copied(), Some("received"), "{v}");
    assert_eq!(events.get(1).copied(), Some("queued"), "{v}");
    assert_eq!(events.last().copied(), Some("delivered"), "{v}");
    // The API serves the same entries.
    let (status, api_trail) = api.get("/api/trail?key=refundNo%3DRF-1").await;
    assert_eq!(status, 200);
    assert_eq!(api_trail, v);
    // What the operators did, and what became of the dropped reminders.
    let dropped = cli_until(&config, &["trail", "--outcome", "dropped"], |out| {
        out.ends_with("2 entries (newest first)\n")
    })
    .await;
    assert!(
        dropped.contains("dropped (by the operator at 127.0.0.1)"),
        "{dropped}"
    );
    let audit = cli_ok(&config, &["trail", "--outcome", "audit"]).await;
    for action in [
        "action    retry: message",
        "action    drop: message",
        "action    retry-dead",
    ] {
        assert!(audit.contains(action), "{action}:\n{audit}");
    }
    assert!(audit.contains("by        127.0.0.1"), "{audit}");
    let everything = cli_ok(&config, &["trail", "--limit", "1000"]).await;
    for secret in [PHONE, NAME] {
        assert!(
            !everything.contains(secret),
            "`{secret}` in the trail:\n{everything}"
        );
    }

    // Stopped, the same commands print the same, from the store and the trail's files.
    let list_dead = cli_ok(&config, &["queue", "list", "--dead"]).await;
    let (status, _) = gw.terminate();
    assert!(status.success());
    assert_eq!(cli_ok(&config, &["queue", "stats"]).await, stats);
    assert_eq!(
        cli_ok(&config, &["queue", "list", "--dead"]).await,
        list_dead
    );
    assert_eq!(
        cli_ok(&config, &["trail", "--key", "refundNo=RF-1"]).await,
        trail
    );
    assert_eq!(
        cli_ok(&config, &["trail", "--key", "refundNo=RF-1", "--json"]).await,
        json
    );
    let r = cli(&config, &["trail", "--since", "tomorrow"]).await;
    assert!(
        !r.ok && r.err.contains("`since` is an RFC 3339 time"),
        "{}",
        r.err
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_refuses_bad_input_with_an_error_never_a_panic() {
    let dir = TempDir::new("prefront-api-input");
    let cloud = MockUpstream::http().await;
    cloud.respond_default(503, DOWN);
    let admin = closed_port_addr();
    let config = write_config(dir.path(), cloud.addr(), admin);
    let gw = RunningBinary::start(&config);
    let (queued, _) = call(&gw, PHY, r#"{"seq":1}"#).await;
    let api = ApiClient {
        base: format!("http://{admin}"),
        token: Some(TOKEN),
    };
    use reqwest::Method;
    let cases: &[(Method, &str, u16)] = &[
        (Method::GET, "/api/queue/messages/999999", 404),
        (Method::GET, "/api/queue/messages/not-a-number", 404),
        (Method::DELETE, "/api/queue/messages/999999", 404),
        (Method::POST, "/api/queue/messages/999999/retry", 404),
        (Method::GET, "/api/nothing", 404),
        (Method::GET, "/api/queue/messages?limit=abc", 400),
        (Method::GET, "/api/queue/messages?limit=-1", 400),
        (Method::GET, "/api/queue/messages?limit=0", 400),
        (Method::GET, "/api/queue/messages?limit=1000000", 400),
        (
            Method::GET,
            "/api/queue/messages?limit=99999999999999999999999",
            400,
        ),
        (Method::GET, "/api/queue/messages?after=x", 400),
        (Method::GET, "/api/queue/messages?dead=maybe", 400),
        (Method::GET, "/api/queue/messages?limit=1&limit=2", 400),
        (Method::GET, "/api/queue/messages?colour=red", 400),
        (Method::GET, "/api/trail?since=yesterday", 400),
        (Method::GET, "/api/trail?since=2999-01-01T00:00:00Z", 400),
        (Method::GET, "/api/trail?since=1h&until=2h", 400),
        (Method::GET, "/api/trail?limit=1000000", 400),
        (Method::GET, "/api/trail?limit=%FF", 400),
        (Method::GET, "/api/trail?key=a&key=b", 400),
        (Method::GET, "/api/trail?route=%0a", 400),
        (Method::PUT, "/api/queue", 405),
        (Method::GET, "/api/queue/retry-dead", 405),
    ];
    for (method, path, status) in cases {
        let e = api.refused(method.clone(), path, *status).await;
        assert!(!e.is_empty(), "{method} {path}");
    }
    let long = format!("/api/trail?request_id={}", "x".repeat(4000));
    api.refused(Method::GET, &long, 400).await;
    let e = api
        .refused(
            Method::POST,
            &format!("/api/queue/messages/{queued}/retry"),
            409,
        )
        .await;
    assert!(e.contains("not dead"), "{e}");
    // Still serving, and nothing panicked.
    let (status, _) = api.get("/api/queue").await;
    assert_eq!(status, 200);
    let (status, _) = api.get("/api/trail?limit=1000&since=1h").await;
    assert_eq!(status, 200);
    let (_, log) = gw.terminate();
    assert!(
        !log.iter().any(|l| l.contains("panicked")),
        "{}",
        log.join("\n")
    );
}
