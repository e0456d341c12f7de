//! A county box (县域/医共体): several hospitals behind one box (`[[hospital]]`, DESIGN.md §9),
//! with the real binary. Two hospitals, each with its own HTTP HIS and its own PACS, and the
//! box's own `[his]` for calls without a `hospitalId`: calls are routed by the body's top-level
//! `hospitalId` (string or number), an unknown or malformed one is refused with nothing sent to
//! any HIS, `/pacs/dcm?hospitalId=` streams from that hospital's PACS, `/status` and `/metrics`
//! show each hospital's HIS targets, SIGHUP adds a hospital, and `doctor` probes every
//! hospital's targets.

#[allow(unused_imports)] // the binary, not the in-process gateway
mod support;

use std::path::PathBuf;

use serde_json::{json, Value};
use support::pacs::{streaming_client, MockPacs};
use support::*;

const PUBLIC_URL: &str = "https://prefront.example.cn:18443";
const CARD: &str = "hospital.interface.createCard";
const DEPOSIT: &str = "hospital.interface.getDepositRecord";

/// The box's own HIS, two hospitals' HIS and PACS, and a cloud that is never called.
struct County {
    own: MockUpstream,
    his_253: MockUpstream,
    his_254: MockUpstream,
    pacs_253: MockPacs,
    pacs_254: MockPacs,
    cloud: MockUpstream,
    dir: TempDir,
}

impl County {
    async fn new() -> County {
        let county = County {
            own: MockUpstream::http().await,
            his_253: MockUpstream::http().await,
            his_254: MockUpstream::http().await,
            pacs_253: MockPacs::start().await,
            pacs_254: MockPacs::start().await,
            cloud: MockUpstream::http().await,
            dir: TempDir::new("prefront-hospitals"),
        };
        for his in [&county.own, &county.his_253, &county.his_254] {
            his.echo();
        }
        county
    }

    fn his_count(&self) -> [usize; 3] {
        [
            self.own.request_count(),
            self.his_253.request_count(),
            self.his_254.request_count(),
        ]
    }

    /// Hospital 253 (its own HIS and PACS) and, with `with_254`, hospital 254 (its own HIS for
    /// one name, `[his]` for the rest, its own PACS); `[admin]` for `/status` and `/metrics`.
    fn config(&self, with_254: bool) -> PathBuf {
        let mut hospitals = format!(
            "[[hospital]]\nid = \"253\"\nhis = {{ kind = \"http\", url = \"{}/his/{{name}}\" }}\n\
             dcm_url = {:?}\n",
            self.his_253.url(),
            self.pacs_253.dcm_url_template(),
        );
        if with_254 {
            hospitals.push_str(&format!(
                "\n[[hospital]]\nid = \"254\"\ndcm_url = {:?}\n\n[[hospital.route]]\n\
                 name = \"{DEPOSIT}\"\nurl = \"{}/deposit/{{method}}\"\n",
                self.pacs_254.dcm_url_template(),
                self.his_254.url(),
            ));
        }
        let pacs = format!(
            "[pacs]\ninternal_hosts = [{:?}, {:?}]\nlink_key = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n",
            self.pacs_253.host_port(),
            self.pacs_254.host_port(),
            "k".repeat(32),
        );
        let his = format!("{}/his/{{name}}", self.own.url());
        ConfigToml::basic(&self.cloud.url(), None, Some(&his), &pacs)
            .set("cloud_listener.public_url", PUBLIC_URL)
            .set_path("buffer.path", &self.dir.path().join("buffer"))
            .merge(&hospitals)
            .write(&self.dir.path().join("prefront.toml"))
    }
}

/// A cloud → HIS call with `body`.
async fn call(bin: &RunningBinary, name: &str, body: &str) -> Reply {
    post(format!("{}/his/{name}", bin.cloud_url()))
        .content_type("application/json")
        .body(body.to_string())
        .send()
        .await
}

