//! The server role: the HIS calls our published WebService; we parse its call and write our
//! answer or a fault in the caller's SOAP version.

use quick_xml::events::BytesStart;

use super::{
    decode, env_ns, escape, local, prolog, EnvelopeError, Step, Walker, NS_SOAP11, NS_SOAP12,
};
use crate::config::SoapVersion;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoapCall {
    pub version: SoapVersion,
    /// Local name of the operation element, e.g. `getPatientInfo`.
    pub operation: String,
    /// The text of the parameter element: the interface's JSON.
    pub param: String,
    /// The charset label the caller used, when not UTF-8, so the answer can use it too.
    pub charset: Option<String>,
}

/// The namespace URI an element's prefix is bound to, from declarations on that element or
/// the ones collected on its ancestors.
fn namespace_of(start: &BytesStart<'_>, inherited: &[(String, String)]) -> Option<String> {
    let name = start.name();
    let prefix = name
        .prefix()
        .map(|p| String::from_utf8_lossy(p.as_ref()).into_owned());
    let wanted = match &prefix {
        Some(p) => format!("xmlns:{p}"),
        None => "xmlns".to_string(),
    };
    for attr in start.attributes().flatten() {
        if attr.key.as_ref() == wanted.as_bytes() {
            return Some(String::from_utf8_lossy(&attr.value).into_owned());
        }
    }
    let p = prefix.unwrap_or_default();
    inherited
        .iter()
        .rev()
        .find(|(k, _)| *k == p)
        .map(|(_, v)| v.clone())
}

fn declarations(start: &BytesStart<'_>) -> Vec<(String, String)> {
    start
        .attributes()
        .flatten()
        .filter_map(|a| {
            let key = a.key.as_ref();
            let prefix = if key == b"xmlns" {
                String::new()
            } else {
                String::from_utf8_lossy(key.strip_prefix(b"xmlns:")?).into_owned()
            };
            Some((prefix, String::from_utf8_lossy(&a.value).into_owned()))
        })
        .collect()
}

const PARAM_NAMES: &[&str] = &["param", "arg0", "args0", "in0"];

/// Parses a call to the published WebService.
pub fn parse_call(body: &[u8], content_type: Option<&str>) -> Result<SoapCall, EnvelopeError> {
    let (text, charset) = decode(body, content_type)?;
    let mut w = Walker::new(&text);
    // Root: the Envelope.
    let (root, root_empty) = loop {
        match w.next()? {
            Step::Open(s, empty) => break (s, empty),
            Step::Text(t) if t.trim().is_empty() => continue,
            Step::Text(_) => return Err(EnvelopeError::NotAnEnvelope("text".into())),
            Step::End => return Err(EnvelopeError::NotAnEnvelope("nothing".into())),
            Step::Close => return Err(w.malformed("unexpected end tag")),
        }
    };
    let root_name = local(root.name().as_ref()).to_string();
    if root_name != "Envelope" {
        return Err(EnvelopeError::NotAnEnvelope(root_name));
    }
    let mut scopes = declarations(&root);
    let version = match namespace_of(&root, &[]).as_deref() {
        Some(NS_SOAP12) => SoapVersion::V12,
        Some(NS_SOAP11) => SoapVersion::V11,
        // No or an odd namespace: legacy hand-built envelopes; trust the Content-Type.
        _ if content_type
            .is_some_and(|c| c.to_ascii_lowercase().contains("application/soap+xml")) =>
        {
            SoapVersion::V12
        }
        _ => SoapVersion::V11,
    };
    if root_empty {
        return Err(EnvelopeError::NoBody);
    }
    // Find the Body among the Envelope's children (a Header may come first).
    loop {
        match w.next()? {
            Step::Open(s, empty) => {
                if local(s.name().as_ref()) == "Body" {
                    if empty {
                        return Err(EnvelopeError::NoOperation);
                    }
                    scopes.extend(declarations(&s));
                    break;
                }
                if !empty {
                    w.skip()?;
                }
            }
            Step::Text(_) => {}
            Step::Close | Step::End => return Err(EnvelopeError::NoBody),
        }
    }
    // The operation element: the Body's first child.
    let (op, op_empty) = loop {
        match w.next()? {
            Step::Open(s, empty) => break (s, empty),
            Step::Text(_) => {}
            Step::Close | Step::End => return Err(EnvelopeError::NoOperation),
        }
    };
    let operation = local(op.name().as_ref()).to_string();
    let mut children: Vec<(String, String)> = Vec::new();
    let mut own_text = String::new();
    if !op_empty {
        loop {
            match w.next()? {
                Step::Open(s, empty) => {
                    let name = local(s.name().as_ref()).to_string();
                    let value = if empty {
                        String::new()
                    } else {
                        match w.text_until_close()? {
                            Ok(t) => t,
                            Err(()) => {
                                return Err(EnvelopeError::Malformed(format!(
                                    "`{name}` must hold text (the JSON), not elements"
                                )))
                            }
                        }
                    };
                    children.push((name, value));
                }
                Step::Text(t) => own_text.push_str(&t),
                Step::Close => break,
                Step::End => return Err(w.malformed("document ends inside the operation")),
            }
        }
    }
    let param = if let Some((_, v)) = children
        .iter()
        .find(|(n, _)| PARAM_NAMES.iter().any(|p| p.eq_ignore_ascii_case(n)))
    {
        v.clone()
    } else if children.len() == 1 {
        children.remove(0).1
    } else if children.is_empty() {
        own_text.trim().to_string()
    } else {
        return Err(EnvelopeError::AmbiguousParameter(operation));
    };
    // The rest of the Body and Envelope must close properly.
    w.skip()?; // Body
    w.skip()?; // Envelope
    w.finish()?;
    Ok(SoapCall {
        version,
        operation,
        param,
        charset,
    })
}

