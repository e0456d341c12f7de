#!/usr/bin/env bash
# Cross-builds prefront.exe for Windows on this Debian 12 machine and packs the .msi.
#
#   packaging/windows/build.sh            # both targets, both .msi
#   packaging/windows/build.sh --no-win7  # Windows 10 / Server 2016+ only
#
# Toolchain: Debian's rustc-web/cargo-web (pinned below) with the standard library built from
# rust-web-src (-Zbuild-std), linked by MinGW-w64; never the rustup toolchain on PATH. Targets:
#   x86_64-pc-windows-gnu    Windows 10 / Server 2016 and newer    -> prefront-<ver>-x64.msi
#   x86_64-win7-windows-gnu  Windows 7 / Server 2008 R2 and newer   -> prefront-<ver>-win7-x64.msi
#                            (best effort; also the one that runs under Debian 12's Wine 8,
#                            which lacks bcryptprimitives.dll!ProcessPrng that std uses on win10+)
# Output: target/windows/dist/ (the .exe of each target and the .msi files).
# Needs root for apt-get when a package is missing. The first build takes long (std is compiled
# too); it runs with nice -n 10 and -j 2 (override: JOBS=1).
set -euo pipefail
cd "$(dirname "$0")/../.."
{ # read in full before it runs: editing this file during a build cannot derail it

# The Debian rustc-web this script is written for (upstream version; the Debian revision may
# move with security updates).
RUST_WEB_VERSION=1.96.0
JOBS=${JOBS:-2}
WIN7=1
for a in "$@"; do
    case "$a" in
        --no-win7) WIN7=0 ;;
        *) echo "usage: $0 [--no-win7]" >&2; exit 2 ;;
    esac
done

# --- tools (idempotent) ---------------------------------------------------------------------
PKGS=(rustc-web cargo-web rust-web-src gcc-mingw-w64-x86-64 wixl)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for p in rustc-web cargo-web rust-web-src; do
    v=$(dpkg-query -W -f='${Version}' "$p")
    if [[ "$v" != "$RUST_WEB_VERSION"+* ]]; then
        echo "error: $p $v is installed; this build is pinned to $RUST_WEB_VERSION (RUST_WEB_VERSION in $0)." >&2
        echo "       Install it (apt-get install $p=$RUST_WEB_VERSION+…) or test the new one and change the pin." >&2
        exit 1
    fi
done

# Debian's binaries, by full path: the rustup proxies in ~/.cargo/bin must not be picked up.
DEB_CARGO=/usr/bin/cargo
DEB_RUSTC=/usr/bin/rustc
for f in "$DEB_CARGO" "$DEB_RUSTC" /usr/bin/x86_64-w64-mingw32-gcc; do
    [[ -x "$f" ]] || { echo "error: $f missing (dpkg -L cargo-web rustc-web gcc-mingw-w64-x86-64)" >&2; exit 1; }
done
if [[ "$(readlink -f "$DEB_RUSTC")" == */.cargo/* || "$("$DEB_RUSTC" --version)" != "rustc $RUST_WEB_VERSION "* ]]; then
    echo "error: $DEB_RUSTC is not Debian's rustc-web $RUST_WEB_VERSION: $("$DEB_RUSTC" --version)" >&2
    exit 1
fi
SRC="$("$DEB_RUSTC" --print sysroot)/lib/rustlib/src/rust/library"
[[ -d "$SRC/std" ]] || { echo "error: no standard library source at $SRC (rust-web-src)" >&2; exit 1; }

VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
# An .msi takes major.minor.build, numbers only: 0.1.0-rc.1 -> 0.1.0.
MSI_VERSION=${VERSION%%[-+]*}
[[ "$MSI_VERSION" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "error: Cargo.toml version $VERSION is not x.y.z" >&2; exit 1; }

TARGET_DIR=$PWD/target/windows
DIST=$TARGET_DIR/dist
mkdir -p "$DIST"

build() { # <target triple>
    local t=$1 tu=${1//-/_}
    local TU=${tu^^}
    echo "== cargo build --release --target $t ($("$DEB_RUSTC" --version))" >&2
    local start=$SECONDS
    env -u RUSTUP_TOOLCHAIN -u RUSTFLAGS -u CARGO_BUILD_TARGET \
        PATH=/usr/bin:/bin \
        RUSTC="$DEB_RUSTC" RUSTDOC=/usr/bin/rustdoc \
        RUSTC_BOOTSTRAP=1 \
        CARGO_TARGET_DIR="$TARGET_DIR" \
        "CARGO_TARGET_${TU}_LINKER=x86_64-w64-mingw32-gcc" \
        "CC_${tu}=x86_64-w64-mingw32-gcc" \
        "AR_${tu}=x86_64-w64-mingw32-ar" \
        nice -n 10 "$DEB_CARGO" build --release --locked -j "$JOBS" \
        -Zbuild-std=std,panic_abort --target "$t" || return 1
    cp "$TARGET_DIR/$t/release/prefront.exe" "$DIST/prefront-$VERSION-$t.exe" || return 1
    # The release profile keeps the symbol table (strip = "debuginfo"): about half the .exe.
    x86_64-w64-mingw32-strip "$DIST/prefront-$VERSION-$t.exe" || return 1
    echo "== $t: $((SECONDS - start)) s, $(stat -c %s "$DIST/prefront-$VERSION-$t.exe") bytes" >&2
}

msi() { # <target triple> <msi file name>
    local t=$1 out=$DIST/$2
    # wixl wants Source paths relative to the current directory (the repository root here).
    wixl --arch x64 -D Version="$MSI_VERSION" -D ExePath="target/windows/dist/prefront-$VERSION-$t.exe" \
        -o "$out" packaging/windows/prefront.wxs || return 1
    echo "== $out: $(stat -c %s "$out") bytes" >&2
}

build x86_64-pc-windows-gnu
msi x86_64-pc-windows-gnu "prefront-$MSI_VERSION-x64.msi"
if ((WIN7)); then
    if build x86_64-win7-windows-gnu; then
        msi x86_64-win7-windows-gnu "prefront-$MSI_VERSION-win7-x64.msi"
    else
        echo "warning: the win7 target did not build (best effort): no win7 .msi" >&2
    fi
fi
ls -l "$DIST"
exit
}
