"""When the API pushes back, the whole cluster slows down together
(issue 4): the test server hides a lower limit, changes it mid-run and sends
rate-limit headers; fanout must follow without an operator."""
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

Job = h.items_job
repeats = h.repeats


def accepted_rate(reqs, t0, t1):
    """Accepted (non-429) requests per second with wall time in [t0, t1)."""
    n = sum(1 for r in reqs if t0 <= r["wall"] < t1 and r["status"] != 429)
    return n / (t1 - t0)


def run_hidden(env, name, adaptive):
    s = env.server("--rate", "60/s")
    s.proc.name = "server-" + name
    n = 900
    args = ["--rate", "100/s"] + ([] if adaptive else ["--no-adaptive"])
    job = Job(env, s, n, *args, name=name + "-")
    t0 = time.time()
    job.start()
    ws = [env.worker(job.control) for _ in range(3)]
    assert job.master.wait(240) == 0, job.master.text()[-3000:]
    took = time.time() - t0
    for w in ws:
        w.wait(30)
    h.assert_exactly_once(h.results(job.out), job.ids())
    reqs = s.requests()
    walls = [r["wall"] for r in reqs]
    n429 = sum(1 for r in reqs if r["status"] == 429)
    last429 = max((r["wall"] for r in reqs if r["status"] == 429),
                  default=min(walls))
    start, end = min(walls), max(walls)
    first429 = min((r["wall"] for r in reqs if r["status"] == 429),
                   default=start)
    # Settled rate: the second half of the run.
    settled = accepted_rate(reqs, start + (end - start) / 2, end)
    s.proc.kill()
    return {"took": took, "429s": n429, "settled": settled,
            "last_429_after": last429 - start,
            "first_429_after": first429 - start,
            "summary": h.summary(job.out)}


def test_hidden_limit_adaptive_vs_fixed(env):
    a = run_hidden(env, "adaptive", True)
    h.report("hidden limit 60/s, --rate 100/s, adaptive: first 429 at %.1f "
             "s, settled at %.1f/s accepted, %d 429s in all, last at %.1f s, "
             "job took %.1f s, effective limit %.1f/s"
             % (a["first_429_after"], a["settled"], a["429s"],
                a["last_429_after"], a["took"],
                a["summary"]["effective_limit_per_s"]))
    env.procs = [p for p in env.procs if p.alive()]
    f = run_hidden(env, "fixed", False)
    h.report("hidden limit 60/s, --rate 100/s, --no-adaptive: settled at "
             "%.1f/s, %d 429s, job took %.1f s" % (f["settled"], f["429s"],
                                                   f["took"]))
    assert 54 <= a["summary"]["effective_limit_per_s"] <= 60.5, a
    assert a["429s"] < f["429s"], (a["429s"], f["429s"])
    assert a["429s"] <= 150, a


def run_told(env, hidden, told, n, name=""):
    """A job told --rate told/s against a server hiding hidden/s, with two
    workers: its rate over the job (accepted calls per second between the
    first and the last accepted arrival at the server, so the programs'
    start-up does not count), 429s and the master's log."""
    s = env.server("--rate", "%d/s" % hidden)
    job = Job(env, s, n, "--rate", "%d/s" % told, name=name)
    job.start()
    ws = [env.worker(job.control) for _ in range(2)]
    assert job.master.wait(n / min(hidden, told) * 3 + 60) == 0, \
        job.master.text()[-3000:]
    for w in ws:
        w.wait(30)
    h.assert_exactly_once(h.results(job.out), job.ids())
    reqs = s.requests()
    ok = sorted(r["wall"] for r in reqs if r["status"] != 429)
    n429 = len(reqs) - len(ok)
    rate = (len(ok) - 1) / (ok[-1] - ok[0])
    s.proc.kill()
    return rate, n429, job.master.text()


