"""Response transforms and per-batch fan-in (issue 17): --keep,
--drop-response, --ok-when (and --ok-when-retry) applied on the worker to
the test server's nested JSON answers, and --batches writing one line per
completed batch, exactly once across kill -9 of the master."""
import json
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402
import queuelib as ql  # noqa: E402


def routed_items(env, n, route_of, name="items.jsonl"):
    """n items item-1..item-n whose field route picks the server path."""
    return env.write_items(name, n, fmt=lambda i: json.dumps(
        {"id": "item-%d" % i, "route": route_of(i)}))


# Jobs here are small: one --once worker each (run_job's default), since a
# second could join after the job ended and wait for ever.


def ids(n):
    return ["item-%d" % i for i in range(1, n + 1)]


def test_keep_stores_exactly_the_chosen_parts(env):
    s = env.server()
    n = 30
    items = env.write_items("items.jsonl", n)
    status, out = h.run_job(env, "--input", items,
                            "--url", s.base + "/json/{id}",
                            "--keep", "data.state", "--keep", "/data/tags/1",
                            "--keep", "id", "--keep", "data.absent",
                            "--keep", "/data/tags/7")
    assert status == 0, status
    recs = h.results(out)
    h.assert_exactly_once(recs, ids(n))
    for r in recs:
        assert r["status"] == "ok", r
        # Exactly the kept parts, keyed by the paths as given; missing
        # paths are left out; the rest (blob, n, status) never crossed.
        assert r["response"] == {"data.state": "done", "/data/tags/1": "b",
                                 "id": r["id"]}, r


def test_keep_drops_a_response_that_is_not_json(env):
    s = env.server()
    n = 6
    items = env.write_items("items.jsonl", n)
    status, out = h.run_job(env, "--input", items,
                            "--url", s.base + "/text/{id}",
                            "--keep", "data.state")
    assert status == 0, status
    for r in h.results(out):
        assert r["status"] == "ok" and "response" not in r, r
        # Dropped, and counted: "hello item-N".
        assert r["response_bytes"] == len("hello " + r["id"]), r
    # Without --keep the text is kept as it is.
    status, out = h.run_job(env, "--input", items,
                            "--url", s.base + "/text/{id}",
                            out=env.path("out2"), name="master2")
    assert status == 0, status
    for r in h.results(out):
        assert r["response"] == "hello " + r["id"], r


def test_drop_response_stores_none(env):
    s = env.server()
    n = 20
    items = env.write_items("items.jsonl", n)
    status, out = h.run_job(env, "--input", items,
                            "--url", s.base + "/json/{id}",
                            "--drop-response")
    assert status == 0, status
    recs = h.results(out)
    h.assert_exactly_once(recs, ids(n))
    for r in recs:
        assert r["status"] == "ok" and r["http_status"] == 200, r
        assert "response" not in r and "response_bytes" not in r, r


def test_ok_when_turns_a_200_saying_error_into_failed(env):
    s = env.server()
    n = 20
    items = routed_items(env, n, lambda i: "json-error" if i % 3 == 0
                         else "json")
    status, out = h.run_job(env, "--input", items,
                            "--url", s.base + "/{route}/{id}",
                            "--ok-when", "status!=error",
                            "--max-attempts", "4", expect=1)
    assert status == 1, status
    recs = {r["id"]: r for r in h.results(out)}
    assert sorted(recs) == sorted(ids(n))
    for i in range(1, n + 1):
        r = recs["item-%d" % i]
        if i % 3 == 0:
            assert r["status"] == "failed" and r["http_status"] == 200, r
            assert r["attempts"] == 1, r  # failed at once, not retried
            assert "--ok-when 'status!=error'" in r["error"], r
            assert 'status is "error"' in r["error"], r
            # The body that failed the check is kept for the record.
            assert r["response"]["status"] == "error", r
        else:
            assert r["status"] == "ok" and r["attempts"] == 1, r
    sm = h.summary(out)
    assert sm["failed"] == n // 3 and sm["ok"] == n - n // 3, sm
    # Other spellings of the same check: a pointer with a quoted value, and
    # a list.
    for i, cond in enumerate(['/status == "ok"', "data.state in [done,ok]"]):
        status, out = h.run_job(env, "--input", items,
                                "--url", s.base + "/{route}/{id}",
                                "--ok-when", cond, "--keep", "status",
                                out=env.path("o%d" % i),
                                name="m%d" % i, expect=1)
        assert status == 1, (cond, status)
        for r in h.results(out):
            want = "failed" if int(r["id"][5:]) % 3 == 0 else "ok"
            assert r["status"] == want, (cond, r)
            assert r["response"] == {"status": "error" if want == "failed"
                                     else "ok"}, r


