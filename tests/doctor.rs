//! `prefront doctor` with the real binary: configs written to a temp dir, real loopback peers (an
//! HTTPS mock cloud with the test PKI, an HTTP mock HIS, a mock serving a WSDL), and one broken
//! thing per test. Each test asserts on its check's line and on the exit code.

#[allow(unused_imports)] // the gateway helpers are not used: the binary runs as a child
mod support;

use std::io::Write;
use std::net::TcpListener as StdTcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use support::pacs::MockPacs;
use support::*;

/// A SOAP HIS's WSDL (document/literal, .NET style) with two operations.
const WSDL: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" xmlns:s="http://www.w3.org/2001/XMLSchema" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/" xmlns:tns="http://his.example/" targetNamespace="http://his.example/">
  <wsdl:portType name="HisServiceSoap">
    <wsdl:operation name="createCard"><wsdl:input message="tns:createCardSoapIn"/></wsdl:operation>
    <wsdl:operation name="queryWaitPay"><wsdl:input message="tns:queryWaitPaySoapIn"/></wsdl:operation>
  </wsdl:portType>
  <wsdl:binding name="HisServiceSoap" type="tns:HisServiceSoap">
    <soap:binding transport="http://schemas.xmlsoap.org/soap/http"/>
    <wsdl:operation name="createCard"><soap:operation soapAction="http://his.example/createCard"/></wsdl:operation>
    <wsdl:operation name="queryWaitPay"><soap:operation soapAction="http://his.example/queryWaitPay"/></wsdl:operation>
  </wsdl:binding>
</wsdl:definitions>
"#;

/// Reading a doctor report.
trait Report {
    fn line(&self, what: &str) -> &str;
    fn lines_with(&self, status: &str) -> Vec<&str>;
}

impl Report for Run {
    /// The one line whose check label contains `what`.
    fn line(&self, what: &str) -> &str {
        let hits: Vec<&str> = self
            .stdout
            .lines()
            .filter(|l| label(l).is_some_and(|w| w.contains(what)))
            .collect();
        assert_eq!(hits.len(), 1, "one line for {what:?} expected: {self:?}");
        hits[0]
    }

    fn lines_with(&self, status: &str) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| l.starts_with(status))
            .collect()
    }
}

/// The `what` column of a report line (between the status and the `—`).
fn label(line: &str) -> Option<&str> {
    let rest = line.split_once("  ")?.1;
    Some(rest.split(" — ").next()?.trim())
}

/// Runs `prefront doctor --config <config>` off the async threads (the mocks keep serving), at
/// most 30 s.
async fn doctor(config: &Path) -> Run {
    let config = config.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let config = config.to_str().expect("UTF-8 path");
        run_prefront(&["doctor", "--config", config], None)
    })
    .await
    .expect("runner thread")
}

fn assert_status(run: &Run, what: &str, status: &str, needles: &[&str]) {
    let line = run.line(what);
    assert!(
        line.starts_with(status),
        "{what}: {status} expected: {run:?}"
    );
    for n in needles {
        assert!(
            line.contains(n),
            "{what}: {n:?} expected in {line:?}\n{run:?}"
        );
    }
}

/// Everything a healthy installation has; each test breaks one thing.
struct Setup {
    dir: TempDir,
    pki: TestPki,
    cloud: MockUpstream,
    his: MockUpstream,
    soap: MockUpstream,
    pacs: MockPacs,
    /// `ca = …` under [cloud] (the test PKI's CA).
    cloud_ca: bool,
    cloud_url: String,
    cert: PathBuf,
    key: PathBuf,
    his_listen: String,
    buffer: PathBuf,
    soap_route: String,
}

