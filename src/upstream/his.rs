//! The HIS: each `hospital.interface.*` name goes where the config routes it — plain HTTP JSON,
//! or a SOAP operation with the JSON as one string argument or mapped to XML elements.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use super::link::{Observed, Watched};
use super::{accept_json_answer, post_with, root_store, UpstreamError};
use crate::catalog::short_name;
use crate::config::{
    HisConfig, HisRoute, HisTarget, HospitalMiss, SoapParam, SoapTarget, SoapVersion,
};
use crate::soap::envelope::{self, HisAnswer, HisJsonAnswer, Payload};
use crate::soap::xmljson;

/// The box's connection pool to the HIS, the routing table, and each HIS target's link state.
#[derive(Debug, Clone)]
pub struct His {
    clients: super::Clients,
    config: HisConfig,
    /// One per target (`host:port`) the config names: a bounded set, fixed until a reload.
    links: Arc<BTreeMap<String, Arc<Watched>>>,
}

impl His {
    pub fn new(config: &HisConfig) -> Result<His, String> {
        His::keeping(config, None)
    }

    /// `new` for a reload: a target the old configuration had too keeps its link state (the
    /// same host and port is the same link, whichever routes use it); a new target starts
    /// unknown, and a target no longer configured is forgotten.
    pub fn keeping(config: &HisConfig, old: Option<&His>) -> Result<His, String> {
        let roots = root_store(None)?;
        let links = targets(config)
            .into_iter()
            .map(|row| {
                let target = row.target;
                let link = old
                    .and_then(|o| o.links.get(&target).cloned())
                    .unwrap_or_else(|| Watched::new(format!("his {target}")));
                (target, link)
            })
            .collect();
        Ok(His {
            clients: super::Clients::new(|| {
                super::client::Client::new(
                    super::tls_config(roots.clone(), None)?,
                    std::time::Duration::from_secs(3),
                    None,
                )
            })?,
            config: config.clone(),
            links: Arc::new(links),
        })
    }

    /// What calls have shown of a target's link (`host:port`, as `target_of` spells it).
    pub fn link(&self, target: &str) -> Observed {
        self.links
            .get(target)
            .map_or_else(Observed::default, |l| l.get())
    }

    /// The route for a name, if this hospital serves it.
    pub fn route(&self, name: &str) -> Option<&HisRoute> {
        self.config.route_for(name)
    }

    /// The route for a name in a call for `hospital` (the body's `hospitalId`), with
    /// `[[hospital]]`: see `HisConfig::route_in`.
    pub fn route_in(
        &self,
        hospital: Option<&str>,
        name: &str,
    ) -> Result<Option<&HisRoute>, HospitalMiss> {
        self.config.route_in(hospital, name)
    }

    /// Whether `[[hospital]]` tables are configured (calls are then routed by `hospitalId`).
    pub fn has_hospitals(&self) -> bool {
        !self.config.hospitals.is_empty()
    }

    /// Relays one JSON call to the HIS along `route`.
    pub async fn call(
        &self,
        name: &str,
        route: &HisRoute,
        request_id: &str,
        body: Bytes,
    ) -> Result<Bytes, UpstreamError> {
        let result = self.call_target(name, route, request_id, body).await;
        if let Some(link) = self.links.get(&target_of(&route.target)) {
            link.observe(&result);
        }
        result
    }

    async fn call_target(
        &self,
        name: &str,
        route: &HisRoute,
        request_id: &str,
        body: Bytes,
    ) -> Result<Bytes, UpstreamError> {
        match &route.target {
            HisTarget::Http { url } => {
                let url = super::uri_of(http_url(url, name)?)?;
                let answer = post_with(
                    self.clients.here(),
                    url,
                    request_id,
                    body,
                    &super::JSON_HEADERS,
                    &route.credentials,
                    route.timeout,
                    self.config.max_response_for(name),
                )
                .await?;
                accept_json_answer(answer)
            }
            HisTarget::Soap(target) => self.call_soap(name, target, route, request_id, body).await,
        }
    }

