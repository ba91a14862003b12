"""Integration-test harness: starts the real fanout-master, fanout-worker and
fanout-testserver as processes on loopback, waits for readiness files (never
sleeps as synchronisation), and always kills and reaps every child.

Each test runs in its own temporary directory holding inputs, logs and the
job's --out. On failure the directory is kept and the tail of every child's
log is printed. A child that leaves a sanitizer report fails the test.

Every child has an expected exit status, 0 unless the test says otherwise
(spawn(expect=...), Proc.expect(), Proc.wait(expect=...)). At teardown a
child that exited with another status, or was killed by a signal that
neither the test nor the harness sent it, fails the test with its log.
Children still running at teardown are killed and that is no failure.

One helper each: Env.master() starts a master (port 0, ready file),
run_job() runs a whole job with workers, and Job is a master command line
that is restarted on the ports of its first run's ready file.

A test file defines functions named test_*; harness.main() runs them and
prints 'N passed, N failed' as its last line.
"""
import json
import os
import shutil
import signal
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
    """A child process writing stdout and stderr to log.

    expected: the exit statuses the test accepts (default 0); sent: the
    signals sent through signal() or kill(), whose deaths are accepted."""

    def __init__(self, name, argv, log, env=None, stdin=None, expect=0):
        self.name, self.argv, self.log = name, argv, log
        self.logf = open(log, "ab")
        e = dict(os.environ)
        if env:
            e.update(env)
        self.p = subprocess.Popen(argv, stdout=self.logf, stderr=self.logf,
                                  stdin=stdin if stdin is not None
                                  else subprocess.DEVNULL, env=e)
        self.pid = self.p.pid
        self.expected = set()
        self.expect(expect)
        self.sent = set()

    def expect(self, *statuses):
        """Declares the exit statuses the test accepts (replacing the
        earlier ones; a tuple counts as its members); returns self."""
        self.expected = set()
        for st in statuses:
            self.expected.update(st if isinstance(st, (tuple, list, set))
                                 else (st,))
        return self

    def alive(self):
        return self.p.poll() is None

    def wait(self, seconds, expect=None):
        """The exit status, waiting at most seconds. With expect, declares
        it (as expect()) and fails with the log's tail on another one."""
        if expect is not None:
            self.expect(expect)
        try:
            st = self.p.wait(timeout=seconds * SCALE)
        except subprocess.TimeoutExpired:
            raise AssertionError("%s did not exit within %.0fs"
                                 % (self.name, seconds * SCALE))
        if expect is not None:
            assert self.exited_as_expected(), "%s: %s\n%s" % (
                self.name, self.describe_exit(), self.text()[-3000:])
        return st

    def signal(self, sig):
        self.sent.add(sig)
        if self.alive():
            self.p.send_signal(sig)

    def kill(self):
        self.sent.add(signal.SIGKILL)
        if self.alive():
            self.p.kill()
        try:
            self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        if not self.logf.closed:
            self.logf.close()

    def exited_as_expected(self):
        """True while running, after an expected status, or after death
        by a signal that was sent to it."""
        st = self.p.poll()
        if st is None:
            return True
        if st < 0:
            return -st in self.sent
        return st in self.expected

    def describe_exit(self):
        st = self.p.poll()
        if st is not None and st < 0:
            try:
                name = signal.Signals(-st).name
            except ValueError:
                name = str(-st)
            return "killed by %s, which the test did not send" % name
        return "exit status %s, expected %s" % (
            st, " or ".join(str(x) for x in sorted(self.expected)))

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
    """One fanout-master run on 127.0.0.1: port 0 (three ports the kernel
    picks) unless port is given, a ready file, plain progress."""

    def __init__(self, env, args, name="master", stdin=None, env_vars=None,
                 port=0, expect=0):
        self.ready = env.path(name + ".ready")
        if os.path.exists(self.ready):
            os.unlink(self.ready)
        argv = [os.path.join(BIN, "fanout-master"), "--bind",
                "tcp://127.0.0.1:%d" % port, "--ready-file", self.ready,
                "--progress", "plain"] + list(args)
        self.proc = env.spawn(name, argv, env=env_vars, stdin=stdin,
                              expect=expect)
        self.endpoints = None

    def wait_ready(self, seconds=15, or_exit=False):
        """The endpoints in the ready file (control, work, result, metrics,
        pid, epoch). Fails if the master exits first; with or_exit, returns
        None then instead (a job with nothing to call can finish before
        anyone looks at the ready file)."""
        if self.endpoints:
            return self.endpoints

        def ready():
            t = _read(self.ready)
            if t:
                return json.loads(t)
            if not self.proc.alive():
                if or_exit:
                    return "exited"
                raise AssertionError("master exited before it was ready "
                                     "(status %s):\n%s"
                                     % (self.proc.p.returncode,
                                        self.proc.text()[-3000:]))
            return None
        got = wait_for(ready, seconds, "the master's ready file")
        self.endpoints = None if got == "exited" else got
        return self.endpoints

    @property
    def control(self):
        if not self.endpoints:
            self.wait_ready()
        return self.endpoints["control"]


