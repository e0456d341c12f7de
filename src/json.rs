//! The one JSON check every payload crossing the box passes (callers' bodies, SOAP `param`s,
//! answers from the cloud and the HIS), so the box never forwards JSON that two parsers would
//! read differently:
//!
//! - at most 128 levels of nesting (serde_json's recursion limit; deeper input would overflow
//!   the stack of a recursive-descent parser upstream);
//! - no object with the same key twice (first-wins and last-wins parsers disagree);
//! - no number that is not finite (`1e999`) and no integer beyond the 64-bit range (a double
//!   loses its digits: two different identifiers would compare equal).

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Checks `text`; the error names the problem and its position, never the offending value.
pub fn validate(text: &[u8]) -> Result<(), serde_json::Error> {
    validate_noting(text, None).map(|_| ())
}

/// A member of the top-level object, as `validate_noting` saw it (only its kind when it is
/// neither a string nor an integer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Member {
    Str(String),
    /// An integer, in decimal.
    Int(String),
    /// `object`, `array`, `boolean`, `null` or `number with a fraction`.
    Other(&'static str),
}

/// `validate`, noting on the way the value of the top-level object's member `key` (the
/// document is read once): `None` when there is no such member or the document is not an object.
pub fn validate_noting(
    text: &[u8],
    key: Option<&str>,
) -> Result<Option<Member>, serde_json::Error> {
    match std::str::from_utf8(text) {
        // Checked once here, so serde_json does not check each string again.
        Ok(text) => validate_str_noting(text, key),
        // serde_json's own error names where the bad byte is.
        Err(_) => check(&mut serde_json::Deserializer::from_slice(text), key),
    }
}

/// `validate_noting` for text already known to be UTF-8 (`charset::to_utf8`).
pub fn validate_str_noting(
    text: &str,
    key: Option<&str>,
) -> Result<Option<Member>, serde_json::Error> {
    check(&mut serde_json::Deserializer::from_str(text), key)
}

/// The whole document from `de`, and nothing after it.
fn check<'de, R: serde_json::de::Read<'de>>(
    de: &mut serde_json::Deserializer<R>,
    key: Option<&str>,
) -> Result<Option<Member>, serde_json::Error> {
    // Room for a typical call's keys at once: growing 4, 8, 16, 32 cost four reallocations.
    let mut keys = Vec::with_capacity(32);
    let mut found = None;
    let note = key.map(|key| Note {
        key,
        found: &mut found,
    });
    CheckSeed {
        keys: &mut keys,
        note,
    }
    .deserialize(&mut *de)?;
    de.end()?;
    Ok(found)
}

/// The top-level member `validate_noting` looks for, and where it puts what it found.
struct Note<'a> {
    key: &'a str,
    found: &'a mut Option<Member>,
}

/// 2^64: the first integer a 64-bit field cannot hold.
const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;

/// Checks one value. `keys` is one stack shared by the whole document: each object scans and
/// then pops its own keys above its parents', so checking allocates one vector, not one per
/// object.
struct CheckSeed<'a, 'de> {
    keys: &'a mut Vec<Key<'de>>,
    /// Only on the document itself: nested objects' members are not looked at.
    note: Option<Note<'a>>,
}

impl<'de> DeserializeSeed<'de> for CheckSeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        // `deserialize_any` (not `deserialize_ignored_any`) so serde_json counts the depth.
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for CheckSeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        if !v.is_finite() {
            return Err(E::custom("number out of range"));
        }
        if v.fract() == 0.0 && v.abs() >= TWO_POW_64 {
            return Err(E::custom(
                "integer beyond the 64-bit range (send large identifiers as strings)",
            ));
        }
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(CheckSeed {
                keys: &mut *self.keys,
                note: None,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        // Keys are borrowed from the input where they can be (no escapes); a small object is
        // checked with a linear scan, a large one with a set, so the common case allocates
        // nothing on this per-call path.
        let base = self.keys.len();
        let mut set: Option<HashSet<Key<'de>>> = None;
        let result = loop {
            let key = match map.next_key::<Key<'de>>() {
                Ok(Some(key)) => key,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            };
            let seen = match &mut set {
                Some(set) => !set.insert(key.clone()),
                None => self.keys.get(base..).is_some_and(|own| own.contains(&key)),
            };
            if seen {
                let shown: String = key.0.chars().take(64).collect();
                break Err(de::Error::custom(format_args!("duplicate key `{shown}`")));
            }
            let noted = self.note.as_ref().is_some_and(|n| key.0 == n.key);
            if set.is_none() {
                self.keys.push(key);
                if self.keys.len() - base > SCAN_UP_TO {
                    set = Some(self.keys.drain(base..).collect());
                }
            }
            let value = match &mut self.note {
                Some(note) if noted => map.next_value_seed(NoteSeed {
                    keys: &mut *self.keys,
                    found: &mut *note.found,
                }),
                _ => map.next_value_seed(CheckSeed {
                    keys: &mut *self.keys,
                    note: None,
                }),
            };
            if let Err(e) = value {
                break Err(e);
            }
        };
        self.keys.truncate(base);
        result
    }
}

/// Checks the noted member like any value, and notes what it is.
struct NoteSeed<'a, 'de> {
    keys: &'a mut Vec<Key<'de>>,
    found: &'a mut Option<Member>,
}

impl<'de> DeserializeSeed<'de> for NoteSeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'a, 'de> NoteSeed<'a, 'de> {
    fn check(self, kind: Member) -> CheckSeed<'a, 'de> {
        *self.found = Some(kind);
        CheckSeed {
            keys: self.keys,
            note: None,
        }
    }
}

