//! `[his]` and its `[[his.route]]` overrides: how the box reaches the HIS, per interface name.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use super::values::*;
use super::{Checker, Step};
use crate::config::raw::{self, RawRoute};
use crate::config::*;

use crate::catalog::{self, Catalog};

pub(super) fn his(c: &mut Checker<'_>, raw: Option<raw::RawHis>) -> Option<HisConfig> {
    let raw = raw.unwrap_or_default();
    let max_response = size(
        c,
        &[Step::Key("his"), Step::Key("max_response")],
        raw.own.max_response.as_deref(),
        4 << 20,
    );
    let max_file_response = size(
        c,
        &[Step::Key("his"), Step::Key("max_file_response")],
        raw.own.max_file_response.as_deref(),
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
        let credentials = [
            ("basic_auth_file", raw.default.basic_auth_file.is_some()),
            ("bearer_token_file", raw.default.bearer_token_file.is_some()),
            ("headers", raw.default.headers.is_some()),
        ];
        for (key, set) in credentials {
            if set {
                c.warn(
                    &[Step::Key("his"), Step::Key(key)],
                    "ignored: [his] has no url, so no route inherits it; set it on each \
                     [[his.route]]",
                );
            }
        }
        None
    };
    let (routes, routes_ok) = named_routes(
        c,
        &[Step::Key("his"), Step::Key("route")],
        &raw.own.route,
        default.as_ref(),
        "[[his.route]]",
    );
    ok &= routes_ok;
    ok.then_some(HisConfig {
        default,
        routes,
        max_response,
        max_file_response,
        hospitals: Default::default(),
    })
}

