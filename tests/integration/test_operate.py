"""Operating a job (issue 14): one master per --out, the input checked
before --out is made, private --out, a second signal stops at once, spawned
workers that cannot run the job end it instead of hanging it, a warning when
no worker comes, and a stdin that changed between runs is refused. Real
master, workers and test server on loopback."""
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402


def items_text(n, start=1):
    return "".join(json.dumps({"id": "item-%d" % i, "n": i}) + "\n"
                   for i in range(start, start + n))


def ids(n):
    return ["item-%d" % i for i in range(1, n + 1)]


def test_second_master_on_one_out_exits_2_naming_the_first(env):
    s = env.server()
    n = 300
    items = env.write_items("items.jsonl", n)
    out = env.path("out")
    args = ["--input", items, "--out", out, "--url", s.base + "/items/{id}",
            "--rate", "100/s"]
    first = env.master(*args)
    assert first.proc.alive()
    second = env.master(*args, name="master2", expect=2, wait=False)
    second.proc.wait(20, expect=2)
    msg = second.proc.text()
    want = "--out %s is in use by fanout-master pid %d (lock %s/lock)" % (
        out, first.proc.pid, out)
    assert want in msg, msg
    # The refused master touched nothing: the first one finishes the job.
    w = env.worker(first.control)
    assert first.proc.wait(60, expect=0) == 0
    w.wait(30, expect=0)
    h.assert_exactly_once(h.results(out), ids(n))
    # The lock went with its holder: the same command now runs (and finds
    # the job complete).
    again = env.master(*args, name="master3")
    assert again.proc.wait(30, expect=0) == 0
    assert "already complete" in again.proc.text()


def test_mistyped_input_creates_no_out(env):
    out = env.path("out")
    m = env.master("--input", env.path("itmes.jsonl"), "--out", out,
                   "--url", "http://127.0.0.1:9/{id}", expect=2)
    m.proc.wait(20, expect=2)
    text = m.proc.text()
    assert "--input %s: No such file or directory" % env.path(
        "itmes.jsonl") in text, text
    assert not os.path.exists(out), os.listdir(out)


def test_out_is_private(env):
    s = env.server()
    items = env.write_items("items.jsonl", 30)
    old = os.umask(0o022)  # what a typical shell has; the master overrides
    try:
        status, out = h.run_job(env, "--input", items,
                                "--url", s.base + "/items/{id}")
    finally:
        os.umask(old)
    assert status == 0
    mode = stat.S_IMODE(os.stat(out).st_mode)
    assert mode == 0o700, "--out is %o" % mode
    names = sorted(os.listdir(out))
    for want in ("lock", "results.jsonl", "state.db", "summary.json"):
        assert want in names, names
    for name in names:
        st = os.lstat(os.path.join(out, name))
        assert stat.S_ISREG(st.st_mode), name
        assert stat.S_IMODE(st.st_mode) == 0o600, "%s is %o" % (
            name, stat.S_IMODE(st.st_mode))


def test_results_file_that_is_a_symlink_is_refused(env):
    s = env.server()
    items = env.write_items("items.jsonl", 5)
    out = env.path("out")
    os.mkdir(out, 0o700)
    victim = env.path("victim.txt")
    with open(victim, "w") as f:
        f.write("not yours\n")
    os.symlink(victim, os.path.join(out, "results.jsonl"))
    m = env.master("--input", items, "--out", out,
                   "--url", s.base + "/items/{id}", expect=2)
    m.proc.wait(20, expect=2)
    assert "results.jsonl" in m.proc.text(), m.proc.text()
    with open(victim) as f:
        assert f.read() == "not yours\n"


def test_second_sigint_exits_3_at_once_and_rerun_completes(env):
    s = env.server("--latency-ms", "300")
    n = 400
    job = h.items_job(env, s, n, "--max-in-flight", "16",
                      "--drain-timeout", "60s")
    job.start(expect=3)
    ws = [env.worker(job.control, once=False) for _ in range(2)]
    job.wait_results(40, 60)
    job.master.signal(signal.SIGINT)
    h.wait_for(lambda: "master.stopping" in job.master.text(), 10,
               "the first signal to be seen")
    # Calls of 300 ms keep the drain busy: only the second signal ends it.
    t0 = time.monotonic()
    job.master.signal(signal.SIGINT)
    status = job.finish(5, expect=3)
    took = time.monotonic() - t0
    assert status == 3
    text = job.master.text()
    assert "second signal: stopping now" in text, text[-2000:]
    h.report("second SIGINT: exited 3 after %.2f s" % took)
    recorded = job.results_count()
    assert 0 < recorded < n, recorded
    # Everything committed stays committed; a re-run finishes the rest.
    job.start(expect=0)
    assert job.finish(120, expect=0) == 0
    for w in ws:
        w.signal(signal.SIGTERM)
    h.assert_exactly_once(h.results(job.out), job.ids())