impl Setup {
    async fn new() -> Setup {
        let dir = TempDir::new("prefront-doctor");
        let pki = TestPki::new();
        let cloud = MockUpstream::https(&pki).await;
        let his = MockUpstream::http().await;
        let soap = MockUpstream::http().await;
        soap.respond("/HisService.asmx", 200, WSDL);
        let pacs = MockPacs::start().await;
        let cloud_url = format!("{}/", cloud.url());
        let soap_route = route_toml(
            "hospital.interface.createCard",
            &format!("{}/HisService.asmx", soap.url()),
        );
        Setup {
            buffer: dir.path().join("buffer"),
            dir,
            cert: pki.server_cert_path(),
            key: pki.server_key_path(),
            pki,
            cloud,
            his,
            soap,
            pacs,
            cloud_ca: true,
            cloud_url,
            his_listen: "127.0.0.1:0".into(),
            soap_route,
        }
    }

    /// Writes the config file and returns its path.
    fn write(&self) -> PathBuf {
        let q = |p: &Path| format!("{:?}", p.display().to_string());
        let ca = if self.cloud_ca {
            format!("ca = {}\n", q(&self.pki.ca_pem_path()))
        } else {
            String::new()
        };
        let toml = format!(
            r#"
[his_listener]
listen = "{his_listen}"
allow = ["127.0.0.0/8"]

[cloud_listener]
listen = "127.0.0.1:0"
allow = ["127.0.0.0/8"]
tls_cert = {cert}
tls_key = {key}

[admin]
listen = "127.0.0.1:0"

[cloud]
base_url = "{cloud_url}"
{ca}timeout_ms = 5000

[his]
kind = "http"
url = "{his}/his/{{method}}"
timeout_ms = 5000

{soap_route}

[pacs]
dcm_url = {pacs:?}

[buffer]
path = {buffer}
max_bytes = "64MiB"
"#,
            his_listen = self.his_listen,
            cert = q(&self.cert),
            key = q(&self.key),
            cloud_url = self.cloud_url,
            his = self.his.url(),
            soap_route = self.soap_route,
            pacs = self.pacs.dcm_url_template(),
            buffer = q(&self.buffer),
        );
        let path = self.dir.path().join("prefront.toml");
        std::fs::write(&path, toml).expect("write the config");
        path
    }

    async fn doctor(&self) -> Run {
        doctor(&self.write()).await
    }
}

fn route_toml(name: &str, url: &str) -> String {
    format!(
        "[[his.route]]\nname = \"{name}\"\nkind = \"soap\"\nurl = \"{url}\"\nnamespace = \"http://his.example/\"\n"
    )
}

