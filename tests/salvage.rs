//! A damaged store is never silent and never abandoned (DESIGN.md §3.1): a store holding
//! acknowledged records is damaged on purpose — one bit flipped at offsets across its log, or the
//! log cut short — and opened the way the gateway opens it at start. Every acknowledged record
//! must be held afterwards, or counted as lost in the salvage report.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use prefront::buffer::sled_store::SledOutbox;
use prefront::buffer::{DeadOrLive, Enqueued, Outbox};

const MAX_BYTES: u64 = 64 << 20;
const TTL: Duration = Duration::from_secs(3600);
const ROUTE: &str = "cloud:prefront/sendTipMessage/payment";

struct TempDir(PathBuf);
impl TempDir {
    fn new(prefix: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}",
            std::process::id(),
            prefront::buffer::now_ms()
        ));
        std::fs::create_dir_all(&p).expect("mkdir");
        TempDir(p)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir").flatten() {
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

fn seq_of(body: &[u8]) -> u64 {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["seq"].as_u64())
        .expect("a body with a seq")
}

/// A store with 30 acknowledged records of which the first 6 were delivered: 24 held.
fn pristine(dir: &Path) -> BTreeSet<u64> {
    let store = SledOutbox::open_checked(dir, MAX_BYTES, TTL).expect("open");
    for seq in 0..30u64 {
        let body = format!(r#"{{"seq":{seq},"pad":"{}"}}"#, "x".repeat(300));
        let e = store
            .enqueue(ROUTE, None, body.as_bytes(), &format!("r{seq}"))
            .expect("enqueue");
        assert!(matches!(e, Enqueued::New(_)));
    }
    for _ in 0..6 {
        let head = store.head(ROUTE).expect("head").expect("a record");
        store.delivered(&head, b"{}").expect("delivered");
    }
    drop(store);
    (6..30).collect()
}

/// Opens a damaged copy as the gateway does; returns what it holds and what it reports lost.
fn open_damaged(dir: &Path) -> (BTreeSet<u64>, u64, bool) {
    let store = SledOutbox::open_checked(dir, MAX_BYTES, TTL).expect("the box starts");
    let held: BTreeSet<u64> = store
        .list(false, None, None, 1000)
        .expect("list")
        .into_iter()
        .chain(store.list(true, None, None, 1000).expect("list dead"))
        .map(|r| match r {
            DeadOrLive::Live(r) => seq_of(&r.body),
            DeadOrLive::Dead(d) => seq_of(&d.record.body),
        })
        .collect();
    let (lost, salvaged) = store
        .salvage_report()
        .map_or((0, false), |r| (r.lost, true));
    (held, lost, salvaged)
}

#[test]
fn a_flipped_bit_anywhere_in_the_log_loses_nothing_silently() {
    let base = TempDir::new("prefront-salvage-flip");
    let clean = base.0.join("clean");
    let acked = pristine(&clean);
    let size = std::fs::metadata(clean.join("db")).expect("db").len() as usize;
    let (mut cases, mut salvages, mut lost_total) = (0, 0, 0u64);
    for i in 0..48usize {
        let offset = i * size / 48 + i % 7;
        let work = base.0.join(format!("flip-{i}"));
        copy_dir(&clean, &work);
        let mut bytes = std::fs::read(work.join("db")).expect("read");
        bytes[offset] ^= 1 << (i % 8);
        std::fs::write(work.join("db"), &bytes).expect("write");
        let (held, lost, salvaged) = open_damaged(&work);
        let missing = acked.difference(&held).count() as u64;
        assert!(
            missing <= lost,
            "bit flipped at {offset}: {missing} acknowledged record(s) missing, {lost} reported \
             lost (salvaged: {salvaged})"
        );
        // One flipped bit damages at most one record's only copy.
        assert!(lost <= 1, "bit at {offset}: {lost} lost");
        cases += 1;
        salvages += usize::from(salvaged);
        lost_total += lost;
    }
    println!("flipped bits: {cases} cases, {salvages} salvages, {lost_total} record(s) lost");
}

#[test]
fn a_log_cut_short_is_reported_and_what_remains_is_salvaged() {
    let base = TempDir::new("prefront-salvage-cut");
    let clean = base.0.join("clean");
    let acked = pristine(&clean);
    let size = std::fs::metadata(clean.join("db")).expect("db").len();
    for (i, keep) in [size / 2, size / 4, size - 1, 4096].into_iter().enumerate() {
        let work = base.0.join(format!("cut-{i}"));
        copy_dir(&clean, &work);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(work.join("db"))
            .expect("open");
        f.set_len(keep).expect("truncate");
        drop(f);
        let (held, lost, salvaged) = open_damaged(&work);
        let missing = acked.difference(&held).count() as u64;
        assert!(
            missing <= lost,
            "cut to {keep} of {size}: {missing} missing, {lost} reported lost (salvaged: \
             {salvaged})"
        );
    }
}

/// A salvaged store's records keep their message ids, and a new store draws a new store id, so
/// no message id is ever used twice.
#[test]
fn message_ids_survive_a_salvage_and_never_repeat() {
    let base = TempDir::new("prefront-salvage-ids");
    let dir = base.0.join("buffer");
    let store = SledOutbox::open_checked(&dir, MAX_BYTES, TTL).expect("open");
    store
        .enqueue(ROUTE, None, br#"{"seq":1}"#, "r1")
        .expect("enqueue");
    let before = store.head(ROUTE).expect("head").expect("record").message_id;
    let first_store = store.store_id().to_string();
    drop(store);
    // The store is lost entirely: a new one starts, with a new id.
    std::fs::remove_dir_all(&dir).expect("rm");
    let store = SledOutbox::open_checked(&dir, MAX_BYTES, TTL).expect("open");
    store
        .enqueue(ROUTE, None, br#"{"seq":2}"#, "r2")
        .expect("enqueue");
    let after = store.head(ROUTE).expect("head").expect("record").message_id;
    assert_ne!(store.store_id(), first_store);
    assert_ne!(before, after, "a new store never repeats a message id");
    drop(store);
    // A damaged copy is salvaged: the record keeps its message id.
    let damaged = base.0.join("damaged");
    copy_dir(&dir, &damaged);
    let mut bytes = std::fs::read(damaged.join("db")).expect("read");
    bytes[100] ^= 0x20;
    std::fs::write(damaged.join("db"), &bytes).expect("write");
    let target = base.0.join("target");
    let store = SledOutbox::open_checked(&target, MAX_BYTES, TTL).expect("open");
    let report = store.salvage_from(&damaged, None, true).expect("salvage");
    assert_eq!(report.salvaged, 1);
    let rec = store.head(ROUTE).expect("head").expect("salvaged record");
    assert_eq!(
        rec.message_id, after,
        "the message id the cloud saw is kept"
    );
}