    async fn call_soap(
        &self,
        name: &str,
        t: &SoapTarget,
        route: &HisRoute,
        request_id: &str,
        body: Bytes,
    ) -> Result<Bytes, UpstreamError> {
        let operation = t
            .operation
            .clone()
            .unwrap_or_else(|| method_part(name).to_string());
        let fill = |s: &str| {
            s.replace("{namespace}", &t.namespace)
                .replace("{operation}", &operation)
                .replace("{name}", name)
                .replace("{method}", short_name(name))
        };
        let action = match &t.soap_action {
            None => envelope::default_soap_action(&t.namespace, &operation),
            Some(a) => fill(a),
        };
        let args: Vec<(String, String)> =
            t.args.iter().map(|(k, v)| (k.clone(), fill(v))).collect();
        let json = std::str::from_utf8(&body)
            .map_err(|_| UpstreamError::Unsupported("request is not UTF-8"))?;
        let elements;
        let payload = match t.param {
            SoapParam::String => Payload::Text {
                param_name: &t.param_name,
                json,
            },
            SoapParam::Xml => {
                elements = json_as_elements(json, t.qualified)?;
                Payload::Elements(&elements)
            }
        };
        let charset = t.charset.as_deref();
        let xml = envelope::his_request(
            t.version,
            &t.namespace,
            &operation,
            &args,
            payload,
            t.qualified,
            charset,
        );
        let bytes = crate::charset::xml_for(xml.as_bytes(), charset).into_owned();
        let label = charset.unwrap_or("utf-8");
        let mut headers = vec![(
            hyper::header::CONTENT_TYPE,
            super::header_value(envelope::content_type(
                t.version,
                label,
                (t.version == SoapVersion::V12).then_some(action.as_str()),
            ))?,
        )];
        if t.version == SoapVersion::V11 {
            headers.push((
                hyper::header::HeaderName::from_static("soapaction"),
                super::header_value(format!("\"{action}\""))?,
            ));
        }
        let url = super::uri_of(
            reqwest::Url::parse(&t.url)
                .map_err(|_| UpstreamError::Unsupported("route url is not a valid URL"))?,
        )?;
        let answer = post_with(
            self.clients.here(),
            url,
            request_id,
            Bytes::from(bytes),
            &headers,
            &route.credentials,
            route.timeout,
            self.config.max_response_for(name),
        )
        .await?;
        // Faults arrive with 500 (SOAP 1.1) or 400/500 (1.2): read the body before judging.
        if t.param == SoapParam::Xml {
            return xml_answer(&answer, &t.arrays);
        }
        let ok = (200..300).contains(&answer.status);
        match envelope::parse_his_answer(&answer.body, answer.content_type.as_deref()) {
            Ok(HisAnswer::Fault { code, reason }) => Err(soap_fault(&code, &reason)),
            Ok(HisAnswer::Wrapper { first_text, .. }) if ok => {
                let text = first_text.ok_or(UpstreamError::InvalidAnswer)?;
                let text = text.trim();
                if crate::json::validate(text.as_bytes()).is_err() {
                    return Err(UpstreamError::InvalidAnswer);
                }
                Ok(Bytes::from(text.to_string()))
            }
            Ok(HisAnswer::Wrapper { .. }) | Err(_) => Err(unusable(answer.status)),
        }
    }
}

/// `host:port` of a route's target (the port the scheme implies when the URL names none); `?`
/// when the URL has no host. A URL template's `{name}` and `{method}` are in its path, never in
/// its host, so the template's host is the target's.
pub fn target_of(target: &HisTarget) -> String {
    let url = match target {
        HisTarget::Http { url } => url.as_str(),
        HisTarget::Soap(s) => s.url.as_str(),
    };
    match reqwest::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port_or_known_default()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            _ => "?".to_string(),
        },
        Err(_) => "?".to_string(),
    }
}

