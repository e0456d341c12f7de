//! Per-listener IP allowlists (DESIGN.md §2 and §7.8): a TCP peer that is neither in the
//! listener's `allow` list nor a trusted proxy is refused at accept — the connection is closed
//! before a byte is read, so it never gets an answer and never holds a slot; a caller behind a
//! trusted proxy gets HTTP 403 with no body once its X-Forwarded-For is read (right to left).
//! Nothing is forwarded either way.

mod support;

use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A HIS → cloud interface of the catalogue.
const GET_PATIENT_INFO: &str = "/prefront/patient/getPatientInfo";
/// A cloud → HIS name of the catalogue.
const QUERY_BALANCE: &str = "hospital.interface.queryBalance";
const REQUEST_BODY: &str = r#"{"hospitalId":"H0001","patientId":"P-allowlist-test"}"#;
/// What the mock cloud answers for GET_PATIENT_INFO; recognisable so the test can tell it apart
/// from anything the gateway could make up.
const CLOUD_ANSWER: &str =
    r#"{"success":true,"msg":"成功","code":"10001","data":{"marker":"from-mock-cloud"}}"#;
const HIS_ANSWER: &str =
    r#"{"success":true,"msg":"成功","code":"10001","data":{"marker":"from-mock-his"}}"#;

/// How long to keep watching a mock for a request that must not arrive.
const QUIET: Duration = Duration::from_millis(300);

/// A listener table body on IPv4 loopback letting loopback in.
const LOOPBACK_LISTENER: &str = r#"listen = "127.0.0.1:0"
allow = ["127.0.0.0/8", "::1/128"]"#;

/// A full configuration with the given `[his_listener]` and `[cloud_listener]` bodies, the
/// cloud at `cloud` and the HIS default route at `his`.
fn config_with(
    his_listener: &str,
    cloud_listener: &str,
    cloud: &MockUpstream,
    his: &MockUpstream,
) -> String {
    format!(
        r#"
[his_listener]
{his_listener}

[cloud_listener]
{cloud_listener}

[cloud]
base_url = "{cloud_url}"
timeout_ms = 5000

[his]
kind = "http"
url = "{his_url}/his/{{name}}"
timeout_ms = 5000

[log]
level = "info"
"#,
        cloud_url = cloud.url(),
        his_url = his.url(),
    )
}

/// Mocks with recognisable answers on the paths the tests call.
async fn mocks() -> (MockUpstream, MockUpstream) {
    let cloud = MockUpstream::http().await;
    cloud.respond(GET_PATIENT_INFO, 200, CLOUD_ANSWER);
    let his = MockUpstream::http().await;
    his.respond(&format!("/his/{QUERY_BALANCE}"), 200, HIS_ANSWER);
    (cloud, his)
}

/// The test's call to `url`: [`REQUEST_BODY`] as the HIS sends it, with an `X-Forwarded-For`
/// header when given.
fn call(url: &str, forwarded_for: Option<&str>) -> Call {
    post(url)
        .json_type()
        .body(REQUEST_BODY)
        .header_opt("x-forwarded-for", forwarded_for)
}

/// Asserts the caller was let through: HTTP 200 and exactly the cloud mock's answer, and the
/// mock got the caller's body on the catalogue path.
async fn assert_relayed_to_cloud(resp: Reply, cloud: &MockUpstream, expected: usize) {
    let (status, body) = (resp.status, resp.text());
    assert_eq!(status, 200, "allowed caller must be relayed; body: {body}");
    assert_eq!(
        body, CLOUD_ANSWER,
        "caller must get the cloud's answer unchanged"
    );
    let reqs = cloud
        .wait_for_requests(expected, Duration::from_secs(5))
        .await;
    assert_eq!(reqs.len(), expected, "cloud must have received the call");
    let last = reqs.last().expect("at least one request");
    assert_eq!(last.method, "POST");
    assert_eq!(last.path, GET_PATIENT_INFO);
    assert_eq!(
        last.json(),
        serde_json::from_str::<serde_json::Value>(REQUEST_BODY).expect("test body is JSON"),
        "the caller's JSON must reach the cloud"
    );
}