def test_ok_when_retry_retries_until_the_answer_changes(env):
    s = env.server()
    n = 12
    items = env.write_items("items.jsonl", n)
    # Each item's path says "error" twice, then "ok".
    status, out = h.run_job(env, "--input", items,
                            "--url", s.base + "/json-flip/2/{id}",
                            "--ok-when", "status == ok", "--ok-when-retry",
                            "--max-attempts", "5", "--backoff-base", "20",
                            "--backoff-max", "100")
    assert status == 0, status
    recs = h.results(out)
    h.assert_exactly_once(recs, ids(n))
    for r in recs:
        assert r["status"] == "ok" and r["attempts"] == 3, r
        assert r["response"]["status"] == "ok", r
    assert s.stats()["requests"] == 3 * n
    # Backoff between attempts: the first try to the last spans two.
    for r in recs:
        assert r["started_at"] < r["finished_at"], r


def test_ok_when_retry_fails_after_max_attempts(env):
    s = env.server()
    n = 8
    items = env.write_items("items.jsonl", n)
    status, out = h.run_job(env, "--input", items,
                            "--url", s.base + "/json-flip/100/{id}",
                            "--ok-when", "status == ok", "--ok-when-retry",
                            "--max-attempts", "3", "--backoff-base", "10",
                            "--backoff-max", "30", "--drop-response",
                            expect=1)
    assert status == 1, status
    recs = h.results(out)
    h.assert_exactly_once(recs, ids(n))
    for r in recs:
        assert r["status"] == "failed" and r["attempts"] == 3, r
        assert r["error"].startswith("gave up after 3 attempts: response "
                                     "fails --ok-when"), r
        assert "response" not in r, r
    assert s.stats()["requests"] == 3 * n


def test_bad_flags_are_usage_errors(env):
    s = env.server()
    items = env.write_items("items.jsonl", 2)
    cases = [
        (["--ok-when", "status = ok"], "--ok-when"),
        (["--ok-when", "data..x==1"], "empty segment"),
        (["--keep", "/a~2"], "--keep"),
        (["--keep", "a", "--drop-response"], "contradict"),
        (["--ok-when-retry"], "needs --ok-when"),
    ]
    for k, (flags, text) in enumerate(cases):
        m = env.master("--input", items, "--url", s.base + "/json/{id}",
                       "--out", env.path("bad%d" % k), *flags,
                       name="bad%d" % k, expect=2)
        assert m.proc.wait(15, expect=2) == 2
        assert text in m.proc.text(), (flags, m.proc.text())


def batch_lines(path):
    with open(path) as f:
        text = f.read()
    assert text == "" or text.endswith("\n"), "torn batches line"
    return [json.loads(x) for x in text.splitlines()]


