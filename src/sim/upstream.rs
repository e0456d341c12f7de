//! A simulated upstream on loopback: an HTTP/1.1 server (plain or TLS) with programmable answers
//! and a log of every request. It plays the cloud, the HIS (JSON or SOAP) and the PACS for
//! `prefront demo`, and the integration tests drive the gateway against the same code.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::SimError;

/// The body a fresh upstream answers with (status 200) on any path.
pub const DEFAULT_OK_BODY: &str = r#"{"success":true,"msg":"成功","code":"10001","data":null}"#;

/// Content type of every JSON answer.
pub const JSON_CONTENT_TYPE: &str = "application/json;charset=UTF-8";

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How the upstream answers a path.
#[derive(Clone, Debug)]
pub enum Answer {
    /// This status and JSON body.
    Fixed { status: u16, body: String },
    /// 200 with `{"success":true,…,"data":{"path":…,"body":…}}` echoing the request.
    Echo,
    /// A SOAP HIS: answers the envelope's operation with `<return>` holding `json` (or an echo
    /// envelope when `None`).
    Soap { json: Option<String> },
    /// `len` bytes of `application/octet-stream` (a PACS image), deterministic per length.
    File { len: u64 },
}

struct State {
    routes: HashMap<String, Answer>,
    default: Answer,
    delay: Duration,
    /// While set, every request gets 503 (a cloud that is "down" but still accepts).
    down: bool,
    requests: Vec<Recorded>,
    tls_handshake_failures: usize,
}

/// One request as the upstream received it.
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
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Takes a simulated upstream down (every request answered 503) and back up.
#[derive(Clone)]
pub struct OutageSwitch(Arc<Mutex<State>>);

impl OutageSwitch {
    pub fn set_down(&self, down: bool) {
        lock(&self.0).down = down;
    }

    pub fn is_down(&self) -> bool {
        lock(&self.0).down
    }
}

impl std::fmt::Debug for OutageSwitch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OutageSwitch(down: {})", self.is_down())
    }
}

/// A running simulated upstream; stops (closing its connections) on `shutdown` or drop.
pub struct Upstream {
    addr: SocketAddr,
    tls: bool,
    state: Arc<Mutex<State>>,
    stop: Option<watch::Sender<bool>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("addr", &self.addr)
            .field("tls", &self.tls)
            .finish()
    }
}

