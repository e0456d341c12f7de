//! Outcomes the box raises itself, as the caller's own envelope (DESIGN.md §2): HTTP 200, the
//! interface's envelope shape, a 附四 code, and `X-Prefront-Error` naming what happened.

use bytes::Bytes;
use serde_json::{json, Value};

use crate::catalog::Envelope;

/// The header that tells a caller (and an operator reading a capture) the box raised this answer.
pub const ERROR_HEADER: hyper::header::HeaderName =
    hyper::header::HeaderName::from_static("x-prefront-error");

/// The caller's request id, on the answer and on every upstream call. A `HeaderName` made once:
/// inserting by a `&str` name copies a non-standard name into a new allocation every time.
pub const REQUEST_ID_HEADER: hyper::header::HeaderName =
    hyper::header::HeaderName::from_static("x-request-id");

/// A return code from appendix 4 (附四) of the specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// 10001 成功: also a notify call accepted into the buffer.
    Success,
    /// 10002: for the refund interfaces (13.2.1, 20.2.2, 21.1.7) "refund state unknown, retry
    /// with the same refund number": a refund accepted into the buffer.
    StateUnknown,
    /// 10003 系统错误: upstream unreachable, timed out, or answered nonsense.
    SystemError,
    /// 20001 缺少参数: empty body.
    MissingParameter,
    /// 20003 参数无效或格式错误: not JSON.
    InvalidParameter,
    /// 40002: unknown prefront path.
    UnknownInterface,
    /// 40003: cloud → HIS name not configured for this hospital.
    NotConfigured,
    /// 40001: the buffer is full; the call was not accepted.
    BufferFull,
    /// 40004: a business call accepted into the buffer; retry with the same key for the result.
    Accepted,
    /// 50001 无权访问: a signed call whose signature is missing, wrong, stale or replayed.
    NoAccess,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Success => "10001",
            Code::StateUnknown => "10002",
            Code::SystemError => "10003",
            Code::MissingParameter => "20001",
            Code::InvalidParameter => "20003",
            Code::UnknownInterface => "40002",
            Code::NotConfigured => "40003",
            Code::BufferFull => "40001",
            Code::Accepted => "40004",
            Code::NoAccess => "50001",
        }
    }
}

/// What became of one call: the `outcome` of its log line and metric, and the `X-Prefront-Error`
/// kind when the box raised the answer itself. Decided once, where it happens; everything else
/// (the status page's ok/queued/failed, the recent errors) reads it from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Relayed, and the peer's answer passed on.
    Ok,
    /// The WebService's WSDL served.
    Wsdl,
    /// A business call whose key was delivered already: the cloud's recorded answer.
    CachedResult,
    /// Accepted into the buffer: delivery is now the box's job.
    Queued,
    /// A path this listener has nothing at (404).
    NotFound,
    /// A method the path does not serve (405).
    MethodNotAllowed,
    /// A request body over the size limit, too slow or broken (413, 408, 400).
    BodyRefused,
    /// No such prefront interface (40002).
    UnknownPath,
    /// A body in a charset the box does not read (20003).
    InvalidCharset,
    /// An empty body (20001).
    EmptyBody,
    /// A body that is not JSON (20003).
    InvalidJson,
    /// A SOAP call the WebService could not read: answered with a Fault.
    SoapFault,
    /// The cloud link is down and the call may not wait (10003).
    LinkDown,
    /// The buffer's quota is used up: the call was not accepted (40001).
    BufferFull,
    /// The buffer cannot write: the call was not accepted (10003).
    BufferError,
    /// No such hospital interface name (40003).
    UnknownName,
    /// This hospital has not routed the name (40003).
    NotConfigured,
    /// A `hospitalId` that names no `[[hospital]]` of this box (40003; 404 on `/pacs/dcm`).
    UnknownHospital,
    /// A `hospitalId` that cannot be one: an object, an array, empty, too long, control
    /// characters (20003).
    BadHospitalId,
    /// The peer refused the connection or could not be reached.
    UpstreamConnect,
    /// The TLS handshake with the peer failed.
    UpstreamTls,
    /// The peer did not answer in time.
    UpstreamTimeout,
    /// The peer answered with an HTTP error status.
    UpstreamStatus,
    /// The peer's answer could not be read.
    UpstreamInvalidAnswer,
    /// The peer's answer was over the size limit.
    UpstreamTooLarge,
    /// The connection to the peer broke.
    UpstreamProtocol,
    /// The SOAP HIS answered with a Fault.
    UpstreamSoapFault,
    /// The route cannot be called as configured.
    RouteUnsupported,
    /// The HTTP proxy in front of the cloud could not be reached.
    ProxyUnreachable,
    /// The HTTP proxy in front of the cloud refused the tunnel (407, 403, …).
    ProxyRefused,
    /// A signed call without its signature headers (50001).
    SignatureMissing,
    /// A signed call with a bad or stale timestamp (50001).
    SignatureTimestamp,
    /// A signed call whose signature does not match (50001).
    SignatureWrong,
    /// A signed call seen before (50001).
    SignatureReplayed,
    /// Too many signatures to remember: refused rather than forgotten (50001).
    SignatureOverloaded,
    /// A call signed before the box started or reloaded (50001).
    SignatureBeforeStart,
    /// No PACS configured (`[pacs] dcm_url`).
    PacsNotConfigured,
    /// A dcmId or hospitalId the box refuses.
    BadDcmId,
    /// The box hands out no file links.
    LinksNotConfigured,
    /// A file link this box did not issue.
    LinkForged,
    /// A file link past its time.
    LinkExpired,
    /// A file link to a host no longer in `internal_hosts`.
    LinkHostNotInternal,
    /// The image server did not answer in time.
    PacsTimeout,
    /// The image server could not be reached.
    PacsUnreachable,
    /// The image server redirected outside `internal_hosts`.
    RedirectRefused,
    /// The image server answered with an HTTP error status.
    PacsStatus,
    /// A stream the image server stopped sending.
    PacsStalled,
    /// A stream the image server broke off.
    PacsBroken,
    /// A stream the caller stopped reading before its end.
    ClientGone,
}

