#!/usr/bin/env bash
# Installs the .msi under Wine in a fresh prefix, checks the service, its first-start
# configuration and /healthz, uninstalls it and checks it is gone. Prints PASS or FAIL.
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
# else stays under target/windows/wine-test; wineserver -k on exit.
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

cleanup() {
    [[ -n "$direct_pid" ]] && kill "$direct_pid" 2>/dev/null || true
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
rm -rf "$WINEPREFIX"
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
# which also exercises stop and start through the service manager.
step "sc stop, free ports in prefront.toml, sc start"
w sc stop prefront >/dev/null || true
wait_state STOPPED 30 || fail "service did not stop (state $(state))"
HIS=$(free_port) CLOUD=$(free_port) ADMIN=$(free_port)
sed -i "s/127\.0\.0\.1:8080/127.0.0.1:$HIS/; s/127\.0\.0\.1:8443/127.0.0.1:$CLOUD/; s/127\.0\.0\.1:9090/127.0.0.1:$ADMIN/" "$PD/prefront.toml"
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
