#!/usr/bin/env bash
# The HA test (DESIGN.md §10): two prefront boxes under keepalived (real VRRP) in network
# namespaces, a simulated HIS and cloud in a third, failover under load, nothing lost.
#
#   sudo packaging/ha/test-ha.sh [--bin PATH] [--modes "kill link"] [--work DIR]
#
#   --bin PATH     the prefront binary (default: $PREFRONT, else target/debug/prefront, else
#                  $CARGO_TARGET_DIR/debug/prefront; when there is none, `cargo build` makes it)
#   --modes M      which runs: "kill" (kill -9 the master's prefront), "link" (the master's
#                  link set down), "split" (split brain: the boxes stop hearing each other and
#                  both hold the VIP); default all three, one after the other
#   --work DIR     logs, configs, buffers, records (default /tmp/prefront-ha-test; emptied)
#
# Layout: namespace ha-lan holds a bridge with the HIS (10.77.0.1) and the cloud (10.77.0.2:8000);
# ha-a (10.77.0.11) and ha-b (10.77.0.12) each run `prefront run` and keepalived (unicast VRRP,
# advert_int 1, nopreempt, check /readyz fall 2 rise 2) sharing the VIP 10.77.0.10. No lab
# namespace has a default route; every lab socket is opened inside a namespace.
#
# Each run has two phases.
# 1. Notify calls, cloud down: HIS callers POST /prefront/sendTipMessage/payment with a unique
#    seq to the VIP; the master (a) is failed (kill -9 / link down / split); the VIP moves to b;
#    the calls go on through it; then a is restored, the cloud comes up, and every seq the boxes
#    acknowledged (HTTP 200, code 10001) must reach the cloud, in order per box and caller.
# 2. Queries, cloud up (kill and link runs): HIS callers POST /prefront/patient/getPatientInfo
#    to the VIP and get the cloud's answer; the master (now b) is failed the same way; the VIP
#    moves back to a and the queries are answered again through it.
# Output per run:
#   ha[kill]: failover_s=… restored_s=… failed_calls=… acked=… delivered=… lost=… duplicates=…
#             out_of_order=… delivered_by_a=… delivered_by_b=… …
#   ha[kill] queries: failover_s=… restored_s=… failed_calls=… answered=…
# Exit 1 when an acknowledged call was lost or delivered out of order, the VIP did not move
# within 5 s, queries were not answered again after a failover, or the harness failed.
# Needs root, keepalived, python3, curl, iproute2 (installed with apt-get when missing).
# Not in CI (about 4 minutes): run it before calling an HA change done.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

BIN=${PREFRONT:-}
MODES="kill link split"
WORK=/tmp/prefront-ha-test
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) BIN="$2"; shift 2 ;;
        --modes) MODES="$2"; shift 2 ;;
        --work) WORK="$2"; shift 2 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "test-ha: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "test-ha: needs root (network namespaces, keepalived)" >&2; exit 2; }
if [ -z "$BIN" ]; then
    for c in "$ROOT/target/debug/prefront" "${CARGO_TARGET_DIR:-/nonexistent}/debug/prefront"; do
        [ -x "$c" ] && { BIN=$c; break; }
    done
fi
if [ -z "$BIN" ]; then
    command -v cargo >/dev/null || { echo "test-ha: no prefront binary and no cargo to build one (--bin)" >&2; exit 2; }
    echo "== no prefront binary: cargo build --locked --bin prefront" >&2
    (cd "$ROOT" && cargo build --locked --bin prefront) >&2
    BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/prefront"
fi
[ -x "$BIN" ] || { echo "test-ha: no prefront binary at $BIN (--bin)" >&2; exit 2; }

missing=()
command -v keepalived >/dev/null || [ -x /usr/sbin/keepalived ] || missing+=(keepalived)
command -v python3 >/dev/null || missing+=(python3)
command -v curl >/dev/null || missing+=(curl)
command -v ip >/dev/null || missing+=(iproute2)
command -v sysctl >/dev/null || missing+=(procps)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
KEEPALIVED=$(command -v keepalived || echo /usr/sbin/keepalived)
PY=$(command -v python3)

