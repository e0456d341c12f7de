//! Name resolution for every upstream call and for `doctor`: hickory reading `/etc/hosts` and the
//! name servers of `/etc/resolv.conf`, never glibc's getaddrinfo/NSS (which a statically linked
//! binary must not load). Unlike reqwest's own hickory resolver, which falls back to Google's
//! public DNS when `/etc/resolv.conf` is unusable, this one then fails with that reason: a box in a
//! DMZ asks only the name servers the hospital configured.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use hickory_resolver::config::LookupIpStrategy;
use hickory_resolver::TokioResolver;

/// The system's resolver, built on first use (inside the runtime).
#[derive(Debug, Clone, Default)]
pub struct SystemDns {
    resolver: Arc<OnceLock<Result<TokioResolver, String>>>,
}

impl SystemDns {
    fn resolver(&self) -> Result<&TokioResolver, String> {
        self.resolver
            .get_or_init(build)
            .as_ref()
            .map_err(String::clone)
    }

    /// The addresses of `host` (an IP literal is its own answer).
    pub async fn lookup(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let found = self.resolver()?.lookup_ip(host).await.map_err(|e| {
            if e.is_nx_domain() {
                "no such name (NXDOMAIN)".to_string()
            } else if e.is_no_records_found() {
                "the name has no address record".to_string()
            } else {
                e.to_string()
            }
        })?;
        Ok(found.iter().map(|ip| SocketAddr::new(ip, port)).collect())
    }
}

fn build() -> Result<TokioResolver, String> {
    let mut builder = TokioResolver::builder_tokio().map_err(|e| {
        format!(
            "/etc/resolv.conf is unusable ({e}); the box asks no other name server: fix it, or \
             name the host in /etc/hosts"
        )
    })?;
    // Both families, for happy eyeballs (as reqwest's own resolver does).
    builder.options_mut().ip_strategy = LookupIpStrategy::Ipv6AndIpv4;
    builder.build().map_err(|e| e.to_string())
}

impl reqwest::dns::Resolve for SystemDns {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let dns = self.clone();
        Box::pin(async move {
            let addrs = dns
                .lookup(name.as_str(), 0)
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })?;
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}
