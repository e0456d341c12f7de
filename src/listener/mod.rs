//! What the box accepts: the HIS listener (hospital LAN), the cloud listener (internet side),
//! the files listener (patients' phones: `/files/<token>` only) and the admin listener. One
//! accept loop serves them all; the allowlist is applied to the TCP peer before any body is
//! read; each side has its own request handler.

pub mod admin;
pub mod allowlist;
mod callline;
pub mod cloud;
pub mod files;
pub mod his;
mod http;
pub mod state;
pub mod status;
pub mod tls;

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::outcome::{Direction, Outcome};
use allowlist::PeerAccess;
use callline::{Peer, Quoted, Tenths};
pub use http::*;
pub use state::{ListenerTls, Live, State};

/// Which listener a connection arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    His,
    Cloud,
    /// Health, metrics and status for the operator (loopback by default).
    Admin,
    /// `[files_listener]`: `GET|HEAD /files/<token>` for patients' phones, nothing else.
    Files,
}

impl Side {
    fn as_str(self) -> &'static str {
        match self {
            Side::His => "his",
            Side::Cloud => "cloud",
            Side::Admin => "admin",
            Side::Files => "files",
        }
    }
}

/// Everything a request handler knows about the connection it came on.
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    pub side: Side,
    pub peer: SocketAddr,
    pub access: PeerAccess,
}

/// How long a TLS handshake may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections open per peer address on one listener.
type PerPeer = Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>;

/// Counts a connection while it is open, in the listener's total and its peer's.
struct ActiveSlot {
    active: Arc<AtomicUsize>,
    per_peer: PerPeer,
    peer: std::net::IpAddr,
}

impl ActiveSlot {
    /// Takes a slot unless `peer` already holds `max_per_peer`.
    fn take(
        active: &Arc<AtomicUsize>,
        per_peer: &PerPeer,
        peer: std::net::IpAddr,
        max_per_peer: usize,
    ) -> Option<ActiveSlot> {
        {
            let mut map = per_peer.lock().unwrap_or_else(|p| p.into_inner());
            let n = map.entry(peer).or_default();
            if *n >= max_per_peer {
                return None;
            }
            *n += 1;
        }
        active.fetch_add(1, Ordering::AcqRel);
        Some(ActiveSlot {
            active: active.clone(),
            per_peer: per_peer.clone(),
            peer,
        })
    }
}

impl Drop for ActiveSlot {
    fn drop(&mut self) {
        self.active.fetch_sub(1, Ordering::AcqRel);
        let mut map = self.per_peer.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.peer);
            }
        }
    }
}

/// The limits a listener applies to one connection.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    /// Connections one peer address may hold at once.
    pub max_per_peer: usize,
    pub idle_timeout: Duration,
    /// With mutual TLS: the client certificate must name one of these (empty: any).
    pub client_names: Arc<[String]>,
}

/// One bound listener and how to serve it.
pub struct Listener {
    pub side: Side,
    pub tcp: TcpListener,
}

