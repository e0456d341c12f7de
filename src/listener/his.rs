//! The HIS listener's requests: `POST /prefront/<path>` (JSON) and the WebService
//! `/prefront/services/prefrontWebService` (WSDL at `?wsdl`, SOAP 1.1 and 1.2 calls) for every
//! HIS → cloud interface of the catalogue, relayed to the cloud along one path.

use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response, StatusCode};

use super::{
    body_error_response, debug_body, json_body, json_response, method_not_allowed, not_found,
    raised_response, read_body, Body, Call,
};
use super::State;
use crate::buffer::events::{self, Event};
use crate::buffer::forwarder::CLOUD_ROUTE_PREFIX;
use crate::buffer::{Enqueued, OutboxError};
use crate::catalog::{Catalog, Entry, Envelope, Kind};
use crate::config::{Delivery, SoapVersion};
use crate::outcome::{Code, Raised};
use crate::soap::{envelope, wsdl};

const DIRECTION: &str = "his_to_cloud";

/// The header that carries the buffer record id of a call accepted into the buffer.
pub const QUEUED_HEADER: &str = "x-prefront-queued";

pub async fn handle(state: &Arc<State>, req: Request<Incoming>, call: Call) -> Response<Body> {
    let path = req.uri().path();
    let lower = path.trim_start_matches('/').to_ascii_lowercase();
    if lower
        == wsdl::SERVICE_PATH
            .trim_start_matches('/')
            .to_ascii_lowercase()
    {
        return webservice(state, req, call).await;
    }
    if !lower.starts_with("prefront/") && lower != "prefront" {
        call.log(DIRECTION, "none", "not-found", 404);
        return not_found("prefront HIS listener: POST /prefront/<path>\n");
    }
    if req.method() != Method::POST {
        call.log(DIRECTION, "none", "method-not-allowed", 405);
        return method_not_allowed("POST");
    }
    let Some(entry) = Catalog::get().by_request_path(path) else {
        let raised = Raised::new(
            Code::UnknownInterface,
            "unknown-path",
            "接口不存在 (no such prefront interface; see the interface specification)",
        );
        call.log(DIRECTION, "unknown", raised.kind, 200);
        return raised_response(&raised, Envelope::Standard, None, &call.request_id);
    };
    let (parts, body) = match read_body(req, state.config.his_listener.max_body).await {
        Ok(x) => x,
        Err(e) => {
            let r = body_error_response(&e);
            call.log(
                DIRECTION,
                route_of(entry),
                "body-refused",
                r.status().as_u16(),
            );
            return r;
        }
    };
    let (body, charset) = match json_body(&parts, &body) {
        Ok(x) => x,
        Err(raised) => {
            call.log(DIRECTION, route_of(entry), raised.kind, 200);
            return raised_response(&raised, entry.envelope, None, &call.request_id);
        }
    };
    let relayed = relay(state, entry, body, &call).await;
    let mut r = json_response(relayed.body.clone(), charset.as_deref(), &call.request_id);
    mark(&mut r, &relayed);
    r
}

/// Catalogue paths are plain ASCII; only they appear in logs and upstream URLs.
fn route_of(entry: &Entry) -> &str {
    entry.path.as_deref().unwrap_or_default()
}

/// What the caller gets for one relayed call.
struct Relayed {
    /// The JSON answer: the cloud's, or the envelope the box raised.
    body: Bytes,
    /// `X-Prefront-Error` when the box raised an error.
    error: Option<&'static str>,
    /// `X-Prefront-Queued` when the call was accepted into the buffer.
    queued: Option<u64>,
}

