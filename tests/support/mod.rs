//! Shared integration-test support for `prefront`.
//!
//! Each test file uses a subset of this module (`mod support; use support::*;`),
//! hence the module-level `dead_code` allowance.
//!
//! Contents:
//! * [`TestPki`]: throwaway CA + server certificate/key for `localhost`,
//!   `127.0.0.1` and `::1`, written to a fresh temp dir (removed on drop).
//! * [`MockUpstream`]: a hyper 1 HTTP/1.1 server (plain or TLS) on
//!   `127.0.0.1:0` with canned/echo answers, optional delay and a request log.
//! * [`plain_client`], [`closed_port_addr`], [`LogCapture`].
//! * [`pacs`]: a mock PACS serving generated image files of any size (`support::pacs::*`).
//!
//! Note on reqwest 0.13 with `rustls-no-provider`: building a `reqwest::Client`
//! without a preconfigured TLS config panics unless a process-wide rustls
//! crypto provider is installed. Every client built here therefore passes a
//! ring-based `rustls::ClientConfig` (by value, not `Arc`) to
//! `ClientBuilder::tls_backend_preconfigured` (the 0.13 name of 0.12's
//! `use_preconfigured_tls`, which still exists as a deprecated alias).
#![allow(dead_code)]

mod binary;
mod gateway;
pub mod pacs;
#[allow(unused_imports)] // not every test file runs the binary
pub use binary::*;
pub use gateway::*;

use std::collections::HashMap;
use std::convert::Infallible;
use std::fs;
use std::io::Write;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// Timeout applied by every client built in this module.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// The body a fresh [`MockUpstream`] answers with (status 200) on any path.
pub const DEFAULT_OK_BODY: &str = r#"{"success":true,"msg":"成功","code":"10001","data":null}"#;

/// Content type of every mock answer.
pub const JSON_CONTENT_TYPE: &str = "application/json;charset=UTF-8";

/// Upper bound on a TLS handshake in the mock server.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in another test thread while holding the lock must not cascade.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn ring_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

// ---------------------------------------------------------------------------
// Temp dirs
// ---------------------------------------------------------------------------

