//! SOAP envelopes, both ways, as pure functions over bytes: parsing what legacy WebService
//! clients really send (any prefix, qualified or not, `param`/`arg0`/`in0`/…, CDATA, GBK, BOM),
//! building answers and faults in the caller's SOAP version, and the request/response pair for
//! calling a SOAP HIS. Any DOCTYPE is refused (no entity expansion, no external entities), and
//! nesting depth is capped.

use std::borrow::Cow;

use encoding_rs::{Encoding, UTF_8};
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use crate::config::SoapVersion;
use crate::soap::xmljson;

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

/// A parsed call to the published WebService.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoapCall {
    pub version: SoapVersion,
    /// Local name of the operation element, e.g. `getPatientInfo`.
    pub operation: String,
    /// The text of the parameter element: the interface's JSON.
    pub param: String,
    /// The charset label the caller used, when not UTF-8, so the answer can use it too.
    pub charset: Option<String>,
}

/// Decodes a SOAP body to UTF-8 text: the charset comes from the Content-Type, else from the XML
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

/// The namespace URI an element's prefix is bound to, from declarations on that element or
/// the ones collected on its ancestors.
fn namespace_of(start: &BytesStart<'_>, inherited: &[(String, String)]) -> Option<String> {
    let name = start.name();
    let prefix = name
        .prefix()
        .map(|p| String::from_utf8_lossy(p.as_ref()).into_owned());
    let wanted = match &prefix {
        Some(p) => format!("xmlns:{p}"),
        None => "xmlns".to_string(),
    };
    for attr in start.attributes().flatten() {
        if attr.key.as_ref() == wanted.as_bytes() {
            return Some(String::from_utf8_lossy(&attr.value).into_owned());
        }
    }
    let p = prefix.unwrap_or_default();
    inherited
        .iter()
        .rev()
        .find(|(k, _)| *k == p)
        .map(|(_, v)| v.clone())
}

fn declarations(start: &BytesStart<'_>) -> Vec<(String, String)> {
    start
        .attributes()
        .flatten()
        .filter_map(|a| {
            let key = a.key.as_ref();
            let prefix = if key == b"xmlns" {
                String::new()
            } else {
                String::from_utf8_lossy(key.strip_prefix(b"xmlns:")?).into_owned()
            };
            Some((prefix, String::from_utf8_lossy(&a.value).into_owned()))
        })
        .collect()
}

/// One element met while walking: its local name, depth, and accumulated text.
struct Walker<'a> {
    reader: Reader<&'a [u8]>,
    depth: usize,
}

