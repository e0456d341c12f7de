//! The HTTP pieces every handler uses: the response body (buffered or streamed), reading a
//! request body within its limits, and the answers the box raises itself (JSON envelopes, plain
//! refusals, 404/405).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};

use crate::catalog::Envelope;
use crate::outcome::{Outcome, Raised, ERROR_HEADER};

/// How long a caller has to send its whole body once headers are in.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A response body: a buffered answer, or a stream (PACS images, report files) that flows with
/// backpressure and is never held whole in memory.
pub struct Body(BodyInner);

enum BodyInner {
    Full(Full<Bytes>),
    Stream(Pin<Box<dyn HttpBody<Data = Bytes, Error = BoxError> + Send>>),
}

/// The error type of a streamed body.
pub use crate::pacs::BoxError;

impl Body {
    pub fn new(bytes: Bytes) -> Body {
        Body(BodyInner::Full(Full::new(bytes)))
    }

    pub fn stream(body: impl HttpBody<Data = Bytes, Error = BoxError> + Send + 'static) -> Body {
        Body(BodyInner::Stream(Box::pin(body)))
    }
}

impl Default for Body {
    fn default() -> Body {
        Body::new(Bytes::new())
    }
}

impl HttpBody for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().0 {
            BodyInner::Full(f) => Pin::new(f)
                .poll_frame(cx)
                .map(|o| o.map(|r| r.map_err(|never| match never {}))),
            BodyInner::Stream(s) => s.as_mut().poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            BodyInner::Full(f) => f.is_end_stream(),
            BodyInner::Stream(s) => s.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            BodyInner::Full(f) => f.size_hint(),
            BodyInner::Stream(s) => s.size_hint(),
        }
    }
}

/// Why a request body could not be read.
#[derive(Debug)]
pub enum BodyError {
    TooLarge,
    TimedOut,
    Broken,
}

/// Reads the whole request body, refusing more than `max` bytes: a declared Content-Length over
/// the limit is refused before a byte of the body is read.
pub async fn read_body(
    req: Request<Incoming>,
    max: u64,
) -> Result<(hyper::http::request::Parts, Bytes), BodyError> {
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|l| l > max) {
        return Err(BodyError::TooLarge);
    }
    let limited = Limited::new(body, usize::try_from(max).unwrap_or(usize::MAX));
    match tokio::time::timeout(BODY_READ_TIMEOUT, limited.collect()).await {
        Err(_) => Err(BodyError::TimedOut),
        Ok(Ok(c)) => Ok((parts, c.to_bytes())),
        Ok(Err(e)) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(BodyError::TooLarge)
            } else {
                Err(BodyError::Broken)
            }
        }
    }
}

/// The plain HTTP answer for a body that could not be read.
pub fn body_error_response(e: &BodyError) -> Response<Body> {
    let (status, text) = match e {
        BodyError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n"),
        BodyError::TimedOut => (
            StatusCode::REQUEST_TIMEOUT,
            "request body not received in time\n",
        ),
        BodyError::Broken => (StatusCode::BAD_REQUEST, "request body could not be read\n"),
    };
    let mut r = Response::new(Body::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    r
}

/// HTTP 200 with a JSON body, in the caller's charset if it declared a non-UTF-8 one.
pub fn json_response(body: Bytes, charset: Option<&str>, request_id: &str) -> Response<Body> {
    let (body, ct) = match charset {
        Some(label)
            if crate::charset::encoding_for(label).is_ok_and(|e| e != encoding_rs::UTF_8) =>
        {
            let encoded = crate::charset::json_for(&body, Some(label)).into_owned();
            let ct = format!("application/json;charset={}", label.trim());
            (Bytes::from(encoded), HeaderValue::from_str(&ct).ok())
        }
        _ => (body, None),
    };
    let mut r = Response::new(Body::new(body));
    r.headers_mut().insert(
        CONTENT_TYPE,
        ct.unwrap_or_else(|| HeaderValue::from_static("application/json;charset=UTF-8")),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        r.headers_mut().insert(crate::outcome::REQUEST_ID_HEADER, v);
    }
    r
}

/// HTTP 200 with an outcome the box raised, in the interface's envelope.
pub fn raised_response(
    raised: &Raised,
    envelope: Envelope,
    charset: Option<&str>,
    request_id: &str,
) -> Response<Body> {
    let mut r = json_response(raised.body(envelope), charset, request_id);
    r.headers_mut()
        .insert(ERROR_HEADER, HeaderValue::from_static(raised.kind.as_str()));
    r
}

/// The answer to a method the listener does not serve on this path.
pub fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::new(Bytes::from_static(b"method not allowed\n")));
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r.headers_mut()
        .insert("allow", HeaderValue::from_static(allow));
    r
}

