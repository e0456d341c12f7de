#!/usr/bin/env bash
# Builds the .deb and tries it on THIS machine: install, check files/owners/modes, run the
# binary exactly as prefront.service does (as the `prefront` user, with a notify socket and a
# watchdog), /healthz, reload, stop, `dpkg -r`, `dpkg --purge`, and what is left.
#
# Run it as root on a disposable machine or CI runner: it installs and purges the package and
# leaves the system user `prefront` behind (as a purge does; see packaging/README.md). It refuses
# to touch a box where prefront is installed with a changed configuration or is running.
#
#   packaging/test-deb.sh [--no-build] [-j N]
#     --no-build   use the static binary already built by packaging/build-static.sh
#
# Ends with PASS or FAIL and a list of every check; exit status 0 only on PASS.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=x86_64-unknown-linux-gnu
BUILD=1
JOBS=2
while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) BUILD=0; shift ;;
        -j) JOBS="$2"; shift 2 ;;
        -j*) JOBS="${1#-j}"; shift ;;
        *) echo "usage: $0 [--no-build] [-j N]" >&2; exit 2 ;;
    esac
done

CONF=/etc/prefront/prefront.toml
UNIT=/lib/systemd/system/prefront.service
SYSUSERS=/usr/lib/sysusers.d/prefront.conf
STATE=/var/lib/prefront
ADMIN=http://127.0.0.1:9090
HIS_PORT=8080
START=$(date +%s)

# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------
PASSED=()
FAILED=()
ok() { PASSED+=("$1"); printf '  ok    %s\n' "$1"; }
bad() { FAILED+=("$1"); printf '  FAIL  %s\n' "$1"; }
# expect "what" actual wanted
expect() { if [ "$2" = "$3" ]; then ok "$1 ($2)"; else bad "$1: got '$2', want '$3'"; fi; }
# owner_mode path user:group mode
owner_mode() {
    if [ -e "$1" ]; then expect "$1 owner and mode" "$(stat -c '%U:%G %a' "$1")" "$2 $3"
    else bad "$1 is missing"; fi
}
absent() { if [ -e "$1" ]; then bad "$1 should be gone"; else ok "$1 is gone"; fi; }
present() { if [ -e "$1" ]; then ok "$1 is there"; else bad "$1 is missing"; fi; }
step() { printf '\n== %s\n' "$*"; }

