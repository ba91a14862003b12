"""Integration-test harness: starts the real fanout-master, fanout-worker and
fanout-testserver as processes on loopback, waits for readiness files (never
sleeps as synchronisation), and always kills and reaps every child.

Each test runs in its own temporary directory holding inputs, logs and the
job's --out. On failure the directory is kept and the tail of every child's
log is printed. A child that leaves a sanitizer report fails the test.

A test file defines functions named test_*; harness.main() runs them and
prints 'N passed, N failed' as its last line.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request

BIN = os.environ.get("FANOUT_BIN", os.path.join(
    os.path.dirname(__file__), "..", "..", "build"))
SCALE = float(os.environ.get("FANOUT_TIMEOUT_MULTIPLIER", "1"))
# A command prefix for fanout-master and fanout-worker, e.g. valgrind.
WRAP = os.environ.get("FANOUT_WRAP", "").split()
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                     "runtime error:", "ERROR: ThreadSanitizer",
                     "FANOUT-VALGRIND-ERROR")


def deadline(seconds):
    return time.monotonic() + seconds * SCALE


def wait_for(cond, seconds, what, interval=0.02):
    """Polls cond() until it returns a truthy value or the deadline passes."""
    end = deadline(seconds)
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError("timed out after %.0fs waiting for %s"
                                 % (seconds * SCALE, what))
        time.sleep(interval)


class Proc:
    def __init__(self, name, argv, log, env=None, stdin=None):
        self.name, self.argv, self.log = name, argv, log
        self.logf = open(log, "ab")
        e = dict(os.environ)
        if env:
            e.update(env)
        self.p = subprocess.Popen(argv, stdout=self.logf, stderr=self.logf,
                                  stdin=stdin if stdin is not None
                                  else subprocess.DEVNULL, env=e)
        self.pid = self.p.pid

    def alive(self):
        return self.p.poll() is None

    def wait(self, seconds):
        try:
            return self.p.wait(timeout=seconds * SCALE)
        except subprocess.TimeoutExpired:
            raise AssertionError("%s did not exit within %.0fs"
                                 % (self.name, seconds * SCALE))

    def signal(self, sig):
        if self.alive():
            self.p.send_signal(sig)

    def kill(self):
        if self.alive():
            self.p.kill()
        try:
            self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.logf.close()

    def text(self):
        try:
            with open(self.log, "r", errors="replace") as f:
                return f.read()
        except OSError:
            return ""


class Server:
    """fanout-testserver on 127.0.0.1, port chosen by the kernel."""

    def __init__(self, env, args):
        self.logpath = env.path("server-requests.jsonl")
        portfile = env.path("server.port")
        if os.path.exists(portfile):
            os.unlink(portfile)
        argv = [os.path.join(BIN, "fanout-testserver"), "--port", "0",
                "--port-file", portfile, "--log", self.logpath] + list(args)
        self.proc = env.spawn("server", argv)
        self.port = int(wait_for(lambda: _read(portfile), 10,
                                 "the test server's port file").strip())
        self.base = "http://127.0.0.1:%d" % self.port

    def get(self, path):
        with urllib.request.urlopen(self.base + path, timeout=10) as r:
            return json.loads(r.read())

    def stats(self):
        return self.get("/stats")

    def requests(self):
        return whole_lines(_read(self.logpath) or "")


class Master:
    def __init__(self, env, args, name="master", stdin=None):
        self.ready = env.path(name + ".ready")
        if os.path.exists(self.ready):
            os.unlink(self.ready)
        argv = [os.path.join(BIN, "fanout-master"), "--bind",
                "tcp://127.0.0.1:0", "--ready-file", self.ready,
                "--progress", "plain"] + list(args)
        self.proc = env.spawn(name, argv, stdin=stdin)
        self.endpoints = None

    def wait_ready(self, seconds=10):
        def ready():
            if not self.proc.alive():
                raise AssertionError("master exited early (status %s):\n%s"
                                     % (self.proc.p.returncode,
                                        self.proc.text()[-3000:]))
            t = _read(self.ready)
            return json.loads(t) if t else None
        self.endpoints = wait_for(ready, seconds, "the master's ready file")
        return self.endpoints

    @property
    def control(self):
        return self.endpoints["control"]


class Env:
    """A test's directory and the processes it started."""

    def __init__(self, name):
        self.dir = tempfile.mkdtemp(prefix="fanout-%s-" % name)
        self.procs = []

    def path(self, *p):
        return os.path.join(self.dir, *p)

    def spawn(self, name, argv, env=None, stdin=None):
        if WRAP and os.path.basename(argv[0]) in ("fanout-master",
                                                  "fanout-worker"):
            argv = WRAP + list(argv)
        p = Proc(name, argv, self.path(name + ".log"), env=env, stdin=stdin)
        self.procs.append(p)
        return p

    def server(self, *args):
        return Server(self, args)

    def master(self, *args, name="master", stdin=None):
        return Master(self, args, name=name, stdin=stdin)

    def worker(self, control, *args, name=None, env=None):
        name = name or "worker%d" % len([p for p in self.procs
                                         if p.name.startswith("worker")])
        argv = [os.path.join(BIN, "fanout-worker"), "--master", control,
                "--once"] + list(args)
        return self.spawn(name, argv, env=env)

    def write_items(self, name, n, start=1, fmt=None):
        path = self.path(name)
        with open(path, "w") as f:
            for i in range(start, start + n):
                if fmt:
                    f.write(fmt(i) + "\n")
                else:
                    f.write(json.dumps({"id": "item-%d" % i, "n": i}) + "\n")
        return path

    def sanitizer_reports(self):
        bad = []
        for p in self.procs:
            t = p.text()
            if any(m in t for m in SANITIZER_MARKERS):
                bad.append(p.name)
        return bad

    def teardown(self, failed):
        for p in self.procs:
            p.kill()
        if failed:
            for p in self.procs:
                t = p.text()
                print("----- %s (%s) last lines -----" % (p.name, p.log))
                print("\n".join(t.splitlines()[-25:]))
            print("kept test directory %s" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def _read(path):
    try:
        # errors="replace": a read can end inside a UTF-8 sequence.
        with open(path, errors="replace") as f:
            t = f.read()
            return t if t else None
    except OSError:
        return None


def whole_lines(text):
    """Parses JSON lines, skipping a last line that has no newline yet: a
    file read while its writer runs can end inside a line."""
    text = text[:text.rfind("\n") + 1]
    return [json.loads(x) for x in text.splitlines() if x.strip()]


def results(out_dir):
    """Parses results.jsonl; every line must be one whole JSON object."""
    recs = []
    with open(os.path.join(out_dir, "results.jsonl")) as f:
        for n, line in enumerate(f, 1):
            assert line.endswith("\n"), "results line %d is torn" % n
            recs.append(json.loads(line))
    return recs


def summary(out_dir):
    with open(os.path.join(out_dir, "summary.json")) as f:
        return json.load(f)


def assert_exactly_once(recs, ids):
    seen = {}
    for r in recs:
        seen[r["id"]] = seen.get(r["id"], 0) + 1
    dups = [k for k, v in seen.items() if v > 1]
    missing = [i for i in ids if i not in seen]
    extra = [k for k in seen if k not in set(ids)]
    assert not dups, "ids recorded more than once: %s" % dups[:10]
    assert not missing, "%d ids missing, e.g. %s" % (len(missing), missing[:10])
    assert not extra, "unexpected ids: %s" % extra[:10]


def free_ports():
    """A port P with P, P+1 and P+2 free on 127.0.0.1, for a master that is
    restarted on the same endpoints (its workers find it again)."""
    for _ in range(200):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        p = s.getsockname()[1]
        s.close()
        if p > 65000:
            continue
        ok = True
        for q in (p, p + 1, p + 2):
            t = socket.socket()
            try:
                t.bind(("127.0.0.1", q))
            except OSError:
                ok = False
            finally:
                t.close()
        if ok:
            return p
    raise AssertionError("no three consecutive free ports on 127.0.0.1")


def count_lines(path):
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except OSError:
        return 0


class Job:
    """One fanout-master command line reading source, restartable with the
    same command on the same fixed ports (separately started workers find
    the restarted master), with extra environment for the master."""

    def __init__(self, env, source, url, *extra, name="", master_env=None):
        self.env, self.name = env, name
        self.port = free_ports()
        self.control = "tcp://127.0.0.1:%d" % self.port
        self.out = env.path(name + "out")
        self.master_env = master_env
        self.args = ["--input", source, "--out", self.out, "--url", url,
                     "--lease", "2s", "--heartbeat", "500ms"] + list(extra)
        self.runs = 0
        self.master = None

    def start(self):
        self.runs += 1
        ready = self.env.path("%smaster%d.ready" % (self.name, self.runs))
        argv = [os.path.join(BIN, "fanout-master"), "--bind", self.control,
                "--ready-file", ready, "--progress", "plain"] + self.args
        self.master = self.env.spawn("%smaster%d" % (self.name, self.runs),
                                     argv, env=self.master_env)
        wait_for(lambda: os.path.exists(ready) or not self.master.alive(),
                 15, "master ready")
        assert self.master.alive(), "master exited early (%s):\n%s" % (
            self.master.p.returncode, self.master.text()[-3000:])
        return self.master

    def results_path(self):
        return os.path.join(self.out, "results.jsonl")

    def results_count(self):
        return count_lines(self.results_path())

    def wait_results(self, n, seconds, what=None):
        """Waits until results.jsonl has n lines; fails at once if the
        master exits first."""
        def cond():
            if self.results_count() >= n:
                return True
            if not self.master.alive():
                raise AssertionError(
                    "master exited (%s) with %d of %d results:\n%s"
                    % (self.master.p.returncode, self.results_count(), n,
                       self.master.text()[-3000:]))
            return False
        wait_for(cond, seconds, what or "%d results" % n)

    def finish(self, seconds):
        """The master's exit status, waiting at most seconds."""
        return self.master.wait(seconds)


def repeats(server):
    """Requests beyond the first for each Idempotency-Key, and a check that
    every id always carried the same key."""
    by_path = {}
    for r in server.requests():
        by_path.setdefault(r["path"], []).append(r["idem"])
    extra = 0
    for path, keys in by_path.items():
        assert keys[0], "request without Idempotency-Key: %s" % path
        assert len(set(keys)) == 1, "id %s carried keys %s" % (path, keys)
        extra += len(keys) - 1
    return extra


def report(msg):
    """A measured figure; printed so ctest -V and CI logs show it."""
    print("MEASURED: " + msg, flush=True)


def main(module_globals):
    tests = [(n, f) for n, f in sorted(module_globals.items())
             if n.startswith("test_") and callable(f)]
    only = sys.argv[1:]
    passed = failed = 0
    for name, fn in tests:
        if only and name not in only:
            continue
        env = Env(name)
        t0 = time.monotonic()
        ok = False
        try:
            fn(env)
            bad = env.sanitizer_reports()
            assert not bad, "sanitizer reports in: %s" % bad
            ok = True
        except Exception:
            traceback.print_exc()
        finally:
            env.teardown(not ok)
        dt = time.monotonic() - t0
        print("%s %s (%.1fs)" % ("PASS" if ok else "FAIL", name, dt),
              flush=True)
        if ok:
            passed += 1
        else:
            failed += 1
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(0 if failed == 0 else 1)
