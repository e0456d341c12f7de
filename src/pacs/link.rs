//! Signed, expiring `/files/<token>` links: only this box can mint them, and a token names the
//! one LAN URL it was minted for.
//!
//! Token = base64url (no padding) of `0x01 ‖ expiry (u64, Unix seconds, big-endian) ‖ URL (UTF-8)
//! ‖ HMAC-SHA256(key, 0x01 ‖ expiry ‖ URL)`. The signature is checked (in constant time) before
//! anything else in the token is looked at.

use std::io::Write;
use std::path::Path;

use data_encoding::BASE64URL_NOPAD;
use ring::hmac;

const VERSION: u8 = 1;
const TAG_LEN: usize = 32;
/// Longest token accepted: a URL of at most 4 KiB plus the header and the tag.
const MAX_TOKEN_LEN: usize = (4096 + 1 + 8 + TAG_LEN) * 4 / 3 + 4;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the link is not one this box signed (forged, damaged or truncated)")]
    Forged,
    #[error("the link expired")]
    Expired,
}

/// Mints and verifies links with one key.
pub struct LinkSigner {
    key: hmac::Key,
}

impl std::fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkSigner(***)")
    }
}

impl LinkSigner {
    pub fn new(key: &[u8]) -> LinkSigner {
        LinkSigner {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
        }
    }

    /// A token for `url`, valid until `expires` (Unix seconds).
    pub fn mint(&self, url: &str, expires: u64) -> String {
        let mut raw = Vec::with_capacity(1 + 8 + url.len() + TAG_LEN);
        raw.push(VERSION);
        raw.extend_from_slice(&expires.to_be_bytes());
        raw.extend_from_slice(url.as_bytes());
        let tag = hmac::sign(&self.key, &raw);
        raw.extend_from_slice(tag.as_ref());
        BASE64URL_NOPAD.encode(&raw)
    }

    /// The URL a token was minted for, if the signature holds and it has not expired at `now`.
    pub fn verify(&self, token: &str, now: u64) -> Result<String, LinkError> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(LinkError::Forged);
        }
        let raw = BASE64URL_NOPAD
            .decode(token.as_bytes())
            .map_err(|_| LinkError::Forged)?;
        if raw.len() < 1 + 8 + TAG_LEN {
            return Err(LinkError::Forged);
        }
        let (signed, tag) = raw.split_at(raw.len() - TAG_LEN);
        hmac::verify(&self.key, signed, tag).map_err(|_| LinkError::Forged)?;
        if signed[0] != VERSION {
            return Err(LinkError::Forged);
        }
        let mut exp = [0u8; 8];
        exp.copy_from_slice(&signed[1..9]);
        let url = std::str::from_utf8(&signed[9..]).map_err(|_| LinkError::Forged)?;
        if u64::from_be_bytes(exp) < now {
            return Err(LinkError::Expired);
        }
        Ok(url.to_string())
    }
}

/// Why the signing key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
#[error("link signing key {path}: {source}")]
pub struct KeyError {
    pub path: String,
    pub source: std::io::Error,
}

/// Reads the box's own signing key from `path`, if it exists.
pub fn load_key(path: &Path) -> Result<Option<Vec<u8>>, KeyError> {
    match std::fs::read(path) {
        Ok(k) if k.len() >= 32 => Ok(Some(k)),
        Ok(_) => Err(KeyError {
            path: path.display().to_string(),
            source: too_short(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(KeyError {
            path: path.display().to_string(),
            source,
        }),
    }
}

fn too_short() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "shorter than 32 bytes; delete it and the box makes a new one (links already handed out \
         stop working)",
    )
}

/// Reads the box's own signing key from `path`, creating it (32 random bytes, owner-only
/// permissions) on first start. Links minted before a restart stay valid.
pub fn load_or_create_key(path: &Path) -> Result<Vec<u8>, KeyError> {
    let err = |source| KeyError {
        path: path.display().to_string(),
        source,
    };
    if let Some(k) = load_key(path)? {
        return Ok(k);
    }
    let mut key = vec![0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
        .map_err(|_| err(std::io::Error::other("no system randomness")))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    match opts.open(path) {
        Ok(mut f) => {
            f.write_all(&key).map_err(err)?;
            f.sync_all().map_err(err)?;
            Ok(key)
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::read(path).map_err(err),
        Err(e) => Err(err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "http://10.1.1.20:8080/pacs/file-1?x=1";

    #[test]
    fn a_minted_link_verifies_until_it_expires() {
        let s = LinkSigner::new(b"0123456789abcdef0123456789abcdef");
        let t = s.mint(URL, 1000);
        assert!(t
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(s.verify(&t, 999).as_deref(), Ok(URL));
        assert_eq!(s.verify(&t, 1000).as_deref(), Ok(URL));
        assert_eq!(s.verify(&t, 1001), Err(LinkError::Expired));
    }

    #[test]
    fn tampering_anywhere_is_refused_as_forged() {
        let s = LinkSigner::new(b"0123456789abcdef0123456789abcdef");
        let t = s.mint(URL, u64::MAX);
        for i in 0..t.len() {
            let mut b = t.clone().into_bytes();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            let forged = String::from_utf8(b).unwrap_or_default();
            if forged != t {
                assert_eq!(s.verify(&forged, 0), Err(LinkError::Forged), "byte {i}");
            }
        }
        for n in 0..t.len() {
            assert_eq!(s.verify(&t[..n], 0), Err(LinkError::Forged), "prefix {n}");
        }
        let other = LinkSigner::new(b"another key, also thirty-two bytes");
        assert_eq!(other.verify(&t, 0), Err(LinkError::Forged));
        assert_eq!(s.verify("../../etc/passwd", 0), Err(LinkError::Forged));
        assert_eq!(s.verify(&"A".repeat(100_000), 0), Err(LinkError::Forged));
    }

    #[test]
    fn an_expired_forgery_is_forged_not_expired() {
        let s = LinkSigner::new(b"0123456789abcdef0123456789abcdef");
        let mut b = s.mint(URL, 5).into_bytes();
        let last = b.len() - 1;
        b[last] = if b[last] == b'A' { b'B' } else { b'A' };
        let t = String::from_utf8(b).unwrap_or_default();
        assert_eq!(s.verify(&t, 10), Err(LinkError::Forged));
    }
}
