//! What the network checks share: reaching a host (through the system resolver only) and
//! saying in a line why it could not be reached.

use std::net::SocketAddr;

use super::CHECK_TIMEOUT;

use crate::upstream::find_cause;

pub(super) fn no_answer(host_port: &str) -> String {
    format!(
        "no answer from {host_port} within {} s: a firewall dropping the traffic, a wrong \
         address, or an outbound proxy needed",
        CHECK_TIMEOUT.as_secs()
    )
}

/// One sentence for a failed request: the root cause and what to do about it.
pub(super) fn explain_request_error(e: &reqwest::Error, host_port: &str) -> String {
    if let Some(tls) = find_cause(e, |c| c.downcast_ref::<rustls::Error>().cloned()) {
        return explain_tls(&tls);
    }
    if e.is_timeout() {
        return no_answer(host_port);
    }
    if let Some(kind) = find_cause(e, |c| {
        c.downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind)
            .filter(|k| *k != std::io::ErrorKind::Other)
    }) {
        return explain_io(kind, host_port);
    }
    let root = crate::upstream::error_root(e);
    if e.is_connect() {
        format!("cannot connect to {host_port}: {root}")
    } else {
        format!("no HTTP answer from {host_port}: {root}")
    }
}

/// One sentence for a request that failed at the cloud's proxy (`None`: it failed elsewhere):
/// what the proxy did and what to do about it.
pub(super) fn explain_proxy_error(
    e: &reqwest::Error,
    proxy: &crate::config::CloudProxy,
    host_port: &str,
) -> Option<String> {
    use crate::upstream::UpstreamError;
    let at = proxy.host_port();
    Some(match crate::upstream::proxy_failure(e)? {
        UpstreamError::ProxyRefused(why) if why.starts_with("407") => match proxy.auth {
            None => format!(
                "the proxy {at} asks for credentials (407): put `user:password` in a file and \
                 name it in [cloud] proxy_auth_file"
            ),
            Some(_) => format!(
                "the proxy {at} refuses the credentials of proxy_auth_file (407): check the user \
                 and password with the network team"
            ),
        },
        UpstreamError::ProxyRefused(_) => {
            let credentials = match proxy.auth {
                Some(_) => {
                    "accept proxy_auth_file's credentials (some proxies answer wrong ones \
                            with 401 or 403), "
                }
                None => "",
            };
            format!(
                "the proxy {at} refused the CONNECT to {host_port}: it must {credentials}allow \
                 CONNECT to this host and port (squid: SSL_ports and http_access; tinyproxy: \
                 ConnectPort), and reach the cloud itself"
            )
        }
        other => format!("{other} ({at}): check [cloud] proxy with the network team"),
    })
}

pub(super) fn explain_io(kind: std::io::ErrorKind, host_port: &str) -> String {
    use std::io::ErrorKind as K;
    match kind {
        K::ConnectionRefused => format!(
            "connection refused by {host_port}: nothing listens there (wrong port? service \
             down?) or a firewall rejects it"
        ),
        K::TimedOut => no_answer(host_port),
        K::ConnectionReset | K::ConnectionAborted | K::UnexpectedEof => format!(
            "{host_port} closed the connection: http:// vs https:// mismatch, or a firewall or \
             proxy in the way"
        ),
        K::HostUnreachable | K::NetworkUnreachable => format!(
            "{host_port} is unreachable: no route from this machine (check the default gateway \
             and firewall rules: ip route)"
        ),
        other => format!("cannot reach {host_port}: {other}"),
    }
}

pub(super) fn explain_tls(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => format!(
                "certificate not trusted ({e}): add the cloud's CA certificate (PEM) to [cloud] ca"
            ),
            C::NotValidForName | C::NotValidForNameContext { .. } => format!(
                "the certificate is for another host name ({e}): check the host in \
                 cloud.base_url with the cloud team"
            ),
            C::Expired | C::ExpiredContext { .. } => format!(
                "the cloud's certificate has expired ({e}): if this machine's date is wrong, fix \
                 it (timedatectl set-ntp true); otherwise the cloud team must renew it"
            ),
            C::NotValidYet | C::NotValidYetContext { .. } => format!(
                "the cloud's certificate is not valid yet ({e}): check this machine's date \
                 (timedatectl set-ntp true)"
            ),
            _ => format!("the cloud's certificate is refused: {e}"),
        },
        rustls::Error::AlertReceived(alert) => format!(
            "the cloud refused the TLS handshake (alert {alert:?}): it may require a client \
             certificate, or a TLS version this box does not offer (1.2/1.3)"
        ),
        other => format!(
            "TLS handshake failed: {other} (does the port speak TLS? an https:// URL on a plain \
             HTTP port fails like this)"
        ),
    }
}

/// `host:port` of a URL, for messages.
pub(super) fn host_port(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("?");
    match url.port_or_known_default() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// A URL for the report, without any user name or password in it.
pub(super) fn shown(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

/// A TCP connection to the URL's host and port within `deadline`; `Err` says why not.
pub(super) async fn connect(
    url: &reqwest::Url,
    deadline: tokio::time::Instant,
) -> Result<(), String> {
    let hp = host_port(url);
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return Err(format!("{} has no host and port", shown(url)));
    };
    // `host_str` keeps an IPv6 literal's brackets, which the resolver does not take.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs = match tokio::time::timeout_at(deadline, resolve(host, port)).await {
        Ok(Ok(addrs)) => addrs,
        Ok(Err(e)) => {
            return Err(format!(
                "cannot connect to {hp}: {host} does not resolve ({e})"
            ))
        }
        Err(_) => return Err(no_answer(&hp)),
    };
    match tokio::time::timeout_at(deadline, tokio::net::TcpStream::connect(&addrs[..])).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::Other => {
            Err(format!("cannot connect to {hp}: {e}"))
        }
        Ok(Err(e)) => Err(explain_io(e.kind(), &hp)),
        Err(_) => Err(no_answer(&hp)),
    }
}

/// A host's addresses, found the way the gateway's HTTP clients find them (`upstream::dns`:
/// /etc/hosts, then the name servers in /etc/resolv.conf, and no public name server when that
/// file is unusable), never through glibc's getaddrinfo/NSS, which the statically linked binary
/// must not load.
pub(super) async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    crate::upstream::dns::SystemDns::default()
        .lookup(host, port)
        .await
}
