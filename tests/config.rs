//! Configuration files (DESIGN.md §4): what a valid file turns into, and that every problem of
//! an invalid one is reported with its key and line, by the library and by `prefront check`.

#[allow(unused_imports)] // this file uses the PKI and temp dirs, not the gateway helpers
mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use prefront::config::{Delivery, HisTarget, SoapParam, SoapVersion};
use prefront::Config;
use support::*;

/// `prefront check` exits with this for a configuration that cannot be used (EX_USAGE).
const EXIT_CONFIG: i32 = 64;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config")
        .join(name)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// 1-based line where the only occurrence of `needle` (possibly several lines long) starts.
fn line_of(text: &str, needle: &str) -> usize {
    let mut hits = text.match_indices(needle);
    let (at, _) = hits
        .next()
        .unwrap_or_else(|| panic!("test bug: {needle:?} not in the fixture"));
    assert!(
        hits.next().is_none(),
        "test bug: {needle:?} occurs more than once in the fixture"
    );
    text[..at].matches('\n').count() + 1
}

fn nets(v: &[&str]) -> Vec<IpNet> {
    v.iter()
        .map(|s| s.parse().unwrap_or_else(|e| panic!("test net {s}: {e}")))
        .collect()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap_or_else(|e| panic!("test addr {s}: {e}"))
}

// ---------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------

fn check(config: &Path) -> Run {
    run_prefront(
        &["check", "--config", config.to_str().expect("UTF-8 path")],
        None,
    )
}

fn assert_check_ok(run: &Run, what: &str) {
    assert_eq!(run.code, Some(0), "{what}: check must succeed\n{run:?}");
    assert!(run.stdout.contains("OK"), "{what}: check says OK\n{run:?}");
}

/// True when `token` occurs in `line` and is not just the start of a longer key or number.
fn has_token(line: &str, token: &str) -> bool {
    line.match_indices(token).any(|(i, _)| {
        line[i + token.len()..]
            .chars()
            .next()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '[')))
    })
}

// ---------------------------------------------------------------------------
// Expected problems
// ---------------------------------------------------------------------------

/// One expected problem: its key (any of `keys`; `""` for a syntax error) and the line where
/// any of the `at` snippets starts in the fixture.
struct Expect {
    keys: &'static [&'static str],
    at: &'static [&'static str],
}

const fn e(keys: &'static [&'static str], at: &'static [&'static str]) -> Expect {
    Expect { keys, at }
}

fn expected_lines(text: &str, ex: &Expect) -> Vec<usize> {
    ex.at.iter().map(|n| line_of(text, n)).collect()
}

/// Library level: `Config::from_file` refuses the fixture, reporting exactly the expected
/// problems, each with its key and line.
fn assert_library_problems(file: &str, expects: &[Expect]) {
    let path = fixture(file);
    let text = read(&path);
    let err = match Config::from_file(&path) {
        Ok(_) => panic!("{file}: an invalid configuration was accepted"),
        Err(e) => e,
    };
    let listing = err
        .problems
        .iter()
        .map(|p| format!("  {:?} line {:?}: {}", p.key, p.line, p.message))
        .collect::<Vec<_>>()
        .join("\n");
    let mut failures = Vec::new();
    for ex in expects {
        let lines = expected_lines(&text, ex);
        match err
            .problems
            .iter()
            .find(|p| ex.keys.contains(&p.key.as_str()))
        {
            None => failures.push(format!("no problem with key {:?}", ex.keys)),
            Some(p) => match p.line {
                Some(l) if lines.contains(&l) => {}
                other => failures.push(format!(
                    "problem {:?} is on line {other:?}, expected one of {lines:?}",
                    p.key
                )),
            },
        }
        if let Some(p) = err
            .problems
            .iter()
            .find(|p| ex.keys.contains(&p.key.as_str()))
        {
            if p.message.trim().is_empty() {
                failures.push(format!("problem {:?} has no message", p.key));
            }
        }
    }
    if err.problems.len() != expects.len() {
        failures.push(format!(
            "expected {} problem(s), got {}",
            expects.len(),
            err.problems.len()
        ));
    }
    assert!(
        failures.is_empty(),
        "{file}:\n{}\nreported:\n{listing}",
        failures.join("\n")
    );
}

