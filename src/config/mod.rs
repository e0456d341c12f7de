//! Configuration: one TOML file, parsed (`raw`), checked in full (`validate`), and turned into
//! the typed `Config` the rest of the box runs on. Every problem is reported at once, each with
//! its key and, where the file has it, its line.

mod raw;
mod validate;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

pub use validate::{parse_duration, parse_size};

/// The spec's sample HIS client (附二) waits 10 s for an answer: the defaults answer a HIS → cloud
/// call within this, also when its direct attempt times out and it is buffered instead.
pub const ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_secs(9);

/// The example configuration shipped in the repository; also the embedded default the binary
/// runs on when no file is given and none is installed.
pub const EXAMPLE: &str = include_str!("../../config/prefront.toml");

/// Longest `[[hospital]]` id (and longest id in a body's `hospitalId` list).
pub const MAX_HOSPITAL_ID: usize = 64;

/// Where an installed box keeps its configuration.
pub const INSTALLED_PATH: &str = "/etc/prefront/prefront.toml";

/// A fully validated configuration. Nothing in it needs checking again.
#[derive(Debug, Clone)]
pub struct Config {
    pub his_listener: ListenerConfig,
    pub cloud_listener: ListenerConfig,
    /// `[files_listener]`: `/files/<token>` only, for patients' phones (DESIGN.md §9); `None`:
    /// the links are served by the cloud listener alone. Its `max_body` is 0 (no body is read)
    /// and it asks for no client certificate.
    pub files_listener: Option<ListenerConfig>,
    /// Accepted now so operators' files stay valid; served by the admin listener.
    pub admin: Option<AdminConfig>,
    pub cloud: CloudConfig,
    pub his: HisConfig,
    pub pacs: PacsConfig,
    pub buffer: BufferConfig,
    pub trail: TrailConfig,
    /// Signed calls between the box and the cloud; `None`: TLS alone.
    pub auth: Option<AuthConfig>,
    pub log: LogConfig,
}

#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub listen: SocketAddr,
    /// Callers allowed in, decided on the TCP peer (or on `X-Forwarded-For` from a trusted proxy).
    pub allow: Vec<IpNet>,
    /// Peers whose `X-Forwarded-For` is believed. Empty: the header is ignored.
    pub trusted_proxies: Vec<IpNet>,
    /// Larger request bodies get 413.
    pub max_body: u64,
    /// `None` on a listener that has no certificate: plain HTTP.
    pub tls: Option<TlsFiles>,
    /// The URL callers use to reach this listener (links, WSDL address).
    pub public_url: Option<String>,
    /// Connections served at once; past it new ones are closed at once (and logged once a
    /// minute per caller).
    pub max_connections: usize,
    /// Connections one peer address may hold at once (default a quarter of `max_connections`,
    /// or all of a limit of 8 or less); past it its new ones are closed at once.
    pub max_connections_per_peer: usize,
    /// How long a caller has to send a request's headers, and how long an idle keep-alive
    /// connection stays open (slow-loris guard).
    pub idle_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, callers must present a client certificate issued by this CA.
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`: only client certificates naming one of these (subject CN or a DNS
    /// name) are let in. Empty: any certificate from the CA.
    pub allowed_client_names: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    pub allow: Vec<IpNet>,
    /// From `token_file`: every `/api/` call must carry `Authorization: Bearer <token>`.
    pub token: Option<Secret>,
    /// `vrrp_state_file`: where keepalived's notify hook (`packaging/ha/notify-prefront.sh`)
    /// writes this box's VRRP role; `/status` shows it when the file exists.
    pub vrrp_state_file: Option<PathBuf>,
}

/// The message trail (DESIGN.md §8): one entry per call, bounded by age and size.
#[derive(Debug, Clone)]
pub struct TrailConfig {
    pub enabled: bool,
    /// The trail's directory (default: `trail` beside the buffer's directory).
    pub path: PathBuf,
    pub max_age: Duration,
    pub max_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct CloudConfig {
    /// Always ends with `/`, so `prefront/<path>` can be joined onto it.
    pub base_url: reqwest::Url,
    /// An extra trust root for the cloud's certificate, on top of the system's.
    pub ca: Option<PathBuf>,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Cloud answers larger than this are refused rather than held in memory.
    pub max_response: u64,
    /// `[[cloud.route]]` overrides of the catalogue's buffering choice, by canonical path.
    pub delivery: HashMap<String, Delivery>,
    /// Trust only `ca` for the cloud's certificate, not the system's roots.
    pub pin_ca: bool,
    /// The box's own certificate for a cloud that requires mutual TLS.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// `[cloud] proxy`: the cloud link (calls, prober, `doctor`) goes through this HTTP CONNECT
    /// proxy; HIS and PACS calls never do.
    pub proxy: Option<CloudProxy>,
}

/// An HTTP CONNECT proxy in front of the cloud (`[cloud] proxy`, `proxy_auth_file`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudProxy {
    /// `http://host:port/`: no user, path, query or fragment.
    pub url: reqwest::Url,
    /// Basic credentials for the proxy (`Proxy-Authorization`), from `proxy_auth_file`.
    pub auth: Option<ProxyAuth>,
}

