//! SOAP envelopes, both ways, as pure functions over bytes. `server` is the role where the HIS
//! calls us: parsing what legacy WebService clients really send (any prefix, qualified or not,
//! `param`/`arg0`/`in0`/…, CDATA, GBK, BOM) and building answers and faults in the caller's SOAP
//! version. `client` is the role where we call a SOAP HIS: the request, and the one reader of its
//! answers. Both read XML through this module's `Walker`: any DOCTYPE is refused (no entity
//! expansion, no external entities), and nesting depth is capped.

mod client;
mod server;

use std::borrow::Cow;

use super::charref::{Resolved, Surrogates};
use encoding_rs::{Encoding, UTF_8};
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use crate::config::SoapVersion;

pub use client::{
    default_soap_action, his_request, parse_his_answer, parse_his_answer_json, HisAnswer,
    HisJsonAnswer, Payload,
};
pub use server::{call_response, client_fault, parse_call, SoapCall};

pub const NS_SOAP11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
pub const NS_SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";

/// Deeper nesting than this is refused: real envelopes are 4–6 levels deep; a HIS answer in
/// XML elements may use the mapper's 64 levels below its wrapper.
const MAX_DEPTH: usize = 72;

/// Why bytes are not a usable SOAP message. Every variant is the caller's fault (Client/Sender).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("malformed XML: {0}")]
    Malformed(String),
    #[error("DOCTYPE declarations are not accepted")]
    Doctype,
    #[error("XML nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("not a SOAP envelope (root element is `{0}`)")]
    NotAnEnvelope(String),
    #[error("the envelope has no Body")]
    NoBody,
    #[error("the Body holds no operation element")]
    NoOperation,
    #[error("cannot tell which child of `{0}` holds the parameter")]
    AmbiguousParameter(String),
    #[error("charset: {0}")]
    Charset(String),
}

/// declaration, else UTF-8. GBK-family labels decode as GB18030. A BOM is dropped.
pub fn decode(
    body: &[u8],
    content_type: Option<&str>,
) -> Result<(String, Option<String>), EnvelopeError> {
    let label = crate::charset::declared(content_type).or_else(|| prolog_encoding(body));
    let enc: &'static Encoding = match &label {
        Some(l) => {
            crate::charset::encoding_for(l).map_err(|e| EnvelopeError::Charset(e.to_string()))?
        }
        None => UTF_8,
    };
    let body = body
        .strip_prefix(b"\xEF\xBB\xBF".as_slice())
        .unwrap_or(body);
    let text = enc
        .decode_without_bom_handling_and_without_replacement(body)
        .ok_or_else(|| EnvelopeError::Charset(format!("bytes are not valid {}", enc.name())))?;
    let charset = label.filter(|_| enc != UTF_8);
    Ok((text.into_owned(), charset))
}

/// `encoding="…"` from an XML declaration at the start of the bytes.
fn prolog_encoding(body: &[u8]) -> Option<String> {
    let body = body
        .strip_prefix(b"\xEF\xBB\xBF".as_slice())
        .unwrap_or(body);
    let head = &body[..body.len().min(200)];
    if !head.starts_with(b"<?xml") {
        return None;
    }
    let end = head.windows(2).position(|w| w == b"?>")?;
    let decl = std::str::from_utf8(&head[..end]).ok()?;
    let at = decl.find("encoding")?;
    let rest = decl[at + "encoding".len()..]
        .trim_start()
        .strip_prefix('=')?
        .trim_start();
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let value = &rest[1..];
    Some(value[..value.find(quote)?].to_string())
}

fn local(name: &[u8]) -> &str {
    let local = match name.iter().rposition(|&b| b == b':') {
        Some(i) => &name[i + 1..],
        None => name,
    };
    std::str::from_utf8(local).unwrap_or("")
}

struct Walker<'a> {
    reader: Reader<&'a [u8]>,
    depth: usize,
    /// Names of the elements opened before the text began, outermost first (`inside`); `depth`
    /// counts them too.
    outer: Vec<Vec<u8>>,
    /// Joins Axis 1.4's surrogate-pair references into one character.
    surrogates: Surrogates,
}

