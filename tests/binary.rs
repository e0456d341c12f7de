//! The real `prefront` binary, as an operator runs it: it starts on a config file, relays a
//! call, and stops cleanly on SIGTERM.

mod support;

use std::process::Command;

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
    let gw = RunningBinary::start(&cfg);
    let his_addr = gw.his_addr.clone();

    let resp = post(format!(
        "http://{his_addr}/prefront/sendTipMessage/lisReport"
    ))
    .body(r#"{"hospitalId":"253","reportkey":"R1"}"#)
    .send()
    .await;
    assert_eq!(resp.status, 200);
    assert!(resp.error_kind().is_none());
    assert_eq!(
        cloud.requests()[0].path,
        "/prefront/sendTipMessage/lisReport"
    );

    let (status, rest) = gw.terminate();
    assert!(status.success(), "clean exit after SIGTERM: {status:?}");
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
