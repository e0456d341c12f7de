//! The test support itself: what the other test files build their calls and configurations
//! with must say what it claims, or their assertions mean less than they read.

mod support;

use std::path::Path;
use std::time::Duration;

use support::*;

/// Rendering a configuration and reading it back changes nothing: the same TOML data, which the
/// gateway loads with the same warnings.
#[test]
fn a_rendered_config_is_the_same_config() {
    for name in ["valid_full.toml", "valid_minimal.toml"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config");
        let text = std::fs::read_to_string(dir.join(name)).expect("fixture");
        let doc = ConfigToml::parse(&text);
        let rendered = doc.render();
        assert_eq!(
            ConfigToml::parse(&rendered),
            doc,
            "{name} rendered:\n{rendered}"
        );
        let load = |t: &str| {
            prefront::Config::from_toml(t, &dir)
                .unwrap_or_else(|e| panic!("{name}: {:#?}\n{t}", e.problems))
        };
        assert_eq!(
            load(&text).warnings.len(),
            load(&rendered).warnings.len(),
            "{name} rendered:\n{rendered}"
        );
    }
}

#[test]
fn config_patches_set_merge_and_remove_by_key() {
    let c = ConfigToml::basic(
        "http://127.0.0.1:1",
        None,
        Some("http://127.0.0.1:2/{name}"),
        "",
    )
    .set("cloud_listener.public_url", "https://x.example")
    .set("buffer.retry_min", "50ms")
    .set("his_listener.allow", vec!["10.0.0.0/8"])
    .merge("[[his.route]]\nname = \"a\"\nurl = \"http://127.0.0.1:3/a\"\n")
    .merge("[[his.route]]\nname = \"b\"\nurl = \"http://127.0.0.1:3/b\"\n")
    .set("his.route.timeout_ms", 400)
    .remove("log.level");
    let text = c.render();
    let back = ConfigToml::parse(&text);
    let v = |k: &str| back.get(k).cloned();
    let string = |s: &str| Some(toml::Value::from(s));
    assert_eq!(v("cloud_listener.public_url"), string("https://x.example"));
    assert_eq!(v("cloud_listener.listen"), string("127.0.0.1:0"), "kept");
    assert_eq!(v("buffer.retry_min"), string("50ms"));
    assert_eq!(
        v("his_listener.allow"),
        Some(toml::Value::from(vec!["10.0.0.0/8"]))
    );
    assert!(
        back.get("log.level").is_none() && back.get("log").is_some(),
        "{text}"
    );
    let routes = back
        .get("his.route")
        .and_then(|v| v.as_array())
        .expect("[[his.route]]");
    assert_eq!(routes.len(), 2, "{text}");
    assert_eq!(routes[0].get("timeout_ms"), None, "{text}");
    assert_eq!(
        routes[1]["timeout_ms"].as_integer(),
        Some(400),
        "the last route, as TOML reads it"
    );
    // Strings TOML must escape survive.
    let odd = "a \"quoted\" \\ back\tslash\u{1}";
    let back = ConfigToml::parse(&ConfigToml::default().set("x.y", odd).render());
    assert_eq!(back.get("x.y").and_then(|v| v.as_str()), Some(odd));
}

#[test]
fn a_raw_call_is_the_request_a_client_would_write() {
    let raw = post("http://127.0.0.1:9/his/x?y=1")
        .json_type()
        .header("X-A", "1")
        .body("{}")
        .raw();
    assert_eq!(
        String::from_utf8(raw).expect("text"),
        "POST /his/x?y=1 HTTP/1.1\r\nHost: prefront.test\r\n\
         Content-Type: application/json;charset=UTF-8\r\nX-A: 1\r\nContent-Length: 2\r\n\r\n{}"
    );
    // A framing header of the caller's own: no Content-Length added; a GET without a body: none.
    let chunked = post("/p").header("Transfer-Encoding", "chunked").raw();
    assert!(!String::from_utf8_lossy(&chunked).contains("Content-Length"));
    assert_eq!(
        get("/p").version("HTTP/1.0").raw(),
        b"GET /p HTTP/1.0\r\nHost: prefront.test\r\n\r\n".to_vec()
    );
}

/// `sign` is the README's canonical string under HMAC-SHA256: one vector computed outside this
/// code, with `printf 'POST\n/his/x\n1700000000\n<sha256 of {}>' | openssl dgst -sha256 -hmac
/// secret` (and Python's `hmac`), kept here so a machine without openssl runs the test too.
#[test]
fn sign_matches_an_independent_computation() {
    let body_hash = "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
    assert_eq!(
        sign("secret", "POST", "/his/x", 1_700_000_000, b"{}"),
        "37213561a2223550e11479a4900f431a7b0b57a314f54bc85c6d183f39754e76"
    );
    // The body hash in that string is the SHA-256 of `{}`.
    assert!(body_hash.starts_with("44136fa3"));
    let signed = post("http://h/his/x")
        .body("{}")
        .signed("secret", 1_700_000_000)
        .raw();
    let text = String::from_utf8(signed).expect("text");
    assert!(
        text.contains("X-Prefront-Timestamp: 1700000000\r\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "X-Prefront-Signature: {}\r\n",
            sign("secret", "POST", "/his/x", 1_700_000_000, b"{}")
        )),
        "{text}"
    );
}

#[tokio::test]
async fn poll_until_returns_once_the_condition_holds_and_names_what_never_did() {
    let started = std::time::Instant::now();
    let mut n = 0;
    poll_until(Duration::from_secs(5), "the third look", async || {
        n += 1;
        n == 3
    })
    .await;
    assert_eq!(n, 3);
    assert!(started.elapsed() < Duration::from_secs(1));
    let err = Poll::new(Duration::from_millis(50), "a condition that never holds")
        .try_until(async || false)
        .await
        .expect_err("times out");
    assert_eq!(
        err.to_string(),
        "timed out after 50ms waiting for a condition that never holds"
    );
    let panic = std::panic::catch_unwind(|| {
        wait_until(Duration::from_millis(30), "nothing", || false);
    })
    .expect_err("panics");
    let msg = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("waiting for nothing"), "{msg}");
}

#[test]
fn accepted_tells_a_backlogged_connection_from_an_accepted_one() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let server = listener.local_addr().expect("addr");
    let client = std::net::TcpStream::connect(server).expect("connect");
    let local = client.local_addr().expect("addr");
    assert!(!accepted(server, local), "in the backlog: not accepted yet");
    let _conn = listener.accept().expect("accept");
    assert!(accepted(server, local));
}
