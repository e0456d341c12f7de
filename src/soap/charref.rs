//! Character references as the box reads them (DESIGN.md §2). Axis 1.4 writes a character
//! outside the BMP (𠮷, U+20BB7, common in Chinese names) as a pair of UTF-16 surrogate
//! references, `&#xD842;&#xDFB7;`. That is not well-formed XML, but refusing it would refuse the
//! patient: a well-formed pair reads as the one character it stands for. A lone or reversed
//! surrogate is still refused.

use quick_xml::events::BytesRef;

/// Joins surrogate pairs across consecutive character references. Feed every reference to
/// `reference`, and call `other_event` before any other event: a high surrogate must be
/// followed at once by a low one.
#[derive(Debug, Default)]
pub struct Surrogates {
    high: Option<u32>,
}

/// What a reference stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// A character (a whole pair, or a reference to a character).
    Char(char),
    /// The first half of a pair: nothing to add yet.
    Pending,
    /// Not a character reference: a named entity, for the caller to resolve.
    Entity,
}

impl Surrogates {
    /// Reads one `&…;` reference.
    pub fn reference(&mut self, r: &BytesRef<'_>) -> Result<Resolved, String> {
        if !r.is_char_ref() {
            self.other_event()?;
            return Ok(Resolved::Entity);
        }
        let text = r.decode().map_err(|e| e.to_string())?;
        self.code(&text)
    }

    /// Reads the text of a character reference without `&` and `;` (`#xD842`, `#55362`).
    pub fn code(&mut self, text: &str) -> Result<Resolved, String> {
        let n = parse_code(text).ok_or_else(|| {
            format!(
                "invalid character reference `&{};`",
                text.chars().take(16).collect::<String>()
            )
        })?;
        match (n, self.high.take()) {
            (0xD800..=0xDBFF, None) => {
                self.high = Some(n);
                Ok(Resolved::Pending)
            }
            (0xDC00..=0xDFFF, Some(high)) => {
                let c = 0x10000 + ((high - 0xD800) << 10) + (n - 0xDC00);
                char::from_u32(c)
                    .map(Resolved::Char)
                    .ok_or_else(|| "invalid surrogate pair".to_string())
            }
            (0xD800..=0xDFFF, Some(high)) => Err(format!(
                "character reference {high:#X} (a high surrogate) is not followed by a low one"
            )),
            (0xD800..=0xDFFF, None) => Err(format!(
                "character reference {n:#X} is a lone low surrogate"
            )),
            (_, Some(high)) => Err(format!(
                "character reference {high:#X} (a high surrogate) is not followed by a low one"
            )),
            (n, None) => match char::from_u32(n) {
                Some(c) if is_xml_char(c) => Ok(Resolved::Char(c)),
                _ => Err(format!("invalid character reference {n}")),
            },
        }
    }

    /// Any event that is not a reference: a pending high surrogate is an error.
    pub fn other_event(&mut self) -> Result<(), String> {
        match self.high.take() {
            Some(high) => Err(format!(
                "character reference {high:#X} (a high surrogate) is not followed by a low one"
            )),
            None => Ok(()),
        }
    }
}

/// `#xHEX` or `#DEC`, as a number (at most 0x10FFFF).
fn parse_code(text: &str) -> Option<u32> {
    let digits = text.strip_prefix('#')?;
    let n = match digits.strip_prefix('x') {
        Some(hex) if !hex.is_empty() && hex.len() <= 8 => u32::from_str_radix(hex, 16).ok()?,
        Some(_) => return None,
        None if !digits.is_empty() && digits.len() <= 10 => digits.parse().ok()?,
        None => return None,
    };
    (n <= 0x10FFFF).then_some(n)
}

/// XML 1.0's `Char`: the characters a reference may stand for.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(c: char) -> (String, String) {
        let mut units = [0u16; 2];
        let u = c.encode_utf16(&mut units);
        (format!("#x{:X}", u[0]), format!("#{}", u[1]))
    }

    /// Every character outside the BMP, written as a pair (hex then decimal), reads back as
    /// itself: all 1,048,576 of them.
    #[test]
    fn every_pair_reads_back_as_its_character() {
        for n in 0x10000..=0x10FFFFu32 {
            let Some(c) = char::from_u32(n) else {
                continue;
            };
            let (hi, lo) = pair(c);
            let mut s = Surrogates::default();
            assert_eq!(s.code(&hi), Ok(Resolved::Pending), "{n:#X}");
            assert_eq!(s.code(&lo), Ok(Resolved::Char(c)), "{n:#X}");
            assert_eq!(s.other_event(), Ok(()));
        }
    }

    /// Every surrogate alone, every low one first, and every high one followed by anything but
    /// a low one, is refused.
    #[test]
    fn lone_and_reversed_surrogates_are_refused() {
        for n in 0xD800..=0xDFFFu32 {
            let mut s = Surrogates::default();
            match n {
                0xD800..=0xDBFF => {
                    assert_eq!(s.code(&format!("#x{n:X}")), Ok(Resolved::Pending));
                    assert!(s.other_event().is_err(), "lone high {n:#X}");
                    let mut s = Surrogates::default();
                    let _ = s.code(&format!("#x{n:X}"));
                    assert!(s.code("#x41").is_err(), "high {n:#X} then A");
                    let mut s = Surrogates::default();
                    let _ = s.code(&format!("#x{n:X}"));
                    assert!(s.code("#xD800").is_err(), "high {n:#X} then high");
                }
                _ => {
                    assert!(s.code(&format!("#x{n:X}")).is_err(), "lone low {n:#X}");
                    // Reversed: low then high.
                    let mut s = Surrogates::default();
                    assert!(s.code(&format!("#{n}")).is_err());
                }
            }
        }
    }

    #[test]
    fn ordinary_references_and_bad_ones() {
        let mut s = Surrogates::default();
        assert_eq!(s.code("#x41"), Ok(Resolved::Char('A')));
        assert_eq!(s.code("#21513"), Ok(Resolved::Char('吉')));
        assert_eq!(s.code("#x20BB7"), Ok(Resolved::Char('𠮷')));
        for bad in [
            "#x0",
            "#1",
            "#xFFFE",
            "#x110000",
            "#",
            "#x",
            "#12a",
            "#x1234567890",
        ] {
            assert!(s.code(bad).is_err(), "{bad}");
        }
    }
}
