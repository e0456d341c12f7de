//! The relay, as the HIS and the cloud see it: every interface of the specification goes through
//! in both directions unchanged, and every outcome the box raises itself arrives as the caller's
//! own envelope (DESIGN.md §2).

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

fn spec_examples() -> Vec<Value> {
    let text = include_str!("fixtures/spec_examples.json");
    serde_json::from_str(text).expect("fixture is JSON")
}

/// A cloud (HTTPS, trusting the test CA) and a HIS (HTTP) that both echo, and a gateway between.
struct Bench {
    pki: TestPki,
    cloud: MockUpstream,
    his: MockUpstream,
    gw: TestGateway,
}

async fn bench(extra: &str) -> Bench {
    let pki = TestPki::new();
    let cloud = MockUpstream::https(&pki).await;
    let his = MockUpstream::http().await;
    cloud.echo();
    his.echo();
    let toml = basic_config(
        &cloud.url(),
        Some(&pki.ca_pem_path()),
        Some(&format!("{}/his/{{name}}", his.url())),
        extra,
    );
    let gw = spawn_gateway(&toml).await;
    Bench {
        pki,
        cloud,
        his,
        gw,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_his_to_cloud_path_reaches_the_cloud_unchanged_and_the_answer_comes_back() {
    let b = bench("").await;
    let mut paths = std::collections::BTreeSet::new();
    let examples: Vec<Value> = spec_examples()
        .into_iter()
        .filter(|e| e["direction"] == "his_to_cloud")
        .collect();
    for (i, e) in examples.iter().enumerate() {
        let path = e["path"]
            .as_str()
            .expect("his_to_cloud entries have a path");
        paths.insert(path.to_string());
        let body = e["request_example"].clone();
        let r = post(format!("{}/{path}", b.gw.his_url()))
            .content_type("application/json")
            .body(body.to_string())
            .send()
            .await;
        let (status, kind, answer) = (r.status, r.error_kind(), r.json_or_text());
        assert_eq!(status, 200, "{path}");
        assert_eq!(kind, None, "{path}: {answer}");
        let seen = b
            .cloud
            .wait_for_requests(i + 1, Duration::from_secs(5))
            .await;
        let req = seen.last().expect("the cloud got the call");
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, format!("/{path}"), "forwarded to the same path");
        assert_eq!(req.json(), body, "{path}: body forwarded unchanged");
        assert!(req.header("x-request-id").is_some_and(|v| !v.is_empty()));
        assert_eq!(
            answer,
            json!({"success": true, "msg": "成功", "code": "10001",
                   "data": {"path": format!("/{path}"), "body": body}}),
            "{path}: the caller gets the cloud's answer"
        );
    }
    assert_eq!(paths.len(), 44, "all 44 distinct prefront paths walked");
    assert_eq!(b.cloud.request_count(), examples.len());
    assert_eq!(b.his.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cloud_to_his_name_reaches_the_his_unchanged_and_the_answer_comes_back() {
    let b = bench("").await;
    let mut names = std::collections::BTreeSet::new();
    for e in spec_examples()
        .iter()
        .filter(|e| e["direction"] == "cloud_to_his")
    {
        let Some(name) = e["name"].as_str() else {
            continue; // sections the spec gives no name (4.1.1, 5.1.x, 16.1.4, 24.1.7)
        };
        if !names.insert(name.to_string()) {
            continue;
        }
        let body = e["request_example"].clone();
        let r = post(format!("{}/his/{name}", b.gw.cloud_url(false)))
            .content_type("application/json")
            .body(body.to_string())
            .send()
            .await;
        let (status, kind, answer) = (r.status, r.error_kind(), r.json_or_text());
        assert_eq!(status, 200, "{name}");
        assert_eq!(kind, None, "{name}: {answer}");
        let seen = b
            .his
            .wait_for_requests(names.len(), Duration::from_secs(5))
            .await;
        let req = seen.last().expect("the HIS got the call");
        assert_eq!(req.path, format!("/his/{name}"));
        assert_eq!(req.json(), body, "{name}: body forwarded unchanged");
        assert_eq!(
            answer["data"]["body"], body,
            "{name}: the cloud gets the HIS answer"
        );
    }
    assert_eq!(
        names.len(),
        136,
        "all 136 named cloud→HIS interfaces walked"
    );
    assert_eq!(b.cloud.request_count(), 0);
}

#[tokio::test]
async fn the_upstream_answer_is_returned_byte_for_byte() {
    let b = bench("").await;
    let odd = "{ \"data\" : {\"n\": 1.50e0, \"s\":\"\\u5f20\"},\n \"success\":true, \"code\":\"10001\", \"msg\":\"\"}";
    b.cloud
        .respond("/prefront/patient/getPatientInfo", 200, odd);
    let r = post(format!(
        "{}/prefront/patient/getPatientInfo",
        b.gw.his_url()
    ))
    .body("{\"medicalCardNumber\":\"0012\"}")
    .send()
    .await;
    assert_eq!(r.text(), odd);
    assert_eq!(
        b.cloud.requests()[0].body_text(),
        "{\"medicalCardNumber\":\"0012\"}"
    );
}

#[tokio::test]
async fn request_id_is_passed_upstream_and_echoed() {
    let b = bench("").await;
    let url = format!(
        "{}/his/hospital.interface.queryBalance",
        b.gw.cloud_url(false)
    );
    let r = post(&url)
        .header("x-request-id", "cloud-trace-42")
        .body("{}")
        .send()
        .await;
    assert_eq!(r.headers["x-request-id"], "cloud-trace-42");
    assert_eq!(
        b.his.requests()[0].header("x-request-id"),
        Some("cloud-trace-42")
    );
    // A hostile id is not passed on; the box makes its own.
    let r = post(&url)
        .header("x-request-id", "a b\"<script>")
        .body("{}")
        .send()
        .await;
    let id = r.headers["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(id.starts_with("pf-"), "{id}");
    assert_eq!(
        b.his.requests()[1].header("x-request-id"),
        Some(id.as_str())
    );
}

#[tokio::test]
async fn empty_body_is_20001_and_nothing_is_forwarded() {
    let b = bench("").await;
    for url in [
        format!("{}/prefront/patient/genCard", b.gw.his_url()),
        format!(
            "{}/his/hospital.interface.createCard",
            b.gw.cloud_url(false)
        ),
    ] {
        for body in ["", "  \r\n"] {
            let r = post(&url)
                .content_type("application/json")
                .body(body)
                .send()
                .await;
            let (status, kind, v) = (r.status, r.error_kind(), r.json_or_text());
            assert_eq!(status, 200);
            assert_eq!(v["code"], "20001", "{url}");
            assert_eq!(v["success"], false);
            assert!(v.get("data").is_some(), "data stays present");
            assert_eq!(kind, Some("empty-body"));
        }
    }
    assert_eq!(b.cloud.request_count() + b.his.request_count(), 0);
}

#[tokio::test]
async fn not_json_is_20003_with_the_position_and_nothing_is_forwarded() {
    let b = bench("").await;
    let r = post(format!("{}/prefront/patient/genCard", b.gw.his_url()))
        .content_type("application/json")
        .body("{\"name\":\"张三\",}")
        .send()
        .await;
    let (kind, v) = (r.error_kind(), r.json_or_text());
    assert_eq!(v["code"], "20003");
    assert_eq!(kind, Some("invalid-json"));
    let msg = v["msg"].as_str().expect("msg");
    assert!(msg.contains("line 1 column"), "{msg}");
    assert!(
        !msg.contains("张三"),
        "the message never echoes the body: {msg}"
    );
    let r = post(format!(
        "{}/his/hospital.interface.createCard",
        b.gw.cloud_url(false)
    ))
    .content_type("application/json")
    .body(&b"{\"a\":\"\xff\xfe\"}"[..])
    .send()
    .await;
    let (kind, v) = (r.error_kind(), r.json_or_text());
    assert_eq!(v["code"], "20003");
    assert_eq!(kind, Some("invalid-charset"));
    assert_eq!(b.cloud.request_count() + b.his.request_count(), 0);
}

#[tokio::test]
async fn unknown_prefront_path_is_40002() {
    let b = bench("").await;
    for path in ["prefront/patient/nothing", "prefront/"] {
        let r = post(format!("{}/{path}", b.gw.his_url()))
            .content_type("application/json")
            .body("{}")
            .send()
            .await;
        let (status, kind, v) = (r.status, r.error_kind(), r.json_or_text());
        assert_eq!(status, 200, "{path}");
        assert_eq!(v["code"], "40002", "{path}");
        assert_eq!(kind, Some("unknown-path"));
    }
    // Traversal shapes, sent raw (a URL library would normalise them away).
    for path in [
        "/prefront/%2e%2e/patient/genCard",
        "/prefront/patient/../patient/genCard",
    ] {
        let request = post(path).header("Connection", "close").body("{}").raw();
        let text = send_raw(b.gw.his_addr, &request).await;
        assert!(text.starts_with("HTTP/1.1 200"), "{path}: {text}");
        assert!(text.contains("\"40002\""), "{path}: {text}");
    }
    assert_eq!(b.cloud.request_count(), 0);
}

/// Writes `request` on a new connection and reads until the box closes it.
async fn send_raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("answered in time")
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn legacy_spellings_of_a_path_reach_the_canonical_one() {
    let b = bench("").await;
    // Appendix 2's sample client calls http://IP:PORT//prefront/...; case varies in the field.
    for path in [
        "/prefront/patient/genCard",
        "//prefront/patient/genCard",
        "/PREFRONT/Patient/GENCARD",
    ] {
        let url = format!("{}{path}", b.gw.his_url());
        let r = post(url)
            .content_type("application/json")
            .body("{}")
            .send()
            .await;
        let kind = r.error_kind();
        assert_eq!(kind, None, "{path}");
    }
    let seen = b.cloud.requests();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|r| r.path == "/prefront/patient/genCard"));
}

#[tokio::test]
async fn cloud_names_not_configured_are_40003() {
    // No [his] url: only the routed name is served.
    let pki = TestPki::new();
    let cloud = MockUpstream::https(&pki).await;
    let his = MockUpstream::http().await;
    let extra = format!(
        "[[his.route]]\nname = \"hospital.interface.queryBalance\"\nurl = \"{}/balance\"\n\n\
         [[his.route]]\nname = \"hospital.interface.localExtra\"\nurl = \"{}/extra/{{method}}\"\n",
        his.url(),
        his.url()
    );
    let gw = spawn_gateway(&basic_config(
        &cloud.url(),
        Some(&pki.ca_pem_path()),
        None,
        &extra,
    ))
    .await;
    let base = gw.cloud_url(false);
    let r = post(format!("{base}/his/hospital.interface.createCard"))
        .content_type("application/json")
        .body("{}")
        .send()
        .await;
    let (kind, v) = (r.error_kind(), r.json_or_text());
    assert_eq!(v["code"], "40003");
    assert_eq!(kind, Some("not-configured"));
    let r = post(format!("{base}/his/hospital.interface.noSuchThing"))
        .content_type("application/json")
        .body("{}")
        .send()
        .await;
    let (kind, v) = (r.error_kind(), r.json_or_text());
    assert_eq!(v["code"], "40003");
    assert_eq!(kind, Some("unknown-name"));
    let r = post(format!("{base}/his/hospital.interface.queryBalance"))
        .content_type("application/json")
        .body("{}")
        .send()
        .await;
    let kind = r.error_kind();
    assert_eq!(kind, None);
    // A name the spec does not have, routed by the operator (the spec's unnamed sections).
    let r = post(format!("{base}/his/hospital.interface.localExtra"))
        .content_type("application/json")
        .body("{}")
        .send()
        .await;
    let kind = r.error_kind();
    assert_eq!(kind, None);
    let paths: Vec<String> = his.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        vec!["/balance".to_string(), "/extra/localExtra".to_string()]
    );
}

#[tokio::test]
async fn route_override_and_method_placeholder() {
    let other = MockUpstream::http().await;
    let extra = format!(
        "[[his.route]]\nname = \"hospital.interface.createCard\"\nurl = \"{}/ws/{{method}}\"\ntimeout_ms = 2000\n",
        other.url()
    );
    let b = bench(&extra).await;
    let base = b.gw.cloud_url(false);
    post(format!("{base}/his/hospital.interface.createCard"))
        .content_type("application/json")
        .body("{\"a\":1}")
        .send()
        .await;
    post(format!(
        "{base}/his/hospital.inerface.internetHospital.save"
    ))
    .content_type("application/json")
    .body("{\"a\":2}")
    .send()
    .await;
    assert_eq!(other.requests()[0].path, "/ws/createCard");
    assert_eq!(
        b.his.requests()[0].path,
        "/his/hospital.inerface.internetHospital.save"
    );
}

#[tokio::test]
async fn cloud_unreachable_is_10003_at_once() {
    let his = MockUpstream::http().await;
    let dead = closed_port_addr();
    let toml = basic_config(
        &format!("http://{dead}"),
        None,
        Some(&format!("{}/{{name}}", his.url())),
        "",
    );
    let gw = spawn_gateway(&toml).await;
    let started = Instant::now();
    let r = post(format!("{}/prefront/patient/getPatientInfo", gw.his_url()))
        .content_type("application/json")
        .body("{}")
        .send()
        .await;
    let (status, kind, v) = (r.status, r.error_kind(), r.json_or_text());
    assert!(started.elapsed() < Duration::from_secs(3), "answered fast");
    assert_eq!(status, 200);
    assert_eq!(v["code"], "10003");
    assert_eq!(v["success"], false);
    assert_eq!(kind, Some("upstream-connect"));
    let msg = v["msg"].as_str().expect("msg");
    assert!(
        !msg.contains(&dead.port().to_string()),
        "no internals in msg: {msg}"
    );
    assert!(!msg.contains("panicked") && !msg.contains("src/"), "{msg}");
    // The link is now known to be down: the next query is refused without trying.
    let r = post(format!("{}/prefront/reconciliation/query", gw.his_url()))
        .content_type("application/json")
        .body("{}")
        .send()
        .await;
    let (kind, v) = (r.error_kind(), r.json_or_text());
    assert_eq!(
        (v["code"].as_str(), kind),
        (Some("10003"), Some("link-down"))
    );
    // A 14.1.2 query answers in its own {message, data} form.
    let r = post(format!(
        "{}/prefront/reconciliation/queryByHospitalRefundNo",
        gw.his_url()
    ))
    .content_type("application/json")
    .body("{}")
    .send()
    .await;
    let v = r.json_or_text();
    assert!(v["message"].is_string() && v.get("msg").is_none(), "{v}");
    // A 21.x upload (notify) is kept for later and acknowledged in its own
    // {success, message, status} form.
    let r = post(format!("{}/prefront/yyghService/hospital", gw.his_url()))
        .content_type("application/json")
        .body("{\"hosCode\":\"253\"}")
        .send()
        .await;
    let v = r.json_or_text();
    assert!(r.queued().is_some(), "{v}");
    assert_eq!(v["success"], true, "{v}");
    assert!(v["message"].is_string() && v.get("msg").is_none(), "{v}");
}

#[tokio::test]
async fn slow_upstream_times_out_within_the_configured_time() {
    let his = MockUpstream::http().await;
    his.set_delay(Duration::from_secs(4));
    let extra = format!(
        "[[his.route]]\nname = \"hospital.interface.queryWaitPay\"\nurl = \"{}/slow\"\ntimeout_ms = 400\n",
        his.url()
    );
    let b = bench(&extra).await;
    let started = Instant::now();
    let r = post(format!(
        "{}/his/hospital.interface.queryWaitPay",
        b.gw.cloud_url(false)
    ))
    .content_type("application/json")
    .body("{}")
    .send()
    .await;
    let (kind, v) = (r.error_kind(), r.json_or_text());
    let took = started.elapsed();
    assert_eq!(v["code"], "10003");
    assert_eq!(kind, Some("upstream-timeout"));
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_secs(3),
        "{took:?}"
    );
    drop(b);
}

