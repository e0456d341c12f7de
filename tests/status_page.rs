//! `/status` as a person sees it: the page is rendered by headless Chromium, and every number in
//! the rendered DOM is checked against `/metrics` scraped right after. Chromium is required (CI
//! installs it in .ci/run): without it this test fails and says how to install it.
//!
//! With `PREFRONT_SCREENSHOT=<file.png>` the test also saves a 1280×900 screenshot of the page
//! (`docs/make-screenshot.sh` makes `docs/status.png` that way).
//!
//! Then an operator uses the page in Chromium, driven over the DevTools protocol as a person
//! would (typing, clicking; the page runs no script and the test injects none): the search box
//! finds a queued reminder by its request id, and a dead letter's retry button, with the admin
//! token typed, puts the message back in the queue.
//!
//! One test in this file: the metrics are process-wide, so the totals it checks are its own.

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{
    basic_config, closed_port_addr, get, plain_client, post, read_json, spawn_gateway, ConfigToml,
    MockUpstream, TempDir, TestGateway,
};

/// How long one Chromium run may take before it (and every process it started) is killed.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(60);

/// Chromium on PATH, as `which chromium` finds it. When it is not installed: under CI (env `CI`
/// set, as `.ci/run` installs it) the test fails naming the install step; on a newcomer's machine
/// it is skipped with a one-line note.
fn chromium() -> Option<PathBuf> {
    let found = Command::new("which")
        .arg("chromium")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    if found.is_none() {
        let note = "chromium is not installed (`which chromium` found nothing): this test renders \
                    /status in headless Chromium. Install it with `apt-get install chromium` \
                    (.ci/run does this in CI).";
        if std::env::var_os("CI").is_some() {
            panic!("{note}");
        }
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "SKIPPED status_page: {note}");
    }
    found
}

