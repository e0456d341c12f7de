//! What the box calls: the cloud platform (HTTPS JSON) and the HIS (HTTP JSON, later SOAP).
//! Every failure is classified once, here: which peer, what went wrong, whether a retry may help.

pub mod client;
pub mod cloud;
pub mod dns;
pub mod his;
pub mod link;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hyper::header::{HeaderName, HeaderValue};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::outcome::Outcome;

/// What a failed call means for sending it again (`UpstreamError::retry`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The link is broken (no connection, no answer, the connection cut, a gateway's 502–504):
    /// the link counts as down; the call may wait for it in the buffer.
    AfterLink,
    /// The peer is there but failed this call in a way that may pass later (500, 501, 505+,
    /// 408, 429): the call may wait in the buffer.
    Later,
    /// The peer refused this very call (any other 4xx): sending it again cannot help; a buffered
    /// call goes to the dead letters.
    Never,
    /// The peer answered something unusable (TLS failed, not JSON, too large, a SOAP fault, a
    /// 1xx/3xx, a route the box cannot call): a caller who waits is told at once; a buffered call
    /// is tried again until its attempts or time run out.
    Unusable,
}

impl Retry {
    /// Whether a caller's call may be accepted into the buffer after this failure.
    pub fn may_wait(self) -> bool {
        matches!(self, Retry::AfterLink | Retry::Later)
    }
}

