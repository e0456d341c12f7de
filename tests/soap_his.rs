//! cloud → SOAP HIS: the cloud calls `POST /his/<name>` with JSON; the gateway calls a real SOAP
//! service (spyne with lxml schema validation, `tests/his/spyne_his.py`) and answers with the
//! HIS's JSON. Also the failure shapes a HIS produces: faults, HTML error pages, silence.

#[path = "his/procs.rs"]
mod procs;
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use procs::*;
use serde_json::{json, Value};
use support::*;

/// A spyne HIS process, killed on drop.
struct SpyneHis {
    child: Child,
    port: u16,
}

impl Drop for SpyneHis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the spyne HIS (SOAP `version` "1.1" or "1.2"); `None` when spyne is not installed
/// and this is not CI (CI installs it: see .ci/run).
fn spyne(version: &str) -> Option<SpyneHis> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/his/spyne_his.py");
    let has_spyne = Command::new("python3")
        .args(["-c", "import spyne, lxml"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_spyne {
        assert!(
            std::env::var_os("CI").is_none(),
            "spyne is missing: .ci/run must `pip install spyne lxml`"
        );
        eprintln!("skipping: python3 spyne/lxml not installed (pip install spyne==2.14.0 lxml)");
        return None;
    }
    let mut child = Command::new("python3")
        .args([script, version])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 runs");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("spyne HIS printed its port");
    let port = line.trim().parse().expect("a port number");
    Some(SpyneHis { child, port })
}

fn route(name: &str, url: &str, extra: &str) -> String {
    let timeout = if extra.contains("timeout_ms") {
        ""
    } else {
        "timeout_ms = 5000\n"
    };
    format!("[[his.route]]\nname = \"{name}\"\nkind = \"soap\"\nurl = \"{url}\"\nnamespace = \"http://his.example/\"\n{timeout}{extra}\n")
}

/// The cloud's call of `name` with `body`, which must be answered with HTTP 200.
fn call(gw: &TestGateway, name: &str, body: &Value) -> Call {
    post(format!("{}/his/{name}", gw.cloud_url(false)))
        .body_json(body)
        .expect_status(200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_reaches_a_soap_his_in_every_route_style() {
    let Some(his) = spyne("1.1") else { return };
    let url = format!("http://127.0.0.1:{}/", his.port);
    let cloud = MockUpstream::http().await;
    let extra = [
        // .NET-style defaults: qualified param, SOAPAction <namespace><operation>.
        route("hospital.interface.createCard", &url, ""),
        route("hospital.interface.queryWaitPay", &url, ""),
        // A dispatcher-style HIS: one operation, the function code as an extra argument.
        route(
            "hospital.interface.queryBalance",
            &url,
            "operation = \"Call\"\nparam_name = \"xml\"\nargs = { FuncCode = \"{method}\" }",
        ),
        route(
            "hospital.interface.cardRefund",
            &url,
            "operation = \"fail\"",
        ),
        // A legacy HIS that wants GBK on the wire.
        route(
            "hospital.interface.bindCard",
            &url,
            "operation = \"createCard\"\ncharset = \"gbk\"",
        ),
        // Unqualified children (JAX-WS style) sent to a service that wants them qualified: the
        // HIS's own schema validation refuses it, and the cloud hears a clear 10003.
        route(
            "hospital.interface.updateHisPatientInfo",
            &url,
            "operation = \"createCard\"\nqualified = false",
        ),
    ]
    .concat();
    let gw = spawn_gateway(&basic_config(&cloud.url(), None, None, &extra)).await;

    let card = json!({"hospitalId": "253", "medicalCardNumber": "001000056254587", "name": "张三"});
    let r = call(&gw, "hospital.interface.createCard", &card)
        .send()
        .await;
    let (kind, v) = (r.error_kind(), r.json_or_text());
    assert_eq!(kind, None, "{v}");
    assert_eq!(v["code"], "10001");
    assert_eq!(v["data"]["param"], card, "the HIS got the JSON unchanged");
    assert_eq!(v["data"]["soapAction"], "\"http://his.example/createCard\"");

    let r = call(
        &gw,
        "hospital.interface.queryWaitPay",
        &json!({"medicalCardNumber": "0012"}),
    )
    .send()
    .await;
    let (kind, v) = (r.error_kind(), r.json_or_text());
    assert_eq!(kind, None, "{v}");
    assert_eq!(v["data"][0]["id"], "0012", "leading zero kept");
    assert!(v["data"].is_array());

    let r = call(
        &gw,
        "hospital.interface.queryBalance",
        &json!({"medicalCardNumber": "7"}),
    )
    .send()
    .await;
    let (kind, v) = (r.error_kind(), r.json_or_text());
    assert_eq!(kind, None, "{v}");
    assert_eq!(v["data"]["funcCode"], "queryBalance");
    assert_eq!(v["data"]["param"]["medicalCardNumber"], "7");

    let r = call(
        &gw,
        "hospital.interface.cardRefund",
        &json!({"refundNo": "R1"}),
    )
    .send()
    .await;
    let (kind, v) = (r.error_kind(), r.json_or_text());
    assert_eq!(kind, Some("upstream-soap-fault"));
    assert_eq!(v["code"], "10003");
    // The cloud is told it was a SOAP fault; the fault's own text stays on the LAN.
    let msg = v["msg"].as_str().unwrap_or_default();
    assert!(
        msg.contains("SOAP fault") && !msg.contains("HIS database offline"),
        "{v}"
    );

    let r = call(&gw, "hospital.interface.bindCard", &card).send().await;
    let (kind, v) = (r.error_kind(), r.json_or_text());
    assert_eq!(kind, None, "{v}");
    assert_eq!(
        v["data"]["param"]["name"], "张三",
        "GBK on the wire, intact both ways"
    );

    let r = call(&gw, "hospital.interface.updateHisPatientInfo", &card)
        .send()
        .await;
    let (kind, v) = (r.error_kind(), r.json_or_text());
    // A fault whose text names the HIS's parameter: the kind reaches the cloud, the text not.
    assert_eq!(kind, Some("upstream-soap-fault"), "{v}");
    assert!(
        v["msg"]
            .as_str()
            .is_some_and(|m| m.contains("SOAP fault") && !m.contains("param")),
        "{v}"
    );
    assert_eq!(cloud.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soap_12_his() {
    let Some(his) = spyne("1.2") else { return };
    let url = format!("http://127.0.0.1:{}/", his.port);
    let cloud = MockUpstream::http().await;
    let extra = route(
        "hospital.interface.createCard",
        &url,
        "soap_version = \"1.2\"",
    );
    let gw = spawn_gateway(&basic_config(&cloud.url(), None, None, &extra)).await;
    let r = call(&gw, "hospital.interface.createCard", &json!({"a": "1"}))
        .send()
        .await;
    let (kind, v) = (r.error_kind(), r.json_or_text());
    assert_eq!(kind, None, "{v}");
    assert_eq!(v["data"]["param"], json!({"a": "1"}));
    // SOAP 1.2 carries the action in the Content-Type.
    let ct = v["data"]["soapAction"].as_str().unwrap_or_default();
    assert!(
        ct.starts_with("application/soap+xml")
            && ct.contains("action=\"http://his.example/createCard\""),
        "{ct}"
    );
}

#[tokio::test]
async fn broken_his_answers_become_10003_not_crashes() {
    let his = MockUpstream::http().await;
    his.respond(
        "/html",
        500,
        "<html><body>Internal Server Error</body></html>",
    );
    his.respond("/text", 200, "OK");
    his.respond(
        "/notjson",
        200,
        "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body><r><return>not json</return></r></s:Body></s:Envelope>",
    );
    his.respond(
        "/doctype",
        200,
        "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY a SYSTEM \"file:///etc/passwd\">]><s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body><r><return>&a;</return></r></s:Body></s:Envelope>",
    );
    let slow = MockUpstream::http().await;
    slow.set_delay(Duration::from_secs(3));
    let base = his.url();
    let extra = [
        route("hospital.interface.createCard", &format!("{base}/html"), ""),
        route(
            "hospital.interface.queryBalance",
            &format!("{base}/text"),
            "",
        ),
        route(
            "hospital.interface.queryWaitPay",
            &format!("{base}/notjson"),
            "",
        ),
        route(
            "hospital.interface.bindCard",
            &format!("{base}/doctype"),
            "",
        ),
        route(
            "hospital.interface.cardRefund",
            &slow.url(),
            "timeout_ms = 300",
        ),
    ]
    .concat();
    let gw = spawn_gateway(&basic_config("http://127.0.0.1:9", None, None, &extra)).await;
    let cases = [
        ("hospital.interface.createCard", "upstream-status"),
        ("hospital.interface.queryBalance", "upstream-invalid-answer"),
        ("hospital.interface.queryWaitPay", "upstream-invalid-answer"),
        ("hospital.interface.bindCard", "upstream-invalid-answer"),
        ("hospital.interface.cardRefund", "upstream-timeout"),
    ];
    for (name, expected) in cases {
        let r = call(&gw, name, &json!({"a": "1"})).send().await;
        let (kind, v) = (r.error_kind(), r.json_or_text());
        assert_eq!(kind, Some(expected), "{name}: {v}");
        assert_eq!(v["code"], "10003", "{name}");
        assert_no_lan_text(name, &v);
    }
    // The request the HIS got is a proper SOAP 1.1 call.
    let r = &his.requests()[0];
    assert!(r
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/xml")));
    assert_eq!(
        r.header("soapaction"),
        Some("\"http://his.example/createCard\"")
    );
    assert!(
        r.body_text().contains(
            "<tns:createCard><tns:param>{&quot;a&quot;:&quot;1&quot;}</tns:param></tns:createCard>"
        ) || r
            .body_text()
            .contains("<tns:createCard><tns:param>{\"a\":\"1\"}</tns:param></tns:createCard>"),
        "{}",
        r.body_text()
    );
}

#[tokio::test]
async fn xml_param_route_maps_json_to_elements_and_back_without_guessing() {
    let his = MockUpstream::http().await;
    his.respond_default(
        200,
        r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><queryWaitPayResponse xmlns="http://his.example/"><success>true</success><msg/><code>10001</code><data><id>0012</id><detail><itemName>血常规 &amp; 尿常规</itemName><amount>12.50</amount></detail></data></queryWaitPayResponse></soap:Body></soap:Envelope>"#,
    );
    let extra = route(
        "hospital.interface.queryWaitPay",
        &his.url(),
        "param = \"xml\"\narrays = [\"data\", \"data.detail\"]",
    );
    let gw = spawn_gateway(&basic_config("http://127.0.0.1:9", None, None, &extra)).await;
    let req = json!({"hospitalId": "253", "medicalCardNumber": "0012", "items": ["a", "b"]});
    let r = call(&gw, "hospital.interface.queryWaitPay", &req)
        .send()
        .await;
    let (kind, v) = (r.error_kind(), r.json_or_text());
    assert_eq!(kind, None, "{v}");
    // One-element lists stay lists (hinted), digit strings stay strings, leading zeros stay.
    assert_eq!(
        v,
        json!({"success": "true", "msg": "", "code": "10001",
               "data": [{"id": "0012", "detail": [{"itemName": "血常规 & 尿常规", "amount": "12.50"}]}]})
    );
    let sent = his.requests()[0].body_text();
    assert!(
        sent.contains("<tns:queryWaitPay><tns:hospitalId>253</tns:hospitalId><tns:medicalCardNumber>0012</tns:medicalCardNumber><tns:items>a</tns:items><tns:items>b</tns:items></tns:queryWaitPay>"),
        "{sent}"
    );
}

/// `param = "xml"` answers are judged like string answers: a Fault is a fault whatever the
/// status, a non-2xx status without one is `upstream-status`, and a wrapper that is not
/// well-formed XML (or a DOCTYPE, or no envelope at all) is an invalid answer. Each becomes
/// 10003, with nothing of the HIS's text echoed.
#[tokio::test]
async fn broken_xml_param_answers_become_10003_not_crashes() {
    const ENV: &str = "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body>";
    const END: &str = "</s:Body></s:Envelope>";
    let his = MockUpstream::http().await;
    his.respond(
        "/fault",
        500,
        &format!("{ENV}<s:Fault><faultcode>s:Server</faultcode><faultstring>no such patient</faultstring></s:Fault>{END}"),
    );
    his.respond(
        "/html",
        500,
        "<html><body>Internal Server Error</body></html>",
    );
    his.respond(
        "/wrapper500",
        503,
        &format!("{ENV}<rResponse><code>0</code></rResponse>{END}"),
    );
    his.respond(
        "/broken",
        200,
        &format!("{ENV}<rResponse><code>0</cod></rResponse>{END}"),
    );
    his.respond(
        "/tail",
        200,
        &format!("{ENV}<rResponse><code>0</code></rResponse>{END}<extra/>"),
    );
    his.respond(
        "/doctype",
        200,
        &format!("<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY a SYSTEM \"file:///etc/passwd\">]>{ENV}<rResponse><code>&a;</code></rResponse>{END}"),
    );
    let base = his.url();
    let cases = [
        (
            "hospital.interface.createCard",
            "fault",
            "upstream-soap-fault",
        ),
        ("hospital.interface.queryBalance", "html", "upstream-status"),
        (
            "hospital.interface.queryWaitPay",
            "wrapper500",
            "upstream-status",
        ),
        (
            "hospital.interface.bindCard",
            "broken",
            "upstream-invalid-answer",
        ),
        (
            "hospital.interface.cardRefund",
            "tail",
            "upstream-invalid-answer",
        ),
        (
            "hospital.interface.getPatientInfo",
            "doctype",
            "upstream-invalid-answer",
        ),
    ];
    let extra: String = cases
        .iter()
        .map(|(name, path, _)| route(name, &format!("{base}/{path}"), "param = \"xml\""))
        .collect();
    let gw = spawn_gateway(&basic_config("http://127.0.0.1:9", None, None, &extra)).await;
    for (name, _, expected) in cases {
        let r = call(&gw, name, &json!({"a": "1"})).send().await;
        let (kind, v) = (r.error_kind(), r.json_or_text());
        assert_eq!(kind, Some(expected), "{name}: {v}");
        assert_eq!(v["code"], "10003", "{name}");
        assert_no_lan_text(name, &v);
    }
    assert_eq!(
        his.requests().len(),
        cases.len(),
        "one call each, no retries"
    );
}

/// LAN text stays on the LAN: a 10003's `msg` says what kind of failure it was, never what the
/// HIS said (a fault's text, an error page, a file it was made to read).
fn assert_no_lan_text(name: &str, v: &serde_json::Value) {
    let msg = v["msg"].as_str().unwrap_or_default();
    for lan in [
        "passwd",
        "no such patient",
        "Internal Server Error",
        "<html",
    ] {
        assert!(!msg.contains(lan), "{name}: {v}");
    }
}

/// A .NET asmx whose namespace has no trailing `/` (DESIGN.md §2): the default SOAPAction is
/// .NET's (`ns/operation`), the elements keep the namespace exactly; and an Axis 1.4 HIS that
/// writes 𠮷 (U+20BB7) as a surrogate pair is read as the one character, in both `param`
/// styles, while a lone surrogate is still an invalid answer.
#[tokio::test]
async fn dot_net_soap_action_and_axis_surrogate_pairs() {
    let ns = "http://his.example.cn/ws";
    let answer = |ret: &str| {
        format!(
            "<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body><ns1:createCardResponse xmlns:ns1=\"{ns}\"><return>{ret}</return></ns1:createCardResponse></soap:Body></soap:Envelope>"
        )
    };
    let his = MockUpstream::http().await;
    his.respond(
        "/pair",
        200,
        &answer("{&quot;success&quot;:true,&quot;patientName&quot;:&quot;&#xD842;&#xDFB7;&#20013;&quot;}"),
    );
    his.respond(
        "/lone",
        200,
        &answer("{&quot;patientName&quot;:&quot;&#xD842;x&quot;}"),
    );
    his.respond(
        "/xml",
        200,
        &format!(
            "<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body><r xmlns=\"{ns}\"><success>true</success><name>&#55362;&#57271;</name></r></soap:Body></soap:Envelope>"
        ),
    );
    let base = his.url();
    let r = |name: &str, path: &str, extra: &str| {
        format!("[[his.route]]\nname = \"{name}\"\nkind = \"soap\"\nurl = \"{base}{path}\"\nnamespace = \"{ns}\"\ntimeout_ms = 5000\n{extra}\n")
    };
    let extra = [
        r("hospital.interface.createCard", "/pair", ""),
        r("hospital.interface.bindCard", "/lone", ""),
        r("hospital.interface.queryWaitPay", "/xml", "param = \"xml\""),
    ]
    .concat();
    let gw = spawn_gateway(&basic_config("http://127.0.0.1:9", None, None, &extra)).await;

    let got = call(&gw, "hospital.interface.createCard", &json!({"a": "1"}))
        .send()
        .await;
    let (kind, v) = (got.error_kind(), got.json_or_text());
    assert_eq!(kind, None, "{v}");
    assert_eq!(v["patientName"], "𠮷中", "{v}");
    let sent = &his.requests()[0];
    assert_eq!(
        sent.header("soapaction"),
        Some("\"http://his.example.cn/ws/createCard\""),
        ".NET's default for a namespace without a trailing `/`"
    );
    assert!(
        sent.body_text().contains(&format!("xmlns:tns=\"{ns}\"")),
        "the element namespace stays exactly as configured: {}",
        sent.body_text()
    );

    let xml = call(&gw, "hospital.interface.queryWaitPay", &json!({"a": "1"}))
        .send()
        .await;
    let (kind, v) = (xml.error_kind(), xml.json_or_text());
    assert_eq!(kind, None, "{v}");
    assert_eq!(v["name"], "𠮷", "{v}");

    let lone = call(&gw, "hospital.interface.bindCard", &json!({"a": "1"}))
        .send()
        .await;
    let (kind, v) = (lone.error_kind(), lone.json_or_text());
    assert_eq!(kind, Some("upstream-invalid-answer"), "{v}");
    assert_eq!(v["code"], "10003");
}

// ---------------------------------------------------------------------------
// Real HIS toolkits (issue 19): PHP SoapServer, an Axis 1.4 service, a Mono asmx
// ---------------------------------------------------------------------------

/// What the cloud sends each toolkit HIS: Chinese text with 𠮷 (U+20BB7, outside the BMP) and
/// the characters XML must escape.
const HIS_BODY: &str = r#"{"hospitalId":"253","medicalCardNumber":"001000056254587","name":"𠮷野 张三","remark":"a<b & c>\"d\""}"#;

/// The name every toolkit HIS puts in its answer.
const HIS_ANSWER_NAME: &str = "𠮷野 张三";

/// A gateway with `routes` (and a cloud it must never call).
async fn toolkit_gateway(routes: &str) -> (MockUpstream, TestGateway) {
    let cloud = MockUpstream::http().await;
    let gw = spawn_gateway(&basic_config(&cloud.url(), None, None, routes)).await;
    (cloud, gw)
}

/// The cloud calls `name` with [`HIS_BODY`] through `gw`: the toolkit HIS got exactly that JSON
/// text, and its answer (with 𠮷) reached the cloud intact. Returns the answer's `data`.
async fn cloud_calls_toolkit_his(his: &HisServer, gw: &TestGateway, name: &str) -> Value {
    let toolkit = his.name();
    let r = post(format!("{}/his/{name}", gw.cloud_url(false)))
        .body(HIS_BODY)
        .json_type()
        .expect_status(200)
        .send()
        .await;
    let (kind, v) = (r.error_kind(), r.json_or_text());
    assert_eq!(kind, None, "{toolkit}: {v}\n--- its log:\n{}", his.log());
    println!("{toolkit}: the cloud sent {HIS_BODY}\n{toolkit}: the cloud got {v}");
    assert_eq!(v["code"], "10001", "{toolkit}: {v}");
    assert_eq!(
        v["data"]["param"].as_str(),
        Some(HIS_BODY),
        "{toolkit}: the HIS got exactly the cloud's JSON"
    );
    assert_eq!(
        v["data"]["patientName"], HIS_ANSWER_NAME,
        "{toolkit}: the HIS's answer came back intact"
    );
    v["data"].clone()
}

fn toolkit_route(name: &str, url: &str, namespace: &str, extra: &str) -> String {
    format!("[[his.route]]\nname = \"{name}\"\nkind = \"soap\"\nurl = \"{url}\"\nnamespace = \"{namespace}\"\ntimeout_ms = 8000\n{extra}\n")
}

/// PHP's ext/soap `SoapServer` (WSDL mode, `tests/his/php/his.php`) under `php -S`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn php_soapserver_his() {
    let mut missing = Vec::new();
    if !runs_ok("php", &["-r", "exit(class_exists('SoapServer') ? 0 : 1);"]) {
        missing.push("php with ext/soap (SoapServer) does not run".to_string());
    }
    let install = "apt-get install -y --no-install-recommends php-cli php-soap";
    if !toolkit_here("PHP SoapServer", missing, install) {
        return;
    }
    let tmp = TempDir::new("prefront-php-his");
    let port = free_port();
    let mut php = Command::new("php");
    php.arg("-S").arg(format!("127.0.0.1:{port}")).arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/his/php/his.php"
    ));
    let his = HisServer::start(
        "PHP SoapServer",
        php,
        &[port],
        &tmp.path().join("php.log"),
        Duration::from_secs(20),
    );
    let ns = "http://his.example.cn/php/";
    let name = "hospital.interface.createCard";
    let routes = toolkit_route(name, &format!("http://127.0.0.1:{port}/his"), ns, "");
    let (cloud, gw) = toolkit_gateway(&routes).await;
    let data = cloud_calls_toolkit_his(&his, &gw, name).await;
    assert_eq!(cloud.request_count(), 0);
    assert_eq!(data["soapAction"], format!("\"{ns}createCard\""));
    assert!(
        data["toolkit"]
            .as_str()
            .is_some_and(|t| t.starts_with("PHP 8.")),
        "{data}"
    );
}

/// Axis 1.4 and what it needs at run time (Debian `libaxis-java`).
const AXIS_JARS: &[&str] = &[
    "/usr/share/java/axis.jar",
    "/usr/share/java/axis-jaxrpc.jar",
    "/usr/share/java/axis-saaj.jar",
    "/usr/share/java/wsdl4j.jar",
    "/usr/share/java/commons-discovery.jar",
    "/usr/share/java/commons-logging.jar",
];

/// An Axis 1.4 service (`tests/his/axis1`, Axis's default rpc/encoded RPC provider) in
/// `SimpleAxisServer`, configured as its own WSDL says: unqualified parts, `soapAction=""`. Its
/// answer writes 𠮷 as a surrogate pair of references, which the box reads as the one character.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axis1_simpleaxisserver_his() {
    let mut missing: Vec<String> = AXIS_JARS
        .iter()
        .filter(|j| !std::path::Path::new(j).exists())
        .map(|j| format!("{j} missing"))
        .collect();
    for tool in ["java", "javac"] {
        if !runs_ok(tool, &["-version"]) {
            missing.push(format!("`{tool} -version` fails"));
        }
    }
    let install = "apt-get install -y --no-install-recommends libaxis-java openjdk-17-jdk-headless";
    if !toolkit_here("Axis 1.4 SimpleAxisServer", missing, install) {
        return;
    }
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/his/axis1");
    let tmp = TempDir::new("prefront-axis1-his");
    let classes = tmp.path().join("classes");
    std::fs::create_dir_all(&classes).expect("mkdir classes");
    let axis_cp = AXIS_JARS.join(":");
    // Java 8 class files: Axis 1.4 reads parameter names from the bytecode and cannot parse
    // what javac 17 writes for string concatenation (invokedynamic constants).
    let mut javac = Command::new("javac");
    javac
        .args(["--release", "8", "-g", "-nowarn", "-encoding", "UTF-8"])
        .args(["-cp", &axis_cp, "-d"])
        .arg(&classes)
        .arg(format!("{src}/HisService.java"));
    run_step(
        "javac HisService.java",
        javac,
        &tmp.path().join("javac.log"),
        Duration::from_secs(120),
    );
    std::fs::copy(
        format!("{src}/server-config.wsdd"),
        tmp.path().join("server-config.wsdd"),
    )
    .expect("copy server-config.wsdd");
    let port = free_port();
    let mut java = Command::new("java");
    java.current_dir(tmp.path())
        .arg("-cp")
        .arg(format!("{}:{axis_cp}", classes.display()))
        .args(["org.apache.axis.transport.http.SimpleAxisServer", "-p"])
        .arg(port.to_string());
    let his = HisServer::start(
        "Axis 1.4 SimpleAxisServer",
        java,
        &[port],
        &tmp.path().join("axis.log"),
        Duration::from_secs(60),
    );
    let url = format!("http://127.0.0.1:{port}/axis/services/HisService");
    let wsdl = get(format!("{url}?wsdl"))
        .expect_status(200)
        .send()
        .await
        .text();
    assert!(
        wsdl.contains("style=\"rpc\"") && wsdl.contains("soapAction=\"\""),
        "Axis publishes an rpc/encoded service with soapAction=\"\": {wsdl}"
    );
    // What Axis writes for 𠮷 (U+20BB7): a pair of surrogate references, not well-formed XML.
    let raw = post(&url)
        .header("SOAPAction", "\"\"")
        .content_type("text/xml; charset=utf-8")
        .body("<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body><createCard xmlns=\"http://his.example.cn/axis\"><param xmlns=\"\">{}</param></createCard></s:Body></s:Envelope>")
        .expect_status(200)
        .send()
        .await
        .text();
    assert!(raw.contains("&#xD842;&#xDFB7;"), "{raw}");
    println!("Axis 1.4 answers 𠮷 as &#xD842;&#xDFB7;");

    let name = "hospital.interface.createCard";
    let routes = toolkit_route(
        name,
        &url,
        "http://his.example.cn/axis",
        "qualified = false\nsoap_action = \"\"",
    );
    let (cloud, gw) = toolkit_gateway(&routes).await;
    let data = cloud_calls_toolkit_his(&his, &gw, name).await;
    assert_eq!(cloud.request_count(), 0);
    assert_eq!(data["soapAction"], "", "{data}");
    assert_eq!(data["toolkit"], "Apache Axis 1.4", "{data}");
}

/// A .NET asmx (`tests/his/asmx/His.asmx`, Mono's ASP.NET in `fastcgi-mono-server4` behind
/// nginx) whose namespace has no trailing `/`: the route's default SOAPAction is .NET's own
/// (`http://his.example.cn/ws/createCard`), in SOAP 1.1 and 1.2; the SOAPAction the box sent
/// before issue 19 (`…/wscreateCard`) is refused by the asmx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mono_asmx_his_namespace_without_trailing_slash() {
    const FASTCGI: &str = "/usr/lib/mono/4.5/fastcgi-mono-server4.exe";
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let mut missing = Vec::new();
    if !runs_ok("mono", &["--version"]) {
        missing.push("`mono --version` fails".to_string());
    }
    if !std::path::Path::new(FASTCGI).exists() {
        missing.push(format!("{FASTCGI} missing"));
    }
    if nginx.is_none() {
        missing.push("nginx missing".to_string());
    }
    let install =
        "apt-get install -y --no-install-recommends mono-devel mono-fastcgi-server4 nginx-light";
    if !toolkit_here(".NET asmx (Mono)", missing, install) {
        return;
    }
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/his/asmx");
    let tmp = TempDir::new("prefront-asmx-his");
    let dir = tmp.path();
    for sub in ["app", "tmp", "aspnet"] {
        std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
    }
    for f in ["His.asmx", "web.config"] {
        std::fs::copy(format!("{src}/{f}"), dir.join("app").join(f)).expect("copy the asmx app");
    }
    let (port, fcgi_port) = (free_port(), free_port());
    let conf = std::fs::read_to_string(format!("{src}/nginx.conf"))
        .expect("nginx.conf template")
        .replace("@DIR@", &dir.display().to_string())
        .replace("@FCGI_PORT@", &fcgi_port.to_string())
        .replace("@PORT@", &port.to_string());
    std::fs::write(dir.join("nginx.conf"), conf).expect("write nginx.conf");

    let mut fcgi = Command::new("mono");
    fcgi.env("TMPDIR", dir.join("aspnet"))
        .arg(FASTCGI)
        .arg(format!("/applications=/:{}", dir.join("app").display()))
        .arg(format!("/socket=tcp:127.0.0.1:{fcgi_port}"))
        .arg("/printlog");
    let asmx = HisServer::start(
        ".NET asmx (Mono fastcgi-mono-server4)",
        fcgi,
        &[fcgi_port],
        &dir.join("fastcgi.log"),
        Duration::from_secs(60),
    );
    let mut ngx = Command::new(nginx.expect("checked above"));
    ngx.arg("-e")
        .arg(dir.join("nginx-error.log"))
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .args(["-g", "daemon off;"]);
    let _nginx = HisServer::start(
        "nginx",
        ngx,
        &[port],
        &dir.join("nginx.log"),
        Duration::from_secs(20),
    );

    // The first request compiles the asmx: bounded, and it shows what .NET publishes.
    let url = format!("http://127.0.0.1:{port}/His.asmx");
    let wsdl = get(format!("{url}?wsdl"))
        .timeout(Duration::from_secs(90))
        .send()
        .await;
    assert_eq!(
        wsdl.status,
        200,
        "{}\n--- log:\n{}",
        wsdl.text(),
        asmx.log()
    );
    let wsdl = wsdl.text();
    assert!(
        wsdl.contains("soapAction=\"http://his.example.cn/ws/createCard\"")
            && wsdl.contains("elementFormDefault=\"qualified\""),
        "{wsdl}"
    );
    println!("the asmx publishes soapAction=\"http://his.example.cn/ws/createCard\"");

    let ns = "http://his.example.cn/ws";
    let routes = [
        toolkit_route("hospital.interface.createCard", &url, ns, ""),
        toolkit_route(
            "hospital.interface.queryWaitPay",
            &url,
            ns,
            "operation = \"createCard\"\nsoap_version = \"1.2\"",
        ),
        // The rule before issue 19: namespace + operation with no `/` between.
        toolkit_route(
            "hospital.interface.bindCard",
            &url,
            ns,
            "operation = \"createCard\"\nsoap_action = \"{namespace}{operation}\"",
        ),
    ]
    .concat();
    let (cloud, gw) = toolkit_gateway(&routes).await;
    let data = cloud_calls_toolkit_his(&asmx, &gw, "hospital.interface.createCard").await;
    assert_eq!(data["soapAction"], format!("\"{ns}/createCard\""), "{data}");
    assert!(
        data["toolkit"]
            .as_str()
            .is_some_and(|t| t.starts_with("Mono 6.")),
        "{data}"
    );
    // SOAP 1.2: the action travels in the Content-Type (no SOAPAction header).
    let data = cloud_calls_toolkit_his(&asmx, &gw, "hospital.interface.queryWaitPay").await;
    assert_eq!(data["soapAction"], Value::Null, "{data}");

    let r = call(&gw, "hospital.interface.bindCard", &json!({"a": "1"}))
        .send()
        .await;
    let (kind, v) = (r.error_kind(), r.json_or_text());
    assert_eq!(
        kind,
        Some("upstream-soap-fault"),
        "the asmx refuses SOAPAction {ns}createCard: {v}"
    );
    assert_eq!(cloud.request_count(), 0);
}
