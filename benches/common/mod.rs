//! The payloads of the benchmarks, in one place: `benches/micro.rs` times the pure functions on
//! them and `examples/bench_upstream.rs` serves and writes them for `bench/run.sh`, so the micro
//! figures and the load figures are about the same bytes.
//!
//! Sizes follow the interface specification: a HIS → cloud call of about 1 KB (patient data
//! with the fields the spec's patient interfaces carry), the cloud's answer, and a HIS answer of
//! 30 fields with 2 arrays (`data`, `data.detail`: pending fees with their items, as in
//! `queryWaitPay`).
#![allow(dead_code)] // each user takes what it needs

use serde_json::{json, Map, Value};

/// The HIS → cloud route of scenarios 1 and 2 (a query: always relayed directly).
pub const HIS_TO_CLOUD_PATH: &str = "prefront/patient/getPatientInfo";
/// Its operation on the published WebService.
pub const HIS_TO_CLOUD_OPERATION: &str = "getPatientInfo";
/// The SOAP HIS's target namespace (scenario 3).
pub const HIS_NAMESPACE: &str = "http://his.example/";
/// Array paths of the HIS answer (the route's `arrays`).
pub const HIS_ARRAYS: [&str; 2] = ["data", "data.detail"];
/// The notification route of the end-to-end buffering run (scenario 4).
pub const NOTIFY_PATH: &str = "prefront/sendTipMessage/payment";

/// Exactly this many bytes: the "1 KB body".
pub const PATIENT_REQUEST_BYTES: usize = 1024;

/// A HIS → cloud call of exactly 1024 bytes: a patient's card, identity and contact data, the
/// fields the spec's patient interfaces use, with names, ID numbers and phones in the formats
/// the masking rules look for.
pub fn patient_request() -> String {
    let mut v = json!({
        "hospitalId": "253",
        "medicalCardNumber": "001000056254587",
        "cardType": "1",
        "patientName": "张三丰",
        "sex": "1",
        "birthday": "1988-01-01",
        "age": "38",
        "idCardType": "01",
        "idcard": "370102198801015236",
        "phone": "13512341254",
        "nation": "汉族",
        "nationality": "中国",
        "maritalStatus": "已婚",
        "occupation": "教师",
        "address": "山东省济南市历下区泺源大街 88 号 3 单元 502 室",
        "workUnit": "济南市第一中学",
        "contactName": "李四",
        "contactRelation": "配偶",
        "contactPhone": "13698765432",
        "insuranceType": "城镇职工基本医疗保险",
        "insuranceNo": "370100198801015236",
        "openId": "oX2a5t-8LkQw3Rz7YbN1pVc9Hd4E",
        "unionId": "o6_bmasdasdsad6_2sgVt7hMZOPfL",
        "channel": "wechat",
        "operatorId": "HIS-OP-0042",
        "requestTime": "2026-12-02 09:30:15",
        "remark": ""
    });
    let len = v.to_string().len();
    assert!(
        len < PATIENT_REQUEST_BYTES,
        "patient request base is {len} bytes"
    );
    v["remark"] = Value::String("x".repeat(PATIENT_REQUEST_BYTES - len));
    let s = v.to_string();
    assert_eq!(s.len(), PATIENT_REQUEST_BYTES);
    s
}

/// The cloud's answer to `getPatientInfo` (about 600 bytes).
pub fn cloud_answer() -> String {
    json!({
        "success": true,
        "msg": "成功",
        "code": "10001",
        "data": {
            "patientId": "P2026120200042",
            "medicalCardNumber": "001000056254587",
            "patientName": "张三丰",
            "sex": "1",
            "birthday": "1988-01-01",
            "idcard": "370102198801015236",
            "phone": "13512341254",
            "address": "山东省济南市历下区泺源大街 88 号 3 单元 502 室",
            "openId": "oX2a5t-8LkQw3Rz7YbN1pVc9Hd4E",
            "bindTime": "2025-03-14 10:21:07",
            "cardStatus": "1",
            "balance": "128.50"
        }
    })
    .to_string()
}

/// The same call as `patient_request` through the published WebService (SOAP 1.1, the JSON in
/// `<param>`, as the README's example and the CXF clients send it).
pub fn soap_request(json: &str) -> String {
    format!(
        "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" \
         xmlns:web=\"http://webservice.prefront/\"><soapenv:Header/><soapenv:Body>\
         <web:{HIS_TO_CLOUD_OPERATION}><param>{}</param></web:{HIS_TO_CLOUD_OPERATION}>\
         </soapenv:Body></soapenv:Envelope>",
        xml_escape(json)
    )
}

/// A cloud → HIS query (scenario 3): what the cloud sends for pending fees.
pub fn his_query() -> String {
    json!({
        "hospitalId": "253",
        "medicalCardNumber": "001000056254587",
        "patientName": "张三丰",
        "idcard": "370102198801015236",
        "startDate": "2026-12-01",
        "endDate": "2026-12-02",
        "deptCode": "0101",
        "pageNo": "1",
        "pageSize": "20"
    })
    .to_string()
}

