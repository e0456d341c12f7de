//! `[files_listener]` (DESIGN.md §9, issue 17 item 3): report links opened by patients' phones.
//! Links minted from a HIS answer carry the files listener's `public_url`; it serves them to
//! callers the cloud listener refuses; it answers nothing but `GET|HEAD /files/<token>` (404
//! before a body is read, 405 for other methods on a link); a forged or expired link is refused
//! as on the cloud listener; it speaks TLS, shows its certificate on `/status` and `/metrics`,
//! and the configuration checks it like the other listeners.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use support::pacs::*;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `[pacs] link_key`, so the tests can mint their own tokens.
const LINK_KEY: &str = "prefront-files-listener-test-link-key-0123456789";
/// `[cloud_listener] public_url`: links must no longer use it.
const CLOUD_PUBLIC: &str = "https://prefront.example";
/// `[files_listener] public_url`: links must use it.
const FILES_PUBLIC: &str = "https://files.example-hospital.cn:8444";
const PACS_REPORT_DCM: &str = "hospital.interface.pacsReportDcm";
/// The cloud's own address: the only one its listener lets in.
const CLOUD_PEER: [u8; 4] = [127, 0, 0, 2];
const REPORT_SIZE: u64 = 123_457;
const IMAGE_SIZE: u64 = 5000;

/// A mock PACS and HIS, a (never called) cloud, and the gateway with a files listener; the
/// cloud listener lets only 127.0.0.2 in, the files listener everyone.
struct Bench {
    pacs: MockPacs,
    his: MockUpstream,
    _cloud: MockUpstream,
    gw: TestGateway,
}

fn bench_toml(cloud: &MockUpstream, his: &MockUpstream, pacs: &MockPacs) -> ConfigToml {
    let his_url = format!("{}/his/{{name}}", his.url());
    let pacs_section = format!(
        "[pacs]\ninternal_hosts = [{:?}]\nlink_key = {LINK_KEY:?}\n",
        pacs.host_port()
    );
    ConfigToml::basic(&cloud.url(), None, Some(&his_url), &pacs_section)
        .set("cloud_listener.public_url", CLOUD_PUBLIC)
        .set("cloud_listener.allow", vec!["127.0.0.2/32"])
        .merge(&format!(
            "[files_listener]\nlisten = \"127.0.0.1:0\"\npublic_url = {FILES_PUBLIC:?}\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n"
        ))
}

async fn bench_with(patch: impl FnOnce(ConfigToml) -> ConfigToml) -> Bench {
    let pacs = MockPacs::start().await;
    let his = MockUpstream::http().await;
    let cloud = MockUpstream::http().await;
    let gw = spawn_gateway(&patch(bench_toml(&cloud, &his, &pacs)).render()).await;
    Bench {
        pacs,
        his,
        _cloud: cloud,
        gw,
    }
}

async fn bench() -> Bench {
    bench_with(|t| t).await
}

