//! PACS images and report files: `GET /pacs/dcm?dcmId=…` and `GET /files/<token>` on the cloud
//! listener stream bytes from the hospital LAN to the cloud with backpressure, in constant
//! memory; HIS answers get their LAN links rewritten to signed, expiring `/files` links. The box
//! only ever fetches the configured PACS template or a URL it signed itself, on a host named in
//! `[pacs] internal_hosts`: it is never an open proxy.

pub mod link;
pub mod rewrite;

use std::borrow::Cow;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::http::request::Parts;
use hyper::{Method, StatusCode};

pub use link::{LinkError, LinkSigner};

use crate::clock::unix_now;
use crate::config::{Config, InternalHost, PacsConfig};
use crate::outcome::{Direction, Outcome};

/// The error of a streamed body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Request headers passed on to the PACS.
const FORWARD_REQUEST: &[&str] = &["range", "if-range", "if-none-match", "if-modified-since"];
/// Answer headers passed back to the cloud.
const FORWARD_ANSWER: &[&str] = &[
    "content-length",
    "content-type",
    "content-disposition",
    "etag",
    "last-modified",
    "content-range",
    "accept-ranges",
];
/// Longest forwarded request header value (a Range with a few parts fits easily).
const MAX_FORWARDED_HEADER: usize = 512;
/// Longest dcmId / hospitalId accepted.
const MAX_ID_LEN: usize = 256;
/// Redirects followed on an internal host before giving up.
const MAX_REDIRECTS: usize = 5;

/// Characters of a dcmId or hospitalId left as they are in the PACS URL; everything else is
/// percent-encoded, so a value can never add a path segment, a query parameter or a fragment.
const ID_SAFE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `/pacs/dcm` on a box (or for a call) with no PACS template.
const NO_PACS: Refusal = Refusal::new(
    StatusCode::NOT_FOUND,
    Outcome::PacsNotConfigured,
    "this box has no PACS configured ([pacs] dcm_url)\n",
);

/// Streams and links, built once at start.
#[derive(Debug)]
pub struct Pacs {
    config: PacsConfig,
    /// Where minted links lead: `files_listener.public_url` when set, else
    /// `cloud_listener.public_url`; without a trailing slash.
    public_url: Option<String>,
    /// Present when links are rewritten (`internal_hosts` set).
    signer: Option<LinkSigner>,
    client: reqwest::Client,
}

/// Why the PACS side could not be prepared at start.
#[derive(Debug, thiserror::Error)]
pub enum PacsError {
    #[error("{0}")]
    Key(#[from] link::KeyError),
    #[error("PACS client: {0}")]
    Client(String),
}

/// Streams, bytes and failures since start (metrics hooks).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StreamTotals {
    pub completed: u64,
    pub failed: u64,
    pub bytes: u64,
}

static COMPLETED: AtomicU64 = AtomicU64::new(0);
static FAILED: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

pub fn totals() -> StreamTotals {
    StreamTotals {
        completed: COMPLETED.load(Ordering::Relaxed),
        failed: FAILED.load(Ordering::Relaxed),
        bytes: BYTES.load(Ordering::Relaxed),
    }
}

const DIRECTION: Direction = Direction::CloudToPacs;

/// Who asked for a file, for the stream's log line.
#[derive(Debug, Clone)]
pub struct Caller {
    pub request_id: String,
    /// The caller after proxy resolution.
    pub peer: IpAddr,
    /// When the request arrived.
    pub started: Instant,
}

/// What the box answers to a file request; the listener makes the HTTP response of it.
pub enum Fetched {
    /// Refused, or the PACS failed: plain text with `X-Prefront-Error`, logged by the listener.
    Refused(Refusal),
    /// The PACS's answer on its way: it writes its own log line when it ends.
    Streamed(Stream),
}

/// A refusal or failure the box itself answers, as plain text with `X-Prefront-Error`.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub outcome: Outcome,
    pub text: Cow<'static, str>,
    /// The PACS's `Content-Range` (`bytes */N`) with a 416: it tells the client the real size.
    pub content_range: Option<HeaderValue>,
}

