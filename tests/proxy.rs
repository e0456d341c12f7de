//! `[cloud] proxy` (DESIGN.md §9): the real binary reaches a simulated HTTPS cloud through a
//! real HTTP CONNECT proxy (Debian's tinyproxy, started here on a loopback port with a config
//! this file writes, stopped by its PID), TLS end to end; HIS calls never go through it; a proxy
//! that is down or refuses is 10003 with a kind that says so, and buffered calls wait for it.
//!
//! Without tinyproxy the proxy tests are skipped with a one-line note, unless `CI` is set (then
//! they fail: `.ci/run` installs it). The `check` tests need nothing.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const GET_PATIENT_INFO: &str = "prefront/patient/getPatientInfo";
const CLOUD_ANSWER: &str = r#"{"success":true,"msg":"成功","code":"10001","data":{"name":"张三"}}"#;
const NOTIFY: &str = "prefront/sendTipMessage/payment";
const QUERY_BALANCE: &str = "hospital.interface.queryBalance";
/// The proxy password of these tests: it must never appear in the gateway's log or output.
const PASSWORD: &str = "pw-Zq81-never-logged";

// ---------------------------------------------------------------------------
// tinyproxy
// ---------------------------------------------------------------------------

fn tinyproxy_bin() -> Option<PathBuf> {
    ["tinyproxy", "/usr/bin/tinyproxy", "/usr/sbin/tinyproxy"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("-v")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(PathBuf::from)
}

/// tinyproxy's path; `None` (the test is skipped, with a note) when it is missing, unless `CI`
/// is set: then it is a failure, `.ci/run` installs it.
fn tinyproxy_or_skip(test: &str) -> Option<PathBuf> {
    let bin = tinyproxy_bin();
    if bin.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: tinyproxy is missing but CI is set (.ci/run installs it)"
        );
        eprintln!("skipped {test}: tinyproxy is not installed (apt-get install -y tinyproxy)");
    }
    bin
}

/// A tinyproxy on `127.0.0.1:<port>` that allows CONNECT to the cloud's port only, logs every
/// request to a file, and, with `auth`, asks for basic credentials. Killed on drop.
struct Tinyproxy {
    bin: PathBuf,
    dir: TempDir,
    port: u16,
    child: Option<Child>,
}

