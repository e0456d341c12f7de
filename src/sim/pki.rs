//! A throwaway certificate authority and a server certificate for `localhost`, `127.0.0.1` and
//! `::1`: what the demo's simulated cloud presents, and what the tests trust.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::SimError;

/// A CA and one server certificate signed by it, all in memory.
pub struct Pki {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    server_cert_pem: String,
    server_cert_der: CertificateDer<'static>,
    server_key_pem: String,
    server_key_der: Vec<u8>,
}

/// Where `Pki::write_files` put the PEM files.
#[derive(Debug, Clone)]
pub struct PkiFiles {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Pki {
    /// A fresh CA named `ca_name` and a server certificate for the loopback names.
    pub fn generate(ca_name: &str) -> Result<Pki, SimError> {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };
        let e = |what: &str, err: rcgen::Error| SimError(format!("{what}: {err}"));
        let mut ca_params =
            CertificateParams::new(Vec::<String>::new()).map_err(|x| e("CA params", x))?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, ca_name);
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().map_err(|x| e("CA key", x))?;
        let ca_cert = ca_params
            .self_signed(&ca_key)
            .map_err(|x| e("CA certificate", x))?;
        let issuer = Issuer::new(ca_params, ca_key);

        let mut srv_params = CertificateParams::new(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ])
        .map_err(|x| e("server params", x))?;
        srv_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        srv_params.is_ca = IsCa::ExplicitNoCa;
        srv_params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        srv_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        srv_params.use_authority_key_identifier_extension = true;
        let srv_key = KeyPair::generate().map_err(|x| e("server key", x))?;
        let srv_cert = srv_params
            .signed_by(&srv_key, &issuer)
            .map_err(|x| e("server certificate", x))?;
        Ok(Pki {
            ca_pem: ca_cert.pem(),
            ca_der: ca_cert.der().clone(),
            server_cert_pem: srv_cert.pem(),
            server_cert_der: srv_cert.der().clone(),
            server_key_pem: srv_key.serialize_pem(),
            server_key_der: srv_key.serialize_der(),
        })
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca_der.clone()
    }

    pub fn server_cert_pem(&self) -> &str {
        &self.server_cert_pem
    }

    pub fn server_key_pem(&self) -> &str {
        &self.server_key_pem
    }

    /// Writes `ca.pem`, `server.pem` and `server.key` (owner-only) into `dir`.
    pub fn write_files(&self, dir: &Path) -> Result<PkiFiles, SimError> {
        let files = PkiFiles {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
        };
        write(&files.ca, self.ca_pem.as_bytes(), false)?;
        write(&files.server_cert, self.server_cert_pem.as_bytes(), false)?;
        write(&files.server_key, self.server_key_pem.as_bytes(), true)?;
        Ok(files)
    }

    /// TLS server settings presenting the server certificate (ALPN `http/1.1`).
    pub fn server_tls_config(&self) -> Result<Arc<rustls::ServerConfig>, SimError> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key_der.clone()));
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| SimError(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(vec![self.server_cert_der.clone()], key)
            .map_err(|e| SimError(e.to_string()))?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }

    /// TLS client settings trusting only this CA (ALPN `http/1.1`).
    pub fn client_tls_config(&self) -> Result<rustls::ClientConfig, SimError> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.ca_der.clone())
            .map_err(|e| SimError(e.to_string()))?;
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| SimError(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(cfg)
    }
}

fn write(path: &Path, contents: &[u8], private: bool) -> Result<(), SimError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = opts
        .open(path)
        .map_err(|e| SimError(format!("{}: {e}", path.display())))?;
    f.write_all(contents)
        .map_err(|e| SimError(format!("{}: {e}", path.display())))
}
