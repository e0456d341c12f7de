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
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::SystemError => "10003",
            Code::MissingParameter => "20001",
            Code::InvalidParameter => "20003",
            Code::UnknownInterface => "40002",
            Code::NotConfigured => "40003",
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
}

impl Raised {
    pub fn new(code: Code, kind: &'static str, msg: impl Into<String>) -> Raised {
        Raised {
            code,
            kind,
            msg: msg.into(),
        }
    }

    /// The JSON body in the interface's envelope shape.
    pub fn body(&self, envelope: Envelope) -> Bytes {
        let v: Value = match envelope {
            Envelope::Standard => json!({
                "success": false,
                "msg": self.msg,
                "code": self.code.as_str(),
                "data": null,
            }),
            // 21.1.x: status 1 = ok, -1 = unknown error. `code` rides along so a caller that
            // knows 附四 can tell a timeout from a bad request.
            Envelope::Status => json!({
                "success": false,
                "message": self.msg,
                "status": -1,
                "code": self.code.as_str(),
            }),
            Envelope::Message => json!({
                "success": false,
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
