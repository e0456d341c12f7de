//! One way to make a call: [`post`] (or [`get`], [`request`]) with options, then either sent with
//! reqwest ([`Call::send`], [`Call::try_send`], [`Call::response`]) or rendered byte for byte for
//! a raw socket ([`Call::raw`]); and [`sign`], the `[auth]` signature as the README documents it.

use std::fmt::Display;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderMap;
use serde_json::Value;

/// A request being built. Without [`Call::via`] it is sent with a fresh [`super::plain_client`]
/// (a new connection), as a caller that is not the test's other calls would.
#[derive(Clone, Debug)]
pub struct Call {
    method: String,
    url: String,
    version: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    client: Option<reqwest::Client>,
    timeout: Option<Duration>,
    expect_status: Option<u16>,
}

/// A `POST` to `url` (an absolute URL to send, or an origin-form target such as `/his/x` to
/// render with [`Call::raw`]).
pub fn post(url: impl Into<String>) -> Call {
    request("POST", url)
}

/// A `GET` to `url` (see [`post`]).
pub fn get(url: impl Into<String>) -> Call {
    request("GET", url)
}

/// A request with any method (also ones no client would send, for [`Call::raw`]).
pub fn request(method: &str, url: impl Into<String>) -> Call {
    Call {
        method: method.to_string(),
        url: url.into(),
        version: "HTTP/1.1".to_string(),
        headers: Vec::new(),
        body: Vec::new(),
        client: None,
        timeout: None,
        expect_status: None,
    }
}