/// Asserts the box closed the connection without answering (refused at accept).
fn assert_refused_at_accept(r: Result<Reply, reqwest::Error>, what: &str) {
    match r {
        Ok(resp) => panic!(
            "{what}: the connection must be closed at accept, without an answer; got HTTP {}",
            resp.status
        ),
        Err(e) => assert!(
            !e.is_timeout(),
            "{what}: the box must close the connection at once, not let it time out: {e}"
        ),
    }
}

/// Asserts HTTP 403 with an empty body.
fn assert_forbidden(resp: Reply, what: &str) {
    let (status, body) = (resp.status, resp.body);
    assert_eq!(
        status,
        403,
        "{what}: expected 403, got {status} with body {:?}",
        String::from_utf8_lossy(&body)
    );
    assert!(
        body.is_empty(),
        "{what}: a 403 carries no body, got {:?}",
        String::from_utf8_lossy(&body)
    );
}

/// Asserts `mock` receives no request within [`QUIET`].
async fn assert_nothing_forwarded(mock: &MockUpstream, what: &str) {
    let reqs = mock.wait_for_requests(1, QUIET).await;
    assert!(
        reqs.is_empty(),
        "{what}: nothing may be forwarded, but the mock received {:?}",
        reqs.iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect::<Vec<_>>()
    );
}

fn his_call_url(gw: &TestGateway) -> String {
    format!("{}{GET_PATIENT_INFO}", gw.his_url())
}