#[tokio::test]
async fn upstream_errors_and_garbage_answers_are_10003() {
    let b = bench("").await;
    b.cloud
        .respond("/prefront/patient/genCard", 502, "<html>bad gateway</html>");
    b.cloud.respond(
        "/prefront/patient/getPatientInfo",
        200,
        "<html>captive portal</html>",
    );
    let r = post(format!(
        "{}/prefront/patient/getPatientInfo",
        b.gw.his_url()
    ))
    .content_type("application/json")
    .body("{}")
    .send()
    .await;
    let (kind, v) = (r.error_kind(), r.json_or_text());
    assert_eq!(
        (v["code"].as_str(), kind),
        (Some("10003"), Some("upstream-invalid-answer"))
    );
    // A 502 (which also marks the link down for what follows).
    let r = post(format!("{}/prefront/patient/genCard", b.gw.his_url()))
        .content_type("application/json")
        .body("{}")
        .send()
        .await;
    let (kind, v) = (r.error_kind(), r.json_or_text());
    assert_eq!(
        (v["code"].as_str(), kind),
        (Some("10003"), Some("upstream-status"))
    );
    assert!(v["msg"].as_str().is_some_and(|m| m.contains("502")));
}

#[tokio::test]
async fn a_soap_route_to_a_dead_his_is_10003() {
    let dead = closed_port_addr();
    let extra = format!(
        "[[his.route]]\nname = \"hospital.interface.pacsReportDcm\"\nkind = \"soap\"\n\
         url = \"http://{dead}/HisService.asmx\"\noperation = \"pacsReportDcm\"\n"
    );
    let b = bench(&extra).await;
    let r = post(format!(
        "{}/his/hospital.interface.pacsReportDcm",
        b.gw.cloud_url(false)
    ))
    .content_type("application/json")
    .body("{}")
    .send()
    .await;
    let (kind, v) = (r.error_kind(), r.json_or_text());
    assert_eq!(v["code"], "10003");
    assert_eq!(kind, Some("upstream-connect"));
    assert_eq!(
        b.his.request_count(),
        0,
        "the HTTP default route is not used for a SOAP-routed name"
    );
}

