//! The operator's side of the buffer, with the real binary: `prefront queue …` shows what waits
//! and what died, masks patient data, retries and drops, with the gateway running (through its
//! admin API) or stopped (from the store); a damaged store is moved aside at start-up instead of
//! crash-looping. The whole story with the box running is `tests/operate_live.rs`.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::*;

const PHONE: &str = "13812345678";
const IDCARD: &str = "370102197907025236";

/// The cloud at `cloud`, the buffer in `dir` with a short backoff and a `ttl` when given, and
/// the admin listener at `admin`, if given.
fn write_config_admin(
    dir: &Path,
    cloud: std::net::SocketAddr,
    ttl: Option<&str>,
    admin: Option<std::net::SocketAddr>,
) -> PathBuf {
    let mut toml = ConfigToml::basic(&format!("http://{cloud}"), None, None, "")
        .set_path("buffer.path", &dir.join("buffer"))
        .set("buffer.retry_min", "50ms")
        .set("buffer.retry_max", "300ms");
    if let Some(ttl) = ttl {
        toml = toml.set("buffer.ttl", ttl);
    }
    if let Some(admin) = admin {
        toml = toml.set("admin.listen", admin.to_string());
    }
    toml.write(&dir.join("prefront.toml"))
}

fn write_config(dir: &Path, cloud: std::net::SocketAddr, ttl: Option<&str>) -> PathBuf {
    write_config_admin(dir, cloud, ttl, None)
}

