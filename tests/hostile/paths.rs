//! Hostile paths and methods: CRLF, traversal, encoded slashes and path parameters are unknown
//! paths or names; odd methods (FOO, TRACE, CONNECT, a 10 KB method, `OPTIONS *`, GET on a
//! POST route) are refused.

use crate::harness::*;
use crate::support::*;

fn rows() -> Vec<Row> {
    use Target::*;
    vec![
        row(
            "%0d%0a in a /prefront path",
            His,
            post("/prefront/patient/getPatientInfo%0d%0aX-Evil:1")
                .json_type()
                .body(GOOD_BODY.as_bytes()),
            env("40002", "unknown-path"),
        ),
        row(
            "/prefront/../admin",
            His,
            post("/prefront/../admin")
                .json_type()
                .body(GOOD_BODY.as_bytes()),
            env("40002", "unknown-path"),
        ),
        row(
            "/prefront/%2e%2e/x",
            His,
            post("/prefront/%2e%2e/x")
                .json_type()
                .body(GOOD_BODY.as_bytes()),
            env("40002", "unknown-path"),
        ),
        row(
            "dot segments around a real path",
            His,
            post("/prefront/x/../patient/getPatientInfo")
                .json_type()
                .body(GOOD_BODY.as_bytes()),
            env("40002", "unknown-path"),
        ),
        row(
            "%2f-encoded slashes in a real path",
            His,
            post("/prefront%2fpatient%2fgetPatientInfo")
                .json_type()
                .body(GOOD_BODY.as_bytes()),
            Expect::Answer {
                status: 404,
                kind: None,
                code: None,
            },
        ),
        row(
            "path parameter ;jsessionid on a real path",
            His,
            post("/prefront/patient/getPatientInfo;jsessionid=1")
                .json_type()
                .body(GOOD_BODY.as_bytes()),
            env("40002", "unknown-path"),
        ),
        row(
            "%0d%0a in the /his/<name> name",
            Cloud,
            post("/his/hospital.interface.queryBalance%0d%0aX-Evil:1")
                .json_type()
                .body(GOOD_BODY.as_bytes()),
            env("40003", "unknown-name"),
        ),
        row(
            "/his/..%2fhis",
            Cloud,
            post("/his/..%2fhis").json_type().body(GOOD_BODY.as_bytes()),
            env("40003", "unknown-name"),
        ),
        row(
            "/his/../prefront/patient/getPatientInfo",
            Cloud,
            post("/his/../prefront/patient/getPatientInfo")
                .json_type()
                .body(GOOD_BODY.as_bytes()),
            env("40003", "unknown-name"),
        ),
        row(
            "/his/ with an empty name",
            Cloud,
            post("/his/").json_type().body(GOOD_BODY.as_bytes()),
            env("40003", "unknown-name"),
        ),
        row(
            "/his/<name> with a 150-byte name of dots",
            Cloud,
            post(format!("/his/{}", ".".repeat(150)))
                .json_type()
                .body(GOOD_BODY.as_bytes()),
            env("40003", "unknown-name"),
        ),
        // --- Methods----------------------------------------------------------------------------
        row(
            "method FOO",
            His,
            request("FOO", GOOD_PATH).body(GOOD_BODY.as_bytes()),
            status(405),
        ),
        row(
            "method TRACE",
            His,
            request("TRACE", GOOD_PATH).header("X-Secret", "must-not-echo"),
            status(405),
        ),
        row(
            "method CONNECT host:443",
            His,
            request("CONNECT", "127.0.0.1:443"),
            Expect::HttpRefused(&[400, 404, 405]),
        ),
        row(
            "method of 10 KB",
            His,
            request(&"X".repeat(10 * KB), GOOD_PATH).body(GOOD_BODY.as_bytes()),
            Expect::HttpRefused(&[400, 405, 414, 431, 501]),
        ),
        row(
            "OPTIONS *",
            His,
            request("OPTIONS", "*"),
            Expect::HttpRefused(&[400, 404, 405]),
        ),
        row("GET /his/<name>", Cloud, get(his_path()), status(405)),
    ]
}

/// Paths and methods the catalogue does not have reach nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_paths_and_methods_are_refused() {
    Suite::start(Gateways::Plain)
        .await
        .run("paths and methods", rows())
        .await;
}