# ---------------------------------------------------------------------------------------------
# Clean-up, also on failure or Ctrl-C
# ---------------------------------------------------------------------------------------------
WORK=$(mktemp -d /tmp/prefront-test-deb.XXXXXX)
chmod 0755 "$WORK"
GW_PID=""
NOTIFY_PID=""
# dpkg, waiting while apt or another dpkg holds its lock (up to 10 min).
dpkg_() {
    local out rc _
    for _ in $(seq 600); do
        rc=0
        out=$(dpkg "$@" 2>&1) || rc=$?
        if [ "$rc" -ne 0 ] && printf '%s' "$out" | grep -qE 'frontend lock|database is locked'; then
            sleep 1
            continue
        fi
        break
    done
    printf '%s\n' "$out"
    return "$rc"
}
stop_pid() { # pid: TERM, wait up to 15 s, then KILL
    local pid=$1 _
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
    local rc=$?
    set +e
    [ -n "$GW_PID" ] && stop_pid "$GW_PID"
    [ -n "$NOTIFY_PID" ] && stop_pid "$NOTIFY_PID"
    if dpkg-query -W -f='${Status}' prefront 2>/dev/null | grep -qv 'not-installed'; then
        echo "cleanup: purging prefront" >&2
        dpkg_ --purge prefront >/dev/null 2>&1
    fi
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$(id -u)" != 0 ]; then echo "test-deb: run as root (it installs the package)" >&2; exit 2; fi
for tool in dpkg dpkg-deb curl python3 setpriv ss; do
    command -v "$tool" >/dev/null || { echo "test-deb: needs $tool" >&2; exit 2; }
done

refuse() { echo "test-deb: $*" >&2; trap - EXIT; rm -rf "$WORK"; exit 2; }
# Not on a real installation: an installed gateway running, or a changed configuration, means
# someone uses it.
for pid in $(pgrep -x prefront || true); do
    if [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = /usr/bin/prefront ]; then
        refuse "/usr/bin/prefront runs here (pid $pid): not a test machine, or stop it first"
    fi
done
# The installed configuration's ports must be free (another gateway or test may hold them).
busy=$(ss -Hltn 2>/dev/null | awk '{print $4}' | grep -E ':(8080|8443|9090)$' | tr '\n' ' ' || true)
[ -z "$busy" ] || refuse "ports the installed configuration uses are taken: $busy(ss -ltnp)"
if dpkg-query -W -f='${Status}' prefront 2>/dev/null | grep -q 'ok installed' \
    && [ -f "$CONF" ] && ! cmp -s "$CONF" packaging/deb/prefront.toml; then
    refuse "prefront is installed here with a changed $CONF: not a test machine"
fi

# ---------------------------------------------------------------------------------------------
step "build"
# ---------------------------------------------------------------------------------------------
BIN="target/$TARGET/release/prefront"
if [ "$BUILD" = 1 ]; then
    packaging/build-static.sh -j "$JOBS"
elif [ ! -x "$BIN" ]; then
    echo "test-deb: --no-build, but $BIN is missing: run packaging/build-static.sh" >&2; exit 2
fi
if ! cargo deb --version >/dev/null 2>&1; then
    echo "installing cargo-deb"
    cargo install cargo-deb --locked -j "$JOBS"
fi
cargo deb --version
DEB=$(cargo deb --target "$TARGET" --no-build --quiet --output "$WORK/")
DEB=$(ls "$WORK"/prefront_*_amd64.deb)
ls -l "$DEB"
BUILT=$(date +%s)

# ---------------------------------------------------------------------------------------------
step "the package"
# ---------------------------------------------------------------------------------------------
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
expect "file name" "$(basename "$DEB")" "prefront_${VERSION}_amd64.deb"
expect "Package" "$(dpkg-deb -f "$DEB" Package)" prefront
expect "Architecture" "$(dpkg-deb -f "$DEB" Architecture)" amd64
dpkg-deb -e "$DEB" "$WORK/control"
expect "conffiles" "$(cat "$WORK/control/conffiles")" "$CONF"
for f in postinst prerm postrm; do
    if [ -x "$WORK/control/$f" ]; then ok "maintainer script $f"; else bad "maintainer script $f missing"; fi
done
dpkg-deb -c "$DEB" | awk '{print $1, $2, $6}'

# The installed configuration must say everything the example says (a key added to
# config/prefront.toml belongs in packaging/deb/prefront.toml too).
keys() { sed -nE 's/^#? *(\[\[?[a-z_.]+\]\]?|[a-z_]+) *(=.*)?(#.*)?$/\1/p' "$1" | grep -v '^$' | sort -u; }
missing=$(comm -23 <(keys config/prefront.toml) <(keys packaging/deb/prefront.toml) | tr '\n' ' ')
if [ -z "$missing" ]; then ok "packaging/deb/prefront.toml has every key of config/prefront.toml"
else bad "packaging/deb/prefront.toml lacks keys of config/prefront.toml: $missing"; fi

# ---------------------------------------------------------------------------------------------
step "dpkg -i (a previous run's package, if any, is purged first)"
# ---------------------------------------------------------------------------------------------
if dpkg-query -W -f='${Status}' prefront 2>/dev/null | grep -qv 'not-installed'; then
    dpkg_ --purge prefront
fi
dpkg_ -i "$DEB"
expect "dpkg status" "$(dpkg-query -W -f='${Status}' prefront)" "install ok installed"
owner_mode /usr/bin/prefront root:root 755
owner_mode "$CONF" root:prefront 640
owner_mode /etc/prefront/certs root:prefront 750
owner_mode "$STATE" prefront:prefront 750
owner_mode "$UNIT" root:root 644
owner_mode "$SYSUSERS" root:root 644
if getent passwd prefront >/dev/null; then
    IFS=: read -r _ _ uid gid _ home shell < <(getent passwd prefront)
    ok "user prefront exists (uid $uid, gid $gid, home $home, shell $shell)"
    if [ "$uid" -lt 1000 ]; then ok "prefront is a system user"; else bad "prefront uid $uid >= 1000"; fi
    case "$shell" in */nologin|*/false) ok "prefront cannot log in" ;; *) bad "prefront shell $shell" ;; esac
