// gSOAP C++ client for the prefront WebService. Used by tests/soap_toolkits.rs, which generates
// the stubs from the WSDL first:
//   wsdl2h -o prefront.h prefrontWebService.wsdl
//   soapcpp2 -j -C -x -L -I/usr/share/gsoap/import prefront.h
//   g++ -O0 client.cpp soapC.cpp soapPrefrontWebServiceSoapBindingProxy.cpp -lgsoap++
//
// usage: client <endpoint-url> <operation> <json-param>
// Prints the operation's `return` string on stdout, nothing else. Operations: getPatientInfo and
// delete (the spec's `delete`, a C++ keyword: wsdl2h/soapcpp2 name its proxy method `delete_`).
#include <cstdio>
#include <cstring>
#include <string>

#include "PrefrontWebServiceSoapBinding.nsmap"
#include "soapPrefrontWebServiceSoapBindingProxy.h"

template <class Req, class Resp>
static int run(PrefrontWebServiceSoapBindingProxy &proxy, const char *endpoint, const std::string &param,
               int (PrefrontWebServiceSoapBindingProxy::*call)(const char *, const char *, Req *, Resp &)) {
    Req req;
    req.soap_default(proxy.soap);
    std::string p = param;
    req.param = &p;
    Resp resp;
    resp.soap_default(proxy.soap);
    if ((proxy.*call)(endpoint, NULL, &req, resp) != SOAP_OK) {
        proxy.soap_stream_fault(std::cerr);
        return 1;
    }
    if (resp.return_ == NULL) {
        std::fprintf(stderr, "no <return> in the answer\n");
        return 1;
    }
    std::fwrite(resp.return_->data(), 1, resp.return_->size(), stdout);
    std::fflush(stdout);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: %s <endpoint-url> <operation> <json-param>\n", argv[0]);
        return 2;
    }
    // UTF-8 in std::string as is (no Latin-1 conversion).
    PrefrontWebServiceSoapBindingProxy proxy(SOAP_C_UTFSTRING);
    proxy.soap->connect_timeout = 5;
    proxy.soap->send_timeout = 15;
    proxy.soap->recv_timeout = 15;
    const char *endpoint = argv[1];
    const std::string op = argv[2];
    const std::string param = argv[3];
    int rc;
    if (op == "getPatientInfo") {
        rc = run<ns1__getPatientInfo, ns1__getPatientInfoResponse>(
            proxy, endpoint, param, &PrefrontWebServiceSoapBindingProxy::getPatientInfo);
    } else if (op == "delete") {
        rc = run<ns1__delete, ns1__deleteResponse>(
            proxy, endpoint, param, &PrefrontWebServiceSoapBindingProxy::delete_);
    } else {
        std::fprintf(stderr, "unsupported operation %s\n", op.c_str());
        rc = 2;
    }
    proxy.destroy();
    return rc;
}
