#!/usr/bin/env bash
# Builds the libFuzzer targets with clang in build-fuzz/ and runs each one
# for SECONDS seconds (default 60) on a scratch copy of its seed corpus,
# after replaying its regression inputs (tests/fuzz/regressions/<target>/).
# Prints one line per target; exits non-zero if any target crashed, leaked,
# timed out or ran out of memory, or if a regression input fails again.
#
#   tests/fuzz/run.sh [SECONDS] [TARGET...]
#   FUZZ_BUILD_DIR=DIR overrides the build directory (default build-fuzz).
#
# A crash leaves its input in build-fuzz/artifacts/<target>/; minimise it
# with  build-fuzz/tests/fuzz/<target> -minimize_crash=1 -runs=100000 FILE
# and add the result to tests/fuzz/regressions/<target>/.
set -uo pipefail

secs=${1:-60}
shift || true
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${FUZZ_BUILD_DIR:-$root/build-fuzz}
jobs=$(nproc 2>/dev/null || echo 2)

if ! command -v clang >/dev/null; then
    echo "fuzz: clang is missing (apt-get install clang libclang-rt-14-dev)" >&2
    exit 2
fi

echo "fuzz: building the targets in $build" >&2
mkdir -p "$build"
if ! CC=clang cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER=clang \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFANOUT_FUZZ=ON \
        -DFANOUT_WERROR=OFF >"$build/fuzz-cmake.log" 2>&1; then
    cat "$build/fuzz-cmake.log" >&2
    exit 2
fi
if ! cmake --build "$build" --target fuzz_all -j "$jobs" \
        >"$build/fuzz-build.log" 2>&1; then
    tail -50 "$build/fuzz-build.log" >&2
    echo "fuzz: build failed (is libclang-rt-14-dev installed? it holds" \
         "libFuzzer)" >&2
    exit 2
fi

bindir=$build/tests/fuzz
if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(grep -v '^$' "$bindir/targets.txt")
fi

failed=0
scratch=$(mktemp -d "${TMPDIR:-/tmp}/fanout-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

for t in "${targets[@]}"; do
    bin=$bindir/$t
    if [ ! -x "$bin" ]; then
        printf '%-22s NOT BUILT\n' "$t"
        failed=1
        continue
    fi
    art=$build/artifacts/$t
    mkdir -p "$art"
    opts=(-rss_limit_mb=2048 -timeout=10 -print_final_stats=1)
    [ -f "$here/$t.dict" ] && opts+=(-dict="$here/$t.dict")

    # Regression inputs: each must run clean, once.
    regress="ok"
    reg=$here/regressions/$t
    if [ -d "$reg" ] && [ -n "$(ls -A "$reg" 2>/dev/null)" ]; then
        if ! "$bin" "${opts[@]}" -runs=1 "$reg"/* >"$scratch/$t.regress.log" \
                2>&1; then
            regress="FAILED"
            failed=1
            echo "---- $t regression replay ----"
            grep -E '^Running:|ERROR:|runtime error|^    #[0-3] |^fuzz_' \
                "$scratch/$t.regress.log" | sed 's/ (BuildId.*//' | head -12
        else
            regress="ok ($(ls "$reg" | wc -l) inputs)"
        fi
    else
        regress="none"
    fi

    corpus=$scratch/$t.corpus
    mkdir -p "$corpus"
    [ -d "$here/corpus/$t" ] && cp -r "$here/corpus/$t/." "$corpus/"
    seeds=$(ls "$corpus" | wc -l)
    log=$scratch/$t.log
    "$bin" "${opts[@]}" -max_total_time="$secs" -artifact_prefix="$art/" \
        "$corpus" \
        >"$log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1)
    found=$(grep -oE '(ERROR: [A-Za-z]+: [a-z-]+|ERROR: libFuzzer: [a-z-]+|runtime error: .*|fuzz_[a-z_]+: .*|SUMMARY: .*)' \
        "$log" | head -1)
    if [ $rc -ne 0 ] || [ -n "$found" ]; then
        failed=1
        result="FOUND: ${found:-exit status $rc}; input in $art/"
        cp "$log" "$art/last-run.log"
    else
        result="nothing found"
    fi
    printf '%-22s %8s runs  %6s exec/s  %-9s corpus %s -> %s  regressions %s  %s\n' \
        "$t" "${runs:-?}" "${eps:-?}" "${cov:-cov: ?}" "$seeds" \
        "$(ls "$corpus" | wc -l)" "$regress" "$result"
done

exit $failed