impl CloudProxy {
    /// `host:port` of the proxy, for messages.
    pub fn host_port(&self) -> String {
        let host = self.url.host_str().unwrap_or("?");
        match self.url.port_or_known_default() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        }
    }
}

/// The proxy's user and password; the password is a [`Secret`] (Debug shows `***`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyAuth {
    pub user: String,
    pub password: Secret,
}

#[derive(Debug, Clone)]
pub struct HisConfig {
    /// The `[his]` route used for every name without its own `[[his.route]]`; `None` when `[his]`
    /// has no `url`, so only explicitly routed names are served.
    pub default: Option<HisRoute>,
    /// `[[his.route]]` overrides by exact name.
    pub routes: HashMap<String, HisRoute>,
    /// Largest answer read from the HIS on an ordinary route.
    pub max_response: u64,
    /// Largest answer on the routes that carry whole documents as base64 (lab report PDFs,
    /// invoices, ECG images, pathology files).
    pub max_file_response: u64,
    /// `[[hospital]]` by id: empty on a box for one hospital, and then the body's `hospitalId`
    /// is never looked at.
    pub hospitals: BTreeMap<String, HospitalHis>,
}

/// One `[[hospital]]`'s way to its HIS.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HospitalHis {
    /// Its `his`: replaces `[his]` (and `[[his.route]]`) for this hospital.
    pub default: Option<HisRoute>,
    /// Its `[[hospital.route]]` overrides by exact name.
    pub routes: HashMap<String, HisRoute>,
}

/// Why a call's `hospitalId` has no route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HospitalMiss {
    /// No `[[hospital]]` has this id.
    Unknown,
    /// A list (`"253,254"`) whose hospitals are reached through different HIS routes.
    Split,
}

impl HisConfig {
    /// The route a cloud → HIS name takes, if any (the box's own `[his]`/`[[his.route]]`).
    pub fn route_for(&self, name: &str) -> Option<&HisRoute> {
        self.routes.get(name).or(self.default.as_ref())
    }

    /// The route for `name` in a call for `hospital` (the body's `hospitalId`; `None` without
    /// one): that hospital's `[[hospital.route]]`, else its `his`, else `[[his.route]]`/`[his]`.
    /// A list of ids (`"253,254"`, 40.1.1 and 41.1.1) is served when all of them are reached
    /// the same way. `Ok(None)`: a known hospital (or none) that does not serve `name`.
    pub fn route_in(
        &self,
        hospital: Option<&str>,
        name: &str,
    ) -> Result<Option<&HisRoute>, HospitalMiss> {
        let Some(ids) = hospital.filter(|_| !self.hospitals.is_empty()) else {
            return Ok(self.route_for(name));
        };
        let mut chosen: Option<Option<&HisRoute>> = None;
        for id in ids.split(',').map(str::trim) {
            let h = self.hospitals.get(id).ok_or(HospitalMiss::Unknown)?;
            let route = h
                .routes
                .get(name)
                .or(h.default.as_ref())
                .or_else(|| self.route_for(name));
            match chosen {
                Some(c) if c != route => return Err(HospitalMiss::Split),
                _ => chosen = Some(route),
            }
        }
        Ok(chosen.flatten())
    }

