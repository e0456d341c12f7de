//! Text encodings callers really use. A body is decoded by the charset its sender declared
//! (never by the machine's locale); GBK and GB2312 are decoded as their superset GB18030.

use std::borrow::Cow;

use bytes::Bytes;
use encoding_rs::{Encoding, GB18030, UTF_8};

/// Why a body could not be turned into UTF-8 text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CharsetError {
    #[error("unsupported charset `{0}`")]
    Unsupported(String),
    #[error("bytes are not valid {0}")]
    Malformed(&'static str),
}

/// The charset named in a Content-Type header, if any, without quotes.
pub fn declared(content_type: Option<&str>) -> Option<String> {
    let ct = content_type?;
    ct.split(';').skip(1).find_map(|param| {
        let (k, v) = param.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

/// The encoding for a declared charset label; GBK-family labels map to GB18030.
pub fn encoding_for(label: &str) -> Result<&'static Encoding, CharsetError> {
    let enc = Encoding::for_label(label.trim().as_bytes())
        .ok_or_else(|| CharsetError::Unsupported(label.to_string()))?;
    if enc == encoding_rs::GBK || enc == GB18030 {
        return Ok(GB18030);
    }
    if enc == UTF_8 {
        return Ok(UTF_8);
    }
    Err(CharsetError::Unsupported(label.to_string()))
}

/// Decodes a body to UTF-8 bytes by its declared charset (UTF-8 when none is declared), with a
/// leading byte-order mark removed. UTF-8 input is not copied.
pub fn to_utf8(body: &Bytes, content_type: Option<&str>) -> Result<Bytes, CharsetError> {
    let enc = match declared(content_type) {
        Some(label) => encoding_for(&label)?,
        None => UTF_8,
    };
    let body = body
        .strip_prefix(b"\xEF\xBB\xBF".as_slice())
        .map(|rest| body.slice(body.len() - rest.len()..))
        .unwrap_or_else(|| body.clone());
    if enc == UTF_8 {
        return match std::str::from_utf8(&body) {
            Ok(_) => Ok(body),
            Err(_) => Err(CharsetError::Malformed("UTF-8")),
        };
    }
    match enc.decode_without_bom_handling_and_without_replacement(&body) {
        Some(text) => Ok(Bytes::from(text.into_owned())),
        None => Err(CharsetError::Malformed("GB18030/GBK")),
    }
}

/// Encodes UTF-8 text for a caller that declared `label` (what it sent is what it reads).
pub fn from_utf8<'a>(text: &'a [u8], label: Option<&str>) -> Cow<'a, [u8]> {
    let Some(enc) = label.and_then(|l| encoding_for(l).ok()) else {
        return Cow::Borrowed(text);
    };
    if enc == UTF_8 {
        return Cow::Borrowed(text);
    }
    let s = String::from_utf8_lossy(text);
    let (out, _, _) = enc.encode(&s);
    Cow::Owned(out.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gbk_is_decoded_and_encoded_back() {
        let (gbk, _, _) = GB18030.encode("{\"name\":\"张三\"}");
        let gbk = Bytes::from(gbk.into_owned());
        let utf8 = to_utf8(&gbk, Some("application/json; charset=GBK")).expect("decodes");
        assert_eq!(&utf8[..], "{\"name\":\"张三\"}".as_bytes());
        assert_eq!(from_utf8(&utf8, Some("gbk")).as_ref(), &gbk[..]);
    }

    #[test]
    fn bom_is_dropped_and_bad_bytes_refused() {
        let b = Bytes::from_static(b"\xEF\xBB\xBF{}");
        assert_eq!(&to_utf8(&b, None).expect("ok")[..], b"{}");
        let bad = Bytes::from_static(b"{\"a\":\"\xff\"}");
        assert_eq!(to_utf8(&bad, None), Err(CharsetError::Malformed("UTF-8")));
        assert!(matches!(
            to_utf8(&bad, Some("text/plain; charset=ebcdic")),
            Err(CharsetError::Unsupported(_))
        ));
        assert_eq!(
            declared(Some("application/json;charset=\"utf-8\"")).as_deref(),
            Some("utf-8")
        );
    }
}
