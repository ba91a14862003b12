#!/usr/bin/env bash
# Runs integration tests with every fanout-master and fanout-worker under
# valgrind memcheck, then fails if any process reported an invalid read or
# write, a use of uninitialised memory, a bad free or a definite leak.
#
#   tests/valgrind.sh BUILD_DIR [FILE[:TEST,TEST...|:!TEST,TEST...] ...]
#
# Without FILE arguments it runs the default selection below. FILE is a
# test file in tests/integration ("test_pipeline.py"); after a colon, the
# test functions to run, or after ":!" the ones to leave out (all when
# omitted). Deadlines scale by FANOUT_TIMEOUT_MULTIPLIER (default 10).
# Logs: BUILD_DIR/valgrind/vg-<pid>.log, one per process, and
# BUILD_DIR/valgrind/<file>.out, each test file's output.
# Needs valgrind (apt-get install valgrind).
set -uo pipefail

if [ $# -lt 1 ]; then
    echo "usage: $0 BUILD_DIR [FILE[:TEST,...|:!TEST,...] ...]" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$1" && pwd) || exit 2
shift
if ! command -v valgrind >/dev/null; then
    echo "valgrind: not installed (apt-get install valgrind)" >&2
    exit 2
fi
for b in fanout-master fanout-worker fanout-testserver; do
    if [ ! -x "$build/$b" ]; then
        echo "valgrind: $build/$b is missing: build first (make build)" >&2
        exit 2
    fi
done

# The default selection: every integration file the suite depends on, all
# their tests (about 5 minutes on 2 cores), except two that compare rate
# figures and there measure valgrind rather than fanout: the strict-limit
# run (a worker slowed 20x can deliver a token late enough for one 429)
# and a minute of adaptive-against-fixed pacing. Everything else passes
# under valgrind with the multiplier. Of the queue suite, the runs without
# a rate limit (the kill -9 runs pace at a limit, as above).
if [ $# -eq 0 ]; then
    set -- "test_pipeline.py:!test_end_to_end_at_the_strict_limit" \
        test_durability.py test_bad_input.py \
        "test_pushback.py:!test_hidden_limit_adaptive_vs_fixed" \
        "test_queues.py:test_redis_fields_form,test_redis_follow,test_redis_bad_entries_are_recorded_invalid,test_azure_plain_and_base64,test_azure_bad_messages_are_recorded_invalid"
fi

logdir=$build/valgrind
rm -rf "$logdir"
mkdir -p "$logdir"

marker=FANOUT-VALGRIND-ERROR
export FANOUT_WRAP="valgrind --error-exitcode=99 --leak-check=full \
--errors-for-leak-kinds=definite --show-leak-kinds=definite \
--num-callers=30 \
--error-markers=$marker-BEGIN,$marker-END --log-file=$logdir/vg-%p.log"
export FANOUT_BIN=$build
export FANOUT_TIMEOUT_MULTIPLIER=${FANOUT_TIMEOUT_MULTIPLIER:-10}

start=$(date +%s)
failed_tests=0
for spec in "$@"; do
    file=${spec%%:*}
    tests=()
    if [ ! -f "$here/integration/$file" ]; then
        echo "== valgrind: $file does not exist; skipped"
        continue
    fi
    if [ "$file" != "$spec" ]; then
        list=${spec#*:}
        if [ "${list:0:1}" = "!" ]; then
            # All the file's tests but these.
            while read -r t; do
                [[ ",${list:1}," == *",$t,"* ]] || tests+=("$t")
            done < <(sed -n 's/^def \(test_[A-Za-z0-9_]*\)(.*/\1/p' \
                "$here/integration/$file")
        else
            IFS=, read -r -a tests <<<"$list"
        fi
    fi
    echo "== valgrind: $file ${tests[*]:-(all tests)}"
    t0=$(date +%s)
    if ! python3 "$here/integration/$file" "${tests[@]}" 2>&1 |
            tee "$logdir/${file%.py}.out" |
            grep -E '^(PASS|FAIL|SKIP|MEASURED|[0-9]+ passed)'; then
        :
    fi
    if ! grep -qE '^[0-9]+ passed, 0 failed$' "$logdir/${file%.py}.out"; then
        failed_tests=1
        echo "   (failures: see $logdir/${file%.py}.out)"
    fi
    echo "   $(( $(date +%s) - t0 )) s"
done

# Scan every process's log: any error block (the markers surround each
# error, definite leaks included) or a non-zero error summary fails.
bad=0
nlogs=0
for log in "$logdir"/vg-*.log; do
    [ -e "$log" ] || continue
    nlogs=$((nlogs + 1))
    if grep -q "$marker-BEGIN" "$log" ||
            grep -qE 'ERROR SUMMARY: [1-9]' "$log"; then
        bad=$((bad + 1))
        echo "---- $log: $(grep -m1 -E '^==[0-9]+== Command:' "$log" |
            sed 's/^==[0-9]*== //' | cut -c1-200)"
        awk -v b="$marker-BEGIN" -v e="$marker-END" '
            index($0, b) { on = 1; n++; if (n > 5) exit; next }
            index($0, e) { on = 0; print "   ..."; next }
            on { print }' "$log" | head -150
        grep -E 'ERROR SUMMARY' "$log"
    fi
done
incomplete=$(grep -L 'ERROR SUMMARY' "$logdir"/vg-*.log 2>/dev/null | wc -l)

echo "valgrind: $nlogs processes checked ($incomplete killed before their" \
     "summary), $bad with errors; $(( $(date +%s) - start )) s in all;" \
     "logs in $logdir"
if [ $bad -ne 0 ] || [ $failed_tests -ne 0 ]; then
    [ $failed_tests -ne 0 ] && echo "valgrind: some tests failed under valgrind"
    exit 1
fi
echo "valgrind: clean"
