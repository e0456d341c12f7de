//! Masking of patient data (names, ID numbers, phones) for log lines and operator-facing text.
//!
//! Rules (product contract): an ID number keeps its first 4 and last 4 characters, a phone its
//! first 3 and last 4, a name its first character; every hidden character becomes one `*`.
//! A value too short for its rule is masked completely instead of being leaked: an ID shorter
//! than 15 characters (the shortest mainland ID), a phone shorter than 11 characters and a
//! one-character name become all `*`. Leading and trailing whitespace is kept as it is and the
//! rule is applied to the trimmed value, so `" 370102197907025236"` still keeps `3701`.
//!
//! # Free text ([`mask_text`])
//!
//! Text is cut into maximal runs of digits (ASCII `0-9` or full-width `０-９`); anything that is
//! not a digit ends a run, letters included. A run is masked when:
//! * it has exactly 15 or exactly 18 digits (first- and second-generation ID numbers), or
//!   exactly 17 digits directly followed by `X`/`x` (the check character is masked with it);
//! * it has exactly 11 digits and starts with `1` (mainland mobile);
//! * it has exactly 13 digits and starts with `861` (mobile with the country code; the `86`
//!   is kept and the remaining 11 digits get the phone rule).
//!
//! A run of any other length is left alone, so order and trade numbers of 19 digits or more
//! (`50000206262018031403806908722`), 16-digit bank cards and 12-digit report keys pass
//! through. A free-standing run of ID length is masked without validation: a mistyped ID is
//! still an ID. A run of ID length glued to a code — right after an ASCII letter, or after
//! `-`/`_` that follows a letter or digit, as in the refund numbers `RE202006231344002095`
//! and `T_RE202006091447158` — is masked only if it starts like an ID (province code and
//! birth date, check digit not verified), so `ID370102197907025236` is still masked.
//! Mobiles get no such exemption (they cannot be told apart), so an order number whose digit
//! part has exactly 11 digits starting with `1` is masked too (the tail of the 2018-era
//! `ZJZF-SCXRMYY-18062229055` becomes `180****9055`); a privacy log errs that way. Numbers
//! written with separators inside (`135 2652 1254`) are not recognised.
//!
//! In addition (beyond digit runs) `key: value`, `key=value`, `"key":"value"`,
//! `\"key\":\"value\"` (JSON inside a JSON string) and `<key>value</key>` (WebService XML)
//! are recognised for the sensitive keys listed below, so that a body that is not valid JSON
//! (truncated, too deeply nested, XML, embedded JSON in a string field) does not leak names.
//!
//! # Key lists
//!
//! The lists were built from the interface specification (the project's shared
//! `spec/interfaces.json`, 190 interfaces, revision 1.6.68; its facts live on in
//! `src/catalog/catalog.json`): every
//! request/response field and example key whose description is a patient's, contact's,
//! mother's, carer's, customer's or payer's name, ID/document number or phone. `mobile` and
//! `caregiversName` are not in the specification and are kept as defensive spellings. Keys
//! are compared after trimming whitespace, ignoring ASCII case and ignoring `_`/`-`, so
//! `idCard`, `idcard`, `" idCard "` and `id_card` all match. Doctors', nurses', departments',
//! hospitals' and items' names (`docName`, `doctorName`, `peduNurseName`, `deptName`,
//! `hosName`, `itemName`, ...) are not listed; neither is `tel` (only used for the
//! hospital's own phone). The generic key `name` is a person except directly under
//! `groupByCharge`, `groupByChargeClass` and `itemList` (18.1.4, 28.1.13) where it names a
//! charge item.

use std::borrow::Cow;

use serde_json::{Map, Value};

/// Keys holding an ID/document number (normalised: lower case, no `_`/`-`).
/// From the specification: `idcard` / `idCard` (most interfaces), `idCardNo` (1.3.1, 2.1.x),
/// `idcardNo` (33.1.x), `idCardNumber` (18.1.4), `motherIdcard` (1.2.2), `patientIdCard`
/// (37.1.3) and `patientId` (21.2.2/21.2.3, described as "ID document number").
const ID_KEYS: &[&str] = &[
    "idcard",
    "idcardno",
    "idcardnumber",
    "motheridcard",
    "patientidcard",
    "patientid",
];

/// Keys holding a patient's or contact's phone. From the specification: `phone`, `phoneNo`
/// (5.1.x, 19.2.x), `telephone` (33.1.x), `telNo` (28.1.6), `patientPhone` (21.2.x).
/// `mobile` is a defensive extra.
const PHONE_KEYS: &[&str] = &[
    "phone",
    "phoneno",
    "telephone",
    "telno",
    "patientphone",
    "mobile",
];

/// Keys holding a person's name. From the specification: `name` (patient, contact or carer in
/// 1.2.x, 1.3.x, 2.1.x, 12.1.2, 14.2.1, 18.1.3, 28.1.6, 37.1.x, 40.1.2), `patientName`,
/// `patName`, `userName` (19.x, 22.2.1, 36.2.2, 38.2.x), `inPatName` (10.1.1), `outPatName`
/// (31.1.1), `motherName` (1.2.2), `customName` / `payerName` (14.1.x), `othersContacts`
/// (36.1.1, "contact person"). `caregiversName` is a defensive extra.
const NAME_KEYS: &[&str] = &[
    "name",
    "patientname",
    "patname",
    "username",
    "inpatname",
    "outpatname",
    "mothername",
    "customname",
    "payername",
    "otherscontacts",
    "caregiversname",
];

/// Parents under which the generic key `name` names a charge item, not a person
/// (18.1.4 `data.groupByCharge[].name`, `data.groupByChargeClass[].name`,
/// 28.1.13 `data.itemList[].name`).
const ITEM_NAME_PARENTS: &[&str] = &["groupbycharge", "groupbychargeclass", "itemlist"];

/// JSON values nested deeper than this are replaced by [`ELLIPSIS`].
const MAX_DEPTH: usize = 64;
const ELLIPSIS: char = '…';
const MASK: char = '*';