/// Why a call to an upstream did not produce a usable answer.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connection refused or unreachable")]
    Connect,
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("answered HTTP {0}")]
    Status(u16),
    #[error("answer is not JSON")]
    InvalidAnswer,
    #[error("answer larger than {0} bytes")]
    TooLarge(u64),
    #[error("connection broken: {0}")]
    Protocol(String),
    #[error("{0}")]
    Unsupported(&'static str),
    /// The cloud's HTTP proxy could not be reached (refused, unreachable, closed at once).
    #[error("the proxy could not be reached: {0}")]
    ProxyUnreachable(String),
    /// The cloud's HTTP proxy answered the CONNECT with something else than 200: 407 (no
    /// credentials; tinyproxy answers wrong ones with 401), 403 (a port or host it forbids), 5xx
    /// (it cannot reach the cloud).
    #[error("the proxy refused the tunnel to the cloud: {0}")]
    ProxyRefused(&'static str),
    #[error("SOAP fault {code}: {reason}")]
    SoapFault { code: String, reason: String },
}

impl UpstreamError {
    /// The `X-Prefront-Error` kind.
    pub fn kind(&self) -> Outcome {
        match self {
            UpstreamError::Connect => Outcome::UpstreamConnect,
            UpstreamError::Tls(_) => Outcome::UpstreamTls,
            UpstreamError::Timeout(_) => Outcome::UpstreamTimeout,
            UpstreamError::Status(_) => Outcome::UpstreamStatus,
            UpstreamError::InvalidAnswer => Outcome::UpstreamInvalidAnswer,
            UpstreamError::TooLarge(_) => Outcome::UpstreamTooLarge,
            UpstreamError::Protocol(_) => Outcome::UpstreamProtocol,
            UpstreamError::Unsupported(_) => Outcome::RouteUnsupported,
            UpstreamError::SoapFault { .. } => Outcome::UpstreamSoapFault,
            UpstreamError::ProxyUnreachable(_) => Outcome::ProxyUnreachable,
            UpstreamError::ProxyRefused(_) => Outcome::ProxyRefused,
        }
    }

    /// What kind of failure it was, in words safe to send past the LAN: never what the HIS
    /// said (a fault's text, an error page), which stays in the box's log.
    pub fn public_text(&self) -> String {
        match self {
            UpstreamError::Connect => "connection refused or unreachable".into(),
            UpstreamError::Tls(_) => "TLS handshake failed".into(),
            UpstreamError::Timeout(d) => format!("no answer within {d:?}"),
            UpstreamError::Status(s) => format!("answered HTTP {s}"),
            UpstreamError::InvalidAnswer => "the answer could not be read".into(),
            UpstreamError::TooLarge(n) => format!("answer larger than {n} bytes"),
            UpstreamError::Protocol(_) => "connection broken".into(),
            UpstreamError::Unsupported(what) => (*what).into(),
            UpstreamError::SoapFault { .. } => "answered with a SOAP fault".into(),
            UpstreamError::ProxyUnreachable(_) => "the proxy could not be reached".into(),
            UpstreamError::ProxyRefused(why) => format!("the proxy refused the tunnel: {why}"),
        }
    }

    /// What this failure means for sending the same call again: the one place that decides
    /// whether a call may wait in the buffer, whether the link counts as down, and whether a
    /// buffered call is dead.
    pub fn retry(&self) -> Retry {
        match self {
            UpstreamError::Connect | UpstreamError::Timeout(_) | UpstreamError::Protocol(_) => {
                Retry::AfterLink
            }
            // The cloud is out of reach while the proxy is down or refuses: buffered calls wait
            // for it like for any link down, and are not dead letters.
            UpstreamError::ProxyUnreachable(_) | UpstreamError::ProxyRefused(_) => Retry::AfterLink,
            UpstreamError::Status(502..=504) => Retry::AfterLink,
            UpstreamError::Status(408 | 429) => Retry::Later,
            UpstreamError::Status(400..=499) => Retry::Never,
            UpstreamError::Status(500..) => Retry::Later,
            UpstreamError::Status(_)
            | UpstreamError::Tls(_)
            | UpstreamError::InvalidAnswer
            | UpstreamError::TooLarge(_)
            | UpstreamError::Unsupported(_)
            | UpstreamError::SoapFault { .. } => Retry::Unusable,
        }
    }

    fn from_client(e: &client::Error, timeout: Duration) -> UpstreamError {
        if client::is_timeout(e) {
            return UpstreamError::Timeout(timeout);
        }
        if let Some(proxy) = proxy_failure(e) {
            return proxy;
        }
        if let Some(tls) = find_tls_error(e) {
            return UpstreamError::Tls(tls);
        }
        if e.is_connect() {
            return UpstreamError::Connect;
        }
        UpstreamError::Protocol(root_cause(e))
    }

    /// A failure while the answer's body was read.
    fn from_body(e: &hyper::Error, timeout: Duration) -> UpstreamError {
        if client::is_timeout(e) {
            return UpstreamError::Timeout(timeout);
        }
        UpstreamError::Protocol(root_cause(e))
    }
}

/// What `hyper_util`'s CONNECT tunnel (`client::Client` and reqwest use it through an HTTP
/// proxy) says when it fails, by its `Display` (`tunnel error: …`): its error type is not
/// exported, so its words are all there is. `tests::a_proxy_failure_is_told_from_the_clouds`
/// pins them against real answers, so an upgrade that changes them fails there.
const TUNNEL_ERROR: &str = "tunnel error: ";

/// A failure of the HTTP proxy in front of the cloud, if that is what `e` is: no connection to
/// the proxy, or the proxy's refusal of the CONNECT.
pub fn proxy_failure(e: &(dyn std::error::Error + 'static)) -> Option<UpstreamError> {
    find_cause(e, |err| {
        let text = err.to_string();
        let what = text.strip_prefix(TUNNEL_ERROR)?;
        Some(match what {
            "proxy authorization required" => UpstreamError::ProxyRefused(
                "407 proxy authentication required (check proxy_auth_file)",
            ),
            "unsuccessful" | "proxy response headers too long" => UpstreamError::ProxyRefused(
                "it answered the CONNECT with an error (credentials refused, a forbidden host or \
                 port, or the proxy cannot reach the cloud)",
            ),
            "unexpected end of file" => UpstreamError::ProxyUnreachable(
                "it closed the connection during the CONNECT".into(),
            ),
            // "failed to create underlying connection", "io error establishing tunnel": the
            // cause says why (connection refused, reset, …).
            _ => UpstreamError::ProxyUnreachable(
                err.source()
                    .map(root_cause)
                    .unwrap_or_else(|| what.to_string()),
            ),
        })
    })
}

/// The rustls error behind a client's error, if the failure was TLS.
fn find_tls_error(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    find_cause(e, |err| {
        err.downcast_ref::<rustls::Error>().map(|t| t.to_string())
    })
}

/// Walks an error's causes, opening `io::Error`s too (reqwest and hyper wrap the TLS error in
/// them and their `source()` skips it), and returns the first `f` says something about.
pub fn find_cause<R>(
    e: &(dyn std::error::Error + 'static),
    mut f: impl FnMut(&(dyn std::error::Error + 'static)) -> Option<R>,
) -> Option<R> {
    let mut stack: Vec<&(dyn std::error::Error + 'static)> = vec![e];
    let mut steps = 0;
    while let Some(err) = stack.pop() {
        steps += 1;
        if steps > 32 {
            break;
        }
        if let Some(r) = f(err) {
            return Some(r);
        }
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            stack.push(inner);
        }
        if let Some(next) = err.source() {
            stack.push(next);
        }
    }
    None
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// A trust store: the system's roots plus an optional extra CA file.
pub fn root_store(extra_ca: Option<&Path>) -> Result<rustls::RootCertStore, String> {
    root_store_pinned(extra_ca, false)
}

/// `root_store`; with `pinned`, only the CA file is trusted (not the system's roots).
pub fn root_store_pinned(
    extra_ca: Option<&Path>,
    pinned: bool,
) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    if !pinned {
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            // A malformed system certificate is skipped, as browsers do.
            let _ = roots.add(cert);
        }
    }
    if let Some(path) = extra_ca {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: no PEM certificate in it", path.display()));
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    Ok(roots)
}

/// An HTTP client for one upstream: rustls with the ring provider, HTTP/1.1, no redirects
/// followed (a redirect must never carry a call somewhere the config did not name), no proxy
/// from the environment.
pub fn http_client(
    roots: rustls::RootCertStore,
    connect_timeout: Duration,
) -> Result<reqwest::Client, String> {
    client_builder(roots, connect_timeout)?
        .build()
        .map_err(|e| root_cause(&e))
}

/// The builder behind `http_client`, for a caller that changes a setting before building.
pub fn client_builder(
    roots: rustls::RootCertStore,
    connect_timeout: Duration,
) -> Result<reqwest::ClientBuilder, String> {
    let mut tls = tls_config(roots, None)?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .http1_only()
        .no_proxy()
        // Names are resolved by hickory (reads /etc/resolv.conf and /etc/hosts), never through
        // glibc's getaddrinfo/NSS, which a statically linked binary must not load at run time,
        // and never by a public name server (see `dns`).
        .dns_resolver(dns::SystemDns::default())
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(Duration::from_secs(50))
        .tcp_nodelay(true)
        .user_agent(USER_AGENT))
}

/// The box's own certificate and key, for an upstream that requires mutual TLS.
pub struct ClientIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
}

impl Clone for ClientIdentity {
    fn clone(&self) -> Self {
        ClientIdentity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

/// One client per connection worker (and one for the main runtime), all alike: a worker's calls
/// use connections its own thread drives (see `crate::workers`).
#[derive(Debug, Clone)]
pub struct Clients(Arc<[client::Client]>);

impl Clients {
    /// Builds `crate::workers::count() + 1` clients with `build`.
    pub fn new(
        mut build: impl FnMut() -> Result<client::Client, String>,
    ) -> Result<Clients, String> {
        let n = crate::workers::count() + 1;
        let clients = (0..n).map(|_| build()).collect::<Result<Vec<_>, _>>()?;
        Ok(Clients(clients.into()))
    }

    /// The client for the thread this runs on.
    pub fn here(&self) -> &client::Client {
        let i = crate::workers::current();
        &self.0[i % self.0.len()]
    }
}

/// Reads a client certificate chain and its key (PEM).
pub fn load_identity(cert: &Path, key: &Path) -> Result<ClientIdentity, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no PEM certificate in it", cert.display()));
    }
    // The key's own parse error could quote key material; say only what failed.
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key)
        .map_err(|_| format!("{}: no readable PEM private key in it", key.display()))?;
    Ok(ClientIdentity { chain, key })
}

/// TLS towards an upstream: rustls with the ring provider, trusting `roots`, presenting
/// `identity` when the upstream asks for a client certificate.
pub fn tls_config(
    roots: rustls::RootCertStore,
    identity: Option<ClientIdentity>,
) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    match identity {
        None => Ok(builder.with_no_client_auth()),
        Some(id) => builder
            .with_client_auth_cert(id.chain, id.key)
            .map_err(|e| format!("client certificate and key: {e}")),
    }
}

/// `builder` sending every request through `proxy` (`[cloud] proxy`): an https URL through an
/// HTTP CONNECT tunnel, TLS end to end with the cloud; the proxy's own host name is resolved
/// like every other (`dns`), the cloud's by the proxy. `None`: no proxy, not even the
/// environment's `HTTPS_PROXY`.
pub fn with_proxy(
    builder: reqwest::ClientBuilder,
    proxy: Option<&crate::config::CloudProxy>,
) -> Result<reqwest::ClientBuilder, String> {
    let Some(proxy) = proxy else {
        return Ok(builder.no_proxy());
    };
    // reqwest's own error would quote the URL; the URL holds no password, but say only what.
    let mut p = reqwest::Proxy::all(proxy.url.clone())
        .map_err(|_| format!("cloud.proxy {}: not usable", proxy.host_port()))?;
    if let Some(auth) = &proxy.auth {
        p = p.basic_auth(&auth.user, &auth.password.0);
    }
    Ok(builder.no_proxy().proxy(p))
}

/// The deepest cause of an error, for a one-line message.
pub fn error_root(e: &(dyn std::error::Error + 'static)) -> String {
    root_cause(e)
}

/// An upstream's answer: status, content type and the whole body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Bytes,
}

/// The headers of a JSON call.
pub const JSON_HEADERS: [(HeaderName, HeaderValue); 2] = [
    (
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    ),
    (
        hyper::header::ACCEPT,
        HeaderValue::from_static("application/json"),
    ),
];

/// A header value made at run time (a signature, a SOAP action), moved into the header
/// without a copy.
pub fn header_value(value: String) -> Result<HeaderValue, UpstreamError> {
    HeaderValue::try_from(value)
        .map_err(|_| UpstreamError::Unsupported("a configured header value is not valid"))
}

/// The URI a call goes to (`Url` is what the configuration holds: checked and normalised).
pub fn uri_of(url: reqwest::Url) -> Result<hyper::Uri, UpstreamError> {
    hyper::Uri::try_from(String::from(url))
        .map_err(|_| UpstreamError::Unsupported("route url is not a valid URL"))
}

/// Sends one POST with `headers` and reads the answer, at most `max` bytes, within `timeout`
/// overall. A call that times out drops its connection, so a late reply can never be read as the
/// answer to the next call on that connection.
pub async fn post(
    client: &client::Client,
    url: hyper::Uri,
    request_id: &str,
    body: Bytes,
    headers: &[(HeaderName, HeaderValue)],
    timeout: Duration,
    max: u64,
) -> Result<Answer, UpstreamError> {
    let none = crate::config::HisCredentials::default();
    post_with(client, url, request_id, body, headers, &none, timeout, max).await
}

/// Adds a HIS route's fixed headers and its `Authorization` (marked sensitive) to a request.
/// The headers were checked at load.
pub fn with_credentials(
    mut builder: reqwest::RequestBuilder,
    credentials: &crate::config::HisCredentials,
) -> reqwest::RequestBuilder {
    for (name, value) in &credentials.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    match &credentials.auth {
        None => builder,
        Some(crate::config::HisAuth::Basic { user, password }) => {
            builder.basic_auth(user, Some(&password.0))
        }
        Some(crate::config::HisAuth::Bearer(token)) => builder.bearer_auth(&token.0),
    }
}

/// `post` that also sends a HIS route's `credentials`: its fixed headers and its
/// `Authorization` (marked sensitive, so no `Debug` of the request shows it).
#[allow(clippy::too_many_arguments)]
pub async fn post_with(
    client: &client::Client,
    url: hyper::Uri,
    request_id: &str,
    body: Bytes,
    headers: &[(HeaderName, HeaderValue)],
    credentials: &crate::config::HisCredentials,
    timeout: Duration,
    max: u64,
) -> Result<Answer, UpstreamError> {
    let work = async {
        let req = post_request(url, request_id, body, headers, credentials)?;
        let resp = client
            .send(req)
            .await
            .map_err(|e| UpstreamError::from_client(&e, timeout))?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let declared = resp
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|l| l > max) {
            return Err(UpstreamError::TooLarge(max));
        }
        let mut body = resp.into_body();
        let mut buf = BytesMut::with_capacity(declared.unwrap_or(0).min(max) as usize);
        while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
            let frame = frame.map_err(|e| UpstreamError::from_body(&e, timeout))?;
            if let Ok(chunk) = frame.into_data() {
                if buf.len() as u64 + chunk.len() as u64 > max {
                    return Err(UpstreamError::TooLarge(max));
                }
                buf.extend_from_slice(&chunk);
            }
        }
        Ok(Answer {
            status,
            content_type,
            body: buf.freeze(),
        })
    };
    // Covers connect, send and reading the whole body; dropping the call on time-out drops its
    // connection with it.
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(UpstreamError::Timeout(timeout)),
    }
}

