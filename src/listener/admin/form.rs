//! The status page's buttons post HTML forms to the admin API. A browser sends a form post to
//! the loopback admin port from any web page it shows, so a form post changes something only
//! when it carries this process's form key — a random value the status page embeds and another
//! site cannot read — and, with `[admin] token_file`, the token the operator typed.

use std::sync::OnceLock;

use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request};

/// Largest form body read: the key, a token and a little more.
pub const MAX_FORM_BYTES: u64 = 4096;

static FORM_KEY: OnceLock<Option<String>> = OnceLock::new();

/// This process's form key: 32 random bytes, hex. `None` when the system's random source
/// failed; the page then shows no working buttons.
pub fn form_key() -> Option<&'static str> {
    FORM_KEY
        .get_or_init(|| {
            let mut b = [0u8; 32];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
                .ok()
                .map(|()| data_encoding::HEXLOWER.encode(&b))
        })
        .as_deref()
}

/// A POST with an HTML form's body and no bearer token: what a browser sends (a form cannot
/// set `Authorization: Bearer`, and an API client that sets it is not a form).
pub fn is_form_post(req: &Request<Incoming>) -> bool {
    let form = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| {
            t.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    let bearer = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split_once(' ')
                .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        });
    req.method() == Method::POST && form && !bearer
}

/// The fields a form post carries.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Fields {
    pub form_key: Option<String>,
    pub token: Option<String>,
}

/// Reads `form_key` and `token` from a form body (the first of each; others ignored).
pub fn fields(body: &[u8]) -> Fields {
    let mut f = Fields::default();
    for (k, v) in form_urlencoded::parse(body) {
        match k.as_ref() {
            "form_key" if f.form_key.is_none() => f.form_key = Some(v.into_owned()),
            "token" if f.token.is_none() => f.token = Some(v.into_owned()),
            _ => {}
        }
    }
    f
}

/// Whether `given` is this process's form key (compared in constant time).
pub fn key_matches(given: Option<&str>) -> bool {
    match (form_key(), given) {
        (Some(key), Some(given)) => super::api::token_matches(key, given),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_key_is_random_hex_and_stays_for_the_process() {
        let k = form_key().expect("a random source");
        assert_eq!(k.len(), 64);
        assert!(k.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(form_key(), Some(k));
        assert!(key_matches(Some(k)));
        assert!(!key_matches(Some(&k[1..])));
        assert!(!key_matches(None));
    }

    #[test]
    fn fields_are_read_from_a_form_body() {
        assert_eq!(
            fields(b"form_key=abc&token=t%2Bx&token=second&other=1"),
            Fields {
                form_key: Some("abc".into()),
                token: Some("t+x".into()),
            }
        );
        assert_eq!(fields(b""), Fields::default());
    }
}
