//! The cloud listener's requests: `POST /his/<name>` for every cloud → HIS interface, relayed to
//! the HIS endpoint the config routes the name to.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, Response};

use super::{
    body_error_response, debug_body, json_body, json_response, method_not_allowed, not_found,
    raised_response, read_body, Body, Call,
};
use super::State;
use crate::catalog::{is_valid_name, Catalog, Envelope};
use crate::outcome::{Code, Raised};

const DIRECTION: &str = "cloud_to_his";

pub async fn handle(state: &Arc<State>, req: Request<Incoming>, call: Call) -> Response<Body> {
    let path = req.uri().path();
    if path == "/pacs/dcm" || path.starts_with("/files/") {
        return files(state, req, call).await;
    }
    let Some(name) = path.strip_prefix("/his/") else {
        call.log(DIRECTION, "none", "not-found", 404);
        return not_found(
            "prefront cloud listener: POST /his/<name>, GET /pacs/dcm?dcmId=…, GET /files/<token>\n",
        );
    };
    if req.method() != Method::POST {
        call.log(DIRECTION, "none", "method-not-allowed", 405);
        return method_not_allowed("POST");
    }
    let name = name.to_string();
    // Read and (with [auth]) authenticate the call before saying anything about the name.
    let (parts, body) = match read_body(req, state.config.cloud_listener.max_body).await {
        Ok(x) => x,
        Err(e) => {
            let r = body_error_response(&e);
            call.log(DIRECTION, "none", "body-refused", r.status().as_u16());
            return r;
        }
    };
    let known = is_valid_name(&name)
        && (Catalog::get().by_name(&name).is_some() || state.config.his.routes.contains_key(&name));
    // Metric labels only ever carry names the box knows (a caller cannot grow them).
    let log_name = if known { name.as_str() } else { "unknown" };
    if let Some(err) = signature_error(state, &parts, &body) {
        // The spec's own code for it (附四 50001 无权访问), in the interface's envelope.
        let raised = Raised::new(
            Code::NoAccess,
            err.kind(),
            format!("无权访问 (signed call refused: {err})"),
        );
        call.log(DIRECTION, log_name, raised.kind, 200);
        return raised_response(&raised, Envelope::Standard, None, &call.request_id);
    }
    if !known {
        let raised = Raised::new(
            Code::NotConfigured,
            "unknown-name",
            "接口未配置 (no such hospital interface name)",
        );
        call.log(DIRECTION, "unknown", raised.kind, 200);
        return raised_response(&raised, Envelope::Standard, None, &call.request_id);
    }
    let Some(route) = state.his.route(&name).cloned() else {
        let raised = Raised::new(
            Code::NotConfigured,
            "not-configured",
            "接口未配置 (this hospital has not configured this interface)",
        );
        call.log(DIRECTION, &name, raised.kind, 200);
        return raised_response(&raised, Envelope::Standard, None, &call.request_id);
    };
    let (body, charset) = match json_body(&parts, &body) {
        Ok(x) => x,
        Err(raised) => {
            call.log(DIRECTION, &name, raised.kind, 200);
            return raised_response(&raised, Envelope::Standard, None, &call.request_id);
        }
    };
    debug_body("request from cloud", &call.request_id, &body);
    match state.his.call(&name, &route, &call.request_id, body).await {
        Ok(answer) => {
            debug_body("answer from HIS", &call.request_id, &answer);
            let answer = state.pacs.rewrite_links(answer);
            call.log(DIRECTION, &name, "ok", 200);
            json_response(answer, charset.as_deref(), &call.request_id)
        }
        Err(e) => {
            // The cloud hears what kind of failure it was; what the HIS said (a fault's text, an
            // error page) stays on the LAN, in this log, masked.
            tracing::warn!(
                request_id = %call.request_id,
                route = %name,
                kind = e.kind(),
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
            call.log(DIRECTION, &name, raised.kind, 200);
            raised_response(
                &raised,
                Envelope::Standard,
                charset.as_deref(),
                &call.request_id,
            )
        }
    }
}

/// `GET|HEAD /pacs/dcm` and `/files/<token>`: streamed from the LAN, never buffered whole.
async fn files(state: &Arc<State>, req: Request<Incoming>, call: Call) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        call.log("cloud_to_pacs", "files", "method-not-allowed", 405);
        return method_not_allowed("GET, HEAD");
    }
    // A GET carries no body worth reading; whatever is sent is left unread.
    let (parts, _body) = req.into_parts();
    match parts.uri.path().strip_prefix("/files/") {
        // A link is its own credential (sealed and expiring): patients' phones open it.
        Some(token) => state.pacs.file(token, &parts, &call).await,
        None => {
            if let Some(refused) = check_signature(state, &parts, b"", &call, "pacs-dcm") {
                return refused;
            }
            state.pacs.dcm(&parts, &call).await
        }
    }
}

/// With `[auth]` set, a call from the cloud must carry a valid, fresh, unused signature; the
/// answer to one that does not is 401 and nothing is forwarded.
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

/// The file routes (`/pacs/dcm`, `/files`) refuse a bad signature with a plain 401.
fn check_signature(
    state: &State,
    parts: &hyper::http::request::Parts,
    body: &[u8],
    call: &Call,
    route: &str,
) -> Option<Response<Body>> {
    let err = signature_error(state, parts, body)?;
    call.log(DIRECTION, route, err.kind(), 401);
    let r = super::plain_refusal(
        hyper::StatusCode::UNAUTHORIZED,
        err.kind(),
        format!("signed call refused: {err}\n"),
        &call.request_id,
    );
    Some(r)
}
