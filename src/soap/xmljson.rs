//! JSON ⇄ XML element mapping for SOAP routes with `param = "xml"`. Pure, no I/O.
//!
//! Some HIS WebServices want an interface's fields as XML child elements rather than the JSON
//! text in one string parameter, and answer with elements too. The contract (DESIGN.md §7, item
//! 7) is that the mapping never silently changes data, so the XML → JSON direction does not
//! guess: every scalar comes back as a JSON string, and which paths are arrays comes from
//! [`ArrayHints`], never from counting one occurrence.
//!
//! JSON → XML ([`json_to_xml`]):
//! - object → child elements in key order; keys are trimmed and must then be XML names (NCName:
//!   no colon), else [`XmlJsonError::BadName`]; two keys equal after trimming are refused;
//! - array → the element repeated once per item; an empty array writes nothing; an array
//!   directly inside an array → an element named like the outer key holding the inner items;
//! - string → escaped text, exactly (whitespace kept; `\r` written as `&#13;` so no XML parser
//!   normalises it away); characters XML 1.0 cannot carry (controls other than tab/LF/CR,
//!   U+FFFE, U+FFFF) are refused with [`XmlJsonError::BadChar`], never dropped;
//! - number / bool → their JSON text (`12.50` in JSON is already the number 12.5: send strings);
//! - null → an empty element `<k/>` (no `xsi:nil`); an empty object → `<k/>` as well;
//! - elements take the optional namespace `prefix`; declaring it is the caller's job.
//!
//! XML → JSON ([`xml_to_json`]): the children of the root element become one JSON object:
//! - key = element local name (prefix and namespace dropped); attributes are ignored, except
//!   `xsi:nil="true"` on an element without content → null;
//! - an element without child elements → a string with its exact text (entities, character
//!   references and CDATA resolved; line ends normalised to `\n` as XML requires); an empty
//!   element → `""`;
//! - an element with child elements → an object; whitespace-only text between them is dropped,
//!   other text goes (trimmed) under the key `"#text"`;
//! - repeated siblings → an array, always (keys keep the order of first occurrence); a single
//!   occurrence → an array only when its dotted path is hinted. A hinted path that does not
//!   occur at all stays absent: nothing in the XML says it was an empty array rather than
//!   missing;
//! - any DOCTYPE is refused (no entity expansion, no external entities), input is capped at
//!   [`MAX_INPUT_BYTES`] and nesting at [`MAX_DEPTH`] levels below the root.
//!
//! Round trip: a JSON object whose scalars are strings, whose arrays are non-empty and hinted,
//! and whose nested objects are non-empty comes back equal, key order included.

use std::collections::{HashMap, HashSet};

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;
use serde_json::{Map, Value};

/// Levels of elements below the root (or below the caller's wrapper when writing). Real HIS
/// answers are a handful deep; the cap bounds recursion and the work a hostile document can ask.
pub const MAX_DEPTH: usize = 64;
/// Largest XML answer read: a business answer is kilobytes; images and reports never come
/// through this mapping.
pub const MAX_INPUT_BYTES: usize = 8 * 1024 * 1024;

const XSI_NAMESPACE: &[u8] = b"http://www.w3.org/2001/XMLSchema-instance";
/// Key under which an element's own text goes when it also has child elements.
const TEXT_KEY: &str = "#text";
/// Names and parser messages are cut to this many characters in error messages.
const SHOWN: usize = 80;

/// Why a value or a document could not be mapped. Messages name the problem and where, never
/// the content (patient data must not reach a log line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlJsonError {
    #[error("malformed XML at byte {position}: {reason}")]
    Malformed { position: u64, reason: String },
    #[error("XML is not valid UTF-8 (at byte {0})")]
    InvalidUtf8(usize),
    #[error("DOCTYPE declarations are not accepted")]
    DoctypeRefused,
    #[error("nested deeper than {0} levels")]
    TooDeep(usize),
    #[error("XML of {size} bytes is larger than the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("`{0}` is not a valid XML element name")]
    BadName(String),
    #[error("two keys are both `{0}` once trimmed")]
    DuplicateName(String),
    #[error("character U+{code:04X} under `{path}` cannot be written in XML 1.0")]
    BadChar { path: String, code: u32 },
    #[error("expected a JSON object, got {0}")]
    NotAnObject(&'static str),
}

