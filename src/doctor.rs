//! `prefront doctor`: checks an installation in one command — the configuration, certificates,
//! listen ports, the cloud (DNS, TLS, clock), every HIS route, the buffer directory and the PACS —
//! and says for each what is wrong and how to fix it.
//!
//! Every check is bounded by `CHECK_TIMEOUT`; independent checks run at the same time. Nothing
//! here opens the buffer store (a running gateway holds its lock) or prints key material.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::io::Write;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use tokio::task::JoinSet;

use crate::certinfo::{self, CertInfo};
use crate::config::{
    BufferConfig, CloudConfig, Config, ConfigError, HisRoute, HisTarget, ListenerConfig, Loaded,
    TlsFiles,
};

/// The longest any one check waits on the network.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// A certificate that expires sooner than this is a warning.
const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 86_400);
/// Clock skew against the cloud above this is a warning …
const SKEW_WARNING: Duration = Duration::from_secs(30);
/// … and above this a failure: signed calls and TLS validity checks break.
const SKEW_FAILURE: Duration = Duration::from_secs(300);
/// Less free space than this under the buffer is a failure.
const MIN_FREE_BYTES: u64 = 64 << 20;
/// The name a `{name}`/`{method}` route URL is filled with for its one probe.
const REPRESENTATIVE_NAME: &str = "hospital.interface.createCard";
/// Largest WSDL read.
const MAX_WSDL_BYTES: usize = 8 << 20;
/// Operations listed when the configured one is missing from a WSDL.
const OPERATIONS_LISTED: usize = 8;

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

impl Status {
    /// The line's first column: English for scripts and `grep`, Chinese for the reader.
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS 通过",
            Status::Warn => "WARN 注意",
            Status::Fail => "FAIL 失败",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub status: Status,
    /// What was checked, e.g. `port his_listener.listen`.
    pub what: String,
    /// What was found and, when it is not a pass, how to fix it.
    pub detail: String,
}

impl Check {
    fn new(status: Status, what: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            status,
            what: what.into(),
            detail: detail.into(),
        }
    }

    fn pass(what: impl Into<String>, detail: impl Into<String>) -> Check {
        Check::new(Status::Pass, what, detail)
    }

    fn warn(what: impl Into<String>, detail: impl Into<String>) -> Check {
        Check::new(Status::Warn, what, detail)
    }

    fn fail(what: impl Into<String>, detail: impl Into<String>) -> Check {
        Check::new(Status::Fail, what, detail)
    }
}

/// Every check's line, in a fixed order.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub lines: Vec<Check>,
}

impl Report {
    /// Whether any check failed (the command then exits 1).
    pub fn failed(&self) -> bool {
        self.lines.iter().any(|c| c.status == Status::Fail)
    }

    pub fn count(&self, status: Status) -> usize {
        self.lines.iter().filter(|c| c.status == status).count()
    }
}

/// Widest `what` column; longer labels push their line's detail to the right.
const WHAT_WIDTH: usize = 44;

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .lines
            .iter()
            .map(|c| c.what.chars().count())
            .max()
            .unwrap_or(0)
            .min(WHAT_WIDTH);
        for c in &self.lines {
            let detail: String = c
                .detail
                .chars()
                .map(|ch| if ch.is_control() { ' ' } else { ch })
                .collect();
            writeln!(f, "{}  {:<width$}  — {detail}", c.status.label(), c.what)?;
        }
        writeln!(
            f,
            "doctor: {} passed, {} warnings, {} failed",
            self.count(Status::Pass),
            self.count(Status::Warn),
            self.count(Status::Fail)
        )
    }
}

/// Checks the installation described by the configuration file at `config_path`.
pub async fn run(config_path: &Path) -> Report {
    run_loaded(
        &config_path.display().to_string(),
        Config::from_file(config_path),
    )
    .await
}

/// `run` for the `prefront` command: a configuration already looked up the way `check` does it
/// (`source` names it in the report), on a runtime of its own.
pub fn run_blocking(source: &str, loaded: Result<Loaded, ConfigError>) -> Report {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            return Report {
                lines: vec![Check::fail(
                    "doctor",
                    format!("cannot start the async runtime: {e}"),
                )],
            }
        }
    };
    let report = runtime.block_on(run_loaded(source, loaded));
    // A name lookup stuck in the system resolver must not hold the command up.
    runtime.shutdown_timeout(Duration::from_millis(200));
    report
}

/// Checks the installation a loaded (or refused) configuration describes.
pub async fn run_loaded(source: &str, loaded: Result<Loaded, ConfigError>) -> Report {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut lines = Vec::new();
    let loaded = match loaded {
        Ok(l) => l,
        Err(e) => {
            lines.push(Check::fail(
                "config",
                format!(
                    "{source}: {} problem(s); fix them first (nothing else was checked)",
                    e.problems.len()
                ),
            ));
            for p in &e.problems {
                lines.push(Check::fail("config", p.to_string()));
            }
            for w in &e.warnings {
                lines.push(Check::warn("config", w.to_string()));
            }
            return Report { lines };
        }
    };
    lines.push(Check::pass("config", format!("{source}: valid")));
    for w in &loaded.warnings {
        lines.push(Check::warn("config", w.to_string()));
    }
    let config = Arc::new(loaded.config);

    let blocking = |f: fn(&Config) -> Vec<Check>| {
        let config = config.clone();
        tokio::task::spawn_blocking(move || f(&config))
    };
    let certs = blocking(cert_checks);
    let ports = blocking(port_checks);
    let buffer = blocking(|c| buffer_checks(&c.buffer));
    let startup = blocking(startup_check);
    let cloud = {
        let config = config.clone();
        tokio::spawn(async move { cloud_checks(&config.cloud).await })
    };
    let his = {
        let config = config.clone();
        tokio::spawn(async move { his_checks(&config).await })
    };
    let pacs = {
        let config = config.clone();
        tokio::spawn(async move { pacs_checks(&config).await })
    };
    let groups = [
        ("certificates", certs.await),
        ("ports", ports.await),
        ("cloud", cloud.await),
        ("HIS", his.await),
        ("buffer", buffer.await),
        ("PACS", pacs.await),
    ];
    for (name, group) in groups {
        match group {
            Ok(checks) => lines.extend(checks),
            Err(e) => lines.push(Check::fail(name, format!("the check itself failed: {e}"))),
        }
    }
    // Whatever `prefront check` refuses must not pass here; most of it has a line of its own
    // already (certificates, trust roots), so its error is added only when nothing failed.
    match startup.await {
        Ok(extra) => {
            if !lines.iter().any(|c| c.status == Status::Fail) {
                lines.extend(extra);
            }
        }
        Err(e) => lines.push(Check::fail(
            "start-up check",
            format!("the check itself failed: {e}"),
        )),
    }
    Report { lines }
}

