//! The published WSDL: one document/literal wrapped operation per WebService method of the
//! catalogue, `method(String param)` returning `String return`, SOAP 1.1 binding only, in the
//! style an Apache CXF service published. `wsdl/prefrontWebService.wsdl` is this text, frozen and
//! checked in; a test fails if the catalogue and the file ever disagree.

use std::collections::BTreeMap;

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
}