/// How an outcome counts on the status page and in the totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutcomeClass {
    /// Answered as the caller wanted.
    Ok,
    /// Accepted into the buffer.
    Queued,
    /// Everything else: the kinds callers see in `X-Prefront-Error`.
    Failed,
}

impl Outcome {
    /// Every outcome, for tests and documentation.
    pub const ALL: &'static [Outcome] = &[
        Outcome::Ok,
        Outcome::Wsdl,
        Outcome::CachedResult,
        Outcome::Queued,
        Outcome::NotFound,
        Outcome::MethodNotAllowed,
        Outcome::BodyRefused,
        Outcome::UnknownPath,
        Outcome::InvalidCharset,
        Outcome::EmptyBody,
        Outcome::InvalidJson,
        Outcome::SoapFault,
        Outcome::LinkDown,
        Outcome::BufferFull,
        Outcome::BufferError,
        Outcome::UnknownName,
        Outcome::NotConfigured,
        Outcome::UnknownHospital,
        Outcome::BadHospitalId,
        Outcome::UpstreamConnect,
        Outcome::UpstreamTls,
        Outcome::UpstreamTimeout,
        Outcome::UpstreamStatus,
        Outcome::UpstreamInvalidAnswer,
        Outcome::UpstreamTooLarge,
        Outcome::UpstreamProtocol,
        Outcome::UpstreamSoapFault,
        Outcome::RouteUnsupported,
        Outcome::ProxyUnreachable,
        Outcome::ProxyRefused,
        Outcome::SignatureMissing,
        Outcome::SignatureTimestamp,
        Outcome::SignatureWrong,
        Outcome::SignatureReplayed,
        Outcome::SignatureOverloaded,
        Outcome::SignatureBeforeStart,
        Outcome::PacsNotConfigured,
        Outcome::BadDcmId,
        Outcome::LinksNotConfigured,
        Outcome::LinkForged,
        Outcome::LinkExpired,
        Outcome::LinkHostNotInternal,
        Outcome::PacsTimeout,
        Outcome::PacsUnreachable,
        Outcome::RedirectRefused,
        Outcome::PacsStatus,
        Outcome::PacsStalled,
        Outcome::PacsBroken,
        Outcome::ClientGone,
    ];

    /// The name in logs, metrics and `X-Prefront-Error`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Wsdl => "wsdl",
            Outcome::CachedResult => "cached-result",
            Outcome::Queued => "queued",
            Outcome::NotFound => "not-found",
            Outcome::MethodNotAllowed => "method-not-allowed",
            Outcome::BodyRefused => "body-refused",
            Outcome::UnknownPath => "unknown-path",
            Outcome::InvalidCharset => "invalid-charset",
            Outcome::EmptyBody => "empty-body",
            Outcome::InvalidJson => "invalid-json",
            Outcome::SoapFault => "soap-fault",
            Outcome::LinkDown => "link-down",
            Outcome::BufferFull => "buffer-full",
            Outcome::BufferError => "buffer-error",
            Outcome::UnknownName => "unknown-name",
            Outcome::NotConfigured => "not-configured",
            Outcome::UnknownHospital => "unknown-hospital",
            Outcome::BadHospitalId => "bad-hospital-id",
            Outcome::UpstreamConnect => "upstream-connect",
            Outcome::UpstreamTls => "upstream-tls",
            Outcome::UpstreamTimeout => "upstream-timeout",
            Outcome::UpstreamStatus => "upstream-status",
            Outcome::UpstreamInvalidAnswer => "upstream-invalid-answer",
            Outcome::UpstreamTooLarge => "upstream-too-large",
            Outcome::UpstreamProtocol => "upstream-protocol",
            Outcome::UpstreamSoapFault => "upstream-soap-fault",
            Outcome::RouteUnsupported => "route-unsupported",
            Outcome::ProxyUnreachable => "proxy-unreachable",
            Outcome::ProxyRefused => "proxy-refused",
            Outcome::SignatureMissing => "signature-missing",
            Outcome::SignatureTimestamp => "signature-timestamp",
            Outcome::SignatureWrong => "signature-wrong",
            Outcome::SignatureReplayed => "signature-replayed",
            Outcome::SignatureOverloaded => "signature-overloaded",
            Outcome::SignatureBeforeStart => "signature-before-start",
            Outcome::PacsNotConfigured => "pacs-not-configured",
            Outcome::BadDcmId => "bad-dcm-id",
            Outcome::LinksNotConfigured => "links-not-configured",
            Outcome::LinkForged => "link-forged",
            Outcome::LinkExpired => "link-expired",
            Outcome::LinkHostNotInternal => "link-host-not-internal",
            Outcome::PacsTimeout => "pacs-timeout",
            Outcome::PacsUnreachable => "pacs-unreachable",
            Outcome::RedirectRefused => "redirect-refused",
            Outcome::PacsStatus => "pacs-status",
            Outcome::PacsStalled => "pacs-stalled",
            Outcome::PacsBroken => "pacs-broken",
            Outcome::ClientGone => "client-gone",
        }
    }

    pub const fn class(self) -> OutcomeClass {
        match self {
            Outcome::Ok | Outcome::Wsdl | Outcome::CachedResult => OutcomeClass::Ok,
            Outcome::Queued => OutcomeClass::Queued,
            _ => OutcomeClass::Failed,
        }
    }

    /// `true` for the outcomes that are failures (and so an `X-Prefront-Error` kind).
    pub const fn failed(self) -> bool {
        matches!(self.class(), OutcomeClass::Failed)
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which way a call went: the `direction` of its log line and metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    HisToCloud,
    CloudToHis,
    CloudToPacs,
}