impl Tinyproxy {
    fn start(bin: PathBuf, cloud_port: u16, auth: Option<(&str, &str)>) -> Tinyproxy {
        let dir = TempDir::new("prefront-tinyproxy");
        let port = closed_port_addr().port();
        let auth = auth
            .map(|(u, p)| format!("BasicAuth {u} {p}\n"))
            .unwrap_or_default();
        let conf = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 30\nLogFile \"{}\"\nLogLevel Info\n\
             MaxClients 50\nAllow 127.0.0.1\nConnectPort {cloud_port}\n{auth}",
            dir.path().join("tinyproxy.log").display()
        );
        std::fs::write(dir.path().join("tinyproxy.conf"), conf).expect("write tinyproxy.conf");
        let mut t = Tinyproxy {
            bin,
            dir,
            port,
            child: None,
        };
        t.run();
        t
    }

    /// Starts the proxy (again, on the same port) and waits until it accepts connections.
    fn run(&mut self) {
        assert!(self.child.is_none(), "tinyproxy runs already");
        for _ in 0..50 {
            // -d: in the foreground, so the PID is the proxy's own.
            let mut child = Command::new(&self.bin)
                .arg("-d")
                .arg("-c")
                .arg(self.dir.path().join("tinyproxy.conf"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("tinyproxy starts");
            for _ in 0..100 {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // exited: the port is not free yet
                }
                if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    self.child = Some(child);
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "tinyproxy did not listen on port {}:\n{}",
            self.port,
            self.log()
        );
    }

    /// SIGKILL to its PID: the proxy is gone, its connections cut.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tinyproxy.log")).unwrap_or_default()
    }

    /// How many requests for `CONNECT <host_port>` the proxy has logged.
    fn connects_to(&self, host_port: &str) -> usize {
        let needle = format!("CONNECT {host_port} HTTP/");
        self.log().lines().filter(|l| l.contains(&needle)).count()
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------
// The gateway (the real binary) and its peers
// ---------------------------------------------------------------------------

struct Setup {
    pki: TestPki,
    cloud: MockUpstream,
    his: MockUpstream,
    dir: TempDir,
}

impl Setup {
    async fn new() -> Setup {
        let pki = TestPki::new();
        let cloud = MockUpstream::https(&pki).await;
        cloud.respond(&format!("/{GET_PATIENT_INFO}"), 200, CLOUD_ANSWER);
        let his = MockUpstream::http().await;
        his.echo();
        Setup {
            pki,
            cloud,
            his,
            dir: TempDir::new("prefront-proxy-test"),
        }
    }

    /// `localhost:<port>`: what the box asks the proxy for.
    fn cloud_host_port(&self) -> String {
        format!("localhost:{}", self.cloud.port())
    }

    /// The gateway's config `<name>.toml` (and its own buffer): the HTTPS cloud through
    /// `proxy_url`, with `user:password` in a private `proxy_auth_file` when `auth` is given.
    fn config(&self, name: &str, proxy_url: &str, auth: Option<(&str, &str)>) -> PathBuf {
        let mut c = ConfigToml::basic(
            &self.cloud.url(),
            Some(&self.pki.ca_pem_path()),
            Some(&format!("{}/his/{{name}}", self.his.url())),
            "",
        )
        .set("cloud.proxy", proxy_url)
        .set_path(
            "buffer.path",
            &self.dir.path().join(format!("{name}-buffer")),
        )
        .set("buffer.retry_min", "50ms")
        .set("buffer.retry_max", "400ms")
        // Everything reqwest and hyper say about the proxy is in the log the test reads.
        .set("log.level", "debug");
        if let Some((user, password)) = auth {
            let file = self.dir.path().join(format!("{name}.auth"));
            std::fs::write(&file, format!("{user}:{password}\n")).expect("write proxy.auth");
            chmod(&file, 0o600);
            c = c.set_path("cloud.proxy_auth_file", &file);
        }
        c.write(&self.dir.path().join(format!("{name}.toml")))
    }

    /// The binary with `config`; every proxy variable of the environment points at `env_proxy`,
    /// which the box must ignore (HIS calls never use a proxy, the cloud only its configured one).
    fn start(&self, config: &Path, env_proxy: &str) -> RunningBinary {
        let v = std::ffi::OsStr::new(env_proxy);
        RunningBinary::start_with_env(
            config,
            &[
                ("HTTP_PROXY", v),
                ("HTTPS_PROXY", v),
                ("ALL_PROXY", v),
                ("http_proxy", v),
                ("https_proxy", v),
            ],
        )
    }
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A HIS → cloud call on the binary's HIS listener.
async fn his_call(bin: &RunningBinary, path: &str, body: &Value) -> Reply {
    post(format!("{}/{path}", bin.his_url()))
        .body_json(body)
        .expect_status(200)
        .send()
        .await
}

/// `prefront <args>` off the async threads (the simulated cloud keeps serving).
async fn run_blocking(args: Vec<String>) -> Run {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_prefront(&args, None)
    })
    .await
    .expect("runner thread")
}

async fn doctor(config: &Path) -> Run {
    run_blocking(vec![
        "doctor".into(),
        "--config".into(),
        config.display().to_string(),
    ])
    .await
}

/// The report line of a `doctor` check.
fn doctor_line<'a>(run: &'a Run, what: &str) -> &'a str {
    run.stdout
        .lines()
        .find(|l| l.contains(what))
        .unwrap_or_else(|| panic!("no {what:?} line: {run:?}"))
}

fn assert_never_shows_password(what: &str, text: &str) {
    assert!(
        !text.contains(PASSWORD),
        "{what} shows the proxy password:\n{text}"
    );
}

