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

/// Decodes a body to UTF-8 text by its declared charset (UTF-8 when none is declared), with a
/// leading byte-order mark removed. UTF-8 input is checked once, here, and handed on as `str`
/// so the JSON check does not check it again; it is not copied when the caller held the only
/// reference to it (`Bytes::from(text)` gives it back without a copy either).
pub fn to_utf8(body: &Bytes, content_type: Option<&str>) -> Result<String, CharsetError> {
    let enc = match declared(content_type) {
        Some(label) => encoding_for(&label)?,
        None => UTF_8,
    };
    let body = body
        .strip_prefix(b"\xEF\xBB\xBF".as_slice())
        .map(|rest| body.slice(body.len() - rest.len()..))
        .unwrap_or_else(|| body.clone());
    if enc == UTF_8 {
        return String::from_utf8(Vec::from(body)).map_err(|_| CharsetError::Malformed("UTF-8"));
    }
    match enc.decode_without_bom_handling_and_without_replacement(&body) {
        Some(text) => Ok(text.into_owned()),
        None => Err(CharsetError::Malformed("GB18030/GBK")),
    }
}

/// The encoder for answering a caller that declared `label`: GBK and GB2312 callers get real
/// GBK (their decoders reject GB18030's four-byte sequences), GB18030 callers GB18030.
fn encoder_for(label: &str) -> Option<&'static Encoding> {
    let enc = Encoding::for_label(label.trim().as_bytes())?;
    if enc == encoding_rs::GBK || enc == GB18030 {
        Some(enc)
    } else {
        None
    }
}

/// Encodes `text` for `enc`; a character the encoding cannot represent is written by `escape`
/// (in ASCII, which every encoding here shares).
fn encode_with(text: &str, enc: &'static Encoding, escape: fn(char, &mut String)) -> Vec<u8> {
    let mut encoder = enc.new_encoder();
    let mut out = Vec::with_capacity(text.len() + 16);
    let mut buf = vec![0u8; 8192];
    let mut src = text;
    loop {
        let (result, read, written) =
            encoder.encode_from_utf8_without_replacement(src, &mut buf, true);
        out.extend_from_slice(&buf[..written]);
        src = &src[read..];
        match result {
            encoding_rs::EncoderResult::InputEmpty => return out,
            encoding_rs::EncoderResult::OutputFull => {}
            encoding_rs::EncoderResult::Unmappable(c) => {
                let mut e = String::new();
                escape(c, &mut e);
                out.extend_from_slice(e.as_bytes());
            }
        }
    }
}

/// Encodes a JSON answer for a caller that declared `label`. Characters outside GBK (rare
/// surnames such as 𠮷, emoji) become `\uXXXX` escapes: they can only occur inside JSON strings.
pub fn json_for<'a>(text: &'a [u8], label: Option<&str>) -> Cow<'a, [u8]> {
    let Some(enc) = label.and_then(encoder_for) else {
        return Cow::Borrowed(text);
    };
    let s = String::from_utf8_lossy(text);
    Cow::Owned(encode_with(&s, enc, |c, out| {
        let mut units = [0u16; 2];
        for u in c.encode_utf16(&mut units) {
            out.push_str(&format!("\\u{u:04x}"));
        }
    }))
}

/// Encodes an XML document for a reader that expects `label`. Characters outside GBK become
/// numeric character references, which every XML parser turns back into the character.
pub fn xml_for<'a>(text: &'a [u8], label: Option<&str>) -> Cow<'a, [u8]> {
    let Some(enc) = label.and_then(encoder_for) else {
        return Cow::Borrowed(text);
    };
    let s = String::from_utf8_lossy(text);
    Cow::Owned(encode_with(&s, enc, |c, out| {
        out.push_str(&format!("&#{};", c as u32))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gbk_is_decoded_and_encoded_back() {
        let (gbk, _, _) = GB18030.encode("{\"name\":\"张三\"}");
        let gbk = Bytes::from(gbk.into_owned());
        let utf8 = to_utf8(&gbk, Some("application/json; charset=GBK")).expect("decodes");
        assert_eq!(utf8, "{\"name\":\"张三\"}");
        assert_eq!(json_for(utf8.as_bytes(), Some("gbk")).as_ref(), &gbk[..]);
    }

    #[test]
    fn characters_outside_gbk_are_escaped_not_sent_as_gb18030() {
        let json = "{\"n\":\"𠮷野😀\"}".as_bytes();
        let out = json_for(json, Some("GBK")).into_owned();
        let (back, _, bad) = encoding_rs::GBK.decode(&out);
        assert!(!bad, "strict GBK decodes it");
        let v: serde_json::Value = serde_json::from_str(&back).unwrap_or_default();
        assert_eq!(v["n"], "𠮷野😀");
        let xml = "<a>𠮷野</a>".as_bytes();
        let out = xml_for(xml, Some("gb2312")).into_owned();
        let (back, _, bad) = encoding_rs::GBK.decode(&out);
        assert!(!bad);
        assert_eq!(back, "<a>&#134071;野</a>");
        // A GB18030 caller can take every character as it is.
        let out = json_for(json, Some("gb18030")).into_owned();
        assert_eq!(GB18030.decode(&out).0, "{\"n\":\"𠮷野😀\"}");
    }

    #[test]
    fn bom_is_dropped_and_bad_bytes_refused() {
        let b = Bytes::from_static(b"\xEF\xBB\xBF{}");
        assert_eq!(to_utf8(&b, None).expect("ok"), "{}");
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
