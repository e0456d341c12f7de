//! Checks a raw configuration completely and builds the typed `Config`. Problems are collected,
//! not returned at the first, so an operator fixes a file in one pass.
//!
//! This file holds the `Checker` and the diagnostics loop (`load`); `keys.rs` finds the keys the
//! serde structs do not know; one file per section builds it; `values.rs` reads the values many
//! sections share (addresses, sizes, durations, files).

mod auth;
mod buffer;
mod cloud;
mod his;
mod hospital;
mod keys;
mod listeners;
mod pacs;
mod values;

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::raw::RawConfig;
use super::*;
use listeners::{files_listener, listener, loopback_nets};
use values::{nets, socket_addr};
pub use values::{parse_duration, parse_size};

/// Collects problems and warnings, and knows where each key sits in the file.
struct Checker<'a> {
    text: &'a str,
    doc: Option<Spanned<DeTable<'a>>>,
    base_dir: &'a Path,
    problems: Vec<Problem>,
    warnings: Vec<Problem>,
}

/// One step of a key path: a table key or an array index.
#[derive(Clone, Copy)]
enum Step<'k> {
    Key(&'k str),
    Index(usize),
}

impl<'a> Checker<'a> {
    fn line_at(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .bytes()
            .filter(|&b| b == b'\n')
            .count()
            + 1
    }

