//! Oversize input: 100 MB bodies (declared or chunked) and a 50 MB SOAP envelope are 413, heads
//! past 64 KiB (one huge header, 2,000 headers, a 70 KiB request line) 431/414.

use crate::harness::*;
use crate::support::*;

fn rows() -> Vec<Row> {
    use Target::*;
    let mut rows = vec![
        row(
            "100 MB body, declared Content-Length (nothing sent)",
            His,
            post(GOOD_PATH)
                .header("Content-Type", "application/json")
                .header("Content-Length", (100 * MB).to_string()),
            status(413),
        ),
        Row {
            name: "100 MB body, chunked without a length".into(),
            target: His,
            send: Payload::Chunked {
                head: post(GOOD_PATH)
                    .header("Content-Type", "application/json")
                    .header("Transfer-Encoding", "chunked")
                    .raw(),
                total: 100 * MB,
            },
            expect: status(413),
            known_bug: None,
        },
        row(
            "100 MB body to /his/<name>, declared Content-Length",
            Cloud,
            post(his_path()).header("Content-Length", (100 * MB).to_string()),
            status(413),
        ),
        Row {
            name: "100 MB body to /his/<name>, chunked".into(),
            target: Cloud,
            send: Payload::Chunked {
                head: post(his_path())
                    .header("Transfer-Encoding", "chunked")
                    .raw(),
                total: 100 * MB,
            },
            expect: status(413),
            known_bug: None,
        },
        row(
            "SOAP: 50 MB envelope, declared Content-Length",
            His,
            post(SOAP_PATH)
                .header("Content-Type", "text/xml; charset=utf-8")
                .header("Content-Length", (50 * MB).to_string()),
            status(413),
        ),
        row(
            "one 70 KiB header value",
            His,
            post(GOOD_PATH)
                .header("X-Padding", "a".repeat(70 * KB))
                .body(GOOD_BODY.as_bytes()),
            Expect::HttpRefused(&[431]),
        ),
        row(
            "one 1 MiB header value",
            His,
            post(GOOD_PATH)
                .header("X-Padding", "a".repeat(MB))
                .body(GOOD_BODY.as_bytes()),
            Expect::HttpRefused(&[431]),
        ),
    ];
    let many: Vec<(String, String)> = (0..2_000)
        .map(|i| {
            (
                format!("X-H{i}"),
                "0123456789012345678901234567890123".to_string(),
            )
        })
        .collect();
    let many_ref: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    rows.push(row(
        "2,000 headers (> 64 KiB head)",
        His,
        post(GOOD_PATH)
            .headers(&many_ref)
            .body(GOOD_BODY.as_bytes()),
        Expect::HttpRefused(&[431]),
    ));
    rows.push(row(
        "150 headers (under 64 KiB, over hyper's header count)",
        His,
        post(GOOD_PATH)
            .headers(&many_ref[..150])
            .body(GOOD_BODY.as_bytes()),
        Expect::HttpRefused(&[431]),
    ));
    rows.push(row(
        "request line of 70 KiB",
        His,
        post(format!("{GOOD_PATH}?q={}", "a".repeat(70 * KB)))
            .json_type()
            .body(GOOD_BODY.as_bytes()),
        Expect::HttpRefused(&[414, 431]),
    ));

    rows
}

/// Oversize bodies and heads are refused without being read to the end or forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_bodies_and_heads_are_refused() {
    Suite::start(Gateways::Plain)
        .await
        .run("oversize", rows())
        .await;
}
