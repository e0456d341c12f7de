//! The cloud: its name in DNS, TLS and `HEAD cloud.base_url`, and the clock against its `Date`.

use std::time::{Duration, Instant, SystemTime};

use super::net::{
    connect, explain_proxy_error, explain_request_error, host_port, no_answer, resolve, shown,
};
use super::{Check, Status, CHECK_TIMEOUT};
use crate::certinfo;
use crate::config::{CloudConfig, CloudProxy};

/// Clock skew against the cloud above this is a warning …
const SKEW_WARNING: Duration = Duration::from_secs(30);
/// … and above this a failure: signed calls and TLS validity checks break.
const SKEW_FAILURE: Duration = Duration::from_secs(300);

const CLOUD_DNS: &str = "cloud DNS (cloud.base_url)";
const CLOUD_HTTPS: &str = "cloud HTTPS (HEAD cloud.base_url)";
const CLOUD_CLOCK: &str = "clock vs the cloud's Date";
const CLOUD_PROXY: &str = "cloud proxy (cloud.proxy)";

pub(super) async fn cloud_checks(cloud: &CloudConfig) -> Vec<Check> {
    let url = &cloud.base_url;
    let port = url.port_or_known_default().unwrap_or(443);
    let host = url
        .host_str()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']'));
    if let Some(proxy) = &cloud.proxy {
        // Through a proxy this machine never resolves the cloud's name: the proxy does.
        let reach = proxy_check(proxy).await;
        let dns = Check::pass(
            CLOUD_DNS,
            format!(
                "{}: resolved by the proxy ({}), not by this machine",
                host.unwrap_or("?"),
                proxy.host_port()
            ),
        );
        if reach.status == Status::Fail {
            return vec![
                reach,
                dns,
                Check::fail(CLOUD_HTTPS, "not tried: the proxy cannot be reached"),
                Check::warn(CLOUD_CLOCK, "not checked: the cloud did not answer"),
            ];
        }
        let (https, clock) = cloud_head(cloud).await;
        return vec![reach, dns, https, clock];
    }
    let dns = match host {
        Some(h) if h.parse::<std::net::IpAddr>().is_ok() => {
            Check::pass(CLOUD_DNS, "IP address, no DNS needed")
        }
        Some(host) => match tokio::time::timeout(CHECK_TIMEOUT, resolve(host, port)).await {
            Ok(Ok(addrs)) => {
                let mut ips: Vec<String> = Vec::new();
                for a in addrs {
                    let ip = a.ip().to_string();
                    if !ips.contains(&ip) {
                        ips.push(ip);
                    }
                }
                if ips.is_empty() {
                    Check::fail(CLOUD_DNS, format!("{host}: no address"))
                } else {
                    Check::pass(CLOUD_DNS, format!("{host} → {}", ips.join(", ")))
                }
            }
            Ok(Err(e)) => Check::fail(
                CLOUD_DNS,
                format!(
                    "{host} does not resolve ({e}): check /etc/resolv.conf and that the DMZ \
                         may reach a DNS server, or ask the cloud team for the right name"
                ),
            ),
            Err(_) => Check::fail(
                CLOUD_DNS,
                format!(
                    "{host}: no DNS answer within {}s: check /etc/resolv.conf and that the \
                         DMZ may reach a DNS server",
                    CHECK_TIMEOUT.as_secs()
                ),
            ),
        },
        None => Check::fail(CLOUD_DNS, format!("{} has no host", shown(url))),
    };
    if dns.status == Status::Fail {
        return vec![
            dns,
            Check::fail(
                CLOUD_HTTPS,
                "not tried: the cloud's host name does not resolve",
            ),
            Check::warn(CLOUD_CLOCK, "not checked: the cloud did not answer"),
        ];
    }
    let (https, clock) = cloud_head(cloud).await;
    vec![dns, https, clock]
}

/// A TCP connection to the proxy (its name resolved like the gateway's).
async fn proxy_check(proxy: &CloudProxy) -> Check {
    let deadline = tokio::time::Instant::now() + CHECK_TIMEOUT;
    let auth = if proxy.auth.is_some() {
        "credentials from proxy_auth_file"
    } else {
        "no credentials"
    };
    match connect(&proxy.url, deadline).await {
        Ok(()) => Check::pass(
            CLOUD_PROXY,
            format!(
                "{} accepts connections ({auth}); the cloud is checked through it",
                proxy.host_port()
            ),
        ),
        Err(e) => Check::fail(
            CLOUD_PROXY,
            format!("{e}: check [cloud] proxy with the hospital's network team"),
        ),
    }
}

