"""Jobs on the namespace network (netlab.py): the test API server on one
host, the master on another, workers anywhere, fanout-ctl from the
master's host; the checks every scenario shares; and main(), which runs
the test_* functions of a file, each in a fresh network that is always torn
down, and says in one line why it cannot run where it cannot (exit 0, or 1
with FANOUT_REQUIRE_CLUSTER=1)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback

import netlab
from netlab import h

REPO = os.path.abspath(os.path.join(netlab.HERE, "..", ".."))
MASTER_PORT = 5555           # fixed: each run has its own namespaces
API_PORT = 8080
DELAYPROXY = os.path.join(netlab.HERE, "delayproxy.py")


def binpath(name):
    return os.path.join(h.BIN, name)


def read_records(out, partial=False):
    """results.jsonl as a list of dicts; with partial, a line still being
    written is skipped instead of failing."""
    path = os.path.join(out, "results.jsonl")
    if partial:
        return h.whole_lines(h._read(path) or "")
    return h.results(out)


class ApiServer:
    """fanout-testserver on its own host."""

    def __init__(self, lab, host, *args, name="api", port=API_PORT):
        self.lab, self.host = lab, host
        env = lab.env
        self.logpath = lab.fast_path(name + "-requests.jsonl")
        portfile = env.path(name + ".port")
        for p in (portfile, self.logpath):
            if os.path.exists(p):
                os.unlink(p)
        self.proc = lab.spawn(host, name, [
            binpath("fanout-testserver"), "--bind", host.ip, "--port",
            str(port), "--port-file", portfile, "--log", self.logpath]
            + list(args))
        h.wait_for(lambda: h._read(portfile) or not self.proc.alive(), 15,
                   "the test server's port file")
        assert self.proc.alive(), self.proc.text()[-2000:]
        self.base = "http://%s:%d" % (host.ip, port)

    def stats(self):
        return json.loads(self.lab.http_get(self.host, self.base + "/stats"))

    def requests(self):
        return h.whole_lines(h._read(self.logpath) or "")


class Job:
    """A master on master_host with its job; workers joined on any host."""

    def __init__(self, lab, master_host, server, n, *extra, name="job",
                 log_level="info"):
        self.lab, self.env, self.server, self.n = lab, lab.env, server, n
        self.host, self.name = master_host, name
        self.control = "tcp://%s:%d" % (master_host.ip, MASTER_PORT)
        self.items = self.env.write_items(name + "-items.jsonl", n)
        self.out = self.env.path(name + "-out")
        self.args = ["--input", self.items, "--out", self.out, "--url",
                     server.base + "/items/{id}", "--bind", self.control,
                     "--insecure", "--lease", "2s", "--heartbeat", "500ms",
                     "--progress", "plain", "--log-level", log_level] + list(
                         extra)
        self.master = None
        self.workers = {}             # id -> Proc
        self.killed = set()           # worker ids killed on purpose

    def start(self):
        ready = self.env.path(self.name + "-master.ready")
        if os.path.exists(ready):
            os.unlink(ready)
        self.master = self.lab.spawn(
            self.host, self.name + "-master",
            [binpath("fanout-master"), "--ready-file", ready] + self.args,
            wrap=True)
        h.wait_for(lambda: os.path.exists(ready) or not self.master.alive(),
                   15, "the master's ready file")
        assert self.master.alive(), self.master.text()[-3000:]
        return self

    def worker(self, host, wid, *args, master=None):
        p = self.lab.spawn(host, "%s-worker-%s" % (self.name, wid), [
            binpath("fanout-worker"), "--master", master or self.control,
            "--id", wid, "--once"] + list(args), wrap=True)
        self.workers[wid] = p
        return p

    def status(self):
        r = self.lab.run(self.host, [binpath("fanout-ctl"), "--master",
                                     self.control, "status", "--json"])
        return json.loads(r.stdout)

    def worker_ids(self):
        """Worker ids in the master's status (None if it did not answer)."""
        try:
            return {w["id"]: w for w in self.status()["workers"]}
        except (AssertionError, ValueError, KeyError):
            return None

    def count(self):
        try:
            with open(os.path.join(self.out, "results.jsonl"), "rb") as f:
                return f.read().count(b"\n")
        except OSError:
            return 0

    def records(self, partial=True):
        return read_records(self.out, partial=partial)

    def ids(self):
        return ["item-%d" % i for i in range(1, self.n + 1)]

    def wait_count(self, k, seconds=120):
        h.wait_for(lambda: self.count() >= k or not self.master.alive(),
                   seconds, "%d results" % k)
        assert self.master.alive(), ("master exited early:\n" +
                                     self.master.text()[-3000:])

    def finish(self, seconds=180):
        """Waits for the master (exit 0) and the workers still alive (exit
        0), checks every id once, and returns the summary."""
        st = self.master.wait(seconds)
        assert st == 0, "master exit %s:\n%s" % (st,
                                                  self.master.text()[-3000:])
        for wid, p in self.workers.items():
            if wid in self.killed:
                continue
            st = p.wait(30)
            assert st == 0, "worker %s exit %s:\n%s" % (wid, st,
                                                         p.text()[-2000:])
        h.assert_exactly_once(h.results(self.out), self.ids())
        return h.summary(self.out)