/// Sends a validated JSON call on its way and logs it (DESIGN.md §3): straight to the cloud
/// while the link is up and the route has no backlog; into the buffer when the link is down, the
/// route has a backlog, or a direct attempt fails in a way worth retrying (link broken, 5xx,
/// 408, 429) — for `notify` calls and
/// `business` calls with an idempotency key; otherwise, with the link down, 10003 at once.
async fn relay(state: &State, entry: &Entry, body: Bytes, call: &Call) -> Relayed {
    let route = route_of(entry);
    debug_body("request from HIS", &call.request_id, &body);
    // `Some(key)`: the call may wait in the buffer (deduplicated by `key` when it has one).
    let key = match (state.config.cloud.delivery.get(route), entry.kind) {
        (Some(Delivery::Direct), _) | (_, Kind::Query | Kind::File) => None,
        (None | Some(Delivery::Buffer), Kind::Notify) => Some(None),
        (None, Kind::Business) => idempotency_key(entry, &body).map(Some),
        (Some(Delivery::Buffer), Kind::Business) => Some(idempotency_key(entry, &body)),
    };
    let buffer_route = format!("{CLOUD_ROUTE_PREFIX}{route}");
    if let Some(Some(k)) = &key {
        // A business call whose key was delivered already gets the cloud's recorded answer,
        // link up or down, and is not sent again (DESIGN.md §3).
        if let Ok(Some(answer)) = state.outbox.cached_result(&buffer_route, k) {
            call.log(DIRECTION, route, "cached-result", 200);
            return Relayed {
                body: Bytes::from(answer),
                error: None,
                queued: None,
            };
        }
    }
    if let Some(key) = &key {
        // While the buffer cannot write, its backlog cannot be joined: with the link up the call
        // goes straight through rather than be refused (DESIGN.md §3.1).
        let backlog =
            state.outbox.depth(&buffer_route).unwrap_or(0) > 0 && state.outbox.health().writable;
        if backlog || !state.cloud.link.is_up() {
            return enqueue(state, entry, &buffer_route, key.as_deref(), body, call).await;
        }
    } else if !state.cloud.link.is_up() {
        let raised = Raised::new(
            Code::SystemError,
            "link-down",
            "系统错误：云平台暂不可达，请稍后重试 (the cloud link is down; try again later)",
        );
        call.log(DIRECTION, route, raised.kind, 200);
        return Relayed {
            body: raised.body(entry.envelope),
            error: Some(raised.kind),
            queued: None,
        };
    }
    match state
        .cloud
        .call(route, &call.request_id, None, body.clone())
        .await
    {
        Ok(answer) => {
            debug_body("answer from cloud", &call.request_id, &answer);
            call.log(DIRECTION, route, "ok", 200);
            Relayed {
                body: answer,
                error: None,
                queued: None,
            }
        }
        Err(e) if key.is_some() && e.retryable() => {
            let key = key.flatten();
            enqueue(state, entry, &buffer_route, key.as_deref(), body, call).await
        }
        Err(e) => {
            let raised = Raised::new(
                Code::SystemError,
                e.kind(),
                format!("系统错误：云平台调用失败 (cloud call failed: {e})"),
            );
            call.log(DIRECTION, route, raised.kind, 200);
            Relayed {
                body: raised.body(entry.envelope),
                error: Some(raised.kind),
                queued: None,
            }
        }
    }
}

/// Accepts a call into the buffer and answers only once it is durable on disk.
async fn enqueue(
    state: &State,
    entry: &Entry,
    buffer_route: &str,
    key: Option<&str>,
    body: Bytes,
    call: &Call,
) -> Relayed {
    let route = route_of(entry);
    // The fsync is shared with every call accepted meanwhile (group commit); this task waits for
    // it without holding a thread.
    let result = crate::buffer::enqueue_async(
        state.outbox.as_ref(),
        buffer_route,
        key,
        &body,
        &call.request_id,
    )
    .await;
    // The catalogue says which interfaces answer a queued call differently (the refunds: 10002).
    let business_code = if entry.queued_code.as_deref() == Some("10002") {
        Code::StateUnknown
    } else {
        Code::Accepted
    };
    let (raised, queued) = match result {
        Ok(Enqueued::New(id)) | Ok(Enqueued::AlreadyQueued(id)) => {
            if matches!(result, Ok(Enqueued::New(_))) {
                events::emit(Event::Queued {
                    route: buffer_route,
                    id,
                });
            }
            state.forwarders.wake();
            (
                queued_answer(entry.kind, business_code, entry.envelope),
                Some(id),
            )
        }
        Ok(Enqueued::Delivered(answer)) => {
            call.log(DIRECTION, route, "cached-result", 200);
            return Relayed {
                body: Bytes::from(answer),
                error: None,
                queued: None,
            };
        }
        Err(e) => {
            let kind = crate::buffer::forwarder::error_kind(&e);
            events::emit(Event::NotAccepted {
                route: buffer_route,
                kind,
                error: &e.to_string(),
            });
            let raised = match e {
                OutboxError::Full { .. } => Raised::new(
                    Code::BufferFull,
                    kind,
                    "缓存已满，未受理 (the buffer is full; the call was not accepted)",
                ),
                _ => Raised::new(
                    Code::SystemError,
                    kind,
                    "系统错误：缓存不可用，未受理 (the buffer failed; the call was not accepted)",
                ),
            };
            call.log(DIRECTION, route, raised.kind, 200);
            return Relayed {
                body: raised.body(entry.envelope),
                error: Some(raised.kind),
                queued: None,
            };
        }
    };
    call.log(DIRECTION, route, "queued", 200);
    Relayed {
        body: raised,
        error: None,
        queued,
    }
}

