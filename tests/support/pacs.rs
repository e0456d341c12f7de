//! The tests' one PACS fake (hyper 1, HTTP/1.1, `127.0.0.1:0`) serving generated image files of any
//! size. (`prefront::sim`'s `Answer::File` is the demo's PACS: the demo test exercises it; the
//! other tests do not use it.)
//!
//! Content: byte `i` of every file is `PATTERN[i % PATTERN_LEN]`, a fixed pseudo-random block of
//! prime length, so any byte range of a file of any size is served by slicing a static buffer
//! (zero copy) and its SHA-256 is cheap to recompute ([`expected_sha256`]).
//!
//! What is served is chosen by a *spec*, taken from the `dcmId` query value on
//! `/pacs/dcm?dcmId=…&hospitalId=…` or from the path on `/file/<spec>` (after [`MockPacs::alias`]
//! lookup). A spec is `-`-separated words:
//!
//! | spec | answer |
//! |---|---|
//! | `size-N` | a file of `N` bytes (`ETag: "v1-N"`, `Last-Modified`, `Accept-Ranges: bytes`, `Content-Type: application/dicom`, `Content-Disposition: attachment;filename=<uuid-ish>.dcm`) |
//! | `…-status-C` | status `C` with the mock's own body ([`MOCK_ERROR_BODY`]) |
//! | `…-drop-K` | declares the whole `Content-Length`, sends `K` body bytes, then closes the connection |
//! | `…-stall-K` | sends `K` body bytes, then nothing more (the socket stays open) |
//! | `…-pace-C-MS` | sends `C` bytes every `MS` milliseconds |
//! | `…-notype` | no `Content-Type` |
//! | `…-chunked` | no `Content-Length` (chunked transfer encoding) |
//! | `…-hang` | never answers (no status line, the socket stays open) |
//! | `redirect-K` | `302` to the location registered by [`MockPacs::redirect`] |
//! | anything else | `404` with [`MOCK_ERROR_BODY`] |
//!
//! Requests support `Range: bytes=a-b | a- | -n` (one range; `206` + `Content-Range`, or `416`
//! with `Content-Range: bytes */N`), `If-Range` (the ETag: range honoured; anything else: the
//! whole file with `200`), `If-None-Match` / `If-Modified-Since` (`304`) and `HEAD`.
//!
//! Every request is recorded ([`PacsRequest`]): the URI exactly as received, decoded query
//! parameters, headers, and a [`StreamStats`] telling how many body bytes were handed to the
//! connection and how the body ended (complete, client gone, dropped on purpose).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{HeaderMap, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// Length of the repeating content block: a prime, so it never lines up with chunk sizes.
pub const PATTERN_LEN: usize = 65521;

/// Largest body frame the mock hands to hyper.
pub const CHUNK: usize = 64 * 1024;

/// `Last-Modified` of every file.
pub const LAST_MODIFIED: &str = "Wed, 21 Oct 2015 07:28:00 GMT";

/// `Content-Type` of every file (unless the spec says `notype`).
pub const DICOM_TYPE: &str = "application/dicom";

/// The mock's own body on error statuses: the gateway must not pass it to the cloud.
pub const MOCK_ERROR_BODY: &str =
    "<html><body>MOCK-PACS-INTERNAL-ERROR-PAGE: java.lang.NullPointerException at com.pacs.DcmServlet</body></html>";

/// The PACS's session cookie and server banner: internal details the gateway must not pass on.
pub const INTERNAL_COOKIE: &str = "JSESSIONID=0123456789ABCDEF; Path=/pacs; HttpOnly";
pub const INTERNAL_SERVER: &str = "Apache-Coyote/1.1 (pacs01.hospital.lan)";

/// How long `stall` and `hang` keep the socket open before giving up.
const STALL_FOR: Duration = Duration::from_secs(120);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---------------------------------------------------------------------------
// Content
// ---------------------------------------------------------------------------

