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
//!   directly inside an array → an element named like the outer key holding the inner items
//!   (`{"m":[["1"]]}` → `<m><m>1</m></m>`, which reads back as `{"m":[{"m":["1"]}]}` with both
//!   paths hinted: XML cannot tell the two apart, and the spec has no nested arrays);
//! - string → escaped text, exactly (whitespace kept; `\r` written as `&#13;` so no XML parser
//!   normalises it away); characters XML 1.0 cannot carry (controls other than tab/LF/CR,
//!   U+FFFE, U+FFFF) are refused with [`XmlJsonError::BadChar`], never dropped;
//! - number / bool → their JSON text as serde_json prints it (`12.50` or `1E2` in JSON are
//!   already the numbers 12.5 and 100.0: digits that matter travel as strings, as in the spec);
//! - null → an empty element `<k/>` (no `xsi:nil`); an empty object → `<k/>` as well;
//! - elements take the optional namespace `prefix`; declaring it is the caller's job.
//!
//! XML → JSON ([`xml_to_json`]): the children of the root element become one JSON object:
//! - key = element local name (prefix and namespace dropped); attributes are ignored, except
//!   `xsi:nil="true"` (or `"1"`) on an element without content → null (any prefix: namespaces
//!   are not resolved, a wrapper cut out of an envelope has usually lost `xmlns:xsi`);
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
//! Round trip: a JSON object whose scalars are strings, whose keys carry no surrounding
//! whitespace, whose arrays are non-empty, hinted and not directly nested, and whose nested
//! objects are non-empty comes back equal, key order included (serde_json's `preserve_order`).

use std::collections::{HashMap, HashSet};

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use serde_json::{Map, Value};

/// Levels of elements below the root (or below the caller's wrapper when writing). Real HIS
/// answers are a handful deep; the cap bounds recursion and the work a hostile document can ask.
pub const MAX_DEPTH: usize = 64;
/// Largest XML answer read: a business answer is kilobytes; images and reports never come
/// through this mapping.
pub const MAX_INPUT_BYTES: usize = 8 * 1024 * 1024;

/// Attributes allowed on one element: real answers carry a namespace declaration or two, and
/// the parser's duplicate-attribute check costs the square of this.
pub const MAX_ATTRIBUTES: usize = 64;
/// Key under which an element's own text goes when it also has child elements.
const TEXT_KEY: &str = "#text";
/// Names and parser messages are cut to this many characters in error messages.
const SHOWN: usize = 120;

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
    /// The paths as a tree of segments, `nodes[0]` its root. Reading follows it one element at a
    /// time instead of building path strings, whose cost a hostile document could make
    /// quadratic (long names, deep nesting, many leaves).
    nodes: Vec<HintNode>,
}

#[derive(Debug, Clone, Default)]
struct HintNode {
    children: HashMap<String, usize>,
    /// This path itself was hinted (and not only a longer one through it).
    array: bool,
}

const HINT_ROOT: usize = 0;

impl ArrayHints {
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(paths: I) -> Self {
        let mut nodes = vec![HintNode::default()];
        for path in paths {
            let path = path.as_ref().trim();
            if path.is_empty() {
                continue;
            }
            let mut at = HINT_ROOT;
            for segment in path.split('.') {
                let segment = segment.trim();
                at = match nodes[at].children.get(segment) {
                    Some(&next) => next,
                    None => {
                        let next = nodes.len();
                        nodes[at].children.insert(segment.to_owned(), next);
                        nodes.push(HintNode::default());
                        next
                    }
                };
            }
            nodes[at].array = true;
        }
        Self { nodes }
    }

    pub fn is_array(&self, path: &str) -> bool {
        self.is_array_node(self.step(Some(HINT_ROOT), path))
    }

    /// The node of `key` below `from` (a key holding dots takes several steps, so the dotted
    /// notation means the same whether a dot separates keys or sits inside one).
    fn step(&self, from: Option<usize>, key: &str) -> Option<usize> {
        key.split('.').try_fold(from?, |at, segment| {
            self.nodes.get(at)?.children.get(segment).copied()
        })
    }

