//! The admin JSON API (DESIGN.md §8): the queue and the message trail, without stopping the box.
//! Every store and trail read runs on the blocking pool, never on the connection workers that
//! serve the HIS and the cloud. With `[admin] token_file`, every call needs
//! `Authorization: Bearer <token>`; every call that changes something leaves an `audit` log line
//! and a trail entry. The status page's buttons post HTML forms to the same calls (`form_post`):
//! they carry the form key and the token in the body, and are answered with a redirect to the
//! page.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, LOCATION, ORIGIN};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;

use super::form;
use crate::buffer::operator;
use crate::buffer::{OutboxError, RecordId, Route};
use crate::listener::status::Notice;
use crate::listener::{Body, State};
use crate::trail::query::{self, Filter};

/// Longest query string read.
const MAX_QUERY: usize = 2048;

/// An API failure: its status and the `{"error"}` text.
struct ApiError(StatusCode, String);

impl ApiError {
    fn bad(text: impl Into<String>) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, text.into())
    }
}

impl From<OutboxError> for ApiError {
    fn from(e: OutboxError) -> ApiError {
        match e {
            OutboxError::NotFound(id) => {
                ApiError(StatusCode::NOT_FOUND, format!("no such message {id}"))
            }
            other => ApiError(StatusCode::SERVICE_UNAVAILABLE, other.to_string()),
        }
    }
}

fn json(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Body::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    r
}

fn ok(value: &impl Serialize) -> Response<Body> {
    json(
        StatusCode::OK,
        serde_json::to_vec(value).unwrap_or_default(),
    )
}

fn error(e: ApiError) -> Response<Body> {
    let mut r = json(
        e.0,
        serde_json::to_vec(&serde_json::json!({ "error": e.1 })).unwrap_or_default(),
    );
    if e.0 == StatusCode::UNAUTHORIZED {
        r.headers_mut()
            .insert("www-authenticate", HeaderValue::from_static("Bearer"));
    }
    r
}

/// Whether the call carries the configured token (compared in constant time).
fn authorized(state: &State, req: &Request<Incoming>) -> bool {
    let Some(token) = state.config.admin.as_ref().and_then(|a| a.token.as_ref()) else {
        return true;
    };
    let given = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .unwrap_or("");
    token_matches(&token.0, given)
}

/// `given == expected`, in time that does not depend on where they differ.
pub(super) fn token_matches(expected: &str, given: &str) -> bool {
    // Comparing two HMACs of the inputs hides both where and whether the lengths differ.
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"prefront admin token");
    let tag = ring::hmac::sign(&key, expected.as_bytes());
    ring::hmac::verify(&key, given.as_bytes(), tag.as_ref()).is_ok()
}

/// The query's `name=value` pairs; refuses an oversized query and a repeated name.
fn params(req: &Request<Incoming>) -> Result<Vec<(String, String)>, ApiError> {
    let q = req.uri().query().unwrap_or("");
    if q.len() > MAX_QUERY {
        return Err(ApiError::bad(format!(
            "query longer than {MAX_QUERY} bytes"
        )));
    }
    let pairs: Vec<(String, String)> = form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    for (i, (k, _)) in pairs.iter().enumerate() {
        if pairs[..i].iter().any(|(p, _)| p == k) {
            return Err(ApiError::bad(format!("`{k}` given twice")));
        }
    }
    Ok(pairs)
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn number(pairs: &[(String, String)], name: &str) -> Result<Option<u64>, ApiError> {
    param(pairs, name)
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| ApiError::bad(format!("`{name}` must be a whole number")))
        })
        .transpose()
}

fn only(pairs: &[(String, String)], known: &[&str]) -> Result<(), ApiError> {
    match pairs.iter().find(|(k, _)| !known.contains(&k.as_str())) {
        Some((k, _)) => Err(ApiError::bad(format!(
            "unknown parameter `{}` (known: {})",
            k.chars().take(40).collect::<String>(),
            known.join(", ")
        ))),
        None => Ok(()),
    }
}

/// A route as the API takes it: the catalogue path (`prefront/…`) or the stored name.
fn route_param(pairs: &[(String, String)]) -> Result<Option<String>, ApiError> {
    param(pairs, "route")
        .map(|r| {
            if r.len() > 200 || r.chars().any(char::is_control) {
                return Err(ApiError::bad("`route` is not a route name"));
            }
            Ok(if r.starts_with(Route::CLOUD_PREFIX) {
                r.to_string()
            } else {
                Route::cloud(r.trim_start_matches('/')).as_str().to_string()
            })
        })
        .transpose()
}

fn message_id(text: &str) -> Result<RecordId, ApiError> {
    text.parse()
        .map_err(|_| ApiError(StatusCode::NOT_FOUND, "message ids are numbers".into()))
}