/// The POST of `post_with`: the route's headers, then the credentials' (which win), the request
/// id and the box's User-Agent.
fn post_request(
    uri: hyper::Uri,
    request_id: &str,
    body: Bytes,
    headers: &[(HeaderName, HeaderValue)],
    credentials: &crate::config::HisCredentials,
) -> Result<hyper::Request<http_body_util::Full<Bytes>>, UpstreamError> {
    let bad = || UpstreamError::Unsupported("a configured header value is not valid");
    let mut req = hyper::Request::new(http_body_util::Full::new(body));
    *req.method_mut() = hyper::Method::POST;
    *req.uri_mut() = uri;
    let h = req.headers_mut();
    h.insert(
        hyper::header::USER_AGENT,
        HeaderValue::from_static(USER_AGENT),
    );
    h.insert(
        crate::outcome::REQUEST_ID_HEADER,
        HeaderValue::from_str(request_id).map_err(|_| bad())?,
    );
    for (name, value) in headers {
        h.insert(name.clone(), value.clone());
    }
    for (name, value) in &credentials.headers {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?;
        h.append(name, HeaderValue::from_str(value).map_err(|_| bad())?);
    }
    let auth = match &credentials.auth {
        None => None,
        Some(crate::config::HisAuth::Basic { user, password }) => {
            Some(client::basic_auth(user, &password.0))
        }
        Some(crate::config::HisAuth::Bearer(token)) => Some(format!("Bearer {}", token.0)),
    };
    if let Some(auth) = auth {
        let mut value = HeaderValue::from_str(&auth).map_err(|_| bad())?;
        value.set_sensitive(true);
        h.insert(hyper::header::AUTHORIZATION, value);
    }
    Ok(req)
}

