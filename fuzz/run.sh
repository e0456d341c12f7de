#!/usr/bin/env bash
# Bounded fuzzing of the SOAP envelope parsers and the XML → JSON mapper (not part of CI).
#   fuzz/run.sh [SECONDS_PER_TARGET]     default 60
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a nightly toolchain, or the stable one with
# RUSTC_BOOTSTRAP=1 (used automatically when no nightly is installed). Crashes land in
# fuzz/artifacts/<target>/; the corpus grows in fuzz/corpus/<target>/ (both ignored by git).
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    fuzz=(cargo +nightly fuzz)
else
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
fi
mkdir -p corpus/soap_envelope corpus/xml_to_json
# Seed with the real client envelopes.
cp -n ../tests/fixtures/soap/*.xml corpus/soap_envelope/ 2>/dev/null || true
cp -n ../tests/fixtures/soap/*.xml corpus/xml_to_json/ 2>/dev/null || true
for target in soap_envelope xml_to_json; do
    echo "== $target: ${secs}s"
    "${fuzz[@]}" run "$target" "corpus/$target" -- -max_total_time="$secs" -max_len=65536 -timeout=5 -rss_limit_mb=1024
done
echo "fuzzing finished without a crash"
