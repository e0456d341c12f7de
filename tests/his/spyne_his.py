#!/usr/bin/env python3
"""A real SOAP HIS for the tests: spyne (document/literal wrapped, lxml schema validation), the
way a hospital's WebService answers. Prints its port on stdout once it listens on 127.0.0.1.

Operations (namespace http://his.example/):
  createCard(param)          -> JSON text echoing what it got, as a .NET/Java HIS would answer
  queryWaitPay(param)        -> the spec's 3.1.1 answer shape with a one-element data list
  Call(FuncCode, xml)        -> a dispatcher-style service: the function code picks the work
  fail(param)                -> a SOAP Fault (Server) every time
Every request's raw SOAPAction header is recorded and returned inside the answers.
"""
import json
import sys
from wsgiref.simple_server import make_server, WSGIRequestHandler

from spyne import Application, ServiceBase, Unicode, rpc, Fault
from spyne.protocol.soap import Soap11, Soap12
from spyne.server.wsgi import WsgiApplication

NS = "http://his.example/"
LAST_ACTION = {"value": None}


class His(ServiceBase):
    @rpc(Unicode, _returns=Unicode, _body_style="wrapped")
    def createCard(ctx, param):
        return json.dumps({"success": True, "msg": "成功", "code": "10001",
                           "data": {"op": "createCard", "param": json.loads(param),
                                    "soapAction": LAST_ACTION["value"]}}, ensure_ascii=False)

    @rpc(Unicode, _returns=Unicode)
    def queryWaitPay(ctx, param):
        req = json.loads(param)
        return json.dumps({"success": True, "msg": "", "code": "10001",
                           "data": [{"id": "0012", "medicalCardNumber": req.get("medicalCardNumber"),
                                     "detail": [{"itemName": "血常规", "amount": "12.50"}]}]},
                          ensure_ascii=False)

    @rpc(Unicode, Unicode, _returns=Unicode)
    def Call(ctx, FuncCode, xml):
        return json.dumps({"success": True, "msg": "成功", "code": "10001",
                           "data": {"funcCode": FuncCode, "param": json.loads(xml)}}, ensure_ascii=False)

    @rpc(Unicode, _returns=Unicode)
    def fail(ctx, param):
        raise Fault(faultcode="Server", faultstring="HIS database offline")


def main():
    version = sys.argv[1] if len(sys.argv) > 1 else "1.1"
    proto = Soap12 if version == "1.2" else Soap11
    app = Application([His], tns=NS, in_protocol=proto(validator="lxml"), out_protocol=proto())
    wsgi = WsgiApplication(app)

    def recording(environ, start_response):
        LAST_ACTION["value"] = environ.get("HTTP_SOAPACTION") or environ.get("CONTENT_TYPE")
        return wsgi(environ, start_response)

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    server = make_server("127.0.0.1", 0, recording, handler_class=Quiet)
    print(server.server_port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