/// The User-Agent of every upstream call.
pub const USER_AGENT: &str = concat!("prefront/", env!("CARGO_PKG_VERSION"));

/// Turns an upstream answer into the JSON the caller gets: a 2xx answer whose body is JSON (in
/// UTF-8, or in the charset its Content-Type names) comes back unchanged; anything else is an
/// error the caller sees as 10003.
pub fn accept_json_answer(answer: Answer) -> Result<Bytes, UpstreamError> {
    if !(200..300).contains(&answer.status) {
        return Err(UpstreamError::Status(answer.status));
    }
    let text = crate::charset::to_utf8(&answer.body, answer.content_type.as_deref())
        .map_err(|_| UpstreamError::InvalidAnswer)?;
    if crate::json::validate_str_noting(&text, None).is_err() {
        return Err(UpstreamError::InvalidAnswer);
    }
    Ok(Bytes::from(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table the buffer, the link and the forwarder all read (DESIGN.md §3).
    #[test]
    fn one_table_says_what_a_failure_means_for_a_retry() {
        let cases = [
            (UpstreamError::Connect, Retry::AfterLink),
            (
                UpstreamError::Timeout(Duration::from_secs(1)),
                Retry::AfterLink,
            ),
            (UpstreamError::Protocol("reset".into()), Retry::AfterLink),
            (UpstreamError::Status(502), Retry::AfterLink),
            (UpstreamError::Status(503), Retry::AfterLink),
            (UpstreamError::Status(504), Retry::AfterLink),
            (UpstreamError::Status(500), Retry::Later),
            (UpstreamError::Status(501), Retry::Later),
            (UpstreamError::Status(505), Retry::Later),
            (UpstreamError::Status(408), Retry::Later),
            (UpstreamError::Status(429), Retry::Later),
            (UpstreamError::Status(400), Retry::Never),
            (UpstreamError::Status(404), Retry::Never),
            (UpstreamError::Status(499), Retry::Never),
            (UpstreamError::Status(302), Retry::Unusable),
            (UpstreamError::InvalidAnswer, Retry::Unusable),
            (UpstreamError::TooLarge(1), Retry::Unusable),
            (UpstreamError::Tls("bad".into()), Retry::Unusable),
            (
                UpstreamError::SoapFault {
                    code: "soap:Server".into(),
                    reason: "x".into(),
                },
                Retry::Unusable,
            ),
            (
                UpstreamError::Unsupported("route url is not a valid URL"),
                Retry::Unusable,
            ),
            (
                UpstreamError::ProxyUnreachable("refused".into()),
                Retry::AfterLink,
            ),
            (UpstreamError::ProxyRefused("407"), Retry::AfterLink),
        ];
        // Every variant has a row: a new variant fails to compile here until it gets one.
        let variant = |e: &UpstreamError| match e {
            UpstreamError::Connect => 0,
            UpstreamError::Tls(_) => 1,
            UpstreamError::Timeout(_) => 2,
            UpstreamError::Status(_) => 3,
            UpstreamError::InvalidAnswer => 4,
            UpstreamError::TooLarge(_) => 5,
            UpstreamError::Protocol(_) => 6,
            UpstreamError::Unsupported(_) => 7,
            UpstreamError::SoapFault { .. } => 8,
            UpstreamError::ProxyUnreachable(_) => 9,
            UpstreamError::ProxyRefused(_) => 10,
        };
        let seen: std::collections::BTreeSet<i32> = cases.iter().map(|(e, _)| variant(e)).collect();
        assert_eq!(seen, (0..=10).collect(), "a variant without a row");
        for (e, want) in cases {
            assert_eq!(e.retry(), want, "{e}");
            assert_eq!(
                e.retry().may_wait(),
                matches!(want, Retry::AfterLink | Retry::Later),
                "{e}"
            );
        }
    }

    /// A fake HTTP proxy on loopback: answers every CONNECT with `answer` (or closes the
    /// connection at once when it is empty), and hands the CONNECT request's head to the test.
    async fn fake_proxy(
        answer: &'static str,
    ) -> (
        std::net::SocketAddr,
        tokio::sync::mpsc::UnboundedReceiver<String>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                if answer.is_empty() {
                    continue; // dropped: closed at once
                }
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
                let _ = sock.write_all(answer.as_bytes()).await;
                let _ = sock.shutdown().await;
            }
        });
        (addr, rx)
    }

    fn tls() -> rustls::ClientConfig {
        tls_config(rustls::RootCertStore::empty(), None).expect("tls")
    }

    fn proxied_client(addr: std::net::SocketAddr, auth: bool) -> client::Client {
        let proxy = crate::config::CloudProxy {
            url: reqwest::Url::parse(&format!("http://{addr}")).expect("proxy url"),
            auth: auth.then(|| crate::config::ProxyAuth {
                user: "box".into(),
                password: crate::config::Secret("s3cret-pw".into()),
            }),
        };
        client::Client::new(tls(), Duration::from_secs(2), Some(&proxy)).expect("client")
    }

    async fn call_through(client: &client::Client) -> UpstreamError {
        let url: hyper::Uri = "https://cloud.example.invalid:8443/prefront/x"
            .parse()
            .expect("url");
        let timeout = Duration::from_secs(5);
        let body = Bytes::from_static(b"{}");
        match post(client, url, "rid", body, &JSON_HEADERS, timeout, 1024).await {
            Ok(a) => panic!("no answer can come through this proxy: {a:?}"),
            Err(e) => e,
        }
    }

    /// How the client reports a CONNECT the proxy refuses, and a proxy that is not there, against
    /// real answers on loopback (this pins the tunnel's words `proxy_failure` reads).
    #[tokio::test]
    async fn a_proxy_failure_is_told_from_the_clouds() {
        let (addr, mut heads) =
            fake_proxy("HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
                .await;
        let client = proxied_client(addr, true);
        assert!(
            !format!("{client:?}").contains("s3cret-pw"),
            "the client's Debug never shows the proxy password"
        );
        let e = call_through(&client).await;
        assert!(matches!(e, UpstreamError::ProxyRefused(_)), "{e:?}");
        assert_eq!(e.kind(), Outcome::ProxyRefused);
        assert!(e.to_string().contains("407"), "{e}");
        assert_eq!(e.retry(), Retry::AfterLink);
        let head = heads.recv().await.expect("the CONNECT");
        assert!(
            head.starts_with("CONNECT cloud.example.invalid:8443 HTTP/1.1\r\n"),
            "only the host name and port go to the proxy: {head}"
        );
        // base64("box:s3cret-pw")
        assert!(
            head.to_ascii_lowercase()
                .contains("proxy-authorization: basic ym94onmzy3jldc1wdw=="),
            "{head}"
        );
        assert!(
            !head.contains("/prefront/x"),
            "the path stays in the tunnel"
        );

        let (addr, _h) = fake_proxy("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n").await;
        let e = call_through(&proxied_client(addr, false)).await;
        assert!(matches!(e, UpstreamError::ProxyRefused(_)), "{e:?}");
        assert!(!e.to_string().contains("407"), "{e}");

        let (addr, _h) = fake_proxy("").await;
        let e = call_through(&proxied_client(addr, false)).await;
        assert!(matches!(e, UpstreamError::ProxyUnreachable(_)), "{e:?}");
        assert_eq!(e.kind(), Outcome::ProxyUnreachable);

        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        let e = call_through(&proxied_client(closed, false)).await;
        assert!(matches!(e, UpstreamError::ProxyUnreachable(_)), "{e:?}");
        assert!(e.to_string().to_lowercase().contains("refused"), "{e}");
        assert_eq!(e.retry(), Retry::AfterLink);
    }

    /// Without a proxy, a closed port is the cloud's own connect failure, not the proxy's.
    #[tokio::test]
    async fn without_a_proxy_a_closed_port_is_upstream_connect() {
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        let client = client::Client::new(tls(), Duration::from_secs(2), None).expect("client");
        let url: hyper::Uri = format!("https://{closed}/x").parse().expect("url");
        let e = post(
            &client,
            url,
            "rid",
            Bytes::new(),
            &JSON_HEADERS,
            Duration::from_secs(5),
            10,
        )
        .await
        .err();
        assert!(matches!(e, Some(UpstreamError::Connect)), "{e:?}");
    }
}
