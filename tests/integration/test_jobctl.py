"""Job control from fanout-ctl (issue 14): pause and resume, kept across a
master restart, and drain of one worker, whose items go to the others."""
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402


ctl = h.ctl


def status(control):
    return json.loads(ctl(control, "status", "--json").stdout)


def test_pause_holds_every_call_until_resume_even_across_a_restart(env):
    s = env.server("--latency-ms", "20")
    n = 300
    job = h.items_job(env, s, n, "--rate", "100/s")
    job.start()
    env.worker(job.control, once=False)
    job.wait_results(30, 30)
    p = ctl(job.control, "pause")
    assert "PAUSED" in p.stdout, p.stdout
    # Calls in flight and tokens granted (250 ms ahead) finish; then none.
    h.wait_for(lambda: status(job.control)["in_flight"] == 0, 10,
               "calls in flight to finish")
    calls = len(s.requests())
    time.sleep(1.0)  # a second with the job paused: nothing may happen
    assert len(s.requests()) == calls, "calls made while paused"
    assert status(job.control)["paused_by_operator"] is True
    # A restart keeps the pause.
    job.master.signal(signal.SIGKILL)
    job.master.wait(10)
    job.start()
    h.wait_for(lambda: "ctl.pause" in job.master.text(), 10,
               "the restarted master to say it is paused")
    time.sleep(1.0)  # paused: nothing may happen
    assert len(s.requests()) == calls, "calls made while paused"
    ctl(job.control, "resume")
    assert job.finish(60) == 0, job.master.text()[-2000:]
    h.assert_exactly_once(h.results(job.out), job.ids())
    h.report("pause with %d of %d calls made: none for 2 s, across a "
             "master restart; resume finished the job" % (calls, n))


def test_drain_hands_a_workers_items_to_the_others(env):
    s = env.server("--latency-ms", "100")
    n = 200
    job = h.items_job(env, s, n)
    job.start()
    a = env.worker(job.control, "--id", "a", "--concurrency", "4")
    b = env.worker(job.control, "--id", "b", "--concurrency", "4")
    job.wait_results(20, 30)
    ctl(job.control, "drain", "a")
    assert a.wait(30) == 0, a.text()[-2000:]
    assert "worker.drain" in a.text()
    at_drain = sum(1 for r in h.results(job.out) if r["worker"] == "a")
    assert job.finish(60) == 0, job.master.text()[-2000:]
    b.wait(30)
    recs = h.results(job.out)
    h.assert_exactly_once(recs, job.ids())
    by_a = sum(1 for r in recs if r["worker"] == "a")
    # a finished only what it had started when told to leave.
    assert by_a <= at_drain + 8, (by_a, at_drain)
    h.report("drain of worker a after %d results: it recorded %d in all, "
             "b the other %d" % (at_drain, by_a, n - by_a))


def test_drain_of_an_unknown_worker_is_an_error(env):
    s = env.server()
    job = h.items_job(env, s, 50)
    job.start()
    p = ctl(job.control, "drain", "nobody", expect=3)
    assert "no live worker 'nobody'" in p.stderr, p.stderr
    p = ctl(job.control, "drain", expect=2)
    assert "drain WORKER" in p.stderr, p.stderr
    env.worker(job.control)
    assert job.finish(60) == 0


def test_list_failed_shows_the_latest_failures(env):
    s = env.server("--fail-pct", "40", "--seed", "5")
    n = 200
    job = h.items_job(env, s, n, "--rate", "100/s", "--max-attempts", "1")
    job.start(expect=1)
    env.worker(job.control, once=False)
    job.wait_results(60, 30)
    out = ctl(job.control, "list-failed").stdout
    failed = {r["id"]: r for r in h.results(job.out)
              if r["status"] == "failed"}
    listed = [line.split()[0] for line in out.splitlines()[1:]
              if line.startswith("item-")]
    assert listed, out
    # Every listed item failed; the newest come first.
    for item in listed:
        assert item in failed or item not in {
            r["id"] for r in h.results(job.out)}, (item, out)
    assert out.splitlines()[0].split()[:2] == ["ID", "HTTP"], out
    job.finish(60, expect=1)


def test_cancel_records_what_is_left_and_calls_nothing_more(env):
    """fanout-ctl cancel: the calls in flight end, every item left (and the
    rest of the input) is recorded cancelled without a call, the master
    exits 1; --redrive then runs the cancelled items."""
    s = env.server("--latency-ms", "50")
    n = 600
    job = h.items_job(env, s, n, "--rate", "50/s")
    job.start(expect=1)
    env.worker(job.control, "--concurrency", "8", once=False)
    job.wait_results(40, 30)
    ctl(job.control, "cancel")
    assert job.finish(60, expect=1) == 1, job.master.text()[-2000:]
    recs = h.results(job.out)
    h.assert_exactly_once(recs, job.ids())
    by = {}
    for r in recs:
        by[r["status"]] = by.get(r["status"], 0) + 1
    called = len(s.requests())
    # Nothing was called for a cancelled item, and nothing after the
    # cancel but the calls already in flight.
    assert by.get("ok", 0) == called, (by, called)
    assert by.get("cancelled", 0) >= n - 100, by
    sm = h.summary(job.out)
    assert sm["cancelled"] == by["cancelled"] and sm["finished"], sm
    # --redrive runs them.
    job.args.append("--redrive")
    job.start()
    env.worker(job.control, "--concurrency", "8", name="worker-redrive")
    assert job.finish(120) == 0, job.master.text()[-2000:]
    recs = h.results(job.out)
    h.assert_exactly_once(recs, job.ids())
    assert all(r["status"] == "ok" for r in recs)
    assert len(s.requests()) == n
    h.report("cancel after %d calls: %d recorded cancelled, none called; "
             "--redrive ran them: %d calls for %d items in all" % (
                 called, by["cancelled"], len(s.requests()), n))


