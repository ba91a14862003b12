"""A fault soak that keeps every promise at once (issue 18).

    python3 tests/soak/soak.py [--seed N] [--seconds S] [--source KIND]
    make soak [SEED=N] [SOAK_SECONDS=S]

On the namespace network of tests/cluster (netlab.py, clusterlib.py):

    host m     fanout-master, restarted by the soak whenever it dies, as a
               supervisor would; its --out is a small tmpfs of its own
    host api   fanout-testserver: strict 100/s, 100 ms latency, 5% 5xx
    host q     redis-server or Azurite, when the source is a queue
    w1, w2     one worker each; w3: two workers (4 workers on 3 hosts),
               restarted by the soak when killed

The source (a JSONL file, a Redis stream or an Azure queue on Azurite) is
chosen from the seed. For --seconds the nemesis (nemesis.py) injects
faults at random moments drawn from the seed, one at a time; after each,
the soak waits for progress (a new record), then for the next moment.
Then the job runs to its end undisturbed, and the checker (checker.py)
reads the whole history: the outputs, the test server's request log, the
faults, the master's memory. The soak prints a short report (faults by
kind, items, repeated calls, worst window, time to recover after each
fault) and exits 0 only if every check passed. A failing run keeps its
directory (every process's log, the request log, history.json, the --out
copy) and says how to run the same seed again.
"""
import argparse
import datetime
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cluster"))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import clusterlib as c  # noqa: E402
import netlab  # noqa: E402
import queuelib  # noqa: E402
from netlab import h  # noqa: E402

import checker  # noqa: E402
import nemesis  # noqa: E402

# The soak's namespaces carry their own prefix, so a cluster test that
# starts meanwhile (netlab.remove_stale, which knows only "focl") never
# takes them for a crashed run's leftovers.
PREFIX = "fosk"

LIMIT = 100                  # the API's limit per WINDOW_S, strict
WINDOW_S = 1.0
LATENCY_MS = 100
FAIL_PCT = 5
MAX_IN_FLIGHT = 16
WORKER_CONCURRENCY = 8
LEASE_S = 2.0
# The README's advice for a lossy path (--rate-margin): cover the worst
# delay it adds, one TCP retransmission timeout and some.
RATE_MARGIN_MS = 300
RECOVERY_BOUND_S = 30.0
OUT_TMPFS = "64m"
MASTER_RESTART_S = 0.5       # the supervisor's pause before a restart
WORKER_RESTART_S = 2.0
QUEUE_PORT = {"redis": 6379, "azure": 10001}
SOURCES = ("file", "redis", "azure")
WORKERS = (("w1a", "w1"), ("w2a", "w2"), ("w3a", "w3"), ("w3b", "w3"))


def rfc3339(text):
    """Seconds since the epoch of "2026-12-05T10:00:01.433Z"; 0 if none."""
    if not text:
        return 0.0
    d = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
    return d.replace(tzinfo=datetime.timezone.utc).timestamp()