// ---------------------------------------------------------------------------
// Through the proxy
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cloud_call_goes_through_the_proxy_and_his_calls_never_do() {
    let Some(bin) = tinyproxy_or_skip("every_cloud_call_goes_through_the_proxy") else {
        return;
    };
    let s = Setup::new().await;
    let proxy = Tinyproxy::start(bin, s.cloud.port(), None);
    let config = s.config("gw", &proxy.url(), None);
    let gw = s.start(&config, &proxy.url());

    // HIS → cloud: a query answered by the cloud, and a notify call.
    let r = his_call(&gw, GET_PATIENT_INFO, &json!({"patientId": "P1"})).await;
    assert_eq!(r.error_kind(), None, "{}", r.text());
    assert_eq!(
        r.text(),
        CLOUD_ANSWER,
        "the cloud's answer, through the tunnel"
    );
    let r = his_call(&gw, NOTIFY, &json!({"hospitalId": "253", "seq": 1})).await;
    assert_eq!(r.error_kind(), None, "{}", r.text());
    assert_eq!(r.json()["code"], "10001");
    let seen = s.cloud.wait_for_requests(2, Duration::from_secs(10)).await;
    let paths: Vec<&str> = seen.iter().map(|r| r.path.as_str()).collect();
    assert!(
        paths.contains(&"/prefront/patient/getPatientInfo"),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"/prefront/sendTipMessage/payment"),
        "{paths:?}"
    );

    // The proxy saw a CONNECT to the cloud's name and port, and nothing of the calls.
    assert!(
        proxy.connects_to(&s.cloud_host_port()) >= 1,
        "tinyproxy's log shows the CONNECT:\n{}",
        proxy.log()
    );
    assert!(
        !proxy.log().contains("/prefront/"),
        "the proxy sees only the host name:\n{}",
        proxy.log()
    );

    // Cloud → HIS: straight to the HIS, although the environment names the proxy.
    let before = proxy.log();
    let r = post(format!("{}/his/{QUERY_BALANCE}", gw.cloud_url()))
        .body_json(&json!({"hospitalId": "253", "patientId": "P1"}))
        .expect_status(200)
        .send()
        .await;
    assert_eq!(r.error_kind(), None, "{}", r.text());
    assert_eq!(s.his.request_count(), 1, "the HIS got the call");
    let his_port = format!(":{}", s.his.port());
    assert!(
        !proxy.log().contains(&his_port),
        "a HIS call went through the proxy:\n{}",
        proxy.log()
    );
    assert_eq!(
        proxy.log().lines().count(),
        before.lines().count(),
        "the proxy saw nothing of the HIS call"
    );
    assert!(s
        .cloud
        .requests()
        .iter()
        .all(|r| !r.path.starts_with("/his/")));

    // doctor checks the proxy and the cloud through it.
    let connects = proxy.connects_to(&s.cloud_host_port());
    let run = doctor(&config).await;
    let line = doctor_line(&run, "cloud proxy (cloud.proxy)");
    assert!(line.starts_with("PASS"), "{run:?}");
    let line = doctor_line(&run, "cloud HTTPS");
    assert!(line.starts_with("PASS"), "{run:?}");
    assert!(line.contains("through the proxy 127.0.0.1:"), "{run:?}");
    let line = doctor_line(&run, "cloud DNS");
    assert!(line.contains("resolved by the proxy"), "{run:?}");
    assert!(
        proxy.connects_to(&s.cloud_host_port()) > connects,
        "doctor's HEAD went through the proxy too:\n{}",
        proxy.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_credentials_the_proxy_lets_the_box_through_and_the_password_is_never_shown() {
    let Some(bin) = tinyproxy_or_skip("with_credentials_the_proxy_lets_the_box_through") else {
        return;
    };
    let s = Setup::new().await;
    let proxy = Tinyproxy::start(bin, s.cloud.port(), Some(("prefront", PASSWORD)));
    let config = s.config("right", &proxy.url(), Some(("prefront", PASSWORD)));
    let gw = s.start(&config, "http://127.0.0.1:9");

    let r = his_call(&gw, GET_PATIENT_INFO, &json!({"patientId": "P1"})).await;
    assert_eq!(r.error_kind(), None, "{}", r.text());
    assert_eq!(r.text(), CLOUD_ANSWER);
    assert!(
        proxy.connects_to(&s.cloud_host_port()) >= 1,
        "{}",
        proxy.log()
    );
    assert!(
        // 407 as a number of its own: the log also holds port numbers such as 40705.
        !proxy
            .log()
            .split(|c: char| !c.is_ascii_digit())
            .any(|n| n == "407")
            && !proxy.log().contains("Unauthorized"),
        "the credentials were accepted:\n{}",
        proxy.log()
    );

    let check = run_blocking(vec![
        "check".into(),
        "--config".into(),
        config.display().to_string(),
    ])
    .await;
    assert_eq!(check.code, Some(0), "{check:?}");
    assert_never_shows_password("check", &check.all());
    let run = doctor(&config).await;
    assert!(
        doctor_line(&run, "cloud HTTPS").starts_with("PASS"),
        "{run:?}"
    );
    assert!(
        doctor_line(&run, "cloud proxy").contains("credentials from proxy_auth_file"),
        "{run:?}"
    );
    assert_never_shows_password("doctor", &run.all());
    let (_, log) = gw.terminate();
    assert!(log.len() > 5, "the log was read: {log:?}");
    assert_never_shows_password("the gateway's log", &log.join("\n"));
}

/// tinyproxy answers a CONNECT without credentials with 407 and one with wrong credentials with
/// 401: both are `proxy-refused`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_refusing_the_box_is_10003_proxy_refused_and_notify_calls_wait() {
    let Some(bin) = tinyproxy_or_skip("a_proxy_refusing_the_box") else {
        return;
    };
    let s = Setup::new().await;
    let proxy = Tinyproxy::start(bin, s.cloud.port(), Some(("prefront", "the-right-one")));

    // Wrong credentials.
    let config = s.config("wrong", &proxy.url(), Some(("prefront", PASSWORD)));
    let gw = s.start(&config, "http://127.0.0.1:9");
    let r = his_call(&gw, GET_PATIENT_INFO, &json!({"patientId": "P1"})).await;
    let v = r.json();
    assert_eq!(v["code"], "10003", "{v}");
    assert_eq!(r.error_kind(), Some("proxy-refused"), "{v}");
    assert!(
        v["msg"]
            .as_str()
            .is_some_and(|m| m.contains("proxy refused")),
        "{v}"
    );
    // The link counts as down: a notify call is accepted into the buffer and waits.
    let r = his_call(&gw, NOTIFY, &json!({"hospitalId": "253", "seq": 1})).await;
    assert_eq!(r.json()["code"], "10001", "{}", r.text());
    assert!(r.queued().is_some(), "queued: {}", r.text());
    // With the link down, a call that cannot wait still hears it is the proxy, not "link down".
    let r = his_call(&gw, GET_PATIENT_INFO, &json!({"patientId": "P2"})).await;
    assert_eq!(r.error_kind(), Some("proxy-refused"), "{}", r.json());
    tokio::time::sleep(Duration::from_millis(500)).await; // a quiet window: nothing may arrive
    assert_eq!(s.cloud.request_count(), 0, "nothing reached the cloud");
    assert!(
        proxy.connects_to(&s.cloud_host_port()) >= 1,
        "{}",
        proxy.log()
    );
    let run = doctor(&config).await;
    let line = doctor_line(&run, "cloud HTTPS");
    assert!(line.starts_with("FAIL"), "{run:?}");
    assert!(
        line.contains("refused the CONNECT") && line.contains("proxy_auth_file"),
        "{run:?}"
    );
    assert_never_shows_password("doctor", &run.all());
    let (_, log) = gw.terminate();
    assert_never_shows_password("the gateway's log", &log.join("\n"));

    // No credentials: 407.
    let config = s.config("none", &proxy.url(), None);
    let gw = s.start(&config, "http://127.0.0.1:9");
    let r = his_call(&gw, GET_PATIENT_INFO, &json!({"patientId": "P1"})).await;
    let v = r.json();
    assert_eq!(v["code"], "10003", "{v}");
    assert_eq!(r.error_kind(), Some("proxy-refused"), "{v}");
    assert!(v["msg"].as_str().is_some_and(|m| m.contains("407")), "{v}");
    let run = doctor(&config).await;
    let line = doctor_line(&run, "cloud HTTPS");
    assert!(line.starts_with("FAIL"), "{run:?}");
    assert!(
        line.contains("(407)") && line.contains("proxy_auth_file"),
        "{run:?}"
    );
    assert_eq!(s.cloud.request_count(), 0, "nothing reached the cloud");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_outage_buffers_notify_calls_and_they_are_delivered_when_it_is_back() {
    let Some(bin) = tinyproxy_or_skip("a_proxy_outage_buffers_notify_calls") else {
        return;
    };
    let s = Setup::new().await;
    let mut proxy = Tinyproxy::start(bin, s.cloud.port(), None);
    let config = s.config("gw", &proxy.url(), None);
    let gw = s.start(&config, "http://127.0.0.1:9");

    // The proxy is killed; the cloud itself is up, but out of reach.
    proxy.stop();
    let r = his_call(&gw, GET_PATIENT_INFO, &json!({"patientId": "P1"})).await;
    let v = r.json();
    assert_eq!(v["code"], "10003", "{v}");
    assert_eq!(r.error_kind(), Some("proxy-unreachable"), "{v}");
    for seq in 0..5 {
        let r = his_call(&gw, NOTIFY, &json!({"hospitalId": "253", "seq": seq})).await;
        let v = r.json();
        assert_eq!(r.error_kind(), None, "{v}");
        assert_eq!(v["code"], "10001", "accepted while the proxy is down: {v}");
        assert!(r.queued().is_some(), "queued: {v}");
    }
    // With the link down, a call that cannot wait still hears it is the proxy, not "link down".
    let r = his_call(&gw, GET_PATIENT_INFO, &json!({"patientId": "P2"})).await;
    assert_eq!(r.error_kind(), Some("proxy-unreachable"), "{}", r.json());
    tokio::time::sleep(Duration::from_millis(500)).await; // a quiet window: nothing may arrive
    assert_eq!(s.cloud.request_count(), 0, "nothing reached the cloud");

    // The proxy comes back: the prober finds the link up and the buffer is delivered, in order.
    proxy.run();
    let posts = Poll::new(Duration::from_secs(20), "5 buffered calls at the cloud")
        .value(async || {
            let posts: Vec<Recorded> = s
                .cloud
                .requests()
                .into_iter()
                .filter(|r| r.method == "POST")
                .collect();
            (posts.len() >= 5).then_some(posts)
        })
        .await;
    let seqs: Vec<i64> = posts
        .iter()
        .filter_map(|r| r.json()["seq"].as_i64())
        .collect();
    assert_eq!(seqs, vec![0, 1, 2, 3, 4], "each once, in order");
    assert!(
        proxy.connects_to(&s.cloud_host_port()) >= 1,
        "{}",
        proxy.log()
    );
    let log = gw.log().join("\n");
    assert!(
        log.contains("proxy-unreachable"),
        "the link went down for it:\n{log}"
    );
}

// ---------------------------------------------------------------------------
// `prefront check`
// ---------------------------------------------------------------------------

fn check_config(dir: &TempDir, patch: impl FnOnce(ConfigToml) -> ConfigToml) -> Run {
    let c = ConfigToml::basic("https://cloud.example.cn/", None, None, "")
        .set_path("buffer.path", &dir.path().join("buffer"));
    let path = patch(c).write(&dir.path().join("prefront.toml"));
    run_prefront(
        &["check", "--config", path.to_str().expect("UTF-8 path")],
        None,
    )
}

/// The line of `key = ` in the config `check` read.
fn line_of_key(dir: &TempDir, key: &str) -> usize {
    let text = std::fs::read_to_string(dir.path().join("prefront.toml")).expect("config");
    let at = text
        .lines()
        .position(|l| l.starts_with(&format!("{key} = ")))
        .expect("the key is in the file");
    at + 1
}

#[test]
fn check_refuses_a_proxy_that_is_not_http_host_port() {
    for bad in [
        "https://10.0.0.5:3128",
        "http://10.0.0.5:3128/path",
        "http://10.0.0.5:3128?x=1",
        "http://10.0.0.5",
        "http://10.0.0.5:",
        "socks5://10.0.0.5:1080",
        "10.0.0.5:3128",
        "http://user:pw@10.0.0.5:3128",
    ] {
        let dir = TempDir::new("prefront-proxy-check");
        let run = check_config(&dir, |c| c.set("cloud.proxy", bad));
        assert_eq!(run.code, Some(64), "{bad}: refused\n{run:?}");
        let line = line_of_key(&dir, "proxy");
        let want = format!("line {line}: cloud.proxy: ");
        assert!(run.all().contains(&want), "{bad}: {want}\n{run:?}");
        assert!(
            !run.all().contains("pw@"),
            "{bad}: never echoes credentials\n{run:?}"
        );
    }
    for good in [
        "http://10.0.0.5:3128",
        "http://proxy.hospital.local:8080/",
        "http://[fd00::5]:3128",
        "http://10.0.0.5:80",
    ] {
        let dir = TempDir::new("prefront-proxy-check");
        let run = check_config(&dir, |c| c.set("cloud.proxy", good));
        assert_eq!(run.code, Some(0), "{good}: accepted\n{run:?}");
    }
}

#[test]
fn check_reads_the_proxy_auth_file_and_warns_when_others_may_read_it() {
    let dir = TempDir::new("prefront-proxy-check");
    let auth = dir.path().join("proxy.auth");
    let with_auth = |c: ConfigToml| {
        c.set("cloud.proxy", "http://10.0.0.5:3128")
            .set_path("cloud.proxy_auth_file", &auth)
    };

    // Missing: an error naming the key.
    let run = check_config(&dir, with_auth);
    assert_eq!(run.code, Some(64), "{run:?}");
    assert!(
        run.all().contains("cloud.proxy_auth_file: cannot read"),
        "{run:?}"
    );

    // Readable by others: a warning, never its content.
    std::fs::write(&auth, format!("prefront:{PASSWORD}\n")).expect("write");
    chmod(&auth, 0o644);
    let run = check_config(&dir, with_auth);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.all().contains("cloud.proxy_auth_file"), "{run:?}");
    assert!(run.all().contains("readable by group or others"), "{run:?}");
    assert_never_shows_password("check", &run.all());

    // Private: no warning.
    chmod(&auth, 0o600);
    let run = check_config(&dir, with_auth);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(!run.all().contains("readable by group"), "{run:?}");

    // Not `user:password`: an error that does not quote it.
    std::fs::write(&auth, format!("{PASSWORD}\n")).expect("write");
    let run = check_config(&dir, with_auth);
    assert_eq!(run.code, Some(64), "{run:?}");
    assert!(run.all().contains("user:password"), "{run:?}");
    assert_never_shows_password("check", &run.all());

    // Unreadable (a directory).
    let run = check_config(&dir, |c| {
        c.set("cloud.proxy", "http://10.0.0.5:3128")
            .set_path("cloud.proxy_auth_file", dir.path())
    });
    assert_eq!(run.code, Some(64), "{run:?}");
    assert!(run.all().contains("cloud.proxy_auth_file"), "{run:?}");
}

