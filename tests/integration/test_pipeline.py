"""End-to-end tests of the core pipeline (issue 2): real master, workers and
test server on loopback."""
import json
import os
import re
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402


def run_job(env, server, n, *args, workers=3, worker_args=(), items=None,
            wait=120, expect=0):
    """harness.run_job over n generated items (or items) with 3 workers."""
    items = items or env.write_items("items.jsonl", n)
    return h.run_job(env, "--input", items, *args, workers=workers,
                     worker_args=worker_args, seconds=wait, expect=expect)


def test_end_to_end_at_the_strict_limit(env):
    """2,000 items, 3 workers, server limit == --rate: exactly once, no 429."""
    rate = 200
    s = env.server("--rate", "%d/s" % rate)
    n = 2000
    status, out = run_job(env, s, n, "--url", s.base + "/items/{id}",
                          "--rate", "%d/s" % rate, "--max-in-flight", "32")
    assert status == 0, "exit status %d" % status
    recs = h.results(out)
    h.assert_exactly_once(recs, ["item-%d" % i for i in range(1, n + 1)])
    assert all(r["status"] == "ok" for r in recs)
    st = s.stats()
    assert st["status"].get("429", 0) == 0, "server sent 429s: %s" % st
    assert st["max_in_1s"] <= rate, st
    reqs = s.requests()
    t = sorted(r["t"] for r in reqs)
    achieved = (len(t) - 1) / (t[-1] - t[0])
    h.report("strict limit %d/s, %d items, 3 workers: achieved %.2f/s = "
             "%.4f of the limit, 429s: %d, most in any 1 s: %d"
             % (rate, n, achieved, achieved / rate, st["status"].get("429", 0),
                st["max_in_1s"]))
    sm = h.summary(out)
    assert sm["items"] == n and sm["ok"] == n and sm["finished"] is True


def test_shown_rate_is_never_above_the_limit(env):
    """The calls/s the master shows (progress, /status, dashboard) counts
    tokens when they may be spent, not when granted up to 250 ms earlier:
    it never shows more than the limit when the API saw no more (issue 14
    saw 42/s under a 40/s limit). And summary.json's calls are the calls
    the API received."""
    rate = 40
    s = env.server("--rate", "%d/s" % rate)
    n = 320
    items = env.write_items("items.jsonl", n)
    out = env.path("out")
    m = env.master("--input", items, "--out", out, "--url",
                   s.base + "/items/{id}", "--rate", "%d/s" % rate,
                   "--metrics", "127.0.0.1:0")
    base = m.endpoints["metrics"]
    env.worker(m.control)
    shown = []
    t0 = time.monotonic()
    while m.proc.alive():
        try:
            with urllib.request.urlopen(base + "/status", timeout=5) as r:
                st = json.loads(r.read())
        except OSError:
            break
        if time.monotonic() - t0 > 3:
            shown.append(st["calls_per_s"])
        time.sleep(0.1)  # a sampling interval, not a synchronisation
    assert m.proc.wait(60) == 0, m.proc.text()[-2000:]
    assert s.stats()["max_in_1s"] <= rate
    assert len(shown) > 15, shown
    # The limit, plus the burst of one call and a token on the window's
    # edge over the window (5 s, or the time since the start, over 3 s):
    # 40.67/s at most, where counting at grant time showed 42/s.
    assert max(shown) <= rate + 2 / 3.0 + 0.01, max(shown)
    sm = h.summary(out)
    assert sm["calls"] == len(s.requests()), (sm["calls"], len(s.requests()))
    h.report("limit %d/s: the master showed at most %.2f calls/s in %d "
             "samples; summary calls %d, the API saw %d" % (
                 rate, max(shown), len(shown), sm["calls"],
                 len(s.requests())))


def _rfc3339(text):
    """Seconds since the epoch of "2026-12-05T10:00:01.433Z"."""
    import calendar
    assert len(text) == 24 and text.endswith("Z"), text
    t = time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")
    return calendar.timegm(t) + int(text[20:23]) / 1000.0