def test_halt_after_failed_items(env):
    """--halt-after N stops a job that cannot succeed: after N failed items
    no new calls, exit 3, the reason in the log and summary.json; a re-run
    (the API fixed) resumes and finishes."""
    s = env.server("--fail-pct", "100")
    n = 400
    items = env.write_items("items.jsonl", n)
    out = env.path("out")
    args = ["--input", items, "--out", out, "--url",
            s.base + "/items/{id}", "--max-attempts", "1",
            "--rate", "100/s", "--halt-after", "10"]
    m = env.master(*args, expect=3)
    env.worker(m.control, "--concurrency", "4")
    assert m.proc.wait(60) == 3, m.proc.text()[-2000:]
    text = m.proc.text()
    assert "job.halted" in text and "--halt-after 10" in text, text[-2000:]
    sm = h.summary(out)
    assert "halt-after" in sm["halted"], sm
    recs = h.results(out)
    failed = sum(1 for r in recs if r["status"] == "failed")
    # Calls in flight when it halted still end: a few more than 10.
    assert 10 <= failed < 60, failed
    assert len(recs) < n
    # The API is fixed: the same command resumes, --redrive retries the
    # failed ones, and the job completes.
    s.get("/control?fail_pct=0")
    m2 = env.master(*(args + ["--redrive"]), name="master2")
    env.worker(m2.control, "--concurrency", "4", name="worker2")
    assert m2.proc.wait(60) == 0, m2.proc.text()[-2000:]
    h.assert_exactly_once(h.results(out), ["item-%d" % i
                                           for i in range(1, n + 1)])
    h.report("--halt-after 10 against an API that always fails: halted "
             "with %d of %d recorded (exit 3)" % (len(recs), n))


def test_halt_on_repeated_401(env):
    s = env.server()
    n = 300
    items = env.write_items("items.jsonl", n)
    out = env.path("out")
    m = env.master("--input", items, "--out", out, "--url",
                   s.base + "/status/401/{id}", "--rate", "100/s",
                   "--halt-on-repeat", "8", expect=3)
    env.worker(m.control, "--concurrency", "4")
    assert m.proc.wait(60) == 3, m.proc.text()[-2000:]
    assert "failed with HTTP 401" in m.proc.text(), m.proc.text()[-2000:]
    recs = h.results(out)
    assert 8 <= len(recs) < 40, len(recs)
    h.report("--halt-on-repeat 8 with every call answered 401: halted "
             "after %d records" % len(recs))


def test_on_finish_runs_once_with_the_outcome(env):
    s = env.server()
    items = env.write_items("items.jsonl", 30)
    out = env.path("out")
    mark = env.path("finished.txt")
    hook = ('echo "$FANOUT_EXIT_STATUS $FANOUT_OUT $FANOUT_SUMMARY" >> %s'
            % mark)
    m = env.master("--input", items, "--out", out, "--url",
                   s.base + "/items/{id}", "--on-finish", hook)
    env.worker(m.control)
    assert m.proc.wait(60) == 0, m.proc.text()[-2000:]
    with open(mark) as f:
        lines = f.read().splitlines()
    assert lines == ["0 %s %s/summary.json" % (out, out)], lines
    assert os.path.exists(os.path.join(out, "summary.json"))


class _Receiver:
    """An HTTP server on 127.0.0.1:0 that keeps each POST it gets; the
    first `fail` POSTs are answered 503."""

    def __init__(self, fail=0):
        import http.server
        import threading
        got = self.posts = []
        left = [fail]

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                code = 503 if left[0] > 0 else 204
                left[0] -= 1
                got.append((dict(self.headers), body, code))
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = "http://127.0.0.1:%d/hook" % self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def test_notify_posts_the_summary_once_retrying_a_5xx(env):
    s = env.server()
    items = env.write_items("items.jsonl", 25)
    out = env.path("out")
    r = _Receiver(fail=1)
    try:
        m = env.master("--input", items, "--out", out, "--url",
                       s.base + "/items/{id}", "--notify", r.url)
        env.worker(m.control)
        assert m.proc.wait(60) == 0, m.proc.text()[-2000:]
    finally:
        r.close()
    # One 503, then the summary that is on disk, once.
    assert [c for _, _, c in r.posts] == [503, 204], r.posts
    hdrs, body, _ = r.posts[1]
    with open(os.path.join(out, "summary.json"), "rb") as f:
        assert body == f.read()
    assert json.loads(body)["ok"] == 25, body[:300]
    assert hdrs.get("Content-Type") == "application/json"
    assert hdrs.get("Fanout-Exit-Status") == "0"
    assert "master.notified" in m.proc.text()


if __name__ == "__main__":
    h.main(globals())
