#!/usr/bin/env bash
# Runs each libFuzzer target of fuzz/ for a bounded time. Not part of CI; see FUZZING.md.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]    (default: 60 s, every target)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). On a stable toolchain the
# nightly-only flags cargo-fuzz passes (-Zsanitizer=address, ...) are unlocked with
# RUSTC_BOOTSTRAP=1, which this script sets. The corpus grows in fuzz/corpus/TARGET (not
# committed), seeded from fuzz/seeds/TARGET (committed); crashes land in fuzz/artifacts/TARGET;
# each run's log is fuzz/logs/TARGET.log. Exits 1 if any target crashed.
set -euo pipefail

seconds="${1:-60}"
shift || true
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fuzz="$root/fuzz"
cd "$fuzz"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is not installed: cargo install cargo-fuzz --locked" >&2
    exit 2
fi
export RUSTC_BOOTSTRAP=1
target_dir="$fuzz/target"

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

cargo fuzz build -O --target-dir "$target_dir"

mkdir -p logs
crashed=()
printf '%-12s %8s %12s %10s %8s  %s\n' target seconds executions exec/s corpus result
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    log="logs/$t.log"
    set +e
    cargo fuzz run -O --target-dir "$target_dir" "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1
    rc=$?
    set -e
    execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)"
    rate="$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)"
    corpus="$(find "corpus/$t" -type f | wc -l)"
    if [ "$rc" -eq 0 ]; then
        result=ok
    else
        result="CRASH (exit $rc): $(grep -o 'Test unit written to .*' "$log" | tail -1)"
        crashed+=("$t")
    fi
    printf '%-12s %8s %12s %10s %8s  %s\n' "$t" "$seconds" "${execs:-?}" "${rate:-?}" "$corpus" "$result"
done

if [ "${#crashed[@]}" -gt 0 ]; then
    echo "crashed: ${crashed[*]} (see fuzz/logs/ and fuzz/artifacts/)" >&2
    exit 1
fi