def test_injected_failures_are_retried_to_success(env):
    s = env.server("--fail-pct", "10", "--seed", "7")
    n = 400
    status, out = run_job(env, s, n, "--url", s.base + "/items/{id}",
                          "--backoff-base", "20", "--backoff-max", "100",
                          "--max-attempts", "8", workers=2)
    assert status == 0, "exit status %d" % status
    recs = h.results(out)
    h.assert_exactly_once(recs, ["item-%d" % i for i in range(1, n + 1)])
    assert all(r["status"] == "ok" for r in recs), \
        [r for r in recs if r["status"] != "ok"][:3]
    retried = [r for r in recs if r["attempts"] > 1]
    assert retried, "no item needed a retry with 10% failures"
    st = s.stats()
    fails = st["status"].get("500", 0) + st["status"].get("503", 0)
    assert fails > 0
    assert sum(r["attempts"] for r in recs) == st["requests"], \
        "attempts in results differ from requests the server saw"
    # Each record says when its first attempt started and its last ended
    # (RFC 3339, ms, UTC); a retried item spans its backoff.
    t0 = time.time() - 600
    for r in recs:
        a, b = _rfc3339(r["started_at"]), _rfc3339(r["finished_at"])
        assert t0 < a <= b < time.time() + 1, r
    longest = max(_rfc3339(r["finished_at"]) - _rfc3339(r["started_at"])
                  for r in retried)
    assert longest >= 0.02, longest  # at least one backoff
    h.report("10%% injected failures: %d/%d items needed retries, %d failed "
             "responses, all ok" % (len(retried), n, fails))


def test_always_500_fails_after_exactly_max_attempts(env):
    s = env.server()
    n = 6
    status, out = run_job(env, s, n, "--url", s.base + "/status/500/{id}",
                          "--max-attempts", "3", "--backoff-base", "10",
                          "--backoff-max", "50", workers=1, expect=1)
    assert status == 1, "exit status %d, expected 1" % status
    recs = h.results(out)
    h.assert_exactly_once(recs, ["item-%d" % i for i in range(1, n + 1)])
    for r in recs:
        assert r["status"] == "failed" and r["attempts"] == 3, r
        assert r["http_status"] == 500, r
        assert r["error"] == "gave up after 3 attempts: HTTP 500", r
    per_id = {}
    for q in s.requests():
        per_id[q["path"]] = per_id.get(q["path"], 0) + 1
    assert sorted(per_id.values()) == [3] * n, per_id


def test_404_is_tried_once(env):
    s = env.server()
    status, out = run_job(env, s, 5, "--url", s.base + "/status/404/{id}",
                          workers=1, expect=1)
    assert status == 1
    recs = h.results(out)
    for r in recs:
        assert r["status"] == "failed" and r["attempts"] == 1, r
        assert r["error"] == "HTTP 404" and r["http_status"] == 404, r
    assert len(s.requests()) == 5


def test_workers_started_late_get_work(env):
    s = env.server("--rate", "100/s")
    n = 700
    items = env.write_items("items.jsonl", n)
    out = env.path("out")
    m = env.master("--input", items, "--out", out, "--url",
                   s.base + "/items/{id}", "--rate", "100/s")
    m.wait_ready()
    early = env.worker(m.control, "--id", "early")
    # The scenario itself: two workers join two seconds into the job.
    time.sleep(2)
    late = [env.worker(m.control, "--id", "late%d" % i) for i in range(2)]
    assert m.proc.wait(120) == 0
    for w in [early] + late:
        w.wait(30)
    recs = h.results(out)
    h.assert_exactly_once(recs, ["item-%d" % i for i in range(1, n + 1)])
    by = {}
    for r in recs:
        by[r["worker"]] = by.get(r["worker"], 0) + 1
    h.report("items per worker with two joining after 2 s: %s" % by)
    for name in ("late0", "late1"):
        assert by.get(name, 0) > 0, "late worker %s got no work: %s" % (
            name, by)


def _assigned(control):
    st = json.loads(h.ctl(control, "status", "--json").stdout)
    return {w["id"]: w["assigned"] for w in st["workers"]}


def _split(env, server, n, concurrencies, name):
    """Runs n items with one worker per concurrency. The job is paused
    (fanout-ctl pause: no calls) while the first worker joins and takes
    what it may hold, then the second; then it runs. Returns the records
    per worker."""
    items = env.write_items(name + "items.jsonl", n)
    out = env.path(name + "out")
    m = env.master("--input", items, "--out", out, "--url",
                   server.base + "/items/{id}", name=name + "master")
    m.wait_ready()
    h.ctl(m.control, "pause")
    ws = []
    for i, conc in enumerate(concurrencies):
        wid = "w%d" % i
        ws.append(env.worker(m.control, "--id", wid, "--concurrency",
                             str(conc), name=name + wid))
        # The first worker to connect may not take the window: it holds
        # its credit (2 x its concurrency) and no more.
        h.wait_for(lambda: _assigned(m.control).get(wid) == 2 * conc, 30,
                   "%s to hold its credit" % wid)
    held = _assigned(m.control)
    h.ctl(m.control, "resume")
    assert m.proc.wait(120) == 0, m.proc.text()[-2000:]
    for w in ws:
        w.wait(30)
    recs = h.results(out)
    h.assert_exactly_once(recs, ["item-%d" % i for i in range(1, n + 1)])
    by = {"w0": 0, "w1": 0}
    for r in recs:
        by[r["worker"]] += 1
    return by, held


