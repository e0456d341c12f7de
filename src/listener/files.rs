//! `GET|HEAD /files/<token>`: a report file or image behind a sealed, expiring link, streamed
//! from the LAN. The files listener (`[files_listener]`, for patients' phones) serves this and
//! nothing else; the cloud listener serves it too, for compatibility.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, Response};

use super::{method_not_allowed, not_found, plain_refusal, Body, Call, Reply, State};
use crate::outcome::{Direction, Outcome};
use crate::pacs::{Caller, Fetched};

/// File calls are logged and counted like the cloud listener's.
pub(super) const DIRECTION: Direction = Direction::CloudToPacs;

/// A request on the files listener: `/files/<token>`, or 404 before anything else is looked
/// at, the body above all (it is never read).
pub async fn handle(state: &Arc<State>, req: Request<Incoming>, call: &Call) -> Reply {
    if !req.uri().path().starts_with("/files/") {
        let r = not_found("prefront files listener: GET /files/<token>\n");
        return Reply::logged(r, DIRECTION, "none", Outcome::NotFound);
    }
    file(state, req, call).await
}

/// `GET|HEAD /files/<token>` (the caller has checked the prefix): the link is its own
/// credential (sealed and expiring), so no signature is asked for.
pub(super) async fn file(state: &Arc<State>, req: Request<Incoming>, call: &Call) -> Reply {
    const ROUTE: &str = "files";
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let r = method_not_allowed("GET, HEAD");
        return Reply::logged(r, DIRECTION, ROUTE, Outcome::MethodNotAllowed);
    }
    // A GET carries no body worth reading; whatever is sent is left unread.
    let (parts, _body) = req.into_parts();
    let token = parts.uri.path().strip_prefix("/files/").unwrap_or_default();
    let fetched = state.pacs.file(token, &parts, &caller(call)).await;
    reply(fetched, ROUTE, call)
}

/// Who asks, as the PACS side logs it.
pub(super) fn caller(call: &Call) -> Caller {
    Caller {
        request_id: call.request_id.clone(),
        peer: call.client,
        started: call.started,
    }
}

/// The answer for a fetch: the box's own refusal, or the PACS's stream.
pub(super) fn reply(fetched: Fetched, route: &'static str, call: &Call) -> Reply {
    match fetched {
        Fetched::Refused(refusal) => {
            let mut r = plain_refusal(
                refusal.status,
                refusal.outcome,
                refusal.text.into_owned(),
                &call.request_id,
            );
            if let Some(range) = refusal.content_range {
                r.headers_mut().insert(hyper::header::CONTENT_RANGE, range);
            }
            Reply::logged(r, DIRECTION, route, refusal.outcome)
        }
        Fetched::Streamed(stream) => {
            let body = stream.body.map_or_else(Body::default, Body::stream);
            let mut r = Response::new(body);
            *r.status_mut() = stream.status;
            *r.headers_mut() = stream.headers;
            if let Ok(v) = hyper::header::HeaderValue::from_str(&call.request_id) {
                r.headers_mut().insert(crate::outcome::REQUEST_ID_HEADER, v);
            }
            // The stream writes its own line when it ends.
            Reply::unlogged(r)
        }
    }
}