else
    bad "user prefront does not exist"
fi
expect "group prefront" "$(getent group prefront | cut -d: -f1)" prefront
ldd_out=$(ldd /usr/bin/prefront 2>&1 || true)
case "$ldd_out" in
    *"statically linked"* | *"not a dynamic executable"*) ok "/usr/bin/prefront is static" ;;
    *) bad "/usr/bin/prefront is not static: $ldd_out" ;;
esac
expect "prefront --version" "$(/usr/bin/prefront --version)" "prefront $VERSION"

if command -v systemd-analyze >/dev/null 2>&1; then
    if out=$(systemd-analyze verify "$UNIT" 2>&1); then ok "systemd-analyze verify"
    else bad "systemd-analyze verify: $out"; fi
    [ -n "$out" ] && printf '%s\n' "$out"
    # The overall exposure, 0 (best) .. 10: fail above 2.0 ("OK" is below 3).
    if sec=$(systemd-analyze security --offline=yes --threshold=20 "$UNIT" 2>&1); then
        ok "systemd-analyze security: $(printf '%s\n' "$sec" | tail -n1 | sed 's/^→ //')"
    else
        printf '%s\n' "$sec"
        bad "systemd-analyze security above 2.0: $(printf '%s\n' "$sec" | tail -n1)"
    fi
else
    echo "  (no systemd-analyze here: unit not verified)"
fi

# ---------------------------------------------------------------------------------------------
step "run it as prefront.service does (as user prefront, UMask=0077, notify socket, watchdog)"
# ---------------------------------------------------------------------------------------------
# Without systemd as PID 1 the unit's command lines are run by hand the way systemd runs them:
# user and group prefront, UMask=0077, working directory /, the clean environment systemd gives
# (plus NOTIFY_SOCKET and WATCHDOG_USEC for the main process). The hardening directives are
# only checked statically (systemd-analyze above) here.
echo "  PID 1 is $(ps -p 1 -o comm= 2>/dev/null || echo '?')"
UNIT_ENV=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
    HOME="$STATE" USER=prefront LOGNAME=prefront SHELL=/usr/sbin/nologin STATE_DIRECTORY="$STATE")
AS_PREFRONT=(setpriv --reuid prefront --regid prefront --init-groups)
as_unit() { (umask 0077 && cd / && exec "${AS_PREFRONT[@]}" "${UNIT_ENV[@]}" "$@"); }
# The unit's own lines, taken from the installed unit file.
PRE=$(sed -n 's/^ExecStartPre=//p' "$UNIT")
MAIN=$(sed -n 's/^ExecStart=//p' "$UNIT")
expect "ExecStartPre" "$PRE" "/usr/bin/prefront check --config $CONF"
expect "ExecStart" "$MAIN" "/usr/bin/prefront run --config $CONF"

# A notify socket like systemd's, readable by the service user: every message to a file.
NOTIFY_SOCK="$WORK/notify.sock"
NOTIFY_LOG="$WORK/notify.log"
python3 - "$NOTIFY_SOCK" "$NOTIFY_LOG" <<'PY' &
import os, socket, sys
sock_path, log_path = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sock_path)
os.chmod(sock_path, 0o777)
with open(log_path, "a", buffering=1) as log:
    while True:
        msg = s.recv(4096).decode("utf-8", "replace")
        log.write(msg.replace("\n", " ") + "\n")
PY
NOTIFY_PID=$!
for _ in $(seq 50); do [ -S "$NOTIFY_SOCK" ] && break; sleep 0.1; done
: >"$NOTIFY_LOG"
chmod 0644 "$NOTIFY_LOG"
wait_notify() { # pattern seconds
    local _
    for _ in $(seq $(( $2 * 10 ))); do grep -q "$1" "$NOTIFY_LOG" 2>/dev/null && return 0; sleep 0.1; done
    return 1
}

# shellcheck disable=SC2086 # the unit's command line, split as systemd splits it
if out=$(as_unit $PRE 2>&1); then ok "ExecStartPre as prefront: $out"; else bad "ExecStartPre as prefront failed: $out"; fi

