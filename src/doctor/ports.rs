//! Listen ports: whether each listener's address can be bound here.

use std::net::{SocketAddr, TcpListener as StdTcpListener};

use super::Check;
use crate::config::Config;

pub(super) fn port_checks(config: &Config) -> Vec<Check> {
    let mut listeners = vec![
        ("his_listener", config.his_listener.listen),
        ("cloud_listener", config.cloud_listener.listen),
    ];
    if let Some(f) = &config.files_listener {
        listeners.push(("files_listener", f.listen));
    }
    if let Some(a) = &config.admin {
        listeners.push(("admin", a.listen));
    }
    // Held until every address is tried, so two listeners on one port show up too.
    let mut held = Vec::new();
    let mut out = Vec::new();
    for (name, addr) in listeners {
        let what = format!("port {name}.listen");
        if addr.port() == 0 {
            out.push(Check::pass(
                what,
                format!("{addr}: port 0, the system picks a free port (test setups only)"),
            ));
            continue;
        }
        match StdTcpListener::bind(addr) {
            Ok(l) => {
                held.push(l);
                out.push(Check::pass(what, format!("{addr} is free")));
            }
            Err(e) => out.push(Check::fail(what, bind_advice(addr, &e))),
        }
    }
    drop(held);
    out
}

fn bind_advice(addr: SocketAddr, e: &std::io::Error) -> String {
    let port = addr.port();
    match e.kind() {
        std::io::ErrorKind::AddrInUse => format!(
            "{addr}: port {port} is in use — another prefront running? (if the gateway runs on \
             this box, that is expected: stop it to check the ports) See who holds it: \
             ss -ltnp 'sport = :{port}'"
        ),
        std::io::ErrorKind::AddrNotAvailable => format!(
            "{addr}: {} is not an address of this machine: listen on 0.0.0.0 or on one of \
             the addresses `ip -br addr` shows",
            addr.ip()
        ),
        std::io::ErrorKind::PermissionDenied => format!(
            "{addr}: not allowed to listen on port {port}: ports below 1024 need root or \
             CAP_NET_BIND_SERVICE (systemd: AmbientCapabilities=CAP_NET_BIND_SERVICE), or use \
             a port from 1024 up"
        ),
        _ => format!("{addr}: cannot listen: {e}"),
    }
}
