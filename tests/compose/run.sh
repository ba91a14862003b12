#!/usr/bin/env bash
# make test-compose: the docker-compose cluster, built from this tree, runs a
# whole job while it is scaled up and a worker is killed, and every input id
# must come out exactly once with no 429 from the API.
#
#   tests/compose/run.sh [BUILD_DIR]
#
# Steps (each one timed in the closing summary):
#   1. Install docker.io and docker-compose from Debian when missing (root).
#   2. Start dockerd when none answers; stop it at exit only if we started it.
#   3. Provide debian:bookworm-slim when it is not present: debootstrap
#      --variant=minbase from the Debian mirror this machine's apt uses, then
#      `docker import` (no registry is contacted; FANOUT_COMPOSE_PULL=1 tries
#      `docker pull` first on machines that can reach one).
#   4. docker build -f deploy/Dockerfile (with --network host when a
#      container on the default bridge cannot reach the mirror).
#   5. docker compose --profile demo up with 3 workers, a generated input of
#      600 items and --rate 30/s against the test API (50/s, 3% failures);
#      scale to 5 workers once results exist; docker kill the worker that
#      holds the most items; wait for the master to exit.
#   6. Check results.jsonl (copied out of the volume): every input id exactly
#      once, nothing else; the test API's /stats: no 429. Print a /metrics
#      sample scraped from the master during the run.
# Containers, networks and volumes of the run are removed at exit, whatever
# happened (compose down -v); images stay cached.
#
# The test talks to 127.0.0.1 only: /metrics and /stats are published there
# on free ports. BUILD_DIR is accepted for `make` symmetry; the image is
# built from the sources, not from BUILD_DIR.
#
# Environment: FANOUT_COMPOSE_ITEMS (600), FANOUT_COMPOSE_RATE (30/s),
# FANOUT_COMPOSE_IMAGE (fanout:compose-test), FANOUT_COMPOSE_KEEP=1 (keep
# the work directory), FANOUT_COMPOSE_PULL=1, FANOUT_TIMEOUT_MULTIPLIER
# (scales every deadline), COMPOSE ("docker compose" or "docker-compose";
# default: v2 when available, else v1).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# $1 (BUILD_DIR) is accepted for `make` symmetry and not used.
compose_file=$repo/deploy/docker-compose.yml

items=${FANOUT_COMPOSE_ITEMS:-600}
rate=${FANOUT_COMPOSE_RATE:-30/s}
image=${FANOUT_COMPOSE_IMAGE:-fanout:compose-test}
project=fanoutct$(date +%s)$$

t0=$(date +%s)
work=$(mktemp -d /tmp/fanout-compose.XXXXXX)
chmod 0755 "$work"
compose_up=
ok=0
log_tag=compose
# say, die, phase, deadline, as_root_install, ensure_dockerd,
# ensure_base_image, choose_apt_network, docker_lib_cleanup.
. "$repo/tests/lib/docker.sh"

# ---------------------------------------------------------------- cleanup --

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if [ -n "$compose_up" ]; then
        if [ "$ok" != 1 ]; then
            say "containers and their last log lines:"
            compose ps -a 2>&1 | sed 's/^/    /'
            compose logs --no-color --tail=60 2>&1 | sed 's/^/    /' | tail -n 300
        fi
        say "compose down -v"
        compose down -v --remove-orphans -t 10 >"$work/down.log" 2>&1 ||
            { say "compose down failed:"; cat "$work/down.log"; }
    fi
    docker_lib_cleanup
    if [ "${FANOUT_COMPOSE_KEEP:-0}" = 1 ]; then
        say "work directory kept: $work"
    else
        rm -rf "$work"
    fi
    if [ "$ok" = 1 ]; then
        say "PASS"
    else
        say "FAILED (exit $rc)"
        [ "$rc" = 0 ] && rc=1
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------ 1. packages --

step=$(date +%s)
need=()
command -v dockerd >/dev/null || need+=(docker.io)
if [ -n "${COMPOSE:-}" ]; then
    read -r -a compose_cmd <<<"$COMPOSE"
elif docker compose version >/dev/null 2>&1; then
    compose_cmd=(docker compose)
else
    command -v docker-compose >/dev/null || need+=(docker-compose)
    compose_cmd=(docker-compose)
