//! The controls alone: legitimate requests through the raw client to every listener are served
//! and reach exactly the upstream they should (each category test runs the ones for the
//! listeners it hits, before its rows).

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legitimate_calls_through_the_raw_client_are_served() {
    let suite = Suite::start(Gateways::AndSigned).await;
    for c in controls() {
        suite.control(c).await;
    }
    let req = suite
        .cloud
        .requests()
        .into_iter()
        .nth(2)
        .expect("the third control reached the cloud");
    assert_eq!(
        (req.path.as_str(), req.query.as_deref()),
        (GOOD_PATH, None),
        "the caller's query never reaches the cloud"
    );
    assert!(req.header("x-evil").is_none());
    suite.run("controls", Vec::new()).await;
}
