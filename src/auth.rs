//! Signed calls between the box and the cloud, on top of TLS (`[auth]`): the sender adds
//! `X-Prefront-Timestamp` (Unix seconds) and `X-Prefront-Signature` (lowercase hex of
//! HMAC-SHA256 with the shared secret over the canonical string below); the receiver refuses a
//! missing or wrong signature, a timestamp outside ±`max_skew`, or a signature it has already
//! seen within that window.
//!
//! Canonical string (UTF-8, fields joined by a single `\n`, no trailing newline):
//!
//! ```text
//! METHOD            e.g. POST (upper case)
//! PATH?QUERY        the request target as sent, e.g. /his/hospital.interface.createCard
//! TIMESTAMP         the X-Prefront-Timestamp value, e.g. 1764662400
//! BODY-SHA256       lowercase hex SHA-256 of the body bytes as sent (empty body included)
//! ```

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use data_encoding::HEXLOWER;
use ring::{digest, hmac};

pub const TIMESTAMP_HEADER: &str = "x-prefront-timestamp";
pub const SIGNATURE_HEADER: &str = "x-prefront-signature";

/// Signatures remembered for replay detection before old ones are purged.
const REMEMBER: usize = 200_000;

/// Why a signed call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no X-Prefront-Timestamp / X-Prefront-Signature header")]
    Missing,
    #[error("X-Prefront-Timestamp is not a Unix time in seconds")]
    BadTimestamp,
    #[error("X-Prefront-Timestamp is outside the allowed clock skew")]
    Skew,
    #[error("X-Prefront-Signature does not match")]
    BadSignature,
    #[error("this signature was already used (replay)")]
    Replayed,
    #[error("too many signed calls in the window to check for replays")]
    Overloaded,
    /// Signed before this verifier started: its replay memory cannot know it, so it is refused
    /// (a captured call cannot be replayed after a restart or a reload).
    #[error("X-Prefront-Timestamp predates the gateway's start (sign the call anew)")]
    BeforeStart,
}

impl AuthError {
    /// The `X-Prefront-Error` kind.
    pub fn kind(self) -> crate::outcome::Outcome {
        use crate::outcome::Outcome;
        match self {
            AuthError::Missing => Outcome::SignatureMissing,
            AuthError::BadTimestamp | AuthError::Skew => Outcome::SignatureTimestamp,
            AuthError::BadSignature => Outcome::SignatureWrong,
            AuthError::Replayed => Outcome::SignatureReplayed,
            AuthError::Overloaded => Outcome::SignatureOverloaded,
            AuthError::BeforeStart => Outcome::SignatureBeforeStart,
        }
    }
}

/// Signs outgoing calls and checks incoming ones with one shared secret.
pub struct Signer {
    key: hmac::Key,
    max_skew: Duration,
    /// Signatures seen, with the Unix time after which they can no longer be replayed.
    seen: Mutex<HashMap<[u8; 32], u64>>,
    /// Calls signed before or in this Unix second are refused: the memory above starts empty.
    not_before: u64,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("max_skew", &self.max_skew)
            .finish_non_exhaustive()
    }
}

pub use crate::clock::unix_now;

/// The string that is signed (see the module documentation).
pub fn canonical(method: &str, path_and_query: &str, timestamp: &str, body: &[u8]) -> String {
    let body_hash = HEXLOWER.encode(digest::digest(&digest::SHA256, body).as_ref());
    format!(
        "{}\n{path_and_query}\n{timestamp}\n{body_hash}",
        method.to_ascii_uppercase()
    )
}

impl Signer {
    pub fn new(secret: &[u8], max_skew: Duration) -> Signer {
        Signer {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            max_skew,
            seen: Mutex::new(HashMap::new()),
            not_before: 0,
        }
    }

    /// A signer that also checks incoming calls from now on: a call signed before or in the
    /// second `started` (Unix seconds) is refused, since the replay memory, which starts empty,
    /// cannot know it.
    pub fn verifier(secret: &[u8], max_skew: Duration, started: u64) -> Signer {
        Signer {
            not_before: started,
            ..Signer::new(secret, max_skew)
        }
    }