/// The pattern repeated to `PATTERN_LEN + CHUNK` bytes: any window of up to `CHUNK` bytes
/// starting at `offset % PATTERN_LEN` is one contiguous slice of it.
fn doubled_pattern() -> &'static Bytes {
    static DOUBLED: OnceLock<Bytes> = OnceLock::new();
    DOUBLED.get_or_init(|| {
        // xorshift64*, fixed seed: the same content in every run and every process.
        let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut pattern = Vec::with_capacity(PATTERN_LEN);
        while pattern.len() < PATTERN_LEN {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            let v = s.wrapping_mul(0x2545_F491_4F6C_DD1D);
            for b in v.to_le_bytes() {
                if pattern.len() < PATTERN_LEN {
                    pattern.push(b);
                }
            }
        }
        let mut doubled = Vec::with_capacity(PATTERN_LEN + CHUNK);
        while doubled.len() < PATTERN_LEN + CHUNK {
            let take = (PATTERN_LEN + CHUNK - doubled.len()).min(PATTERN_LEN);
            doubled.extend_from_slice(&pattern[..take]);
        }
        Bytes::from(doubled)
    })
}

/// Content bytes `offset .. offset + len` (`len <= CHUNK`), zero copy.
fn window(offset: u64, len: usize) -> Bytes {
    assert!(len <= CHUNK, "window larger than a chunk");
    let start = (offset % PATTERN_LEN as u64) as usize;
    doubled_pattern().slice(start..start + len)
}

/// Byte `i` of every generated file.
pub fn content_byte(i: u64) -> u8 {
    doubled_pattern()[(i % PATTERN_LEN as u64) as usize]
}

/// Content bytes `start ..= end` as one buffer (for small ranges).
pub fn content(start: u64, end_inclusive: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity((end_inclusive + 1 - start) as usize);
    let mut at = start;
    while at <= end_inclusive {
        let n = ((end_inclusive + 1 - at) as usize).min(CHUNK);
        out.extend_from_slice(&window(at, n));
        at += n as u64;
    }
    out
}

/// Incremental SHA-256 (ring) with a byte count.
pub struct Sha256Stream {
    ctx: ring::digest::Context,
    len: u64,
}