    /// The line of the value at `path`, e.g. `[Key("his"), Key("route"), Index(2), Key("url")]`;
    /// for a key the file leaves out, the line of the nearest enclosing table or entry.
    fn line_of(&self, path: &[Step<'_>]) -> Option<usize> {
        let doc = self.doc.as_ref()?;
        let mut span = None;
        let mut cur: Option<&DeValue<'_>> = None;
        let mut table: Option<&DeTable<'_>> = Some(doc.get_ref());
        for step in path {
            let next = match (step, table, cur) {
                (Step::Key(k), Some(t), _) => t.get(*k),
                (Step::Index(i), _, Some(DeValue::Array(a))) => a.get(*i),
                _ => None,
            };
            let Some(next) = next else { break };
            span = Some(next.span());
            cur = Some(next.get_ref());
            table = match next.get_ref() {
                DeValue::Table(t) => Some(t),
                _ => None,
            };
        }
        span.map(|s| self.line_at(s.start))
    }

    fn problem(&mut self, path: &[Step<'_>], message: impl Into<String>) {
        let p = Problem {
            key: key_string(path),
            line: self.line_of(path),
            message: message.into(),
        };
        self.problems.push(p);
    }

    fn warn(&mut self, path: &[Step<'_>], message: impl Into<String>) {
        let p = Problem {
            key: key_string(path),
            line: self.line_of(path),
            message: message.into(),
        };
        self.warnings.push(p);
    }

    fn resolve(&self, p: &str) -> PathBuf {
        let path = Path::new(p);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }
}

fn key_string(path: &[Step<'_>]) -> String {
    let mut s = String::new();
    for step in path {
        match step {
            Step::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Step::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

pub(super) fn load(text: &str, base_dir: &Path) -> Result<Loaded, ConfigError> {
    let mut c = Checker {
        text,
        doc: None,
        base_dir,
        problems: vec![],
        warnings: vec![],
    };
    let (doc, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        for e in syntax {
            let line = e.span().map(|s| c.line_at(s.start));
            c.problems.push(Problem {
                key: String::new(),
                line,
                message: e.message().trim().to_string(),
            });
        }
        return Err(c.into_error());
    }
    // The document serde reads: the parsed file less what is reported below. `c.doc` keeps
    // the whole file for the lines of later problems.
    let mut work = doc.clone();
    c.doc = Some(doc);
    c.take_unknown_keys(work.get_mut());
    // Type errors: serde stops at the first, so report it, take that entry out, and go on.
    let mut typed_keys: Vec<String> = Vec::new();
    let raw: RawConfig = loop {
        let err = match RawConfig::deserialize(toml::de::Deserializer::from(work.clone())) {
            Ok(r) => break r,
            Err(e) => e,
        };
        let offset = err.span().map(|s| s.start);
        let message = err.message().trim().to_string();
        match offset.and_then(|o| keys::take_entry_at(work.get_mut(), "", o).map(|key| (o, key))) {
            Some((o, key)) if typed_keys.len() < 100 && !typed_keys.contains(&key) => {
                c.problems.push(Problem {
                    key: key.clone(),
                    line: Some(c.line_at(o)),
                    message,
                });
                typed_keys.push(key);
            }
            _ => {
                c.problems.push(Problem {
                    key: String::new(),
                    line: offset.map(|o| c.line_at(o)),
                    message,
                });
                return Err(c.into_error());
            }
        }
    };
    let reported: Vec<String> = c.problems.iter().map(|p| p.key.clone()).collect();
    let config = build(&mut c, raw);
    // A key already reported as unknown or of the wrong type is not reported again as missing.
    let first_semantic = reported.len();
    let mut i = first_semantic;
    while i < c.problems.len() {
        if reported.contains(&c.problems[i].key) {
            c.problems.remove(i);
        } else {
            i += 1;
        }
    }
    c.problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
    match config {
        Some(config) if c.problems.is_empty() => Ok(Loaded {
            config,
            warnings: c.warnings,
        }),
        _ => Err(c.into_error()),
    }
}

impl Checker<'_> {
    fn into_error(self) -> ConfigError {
        ConfigError {
            source_name: None,
            problems: self.problems,
            warnings: self.warnings,
        }
    }
}

const HIS_LISTENER: &str = "his_listener";
const CLOUD_LISTENER: &str = "cloud_listener";
const FILES_LISTENER: &str = "files_listener";

fn build(c: &mut Checker<'_>, raw: RawConfig) -> Option<Config> {
    let his_listener = listener(c, HIS_LISTENER, raw.his_listener, 1 << 20);
    let cloud_listener = listener(c, CLOUD_LISTENER, raw.cloud_listener, 4 << 20);
    if let (Some(h), Some(cl)) = (&his_listener, &cloud_listener) {
        if h.listen == cl.listen && h.listen.port() != 0 {
            c.problem(
                &[Step::Key(CLOUD_LISTENER), Step::Key("listen")],
                format!("same address as his_listener.listen ({})", h.listen),
            );
        }
    }
    if let Some(cl) = &cloud_listener {
        if cl.tls.is_none() {
            c.warn(
                &[Step::Key(CLOUD_LISTENER)],
                "no tls_cert/tls_key: the cloud listener serves plain HTTP; use this only for tests",
            );
        }
    }
    let files = raw
        .files_listener
        .and_then(|f| files_listener(c, FILES_LISTENER, f));
    if let Some(f) = &files {
        let others = [
            (HIS_LISTENER, his_listener.as_ref().map(|l| l.listen)),
            (CLOUD_LISTENER, cloud_listener.as_ref().map(|l| l.listen)),
        ];
        for (name, addr) in others {
            if addr == Some(f.listen) && f.listen.port() != 0 {
                c.problem(
                    &[Step::Key(FILES_LISTENER), Step::Key("listen")],
                    format!("same address as {name}.listen ({})", f.listen),
                );
            }
        }
        if f.tls.is_none() {
            c.warn(
                &[Step::Key(FILES_LISTENER)],
                "no tls_cert/tls_key: the files listener serves patients' reports over plain \
                 HTTP; use this only behind a proxy that terminates TLS, or for tests",
            );
        }
        if f.public_url.is_none() {
            c.warn(
                &[Step::Key(FILES_LISTENER), Step::Key("public_url")],
                "no public_url: links in HIS answers still lead to cloud_listener.public_url, \
                 so phones never reach this listener",
            );
        }
    }
    let admin = raw.admin.and_then(|a| {
        let listen = socket_addr(c, &[Step::Key("admin"), Step::Key("listen")], a.listen)?;
        let allow = nets(c, &[Step::Key("admin"), Step::Key("allow")], a.allow)
            .unwrap_or_else(loopback_nets);
        let token = a.token_file.and_then(|f| auth::admin_token(c, &f));
        let vrrp_state_file = a.vrrp_state_file.and_then(|f| {
            if f.trim().is_empty() {
                c.problem(
                    &[Step::Key("admin"), Step::Key("vrrp_state_file")],
                    "empty path (leave the key out to show no VRRP role)",
                );
                return None;
            }
            Some(c.resolve(&f))
        });
        Some(AdminConfig {
            listen,
            allow,
            token,
            vrrp_state_file,
        })
    });
    if let (Some(f), Some(a)) = (&files, &admin) {
        if f.listen == a.listen && f.listen.port() != 0 {
            c.problem(
                &[Step::Key(FILES_LISTENER), Step::Key("listen")],
                format!("same address as admin.listen ({})", f.listen),
            );
        }
    }
    let cloud = cloud::cloud(c, raw.cloud);
    let mut his = his::his(c, raw.his);
    let buffer = buffer::buffer(c, raw.buffer.unwrap_or_default());
    let trail = buffer::trail(c, raw.trail.unwrap_or_default(), &buffer.path);
    let level = raw
        .log
        .and_then(|l| l.level)
        .unwrap_or_else(|| "info".to_string());
    if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
        c.problem(
            &[Step::Key("log"), Step::Key("level")],
            format!("`{level}` is not a log level or filter (try info, debug, warn)"),
        );
    }
    let mut pacs = pacs::pacs(c, raw.pacs.unwrap_or_default(), &buffer.path);
    let hospitals = hospital::hospitals(
        c,
        raw.hospital,
        his.as_ref().and_then(|h| h.default.as_ref()),
        &pacs.internal_hosts,
    );
    if let Some(his) = &mut his {
        his.hospitals = hospitals.his;
    }
    pacs.hospitals = hospitals.dcm_urls;
    let auth = raw.auth.and_then(|a| auth::auth(c, a));
    if !pacs.internal_hosts.is_empty()
        && cloud_listener
            .as_ref()
            .is_some_and(|l| l.public_url.is_none())
        && files.as_ref().is_none_or(|f| f.public_url.is_none())
    {
        c.problem(
            &[Step::Key("cloud_listener"), Step::Key("public_url")],
            "[pacs] internal_hosts is set, so links in HIS answers are rewritten to \
             <public_url>/files/<token>: set public_url to the address the cloud uses to reach \
             this box (e.g. \"https://prefront.example-hospital.cn:8443\"), or \
             [files_listener] public_url to the address patients' phones use",
        );
    }
    if pacs.internal_hosts.is_empty() && files.is_some() {
        c.warn(
            &[Step::Key(FILES_LISTENER)],
            "[pacs] internal_hosts is empty, so no links are handed out: this listener answers \
             every /files/<token> with 404",
        );
    }
    Some(Config {
        his_listener: his_listener?,
        cloud_listener: cloud_listener?,
        files_listener: files,
        admin,
        cloud: cloud?,
        his: his?,
        pacs,
        buffer,
        trail,
        auth,
        log: LogConfig { level },
    })
}