VIP=10.77.0.10
T0=$(date +%s.%N)
now() { date +%s.%N; }
log() { echo "== [$(awk -v a="$T0" -v b="$(now)" 'BEGIN{printf "%6.1f", b-a}')s] $*"; }
fail() { echo "test-ha: FAIL: $*" >&2; exit 1; }

# ---- cleanup: every process by its PID, then the namespaces this script created ---------------
PIDS=()
stop_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
teardown() {
    local p
    for p in "${PIDS[@]}"; do stop_pid "$p"; done
    PIDS=()
    for ns in ha-a ha-b ha-lan; do ip netns del "$ns" 2>/dev/null || true; done
}
trap 'rc=$?; teardown; exit $rc' EXIT
trap 'exit 130' INT TERM

# ---- helpers written once ------------------------------------------------------------------------
rm -rf "$WORK"
mkdir -p "$WORK"
cat >"$WORK/cloud.py" <<'EOF'
# The simulated cloud: answers every POST like the platform does for a reminder and records it.
import json, os, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
host, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ANSWER = json.dumps({"success": True, "code": "10001", "msg": "ok", "data": None}).encode()
fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
lock = threading.Lock()
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n > 0 else b""
        try:
            seq = json.loads(body).get("seq")
        except Exception:
            seq = None
        with lock:
            os.write(fd, (json.dumps({"t": time.time(), "path": self.path, "seq": seq,
                                      "from": self.client_address[0]}) + "\n").encode())
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(ANSWER)))
        self.end_headers()
        self.wfile.write(ANSWER)
class Server(ThreadingHTTPServer):
    daemon_threads = True
    def handle_error(self, request, client_address):
        pass  # a box killed with its connections open: not the cloud's problem