static TEMP_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh, uniquely named directory under `std::env::temp_dir()`, removed
/// (best effort) on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let base = std::env::temp_dir();
        loop {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = base.join(format!("{prefix}-{}-{n}-{nanos}", std::process::id()));
            match fs::create_dir(&path) {
                Ok(()) => return TempDir { path },
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => panic!("cannot create temp dir {}: {e}", path.display()),
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

fn write_file(path: &Path, contents: &[u8], private: bool) {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = opts
        .open(path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
    f.write_all(contents)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    #[cfg(unix)]
    if private {
        // The umask can only clear bits, but be explicit anyway.
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))
            .unwrap_or_else(|e| panic!("cannot chmod 600 {}: {e}", path.display()));
    }
}

// ---------------------------------------------------------------------------
// PKI
// ---------------------------------------------------------------------------

/// A throwaway CA and a server certificate (SANs: DNS `localhost`,
/// IP `127.0.0.1`, IP `::1`) signed by it, written to a fresh temp dir:
/// `ca.pem`, `server.pem` (leaf only), `server.key` (PKCS#8 PEM, mode 0600).
pub struct TestPki {
    dir: TempDir,
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    server_cert_pem: String,
    server_cert_der: CertificateDer<'static>,
    server_key_pem: String,
    server_key_der: Vec<u8>,
}

impl TestPki {
    pub fn new() -> TestPki {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };

        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);

        let mut ca_params =
            CertificateParams::new(Vec::<String>::new()).expect("rcgen: empty CA params");
        ca_params.distinguished_name.push(
            DnType::CommonName,
            format!("prefront test CA {}-{n}", std::process::id()),
        );
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().expect("rcgen: generate CA key");
        let ca_cert = ca_params
            .self_signed(&ca_key)
            .expect("rcgen: self-sign CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);

        let mut srv_params = CertificateParams::new(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ])
        .expect("rcgen: server params");
        srv_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        srv_params.is_ca = IsCa::ExplicitNoCa;
        srv_params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        srv_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        srv_params.use_authority_key_identifier_extension = true;
        let srv_key = KeyPair::generate().expect("rcgen: generate server key");
        let srv_cert = srv_params
            .signed_by(&srv_key, &issuer)
            .expect("rcgen: sign server certificate");

        let pki = TestPki {
            dir: TempDir::new("prefront-test-pki"),
            ca_pem: ca_cert.pem(),
            ca_der: ca_cert.der().clone(),
            server_cert_pem: srv_cert.pem(),
            server_cert_der: srv_cert.der().clone(),
            server_key_pem: srv_key.serialize_pem(),
            server_key_der: srv_key.serialize_der(),
        };
        write_file(&pki.ca_pem_path(), pki.ca_pem.as_bytes(), false);
        write_file(
            &pki.server_cert_path(),
            pki.server_cert_pem.as_bytes(),
            false,
        );
        write_file(&pki.server_key_path(), pki.server_key_pem.as_bytes(), true);
        pki
    }

    /// The temp dir holding the PKI files (removed when `self` drops).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn ca_pem_path(&self) -> PathBuf {
        self.dir().join("ca.pem")
    }

    pub fn server_cert_path(&self) -> PathBuf {
        self.dir().join("server.pem")
    }

    pub fn server_key_path(&self) -> PathBuf {
        self.dir().join("server.key")
    }

    /// The CA certificate as PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca_der.clone()
    }

    pub fn server_cert_pem(&self) -> &str {
        &self.server_cert_pem
    }

    pub fn server_key_pem(&self) -> &str {
        &self.server_key_pem
    }

    /// Server config (ring provider, safe default versions, no client auth,
    /// ALPN `http/1.1`) presenting the server cert.
    pub fn server_tls_config(&self) -> Arc<rustls::ServerConfig> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key_der.clone()));
        let mut cfg = rustls::ServerConfig::builder_with_provider(ring_provider())
            .with_safe_default_protocol_versions()
            .expect("rustls: ring supports the default protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![self.server_cert_der.clone()], key)
            .expect("rustls: server cert/key pair accepted");
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(cfg)
    }

    /// Client config (ring provider) trusting ONLY this CA, ALPN `http/1.1`.
    pub fn client_tls_config(&self) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.ca_der.clone())
            .expect("rustls: CA certificate accepted as trust anchor");
        client_config_with_roots(roots)
    }

    /// reqwest client trusting ONLY this CA (no system roots), no proxy,
    /// 10 s timeout.
    pub fn client(&self) -> reqwest::Client {
        build_client(self.client_tls_config())
    }
}

impl Default for TestPki {
    fn default() -> Self {
        TestPki::new()
    }
}

fn client_config_with_roots(roots: rustls::RootCertStore) -> rustls::ClientConfig {
    let mut cfg = rustls::ClientConfig::builder_with_provider(ring_provider())
        .with_safe_default_protocol_versions()
        .expect("rustls: ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg
}

fn build_client(tls: rustls::ClientConfig) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .timeout(CLIENT_TIMEOUT)
        .build()
        .expect("reqwest: build test client")
}

/// Plain HTTP client: no proxy, 10 s timeout. Its TLS config trusts no root
/// at all, so any `https://` request made with it fails verification.
pub fn plain_client() -> reqwest::Client {
    build_client(client_config_with_roots(rustls::RootCertStore::empty()))
}

/// Reads a reqwest response body and parses it as JSON (reqwest is built
/// without its `json` feature, so `Response::json` does not exist). Panics
/// with the status and body text if the body cannot be read or is not JSON.
pub async fn read_json(resp: reqwest::Response) -> serde_json::Value {
    let status = resp.status();
    let text = resp
        .text()
        .await
        .unwrap_or_else(|e| panic!("reading response body (status {status}) failed: {e}"));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("response body (status {status}) is not JSON ({e}): {text:?}"))
}

/// A `127.0.0.1` address where nothing listens (bind port 0, take the
/// address, drop the listener).
pub fn closed_port_addr() -> SocketAddr {
    let l = StdTcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr of bound listener")
}

// ---------------------------------------------------------------------------
// Recorded requests
// ---------------------------------------------------------------------------

/// One request as received by a [`MockUpstream`].
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path without query.
    pub path: String,
    pub query: Option<String>,
    /// Header names are lower-case; order and duplicates preserved.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub peer: SocketAddr,
}