impl Call {
    /// The body, bytes as given.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Call {
        self.body = body.into();
        self
    }

    /// The body: `value` as compact JSON text (no `Content-Type` is added).
    pub fn body_json(self, value: &Value) -> Call {
        self.body(value.to_string())
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Call {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// Several headers, in order.
    pub fn headers<'a>(
        mut self,
        headers: impl IntoIterator<Item = &'a (&'a str, &'a str)>,
    ) -> Call {
        for (k, v) in headers {
            self = self.header(k, *v);
        }
        self
    }

    /// The header when `value` is `Some`.
    pub fn header_opt(self, name: &str, value: Option<&str>) -> Call {
        match value {
            Some(v) => self.header(name, v),
            None => self,
        }
    }

    pub fn content_type(self, content_type: &str) -> Call {
        self.header("Content-Type", content_type)
    }

    /// `Content-Type: application/json;charset=UTF-8`, as the HIS sends it.
    pub fn json_type(self) -> Call {
        self.content_type(super::JSON_CONTENT_TYPE)
    }

    /// `X-Prefront-Timestamp` / `X-Prefront-Signature` exactly as given (either may be absent
    /// or wrong on purpose).
    pub fn signature(self, timestamp: Option<&str>, signature: Option<&str>) -> Call {
        self.header_opt("X-Prefront-Timestamp", timestamp)
            .header_opt("X-Prefront-Signature", signature)
    }

    /// Signed with `secret` at `timestamp` over this call's method, target and body (set the
    /// body first).
    pub fn signed(self, secret: &str, timestamp: impl Display) -> Call {
        let ts = timestamp.to_string();
        let sig = sign(secret, &self.method, self.target(), &ts, &self.body);
        self.signature(Some(&ts), Some(&sig))
    }

    /// Sent with `client` (its connection pool, TLS and timeouts) instead of a fresh plain one.
    pub fn via(mut self, client: &reqwest::Client) -> Call {
        self.client = Some(client.clone());
        self
    }

    /// A timeout for this call alone.
    pub fn timeout(mut self, timeout: Duration) -> Call {
        self.timeout = Some(timeout);
        self
    }

    /// [`Call::send`] panics (with the body) unless the answer has this status.
    pub fn expect_status(mut self, status: u16) -> Call {
        self.expect_status = Some(status);
        self
    }

    /// The HTTP version [`Call::raw`] writes on the request line (default `HTTP/1.1`).
    pub fn version(mut self, version: &str) -> Call {
        self.version = version.to_string();
        self
    }

    /// The request target: the URL's path and query (the whole string when it has no scheme).
    pub fn target(&self) -> &str {
        match self.url.split_once("://") {
            Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
            None => &self.url,
        }
    }

    /// The request as bytes on the wire: request line, `Host: prefront.test`, the headers in
    /// order, `Content-Length` unless a header already frames the body (and not for a `GET`
    /// without a body), then the body.
    pub fn raw(&self) -> Vec<u8> {
        let mut out = format!(
            "{} {} {}\r\nHost: prefront.test\r\n",
            self.method,
            self.target(),
            self.version
        )
        .into_bytes();
        let framed = self.headers.iter().any(|(k, _)| {
            k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding")
        });
        for (k, v) in &self.headers {
            out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        if !framed && (self.method != "GET" || !self.body.is_empty()) {
            out.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }

    /// Sends it; the answer unread (for streaming, or to judge the transport's outcome).
    pub async fn response(self) -> reqwest::Result<reqwest::Response> {
        let client = self.client.unwrap_or_else(super::plain_client);
        let method =
            reqwest::Method::from_bytes(self.method.as_bytes()).expect("an HTTP method token");
        let mut req = client.request(method, &self.url);
        for (k, v) in &self.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        if let Some(t) = self.timeout {
            req = req.timeout(t);
        }
        if !self.body.is_empty() || self.method != "GET" {
            req = req.body(self.body);
        }
        req.send().await
    }

    /// Sends it and reads the whole answer; the transport's outcome is the caller's to judge.
    pub async fn try_send(self) -> reqwest::Result<Reply> {
        let expect_status = self.expect_status;
        let what = format!("{} {}", self.method, self.url);
        let resp = self.response().await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await?;
        let reply = Reply {
            status,
            headers,
            body,
        };
        if let Some(want) = expect_status {
            assert_eq!(
                reply.status,
                want,
                "{what}: HTTP {} (want {want}): {}",
                reply.status,
                reply.text()
            );
        }
        Ok(reply)
    }

    /// Sends it and reads the whole answer; panics if there is none.
    pub async fn send(self) -> Reply {
        let what = format!("{} {}", self.method, self.url);
        self.try_send()
            .await
            .unwrap_or_else(|e| panic!("{what}: no answer: {e}"))
    }
}

/// A whole answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// Header `name` if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `X-Prefront-Error`: the kind of outcome the box raised itself.
    pub fn error_kind(&self) -> Option<&str> {
        self.header("x-prefront-error")
    }

    /// `X-Prefront-Queued`: the id of a call acknowledged from the buffer.
    pub fn queued(&self) -> Option<&str> {
        self.header("x-prefront-queued")
    }

    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the status and text if it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "answer (HTTP {}) is not JSON ({e}): {}",
                self.status,
                self.text()
            )
        })
    }

    /// The body as JSON, or as a JSON string holding the text when it is not JSON.
    pub fn json_or_text(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| Value::String(self.text()))
    }

    /// The envelope's `code` (string or number), if the body is a JSON envelope.
    pub fn code(&self) -> Option<String> {
        let v: Value = serde_json::from_slice(&self.body).ok()?;
        match &v["code"] {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// The `[auth]` signature exactly as the README tells the cloud team to compute it, without the
/// box's own code: lower-case hex HMAC-SHA256 with `secret` over
/// `METHOD \n target \n timestamp \n hex(SHA-256(body))`.
pub fn sign(
    secret: &str,
    method: &str,
    target: &str,
    timestamp: impl Display,
    body: &[u8],
) -> String {
    let body_hash = ring::digest::digest(&ring::digest::SHA256, body);
    let canonical = format!(
        "{method}\n{target}\n{timestamp}\n{}",
        data_encoding::HEXLOWER.encode(body_hash.as_ref())
    );
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    data_encoding::HEXLOWER.encode(ring::hmac::sign(&key, canonical.as_bytes()).as_ref())
}

/// Seconds since the Unix epoch, as the timestamps of signed calls and links count them.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
