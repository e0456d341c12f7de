#!/usr/bin/env bash
# Installs the .msi under Wine in a fresh prefix, checks the service, its first-start
# configuration and /healthz, buffers a notify call while the cloud is down and checks it is
# delivered once the cloud is up (the buffer's sync works on Windows: DESIGN.md §3.1), uninstalls
# it and checks it is gone. Prints PASS or FAIL.
#
#   packaging/windows/build.sh && packaging/windows/test-msi.sh [MSI]
#
# Default MSI: the win7-target one (target/windows/dist/prefront-<ver>-win7-x64.msi). Debian 12's
# Wine 8 has no bcryptprimitives.dll!ProcessPrng, which the Rust standard library of the
# x86_64-pc-windows-gnu (Windows 10+) target needs, so that .exe cannot start under this Wine (the
# script shows it); the win7-target build uses RtlGenRandom and runs. Both .msi are the same
# package apart from the .exe.
#
# Needs root for apt-get when wine is missing (~104 MB download, ~700 MB installed). Everything
# else stays under target/windows/wine-test and target/windows/test-msi; on exit, also after a
# failure, the stand-in cloud (packaging/windows/fake-cloud.py, by its PID) is stopped and
# wineserver -k ends the prefix's processes.
set -euo pipefail
cd "$(dirname "$0")/../.."

missing=()
for p in wine64 wine curl python3; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
MSI_VERSION=${VERSION%%[-+]*}
DIST=target/windows/dist
MSI=${1:-$DIST/prefront-$MSI_VERSION-win7-x64.msi}
[[ -f "$MSI" ]] || { echo "no $MSI: run packaging/windows/build.sh first" >&2; exit 1; }
MSI=$(readlink -f "$MSI")

export WINEPREFIX=$PWD/target/windows/wine-test
export WINEARCH=win64 WINEDEBUG=-all
# No Mono/Gecko download prompts in a fresh prefix.
export WINEDLLOVERRIDES="mscoree,mshtml="
WINE=/usr/lib/wine/wine64
export WINELOADER=$WINE
WINESERVER=/usr/lib/wine/wineserver64

# %ProgramData%\Prefront as the service sees it: Wine gives services C:\users\Public as
# %ProgramData% (C:\ProgramData on Windows); found after the first start.
PD="$WINEPREFIX/drive_c/ProgramData/Prefront"
PF="$WINEPREFIX/drive_c/Program Files/Prefront"
direct_pid=
platform_pid=
# The stand-in cloud's log and what it received; the notify call's answer.
OUT=$PWD/target/windows/test-msi

cleanup() {
    [[ -n "$direct_pid" ]] && kill "$direct_pid" 2>/dev/null || true
    if [[ -n "$platform_pid" ]]; then
        kill "$platform_pid" 2>/dev/null || true
        wait "$platform_pid" 2>/dev/null || true
    fi
    "$WINESERVER" -k 2>/dev/null || true
}
trap cleanup EXIT

