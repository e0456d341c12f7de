//! `[pacs]`: the PACS links the box rewrites and streams.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::values::*;
use super::{Checker, Step};
use crate::config::raw;
use crate::config::*;

pub(super) fn pacs(c: &mut Checker<'_>, raw: raw::RawPacs, buffer_path: &Path) -> PacsConfig {
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
        hospitals: Default::default(),
    }
}

/// A PACS URL template: an http(s) URL once `{dcmId}` and `{hospitalId}` are filled in, with
/// the placeholders only in the path or query (a value can never choose the host).
pub(super) fn dcm_template(t: &str) -> Result<(), String> {
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
pub(super) fn internal_host(s: &str) -> Result<InternalHost, String> {
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
