//! The cloud listener's requests: `POST /his/<name>` for every cloud → HIS interface, relayed to
//! the HIS endpoint the config routes the name to; `GET|HEAD /pacs/dcm` and `/files/<token>`
//! (shared with the files listener, `files.rs`).

use std::borrow::Cow;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, Response};

use super::{
    body_error_response, debug_body, files, json_body, json_body_noting, json_response,
    method_not_allowed, not_found, plain_refusal, raised_response, read_body, Body, Call, Reply,
    State,
};
use crate::catalog::{is_valid_name, Catalog, Envelope};
use crate::config::HospitalMiss;
use crate::json::Member;
use crate::outcome::{Code, Direction, Outcome, Raised};

const DIRECTION: Direction = Direction::CloudToHis;

fn reply(response: Response<Body>, route: impl Into<Cow<'static, str>>, outcome: Outcome) -> Reply {
    Reply::logged(response, DIRECTION, route, outcome)
}

pub async fn handle(state: &Arc<State>, req: Request<Incoming>, call: &Call) -> Reply {
    let path = req.uri().path();
    if path.starts_with("/files/") {
        return files::file(state, req, call).await;
    }
    if path == "/pacs/dcm" {
        return pacs_dcm(state, req, call).await;
    }
    let Some(name) = path.strip_prefix("/his/") else {
        let r = not_found(
            "prefront cloud listener: POST /his/<name>, GET /pacs/dcm?dcmId=…, GET /files/<token>\n",
        );
        return reply(r, "none", Outcome::NotFound);
    };
    if req.method() != Method::POST {
        return reply(
            method_not_allowed("POST"),
            "none",
            Outcome::MethodNotAllowed,
        );
    }
    let name = name.to_string();
    // Read and (with [auth]) authenticate the call before saying anything about the name.
    let (parts, body) = match read_body(req, state.config.cloud_listener.max_body).await {
        Ok(x) => x,
        Err(e) => return reply(body_error_response(&e), "none", Outcome::BodyRefused),
    };
    let known = is_valid_name(&name)
        && (Catalog::get().by_name(&name).is_some() || state.config.his.routes_name(&name));
    // Metric labels only ever carry names the box knows (a caller cannot grow them).
    let log_name: Cow<'static, str> = if known {
        Cow::Owned(name.clone())
    } else {
        Cow::Borrowed("unknown")
    };
    if let Some(err) = signature_error(state, &parts, &body) {
        // The spec's own code for it (附四 50001 无权访问), in the interface's envelope.
        let raised = Raised::new(
            Code::NoAccess,
            err.kind(),
            format!("无权访问 (signed call refused: {err})"),
        );
        let r = raised_response(&raised, Envelope::Standard, None, &call.request_id);
        return reply(r, log_name, raised.kind);
    }
    if !known {
        let raised = Raised::new(
            Code::NotConfigured,
            Outcome::UnknownName,
            "接口未配置 (no such hospital interface name)",
        );
        let r = raised_response(&raised, Envelope::Standard, None, &call.request_id);
        return reply(r, "unknown", raised.kind);
    }
    // With [[hospital]], the body's top-level hospitalId chooses the hospital: the body is
    // checked (and the id noted) before the route is chosen. Without, nothing in it is read
    // before the route is known.
    let mut checked = None;
    if state.his.has_hospitals() {
        match json_body_noting(&parts, &body, Some("hospitalId")) {
            Ok(x) => checked = Some(x),
            Err(raised) => {
                let r = raised_response(&raised, Envelope::Standard, None, &call.request_id);
                return reply(r, name, raised.kind);
            }
        }
    }
    let hospital = match hospital_id(checked.as_mut().and_then(|c| c.2.take())) {
        Ok(h) => h,
        Err(raised) => {
            let r = raised_response(&raised, Envelope::Standard, None, &call.request_id);
            return reply(r, name, raised.kind);
        }
    };
    let route = match state.his.route_in(hospital.as_deref(), &name) {
        Ok(Some(route)) => route.clone(),
        Ok(None) => {
            let raised = Raised::new(
                Code::NotConfigured,
                Outcome::NotConfigured,
                "接口未配置 (this hospital has not configured this interface)",
            );
            let r = raised_response(&raised, Envelope::Standard, None, &call.request_id);
            return reply(r, name, raised.kind);
        }
        Err(miss) => {
            let raised = match miss {
                HospitalMiss::Unknown => Raised::new(
                    Code::NotConfigured,
                    Outcome::UnknownHospital,
                    "接口未配置：本前置机未配置该医院 (no [[hospital]] on this box has this \
                     hospitalId; nothing was sent to any HIS)",
                ),
                HospitalMiss::Split => Raised::new(
                    Code::NotConfigured,
                    Outcome::NotConfigured,
                    "接口未配置：这些医院的院内系统不同 (the hospitals in this hospitalId list \
                     are reached through different HIS routes; send one hospitalId per call)",
                ),
            };
            let r = raised_response(&raised, Envelope::Standard, None, &call.request_id);
            return reply(r, name, raised.kind);
        }
    };
    let (body, charset) = match checked {
        Some((body, charset, _)) => (body, charset),
        None => match json_body(&parts, &body) {
            Ok(x) => x,
            Err(raised) => {
                let r = raised_response(&raised, Envelope::Standard, None, &call.request_id);
                return reply(r, name, raised.kind);
            }
        },
    };
    debug_body("request from cloud", &call.request_id, &body);
    // For the trail: the business key of interfaces that have one (`orderId=…`).
    let key = if crate::trail::active() {
        Catalog::get()
            .by_name(&name)
            .and_then(|e| crate::buffer::policy::idempotency_key(e, &body))
    } else {
        None
    };
    match state.his.call(&name, &route, &call.request_id, body).await {
        Ok(answer) => {
            debug_body("answer from HIS", &call.request_id, &answer);
            let answer = state.pacs.rewrite_links(answer);
            let r = json_response(answer, charset.as_deref(), &call.request_id);
            reply(r, name, Outcome::Ok).with_trail(key, None)
        }
        Err(e) => {
            // The cloud hears what kind of failure it was; what the HIS said (a fault's text, an
            // error page) stays on the LAN, in this log, masked.
            tracing::warn!(
                request_id = %call.request_id,
                route = %name,
                hospital = hospital.as_deref().unwrap_or(""),
                kind = e.kind().as_str(),
                error = %crate::telemetry::redact::mask_text(&e.to_string()),
                "HIS call failed"
            );
            let raised = Raised::new(
                Code::SystemError,
                e.kind(),
                format!(
                    "系统错误：院内系统调用失败 (HIS call failed: {})",
                    e.public_text()
                ),
            );
            let r = raised_response(
                &raised,
                Envelope::Standard,
                charset.as_deref(),
                &call.request_id,
            );
            reply(r, name, raised.kind).with_trail(key, None)
        }
    }
}

