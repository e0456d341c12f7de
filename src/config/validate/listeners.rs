//! `[his_listener]`, `[cloud_listener]`, `[files_listener]`: where the box listens and whom it
//! lets in.

use std::time::Duration;

use super::values::*;
use super::{Checker, Step};
use crate::config::raw::{RawFilesListener, RawListener};
use crate::config::*;

pub(super) fn loopback_nets() -> Vec<IpNet> {
    ["127.0.0.0/8", "::1/128"]
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// Everyone, IPv4 and IPv6: whom `[files_listener]` lets in without an `allow` list (patients'
/// phones open its links from anywhere; a link is its own credential).
const FILES_DEFAULT_ALLOW: [&str; 2] = ["0.0.0.0/0", "::/0"];

/// `[files_listener]`: read like the other listeners, but without `allow` it lets everyone in,
/// and it reads no request body (`max_body` 0).
pub(super) fn files_listener(
    c: &mut Checker<'_>,
    table: &'static str,
    raw: RawFilesListener,
) -> Option<ListenerConfig> {
    let mut raw = RawListener::from(raw);
    raw.allow
        .get_or_insert_with(|| FILES_DEFAULT_ALLOW.map(String::from).to_vec());
    listener(c, table, Some(raw), 0)
}

pub(super) fn listener(
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
