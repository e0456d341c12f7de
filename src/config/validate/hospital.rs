//! `[[hospital]]`: several hospitals behind one box (a county's 医共体), each with its own HIS
//! (`his`, shaped like `[his]`), its own `[[hospital.route]]` overrides and its own PACS
//! (`dcm_url`). Calls choose one by the body's `hospitalId`.

use std::collections::BTreeMap;

use super::his::{named_routes, route};
use super::pacs::dcm_template;
use super::{Checker, Step};
use crate::config::raw::RawHospital;
use crate::config::*;

/// Longest hospital id: the same bound the listener puts on a body's `hospitalId`.
const MAX_ID_LEN: usize = MAX_HOSPITAL_ID;

/// What the `[[hospital]]` tables add to `[his]` and `[pacs]`.
#[derive(Default)]
pub(super) struct Hospitals {
    pub his: BTreeMap<String, HospitalHis>,
    pub dcm_urls: BTreeMap<String, Option<String>>,
}

/// Checks every `[[hospital]]`; `his_default` is `[his]`'s route (a `[[hospital.route]]` of a
/// hospital without `his` falls back on it for the keys it leaves out), `internal_hosts` the
/// hosts each `dcm_url` must be on.
pub(super) fn hospitals(
    c: &mut Checker<'_>,
    raw: Vec<RawHospital>,
    his_default: Option<&HisRoute>,
    internal_hosts: &[InternalHost],
) -> Hospitals {
    let mut out = Hospitals::default();
    // The entry each id was first given in, for the duplicate's message.
    let mut first: BTreeMap<String, usize> = BTreeMap::new();
    for (i, h) in raw.into_iter().enumerate() {
        let at = [Step::Key("hospital"), Step::Index(i)];
        let k = |key: &'static str| [at[0], at[1], Step::Key(key)];
        let Some(id) = h.id.as_deref() else {
            c.problem(
                &at,
                "a [[hospital]] needs an `id` (the hospitalId the cloud sends)",
            );
            continue;
        };
        if let Err(e) = check_id(id) {
            c.problem(&k("id"), e);
            continue;
        }
        if let Some(j) = first.get(id) {
            c.problem(
                &k("id"),
                format!("`{id}` is also the id of hospital[{j}]: each hospital once"),
            );
            continue;
        }
        first.insert(id.to_string(), i);
        let default = h.his.as_ref().and_then(|his| {
            let his_at = [at[0], at[1], Step::Key("his")];
            let sub = |key: &'static str| [at[0], at[1], Step::Key("his"), Step::Key(key)];
            if his.default.name.is_some() {
                c.problem(
                    &sub("name"),
                    "`name` belongs in a [[hospital.route]], not in a hospital's his",
                );
            }
            if his.own.max_response.is_some() {
                c.problem(
                    &sub("max_response"),
                    "applies to every hospital: set it in [his]",
                );
            }
            if his.own.max_file_response.is_some() {
                c.problem(
                    &sub("max_file_response"),
                    "applies to every hospital: set it in [his]",
                );
            }
            if !his.own.route.is_empty() {
                c.problem(
                    &sub("route"),
                    "a hospital's own routes are [[hospital.route]] tables, after its [[hospital]]",
                );
            }
            // Another hospital's HIS: nothing is inherited from [his].
            route(c, &his_at, &his.default, None)
        });
        let (routes, _) = named_routes(
            c,
            &[at[0], at[1], Step::Key("route")],
            &h.route,
            default.as_ref().or(his_default),
            "[[hospital.route]]",
        );
        let dcm_url = h.dcm_url.map(|t| t.trim().to_string());
        if let Some(t) = &dcm_url {
            match dcm_template(t) {
                Err(e) => c.problem(&k("dcm_url"), e),
                Ok(()) => {
                    if let Some(host) = outside(t, internal_hosts) {
                        c.problem(
                            &k("dcm_url"),
                            format!(
                                "`{host}` is not in [pacs] internal_hosts: add it there (every \
                                 hospital's PACS host must be, so the box streams from it and \
                                 seals its links)"
                            ),
                        );
                    }
                }
            }
        }
        if h.his.is_none() && routes.is_empty() && dcm_url.is_none() {
            c.warn(
                &at,
                format!(
                    "hospital `{id}` has no his, no [[hospital.route]] and no dcm_url: its calls \
                     go to [his] and [pacs] like those without a hospitalId"
                ),
            );
        }
        out.his
            .insert(id.to_string(), HospitalHis { default, routes });
        out.dcm_urls.insert(id.to_string(), dcm_url);
    }
    out
}

/// An id the cloud can send and the status page can show: not empty, no spaces around it, no
/// `,` (a body's `"253,254"` is a list), no control characters, at most 64 bytes.
fn check_id(id: &str) -> Result<(), String> {
    if id.trim().is_empty() {
        return Err("empty: the hospitalId the cloud sends for this hospital".into());
    }
    if id.len() > MAX_ID_LEN {
        return Err(format!("longer than {MAX_ID_LEN} bytes"));
    }
    if id.chars().any(char::is_control) {
        return Err("contains a control character".into());
    }
    if id.trim() != id {
        return Err(format!("`{id}` has spaces around it"));
    }
    if id.contains(',') {
        return Err(format!(
            "`{id}` contains ',': a hospitalId \"253,254\" is a list of two hospitals"
        ));
    }
    Ok(())
}

