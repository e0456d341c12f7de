//! `prefront queue …` and `prefront trail …` (DESIGN.md §8): the same output whether the gateway
//! runs or not. When the configuration has `[admin]` and something answers at its `listen`
//! address, they ask the running gateway's admin API (with the token of `[admin] token_file`);
//! otherwise they open the buffer and read the trail's files themselves. Either way the views
//! are the API's and the text comes from the same functions (`operator::render_*`,
//! `trail::query::render`).
//!
//! Part of the binary: it uses the library through `prefront::` only.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use prefront::buffer::operator::{
    self, Changed, MessageView, MessagesView, QueueView, Retried, MAX_PAGE,
};
use prefront::buffer::sled_store::SledOutbox;
use prefront::buffer::{DeadOrLive, OutboxError, RecordId, Route};
use prefront::config::Config;
use prefront::trail::query::{self, TrailView};
use reqwest::Method;
use serde::de::DeserializeOwned;

/// How long to wait for the admin listener to accept: it is on this machine (or its LAN).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// How long one API call may take (a trail search reads files).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Subcommand)]
pub enum QueueAction {
    /// Depth and oldest age per route, dead letters, disk use
    Stats,
    /// Queued records (or dead letters with --dead), oldest first, a page at a time
    List {
        #[arg(long)]
        dead: bool,
        /// Only this route, e.g. prefront/sendTipMessage/payment
        #[arg(long)]
        route: Option<String>,
        /// Most records on one page (1 to 1000)
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=MAX_PAGE as u64))]
        limit: u64,
        /// The next page: records after this id (what the last page said after `--after`)
        #[arg(long, value_name = "ID")]
        after: Option<RecordId>,
    },
    /// One record with its payload (patient data masked; --unmasked only on a stopped box)
    Show {
        id: RecordId,
        #[arg(long)]
        unmasked: bool,
    },
    /// Queue a dead letter again (or every one with --all-dead, of one route with --route)
    Retry {
        #[arg(required_unless_present = "all_dead")]
        id: Option<RecordId>,
        #[arg(long, conflicts_with = "id")]
        all_dead: bool,
        /// With --all-dead: only this route's dead letters
        #[arg(long, conflicts_with = "id")]
        route: Option<String>,
    },
    /// Delete a record, queued or dead, for good
    Drop { id: RecordId },
    /// Put every intact record of an old or moved-aside store (read as bytes, even if it cannot
    /// be opened) into the buffer, in order; says how many were salvaged and lost. Needs the
    /// gateway stopped.
    Salvage { path: PathBuf },
}

#[derive(Args)]
pub struct TrailArgs {
    /// One call, by its request id (X-Request-Id, the `request_id` of its log line)
    #[arg(long, value_name = "ID")]
    request_id: Option<String>,
    /// A business key as the catalogue spells it, e.g. refundNo=RF-1
    #[arg(long)]
    key: Option<String>,
    /// Only this route, e.g. prefront/sendTipMessage/payment
    #[arg(long)]
    route: Option<String>,
    /// Only calls in this state: ok, queued, delivered, dead-lettered, dropped, expired, … (audit:
    /// operators' actions)
    #[arg(long)]
    outcome: Option<String>,
    /// From this time: RFC 3339 (2026-12-06T08:00:00+08:00) or an age (30m, 2h, 7d)
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Up to this time, as --since
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Most entries (1 to 1000) [default: 100]
    #[arg(long)]
    limit: Option<u64>,
    /// Print the admin API's JSON (`{"entries":[…]}`) instead of text
    #[arg(long)]
    json: bool,
}

impl TrailArgs {
    /// The query as `GET /api/trail` takes it.
    fn pairs(&self) -> Vec<(String, String)> {
        let text = [
            ("request_id", &self.request_id),
            ("key", &self.key),
            ("route", &self.route),
            ("outcome", &self.outcome),
            ("since", &self.since),
            ("until", &self.until),
        ];
        let mut pairs: Vec<(String, String)> = text
            .into_iter()
            .filter_map(|(name, v)| v.as_ref().map(|v| (name.to_string(), v.clone())))
            .collect();
        if let Some(n) = self.limit {
            pairs.push(("limit".into(), n.to_string()));
        }
        pairs
    }
}

/// `prefront queue …`: the text to print, or what went wrong.
pub fn queue(config: &Config, action: QueueAction) -> Result<String, String> {
    match Api::find(config)? {
        Some(api) => queue_live(&api, action),
        None => queue_stopped(config, action),
    }
}

/// `prefront trail …`: the running gateway's API, else the trail's files; the same entries.
pub fn trail(config: &Config, args: TrailArgs) -> Result<String, String> {
    let pairs = args.pairs();
    let view = match Api::find(config)? {
        Some(api) => api.call::<TrailView>(Method::GET, "/api/trail", &pairs)?,
        None => {
            let filter = prefront::listener::admin::trail_query(&pairs)?;
            let dir = &config.trail.path;
            if !dir.exists() {
                eprintln!("no trail at {} (nothing was written yet)", dir.display());
            }
            TrailView {
                entries: query::query(dir, &filter),
            }
        }
    };
    if args.json {
        serde_json::to_string(&view)
            .map(|s| s + "\n")
            .map_err(|e| e.to_string())
    } else {
        Ok(query::render(&view.entries))
    }
}