/// A plain-text refusal the box raises itself outside the JSON envelopes (file routes, signed
/// calls): the status, `X-Prefront-Error: <kind>` and the caller's request id.
pub fn plain_refusal(
    status: StatusCode,
    kind: Outcome,
    text: impl Into<Bytes>,
    request_id: &str,
) -> Response<Body> {
    let mut r = Response::new(Body::new(text.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(ERROR_HEADER, HeaderValue::from_static(kind.as_str()));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert(crate::outcome::REQUEST_ID_HEADER, v);
    }
    r
}

/// The answer for a path this listener has nothing at.
pub fn not_found(hint: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::new(Bytes::from_static(hint.as_bytes())));
    *r.status_mut() = StatusCode::NOT_FOUND;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Checks a caller's JSON body: present, in a charset we read, and JSON. Returns the body as
/// UTF-8 (BOM removed) and the charset the caller declared, so the answer can use it too.
pub fn json_body(
    parts: &hyper::http::request::Parts,
    body: &Bytes,
) -> Result<(Bytes, Option<String>), Raised> {
    json_body_noting(parts, body, None).map(|(b, c, _)| (b, c))
}

/// `json_body`, noting on the way the top-level member `key` (`hospitalId`): the body is read
/// once.
pub fn json_body_noting(
    parts: &hyper::http::request::Parts,
    body: &Bytes,
    key: Option<&str>,
) -> Result<(Bytes, Option<String>, Option<crate::json::Member>), Raised> {
    use crate::outcome::Code;
    let content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let charset = crate::charset::declared(content_type);
    let utf8 = crate::charset::to_utf8(body, content_type).map_err(|e| {
        Raised::new(
            Code::InvalidParameter,
            Outcome::InvalidCharset,
            format!("参数无效：请求体编码错误 (request body: {e})"),
        )
    })?;
    let member = check_json_noting(&utf8, "请求体", "request body", key)?;
    Ok((Bytes::from(utf8), charset, member))
}

/// The JSON checks every caller's payload passes: present (20001) and JSON (20003, with the
/// position). `zh`/`en` name the payload in the message (`请求体`/`request body`, `param`).
pub fn check_json(text: &str, zh: &str, en: &str) -> Result<(), Raised> {
    check_json_noting(text, zh, en, None).map(|_| ())
}

/// 20003 for a payload that is not JSON; serde_json's message names the position, never the
/// offending value.
fn invalid_json(zh: &str, en: &str, e: &serde_json::Error) -> Raised {
    Raised::new(
        crate::outcome::Code::InvalidParameter,
        Outcome::InvalidJson,
        format!("参数无效：{zh}不是合法的JSON ({en} is not valid JSON: {e})"),
    )
}

/// `check_json`, noting the top-level member `key` on the way.
fn check_json_noting(
    text: &str,
    zh: &str,
    en: &str,
    key: Option<&str>,
) -> Result<Option<crate::json::Member>, Raised> {
    use crate::outcome::Code;
    if text.bytes().all(|b| b.is_ascii_whitespace()) {
        return Err(Raised::new(
            Code::MissingParameter,
            Outcome::EmptyBody,
            format!("缺少参数：{zh}为空 ({en} is empty; send the interface's JSON)"),
        ));
    }
    crate::json::validate_str_noting(text, key).map_err(|e| invalid_json(zh, en, &e))
}

/// Logs a body at debug level, masked (names, ID numbers, phones never appear in full).
pub fn debug_body(what: &'static str, request_id: &str, body: &[u8]) {
    if tracing::enabled!(tracing::Level::DEBUG) {
        tracing::debug!(request_id, body = %crate::telemetry::redact::mask_body(body, 2048), "{what}");
    }
}