/// A configured route: `None` for the `[his] url` default (or a hospital's `his`), else the
/// interface name.
pub type NamedRoute<'a> = (Option<String>, &'a HisRoute);

/// One HIS target (`host:port`) of the box's own routes or of one `[[hospital]]`'s, with the
/// routes that call it.
#[derive(Debug)]
pub struct TargetRoutes<'a> {
    /// `None` for `[his]`/`[[his.route]]`, else the `[[hospital]]` id.
    pub hospital: Option<&'a str>,
    pub target: String,
    pub routes: Vec<NamedRoute<'a>>,
}

/// The configured HIS targets in the order the status page lists them: those of `[his]` and
/// `[[his.route]]` (the default's first, then the routes' by name), then each `[[hospital]]`'s
/// own (its `his`, then its `[[hospital.route]]` by name) in id order. A target several
/// hospitals call has a row for each; its link is one.
pub fn targets(config: &HisConfig) -> Vec<TargetRoutes<'_>> {
    let mut out = Vec::new();
    group(&mut out, None, config.default.as_ref(), &config.routes);
    for (id, h) in &config.hospitals {
        group(&mut out, Some(id), h.default.as_ref(), &h.routes);
    }
    out
}

/// Appends one group's targets (the box's own routes, or one hospital's) to `out`.
fn group<'a>(
    out: &mut Vec<TargetRoutes<'a>>,
    hospital: Option<&'a str>,
    default: Option<&'a HisRoute>,
    routes: &'a std::collections::HashMap<String, HisRoute>,
) {
    let mut named: Vec<NamedRoute<'a>> = Vec::new();
    if let Some(d) = default {
        named.push((None, d));
    }
    let mut by_name: Vec<_> = routes.iter().collect();
    by_name.sort_by(|a, b| a.0.cmp(b.0));
    named.extend(by_name.into_iter().map(|(n, r)| (Some(n.clone()), r)));
    let first = out.len();
    for (name, route) in named {
        let target = target_of(&route.target);
        match out[first..].iter_mut().find(|t| t.target == target) {
            Some(t) => t.routes.push((name, route)),
            None => out.push(TargetRoutes {
                hospital,
                target,
                routes: vec![(name, route)],
            }),
        }
    }
}

/// A SOAP Fault, whatever the HTTP status it came with: its code and reason, shortened.
fn soap_fault(code: &str, reason: &str) -> UpstreamError {
    UpstreamError::SoapFault {
        code: code.chars().take(64).collect(),
        reason: reason.chars().take(200).collect(),
    }
}

/// An answer that is neither a Fault nor a usable wrapper: the HTTP status says why when it is
/// not 2xx; otherwise the content is at fault.
fn unusable(status: u16) -> UpstreamError {
    if (200..300).contains(&status) {
        UpstreamError::InvalidAnswer
    } else {
        UpstreamError::Status(status)
    }
}

/// The operation a SOAP route calls when the config names none: the last segment of the name
/// (`hospital.interface.appointment.regSchedule` → `regSchedule`).
pub(crate) fn method_part(name: &str) -> &str {
    short_name(name).rsplit('.').next().unwrap_or(name)
}

/// `param = "xml"`: the request's JSON object as XML child elements.
fn json_as_elements(json: &str, qualified: bool) -> Result<String, UpstreamError> {
    let value: serde_json::Value = serde_json::from_str(json)
        .map_err(|_| UpstreamError::Unsupported("request is not JSON"))?;
    let mut out = String::new();
    xmljson::json_to_xml(&value, qualified.then_some("tns"), &mut out).map_err(|_| {
        UpstreamError::Unsupported("this request cannot be written as XML elements")
    })?;
    Ok(out)
}