impl Listener {
    /// Accepts connections until `shutdown` flips, then lets in-flight requests finish for at
    /// most `grace`.
    pub async fn run(
        self,
        live: Arc<Live>,
        workers: Arc<crate::workers::Workers>,
        mut shutdown: watch::Receiver<bool>,
        grace: Duration,
    ) {
        let graceful = GracefulShutdown::new();
        let active = Arc::new(AtomicUsize::new(0));
        let per_peer: PerPeer = Arc::default();
        loop {
            let accepted = tokio::select! {
                r = self.tcp.accept() => r,
                _ = shutdown.changed() => break,
            };
            let (tcp, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(listener = self.side.as_str(), error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            // The configuration in force when the connection arrives decides its TLS and limits;
            // each request is then judged by the configuration in force when it arrives.
            let state = live.current();
            let access = state.policy(self.side).on_connect(peer.ip());
            if access == PeerAccess::Denied {
                // Refused at accept (DESIGN.md §2): closed before a byte is read or a TLS
                // handshake starts, so a peer that is not allowed never holds a slot an allowed
                // caller needs. A trusted proxy's callers are judged per request (403).
                log_denial(
                    &state,
                    self.side,
                    peer,
                    peer.ip(),
                    "connection closed at accept, nothing read",
                );
                drop(tcp);
                continue;
            }
            let limits = state.limits(self.side);
            if active.load(Ordering::Acquire) >= limits.max_connections {
                log_limit(
                    self.side,
                    peer,
                    "max-connections",
                    "max_connections",
                    limits.max_connections,
                );
                drop(tcp);
                continue;
            }
            let Some(slot) = ActiveSlot::take(&active, &per_peer, peer.ip(), limits.max_per_peer)
            else {
                log_limit(
                    self.side,
                    peer,
                    "max-connections-per-peer",
                    "max_connections_per_peer",
                    limits.max_per_peer,
                );
                drop(tcp);
                continue;
            };
            let conn = Conn {
                side: self.side,
                peer,
                access,
            };
            let watcher = graceful.watcher();
            let live = live.clone();
            let tls = state.tls(self.side).cloned();
            drop(state);
            workers.serve(tcp, move |tcp| async move {
                let _slot = slot;
                match tls {
                    None => {
                        serve_connection(
                            TokioIo::new(tcp),
                            conn,
                            None,
                            live,
                            watcher,
                            limits.idle_timeout,
                        )
                        .await
                    }
                    Some(acceptor) => {
                        // A denied peer never gets here (closed at accept); a trusted proxy's
                        // caller is judged per request after the handshake.
                        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
                            .await
                        {
                            Ok(Ok(stream)) => {
                                if !limits.client_names.is_empty()
                                    && !tls::client_name_allowed(
                                        stream.get_ref().1,
                                        &limits.client_names,
                                    )
                                {
                                    if crate::telemetry::limits::hit(
                                        conn.side.as_str(),
                                        "client-name",
                                        conn.peer.ip(),
                                    ) {
                                        tracing::warn!(
                                            listener = conn.side.as_str(),
                                            peer = %conn.peer,
                                            "client certificate names none of allowed_client_names: connection closed (logged once a minute per caller)"
                                        );
                                    }
                                    return;
                                }
                                // Kept for the connection: a reload that narrows the names
                                // applies to its next request too.
                                let tls_conn = stream.get_ref().1;
                                let names = tls_conn.peer_certificates().is_some().then(|| {
                                    Arc::<[String]>::from(tls::client_names(tls_conn))
                                });
                                serve_connection(
                                    TokioIo::new(stream),
                                    conn,
                                    names,
                                    live,
                                    watcher,
                                    limits.idle_timeout,
                                )
                                .await
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(listener = conn.side.as_str(), peer = %conn.peer, error = %e, "TLS handshake failed")
                            }
                            Err(_) => {
                                tracing::debug!(listener = conn.side.as_str(), peer = %conn.peer, "TLS handshake timed out")
                            }
                        }
                    }
                }
            });
        }
        drop(self.tcp);
        if tokio::time::timeout(grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                listener = self.side.as_str(),
                "drain deadline passed; closing remaining connections"
            );
        }
    }
}

/// Serves one connection's requests. `client_names`: the names of the client certificate, on a
/// TLS connection that presented one; checked against `allowed_client_names` at every request,
/// as the configuration in force then has it.
async fn serve_connection<I>(
    io: TokioIo<I>,
    conn: Conn,
    client_names: Option<Arc<[String]>>,
    live: Arc<Live>,
    watcher: hyper_util::server::graceful::Watcher,
    idle_timeout: Duration,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let state = live.current();
        let names = client_names.clone();
        async move {
            if let Some(names) = names {
                let allowed = state.limits(conn.side).client_names;
                if !tls::names_allowed(&names, &allowed) {
                    if crate::telemetry::limits::hit(
                        conn.side.as_str(),
                        "client-name",
                        conn.peer.ip(),
                    ) {
                        tracing::warn!(
                            listener = conn.side.as_str(),
                            peer = %conn.peer,
                            "client certificate names none of allowed_client_names (since a reload): refused with 403, connection closed (logged once a minute per caller)"
                        );
                    }
                    return Ok::<_, Infallible>(forbidden());
                }
            }
            Ok::<_, Infallible>(handle(state, req, conn).await)
        }
    });
    let http = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        // Also closes a keep-alive connection left idle this long.
        .header_read_timeout(idle_timeout)
        // hyper lets the read buffer grow past this before it checks: 32 KiB keeps request
        // heads under 64 KiB (431 above).
        .max_buf_size(32 * 1024)
        .serve_connection(io, svc);
    if let Err(e) = watcher.watch(http).await {
        tracing::debug!(listener = conn.side.as_str(), peer = %conn.peer, error = %e, "connection ended with an error");
    }
}

