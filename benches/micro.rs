//! Micro-benchmarks of the pure functions on the hot paths, so a regression shows per function
//! (`bench/RESULTS.md` has the profile of the whole calls these come from):
//!
//! ```text
//! cargo bench --bench micro                  # full run (about a minute)
//! cargo bench --bench micro -- --quick       # a quick look
//! cargo bench --bench micro -- xmljson       # one group
//! ```
//!
//! Inputs are those of `bench/run.sh` (`benches/common/mod.rs`): the 1 KiB patient call, its
//! SOAP envelope, the cloud's answer, the HIS answer of 30 fields with 2 arrays, a PACS answer
//! with 18 LAN links.

mod common;

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use prefront::config::SoapVersion;
use prefront::soap::{envelope, wsdl, xmljson};

fn soap(c: &mut Criterion) {
    let patient = common::patient_request();
    let request = common::soap_request(&patient);
    let answer = common::cloud_answer();
    let his_xml = common::his_answer_xml_envelope("queryWaitPay");
    let his_string = common::his_answer_string_envelope("queryMedicalInsuranceOrder");
    let mut g = c.benchmark_group("soap");

    g.throughput(Throughput::Bytes(request.len() as u64));
    g.bench_function("parse_call (1 KiB param)", |b| {
        b.iter(|| {
            envelope::parse_call(
                black_box(request.as_bytes()),
                Some("text/xml; charset=UTF-8"),
            )
        })
    });
    g.throughput(Throughput::Bytes(answer.len() as u64));
    g.bench_function("call_response (cloud answer)", |b| {
        b.iter(|| {
            envelope::call_response(
                SoapVersion::V11,
                wsdl::NAMESPACE,
                black_box("getPatientInfo"),
                black_box(&answer),
                None,
            )
        })
    });
    g.throughput(Throughput::Bytes(patient.len() as u64));
    g.bench_function("his_request (string param)", |b| {
        b.iter(|| {
            envelope::his_request(
                SoapVersion::V11,
                common::HIS_NAMESPACE,
                "queryMedicalInsuranceOrder",
                &[],
                envelope::Payload::Text {
                    param_name: "param",
                    json: black_box(&patient),
                },
                true,
                None,
            )
        })
    });
    g.throughput(Throughput::Bytes(his_string.len() as u64));
    g.bench_function("parse_his_answer (string, 30 fields)", |b| {
        b.iter(|| envelope::parse_his_answer(black_box(his_string.as_bytes()), None))
    });
    g.throughput(Throughput::Bytes(his_xml.len() as u64));
    g.bench_function("parse_his_answer (xml, 30 fields)", |b| {
        b.iter(|| envelope::parse_his_answer(black_box(his_xml.as_bytes()), None))
    });
    g.finish();
}

fn xml_json(c: &mut Criterion) {
    let value = common::his_answer();
    let wrapper = common::his_answer_wrapper("queryWaitPay");
    let hints = xmljson::ArrayHints::new(common::HIS_ARRAYS);
    let query: serde_json::Value =
        serde_json::from_str(&common::his_query()).expect("the query is JSON");
    let mut g = c.benchmark_group("xmljson");

    g.throughput(Throughput::Bytes(value.to_string().len() as u64));
    g.bench_function("json_to_xml (30 fields, 2 arrays)", |b| {
        b.iter(|| {
            let mut out = String::new();
            xmljson::json_to_xml(black_box(&value), Some("tns"), &mut out).map(|()| out)
        })
    });
    g.throughput(Throughput::Bytes(query.to_string().len() as u64));
    g.bench_function("json_to_xml (the cloud's query)", |b| {
        b.iter(|| {
            let mut out = String::new();
            xmljson::json_to_xml(black_box(&query), Some("tns"), &mut out).map(|()| out)
        })
    });
    g.throughput(Throughput::Bytes(wrapper.len() as u64));
    g.bench_function("xml_to_json (30 fields, 2 arrays)", |b| {
        b.iter(|| xmljson::xml_to_json(black_box(wrapper.as_bytes()), &hints))
    });
    g.bench_function("xml_to_json + to_string (what the route does)", |b| {
        b.iter(|| {
            xmljson::xml_to_json(black_box(wrapper.as_bytes()), &hints).map(|v| v.to_string())
        })
    });
    g.finish();
}