/// What a start would refuse (the same as `prefront check`), as a line only when it fails.
fn startup_check(config: &Config) -> Vec<Check> {
    match crate::preflight(config) {
        Ok(()) => Vec::new(),
        Err(e) => vec![Check::fail(
            "start-up check",
            format!("{e} (the gateway would not start; `prefront check` says the same)"),
        )],
    }
}

// ---------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------

fn cert_checks(config: &Config) -> Vec<Check> {
    let now = SystemTime::now();
    let mut out = Vec::new();
    let listeners: [(&str, &ListenerConfig); 2] = [
        ("his_listener", &config.his_listener),
        ("cloud_listener", &config.cloud_listener),
    ];
    for (name, l) in listeners {
        if let Some(files) = &l.tls {
            out.push(server_cert_check(name, files, now));
            if let Some(ca) = &files.client_ca {
                out.push(ca_check(&format!("{name}.client_ca"), ca, now));
            }
        }
    }
    if let Some(ca) = &config.cloud.ca {
        out.push(ca_check("cloud.ca", ca, now));
    }
    out
}

fn days(d: Duration) -> u64 {
    d.as_secs() / 86_400
}

/// The expiry verdict for a set of certificates: the earliest `notAfter` counts.
fn expiry_verdict(infos: &[CertInfo], now: SystemTime, renew: &str) -> (Status, String) {
    if let Some((i, c)) = infos.iter().enumerate().find(|(_, c)| c.not_before > now) {
        return (
            Status::Fail,
            format!(
                "certificate {} ({}) is not valid before {}: check this machine's clock \
                 (`date -u`; timedatectl set-ntp true)",
                i + 1,
                c.name(),
                certinfo::utc_datetime(c.not_before)
            ),
        );
    }
    let Some((i, first)) = infos.iter().enumerate().min_by_key(|(_, c)| c.not_after) else {
        return (Status::Fail, "no certificate".into());
    };
    let which = if infos.len() > 1 {
        format!("certificate {} ({})", i + 1, first.name())
    } else {
        format!("certificate for {}", first.name())
    };
    let date = certinfo::utc_date(first.not_after);
    match first.not_after.duration_since(now) {
        Err(ago) => (
            Status::Fail,
            format!(
                "{which} EXPIRED on {date} ({} days ago): {renew}",
                days(ago.duration())
            ),
        ),
        Ok(left) if left < EXPIRY_WARNING => (
            Status::Warn,
            format!(
                "{which} expires on {date}, in {} days: {renew} soon",
                days(left)
            ),
        ),
        Ok(left) => (
            Status::Pass,
            format!("{which}, expires {date} (in {} days)", days(left)),
        ),
    }
}

fn parse_all(
    path: &Path,
    chain: &[rustls::pki_types::CertificateDer<'_>],
) -> Result<Vec<CertInfo>, String> {
    chain
        .iter()
        .enumerate()
        .map(|(i, der)| {
            certinfo::parse(der)
                .map_err(|e| format!("{}: certificate {} in it: {e}", path.display(), i + 1))
        })
        .collect()
}

/// A listener's certificate chain and key: readable, parsed, the key belongs to the first
/// certificate, each certificate was issued by the next, none expired or close to it.
fn server_cert_check(listener: &str, files: &TlsFiles, now: SystemTime) -> Check {
    let what = format!("certificate {listener}.tls_cert");
    let chain = match certinfo::read_pem_certs(&files.cert) {
        Ok(c) => c,
        Err(e) => {
            return Check::fail(
                what,
                format!("{e}: tls_cert must be the box's certificate in PEM, then its intermediates (convert DER with `openssl x509 -inform der -in F -out F.pem`)"),
            )
        }
    };
    let infos = match parse_all(&files.cert, &chain) {
        Ok(i) => i,
        Err(e) => return Check::fail(what, e),
    };
    // Never quote the key file's content or its parser's message: only say what failed.
    let key = match PrivateKeyDer::from_pem_file(&files.key) {
        Ok(k) => k,
        Err(_) => {
            return Check::fail(
                what,
                format!(
                    "{}: no readable PEM private key in it (an encrypted key must be decrypted: \
                     `openssl pkey -in KEY -out KEY.plain`; check the file's permissions)",
                    files.key.display()
                ),
            )
        }
    };
    let provider = rustls::crypto::ring::default_provider();
    let signing = match provider.key_provider.load_private_key(key) {
        Ok(k) => k,
        Err(_) => {
            return Check::fail(
                what,
                format!(
                    "{}: not a usable private key (RSA, ECDSA P-256/P-384 or Ed25519 expected)",
                    files.key.display()
                ),
            )
        }
    };
    let key_note = match rustls::sign::CertifiedKey::new(chain.clone(), signing).keys_match() {
        Ok(()) => "key matches",
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Check::fail(
                what,
                format!(
                    "{} does not belong to {} ({}): use the key the certificate was requested \
                     with, or tls_cert must list the box's own certificate first",
                    files.key.display(),
                    files.cert.display(),
                    infos.first().map_or("?", |c| c.name())
                ),
            )
        }
        Err(rustls::Error::InconsistentKeys(_)) => "key match not checkable for this key type",
        Err(e) => return Check::fail(what, format!("{}: {e}", files.cert.display())),
    };
    for i in 1..chain.len() {
        if let Err(e) = certinfo::check_signed_by(&chain[i - 1], &chain[i]) {
            return Check::fail(
                what,
                format!(
                    "{}: certificate {} ({}) was not issued by certificate {} ({}): {e}; the file \
                     must hold the box's certificate first, then the intermediate that issued it, \
                     and so on",
                    files.cert.display(),
                    i,
                    infos[i - 1].name(),
                    i + 1,
                    infos[i].name()
                ),
            );
        }
    }
    let (status, expiry) = expiry_verdict(&infos, now, "renew the certificate");
    if status == Status::Fail {
        return Check::fail(what, format!("{}: {expiry}", files.cert.display()));
    }
    // What the gateway itself builds from the pair (client_ca has a line of its own).
    let pair = TlsFiles {
        cert: files.cert.clone(),
        key: files.key.clone(),
        client_ca: None,
        allowed_client_names: Vec::new(),
    };
    if let Err(e) = crate::listener::tls::server_config(&pair) {
        return Check::fail(what, e.to_string());
    }
    let chain_note = if chain.len() > 1 {
        format!("chain of {} verified", chain.len())
    } else {
        format!("issued by {}", short_dn(&infos[0].issuer))
    };
    Check::new(
        status,
        what,
        format!(
            "{}: {expiry}; {key_note}; {chain_note}",
            files.cert.display()
        ),
    )
}

