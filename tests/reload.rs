//! Hot reload and systemd readiness with the real binary: SIGHUP puts a new configuration in
//! force for new calls, a broken file is refused and the old configuration stays, settings that
//! need new sockets are kept and named; `Type=notify` sees READY, RELOADING and STOPPING.

#[allow(unused_imports)] // the binary and the PKI, not the in-process gateway
mod support;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

use support::{post, MockUpstream, Poll, RunningBinary, TempDir, TestPki};

fn config(cloud: &MockUpstream, ca: &Path, buffer: &Path, his_listen: &str, allow: &str) -> String {
    format!(
        r#"
[his_listener]
listen = "{his_listen}"
allow = [{allow}]

[cloud_listener]
listen = "127.0.0.1:0"

[cloud]
base_url = "{}"
ca = {:?}
timeout_ms = 5000

[buffer]
path = {:?}
"#,
        cloud.url(),
        ca.display().to_string(),
        buffer.display().to_string()
    )
}

/// Waits until the log has `count` lines containing `needle`.
fn wait_log(bin: &RunningBinary, needle: &str, count: usize) -> Vec<String> {
    let found = Poll::new(
        Duration::from_secs(10),
        format!("{count}× {needle:?} in the log"),
    )
    .try_until_blocking(|| bin.log().iter().filter(|l| l.contains(needle)).count() >= count);
    assert!(
        found.is_ok(),
        "no {count}× {needle:?} in the log:\n{}",
        bin.log().join("\n")
    );
    bin.log()
}

async fn call_status(bin: &RunningBinary) -> u16 {
    post(format!("{}/prefront/patient/getPatientInfo", bin.his_url()))
        .body(r#"{"medicalCardNumber":"001"}"#)
        .timeout(Duration::from_secs(5))
        .try_send()
        .await
        .map(|r| r.status)
        // 0: the connection was closed without an answer (a peer refused at accept).
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_refuses_a_broken_file_and_keeps_what_needs_a_restart() {
    let pki = TestPki::new();
    let cloud = MockUpstream::https(&pki).await;
    cloud.echo();
    let dir = TempDir::new("prefront-reload");
    let path = dir.path().join("prefront.toml");
    let buffer = dir.path().join("buffer");
    let loopback = r#""127.0.0.0/8""#;
    std::fs::write(
        &path,
        config(&cloud, &pki.ca_pem_path(), &buffer, "127.0.0.1:0", loopback),
    )
    .expect("write config");
    let bin = RunningBinary::start(&path);
    assert_eq!(call_status(&bin).await, 200, "loopback is allowed at start");

    // The HIS listener's allowlist no longer has loopback: new calls are refused.
    std::fs::write(
        &path,
        config(
            &cloud,
            &pki.ca_pem_path(),
            &buffer,
            "127.0.0.1:0",
            r#""10.0.0.0/8""#,
        ),
    )
    .expect("write config");
    bin.hup();
    wait_log(&bin, "configuration reloaded", 1);
    assert_eq!(
        call_status(&bin).await,
        0,
        "the narrowed allowlist is in force: loopback is refused at accept"
    );

    // A file with a problem is refused; the configuration in force stays.
    std::fs::write(&path, "[his_listener\nlisten = ").expect("write config");
    bin.hup();
    let log = wait_log(&bin, "reload refused", 1);
    assert!(
        log.iter()
            .any(|l| l.contains("config:") && l.contains("line")),
        "the problem is logged with its line:\n{}",
        log.join("\n")
    );
    assert_eq!(
        call_status(&bin).await,
        0,
        "still the last good configuration"
    );

    // Loopback back in, and a new listen port, which needs a restart: the old port stays.
    std::fs::write(
        &path,
        config(&cloud, &pki.ca_pem_path(), &buffer, "127.0.0.1:1", loopback),
    )
    .expect("write config");
    bin.hup();
    let log = wait_log(&bin, "configuration reloaded", 2);
    assert!(
        log.iter()
            .any(|l| l.contains("needs a restart") && l.contains("his_listener.listen")),
        "the kept setting is named:\n{}",
        log.join("\n")
    );
    assert_eq!(
        call_status(&bin).await,
        200,
        "same port, loopback allowed again"
    );
    let (status, _) = bin.terminate();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_ready_reloading_and_stopping() {
    let pki = TestPki::new();
    let cloud = MockUpstream::https(&pki).await;
    let dir = TempDir::new("prefront-notify");
    let path = dir.path().join("prefront.toml");
    std::fs::write(
        &path,
        config(
            &cloud,
            &pki.ca_pem_path(),
            &dir.path().join("buffer"),
            "127.0.0.1:0",
            r#""127.0.0.0/8""#,
        ),
    )
    .expect("write config");
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let recv = || {
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).expect("a notification within 10 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let bin = RunningBinary::start_with_env(&path, &[("NOTIFY_SOCKET", sock_path.as_os_str())]);
    let first = recv();
    assert!(first.starts_with("READY=1"), "{first}");
    // Ready means ready: the listener answers.
    assert!(call_status(&bin).await > 0);

    bin.hup();
    let reloading = recv();
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading}"
    );
    assert!(
        recv().starts_with("READY=1"),
        "ready again after the reload"
    );

    let (status, _) = bin.terminate();
    assert!(status.success());
    let stopping = recv();
    assert!(stopping.starts_with("STOPPING=1"), "{stopping}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_puts_a_renewed_certificate_in_force() {
    let old_pki = TestPki::new();
    let new_pki = TestPki::new();
    let cloud = MockUpstream::https(&old_pki).await;
    let his = MockUpstream::http().await;
    his.echo();
    let dir = TempDir::new("prefront-reload-tls");
    let (cert, key) = (dir.path().join("server.pem"), dir.path().join("server.key"));
    let install = |pki: &TestPki| {
        std::fs::write(&cert, pki.server_cert_pem()).expect("write cert");
        std::fs::write(&key, pki.server_key_pem()).expect("write key");
    };
    install(&old_pki);
    let path = dir.path().join("prefront.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[his_listener]
listen = "127.0.0.1:0"

[cloud_listener]
listen = "127.0.0.1:0"
allow = ["127.0.0.0/8"]
tls_cert = {:?}
tls_key = {:?}

[cloud]
base_url = "{}"
ca = {:?}

[his]
kind = "http"
url = "{}/his/{{name}}"

[buffer]
path = {:?}
"#,
            cert.display().to_string(),
            key.display().to_string(),
            cloud.url(),
            old_pki.ca_pem_path().display().to_string(),
            his.url(),
            dir.path().join("buffer").display().to_string(),
        ),
    )
    .expect("write config");
    let bin = RunningBinary::start(&path);
    let port = bin
        .cloud_addr()
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_string();
    let url = format!("https://localhost:{port}/his/hospital.interface.queryBalance");
    let call = |client: reqwest::Client| {
        let call = post(&url)
            .via(&client)
            .body(r#"{"medicalCardNumber":"001"}"#);
        async move { call.try_send().await.map(|r| r.status) }
    };
    assert_eq!(
        call(old_pki.client()).await.ok(),
        Some(200),
        "old certificate served"
    );
    assert!(call(new_pki.client()).await.is_err(), "not yet the new one");

    install(&new_pki);
    bin.hup();
    wait_log(&bin, "configuration reloaded", 1);
    assert_eq!(
        call(new_pki.client()).await.ok(),
        Some(200),
        "the renewed certificate is served after SIGHUP"
    );
    assert!(call(old_pki.client()).await.is_err(), "the old one is gone");
    let (status, _) = bin.terminate();
    assert!(status.success());
}