def test_out_with_trailing_slash_prints_no_double_slash(env):
    s = env.server()
    items = env.write_items("items.jsonl", 10)
    out = env.path("out")
    status, _ = h.run_job(env, "--input", items,
                          "--url", s.base + "/items/{id}", out=out + "//")
    assert status == 0
    text = [p for p in env.procs if p.name == "master"][0].text()
    assert "%s/results.jsonl" % out in text, text
    assert "//results.jsonl" not in text and "//summary.json" not in text, \
        text
    h.assert_exactly_once(h.results(out), ids(10))


def test_spawned_workers_that_cannot_run_the_job_end_it_with_2(env):
    s = env.server()
    items = env.write_items("items.jsonl", 20)
    # The variable the header names is not set anywhere.  (Printed so the
    # test's output shows what the worker said.)
    os.environ.pop("API_TOKEN", None)
    t0 = time.monotonic()
    m = env.master("--input", items, "--out", env.path("out"),
                   "--url", s.base + "/items/{id}", "--spawn-workers", "2",
                   "--header", "Authorization: Bearer ${API_TOKEN}",
                   expect=2)
    # Bounded: a worker that quit is noticed at once, or at the latest when
    # its lease (5 s) runs out.
    m.proc.wait(30, expect=2)
    took = time.monotonic() - t0
    text = m.proc.text()
    said = re.search(r"no other worker is connected; the last one said: "
                     r"(.+)", text)
    assert said, text[-3000:]
    quoted = said.group(1).strip()
    assert quoted != "(nothing)", text[-3000:]
    # The quote is a line a worker wrote, which the master forwarded.
    lines = text.splitlines()
    assert any(line.strip() == quoted for line in lines), (quoted, text)
    help_text = subprocess.run(
        [os.path.join(h.BIN, "fanout-worker"), "--help"],
        capture_output=True, text=True).stdout
    if "allow-env" in help_text:
        # The worker knows --allow-env: it refuses the unset variable
        # itself, and says which.
        assert "API_TOKEN" in quoted, quoted
    assert s.stats()["requests"] == 0
    print("the master quoted: %s" % quoted)
    h.report("spawned workers unable to run the job: master exited 2 "
             "after %.1f s" % took)


def test_no_worker_warning_says_how_to_start_one(env):
    s = env.server()
    items = env.write_items("items.jsonl", 5)
    m = env.master("--input", items, "--out", env.path("out"),
                   "--url", s.base + "/items/{id}",
                   "--no-worker-warning", "1s", expect=3)
    want = "no worker has connected for 1 s; start one with: " \
        "fanout-worker --master %s (or re-run with --spawn-workers N)" \
        % m.control
    h.wait_for(lambda: want in m.proc.text(), 10, "the no-worker warning")
    # A worker that comes is what it asked for: the job finishes.
    w = env.worker(m.control)
    m.proc.expect(0)
    assert m.proc.wait(30, expect=0) == 0
    w.wait(30, expect=0)
    assert m.proc.text().count("no worker has connected") == 1


def run_stdin(env, s, text, out, name, expect=0, worker=True):
    m = env.master("--input", "-", "--out", out,
                   "--url", s.base + "/items/{id}", name=name,
                   stdin=subprocess.PIPE, expect=expect, wait=False)
    try:
        m.proc.p.stdin.write(text.encode())
        m.proc.p.stdin.close()
    except BrokenPipeError:
        pass  # it refused the input before reading all of it
    w = None
    if worker:
        m.wait_ready()
        w = env.worker(m.control)
    status = m.proc.wait(60, expect=expect)
    if w:
        w.wait(30, expect=0)
    return status, m.proc.text()


