//! Rewrites LAN links inside a HIS answer to signed `/files/<token>` links, touching nothing
//! else: the answer is scanned, not re-serialised, so key order, number spelling, escapes and
//! large base64 documents pass through byte for byte.

use bytes::Bytes;

/// Deepest nesting the scanner follows; a deeper answer is passed through unchanged.
const MAX_DEPTH: usize = 128;

/// One string in the answer that is a candidate for rewriting: the span of the JSON string
/// token, quotes included.
type Span = (usize, usize);

/// Finds the string values to look at: those of the named fields (a string or an array of
/// strings), where a `dcms` field counts only when its object's `type` is `url`. Returns `None`
/// for text that is not JSON (or too deep), which is then left alone.
pub fn candidate_spans(json: &[u8], fields: &[String]) -> Option<Vec<Span>> {
    let mut s = Scanner {
        b: json,
        i: 0,
        fields,
        out: Vec::new(),
    };
    s.ws();
    s.value(0)?;
    s.ws();
    // Spans must be in document order for `splice`.
    s.out.sort_unstable();
    (s.i == json.len()).then_some(s.out)
}

/// Replaces each candidate string for which `map` returns a new value.
pub fn splice(json: &Bytes, spans: &[Span], mut map: impl FnMut(&str) -> Option<String>) -> Bytes {
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    for &(start, end) in spans {
        let Ok(text) = serde_json::from_slice::<String>(&json[start..end]) else {
            continue;
        };
        let Some(new) = map(&text) else { continue };
        let Ok(encoded) = serde_json::to_string(&new) else {
            continue;
        };
        let buf = out.get_or_insert_with(|| Vec::with_capacity(json.len() + 256));
        buf.extend_from_slice(&json[copied..start]);
        buf.extend_from_slice(encoded.as_bytes());
        copied = end;
    }
    match out {
        None => json.clone(),
        Some(mut buf) => {
            buf.extend_from_slice(&json[copied..]);
            Bytes::from(buf)
        }
    }
}

/// What a value turned out to be, as far as rewriting cares.
enum Seen {
    Str(Span),
    Strings(Vec<Span>),
    Other,
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
    fields: &'a [String],
    out: Vec<Span>,
}

