//! The properties the fuzz targets check, one function per target, each taking the raw fuzz
//! input. Shared by the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`) and by the regression
//! test (`tests/fuzz_regressions.rs`), which feeds every file under `fuzz/regressions/<target>/`
//! to the same function, so a crash found once is checked in CI for good.
//!
//! Every function must return normally for every input; a panic (a failed assertion included)
//! is a finding. Inputs that need several fields are cut with [`Cut`]: a length byte, then that
//! many bytes, per field; the rest of the input is the last field.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use data_encoding::{BASE64URL_NOPAD, HEXLOWER};
use encoding_rs::{Encoding, GB18030, GBK, UTF_8};
use ipnet::IpNet;
use serde_json::Value;

/// Reads fields off a fuzz input: deterministic, and never fails (missing bytes are zeros or
/// empty fields).
pub struct Cut<'a>(&'a [u8]);

impl<'a> Cut<'a> {
    pub fn new(data: &'a [u8]) -> Cut<'a> {
        Cut(data)
    }

    pub fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    pub fn u64(&mut self) -> u64 {
        let mut v = [0u8; 8];
        for b in &mut v {
            *b = self.byte();
        }
        u64::from_be_bytes(v)
    }

    /// A length byte, then up to that many bytes.
    pub fn field(&mut self) -> &'a [u8] {
        let n = usize::from(self.byte()).min(self.0.len());
        let (f, rest) = self.0.split_at(n);
        self.0 = rest;
        f
    }

    /// Two length bytes (big-endian), then up to that many bytes.
    pub fn long_field(&mut self) -> &'a [u8] {
        let n = (usize::from(self.byte()) << 8) | usize::from(self.byte());
        let n = n.min(self.0.len());
        let (f, rest) = self.0.split_at(n);
        self.0 = rest;
        f
    }

    /// A flag byte (odd: present), then a field.
    pub fn optional(&mut self) -> Option<&'a [u8]> {
        let present = self.byte() & 1 == 1;
        let f = self.field();
        present.then_some(f)
    }

    pub fn rest(self) -> &'a [u8] {
        self.0
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// ---------------------------------------------------------------------------------------------
// SOAP envelopes and XML → JSON (the two original targets)

/// Any bytes, under any of the Content-Types callers send, through the envelope parsers: Ok
/// or Err, never a panic, a hang or a blown stack. A HIS answer read for `param = "xml"` in one
/// pass gives what cutting the wrapper out and converting it gives, whenever both succeed.
pub fn soap_envelope(data: &[u8]) {
    use prefront::soap::envelope::{
        parse_call, parse_his_answer, parse_his_answer_json, HisAnswer, HisJsonAnswer,
    };
    use prefront::soap::xmljson::{xml_to_json, ArrayHints};
    const CONTENT_TYPES: &[Option<&str>] = &[
        None,
        Some("text/xml; charset=utf-8"),
        Some("application/soap+xml; charset=GBK"),
        Some("text/xml; charset=gb2312"),
    ];
    let (ct, body) = match data.split_first() {
        Some((b, rest)) => (CONTENT_TYPES[usize::from(*b) % CONTENT_TYPES.len()], rest),
        None => (None, data),
    };
    let _ = parse_call(body, ct);
    let hints = ArrayHints::new(["data", "data.detail", "patientList"]);
    let two_pass = match parse_his_answer(body, ct) {
        Ok(HisAnswer::Wrapper { xml, .. }) => xml_to_json(xml.as_bytes(), &hints).ok(),
        _ => None,
    };
    if let (Some(two), Ok(HisJsonAnswer::Wrapper(Ok(one)))) =
        (two_pass, parse_his_answer_json(body, ct, &hints))
    {
        assert_eq!(
            one, two,
            "one-pass and two-pass readings of a HIS answer differ"
        );
    }
}

