//! Wiring: build the upstream clients and listeners from a `Config`, run them, and drain them
//! with a deadline on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::buffer::forwarder::Forwarders;
use crate::buffer::sled_store::SledOutbox;
use crate::buffer::Outbox;
use crate::config::{Config, ListenerConfig};
use crate::listener::allowlist::AccessPolicy;
use crate::listener::{tls, Listener, ListenerTls, Live, Side, State};
use crate::upstream::{cloud::Cloud, his::His};

/// How long in-flight calls may take to finish after a shutdown signal.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// Re-reads the configuration into a running gateway (SIGHUP).
#[derive(Debug, Clone)]
pub struct Reloader {
    live: Arc<Live>,
}

impl Reloader {
    /// Puts `config` in force for every new call: allowlists, body limits, TLS certificates,
    /// HIS routes and `[[hospital]]` tables (a HIS target both configurations name keeps its
    /// link state),
    /// `[[cloud.route]]` delivery, `[pacs]`. What needs new sockets or a new store
    /// (listen addresses, a `[files_listener]` added or removed, `[cloud]` connection settings,
    /// `[buffer]`, `[admin]`, log level) keeps its old value; each such difference is returned
    /// as a line to log. Certificates that do not load refuse the whole reload, and the old
    /// configuration stays in force.
    pub fn reload(&self, mut config: Config) -> Result<Vec<String>, StartError> {
        let old = self.live.current();
        let mut kept = Vec::new();
        let o = &old.config;
        if config.his_listener.listen != o.his_listener.listen {
            kept.push("his_listener.listen".to_string());
            config.his_listener.listen = o.his_listener.listen;
        }
        if config.cloud_listener.listen != o.cloud_listener.listen {
            kept.push("cloud_listener.listen".to_string());
            config.cloud_listener.listen = o.cloud_listener.listen;
        }
        // A files listener that appears or goes away needs a restart too: the one running keeps
        // its whole section (its public_url is the links' address); one that stays reloads all
        // but its address.
        match (&mut config.files_listener, &o.files_listener) {
            (Some(n), Some(f)) if n.listen != f.listen => {
                kept.push("files_listener.listen".to_string());
                n.listen = f.listen;
            }
            (Some(_), None) | (None, Some(_)) => {
                kept.push("[files_listener]".to_string());
                config.files_listener = o.files_listener.clone();
            }
            _ => {}
        }
        if config.admin.as_ref().map(|a| a.listen) != o.admin.as_ref().map(|a| a.listen) {
            kept.push("admin.listen".to_string());
            match (&mut config.admin, &o.admin) {
                (Some(n), Some(a)) => n.listen = a.listen,
                (n, a) => *n = a.clone(),
            }
        }
        let (nc, oc) = (&config.cloud, &o.cloud);
        if nc.base_url != oc.base_url
            || nc.ca != oc.ca
            || nc.timeout != oc.timeout
            || nc.connect_timeout != oc.connect_timeout
            || nc.max_response != oc.max_response
            || nc.proxy != oc.proxy
        {
            kept.push("[cloud] base_url/ca/timeouts/max_response/proxy".to_string());
            let delivery = std::mem::take(&mut config.cloud.delivery);
            config.cloud = o.cloud.clone();
            config.cloud.delivery = delivery;
        }
        if format!("{:?}", config.buffer) != format!("{:?}", o.buffer) {
            kept.push("[buffer]".to_string());
            config.buffer = o.buffer.clone();
        }
        if format!("{:?}", config.trail) != format!("{:?}", o.trail) {
            kept.push("[trail]".to_string());
            config.trail = o.trail.clone();
        }
        if config.auth != o.auth {
            // The box's own calls are signed by the cloud client, which lives on.
            kept.push("[auth]".to_string());
            config.auth = o.auth.clone();
        }
        if config.log.level != o.log.level {
            kept.push("[log] level".to_string());
            config.log.level = o.log.level.clone();
        }
        let acceptor = |listener: &'static str, l: &ListenerConfig| listener_tls(listener, l);
        let his_tls = acceptor("his_listener", &config.his_listener)?;
        let cloud_tls = acceptor("cloud_listener", &config.cloud_listener)?;
        let files_tls = files_tls(&config)?;
        // A HIS target the old configuration had too keeps its link state.
        let his =
            His::keeping(&config.his, Some(&old.his)).map_err(|e| StartError::Client("HIS", e))?;
        let pacs = crate::pacs::Pacs::new(&config, true)?;
        let state = Arc::new(State {
            cloud: old.cloud.clone(),
            outbox: old.outbox.clone(),
            forwarders: old.forwarders.clone(),
            his,
            pacs,
            his_policy: policy(&config.his_listener),
            cloud_policy: policy(&config.cloud_listener),
            admin_policy: admin_policy(&config),
            files_policy: files_policy(&config),
            his_tls: his_tls.map(ListenerTls),
            cloud_tls: cloud_tls.map(ListenerTls),
            files_tls: files_tls.map(ListenerTls),
            // The same replay memory across the reload.
            verifier: old.verifier.clone(),
            config,
        });
        self.live.replace(state);
        Ok(kept)
    }
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr} ({listener}): {source}")]
    Bind {
        listener: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{listener} TLS: {source}")]
    Tls {
        listener: &'static str,
        source: tls::TlsError,
    },
    #[error("{0} client: {1}")]
    Client(&'static str, String),
    #[error("{0}")]
    Pacs(#[from] crate::pacs::PacsError),
    #[error("buffer at {path}: {source}")]
    Buffer {
        path: String,
        source: crate::buffer::OutboxError,
    },
    #[error("cannot start the connection workers: {0}")]
    Runtime(String),
}

/// A gateway whose sockets are bound, ready to run. Binding first lets a caller (and a test on
/// port 0) learn the real addresses before traffic starts.
pub struct Gateway {
    live: Arc<Live>,
    /// The message trail's writer (flushed when the gateway stops).
    trail: Option<crate::trail::Writer>,
    listeners: Vec<Listener>,
    workers: Arc<crate::workers::Workers>,
}

impl Gateway {
    /// Checks everything that can fail at start (certificates, trust roots) and binds both
    /// listeners.
    pub async fn bind(config: Config) -> Result<Gateway, StartError> {
        // Uptime counts from here.
        let _ = crate::telemetry::metrics::uptime();
        // Only the ring provider is compiled in; make it the process default for any rustls user.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let prepared = prepare(&config, true)?;
        let buffer = &config.buffer;
        // A damaged store is moved aside and salvaged (and says so in the log) inside.
        let outbox = SledOutbox::open_checked(&buffer.path, buffer.max_bytes, buffer.result_ttl)
            .map_err(|source| StartError::Buffer {
                path: buffer.path.display().to_string(),
                source,
            })?;
        outbox.set_dead_ttl(buffer.dead_ttl);
        let outbox: Arc<dyn Outbox> = Arc::new(outbox);
        let forwarders = Forwarders::new(outbox.clone(), prepared.cloud.clone(), buffer.clone());
        let his_tcp = bind("his_listener", config.his_listener.listen).await?;
        let cloud_tcp = bind("cloud_listener", config.cloud_listener.listen).await?;
        let files_tcp = match &config.files_listener {
            Some(f) => Some(bind("files_listener", f.listen).await?),
            None => None,
        };
        let admin_tcp = match &config.admin {
            Some(a) => Some(bind("admin", a.listen).await?),
            None => None,
        };
        let state_config_trail = config.trail.clone();
        let state = Arc::new(State {
            outbox: crate::buffer::AsyncOutbox::new(outbox),
            forwarders,
            his_policy: policy(&config.his_listener),
            cloud_policy: policy(&config.cloud_listener),
            admin_policy: admin_policy(&config),
            files_policy: files_policy(&config),
            his_tls: prepared.his_tls.map(ListenerTls),
            cloud_tls: prepared.cloud_tls.map(ListenerTls),
            files_tls: prepared.files_tls.map(ListenerTls),
            verifier: verifier(&config),
            cloud: prepared.cloud,
            his: prepared.his,
            pacs: prepared.pacs,
            config,
        });
        let mut listeners = vec![
            Listener {
                side: Side::His,
                tcp: his_tcp,
            },
            Listener {
                side: Side::Cloud,
                tcp: cloud_tcp,
            },
        ];
        if let Some(tcp) = files_tcp {
            listeners.push(Listener {
                side: Side::Files,
                tcp,
            });
        }
        if let Some(tcp) = admin_tcp {
            listeners.push(Listener {
                side: Side::Admin,
                tcp,
            });
        }
        let live = Arc::new(Live::new(state));
        let workers = crate::workers::Workers::start(crate::workers::count())
            .map_err(|e| StartError::Runtime(e.to_string()))?;
        Ok(Gateway {
            trail: crate::trail::Writer::start(&state_config_trail),
            live,
            listeners,
            workers: Arc::new(workers),
        })
    }

    pub fn his_addr(&self) -> SocketAddr {
        self.addr(Side::His)
    }

    pub fn cloud_addr(&self) -> SocketAddr {
        self.addr(Side::Cloud)
    }

    /// A handle that reloads the configuration while the gateway runs.
    pub fn reloader(&self) -> Reloader {
        Reloader {
            live: self.live.clone(),
        }
    }

    /// The admin listener's address, if `[admin]` is configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.optional_addr(Side::Admin)
    }

    /// The files listener's address, if `[files_listener]` is configured.
    pub fn files_addr(&self) -> Option<SocketAddr> {
        self.optional_addr(Side::Files)
    }

    fn optional_addr(&self, side: Side) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .any(|l| l.side == side)
            .then(|| self.addr(side))
    }

    fn addr(&self, side: Side) -> SocketAddr {
        self.listeners
            .iter()
            .find(|l| l.side == side)
            .and_then(|l| l.tcp.local_addr().ok())
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Serves until `shutdown` completes, then drains in-flight calls for at most
    /// `DRAIN_DEADLINE`.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let state = self.live.current();
        let (tx, rx) = tokio::sync::watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        for l in self.listeners {
            let addr = l
                .tcp
                .local_addr()
                .map_or_else(|_| "?".to_string(), |a| a.to_string());
            let tls = state.tls(l.side).is_some();
            let scheme = if tls { "https" } else { "http" };
            match l.side {
                Side::His => {
                    tracing::info!(listener = "his", addr = %addr, scheme, "listening for the HIS: POST /prefront/<path>")
                }
                Side::Cloud => {
                    tracing::info!(listener = "cloud", addr = %addr, scheme, "listening for the cloud: POST /his/<name>")
                }
                Side::Files => {
                    tracing::info!(listener = "files", addr = %addr, scheme, "listening for patients' phones: GET /files/<token> only")
                }
                Side::Admin => {
                    tracing::info!(listener = "admin", addr = %addr, scheme, "admin: GET /status, /healthz, /readyz, /metrics")
                }
            }
            if l.side == Side::Cloud && !tls {
                tracing::warn!(
                    listener = "cloud",
                    addr = %addr,
                    "THE CLOUD LISTENER SPEAKS PLAIN HTTP (no tls_cert/tls_key): calls from the internet are not encrypted; use this only on a test bench"
                );
            }
            tasks.spawn(l.run(
                self.live.clone(),
                self.workers.clone(),
                rx.clone(),
                DRAIN_DEADLINE,
            ));
        }
        let cloud = state.cloud.clone();
        tasks.spawn(cloud.link.clone().run_prober(
            move || {
                let cloud = cloud.clone();
                async move { cloud.probe().await }
            },
            state.config.buffer.retry_min,
            state.config.buffer.retry_max.min(Duration::from_secs(30)),
            rx.clone(),
        ));
        tasks.spawn(state.forwarders.clone().run(rx.clone()));
        shutdown.await;
        tracing::info!("shutting down: no new connections; draining in-flight calls");
        let _ = tx.send(true);
        while tasks.join_next().await.is_some() {}
        // The last second of the trail is written before the process ends.
        drop(self.trail);
        tracing::info!("stopped");
    }
}