/// The business key of a call (`refundNo=R1`), from the catalogue's idempotency fields; `None`
/// when the body lacks one of them (such a call is not buffered: it could not be deduplicated).
fn idempotency_key(entry: &Entry, body: &[u8]) -> Option<String> {
    if entry.idempotency_key.is_empty() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let mut parts = Vec::new();
    for field in &entry.idempotency_key {
        let mut cur = &v;
        for seg in field.split('.') {
            cur = match cur {
                serde_json::Value::Array(a) => a.first()?.get(seg)?,
                other => other.get(seg)?,
            };
        }
        let text = match cur {
            serde_json::Value::String(s) if !s.trim().is_empty() => s.trim().to_string(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => return None,
        };
        parts.push(format!("{field}={text}"));
    }
    Some(parts.join("&"))
}

/// Adds the box's headers to an answer.
fn mark(r: &mut Response<Body>, relayed: &Relayed) {
    if let Some(kind) = relayed.error {
        r.headers_mut()
            .insert(crate::outcome::ERROR_HEADER, HeaderValue::from_static(kind));
    }
    if let Some(id) = relayed.queued {
        if let Ok(v) = HeaderValue::from_str(&id.to_string()) {
            r.headers_mut().insert(QUEUED_HEADER, v);
        }
    }
}

/// `/prefront/services/prefrontWebService`: the WSDL on GET `?wsdl`, SOAP calls on POST.
async fn webservice(state: &Arc<State>, req: Request<Incoming>, call: Call) -> Response<Body> {
    const ROUTE: &str = "prefront/services/prefrontWebService";
    match *req.method() {
        Method::GET | Method::HEAD => {
            let wants_wsdl = req.uri().query().is_some_and(|q| {
                q.split('&').any(|p| {
                    p.split('=')
                        .next()
                        .is_some_and(|k| k.eq_ignore_ascii_case("wsdl"))
                })
            });
            if !wants_wsdl {
                call.log(DIRECTION, ROUTE, "not-found", 404);
                return not_found("prefrontWebService: GET ?wsdl for the WSDL, POST SOAP calls\n");
            }
            let address = service_address(state, &req);
            call.log(DIRECTION, ROUTE, "wsdl", 200);
            let mut r = Response::new(Body::new(Bytes::from(wsdl::with_address(&address))));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/xml;charset=UTF-8"),
            );
            r
        }
        Method::POST => soap_call(state, req, call).await,
        _ => {
            call.log(DIRECTION, ROUTE, "method-not-allowed", 405);
            method_not_allowed("GET, POST")
        }
    }
}

/// The address written into the served WSDL: `his_listener.public_url` when configured, else
/// the request's `Host` when it is a plain host[:port], else the listener's own address.
fn service_address(state: &State, req: &Request<Incoming>) -> String {
    if let Some(base) = &state.config.his_listener.public_url {
        return format!("{base}{}", wsdl::SERVICE_PATH);
    }
    let scheme = if state.config.his_listener.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let host = req
        .headers()
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                })
        })
        .map(str::to_string)
        .unwrap_or_else(|| state.config.his_listener.listen.to_string());
    format!("{scheme}://{host}{}", wsdl::SERVICE_PATH)
}