/// Any bytes through the XML → JSON mapper with a few array hints: Ok or Err, never a panic.
/// When the input maps, the JSON maps back to XML without error.
pub fn xml_to_json(data: &[u8]) {
    use prefront::soap::xmljson::{json_to_xml, xml_to_json, ArrayHints};
    let hints = ArrayHints::new(["data", "data.detail", "patientList"]);
    if let Ok(v) = xml_to_json(data, &hints) {
        let mut out = String::new();
        let _ = json_to_xml(&v, None, &mut out);
    }
}

// ---------------------------------------------------------------------------------------------
// Charsets

const CONTENT_TYPES: &[Option<&str>] = &[
    None,
    Some("application/json"),
    Some("application/json;charset=UTF-8"),
    Some("application/json; charset=\"utf-8\""),
    Some("application/json;charset=GBK"),
    Some("text/xml; charset=gb2312"),
    Some("application/json;charset=GB18030"),
    Some("application/json; charset = gbk ; x=1"),
    Some("application/json;charset=UTF-16"),
    Some("text/plain; charset=ebcdic"),
    Some("application/json;charset="),
];

/// Decodes `bytes` with `enc` without replacement.
fn decode_strict(enc: &'static Encoding, bytes: &[u8]) -> Option<String> {
    enc.decode_without_bom_handling_and_without_replacement(bytes)
        .map(|c| c.into_owned())
}

