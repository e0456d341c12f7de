//! `prefront demo` as a newcomer runs it: the real binary with its simulated HIS, cloud and
//! PACS; the commands its banner prints work, and taking the simulated cloud down makes calls
//! wait in the buffer until it comes back.

#[allow(unused_imports)] // the binary and the call builder, not the in-process gateway
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::{get, poll_until, post};

struct Demo {
    child: Child,
    banner: String,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_demo() -> Demo {
    let mut child = Command::new(env!("CARGO_BIN_EXE_prefront"))
        .args(["demo", "--any-ports"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("prefront demo starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut banner = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let done = line.starts_with("Stop with Ctrl-C");
            banner.push_str(&line);
            banner.push('\n');
            if done {
                let _ = tx.send(banner.clone());
            }
        }
    });
    let banner = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the demo prints its banner within 20 s");
    Demo { child, banner }
}

/// The URL on the banner line that starts with `label`.
fn url_of(banner: &str, label: &str) -> String {
    banner
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .and_then(|l| l.split_whitespace().find(|w| w.starts_with("http")))
        .map(|u| u.trim_end_matches("/status").to_string())
        .unwrap_or_else(|| panic!("no {label} URL in the banner:\n{banner}"))
}

fn depth(metrics: &str, route_part: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with("prefront_buffer_depth{") && l.contains(route_part))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_banner_commands_work_and_an_outage_is_buffered_then_drained() {
    let demo = start_demo();
    let his = url_of(&demo.banner, "HIS listener");
    let cloud = url_of(&demo.banner, "cloud listener");
    let admin = url_of(&demo.banner, "admin");
    assert!(demo.banner.contains("curl"), "{}", demo.banner);

    // 1. HIS → cloud, JSON: the simulated cloud echoes the call.
    let r = post(format!("{his}/prefront/patient/getPatientInfo"))
        .body(r#"{"medicalCardNumber":"001"}"#)
        .send()
        .await;
    assert_eq!(r.status, 200);
    let (v, body) = (r.json(), r.text());
    assert_eq!(v["code"], "10001", "{body}");
    assert_eq!(v["data"]["body"]["medicalCardNumber"], "001", "{body}");

    // 3. cloud → SOAP HIS: LAN image links come back as /files links that stream.
    let r = post(format!("{cloud}/his/hospital.interface.pacsReportDcm"))
        .body(r#"{"id":"1","medicalCardNumber":"001"}"#)
        .send()
        .await;
    assert_eq!(r.status, 200);
    let (v, body) = (r.json(), r.text());
    let link = v["data"][0]["dcms"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(link.starts_with(&format!("{cloud}/files/")), "{body}");
    assert_eq!(
        v["data"][1]["thumbnailUrl"], "http://abc.example/shotcut.png",
        "public links stay"
    );
    let r = get(&link).send().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 1 << 20, "the simulated image, whole");

    // 4. A PACS image by id.
    let r = get(format!("{cloud}/pacs/dcm?dcmId=demo-1&hospitalId=1"))
        .send()
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 1 << 20);

    // 5. Cloud down: a reminder is buffered; cloud up: it drains.
    let r = post(format!("{admin}/demo/cloud/down")).send().await;
    assert_eq!(r.status, 200);
    let r = post(format!("{his}/prefront/sendTipMessage/phyReport"))
        .body(r#"{"patientName":"张三","reportName":"血常规"}"#)
        .send()
        .await;
    assert_eq!(r.status, 200);
    assert!(
        r.queued().is_some(),
        "acknowledged from the buffer: {}",
        r.text()
    );
    let m = get(format!("{admin}/metrics")).send().await;
    assert_eq!(depth(&m.text(), "phyReport"), 1);
    let r = post(format!("{admin}/demo/cloud/up")).send().await;
    assert_eq!(r.status, 200);
    poll_until(
        Duration::from_secs(20),
        "the phyReport buffer to drain",
        async || {
            let m = get(format!("{admin}/metrics")).send().await;
            depth(&m.text(), "phyReport") == 0
        },
    )
    .await;
    // The status page renders.
    let page = get(format!("{admin}/status")).send().await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("<html"));
}