def test_dispatch_is_fair_between_workers(env):
    """The first worker to connect does not take the window: items go to
    the worker with the most free credit (2 x its concurrency), so two
    workers share in proportion to their concurrency, even when one joined
    first (issue 14: 40 items had all gone to the first worker). The split
    is asserted, not a time."""
    s = env.server("--latency-ms", "300")
    even, held = _split(env, s, 40, (4, 4), "even-")
    assert held == {"w0": 8, "w1": 8}, held
    skewed, _ = _split(env, s, 80, (2, 6), "skewed-")
    h.report("items per worker: concurrency 4 and 4: %s (held %s before "
             "the start); 2 and 6: %s" % (even, held, skewed))
    assert 14 <= even["w1"] <= 26, even
    # 1 : 3 would be 20 : 60.
    assert 12 <= skewed["w0"] <= 30, skewed


def test_max_in_flight_is_a_cluster_wide_cap(env):
    s = env.server("--latency-ms", "100")
    status, out = run_job(env, s, 120, "--url", s.base + "/items/{id}",
                          "--max-in-flight", "5",
                          worker_args=("--concurrency", "16"))
    assert status == 0
    st = s.stats()
    assert 1 <= st["max_in_flight"] <= 5, st
    h.report("--max-in-flight 5 with 3x16 worker slots: server saw at most "
             "%d in flight" % st["max_in_flight"])


def test_bad_lines_become_invalid_records(env):
    s = env.server()
    lines = [
        json.dumps({"id": "a", "name": "x"}),
        "{not json",
        "[1, 2, 3]",
        "",
        json.dumps({"id": "b"}),
        json.dumps({"id": "c", "name": "y" * 200}),
        json.dumps({"id": {"nested": 1}, "name": "z"}),
        json.dumps({"name": "no-id"}),
    ]
    items = env.path("items.jsonl")
    with open(items, "w") as f:
        f.write("\n".join(lines) + "\n")
    out = env.path("out")
    m = env.master("--input", items, "--out", out, "--url",
                   s.base + "/things/{name}", "--max-line-bytes", "100")
    m.wait_ready()
    env.worker(m.control)
    m.proc.wait(60, expect=1)
    recs = {r["id"]: r for r in h.results(out)}
    assert len(recs) == 7, recs.keys()  # the blank line is not an item
    assert recs["a"]["status"] == "ok"
    assert recs["8"]["status"] == "ok"  # no id field: the line number
    exp = {
        "2": "line 2 is not valid JSON: ",
        "3": "line 3 is not a JSON object",
        "b": "line 5: --url: missing field 'name'",
        "6": "line 6 is longer than --max-line-bytes (100 bytes)",
        "7": "line 7: field 'id' (the item id, --key) is not a string or "
             "integer",
    }
    for k, msg in exp.items():
        assert recs[k]["status"] == "invalid", recs[k]
        assert recs[k]["error"].startswith(msg), (recs[k]["error"], msg)
    assert recs["b"]["line"] == 5 and recs["6"]["line"] == 6
    sm = h.summary(out)
    assert sm["invalid"] == 5 and sm["ok"] == 2 and sm["blank_lines"] == 1


def test_stdin_input_and_completed_job_rerun(env):
    s = env.server()
    items = env.write_items("items.jsonl", 50)
    out = env.path("out")
    with open(items) as f:
        m = env.master("--input", "-", "--out", out, "--url",
                       s.base + "/x/{id}", "--spawn-workers", "2", stdin=f)
        assert m.proc.wait(60) == 0
    h.assert_exactly_once(h.results(out), ["item-%d" % i for i in range(1, 51)])
    before = len(s.requests())
    # Running the same command after completion changes nothing.
    with open(items) as f:
        m2 = env.master("--input", "-", "--out", out, "--url",
                        s.base + "/x/{id}", "--spawn-workers", "2",
                        name="master2", stdin=f)
        assert m2.proc.wait(30) == 0
    assert len(s.requests()) == before
    assert len(h.results(out)) == 50


