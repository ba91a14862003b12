#!/usr/bin/env bash
# make demo: a whole fanout job against a local, strictly rate-limited test
# API that fails a few percent of calls. Takes about ten seconds.
set -uo pipefail
BUILD=${1:-build}
dir=demo-out
rm -rf "$dir"
mkdir -p "$dir"

"$BUILD/fanout-testserver" --port 0 --port-file "$dir/server.port" \
    --rate 50/s --fail-pct 3 --seed 1 --log "$dir/server-requests.jsonl" \
    2>"$dir/server.log" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null' EXIT

# Wait for the server's port file, with a deadline.
for _ in $(seq 1 200); do
    [ -s "$dir/server.port" ] && break
    kill -0 $server 2>/dev/null || { echo "demo: test server failed:"; cat "$dir/server.log"; exit 3; }
    sleep 0.05
done
port=$(cat "$dir/server.port" 2>/dev/null) || { echo "demo: test server did not start"; exit 3; }

cat <<MSG
fanout demo
  API:    http://127.0.0.1:$port (a local test server that allows at most
          50 requests in any second, answers 429 past that, and fails 3% of
          calls with 500/503)
  items:  examples/items.jsonl (300 customers)
  job:    --rate 50/s, 3 worker processes, retries with backoff

MSG
cmd=("$BUILD/fanout-master" --input examples/items.jsonl
     --url "http://127.0.0.1:$port/v1/customers/{id}?city={city}"
     --rate 50/s --max-in-flight 16 --spawn-workers 3
     --backoff-base 200 --backoff-max 2000
     --out "$dir/out" --bind tcp://127.0.0.1:0 --log-level warn)
printf '$'; printf ' %q' "${cmd[@]}"; echo
"${cmd[@]}"
rc=$?
echo
stats=$(curl -s "http://127.0.0.1:$port/stats" 2>/dev/null || python3 -c "
import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:$port/stats').read().decode())")
python3 - "$stats" <<'PY'
import json, sys
s = json.loads(sys.argv[1])
st = s["status"]
print("the API saw %d requests: %d ok, %d injected failures, %d rejected "
      "for exceeding its limit (429); at most %d in any one second"
      % (s["requests"], st.get("200", 0), st.get("500", 0) + st.get("503", 0),
         st.get("429", 0), s["max_in_1s"]))
PY
echo
echo "first results ($dir/out/results.jsonl):"
head -n 3 "$dir/out/results.jsonl"
echo
echo "exit status $rc (0: every item ok). Run 'make demo' again for a fresh run;"
echo "re-running the same fanout-master command resumes instead of repeating."
exit $rc
