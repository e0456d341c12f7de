//! Listener limits a security reviewer asks about: concurrent connections, idle keep-alive and
//! slow-loris timeouts, and limit hits logged once a minute per caller rather than per request;
//! a private key others can read is warned about.

#[allow(unused_imports)] // the binary and the PKI, not the in-process gateway
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::*;

fn config(cloud: &MockUpstream, ca: &std::path::Path, buffer: &std::path::Path) -> String {
    format!(
        r#"
[his_listener]
listen = "127.0.0.1:0"
max_connections = 2
idle_timeout = "1s"
max_body = "1KiB"

[cloud_listener]
listen = "127.0.0.1:0"

[cloud]
base_url = "{}"
ca = {:?}

[buffer]
path = {:?}
"#,
        cloud.url(),
        ca.display().to_string(),
        buffer.display().to_string()
    )
}

/// True when the server closed `s` (EOF or reset) within `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).expect("timeout");
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// A query as raw bytes, to write on a socket held open.
fn request(body: &str) -> Vec<u8> {
    post("/prefront/patient/getPatientInfo")
        .content_type("application/json")
        .body(body)
        .raw()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_are_closed_and_idle_ones_time_out() {
    let pki = TestPki::new();
    let cloud = MockUpstream::https(&pki).await;
    cloud.echo();
    let dir = TempDir::new("prefront-limits");
    let path = dir.path().join("prefront.toml");
    std::fs::write(
        &path,
        config(&cloud, &pki.ca_pem_path(), &dir.path().join("buffer")),
    )
    .expect("write config");
    let bin = RunningBinary::start(&path);
    let addr = bin.his_addr.clone();

    // Two connections are served at once; a third is closed at once.
    let mut a = TcpStream::connect(&addr).expect("first");
    let mut b = TcpStream::connect(&addr).expect("second");
    let server: std::net::SocketAddr = addr.parse().expect("his address");
    let (a_end, b_end) = (a.local_addr().expect("a"), b.local_addr().expect("b"));
    wait_until(
        Duration::from_secs(5),
        "the box to accept the first two connections",
        || accepted(server, a_end) && accepted(server, b_end),
    );
    let mut c = TcpStream::connect(&addr).expect("third connects at TCP level");
    assert!(
        closed_within(&mut c, Duration::from_millis(800)),
        "the third connection is closed by the box"
    );

    // Slow-loris: headers never finished are cut off after idle_timeout (1 s). (`b` has sent
    // nothing for as long, so it goes the same way.)
    a.write_all(b"POST /prefront/patient/getPatientInfo HTTP/1.1\r\nHost: x\r\n")
        .expect("partial headers");
    let started = Instant::now();
    assert!(
        closed_within(&mut a, Duration::from_secs(5)),
        "slow headers are cut off"
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(
        closed_within(&mut b, Duration::from_secs(5)),
        "a silent connection is cut off"
    );

    // Keep-alive: a served connection left idle is closed after idle_timeout too.
    let mut e = TcpStream::connect(&addr).expect("a new connection once slots are free");
    e.write_all(&request(r#"{"medicalCardNumber":"001"}"#))
        .expect("request");
    e.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = [0u8; 2048];
    let n = e.read(&mut buf).expect("answer");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let idle_from = Instant::now();
    assert!(
        closed_within(&mut e, Duration::from_secs(5)),
        "idle keep-alive closed"
    );
    assert!(
        idle_from.elapsed() >= Duration::from_millis(500),
        "not before the timeout"
    );

    // Slots are free again: a new connection is served.
    let mut d = TcpStream::connect(&addr).expect("fourth");
    d.write_all(&request(r#"{"medicalCardNumber":"001"}"#))
        .expect("request");
    d.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let n = d.read(&mut buf).expect("answer");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

    // Its slot back: with a limit of 2, the keep-alive `d` and a refused connection the box is
    // still closing would leave none for the next call (a race seen under load).
    drop(d);

    // Oversized bodies: refused every time, logged once a minute for this caller.
    let big = format!(r#"{{"x":"{}"}}"#, "a".repeat(4096));
    for _ in 0..3 {
        let r = post(format!("{}/prefront/patient/getPatientInfo", bin.his_url()))
            .body(big.clone())
            .send()
            .await;
        assert_eq!(r.status, 413);
    }
    let (_, log) = bin.terminate();
    let body_lines = log
        .iter()
        .filter(|l| l.contains("outcome=\"body-refused\""))
        .count();
    assert_eq!(
        body_lines,
        1,
        "one log line for three refusals:\n{}",
        log.join("\n")
    );
    assert!(
        log.iter().any(|l| l.contains("connection limit reached")),
        "the connection limit is logged:\n{}",
        log.join("\n")
    );
}

#[test]
fn a_private_key_others_can_read_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let pki = TestPki::new();
    let dir = TempDir::new("prefront-keymode");
    let key = dir.path().join("server.key");
    std::fs::write(&key, pki.server_key_pem()).expect("write key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let path = dir.path().join("prefront.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[his_listener]
listen = "127.0.0.1:0"
[cloud_listener]
listen = "127.0.0.1:0"
tls_cert = {:?}
tls_key = {:?}
[cloud]
base_url = "https://cloud.example.com/"
"#,
            pki.server_cert_path().display().to_string(),
            key.display().to_string()
        ),
    )
    .expect("write config");
    let text = check_warns(&path);
    assert!(
        text.contains("readable by group or others") && text.contains("644"),
        "{text}"
    );
    assert!(
        !text.contains("PRIVATE KEY"),
        "the key's content is never printed"
    );
}

/// The box's own file-link key is a secret like the others: `check` warns when group or others
/// can read it, and never prints it.
#[test]
fn a_link_key_others_can_read_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("prefront-linkkeymode");
    let key = dir.path().join("pacs-link.key");
    std::fs::write(&key, [7u8; 32]).expect("write key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let path = dir.path().join("prefront.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[his_listener]
listen = "127.0.0.1:0"
[cloud_listener]
listen = "127.0.0.1:0"
public_url = "https://prefront.example-hospital.cn:8443"
[cloud]
base_url = "https://cloud.example.com/"
[pacs]
internal_hosts = ["10.1.1.20:8080"]
link_key_file = {:?}
"#,
            key.display().to_string()
        ),
    )
    .expect("write config");
    let text = check_warns(&path);
    assert!(
        text.contains("link_key_file")
            && text.contains("readable by group or others")
            && text.contains("640"),
        "{text}"
    );
}

/// A peer that is not allowed holds no connection slot (DESIGN.md §2, §11.13): 1,000 idle
/// connections from a denied address (127.0.0.2) on a listener with room for 4, and the allowed
/// caller (127.0.0.1) is still answered at once; the log names the denied address, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_peers_hold_no_slot() {
    let pki = TestPki::new();
    let cloud = MockUpstream::https(&pki).await;
    cloud.echo();
    let dir = TempDir::new("prefront-denied-slots");
    let path = dir.path().join("prefront.toml");
    ConfigToml::parse(&config(
        &cloud,
        &pki.ca_pem_path(),
        &dir.path().join("buffer"),
    ))
    .set("his_listener.max_connections", 4)
    .set("his_listener.idle_timeout", "30s")
    .set("his_listener.allow", vec!["127.0.0.1/32"])
    .write(&path);
    let bin = RunningBinary::start(&path);
    let addr: std::net::SocketAddr = bin.his_addr.parse().expect("his address");

    // 1,000 connections from 127.0.0.2, each left idle; every one is closed by the box.
    let mut denied = Vec::new();
    for _ in 0..1000 {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.2:0".parse().expect("addr"))
            .expect("bind 127.0.0.2");
        match socket.connect(addr).await {
            Ok(s) => denied.push(s),
            // The accept backlog may refuse some under the burst: refused costs nothing either.
            Err(_) => continue,
        }
    }
    assert!(denied.len() >= 500, "only {} connected", denied.len());

    // The allowed caller is answered within a second although the denied sockets are still open
    // on their side.
    let started = Instant::now();
    let answered = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).expect("allowed caller connects");
        s.write_all(&request(r#"{"medicalCardNumber":"001"}"#))
            .expect("request");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut buf = [0u8; 2048];
        let n = s.read(&mut buf).expect("answer");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    })
    .await
    .expect("join");
    let took = started.elapsed();
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    assert!(
        took < Duration::from_secs(1),
        "the allowed caller waited {took:?}"
    );

    // Every denied connection was closed by the box without a byte.
    use tokio::io::AsyncReadExt;
    let mut closed = 0;
    for s in denied.iter_mut().take(50) {
        let mut buf = [0u8; 16];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await
        {
            closed += 1;
        }
    }
    assert_eq!(closed, 50, "denied connections are closed at accept");
    drop(denied);

    // The log names the denied address, rate-limited: once a minute, not once per connection.
    let (_, log) = bin.terminate();
    let lines = log
        .iter()
        .filter(|l| l.contains("not in the allowlist") && l.contains("127.0.0.2"))
        .count();
    assert_eq!(
        lines,
        1,
        "one log line for 1,000 refusals:\n{}",
        log.join("\n")
    );
}

/// One caller cannot take every slot (`max_connections_per_peer`): with room for 8 and 2 per
/// peer, a third connection from 127.0.0.2 is closed at once while 127.0.0.1 is still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_peer_cannot_take_every_slot() {
    let pki = TestPki::new();
    let cloud = MockUpstream::https(&pki).await;
    cloud.echo();
    let dir = TempDir::new("prefront-per-peer");
    let path = dir.path().join("prefront.toml");
    ConfigToml::parse(&config(
        &cloud,
        &pki.ca_pem_path(),
        &dir.path().join("buffer"),
    ))
    .set("his_listener.max_connections", 8)
    .set("his_listener.max_connections_per_peer", 2)
    .set("his_listener.idle_timeout", "30s")
    .write(&path);
    let bin = RunningBinary::start(&path);
    let addr: std::net::SocketAddr = bin.his_addr.parse().expect("his address");
    let mut held = vec![
        connect_from("127.0.0.2", addr).await,
        connect_from("127.0.0.2", addr).await,
    ];
    let ends: Vec<_> = held.iter().map(|s| s.local_addr().expect("end")).collect();
    poll_until(
        Duration::from_secs(5),
        "the box to accept the peer's first two connections",
        async || ends.iter().all(|e| accepted(addr, *e)),
    )
    .await;
    let mut third = connect_from("127.0.0.2", addr).await;
    assert!(
        closed_within(&mut third, Duration::from_millis(800)),
        "the peer's third connection is closed by the box"
    );
    for s in &mut held {
        assert!(
            !closed_within(s, Duration::from_millis(100)),
            "the peer's first two stay open"
        );
    }
    let mut other = connect_from("127.0.0.1", addr).await;
    other
        .write_all(&request(r#"{"medicalCardNumber":"001"}"#))
        .expect("request");
    other
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = [0u8; 2048];
    let n = other.read(&mut buf).expect("answer");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    drop(held);
    let (_, log) = bin.terminate();
    assert!(
        log.iter()
            .any(|l| l.contains("max_connections_per_peer=2") && l.contains("127.0.0.2")),
        "the limit hit is logged with the caller:\n{}",
        log.join("\n")
    );
}

/// A blocking TCP connection to `to` from the loopback address `from` (std has no
/// bind-before-connect; tokio's TcpSocket does, then hands the socket over).
async fn connect_from(from: &str, to: std::net::SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(std::net::SocketAddr::new(from.parse().expect("ip"), 0))
        .expect("bind");
    let s = socket.connect(to).await.expect("connect");
    let s = s.into_std().expect("std stream");
    s.set_nonblocking(false).expect("blocking");
    s
}

/// `prefront check` on `path`: it must pass (warnings are not errors); its whole output.
fn check_warns(path: &std::path::Path) -> String {
    let out = prefront(&["check", "--config", &path.display().to_string()]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "a warning, not an error:\n{text}");
    text
}