impl<'de> Visitor<'de> for NoteSeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    // Booleans, integers, strings and null need no check beyond being noted.
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        *self.found = Some(Member::Other("boolean"));
        Ok(())
    }

    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        *self.found = Some(Member::Int(v.to_string()));
        Ok(())
    }

    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        *self.found = Some(Member::Int(v.to_string()));
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.check(Member::Other("number with a fraction"))
            .visit_f64(v)
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        *self.found = Some(Member::Str(v.to_string()));
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        *self.found = Some(Member::Other("null"));
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        self.check(Member::Other("array")).visit_seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        self.check(Member::Other("object")).visit_map(map)
    }
}

/// Objects with at most this many keys are checked for duplicates by a linear scan.
const SCAN_UP_TO: usize = 32;

/// An object key, borrowed from the input when it has no escapes.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key<'de>, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }

            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }

            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn ordinary_json_passes() {
        for ok in [
            r#"{"a":1,"b":[1,2.5,-3,"x",null,true],"c":{"a":1}}"#,
            "18446744073709551615",
            "-9223372036854775808",
            "1.5e10",
            "0.1",
            r#""\u0000""#,
            // A key may repeat in another object, nested or beside.
            r#"{"a":{"a":1,"b":{"a":2}},"b":{"a":2,"b":3},"c":[{"a":1},{"a":1}]}"#,
        ] {
            assert!(validate(ok.as_bytes()).is_ok(), "{ok}");
        }
        assert!(validate(nested(127).as_bytes()).is_ok());
    }

    #[test]
    fn a_top_level_member_is_noted_on_the_way() {
        let note = |text: &str| validate_noting(text.as_bytes(), Some("hospitalId"));
        assert_eq!(
            note(r#"{"a":{"hospitalId":"1"},"hospitalId":"253"}"#).ok(),
            Some(Some(Member::Str("253".into())))
        );
        assert_eq!(
            note(r#"{"hospitalId":253}"#).ok(),
            Some(Some(Member::Int("253".into())))
        );
        assert_eq!(
            note(r#"{"hospitalId":-7}"#).ok(),
            Some(Some(Member::Int("-7".into())))
        );
        assert_eq!(
            note(r#"{"h\u006fspitalId":"x"}"#).ok(),
            Some(Some(Member::Str("x".into())))
        );
        for (text, kind) in [
            (r#"{"hospitalId":{"id":"253"}}"#, "object"),
            (r#"{"hospitalId":["253"]}"#, "array"),
            (r#"{"hospitalId":null}"#, "null"),
            (r#"{"hospitalId":true}"#, "boolean"),
            (r#"{"hospitalId":2.5}"#, "number with a fraction"),
        ] {
            assert_eq!(note(text).ok(), Some(Some(Member::Other(kind))), "{text}");
        }
        // Only the top level; nothing at all without a key to look for.
        assert_eq!(note(r#"{"x":{"hospitalId":"1"}}"#).ok(), Some(None));
        assert_eq!(note(r#"[{"hospitalId":"1"}]"#).ok(), Some(None));
        assert_eq!(
            validate_noting(br#"{"hospitalId":"1"}"#, None).ok(),
            Some(None)
        );
        // The member is checked like the rest.
        assert!(note(r#"{"hospitalId":"1","hospitalId":"2"}"#).is_err());
        assert!(note(r#"{"hospitalId":{"a":1,"a":1}}"#).is_err());
        assert!(note(r#"{"hospitalId":1e999}"#).is_err());
        assert!(note(&format!(r#"{{"hospitalId":{}}}"#, nested(10_000))).is_err());
    }

    #[test]
    fn ambiguous_json_is_refused() {
        for bad in [
            r#"{"a":1,"a":2}"#,
            r#"{"a":1,"\u0061":2}"#,
            r#"{"x":{"k":1,"k":1}}"#,
            // The object's own keys are still known after a nested object.
            r#"{"a":{"b":1,"c":{"d":1}},"b":2,"a":3}"#,
            r#"[{"a":1},{"b":{"a":1},"b":2}]"#,
            "1e999",
            "-1e999",
            "18446744073709551616",
            // An integral double past 2^64 is refused however it is written.
            "1.5e300",
            "-18446744073709551617",
            "[1,",
            "",
        ] {
            assert!(validate(bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(validate(nested(10_000).as_bytes()).is_err(), "deep nesting");
        assert!(validate(b"{\"a\":\"\xff\"}").is_err(), "invalid UTF-8");
        assert!(validate(b"{\"\xc3\":1}").is_err(), "invalid UTF-8 in a key");
        // Past the linear-scan size the set takes over; a duplicate is still found.
        let many: Vec<String> = (0..80).map(|i| format!("\"k{i}\":{i}")).collect();
        let big = format!("{{{}}}", many.join(","));
        assert!(validate(big.as_bytes()).is_ok());
        let dup = format!("{{{},\"k3\":0}}", many.join(","));
        assert!(
            validate(dup.as_bytes()).is_err(),
            "duplicate past the scan size"
        );
        let dup_early = format!("{{\"k79\":0,{}}}", many.join(","));
        assert!(
            validate(dup_early.as_bytes()).is_err(),
            "duplicate moved into the set"
        );
        let e = validate(br#"{"secretName":1,"secretName":2}"#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("duplicate key") && e.contains("column"), "{e}");
    }
}
