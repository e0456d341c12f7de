#!/usr/bin/env python3
"""The power-cut test's cloud: records every POST it receives, one JSON line each, and answers
like the cloud platform does for a reminder (HTTP 200, success:true).

    recorder.py --port PORT --out FILE

Each line: {"t": unix time, "path": ..., "id": X-Prefront-Message-Id or null,
"seq": the body's "seq" or null, "len": body length}. The file is opened in append mode and each
line is flushed before the answer is sent, so a delivery the box saw answered is on record.
Listens on 127.0.0.1 only. GET / answers 200 "recorder" (a readiness probe for the script).
"""

import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWER = json.dumps(
    {"success": True, "code": "10001", "msg": "ok (power-cut test recorder)", "data": None}
).encode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    lock = threading.Lock()
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):  # quiet: the JSON lines are the record
            pass

        def _answer(self, status, body, ctype="application/json"):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            self._answer(200, b"recorder\n", "text/plain")

        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n > 0 else b""
            seq = None
            try:
                v = json.loads(body)
                if isinstance(v, dict) and isinstance(v.get("seq"), int):
                    seq = v["seq"]
            except ValueError:
                pass
            line = json.dumps(
                {
                    "t": round(time.time(), 3),
                    "path": self.path,
                    "id": self.headers.get("X-Prefront-Message-Id"),
                    "seq": seq,
                    "len": len(body),
                }
            )
            with lock:
                os.write(fd, (line + "\n").encode())
            self._answer(200, ANSWER)

    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.allow_reuse_address = True
    srv = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"recorder: listening on 127.0.0.1:{args.port}, writing {args.out}", file=sys.stderr)
    srv.serve_forever()


if __name__ == "__main__":
    main()
