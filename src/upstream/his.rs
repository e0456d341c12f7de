//! The HIS: each `hospital.interface.*` name goes where the config routes it — plain HTTP JSON
//! now; SOAP routes are accepted by the config and answered as unsupported until the SOAP bridge.

use bytes::Bytes;

use super::{accept_json_answer, http_client, post_json, root_store, UpstreamError};
use crate::catalog::short_name;
use crate::config::{HisConfig, HisRoute, HisTarget};

/// The box's connection pool to the HIS and the routing table.
#[derive(Debug, Clone)]
pub struct His {
    client: reqwest::Client,
    config: HisConfig,
}

impl His {
    pub fn new(config: &HisConfig) -> Result<His, String> {
        let roots = root_store(None)?;
        Ok(His {
            client: http_client(roots, std::time::Duration::from_secs(3))?,
            config: config.clone(),
        })
    }

    /// The route for a name, if this hospital serves it.
    pub fn route(&self, name: &str) -> Option<&HisRoute> {
        self.config.route_for(name)
    }

    /// Relays one JSON call to the HIS along `route`.
    pub async fn call(
        &self,
        name: &str,
        route: &HisRoute,
        request_id: &str,
        body: Bytes,
    ) -> Result<Bytes, UpstreamError> {
        match &route.target {
            HisTarget::Http { url } => {
                let url = http_url(url, name)?;
                let answer = post_json(
                    &self.client,
                    url,
                    request_id,
                    body,
                    route.timeout,
                    self.config.max_response,
                )
                .await?;
                accept_json_answer(answer)
            }
            HisTarget::Soap(_) => Err(UpstreamError::Unsupported(
                "SOAP routes into the HIS are not available in this version",
            )),
        }
    }
}

/// Fills `{name}` and `{method}` into a route URL. Names are checked to be URL-safe before they
/// get here, so no escaping is needed.
pub fn http_url(template: &str, name: &str) -> Result<reqwest::Url, UpstreamError> {
    let s = template
        .replace("{name}", name)
        .replace("{method}", short_name(name));
    reqwest::Url::parse(&s).map_err(|_| UpstreamError::Unsupported("route url is not a valid URL"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_template_takes_name_and_method() {
        let u = http_url(
            "http://10.1.1.10:8080/his/{method}?n={name}",
            "hospital.interface.createCard",
        )
        .expect("valid");
        assert_eq!(
            u.as_str(),
            "http://10.1.1.10:8080/his/createCard?n=hospital.interface.createCard"
        );
    }
}
