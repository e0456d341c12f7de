#!/usr/bin/env python3
"""Writes the hand-written client-family envelopes in tests/fixtures/soap/ (see the README there).

These stacks cannot run on this machine (Microsoft WCF, Delphi, PowerBuilder, an Axis 1 rpc/encoded
Call.invoke, string-built clients), so their envelopes are written after each stack's documented
output for a document/literal (or rpc-ish) call of getPatientInfo. The captured ones (zeep, jaxws,
gsoap, and the .NET ones from Mono: dotnet_asmx, dotnet_asmx_soap12, bom) are made with
capture_server.py.

usage: python3 tests/toolkits/make_handwritten_fixtures.py [out-dir]   (default: tests/fixtures/soap)
"""
import os
import sys

PARAM = '{"medicalCardNumber":"001000056254587","hospitalId":"253"}'
PARAM_ZH = '{"medicalCardNumber":"001000056254587","hospitalId":"253","name":"张三"}'
NS = "http://webservice.prefront/"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
ENC = "http://schemas.xmlsoap.org/soap/encoding/"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
XSD = "http://www.w3.org/2001/XMLSchema"


def esc_quot(s):
    """Entity-escape the way Axis 1 / EasySoap text writers do (& < > and the double quote)."""
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


FIXTURES = {
    # A client hand-built after an asmx service (what a proxy of an asmx's own WSDL sends): SOAP
    # 1.1, xsi/xsd declared on the Envelope, the wrapper and <param> qualified through the default
    # namespace, SOAPAction = namespace + operation (the asmx convention). What Mono's wsdl proxy
    # of *our* WSDL sends is captured in dotnet_asmx.xml.
    "asmx_qualified": (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<soap:Envelope xmlns:soap="{SOAP11}" xmlns:xsi="{XSI}" xmlns:xsd="{XSD}">'
        f'<soap:Body><getPatientInfo xmlns="{NS}"><param>{PARAM}</param></getPatientInfo>'
        '</soap:Body></soap:Envelope>',
        ["Content-Type: text/xml; charset=utf-8",
         f'SOAPAction: "{NS}getPatientInfo"'],
        "utf-8",
    ),
    # WCF client, customBinding textMessageEncoding messageVersion="Soap12" (no WS-Addressing),
    # XmlSerializerFormat as svcutil generates for this WSDL: SOAP 1.2, the action in the
    # Content-Type's action parameter (svcutil's default <ns><portType>/<op>Request), no SOAPAction
    # header, xsi/xsd declared on s:Body, <param xmlns=""> (unqualified).
    "wcf_soap12": (
        f'<s:Envelope xmlns:s="{SOAP12}">'
        f'<s:Body xmlns:xsi="{XSI}" xmlns:xsd="{XSD}">'
        f'<getPatientInfo xmlns="{NS}"><param xmlns="">{PARAM}</param></getPatientInfo>'
        '</s:Body></s:Envelope>',
        ['Content-Type: application/soap+xml; charset=utf-8; '
         f'action="{NS}PrefrontWebService/getPatientInfoRequest"'],
        "utf-8",
    ),
    # Delphi 7-2007 THTTPRIO (OPToSoapDomConv): SOAP-ENV/SOAP-ENC prefixes, encodingStyle on
    # the Body (rpc-ish even against a literal service), NS1 prefix for the operation, xsi:type
    # on the parameter, a bare <?xml version="1.0"?> prolog and a Content-Type without charset.
    "delphi": (
        '<?xml version="1.0"?>\r\n'
        f'<SOAP-ENV:Envelope xmlns:SOAP-ENV="{SOAP11}" xmlns:xsd="{XSD}" xmlns:xsi="{XSI}" '
        f'xmlns:SOAP-ENC="{ENC}"><SOAP-ENV:Body SOAP-ENV:encodingStyle="{ENC}">'
        f'<NS1:getPatientInfo xmlns:NS1="{NS}"><param xsi:type="xsd:string">{PARAM}</param>'
        '</NS1:getPatientInfo></SOAP-ENV:Body></SOAP-ENV:Envelope>\r\n',
        ["Content-Type: text/xml", 'SOAPAction: ""'],
        "utf-8",
    ),
    # PowerBuilder 9-12 SOAP engine (EasySoap++-based PBSoapClient): one-letter uppercase
    # prefixes (E: envelope, A: encoding), encodingStyle on the Envelope, Java-style positional
    # parameter name arg0 with s:type="y:string", quotes entity-escaped, a quoted charset value.
    "powerbuilder": (
        '<?xml version="1.0" encoding="UTF-8"?>\r\n'
        f'<E:Envelope xmlns:E="{SOAP11}" xmlns:A="{ENC}" xmlns:s="{XSI}" xmlns:y="{XSD}" '
        f'E:encodingStyle="{ENC}"><E:Body><M:getPatientInfo xmlns:M="{NS}">'
        f'<arg0 s:type="y:string">{esc_quot(PARAM)}</arg0></M:getPatientInfo></E:Body></E:Envelope>',
        ['Content-Type: text/xml; charset="UTF-8"', 'SOAPAction: "getPatientInfo"'],
        "utf-8",
    ),
    # Apache Axis 1.4 / XFire-era rpc/encoded client (Call.invoke): parameter named in0,
    # soapenc:string typed, encodingStyle on the operation element, quotes as &quot;.
    "axis1_in0": (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<soapenv:Envelope xmlns:soapenv="{SOAP11}" xmlns:xsd="{XSD}" xmlns:xsi="{XSI}">'
        f'<soapenv:Body><ns1:getPatientInfo soapenv:encodingStyle="{ENC}" xmlns:ns1="{NS}">'
        f'<in0 xsi:type="soapenc:string" xmlns:soapenc="{ENC}">{esc_quot(PARAM)}</in0>'
        '</ns1:getPatientInfo></soapenv:Body></soapenv:Envelope>',
        ["Content-Type: text/xml; charset=utf-8", 'SOAPAction: ""'],
        "utf-8",
    ),
    # soapUI's request template (web: prefix, empty Header, pretty-printed) as HIS vendors copy
    # it into string-built clients, with the JSON wrapped in CDATA.
    "cdata": (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<soapenv:Envelope xmlns:soapenv="{SOAP11}" xmlns:web="{NS}">\n'
        '   <soapenv:Header/>\n'
        '   <soapenv:Body>\n'
        '      <web:getPatientInfo>\n'
        f'         <param><![CDATA[{PARAM}]]></param>\n'
        '      </web:getPatientInfo>\n'
        '   </soapenv:Body>\n'
        '</soapenv:Envelope>\n',
        ["Content-Type: text/xml;charset=UTF-8", 'SOAPAction: ""'],
        "utf-8",
    ),
    # A legacy Chinese HIS (VB6/PowerBuilder + MSXML, string-built) that sends GBK bytes,
    # declared both in the prolog and in the Content-Type.
    "gbk": (
        '<?xml version="1.0" encoding="GBK"?>\r\n'
        f'<soapenv:Envelope xmlns:soapenv="{SOAP11}" xmlns:web="{NS}">'
        f'<soapenv:Body><web:getPatientInfo><param>{PARAM_ZH}</param></web:getPatientInfo>'
        '</soapenv:Body></soapenv:Envelope>',
        ["Content-Type: text/xml; charset=GBK", 'SOAPAction: ""'],
        "gbk",
    ),
}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "soap")
    os.makedirs(out, exist_ok=True)
    for name, (body, headers, charset) in FIXTURES.items():
        with open(os.path.join(out, name + ".xml"), "wb") as f:
            f.write(body.encode(charset))
        with open(os.path.join(out, name + ".headers"), "w", encoding="ascii", newline="\n") as f:
            f.write("\n".join(headers) + "\n")
    print(f"wrote {len(FIXTURES)} fixtures to {out}")


if __name__ == "__main__":
    main()
