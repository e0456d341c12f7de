//! HIS routes: each configured route's URL (`[his]`, `[[his.route]]`, and every `[[hospital]]`'s
//! own) probed once (`HEAD` for HTTP, `?wsdl` for SOAP).

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use tokio::task::JoinSet;

use super::net::{connect, explain_request_error, host_port, shown};
use super::{Check, CHECK_TIMEOUT};
use crate::config::{Config, HisCredentials, HisRoute, HisTarget};
use crate::upstream::his::method_part;
use crate::upstream::with_credentials;

/// The name a `{name}`/`{method}` route URL is filled with for its one probe.
const REPRESENTATIVE_NAME: &str = "hospital.interface.createCard";
/// Largest WSDL read.
const MAX_WSDL_BYTES: usize = 8 << 20;
/// Operations listed when the configured one is missing from a WSDL.
const OPERATIONS_LISTED: usize = 8;

/// What one probe of a HIS URL found (several routes may share one URL: it is probed once).
#[derive(Debug, Clone)]
enum Probe {
    /// The HTTP route answered.
    Answered {
        status: u16,
        method: &'static str,
        ms: u128,
    },
    /// The SOAP service's WSDL, with the operations its port type lists.
    Wsdl {
        operations: BTreeSet<String>,
        imports: usize,
    },
    /// The port answers, but no usable WSDL came back.
    NoWsdl(String),
    /// Nothing answered.
    Failed(String),
}

/// One route's line to be: where it is probed, and what the verdict needs.
struct Planned<'a> {
    what: String,
    target: Result<Target, String>,
    route: &'a HisRoute,
    /// `None` for the `[his]` default route.
    name: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Target {
    Http(String),
    Wsdl(String),
}

pub(super) async fn his_checks(config: &Config) -> Vec<Check> {
    let his = &config.his;
    let mut routes: Vec<(String, &HisRoute, Option<&str>)> = Vec::new();
    if let Some(d) = &his.default {
        routes.push(("HIS route [his] (default)".to_string(), d, None));
    }
    let mut named: Vec<(&String, &HisRoute)> = his.routes.iter().collect();
    named.sort_by(|a, b| a.0.cmp(b.0));
    for (name, route) in named {
        routes.push((format!("HIS route {name}"), route, Some(name.as_str())));
    }
    // Every [[hospital]]'s own routes, in id order (one that has none uses those above).
    for (id, h) in &his.hospitals {
        if let Some(d) = &h.default {
            routes.push((format!("HIS route hospital {id} his (default)"), d, None));
        }
        let mut named: Vec<(&String, &HisRoute)> = h.routes.iter().collect();
        named.sort_by(|a, b| a.0.cmp(b.0));
        for (name, route) in named {
            routes.push((
                format!("HIS route hospital {id} {name}"),
                route,
                Some(name.as_str()),
            ));
        }
    }
    if routes.is_empty() {
        return vec![Check::warn(
            "HIS routes",
            "no [his] url, no [[his.route]] and no hospital's his or [[hospital.route]]: every \
             call from the cloud gets code 40003",
        )];
    }
    let client = match tokio::task::spawn_blocking(|| {
        crate::upstream::root_store(None)
            .and_then(|roots| crate::upstream::http_client(roots, CHECK_TIMEOUT))
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r)
    {
        Ok(c) => c,
        Err(e) => {
            return vec![Check::fail(
                "HIS routes",
                format!("cannot set up the client: {e}"),
            )]
        }
    };
    // The URL each route is probed at.
    let mut plan: Vec<Planned<'_>> = Vec::new();
    for (what, route, name) in routes {
        let target = match &route.target {
            HisTarget::Http { url } => {
                crate::upstream::his::http_url(url, name.unwrap_or(REPRESENTATIVE_NAME))
                    .map(|u| Target::Http(u.to_string()))
                    .map_err(|e| e.to_string())
            }
            HisTarget::Soap(t) => Ok(Target::Wsdl(t.url.clone())),
        };
        plan.push(Planned {
            what,
            target,
            route,
            name,
        });
    }
    // A URL is probed once per set of credentials its routes send (a HIS that wants them would
    // refuse a probe without them).
    let mut creds: Vec<&HisCredentials> = Vec::new();
    let mut probes = JoinSet::new();
    let mut started: Vec<(Target, usize)> = Vec::new();
    for p in &plan {
        if let Ok(t) = &p.target {
            let key = (t.clone(), cred_index(&mut creds, &p.route.credentials));
            if !started.contains(&key) {
                started.push(key.clone());
                let client = client.clone();
                let credentials = p.route.credentials.clone();
                probes.spawn(async move {
                    let found = match &key.0 {
                        Target::Http(u) => probe_http(&client, u, &credentials).await,
                        Target::Wsdl(u) => probe_wsdl(&client, u, &credentials).await,
                    };
                    (key, found)
                });
            }
        }
    }
    let mut found: HashMap<(Target, usize), Probe> = HashMap::new();
    while let Some(joined) = probes.join_next().await {
        if let Ok((t, p)) = joined {
            found.insert(t, p);
        }
    }
    plan.into_iter()
        .map(|p| match p.target {
            Err(e) => Check::fail(p.what, format!("the route's url is not usable: {e}")),
            Ok(t) => {
                let key = (t, cred_index(&mut creds, &p.route.credentials));
                let t = key.0.clone();
                let probe = found
                    .get(&key)
                    .cloned()
                    .unwrap_or_else(|| Probe::Failed("the probe did not finish".into()));
                route_verdict(p.what, &t, p.route, p.name, probe)
            }
        })
        .collect()
}

/// The index of `c` among the distinct credentials seen so far (added when new).
fn cred_index<'a>(creds: &mut Vec<&'a HisCredentials>, c: &'a HisCredentials) -> usize {
    creds.iter().position(|k| *k == c).unwrap_or_else(|| {
        creds.push(c);
        creds.len() - 1
    })
}

