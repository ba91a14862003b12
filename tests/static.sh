#!/usr/bin/env bash
# Static checks over the product code (master/ worker/ common/ proto/; not
# tests/): clang-tidy with the checked-in .clang-tidy, using the
# compile_commands.json of a configure-only build in build-static/, and
# cppcheck. Exits non-zero on any finding that is not a known false
# positive (listed below, each with its reason).
#
#   tests/static.sh   STATIC_BUILD_DIR=DIR overrides build-static;
#                     STATIC_VERBOSE=1 also prints the filtered ones
# Needs clang-tidy and cppcheck (apt-get install clang-tidy cppcheck).
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${STATIC_BUILD_DIR:-$root/build-static}
cd "$root" || exit 2
for tool in clang-tidy cppcheck python3 cmake; do
    if ! command -v "$tool" >/dev/null; then
        echo "static: $tool is missing (apt-get install clang-tidy cppcheck)" >&2
        exit 2
    fi
done
dirs=(master worker common proto)
jobs=$(nproc 2>/dev/null || echo 2)

# Known false positives of clang-tidy, matched on the check, the file and
# the text of the flagged source line (not its number, which drifts):
#   check | file regex | source-line regex | why it is not a bug
known=(
"bugprone-macro-parentheses|common/error\.h$|FO_##name = num|X-macro: num is always an integer literal from FO_ERRNO_MAP, and an enum initializer cannot be mis-parsed"
"bugprone-narrowing-conversions|common/options\.c$|toupper|upper-casing ASCII option names: the int holds a char value"
"bugprone-implicit-widening-of-multiplication-result|\.c$|PROTO_MAX_CONTROL_BYTES|RETRY_AFTER_CAP_MS|1000 \* 1000|compile-time constants (4 MiB, 3600000, 20000000) that fit an int: nothing can overflow"
"bugprone-sizeof-expression|worker/witems\.c$|sizeof \*s->items|s->items is an array of pointers: sizeof *s->items is meant to be a pointer's size"
"bugprone-branch-clone|proto/proto\.c$|case 0x|prescan(): one case per msgpack format byte, kept apart to mirror the spec even when two formats skip the same bytes"
"bugprone-branch-clone|master/master\.c$|COMMIT_DELAY_NS|run_loop(): the two commit triggers (buffer due, head batch complete) are separate conditions on purpose"
)

status=0

# ---- clang-tidy -------------------------------------------------------
echo "static: configuring $build for compile_commands.json" >&2
cc=clang
command -v clang >/dev/null || cc=cc
mkdir -p "$build"
if ! CC=$cc cmake -S "$root" -B "$build" -DCMAKE_EXPORT_COMPILE_COMMANDS=ON \
        -DCMAKE_BUILD_TYPE=Debug -DFANOUT_TESTS=OFF \
        >"$build/static-cmake.log" 2>&1; then
    cat "$build/static-cmake.log" >&2
    exit 2
fi

# The product .c files that the build compiles (a file the build does not
# know has no flags to be checked with; cppcheck still sees it).
mapfile -t files < <(python3 - "$build/compile_commands.json" "$root" \
    "${dirs[@]}" <<'EOF'
import json, os, sys
db, root, dirs = sys.argv[1], sys.argv[2], sys.argv[3:]
seen = set()
for e in json.load(open(db)):
    f = os.path.normpath(os.path.join(e["directory"], e["file"]))
    rel = os.path.relpath(f, root)
    if rel.split(os.sep)[0] in dirs and rel not in seen:
        seen.add(rel)
        print(rel)
EOF
)
for d in "${dirs[@]}"; do
    for f in "$d"/*.c; do
        [[ " ${files[*]} " == *" $f "* ]] ||
            echo "static: note: $f is not in the build; clang-tidy skips it"
    done
done

tidy_log=$build/clang-tidy.log
printf '%s\n' "${files[@]}" |
    xargs -P "$jobs" -n 1 clang-tidy -p "$build" --quiet >"$tidy_log" 2>&1
tidy_report=$(python3 - "$tidy_log" "$root" "${known[@]}" <<'EOF'
import os, re, sys
log, root, known = sys.argv[1], sys.argv[2], sys.argv[3:]
rules = []
for k in known:
    parts = k.split("|")
    check, file_re, why = parts[0], parts[1], parts[-1]
    line_re = "|".join(parts[2:-1])
    rules.append((check, re.compile(file_re), re.compile(line_re), why))
head = re.compile(r"^(/[^:]+):(\d+):(\d+): (warning|error): (.*?)"
                  r"(?: \[([^\]]+)\])?$")
seen, real, known_hits = set(), [], []
for line in open(log, errors="replace"):
    m = head.match(line.rstrip("\n"))
    if not m:
        continue
    path, ln, col, kind, msg, check = m.groups()
    check = check or "clang-diagnostic"
    key = (path, ln, col, check)
    if key in seen:
        continue
    seen.add(key)
    rel = os.path.relpath(path, root)
    try:
        with open(path, errors="replace") as f:
            src = f.readlines()[int(ln) - 1].strip()
    except (OSError, IndexError):
        src = ""
    hit = next((r for r in rules if r[0] == check and r[1].search(rel)
                and r[2].search(src)), None)
    text = "%s:%s:%s: %s: %s [%s]\n        %s" % (rel, ln, col, kind, msg,
                                                  check, src)
    (known_hits if hit else real).append(text)
    if hit and os.environ.get("STATIC_VERBOSE"):
        print("known false positive: %s\n        (%s)" % (text, hit[3]))
for t in real:
    print(t)
print("clang-tidy: %d finding(s), %d known false positive(s) filtered"
      % (len(real), len(known_hits)))
sys.exit(1 if real else 0)
EOF
)
tidy_rc=$?
echo "$tidy_report"
if grep -qE 'error: .*(no such file|unknown argument|Error while)' "$tidy_log"; then
    echo "static: clang-tidy could not process some files; see $tidy_log"
    tidy_rc=1
fi
[ $tidy_rc -ne 0 ] && status=1

# ---- cppcheck ---------------------------------------------------------
cpp_log=$build/cppcheck.log
cppcheck --enable=warning,performance,portability --error-exitcode=1 \
    --inline-suppr --std=c11 --quiet -j "$jobs" \
    -I common -I proto -I master -I worker \
    -D_GNU_SOURCE -D__GNUC__ -DFANOUT_VERSION='"0"' \
    --template='{file}:{line}:{column}: {severity}: {message} [{id}]' \
    "${dirs[@]}" >"$cpp_log" 2>&1
cpp_rc=$?
n_cpp=$(grep -cE ': (error|warning|performance|portability|style): ' "$cpp_log")
grep -E ': (error|warning|performance|portability|style): ' "$cpp_log"
echo "cppcheck: $n_cpp finding(s)"
[ $cpp_rc -ne 0 ] && status=1

if [ $status -eq 0 ]; then
    echo "static: clean"
else
    echo "static: findings above (logs: $tidy_log, $cpp_log)"
fi
exit $status
