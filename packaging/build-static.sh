#!/usr/bin/env bash
# Builds the fully static x86_64 Linux binary that the .deb ships:
#   target/x86_64-unknown-linux-gnu/release/prefront
#
# glibc is linked statically (crt-static); `--target` is always passed so that build scripts and
# proc macros (built for the host) stay dynamically linked. The binary resolves host names with
# hickory (reqwest's `hickory-dns`), never through glibc's NSS: a static glibc would otherwise
# dlopen the *installed* glibc's libnss_* modules, which only work with the exact glibc version
# the binary was linked with.
#
# Options: -j N (cargo jobs, default 2). Environment: CARGO (default cargo).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=x86_64-unknown-linux-gnu
JOBS=2
while [ $# -gt 0 ]; do
    case "$1" in
        -j) JOBS="$2"; shift 2 ;;
        -j*) JOBS="${1#-j}"; shift ;;
        *) echo "usage: $0 [-j N]" >&2; exit 2 ;;
    esac
done

BIN="target/$TARGET/release/prefront"
LOG="target/$TARGET/build-static.log"
mkdir -p "target/$TARGET"

# GNU ld (bfd) rather than rustc's default rust-lld: it reports glibc's static-link warnings,
# one per NSS function linked and who references it, which -W linker-messages shows.
export RUSTFLAGS="-C target-feature=+crt-static -C link-arg=-fuse-ld=bfd -W linker-messages"
echo "== cargo build --release --locked --target $TARGET -j $JOBS (RUSTFLAGS=$RUSTFLAGS)"
start=$(date +%s)
"${CARGO:-cargo}" build --release --locked --target "$TARGET" -j "$JOBS" 2>&1 | tee "$LOG"
echo "== built in $(( $(date +%s) - start ))s"

fail() { echo "build-static: FAIL: $*" >&2; exit 1; }

[ -x "$BIN" ] || fail "$BIN was not produced"

# 1. Static: ldd says so ("statically linked" for static-pie, "not a dynamic executable" else).
ldd_out=$(ldd "$BIN" 2>&1 || true)
echo "== ldd $BIN: $ldd_out"
case "$ldd_out" in
    *"statically linked"* | *"not a dynamic executable"*) ;;
    *) fail "$BIN is dynamically linked: $ldd_out" ;;
esac
if command -v readelf >/dev/null 2>&1 && readelf -d "$BIN" 2>/dev/null | grep -q '(NEEDED)'; then
    fail "$BIN has NEEDED shared libraries: $(readelf -d "$BIN" | grep NEEDED)"
fi

# 2. Name service: which glibc NSS entry points ended up in the binary. Linked is not called:
#    every host name is resolved by hickory; see packaging/README.md for why the rest is harmless.
#    A *new* one appearing here is worth a look.
NSS_RE='^(getaddrinfo|gethostbyname[0-9_r]*|gethostbyaddr[_r]*|getnameinfo|getpw(nam|uid)(_r)?|getgr(nam|gid)(_r)?|getgrouplist|initgroups|getservby(name|port)(_r)?|getprotobyname(_r)?|dlopen)$'
echo "== glibc NSS functions the linker warns about (who references them):"
# "in function `caller':" is followed by "...: Using 'getaddrinfo' in statically linked ...".
warned=$(awk '
    /in function `/ { f = $0; sub(/.*in function `/, "", f); sub(/'"'"':.*/, "", f) }
    /Using '"'"'[a-z_0-9]+'"'"' in statically linked/ {
        s = $0; sub(/.*Using '"'"'/, "", s); sub(/'"'"'.*/, "", s); print "  " s "  <-  " f
    }' "$LOG" | sort -u)
if [ -n "$warned" ]; then printf '%s\n' "$warned"; else echo "  none"; fi
if command -v nm >/dev/null 2>&1; then
    linked=$(nm "$BIN" 2>/dev/null | awk '$2 ~ /^[TtWw]$/ {print $3}' | sed 's/@.*//' | grep -E "$NSS_RE" | sort -u | tr '\n' ' ' || true)
    echo "  in the binary after --gc-sections: ${linked:-none}"
    # getaddrinfo: std's lookup_host, referenced by hyper-util's GaiResolver (compiled into
    # reqwest, never used: .hickory_dns(true)) and by `prefront demo`'s bind to ("127.0.0.1", port)
    # (an IP literal: no lookup); gethostbyname2_r, getservbyname_r and dlopen (for libnss_*)
    # come with getaddrinfo. See packaging/README.md.
    expected=' getaddrinfo gethostbyname2_r getservbyname_r dlopen '
    for s in $linked; do
        case "$expected" in
            *" $s "*) ;;
            *) echo "  NOTE: $s is new in the binary: check who calls it (it goes through NSS)" ;;
        esac
    done
fi

# 3. Size.
size=$(stat -c %s "$BIN")
echo "== $BIN: $size bytes ($(( size / 1024 / 1024 )) MiB)"
"$BIN" --version
echo "build-static: OK"
