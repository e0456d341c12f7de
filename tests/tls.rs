//! TLS on the cloud listener (server certificate, optional client certificates) and towards the
//! cloud (`[cloud] ca`), TLS 1.2 and 1.3 only.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const QUERY_BALANCE: &str = "hospital.interface.queryBalance";
const GET_PATIENT_INFO: &str = "/prefront/patient/getPatientInfo";
const REQUEST_BODY: &str = r#"{"hospitalId":"H0001","patientId":"P-tls-test"}"#;
const HIS_ANSWER: &str =
    r#"{"success":true,"msg":"成功","code":"10001","data":{"marker":"from-mock-his"}}"#;
const CLOUD_ANSWER: &str =
    r#"{"success":true,"msg":"成功","code":"10001","data":{"marker":"from-mock-cloud"}}"#;

/// How long to keep watching a mock for a request that must not arrive.
const QUIET: Duration = Duration::from_millis(300);

fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn toml_path(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

/// A configuration whose cloud listener has `cloud_listener_extra` (TLS keys) appended, the cloud
/// at `cloud_url` (trusting `cloud_ca` when given) and the HIS default route at `his_url`.
fn config(
    cloud_listener_extra: &str,
    cloud_url: &str,
    cloud_ca: Option<&Path>,
    his_url: &str,
) -> String {
    let ca = cloud_ca
        .map(|p| format!("ca = {}\n", toml_path(p)))
        .unwrap_or_default();
    format!(
        r#"
[his_listener]
listen = "127.0.0.1:0"
allow = ["127.0.0.0/8", "::1/128"]

[cloud_listener]
listen = "127.0.0.1:0"
allow = ["127.0.0.0/8", "::1/128"]
{cloud_listener_extra}

[cloud]
base_url = "{cloud_url}"
{ca}timeout_ms = 5000

[his]
kind = "http"
url = "{his_url}/his/{{name}}"
timeout_ms = 5000
"#
    )
}

/// `tls_cert`/`tls_key` lines for `pki`'s server certificate.
fn server_tls(pki: &TestPki) -> String {
    format!(
        "tls_cert = {}\ntls_key = {}\n",
        toml_path(&pki.server_cert_path()),
        toml_path(&pki.server_key_path())
    )
}

async fn his_mock() -> MockUpstream {
    let his = MockUpstream::http().await;
    his.respond(&format!("/his/{QUERY_BALANCE}"), 200, HIS_ANSWER);
    his
}

fn query_balance_url(gw: &TestGateway) -> String {
    format!("{}/his/{QUERY_BALANCE}", gw.cloud_url(true))
}

/// The test's call to `url` through `client`: [`REQUEST_BODY`] as the HIS sends it.
fn call(client: &reqwest::Client, url: &str) -> Call {
    post(url).via(client).json_type().body(REQUEST_BODY)
}

/// Asserts a successful relay to the HIS mock: HTTP 200 with exactly its answer.
async fn assert_his_answer(resp: reqwest::Result<Reply>, his: &MockUpstream) {
    let resp = resp.unwrap_or_else(|e| panic!("HTTPS call to the cloud listener failed: {e:?}"));
    let (status, body) = (resp.status, resp.text());
    assert_eq!(status, 200, "body: {body}");
    assert_eq!(body, HIS_ANSWER, "the HIS answer must come back unchanged");
    let reqs = his.wait_for_requests(1, Duration::from_secs(5)).await;
    assert_eq!(reqs.len(), 1, "the HIS must have received the call");
    assert_eq!(reqs[0].path, format!("/his/{QUERY_BALANCE}"));
}

/// Asserts the call failed at the transport level (no HTTP answer at all) and not by timing out.
fn assert_transport_error(resp: reqwest::Result<Reply>, what: &str) {
    match resp {
        Ok(r) => panic!(
            "{what}: expected a TLS/connection failure, got HTTP {}",
            r.status
        ),
        Err(e) => assert!(
            !e.is_timeout(),
            "{what}: the call timed out instead of failing the handshake: {e:?}"
        ),
    }
}

async fn assert_nothing_reached(mock: &MockUpstream, what: &str) {
    let reqs = mock.wait_for_requests(1, QUIET).await;
    assert!(
        reqs.is_empty(),
        "{what}: nothing may reach the upstream, got {} request(s)",
        reqs.len()
    );
}

fn client_with(cfg: rustls::ClientConfig) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(cfg)
        .no_proxy()
        .timeout(CLIENT_TIMEOUT)
        .build()
        .expect("build reqwest client")
}