def log(msg):
    print("soak %s %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


class Cluster:
    """The hosts, the processes, and the supervisor that restarts the
    master and killed workers; the fault primitives the nemesis uses."""

    lease_s = LEASE_S
    master_host = "m"
    worker_hosts = ("w1", "w2", "w3")
    worker_specs = dict(WORKERS)

    def __init__(self, env, lab, seed, source, n_items):
        self.env, self.lab, self.seed = env, lab, seed
        self.source, self.n = source, n_items
        self.lock = threading.RLock()
        self.hosts = {}
        self.master = None            # the current master's Proc
        self.master_runs = 0
        self.lives = []               # {"pid", "start", "end", "status"}
        self.workers = {}             # wid -> Proc
        self.worker_runs = {}
        self.dead_workers = {}        # wid -> wall time it was found dead
        self.expected_deaths = set()  # Procs we killed
        self.problems = []            # unexpected exits, in words
        self.finished = None          # wall time the job finished
        self.final_status = None
        self.stopping = False
        self.first_seen = {}          # id -> wall time first seen
        self.progress = []            # (wall seen, the call's finished_at)
        self.rss = []                 # (wall, pid, KiB)
        self.res_off = 0
        self.res_buf = b""
        self.queue_proc = None
        self.server_dead = False
        self.filler = None
        self.disk_freed = 0.0         # wall time; inf while the disk is full

    # ---- building -------------------------------------------------------

    def build(self):
        for name in ("m", "api", "w1", "w2", "w3") + (
                ("q",) if self.source != "file" else ()):
            self.hosts[name] = self.lab.add_host(name)
        self.out = self.env.path("out")
        os.makedirs(self.out)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=" + OUT_TMPFS,
                        "fanout-soak", self.out], check=True, timeout=30)
        self.server = c.ApiServer(
            self.lab, self.hosts["api"], "--rate", "%d/s" % LIMIT,
            "--latency-ms", str(LATENCY_MS), "--fail-pct", str(FAIL_PCT),
            "--seed", str(self.seed % 2**31))
        self.input, self.master_env = self._source()
        m = self.hosts["m"]
        self.control = "tcp://%s:%d" % (m.ip, c.MASTER_PORT)
        self.ready = self.env.path("master.ready")
        self.master_argv = [
            c.binpath("fanout-master"), "--ready-file", self.ready,
            "--input", self.input, "--out", self.out,
            "--url", self.server.base + "/items/{id}",
            "--bind", self.control, "--insecure",
            "--lease", "%gs" % LEASE_S, "--heartbeat", "500ms",
            "--rate", "%d/s" % LIMIT, "--rate-margin", "%dms" % RATE_MARGIN_MS,
            "--max-in-flight", str(MAX_IN_FLIGHT), "--max-attempts", "10",
            "--progress", "plain", "--log-level", "info"]
        self.start_master()
        for wid in self.worker_specs:
            self.start_worker(wid)

    def _source(self):
        """(--input, extra master environment) for the chosen source;
        fills the queue with item-1 .. item-N first."""
        if self.source == "file":
            return self.env.write_items("items.jsonl", self.n), None
        q = self.hosts["q"]
        port = QUEUE_PORT[self.source]
        self.start_queue()
        if self.source == "redis":
            cmds = [["XADD", "soak", "*", "id", "item-%d" % i, "n", str(i)]
                    for i in range(1, self.n + 1)]
            data = b"".join(queuelib.Resp.encode(x) for x in cmds)
            r = subprocess.run(self.lab.argv(q, [
                "redis-cli", "-h", q.ip, "-p", str(port), "--pipe"]),
                input=data, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                timeout=120)
            assert r.returncode == 0 and b"errors: 0" in r.stdout, r.stdout
            return ("redis://%s:%d/soak?group=fanout&consumer=soak-master"
                    "&lease=10s" % (q.ip, port)), None
        endpoint = "http://%s:%d/%s" % (q.ip, port, queuelib.DEV_ACCOUNT)
        conn = ("DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;"
                "QueueEndpoint=%s;" % (queuelib.DEV_ACCOUNT, queuelib.DEV_KEY,
                                       endpoint))
        # enqueue.js sends about 100 messages a second; a few at once.
        parts, sent = 4, 0
        step = -(-self.n // parts)
        ps = []
        for i in range(parts):
            start, count = 1 + i * step, min(step, self.n - i * step)
            ps.append(subprocess.Popen(self.lab.argv(q, [
                "node", os.path.join(queuelib.QUEUES_DIR, "enqueue.js"),
                "--conn", conn, "--queue", "soak", "--count", str(count),
                "--start", str(start), "--create"]),
                cwd=queuelib.QUEUES_DIR, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True))
        for p in ps:
            out, err = p.communicate(timeout=900)
            assert p.returncode == 0, err[-2000:]
            sent += json.loads(out)["sent"]
        assert sent == self.n, (sent, self.n)
        return ("azure-queue://%s/soak?endpoint=%s"
                % (queuelib.DEV_ACCOUNT, endpoint),
                {"AZURE_STORAGE_CONNECTION_STRING": conn})

    def start_queue(self):
        """Starts (or restarts, on the same port and data) the queue
        server on host q."""
        q = self.hosts["q"]
        port = QUEUE_PORT[self.source]
        data = self.env.path("queue-data")
        os.makedirs(data, exist_ok=True)
        if self.source == "redis":
            # Every write on disk before its reply (AOF, fsync always), so
            # a SIGKILL loses nothing acknowledged.
            argv = ["redis-server", "--port", str(port), "--bind", q.ip,
                    "--protected-mode", "no", "--save", "",
                    "--appendonly", "yes", "--appendfsync", "always",
                    "--dir", data]
            probe = ["redis-cli", "-h", q.ip, "-p", str(port), "ping"]
        else:
            queuelib.npm_ready()
            argv = [os.path.join(queuelib.NODE_MODULES, ".bin",
                                 "azurite-queue"), "--queueHost", q.ip,
                    "--queuePort", str(port), "--location", data,
                    "--skipApiVersionCheck", "--loose", "--disableTelemetry"]
            probe = [sys.executable, "-c",
                     "import socket; socket.create_connection(('%s', %d), 1)"
                     % (q.ip, port)]
        self.queue_proc = self.lab.spawn(q, "queue-%s" % self.source, argv)

        def up():
            if not self.queue_proc.alive():
                raise AssertionError("the queue server exited:\n"
                                     + self.queue_proc.text()[-2000:])
            r = subprocess.run(self.lab.argv(q, probe), timeout=30,
                               stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL)
            return r.returncode == 0 and (self.source != "redis"
                                          or b"PONG" in r.stdout)
        h.wait_for(up, 60, "the queue server", interval=0.2)

    def start_master(self):
        with self.lock:
            if os.path.exists(self.ready):
                os.unlink(self.ready)
            self.master_runs += 1
            name = "master-%d" % self.master_runs
            argv = self.lab.argv(self.hosts["m"], self.master_argv, wrap=True)
            p = self.env.spawn(name, argv, env=self.master_env)
            # 0: all ok, 1: finished with failed items; 3: a fatal runtime
            # error, which the supervisor restarts and the checker counts
            # as a problem (a full disk is not one: the master rides it
            # out).
            p.expect(0, 1, 3)
            self.hosts["m"].procs.append(p)
            self.master = p
            self.lives.append({"pid": p.pid, "start": time.time(),
                               "end": None, "status": None, "name": name})
        return p

    def start_worker(self, wid):
        with self.lock:
            self.worker_runs[wid] = self.worker_runs.get(wid, 0) + 1
            host = self.hosts[self.worker_specs[wid]]
            p = self.lab.spawn(host, "worker-%s-%d" % (
                wid, self.worker_runs[wid]), [
                c.binpath("fanout-worker"), "--master", self.control,
                "--id", wid, "--once", "--concurrency",
                str(WORKER_CONCURRENCY)], wrap=True)
            self.workers[wid] = p
            self.dead_workers.pop(wid, None)
        return p

    # ---- the supervisor and the monitor ---------------------------------

    def supervise(self):
        """Runs until stop(): restarts the master when it dies before the
        job has finished, and killed workers WORKER_RESTART_S after; polls
        results.jsonl and the master's memory."""
        next_rss = 0.0
        while not self.stopping:
            now = time.time()
            self.poll_results(now)
            if now >= next_rss:
                self.sample_rss(now)
                next_rss = now + 1.0
            if not self.server.proc.alive() and not self.server_dead:
                self.server_dead = True
                msg = "the test server died: %s" % (
                    self.server.proc.describe_exit())
                self.problems.append(msg)
                log(msg)
            with self.lock:
                self.check_master(now)
                self.check_workers(now)
            time.sleep(0.2)

    def check_master(self, now):
        p = self.master
        if p.alive() or self.finished:
            return
        st = p.p.returncode
        life = self.lives[-1]
        if life["end"] is None:
            life["end"], life["status"] = now, st
            killed = p in self.expected_deaths
            if st in (0, 1):
                self.poll_results(now)
                self.finished, self.final_status = now, st
                log("the master finished the job (exit %d)" % st)
                return
            if not killed:
                what = "exit %s" % st
                if st == 3:
                    what += ": " + " | ".join(
                        x for x in p.text().splitlines()[-3:])[-300:]
                log("the master died on its own (%s); restarting" % what)
                # A full disk included: the master rides it out (out.full).
                self.problems.append("master %s: %s" % (life["name"],
                                                        p.describe_exit()))
        if now - life["end"] >= MASTER_RESTART_S * min(
                8, 1 + self._recent_master_deaths(now)):
            self.start_master()

    def _recent_master_deaths(self, now):
        return sum(1 for x in self.lives if x["end"] and now - x["end"] < 30)

    def check_workers(self, now):
        for wid, p in list(self.workers.items()):
            if p.alive() or self.finished:
                continue
            if wid not in self.dead_workers:
                self.dead_workers[wid] = now
                if p not in self.expected_deaths:
                    self.problems.append("worker %s: %s" % (
                        p.name, p.describe_exit()))
                    log("worker %s died on its own: %s" % (
                        p.name, p.describe_exit()))
            elif now - self.dead_workers[wid] >= WORKER_RESTART_S:
                self.start_worker(wid)

    def poll_results(self, now):
        path = os.path.join(self.out, "results.jsonl")
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size < self.res_off:        # truncated by a restart
                    self.res_off, self.res_buf = 0, b""
                f.seek(self.res_off)
                data = f.read()
        except OSError:
            return
        self.res_off += len(data)
        buf = self.res_buf + data
        cut = buf.rfind(b"\n") + 1
        self.res_buf = buf[cut:]
        for line in buf[:cut].splitlines():
            try:
                rec = json.loads(line)
                k = rec["id"]
            except (ValueError, KeyError):
                continue
            if k not in self.first_seen:
                self.first_seen[k] = now
                self.progress.append((now, rfc3339(rec.get("finished_at"))))

    def sample_rss(self, now):
        p = self.master
        if p is None or not p.alive():
            return
        try:
            with open("/proc/%d/status" % p.pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        self.rss.append((now, p.pid, int(line.split()[1])))
        except OSError:
            pass

    def progress_after(self, t):
        """When the soak first saw a record of a call that ended after t
        (so made and committed after a fault that ended at t; records
        committed before a kill but read after it do not count), or the
        job's end."""
        for w, fin in self.progress:
            if w > t and fin > t:
                return w
        if self.finished and self.finished > t:
            return self.finished
        return None

    # ---- fault primitives (used by nemesis.Nemesis) ---------------------

    def _kill(self, p):
        self.expected_deaths.add(p)
        p.signal(signal.SIGKILL)

    def kill_master(self):
        with self.lock:
            p = self.master
            if not p.alive():
                return "the master was not running"
            self._kill(p)
        return "pid %d" % p.pid

    def kill_worker(self, wid):
        with self.lock:
            p = self.workers[wid]
            if not p.alive():
                return "%s was not running" % wid
            self._kill(p)
        return "%s pid %d" % (wid, p.pid)

    def kill_several(self, victims):
        with self.lock:
            ps = [self.master if v == "master" else self.workers[v]
                  for v in victims]
            for p in ps:
                self.expected_deaths.add(p)
            for p in ps:
                if p.alive():
                    p.p.send_signal(signal.SIGKILL)
                    p.sent.add(signal.SIGKILL)
        return " ".join(victims)

    def stop_worker(self, wid, seconds):
        with self.lock:
            p = self.workers[wid]
            if not p.alive():
                return "%s was not running" % wid
            p.signal(signal.SIGSTOP)
        time.sleep(seconds)
        p.signal(signal.SIGCONT)
        return "%s pid %d" % (wid, p.pid)

    def link(self, host, up):
        self.lab.link(self.hosts[host], up)

    def add_loss(self, host, pct):
        self.lab.add_loss(self.hosts[host], pct)

    def _nft(self, host, *args):
        return subprocess.run([netlab.IP, "netns", "exec", host.ns,
                               netlab.NFT] + list(args),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, timeout=30)

    def remove_loss(self, host):
        got = self.lab.loss_counters(self.hosts[host])
        r = self._nft(self.hosts[host], "delete", "table", "inet",
                      netlab.NFT_TABLE)
        assert r.returncode == 0, r.stderr
        return "dropped %d in, %d out" % got

    def api(self, up):
        """Takes the API down (every TCP packet to its port answered with
        a reset: new connections are refused, open ones break) or up."""
        host = self.hosts["api"]
        if up:
            r = self._nft(host, "delete", "table", "inet", "fosoak_api")
        else:
            rules = ("table inet fosoak_api { chain in { type filter hook "
                     "input priority 0; policy accept; tcp dport %d reject "
                     "with tcp reset; }; }" % c.API_PORT)
            r = subprocess.run([netlab.IP, "netns", "exec", host.ns,
                                netlab.NFT, "-f", "-"], input=rules,
                               text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=30)
        assert r.returncode == 0, r.stderr

    def fill_disk(self):
        """Writes a filler file on the --out tmpfs until ENOSPC."""
        self.disk_freed = float("inf")
        self.filler = os.path.join(self.out, "soak-filler")
        n = 0
        with open(self.filler, "wb") as f:
            chunk = b"\0" * (1 << 20)
            try:
                while True:
                    n += os.write(f.fileno(), chunk)
            except OSError:
                pass
        st = os.statvfs(self.out)
        return "filled %d MiB, %d KiB left" % (n >> 20,
                                               st.f_bavail * st.f_frsize >> 10)

    def free_disk(self):
        if self.filler:
            os.unlink(self.filler)
            self.filler = None
        self.disk_freed = time.time()

    def restart_queue(self):
        """Redis: SIGKILL (its AOF is fsynced per write); Azurite: SIGTERM
        (it saves its state on exit, not per write). Then the same server
        on the same port and data."""
        p = self.queue_proc
        sig = signal.SIGKILL if self.source == "redis" else signal.SIGTERM
        p.signal(sig)
        try:
            p.p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
        self.start_queue()
        return "%s by %s" % (self.source, signal.Signals(sig).name)

    # ---- the end --------------------------------------------------------

    def stop(self):
        self.stopping = True


def choose_source(seed, forced):
    if forced and forced != "auto":
        return forced
    return SOURCES[random.Random(seed).randrange(len(SOURCES))]


def run(env, lab, args, seed, report):
    """The soak itself: build, attack, finish, check. Returns the
    checker's verdicts."""
    source = choose_source(seed, args.source)
    rng = random.Random(seed)
    # About what the cluster gets through in the attack, so the job ends
    # soon after it (faults and the rate margin slow it).
    n = args.items or max(500, int(args.seconds * LIMIT * 0.7))
    kinds = set(nemesis.KINDS) - ({"queue_restart"} if source == "file"
                                  else set())
    log("seed %d: source %s, %d items, %g s of faults, kinds %s"
        % (seed, source, n, args.seconds, " ".join(sorted(kinds))))
    cl = Cluster(env, lab, seed, source, n)
    cl.build()
    sup = threading.Thread(target=cl.supervise, daemon=True)
    sup.start()
    nem = nemesis.Nemesis(rng.randrange(2**63), cl, kinds)
    t0 = time.time()
    try:
        h.wait_for(lambda: cl.first_seen or cl.finished, 60,
                   "the first record", interval=0.2)
        while time.time() - t0 < args.seconds and not cl.finished:
            pause = nem.pause()
            end = time.time() + pause
            while time.time() < end and not cl.finished:
                time.sleep(0.1)
            if cl.finished or time.time() - t0 >= args.seconds:
                break
            f = nem.draw()
            log("fault %s" % f.describe())
            nem.inject(f)
            bound = time.time() + RECOVERY_BOUND_S * 2
            while time.time() < bound:
                f.recovered = cl.progress_after(f.end)
                if f.recovered:
                    break
                time.sleep(0.1)
            log("  healed after %.1f s%s; progress %s" % (
                f.end - f.start, " (%s)" % f.note if f.note else "",
                "after %.1f s" % (f.recovered - f.end) if f.recovered
                else "NOT SEEN"))
        log("faults over after %.0f s (%d records); the job runs to its end"
            % (time.time() - t0, len(cl.first_seen)))
        left = n - len(cl.first_seen)
        h.wait_for(lambda: cl.finished, 120 + 3 * left / LIMIT,
                   "the job to finish", interval=0.5)
        for wid, p in cl.workers.items():
            try:
                p.p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
    finally:
        cl.stop()
        sup.join(10)
        for p in list(env.procs):
            if p.alive():
                p.kill()
    for p in env.procs:
        if not p.exited_as_expected() and p not in cl.expected_deaths:
            msg = "%s: %s" % (p.name, p.describe_exit())
            if msg not in cl.problems and not p.name.startswith("queue"):
                cl.problems.append(msg)
    bad = env.sanitizer_reports()
    cl.problems += ["sanitizer report in %s" % b for b in bad]
    history = {
        "seed": seed, "source": source, "seconds": args.seconds,
        "ids": ["item-%d" % i for i in range(1, n + 1)],
        "records": h.whole_lines(h._read(os.path.join(cl.out,
                                                      "results.jsonl")) or ""),
        "first_seen": cl.first_seen, "requests": cl.server.requests(),
        "faults": [f.to_dict() for f in nem.faults], "rss": cl.rss,
        "lives": cl.lives, "process_problems": cl.problems,
        "master_exits": master_exits(cl),
        "final_status": cl.final_status,
        "worker_runs": cl.worker_runs,
        "params": {"limit": LIMIT, "window_s": WINDOW_S,
                   "latency_s": LATENCY_MS / 1000.0,
                   "max_in_flight": MAX_IN_FLIGHT,
                   "recovery_bound_s": RECOVERY_BOUND_S},
    }
    save_out(cl)
    with open(env.path("history.json"), "w") as f:
        json.dump(history, f)
    chk = checker.Checker(history)
    verdicts = chk.check()
    write_report(report, history, chk.figures, verdicts, time.time() - t0)
    return verdicts


def master_exits(cl):
    """{how: count} over the master's lives but the last: killed by the
    nemesis, or exited on its own with a status."""
    out = {}
    for life, p in zip(cl.lives, [p for p in cl.env.procs
                                  if p.name.startswith("master-")]):
        if life["end"] is None or life is cl.lives[-1]:
            continue
        how = ("killed" if p in cl.expected_deaths
               else "exit %s" % life["status"])
        out[how] = out.get(how, 0) + 1
    return out


def save_out(cl):
    """Copies --out off its tmpfs and unmounts it."""
    try:
        shutil.copytree(cl.out, cl.env.path("out-saved"))
    except (OSError, shutil.Error):
        pass
    subprocess.run(["umount", "-l", cl.out], timeout=30)


def write_report(report, hist, fig, verdicts, elapsed):
    kinds = {}
    for f in hist["faults"]:
        kinds[f["kind"]] = kinds.get(f["kind"], 0) + 1
    ww = fig.get("worst_window", {})
    lines = [
        "## seed %d: %s source, %g s of faults (%.0f s in all)"
        % (hist["seed"], hist["source"], hist["seconds"], elapsed),
        "",
        "- result: %s" % ("PASS" if all(v.ok for v in verdicts)
                          else "FAIL"),
        "- items: %d; records by status %s; master exit %s"
        % (fig.get("items", 0), fig.get("record_status"),
           hist["final_status"]),
        "- faults by kind (%d): %s" % (len(hist["faults"]), ", ".join(
            "%s %d" % kv for kv in sorted(kinds.items()))),
        "- master runs: %d (ends before the last: %s); worker runs %s" % (
            len(hist["lives"]), hist["master_exits"], hist["worker_runs"]),
        "- repeated calls: %d (by the fault that explains them: %s)"
        % (fig.get("repeats", 0), ", ".join(
            "%s %d of %d in flight" % (k, v["repeats"],
                                       v["in_flight_at_faults"])
            for k, v in fig.get("repeats_by_fault_kind", {}).items())),
        "- calls after commit delivered late by a delaying fault: %d"
        % fig.get("calls_after_commit_held_by_network", 0),
        "- worst window (%gs): %d outside delaying faults (limit %d), %d "
        "during them (bound %d); 429s: %s"
        % (ww.get("window_s", 0), ww.get("outside_delaying_faults", 0),
           ww.get("limit", 0), ww.get("during_delaying_faults", 0),
           ww.get("bound_during", 0), fig.get("429s")),
        "- master memory: %s" % fig.get("memory"),
        "- time to recover after each fault (s): %s" % ", ".join(
            "#%d %s %.1f" % x for x in fig.get("recovery_s", [])),
        "",
        "checks:",
    ] + ["    %r" % v for v in verdicts]
    text = "\n".join(lines) + "\n"
    print(text, flush=True)
    if report:
        with open(report, "a") as f:
            f.write(text + "\n")


def remove_stale():
    """Namespaces and /dev/shm files of earlier soaks that are gone."""
    def alive(pid):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                return b"soak" in f.read()
        except OSError:
            return False
    for ns in netlab.list_namespaces():
        if ns.startswith(PREFIX):
            pid = ns[len(PREFIX):].split("-", 1)[0]
            if pid.isdigit() and not alive(int(pid)):
                netlab.destroy_namespace(ns)
    for name in os.listdir(netlab.SHM):
        if name.startswith(PREFIX):
            pid = name[len(PREFIX):].split("-", 1)[0]
            if pid.isdigit() and not alive(int(pid)):
                shutil.rmtree(os.path.join(netlab.SHM, name),
                              ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--seconds", type=float, default=float(
        os.environ.get("SOAK_SECONDS", "600")))
    ap.add_argument("--source", choices=SOURCES + ("auto",), default="auto")
    ap.add_argument("--items", type=int, default=0,
                    help="items in the job (default: from --seconds)")
    ap.add_argument("--report", default=os.environ.get("SOAK_REPORT"),
                    help="append the report to this file too")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom(
    ).randrange(1, 2**31)
    print("soak: seed %d (reproduce: make soak SEED=%d SOAK_SECONDS=%g)"
          % (seed, seed, args.seconds), flush=True)
    c.prepare("soak")
    netlab.PREFIX = PREFIX
    remove_stale()
    env = h.Env("soak-%d" % seed)
    lab = netlab.Lab(env)
    ok = False
    try:
        lab.start()
        verdicts = run(env, lab, args, seed, args.report)
        ok = all(v.ok for v in verdicts)
    except Exception:
        import traceback
        traceback.print_exc()
    finally:
        signal.pthread_sigmask(signal.SIG_BLOCK, c._SIGS)
        try:
            out = env.path("out")
            if os.path.ismount(out):
                subprocess.run(["umount", "-l", out], timeout=30)
            lab.teardown()
        except Exception:
            import traceback
            traceback.print_exc()
            ok = False
        env.teardown(not ok or os.environ.get("FANOUT_CLUSTER_KEEP") == "1")
        signal.pthread_sigmask(signal.SIG_UNBLOCK, c._SIGS)
    print("soak: %s, seed %d%s" % (
        "PASS" if ok else "FAIL", seed, "" if ok else
        " (reproduce: make soak SEED=%d SOAK_SECONDS=%g)" % (seed,
                                                           args.seconds)))
    print("%d passed, %d failed" % (1 if ok else 0, 0 if ok else 1))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