impl Refusal {
    const fn new(status: StatusCode, outcome: Outcome, text: &'static str) -> Refusal {
        Refusal {
            status,
            outcome,
            text: Cow::Borrowed(text),
            content_range: None,
        }
    }
}

impl From<Refusal> for Fetched {
    fn from(r: Refusal) -> Fetched {
        Fetched::Refused(r)
    }
}

/// The PACS's answer as it goes to the cloud.
pub struct Stream {
    pub status: StatusCode,
    /// The PACS's answer headers that are passed on (`Content-Type` always present).
    pub headers: HeaderMap,
    /// `None` for HEAD and 304 (nothing to stream; the log line is written already).
    pub body: Option<StreamBody>,
}

impl Pacs {
    /// Builds the PACS client and, when links are rewritten, loads (or, if `create_key`, creates)
    /// the signing key. `prefront check` passes `false`: checking writes nothing.
    pub fn new(config: &Config, create_key: bool) -> Result<Pacs, PacsError> {
        let pacs = config.pacs.clone();
        let signer = if pacs.internal_hosts.is_empty() {
            None
        } else {
            let key = match &pacs.link_key {
                Some(k) => k.0.as_bytes().to_vec(),
                None if create_key => link::load_or_create_key(&pacs.link_key_file)?,
                None => link::load_key(&pacs.link_key_file)?.unwrap_or_else(|| vec![0; 32]),
            };
            Some(LinkSigner::new(&key))
        };
        let mut allowed = pacs.internal_hosts.clone();
        if let Some(u) = pacs
            .dcm_url
            .as_deref()
            .and_then(|t| reqwest::Url::parse(&t.replace(['{', '}'], "")).ok())
        {
            if let Some(host) = u.host_str() {
                allowed.push(InternalHost {
                    host: host.to_string(),
                    port: u.port_or_known_default(),
                });
            }
        }
        let policy = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > MAX_REDIRECTS
                || !matches!(attempt.url().scheme(), "http" | "https")
                || !allowed.iter().any(|h| h.matches(attempt.url()))
            {
                attempt.stop()
            } else {
                attempt.follow()
            }
        });
        let roots = crate::upstream::root_store(None).map_err(PacsError::Client)?;
        let client = crate::upstream::client_builder(roots, pacs.connect_timeout)
            .map_err(PacsError::Client)?
            .redirect(policy)
            .read_timeout(pacs.read_timeout)
            .build()
            .map_err(|e| PacsError::Client(crate::upstream::error_root(&e)))?;
        Ok(Pacs {
            public_url: config
                .files_listener
                .as_ref()
                .and_then(|f| f.public_url.clone())
                .or_else(|| config.cloud_listener.public_url.clone()),
            config: pacs,
            signer,
            client,
        })
    }

    /// Rewrites the LAN links in a HIS answer to signed `/files` links (see `rewrite`).
    pub fn rewrite_links(&self, answer: Bytes) -> Bytes {
        let (Some(signer), Some(public)) = (&self.signer, &self.public_url) else {
            return answer;
        };
        let Some(spans) = rewrite::candidate_spans(&answer, &self.config.rewrite_fields) else {
            return answer;
        };
        if spans.is_empty() {
            return answer;
        }
        let expires = unix_now().saturating_add(self.config.link_ttl.as_secs());
        rewrite::splice(&answer, &spans, |text| {
            let url = reqwest::Url::parse(text.trim()).ok()?;
            if !matches!(url.scheme(), "http" | "https") || !self.is_internal(&url) {
                return None;
            }
            match signer.mint(url.as_str(), expires) {
                Ok(token) => Some(format!("{public}/files/{token}")),
                // The LAN address must not go out in clear: the link is emptied instead.
                Err(e) => {
                    tracing::error!(error = %e, "a LAN link in a HIS answer was emptied");
                    Some(String::new())
                }
            }
        })
    }

    /// Whether `url` is on an internal host (credentials in it or not: either way it is sealed
    /// into a link, so neither the address nor the password reaches the cloud).
    fn is_internal(&self, url: &reqwest::Url) -> bool {
        self.config.internal_hosts.iter().any(|h| h.matches(url))
    }

    /// `GET|HEAD /pacs/dcm?dcmId=…&hospitalId=…`
    pub async fn dcm(&self, parts: &Parts, caller: &Caller) -> Fetched {
        const ROUTE: &str = "pacs-dcm";
        if self.config.dcm_url.is_none() && self.config.hospitals.values().all(Option::is_none) {
            return NO_PACS.into();
        }
        let (dcm_id, hospital_id) = match ids(parts.uri.query().unwrap_or("")) {
            Ok(x) => x,
            Err(r) => return r.into(),
        };
        let template = match self.template_for(&hospital_id) {
            Ok(t) => t,
            Err(r) => return r.into(),
        };
        let filled = template
            .replace("{dcmId}", &encode_id(&dcm_id))
            .replace("{hospitalId}", &encode_id(&hospital_id));
        let Ok(url) = reqwest::Url::parse(&filled) else {
            return Refusal::new(
                StatusCode::BAD_REQUEST,
                Outcome::BadDcmId,
                "dcmId does not make a valid PACS URL\n",
            )
            .into();
        };
        self.fetch(url, parts, caller, ROUTE).await
    }

    /// The PACS template for a call's `hospitalId`: with `[[hospital]]`, that hospital's
    /// `dcm_url` (or `[pacs] dcm_url` for one without its own, and for a call without an id);
    /// without, `[pacs] dcm_url` whatever the id.
    fn template_for(&self, hospital_id: &str) -> Result<&str, Refusal> {
        let own = if hospital_id.is_empty() || self.config.hospitals.is_empty() {
            None
        } else {
            match self.config.hospitals.get(hospital_id) {
                Some(own) => own.as_deref(),
                None => {
                    return Err(Refusal::new(
                        StatusCode::NOT_FOUND,
                        Outcome::UnknownHospital,
                        "no [[hospital]] on this box has this hospitalId\n",
                    ))
                }
            }
        };
        own.or(self.config.dcm_url.as_deref()).ok_or(NO_PACS)
    }

    /// `GET|HEAD /files/<token>`
    pub async fn file(&self, token: &str, parts: &Parts, caller: &Caller) -> Fetched {
        const ROUTE: &str = "files";
        let Some(signer) = &self.signer else {
            return Refusal::new(
                StatusCode::NOT_FOUND,
                Outcome::LinksNotConfigured,
                "this box hands out no file links ([pacs] internal_hosts is empty)\n",
            )
            .into();
        };
        let url = match signer.verify(token, unix_now()) {
            Ok(u) => u,
            Err(LinkError::Forged) => {
                return Refusal::new(
                    StatusCode::FORBIDDEN,
                    Outcome::LinkForged,
                    "this link was not issued by this box\n",
                )
                .into()
            }
            Err(LinkError::Expired) => {
                return Refusal::new(
                    StatusCode::GONE,
                    Outcome::LinkExpired,
                    "this link has expired; ask for the report again\n",
                )
                .into()
            }
        };
        // Signed by us, but the config may have changed since: the host must still be internal.
        match reqwest::Url::parse(&url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && self.is_internal(&u) => {
                self.fetch(u, parts, caller, ROUTE).await
            }
            _ => Refusal::new(
                StatusCode::FORBIDDEN,
                Outcome::LinkHostNotInternal,
                "this link leads to a host this box does not serve files from\n",
            )
            .into(),
        }
    }

    /// Fetches `url` from the LAN and streams the answer back.
    async fn fetch(
        &self,
        url: reqwest::Url,
        parts: &Parts,
        caller: &Caller,
        route: &'static str,
    ) -> Fetched {
        let host = format!(
            "{}:{}",
            url.host_str().unwrap_or("?"),
            url.port_or_known_default().unwrap_or(0)
        );
        let method = if parts.method == Method::HEAD {
            reqwest::Method::HEAD
        } else {
            reqwest::Method::GET
        };
        let mut req = self.client.request(method, url);
        for name in FORWARD_REQUEST {
            if let Some(v) = parts.headers.get(*name) {
                if v.len() <= MAX_FORWARDED_HEADER {
                    req = req.header(*name, v.as_bytes());
                }
            }
        }
        req = req.header("x-request-id", caller.request_id.as_str());
        let answer = match req.send().await {
            Ok(a) => a,
            Err(e) if e.is_timeout() => {
                tracing::warn!(request_id = %caller.request_id, upstream = %host, error = %crate::upstream::error_root(&e), "PACS did not answer in time");
                return Refusal::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    Outcome::PacsTimeout,
                    "the image server did not answer in time\n",
                )
                .into();
            }
            Err(e) => {
                tracing::warn!(request_id = %caller.request_id, upstream = %host, error = %crate::upstream::error_root(&e), "PACS unreachable");
                return Refusal::new(
                    StatusCode::BAD_GATEWAY,
                    Outcome::PacsUnreachable,
                    "the image server could not be reached\n",
                )
                .into();
            }
        };
        let status = answer.status();
        if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
            tracing::warn!(request_id = %caller.request_id, upstream = %host, status = status.as_u16(), "PACS redirected to a host outside [pacs] internal_hosts (or too often): not followed");
            return Refusal::new(
                StatusCode::BAD_GATEWAY,
                Outcome::RedirectRefused,
                "the image server redirected somewhere this box does not go\n",
            )
            .into();
        }
        if status.is_client_error() || status.is_server_error() {
            // The PACS's own error page stays on the LAN: it may name internal paths.
            let content_range = if status == StatusCode::RANGE_NOT_SATISFIABLE {
                answer.headers().get("content-range").cloned()
            } else {
                None
            };
            return Fetched::Refused(Refusal {
                status,
                outcome: Outcome::PacsStatus,
                text: Cow::Owned(format!("the image server answered {status}\n")),
                content_range,
            });
        }
        let declared = answer
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let mut headers = HeaderMap::new();
        for name in FORWARD_ANSWER {
            if let Some(v) = answer.headers().get(*name) {
                headers.insert(HeaderName::from_static(name), v.clone());
            }
        }
        if !headers.contains_key(CONTENT_TYPE) {
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
        }
        let mut log = StreamLog {
            route,
            upstream: host,
            peer: caller.peer,
            request_id: caller.request_id.clone(),
            status: status.as_u16(),
            declared,
            started: caller.started,
            bytes: 0,
            done: false,
        };
        let body = if parts.method == Method::HEAD || status == StatusCode::NOT_MODIFIED {
            log.finish(Outcome::Ok);
            None
        } else {
            let body = hyper::http::Response::<reqwest::Body>::from(answer).into_body();
            Some(StreamBody { inner: body, log })
        };
        Fetched::Streamed(Stream {
            status,
            headers,
            body,
        })
    }
}

