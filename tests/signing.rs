//! `[auth]`: calls between the box and the cloud are signed on top of TLS. The cloud's calls
//! without a valid, fresh, unused signature reach nothing: `/his/<name>` answers the spec's 50001
//! (无权访问) in its envelope, the file routes a plain 401; a call signed before the gateway
//! started is refused, so a captured call cannot be replayed after a restart. The box's own calls
//! carry a signature the cloud team can check from the README's canonical string alone.

mod support;

use std::time::Duration;

use support::{
    basic_config, get, poll_until, post, sign, spawn_gateway, unix_now as now, MockUpstream,
    TestPki,
};

const SECRET: &str = "the secret agreed with the cloud team, 32+ chars";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clouds_calls_need_a_valid_fresh_unused_signature() {
    let pki = TestPki::new();
    let cloud = MockUpstream::https(&pki).await;
    let his = MockUpstream::http().await;
    his.echo();
    let toml = basic_config(
        &cloud.url(),
        Some(&pki.ca_pem_path()),
        Some(&format!("{}/his/{{name}}", his.url())),
        &format!("[auth]\nshared_secret = {SECRET:?}\n"),
    );
    // Signed before the gateway starts (within the allowed skew): refused once it runs.
    let before = now() - 1;
    let gw = spawn_gateway(&toml).await;
    // Calls signed in the start's own second are refused too: sign in a later one.
    let started = now();
    poll_until(
        Duration::from_secs(2),
        "the second after the start",
        async || now() > started,
    )
    .await;
    let target = "/his/hospital.interface.queryBalance";
    let url = format!("{}{target}", gw.cloud_url(false));
    let body = r#"{"medicalCardNumber":"001"}"#;
    let send = |ts: Option<String>, sig: Option<String>, body: &'static str| {
        let call = post(url.clone())
            .body(body)
            .signature(ts.as_deref(), sig.as_deref());
        async move {
            let resp = call.send().await;
            let kind = resp.error_kind().unwrap_or("").to_string();
            let v = resp.json();
            // A refusal is the spec's 50001 in the envelope; a relayed answer is the HIS's.
            let code = v["code"].as_str().unwrap_or("").to_string();
            (resp.status, kind, code)
        }
    };

    // Unsigned, wrong, stale, tampered, signed before the start: 50001, nothing forwarded.
    let t = now();
    let good = sign(SECRET, "POST", target, t, body.as_bytes());
    let cases = [
        (None, None, body, "signature-missing"),
        (
            Some(before.to_string()),
            Some(sign(SECRET, "POST", target, before, body.as_bytes())),
            body,
            "signature-before-start",
        ),
        (
            Some(t.to_string()),
            Some("00".repeat(32)),
            body,
            "signature-wrong",
        ),
        (
            Some((t - 600).to_string()),
            Some(sign(SECRET, "POST", target, t - 600, body.as_bytes())),
            body,
            "signature-timestamp",
        ),
        (
            Some(t.to_string()),
            Some(good.clone()),
            r#"{"medicalCardNumber":"002"}"#,
            "signature-wrong",
        ),
    ];
    for (ts, sig, b, kind) in cases {
        let (status, got, code) = send(ts, sig, b).await;
        assert_eq!((status, got.as_str(), code.as_str()), (200, kind, "50001"));
    }
    assert_eq!(his.request_count(), 0, "nothing reached the HIS");

    // Signed right: forwarded once; the same signature again is a replay.
    let (status, kind, _) = send(Some(t.to_string()), Some(good.clone()), body).await;
    assert_eq!((status, kind.as_str()), (200, ""));
    assert_eq!(his.request_count(), 1);
    let (status, kind, code) = send(Some(t.to_string()), Some(good.clone()), body).await;
    assert_eq!(
        (status, kind.as_str(), code.as_str()),
        (200, "signature-replayed", "50001")
    );
    assert_eq!(his.request_count(), 1, "a replay reaches nothing");

    // The PACS route needs a signature too.
    let r = get(format!("{}/pacs/dcm?dcmId=1", gw.cloud_url(false)))
        .send()
        .await;
    assert_eq!(r.status, 401);
    gw.shutdown().await;

    // A restart forgets which signatures were used: the captured call is still refused.
    let gw = spawn_gateway(&toml).await;
    let url = format!("{target_base}{target}", target_base = gw.cloud_url(false));
    let resp = post(url)
        .body(body)
        .signature(Some(&t.to_string()), Some(&good))
        .send()
        .await;
    assert_eq!(resp.error_kind(), Some("signature-before-start"));
    assert_eq!(
        his.request_count(),
        1,
        "a replay after a restart reaches nothing"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_boxs_calls_to_the_cloud_are_signed_per_the_readme() {
    let pki = TestPki::new();
    let cloud = MockUpstream::https(&pki).await;
    cloud.echo();
    let toml = basic_config(
        &cloud.url(),
        Some(&pki.ca_pem_path()),
        None,
        &format!("[auth]\nshared_secret = {SECRET:?}\n"),
    );
    let gw = spawn_gateway(&toml).await;
    let body = r#"{"medicalCardNumber":"001"}"#;
    let r = post(format!("{}/prefront/patient/getPatientInfo", gw.his_url()))
        .body(body)
        .send()
        .await;
    assert_eq!(r.status, 200);
    let seen = cloud.wait_for_requests(1, Duration::from_secs(5)).await;
    let req = seen.last().expect("the cloud got the call");
    let ts: u64 = req
        .header("x-prefront-timestamp")
        .and_then(|v| v.parse().ok())
        .expect("a Unix timestamp");
    assert!(ts.abs_diff(now()) <= 5, "the box's clock, now");
    let sig = req.header("x-prefront-signature").expect("a signature");
    assert_eq!(
        sig,
        sign(SECRET, "POST", &req.path, ts, &req.body),
        "HMAC-SHA256 over METHOD, path, timestamp and body hash, as documented"
    );
    gw.shutdown().await;
}