impl Sha256Stream {
    pub fn new() -> Sha256Stream {
        Sha256Stream {
            ctx: ring::digest::Context::new(&ring::digest::SHA256),
            len: 0,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.ctx.update(data);
        self.len += data.len() as u64;
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Lower-case hex digest.
    pub fn finish(self) -> String {
        hex(self.ctx.finish().as_ref())
    }
}

impl Default for Sha256Stream {
    fn default() -> Self {
        Sha256Stream::new()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 (lower-case hex) of a file's bytes `start ..= end_inclusive`.
pub fn expected_sha256_range(start: u64, end_inclusive: u64) -> String {
    let mut h = Sha256Stream::new();
    let mut at = start;
    while at <= end_inclusive {
        let n = ((end_inclusive + 1 - at) as usize).min(CHUNK);
        h.update(&window(at, n));
        at += n as u64;
    }
    h.finish()
}

/// SHA-256 (lower-case hex) of a whole file of `size` bytes.
pub fn expected_sha256(size: u64) -> String {
    if size == 0 {
        return Sha256Stream::new().finish();
    }
    expected_sha256_range(0, size - 1)
}

/// SHA-256 (lower-case hex) of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
}

/// The ETag the mock gives a file of `size` bytes (quotes included).
pub fn etag(size: u64) -> String {
    format!("\"v1-{size}\"")
}

/// The file name the mock's `Content-Disposition` gives a file of `size` bytes.
pub fn disposition_filename(size: u64) -> String {
    format!("1b4e28ba-2fa1-11d2-883f-{:012x}.dcm", size)
}

// ---------------------------------------------------------------------------
// Percent-encoding (the test crate cannot name `url`/`percent-encoding` directly)
// ---------------------------------------------------------------------------

/// Percent-encodes everything but RFC 3986 unreserved characters (so a space is `%20` and a
/// `+` is `%2B`: unambiguous under both RFC 3986 and form decoding).
pub fn pct_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes one query component the way a servlet container does (`application/x-www-form-
/// urlencoded`: `+` is a space, `%XX` a byte). Invalid escapes are kept literally.
/// Returns the raw bytes (the caller decides whether they must be UTF-8).
pub fn form_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match h {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// Decodes `%XX` escapes only (a path segment: `+` stays `+`). Invalid escapes are kept.
pub fn pct_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// `a=1&b=2` → `[("a","1"),("b","2")]`, form-decoded (lossy UTF-8).
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                String::from_utf8_lossy(&form_decode(k)).into_owned(),
                String::from_utf8_lossy(&form_decode(v)).into_owned(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Recorded requests and streams
// ---------------------------------------------------------------------------

/// How a response body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// Every planned byte was handed to the connection.
    Complete,
    /// The body was dropped before its end: the peer closed the connection (or the connection
    /// failed). `sent` body bytes had been handed over by then.
    ClientGone { sent: u64, at: Instant },
    /// The mock cut the connection on purpose (`drop-K`).
    DroppedByMock { sent: u64 },
}

/// Progress of one response body.
#[derive(Debug)]
pub struct StreamStats {
    planned: u64,
    sent: AtomicU64,
    end: Mutex<Option<StreamEnd>>,
}

impl StreamStats {
    fn new(planned: u64) -> Arc<StreamStats> {
        Arc::new(StreamStats {
            planned,
            sent: AtomicU64::new(0),
            end: Mutex::new(None),
        })
    }

    /// Body bytes the response was going to carry.
    pub fn planned(&self) -> u64 {
        self.planned
    }

    /// Body bytes handed to the connection so far.
    pub fn bytes_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// How the body ended, if it has.
    pub fn end(&self) -> Option<StreamEnd> {
        *lock(&self.end)
    }

    /// True once the body was dropped early because the peer went away.
    pub fn client_gone(&self) -> bool {
        matches!(self.end(), Some(StreamEnd::ClientGone { .. }))
    }

    fn finish(&self, end: StreamEnd) {
        let mut e = lock(&self.end);
        if e.is_none() {
            *e = Some(end);
        }
    }

    /// Polls until the body ended or `timeout` elapsed.
    pub async fn wait_end(&self, timeout: Duration) -> Option<StreamEnd> {
        super::Poll::new(timeout, "the end of a PACS response body")
            .try_value(async || self.end())
            .await
            .ok()
    }
}

/// One request as received by the [`MockPacs`].
#[derive(Debug, Clone)]
pub struct PacsRequest {
    pub method: String,
    /// The request target exactly as received (path and query, encoding untouched).
    pub uri: String,
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// Query parameters, form-decoded, in order.
    pub params: Vec<(String, String)>,
    /// Header names lower-case, in order.
    pub headers: Vec<(String, String)>,
    pub peer: SocketAddr,
    pub received_at: Instant,
    /// The response body's progress.
    pub stream: Arc<StreamStats>,
}

impl PacsRequest {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every decoded value of query parameter `name`.
    pub fn param_all(&self, name: &str) -> Vec<&str> {
        self.params
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The only decoded value of query parameter `name` (None if absent or repeated).
    pub fn param(&self, name: &str) -> Option<&str> {
        match self.param_all(name).as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------
// The mock
// ---------------------------------------------------------------------------

#[derive(Default)]
struct PacsState {
    aliases: HashMap<String, String>,
    redirects: HashMap<String, String>,
    requests: Vec<PacsRequest>,
}

/// The mock PACS. Stops, closing all its connections, on drop.
pub struct MockPacs {
    addr: SocketAddr,
    state: Arc<Mutex<PacsState>>,
    stop: Option<watch::Sender<bool>>,
    task: Option<JoinHandle<()>>,
}

impl MockPacs {
    /// A mock PACS on `127.0.0.1:0`. Must be called inside a tokio runtime.
    pub async fn start() -> MockPacs {
        MockPacs::start_on("127.0.0.1").await
    }

    /// A mock PACS on `ip:0` (e.g. `127.0.0.2`, another loopback address).
    pub async fn start_on(ip: &str) -> MockPacs {
        let listener = TcpListener::bind((ip, 0))
            .await
            .unwrap_or_else(|e| panic!("mock PACS: bind {ip}:0: {e}"));
        let addr = listener.local_addr().expect("mock PACS: local_addr");
        let state = Arc::new(Mutex::new(PacsState::default()));
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&state), stop_rx));
        MockPacs {
            addr,
            state,
            stop: Some(stop_tx),
            task: Some(task),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `127.0.0.1:PORT`, as written in `[pacs] internal_hosts`.
    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The `[pacs] dcm_url` template for this mock.
    pub fn dcm_url_template(&self) -> String {
        format!(
            "{}/pacs/dcm?dcmId={{dcmId}}&hospitalId={{hospitalId}}",
            self.url()
        )
    }

    /// `http://127.0.0.1:PORT/file/<spec>`.
    pub fn file_url(&self, spec: &str) -> String {
        format!("{}/file/{spec}", self.url())
    }

    /// Serve `spec` for the dcmId (or `/file/` name) `id`.
    pub fn alias(&self, id: &str, spec: &str) {
        lock(&self.state)
            .aliases
            .insert(id.to_string(), spec.to_string());
    }

    /// Registers a `302` to `location`; returns the spec (`redirect-K`) that answers it.
    pub fn redirect(&self, location: &str) -> String {
        let mut st = lock(&self.state);
        let key = format!("redirect-{}", st.redirects.len() + 1);
        st.redirects.insert(key.clone(), location.to_string());
        key
    }

    /// Everything received so far, in arrival order.
    pub fn requests(&self) -> Vec<PacsRequest> {
        lock(&self.state).requests.clone()
    }

    pub fn request_count(&self) -> usize {
        lock(&self.state).requests.len()
    }

    /// Polls until at least `n` requests arrived or `timeout` elapsed; what arrived by then.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<PacsRequest> {
        let _ = super::Poll::new(timeout, format!("{n} PACS request(s)"))
            .try_until(async || self.request_count() >= n)
            .await;
        self.requests()
    }
}

impl Drop for MockPacs {
    fn drop(&mut self) {
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
    state: Arc<Mutex<PacsState>>,
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
                        // A failed accept (out of descriptors, say): back off a moment rather
                        // than spin; there is no condition to wait for.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let state = Arc::clone(&state);
                conns.spawn(async move {
                    let svc = service_fn(move |req| handle(req, peer, Arc::clone(&state)));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        }
    }
    drop(listener);
    conns.shutdown().await;
}

/// What a spec asks for.
#[derive(Debug, Default, Clone)]
struct Spec {
    size: u64,
    status: Option<u16>,
    drop_after: Option<u64>,
    stall_after: Option<u64>,
    pace: Option<(u64, Duration)>,
    no_type: bool,
    chunked: bool,
    hang: bool,
}

fn parse_spec(s: &str) -> Option<Spec> {
    let words: Vec<&str> = s.split('-').collect();
    let num = |i: usize| -> Option<u64> { words.get(i).and_then(|w| w.parse().ok()) };
    if words.first() != Some(&"size") {
        return None;
    }
    let mut spec = Spec {
        size: num(1)?,
        ..Spec::default()
    };
    let mut i = 2;
    while i < words.len() {
        match words[i] {
            "status" => {
                spec.status = Some(u16::try_from(num(i + 1)?).ok()?);
                i += 2;
            }
            "drop" => {
                spec.drop_after = Some(num(i + 1)?);
                i += 2;
            }
            "stall" => {
                spec.stall_after = Some(num(i + 1)?);
                i += 2;
            }
            "pace" => {
                spec.pace = Some((num(i + 1)?.max(1), Duration::from_millis(num(i + 2)?)));
                i += 3;
            }
            "notype" => {
                spec.no_type = true;
                i += 1;
            }
            "hang" => {
                spec.hang = true;
                i += 1;
            }
            "chunked" => {
                spec.chunked = true;
                i += 1;
            }
            _ => return None,
        }
    }
    Some(spec)
}

/// `Range: bytes=…` against a file of `size` bytes: `Ok(None)` no (usable) range, `Ok(Some)`
/// the inclusive range, `Err(())` unsatisfiable.
fn parse_range(value: &str, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None); // multipart ranges: not supported, whole file
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 || size == 0 {
            return Err(());
        }
        let n = n.min(size);
        return Ok(Some((size - n, size - 1)));
    }
    let start: u64 = a.parse().map_err(|_| ())?;
    if start >= size {
        return Err(());
    }
    let end = if b.is_empty() {
        size - 1
    } else {
        let e: u64 = b.parse().map_err(|_| ())?;
        if e < start {
            return Ok(None); // syntactically invalid: ignored
        }
        e.min(size - 1)
    };
    Ok(Some((start, end)))
}

type MockBody = PacsBody;

fn simple(status: u16, body: &'static str, extra: &[(&str, String)]) -> Response<MockBody> {
    let bytes = Bytes::from_static(body.as_bytes());
    let stats = StreamStats::new(bytes.len() as u64);
    let mut resp = Response::new(PacsBody::fixed(bytes, stats));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("text/html"));
    h.insert("content-length", HeaderValue::from(body.len()));
    for (k, v) in extra {
        if let (Ok(k), Ok(v)) = (
            hyper::header::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            h.insert(k, v);
        }
    }
    resp
}

async fn handle(
    req: Request<Incoming>,
    peer: SocketAddr,
    state: Arc<Mutex<PacsState>>,
) -> Result<Response<MockBody>, Infallible> {
    let (parts, _body) = req.into_parts();
    let uri = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_else(|| parts.uri.to_string());
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().map(str::to_string);
    let params = query.as_deref().map(parse_query).unwrap_or_default();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();

    // Which file: the dcmId on /pacs/dcm, the name on /file/<name>.
    let name: Option<String> = if path == "/pacs/dcm" {
        params
            .iter()
            .find(|(k, _)| k == "dcmId")
            .map(|(_, v)| v.clone())
    } else {
        path.strip_prefix("/file/")
            .map(|n| String::from_utf8_lossy(&pct_decode(n)).into_owned())
    };
    let (spec_text, redirect) = {
        let st = lock(&state);
        let spec_text = name
            .as_deref()
            .map(|n| st.aliases.get(n).cloned().unwrap_or_else(|| n.to_string()));
        let redirect = spec_text
            .as_deref()
            .and_then(|s| st.redirects.get(s).cloned());
        (spec_text, redirect)
    };
    let spec = spec_text.as_deref().and_then(parse_spec);

    let is_head = parts.method == Method::HEAD;
    let response = respond(&parts.headers, is_head, spec, redirect);
    let stats = response.body().stats.clone();
    lock(&state).requests.push(PacsRequest {
        method: parts.method.as_str().to_string(),
        uri,
        path,
        query,
        params,
        headers,
        peer,
        received_at: Instant::now(),
        stream: stats,
    });
    if response.body().hang {
        // `hang`: never answering is what this spec asks for.
        tokio::time::sleep(STALL_FOR).await;
    }
    Ok(response)
}

fn respond(
    headers: &HeaderMap,
    is_head: bool,
    spec: Option<Spec>,
    redirect: Option<String>,
) -> Response<MockBody> {
    if let Some(location) = redirect {
        return simple(302, "moved", &[("location", location)]);
    }
    let Some(spec) = spec else {
        return simple(404, MOCK_ERROR_BODY, &[]);
    };
    if let Some(status) = spec.status {
        let mut r = simple(status, MOCK_ERROR_BODY, &[]);
        r.body_mut().hang = spec.hang;
        return r;
    }
    let size = spec.size;
    let tag = etag(size);
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let meta = |status: StatusCode, body: PacsBody| -> Response<MockBody> {
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(
            "etag",
            HeaderValue::from_str(&tag).expect("etag is a header value"),
        );
        h.insert("last-modified", HeaderValue::from_static(LAST_MODIFIED));
        h.insert("accept-ranges", HeaderValue::from_static("bytes"));
        // What a real PACS also says, and what must stay on the LAN.
        h.insert("set-cookie", HeaderValue::from_static(INTERNAL_COOKIE));
        h.insert("server", HeaderValue::from_static(INTERNAL_SERVER));
        h.insert(
            "x-powered-by",
            HeaderValue::from_static("Servlet/3.0 JSP/2.2"),
        );
        resp
    };

    let not_modified = header("if-none-match")
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag))
        || (header("if-none-match").is_none()
            && header("if-modified-since").is_some_and(|v| v == LAST_MODIFIED));
    if not_modified {
        let mut r = meta(
            StatusCode::NOT_MODIFIED,
            PacsBody::fixed(Bytes::new(), StreamStats::new(0)),
        );
        r.body_mut().hang = spec.hang;
        return r;
    }

    let range_applies = header("if-range").is_none_or(|v| v.trim() == tag);
    let range = match header("range") {
        Some(v) if range_applies => parse_range(v, size),
        _ => Ok(None),
    };
    let (status, start, end_excl) = match range {
        Err(()) => {
            // Like Tomcat: an HTML error page with the 416.
            let mut r = simple(
                416,
                MOCK_ERROR_BODY,
                &[("content-range", format!("bytes */{size}"))],
            );
            r.body_mut().hang = spec.hang;
            return r;
        }
        Ok(Some((a, b))) => (StatusCode::PARTIAL_CONTENT, a, b + 1),
        Ok(None) => (StatusCode::OK, 0, size),
    };
    let len = end_excl - start;
    let body = if is_head {
        PacsBody::fixed(Bytes::new(), StreamStats::new(0))
    } else {
        PacsBody::generated(start, end_excl, &spec)
    };
    let mut resp = meta(status, body);
    resp.body_mut().hang = spec.hang;
    let h = resp.headers_mut();
    if !spec.chunked {
        h.insert("content-length", HeaderValue::from(len));
    }
    if status == StatusCode::PARTIAL_CONTENT {
        h.insert(
            "content-range",
            HeaderValue::from_str(&format!("bytes {start}-{}/{size}", end_excl - 1))
                .expect("content-range is a header value"),
        );
    }
    if !spec.no_type {
        h.insert("content-type", HeaderValue::from_static(DICOM_TYPE));
    }
    h.insert(
        "content-disposition",
        HeaderValue::from_str(&format!(
            "attachment;filename={}",
            disposition_filename(size)
        ))
        .expect("content-disposition is a header value"),
    );
    resp
}

// ---------------------------------------------------------------------------
// The streaming body
// ---------------------------------------------------------------------------

/// A response body produced on demand: hyper polls it only when it can take more, so the mock
/// never runs ahead of the connection (backpressure), and `sent` counts what the connection
/// actually took.
pub struct PacsBody {
    fixed: Option<Bytes>,
    next: u64,
    end: u64,
    sent: u64,
    drop_after: Option<u64>,
    stall_after: Option<u64>,
    pace: Option<(u64, Duration)>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    stats: Arc<StreamStats>,
    /// `hang`: the handler sleeps before answering (read in `handle`).
    hang: bool,
}

impl PacsBody {
    fn fixed(bytes: Bytes, stats: Arc<StreamStats>) -> PacsBody {
        let end = bytes.len() as u64;
        PacsBody {
            fixed: if bytes.is_empty() { None } else { Some(bytes) },
            next: 0,
            end,
            sent: 0,
            drop_after: None,
            stall_after: None,
            pace: None,
            sleep: None,
            stats,
            hang: false,
        }
    }

