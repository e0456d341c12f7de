//! `[auth]`: the secret shared with the cloud platform.

use std::time::Duration;

use super::values::*;
use super::{Checker, Step};
use crate::config::raw;
use crate::config::*;

pub(super) fn auth(c: &mut Checker<'_>, raw: raw::RawAuth) -> Option<AuthConfig> {
    let k = |key: &'static str| [Step::Key("auth"), Step::Key(key)];
    let max_skew = duration(
        c,
        &k("max_skew"),
        raw.max_skew.as_deref(),
        Duration::from_secs(300),
    );
    let secret = match (raw.shared_secret, raw.shared_secret_file) {
        (Some(_), Some(_)) => {
            c.problem(
                &k("shared_secret_file"),
                "set shared_secret or shared_secret_file, not both",
            );
            return None;
        }
        (None, None) => {
            c.problem(
                &[Step::Key("auth")],
                "[auth] needs shared_secret or shared_secret_file (the secret agreed with the cloud team)",
            );
            return None;
        }
        (Some(s), None) => s,
        (None, Some(f)) => {
            let path = existing_file(c, &k("shared_secret_file"), &f)?;
            private_key_permissions(c, &k("shared_secret_file"), &path);
            match std::fs::read_to_string(&path) {
                Ok(s) => s.trim().to_string(),
                Err(e) => {
                    c.problem(
                        &k("shared_secret_file"),
                        format!("cannot read {}: {e}", path.display()),
                    );
                    return None;
                }
            }
        }
    };
    if secret.len() < 32 {
        // Never echo the secret itself.
        c.problem(
            &k("shared_secret"),
            "too short: the shared secret must have at least 32 characters",
        );
        return None;
    }
    Some(AuthConfig {
        secret: Secret(secret),
        max_skew,
    })
}

/// `[admin] token_file`: the bearer token every `/api/` call must carry. Read at load, checked
/// like a key file (only the service may read it), never echoed.
pub(super) fn admin_token(c: &mut Checker<'_>, file: &str) -> Option<Secret> {
    let k = [Step::Key("admin"), Step::Key("token_file")];
    let path = existing_file(c, &k, file)?;
    private_key_permissions(c, &k, &path);
    let token = match std::fs::read_to_string(&path) {
        Ok(s) => s.trim().to_string(),
        Err(e) => {
            c.problem(&k, format!("cannot read {}: {e}", path.display()));
            return None;
        }
    };
    if token.len() < 16 || !token.bytes().all(|b| b.is_ascii_graphic()) {
        c.problem(
            &k,
            "the token must be at least 16 printable characters without spaces \
             (e.g. `openssl rand -hex 32 > admin.token`)",
        );
        return None;
    }
    Some(Secret(token))
}
