//! PACS images and report files, as the cloud sees them: `GET|HEAD /pacs/dcm?dcmId=…` and
//! `GET|HEAD /files/<token>` on the cloud listener stream a file from the hospital's PACS
//! (ranges, conditional requests and metadata headers pass through; errors are the box's own),
//! and internal links in HIS answers are rewritten to signed `/files/<token>` links that cannot
//! be forged, outlive their TTL, or lead anywhere but the configured internal hosts.
//!
//! The PACS is `support::pacs::MockPacs`: files of any size with deterministic content, chosen by
//! a spec such as `size-1048576` (see that module).

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;
use serde_json::Value;
use support::pacs::*;
use support::*;

/// The signing key the tests configure (`[pacs] link_key`), so they can mint their own tokens.
const LINK_KEY: &str = "prefront-integration-test-link-key-0123456789";
/// `[cloud_listener] public_url`: rewritten links start with it; the tests take the path part
/// and call it on the listener's real address.
const PUBLIC_URL: &str = "https://prefront.example";
const HOSPITAL: &str = "253";
const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;
/// How much of a body [`Got`] keeps for byte comparisons.
const KEEP: usize = 4 * 1024 * 1024;

// ---------------------------------------------------------------------------
// Bench
// ---------------------------------------------------------------------------

/// A mock PACS, a mock HIS, a (never called) cloud, and the gateway between them.
struct Bench {
    pacs: MockPacs,
    his: MockUpstream,
    _cloud: MockUpstream,
    gw: TestGateway,
}

/// `[pacs]` for `pacs`: its `/pacs/dcm` template, it as the only internal host, the test link
/// key, then `extra` lines (which must not repeat those keys).
fn pacs_toml(pacs: &MockPacs, extra: &str) -> String {
    format!(
        "[pacs]\ndcm_url = {:?}\ninternal_hosts = [{:?}]\nlink_key = {LINK_KEY:?}\n{extra}\n",
        pacs.dcm_url_template(),
        pacs.host_port()
    )
}

/// The whole gateway configuration around a `[pacs]` section (or none), HIS default route at
/// `his` (if any), `public_url = PUBLIC_URL` on the cloud listener.
fn gateway_toml(
    cloud: &MockUpstream,
    his: Option<&MockUpstream>,
    pacs_section: &str,
) -> ConfigToml {
    let his_url = his.map(|h| format!("{}/his/{{name}}", h.url()));
    ConfigToml::basic(&cloud.url(), None, his_url.as_deref(), pacs_section)
        .set("cloud_listener.public_url", PUBLIC_URL)
}

async fn bench_with(pacs: MockPacs, pacs_section: &str) -> Bench {
    let his = MockUpstream::http().await;
    let cloud = MockUpstream::http().await;
    let gw = spawn_gateway(&gateway_toml(&cloud, Some(&his), pacs_section).render()).await;
    Bench {
        pacs,
        his,
        _cloud: cloud,
        gw,
    }
}

/// The usual bench: `pacs_toml(&pacs, extra)`.
async fn bench(extra: &str) -> Bench {
    let pacs = MockPacs::start().await;
    let section = pacs_toml(&pacs, extra);
    bench_with(pacs, &section).await
}

impl Bench {
    fn base(&self) -> String {
        self.gw.cloud_url(false)
    }

    /// `/pacs/dcm` on the cloud listener for `dcm_id` (percent-encoded).
    fn dcm(&self, dcm_id: &str) -> String {
        dcm_at(&self.base(), dcm_id)
    }

    /// `/files/<token>`-style path of a rewritten link, called on the real listener.
    fn link(&self, rewritten: &str) -> String {
        let path = rewritten.strip_prefix(PUBLIC_URL).unwrap_or_else(|| {
            panic!("rewritten link {rewritten:?} does not start with {PUBLIC_URL}")
        });
        format!("{}{path}", self.base())
    }
}

fn dcm_at(base: &str, dcm_id: &str) -> String {
    format!(
        "{base}/pacs/dcm?dcmId={}&hospitalId={HOSPITAL}",
        pct_encode(dcm_id)
    )
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// Fetching
// ---------------------------------------------------------------------------

/// A response read to its end (or to its failure).
struct Got {
    status: u16,
    headers: HeaderMap,
    /// The first `KEEP` bytes of the body.
    body: Vec<u8>,
    /// Body bytes received.
    len: u64,
    /// SHA-256 of every byte received.
    sha: String,
    /// The body read error, if the transfer broke.
    error: Option<String>,
    /// When the last body bytes arrived, and when the body ended (EOF or error).
    last_data_at: Option<Instant>,
    ended_at: Instant,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn kind(&self) -> Option<&str> {
        self.header("x-prefront-error")
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Everything a failed assertion should show.
    fn describe(&self) -> String {
        let mut hs: Vec<String> = self
            .headers
            .iter()
            .map(|(k, v)| format!("{k}: {}", String::from_utf8_lossy(v.as_bytes())))
            .collect();
        hs.sort();
        let text = self.text();
        let shown: String = text.chars().take(300).collect();
        format!(
            "status {} | headers [{}] | {} body bytes | error {:?} | body {:?}",
            self.status,
            hs.join("; "),
            self.len,
            self.error,
            shown
        )
    }

    /// A complete, unbroken transfer.
    fn assert_clean(&self, what: &str) {
        assert!(
            self.error.is_none(),
            "{what}: the transfer broke: {}",
            self.describe()
        );
    }
}

/// Sends `req` (the gateway must answer within 20 s) and reads the body (at most `limit`).
async fn fetch_within(req: reqwest::RequestBuilder, limit: Duration) -> Got {
    let resp = match tokio::time::timeout(Duration::from_secs(20), req.send()).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => panic!("the gateway did not answer: {e:?}"),
        Err(_) => panic!("the gateway sent no status line within 20 s"),
    };
    read_all(resp, limit).await
}

async fn fetch(req: reqwest::RequestBuilder) -> Got {
    fetch_within(req, Duration::from_secs(60)).await
}

async fn read_all(mut resp: reqwest::Response, limit: Duration) -> Got {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let deadline = Instant::now() + limit;
    let mut body = Vec::new();
    let mut sha = Sha256Stream::new();
    let mut error = None;
    let mut last_data_at = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, resp.chunk()).await {
            Ok(Ok(Some(chunk))) => {
                last_data_at = Some(Instant::now());
                if body.len() < KEEP {
                    let take = chunk.len().min(KEEP - body.len());
                    body.extend_from_slice(&chunk[..take]);
                }
                sha.update(&chunk);
            }
            Ok(Ok(None)) => break,
            Ok(Err(e)) => {
                error = Some(format!("{e:?}"));
                break;
            }
            Err(_) => {
                error = Some(format!(
                    "TEST LIMIT: body still open after {limit:?} ({} bytes so far)",
                    sha.len()
                ));
                break;
            }
        }
    }
    let len = sha.len();
    Got {
        status,
        headers,
        body,
        len,
        sha: sha.finish(),
        error,
        last_data_at,
        ended_at: Instant::now(),
    }
}

/// A gateway-raised error: `status`, `X-Prefront-Error: kind`, a short plain-text body of the
/// gateway's own.
fn assert_gateway_error(got: &Got, status: u16, kind: &str, what: &str) {
    assert_eq!(got.status, status, "{what}: {}", got.describe());
    assert_eq!(got.kind(), Some(kind), "{what}: {}", got.describe());
    assert!(
        got.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "{what}: a plain-text body: {}",
        got.describe()
    );
    assert!(
        got.len < 1024 && !got.text().contains("MOCK-PACS"),
        "{what}: a short body of the gateway's own: {}",
        got.describe()
    );
}

/// A successful whole-file answer for a file of `size` bytes.
fn assert_whole_file(got: &Got, size: u64, what: &str) {
    assert_eq!(got.status, 200, "{what}: {}", got.describe());
    got.assert_clean(what);
    assert_eq!(got.kind(), None, "{what}: {}", got.describe());
    assert_eq!(got.len, size, "{what}: every byte: {}", got.describe());
    assert_eq!(
        got.header("content-length"),
        Some(size.to_string().as_str()),
        "{what}: Content-Length: {}",
        got.describe()
    );
    assert_eq!(
        got.sha,
        expected_sha256(size),
        "{what}: the bytes are the PACS's"
    );
}