def test_stdin_that_changed_is_refused(env):
    s = env.server()
    out = env.path("out")
    status, _ = run_stdin(env, s, items_text(20), out, "first")
    assert status == 0
    h.assert_exactly_once(h.results(out), ids(20))
    # The same 20 items again: complete, nothing to do.
    status, text = run_stdin(env, s, items_text(20), out, "same",
                             worker=False)
    assert status == 0 and "already complete" in text, text
    # 120 items on the same --out: not "complete", not truncated: refused.
    status, text = run_stdin(env, s, items_text(120), out, "longer",
                             expect=2, worker=False)
    assert ("the input on stdin differs from the one this --out was "
            "started with (first difference near line 21); use another "
            "--out") in text, text
    # 20 other items: refused too, naming a line at or before line 5.
    other = items_text(4) + items_text(16, start=500)
    status, text = run_stdin(env, s, other, out, "other", expect=2,
                             worker=False)
    near = re.search(r"differs from the one this --out was started with "
                     r"\(first difference near line (\d+)\)", text)
    assert near and 1 <= int(near.group(1)) <= 5, text
    # The results are what the first run made.
    h.assert_exactly_once(h.results(out), ids(20))
    assert s.stats()["requests"] == 20


def test_stdin_resumed_with_other_items_is_refused(env):
    s = env.server("--latency-ms", "200")
    out = env.path("out")
    n = 300
    job_args = ["--input", "-", "--out", out, "--url", s.base + "/items/{id}",
                "--max-in-flight", "8"]
    m = env.master(*job_args, stdin=subprocess.PIPE, expect=3, wait=False)
    m.proc.p.stdin.write(items_text(n).encode())
    m.proc.p.stdin.close()
    m.wait_ready()
    w = env.worker(m.control, once=False)
    h.wait_for(lambda: h.count_lines(os.path.join(out, "results.jsonl"))
               >= 30, 60, "30 results")
    m.proc.signal(signal.SIGTERM)
    m.proc.wait(60, expect=3)
    w.signal(signal.SIGTERM)
    done = h.count_lines(os.path.join(out, "results.jsonl"))
    assert done < n
    # Line 3 changed: every resume point past it is refused.
    lines = items_text(n).splitlines(True)
    lines[2] = json.dumps({"id": "item-3", "n": -3}) + "\n"
    m2 = env.master(*job_args, name="master2", stdin=subprocess.PIPE,
                    expect=2, wait=False)
    try:
        m2.proc.p.stdin.write("".join(lines).encode())
        m2.proc.p.stdin.close()
    except BrokenPipeError:
        pass
    m2.proc.wait(30, expect=2)
    near = re.search(r"the input on stdin differs from the one this --out "
                     r"was started with \(first difference near line (\d+)\)",
                     m2.proc.text())
    assert near and int(near.group(1)) <= 3, m2.proc.text()
    assert h.count_lines(os.path.join(out, "results.jsonl")) == done


def spawned_children(pid):
    kids = []
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                kids += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return kids


def test_spawned_workers_get_log_format_and_a_clean_environment(env):
    s = env.server()
    n = 60
    items = env.write_items("items.jsonl", n)
    out = env.path("out")
    m = env.master("--input", items, "--out", out,
                   "--url", s.base + "/items/{id}", "--spawn-workers", "1",
                   "--rate", "20/s", "--log-format", "json",
                   "--progress", "off",
                   env={"FANOUT_BURST": "1", "OPERATE_KEEP_ME": "yes"})
    def exec_done():
        # Between fork and exec the child is still a copy of the master
        # (its argv and environment): wait for the worker's own.
        for kid in spawned_children(m.proc.pid):
            try:
                with open("/proc/%d/cmdline" % kid, "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"fanout-worker"):
                return kid, argv
        return None
    kid, argv = h.wait_for(exec_done, 10, "the spawned worker")
    with open("/proc/%d/environ" % kid, "rb") as f:
        wenv = [x.decode(errors="replace") for x in f.read().split(b"\0")
                if x]
    assert b"--log-format" in argv and \
        argv[argv.index(b"--log-format") + 1] == b"json", argv
    assert "OPERATE_KEEP_ME=yes" in wenv
    assert any(x.startswith("PATH=") for x in wenv)
    assert not [x for x in wenv if x.startswith("FANOUT_")], wenv
    assert m.proc.wait(60, expect=0) == 0
    h.assert_exactly_once(h.results(out), ids(n))
    # stdout and stderr share the log: every line of both is JSON.
    lines = [x for x in m.proc.text().splitlines() if x.strip()]
    roles = set()
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            raise AssertionError("not JSON: %r" % line)
        roles.add(rec.get("role"))
    assert {"master", "worker"} <= roles, roles


if __name__ == "__main__":
    h.main(globals())
