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
use crate::app::State;
use crate::catalog::{Catalog, Entry, Envelope};
use crate::config::SoapVersion;
use crate::outcome::{Code, Raised};
use crate::soap::{envelope, wsdl};

const DIRECTION: &str = "his_to_cloud";

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
    let (answer, kind) = relay(state, entry, body, &call).await;
    let mut r = json_response(answer, charset.as_deref(), &call.request_id);
    if let Some(kind) = kind {
        r.headers_mut()
            .insert(crate::outcome::ERROR_HEADER, HeaderValue::from_static(kind));
    }
    r
}

/// Catalogue paths are plain ASCII; only they appear in logs and upstream URLs.
fn route_of(entry: &Entry) -> &str {
    entry.path.as_deref().unwrap_or_default()
}

/// Sends a validated JSON call to the cloud and logs it. Returns the JSON the caller gets (the
/// cloud's answer, or the envelope the box raised) and, when raised, its `X-Prefront-Error` kind.
async fn relay(
    state: &State,
    entry: &Entry,
    body: Bytes,
    call: &Call,
) -> (Bytes, Option<&'static str>) {
    let route = route_of(entry);
    debug_body("request from HIS", &call.request_id, &body);
    match state.cloud.call(route, &call.request_id, body).await {
        Ok(answer) => {
            debug_body("answer from cloud", &call.request_id, &answer);
            call.log(DIRECTION, route, "ok", 200);
            (answer, None)
        }
        Err(e) => {
            let raised = Raised::new(
                Code::SystemError,
                e.kind(),
                format!("系统错误：云平台调用失败 (cloud call failed: {e})"),
            );
            call.log(DIRECTION, route, raised.kind, 200);
            (raised.body(entry.envelope), Some(raised.kind))
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
    let (answer, kind) = match super::check_json(&json, "param ", "param") {
        Ok(()) => relay(state, entry, json, &call).await,
        Err(raised) => {
            call.log(DIRECTION, route_of(entry), raised.kind, 200);
            (raised.body(entry.envelope), Some(raised.kind))
        }
    };
    let text = String::from_utf8_lossy(&answer);
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
    if let Some(kind) = kind {
        r.headers_mut()
            .insert(crate::outcome::ERROR_HEADER, HeaderValue::from_static(kind));
    }
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