#[tokio::test]
async fn oversized_body_is_413_and_nothing_is_forwarded() {
    let b = bench("").await;
    let big = format!("{{\"x\":\"{}\"}}", "a".repeat(1 << 20));
    let r = post(format!("{}/prefront/patient/genCard", b.gw.his_url()))
        .body(big.clone())
        .send()
        .await;
    assert_eq!(r.status, 413);
    // Chunked (no Content-Length): refused while reading, over a raw socket.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(b.gw.his_addr)
        .await
        .expect("connect");
    let head = post("/prefront/patient/genCard")
        .header("Transfer-Encoding", "chunked")
        .raw();
    s.write_all(&head).await.expect("write");
    let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "a".repeat(64 * 1024));
    for _ in 0..20 {
        if s.write_all(chunk.as_bytes()).await.is_err() {
            break; // the gateway gave up reading: fine
        }
    }
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("answered in time")
        .expect("read");
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert_eq!(b.cloud.request_count(), 0);
}

#[tokio::test]
async fn gbk_callers_are_decoded_and_answered_in_gbk() {
    let b = bench("").await;
    let (gbk, _, _) = encoding_rs::GB18030.encode("{\"name\":\"张三\",\"hospitalId\":\"253\"}");
    let r = post(format!("{}/prefront/patient/genCard", b.gw.his_url()))
        .content_type("application/json; charset=GBK")
        .body(gbk.into_owned())
        .send()
        .await;
    let ct = r.headers["content-type"]
        .to_str()
        .expect("ascii")
        .to_ascii_lowercase();
    assert!(ct.contains("charset=gbk"), "{ct}");
    let (text, _, bad) = encoding_rs::GB18030.decode(&r.body);
    assert!(!bad);
    let v: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["data"]["body"]["name"], "张三");
    // Upstream always gets UTF-8.
    assert_eq!(b.cloud.requests()[0].json()["name"], "张三");
}