    fn is_array_node(&self, node: Option<usize>) -> bool {
        node.and_then(|n| self.nodes.get(n))
            .is_some_and(|n| n.array)
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
        if !is_ncname(p) || p == "xml" || p == "xmlns" {
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

/// Longest JSON key written as an XML element name.
pub const MAX_NAME_LEN: usize = 48;

/// Largest XML `json_to_xml` writes (a SOAP request to the HIS).
pub const MAX_XML_OUT: usize = 16 << 20;

struct XmlWriter<'a> {
    prefix: Option<&'a str>,
    /// Written here first so a failure half-way leaves the caller's buffer untouched.
    buf: String,
    /// Element names from the top, for error messages.
    path: Vec<&'a str>,
}

impl<'a> XmlWriter<'a> {
    fn members(
        &mut self,
        members: &'a Map<String, Value>,
        depth: usize,
    ) -> Result<(), XmlJsonError> {
        let mut seen = HashSet::with_capacity(members.len());
        for (key, value) in members {
            let name = key.trim();
            // The spec's longest name has 24 characters. A cap keeps the XML within a constant
            // factor of the JSON: an element name is written again for every array item.
            if !is_ncname(name) || name.len() > MAX_NAME_LEN {
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
        // Element names repeat once per array item: a long key in a long array would otherwise
        // grow the XML quadratically in the JSON's size.
        if self.buf.len() > MAX_XML_OUT {
            return Err(XmlJsonError::TooLarge {
                size: self.buf.len(),
                limit: MAX_XML_OUT,
            });
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

/// At most [`SHOWN`] characters of `s` on one line, for an error message.
fn shorten(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == SHOWN {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// XML → JSON

/// Reads the children of the root element of `xml` (a complete element, e.g. the SOAP response
/// wrapper cut out of an envelope, namespace declarations and all) into a JSON object, following
/// the rules in the module documentation. Input is UTF-8 (the caller decodes charsets first); a
/// UTF-8 BOM is skipped. Never panics; hostile input is an error.
pub fn xml_to_json(xml: &[u8], arrays: &ArrayHints) -> Result<Value, XmlJsonError> {
    check_size(xml.len())?;
    let text = std::str::from_utf8(xml).map_err(|e| XmlJsonError::InvalidUtf8(e.valid_up_to()))?;
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    convert(text, arrays, false).map(|(value, _)| value)
}

/// Like `xml_to_json` for the element `text` starts with, but stops at that element's end tag
/// and returns, with the value, the byte length of the element: what follows it (the rest of an
/// envelope) is the caller's to check. This reads a SOAP answer's wrapper in the same pass that
/// finds its end.
pub fn element_to_json(text: &str, arrays: &ArrayHints) -> Result<(Value, usize), XmlJsonError> {
    check_size(text.len())?;
    convert(text, arrays, true)
}

/// Input over `MAX_INPUT_BYTES` is refused before any parsing.
fn check_size(size: usize) -> Result<(), XmlJsonError> {
    if size > MAX_INPUT_BYTES {
        return Err(XmlJsonError::TooLarge {
            size,
            limit: MAX_INPUT_BYTES,
        });
    }
    Ok(())
}

/// The reader behind `xml_to_json` and `element_to_json`; with `stop_at_root_end`, returns at
/// the root's end tag with its end position instead of reading on to the end of `text`.
fn convert(
    text: &str,
    arrays: &ArrayHints,
    stop_at_root_end: bool,
) -> Result<(Value, usize), XmlJsonError> {
    let mut reader = Reader::from_str(text);
    {
        // The defaults today; spelled out because these checks are part of the contract.
        let config = reader.config_mut();
        config.trim_text(false);
        config.check_end_names = true;
        config.allow_unmatched_ends = false;
        config.allow_dangling_amp = false;
        config.expand_empty_elements = false;
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Map<String, Value>> = None;
    // Axis 1.4 writes a character outside the BMP as a pair of surrogate references.
    let mut surrogates = super::charref::Surrogates::default();
    loop {
        let event = match reader.read_event() {
            Ok(event) => event,
            Err(e) => return Err(malformed(reader.error_position(), e)),
        };
        let at = reader.buffer_position();
        if !matches!(event, Event::GeneralRef(_)) {
            surrogates.other_event().map_err(|e| malformed(at, e))?;
        }
        match event {
            Event::DocType(_) => return Err(XmlJsonError::DoctypeRefused),
            Event::Start(start) => {
                let frame = open(&start, &stack, root.is_some(), arrays, at)?;
                stack.push(frame);
            }
            Event::Empty(start) => {
                let frame = open(&start, &stack, root.is_some(), arrays, at)?;
                finish(frame, &mut stack, &mut root, arrays);
            }
            Event::End(_) => match stack.pop() {
                Some(frame) => finish(frame, &mut stack, &mut root, arrays),
                None => return Err(malformed(at, "unmatched end tag")),
            },
            Event::Text(t) => {
                let s = t.xml10_content().map_err(|e| malformed(at, e))?;
                push_text(&mut stack, &s, at)?;
            }
            Event::CData(c) => {
                let s = c.xml10_content().map_err(|e| malformed(at, e))?;
                push_text(&mut stack, &s, at)?;
            }
            Event::GeneralRef(r) => {
                use super::charref::Resolved;
                let resolved = match surrogates.reference(&r).map_err(|e| malformed(at, e))? {
                    Resolved::Char(c) => c.to_string(),
                    Resolved::Pending => continue,
                    Resolved::Entity => {
                        let name = r.decode().map_err(|e| malformed(at, e))?;
                        match quick_xml::escape::resolve_xml_entity(&name) {
                            Some(s) => s.to_owned(),
                            None => {
                                let reason = format!("undefined entity `&{};`", shorten(&name));
                                return Err(malformed(at, reason));
                            }
                        }
                    }
                };
                if stack.is_empty() {
                    return Err(malformed(at, "reference outside the root element"));
                }
                push_text(&mut stack, &resolved, at)?;
            }
            Event::Comment(_) | Event::PI(_) | Event::Decl(_) => {}
            Event::Eof => break,
        }
        if stop_at_root_end && stack.is_empty() {
            if let Some(members) = root.take() {
                let end = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
                return Ok((Value::Object(members), end));
            }
        }
    }
    if !stack.is_empty() {
        let reason = format!("input ends with {} element(s) not closed", stack.len());
        return Err(malformed(reader.buffer_position(), reason));
    }
    let end = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
    match root {
        Some(members) => Ok((Value::Object(members), end)),
        None => Err(malformed(reader.buffer_position(), "no root element")),
    }
}

/// An element being read.
struct Frame {
    /// Local name: the key in the parent object.
    name: String,
    /// Where this element's path is in the hints (None: no hinted path runs through it).
    hint: Option<usize>,
    /// `xsi:nil="true"` was present.
    nil: bool,
    /// All character data directly inside, in order.
    text: String,
    /// Child values by key, in order of first occurrence. An element's own value is never an
    /// array, so an array here always means "repeated or hinted".
    members: Map<String, Value>,
}

fn malformed(position: u64, reason: impl std::fmt::Display) -> XmlJsonError {
    XmlJsonError::Malformed {
        position,
        reason: shorten(&reason.to_string()),
    }
}

fn open(
    start: &BytesStart<'_>,
    stack: &[Frame],
    root_done: bool,
    arrays: &ArrayHints,
    at: u64,
) -> Result<Frame, XmlJsonError> {
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
    for (n, attr) in start.attributes().enumerate() {
        if n == MAX_ATTRIBUTES {
            let reason = format!("more than {MAX_ATTRIBUTES} attributes on one element");
            return Err(malformed(at, reason));
        }
        let attr = attr.map_err(|e| malformed(at, e))?;
        // Namespaces are not resolved: a wrapper cut out of an envelope has usually lost the
        // envelope's `xmlns:xsi`, and no HIS puts another namespace's `nil` on an element.
        let key = attr.key;
        if key.prefix().is_some() && key.local_name().as_ref() == b"nil" {
            let value = attr.value.as_ref().trim_ascii();
            nil = value == b"true" || value == b"1";
        }
    }
    let hint = match stack.last() {
        None => Some(HINT_ROOT),
        Some(parent) => arrays.step(parent.hint, &name),
    };
    Ok(Frame {
        name,
        hint,
        nil,
        text: String::new(),
        members: Map::new(),
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
        hint,
        nil,
        text,
        mut members,
    } = frame;
    let own_text = |members: &mut Map<String, Value>, text: &str| {
        let text = text.trim_matches(is_xml_space);
        if !text.is_empty() {
            members.insert(TEXT_KEY.to_owned(), Value::String(text.to_owned()));
        }
    };
    let Some(parent) = stack.last_mut() else {
        own_text(&mut members, &text);
        *root = Some(members);
        return;
    };
    let value = if !members.is_empty() {
        own_text(&mut members, &text);
        Value::Object(members)
    } else if nil && text.is_empty() {
        Value::Null
    } else {
        Value::String(text)
    };
    match parent.members.get_mut(&name) {
        Some(Value::Array(items)) => items.push(value),
        Some(single) => {
            let first = std::mem::take(single);
            *single = Value::Array(vec![first, value]);
        }
        None => {
            // `hint` is this element's step from `parent.hint`, taken when it was opened.
            let value = if arrays.is_array_node(hint) {
                Value::Array(vec![value])
            } else {
                value
            };
            parent.members.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const WRAP_OPEN: &str = r#"<ns:fooResponse xmlns:ns="urn:test">"#;
    const WRAP_CLOSE: &str = "</ns:fooResponse>";

    fn to_xml(v: &Value, prefix: Option<&str>) -> String {
        let mut out = String::new();
        json_to_xml(v, prefix, &mut out).unwrap();
        out
    }

    fn wrap(body: &str) -> String {
        format!("{WRAP_OPEN}{body}{WRAP_CLOSE}")
    }

    fn read(xml: &str, hints: &[&str]) -> Value {
        xml_to_json(xml.as_bytes(), &ArrayHints::new(hints)).unwrap()
    }

    fn read_err(xml: &[u8]) -> XmlJsonError {
        xml_to_json(xml, &ArrayHints::default()).unwrap_err()
    }

    /// Round trip through both directions, with and without a prefix; key order checked too
    /// (`Map`'s equality ignores order).
    fn assert_round_trip(v: &Value, hints: &[&str]) {
        for prefix in [None, Some("ns")] {
            let xml = wrap(&to_xml(v, prefix));
            let back = read(&xml, hints);
            assert_eq!(&back, v, "xml: {xml}");
            assert_eq!(back.to_string(), v.to_string(), "key order, xml: {xml}");
        }
    }

    // ----- the spec's examples ----------------------------------------------------------------

    #[test]
    fn query_wait_pay_response_round_trips() {
        // 3.1.1 hospital.interface.queryWaitPay, numbers and booleans as strings.
        let v = json!({
            "success": "true", "msg": "成功", "code": "10001",
            "data": {
                "hospitalId": "253", "amount": "23.5", "isMedicalPat": "1", "discountAmount": "0",
                "detail": [
                    {"id": "1113", "item": "维生素B2", "itemAmount": "2.50", "price": "2.50",
                     "quantity": "1", "unit": "瓶", "doctor": "李时珍", "presCode": "处方号",
                     "createTime": "2019-01-01 10:22:03", "preferentialAmount": "0", "presType": "0"},
                    {"id": "1114", "item": "阿莫西林", "itemAmount": "21.00", "price": "10.50",
                     "quantity": "2", "unit": "盒", "doctor": "李时珍", "presCode": "处方号",
                     "createTime": "2019-01-01 10:22:03", "preferentialAmount": "0", "presType": "0"}
                ]
            }
        });
        assert_round_trip(&v, &["data.detail"]);
    }

    #[test]
    fn patient_list_with_one_patient_round_trips() {
        // 11.2.1 sendInsufficientDepositMsg: a one-element list that must stay a list.
        let v = json!({
            "hospitalId": "1", "sendWay": "",
            "patientList": [{
                "medicalCardNumber": "", "idCard": "370785199910043074", "patName": "王二麻",
                "patInHosCode": "123049932321", "department": "部门",
                "hospitalizationTime": "2020-01-01", "prepayLeft": "0", "prepayLimit": "0",
                "totalPrepay": "0", "totalCosts": "0", "medAmountTotal": "0", "arrears": "0"
            }]
        });
        assert_round_trip(&v, &["patientList"]);
        let unhinted = read(&wrap(&to_xml(&v, None)), &[]);
        assert!(unhinted["patientList"].is_object());
    }

    #[test]
    fn pacs_report_dcm_response_round_trips() {
        // 16.1.3 hospital.interface.pacsReportDcm: arrays of strings inside an array; note the
        // trailing space of "1 ", kept.
        let v = json!({
            "success": "true", "msg": "成功", "code": "10001",
            "data": [
                {"series": "1 ", "describe": "腿部（部位描述）",
                 "thumbnailUrl": "http://abc/shotcut.png",
                 "dcms": ["http://10.68.140.148:8080/pacs/file-1",
                          "http://10.68.140.148:8080/pacs/file-2"],
                 "type": "url"},
                {"series": "1 ", "describe": "腿部（部位描述）",
                 "thumbnailUrl": "http://abc/shotcut.png",
                 "dcms": ["23231add212ad12dada21", "26113aadd212ad12dada2"], "type": "dcmId"}
            ]
        });
        assert_round_trip(&v, &["data", "data.dcms"]);
    }

    /// What an example should read back as, per the documented asymmetries: keys trimmed,
    /// numbers/booleans → their text, null and empty objects → "", empty arrays → absent.
    fn after_round_trip(v: &Value) -> Option<Value> {
        Some(match v {
            Value::Null => Value::String(String::new()),
            Value::Bool(_) | Value::Number(_) => Value::String(v.to_string()),
            Value::String(_) => v.clone(),
            Value::Array(items) if items.is_empty() => return None,
            Value::Array(items) => {
                Value::Array(items.iter().filter_map(after_round_trip).collect())
            }
            Value::Object(m) => {
                let m: Map<String, Value> = m
                    .iter()
                    .filter_map(|(k, x)| Some((k.trim().to_owned(), after_round_trip(x)?)))
                    .collect();
                if m.is_empty() {
                    Value::String(String::new())
                } else {
                    Value::Object(m)
                }
            }
        })
    }

    fn array_paths(v: &Value, path: &str, out: &mut Vec<String>) {
        if let Value::Object(m) = v {
            for (k, x) in m {
                let p = join(path, k.trim());
                if let Value::Array(items) = x {
                    for item in items {
                        array_paths(item, &p, out);
                    }
                    out.push(p);
                } else {
                    array_paths(x, &p, out);
                }
            }
        }
    }

    fn join(path: &str, key: &str) -> String {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    }

    #[test]
    fn every_spec_example_object_round_trips_with_the_documented_asymmetries() {
        let examples: Vec<Value> =
            serde_json::from_str(include_str!("../../tests/fixtures/spec_examples.json")).unwrap();
        let mut checked = 0;
        for e in &examples {
            for which in ["request_example", "response_example"] {
                let v = &e[which];
                if !v.is_object() {
                    continue; // absent, or a top-level array (21.1.x pushes: not an XML route)
                }
                let mut hints = Vec::new();
                array_paths(v, "", &mut hints);
                let expected = match after_round_trip(v) {
                    Some(Value::String(_)) => json!({}),
                    Some(x) => x,
                    None => unreachable!(),
                };
                let xml = wrap(&to_xml(v, Some("ns")));
                let back = xml_to_json(xml.as_bytes(), &ArrayHints::new(&hints)).unwrap();
                assert_eq!(back, expected, "{} {which}", e["chapter"]);
                assert_eq!(
                    back.to_string(),
                    expected.to_string(),
                    "{} {which}",
                    e["chapter"]
                );
                checked += 1;
            }
        }
        assert!(checked > 300, "only {checked} examples checked");
    }

    // ----- property: random objects round-trip ---------------------------------------------

    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
            &xs[self.below(xs.len())]
        }
    }

    #[derive(Clone, Copy)]
    enum Kind {
        Str,
        Obj,
        StrArray,
        ObjArray,
    }

    const KEYS: &[&str] = &[
        "id", "data", "detail", "name", "patName", "a", "b_2", "x-y", "v.1", "姓名", "_", "dcms",
    ];
    const STRINGS: &[&str] = &[
        "",
        " ",
        "  \t\n ",
        "\n",
        "007",
        "0012",
        "12.50",
        "1e5",
        "-0",
        "true",
        "null",
        "<>&\"'",
        "]]>",
        "&amp;",
        "&#13;",
        "<!-- x -->",
        "<![CDATA[x]]>",
        "张三",
        "山东省济南市高新区",
        "\r\n",
        "a\rb",
        "\u{3000}全角\u{3000}",
        "{\"json\":1}",
        "😀",
        " 1 ",
    ];
    const CHARS: &[char] = &[
        'a', 'Z', '0', '7', ' ', '\t', '\n', '\r', '<', '>', '&', '"', '\'', ';', '#', ']', '中',
        '文', '\u{3000}', '😀', 'é', '\u{85}', '\u{2028}',
    ];

    /// Random objects where each path has one kind (as a real interface's schema does), so a
    /// hint never contradicts the data.
    struct Gen {
        rng: Rng,
        kinds: HashMap<String, Kind>,
    }

    impl Gen {
        fn string(&mut self) -> Value {
            if self.rng.below(2) == 0 {
                return json!(self.rng.pick(STRINGS));
            }
            let len = self.rng.below(9);
            let s: String = (0..len).map(|_| *self.rng.pick(CHARS)).collect();
            Value::String(s)
        }

        fn object(&mut self, path: &str, depth: usize, allow_empty: bool) -> Value {
            let n = self.rng.below(5) + usize::from(!allow_empty);
            let mut m = Map::new();
            for _ in 0..n {
                let key = *self.rng.pick(KEYS);
                if m.contains_key(key) {
                    continue;
                }
                let p = join(path, key);
                let kind = match self.kinds.get(&p) {
                    Some(k) => *k,
                    None => {
                        let choices: &[Kind] = if depth >= 4 {
                            &[Kind::Str, Kind::StrArray]
                        } else {
                            &[
                                Kind::Str,
                                Kind::Str,
                                Kind::Obj,
                                Kind::StrArray,
                                Kind::ObjArray,
                            ]
                        };
                        let k = *self.rng.pick(choices);
                        self.kinds.insert(p.clone(), k);
                        k
                    }
                };
                let value = match kind {
                    Kind::Str => self.string(),
                    Kind::Obj => self.object(&p, depth + 1, false),
                    Kind::StrArray => {
                        Value::Array((0..=self.rng.below(3)).map(|_| self.string()).collect())
                    }
                    Kind::ObjArray => Value::Array(
                        (0..=self.rng.below(3))
                            .map(|_| self.object(&p, depth + 1, false))
                            .collect(),
                    ),
                };
                m.insert(key.to_owned(), value);
            }
            Value::Object(m)
        }

        fn hints(&self) -> Vec<String> {
            self.kinds
                .iter()
                .filter(|(_, kind)| matches!(kind, Kind::StrArray | Kind::ObjArray))
                .map(|(path, _)| path.clone())
                .collect()
        }
    }

    #[test]
    fn random_objects_round_trip() {
        let mut gen = Gen {
            rng: Rng(0x9E37_79B9_7F4A_7C15),
            kinds: HashMap::new(),
        };
        for case in 0..1000 {
            gen.kinds.clear();
            let v = gen.object("", 0, true);
            let hints = ArrayHints::new(gen.hints());
            let prefix = if case % 2 == 0 { None } else { Some("ns") };
            let xml = wrap(&to_xml(&v, prefix));
            let back = xml_to_json(xml.as_bytes(), &hints)
                .unwrap_or_else(|e| panic!("case {case}: {e}\nxml: {xml}"));
            assert_eq!(back, v, "case {case}, xml: {xml}");
            assert_eq!(back.to_string(), v.to_string(), "case {case}: key order");
        }
    }

    #[test]
    fn mutated_documents_never_panic() {
        let mut gen = Gen {
            rng: Rng(0xDEAD_BEEF_CAFE_F00D),
            kinds: HashMap::new(),
        };
        let extras: &[&[u8]] = &[
            b"<",
            b">",
            b"&",
            b"&#",
            b";",
            b"/>",
            b"</",
            b"<![CDATA[",
            b"]]>",
            b"<!DOCTYPE r>",
            b"<?x?>",
            b"<!--",
            b"-->",
            b"\xFF",
            b"\xE4\xB8",
            b"xmlns:a=\"\"",
            b"\"",
            b"&#0;",
            b"&#xD800;",
            b"&lt;",
        ];
        for _ in 0..2000 {
            gen.kinds.clear();
            let v = gen.object("", 0, true);
            let mut bytes = wrap(&to_xml(&v, Some("ns"))).into_bytes();
            for _ in 0..=gen.rng.below(4) {
                let at = gen.rng.below(bytes.len() + 1);
                match gen.rng.below(4) {
                    0 => bytes.truncate(at),
                    1 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    2 if at < bytes.len() => bytes[at] = gen.rng.next() as u8,
                    _ => {
                        let extra = gen.rng.pick(extras);
                        bytes.splice(at..at, extra.iter().copied());
                    }
                }
            }
            let _ = xml_to_json(&bytes, &ArrayHints::new(gen.hints()));
        }
    }

    // ----- arrays ----------------------------------------------------------------------------

    #[test]
    fn one_element_list_stays_a_list_only_when_hinted() {
        let xml = wrap("<ns:data><ns:id>1</ns:id></ns:data>");
        assert_eq!(read(&xml, &["data"]), json!({"data": [{"id": "1"}]}));
        assert_eq!(read(&xml, &[]), json!({"data": {"id": "1"}}));
        assert_eq!(read(&xml, &["data.id"]), json!({"data": {"id": ["1"]}}));
    }

    #[test]
    fn repeated_siblings_are_always_an_array() {
        let xml = "<r><id>1</id><name>a</name><id>2</id></r>";
        assert_eq!(read(xml, &[]), json!({"id": ["1", "2"], "name": "a"}));
        assert_eq!(read(xml, &["id"]), json!({"id": ["1", "2"], "name": "a"}));
    }

    #[test]
    fn empty_arrays_write_nothing_and_stay_absent() {
        let v = json!({"list": [], "code": "1", "nested": [[]]});
        assert_eq!(to_xml(&v, None), "<code>1</code><nested></nested>");
        let back = read(&wrap(&to_xml(&v, None)), &["list"]);
        assert_eq!(back, json!({"code": "1", "nested": ""}));
        assert!(back.get("list").is_none());
    }

    #[test]
    fn nested_arrays_repeat_the_outer_name_and_read_back_as_objects() {
        // Documented: XML cannot tell `[["1"]]` from `[{"m": ["1"]}]` (both are written alike).
        let v = json!({"m": [["1"], ["2", "3"]]});
        assert_eq!(to_xml(&v, None), "<m><m>1</m></m><m><m>2</m><m>3</m></m>");
        assert_eq!(
            to_xml(&json!({"m": [{"m": ["1"]}]}), None),
            "<m><m>1</m></m>"
        );
        assert_eq!(
            read(&wrap(&to_xml(&v, None)), &["m", "m.m"]),
            json!({"m": [{"m": ["1"]}, {"m": ["2", "3"]}]})
        );
    }

    // ----- scalars ---------------------------------------------------------------------------

    #[test]
    fn digit_strings_are_never_numbers() {
        let v = json!({"code": "0012", "amount": "12.50", "big": "12345678901234567890",
                       "exp": "1e5", "yes": "true", "nothing": "null"});
        assert_round_trip(&v, &[]);
        let xml = "<r><code>0012</code><amount>12.50</amount><n>-0</n></r>";
        assert_eq!(
            read(xml, &[]),
            json!({"code": "0012", "amount": "12.50", "n": "-0"})
        );
    }

    #[test]
    fn numbers_booleans_and_null_come_back_as_strings() {
        // Documented asymmetry: XML has no types, so the reader never guesses one.
        let v: Value = serde_json::from_str(
            r#"{"n": 12.50, "i": 7, "neg": -3, "b": true, "f": false, "z": null, "o": {}}"#,
        )
        .unwrap();
        let xml = to_xml(&v, None);
        assert_eq!(
            xml,
            "<n>12.5</n><i>7</i><neg>-3</neg><b>true</b><f>false</f><z/><o/>"
        );
        assert_eq!(
            read(&wrap(&xml), &[]),
            json!({"n": "12.5", "i": "7", "neg": "-3", "b": "true", "f": "false", "z": "", "o": ""})
        );
    }

    #[test]
    fn writes_the_documented_shape() {
        let v = json!({"a": "x<y>&z", "b": ["1", "2"], "c": {"d": null}, "h": "", "w": " \t\r\n"});
        assert_eq!(
            to_xml(&v, Some("m")),
            "<m:a>x&lt;y&gt;&amp;z</m:a><m:b>1</m:b><m:b>2</m:b><m:c><m:d/></m:c>\
             <m:h></m:h><m:w> \t&#13;\n</m:w>"
        );
    }

    #[test]
    fn whitespace_only_and_padded_leaf_strings_are_kept_exactly() {
        let v = json!({"sp": " ", "mix": " \t\n\r ", "pad": "  1 ", "full": "\u{3000}"});
        assert_round_trip(&v, &[]);
    }

    #[test]
    fn appends_to_out_and_leaves_it_alone_on_error() {
        let mut out = String::from("<keep/>");
        json_to_xml(&json!({"a": "1"}), None, &mut out).unwrap();
        assert_eq!(out, "<keep/><a>1</a>");
        let err = json_to_xml(&json!({"b": "2", "c d": "3"}), None, &mut out).unwrap_err();
        assert_eq!(err, XmlJsonError::BadName("c d".into()));
        assert_eq!(out, "<keep/><a>1</a>");
    }

    #[test]
    fn characters_xml_cannot_carry_are_refused_not_dropped() {
        let mut out = String::new();
        let err = json_to_xml(&json!({"data": {"msg": "a\u{1}b"}}), None, &mut out).unwrap_err();
        assert_eq!(
            err,
            XmlJsonError::BadChar {
                path: "data.msg".into(),
                code: 1
            }
        );
        assert!(json_to_xml(&json!({"m": "\u{FFFF}"}), None, &mut out).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn only_objects_can_be_written() {
        let mut out = String::new();
        for v in [
            json!([{"a": "1"}]),
            json!("x"),
            json!(1),
            json!(null),
            json!(true),
        ] {
            assert!(matches!(
                json_to_xml(&v, None, &mut out),
                Err(XmlJsonError::NotAnObject(_))
            ));
        }
    }

    // ----- names -----------------------------------------------------------------------------

    #[test]
    fn bad_names_are_refused_and_keys_are_trimmed() {
        let mut out = String::new();
        for key in ["a b", "1abc", "", "  ", "a:b", "-x", "<a>", "a&b"] {
            let v = json!({ key: "1" });
            assert_eq!(
                json_to_xml(&v, None, &mut out),
                Err(XmlJsonError::BadName(key.to_owned())),
                "{key:?}"
            );
        }
        assert_eq!(
            to_xml(
                &json!({"isPositive ": "1", " healthExamNo": "2", "姓名": "张三"}),
                None
            ),
            "<isPositive>1</isPositive><healthExamNo>2</healthExamNo><姓名>张三</姓名>"
        );
        assert_eq!(
            json_to_xml(&json!({"msg": "1", " msg ": "2"}), None, &mut out),
            Err(XmlJsonError::DuplicateName("msg".into()))
        );
        for prefix in ["", "a b", "xml", "xmlns", "ns:x"] {
            assert!(matches!(
                json_to_xml(&json!({"a": "1"}), Some(prefix), &mut out),
                Err(XmlJsonError::BadName(_))
            ));
        }
        assert!(out.is_empty());
    }

    #[test]
    fn long_bad_names_are_shortened_in_the_message() {
        let key = "x ".repeat(10_000);
        let err = json_to_xml(&json!({ key: "1" }), None, &mut String::new()).unwrap_err();
        assert!(err.to_string().len() < 200, "{err}");
    }

    // ----- reading ---------------------------------------------------------------------------

    #[test]
    fn namespaced_answer_uses_local_names() {
        let xml = r#"<ns2:getFooResponse xmlns:ns2="urn:x"><ns2:data><ns2:id>1</ns2:id></ns2:data></ns2:getFooResponse>"#;
        assert_eq!(read(xml, &[]), json!({"data": {"id": "1"}}));
        let xml = r#"<r xmlns="urn:d" xmlns:a="urn:a"><a:id>1</a:id><id>2</id></r>"#;
        assert_eq!(read(xml, &[]), json!({"id": ["1", "2"]}));
    }

    #[test]
    fn indentation_between_elements_is_dropped_leaf_text_is_exact() {
        let xml = "<r>\n  <a>\n    <b> 1 </b>\n    <c>\t</c>\n  </a>\n  <d>  </d>\n  <e/>\n</r>\n";
        assert_eq!(
            read(xml, &[]),
            json!({"a": {"b": " 1 ", "c": "\t"}, "d": "  ", "e": ""})
        );
    }

    #[test]
    fn mixed_content_text_goes_under_text_key() {
        let xml = "<r>top<a>hello <b>x</b> world</a></r>";
        assert_eq!(
            read(xml, &[]),
            json!({"a": {"b": "x", "#text": "hello  world"}, "#text": "top"})
        );
    }

    #[test]
    fn entities_character_references_and_cdata_are_resolved() {
        let xml = "<r><a>&lt;&gt;&amp;&quot;&apos;&#20013;&#x6587;</a>\
                   <b><![CDATA[<x>&amp;]]></b><c>x<![CDATA[ y ]]>z</c><d>&#13;</d></r>";
        assert_eq!(
            read(xml, &[]),
            json!({"a": "<>&\"'中文", "b": "<x>&amp;", "c": "x y z", "d": "\r"})
        );
    }

    #[test]
    fn line_ends_are_normalised_as_xml_requires() {
        assert_eq!(
            read("<r><a>1\r\n2\r3</a></r>", &[]),
            json!({"a": "1\n2\n3"})
        );
    }

    #[test]
    fn prolog_comments_and_processing_instructions_are_ignored() {
        let xml = "\u{FEFF}<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- c -->\n\
                   <r><?pi x?><a>1<!-- c -->2</a></r>\n<!-- after -->\n";
        assert_eq!(read(xml, &[]), json!({"a": "12"}));
        assert_eq!(read("<r/>", &[]), json!({}));
        assert_eq!(read("<r> \n </r>", &[]), json!({}));
    }

    #[test]
    fn attributes_are_ignored_except_xsi_nil() {
        let xml = r#"<r xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:i="urn:i">
            <a xsi:nil="true"/><b xsi:nil="false"/><c type="x" id="7">v</c><d i:nil="true" />
            <e nil="true"/><f xsi:nil="1"></f><g xsi:nil="true">kept</g></r>"#;
        assert_eq!(
            read(xml, &[]),
            json!({"a": null, "b": "", "c": "v", "d": null, "e": "", "f": null, "g": "kept"})
        );
        // Cut out of an envelope that declared xsi: the prefix is undeclared here.
        assert_eq!(
            read(r#"<r><a xsi:nil="true"/></r>"#, &[]),
            json!({"a": null})
        );
    }

    #[test]
    fn depth_cap_is_the_same_both_ways() {
        let mut v = json!("x");
        for _ in 0..MAX_DEPTH {
            v = json!({ "k": v });
        }
        // MAX_DEPTH levels of elements below the wrapper: accepted both ways.
        assert_round_trip(&v, &[]);
        let too_deep = json!({ "k": v });
        assert_eq!(
            json_to_xml(&too_deep, None, &mut String::new()),
            Err(XmlJsonError::TooDeep(MAX_DEPTH))
        );
        let mut nested = json!(["x"]);
        for _ in 0..1000 {
            nested = json!([nested]);
        }
        assert_eq!(
            json_to_xml(&json!({ "k": nested }), None, &mut String::new()),
            Err(XmlJsonError::TooDeep(MAX_DEPTH))
        );
    }

    #[test]
    fn hints_are_dotted_paths() {
        let hints = ArrayHints::new(["data", " data.detail ", "patientList", ""]);
        assert!(hints.is_array("data"));
        assert!(hints.is_array("data.detail"));
        assert!(hints.is_array("patientList"));
        assert!(!hints.is_array("dat"));
        assert!(!hints.is_array("data.id"));
        assert!(!hints.is_array("detail"));
        assert!(!hints.is_array(""));
        assert!(!ArrayHints::default().is_array("data"));
        // Arrays are transparent: the hint applies inside every item, at any depth.
        let xml = "<r><data><detail><id>1</id></detail></data><data><x>2</x></data></r>";
        assert_eq!(
            read(xml, &["data.detail"]),
            json!({"data": [{"detail": [{"id": "1"}]}, {"x": "2"}]})
        );
        // Hinting a path through elements does not make them arrays.
        assert_eq!(
            read("<r><a><b>1</b></a></r>", &["a.b"]),
            json!({"a": {"b": ["1"]}})
        );
    }

    // ----- hostile input ---------------------------------------------------------------------

    #[test]
    fn billion_laughs_is_refused() {
        let xml = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<lolz><a>&lol9;</a></lolz>"#;
        assert_eq!(read_err(xml.as_bytes()), XmlJsonError::DoctypeRefused);
        // Without the DOCTYPE the entity is simply undefined.
        assert!(matches!(
            read_err(b"<lolz><a>&lol9;</a></lolz>"),
            XmlJsonError::Malformed { .. }
        ));
    }

    #[test]
    fn external_entities_are_refused() {
        let xml = r#"<?xml version="1.0"?><!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><r><a>&xxe;</a></r>"#;
        assert_eq!(read_err(xml.as_bytes()), XmlJsonError::DoctypeRefused);
        let xml = r#"<r><!DOCTYPE x SYSTEM "http://evil/x.dtd"><a/></r>"#;
        assert!(xml_to_json(xml.as_bytes(), &ArrayHints::default()).is_err());
    }

    #[test]
    fn deep_nesting_is_refused() {
        let xml = format!("{}{}", "<a>".repeat(10_000), "</a>".repeat(10_000));
        assert_eq!(read_err(xml.as_bytes()), XmlJsonError::TooDeep(MAX_DEPTH));
        let xml = format!("{}{}", "<a>".repeat(10_000), "<a/>");
        assert_eq!(read_err(xml.as_bytes()), XmlJsonError::TooDeep(MAX_DEPTH));
    }

    #[test]
    fn broken_documents_are_errors() {
        let cases: &[&[u8]] = &[
            b"",
            b"   ",
            b"just text",
            b"<r><a>1</a><b>",
            b"<r><a>1</a",
            b"<r><a>1</b></r>",
            b"<r></a></r>",
            b"<r/></r>",
            b"<r/>junk",
            b"<r/><s/>",
            b"<r></r><!-- ok --><s>1</s>",
            b"<r><a>x & y</a></r>",
            b"<r><a>&#0;</a></r>",
            b"<r><a>&#xD800;</a></r>",
            b"<r><a b></a></r>",
            b"<r><a b=\"1\" b=\"2\"></a></r>",
            b"<r><a>\xFF</a></r>",
            b"<r><a>\xE4\xB8</a></r>",
            b"text<r/>",
            b"&amp;<r/>",
        ];
        for case in cases {
            assert!(
                xml_to_json(case, &ArrayHints::default()).is_err(),
                "{}",
                String::from_utf8_lossy(case)
            );
        }
        assert_eq!(
            read_err(b"<r><a>\xFF</a></r>"),
            XmlJsonError::InvalidUtf8(6)
        );
    }

    #[test]
    fn too_many_attributes_are_refused() {
        let attrs: String = (0..=MAX_ATTRIBUTES)
            .map(|i| format!(" a{i}=\"\""))
            .collect();
        let xml = format!("<r><e{attrs}/></r>");
        assert!(matches!(
            read_err(xml.as_bytes()),
            XmlJsonError::Malformed { .. }
        ));
        let attrs: String = (0..MAX_ATTRIBUTES).map(|i| format!(" a{i}=\"\"")).collect();
        assert_eq!(read(&format!("<r><e{attrs}/></r>"), &[]), json!({"e": ""}));
    }

    #[test]
    fn long_names_deep_down_with_many_leaves_stay_linear() {
        // Path strings rebuilt per element would cost levels × name length × leaves here.
        let name = "n".repeat(30_000);
        let mut xml = String::from("<r>");
        for _ in 0..MAX_DEPTH - 1 {
            xml.push_str(&format!("<{name}>"));
        }
        while xml.len() + 64 * name.len() < MAX_INPUT_BYTES {
            xml.push_str("<b/>");
        }
        for _ in 0..MAX_DEPTH - 1 {
            xml.push_str(&format!("</{name}>"));
        }
        xml.push_str("</r>");
        let hints = ArrayHints::new([name.as_str()]);
        let started = std::time::Instant::now();
        assert!(xml_to_json(xml.as_bytes(), &hints).is_ok());
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
    }

    #[test]
    fn oversized_input_is_refused_before_parsing() {
        let mut xml = b"<r>".to_vec();
        xml.resize(MAX_INPUT_BYTES + 1, b' ');
        assert!(matches!(read_err(&xml), XmlJsonError::TooLarge { .. }));
    }

    #[test]
    fn error_messages_do_not_echo_large_content() {
        let long = "x".repeat(100_000);
        let xml = format!("<r><{long}>1</y></r>");
        let msg = read_err(xml.as_bytes()).to_string();
        assert!(msg.len() < 300, "{msg}");
        let xml = format!("<r><a>&{long};</a></r>");
        let msg = read_err(xml.as_bytes()).to_string();
        assert!(msg.len() < 300, "{msg}");
        assert!(!msg.contains('\n'));
    }
}

#[cfg(test)]
mod budget_tests {
    use super::*;

    #[test]
    fn a_long_key_in_a_long_array_stops_at_the_budget() {
        // JSON that would expand to hundreds of MiB of XML: keys at the name cap, many items.
        let key = "k".repeat(MAX_NAME_LEN);
        let items = vec![Value::Null; 1 << 22];
        let mut map = Map::new();
        map.insert(key, Value::Array(items));
        let mut out = String::new();
        let r = json_to_xml(&Value::Object(map), None, &mut out);
        assert!(matches!(r, Err(XmlJsonError::TooLarge { .. })), "{r:?}");
        assert!(out.is_empty(), "the caller's buffer is untouched");
    }
}

#[cfg(test)]
mod name_cap_tests {
    use super::*;

    #[test]
    fn an_overlong_key_is_refused_not_repeated() {
        let mut map = Map::new();
        map.insert(
            "k".repeat(MAX_NAME_LEN + 1),
            Value::Array(vec![Value::Null; 1000]),
        );
        let mut out = String::new();
        let r = json_to_xml(&Value::Object(map), None, &mut out);
        assert!(matches!(r, Err(XmlJsonError::BadName(_))), "{r:?}");
    }
}
