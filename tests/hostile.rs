//! Hostile input, over real sockets. Every row of the table below is sent, byte for byte, by a raw
//! TCP (or TLS) client to a gateway running in-process between a mock cloud (HTTPS), a mock HIS
//! (HTTP) and a mock PACS, all echoing. For each row the test asserts:
//!
//! - the answer the contract promises (status, and where the contract defines one the envelope
//!   `code` and `X-Prefront-Error` kind), or that the connection is closed without an answer;
//! - that no upstream (cloud, HIS, PACS) received anything for it;
//! - that no answer leaks internal detail (upstream addresses, file contents, source paths,
//!   panic text) and that no refusal is a 5xx (SOAP 1.1 faults excepted: the protocol says 500);
//! - that the gateway still serves a known-good call afterwards (a panic or a wedged listener
//!   shows up here, or as a connection dropped where an answer was due).
//!
//! Before the rows, a few *controls* send legitimate requests through the same raw client, so a
//! row cannot pass merely because the client is broken. Each read is bounded (`ROW_TIMEOUT`).
//!
//! A row whose expectation the gateway does not meet yet carries `known_bug: Some(…)`: it is
//! still run and printed (as `KNOWN BUG`), but does not fail the test. Remove the field once the
//! gateway is fixed; the run says so when such a row starts to pass.
//!
//! The test ends with one summary line:
//! `hostile inputs: N tried, N refused cleanly, 0 forwarded, 0 panics`.

mod support;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use serde_json::Value;
use support::pacs::MockPacs;
use support::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest any one exchange may take.
const ROW_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to watch a connection after an answer for a second answer (smuggling rows).
const AFTER_ANSWER: Duration = Duration::from_secs(2);
/// `[auth] shared_secret` of the signed gateway.
const SECRET: &str = "hostile-input suite: a shared secret of well over 32 characters";
/// `[pacs] link_key`, so the suite can mint tokens of its own.
const LINK_KEY: &str = "hostile-input-suite-link-key-0123456789abcdef";
const PUBLIC_URL: &str = "https://prefront.example";

const GOOD_PATH: &str = "/prefront/patient/getPatientInfo";
const GOOD_BODY: &str = r#"{"hospitalId":"253","medicalCardNumber":"001"}"#;
const HIS_NAME: &str = "hospital.interface.queryBalance";
const SOAP_PATH: &str = "/prefront/services/prefrontWebService";

const KB: usize = 1024;
const MB: usize = 1024 * 1024;

// ---------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------

/// Where a row is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// Gateway A, HIS listener (plain HTTP).
    His,
    /// Gateway A, cloud listener (plain HTTP, PACS configured, no `[auth]`).
    Cloud,
    /// Gateway B, cloud listener: TLS (SNI `localhost`) and `[auth]` signed calls.
    SignedTls,
    /// Gateway B, cloud listener, TLS to `127.0.0.1`: a rustls client sends no SNI for an IP.
    SignedTlsNoSni,
    /// Gateway B, cloud listener, raw bytes on the TCP connection (no TLS client at all).
    SignedTlsRaw,
}

impl Target {
    fn label(self) -> &'static str {
        match self {
            Target::His => "his",
            Target::Cloud => "cloud",
            Target::SignedTls => "cloud/tls+auth",
            Target::SignedTlsNoSni => "cloud/tls no-SNI",
            Target::SignedTlsRaw => "cloud/tls raw",
        }
    }
}

/// What the raw client sends.
enum Payload {
    /// These bytes, at once.
    Bytes(Vec<u8>),
    /// `head`, then a chunked body of `total` bytes in 64 KiB chunks, for as long as the gateway
    /// reads it (a 100 MB upload without a declared length).
    Chunked { head: Vec<u8>, total: usize },
}

/// What the contract promises for a row.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// An answer with `status`; `kind`: its `X-Prefront-Error`; `code`: the envelope `code` in
    /// the JSON body (or in the SOAP `return`).
    Answer {
        status: u16,
        kind: Option<&'static str>,
        code: Option<&'static str>,
    },
    /// Refused by the HTTP layer before any handler: one of these statuses, or the connection
    /// closed without an answer.
    HttpRefused(&'static [u16]),
    /// A SOAP fault with this status (`soap:Client` 500 for 1.1, `soap:Sender` 400 for 1.2).
    SoapFault(u16),
    /// No HTTP answer at all: the connection ends (a TLS alert before it is fine).
    Closed,
    /// A request-framing ambiguity with a second request pipelined behind it: refused with 400
    /// (or closed), or at most one answer that forwards nothing, after which the connection is
    /// closed, so the smuggled request is never read.
    OneAnswerThenClose,
}

/// The envelope the box raises: HTTP 200, this code and `X-Prefront-Error`.
const fn env(code: &'static str, kind: &'static str) -> Expect {
    Expect::Answer {
        status: 200,
        kind: Some(kind),
        code: Some(code),
    }
}

/// A plain-text refusal with `status` and `X-Prefront-Error: kind`.
const fn refusal(status: u16, kind: &'static str) -> Expect {
    Expect::Answer {
        status,
        kind: Some(kind),
        code: None,
    }
}

/// A bare status (hyper-level or plain-text answers without a kind).
const fn status(status: u16) -> Expect {
    Expect::Answer {
        status,
        kind: None,
        code: None,
    }
}

struct Row {
    name: String,
    target: Target,
    send: Payload,
    expect: Expect,
    /// Set while the gateway does not meet `expect`: the row warns instead of failing.
    known_bug: Option<&'static str>,
}

impl From<Call> for Payload {
    fn from(call: Call) -> Payload {
        Payload::Bytes(call.raw())
    }
}

impl From<Vec<u8>> for Payload {
    fn from(bytes: Vec<u8>) -> Payload {
        Payload::Bytes(bytes)
    }
}