def test_told_twice_the_hidden_limit(env):
    """Issue 15: told 2x what the API allows, the adaptive rate finds the
    limit from what the API accepted while calls were being sent and holds
    it, instead of reading the cluster's own pause as the limit."""
    rate, n429, log = run_told(env, 20, 40, 400)
    h.report("hidden limit 20/s, --rate 40/s, 400 items (~20 s): %.2f/s "
             "over the job = %.3f of the hidden limit, %d 429s"
             % (rate, rate / 20, n429))
    # The goal is 0.9 (measured 0.95-0.97 here); each 429 costs a 1 s
    # cluster-wide pause, 5% of this job.
    assert rate >= 0.9 * 20, (rate, n429, log[-3000:])
    assert n429 <= 5, (n429, log[-3000:])


def test_told_half_the_hidden_limit(env):
    """Told half what the API allows, the rate stays at --rate: adaptive
    never raises it above the configured rate, and nothing is refused."""
    rate, n429, log = run_told(env, 40, 20, 400)
    h.report("hidden limit 40/s, --rate 20/s, 400 items: %.2f/s over the "
             "job = %.3f of --rate, %d 429s" % (rate, rate / 20, n429))
    assert n429 == 0, (n429, log[-3000:])
    assert rate >= 0.95 * 20, (rate, log[-3000:])
    assert rate <= 20 * 1.01, rate


def test_retry_after_pauses_every_worker(env):
    s = env.server("--rate", "30/s", "--retry-after", "2")
    n = 180
    job = Job(env, s, n, "--rate", "60/s", "--no-adaptive")
    job.start()
    ws = [env.worker(job.control) for _ in range(3)]
    assert job.master.wait(120) == 0, job.master.text()[-3000:]
    for w in ws:
        w.wait(30)
    h.assert_exactly_once(h.results(job.out), job.ids())
    reqs = sorted(s.requests(), key=lambda r: r["wall"])
    t429 = [r["wall"] for r in reqs if r["status"] == 429]
    assert t429, "the server never pushed back"
    bad = []
    for t in t429:
        for r in reqs:
            if t + 0.15 < r["wall"] < t + 1.95:
                bad.append((round(t, 3), round(r["wall"], 3)))
    h.report("Retry-After 2 s: %d 429s, %d requests inside a pause"
             % (len(t429), len(bad)))
    assert not bad, "requests inside a pause: %s" % bad[:10]


def test_throttled_attempts_do_not_use_up_max_attempts(env):
    s = env.server("--rate", "20/s", "--retry-after", "1")
    n = 120
    job = Job(env, s, n, "--rate", "50/s", "--no-adaptive",
              "--max-attempts", "1")
    job.start()
    env.worker(job.control)
    assert job.master.wait(120) == 0, job.master.text()[-3000:]
    recs = h.results(job.out)
    h.assert_exactly_once(recs, job.ids())
    assert all(r["status"] == "ok" for r in recs)
    thr = [r for r in recs if r.get("throttled", 0) > 0]
    assert thr and all(r["attempts"] == r["throttled"] + 1 for r in thr), \
        thr[:3]


def test_max_throttled_ends_an_endless_429(env):
    s = env.server("--rate", "1/h", "--retry-after", "1")
    job = Job(env, s, 4, "--max-throttled", "3", "--no-adaptive")
    job.start()
    env.worker(job.control)
    job.master.wait(120, expect=1)
    recs = h.results(job.out)
    h.assert_exactly_once(recs, job.ids())
    failed = [r for r in recs if r["status"] == "failed"]
    assert len(failed) == 3, recs
    for r in failed:
        assert r["error"] == ("throttled (HTTP 429) 3 times; giving up "
                              "(--max-throttled 3)"), r
        assert r["http_status"] == 429 and r["throttled"] == 3


def ctl(control, *args):
    return subprocess.run([os.path.join(h.BIN, "fanout-ctl"), "--master",
                           control] + list(args), capture_output=True,
                          text=True, timeout=30)