/// The dcmId and hospitalId of a `/pacs/dcm` query, checked.
fn ids(query: &str) -> Result<(String, String), Refusal> {
    const BAD: Refusal = Refusal::new(
        StatusCode::BAD_REQUEST,
        Outcome::BadDcmId,
        "dcmId (required) and hospitalId must each appear once, be at most 256 bytes, contain no \
         control characters and not be only dots\n",
    );
    let mut dcm_id = None;
    let mut hospital_id = None;
    for (k, v) in percent_encoding_pairs(query) {
        let slot = match k.as_str() {
            "dcmId" => &mut dcm_id,
            "hospitalId" => &mut hospital_id,
            _ => continue,
        };
        if slot.replace(v).is_some() {
            return Err(BAD);
        }
    }
    let ok = |v: &str| {
        v.len() <= MAX_ID_LEN
            && !v.chars().any(|c| c.is_control() || c == '\u{FFFD}')
            && !v.chars().all(|c| c == '.')
    };
    let dcm_id = dcm_id.filter(|v| !v.is_empty() && ok(v)).ok_or(BAD)?;
    let hospital_id = hospital_id.unwrap_or_default();
    if !hospital_id.is_empty() && !ok(&hospital_id) {
        return Err(BAD);
    }
    Ok((dcm_id, hospital_id))
}