GW_LOG="$WORK/gateway.log"
# The subshell execs setpriv, which execs env, which execs the gateway: $! is the gateway.
# shellcheck disable=SC2086
(umask 0077 && cd / && exec "${AS_PREFRONT[@]}" "${UNIT_ENV[@]}" NOTIFY_SOCKET="$NOTIFY_SOCK" \
    WATCHDOG_USEC=2000000 $MAIN) >"$GW_LOG" 2>&1 &
GW_PID=$!
if wait_notify 'READY=1' 20; then ok "READY=1 on the notify socket"; else bad "no READY=1 within 20 s"; fi
expect "gateway process user" "$(ps -o user= -p "$GW_PID" 2>/dev/null | tr -d ' ')" prefront
expect "GET /healthz" "$(curl -sS --max-time 5 "$ADMIN/healthz" 2>&1)" ok
readyz=$(curl -sS --max-time 5 -w ' HTTP %{http_code}' "$ADMIN/readyz" 2>&1 || true)
echo "  /readyz: $readyz"
case "$readyz" in *'"ready":true'*) ok "/readyz says ready (no HIS, no cloud reachable)" ;; *) bad "/readyz: $readyz" ;; esac
# The HIS listener on 0.0.0.0 lets a loopback caller in; the cloud is unreachable: code 10003.
ans=$(curl -sS --max-time 20 -X POST "http://127.0.0.1:$HIS_PORT/prefront/patient/getPatientInfo" \
    -d '{"medicalCardNumber":"001"}' 2>&1 || true)
case "$ans" in *'"code":"10003"'*) ok "HIS listener answers a loopback caller (10003: cloud unreachable)" ;;
    *) bad "HIS listener: $ans" ;; esac
# ... and refuses anyone else (the allowlist is loopback only), when this machine has another address.
other=$(hostname -I 2>/dev/null | tr ' ' '\n' | grep -E '^[0-9.]+$' | grep -v '^127\.' | head -n1 || true)
if [ -n "$other" ]; then
    code=$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' -X POST \
        "http://$other:$HIS_PORT/prefront/patient/getPatientInfo" -d '{}' || true)
    expect "caller from $other (not loopback) refused" "$code" 403
else
    echo "  (no non-loopback IPv4 address here: allowlist refusal not tried)"
fi
if wait_notify 'WATCHDOG=1' 5; then ok "WATCHDOG=1 pings"; else bad "no WATCHDOG=1 within 5 s"; fi
owner_mode "$STATE/buffer" prefront:prefront 700

# ExecReload: SIGHUP; RELOADING=1 then READY=1, still running.
ready_before=$(grep -c 'READY=1' "$NOTIFY_LOG" || true)
kill -HUP "$GW_PID"
for _ in $(seq 50); do [ "$(grep -c 'READY=1' "$NOTIFY_LOG")" -gt "$ready_before" ] && break; sleep 0.1; done
if grep -q 'RELOADING=1' "$NOTIFY_LOG" && [ "$(grep -c 'READY=1' "$NOTIFY_LOG")" -gt "$ready_before" ] \
    && kill -0 "$GW_PID" 2>/dev/null; then
    ok "reload (SIGHUP): RELOADING=1, READY=1, still running"
else
    bad "reload (SIGHUP) not acknowledged"
fi
if grep -q 'configuration reloaded' "$GW_LOG"; then ok "log says: configuration reloaded"
else bad "no 'configuration reloaded' in the log"; fi

# Stop: SIGTERM (systemctl stop), STOPPING=1, exit 0.
kill -TERM "$GW_PID"
rc=0
wait "$GW_PID" || rc=$?
GW_PID=""
expect "exit status after SIGTERM" "$rc" 0
if grep -q 'STOPPING=1' "$NOTIFY_LOG"; then ok "STOPPING=1 on the notify socket"; else bad "no STOPPING=1"; fi
echo "  notify messages: $(sort "$NOTIFY_LOG" | uniq -c | sed 's/^ *//' | tr '\n' ';')"
echo "  gateway log (last lines):"; tail -n 5 "$GW_LOG" | sed 's/^/    /'

