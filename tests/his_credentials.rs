//! Credentials towards the HIS (DESIGN.md §9), with the real binary on loopback:
//! `basic_auth_file`, `bearer_token_file` and `headers` on `[his]`, on a `[[his.route]]` (a SOAP
//! one, overriding `[his]`'s credentials) and on a `[[hospital]]`'s `his`; the HIS mocks record
//! what they were sent. The password and token never show in the gateway's log (at `debug`),
//! in `check` or in `/status`; `check` refuses both files at once, a malformed file and a
//! header the box sets itself, and warns about a file others may read.

#[allow(unused_imports)] // the binary, not the in-process gateway
mod support;

use std::path::{Path, PathBuf};

use prefront::sim::Answer;
use serde_json::json;
use support::*;

const CARD: &str = "hospital.interface.createCard";
const DEPOSIT: &str = "hospital.interface.getDepositRecord";

const PASSWORD: &str = "pa55-SECRET-basic";
const TOKEN: &str = "TOKEN-SECRET-bearer-4711";
const TOKEN_253: &str = "TOKEN-SECRET-hospital-253";
/// base64("his-user:pa55-SECRET-basic")
const BASIC: &str = "Basic aGlzLXVzZXI6cGE1NS1TRUNSRVQtYmFzaWM=";

/// Writes `text` to `dir/name` with `mode`.
fn secret_file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write the secret file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    path
}

fn check(config: &Path) -> Run {
    run_prefront(
        &["check", "--config", config.to_str().expect("UTF-8 path")],
        None,
    )
}

