//! [`ConfigToml`]: a gateway configuration patched by key (`.set("buffer.retry_min", "50ms")`)
//! instead of by text (`.replace("[log]", "[buffer]\n…\n[log]")`), rendered back to TOML.

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use toml::{Table, Value};

/// A TOML document as tables; keys are dotted paths (`"cloud_listener.public_url"`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConfigToml(Table);

impl ConfigToml {
    /// Parses `text`; panics if it is not TOML (a test bug).
    pub fn parse(text: &str) -> ConfigToml {
        ConfigToml(
            text.parse::<Table>()
                .unwrap_or_else(|e| panic!("test config is not TOML ({e}):\n{text}")),
        )
    }

    /// [`super::basic_config`], as a document to patch.
    pub fn basic(
        cloud_url: &str,
        cloud_ca: Option<&Path>,
        his_url: Option<&str>,
        extra: &str,
    ) -> ConfigToml {
        ConfigToml::parse(&super::basic_config(cloud_url, cloud_ca, his_url, extra))
    }

    /// Sets `key` (creating the tables on the way), replacing what was there.
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> ConfigToml {
        let (table, last) = self.table_for(key);
        table.insert(last.to_string(), value.into());
        self
    }

    /// Sets `key` to a path, as a string.
    pub fn set_path(self, key: &str, path: &Path) -> ConfigToml {
        self.set(key, path.display().to_string())
    }

    /// Removes `key` (and everything under it); panics if there is no such key (a test bug).
    pub fn remove(mut self, key: &str) -> ConfigToml {
        assert!(self.get(key).is_some(), "no `{key}` to remove");
        let (table, last) = self.table_for(key);
        table.remove(last);
        self
    }

    /// Merges the tables of a TOML snippet (e.g. `"[admin]\nlisten = \"127.0.0.1:0\"\n"`):
    /// its keys are set, tables are merged key by key, arrays of tables are appended to.
    pub fn merge(mut self, snippet: &str) -> ConfigToml {
        let other = ConfigToml::parse(snippet).0;
        merge_into(&mut self.0, other);
        self
    }

    /// The value at `key`, if any.
    pub fn get(&self, key: &str) -> Option<&Value> {
        let mut parts = key.split('.');
        let mut v = self.0.get(parts.next()?)?;
        for p in parts {
            v = v.as_table()?.get(p)?;
        }
        Some(v)
    }

    /// The document as TOML text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        render_table(&mut out, &[], &self.0);
        out
    }

    /// Writes the document to `path` and returns the path.
    pub fn write(&self, path: &Path) -> PathBuf {
        std::fs::write(path, self.render())
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path.to_path_buf()
    }

    /// The table holding the last part of `key` (created as needed), and that part.
    fn table_for<'k>(&mut self, key: &'k str) -> (&mut Table, &'k str) {
        let mut parts: Vec<&str> = key.split('.').collect();
        let last = parts.pop().expect("a non-empty key");
        let mut table = &mut self.0;
        for p in parts {
            let entry = table
                .entry(p.to_string())
                .or_insert_with(|| Value::Table(Table::new()));
            table = match entry {
                Value::Table(t) => t,
                // The last element of an array of tables (`[[his.route]]`), as TOML reads it.
                Value::Array(items) => match items.last_mut() {
                    Some(Value::Table(t)) => t,
                    _ => panic!("{key}: `{p}` is not a table"),
                },
                _ => panic!("{key}: `{p}` is not a table"),
            };
        }
        (table, last)
    }
}

impl fmt::Display for ConfigToml {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

impl From<ConfigToml> for String {
    fn from(c: ConfigToml) -> String {
        c.render()
    }
}

fn merge_into(into: &mut Table, from: Table) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(Value::Table(a)), Value::Table(b)) => merge_into(a, b),
            (Some(Value::Array(a)), Value::Array(b)) if is_array_of_tables(&b) => a.extend(b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

fn is_array_of_tables(items: &[Value]) -> bool {
    !items.is_empty() && items.iter().all(Value::is_table)
}

fn render_table(out: &mut String, path: &[String], table: &Table) {
    for (k, v) in table {
        match v {
            Value::Table(_) => {}
            Value::Array(items) if is_array_of_tables(items) => {}
            v => {
                let _ = writeln!(out, "{} = {}", key(k), inline(v));
            }
        }
    }
    for (k, v) in table {
        let mut sub = path.to_vec();
        sub.push(key(k));
        match v {
            Value::Table(t) => {
                let _ = writeln!(out, "\n[{}]", sub.join("."));
                render_table(out, &sub, t);
            }
            Value::Array(items) if is_array_of_tables(items) => {
                for item in items {
                    let _ = writeln!(out, "\n[[{}]]", sub.join("."));
                    if let Value::Table(t) = item {
                        render_table(out, &sub, t);
                    }
                }
            }
            _ => {}
        }
    }
}

fn key(k: &str) -> String {
    let bare = !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        k.to_string()
    } else {
        string(k)
    }
}

fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn inline(v: &Value) -> String {
    match v {
        Value::String(s) => string(s),
        Value::Integer(i) => i.to_string(),
        Value::Float(f) if f.is_nan() => "nan".to_string(),
        Value::Float(f) if f.is_infinite() => (if *f > 0.0 { "inf" } else { "-inf" }).to_string(),
        Value::Float(f) => format!("{f:?}"),
        Value::Boolean(b) => b.to_string(),
        Value::Datetime(d) => d.to_string(),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(inline).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Table(t) => {
            let items: Vec<String> = t
                .iter()
                .map(|(k, v)| format!("{} = {}", key(k), inline(v)))
                .collect();
            format!("{{ {} }}", items.join(", "))
        }
    }
}