/// The JSON check every payload crossing the box passes (callers' bodies, SOAP params, the
/// cloud's and the HIS's answers), beside serde_json's plain syntax check for scale.
fn json_check(c: &mut Criterion) {
    let inputs = [
        ("1 KiB patient call", common::patient_request()),
        ("cloud answer", common::cloud_answer()),
        ("HIS answer, 30 fields", common::his_answer().to_string()),
    ];
    let mut g = c.benchmark_group("json");
    for (what, text) in &inputs {
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function(format!("validate ({what})"), |b| {
            b.iter(|| prefront::json::validate(black_box(text.as_bytes())))
        });
        g.bench_function(format!("serde IgnoredAny ({what})"), |b| {
            b.iter(|| {
                serde_json::from_slice::<serde::de::IgnoredAny>(black_box(text.as_bytes()))
                    .map(|_| ())
            })
        });
    }
    g.finish();
}

fn redact(c: &mut Criterion) {
    let patient = common::patient_request();
    let answer = common::his_answer().to_string();
    let mut g = c.benchmark_group("redact");
    g.throughput(Throughput::Bytes(patient.len() as u64));
    g.bench_function("mask_body (1 KiB patient call)", |b| {
        b.iter(|| prefront::telemetry::redact::mask_body(black_box(patient.as_bytes()), 2048))
    });
    g.throughput(Throughput::Bytes(answer.len() as u64));
    g.bench_function("mask_body (HIS answer, 30 fields)", |b| {
        b.iter(|| prefront::telemetry::redact::mask_body(black_box(answer.as_bytes()), 2048))
    });
    g.finish();
}

fn rewrite(c: &mut Criterion) {
    use prefront::pacs::rewrite::{candidate_spans, splice};
    let lan = "10.1.1.20:8080";
    let answer = Bytes::from(common::pacs_answer(lan));
    let plain = Bytes::from(common::his_answer().to_string());
    let fields: Vec<String> = ["dcms", "thumbnailUrl", "pdfUrl", "reportUrl", "imageUrl"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let token = "https://prefront.example-hospital.cn:8443/files/".to_string() + &"A".repeat(120);
    let map = |url: &str| url.contains(lan).then(|| token.clone());
    let mut g = c.benchmark_group("pacs_rewrite");
    g.throughput(Throughput::Bytes(answer.len() as u64));
    g.bench_function("candidate_spans (18 links)", |b| {
        b.iter(|| candidate_spans(black_box(&answer), &fields))
    });
    let spans = candidate_spans(&answer, &fields).expect("the answer is JSON");
    assert_eq!(spans.len(), 18, "16 dcms, a thumbnail and a report");
    g.bench_function("splice (18 links rewritten)", |b| {
        b.iter(|| splice(black_box(&answer), &spans, map))
    });
    g.throughput(Throughput::Bytes(plain.len() as u64));
    g.bench_function("candidate_spans (answer without links)", |b| {
        b.iter(|| candidate_spans(black_box(&plain), &fields))
    });
    g.finish();
}

fn auth(c: &mut Criterion) {
    use prefront::auth::Signer;
    let secret = b"a shared secret of at least 32 bytes, for benches";
    let skew = Duration::from_secs(300);
    let body = common::patient_request();
    let path = "/his/hospital.interface.queryWaitPay";
    let now = 1_764_662_400;
    let signer = Signer::new(secret, skew);
    let mut g = c.benchmark_group("auth");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("sign (1 KiB body)", |b| {
        b.iter(|| signer.sign("POST", path, black_box(body.as_bytes()), now))
    });
    // A signature verifies once (replays are refused), so each check gets a fresh verifier and
    // signature, made outside the timing.
    g.bench_function("verify (1 KiB body)", |b| {
        b.iter_batched(
            || {
                let v = Signer::new(secret, skew);
                let [(_, ts), (_, sig)] = v.sign("POST", path, body.as_bytes(), now);
                (v, ts, sig)
            },
            |(v, ts, sig)| {
                let r = v.verify(
                    "POST",
                    path,
                    Some(&ts),
                    Some(&sig),
                    black_box(body.as_bytes()),
                    now,
                );
                assert!(r.is_ok());
                v
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, soap, xml_json, json_check, redact, rewrite, auth);
criterion_main!(benches);