/// Dotted paths (arrays transparent, as in the spec: "data", "data.detail", "patientList") whose
/// elements are JSON arrays even when they occur once. A hinted path that does not occur at all
/// is left absent, not turned into an empty array.
#[derive(Debug, Clone, Default)]
pub struct ArrayHints {
    /// Trimmed paths; looked up once per child key of every element read.
    paths: HashSet<String>,
}

impl ArrayHints {
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(paths: I) -> Self {
        let paths = paths
            .into_iter()
            .map(|p| p.as_ref().trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect();
        Self { paths }
    }

    pub fn is_array(&self, path: &str) -> bool {
        self.paths.contains(path)
    }
}

// ---------------------------------------------------------------------------------------------
// JSON → XML

/// Writes the members of a JSON object as XML child elements into `out` (no wrapper element),
/// following the rules in the module documentation. `prefix`: namespace prefix for every
/// element (None = unqualified). On error `out` is left as it was.
pub fn json_to_xml(
    value: &Value,
    prefix: Option<&str>,
    out: &mut String,
) -> Result<(), XmlJsonError> {
    let Value::Object(members) = value else {
        return Err(XmlJsonError::NotAnObject(kind(value)));
    };
    if let Some(p) = prefix {
        if !is_ncname(p) || p == "xmlns" {
            return Err(XmlJsonError::BadName(shorten(p)));
        }
    }
    let mut w = XmlWriter {
        prefix,
        buf: String::new(),
        path: Vec::new(),
    };
    w.members(members, 1)?;
    out.push_str(&w.buf);
    Ok(())
}

struct XmlWriter<'a> {
    prefix: Option<&'a str>,
    /// Written here first so a failure half-way leaves the caller's buffer untouched.
    buf: String,
    /// Element names from the top, for error messages.
    path: Vec<&'a str>,
}

impl<'a> XmlWriter<'a> {
    fn members(&mut self, members: &'a Map<String, Value>, depth: usize) -> Result<(), XmlJsonError> {
        let mut seen = HashSet::with_capacity(members.len());
        for (key, value) in members {
            let name = key.trim();
            if !is_ncname(name) {
                return Err(XmlJsonError::BadName(shorten(key)));
            }
            if !seen.insert(name) {
                return Err(XmlJsonError::DuplicateName(shorten(name)));
            }
            self.path.push(name);
            self.member(name, value, depth)?;
            self.path.pop();
        }
        Ok(())
    }

    /// Writes `value` as element(s) named `name` at element depth `depth`.
    fn member(&mut self, name: &str, value: &'a Value, depth: usize) -> Result<(), XmlJsonError> {
        if depth > MAX_DEPTH {
            return Err(XmlJsonError::TooDeep(MAX_DEPTH));
        }
        match value {
            Value::Array(items) => {
                for item in items {
                    if let Value::Array(_) = item {
                        self.open(name);
                        self.member(name, item, depth + 1)?;
                        self.close(name);
                    } else {
                        self.member(name, item, depth)?;
                    }
                }
            }
            Value::Object(members) if !members.is_empty() => {
                self.open(name);
                self.members(members, depth + 1)?;
                self.close(name);
            }
            Value::Object(_) | Value::Null => {
                self.buf.push('<');
                self.qname(name);
                self.buf.push_str("/>");
            }
            Value::String(s) => {
                self.open(name);
                self.text(s)?;
                self.close(name);
            }
            Value::Number(n) => {
                self.open(name);
                self.buf.push_str(&n.to_string());
                self.close(name);
            }
            Value::Bool(b) => {
                self.open(name);
                self.buf.push_str(if *b { "true" } else { "false" });
                self.close(name);
            }
        }
        Ok(())
    }

    fn qname(&mut self, name: &str) {
        if let Some(p) = self.prefix {
            self.buf.push_str(p);
            self.buf.push(':');
        }
        self.buf.push_str(name);
    }

    fn open(&mut self, name: &str) {
        self.buf.push('<');
        self.qname(name);
        self.buf.push('>');
    }

    fn close(&mut self, name: &str) {
        self.buf.push_str("</");
        self.qname(name);
        self.buf.push('>');
    }