/// Starts the gateway with `config` and serves until `shutdown` completes.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    Gateway::bind(config).await?.run(shutdown).await;
    Ok(())
}

struct Prepared {
    cloud: Cloud,
    his: His,
    pacs: crate::pacs::Pacs,
    his_tls: Option<TlsAcceptor>,
    cloud_tls: Option<TlsAcceptor>,
    files_tls: Option<TlsAcceptor>,
}

/// Everything `bind` builds before touching a socket; `prefront check` runs it too.
fn prepare(config: &Config, for_real: bool) -> Result<Prepared, StartError> {
    Ok(Prepared {
        his_tls: listener_tls("his_listener", &config.his_listener)?,
        cloud_tls: listener_tls("cloud_listener", &config.cloud_listener)?,
        files_tls: files_tls(config)?,
        cloud: Cloud::new(&config.cloud, config.auth.as_ref())
            .map_err(|e| StartError::Client("cloud", e))?,
        his: His::new(&config.his).map_err(|e| StartError::Client("HIS", e))?,
        pacs: crate::pacs::Pacs::new(config, for_real)?,
    })
}

/// Checks what a start would check, without binding: certificates, keys, trust roots.
pub fn preflight(config: &Config) -> Result<(), StartError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    prepare(config, false).map(|_| ())
}

