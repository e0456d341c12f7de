//! The HIS listener's requests: `POST /prefront/<path>` (JSON) and the WebService
//! `/prefront/services/prefrontWebService` (WSDL at `?wsdl`, SOAP 1.1 and 1.2 calls) for every
//! HIS → cloud interface of the catalogue, relayed to the cloud along one path.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response, StatusCode};

use super::State;
use super::{
    body_error_response, debug_body, json_body, json_response, method_not_allowed, not_found,
    raised_response, read_body, Body, Call, Reply,
};
use crate::buffer::events::{self, Event};
use crate::buffer::policy::{self, Wait};
use crate::buffer::{Enqueued, OutboxError, Route};
use crate::catalog::{Catalog, Entry, Envelope};
use crate::config::{SoapVersion, ANSWER_WITHIN};
use crate::outcome::{Code, Direction, Outcome, Raised};
use crate::soap::{envelope, wsdl};

const DIRECTION: Direction = Direction::HisToCloud;

fn reply(response: Response<Body>, route: &'static str, outcome: Outcome) -> Reply {
    Reply::logged(response, DIRECTION, route, outcome)
}

/// The header that carries the buffer record id of a call accepted into the buffer.
pub const QUEUED_HEADER: hyper::header::HeaderName =
    hyper::header::HeaderName::from_static("x-prefront-queued");

pub async fn handle(state: &Arc<State>, req: Request<Incoming>, call: &Call) -> Reply {
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
        return reply(
            not_found("prefront HIS listener: POST /prefront/<path>\n"),
            "none",
            Outcome::NotFound,
        );
    }
    if req.method() != Method::POST {
        return reply(
            method_not_allowed("POST"),
            "none",
            Outcome::MethodNotAllowed,
        );
    }
    let Some(entry) = Catalog::get().by_request_path(path) else {
        let raised = Raised::new(
            Code::UnknownInterface,
            Outcome::UnknownPath,
            "接口不存在 (no such prefront interface; see the interface specification)",
        );
        let r = raised_response(&raised, Envelope::Standard, None, &call.request_id);
        return reply(r, "unknown", raised.kind);
    };
    let (parts, body) = match read_body(req, state.config.his_listener.max_body).await {
        Ok(x) => x,
        Err(e) => {
            return reply(
                body_error_response(&e),
                route_of(entry),
                Outcome::BodyRefused,
            );
        }
    };
    let (body, charset) = match json_body(&parts, &body) {
        Ok(x) => x,
        Err(raised) => {
            let r = raised_response(&raised, entry.envelope, None, &call.request_id);
            return reply(r, route_of(entry), raised.kind);
        }
    };
    let relayed = relay(state, entry, body, call).await;
    let mut r = json_response(relayed.body.clone(), charset.as_deref(), &call.request_id);
    mark(&mut r, &relayed);
    reply(r, route_of(entry), relayed.outcome).with_trail(relayed.key, relayed.queued)
}