step() { echo "== $*"; }
show_log() {
    if [[ -f "$PD/logs/prefront.log" ]]; then
        echo "-- $PD/logs/prefront.log (last 30 lines):"
        tail -n 30 "$PD/logs/prefront.log"
    else
        echo "-- no service log at $PD/logs/prefront.log"
    fi
}
fail() {
    echo "FAIL: $*"
    show_log
    exit 1
}
w() { timeout 120 "$WINE" "$@"; }
# Service state as `sc query` prints it (RUNNING, STOPPED, …), or "absent".
state() {
    local out
    out=$(w sc query prefront 2>/dev/null | tr -d '\r') || { echo absent; return; }
    awk '/STATE/ {print $4}' <<<"$out"
}
wait_state() { # <state> <seconds>
    local i
    for ((i = 0; i < $2 * 2; i++)); do
        [[ "$(state)" == "$1" ]] && return 0
        sleep 0.5
    done
    return 1
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

step "fresh Wine prefix $WINEPREFIX ($("$WINE" --version))"
"$WINESERVER" -k 2>/dev/null || true
rm -rf "$WINEPREFIX" "$OUT"
mkdir -p "$OUT"
start=$SECONDS
w wineboot --init >/dev/null 2>&1 || true
# Until the prefix is fully written and its wineserver gone (an msiexec started earlier can fail).
timeout 120 "$WINESERVER" -w || true
echo "wineboot: $((SECONDS - start)) s"
# A persistent wineserver: otherwise it stops services.exe, and the service with it, as soon as
# the last ordinary process (msiexec, sc) exits.
"$WINESERVER" -p

step "the Windows 10 target .exe under this Wine (expected to fail: no ProcessPrng in Wine 8)"
if [[ -f "$DIST/prefront-$VERSION-x86_64-pc-windows-gnu.exe" ]]; then
    WINEDEBUG=err+module timeout 60 "$WINE" "$DIST/prefront-$VERSION-x86_64-pc-windows-gnu.exe" --version 2>&1 |
        grep -E -m 2 'import_dll|LdrInitializeThunk|^prefront' || true
fi

step "msiexec /i $(basename "$MSI") /qn"
start=$SECONDS
rc=0
w msiexec /i "$(winepath -w "$MSI" 2>/dev/null)" /qn /l*v 'C:\msi-install.log' || rc=$?
echo "msiexec exit code $rc, $((SECONDS - start)) s"
if ((rc != 0)); then
    iconv -f UTF-16LE -t UTF-8 "$WINEPREFIX/drive_c/msi-install.log" 2>/dev/null | grep -iE 'error|fail|return value 3' | head -n 20 || true
    fail "msiexec /i failed ($rc)"
fi
[[ -f "$PF/prefront.exe" ]] || fail "no Program Files\\Prefront\\prefront.exe"
echo "installed: $(ls "$PF" | tr '\n' ' ')"

step "service registered and running"
wait_state RUNNING 30 || fail "service state is $(state), not RUNNING"
w sc query prefront | tr -d '\r'
reg() { w reg query 'HKLM\System\CurrentControlSet\Services\prefront' 2>/dev/null | tr -d '\r' || true; }
reg | grep -E 'ImagePath|DisplayName|Start|FailureActions' || true
reg | grep -qE 'ImagePath.*prefront\.exe"? service run$' || fail "ImagePath is not …prefront.exe service run"

step "first start wrote the configuration and the log"
toml=
for _ in $(seq 20); do
    toml=$(find "$WINEPREFIX/drive_c" -path '*/Prefront/prefront.toml' -not -path '*/Program Files/*' -print -quit)
    [[ -n "$toml" ]] && break
    sleep 0.5
done
[[ -n "$toml" ]] || fail "no Prefront\prefront.toml anywhere in drive_c"
PD=$(dirname "$toml")
echo "%ProgramData%\Prefront of the service: ${PD#"$WINEPREFIX/"}"
grep -q '^\[admin\]' "$PD/prefront.toml" || fail "the written configuration has no [admin]"
grep -q 'path = "data/buffer"' "$PD/prefront.toml" || fail "the buffer is not under data\\buffer"
grep -q 'prefront starting (Windows service)' "$PD/logs/prefront.log" || fail "no start line in the log"
echo "ok: prefront.toml ($(wc -c <"$PD/prefront.toml") bytes), logs/prefront.log"
grep -E 'WARN|ERROR' "$PD/logs/prefront.log" | grep -v 'plain HTTP\|PLAIN HTTP' || true

# The machine's 8080/8443/9090 may be taken by someone else: move the listeners to free ports,
# which also exercises stop and start through the service manager. The cloud platform becomes
# http://127.0.0.1:$PLATFORM/, a closed loopback port for now (Wine's processes share the host's
# loopback; the stand-in cloud listens there later), and the delivery backoff short.
step "sc stop, free ports, a cloud that is down and a short retry in prefront.toml, sc start"
w sc stop prefront >/dev/null || true
wait_state STOPPED 30 || fail "service did not stop (state $(state))"
HIS=$(free_port) CLOUD=$(free_port) ADMIN=$(free_port) PLATFORM=$(free_port)
# The file has Windows line ends: every pattern leaves the rest of its line (and the CR) alone.
sed -i -e "s/127\.0\.0\.1:8080/127.0.0.1:$HIS/; s/127\.0\.0\.1:8443/127.0.0.1:$CLOUD/; s/127\.0\.0\.1:9090/127.0.0.1:$ADMIN/" \
    -e "s|^base_url = \"https://cloud\.example\.com/\"|base_url = \"http://127.0.0.1:$PLATFORM/\"|" \
    -e 's|^# retry_min = "1s"|retry_min = "500ms"|; s|^# retry_max = "5m"|retry_max = "2s"|' \
    "$PD/prefront.toml"
for want in "^base_url = \"http://127\.0\.0\.1:$PLATFORM/\"" '^retry_min = "500ms"' '^retry_max = "2s"'; do
    grep -q "$want" "$PD/prefront.toml" || fail "prefront.toml: the edit to /$want/ did not take (has the example changed?)"
done
echo "cloud.base_url http://127.0.0.1:$PLATFORM/ (nothing listens there), buffer.retry_min 500ms, retry_max 2s"
w sc start prefront >/dev/null || true
wait_state RUNNING 30 || fail "service did not start again (state $(state))"
grep -q 'stop requested by the service manager' "$PD/logs/prefront.log" || fail "the log does not show the stop"
echo "after the service's first start (it sets its display name, quoting the path):"
reg | grep -E 'ImagePath' || true
# `reg query` prints through the console code page (??? for Chinese): export (UTF-16) instead.
w reg export 'HKLM\System\CurrentControlSet\Services\prefront' 'C:\prefront-service.reg' /y >/dev/null 2>&1 || true
iconv -f UTF-16 -t UTF-8 "$WINEPREFIX/drive_c/prefront-service.reg" 2>/dev/null | tr -d '\r' | grep -E '^"DisplayName"' || true

step "GET http://127.0.0.1:$ADMIN/healthz"
body=
for _ in $(seq 40); do
    body=$(curl -sf --max-time 2 "http://127.0.0.1:$ADMIN/healthz" || true)
    [[ -n "$body" ]] && break
    sleep 0.5
done
[[ "$body" == ok* ]] || fail "/healthz answered '$body'"
echo "healthz: $body"
echo "readyz: $(curl -s --max-time 5 "http://127.0.0.1:$ADMIN/readyz" || true)"
echo "his listener: $(curl -s --max-time 10 -X POST "http://127.0.0.1:$HIS/prefront/patient/getPatientInfo" -d '{"medicalCardNumber":"001"}' || true)"

# DESIGN.md §3.1 "Windows": a buffered call is acknowledged only after the store synced it, and
# on Windows that sync (FlushFileBuffers) needs the files opened for writing. Were it not, the
# call would be refused: 10003 with X-Prefront-Error.
NOTIFY_PATH=/prefront/sendTipMessage/payment
NOTIFY_BODY='{"hospitalId":"253","seq":1}'
# The buffer's figures on /metrics, on one line.
buffer_metrics() {
    curl -s --max-time 5 "http://127.0.0.1:$ADMIN/metrics" |
        grep -E '^prefront_buffer_(depth|delivered_total|retries_total|writable)' | tr '\n' ' ' || true
}
step "cloud down: POST $NOTIFY_PATH $NOTIFY_BODY"
: >"$OUT/notify.headers"
: >"$OUT/notify.body"
t0=$(date +%s.%N)
http=$(curl -s --max-time 30 -D "$OUT/notify.headers" -o "$OUT/notify.body" -w '%{http_code}' \
    -X POST -H 'Content-Type: application/json' --data-binary "$NOTIFY_BODY" \
    "http://127.0.0.1:$HIS$NOTIFY_PATH") || http="curl failed ($?)"
t1=$(date +%s.%N)
tr -d '\r' <"$OUT/notify.headers" | sed 's/^/  /'
echo "  $(cat "$OUT/notify.body" 2>/dev/null)"
echo "answered in $(python3 -c "print(f'{$t1 - $t0:.2f}')") s"
code=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("code"))' "$OUT/notify.body" 2>/dev/null || echo '(not JSON)')
queued=$(tr -d '\r' <"$OUT/notify.headers" | awk -F': *' 'tolower($1) == "x-prefront-queued" {print $2}')
perr=$(tr -d '\r' <"$OUT/notify.headers" | awk -F': *' 'tolower($1) == "x-prefront-error" {print $2}')
if [[ "$http" != 200 || "$code" != 10001 || -z "$queued" ]]; then
    echo "-- the answer: HTTP $http, code $code, X-Prefront-Queued '${queued}', X-Prefront-Error '${perr}'"
    [[ "$code" == 10003 ]] && echo "-- 10003: the buffer refused the call (did its sync fail on Windows?)"
    fail "the notify call was not acknowledged as buffered (want HTTP 200, code 10001, X-Prefront-Queued)"
