//! The cloud platform: `POST <base_url>prefront/<path>` over HTTPS.

use bytes::Bytes;

use super::{accept_json_answer, http_client, post_json, root_store, UpstreamError};
use crate::config::CloudConfig;

/// The box's one connection pool to the cloud.
#[derive(Debug, Clone)]
pub struct Cloud {
    client: reqwest::Client,
    /// Always ends with `/`.
    base_url: reqwest::Url,
    timeout: std::time::Duration,
    max_response: u64,
}

impl Cloud {
    pub fn new(config: &CloudConfig) -> Result<Cloud, String> {
        let roots = root_store(config.ca.as_deref())?;
        Ok(Cloud {
            client: http_client(roots, config.connect_timeout)?,
            base_url: config.base_url.clone(),
            timeout: config.timeout,
            max_response: config.max_response,
        })
    }

    /// The URL a catalogue path (`prefront/...`) is sent to.
    pub fn url_for(&self, path: &str) -> Result<reqwest::Url, UpstreamError> {
        self.base_url
            .join(path)
            .map_err(|_| UpstreamError::Unsupported("path cannot be joined to cloud.base_url"))
    }

    /// Relays one JSON call; the cloud's JSON answer comes back unchanged.
    pub async fn call(
        &self,
        path: &str,
        request_id: &str,
        body: Bytes,
    ) -> Result<Bytes, UpstreamError> {
        let url = self.url_for(path)?;
        let answer = post_json(
            &self.client,
            url,
            request_id,
            body,
            self.timeout,
            self.max_response,
        )
        .await?;
        accept_json_answer(answer)
    }
}