    /// Whether any hospital routes `name` explicitly (`[[his.route]]` or `[[hospital.route]]`):
    /// such a name is served even when the catalogue does not know it.
    pub fn routes_name(&self, name: &str) -> bool {
        self.routes.contains_key(name)
            || self.hospitals.values().any(|h| h.routes.contains_key(name))
    }

    /// The answer size limit for a name: documents get the larger one.
    pub fn max_response_for(&self, name: &str) -> u64 {
        if crate::catalog::carries_documents(name) {
            self.max_file_response.max(self.max_response)
        } else {
            self.max_response
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HisRoute {
    pub target: HisTarget,
    pub timeout: Duration,
    /// Per-route override of the catalogue's buffering decision.
    pub delivery: Option<Delivery>,
    /// What the HIS wants besides the call: credentials and fixed headers.
    pub credentials: HisCredentials,
}

/// `basic_auth_file`, `bearer_token_file` and `headers` of a route: read at load, the secrets
/// masked in `Debug`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HisCredentials {
    pub auth: Option<HisAuth>,
    /// Header names (lower case) and values, checked at load.
    pub headers: Vec<(String, String)>,
}

/// The `Authorization` a route sends to the HIS.
#[derive(Debug, Clone, PartialEq)]
pub enum HisAuth {
    Basic { user: String, password: Secret },
    Bearer(Secret),
}

#[derive(Debug, Clone, PartialEq)]
pub enum HisTarget {
    /// Plain HTTP JSON; `url` may contain `{name}` and `{method}`.
    Http { url: String },
    /// A WebService operation.
    Soap(SoapTarget),
}

#[derive(Debug, Clone, PartialEq)]
pub struct SoapTarget {
    pub url: String,
    /// `None`: the operation is the name's last segment.
    pub operation: Option<String>,
    pub namespace: String,
    pub version: SoapVersion,
    pub param: SoapParam,
    /// `None`: .NET's default, `<namespace>[/]<operation>` (`envelope::default_soap_action`);
    /// `Some("")` sends an empty SOAPAction. A template:
    /// `{namespace}`, `{operation}`, `{name}`, `{method}` are filled in.
    pub soap_action: Option<String>,
    /// Element that carries the JSON text with `param = "string"` (`arg0`/`in0` for Java stacks).
    pub param_name: String,
    /// Charset label for requests to this HIS (`utf-8`, or `gbk` for legacy services).
    pub charset: Option<String>,
    /// Dotted paths of the answer that are JSON arrays even with one element (`param = "xml"`).
    pub arrays: Vec<String>,
    /// Fixed extra string arguments before the payload (dispatcher-style services), templates
    /// like `soap_action`.
    pub args: Vec<(String, String)>,
    /// Child elements in the service namespace (`true`, .NET asmx/WCF and gSOAP) or without one
    /// (`false`, JAX-WS/CXF services with `arg0`).
    pub qualified: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoapVersion {
    V11,
    V12,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoapParam {
    /// The JSON text in one string element.
    String,
    /// JSON mapped to XML elements and back.
    Xml,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Buffer,
    Direct,
}

/// The fields whose URLs are rewritten unless the config names others.
pub const DEFAULT_REWRITE_FIELDS: &[&str] =
    &["dcms", "thumbnailUrl", "pdfUrl", "reportUrl", "imageUrl"];

/// PACS images and report files (`/pacs/dcm`, `/files/<token>`, link rewriting).
#[derive(Debug, Clone)]
pub struct PacsConfig {
    /// Template of the PACS download URL with `{dcmId}` and `{hospitalId}`.
    pub dcm_url: Option<String>,
    /// The LAN hosts whose URLs in HIS answers are rewritten to signed `/files` links, and the
    /// only hosts a `/files` link or a PACS redirect may lead to.
    pub internal_hosts: Vec<InternalHost>,
    /// Lifetime of a `/files/<token>` link.
    pub link_ttl: Duration,
    /// The signing key from the config; without it a key is generated in `link_key_file`.
    pub link_key: Option<Secret>,
    pub link_key_file: PathBuf,
    /// Answer fields whose URLs are rewritten (`dcms` only when the sibling `type` is `url`).
    pub rewrite_fields: Vec<String>,
    /// A stream that receives nothing for this long is abandoned (not a total time limit).
    pub read_timeout: Duration,
    pub connect_timeout: Duration,
    /// `[[hospital]]` ids and their `dcm_url` (`None`: the hospital uses `[pacs] dcm_url`).
    /// Empty on a box for one hospital, and then `hospitalId` only fills in the template.
    pub hospitals: BTreeMap<String, Option<String>>,
}

/// `[auth]`: the secret shared with the cloud team, and how far clocks may drift.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    pub secret: Secret,
    pub max_skew: Duration,
}

/// One `internal_hosts` entry: a host and, if given, a port (without one, the scheme's default
/// port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternalHost {
    pub host: String,
    pub port: Option<u16>,
}

impl InternalHost {
    /// Whether `url` points at this host.
    pub fn matches(&self, url: &reqwest::Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        let port = match self.port {
            Some(p) => url.port_or_known_default() == Some(p),
            None => url.port().is_none(),
        };
        port && host.eq_ignore_ascii_case(&self.host)
    }
}

/// A secret from the config: never printed (Debug shows `***`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, Clone)]
pub struct BufferConfig {
    /// The sled store's directory.
    pub path: PathBuf,
    /// Disk quota: past it, new buffered calls are refused with 40001 before acknowledgement.
    pub max_bytes: u64,
    /// A record not delivered within this time goes to the dead letters.
    pub ttl: Duration,
    /// Failed delivery attempts before a record goes to the dead letters (a poison message never
    /// blocks its route forever).
    pub max_attempts: u32,
    /// How long a delivered business call's answer is kept for a repeat with the same key.
    pub result_ttl: Duration,
    /// Dead letters hold patient data: they are deleted (and logged) after this long.
    pub dead_ttl: Duration,
    /// Backoff between delivery attempts: from `retry_min`, doubling, up to `retry_max`.
    pub retry_min: Duration,
    pub retry_max: Duration,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    /// A `tracing` filter directive such as `info` or `prefront=debug`.
    pub level: String,
}

/// One thing wrong (or worth a warning) in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key, e.g. `his.route[2].url`; empty for whole-file syntax errors.
    pub key: String,
    /// 1-based line in the file, where known.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.key.is_empty()) {
            (Some(l), false) => write!(f, "line {l}: {}: {}", self.key, self.message),
            (Some(l), true) => write!(f, "line {l}: {}", self.message),
            (None, false) => write!(f, "{}: {}", self.key, self.message),
            (None, true) => write!(f, "{}", self.message),
        }
    }
}

/// A configuration that cannot be used, with every problem found.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration{}: {} problem(s)", source_name.as_ref().map(|s| format!(" {s}")).unwrap_or_default(), problems.len())]
pub struct ConfigError {
    pub source_name: Option<String>,
    pub problems: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

/// A valid configuration and the warnings found on the way.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Problem>,
}

impl Config {
    /// Parses and validates TOML text. Relative paths in it resolve against `base_dir`.
    pub fn from_toml(text: &str, base_dir: &Path) -> Result<Loaded, ConfigError> {
        validate::load(text, base_dir)
    }

    /// Reads and validates a file; relative paths resolve against the file's directory.
    pub fn from_file(path: &Path) -> Result<Loaded, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            source_name: Some(path.display().to_string()),
            problems: vec![Problem {
                key: String::new(),
                line: None,
                message: format!("cannot read {}: {e}", path.display()),
            }],
            warnings: vec![],
        })?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| Path::new("."));
        Config::from_toml(&text, base).map_err(|mut e| {
            e.source_name = Some(path.display().to_string());
            e
        })
    }
}
