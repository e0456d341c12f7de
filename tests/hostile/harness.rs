//! The raw client, the table's types and the suite every hostile-input test runs: a gateway
//! in-process between a mock cloud (HTTPS), a mock HIS (HTTP) and a mock PACS, all echoing.
//!
//! For each row [`Suite::run`] asserts:
//!
//! - the answer the contract promises (status, and where the contract defines one the envelope
//!   `code` and `X-Prefront-Error` kind), or that the connection is closed without an answer;
//! - that no upstream (cloud, HIS, PACS) received anything for it;
//! - that no answer leaks internal detail (upstream addresses, file contents, source paths,
//!   panic text) and that no refusal is a 5xx (SOAP 1.1 faults excepted: the protocol says 500);
//! - that the gateway still serves a known-good call afterwards (a panic or a wedged listener
//!   shows up here, or as a connection dropped where an answer was due).
//!
//! Before the rows, the *controls* for the listeners they hit send legitimate requests through
//! the same raw client, so a row cannot pass merely because the client is broken. Each read is
//! bounded (`ROW_TIMEOUT`).
//!
//! A row whose expectation the gateway does not meet yet carries `known_bug: Some(…)`: it is
//! still run and printed (as `KNOWN BUG`), but does not fail the test. Remove the field once the
//! gateway is fixed; the run says so when such a row starts to pass.
//!
//! Each test ends with one summary line:
//! `hostile inputs (<category>): N tried, N refused cleanly, 0 forwarded, 0 panics`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::pacs::MockPacs;
use crate::support::*;

/// Longest any one exchange may take.
pub const ROW_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to watch a connection after an answer for a second answer (smuggling rows).
pub const AFTER_ANSWER: Duration = Duration::from_secs(2);
/// `[auth] shared_secret` of the signed gateway.
pub const SECRET: &str = "hostile-input suite: a shared secret of well over 32 characters";
/// `[pacs] link_key`, so the suite can mint tokens of its own.
pub const LINK_KEY: &str = "hostile-input-suite-link-key-0123456789abcdef";
pub const PUBLIC_URL: &str = "https://prefront.example";

pub const GOOD_PATH: &str = "/prefront/patient/getPatientInfo";
pub const GOOD_BODY: &str = r#"{"hospitalId":"253","medicalCardNumber":"001"}"#;
pub const HIS_NAME: &str = "hospital.interface.queryBalance";
pub const SOAP_PATH: &str = "/prefront/services/prefrontWebService";

pub const KB: usize = 1024;
pub const MB: usize = 1024 * 1024;

// ---------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------

/// Where a row is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Gateway A, HIS listener (plain HTTP).
    His,
    /// Gateway A, cloud listener (plain HTTP, PACS configured, no `[auth]`).
    Cloud,
    /// Gateway B, cloud listener: TLS (SNI `localhost`) and `[auth]` signed calls.
    SignedTls,
    /// Gateway B, cloud listener, TLS to `127.0.0.1`: a rustls client sends no SNI for an IP.
    SignedTlsNoSni,
    /// Gateway B, cloud listener, raw bytes on the TCP connection (no TLS client at all).
    SignedTlsRaw,
}

impl Target {
    pub fn label(self) -> &'static str {
        match self {
            Target::His => "his",
            Target::Cloud => "cloud",
            Target::SignedTls => "cloud/tls+auth",
            Target::SignedTlsNoSni => "cloud/tls no-SNI",
            Target::SignedTlsRaw => "cloud/tls raw",
        }
    }
}

/// What the raw client sends.
pub enum Payload {
    /// These bytes, at once.
    Bytes(Vec<u8>),
    /// `head`, then a chunked body of `total` bytes in 64 KiB chunks, for as long as the gateway
    /// reads it (a 100 MB upload without a declared length).
    Chunked { head: Vec<u8>, total: usize },
}