/// Runs a store or trail read on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the request failed: {e}"),
        ))
    })
}

/// One operator action: an `audit` log line and a trail entry.
fn audit(
    peer: IpAddr,
    action: &'static str,
    id: Option<RecordId>,
    route: Option<&str>,
    detail: String,
) {
    tracing::info!(
        target: "audit",
        peer = %peer,
        action,
        id,
        route,
        "audit: {detail}"
    );
    crate::trail::record(crate::trail::Line {
        t: crate::clock::now_ms(),
        ev: "audit".into(),
        peer: peer.to_string(),
        out: action.into(),
        route: route
            .map(|r| Route::display_name(r).to_string().into())
            .unwrap_or_default(),
        id,
        why: Some(detail),
        ..crate::trail::Line::default()
    });
}

/// What became of a message because an operator acted, in its call's trail.
/// `id`: the message's id after the change (a retried message has a new one).
fn trail_change(rec: &crate::buffer::Record, ev: &'static str, id: RecordId, peer: IpAddr) {
    if let Some(mut line) = crate::buffer::trail_line(rec, ev) {
        line.id = Some(id);
        line.why = Some(format!("by the operator at {peer}"));
        crate::trail::record(line);
    }
}

/// `/api/…`
pub async fn handle(state: &Arc<State>, req: Request<Incoming>, peer: IpAddr) -> Response<Body> {
    if form::is_form_post(&req) {
        return form_post(state, req, peer).await;
    }
    // A browser names the page a call comes from; only the status page's forms (above) may
    // change anything from a page, so no other site's script can.
    if req.method() != Method::GET
        && req.method() != Method::HEAD
        && req.headers().contains_key(ORIGIN)
    {
        return error(ApiError(
            StatusCode::FORBIDDEN,
            "a call from a web page changes nothing unless it is a form of the status page (with its form key)".into(),
        ));
    }
    if !authorized(state, &req) {
        return error(ApiError(
            StatusCode::UNAUTHORIZED,
            "this call needs `Authorization: Bearer <token>` (the token of [admin] token_file)"
                .into(),
        ));
    }
    match route(state, req, peer).await {
        Ok(r) => r,
        Err(e) => error(e),
    }
}

async fn route(
    state: &Arc<State>,
    req: Request<Incoming>,
    peer: IpAddr,
) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().to_string();
    let parts: Vec<&str> = path
        .trim_start_matches("/api/")
        .trim_end_matches('/')
        .split('/')
        .collect();
    let method = req.method().clone();
    let pairs = params(&req)?;
    let outbox = state.outbox.clone();
    let max_bytes = state.config.buffer.max_bytes;
    match (parts.as_slice(), &method) {
        (["queue"], &Method::GET) => {
            only(&pairs, &[])?;
            let q = blocking(move || Ok(operator::queue(outbox.store(), max_bytes)?)).await?;
            Ok(ok(&q))
        }
        (["queue", "messages"], &Method::GET) => {
            only(&pairs, &["route", "dead", "limit", "after"])?;
            let dead = match param(&pairs, "dead") {
                None | Some("false") => false,
                Some("true") => true,
                Some(_) => return Err(ApiError::bad("`dead` is true or false")),
            };
            let limit = number(&pairs, "limit")?.unwrap_or(100);
            if limit == 0 || limit > operator::MAX_PAGE as u64 {
                return Err(ApiError::bad(format!(
                    "`limit` is 1 to {}",
                    operator::MAX_PAGE
                )));
            }
            let after = number(&pairs, "after")?;
            let route = route_param(&pairs)?;
            let v = blocking(move || {
                Ok(operator::messages(
                    outbox.store(),
                    dead,
                    route.as_deref(),
                    after,
                    limit as usize,
                )?)
            })
            .await?;
            Ok(ok(&v))
        }
        (["queue", "messages", id], &Method::GET) => {
            only(&pairs, &[])?;
            let id = message_id(id)?;
            let m = blocking(move || Ok(operator::message(outbox.store(), id)?)).await?;
            Ok(ok(&m))
        }
        (["queue", "messages", id, "retry"], &Method::POST) => {
            only(&pairs, &[])?;
            Ok(ok(&retry(state, message_id(id)?, peer, "").await?))
        }
        (["queue", "messages", id], &Method::DELETE)
        | (["queue", "messages", id, "drop"], &Method::POST) => {
            only(&pairs, &[])?;
            Ok(ok(&drop_message(state, message_id(id)?, peer, "").await?))
        }
        (["queue", "retry-dead"], &Method::POST) => {
            only(&pairs, &["route"])?;
            let route = route_param(&pairs)?;
            let r = route.clone();
            let (retried, moved) =
                blocking(move || Ok(operator::retry_dead(outbox.store(), r.as_deref())?)).await?;
            state.forwarders.wake();
            audit(
                peer,
                "retry-dead",
                None,
                route.as_deref(),
                format!("{} dead message(s) queued again", retried.retried),
            );
            for (rec, new_id) in &moved {
                trail_change(rec, "requeued", *new_id, peer);
            }
            Ok(ok(&retried))
        }
        (["trail"], &Method::GET) => {
            only(
                &pairs,
                &["request_id", "key", "route", "outcome", "since", "until", "limit"],
            )?;
            let filter = trail_filter(&pairs)?;
            let dir = state.config.trail.path.clone();
            let entries = blocking(move || Ok(query::query(&dir, &filter))).await?;
            Ok(ok(&serde_json::json!({ "entries": entries })))
        }
        (
            ["queue"]
            | ["queue", "messages"]
            | ["queue", "messages", _]
            | ["queue", "messages", _, "retry"]
            | ["queue", "messages", _, "drop"]
            | ["queue", "retry-dead"]
            | ["trail"],
            _,
        ) => Err(ApiError(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not served on {path}"),
        )),
        _ => Err(ApiError(
            StatusCode::NOT_FOUND,
            "no such API call: /api/queue, /api/queue/messages[/ID[/retry|/drop]], /api/queue/retry-dead, /api/trail".into(),
        )),
    }
}