    fn generated(start: u64, end_excl: u64, spec: &Spec) -> PacsBody {
        PacsBody {
            fixed: None,
            next: start,
            end: end_excl,
            sent: 0,
            drop_after: spec.drop_after,
            stall_after: spec.stall_after,
            pace: spec.pace,
            sleep: None,
            stats: StreamStats::new(end_excl - start),
            hang: false,
        }
    }

    fn record(&mut self, n: u64) {
        self.next += n;
        self.sent += n;
        self.stats.sent.store(self.sent, Ordering::Relaxed);
    }
}

impl Body for PacsBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Some(bytes) = this.fixed.take() {
            this.record(bytes.len() as u64);
            return Poll::Ready(Some(Ok(Frame::data(bytes))));
        }
        if this.next >= this.end {
            this.stats.finish(StreamEnd::Complete);
            return Poll::Ready(None);
        }
        if let Some(k) = this.drop_after {
            if this.sent >= k {
                this.stats
                    .finish(StreamEnd::DroppedByMock { sent: this.sent });
                return Poll::Ready(Some(Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "mock PACS drops the connection",
                ))));
            }
        }
        if let Some(k) = this.stall_after {
            if this.sent >= k {
                // `stall-K`: going silent with the socket open is what this spec asks for.
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(STALL_FOR)));
                return match sleep.as_mut().poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(()) => Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "mock PACS stalled for good",
                    )))),
                };
            }
        }
        let mut n = (this.end - this.next).min(CHUNK as u64);
        if let Some((chunk, every)) = this.pace {
            if let Some(sleep) = this.sleep.as_mut() {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
            }
            // `pace-C-MS`: a slow PACS on purpose, one chunk per period.
            this.sleep = Some(Box::pin(tokio::time::sleep(every)));
            n = n.min(chunk);
        }
        if let Some(k) = this.drop_after {
            n = n.min(k - this.sent);
        }
        if let Some(k) = this.stall_after {
            n = n.min(k - this.sent);
        }
        let data = window(this.next, n as usize);
        this.record(n);
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.fixed.is_none() && self.next >= self.end && self.drop_after.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

impl Drop for PacsBody {
    fn drop(&mut self) {
        if self.fixed.is_none() && self.next >= self.end {
            self.stats.finish(StreamEnd::Complete);
        } else {
            self.stats.finish(StreamEnd::ClientGone {
                sent: self.sent,
                at: Instant::now(),
            });
        }
    }
}

// ---------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------

/// A plain-HTTP client for streaming: no total timeout (tests bound each step themselves), a
/// 5 s connect timeout, no proxy, and no redirect following (a redirect the gateway leaked must
/// be seen, not followed).
pub fn streaming_client() -> reqwest::Client {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("rustls: ring supports the default protocol versions")
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("reqwest: build streaming client")
}