/// Catalogue paths are plain ASCII; only they appear in logs and upstream URLs.
fn route_of(entry: &'static Entry) -> &'static str {
    entry.path.as_deref().unwrap_or_default()
}

/// What the caller gets for one relayed call.
struct Relayed {
    /// The JSON answer: the cloud's, or the envelope the box raised.
    body: Bytes,
    /// What became of the call (`X-Prefront-Error` when it failed).
    outcome: Outcome,
    /// `X-Prefront-Queued` when the call was accepted into the buffer.
    queued: Option<u64>,
    /// The business key, for the trail.
    key: Option<String>,
}

/// Sends a validated JSON call on its way and logs it (DESIGN.md §3): straight to the cloud
/// while the link is up and the route has no backlog; into the buffer when the link is down, the
/// route has a backlog, or a direct attempt fails in a way worth retrying (link broken, 5xx,
/// 408, 429) — for `notify` calls and
/// `business` calls with an idempotency key; otherwise, with the link down, 10003 at once.
async fn relay(state: &State, entry: &'static Entry, body: Bytes, call: &Call) -> Relayed {
    let key = policy::idempotency_key(entry, &body);
    let mut relayed = relay_with_key(state, entry, body, key.as_deref(), call).await;
    relayed.key = key;
    relayed
}

async fn relay_with_key(
    state: &State,
    entry: &'static Entry,
    body: Bytes,
    business_key: Option<&str>,
    call: &Call,
) -> Relayed {
    let route = route_of(entry);
    debug_body("request from HIS", &call.request_id, &body);
    let delivery = state.config.cloud.delivery.get(route).copied();
    let wait = policy::wait(entry, delivery, business_key);
    // Named only when the call may wait (a `String` per call otherwise).
    let queue = || Route::cloud(route);
    let store = state.outbox.store();
    if let Wait::Yes { key: Some(k) } = &wait {
        // A business call whose key was delivered already gets the cloud's recorded answer,
        // link up or down, and is not sent again (DESIGN.md §3).
        if let Ok(Some(answer)) = store.cached_result(queue().as_str(), k) {
            return Relayed {
                body: Bytes::from(answer),
                outcome: Outcome::CachedResult,
                queued: None,
                key: None,
            };
        }
    }
    if let Wait::Yes { key } = &wait {
        let queue = queue();
        // While the buffer cannot write, its backlog cannot be joined: with the link up the call
        // goes straight through rather than be refused (DESIGN.md §3.1).
        let backlog = store.depth(queue.as_str()).unwrap_or(0) > 0 && store.health().writable;
        if backlog || !state.cloud.link.is_up() {
            return enqueue(state, entry, &queue, key.as_deref(), body, call).await;
        }
    } else if !state.cloud.link.is_up() {
        // A proxy that refuses or is gone says so (DESIGN.md §9); any other cause is the link.
        let kind = match state.cloud.link.down_kind() {
            Some(k @ (Outcome::ProxyRefused | Outcome::ProxyUnreachable)) => k,
            _ => Outcome::LinkDown,
        };
        let raised = Raised::new(
            Code::SystemError,
            kind,
            "系统错误：云平台暂不可达，请稍后重试 (the cloud link is down; try again later)",
        );
        return Relayed {
            body: raised.body(entry.envelope),
            outcome: raised.kind,
            queued: None,
            key: None,
        };
    }
    match state
        .cloud
        .call(route, &call.request_id, None, body.clone())
        .await
    {
        Ok(answer) => {
            debug_body("answer from cloud", &call.request_id, &answer);
            Relayed {
                body: answer,
                outcome: Outcome::Ok,
                queued: None,
                key: None,
            }
        }
        Err(e) if e.retry().may_wait() && wait != Wait::No => {
            let key = match wait {
                Wait::Yes { key } => key,
                Wait::No => None,
            };
            enqueue(state, entry, &queue(), key.as_deref(), body, call).await
        }
        Err(e) => {
            let raised = Raised::new(
                Code::SystemError,
                e.kind(),
                format!("系统错误：云平台调用失败 (cloud call failed: {e})"),
            );
            Relayed {
                body: raised.body(entry.envelope),
                outcome: raised.kind,
                queued: None,
                key: None,
            }
        }
    }
}

/// Accepts a call into the buffer and answers only once it is durable on disk.
async fn enqueue(
    state: &State,
    entry: &Entry,
    queue: &Route,
    key: Option<&str>,
    body: Bytes,
    call: &Call,
) -> Relayed {
    // The fsync is shared with every call accepted meanwhile (group commit); this task waits for
    // it without holding a thread, and not past what the caller waits for (see `commit_wait`).
    let result = enqueue_in_time(state, queue, key, body, call).await;
    let (raised, queued) = match result {
        Ok(Enqueued::New(id)) | Ok(Enqueued::AlreadyQueued(id)) => {
            if matches!(result, Ok(Enqueued::New(_))) {
                events::emit(Event::Queued {
                    route: queue.as_str(),
                    id,
                });
            }
            state.forwarders.wake();
            (
                queued_answer(policy::queued_code(entry), entry.envelope),
                Some(id),
            )
        }
        Ok(Enqueued::Delivered(answer)) => {
            return Relayed {
                body: Bytes::from(answer),
                outcome: Outcome::CachedResult,
                queued: None,
                key: None,
            };
        }
        Err(e) => {
            let kind = e.outcome();
            events::emit(Event::NotAccepted {
                route: queue.as_str(),
                kind: kind.as_str(),
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
            return Relayed {
                body: raised.body(entry.envelope),
                outcome: raised.kind,
                queued: None,
                key: None,
            };
        }
    };
    Relayed {
        body: raised,
        outcome: Outcome::Queued,
        queued,
        key: None,
    }
}

/// The least time a call's write into the buffer is given before the caller is told it was not
/// accepted, however long its direct attempt took.
const MIN_COMMIT_WAIT: Duration = Duration::from_millis(500);

/// How long a call may wait for its write into the buffer to be durable: what is left of
/// `ANSWER_WITHIN` since the call arrived (a direct attempt that timed out used most of it), and
/// at least `MIN_COMMIT_WAIT`. A healthy disk commits in milliseconds; a disk that stalls must
/// not keep the HIS waiting past its own timeout.
fn commit_wait(call: &Call) -> Duration {
    ANSWER_WITHIN
        .saturating_sub(call.started.elapsed())
        .max(MIN_COMMIT_WAIT)
}

/// `AsyncOutbox::enqueue` within `commit_wait`. When the commit is late the caller is told the
/// call was not accepted (10003), which is true of its acknowledgement; the write itself goes on
/// and, once durable, is delivered like any other (a reminder may then reach the cloud although
/// the HIS was told 10003, as it would after the HIS gave up waiting).
async fn enqueue_in_time(
    state: &State,
    queue: &Route,
    key: Option<&str>,
    body: Bytes,
    call: &Call,
) -> Result<Enqueued, OutboxError> {
    let wait = commit_wait(call);
    let outbox = state.outbox.clone();
    let (route, key, request_id) = (
        queue.clone(),
        key.map(str::to_string),
        call.request_id.clone(),
    );
    let mut write = Box::pin(async move {
        let r = outbox
            .enqueue(&route, key.as_deref(), &body, &request_id)
            .await;
        (route, r)
    });
    match tokio::time::timeout(wait, &mut write).await {
        Ok((_, r)) => r,
        Err(_) => {
            let forwarders = state.forwarders.clone();
            tokio::spawn(async move {
                let (route, r) = write.await;
                if let Ok(Enqueued::New(id)) = r {
                    tracing::warn!(
                        route = route.as_str(),
                        id,
                        "buffer: a write acknowledged late is durable now and will be delivered"
                    );
                    events::emit(Event::Queued {
                        route: route.as_str(),
                        id,
                    });
                    forwarders.wake();
                }
            });
            Err(OutboxError::Storage(format!(
                "the buffer did not confirm the write within {} ms (the disk is slow or stalled); the call was not acknowledged and may still be delivered",
                wait.as_millis()
            )))
        }
    }
}

/// Adds the box's headers to an answer.
fn mark(r: &mut Response<Body>, relayed: &Relayed) {
    if relayed.outcome.failed() {
        r.headers_mut().insert(
            crate::outcome::ERROR_HEADER,
            HeaderValue::from_static(relayed.outcome.as_str()),
        );
    }
    if let Some(id) = relayed.queued {
        if let Ok(v) = HeaderValue::from_str(&id.to_string()) {
            r.headers_mut().insert(QUEUED_HEADER, v);
        }
    }
}

/// `/prefront/services/prefrontWebService`: the WSDL on GET `?wsdl`, SOAP calls on POST.
async fn webservice(state: &Arc<State>, req: Request<Incoming>, call: &Call) -> Reply {
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
                let r = not_found("prefrontWebService: GET ?wsdl for the WSDL, POST SOAP calls\n");
                return reply(r, ROUTE, Outcome::NotFound);
            }
            let address = service_address(state, &req);
            let mut r = Response::new(Body::new(Bytes::from(wsdl::with_address(&address))));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/xml;charset=UTF-8"),
            );
            reply(r, ROUTE, Outcome::Wsdl)
        }
        Method::POST => soap_call(state, req, call).await,
        _ => reply(
            method_not_allowed("GET, POST"),
            ROUTE,
            Outcome::MethodNotAllowed,
        ),
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
async fn soap_call(state: &Arc<State>, req: Request<Incoming>, call: &Call) -> Reply {
    const ROUTE: &str = "prefront/services/prefrontWebService";
    let (parts, body) = match read_body(req, state.config.his_listener.max_body).await {
        Ok(x) => x,
        Err(e) => return reply(body_error_response(&e), ROUTE, Outcome::BodyRefused),
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
        Err(e) => return fault(hinted, &e.to_string()),
    };
    let ops = wsdl::operations();
    let Some(path) = ops.get(&parsed.operation) else {
        let op: String = parsed.operation.chars().take(64).collect();
        return fault(parsed.version, &format!("unknown operation `{op}`"));
    };
    let Some(entry) = Catalog::get().by_request_path(path) else {
        return fault(parsed.version, "operation has no interface");
    };
    // The param is the same JSON the HTTP endpoint takes: same checks, same outcomes.
    let relayed = match super::check_json(&parsed.param, "param ", "param") {
        Ok(()) => relay(state, entry, Bytes::from(parsed.param.clone()), call).await,
        Err(raised) => Relayed {
            body: raised.body(entry.envelope),
            outcome: raised.kind,
            queued: None,
            key: None,
        },
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
        r.headers_mut().insert(crate::outcome::REQUEST_ID_HEADER, v);
    }
    mark(&mut r, &relayed);
    reply(r, route_of(entry), relayed.outcome).with_trail(relayed.key, relayed.queued)
}

/// SOAP 1.1 sends every fault with 500; SOAP 1.2 sends a Sender fault with 400.
fn fault_status(version: SoapVersion) -> u16 {
    match version {
        SoapVersion::V11 => 500,
        SoapVersion::V12 => 400,
    }
}

/// A SOAP-level problem, answered with a Fault and logged on the WebService's route.
fn fault(version: SoapVersion, reason: &str) -> Reply {
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
        HeaderValue::from_static(Outcome::SoapFault.as_str()),
    );
    reply(
        r,
        "prefront/services/prefrontWebService",
        Outcome::SoapFault,
    )
}

/// The answer to a call accepted into the buffer, with the code `policy::queued_code` chose.
/// There are few of them (a reminder, a business call, a refund; in each envelope), so each is
/// serialised once, not once per call.
fn queued_answer(code: Code, envelope: Envelope) -> Bytes {
    static ANSWERS: [std::sync::OnceLock<Bytes>; 9] = [const { std::sync::OnceLock::new() }; 9];
    let (row, raised): (usize, fn() -> Raised) = match code {
        Code::Success => (0, || {
            Raised::accepted(
                Code::Success,
                Outcome::Queued,
                "已缓存，云平台恢复后送达 (queued: the cloud is unreachable; it is delivered when the link returns)",
            )
        }),
        Code::StateUnknown => (1, || business_queued(Code::StateUnknown)),
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
        Outcome::Queued,
        "已受理，处理结果未知，请稍后以相同单号重试 (accepted into the buffer: retry with the same number later for the result)",
    )
}