/// The `[[his.route]]` (or one hospital's `[[hospital.route]]`) entries at `at` (`his.route`),
/// by name; `false` when one of them is unusable. `table` names the entries in messages.
pub(super) fn named_routes(
    c: &mut Checker<'_>,
    at: &[Step<'_>],
    raw: &[RawRoute],
    inherit: Option<&HisRoute>,
    table: &str,
) -> (HashMap<String, HisRoute>, bool) {
    let catalog = Catalog::get();
    let mut ok = true;
    let mut routes = HashMap::new();
    for (i, r) in raw.iter().enumerate() {
        let mut at = at.to_vec();
        at.push(Step::Index(i));
        let mut name_at = at.clone();
        name_at.push(Step::Key("name"));
        let Some(name) = r.name.as_deref().map(str::trim) else {
            c.problem(&at, format!("a {table} needs a `name`"));
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
        match route(c, &at, r, inherit) {
            Some(route) => {
                routes.insert(name.to_string(), route);
            }
            None => ok = false,
        }
    }
    (routes, ok)
}

/// Builds one route; `inherit` is the `[his]` default a `[[his.route]]` falls back on for the
/// keys it leaves out (timeouts, SOAP namespace).
pub(super) fn route(
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
    let credentials = credentials(c, at, raw, inherit)?;
    Some(HisRoute {
        target,
        timeout,
        delivery,
        credentials,
    })
}

/// Headers the box sets itself on every HIS call: `headers` may not name them.
const OWN_HEADERS: [&str; 8] = [
    "content-type",
    "content-length",
    "host",
    "authorization",
    "soapaction",
    "x-request-id",
    "connection",
    "transfer-encoding",
];

/// A route's `basic_auth_file`, `bearer_token_file` and `headers`; a route that sets none of
/// the two files keeps `inherit`'s credentials, one without `headers` keeps its headers.
fn credentials(
    c: &mut Checker<'_>,
    at: &[Step<'_>],
    raw: &RawRoute,
    inherit: Option<&HisRoute>,
) -> Option<HisCredentials> {
    let k = |key: &'static str| {
        let mut v = at.to_vec();
        v.push(Step::Key(key));
        v
    };
    let inherited = inherit.map(|r| &r.credentials);
    // Every problem is reported: a bad file does not hide a bad header.
    let auth = match (&raw.basic_auth_file, &raw.bearer_token_file) {
        (Some(_), Some(_)) => {
            c.problem(
                &k("bearer_token_file"),
                "set basic_auth_file or bearer_token_file, not both",
            );
            None
        }
        (Some(f), None) => basic_auth(c, &k("basic_auth_file"), f).map(Some),
        (None, Some(f)) => bearer_token(c, &k("bearer_token_file"), f).map(Some),
        (None, None) => Some(inherited.and_then(|i| i.auth.clone())),
    };
    let headers = match &raw.headers {
        None => Some(inherited.map(|i| i.headers.clone()).unwrap_or_default()),
        Some(map) => {
            let mut ok = true;
            let mut out = Vec::new();
            for (name, value) in map {
                let lower = name.to_ascii_lowercase();
                if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    c.problem(
                        &k("headers"),
                        format!("`{name}` is not a valid HTTP header name"),
                    );
                    ok = false;
                } else if OWN_HEADERS.contains(&lower.as_str()) {
                    c.problem(
                        &k("headers"),
                        format!(
                            "`{name}`: the box sets this header itself (credentials go in \
                             basic_auth_file or bearer_token_file)"
                        ),
                    );
                    ok = false;
                } else if reqwest::header::HeaderValue::from_str(value).is_err() {
                    // The value is not a secret, but keep messages short: name the header.
                    c.problem(
                        &k("headers"),
                        format!("the value of `{name}` is not a valid HTTP header value"),
                    );
                    ok = false;
                } else {
                    out.push((lower, value.clone()));
                }
            }
            ok.then_some(out)
        }
    };
    Some(HisCredentials {
        auth: auth?,
        headers: headers?,
    })
}

/// Reads a secret file's one line (blank lines around it ignored); `None` after a problem.
/// Nothing of its content is ever echoed.
fn secret_line(
    c: &mut Checker<'_>,
    at: &[Step<'_>],
    file: &str,
    form: &str,
) -> Option<(PathBuf, String)> {
    let path = existing_file(c, at, file)?;
    private_key_permissions(c, at, &path);
    let text = match std::fs::read_to_string(&path) {
        Ok(s) => s,
        Err(e) => {
            c.problem(at, format!("cannot read {}: {e}", path.display()));
            return None;
        }
    };
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let line = lines.next().unwrap_or_default().trim_end_matches('\r');
    if lines.next().is_some() {
        c.problem(at, format!("{} must hold one line, {form}", path.display()));
        return None;
    }
    Some((path, line.to_string()))
}

/// `basic_auth_file`: one line `user:password`, the user without `:`, no control characters.
fn basic_auth(c: &mut Checker<'_>, at: &[Step<'_>], file: &str) -> Option<HisAuth> {
    let (path, line) = secret_line(c, at, file, "`user:password`")?;
    let parsed = line
        .split_once(':')
        .filter(|(user, password)| {
            !user.is_empty() && !password.is_empty() && !line.chars().any(char::is_control)
        })
        .map(|(user, password)| HisAuth::Basic {
            user: user.to_string(),
            password: Secret(password.to_string()),
        });
    if parsed.is_none() {
        c.problem(
            at,
            format!(
                "{} must hold one line `user:password` (user and password not empty, no \
                 control characters)",
                path.display()
            ),
        );
    }
    parsed
}

/// `bearer_token_file`: one line of printable characters without spaces.
fn bearer_token(c: &mut Checker<'_>, at: &[Step<'_>], file: &str) -> Option<HisAuth> {
    let (path, line) = secret_line(c, at, file, "the token")?;
    let token = line.trim();
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        c.problem(
            at,
            format!(
                "{} must hold one line: the token, printable characters without spaces",
                path.display()
            ),
        );
        return None;
    }
    Some(HisAuth::Bearer(Secret(token.to_string())))
}

/// An element name safe to write unescaped: letters, digits, `_`, `-`, `.`, not starting with a
/// digit, `-` or `.`.
fn is_xml_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && s.len() <= 128
}
