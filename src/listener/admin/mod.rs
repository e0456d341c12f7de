//! The admin listener (`[admin] listen`, loopback by default): `/healthz`, `/readyz` and
//! `/metrics` (Prometheus text) for the operator and the monitoring system, and `/status`, an
//! HTML page for the hospital's IT staff (`super::status`).

use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};

use super::State;
use super::{method_not_allowed, not_found, Body, Call, Reply};

/// An admin route a part of the binary adds for itself: the answer for a method and path it
/// serves, `None` for any other path.
pub type Extra = fn(&Method, &str) -> Option<Response<Body>>;

static EXTRA: std::sync::OnceLock<Extra> = std::sync::OnceLock::new();

/// Adds `extra` to the admin listener of this process (once; a second call is ignored).
pub fn register(extra: Extra) {
    let _ = EXTRA.set(extra);
}

/// A small admin answer: `status`, `content_type`, never cached.
pub fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(Body::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    r
}

mod api;
pub use api::trail_query;
pub mod form;

/// The admin pages are not calls through the box: no call log line, no call metric.
pub async fn handle(state: &Arc<State>, req: Request<Incoming>, call: &Call) -> Reply {
    if req.uri().path().starts_with("/api/") {
        return Reply::unlogged(api::handle(state, req, call.client).await);
    }
    Reply::unlogged(page(state, req).await)
}

async fn page(state: &Arc<State>, req: Request<Incoming>) -> Response<Body> {
    // Routes a part of the binary registered for itself (`prefront demo`'s outage switch).
    if let Some(r) = EXTRA
        .get()
        .and_then(|extra| extra(req.method(), req.uri().path()))
    {
        return r;
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return method_not_allowed("GET, HEAD");
    }
    match req.uri().path() {
        // The process is up and answering.
        "/healthz" => text(StatusCode::OK, "text/plain; charset=utf-8", "ok\n"),
        "/readyz" => {
            // Listeners are bound and the config loaded by the time this answers; the buffer is
            // the one part that can go away under a running box (disk full, I/O errors). Its
            // health is kept by the store: this reads no disk.
            let health = state.outbox.store().health();
            let ready = health.writable;
            let body = serde_json::json!({
                "ready": ready,
                "reason": health.reason,
                "version": env!("CARGO_PKG_VERSION"),
                "cloud_link": format!("{:?}", state.cloud.link.state()).to_lowercase(),
            });
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            text(status, "application/json", body.to_string())
        }
        "/metrics" | "/status" => {
            let state = state.clone();
            // The buffer store answers from disk and certificates are read from files: off the
            // runtime's threads. The page and the scrape read the same snapshot.
            let page = req.uri().path() == "/status";
            let query = req.uri().query().map(str::to_string);
            let snapshot = match tokio::task::spawn_blocking(move || {
                if page {
                    super::status::gather_page(&state, query.as_deref())
                } else {
                    super::status::gather(&state)
                }
            })
            .await
            {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "the status snapshot could not be made");
                    return text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "text/plain; charset=utf-8",
                        "the status could not be read; see the log\n",
                    );
                }
            };
            if req.uri().path() == "/metrics" {
                return text(
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    super::status::render_metrics(&snapshot),
                );
            }
            let mut r = text(
                StatusCode::OK,
                "text/html; charset=utf-8",
                super::status::render(&snapshot),
            );
            // The page has no scripts and loads nothing, and its forms post only to this
            // listener: say so to the browser.
            r.headers_mut().insert(
                "content-security-policy",
                HeaderValue::from_static(
                    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'",
                ),
            );
            r.headers_mut().insert(
                "x-content-type-options",
                HeaderValue::from_static("nosniff"),
            );
            r
        }
        _ => not_found("prefront admin: GET /healthz, /readyz, /metrics, /status\n"),
    }
}