fn route_verdict(
    what: String,
    target: &Target,
    route: &HisRoute,
    name: Option<&str>,
    probe: Probe,
) -> Check {
    let url = match target {
        Target::Http(u) | Target::Wsdl(u) => reqwest::Url::parse(u)
            .map(|u| shown(&u))
            .unwrap_or_else(|_| u.clone()),
    };
    match probe {
        Probe::Failed(why) => Check::fail(what, format!("{url}: {why}")),
        Probe::Answered { status, method, ms } => Check::pass(
            what,
            format!("{url}: answered HTTP {status} to {method} in {ms} ms"),
        ),
        Probe::NoWsdl(why) => Check::warn(
            what,
            format!(
                "{url}: the port answers, but {why}; the operation could not be checked \
                 (ask the HIS vendor where the service's WSDL is)"
            ),
        ),
        Probe::Wsdl {
            operations,
            imports,
        } => {
            let operation = match &route.target {
                HisTarget::Soap(t) => t
                    .operation
                    .clone()
                    .or_else(|| name.map(|n| method_part(n).to_string())),
                HisTarget::Http { .. } => None,
            };
            let Some(op) = operation else {
                return Check::pass(
                    what,
                    format!(
                        "{url}?wsdl lists {} operations (each name calls the operation named \
                         by its last segment)",
                        operations.len()
                    ),
                );
            };
            if operations.contains(&op) {
                return Check::pass(
                    what,
                    format!(
                        "{url}?wsdl has operation `{op}` ({} operations)",
                        operations.len()
                    ),
                );
            }
            if operations.is_empty() && imports > 0 {
                return Check::warn(
                    what,
                    format!(
                        "{url}?wsdl imports its operations from another document: `{op}` was \
                         not checked"
                    ),
                );
            }
            let close = operations
                .iter()
                .find(|o| o.eq_ignore_ascii_case(&op))
                .map(|o| format!(" (did you mean `{o}`? names are case-sensitive)"))
                .unwrap_or_default();
            let mut listed: Vec<&str> = operations
                .iter()
                .take(OPERATIONS_LISTED)
                .map(String::as_str)
                .collect();
            if operations.len() > OPERATIONS_LISTED {
                listed.push("…");
            }
            let has = if operations.is_empty() {
                "it lists no operation".to_string()
            } else {
                format!("it has {} ({} in all)", listed.join(", "), operations.len())
            };
            Check::fail(
                what,
                format!(
                    "operation `{op}` is not in the WSDL at {url}?wsdl{close}; {has}: set \
                     `operation = \"…\"` in this route, or check its url"
                ),
            )
        }
    }
}

