//! Bad bodies: invalid charsets, JSON nested too deep, duplicate keys, numbers out of range, NUL
//! bytes, whitespace: refused with the envelope (or at the HTTP layer), nothing forwarded.

use crate::harness::*;
use crate::support::*;

fn rows() -> Vec<Row> {
    use Target::*;
    let utf8_bad = b"{\"patientName\":\"\xff\xfe\xc3\x28\"}".to_vec();
    let gbk_bad = b"{\"patientName\":\"\xd5\xc5\x81\x20\xff\"}".to_vec();
    vec![
        row(
            "invalid UTF-8 body",
            His,
            post(GOOD_PATH).json_type().body(utf8_bad.clone()),
            env("20003", "invalid-charset"),
        ),
        row(
            "invalid GBK body declared charset=GBK",
            His,
            post(GOOD_PATH)
                .content_type("application/json;charset=GBK")
                .body(gbk_bad.clone()),
            env("20003", "invalid-charset"),
        ),
        row(
            "unsupported charset (UTF-16) declared",
            His,
            post(GOOD_PATH)
                .content_type("application/json;charset=UTF-16")
                .body(
                    GOOD_BODY
                        .encode_utf16()
                        .flat_map(u16::to_le_bytes)
                        .collect::<Vec<_>>(),
                ),
            env("20003", "invalid-charset"),
        ),
        row(
            "JSON nested 10,000 levels",
            His,
            post(GOOD_PATH).json_type().body(nested_json(10_000)),
            env("20003", "invalid-json"),
        ),
        row(
            "JSON nested 500,000 levels (just under the 1 MiB body limit)",
            His,
            post(GOOD_PATH).json_type().body(nested_json(500_000)),
            env("20003", "invalid-json"),
        ),
        row(
            "duplicate JSON keys (refundNo twice: which one is refunded?)",
            His,
            post("/prefront/hospitalizationCosts/hisRefund")
                .json_type()
                .body(
                    br#"{"hospitalId":"253","refundNo":"R-1","refundNo":"R-2","refundAmount":"1.00"}"#,
                ),
            env("20003", "invalid-json"),
        ),
        row(
            "number out of range 1e999",
            His,
            post(GOOD_PATH)
                .json_type()
                .body(br#"{"medicalCardNumber":"001","amount":1e999}"#),
            env("20003", "invalid-json"),
        ),
        row(
            "number out of range 2^64",
            His,
            post(GOOD_PATH)
                .json_type()
                .body(br#"{"medicalCardNumber":18446744073709551616}"#),
            env("20003", "invalid-json"),
        ),
        row(
            "NUL byte inside a JSON string",
            His,
            post(GOOD_PATH)
                .json_type()
                .body(b"{\"medicalCardNumber\":\"00\x001\"}"),
            env("20003", "invalid-json"),
        ),
        row(
            "NUL bytes after the JSON",
            His,
            post(GOOD_PATH)
                .json_type()
                .body(b"{\"medicalCardNumber\":\"001\"}\x00\x00\x00"),
            env("20003", "invalid-json"),
        ),
        row(
            "NUL byte in a header value",
            His,
            post(GOOD_PATH)
                .content_type("application/json\x00; charset=GBK")
                .body(GOOD_BODY.as_bytes()),
            Expect::HttpRefused(&[400]),
        ),
        row(
            "whitespace-only body",
            His,
            post(GOOD_PATH).json_type().body(b" \r\n\t "),
            env("20001", "empty-body"),
        ),
        row(
            "invalid UTF-8 body to /his/<name>",
            Cloud,
            post(his_path()).json_type().body(utf8_bad.clone()),
            env("20003", "invalid-charset"),
        ),
        row(
            "JSON nested 10,000 levels to /his/<name>",
            Cloud,
            post(his_path()).json_type().body(nested_json(10_000)),
            env("20003", "invalid-json"),
        ),
        row(
            "duplicate JSON keys to /his/<name>",
            Cloud,
            post(his_path())
                .json_type()
                .body(br#"{"medicalCardNumber":"001","medicalCardNumber":"002"}"#),
            env("20003", "invalid-json"),
        ),
    ]
}

/// Bad bodies to both listeners get the contract's refusal and reach no upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_and_charsets_are_refused_and_nothing_is_forwarded() {
    Suite::start(Gateways::Plain)
        .await
        .run("bodies", rows())
        .await;
}
