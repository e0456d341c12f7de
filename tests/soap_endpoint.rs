//! The WebService the HIS calls, at the protocol level: the WSDL as served, SOAP 1.1 and 1.2
//! answered in kind, charsets, JSON outcomes inside `return`, and hostile XML refused with a
//! fault and nothing forwarded.

mod support;

use serde_json::Value;
use support::*;

const PATH: &str = "/prefront/services/prefrontWebService";

/// A gateway in front of an echoing cloud; its HIS listener has `public_url` when given.
async fn gateway(public_url: Option<&str>) -> (MockUpstream, TestGateway) {
    let cloud = MockUpstream::http().await;
    cloud.echo();
    let mut toml = ConfigToml::basic(&cloud.url(), None, None, "");
    if let Some(url) = public_url {
        toml = toml.set("his_listener.public_url", url);
    }
    let toml = toml.render();
    let gw = spawn_gateway(&toml).await;
    (cloud, gw)
}

fn envelope11(op: &str, param: &str) -> String {
    format!(
        r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:web="http://webservice.prefront/"><soapenv:Header/><soapenv:Body><web:{op}><param>{param}</param></web:{op}></soapenv:Body></soapenv:Envelope>"#
    )
}

/// A POST of `body` as `content_type` to the SOAP endpoint.
fn soap(gw: &TestGateway, content_type: &str, body: impl Into<Vec<u8>>) -> Call {
    post(format!("{}{PATH}", gw.his_url()))
        .content_type(content_type)
        .body(body)
}

/// The text of `<return>`, unescaped.
fn return_json(xml: &str) -> Value {
    let start = xml.find("<return>").expect("a return element") + "<return>".len();
    let end = xml.find("</return>").expect("closed");
    let text = xml[start..end]
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&");
    serde_json::from_str(&text).expect("return holds JSON")
}

#[tokio::test]
async fn wsdl_is_served_for_any_case_of_wsdl_with_the_right_address() {
    let (_cloud, gw) = gateway(None).await;
    for q in ["wsdl", "WSDL", "Wsdl"] {
        let resp = get(format!("{}{PATH}?{q}", gw.his_url())).send().await;
        assert_eq!(resp.status, 200, "{q}");
        let text = resp.text();
        assert!(text.contains("<wsdl:definitions"), "{q}");
        assert!(
            text.contains(&format!("location=\"http://{}{PATH}\"", gw.his_addr)),
            "{q}"
        );
        assert_eq!(text.matches("<wsdl:operation name=").count(), 78);
    }
    // A forged Host cannot inject markup into the WSDL.
    let resp = get(format!("{}{PATH}?wsdl", gw.his_url()))
        .header("host", "evil\"><x")
        .send()
        .await;
    assert!(!resp.text().contains("evil"));
    let (_c, gw) = gateway(Some("https://prefront.hospital.cn:8080")).await;
    let text = get(format!("{}{PATH}?wsdl", gw.his_url()))
        .send()
        .await
        .text();
    assert!(text.contains(&format!(
        "location=\"https://prefront.hospital.cn:8080{PATH}\""
    )));
}

#[tokio::test]
async fn soap11_call_is_relayed_and_answered_in_11() {
    let (cloud, gw) = gateway(None).await;
    let r = soap(
        &gw,
        "text/xml; charset=utf-8",
        envelope11(
            "getQrCodeForHospitalEducation",
            r#"{"patientId":"1 &amp; 2"}"#,
        ),
    )
    .send()
    .await;
    let (status, ct, body) = (r.status, r.header("content-type").unwrap_or(""), r.text());
    assert_eq!(status, 200, "{body}");
    assert!(ct.starts_with("text/xml"), "{ct}");
    assert!(body.contains("http://schemas.xmlsoap.org/soap/envelope/"));
    assert!(body.contains("getQrCodeForHospitalEducationResponse"));
    let v = return_json(&body);
    assert_eq!(v["data"]["path"], "/prefront/inhospitalEducation/getQrCode");
    assert_eq!(cloud.requests()[0].json()["patientId"], "1 & 2");
}

#[tokio::test]
async fn soap12_call_is_answered_in_12() {
    let (cloud, gw) = gateway(None).await;
    let env = r#"<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Body><m:payment xmlns:m="http://webservice.prefront/"><param>{"a":"1"}</param></m:payment></env:Body></env:Envelope>"#;
    let r = soap(
        &gw,
        "application/soap+xml; charset=utf-8; action=\"payment\"",
        env,
    )
    .send()
    .await;
    let (status, ct, body) = (r.status, r.header("content-type").unwrap_or(""), r.text());
    assert_eq!(status, 200, "{body}");
    assert!(ct.starts_with("application/soap+xml"), "{ct}");
    assert!(body.contains("http://www.w3.org/2003/05/soap-envelope"));
    assert_eq!(
        return_json(&body)["data"]["path"],
        "/prefront/sendTipMessage/payment"
    );
    assert_eq!(cloud.request_count(), 1);
}