async fn handle(state: Arc<State>, req: Request<Incoming>, mut conn: Conn) -> Response<Body> {
    // Judged again per request: a reload that narrows an allowlist also applies to a
    // keep-alive connection that was let in before it.
    conn.access = state.policy(conn.side).on_connect(conn.peer.ip());
    let client = match conn.access {
        PeerAccess::Allowed => conn.peer.ip().to_canonical(),
        PeerAccess::Denied => {
            log_denial(&state, conn.side, conn.peer, conn.peer.ip(), REFUSED_403);
            return forbidden();
        }
        PeerAccess::Proxy => {
            let policy = state.policy(conn.side);
            match policy.client_behind_proxy(conn.peer.ip(), req.headers()) {
                Some(ip) if policy.allows(ip) => ip,
                Some(ip) => {
                    log_denial(&state, conn.side, conn.peer, ip, REFUSED_403);
                    return forbidden();
                }
                None => {
                    log_denial(&state, conn.side, conn.peer, conn.peer.ip(), REFUSED_403);
                    return forbidden();
                }
            }
        }
    };
    let call = Call::start(&req, conn, client);
    let reply = match conn.side {
        Side::His => his::handle(&state, req, &call).await,
        Side::Cloud => cloud::handle(&state, req, &call).await,
        Side::Admin => admin::handle(&state, req, &call).await,
        Side::Files => files::handle(&state, req, &call).await,
    };
    // The call's one log line and metric, from what the handler says became of it, and its
    // trail entry.
    if let Some(l) = &reply.log {
        let status = reply.response.status().as_u16();
        call.log(l.direction, &l.route, l.outcome, status);
        // A path the box has nothing at names no interface: nobody searches for it, and the
        // internet's scanners would fill the trail with it (the files listener is public).
        if crate::trail::active()
            && !matches!(l.outcome, Outcome::NotFound | Outcome::MethodNotAllowed)
        {
            call.trail(l, status, &state);
        }
    }
    reply.response
}

/// What a handler returns: the answer, and what the call's one log line and metric say.
pub struct Reply {
    pub response: Response<Body>,
    /// `None` when nothing is logged here: the admin pages, and a stream, which writes its own
    /// line when it ends.
    pub log: Option<Logged>,
}

/// What the log line and the metric of a call say besides its status and latency.
#[derive(Debug, Clone)]
pub struct Logged {
    pub direction: Direction,
    /// The catalogue path or interface name: only names the box knows (bounded label set).
    pub route: std::borrow::Cow<'static, str>,
    pub outcome: Outcome,
    /// For the trail: the business key (the catalogue's idempotency fields) as sent.
    pub key: Option<String>,
    /// For the trail: the buffer record a queued call became.
    pub queued: Option<crate::buffer::RecordId>,
}

impl Reply {
    pub fn logged(
        response: Response<Body>,
        direction: Direction,
        route: impl Into<std::borrow::Cow<'static, str>>,
        outcome: Outcome,
    ) -> Reply {
        Reply {
            response,
            log: Some(Logged {
                direction,
                route: route.into(),
                outcome,
                key: None,
                queued: None,
            }),
        }
    }

    /// Adds the business key and the queued record to the trail entry.
    pub fn with_trail(
        mut self,
        key: Option<String>,
        queued: Option<crate::buffer::RecordId>,
    ) -> Reply {
        if let Some(l) = self.log.as_mut() {
            l.key = key;
            l.queued = queued;
        }
        self
    }

    pub fn unlogged(response: Response<Body>) -> Reply {
        Reply {
            response,
            log: None,
        }
    }
}

/// A caller the allowlist refuses: counted, and logged once a minute per address. `how` says
/// what the caller got.
fn log_denial(
    state: &State,
    side: Side,
    peer: std::net::SocketAddr,
    who: std::net::IpAddr,
    how: &str,
) {
    crate::telemetry::metrics::denial(side.as_str());
    if state.policy(side).should_log_denial(who) {
        tracing::warn!(
            listener = side.as_str(),
            peer = %peer,
            client = %who,
            "caller not in the allowlist: {how} (logged once a minute per caller)"
        );
    }
}

/// A connection limit hit: counted, and logged once a minute per caller. `key` is the setting
/// (`max_connections`), logged with its value.
fn log_limit(side: Side, peer: std::net::SocketAddr, limit: &'static str, key: &str, max: usize) {
    if crate::telemetry::limits::hit(side.as_str(), limit, peer.ip()) {
        tracing::warn!(
            listener = side.as_str(),
            peer = %peer,
            "connection limit reached ({key}={max}): new connections are closed at once (logged once a minute per caller)"
        );
    }
}

const REFUSED_403: &str = "refused with 403";

fn forbidden() -> Response<Body> {
    let mut r = Response::new(Body::default());
    *r.status_mut() = StatusCode::FORBIDDEN;
    r.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    r
}

/// One call through the box, from arrival to the log line.
#[derive(Debug)]
pub struct Call {
    pub conn: Conn,
    /// The caller after proxy resolution.
    pub client: std::net::IpAddr,
    pub request_id: String,
    pub started: Instant,
}