/// `src/charset.rs`: a body in any declared charset decodes to UTF-8 or is refused; what is
/// decoded is exactly what the bytes say; an answer encoded back for the caller decodes
/// strictly in the caller's charset (a GBK caller gets only GBK characters) and, for JSON,
/// means the same JSON.
pub fn charset(data: &[u8]) {
    use prefront::charset::{declared, encoding_for, json_for, to_utf8, xml_for};
    let mut cut = Cut::new(data);
    let selector = cut.byte();
    let custom;
    let content_type = if selector & 0x80 != 0 {
        custom = text(cut.field());
        Some(custom.as_str())
    } else {
        CONTENT_TYPES[usize::from(selector) % CONTENT_TYPES.len()]
    };
    let body = Bytes::copy_from_slice(cut.rest());
    let label = declared(content_type);
    let Ok(utf8) = to_utf8(&body, content_type) else {
        return;
    };
    let decoded = utf8.as_str();
    let unbommed = body
        .strip_prefix(b"\xEF\xBB\xBF".as_slice())
        .unwrap_or(&body);
    let enc = match &label {
        Some(l) => encoding_for(l).expect("to_utf8 accepted the label"),
        None => UTF_8,
    };
    if enc == UTF_8 {
        assert_eq!(utf8.as_bytes(), unbommed, "UTF-8 passes through unchanged");
    } else {
        assert_eq!(
            decode_strict(GB18030, unbommed).as_deref(),
            Some(decoded),
            "GBK-family bodies decode as GB18030"
        );
    }
    let Some(label) = label else { return };
    let Some(answer_enc) = Encoding::for_label(label.trim().as_bytes()) else {
        return;
    };
    if answer_enc != GBK && answer_enc != GB18030 {
        return;
    }
    for (what, encoded) in [
        ("JSON", json_for(utf8.as_bytes(), Some(&label))),
        ("XML", xml_for(utf8.as_bytes(), Some(&label))),
    ] {
        let back = decode_strict(answer_enc, &encoded)
            .unwrap_or_else(|| panic!("{what} answer for {label:?} does not decode strictly"));
        if answer_enc == GB18030 {
            assert_eq!(back, decoded, "{what}: GB18030 carries every character");
        } else {
            let (_, _, unmappable) = GBK.encode(&back);
            assert!(
                !unmappable,
                "{what} answer for {label:?} holds a character outside GBK"
            );
        }
        if what == "JSON" {
            if let Ok(v) = serde_json::from_str::<Value>(decoded) {
                assert_eq!(
                    serde_json::from_str::<Value>(&back).ok(),
                    Some(v),
                    "the JSON answer in {label:?} means the same JSON"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// JSON → XML

/// Largest growth from the JSON text to the XML written for it. Every JSON construct maps to
/// XML within a small factor (escapes, tags around short keys), except a long key repeated for
/// every item of an array: that is key length × item count, quadratic in the input, and a
/// 4 MiB body from the cloud would ask the box for terabytes.
pub const JSON_TO_XML_MAX_GROWTH: usize = 64;

/// Whether `v` (a member value) is in the round-trip domain of the module documentation:
/// string scalars, non-empty objects, non-empty arrays not directly nested, no `#text` keys.
/// Collects the dotted paths of its arrays into `hints`.
fn round_trippable(v: &Value, path: &str, hints: &mut Vec<String>) -> bool {
    match v {
        Value::String(_) => true,
        Value::Object(m) => {
            !m.is_empty()
                && m.iter().all(|(k, x)| {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    k.trim() == k && k != "#text" && round_trippable(x, &p, hints)
                })
        }
        Value::Array(items) => {
            hints.push(path.to_string());
            !items.is_empty()
                && items
                    .iter()
                    .all(|x| !x.is_array() && round_trippable(x, path, hints))
        }
        _ => false,
    }
}

/// `prefront::soap::xmljson::json_to_xml` on any JSON: Ok or Err, never a panic; what it writes
/// is well-formed XML the box reads back; inside the documented round-trip domain it reads back
/// as the same JSON; and the XML is at most [`JSON_TO_XML_MAX_GROWTH`] × the JSON text.
pub fn json_to_xml(data: &[u8]) {
    use prefront::soap::xmljson::{json_to_xml, xml_to_json, ArrayHints, XmlJsonError};
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    for prefix in [None, Some("tns")] {
        let mut out = String::new();
        if json_to_xml(&value, prefix, &mut out).is_err() {
            assert!(out.is_empty(), "on error the output is left as it was");
            continue;
        }
        assert!(
            out.len() <= JSON_TO_XML_MAX_GROWTH * data.len() + 1024,
            "{} bytes of JSON became {} bytes of XML",
            data.len(),
            out.len()
        );
        let mut hints = Vec::new();
        let in_domain = match &value {
            Value::Object(m) => m
                .iter()
                .all(|(k, x)| k.trim() == k && k != "#text" && round_trippable(x, k, &mut hints)),
            _ => false,
        };
        let doc = format!("<r xmlns:tns=\"urn:fuzz\">{out}</r>");
        match xml_to_json(doc.as_bytes(), &ArrayHints::new(&hints)) {
            Ok(back) => {
                if in_domain {
                    assert_eq!(back, value, "round trip");
                }
            }
            Err(XmlJsonError::TooLarge { .. }) => {}
            Err(e) => panic!("json_to_xml wrote XML the box cannot read back: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// /files/<token>

pub const LINK_KEY: &[u8] = b"fuzz link key, 32 bytes or more....";

/// `prefront::pacs::LinkSigner::verify` on any token: never a panic, never accepted (no token
/// can be made without the key); and every token the box mints verifies to its URL until it
/// expires, and not once anything in it is changed or cut.
pub fn files_token(data: &[u8]) {
    use prefront::pacs::{LinkError, LinkSigner};
    let signer = LinkSigner::new(LINK_KEY);
    let mut cut = Cut::new(data);
    let now = cut.u64();
    let expires = cut.u64();
    let position = (usize::from(cut.byte()) << 8) | usize::from(cut.byte());
    let url = text(cut.long_field());
    let token = text(cut.rest());
    // Any token.
    if let Ok(u) = signer.verify(&token, now) {
        panic!("a token the box never minted was accepted (for {u:?})");
    }
    // A minted token.
    let Ok(minted) = signer.mint(&url, expires) else {
        return; // no system randomness: nothing minted, nothing to check
    };
    assert!(
        minted
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "tokens are URL-safe"
    );
    let want = if expires >= now {
        Ok(url.clone())
    } else {
        Err(LinkError::Expired)
    };
    assert_eq!(
        signer.verify(&minted, now),
        want,
        "a minted token ({} bytes of URL) verifies",
        url.len()
    );
    if url.len() >= 16 {
        let raw = BASE64URL_NOPAD
            .decode(minted.as_bytes())
            .unwrap_or_default();
        assert!(
            !raw.windows(url.len()).any(|w| w == url.as_bytes()),
            "the URL is not readable in the token"
        );
    }
    let at = position % minted.len();
    let mut changed = minted.clone().into_bytes();
    changed[at] = if changed[at] == b'A' { b'B' } else { b'A' };
    let changed = String::from_utf8(changed).unwrap_or_default();
    assert_eq!(signer.verify(&changed, now), Err(LinkError::Forged));
    assert_eq!(signer.verify(&minted[..at], now), Err(LinkError::Forged));
}

// ---------------------------------------------------------------------------------------------
// Signed calls

/// `prefront::auth::Signer::verify` on any headers and body: never a panic; accepted only with
/// the right HMAC over the canonical string and a timestamp within the skew; and a call the
/// box signs verifies once, then is a replay, and fails for any other body.
pub fn signed_call(data: &[u8]) {
    use prefront::auth::{canonical, AuthError, Signer};
    let mut cut = Cut::new(data);
    let secret = match cut.field() {
        [] => b"a shared secret of at least 32 bytes!".as_slice(),
        s => s,
    };
    let method = text(cut.field());
    let target = text(cut.field());
    let ts = cut.optional().map(text);
    let sig = cut.optional().map(text);
    let now = cut.u64();
    let body = cut.rest();
    let skew = Duration::from_secs(300);
    let signer = Signer::new(secret, skew);
    if signer
        .verify(&method, &target, ts.as_deref(), sig.as_deref(), body, now)
        .is_ok()
    {
        let (ts, sig) = (ts.unwrap_or_default(), sig.unwrap_or_default());
        let n: u64 = ts
            .trim()
            .parse()
            .expect("an accepted timestamp is a number");
        assert!(n.abs_diff(now) <= skew.as_secs());
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        let want = ring::hmac::sign(
            &key,
            canonical(&method, &target, ts.trim(), body).as_bytes(),
        );
        assert_eq!(
            HEXLOWER
                .decode(sig.trim().to_ascii_lowercase().as_bytes())
                .ok()
                .as_deref(),
            Some(want.as_ref()),
            "only the right HMAC is accepted"
        );
    }
    let signer = Signer::new(secret, skew);
    let [(_, ts), (_, sig)] = signer.sign(&method, &target, body, now);
    let verify = |b: &[u8]| signer.verify(&method, &target, Some(&ts), Some(&sig), b, now);
    let mut other = body.to_vec();
    other.push(b'x');
    assert_eq!(verify(&other), Err(AuthError::BadSignature));
    assert_eq!(verify(body), Ok(()), "a call the box signed verifies");
    assert_eq!(verify(body), Err(AuthError::Replayed));
}

// ---------------------------------------------------------------------------------------------
// Link rewriting

/// The rewriter's stand-in for "an internal URL": strings starting `http://10.`; the new value
/// holds characters that need escaping.
fn rewrite_map(s: &str) -> Option<String> {
    s.starts_with("http://10.")
        .then(|| format!("https://box/files/\"{}\\\u{1}\u{2028}<{s}>", s.len()))
}

/// `want` is `got` with exactly the strings `rewrite_map` maps replaced, and nothing else.
fn same_but_rewritten(orig: &Value, got: &Value) -> bool {
    match (orig, got) {
        (Value::String(a), Value::String(b)) => a == b || rewrite_map(a).as_deref() == Some(b),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_but_rewritten(x, y))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|((ka, x), (kb, y))| ka == kb && same_but_rewritten(x, y))
        }
        _ => orig == got,
    }
}

/// `prefront::pacs::rewrite::{candidate_spans, splice}` on any answer: never a panic; spans are
/// string tokens in order; the output is valid JSON iff the input was, means the same JSON but
/// for the rewritten strings, and equals the input byte for byte when nothing was rewritten;
/// and any answer the box accepts from the HIS as JSON is scanned (else its LAN links would
/// leave the box in clear).
pub fn link_rewrite(data: &[u8]) {
    use prefront::pacs::rewrite::{candidate_spans, splice};
    let fields: Vec<String> = prefront::config::DEFAULT_REWRITE_FIELDS
        .iter()
        .map(|s| s.to_string())
        .collect();
    let json = Bytes::copy_from_slice(data);
    // What the box accepts from the HIS (`upstream::accept_json_answer`): UTF-8 (after
    // charset decoding) that passes the box's one JSON check.
    let accepted = std::str::from_utf8(data).is_ok() && prefront::json::validate(data).is_ok();
    let Some(spans) = candidate_spans(&json, &fields) else {
        assert!(
            !accepted,
            "an answer the box accepts as JSON was not scanned: its links would pass unrewritten"
        );
        return;
    };
    let mut last_end = 0;
    for &(s, e) in &spans {
        assert!(s >= last_end && s < e && e <= data.len(), "spans in order");
        assert!(
            data[s] == b'"' && data[e - 1] == b'"' && e - s >= 2,
            "spans are strings"
        );
        last_end = e;
    }
    let mut mapped = 0;
    let out = splice(&json, &spans, |s| {
        let r = rewrite_map(s);
        mapped += usize::from(r.is_some());
        r
    });
    if mapped == 0 {
        assert_eq!(out, json, "nothing rewritten: byte for byte the same");
    }
    let before = serde_json::from_slice::<Value>(data);
    let after = serde_json::from_slice::<Value>(&out);
    assert_eq!(
        before.is_ok(),
        after.is_ok(),
        "valid JSON iff the input was"
    );
    if let (Ok(b), Ok(a)) = (before, after) {
        assert!(same_but_rewritten(&b, &a), "only candidate strings change");
    }
}

// ---------------------------------------------------------------------------------------------
// X-Forwarded-For

fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter().filter_map(|s| s.parse().ok()).collect()
}

fn parse_entry(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

/// `prefront::listener::allowlist::AccessPolicy::client_behind_proxy` for a trusted proxy peer
/// and any `X-Forwarded-For` headers: never a panic; the client is the peer or an entry whose
/// right-hand neighbours are all trusted proxies; and nothing written to the left of the first
/// untrusted entry (what a caller controls) changes the answer.
pub fn forwarded_for(data: &[u8]) {
    use prefront::listener::allowlist::AccessPolicy;
    // Every set trusts the three peers below.
    const SETS: &[(&[&str], &[&str])] = &[
        (&["10.0.0.0/8", "fd00::/8"], &["192.168.1.0/24", "::1/128"]),
        (&["0.0.0.0/0", "::/0"], &["192.168.1.10/32", "::1/128"]),
        (&[], &["192.168.0.0/16", "10.0.0.0/8", "::/0"]),
    ];
    let mut cut = Cut::new(data);
    let (allow, trusted) = SETS[usize::from(cut.byte()) % SETS.len()];
    let trusted = nets(trusted);
    let policy = AccessPolicy::new(nets(allow), trusted.clone());
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(&ip));
    // The peer is a trusted proxy (the only case the gateway asks about).
    let peer = match cut.byte() % 3 {
        0 => IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10)),
        1 => IpAddr::V6(Ipv6Addr::LOCALHOST),
        _ => IpAddr::V6(Ipv4Addr::new(192, 168, 1, 10).to_ipv6_mapped()),
    };
    assert!(
        is_trusted(peer.to_canonical()),
        "the harness picks a trusted peer"
    );
    let mut headers = hyper::HeaderMap::new();
    for line in cut.rest().split(|b| *b == b'\n') {
        if let Ok(v) = hyper::header::HeaderValue::from_bytes(line) {
            headers.append("x-forwarded-for", v);
        }
    }
    let client = policy.client_behind_proxy(peer, &headers);
    let mut entries: Vec<String> = Vec::new();
    for v in headers.get_all("x-forwarded-for") {
        match v.to_str() {
            Ok(s) => entries.extend(
                s.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            ),
            Err(_) => {
                assert_eq!(client, None, "a header that is not text decides nothing");
                return;
            }
        }
    }
    let Some(c) = client else {
        assert!(
            entries.iter().any(|e| parse_entry(e).is_none()),
            "refused only for an entry that is not an address"
        );
        return;
    };
    if c != peer.to_canonical() || !entries.is_empty() {
        let k = entries
            .iter()
            .rposition(|e| parse_entry(e).map(|ip| ip.to_canonical()) == Some(c))
            .expect("the client is one of the entries");
        assert!(
            entries[k + 1..]
                .iter()
                .all(|e| parse_entry(e).is_some_and(|ip| is_trusted(ip.to_canonical()))),
            "every entry right of the client is a trusted proxy"
        );
    }
    if !is_trusted(c) {
        // A caller writing more to the left cannot change who it is.
        let mut more = hyper::HeaderMap::new();
        more.append(
            "x-forwarded-for",
            hyper::header::HeaderValue::from_static("10.1.2.3, not-an-address"),
        );
        for v in headers.get_all("x-forwarded-for") {
            more.append("x-forwarded-for", v.clone());
        }
        assert_eq!(policy.client_behind_proxy(peer, &more), Some(c));
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration

/// `prefront::Config::from_toml` on any text: never a panic; a refusal names at least one
/// problem, each printable and on a line the text has.
pub fn config_toml(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let lines = text.lines().count() + 1;
    match prefront::Config::from_toml(&text, Path::new("/nonexistent/prefront-fuzz")) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                let _ = w.to_string();
            }
        }
        Err(e) => {
            assert!(!e.problems.is_empty(), "a refusal names its problems");
            for p in e.problems.iter().chain(&e.warnings) {
                let _ = p.to_string();
                if let Some(l) = p.line {
                    assert!(l >= 1 && l <= lines, "line {l} of a {lines}-line text");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The one JSON check

/// Nesting depth of a JSON value (a scalar is 0).
fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Whether every number in `v` is one a 64-bit field or a double holds exactly enough.
fn numbers_sane(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.as_f64().is_some_and(|f| {
            f.is_finite()
                && (n.is_i64()
                    || n.is_u64()
                    || f.fract() != 0.0
                    || f.abs() < 18_446_744_073_709_551_616.0)
        }),
        Value::Array(a) => a.iter().all(numbers_sane),
        Value::Object(m) => m.values().all(numbers_sane),
        _ => true,
    }
}

/// `prefront::json::validate`, the gate every JSON payload crossing the box passes: never a
/// panic; what it accepts is JSON serde_json reads, at most 128 deep, with sane numbers; the
/// box's own re-serialisation of it passes too; and the same text with one key written twice
/// does not.
pub fn json_check(data: &[u8]) {
    use prefront::json::validate;
    if validate(data).is_err() {
        return;
    }
    let v: Value = serde_json::from_slice(data).expect("accepted JSON is JSON");
    assert!(depth(&v) <= 128, "accepted JSON {} deep", depth(&v));
    assert!(numbers_sane(&v), "accepted a number no 64-bit field holds");
    let again = serde_json::to_string(&v).expect("serialises");
    assert!(
        validate(again.as_bytes()).is_ok(),
        "re-serialised JSON passes"
    );
    if let Value::Object(m) = &v {
        if let Some(k) = m.keys().next() {
            let key = serde_json::to_string(k).expect("a key serialises");
            let doubled = format!("{{{key}:null,{}", &again[1..]);
            assert!(
                validate(doubled.as_bytes()).is_err(),
                "a key twice is refused"
            );
        }
    }
}