/// The CN of a distinguished name if it has one.
fn short_dn(dn: &str) -> String {
    dn.split(", ")
        .find_map(|p| p.strip_prefix("CN="))
        .unwrap_or(dn)
        .to_string()
}

/// A trust-root file (`client_ca`, `cloud.ca`): readable PEM certificates that rustls accepts
/// as roots, none expired or close to it.
fn ca_check(key: &str, path: &Path, now: SystemTime) -> Check {
    let what = key.to_string();
    let chain = match certinfo::read_pem_certs(path) {
        Ok(c) => c,
        Err(e) => return Check::fail(what, e),
    };
    let infos = match parse_all(path, &chain) {
        Ok(i) => i,
        Err(e) => return Check::fail(what, e),
    };
    let mut roots = rustls::RootCertStore::empty();
    for (i, c) in chain.into_iter().enumerate() {
        if let Err(e) = roots.add(c) {
            return Check::fail(
                what,
                format!(
                    "{}: certificate {} cannot be a trust root: {e}",
                    path.display(),
                    i + 1
                ),
            );
        }
    }
    let (status, expiry) = expiry_verdict(&infos, now, "get the renewed CA certificate");
    let count = if infos.len() > 1 {
        format!("{} certificates; ", infos.len())
    } else {
        String::new()
    };
    Check::new(status, what, format!("{}: {count}{expiry}", path.display()))
}

// ---------------------------------------------------------------------------
// Listen ports
// ---------------------------------------------------------------------------

fn port_checks(config: &Config) -> Vec<Check> {
    let mut listeners = vec![
        ("his_listener", config.his_listener.listen),
        ("cloud_listener", config.cloud_listener.listen),
    ];
    if let Some(a) = &config.admin {
        listeners.push(("admin", a.listen));
    }
    // Held until every address is tried, so two listeners on one port show up too.
    let mut held = Vec::new();
    let mut out = Vec::new();
    for (name, addr) in listeners {
        let what = format!("port {name}.listen");
        if addr.port() == 0 {
            out.push(Check::pass(
                what,
                format!("{addr}: port 0, the system picks a free port (test setups only)"),
            ));
            continue;
        }
        match StdTcpListener::bind(addr) {
            Ok(l) => {
                held.push(l);
                out.push(Check::pass(what, format!("{addr} is free")));
            }
            Err(e) => out.push(Check::fail(what, bind_advice(addr, &e))),
        }
    }
    drop(held);
    out
}

fn bind_advice(addr: SocketAddr, e: &std::io::Error) -> String {
    let port = addr.port();
    match e.kind() {
        std::io::ErrorKind::AddrInUse => format!(
            "{addr}: port {port} is in use — another prefront running? (if the gateway runs on \
             this box, that is expected: stop it to check the ports) See who holds it: \
             ss -ltnp 'sport = :{port}'"
        ),
        std::io::ErrorKind::AddrNotAvailable => format!(
            "{addr}: {} is not an address of this machine: listen on 0.0.0.0 or on one of \
             the addresses `ip -br addr` shows",
            addr.ip()
        ),
        std::io::ErrorKind::PermissionDenied => format!(
            "{addr}: not allowed to listen on port {port}: ports below 1024 need root or \
             CAP_NET_BIND_SERVICE (systemd: AmbientCapabilities=CAP_NET_BIND_SERVICE), or use \
             a port from 1024 up"
        ),
        _ => format!("{addr}: cannot listen: {e}"),
    }
}

// ---------------------------------------------------------------------------
// The cloud: DNS, TLS + HEAD, clock
// ---------------------------------------------------------------------------

const CLOUD_DNS: &str = "cloud DNS (cloud.base_url)";
const CLOUD_HTTPS: &str = "cloud HTTPS (HEAD cloud.base_url)";
const CLOUD_CLOCK: &str = "clock vs the cloud's Date";

async fn cloud_checks(cloud: &CloudConfig) -> Vec<Check> {
    let url = &cloud.base_url;
    let port = url.port_or_known_default().unwrap_or(443);
    let host = url
        .host_str()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']'));
    let dns = match host {
        Some(h) if h.parse::<std::net::IpAddr>().is_ok() => {
            Check::pass(CLOUD_DNS, "IP address, no DNS needed")
        }
        Some(host) => match tokio::time::timeout(CHECK_TIMEOUT, resolve(host, port)).await {
            Ok(Ok(addrs)) => {
                let mut ips: Vec<String> = Vec::new();
                for a in addrs {
                    let ip = a.ip().to_string();
                    if !ips.contains(&ip) {
                        ips.push(ip);
                    }
                }
                if ips.is_empty() {
                    Check::fail(CLOUD_DNS, format!("{host}: no address"))
                } else {
                    Check::pass(CLOUD_DNS, format!("{host} → {}", ips.join(", ")))
                }
            }
            Ok(Err(e)) => Check::fail(
                CLOUD_DNS,
                format!(
                    "{host} does not resolve ({e}): check /etc/resolv.conf and that the DMZ \
                         may reach a DNS server, or ask the cloud team for the right name"
                ),
            ),
            Err(_) => Check::fail(
                CLOUD_DNS,
                format!(
                    "{host}: no DNS answer within {}s: check /etc/resolv.conf and that the \
                         DMZ may reach a DNS server",
                    CHECK_TIMEOUT.as_secs()
                ),
            ),
        },
        None => Check::fail(CLOUD_DNS, format!("{} has no host", shown(url))),
    };
    if dns.status == Status::Fail {
        return vec![
            dns,
            Check::fail(
                CLOUD_HTTPS,
                "not tried: the cloud's host name does not resolve",
            ),
            Check::warn(CLOUD_CLOCK, "not checked: the cloud did not answer"),
        ];
    }
    let (https, clock) = cloud_head(cloud).await;
    vec![dns, https, clock]
}

