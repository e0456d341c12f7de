#!/usr/bin/env bash
# The power-cut test (DESIGN.md §3.1, "acknowledged means on the platter").
#
# Boots the real static prefront inside a qemu VM (TCG, never KVM) whose buffer lives on ext4 on
# a virtio disk (cache=none, a raw image kept across boots), loads it with buffered reminders
# while the cloud is down, and kills qemu with SIGKILL at a random moment: the guest's page
# cache and everything not yet flushed to the virtual disk is gone, as in a power cut. After
# --cuts such cycles it boots once more with the cloud up, lets the backlog drain, and checks
# that every call the box acknowledged (HTTP 200, X-Prefront-Queued, code 10001) reached the
# cloud at least once.
#
#   packaging/test-powercut.sh [--bin PATH] [--cuts N] [--quick] [--seed S] [options]
#
#   --bin PATH         the prefront binary to test (static; default: build it with
#                      packaging/build-static.sh)
#   --cuts N           power cuts (default 3)
#   --quick            1 cut, a short load window: for CI (under a minute once built)
#   --seed S           the seed of the kill moments (default: from the clock; always printed)
#   --workers N        parallel callers (default 4)
#   --rate R           calls per second per caller (default 0: as fast as the box answers)
#   --kill-after A:B   kill qemu between A and B seconds after the load starts (default 3:12;
#                      --quick: 2:5, at most 300 calls per caller)
#   --drain-timeout S  the last boot gives up after S seconds without a new delivery (default
#                      120; and after S + acked/10 seconds in all)
#   --smp N --mem MiB  the guest's CPUs (default 2) and memory (default 512)
#   --log-level L      prefront's [log] level in the guest (default info)
#   --control          the negative control: during the cut boots prefront runs under strace
#                      with every fsync-like syscall turned into a no-op that returns 0; the
#                      run passes only if the test then SEES lost acknowledged calls
#   --work DIR         where images, logs and records go (default target/powercut; emptied)
#
# Needs: qemu-system-x86_64, mkfs.ext4, python3, curl, apt-get download (for the guest kernel
# and busybox; cached in target/powercut-cache). Missing host packages are installed with
# apt-get. Traffic: the host's loopback only (the load to the forwarded HIS port, the guest's
# deliveries through slirp to the recorder on 127.0.0.1; the guest has no default route).
#
# Output: one line "powercut: cuts=… acked=… delivered=… lost=… duplicates=… … seed=…";
# exit 1 when an acknowledged call was lost (or the harness failed). The work directory keeps the
# guest's console logs (console-N.log), the acknowledgements (acked.txt), the recorder's
# deliveries (delivered.jsonl) and lost.txt if any.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
HERE=$ROOT/packaging/powercut

BIN=""
CUTS=3
QUICK=0
SEED=""
WORKERS=4
RATE=0
KILL_MIN=3
KILL_MAX=12
DRAIN_TIMEOUT=120
BOOT_TIMEOUT=180
SMP=2
MEM=512
LOG_LEVEL=info
WORK=$ROOT/target/powercut
CACHE=$ROOT/target/powercut-cache
MAX_CALLS=20000

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
cuts_set=0
KILL_AFTER=""
CONTROL=0
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) BIN="$2"; shift 2 ;;
        --cuts) CUTS="$2"; cuts_set=1; shift 2 ;;
        --quick) QUICK=1; shift ;;
        --seed) SEED="$2"; shift 2 ;;
        --workers) WORKERS="$2"; shift 2 ;;
        --rate) RATE="$2"; shift 2 ;;
        --kill-after) KILL_AFTER="$2"; shift 2 ;;
        --drain-timeout) DRAIN_TIMEOUT="$2"; shift 2 ;;
        --smp) SMP="$2"; shift 2 ;;
        --mem) MEM="$2"; shift 2 ;;
        --log-level) LOG_LEVEL="$2"; shift 2 ;;
        --work) WORK="$2"; shift 2 ;;
        --control) CONTROL=1; shift ;;
        -h | --help) usage 0 ;;
        *) echo "test-powercut: unknown argument $1" >&2; usage 2 ;;
    esac