/// A self-signed certificate for localhost valid from `not_before` to `not_after` (UTC dates),
/// written with its key into `dir`; returns (cert, key).
fn certificate(
    dir: &Path,
    stem: &str,
    not_before: SystemTime,
    not_after: SystemTime,
) -> (PathBuf, PathBuf) {
    let ymd = |t: SystemTime| {
        let date = prefront::certinfo::utc_date(t);
        let parts: Vec<i32> = date
            .split('-')
            .map(|p| p.parse().expect("a date part"))
            .collect();
        rcgen::date_time_ymd(parts[0], parts[1] as u8, parts[2] as u8)
    };
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("rcgen params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "doctor test");
    params.not_before = ymd(not_before);
    params.not_after = ymd(not_after);
    let key = rcgen::KeyPair::generate().expect("rcgen key");
    let cert = params.self_signed(&key).expect("rcgen self-signed");
    let cert_path = dir.join(format!("{stem}.pem"));
    let key_path = dir.join(format!("{stem}.key"));
    std::fs::write(&cert_path, cert.pem()).expect("write cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    (cert_path, key_path)
}

const DAY: Duration = Duration::from_secs(86_400);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_installation_passes_every_check() {
    let s = Setup::new().await;
    let run = s.doctor().await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.lines_with("FAIL").is_empty(), "{run:?}");
    assert!(run.lines_with("WARN").is_empty(), "{run:?}");
    assert_status(&run, "config", "PASS", &["valid"]);
    assert_status(
        &run,
        "certificate cloud_listener.tls_cert",
        "PASS",
        &["localhost", "expires", "key matches"],
    );
    assert_status(&run, "cloud.ca", "PASS", &["expires"]);
    assert_status(&run, "port his_listener.listen", "PASS", &[]);
    assert_status(&run, "port admin.listen", "PASS", &[]);
    assert_status(&run, "cloud DNS", "PASS", &["localhost"]);
    assert_status(
        &run,
        "cloud HTTPS",
        "PASS",
        &["answered HTTP 200", "TLS OK, certificate trusted"],
    );
    assert_status(&run, "clock", "PASS", &["skew"]);
    assert_status(
        &run,
        "HIS route [his] (default)",
        "PASS",
        &["/his/createCard"],
    );
    assert_status(
        &run,
        "HIS route hospital.interface.createCard",
        "PASS",
        &["has operation `createCard`"],
    );
    assert_status(&run, "buffer directory", "PASS", &["write + fsync OK"]);
    assert_status(&run, "buffer disk space", "PASS", &["free"]);
    assert_status(
        &run,
        "PACS",
        "PASS",
        &["accepts connections", &s.pacs.host_port()],
    );
    let summary = run.stdout.lines().last().unwrap_or_default();
    assert!(
        summary.starts_with("doctor: ") && summary.ends_with(" passed, 0 warnings, 0 failed"),
        "{run:?}"
    );
    // The probes reached the peers; nothing on the cloud was called but HEAD.
    let cloud_calls = s.cloud.requests();
    assert!(
        !cloud_calls.is_empty() && cloud_calls.iter().all(|r| r.method == "HEAD"),
        "{cloud_calls:?}"
    );
    assert!(s
        .soap
        .requests()
        .iter()
        .any(|r| r.method == "GET" && r.query.as_deref() == Some("wsdl")));
    assert!(!s.pki.server_key_pem().is_empty());
    assert!(
        !run.stdout.contains("PRIVATE KEY"),
        "no key material in the report: {run:?}"
    );
    // The buffer directory did not exist: it is created for the probe and removed again.
    assert!(!s.buffer.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_cloud_fails() {
    let mut s = Setup::new().await;
    s.cloud_url = format!("https://localhost:{}/", closed_port_addr().port());
    let run = s.doctor().await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_status(
        &run,
        "cloud HTTPS",
        "FAIL",
        &["connection refused", "localhost:"],
    );
    assert_status(&run, "clock", "WARN", &["not checked"]);
    assert!(
        run.stdout
            .lines()
            .last()
            .unwrap_or_default()
            .ends_with(" 1 failed"),
        "{run:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloud_certificate_from_an_unknown_ca_fails() {
    let mut s = Setup::new().await;
    s.cloud_ca = false;
    let run = s.doctor().await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_status(
        &run,
        "cloud HTTPS",
        "FAIL",
        &["certificate not trusted", "[cloud] ca"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listen_port_in_use_fails() {
    let mut s = Setup::new().await;
    let taken = StdTcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    s.his_listen = format!("127.0.0.1:{port}");
    let run = s.doctor().await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_status(
        &run,
        "port his_listener.listen",
        "FAIL",
        &[
            &format!("port {port} is in use"),
            &format!("ss -ltnp 'sport = :{port}'"),
        ],
    );
    assert_status(&run, "port cloud_listener.listen", "PASS", &[]);
    drop(taken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_expiring_soon_warns_with_its_date() {
    let mut s = Setup::new().await;
    let now = SystemTime::now();
    let (cert, key) = certificate(s.dir.path(), "soon", now - 30 * DAY, now + 10 * DAY);
    s.cert = cert;
    s.key = key;
    let run = s.doctor().await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let date = prefront::certinfo::utc_date(now + 10 * DAY);
    assert_status(
        &run,
        "certificate cloud_listener.tls_cert",
        "WARN",
        &[&format!("expires on {date}"), "renew"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_fails() {
    let mut s = Setup::new().await;
    let now = SystemTime::now();
    let (cert, key) = certificate(s.dir.path(), "old", now - 400 * DAY, now - 10 * DAY);
    s.cert = cert;
    s.key = key;
    let run = s.doctor().await;
    assert_eq!(run.code, Some(1), "{run:?}");
    let date = prefront::certinfo::utc_date(now - 10 * DAY);
    assert_status(
        &run,
        "certificate cloud_listener.tls_cert",
        "FAIL",
        &[&format!("EXPIRED on {date}")],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_does_not_match_the_certificate_fails() {
    let mut s = Setup::new().await;
    let other = TestPki::new();
    s.key = other.server_key_path();
    let run = s.doctor().await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_status(
        &run,
        "certificate cloud_listener.tls_cert",
        "FAIL",
        &["does not belong to"],
    );
    assert!(!run.stdout.contains("PRIVATE KEY"), "{run:?}");
    drop(other);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soap_operation_missing_from_the_wsdl_fails_and_lists_what_is_there() {
    let mut s = Setup::new().await;
    s.soap_route = route_toml(
        "hospital.interface.getDeptList",
        &format!("{}/HisService.asmx", s.soap.url()),
    );
    let run = s.doctor().await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_status(
        &run,
        "HIS route hospital.interface.getDeptList",
        "FAIL",
        &[
            "`getDeptList` is not in the WSDL",
            "createCard, queryWaitPay",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soap_service_without_a_wsdl_warns_and_a_dead_one_fails() {
    let mut s = Setup::new().await;
    // The HTTP mock answers JSON to ?wsdl: the port answers, the WSDL is not there.
    s.soap_route = format!(
        "{}\n{}",
        route_toml(
            "hospital.interface.createCard",
            &format!("{}/NoWsdl.asmx", s.his.url()),
        ),
        route_toml(
            "hospital.interface.queryWaitPay",
            &format!("http://{}/HisService.asmx", closed_port_addr()),
        )
    );
    let run = s.doctor().await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_status(
        &run,
        "HIS route hospital.interface.createCard",
        "WARN",
        &["the port answers", "not a WSDL"],
    );
    assert_status(
        &run,
        "HIS route hospital.interface.queryWaitPay",
        "FAIL",
        &["connection refused"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_http_his_fails() {
    let s = Setup::new().await;
    let path = s.write();
    let dead = format!("http://{}", closed_port_addr());
    ConfigToml::parse(&std::fs::read_to_string(&path).expect("read"))
        .set("his.url", format!("{dead}/his/{{method}}"))
        .write(&path);
    let run = doctor(&path).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_status(
        &run,
        "HIS route [his] (default)",
        "FAIL",
        &["connection refused", "/his/createCard"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buffer_directory_under_a_file_fails() {
    let mut s = Setup::new().await;
    let file = s.dir.path().join("file");
    std::fs::File::create(&file)
        .and_then(|mut f| f.write_all(b"not a directory"))
        .expect("write the file");
    s.buffer = file.join("buffer");
    let run = s.doctor().await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_status(
        &run,
        "buffer directory",
        "FAIL",
        &["file/buffer", "not a directory"],
    );
}

/// A plain-HTTP "cloud" whose every answer carries `Date: <date>`.
async fn cloud_with_date(date: SystemTime) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let date = httpdate::fmt_http_date(date);
    let task = tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let date = date.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut chunk)).await {
                        Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                        _ => return,
                    }
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nDate: {date}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = tcp.write_all(answer.as_bytes()).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_ten_minutes_off_fails_with_the_skew() {
    let mut s = Setup::new().await;
    let (addr, task) = cloud_with_date(SystemTime::now() - 600 * Duration::from_secs(1)).await;
    s.cloud_url = format!("http://{addr}/");
    s.cloud_ca = false;
    let run = s.doctor().await;
    task.abort();
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_status(&run, "cloud HTTPS", "PASS", &["plain HTTP"]);
    let line = run.line("clock");
    assert!(line.starts_with("FAIL"), "{run:?}");
    let secs: u64 = line
        .split("clock is ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a skew in seconds: {line}"));
    assert!((595..=605).contains(&secs), "{line}");
    assert!(line.contains("ahead of the cloud"), "{line}");
    assert!(line.contains("timedatectl"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_config_fails_with_key_and_line_and_checks_nothing_else() {
    let s = Setup::new().await;
    let path = s.write();
    // A typo in a key of [cloud].
    let toml = ConfigToml::parse(&std::fs::read_to_string(&path).expect("read"))
        .remove("cloud.timeout_ms")
        .set("cloud.timout_ms", 5000)
        .render();
    std::fs::write(&path, &toml).expect("write");
    let line_no = toml
        .lines()
        .position(|l| l.starts_with("timout_ms"))
        .expect("the typo")
        + 1;
    let run = doctor(&path).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stdout.lines().any(|l| l.starts_with("FAIL")
            && l.contains(&format!("line {line_no}: cloud.timout_ms: unknown key"))),
        "{run:?}"
    );
    assert!(!run.stdout.contains("cloud HTTPS"), "{run:?}");
    assert!(s.cloud.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_is_verified_link_by_link() {
    let mut s = Setup::new().await;
    // The box's certificate, then the CA that issued it: a chain of two.
    let good = s.dir.path().join("chain.pem");
    std::fs::write(
        &good,
        format!("{}{}", s.pki.server_cert_pem(), s.pki.ca_pem()),
    )
    .expect("write chain");
    s.cert = good;
    let run = s.doctor().await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_status(
        &run,
        "certificate cloud_listener.tls_cert",
        "PASS",
        &["chain of 2 verified"],
    );
    // The same certificate followed by somebody else's CA.
    let other = TestPki::new();
    let wrong = s.dir.path().join("wrong-chain.pem");
    std::fs::write(
        &wrong,
        format!("{}{}", s.pki.server_cert_pem(), other.ca_pem()),
    )
    .expect("write chain");
    s.cert = wrong;
    let run = s.doctor().await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_status(
        &run,
        "certificate cloud_listener.tls_cert",
        "FAIL",
        &[
            "certificate 1 (localhost) was not issued by certificate 2",
            "first",
        ],
    );
}

/// A DMZ box asks only the hospital's name servers: with an unusable `/etc/resolv.conf` (an empty
/// one, bind-mounted in a mount namespace this test makes) the cloud's name is not looked up
/// anywhere else, and `doctor` says why. Needs root and `unshare`; skipped without them.
#[test]
fn no_public_name_server_when_resolv_conf_is_unusable() {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let unshare = Command::new("unshare").arg("--version").output().is_ok();
    if !root || !unshare {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run this test: it needs root and unshare"
        );
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED no_public_name_server_when_resolv_conf_is_unusable: needs root and unshare"
        );
        return;
    }
    let dir = TempDir::new("prefront-doctor-resolv");
    let empty = dir.path().join("resolv.conf");
    std::fs::write(&empty, "").expect("write");
    let config = dir.path().join("prefront.toml");
    std::fs::write(
        &config,
        format!(
            "[his_listener]\nlisten = \"127.0.0.1:0\"\n[cloud_listener]\nlisten = \"127.0.0.1:0\"\n\
             [cloud]\nbase_url = \"https://cloud.example.com/\"\n[buffer]\npath = {:?}\n",
            dir.path().join("buffer").display().to_string()
        ),
    )
    .expect("write config");
    let script = format!(
        "mount --bind {} /etc/resolv.conf && exec {} doctor --config {}",
        empty.display(),
        env!("CARGO_BIN_EXE_prefront"),
        config.display()
    );
    let out = Command::new("timeout")
        .args(["60", "unshare", "--mount", "sh", "-c", &script])
        .output()
        .expect("unshare runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let dns = text
        .lines()
        .find(|l| l.contains("cloud DNS"))
        .unwrap_or_else(|| panic!("no DNS line:\n{text}"));
    assert!(
        dns.contains("FAIL") && dns.contains("resolv.conf is unusable"),
        "{dns}"
    );
    assert!(
        !dns.contains("Google"),
        "no public name server is asked: {dns}"
    );
}