def mark(env, what):
    """Notes an event of the scenario (wall time) in timeline.jsonl in the
    test directory, for reading the logs afterwards; returns the time."""
    t = time.time()
    with open(env.path("timeline.jsonl"), "a") as f:
        f.write(json.dumps({"wall": t, "event": what}) + "\n")
    return t


def late_results(job):
    """RESULTs the master ignored because the item was already recorded
    (counted from its log, which needs log_level="debug": result.duplicate
    while the item's batch is open, result.stale after): (duplicate,
    stale)."""
    t = job.master.text()
    return t.count("result.duplicate:"), t.count("result.stale:")


repeats = h.repeats


def repeats_by_time(server, up):
    """Repeated calls (2nd and later for an id) split by when they reached
    the API: before `up`, in the second after it, and later."""
    seen, out = set(), {"before": 0, "first_second": 0, "later": 0}
    for r in sorted(server.requests(), key=lambda r: r["wall"]):
        if r["path"] in seen:
            out["before" if r["wall"] < up else "first_second"
                if r["wall"] < up + 1 else "later"] += 1
        seen.add(r["path"])
    return out


def achieved_rate(server):
    """Accepted calls per second from the first to the last arrival."""
    t = sorted(r["t"] for r in server.requests()
               if r["status"] not in (0, 429))
    if len(t) < 2 or t[-1] <= t[0]:
        return 0.0
    return (len(t) - 1) / (t[-1] - t[0])


def check_limit(server, limit, marks=None, st=None):
    """Zero 429s and at most `limit` accepted arrivals in any second, by
    the strict server's own count. Returns its stats. marks (name -> wall
    time) place each 429 in the scenario's timeline in the message."""
    st = st or server.stats()
    n429 = st["status"].get("429", 0)
    if n429:
        raise AssertionError("%d responses were 429 (max_in_1s %d, limit "
                             "%d):\n%s" % (n429, st["max_in_1s"], limit,
                                           explain_429s(server, marks or {})))
    assert st["max_in_1s"] <= limit, "max_in_1s %d > %d" % (st["max_in_1s"],
                                                             limit)
    return st


def explain_429s(server, marks):
    """For each 429: when, relative to the scenario's marks, and how many
    arrivals came within the same 2 ms (a burst of calls held up in the
    network arrives at once)."""
    reqs = server.requests()
    lines = []
    for r in reqs:
        if r["status"] != 429:
            continue
        burst = sum(1 for q in reqs if abs(q["wall"] - r["wall"]) <= 0.002)
        rel = ", ".join("%+.3f s from %s" % (r["wall"] - w, k)
                        for k, w in sorted(marks.items()))
        lines.append("  429 for %s at %s; %d arrivals within 2 ms"
                     % (r["path"], rel or "t=%.3f" % r["t"], burst))
    return "\n".join(lines[:20])


# ---- running ------------------------------------------------------------