fi
[ ${#need[@]} -eq 0 ] || as_root_install "${need[@]}"
compose() {
    "${compose_cmd[@]}" -p "$project" -f "$compose_file" --profile demo "$@"
}
phase "packages" "$step"

# -------------------------------------------------------------- 2. dockerd --

step=$(date +%s)
ensure_dockerd
say "docker $(docker version --format '{{.Server.Version}}' 2>/dev/null), compose: $("${compose_cmd[@]}" version --short 2>/dev/null || "${compose_cmd[@]}" version | head -n 1)"
phase "dockerd" "$step"

# ----------------------------------------------------------- 3. base image --

step=$(date +%s)
ensure_base_image
phase "base image" "$step"

# ---------------------------------------------------------- 4. fanout image --

step=$(date +%s)
# The image build's apt-get must reach the mirror.
choose_apt_network
build_net=("${apt_net[@]}")
say "docker build -f deploy/Dockerfile -t $image ${build_net[*]}"
if ! DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-0} docker build "${build_net[@]}" \
        -f "$repo/deploy/Dockerfile" -t "$image" "$repo" >"$work/build.log" 2>&1; then
    tail -n 40 "$work/build.log"
    die "docker build failed"
fi
say "image $image: $(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}')"
phase "fanout image" "$step"

# ----------------------------------------------------------------- 5. job --

mkdir -p "$work/input"
awk -v n="$items" 'BEGIN {
    split("Oslo Lima Lagos Pune Quito Perth Riga Cork", city, " ")
    for (i = 1; i <= n; i++)
        printf "{\"id\":\"item-%05d\",\"n\":%d,\"city\":\"%s\"}\n", i, i, city[i % 8 + 1]
}' >"$work/input/items.jsonl"
chmod 0755 "$work/input"
chmod 0644 "$work/input/items.jsonl"

read -r metrics_port api_port < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')

# Only what this test sets may reach the compose file's interpolation.
unset FANOUT_URL FANOUT_METHOD FANOUT_HEADER FANOUT_MAX_IN_FLIGHT \
      FANOUT_MAX_ATTEMPTS FANOUT_WORKER_CONCURRENCY FANOUT_LOG_LEVEL
export FANOUT_IMAGE=$image FANOUT_INPUT_DIR=$work/input \
       FANOUT_INPUT_FILE=items.jsonl FANOUT_RATE=$rate \
       FANOUT_METRICS_PORT=$metrics_port TESTSERVER_PORT=$api_port \
       TESTSERVER_RATE=50/s TESTSERVER_FAIL_PCT=3

http_get() {
    if command -v curl >/dev/null; then
        curl -sf --max-time 5 "$1"
    else
        python3 -c 'import sys, urllib.request
sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "$1"
    fi
}
metrics_url=http://127.0.0.1:$metrics_port/metrics
status_url=http://127.0.0.1:$metrics_port/status
# metric NAME_OR_SERIES FILE: its value (sum over series), 0 when absent.
metric() { awk -v m="$1" 'index($0, m) == 1 && substr($0, length(m) + 1, 1) ~ /[ {]/ { s += $NF } END { print s + 0 }' "$2"; }
results_in() { metric fanout_items_total "$1"; }

# containers SERVICE [docker ps options]: ids of the service's containers.
containers() {
    local svc=$1
    shift
    docker ps -q "$@" --filter "label=com.docker.compose.project=$project" \
        --filter "label=com.docker.compose.service=$svc"
}

master_state() {
    local id
    id=$(containers master -a | head -n 1)
    [ -n "$id" ] || { echo "none"; return; }
    docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$id" 2>/dev/null || echo "none"
}

step=$(date +%s)
say "project $project: keygen, master (--rate $rate, $items items), 3 workers, test API (50/s, 3% failures)"
compose_up=1
compose up -d --no-build --scale worker=3 >"$work/up.log" 2>&1 ||
    { cat "$work/up.log"; die "compose up failed"; }
job_start=$(date +%s)

# Wait for some results, then scrape the sample /metrics.
end=$(deadline 180)
while :; do
    if http_get "$metrics_url" >"$work/m.txt" 2>/dev/null; then
        n=$(results_in "$work/m.txt")
        [ "$n" -ge $((items / 10)) ] && break
    fi
    case $(master_state) in exited*) die "the master exited before $((items / 10)) results";; esac
    [ "$(date +%s)" -lt "$end" ] || die "no $((items / 10)) results within $((180 * mult)) s"
    sleep 0.5
done
cp "$work/m.txt" "$work/metrics-sample.txt"
say "$n results so far; scaling to 5 workers"

t_scale=$(date +%s)
compose up -d --no-build --no-deps --scale worker=5 worker >"$work/scale.log" 2>&1 ||
    { cat "$work/scale.log"; die "scaling failed"; }
end=$(deadline 60)
while :; do
    http_get "$metrics_url" >"$work/m.txt" 2>/dev/null || true
    w=$(metric fanout_workers "$work/m.txt")
    [ "$w" -ge 5 ] && break
    case $(master_state) in exited*) die "the master finished before 5 workers joined";; esac
    [ "$(date +%s)" -lt "$end" ] || die "only $w of 5 workers joined within $((60 * mult)) s"
    sleep 0.5
done
say "5 workers connected $(($(date +%s) - t_scale)) s after scaling; results: $(results_in "$work/m.txt")"