fn row(name: impl Into<String>, target: Target, send: impl Into<Payload>, expect: Expect) -> Row {
    Row {
        name: name.into(),
        target,
        send: send.into(),
        expect,
        known_bug: None,
    }
}

impl Row {
    /// Marks a row the gateway does not pass yet (none today): it warns instead of failing.
    #[allow(dead_code)]
    fn known_bug(mut self, why: &'static str) -> Row {
        self.known_bug = Some(why);
        self
    }
}

fn his_path() -> String {
    format!("/his/{HIS_NAME}")
}

fn soap11(op: &str, param: &str) -> String {
    format!(
        r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:web="http://webservice.prefront/"><soapenv:Header/><soapenv:Body><web:{op}><param>{param}</param></web:{op}></soapenv:Body></soapenv:Envelope>"#
    )
}

/// A SOAP 1.1 POST to the SOAP endpoint.
fn soap_call(body: impl Into<Vec<u8>>) -> Call {
    post(SOAP_PATH)
        .content_type("text/xml; charset=utf-8")
        .body(body)
}

fn nested_json(depth: usize) -> Vec<u8> {
    let mut v = b"{\"a\":".to_vec();
    v.extend(std::iter::repeat_n(b'[', depth));
    v.extend(std::iter::repeat_n(b']', depth));
    v.push(b'}');
    v
}

/// Deterministic junk bytes (xorshift), for "garbage instead of a ClientHello".
fn garbage(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}

