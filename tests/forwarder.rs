//! The forwarders against an in-memory outbox and a real (simulated) cloud on loopback: the
//! delivery rules of DESIGN.md §3 without sled or the listeners in the way — order per route,
//! the message id, the cloud's 4xx to the dead letters without blocking the route, a 503 retried
//! until it passes, a record past `buffer.ttl` dead without a call, a business "no" recorded as
//! delivered.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prefront::buffer::forwarder::Forwarders;
use prefront::buffer::{
    now_ms, Admission, Commits, DeadOrLive, DeadRecord, Enqueued, Health, Outbox, OutboxError,
    Record, RecordId, Route, RouteStats,
};
use prefront::config::{BufferConfig, CloudConfig};
use prefront::sim::{Answer, Upstream};
use prefront::upstream::cloud::Cloud;

/// What the forwarder did to the store, in memory.
#[derive(Debug, Default)]
struct Mem {
    next: RecordId,
    queued: BTreeMap<RecordId, Record>,
    dead: Vec<DeadRecord>,
    /// (id, answer) in the order `delivered` was called.
    delivered: Vec<(RecordId, String)>,
}

/// An `Outbox` that keeps everything in memory and is always durable.
#[derive(Debug)]
struct MemOutbox {
    mem: Mutex<Mem>,
    commits: tokio::sync::watch::Sender<Commits>,
}

impl MemOutbox {
    fn new() -> Arc<MemOutbox> {
        Arc::new(MemOutbox {
            mem: Mutex::new(Mem::default()),
            commits: tokio::sync::watch::channel(Commits::default()).0,
        })
    }

    fn mem(&self) -> std::sync::MutexGuard<'_, Mem> {
        self.mem.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts a record in the queue as an enqueue `age` ago would have.
    fn put(&self, route: &Route, body: &str, age: Duration) -> RecordId {
        let mut m = self.mem();
        m.next += 1;
        let id = m.next;
        m.queued.insert(
            id,
            Record {
                id,
                message_id: format!("0123456789abcdef-{id}"),
                route: route.as_str().to_string(),
                key: None,
                body: body.as_bytes().to_vec(),
                request_id: format!("req-{id}"),
                enqueued_at_ms: now_ms().saturating_sub(age.as_millis() as u64),
                attempts: 0,
                last_error: None,
            },
        );
        id
    }
}

impl Outbox for MemOutbox {
    fn admit(
        &self,
        route: &str,
        _key: Option<&str>,
        body: &[u8],
        _request_id: &str,
    ) -> Result<Admission, OutboxError> {
        let id = self.put(
            &Route::from_stored(route),
            &String::from_utf8_lossy(body),
            Duration::ZERO,
        );
        Ok(Admission::Now(Enqueued::New(id)))
    }

    fn wait_durable(&self, _ticket: u64) -> Result<(), OutboxError> {
        Ok(())
    }

    fn commits(&self) -> tokio::sync::watch::Receiver<Commits> {
        self.commits.subscribe()
    }

    fn health(&self) -> Health {
        Health {
            writable: true,
            ..Health::default()
        }
    }

    fn cached_result(&self, _route: &str, _key: &str) -> Result<Option<Vec<u8>>, OutboxError> {
        Ok(None)
    }

    fn head(&self, route: &str) -> Result<Option<Record>, OutboxError> {
        Ok(self
            .mem()
            .queued
            .values()
            .find(|r| r.route == route)
            .cloned())
    }

    fn routes(&self) -> Result<Vec<String>, OutboxError> {
        let mut r: Vec<String> = self
            .mem()
            .queued
            .values()
            .map(|r| r.route.clone())
            .collect();
        r.dedup();
        Ok(r)
    }

    fn depth(&self, route: &str) -> Result<u64, OutboxError> {
        Ok(self
            .mem()
            .queued
            .values()
            .filter(|r| r.route == route)
            .count() as u64)
    }

    fn record_attempt(&self, id: RecordId, error: &str) -> Result<(), OutboxError> {
        let mut m = self.mem();
        let r = m.queued.get_mut(&id).ok_or(OutboxError::NotFound(id))?;
        r.attempts += 1;
        r.last_error = Some(error.to_string());
        Ok(())
    }

    fn delivered(&self, record: &Record, answer: &[u8]) -> Result<(), OutboxError> {
        let mut m = self.mem();
        m.queued.remove(&record.id);
        m.delivered
            .push((record.id, String::from_utf8_lossy(answer).into_owned()));
        Ok(())
    }

