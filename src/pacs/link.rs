//! Signed, expiring `/files/<token>` links: only this box can mint them, a token names the one
//! LAN URL it was minted for, and it does not reveal that URL (LAN addresses and paths, which can
//! carry patient numbers, never leave the box in clear).
//!
//! Token = base64url (no padding) of `0x02 ‖ nonce (12 random bytes) ‖ AES-256-GCM(expiry (u64,
//! Unix seconds, big-endian) ‖ URL)`, with the version byte as associated data. The AEAD key is
//! HMAC-SHA256(link key, "prefront/files-link/v2"). The tag is checked before anything inside the
//! token is looked at; a token that fails it is forged, whatever else it says.

use std::io::Write;
use std::path::Path;

use data_encoding::BASE64URL_NOPAD;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

const VERSION: u8 = 2;
const TAG_LEN: usize = 16;
/// Longest token accepted: as long as a request head may be (URLs of up to ~48 KiB).
const MAX_TOKEN_LEN: usize = 64 * 1024;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the link is not one this box issued (forged, damaged or truncated)")]
    Forged,
    #[error("the link expired")]
    Expired,
}

/// The system's random number generator failed: no link can be minted safely.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no system randomness: no link minted")]
pub struct NoRandomness;

/// Mints and verifies links with one key.
pub struct LinkSigner {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkSigner(***)")
    }
}

impl LinkSigner {
    pub fn new(key: &[u8]) -> LinkSigner {
        let derived = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, key),
            b"prefront/files-link/v2",
        );
        // A 32-byte key always fits AES-256.
        let unbound = UnboundKey::new(&AES_256_GCM, derived.as_ref())
            .unwrap_or_else(|_| unreachable!("HMAC-SHA256 output is 32 bytes"));
        LinkSigner {
            key: LessSafeKey::new(unbound),
            rng: SystemRandom::new(),
        }
    }

    /// A token for `url`, valid until `expires` (Unix seconds). Without system randomness no
    /// token is minted: a nonce that repeats (a counter restarting at zero with the process)
    /// would break AES-GCM for every link made with the key.
    pub fn mint(&self, url: &str, expires: u64) -> Result<String, NoRandomness> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| NoRandomness)?;
        let mut sealed = Vec::with_capacity(8 + url.len() + TAG_LEN);
        sealed.extend_from_slice(&expires.to_be_bytes());
        sealed.extend_from_slice(url.as_bytes());
        let _ = self.key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from([VERSION]),
            &mut sealed,
        );
        let mut raw = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        raw.push(VERSION);
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&sealed);
        Ok(BASE64URL_NOPAD.encode(&raw))
    }

    /// The URL a token was minted for, if it is authentic and has not expired at `now`.
    pub fn verify(&self, token: &str, now: u64) -> Result<String, LinkError> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(LinkError::Forged);
        }
        let mut raw = BASE64URL_NOPAD
            .decode(token.as_bytes())
            .map_err(|_| LinkError::Forged)?;
        if raw.len() < 1 + NONCE_LEN + 8 + TAG_LEN || raw[0] != VERSION {
            return Err(LinkError::Forged);
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&raw[1..1 + NONCE_LEN]);
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from([VERSION]),
                &mut raw[1 + NONCE_LEN..],
            )
            .map_err(|_| LinkError::Forged)?;
        let mut exp = [0u8; 8];
        exp.copy_from_slice(&plain[..8]);
        let url = std::str::from_utf8(&plain[8..]).map_err(|_| LinkError::Forged)?;
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
    SystemRandom::new()
        .fill(&mut key)
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
        // Another process created it first: use theirs (checked like any key read).
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            load_key(path)?.ok_or_else(|| {
                err(std::io::Error::other(
                    "the key file went away while it was read",
                ))
            })
        }
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
        let t = s.mint(URL, 1000).expect("minted");
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
        let t = s.mint(URL, u64::MAX).expect("minted");
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
        assert!(
            !String::from_utf8_lossy(&BASE64URL_NOPAD.decode(t.as_bytes()).unwrap_or_default())
                .contains("10.1.1.20"),
            "the LAN URL must not be readable in the token"
        );
        assert_ne!(
            s.mint(URL, u64::MAX).expect("minted"),
            t,
            "every token has its own nonce"
        );
        let other = LinkSigner::new(b"another key, also thirty-two bytes");
        assert_eq!(other.verify(&t, 0), Err(LinkError::Forged));
        assert_eq!(s.verify("../../etc/passwd", 0), Err(LinkError::Forged));
        assert_eq!(s.verify(&"A".repeat(100_000), 0), Err(LinkError::Forged));
    }

    #[test]
    fn an_expired_forgery_is_forged_not_expired() {
        let s = LinkSigner::new(b"0123456789abcdef0123456789abcdef");
        let mut b = s.mint(URL, 5).expect("minted").into_bytes();
        let last = b.len() - 1;
        b[last] = if b[last] == b'A' { b'B' } else { b'A' };
        let t = String::from_utf8(b).unwrap_or_default();
        assert_eq!(s.verify(&t, 10), Err(LinkError::Forged));
    }

    #[test]
    fn the_generated_key_is_kept_and_a_damaged_one_is_refused() {
        let dir = std::env::temp_dir().join(format!("prefront-linkkey-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("state").join("pacs-link.key");
        assert_eq!(load_key(&path).ok(), Some(None), "nothing yet");
        let first = load_or_create_key(&path).unwrap_or_default();
        assert_eq!(first.len(), 32);
        assert_eq!(load_or_create_key(&path).unwrap_or_default(), first, "kept");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).map(|m| m.permissions().mode() & 0o777);
            assert_eq!(mode.ok(), Some(0o600), "owner only");
        }
        std::fs::write(&path, b"short").unwrap_or_default();
        let err = load_or_create_key(&path).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("shorter than 32 bytes")),
            "{err:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