/// Runs headless Chromium on `url` with `args` (`--dump-dom`, `--screenshot=…`) under
/// `timeout`, which kills Chromium's whole process group after `CHROMIUM_TIMEOUT`. Returns
/// stdout.
async fn run_chromium(url: &str, args: &[String]) -> String {
    let chromium = chromium().expect("checked at the start of the test");
    let profile = TempDir::new("prefront-chromium");
    let mut cmd = Command::new("timeout");
    cmd.arg("--kill-after=5")
        .arg(format!("{}", CHROMIUM_TIMEOUT.as_secs()))
        .arg(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-dev-shm-usage",
            "--disable-extensions",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .env("HOME", profile.path())
        .stdin(Stdio::null());
    let what = format!("{cmd:?}");
    // The gateway runs on this runtime: Chromium's page load needs it free.
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("the chromium task")
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    drop(profile);
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => {}
        Some(124) | Some(137) | None => panic!(
            "chromium did not finish within {CHROMIUM_TIMEOUT:?} and was killed: {what}\n{stderr}"
        ),
        Some(c) => panic!("chromium exited with {c}: {what}\n{stderr}"),
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One element of the dumped DOM: its attributes and its text (tags inside removed).
#[derive(Debug)]
struct Element {
    attrs: HashMap<String, String>,
    text: String,
}

impl Element {
    fn attr(&self, name: &str) -> &str {
        self.attrs.get(name).map_or("", String::as_str)
    }
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// The elements of `dom` (as Chromium serialises it: attribute values in double quotes) that
/// have attribute `having`. Enough for the page's own markup, which nests no element inside one
/// of the same name.
fn elements(dom: &str, having: &str) -> Vec<Element> {
    let mut found = Vec::new();
    let mut rest = dom;
    while let Some(start) = rest.find('<') {
        rest = &rest[start + 1..];
        let name_end = rest
            .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
            .unwrap_or(rest.len());
        let name = rest[..name_end].to_string();
        if name.is_empty() || name.starts_with('!') {
            continue;
        }
        // Attributes up to the tag's `>` (a `>` inside a quoted value does not end it).
        let mut attrs = HashMap::new();
        let mut s = &rest[name_end..];
        loop {
            s = s.trim_start();
            if s.starts_with('>') || s.starts_with("/>") || s.is_empty() {
                break;
            }
            let key_end = s
                .find(|c: char| c == '=' || c.is_whitespace() || c == '>')
                .unwrap_or(s.len());
            let key = s[..key_end].to_string();
            s = &s[key_end..];
            if let Some(after) = s.strip_prefix("=\"") {
                let end = after.find('"').expect("a closed attribute value");
                attrs.insert(key, unescape(&after[..end]));
                s = &after[end + 1..];
            } else {
                attrs.insert(key, String::new());
            }
        }
        let open_end = s.find('>').map_or(s.len(), |i| i + 1);
        rest = &s[open_end..];
        if !attrs.contains_key(having) {
            continue;
        }
        let close = format!("</{name}>");
        let inner = &rest[..rest.find(&close).unwrap_or(0)];
        let mut text = String::new();
        let mut in_tag = false;
        for c in inner.chars() {
            match c {
                '<' => in_tag = true,
                '>' => in_tag = false,
                c if !in_tag => text.push(c),
                _ => {}
            }
        }
        found.push(Element {
            attrs,
            text: unescape(text.trim()),
        });
    }
    found
}

/// A self-signed certificate for localhost that expires `days` days from today (UTC), and its
/// key, written to `dir`.
fn certificate_expiring_in(dir: &Path, days: u64) -> (PathBuf, PathBuf) {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let (date, _) = prefront::listener::status::local_time(now_ms + days * 86_400_000, 0);
    let ymd: Vec<u32> = date[..10].split('-').map(|p| p.parse().unwrap()).collect();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.not_after = rcgen::date_time_ymd(ymd[0] as i32, ymd[1] as u8, ymd[2] as u8);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert_path, key_path)
}

fn sample(metrics: &str, series: &str) -> Option<f64> {
    support::metric_sample(metrics, series)
}

fn admin_url(gw: &TestGateway, path: &str) -> String {
    gw.admin_url(path)
}

async fn scrape(gw: &TestGateway) -> String {
    gw.metrics().await
}

/// The DOM cell for one series: exactly one must exist.
fn cell<'a>(cells: &'a [Element], metric: &str, filter: &[(&str, &str)]) -> &'a Element {
    let hits: Vec<&Element> = cells
        .iter()
        .filter(|e| e.attr("data-metric") == metric && filter.iter().all(|(k, v)| e.attr(k) == *v))
        .collect();
    assert_eq!(hits.len(), 1, "one {metric} {filter:?} cell: {hits:?}");
    hits[0]
}

fn num(e: &Element) -> f64 {
    e.attr("data-value")
        .parse()
        .unwrap_or_else(|_| panic!("a number in {e:?}"))
}