fi
echo "ok: HTTP 200, code 10001, X-Prefront-Queued: $queued (buffered and synced)"
echo "readyz: $(curl -s --max-time 5 "http://127.0.0.1:$ADMIN/readyz" || true)"
echo "metrics: $(buffer_metrics)"

step "cloud up: packaging/windows/fake-cloud.py on 127.0.0.1:$PLATFORM; the call is delivered"
python3 packaging/windows/fake-cloud.py "$PLATFORM" "$OUT/cloud-received.jsonl" 2>"$OUT/cloud.log" &
platform_pid=$!
up=
for _ in $(seq 50); do
    kill -0 "$platform_pid" 2>/dev/null || break
    curl -s -o /dev/null --max-time 1 -I "http://127.0.0.1:$PLATFORM/" && { up=1; break; }
    sleep 0.1
done
[[ -n "$up" ]] || { cat "$OUT/cloud.log"; fail "the stand-in cloud did not start on 127.0.0.1:$PLATFORM"; }
start=$SECONDS
delivered=
while ((SECONDS - start < 60)); do
    if [[ -s "$OUT/cloud-received.jsonl" ]] && grep -q "\"$NOTIFY_PATH\"" "$OUT/cloud-received.jsonl"; then
        delivered=1
        break
    fi
    sleep 0.5