/// The trail query of `GET /api/trail`'s parameters, for `prefront trail` reading the files of a
/// stopped box: the same checks and the same error texts as the API.
pub fn trail_query(pairs: &[(String, String)]) -> Result<Filter, String> {
    trail_filter(pairs).map_err(|e| e.1)
}

/// The message `id` (for its audit line and trail entry), and whether it is dead.
fn record_of(
    store: &dyn crate::buffer::Outbox,
    id: RecordId,
) -> Result<(crate::buffer::Record, bool), ApiError> {
    match store.get(id)? {
        Some(crate::buffer::DeadOrLive::Dead(d)) => Ok((d.record, true)),
        Some(crate::buffer::DeadOrLive::Live(r)) => Ok((r, false)),
        None => Err(OutboxError::NotFound(id).into()),
    }
}

/// Puts a dead message back at the tail of its queue; audited. `via` is added to the audit line
/// (` (status page)` for a form).
async fn retry(
    state: &Arc<State>,
    id: RecordId,
    peer: IpAddr,
    via: &str,
) -> Result<operator::Changed, ApiError> {
    let outbox = state.outbox.clone();
    let (changed, rec) = blocking(move || {
        let (rec, dead) = record_of(outbox.store(), id)?;
        if !dead {
            return Err(ApiError(
                StatusCode::CONFLICT,
                format!("message {id} is queued, not dead: nothing to retry"),
            ));
        }
        Ok((operator::retry(outbox.store(), id)?, rec))
    })
    .await?;
    state.forwarders.wake();
    audit(
        peer,
        "retry",
        Some(id),
        Some(&rec.route),
        format!("message {id} queued again as {}{via}", changed.id),
    );
    trail_change(&rec, "requeued", changed.id, peer);
    Ok(changed)
}

/// Drops a queued or dead message; audited.
async fn drop_message(
    state: &Arc<State>,
    id: RecordId,
    peer: IpAddr,
    via: &str,
) -> Result<operator::Changed, ApiError> {
    let outbox = state.outbox.clone();
    let (changed, rec) = blocking(move || {
        let (rec, _) = record_of(outbox.store(), id)?;
        Ok((operator::drop_message(outbox.store(), id)?, rec))
    })
    .await?;
    audit(
        peer,
        "drop",
        Some(id),
        Some(&rec.route),
        format!("message {id} dropped{via}"),
    );
    trail_change(&rec, "dropped", id, peer);
    Ok(changed)
}

/// `303 See Other` to the status page with what was done.
fn see_status(notice: Notice) -> Response<Body> {
    let mut r = super::text(
        StatusCode::SEE_OTHER,
        "text/plain; charset=utf-8",
        "see /status\n",
    );
    if let Ok(v) = HeaderValue::from_str(&format!("/status?done={}", notice.param())) {
        r.headers_mut().insert(LOCATION, v);
    }
    r
}