    fn dead_letter(&self, record: &Record, reason: &str) -> Result<(), OutboxError> {
        let mut m = self.mem();
        m.queued.remove(&record.id);
        m.dead.push(DeadRecord {
            record: record.clone(),
            reason: reason.to_string(),
            dead_at_ms: now_ms(),
        });
        Ok(())
    }

    fn list(
        &self,
        _dead: bool,
        _route: Option<&str>,
        _after: Option<RecordId>,
        _limit: usize,
    ) -> Result<Vec<DeadOrLive>, OutboxError> {
        Ok(Vec::new())
    }

    fn get(&self, _id: RecordId) -> Result<Option<DeadOrLive>, OutboxError> {
        Ok(None)
    }

    fn retry(&self, id: RecordId) -> Result<RecordId, OutboxError> {
        Err(OutboxError::NotFound(id))
    }

    fn drop_record(&self, id: RecordId) -> Result<(), OutboxError> {
        Err(OutboxError::NotFound(id))
    }

    fn stats(&self) -> Result<(Vec<RouteStats>, u64), OutboxError> {
        Ok((Vec::new(), 0))
    }
}

const PAYMENT: &str = "prefront/sendTipMessage/payment";
const REPORT: &str = "prefront/sendTipMessage/lisReport";

fn buffer_config(ttl: Duration) -> BufferConfig {
    BufferConfig {
        path: std::env::temp_dir().join("prefront-forwarder-unused"),
        max_bytes: 1 << 20,
        ttl,
        max_attempts: 50,
        result_ttl: Duration::from_secs(60),
        dead_ttl: Duration::from_secs(3600),
        retry_min: Duration::from_millis(20),
        retry_max: Duration::from_millis(200),
    }
}

fn cloud_for(upstream: &Upstream) -> Cloud {
    let config = CloudConfig {
        base_url: reqwest::Url::parse(&format!("{}/", upstream.url())).expect("loopback URL"),
        ca: None,
        timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        max_response: 1 << 20,
        delivery: Default::default(),
        pin_ca: false,
        client_cert: None,
        client_key: None,
        proxy: None,
    };
    Cloud::new(&config, None).expect("cloud client")
}

