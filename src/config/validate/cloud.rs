//! `[cloud]` and its `[[cloud.route]]` delivery overrides.

use std::collections::HashMap;
use std::time::Duration;

use super::values::*;
use super::{Checker, Step};
use crate::config::raw;
use crate::config::*;

use crate::catalog::{self, Catalog};

/// `[cloud] timeout_ms` by default: a call the cloud does not answer is answered (10003, or
/// 10001 once buffered) within `crate::config::ANSWER_WITHIN`.
const DEFAULT_CLOUD_TIMEOUT_MS: u64 = 8_000;
/// Above this `prefront check` warns: the HIS's client may give up before the box answers.
const MAX_QUIET_CLOUD_TIMEOUT_MS: u64 = 9_000;

pub(super) fn cloud(c: &mut Checker<'_>, raw: Option<raw::RawCloud>) -> Option<CloudConfig> {
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
    let timeout = millis(
        c,
        &k("timeout_ms"),
        raw.timeout_ms,
        DEFAULT_CLOUD_TIMEOUT_MS,
    );
    if timeout > Duration::from_millis(MAX_QUIET_CLOUD_TIMEOUT_MS) {
        c.warn(
            &k("timeout_ms"),
            format!(
                "{} ms: the HIS's sample client (附二) gives up after 10 s; a call the cloud does not \
                 answer is answered only after timeout_ms (a reminder then waits in the buffer and \
                 is answered 10001), so above {MAX_QUIET_CLOUD_TIMEOUT_MS} ms the HIS may have given \
                 up first (default {DEFAULT_CLOUD_TIMEOUT_MS})",
                timeout.as_millis()
            ),
        );
    }
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
    let proxy = cloud_proxy(c, raw.proxy.as_deref(), raw.proxy_auth_file.as_deref());
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
        proxy,
    })
}

/// `[cloud] proxy` (`http://host:port`, nothing else) and its `proxy_auth_file`.
fn cloud_proxy(
    c: &mut Checker<'_>,
    proxy: Option<&str>,
    auth_file: Option<&str>,
) -> Option<CloudProxy> {
    let k = |key| [Step::Key("cloud"), Step::Key(key)];
    let Some(text) = proxy else {
        if auth_file.is_some() {
            c.warn(
                &k("proxy_auth_file"),
                "set without [cloud] proxy: not used (the cloud is called directly)",
            );
        }
        return None;
    };
    let url = match proxy_url(text) {
        Ok(u) => Some(u),
        Err(e) => {
            c.problem(&k("proxy"), e);
            None
        }
    };
    let auth = auth_file.and_then(|f| proxy_auth(c, f));
    // A file that did not read is reported above; the proxy is not used half-configured.
    if auth_file.is_some() && auth.is_none() {
        return None;
    }
    Some(CloudProxy { url: url?, auth })
}

/// The proxy's URL: `http://host:port`, with an explicit port and nothing after it. The box
/// speaks plain HTTP to the proxy and TLS through it (CONNECT), so `https://` is refused, as is
/// any path, query, fragment or user (credentials go in `proxy_auth_file`).
fn proxy_url(text: &str) -> Result<reqwest::Url, String> {
    const FORM: &str = "only http://host:port is supported (e.g. \"http://10.0.0.5:3128\")";
    let s = text.trim();
    let Some(scheme_end) = s.find("://") else {
        return Err(format!("`{s}` is not a URL: {FORM}"));
    };
    let scheme = &s[..scheme_end];
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(format!(
            "`{scheme}://`: {FORM}; the box speaks plain HTTP to the proxy and TLS to the cloud \
             through it (CONNECT), so the proxy never sees the calls"
        ));
    }
    let u = reqwest::Url::parse(s).map_err(|e| format!("`{s}` is not a URL: {e}; {FORM}"))?;
    if !u.username().is_empty() || u.password().is_some() {
        // Never echo the URL: it holds a password.
        return Err(format!(
            "the proxy URL carries a user or password: {FORM}; put `user:password` in \
             proxy_auth_file"
        ));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{s}` has no host: {FORM}"));
    }
    if u.path() != "/" {
        return Err(format!("`{s}` has a path ({}): {FORM}", u.path()));
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(format!("`{s}` has a query or fragment: {FORM}"));
    }
    // `Url` drops a port equal to the scheme's default, so look at what was written.
    let authority = s[scheme_end + 3..]
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default();
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if !has_port {
        return Err(format!("`{s}` has no port: {FORM}"));
    }
    Ok(u)
}

/// `proxy_auth_file`: one line `user:password`, readable only by the service (warning otherwise).
/// Nothing of its content is ever echoed.
fn proxy_auth(c: &mut Checker<'_>, file: &str) -> Option<ProxyAuth> {
    let k = [Step::Key("cloud"), Step::Key("proxy_auth_file")];
    let path = existing_file(c, &k, file)?;
    private_key_permissions(c, &k, &path);
    let text = match std::fs::read_to_string(&path) {
        Ok(s) => s,
        Err(e) => {
            c.problem(&k, format!("cannot read {}: {e}", path.display()));
            return None;
        }
    };
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let line = lines.next().unwrap_or_default().trim_end_matches('\r');
    let one_line = lines.next().is_none();
    let parsed = line
        .split_once(':')
        .filter(|(user, password)| {
            one_line
                && !user.is_empty()
                && !password.is_empty()
                && !line.chars().any(char::is_control)
        })
        .map(|(user, password)| ProxyAuth {
            user: user.to_string(),
            password: Secret(password.to_string()),
        });
    if parsed.is_none() {
        c.problem(
            &k,
            format!(
                "{} must hold one line `user:password` (user and password not empty)",
                path.display()
            ),
        );
    }
    parsed
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
