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
use crate::listener::{tls, Listener, Side};
use crate::upstream::{cloud::Cloud, his::His};

/// How long in-flight calls may take to finish after a shutdown signal.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// What every request handler shares.
#[derive(Debug)]
pub struct State {
    pub config: Config,
    pub cloud: Cloud,
    /// The durable buffer for calls that wait out an outage.
    pub outbox: Arc<dyn Outbox>,
    /// The delivery side of the buffer.
    pub forwarders: Arc<Forwarders>,
    pub his: His,
    /// PACS images, report files and link rewriting.
    pub pacs: crate::pacs::Pacs,
    pub his_policy: Arc<AccessPolicy>,
    pub cloud_policy: Arc<AccessPolicy>,
    pub admin_policy: Arc<AccessPolicy>,
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
}

/// A gateway whose sockets are bound, ready to run. Binding first lets a caller (and a test on
/// port 0) learn the real addresses before traffic starts.
pub struct Gateway {
    state: Arc<State>,
    listeners: Vec<Listener>,
}

impl Gateway {
    /// Checks everything that can fail at start (certificates, trust roots) and binds both
    /// listeners.
    pub async fn bind(config: Config) -> Result<Gateway, StartError> {
        // Only the ring provider is compiled in; make it the process default for any rustls user.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let prepared = prepare(&config, true)?;
        let buffer = &config.buffer;
        let (outbox, moved) =
            SledOutbox::open_or_move_aside(&buffer.path, buffer.max_bytes, buffer.result_ttl)
                .map_err(|source| StartError::Buffer {
                    path: buffer.path.display().to_string(),
                    source,
                })?;
        if let Some(aside) = moved {
            tracing::error!(
                path = %buffer.path.display(),
                moved_to = %aside.display(),
                "the buffer store could not be opened: it was moved aside and a new one started; \
                 the old records are kept there for inspection"
            );
        }
        let outbox: Arc<dyn Outbox> = Arc::new(outbox);
        let forwarders = Forwarders::new(outbox.clone(), prepared.cloud.clone(), buffer.clone());
        let his_tcp = bind("his_listener", config.his_listener.listen).await?;
        let cloud_tcp = bind("cloud_listener", config.cloud_listener.listen).await?;
        let admin_tcp = match &config.admin {
            Some(a) => Some(bind("admin", a.listen).await?),
            None => None,
        };
        let state = Arc::new(State {
            outbox,
            forwarders,
            his_policy: policy(&config.his_listener),
            cloud_policy: policy(&config.cloud_listener),
            admin_policy: Arc::new(AccessPolicy::new(
                config
                    .admin
                    .as_ref()
                    .map(|a| a.allow.clone())
                    .unwrap_or_default(),
                Vec::new(),
            )),
            cloud: prepared.cloud,
            his: prepared.his,
            pacs: prepared.pacs,
            config,
        });
        let mut listeners = vec![
            Listener {
                side: Side::His,
                tcp: his_tcp,
                tls: prepared.his_tls,
                policy: state.his_policy.clone(),
            },
            Listener {
                side: Side::Cloud,
                tcp: cloud_tcp,
                tls: prepared.cloud_tls,
                policy: state.cloud_policy.clone(),
            },
        ];
        if let Some(tcp) = admin_tcp {
            listeners.push(Listener {
                side: Side::Admin,
                tcp,
                tls: None,
                policy: state.admin_policy.clone(),
            });
        }
        Ok(Gateway { state, listeners })
    }

    pub fn his_addr(&self) -> SocketAddr {
        self.addr(Side::His)
    }

    pub fn cloud_addr(&self) -> SocketAddr {
        self.addr(Side::Cloud)
    }

    /// The admin listener's address, if `[admin]` is configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .any(|l| l.side == Side::Admin)
            .then(|| self.addr(Side::Admin))
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
        let (tx, rx) = tokio::sync::watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        for l in self.listeners {
            let addr = l
                .tcp
                .local_addr()
                .map_or_else(|_| "?".to_string(), |a| a.to_string());
            let scheme = if l.tls.is_some() { "https" } else { "http" };
            match l.side {
                Side::His => {
                    tracing::info!(listener = "his", addr = %addr, scheme, "listening for the HIS: POST /prefront/<path>")
                }
                Side::Cloud => {
                    tracing::info!(listener = "cloud", addr = %addr, scheme, "listening for the cloud: POST /his/<name>")
                }
                Side::Admin => {
                    tracing::info!(listener = "admin", addr = %addr, scheme, "admin: GET /healthz, /readyz, /metrics")
                }
            }
            if l.side == Side::Cloud && l.tls.is_none() {
                tracing::warn!(
                    listener = "cloud",
                    addr = %addr,
                    "THE CLOUD LISTENER SPEAKS PLAIN HTTP (no tls_cert/tls_key): calls from the internet are not encrypted; use this only on a test bench"
                );
            }
            tasks.spawn(l.run(self.state.clone(), rx.clone(), DRAIN_DEADLINE));
        }
        let cloud = self.state.cloud.clone();
        tasks.spawn(
            cloud.link.clone().run_prober(
                move || {
                    let cloud = cloud.clone();
                    async move { cloud.probe().await }
                },
                self.state.config.buffer.retry_min,
                self.state
                    .config
                    .buffer
                    .retry_max
                    .min(Duration::from_secs(30)),
                rx.clone(),
            ),
        );
        tasks.spawn(self.state.forwarders.clone().run(rx.clone()));
        shutdown.await;
        tracing::info!("shutting down: no new connections; draining in-flight calls");
        let _ = tx.send(true);
        while tasks.join_next().await.is_some() {}
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
}

/// Everything `bind` builds before touching a socket; `prefront check` runs it too.
fn prepare(config: &Config, for_real: bool) -> Result<Prepared, StartError> {
    let acceptor =
        |listener: &'static str, l: &ListenerConfig| -> Result<Option<TlsAcceptor>, StartError> {
            l.tls
                .as_ref()
                .map(|files| {
                    tls::server_config(files)
                        .map(TlsAcceptor::from)
                        .map_err(|source| StartError::Tls { listener, source })
                })
                .transpose()
        };
    Ok(Prepared {
        his_tls: acceptor("his_listener", &config.his_listener)?,
        cloud_tls: acceptor("cloud_listener", &config.cloud_listener)?,
        cloud: Cloud::new(&config.cloud).map_err(|e| StartError::Client("cloud", e))?,
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

fn policy(l: &ListenerConfig) -> Arc<AccessPolicy> {
    Arc::new(AccessPolicy::new(
        l.allow.clone(),
        l.trusted_proxies.clone(),
    ))
}