/// The calls total of `/metrics` by the page's classes: ok (ok, wsdl, cached-result), queued,
/// failed (every other outcome).
fn calls_by_class(metrics: &str) -> HashMap<&'static str, f64> {
    let mut by = HashMap::from([("ok", 0.0), ("queued", 0.0), ("failed", 0.0)]);
    for l in metrics.lines() {
        let Some(rest) = l.strip_prefix("prefront_calls_total{") else {
            continue;
        };
        let outcome = rest
            .split("outcome=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .expect("an outcome label");
        let v: f64 = l.rsplit(' ').next().unwrap().parse().unwrap();
        let class = match outcome {
            "ok" | "wsdl" | "cached-result" => "ok",
            "queued" => "queued",
            _ => "failed",
        };
        *by.get_mut(class).unwrap() += v;
    }
    by
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_what_metrics_shows_and_operators_act_on_it() {
    // Before any setup: without Chromium, skipped (or failed under CI).
    if chromium().is_none() {
        return;
    }
    the_status_page_shows_what_metrics_shows().await;
    an_operator_finds_a_reminder_and_retries_a_dead_letter().await;
}

async fn the_status_page_shows_what_metrics_shows() {
    let closed = closed_port_addr();
    let toml = ConfigToml::basic(
        &format!("https://{closed}/"),
        None,
        Some(&format!("http://{closed}/his/{{method}}")),
        &format!(
            r#"
[[his.route]]
name = "hospital.interface.createCard"
url = "http://127.0.0.1:{port}/card"

[admin]
listen = "127.0.0.1:0"
"#,
            port = closed.port()
        ),
    );
    // The cloud listener has a certificate that expires in 90 days, so the page shows its expiry.
    let certs_dir = TempDir::new("prefront-status-cert");
    let (cert_path, key_path) = certificate_expiring_in(certs_dir.path(), 90);
    let toml = toml
        .set_path("cloud_listener.tls_cert", &cert_path)
        .set_path("cloud_listener.tls_key", &key_path)
        .render();
    let gw = spawn_gateway(&toml).await;
    let client = plain_client();
    for (path, n) in [
        ("prefront/sendTipMessage/phyReport", 2),
        ("prefront/sendTipMessage/payment", 1),
    ] {
        for i in 0..n {
            let r = post(format!("{}/{path}", gw.his_url()))
                .via(&client)
                .body(format!(r#"{{"patientName":"张三","n":{i}}}"#))
                .send()
                .await;
            assert_eq!(r.status, 200);
            assert!(r.queued().is_some(), "{path} buffered");
        }
    }
    let r = post(format!("{}/prefront/no/such/interface", gw.his_url()))
        .via(&client)
        .header("x-request-id", "status-page-test-1")
        .body("{}")
        .send()
        .await;
    assert_eq!(r.error_kind(), Some("unknown-path"));

    // The page itself, as served.
    let url = admin_url(&gw, "/status");
    let r = get(&url).via(&client).send().await;
    assert_eq!(r.status, 200);
    let header = |n: &str| r.header(n).unwrap_or_default().to_string();
    assert_eq!(header("content-type"), "text/html; charset=utf-8");
    assert!(header("content-security-policy").contains("default-src 'none'"));

    // Rendered, then /metrics right after. The link is probed in the background; a probe in
    // flight shows as "probing" for a moment, so a pair that caught one is taken again.
    let mut taken = None;
    for _ in 0..3 {
        let dom = run_chromium(&url, &["--dump-dom".to_string()]).await;
        let metrics = scrape(&gw).await;
        let cells = elements(&dom, "data-metric");
        let shown = cell(&cells, "prefront_cloud_link_state", &[])
            .attr("data-value")
            .to_string();
        let exposed = ["up", "down", "probing"]
            .into_iter()
            .find(|s| {
                sample(
                    &metrics,
                    &format!("prefront_cloud_link_state{{state=\"{s}\"}}"),
                ) == Some(1.0)
            })
            .expect("one link state is 1");
        taken = Some((dom, metrics, shown.clone(), exposed));
        if shown == "down" && exposed == "down" {
            break;
        }
    }
    let (dom, metrics, shown, exposed) = taken.unwrap();
    assert_eq!(
        (shown.as_str(), exposed),
        ("down", "down"),
        "the cloud is down"
    );
    assert!(dom.contains("云平台连接 Cloud link"), "{dom}");
    let cells = elements(&dom, "data-metric");

    // Buffer per route: every route on the page matches /metrics, and the two routes hold
    // what was sent.
    let depths: Vec<&Element> = cells
        .iter()
        .filter(|e| e.attr("data-metric") == "prefront_buffer_depth")
        .collect();
    assert_eq!(depths.len(), 2, "two routes wait: {depths:?}");
    for d in &depths {
        let route = d.attr("data-route");
        let series = |m: &str| format!("{m}{{route=\"{route}\"}}");
        assert_eq!(
            Some(num(d)),
            sample(&metrics, &series("prefront_buffer_depth")),
            "{route} depth"
        );
        assert_eq!(d.text, d.attr("data-value"));
        let dead = cell(
            &cells,
            "prefront_buffer_dead_letters",
            &[("data-route", route)],
        );
        assert_eq!(
            Some(num(dead)),
            sample(&metrics, &series("prefront_buffer_dead_letters")),
            "{route} dead letters"
        );
        assert_eq!(num(dead), 0.0);
        let age = cell(
            &cells,
            "prefront_buffer_oldest_age_seconds",
            &[("data-route", route)],
        );
        let later = sample(&metrics, &series("prefront_buffer_oldest_age_seconds")).unwrap();
        assert!(
            later >= num(age) && later - num(age) <= 120.0,
            "{route} age: page {} then metrics {later}",
            num(age)
        );
        assert!(age.text.ends_with(" s"), "people read an age: {}", age.text);
    }
    // `data-route` is the series' label: buffered calls to the cloud are `cloud:<path>`.
    let depth_of = |route: &str| {
        num(cell(
            &cells,
            "prefront_buffer_depth",
            &[("data-route", route)],
        ))
    };
    assert_eq!(depth_of("cloud:prefront/sendTipMessage/phyReport"), 2.0);
    assert_eq!(depth_of("cloud:prefront/sendTipMessage/payment"), 1.0);

    for (metric, id) in [
        ("prefront_buffer_used_bytes", "buffer-used"),
        ("prefront_buffer_max_bytes", "buffer-max"),
        ("prefront_buffer_delivered_total", "buffer-delivered"),
        (
            "prefront_buffer_dead_lettered_total",
            "buffer-dead-lettered",
        ),
        ("prefront_buffer_not_accepted_total", "buffer-not-accepted"),
        ("prefront_streamed_bytes_total", "streamed-bytes"),
    ] {
        let c = cell(&cells, metric, &[("id", id)]);
        assert_eq!(Some(num(c)), sample(&metrics, metric), "{metric}");
    }
    assert!(num(cell(&cells, "prefront_buffer_used_bytes", &[])) > 0.0);

    // Calls: the page's ok/queued/failed are /metrics' calls total by outcome, added up.
    let by = calls_by_class(&metrics);
    for (class, id, expected) in [
        ("ok", "calls-ok", 0.0),
        ("queued", "calls-queued", 3.0),
        ("failed", "calls-failed", 1.0),
    ] {
        let c = cell(&cells, "prefront_calls_total", &[("id", id)]);
        assert_eq!(num(c), by[class], "calls {class}");
        assert_eq!(num(c), expected, "calls {class} made by this test");
    }

    let up = num(cell(&cells, "prefront_uptime_seconds", &[]));
    let later = sample(&metrics, "prefront_uptime_seconds").unwrap();
    assert!(
        later >= up && later - up <= 120.0,
        "uptime {up} then {later}"
    );
    let version = cell(&cells, "prefront_build_info", &[]);
    assert_eq!(version.text, env!("CARGO_PKG_VERSION"));
    assert_eq!(
        sample(
            &metrics,
            &format!("prefront_build_info{{version=\"{}\"}}", version.text)
        ),
        Some(1.0)
    );

    // The unknown path is in the error list; the queued calls are not errors.
    let errors = elements(&dom, "data-outcome");
    let unknown: Vec<&Element> = errors
        .iter()
        .filter(|e| e.attr("data-outcome") == "unknown-path")
        .collect();
    assert_eq!(unknown.len(), 1, "{errors:?}");
    let e = unknown[0];
    assert_eq!(e.attr("data-request-id"), "status-page-test-1");
    assert_eq!(e.attr("data-route"), "unknown");
    assert_eq!(e.attr("data-direction"), "his_to_cloud");
    assert_eq!(e.attr("data-status"), "200");
    assert!(e.text.contains("status-page-test-1"), "{}", e.text);
    assert!(
        errors.iter().all(|e| e.attr("data-outcome") != "queued"),
        "queued calls are not errors: {errors:?}"
    );

    // HIS targets: the default route's and the named route's (both at the closed port, so one
    // row), never called yet: "unknown" on the page and in /metrics alike.
    let his = elements(&dom, "data-target")
        .into_iter()
        .filter(|e| e.attr("class") == "his-link")
        .collect::<Vec<_>>();
    assert_eq!(his.len(), 1, "one target for both routes: {his:?}");
    assert_eq!(his[0].attr("data-target"), closed.to_string());
    assert!(his[0].text.contains("默认 Default"), "{:?}", his[0]);
    assert!(
        his[0].text.contains("hospital.interface.createCard"),
        "{:?}",
        his[0]
    );
    let his_state = cell(
        &cells,
        "prefront_his_link_state",
        &[("data-target", &closed.to_string())],
    );
    assert_eq!(his_state.attr("data-value"), "unknown");
    assert_eq!(
        sample(
            &metrics,
            &format!(r#"prefront_his_link_state{{target="{closed}",state="unknown"}}"#)
        ),
        Some(1.0)
    );
    // Certificates: the cloud listener's, read from its tls_cert as /metrics reads it; the HIS
    // listener has none.
    let certs = elements(&dom, "data-listener");
    assert_eq!(certs.len(), 1, "{certs:?}");
    let c = cell(
        &cells,
        "prefront_tls_cert_expiry_seconds",
        &[("data-listener", "cloud")],
    );
    let left = num(c);
    let later = sample(
        &metrics,
        r#"prefront_tls_cert_expiry_seconds{listener="cloud"}"#,
    )
    .expect("the cloud certificate's expiry in /metrics");
    assert!(
        later <= left && left - later <= 120.0,
        "page {left} s then metrics {later} s"
    );
    let days = (left / 86_400.0).floor();
    assert!((88.0..=90.0).contains(&days), "about 90 days: {c:?}");
    assert_eq!(c.attr("data-days-left"), days.to_string(), "{c:?}");
    assert!(c.text.contains(&format!("{days} days left")), "{c:?}");
    assert_eq!(
        sample(
            &metrics,
            r#"prefront_tls_cert_expiry_seconds{listener="his"}"#
        ),
        None
    );

    if let Some(path) = std::env::var_os("PREFRONT_SCREENSHOT") {
        let path = std::path::absolute(Path::new(&path)).expect("a path");
        let _ = std::fs::remove_file(&path);
        run_chromium(
            &url,
            &[
                format!("--screenshot={}", path.display()),
                "--window-size=1280,900".to_string(),
            ],
        )
        .await;
        let png = std::fs::read(&path).expect("chromium wrote the screenshot");
        assert!(png.starts_with(b"\x89PNG"), "a PNG at {}", path.display());
    }
    gw.shutdown().await;
}

/// Chromium driven over the DevTools protocol (`--remote-debugging-pipe`: JSON messages ending
/// in NUL on its fds 3 and 4, here two FIFOs) as a person uses a page: typing and clicking at an
/// element's place on the screen. The whole Chromium process group goes after
/// `CHROMIUM_TIMEOUT` at the latest; every wait here is bounded.
struct Browser {
    child: std::process::Child,
    to: std::fs::File,
    from: mpsc::Receiver<Value>,
    next_id: u64,
    session: String,
    /// Events read while waiting for an answer.
    events: Vec<Value>,
    profile: TempDir,
}

/// How long one protocol answer or page load may take.
const CDP_WAIT: Duration = Duration::from_secs(20);

impl Browser {
    /// Starts Chromium with a 1280×1600 tab. Blocking: run it off the gateway's runtime.
    fn start() -> Browser {
        let chromium = chromium().expect("checked at the start of the test");
        let profile = TempDir::new("prefront-cdp");
        let to_path = profile.path().join("to-chromium");
        let from_path = profile.path().join("from-chromium");
        for p in [&to_path, &from_path] {
            let ok = Command::new("mkfifo")
                .arg(p)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "mkfifo {}", p.display());
        }
        let stderr = std::fs::File::create(profile.path().join("stderr.txt")).expect("a file");
        let child = Command::new("timeout")
            .arg("--kill-after=5")
            .arg(format!("{}", CHROMIUM_TIMEOUT.as_secs()))
            .args(["sh", "-c", r#"exec "$0" "$@" 3<"$CDP_TO" 4>"$CDP_FROM""#])
            .arg(&chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-dev-shm-usage",
                "--disable-extensions",
                "--no-first-run",
                "--hide-scrollbars",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .env("CDP_TO", &to_path)
            .env("CDP_FROM", &from_path)
            .env("HOME", profile.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("chromium starts");
        // The shell opens its ends in this order before it becomes Chromium.
        let to = std::fs::OpenOptions::new()
            .write(true)
            .open(&to_path)
            .expect("the pipe to chromium");
        let from = std::fs::File::open(&from_path).expect("the pipe from chromium");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(from);
            loop {
                let mut buf = Vec::new();
                match r.read_until(0, &mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        buf.pop();
                        if let Ok(v) = serde_json::from_slice::<Value>(&buf) {
                            if tx.send(v).is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        });
        let mut b = Browser {
            child,
            to,
            from: rx,
            next_id: 0,
            session: String::new(),
            events: Vec::new(),
            profile,
        };
        let target = b.call("Target.createTarget", json!({ "url": "about:blank" }));
        let target_id = target["targetId"].as_str().expect("a target").to_string();
        let attached = b.call(
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
        );
        b.session = attached["sessionId"]
            .as_str()
            .expect("a session")
            .to_string();
        b.call("Page.enable", json!({}));
        b.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": 1280, "height": 1600, "deviceScaleFactor": 1, "mobile": false }),
        );
        b
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.profile.path().join("stderr.txt")).unwrap_or_default()
    }

    /// Sends `method` (to the tab once attached) and returns its result.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&msg).expect("JSON");
        bytes.push(0);
        self.to
            .write_all(&bytes)
            .unwrap_or_else(|e| panic!("{method}: chromium is gone ({e})\n{}", self.stderr()));
        let deadline = Instant::now() + CDP_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self.from.recv_timeout(left).unwrap_or_else(|e| {
                panic!("{method}: no answer from chromium ({e})\n{}", self.stderr())
            });
            if v["id"].as_u64() == Some(id) {
                if let Some(err) = v.get("error") {
                    panic!("{method}: {err}");
                }
                return v["result"].clone();
            }
            self.events.push(v);
        }
    }

    /// Waits for the tab's next `Page.loadEventFired` after `events` was cleared.
    fn wait_loaded(&mut self) {
        let deadline = Instant::now() + CDP_WAIT;
        loop {
            if self
                .events
                .iter()
                .any(|e| e["method"] == "Page.loadEventFired")
            {
                self.events.clear();
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .from
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no page load ({e})\n{}", self.stderr()));
            self.events.push(v);
        }
    }

    fn navigate(&mut self, url: &str) {
        self.events.clear();
        self.call("Page.navigate", json!({ "url": url }));
        self.wait_loaded();
    }

    /// The page as the browser holds it now.
    fn dom(&mut self) -> String {
        let doc = self.call("DOM.getDocument", json!({ "depth": 0 }));
        let root = doc["root"]["nodeId"].clone();
        self.call("DOM.getOuterHTML", json!({ "nodeId": root }))["outerHTML"]
            .as_str()
            .expect("HTML")
            .to_string()
    }

    /// Clicks the middle of the element `selector` names, as a mouse does.
    fn click(&mut self, selector: &str) {
        let doc = self.call("DOM.getDocument", json!({ "depth": 0 }));
        let root = doc["root"]["nodeId"].clone();
        let node = self.call(
            "DOM.querySelector",
            json!({ "nodeId": root, "selector": selector }),
        )["nodeId"]
            .clone();
        assert_ne!(node, json!(0), "no element {selector} on the page");
        self.call("DOM.scrollIntoViewIfNeeded", json!({ "nodeId": node }));
        let quads = self.call("DOM.getContentQuads", json!({ "nodeId": node }));
        let q: Vec<f64> = quads["quads"][0]
            .as_array()
            .unwrap_or_else(|| panic!("{selector} is not shown: {quads}"))
            .iter()
            .filter_map(Value::as_f64)
            .collect();
        assert_eq!(q.len(), 8, "{quads}");
        let x = (q[0] + q[2] + q[4] + q[6]) / 4.0;
        let y = (q[1] + q[3] + q[5] + q[7]) / 4.0;
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({ "type": kind, "x": x, "y": y, "button": "left", "clickCount": 1 }),
            );
        }
    }

    /// Clicks `selector` and waits for the page it leads to.
    fn click_and_wait(&mut self, selector: &str) {
        self.events.clear();
        self.click(selector);
        self.wait_loaded();
    }

    /// Types `text` where the focus is, as a keyboard would.
    fn type_text(&mut self, text: &str) {
        self.call("Input.insertText", json!({ "text": text }));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let mut bytes =
            serde_json::to_vec(&json!({ "id": 0, "method": "Browser.close" })).unwrap_or_default();
        bytes.push(0);
        let _ = self.to.write_all(&bytes);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // `timeout` kills Chromium's group when its own time is up.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const TOKEN: &str = "f00dfeedf00dfeedf00dfeedf00dfeed";

/// The JSON API with the token: `GET path`.
async fn api(gw: &TestGateway, path: &str) -> Value {
    let r = plain_client()
        .get(gw.admin_url(path))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("the API answers");
    read_json(r).await
}

async fn notify(gw: &TestGateway, path: &str, request_id: &str) -> String {
    let r = plain_client()
        .post(format!("{}/{path}", gw.his_url()))
        .header("x-request-id", request_id)
        .body(r#"{"patientName":"张三","reportName":"血常规"}"#)
        .send()
        .await
        .expect("answers");
    r.headers()
        .get("x-prefront-queued")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("{path} buffered: {:?}", r.headers()))
        .to_string()
}

/// Polls `f` every 50 ms for up to 15 s.
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f().await {
        assert!(Instant::now() < deadline, "{what}: not within 15 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn an_operator_finds_a_reminder_and_retries_a_dead_letter() {
    let dir = TempDir::new("prefront-status-ops");
    let token_file = dir.path().join("admin.token");
    support::write_secret(&token_file, &format!("{TOKEN}\n"));
    // The cloud is down while two reminders arrive; then it refuses the payment reminder (400:
    // a dead letter) and stays busy (503) for the report reminder, which waits in the queue.
    let cloud = MockUpstream::http().await;
    cloud.set_down(true);
    let toml = basic_config(
        &format!("{}/", cloud.url()),
        None,
        None,
        &format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = {:?}\n\n[buffer]\npath = {:?}\nretry_min = \"50ms\"\nretry_max = \"300ms\"\n",
            token_file.display().to_string(),
            dir.path().join("buffer").display().to_string(),
        ),
    );
    let gw = spawn_gateway(&toml).await;
    let dead_id = notify(&gw, "prefront/sendTipMessage/payment", "status-ops-payment").await;
    notify(
        &gw,
        "prefront/sendTipMessage/phyReport",
        "status-ops-report",
    )
    .await;
    cloud.respond("/prefront/sendTipMessage/phyReport", 503, "busy");
    cloud.respond(
        "/prefront/sendTipMessage/payment",
        400,
        r#"{"error":"refused"}"#,
    );
    cloud.set_down(false);
    let path = format!("/api/queue/messages/{dead_id}");
    eventually("the payment reminder is dead", || async {
        api(&gw, &path).await["state"] == "dead"
    })
    .await;
    // A retried message waits in the queue from now on.
    cloud.respond("/prefront/sendTipMessage/payment", 503, "busy");
    // The trail is written once a second.
    eventually("the report reminder is in the trail", || async {
        api(&gw, "/api/trail?request_id=status-ops-report").await["entries"]
            .as_array()
            .is_some_and(|e| !e.is_empty())
    })
    .await;

    let status = gw.admin_url("/status");
    let dead_row = format!(r#"tr.dead-letter[data-id="{dead_id}"]"#);
    let (search_dom, notice_dom) = tokio::task::spawn_blocking(move || {
        let mut b = Browser::start();
        b.navigate(&status);
        let dom = b.dom();
        assert!(
            dom.contains(r#"data-request-id="status-ops-payment""#),
            "the dead letter is listed:\n{dom}"
        );
        assert!(
            !dom.contains(r#"http-equiv="refresh""#),
            "a page asking for the token does not reload under the typing"
        );
        // The search box: type the request id, press the button.
        b.click("#q");
        b.type_text("status-ops-report");
        b.click_and_wait("#search-button");
        let search_dom = b.dom();
        // The dead letter's retry button, with the token typed.
        b.click("#token");
        b.type_text(TOKEN);
        b.click_and_wait(&format!("{dead_row} button[id^=\"retry-\"]"));
        let notice_dom = b.dom();
        (search_dom, notice_dom)
    })
    .await
    .expect("the browser session");

    // The search found the queued reminder by its request id, with its history.
    let found = elements(&search_dom, "data-outcome")
        .into_iter()
        .filter(|e| e.attr("class") == "trail-entry")
        .collect::<Vec<_>>();
    assert_eq!(found.len(), 1, "{search_dom}");
    assert_eq!(found[0].attr("data-request-id"), "status-ops-report");
    assert_eq!(found[0].attr("data-outcome"), "queued", "{:?}", found[0]);
    assert!(
        found[0].text.contains("received → queued"),
        "{:?}",
        found[0]
    );
    assert!(search_dom.contains(r#"data-by="request_id""#));
    assert!(
        search_dom.contains(r#"value="status-ops-report""#),
        "the box keeps the text"
    );

    // The retry: the page says so, the dead letter is gone, the message waits in the queue.
    assert!(
        !notice_dom.contains(&format!(r#"class="dead-letter" data-id="{dead_id}""#)),
        "{notice_dom}"
    );
    let queued = api(&gw, "/api/queue/messages?dead=false").await;
    let requeued = queued["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["request_id"] == "status-ops-payment")
        .map(|m| m["id"].to_string())
        .unwrap_or_else(|| panic!("back in the queue: {queued}"));
    // The notice names the id the message has in its queue now (a retry gives a new one).
    let notice = elements(&notice_dom, "data-notice");
    assert_eq!(notice.len(), 1, "{notice_dom}");
    assert_eq!(notice[0].attr("data-notice"), format!("retried-{requeued}"));
    // Audited, and in the message's trail.
    eventually("the retry is in the trail", || async {
        let t = api(&gw, "/api/trail?request_id=status-ops-payment").await;
        t["entries"][0]["history"]
            .as_array()
            .is_some_and(|h| h.iter().any(|s| s["event"] == "requeued"))
    })
    .await;
    let audit = api(&gw, "/api/trail?outcome=audit").await;
    assert!(
        audit["entries"].as_array().into_iter().flatten().any(|e| {
            e["history"][0]["event"] == "retry"
                && e["history"][0]["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("(status page)"))
        }),
        "{audit}"
    );
    gw.shutdown().await;
}