/// The library's view: the password is a secret in `Debug`.
#[test]
fn the_proxy_password_is_masked_in_debug() {
    let dir = TempDir::new("prefront-proxy-debug");
    let auth = dir.path().join("proxy.auth");
    std::fs::write(&auth, format!("prefront:{PASSWORD}\n")).expect("write");
    chmod(&auth, 0o600);
    let toml = ConfigToml::basic("https://cloud.example.cn/", None, None, "")
        .set("cloud.proxy", "http://10.0.0.5:3128")
        .set_path("cloud.proxy_auth_file", &auth)
        .set_path("buffer.path", &dir.path().join("buffer"))
        .render();
    let loaded = prefront::Config::from_toml(&toml, dir.path())
        .unwrap_or_else(|e| panic!("{:#?}", e.problems));
    let proxy = loaded.config.cloud.proxy.clone().expect("proxy");
    assert_eq!(proxy.url.as_str(), "http://10.0.0.5:3128/");
    let auth = proxy.auth.expect("credentials");
    assert_eq!(auth.user, "prefront");
    assert_eq!(auth.password.0, PASSWORD);
    let shown = format!("{:?}", loaded.config);
    assert!(
        shown.contains("10.0.0.5") && shown.contains("3128"),
        "{shown}"
    );
    assert_never_shows_password("Debug", &shown);
}