// ---------------------------------------------------------------------------
// Plain allow / deny on the TCP peer
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_caller_is_relayed_to_the_cloud() {
    let (cloud, his) = mocks().await;
    let gw = spawn_gateway(&basic_config(
        &cloud.url(),
        None,
        Some(&format!("{}/his/{{name}}", his.url())),
        "",
    ))
    .await;

    let resp = call(&his_call_url(&gw), None).send().await;
    assert_relayed_to_cloud(resp, &cloud, 1).await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_caller_on_his_listener_is_refused_at_accept_and_nothing_is_forwarded() {
    let (cloud, his) = mocks().await;
    let gw = spawn_gateway(&config_with(
        r#"listen = "127.0.0.1:0"
allow = ["10.0.0.0/8"]"#,
        LOOPBACK_LISTENER,
        &cloud,
        &his,
    ))
    .await;

    assert_refused_at_accept(
        call(&his_call_url(&gw), None).try_send().await,
        "127.0.0.1 on a his_listener allowing 10.0.0.0/8",
    );
    assert_nothing_forwarded(&cloud, "denied HIS caller").await;

    // The other listener has its own list: the cloud side still lets loopback in.
    let resp = call(
        &format!("{}/his/{QUERY_BALANCE}", gw.cloud_url(false)),
        None,
    )
    .send()
    .await;
    assert_eq!(resp.status, 200, "cloud listener's own allowlist applies");
    assert_eq!(resp.text(), HIS_ANSWER);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_caller_on_cloud_listener_is_refused_at_accept_and_nothing_is_forwarded() {
    let (cloud, his) = mocks().await;
    let gw = spawn_gateway(&config_with(
        LOOPBACK_LISTENER,
        r#"listen = "127.0.0.1:0"
allow = ["10.0.0.0/8"]"#,
        &cloud,
        &his,
    ))
    .await;

    let url = format!("{}/his/{QUERY_BALANCE}", gw.cloud_url(false));
    assert_refused_at_accept(
        call(&url, None).try_send().await,
        "127.0.0.1 on a cloud_listener allowing 10.0.0.0/8",
    );
    assert_nothing_forwarded(&his, "denied cloud caller").await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_x_forwarded_for_from_an_untrusted_peer_is_ignored() {
    let (cloud, his) = mocks().await;
    // No trusted_proxies: the header must not count at all.
    let gw = spawn_gateway(&config_with(
        r#"listen = "127.0.0.1:0"
allow = ["10.0.0.0/8"]"#,
        LOOPBACK_LISTENER,
        &cloud,
        &his,
    ))
    .await;

    for xff in ["10.1.2.3", "203.0.113.9, 10.1.2.3", "10.1.2.3:4567"] {
        assert_refused_at_accept(
            call(&his_call_url(&gw), Some(xff)).try_send().await,
            &format!("forged X-Forwarded-For: {xff}"),
        );
    }
    assert_nothing_forwarded(&cloud, "forged X-Forwarded-For").await;
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------
// Behind a trusted proxy
// ---------------------------------------------------------------------------

/// The HIS listener behind a trusted proxy on 127.0.0.1 letting only 10.0.0.0/8 in.
async fn behind_proxy(cloud: &MockUpstream, his: &MockUpstream) -> TestGateway {
    spawn_gateway(&config_with(
        r#"listen = "127.0.0.1:0"
allow = ["10.0.0.0/8"]
trusted_proxies = ["127.0.0.1/32"]"#,
        LOOPBACK_LISTENER,
        cloud,
        his,
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxy_forwarding_an_allowed_client_is_relayed() {
    let (cloud, his) = mocks().await;
    let gw = behind_proxy(&cloud, &his).await;

    let resp = call(&his_call_url(&gw), Some("10.1.2.3")).send().await;
    assert_relayed_to_cloud(resp, &cloud, 1).await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxy_rightmost_untrusted_entry_decides() {
    let (cloud, his) = mocks().await;
    let gw = behind_proxy(&cloud, &his).await;

    // The leftmost entry is whatever the caller wrote; the proxy appended the real client last.
    let resp = call(&his_call_url(&gw), Some("10.1.2.3, 203.0.113.9"))
        .send()
        .await;
    assert_forbidden(resp, "X-Forwarded-For: 10.1.2.3, 203.0.113.9");
    assert_nothing_forwarded(&cloud, "rightmost entry not allowed").await;

    // The reverse order: the rightmost (real) client is allowed, the forged leftmost is moot.
    let resp = call(&his_call_url(&gw), Some("203.0.113.9, 10.1.2.3"))
        .send()
        .await;
    assert_relayed_to_cloud(resp, &cloud, 1).await;

    // Trusted proxies in the chain are skipped: 127.0.0.1 is a proxy hop, 10.1.2.3 the client.
    let resp = call(&his_call_url(&gw), Some("10.1.2.3, 127.0.0.1"))
        .send()
        .await;
    assert_relayed_to_cloud(resp, &cloud, 2).await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxy_with_unparsable_forwarded_for_is_refused() {
    let (cloud, his) = mocks().await;
    let gw = behind_proxy(&cloud, &his).await;

    let resp = call(&his_call_url(&gw), Some("garbage")).send().await;
    assert_forbidden(resp, "X-Forwarded-For: garbage");
    // Garbage to the right of an allowed address must not let the allowed one decide.
    let resp = call(&his_call_url(&gw), Some("10.1.2.3, garbage"))
        .send()
        .await;
    assert_forbidden(resp, "X-Forwarded-For: 10.1.2.3, garbage");
    assert_nothing_forwarded(&cloud, "unparsable X-Forwarded-For").await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxy_without_forwarded_for_is_judged_as_itself() {
    let (cloud, his) = mocks().await;
    let gw = behind_proxy(&cloud, &his).await;

    // No header: the proxy (127.0.0.1) is the client, and it is not in allow.
    let resp = call(&his_call_url(&gw), None).send().await;
    assert_forbidden(resp, "trusted proxy without X-Forwarded-For");
    assert_nothing_forwarded(&cloud, "proxy itself not allowed").await;
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------
// IPv6 and IPv4-mapped peers
// ---------------------------------------------------------------------------

fn ipv6_loopback_available() -> bool {
    match std::net::TcpListener::bind("[::1]:0") {
        Ok(_) => true,
        Err(e) => {
            eprintln!("SKIPPED: cannot bind [::1]:0 on this machine (no IPv6 loopback?): {e}");
            false
        }
    }
}

/// True when `[::]:0` can be bound and accepts IPv4 connections (dual stack).
fn dual_stack_available() -> bool {
    let l = match std::net::TcpListener::bind("[::]:0") {
        Ok(l) => l,
        Err(e) => {
            eprintln!("SKIPPED: cannot bind [::]:0 on this machine (no IPv6?): {e}");
            return false;
        }
    };
    let port = l.local_addr().expect("local_addr").port();
    match std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    ) {
        Ok(_) => true,
        Err(e) => {
            eprintln!("SKIPPED: [::]:0 does not accept IPv4 (IPV6_V6ONLY set?): {e}");
            false
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_peer_matches_an_ipv6_allow_entry() {
    if !ipv6_loopback_available() {
        return;
    }
    let (cloud, his) = mocks().await;
    let gw = spawn_gateway(&config_with(
        r#"listen = "[::1]:0"
allow = ["::1/128"]"#,
        LOOPBACK_LISTENER,
        &cloud,
        &his,
    ))
    .await;
    assert!(gw.his_addr.is_ipv6(), "his_listener bound {}", gw.his_addr);

    let url = format!("http://[::1]:{}{GET_PATIENT_INFO}", gw.his_addr.port());
    let resp = call(&url, None).send().await;
    assert_relayed_to_cloud(resp, &cloud, 1).await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_peer_is_refused_by_an_ipv4_only_allowlist() {
    if !ipv6_loopback_available() {
        return;
    }
    let (cloud, his) = mocks().await;
    let gw = spawn_gateway(&config_with(
        r#"listen = "[::1]:0"
allow = ["127.0.0.1/32"]"#,
        LOOPBACK_LISTENER,
        &cloud,
        &his,
    ))
    .await;

    let url = format!("http://[::1]:{}{GET_PATIENT_INFO}", gw.his_addr.port());
    assert_refused_at_accept(
        call(&url, None).try_send().await,
        "::1 on a listener allowing 127.0.0.1/32 only",
    );
    assert_nothing_forwarded(&cloud, "IPv6 peer not allowed").await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv4_mapped_peer_on_dual_stack_listener_matches_an_ipv4_entry() {
    if !dual_stack_available() {
        return;
    }
    let (cloud, his) = mocks().await;
    let gw = spawn_gateway(&config_with(
        r#"listen = "[::]:0"
allow = ["127.0.0.1/32"]"#,
        LOOPBACK_LISTENER,
        &cloud,
        &his,
    ))
    .await;

    // The listener sees this peer as ::ffff:127.0.0.1.
    let url = format!("http://127.0.0.1:{}{GET_PATIENT_INFO}", gw.his_addr.port());
    let resp = call(&url, None).send().await;
    assert_relayed_to_cloud(resp, &cloud, 1).await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv4_mapped_peer_is_refused_by_an_ipv6_only_allowlist() {
    if !dual_stack_available() {
        return;
    }
    let (cloud, his) = mocks().await;
    let gw = spawn_gateway(&config_with(
        r#"listen = "[::]:0"
allow = ["::1/128"]"#,
        LOOPBACK_LISTENER,
        &cloud,
        &his,
    ))
    .await;

    let url = format!("http://127.0.0.1:{}{GET_PATIENT_INFO}", gw.his_addr.port());
    assert_refused_at_accept(
        call(&url, None).try_send().await,
        "::ffff:127.0.0.1 on a listener allowing ::1/128 only",
    );
    assert_nothing_forwarded(&cloud, "IPv4-mapped peer not allowed").await;
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------
// Decided before the body is read
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_request_is_closed_before_its_body_is_read() {
    let (cloud, his) = mocks().await;
    // max_body above the declared length: only an allowlist decided before reading the body
    // can answer promptly (neither a 413 nor a body read gets in the way).
    let gw = spawn_gateway(&config_with(
        r#"listen = "127.0.0.1:0"
allow = ["10.0.0.0/8"]
max_body = "256MiB""#,
        LOOPBACK_LISTENER,
        &cloud,
        &his,
    ))
    .await;

    let mut stream = tokio::net::TcpStream::connect(gw.his_addr)
        .await
        .expect("connect to his_listener");
    let head = post(GET_PATIENT_INFO)
        .content_type("application/json")
        .header("Content-Length", "100000000")
        .body("{\"hosp")
        .raw();
    // The box may have closed the connection already: a failed write is part of the answer.
    let _ = stream.write_all(&head).await;

    // The box closes the connection at once: no status line, and it never waits for the
    // remaining ~100 MB.
    let closed = async {
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break got,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    let got = tokio::time::timeout(Duration::from_secs(5), closed)
        .await
        .expect("the box kept the denied connection open waiting for its body");
    assert!(
        got.is_empty(),
        "a denied peer gets no answer at all: {:?}",
        String::from_utf8_lossy(&got)
    );
    assert_nothing_forwarded(&cloud, "denied caller with a large declared body").await;
    gw.shutdown().await;
}