fn rows() -> Vec<Row> {
    use Target::*;
    let mut rows = Vec::new();
    let utf8_bad = b"{\"patientName\":\"\xff\xfe\xc3\x28\"}".to_vec();
    let gbk_bad = b"{\"patientName\":\"\xd5\xc5\x81\x20\xff\"}".to_vec();

    // --- Bodies: charsets, JSON depth and size, odd JSON -------------------------------------
    rows.push(row(
        "invalid UTF-8 body",
        His,
        post(GOOD_PATH).json_type().body(utf8_bad.clone()),
        env("20003", "invalid-charset"),
    ));
    rows.push(row(
        "invalid GBK body declared charset=GBK",
        His,
        post(GOOD_PATH)
            .content_type("application/json;charset=GBK")
            .body(gbk_bad.clone()),
        env("20003", "invalid-charset"),
    ));
    rows.push(row(
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
    ));
    rows.push(row(
        "JSON nested 10,000 levels",
        His,
        post(GOOD_PATH).json_type().body(nested_json(10_000)),
        env("20003", "invalid-json"),
    ));
    rows.push(row(
        "JSON nested 500,000 levels (just under the 1 MiB body limit)",
        His,
        post(GOOD_PATH).json_type().body(nested_json(500_000)),
        env("20003", "invalid-json"),
    ));
    rows.push(row(
        "100 MB body, declared Content-Length (nothing sent)",
        His,
        post(GOOD_PATH)
            .header("Content-Type", "application/json")
            .header("Content-Length", (100 * MB).to_string()),
        status(413),
    ));
    rows.push(Row {
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
    });
    rows.push(row(
        "duplicate JSON keys (refundNo twice: which one is refunded?)",
        His,
        post("/prefront/hospitalizationCosts/hisRefund")
            .json_type()
            .body(
                br#"{"hospitalId":"253","refundNo":"R-1","refundNo":"R-2","refundAmount":"1.00"}"#,
            ),
        env("20003", "invalid-json"),
    ));
    rows.push(row(
        "number out of range 1e999",
        His,
        post(GOOD_PATH)
            .json_type()
            .body(br#"{"medicalCardNumber":"001","amount":1e999}"#),
        env("20003", "invalid-json"),
    ));
    rows.push(row(
        "number out of range 2^64",
        His,
        post(GOOD_PATH)
            .json_type()
            .body(br#"{"medicalCardNumber":18446744073709551616}"#),
        env("20003", "invalid-json"),
    ));
    rows.push(row(
        "NUL byte inside a JSON string",
        His,
        post(GOOD_PATH)
            .json_type()
            .body(b"{\"medicalCardNumber\":\"00\x001\"}"),
        env("20003", "invalid-json"),
    ));
    rows.push(row(
        "NUL bytes after the JSON",
        His,
        post(GOOD_PATH)
            .json_type()
            .body(b"{\"medicalCardNumber\":\"001\"}\x00\x00\x00"),
        env("20003", "invalid-json"),
    ));
    rows.push(row(
        "NUL byte in a header value",
        His,
        post(GOOD_PATH)
            .content_type("application/json\x00; charset=GBK")
            .body(GOOD_BODY.as_bytes()),
        Expect::HttpRefused(&[400]),
    ));
    rows.push(row(
        "whitespace-only body",
        His,
        post(GOOD_PATH).json_type().body(b" \r\n\t "),
        env("20001", "empty-body"),
    ));
    rows.push(row(
        "invalid UTF-8 body to /his/<name>",
        Cloud,
        post(his_path()).json_type().body(utf8_bad.clone()),
        env("20003", "invalid-charset"),
    ));
    rows.push(row(
        "JSON nested 10,000 levels to /his/<name>",
        Cloud,
        post(his_path()).json_type().body(nested_json(10_000)),
        env("20003", "invalid-json"),
    ));
    rows.push(row(
        "100 MB body to /his/<name>, declared Content-Length",
        Cloud,
        post(his_path()).header("Content-Length", (100 * MB).to_string()),
        status(413),
    ));
    rows.push(Row {
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
    });
    rows.push(row(
        "duplicate JSON keys to /his/<name>",
        Cloud,
        post(his_path())
            .json_type()
            .body(br#"{"medicalCardNumber":"001","medicalCardNumber":"002"}"#),
        env("20003", "invalid-json"),
    ));

    // --- Paths: CRLF, traversal, encodings --------------------------------------------------
    rows.push(row(
        "%0d%0a in a /prefront path",
        His,
        post("/prefront/patient/getPatientInfo%0d%0aX-Evil:1")
            .json_type()
            .body(GOOD_BODY.as_bytes()),
        env("40002", "unknown-path"),
    ));
    rows.push(row(
        "/prefront/../admin",
        His,
        post("/prefront/../admin")
            .json_type()
            .body(GOOD_BODY.as_bytes()),
        env("40002", "unknown-path"),
    ));
    rows.push(row(
        "/prefront/%2e%2e/x",
        His,
        post("/prefront/%2e%2e/x")
            .json_type()
            .body(GOOD_BODY.as_bytes()),
        env("40002", "unknown-path"),
    ));
    rows.push(row(
        "dot segments around a real path",
        His,
        post("/prefront/x/../patient/getPatientInfo")
            .json_type()
            .body(GOOD_BODY.as_bytes()),
        env("40002", "unknown-path"),
    ));
    rows.push(row(
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
    ));
    rows.push(row(
        "path parameter ;jsessionid on a real path",
        His,
        post("/prefront/patient/getPatientInfo;jsessionid=1")
            .json_type()
            .body(GOOD_BODY.as_bytes()),
        env("40002", "unknown-path"),
    ));
    rows.push(row(
        "%0d%0a in the /his/<name> name",
        Cloud,
        post("/his/hospital.interface.queryBalance%0d%0aX-Evil:1")
            .json_type()
            .body(GOOD_BODY.as_bytes()),
        env("40003", "unknown-name"),
    ));
    rows.push(row(
        "/his/..%2fhis",
        Cloud,
        post("/his/..%2fhis").json_type().body(GOOD_BODY.as_bytes()),
        env("40003", "unknown-name"),
    ));
    rows.push(row(
        "/his/../prefront/patient/getPatientInfo",
        Cloud,
        post("/his/../prefront/patient/getPatientInfo")
            .json_type()
            .body(GOOD_BODY.as_bytes()),
        env("40003", "unknown-name"),
    ));
    rows.push(row(
        "/his/ with an empty name",
        Cloud,
        post("/his/").json_type().body(GOOD_BODY.as_bytes()),
        env("40003", "unknown-name"),
    ));
    rows.push(row(
        "/his/<name> with a 150-byte name of dots",
        Cloud,
        post(format!("/his/{}", ".".repeat(150)))
            .json_type()
            .body(GOOD_BODY.as_bytes()),
        env("40003", "unknown-name"),
    ));

    // --- Methods ----------------------------------------------------------------------------
    rows.push(row(
        "method FOO",
        His,
        request("FOO", GOOD_PATH).body(GOOD_BODY.as_bytes()),
        status(405),
    ));
    rows.push(row(
        "method TRACE",
        His,
        request("TRACE", GOOD_PATH).header("X-Secret", "must-not-echo"),
        status(405),
    ));
    rows.push(row(
        "method CONNECT host:443",
        His,
        request("CONNECT", "127.0.0.1:443"),
        Expect::HttpRefused(&[400, 404, 405]),
    ));
    rows.push(row(
        "method of 10 KB",
        His,
        request(&"X".repeat(10 * KB), GOOD_PATH).body(GOOD_BODY.as_bytes()),
        Expect::HttpRefused(&[400, 405, 414, 431, 501]),
    ));
    rows.push(row(
        "OPTIONS *",
        His,
        request("OPTIONS", "*"),
        Expect::HttpRefused(&[400, 404, 405]),
    ));
    rows.push(row("GET /his/<name>", Cloud, get(his_path()), status(405)));

    // --- Request framing: smuggling shapes ---------------------------------------------------
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

    // --- Oversize heads ----------------------------------------------------------------------
    rows.push(row(
        "one 70 KiB header value",
        His,
        post(GOOD_PATH)
            .header("X-Padding", "a".repeat(70 * KB))
            .body(GOOD_BODY.as_bytes()),
        Expect::HttpRefused(&[431]),
    ));
    rows.push(row(
        "one 1 MiB header value",
        His,
        post(GOOD_PATH)
            .header("X-Padding", "a".repeat(MB))
            .body(GOOD_BODY.as_bytes()),
        Expect::HttpRefused(&[431]),
    ));
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

    // --- SOAP --------------------------------------------------------------------------------
    rows.push(row(
        "SOAP: DOCTYPE entity expansion (billion laughs)",
        His,
        soap_call(format!(
            "<?xml version=\"1.0\"?><!DOCTYPE l [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\"><!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\"><!ENTITY d \"&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;\"><!ENTITY e \"&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;\"><!ENTITY f \"&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;\"><!ENTITY g \"&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;\"><!ENTITY h \"&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;\"><!ENTITY i \"&h;&h;&h;&h;&h;&h;&h;&h;&h;&h;\">]>{}",
            soap11("genCard", "&i;")
        )),
        Expect::SoapFault(500),
    ));
    rows.push(row(
        "SOAP: external entity SYSTEM file:///etc/passwd",
        His,
        soap_call(format!(
            "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>{}",
            soap11("genCard", "&e;")
        )),
        Expect::SoapFault(500),
    ));
    rows.push(row(
        "SOAP: 10,000-deep XML",
        His,
        soap_call(format!(
            "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\"><soapenv:Body><genCard>{}{}</genCard></soapenv:Body></soapenv:Envelope>",
            "<a>".repeat(10_000),
            "</a>".repeat(10_000)
        )),
        Expect::SoapFault(500),
    ));
    rows.push(row(
        "SOAP: a root that is not an Envelope",
        His,
        soap_call(b"<html><body><genCard><param>{}</param></genCard></body></html>"),
        Expect::SoapFault(500),
    ));
    rows.push(row(
        "SOAP: unknown operation",
        His,
        soap_call(soap11("dropAllTables", "{}").as_bytes()),
        Expect::SoapFault(500),
    ));
    rows.push(row(
        "SOAP: 50 MB envelope, declared Content-Length",
        His,
        post(SOAP_PATH)
            .header("Content-Type", "text/xml; charset=utf-8")
            .header("Content-Length", (50 * MB).to_string()),
        status(413),
    ));
    let mut bad_xml = soap11("genCard", "{\"name\":\"XX\"}").into_bytes();
    if let Some(i) = bad_xml.windows(2).position(|w| w == b"XX") {
        bad_xml[i] = 0xff;
        bad_xml[i + 1] = 0xfe;
    }
    rows.push(row(
        "SOAP: invalid UTF-8 in the XML",
        His,
        soap_call(bad_xml.clone()),
        Expect::SoapFault(500),
    ));
    rows.push(row(
        "SOAP: param that is not JSON",
        His,
        soap_call(soap11("genCard", "{\"name\": 'x',,}").as_bytes()),
        env("20003", "invalid-json"),
    ));
    rows.push(row(
        "SOAP: param JSON nested 10,000 levels",
        His,
        soap_call(soap11("genCard", &String::from_utf8_lossy(&nested_json(10_000))).as_bytes()),
        env("20003", "invalid-json"),
    ));
    rows.push(row(
        "SOAP: &#0; character reference in param",
        His,
        soap_call(soap11("genCard", "{\"name\":\"a&#0;b\"}").as_bytes()),
        Expect::SoapFault(500),
    ));
    rows.push(row(
        "SOAP 1.2: DOCTYPE",
        His,
        post(SOAP_PATH).content_type("application/soap+xml; charset=utf-8").body(b"<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><env:Envelope xmlns:env=\"http://www.w3.org/2003/05/soap-envelope\"><env:Body><m:genCard xmlns:m=\"http://webservice.prefront/\"><param>&e;</param></m:genCard></env:Body></env:Envelope>"),
        Expect::SoapFault(400),
    ));
    rows.push(row(
        "SOAP: method PUT",
        His,
        request("PUT", SOAP_PATH).body(soap11("genCard", "{}").as_bytes()),
        status(405),
    ));

    // --- /files and /pacs/dcm (gateway A's cloud listener) -------------------------------------
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

    // --- Signed calls ([auth]) on the TLS cloud listener ---------------------------------------
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

// ---------------------------------------------------------------------------
// The raw client
// ---------------------------------------------------------------------------

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One HTTP answer as it came off the wire.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body for a message: at most 200 characters.
    fn excerpt(&self) -> String {
        let text = self.body_text();
        match text.char_indices().nth(200) {
            Some((i, _)) => format!("{}…", &text[..i]),
            None => text,
        }
    }

    /// The envelope `code`: in the JSON body, or in the JSON inside a SOAP `return`.
    fn code(&self) -> Option<String> {
        let text = self.body_text();
        let json = match (text.find("<return>"), text.find("</return>")) {
            (Some(s), Some(e)) if s < e => text[s + "<return>".len()..e]
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&amp;", "&"),
            _ => text,
        };
        let v: Value = serde_json::from_str(&json).ok()?;
        v.get("code").and_then(Value::as_str).map(str::to_string)
    }
}

/// What happened after the answer (only watched for `OneAnswerThenClose`).
#[derive(Debug, PartialEq, Eq)]
enum After {
    NotWatched,
    Closed,
    /// More bytes came: a second answer.
    More,
    /// Neither closed nor answered within `AFTER_ANSWER`.
    Open,
}

#[derive(Debug)]
enum Outcome {
    Answered(Answer, After),
    /// The connection ended (FIN or reset) before an answer.
    Closed,
    /// Bytes that are not an HTTP answer (e.g. a TLS alert), then the end.
    NotHttp(Vec<u8>),
    TimedOut,
    /// Could not connect, or the TLS handshake failed.
    NoConnection(String),
}

impl Outcome {
    fn describe(&self) -> String {
        match self {
            Outcome::Answered(a, after) => {
                let mut s = format!("HTTP {}", a.status);
                if let Some(k) = a.header("x-prefront-error") {
                    let _ = write!(s, " {k}");
                }
                if let Some(c) = a.code() {
                    let _ = write!(s, " code {c}");
                }
                if *after != After::NotWatched {
                    let _ = write!(s, " then {after:?}");
                }
                s
            }
            Outcome::Closed => "connection closed, no answer".into(),
            Outcome::NotHttp(b) => format!("{} non-HTTP byte(s) then closed", b.len()),
            Outcome::TimedOut => "TIMED OUT".into(),
            Outcome::NoConnection(e) => format!("no connection: {e}"),
        }
    }
}

/// The addresses and TLS setup the raw client needs.
struct Endpoints {
    his: SocketAddr,
    cloud: SocketAddr,
    signed_cloud: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
}

impl Endpoints {
    async fn connect(&self, target: Target) -> Result<Box<dyn Io>, String> {
        let addr = match target {
            Target::His => self.his,
            Target::Cloud => self.cloud,
            _ => self.signed_cloud,
        };
        let tcp = tokio::time::timeout(ROW_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let name = match target {
            Target::His | Target::Cloud | Target::SignedTlsRaw => return Ok(Box::new(tcp)),
            Target::SignedTls => ServerName::try_from("localhost").map_err(|e| e.to_string())?,
            Target::SignedTlsNoSni => ServerName::IpAddress(addr.ip().into()),
        };
        let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
        let tls = tokio::time::timeout(ROW_TIMEOUT, connector.connect(name, tcp))
            .await
            .map_err(|_| "TLS handshake timed out".to_string())?
            .map_err(|e| format!("TLS handshake: {e}"))?;
        Ok(Box::new(tls))
    }

    /// Sends `send` on a fresh connection to `target` and reads one answer.
    async fn exchange(&self, target: Target, send: &Payload, watch_after: bool) -> Outcome {
        let stream = match self.connect(target).await {
            Ok(s) => s,
            Err(e) => return Outcome::NoConnection(e),
        };
        let (mut rd, mut wr) = tokio::io::split(stream);
        let writer = match send {
            Payload::Bytes(b) => {
                let b = b.clone();
                tokio::spawn(async move {
                    // The gateway may answer and close before reading everything: not an error.
                    let _ = wr.write_all(&b).await;
                    let _ = wr.flush().await;
                    wr
                })
            }
            Payload::Chunked { head, total } => {
                let (head, total) = (head.clone(), *total);
                tokio::spawn(async move {
                    let chunk = vec![b' '; 64 * KB];
                    let frame =
                        [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
                    if wr.write_all(&head).await.is_ok() {
                        let mut sent = 0;
                        while sent < total {
                            if wr.write_all(&frame).await.is_err() {
                                break;
                            }
                            sent += chunk.len();
                        }
                        let _ = wr.write_all(b"0\r\n\r\n").await;
                    }
                    wr
                })
            }
        };
        let outcome = read_answer(&mut rd, watch_after).await;
        writer.abort();
        outcome
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads one HTTP/1.x answer (and, with `watch_after`, whether anything follows it).
async fn read_answer<R: AsyncRead + Unpin>(rd: &mut R, watch_after: bool) -> Outcome {
    let deadline = tokio::time::Instant::now() + ROW_TIMEOUT;
    let mut buf: Vec<u8> = Vec::new();
    let mut tmp = vec![0u8; 16 * KB];
    let mut eof = false;
    // Head.
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() >= 5 && !buf.starts_with(b"HTTP/") {
            // Not HTTP: read to the end (bounded) and report it.
            let _ = tokio::time::timeout_at(deadline, async {
                while let Ok(n) = rd.read(&mut tmp).await {
                    if n == 0 || buf.len() > 64 * KB {
                        break;
                    }
                    buf.extend_from_slice(&tmp[..n]);
                }
            })
            .await;
            return Outcome::NotHttp(buf);
        }
        if eof {
            return if buf.is_empty() {
                Outcome::Closed
            } else {
                Outcome::NotHttp(buf)
            };
        }
        match tokio::time::timeout_at(deadline, rd.read(&mut tmp)).await {
            Err(_) => return Outcome::TimedOut,
            Ok(Ok(0)) | Ok(Err(_)) => eof = true,
            Ok(Ok(n)) => buf.extend_from_slice(&tmp[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut rest = buf[head_end..].to_vec();
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    // Body.
    loop {
        let complete = match (length, chunked) {
            (Some(n), _) => rest.len() >= n,
            (None, true) => {
                rest.starts_with(b"0\r\n\r\n") || find(&rest, b"\r\n0\r\n\r\n").is_some()
            }
            (None, false) => false,
        };
        if complete || eof {
            break;
        }
        match tokio::time::timeout_at(deadline, rd.read(&mut tmp)).await {
            Err(_) => return Outcome::TimedOut,
            Ok(Ok(0)) | Ok(Err(_)) => eof = true,
            Ok(Ok(n)) => rest.extend_from_slice(&tmp[..n]),
        }
    }
    let (body, leftover) = match (length, chunked) {
        (Some(n), _) if rest.len() >= n => {
            let leftover = rest.split_off(n);
            (rest, leftover)
        }
        (None, true) => (dechunk(&rest), Vec::new()),
        _ => (rest, Vec::new()),
    };
    let answer = Answer {
        status,
        headers,
        body,
    };
    let after = if !watch_after {
        After::NotWatched
    } else if !leftover.is_empty() {
        After::More
    } else if eof {
        After::Closed
    } else {
        match tokio::time::timeout(AFTER_ANSWER, rd.read(&mut tmp)).await {
            Err(_) => After::Open,
            Ok(Ok(0)) | Ok(Err(_)) => After::Closed,
            Ok(Ok(_)) => After::More,
        }
    };
    Outcome::Answered(answer, after)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = find(b, b"\r\n") {
        let Ok(n) = usize::from_str_radix(String::from_utf8_lossy(&b[..i]).trim(), 16) else {
            break;
        };
        if n == 0 || b.len() < i + 2 + n {
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + n]);
        b = &b[(i + 2 + n + 2).min(b.len())..];
    }
    out
}

// ---------------------------------------------------------------------------
// Judging a row
// ---------------------------------------------------------------------------

/// Strings no answer to a stranger may contain.
fn leaks(a: &Answer, secrets: &[String]) -> Vec<String> {
    let text = a.body_text();
    let mut found: Vec<String> = secrets
        .iter()
        .filter(|s| text.contains(s.as_str()))
        .cloned()
        .collect();
    for s in [
        "root:x:",
        "panicked",
        ".rs:",
        "RUST_BACKTRACE",
        "/home/",
        "/work/",
        "must-not-echo",
    ] {
        if text.contains(s) {
            found.push(s.to_string());
        }
    }
    found
}

/// Whether `outcome` meets `expect`; the reason when not.
fn judge(expect: Expect, outcome: &Outcome, secrets: &[String]) -> Result<(), String> {
    if let Outcome::Answered(a, _) = outcome {
        let leaked = leaks(a, secrets);
        if !leaked.is_empty() {
            return Err(format!("the answer leaks {leaked:?}: {}", a.excerpt()));
        }
        let soap_fault = matches!(expect, Expect::SoapFault(500));
        if a.status >= 500 && !soap_fault {
            return Err(format!("a {} for hostile input: {}", a.status, a.excerpt()));
        }
    }
    match (expect, outcome) {
        (Expect::Answer { status, kind, code }, Outcome::Answered(a, _)) => {
            if a.status != status {
                return Err(format!(
                    "status {} (want {status}): {}",
                    a.status,
                    a.excerpt()
                ));
            }
            if let Some(kind) = kind {
                if a.header("x-prefront-error") != Some(kind) {
                    return Err(format!(
                        "X-Prefront-Error {:?} (want {kind}): {}",
                        a.header("x-prefront-error"),
                        a.excerpt()
                    ));
                }
            }
            if let Some(code) = code {
                if a.code().as_deref() != Some(code) {
                    return Err(format!(
                        "code {:?} (want {code}): {}",
                        a.code(),
                        a.excerpt()
                    ));
                }
            }
            Ok(())
        }
        (Expect::HttpRefused(statuses), Outcome::Answered(a, _)) => {
            if statuses.contains(&a.status) {
                Ok(())
            } else {
                let (got, body) = (a.status, a.excerpt());
                Err(format!(
                    "status {got} (want one of {statuses:?} or closed): {body}"
                ))
            }
        }
        (Expect::HttpRefused(_), Outcome::Closed) => Ok(()),
        (Expect::SoapFault(status), Outcome::Answered(a, _)) => {
            let text = a.body_text();
            let want = if status == 500 {
                "soap:Client"
            } else {
                "soap:Sender"
            };
            let kind = a.header("x-prefront-error");
            if a.status == status && text.contains(want) && kind == Some("soap-fault") {
                Ok(())
            } else {
                let (got, body) = (a.status, a.excerpt());
                Err(format!(
                    "status {got} (want a {want} fault, {status}): {body}"
                ))
            }
        }
        (Expect::Closed, Outcome::Closed | Outcome::NotHttp(_)) => Ok(()),
        (Expect::OneAnswerThenClose, Outcome::Closed) => Ok(()),
        (Expect::OneAnswerThenClose, Outcome::Answered(a, after)) => match after {
            After::Closed => Ok(()),
            _ if a.status == 400 && *after != After::More => Ok(()),
            _ => Err(format!(
                "HTTP {} and then {after:?}: the connection stayed open after ambiguous framing",
                a.status
            )),
        },
        (_, other) => Err(format!("got {}", other.describe())),
    }
}

/// Requests the three upstreams have received so far.
fn counts(cloud: &MockUpstream, his: &MockUpstream, pacs: &MockPacs) -> [usize; 3] {
    [
        cloud.request_count(),
        his.request_count(),
        pacs.request_count(),
    ]
}

/// A known-good call through a HIS listener: 200 with the cloud's echo of it.
async fn serves_a_good_call(client: &reqwest::Client, his_url: &str) -> Result<(), String> {
    let r = post(format!("{his_url}{GOOD_PATH}"))
        .via(client)
        .json_type()
        .body(GOOD_BODY)
        .try_send()
        .await
        .map_err(|e| format!("follow-up call failed: {e}"))?;
    let (status, text) = (r.status, r.text());
    let v: Value =
        serde_json::from_str(&text).map_err(|e| format!("follow-up not JSON ({e}): {text}"))?;
    let echoed: Value = serde_json::from_str(GOOD_BODY).unwrap_or_default();
    if status == 200 && v["data"]["path"] == GOOD_PATH && v["data"]["body"] == echoed {
        Ok(())
    } else {
        Err(format!("follow-up call: HTTP {status}: {text}"))
    }
}

// ---------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_inputs_are_refused_cleanly_and_nothing_is_forwarded() {
    let started = Instant::now();
    let capture = LogCapture::new();
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(capture.clone())
        .try_init();

    let pki = TestPki::new();
    let cloud = MockUpstream::https(&pki).await;
    let his = MockUpstream::http().await;
    let pacs = MockPacs::start().await;
    cloud.echo();
    his.echo();
    let his_template = format!("{}/his/{{name}}", his.url());

    // Gateway A: both listeners plain HTTP, PACS images and links configured, no [auth].
    let toml_a = ConfigToml::basic(
        &cloud.url(),
        Some(&pki.ca_pem_path()),
        Some(&his_template),
        "",
    )
    .set("cloud_listener.public_url", PUBLIC_URL)
    .set("pacs.dcm_url", pacs.dcm_url_template())
    .set("pacs.internal_hosts", vec![pacs.host_port()])
    .set("pacs.link_key", LINK_KEY);
    let gw_a = spawn_gateway(&toml_a.render()).await;

    // Gateway B: the cloud listener speaks TLS and requires signed calls.
    let toml_b = ConfigToml::basic(
        &cloud.url(),
        Some(&pki.ca_pem_path()),
        Some(&his_template),
        "",
    )
    .set_path("cloud_listener.tls_cert", &pki.server_cert_path())
    .set_path("cloud_listener.tls_key", &pki.server_key_path())
    .set("auth.shared_secret", SECRET);
    let gw_b = spawn_gateway(&toml_b.render()).await;
    // A call signed in the gateway's start second is refused (it may predate the start): the
    // signed rows below are signed in a later one.
    let start_second = unix_now();
    poll_until(
        Duration::from_secs(2),
        "the second after the start",
        async || unix_now() > start_second,
    )
    .await;

    let endpoints = Endpoints {
        his: gw_a.his_addr,
        cloud: gw_a.cloud_addr,
        signed_cloud: gw_b.cloud_addr,
        tls: Arc::new(pki.client_tls_config()),
    };
    // Internal details an answer must never show a caller.
    let secrets = vec![
        cloud.addr().to_string(),
        his.addr().to_string(),
        pacs.host_port(),
        format!("127.0.0.1:{}", cloud.port()),
        pki.dir().display().to_string(),
        LINK_KEY.to_string(),
        SECRET.to_string(),
    ];
    let client = plain_client();

    // --- Controls: legitimate requests through the same raw client are served ------------------
    let body = br#"{"medicalCardNumber":"001"}"#;
    let t = unix_now().to_string();
    let sig = sign(SECRET, "POST", &his_path(), &t, body);
    let t2 = (unix_now() + 1).to_string();
    let sig2 = sign(SECRET, "POST", &his_path(), &t2, body);
    let controls: Vec<(&str, Target, Call, [usize; 3])> = vec![
        (
            "HTTP/1.1 JSON call",
            Target::His,
            post(GOOD_PATH).json_type().body(GOOD_BODY.as_bytes()),
            [1, 0, 0],
        ),
        (
            "HTTP/1.0 JSON call",
            Target::His,
            post(GOOD_PATH)
                .version("HTTP/1.0")
                .header("Content-Type", "application/json")
                .body(GOOD_BODY.as_bytes()),
            [1, 0, 0],
        ),
        (
            "%0d%0a in the query of a real path (the query is not forwarded)",
            Target::His,
            post(format!("{GOOD_PATH}?x=%0d%0aX-Evil:%201"))
                .json_type()
                .body(GOOD_BODY.as_bytes()),
            [1, 0, 0],
        ),
        (
            "chunked JSON call",
            Target::His,
            post(GOOD_PATH)
                .header("Transfer-Encoding", "chunked")
                .body(format!("{:x}\r\n{GOOD_BODY}\r\n0\r\n\r\n", GOOD_BODY.len())),
            [1, 0, 0],
        ),
        (
            "/his/<name> call",
            Target::Cloud,
            post(his_path()).json_type().body(body.as_slice()),
            [0, 1, 0],
        ),
        (
            "/pacs/dcm image",
            Target::Cloud,
            get("/pacs/dcm?dcmId=size-16&hospitalId=253"),
            [0, 0, 1],
        ),
        (
            "signed call over TLS",
            Target::SignedTls,
            post(his_path())
                .json_type()
                .body(body.as_slice())
                .signature(Some(&t), Some(&sig)),
            [0, 1, 0],
        ),
        (
            "signed call over TLS without SNI",
            Target::SignedTlsNoSni,
            post(his_path())
                .json_type()
                .body(body.as_slice())
                .signature(Some(&t2), Some(&sig2)),
            [0, 1, 0],
        ),
    ];
    for (name, target, call, want) in controls {
        let before = counts(&cloud, &his, &pacs);
        let outcome = endpoints.exchange(target, &call.into(), false).await;
        let after = counts(&cloud, &his, &pacs);
        let delta = [
            after[0] - before[0],
            after[1] - before[1],
            after[2] - before[2],
        ];
        match &outcome {
            Outcome::Answered(a, _)
                if a.status == 200 && a.header("x-prefront-error").is_none() => {}
            other => panic!(
                "control `{name}` ({}) was not served: {}",
                target.label(),
                other.describe()
            ),
        }
        assert_eq!(
            delta, want,
            "control `{name}`: requests reaching cloud/HIS/PACS"
        );
        println!(
            "control  {:<17} {name}: {}",
            target.label(),
            outcome.describe()
        );
    }
    let req = cloud
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

    // --- The rows ----------------------------------------------------------------------------
    let rows = rows();
    let (mut tried, mut clean, mut forwarded, mut panics) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    let mut known = Vec::new();
    for row in &rows {
        tried += 1;
        let before = counts(&cloud, &his, &pacs);
        let watch = matches!(row.expect, Expect::OneAnswerThenClose);
        let row_started = Instant::now();
        let outcome = endpoints.exchange(row.target, &row.send, watch).await;
        let after = counts(&cloud, &his, &pacs);
        let reached: usize = after.iter().zip(before).map(|(a, b)| a - b).sum();
        let mut problems = Vec::new();
        if let Err(e) = judge(row.expect, &outcome, &secrets) {
            problems.push(e);
        }
        if reached > 0 {
            forwarded += 1;
            problems.push(format!(
                "FORWARDED: {} request(s) reached cloud/HIS/PACS",
                reached
            ));
        }
        let dropped = matches!(outcome, Outcome::Closed)
            && matches!(row.expect, Expect::Answer { .. } | Expect::SoapFault(_));
        // The gateway still serves a normal call (through the listener pair the row hit).
        let his_url = match row.target {
            Target::His | Target::Cloud => gw_a.his_url(),
            _ => gw_b.his_url(),
        };
        let follow = serves_a_good_call(&client, &his_url).await;
        let late = counts(&cloud, &his, &pacs);
        if late != [after[0] + 1, after[1], after[2]] {
            problems.push(format!(
                "upstream counts moved after the row: {after:?} → {late:?} (want one cloud call)"
            ));
        }
        if let Err(e) = &follow {
            problems.push(e.clone());
        }
        if dropped || follow.is_err() {
            panics += 1;
        }
        let took = row_started.elapsed();
        let verdict = match (problems.is_empty(), row.known_bug) {
            (true, None) => {
                clean += 1;
                "ok"
            }
            (true, Some(_)) => {
                clean += 1;
                "FIXED?"
            }
            (false, Some(_)) => "KNOWN BUG",
            (false, None) => "FAIL",
        };
        println!(
            "{verdict:<9} {:<17} {:<70} {} [{} ms]",
            row.target.label(),
            row.name,
            outcome.describe(),
            took.as_millis()
        );
        match (problems.is_empty(), row.known_bug) {
            (false, None) => failures.push(format!(
                "{} ({}): {}",
                row.name,
                row.target.label(),
                problems.join("; ")
            )),
            (false, Some(why)) => {
                known.push(format!("{}: {} — {why}", row.name, problems.join("; ")))
            }
            (true, Some(_)) => println!(
                "          `{}` now meets its expectation: remove its known_bug",
                row.name
            ),
            (true, None) => {}
        }
    }

    // The signed TLS listener still serves a good signed call.
    let signed = post(his_path())
        .json_type()
        .body(body.as_slice())
        .signed(SECRET, unix_now() + 2);
    match endpoints
        .exchange(Target::SignedTls, &signed.into(), false)
        .await
    {
        Outcome::Answered(a, _) if a.status == 200 => {}
        other => failures.push(format!(
            "after the rows, a signed TLS call was not served: {}",
            other.describe()
        )),
    }
    let log = capture.contents();
    if log.contains("panicked") {
        panics += 1;
        failures.push("the gateway's log shows a panic".to_string());
    }

    for k in &known {
        println!("KNOWN BUG (not failing): {k}");
    }
    println!(
        "hostile inputs: {tried} tried, {clean} refused cleanly, {forwarded} forwarded, {panics} panics"
    );
    if !known.is_empty() {
        println!(
            "known gateway bugs: {} row(s) marked known_bug (warnings)",
            known.len()
        );
    }
    println!(
        "hostile suite took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} row(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    gw_a.shutdown().await;
    gw_b.shutdown().await;
}

// ---------------------------------------------------------------------------
// HIS answers: a LAN link never leaves the box in clear
// ---------------------------------------------------------------------------

/// Odd answers from the HIS: whatever their shape, the cloud never sees the PACS's LAN
/// address (the answer is rewritten to `/files` links, or refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn his_answers_never_carry_a_lan_link_out_in_clear() {
    let pacs = MockPacs::start().await;
    let his = MockUpstream::http().await;
    let cloud = MockUpstream::http().await;
    let toml = ConfigToml::basic(
        &cloud.url(),
        None,
        Some(&format!("{}/his/{{name}}", his.url())),
        "",
    )
    .set("cloud_listener.public_url", PUBLIC_URL)
    .set("pacs.dcm_url", pacs.dcm_url_template())
    .set("pacs.internal_hosts", vec![pacs.host_port()])
    .set("pacs.link_key", LINK_KEY);
    let gw = spawn_gateway(&toml.render()).await;
    let lan = pacs.host_port();
    let link = format!("http://{lan}/file/size-16");
    let deep = 130;
    let cases: Vec<(&str, String, Option<&str>)> = vec![
        (
            "plain answer (control)",
            format!(r#"{{"success":true,"code":"10001","data":{{"pdfUrl":"{link}"}}}}"#),
            None,
        ),
        (
            "link with \\u escapes and \\/",
            format!(
                r#"{{"code":"10001","data":{{"pdfUrl":"\u0068ttp:\/\/{lan}\/file\/size-16"}}}}"#
            ),
            None,
        ),
        (
            "upper-case scheme and host spelled 127.1",
            format!(
                r#"{{"code":"10001","data":{{"reportUrl":"HTTP://127.1:{}/file/size-16"}}}}"#,
                pacs.port()
            ),
            None,
        ),
        (
            "duplicate keys, both links",
            format!(r#"{{"code":"10001","data":{{"pdfUrl":"{link}","pdfUrl":"{link}?b"}}}}"#),
            None,
        ),
        (
            "dcms with type \" URL \"",
            format!(r#"{{"code":"10001","data":[{{"dcms":["{link}"],"type":" URL "}}]}}"#),
            None,
        ),
        (
            "answer nested 130 levels",
            format!(
                r#"{{"code":"10001","data":{}{{"pdfUrl":"{link}"}}{}}}"#,
                "[".repeat(deep),
                "]".repeat(deep)
            ),
            None,
        ),
        (
            "a key with a lone surrogate escape",
            format!(r#"{{"code":"10001","\ud800":"","data":{{"pdfUrl":"{link}"}}}}"#),
            None,
        ),
        (
            "link with user:password@ on the internal host",
            format!(
                r#"{{"code":"10001","data":{{"pdfUrl":"http://pacs:secret@{lan}/file/size-16"}}}}"#
            ),
            None,
        ),
    ];
    let client = plain_client();
    let (mut tried, mut clean) = (0, 0);
    let mut failures = Vec::new();
    for (name, answer, known_bug) in cases {
        tried += 1;
        his.respond("/his/hospital.interface.pacsReport", 200, &answer);
        let r = post(format!(
            "{}/his/hospital.interface.pacsReport",
            gw.cloud_url(false)
        ))
        .via(&client)
        .body(r#"{"hospitalId":"253","patientId":"P1"}"#)
        .send()
        .await;
        let (status, text) = (r.status, r.text());
        let leaked = text.contains(&lan) || text.contains(&format!(":{}/file", pacs.port()));
        let ok = status == 200 && !leaked;
        let verdict = match (ok, known_bug) {
            (true, None) => "ok",
            (true, Some(_)) => "FIXED?",
            (false, Some(_)) => "KNOWN BUG",
            (false, None) => "FAIL",
        };
        if ok {
            clean += 1;
        }
        let shown: String = text.chars().take(160).collect();
        println!("{verdict:<9} HIS answer: {name:<48} HTTP {status}, LAN address in clear: {leaked}: {shown}");
        match (ok, known_bug) {
            (false, None) => failures.push(format!("{name}: HTTP {status}: {shown}")),
            (false, Some(why)) => println!("KNOWN BUG (not failing): {name} — {why}"),
            _ => {}
        }
    }
    println!("hostile HIS answers: {tried} tried, {clean} without a LAN link in clear");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    gw.shutdown().await;
}
