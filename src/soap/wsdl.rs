//! The published WSDL: one document/literal wrapped operation per WebService method of the
//! catalogue, `method(String param)` returning `String return`, SOAP 1.1 binding only, in the
//! style an Apache CXF service published. `wsdl/prefrontWebService.wsdl` is this text, frozen and
//! checked in; a test fails if the catalogue and the file ever disagree.

use std::collections::{BTreeMap, BTreeSet};

use crate::catalog::{Catalog, Direction};

/// The WSDL's target namespace: also the namespace of every request and response element.
pub const NAMESPACE: &str = "http://webservice.prefront/";
/// Where the service lives on the HIS listener.
pub const SERVICE_PATH: &str = "/prefront/services/prefrontWebService";
/// The `soap:address` written in the checked-in file; replaced when served.
pub const PLACEHOLDER_ADDRESS: &str = "http://localhost:8080/prefront/services/prefrontWebService";

/// The checked-in WSDL, as published.
pub const PUBLISHED: &str = include_str!("../../wsdl/prefrontWebService.wsdl");

/// Operation name → catalogue path, for every operation the WSDL publishes: the spec's method
/// names as printed (`hisRefun`, `andAndUpdate`, …) plus, where the path's last segment differs
/// and is free, that segment too. Built once.
pub fn operations() -> &'static BTreeMap<String, String> {
    static OPS: std::sync::OnceLock<BTreeMap<String, String>> = std::sync::OnceLock::new();
    OPS.get_or_init(build_operations)
}

fn build_operations() -> BTreeMap<String, String> {
    let mut ops = BTreeMap::new();
    let catalog = Catalog::get();
    let his = || {
        catalog
            .entries()
            .iter()
            .filter(|e| e.direction == Direction::HisToCloud)
    };
    for e in his() {
        if let (Some(m), Some(p)) = (&e.ws_method, &e.path) {
            ops.entry(m.clone()).or_insert_with(|| p.clone());
        }
    }
    for e in his() {
        if let (Some(m), Some(p)) = (&e.ws_method, &e.path) {
            let last = p.rsplit('/').next().unwrap_or(p);
            if last != m && !ops.contains_key(last) {
                ops.insert(last.to_string(), p.clone());
            }
        }
    }
    ops
}

/// The WSDL text for the current catalogue.
pub fn generate() -> String {
    let ops = operations();
    let mut s = String::new();
    s.push_str(&format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- prefrontWebService: the WebService the HIS calls (智慧区域微信公众号接口说明文档 1.6.68).
     Every operation takes the interface's JSON text in `param` and returns the JSON answer in
     `return`. Frozen: operations are only ever added, never renamed or removed. -->
<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:tns="{NAMESPACE}" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/" name="PrefrontWebService" targetNamespace="{NAMESPACE}">
  <wsdl:types>
    <xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:tns="{NAMESPACE}" elementFormDefault="unqualified" targetNamespace="{NAMESPACE}" version="1.0">
"#
    ));
    for op in ops.keys() {
        s.push_str(&format!(
            r#"      <xs:element name="{op}" type="tns:{op}"/>
      <xs:element name="{op}Response" type="tns:{op}Response"/>
"#
        ));
    }
    for op in ops.keys() {
        s.push_str(&format!(
            r#"      <xs:complexType name="{op}">
        <xs:sequence>
          <xs:element minOccurs="0" name="param" type="xs:string"/>
        </xs:sequence>
      </xs:complexType>
      <xs:complexType name="{op}Response">
        <xs:sequence>
          <xs:element minOccurs="0" name="return" type="xs:string"/>
        </xs:sequence>
      </xs:complexType>
"#
        ));
    }
    s.push_str("    </xs:schema>\n  </wsdl:types>\n");
    for op in ops.keys() {
        s.push_str(&format!(
            r#"  <wsdl:message name="{op}">
    <wsdl:part element="tns:{op}" name="parameters"/>
  </wsdl:message>
  <wsdl:message name="{op}Response">
    <wsdl:part element="tns:{op}Response" name="parameters"/>
  </wsdl:message>
"#
        ));
    }
    s.push_str("  <wsdl:portType name=\"PrefrontWebService\">\n");
    for op in ops.keys() {
        s.push_str(&format!(
            r#"    <wsdl:operation name="{op}">
      <wsdl:input message="tns:{op}" name="{op}"/>
      <wsdl:output message="tns:{op}Response" name="{op}Response"/>
    </wsdl:operation>
"#
        ));
    }
    s.push_str(
        r#"  </wsdl:portType>
  <wsdl:binding name="PrefrontWebServiceSoapBinding" type="tns:PrefrontWebService">
    <soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
"#,
    );
    for op in ops.keys() {
        s.push_str(&format!(
            r#"    <wsdl:operation name="{op}">
      <soap:operation soapAction="" style="document"/>
      <wsdl:input name="{op}">
        <soap:body use="literal"/>
      </wsdl:input>
      <wsdl:output name="{op}Response">
        <soap:body use="literal"/>
      </wsdl:output>
    </wsdl:operation>
"#
        ));
    }
    s.push_str(&format!(
        r#"  </wsdl:binding>
  <wsdl:service name="PrefrontWebService">
    <wsdl:port binding="tns:PrefrontWebServiceSoapBinding" name="PrefrontWebServicePort">
      <soap:address location="{PLACEHOLDER_ADDRESS}"/>
    </wsdl:port>
  </wsdl:service>
</wsdl:definitions>
"#
    ));
    s
}

/// The published WSDL with its `soap:address` pointing at `address`.
pub fn with_address(address: &str) -> String {
    let escaped = address
        .replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    PUBLISHED.replacen(PLACEHOLDER_ADDRESS, &escaped, 1)
}

