//! TLS for a listener: the configured certificate chain and key (rustls, TLS 1.2 and 1.3 only),
//! and, when `client_ca` is set, a required client certificate from that CA.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsFiles;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("certificate and key do not match: {0}")]
    Config(String),
}

fn file_err(path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(path, e))?;
    if certs.is_empty() {
        return Err(file_err(path, "no PEM certificate in it"));
    }
    Ok(certs)
}

/// Builds the server side of TLS from the configured files.
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = certs(&files.cert)?;
    // The key's own parse error could quote key material; say only what failed.
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|_| file_err(&files.key, "no readable PEM private key in it"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // A PEM block that decodes but is not a usable key would otherwise surface as a vague
    // "pair" error from with_single_cert.
    if provider
        .key_provider
        .load_private_key(key.clone_key())
        .is_err()
    {
        return Err(file_err(
            &files.key,
            "not a usable private key (RSA, ECDSA P-256/P-384 or Ed25519 expected)",
        ));
    }
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certs(ca)? {
                roots.add(c).map_err(|e| file_err(ca, e))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| file_err(ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        TlsError::Config(format!(
            "{} and {}: {e}",
            files.cert.display(),
            files.key.display()
        ))
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The names the client certificate of `conn` gives: subject common names and DNS subject
/// alternative names (none without a certificate).
pub fn client_names(conn: &rustls::ServerConnection) -> Vec<String> {
    let Some(cert) = conn.peer_certificates().and_then(|c| c.first()) else {
        return Vec::new();
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Vec::new();
    };
    let mut names: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_string))
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push((*d).to_string());
            }
        }
    }
    names
}

/// Whether one of `names` is in `allowed` (compared without case); an empty `allowed` lets any
/// certificate in.
pub fn names_allowed(names: &[String], allowed: &[String]) -> bool {
    allowed.is_empty()
        || names
            .iter()
            .any(|n| allowed.iter().any(|a| a.eq_ignore_ascii_case(n)))
}

/// Whether the client certificate of `conn` names one of `allowed` (subject common name or a
/// DNS subject alternative name, compared without case).
pub fn client_name_allowed(conn: &rustls::ServerConnection, allowed: &[String]) -> bool {
    let names = client_names(conn);
    !names.is_empty() && names_allowed(&names, allowed)
}
