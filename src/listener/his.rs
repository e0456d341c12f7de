//! The HIS listener's requests: `POST /prefront/<path>` for every HIS → cloud interface of the
//! catalogue, relayed to the cloud.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, Response};

use super::{
    body_error_response, debug_body, json_body, json_response, method_not_allowed, not_found,
    raised_response, read_body, Body, Call,
};
use crate::app::State;
use crate::catalog::{Catalog, Envelope};
use crate::outcome::{Code, Raised};

const DIRECTION: &str = "his_to_cloud";

pub async fn handle(state: &Arc<State>, req: Request<Incoming>, call: Call) -> Response<Body> {
    let path = req.uri().path();
    let lower = path.trim_start_matches('/').to_ascii_lowercase();
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
    // Catalogue paths are plain ASCII; only they appear in logs and upstream URLs.
    let route = entry.path.as_deref().unwrap_or_default();
    let (parts, body) = match read_body(req, state.config.his_listener.max_body).await {
        Ok(x) => x,
        Err(e) => {
            let r = body_error_response(&e);
            call.log(DIRECTION, route, "body-refused", r.status().as_u16());
            return r;
        }
    };
    let (body, charset) = match json_body(&parts, &body) {
        Ok(x) => x,
        Err(raised) => {
            call.log(DIRECTION, route, raised.kind, 200);
            return raised_response(&raised, entry.envelope, None, &call.request_id);
        }
    };
    debug_body("request from HIS", &call.request_id, &body);
    match state.cloud.call(route, &call.request_id, body).await {
        Ok(answer) => {
            debug_body("answer from cloud", &call.request_id, &answer);
            call.log(DIRECTION, route, "ok", 200);
            json_response(answer, charset.as_deref(), &call.request_id)
        }
        Err(e) => {
            let raised = Raised::new(
                Code::SystemError,
                e.kind(),
                format!("系统错误：云平台调用失败 (cloud call failed: {e})"),
            );
            call.log(DIRECTION, route, raised.kind, 200);
            raised_response(
                &raised,
                entry.envelope,
                charset.as_deref(),
                &call.request_id,
            )
        }
    }
}