Server((host, port), H).serve_forever()
EOF
cat >"$WORK/his.py" <<'EOF'
# The simulated HIS: W callers POST to PATH on the VIP with unique seqs until STOPFILE exists
# (at most DURATION s). acked: "seq t" per call answered 10001; failed: "t error" per other.
import http.client, json, os, sys, threading, time
url_host, port, stopfile, acked, failed, workers, duration, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]), float(sys.argv[7]), sys.argv[8]
afd = os.open(acked, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
ffd = os.open(failed, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
deadline = time.monotonic() + duration
def caller(w):
    conn, i = None, 0
    while time.monotonic() < deadline and not os.path.exists(stopfile):
        seq = w * 1000000 + i
        i += 1
        body = json.dumps({"hospitalId": "253", "patientName": "ha test", "seq": seq}).encode()
        try:
            if conn is None:
                conn = http.client.HTTPConnection(url_host, port, timeout=3)
            conn.request("POST", path, body=body,
                         headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            data = r.read()
            code = None
            try:
                code = json.loads(data).get("code")
            except Exception:
                pass
            if r.status == 200 and code == "10001":
                os.write(afd, f"{seq} {time.time():.3f}\n".encode())
            else:
                os.write(ffd, f"{time.time():.3f} http{r.status}/{code}\n".encode())
            time.sleep(0.02)
        except Exception as e:
            os.write(ffd, f"{time.time():.3f} {type(e).__name__}\n".encode())
            try:
                conn.close()
            except Exception:
                pass
            conn = None
            time.sleep(0.1)
ts = [threading.Thread(target=caller, args=(w,)) for w in range(workers)]
for t in ts: t.start()
for t in ts: t.join()
EOF

box_conf() { # name addr peer prio
    local n=$1 addr=$2 peer=$3 prio=$4 d=$WORK/$1
    mkdir -p "$d"
    cat >"$d/prefront.toml" <<EOF
[his_listener]
listen = "0.0.0.0:8080"
allow = ["10.77.0.0/24", "127.0.0.1/32"]

[cloud_listener]
listen = "127.0.0.1:8443"
allow = ["127.0.0.1/32"]

[admin]
listen = "127.0.0.1:9090"
vrrp_state_file = "$d/vrrp-state"

[cloud]
base_url = "http://10.77.0.2:8000/"
timeout_ms = 3000
connect_timeout_ms = 1000

[his]
kind = "http"
url = "http://127.0.0.1:9/his/{name}"
timeout_ms = 3000

[buffer]
path = "$d/buffer"
max_bytes = "256MiB"
retry_min = "200ms"
retry_max = "1s"

[log]
level = "info"
EOF
    sed -e "s|@ROUTER@|prefront-$n|; s|@ADDR@|$addr|; s|@PEER@|$peer|; s|@PRIO@|$prio|" \
        -e "s|@CHECK@|$HERE/check-prefront.sh|; s|@NOTIFY@|$HERE/notify-prefront.sh|; s|@STATE@|$d/vrrp-state|" \
        >"$d/keepalived.conf" <<'EOF'
global_defs {
    router_id @ROUTER@
    script_user root
}
vrrp_script chk_prefront {
    script "@CHECK@ http://127.0.0.1:9090/readyz"
    interval 1
    timeout 2
    fall 2
    rise 2
}
vrrp_instance PREFRONT_HIS {
    state BACKUP
    nopreempt
    interface eth0
    virtual_router_id 77
    priority @PRIO@
    advert_int 1
    unicast_src_ip @ADDR@
    unicast_peer {
        @PEER@
    }
    authentication {
        auth_type PASS
        auth_pass hatest
    }
    virtual_ipaddress {
        10.77.0.10/24 dev eth0
    }
    track_script {
        chk_prefront
    }
    notify "/usr/bin/env PREFRONT_VRRP_STATE_FILE=@STATE@ @NOTIFY@"
}
EOF
}

# The box's own prefront; its PID in $WORK/<name>/prefront.pid.
start_prefront() {
    local n=$1 d=$WORK/$1
    ip netns exec "ha-$n" "$BIN" --config "$d/prefront.toml" run >>"$d/prefront.log" 2>&1 &
    echo $! >"$d/prefront.pid"
    PIDS+=($!)
    local i
    for i in $(seq 100); do
        ip netns exec "ha-$n" curl -s -o /dev/null -m 1 http://127.0.0.1:9090/readyz && return 0
        sleep 0.1
    done
    fail "prefront in ha-$n not ready (see $d/prefront.log)"
}
start_keepalived() {
    local n=$1 d=$WORK/$1
    ip netns exec "ha-$n" "$KEEPALIVED" -n -l -D -P -f "$d/keepalived.conf" \
        -p "$d/keepalived.pid" -r "$d/vrrp.pid" -c "$d/checkers.pid" >>"$d/keepalived.log" 2>&1 &
    PIDS+=($!)
}
has_vip() { ip -n "ha-$1" -4 addr show dev eth0 2>/dev/null | grep -q "inet $VIP/"; }
wait_vip() { # box timeout_s -> prints the moment it holds the VIP
    local n=$1 end
    end=$(awk -v a="$(now)" -v t="$2" 'BEGIN{printf "%.3f", a+t}')
    while awk -v a="$(now)" -v e="$end" 'BEGIN{exit !(a<e)}'; do
        has_vip "$n" && { now; return 0; }
        sleep 0.05
    done
    return 1
}


# Fail box $1 the way the run's mode says; restore_box undoes it.
fail_box() {
    local n=$1 mode=$2 x
    case "$mode" in
        kill)
            log "[$mode] kill -9 box $n's prefront"
            kill -KILL "$(cat "$WORK/$n/prefront.pid")"
            ;;
        link)
            log "[$mode] box $n's link down"
            ip -n "ha-$n" link set eth0 down
            ;;
        split)
            # Each box routes the other's address into a blackhole and filters by reverse path:
            # the other's packets (its adverts) are dropped on the way in.
            log "[$mode] the boxes stop hearing each other (reverse-path filter drops the other's adverts)"
            for x in a b; do
                ip netns exec "ha-$x" sysctl -qw net.ipv4.conf.all.rp_filter=1 net.ipv4.conf.eth0.rp_filter=1
            done
            ip -n ha-a route add blackhole 10.77.0.12/32
            ip -n ha-b route add blackhole 10.77.0.11/32
            ;;
    esac
}
restore_box() {
    local n=$1 mode=$2
    case "$mode" in
        kill) start_prefront "$n" ;;
        link) ip -n "ha-$n" link set eth0 up ;;
        split)
            ip -n ha-a route del blackhole 10.77.0.12/32
            ip -n ha-b route del blackhole 10.77.0.11/32
            sleep 3 # one gives the VIP up
            ;;
    esac
}

