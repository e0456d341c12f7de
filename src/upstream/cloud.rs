//! The cloud platform: `POST <base_url>prefront/<path>` over HTTPS, and the cloud link's state.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::link::Link;
use super::{accept_json_answer, post, UpstreamError};
use crate::config::CloudConfig;

/// Names a delivery from the buffer: store id and sequence, unique for ever.
const MESSAGE_ID_HEADER: hyper::header::HeaderName =
    hyper::header::HeaderName::from_static("x-prefront-message-id");

/// The box's one connection pool to the cloud.
#[derive(Debug, Clone)]
pub struct Cloud {
    clients: super::Clients,
    /// Always ends with `/`.
    base_url: reqwest::Url,
    /// `base_url` joined with every catalogue path, once (not parsed again for every call).
    urls: Arc<std::collections::HashMap<&'static str, hyper::Uri>>,
    timeout: Duration,
    max_response: u64,
    /// Up/down as the last calls saw it; shared with the prober and the forwarders.
    pub link: Arc<Link>,
    /// Signs every call when `[auth]` is set.
    signer: Option<Arc<crate::auth::Signer>>,
}

impl Cloud {
    pub fn new(
        config: &CloudConfig,
        auth: Option<&crate::config::AuthConfig>,
    ) -> Result<Cloud, String> {
        let roots = super::root_store_pinned(config.ca.as_deref(), config.pin_ca)?;
        let identity = match (&config.client_cert, &config.client_key) {
            (Some(cert), Some(key)) => Some(super::load_identity(cert, key)?),
            _ => None,
        };
        Ok(Cloud {
            clients: super::Clients::new(|| {
                super::client::Client::new(
                    super::tls_config(roots.clone(), identity.clone())?,
                    config.connect_timeout,
                    config.proxy.as_ref(),
                )
            })?,
            base_url: config.base_url.clone(),
            urls: Arc::new(
                crate::catalog::Catalog::get()
                    .paths()
                    .filter_map(|p| Some((p, super::uri_of(config.base_url.join(p).ok()?).ok()?)))
                    .collect(),
            ),
            timeout: config.timeout,
            max_response: config.max_response,
            link: Link::new("cloud"),
            signer: auth
                .map(|a| Arc::new(crate::auth::Signer::new(a.secret.0.as_bytes(), a.max_skew))),
        })
    }

    /// The URL a catalogue path (`prefront/...`) is sent to.
    pub fn url_for(&self, path: &str) -> Result<hyper::Uri, UpstreamError> {
        if let Some(url) = self.urls.get(path) {
            return Ok(url.clone());
        }
        let url = self
            .base_url
            .join(path)
            .map_err(|_| UpstreamError::Unsupported("path cannot be joined to cloud.base_url"))?;
        super::uri_of(url)
    }

    /// Relays one JSON call; the cloud's JSON answer comes back unchanged. A delivery from the
    /// buffer carries its message id (store id and sequence, unique for ever) as
    /// `X-Prefront-Message-Id`, so the cloud can deduplicate.
    /// The outcome updates the link state.
    pub async fn call(
        &self,
        path: &str,
        request_id: &str,
        message_id: Option<&str>,
        body: Bytes,
    ) -> Result<Bytes, UpstreamError> {
        let url = self.url_for(path)?;
        let mut headers = Vec::with_capacity(5);
        headers.extend(super::JSON_HEADERS);
        if let Some(id) = message_id {
            headers.push((MESSAGE_ID_HEADER, super::header_value(id.to_string())?));
        }
        if let Some(signer) = &self.signer {
            let target = url.path_and_query().map_or("/", |p| p.as_str());
            for (name, value) in signer.sign("POST", target, &body, crate::auth::unix_now()) {
                headers.push((
                    hyper::header::HeaderName::from_static(name),
                    super::header_value(value)?,
                ));
            }
        }
        let answer = post(
            self.clients.here(),
            url,
            request_id,
            body,
            &headers,
            self.timeout,
            self.max_response,
        )
        .await;
        let result = answer.and_then(accept_json_answer);
        self.link.observe(&result);
        result
    }

    /// A harmless request to learn whether the cloud answers at all: `HEAD <base_url>`. Any HTTP
    /// answer but 502/503/504 means the link works. Through `[cloud] proxy` when set: a proxy
    /// that is down or refuses keeps the link down.
    pub async fn probe(&self) -> bool {
        let Ok(uri) = self.base_url.as_str().parse::<hyper::Uri>() else {
            return false;
        };
        let mut req = hyper::Request::new(http_body_util::Full::new(Bytes::new()));
        *req.method_mut() = hyper::Method::HEAD;
        *req.uri_mut() = uri;
        let headers = req.headers_mut();
        headers.insert(
            hyper::header::USER_AGENT,
            hyper::header::HeaderValue::from_static(super::USER_AGENT),
        );
        if let Some(signer) = &self.signer {
            for (name, value) in signer.sign(
                "HEAD",
                &path_and_query(&self.base_url),
                b"",
                crate::auth::unix_now(),
            ) {
                if let Ok(value) = hyper::header::HeaderValue::from_str(&value) {
                    headers.insert(name, value);
                }
            }
        }
        let limit = self.timeout.min(Duration::from_secs(5));
        let r = tokio::time::timeout(limit, self.clients.here().send(req)).await;
        matches!(r, Ok(Ok(resp)) if !matches!(resp.status().as_u16(), 502..=504))
    }
}

/// The request target as it goes on the wire: path, and `?query` if any.
fn path_and_query(url: &reqwest::Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    }
}
