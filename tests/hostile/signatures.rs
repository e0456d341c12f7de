//! Signed calls (`[auth]`) on the TLS cloud listener: missing, wrong and malformed signatures
//! and timestamps, no SNI, and garbage or plain HTTP where a ClientHello belongs.

use crate::harness::*;
use crate::support::*;

fn rows() -> Vec<Row> {
    use Target::*;
    let mut rows = vec![];
    let body = br#"{"medicalCardNumber":"001"}"#;
    let t = unix_now().to_string();
    rows.push(row(
        "unsigned call",
        SignedTls,
        post(his_path())
            .json_type()
            .body(body.as_slice())
            .signature(None, None),
        env("50001", "signature-missing"),
    ));
    rows.push(row(
        "timestamp without a signature",
        SignedTls,
        post(his_path())
            .json_type()
            .body(body.as_slice())
            .signature(Some(&t), None),
        env("50001", "signature-missing"),
    ));
    rows.push(row(
        "signature: 10 KB of non-hex",
        SignedTls,
        post(his_path())
            .json_type()
            .body(body.as_slice())
            .signature(Some(&t), Some(&"zq".repeat(5 * KB))),
        env("50001", "signature-wrong"),
    ));
    rows.push(row(
        "signature: 10 KB of hex",
        SignedTls,
        post(his_path())
            .json_type()
            .body(body.as_slice())
            .signature(Some(&t), Some(&"ab".repeat(5 * KB))),
        env("50001", "signature-wrong"),
    ));
    rows.push(row(
        "signature: right for another path",
        SignedTls,
        post(his_path())
            .json_type()
            .body(body.as_slice())
            .signature(
                Some(&t),
                Some(&sign(
                    SECRET,
                    "POST",
                    "/his/hospital.interface.createCard",
                    &t,
                    body,
                )),
            ),
        env("50001", "signature-wrong"),
    ));
    for ts in ["-1", "99999999999999999999999", "1e3", "", "0x10", " "] {
        let sig = sign(SECRET, "POST", &his_path(), ts, body);
        rows.push(row(
            format!("timestamp {ts:?} (signed over it)"),
            SignedTls,
            post(his_path())
                .json_type()
                .body(body.as_slice())
                .signature(Some(ts), Some(&sig)),
            env("50001", "signature-timestamp"),
        ));
    }
    rows.push(row(
        "unsigned /pacs/dcm",
        SignedTls,
        get("/pacs/dcm?dcmId=size-16"),
        refusal(401, "signature-missing"),
    ));
    rows.push(row(
        "ClientHello without SNI, then an unsigned call",
        SignedTlsNoSni,
        post(his_path())
            .json_type()
            .body(body.as_slice())
            .signature(None, None),
        env("50001", "signature-missing"),
    ));
    rows.push(row(
        "garbage bytes instead of a TLS ClientHello",
        SignedTlsRaw,
        garbage(4 * KB, 0x5eed),
        Expect::Closed,
    ));
    rows.push(row(
        "plain HTTP to the TLS listener",
        SignedTlsRaw,
        post(his_path())
            .json_type()
            .body(body.as_slice())
            .signature(None, None),
        Expect::Closed,
    ));
    let mut bad_record = vec![0x16, 0x03, 0x01, 0xff, 0xff];
    bad_record.extend(garbage(1024, 7));
    rows.push(row(
        "TLS record header announcing 64 KiB, then junk",
        SignedTlsRaw,
        bad_record,
        Expect::Closed,
    ));

    rows
}

/// Bad signatures get 50001 (or 401 on /pacs/dcm) and TLS garbage is closed; nothing forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signatures_and_tls_garbage_are_refused() {
    Suite::start(Gateways::AndSigned)
        .await
        .run("signatures", rows())
        .await;
}