/// One SOAP call: parsed, dispatched to the interface its operation names, and answered in the
/// caller's SOAP version and charset. Faults only for SOAP-level problems; everything else is
/// the interface's JSON envelope inside `return`.
async fn soap_call(state: &Arc<State>, req: Request<Incoming>, call: Call) -> Response<Body> {
    const ROUTE: &str = "prefront/services/prefrontWebService";
    let (parts, body) = match read_body(req, state.config.his_listener.max_body).await {
        Ok(x) => x,
        Err(e) => {
            let r = body_error_response(&e);
            call.log(DIRECTION, ROUTE, "body-refused", r.status().as_u16());
            return r;
        }
    };
    let content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let hinted =
        if content_type.is_some_and(|c| c.to_ascii_lowercase().contains("application/soap+xml")) {
            SoapVersion::V12
        } else {
            SoapVersion::V11
        };
    let parsed = match envelope::parse_call(&body, content_type) {
        Ok(c) => c,
        Err(e) => {
            call.log(DIRECTION, ROUTE, "soap-fault", fault_status(hinted));
            return fault(hinted, &e.to_string());
        }
    };
    let ops = wsdl::operations();
    let Some(path) = ops.get(&parsed.operation) else {
        call.log(DIRECTION, ROUTE, "soap-fault", fault_status(parsed.version));
        let op: String = parsed.operation.chars().take(64).collect();
        return fault(parsed.version, &format!("unknown operation `{op}`"));
    };
    let Some(entry) = Catalog::get().by_request_path(path) else {
        call.log(DIRECTION, ROUTE, "soap-fault", fault_status(parsed.version));
        return fault(parsed.version, "operation has no interface");
    };
    // The param is the same JSON the HTTP endpoint takes: same checks, same outcomes.
    let json = Bytes::from(parsed.param.clone().into_bytes());
    let relayed = match super::check_json(&json, "param ", "param") {
        Ok(()) => relay(state, entry, json, &call).await,
        Err(raised) => {
            call.log(DIRECTION, route_of(entry), raised.kind, 200);
            Relayed {
                body: raised.body(entry.envelope),
                error: Some(raised.kind),
                queued: None,
            }
        }
    };
    let text = String::from_utf8_lossy(&relayed.body);
    let charset = parsed.charset.as_deref();
    let xml = envelope::call_response(
        parsed.version,
        wsdl::NAMESPACE,
        &parsed.operation,
        &text,
        charset,
    );
    let bytes = crate::charset::xml_for(xml.as_bytes(), charset).into_owned();
    let mut r = Response::new(Body::new(Bytes::from(bytes)));
    let ct = envelope::content_type(parsed.version, charset.unwrap_or("UTF-8"), None);
    if let Ok(v) = HeaderValue::from_str(&ct) {
        r.headers_mut().insert(CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&call.request_id) {
        r.headers_mut().insert("x-request-id", v);
    }
    mark(&mut r, &relayed);
    r
}

/// SOAP 1.1 sends every fault with 500; SOAP 1.2 sends a Sender fault with 400.
fn fault_status(version: SoapVersion) -> u16 {
    match version {
        SoapVersion::V11 => 500,
        SoapVersion::V12 => 400,
    }
}

fn fault(version: SoapVersion, reason: &str) -> Response<Body> {
    let mut r = Response::new(Body::new(Bytes::from(envelope::client_fault(
        version, reason,
    ))));
    *r.status_mut() =
        StatusCode::from_u16(fault_status(version)).unwrap_or(StatusCode::BAD_REQUEST);
    if let Ok(v) = HeaderValue::from_str(&envelope::content_type(version, "UTF-8", None)) {
        r.headers_mut().insert(CONTENT_TYPE, v);
    }
    r.headers_mut().insert(
        crate::outcome::ERROR_HEADER,
        HeaderValue::from_static("soap-fault"),
    );
    r
}

/// The answer to a call accepted into the buffer. There are few of them (a reminder, a business
/// call, a refund; in each envelope), so each is serialised once, not once per call.
fn queued_answer(kind: Kind, business_code: Code, envelope: Envelope) -> Bytes {
    static ANSWERS: [std::sync::OnceLock<Bytes>; 9] = [const { std::sync::OnceLock::new() }; 9];
    let (row, raised): (usize, fn() -> Raised) = match (kind, business_code) {
        (Kind::Notify, _) => (0, || {
            Raised::accepted(
                Code::Success,
                "queued",
                "已缓存，云平台恢复后送达 (queued: the cloud is unreachable; it is delivered when the link returns)",
            )
        }),
        (_, Code::StateUnknown) => (1, || business_queued(Code::StateUnknown)),
        _ => (2, || business_queued(Code::Accepted)),
    };
    let column = match envelope {
        Envelope::Standard => 0,
        Envelope::Status => 1,
        Envelope::Message => 2,
    };
    ANSWERS[row * 3 + column]
        .get_or_init(|| raised().body(envelope))
        .clone()
}

fn business_queued(code: Code) -> Raised {
    Raised::new(
        code,
        "queued",
        "已受理，处理结果未知，请稍后以相同单号重试 (accepted into the buffer: retry with the same number later for the result)",
    )
}