fn roots_of(pki: &TestPki) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der()).expect("CA accepted as root");
    roots
}

// ---------------------------------------------------------------------------
// Server certificate
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_listener_serves_https_with_the_configured_certificate() {
    let pki = TestPki::new();
    let his = his_mock().await;
    let cloud = MockUpstream::http().await;
    let gw = spawn_gateway(&config(&server_tls(&pki), &cloud.url(), None, &his.url())).await;

    // pki.client() trusts only this CA: success proves the box presented the configured
    // certificate, valid for localhost and chaining to it.
    let resp = call(&pki.client(), &query_balance_url(&gw))
        .try_send()
        .await;
    assert_his_answer(resp, &his).await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_trusting_another_ca_fails_and_nothing_reaches_the_his() {
    let pki = TestPki::new();
    let his = his_mock().await;
    let cloud = MockUpstream::http().await;
    let gw = spawn_gateway(&config(&server_tls(&pki), &cloud.url(), None, &his.url())).await;

    let other = TestPki::new();
    let resp = call(&other.client(), &query_balance_url(&gw))
        .try_send()
        .await;
    assert_transport_error(resp, "client trusting another CA");
    assert_nothing_reached(&his, "untrusted server certificate").await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_the_tls_listener_is_not_served() {
    let pki = TestPki::new();
    let his = his_mock().await;
    let cloud = MockUpstream::http().await;
    let gw = spawn_gateway(&config(&server_tls(&pki), &cloud.url(), None, &his.url())).await;

    let url = format!("http://{}/his/{QUERY_BALANCE}", gw.cloud_addr);
    let resp = call(&plain_client(), &url).try_send().await;
    assert_transport_error(resp, "plain HTTP to the HTTPS listener");
    assert_nothing_reached(&his, "plain HTTP on the TLS listener").await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_peer_on_the_tls_listener_gets_nothing_through() {
    let pki = TestPki::new();
    let his = his_mock().await;
    let cloud = MockUpstream::http().await;
    let toml = ConfigToml::parse(&config(&server_tls(&pki), &cloud.url(), None, &his.url()))
        .set("cloud_listener.allow", vec!["10.0.0.0/8"])
        .render();
    let gw = spawn_gateway(&toml).await;

    match call(&pki.client(), &query_balance_url(&gw))
        .try_send()
        .await
    {
        // Refused before the handshake: the connection is closed at accept.
        Err(e) => assert!(!e.is_timeout(), "denied TLS peer timed out: {e:?}"),
        Ok(r) => panic!(
            "denied TLS peer must be refused at accept, got HTTP {}",
            r.status
        ),
    }
    // On the wire: a ClientHello gets no ServerHello, not one byte.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = query_balance_url(&gw)
            .trim_start_matches("https://")
            .split('/')
            .next()
            .expect("host:port")
            .to_string();
        let mut tcp = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        // The start of a TLS 1.2 ClientHello record.
        let _ = tcp
            .write_all(&[0x16, 0x03, 0x01, 0x00, 0x31, 0x01, 0x00, 0x00, 0x2d])
            .await;
        let mut buf = [0u8; 64];
        let got = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
            .await
            .expect("closed at once, not left open");
        assert!(
            matches!(got, Ok(0) | Err(_)),
            "the denied peer got {got:?} bytes back: the handshake must not start"
        );
    }
    assert_nothing_reached(&his, "denied peer on the TLS listener").await;
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------
// Client certificates (mTLS)
// ---------------------------------------------------------------------------

/// A CA that issues client certificates, its certificate written to a temp dir.
struct ClientCa {
    dir: TempDir,
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl ClientCa {
    fn new(label: &str) -> ClientCa {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(
            DnType::CommonName,
            format!("prefront test client CA {label}"),
        );
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let issuer = rcgen::CertifiedIssuer::self_signed(params, key).expect("self-sign CA");
        let dir = TempDir::new("prefront-test-client-ca");
        std::fs::write(dir.path().join("client-ca.pem"), issuer.pem()).expect("write CA");
        ClientCa { dir, issuer }
    }

    fn ca_path(&self) -> PathBuf {
        self.dir.path().join("client-ca.pem")
    }

    /// A client certificate and its key as PEM files in this CA's directory.
    fn issue_files(&self, cn: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = self.issue(cn);
        let cert_path = self.dir.path().join(format!("{cn}.pem"));
        let key_path = self.dir.path().join(format!("{cn}.key"));
        let pem = |label: &str, der: &[u8]| {
            let b64 = data_encoding::BASE64.encode(der);
            let body: Vec<&str> = b64
                .as_bytes()
                .chunks(64)
                .map(|c| std::str::from_utf8(c).unwrap_or_default())
                .collect();
            format!(
                "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
                body.join("\n")
            )
        };
        std::fs::write(&cert_path, pem("CERTIFICATE", cert.as_ref())).expect("write cert");
        std::fs::write(&key_path, pem("PRIVATE KEY", key.secret_der())).expect("write key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600));
        }
        (cert_path, key_path)
    }

    /// A client certificate (clientAuth) and its key.
    fn issue(&self, cn: &str) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        use rcgen::KeyUsagePurpose;
        use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("client key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("sign client certificate");
        (
            cert.der().clone(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    }
}

/// A client trusting `server_pki`'s CA and presenting `cert`.
fn mtls_client(
    server_pki: &TestPki,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
) -> reqwest::Client {
    let mut cfg = rustls::ClientConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .expect("default versions")
        .with_root_certificates(roots_of(server_pki))
        .with_client_auth_cert(vec![cert], key)
        .expect("client cert/key accepted");
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    client_with(cfg)
}

async fn mtls_gateway(
    pki: &TestPki,
    client_ca: &ClientCa,
    his: &MockUpstream,
    cloud: &MockUpstream,
) -> TestGateway {
    let extra = format!(
        "{}client_ca = {}\n",
        server_tls(pki),
        toml_path(&client_ca.ca_path())
    );
    spawn_gateway(&config(&extra, &cloud.url(), None, &his.url())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_client_without_certificate_is_refused() {
    let pki = TestPki::new();
    let client_ca = ClientCa::new("B");
    let his = his_mock().await;
    let cloud = MockUpstream::http().await;
    let gw = mtls_gateway(&pki, &client_ca, &his, &cloud).await;

    let resp = call(&pki.client(), &query_balance_url(&gw))
        .try_send()
        .await;
    assert_transport_error(resp, "no client certificate on an mTLS listener");
    assert_nothing_reached(&his, "client without certificate").await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_client_with_certificate_from_client_ca_is_served() {
    let pki = TestPki::new();
    let client_ca = ClientCa::new("B");
    let his = his_mock().await;
    let cloud = MockUpstream::http().await;
    let gw = mtls_gateway(&pki, &client_ca, &his, &cloud).await;

    let (cert, key) = client_ca.issue("cloud-platform-client");
    let resp = call(&mtls_client(&pki, cert, key), &query_balance_url(&gw))
        .try_send()
        .await;
    assert_his_answer(resp, &his).await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_client_with_certificate_from_another_ca_is_refused() {
    let pki = TestPki::new();
    let client_ca = ClientCa::new("B");
    let his = his_mock().await;
    let cloud = MockUpstream::http().await;
    let gw = mtls_gateway(&pki, &client_ca, &his, &cloud).await;

    let stranger = ClientCa::new("C");
    let (cert, key) = stranger.issue("impostor");
    let resp = call(&mtls_client(&pki, cert, key), &query_balance_url(&gw))
        .try_send()
        .await;
    assert_transport_error(resp, "client certificate from another CA");
    assert_nothing_reached(&his, "client certificate from another CA").await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_client_names_outside_allowed_client_names_are_refused() {
    let pki = TestPki::new();
    let client_ca = ClientCa::new("B");
    let his = his_mock().await;
    let cloud = MockUpstream::http().await;
    let extra = format!(
        "{}client_ca = {}\nallowed_client_names = [\"cloud-platform-client\"]\n",
        server_tls(&pki),
        toml_path(&client_ca.ca_path())
    );
    let gw = spawn_gateway(&config(&extra, &cloud.url(), None, &his.url())).await;

    let (cert, key) = client_ca.issue("another-tenant");
    let resp = call(&mtls_client(&pki, cert, key), &query_balance_url(&gw))
        .try_send()
        .await;
    assert_transport_error(resp, "a certificate from the right CA for another name");
    assert_nothing_reached(&his, "a certificate naming someone else").await;

    let (cert, key) = client_ca.issue("cloud-platform-client");
    let resp = call(&mtls_client(&pki, cert, key), &query_balance_url(&gw))
        .try_send()
        .await;
    assert_his_answer(resp, &his).await;
    gw.shutdown().await;
}

/// `allowed_client_names` narrowed by a reload (SIGHUP) applies to a keep-alive connection that
/// was let in before it: its next request is refused and reaches nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn narrowing_allowed_client_names_applies_to_open_connections() {
    let pki = TestPki::new();
    let client_ca = ClientCa::new("R");
    let his = his_mock().await;
    let cloud = MockUpstream::http().await;
    let dir = TempDir::new("prefront-names-reload");
    let path = dir.path().join("prefront.toml");
    let write = |names: &str| {
        let extra = format!(
            "{}client_ca = {}\nallowed_client_names = [{names:?}]\n",
            server_tls(&pki),
            toml_path(&client_ca.ca_path())
        );
        let toml = format!(
            "{}\n[buffer]\npath = {}\n",
            config(&extra, &cloud.url(), None, &his.url()),
            toml_path(&dir.path().join("buffer"))
        );
        std::fs::write(&path, toml).expect("write config");
    };
    write("cloud-platform-client");
    let bin = RunningBinary::start(&path);
    let url = format!("https://{}/his/{QUERY_BALANCE}", bin.cloud_addr());
    let (cert, key) = client_ca.issue("cloud-platform-client");
    // One client: its connection is kept alive between the two calls.
    let client = mtls_client(&pki, cert, key);
    assert_his_answer(call(&client, &url).try_send().await, &his).await;

    write("another-client");
    bin.hup();
    poll_until(Duration::from_secs(10), "the reload", async || {
        bin.log()
            .iter()
            .any(|l| l.contains("configuration reloaded"))
    })
    .await;
    match call(&client, &url).try_send().await {
        Ok(r) => assert_eq!(r.status, 403, "the narrowed names are in force"),
        Err(e) => assert!(!e.is_timeout(), "refused at once, not timed out: {e}"),
    }
    assert_eq!(his.request_count(), 1, "the refused call reached nothing");
}

// ---------------------------------------------------------------------------
// Upstream TLS: the box calling the cloud
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloud_requiring_a_client_certificate_gets_the_boxs_and_a_pinned_ca() {
    let pki = TestPki::new();
    let client_ca = ClientCa::new("box");
    // The cloud side of mutual TLS: the test PKI's server certificate, client certificates from
    // `client_ca` required.
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::pem::PemObject::pem_file_iter(client_ca.ca_path())
        .expect("read client CA")
        .flatten()
    {
        roots.add(c).expect("client CA");
    }
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), ring())
            .build()
            .expect("client verifier");
    let key = rustls::pki_types::pem::PemObject::from_pem_file(pki.server_key_path())
        .expect("server key");
    let chain: Vec<CertificateDer<'static>> =
        rustls::pki_types::pem::PemObject::pem_file_iter(pki.server_cert_path())
            .expect("server cert")
            .flatten()
            .collect();
    let mut server = rustls::ServerConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .expect("server cert");
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    let cloud = prefront::sim::Upstream::start(
        "127.0.0.1:0".parse().expect("addr"),
        Some(Arc::new(server)),
    )
    .await
    .expect("mutual-TLS cloud");
    cloud.respond(GET_PATIENT_INFO, 200, CLOUD_ANSWER);
    let his = his_mock().await;

    // Without the box's certificate: the handshake fails, 10003.
    let gw = spawn_gateway(&config(
        "",
        &cloud.url(),
        Some(&pki.ca_pem_path()),
        &his.url(),
    ))
    .await;
    let v = call_cloud_via_his_listener(&gw).await.json();
    assert_eq!(v["code"], "10003", "{v}");
    gw.shutdown().await;

    // With it (and only the pinned CA trusted): the call goes through.
    let (cert, key) = client_ca.issue_files("prefront-box");
    let toml = ConfigToml::parse(&config(
        "",
        &cloud.url(),
        Some(&pki.ca_pem_path()),
        &his.url(),
    ))
    .set("cloud.pin_ca", true)
    .set_path("cloud.client_cert", &cert)
    .set_path("cloud.client_key", &key)
    .render();
    let gw = spawn_gateway(&toml).await;
    let resp = call_cloud_via_his_listener(&gw).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), CLOUD_ANSWER);
    gw.shutdown().await;
}

async fn call_cloud_via_his_listener(gw: &TestGateway) -> Reply {
    call(
        &plain_client(),
        &format!("{}{GET_PATIENT_INFO}", gw.his_url()),
    )
    .send()
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_with_configured_ca_is_reached_over_https() {
    let pki = TestPki::new();
    let cloud = MockUpstream::https(&pki).await;
    cloud.respond(GET_PATIENT_INFO, 200, CLOUD_ANSWER);
    assert!(cloud.url().starts_with("https://"));
    let his = his_mock().await;
    let gw = spawn_gateway(&config(
        "",
        &cloud.url(),
        Some(&pki.ca_pem_path()),
        &his.url(),
    ))
    .await;

    let resp = call_cloud_via_his_listener(&gw).await;
    assert_eq!(resp.status, 200);
    assert!(
        resp.error_kind().is_none(),
        "a relayed answer carries no X-Prefront-Error"
    );
    assert_eq!(resp.text(), CLOUD_ANSWER);
    let reqs = cloud.wait_for_requests(1, Duration::from_secs(5)).await;
    assert_eq!(reqs.len(), 1, "the cloud must have received the call");
    assert_eq!(reqs[0].path, GET_PATIENT_INFO);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_with_untrusted_certificate_gives_10003_upstream_tls() {
    let pki = TestPki::new();
    let cloud = MockUpstream::https(&pki).await;
    cloud.respond(GET_PATIENT_INFO, 200, CLOUD_ANSWER);
    let his = his_mock().await;
    // No `ca`: only the system roots, which do not include the test CA.
    let gw = spawn_gateway(&config("", &cloud.url(), None, &his.url())).await;

    let resp = call_cloud_via_his_listener(&gw).await;
    assert_eq!(resp.status, 200, "box-raised outcomes are HTTP 200");
    let kind = resp.error_kind();
    let body = resp.json();
    assert_eq!(body["code"], "10003", "body: {body}");
    assert_eq!(body["success"], false, "body: {body}");
    assert!(body.get("data").is_some(), "envelope keeps `data`: {body}");
    assert_eq!(
        cloud.request_count(),
        0,
        "no request may be sent to an unverified cloud"
    );

    // The box really tried (and refused) a handshake with the mock.
    let tried = Poll::new(Duration::from_secs(5), "a refused handshake")
        .try_until(async || cloud.tls_handshake_failures() >= 1)
        .await;
    assert!(tried.is_ok(), "no TLS handshake was attempted");
    assert_eq!(cloud.request_count(), 0);
    // An operator must be able to tell a certificate problem from a link that is down.
    assert_eq!(
        kind,
        Some("upstream-tls"),
        "X-Prefront-Error for an untrusted cloud certificate; body: {body}"
    );
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------
// Protocol versions
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_only_client_is_served() {
    let pki = TestPki::new();
    let his = his_mock().await;
    let cloud = MockUpstream::http().await;
    let gw = spawn_gateway(&config(&server_tls(&pki), &cloud.url(), None, &his.url())).await;

    let mut cfg = rustls::ClientConfig::builder_with_provider(ring())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("ring supports TLS 1.2")
        .with_root_certificates(roots_of(&pki))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];

    // The handshake itself negotiates TLS 1.2 ...
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg.clone()));
    let tcp = tokio::net::TcpStream::connect(gw.cloud_addr)
        .await
        .expect("connect");
    let tls = tokio::time::timeout(
        Duration::from_secs(5),
        connector.connect(ServerName::try_from("localhost").expect("name"), tcp),
    )
    .await
    .expect("handshake within 5 s")
    .expect("TLS 1.2 handshake succeeds");
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    drop(tls);

    // ... and a whole call over it works.
    let resp = call(&client_with(cfg), &query_balance_url(&gw))
        .try_send()
        .await;
    assert_his_answer(resp, &his).await;
    gw.shutdown().await;
}

/// A minimal ClientHello with `client_version` 3.`version_minor` and no supported_versions
/// extension (so it offers nothing newer), hand-built because rustls cannot produce TLS 1.0/1.1.
/// Its suites, groups and signature schemes are ones the box supports with TLS 1.2, so the same
/// hello with `version_minor = 3` gets a ServerHello: only the version can make it fail.
fn client_hello(version_minor: u8) -> Vec<u8> {
    fn ext(out: &mut Vec<u8>, typ: u16, data: &[u8]) {
        out.extend_from_slice(&typ.to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(data);
    }
    let mut hello = Vec::new();
    hello.extend_from_slice(&[0x03, version_minor]); // client_version
    hello.extend_from_slice(&[0x5a; 32]); // random
    hello.push(0); // no session id
                   // ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, ECDHE_RSA_WITH_AES_128_GCM_SHA256,
                   // ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
    let suites: [u8; 6] = [0xc0, 0x2b, 0xc0, 0x2f, 0xcc, 0xa9];
    hello.extend_from_slice(&(suites.len() as u16).to_be_bytes());
    hello.extend_from_slice(&suites);
    hello.extend_from_slice(&[1, 0]); // compression: null

    let mut exts = Vec::new();
    let name = b"localhost";
    let mut sni = Vec::new();
    sni.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
    sni.push(0); // host_name
    sni.extend_from_slice(&(name.len() as u16).to_be_bytes());
    sni.extend_from_slice(name);
    ext(&mut exts, 0x0000, &sni); // server_name
    ext(&mut exts, 0x000a, &[0x00, 0x04, 0x00, 0x1d, 0x00, 0x17]); // groups: x25519, P-256
    ext(&mut exts, 0x000b, &[0x01, 0x00]); // ec_point_formats: uncompressed
    ext(&mut exts, 0x000d, &[0x00, 0x04, 0x04, 0x03, 0x08, 0x04]); // ecdsa_p256_sha256, rsa_pss
    ext(&mut exts, 0x0017, &[]); // extended_master_secret
    ext(&mut exts, 0xff01, &[0x00]); // renegotiation_info
    hello.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    hello.extend_from_slice(&exts);

    let mut hs = vec![0x01]; // ClientHello
    hs.extend_from_slice(&(hello.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&hello);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    record.extend_from_slice(&hs);
    record
}

/// Sends `hello` to `addr` and returns the first TLS record type the server answers with
/// (`None`: it closed without a word).
async fn first_record_type(addr: std::net::SocketAddr, hello: &[u8]) -> Option<u8> {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(hello).await.expect("send ClientHello");
    let mut first = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut first))
        .await
        .expect("the box neither answered nor closed within 5 s");
    match read {
        Ok(1) => Some(first[0]),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls10_and_tls11_client_hellos_are_refused() {
    let pki = TestPki::new();
    let his = his_mock().await;
    let cloud = MockUpstream::http().await;
    let gw = spawn_gateway(&config(&server_tls(&pki), &cloud.url(), None, &his.url())).await;

    // Control: the probe itself is a hello the box accepts when it says TLS 1.2.
    assert_eq!(
        first_record_type(gw.cloud_addr, &client_hello(0x03)).await,
        Some(0x16),
        "a TLS 1.2 hello built the same way must get a ServerHello (handshake record)"
    );
    for (minor, label) in [(0x01u8, "TLS 1.0"), (0x02u8, "TLS 1.1")] {
        let first = first_record_type(gw.cloud_addr, &client_hello(minor)).await;
        // An alert record (21) or a bare close; never a handshake record (22).
        assert!(
            first.is_none_or(|t| t == 0x15),
            "{label}: the box answered with record type {first:?} instead of refusing"
        );
    }
    assert_nothing_reached(&his, "legacy TLS").await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn his_listener_can_serve_https_too() {
    let pki = TestPki::new();
    let cloud = MockUpstream::http().await;
    let toml = format!(
        r#"
[his_listener]
listen = "127.0.0.1:0"
allow = ["127.0.0.0/8"]
tls_cert = {cert}
tls_key = {key}

[cloud_listener]
listen = "127.0.0.1:0"
allow = ["127.0.0.0/8"]

[cloud]
base_url = "{cloud}"
"#,
        cert = toml_path(&pki.server_cert_path()),
        key = toml_path(&pki.server_key_path()),
        cloud = cloud.url(),
    );
    let gw = spawn_gateway(&toml).await;
    let url = format!(
        "https://localhost:{}/prefront/patient/getPatientInfo",
        gw.his_addr.port()
    );
    let resp = post(&url).via(&pki.client()).body("{}").send().await;
    assert_eq!(resp.status, 200);
    assert!(resp.error_kind().is_none());
    assert_eq!(cloud.requests().len(), 1);
    // Plain HTTP to the TLS listener gets nothing relayed.
    let plain = post(format!(
        "http://{}/prefront/patient/getPatientInfo",
        gw.his_addr
    ))
    .body("{}")
    .try_send()
    .await;
    assert!(plain.is_err() || plain.is_ok_and(|r| r.status != 200));
    assert_eq!(cloud.requests().len(), 1);
    gw.shutdown().await;
}