/// `prefront queue <args> --config <config>`: exit success, stdout, stderr.
fn queue(config: &Path, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["queue"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--config", config.to_str().expect("UTF-8 path")]);
    let out = prefront(&all);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn notify(gw: &RunningBinary, path: &str, body: &str) -> String {
    let resp = post(format!("{}/{path}", gw.his_url()))
        .body(body)
        .send()
        .await;
    resp.queued()
        .map(str::to_string)
        .unwrap_or_else(|| panic!("not queued: {:?}", resp.headers))
}

/// Record ids in `queue list` output, in the order listed.
fn ids(list: &str) -> Vec<String> {
    list.lines()
        .filter(|l| l.contains(" cloud:"))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_lists_shows_masked_retries_and_drops() {
    let dir = TempDir::new("prefront-queue-ops");
    let cloud_addr = closed_port_addr();
    let admin = closed_port_addr();
    // A short TTL so the records die while the cloud is away.
    let config = write_config_admin(dir.path(), cloud_addr, Some("400ms"), Some(admin));
    let gw = RunningBinary::start(&config);
    let patient = format!(
        r#"{{"hospitalId":"253","patientName":"张三丰","phone":"{PHONE}","idCard":"{IDCARD}"}}"#
    );
    let a = notify(&gw, "prefront/sendTipMessage/payment", &patient).await;
    let b = notify(&gw, "prefront/sendTipMessage/payment", r#"{"seq":2}"#).await;
    let c = notify(&gw, "prefront/sendTipMessage/lisReport", r#"{"seq":3}"#).await;

    // The store belongs to the running gateway: the CLI asks it through the admin API.
    let (ok, out, err) = queue(&config, &["stats"]);
    assert!(ok, "queue stats works while the gateway runs: {err}");
    let total = out
        .lines()
        .find_map(|l| l.strip_prefix("total: "))
        .unwrap_or_else(|| panic!("{out}"));
    let counts: Vec<u64> = total
        .split([' ', ','])
        .filter_map(|w| w.parse().ok())
        .take(2)
        .collect();
    assert_eq!(counts.iter().sum::<u64>(), 3, "queued + dead: {out}");
    // Except a salvage, which writes into that store: refused while it runs, with the reason.
    let (ok, _, err) = queue(&config, &["salvage", "/nonexistent/buffer.corrupt-1"]);
    assert!(!ok, "salvage must refuse a running gateway");
    assert!(err.contains("salvage needs it stopped"), "{err}");

    // Past the TTL the forwarders move all three to the dead letters.
    let moved = Poll::new(Duration::from_secs(15), "three moves to the dead letters")
        .try_until(async || {
            gw.log()
                .iter()
                .filter(|l| l.contains("moved to the dead letters"))
                .count()
                >= 3
        })
        .await;
    assert!(moved.is_ok(), "{:#?}", gw.log());
    let (status, _) = gw.terminate();
    assert!(status.success());

    let (ok, out, err) = queue(&config, &["stats"]);
    assert!(ok, "{err}");
    let payment = out
        .lines()
        .find(|l| l.starts_with("cloud:prefront/sendTipMessage/payment"))
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        payment.split_whitespace().collect::<Vec<_>>()[1..],
        ["0", "-", "2"],
        "payment: 0 queued, 2 dead\n{out}"
    );
    assert!(out.contains("total: 0 queued, 3 dead"), "{out}");

    let (ok, out, _) = queue(&config, &["list", "--dead"]);
    assert!(ok);
    assert_eq!(ids(&out), [a.clone(), b.clone(), c.clone()], "{out}");
    assert!(out.contains("not delivered within buffer.ttl"), "{out}");
    let (_, out, _) = queue(
        &config,
        &[
            "list",
            "--dead",
            "--route",
            "cloud:prefront/sendTipMessage/lisReport",
        ],
    );
    assert_eq!(ids(&out), [c], "{out}");

    // Patient data is masked unless asked for.
    let (ok, out, _) = queue(&config, &["show", &a]);
    assert!(ok);
    assert!(out.contains("state:       dead"), "{out}");
    for secret in [PHONE, IDCARD, "张三丰"] {
        assert!(!out.contains(secret), "`{secret}` shown unmasked:\n{out}");
    }
    let (_, out, _) = queue(&config, &["show", &a, "--unmasked"]);
    assert!(out.contains(PHONE) && out.contains("张三丰"), "{out}");

    // Drop one, put the others back in the queue.
    let (ok, out, err) = queue(&config, &["drop", &b]);
    assert!(ok, "{out}{err}");
    let (ok, _, err) = queue(&config, &["show", &b]);
    assert!(!ok && err.contains(&b), "a dropped record is gone: {err}");
    let (ok, out, err) = queue(&config, &["retry", "--all-dead"]);
    assert!(ok, "{out}{err}");
    let (_, out, _) = queue(&config, &["list"]);
    assert_eq!(ids(&out).len(), 2, "{out}");
    let (_, out, _) = queue(&config, &["list", "--dead"]);
    assert!(ids(&out).is_empty(), "{out}");

    // The cloud is back (and the TTL generous): the retried records arrive, the dropped one not.
    let cloud = MockUpstream::http_at(cloud_addr).await;
    let config = write_config_admin(dir.path(), cloud_addr, Some("1h"), Some(admin));
    let gw = RunningBinary::start(&config);
    let seen = cloud.wait_for_requests(2, Duration::from_secs(15)).await;
    let bodies: Vec<String> = seen.iter().map(|r| r.body_text()).collect();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert!(bodies.iter().any(|b| b.contains(PHONE)), "{bodies:?}");
    assert!(bodies.iter().any(|b| b == r#"{"seq":3}"#), "{bodies:?}");
    // A quiet period for the dropped record, which must not come: not a condition.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(cloud.requests().len(), 2, "the dropped record is not sent");
    let (status, _) = gw.terminate();
    assert!(status.success());
    let (_, out, _) = queue(&config, &["stats"]);
    assert!(out.contains("total: 0 queued, 0 dead"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_store_is_moved_aside_and_the_gateway_serves() {
    let dir = TempDir::new("prefront-corrupt");
    let cloud_addr = closed_port_addr();
    let config = write_config(dir.path(), cloud_addr, None);
    let store = dir.path().join("buffer");
    // A store that is not a sled store at all: garbage where its files go.
    std::fs::create_dir_all(&store).expect("mkdir");
    let mut junk = Vec::new();
    let mut x: u32 = 0x9E37_79B9;
    for _ in 0..(64 * 1024) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        junk.push(x as u8);
    }
    std::fs::write(store.join("conf"), &junk[..300]).expect("write conf");
    std::fs::write(store.join("db"), &junk).expect("write db");

    let started = Instant::now();
    let gw = RunningBinary::start(&config);
    assert!(started.elapsed() < Duration::from_secs(10));
    let log = gw.log().join("\n");
    assert!(log.contains("moved aside"), "the operator is told:\n{log}");
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("buffer.corrupt-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "the damaged store is kept for inspection");
    assert_eq!(
        std::fs::read(aside[0].path().join("db")).expect("kept db"),
        junk,
        "moved, not modified"
    );
    // The new store works: a call is buffered.
    notify(&gw, "prefront/sendTipMessage/payment", r#"{"seq":1}"#).await;
    // Without [admin] the CLI cannot ask the running gateway, and the store is its: it says how
    // to fix that instead of fighting over the store.
    let (ok, _, err) = queue(&config, &["stats"]);
    assert!(!ok, "the store is held by the running gateway");
    assert!(
        err.contains("no [admin]") && err.contains("stop it first"),
        "{err}"
    );
    // And a restart does not meet the damage again.
    gw.kill();
    let gw = RunningBinary::start(&config);
    assert!(!gw.log().iter().any(|l| l.contains("moved aside")));
    let (status, _) = gw.terminate();
    assert!(status.success());
    let (_, out, _) = queue(&config, &["stats"]);
    assert!(out.contains("total: 1 queued"), "{out}");
}

#[test]
fn a_store_that_cannot_be_read_stops_the_start_with_a_clear_error() {
    let dir = TempDir::new("prefront-unreadable");
    let config = write_config(dir.path(), closed_port_addr(), None);
    // The buffer path is a file, not a directory: not damage to move aside, a mistake to fix.
    std::fs::write(dir.path().join("buffer"), "not a directory").expect("write");
    let out = prefront(&["run", "--config", config.to_str().expect("UTF-8")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("buffer"), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("buffer")).expect("untouched"),
        "not a directory"
    );
}
