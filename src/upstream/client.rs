//! The client of relayed calls: the cloud's and the HIS's POSTs and the cloud link's probe.
//! hyper's own client (one connection pool per connection worker, see `Clients`), rustls, the
//! box's resolver (`dns`), and for the cloud an optional HTTP CONNECT proxy.
//!
//! Not reqwest, which `doctor`, PACS streaming and the CLI keep using: on the relay's hot path
//! its layers above hyper (a boxed tower stack, a redirect policy that parses the URL again even
//! when it follows none, the URL parsed once more for the request) cost about 25,000
//! instructions of the ~175,000 a relayed call takes (bench/RESULTS.md, issue 20).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::Uri;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tower_service::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

/// How long an idle pooled connection is kept (below the 60 s most servers and proxies allow).
const POOL_IDLE: Duration = Duration::from_secs(50);

/// An HTTP/1.1 client for one upstream. Cloning shares the pool.
#[derive(Clone)]
pub struct Client {
    http: hyper_util::client::legacy::Client<HttpsConnector<Transport>, Full<Bytes>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("upstream::Client")
    }
}

/// The client's failure: hyper's, whose causes (`find_cause`) hold the I/O, TLS or tunnel error.
pub type Error = hyper_util::client::legacy::Error;

impl Client {
    /// A client speaking TLS with `tls` (ALPN HTTP/1.1) to https URLs and
    /// plain HTTP to http URLs, connecting within `connect_timeout`, through `proxy` when set
    /// (every request, by CONNECT: TLS stays end to end; the environment's proxy variables are
    /// never read).
    pub fn new(
        mut tls: rustls::ClientConfig,
        connect_timeout: Duration,
        proxy: Option<&crate::config::CloudProxy>,
    ) -> Result<Client, String> {
        let mut tcp = HttpConnector::new_with_resolver(Resolver::default());
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(connect_timeout));
        let transport = match proxy {
            None => Transport::Direct(tcp),
            Some(p) => {
                let uri: Uri = p
                    .url
                    .as_str()
                    .parse()
                    .map_err(|_| format!("cloud.proxy {}: not usable", p.host_port()))?;
                let mut tunnel = Tunnel::new(uri, tcp);
                if let Some(auth) = &p.auth {
                    let mut value = hyper::header::HeaderValue::try_from(basic_auth(
                        &auth.user,
                        &auth.password.0,
                    ))
                    .map_err(|_| "cloud.proxy_auth_file: not usable in a header".to_string())?;
                    value.set_sensitive(true);
                    tunnel = tunnel.with_auth(value);
                }
                Transport::Proxy(tunnel)
            }
        };
        // hyper-rustls sets the ALPN (HTTP/1.1) itself and refuses a config that has one.
        tls.alpn_protocols.clear();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(transport);
        let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(Client { http })
    }

    /// Sends `req`; the answer's head, its body still to read.
    pub async fn send(
        &self,
        req: hyper::Request<Full<Bytes>>,
    ) -> Result<hyper::Response<Incoming>, Error> {
        self.http.request(req).await
    }
}

/// `Basic base64(user:password)`.
pub fn basic_auth(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        data_encoding::BASE64.encode(format!("{user}:{password}").as_bytes())
    )
}

/// Whether `e` (or a cause) is a timeout: hyper's connect timeout is an `io::Error` of kind
/// `TimedOut`, as an operating system's is.
pub fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    super::find_cause(e, |err| {
        err.downcast_ref::<std::io::Error>()
            .filter(|io| io.kind() == std::io::ErrorKind::TimedOut)
            .map(|_| ())
    })
    .is_some()
}

/// `dns::SystemDns` as hyper's resolver.
#[derive(Clone, Default)]
struct Resolver(super::dns::SystemDns);

impl Service<Name> for Resolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = BoxFuture<Self::Response>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let dns = self.0.clone();
        Box::pin(async move {
            dns.lookup(name.as_str(), 0)
                .await
                .map(Vec::into_iter)
                .map_err(BoxError::from)
        })
    }
}

/// The TCP connection under TLS: straight to the upstream, or through the proxy's tunnel.
#[derive(Clone)]
enum Transport {
    Direct(HttpConnector<Resolver>),
    Proxy(Tunnel<HttpConnector<Resolver>>),
}

impl Service<Uri> for Transport {
    type Response = TokioIo<tokio::net::TcpStream>;
    type Error = BoxError;
    type Future = BoxFuture<Self::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self {
            Transport::Direct(c) => c.poll_ready(cx).map_err(BoxError::from),
            Transport::Proxy(t) => t.poll_ready(cx).map_err(BoxError::from),
        }
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        match self {
            Transport::Direct(c) => {
                let connecting = c.call(dst);
                Box::pin(async move { connecting.await.map_err(BoxError::from) })
            }
            Transport::Proxy(t) => {
                let tunnelling = t.call(dst);
                Box::pin(async move { tunnelling.await.map_err(BoxError::from) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timed_out_connect_is_a_timeout_wherever_it_sits_in_the_causes() {
        #[derive(Debug)]
        struct Wrapper(std::io::Error);
        impl std::fmt::Display for Wrapper {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("client error (Connect)")
            }
        }
        impl std::error::Error for Wrapper {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let timed_out = std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timeout");
        assert!(is_timeout(&Wrapper(timed_out)));
        // hyper-rustls and hyper wrap errors inside io::Errors: opened as well.
        let inner = std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timeout");
        let wrapped = std::io::Error::other(Wrapper(inner));
        assert!(is_timeout(&wrapped));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(!is_timeout(&Wrapper(refused)));
    }

    #[test]
    fn basic_auth_is_rfc_7617() {
        // The example of RFC 7617 §2.
        assert_eq!(
            basic_auth("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }
}