/// `application/x-www-form-urlencoded` pairs of a query string (`+` is a space).
fn percent_encoding_pairs(query: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        // Not UTF-8: U+FFFD (which `ids` refuses), never a lossy id that names another image.
        percent_encoding::percent_decode_str(&s)
            .decode_utf8()
            .map_or_else(|_| "\u{FFFD}".to_string(), |c| c.into_owned())
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

fn encode_id(v: &str) -> String {
    percent_encoding::utf8_percent_encode(v, ID_SAFE).to_string()
}

/// What the one log line of a stream says.
struct StreamLog {
    route: &'static str,
    /// host:port only: paths and queries can carry patient identifiers.
    upstream: String,
    peer: std::net::IpAddr,
    request_id: String,
    status: u16,
    declared: Option<u64>,
    started: Instant,
    bytes: u64,
    done: bool,
}

impl StreamLog {
    fn finish(&mut self, outcome: Outcome) {
        if self.done {
            return;
        }
        self.done = true;
        let elapsed = self.started.elapsed().as_secs_f64();
        crate::telemetry::metrics::call(DIRECTION, self.route, outcome, elapsed);
        let duration_ms = (elapsed * 1000.0).round();
        BYTES.fetch_add(self.bytes, Ordering::Relaxed);
        if outcome == Outcome::Ok {
            COMPLETED.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                direction = DIRECTION.as_str(),
                route = self.route,
                peer = %self.peer,
                upstream = %self.upstream,
                status = self.status,
                bytes = self.bytes,
                duration_ms,
                outcome = outcome.as_str(),
                request_id = %self.request_id,
                "stream"
            );
        } else {
            FAILED.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                direction = DIRECTION.as_str(),
                route = self.route,
                peer = %self.peer,
                upstream = %self.upstream,
                status = self.status,
                bytes = self.bytes,
                declared = self.declared,
                duration_ms,
                outcome = outcome.as_str(),
                request_id = %self.request_id,
                "stream"
            );
        }
    }
}