#[tokio::test]
async fn wrong_methods_and_paths_are_refused_without_forwarding() {
    let b = bench("").await;
    let r = get(format!("{}/prefront/patient/genCard", b.gw.his_url()))
        .send()
        .await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
    let r = get(format!("{}/his/x", b.gw.cloud_url(false))).send().await;
    assert_eq!(r.status, 405);
    let r = post(format!("{}/etc/passwd", b.gw.his_url())).send().await;
    assert_eq!(r.status, 404);
    assert_eq!(b.cloud.request_count() + b.his.request_count(), 0);
    let _ = &b.pki;
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_call_finish() {
    let b = bench("").await;
    b.cloud.set_delay(Duration::from_millis(600));
    let url = format!("{}/prefront/patient/getPatientInfo", b.gw.his_url());
    let call = tokio::spawn(async move {
        post(url)
            .content_type("application/json")
            .body("{}")
            .send()
            .await
    });
    b.cloud.wait_for_requests(1, Duration::from_secs(5)).await;
    let Bench { gw, cloud, .. } = b;
    gw.shutdown().await;
    let r = call.await.expect("task");
    let (status, kind, v) = (r.status, r.error_kind(), r.json_or_text());
    assert_eq!(status, 200);
    assert_eq!(kind, None, "{v}");
    assert_eq!(v["success"], true);
    drop(cloud);
}