/// Longest `hospitalId` a body may carry: 16 ids of the longest a `[[hospital]]` may have.
const MAX_HOSPITAL_IDS: usize = 16 * crate::config::MAX_HOSPITAL_ID;

/// The body's top-level `hospitalId` as the routing reads it: a string (`"253"`, or a list
/// `"253,254"`) or an integer (`253`); `None` without one. Anything else is refused with 20003
/// before a route is chosen, so nothing is sent anywhere.
fn hospital_id(member: Option<Member>) -> Result<Option<String>, Raised> {
    let bad = |why: &str| {
        Raised::new(
            Code::InvalidParameter,
            Outcome::BadHospitalId,
            format!("参数无效：hospitalId 格式错误 (hospitalId {why})"),
        )
    };
    let id = match member {
        None => return Ok(None),
        Some(Member::Int(i)) => return Ok(Some(i)),
        Some(Member::Other(kind)) => {
            return Err(bad(&format!(
                "must be a string or an integer, not {} {kind}",
                if kind.starts_with(['a', 'o']) {
                    "an"
                } else {
                    "a"
                }
            )))
        }
        Some(Member::Str(s)) => s,
    };
    if id.trim().is_empty() {
        return Err(bad("is empty"));
    }
    if id.len() > MAX_HOSPITAL_IDS {
        return Err(bad(&format!("is longer than {MAX_HOSPITAL_IDS} bytes")));
    }
    if id.chars().any(char::is_control) {
        return Err(bad("contains control characters"));
    }
    if id
        .split(',')
        .any(|one| one.trim().is_empty() || one.trim().len() > crate::config::MAX_HOSPITAL_ID)
    {
        return Err(bad(&format!(
            "is a list with an empty id or one longer than {} bytes",
            crate::config::MAX_HOSPITAL_ID
        )));
    }
    Ok(Some(id))
}

/// `GET|HEAD /pacs/dcm`: streamed from the LAN, never buffered whole.
async fn pacs_dcm(state: &Arc<State>, req: Request<Incoming>, call: &Call) -> Reply {
    const PACS: Direction = files::DIRECTION;
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let r = method_not_allowed("GET, HEAD");
        return Reply::logged(r, PACS, "files", Outcome::MethodNotAllowed);
    }
    // A GET carries no body worth reading; whatever is sent is left unread.
    let (parts, _body) = req.into_parts();
    if let Some(err) = signature_error(state, &parts, b"") {
        // The file routes refuse a bad signature with a plain 401.
        let r = plain_refusal(
            hyper::StatusCode::UNAUTHORIZED,
            err.kind(),
            format!("signed call refused: {err}\n"),
            &call.request_id,
        );
        return Reply::logged(r, DIRECTION, "pacs-dcm", err.kind());
    }
    let fetched = state.pacs.dcm(&parts, &files::caller(call)).await;
    files::reply(fetched, "pacs-dcm", call)
}

/// With `[auth]` set, a call from the cloud must carry a valid, fresh, unused signature.
/// Why a signed call is refused, with `[auth]`; `None` when it passes or nothing is required.
fn signature_error(
    state: &State,
    parts: &hyper::http::request::Parts,
    body: &[u8],
) -> Option<crate::auth::AuthError> {
    let verifier = state.verifier.as_ref()?;
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let target = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_string(), |p| p.as_str().to_string());
    verifier
        .verify(
            parts.method.as_str(),
            &target,
            header(crate::auth::TIMESTAMP_HEADER),
            header(crate::auth::SIGNATURE_HEADER),
            body,
            crate::auth::unix_now(),
        )
        .err()
}