impl Recorded {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All values of header `name` (case-insensitive).
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Body as (lossy) UTF-8 text.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Body parsed as JSON; panics with the body text if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "request {} {} body is not JSON ({e}): {:?}",
                self.method,
                self.path,
                self.body_text()
            )
        })
    }
}

// ---------------------------------------------------------------------------
// Mock upstream
// ---------------------------------------------------------------------------

#[derive(Clone)]
enum Answer {
    Fixed { status: u16, body: String },
    Echo,
}

struct MockState {
    routes: HashMap<String, Answer>,
    default: Answer,
    delay: Duration,
    requests: Vec<Recorded>,
    tls_handshake_failures: usize,
}

/// A mock HTTP/1.1 server on `127.0.0.1:0` (plain or TLS). Stops, closing
/// all its connections, on [`MockUpstream::shutdown`] or drop.
pub struct MockUpstream {
    addr: SocketAddr,
    tls: bool,
    state: Arc<Mutex<MockState>>,
    stop: Option<watch::Sender<bool>>,
    task: Option<JoinHandle<()>>,
}

impl MockUpstream {
    /// Plain HTTP server. Must be called inside a tokio runtime.
    pub async fn http() -> MockUpstream {
        Self::start(None, "127.0.0.1:0".parse().expect("addr")).await
    }

    /// Plain HTTP server on a given address: a cloud that comes back where it was (outage
    /// tests take `closed_port_addr()`, call it down, then start the mock there).
    pub async fn http_at(addr: SocketAddr) -> MockUpstream {
        Self::start(None, addr).await
    }

    /// HTTPS server presenting `pki`'s server certificate (valid for
    /// `localhost`, 127.0.0.1 and ::1).
    pub async fn https(pki: &TestPki) -> MockUpstream {
        Self::start(
            Some(tokio_rustls::TlsAcceptor::from(pki.server_tls_config())),
            "127.0.0.1:0".parse().expect("addr"),
        )
        .await
    }

    async fn start(tls: Option<tokio_rustls::TlsAcceptor>, at: SocketAddr) -> MockUpstream {
        let listener = TcpListener::bind(at).await.expect("mock upstream: bind");
        let addr = listener.local_addr().expect("mock upstream: local_addr");
        let state = Arc::new(Mutex::new(MockState {
            routes: HashMap::new(),
            default: Answer::Fixed {
                status: 200,
                body: DEFAULT_OK_BODY.to_string(),
            },
            delay: Duration::ZERO,
            requests: Vec::new(),
            tls_handshake_failures: 0,
        }));
        let (stop_tx, stop_rx) = watch::channel(false);
        let is_tls = tls.is_some();
        let task = tokio::spawn(accept_loop(listener, tls, Arc::clone(&state), stop_rx));
        MockUpstream {
            addr,
            tls: is_tls,
            state,
            stop: Some(stop_tx),
            task: Some(task),
        }
    }

