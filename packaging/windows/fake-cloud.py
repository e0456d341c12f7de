#!/usr/bin/env python3
"""A stand-in for the cloud platform, for test-msi.sh: answers every POST with HTTP 200 and
{"success":true,"code":"0","msg":"ok","data":null}, and appends one JSON line per POST to RECORD:
{"time": <unix seconds>, "path": ..., "message_id": <X-Prefront-Message-Id or null>, "body": <text>}.
HEAD and GET (the box's link probe is HEAD <base_url>) get 200 with no body and are not recorded.

    fake-cloud.py PORT RECORD        # listens on 127.0.0.1:PORT until killed
"""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWER = b'{"success":true,"code":"0","msg":"ok","data":null}'
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    server_version = "fake-cloud/1"

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_POST(self):
        body = self.read_body()
        line = {
            "time": time.time(),
            "path": self.path,
            "message_id": self.headers.get("X-Prefront-Message-Id"),
            "body": body.decode("utf-8", "replace"),
        }
        with LOCK, open(self.server.record, "a", encoding="utf-8") as f:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
        self.send_response(200)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(ANSWER)))
        self.end_headers()
        self.wfile.write(ANSWER)

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD

    def log_message(self, fmt, *args):
        sys.stderr.write("%.3f fake-cloud: %s\n" % (time.time(), fmt % args))
        sys.stderr.flush()


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.record = sys.argv[2]
    server.daemon_threads = True
    sys.stderr.write("fake-cloud: listening on 127.0.0.1:%s\n" % sys.argv[1])
    sys.stderr.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