def test_a_slow_pipe_is_not_held_back_by_the_batch_size(env):
    """Items from a pipe that has nothing more for now are sent at once,
    not when --batch-size of them have arrived."""
    s = env.server()
    out = env.path("out")
    m = env.master("--input", "-", "--out", out, "--url",
                   s.base + "/x/{id}", "--spawn-workers", "1",
                   "--batch-size", "10", stdin=subprocess.PIPE)
    pipe = m.proc.p.stdin
    pipe.write(b"".join(b'{"id":"early-%d"}\n' % i for i in range(3)))
    pipe.flush()
    h.wait_for(lambda: os.path.exists(os.path.join(out, "results.jsonl"))
               and len(h.results(out)) == 3, 20,
               "the first 3 of a batch of 10 to be recorded")
    pipe.write(b"".join(b'{"id":"late-%d"}\n' % i for i in range(12)))
    pipe.close()
    assert m.proc.wait(60) == 0
    h.assert_exactly_once(h.results(out),
                          ["early-%d" % i for i in range(3)] +
                          ["late-%d" % i for i in range(12)])


def test_usage_errors_name_the_flag(env):
    master = os.path.join(h.BIN, "fanout-master")
    base = ["--input", env.write_items("i.jsonl", 1), "--out",
            env.path("out"), "--url", "http://127.0.0.1:9/{id}"]
    cases = [
        (["--rate", "1000/fortnight"], "--rate: '1000/fortnight'"),
        (["--rate", "0/s"], "--rate: '0/s'"),
        (["--rate", "-5/min"], "--rate: '-5/min'"),
        (["--rate", "abc"], "--rate: 'abc' is not a rate"),
        (["--batch-size", "0"], "--batch-size: 0 is out of range"),
        (["--frobnicate"], "unknown option '--frobnicate'"),
        (["--url", "http://x/{id"], "--url: unclosed '{' at column 10"),
        (["--bind", "tcp://0.0.0.0:5555"], "--bind: 'tcp://0.0.0.0:5555' is "
                                           "not a loopback address"),
        (["--max-attempts"], "--max-attempts: needs a value"),
        (["--input", "/nonexistent/x.jsonl"],
         "--input /nonexistent/x.jsonl: No such file"),
    ]
    for extra, msg in cases:
        p = subprocess.run([master] + base + extra, capture_output=True,
                           text=True, timeout=30)
        assert p.returncode == 2, (extra, p.returncode, p.stderr)
        assert msg in p.stderr, (extra, p.stderr)
    p = subprocess.run([master, "--url", "http://x/"], capture_output=True,
                       text=True)
    assert p.returncode == 2 and "--input is required" in p.stderr, p.stderr
    p = subprocess.run([master, "--help"], capture_output=True, text=True)
    assert p.returncode == 0 and "--max-in-flight" in p.stdout
    p = subprocess.run([os.path.join(h.BIN, "fanout-worker"), "--concurrency",
                        "0"], capture_output=True, text=True)
    assert p.returncode == 2 and "--concurrency" in p.stderr, p.stderr


def test_environment_and_config_file(env):
    s = env.server()
    items = env.write_items("items.jsonl", 20)
    cfg = env.path("job.json")
    with open(cfg, "w") as f:
        json.dump({"url": s.base + "/cfg/{id}", "batch-size": 3,
                   "rate": ["1000/s"]}, f)
    out = env.path("out")
    m = env.master("--config", cfg, "--input", items, "--out", out,
                   "--spawn-workers", "1")
    assert m.proc.wait(60) == 0
    assert all(r["path"].startswith("/cfg/") for r in s.requests())
    assert max(r["batch"] for r in h.results(out)) == 6  # 20 items by 3


def test_idle_worker_uses_no_cpu(env):
    s = env.server()
    items = env.write_items("items.jsonl", 1)
    m = env.master("--input", items, "--out", env.path("out"), "--url",
                   s.base + "/x/{id}", "--drain-timeout", "0")
    ep = m.wait_ready()
    # A worker that is not --once stays after the job, idle.
    w = env.spawn("idle", [os.path.join(h.BIN, "fanout-worker"), "--master",
                           ep["control"]])
    assert m.proc.wait(60) == 0

    def cpu():
        with open("/proc/%d/stat" % w.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    c0 = cpu()
    time.sleep(2)  # the measuring interval, not synchronisation
    used = cpu() - c0
    h.report("idle worker CPU over 2 s: %.3f s" % used)
    assert used < 0.1 * h.SCALE, "idle worker used %.2fs of CPU in 2s" % used


if __name__ == "__main__":
    h.main(globals())
