//! The PACS: whether `[pacs] dcm_url`'s host accepts connections.

use super::net::{connect, host_port};
use super::{Check, CHECK_TIMEOUT};
use crate::config::Config;

pub(super) async fn pacs_checks(config: &Config) -> Vec<Check> {
    const WHAT: &str = "PACS ([pacs] dcm_url)";
    let Some(template) = &config.pacs.dcm_url else {
        return Vec::new();
    };
    let Ok(url) = reqwest::Url::parse(&template.replace(['{', '}'], "")) else {
        return vec![Check::fail(WHAT, "dcm_url is not a valid URL")];
    };
    let deadline = tokio::time::Instant::now() + CHECK_TIMEOUT;
    let hp = host_port(&url);
    vec![match connect(&url, deadline).await {
        Ok(()) => Check::pass(WHAT, format!("{hp} accepts connections")),
        Err(why) => Check::warn(
            WHAT,
            format!("{why}: images will not load until it answers (the PACS may just be down)"),
        ),
    }]
}
