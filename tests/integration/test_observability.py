"""Metrics, status and logs (issue 6): scrape /metrics and /status during a
run; JSON log lines carry time, level, role, pid and a stable event; secrets
from ${ENV} headers never reach a log."""
import json
import os
import sys
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402


def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.headers.get("Content-Type"), r.read().decode()


def test_metrics_and_status_during_a_run(env):
    s = env.server("--rate", "50/s")
    n = 300
    items = env.write_items("items.jsonl", n)
    out = env.path("out")
    m = env.master("--input", items, "--out", out, "--url",
                   s.base + "/x/{id}", "--rate", "50/s", "--metrics",
                   "127.0.0.1:0")
    ep = m.wait_ready()
    base = ep["metrics"]
    assert base.startswith("http://127.0.0.1:"), ep
    env.worker(ep["control"])
    env.worker(ep["control"])
    h.wait_for(lambda: h.prom_samples(get(base + "/metrics")[2]).get(
        'fanout_items_total{status="ok"}', 0) >= 50, 30, "50 items")
    status, ctype, text = get(base + "/metrics")
    assert status == 200 and ctype.startswith("text/plain"), ctype
    v = h.prom_samples(text)
    for name in ["fanout_attempts_total", "fanout_throttled_total",
                 "fanout_tokens_granted_total", "fanout_effective_rate_per_second",
                 "fanout_calls_in_flight", "fanout_source_lag_bytes",
                 'fanout_batch_commit_seconds_bucket{le="+Inf"}',
                 "fanout_batch_commit_seconds_count"]:
        assert name in v, name
    assert v["fanout_workers"] == 2
    assert v["fanout_rate_limit_per_second"] == 50
    assert v["fanout_items_expected"] == n
    assert v["fanout_tokens_granted_total"] >= 50
    assert v['fanout_batch_commit_seconds_bucket{le="+Inf"}'] == \
        v["fanout_batch_commit_seconds_count"] > 0
    assert "# TYPE fanout_batch_commit_seconds histogram" in text
    sample = text
    status, ctype, text = get(base + "/status")
    st = json.loads(text)
    assert ctype == "application/json" and st["ok"] is True
    assert 0 < st["progress"] < 1 and st["eta_s"] is not None
    assert len(st["workers"]) == 2 and st["rate"] == "50/s"
    try:
        get(base + "/nope")
        assert False, "expected 404"
    except urllib.error.HTTPError as e:
        assert e.code == 404
    assert m.proc.wait(60) == 0
    h.report("/metrics sample during a run:\n" + "\n".join(
        line for line in sample.splitlines() if not line.startswith("#")))


def test_json_logs_and_no_secrets(env):
    s = env.server()
    items = env.write_items("items.jsonl", 30)
    out = env.path("out")
    secret = "sup3r-s3cret-t0ken"
    m = env.master("--input", items, "--out", out, "--url",
                   s.base + "/x/{id}", "--header",
                   "Authorization: Bearer ${API_TOKEN}", "--log-format",
                   "json", "--log-level", "debug")
    ep = m.wait_ready()
    w = env.worker(ep["control"], "--log-format", "json", "--log-level",
                   "debug", "--allow-env", "API_TOKEN",
                   env={"API_TOKEN": secret})
    assert m.proc.wait(60) == 0
    w.wait(30)
    events = set()
    done = {}
    for p in (m.proc, w):
        for line in p.text().splitlines():
            if not line.startswith("{"):
                continue  # progress lines
            rec = json.loads(line)
            for k in ("time", "level", "role", "pid", "event", "msg"):
                assert k in rec, (k, line)
            events.add(rec["event"])
            if rec["event"] == "item.done":
                done[rec["item"]] = rec
    # Item-level events carry their fields as keys.
    assert sorted(done) == sorted("item-%d" % i for i in range(1, 31)), done
    for rec in done.values():
        assert rec["status"] == "ok" and rec["http_status"] == 200, rec
        assert rec["attempt"] >= 1 and rec["worker"], rec
        assert secret not in p.text(), "secret leaked into %s" % p.name
    for e in ("worker.joined", "master.started", "job.done"):
        assert e in events, (e, events)
    # A worker without the variable says which one is missing, not its value.
    w2 = env.spawn("noenv", [os.path.join(h.BIN, "fanout-worker"), "--master",
                             ep["control"]])
    w2.kill()


if __name__ == "__main__":
    h.main(globals())