# `prefront doctor` as the service user, ports free again. The cloud in the installed file does
# not exist, so FAILs are expected; it must run to its summary (exit 0 or 1), and, when strace is
# here, never open glibc's NSS (nsswitch.conf, libnss_*): host names go through hickory.
drc=0
if command -v strace >/dev/null 2>&1; then
    TRACE="$WORK/doctor.strace"
    install -m 0600 -o prefront -g prefront /dev/null "$TRACE"
    as_unit strace -f -qq -e trace=open,openat -o "$TRACE" \
        /usr/bin/prefront doctor --config "$CONF" >"$WORK/doctor.out" 2>&1 || drc=$?
    if ! grep -q '"/etc/resolv.conf"' "$TRACE"; then
        bad "doctor under strace: no /etc/resolv.conf read (trace: $(wc -l <"$TRACE") lines)"
    elif grep -E 'nsswitch\.conf|libnss_|/etc/passwd|/etc/group' "$TRACE" >/dev/null; then
        bad "doctor opened NSS files: $(grep -oE '"[^"]*(nsswitch|libnss_|passwd|group)[^"]*"' "$TRACE" | sort -u | tr '\n' ' ')"
    else
        ok "doctor resolved the cloud's name itself (read $(grep -oE '"/etc/(resolv\.conf|hosts)"' "$TRACE" | sort -u | tr -d '"' | paste -sd' ')), no NSS (nsswitch.conf, libnss_*, passwd, group)"
    fi
else
    as_unit /usr/bin/prefront doctor --config "$CONF" >"$WORK/doctor.out" 2>&1 || drc=$?
    echo "  (no strace here: NSS use at run time not traced)"
fi
sed 's/^/    /' "$WORK/doctor.out"
case "$drc" in 0|1) ok "prefront doctor ran as prefront (exit $drc)" ;; *) bad "prefront doctor exit $drc" ;; esac
if grep -q 'cloud DNS' "$WORK/doctor.out"; then ok "doctor checked the cloud's DNS name"
else bad "doctor: no cloud DNS line"; fi

# ---------------------------------------------------------------------------------------------
step "dpkg -i again over a changed configuration (an upgrade keeps the operator's file)"
# ---------------------------------------------------------------------------------------------
echo "# changed by test-deb.sh" >>"$CONF"
dpkg_ -i --force-confold "$DEB" >/dev/null
if tail -n1 "$CONF" | grep -q 'changed by test-deb.sh'; then ok "changed $CONF kept"; else bad "changed $CONF replaced"; fi
owner_mode "$CONF" root:prefront 640

# ---------------------------------------------------------------------------------------------
step "dpkg -r prefront (configuration and state stay)"
# ---------------------------------------------------------------------------------------------
dpkg_ -r prefront
expect "dpkg status" "$(dpkg-query -W -f='${Status}' prefront 2>/dev/null)" "deinstall ok config-files"
absent /usr/bin/prefront
absent "$UNIT"
absent "$SYSUSERS"
present "$CONF"
owner_mode "$CONF" root:prefront 640
present "$STATE/buffer"
owner_mode "$STATE" prefront:prefront 750

# ---------------------------------------------------------------------------------------------
step "dpkg --purge prefront (configuration and state go; the user stays)"
# ---------------------------------------------------------------------------------------------
dpkg_ --purge prefront
expect "dpkg knows prefront" "$(dpkg-query -W -f='${Status}' prefront 2>/dev/null || echo 'not known')" "not known"
absent "$CONF"
absent /etc/prefront
absent "$STATE"
if getent passwd prefront >/dev/null; then ok "user prefront kept (by design)"; else bad "user prefront gone"; fi
left=$(find /etc /usr /lib /var/lib -path /proc -prune -o -name '*prefront*' -print 2>/dev/null | tr '\n' ' ')
if [ -z "$left" ]; then ok "no file named *prefront* left under /etc /usr /lib /var/lib"
else bad "left behind: $left"; fi

# ---------------------------------------------------------------------------------------------
END=$(date +%s)
printf '\n== summary: %d checks passed, %d failed (build %ds, tests %ds, total %ds)\n' \
    "${#PASSED[@]}" "${#FAILED[@]}" $((BUILT - START)) $((END - BUILT)) $((END - START))
if [ "${#FAILED[@]}" -eq 0 ]; then
    echo "test-deb: PASS"
else
    for f in "${FAILED[@]}"; do echo "  FAIL  $f"; done
    echo "test-deb: FAIL"
    exit 1
fi