/// `param = "xml"`: the answer wrapper's child elements as JSON; scalars stay strings, the
/// route's `arrays` say which paths are lists. Judged like a string answer: a Fault is a fault
/// whatever the status, then a non-2xx status, then the content.
fn xml_answer(answer: &super::Answer, arrays: &[String]) -> Result<Bytes, UpstreamError> {
    let hints = xmljson::ArrayHints::new(arrays);
    match envelope::parse_his_answer_json(&answer.body, answer.content_type.as_deref(), &hints) {
        Ok(HisJsonAnswer::Fault { code, reason }) => Err(soap_fault(&code, &reason)),
        Ok(HisJsonAnswer::Wrapper(Ok(value))) if (200..300).contains(&answer.status) => {
            Ok(Bytes::from(value.to_string()))
        }
        Ok(HisJsonAnswer::Wrapper(_)) | Err(_) => Err(unusable(answer.status)),
    }
}

/// Fills `{name}` and `{method}` into a route URL. Names are checked to be URL-safe before they
/// get here, so no escaping is needed.
pub fn http_url(template: &str, name: &str) -> Result<reqwest::Url, UpstreamError> {
    let s = template
        .replace("{name}", name)
        .replace("{method}", short_name(name));
    reqwest::Url::parse(&s).map_err(|_| UpstreamError::Unsupported("route url is not a valid URL"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HospitalHis;

    #[test]
    fn targets_are_host_and_port_once_each() {
        let route = |url: &str| HisRoute {
            target: HisTarget::Http { url: url.into() },
            timeout: std::time::Duration::from_secs(1),
            delivery: None,
            credentials: Default::default(),
        };
        assert_eq!(
            target_of(&route("http://10.1.1.10/his/{method}").target),
            "10.1.1.10:80"
        );
        assert_eq!(
            target_of(&route("https://[::1]:8443/x").target),
            "[::1]:8443"
        );
        let config = HisConfig {
            default: Some(route("http://10.1.1.10:8080/his/{name}")),
            routes: [
                ("b".to_string(), route("http://10.1.1.10:8080/other")),
                ("a".to_string(), route("http://10.1.1.11:9000/x")),
            ]
            .into_iter()
            .collect(),
            max_response: 1,
            max_file_response: 1,
            hospitals: [
                (
                    "254".to_string(),
                    HospitalHis {
                        default: None,
                        routes: [("c".to_string(), route("http://10.1.1.10:8080/c"))]
                            .into_iter()
                            .collect(),
                    },
                ),
                (
                    "253".to_string(),
                    HospitalHis {
                        default: Some(route("http://10.2.1.10:8080/his/{name}")),
                        routes: [("a".to_string(), route("http://10.2.1.11/x"))]
                            .into_iter()
                            .collect(),
                    },
                ),
            ]
            .into_iter()
            .collect(),
        };
        let t = targets(&config);
        /// A row as (hospital, target, route names).
        type Row<'a> = (Option<&'a str>, &'a str, Vec<Option<&'a str>>);
        let names: Vec<Row<'_>> = t
            .iter()
            .map(|t| {
                let routes = t.routes.iter().map(|(n, _)| n.as_deref()).collect();
                (t.hospital, t.target.as_str(), routes)
            })
            .collect();
        assert_eq!(
            names,
            [
                (None, "10.1.1.10:8080", vec![None, Some("b")]),
                (None, "10.1.1.11:9000", vec![Some("a")]),
                (Some("253"), "10.2.1.10:8080", vec![None]),
                (Some("253"), "10.2.1.11:80", vec![Some("a")]),
                // Another hospital's row for a target the box's own routes call too.
                (Some("254"), "10.1.1.10:8080", vec![Some("c")]),
            ]
        );
    }

    #[test]
    fn url_template_takes_name_and_method() {
        let u = http_url(
            "http://10.1.1.10:8080/his/{method}?n={name}",
            "hospital.interface.createCard",
        )
        .expect("valid");
        assert_eq!(
            u.as_str(),
            "http://10.1.1.10:8080/his/createCard?n=hospital.interface.createCard"
        );
    }
}