/// `HEAD <base_url>` with the gateway's own client setup (system roots plus `cloud.ca`), and the
/// clock compared with the answer's `Date`.
async fn cloud_head(cloud: &CloudConfig) -> (Check, Check) {
    let url = cloud.base_url.clone();
    let ca = cloud.ca.clone();
    let connect_timeout = cloud.connect_timeout.min(CHECK_TIMEOUT);
    let client = tokio::task::spawn_blocking(move || {
        crate::upstream::root_store(ca.as_deref())
            .and_then(|roots| crate::upstream::http_client(roots, connect_timeout))
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    let client = match client {
        Ok(c) => c,
        Err(e) => {
            return (
                Check::fail(CLOUD_HTTPS, format!("cannot set up the client: {e}")),
                Check::warn(CLOUD_CLOCK, "not checked: the cloud was not called"),
            )
        }
    };
    let host_port = host_port(&url);
    let sent = SystemTime::now();
    let started = Instant::now();
    let answer = tokio::time::timeout(
        CHECK_TIMEOUT + Duration::from_secs(1),
        client.head(url.clone()).timeout(CHECK_TIMEOUT).send(),
    )
    .await;
    let received = SystemTime::now();
    let resp = match answer {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            return (
                Check::fail(
                    CLOUD_HTTPS,
                    format!("{}: {}", shown(&url), explain_request_error(&e, &host_port)),
                ),
                Check::warn(CLOUD_CLOCK, "not checked: the cloud did not answer"),
            )
        }
        Err(_) => {
            return (
                Check::fail(
                    CLOUD_HTTPS,
                    format!("{}: {}", shown(&url), no_answer(&host_port)),
                ),
                Check::warn(CLOUD_CLOCK, "not checked: the cloud did not answer"),
            )
        }
    };
    let status = resp.status().as_u16();
    let ms = started.elapsed().as_millis();
    let security = if url.scheme() == "https" {
        "TLS OK, certificate trusted"
    } else {
        "plain HTTP, not encrypted"
    };
    let https = if (502..=504).contains(&status) {
        Check::warn(
            CLOUD_HTTPS,
            format!(
                "{}: answered HTTP {status} ({security}): the cloud, or a proxy in front of it, \
                 says it is unavailable; the gateway treats this as \"link down\"",
                shown(&url)
            ),
        )
    } else {
        Check::pass(
            CLOUD_HTTPS,
            format!(
                "{}: answered HTTP {status} in {ms} ms ({security})",
                shown(&url)
            ),
        )
    };
    let date = resp
        .headers()
        .get(reqwest::header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    let clock = match date {
        None => Check::warn(
            CLOUD_CLOCK,
            "the cloud's answer has no (valid) Date header: cannot compare clocks",
        ),
        Some(cloud_time) => clock_verdict(sent, received, cloud_time),
    };
    (https, clock)
}

/// Compares this machine's clock (the middle of the request) with the cloud's `Date` (which has
/// whole seconds, so half a second is added).
fn clock_verdict(sent: SystemTime, received: SystemTime, cloud_time: SystemTime) -> Check {
    let local = match received.duration_since(sent) {
        Ok(rtt) => sent + rtt / 2,
        Err(_) => received,
    };
    let cloud_time = cloud_time + Duration::from_millis(500);
    let (skew, ahead) = match local.duration_since(cloud_time) {
        Ok(d) => (d, true),
        Err(e) => (e.duration(), false),
    };
    let secs = skew.as_secs();
    let side = if ahead { "ahead of" } else { "behind" };
    let said = format!("the cloud says {}", certinfo::utc_datetime(cloud_time));
    if skew > SKEW_FAILURE {
        Check::fail(
            CLOUD_CLOCK,
            format!(
                "this machine's clock is {secs} s {side} the cloud's ({said}): signed calls and \
                 certificate checks fail with more than 5 min; set the time: timedatectl \
                 set-ntp true (or chronyc makestep)"
            ),
        )
    } else if skew > SKEW_WARNING {
        Check::warn(
            CLOUD_CLOCK,
            format!(
                "this machine's clock is {secs} s {side} the cloud's ({said}): enable time sync \
                 (timedatectl set-ntp true)"
            ),
        )
    } else {
        let skew = if secs == 0 {
            "under 1 s".to_string()
        } else {
            format!("{secs} s {side} the cloud")
        };
        Check::pass(
            CLOUD_CLOCK,
            format!("skew {skew} (warning from {} s)", SKEW_WARNING.as_secs()),
        )
    }
}

/// Walks an error's causes, opening `io::Error`s too (reqwest and hyper wrap the TLS error in
/// them and their `source()` skips it), and returns the first `f` says something about.
fn find_cause<R>(
    e: &(dyn std::error::Error + 'static),
    mut f: impl FnMut(&(dyn std::error::Error + 'static)) -> Option<R>,
) -> Option<R> {
    let mut stack: Vec<&(dyn std::error::Error + 'static)> = vec![e];
    let mut steps = 0;
    while let Some(err) = stack.pop() {
        steps += 1;
        if steps > 32 {
            break;
        }
        if let Some(r) = f(err) {
            return Some(r);
        }
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            stack.push(inner);
        }
        if let Some(next) = err.source() {
            stack.push(next);
        }
    }
    None
}

fn no_answer(host_port: &str) -> String {
    format!(
        "no answer from {host_port} within {} s: a firewall dropping the traffic, a wrong \
         address, or an outbound proxy needed",
        CHECK_TIMEOUT.as_secs()
    )
}

/// One sentence for a failed request: the root cause and what to do about it.
fn explain_request_error(e: &reqwest::Error, host_port: &str) -> String {
    if let Some(tls) = find_cause(e, |c| c.downcast_ref::<rustls::Error>().cloned()) {
        return explain_tls(&tls);
    }
    if e.is_timeout() {
        return no_answer(host_port);
    }
    if let Some(kind) = find_cause(e, |c| {
        c.downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind)
            .filter(|k| *k != std::io::ErrorKind::Other)
    }) {
        return explain_io(kind, host_port);
    }
    let root = crate::upstream::error_root(e);
    if e.is_connect() {
        format!("cannot connect to {host_port}: {root}")
    } else {
        format!("no HTTP answer from {host_port}: {root}")
    }
}

fn explain_io(kind: std::io::ErrorKind, host_port: &str) -> String {
    use std::io::ErrorKind as K;
    match kind {
        K::ConnectionRefused => format!(
            "connection refused by {host_port}: nothing listens there (wrong port? service \
             down?) or a firewall rejects it"
        ),
        K::TimedOut => no_answer(host_port),
        K::ConnectionReset | K::ConnectionAborted | K::UnexpectedEof => format!(
            "{host_port} closed the connection: http:// vs https:// mismatch, or a firewall or \
             proxy in the way"
        ),
        K::HostUnreachable | K::NetworkUnreachable => format!(
            "{host_port} is unreachable: no route from this machine (check the default gateway \
             and firewall rules: ip route)"
        ),
        other => format!("cannot reach {host_port}: {other}"),
    }
}

fn explain_tls(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => format!(
                "certificate not trusted ({e}): add the cloud's CA certificate (PEM) to [cloud] ca"
            ),
            C::NotValidForName | C::NotValidForNameContext { .. } => format!(
                "the certificate is for another host name ({e}): check the host in \
                 cloud.base_url with the cloud team"
            ),
            C::Expired | C::ExpiredContext { .. } => format!(
                "the cloud's certificate has expired ({e}): if this machine's date is wrong, fix \
                 it (timedatectl set-ntp true); otherwise the cloud team must renew it"
            ),
            C::NotValidYet | C::NotValidYetContext { .. } => format!(
                "the cloud's certificate is not valid yet ({e}): check this machine's date \
                 (timedatectl set-ntp true)"
            ),
            _ => format!("the cloud's certificate is refused: {e}"),
        },
        rustls::Error::AlertReceived(alert) => format!(
            "the cloud refused the TLS handshake (alert {alert:?}): it may require a client \
             certificate, or a TLS version this box does not offer (1.2/1.3)"
        ),
        other => format!(
            "TLS handshake failed: {other} (does the port speak TLS? an https:// URL on a plain \
             HTTP port fails like this)"
        ),
    }
}

/// `host:port` of a URL, for messages.
fn host_port(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("?");
    match url.port_or_known_default() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// A URL for the report, without any user name or password in it.
fn shown(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

// ---------------------------------------------------------------------------
// HIS routes
// ---------------------------------------------------------------------------

/// What one probe of a HIS URL found (several routes may share one URL: it is probed once).
#[derive(Debug, Clone)]
enum Probe {
    /// The HTTP route answered.
    Answered {
        status: u16,
        method: &'static str,
        ms: u128,
    },
    /// The SOAP service's WSDL, with the operations its port type lists.
    Wsdl {
        operations: BTreeSet<String>,
        imports: usize,
    },
    /// The port answers, but no usable WSDL came back.
    NoWsdl(String),
    /// Nothing answered.
    Failed(String),
}

/// One route's line to be: where it is probed, and what the verdict needs.
struct Planned<'a> {
    what: String,
    target: Result<Target, String>,
    route: &'a HisRoute,
    /// `None` for the `[his]` default route.
    name: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Target {
    Http(String),
    Wsdl(String),
}

async fn his_checks(config: &Config) -> Vec<Check> {
    let his = &config.his;
    let mut routes: Vec<(String, &HisRoute, Option<&str>)> = Vec::new();
    if let Some(d) = &his.default {
        routes.push(("HIS route [his] (default)".to_string(), d, None));
    }
    let mut named: Vec<(&String, &HisRoute)> = his.routes.iter().collect();
    named.sort_by(|a, b| a.0.cmp(b.0));
    for (name, route) in named {
        routes.push((format!("HIS route {name}"), route, Some(name.as_str())));
    }
    if routes.is_empty() {
        return vec![Check::warn(
            "HIS routes",
            "no [his] url and no [[his.route]]: every call from the cloud gets code 40003",
        )];
    }
    let client = match tokio::task::spawn_blocking(|| {
        crate::upstream::root_store(None)
            .and_then(|roots| crate::upstream::http_client(roots, CHECK_TIMEOUT))
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r)
    {
        Ok(c) => c,
        Err(e) => {
            return vec![Check::fail(
                "HIS routes",
                format!("cannot set up the client: {e}"),
            )]
        }
    };
    // The URL each route is probed at.
    let mut plan: Vec<Planned<'_>> = Vec::new();
    for (what, route, name) in routes {
        let target = match &route.target {
            HisTarget::Http { url } => {
                crate::upstream::his::http_url(url, name.unwrap_or(REPRESENTATIVE_NAME))
                    .map(|u| Target::Http(u.to_string()))
                    .map_err(|e| e.to_string())
            }
            HisTarget::Soap(t) => Ok(Target::Wsdl(t.url.clone())),
        };
        plan.push(Planned {
            what,
            target,
            route,
            name,
        });
    }
    let mut probes = JoinSet::new();
    let mut started: Vec<Target> = Vec::new();
    for p in &plan {
        if let Ok(t) = &p.target {
            if !started.contains(t) {
                started.push(t.clone());
                let t = t.clone();
                let client = client.clone();
                probes.spawn(async move {
                    let found = match &t {
                        Target::Http(u) => probe_http(&client, u).await,
                        Target::Wsdl(u) => probe_wsdl(&client, u).await,
                    };
                    (t, found)
                });
            }
        }
    }
    let mut found: HashMap<Target, Probe> = HashMap::new();
    while let Some(joined) = probes.join_next().await {
        if let Ok((t, p)) = joined {
            found.insert(t, p);
        }
    }
    plan.into_iter()
        .map(|p| match p.target {
            Err(e) => Check::fail(p.what, format!("the route's url is not usable: {e}")),
            Ok(t) => {
                let probe = found
                    .get(&t)
                    .cloned()
                    .unwrap_or_else(|| Probe::Failed("the probe did not finish".into()));
                route_verdict(p.what, &t, p.route, p.name, probe)
            }
        })
        .collect()
}

fn route_verdict(
    what: String,
    target: &Target,
    route: &HisRoute,
    name: Option<&str>,
    probe: Probe,
) -> Check {
    let url = match target {
        Target::Http(u) | Target::Wsdl(u) => reqwest::Url::parse(u)
            .map(|u| shown(&u))
            .unwrap_or_else(|_| u.clone()),
    };
    match probe {
        Probe::Failed(why) => Check::fail(what, format!("{url}: {why}")),
        Probe::Answered { status, method, ms } => Check::pass(
            what,
            format!("{url}: answered HTTP {status} to {method} in {ms} ms"),
        ),
        Probe::NoWsdl(why) => Check::warn(
            what,
            format!(
                "{url}: the port answers, but {why}; the operation could not be checked \
                 (ask the HIS vendor where the service's WSDL is)"
            ),
        ),
        Probe::Wsdl {
            operations,
            imports,
        } => {
            let operation = match &route.target {
                HisTarget::Soap(t) => t
                    .operation
                    .clone()
                    .or_else(|| name.map(|n| method_part(n).to_string())),
                HisTarget::Http { .. } => None,
            };
            let Some(op) = operation else {
                return Check::pass(
                    what,
                    format!(
                        "{url}?wsdl lists {} operations (each name calls the operation named \
                         by its last segment)",
                        operations.len()
                    ),
                );
            };
            if operations.contains(&op) {
                return Check::pass(
                    what,
                    format!(
                        "{url}?wsdl has operation `{op}` ({} operations)",
                        operations.len()
                    ),
                );
            }
            if operations.is_empty() && imports > 0 {
                return Check::warn(
                    what,
                    format!(
                        "{url}?wsdl imports its operations from another document: `{op}` was \
                         not checked"
                    ),
                );
            }
            let close = operations
                .iter()
                .find(|o| o.eq_ignore_ascii_case(&op))
                .map(|o| format!(" (did you mean `{o}`? names are case-sensitive)"))
                .unwrap_or_default();
            let mut listed: Vec<&str> = operations
                .iter()
                .take(OPERATIONS_LISTED)
                .map(String::as_str)
                .collect();
            if operations.len() > OPERATIONS_LISTED {
                listed.push("…");
            }
            let has = if operations.is_empty() {
                "it lists no operation".to_string()
            } else {
                format!("it has {} ({} in all)", listed.join(", "), operations.len())
            };
            Check::fail(
                what,
                format!(
                    "operation `{op}` is not in the WSDL at {url}?wsdl{close}; {has}: set \
                     `operation = \"…\"` in this route, or check its url"
                ),
            )
        }
    }
}

/// The operation a SOAP route calls when the config names none: the name's last segment.
fn method_part(name: &str) -> &str {
    let short = crate::catalog::short_name(name);
    short.rsplit('.').next().unwrap_or(short)
}

/// A TCP connection to the URL's host and port within `deadline`; `Err` says why not.
async fn connect(url: &reqwest::Url, deadline: tokio::time::Instant) -> Result<(), String> {
    let hp = host_port(url);
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return Err(format!("{} has no host and port", shown(url)));
    };
    // `host_str` keeps an IPv6 literal's brackets, which the resolver does not take.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs = match tokio::time::timeout_at(deadline, resolve(host, port)).await {
        Ok(Ok(addrs)) => addrs,
        Ok(Err(e)) => {
            return Err(format!(
                "cannot connect to {hp}: {host} does not resolve ({e})"
            ))
        }
        Err(_) => return Err(no_answer(&hp)),
    };
    match tokio::time::timeout_at(deadline, tokio::net::TcpStream::connect(&addrs[..])).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::Other => {
            Err(format!("cannot connect to {hp}: {e}"))
        }
        Ok(Err(e)) => Err(explain_io(e.kind(), &hp)),
        Err(_) => Err(no_answer(&hp)),
    }
}

/// A host's addresses, found the way the gateway's HTTP clients find them (`upstream::dns`:
/// /etc/hosts, then the name servers in /etc/resolv.conf, and no public name server when that
/// file is unusable), never through glibc's getaddrinfo/NSS, which the statically linked binary
/// must not load.
async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    crate::upstream::dns::SystemDns::default()
        .lookup(host, port)
        .await
}

/// An HTTP route: TCP connect, then `HEAD`; a server that drops a `HEAD` without answering gets
/// a `POST {}` instead. Any HTTP answer passes.
async fn probe_http(client: &reqwest::Client, url: &str) -> Probe {
    let deadline = tokio::time::Instant::now() + CHECK_TIMEOUT;
    let Ok(url) = reqwest::Url::parse(url) else {
        return Probe::Failed("not a valid URL".into());
    };
    if let Err(why) = connect(&url, deadline).await {
        return Probe::Failed(why);
    }
    let hp = host_port(&url);
    let started = Instant::now();
    let head = tokio::time::timeout_at(deadline, client.head(url.clone()).send()).await;
    match head {
        Ok(Ok(resp)) => {
            return Probe::Answered {
                status: resp.status().as_u16(),
                method: "HEAD",
                ms: started.elapsed().as_millis(),
            }
        }
        Ok(Err(e)) if e.is_connect() => {
            return Probe::Failed(explain_request_error(&e, &hp));
        }
        Ok(Err(_)) => {}
        Err(_) => {
            return Probe::Failed(format!(
                "{hp} accepts connections but gave no HTTP answer to HEAD within {} s",
                CHECK_TIMEOUT.as_secs()
            ))
        }
    }
    let started = Instant::now();
    let post = client
        .post(url)
        .header("content-type", "application/json;charset=UTF-8")
        .body("{}")
        .send();
    match tokio::time::timeout_at(deadline, post).await {
        Ok(Ok(resp)) => Probe::Answered {
            status: resp.status().as_u16(),
            method: "POST {}",
            ms: started.elapsed().as_millis(),
        },
        Ok(Err(e)) => Probe::Failed(format!(
            "{hp} accepts connections but does not answer HTTP: {}",
            explain_request_error(&e, &hp)
        )),
        Err(_) => Probe::Failed(format!(
            "{hp} accepts connections but gave no HTTP answer within {} s",
            CHECK_TIMEOUT.as_secs()
        )),
    }
}

/// A SOAP route: `GET <url>?wsdl` and the operations in it.
async fn probe_wsdl(client: &reqwest::Client, url: &str) -> Probe {
    let deadline = tokio::time::Instant::now() + CHECK_TIMEOUT;
    let Ok(mut wsdl_url) = reqwest::Url::parse(url) else {
        return Probe::Failed("not a valid URL".into());
    };
    if let Err(why) = connect(&wsdl_url, deadline).await {
        return Probe::Failed(why);
    }
    let query = match wsdl_url.query() {
        Some(q) if !q.is_empty() => format!("{q}&wsdl"),
        _ => "wsdl".to_string(),
    };
    wsdl_url.set_query(Some(&query));
    let hp = host_port(&wsdl_url);
    let fetch = async {
        let mut resp = client
            .get(wsdl_url.clone())
            .send()
            .await
            .map_err(|e| format!("GET ?wsdl failed: {}", explain_request_error(&e, &hp)))?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(format!("GET ?wsdl answered HTTP {status}"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| {
            format!(
                "reading the WSDL failed: {}",
                crate::upstream::error_root(&e)
            )
        })? {
            if body.len() + chunk.len() > MAX_WSDL_BYTES {
                return Err(format!(
                    "the answer to ?wsdl is larger than {} MiB",
                    MAX_WSDL_BYTES >> 20
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    let body = match tokio::time::timeout_at(deadline, fetch).await {
        Ok(Ok(b)) => b,
        Ok(Err(why)) => return Probe::NoWsdl(why),
        Err(_) => {
            return Probe::NoWsdl(format!(
                "no WSDL within {} s from GET ?wsdl",
                CHECK_TIMEOUT.as_secs()
            ))
        }
    };
    match wsdl_operations(&body) {
        Ok((operations, imports)) => Probe::Wsdl {
            operations,
            imports,
        },
        Err(why) => Probe::NoWsdl(why),
    }
}

/// The operation names a WSDL's port types (WSDL 1.1) or interfaces (2.0) list, and how many
/// documents it imports. The root must be `definitions` (or `description`), any prefix.
fn wsdl_operations(xml: &[u8]) -> Result<(BTreeSet<String>, usize), String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut stack: Vec<Vec<u8>> = Vec::new();
    let mut operations = BTreeSet::new();
    let mut binding_operations = BTreeSet::new();
    let mut imports = 0;
    let mut saw_root = false;
    loop {
        let event = reader.read_event().map_err(|e| {
            format!(
                "the answer to ?wsdl is not well-formed XML ({e} at byte {})",
                reader.buffer_position()
            )
        })?;
        let (start, empty) = match event {
            Event::Start(s) => (s, false),
            Event::Empty(s) => (s, true),
            Event::End(_) => {
                stack.pop();
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        let local = start.local_name().as_ref().to_vec();
        if stack.is_empty() && saw_root {
            continue;
        }
        if stack.is_empty() && local != b"definitions" && local != b"description" {
            return Err(format!(
                "the answer to ?wsdl is not a WSDL (its root element is <{}>)",
                String::from_utf8_lossy(start.name().as_ref())
            ));
        }
        saw_root = true;
        if stack.len() == 1 && local == b"import" {
            imports += 1;
        }
        if local == b"operation" {
            let parent = stack.last().map(Vec::as_slice);
            let name = start
                .attributes()
                .flatten()
                .find(|a| a.key.local_name().as_ref() == b"name")
                .map(|a| String::from_utf8_lossy(&a.value).trim().to_string());
            if let Some(name) = name.filter(|n| !n.is_empty()) {
                match parent {
                    Some(b"portType" | b"interface") => {
                        operations.insert(name);
                    }
                    Some(b"binding") => {
                        binding_operations.insert(name);
                    }
                    _ => {}
                }
            }
        }
        if !empty {
            stack.push(local);
        }
    }
    if !saw_root {
        return Err("the answer to ?wsdl is not a WSDL (not XML)".into());
    }
    if operations.is_empty() {
        operations = binding_operations;
    }
    Ok((operations, imports))
}

// ---------------------------------------------------------------------------
// Buffer directory
// ---------------------------------------------------------------------------

fn buffer_checks(b: &BufferConfig) -> Vec<Check> {
    const WRITABLE: &str = "buffer directory (buffer.path)";
    const SPACE: &str = "buffer disk space";
    let dir = &b.path;
    // The directories this check creates, removed again afterwards: the gateway creates its
    // own at start, with its own user's rights.
    let mut missing: Vec<PathBuf> = Vec::new();
    let mut p: Option<&Path> = Some(dir);
    while let Some(q) = p.filter(|q| !q.as_os_str().is_empty() && !q.exists()) {
        missing.push(q.to_path_buf());
        p = q.parent();
    }
    let mut out = Vec::new();
    let created = std::fs::create_dir_all(dir);
    let writable = created.and_then(|()| probe_write(dir));
    match writable {
        Err(e) => {
            out.push(Check::fail(
                WRITABLE,
                format!("{}: {}", dir.display(), write_advice(&e)),
            ));
        }
        Ok(()) => {
            let note = if missing.is_empty() {
                ""
            } else {
                " (it did not exist: created for the test and removed again; the gateway \
                 creates it at start)"
            };
            out.push(Check::pass(
                WRITABLE,
                format!("{}: write + fsync OK{note}", dir.display()),
            ));
            out.push(match fs2::available_space(dir) {
                Err(e) => Check::warn(SPACE, format!("cannot read the free space: {e}")),
                Ok(free) => space_verdict(SPACE, free, b.max_bytes),
            });
        }
    }
    for d in &missing {
        // Only empty directories go; anything else is left alone.
        let _ = std::fs::remove_dir(d);
    }
    out.extend(salvage_checks(dir));
    out
}

/// Damaged stores the gateway moved aside at start, and what their salvage saved and lost.
fn salvage_checks(dir: &Path) -> Vec<Check> {
    const WHAT: &str = "buffer store damage";
    crate::buffer::salvage::moved_aside(dir)
        .into_iter()
        .map(|(aside, report)| match report {
            Some(r) if r.lost > 0 => Check::fail(
                WHAT,
                format!(
                    "{}: damaged ({}); {} record(s) salvaged, {} acknowledged record(s) lost;                      check the disk, then remove the directory once it is no longer needed",
                    aside.display(),
                    r.reason,
                    r.salvaged,
                    r.lost
                ),
            ),
            Some(r) => Check::warn(
                WHAT,
                format!(
                    "{}: damaged ({}); all {} record(s) salvaged, none lost; check the disk,                      then remove the directory",
                    aside.display(),
                    r.reason,
                    r.salvaged
                ),
            ),
            None => Check::warn(
                WHAT,
                format!(
                    "{}: a damaged store moved aside without a salvage report;                      `prefront queue salvage {}` puts its intact records back",
                    aside.display(),
                    aside.display()
                ),
            ),
        })
        .collect()
}

/// Writes, syncs and removes a small file in `dir`.
fn probe_write(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".prefront-doctor-{}", std::process::id()));
    let result = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .and_then(|mut f| {
            f.write_all(&[0u8; 4096])?;
            f.sync_all()
        });
    let removed = std::fs::remove_file(&probe);
    result.and(removed)
}

fn write_advice(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::PermissionDenied => format!(
            "{e}: the user the gateway runs as must be able to write there (chown -R that user); \
             run doctor as that user to test its rights"
        ),
        K::NotADirectory => {
            format!("{e}: a part of the path is a file, not a directory: fix buffer.path")
        }
        K::ReadOnlyFilesystem => format!("{e}: the file system is mounted read-only"),
        K::StorageFull => format!("{e}: the disk is full"),
        _ => format!("cannot write there: {e}"),
    }
}

fn space_verdict(what: &str, free: u64, max: u64) -> Check {
    let text = format!(
        "{} free, buffer.max_bytes is {}",
        human_bytes(free),
        human_bytes(max)
    );
    if free < MIN_FREE_BYTES {
        Check::fail(
            what,
            format!("{text}: under 64 MiB free, calls cannot be buffered; free disk space"),
        )
    } else if free < max {
        Check::warn(
            what,
            format!(
                "{text}: the disk would fill before the buffer's quota; free space or lower \
                 buffer.max_bytes"
            ),
        )
    } else {
        Check::pass(what, text)
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

// ---------------------------------------------------------------------------
// PACS
// ---------------------------------------------------------------------------

async fn pacs_checks(config: &Config) -> Vec<Check> {
    const WHAT: &str = "PACS ([pacs] dcm_url)";
    let Some(template) = &config.pacs.dcm_url else {
        return Vec::new();
    };
    let Ok(url) = reqwest::Url::parse(&template.replace(['{', '}'], "")) else {
        return vec![Check::fail(WHAT, "dcm_url is not a valid URL")];
    };
    let deadline = tokio::time::Instant::now() + CHECK_TIMEOUT;
    let hp = host_port(&url);
    vec![match connect(&url, deadline).await {
        Ok(()) => Check::pass(WHAT, format!("{hp} accepts connections")),
        Err(why) => Check::warn(
            WHAT,
            format!("{why}: images will not load until it answers (the PACS may just be down)"),
        ),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A moved-aside store is reported with what its salvage saved and lost: a FAIL when records
    /// were lost, a WARN otherwise, and a WARN naming `queue salvage` when it has no report.
    #[test]
    fn moved_aside_stores_are_reported() {
        let dir =
            std::env::temp_dir().join(format!("prefront-doctor-aside-{}", std::process::id()));
        let buffer = dir.join("buffer");
        let report = |salvaged, lost| crate::buffer::salvage::Report {
            reason: "checksum mismatch".into(),
            salvaged,
            lost,
            ..Default::default()
        };
        for (name, r) in [
            ("buffer.corrupt-100", Some(report(6, 0))),
            ("buffer.corrupt-200", Some(report(7, 3))),
            ("buffer.corrupt-300", None),
        ] {
            let aside = dir.join(name);
            std::fs::create_dir_all(&aside).expect("mkdir");
            if let Some(r) = r {
                std::fs::write(
                    aside.join(crate::buffer::salvage::REPORT_FILE),
                    serde_json::to_vec(&r).expect("json"),
                )
                .expect("write");
            }
        }
        let checks = salvage_checks(&buffer);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(checks.len(), 3, "{checks:?}");
        // Newest first.
        assert!(
            checks[0].status == Status::Warn && checks[0].detail.contains("queue salvage"),
            "{checks:?}"
        );
        assert!(
            checks[1].status == Status::Fail
                && checks[1].detail.contains("3 acknowledged record(s) lost")
        );
        assert!(
            checks[2].status == Status::Warn
                && checks[2].detail.contains("all 6 record(s) salvaged")
        );
    }

    #[test]
    fn wsdl_operations_come_from_the_port_type() {
        let wsdl = br#"<?xml version="1.0"?>
<definitions xmlns="http://schemas.xmlsoap.org/wsdl/" xmlns:tns="http://his/">
  <portType name="P">
    <operation name="createCard"><input message="tns:a"/></operation>
    <operation name="queryWaitPay"/>
  </portType>
  <binding name="B" type="tns:P"><operation name="createCard"/></binding>
</definitions>"#;
        let (ops, imports) = wsdl_operations(wsdl).expect("a WSDL");
        assert_eq!(
            ops.into_iter().collect::<Vec<_>>(),
            ["createCard", "queryWaitPay"]
        );
        assert_eq!(imports, 0);
    }

    #[test]
    fn html_is_not_a_wsdl() {
        let err = wsdl_operations(b"<html><body>404</body></html>").expect_err("not a WSDL");
        assert!(err.contains("<html>"), "{err}");
    }

    #[test]
    fn clock_verdicts() {
        let now = SystemTime::now();
        let c = clock_verdict(now, now, now - Duration::from_secs(600));
        assert_eq!(c.status, Status::Fail, "{c:?}");
        assert!(c.detail.contains("599 s ahead of"), "{c:?}");
        let c = clock_verdict(now, now, now + Duration::from_secs(60));
        assert_eq!(c.status, Status::Warn, "{c:?}");
        assert!(c.detail.contains("behind"), "{c:?}");
        let c = clock_verdict(now, now, now);
        assert_eq!(c.status, Status::Pass, "{c:?}");
    }

    #[test]
    fn sizes_read_like_df() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1 << 30), "1.0 GiB");
        assert_eq!(human_bytes(3 * (1 << 20) / 2), "1.5 MiB");
    }

    #[test]
    fn report_lines_are_aligned_and_summarised() {
        let r = Report {
            lines: vec![
                Check::pass("a", "fine"),
                Check::fail("longer what", "broken\nhere"),
            ],
        };
        let text = r.to_string();
        assert!(text.contains("PASS 通过  a            — fine\n"), "{text}");
        assert!(
            text.contains("FAIL 失败  longer what  — broken here\n"),
            "{text}"
        );
        assert!(
            text.ends_with("doctor: 1 passed, 0 warnings, 1 failed\n"),
            "{text}"
        );
        assert!(r.failed());
    }
}
