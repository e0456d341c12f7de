#!/usr/bin/env python3
"""Capture server: records exactly what a SOAP client toolkit sends.

Used by hand to (re)make tests/fixtures/soap/<family>.xml and .headers (see the README there):

    python3 tests/toolkits/capture_server.py --wsdl wsdl/prefrontWebService.wsdl --out /tmp/cap --port 18080

It listens on 127.0.0.1 only. GET ...?wsdl answers the WSDL with soap:address pointed at this
server; every POST is stored as <out>/<n>.body (raw bytes) and <out>/<n>.headers (all request
headers, as received) and answered with a canned SOAP 1.1 (or 1.2, following the request's
Content-Type) getPatientInfoResponse whose <return> holds a small JSON envelope.
The server exits after --max-posts POSTs (default 50) or --timeout seconds (default 120).
"""
import argparse
import http.server
import os
import re
import sys
import threading

CANNED_JSON = '{"success":true,"msg":"ok","code":"10001","data":null}'


def soap_answer(soap12, op):
    env_ns = ("http://www.w3.org/2003/05/soap-envelope" if soap12
              else "http://schemas.xmlsoap.org/soap/envelope/")
    return ('<?xml version="1.0" encoding="UTF-8"?>'
            f'<soap:Envelope xmlns:soap="{env_ns}"><soap:Body>'
            f'<ns2:{op}Response xmlns:ns2="http://webservice.prefront/">'
            f'<return>{CANNED_JSON}</return>'
            f'</ns2:{op}Response></soap:Body></soap:Envelope>').encode("utf-8")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wsdl", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--max-posts", type=int, default=50)
    ap.add_argument("--timeout", type=float, default=120)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    wsdl_text = open(args.wsdl, encoding="utf-8").read()
    state = {"n": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):
            sys.stderr.write("capture: " + (fmt % a) + "\n")

        def _send(self, status, ctype, body):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if "wsdl" not in self.path.lower():
                self._send(404, "text/plain", b"not found\n")
                return
            host = self.headers.get("Host", f"127.0.0.1:{self.server.server_port}")
            loc = f"http://{host}/prefront/services/prefrontWebService"
            text = re.sub(r'location="[^"]*"', f'location="{loc}"', wsdl_text)
            self._send(200, "text/xml;charset=UTF-8", text.encode("utf-8"))

        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(n)
            state["n"] += 1
            stem = os.path.join(args.out, str(state["n"]))
            with open(stem + ".body", "wb") as f:
                f.write(body)
            with open(stem + ".headers", "w", encoding="utf-8") as f:
                f.write(f"{self.command} {self.path} {self.request_version}\n")
                for k, v in self.headers.items():
                    f.write(f"{k}: {v}\n")
            ctype = self.headers.get("Content-Type", "")
            soap12 = "soap+xml" in ctype.lower()
            m = re.search(rb"<(?:[\w.-]+:)?(\w+)[\s>/]", body.split(b"Body", 1)[-1])
            op = m.group(1).decode() if m else "getPatientInfo"
            self._send(200, ("application/soap+xml" if soap12 else "text/xml") + ";charset=UTF-8",
                       soap_answer(soap12, op))
            if state["n"] >= args.max_posts:
                threading.Thread(target=self.server.shutdown, daemon=True).start()

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(srv.server_port, flush=True)
    threading.Timer(args.timeout, srv.shutdown).start()
    srv.serve_forever()


if __name__ == "__main__":
    main()