impl Scanner<'_> {
    fn ws(&mut self) {
        while self
            .b
            .get(self.i)
            .is_some_and(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
        {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn value(&mut self, depth: usize) -> Option<Seen> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'"' => self.string().map(Seen::Str),
            b'{' => self.object(depth).map(|()| Seen::Other),
            b'[' => self.array(depth),
            b'-' | b'0'..=b'9' => {
                let start = self.i;
                while self
                    .peek()
                    .is_some_and(|c| matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                {
                    self.i += 1;
                }
                (self.i > start).then_some(Seen::Other)
            }
            _ => {
                for lit in [&b"true"[..], b"false", b"null"] {
                    if self.b[self.i..].starts_with(lit) {
                        self.i += lit.len();
                        return Some(Seen::Other);
                    }
                }
                None
            }
        }
    }

    /// A string token; returns its span, quotes included.
    fn string(&mut self) -> Option<Span> {
        let start = self.i;
        self.i += 1;
        loop {
            let at = memchr::memchr2(b'"', b'\\', &self.b[self.i..])?;
            self.i += at;
            if self.b[self.i] == b'\\' {
                self.i += 2;
                if self.i > self.b.len() {
                    return None;
                }
            } else {
                self.i += 1;
                return Some((start, self.i));
            }
        }
    }

    fn array(&mut self, depth: usize) -> Option<Seen> {
        self.i += 1;
        let mut strings = Vec::new();
        let mut all_strings = true;
        self.ws();
        if self.peek()? == b']' {
            self.i += 1;
            return Some(Seen::Strings(strings));
        }
        loop {
            self.ws();
            match self.value(depth + 1)? {
                Seen::Str(span) => strings.push(span),
                _ => all_strings = false,
            }
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return Some(if all_strings {
                        Seen::Strings(strings)
                    } else {
                        Seen::Other
                    });
                }
                _ => return None,
            }
        }
    }

    fn object(&mut self, depth: usize) -> Option<()> {
        self.i += 1;
        let mut found: Vec<(bool, Seen)> = Vec::new();
        let mut type_is_url = false;
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            self.ws();
            if self.peek()? != b'"' {
                return None;
            }
            let (ks, ke) = self.string()?;
            let key: String = serde_json::from_slice(&self.b[ks..ke]).ok()?;
            self.ws();
            if self.peek()? != b':' {
                return None;
            }
            self.i += 1;
            self.ws();
            let seen = self.value(depth + 1)?;
            if key == "type" {
                if let Seen::Str((s, e)) = seen {
                    type_is_url = serde_json::from_slice::<String>(&self.b[s..e])
                        .is_ok_and(|t| t.trim().eq_ignore_ascii_case("url"));
                }
            } else if self.fields.contains(&key) {
                found.push((key == "dcms", seen));
            }
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    break;
                }
                _ => return None,
            }
        }
        for (is_dcms, seen) in found {
            if is_dcms && !type_is_url {
                continue;
            }
            match seen {
                Seen::Str(span) => self.out.push(span),
                Seen::Strings(spans) => self.out.extend(spans),
                Seen::Other => {}
            }
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> Vec<String> {
        crate::config::DEFAULT_REWRITE_FIELDS
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    fn rewrite(json: &str) -> String {
        let b = Bytes::from(json.to_string());
        let spans = candidate_spans(&b, &fields()).unwrap_or_default();
        let out = splice(&b, &spans, |u| {
            u.starts_with("http://10.0.0.1/").then(|| format!("L<{u}>"))
        });
        String::from_utf8(out.to_vec()).unwrap_or_default()
    }

    #[test]
    fn only_named_fields_on_internal_hosts_change() {
        let src = r#"{"success":true,"code":"10001","n":1.50e3,"data":[
            {"thumbnailUrl":"http://10.0.0.1/t.png","dcms":["http://10.0.0.1/a","http://other/b"],"type":"url"},
            {"dcms":["http://10.0.0.1/c"],"type":"dcmId","pdfUrl":"http:\/\/10.0.0.1\/r.pdf"},
            {"note":"http://10.0.0.1/x","pdf":"JVBERi0x"}]}"#;
        let want = r#"{"success":true,"code":"10001","n":1.50e3,"data":[
            {"thumbnailUrl":"L<http://10.0.0.1/t.png>","dcms":["L<http://10.0.0.1/a>","http://other/b"],"type":"url"},
            {"dcms":["http://10.0.0.1/c"],"type":"dcmId","pdfUrl":"L<http://10.0.0.1/r.pdf>"},
            {"note":"http://10.0.0.1/x","pdf":"JVBERi0x"}]}"#;
        assert_eq!(rewrite(src), want);
    }

    #[test]
    fn type_after_dcms_counts_too() {
        let src = r#"{"dcms":["http://10.0.0.1/a"],"type":"url"}"#;
        assert_eq!(
            rewrite(src),
            r#"{"dcms":["L<http://10.0.0.1/a>"],"type":"url"}"#
        );
    }

    #[test]
    fn broken_or_too_deep_json_is_left_alone() {
        for src in [
            r#"{"pdfUrl":"http://10.0.0.1/a""#,
            r#"{"pdfUrl":"http://10.0.0.1/a"} trailing"#,
            r#"{"pdfUrl" "http://10.0.0.1/a"}"#,
            "\"\\",
        ] {
            assert_eq!(rewrite(src), src);
        }
        let deep = format!(
            "{}{{\"pdfUrl\":\"http://10.0.0.1/a\"}}{}",
            "[".repeat(200),
            "]".repeat(200)
        );
        assert_eq!(rewrite(&deep), deep);
    }
}