impl Direction {
    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::HisToCloud => "his_to_cloud",
            Direction::CloudToHis => "cloud_to_his",
            Direction::CloudToPacs => "cloud_to_pacs",
        }
    }
}

/// An answer the box raised: what the caller sees, and the `X-Prefront-Error` kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raised {
    pub code: Code,
    /// The `X-Prefront-Error` kind, e.g. `upstream-timeout`.
    pub kind: Outcome,
    /// Human-readable, safe to show: never patient data, never a stack trace.
    pub msg: String,
    /// `true` only for a notify call accepted into the buffer: delivery is now the box's job.
    pub success: bool,
}

impl Raised {
    pub fn new(code: Code, kind: Outcome, msg: impl Into<String>) -> Raised {
        Raised {
            code,
            kind,
            msg: msg.into(),
            success: false,
        }
    }

    /// An outcome that tells the caller its call is accepted (queued).
    pub fn accepted(code: Code, kind: Outcome, msg: impl Into<String>) -> Raised {
        Raised {
            success: true,
            ..Raised::new(code, kind, msg)
        }
    }

    /// The JSON body in the interface's envelope shape.
    pub fn body(&self, envelope: Envelope) -> Bytes {
        let v: Value = match envelope {
            Envelope::Standard => json!({
                "success": self.success,
                "msg": self.msg,
                "code": self.code.as_str(),
                "data": null,
            }),
            // 21.1.x: status 1 = ok, -1 = unknown error. `code` rides along so a caller that
            // knows 附四 can tell a timeout from a bad request.
            Envelope::Status => json!({
                "success": self.success,
                "message": self.msg,
                "status": if self.success { 1 } else { -1 },
                "code": self.code.as_str(),
            }),
            Envelope::Message => json!({
                "success": self.success,
                "message": self.msg,
                "code": self.code.as_str(),
                "data": null,
            }),
        };
        Bytes::from(v.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_names_are_distinct_header_safe_and_classed() {
        let mut seen = std::collections::HashSet::new();
        for o in Outcome::ALL {
            let s = o.as_str();
            assert!(seen.insert(s), "{s} twice");
            assert!(
                s.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{s} must be a plain header value"
            );
            assert!(hyper::header::HeaderValue::from_str(s).is_ok());
        }
        assert_eq!(Outcome::Ok.class(), OutcomeClass::Ok);
        assert_eq!(Outcome::CachedResult.class(), OutcomeClass::Ok);
        assert_eq!(Outcome::Queued.class(), OutcomeClass::Queued);
        assert!(Outcome::LinkDown.failed() && Outcome::ClientGone.failed());
    }

    #[test]
    fn envelopes_keep_their_shape() {
        let r = Raised::new(Code::InvalidParameter, Outcome::InvalidJson, "bad");
        let std: Value = serde_json::from_slice(&r.body(Envelope::Standard)).unwrap_or_default();
        assert_eq!(std["code"], "20003");
        assert_eq!(std["success"], false);
        assert!(std.get("data").is_some(), "data must stay present");
        let st: Value = serde_json::from_slice(&r.body(Envelope::Status)).unwrap_or_default();
        assert_eq!(st["status"], -1);
        assert_eq!(st["message"], "bad");
        assert!(st.get("msg").is_none());
    }
}