def _ensure_tools():
    """As root, installs the Debian packages the lab needs when they are
    missing (deploy/install-deps.sh, from Debian's archive)."""
    need = [pkg for tool, pkg in ((netlab.IP, "iproute2"),
                                  (netlab.NFT, "nftables"))
            if not os.path.exists(tool)]
    if not need:
        return None
    r = subprocess.run([os.path.join(REPO, "deploy", "install-deps.sh")]
                       + need, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=900)
    netlab.IP = shutil.which("ip") or netlab.IP
    netlab.NFT = shutil.which("nft") or netlab.NFT
    missing = [p for p, t in (("iproute2", netlab.IP),
                              ("nftables", netlab.NFT))
               if not os.path.exists(t)]
    if r.returncode != 0 or missing:
        last = (r.stdout.strip().splitlines() or ["?"])[-1]
        return "needs %s and could not install it (%s)" % (
            " ".join(missing or need), last)
    return None


def why_not():
    """None when the cluster tests can run here, else why not."""
    for b in ("fanout-master", "fanout-worker", "fanout-ctl",
              "fanout-testserver"):
        if not os.access(binpath(b), os.X_OK):
            return "%s is not built (make build)" % binpath(b)
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("unshare", "nice"):
        if not shutil.which(tool):
            return "needs %s (util-linux, coreutils)" % tool
    return _ensure_tools() or netlab.probe()


def _raise_exit(sig, frame):
    raise SystemExit(128 + sig)


_SIGS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


def skip_or_fail(reason, what="cluster"):
    """One line; exit 0, or 1 when FANOUT_REQUIRE_CLUSTER=1."""
    if os.environ.get("FANOUT_REQUIRE_CLUSTER") == "1":
        print("%s: FAILED: cannot run: %s (FANOUT_REQUIRE_CLUSTER=1)"
              % (what, reason), flush=True)
        sys.exit(1)
    print("%s: skipped: %s" % (what, reason), flush=True)
    sys.exit(0)


def run_in_lab(name, fn):
    """Runs fn(env, lab) in a fresh network; always tears it down. Returns
    True when fn passed."""
    env = h.Env("cluster-" + name)
    lab = netlab.Lab(env)
    ok = False
    t0 = time.monotonic()
    try:
        lab.start()
        fn(env, lab)
        bad = env.sanitizer_reports()
        assert not bad, "sanitizer reports in: %s" % bad
        ok = True
    except Exception:
        traceback.print_exc()
    finally:
        # A second signal must not cut the teardown short.
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGS)
        try:
            lab.teardown()
        except Exception:
            traceback.print_exc()
            ok = False
        env.teardown(not ok or os.environ.get("FANOUT_CLUSTER_KEEP") == "1")
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGS)
    print("%s %s (%.1fs)" % ("PASS" if ok else "FAIL", name,
                            time.monotonic() - t0), flush=True)
    return ok


def prepare(what="cluster"):
    """Signal handlers, leftovers of crashed runs, and the can-we check."""
    for s in _SIGS:
        signal.signal(s, _raise_exit)
    if os.geteuid() == 0 and os.path.exists(netlab.IP):
        gone = netlab.remove_stale()
        if gone:
            print("%s: removed leftovers of a crashed run: %s"
                  % (what, " ".join(gone)), flush=True)
    reason = why_not()
    if reason:
        skip_or_fail(reason, what)


def main(module_globals):
    """Runs every test_* function, or those named on the command line
    (which may also name probe_* functions: bug reproductions that are not
    part of the suite)."""
    only = sys.argv[1:]
    tests = [(n, f) for n, f in sorted(module_globals.items())
             if callable(f) and (n.startswith("test_") or
                                 (n.startswith("probe_") and n in only))]
    unknown = [o for o in only if o not in dict(tests)]
    if unknown:
        print("no such scenario: %s" % " ".join(unknown))
        sys.exit(2)
    prepare()
    t0 = time.monotonic()
    passed = failed = 0
    for name, fn in tests:
        if only and name not in only:
            continue
        if run_in_lab(name, fn):
            passed += 1
        else:
            failed += 1
    print("%d passed, %d failed (%.1fs)" % (passed, failed,
                                            time.monotonic() - t0))
    sys.exit(0 if failed == 0 else 1)