def test_batches_writes_one_line_per_batch_with_its_map(env):
    s = env.server()
    n, size = 23, 4
    lines = []
    for i in range(1, n + 1):
        if i == 10:
            lines.append("not json")  # line 10: an invalid record
        else:
            lines.append(json.dumps({"id": "item-%d" % i, "route":
                                     "json-error" if i % 5 == 0 else "json"}))
    items = env.path("items.jsonl")
    with open(items, "w") as f:
        f.write("\n".join(lines) + "\n")
    bfile = env.path("b.jsonl")
    status, out = h.run_job(env, "--input", items,
                            "--url", s.base + "/{route}/{id}",
                            "--ok-when", "status!=error", "--batch-size",
                            str(size), "--batches", bfile, expect=1)
    assert status == 1, status
    recs = h.results(out)
    got = batch_lines(bfile)
    assert [b["batch"] for b in got] == list(range((n + size - 1) // size))
    byid = {r["id"]: r for r in recs}
    for b in got:
        first = b["batch"] * size + 1
        last = min(first + size - 1, n)
        assert b["first_line"] == first and b["last_line"] == last, b
        want = {}
        for line in range(first, last + 1):
            key = "10" if line == 10 else "item-%d" % line
            want[key] = byid[key]["status"]
            assert byid[key]["batch"] == b["batch"], (b, byid[key])
        assert b["items"] == want, (b, want)
    assert got[2]["items"]["10"] == "invalid"
    assert got[1]["items"]["item-5"] == "failed"
    assert not os.path.exists(os.path.join(out, "batches.jsonl"))


def test_batches_alone_writes_into_out(env):
    s = env.server()
    items = env.write_items("items.jsonl", 7)
    # Bare --batches, before another option and last: --out/batches.jsonl.
    for k, flags in enumerate([["--batches", "--batch-size", "3"],
                               ["--batch-size", "3", "--batches"],
                               ["--batch-size", "3", "--batches", "out"]]):
        status, out = h.run_job(env, "--input", items,
                                "--url", s.base + "/json/{id}", *flags,
                                out=env.path("out%d" % k), name="m%d" % k)
        assert status == 0, (flags, status)
        got = batch_lines(os.path.join(out, "batches.jsonl"))
        assert [b["batch"] for b in got] == [0, 1, 2], (flags, got)
        assert got[2] == {"batch": 2, "first_line": 7, "last_line": 7,
                          "items": {"item-7": "ok"}}, got


def test_batches_start_over_with_redrive(env):
    s = env.server()
    n, size = 12, 4
    # Every third item's path says error once, then ok (/json/1/ID is
    # always ok).
    items = routed_items(env, n, lambda i: "json-flip" if i % 3 == 0
                         else "json")
    args = ["--input", items, "--url", s.base + "/{route}/1/{id}",
            "--ok-when", "status==ok", "--batch-size", str(size),
            "--batches", "--max-attempts", "1"]
    status, out = h.run_job(env, *args, expect=1)
    assert status == 1, status
    bpath = os.path.join(out, "batches.jsonl")
    got = batch_lines(bpath)
    assert len(got) == 3 and got[0]["items"]["item-3"] == "failed", got
    # --redrive runs the failed items again from the first line: the batch
    # file starts over, and each batch's line says what its items are now.
    status, out = h.run_job(env, *(args + ["--redrive"]), name="redrive")
    assert status == 0, status
    got = batch_lines(bpath)
    assert [b["batch"] for b in got] == [0, 1, 2], got
    for b in got:
        assert len(b["items"]) == size, b
        assert set(b["items"].values()) == {"ok"}, b
    h.assert_exactly_once(h.results(out), ids(n))


def test_batches_exactly_once_after_kill_9(env):
    s = env.server("--rate", "400/s")
    n, size = 1200, 10
    job = h.items_job(env, s, n, "--rate", "400/s", "--batch-size",
                      str(size), "--max-in-flight", "16", "--batches", "out",
                      url_path="/json")
    job.start()
    workers = [env.worker(job.control, "--concurrency", "8")
               for _ in range(2)]
    bpath = os.path.join(job.out, "batches.jsonl")
    runs = []
    # Marks off the batch boundaries, so a kill cuts a batch whose first
    # records are committed (records commit nearly in order).
    for k, mark in enumerate((243, 547, 845)):
        job.wait_results(mark, 120)
        job.master.signal(signal.SIGKILL)
        job.master.wait(10)
        if k == 0:
            # A line torn by the crash (written, never counted by the
            # store): the restart must cut it.
            with open(bpath, "a") as f:
                f.write('{"batch":99999,"items":{"x":')
        job.start()
        runs.append(job.master)
    assert job.finish(180) == 0, job.master.text()[-3000:]
    for w in workers:
        w.wait(30)
    recs = h.results(job.out)
    h.assert_exactly_once(recs, job.ids())
    got = batch_lines(bpath)
    nums = [b["batch"] for b in got]
    dups = sorted({x for x in nums if nums.count(x) > 1})
    assert not dups, "batches written twice: %s" % dups
    assert sorted(nums) == list(range(n // size)), \
        "missing batches: %s" % sorted(set(range(n // size)) - set(nums))
    seen = {}
    for b in got:
        assert b["first_line"] == b["batch"] * size + 1, b
        assert b["last_line"] == b["first_line"] + size - 1, b
        assert len(b["items"]) == size, b
        for k, v in b["items"].items():
            assert v == "ok", b
            seen[k] = seen.get(k, 0) + 1
    assert sorted(seen) == sorted(job.ids())
    assert set(seen.values()) == {1}
    for r in recs:
        assert r["id"] in got[nums.index(r["batch"])]["items"], r
    logs = "".join(m.text() for m in runs)
    assert "batches.repaired" in runs[0].text(), runs[0].text()[-2000:]
    # Batches cut by a kill got the records of the earlier life back.
    assert "batches.resumed" in logs, logs[-3000:]
    h.report("--batches across 3 kill -9 of the master: %d lines, each "
             "batch once, %d items in the maps" % (len(got), len(seen)))


def test_batches_on_a_queue_list_each_message_once_across_a_kill(env):
    """Redis stops answering, so acknowledgements hang while batches
    complete and get their lines; then the master is killed. The entries
    come back to the restarted master, recorded: the batch they land in
    must not list again those an earlier line lists, and the entries of
    batches the kill cut must be listed once."""
    n, size = 200, 10
    r = ql.Redis(env)
    s = env.server()
    ids = ["u-%d" % i for i in range(1, n + 1)]
    mids = r.xadd_many("jobs", [{"id": i} for i in ids])
    job = ql.QueueJob(env, r.url("jobs"), s, "--idle-grace", "1s",
                      "--rate", "100/s", "--spawn-workers", "1",
                      "--batch-size", str(size), "--batches",
                      "--log-level", "debug", url_path="/json/{id}")
    job.start()
    job.wait_results(20, 60)
    r.proc.signal(signal.SIGSTOP)
    try:
        job.wait_results(60, 60)
        job.master.signal(signal.SIGKILL)
        job.master.wait(10)
    finally:
        r.proc.signal(signal.SIGCONT)
    first = batch_lines(os.path.join(job.out, "batches.jsonl"))
    job.start()
    assert job.finish(90) == 0, job.master.text()[-3000:]
    assert "source.redelivered" in job.master.text()
    h.assert_exactly_once(h.results(job.out), ids)
    got = batch_lines(os.path.join(job.out, "batches.jsonl"))
    assert got[:len(first)] == first
    nums = [b["batch"] for b in got]
    assert len(set(nums)) == len(nums) and nums == sorted(nums), nums
    seen, msgs = {}, {}
    for b in got:
        assert len(b["messages"]) == len(b["items"]), b
        for k, v in b["items"].items():
            assert v == "ok", b
            seen[k] = seen.get(k, 0) + 1
        for m in b["messages"]:
            msgs[m] = msgs.get(m, 0) + 1
    assert sorted(seen) == sorted(ids), sorted(set(ids) - set(seen))[:10]
    assert set(seen.values()) == {1}, [k for k, v in seen.items() if v > 1]
    assert sorted(msgs) == sorted(mids) and set(msgs.values()) == {1}
    h.report("--batches on a redis stream, kill -9 with acknowledgements "
             "hanging: %d lines before the kill, %d in all, each entry "
             "listed once" % (len(first), len(got)))


if __name__ == "__main__":
    h.main(globals())
