"""Crash anywhere, lose nothing, repeat nothing (issue 3): real processes,
real signals. A restarted master binds the control port its first run's
ready file named (harness.Job), so separately started workers find the new
master on their own."""
import json
import os
import random
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402


repeats = h.repeats
Job = h.items_job


def test_kill_master_five_times(env):
    s = env.server("--rate", "300/s")
    n, mif = 3000, 8
    job = Job(env, s, n, "--rate", "300/s", "--max-in-flight", str(mif))
    job.start()
    workers = [env.worker(job.control, "--concurrency", "8")
               for _ in range(3)]
    rnd = random.Random(1234)
    kills = 5
    marks = sorted(rnd.uniform(0.08, 0.9) * n for _ in range(kills))
    seen = []
    for k, mark in enumerate(marks):
        h.wait_for(lambda: job.results_count() >= mark or
                   not job.master.alive(), 120, "results to reach %d" % mark)
        assert job.master.alive(), "master finished before kill %d" % k
        before = len(s.requests())
        job.master.signal(signal.SIGKILL)
        job.master.wait(10)
        seen.append((job.results_count(), before))
        job.start()
    assert job.master.wait(180) == 0, job.master.text()[-3000:]
    for w in workers:
        w.wait(30)
    recs = h.results(job.out)
    h.assert_exactly_once(recs, job.ids())
    extra = repeats(s)
    h.report("kill -9 of the master %d times (--max-in-flight %d): %d "
             "repeated calls in all, %.1f per kill; every repeat had the "
             "first call's Idempotency-Key" % (kills, mif, extra,
                                              extra / kills))
    assert extra <= kills * mif, "%d repeated calls for %d kills" % (
        extra, kills)
    assert s.stats()["status"].get("429", 0) == 0