/// Runs the forwarders until `done` holds for the store (or 10 s pass), then stops them.
async fn forward_until(
    outbox: &Arc<MemOutbox>,
    cloud: Cloud,
    config: BufferConfig,
    what: &str,
    done: impl Fn(&Mem) -> bool,
) {
    let forwarders = Forwarders::new(outbox.clone(), cloud, config);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(forwarders.clone().run(stopped));
    forwarders.wake();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(&outbox.mem()) {
        assert!(
            Instant::now() < deadline,
            "waited 10 s for {what}; the store holds {:#?}",
            outbox.mem()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_each_route_in_order_with_its_message_id() {
    let cloud = Upstream::start("127.0.0.1:0".parse().expect("addr"), None)
        .await
        .expect("simulated cloud");
    let outbox = MemOutbox::new();
    let (payment, report) = (Route::cloud(PAYMENT), Route::cloud(REPORT));
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(outbox.put(&payment, &format!("{{\"n\":{n}}}"), Duration::ZERO));
        ids.push(outbox.put(&report, &format!("{{\"n\":{n}}}"), Duration::ZERO));
    }
    forward_until(
        &outbox,
        cloud_for(&cloud),
        buffer_config(Duration::from_secs(3600)),
        "ten deliveries",
        |m| m.delivered.len() == 10,
    )
    .await;
    let m = outbox.mem();
    assert!(m.queued.is_empty() && m.dead.is_empty(), "{m:#?}");
    let got = cloud.requests();
    assert_eq!(got.len(), 10, "each record sent once");
    for path in [PAYMENT, REPORT] {
        let bodies: Vec<String> = got
            .iter()
            .filter(|r| r.path == format!("/{path}"))
            .map(|r| r.body_text())
            .collect();
        let want: Vec<String> = (0..5).map(|n| format!("{{\"n\":{n}}}")).collect();
        assert_eq!(bodies, want, "{path}: in the order they were queued");
    }
    for r in &got {
        let mid = r.header("x-prefront-message-id").unwrap_or_default();
        assert!(
            mid.starts_with("0123456789abcdef-"),
            "every delivery names its message: {mid:?}"
        );
        assert!(r
            .header("x-request-id")
            .is_some_and(|v| v.starts_with("req-")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_call_is_dead_and_does_not_block_its_route() {
    let cloud = Upstream::start("127.0.0.1:0".parse().expect("addr"), None)
        .await
        .expect("simulated cloud");
    // The cloud refuses one body: the first record. The one behind it must still go.
    cloud.respond(
        &format!("/{PAYMENT}"),
        400,
        r#"{"success":false,"msg":"bad"}"#,
    );
    let outbox = MemOutbox::new();
    let route = Route::cloud(PAYMENT);
    let first = outbox.put(&route, r#"{"n":1}"#, Duration::ZERO);
    forward_until(
        &outbox,
        cloud_for(&cloud),
        buffer_config(Duration::from_secs(3600)),
        "the refused record in the dead letters",
        |m| m.dead.len() == 1,
    )
    .await;
    {
        let m = outbox.mem();
        assert_eq!(m.dead[0].record.id, first);
        assert!(
            m.dead[0].reason.contains("400"),
            "the reason names the cloud's status: {}",
            m.dead[0].reason
        );
        assert_eq!(cloud.request_count(), 1, "a 4xx is not retried");
    }
    cloud.respond(
        &format!("/{PAYMENT}"),
        200,
        r#"{"success":true,"code":"10001"}"#,
    );
    let second = outbox.put(&route, r#"{"n":2}"#, Duration::ZERO);
    forward_until(
        &outbox,
        cloud_for(&cloud),
        buffer_config(Duration::from_secs(3600)),
        "the next record delivered",
        |m| m.delivered.iter().any(|(id, _)| *id == second),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_cloud_is_retried_until_it_takes_the_call() {
    let cloud = Upstream::start("127.0.0.1:0".parse().expect("addr"), None)
        .await
        .expect("simulated cloud");
    cloud.set_down(true); // 503 to everything
    let outbox = MemOutbox::new();
    let id = outbox.put(&Route::cloud(PAYMENT), r#"{"n":1}"#, Duration::ZERO);
    let up_after = {
        let switch = cloud.outage_switch();
        let outbox = outbox.clone();
        tokio::spawn(async move {
            // Up once two attempts have failed and been recorded.
            let deadline = Instant::now() + Duration::from_secs(10);
            while outbox.mem().queued.get(&id).is_none_or(|r| r.attempts < 2)
                && Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            switch.set_down(false);
        })
    };
    forward_until(
        &outbox,
        cloud_for(&cloud),
        buffer_config(Duration::from_secs(3600)),
        "the record delivered after the cloud came back",
        |m| m.delivered.len() == 1,
    )
    .await;
    let _ = up_after.await;
    assert!(outbox.mem().dead.is_empty());
    assert!(
        cloud.request_count() >= 3,
        "two refused attempts and the one that passed: {}",
        cloud.request_count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_past_its_ttl_is_dead_without_a_call_and_a_business_no_is_final() {
    let cloud = Upstream::start("127.0.0.1:0".parse().expect("addr"), None)
        .await
        .expect("simulated cloud");
    cloud.answer_default(Answer::Fixed {
        status: 200,
        body: r#"{"success":false,"msg":"already paid","code":"10003"}"#.into(),
    });
    let outbox = MemOutbox::new();
    let old = outbox.put(
        &Route::cloud(REPORT),
        r#"{"n":0}"#,
        Duration::from_secs(120),
    );
    let fresh = outbox.put(&Route::cloud(PAYMENT), r#"{"n":1}"#, Duration::ZERO);
    forward_until(
        &outbox,
        cloud_for(&cloud),
        buffer_config(Duration::from_secs(60)),
        "the old record dead and the fresh one answered",
        |m| m.dead.len() == 1 && m.delivered.len() == 1,
    )
    .await;
    let m = outbox.mem();
    assert_eq!(m.dead[0].record.id, old);
    assert!(
        m.dead[0].reason.contains("buffer.ttl"),
        "{}",
        m.dead[0].reason
    );
    // The cloud's business "no" ends the message: recorded with its answer, not retried.
    assert_eq!(m.delivered[0].0, fresh);
    assert!(m.delivered[0].1.contains("already paid"));
    let got = cloud.requests();
    assert_eq!(got.len(), 1, "only the fresh record went out");
    assert_eq!(got[0].path, format!("/{PAYMENT}"));
}
