#!/usr/bin/env bash
# Bounded fuzzing of every parser that sees network bytes (not part of CI).
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]      default: 60 s, every target
#
# Targets (properties in fuzz/checks.rs): soap_envelope, xml_to_json, json_check, json_to_xml, charset,
# files_token, signed_call, link_rewrite, forwarded_for, config_toml.
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a nightly toolchain, or the stable one with
# RUSTC_BOOTSTRAP=1 (used automatically when no nightly is installed). Each target starts from
# fuzz/seeds/<target>/ plus the corpus it grew before (fuzz/corpus/<target>/, ignored by git).
# A failing input lands in fuzz/artifacts/<target>/ and is copied to
# fuzz/regressions/<target>/, where tests/fuzz_regressions.rs checks it in CI from then on:
# commit it (prefix its name with `known-bug-` while the bug is not fixed). The other targets
# still run; the script exits 1 if any target failed. A summary line per target gives the
# executions and the outcome.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
shift || true
all=(soap_envelope xml_to_json json_check json_to_xml charset files_token signed_call link_rewrite forwarded_for config_toml)
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=("${all[@]}")
fi
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    fuzz=(cargo +nightly fuzz)
else
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
fi
# One build for all targets; keep it gentle on a shared 2-core machine.
CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}" "${fuzz[@]}" build
mkdir -p logs
summary=()
failed=0
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "artifacts/$target"
    cp -n "seeds/$target"/* "corpus/$target/" 2>/dev/null || true
    before=$(ls "artifacts/$target" | sort)
    dict=()
    if [ -f "dicts/$target.dict" ]; then
        dict=(-dict="dicts/$target.dict")
    fi
    echo "== $target: ${secs}s"
    set +e
    "${fuzz[@]}" run "$target" "corpus/$target" -- \
        -max_total_time="$secs" -max_len=65536 -timeout=5 -rss_limit_mb=1024 \
        -print_final_stats=1 "${dict[@]}" 2>&1 | tee "logs/$target.log" |
        grep -E '^(#[0-9]+ +(INITED|DONE)|==[0-9]+==|SUMMARY|Done |thread .* panicked)'
    status=${PIPESTATUS[0]}
    set -e
    execs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "logs/$target.log" | grep -Eo '[0-9]+$' | tail -1)
    execs="${execs:-?}"
    new=$(comm -13 <(echo "$before") <(ls "artifacts/$target" | sort) || true)
    if [ "$status" -ne 0 ] || [ -n "$new" ]; then
        failed=1
        mkdir -p "regressions/$target"
        for f in $new; do
            cp "artifacts/$target/$f" "regressions/$target/$f"
        done
        summary+=("$target: $execs executions, FAILED (exit $status); inputs: $(echo $new | tr '\n' ' ')-> regressions/$target/")
    else
        summary+=("$target: $execs executions, no failure")
    fi
done
echo
echo "fuzzing summary (${secs}s per target):"
printf '  %s\n' "${summary[@]}"
if [ "$failed" -ne 0 ]; then
    echo "some targets failed: see fuzz/logs/<target>.log; the inputs are in fuzz/regressions/<target>/"
    exit 1
fi
echo "fuzzing finished without a failure"