    fn text(&mut self, s: &str) -> Result<(), XmlJsonError> {
        for c in s.chars() {
            match c {
                '<' => self.buf.push_str("&lt;"),
                '>' => self.buf.push_str("&gt;"),
                '&' => self.buf.push_str("&amp;"),
                // A literal CR would reach the reader as LF (XML end-of-line handling).
                '\r' => self.buf.push_str("&#13;"),
                '\t' | '\n' => self.buf.push(c),
                c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {
                    return Err(XmlJsonError::BadChar {
                        path: shorten(&self.path.join(".")),
                        code: c as u32,
                    });
                }
                c => self.buf.push(c),
            }
        }
        Ok(())
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// XML 1.0 (5th ed.) `Name` without `:` — what may follow a prefix.
fn is_ncname(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if is_name_start(c) => chars.all(is_name_char),
        _ => false,
    }
}

fn is_name_start(c: char) -> bool {
    matches!(c,
        'A'..='Z' | '_' | 'a'..='z'
        | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}' | '\u{F8}'..='\u{2FF}'
        | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}' | '\u{200C}'..='\u{200D}'
        | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}' | '\u{3001}'..='\u{D7FF}'
        | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}' | '\u{10000}'..='\u{EFFFF}')
}

fn is_name_char(c: char) -> bool {
    is_name_start(c)
        || matches!(c,
            '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

/// At most [`SHOWN`] characters of `s`, for an error message.
fn shorten(s: &str) -> String {
    match s.char_indices().nth(SHOWN) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// XML → JSON

/// Reads the children of the root element of `xml` (a complete element, e.g. the SOAP response
/// wrapper cut out of an envelope, namespace declarations and all) into a JSON object, following
/// the rules in the module documentation. Input is UTF-8 (the caller decodes charsets first); a
/// UTF-8 BOM is skipped. Never panics; hostile input is an error.
pub fn xml_to_json(xml: &[u8], arrays: &ArrayHints) -> Result<Value, XmlJsonError> {
    if xml.len() > MAX_INPUT_BYTES {
        return Err(XmlJsonError::TooLarge {
            size: xml.len(),
            limit: MAX_INPUT_BYTES,
        });
    }
    let text = std::str::from_utf8(xml).map_err(|e| XmlJsonError::InvalidUtf8(e.valid_up_to()))?;
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let mut reader = NsReader::from_str(text);
    {
        // The defaults today; spelled out because the checks are part of the contract.
        let config = reader.config_mut();
        config.trim_text(false);
        config.check_end_names = true;
        config.allow_unmatched_ends = false;
        config.allow_dangling_amp = false;
        config.expand_empty_elements = false;
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Map<String, Value>> = None;
    loop {
        let event = match reader.read_event() {
            Ok(event) => event,
            Err(e) => return Err(malformed(reader.error_position(), e)),
        };
        match event {
            Event::DocType(_) => return Err(XmlJsonError::DoctypeRefused),
            Event::Start(start) => {
                let frame = open(&reader, &start, &stack, root.is_some())?;
                stack.push(frame);
            }
            Event::Empty(start) => {
                let frame = open(&reader, &start, &stack, root.is_some())?;
                finish(frame, &mut stack, &mut root, arrays);
            }
            Event::End(_) => match stack.pop() {
                Some(frame) => finish(frame, &mut stack, &mut root, arrays),
                None => {
                    return Err(malformed(reader.buffer_position(), "unmatched end tag"));
                }
            },
            Event::Text(t) => {
                let s = t
                    .xml10_content()
                    .map_err(|e| malformed(reader.buffer_position(), e))?;
                push_text(&mut stack, &s, reader.buffer_position())?;
            }
            Event::CData(c) => {
                let s = c
                    .xml10_content()
                    .map_err(|e| malformed(reader.buffer_position(), e))?;
                push_text(&mut stack, &s, reader.buffer_position())?;
            }
            Event::GeneralRef(r) => {
                let at = reader.buffer_position();
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => {
                        let name = r.decode().map_err(|e| malformed(at, e))?;
                        match quick_xml::escape::resolve_xml_entity(&name) {
                            Some(s) => s.to_owned(),
                            None => {
                                let reason = format!("undefined entity `&{};`", shorten(&name));
                                return Err(malformed(at, reason));
                            }
                        }
                    }
                    Err(e) => return Err(malformed(at, e)),
                };
                if stack.is_empty() {
                    return Err(malformed(at, "reference outside the root element"));
                }
                push_text(&mut stack, &resolved, at)?;
            }
            Event::Comment(_) | Event::PI(_) | Event::Decl(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        let reason = format!("input ends with {} element(s) not closed", stack.len());
        return Err(malformed(reader.buffer_position(), reason));
    }
    match root {
        Some(members) => Ok(Value::Object(members)),
        None => Err(malformed(reader.buffer_position(), "no root element")),
    }
}

/// An element being read.
struct Frame {
    /// Local name: the key in the parent object.
    name: String,
    /// Dotted path of this element below the root ("" for the root itself), for the hints.
    path: String,
    /// `xsi:nil="true"` was present.
    nil: bool,
    /// All character data directly inside, in order.
    text: String,
    /// Child values grouped by key, in order of first occurrence.
    children: Vec<(String, Vec<Value>)>,
    /// Key → index in `children`.
    index: HashMap<String, usize>,
}

fn malformed(position: u64, reason: impl std::fmt::Display) -> XmlJsonError {
    XmlJsonError::Malformed {
        position,
        reason: shorten(&reason.to_string()),
    }
}

fn open<R>(
    reader: &NsReader<R>,
    start: &BytesStart<'_>,
    stack: &[Frame],
    root_done: bool,
) -> Result<Frame, XmlJsonError> {
    let at = reader.buffer_position();
    if root_done {
        return Err(malformed(at, "content after the root element"));
    }
    if stack.len() > MAX_DEPTH {
        return Err(XmlJsonError::TooDeep(MAX_DEPTH));
    }
    let name = std::str::from_utf8(start.local_name().into_inner())
        .map_err(|e| malformed(at, e))?
        .to_owned();
    if name.is_empty() {
        return Err(malformed(at, "element without a local name"));
    }
    let mut nil = false;
    for attr in start.attributes() {
        let attr = attr.map_err(|e| malformed(at, e))?;
        let (ns, local) = reader.resolve_attribute(attr.key);
        if local.as_ref() != b"nil" {
            continue;
        }
        // A wrapper cut out of an envelope loses the envelope's `xmlns:xsi`: an undeclared
        // prefix on `nil` is taken to be `xsi`.
        let is_xsi = match ns {
            ResolveResult::Bound(ns) => ns.as_ref() == XSI_NAMESPACE,
            ResolveResult::Unknown(_) => true,
            ResolveResult::Unbound => false,
        };
        let value = attr.value.as_ref();
        let value = value.trim_ascii();
        if is_xsi && (value == b"true" || value == b"1") {
            nil = true;
        }
    }
    let path = match stack.last() {
        None => String::new(),
        Some(parent) if parent.path.is_empty() => name.clone(),
        Some(parent) => format!("{}.{}", parent.path, name),
    };
    Ok(Frame {
        name,
        path,
        nil,
        text: String::new(),
        children: Vec::new(),
        index: HashMap::new(),
    })
}

fn push_text(stack: &mut [Frame], s: &str, at: u64) -> Result<(), XmlJsonError> {
    match stack.last_mut() {
        Some(frame) => frame.text.push_str(s),
        None if s.chars().all(is_xml_space) => {}
        None => return Err(malformed(at, "text outside the root element")),
    }
    Ok(())
}

fn is_xml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// Turns a closed element into its value and hands it to its parent (or makes it the result).
fn finish(
    frame: Frame,
    stack: &mut [Frame],
    root: &mut Option<Map<String, Value>>,
    arrays: &ArrayHints,
) {
    let Frame {
        name,
        path,
        nil,
        text,
        children,
        ..
    } = frame;
    let mut members = Map::new();
    for (key, mut values) in children {
        let child_path = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        let value = match values.len() {
            1 if !arrays.is_array(&child_path) => values.pop().unwrap_or(Value::Null),
            _ => Value::Array(values),
        };
        members.insert(key, value);
    }
    let Some(parent) = stack.last_mut() else {
        let own = text.trim_matches(is_xml_space);
        if !own.is_empty() {
            members.insert(TEXT_KEY.to_owned(), Value::String(own.to_owned()));
        }
        *root = Some(members);
        return;
    };
    let value = if members.is_empty() {
        if nil && text.is_empty() {
            Value::Null
        } else {
            Value::String(text)
        }
    } else {
        let own = text.trim_matches(is_xml_space);
        if !own.is_empty() {
            members.insert(TEXT_KEY.to_owned(), Value::String(own.to_owned()));
        }
        Value::Object(members)
    };
    match parent.index.get(&name) {
        Some(&i) => parent.children[i].1.push(value),
        None => {
            parent.index.insert(name.clone(), parent.children.len());
            parent.children.push((name, vec![value]));
        }
    }
}