/// What the contract promises for a row.
#[derive(Debug, Clone, Copy)]
pub enum Expect {
    /// An answer with `status`; `kind`: its `X-Prefront-Error`; `code`: the envelope `code` in
    /// the JSON body (or in the SOAP `return`).
    Answer {
        status: u16,
        kind: Option<&'static str>,
        code: Option<&'static str>,
    },
    /// Refused by the HTTP layer before any handler: one of these statuses, or the connection
    /// closed without an answer.
    HttpRefused(&'static [u16]),
    /// A SOAP fault with this status (`soap:Client` 500 for 1.1, `soap:Sender` 400 for 1.2).
    SoapFault(u16),
    /// No HTTP answer at all: the connection ends (a TLS alert before it is fine).
    Closed,
    /// A request-framing ambiguity with a second request pipelined behind it: refused with 400
    /// (or closed), or at most one answer that forwards nothing, after which the connection is
    /// closed, so the smuggled request is never read.
    OneAnswerThenClose,
}

/// The envelope the box raises: HTTP 200, this code and `X-Prefront-Error`.
pub const fn env(code: &'static str, kind: &'static str) -> Expect {
    Expect::Answer {
        status: 200,
        kind: Some(kind),
        code: Some(code),
    }
}

/// A plain-text refusal with `status` and `X-Prefront-Error: kind`.
pub const fn refusal(status: u16, kind: &'static str) -> Expect {
    Expect::Answer {
        status,
        kind: Some(kind),
        code: None,
    }
}

/// A bare status (hyper-level or plain-text answers without a kind).
pub const fn status(status: u16) -> Expect {
    Expect::Answer {
        status,
        kind: None,
        code: None,
    }
}

pub struct Row {
    pub name: String,
    pub target: Target,
    pub send: Payload,
    pub expect: Expect,
    /// Set while the gateway does not meet `expect`: the row warns instead of failing.
    pub known_bug: Option<&'static str>,
}

impl From<Call> for Payload {
    fn from(call: Call) -> Payload {
        Payload::Bytes(call.raw())
    }
}

impl From<Vec<u8>> for Payload {
    fn from(bytes: Vec<u8>) -> Payload {
        Payload::Bytes(bytes)
    }
}

pub fn row(
    name: impl Into<String>,
    target: Target,
    send: impl Into<Payload>,
    expect: Expect,
) -> Row {
    Row {
        name: name.into(),
        target,
        send: send.into(),
        expect,
        known_bug: None,
    }
}

impl Row {
    /// Marks a row the gateway does not pass yet (none today): it warns instead of failing.
    #[allow(dead_code)]
    pub fn known_bug(mut self, why: &'static str) -> Row {
        self.known_bug = Some(why);
        self
    }
}

pub fn his_path() -> String {
    format!("/his/{HIS_NAME}")
}

pub fn soap11(op: &str, param: &str) -> String {
    format!(
        r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:web="http://webservice.prefront/"><soapenv:Header/><soapenv:Body><web:{op}><param>{param}</param></web:{op}></soapenv:Body></soapenv:Envelope>"#
    )
}

/// A SOAP 1.1 POST to the SOAP endpoint.
pub fn soap_call(body: impl Into<Vec<u8>>) -> Call {
    post(SOAP_PATH)
        .content_type("text/xml; charset=utf-8")
        .body(body)
}

pub fn nested_json(depth: usize) -> Vec<u8> {
    let mut v = b"{\"a\":".to_vec();
    v.extend(std::iter::repeat_n(b'[', depth));
    v.extend(std::iter::repeat_n(b']', depth));
    v.push(b'}');
    v
}

/// Deterministic junk bytes (xorshift), for "garbage instead of a ClientHello".
pub fn garbage(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The raw client
// ---------------------------------------------------------------------------

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One HTTP answer as it came off the wire.
#[derive(Debug)]
pub struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body for a message: at most 200 characters.
    fn excerpt(&self) -> String {
        let text = self.body_text();
        match text.char_indices().nth(200) {
            Some((i, _)) => format!("{}…", &text[..i]),
            None => text,
        }
    }

    /// The envelope `code`: in the JSON body, or in the JSON inside a SOAP `return`.
    fn code(&self) -> Option<String> {
        let text = self.body_text();
        let json = match (text.find("<return>"), text.find("</return>")) {
            (Some(s), Some(e)) if s < e => text[s + "<return>".len()..e]
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&amp;", "&"),
            _ => text,
        };
        let v: Value = serde_json::from_str(&json).ok()?;
        v.get("code").and_then(Value::as_str).map(str::to_string)
    }
}

/// What happened after the answer (only watched for `OneAnswerThenClose`).
#[derive(Debug, PartialEq, Eq)]
pub enum After {
    NotWatched,
    Closed,
    /// More bytes came: a second answer.
    More,
    /// Neither closed nor answered within `AFTER_ANSWER`.
    Open,
}

#[derive(Debug)]
pub enum Outcome {
    Answered(Answer, After),
    /// The connection ended (FIN or reset) before an answer.
    Closed,
    /// Bytes that are not an HTTP answer (e.g. a TLS alert), then the end.
    NotHttp(Vec<u8>),
    TimedOut,
    /// Could not connect, or the TLS handshake failed.
    NoConnection(String),
}

impl Outcome {
    fn describe(&self) -> String {
        match self {
            Outcome::Answered(a, after) => {
                let mut s = format!("HTTP {}", a.status);
                if let Some(k) = a.header("x-prefront-error") {
                    let _ = write!(s, " {k}");
                }
                if let Some(c) = a.code() {
                    let _ = write!(s, " code {c}");
                }
                if *after != After::NotWatched {
                    let _ = write!(s, " then {after:?}");
                }
                s
            }
            Outcome::Closed => "connection closed, no answer".into(),
            Outcome::NotHttp(b) => format!("{} non-HTTP byte(s) then closed", b.len()),
            Outcome::TimedOut => "TIMED OUT".into(),
            Outcome::NoConnection(e) => format!("no connection: {e}"),
        }
    }
}

/// The addresses and TLS setup the raw client needs.
pub struct Endpoints {
    his: SocketAddr,
    cloud: SocketAddr,
    /// Gateway B's cloud listener, when the suite started one.
    signed_cloud: Option<SocketAddr>,
    tls: Arc<rustls::ClientConfig>,
}

impl Endpoints {
    pub async fn connect(&self, target: Target) -> Result<Box<dyn Io>, String> {
        let addr = match target {
            Target::His => self.his,
            Target::Cloud => self.cloud,
            _ => self
                .signed_cloud
                .expect("a signed-call row in a suite started without gateway B"),
        };
        let tcp = tokio::time::timeout(ROW_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let name = match target {
            Target::His | Target::Cloud | Target::SignedTlsRaw => return Ok(Box::new(tcp)),
            Target::SignedTls => ServerName::try_from("localhost").map_err(|e| e.to_string())?,
            Target::SignedTlsNoSni => ServerName::IpAddress(addr.ip().into()),
        };
        let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
        let tls = tokio::time::timeout(ROW_TIMEOUT, connector.connect(name, tcp))
            .await
            .map_err(|_| "TLS handshake timed out".to_string())?
            .map_err(|e| format!("TLS handshake: {e}"))?;
        Ok(Box::new(tls))
    }

    /// Sends `send` on a fresh connection to `target` and reads one answer.
    pub async fn exchange(&self, target: Target, send: &Payload, watch_after: bool) -> Outcome {
        let stream = match self.connect(target).await {
            Ok(s) => s,
            Err(e) => return Outcome::NoConnection(e),
        };
        let (mut rd, mut wr) = tokio::io::split(stream);
        let writer = match send {
            Payload::Bytes(b) => {
                let b = b.clone();
                tokio::spawn(async move {
                    // The gateway may answer and close before reading everything: not an error.
                    let _ = wr.write_all(&b).await;
                    let _ = wr.flush().await;
                    wr
                })
            }
            Payload::Chunked { head, total } => {
                let (head, total) = (head.clone(), *total);
                tokio::spawn(async move {
                    let chunk = vec![b' '; 64 * KB];
                    let frame =
                        [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
                    if wr.write_all(&head).await.is_ok() {
                        let mut sent = 0;
                        while sent < total {
                            if wr.write_all(&frame).await.is_err() {
                                break;
                            }
                            sent += chunk.len();
                        }
                        let _ = wr.write_all(b"0\r\n\r\n").await;
                    }
                    wr
                })
            }
        };
        let outcome = read_answer(&mut rd, watch_after).await;
        writer.abort();
        outcome
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads one HTTP/1.x answer (and, with `watch_after`, whether anything follows it).
pub async fn read_answer<R: AsyncRead + Unpin>(rd: &mut R, watch_after: bool) -> Outcome {
    let deadline = tokio::time::Instant::now() + ROW_TIMEOUT;
    let mut buf: Vec<u8> = Vec::new();
    let mut tmp = vec![0u8; 16 * KB];
    let mut eof = false;
    // Head.
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() >= 5 && !buf.starts_with(b"HTTP/") {
            // Not HTTP: read to the end (bounded) and report it.
            let _ = tokio::time::timeout_at(deadline, async {
                while let Ok(n) = rd.read(&mut tmp).await {
                    if n == 0 || buf.len() > 64 * KB {
                        break;
                    }
                    buf.extend_from_slice(&tmp[..n]);
                }
            })
            .await;
            return Outcome::NotHttp(buf);
        }
        if eof {
            return if buf.is_empty() {
                Outcome::Closed
            } else {
                Outcome::NotHttp(buf)
            };
        }
        match tokio::time::timeout_at(deadline, rd.read(&mut tmp)).await {
            Err(_) => return Outcome::TimedOut,
            Ok(Ok(0)) | Ok(Err(_)) => eof = true,
            Ok(Ok(n)) => buf.extend_from_slice(&tmp[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut rest = buf[head_end..].to_vec();
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    // Body.
    loop {
        let complete = match (length, chunked) {
            (Some(n), _) => rest.len() >= n,
            (None, true) => {
                rest.starts_with(b"0\r\n\r\n") || find(&rest, b"\r\n0\r\n\r\n").is_some()
            }
            (None, false) => false,
        };
        if complete || eof {
            break;
        }
        match tokio::time::timeout_at(deadline, rd.read(&mut tmp)).await {
            Err(_) => return Outcome::TimedOut,
            Ok(Ok(0)) | Ok(Err(_)) => eof = true,
            Ok(Ok(n)) => rest.extend_from_slice(&tmp[..n]),
        }
    }
    let (body, leftover) = match (length, chunked) {
        (Some(n), _) if rest.len() >= n => {
            let leftover = rest.split_off(n);
            (rest, leftover)
        }
        (None, true) => (dechunk(&rest), Vec::new()),
        _ => (rest, Vec::new()),
    };
    let answer = Answer {
        status,
        headers,
        body,
    };
    let after = if !watch_after {
        After::NotWatched
    } else if !leftover.is_empty() {
        After::More
    } else if eof {
        After::Closed
    } else {
        match tokio::time::timeout(AFTER_ANSWER, rd.read(&mut tmp)).await {
            Err(_) => After::Open,
            Ok(Ok(0)) | Ok(Err(_)) => After::Closed,
            Ok(Ok(_)) => After::More,
        }
    };
    Outcome::Answered(answer, after)
}

pub fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = find(b, b"\r\n") {
        let Ok(n) = usize::from_str_radix(String::from_utf8_lossy(&b[..i]).trim(), 16) else {
            break;
        };
        if n == 0 || b.len() < i + 2 + n {
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + n]);
        b = &b[(i + 2 + n + 2).min(b.len())..];
    }
    out
}

// ---------------------------------------------------------------------------
// Judging a row
// ---------------------------------------------------------------------------

/// Strings no answer to a stranger may contain.
pub fn leaks(a: &Answer, secrets: &[String]) -> Vec<String> {
    let text = a.body_text();
    let mut found: Vec<String> = secrets
        .iter()
        .filter(|s| text.contains(s.as_str()))
        .cloned()
        .collect();
    for s in [
        "root:x:",
        "panicked",
        ".rs:",
        "RUST_BACKTRACE",
        "/home/",
        "/work/",
        "must-not-echo",
    ] {
        if text.contains(s) {
            found.push(s.to_string());
        }
    }
    found
}

/// Whether `outcome` meets `expect`; the reason when not.
pub fn judge(expect: Expect, outcome: &Outcome, secrets: &[String]) -> Result<(), String> {
    if let Outcome::Answered(a, _) = outcome {
        let leaked = leaks(a, secrets);
        if !leaked.is_empty() {
            return Err(format!("the answer leaks {leaked:?}: {}", a.excerpt()));
        }
        let soap_fault = matches!(expect, Expect::SoapFault(500));
        if a.status >= 500 && !soap_fault {
            return Err(format!("a {} for hostile input: {}", a.status, a.excerpt()));
        }
    }
    match (expect, outcome) {
        (Expect::Answer { status, kind, code }, Outcome::Answered(a, _)) => {
            if a.status != status {
                return Err(format!(
                    "status {} (want {status}): {}",
                    a.status,
                    a.excerpt()
                ));
            }
            if let Some(kind) = kind {
                if a.header("x-prefront-error") != Some(kind) {
                    return Err(format!(
                        "X-Prefront-Error {:?} (want {kind}): {}",
                        a.header("x-prefront-error"),
                        a.excerpt()
                    ));
                }
            }
            if let Some(code) = code {
                if a.code().as_deref() != Some(code) {
                    return Err(format!(
                        "code {:?} (want {code}): {}",
                        a.code(),
                        a.excerpt()
                    ));
                }
            }
            Ok(())
        }
        (Expect::HttpRefused(statuses), Outcome::Answered(a, _)) => {
            if statuses.contains(&a.status) {
                Ok(())
            } else {
                let (got, body) = (a.status, a.excerpt());
                Err(format!(
                    "status {got} (want one of {statuses:?} or closed): {body}"
                ))
            }
        }
        (Expect::HttpRefused(_), Outcome::Closed) => Ok(()),
        (Expect::SoapFault(status), Outcome::Answered(a, _)) => {
            let text = a.body_text();
            let want = if status == 500 {
                "soap:Client"
            } else {
                "soap:Sender"
            };
            let kind = a.header("x-prefront-error");
            if a.status == status && text.contains(want) && kind == Some("soap-fault") {
                Ok(())
            } else {
                let (got, body) = (a.status, a.excerpt());
                Err(format!(
                    "status {got} (want a {want} fault, {status}): {body}"
                ))
            }
        }
        (Expect::Closed, Outcome::Closed | Outcome::NotHttp(_)) => Ok(()),
        (Expect::OneAnswerThenClose, Outcome::Closed) => Ok(()),
        (Expect::OneAnswerThenClose, Outcome::Answered(a, after)) => match after {
            After::Closed => Ok(()),
            _ if a.status == 400 && *after != After::More => Ok(()),
            _ => Err(format!(
                "HTTP {} and then {after:?}: the connection stayed open after ambiguous framing",
                a.status
            )),
        },
        (_, other) => Err(format!("got {}", other.describe())),
    }
}

/// Requests the three upstreams have received so far.
pub fn counts(cloud: &MockUpstream, his: &MockUpstream, pacs: &MockPacs) -> [usize; 3] {
    [
        cloud.request_count(),
        his.request_count(),
        pacs.request_count(),
    ]
}

/// A known-good call through a HIS listener: 200 with the cloud's echo of it.
pub async fn serves_a_good_call(client: &reqwest::Client, his_url: &str) -> Result<(), String> {
    let r = post(format!("{his_url}{GOOD_PATH}"))
        .via(client)
        .json_type()
        .body(GOOD_BODY)
        .try_send()
        .await
        .map_err(|e| format!("follow-up call failed: {e}"))?;
    let (status, text) = (r.status, r.text());
    let v: Value =
        serde_json::from_str(&text).map_err(|e| format!("follow-up not JSON ({e}): {text}"))?;
    let echoed: Value = serde_json::from_str(GOOD_BODY).unwrap_or_default();
    if status == 200 && v["data"]["path"] == GOOD_PATH && v["data"]["body"] == echoed {
        Ok(())
    } else {
        Err(format!("follow-up call: HTTP {status}: {text}"))
    }
}

// ---------------------------------------------------------------------------
// The suite
// ---------------------------------------------------------------------------

/// The gateways' log, for every test of this binary (one process-wide subscriber).
fn log_capture() -> &'static LogCapture {
    static CAPTURE: OnceLock<LogCapture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture = LogCapture::new();
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(capture.clone())
            .try_init();
        capture
    })
}

/// A legitimate request through the raw client, and the requests it must cause at the
/// cloud/HIS/PACS.
pub struct Control {
    pub name: &'static str,
    pub target: Target,
    pub call: Call,
    pub want: [usize; 3],
}

/// Every control, in order; signed ones are signed now (and one second later, so the two
/// signatures differ).
pub fn controls() -> Vec<Control> {
    let body = br#"{"medicalCardNumber":"001"}"#;
    let t = unix_now().to_string();
    let sig = sign(SECRET, "POST", &his_path(), &t, body);
    let t2 = (unix_now() + 1).to_string();
    let sig2 = sign(SECRET, "POST", &his_path(), &t2, body);
    let c = |name, target, call, want| Control {
        name,
        target,
        call,
        want,
    };
    vec![
        c(
            "HTTP/1.1 JSON call",
            Target::His,
            post(GOOD_PATH).json_type().body(GOOD_BODY.as_bytes()),
            [1, 0, 0],
        ),
        c(
            "HTTP/1.0 JSON call",
            Target::His,
            post(GOOD_PATH)
                .version("HTTP/1.0")
                .header("Content-Type", "application/json")
                .body(GOOD_BODY.as_bytes()),
            [1, 0, 0],
        ),
        c(
            "%0d%0a in the query of a real path (the query is not forwarded)",
            Target::His,
            post(format!("{GOOD_PATH}?x=%0d%0aX-Evil:%201"))
                .json_type()
                .body(GOOD_BODY.as_bytes()),
            [1, 0, 0],
        ),
        c(
            "chunked JSON call",
            Target::His,
            post(GOOD_PATH)
                .header("Transfer-Encoding", "chunked")
                .body(format!("{:x}\r\n{GOOD_BODY}\r\n0\r\n\r\n", GOOD_BODY.len())),
            [1, 0, 0],
        ),
        c(
            "/his/<name> call",
            Target::Cloud,
            post(his_path()).json_type().body(body.as_slice()),
            [0, 1, 0],
        ),
        c(
            "/pacs/dcm image",
            Target::Cloud,
            get("/pacs/dcm?dcmId=size-16&hospitalId=253"),
            [0, 0, 1],
        ),
        c(
            "signed call over TLS",
            Target::SignedTls,
            post(his_path())
                .json_type()
                .body(body.as_slice())
                .signature(Some(&t), Some(&sig)),
            [0, 1, 0],
        ),
        c(
            "signed call over TLS without SNI",
            Target::SignedTlsNoSni,
            post(his_path())
                .json_type()
                .body(body.as_slice())
                .signature(Some(&t2), Some(&sig2)),
            [0, 1, 0],
        ),
    ]
}

/// Which gateways a suite runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gateways {
    /// Gateway A: both listeners plain HTTP, PACS images and links configured, no `[auth]`.
    Plain,
    /// Gateway A, and gateway B: its cloud listener speaks TLS and requires signed calls.
    AndSigned,
}

pub struct Suite {
    pub cloud: MockUpstream,
    pub his: MockUpstream,
    pub pacs: MockPacs,
    gw_a: TestGateway,
    gw_b: Option<TestGateway>,
    endpoints: Endpoints,
    /// Internal details an answer must never show a caller.
    secrets: Vec<String>,
    client: reqwest::Client,
    started: Instant,
    _pki: TestPki,
}

impl Suite {
    pub async fn start(gateways: Gateways) -> Suite {
        let started = Instant::now();
        log_capture();
        let pki = TestPki::new();
        let cloud = MockUpstream::https(&pki).await;
        let his = MockUpstream::http().await;
        let pacs = MockPacs::start().await;
        cloud.echo();
        his.echo();
        let his_template = format!("{}/his/{{name}}", his.url());

        let toml_a = ConfigToml::basic(
            &cloud.url(),
            Some(&pki.ca_pem_path()),
            Some(&his_template),
            "",
        )
        .set("cloud_listener.public_url", PUBLIC_URL)
        .set("pacs.dcm_url", pacs.dcm_url_template())
        .set("pacs.internal_hosts", vec![pacs.host_port()])
        .set("pacs.link_key", LINK_KEY);
        let gw_a = spawn_gateway(&toml_a.render()).await;

        let gw_b = match gateways {
            Gateways::Plain => None,
            Gateways::AndSigned => {
                let toml_b = ConfigToml::basic(
                    &cloud.url(),
                    Some(&pki.ca_pem_path()),
                    Some(&his_template),
                    "",
                )
                .set_path("cloud_listener.tls_cert", &pki.server_cert_path())
                .set_path("cloud_listener.tls_key", &pki.server_key_path())
                .set("auth.shared_secret", SECRET);
                let gw_b = spawn_gateway(&toml_b.render()).await;
                // A call signed in the gateway's start second is refused (it may predate the
                // start): the signed rows are signed in a later one.
                let start_second = unix_now();
                poll_until(
                    Duration::from_secs(2),
                    "the second after the start",
                    async || unix_now() > start_second,
                )
                .await;
                Some(gw_b)
            }
        };

        let endpoints = Endpoints {
            his: gw_a.his_addr,
            cloud: gw_a.cloud_addr,
            signed_cloud: gw_b.as_ref().map(|g| g.cloud_addr),
            tls: Arc::new(pki.client_tls_config()),
        };
        let secrets = vec![
            cloud.addr().to_string(),
            his.addr().to_string(),
            pacs.host_port(),
            format!("127.0.0.1:{}", cloud.port()),
            pki.dir().display().to_string(),
            LINK_KEY.to_string(),
            SECRET.to_string(),
        ];
        Suite {
            cloud,
            his,
            pacs,
            gw_a,
            gw_b,
            endpoints,
            secrets,
            client: plain_client(),
            started,
            _pki: pki,
        }
    }