async fn bind(listener: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            listener,
            addr,
            source,
        })
}

fn listener_tls(
    listener: &'static str,
    l: &ListenerConfig,
) -> Result<Option<TlsAcceptor>, StartError> {
    l.tls
        .as_ref()
        .map(|files| {
            tls::server_config(files)
                .map(TlsAcceptor::from)
                .map_err(|source| StartError::Tls { listener, source })
        })
        .transpose()
}

fn files_tls(config: &Config) -> Result<Option<TlsAcceptor>, StartError> {
    match &config.files_listener {
        Some(l) => listener_tls("files_listener", l),
        None => Ok(None),
    }
}

fn verifier(config: &Config) -> Option<Arc<crate::auth::Signer>> {
    config.auth.as_ref().map(|a| {
        Arc::new(crate::auth::Signer::verifier(
            a.secret.0.as_bytes(),
            a.max_skew,
            crate::auth::unix_now(),
        ))
    })
}

fn admin_policy(config: &Config) -> Arc<AccessPolicy> {
    Arc::new(AccessPolicy::new(
        config
            .admin
            .as_ref()
            .map(|a| a.allow.clone())
            .unwrap_or_default(),
        Vec::new(),
    ))
}

/// Without `[files_listener]` nothing is bound; the empty list refuses everyone all the same.
fn files_policy(config: &Config) -> Arc<AccessPolicy> {
    match &config.files_listener {
        Some(l) => policy(l),
        None => Arc::new(AccessPolicy::new(Vec::new(), Vec::new())),
    }
}

fn policy(l: &ListenerConfig) -> Arc<AccessPolicy> {
    Arc::new(AccessPolicy::new(
        l.allow.clone(),
        l.trusted_proxies.clone(),
    ))
}