# Kill the worker that holds the most items, so its lease must expire and
# its items go to the others. Worker ids are HOSTNAME:PID, and a container's
# hostname is the start of its id.
http_get "$status_url" >"$work/status.json"
victim_host=$(python3 -c '
import json, sys
w = json.load(open(sys.argv[1]))["workers"]
w.sort(key=lambda x: (x.get("held", 0) + x.get("in_flight", 0)), reverse=True)
print(w[0]["host"], w[0].get("held", 0))' "$work/status.json")
read -r victim_host victim_held <<<"$victim_host"
victim=
for c in $(containers worker); do
    case $c in "$victim_host"*) victim=$c ;; esac
done
[ -n "$victim" ] || victim=$(containers worker | tail -n 1)
before=$(results_in "$work/m.txt")
[ "$before" -lt "$items" ] || die "the job was over before the kill; raise FANOUT_COMPOSE_ITEMS"
docker kill "$victim" >/dev/null
say "docker kill ${victim:0:12} (held $victim_held items) at $before/$items results"

# Wait for the master to exit, scraping /metrics on the way.
end=$(deadline 600)
while :; do
    st=$(master_state)
    case $st in exited*) break ;; esac
    if http_get "$metrics_url" >"$work/m.txt" 2>/dev/null; then
        cp "$work/m.txt" "$work/metrics-last.txt"
    fi
    [ "$(date +%s)" -lt "$end" ] || die "the master did not finish within $((600 * mult)) s"
    sleep 1
done
job_s=$(($(date +%s) - job_start))
master_rc=${st#exited }
say "the master exited with status $master_rc after ${job_s}s"
phase "job (up to master exit)" "$step"

# -------------------------------------------------------------- 6. checks --

step=$(date +%s)
vol=$(docker volume ls -q --filter "label=com.docker.compose.project=$project" \
          --filter "label=com.docker.compose.volume=out" | head -n 1)
[ -n "$vol" ] || vol=${project}_out
docker run --rm --network none -v "$vol:/out:ro" --entrypoint cat "$image" \
    /out/results.jsonl >"$work/results.jsonl" || die "cannot read results.jsonl from volume $vol"
docker run --rm --network none -v "$vol:/out:ro" --entrypoint cat "$image" \
    /out/summary.json >"$work/summary.json" 2>/dev/null || true
http_get "http://127.0.0.1:$api_port/stats" >"$work/stats.json" || die "no /stats from the test API"

python3 - "$work/input/items.jsonl" "$work/results.jsonl" "$work/stats.json" \
    "$work/summary.json" <<'PY' || die "result checks failed"
import collections, json, sys
want = [json.loads(l)["id"] for l in open(sys.argv[1]) if l.strip()]
recs = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
got = collections.Counter(r["id"] for r in recs)
missing = [i for i in want if got[i] == 0]
dups = sorted(i for i, c in got.items() if c > 1)
extra = sorted(set(got) - set(want))
by_status = collections.Counter(r["status"] for r in recs)
retried = sum(1 for r in recs if r.get("attempts", 1) > 1)
workers = len({r.get("worker") for r in recs})
print("results.jsonl: %d lines for %d input ids: %d missing, %d duplicated, "
      "%d unknown; status %s; %d items needed retries; written by %d workers"
      % (len(recs), len(want), len(missing), len(dups), len(extra),
         dict(by_status), retried, workers))
stats = json.load(open(sys.argv[3]))
st = stats.get("status", {})
print("test API /stats: %d requests, status %s, max %d in any 1 s (limit 50)"
      % (stats["requests"], st, stats["max_in_1s"]))
try:
    s = json.load(open(sys.argv[4]))
    print("summary.json:", json.dumps({k: s[k] for k in s if not isinstance(s[k], (dict, list))}))
except Exception:
    pass
bad = []
if missing: bad.append("missing ids, e.g. %s" % missing[:5])
if dups: bad.append("ids more than once, e.g. %s" % dups[:5])
if extra: bad.append("ids not in the input, e.g. %s" % extra[:5])
if int(st.get("429", 0)): bad.append("the API answered 429 %s times" % st["429"])
for b in bad: print("FAIL:", b)
sys.exit(1 if bad else 0)
PY
case $master_rc in 0|1) ;; *) die "the master exited with $master_rc" ;; esac
phase "checks" "$step"

echo
echo "---- /metrics sample, scraped from the master during the run ($metrics_url) ----"
grep -v '^#' "$work/metrics-sample.txt" | grep -v '_bucket{' || true
if [ -s "$work/metrics-last.txt" ]; then
    echo "---- last scrape before the master exited ----"
    grep -E '^fanout_(items_total|workers|redispatched_total|duplicate_results_total|throttled_total|curve_denied_total)[ {]' \
        "$work/metrics-last.txt" || true
fi
echo
print_timings
ok=1