    /// Requests the three upstreams have received so far.
    fn counts(&self) -> [usize; 3] {
        counts(&self.cloud, &self.his, &self.pacs)
    }

    /// Sends a control: it must be served (200, no `X-Prefront-Error`) and reach the upstreams
    /// it says.
    pub async fn control(&self, c: Control) {
        let before = self.counts();
        let outcome = self
            .endpoints
            .exchange(c.target, &c.call.into(), false)
            .await;
        let after = self.counts();
        let delta = [
            after[0] - before[0],
            after[1] - before[1],
            after[2] - before[2],
        ];
        let name = c.name;
        match &outcome {
            Outcome::Answered(a, _)
                if a.status == 200 && a.header("x-prefront-error").is_none() => {}
            other => panic!(
                "control `{name}` ({}) was not served: {}",
                c.target.label(),
                other.describe()
            ),
        }
        assert_eq!(
            delta, c.want,
            "control `{name}`: requests reaching cloud/HIS/PACS"
        );
        println!(
            "control  {:<17} {name}: {}",
            c.target.label(),
            outcome.describe()
        );
    }

    /// Runs the controls for the listeners `rows` hit, then every row (see the module
    /// documentation), prints the summary and fails with every row that failed.
    pub async fn run(self, category: &str, rows: Vec<Row>) {
        for c in controls() {
            if rows.iter().any(|r| r.target == c.target) {
                self.control(c).await;
            }
        }
        let secrets = &self.secrets;
        let (mut tried, mut clean, mut forwarded, mut panics) = (0, 0, 0, 0);
        let mut failures = Vec::new();
        let mut known = Vec::new();
        for row in &rows {
            tried += 1;
            let before = self.counts();
            let watch = matches!(row.expect, Expect::OneAnswerThenClose);
            let row_started = Instant::now();
            let outcome = self.endpoints.exchange(row.target, &row.send, watch).await;
            let after = self.counts();
            let reached: usize = after.iter().zip(before).map(|(a, b)| a - b).sum();
            let mut problems = Vec::new();
            if let Err(e) = judge(row.expect, &outcome, secrets) {
                problems.push(e);
            }
            if reached > 0 {
                forwarded += 1;
                problems.push(format!(
                    "FORWARDED: {} request(s) reached cloud/HIS/PACS",
                    reached
                ));
            }
            let dropped = matches!(outcome, Outcome::Closed)
                && matches!(row.expect, Expect::Answer { .. } | Expect::SoapFault(_));
            // The gateway still serves a normal call (through the listener pair the row hit).
            let his_url = match (row.target, &self.gw_b) {
                (Target::His | Target::Cloud, _) => self.gw_a.his_url(),
                (_, Some(gw_b)) => gw_b.his_url(),
                (_, None) => unreachable!("exchange() needs gateway B for {:?}", row.target),
            };
            let follow = serves_a_good_call(&self.client, &his_url).await;
            let late = self.counts();
            if late != [after[0] + 1, after[1], after[2]] {
                problems.push(format!(
                    "upstream counts moved after the row: {after:?} → {late:?} (want one cloud call)"
                ));
            }
            if let Err(e) = &follow {
                problems.push(e.clone());
            }
            if dropped || follow.is_err() {
                panics += 1;
            }
            let took = row_started.elapsed();
            let verdict = match (problems.is_empty(), row.known_bug) {
                (true, None) => {
                    clean += 1;
                    "ok"
                }
                (true, Some(_)) => {
                    clean += 1;
                    "FIXED?"
                }
                (false, Some(_)) => "KNOWN BUG",
                (false, None) => "FAIL",
            };
            println!(
                "{verdict:<9} {:<17} {:<70} {} [{} ms]",
                row.target.label(),
                row.name,
                outcome.describe(),
                took.as_millis()
            );
            match (problems.is_empty(), row.known_bug) {
                (false, None) => failures.push(format!(
                    "{} ({}): {}",
                    row.name,
                    row.target.label(),
                    problems.join("; ")
                )),
                (false, Some(why)) => {
                    known.push(format!("{}: {} — {why}", row.name, problems.join("; ")))
                }
                (true, Some(_)) => println!(
                    "          `{}` now meets its expectation: remove its known_bug",
                    row.name
                ),
                (true, None) => {}
            }
        }

        if self.gw_b.is_some() {
            // The signed TLS listener still serves a good signed call.
            let signed = post(his_path())
                .json_type()
                .body(br#"{"medicalCardNumber":"001"}"#.as_slice())
                .signed(SECRET, unix_now() + 2);
            match self
                .endpoints
                .exchange(Target::SignedTls, &signed.into(), false)
                .await
            {
                Outcome::Answered(a, _) if a.status == 200 => {}
                other => failures.push(format!(
                    "after the rows, a signed TLS call was not served: {}",
                    other.describe()
                )),
            }
        }
        if log_capture().contents().contains("panicked") {
            panics += 1;
            failures.push("the gateway's log shows a panic".to_string());
        }

        for k in &known {
            println!("KNOWN BUG (not failing): {k}");
        }
        println!(
            "hostile inputs ({category}): {tried} tried, {clean} refused cleanly, {forwarded} forwarded, {panics} panics"
        );
        if !known.is_empty() {
            println!(
                "known gateway bugs: {} row(s) marked known_bug (warnings)",
                known.len()
            );
        }
        println!(
            "hostile suite ({category}) took {:.1} s",
            self.started.elapsed().as_secs_f64()
        );
        assert!(
            failures.is_empty(),
            "{} row(s) failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
        self.gw_a.shutdown().await;
        if let Some(gw_b) = self.gw_b {
            gw_b.shutdown().await;
        }
    }
}