def test_kill_one_worker(env):
    s = env.server("--rate", "300/s", "--latency-ms", "20")
    n = 1500
    job = Job(env, s, n, "--rate", "300/s", "--lease", "1s",
              "--heartbeat", "250ms")
    job.start()
    ws = [env.worker(job.control) for _ in range(3)]
    h.wait_for(lambda: job.results_count() >= n // 3, 60, "a third done")
    ws[1].signal(signal.SIGKILL)
    assert job.master.wait(120) == 0, job.master.text()[-3000:]
    recs = h.results(job.out)
    h.assert_exactly_once(recs, job.ids())
    h.report("kill -9 of one of 3 workers: %d repeated calls" % repeats(s))


def test_power_cut(env):
    s = env.server("--rate", "300/s")
    n = 1500
    job = Job(env, s, n, "--rate", "300/s")
    job.start()
    ws = [env.worker(job.control) for _ in range(3)]
    h.wait_for(lambda: job.results_count() >= n // 2, 60, "half done")
    for p in [job.master] + ws:
        p.signal(signal.SIGKILL)
    for p in [job.master] + ws:
        p.wait(10)
    job.start()
    ws = [env.worker(job.control) for _ in range(3)]
    assert job.master.wait(120) == 0, job.master.text()[-3000:]
    h.assert_exactly_once(h.results(job.out), job.ids())
    extra = repeats(s)
    h.report("power cut (master and all workers killed at once): %d "
             "repeated calls" % extra)
    assert extra <= 32


def test_truncated_results_are_repaired(env):
    s = env.server()
    n = 400
    job = Job(env, s, n, "--max-in-flight", "8")
    job.start()
    env.worker(job.control)
    assert job.master.wait(60) == 0
    path = os.path.join(job.out, "results.jsonl")
    data = open(path, "rb").read()
    # Cut in the middle of a line about 60% of the way in.
    cut = data.index(b"\n", int(len(data) * 0.6)) - 7
    lost = data[cut:].count(b"\n")
    with open(path, "r+b") as f:
        f.truncate(cut)
    before = len(s.requests())
    job.start()
    env.worker(job.control, name="worker-after")
    assert job.master.wait(60) == 0, job.master.text()[-3000:]
    recs = h.results(job.out)
    h.assert_exactly_once(recs, job.ids())
    rerun = len(s.requests()) - before
    assert rerun == lost, "re-ran %d items, %d records were lost" % (rerun,
                                                                     lost)
    assert "results.repaired" in job.master.text()


def test_torn_tail_after_kill(env):
    s = env.server("--rate", "200/s")
    n = 600
    job = Job(env, s, n, "--rate", "200/s")
    job.start()
    env.worker(job.control)
    h.wait_for(lambda: job.results_count() >= n // 2, 60, "half done")
    job.master.signal(signal.SIGKILL)
    job.master.wait(10)
    # What a crash in the middle of a write leaves behind.
    with open(os.path.join(job.out, "results.jsonl"), "ab") as f:
        f.write(b'{"id":"item-99999","status":"ok","ht')
    job.start()
    assert job.master.wait(60) == 0, job.master.text()[-3000:]
    h.assert_exactly_once(h.results(job.out), job.ids())


def test_sigterm_drains_then_resume_repeats_nothing(env):
    s = env.server("--latency-ms", "150")
    n = 400
    job = Job(env, s, n, "--max-in-flight", "12", "--rate", "200/s")
    job.start()
    ws = [env.worker(job.control) for _ in range(2)]
    h.wait_for(lambda: job.results_count() >= n // 4, 60, "a quarter done")
    t0 = time.monotonic()
    job.master.signal(signal.SIGTERM)
    status = job.master.wait(30, expect=3)
    took = time.monotonic() - t0
    assert status == 3, "SIGTERM exit status %d" % status
    assert "re-run the same command to resume" in job.master.text()
    done_at_stop = job.results_count()
    job.start()
    assert job.master.wait(60) == 0, job.master.text()[-3000:]
    for w in ws:
        w.wait(30)
    h.assert_exactly_once(h.results(job.out), job.ids())
    extra = repeats(s)
    h.report("SIGTERM drain took %.2f s with %d recorded; repeated calls "
             "after resume: %d" % (took, done_at_stop, extra))
    assert extra == 0


def test_sigterm_worker_hands_back_its_items(env):
    s = env.server("--rate", "100/s")
    n = 500
    job = Job(env, s, n, "--rate", "100/s", "--lease", "30s")
    job.start()
    a = env.worker(job.control, "--id", "a")
    b = env.worker(job.control, "--id", "b")
    h.wait_for(lambda: job.results_count() >= 100, 60, "100 done")
    a.signal(signal.SIGTERM)
    assert a.wait(15) == 0
    assert "handing back" in a.text() or "worker.stopped" in a.text()
    # With a 30 s lease, finishing well before it proves the hand-back.
    t0 = time.monotonic()
    assert job.master.wait(25) == 0, job.master.text()[-3000:]
    h.assert_exactly_once(h.results(job.out), job.ids())
    assert repeats(s) == 0
    h.report("worker SIGTERM: the rest finished %.1f s later, no repeats"
             % (time.monotonic() - t0))
    b.wait(15)


def test_late_result_after_redispatch_is_recorded_once(env):
    s = env.server("--latency-ms", "400")
    n = 60
    job = Job(env, s, n, "--lease", "1s", "--heartbeat", "250ms",
              "--max-in-flight", "0")
    job.start()
    slow = env.worker(job.control, "--id", "slow")
    h.wait_for(lambda: s.stats()["in_flight"] > 0, 30, "calls in flight")
    # Freeze the worker mid-call: its lease expires and its items move on.
    slow.signal(signal.SIGSTOP)
    env.worker(job.control, "--id", "fast")

    # Both share the items (fair dispatch); the frozen one's go back to the
    # queue once its lease runs out, and the fast one takes them.
    h.wait_for(lambda: "lease.expired" in job.master.text() or
               "worker.lost" in job.master.text(), 30,
               "the frozen worker's items to move on")
    slow.signal(signal.SIGCONT)
    assert job.master.wait(60) == 0, job.master.text()[-3000:]
    recs = h.results(job.out)
    h.assert_exactly_once(recs, job.ids())
    sm = h.summary(job.out)
    h.report("frozen worker: %d items re-dispatched, %d late duplicate "
             "results and %d from its later life ignored" % (
                 sm["redispatched"], sm["duplicate_results"],
                 sm["foreign_reports"]))
    assert sm["redispatched"] > 0


def test_a_worker_frozen_mid_call_does_not_retry_a_recorded_item(env):
    """Soak seed 7: a worker's call is in flight when it is frozen (SIGSTOP)
    for longer than the lease; the master gives its items to another worker,
    which records them; the frozen worker is let go (SIGCONT) and rejoins,
    and only then do its calls end, in 500s. It must drop those items, not
    retry them: each item is called once by each worker, no more."""
    s = env.server("--fail-pct", "100", "--latency-ms", "6000")
    n = 6
    m = env.master("--input", "-", "--out", env.path("out"), "--url",
                   s.base + "/items/{id}", "--lease", "1s", "--heartbeat",
                   "250ms", "--backoff-base", "100", "--backoff-max", "100",
                   "--batch-size", "1", stdin=subprocess.PIPE)
    pipe = m.proc.p.stdin
    pipe.write(b"".join(b'{"id":"item-%d"}\n' % i for i in range(n)))
    pipe.flush()
    m.wait_ready()
    slow = env.worker(m.control, "--id", "slow", "--drain-timeout", "10s",
                      once=False)
    h.wait_for(lambda: s.stats()["in_flight"] >= n, 30,
               "the slow worker's %d calls in flight" % n)
    slow.signal(signal.SIGSTOP)
    # Its calls were accepted as failures; what comes next succeeds at once.
    s.get("/control?fail_pct=0&latency_ms=0")
    fast = env.worker(m.control, "--id", "fast", once=False)
    out = env.path("out")
    h.wait_for(lambda: os.path.exists(os.path.join(out, "results.jsonl"))
               and len(h.results(out)) == n, 60,
               "the fast worker to record every item")
    slow.signal(signal.SIGCONT)
    # It rejoins, then its calls end in 500s (the server holds them 6 s).
    h.wait_for(lambda: slow.text().count("item.orphan_dropped") == n, 30,
               "the slow worker to drop its %d orphaned items" % n)
    slow.signal(signal.SIGTERM)
    assert slow.wait(30) == 0, slow.text()[-2000:]
    pipe.close()
    assert m.proc.wait(60) == 0, m.proc.text()[-3000:]
    fast.signal(signal.SIGTERM)
    fast.wait(30)
    h.assert_exactly_once(h.results(out),
                          ["item-%d" % i for i in range(n)])
    # One failed call by the slow worker, one success by the fast one: a
    # retry after SIGCONT would be a second success (the API is fine now).
    calls = {}
    for r in s.requests():
        calls.setdefault(r["path"], []).append(r["status"])
    bad = {k: v for k, v in calls.items()
           if sorted(v)[0] != 200 or sorted(v)[1:] not in ([500], [503])}
    assert len(calls) == n and not bad, "calls by item: %s" % calls


def test_redrive_reruns_only_failed_items(env):
    s = env.server("--fail-pct", "30", "--seed", "3")
    n = 200
    job = Job(env, s, n, "--max-attempts", "1")
    job.start()
    env.worker(job.control)
    job.master.wait(60, expect=1)
    first = {r["id"]: r for r in h.results(job.out)}
    failed = [k for k, r in first.items() if r["status"] == "failed"]
    assert 20 < len(failed) < 120, len(failed)
    s.get("/control?fail_pct=0")  # the API has been fixed
    before = len(s.requests())
    job.args.append("--redrive")
    job.start()
    env.worker(job.control, name="worker-redrive")
    assert job.master.wait(60) == 0, job.master.text()[-3000:]
    recs = h.results(job.out)
    h.assert_exactly_once(recs, job.ids())
    assert all(r["status"] == "ok" for r in recs)
    again = s.requests()[before:]
    assert len(again) == len(failed), (len(again), len(failed))
    assert {r["path"].rsplit("/", 1)[1] for r in again} == set(failed)
    for r in recs:
        if r["id"] not in failed:
            assert r == first[r["id"]], "ok record changed: %s" % r["id"]
    assert h.summary(job.out)["failed"] == 0


def test_an_api_outage_mid_job_fails_no_item(env):
    """The API goes away mid-job (its server killed, so connections are
    refused) and comes back on the same port 3 s later. With 3 attempts,
    retries at most 300 ms apart and 16 items in play, every item in
    play would fail during the outage; instead the workers notice that
    the API they reached before no longer answers, and the items wait for
    it."""
    s = env.server()
    n = 300
    items = env.write_items("items.jsonl", n)
    out = env.path("out")
    m = env.master("--input", items, "--out", out, "--url",
                   s.base + "/x/{id}", "--spawn-workers", "2", "--rate",
                   "60/s", "--max-attempts", "3", "--backoff-base", "50ms",
                   "--backoff-max", "300ms", "--window", "16")
    results = os.path.join(out, "results.jsonl")
    h.wait_for(lambda: os.path.exists(results) and
               len(h.results(out)) >= 60, 30, "60 records")
    s.proc.kill()
    s.proc.wait(10)
    time.sleep(3)  # the outage lasts 3 s: the scenario, not a wait
    env.server("--port", str(s.port))
    assert m.proc.wait(120) == 0, m.proc.text()[-3000:]
    recs = h.results(out)
    h.assert_exactly_once(recs, ["item-%d" % i for i in range(1, n + 1)])
    bad = [r for r in recs if r["status"] != "ok"]
    assert not bad, bad[:3]
    assert "api.unreachable" in m.proc.text()
    assert "api.reachable" in m.proc.text()
    waited = max(r["attempts"] for r in recs)
    h.report("API down 3 s mid-job (--max-attempts 3, retries <= 300 ms "
             "apart): 0 failed of %d, up to %d attempts for an item"
             % (n, waited))


def test_a_different_job_on_the_same_out_is_refused(env):
    s = env.server()
    job = Job(env, s, 10)
    job.start()
    env.worker(job.control)
    assert job.master.wait(30) == 0
    job.args[job.args.index("--url") + 1] = s.base + "/other/{id}"
    m = env.spawn("other", [os.path.join(h.BIN, "fanout-master"), "--bind",
                            "tcp://127.0.0.1:0"] + job.args, expect=2)
    m.wait(30, expect=2)
    assert "url was" in m.text() and "/other/{id}" in m.text(), m.text()


if __name__ == "__main__":
    h.main(globals())
