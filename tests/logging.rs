//! Patient data never reaches a log line: at TRACE level (every crate's output, bodies included)
//! a call carrying a name, an ID number and a phone in both directions leaves only masked forms.

mod support;

use std::time::Duration;

use support::*;

const NAME: &str = "欧阳娜娜";
const ID: &str = "370102197907025236";
const PHONE: &str = "13526521254";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_at_every_level_never_hold_patient_data() {
    let capture = LogCapture::new();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(capture.clone())
        .try_init()
        .expect("first subscriber in this test binary");

    let pki = TestPki::new();
    let cloud = MockUpstream::https(&pki).await;
    let his = MockUpstream::http().await;
    let patient = format!(
        r#"{{"success":true,"msg":"成功","code":"10001","data":{{"name":"{NAME}","idcard":"{ID}","phone":"{PHONE}","memo":"联系电话{PHONE}，身份证{ID}"}}}}"#
    );
    cloud.respond_default(200, &patient);
    his.respond_default(200, &patient);
    let toml = ConfigToml::basic(
        &cloud.url(),
        Some(&pki.ca_pem_path()),
        Some(&format!("{}/his/{{name}}", his.url())),
        "",
    )
    .set("log.level", "trace")
    .render();
    let gw = spawn_gateway(&toml).await;
    let body = format!(
        r#"{{"hospitalId":"253","medicalCardNumber":"001000056254587","name":"{NAME}","idcard":"{ID}","phone":"{PHONE}"}}"#
    );
    let client = plain_client();
    for url in [
        format!("{}/prefront/patient/genCard", gw.his_url()),
        format!("{}/his/hospital.interface.createCard", gw.cloud_url(false)),
    ] {
        let r = post(&url).via(&client).body(body.clone()).send().await;
        assert!(r.text().contains(ID), "callers get the data unmasked");
        // A broken body with patient data in it: refused, and still not logged in clear.
        let r = post(&url)
            .via(&client)
            .body(format!(r#"{{"name":"{NAME}","idcard":"{ID}",,"#))
            .send()
            .await;
        assert!(r.text().contains("20003"));
    }
    assert_eq!(
        cloud
            .wait_for_requests(1, Duration::from_secs(5))
            .await
            .len(),
        1
    );
    assert_eq!(
        his.wait_for_requests(1, Duration::from_secs(5)).await.len(),
        1
    );
    gw.shutdown().await;

    let logs = capture.contents();
    assert!(
        logs.contains("TRACE") || logs.contains("DEBUG"),
        "captured at low levels"
    );
    // The call line: direction, peer, route, outcome, latency, request id.
    for needle in [
        "direction=\"his_to_cloud\"",
        "direction=\"cloud_to_his\"",
        "route=\"prefront/patient/genCard\"",
        "route=\"hospital.interface.createCard\"",
        "outcome=\"ok\"",
        "outcome=\"invalid-json\"",
        "latency_ms=",
        "request_id=",
        "peer=127.0.0.1",
    ] {
        assert!(logs.contains(needle), "missing {needle} in logs:\n{logs}");
    }
    // Bodies were logged (at debug), masked.
    assert!(
        logs.contains("3701**********5236"),
        "masked ID expected in debug body logs"
    );
    assert!(logs.contains("135****1254"), "masked phone expected");
    for secret in [NAME, ID, PHONE, "阳娜娜"] {
        assert!(!logs.contains(secret), "`{secret}` leaked into the logs");
    }
}