/// The shortest value each rule is applied to; anything shorter is masked completely.
const ID_MIN_CHARS: usize = 15;
const PHONE_MIN_CHARS: usize = 11;
const NAME_MIN_CHARS: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Id,
    Phone,
    Name,
}

impl Kind {
    fn mask(self, s: &str) -> String {
        match self {
            Kind::Id => mask_id(s),
            Kind::Phone => mask_phone(s),
            Kind::Name => mask_name(s),
        }
    }
}

/// Masks an ID/document number: keeps the first 4 and last 4 characters.
pub fn mask_id(s: &str) -> String {
    mask_keep(s, 4, 4, ID_MIN_CHARS)
}

/// Masks a phone number: keeps the first 3 and last 4 characters.
pub fn mask_phone(s: &str) -> String {
    mask_keep(s, 3, 4, PHONE_MIN_CHARS)
}

/// Masks a person's name: keeps the first character.
pub fn mask_name(s: &str) -> String {
    mask_keep(s, 1, 0, NAME_MIN_CHARS)
}

/// Keeps `head` leading and `tail` trailing characters of the trimmed value, replacing the
/// rest with `*`; a trimmed value shorter than `min_chars` is replaced entirely.
/// `min_chars` is always greater than `head + tail`, so at least one character is hidden.
fn mask_keep(s: &str, head: usize, tail: usize, min_chars: usize) -> String {
    let core = s.trim();
    if core.is_empty() {
        return s.to_owned();
    }
    let start = s.len() - s.trim_start().len();
    let end = start + core.len();
    let n = core.chars().count();
    let mut out = String::with_capacity(s.len() + n);
    out.push_str(&s[..start]);
    if n < min_chars {
        out.extend(std::iter::repeat_n(MASK, n));
    } else {
        for (i, c) in core.chars().enumerate() {
            out.push(if i < head || i >= n - tail { c } else { MASK });
        }
    }
    out.push_str(&s[end..]);
    out
}

/// Masks free text: any run of 15 digits, or 17 digits followed by a digit or X/x (Chinese ID
/// numbers, also when embedded in longer text but NOT when part of a longer digit run — a
/// 20-digit order number is not an ID), and any 11-digit run starting with `1` (mainland mobile)
/// is masked.
///
/// Runs are maximal sequences of digits; only their exact length counts (see the module docs
/// for the full rule, including `86`-prefixed mobiles). Values of sensitive keys written as
/// `key: value`, `key=value`, `"key":"value"` or `<key>value</key>` are masked as well.
/// Returns the input borrowed when nothing had to be masked.
pub fn mask_text(s: &str) -> Cow<'_, str> {
    match mask_key_values(s) {
        Cow::Borrowed(b) => mask_digit_runs(b),
        Cow::Owned(o) => {
            let again = match mask_digit_runs(&o) {
                Cow::Owned(m) => Some(m),
                Cow::Borrowed(_) => None,
            };
            Cow::Owned(again.unwrap_or(o))
        }
    }
}

/// Walks a JSON value and returns a masked copy: values of keys that name a patient name, ID
/// number or phone (matched after trimming whitespace, case-insensitively) are masked with the
/// rules above (numbers too: a phone sent as a JSON number is masked and becomes a string); every
/// other string goes through mask_text. Arrays and nested objects are walked. Keys are kept.
///
/// Everything below a sensitive key (an array of phones, an object under `name`) is masked with
/// that key's rule. A number under any other key is passed through [`mask_text`] as well and
/// becomes a string only if that masks something (an 11-digit mobile sent as a number under an
/// unknown key). Values nested deeper than 64 levels are replaced by `"…"`.
pub fn mask_json(v: &serde_json::Value) -> serde_json::Value {
    walk(v, 0, None, None)
}

fn walk(v: &Value, depth: usize, parent: Option<&str>, kind: Option<Kind>) -> Value {
    if depth >= MAX_DEPTH {
        return Value::String(ELLIPSIS.to_string());
    }
    match v {
        Value::Null | Value::Bool(_) => v.clone(),
        Value::Number(n) => {
            let text = n.to_string();
            match kind {
                Some(k) => Value::String(k.mask(&text)),
                None => match mask_text(&text) {
                    Cow::Borrowed(_) => v.clone(),
                    Cow::Owned(m) => Value::String(m),
                },
            }
        }
        Value::String(s) => Value::String(match kind {
            Some(k) => k.mask(s),
            None => mask_text(s).into_owned(),
        }),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|x| walk(x, depth + 1, parent, kind))
                .collect(),
        ),
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, x) in map {
                let child_kind = json_key_kind(key, parent).or(kind);
                out.insert(key.clone(), walk(x, depth + 1, Some(key), child_kind));
            }
            Value::Object(out)
        }
    }
}

/// For logging a request/response body: parse as JSON (lossy: if it is not JSON, treat it as
/// text), mask, serialise compactly, and cut to at most `max_chars` characters (append `…` when
/// cut). Never panics on any input bytes (invalid UTF-8, huge nesting — cap recursion at e.g. 64
/// levels and replace deeper values with "…").
///
/// The `…` counts towards `max_chars`: a cut result is `max_chars - 1` characters of masked
/// body followed by `…`, so the result never exceeds `max_chars` characters (0 gives "").
/// Input that serde_json refuses (not JSON, invalid UTF-8, nesting beyond serde_json's own
/// limit of 128) is decoded lossily and masked with [`mask_text`], which does not recurse.
pub fn mask_body(bytes: &[u8], max_chars: usize) -> String {
    let masked = match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => serde_json::to_string(&mask_json(&v)).unwrap_or_else(|_| ELLIPSIS.to_string()),
        Err(_) => {
            let text = String::from_utf8_lossy(bytes);
            mask_text(&text).into_owned()
        }
    };
    cut_chars(masked, max_chars)
}

