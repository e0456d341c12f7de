//! The HIS: each `hospital.interface.*` name goes where the config routes it — plain HTTP JSON,
//! or a SOAP operation with the JSON as one string argument or mapped to XML elements.

use bytes::Bytes;

use super::{accept_json_answer, http_client, post, post_json, root_store, UpstreamError};
use crate::catalog::short_name;
use crate::config::{HisConfig, HisRoute, HisTarget, SoapParam, SoapTarget, SoapVersion};
use crate::soap::envelope::{self, HisAnswer, HisJsonAnswer, Payload};
use crate::soap::xmljson;

/// The box's connection pool to the HIS and the routing table.
#[derive(Debug, Clone)]
pub struct His {
    clients: super::Clients,
    config: HisConfig,
}

impl His {
    pub fn new(config: &HisConfig) -> Result<His, String> {
        let roots = root_store(None)?;
        Ok(His {
            clients: super::Clients::new(|| {
                http_client(roots.clone(), std::time::Duration::from_secs(3))
            })?,
            config: config.clone(),
        })
    }

    /// The route for a name, if this hospital serves it.
    pub fn route(&self, name: &str) -> Option<&HisRoute> {
        self.config.route_for(name)
    }

    /// Relays one JSON call to the HIS along `route`.
    pub async fn call(
        &self,
        name: &str,
        route: &HisRoute,
        request_id: &str,
        body: Bytes,
    ) -> Result<Bytes, UpstreamError> {
        match &route.target {
            HisTarget::Http { url } => {
                let url = http_url(url, name)?;
                let answer = post_json(
                    self.clients.here(),
                    url,
                    request_id,
                    body,
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
            None => format!("{}{operation}", t.namespace),
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
            "content-type",
            envelope::content_type(
                t.version,
                label,
                (t.version == SoapVersion::V12).then_some(action.as_str()),
            ),
        )];
        if t.version == SoapVersion::V11 {
            headers.push(("soapaction", format!("\"{action}\"")));
        }
        let url = reqwest::Url::parse(&t.url)
            .map_err(|_| UpstreamError::Unsupported("route url is not a valid URL"))?;
        let answer = post(
            self.clients.here(),
            url,
            request_id,
            Bytes::from(bytes),
            &headers,
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
