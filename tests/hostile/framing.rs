//! Bad HTTP framing: Content-Length/Transfer-Encoding smuggling shapes with a pipelined request,
//! duplicate or malformed lengths, bad chunk sizes, obs-fold, odd HTTP versions.

use crate::harness::*;
use crate::support::*;

fn rows() -> Vec<Row> {
    use Target::*;
    let mut rows = vec![];
    let smuggled = post(GOOD_PATH).json_type().body(GOOD_BODY).raw();
    for (target, path) in [(His, GOOD_PATH.to_string()), (Cloud, his_path())] {
        let label = target.label();
        // CL says 5 bytes (`0\r\n\r\n`), TE says an empty body and a second request follows.
        let mut cl_te = post(&path)
            .header("Content-Type", "application/json")
            .header("Content-Length", "5")
            .header("Transfer-Encoding", "chunked")
            .body(b"0\r\n\r\n")
            .raw();
        cl_te.extend_from_slice(&smuggled);
        rows.push(Row {
            name: format!(
                "Content-Length and Transfer-Encoding: chunked + pipelined request ({label})"
            ),
            target,
            send: Payload::Bytes(cl_te),
            expect: Expect::OneAnswerThenClose,
            known_bug: None,
        });
        let mut te_cl = post(&path)
            .header("Content-Type", "application/json")
            .header("Transfer-Encoding", "chunked")
            .header("Content-Length", "0")
            .body(format!("{:x}\r\n", smuggled.len()))
            .raw();
        te_cl.extend_from_slice(&smuggled);
        te_cl.extend_from_slice(b"\r\n0\r\n\r\n");
        rows.push(Row {
            name: format!(
                "Transfer-Encoding before Content-Length: 0, request in the chunk ({label})"
            ),
            target,
            send: Payload::Bytes(te_cl),
            expect: Expect::OneAnswerThenClose,
            known_bug: None,
        });
        let mut two_cl = post(&path)
            .header("Content-Type", "application/json")
            .header("Content-Length", "2")
            .header("Content-Length", GOOD_BODY.len().to_string())
            .body(GOOD_BODY.as_bytes())
            .raw();
        two_cl.extend_from_slice(&smuggled);
        rows.push(row(
            format!("two different Content-Length headers ({label})"),
            target,
            two_cl,
            Expect::HttpRefused(&[400]),
        ));
    }
    rows.push(row(
        "Content-Length: 2, 46 (list form)",
        His,
        post(GOOD_PATH)
            .header("Content-Length", format!("2, {}", GOOD_BODY.len()))
            .body(GOOD_BODY.as_bytes()),
        Expect::HttpRefused(&[400]),
    ));
    rows.push(row(
        "Transfer-Encoding: chunked, identity",
        His,
        post(GOOD_PATH)
            .header("Transfer-Encoding", "chunked, identity")
            .body(format!("{:x}\r\n{GOOD_BODY}\r\n0\r\n\r\n", GOOD_BODY.len())),
        Expect::HttpRefused(&[400, 501]),
    ));
    rows.push(row(
        "Transfer-Encoding: identity (not chunked)",
        His,
        post(GOOD_PATH)
            .header("Transfer-Encoding", "identity")
            .body(GOOD_BODY.as_bytes()),
        Expect::HttpRefused(&[400, 501]),
    ));
    rows.push(row(
        "obs-fold header continuation",
        His,
        format!(
            "POST {GOOD_PATH} HTTP/1.1\r\nHost: prefront.test\r\nContent-Type: application/json\r\n charset=GBK\r\nContent-Length: {}\r\n\r\n{GOOD_BODY}",
            GOOD_BODY.len()
        )
        .into_bytes(),
        Expect::HttpRefused(&[400]),
    ));
    rows.push(row(
        "space before the colon: Content-Length : 2",
        His,
        format!(
            "POST {GOOD_PATH} HTTP/1.1\r\nHost: prefront.test\r\nContent-Length : 2\r\nContent-Length: {}\r\n\r\n{GOOD_BODY}",
            GOOD_BODY.len()
        )
        .into_bytes(),
        Expect::HttpRefused(&[400]),
    ));
    rows.push(row(
        "negative Content-Length",
        His,
        post(GOOD_PATH).header("Content-Length", "-1"),
        Expect::HttpRefused(&[400]),
    ));
    rows.push(row(
        "Content-Length: +46",
        His,
        post(GOOD_PATH)
            .header("Content-Length", format!("+{}", GOOD_BODY.len()))
            .body(GOOD_BODY.as_bytes()),
        Expect::HttpRefused(&[400]),
    ));
    rows.push(row(
        "chunk size that is not hex",
        His,
        post(GOOD_PATH)
            .header("Transfer-Encoding", "chunked")
            .body(b"zz\r\n{}\r\n0\r\n\r\n"),
        Expect::HttpRefused(&[400]),
    ));
    rows.push(row(
        "chunk size overflowing 64 bits",
        His,
        post(GOOD_PATH)
            .header("Transfer-Encoding", "chunked")
            .body(b"10000000000000000000\r\n{}\r\n0\r\n\r\n"),
        Expect::HttpRefused(&[400, 413]),
    ));
    rows.push(row(
        "HTTP/1.0 with Transfer-Encoding: chunked",
        His,
        post(GOOD_PATH)
            .version("HTTP/1.0")
            .header("Transfer-Encoding", "chunked")
            .body(format!("{:x}\r\n{GOOD_BODY}\r\n0\r\n\r\n", GOOD_BODY.len())),
        Expect::HttpRefused(&[400]),
    ));
    rows.push(row(
        "HTTP/1.0 request with a broken body (parsed and answered like 1.1)",
        His,
        post(GOOD_PATH)
            .version("HTTP/1.0")
            .header("Content-Type", "application/json")
            .body(b"{\"medicalCardNumber\":"),
        env("20003", "invalid-json"),
    ));
    rows.push(row(
        "HTTP/9.9",
        His,
        post(GOOD_PATH)
            .version("HTTP/9.9")
            .body(GOOD_BODY.as_bytes()),
        Expect::HttpRefused(&[400, 505]),
    ));
    rows.push(row(
        "HTTP/0.9 request line (no version)",
        His,
        format!("GET {GOOD_PATH}\r\n\r\n").into_bytes(),
        Expect::HttpRefused(&[400]),
    ));

    rows
}

/// Ambiguous framing is refused (or answered once and closed): a smuggled request is never read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_framing_is_refused_and_never_smuggles() {
    Suite::start(Gateways::Plain)
        .await
        .run("framing", rows())
        .await;
}
