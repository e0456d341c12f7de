//! The one JSON check every payload crossing the box passes (callers' bodies, SOAP `param`s,
//! answers from the cloud and the HIS), so the box never forwards JSON that two parsers would
//! read differently:
//!
//! - at most 128 levels of nesting (serde_json's recursion limit; deeper input would overflow
//!   the stack of a recursive-descent parser upstream);
//! - no object with the same key twice (first-wins and last-wins parsers disagree);
//! - no number that is not finite (`1e999`) and no integer beyond the 64-bit range (a double
//!   loses its digits: two different identifiers would compare equal).

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// Checks `text`; the error names the problem and its position, never the offending value.
pub fn validate(text: &[u8]) -> Result<(), serde_json::Error> {
    serde_json::from_slice::<Checked>(text).map(|_| ())
}

/// 2^64: the first integer a 64-bit field cannot hold.
const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;

struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Checked, D::Error> {
        // `deserialize_any` (not `deserialize_ignored_any`) so serde_json counts the depth.
        d.deserialize_any(CheckVisitor)
    }
}

struct CheckVisitor;

impl<'de> Visitor<'de> for CheckVisitor {
    type Value = Checked;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Checked, E> {
        if !v.is_finite() {
            return Err(E::custom("number out of range"));
        }
        if v.fract() == 0.0 && v.abs() >= TWO_POW_64 {
            return Err(E::custom(
                "integer beyond the 64-bit range (send large identifiers as strings)",
            ));
        }
        Ok(Checked)
    }

    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        let mut keys = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if keys.contains(&key) {
                let shown: String = key.chars().take(64).collect();
                return Err(de::Error::custom(format_args!("duplicate key `{shown}`")));
            }
            map.next_value::<Checked>()?;
            keys.insert(key);
        }
        Ok(Checked)
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
        ] {
            assert!(validate(ok.as_bytes()).is_ok(), "{ok}");
        }
        assert!(validate(nested(127).as_bytes()).is_ok());
    }

    #[test]
    fn ambiguous_json_is_refused() {
        for bad in [
            r#"{"a":1,"a":2}"#,
            r#"{"a":1,"\u0061":2}"#,
            r#"{"x":{"k":1,"k":1}}"#,
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
        let e = validate(br#"{"secretName":1,"secretName":2}"#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("duplicate key") && e.contains("column"), "{e}");
    }
}
