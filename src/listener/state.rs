//! What every request handler shares, and the state in force (a reload swaps it whole).

use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::TlsAcceptor;

use super::allowlist::AccessPolicy;
use super::Side;
use crate::buffer::forwarder::Forwarders;
use crate::buffer::AsyncOutbox;
use crate::config::Config;
use crate::upstream::{cloud::Cloud, his::His};

/// What every request handler shares.
#[derive(Debug)]
pub struct State {
    pub config: Config,
    pub cloud: Cloud,
    /// The durable buffer for calls that wait out an outage.
    pub outbox: AsyncOutbox,
    /// The delivery side of the buffer.
    pub forwarders: Arc<Forwarders>,
    pub his: His,
    /// PACS images, report files and link rewriting.
    pub pacs: crate::pacs::Pacs,
    pub his_policy: Arc<AccessPolicy>,
    pub cloud_policy: Arc<AccessPolicy>,
    pub admin_policy: Arc<AccessPolicy>,
    /// `[files_listener]`'s allowlist (refuses everyone when there is no such listener).
    pub files_policy: Arc<AccessPolicy>,
    /// TLS for the listeners that have a certificate (reloaded with the config).
    pub his_tls: Option<ListenerTls>,
    pub cloud_tls: Option<ListenerTls>,
    pub files_tls: Option<ListenerTls>,
    /// Checks the cloud's signed calls when `[auth]` is set.
    pub verifier: Option<Arc<crate::auth::Signer>>,
}

/// A listener's TLS acceptor (its certificate and settings).
#[derive(Clone)]
pub struct ListenerTls(pub TlsAcceptor);

impl std::fmt::Debug for ListenerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ListenerTls")
    }
}

impl State {
    /// The allowlist of a listener.
    pub fn policy(&self, side: Side) -> &Arc<AccessPolicy> {
        match side {
            Side::His => &self.his_policy,
            Side::Cloud => &self.cloud_policy,
            Side::Admin => &self.admin_policy,
            Side::Files => &self.files_policy,
        }
    }

    /// The connection limits of a listener.
    pub fn limits(&self, side: Side) -> super::Limits {
        let fixed = || super::Limits {
            max_connections: 64,
            max_per_peer: 64,
            idle_timeout: Duration::from_secs(10),
            client_names: Arc::from(Vec::new()),
        };
        let l = match side {
            Side::His => &self.config.his_listener,
            Side::Cloud => &self.config.cloud_listener,
            Side::Files => match &self.config.files_listener {
                Some(l) => l,
                // Not bound without the section; a reload keeps the section while it runs.
                None => return fixed(),
            },
            Side::Admin => return fixed(),
        };
        super::Limits {
            max_connections: l.max_connections,
            max_per_peer: l.max_connections_per_peer,
            idle_timeout: l.idle_timeout,
            client_names: Arc::from(
                l.tls
                    .as_ref()
                    .map(|t| t.allowed_client_names.clone())
                    .unwrap_or_default(),
            ),
        }
    }

    /// The TLS acceptor of a listener, if it speaks TLS.
    pub fn tls(&self, side: Side) -> Option<&TlsAcceptor> {
        match side {
            Side::His => self.his_tls.as_ref().map(|t| &t.0),
            Side::Cloud => self.cloud_tls.as_ref().map(|t| &t.0),
            Side::Files => self.files_tls.as_ref().map(|t| &t.0),
            Side::Admin => None,
        }
    }
}

/// The state in force: a reload swaps it whole; a call in flight keeps the one it started with.
#[derive(Debug)]
pub struct Live {
    current: std::sync::RwLock<Arc<State>>,
}

impl Live {
    pub fn new(state: Arc<State>) -> Live {
        Live {
            current: std::sync::RwLock::new(state),
        }
    }

    pub fn current(&self) -> Arc<State> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Puts `state` in force for every call that starts from now on.
    pub fn replace(&self, state: Arc<State>) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = state;
    }
}