static REQUEST_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Call {
    fn start(req: &Request<Incoming>, conn: Conn, client: std::net::IpAddr) -> Call {
        let request_id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|s| {
                !s.is_empty()
                    && s.len() <= 64
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            })
            .map(str::to_string)
            .unwrap_or_else(new_request_id);
        Call {
            conn,
            client,
            request_id,
            started: Instant::now(),
        }
    }

    /// Writes the one log line of this call and counts it.
    fn log(&self, direction: Direction, route: &str, outcome: Outcome, status: u16) {
        let elapsed = self.started.elapsed().as_secs_f64();
        crate::telemetry::metrics::call(direction, route, outcome, elapsed);
        let latency_ms = Tenths::of_seconds(elapsed);
        let (direction, outcome_name) = (direction.as_str(), outcome.as_str());
        if outcome == Outcome::Ok {
            tracing::info!(
                direction = %Quoted(direction),
                peer = %Peer(self.client),
                route = %Quoted(route),
                outcome = %Quoted(outcome_name),
                status,
                latency_ms = %latency_ms,
                request_id = %self.request_id,
                "call"
            );
        } else if (outcome == Outcome::BodyRefused
            && !crate::telemetry::limits::hit(self.conn.side.as_str(), "body", self.client))
            || (self.conn.side == Side::Files
                && matches!(outcome, Outcome::NotFound | Outcome::MethodNotAllowed)
                && !crate::telemetry::limits::once_a_minute("files-other-path", self.client))
        {
            // A size or time limit, or the internet probing the files listener for other paths:
            // logged once a minute per caller, counted every time.
            tracing::debug!(
                direction = %Quoted(direction),
                peer = %Peer(self.client),
                route = %Quoted(route),
                outcome = %Quoted(outcome_name),
                status,
                request_id = %self.request_id,
                "call"
            );
        } else {
            if outcome.failed() {
                crate::telemetry::recent::record(crate::telemetry::recent::RecentError {
                    at_ms: crate::buffer::now_ms(),
                    direction: direction.to_string(),
                    route: route.to_string(),
                    outcome: outcome_name.to_string(),
                    status,
                    request_id: self.request_id.clone(),
                });
            }
            tracing::warn!(
                direction = %Quoted(direction),
                peer = %Peer(self.client),
                route = %Quoted(route),
                outcome = %Quoted(outcome_name),
                status,
                latency_ms = %latency_ms,
                request_id = %self.request_id,
                "call"
            );
        }
    }
}

impl Call {
    /// The call's trail entry (DESIGN.md §8): no body, the key masked and hashed.
    fn trail(&self, l: &Logged, status: u16, state: &State) {
        let (key, kh) = l
            .key
            .as_deref()
            .map_or((None, None), crate::trail::key_fields);
        let latency_ms = (self.started.elapsed().as_secs_f64() * 10_000.0).round() / 10.0;
        crate::trail::record(crate::trail::Line {
            t: crate::clock::now_ms(),
            ev: Cow::Borrowed("call"),
            rid: self.request_id.clone(),
            dir: Cow::Borrowed(l.direction.as_str()),
            route: l.route.clone(),
            peer: self.client.to_string(),
            out: Cow::Borrowed(l.outcome.as_str()),
            st: status,
            lat: latency_ms,
            key,
            kh,
            mid: l.queued.map(|id| state.outbox.store().message_id(id)),
            id: l.queued,
            ..crate::trail::Line::default()
        });
    }
}

fn new_request_id() -> String {
    use std::sync::OnceLock;
    static PREFIX: OnceLock<u32> = OnceLock::new();
    let prefix = PREFIX.get_or_init(|| {
        let mut b = [0u8; 4];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
        u32::from_be_bytes(b)
    });
    let n = REQUEST_COUNTER.fetch_add(1, Ordering::Relaxed);
    request_id_text(*prefix, n)
}

/// `format!("pf-{prefix:08x}-{n:010}")`, without the formatter's padding machinery (one call in
/// every call without an `X-Request-Id`).
fn request_id_text(prefix: u32, n: u64) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(24);
    id.push_str("pf-");
    for shift in (0..8).rev() {
        id.push(char::from(HEX[((prefix >> (shift * 4)) & 0xf) as usize]));
    }
    id.push('-');
    let mut digits = [b'0'; 20];
    // At least ten digits, zero-padded.
    let start = callline::digits(n, &mut digits).min(digits.len() - 10);
    for &d in &digits[start..] {
        id.push(char::from(d));
    }
    id
}

#[cfg(test)]
mod request_id_tests {
    use super::request_id_text;

    #[test]
    fn request_ids_read_as_the_format_they_replace() {
        for prefix in [0u32, 1, 0xdead_beef, u32::MAX, 0x0a0b_0c0d] {
            for n in [
                0u64,
                7,
                9_999_999_999,
                10_000_000_000,
                123_456_789_012,
                u64::MAX,
            ] {
                assert_eq!(
                    request_id_text(prefix, n),
                    format!("pf-{prefix:08x}-{n:010}")
                );
            }
        }
    }
}
