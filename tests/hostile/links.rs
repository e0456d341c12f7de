//! `/files/<token>` and `/pacs/dcm` on the cloud listener: forged, truncated, expired and
//! non-internal tokens, oversized or injected `dcmId`s.

use crate::harness::*;
use crate::support::*;

fn rows() -> Vec<Row> {
    use Target::*;
    let mut rows = vec![];
    let signer = prefront::pacs::LinkSigner::new(LINK_KEY.as_bytes());
    let far = unix_now() + 3600;
    rows.push(row(
        "/files/<100 KB token>",
        Cloud,
        get(format!("/files/{}", "A".repeat(100 * KB))),
        Expect::HttpRefused(&[414, 431]),
    ));
    rows.push(row(
        "/files/<20 KB token>",
        Cloud,
        get(format!("/files/{}", "A".repeat(20 * KB))),
        refusal(403, "link-forged"),
    ));
    rows.push(row(
        "/files/%00",
        Cloud,
        get("/files/%00"),
        refusal(403, "link-forged"),
    ));
    rows.push(row(
        "/files/<valid token>%00",
        Cloud,
        get(format!(
            "/files/{}%00",
            signer
                .mint(&format!("{}/file/size-16", "http://127.0.0.1:1"), far)
                .expect("minted")
        )),
        refusal(403, "link-forged"),
    ));
    rows.push(row(
        "/files/../../etc/passwd",
        Cloud,
        get("/files/../../etc/passwd"),
        refusal(403, "link-forged"),
    ));
    rows.push(row(
        "/files/..%2f..%2fetc%2fpasswd",
        Cloud,
        get("/files/..%2f..%2fetc%2fpasswd"),
        refusal(403, "link-forged"),
    ));
    rows.push(row(
        "/files/ (empty token)",
        Cloud,
        get("/files/"),
        refusal(403, "link-forged"),
    ));
    rows.push(row(
        "/files/<genuine token for a non-internal host (cloud metadata address)>",
        Cloud,
        get(format!(
            "/files/{}",
            signer
                .mint("http://169.254.169.254/latest/meta-data/", far)
                .expect("minted")
        )),
        refusal(403, "link-host-not-internal"),
    ));
    rows.push(row(
        "/files/<genuine token for file:///etc/passwd>",
        Cloud,
        get(format!(
            "/files/{}",
            signer.mint("file:///etc/passwd", far).expect("minted")
        )),
        refusal(403, "link-host-not-internal"),
    ));
    rows.push(row(
        "/files/<genuine token, expired>",
        Cloud,
        get(format!(
            "/files/{}",
            signer
                .mint("http://127.0.0.1:1/file/size-16", unix_now() - 10)
                .expect("minted")
        )),
        refusal(410, "link-expired"),
    ));
    rows.push(row(
        "POST /files/<token>",
        Cloud,
        post("/files/AAAA").json_type().body(b"{}"),
        status(405),
    ));
    rows.push(row(
        "/pacs/dcm with a 100 KB query string",
        Cloud,
        get(format!("/pacs/dcm?dcmId={}", "1".repeat(100 * KB))),
        Expect::HttpRefused(&[414, 431]),
    ));
    rows.push(row(
        "/pacs/dcm with a 300-byte dcmId",
        Cloud,
        get(format!("/pacs/dcm?dcmId={}", "1".repeat(300))),
        refusal(400, "bad-dcm-id"),
    ));
    rows.push(row(
        "/pacs/dcm with dcmId repeated 1000 times",
        Cloud,
        get(format!("/pacs/dcm?{}", "dcmId=size-16&".repeat(1000))),
        refusal(400, "bad-dcm-id"),
    ));
    rows.push(row(
        "/pacs/dcm with %0d%0a in dcmId",
        Cloud,
        get("/pacs/dcm?dcmId=size-16%0d%0aX-Evil:1&hospitalId=253"),
        refusal(400, "bad-dcm-id"),
    ));
    rows.push(row(
        "/pacs/dcm with %00 in dcmId",
        Cloud,
        get("/pacs/dcm?dcmId=size-16%00"),
        refusal(400, "bad-dcm-id"),
    ));
    rows.push(row(
        "/pacs/dcm with dcmId=..",
        Cloud,
        get("/pacs/dcm?dcmId=.."),
        refusal(400, "bad-dcm-id"),
    ));
    rows.push(row(
        "/pacs/dcm with %0d%0a in hospitalId",
        Cloud,
        get("/pacs/dcm?dcmId=size-16&hospitalId=253%0d%0aX-Evil:1"),
        refusal(400, "bad-dcm-id"),
    ));
    rows.push(row(
        "/pacs/dcm with invalid UTF-8 (%ff%fe) in dcmId",
        Cloud,
        get("/pacs/dcm?dcmId=size-16%ff%fe"),
        refusal(400, "bad-dcm-id"),
    ));
    rows.push(row(
        "/pacs/dcm without dcmId",
        Cloud,
        get("/pacs/dcm?hospitalId=253"),
        refusal(400, "bad-dcm-id"),
    ));
    rows.push(row(
        "POST /pacs/dcm",
        Cloud,
        post("/pacs/dcm?dcmId=size-16").json_type().body(b"{}"),
        status(405),
    ));

    rows
}

/// Forged links and bad dcmIds are refused before the PACS is asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_links_and_bad_dcm_ids_are_refused() {
    Suite::start(Gateways::Plain)
        .await
        .run("links", rows())
        .await;
}