fn queue_live(api: &Api, action: QueueAction) -> Result<String, String> {
    match action {
        QueueAction::Stats => api
            .call::<QueueView>(Method::GET, "/api/queue", &[])
            .map(|q| operator::render_queue(&q)),
        QueueAction::List {
            dead,
            route,
            limit,
            after,
        } => {
            let mut q = vec![
                ("dead".to_string(), dead.to_string()),
                ("limit".to_string(), limit.to_string()),
            ];
            q.extend(route.map(|r| ("route".to_string(), r)));
            q.extend(after.map(|a| ("after".to_string(), a.to_string())));
            api.call::<MessagesView>(Method::GET, "/api/queue/messages", &q)
                .map(|v| operator::render_messages(&v, dead))
        }
        QueueAction::Show { unmasked: true, .. } => Err(
            "the gateway is running: --unmasked reads the payload from the store, which only a \
             stopped gateway lets go of (its API never hands out patient data unmasked). \
             Without --unmasked this shows the payload masked; to see it as sent, stop the \
             gateway first (systemctl stop prefront)."
                .into(),
        ),
        QueueAction::Show { id, .. } => api
            .call::<MessageView>(Method::GET, &format!("/api/queue/messages/{id}"), &[])
            .map(|m| operator::render_message(&m, None)),
        QueueAction::Retry { id: Some(id), .. } => api
            .call::<Changed>(
                Method::POST,
                &format!("/api/queue/messages/{id}/retry"),
                &[],
            )
            .map(|c| operator::render_changed(&c)),
        QueueAction::Retry { route, .. } => {
            let q: Vec<(String, String)> = route
                .map(|r| ("route".to_string(), r))
                .into_iter()
                .collect();
            api.call::<Retried>(Method::POST, "/api/queue/retry-dead", &q)
                .map(|r| operator::render_retried(&r))
        }
        QueueAction::Drop { id } => api
            .call::<Changed>(Method::DELETE, &format!("/api/queue/messages/{id}"), &[])
            .map(|c| operator::render_changed(&c)),
        QueueAction::Salvage { .. } => Err(format!(
            "the gateway is running (its admin API answers at {}): salvage needs it stopped, \
             because it writes into the buffer the gateway holds. Stop it (systemctl stop \
             prefront), run the salvage, then start it again.",
            api.base
        )),
    }
}

/// The text the API answers for a missing message, so both ways read alike.
fn store_error(e: OutboxError) -> String {
    match e {
        OutboxError::NotFound(id) => format!("no such message {id}"),
        other => other.to_string(),
    }
}

/// A route as the operator writes it (the catalogue path) or as stored (`cloud:…`): as stored.
fn stored_route(r: &str) -> String {
    if r.starts_with(Route::CLOUD_PREFIX) {
        r.to_string()
    } else {
        Route::cloud(r.trim_start_matches('/')).as_str().to_string()
    }
}

fn queue_stopped(config: &Config, action: QueueAction) -> Result<String, String> {
    let b = &config.buffer;
    let salvage = matches!(action, QueueAction::Salvage { .. });
    if !b.path.exists() && !salvage {
        return Ok(format!(
            "no buffer at {} (nothing was ever queued)\n",
            b.path.display()
        ));
    }
    // Checked as the gateway checks it at start: sled's own recovery would overwrite the bytes
    // a salvage of a damaged store needs.
    let outbox = match SledOutbox::open_checked(&b.path, b.max_bytes, b.result_ttl) {
        Ok(o) => o,
        Err(e) => {
            let why = match (&config.admin, salvage) {
                (_, true) => "if the gateway is running, it holds the buffer: salvage needs it \
                              stopped (systemctl stop prefront), then run this again"
                    .to_string(),
                (None, false) => "if the gateway is running, it holds the buffer, and the \
                                  configuration has no [admin] for this command to ask it \
                                  through: add `[admin] listen = \"127.0.0.1:9090\"` (and \
                                  restart it), or stop it first (systemctl stop prefront)"
                    .to_string(),
                (Some(a), false) => format!(
                    "if the gateway is running, it holds the buffer, and nothing answers at \
                     [admin] listen ({}): is it the configuration the gateway runs with? Or \
                     stop it first (systemctl stop prefront)",
                    a.listen
                ),
            };
            return Err(format!(
                "cannot open the buffer at {}: {e}\n{why}",
                b.path.display()
            ));
        }
    };
    if let Some(r) = outbox.salvage_report() {
        eprintln!(
            "the buffer was damaged ({}): moved to {}; {} record(s) salvaged into a new store, {} lost",
            r.reason, r.moved_to, r.salvaged, r.lost
        );
    }
    match action {
        QueueAction::Stats => operator::queue(&outbox, b.max_bytes)
            .map(|q| operator::render_queue(&q))
            .map_err(store_error),
        QueueAction::List {
            dead,
            route,
            limit,
            after,
        } => {
            let route = route.as_deref().map(stored_route);
            operator::messages(&outbox, dead, route.as_deref(), after, limit as usize)
                .map(|v| operator::render_messages(&v, dead))
                .map_err(store_error)
        }
        QueueAction::Show { id, unmasked } => {
            let m = operator::message(&outbox, id).map_err(store_error)?;
            let body = if unmasked {
                Some(operator::unmasked_body(&outbox, id).map_err(store_error)?)
            } else {
                None
            };
            Ok(operator::render_message(&m, body.as_deref()))
        }
        QueueAction::Retry { id: Some(id), .. } => {
            // As the API answers (409): only a dead letter can be queued again.
            if let Ok(Some(DeadOrLive::Live(_))) = prefront::buffer::Outbox::get(&outbox, id) {
                return Err(format!(
                    "message {id} is queued, not dead: nothing to retry"
                ));
            }
            operator::retry(&outbox, id)
                .map(|c| operator::render_changed(&c))
                .map_err(store_error)
        }
        QueueAction::Retry { route, .. } => {
            let route = route.as_deref().map(stored_route);
            operator::retry_dead(&outbox, route.as_deref())
                .map(|(r, _)| operator::render_retried(&r))
                .map_err(store_error)
        }
        QueueAction::Drop { id } => operator::drop_message(&outbox, id)
            .map(|c| operator::render_changed(&c))
            .map_err(store_error),
        QueueAction::Salvage { path } => {
            if path == b.path {
                return Err(format!(
                    "{} is the buffer itself: name an old or moved-aside store (buffer.corrupt-*)",
                    path.display()
                ));
            }
            outbox
                .salvage_from(&path, None, true)
                .map(|r| {
                    format!(
                        "{}: {} record(s) salvaged into {}, {} acknowledged record(s) lost\n",
                        path.display(),
                        r.salvaged,
                        b.path.display(),
                        r.lost
                    )
                })
                .map_err(store_error)
        }
    }
}