impl Upstream {
    /// Listens on `at` (port 0 for any), plain HTTP or TLS with `tls`. Needs a tokio runtime.
    pub async fn start(
        at: SocketAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Result<Upstream, SimError> {
        let listener = TcpListener::bind(at)
            .await
            .map_err(|e| SimError(format!("cannot listen on {at}: {e}")))?;
        let addr = listener.local_addr().map_err(|e| SimError(e.to_string()))?;
        let state = Arc::new(Mutex::new(State {
            routes: HashMap::new(),
            default: Answer::Fixed {
                status: 200,
                body: DEFAULT_OK_BODY.to_string(),
            },
            delay: Duration::ZERO,
            down: false,
            requests: Vec::new(),
            tls_handshake_failures: 0,
        }));
        let (stop_tx, stop_rx) = watch::channel(false);
        let is_tls = tls.is_some();
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        let task = tokio::spawn(accept_loop(listener, acceptor, Arc::clone(&state), stop_rx));
        Ok(Upstream {
            addr,
            tls: is_tls,
            state,
            stop: Some(stop_tx),
            task: Some(task),
        })
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

    /// A fixed answer for exactly `path` (no query); an invalid status is answered as 500.
    pub fn respond(&self, path: &str, status: u16, body: &str) {
        self.answer(
            path,
            Answer::Fixed {
                status,
                body: body.to_string(),
            },
        );
    }

    /// Any answer for exactly `path`.
    pub fn answer(&self, path: &str, answer: Answer) {
        lock(&self.state).routes.insert(path.to_string(), answer);
    }

    /// The answer for every path without its own.
    pub fn respond_default(&self, status: u16, body: &str) {
        self.answer_default(Answer::Fixed {
            status,
            body: body.to_string(),
        });
    }

    pub fn answer_default(&self, answer: Answer) {
        lock(&self.state).default = answer;
    }

    /// From now on echo every path (fixed answers so far are forgotten).
    pub fn echo(&self) {
        let mut st = lock(&self.state);
        st.routes.clear();
        st.default = Answer::Echo;
    }

    /// Sleep this long before answering each request.
    pub fn set_delay(&self, delay: Duration) {
        lock(&self.state).delay = delay;
    }

    /// While down, every request is answered 503 (and recorded).
    pub fn set_down(&self, down: bool) {
        lock(&self.state).down = down;
    }

    pub fn is_down(&self) -> bool {
        lock(&self.state).down
    }

    /// A handle that takes this upstream down and up from elsewhere (the demo's admin routes).
    pub fn outage_switch(&self) -> OutageSwitch {
        OutageSwitch(Arc::clone(&self.state))
    }

    /// Everything received so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state).requests.clone()
    }

    pub fn request_count(&self) -> usize {
        lock(&self.state).requests.len()
    }

    /// TLS handshakes that failed or timed out.
    pub fn tls_handshake_failures(&self) -> usize {
        lock(&self.state).tls_handshake_failures
    }

    /// Polls until at least `n` requests arrived or `timeout` passed; returns what arrived.
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

    /// Stops accepting, closes every connection and waits for the server to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Upstream {
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
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<Mutex<State>>,
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
                            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
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
    conns.shutdown().await;
}

async fn serve_conn<S>(io: S, peer: SocketAddr, state: Arc<Mutex<State>>)
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
    state: Arc<Mutex<State>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            return Ok(respond(
                400,
                JSON_CONTENT_TYPE,
                format!(r#"{{"sim_error":"reading request body failed: {e}"}}"#).into(),
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
    let (answer, delay, down) = {
        let mut st = lock(&state);
        st.requests.push(rec);
        let answer = st.routes.get(&path).unwrap_or(&st.default).clone();
        (answer, st.delay, st.down)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if down {
        return Ok(respond(
            503,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"simulated outage\n"),
        ));
    }
    let content_type = parts
        .headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    Ok(match answer {
        Answer::Fixed { status, body } => respond(status, JSON_CONTENT_TYPE, body.into()),
        Answer::Echo => respond(200, JSON_CONTENT_TYPE, echo(&path, &body).into()),
        Answer::Soap { json } => soap(&body, content_type, json),
        Answer::File { len } => respond(200, "application/octet-stream", file_bytes(len)),
    })
}

/// `{"success":true,"msg":"成功","code":"10001","data":{"path":…,"body":…}}`.
fn echo(path: &str, body: &[u8]) -> String {
    let body_value = serde_json::from_slice::<serde_json::Value>(body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(body).into_owned()));
    serde_json::json!({
        "success": true,
        "msg": "成功",
        "code": "10001",
        "data": { "path": path, "body": body_value },
    })
    .to_string()
}

fn soap(body: &[u8], content_type: Option<&str>, json: Option<String>) -> Response<Full<Bytes>> {
    use crate::soap::envelope;
    match envelope::parse_call(body, content_type) {
        Ok(call) => {
            let ret = json.unwrap_or_else(|| {
                let param = serde_json::from_str::<serde_json::Value>(&call.param)
                    .unwrap_or(serde_json::Value::String(call.param.clone()));
                serde_json::json!({
                    "success": true,
                    "msg": "成功",
                    "code": "10001",
                    "data": { "operation": call.operation, "param": param },
                })
                .to_string()
            });
            let xml = envelope::call_response(
                call.version,
                "http://tempuri.org/",
                &call.operation,
                &ret,
                None,
            );
            respond(
                200,
                &envelope::content_type(call.version, "UTF-8", None),
                xml.into(),
            )
        }
        Err(e) => {
            let v = crate::config::SoapVersion::V11;
            respond(
                500,
                &envelope::content_type(v, "UTF-8", None),
                envelope::client_fault(v, &e.to_string()).into(),
            )
        }
    }
}

/// `len` deterministic bytes (a repeating pattern), standing in for a DICOM image.
pub fn file_bytes(len: u64) -> Bytes {
    let len = usize::try_from(len.min(256 << 20)).unwrap_or(0);
    Bytes::from(
        (0..len)
            .map(|i| (i % 251) as u8 ^ ((i / 251) % 256) as u8)
            .collect::<Vec<u8>>(),
    )
}

fn respond(status: u16, content_type: &str, body: Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}