/// The `host[:port]` of a valid PACS template when no `internal_hosts` entry covers it.
fn outside(template: &str, internal_hosts: &[InternalHost]) -> Option<String> {
    let url = reqwest::Url::parse(
        &template
            .replace("{dcmId}", "a")
            .replace("{hospitalId}", "a"),
    )
    .ok()?;
    if internal_hosts.iter().any(|h| h.matches(&url)) {
        return None;
    }
    let host = url.host_str().unwrap_or("?");
    Some(match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(check_id("253").is_ok());
        assert!(check_id("县医院-1").is_ok());
        for bad in ["", "  ", " 253", "253,254", "a\u{7}", &"9".repeat(65)] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
    }

    const BOX: &str = r#"
[his_listener]
listen = "127.0.0.1:0"
[cloud_listener]
listen = "127.0.0.1:1"
public_url = "https://box.example"
[cloud]
base_url = "https://cloud.example.com"
[his]
url = "http://10.1.1.10/his/{name}"
timeout_ms = 3000
[[his.route]]
name = "hospital.interface.createCard"
url = "http://10.1.1.12/card"
[pacs]
internal_hosts = ["10.2.1.20"]
[[hospital]]
id = "253"
his = { kind = "http", url = "http://10.2.1.10:8080/his/{name}" }
dcm_url = "http://10.2.1.20/pacs/dcm?dcmId={dcmId}"
[[hospital.route]]
name = "hospital.interface.pacsReportDcm"
kind = "soap"
url = "http://10.2.1.11/HisService.asmx"
[[hospital]]
id = "254"
[[hospital.route]]
name = "hospital.interface.getDepositRecord"
url = "http://10.3.1.10/deposit"
[[hospital]]
id = "255"
his = { url = "http://10.2.1.10:8080/his/{name}" }
"#;

    /// A hospital's route, else its his, else the box's own; lists when all agree.
    #[test]
    fn calls_are_routed_by_hospital_then_the_box() {
        let loaded = Config::from_toml(BOX, std::path::Path::new("/nonexistent"));
        let config = match loaded {
            Ok(l) => l.config,
            Err(e) => panic!("{:?}", e.problems),
        };
        let his = &config.his;
        let url = |h: Option<&str>, name: &str| match his.route_in(h, name) {
            Ok(Some(r)) => match &r.target {
                HisTarget::Http { url } => url.clone(),
                HisTarget::Soap(s) => format!("soap {}", s.url),
            },
            Ok(None) => "none".into(),
            Err(e) => format!("{e:?}"),
        };
        let dcm = "hospital.interface.pacsReportDcm";
        let card = "hospital.interface.createCard";
        let deposit = "hospital.interface.getDepositRecord";
        assert_eq!(
            url(Some("253"), dcm),
            "soap http://10.2.1.11/HisService.asmx"
        );
        // Its his comes before the box's [[his.route]].
        assert_eq!(url(Some("253"), card), "http://10.2.1.10:8080/his/{name}");
        assert_eq!(url(Some("254"), deposit), "http://10.3.1.10/deposit");
        assert_eq!(url(Some("254"), card), "http://10.1.1.12/card");
        assert_eq!(url(Some("254"), dcm), "http://10.1.1.10/his/{name}");
        assert_eq!(url(None, card), "http://10.1.1.12/card");
        assert_eq!(url(None, dcm), "http://10.1.1.10/his/{name}");
        assert_eq!(url(Some("256"), dcm), "Unknown");
        assert_eq!(
            url(Some("253,255"), card),
            "http://10.2.1.10:8080/his/{name}"
        );
        assert_eq!(
            url(Some("253, 255"), card),
            "http://10.2.1.10:8080/his/{name}"
        );
        assert_eq!(url(Some("253,254"), card), "Split");
        assert_eq!(url(Some("253,256"), card), "Unknown");
        // A hospital's his inherits nothing from [his]; its routes inherit from its his.
        let timeout = |h: &str, n: &str| his.route_in(Some(h), n).ok().flatten().map(|r| r.timeout);
        assert_eq!(
            timeout("253", card),
            Some(std::time::Duration::from_secs(10))
        );
        assert_eq!(
            timeout("254", deposit),
            Some(std::time::Duration::from_secs(3))
        );
        assert!(his.routes_name(deposit));
        assert_eq!(
            config
                .pacs
                .hospitals
                .get("253")
                .cloned()
                .flatten()
                .as_deref(),
            Some("http://10.2.1.20/pacs/dcm?dcmId={dcmId}")
        );
        assert_eq!(config.pacs.hospitals.get("254"), Some(&None));
    }

    #[test]
    fn pacs_hosts_outside_internal_hosts_are_named() {
        let hosts = [
            InternalHost {
                host: "10.2.1.20".into(),
                port: None,
            },
            InternalHost {
                host: "pacs.lan".into(),
                port: Some(8080),
            },
        ];
        let t = |s: &str| outside(s, &hosts);
        assert_eq!(t("http://10.2.1.20/pacs/dcm?dcmId={dcmId}"), None);
        assert_eq!(t("http://pacs.lan:8080/d/{dcmId}"), None);
        assert_eq!(
            t("http://10.2.1.20:8081/d/{dcmId}").as_deref(),
            Some("10.2.1.20:8081")
        );
        assert_eq!(
            t("http://10.3.1.20/d/{dcmId}").as_deref(),
            Some("10.3.1.20")
        );
    }
}