/// A client whose connections come from `ip` (any 127/8 address is loopback on Linux).
fn client_from(ip: [u8; 4]) -> reqwest::Client {
    // Plain HTTP only: a TLS configuration that trusts nothing (and needs no process-wide
    // crypto provider).
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("rustls: ring supports the default protocol versions")
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .local_address(IpAddr::from(ip))
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("reqwest client")
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Bench {
    /// The cloud's call for a report: the HIS answers with LAN links to the PACS, the gateway
    /// rewrites them. Returns (pdfUrl, imageUrl) as the cloud got them.
    async fn minted_links(&self) -> (String, String) {
        let answer = serde_json::json!({
            "success": true, "msg": "成功", "code": "10001",
            "data": {
                "pdfUrl": self.pacs.file_url(&format!("size-{REPORT_SIZE}")),
                "imageUrl": self.pacs.file_url(&format!("size-{IMAGE_SIZE}")),
            }
        });
        self.his
            .respond(&format!("/his/{PACS_REPORT_DCM}"), 200, &answer.to_string());
        let reply = post(format!(
            "{}/his/{PACS_REPORT_DCM}",
            self.gw.cloud_url(false)
        ))
        .via(&client_from(CLOUD_PEER))
        .body(r#"{"hospitalId":"253","id":"256525452"}"#)
        .expect_status(200)
        .send()
        .await;
        let v: Value = reply.json();
        let link = |at: &str| {
            v.pointer(at)
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("no string at {at}: {v}"))
                .to_string()
        };
        (link("/data/pdfUrl"), link("/data/imageUrl"))
    }

    /// A minted link's path called on the files listener.
    fn on_files(&self, link: &str) -> String {
        let path = link
            .strip_prefix(FILES_PUBLIC)
            .unwrap_or_else(|| panic!("{link:?} does not start with {FILES_PUBLIC}"));
        self.gw.files_url(path)
    }

    fn token(&self) -> String {
        token_for(&self.pacs)
    }
}

/// A genuine link token for `size-1000` on `pacs`, valid for 10 minutes.
fn token_for(pacs: &MockPacs) -> String {
    prefront::pacs::LinkSigner::new(LINK_KEY.as_bytes())
        .mint(&pacs.file_url("size-1000"), now_unix() + 600)
        .expect("minted")
}

/// Reads a whole answer and checks it is file `size` of the mock PACS.
async fn assert_file(resp: reqwest::Response, size: u64, what: &str) {
    assert_eq!(resp.status(), 200, "{what}");
    let body = resp.bytes().await.expect("the whole body");
    assert_eq!(body.len() as u64, size, "{what}: length");
    assert_eq!(sha256_hex(&body), expected_sha256(size), "{what}: content");
}

/// Sends `head` (a request's head, `\r\n\r\n` included) on a raw connection to `addr`, and
/// sends nothing more; returns the answer's head and how long it took to come.
async fn raw_head(addr: SocketAddr, head: &str) -> (String, Duration) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let started = Instant::now();
    s.write_all(head.as_bytes()).await.expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "no answer within 5 s to {head:?}: the body was waited for"
    );
    (
        String::from_utf8_lossy(&got).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minted_link_opens_on_the_files_listener_from_an_address_the_cloud_listener_refuses() {
    let b = bench().await;
    let (pdf, image) = b.minted_links().await;
    for link in [&pdf, &image] {
        assert!(
            link.starts_with(&format!("{FILES_PUBLIC}/files/")),
            "links carry the files listener's public_url: {link}"
        );
        assert!(!link.contains(&b.pacs.host_port()), "{link}");
    }
    assert_eq!(b.pacs.request_count(), 0, "minting fetches nothing");

    // A phone (127.0.0.1, not in the cloud listener's allow list) opens them.
    let phone = client_from([127, 0, 0, 1]);
    let r = phone.get(b.on_files(&pdf)).send().await.expect("answer");
    assert_file(r, REPORT_SIZE, "the report on the files listener").await;
    let r = phone.get(b.on_files(&image)).send().await.expect("answer");
    assert_file(r, IMAGE_SIZE, "the image on the files listener").await;
    let head = phone.head(b.on_files(&pdf)).send().await.expect("answer");
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok()),
        Some(REPORT_SIZE.to_string().as_str())
    );
    let part = phone
        .get(b.on_files(&pdf))
        .header("range", "bytes=10-19")
        .send()
        .await
        .expect("answer");
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().await.expect("body").to_vec(), content(10, 19));
    let reqs = b.pacs.requests();
    assert_eq!(reqs.len(), 4);
    assert_eq!(reqs[0].path, format!("/file/size-{REPORT_SIZE}"));

    // The cloud listener still refuses the phone's address (closed at accept)...
    let path = pdf.strip_prefix(FILES_PUBLIC).unwrap_or_default();
    let cloud_link = format!("{}{path}", b.gw.cloud_url(false));
    let refused = phone.get(&cloud_link).send().await;
    assert!(
        refused.is_err(),
        "the cloud listener lets 127.0.0.1 in: {:?}",
        refused.map(|r| r.status())
    );
    // ...and still serves the same link to the cloud, for compatibility.
    let r = client_from(CLOUD_PEER)
        .get(&cloud_link)
        .send()
        .await
        .expect("answer");
    assert_file(r, REPORT_SIZE, "the report on the cloud listener").await;

    // Counted like the cloud listener's file calls; the phone was denied once on the cloud side.
    let m = b.gw.metrics().await;
    let denied = metric_sample(&m, r#"prefront_allowlist_denials_total{listener="cloud"}"#);
    assert!(denied.is_some_and(|n| n >= 1.0), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_files_listener_answers_nothing_but_files_and_reads_no_body() {
    let b = bench().await;
    let addr = b.gw.files_addr.expect("files listener");
    let phone = plain_client();
    for path in [
        format!("/his/{PACS_REPORT_DCM}"),
        "/pacs/dcm?dcmId=x&hospitalId=253".to_string(),
        "/files".to_string(),
        "/status".to_string(),
        "/metrics".to_string(),
        "/healthz".to_string(),
        "/prefront/patient/getPatientInfo".to_string(),
        "/".to_string(),
        "/Files/abc".to_string(),
    ] {
        for method in ["GET", "POST", "HEAD"] {
            let r = request(method, b.gw.files_url(&path))
                .via(&phone)
                .send()
                .await;
            assert_eq!(r.status, 404, "{method} {path}");
        }
    }
    // A huge declared body that never comes: the 404 comes at once, nothing is waited for.
    for path in [format!("/his/{PACS_REPORT_DCM}"), "/status".to_string()] {
        let (head, took) = raw_head(
            addr,
            &format!(
                "POST {path} HTTP/1.1\r\nHost: files.test\r\nContent-Type: application/json\r\n\
                 Content-Length: 10000000000\r\n\r\n"
            ),
        )
        .await;
        assert!(head.starts_with("HTTP/1.1 404"), "{path}: {head}");
        assert!(took < Duration::from_secs(2), "{path}: took {took:?}");
    }
    // A link with a method other than GET and HEAD: 405, at once too.
    let token = b.token();
    let (head, took) = raw_head(
        addr,
        &format!(
            "POST /files/{token} HTTP/1.1\r\nHost: files.test\r\nContent-Length: 10000000000\r\n\r\n"
        ),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 405"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("allow: get, head"),
        "{head}"
    );
    assert!(took < Duration::from_secs(2), "took {took:?}");
    for method in ["PUT", "DELETE", "OPTIONS"] {
        let r = request(method, b.gw.files_url(&format!("/files/{token}")))
            .via(&phone)
            .send()
            .await;
        assert_eq!(r.status, 405, "{method}");
    }
    assert_eq!(b.his.request_count(), 0, "nothing reached the HIS");
    assert_eq!(b.pacs.request_count(), 0, "nor the PACS");
    // The genuine link works on the same listener.
    let r = phone
        .get(b.gw.files_url(&format!("/files/{token}")))
        .send()
        .await
        .expect("answer");
    assert_file(r, 1000, "the genuine token").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_expired_links_are_refused_on_the_files_listener() {
    let b = bench().await;
    let signer = prefront::pacs::LinkSigner::new(LINK_KEY.as_bytes());
    let url = b.pacs.file_url("size-1000");
    let expired = signer.mint(&url, now_unix() - 10).expect("minted");
    let other = prefront::pacs::LinkSigner::new(b"another-key-another-key-another-key-0000");
    let foreign = other.mint(&url, now_unix() + 600).expect("minted");
    let good = b.token();
    let mut truncated = good.clone();
    truncated.truncate(good.len() / 2);
    let cases = [
        (expired, 410, "link-expired"),
        (foreign, 403, "link-forged"),
        (truncated, 403, "link-forged"),
        (String::new(), 403, "link-forged"),
    ];
    for (token, status, kind) in cases {
        for method in ["GET", "HEAD"] {
            let r = request(method, b.gw.files_url(&format!("/files/{token}")))
                .send()
                .await;
            assert_eq!(r.status, status, "{method} {token:?}");
            assert_eq!(r.error_kind(), Some(kind), "{method} {token:?}");
        }
    }
    assert_eq!(
        b.pacs.request_count(),
        0,
        "no refused link reached the PACS"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_files_listener_speaks_tls_and_shows_its_certificate() {
    let pki = TestPki::new();
    let b = bench_with(|t| {
        t.set_path("files_listener.tls_cert", &pki.server_cert_path())
            .set_path("files_listener.tls_key", &pki.server_key_path())
    })
    .await;
    let port = b.gw.files_addr.expect("files listener").port();
    let token = b.token();
    let r = pki
        .client()
        .get(format!("https://localhost:{port}/files/{token}"))
        .send()
        .await
        .expect("an answer over TLS");
    assert_file(r, 1000, "the file over TLS").await;
    let r = pki
        .client()
        .get(format!("https://localhost:{port}/status"))
        .send()
        .await
        .expect("an answer over TLS");
    assert_eq!(r.status(), 404, "only files, over TLS too");
    let plain = plain_client()
        .get(format!("http://127.0.0.1:{port}/files/{token}"))
        .send()
        .await;
    assert!(
        plain.as_ref().map_or(true, |r| r.status() != 200),
        "plain HTTP is not served a file: {plain:?}"
    );

    let m = b.gw.metrics().await;
    let left = metric_sample(&m, r#"prefront_tls_cert_expiry_seconds{listener="files"}"#);
    assert!(left.is_some_and(|s| s > 86_400.0), "{m}");
    assert_eq!(
        metric_sample(&m, r#"prefront_tls_cert_expiry_seconds{listener="cloud"}"#),
        None,
        "the cloud listener has no certificate here"
    );
    let page = plain_client()
        .get(b.gw.admin_url("/status"))
        .send()
        .await
        .expect("status page")
        .text()
        .await
        .expect("status body");
    assert!(page.contains(r#"id="cert-files""#), "{page}");
    assert!(page.contains("files_listener"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_narrows_the_files_listener_but_keeps_its_address() {
    let b = bench().await;
    let token = b.token();
    let url = b.gw.files_url(&format!("/files/{token}"));
    let r = client_from([127, 0, 0, 1])
        .get(&url)
        .send()
        .await
        .expect("answer");
    assert_file(r, 1000, "before the reload").await;
    let cloud = MockUpstream::http().await;
    let narrowed = bench_toml(&cloud, &b.his, &b.pacs)
        .set("files_listener.allow", vec!["127.0.0.3/32"])
        .set("files_listener.listen", "127.0.0.1:1");
    let kept = b.gw.reload(&narrowed.render());
    assert!(
        kept.iter().any(|k| k == "files_listener.listen"),
        "{kept:?}"
    );
    let refused = client_from([127, 0, 0, 1]).get(&url).send().await;
    assert!(refused.is_err(), "127.0.0.1 is let in: {refused:?}");
    let r = client_from([127, 0, 0, 3])
        .get(&url)
        .send()
        .await
        .expect("answer");
    assert_file(r, 1000, "from the newly allowed address").await;
}

/// `check` on a configuration, through the library (what `prefront check` runs).
fn problems(toml: &ConfigToml) -> Vec<String> {
    match prefront::Config::from_toml(&toml.render(), std::path::Path::new(".")) {
        Ok(_) => Vec::new(),
        Err(e) => e.problems.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn the_configuration_checks_the_files_listener() {
    let base = || {
        ConfigToml::basic(
            "http://127.0.0.1:9",
            None,
            Some("http://127.0.0.1:9/{name}"),
            "",
        )
        .set("his_listener.listen", "127.0.0.1:18441")
        .set("cloud_listener.listen", "127.0.0.1:18442")
        .set("pacs.internal_hosts", vec!["10.0.0.9"])
        .set("pacs.link_key", LINK_KEY)
    };
    // internal_hosts needs a public_url: the cloud listener's or the files listener's.
    let p = problems(&base());
    assert!(
        p.iter().any(|p| p.contains("cloud_listener.public_url")),
        "{p:?}"
    );
    let files = base().merge(&format!(
        "[files_listener]\nlisten = \"127.0.0.1:18443\"\npublic_url = {FILES_PUBLIC:?}\n"
    ));
    assert_eq!(problems(&files), Vec::<String>::new());
    let loaded =
        prefront::Config::from_toml(&files.render(), std::path::Path::new(".")).expect("valid");
    let f = loaded.config.files_listener.expect("[files_listener]");
    let everyone: Vec<String> = f.allow.iter().map(ToString::to_string).collect();
    assert_eq!(everyone, ["0.0.0.0/0", "::/0"], "the internet by default");
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.key == "files_listener" && w.message.contains("plain HTTP")),
        "{:?}",
        loaded.warnings
    );
    // The same address as another listener.
    for other in ["his_listener", "cloud_listener"] {
        let clash = files
            .clone()
            .set(&format!("{other}.listen"), "127.0.0.1:18443");
        let p = problems(&clash);
        assert!(
            p.iter().any(|p| p.contains("files_listener.listen")
                && p.contains(&format!("same address as {other}.listen"))),
            "{other}: {p:?}"
        );
    }
    // Keys that make no sense here, and bad values, are reported with their key.
    let bad = files
        .clone()
        .set("files_listener.max_body", "1MB")
        .set("files_listener.client_ca", "ca.pem")
        .set("files_listener.allow", vec!["not-a-net"])
        .set("files_listener.public_url", "ftp://x");
    let p = problems(&bad);
    for key in [
        "files_listener.max_body",
        "files_listener.client_ca",
        "files_listener.allow",
        "files_listener.public_url",
    ] {
        assert!(p.iter().any(|p| p.contains(key)), "{key}: {p:?}");
    }
    let no_tls_key = files.set("files_listener.tls_cert", "files.pem");
    let p = problems(&no_tls_key);
    assert!(
        p.iter().any(|p| p.contains("files_listener.tls_key")),
        "{p:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_links_on_the_files_listener_and_logs_them_like_the_cloud_s() {
    let pacs = MockPacs::start().await;
    let his = MockUpstream::http().await;
    let cloud = MockUpstream::http().await;
    let dir = TempDir::new("prefront-files-listener");
    let config = bench_toml(&cloud, &his, &pacs)
        .remove("admin")
        .write(&dir.path().join("prefront.toml"));
    let gw = RunningBinary::start(&config);
    let files = format!(
        "http://{}",
        gw.logged_addr("listening for patients' phones")
    );
    let token = token_for(&pacs);
    let phone = client_from([127, 0, 0, 1]);
    let r = phone
        .get(format!("{files}/files/{token}"))
        .send()
        .await
        .expect("answer");
    assert_file(r, 1000, "the file from the binary's files listener").await;
    for path in ["/status", "/his/x", "/files"] {
        let r = phone
            .get(format!("{files}{path}"))
            .send()
            .await
            .expect("answer");
        assert_eq!(r.status(), 404, "{path}");
    }

    let (status, log) = gw.terminate();
    assert!(status.success(), "clean exit: {status:?}");
    let all = log.join("\n");
    let streams: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("bytes=") && l.contains("route=\"files\""))
        .collect();
    assert_eq!(streams.len(), 1, "one line for the download:\n{all}");
    assert!(
        streams[0].contains("cloud_to_pacs") && streams[0].contains("bytes=1000"),
        "{all}"
    );
    let refused: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("not-found") && l.contains("cloud_to_pacs"))
        .collect();
    assert_eq!(
        refused.len(),
        1,
        "other paths are logged once a minute per caller:\n{all}"
    );
    assert!(!all.contains(&token), "the token is not logged:\n{all}");
    assert_eq!(pacs.request_count(), 1);
    assert_eq!(his.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_the_files_listener_s_port_and_certificate() {
    let pki = TestPki::new();
    let pacs = MockPacs::start().await;
    let his = MockUpstream::http().await;
    let cloud = MockUpstream::http().await;
    let dir = TempDir::new("prefront-files-doctor");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let config = bench_toml(&cloud, &his, &pacs)
        .remove("admin")
        .set("files_listener.listen", format!("127.0.0.1:{port}"))
        .set_path("files_listener.tls_cert", &pki.server_cert_path())
        .set_path("files_listener.tls_key", &pki.server_key_path())
        .set_path("buffer.path", &dir.path().join("buffer"))
        .write(&dir.path().join("prefront.toml"));
    let run = tokio::task::spawn_blocking(move || {
        let config = config.to_str().expect("UTF-8 path").to_string();
        run_prefront(&["doctor", "--config", &config], None)
    })
    .await
    .expect("runner thread");
    let line = |what: &str| {
        run.stdout
            .lines()
            .find(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no {what:?} line: {run:?}"))
            .to_string()
    };
    let port_line = line("port files_listener.listen");
    assert!(port_line.starts_with("FAIL"), "{run:?}");
    assert!(
        port_line.contains(&format!("port {port} is in use")),
        "{run:?}"
    );
    let cert_line = line("certificate files_listener.tls_cert");
    assert!(cert_line.starts_with("PASS"), "{run:?}");
    assert!(cert_line.contains("localhost"), "{run:?}");
    drop(taken);
}
