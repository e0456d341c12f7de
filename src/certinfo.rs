//! What is in a PEM certificate file: who it is for, who issued it, and when it expires. Used by
//! `prefront doctor`; `cert_not_after` is also meant for an expiry metric.
//!
//! Only certificates are read here, never private keys.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The expiry (`notAfter`) of the first certificate in a PEM file.
pub fn cert_not_after(pem_path: &Path) -> Result<SystemTime, String> {
    let chain = read_pem_certs(pem_path)?;
    let first = chain
        .first()
        .ok_or_else(|| format!("{}: no PEM certificate in it", pem_path.display()))?;
    parse(first)
        .map(|info| info.not_after)
        .map_err(|e| format!("{}: {e}", pem_path.display()))
}

/// What `doctor` shows about one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The subject's distinguished name, e.g. `CN=prefront.example-hospital.cn`.
    pub subject: String,
    pub issuer: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// Whether it is a CA certificate (basicConstraints cA = true).
    pub is_ca: bool,
}

impl CertInfo {
    /// The subject's common name if it has one, else the whole subject.
    pub fn name(&self) -> &str {
        self.subject
            .split(", ")
            .find_map(|part| part.strip_prefix("CN="))
            .unwrap_or(&self.subject)
    }
}

/// Every certificate in a PEM file, in file order (other PEM sections, such as a key, are
/// skipped). An empty list is an error: the file is not what it should be.
pub fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: no PEM certificate in it (a `-----BEGIN CERTIFICATE-----` block is expected)",
            path.display()
        ));
    }
    Ok(certs)
}

/// Reads one DER certificate.
pub fn parse(der: &[u8]) -> Result<CertInfo, String> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| format!("not a valid X.509 certificate: {e}"))?;
    let validity = cert.validity();
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        not_before: from_unix(validity.not_before.timestamp()),
        not_after: from_unix(validity.not_after.timestamp()),
        is_ca: cert.is_ca(),
    })
}

/// Checks that `issuer` signed `child` (both DER): the issuer's name is the child's issuer name
/// and the child's signature verifies with the issuer's public key.
pub fn check_signed_by(child: &[u8], issuer: &[u8]) -> Result<(), String> {
    let (_, c) = X509Certificate::from_der(child)
        .map_err(|e| format!("not a valid X.509 certificate: {e}"))?;
    let (_, i) = X509Certificate::from_der(issuer)
        .map_err(|e| format!("not a valid X.509 certificate: {e}"))?;
    if c.issuer().as_raw() != i.subject().as_raw() {
        return Err(format!(
            "issued by `{}`, not by `{}`",
            c.issuer(),
            i.subject()
        ));
    }
    c.verify_signature(Some(i.public_key())).map_err(|e| {
        format!(
            "signature does not verify with `{}`'s key: {e}",
            i.subject()
        )
    })
}

fn from_unix(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

/// `2027-03-01` (UTC).
pub fn utc_date(t: SystemTime) -> String {
    let (y, m, d, _) = civil(t);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `2027-03-01 08:30:00 UTC`.
pub fn utc_datetime(t: SystemTime) -> String {
    let (y, m, d, secs) = civil(t);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Year, month, day and seconds into the day (UTC) of a time (Howard Hinnant's
/// `civil_from_days`, proleptic Gregorian calendar).
fn civil(t: SystemTime) -> (i64, u32, u32, u64) {
    let secs: i64 = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX / 2),
    };
    let days = secs.div_euclid(86_400);
    let in_day = secs.rem_euclid(86_400).unsigned_abs();
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, in_day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(utc_datetime(UNIX_EPOCH), "1970-01-01 00:00:00 UTC");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400); // leap day
        assert_eq!(utc_date(t), "2000-02-29");
        let t = UNIX_EPOCH + Duration::from_secs(1_798_761_599);
        assert_eq!(utc_datetime(t), "2026-12-31 23:59:59 UTC");
        assert_eq!(utc_date(UNIX_EPOCH - Duration::from_secs(1)), "1969-12-31");
    }

    #[test]
    fn the_first_certificate_s_expiry_is_read_from_a_pem_file() {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params.not_before = rcgen::date_time_ymd(2020, 1, 2);
        params.not_after = rcgen::date_time_ymd(2031, 7, 15);
        let cert = params.self_signed(&key).expect("cert");
        let path =
            std::env::temp_dir().join(format!("prefront-certinfo-{}.pem", std::process::id()));
        std::fs::write(&path, format!("{}{}", key.serialize_pem(), cert.pem())).expect("write");
        let not_after = cert_not_after(&path);
        let missing = cert_not_after(&path.with_extension("missing"));
        let _ = std::fs::remove_file(&path);
        assert_eq!(
            utc_datetime(not_after.expect("parsed")),
            "2031-07-15 00:00:00 UTC"
        );
        assert!(missing.is_err());
    }

    #[test]
    fn common_name_is_picked_from_the_subject() {
        let info = CertInfo {
            subject: "C=CN, O=Hospital, CN=prefront.example".into(),
            issuer: String::new(),
            not_before: UNIX_EPOCH,
            not_after: UNIX_EPOCH,
            is_ca: false,
        };
        assert_eq!(info.name(), "prefront.example");
    }
}
