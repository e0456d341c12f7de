//! `/status` as a person sees it: the page is rendered by headless Chromium, and every number in
//! the rendered DOM is checked against `/metrics` scraped right after. Chromium is required (CI
//! installs it in .ci/run): without it this test fails and says how to install it.
//!
//! With `PREFRONT_SCREENSHOT=<file.png>` the test also saves a 1280×900 screenshot of the page
//! (`docs/make-screenshot.sh` makes `docs/status.png` that way).
//!
//! One test in this file: the metrics are process-wide, so the totals it checks are its own.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{basic_config, closed_port_addr, plain_client, spawn_gateway, TempDir, TestGateway};

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
async fn the_status_page_shows_what_metrics_shows() {
    // Before any setup: without Chromium, skipped (or failed under CI).
    if chromium().is_none() {
        return;
    }
    let closed = closed_port_addr();
    let toml = basic_config(
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
    let toml = toml.replacen(
        "[cloud_listener]\n",
        &format!(
            "[cloud_listener]\ntls_cert = {:?}\ntls_key = {:?}\n",
            cert_path.display().to_string(),
            key_path.display().to_string()
        ),
        1,
    );
    let gw = spawn_gateway(&toml).await;
    let client = plain_client();
    for (path, n) in [
        ("prefront/sendTipMessage/phyReport", 2),
        ("prefront/sendTipMessage/payment", 1),
    ] {
        for i in 0..n {
            let r = client
                .post(format!("{}/{path}", gw.his_url()))
                .body(format!(r#"{{"patientName":"张三","n":{i}}}"#))
                .send()
                .await
                .expect("answers");
            assert_eq!(r.status(), 200);
            assert!(
                r.headers().contains_key("x-prefront-queued"),
                "{path} buffered"
            );
        }
    }
    let r = client
        .post(format!("{}/prefront/no/such/interface", gw.his_url()))
        .header("x-request-id", "status-page-test-1")
        .body("{}")
        .send()
        .await
        .expect("answers");
    assert_eq!(
        r.headers()
            .get("x-prefront-error")
            .and_then(|v| v.to_str().ok()),
        Some("unknown-path")
    );

    // The page itself, as served.
    let url = admin_url(&gw, "/status");
    let r = client.get(&url).send().await.expect("status answers");
    assert_eq!(r.status(), 200);
    let header = |n: &str| {
        r.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
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