/// `HEAD <base_url>` with the gateway's own client setup (system roots plus `cloud.ca`, through
/// `cloud.proxy` when set), and the clock compared with the answer's `Date`.
async fn cloud_head(cloud: &CloudConfig) -> (Check, Check) {
    let url = cloud.base_url.clone();
    let ca = cloud.ca.clone();
    let connect_timeout = cloud.connect_timeout.min(CHECK_TIMEOUT);
    let proxy = cloud.proxy.clone();
    let client = tokio::task::spawn_blocking(move || {
        crate::upstream::root_store(ca.as_deref())
            .and_then(|roots| crate::upstream::client_builder(roots, connect_timeout))
            .and_then(|b| crate::upstream::with_proxy(b, proxy.as_ref()))
            .and_then(|b| b.build().map_err(|e| crate::upstream::error_root(&e)))
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    let client = match client {
        Ok(c) => c,
        Err(e) => {
            return (
                Check::fail(CLOUD_HTTPS, format!("cannot set up the client: {e}")),
                Check::warn(CLOUD_CLOCK, "not checked: the cloud was not called"),
            )
        }
    };
    let host_port = host_port(&url);
    let sent = SystemTime::now();
    let started = Instant::now();
    let answer = tokio::time::timeout(
        CHECK_TIMEOUT + Duration::from_secs(1),
        client.head(url.clone()).timeout(CHECK_TIMEOUT).send(),
    )
    .await;
    let received = SystemTime::now();
    let resp = match answer {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            let why = match &cloud.proxy {
                Some(proxy) => explain_proxy_error(&e, proxy, &host_port)
                    .unwrap_or_else(|| explain_request_error(&e, &host_port)),
                None => explain_request_error(&e, &host_port),
            };
            return (
                Check::fail(CLOUD_HTTPS, format!("{}: {why}", shown(&url))),
                Check::warn(CLOUD_CLOCK, "not checked: the cloud did not answer"),
            );
        }
        Err(_) => {
            return (
                Check::fail(
                    CLOUD_HTTPS,
                    format!("{}: {}", shown(&url), no_answer(&host_port)),
                ),
                Check::warn(CLOUD_CLOCK, "not checked: the cloud did not answer"),
            )
        }
    };
    let status = resp.status().as_u16();
    let ms = started.elapsed().as_millis();
    let security = if url.scheme() == "https" {
        "TLS OK, certificate trusted"
    } else {
        "plain HTTP, not encrypted"
    };
    let https = if (502..=504).contains(&status) {
        Check::warn(
            CLOUD_HTTPS,
            format!(
                "{}: answered HTTP {status} ({security}): the cloud, or a proxy in front of it, \
                 says it is unavailable; the gateway treats this as \"link down\"",
                shown(&url)
            ),
        )
    } else {
        let via = match &cloud.proxy {
            Some(p) => format!(", through the proxy {}", p.host_port()),
            None => String::new(),
        };
        Check::pass(
            CLOUD_HTTPS,
            format!(
                "{}: answered HTTP {status} in {ms} ms ({security}{via})",
                shown(&url)
            ),
        )
    };
    let date = resp
        .headers()
        .get(reqwest::header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    let clock = match date {
        None => Check::warn(
            CLOUD_CLOCK,
            "the cloud's answer has no (valid) Date header: cannot compare clocks",
        ),
        Some(cloud_time) => clock_verdict(sent, received, cloud_time),
    };
    (https, clock)
}

/// Compares this machine's clock (the middle of the request) with the cloud's `Date` (which has
/// whole seconds, so half a second is added).
fn clock_verdict(sent: SystemTime, received: SystemTime, cloud_time: SystemTime) -> Check {
    let local = match received.duration_since(sent) {
        Ok(rtt) => sent + rtt / 2,
        Err(_) => received,
    };
    let cloud_time = cloud_time + Duration::from_millis(500);
    let (skew, ahead) = match local.duration_since(cloud_time) {
        Ok(d) => (d, true),
        Err(e) => (e.duration(), false),
    };
    let secs = skew.as_secs();
    let side = if ahead { "ahead of" } else { "behind" };
    let said = format!("the cloud says {}", certinfo::utc_datetime(cloud_time));
    if skew > SKEW_FAILURE {
        Check::fail(
            CLOUD_CLOCK,
            format!(
                "this machine's clock is {secs} s {side} the cloud's ({said}): signed calls and \
                 certificate checks fail with more than 5 min; set the time: timedatectl \
                 set-ntp true (or chronyc makestep)"
            ),
        )
    } else if skew > SKEW_WARNING {
        Check::warn(
            CLOUD_CLOCK,
            format!(
                "this machine's clock is {secs} s {side} the cloud's ({said}): enable time sync \
                 (timedatectl set-ntp true)"
            ),
        )
    } else {
        let skew = if secs == 0 {
            "under 1 s".to_string()
        } else {
            format!("{secs} s {side} the cloud")
        };
        Check::pass(
            CLOUD_CLOCK,
            format!("skew {skew} (warning from {} s)", SKEW_WARNING.as_secs()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_verdicts() {
        let now = SystemTime::now();
        let c = clock_verdict(now, now, now - Duration::from_secs(600));
        assert_eq!(c.status, Status::Fail, "{c:?}");
        assert!(c.detail.contains("599 s ahead of"), "{c:?}");
        let c = clock_verdict(now, now, now + Duration::from_secs(60));
        assert_eq!(c.status, Status::Warn, "{c:?}");
        assert!(c.detail.contains("behind"), "{c:?}");
        let c = clock_verdict(now, now, now);
        assert_eq!(c.status, Status::Pass, "{c:?}");
    }
}