/// An HTTP route: TCP connect, then `HEAD`; a server that drops a `HEAD` without answering gets
/// a `POST {}` instead. Any HTTP answer passes.
async fn probe_http(client: &reqwest::Client, url: &str, credentials: &HisCredentials) -> Probe {
    let deadline = tokio::time::Instant::now() + CHECK_TIMEOUT;
    let Ok(url) = reqwest::Url::parse(url) else {
        return Probe::Failed("not a valid URL".into());
    };
    if let Err(why) = connect(&url, deadline).await {
        return Probe::Failed(why);
    }
    let hp = host_port(&url);
    let started = Instant::now();
    let head = tokio::time::timeout_at(
        deadline,
        with_credentials(client.head(url.clone()), credentials).send(),
    )
    .await;
    match head {
        Ok(Ok(resp)) => {
            return Probe::Answered {
                status: resp.status().as_u16(),
                method: "HEAD",
                ms: started.elapsed().as_millis(),
            }
        }
        Ok(Err(e)) if e.is_connect() => {
            return Probe::Failed(explain_request_error(&e, &hp));
        }
        Ok(Err(_)) => {}
        Err(_) => {
            return Probe::Failed(format!(
                "{hp} accepts connections but gave no HTTP answer to HEAD within {} s",
                CHECK_TIMEOUT.as_secs()
            ))
        }
    }
    let started = Instant::now();
    let post = with_credentials(client.post(url), credentials)
        .header("content-type", "application/json;charset=UTF-8")
        .body("{}")
        .send();
    match tokio::time::timeout_at(deadline, post).await {
        Ok(Ok(resp)) => Probe::Answered {
            status: resp.status().as_u16(),
            method: "POST {}",
            ms: started.elapsed().as_millis(),
        },
        Ok(Err(e)) => Probe::Failed(format!(
            "{hp} accepts connections but does not answer HTTP: {}",
            explain_request_error(&e, &hp)
        )),
        Err(_) => Probe::Failed(format!(
            "{hp} accepts connections but gave no HTTP answer within {} s",
            CHECK_TIMEOUT.as_secs()
        )),
    }
}

/// A SOAP route: `GET <url>?wsdl` and the operations in it.
async fn probe_wsdl(client: &reqwest::Client, url: &str, credentials: &HisCredentials) -> Probe {
    let deadline = tokio::time::Instant::now() + CHECK_TIMEOUT;
    let Ok(mut wsdl_url) = reqwest::Url::parse(url) else {
        return Probe::Failed("not a valid URL".into());
    };
    if let Err(why) = connect(&wsdl_url, deadline).await {
        return Probe::Failed(why);
    }
    let query = match wsdl_url.query() {
        Some(q) if !q.is_empty() => format!("{q}&wsdl"),
        _ => "wsdl".to_string(),
    };
    wsdl_url.set_query(Some(&query));
    let hp = host_port(&wsdl_url);
    let fetch = async {
        let mut resp = with_credentials(client.get(wsdl_url.clone()), credentials)
            .send()
            .await
            .map_err(|e| format!("GET ?wsdl failed: {}", explain_request_error(&e, &hp)))?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(format!("GET ?wsdl answered HTTP {status}"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| {
            format!(
                "reading the WSDL failed: {}",
                crate::upstream::error_root(&e)
            )
        })? {
            if body.len() + chunk.len() > MAX_WSDL_BYTES {
                return Err(format!(
                    "the answer to ?wsdl is larger than {} MiB",
                    MAX_WSDL_BYTES >> 20
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    let body = match tokio::time::timeout_at(deadline, fetch).await {
        Ok(Ok(b)) => b,
        Ok(Err(why)) => return Probe::NoWsdl(why),
        Err(_) => {
            return Probe::NoWsdl(format!(
                "no WSDL within {} s from GET ?wsdl",
                CHECK_TIMEOUT.as_secs()
            ))
        }
    };
    match crate::soap::wsdl::read(&body) {
        Ok(crate::soap::wsdl::Listed {
            operations,
            imports,
        }) => Probe::Wsdl {
            operations,
            imports,
        },
        Err(why) => Probe::NoWsdl(format!("the answer to ?wsdl {why}")),
    }
}