    /// `https://localhost:PORT` or `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        if self.tls {
            format!("https://localhost:{}", self.addr.port())
        } else {
            format!("http://127.0.0.1:{}", self.addr.port())
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Fixed answer for exactly `path` (no query). Overrides the default/echo.
    pub fn respond(&self, path: &str, status: u16, body: &str) {
        check_status(status);
        lock(&self.state).routes.insert(
            path.to_string(),
            Answer::Fixed {
                status,
                body: body.to_string(),
            },
        );
    }

    /// Answer for every path without a fixed answer (ends echo mode).
    pub fn respond_default(&self, status: u16, body: &str) {
        check_status(status);
        lock(&self.state).default = Answer::Fixed {
            status,
            body: body.to_string(),
        };
    }

    /// From now on answer every path with 200 and
    /// `{"success":true,"msg":"成功","code":"10001","data":{"path":..,"body":..}}`
    /// where `body` is the request body as JSON, or as a string if not JSON.
    /// Clears fixed answers registered so far (later `respond` calls still
    /// take precedence for their path).
    pub fn echo(&self) {
        let mut st = lock(&self.state);
        st.routes.clear();
        st.default = Answer::Echo;
    }

    /// Sleep this long before answering each request (`Duration::ZERO` resets).
    pub fn set_delay(&self, delay: Duration) {
        lock(&self.state).delay = delay;
    }

    /// Everything received so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state).requests.clone()
    }

    /// Number of requests received so far.
    pub fn request_count(&self) -> usize {
        lock(&self.state).requests.len()
    }

    /// Number of TLS handshakes that failed or timed out (HTTPS mocks only).
    pub fn tls_handshake_failures(&self) -> usize {
        lock(&self.state).tls_handshake_failures
    }

    /// Polls (every 10 ms) until at least `n` requests arrived or `timeout`
    /// elapsed; returns whatever was received (caller asserts on the length).
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let deadline = Instant::now() + timeout;
        loop {
            let reqs = self.requests();
            if reqs.len() >= n || Instant::now() >= deadline {
                return reqs;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops accepting, closes all connections (in-flight requests are cut
    /// off) and waits for the server tasks to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        // Dropping the sender wakes every receiver; the accept loop then
        // aborts its connection tasks. Abort as a backstop too.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn stopped(rx: &mut watch::Receiver<bool>) {
    // Resolves when `true` is sent or the sender is dropped.
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<Mutex<MockState>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut conns: JoinSet<()> = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(x) => x,
                    Err(_) => {
                        // e.g. EMFILE: back off briefly instead of spinning.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let state = Arc::clone(&state);
                let tls = tls.clone();
                conns.spawn(async move {
                    match tls {
                        None => serve_conn(tcp, peer, state).await,
                        Some(acceptor) => {
                            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
                                .await
                            {
                                Ok(Ok(stream)) => serve_conn(stream, peer, state).await,
                                _ => lock(&state).tls_handshake_failures += 1,
                            }
                        }
                    }
                });
            }
        }
    }
    drop(listener);
    // Abort and wait: every connection socket is closed when this returns.
    conns.shutdown().await;
}

async fn serve_conn<S>(io: S, peer: SocketAddr, state: Arc<Mutex<MockState>>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| handle(req, peer, Arc::clone(&state)));
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .await;
}

async fn handle(
    req: Request<Incoming>,
    peer: SocketAddr,
    state: Arc<Mutex<MockState>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            return Ok(json_response(
                400,
                format!(r#"{{"mock_error":"reading request body failed: {e}"}}"#),
            ))
        }
    };
    let path = parts.uri.path().to_string();
    let rec = Recorded {
        method: parts.method.as_str().to_string(),
        path: path.clone(),
        query: parts.uri.query().map(str::to_string),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.clone(),
        peer,
    };
    let (answer, delay) = {
        let mut st = lock(&state);
        st.requests.push(rec);
        let answer = st.routes.get(&path).unwrap_or(&st.default).clone();
        (answer, st.delay)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    Ok(match answer {
        Answer::Fixed { status, body } => json_response(status, body),
        Answer::Echo => {
            let body_value =
                serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_else(|_| {
                    serde_json::Value::String(String::from_utf8_lossy(&body).into_owned())
                });
            let v = serde_json::json!({
                "success": true,
                "msg": "成功",
                "code": "10001",
                "data": { "path": path, "body": body_value },
            });
            json_response(200, v.to_string())
        }
    })
}

fn check_status(status: u16) {
    assert!(
        StatusCode::from_u16(status).is_ok(),
        "mock upstream: invalid HTTP status {status}"
    );
}

fn json_response(status: u16, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    // Statuses are validated in `respond*`; 500 is an unreachable fallback.
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(JSON_CONTENT_TYPE),
    );
    resp
}

// ---------------------------------------------------------------------------
// Log capture
// ---------------------------------------------------------------------------

/// `tracing_subscriber::fmt::MakeWriter` collecting output in memory.
/// Clones share the same buffer.
#[derive(Clone, Default)]
pub struct LogCapture {
    buf: Arc<Mutex<Vec<u8>>>,
}

impl LogCapture {
    pub fn new() -> LogCapture {
        LogCapture::default()
    }

    /// Everything written so far (lossy UTF-8).
    pub fn contents(&self) -> String {
        String::from_utf8_lossy(&lock(&self.buf)).into_owned()
    }

    /// Discards everything written so far.
    pub fn clear(&self) {
        lock(&self.buf).clear();
    }
}

/// Writer handed out by [`LogCapture`].
pub struct LogCaptureWriter {
    buf: Arc<Mutex<Vec<u8>>>,
}

impl Write for LogCaptureWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        lock(&self.buf).extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogCapture {
    type Writer = LogCaptureWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LogCaptureWriter {
            buf: Arc::clone(&self.buf),
        }
    }
}