def test_ctl_set_rate_applies_within_a_second_and_survives_restart(env):
    s = env.server()
    n = 700
    job = Job(env, s, n, "--rate", "20/s")
    job.start()
    ws = [env.worker(job.control) for _ in range(2)]
    h.wait_for(lambda: job.results_count() >= 60, 60, "60 results")
    p = ctl(job.control, "status")
    assert p.returncode == 0 and "workers    2" in p.stdout, p.stdout
    assert "20/s" in p.stdout
    t_set = time.time()
    p = ctl(job.control, "set", "--rate", "80/s")
    assert p.returncode == 0, p.stderr
    h.wait_for(lambda: job.results_count() >= 60 + 80 * 3, 60,
               "results at the new rate")
    reqs = s.requests()
    before = accepted_rate(reqs, t_set - 2, t_set)
    after = accepted_rate(reqs, t_set + 1, t_set + 3)
    h.report("fanout-ctl set --rate 20/s -> 80/s: %.1f/s before, %.1f/s "
             "from 1 s after" % (before, after))
    assert before <= 21 and after >= 70, (before, after)
    # A bad value is refused with a message naming it.
    p = ctl(job.control, "set", "--rate", "80/fortnight")
    assert p.returncode == 3 and "--rate" in p.stderr, p.stderr
    # The new rate outlives a restart of the master.
    job.master.signal(signal.SIGKILL)
    job.master.wait(10)
    job.start()
    assert job.master.wait(60) == 0, job.master.text()[-3000:]
    assert "using the rate set by fanout-ctl (80/s)" in job.master.text()
    h.assert_exactly_once(h.results(job.out), job.ids())
    for w in ws:
        w.wait(30)
    p = ctl("tcp://127.0.0.1:1", "status", "--timeout", "300ms")
    assert p.returncode == 3 and "no answer" in p.stderr


def test_follows_the_server_limit_down_and_up(env):
    s = env.server("--rate", "100/s")
    n = 3500
    job = Job(env, s, n, "--rate", "100/s")
    job.start()
    ws = [env.worker(job.control) for _ in range(3)]
    h.wait_for(lambda: job.results_count() >= 300, 60, "300 results")
    t_down = time.time()
    s.get("/control?rate=40/s")
    h.wait_for(lambda: time.time() > t_down + 12, 30, "12 s at 40/s")
    reqs = s.requests()
    low = accepted_rate(reqs, t_down + 8, t_down + 12)
    t_up = time.time()
    s.get("/control?rate=100/s")

    def recovered():
        rr = s.requests()
        now = time.time()
        return accepted_rate(rr, now - 3, now) >= 80
    h.wait_for(recovered, 60, "the rate to climb back above 80/s")
    took = time.time() - t_up
    h.report("server limit 100 -> 40 -> 100/s: held %.1f/s at 40, back "
             "above 80/s %.1f s after the raise" % (low, took))
    assert 30 <= low <= 40.5, low
    job.master.signal(signal.SIGTERM)
    job.master.wait(60, expect=3)  # stopped mid-job: re-run to resume
    for w in ws:
        w.signal(signal.SIGTERM)


def test_ratelimit_headers_prevent_429s(env):
    s = env.server("--rate", "60/s", "--ratelimit-headers")
    n = 400
    job = Job(env, s, n, "--rate", "100/s")
    job.start()
    env.worker(job.control)
    env.worker(job.control)
    assert job.master.wait(120) == 0, job.master.text()[-3000:]
    h.assert_exactly_once(h.results(job.out), job.ids())
    n429 = s.stats()["status"].get("429", 0)
    h.report("RateLimit headers announce 60/s, --rate 100/s: %d 429s" % n429)
    assert n429 <= 5, n429
    assert "the API announces 60 per 1000 ms" in job.master.text()


if __name__ == "__main__":
    h.main(globals())
