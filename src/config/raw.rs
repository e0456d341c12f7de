//! The configuration file exactly as written: serde structs, every field optional where the file
//! may leave it out. `validate.rs` turns this into the typed, complete `Config`.

use serde::Deserialize;

/// Unknown top-level tables are reported (all of them, with lines) by the schema walk in
/// `validate.rs`, which then blanks them out; serde must not stop at the first.
#[derive(Debug, Default, Deserialize)]
pub struct RawConfig {
    pub his_listener: Option<RawListener>,
    pub cloud_listener: Option<RawListener>,
    pub admin: Option<RawAdmin>,
    pub cloud: Option<RawCloud>,
    pub his: Option<RawHis>,
    pub pacs: Option<RawPacs>,
    pub buffer: Option<RawBuffer>,
    pub auth: Option<RawAuth>,
    pub log: Option<RawLog>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub listen: Option<String>,
    pub allow: Option<Vec<String>>,
    pub trusted_proxies: Option<Vec<String>>,
    pub max_body: Option<String>,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    pub client_ca: Option<String>,
    pub allowed_client_names: Option<Vec<String>>,
    pub public_url: Option<String>,
    pub max_connections: Option<usize>,
    pub max_connections_per_peer: Option<usize>,
    pub idle_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Option<String>,
    pub allow: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCloud {
    pub base_url: Option<String>,
    pub ca: Option<String>,
    pub timeout_ms: Option<u64>,
    pub connect_timeout_ms: Option<u64>,
    pub max_response: Option<String>,
    pub pin_ca: Option<bool>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    #[serde(default)]
    pub route: Vec<RawCloudRoute>,
}

/// A `[[cloud.route]]`: per-interface choices for HIS → cloud calls.
#[derive(Debug, Default, Deserialize)]
pub struct RawCloudRoute {
    pub path: Option<String>,
    pub delivery: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHis {
    #[serde(flatten)]
    pub default: RawRoute,
    pub max_response: Option<String>,
    pub max_file_response: Option<String>,
    #[serde(default)]
    pub route: Vec<RawRoute>,
}

/// One way to reach the HIS: the `[his]` default or a `[[his.route]]` override.
#[derive(Debug, Default, Deserialize)]
pub struct RawRoute {
    /// Only meaningful in `[[his.route]]`.
    pub name: Option<String>,
    pub kind: Option<String>,
    pub url: Option<String>,
    pub operation: Option<String>,
    pub namespace: Option<String>,
    pub soap_version: Option<String>,
    pub param: Option<String>,
    pub soap_action: Option<String>,
    pub timeout_ms: Option<u64>,
    pub delivery: Option<String>,
    pub param_name: Option<String>,
    pub charset: Option<String>,
    pub arrays: Option<Vec<String>>,
    pub args: Option<std::collections::BTreeMap<String, String>>,
    pub qualified: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub shared_secret: Option<String>,
    pub shared_secret_file: Option<String>,
    pub max_skew: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPacs {
    pub dcm_url: Option<String>,
    pub internal_hosts: Option<Vec<String>>,
    pub link_ttl: Option<String>,
    pub link_key: Option<String>,
    pub link_key_file: Option<String>,
    pub rewrite_fields: Option<Vec<String>>,
    pub read_timeout: Option<String>,
    pub connect_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBuffer {
    pub path: Option<String>,
    pub max_bytes: Option<String>,
    pub ttl: Option<String>,
    pub max_attempts: Option<u32>,
    pub result_ttl: Option<String>,
    pub dead_ttl: Option<String>,
    pub retry_min: Option<String>,
    pub retry_max: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub level: Option<String>,
}

/// Every key the file may contain, per table, for reporting all unknown keys at once (serde's
/// `deny_unknown_fields` stops at the first). `[[his.route]]` entries use `ROUTE_KEYS`.
pub const SCHEMA: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "his_listener",
            "cloud_listener",
            "admin",
            "cloud",
            "his",
            "pacs",
            "buffer",
            "auth",
            "log",
        ],
    ),
    ("auth", &["shared_secret", "shared_secret_file", "max_skew"]),
    ("his_listener", LISTENER_KEYS),
    ("cloud_listener", LISTENER_KEYS),
    ("admin", &["listen", "allow"]),
    (
        "cloud",
        &[
            "base_url",
            "ca",
            "timeout_ms",
            "connect_timeout_ms",
            "max_response",
            "pin_ca",
            "client_cert",
            "client_key",
            "route",
        ],
    ),
    (
        "pacs",
        &[
            "dcm_url",
            "internal_hosts",
            "link_ttl",
            "link_key",
            "link_key_file",
            "rewrite_fields",
            "read_timeout",
            "connect_timeout",
        ],
    ),
    (
        "buffer",
        &[
            "path",
            "max_bytes",
            "ttl",
            "max_attempts",
            "result_ttl",
            "dead_ttl",
            "retry_min",
            "retry_max",
        ],
    ),
    ("log", &["level"]),
];

const LISTENER_KEYS: &[&str] = &[
    "listen",
    "allow",
    "trusted_proxies",
    "max_body",
    "tls_cert",
    "tls_key",
    "client_ca",
    "allowed_client_names",
    "public_url",
    "max_connections",
    "max_connections_per_peer",
    "idle_timeout",
];

/// Keys of a `[[cloud.route]]`.
pub const CLOUD_ROUTE_KEYS: &[&str] = &["path", "delivery"];

pub const ROUTE_KEYS: &[&str] = &[
    "name",
    "kind",
    "url",
    "operation",
    "namespace",
    "soap_version",
    "param",
    "soap_action",
    "timeout_ms",
    "delivery",
    "param_name",
    "charset",
    "arrays",
    "args",
    "qualified",
];