enum Step<'a> {
    Open(BytesStart<'a>, bool),
    Close,
    Text(Cow<'a, str>),
    End,
}

impl<'a> Walker<'a> {
    fn new(text: &'a str) -> Walker<'a> {
        Walker::inside(text, Vec::new())
    }

    /// A walker over text that begins inside elements opened before it (`outer`, outermost
    /// first): their end tags are checked against their names, as one walker over the whole
    /// text would check them.
    fn inside(text: &'a str, outer: Vec<Vec<u8>>) -> Walker<'a> {
        let mut reader = Reader::from_reader(text.as_bytes());
        reader.config_mut().check_end_names = true;
        reader.config_mut().allow_unmatched_ends = !outer.is_empty();
        Walker {
            reader,
            depth: outer.len(),
            outer,
            surrogates: Surrogates::default(),
        }
    }

    /// Where the walker is in the text, in bytes.
    fn position(&self) -> usize {
        usize::try_from(self.reader.buffer_position()).unwrap_or(usize::MAX)
    }

    fn malformed(&self, e: impl std::fmt::Display) -> EnvelopeError {
        EnvelopeError::Malformed(format!("{e} (at byte {})", self.reader.buffer_position()))
    }

    fn next(&mut self) -> Result<Step<'a>, EnvelopeError> {
        loop {
            let ev = self.reader.read_event().map_err(|e| self.malformed(e))?;
            if !matches!(ev, Event::GeneralRef(_)) {
                self.surrogates
                    .other_event()
                    .map_err(|e| self.malformed(e))?;
            }
            return Ok(match ev {
                Event::Start(s) => {
                    self.depth += 1;
                    if self.depth > MAX_DEPTH {
                        return Err(EnvelopeError::TooDeep);
                    }
                    Step::Open(s, false)
                }
                Event::Empty(s) => {
                    if self.depth + 1 > MAX_DEPTH {
                        return Err(EnvelopeError::TooDeep);
                    }
                    Step::Open(s, true)
                }
                Event::End(e) => {
                    // Only the end tags of `outer` elements get here unmatched (quick-xml
                    // checks the others): each must close the innermost one still open.
                    if self.depth == self.outer.len()
                        && self.outer.pop().as_deref() != Some(e.name().as_ref())
                    {
                        return Err(self.malformed(format!(
                            "unexpected end tag `</{}>`",
                            String::from_utf8_lossy(e.name().as_ref())
                        )));
                    }
                    self.depth = self.depth.saturating_sub(1);
                    Step::Close
                }
                Event::Text(t) => Step::Text(t.decode().map_err(|e| self.malformed(e))?),
                Event::CData(c) => Step::Text(c.decode().map_err(|e| self.malformed(e))?),
                Event::GeneralRef(r) => {
                    let resolved = self.surrogates.reference(&r);
                    match resolved.map_err(|e| self.malformed(e))? {
                        Resolved::Char(c) => Step::Text(Cow::Owned(c.to_string())),
                        Resolved::Pending => continue,
                        Resolved::Entity => {
                            let name = r.decode().map_err(|e| self.malformed(e))?;
                            let c = match name.as_ref() {
                                "amp" => "&",
                                "lt" => "<",
                                "gt" => ">",
                                "quot" => "\"",
                                "apos" => "'",
                                other => {
                                    return Err(
                                        self.malformed(format!("undefined entity `&{other};`"))
                                    )
                                }
                            };
                            Step::Text(Cow::Borrowed(c))
                        }
                    }
                }
                Event::DocType(_) => return Err(EnvelopeError::Doctype),
                Event::Decl(_) | Event::PI(_) | Event::Comment(_) => continue,
                Event::Eof => Step::End,
            });
        }
    }

    /// Collects the text content of the element just opened, up to its end. Child elements
    /// inside it are an error: a string parameter has no structure.
    fn text_until_close(&mut self) -> Result<Result<String, ()>, EnvelopeError> {
        let mut out = String::new();
        let mut nested = false;
        let mut level = 0usize;
        loop {
            match self.next()? {
                Step::Text(t) => {
                    if level == 0 {
                        out.push_str(&t)
                    }
                }
                Step::Open(_, empty) => {
                    nested = true;
                    if !empty {
                        level += 1;
                    }
                }
                Step::Close => {
                    if level == 0 {
                        return Ok(if nested { Err(()) } else { Ok(out) });
                    }
                    level -= 1;
                }
                Step::End => return Err(self.malformed("document ends inside an element")),
            }
        }
    }

    /// Skips the rest of the element just opened.
    fn skip(&mut self) -> Result<(), EnvelopeError> {
        let mut level = 0usize;
        loop {
            match self.next()? {
                Step::Open(_, false) => level += 1,
                Step::Close => {
                    if level == 0 {
                        return Ok(());
                    }
                    level -= 1;
                }
                Step::End => return Err(self.malformed("document ends inside an element")),
                _ => {}
            }
        }
    }

    /// After the document's last element: only whitespace, comments and PIs may follow.
    fn finish(&mut self) -> Result<(), EnvelopeError> {
        loop {
            match self.next()? {
                Step::End => return Ok(()),
                Step::Text(t) if t.trim().is_empty() => {}
                _ => return Err(self.malformed("content after the envelope")),
            }
        }
    }
}

/// Escapes text for element content.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.contains(['&', '<', '>', '\r']) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn env_ns(version: SoapVersion) -> &'static str {
    match version {
        SoapVersion::V11 => NS_SOAP11,
        SoapVersion::V12 => NS_SOAP12,
    }
}

/// The Content-Type of a SOAP message of this version in this charset.
pub fn content_type(version: SoapVersion, charset: &str, action: Option<&str>) -> String {
    match version {
        SoapVersion::V11 => format!("text/xml; charset={charset}"),
        SoapVersion::V12 => match action {
            Some(a) => format!("application/soap+xml; charset={charset}; action=\"{a}\""),
            None => format!("application/soap+xml; charset={charset}"),
        },
    }
}

fn prolog(charset: Option<&str>) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"{}\"?>",
        charset.unwrap_or("UTF-8")
    )
}