// ---------------------------------------------------------------------------
// Memory, with the real binary
// ---------------------------------------------------------------------------

fn rss_bytes(pid: u32) -> Option<u64> {
    proc_status_bytes(pid, "VmRSS:")
}

/// The kernel's own high-water mark of the resident set: catches a peak between two samples.
fn peak_rss_bytes(pid: u32) -> Option<u64> {
    proc_status_bytes(pid, "VmHWM:")
}

fn proc_status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn binary_config(dir: &TempDir, cloud: &MockUpstream, pacs: &MockPacs) -> std::path::PathBuf {
    gateway_toml(cloud, None, &pacs_toml(pacs, "")).write(&dir.path().join("prefront.toml"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_gib_image_streams_through_in_constant_memory() {
    let pacs = MockPacs::start().await;
    let cloud = MockUpstream::http().await;
    let dir = TempDir::new("prefront-pacs-1gib");
    let gw = RunningBinary::start(&binary_config(&dir, &cloud, &pacs));
    let base = gw.cloud_url();
    let pid = gw.pid();
    let client = streaming_client();

    // Warm up (connection pools, allocator arenas, TLS-free but otherwise the same path), then
    // take the idle figure.
    let warm = fetch(client.get(dcm_at(&base, &format!("size-{}", 4 * MIB)))).await;
    assert_whole_file(&warm, 4 * MIB, "warm-up download");
    // A deliberate pause, then three samples 100 ms apart: the idle figure is the memory at rest,
    // which has no event to wait for.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut idle = 0;
    for _ in 0..3 {
        idle = idle.max(rss_bytes(pid).expect("VmRSS of the gateway"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(idle));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            let mut samples = 0u32;
            while !stop.load(Ordering::Relaxed) {
                if let Some(rss) = rss_bytes(pid) {
                    peak.fetch_max(rss, Ordering::Relaxed);
                    samples += 1;
                }
                // The sampling period.
                std::thread::sleep(Duration::from_millis(100));
            }
            samples
        })
    };

    let started = Instant::now();
    let got = fetch_within(
        client.get(dcm_at(&base, &format!("size-{GIB}"))),
        Duration::from_secs(600),
    )
    .await;
    let secs = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.join().expect("sampler thread");
    let peak = peak
        .load(Ordering::Relaxed)
        .max(peak_rss_bytes(pid).unwrap_or(0));
    println!(
        "1 GiB through the gateway (debug build): {} bytes in {secs:.1} s = {:.1} MB/s; \
         gateway RSS idle {:.1} MiB, peak {:.1} MiB (+{:.1} MiB, {samples} samples)",
        got.len,
        got.len as f64 / 1e6 / secs,
        idle as f64 / MIB as f64,
        peak as f64 / MIB as f64,
        peak.saturating_sub(idle) as f64 / MIB as f64,
    );
    assert_whole_file(&got, GIB, "1 GiB download");
    assert!(
        peak.saturating_sub(idle) <= 32 * MIB,
        "the gateway's memory grew by {:.1} MiB (idle {:.1} MiB, peak {:.1} MiB) while streaming 1 GiB: \
         it must stream, not buffer",
        peak.saturating_sub(idle) as f64 / MIB as f64,
        idle as f64 / MIB as f64,
        peak as f64 / MIB as f64
    );
    // One log line for the stream, at its end, with the byte count.
    let line = Poll::new(Duration::from_secs(5), "the stream's log line")
        .try_until(async || {
            gw.log().iter().any(|l| {
                l.contains("stream")
                    && l.contains(&format!("bytes={GIB}"))
                    && l.contains("outcome=")
            })
        })
        .await;
    assert!(
        line.is_ok(),
        "no `stream … bytes={GIB} … outcome=` line:\n{}",
        gw.log().join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_is_logged_once_at_its_end_without_the_dcm_id() {
    const DCM_ID: &str = "PATIENT-110101199003077777";
    const ID_NUMBER: &str = "110101199003077777";
    let pacs = MockPacs::start().await;
    pacs.alias(DCM_ID, "size-100000");
    let cloud = MockUpstream::http().await;
    let dir = TempDir::new("prefront-pacs-log");
    let gw = RunningBinary::start(&binary_config(&dir, &cloud, &pacs));
    let base = gw.cloud_url();
    let client = streaming_client();

    let got = fetch(client.get(dcm_at(&base, DCM_ID))).await;
    assert_whole_file(&got, 100_000, "download by a patient-bearing dcmId");
    let token = prefront::pacs::LinkSigner::new(LINK_KEY.as_bytes())
        .mint(&pacs.file_url(DCM_ID), now_unix() + 600)
        .expect("minted");
    let via_link = fetch(client.get(format!("{base}/files/{token}"))).await;
    assert_whole_file(
        &via_link,
        100_000,
        "download by a link to a patient-bearing URL",
    );
    let missing = fetch(client.get(dcm_at(&base, &format!("{DCM_ID}-404")))).await;
    assert_eq!(missing.status, 404, "{}", missing.describe());
    assert_eq!(
        pacs.requests()[0].param("dcmId"),
        Some(DCM_ID),
        "the PACS itself gets the real dcmId"
    );

    let (status, log) = gw.terminate();
    assert!(status.success(), "clean exit: {status:?}");
    let all = log.join("\n");
    // The download is one `stream` line, written when it ended, with its byte count. (The 404
    // streamed nothing: it is the usual one line per call, with its outcome.)
    let streams: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("stream") && l.contains("bytes=") && l.contains("outcome="))
        .collect();
    assert_eq!(
        streams.len(),
        2,
        "one `stream` line per download (/pacs/dcm and /files):\n{all}"
    );
    assert!(
        streams.iter().all(|l| l.contains("bytes=100000")),
        "the byte count of each download:\n{all}"
    );
    assert_eq!(
        log.iter()
            .filter(|l| l.contains("outcome=") && l.contains("pacs-status"))
            .count(),
        1,
        "the 404 is logged once with its outcome:\n{all}"
    );
    // The token carries the URL (base64): logging it would log the URL.
    for secret in [DCM_ID, ID_NUMBER, token.as_str()] {
        let leaked: Vec<&String> = log.iter().filter(|l| l.contains(secret)).collect();
        assert!(
            leaked.is_empty(),
            "`{secret}` is in the log unmasked: {leaked:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_stream_is_logged_once_with_what_went_wrong() {
    let pacs = MockPacs::start().await;
    let cloud = MockUpstream::http().await;
    let dir = TempDir::new("prefront-pacs-log-broken");
    let gw = RunningBinary::start(&binary_config(&dir, &cloud, &pacs));
    let base = gw.cloud_url();
    let client = streaming_client();
    let stream_lines = |log: &[String]| -> Vec<String> {
        log.iter()
            .filter(|l| l.contains("stream") && l.contains("bytes=") && l.contains("outcome="))
            .cloned()
            .collect()
    };

    // The client goes away after 1 MiB of 64 MiB.
    let mut resp = client
        .get(dcm_at(&base, &format!("size-{}", 64 * MIB)))
        .send()
        .await
        .expect("the gateway answers");
    let mut got = 0u64;
    while got < MIB {
        match tokio::time::timeout(Duration::from_secs(10), resp.chunk()).await {
            Ok(Ok(Some(c))) => got += c.len() as u64,
            other => panic!("reading the first MiB: {other:?}"),
        }
    }
    drop(resp);
    // The PACS drops the connection after 2 MB of 8 MiB.
    let dropped = fetch(client.get(dcm_at(&base, &format!("size-{}-drop-2000000", 8 * MIB)))).await;
    assert!(dropped.error.is_some(), "{}", dropped.describe());

    let _ = Poll::new(Duration::from_secs(5), "two stream lines")
        .try_until(async || stream_lines(&gw.log()).len() >= 2)
        .await;
    // A quiet period for a third line that must not come (checked below).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, log) = gw.terminate();
    assert!(status.success(), "clean exit: {status:?}");
    let all = log.join("\n");
    let streams = stream_lines(&log);
    for line in &streams {
        println!("{line}");
    }
    assert_eq!(
        streams.len(),
        2,
        "each broken stream is logged once, when it ends:\n{all}"
    );
    for line in &streams {
        assert!(
            !line.contains("outcome=\"ok\"") && !line.contains("outcome=ok"),
            "a broken stream is not logged as ok: {line}"
        );
        let field = |name: &str| -> Option<u64> {
            line.split(&format!(" {name}="))
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
                .and_then(|n| n.trim_matches('"').parse().ok())
        };
        let (bytes, declared) = (field("bytes"), field("declared"));
        // What was written before the break: less than the file. (Loopback
        // socket buffers hold several MiB, so a client that read 1 MiB may
        // have been sent more than that before it went away.)
        assert!(
            bytes.is_some() && declared.is_some() && bytes < declared,
            "the bytes actually sent, less than the file: {line}"
        );
        if line.contains("pacs-broken") {
            assert!(
                bytes.is_some_and(|n| n <= 2_000_000),
                "no more than the PACS sent before it dropped: {line}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Streaming: ranges, conditionals, metadata
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_file_streams_with_the_pacs_metadata() {
    let b = bench("").await;
    let client = streaming_client();
    let size = 3 * MIB + 12345;
    let got = fetch(
        client
            .get(b.dcm(&format!("size-{size}")))
            .header("authorization", "Bearer cloud-platform-secret")
            .header("cookie", "cloudsession=abc"),
    )
    .await;
    assert_whole_file(&got, size, "whole file");
    assert_eq!(
        got.header("content-type"),
        Some(DICOM_TYPE),
        "{}",
        got.describe()
    );
    assert_eq!(
        got.header("content-disposition"),
        Some(format!("attachment;filename={}", disposition_filename(size)).as_str()),
        "{}",
        got.describe()
    );
    assert_eq!(got.header("etag"), Some(etag(size).as_str()));
    assert_eq!(got.header("last-modified"), Some(LAST_MODIFIED));
    assert_eq!(got.header("accept-ranges"), Some("bytes"));
    // Only the listed headers come back: the PACS's cookie and banner stay on the LAN.
    assert_eq!(got.header("set-cookie"), None, "{}", got.describe());
    assert_eq!(got.header("x-powered-by"), None, "{}", got.describe());
    assert!(
        !got.describe().contains("pacs01.hospital.lan"),
        "{}",
        got.describe()
    );

    let reqs = b.pacs.requests();
    assert_eq!(reqs.len(), 1, "one request to the PACS");
    assert_eq!(reqs[0].method, "GET");
    assert_eq!(reqs[0].path, "/pacs/dcm");
    assert_eq!(
        reqs[0].param("dcmId"),
        Some(format!("size-{size}").as_str())
    );
    assert_eq!(reqs[0].param("hospitalId"), Some(HOSPITAL));
    // Only the listed headers go to the PACS: the cloud's credentials do not.
    assert_eq!(
        reqs[0].header("authorization"),
        None,
        "{:?}",
        reqs[0].headers
    );
    assert_eq!(reqs[0].header("cookie"), None, "{:?}", reqs[0].headers);
    assert_eq!(b.his.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pacs_without_content_type_gives_octet_stream() {
    let b = bench("").await;
    let got = fetch(streaming_client().get(b.dcm("size-5000-notype"))).await;
    assert_whole_file(&got, 5000, "file without a type");
    assert_eq!(
        got.header("content-type"),
        Some("application/octet-stream"),
        "{}",
        got.describe()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_ranges_come_back_as_206_with_the_right_bytes() {
    let b = bench("").await;
    let client = streaming_client();
    let size: u64 = 1_000_000;
    let id = format!("size-{size}");
    // (Range header, first byte, last byte)
    let cases: [(&str, u64, u64); 6] = [
        ("bytes=0-99", 0, 99),
        ("bytes=65500-200000", 65_500, 200_000),
        ("bytes=999000-", 999_000, 999_999),
        ("bytes=-1000", 999_000, 999_999),
        ("bytes=999990-2000000", 999_990, 999_999),
        ("bytes=0-0", 0, 0),
    ];
    for (i, (range, first, last)) in cases.iter().enumerate() {
        let got = fetch(client.get(b.dcm(&id)).header("range", *range)).await;
        let what = format!("Range: {range}");
        assert_eq!(got.status, 206, "{what}: {}", got.describe());
        got.assert_clean(&what);
        assert_eq!(
            got.header("content-range"),
            Some(format!("bytes {first}-{last}/{size}").as_str()),
            "{what}: {}",
            got.describe()
        );
        assert_eq!(
            got.header("content-length"),
            Some((last - first + 1).to_string().as_str()),
            "{what}: {}",
            got.describe()
        );
        assert_eq!(
            got.body,
            content(*first, *last),
            "{what}: the bytes of that range"
        );
        let seen = b
            .pacs
            .wait_for_requests(i + 1, Duration::from_secs(5))
            .await;
        assert_eq!(
            seen.get(i).and_then(|r| r.header("range")),
            Some(*range),
            "{what}: the Range header reached the PACS"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_range_honours_the_range_only_for_the_current_etag() {
    let b = bench("").await;
    let client = streaming_client();
    let size: u64 = 300_000;
    let id = format!("size-{size}");

    let fresh = fetch(
        client
            .get(b.dcm(&id))
            .header("range", "bytes=100-199")
            .header("if-range", etag(size)),
    )
    .await;
    assert_eq!(fresh.status, 206, "current ETag: {}", fresh.describe());
    assert_eq!(fresh.body, content(100, 199), "current ETag: the range");
    assert_eq!(
        fresh.header("content-range"),
        Some(format!("bytes 100-199/{size}").as_str())
    );

    let stale = fetch(
        client
            .get(b.dcm(&id))
            .header("range", "bytes=100-199")
            .header("if-range", "\"v0-stale\""),
    )
    .await;
    assert_whole_file(&stale, size, "stale ETag: the whole file");
    assert_eq!(stale.header("content-range"), None, "{}", stale.describe());

    let seen = b.pacs.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].header("if-range"), Some(etag(size).as_str()));
    assert_eq!(seen[1].header("if-range"), Some("\"v0-stale\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsatisfiable_range_is_416_with_the_file_size() {
    let b = bench("").await;
    let size: u64 = 1_000_000;
    let got = fetch(
        streaming_client()
            .get(b.dcm(&format!("size-{size}")))
            .header("range", "bytes=2000000-"),
    )
    .await;
    assert_eq!(got.status, 416, "{}", got.describe());
    assert_eq!(
        got.header("content-range"),
        Some(format!("bytes */{size}").as_str()),
        "the client learns the size: {}",
        got.describe()
    );
    assert!(
        !got.text().contains("MOCK-PACS"),
        "the PACS's error page stays on the LAN: {}",
        got.describe()
    );
    // A non-2xx/3xx PACS status, like any other: marked, with the gateway's own short text.
    assert_gateway_error(&got, 416, "pacs-status", "PACS answers 416");
    assert_eq!(b.pacs.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_gives_the_headers_and_no_body() {
    let b = bench("").await;
    let started = Instant::now();
    let got = fetch(streaming_client().head(b.dcm(&format!("size-{GIB}")))).await;
    assert_eq!(got.status, 200, "{}", got.describe());
    got.assert_clean("HEAD");
    assert_eq!(got.len, 0, "no body on HEAD");
    assert_eq!(
        got.header("content-length"),
        Some(GIB.to_string().as_str()),
        "the size of the file: {}",
        got.describe()
    );
    assert_eq!(got.header("etag"), Some(etag(GIB).as_str()));
    assert_eq!(got.header("last-modified"), Some(LAST_MODIFIED));
    assert_eq!(got.header("content-type"), Some(DICOM_TYPE));
    assert!(got.header("content-disposition").is_some());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "HEAD of a 1 GiB file is quick"
    );
    let seen = b.pacs.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].method, "HEAD",
        "a HEAD is asked of the PACS as a HEAD"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_requests_pass_through_and_304_comes_back() {
    let b = bench("").await;
    let client = streaming_client();
    let size: u64 = 50_000;
    let id = format!("size-{size}");

    let got = fetch(client.get(b.dcm(&id)).header("if-none-match", etag(size))).await;
    assert_eq!(got.status, 304, "If-None-Match: {}", got.describe());
    assert_eq!(got.len, 0);
    assert_eq!(got.header("etag"), Some(etag(size).as_str()));
    assert_eq!(got.kind(), None, "{}", got.describe());

    let got = fetch(
        client
            .get(b.dcm(&id))
            .header("if-modified-since", LAST_MODIFIED),
    )
    .await;
    assert_eq!(got.status, 304, "If-Modified-Since: {}", got.describe());

    let got = fetch(client.get(b.dcm(&id)).header("if-none-match", "\"other\"")).await;
    assert_whole_file(&got, size, "If-None-Match with another ETag");

    let seen = b.pacs.requests();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].header("if-none-match"), Some(etag(size).as_str()));
    assert_eq!(seen[1].header("if-modified-since"), Some(LAST_MODIFIED));
    assert_eq!(seen[2].header("if-none-match"), Some("\"other\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_downloads_at_once_each_get_their_own_bytes() {
    let b = bench("").await;
    let client = streaming_client();
    let mut tasks = Vec::new();
    for i in 0..6u64 {
        let url = b.dcm(&format!("size-{}", 8 * MIB + i * 7919));
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let got = if i % 2 == 0 {
                fetch(client.get(url)).await
            } else {
                fetch(
                    client
                        .get(url)
                        .header("range", format!("bytes={}-", i * 100_003)),
                )
                .await
            };
            (i, got)
        }));
    }
    for t in tasks {
        let (i, got) = t.await.expect("download task");
        let size = 8 * MIB + i * 7919;
        if i % 2 == 0 {
            assert_whole_file(&got, size, &format!("download {i}"));
        } else {
            let first = i * 100_003;
            assert_eq!(got.status, 206, "download {i}: {}", got.describe());
            got.assert_clean(&format!("download {i}"));
            assert_eq!(got.len, size - first, "download {i}");
            assert_eq!(
                got.sha,
                expected_sha256_range(first, size - 1),
                "download {i}: its own bytes"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cloud_listener_streams_over_tls_too() {
    let pki = TestPki::new();
    let pacs = MockPacs::start().await;
    let his = MockUpstream::http().await;
    let cloud = MockUpstream::http().await;
    let toml = gateway_toml(&cloud, Some(&his), &pacs_toml(&pacs, ""))
        .set_path("cloud_listener.tls_cert", &pki.server_cert_path())
        .set_path("cloud_listener.tls_key", &pki.server_key_path())
        .render();
    let gw = spawn_gateway(&toml).await;
    let size = 16 * MIB + 1;
    let got = fetch(
        pki.client()
            .get(dcm_at(&gw.cloud_url(true), &format!("size-{size}"))),
    )
    .await;
    assert_whole_file(&got, size, "download over TLS");
}

// ---------------------------------------------------------------------------
// PACS failures
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pacs_error_statuses_come_back_with_the_gateways_own_body() {
    let b = bench("").await;
    let client = streaming_client();
    for (id, status) in [
        ("size-10-status-404", 404),
        ("size-10-status-500", 500),
        ("size-10-status-503", 503),
        ("no-such-image", 404),
    ] {
        let got = fetch(client.get(b.dcm(id))).await;
        assert_gateway_error(&got, status, "pacs-status", &format!("PACS answers {id}"));
    }
    assert_eq!(b.pacs.request_count(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pacs_dropping_mid_stream_is_a_broken_transfer_never_a_short_file() {
    let b = bench("").await;
    let size = 8 * MIB;
    let cut = 3_000_000;
    let got = fetch(streaming_client().get(b.dcm(&format!("size-{size}-drop-{cut}")))).await;
    assert_eq!(got.status, 200, "{}", got.describe());
    let promised: Option<u64> = got.header("content-length").and_then(|v| v.parse().ok());
    let broken = got.error.is_some() || promised.is_some_and(|n| got.len < n);
    assert!(
        broken,
        "the client must see the transfer break (a body error, or fewer bytes than the \
         Content-Length), not a clean {}-byte file: {}",
        got.len,
        got.describe()
    );
    assert!(got.len <= cut, "{}", got.describe());
    if got.len > 0 {
        assert_eq!(
            got.sha,
            expected_sha256_range(0, got.len - 1),
            "what did arrive is the file's beginning"
        );
    }
    let stream = b.pacs.requests()[0].stream.clone();
    assert!(
        matches!(stream.end(), Some(StreamEnd::DroppedByMock { .. })),
        "{:?}",
        stream.end()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pacs_without_content_length_streams_and_its_drop_still_breaks_the_transfer() {
    let b = bench("").await;
    let client = streaming_client();
    let size = 5 * MIB + 3;
    let got = fetch(client.get(b.dcm(&format!("size-{size}-chunked")))).await;
    assert_eq!(got.status, 200, "{}", got.describe());
    got.assert_clean("chunked PACS answer");
    assert_eq!(got.len, size, "{}", got.describe());
    assert_eq!(got.sha, expected_sha256(size), "the PACS's bytes");

    // No length to hold the gateway to: ending the body cleanly would hand the client a short
    // file that looks complete.
    let cut = 3_000_000;
    let got = fetch(client.get(b.dcm(&format!("size-{size}-chunked-drop-{cut}")))).await;
    assert_eq!(got.status, 200, "{}", got.describe());
    assert!(
        got.error.is_some(),
        "the client must see the transfer break, not a clean {}-byte file: {}",
        got.len,
        got.describe()
    );
    assert!(got.len <= cut, "{}", got.describe());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_pacs_ends_the_transfer_after_read_timeout() {
    let b = bench("read_timeout = \"1s\"").await;
    let size = 4 * MIB;
    let got = fetch_within(
        streaming_client().get(b.dcm(&format!("size-{size}-stall-{MIB}"))),
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.describe());
    assert!(
        got.error
            .as_deref()
            .is_some_and(|e| !e.starts_with("TEST LIMIT")),
        "the transfer must break when the PACS stalls: {}",
        got.describe()
    );
    assert_eq!(got.len, MIB, "every byte the PACS sent arrived");
    let quiet = got.ended_at - got.last_data_at.unwrap_or(got.ended_at);
    assert!(
        quiet >= Duration::from_millis(500) && quiet <= Duration::from_secs(4),
        "ended {quiet:?} after the last byte; read_timeout is 1 s"
    );
    // The box gave up on the PACS too.
    let stream = b.pacs.requests()[0].stream.clone();
    assert!(
        matches!(
            stream.wait_end(Duration::from_secs(5)).await,
            Some(StreamEnd::ClientGone { .. })
        ),
        "the connection to the stalled PACS is closed: {:?}",
        stream.end()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pacs_that_stalls_before_the_first_byte_is_cut_off_too() {
    let b = bench("read_timeout = \"1s\"").await;
    let started = Instant::now();
    let got = fetch_within(
        streaming_client().get(b.dcm("size-100000-stall-0")),
        Duration::from_secs(20),
    )
    .await;
    let took = started.elapsed();
    // Either answer is honest: 504 before any byte, or a 200 whose body then breaks.
    let timed_out = got.status == 504 && got.kind() == Some("pacs-timeout");
    let broken = got.status == 200
        && got
            .error
            .as_deref()
            .is_some_and(|e| !e.starts_with("TEST LIMIT"));
    assert!(
        timed_out || broken,
        "headers then silence: {}",
        got.describe()
    );
    assert!(
        took <= Duration::from_secs(4),
        "ended after {took:?}; read_timeout is 1 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pacs_that_never_answers_is_504_after_read_timeout() {
    let b = bench("read_timeout = \"1s\"").await;
    let started = Instant::now();
    let got = fetch(streaming_client().get(b.dcm("size-1000-hang"))).await;
    let took = started.elapsed();
    assert_gateway_error(&got, 504, "pacs-timeout", "PACS never answers");
    assert!(
        took >= Duration::from_millis(900) && took <= Duration::from_secs(4),
        "answered after {took:?}; read_timeout is 1 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_but_steady_pacs_is_not_cut_off() {
    let b = bench("read_timeout = \"1s\"").await;
    // 16 KiB every 300 ms for 12 chunks: ~3.3 s in all, never 1 s of silence.
    let size: u64 = 12 * 16384;
    let started = Instant::now();
    let got = fetch(streaming_client().get(b.dcm(&format!("size-{size}-pace-16384-300")))).await;
    let took = started.elapsed();
    assert_whole_file(&got, size, "slow but steady");
    assert!(
        took >= Duration::from_secs(3),
        "the PACS paced it ({took:?}): a total time limit would have cut it off"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_cancels_the_pacs_request() {
    let b = bench("").await;
    let size = 256 * MIB;
    let mut resp = streaming_client()
        .get(b.dcm(&format!("size-{size}")))
        .send()
        .await
        .expect("the gateway answers");
    assert_eq!(resp.status(), 200);
    let mut got = 0u64;
    while got < MIB {
        match tokio::time::timeout(Duration::from_secs(10), resp.chunk()).await {
            Ok(Ok(Some(c))) => got += c.len() as u64,
            other => panic!("reading the first MiB: {other:?}"),
        }
    }
    drop(resp);
    let gone_at = Instant::now();
    let stream = b.pacs.requests()[0].stream.clone();
    let end = stream.wait_end(Duration::from_secs(5)).await;
    match end {
        Some(StreamEnd::ClientGone { sent, at }) => {
            println!(
                "client read {got} bytes and left; the PACS saw the connection close after {:?}, \
                 having sent {sent} of {size} bytes",
                at.saturating_duration_since(gone_at)
            );
            assert!(sent < size, "the PACS stopped before the end");
        }
        other => panic!(
            "within 5 s of the client leaving, the PACS must see its request cancelled; \
             it saw {other:?} with {} of {size} bytes sent",
            stream.bytes_sent()
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_pacs_is_502() {
    let closed = closed_port_addr();
    let section = format!(
        "[pacs]\ndcm_url = \"http://{closed}/pacs/dcm?dcmId={{dcmId}}&hospitalId={{hospitalId}}\"\n\
         internal_hosts = [\"{closed}\"]\nlink_key = {LINK_KEY:?}\n"
    );
    let b = bench_with(MockPacs::start().await, &section).await;
    let started = Instant::now();
    let got = fetch(streaming_client().get(b.dcm("size-1000"))).await;
    assert_gateway_error(&got, 502, "pacs-unreachable", "PACS port closed");
    assert!(started.elapsed() < Duration::from_secs(6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_dcm_url_the_pacs_routes_are_404() {
    for (what, section) in [
        ("no [pacs] at all", String::new()),
        (
            "[pacs] without dcm_url",
            format!("[pacs]\nlink_key = {LINK_KEY:?}\n"),
        ),
    ] {
        let b = bench_with(MockPacs::start().await, &section).await;
        let got = fetch(streaming_client().get(b.dcm("size-1000"))).await;
        assert_gateway_error(&got, 404, "pacs-not-configured", what);
        assert_eq!(b.pacs.request_count(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_methods_are_405() {
    let b = bench("").await;
    let client = streaming_client();
    let token = prefront::pacs::LinkSigner::new(LINK_KEY.as_bytes())
        .mint(&b.pacs.file_url("size-1000"), now_unix() + 600)
        .expect("minted");
    for url in [b.dcm("size-1000"), format!("{}/files/{token}", b.base())] {
        for method in ["POST", "PUT", "DELETE", "PATCH"] {
            let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
            let got = fetch(client.request(m, &url).body("x")).await;
            assert_eq!(got.status, 405, "{method} {url}: {}", got.describe());
        }
    }
    assert_eq!(b.pacs.request_count(), 0, "nothing reached the PACS");
}

// ---------------------------------------------------------------------------
// Redirects
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_off_the_internal_hosts_is_refused_and_never_followed() {
    let b = bench("").await;
    let outside = MockPacs::start().await; // another port: not in internal_hosts
    let target = outside.file_url("size-1000");
    let id = b.pacs.redirect(&target);
    let got = fetch(streaming_client().get(b.dcm(&id))).await;
    assert_gateway_error(&got, 502, "redirect-refused", "PACS redirects outside");
    assert_eq!(
        got.header("location"),
        None,
        "the Location never reaches the client: {}",
        got.describe()
    );
    assert!(
        !got.text().contains(&outside.port().to_string()),
        "nor its address in the body: {}",
        got.describe()
    );
    assert_eq!(outside.request_count(), 0, "the outside host got nothing");

    // The same through a signed link whose target redirects outside.
    let via_link = b.pacs.redirect(&target);
    let token = prefront::pacs::LinkSigner::new(LINK_KEY.as_bytes())
        .mint(&b.pacs.file_url(&via_link), now_unix() + 600)
        .expect("minted");
    let got = fetch(streaming_client().get(format!("{}/files/{token}", b.base()))).await;
    assert_gateway_error(&got, 502, "redirect-refused", "a link redirected outside");
    assert_eq!(got.header("location"), None, "{}", got.describe());
    assert_eq!(outside.request_count(), 0, "the outside host got nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_loop_ends_in_502() {
    let b = bench("").await;
    // `redirect-1` on /file/ redirects to itself.
    let looped = b.pacs.redirect(&b.pacs.file_url("redirect-1"));
    assert_eq!(looped, "redirect-1");
    let started = Instant::now();
    let got = fetch(streaming_client().get(b.dcm(&looped))).await;
    assert_eq!(got.status, 502, "{}", got.describe());
    assert_eq!(got.header("location"), None, "{}", got.describe());
    assert!(started.elapsed() < Duration::from_secs(5));
    let n = b.pacs.request_count();
    assert!(
        (2..=12).contains(&n),
        "a few hops are followed, then the box gives up: {n} requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_within_the_internal_host_is_followed() {
    let b = bench("").await;
    let client = streaming_client();
    let absolute = b.pacs.redirect(&b.pacs.file_url("size-5000"));
    let got = fetch(client.get(b.dcm(&absolute))).await;
    assert_whole_file(&got, 5000, "absolute redirect to the same host");
    let relative = b.pacs.redirect("/file/size-7000");
    let got = fetch(client.get(b.dcm(&relative))).await;
    assert_whole_file(&got, 7000, "relative redirect");
    let paths: Vec<String> = b.pacs.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths,
        [
            "/pacs/dcm",
            "/file/size-5000",
            "/pacs/dcm",
            "/file/size-7000"
        ]
    );
}

// ---------------------------------------------------------------------------
// dcmId: validation and encoding (SSRF)
// ---------------------------------------------------------------------------

/// Ids a caller may legitimately send: forwarded, and decoded by the PACS to exactly themselves.
fn benign_ids() -> Vec<String> {
    vec![
        "1.2.840.113619.2.55.3.604688119.971.1194380720.163".into(),
        "a+b c".into(),
        "影像-001".into(),
        "PATIENT-110101199003077777".into(),
        "x".repeat(256),
        "中".repeat(85), // 255 bytes
    ]
}

/// Ids trying to escape the template: forwarded as one encoded value, or refused with 400.
fn hostile_ids() -> Vec<String> {
    [
        "../../etc/passwd",
        "..%2f..%2fadmin",
        "%2e%2e",
        "a/../../admin",
        "x@evil.example",
        "@evil.example:80/x",
        "x#frag",
        "x%0d%0aX-Injected: 1",
        "x?x=1&y=2",
        "x&hospitalId=999",
        "http://evil.example/x",
        "\\\\evil.example\\x",
        "a;b=c",
        "{dcmId}{hospitalId}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Ids the gateway must refuse with 400 bad-dcm-id.
fn bad_ids() -> Vec<String> {
    vec![
        "".into(),
        ".".into(),
        "..".into(),
        "...".into(),
        "a\r\nX-Injected: 1".into(),
        "a\nb".into(),
        "a\rb".into(),
        "a\tb".into(),
        "a\u{0}b".into(),
        "a\u{7f}b".into(),
        "a\u{85}b".into(),
        "x".repeat(257),
        "中".repeat(86), // 258 bytes
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_dcm_ids_are_refused_before_the_pacs_is_asked() {
    let b = bench("").await;
    let client = streaming_client();
    for id in bad_ids() {
        let got = fetch(client.get(b.dcm(&id))).await;
        assert_gateway_error(&got, 400, "bad-dcm-id", &format!("dcmId {id:?}"));
    }
    let got = fetch(client.get(format!("{}/pacs/dcm?hospitalId={HOSPITAL}", b.base()))).await;
    assert_gateway_error(&got, 400, "bad-dcm-id", "no dcmId");
    assert_eq!(b.pacs.request_count(), 0, "the PACS was never asked");
}

/// Where the id lands in the PACS URL.
#[derive(Clone, Copy, Debug)]
enum Slot {
    /// `/pacs/dcm?dcmId={dcmId}&hospitalId={hospitalId}`
    Query,
    /// `/file/{dcmId}?hospitalId={hospitalId}`
    Path,
}

/// Checks the PACS's view of one forwarded id: same host (by construction: the only listener),
/// same path, one encoded value that decodes to exactly `id`.
fn check_forwarded(req: &PacsRequest, id: &str, slot: Slot) -> Result<(), String> {
    if req.uri.contains(['#', ' ', '\r', '\n']) {
        return Err(format!(
            "raw characters in the request target {:?}",
            req.uri
        ));
    }
    match slot {
        Slot::Query => {
            let names: Vec<&str> = req.params.iter().map(|(k, _)| k.as_str()).collect();
            if req.path != "/pacs/dcm" || names != ["dcmId", "hospitalId"] {
                return Err(format!("path/parameters changed: {:?}", req.uri));
            }
            if req.param("dcmId") != Some(id) || req.param("hospitalId") != Some(HOSPITAL) {
                return Err(format!(
                    "decodes to dcmId={:?} hospitalId={:?} (sent as {:?})",
                    req.param("dcmId"),
                    req.param("hospitalId"),
                    req.uri
                ));
            }
        }
        Slot::Path => {
            let Some(segment) = req.path.strip_prefix("/file/") else {
                return Err(format!("path changed: {:?}", req.uri));
            };
            if segment.contains('/') || pct_decode(segment) != id.as_bytes() {
                return Err(format!(
                    "path segment {segment:?} decodes to {:?}",
                    String::from_utf8_lossy(&pct_decode(segment))
                ));
            }
            if req.params != [("hospitalId".to_string(), HOSPITAL.to_string())] {
                return Err(format!("query changed: {:?}", req.uri));
            }
        }
    }
    Ok(())
}

async fn walk_ids(b: &Bench, slot: Slot) {
    let client = streaming_client();
    let mut problems = Vec::new();
    let ids: Vec<(String, bool)> = benign_ids()
        .into_iter()
        .map(|i| (i, true))
        .chain(hostile_ids().into_iter().map(|i| (i, false)))
        .chain(
            bad_ids()
                .into_iter()
                .filter(|i| !i.is_empty())
                .map(|i| (i, false)),
        )
        .collect();
    let bad = bad_ids();
    for (id, must_forward) in ids {
        let before = b.pacs.request_count();
        let got = fetch(client.get(b.dcm(&id))).await;
        let after = b.pacs.requests();
        let new = &after[before..];
        let must_refuse = bad.contains(&id);
        let refused = got.status == 400 && got.kind() == Some("bad-dcm-id");
        let verdict = if refused {
            if must_forward {
                Err("refused a legitimate id".to_string())
            } else if !new.is_empty() {
                Err(format!(
                    "refused, yet {} request(s) reached the PACS",
                    new.len()
                ))
            } else {
                Ok(())
            }
        } else if must_refuse {
            Err(format!(
                "not refused with 400 bad-dcm-id: {}",
                got.describe()
            ))
        } else if new.len() != 1 {
            Err(format!(
                "{} requests reached the PACS (expected one)",
                new.len()
            ))
        } else {
            check_forwarded(&new[0], &id, slot)
        };
        match verdict {
            Ok(()) if refused => println!("{slot:?} {id:?}: refused (400 bad-dcm-id)"),
            Ok(()) => println!("{slot:?} {id:?}: forwarded as {:?}", new[0].uri),
            Err(e) => problems.push(format!("{slot:?} {id:?}: {e}")),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dcm_id_in_the_query_reaches_the_pacs_as_one_encoded_value() {
    let b = bench("").await;
    walk_ids(&b, Slot::Query).await;
    // A hostile hospitalId cannot smuggle a second dcmId either.
    let client = streaming_client();
    let before = b.pacs.request_count();
    let url = format!(
        "{}/pacs/dcm?dcmId=size-10&hospitalId={}",
        b.base(),
        pct_encode("253&dcmId=size-1")
    );
    let got = fetch(client.get(url)).await;
    let new = b.pacs.requests()[before..].to_vec();
    if got.status != 400 {
        assert_eq!(new.len(), 1, "{}", got.describe());
        assert_eq!(new[0].param_all("dcmId"), ["size-10"], "{:?}", new[0].uri);
        assert_eq!(new[0].param("hospitalId"), Some("253&dcmId=size-1"));
    } else {
        assert!(new.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dcm_id_in_the_path_stays_one_encoded_segment() {
    let pacs = MockPacs::start().await;
    let section = format!(
        "[pacs]\ndcm_url = \"{}/file/{{dcmId}}?hospitalId={{hospitalId}}\"\n\
         internal_hosts = [{:?}]\nlink_key = {LINK_KEY:?}\n",
        pacs.url(),
        pacs.host_port()
    );
    let b = bench_with(pacs, &section).await;
    walk_ids(&b, Slot::Path).await;
}

// ---------------------------------------------------------------------------
// Link rewriting and /files
// ---------------------------------------------------------------------------

const PACS_REPORT_DCM: &str = "hospital.interface.pacsReportDcm";

/// A `pacsReportDcm` answer in the specification's shape (16.1.3), compact, with numbers and a
/// base64 blob that a re-serialisation would change. `{P}` is the internal PACS, `{Q}` another
/// port on the same address (not internal). `type` comes after `dcms` in the first two series
/// and before it in the third.
const ANSWER_TEMPLATE: &str = r#"{"success":true,"msg":"成功","code":"10001","data":[{"series":"1 ","describe":"腿部（部位描述）","thumbnailUrl":"http://abc/shotcut.png","dcms":["{P}/file/size-300000","{P}/file/size-70000","http://abc/pacs/file-1"],"type":"url","count":2,"weight":3.10,"big":12345678901234567890,"exp":1e3,"neg":-0.0,"esc":"\u5f20\/x"},{"series":"2","describe":"胸部","thumbnailUrl":"{P}/file/size-5000","dcms":["23231add212ad12dada21","{P}/file/size-9"],"type":"dcmId","pdfUrl":"{P}/file/size-123457","blob":"iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==","report":{"reportUrl":"{P}/file/size-4000","imageUrl":"http://{PHOST}@abc/x.png","otherUrl":"{P}/file/size-1"},"note":"{P}/file/size-2"},{"series":"3","type":"url","imageUrl":"{Q}/file/size-3","pdfUrl":null,"reportUrl":12,"dcms":["{P}/file/size-6000"]}]}"#;

/// (where, original URL, size) of every link that must be rewritten.
fn rewritten_paths() -> Vec<(&'static str, &'static str, u64)> {
    vec![
        ("/data/0/dcms/0", "{P}/file/size-300000", 300_000),
        ("/data/0/dcms/1", "{P}/file/size-70000", 70_000),
        ("/data/1/thumbnailUrl", "{P}/file/size-5000", 5000),
        ("/data/1/pdfUrl", "{P}/file/size-123457", 123_457),
        ("/data/1/report/reportUrl", "{P}/file/size-4000", 4000),
        ("/data/2/dcms/0", "{P}/file/size-6000", 6000),
    ]
}

fn answer_for(pacs: &MockPacs, other: &MockPacs) -> String {
    ANSWER_TEMPLATE
        .replace("{PHOST}", &pacs.host_port())
        .replace("{P}", &pacs.url())
        .replace("{Q}", &other.url())
}

async fn call_his(b: &Bench, name: &str) -> (String, Value) {
    let resp = post(format!("{}/his/{name}", b.base()))
        .body(r#"{"hospitalId":"253","id":"256525452","patType":"1","medicalCardNumber":"001000056254587"}"#)
        .expect_status(200)
        .send()
        .await;
    (resp.text(), resp.json())
}

/// The rewritten links of an answer built from `ANSWER_TEMPLATE`, in `rewritten_paths` order,
/// checked against the original text: everything else must be byte-for-byte the HIS's.
fn check_rewritten(original: &str, text: &str, v: &Value, pacs: &MockPacs) -> Vec<String> {
    let mut expected = original.to_string();
    let mut links = Vec::new();
    for (at, orig, _) in rewritten_paths() {
        let orig = orig.replace("{P}", &pacs.url());
        let link = v
            .pointer(at)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no string at {at} in {text}"))
            .to_string();
        assert!(
            link.starts_with(&format!("{PUBLIC_URL}/files/")) && link.len() > PUBLIC_URL.len() + 8,
            "{at}: {orig} must become {PUBLIC_URL}/files/<token>, is {link:?}"
        );
        assert!(
            !link.contains(&pacs.host_port()),
            "{at}: the internal address must not show: {link}"
        );
        let quoted = format!("\"{orig}\"");
        assert_eq!(
            original.matches(&quoted).count(),
            1,
            "test bug: {orig} not unique"
        );
        expected = expected.replace(&quoted, &format!("\"{link}\""));
        links.push(link);
    }
    assert_eq!(
        text, expected,
        "only the internal links in the rewrite fields change, byte for byte"
    );
    links
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_links_in_his_answers_become_signed_links_that_stream_the_file() {
    let b = bench("").await;
    let other = MockPacs::start().await;
    let original = answer_for(&b.pacs, &other);
    b.his
        .respond(&format!("/his/{PACS_REPORT_DCM}"), 200, &original);

    let (text, v) = call_his(&b, PACS_REPORT_DCM).await;
    let links = check_rewritten(&original, &text, &v, &b.pacs);
    assert_eq!(b.his.request_count(), 1);
    assert_eq!(b.pacs.request_count(), 0, "rewriting fetches nothing");

    let client = streaming_client();
    for ((at, orig, size), link) in rewritten_paths().into_iter().zip(&links) {
        let before = b.pacs.request_count();
        let got = fetch(client.get(b.link(link))).await;
        assert_whole_file(&got, size, &format!("{at} ({orig})"));
        let reqs = b.pacs.requests();
        assert_eq!(reqs.len(), before + 1);
        assert_eq!(
            reqs[before].path,
            format!("/file/size-{size}"),
            "{at}: the link leads to the original URL"
        );
    }
    // /files streams exactly like /pacs/dcm: HEAD and ranges too.
    let head = fetch(client.head(b.link(&links[0]))).await;
    assert_eq!(head.status, 200, "{}", head.describe());
    assert_eq!(head.len, 0);
    assert_eq!(head.header("content-length"), Some("300000"));
    assert_eq!(head.header("etag"), Some(etag(300_000).as_str()));
    let part = fetch(client.get(b.link(&links[0])).header("range", "bytes=10-19")).await;
    assert_eq!(part.status, 206, "{}", part.describe());
    assert_eq!(part.body, content(10, 19));
    assert_eq!(part.header("content-range"), Some("bytes 10-19/300000"));
    assert_eq!(
        other.request_count(),
        0,
        "the non-internal host was never called"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_configured_fields_are_rewritten() {
    let b = bench("rewrite_fields = [\"pdfUrl\"]").await;
    let other = MockPacs::start().await;
    let original = answer_for(&b.pacs, &other);
    b.his
        .respond(&format!("/his/{PACS_REPORT_DCM}"), 200, &original);
    let (text, v) = call_his(&b, PACS_REPORT_DCM).await;
    let link = v
        .pointer("/data/1/pdfUrl")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    assert!(link.starts_with(&format!("{PUBLIC_URL}/files/")), "{text}");
    let orig = format!("\"{}/file/size-123457\"", b.pacs.url());
    assert_eq!(
        text,
        original.replace(&orig, &format!("\"{link}\"")),
        "pdfUrl only"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_without_internal_links_is_returned_unchanged() {
    let b = bench("").await;
    let answer = r#"{"success":true,"msg":"成功","code":"10001","data":{"pdfUrl":"https://www.example.com/pdfReportxxxx","n":1.50e0}}"#;
    b.his
        .respond("/his/hospital.interface.pacsReportDetail", 200, answer);
    let (text, _) = call_his(&b, "hospital.interface.pacsReportDetail").await;
    assert_eq!(text, answer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_dcms_string_of_type_url_is_rewritten_too() {
    // The specification shows `dcms` as a list; a HIS that sends one URL as a plain string still
    // points at the LAN, and an unrewritten LAN address is a dead link for the patient.
    let b = bench("").await;
    let original = format!(
        r#"{{"success":true,"msg":"成功","code":"10001","data":[{{"series":"1","dcms":"{}/file/size-8","type":"url"}}]}}"#,
        b.pacs.url()
    );
    b.his
        .respond(&format!("/his/{PACS_REPORT_DCM}"), 200, &original);
    let (text, v) = call_his(&b, PACS_REPORT_DCM).await;
    let link = v
        .pointer("/data/0/dcms")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    assert!(
        link.starts_with(&format!("{PUBLIC_URL}/files/")),
        "a `dcms` string of type url is a link like any other: {text}"
    );
    let got = fetch(streaming_client().get(b.link(&link))).await;
    assert_whole_file(&got, 8, "the single dcms link");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_internal_link_with_escaped_slashes_is_rewritten_too() {
    // org.json, PHP's json_encode and others write `/` as `\/`: the same URL to any JSON reader,
    // so the same internal link.
    let b = bench("").await;
    let escaped = b.pacs.url().replace('/', "\\/") + "\\/file\\/size-2345";
    let original = format!(
        r#"{{"success":true,"msg":"","code":"10001","data":{{"pdfUrl":"{escaped}","report":[{{"pdfUrl":"{escaped}"}}]}}}}"#
    );
    b.his
        .respond("/his/hospital.interface.pacsReportDetail", 200, &original);
    let (text, v) = call_his(&b, "hospital.interface.pacsReportDetail").await;
    assert!(
        !text.contains(&b.pacs.host_port()),
        "no internal address is left in the answer: {text}"
    );
    let client = streaming_client();
    for at in ["/data/pdfUrl", "/data/report/0/pdfUrl"] {
        let link = v
            .pointer(at)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no string at {at}: {text}"));
        let got = fetch(client.get(b.link(link))).await;
        assert_whole_file(&got, 2345, at);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_slowly_holds_the_pacs_back() {
    let b = bench("").await;
    let size = GIB;
    let mut resp = streaming_client()
        .get(b.dcm(&format!("size-{size}")))
        .send()
        .await
        .expect("the gateway answers");
    assert_eq!(resp.status(), 200);
    let mut sha = Sha256Stream::new();
    while sha.len() < MIB {
        match tokio::time::timeout(Duration::from_secs(10), resp.chunk()).await {
            Ok(Ok(Some(c))) => sha.update(&c),
            other => panic!("reading the first MiB: {other:?}"),
        }
    }
    let got = sha.len();
    // The client stops reading (keeping the connection): once the buffers on the way are full,
    // the PACS must be held back rather than drained into the gateway's memory.
    let stream = b.pacs.requests()[0].stream.clone();
    // The pause is the point: what the PACS sends over 1 s while the client has not read for
    // 1.5 s.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let at_1_5s = stream.bytes_sent();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let at_2_5s = stream.bytes_sent();
    println!(
        "client paused after {got} bytes: the PACS had sent {at_1_5s} bytes after 1.5 s, {at_2_5s} after 2.5 s"
    );
    assert!(
        at_2_5s - at_1_5s < MIB && at_2_5s < 256 * MIB,
        "the PACS kept sending while the client did not read ({at_1_5s} -> {at_2_5s} bytes)"
    );
    // Reading again resumes the transfer where it was.
    while sha.len() < 64 * MIB {
        match tokio::time::timeout(Duration::from_secs(10), resp.chunk()).await {
            Ok(Ok(Some(c))) => sha.update(&c),
            other => panic!("reading on after the pause: {other:?}"),
        }
    }
    let read = sha.len();
    assert_eq!(
        sha.finish(),
        expected_sha256_range(0, read - 1),
        "the bytes before and after the pause are the file's"
    );
}

// ---------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------

/// One character changed to another of the same kind (the token stays URL-safe).
fn flip(token: &str, i: usize) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    chars[i] = match chars[i] {
        'z' => 'a',
        'Z' => 'A',
        '9' => '0',
        c if c.is_ascii_alphanumeric() => (c as u8 + 1) as char,
        '-' => '_',
        '_' => '-',
        _ => 'A',
    };
    chars.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_truncated_expired_and_foreign_links_reach_nothing() {
    let b = bench("").await;
    let outside = MockPacs::start_on("127.0.0.2").await;
    let other_port = MockPacs::start().await;
    let client = streaming_client();
    let signer = prefront::pacs::LinkSigner::new(LINK_KEY.as_bytes());
    let url = b.pacs.file_url("size-1000");
    let good = signer.mint(&url, now_unix() + 600).expect("minted");
    let files = |token: &str| format!("{}/files/{token}", b.base());

    let mut problems = Vec::new();
    let mut expect = |got: Got, status: u16, kind: &str, what: String| {
        if got.status != status || got.kind() != Some(kind) {
            problems.push(format!(
                "{what}: expected {status} {kind}, got {}",
                got.describe()
            ));
        }
    };
    for i in 0..good.chars().count() {
        let forged = flip(&good, i);
        let got = fetch(client.get(files(&forged))).await;
        expect(
            got,
            403,
            "link-forged",
            format!("character {i} changed ({forged})"),
        );
    }
    let n = good.len();
    for keep in [n - 1, n - 4, n / 2, 1] {
        let got = fetch(client.get(files(&good[..keep]))).await;
        expect(
            got,
            403,
            "link-forged",
            format!("truncated to {keep} of {n}"),
        );
    }
    let other_key = prefront::pacs::LinkSigner::new(b"another-key-another-key-another-key-0000");
    let got = fetch(client.get(files(
        &other_key.mint(&url, now_unix() + 600).expect("minted"),
    )))
    .await;
    expect(got, 403, "link-forged", "signed with another key".into());

    let expired = signer.mint(&url, now_unix() - 10).expect("minted");
    let got = fetch(client.get(files(&expired))).await;
    expect(got, 410, "link-expired", "expired 10 s ago".into());

    for foreign in [
        outside.file_url("size-1000"),
        other_port.file_url("size-1000"),
    ] {
        let got = fetch(client.get(files(
            &signer.mint(&foreign, now_unix() + 600).expect("minted"),
        )))
        .await;
        expect(
            got,
            403,
            "link-host-not-internal",
            format!("validly signed for {foreign}"),
        );
    }
    let got = fetch(client.head(files(&flip(&good, n / 2)))).await;
    expect(got, 403, "link-forged", "HEAD with a forged token".into());

    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(b.pacs.request_count(), 0, "no request reached the PACS");
    assert_eq!(outside.request_count(), 0, "nor the outside host");
    assert_eq!(other_port.request_count(), 0, "nor the other port");
    assert_eq!(b.his.request_count(), 0, "nor the HIS");

    // The untouched token works (the refusals above were about the changes).
    let got = fetch(client.get(files(&good))).await;
    assert_whole_file(&got, 1000, "the genuine token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_expires_after_link_ttl() {
    let b = bench("link_ttl = \"2s\"").await;
    let other = MockPacs::start().await;
    let original = answer_for(&b.pacs, &other);
    b.his
        .respond(&format!("/his/{PACS_REPORT_DCM}"), 200, &original);
    let (text, v) = call_his(&b, PACS_REPORT_DCM).await;
    let links = check_rewritten(&original, &text, &v, &b.pacs);
    let client = streaming_client();
    let got = fetch(client.get(b.link(&links[2]))).await;
    assert_whole_file(&got, 5000, "a fresh link");
    // Until the token's own expiry has passed, by the same clock and check the box uses.
    let token = links[2].rsplit('/').next().expect("a /files/<token> link");
    let signer = prefront::pacs::LinkSigner::new(LINK_KEY.as_bytes());
    poll_until(
        Duration::from_secs(5),
        "the link's expiry (link_ttl 2 s)",
        async || signer.verify(token, unix_now()) == Err(prefront::pacs::LinkError::Expired),
    )
    .await;
    let got = fetch(client.get(b.link(&links[2]))).await;
    assert_gateway_error(&got, 410, "link-expired", "after link_ttl");
    assert_eq!(
        b.pacs.request_count(),
        1,
        "the expired link reached nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_link_key_the_generated_key_survives_a_restart() {
    let pacs = MockPacs::start().await;
    let his = MockUpstream::http().await;
    let cloud = MockUpstream::http().await;
    let other = MockPacs::start().await;
    let original = answer_for(&pacs, &other);
    his.respond(&format!("/his/{PACS_REPORT_DCM}"), 200, &original);
    let state = TempDir::new("prefront-pacs-state");
    let config = gateway_toml(&cloud, Some(&his), "")
        .set("pacs.dcm_url", pacs.dcm_url_template())
        .set("pacs.internal_hosts", vec![pacs.host_port()])
        .set_path("buffer.path", &state.path().join("buffer"));
    let toml = config.render();

    let gw = spawn_gateway(&toml).await;
    let v = post(format!("{}/his/{PACS_REPORT_DCM}", gw.cloud_url(false)))
        .body("{}")
        .send()
        .await
        .json();
    let link = v
        .pointer("/data/1/pdfUrl")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let path = link
        .strip_prefix(PUBLIC_URL)
        .unwrap_or_else(|| panic!("rewritten: {v}"))
        .to_string();
    gw.shutdown().await;

    let gw = spawn_gateway(&toml).await;
    let got = fetch(streaming_client().get(format!("{}{path}", gw.cloud_url(false)))).await;
    assert_whole_file(&got, 123_457, "a link minted before the restart");
    gw.shutdown().await;

    // Another box (another state directory) has another key.
    let elsewhere = TempDir::new("prefront-pacs-state-2");
    let toml2 = config
        .set_path("buffer.path", &elsewhere.path().join("buffer"))
        .render();
    let gw = spawn_gateway(&toml2).await;
    let got = fetch(streaming_client().get(format!("{}{path}", gw.cloud_url(false)))).await;
    assert_gateway_error(&got, 403, "link-forged", "a link from another box");
}

// ---------------------------------------------------------------------------
// A SOAP HIS (spyne, as in tests/soap_his.rs)
// ---------------------------------------------------------------------------

/// A spyne HIS process, killed on drop.
struct SpyneHis {
    child: std::process::Child,
    port: u16,
}

impl Drop for SpyneHis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `tests/his/spyne_his.py` (SOAP 1.1); `None` when spyne is not installed and this is
/// not CI (CI installs it: see .ci/run).
fn spyne() -> Option<SpyneHis> {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/his/spyne_his.py");
    let has_spyne = Command::new("python3")
        .args(["-c", "import spyne, lxml"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_spyne {
        assert!(
            std::env::var_os("CI").is_none(),
            "spyne is missing: .ci/run must `pip install spyne lxml`"
        );
        eprintln!("skipping: python3 spyne/lxml not installed");
        return None;
    }
    let mut child = Command::new("python3")
        .args([script, "1.1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 runs");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("spyne HIS printed its port");
    let port = line.trim().parse().expect("a port number");
    Some(SpyneHis { child, port })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_in_a_soap_his_answer_are_rewritten_too() {
    let Some(spyne) = spyne() else { return };
    let pacs = MockPacs::start().await;
    // spyne's createCard answers {"data": {"param": <the JSON it got>, ...}}: the internal links
    // the cloud sends come back from the HIS inside a SOAP answer.
    let section = format!(
        "{}\n[[his.route]]\nname = \"{PACS_REPORT_DCM}\"\nkind = \"soap\"\nurl = \"http://127.0.0.1:{}/\"\n\
         namespace = \"http://his.example/\"\noperation = \"createCard\"\ntimeout_ms = 5000\n",
        pacs_toml(&pacs, ""),
        spyne.port
    );
    let b = bench_with(pacs, &section).await;
    let request = format!(
        r#"{{"hospitalId":"253","pdfUrl":"{p}/file/size-4321","thumbnailUrl":"http://abc/shotcut.png","dcms":["{p}/file/size-999"],"type":"url"}}"#,
        p = b.pacs.url()
    );
    let resp = post(format!("{}/his/{PACS_REPORT_DCM}", b.base()))
        .body(request)
        .expect_status(200)
        .send()
        .await;
    let (text, v) = (resp.text(), resp.json());
    assert_eq!(v["code"], "10001", "{text}");
    assert!(
        !text.contains(&b.pacs.host_port()),
        "no internal address is left in the answer: {text}"
    );
    assert_eq!(v["data"]["param"]["thumbnailUrl"], "http://abc/shotcut.png");
    let client = streaming_client();
    for (at, size) in [("/data/param/pdfUrl", 4321), ("/data/param/dcms/0", 999)] {
        let link = v
            .pointer(at)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no string at {at}: {text}"));
        let got = fetch(client.get(b.link(link))).await;
        assert_whole_file(&got, size, at);
    }
}