/// The PACS's body on its way to the cloud: counts bytes and writes the stream's log line when
/// it ends, fails, or is dropped because the client went away (which also drops, and so
/// cancels, the request to the PACS).
pub struct StreamBody {
    inner: reqwest::Body,
    log: StreamLog,
}

impl HttpBody for StreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                this.log.finish(Outcome::Ok);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.log.bytes += d.len() as u64;
                }
                // hyper stops polling once a body with a known length is complete.
                if this.inner.is_end_stream() {
                    this.log.finish(Outcome::Ok);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                let outcome = if e.is_timeout() {
                    Outcome::PacsStalled
                } else {
                    Outcome::PacsBroken
                };
                this.log.finish(outcome);
                Poll::Ready(Some(Err(Box::new(e))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for StreamBody {
    fn drop(&mut self) {
        if self.log.declared == Some(self.log.bytes) {
            self.log.finish(Outcome::Ok);
        } else {
            self.log.finish(Outcome::ClientGone);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_and_encoded() {
        let (d, h) = ids("dcmId=a%2F..%2Fb%40evil%23x&hospitalId=253").unwrap_or_default();
        assert_eq!(d, "a/../b@evil#x");
        assert_eq!(h, "253");
        assert_eq!(encode_id(&d), "a%2F..%2Fb%40evil%23x");
        for bad in [
            "",
            "hospitalId=1",
            "dcmId=",
            "dcmId=..",
            "dcmId=.",
            "dcmId=a%0d%0aX:1",
            "dcmId=a%00",
            "dcmId=a&dcmId=b",
            "dcmId=a&hospitalId=..",
        ] {
            assert!(ids(bad).is_err(), "{bad}");
        }
        assert!(ids(&format!("dcmId={}", "x".repeat(257))).is_err());
        assert_eq!(
            ids("dcmId=1.2.840.113619+x")
                .map(|x| x.0)
                .unwrap_or_default(),
            "1.2.840.113619 x"
        );
    }
}
