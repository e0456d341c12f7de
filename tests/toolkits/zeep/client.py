#!/usr/bin/env python3
"""zeep client for the prefront WebService. Used by tests/soap_toolkits.rs.

usage: client.py list <wsdl-url>
           prints the operations of the WSDL's SOAP binding, one a line, sorted
       client.py call <wsdl-url> <endpoint-url> <operation> <json-param>
           loads the WSDL from <wsdl-url> (the gateway's ?wsdl), binds the service to
           <endpoint-url>, calls <operation>(param=<json-param>) and prints the returned
           string on stdout (UTF-8), nothing else
"""
import sys

import zeep
import zeep.transports

BINDING = "{http://webservice.prefront/}PrefrontWebServiceSoapBinding"


def load(wsdl):
    transport = zeep.transports.Transport(timeout=10, operation_timeout=15)
    return zeep.Client(wsdl, transport=transport)


def main(argv):
    if len(argv) == 3 and argv[1] == "list":
        client = load(argv[2])
        ops = sorted(client.wsdl.bindings[BINDING]._operations)
        sys.stdout.write("".join(op + "\n" for op in ops))
        return 0
    if len(argv) == 6 and argv[1] == "call":
        wsdl, endpoint, op, param = argv[2:]
        client = load(wsdl)
        service = client.create_service(BINDING, endpoint)
        result = getattr(service, op)(param=param)
        sys.stdout.buffer.write(str(result).encode("utf-8"))
        sys.stdout.buffer.flush()
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
