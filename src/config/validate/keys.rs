//! The keys the configuration's serde structs do not know: every one is reported with its line,
//! then taken out of the parsed document so the rest of the file can still be checked.
//!
//! Whole entries are taken out of the parsed document, not blanked out of the text: blanking
//! the key of an unknown `[his.headers]` or `[[hospitals]]` left a header such as `[his.  ]`,
//! which the next parse reported as a second, bogus syntax error.

use toml::de::{DeTable, DeValue};

use super::super::raw;
use super::Checker;
use crate::config::Problem;

impl Checker<'_> {
    /// Reports every key the schema (`raw::table_keys`) does not know, with its line, and takes
    /// it out of `doc`, a table at a time: an unknown table goes with everything in it.
    pub(super) fn take_unknown_keys(&mut self, doc: &mut DeTable<'_>) {
        let mut found: Vec<(String, usize)> = Vec::new();
        take_unknown(doc, "", "", &mut found);
        for (key, offset) in found {
            let line = self.line_at(offset);
            self.problems.push(Problem {
                key,
                line: Some(line),
                message: "unknown key (check the spelling; see config/prefront.toml)".into(),
            });
        }
    }
}

/// Takes out of `table`, the table at `schema` (`his.route` for each `[[his.route]]`) shown as
/// `shown` (`his.route[2]`), every key its struct does not know, noting each with the byte
/// offset of its key; then does the same in the tables and arrays of tables below it whose
/// keys are known. A table whose keys are free (`args`) is left alone.
fn take_unknown(
    table: &mut DeTable<'_>,
    schema: &str,
    shown: &str,
    found: &mut Vec<(String, usize)>,
) {
    let Some(allowed) = raw::table_keys(schema) else {
        return;
    };
    let join = |prefix: &str, key: &str| {
        if prefix.is_empty() {
            key.to_string()
        } else {
            format!("{prefix}.{key}")
        }
    };
    let mut unknown = Vec::new();
    for (k, v) in table.iter_mut() {
        let key: &str = k.get_ref();
        let shown_key = join(shown, key);
        if !allowed.contains(&key) {
            found.push((shown_key, k.span().start));
            unknown.push(key.to_string());
            continue;
        }
        let below = join(schema, key);
        match v.get_mut() {
            DeValue::Table(t) => take_unknown(t, &below, &shown_key, found),
            DeValue::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    if let DeValue::Table(t) = item.get_mut() {
                        take_unknown(t, &below, &format!("{shown_key}[{i}]"), found);
                    }
                }
            }
            // A value where a table belongs is a type error: serde reports it.
            _ => {}
        }
    }
    for key in unknown {
        table.remove(key.as_str());
    }
}

/// Takes out the `key = value` entry that contains byte `offset` and returns its dotted key.
/// (A table's own span covers only its `[header]`, so the search looks at leaf entries.)
pub(super) fn take_entry_at(
    table: &mut DeTable<'_>,
    prefix: &str,
    offset: usize,
) -> Option<String> {
    let mut leaf = None;
    for (k, v) in table.iter_mut() {
        let key = if prefix.is_empty() {
            k.get_ref().to_string()
        } else {
            format!("{prefix}.{}", k.get_ref())
        };
        let range = k.span().start..v.span().end;
        match v.get_mut() {
            DeValue::Table(t) => {
                if let Some(hit) = take_entry_at(t, &key, offset) {
                    return Some(hit);
                }
            }
            DeValue::Array(items)
                if items
                    .iter()
                    .any(|i| matches!(i.get_ref(), DeValue::Table(_))) =>
            {
                for (i, item) in items.iter_mut().enumerate() {
                    if let DeValue::Table(t) = item.get_mut() {
                        if let Some(hit) = take_entry_at(t, &format!("{key}[{i}]"), offset) {
                            return Some(hit);
                        }
                    }
                }
            }
            _ => {
                if range.contains(&offset) {
                    leaf = Some((k.get_ref().to_string(), key));
                    break;
                }
            }
        }
    }
    let (name, key) = leaf?;
    table.remove(name.as_str());
    Some(key)
}
