//! Answers arrive before the caller gives up (DESIGN.md §8): the spec's sample HIS client waits
//! 10 s, so with the default timeouts a HIS → cloud call is answered within 9 s — and a
//! reminder whose direct attempt times out (a cloud that takes the connection and never answers)
//! is buffered and answered 10001 within that time.

mod support;

use std::time::{Duration, Instant};

use support::{basic_config, plain_client, read_json, spawn_gateway, MockUpstream};

/// `basic_config` with `[cloud] timeout_ms` left at its default.
fn default_timeouts(cloud_url: &str) -> String {
    let toml = basic_config(cloud_url, None, None, "");
    let without = toml.replacen("timeout_ms = 5000\n", "", 1);
    assert_ne!(
        without, toml,
        "basic_config sets a cloud timeout to take out"
    );
    without
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reminder_the_cloud_never_answers_is_buffered_and_answered_within_9_s() {
    let cloud = MockUpstream::http().await;
    // Takes every call and answers none in time.
    cloud.set_delay(Duration::from_secs(60));
    let gw = spawn_gateway(&default_timeouts(&format!("{}/", cloud.url()))).await;
    // The sample HIS client: plain_client gives up after 10 s, as 附二's does.
    let started = Instant::now();
    let r = plain_client()
        .post(format!(
            "{}/prefront/sendTipMessage/phyReport",
            gw.his_url()
        ))
        .body(r#"{"patientName":"张三","reportName":"血常规"}"#)
        .send()
        .await
        .expect("answered before the client gave up");
    let took = started.elapsed();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers().contains_key("x-prefront-queued"),
        "buffered: {:?}",
        r.headers()
    );
    let body = read_json(r).await;
    assert_eq!(body["code"], "10001", "{body}");
    assert!(
        cloud.request_count() >= 1,
        "the call was tried directly first"
    );
    assert!(
        took >= Duration::from_secs(7),
        "the direct attempt waited for the cloud (default timeout 8 s): {took:?}"
    );
    assert!(
        took < Duration::from_secs(9),
        "answered within 9 s: {took:?}"
    );
    gw.shutdown().await;
}

#[test]
fn the_default_cloud_timeout_answers_in_time_and_check_warns_above_9_s() {
    let base = default_timeouts("https://cloud.example.com/");
    let loaded = prefront::Config::from_toml(&base, std::path::Path::new(".")).expect("valid");
    assert_eq!(loaded.config.cloud.timeout, Duration::from_millis(8000));
    // The connect timeout is inside the call's timeout, not added to it.
    assert!(loaded.config.cloud.timeout < prefront::config::ANSWER_WITHIN);
    assert!(
        !loaded.warnings.iter().any(|w| w.key == "cloud.timeout_ms"),
        "{:#?}",
        loaded.warnings
    );
    for (ms, warned) in [(9000, false), (9001, true), (10000, true)] {
        let toml = base.replacen("[cloud]\n", &format!("[cloud]\ntimeout_ms = {ms}\n"), 1);
        let loaded = prefront::Config::from_toml(&toml, std::path::Path::new(".")).expect("valid");
        let w = loaded.warnings.iter().find(|w| w.key == "cloud.timeout_ms");
        assert_eq!(w.is_some(), warned, "{ms}: {:#?}", loaded.warnings);
        if let Some(w) = w {
            assert!(w.message.contains("10 s"), "says why: {}", w.message);
        }
    }
}
