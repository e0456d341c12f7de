//! The real `prefront` binary, as an operator runs it: it starts on a config file, relays a
//! call, and stops cleanly on SIGTERM.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_runs_relays_and_stops_on_sigterm() {
    let cloud = MockUpstream::http().await;
    let dir = TempDir::new("prefront-bin");
    let cfg = dir.path().join("prefront.toml");
    std::fs::write(
        &cfg,
        basic_config(&cloud.url(), None, Some("http://127.0.0.1:9/{name}"), ""),
    )
    .expect("write config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_prefront"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The listeners were asked for port 0: learn the real ports from the start-up log.
    let mut his_addr = None;
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while his_addr.is_none() && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            if line.contains("listener=\"his\"") {
                his_addr = line
                    .split("addr=")
                    .nth(1)
                    .and_then(|s| s.split_whitespace().next())
                    .map(str::to_string);
            }
            lines.push(line);
        }
    }
    let his_addr = his_addr.unwrap_or_else(|| panic!("no listen line in:\n{}", lines.join("\n")));

    let resp = plain_client()
        .post(format!(
            "http://{his_addr}/prefront/sendTipMessage/lisReport"
        ))
        .body(r#"{"hospitalId":"253","reportkey":"R1"}"#)
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("x-prefront-error").is_none());
    assert_eq!(
        cloud.requests()[0].path,
        "/prefront/sendTipMessage/lisReport"
    );

    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "clean exit after SIGTERM: {status:?}");
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");
}

#[test]
fn a_bad_config_stops_the_binary_before_it_listens() {
    let dir = TempDir::new("prefront-bin-bad");
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[his_listener]\nlisten = \"nowhere\"\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_prefront"))
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("his_listener.listen") && err.contains("line 2"),
        "{err}"
    );
    assert!(
        err.contains("cloud_listener"),
        "every problem, not just the first: {err}"
    );
}