/// The running gateway's admin API.
struct Api {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    /// `http://127.0.0.1:9090`
    base: String,
    /// From `[admin] token_file`, sent as `Authorization: Bearer …`.
    token: Option<String>,
}

/// The address to reach a listener on from this machine: loopback for a wildcard address.
fn reachable(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

impl Api {
    /// The API of the gateway running with this configuration: `None` when the configuration
    /// has no `[admin]` or nothing answers at its address (then the files are read instead).
    fn find(config: &Config) -> Result<Option<Api>, String> {
        let Some(admin) = &config.admin else {
            return Ok(None);
        };
        let addr = reachable(admin.listen);
        if addr.port() == 0 || TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).is_err() {
            return Ok(None);
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the async runtime: {e}"))?;
        let client = {
            let _inside = runtime.enter();
            // Plain HTTP to an address, never a name: no TLS roots, no resolver needed.
            prefront::upstream::client_builder(rustls::RootCertStore::empty(), CONNECT_TIMEOUT)?
                .timeout(CALL_TIMEOUT)
                .build()
                .map_err(|e| format!("cannot make an HTTP client: {e}"))?
        };
        Ok(Some(Api {
            runtime,
            client,
            base: format!("http://{addr}"),
            token: admin.token.as_ref().map(|t| t.0.clone()),
        }))
    }

    /// One call; its JSON answer as `T`, or the API's `{"error"}` as a sentence.
    fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(String, String)],
    ) -> Result<T, String> {
        let mut url = format!("{}{path}", self.base);
        if !query.is_empty() {
            url.push('?');
            url.push_str(
                &form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(query)
                    .finish(),
            );
        }
        let (status, body) = self.runtime.block_on(async {
            let mut req = self.client.request(method, &url);
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.map_err(|e| {
                format!(
                    "the gateway's admin API at {} did not answer {path}: {} (is this machine's \
                     address in [admin] allow?)",
                    self.base,
                    prefront::upstream::error_root(&e)
                )
            })?;
            let status = resp.status().as_u16();
            let body = resp.text().await.map_err(|e| {
                format!(
                    "the gateway's answer to {path} broke off: {}",
                    prefront::upstream::error_root(&e)
                )
            })?;
            Ok::<_, String>((status, body))
        })?;
        if (200..300).contains(&status) {
            return serde_json::from_str(&body).map_err(|e| {
                format!(
                    "the gateway's answer to {path} is not what this version of prefront reads \
                     ({e}): are the gateway and this command the same version?"
                )
            });
        }
        let said = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error")?.as_str().map(str::to_string));
        let said = said.unwrap_or_else(|| format!("HTTP {status}"));
        Err(match status {
            401 if self.token.is_some() => format!(
                "the gateway refused the call (HTTP 401): {said}\nthis command sent the token of \
                 [admin] token_file; if the file changed, the running gateway still has the old \
                 one: restart it"
            ),
            401 => format!(
                "the gateway refused the call (HTTP 401): {said}\nthe configuration this command \
                 read has no [admin] token_file: run it with the configuration the gateway runs \
                 with (--config)"
            ),
            400 | 404 | 409 => said,
            _ => format!("the gateway answered HTTP {status}: {said}"),
        })
    }
}
