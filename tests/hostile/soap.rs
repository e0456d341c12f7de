//! Bad SOAP: entity expansion, external entities, deep XML, no Envelope, unknown operations,
//! invalid UTF-8, bad `param` JSON, SOAP 1.2 DOCTYPE, wrong method.

use crate::harness::*;
use crate::support::*;

fn rows() -> Vec<Row> {
    use Target::*;
    let mut rows = vec![
    row(
            "SOAP: DOCTYPE entity expansion (billion laughs)",
            His,
            soap_call(format!(
                "<?xml version=\"1.0\"?><!DOCTYPE l [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\"><!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\"><!ENTITY d \"&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;\"><!ENTITY e \"&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;\"><!ENTITY f \"&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;\"><!ENTITY g \"&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;\"><!ENTITY h \"&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;\"><!ENTITY i \"&h;&h;&h;&h;&h;&h;&h;&h;&h;&h;\">]>{}",
                soap11("genCard", "&i;")
            )),
            Expect::SoapFault(500),
        ),
    row(
            "SOAP: external entity SYSTEM file:///etc/passwd",
            His,
            soap_call(format!(
                "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>{}",
                soap11("genCard", "&e;")
            )),
            Expect::SoapFault(500),
        ),
    row(
            "SOAP: 10,000-deep XML",
            His,
            soap_call(format!(
                "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\"><soapenv:Body><genCard>{}{}</genCard></soapenv:Body></soapenv:Envelope>",
                "<a>".repeat(10_000),
                "</a>".repeat(10_000)
            )),
            Expect::SoapFault(500),
        ),
    row(
            "SOAP: a root that is not an Envelope",
            His,
            soap_call(b"<html><body><genCard><param>{}</param></genCard></body></html>"),
            Expect::SoapFault(500),
        ),
    row(
            "SOAP: unknown operation",
            His,
            soap_call(soap11("dropAllTables", "{}").as_bytes()),
            Expect::SoapFault(500),
        ),
    ];
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

    rows
}

/// Hostile SOAP gets a SOAP fault (or the envelope refusal) and nothing is forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_soap_gets_a_fault_and_nothing_is_forwarded() {
    Suite::start(Gateways::Plain)
        .await
        .run("soap", rows())
        .await;
}
