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
//! * [`ConfigToml`]: a configuration patched by key, rendered back to TOML.
//! * [`post`] / [`get`] / [`request`]: one call builder (sent with reqwest, or rendered raw for a
//!   socket) and its [`Reply`]; [`sign`], the `[auth]` signature.
//! * [`poll_until`] / [`wait_until`] / [`Poll`]: bounded waits for a condition instead of sleeps.
//! * [`pacs`]: the mock PACS serving generated image files of any size (`support::pacs::*`):
//!   every test that needs a PACS uses it, not a [`MockUpstream`] with `Answer::File` (that
//!   simulator answer is `prefront demo`'s PACS, tested through the demo).
//!
//! Note on reqwest 0.13 with `rustls-no-provider`: building a `reqwest::Client`
//! without a preconfigured TLS config panics unless a process-wide rustls
//! crypto provider is installed. Every client built here therefore passes a
//! ring-based `rustls::ClientConfig` (by value, not `Arc`) to
//! `ClientBuilder::tls_backend_preconfigured` (the 0.13 name of 0.12's
//! `use_preconfigured_tls`, which still exists as a deprecated alias).
#![allow(dead_code)]

mod binary;
mod config;
mod gateway;
mod http;
pub mod pacs;
mod wait;
#[allow(unused_imports)] // not every test file runs the binary
pub use binary::*;
pub use config::*;
pub use gateway::*;
#[allow(unused_imports)] // not every test file makes calls
pub use http::*;
#[allow(unused_imports)] // not every test file waits
pub use wait::*;

use std::fs;
use std::io::Write;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::CertificateDer;

/// Timeout applied by every client built in this module.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Writes a secret (a token, a password file) as only its owner may read it (mode 0600).
pub fn write_secret(path: &Path, contents: &str) {
    write_file(path, contents.as_bytes(), true);
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
/// The certificates come from `prefront::sim::Pki`, the same code `prefront demo` uses.
pub struct TestPki {
    dir: TempDir,
    pki: prefront::sim::Pki,
}

impl TestPki {
    pub fn new() -> TestPki {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let pki =
            prefront::sim::Pki::generate(&format!("prefront test CA {}-{n}", std::process::id()))
                .expect("generate the test PKI");
        let dir = TempDir::new("prefront-test-pki");
        pki.write_files(dir.path()).expect("write the test PKI");
        TestPki { dir, pki }
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
        self.pki.ca_pem()
    }

    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.pki.ca_der()
    }

    pub fn server_cert_pem(&self) -> &str {
        self.pki.server_cert_pem()
    }

    pub fn server_key_pem(&self) -> &str {
        self.pki.server_key_pem()
    }

    /// Server config (ring provider, safe default versions, no client auth,
    /// ALPN `http/1.1`) presenting the server cert.
    pub fn server_tls_config(&self) -> Arc<rustls::ServerConfig> {
        self.pki
            .server_tls_config()
            .expect("rustls: server cert/key pair accepted")
    }

    /// Client config (ring provider) trusting ONLY this CA, ALPN `http/1.1`.
    pub fn client_tls_config(&self) -> rustls::ClientConfig {
        self.pki
            .client_tls_config()
            .expect("rustls: CA certificate accepted as trust anchor")
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
// Mock upstream: `prefront::sim::Upstream`, the simulator `prefront demo` runs
// ---------------------------------------------------------------------------

#[allow(unused_imports)] // not every test file names them
pub use prefront::sim::upstream::{DEFAULT_OK_BODY, JSON_CONTENT_TYPE};
#[allow(unused_imports)]
pub use prefront::sim::{Answer, Recorded};

/// Test conveniences on a recorded request.
pub trait RecordedJson {
    /// Body parsed as JSON; panics with the body text if it is not JSON.
    fn json(&self) -> serde_json::Value;
}

impl RecordedJson for Recorded {
    fn json(&self) -> serde_json::Value {
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

/// A simulated HTTP/1.1 server on `127.0.0.1` (plain or TLS) with canned or echo answers,
/// optional delay and a request log. Stops, closing all its connections, on
/// [`MockUpstream::shutdown`] or drop.
pub struct MockUpstream(prefront::sim::Upstream);

impl std::ops::Deref for MockUpstream {
    type Target = prefront::sim::Upstream;

    fn deref(&self) -> &prefront::sim::Upstream {
        &self.0
    }
}

impl MockUpstream {
    /// Plain HTTP server. Must be called inside a tokio runtime.
    pub async fn http() -> MockUpstream {
        Self::http_at("127.0.0.1:0".parse().expect("addr")).await
    }

    /// Plain HTTP server on a given address: a cloud that comes back where it was (outage
    /// tests take `closed_port_addr()`, call it down, then start the mock there).
    pub async fn http_at(addr: SocketAddr) -> MockUpstream {
        MockUpstream(
            prefront::sim::Upstream::start(addr, None)
                .await
                .expect("mock upstream: bind"),
        )
    }

    /// HTTPS server presenting `pki`'s server certificate (valid for
    /// `localhost`, 127.0.0.1 and ::1).
    pub async fn https(pki: &TestPki) -> MockUpstream {
        MockUpstream(
            prefront::sim::Upstream::start(
                "127.0.0.1:0".parse().expect("addr"),
                Some(pki.server_tls_config()),
            )
            .await
            .expect("mock upstream: bind"),
        )
    }

    /// Stops accepting, closes all connections and waits for the server tasks to finish.
    pub async fn shutdown(self) {
        self.0.shutdown().await;
    }
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