class Env:
    """A test's directory and the processes it started."""

    def __init__(self, name):
        self.dir = tempfile.mkdtemp(prefix="fanout-%s-" % name)
        self.procs = []

    def path(self, *p):
        return os.path.join(self.dir, *p)

    def spawn(self, name, argv, env=None, stdin=None, expect=0):
        """Starts a child; expect: its expected exit status(es)."""
        if WRAP and os.path.basename(argv[0]) in ("fanout-master",
                                                  "fanout-worker"):
            argv = WRAP + list(argv)
        p = Proc(name, argv, self.path(name + ".log"), env=env, stdin=stdin,
                 expect=expect)
        self.procs.append(p)
        return p

    def server(self, *args):
        return Server(self, args)

    def master(self, *args, name="master", stdin=None, env=None, port=0,
               expect=0, wait=True):
        """Starts a master and, with wait, returns once its ready file is
        written or it has exited (see Master.wait_ready's or_exit)."""
        m = Master(self, args, name=name, stdin=stdin, env_vars=env,
                   port=port, expect=expect)
        if wait:
            m.wait_ready(or_exit=True)
        return m

    def worker(self, control, *args, name=None, env=None, once=True,
               expect=0):
        name = name or "worker%d" % len([p for p in self.procs
                                         if p.name.startswith("worker")])
        argv = [os.path.join(BIN, "fanout-worker"), "--master",
                control] + (["--once"] if once else []) + list(args)
        return self.spawn(name, argv, env=env, expect=expect)

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

    def stop(self):
        """Kills every child still running (no failure: the harness sent
        the signal) and closes the logs."""
        for p in self.procs:
            p.kill()

    def unexpected_exits(self):
        """An error naming each child that exited unexpectedly, with the
        tail of its log; None when there is none. Call after stop()."""
        bad = [p for p in self.procs if not p.exited_as_expected()]
        if not bad:
            return None
        return "\n".join("child %s (%s): %s; its log ends:\n%s" % (
            p.name, " ".join(p.argv[:1]), p.describe_exit(),
            "\n".join(p.text().splitlines()[-40:])) for p in bad)

    def teardown(self, failed):
        self.stop()
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


