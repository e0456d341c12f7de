//! Certificates: each listener's certificate and key, and the trust roots the config names.

use std::path::Path;
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;

use super::{Check, Status};
use crate::certinfo::{self, CertInfo};
use crate::config::{Config, ListenerConfig, TlsFiles};

/// A certificate that expires sooner than this is a warning.
const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 86_400);

pub(super) fn cert_checks(config: &Config) -> Vec<Check> {
    let now = SystemTime::now();
    let mut out = Vec::new();
    let listeners: [(&str, Option<&ListenerConfig>); 3] = [
        ("his_listener", Some(&config.his_listener)),
        ("cloud_listener", Some(&config.cloud_listener)),
        ("files_listener", config.files_listener.as_ref()),
    ];
    for (name, l) in listeners.into_iter().filter_map(|(n, l)| Some((n, l?))) {
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
