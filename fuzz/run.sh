#!/usr/bin/env bash
# Bounded fuzzing of every parser that sees network bytes (not part of CI).
#
#   fuzz/run.sh [--no-cmin] [SECONDS_PER_TARGET] [TARGET...]   default: 60 s, every target
#
# Targets (properties in fuzz/checks.rs): soap_envelope, xml_to_json, json_check, json_to_xml, charset,
# files_token, signed_call, link_rewrite, forwarded_for, config_toml.
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`) and a nightly toolchain, or the stable one
# with RUSTC_BOOTSTRAP=1 (used automatically when no nightly is installed).
#
# Each target starts from fuzz/corpus/<target>/ (tracked in git: the corpus every earlier run grew,
# minimised) plus fuzz/seeds/<target>/ (read only); new inputs are written to the corpus. After
# the run the corpus is minimised in place with `cargo fuzz cmin` (skip with --no-cmin), so a
# commit of fuzz/corpus/ lets the next run start where this one ended.
#
# A failing input lands in fuzz/artifacts/<target>/ and is copied to
# fuzz/regressions/<target>/, where tests/fuzz_regressions.rs checks it in CI from then on:
# commit it (prefix its name with `known-bug-` while the bug is not fixed). The other targets
# still run; the script exits 1 if any target failed. A summary line per target gives the
# executions, exec/s, corpus sizes and the outcome; the same is appended, tab-separated, to
# fuzz/logs/summary.tsv (not in git) for fuzz/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")"
cmin=1
if [ "${1:-}" = "--no-cmin" ]; then
    cmin=0
    shift
fi
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
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
"${fuzz[@]}" build
# libFuzzer flags shared by the run and the minimisation.
common=(-max_len=65536 -timeout=5 -rss_limit_mb=1024)
mkdir -p logs
summary=()
failed=0
# "files bytes" of a directory's files.
size() {
    local n b
    n=$(find "$1" -maxdepth 1 -type f | wc -l)
    b=$(find "$1" -maxdepth 1 -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}')
    echo "$n $b"
}
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "artifacts/$target"
    start=$(size "corpus/$target")
    before=$(ls "artifacts/$target" | sort)
    dict=()
    if [ -f "dicts/$target.dict" ]; then
        dict=(-dict="dicts/$target.dict")
    fi
    echo "== $target: ${secs}s (corpus: $start files/bytes)"
    set +e
    "${fuzz[@]}" run "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$secs" "${common[@]}" \
        -print_final_stats=1 "${dict[@]}" 2>&1 | tee "logs/$target.log" |
        grep -E '^(#[0-9]+[[:space:]]+(INITED|DONE)|==[0-9]+==|SUMMARY|Done |thread .* panicked)'
    status=${PIPESTATUS[0]}
    set -e
    execs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "logs/$target.log" | grep -Eo '[0-9]+$' | tail -1)
    rate=$(grep -Eo 'stat::average_exec_per_sec: *[0-9]+' "logs/$target.log" | grep -Eo '[0-9]+$' | tail -1)
    execs="${execs:-?}"
    rate="${rate:-?}"
    grown=$(size "corpus/$target")
    minimised="$grown"
    if [ "$cmin" -eq 1 ]; then
        echo "   minimising corpus/$target ($grown files/bytes)"
        if "${fuzz[@]}" cmin "$target" "corpus/$target" -- "${common[@]}" \
            >"logs/$target.cmin.log" 2>&1; then
            minimised=$(size "corpus/$target")
        else
            echo "   cmin failed: see fuzz/logs/$target.cmin.log"
            minimised="cmin-failed"
        fi
    fi
    new=$(comm -13 <(echo "$before") <(ls "artifacts/$target" | sort) || true)
    if [ "$status" -ne 0 ] || [ -n "$new" ]; then
        failed=1
        mkdir -p "regressions/$target"
        for f in $new; do
            cp "artifacts/$target/$f" "regressions/$target/$f"
        done
        outcome="FAILED (exit $status); inputs: $(echo $new | tr '\n' ' ')-> regressions/$target/"
    else
        outcome="no failure"
    fi
    summary+=("$target: $execs executions, $rate exec/s, corpus files/bytes $start -> $grown -> cmin $minimised, $outcome")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$target" "$secs" "$execs" "$rate" \
        "$start" "$grown" "$minimised" "$outcome" >>logs/summary.tsv
done
echo
echo "fuzzing summary (${secs}s per target; corpus: start -> after the run -> minimised):"
printf '  %s\n' "${summary[@]}"
if [ "$failed" -ne 0 ]; then
    echo "some targets failed: see fuzz/logs/<target>.log; the inputs are in fuzz/regressions/<target>/"
    exit 1
fi
echo "fuzzing finished without a failure"
