#!/usr/bin/env python3
"""The power-cut test's HIS: several callers POST reminders to the box, each with a unique
sequence number in the JSON body, and write down which ones the box acknowledged.

    load.py --url http://127.0.0.1:PORT/prefront/sendTipMessage/payment --acked FILE
            --base N --workers W --duration SECONDS [--max-calls M] [--pad BYTES] [--rate R]

Caller w sends seq = base + w*100000 + i (i = 0, 1, ...), one call after another on one
keep-alive connection. A call is acknowledged when the answer is HTTP 200 with the header
X-Prefront-Queued and the JSON code "10001" (the box answers so only after the fsync); its line
"seq queued-id" is appended to FILE at once (O_APPEND, one write per line), so the file is right
whenever this process is stopped. A header without code 10001 (or the reverse) is counted as an
anomaly, not as an acknowledgement.

Every loop is bounded: a caller stops after --duration seconds, after --max-calls calls, or after
3 connection failures in a row (the VM was killed: the forwarded port is closed). At the end one
JSON line with the counts goes to stdout.
"""

import argparse
import http.client
import json
import os
import sys
import threading
import time
import urllib.parse


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--acked", required=True)
    ap.add_argument("--base", type=int, required=True)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--max-calls", type=int, default=50000, help="per caller")
    ap.add_argument("--pad", type=int, default=64, help="filler bytes in each body")
    ap.add_argument("--timeout", type=float, default=30.0, help="per call")
    ap.add_argument("--rate", type=float, default=0.0, help="calls/s per caller (0: flat out)")
    args = ap.parse_args()
    if args.max_calls > 100000:
        sys.exit("load.py: --max-calls must stay below 100000 (the callers' seq ranges)")

    u = urllib.parse.urlsplit(args.url)
    host, port, path = u.hostname, u.port or 80, u.path
    fd = os.open(args.acked, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    lock = threading.Lock()
    totals = {
        "sent": 0,
        "acked": 0,
        "refused": 0,  # answered, but not acknowledged (10003, 40001...)
        "errors": 0,  # no answer: connection refused/reset, timeout
        "anomalies": 0,
        "codes": {},
    }
    deadline = time.monotonic() + args.duration
    t0 = time.monotonic()
    first_error_at = [None]

    def caller(w):
        conn = None
        failures = 0
        start = time.monotonic()
        for i in range(args.max_calls):
            if time.monotonic() >= deadline or failures >= 3:
                break
            if args.rate > 0:
                wait = start + i / args.rate - time.monotonic()
                if wait > 0:
                    time.sleep(min(wait, max(0.0, deadline - time.monotonic())))
            seq = args.base + w * 100000 + i
            body = json.dumps(
                {
                    "hospitalId": "253",
                    "patientName": "power cut",
                    "seq": seq,
                    "caller": w,
                    "pad": "x" * args.pad,
                }
            ).encode()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(host, port, timeout=args.timeout)
                with lock:
                    totals["sent"] += 1
                conn.request(
                    "POST", path, body=body, headers={"Content-Type": "application/json"}
                )
                resp = conn.getresponse()
                data = resp.read()
                status = resp.status
                queued = resp.getheader("X-Prefront-Queued")
            except (OSError, http.client.HTTPException):
                with lock:
                    totals["errors"] += 1
                    if first_error_at[0] is None:
                        first_error_at[0] = round(time.monotonic() - t0, 2)
                failures += 1
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.2)
                continue
            failures = 0
            code = None
            try:
                code = json.loads(data).get("code")
            except (ValueError, AttributeError):
                pass
            ok = status == 200 and queued is not None and code == "10001"
            with lock:
                key = f"{status}/{code}"
                totals["codes"][key] = totals["codes"].get(key, 0) + 1
                if ok:
                    totals["acked"] += 1
                    os.write(fd, f"{seq} {queued}\n".encode())
                else:
                    totals["refused"] += 1
                    if (queued is not None) != (code == "10001"):
                        totals["anomalies"] += 1
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=caller, args=(w,), daemon=True) for w in range(args.workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.duration + args.timeout + 10)
    totals["seconds"] = round(time.monotonic() - t0, 2)
    totals["first_error_at"] = first_error_at[0]
    print(json.dumps(totals), flush=True)


if __name__ == "__main__":
    main()