    /// The two headers for a call sent at `now`.
    pub fn sign(
        &self,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        now: u64,
    ) -> [(&'static str, String); 2] {
        let ts = now.to_string();
        let tag = hmac::sign(
            &self.key,
            canonical(method, path_and_query, &ts, body).as_bytes(),
        );
        [
            (TIMESTAMP_HEADER, ts),
            (SIGNATURE_HEADER, HEXLOWER.encode(tag.as_ref())),
        ]
    }

    /// Checks an incoming call's headers at `now`; a valid signature is remembered so it cannot
    /// be used twice.
    pub fn verify(
        &self,
        method: &str,
        path_and_query: &str,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now: u64,
    ) -> Result<(), AuthError> {
        let (Some(ts), Some(sig)) = (timestamp, signature) else {
            return Err(AuthError::Missing);
        };
        let ts_num: u64 = ts
            .trim()
            .parse()
            .ok()
            .filter(|_| ts.len() <= 20)
            .ok_or(AuthError::BadTimestamp)?;
        let skew = self.max_skew.as_secs();
        if ts_num.abs_diff(now) > skew {
            return Err(AuthError::Skew);
        }
        // The start's own second too: a call signed in it may have been used just before.
        if self.not_before > 0 && ts_num <= self.not_before {
            return Err(AuthError::BeforeStart);
        }
        let tag = HEXLOWER
            .decode(sig.trim().to_ascii_lowercase().as_bytes())
            .map_err(|_| AuthError::BadSignature)?;
        hmac::verify(
            &self.key,
            canonical(method, path_and_query, ts.trim(), body).as_bytes(),
            &tag,
        )
        .map_err(|_| AuthError::BadSignature)?;
        let mut id = [0u8; 32];
        if tag.len() != 32 {
            return Err(AuthError::BadSignature);
        }
        id.copy_from_slice(&tag);
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= REMEMBER {
            seen.retain(|_, until| *until >= now);
            if seen.len() >= REMEMBER {
                return Err(AuthError::Overloaded);
            }
        }
        // Replayable until the timestamp leaves the window.
        if seen.insert(id, ts_num.saturating_add(skew)).is_some() {
            return Err(AuthError::Replayed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A verifier refuses calls signed before or in the second it started: its replay memory is
    /// new, so such a call may have been used before a restart or a reload.
    #[test]
    fn a_call_signed_before_the_start_is_refused() {
        let s = Signer::verifier(SECRET, Duration::from_secs(300), 1000);
        for ts in [990u64, 1000] {
            let [(_, t), (_, sig)] =
                Signer::new(SECRET, Duration::from_secs(300)).sign("POST", "/his/a", b"{}", ts);
            assert_eq!(
                s.verify("POST", "/his/a", Some(&t), Some(&sig), b"{}", 1002),
                Err(AuthError::BeforeStart),
                "signed at {ts}"
            );
        }
        let [(_, t), (_, sig)] =
            Signer::new(SECRET, Duration::from_secs(300)).sign("POST", "/his/a", b"{}", 1001);
        assert_eq!(
            s.verify("POST", "/his/a", Some(&t), Some(&sig), b"{}", 1002),
            Ok(())
        );
    }

    const SECRET: &[u8] = b"a shared secret of at least 32 bytes!";

    #[test]
    fn the_canonical_string_is_what_the_readme_says() {
        assert_eq!(
            canonical("post", "/his/x?a=1", "1764662400", b""),
            "POST\n/his/x?a=1\n1764662400\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn a_signed_call_verifies_once() {
        let s = Signer::new(SECRET, Duration::from_secs(300));
        let [(_, ts), (_, sig)] = s.sign("POST", "/his/a", b"{}", 1000);
        assert_eq!(
            s.verify("POST", "/his/a", Some(&ts), Some(&sig), b"{}", 1010),
            Ok(())
        );
        assert_eq!(
            s.verify("POST", "/his/a", Some(&ts), Some(&sig), b"{}", 1011),
            Err(AuthError::Replayed)
        );
    }

    #[test]
    fn anything_changed_is_refused() {
        let s = Signer::new(SECRET, Duration::from_secs(300));
        let [(_, ts), (_, sig)] = s.sign("POST", "/his/a", b"{}", 1000);
        let v = |m: &str, p: &str, t: Option<&str>, g: Option<&str>, b: &[u8], now: u64| {
            s.verify(m, p, t, g, b, now)
        };
        assert_eq!(
            v("GET", "/his/a", Some(&ts), Some(&sig), b"{}", 1000),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            v("POST", "/his/b", Some(&ts), Some(&sig), b"{}", 1000),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            v("POST", "/his/a", Some(&ts), Some(&sig), b"{ }", 1000),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            v("POST", "/his/a", Some("1001"), Some(&sig), b"{}", 1000),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            v("POST", "/his/a", Some(&ts), Some("zz"), b"{}", 1000),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            v("POST", "/his/a", None, Some(&sig), b"{}", 1000),
            Err(AuthError::Missing)
        );
        assert_eq!(
            v("POST", "/his/a", Some("soon"), Some(&sig), b"{}", 1000),
            Err(AuthError::BadTimestamp)
        );
        assert_eq!(
            v("POST", "/his/a", Some(&ts), Some(&sig), b"{}", 1301),
            Err(AuthError::Skew)
        );
        assert_eq!(
            v("POST", "/his/a", Some(&ts), Some(&sig), b"{}", 699),
            Err(AuthError::Skew)
        );
        let other = Signer::new(
            b"another secret, also 32 bytes long!!",
            Duration::from_secs(300),
        );
        assert_eq!(
            other.verify("POST", "/his/a", Some(&ts), Some(&sig), b"{}", 1000),
            Err(AuthError::BadSignature)
        );
    }
}
