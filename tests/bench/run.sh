#!/usr/bin/env bash
# make bench: runs every benchmark scenario against the programs in BUILD_DIR
# and prints the table; see tests/bench/bench.py for what is measured.
# Usage: tests/bench/run.sh [BUILD_DIR] [bench.py options, e.g. --quick]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build}
shift || true
if [ ! -x "$build/bare_client" ]; then
    echo "bench: $build/bare_client is missing; build with 'make build'" >&2
    exit 2
fi
# exec, so Ctrl-C and SIGTERM reach the driver, which kills its children.
exec python3 "$here/bench.py" "$build" "$@"
