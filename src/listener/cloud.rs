//! The cloud listener's requests: `POST /his/<name>` for every cloud → HIS interface, relayed to
//! the HIS endpoint the config routes the name to; `GET|HEAD /pacs/dcm` and `/files/<token>`
//! (shared with the files listener, `files.rs`).

use std::borrow::Cow;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, Response};

use super::{
    body_error_response, debug_body, files, json_body, json_response, method_not_allowed,
    not_found, plain_refusal, raised_response, read_body, Body, Call, Reply, State,
};
use crate::catalog::{is_valid_name, Catalog, Envelope};
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
        && (Catalog::get().by_name(&name).is_some() || state.config.his.routes.contains_key(&name));
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
    let Some(route) = state.his.route(&name).cloned() else {
        let raised = Raised::new(
            Code::NotConfigured,
            Outcome::NotConfigured,
            "接口未配置 (this hospital has not configured this interface)",
        );
        let r = raised_response(&raised, Envelope::Standard, None, &call.request_id);
        return reply(r, name, raised.kind);
    };
    let (body, charset) = match json_body(&parts, &body) {
        Ok(x) => x,
        Err(raised) => {
            let r = raised_response(&raised, Envelope::Standard, None, &call.request_id);
            return reply(r, name, raised.kind);
        }
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
