//! Checks a raw configuration completely and builds the typed `Config`. Problems are collected,
//! not returned at the first, so an operator fixes a file in one pass.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::raw::{self, RawConfig, RawListener, RawRoute};
use super::*;
use crate::catalog::{self, Catalog};

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

    /// Reports every key the schema does not know, with its line, and returns the byte ranges
    /// (`key = value`) to blank out so the rest of the file can still be checked.
    fn unknown_keys(&mut self) -> Vec<std::ops::Range<usize>> {
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
    fn entry_at(&self, offset: usize) -> Option<(String, std::ops::Range<usize>)> {
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

/// Replaces every byte of `range` except line breaks with a space: the entry disappears, every
/// other byte offset (and so every line number) stays the same.
fn blank_out(text: &mut [u8], range: std::ops::Range<usize>) {
    let end = range.end.min(text.len());
    for b in &mut text[range.start.min(end)..end] {
        if *b != b'\n' && *b != b'\r' {
            *b = b' ';
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
    c.doc = Some(doc);
    let mut sanitized = text.as_bytes().to_vec();
    for range in c.unknown_keys() {
        blank_out(&mut sanitized, range);
    }
    // Type errors: serde stops at the first, so report it, blank that entry out, and go on.
    let mut typed_keys: Vec<String> = Vec::new();
    let raw: RawConfig = loop {
        // Blanking replaces whole `key = value` entries, so the text stays valid UTF-8.
        let Ok(current) = std::str::from_utf8(&sanitized) else {
            return Err(c.into_error());
        };
        let err = match toml::from_str::<RawConfig>(current) {
            Ok(r) => break r,
            Err(e) => e,
        };
        let offset = err.span().map(|s| s.start);
        let message = err.message().trim().to_string();
        match offset.and_then(|o| c.entry_at(o).map(|entry| (o, entry))) {
            Some((o, (key, range))) if typed_keys.len() < 100 && !typed_keys.contains(&key) => {
                c.problems.push(Problem {
                    key: key.clone(),
                    line: Some(c.line_at(o)),
                    message,
                });
                typed_keys.push(key);
                blank_out(&mut sanitized, range);
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
    let admin = raw.admin.and_then(|a| {
        let listen = socket_addr(c, &[Step::Key("admin"), Step::Key("listen")], a.listen)?;
        let allow = nets(c, &[Step::Key("admin"), Step::Key("allow")], a.allow)
            .unwrap_or_else(loopback_nets);
        Some(AdminConfig { listen, allow })
    });
    let cloud = cloud(c, raw.cloud);
    let his = his(c, raw.his);
    let rb = raw.buffer.unwrap_or_default();
    let buffer = BufferConfig {
        path: c.resolve(rb.path.as_deref().unwrap_or("data/buffer")),
        max_bytes: size(
            c,
            &[Step::Key("buffer"), Step::Key("max_bytes")],
            rb.max_bytes.as_deref(),
            1 << 30,
        ),
        ttl: duration(
            c,
            &[Step::Key("buffer"), Step::Key("ttl")],
            rb.ttl.as_deref(),
            Duration::from_secs(7 * 86400),
        ),
        max_attempts: match rb.max_attempts {
            Some(0) => {
                c.problem(
                    &[Step::Key("buffer"), Step::Key("max_attempts")],
                    "must be at least 1",
                );
                1
            }
            Some(n) => n,
            None => 1000,
        },
        result_ttl: duration(
            c,
            &[Step::Key("buffer"), Step::Key("result_ttl")],
            rb.result_ttl.as_deref(),
            Duration::from_secs(86400),
        ),
        dead_ttl: duration(
            c,
            &[Step::Key("buffer"), Step::Key("dead_ttl")],
            rb.dead_ttl.as_deref(),
            Duration::from_secs(30 * 86400),
        ),
        retry_min: duration(
            c,
            &[Step::Key("buffer"), Step::Key("retry_min")],
            rb.retry_min.as_deref(),
            Duration::from_secs(1),
        ),
        retry_max: duration(
            c,
            &[Step::Key("buffer"), Step::Key("retry_max")],
            rb.retry_max.as_deref(),
            Duration::from_secs(300),
        ),
    };
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
    let pacs = pacs(c, raw.pacs.unwrap_or_default(), &buffer.path);
    let auth = raw.auth.and_then(|a| auth(c, a));
    if !pacs.internal_hosts.is_empty()
        && cloud_listener
            .as_ref()
            .is_some_and(|l| l.public_url.is_none())
    {
        c.problem(
            &[Step::Key("cloud_listener"), Step::Key("public_url")],
            "[pacs] internal_hosts is set, so links in HIS answers are rewritten to \
             <public_url>/files/<token>: set public_url to the address the cloud uses to reach \
             this box (e.g. \"https://prefront.example-hospital.cn:8443\")",
        );
    }
    Some(Config {
        his_listener: his_listener?,
        cloud_listener: cloud_listener?,
        admin,
        cloud: cloud?,
        his: his?,
        pacs,
        buffer,
        auth,
        log: LogConfig { level },
    })
}

fn loopback_nets() -> Vec<IpNet> {
    ["127.0.0.0/8", "::1/128"]
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect()
}

fn listener(
    c: &mut Checker<'_>,
    table: &'static str,
    raw: Option<RawListener>,
    default_body: u64,
) -> Option<ListenerConfig> {
    let Some(raw) = raw else {
        c.problem(
            &[Step::Key(table)],
            "missing section [".to_string() + table + "]",
        );
        return None;
    };
    let k = |key| [Step::Key(table), Step::Key(key)];
    let listen = socket_addr(c, &k("listen"), raw.listen);
    let allow = match raw.allow {
        None => {
            c.warn(
                &[Step::Key(table)],
                "no `allow` list: only loopback callers (127.0.0.0/8, ::1) are let in",
            );
            loopback_nets()
        }
        Some(list) => {
            let nets = nets(c, &k("allow"), Some(list)).unwrap_or_default();
            if nets.is_empty() {
                c.warn(&k("allow"), "empty allow list: every caller is refused");
            }
            nets
        }
    };
    let trusted_proxies = nets(c, &k("trusted_proxies"), raw.trusted_proxies).unwrap_or_default();
    let max_body = size(c, &k("max_body"), raw.max_body.as_deref(), default_body);
    let tls = match (raw.tls_cert, raw.tls_key) {
        (None, None) => {
            if raw.client_ca.is_some() {
                c.problem(&k("client_ca"), "client_ca needs tls_cert and tls_key");
            }
            if raw.allowed_client_names.is_some() {
                c.problem(
                    &k("allowed_client_names"),
                    "allowed_client_names needs tls_cert, tls_key and client_ca",
                );
            }
            None
        }
        (Some(cert), Some(key)) => {
            let cert = existing_file(c, &k("tls_cert"), &cert);
            let key = existing_file(c, &k("tls_key"), &key);
            let client_ca = raw
                .client_ca
                .and_then(|ca| existing_file(c, &k("client_ca"), &ca));
            if let Some(key) = &key {
                private_key_permissions(c, &k("tls_key"), key);
            }
            let allowed_client_names = raw.allowed_client_names.clone().unwrap_or_default();
            if !allowed_client_names.is_empty() && client_ca.is_none() {
                c.problem(
                    &k("allowed_client_names"),
                    "allowed_client_names needs client_ca (client certificates are only asked for with it)",
                );
            }
            Some(TlsFiles {
                cert: cert?,
                key: key?,
                client_ca,
                allowed_client_names,
            })
        }
        (Some(_), None) => {
            c.problem(&k("tls_key"), "tls_cert is set but tls_key is missing");
            return None;
        }
        (None, Some(_)) => {
            c.problem(&k("tls_cert"), "tls_key is set but tls_cert is missing");
            return None;
        }
    };
    if let Some(u) = &raw.public_url {
        if let Err(e) = http_url(u) {
            c.problem(&k("public_url"), e);
        }
    }
    let max_connections = match raw.max_connections {
        Some(0) => {
            c.problem(&k("max_connections"), "must be at least 1");
            1
        }
        Some(n) => n,
        None => 1024,
    };
    // One caller must not take every slot: a quarter by default (all of them on a small limit).
    let max_connections_per_peer = match raw.max_connections_per_peer {
        Some(0) => {
            c.problem(&k("max_connections_per_peer"), "must be at least 1");
            1
        }
        Some(n) => n.min(max_connections),
        None => (max_connections / 4).max(max_connections.min(8)),
    };
    let idle_timeout = duration(
        c,
        &k("idle_timeout"),
        raw.idle_timeout.as_deref(),
        Duration::from_secs(10),
    );
    Some(ListenerConfig {
        listen: listen?,
        allow,
        trusted_proxies,
        max_body,
        tls,
        public_url: raw.public_url.map(|u| u.trim_end_matches('/').to_string()),
        max_connections,
        max_connections_per_peer,
        idle_timeout,
    })
}

fn cloud(c: &mut Checker<'_>, raw: Option<raw::RawCloud>) -> Option<CloudConfig> {
    let Some(raw) = raw else {
        c.problem(&[Step::Key("cloud")], "missing section [cloud] (base_url)");
        return None;
    };
    let k = |key| [Step::Key("cloud"), Step::Key(key)];
    let base_url = match raw.base_url.as_deref() {
        None => {
            c.problem(&k("base_url"), "missing: the cloud platform's base URL");
            None
        }
        Some(s) => match http_url(s) {
            Ok(mut u) => {
                if u.query().is_some() || u.fragment().is_some() {
                    c.problem(&k("base_url"), "must not carry a query or fragment");
                }
                if u.scheme() == "http" {
                    c.warn(
                        &k("base_url"),
                        "plain http:// to the cloud: acceptable only on a test LAN",
                    );
                }
                if !u.path().ends_with('/') {
                    let p = format!("{}/", u.path());
                    u.set_path(&p);
                }
                Some(u)
            }
            Err(e) => {
                c.problem(&k("base_url"), e);
                None
            }
        },
    };
    let ca = raw.ca.and_then(|p| existing_file(c, &k("ca"), &p));
    let timeout = millis(c, &k("timeout_ms"), raw.timeout_ms, 10_000);
    let connect_timeout = millis(c, &k("connect_timeout_ms"), raw.connect_timeout_ms, 3_000);
    let max_response = size(c, &k("max_response"), raw.max_response.as_deref(), 8 << 20);
    let delivery = cloud_routes(c, &raw.route);
    let pin_ca = raw.pin_ca.unwrap_or(false);
    if pin_ca && ca.is_none() {
        c.problem(&k("pin_ca"), "pin_ca needs ca (the one CA to trust)");
    }
    let (client_cert, client_key) = match (raw.client_cert, raw.client_key) {
        (None, None) => (None, None),
        (Some(cert), Some(key)) => {
            let cert = existing_file(c, &k("client_cert"), &cert);
            let key = existing_file(c, &k("client_key"), &key);
            if let Some(key) = &key {
                private_key_permissions(c, &k("client_key"), key);
            }
            (cert, key)
        }
        (Some(_), None) => {
            c.problem(
                &k("client_key"),
                "client_cert is set but client_key is missing",
            );
            (None, None)
        }
        (None, Some(_)) => {
            c.problem(
                &k("client_cert"),
                "client_key is set but client_cert is missing",
            );
            (None, None)
        }
    };
    Some(CloudConfig {
        base_url: base_url?,
        ca,
        timeout,
        connect_timeout,
        max_response,
        delivery,
        pin_ca,
        client_cert,
        client_key,
    })
}

/// `[[cloud.route]]`: `delivery` overrides the catalogue's buffering choice for one HIS → cloud
/// path. Only calls the HIS does not wait on an answer for can be buffered.
fn cloud_routes(c: &mut Checker<'_>, raw: &[raw::RawCloudRoute]) -> HashMap<String, Delivery> {
    let catalog = Catalog::get();
    let mut out = HashMap::new();
    for (i, r) in raw.iter().enumerate() {
        let at = [Step::Key("cloud"), Step::Key("route"), Step::Index(i)];
        let path_at = [at[0], at[1], at[2], Step::Key("path")];
        let delivery_at = [at[0], at[1], at[2], Step::Key("delivery")];
        let Some(path) = r.path.as_deref() else {
            c.problem(
                &at,
                "a [[cloud.route]] needs a `path` (e.g. \"prefront/sendTipMessage/payment\")",
            );
            continue;
        };
        let Some(entry) = catalog.by_request_path(path) else {
            c.problem(
                &path_at,
                format!("`{path}` is not a HIS → cloud path of the specification"),
            );
            continue;
        };
        let canonical = entry.path.clone().unwrap_or_default();
        let delivery = match r.delivery.as_deref() {
            Some("buffer") => Delivery::Buffer,
            Some("direct") => Delivery::Direct,
            Some(other) => {
                c.problem(
                    &delivery_at,
                    format!("`{other}`: expected \"buffer\" or \"direct\""),
                );
                continue;
            }
            None => {
                c.problem(&delivery_at, "missing: \"buffer\" or \"direct\"");
                continue;
            }
        };
        if delivery == Delivery::Buffer
            && matches!(entry.kind, catalog::Kind::Query | catalog::Kind::File)
        {
            c.problem(
                &delivery_at,
                format!("`{canonical}` is a query: the HIS needs its answer at once, so it cannot be buffered"),
            );
            continue;
        }
        if out.insert(canonical.clone(), delivery).is_some() {
            c.problem(
                &path_at,
                format!("`{canonical}` has two [[cloud.route]] entries"),
            );
        }
    }
    out
}

fn his(c: &mut Checker<'_>, raw: Option<raw::RawHis>) -> Option<HisConfig> {
    let raw = raw.unwrap_or_default();
    let max_response = size(
        c,
        &[Step::Key("his"), Step::Key("max_response")],
        raw.max_response.as_deref(),
        4 << 20,
    );
    let max_file_response = size(
        c,
        &[Step::Key("his"), Step::Key("max_file_response")],
        raw.max_file_response.as_deref(),
        32 << 20,
    );
    let mut ok = true;
    if raw.default.name.is_some() {
        c.problem(
            &[Step::Key("his"), Step::Key("name")],
            "`name` belongs in a [[his.route]], not in [his]",
        );
    }
    let default = if raw.default.url.is_some() {
        let r = route(c, &[Step::Key("his")], &raw.default, None);
        ok &= r.is_some();
        r
    } else {
        if raw.default.kind.is_some() || raw.default.operation.is_some() {
            c.warn(
                &[Step::Key("his")],
                "[his] has no url: only names with their own [[his.route]] are served",
            );
        }
        None
    };
    let catalog = Catalog::get();
    let mut routes = HashMap::new();
    for (i, r) in raw.route.iter().enumerate() {
        let at = [Step::Key("his"), Step::Key("route"), Step::Index(i)];
        let name_at = [at[0], at[1], at[2], Step::Key("name")];
        let Some(name) = r.name.as_deref().map(str::trim) else {
            c.problem(&at, "a [[his.route]] needs a `name`");
            ok = false;
            continue;
        };
        if !catalog::is_valid_name(name) {
            c.problem(
                &name_at,
                "a name may contain only letters, digits, '.', '_' and '-'",
            );
            ok = false;
            continue;
        }
        if catalog.by_name(name).is_none() {
            c.warn(
                &name_at,
                format!("`{name}` is not in the specification's catalogue; it is served as an extra name"),
            );
        }
        if routes.contains_key(name) {
            c.problem(&name_at, format!("`{name}` is routed twice"));
            ok = false;
            continue;
        }
        match route(c, &at, r, default.as_ref()) {
            Some(route) => {
                routes.insert(name.to_string(), route);
            }
            None => ok = false,
        }
    }
    ok.then_some(HisConfig {
        default,
        routes,
        max_response,
        max_file_response,
    })
}

/// Builds one route; `inherit` is the `[his]` default a `[[his.route]]` falls back on for the
/// keys it leaves out (timeouts, SOAP namespace).
fn route(
    c: &mut Checker<'_>,
    at: &[Step<'_>],
    raw: &RawRoute,
    inherit: Option<&HisRoute>,
) -> Option<HisRoute> {
    let k = |key: &'static str| {
        let mut v = at.to_vec();
        v.push(Step::Key(key));
        v
    };
    let timeout = match raw.timeout_ms {
        Some(ms) => millis(c, &k("timeout_ms"), Some(ms), 10_000),
        None => inherit.map_or(Duration::from_secs(10), |d| d.timeout),
    };
    let delivery = match raw.delivery.as_deref() {
        None => None,
        Some(d @ ("buffer" | "direct")) => {
            if d == "buffer" {
                c.warn(
                    &k("delivery"),
                    "has no effect yet: calls from the cloud to the HIS are relayed at once and \
                     never buffered (buffering choices for HIS → cloud calls go in [[cloud.route]])",
                );
            }
            Some(if d == "buffer" {
                Delivery::Buffer
            } else {
                Delivery::Direct
            })
        }
        Some(other) => {
            c.problem(
                &k("delivery"),
                format!("`{other}`: expected \"buffer\" or \"direct\""),
            );
            return None;
        }
    };
    let Some(url) = raw.url.as_deref() else {
        c.problem(&k("url"), "missing: where this route reaches the HIS");
        return None;
    };
    let kind = raw.kind.as_deref().unwrap_or("http");
    let target = match kind {
        "http" => {
            let soap_only = [
                ("operation", raw.operation.is_some()),
                ("namespace", raw.namespace.is_some()),
                ("soap_version", raw.soap_version.is_some()),
                ("param", raw.param.is_some()),
                ("soap_action", raw.soap_action.is_some()),
                ("param_name", raw.param_name.is_some()),
                ("charset", raw.charset.is_some()),
                ("arrays", raw.arrays.is_some()),
                ("args", raw.args.is_some()),
                ("qualified", raw.qualified.is_some()),
            ];
            for (key, set) in soap_only {
                if set {
                    c.warn(&k(key), "ignored on a kind = \"http\" route");
                }
            }
            let probe = url.replace("{name}", "n").replace("{method}", "m");
            if probe.contains('{') || probe.contains('}') {
                c.problem(
                    &k("url"),
                    "only {name} and {method} may be substituted in the url",
                );
                return None;
            }
            if let Err(e) = http_url(&probe) {
                c.problem(&k("url"), e);
                return None;
            }
            HisTarget::Http {
                url: url.to_string(),
            }
        }
        "soap" => {
            if let Err(e) = http_url(url) {
                c.problem(&k("url"), e);
                return None;
            }
            let inherited = inherit.and_then(|d| match &d.target {
                HisTarget::Soap(s) => Some(s),
                HisTarget::Http { .. } => None,
            });
            let version = match raw.soap_version.as_deref() {
                None => inherited.map_or(SoapVersion::V11, |s| s.version),
                Some("1.1") => SoapVersion::V11,
                Some("1.2") => SoapVersion::V12,
                Some(v) => {
                    c.problem(
                        &k("soap_version"),
                        format!("`{v}`: expected \"1.1\" or \"1.2\""),
                    );
                    return None;
                }
            };
            let param = match raw.param.as_deref() {
                None => inherited.map_or(SoapParam::String, |s| s.param),
                Some("string") => SoapParam::String,
                Some("xml") => SoapParam::Xml,
                Some(v) => {
                    c.problem(
                        &k("param"),
                        format!("`{v}`: expected \"string\" or \"xml\""),
                    );
                    return None;
                }
            };
            let namespace = raw
                .namespace
                .clone()
                .or_else(|| inherited.map(|s| s.namespace.clone()))
                .unwrap_or_else(|| "http://tempuri.org/".to_string());
            let param_name = raw
                .param_name
                .clone()
                .or_else(|| inherited.map(|s| s.param_name.clone()))
                .unwrap_or_else(|| "param".to_string());
            let mut names_ok = is_xml_name(&param_name);
            if !names_ok {
                c.problem(
                    &k("param_name"),
                    format!("`{param_name}` is not an XML element name"),
                );
            }
            if let Some(op) = &raw.operation {
                if !is_xml_name(op) {
                    c.problem(
                        &k("operation"),
                        format!("`{op}` is not an XML element name"),
                    );
                    names_ok = false;
                }
            }
            let charset = match raw.charset.as_deref() {
                None => inherited.and_then(|s| s.charset.clone()),
                Some(label) => {
                    match crate::charset::encoding_for(label) {
                        Ok(_) => Some(label.to_string()),
                        Err(_) => {
                            c.problem(
                            &k("charset"),
                            format!("`{label}`: expected \"utf-8\" or \"gbk\" (also gb2312, gb18030)"),
                        );
                            names_ok = false;
                            None
                        }
                    }
                }
            };
            let args: Vec<(String, String)> = match &raw.args {
                Some(a) => a.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                None => inherited.map(|s| s.args.clone()).unwrap_or_default(),
            };
            for (name, _) in &args {
                if !is_xml_name(name) {
                    c.problem(&k("args"), format!("`{name}` is not an XML element name"));
                    names_ok = false;
                }
            }
            if !names_ok {
                return None;
            }
            HisTarget::Soap(SoapTarget {
                url: url.to_string(),
                operation: raw.operation.clone(),
                namespace,
                version,
                param,
                soap_action: raw
                    .soap_action
                    .clone()
                    .or_else(|| inherited.and_then(|s| s.soap_action.clone())),
                param_name,
                charset,
                arrays: raw
                    .arrays
                    .clone()
                    .or_else(|| inherited.map(|s| s.arrays.clone()))
                    .unwrap_or_default(),
                args,
                qualified: raw
                    .qualified
                    .or_else(|| inherited.map(|s| s.qualified))
                    .unwrap_or(true),
            })
        }
        other => {
            c.problem(
                &k("kind"),
                format!("`{other}`: expected \"http\" or \"soap\""),
            );
            return None;
        }
    };
    Some(HisRoute {
        target,
        timeout,
        delivery,
    })
}

/// An element name safe to write unescaped: letters, digits, `_`, `-`, `.`, not starting with a
/// digit, `-` or `.`.
fn is_xml_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && s.len() <= 128
}

fn pacs(c: &mut Checker<'_>, raw: raw::RawPacs, buffer_path: &Path) -> PacsConfig {
    let k = |key: &'static str| [Step::Key("pacs"), Step::Key(key)];
    if let Some(t) = &raw.dcm_url {
        if let Err(e) = dcm_template(t) {
            c.problem(&k("dcm_url"), e);
        }
    }
    let mut internal_hosts = Vec::new();
    for (i, h) in raw.internal_hosts.unwrap_or_default().iter().enumerate() {
        match internal_host(h) {
            Ok(h) => internal_hosts.push(h),
            Err(e) => c.problem(
                &[
                    Step::Key("pacs"),
                    Step::Key("internal_hosts"),
                    Step::Index(i),
                ],
                e,
            ),
        }
    }
    let link_key = raw.link_key.map(Secret);
    if link_key.as_ref().is_some_and(|s| s.0.len() < 32) {
        c.problem(
            &k("link_key"),
            "too short: use at least 32 random characters (or leave it out and the box generates \
             and keeps its own key)",
        );
    }
    let link_key_file = match raw.link_key_file.as_deref() {
        Some(p) => c.resolve(p),
        None => buffer_path.parent().map_or_else(
            || PathBuf::from("pacs-link.key"),
            |d| d.join("pacs-link.key"),
        ),
    };
    // The box's own link key is a secret like the others: warned about when others can read it.
    private_key_permissions(c, &k("link_key_file"), &link_key_file);
    let rewrite_fields = raw.rewrite_fields.unwrap_or_else(|| {
        DEFAULT_REWRITE_FIELDS
            .iter()
            .map(|s| s.to_string())
            .collect()
    });
    PacsConfig {
        dcm_url: raw.dcm_url.map(|s| s.trim().to_string()),
        internal_hosts,
        link_ttl: duration(
            c,
            &k("link_ttl"),
            raw.link_ttl.as_deref(),
            Duration::from_secs(3600),
        ),
        link_key,
        link_key_file,
        rewrite_fields,
        read_timeout: duration(
            c,
            &k("read_timeout"),
            raw.read_timeout.as_deref(),
            Duration::from_secs(30),
        ),
        connect_timeout: duration(
            c,
            &k("connect_timeout"),
            raw.connect_timeout.as_deref(),
            Duration::from_secs(5),
        ),
    }
}

fn auth(c: &mut Checker<'_>, raw: raw::RawAuth) -> Option<AuthConfig> {
    let k = |key: &'static str| [Step::Key("auth"), Step::Key(key)];
    let max_skew = duration(
        c,
        &k("max_skew"),
        raw.max_skew.as_deref(),
        Duration::from_secs(300),
    );
    let secret = match (raw.shared_secret, raw.shared_secret_file) {
        (Some(_), Some(_)) => {
            c.problem(
                &k("shared_secret_file"),
                "set shared_secret or shared_secret_file, not both",
            );
            return None;
        }
        (None, None) => {
            c.problem(
                &[Step::Key("auth")],
                "[auth] needs shared_secret or shared_secret_file (the secret agreed with the cloud team)",
            );
            return None;
        }
        (Some(s), None) => s,
        (None, Some(f)) => {
            let path = existing_file(c, &k("shared_secret_file"), &f)?;
            private_key_permissions(c, &k("shared_secret_file"), &path);
            match std::fs::read_to_string(&path) {
                Ok(s) => s.trim().to_string(),
                Err(e) => {
                    c.problem(
                        &k("shared_secret_file"),
                        format!("cannot read {}: {e}", path.display()),
                    );
                    return None;
                }
            }
        }
    };
    if secret.len() < 32 {
        // Never echo the secret itself.
        c.problem(
            &k("shared_secret"),
            "too short: the shared secret must have at least 32 characters",
        );
        return None;
    }
    Some(AuthConfig {
        secret: Secret(secret),
        max_skew,
    })
}

/// A PACS URL template: an http(s) URL once `{dcmId}` and `{hospitalId}` are filled in, with
/// the placeholders only in the path or query (a value can never choose the host).
fn dcm_template(t: &str) -> Result<(), String> {
    if !t.contains("{dcmId}") {
        return Err(format!("`{t}` has no {{dcmId}} placeholder"));
    }
    let rest = t.replace("{dcmId}", "").replace("{hospitalId}", "");
    if rest.contains('{') || rest.contains('}') {
        return Err(format!(
            "`{t}`: only {{dcmId}} and {{hospitalId}} can be filled in"
        ));
    }
    let a = http_url(&t.replace("{dcmId}", "a").replace("{hospitalId}", "a"))?;
    let b = http_url(&t.replace("{dcmId}", "b1").replace("{hospitalId}", "b1"))?;
    if a.host_str() != b.host_str()
        || a.port() != b.port()
        || a.username() != ""
        || a.password().is_some()
    {
        return Err(format!(
            "`{t}`: the placeholders must be in the path or the query, not in the host"
        ));
    }
    Ok(())
}

/// `host:port` or `host` (the scheme's default port).
fn internal_host(s: &str) -> Result<InternalHost, String> {
    let s = s.trim();
    let bad = || format!("`{s}` is not a host or host:port (e.g. \"10.1.1.20:8080\")");
    if s.is_empty() || s.contains(['/', '@', '?', '#', ' ']) {
        return Err(bad());
    }
    let u = reqwest::Url::parse(&format!("http://{s}/")).map_err(|_| bad())?;
    let host = u.host_str().ok_or_else(bad)?.to_string();
    // `http://host:80/` parses with no explicit port: keep what the operator wrote.
    let port = if u.port().is_some() || s.ends_with(":80") {
        u.port_or_known_default()
    } else {
        None
    };
    Ok(InternalHost { host, port })
}

fn http_url(s: &str) -> Result<reqwest::Url, String> {
    let u = reqwest::Url::parse(s.trim()).map_err(|e| format!("`{s}` is not a URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!(
            "`{s}`: only http:// and https:// URLs are supported"
        ));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{s}` has no host"));
    }
    Ok(u)
}

fn socket_addr(c: &mut Checker<'_>, at: &[Step<'_>], v: Option<String>) -> Option<SocketAddr> {
    let Some(v) = v else {
        c.problem(at, "missing: an address such as \"0.0.0.0:8080\"");
        return None;
    };
    match v.trim().parse() {
        Ok(a) => Some(a),
        Err(_) => {
            c.problem(
                at,
                format!("`{v}` is not IP:port (e.g. \"0.0.0.0:8080\" or \"[::]:8080\")"),
            );
            None
        }
    }
}

fn nets(c: &mut Checker<'_>, at: &[Step<'_>], v: Option<Vec<String>>) -> Option<Vec<IpNet>> {
    let v = v?;
    let mut out = Vec::new();
    for (i, s) in v.iter().enumerate() {
        let mut p = at.to_vec();
        p.push(Step::Index(i));
        match parse_net(s) {
            Some(n) => out.push(n),
            None => c.problem(
                &p,
                format!("`{s}` is not an address or CIDR block (e.g. \"10.0.0.0/8\", \"::1\")"),
            ),
        }
    }
    Some(out)
}

/// A CIDR block, or a bare address meaning just that host. IPv4-mapped IPv6 blocks are turned
/// into IPv4, as peers are.
fn parse_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    let net = match s.parse::<IpNet>() {
        Ok(n) => n,
        Err(_) => IpNet::from(s.parse::<IpAddr>().ok()?),
    };
    Some(match net {
        IpNet::V6(v6) => match v6.addr().to_ipv4_mapped() {
            Some(v4) if v6.prefix_len() >= 96 => {
                IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96).ok()?
            }
            _ => net.trunc(),
        },
        IpNet::V4(_) => net.trunc(),
    })
}

/// A private key (or secret) file that group or others can read is a warning: anyone on the
/// machine could impersonate the box.
fn private_key_permissions(c: &mut Checker<'_>, at: &[Step<'_>], path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(path) {
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                c.warn(
                    at,
                    format!(
                        "{} is readable by group or others (mode {mode:03o}): chmod 600 it, owned by the user the service runs as",
                        path.display()
                    ),
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (c, at, path);
}

fn existing_file(c: &mut Checker<'_>, at: &[Step<'_>], p: &str) -> Option<PathBuf> {
    let path = c.resolve(p);
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => Some(path),
        Ok(_) => {
            c.problem(at, format!("{} is not a file", path.display()));
            None
        }
        Err(e) => {
            c.problem(at, format!("cannot read {}: {e}", path.display()));
            None
        }
    }
}

fn millis(c: &mut Checker<'_>, at: &[Step<'_>], v: Option<u64>, default: u64) -> Duration {
    let ms = v.unwrap_or(default);
    if ms == 0 || ms > 3_600_000 {
        c.problem(at, format!("{ms} ms: must be between 1 and 3600000"));
        return Duration::from_millis(default);
    }
    Duration::from_millis(ms)
}

fn size(c: &mut Checker<'_>, at: &[Step<'_>], v: Option<&str>, default: u64) -> u64 {
    match v {
        None => default,
        Some(s) => parse_size(s).unwrap_or_else(|e| {
            c.problem(at, e);
            default
        }),
    }
}

fn duration(c: &mut Checker<'_>, at: &[Step<'_>], v: Option<&str>, default: Duration) -> Duration {
    match v {
        None => default,
        Some(s) => parse_duration(s).unwrap_or_else(|e| {
            c.problem(at, e);
            default
        }),
    }
}

/// Parses sizes such as `1MiB`, `512KiB`, `1GiB`, `1MB`, `1000` (bytes).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|ch: char| !(ch.is_ascii_digit() || ch == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size (e.g. \"1MiB\", \"512KiB\", \"2GiB\")"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        _ => return Err(format!("`{s}`: unknown unit (use B, KiB, MiB, GiB, TiB)")),
    };
    let v = n * mult as f64;
    if !(1.0..=(1u64 << 50) as f64).contains(&v) {
        return Err(format!("`{s}` is out of range"));
    }
    Ok(v as u64)
}

/// Parses durations such as `500ms`, `30s`, `5m`, `1h`, `7d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|ch: char| !ch.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (e.g. \"30s\", \"1h\", \"7d\")"))?;
    let ms: u64 = match unit.trim() {
        "ms" => 1,
        "s" | "" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("`{s}`: unknown unit (use ms, s, m, h, d)")),
    };
    let total = n
        .checked_mul(ms)
        .filter(|&v| v > 0 && v <= 366 * 86_400_000)
        .ok_or_else(|| format!("`{s}` is out of range"))?;
    Ok(Duration::from_millis(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("1.5 KiB"), Ok(1536));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("1 parsec").is_err());
        assert!(parse_size("0").is_err());
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("1y").is_err());
        assert!(parse_duration("99999999999999999d").is_err());
    }

    #[test]
    fn nets_accept_hosts_and_fold_mapped_ipv4() {
        assert_eq!(parse_net("10.1.2.3"), "10.1.2.3/32".parse().ok());
        assert_eq!(parse_net("10.1.2.3/8"), "10.0.0.0/8".parse().ok());
        assert_eq!(parse_net("::ffff:10.0.0.0/104"), "10.0.0.0/8".parse().ok());
        assert_eq!(parse_net("::1"), "::1/128".parse().ok());
        assert_eq!(parse_net("nonsense"), None);
    }
}