enum Step<'a> {
    Open(BytesStart<'a>, bool),
    Close,
    Text(Cow<'a, str>),
    End,
}

impl<'a> Walker<'a> {
    fn new(text: &'a str) -> Walker<'a> {
        let mut reader = Reader::from_reader(text.as_bytes());
        reader.config_mut().check_end_names = true;
        Walker { reader, depth: 0 }
    }

    fn malformed(&self, e: impl std::fmt::Display) -> EnvelopeError {
        EnvelopeError::Malformed(format!("{e} (at byte {})", self.reader.buffer_position()))
    }

    fn next(&mut self) -> Result<Step<'a>, EnvelopeError> {
        loop {
            let ev = self.reader.read_event().map_err(|e| self.malformed(e))?;
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
                Event::End(_) => {
                    self.depth = self.depth.saturating_sub(1);
                    Step::Close
                }
                Event::Text(t) => Step::Text(t.decode().map_err(|e| self.malformed(e))?),
                Event::CData(c) => Step::Text(c.decode().map_err(|e| self.malformed(e))?),
                Event::GeneralRef(r) => {
                    if r.is_char_ref() {
                        match r.resolve_char_ref().map_err(|e| self.malformed(e))? {
                            Some(c) => Step::Text(Cow::Owned(c.to_string())),
                            None => return Err(self.malformed("invalid character reference")),
                        }
                    } else {
                        let name = r.decode().map_err(|e| self.malformed(e))?;
                        let c = match name.as_ref() {
                            "amp" => "&",
                            "lt" => "<",
                            "gt" => ">",
                            "quot" => "\"",
                            "apos" => "'",
                            other => {
                                return Err(self.malformed(format!("undefined entity `&{other};`")))
                            }
                        };
                        Step::Text(Cow::Borrowed(c))
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

/// Names legacy stacks give the single string argument.
const PARAM_NAMES: &[&str] = &["param", "arg0", "args0", "in0"];

/// Parses a call to the published WebService.
pub fn parse_call(body: &[u8], content_type: Option<&str>) -> Result<SoapCall, EnvelopeError> {
    let (text, charset) = decode(body, content_type)?;
    let mut w = Walker::new(&text);
    // Root: the Envelope.
    let (root, root_empty) = loop {
        match w.next()? {
            Step::Open(s, empty) => break (s, empty),
            Step::Text(t) if t.trim().is_empty() => continue,
            Step::Text(_) => return Err(EnvelopeError::NotAnEnvelope("text".into())),
            Step::End => return Err(EnvelopeError::NotAnEnvelope("nothing".into())),
            Step::Close => return Err(w.malformed("unexpected end tag")),
        }
    };
    let root_name = local(root.name().as_ref()).to_string();
    if root_name != "Envelope" {
        return Err(EnvelopeError::NotAnEnvelope(root_name));
    }
    let mut scopes = declarations(&root);
    let version = match namespace_of(&root, &[]).as_deref() {
        Some(NS_SOAP12) => SoapVersion::V12,
        Some(NS_SOAP11) => SoapVersion::V11,
        // No or an odd namespace: legacy hand-built envelopes; trust the Content-Type.
        _ if content_type
            .is_some_and(|c| c.to_ascii_lowercase().contains("application/soap+xml")) =>
        {
            SoapVersion::V12
        }
        _ => SoapVersion::V11,
    };
    if root_empty {
        return Err(EnvelopeError::NoBody);
    }
    // Find the Body among the Envelope's children (a Header may come first).
    loop {
        match w.next()? {
            Step::Open(s, empty) => {
                if local(s.name().as_ref()) == "Body" {
                    if empty {
                        return Err(EnvelopeError::NoOperation);
                    }
                    scopes.extend(declarations(&s));
                    break;
                }
                if !empty {
                    w.skip()?;
                }
            }
            Step::Text(_) => {}
            Step::Close | Step::End => return Err(EnvelopeError::NoBody),
        }
    }
    // The operation element: the Body's first child.
    let (op, op_empty) = loop {
        match w.next()? {
            Step::Open(s, empty) => break (s, empty),
            Step::Text(_) => {}
            Step::Close | Step::End => return Err(EnvelopeError::NoOperation),
        }
    };
    let operation = local(op.name().as_ref()).to_string();
    let mut children: Vec<(String, String)> = Vec::new();
    let mut own_text = String::new();
    if !op_empty {
        loop {
            match w.next()? {
                Step::Open(s, empty) => {
                    let name = local(s.name().as_ref()).to_string();
                    let value = if empty {
                        String::new()
                    } else {
                        match w.text_until_close()? {
                            Ok(t) => t,
                            Err(()) => {
                                return Err(EnvelopeError::Malformed(format!(
                                    "`{name}` must hold text (the JSON), not elements"
                                )))
                            }
                        }
                    };
                    children.push((name, value));
                }
                Step::Text(t) => own_text.push_str(&t),
                Step::Close => break,
                Step::End => return Err(w.malformed("document ends inside the operation")),
            }
        }
    }
    let param = if let Some((_, v)) = children
        .iter()
        .find(|(n, _)| PARAM_NAMES.iter().any(|p| p.eq_ignore_ascii_case(n)))
    {
        v.clone()
    } else if children.len() == 1 {
        children.remove(0).1
    } else if children.is_empty() {
        own_text.trim().to_string()
    } else {
        return Err(EnvelopeError::AmbiguousParameter(operation));
    };
    // The rest of the Body and Envelope must close properly.
    w.skip()?; // Body
    w.skip()?; // Envelope
    w.finish()?;
    Ok(SoapCall {
        version,
        operation,
        param,
        charset,
    })
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

/// The answer to a call of the published WebService: `<return>` holds the JSON text, in the
/// style CXF answers (`ns2:` wrapper, unqualified `return`).
pub fn call_response(
    version: SoapVersion,
    namespace: &str,
    operation: &str,
    ret: &str,
    charset: Option<&str>,
) -> String {
    format!(
        "{}<soap:Envelope xmlns:soap=\"{}\"><soap:Body><ns2:{operation}Response xmlns:ns2=\"{}\"><return>{}</return></ns2:{operation}Response></soap:Body></soap:Envelope>",
        prolog(charset),
        env_ns(version),
        escape(namespace),
        escape(ret)
    )
}

/// A SOAP Fault blaming the caller (1.1 `Client`, 1.2 `Sender`).
pub fn client_fault(version: SoapVersion, reason: &str) -> String {
    let reason = escape(reason);
    match version {
        SoapVersion::V11 => format!(
            "{}<soap:Envelope xmlns:soap=\"{NS_SOAP11}\"><soap:Body><soap:Fault><faultcode>soap:Client</faultcode><faultstring>{reason}</faultstring></soap:Fault></soap:Body></soap:Envelope>",
            prolog(None)
        ),
        SoapVersion::V12 => format!(
            "{}<soap:Envelope xmlns:soap=\"{NS_SOAP12}\"><soap:Body><soap:Fault><soap:Code><soap:Value>soap:Sender</soap:Value></soap:Code><soap:Reason><soap:Text xml:lang=\"en\">{reason}</soap:Text></soap:Reason></soap:Fault></soap:Body></soap:Envelope>",
            prolog(None)
        ),
    }
}

/// What goes inside the operation element of a call to a SOAP HIS.
pub enum Payload<'a> {
    /// The JSON text in one string element named `param_name`.
    Text { param_name: &'a str, json: &'a str },
    /// Child elements already rendered (JSON mapped to XML).
    Elements(&'a str),
}

/// A request envelope for calling operation `operation` of a SOAP HIS. `args` are fixed extra
/// string arguments written before the payload (dispatcher-style services). With `qualified`
/// the children are in the service namespace (`tns:`), else unqualified (JAX-WS style).
pub fn his_request(
    version: SoapVersion,
    namespace: &str,
    operation: &str,
    args: &[(String, String)],
    payload: Payload<'_>,
    qualified: bool,
    charset: Option<&str>,
) -> String {
    let p = if qualified { "tns:" } else { "" };
    let mut inner = String::new();
    for (k, v) in args {
        inner.push_str(&format!("<{p}{k}>{}</{p}{k}>", escape(v)));
    }
    match payload {
        Payload::Text { param_name, json } => inner.push_str(&format!(
            "<{p}{param_name}>{}</{p}{param_name}>",
            escape(json)
        )),
        Payload::Elements(x) => inner.push_str(x),
    }
    format!(
        "{}<soap:Envelope xmlns:soap=\"{}\" xmlns:tns=\"{}\"><soap:Body><tns:{operation}>{inner}</tns:{operation}></soap:Body></soap:Envelope>",
        prolog(charset),
        env_ns(version),
        escape(namespace).replace('"', "&quot;"),
    )
}

/// What a SOAP HIS answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HisAnswer {
    /// The response wrapper (the Body's first child) as a standalone XML fragment, and the text
    /// of its first child (`return`, `{op}Result`, …) when that child holds only text.
    Wrapper {
        xml: String,
        first_text: Option<String>,
    },
    /// A SOAP Fault: its code and reason.
    Fault { code: String, reason: String },
}

/// Parses the answer of a SOAP HIS.
pub fn parse_his_answer(
    body: &[u8],
    content_type: Option<&str>,
) -> Result<HisAnswer, EnvelopeError> {
    let (text, _) = decode(body, content_type)?;
    let (mut w, wrapper) = open_wrapper(&text)?;
    if let Some(fault) = read_fault(&mut w, &wrapper)? {
        return Ok(fault);
    }
    let mut first_text = None;
    if !wrapper.empty {
        let mut seen_child = false;
        loop {
            match w.next()? {
                Step::Open(_, child_empty) => {
                    if !seen_child {
                        seen_child = true;
                        first_text = if child_empty {
                            Some(String::new())
                        } else {
                            w.text_until_close()?.ok()
                        };
                    } else if !child_empty {
                        w.skip()?;
                    }
                }
                Step::Text(_) => {}
                Step::Close => break,
                Step::End => return Err(w.malformed("document ends inside the answer")),
            }
        }
    }
    let to = w.reader.buffer_position() as usize;
    let xml = text
        .get(wrapper.from..to)
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    w.skip()?; // Body
    w.skip()?; // Envelope
    w.finish()?;
    Ok(HisAnswer::Wrapper { xml, first_text })
}

/// What a SOAP HIS answered, with the wrapper's children read as JSON (`param = "xml"`).
#[derive(Debug, Clone, PartialEq)]
pub enum HisJsonAnswer {
    /// The wrapper's children as a JSON object, or why they cannot be one (the envelope around
    /// them is well formed up to the wrapper either way).
    Wrapper(Result<serde_json::Value, xmljson::XmlJsonError>),
    /// A SOAP Fault: its code and reason.
    Fault { code: String, reason: String },
}

/// `parse_his_answer` followed by `xmljson::xml_to_json` of the wrapper, in one pass: the
/// wrapper is read into JSON where it stands, and only the envelope's end is checked after it
/// (instead of walking the wrapper once to cut it out and parsing the cut-out copy again).
pub fn parse_his_answer_json(
    body: &[u8],
    content_type: Option<&str>,
    arrays: &xmljson::ArrayHints,
) -> Result<HisJsonAnswer, EnvelopeError> {
    let (text, _) = decode(body, content_type)?;
    let (mut w, wrapper) = open_wrapper(&text)?;
    if let Some(HisAnswer::Fault { code, reason }) = read_fault(&mut w, &wrapper)? {
        return Ok(HisJsonAnswer::Fault { code, reason });
    }
    let rest = text.get(wrapper.from..).unwrap_or_default();
    let (value, len) = match xmljson::element_to_json(rest, arrays) {
        Ok(x) => x,
        Err(e) => return Ok(HisJsonAnswer::Wrapper(Err(e))),
    };
    // After the wrapper, as `parse_his_answer` reads it: anything well formed up to the Body's
    // and the Envelope's end tags, then nothing but whitespace, comments and processing
    // instructions.
    let tail = rest.get(len..).unwrap_or_default();
    let mut r = Reader::from_str(tail);
    // The Body and Envelope were opened before `tail`: their end tags are unmatched here.
    r.config_mut().allow_unmatched_ends = true;
    let mut closes = ["Body", "Envelope"].into_iter();
    let mut open = 0usize;
    let mut closed_all = false;
    loop {
        let ev = r
            .read_event()
            .map_err(|e| EnvelopeError::Malformed(format!("{e} after the answer")))?;
        match ev {
            Event::DocType(_) => return Err(EnvelopeError::Doctype),
            Event::Eof if closed_all => break,
            Event::Eof => {
                return Err(EnvelopeError::Malformed(
                    "document ends inside the envelope".into(),
                ))
            }
            Event::Comment(_) | Event::PI(_) => {}
            Event::Text(t) if closed_all && t.iter().all(u8::is_ascii_whitespace) => {}
            _ if closed_all => {
                return Err(EnvelopeError::Malformed(
                    "content after the envelope".into(),
                ))
            }
            Event::Start(_) => {
                open += 1;
                if open + 2 > MAX_DEPTH {
                    return Err(EnvelopeError::TooDeep);
                }
            }
            Event::End(_) if open > 0 => open -= 1,
            Event::End(e) => {
                let name = e.name();
                if closes.next() != Some(local(name.as_ref())) {
                    return Err(EnvelopeError::Malformed(
                        "unexpected end tag after the answer".into(),
                    ));
                }
                closed_all = closes.len() == 0;
            }
            Event::GeneralRef(_) | Event::Decl(_) if open == 0 => {
                return Err(EnvelopeError::Malformed(
                    "unexpected content after the answer".into(),
                ))
            }
            _ => {}
        }
    }
    Ok(HisJsonAnswer::Wrapper(Ok(value)))
}

/// The Body's first child, just read.
struct Wrapper<'a> {
    start: BytesStart<'a>,
    empty: bool,
    /// Where its start tag begins in the text.
    from: usize,
}

/// Reads up to the Body's first child: the Envelope root, any Header, the Body.
fn open_wrapper(text: &str) -> Result<(Walker<'_>, Wrapper<'_>), EnvelopeError> {
    let mut w = Walker::new(text);
    let root = loop {
        match w.next()? {
            Step::Open(s, _) => break s,
            Step::Text(t) if t.trim().is_empty() => continue,
            _ => return Err(EnvelopeError::NotAnEnvelope("not XML".into())),
        }
    };
    let root_name = local(root.name().as_ref()).to_string();
    if root_name != "Envelope" {
        return Err(EnvelopeError::NotAnEnvelope(root_name));
    }
    loop {
        match w.next()? {
            Step::Open(s, empty) => {
                if local(s.name().as_ref()) == "Body" && !empty {
                    break;
                }
                if !empty {
                    w.skip()?;
                }
            }
            Step::Text(_) => {}
            _ => return Err(EnvelopeError::NoBody),
        }
    }
    let wrapper = loop {
        let before = w.reader.buffer_position();
        match w.next()? {
            Step::Open(start, empty) => {
                break Wrapper {
                    start,
                    empty,
                    from: before as usize,
                }
            }
            Step::Text(_) => {}
            _ => return Err(EnvelopeError::NoOperation),
        }
    };
    Ok((w, wrapper))
}

/// The Fault, when the wrapper is one.
fn read_fault(
    w: &mut Walker<'_>,
    wrapper: &Wrapper<'_>,
) -> Result<Option<HisAnswer>, EnvelopeError> {
    if local(wrapper.start.name().as_ref()) != "Fault" {
        return Ok(None);
    }
    let mut code = String::new();
    let mut reason = String::new();
    if !wrapper.empty {
        collect_fault(w, &mut code, &mut reason)?;
    }
    Ok(Some(HisAnswer::Fault {
        code: code.trim().to_string(),
        reason: reason.trim().to_string(),
    }))
}

/// Reads a Fault's code (1.1 `faultcode`, 1.2 `Code/Value`) and reason (`faultstring`,
/// `Reason/Text`).
fn collect_fault(
    w: &mut Walker<'_>,
    code: &mut String,
    reason: &mut String,
) -> Result<(), EnvelopeError> {
    let mut level = 0usize;
    let mut current = String::new();
    loop {
        match w.next()? {
            Step::Open(s, empty) => {
                if !empty {
                    level += 1;
                    current = local(s.name().as_ref()).to_string();
                }
            }
            Step::Text(t) => match current.as_str() {
                "faultcode" | "Value" if code.is_empty() => code.push_str(&t),
                "faultstring" | "Text" => reason.push_str(&t),
                _ => {}
            },
            Step::Close => {
                if level == 0 {
                    return Ok(());
                }
                level -= 1;
                current.clear();
            }
            Step::End => return Err(w.malformed("document ends inside the fault")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CXF: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><ns2:getPatientInfo xmlns:ns2="http://webservice.prefront/"><param>{"medicalCardNumber":"001"}</param></ns2:getPatientInfo></soap:Body></soap:Envelope>"#;

    #[test]
    fn cxf_style_call() {
        let c = parse_call(CXF.as_bytes(), Some("text/xml; charset=UTF-8")).expect("parses");
        assert_eq!(c.version, SoapVersion::V11);
        assert_eq!(c.operation, "getPatientInfo");
        assert_eq!(c.param, r#"{"medicalCardNumber":"001"}"#);
        assert_eq!(c.charset, None);
    }

    #[test]
    fn legacy_shapes_are_accepted() {
        let cases = [
            // .NET: default namespace, qualified param, xsi declarations, a Header first.
            r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Header><x:Auth xmlns:x="urn:x"><x:u>a</x:u></x:Auth></soap:Header><soap:Body><genCard xmlns="http://webservice.prefront/"><param>{"a":"1&amp;2"}</param></genCard></soap:Body></soap:Envelope>"#,
            // Axis 1: in0, SOAP-ENV prefix, xsi:type.
            r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><SOAP-ENV:Body><m:genCard xmlns:m="urn:any"><in0 xsi:type="xsd:string">{"a":"1&amp;2"}</in0></m:genCard></SOAP-ENV:Body></SOAP-ENV:Envelope>"#,
            // CDATA, arg0.
            r#"<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body><ns2:genCard xmlns:ns2="x"><arg0><![CDATA[{"a":"1&2"}]]></arg0></ns2:genCard></S:Body></S:Envelope>"#,
            // A lone child of any name.
            r#"<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body><genCard><json>{"a":"1&amp;2"}</json></genCard></e:Body></e:Envelope>"#,
        ];
        for (i, c) in cases.iter().enumerate() {
            let call = parse_call(c.as_bytes(), None).unwrap_or_else(|e| panic!("case {i}: {e}"));
            assert_eq!(call.operation, "genCard", "case {i}");
            assert_eq!(call.param, r#"{"a":"1&2"}"#, "case {i}");
        }
    }

    #[test]
    fn soap12_gbk_and_bom() {
        let env = r#"<?xml version="1.0" encoding="GBK"?><env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Body><genCard><param>{"name":"张三"}</param></genCard></env:Body></env:Envelope>"#;
        let (gbk, _, _) = encoding_rs::GBK.encode(env);
        let c = parse_call(&gbk, Some("application/soap+xml")).expect("parses");
        assert_eq!(c.version, SoapVersion::V12);
        assert_eq!(c.param, r#"{"name":"张三"}"#);
        assert_eq!(c.charset.as_deref(), Some("GBK"));
        let mut bom = b"\xEF\xBB\xBF".to_vec();
        bom.extend_from_slice(CXF.as_bytes());
        assert!(parse_call(&bom, None).is_ok());
    }

    #[test]
    fn hostile_and_broken_input_is_refused() {
        let laughs = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><a><param>&lol2;</param></a></soap:Body></soap:Envelope>"#;
        assert_eq!(
            parse_call(laughs.as_bytes(), None),
            Err(EnvelopeError::Doctype)
        );
        let undefined = CXF.replace("001", "&xxe;");
        assert!(matches!(
            parse_call(undefined.as_bytes(), None),
            Err(EnvelopeError::Malformed(_))
        ));
        let deep = format!(
            "<soap:Envelope xmlns:soap=\"{NS_SOAP11}\"><soap:Body><op><param>{}x{}</param></op></soap:Body></soap:Envelope>",
            "<a>".repeat(10_000),
            "</a>".repeat(10_000)
        );
        assert_eq!(
            parse_call(deep.as_bytes(), None),
            Err(EnvelopeError::TooDeep)
        );
        assert!(matches!(
            parse_call(&CXF.as_bytes()[..CXF.len() - 20], None),
            Err(EnvelopeError::Malformed(_))
        ));
        assert!(matches!(
            parse_call(b"<html><body>hi</body></html>", None),
            Err(EnvelopeError::NotAnEnvelope(_))
        ));
        assert!(matches!(
            parse_call(b"{\"json\":1}", None),
            Err(EnvelopeError::NotAnEnvelope(_))
        ));
        assert!(parse_call(b"\xff\xfe<x/>", None).is_err());
        let two = CXF
            .replace("<param>", "<a>1</a><b>2</b><c>")
            .replace("</param>", "</c>");
        assert_eq!(
            parse_call(two.as_bytes(), None),
            Err(EnvelopeError::AmbiguousParameter("getPatientInfo".into()))
        );
        let trailing = format!("{CXF}<extra/>");
        assert!(parse_call(trailing.as_bytes(), None).is_err());
    }

    #[test]
    fn answers_round_trip_through_the_parser() {
        let json = r#"{"success":true,"msg":"<成功> & done","code":"10001","data":null}"#;
        for v in [SoapVersion::V11, SoapVersion::V12] {
            let resp = call_response(v, "http://webservice.prefront/", "genCard", json, None);
            match parse_his_answer(resp.as_bytes(), None).expect("parses") {
                HisAnswer::Wrapper { first_text, xml } => {
                    assert_eq!(first_text.as_deref(), Some(json));
                    assert!(xml.starts_with("<ns2:genCardResponse"), "{xml}");
                    assert!(xml.ends_with("</ns2:genCardResponse>"), "{xml}");
                }
                other => panic!("{other:?}"),
            }
            let fault = client_fault(v, "unknown operation `x`");
            match parse_his_answer(fault.as_bytes(), None).expect("parses") {
                HisAnswer::Fault { code, reason } => {
                    assert!(
                        code.ends_with("Client") || code.ends_with("Sender"),
                        "{code}"
                    );
                    assert_eq!(reason, "unknown operation `x`");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    /// The one-pass reader of `param = "xml"` answers gives what cutting the wrapper out and
    /// converting it gave, and refuses what the two-pass reader refused.
    #[test]
    fn xml_answers_read_in_one_pass_match_the_two_pass_reading() {
        let hints = xmljson::ArrayHints::new(["list"]);
        let env = |head: &str, wrapper: &str, tail: &str| {
            format!(
                r#"<?xml version="1.0"?>{head}<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header><h:x xmlns:h="urn:h">1</h:x></s:Header><s:Body>{wrapper}</s:Body></s:Envelope>{tail}"#
            )
        };
        let good = [
            env(
                "",
                r#"<ns:qResponse xmlns:ns="urn:q"><code>0</code><list><id>1</id></list><note><![CDATA[</ns:qResponse></s:Body>]]></note></ns:qResponse>"#,
                "",
            ),
            env(
                "<!-- before -->",
                r#"<ns:qResponse xmlns:ns="urn:q"/>"#,
                "\n<!-- after --><?pi x?>\n",
            ),
            env(
                "",
                "\n  <qResponse><a>x &amp; y</a><a>2</a></qResponse>\n  ",
                "",
            ),
            // Further Body children are skipped, as they always were.
            env(
                "",
                r#"<qResponse><a>1</a></qResponse><second><x>t</x></second><third/>"#,
                "",
            ),
        ];
        for text in &good {
            let two_pass = match parse_his_answer(text.as_bytes(), None).expect("parses") {
                HisAnswer::Wrapper { xml, .. } => {
                    xmljson::xml_to_json(xml.as_bytes(), &hints).expect("converts")
                }
                other => panic!("{other:?}"),
            };
            match parse_his_answer_json(text.as_bytes(), None, &hints).expect("parses") {
                HisJsonAnswer::Wrapper(Ok(v)) => assert_eq!(v, two_pass, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        let w = r#"<ns:qResponse xmlns:ns="urn:q"><code>0</code></ns:qResponse>"#;
        let bad = [
            env("", w, "<more/>"),
            env("", w, "text"),
            env("", w, "").replace("</s:Envelope>", ""),
            env("", &format!("{w}<second><a></b></second>"), ""),
            env("", w, "").replace("</s:Body>", "</s:Other>"),
            env("", w, "").replace("</s:Body></s:Envelope>", "</s:Envelope></s:Body>"),
        ];
        for text in &bad {
            assert!(
                parse_his_answer(text.as_bytes(), None).is_err(),
                "the two-pass reader refuses {text}"
            );
            assert!(
                parse_his_answer_json(text.as_bytes(), None, &hints).is_err(),
                "the one-pass reader refuses {text}"
            );
        }
        let broken = env(
            "",
            r#"<ns:qResponse xmlns:ns="urn:q"><a></b></ns:qResponse>"#,
            "",
        );
        assert!(matches!(
            parse_his_answer_json(broken.as_bytes(), None, &hints),
            Ok(HisJsonAnswer::Wrapper(Err(_))) | Err(_)
        ));
        let fault = client_fault(SoapVersion::V12, "no such patient");
        match parse_his_answer_json(fault.as_bytes(), None, &hints).expect("parses") {
            HisJsonAnswer::Fault { reason, .. } => assert_eq!(reason, "no such patient"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn his_request_is_a_valid_call() {
        let req = his_request(
            SoapVersion::V11,
            "http://tempuri.org/",
            "Call",
            &[("FuncCode".into(), "createCard".into())],
            Payload::Text {
                param_name: "xml",
                json: "{\"a\":\"<&>\"}",
            },
            true,
            None,
        );
        // The HIS side parses it like any other call (two children: the named one is not in
        // PARAM_NAMES, so this one is ambiguous by design; check the structure instead).
        assert!(req.contains("<tns:FuncCode>createCard</tns:FuncCode><tns:xml>{\"a\":\"&lt;&amp;&gt;\"}</tns:xml>"), "{req}");
        let single = his_request(
            SoapVersion::V12,
            "urn:h",
            "createCard",
            &[],
            Payload::Text {
                param_name: "param",
                json: "{}",
            },
            false,
            None,
        );
        let call = parse_call(single.as_bytes(), None).expect("parses");
        assert_eq!(
            (call.version, call.operation.as_str(), call.param.as_str()),
            (SoapVersion::V12, "createCard", "{}")
        );
    }
}