# Figures of a phase's calls in $1 (acked, failed) after the failure at $2: sets RESTORED (s from
# the failure to the first success after the first failed call), FAILED_CALLS and ACKED.
phase_figures() {
    local R=$1 t_fail=$2 t_ff
    touch "$R/acked" "$R/failed"
    t_ff=$(awk -v t="$t_fail" '$1>=t{print $1; exit}' "$R/failed")
    RESTORED=$(awk -v t="$t_fail" -v f="${t_ff:-0}" '$2>t && $2>f{print $2-t; exit}' "$R/acked")
    RESTORED=$(printf '%.1f' "${RESTORED:-999}")
    FAILED_CALLS=$(awk -v t="$t_fail" '$1>=t' "$R/failed" | wc -l)
    ACKED=$(awk '{print $1}' "$R/acked" | sort -u | wc -l)
}

# Acknowledged against delivered: "delivered lost duplicates out_of_order by_a by_b unacked".
# Order is checked per box and per caller: a caller's seqs rise, so one box's deliveries of them
# must too. unacked: delivered calls whose answer the HIS never got (the link cut mid-answer):
# a HIS retries those, at least once is the promise (DESIGN.md §3).
count_delivered() {
    "$PY" - "$1/acked" "$1/delivered" <<'EOF'
import json, sys
acked = {int(l.split()[0]) for l in open(sys.argv[1]) if l.strip()}
rows = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
rows = [r for r in rows if r.get("path") == "/prefront/sendTipMessage/payment"]
seqs = [r.get("seq") for r in rows]
got = set(seqs)
last, seen, disorder, by = {}, set(), 0, {"10.77.0.11": 0, "10.77.0.12": 0}
for r in rows:
    s = r.get("seq")
    if s in seen or s is None:
        continue
    seen.add(s)
    by[r.get("from")] = by.get(r.get("from"), 0) + 1
    k = (r.get("from"), s // 1000000)
    if k in last and s < last[k]:
        disorder += 1
    last[k] = s
print(len(got), len(acked - got), len(seqs) - len(got), disorder, by["10.77.0.11"], by["10.77.0.12"],
      len(got - acked))
with open(sys.argv[1] + ".lost", "w") as f:
    f.writelines(f"{s}\n" for s in sorted(acked - got))
EOF
}

# Calls box $1 answered as queued, by its /metrics (for the split-brain run, where both serve).
queued_by() {
    ip netns exec "ha-$1" curl -s -m 2 http://127.0.0.1:9090/metrics |
        awk '/^prefront_calls_total\{/ && /outcome="queued"/ && /sendTipMessage\/payment/ {n+=$NF} END{printf "%d", n}'
}

ALL_OK=1
SUMMARY=()
run_one() {
    local mode=$1
    local R=$WORK/run-$mode
    teardown
    mkdir -p "$R"
    log "[$mode] namespaces: ha-lan (bridge, HIS 10.77.0.1, cloud 10.77.0.2), ha-a 10.77.0.11, ha-b 10.77.0.12, VIP $VIP"
    ip netns add ha-lan
    ip netns add ha-a
    ip netns add ha-b
    ip -n ha-lan link add br0 type bridge
    ip -n ha-lan link set br0 up
    ip -n ha-lan addr add 10.77.0.1/24 dev br0
    ip -n ha-lan addr add 10.77.0.2/24 dev br0
    ip -n ha-lan link set lo up
    for n in a b; do
        ip -n ha-lan link add "v$n" type veth peer name eth0 netns "ha-$n"
        ip -n ha-lan link set "v$n" master br0
        ip -n ha-lan link set "v$n" up
        ip -n "ha-$n" link set lo up
        ip -n "ha-$n" link set eth0 up
    done
    ip -n ha-a addr add 10.77.0.11/24 dev eth0
    ip -n ha-b addr add 10.77.0.12/24 dev eth0
    rm -rf "$WORK/a" "$WORK/b"
    box_conf a 10.77.0.11 10.77.0.12 100
    box_conf b 10.77.0.12 10.77.0.11 90
    for n in a b; do
        "$BIN" check --config "$WORK/$n/prefront.toml" >"$WORK/$n/check.log" 2>&1 ||
            fail "prefront check refused box $n's config: $(cat "$WORK/$n/check.log")"
    done
    sleep 1 # the veths' DAD
    start_prefront a
    start_prefront b
    start_keepalived a
    sleep 1.5 # a wins the first election (nopreempt: the higher priority, when both start)
    start_keepalived b
    wait_vip a 15 >/dev/null || fail "[$mode] box a never took the VIP (see $WORK/a/keepalived.log)"
    log "[$mode] box a is master; cloud down; HIS callers start"

    rm -f "$R/stop"
    ip netns exec ha-lan "$PY" "$WORK/his.py" $VIP 8080 "$R/stop" "$R/acked" "$R/failed" 4 90 \
        /prefront/sendTipMessage/payment &
    local his=$!
    PIDS+=($his)
    sleep 4
    local t_fail
    t_fail=$(now)
    fail_box a "$mode"
    local t_moved
    t_moved=$(wait_vip b 20) || fail "[$mode] box b never took the VIP"
    local failover
    failover=$(awk -v a="$t_fail" -v b="$t_moved" 'BEGIN{printf "%.1f", b-a}')
    log "[$mode] VIP on box b after ${failover}s"
    local both=- queued_a=- queued_b=-
    if [ "$mode" = split ]; then
        has_vip a && both=yes || both=no
        log "[$mode] both boxes hold the VIP: $both"
    fi
    sleep 2
    # /status on the new master shows its role (from the notify hook's state file).
    local status_b
    status_b=$(ip netns exec ha-b curl -s -m 2 http://127.0.0.1:9090/status |
        sed -n 's/.*id="vrrp-role">\([A-Z]*\)<.*/\1/p' | head -1)
    log "[$mode] /status on box b: VRRP role ${status_b:-none}"
    sleep 3
    touch "$R/stop"
    wait "$his" || true
    phase_figures "$R" "$t_fail"
    local restored=$RESTORED failed_calls=$FAILED_CALLS acked=$ACKED
    if [ "$mode" = split ]; then
        queued_a=$(queued_by a)
        queued_b=$(queued_by b)
        log "[$mode] each box buffered its own: box a $queued_a, box b $queued_b (acknowledged: $acked)"
    fi
    log "[$mode] acked $acked; calls failed after the failure $failed_calls; first success again after ${restored}s"

    log "[$mode] restore box a, cloud up"
    restore_box a "$mode"
    ip netns exec ha-lan "$PY" "$WORK/cloud.py" 10.77.0.2 8000 "$R/delivered" &
    PIDS+=($!)
    local i delivered=0 lost=1 dups=0 disorder=0 by_a=0 by_b=0 unacked=0
    for i in $(seq 600); do
        sleep 0.2
        [ -f "$R/delivered" ] || continue
        read -r delivered lost dups disorder by_a by_b unacked < <(count_delivered "$R")
        if [ "$lost" = 0 ]; then
            sleep 2 # duplicates that come late
            read -r delivered lost dups disorder by_a by_b unacked < <(count_delivered "$R")
            break
        fi
    done
    local who_a who_b
    who_a=$(cat "$WORK/a/vrrp-state" 2>/dev/null || echo -)
    who_b=$(cat "$WORK/b/vrrp-state" 2>/dev/null || echo -)
    local line="ha[$mode]: failover_s=$failover restored_s=$restored failed_calls=$failed_calls acked=$acked delivered=$delivered lost=$lost duplicates=$dups delivered_unacked=$unacked out_of_order=$disorder delivered_by_a=$by_a delivered_by_b=$by_b state_a=$who_a state_b=$who_b status_b=${status_b:-none} both_master=$both"
    [ "$mode" != split ] || line+=" queued_a=$queued_a queued_b=$queued_b"
    echo "$line"
    SUMMARY+=("$line")
    awk -v f="$failover" 'BEGIN{exit !(f<=5)}' || { ALL_OK=0; echo "test-ha: [$mode] failover ${failover}s > 5s" >&2; }
    [ "$status_b" = MASTER ] || { ALL_OK=0; echo "test-ha: [$mode] /status on box b did not say MASTER" >&2; }
    [ "$mode" != split ] || [ "$both" = yes ] || { ALL_OK=0; echo "test-ha: [split] box a did not keep the VIP too" >&2; }
    if [ "$mode" = split ]; then
        [ "$queued_a" -gt 0 ] && [ "$queued_b" -gt 0 ] ||
            { ALL_OK=0; echo "test-ha: [split] both boxes should have buffered calls (a $queued_a, b $queued_b)" >&2; }
    fi
    [ "$lost" = 0 ] || { ALL_OK=0; echo "test-ha: [$mode] $lost acknowledged calls lost (see $R/acked.lost)" >&2; }
    [ "$disorder" = 0 ] || { ALL_OK=0; echo "test-ha: [$mode] $disorder deliveries out of order within a box" >&2; }
    [ "$acked" -gt 0 ] || { ALL_OK=0; echo "test-ha: [$mode] nothing acknowledged" >&2; }

    # Phase 2: queries with the cloud up; now b is the master and fails the same way.
    if [ "$mode" != split ]; then
        local Q=$R/queries
        mkdir -p "$Q"
        has_vip b || fail "[$mode] box b does not hold the VIP before the query phase"
        log "[$mode] queries with the cloud up; box b is master"
        ip netns exec ha-lan "$PY" "$WORK/his.py" $VIP 8080 "$Q/stop" "$Q/acked" "$Q/failed" 4 60 \
            /prefront/patient/getPatientInfo &
        his=$!
        PIDS+=($his)
        sleep 3
        t_fail=$(now)
        fail_box b "$mode"
        t_moved=$(wait_vip a 20) || fail "[$mode] box a never took the VIP back"
        local q_failover after
        q_failover=$(awk -v a="$t_fail" -v b="$t_moved" 'BEGIN{printf "%.1f", b-a}')
        log "[$mode] VIP on box a after ${q_failover}s"
        sleep 5
        touch "$Q/stop"
        wait "$his" || true
        phase_figures "$Q" "$t_fail"
        after=$(awk -v t="$t_moved" '$2>t' "$Q/acked" | wc -l)
        line="ha[$mode] queries: failover_s=$q_failover restored_s=$RESTORED failed_calls=$FAILED_CALLS answered=$ACKED answered_after_failover=$after"
        echo "$line"
        SUMMARY+=("$line")
        awk -v f="$q_failover" 'BEGIN{exit !(f<=5)}' || { ALL_OK=0; echo "test-ha: [$mode] query failover ${q_failover}s > 5s" >&2; }
        [ "$after" -gt 0 ] || { ALL_OK=0; echo "test-ha: [$mode] no query answered after the failover" >&2; }
        restore_box b "$mode"
    fi
    # Keep each run's logs.
    cp -r "$WORK/a" "$R/box-a"
    cp -r "$WORK/b" "$R/box-b"
    rm -rf "$R/box-a/buffer" "$R/box-b/buffer"
    teardown
}

for m in $MODES; do
    case "$m" in kill | link | split) run_one "$m" ;; *) fail "unknown mode $m" ;; esac
done
echo "---- test-ha summary (work dir $WORK)"
printf '%s\n' "${SUMMARY[@]}"
[ "$ALL_OK" = 1 ] || { echo "test-ha: FAIL"; exit 1; }
echo "test-ha: PASS"
