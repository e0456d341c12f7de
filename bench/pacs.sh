#!/usr/bin/env bash
# PACS streaming benchmark: one large image file straight from a loopback "PACS" (nginx serving
# a static file), through nginx as a plain reverse proxy, and through prefront's /pacs/dcm, in
# one run; throughput ratios and peak RSS of each proxy. Needs nginx (Debian `nginx-light`) and
# curl; builds prefront in release.
#
#   bench/pacs.sh [--mib 1024] [--runs 3] [--json FILE]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

MIB=1024
RUNS=3
JSON=""
while [ $# -gt 0 ]; do
  case "$1" in
    --mib) MIB="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --json) JSON="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 64 ;;
  esac
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || { echo "nginx is needed: apt-get install nginx-light" >&2; exit 69; }

cargo build --release --quiet --bin prefront
BIN=target/release/prefront
DIR=$(pwd)/target/pacs-bench-$$
mkdir -p "$DIR/www" "$DIR/nginx/logs"
cleanup() {
  [ -n "${PF_PID:-}" ] && kill "$PF_PID" 2>/dev/null || true
  [ -f "$DIR/nginx/nginx.pid" ] && kill "$(cat "$DIR/nginx/nginx.pid")" 2>/dev/null || true
  sleep 0.3
  rm -rf "$DIR"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P_PACS=$(free_port); P_NGINX=$(free_port); P_PF=$(free_port); P_HIS=$(free_port)

echo "making a ${MIB} MiB test image…" >&2
head -c "$((MIB * 1024 * 1024))" /dev/urandom > "$DIR/www/study.dcm"
WANT=$(sha256sum "$DIR/www/study.dcm" | cut -d' ' -f1)

cat > "$DIR/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon on;
pid $DIR/nginx/nginx.pid;
error_log $DIR/nginx/logs/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  sendfile on;
  client_body_temp_path $DIR/nginx/tmp;
  proxy_temp_path $DIR/nginx/tmp;
  fastcgi_temp_path $DIR/nginx/tmp; uwsgi_temp_path $DIR/nginx/tmp; scgi_temp_path $DIR/nginx/tmp;
  upstream pacs { server 127.0.0.1:$P_PACS; keepalive 8; }
  server {
    listen 127.0.0.1:$P_PACS;
    root $DIR/www;
    default_type application/octet-stream;
  }
  server {
    listen 127.0.0.1:$P_NGINX;
    location / {
      proxy_pass http://pacs;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      # nginx defaults otherwise (proxy_buffering on): what a plain reverse proxy runs with.
    }
  }
}
CONF
"$NGINX" -p "$DIR/nginx" -c "$DIR/nginx/nginx.conf"

cat > "$DIR/prefront.toml" <<CONF
[his_listener]
listen = "127.0.0.1:$P_HIS"
[cloud_listener]
listen = "127.0.0.1:$P_PF"
allow = ["127.0.0.0/8"]
public_url = "http://127.0.0.1:$P_PF"
[cloud]
base_url = "https://127.0.0.1:9/"
[pacs]
dcm_url = "http://127.0.0.1:$P_PACS/{dcmId}"
internal_hosts = ["127.0.0.1:$P_PACS"]
[buffer]
path = "$DIR/buffer"
[log]
level = "warn"
CONF
"$BIN" run --config "$DIR/prefront.toml" 2>"$DIR/prefront.log" &
PF_PID=$!
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$P_PF/" && break; sleep 0.1; done

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
NGINX_WORKER=$(pgrep -P "$(cat "$DIR/nginx/nginx.pid")" | head -1)

DIRECT="http://127.0.0.1:$P_PACS/study.dcm"
VIA_NGINX="http://127.0.0.1:$P_NGINX/study.dcm"
VIA_PF="http://127.0.0.1:$P_PF/pacs/dcm?dcmId=study.dcm&hospitalId=1"

PF_IDLE=$(rss_kib "$PF_PID")
# Correctness first: the bytes through prefront are the file's bytes.
GOT=$(curl -sf "$VIA_PF" | sha256sum | cut -d' ' -f1)
[ "$GOT" = "$WANT" ] || { echo "SHA-256 through prefront differs: $GOT vs $WANT" >&2; exit 1; }

best() { # url -> best MB/s over RUNS
  local b=0 s
  for _ in $(seq "$RUNS"); do
    s=$(curl -sf -o /dev/null -w '%{speed_download}' "$1")
    b=$(python3 -c "print(max($b, $s/1e6))")
  done
  echo "$b"
}
echo "streaming ${MIB} MiB × $RUNS per path…" >&2
D=$(best "$DIRECT")
N=$(best "$VIA_NGINX")
P=$(best "$VIA_PF")
PF_PEAK=$(hwm_kib "$PF_PID")
NG_PEAK=$(hwm_kib "$NGINX_WORKER")

python3 - "$MIB" "$D" "$N" "$P" "$PF_IDLE" "$PF_PEAK" "$NG_PEAK" "$JSON" <<'PY'
import json, sys, datetime, os
mib, d, n, p, idle, peak, ngpeak, out = sys.argv[1:]
d, n, p = float(d), float(n), float(p)
idle, peak, ngpeak = int(idle), int(peak), int(ngpeak)
print(f"PACS streaming benchmark — {datetime.date.today()}, {mib} MiB file, loopback, {os.cpu_count()} cpus, best of runs")
print(f"{'path':<28}{'MB/s':>10}{'vs direct':>11}{'vs nginx':>10}{'peak RSS':>12}")
print(f"{'direct from the PACS':<28}{d:>10.0f}{1:>11.2f}{'':>10}{'':>12}")
print(f"{'nginx reverse proxy':<28}{n:>10.0f}{n/d:>11.2f}{1:>10.2f}{ngpeak/1024:>9.1f} MiB")
print(f"{'prefront /pacs/dcm':<28}{p:>10.0f}{p/d:>11.2f}{p/n:>10.2f}{peak/1024:>9.1f} MiB")
print(f"prefront RSS: idle {idle/1024:.1f} MiB, peak {peak/1024:.1f} MiB, growth {(peak-idle)/1024:.1f} MiB (target ≤ 16 MiB)")
print(f"target ≥ 0.9× nginx: {'MET' if p >= 0.9*n else 'MISSED'}")
if out:
    json.dump({"mib": int(mib), "direct_mb_s": d, "nginx_mb_s": n, "prefront_mb_s": p,
               "prefront_vs_nginx": p/n, "prefront_idle_rss_kib": idle,
               "prefront_peak_rss_kib": peak, "nginx_worker_peak_rss_kib": ngpeak}, open(out, "w"), indent=2)
PY