/// A status page button: `POST /api/queue/messages/ID/retry` or `…/drop` with an HTML form
/// body (`form_key`, and `token` when `[admin] token_file` is set). Without this process's form
/// key: 403 and nothing changes. Otherwise the answer is `303 See Other` to `/status?done=…`.
async fn form_post(state: &Arc<State>, req: Request<Incoming>, peer: IpAddr) -> Response<Body> {
    let path = req.uri().path().to_string();
    let body = match crate::listener::read_body(req, form::MAX_FORM_BYTES).await {
        Ok((_, body)) => body,
        Err(e) => return crate::listener::body_error_response(&e),
    };
    let fields = form::fields(&body);
    if !form::key_matches(fields.form_key.as_deref()) {
        tracing::warn!(target: "audit", peer = %peer, path = %path, "audit: a form post without this process's form key was refused; nothing changed");
        return super::text(
            StatusCode::FORBIDDEN,
            "text/plain; charset=utf-8",
            "This form did not come from this gateway's status page, or the gateway restarted since the page was loaded: open /status again and retry. Nothing was changed.\n",
        );
    }
    let parts: Vec<&str> = path
        .trim_start_matches("/api/")
        .trim_end_matches('/')
        .split('/')
        .collect();
    let (action, id) = match parts.as_slice() {
        ["queue", "messages", id, action @ ("retry" | "drop")] => match id.parse::<RecordId>() {
            Ok(id) => (*action, id),
            Err(_) => {
                return error(ApiError(
                    StatusCode::NOT_FOUND,
                    "message ids are numbers".into(),
                ))
            }
        },
        _ => {
            return error(ApiError(
                StatusCode::NOT_FOUND,
                "the status page's forms post to /api/queue/messages/ID/retry or /drop".into(),
            ))
        }
    };
    if let Some(token) = state.config.admin.as_ref().and_then(|a| a.token.as_ref()) {
        if !token_matches(&token.0, fields.token.as_deref().unwrap_or("")) {
            tracing::warn!(target: "audit", peer = %peer, action, id, "audit: {action} of message {id} from the status page refused: wrong admin token");
            return see_status(Notice::WrongToken);
        }
    }
    let result = match action {
        "retry" => retry(state, id, peer, " (status page)").await,
        _ => drop_message(state, id, peer, " (status page)").await,
    };
    see_status(match result {
        Ok(changed) if action == "retry" => Notice::Retried(changed.id),
        Ok(_) => Notice::Dropped(id),
        Err(ApiError(StatusCode::NOT_FOUND, _)) => Notice::NotFound(id),
        Err(ApiError(StatusCode::CONFLICT, _)) => Notice::NotDead(id),
        Err(ApiError(_, why)) => {
            tracing::warn!(peer = %peer, action, id, error = %why, "a status page {action} failed");
            Notice::Failed(id)
        }
    })
}

/// The trail query of `GET /api/trail` (and `prefront trail`).
fn trail_filter(pairs: &[(String, String)]) -> Result<Filter, ApiError> {
    let now = crate::clock::now_ms();
    let time = |name: &str| -> Result<Option<u64>, ApiError> {
        param(pairs, name)
            .map(|v| {
                query::parse_time(v, now).ok_or_else(|| {
                    ApiError::bad(format!(
                        "`{name}` is an RFC 3339 time (2026-12-06T08:00:00+08:00) or an age (30m, 2h, 7d)"
                    ))
                })
            })
            .transpose()
    };
    let since_ms = time("since")?;
    let until_ms = time("until")?;
    if since_ms.is_some_and(|s| s > now.saturating_add(60_000)) {
        return Err(ApiError::bad("`since` is in the future"));
    }
    if let (Some(s), Some(u)) = (since_ms, until_ms) {
        if s > u {
            return Err(ApiError::bad("`since` is after `until`"));
        }
    }
    let limit = number(pairs, "limit")?.unwrap_or(100);
    if limit == 0 || limit > query::MAX_LIMIT as u64 {
        return Err(ApiError::bad(format!(
            "`limit` is 1 to {}",
            query::MAX_LIMIT
        )));
    }
    let text = |name: &str| -> Result<Option<String>, ApiError> {
        param(pairs, name)
            .map(|v| {
                if v.len() > 256 || v.chars().any(char::is_control) {
                    Err(ApiError::bad(format!(
                        "`{name}` is too long or has control characters"
                    )))
                } else {
                    Ok(v.to_string())
                }
            })
            .transpose()
    };
    Ok(Filter {
        request_id: text("request_id")?,
        key: text("key")?,
        route: text("route")?.map(|r| Route::display_name(&r).trim_start_matches('/').to_string()),
        outcome: text("outcome")?,
        since_ms,
        until_ms,
        limit: limit as usize,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_exactly() {
        assert!(token_matches("0123456789abcdef", "0123456789abcdef"));
        assert!(!token_matches("0123456789abcdef", "0123456789abcdeF"));
        assert!(!token_matches("0123456789abcdef", "0123456789abcde"));
        assert!(!token_matches("0123456789abcdef", ""));
    }
}