done
if [[ -z "$delivered" ]]; then
    echo "-- the stand-in cloud's log:"
    tail -n 20 "$OUT/cloud.log"
    echo "-- metrics: $(buffer_metrics)"
    fail "the buffered call did not reach the cloud within 60 s of it coming up"
fi
echo "arrived $((SECONDS - start)) s after the cloud came up"
sleep 2 # a second delivery of the same message would show here
verdict=$(python3 - "$OUT/cloud-received.jsonl" "$NOTIFY_PATH" "$NOTIFY_BODY" "$queued" <<'PY'
import json, re, sys
record, path, body, queued = sys.argv[1:]
got = [json.loads(l) for l in open(record, encoding="utf-8") if l.strip()]
mine = [g for g in got if g["path"] == path]
for g in mine:
    print(f"  received: {g['path']}  X-Prefront-Message-Id: {g['message_id']}  body: {g['body']}")
problems = []
g = mine[0]
def parsed(text):
    try:
        return json.loads(text)
    except ValueError:
        return None
if parsed(g["body"]) is None or parsed(g["body"]) != parsed(body):
    problems.append(f"body {g['body']!r}, sent {body!r}")
elif g["body"] != body:
    print("  (the body arrived equal as JSON, not byte for byte)")
m = re.fullmatch(r"([0-9a-f]{16})-([0-9]+)", g["message_id"] or "")
if not m:
    problems.append(f"X-Prefront-Message-Id {g['message_id']!r} is not <16 hex>-<n>")
elif m.group(2) != queued:
    problems.append(f"X-Prefront-Message-Id {g['message_id']} does not end in X-Prefront-Queued {queued}")
if len({x["message_id"] for x in mine}) != 1 or len(mine) != 1:
    problems.append(f"{len(mine)} deliveries (want 1)")
print("PROBLEMS: " + "; ".join(problems) if problems else "OK")
PY
) || fail "cannot read what the stand-in cloud received"
echo "$verdict"
[[ "$(tail -n 1 <<<"$verdict")" == OK ]] || fail "the delivery is wrong: $(tail -n 1 <<<"$verdict")"
echo "metrics: $(buffer_metrics)"
echo "-- the service log about it:"
grep -iE 'buffer|queued|deliver|sendTipMessage|link' "$PD/logs/prefront.log" | tail -n 12 || true

step "msiexec /x /qn"
rc=0
w msiexec /x "$(winepath -w "$MSI" 2>/dev/null)" /qn || rc=$?
echo "msiexec exit code $rc"
((rc == 0)) || fail "msiexec /x failed ($rc)"
[[ "$(state)" == absent ]] || fail "service still registered (state $(state))"
[[ ! -e "$PF" ]] || fail "Program Files\\Prefront still there: $(ls -A "$PF")"
if pgrep -f 'Prefront.prefront\.exe' >/dev/null; then fail "prefront.exe still running"; fi
[[ -f "$PD/prefront.toml" ]] || fail "the uninstall removed the configuration (it must stay)"
echo "ok: service gone, Program Files\\Prefront gone, %ProgramData%\\Prefront kept ($(ls "$PD" | tr '\n' ' '))"
show_log
echo PASS