fn cut_chars(s: String, max_chars: usize) -> String {
    if s.chars().nth(max_chars).is_none() {
        return s;
    }
    let Some(keep) = max_chars.checked_sub(1) else {
        return String::new();
    };
    let cut = s.char_indices().nth(keep).map_or(s.len(), |(i, _)| i);
    let mut out = String::with_capacity(cut + ELLIPSIS.len_utf8());
    out.push_str(&s[..cut]);
    out.push(ELLIPSIS);
    out
}

/// Compares a key with a normalised list entry, ignoring surrounding whitespace, ASCII case
/// and `_`/`-`.
fn key_is(key: &str, normalised: &str) -> bool {
    let mut k = key
        .trim()
        .bytes()
        .filter(|b| *b != b'_' && *b != b'-')
        .map(|b| b.to_ascii_lowercase());
    let mut n = normalised.bytes();
    loop {
        match (k.next(), n.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

fn key_in(key: &str, list: &[&str]) -> bool {
    list.iter().any(|n| key_is(key, n))
}

/// The kind of a key with no context (free text).
fn text_key_kind(key: &str) -> Option<Kind> {
    if key_in(key, ID_KEYS) {
        Some(Kind::Id)
    } else if key_in(key, PHONE_KEYS) {
        Some(Kind::Phone)
    } else if key_in(key, NAME_KEYS) {
        Some(Kind::Name)
    } else {
        None
    }
}

/// The kind of a JSON object key, given the key of the object (or array) holding it.
fn json_key_kind(key: &str, parent: Option<&str>) -> Option<Kind> {
    let kind = text_key_kind(key)?;
    let item_name = kind == Kind::Name
        && key_is(key, "name")
        && parent.is_some_and(|p| key_in(p, ITEM_NAME_PARENTS));
    if item_name {
        None
    } else {
        Some(kind)
    }
}

fn digit_value(c: char) -> Option<u32> {
    match c {
        '0'..='9' => Some(c as u32 - '0' as u32),
        '０'..='９' => Some(c as u32 - '０' as u32),
        _ => None,
    }
}

fn is_id_check_char(c: char) -> bool {
    matches!(c, 'X' | 'x' | 'Ｘ' | 'ｘ')
}

/// Applies the digit-run rule (module docs) to `s`.
fn mask_digit_runs(s: &str) -> Cow<'_, str> {
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut chars = s.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        let Some(first) = digit_value(c) else {
            continue;
        };
        let mut end = start + c.len_utf8();
        let mut len = 1usize;
        while let Some(&(i, d)) = chars.peek() {
            if digit_value(d).is_none() {
                break;
            }
            end = i + d.len_utf8();
            len += 1;
            chars.next();
        }
        // A run glued to a code (`RE202006231344002095`, `ZJZF-SCXRMYY-…`) is an ID only if
        // it looks like one; a free-standing run of ID length always is.
        let id_ok = |run: &str| !glued_to_code(&s[..start]) || looks_like_id(run);
        let masked = match len {
            15 | 18 if id_ok(&s[start..end]) => Some(mask_id(&s[start..end])),
            17 => match chars.peek() {
                Some(&(i, x)) if is_id_check_char(x) && id_ok(&s[start..end]) => {
                    end = i + x.len_utf8();
                    chars.next();
                    Some(mask_id(&s[start..end]))
                }
                _ => None,
            },
            11 if first == 1 => Some(mask_phone(&s[start..end])),
            13 if starts_with_861(&s[start..end]) => {
                // Keep the country code; the 11 digits after it are a mobile number.
                let split = s[start..end]
                    .char_indices()
                    .nth(2)
                    .map_or(end, |(i, _)| start + i);
                let mut m = s[start..split].to_owned();
                m.push_str(&mask_phone(&s[split..end]));
                Some(m)
            }
            _ => None,
        };
        if let Some(m) = masked {
            let o = out.get_or_insert_with(|| String::with_capacity(s.len()));
            o.push_str(&s[copied..start]);
            o.push_str(&m);
            copied = end;
        }
    }
    match out {
        Some(mut o) => {
            o.push_str(&s[copied..]);
            Cow::Owned(o)
        }
        None => Cow::Borrowed(s),
    }
}

/// Whether the text before a digit run ends in an ASCII letter, or in `-`/`_` right after an
/// ASCII letter or digit: the run is then the tail of a code such as `RE2020…` or
/// `ZJZF-…-2020…`.
fn glued_to_code(before: &str) -> bool {
    let mut back = before.chars().rev();
    match back.next() {
        Some(c) if c.is_ascii_alphabetic() => true,
        Some('-' | '_') => back.next().is_some_and(|c| c.is_ascii_alphanumeric()),
        _ => false,
    }
}

/// Whether a run of 15, 17 or 18 digits starts like a mainland ID number: a province code
/// (GB/T 2260 first two digits) followed, after the 4-digit county code, by a plausible birth date
/// (`yyMMdd` for 15 digits, `yyyyMMdd` otherwise, year 1900-2099). The check digit is not
/// verified, so a mistyped ID still counts.
fn looks_like_id(run: &str) -> bool {
    let d: Vec<u32> = run.chars().filter_map(digit_value).collect();
    if d.len() < 15 {
        return false;
    }
    let num = |from: usize, len: usize| d[from..from + len].iter().fold(0, |acc, x| acc * 10 + x);
    let province_ok = matches!(
        num(0, 2),
        11..=15 | 21..=23 | 31..=37 | 41..=46 | 50..=54 | 61..=65 | 71 | 81..=83 | 91
    );
    let (year_ok, month, day) = if d.len() == 15 {
        (true, num(8, 2), num(10, 2))
    } else {
        ((1900..=2099).contains(&num(6, 4)), num(10, 2), num(12, 2))
    };
    province_ok && year_ok && (1..=12).contains(&month) && (1..=31).contains(&day)
}

fn starts_with_861(run: &str) -> bool {
    let mut d = run.chars().map(digit_value);
    d.next() == Some(Some(8)) && d.next() == Some(Some(6)) && d.next() == Some(Some(1))
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Characters that end an unquoted value in free text.
fn ends_unquoted_value(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            ',' | '&' | ';' | '"' | '\'' | '<' | '>' | '{' | '}' | '[' | ']' | '(' | ')' | '|'
        )
        || matches!(c, '，' | '；' | '。' | '、' | '）' | '（')
}

fn skip_ascii_whitespace(b: &[u8], mut p: usize) -> usize {
    while p < b.len() && b[p].is_ascii_whitespace() {
        p += 1;
    }
    p
}

/// Skips `\`* followed by a quote, if present; returns the position after the quote, the
/// quote byte and how many backslashes preceded it.
fn skip_quote(b: &[u8], p: usize) -> Option<(usize, u8, usize)> {
    let mut q = p;
    while q < b.len() && b[q] == b'\\' {
        q += 1;
    }
    match b.get(q) {
        Some(&quote @ (b'"' | b'\'')) => Some((q + 1, quote, q - p)),
        _ => None,
    }
}

/// Whether the key starting at `key_start` is the name of an XML start tag: `<key` or
/// `<prefix:key` (not `</key`).
fn opens_xml_tag(b: &[u8], key_start: usize) -> bool {
    match key_start.checked_sub(1).map(|i| (i, b[i])) {
        Some((_, b'<')) => true,
        Some((colon, b':')) => {
            let mut k = colon;
            while k > 0 && is_ident_byte(b[k - 1]) {
                k -= 1;
            }
            k < colon && k > 0 && b[k - 1] == b'<'
        }
        _ => false,
    }
}

/// Given a sensitive key at `key_start..key_end`, finds the byte range of its value, if the
/// text has the shape of a key/value pair.
fn value_span(s: &str, key_start: usize, key_end: usize) -> Option<(usize, usize)> {
    let b = s.as_bytes();
    let mut p = skip_ascii_whitespace(b, key_end);
    // A closing quote of the key (`"name"`, `\"name\"`, `"name "`).
    if let Some((after, _, _)) = skip_quote(b, p) {
        p = skip_ascii_whitespace(b, after);
    }
    let rest = &s[p..];
    let xml = if rest.starts_with(':') || rest.starts_with('=') {
        p += 1;
        if s[p..].starts_with('>') {
            p += 1; // `=>`
        }
        false
    } else if rest.starts_with('：') {
        p += '：'.len_utf8();
        false
    } else if rest.starts_with('>') && opens_xml_tag(b, key_start) {
        p += 1;
        true
    } else {
        return None;
    };
    p = skip_ascii_whitespace(b, p);
    if p >= b.len() {
        return None;
    }
    if xml {
        let mut end = s[p..].find('<').map_or(b.len(), |i| p + i);
        while end > p && b[end - 1].is_ascii_whitespace() {
            end -= 1;
        }
        return Some((p, end));
    }
    if let Some((start, quote, escapes)) = skip_quote(b, p) {
        let mut q = start;
        while q < b.len() && b[q] != quote {
            // Inside an ordinary quoted value, `\"` is an escaped quote, not the end.
            q += if escapes == 0 && b[q] == b'\\' { 2 } else { 1 };
        }
        let mut end = q.min(b.len());
        // Inside JSON-in-a-string the closing quote is `\"`: drop its backslashes.
        while escapes > 0 && end > start && b[end - 1] == b'\\' {
            end -= 1;
        }
        return Some((start, end));
    }
    if matches!(b[p], b'{' | b'[') {
        return None;
    }
    let end = s[p..]
        .char_indices()
        .find(|&(_, c)| ends_unquoted_value(c))
        .map_or(b.len(), |(i, _)| p + i);
    match &s[p..end] {
        "null" | "true" | "false" => None,
        _ => Some((p, end)),
    }
}

/// Masks the values of sensitive keys written as key/value pairs inside free text.
fn mask_key_values(s: &str) -> Cow<'_, str> {
    let b = s.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        let before = i.checked_sub(1).map(|j| b[j]);
        if !b[i].is_ascii_alphabetic() || before.is_some_and(is_ident_byte) {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < b.len() && is_ident_byte(b[j]) {
            j += 1;
        }
        // `i` and `j` sit on ASCII bytes, so they are char boundaries.
        let Some(kind) = text_key_kind(&s[i..j]) else {
            i = j;
            continue;
        };
        match value_span(s, i, j) {
            Some((start, end)) if start < end => {
                let o = out.get_or_insert_with(|| String::with_capacity(s.len()));
                o.push_str(&s[copied..start]);
                o.push_str(&kind.mask(&s[start..end]));
                copied = end;
                i = end;
            }
            _ => i = j,
        }
    }
    match out {
        Some(mut o) => {
            o.push_str(&s[copied..]);
            Cow::Owned(o)
        }
        None => Cow::Borrowed(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // Request/response examples copied verbatim from the specification.
    const EX_1_2_1_CREATE_CARD: &str = r#"{"hospitalId": "253", "medicalCardNumber": "001000056254587", "name": "张三", "sex": "男", "gender": "1", "birthday": "1979-07-02", "address": "山东省济南市高新区", "idcard": "370102197907025236", "cardNoType": "01", "phone": "13526521254", "maritalStatusName": "未婚", "nationName": "汉族"}"#;
    const EX_1_2_2_NEWBORN: &str = r#"{"hospitalId": "253", "medicalCardNumber": "001000056254587", "name": "张三", "sex": "男", "gender": "1", "birthday": "1979-07-02", "address": "山东省济南市高新区", "idcard": "370102197907025236", "cardNoType": "01", "phone": "13526521254", "motherName": "张三", "motherIdcard": "222403198506112326", "birthOrder": "02", "nationName": "汉族"}"#;
    const EX_11_2_1_DEPOSIT_PUSH: &str = r#"{"hospitalId": "1", "sendWay": "", "patientList": [{"medicalCardNumber": "", "idCard": "370785199910043074", "patName": "王二麻", "patInHosCode": "123049932321", "department": "部门", "hospitalizationTime": "2020-01-01", "prepayLeft": "0", "prepayLimit": "0", "totalPrepay": "0", "totalCosts": "0", "medAmountTotal": "0", "arrears": "0"}]}"#;
    const EX_18_1_4_COST_SUMMARY: &str = r#"{"success": true, "msg": "成功", "code": "10001", "data": {"patientName": "张三", "sex": "男", "inpatientNo": "10816", "doctor": "扁鹊", "totalAmount": "5644.75", "diagnosis": "下咽恶性肿瘤", "groupByDate": [{"date": "2019-11-13", "total": "29.81"}, {"date": "2019-11-12", "total": "29.81"}], "groupByCharge": [{"name": "床位费", "price": "45.00", "quantity": "1.00", "total": "45.00"}, {"name": "静脉注射液", "price": "30.00", "quantity": "2.00", "total": "60.00"}], "groupByChargeClass": [{"name": "材料费", "total": "24.64"}, {"name": "检查费", "total": "4.00"}]}}"#;
    const EX_21_2_2_BOOK: &str = r#"{"hosCode": "0531_csyy", "recordId": "d6deb60352044172895a6d48172de9e4", "medicalCard": "001000056254587", "patientName": "张三", "deptCode": "0256", "hospitalId": "253", "docCode": "256654", "arAmt": "16.00", "date": "20190526", "amPm": "AM", "endTime": "10:15", "startTime": "10:00", "type": "01", "patientId": "370102197907025236", "patientPhone": "15689898989", "hisTimeId": "16"}"#;
    const EX_33_1_3_LOCK_TICKET: &str = r#"{"medicalCardNumber": "001000005182624", "idcardNo": "110101202008227457", "patName": "张亖", "sex": "男", "telephone": "13899999999", "hospitalId": "253", "sourceId": "12", "schedulingId": "22", "projectId": "2", "recordId": "21"}"#;
    const EX_37_1_3_ADD_CARER: &str = r#"{"name": "张三", "address": "家庭地址", "phone": "15966667876", "idCard": "513436201605126557", "age": "5", "sex": "男", "infoSource": "3", "termOfValidity": "2021-03-16 14:41:14", "flagInvalid": "0", "relationShip": "父子", "createTime": "2021-03-16 14:41:14", "hospitalId": "1", "patientIdCard": "370102197907025236", "patientMedicalCardNumber": "123", "patientName": "张四", "admissionNumber": "111"}"#;
    const EX_14_1_1_TRANSACTIONS: &str = r#"{"success": true, "msg": "成功", "code": "10001", "data": [{"outTradeNo": "ZJZF_ymzyy_1803052", "sourceOutTradeNo": "ZJZF_ymzyy_1803052", "refundOrderNo": null, "payTime": "2018-03-05 14:02:06", "stateDes": "已退款", "amount": 0.01, "customName": "马金花", "payerName": "沈振华", "transactionId": "29358903jfiu98wru934", "payType": "AliPay"}]}"#;
    const EX_19_2_1_FOLLOW_UP: &str = r#"{"success": true, "msg": "成功", "code": "10001", "data": {"outCardNo": "001000005200195", "patName": "张之路", "idCard": "150303195208079346", "phoneNo": "17859265431", "hospitalId": "0358_0015", "docCode": "A001", "backTreatmentTime": "2021-07-22 13:25:26", "docName": "华佗", "deptName": "检验科"}}"#;
    const EX_22_2_1_SURVEY: &str = r#"{"hospitalId": "253", "medicalCardNumber": "001000056254587", "idCard": "370102197907025236", "userName": "张三", "registerId": "524554251", "questionnaireType": "0", "deptCode": "31", "deptName": "内科门诊", "docCode": "001", "docName": "华佗", "visitedTime": "2020-05-18 10:37:50"}"#;
    const EX_28_1_13_ITEMS: &str = r#"{"data": {"itemList": [{"sexCode": 0, "deptName": "输血科", "beforeMealFlag": 0, "name": "血型测定", "combCode": 11127, "acPrice": 20.5, "deptCode": 10468, "disc": 100, "stPrice": 20.5}, {"sexCode": 0, "deptName": "胃镜室", "beforeMealFlag": 1, "name": "电子结肠镜", "combCode": 10897, "acPrice": 235, "deptCode": 10471, "disc": 100, "stPrice": 235}], "count": 20}, "success": true, "msg": "", "code": "10001"}"#;

    /// Every example with the full patient values it contains.
    const EXAMPLES: &[(&str, &[&str])] = &[
        (
            EX_1_2_1_CREATE_CARD,
            &["张三", "370102197907025236", "13526521254"],
        ),
        (
            EX_1_2_2_NEWBORN,
            &[
                "张三",
                "370102197907025236",
                "13526521254",
                "222403198506112326",
            ],
        ),
        (EX_11_2_1_DEPOSIT_PUSH, &["王二麻", "370785199910043074"]),
        (EX_18_1_4_COST_SUMMARY, &["张三"]),
        (
            EX_21_2_2_BOOK,
            &["张三", "370102197907025236", "15689898989"],
        ),
        (
            EX_33_1_3_LOCK_TICKET,
            &["张亖", "110101202008227457", "13899999999"],
        ),
        (
            EX_37_1_3_ADD_CARER,
            &[
                "张三",
                "张四",
                "15966667876",
                "513436201605126557",
                "370102197907025236",
            ],
        ),
        (EX_14_1_1_TRANSACTIONS, &["马金花", "沈振华"]),
        (
            EX_19_2_1_FOLLOW_UP,
            &["张之路", "150303195208079346", "17859265431"],
        ),
        (EX_22_2_1_SURVEY, &["张三", "370102197907025236"]),
    ];

    fn parse(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    fn masked_example(s: &str) -> Value {
        mask_json(&parse(s))
    }

    #[test]
    fn id_rule() {
        assert_eq!(mask_id("370102197907025236"), "3701**********5236");
        assert_eq!(mask_id("37028419911126431X"), "3702**********431X");
        assert_eq!(mask_id("370102790702523"), "3701*******2523");
    }

    #[test]
    fn phone_rule() {
        assert_eq!(mask_phone("13526521254"), "135****1254");
        assert_eq!(mask_phone("0531-88888888"), "053******8888");
    }

    #[test]
    fn name_rule() {
        assert_eq!(mask_name("张三"), "张*");
        assert_eq!(mask_name("欧阳娜娜"), "欧***");
        assert_eq!(mask_name("买买提·艾力"), "买*****");
        assert_eq!(mask_name("zhangsan"), "z*******");
        assert_eq!(mask_name("𠀀𠀁"), "𠀀*");
    }

    #[test]
    fn short_values_are_fully_masked() {
        assert_eq!(mask_id(""), "");
        assert_eq!(mask_id("1234"), "****");
        assert_eq!(mask_id("12345678"), "********");
        assert_eq!(mask_id("E12345678"), "*********"); // a passport number
        assert_eq!(mask_id("37010219790702"), "**************");
        assert_eq!(mask_phone("8888888"), "*******");
        assert_eq!(mask_phone("1352652125"), "**********");
        assert_eq!(mask_name("张"), "*");
        assert_eq!(mask_name("A"), "*");
    }

    #[test]
    fn surrounding_whitespace_is_kept_and_ignored() {
        assert_eq!(mask_id(" 001000056254588"), " 0010*******4588");
        assert_eq!(mask_phone("13526521254 "), "135****1254 ");
        assert_eq!(mask_name("  张三\t"), "  张*\t");
        assert_eq!(mask_name("   "), "   ");
    }

    #[test]
    fn text_with_id_and_phone_in_chinese() {
        let s = "患者张三，身份证号370102197907025236，手机13526521254，请于明日就诊。";
        assert_eq!(
            mask_text(s),
            "患者张三，身份证号3701**********5236，手机135****1254，请于明日就诊。"
        );
        let s = "证件:37028419911126431X;旧证件370102790702523;电话+8613526521254";
        assert_eq!(
            mask_text(s),
            "证件:3702**********431X;旧证件3701*******2523;电话+86135****1254"
        );
        assert_eq!(
            mask_text("ID 37028419911126431x end"),
            "ID 3702**********431x end"
        );
        // Full-width digits.
        assert_eq!(
            mask_text("电话１３５２６５２１２５４"),
            "电话１３５****１２５４"
        );
        // Letters do not protect a mobile, nor a run that looks like an ID.
        assert_eq!(mask_text("tel13526521254x"), "tel135****1254x");
        assert_eq!(
            mask_text("ID370102197907025236,id_37028419911126431X,证370101200001010001"),
            "ID3701**********5236,id_3702**********431X,证3701**********0001"
        );
        assert_eq!(
            mask_text("ZJZF-SCXRMYY-18062229055"),
            "ZJZF-SCXRMYY-180****9055"
        );
    }

    #[test]
    fn long_numbers_are_left_alone() {
        for s in [
            "交易号50000206262018031403806908722",
            "20200609220014449614",
            "departmentCode 1551902701623828482",
            "bank card 6222021234567890",
            "reportKey 201812170555",
            "specimen 25658285644",
            "37010219790702523 has 17 digits and no X",
            "amount 25.6 at 2020-06-23 17:32:01",
            // Refund and order numbers from the specification whose digit part has ID length.
            "refundNo RE202006231344002095",
            "T_RE202006091447158 RE201803142243228",
            "ZJZF-SCXRMYY-202006231344002095",
            "",
        ] {
            assert!(matches!(mask_text(s), Cow::Borrowed(_)), "{s}");
        }
    }

    #[test]
    fn key_values_in_text() {
        assert_eq!(
            mask_text(r#"{"name":"张三","deptName":"内科","doctorName":"华佗"#),
            r#"{"name":"张*","deptName":"内科","doctorName":"华佗"#
        );
        assert_eq!(
            mask_text("<patientName>欧阳娜娜</patientName><hosName>人民医院</hosName>"),
            "<patientName>欧***</patientName><hosName>人民医院</hosName>"
        );
        assert_eq!(
            mask_text("<ns:idCard> E12345678 </ns:idCard>"),
            "<ns:idCard> ********* </ns:idCard>"
        );
        assert_eq!(
            mask_text("name=%E5%BC%A0%E4%B8%89&deptName=x&userName=李四"),
            format!("name=%{}&deptName=x&userName=李*", "*".repeat(17))
        );
        assert_eq!(
            mask_text(r#"{\"patName\":\"王二麻\",\"x\":1}"#),
            r#"{\"patName\":\"王**\",\"x\":1}"#
        );
        assert_eq!(
            mask_text("patient name: Zhang San"),
            "patient name: Z**** San"
        );
        assert_eq!(mask_text("姓名 NAME：张三，"), "姓名 NAME：张*，");
        assert_eq!(
            mask_text(r#""idCard ": "E1234\"5678""#),
            r#""idCard ": "***********""#
        );
        // Not a key/value shape, or a non-sensitive key: untouched.
        for s in [
            "patient name is unknown",
            "hostname=prefront-01",
            r#"{"name": null, "phone": {"a": 1}}"#,
            "</name>after",
            "</ns:name>after",
            "a:name>after",
        ] {
            assert!(matches!(mask_text(s), Cow::Borrowed(_)), "{s}");
        }
    }

    #[test]
    fn json_create_card_example() {
        let out = masked_example(EX_1_2_1_CREATE_CARD);
        assert_eq!(out["name"], "张*");
        assert_eq!(out["idcard"], "3701**********5236");
        assert_eq!(out["phone"], "135****1254");
        assert_eq!(out["address"], "山东省济南市高新区");
        assert_eq!(out["nationName"], "汉族");
        assert_eq!(out["birthday"], "1979-07-02");
        // Not a listed key, but 15 digits: the free-text rule masks it.
        assert_eq!(out["medicalCardNumber"], "0010*******4587");
        let keys: Vec<_> = out.as_object().unwrap().keys().cloned().collect();
        let original: Vec<_> = parse(EX_1_2_1_CREATE_CARD)
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys, original);
    }

    #[test]
    fn json_spellings_and_nesting() {
        let out = masked_example(EX_1_2_2_NEWBORN);
        assert_eq!(out["motherName"], "张*");
        assert_eq!(out["motherIdcard"], "2224**********2326");

        let out = masked_example(EX_11_2_1_DEPOSIT_PUSH);
        assert_eq!(out["patientList"][0]["patName"], "王**");
        assert_eq!(out["patientList"][0]["idCard"], "3707**********3074");
        assert_eq!(out["patientList"][0]["department"], "部门");
        assert_eq!(out["patientList"][0]["patInHosCode"], "123049932321");

        let out = masked_example(EX_21_2_2_BOOK);
        assert_eq!(out["patientId"], "3701**********5236");
        assert_eq!(out["patientPhone"], "156****8989");
        assert_eq!(out["recordId"], "d6deb60352044172895a6d48172de9e4");

        let out = masked_example(EX_33_1_3_LOCK_TICKET);
        assert_eq!(out["idcardNo"], "1101**********7457");
        assert_eq!(out["telephone"], "138****9999");
        assert_eq!(out["patName"], "张*");

        let out = masked_example(EX_37_1_3_ADD_CARER);
        assert_eq!(out["name"], "张*");
        assert_eq!(out["patientIdCard"], "3701**********5236");
        assert_eq!(out["patientName"], "张*");
        assert_eq!(out["relationShip"], "父子");

        let out = masked_example(EX_14_1_1_TRANSACTIONS);
        assert_eq!(out["data"][0]["customName"], "马**");
        assert_eq!(out["data"][0]["payerName"], "沈**");
        assert_eq!(out["data"][0]["amount"], json!(0.01));
        assert_eq!(out["data"][0]["refundOrderNo"], Value::Null);

        let out = masked_example(EX_19_2_1_FOLLOW_UP);
        assert_eq!(out["data"]["patName"], "张**");
        assert_eq!(out["data"]["phoneNo"], "178****5431");
        assert_eq!(out["data"]["docName"], "华佗");
        assert_eq!(out["data"]["deptName"], "检验科");

        let out = masked_example(EX_22_2_1_SURVEY);
        assert_eq!(out["userName"], "张*");
        assert_eq!(out["docName"], "华佗");
        assert_eq!(out["deptName"], "内科门诊");
    }

    #[test]
    fn json_item_names_and_staff_are_kept() {
        let out = masked_example(EX_18_1_4_COST_SUMMARY);
        assert_eq!(out["data"]["patientName"], "张*");
        assert_eq!(out["data"]["doctor"], "扁鹊");
        assert_eq!(out["data"]["groupByCharge"][0]["name"], "床位费");
        assert_eq!(out["data"]["groupByCharge"][1]["name"], "静脉注射液");
        assert_eq!(out["data"]["groupByChargeClass"][0]["name"], "材料费");
        assert_eq!(out["data"]["diagnosis"], "下咽恶性肿瘤");

        let out = masked_example(EX_28_1_13_ITEMS);
        assert_eq!(out, parse(EX_28_1_13_ITEMS));

        let v = json!({"doctorName": "华佗", "hosName": "人民医院", "itemName": "血常规",
                       "deptName": "内科", "peduNurseName": "南丁格尔", "tel": "0531-8888888"});
        assert_eq!(mask_json(&v), v);
    }

    #[test]
    fn json_keys_are_trimmed_and_case_insensitive() {
        let v = json!({" idCard ": "370102197907025236", "PATIENTNAME": "欧阳娜娜",
                       "Phone\t": "13526521254", "id_card": "370102197907025236",
                       "Mobile": "13526521254", "caregiversName": "张三"});
        let out = mask_json(&v);
        assert_eq!(out[" idCard "], "3701**********5236");
        assert_eq!(out["PATIENTNAME"], "欧***");
        assert_eq!(out["Phone\t"], "135****1254");
        assert_eq!(out["id_card"], "3701**********5236");
        assert_eq!(out["Mobile"], "135****1254");
        assert_eq!(out["caregiversName"], "张*");
    }

    #[test]
    fn json_numbers_as_phones_and_ids() {
        let v = json!({"phone": 13526521254u64, "idCard": 370102197907025236u64,
                       "contactTel": 13526521254u64, "code": 10001, "amount": 25.6,
                       "phoneNo": [13526521254u64, "13899999999"], "telNo": null,
                       "name": {"given": "三", "family": "张"}, "isMedicalPat": true});
        let out = mask_json(&v);
        assert_eq!(out["phone"], "135****1254");
        assert_eq!(out["idCard"], "3701**********5236");
        assert_eq!(out["contactTel"], "135****1254");
        assert_eq!(out["code"], json!(10001));
        assert_eq!(out["amount"], json!(25.6));
        assert_eq!(out["phoneNo"], json!(["135****1254", "138****9999"]));
        assert_eq!(out["telNo"], Value::Null);
        assert_eq!(out["name"], json!({"given": "*", "family": "*"}));
        assert_eq!(out["isMedicalPat"], json!(true));
    }

    #[test]
    fn json_free_text_values_and_embedded_json() {
        let v = json!({"msg": "患者370102197907025236已建卡，联系电话13526521254",
                       "data": "{\"patientName\":\"张三\",\"deptName\":\"内科\"}",
                       "transactionId": "50000206262018031403806908722"});
        let out = mask_json(&v);
        assert_eq!(
            out["msg"],
            "患者3701**********5236已建卡，联系电话135****1254"
        );
        assert_eq!(
            out["data"],
            "{\"patientName\":\"张*\",\"deptName\":\"内科\"}"
        );
        assert_eq!(out["transactionId"], "50000206262018031403806908722");
    }

    #[test]
    fn originals_never_survive() {
        for (example, originals) in EXAMPLES {
            let compact = serde_json::to_string(&masked_example(example)).unwrap();
            let body = mask_body(example.as_bytes(), 10_000);
            let text = mask_text(example).into_owned();
            for out in [&compact, &body, &text] {
                for original in *originals {
                    assert!(!out.contains(original), "{original} leaked in {out}");
                }
            }
        }
    }

    #[test]
    fn body_is_compact_and_cut() {
        let out = mask_body(EX_1_2_1_CREATE_CARD.as_bytes(), 10_000);
        assert!(out.starts_with(r#"{"#));
        assert!(!out.contains(": "));
        assert!(out.contains(r#""phone":"135****1254""#));
        assert_eq!(parse(&out), masked_example(EX_1_2_1_CREATE_CARD));

        let cut = mask_body(EX_1_2_1_CREATE_CARD.as_bytes(), 20);
        assert_eq!(cut.chars().count(), 20);
        assert!(cut.ends_with('…'));
        assert!(out.starts_with(cut.trim_end_matches('…')));

        let all = out.chars().count();
        assert_eq!(mask_body(EX_1_2_1_CREATE_CARD.as_bytes(), all), out);
        assert!(mask_body(EX_1_2_1_CREATE_CARD.as_bytes(), all - 1).ends_with('…'));
        assert_eq!(mask_body(b"hello", 0), "");
        assert_eq!(mask_body(b"hello", 1), "…");
        assert_eq!(mask_body(b"", 10), "");
        assert_eq!(mask_body("张三李四".as_bytes(), 3), "张三…");
    }

    #[test]
    fn body_that_is_not_json() {
        assert_eq!(
            mask_body("plain 13526521254 text".as_bytes(), 100),
            "plain 135****1254 text"
        );
        let xml = "<req><name>张三</name><idCard>370102197907025236</idCard></req>";
        assert_eq!(
            mask_body(xml.as_bytes(), 1000),
            "<req><name>张*</name><idCard>3701**********5236</idCard></req>"
        );
        let truncated = r#"{"name":"张三","phone":"13526521254","idcard":"3701021979"#;
        let out = mask_body(truncated.as_bytes(), 1000);
        assert!(
            !out.contains("张三") && !out.contains("13526521254"),
            "{out}"
        );
        assert!(!out.contains("3701021979"), "{out}");
    }

    #[test]
    fn body_with_invalid_utf8() {
        let mut bytes = b"\xff\xfe{\"name\":\"".to_vec();
        bytes.extend_from_slice("张三".as_bytes());
        bytes.extend_from_slice(b"\",\"phone\":\"13526521254\"}\xc3");
        let out = mask_body(&bytes, 1000);
        assert!(out.contains("\"name\":\"张*\""), "{out}");
        assert!(out.contains("135****1254"), "{out}");
        assert!(out.contains('\u{fffd}'));
        // GBK-encoded 张三 (0xD5C5 0xC8FD) is not UTF-8.
        let out = mask_body(
            b"{\"patName\":\"\xd5\xc5\xc8\xfd\",\"telNo\":13526521254}",
            1000,
        );
        assert!(out.contains("135****1254"), "{out}");
        assert!(!out.contains("\u{fffd}\u{fffd}"), "{out}");
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let n = 10_000;
        let arrays = format!("{}13526521254{}", "[".repeat(n), "]".repeat(n));
        let out = mask_body(arrays.as_bytes(), 50);
        assert_eq!(out.chars().count(), 50);
        let out = mask_body(arrays.as_bytes(), usize::MAX);
        assert!(out.contains("135****1254") && !out.contains("13526521254"));

        let objects = format!("{}\"张三\"{}", "{\"name\":".repeat(n), "}".repeat(n));
        let out = mask_body(objects.as_bytes(), usize::MAX);
        assert!(!out.contains("张三"));

        let unbalanced = "{\"a\":[".repeat(n);
        let _ = mask_body(unbalanced.as_bytes(), 100);
    }

    #[test]
    fn nesting_is_capped_at_64() {
        // 100 levels parse with serde_json's own limit (128), then get capped.
        let depth = 100;
        let s = format!("{}\"13526521254\"{}", "[".repeat(depth), "]".repeat(depth));
        let out = mask_body(s.as_bytes(), usize::MAX);
        let expected = format!("{}\"…\"{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(out, expected);

        let mut v = json!({"phone": "13526521254"});
        for _ in 0..200 {
            v = json!({"nested": v});
        }
        let out = mask_json(&v);
        let text = serde_json::to_string(&out).unwrap();
        assert!(text.contains('…') && !text.contains("13526521254"));

        let shallow = json!([[["13526521254"]]]);
        assert_eq!(mask_json(&shallow), json!([[["135****1254"]]]));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // Deterministic pseudo-random inputs biased towards the characters the scanners care
        // about.
        let alphabet: &[&[u8]] = &[
            b"{",
            b"}",
            b"[",
            b"]",
            b"\"",
            b"\\",
            b":",
            b"=",
            b"<",
            b">",
            b"/",
            b",",
            b" ",
            b"1",
            b"3",
            b"8",
            b"6",
            b"X",
            b"name",
            b"idCard",
            b"phone",
            b"\xff",
            b"\xe5\xbc",
            "张".as_bytes(),
            "：".as_bytes(),
            "１".as_bytes(),
            b"'",
            b"\n",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for round in 0..3_000 {
            let mut bytes = Vec::new();
            for _ in 0..(round % 97) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let piece = alphabet[(state % alphabet.len() as u64) as usize];
                bytes.extend_from_slice(piece);
            }
            let max = round % 41;
            let out = mask_body(&bytes, max);
            assert!(out.chars().count() <= max);
            let _ = mask_text(&String::from_utf8_lossy(&bytes));
        }
    }
}