async fn call(bin: &RunningBinary, name: &str, body: &str) -> Reply {
    post(format!("{}/his/{name}", bin.cloud_url()))
        .content_type("application/json")
        .body(body.to_string())
        .send()
        .await
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in [PASSWORD, TOKEN, TOKEN_253, BASIC, "aGlzLXVzZXI6"] {
        assert!(
            !text.contains(secret),
            "{what} shows a secret ({secret}):\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_his_gets_basic_bearer_and_fixed_headers_and_no_log_shows_them() {
    let dir = TempDir::new("prefront-his-credentials");
    let own = MockUpstream::http().await;
    let soap = MockUpstream::http().await;
    let his_253 = MockUpstream::http().await;
    let cloud = MockUpstream::http().await;
    own.echo();
    his_253.echo();
    soap.answer_default(Answer::Soap { json: None });

    let basic = secret_file(
        dir.path(),
        "his.basic",
        &format!("his-user:{PASSWORD}\n"),
        0o600,
    );
    let token = secret_file(dir.path(), "his.token", &format!("{TOKEN}\n"), 0o600);
    let token_253 = secret_file(dir.path(), "his253.token", TOKEN_253, 0o600);
    let extra = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [[his.route]]\nname = \"{DEPOSIT}\"\nkind = \"soap\"\nurl = \"{}/HisService.asmx\"\n\
         bearer_token_file = {:?}\n\n\
         [[hospital]]\nid = \"253\"\n\
         his = {{ kind = \"http\", url = \"{}/his/{{name}}\", bearer_token_file = {:?}, \
         headers = {{ \"X-Hospital\" = \"253\" }} }}\n\n\
         [[hospital.route]]\nname = \"{DEPOSIT}\"\nurl = \"{}/deposit/{{method}}\"\n",
        soap.url(),
        token.display().to_string(),
        his_253.url(),
        token_253.display().to_string(),
        his_253.url(),
    );
    let his = format!("{}/his/{{name}}", own.url());
    let config = ConfigToml::basic(&cloud.url(), None, Some(&his), &extra)
        .set("his.basic_auth_file", basic.display().to_string())
        .set("his.headers.X-Caller", "prefront")
        .set("his.headers.X-Site", "dmz-1")
        .set("log.level", "debug")
        .set_path("buffer.path", &dir.path().join("buffer"))
        .write(&dir.path().join("prefront.toml"));

    let run = check(&config);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_no_secret("check", &run.all());
    assert!(
        !run.all().contains("readable by group"),
        "0600 files draw no warning: {run:?}"
    );

    let bin = RunningBinary::start(&config);

    // [his], plain HTTP: basic auth and the fixed headers.
    let r = call(&bin, CARD, &json!({"patientName": "张三"}).to_string()).await;
    assert_eq!((r.status, r.error_kind()), (200, None), "{}", r.text());
    let reqs = own.requests();
    let req = reqs.last().expect("[his] got the call");
    assert_eq!(req.header("authorization"), Some(BASIC));
    assert_eq!(req.header("x-caller"), Some("prefront"));
    assert_eq!(req.header("x-site"), Some("dmz-1"));
    assert_eq!(req.header_all("authorization").len(), 1);

    // The SOAP [[his.route]]: its own bearer token replaces [his]'s basic auth; the headers
    // it leaves out are [his]'s.
    let r = call(&bin, DEPOSIT, &json!({"inpatientNo": "Z1"}).to_string()).await;
    assert_eq!((r.status, r.error_kind()), (200, None), "{}", r.text());
    let reqs = soap.requests();
    let req = reqs.last().expect("the SOAP HIS got the call");
    assert!(req.header("soapaction").is_some(), "a SOAP call");
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(req.header("x-caller"), Some("prefront"));

    // Hospital 253's own HIS: its own token and headers, nothing of [his]'s.
    let r = call(&bin, CARD, &json!({"hospitalId": "253"}).to_string()).await;
    assert_eq!((r.status, r.error_kind()), (200, None), "{}", r.text());
    let reqs = his_253.requests();
    let req = reqs.last().expect("hospital 253's HIS got the call");
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {TOKEN_253}").as_str())
    );
    assert_eq!(req.header("x-hospital"), Some("253"));
    assert_eq!(req.header("x-caller"), None);
    // Its [[hospital.route]] sets none of the keys: it inherits them from the hospital's his.
    let r = call(&bin, DEPOSIT, &json!({"hospitalId": 253}).to_string()).await;
    assert_eq!((r.status, r.error_kind()), (200, None), "{}", r.text());
    let reqs = his_253.requests();
    let req = reqs.last().expect("hospital 253's HIS got the call");
    assert_eq!(req.path, "/deposit/getDepositRecord");
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {TOKEN_253}").as_str())
    );
    assert_eq!(req.header("x-hospital"), Some("253"));
    assert_eq!(own.request_count(), 1);
    assert_eq!(soap.request_count(), 1);

    let status = plain_client()
        .get(bin.admin_url("/status"))
        .send()
        .await
        .expect("/status answers");
    assert_eq!(status.status(), 200);
    assert_no_secret("/status", &status.text().await.expect("a body"));

    // SIGHUP: a changed token file is read again.
    std::fs::write(&token, "TOKEN-rotated-0815\n").expect("rotate the token");
    bin.reload();
    let r = call(&bin, DEPOSIT, &json!({"inpatientNo": "Z2"}).to_string()).await;
    assert_eq!((r.status, r.error_kind()), (200, None), "{}", r.text());
    let reqs = soap.requests();
    assert_eq!(
        reqs.last().and_then(|r| r.header("authorization")),
        Some("Bearer TOKEN-rotated-0815")
    );

    let (_, log) = bin.terminate();
    let log = log.join("\n");
    assert!(
        log.contains("DEBUG") || log.contains("debug"),
        "the log is at debug"
    );
    assert_no_secret("the gateway's log", &log);
    assert!(!log.contains("TOKEN-rotated"), "{log}");

    // `doctor` probes each HIS with the credentials its routes send, and shows none of them.
    let (own_before, soap_before, before_253) = (
        own.request_count(),
        soap.request_count(),
        his_253.request_count(),
    );
    let doctor = run_prefront(
        &["doctor", "--config", config.to_str().expect("UTF-8 path")],
        None,
    );
    assert_no_secret("doctor", &doctor.all());
    assert!(!doctor.all().contains("TOKEN-rotated"), "{doctor:?}");
    let probes = own.requests();
    assert!(probes.len() > own_before, "doctor probed [his]: {doctor:?}");
    assert!(
        probes[own_before..]
            .iter()
            .all(|r| r.header("authorization") == Some(BASIC)),
        "{probes:?}"
    );
    let probes = soap.requests();
    let wsdl = probes[soap_before..]
        .iter()
        .find(|r| r.method == "GET")
        .unwrap_or_else(|| panic!("doctor asked for the WSDL: {doctor:?}"));
    assert_eq!(
        wsdl.header("authorization"),
        Some("Bearer TOKEN-rotated-0815")
    );
    assert_eq!(wsdl.header("x-caller"), Some("prefront"));
    let probes = his_253.requests();
    assert!(
        probes.len() > before_253,
        "doctor probed hospital 253: {doctor:?}"
    );
    let bearer_253 = format!("Bearer {TOKEN_253}");
    assert!(
        probes[before_253..]
            .iter()
            .all(|r| r.header("authorization") == Some(bearer_253.as_str())),
        "{probes:?}"
    );
}

/// `check` on a config whose `[his]` carries `snippet`.
fn check_his(dir: &Path, name: &str, snippet: &str) -> Run {
    let text = basic_config(
        "http://127.0.0.1:9/",
        None,
        Some("http://127.0.0.1:9/his/{name}"),
        "",
    )
    .replace(
        "timeout_ms = 5000\n\n[log]",
        &format!("timeout_ms = 5000\n{snippet}\n[log]"),
    );
    assert!(text.contains(snippet), "the snippet went into [his]");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write the config");
    check(&path)
}