async fn text(url: &str) -> String {
    let r = plain_client().get(url).send().await.expect("an answer");
    assert_eq!(r.status(), 200, "{url}");
    r.text().await.expect("a body")
}

/// `/pacs/dcm` for `query`: the status, the `X-Prefront-Error` kind and the body's length.
async fn dcm(bin: &RunningBinary, query: &str) -> (u16, Option<String>, usize) {
    let r = streaming_client()
        .get(format!("{}/pacs/dcm?{query}", bin.cloud_url()))
        .send()
        .await
        .expect("an answer");
    let status = r.status().as_u16();
    let kind = r
        .headers()
        .get("x-prefront-error")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = r.bytes().await.expect("a body");
    (status, kind, body.len())
}

/// The HIS that got the last call, and the path and body it got.
fn last(his: &MockUpstream) -> (String, Value) {
    let r = his.requests();
    let req = r.last().expect("a call reached this HIS");
    (req.path.clone(), req.json())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_go_to_the_hospital_their_hospital_id_names() {
    let c = County::new().await;
    let bin = RunningBinary::start(&c.config(true));

    // A string id: hospital 253's own HIS, the body unchanged.
    let body = json!({"hospitalId": "253", "patientName": "张三", "idCard": "110101199003077777"});
    let r = call(&bin, CARD, &body.to_string()).await;
    assert_eq!((r.status, r.error_kind()), (200, None), "{}", r.text());
    assert_eq!(r.json()["data"]["body"], body);
    assert_eq!(last(&c.his_253), (format!("/his/{CARD}"), body));
    assert_eq!(c.his_count(), [0, 1, 0]);

    // A number: hospital 254's [[hospital.route]] for its one name...
    let body = json!({"hospitalId": 254, "inpatientNo": "Z1"});
    let r = call(&bin, DEPOSIT, &body.to_string()).await;
    assert_eq!((r.status, r.error_kind()), (200, None), "{}", r.text());
    assert_eq!(last(&c.his_254), ("/deposit/getDepositRecord".into(), body));
    assert_eq!(c.his_count(), [0, 1, 1]);
    // ...and [his] for the names it does not route (it has no his of its own).
    let body = json!({"hospitalId": 254, "patientName": "李四"});
    let r = call(&bin, CARD, &body.to_string()).await;
    assert_eq!((r.status, r.error_kind()), (200, None), "{}", r.text());
    assert_eq!(last(&c.own), (format!("/his/{CARD}"), body));
    assert_eq!(c.his_count(), [1, 1, 1]);

    // No top-level hospitalId (one inside `data` does not count): [his].
    for body in [
        json!({"patientName": "王五"}),
        json!({"data": {"hospitalId": "253"}}),
    ] {
        let r = call(&bin, CARD, &body.to_string()).await;
        assert_eq!((r.status, r.error_kind()), (200, None), "{}", r.text());
        assert_eq!(last(&c.own).1, body);
    }
    assert_eq!(c.his_count(), [3, 1, 1]);

    // An id no [[hospital]] has: 40003, and no HIS hears of it.
    for body in [
        r#"{"hospitalId":"999"}"#,
        r#"{"hospitalId":999}"#,
        r#"{"hospitalId":"253,999"}"#,
    ] {
        let r = call(&bin, CARD, body).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.code().as_deref(), Some("40003"), "{body}: {}", r.text());
        assert_eq!(r.error_kind(), Some("unknown-hospital"), "{body}");
        assert!(r.json()["msg"]
            .as_str()
            .unwrap_or("")
            .contains("hospitalId"));
    }
    // A list of hospitals on different HIS routes cannot be one call.
    let r = call(&bin, CARD, r#"{"hospitalId":"253,254"}"#).await;
    assert_eq!(r.code().as_deref(), Some("40003"), "{}", r.text());
    assert_eq!(r.error_kind(), Some("not-configured"));
    assert_eq!(c.his_count(), [3, 1, 1], "nothing forwarded");

    // Hostile ids: 20003 with a message that says what is wrong, nothing forwarded.
    let long = format!(r#"{{"hospitalId":"{}"}}"#, "2".repeat(10 * 1024));
    for (body, says) in [
        (r#"{"hospitalId":{"id":"253"}}"#, "not an object"),
        (r#"{"hospitalId":["253"]}"#, "not an array"),
        (r#"{"hospitalId":""}"#, "empty"),
        (r#"{"hospitalId":"   "}"#, "empty"),
        (long.as_str(), "longer than"),
        (r#"{"hospitalId":"25\u00013"}"#, "control characters"),
        (r#"{"hospitalId":"253\n"}"#, "control characters"),
        (r#"{"hospitalId":null}"#, "not a null"),
        (r#"{"hospitalId":true}"#, "not a boolean"),
        (r#"{"hospitalId":253.5}"#, "not a number with a fraction"),
        (r#"{"hospitalId":"253,,254"}"#, "empty id"),
    ] {
        let r = call(&bin, CARD, body).await;
        let shown: String = body.chars().take(60).collect();
        assert_eq!(r.status, 200, "{shown}");
        assert_eq!(r.code().as_deref(), Some("20003"), "{shown}: {}", r.text());
        assert_eq!(r.error_kind(), Some("bad-hospital-id"), "{shown}");
        let msg = r.json()["msg"].as_str().unwrap_or("").to_string();
        assert!(
            msg.contains("hospitalId") && msg.contains(says),
            "{shown}: {msg}"
        );
        assert!(msg.len() < 300, "the message does not echo the id: {msg}");
    }
    // A body that is not JSON is still 20003 invalid-json; a duplicate hospitalId too.
    for body in [
        r#"{"hospitalId":"253""#,
        r#"{"hospitalId":"253","hospitalId":"254"}"#,
    ] {
        let r = call(&bin, CARD, body).await;
        assert_eq!(r.code().as_deref(), Some("20003"), "{body}");
        assert_eq!(r.error_kind(), Some("invalid-json"), "{body}");
    }
    assert_eq!(c.his_count(), [3, 1, 1], "nothing forwarded");

    // Each hospital's PACS; an unknown hospital's image is refused before any PACS is asked.
    assert_eq!(
        dcm(&bin, "dcmId=size-1000&hospitalId=253").await,
        (200, None, 1000)
    );
    assert_eq!(
        dcm(&bin, "dcmId=size-2000&hospitalId=254").await,
        (200, None, 2000)
    );
    let unknown = dcm(&bin, "dcmId=size-3000&hospitalId=999").await;
    assert_eq!(
        (unknown.0, unknown.1.as_deref()),
        (404, Some("unknown-hospital"))
    );
    // Without an id: [pacs] dcm_url, which this box has not.
    let none = dcm(&bin, "dcmId=size-3000").await;
    assert_eq!(
        (none.0, none.1.as_deref()),
        (404, Some("pacs-not-configured"))
    );
    let got_253 = c.pacs_253.requests();
    let got_254 = c.pacs_254.requests();
    assert_eq!(got_253.len(), 1);
    assert_eq!(got_254.len(), 1);
    assert_eq!(got_253[0].param("hospitalId"), Some("253"));
    assert_eq!(got_254[0].param("dcmId"), Some("size-2000"));

    // /metrics and /status: each hospital's own HIS targets with its id (the id comes from the
    // config, never from a call); the box's own [his] without one.
    let target = |his: &MockUpstream| format!("127.0.0.1:{}", his.port());
    let metrics = text(&bin.admin_url("/metrics")).await;
    for (series, value) in [
        (
            format!(
                r#"prefront_his_link_state{{hospital="253",target="{}",state="up"}}"#,
                target(&c.his_253)
            ),
            1.0,
        ),
        (
            format!(
                r#"prefront_his_link_state{{hospital="254",target="{}",state="up"}}"#,
                target(&c.his_254)
            ),
            1.0,
        ),
        (
            format!(
                r#"prefront_his_link_state{{target="{}",state="up"}}"#,
                target(&c.own)
            ),
            1.0,
        ),
    ] {
        assert_eq!(
            metric_sample(&metrics, &series),
            Some(value),
            "{series}\n{metrics}"
        );
    }
    assert!(!metrics.contains("hospital=\"999\""), "{metrics}");
    let status = text(&bin.admin_url("/status")).await;
    for want in [
        format!(
            r#"<tr class="his-link" data-hospital="253" data-target="{}">"#,
            target(&c.his_253)
        ),
        format!(
            r#"<tr class="his-link" data-hospital="254" data-target="{}">"#,
            target(&c.his_254)
        ),
        format!(r#"<tr class="his-link" data-target="{}">"#, target(&c.own)),
        "默认 Default (hospital 253 his)".to_string(),
    ] {
        assert!(status.contains(&want), "{want}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_adds_a_hospital() {
    let c = County::new().await;
    let path = c.config(false);
    let bin = RunningBinary::start(&path);
    let body = json!({"hospitalId": "254", "inpatientNo": "Z1"}).to_string();
    let r = call(&bin, DEPOSIT, &body).await;
    assert_eq!(r.error_kind(), Some("unknown-hospital"), "{}", r.text());
    let before = dcm(&bin, "dcmId=size-10&hospitalId=254").await;
    assert_eq!(before.1.as_deref(), Some("unknown-hospital"));

    assert_eq!(c.config(true), path);
    bin.reload();

    let r = call(&bin, DEPOSIT, &body).await;
    assert_eq!((r.status, r.error_kind()), (200, None), "{}", r.text());
    assert_eq!(c.his_count(), [0, 0, 1]);
    assert_eq!(
        dcm(&bin, "dcmId=size-10&hospitalId=254").await,
        (200, None, 10)
    );
    // The hospital that was there still is.
    let r = call(&bin, CARD, r#"{"hospitalId":"253"}"#).await;
    assert_eq!((r.status, r.error_kind()), (200, None), "{}", r.text());
    assert_eq!(c.his_count(), [0, 1, 1]);
    let metrics = text(&bin.admin_url("/metrics")).await;
    let series = format!(
        r#"prefront_his_link_state{{hospital="254",target="127.0.0.1:{}",state="up"}}"#,
        c.his_254.port()
    );
    assert_eq!(metric_sample(&metrics, &series), Some(1.0), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_probes_every_hospitals_targets() {
    let c = County::new().await;
    let path = c.config(true);
    // Hospital 254's HIS goes away: its route fails, 253's passes.
    let closed = closed_port_addr();
    let text = std::fs::read_to_string(&path).expect("the config");
    let text = text.replace(&c.his_254.url(), &format!("http://{closed}"));
    std::fs::write(&path, text).expect("written");
    let config = path.display().to_string();
    // Off the async threads: the mocks keep serving.
    let run =
        tokio::task::spawn_blocking(move || run_prefront(&["doctor", "--config", &config], None))
            .await
            .expect("runner thread");
    let line = |what: &str| -> String {
        let hits: Vec<&str> = run.stdout.lines().filter(|l| l.contains(what)).collect();
        assert_eq!(hits.len(), 1, "one line for {what:?}: {run:?}");
        hits[0].to_string()
    };
    let ok_253 = line("HIS route hospital 253 his (default)");
    assert!(ok_253.starts_with("PASS"), "{ok_253}");
    let down_254 = line(&format!("HIS route hospital 254 {DEPOSIT}"));
    assert!(
        down_254.starts_with("FAIL") && down_254.contains("connection refused"),
        "{down_254}"
    );
    for (what, pacs) in [("253", &c.pacs_253), ("254", &c.pacs_254)] {
        let l = line(&format!("PACS (hospital {what} dcm_url)"));
        assert!(
            l.starts_with("PASS") && l.contains(&pacs.host_port()),
            "{l}"
        );
    }
    assert_eq!(run.code, Some(1), "a failed route fails the run: {run:?}");
}