/// The HIS's answer to `his_query`: 30 distinct fields (3 envelope fields, 12 per bill, 15 per
/// item), 2 arrays (`data`: 2 bills, `data.detail`: 3 items each); every value a string, as it
/// comes back from XML.
pub fn his_answer() -> Value {
    let item = |bill: usize, n: usize| {
        let mut m = Map::new();
        for (k, v) in [
            ("itemCode", format!("XM{bill}{n:03}")),
            (
                "itemName",
                ["血常规五分类", "C反应蛋白测定", "静脉采血"][n % 3].to_string(),
            ),
            ("itemType", "检验".to_string()),
            ("spec", "次".to_string()),
            ("unit", "项".to_string()),
            ("quantity", "1".to_string()),
            ("price", format!("{}.50", 10 + n)),
            ("amount", format!("{}.50", 10 + n)),
            ("selfPayRatio", "0.20".to_string()),
            ("insuranceClass", "甲类".to_string()),
            ("execDept", "检验科".to_string()),
            ("execDeptCode", "0401".to_string()),
            ("orderNo", format!("YZ20261202{bill}{n:02}")),
            ("orderTime", "2026-12-02 08:15:00".to_string()),
            ("remark", String::new()),
        ] {
            m.insert(k.to_string(), Value::String(v));
        }
        Value::Object(m)
    };
    let bill = |b: usize| {
        let mut m = Map::new();
        for (k, v) in [
            ("recipeNo", format!("CF2026120200{b}")),
            ("recipeType", "检验".to_string()),
            ("deptName", "内科门诊".to_string()),
            ("deptCode", "0101".to_string()),
            ("doctorName", "王医生".to_string()),
            ("doctorCode", "D0042".to_string()),
            ("visitNo", format!("MZ20261202000{b}")),
            ("recipeTime", "2026-12-02 08:10:00".to_string()),
            ("totalAmount", "36.50".to_string()),
            ("selfAmount", "7.30".to_string()),
            ("insuranceAmount", "29.20".to_string()),
        ] {
            m.insert(k.to_string(), Value::String(v));
        }
        m.insert(
            "detail".to_string(),
            Value::Array((0..3).map(|n| item(b, n)).collect()),
        );
        Value::Object(m)
    };
    json!({
        "success": "true",
        "msg": "成功",
        "code": "10001",
        "data": [bill(1), bill(2)],
    })
}

/// `his_answer` as XML elements (unqualified, as a .NET or CXF HIS writes them).
pub fn his_answer_elements() -> String {
    let mut out = String::new();
    prefront::soap::xmljson::json_to_xml(&his_answer(), None, &mut out)
        .expect("the HIS answer maps to XML");
    out
}

/// The response wrapper of a `param = "xml"` answer, as `xml_to_json` gets it.
pub fn his_answer_wrapper(operation: &str) -> String {
    format!(
        "<ns2:{operation}Response xmlns:ns2=\"{HIS_NAMESPACE}\">{}</ns2:{operation}Response>",
        his_answer_elements()
    )
}

/// A SOAP HIS's whole answer with the fields as elements (`param = "xml"`).
pub fn his_answer_xml_envelope(operation: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><soap:Envelope \
         xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body>{}</soap:Body>\
         </soap:Envelope>",
        his_answer_wrapper(operation)
    )
}

/// A SOAP HIS's whole answer with the JSON in `<return>` (`param = "string"`).
pub fn his_answer_string_envelope(operation: &str) -> String {
    prefront::soap::envelope::call_response(
        prefront::config::SoapVersion::V11,
        HIS_NAMESPACE,
        operation,
        &his_answer().to_string(),
        None,
    )
}

/// A HIS answer with PACS and report links for link rewriting: a series list of 16 images on
/// the LAN host, a thumbnail and a report PDF (about 2 KB).
pub fn pacs_answer(lan: &str) -> String {
    let dcms: Vec<String> = (0..16)
        .map(|i| format!("http://{lan}/pacs/wado?studyUID=1.2.840.113619.2.55.3.{i}&type=dcm"))
        .collect();
    json!({
        "success": true,
        "msg": "成功",
        "code": "10001",
        "data": [{
            "reportNo": "CT20261202001",
            "patientName": "张三丰",
            "examName": "胸部CT平扫",
            "type": "url",
            "dcms": dcms,
            "thumbnailUrl": format!("http://{lan}/pacs/thumb/CT20261202001.jpg"),
            "reportUrl": format!("http://{lan}/report/CT20261202001.pdf"),
            "invoiceUrl": "https://einvoice.example.cn/inv/8812"
        }]
    })
    .to_string()
}

/// Escapes text for XML element content.
pub fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