/// The answer to a call of the published WebService: `<return>` holds the JSON text, in the
/// style CXF answers (`ns2:` wrapper, unqualified `return`).
pub fn call_response(
    version: SoapVersion,
    namespace: &str,
    operation: &str,
    ret: &str,
    charset: Option<&str>,
) -> String {
    format!(
        "{}<soap:Envelope xmlns:soap=\"{}\"><soap:Body><ns2:{operation}Response xmlns:ns2=\"{}\"><return>{}</return></ns2:{operation}Response></soap:Body></soap:Envelope>",
        prolog(charset),
        env_ns(version),
        escape(namespace),
        escape(ret)
    )
}

/// A SOAP Fault blaming the caller (1.1 `Client`, 1.2 `Sender`).
pub fn client_fault(version: SoapVersion, reason: &str) -> String {
    let reason = escape(reason);
    match version {
        SoapVersion::V11 => format!(
            "{}<soap:Envelope xmlns:soap=\"{NS_SOAP11}\"><soap:Body><soap:Fault><faultcode>soap:Client</faultcode><faultstring>{reason}</faultstring></soap:Fault></soap:Body></soap:Envelope>",
            prolog(None)
        ),
        SoapVersion::V12 => format!(
            "{}<soap:Envelope xmlns:soap=\"{NS_SOAP12}\"><soap:Body><soap:Fault><soap:Code><soap:Value>soap:Sender</soap:Value></soap:Code><soap:Reason><soap:Text xml:lang=\"en\">{reason}</soap:Text></soap:Reason></soap:Fault></soap:Body></soap:Envelope>",
            prolog(None)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CXF: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><ns2:getPatientInfo xmlns:ns2="http://webservice.prefront/"><param>{"medicalCardNumber":"001"}</param></ns2:getPatientInfo></soap:Body></soap:Envelope>"#;

    #[test]
    fn cxf_style_call() {
        let c = parse_call(CXF.as_bytes(), Some("text/xml; charset=UTF-8")).expect("parses");
        assert_eq!(c.version, SoapVersion::V11);
        assert_eq!(c.operation, "getPatientInfo");
        assert_eq!(c.param, r#"{"medicalCardNumber":"001"}"#);
        assert_eq!(c.charset, None);
    }

    #[test]
    fn legacy_shapes_are_accepted() {
        let cases = [
            // .NET: default namespace, qualified param, xsi declarations, a Header first.
            r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Header><x:Auth xmlns:x="urn:x"><x:u>a</x:u></x:Auth></soap:Header><soap:Body><genCard xmlns="http://webservice.prefront/"><param>{"a":"1&amp;2"}</param></genCard></soap:Body></soap:Envelope>"#,
            // Axis 1: in0, SOAP-ENV prefix, xsi:type.
            r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><SOAP-ENV:Body><m:genCard xmlns:m="urn:any"><in0 xsi:type="xsd:string">{"a":"1&amp;2"}</in0></m:genCard></SOAP-ENV:Body></SOAP-ENV:Envelope>"#,
            // CDATA, arg0.
            r#"<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body><ns2:genCard xmlns:ns2="x"><arg0><![CDATA[{"a":"1&2"}]]></arg0></ns2:genCard></S:Body></S:Envelope>"#,
            // A lone child of any name.
            r#"<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body><genCard><json>{"a":"1&amp;2"}</json></genCard></e:Body></e:Envelope>"#,
        ];
        for (i, c) in cases.iter().enumerate() {
            let call = parse_call(c.as_bytes(), None).unwrap_or_else(|e| panic!("case {i}: {e}"));
            assert_eq!(call.operation, "genCard", "case {i}");
            assert_eq!(call.param, r#"{"a":"1&2"}"#, "case {i}");
        }
    }

    #[test]
    fn soap12_gbk_and_bom() {
        let env = r#"<?xml version="1.0" encoding="GBK"?><env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Body><genCard><param>{"name":"张三"}</param></genCard></env:Body></env:Envelope>"#;
        let (gbk, _, _) = encoding_rs::GBK.encode(env);
        let c = parse_call(&gbk, Some("application/soap+xml")).expect("parses");
        assert_eq!(c.version, SoapVersion::V12);
        assert_eq!(c.param, r#"{"name":"张三"}"#);
        assert_eq!(c.charset.as_deref(), Some("GBK"));
        let mut bom = b"\xEF\xBB\xBF".to_vec();
        bom.extend_from_slice(CXF.as_bytes());
        assert!(parse_call(&bom, None).is_ok());
    }

    #[test]
    fn hostile_and_broken_input_is_refused() {
        let laughs = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><a><param>&lol2;</param></a></soap:Body></soap:Envelope>"#;
        assert_eq!(
            parse_call(laughs.as_bytes(), None),
            Err(EnvelopeError::Doctype)
        );
        let undefined = CXF.replace("001", "&xxe;");
        assert!(matches!(
            parse_call(undefined.as_bytes(), None),
            Err(EnvelopeError::Malformed(_))
        ));
        let deep = format!(
            "<soap:Envelope xmlns:soap=\"{NS_SOAP11}\"><soap:Body><op><param>{}x{}</param></op></soap:Body></soap:Envelope>",
            "<a>".repeat(10_000),
            "</a>".repeat(10_000)
        );
        assert_eq!(
            parse_call(deep.as_bytes(), None),
            Err(EnvelopeError::TooDeep)
        );
        assert!(matches!(
            parse_call(&CXF.as_bytes()[..CXF.len() - 20], None),
            Err(EnvelopeError::Malformed(_))
        ));
        assert!(matches!(
            parse_call(b"<html><body>hi</body></html>", None),
            Err(EnvelopeError::NotAnEnvelope(_))
        ));
        assert!(matches!(
            parse_call(b"{\"json\":1}", None),
            Err(EnvelopeError::NotAnEnvelope(_))
        ));
        assert!(parse_call(b"\xff\xfe<x/>", None).is_err());
        let two = CXF
            .replace("<param>", "<a>1</a><b>2</b><c>")
            .replace("</param>", "</c>");
        assert_eq!(
            parse_call(two.as_bytes(), None),
            Err(EnvelopeError::AmbiguousParameter("getPatientInfo".into()))
        );
        let trailing = format!("{CXF}<extra/>");
        assert!(parse_call(trailing.as_bytes(), None).is_err());
    }
}