/// What a WSDL lists (`read`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Listed {
    /// The operations of its port types or interfaces; those of its bindings when it has
    /// neither.
    pub operations: BTreeSet<String>,
    /// How many documents it imports (their operations are not read).
    pub imports: usize,
}

/// Why bytes are not a WSDL `read` can use. The text completes "the document …".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("is not well-formed XML ({0})")]
    Malformed(String),
    #[error("is not a WSDL (its root element is <{0}>)")]
    NotWsdl(String),
    #[error("is not a WSDL (not XML)")]
    NotXml,
}

/// What a WSDL lists: the operation names of its port types (WSDL 1.1) or interfaces (2.0), and
/// how many documents it imports. The root must be `definitions` (or `description`), any prefix.
/// The one WSDL reader: `doctor` reads a SOAP HIS's WSDL with it, and a test reads ours.
pub fn read(xml: &[u8]) -> Result<Listed, ReadError> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut stack: Vec<Vec<u8>> = Vec::new();
    let mut operations = BTreeSet::new();
    let mut binding_operations = BTreeSet::new();
    let mut imports = 0;
    let mut saw_root = false;
    loop {
        let event = reader.read_event().map_err(|e| {
            ReadError::Malformed(format!("{e} at byte {}", reader.buffer_position()))
        })?;
        let (start, empty) = match event {
            Event::Start(s) => (s, false),
            Event::Empty(s) => (s, true),
            Event::End(_) => {
                stack.pop();
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        let local = start.local_name().as_ref().to_vec();
        if stack.is_empty() && saw_root {
            continue;
        }
        if stack.is_empty() && local != b"definitions" && local != b"description" {
            return Err(ReadError::NotWsdl(
                String::from_utf8_lossy(start.name().as_ref()).into_owned(),
            ));
        }
        saw_root = true;
        if stack.len() == 1 && local == b"import" {
            imports += 1;
        }
        if local == b"operation" {
            let parent = stack.last().map(Vec::as_slice);
            let name = start
                .attributes()
                .flatten()
                .find(|a| a.key.local_name().as_ref() == b"name")
                .map(|a| String::from_utf8_lossy(&a.value).trim().to_string());
            if let Some(name) = name.filter(|n| !n.is_empty()) {
                match parent {
                    Some(b"portType" | b"interface") => {
                        operations.insert(name);
                    }
                    Some(b"binding") => {
                        binding_operations.insert(name);
                    }
                    _ => {}
                }
            }
        }
        if !empty {
            stack.push(local);
        }
    }
    if !saw_root {
        return Err(ReadError::NotXml);
    }
    if operations.is_empty() {
        operations = binding_operations;
    }
    Ok(Listed {
        operations,
        imports,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `wsdl/` is frozen: a catalogue change that changes the WSDL must update the file on purpose
    /// (`cargo run -- wsdl --generate > wsdl/prefrontWebService.wsdl`) and be reviewed.
    #[test]
    fn published_wsdl_matches_the_catalogue() {
        assert_eq!(
            PUBLISHED,
            generate(),
            "wsdl/prefrontWebService.wsdl is out of date"
        );
    }

    #[test]
    fn every_spec_method_and_differing_path_name_is_an_operation() {
        let ops = operations();
        for m in [
            "hisRefun",
            "hisRefund",
            "andAndUpdate",
            "addAndUpdate",
            "delete",
            "getQrCodeForHospitalEducation",
            "getQrCode",
            "sendPrescriptionInfoMsg",
            "prescriptionInfo",
        ] {
            assert!(ops.contains_key(m), "{m}");
        }
        assert_eq!(ops["hisRefun"], "prefront/hospitalizationCosts/hisRefund");
        let with_method = Catalog::get()
            .entries()
            .iter()
            .filter_map(|e| e.ws_method.as_deref())
            .collect::<std::collections::BTreeSet<_>>();
        assert_eq!(with_method.len(), 35);
        assert_eq!(ops.len(), 39);
    }

    #[test]
    fn address_is_substituted_and_escaped() {
        let w = with_address("http://10.1.1.5:8080/prefront/services/prefrontWebService?a=1&b=2");
        assert!(w.contains(
            "location=\"http://10.1.1.5:8080/prefront/services/prefrontWebService?a=1&amp;b=2\""
        ));
        assert!(!w.contains(PLACEHOLDER_ADDRESS));
    }

    #[test]
    fn wsdl_operations_come_from_the_port_type() {
        let wsdl = br#"<?xml version="1.0"?>
<definitions xmlns="http://schemas.xmlsoap.org/wsdl/" xmlns:tns="http://his/">
  <portType name="P">
    <operation name="createCard"><input message="tns:a"/></operation>
    <operation name="queryWaitPay"/>
  </portType>
  <binding name="B" type="tns:P"><operation name="createCard"/></binding>
</definitions>"#;
        let Listed {
            operations: ops,
            imports,
        } = read(wsdl).expect("a WSDL");
        assert_eq!(
            ops.into_iter().collect::<Vec<_>>(),
            ["createCard", "queryWaitPay"]
        );
        assert_eq!(imports, 0);
    }

    #[test]
    fn html_is_not_a_wsdl() {
        let err = read(b"<html><body>404</body></html>")
            .expect_err("not a WSDL")
            .to_string();
        assert!(err.contains("<html>"), "{err}");
    }

    /// The reader reads our own WSDL: every operation published, none imported.
    #[test]
    fn the_published_wsdl_reads_back_as_its_operations() {
        let listed = read(PUBLISHED.as_bytes()).expect("our WSDL");
        assert_eq!(
            listed.operations,
            operations().keys().cloned().collect::<BTreeSet<_>>()
        );
        assert_eq!(listed.imports, 0);
    }
}