#[tokio::test]
async fn gbk_caller_is_answered_in_gbk() {
    let (cloud, gw) = gateway(None).await;
    let env = format!(
        "<?xml version=\"1.0\" encoding=\"GBK\"?>{}",
        envelope11("genCard", r#"{"name":"张三"}"#)
    );
    let (gbk, _, _) = encoding_rs::GBK.encode(&env);
    let resp = soap(&gw, "text/xml", gbk.into_owned()).send().await;
    assert!(resp.header("content-type").unwrap_or("").contains("GBK"));
    let (text, _, bad) = encoding_rs::GB18030.decode(&resp.body);
    assert!(!bad);
    assert!(text.starts_with("<?xml version=\"1.0\" encoding=\"GBK\"?>"));
    assert_eq!(return_json(&text)["data"]["body"]["name"], "张三");
    assert_eq!(cloud.requests()[0].json()["name"], "张三");
}

#[tokio::test]
async fn json_outcomes_travel_inside_return() {
    let (cloud, gw) = gateway(None).await;
    let r = soap(&gw, "text/xml", envelope11("genCard", "{not json"))
        .send()
        .await;
    let (status, body) = (r.status, r.text());
    assert_eq!(status, 200);
    assert_eq!(return_json(&body)["code"], "20003");
    let r = soap(&gw, "text/xml", envelope11("genCard", ""))
        .send()
        .await;
    let body = r.text();
    assert_eq!(return_json(&body)["code"], "20001");
    // The 21.x uploads keep their own envelope shape inside return.
    let r = soap(&gw, "text/xml", envelope11("hospital", "[1,"))
        .send()
        .await;
    let body = r.text();
    let v = return_json(&body);
    assert_eq!(
        (v["status"].as_i64(), v["code"].as_str()),
        (Some(-1), Some("20003"))
    );
    assert_eq!(cloud.request_count(), 0);
}

#[tokio::test]
async fn hostile_or_broken_soap_gets_a_fault_and_nothing_is_forwarded() {
    let (cloud, gw) = gateway(None).await;
    let deep = format!(
        "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\"><soapenv:Body><genCard>{}{}</genCard></soapenv:Body></soapenv:Envelope>",
        "<a>".repeat(10_000),
        "</a>".repeat(10_000)
    );
    let cases: Vec<(&str, String)> = vec![
        ("billion laughs", format!("<?xml version=\"1.0\"?><!DOCTYPE l [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\"><!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\">]>{}", envelope11("genCard", "&c;"))),
        ("external entity", format!("<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>{}", envelope11("genCard", "&e;"))),
        ("deep nesting", deep),
        ("truncated", envelope11("genCard", "{}")[..120].to_string()),
        ("not an envelope", "<html><body>hello</body></html>".to_string()),
        ("not xml", "{\"json\": true}".to_string()),
        ("unknown operation", envelope11("dropAllTables", "{}")),
        ("element inside param", envelope11("genCard", "<x>1</x>")),
    ];
    for (what, body) in cases {
        let r = soap(&gw, "text/xml; charset=utf-8", body).send().await;
        let (status, ct, text) = (r.status, r.header("content-type").unwrap_or(""), r.text());
        assert_eq!(status, 500, "{what}: SOAP 1.1 faults are HTTP 500");
        assert!(ct.starts_with("text/xml"), "{what}");
        assert!(
            text.contains("<faultcode>soap:Client</faultcode>"),
            "{what}: {text}"
        );
        assert!(!text.contains("root:"), "{what}: nothing read from disk");
    }
    let r = soap(&gw, "application/soap+xml", "<broken").send().await;
    let (status, text) = (r.status, r.text());
    assert_eq!(status, 400, "SOAP 1.2 Sender faults are 400");
    assert!(text.contains("soap:Sender"));
    assert_eq!(cloud.request_count(), 0, "nothing forwarded");
}

/// An Axis 1.4 client writes 𠮷 (U+20BB7) as a surrogate pair: the cloud receives the one
/// character; a lone or reversed surrogate is a Fault and nothing is forwarded.
#[tokio::test]
async fn axis_surrogate_pairs_are_read_and_lone_ones_refused() {
    let (cloud, gw) = gateway(None).await;
    let r = soap(
        &gw,
        "text/xml; charset=utf-8",
        envelope11(
            "getQrCodeForHospitalEducation",
            r#"{"patientName":"&#xD842;&#xDFB7;&#x5409;"}"#,
        ),
    )
    .send()
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(cloud.requests()[0].json()["patientName"], "𠮷吉");
    for bad in ["&#xD842;", "&#xDFB7;&#xD842;", "&#xD842;x&#xDFB7;"] {
        let r = soap(
            &gw,
            "text/xml; charset=utf-8",
            envelope11(
                "getQrCodeForHospitalEducation",
                &format!(r#"{{"patientName":"{bad}"}}"#),
            ),
        )
        .send()
        .await;
        assert_eq!(r.status, 500, "{bad}: {}", r.text());
        assert!(r.text().contains("surrogate"), "{bad}: {}", r.text());
    }
    assert_eq!(
        cloud.requests().len(),
        1,
        "nothing forwarded for a lone surrogate"
    );
}