#[test]
fn check_refuses_bad_credentials_and_warns_about_open_files() {
    let dir = TempDir::new("prefront-his-credentials-check");
    let d = dir.path();
    let basic = secret_file(d, "ok.basic", &format!("his-user:{PASSWORD}\n"), 0o600);
    let token = secret_file(d, "ok.token", TOKEN, 0o600);

    let both = check_his(
        d,
        "both.toml",
        &format!(
            "basic_auth_file = {:?}\nbearer_token_file = {:?}\n",
            basic.display().to_string(),
            token.display().to_string()
        ),
    );
    assert_ne!(both.code, Some(0), "{both:?}");
    assert!(both.all().contains("not both"), "{both:?}");
    assert!(both.all().contains("his.bearer_token_file"), "{both:?}");

    for (file, text) in [
        ("nocolon.basic", format!("his-user{PASSWORD}\n")),
        (
            "twolines.basic",
            format!("his-user:{PASSWORD}\nother:line\n"),
        ),
        ("nouser.basic", format!(":{PASSWORD}\n")),
    ] {
        let f = secret_file(d, file, &text, 0o600);
        let run = check_his(
            d,
            &format!("{file}.toml"),
            &format!("basic_auth_file = {:?}\n", f.display().to_string()),
        );
        assert_ne!(run.code, Some(0), "{file}: {run:?}");
        assert!(run.all().contains("his.basic_auth_file"), "{file}: {run:?}");
        assert!(run.all().contains("line"), "{file}: {run:?}");
        assert_no_secret(file, &run.all());
    }
    let spaced = secret_file(d, "spaced.token", "TOKEN-SECRET-bearer 4711\n", 0o600);
    let run = check_his(
        d,
        "spaced.toml",
        &format!("bearer_token_file = {:?}\n", spaced.display().to_string()),
    );
    assert_ne!(run.code, Some(0), "{run:?}");
    assert!(run.all().contains("his.bearer_token_file"), "{run:?}");
    assert!(!run.all().contains("bearer 4711"), "{run:?}");
    let missing = check_his(d, "missing.toml", "bearer_token_file = \"nowhere.token\"\n");
    assert_ne!(missing.code, Some(0), "{missing:?}");
    assert!(
        missing.all().contains("his.bearer_token_file"),
        "{missing:?}"
    );

    for name in [
        "Authorization",
        "SOAPAction",
        "Host",
        "x-request-id",
        "Content-Type",
    ] {
        let run = check_his(
            d,
            "header.toml",
            &format!("headers = {{ {name:?} = \"x\" }}\n"),
        );
        assert_ne!(run.code, Some(0), "{name}: {run:?}");
        assert!(run.all().contains("his.headers"), "{name}: {run:?}");
        assert!(
            run.all().contains("sets this header itself"),
            "{name}: {run:?}"
        );
    }
    for bad in ["\"X Caller\" = \"x\"", "\"X-Caller\" = \"a\\nb\""] {
        let run = check_his(d, "badheader.toml", &format!("headers = {{ {bad} }}\n"));
        assert_ne!(run.code, Some(0), "{bad}: {run:?}");
        assert!(run.all().contains("his.headers"), "{bad}: {run:?}");
    }

    // A bad file does not hide a bad header: both are reported.
    let bad = secret_file(d, "bad.basic", "no-colon-here\n", 0o600);
    let run = check_his(
        d,
        "two.toml",
        &format!(
            "basic_auth_file = {:?}\nheaders = {{ \"Connection\" = \"close\" }}\n",
            bad.display().to_string()
        ),
    );
    assert_ne!(run.code, Some(0), "{run:?}");
    assert!(run.all().contains("his.basic_auth_file"), "{run:?}");
    assert!(run.all().contains("`Connection`"), "{run:?}");

    // Readable by others: a warning, not an error.
    let open = secret_file(d, "open.token", TOKEN, 0o644);
    let run = check_his(
        d,
        "open.toml",
        &format!("bearer_token_file = {:?}\n", open.display().to_string()),
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.all().contains("readable by group or others"), "{run:?}");
    assert!(run.all().contains("his.bearer_token_file"), "{run:?}");
    assert_no_secret("check", &run.all());
}

#[test]
fn debug_never_shows_the_secrets() {
    use prefront::config::{HisAuth, HisCredentials, Secret};
    let creds = HisCredentials {
        auth: Some(HisAuth::Basic {
            user: "his-user".into(),
            password: Secret(PASSWORD.into()),
        }),
        headers: vec![("x-caller".into(), "prefront".into())],
    };
    assert_no_secret(
        "Debug",
        &format!("{creds:?} {:?}", HisAuth::Bearer(Secret(TOKEN.into()))),
    );
}