done
if [ "$QUICK" = 1 ]; then
    [ "$cuts_set" = 1 ] || CUTS=1
    KILL_MIN=2
    KILL_MAX=5
    MAX_CALLS=300
fi
if [ -n "$KILL_AFTER" ]; then
    KILL_MIN="${KILL_AFTER%%:*}"
    KILL_MAX="${KILL_AFTER##*:}"
fi
if ! [ "$CUTS" -ge 1 ] 2>/dev/null || [ "$CUTS" -gt 20 ]; then echo "test-powercut: --cuts must be 1..20" >&2; exit 2; fi
if ! [ "$WORKERS" -ge 1 ] 2>/dev/null || [ "$WORKERS" -gt 9 ]; then echo "test-powercut: --workers must be 1..9" >&2; exit 2; fi
[ -n "$SEED" ] || SEED=$(( $(date +%s%N) % 1000000007 ))

T0=$(date +%s.%N)
elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%6.1f", b - a }'; }
log() { echo "== [$(elapsed)s] $*"; }
fail() { echo "test-powercut: FAIL: $*" >&2; exit 1; }

# ---- cleanup: everything started here is stopped by its PID ---------------------------------
QEMU_PID=""
LOAD_PID=""
REC_PID=""
stop_pid() { # pid signal
    local pid=$1 sig=${2:-TERM} i
    [ -n "$pid" ] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill "-$sig" "$pid" 2>/dev/null || true
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local rc=$?
    stop_pid "$LOAD_PID" TERM 2>/dev/null
    stop_pid "$QEMU_PID" KILL 2>/dev/null
    stop_pid "$REC_PID" TERM 2>/dev/null
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- host packages ---------------------------------------------------------------------------
missing=()
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
command -v mkfs.ext4 >/dev/null || missing+=(e2fsprogs)
command -v python3 >/dev/null || missing+=(python3)
command -v curl >/dev/null || missing+=(curl)
command -v depmod >/dev/null && command -v modprobe >/dev/null || missing+=(kmod)
[ "$CONTROL" = 0 ] || command -v strace >/dev/null || missing+=(strace)
if [ ${#missing[@]} -gt 0 ]; then
    log "installing host packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# ---- the binary ------------------------------------------------------------------------------
if [ -z "$BIN" ]; then
    log "building the static binary (packaging/build-static.sh)"
    bash packaging/build-static.sh
    BIN=$ROOT/target/x86_64-unknown-linux-gnu/release/prefront
fi
[ -x "$BIN" ] || fail "no binary at $BIN"
BIN=$(readlink -f "$BIN")
case "$(ldd "$BIN" 2>&1 || true)" in
    *"statically linked"* | *"not a dynamic executable"*) ;;
    *) fail "$BIN is not static (the guest has no libc): $(ldd "$BIN" 2>&1 | head -3)" ;;
esac
log "binary: $BIN ($("$BIN" --version), $(stat -c %s "$BIN") bytes)"

# ---- the guest kernel, its modules and busybox (cached) ---------------------------------------
mkdir -p "$CACHE"
apt_show() { apt-cache show --no-all-versions "$1" 2>/dev/null || true; }
KPKG=${POWERCUT_KERNEL_PKG:-}
if [ -z "$KPKG" ]; then
    # The kernel Debian's linux-image-amd64 points at; without package lists, the newest cached.
    kernel_pkg() { apt_show linux-image-amd64 | sed -n 's/^Depends: \(linux-image-[^ ,]*\).*/\1/p' | head -1; }
    KPKG=$(kernel_pkg)
    cached=$(find "$CACHE" -maxdepth 2 -path '*/linux-image-*/.done' 2>/dev/null | sort -V | tail -1)
    if [ -z "$KPKG" ] && [ -z "$cached" ]; then
        apt-get update -qq
        KPKG=$(kernel_pkg)
    fi
    if [ -z "$KPKG" ] && [ -n "$cached" ]; then KPKG=$(basename "$(dirname "$cached")"); fi
fi
[ -n "$KPKG" ] || fail "cannot tell which linux-image-*-amd64 to use (set POWERCUT_KERNEL_PKG)"
KDIR=$CACHE/$KPKG
# What the guest needs, in load order; modprobe --show-depends adds what each depends on.
MODULES="virtio_pci virtio_blk virtio_net crc32c_generic ext4"
if [ ! -e "$KDIR/.done" ]; then
    log "fetching the guest kernel $KPKG into $KDIR (apt-get download; not installed on the host)"
    rm -rf "$KDIR" && mkdir -p "$KDIR/dl" "$KDIR/modules"
    (cd "$KDIR/dl" && apt-get download "$KPKG" >/dev/null 2>&1) ||
        { apt-get update -qq && (cd "$KDIR/dl" && apt-get download "$KPKG" >/dev/null); }
    dpkg-deb -x "$KDIR"/dl/*.deb "$KDIR/x"
    KV=$(ls "$KDIR/x/lib/modules" | head -1)
    cp "$KDIR/x/boot/vmlinuz-$KV" "$KDIR/vmlinuz"
    depmod -b "$KDIR/x" "$KV"
    : >"$KDIR/modules.list"
    for m in $MODULES; do
        modprobe -d "$KDIR/x" -S "$KV" --show-depends "$m" | awk '$1 == "insmod" { print $2 }' |
            while read -r ko; do
                name=$(basename "$ko"); name=${name%%.ko*}
                grep -qx "$name" "$KDIR/modules.list" && continue
                case "$ko" in
                    *.ko.xz) xz -dc "$ko" >"$KDIR/modules/$name.ko" ;;
                    *.ko.zst) zstd -qdc "$ko" >"$KDIR/modules/$name.ko" ;;
                    *.ko.gz) gzip -dc "$ko" >"$KDIR/modules/$name.ko" ;;
                    *) cp "$ko" "$KDIR/modules/$name.ko" ;;
                esac
                echo "$name" >>"$KDIR/modules.list"
            done
    done
    echo "$KV" >"$KDIR/version"
    rm -rf "$KDIR/x" "$KDIR/dl"
    touch "$KDIR/.done"
fi
BBDIR=$CACHE/busybox-static
if [ ! -e "$BBDIR/.done" ]; then
    log "fetching busybox-static into $BBDIR"
    rm -rf "$BBDIR" && mkdir -p "$BBDIR/dl"
    (cd "$BBDIR/dl" && apt-get download busybox-static >/dev/null 2>&1) ||
        { apt-get update -qq && (cd "$BBDIR/dl" && apt-get download busybox-static >/dev/null); }
    dpkg-deb -x "$BBDIR"/dl/*.deb "$BBDIR/x"
    cp "$BBDIR/x/bin/busybox" "$BBDIR/busybox"
    rm -rf "$BBDIR/x" "$BBDIR/dl"
    touch "$BBDIR/.done"
fi
BUSYBOX=$BBDIR/busybox
log "guest: $KPKG ($(cat "$KDIR/version")), modules: $(tr '\n' ' ' <"$KDIR/modules.list")"

# ---- ports, config, initramfs, disk -----------------------------------------------------------
read -r HIS_PORT ADMIN_PORT CLOUD_PORT < <(python3 - <<'EOF'
import socket
socks = []
for _ in range(3):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(*(s.getsockname()[1] for s in socks))
EOF
)
rm -rf "$WORK" && mkdir -p "$WORK"
WORK=$(readlink -f "$WORK")
log "work dir $WORK; HIS 127.0.0.1:$HIS_PORT -> guest :8080, admin 127.0.0.1:$ADMIN_PORT -> :9090, cloud (recorder) 127.0.0.1:$CLOUD_PORT = guest's 10.0.2.2:$CLOUD_PORT"

cat >"$WORK/prefront.toml" <<EOF
# Written by packaging/test-powercut.sh for the guest. Callers come in through slirp's
# port forwarding, so they appear as 10.0.2.2.
[his_listener]
listen = "0.0.0.0:8080"
allow = ["10.0.2.2/32", "127.0.0.1/32"]
max_body = "1MiB"

[cloud_listener]
listen = "127.0.0.1:8443"
allow = ["127.0.0.1/32"]

[admin]
listen = "0.0.0.0:9090"
allow = ["10.0.2.2/32", "127.0.0.1/32"]

[cloud]
base_url = "http://10.0.2.2:$CLOUD_PORT/"
timeout_ms = 5000
connect_timeout_ms = 2000

[his]
kind = "http"
url = "http://127.0.0.1:9/his/{name}"
timeout_ms = 5000

[buffer]
path = "/data/buffer"
max_bytes = "256MiB"
ttl = "7d"
retry_min = "200ms"
retry_max = "1s"

[log]
level = "$LOG_LEVEL"
EOF
"$BIN" check --config "$WORK/prefront.toml" >"$WORK/check.log" 2>&1 ||
    fail "prefront check refused the guest's config: $(cat "$WORK/check.log")"

IRD=$WORK/initramfs
mkdir -p "$IRD"/{bin,etc/prefront,etc/powercut,lib/modules,proc,sys,dev,data,tmp,run}
cp "$BUSYBOX" "$IRD/bin/busybox"
cp "$BIN" "$IRD/bin/prefront"
cp "$HERE/init.sh" "$IRD/init"
chmod 0755 "$IRD/init" "$IRD/bin/busybox" "$IRD/bin/prefront"
cp "$KDIR"/modules/*.ko "$IRD/lib/modules/"
cp "$KDIR/modules.list" "$IRD/etc/powercut/modules"
cp "$WORK/prefront.toml" "$IRD/etc/prefront/prefront.toml"
# No name is ever looked up (the cloud is an address); a resolver that answers nothing.
echo "nameserver 127.0.0.1" >"$IRD/etc/resolv.conf"
printf '127.0.0.1 localhost\n10.0.2.15 powercut-guest\n' >"$IRD/etc/hosts"
if [ "$CONTROL" = 1 ]; then
    # The host's (dynamic) strace and the libraries it loads, at the same paths.
    STRACE=$(command -v strace)
    cp "$STRACE" "$IRD/bin/strace"
    for lib in $(ldd "$STRACE" | grep -o '/[^ ]*'); do
        mkdir -p "$IRD$(dirname "$lib")"
        cp -L "$lib" "$IRD$lib"
    done
fi
# Uncompressed: TCG is slow at inflating.
(cd "$IRD" && find . | "$BUSYBOX" cpio -o -H newc -R 0:0 2>/dev/null) >"$WORK/initrd.cpio"

truncate -s 512M "$WORK/disk.img"
mkfs.ext4 -q -F -L pcbuffer "$WORK/disk.img"

# ---- the VM ----------------------------------------------------------------------------------
BOOT_N=0
boot() { # [extra kernel arguments]
    BOOT_N=$((BOOT_N + 1))
    CONSOLE=$WORK/console-$BOOT_N.log
    # TCG only: this machine's /dev/kvm hangs a stock kernel.
    qemu-system-x86_64 -accel tcg -cpu max -smp "$SMP" -m "$MEM" \
        -nodefaults -display none -no-reboot \
        -kernel "$KDIR/vmlinuz" -initrd "$WORK/initrd.cpio" \
        -append "console=ttyS0 panic=-1 loglevel=4 random.trust_cpu=on ${1:-}" \
        -serial "file:$CONSOLE" \
        -drive "file=$WORK/disk.img,format=raw,if=virtio,cache=none,aio=threads" \
        -netdev "user,id=n0,ipv6=off,hostfwd=tcp:127.0.0.1:$HIS_PORT-:8080,hostfwd=tcp:127.0.0.1:$ADMIN_PORT-:9090" \
        -device virtio-net-pci,netdev=n0,romfile= \
        >"$WORK/qemu-$BOOT_N.log" 2>&1 &
    QEMU_PID=$!
    local t0 i
    t0=$(date +%s.%N)
    for i in $(seq $((BOOT_TIMEOUT * 2))); do
        if ! kill -0 "$QEMU_PID" 2>/dev/null; then
            tail -30 "$CONSOLE" "$WORK/qemu-$BOOT_N.log" >&2 || true
            fail "qemu exited during boot $BOOT_N"
        fi
        if curl -sf -m 2 -o /dev/null "http://127.0.0.1:$ADMIN_PORT/readyz"; then
            BOOT_SECS=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
            log "boot $BOOT_N: ready in ${BOOT_SECS}s (qemu pid $QEMU_PID, console $CONSOLE)"
            return 0
        fi
        if grep -q "powercut: FAIL" "$CONSOLE" 2>/dev/null; then
            tail -30 "$CONSOLE" >&2
            fail "the guest failed during boot $BOOT_N"
        fi
        sleep 0.5
    done
    tail -30 "$CONSOLE" >&2 || true
    fail "boot $BOOT_N: not ready after ${BOOT_TIMEOUT}s"
}

power_cut() {
    kill -KILL "$QEMU_PID" 2>/dev/null || true
    wait "$QEMU_PID" 2>/dev/null || true
    QEMU_PID=""
}

# The kill moments, from the seed.
read -r -a DELAYS < <(python3 -c '
import random, sys
r = random.Random(int(sys.argv[1]))
print(" ".join("%.2f" % r.uniform(float(sys.argv[2]), float(sys.argv[3])) for _ in range(int(sys.argv[4]))))
' "$SEED" "$KILL_MIN" "$KILL_MAX" "$CUTS")
log "seed $SEED: $CUTS cuts at ${DELAYS[*]} s into the load; $WORKERS callers$([ "$RATE" = 0 ] || echo " at $RATE/s each"); cloud down"

ACKED=$WORK/acked.txt
: >"$ACKED"
CUT_TIMES=()
for cut in $(seq "$CUTS"); do
    c0=$(date +%s.%N)
    if [ "$CONTROL" = 1 ]; then boot powercut.control=1; else boot; fi
    before=$(wc -l <"$ACKED")
    delay=${DELAYS[$((cut - 1))]}
    python3 "$HERE/load.py" --url "http://127.0.0.1:$HIS_PORT/prefront/sendTipMessage/payment" \
        --acked "$ACKED" --base $((cut * 1000000)) --workers "$WORKERS" \
        --duration "$(awk -v d="$delay" 'BEGIN { print d + 30 }')" --max-calls "$MAX_CALLS" --rate "$RATE" \
        >"$WORK/load-$cut.json" 2>"$WORK/load-$cut.err" &
    LOAD_PID=$!
    sleep "$delay" &
    wait $! # (a signal to this script is handled at once, not after the sleep)
    if ! kill -0 "$LOAD_PID" 2>/dev/null; then
        echo "test-powercut: WARN: the load of cut $cut ended before the cut: $(cat "$WORK/load-$cut.json" "$WORK/load-$cut.err")" >&2
    fi
    power_cut 2>/dev/null
    log "cut $cut: SIGKILL to qemu ${delay}s into the load"
    wait "$LOAD_PID" || fail "load.py failed: $(cat "$WORK/load-$cut.err")"
    LOAD_PID=""
    after=$(wc -l <"$ACKED")
    secs=$(awk -v a="$c0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    CUT_TIMES+=("$secs")
    log "cut $cut: $((after - before)) acknowledged; load: $(cat "$WORK/load-$cut.json"); cycle ${secs}s"
done

# ---- the cloud returns; the backlog drains ---------------------------------------------------
log "cloud up: recorder on 127.0.0.1:$CLOUD_PORT; final boot"
: >"$WORK/delivered.jsonl"
python3 "$HERE/recorder.py" --port "$CLOUD_PORT" --out "$WORK/delivered.jsonl" 2>"$WORK/recorder.err" &
REC_PID=$!
for _ in $(seq 50); do
    curl -sf -m 1 -o /dev/null "http://127.0.0.1:$CLOUD_PORT/" && break
    kill -0 "$REC_PID" 2>/dev/null || fail "the recorder did not start: $(cat "$WORK/recorder.err")"
    sleep 0.1
done
d0=$(date +%s.%N)
boot
all_delivered() {
    python3 - "$ACKED" "$WORK/delivered.jsonl" <<'EOF'
import json, sys
acked = {int(l.split()[0]) for l in open(sys.argv[1]) if l.strip()}
got = set()
try:
    for l in open(sys.argv[2]):
        try:
            got.add(json.loads(l).get("seq"))
        except ValueError:
            pass
except FileNotFoundError:
    pass
sys.exit(0 if acked <= got else 1)
EOF
}
queue_depth() {
    # What the box still holds: the sum of prefront_buffer_depth (a family with no sample when no
    # route has a backlog), 0 only when prefront_buffer_used_bytes says the store is empty too;
    # "?" when /metrics does not say (then only the deliveries end the wait).
    curl -sf -m 3 "http://127.0.0.1:$ADMIN_PORT/metrics" 2>/dev/null | awk '
        /^prefront_buffer_depth[{ ]/ { depth += $NF }
        /^prefront_buffer_used_bytes[{ ]/ { used += $NF; seen_used = 1 }
        END { if (!seen_used) print "?"; else if (depth == 0 && used == 0) print 0; else print depth "+" used "B" }'
}
# Bounded: done when every acknowledged call arrived or the box's queue stays empty; given up
# after DRAIN_TIMEOUT seconds without a new delivery, or after DRAIN_TIMEOUT + acked/10 seconds
# in all (the box delivers one call at a time: about 20 a second under TCG).
drained=""
empty_polls=0
acked_total=$(wc -l <"$ACKED")
drain_cap=$((DRAIN_TIMEOUT + acked_total / 10))
last_count=-1
last_progress=$SECONDS
drain_start=$SECONDS
while [ $((SECONDS - drain_start)) -lt "$drain_cap" ] && [ $((SECONDS - last_progress)) -lt "$DRAIN_TIMEOUT" ]; do
    if all_delivered; then drained="every acknowledged call delivered"; break; fi
    kill -0 "$QEMU_PID" 2>/dev/null || fail "qemu died while draining"
    count=$(wc -l <"$WORK/delivered.jsonl" 2>/dev/null || echo 0)
    if [ "$count" != "$last_count" ]; then last_count=$count; last_progress=$SECONDS; fi
    depth=$(queue_depth || echo "?")
    if [ "$depth" = 0 ]; then
        empty_polls=$((empty_polls + 1))
        if [ "$empty_polls" -ge 3 ]; then drained="the box's queue is empty"; break; fi
    else
        empty_polls=0
    fi
    sleep 1
done
DRAIN_SECS=$(awk -v a="$d0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
log "drain: ${drained:-GAVE UP (queue depth $(queue_depth || echo "?"))}; $(wc -l <"$WORK/delivered.jsonl") deliveries in ${DRAIN_SECS}s including the boot"
sleep 2 # deliveries in flight reach the record
curl -sf -m 3 "http://127.0.0.1:$ADMIN_PORT/metrics" >"$WORK/metrics-final.txt" 2>/dev/null || true
stop_pid "$QEMU_PID" TERM 2>/dev/null
QEMU_PID=""
stop_pid "$REC_PID" TERM 2>/dev/null
REC_PID=""

log "timings: cut cycles ${CUT_TIMES[*]} s; final boot + drain ${DRAIN_SECS}s; total $(elapsed)s"
consoles=()
for n in $(seq "$BOOT_N"); do consoles+=("$WORK/console-$n.log"); done
rc=0
python3 "$HERE/report.py" --acked "$ACKED" --delivered "$WORK/delivered.jsonl" \
    --cuts "$CUTS" --seed "$SEED" --lost-out "$WORK/lost.txt" "${consoles[@]}" || rc=$?
acked_n=$(wc -l <"$ACKED")
if [ "$CONTROL" = 1 ]; then
    if [ "$rc" = 1 ]; then
        echo "test-powercut: control OK: with prefront's fsyncs disabled the test saw acknowledged calls lost"
        exit 0
    fi
    echo "test-powercut: control FAIL: fsyncs disabled and still nothing lost: this test cannot see a loss (rc $rc)" >&2
    exit 1
fi
if [ "$rc" = 0 ] && [ "$acked_n" -lt 20 ]; then
    echo "test-powercut: FAIL: only $acked_n calls were acknowledged: the test proves nothing" >&2
    rc=1
fi
[ -z "$drained" ] && [ "$rc" = 0 ] && { echo "test-powercut: FAIL: the backlog did not drain" >&2; rc=1; }
[ "$rc" = 0 ] && echo "test-powercut: OK" || echo "test-powercut: FAIL (logs in $WORK)"
exit "$rc"
