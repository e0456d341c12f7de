//! The keys the configuration's serde structs do not know: every one is reported with its line,
//! then taken out so the rest of the file can still be checked.

use std::collections::HashMap;

use toml::de::{DeTable, DeValue};

use super::super::raw;
use super::Checker;
use crate::config::Problem;

impl Checker<'_> {
    /// Reports every key the schema does not know, with its line, and returns the byte ranges
    /// (`key = value`) to blank out so the rest of the file can still be checked.
    pub(super) fn unknown_keys(&mut self) -> Vec<std::ops::Range<usize>> {
        let Some(doc) = self.doc.take() else {
            return vec![];
        };
        let mut found: Vec<(String, usize)> = Vec::new();
        let mut blank = Vec::new();
        let schema: HashMap<&str, &[&str]> = raw::SCHEMA.iter().copied().collect();
        let his_keys: Vec<&str> = raw::ROUTE_KEYS
            .iter()
            .copied()
            .filter(|k| *k != "name")
            .chain(["max_response", "max_file_response", "route"])
            .collect();
        for (k, v) in doc.get_ref().iter() {
            let key = k.get_ref().as_ref();
            if !schema[""].contains(&key) {
                found.push((key.to_string(), self.line_at(k.span().start)));
                match v.get_ref() {
                    // An unknown table: its header stays (an empty table is ignored), its
                    // entries go.
                    DeValue::Table(t) => {
                        blank.extend(t.iter().map(|(ck, cv)| ck.span().start..cv.span().end))
                    }
                    _ => blank.push(k.span().start..v.span().end),
                }
                continue;
            }
            let DeValue::Table(t) = v.get_ref() else {
                continue; // a type error; serde reports it
            };
            let allowed: &[&str] = if key == "his" {
                &his_keys
            } else {
                schema.get(key).copied().unwrap_or(&[])
            };
            for (ck, cv) in t.iter() {
                let ckey = ck.get_ref().as_ref();
                if !allowed.contains(&ckey) {
                    found.push((format!("{key}.{ckey}"), self.line_at(ck.span().start)));
                    blank.push(ck.span().start..cv.span().end);
                }
                let route_keys = match (key, ckey) {
                    ("his", "route") => Some(raw::ROUTE_KEYS),
                    ("cloud", "route") => Some(raw::CLOUD_ROUTE_KEYS),
                    _ => None,
                };
                if let Some(route_keys) = route_keys {
                    if let DeValue::Array(items) = cv.get_ref() {
                        for (i, item) in items.iter().enumerate() {
                            if let DeValue::Table(rt) = item.get_ref() {
                                for (rk, rv) in rt.iter() {
                                    let rkey = rk.get_ref().as_ref();
                                    if !route_keys.contains(&rkey) {
                                        found.push((
                                            format!("{key}.route[{i}].{rkey}"),
                                            self.line_at(rk.span().start),
                                        ));
                                        blank.push(rk.span().start..rv.span().end);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        for (key, line) in found {
            self.problems.push(Problem {
                key,
                line: Some(line),
                message: "unknown key (check the spelling; see config/prefront.toml)".into(),
            });
        }
        self.doc = Some(doc);
        blank
    }

    /// The dotted key whose `key = value` contains byte `offset`, and that entry's byte range.
    /// (A table's own span covers only its `[header]`, so the search looks at leaf entries.)
    pub(super) fn entry_at(&self, offset: usize) -> Option<(String, std::ops::Range<usize>)> {
        fn search(
            table: &DeTable<'_>,
            prefix: &str,
            offset: usize,
        ) -> Option<(String, std::ops::Range<usize>)> {
            for (k, v) in table.iter() {
                let key = if prefix.is_empty() {
                    k.get_ref().to_string()
                } else {
                    format!("{prefix}.{}", k.get_ref())
                };
                match v.get_ref() {
                    DeValue::Table(t) => {
                        if let Some(hit) = search(t, &key, offset) {
                            return Some(hit);
                        }
                    }
                    DeValue::Array(items)
                        if items
                            .iter()
                            .any(|i| matches!(i.get_ref(), DeValue::Table(_))) =>
                    {
                        for (i, item) in items.iter().enumerate() {
                            if let DeValue::Table(t) = item.get_ref() {
                                if let Some(hit) = search(t, &format!("{key}[{i}]"), offset) {
                                    return Some(hit);
                                }
                            }
                        }
                    }
                    _ => {
                        let range = k.span().start..v.span().end;
                        if range.contains(&offset) {
                            return Some((key, range));
                        }
                    }
                }
            }
            None
        }
        search(self.doc.as_ref()?.get_ref(), "", offset)
    }
}
