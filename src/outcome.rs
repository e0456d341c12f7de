//! Outcomes the box raises itself, as the caller's own envelope (DESIGN.md §2): HTTP 200, the
//! interface's envelope shape, a 附四 code, and `X-Prefront-Error` naming what happened.

use bytes::Bytes;
use serde_json::{json, Value};

use crate::catalog::Envelope;

/// The header that tells a caller (and an operator reading a capture) the box raised this answer.
pub const ERROR_HEADER: &str = "x-prefront-error";

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

/// An answer the box raised: what the caller sees, and the `X-Prefront-Error` kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raised {
    pub code: Code,
    /// Short machine-readable kind for `X-Prefront-Error`, e.g. `upstream-timeout`.
    pub kind: &'static str,
    /// Human-readable, safe to show: never patient data, never a stack trace.
    pub msg: String,
    /// `true` only for a notify call accepted into the buffer: delivery is now the box's job.
    pub success: bool,
}

impl Raised {
    pub fn new(code: Code, kind: &'static str, msg: impl Into<String>) -> Raised {
        Raised {
            code,
            kind,
            msg: msg.into(),
            success: false,
        }
    }

    /// An outcome that tells the caller its call is accepted (queued).
    pub fn accepted(code: Code, kind: &'static str, msg: impl Into<String>) -> Raised {
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
    fn envelopes_keep_their_shape() {
        let r = Raised::new(Code::InvalidParameter, "invalid-json", "bad");
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