/// Binary level: `prefront check` exits 64 and prints every expected problem's key and
/// `line N` on one stderr line.
fn assert_check_problems(file: &str, expects: &[Expect]) {
    let path = fixture(file);
    let text = read(&path);
    let run = check(&path);
    assert_eq!(run.code, Some(EXIT_CONFIG), "{file}: exit code\n{run:?}");
    assert!(
        !run.stdout.contains("OK"),
        "{file}: an invalid file must not be called OK\n{run:?}"
    );
    let mut failures = Vec::new();
    for ex in expects {
        let lines = expected_lines(&text, ex);
        let found = run.stderr.lines().any(|l| {
            ex.keys.iter().any(|k| k.is_empty() || has_token(l, k))
                && lines.iter().any(|n| has_token(l, &format!("line {n}")))
        });
        if !found {
            failures.push(format!(
                "no stderr line names {:?} with `line N` for N in {lines:?}",
                ex.keys
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{file}:\n{}\n{run:?}",
        failures.join("\n")
    );
}

macro_rules! invalid_fixture {
    ($name:ident, $file:literal, $expects:expr) => {
        mod $name {
            use super::*;

            const EXPECTED: &[Expect] = $expects;

            #[test]
            fn library_reports_every_problem_with_key_and_line() {
                assert_library_problems($file, EXPECTED);
            }

            #[test]
            fn check_prints_every_problem_with_key_and_line_and_exits_64() {
                assert_check_problems($file, EXPECTED);
            }
        }
    };
}

invalid_fixture!(
    unknown_keys,
    "invalid_unknown_keys.toml",
    &[
        e(&["his_listener.alow"], &["alow ="]),
        e(&["bufer"], &["[bufer]"]),
        e(&["his.route[0].urll"], &["urll ="]),
        // With `url` misspelt the route really has none: said too, on the route's first line.
        e(&["his.route[0].url"], &["[[his.route]]"]),
    ]
);

invalid_fixture!(
    unknown_subtable,
    "invalid_unknown_subtable.toml",
    &[e(&["his.extra_headers"], &["[his.extra_headers]"])]
);

invalid_fixture!(
    unknown_array_of_tables,
    "invalid_unknown_array_table.toml",
    &[e(&["hospitals"], &["[[hospitals]]\nname = \"one\""])]
);

/// Issue 19 item 3: an unknown sub-table or array of tables is one clear error, not that error
/// and a bogus syntax error about an empty key (`unquoted keys cannot be empty`).
#[test]
fn check_reports_an_unknown_table_once() {
    for file in [
        "invalid_unknown_subtable.toml",
        "invalid_unknown_array_table.toml",
    ] {
        let run = check(&fixture(file));
        let errors: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| l.trim_start().starts_with("error:"))
            .collect();
        assert_eq!(errors.len(), 1, "{file}: exactly one error\n{run:?}");
        assert!(errors[0].contains("unknown key"), "{file}\n{run:?}");
        assert!(run.stderr.contains("1 problem(s)"), "{file}\n{run:?}");
        assert!(!run.all().contains("unquoted keys"), "{file}\n{run:?}");
    }
}

invalid_fixture!(
    cloud_routes,
    "invalid_cloud_route.toml",
    &[
        // A query cannot wait in the buffer: the HIS needs its answer.
        e(&["cloud.route[0].delivery"], &["delivery = \"buffer\""]),
        e(&["cloud.route[1].path"], &["prefront/no/suchThing"]),
        e(&["cloud.route[2].delivery"], &["delivery = \"later\""]),
        e(&["cloud.route[3].deliver"], &["deliver = \"direct\""]),
        // With `delivery` misspelt the route really has none: said too, on the route's line.
        e(
            &["cloud.route[3].delivery"],
            &["[[cloud.route]]\npath = \"prefront/sendTipMessage/lisReport\""]
        ),
    ]
);

invalid_fixture!(
    auth_secret,
    "invalid_auth.toml",
    &[
        e(&["auth.shared_secret"], &["shared_secret ="]),
        e(&["auth.max_skew"], &["max_skew ="]),
    ]
);

#[test]
fn check_never_prints_the_shared_secret() {
    let run = check(&fixture("invalid_auth.toml"));
    assert!(
        !run.stderr.contains("s3cr3t-value") && !run.stdout.contains("s3cr3t-value"),
        "{}{}",
        run.stdout,
        run.stderr
    );
}

invalid_fixture!(
    pacs_links,
    "invalid_pacs.toml",
    &[
        // Rewritten links need the address the cloud reaches this box at.
        e(&["cloud_listener.public_url"], &["[cloud_listener]"]),
        e(&["pacs.dcm_url"], &["dcm_url ="]),
        e(&["pacs.internal_hosts[1]"], &["internal_hosts ="]),
        e(&["pacs.link_key"], &["link_key ="]),
        e(&["pacs.read_timeout"], &["read_timeout ="]),
    ]
);

invalid_fixture!(
    bad_listen_address,
    "invalid_listen.toml",
    &[e(
        &["his_listener.listen"],
        &["listen = \"localhost:8080\""]
    )]
);

invalid_fixture!(
    bad_cidr_in_allow,
    "invalid_allow_cidr.toml",
    &[e(&["his_listener.allow[1]"], &["\"10.0.0.0/33\""])]
);

invalid_fixture!(
    bad_size,
    "invalid_max_body.toml",
    &[e(
        &["cloud_listener.max_body"],
        &["max_body = \"1 parsec\""]
    )]
);

invalid_fixture!(
    tls_cert_without_tls_key,
    "invalid_tls_cert_without_key.toml",
    // Reported on the tls_cert line or the section header: the key that is missing has no line.
    &[e(
        &["cloud_listener.tls_key", "cloud_listener.tls_cert"],
        &["tls_cert = \"server.pem\"", "[cloud_listener]"]
    )]
);

invalid_fixture!(
    route_without_name,
    "invalid_route_without_name.toml",
    &[e(
        &["his.route[1]", "his.route[1].name"],
        &["[[his.route]]\nkind = \"http\"", "kind = \"http\""]
    )]
);

invalid_fixture!(
    duplicate_route_names,
    "invalid_route_duplicate.toml",
    // The second occurrence is the one reported.
    &[e(
        &["his.route[2].name"],
        &["name = \"hospital.interface.createCard\"\nurl = \"http://10.1.1.12/card-again\""]
    )]
);

invalid_fixture!(
    hospitals,
    "invalid_hospital.toml",
    &[
        e(
            &["hospital[0].his.max_response"],
            &["max_response = \"8MiB\" }"]
        ),
        // A name routed twice in one hospital: the second is reported.
        e(
            &["hospital[0].route[1].name"],
            &["name = \"hospital.interface.pacsReportDcm\"\nurl = \"http://10.2.1.12/again\""]
        ),
        e(
            &["hospital[1].id"],
            &["id = \"253\"\ndcm_url = \"http://10.2.1.21"]
        ),
        e(&["hospital[2].id"], &["id = \"\""]),
        e(&["hospital[3]"], &["[[hospital]]\ndcm_ulr"]),
        e(&["hospital[3].dcm_ulr"], &["dcm_ulr ="]),
        // Its PACS host is not in [pacs] internal_hosts.
        e(
            &["hospital[4].dcm_url"],
            &["dcm_url = \"http://10.3.1.21:8080"]
        ),
    ]
);

invalid_fixture!(
    route_kind_ftp,
    "invalid_route_kind.toml",
    &[e(&["his.route[0].kind"], &["kind = \"ftp\""])]
);

invalid_fixture!(
    soap_version_1_3,
    "invalid_soap_version.toml",
    &[e(
        &["his.route[0].soap_version"],
        &["soap_version = \"1.3\""]
    )]
);

invalid_fixture!(
    url_template_with_unknown_placeholder,
    "invalid_url_template.toml",
    &[e(&["his.url"], &["{unknown}"])]
);

invalid_fixture!(
    base_url_not_http,
    "invalid_base_url.toml",
    &[e(&["cloud.base_url"], &["ftp://cloud.example.com/"])]
);

invalid_fixture!(
    toml_syntax_error,
    "invalid_syntax.toml",
    &[e(&[""], &["allow = [\"127.0.0.1/32\" \"::1/128\"]"])]
);

invalid_fixture!(
    many_problems_in_one_file,
    "invalid_many.toml",
    &[
        e(&["his_listener.listen"], &["listen = \"127.0.0.1\"\n"]),
        e(&["his_listener.allow[1]"], &["\"not-a-net\""]),
        e(&["his_listener.max_body"], &["max_body = \"1 parsec\""]),
        e(&["cloud_listener.client_ca"], &["client_ca ="]),
        e(&["cloud.base_url"], &["ftp://cloud.example.com/"]),
        e(&["his.url"], &["{unknown}"]),
        e(
            &["his.route[0]", "his.route[0].name"],
            &[
                "[[his.route]]\nkind = \"http\"\nurl = \"http://10.1.1.12/nameless\"",
                "kind = \"http\"\nurl = \"http://10.1.1.12/nameless\""
            ]
        ),
        e(
            &["his.route[2].name"],
            &["name = \"hospital.interface.createCard\"\nurl = \"http://10.1.1.12/card-again\""]
        ),
        e(&["his.route[3].kind"], &["kind = \"ftp\""]),
        e(&["his.route[4].soap_version"], &["soap_version = \"1.3\""]),
    ]
);

invalid_fixture!(
    unknown_key_and_bad_value_together,
    "invalid_mixed.toml",
    // One pass must show both: the misspelt key and the bad address.
    &[
        e(&["his_listener.alow"], &["alow ="]),
        e(&["cloud_listener.listen"], &["listen = \"localhost:8443\""]),
    ]
);

invalid_fixture!(
    values_of_the_wrong_type,
    "invalid_wrong_types.toml",
    &[
        e(&["his_listener.max_body"], &["max_body = 5"]),
        e(&["cloud.timeout_ms"], &["timeout_ms = \"10s\""]),
    ]
);

// ---------------------------------------------------------------------------
// Valid files
// ---------------------------------------------------------------------------

#[test]
fn valid_full_fixture_loads_with_every_section_typed() {
    let path = fixture("valid_full.toml");
    let loaded = Config::from_file(&path).unwrap_or_else(|e| panic!("{e}: {:#?}", e.problems));
    let c = &loaded.config;

    assert_eq!(c.his_listener.listen, addr("0.0.0.0:18080"));
    // A bare address means just that host.
    assert_eq!(
        c.his_listener.allow,
        nets(&["10.1.1.0/24", "192.168.5.7/32", "fd00::/8"])
    );
    assert_eq!(c.his_listener.trusted_proxies, nets(&["10.1.1.5/32"]));
    assert_eq!(c.his_listener.max_body, 2 * 1024 * 1024);
    assert!(c.his_listener.tls.is_none());

    assert_eq!(c.cloud_listener.listen, addr("[::]:18443"));
    assert_eq!(c.cloud_listener.allow, nets(&["203.0.113.0/24"]));
    assert!(c.cloud_listener.trusted_proxies.is_empty());
    assert_eq!(c.cloud_listener.max_body, 512 * 1024);
    assert!(c
        .cloud_listener
        .public_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://prefront.example-hospital.cn:8443")));
    assert!(
        loaded.warnings.iter().any(|w| w.key == "cloud_listener"),
        "a plain-HTTP cloud listener deserves a warning: {:#?}",
        loaded.warnings
    );

    let admin = c.admin.as_ref().expect("[admin] kept");
    assert_eq!(admin.listen, addr("127.0.0.1:19090"));
    assert_eq!(admin.allow, nets(&["127.0.0.1/32"]));

    // A base_url with a path keeps it: calls go below /api/, not to the host's root.
    assert_eq!(
        c.cloud
            .base_url
            .join("prefront/patient/getPatientInfo")
            .expect("join")
            .as_str(),
        "https://cloud.example.com/api/prefront/patient/getPatientInfo"
    );
    assert_eq!(c.cloud.timeout, Duration::from_millis(15000));
    assert_eq!(c.cloud.connect_timeout, Duration::from_millis(2000));
    assert_eq!(c.cloud.max_response, 16 * 1024 * 1024);
    assert!(c.cloud.ca.is_none());
    // [[cloud.route]] paths are matched like request paths and kept in canonical spelling.
    assert_eq!(
        c.cloud.delivery.get("prefront/patient/genCard"),
        Some(&Delivery::Buffer)
    );
    assert_eq!(
        c.cloud.delivery.get("prefront/sendTipMessage/patientQueue"),
        Some(&Delivery::Direct)
    );

    // Routing: overrides by exact name, the [his] default for every other name.
    let his = &c.his;
    assert_eq!(his.max_response, 64 * 1024 * 1024);
    let default = his
        .default
        .as_ref()
        .expect("[his] url makes a default route");
    assert_eq!(
        default.target,
        HisTarget::Http {
            url: "http://10.1.1.10:8080/his/{name}".into()
        }
    );
    assert_eq!(default.timeout, Duration::from_millis(8000));
    assert_eq!(
        his.route_for("hospital.interface.queryBalance"),
        Some(default),
        "an unrouted name takes the default"
    );

    let card = his
        .route_for("hospital.interface.createCard")
        .expect("createCard routed");
    assert_eq!(
        card.target,
        HisTarget::Http {
            url: "http://10.1.1.11:8080/card/{method}".into()
        }
    );
    assert_eq!(card.timeout, Duration::from_millis(3000));
    assert_eq!(card.delivery, Some(Delivery::Direct));

    let pacs = his
        .route_for("hospital.interface.pacsReportDcm")
        .expect("pacsReportDcm routed");
    match &pacs.target {
        HisTarget::Soap(s) => {
            assert_eq!(s.url, "http://10.1.1.10/HisService.asmx");
            assert_eq!(s.operation.as_deref(), Some("pacsReportDcm"));
            assert_eq!(s.namespace, "http://tempuri.org/");
            assert_eq!(s.version, SoapVersion::V12);
            assert_eq!(s.param, SoapParam::Xml);
            assert_eq!(
                s.soap_action.as_deref(),
                Some(""),
                "\"\" = empty SOAPAction"
            );
        }
        other => panic!("pacsReportDcm must be a SOAP route, got {other:?}"),
    }
    assert_eq!(
        pacs.timeout,
        Duration::from_millis(8000),
        "a route without timeout_ms inherits [his]'s"
    );

    let p = &c.pacs;
    assert_eq!(
        p.dcm_url.as_deref(),
        Some("http://10.1.1.20:8080/pacs/dcm?dcmId={dcmId}&hospitalId={hospitalId}")
    );
    assert_eq!(
        p.internal_hosts,
        vec![prefront::config::InternalHost {
            host: "10.1.1.20".to_string(),
            port: Some(8080)
        }]
    );
    assert_eq!(p.link_ttl, Duration::from_secs(30 * 60));

    // Relative paths resolve against the file's directory, not the working directory.
    assert_eq!(c.buffer.path, fixture("data/buffer"));
    assert_eq!(c.buffer.max_bytes, 2 * 1024 * 1024 * 1024);
    assert_eq!(c.buffer.ttl, Duration::from_secs(3 * 86400));
    assert_eq!(c.log.level, "prefront=debug,info");
}

#[test]
fn valid_minimal_fixture_loads_with_safe_defaults() {
    let path = fixture("valid_minimal.toml");
    let loaded = Config::from_file(&path).unwrap_or_else(|e| panic!("{e}: {:#?}", e.problems));
    let c = &loaded.config;
    assert_eq!(c.his_listener.listen, addr("127.0.0.1:18080"));
    assert_eq!(c.cloud_listener.listen, addr("127.0.0.1:18443"));
    // No allow list: loopback only, never everyone.
    assert_eq!(c.his_listener.allow, nets(&["127.0.0.0/8", "::1/128"]));
    assert_eq!(c.cloud_listener.allow, nets(&["127.0.0.0/8", "::1/128"]));
    assert!(c.his_listener.trusted_proxies.is_empty());
    assert_eq!(
        c.his_listener.max_body,
        1024 * 1024,
        "documented 1MiB default"
    );
    assert_eq!(c.cloud.base_url.as_str(), "https://cloud.example.com/");
    // No [his] url: no name is served until routed (40003 for the rest).
    assert!(c.his.default.is_none());
    assert_eq!(c.his.route_for("hospital.interface.queryBalance"), None);
    assert!(c.admin.is_none());
    assert!(c.pacs.dcm_url.is_none() && c.pacs.internal_hosts.is_empty());
    assert_eq!(
        c.pacs.link_ttl,
        Duration::from_secs(3600),
        "links live an hour"
    );
    assert_eq!(
        c.his.max_response,
        4 * 1024 * 1024,
        "ordinary HIS answers keep a tight limit"
    );
    assert_eq!(
        c.his.max_response_for("hospital.interface.lisReportPdf"),
        32 * 1024 * 1024,
        "base64 report PDFs get room"
    );
    assert_eq!(c.log.level, "info");
    for key in ["his_listener", "cloud_listener"] {
        assert!(
            loaded
                .warnings
                .iter()
                .any(|w| w.key == key && w.line.is_some()),
            "a missing allow list on {key} deserves a warning with a line: {:#?}",
            loaded.warnings
        );
    }
}

/// A county box: each hospital's his, routes and PACS template; `[his]` and `[pacs]` for the
/// calls without a hospitalId.
#[test]
fn valid_hospitals_fixture_loads_every_hospital() {
    let path = fixture("valid_hospitals.toml");
    let c = Config::from_file(&path)
        .unwrap_or_else(|e| panic!("{e}: {:#?}", e.problems))
        .config;
    let ids: Vec<&str> = c.his.hospitals.keys().map(String::as_str).collect();
    assert_eq!(ids, ["253", "254"]);
    let h253 = &c.his.hospitals["253"];
    assert_eq!(
        h253.default.as_ref().map(|r| (r.target.clone(), r.timeout)),
        Some((
            HisTarget::Http {
                url: "http://10.2.1.10:8080/his/{name}".into()
            },
            Duration::from_millis(5000)
        ))
    );
    assert!(matches!(
        h253.routes.get("hospital.interface.pacsReportDcm").map(|r| &r.target),
        Some(HisTarget::Soap(s)) if s.url == "http://10.2.1.11/HisService.asmx"
    ));
    assert!(c.his.hospitals["254"].default.is_none());
    assert_eq!(
        c.pacs.hospitals.get("254").cloned().flatten().as_deref(),
        Some("http://10.3.1.20:8080/pacs/{dcmId}")
    );
    assert!(c.his.default.is_some() && c.pacs.dcm_url.is_some());
}

#[test]
fn check_accepts_the_valid_fixtures() {
    for name in [
        "valid_full.toml",
        "valid_minimal.toml",
        "valid_hospitals.toml",
    ] {
        let run = check(&fixture(name));
        assert_check_ok(&run, name);
    }
}

#[test]
fn repo_example_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/prefront.toml");
    let loaded = Config::from_file(&path).unwrap_or_else(|e| panic!("{e}: {:#?}", e.problems));
    assert!(
        loaded.config.his.default.is_some(),
        "the example routes [his]"
    );
    assert_check_ok(&check(&path), "config/prefront.toml");
}

#[test]
fn check_without_config_uses_the_embedded_example() {
    if Path::new(prefront::config::INSTALLED_PATH).exists() {
        eprintln!(
            "SKIPPED: {} exists on this machine, so `check` would read it instead of the \
             embedded example",
            prefront::config::INSTALLED_PATH
        );
        return;
    }
    // Somewhere without a config/ directory: the example must come from the binary itself.
    let dir = TempDir::new("prefront-config-test-cwd");
    let run = run_prefront(&["check"], Some(dir.path()));
    assert_check_ok(&run, "check without --config");
    assert!(
        run.all().contains("example"),
        "the output says which configuration was checked\n{run:?}"
    );
}

#[test]
fn version_flag_prints_name_and_version() {
    let run = run_prefront(&["--version"], None);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(
        run.stdout.trim(),
        format!("prefront {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn check_on_a_missing_file_names_it_and_fails() {
    let dir = TempDir::new("prefront-config-test");
    let missing = dir.path().join("no-such-prefront.toml");
    let run = check(&missing);
    assert_eq!(run.code, Some(EXIT_CONFIG), "{run:?}");
    assert!(run.stderr.contains("no-such-prefront.toml"), "{run:?}");
}

// ---------------------------------------------------------------------------
// TLS files, built at test time
// ---------------------------------------------------------------------------

/// A complete configuration whose cloud listener uses `tls_cert`/`tls_key` as written.
fn tls_config_text(tls_cert: &str, tls_key: &str) -> String {
    format!(
        r#"[his_listener]
listen = "127.0.0.1:18080"
allow = ["127.0.0.1/32"]

[cloud_listener]
listen = "127.0.0.1:18443"
allow = ["203.0.113.0/24"]
tls_cert = {tls_cert:?}
tls_key = {tls_key:?}

[cloud]
base_url = "https://cloud.example.com/"
"#
    )
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// A recognisable string that stands for private key material.
const KEY_MARKER: &str = "PREFRONTSECRETKEYMARKER7f3a9c";

#[test]
fn check_accepts_tls_files_relative_to_the_config_file() {
    let pki = TestPki::new();
    let conf = pki.dir().join("prefront.toml");
    write(&conf, &tls_config_text("server.pem", "server.key"));

    let loaded = Config::from_file(&conf).unwrap_or_else(|e| panic!("{e}: {:#?}", e.problems));
    let tls = loaded.config.cloud_listener.tls.expect("TLS configured");
    assert_eq!(tls.cert, pki.server_cert_path());
    assert_eq!(tls.key, pki.server_key_path());
    assert!(tls.client_ca.is_none());

    // Run from elsewhere: relative paths must not depend on the working directory.
    let cwd = TempDir::new("prefront-config-test-cwd");
    let run = run_prefront(
        &["check", "--config", conf.to_str().expect("UTF-8")],
        Some(cwd.path()),
    );
    assert_check_ok(&run, "TLS with relative paths");
    assert!(
        !run.all()
            .contains(pki.server_key_pem().lines().nth(1).expect("key body")),
        "key material printed\n{run:?}"
    );
}

#[test]
fn missing_tls_cert_file_is_a_problem_with_key_and_line() {
    let dir = TempDir::new("prefront-config-test");
    let conf = dir.path().join("prefront.toml");
    let text = tls_config_text("does-not-exist.pem", "server.key");
    write(&conf, &text);
    write(&dir.path().join("server.key"), "placeholder\n");

    let err = Config::from_file(&conf).expect_err("a missing certificate file is refused");
    let p = err
        .problems
        .iter()
        .find(|p| p.key == "cloud_listener.tls_cert")
        .unwrap_or_else(|| panic!("no tls_cert problem: {:#?}", err.problems));
    assert_eq!(p.line, Some(line_of(&text, "tls_cert =")));
    assert!(p.message.contains("does-not-exist.pem"), "{p:?}");

    let run = check(&conf);
    assert_eq!(run.code, Some(EXIT_CONFIG), "{run:?}");
    assert!(run.stderr.contains("does-not-exist.pem"), "{run:?}");
}

#[test]
fn tls_cert_that_is_not_a_certificate_fails_check_naming_the_file() {
    let dir = TempDir::new("prefront-config-test");
    write(
        &dir.path().join("not-a-cert.pem"),
        "this file was meant to hold the server certificate\n",
    );
    write(
        &dir.path().join("fake.key"),
        &format!("-----BEGIN PRIVATE KEY-----\n{KEY_MARKER}\n-----END PRIVATE KEY-----\n"),
    );
    let conf = dir.path().join("prefront.toml");
    write(&conf, &tls_config_text("not-a-cert.pem", "fake.key"));

    let run = check(&conf);
    assert_ne!(run.code, Some(0), "{run:?}");
    assert!(!run.stdout.contains("OK"), "{run:?}");
    assert!(
        run.stderr.contains("not-a-cert.pem"),
        "check must say which file is wrong\n{run:?}"
    );
    assert!(
        !run.all().contains(KEY_MARKER),
        "key content leaked\n{run:?}"
    );
}

#[test]
fn unreadable_private_key_fails_check_without_printing_its_content() {
    let pki = TestPki::new();
    let dir = TempDir::new("prefront-config-test");
    let cert = pki.server_cert_path();
    // PEM-armoured garbage and bare text: neither may be echoed back.
    for (name, content) in [
        (
            "armoured.key",
            format!("-----BEGIN PRIVATE KEY-----\n{KEY_MARKER}\n-----END PRIVATE KEY-----\n"),
        ),
        ("bare.key", format!("{KEY_MARKER}\n")),
    ] {
        let key = dir.path().join(name);
        write(&key, &content);
        let conf = dir.path().join(format!("{name}.toml"));
        write(
            &conf,
            &tls_config_text(cert.to_str().expect("UTF-8"), key.to_str().expect("UTF-8")),
        );

        let run = check(&conf);
        assert_ne!(run.code, Some(0), "{name}: {run:?}");
        assert!(!run.stdout.contains("OK"), "{name}: {run:?}");
        assert!(
            run.stderr.contains(name),
            "{name}: check must say which file is wrong\n{run:?}"
        );
        assert!(
            !run.all().contains(KEY_MARKER),
            "{name}: key content leaked\n{run:?}"
        );
    }
}

#[test]
fn certificate_and_key_that_do_not_match_fail_check() {
    let a = TestPki::new();
    let b = TestPki::new();
    let dir = TempDir::new("prefront-config-test");
    let conf = dir.path().join("prefront.toml");
    write(
        &conf,
        &tls_config_text(
            a.server_cert_path().to_str().expect("UTF-8"),
            b.server_key_path().to_str().expect("UTF-8"),
        ),
    );

    let run = check(&conf);
    assert_ne!(
        run.code,
        Some(0),
        "a mismatched pair cannot serve TLS\n{run:?}"
    );
    assert!(!run.stdout.contains("OK"), "{run:?}");
    let output = run.all();
    for line in b
        .server_key_pem()
        .lines()
        .filter(|l| !l.starts_with("-----"))
    {
        assert!(!output.contains(line), "key material printed\n{run:?}");
    }
}

/// Base64 of `PREFRONT-SECRET-KEY-MATERIAL-MARKER-7f3a9c`: a PEM block that decodes fine but
/// holds no key, as a truncated or wrong key file would.
const DECODABLE_NON_KEY_B64: &str = "UFJFRlJPTlQtU0VDUkVULUtFWS1NQVRFUklBTC1NQVJLRVItN2YzYTlj";

#[test]
fn private_key_block_that_is_not_a_key_fails_check_naming_the_file() {
    let pki = TestPki::new();
    let dir = TempDir::new("prefront-config-test");
    let key = dir.path().join("not-really-a.key");
    write(
        &key,
        &format!(
            "-----BEGIN PRIVATE KEY-----\n{DECODABLE_NON_KEY_B64}\n-----END PRIVATE KEY-----\n"
        ),
    );
    let conf = dir.path().join("prefront.toml");
    write(
        &conf,
        &tls_config_text(
            pki.server_cert_path().to_str().expect("UTF-8"),
            key.to_str().expect("UTF-8"),
        ),
    );

    let run = check(&conf);
    assert_ne!(run.code, Some(0), "{run:?}");
    assert!(!run.stdout.contains("OK"), "{run:?}");
    let output = run.all();
    assert!(
        !output.contains(DECODABLE_NON_KEY_B64) && !output.contains("MATERIAL-MARKER"),
        "key content leaked\n{run:?}"
    );
    assert!(
        run.stderr.contains("not-really-a.key"),
        "check must say which file is wrong\n{run:?}"
    );
}
