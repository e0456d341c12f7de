//! The PACS: whether `[pacs] dcm_url`'s host, and every `[[hospital]]`'s `dcm_url` host, accepts
//! connections.

use super::net::{connect, host_port};
use super::{Check, CHECK_TIMEOUT};
use crate::config::Config;

pub(super) async fn pacs_checks(config: &Config) -> Vec<Check> {
    let mut templates = Vec::new();
    if let Some(t) = &config.pacs.dcm_url {
        templates.push(("PACS ([pacs] dcm_url)".to_string(), t));
    }
    for (id, t) in &config.pacs.hospitals {
        if let Some(t) = t {
            templates.push((format!("PACS (hospital {id} dcm_url)"), t));
        }
    }
    // Probed at once, listed in the order above.
    let deadline = tokio::time::Instant::now() + CHECK_TIMEOUT;
    let mut probes = tokio::task::JoinSet::new();
    for (i, (what, template)) in templates.into_iter().enumerate() {
        let template = template.clone();
        probes.spawn(async move { (i, probe(what, &template, deadline).await) });
    }
    let mut checks = Vec::new();
    while let Some(joined) = probes.join_next().await {
        if let Ok(done) = joined {
            checks.push(done);
        }
    }
    checks.sort_by_key(|(i, _)| *i);
    checks.into_iter().map(|(_, c)| c).collect()
}

async fn probe(what: String, template: &str, deadline: tokio::time::Instant) -> Check {
    let Ok(url) = reqwest::Url::parse(&template.replace(['{', '}'], "")) else {
        return Check::fail(what, "dcm_url is not a valid URL");
    };
    let hp = host_port(&url);
    match connect(&url, deadline).await {
        Ok(()) => Check::pass(what, format!("{hp} accepts connections")),
        Err(why) => Check::warn(
            what,
            format!("{why}: images will not load until it answers (the PACS may just be down)"),
        ),
    }
}
