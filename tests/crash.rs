//! The crash story: the cloud is down, the HIS streams reminders, and the real `prefront`
//! binary is killed with SIGKILL at random moments (no shutdown, no flush), at first with the
//! cloud away, then while it drains the backlog. Every call that got an acknowledgement must
//! still arrive once the cloud is back. Duplicates are allowed (at least once) and reported as a
//! figure.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::*;

const KILLS: usize = 20;

/// xorshift64*: reproducible randomness from a printed seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_no_acknowledged_call() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64 | 1)
        .unwrap_or(42);
    eprintln!("crash test seed: {seed}");
    let mut rng = Rng(seed);
    let dir = TempDir::new("prefront-crash");
    let cloud_addr = closed_port_addr();
    let config = dir.path().join("prefront.toml");
    ConfigToml::basic(&format!("http://{cloud_addr}"), None, None, "")
        .set_path("buffer.path", &dir.path().join("buffer"))
        .set("buffer.retry_min", "50ms")
        .set("buffer.retry_max", "500ms")
        .write(&config);

    let acked: Arc<Mutex<BTreeSet<u64>>> = Arc::new(Mutex::new(BTreeSet::new()));
    let mut next_seq = 0u64;
    let client = plain_client();
    // The cloud is down for most lives; in the last few it is back but slow, so kills also land
    // in the middle of deliveries (which is where duplicates come from).
    let mut cloud: Option<MockUpstream> = None;
    for life in 0..KILLS {
        if life == KILLS - 5 {
            let c = MockUpstream::http_at(cloud_addr).await;
            c.set_delay(Duration::from_millis(3));
            cloud = Some(c);
        }
        let gw = RunningBinary::start(&config);
        let addr = gw.his_addr.clone();
        let lifetime = Duration::from_millis(80 + rng.next() % 400);
        let until = Instant::now() + lifetime;
        // Four callers stream calls until the kill; only acknowledged ones are remembered.
        let mut callers = Vec::new();
        for c in 0..4u64 {
            let client = client.clone();
            let acked = acked.clone();
            let url = format!("http://{addr}/prefront/sendTipMessage/payment");
            let first = next_seq + c * 100_000;
            callers.push(tokio::spawn(async move {
                let mut seq = first;
                while Instant::now() < until + Duration::from_millis(200) {
                    let body = format!("{{\"hospitalId\":\"253\",\"seq\":{seq}}}");
                    let Ok(resp) = post(&url).via(&client).body(body).try_send().await else {
                        break;
                    };
                    if resp.queued().is_some() {
                        if let Ok(mut a) = acked.lock() {
                            a.insert(seq);
                        }
                    }
                    seq += 1;
                }
            }));
        }
        next_seq += 1_000_000;
        // The random lifetime before the SIGKILL is the point of the test.
        tokio::time::sleep(lifetime).await;
        assert!(
            !gw.log().iter().any(|l| l.contains("moved aside")),
            "life {life}: a SIGKILL must never leave a store that has to be moved aside"
        );
        gw.kill();
        for c in callers {
            let _ = c.await;
        }
        eprintln!(
            "life {life}: killed after {lifetime:?}; {} acknowledged so far",
            acked.lock().map(|a| a.len()).unwrap_or(0)
        );
    }
    let acked: BTreeSet<u64> = acked.lock().map(|a| a.clone()).unwrap_or_default();
    assert!(
        acked.len() >= 50,
        "the test acknowledged too few calls to mean much: {}",
        acked.len()
    );

    // The cloud comes back; one more life delivers everything.
    let cloud = match cloud {
        Some(c) => c,
        None => MockUpstream::http_at(cloud_addr).await,
    };
    cloud.set_delay(Duration::ZERO);
    let gw = RunningBinary::start(&config);
    let delivered_counts = || {
        let mut counts: HashMap<u64, usize> = HashMap::new();
        for r in cloud.requests().iter().filter(|r| r.method == "POST") {
            if let Some(seq) = r.json()["seq"].as_u64() {
                *counts.entry(seq).or_default() += 1;
            }
        }
        counts
    };
    // Every acknowledged call delivered (or what was by then: judged below).
    let _ = Poll::new(
        Duration::from_secs(120),
        "every acknowledged call at the cloud",
    )
    .every(Duration::from_millis(200))
    .try_until(async || {
        let counts = delivered_counts();
        acked.iter().all(|s| counts.contains_key(s))
    })
    .await;
    let delivered = delivered_counts();
    // Order: each caller sent its calls one after another, so their first deliveries must come
    // in the same order (a redelivery after a crash repeats an old one; it does not reorder).
    let mut first_seen: Vec<u64> = Vec::new();
    let mut seen = BTreeSet::new();
    for r in cloud.requests().iter().filter(|r| r.method == "POST") {
        if let Some(seq) = r.json()["seq"].as_u64() {
            if seen.insert(seq) {
                first_seen.push(seq);
            }
        }
    }
    let mut last_of_caller: HashMap<u64, u64> = HashMap::new();
    let mut out_of_order = 0;
    for seq in &first_seen {
        let caller = seq / 100_000;
        if last_of_caller.get(&caller).is_some_and(|last| last > seq) {
            out_of_order += 1;
        }
        last_of_caller.insert(caller, *seq);
    }
    let moved_aside = gw.log().iter().any(|l| l.contains("moved aside"));
    gw.kill();
    assert_eq!(
        out_of_order, 0,
        "deliveries out of the callers' order; seed {seed}"
    );
    assert!(
        !moved_aside,
        "a SIGKILL must never leave a store that has to be moved aside"
    );
    let lost: Vec<&u64> = acked
        .iter()
        .filter(|s| !delivered.contains_key(s))
        .collect();
    let duplicates: usize = delivered.values().map(|n| n - 1).sum();
    let unacked_delivered = delivered.keys().filter(|s| !acked.contains(s)).count();
    eprintln!(
        "crash test: {KILLS} SIGKILLs, {} acknowledged, {} delivered, {} lost, {duplicates} duplicate deliveries, {unacked_delivered} delivered without an acknowledgement (killed in flight)",
        acked.len(),
        delivered.len(),
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "acknowledged but never delivered: {} (first: {:?}); seed {seed}",
        lost.len(),
        lost.first()
    );
}