def vm_hwm_kib(pid):
    """A live process's peak RSS in KiB (/proc/PID/status VmHWM)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM for pid %d" % pid)


def committed_results(out_dir):
    """The records a crash keeps: results.jsonl up to the size the state
    store has committed (lines past it are cut on restart and their items
    run again, by design: docs/internals/commit.md)."""
    import sqlite3
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(out_dir, "state.db"),
                         uri=True)
    try:
        row = db.execute("SELECT v FROM meta WHERE k='results_size'").fetchone()
    finally:
        db.close()
    size = int(row[0]) if row else 0
    with open(os.path.join(out_dir, "results.jsonl"), "rb") as f:
        text = f.read(size).decode()
    return [json.loads(x) for x in text.splitlines() if x.strip()]


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


def count_lines(path):
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except OSError:
        return 0


def run_job(env, *args, workers=1, worker_args=(), seconds=60, expect=0,
            out=None, name="master"):
    """Runs a whole job: a master with args and --out (env.path("out")
    unless given), then `workers` --once workers; waits for the master
    to exit with a status in expect, and the workers with 0. Returns
    (status, out). A job that needs no calls (every line invalid) takes
    workers=0: it may finish before a worker could join, and a --once
    worker then waits for ever."""
    out = out or env.path("out")
    m = env.master("--out", out, *args, name=name, expect=expect)
    ws = []
    if m.proc.alive():
        ws = [env.worker(m.control, *worker_args) for _ in range(workers)]
    # Fail fast when every worker has died (a crash would otherwise leave
    # the master waiting for a lease to expire, then for ever).
    wait_for(lambda: not m.proc.alive() or
             (ws and not any(w.alive() for w in ws)), seconds,
             "the master to finish")
    if m.proc.alive() and any(w.p.returncode != 0 for w in ws):
        raise AssertionError("every worker exited, some with an error, "
                             "before the job finished:\n%s" % "\n".join(
                                 w.text()[-2000:] for w in ws))
    # Workers leave on DONE, a moment before the master exits.
    status = m.proc.wait(30, expect=expect)
    for w in ws:
        w.wait(30, expect=0)
    return status, out


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port_triple(tries=200):
    """A port P with P, P+1 and P+2 free on 127.0.0.1, below the kernel's
    ephemeral range, so no outgoing connection can take one of them later
    (a test's port-0 sockets and connections all live above it)."""
    import random
    import socket
    top = _ephemeral_low() - 3
    rnd = random.Random()
    for _ in range(tries):
        p = rnd.randrange(max(1024, top - 12000), top)
        socks = []
        try:
            for q in (p, p + 1, p + 2):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind(("127.0.0.1", q))
            return p
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError("no three free ports below %d" % top)


class Job:
    """One fanout-master command line reading source, restartable with the
    same command: the first run binds port 0, and every restart binds the
    control port its ready file named, so separately started workers find
    the restarted master (they learn the work and result ports from the
    JOB message). extra: more master flags; master_env: its environment.

    The master binds work and result on control+1 and control+2 when given
    a port. Ports the kernel picks (port 0) come from the ephemeral range,
    where any outgoing connection (a worker reconnecting while the master
    is down) may take control+1 or control+2 before the restart binds them.
    So a Job picks its three ports below that range (free_port_triple)."""

    def __init__(self, env, source, url, *extra, name="", master_env=None):
        self.env, self.name = env, name
        self.port = 0          # the control port, once the first run is up
        self.control = None    # its endpoint, for workers and fanout-ctl
        self.out = env.path(name + "out")
        self.master_env = master_env
        self.args = ["--input", source, "--out", self.out, "--url", url,
                     "--lease", "2s", "--heartbeat", "500ms"] + list(extra)
        self.runs = 0
        self.run = None        # the Master of the latest run
        self.master = None     # its Proc
        self.n = None          # items, when made by items_job()

    def start(self, expect=0):
        """Starts the next run (expect: its expected exit status); returns
        its Proc once it is ready."""
        self.runs += 1
        if not self.port:
            self.port = free_port_triple()
        self.run = Master(self.env, self.args, name="%smaster%d" % (
            self.name, self.runs), env_vars=self.master_env, port=self.port,
            expect=expect)
        self.master = self.run.proc
        ep = self.run.wait_ready()
        if self.control is None:
            self.control = ep["control"]
        assert ep["control"] == self.control, (ep, self.control)
        return self.master

    def ids(self):
        return ["item-%d" % i for i in range(1, self.n + 1)]

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

    def finish(self, seconds, expect=None):
        """The master's exit status, waiting at most seconds (with expect,
        failing on another one, as Proc.wait)."""
        return self.master.wait(seconds, expect=expect)


def items_job(env, server, n, *extra, url_path="/items", name="",
              master_env=None):
    """A Job over n generated items (item-1 ... item-n) calling
    server.base + url_path + "/{id}"."""
    items = env.write_items(name + "items.jsonl", n)
    job = Job(env, items, server.base + url_path + "/{id}", *extra,
              name=name, master_env=master_env)
    job.n = n
    return job


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


def keygen(env, name):
    """A fanout-keygen key pair in env's keys/; (secret file, .pub)."""
    p = subprocess.run([os.path.join(BIN, "fanout-keygen"),
                        env.path("keys", name)], capture_output=True,
                       text=True)
    assert p.returncode == 0, p.stderr
    return env.path("keys", name + ".key"), env.path("keys", name + ".pub")


def ctl(control, *args, expect=0):
    """Runs fanout-ctl against control; fails on another exit status than
    expect. Returns the CompletedProcess."""
    p = subprocess.run([os.path.join(BIN, "fanout-ctl"), "--master",
                        control] + list(args), capture_output=True,
                       text=True, timeout=30 * SCALE)
    assert p.returncode == expect, (p.returncode, p.stdout, p.stderr)
    return p


def prom_samples(text):
    """Prometheus text exposition to {series: value}; every sample line
    must parse."""
    vals = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, value = line.rsplit(" ", 1)
        vals[name] = float(value)
    return vals


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
        exits = None
        try:
            try:
                fn(env)
            finally:
                env.stop()
                exits = env.unexpected_exits()
            bad = env.sanitizer_reports()
            assert not bad, "sanitizer reports in: %s" % bad
            if exits:
                raise AssertionError("unexpected exits:\n%s" % exits)
            ok = True
        except Exception:
            traceback.print_exc()
            if exits and not traceback.format_exc().rstrip().endswith(
                    exits.rstrip()):
                print("unexpected exits as well:\n%s" % exits)
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
