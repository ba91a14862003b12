"""Message-queue fixtures for the queue-source tests (test_queues.py): a
Redis server and Azurite (Azure Storage's emulator) started as children of
the test on free loopback ports, so Env.teardown kills them with the rest.

- Redis(env): redis-server (Debian's redis-server package) with persistence
  off and its files in the test directory, and a small RESP client over a
  socket (no Python packages beyond the standard library).
- Azurite(env): tests/queues/node_modules/.bin/azurite-queue, installed from
  tests/queues/package-lock.json by npm_ready(); enqueue() and qstat() run
  tests/queues/enqueue.js and qstat.js (Azure's JavaScript SDK).
- QueueJob: harness.Job (a fanout-master command line restartable on its
  first run's ports, with extra environment for Azure credentials) reading
  a queue.
"""
import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.parse

import harness as h

QUEUES_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..",
                                          "queues"))
NODE_MODULES = os.path.join(QUEUES_DIR, "node_modules")
LOCKFILE = os.path.join(QUEUES_DIR, "package-lock.json")
# npm writes this when it has installed node_modules from the lockfile.
INSTALLED_MARK = os.path.join(NODE_MODULES, ".package-lock.json")

# Azurite's well-known development account (public, documented by
# Microsoft; it only ever opens the local emulator).
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
           "K1SZFPTOtr/KBHBeksoGMGw==")


def free_port():
    """A port free on 127.0.0.1 right now (the kernel's choice)."""
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def _mtime(path):
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


_npm_checked = False


def npm_ready():
    """Installs tests/queues/node_modules with `npm ci` when it is missing or
    older than package-lock.json; does nothing otherwise. Fails with a
    message saying what to install when node or npm is missing."""
    global _npm_checked
    if _npm_checked:
        return
    for tool in ("node", "npm"):
        if not _which(tool):
            raise AssertionError(
                "the Azure Queue tests need Node.js and npm, and '%s' is not "
                "on PATH: run deploy/install-deps.sh as root (it installs "
                "Debian's nodejs and npm), or apt-get install nodejs npm"
                % tool)
    mark, lock = _mtime(INSTALLED_MARK), _mtime(LOCKFILE)
    assert lock is not None, "missing %s" % LOCKFILE
    if (mark is None or mark < lock or
            not os.path.exists(os.path.join(NODE_MODULES, ".bin",
                                            "azurite-queue"))):
        fd, log = tempfile.mkstemp(prefix="fanout-npm-ci-", suffix=".log")
        with os.fdopen(fd, "wb") as f:
            try:
                r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"],
                                   cwd=QUEUES_DIR, stdout=f, stderr=f,
                                   stdin=subprocess.DEVNULL,
                                   timeout=240 * h.SCALE)
                status = r.returncode
            except subprocess.TimeoutExpired:
                status = "timeout after %.0fs" % (240 * h.SCALE)
        text = h._read(log) or ""
        os.unlink(log)
        if status != 0:
            raise AssertionError(
                "`npm ci` in %s failed (%s); it needs the npm registry. "
                "Last lines:\n%s" % (QUEUES_DIR, status,
                                     "\n".join(text.splitlines()[-20:])))
    _npm_checked = True


def _which(tool):
    for d in os.environ.get("PATH", "").split(os.pathsep):
        p = os.path.join(d, tool)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


# ----------------------------------------------------------------- Redis

class RedisError(Exception):
    """An error reply (-ERR ...) from the server."""


class Resp:
    """A minimal RESP2 client: commands are lists of strings or bytes,
    replies come back as str (simple), int, bytes (bulk), None or list.
    send_many() pipelines: all the commands first, then all the replies."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port),
                                             timeout=timeout)
        self.rf = self.sock.makefile("rb")

    def close(self):
        try:
            self.rf.close()
        finally:
            self.sock.close()

    @staticmethod
    def encode(args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, int):
                a = str(a)
            if isinstance(a, str):
                a = a.encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def read(self):
        line = self.rf.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.rf.read(n + 2)
            if len(data) != n + 2:
                raise ConnectionError("redis closed the connection")
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            if n < 0:
                return None
            return [self.read() for _ in range(n)]
        raise ConnectionError("unexpected RESP reply %r" % line[:80])

    def send_many(self, commands):
        self.sock.sendall(b"".join(self.encode(c) for c in commands))
        replies = [self.read() for _ in commands]
        for r in replies:
            if isinstance(r, RedisError):
                raise r
        return replies

    def cmd(self, *args):
        return self.send_many([args])[0]


def _s(v):
    return v.decode() if isinstance(v, bytes) else v


def _pairs(flat):
    """[k1, v1, k2, v2, ...] -> {k1: v1, ...} with keys as str."""
    return {_s(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)}


class Redis:
    """redis-server on 127.0.0.1:port, a child of the test."""

    def __init__(self, env, name="redis"):
        self.env = env
        for attempt in range(3):
            self.port = free_port()
            argv = ["redis-server", "--port", str(self.port),
                    "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                    "--dir", env.dir, "--dbfilename",
                    "%s-%d.rdb" % (name, attempt)]
            self.proc = env.spawn("%s%s" % (name, attempt or ""), argv)
            if h.wait_for(self._up_or_dead, 15, "redis-server to answer "
                          "PING on port %d" % self.port) == "up":
                break
            if "Address already in use" in self.proc.text():
                # Lost the port to another socket: an expected exit.
                self.proc.expect(self.proc.p.returncode)
                continue
            raise AssertionError("redis-server exited (status %s):\n%s"
                                 % (self.proc.p.returncode,
                                    self.proc.text()[-2000:]))
        else:
            raise AssertionError("redis-server found no free port")
        self.conn = Resp(self.port)

    def _up_or_dead(self):
        if not self.proc.alive():
            return "dead"
        try:
            c = Resp(self.port, timeout=2)
        except OSError:
            return None
        try:
            return "up" if c.cmd("PING") == "PONG" else None
        except (OSError, RedisError):
            return None  # e.g. LOADING
        finally:
            c.close()

    def url(self, stream, group="g", **params):
        """redis://127.0.0.1:PORT/STREAM?group=G&k=v..."""
        q = [("group", group)] + sorted(params.items())
        return "redis://127.0.0.1:%d/%s?%s" % (
            self.port, stream, urllib.parse.urlencode(q, safe=":/",
                                     quote_via=urllib.parse.quote))

    def cmd(self, *args):
        return self.conn.cmd(*args)

    def xadd(self, stream, fields, entry_id="*"):
        """Adds one entry (fields: a dict of str); returns its id."""
        return self.xadd_many(stream, [fields], entry_id)[0]

    def xadd_many(self, stream, entries, entry_id="*"):
        """Adds the entries (each a dict of str) in one pipelined round
        trip; returns their ids in order."""
        cmds = []
        for f in entries:
            c = ["XADD", stream, entry_id]
            for k, v in f.items():
                c += [k, v]
            cmds.append(c)
        return [_s(x) for x in self.conn.send_many(cmds)]

    def xlen(self, stream):
        return self.cmd("XLEN", stream)

    def xpending_count(self, stream, group):
        """Entries delivered to group and not yet XACKed."""
        return self.cmd("XPENDING", stream, group)[0]

    def xpending(self, stream, group, count=100):
        """[(entry id, consumer, idle ms, deliveries)] of pending entries."""
        rows = self.cmd("XPENDING", stream, group, "-", "+", count)
        return [(_s(r[0]), _s(r[1]), r[2], r[3]) for r in rows]

    def xinfo_groups(self, stream):
        """{group name: {field: value}} (name, consumers, pending,
        last-delivered-id, ...; strings decoded)."""
        out = {}
        for g in self.cmd("XINFO", "GROUPS", stream):
            d = {k: _s(v) for k, v in _pairs(g).items()}
            out[d["name"]] = d
        return out

    def xinfo_consumers(self, stream, group):
        return [{k: _s(v) for k, v in _pairs(c).items()}
                for c in self.cmd("XINFO", "CONSUMERS", stream, group)]

    def xinfo_stream(self, stream):
        d = _pairs(self.cmd("XINFO", "STREAM", stream))
        return {k: (_s(v) if not isinstance(v, list) else v)
                for k, v in d.items()}

    def xgroup_create(self, stream, group, start="0"):
        return self.cmd("XGROUP", "CREATE", stream, group, start, "MKSTREAM")

    def xreadgroup(self, stream, group, consumer, count=10):
        """Reads new entries as consumer (what a crashed reader would have
        done); returns [(entry id, {field: value})]."""
        r = self.cmd("XREADGROUP", "GROUP", group, consumer, "COUNT", count,
                     "STREAMS", stream, ">")
        if not r:
            return []
        return [(_s(e[0]), {k: _s(v) for k, v in _pairs(e[1]).items()})
                for e in r[0][1]]


# --------------------------------------------------------------- Azurite

class Azurite:
    """Azurite's queue service on 127.0.0.1:port, a child of the test.
    Telemetry off: the tests only ever talk to 127.0.0.1."""

    def __init__(self, env, name="azurite"):
        npm_ready()
        self.env = env
        self.location = env.path(name)
        os.makedirs(self.location, exist_ok=True)
        exe = os.path.join(NODE_MODULES, ".bin", "azurite-queue")
        for attempt in range(3):
            self.port = free_port()
            argv = [exe, "--queueHost", "127.0.0.1", "--queuePort",
                    str(self.port), "--location", self.location,
                    "--skipApiVersionCheck", "--loose", "--disableTelemetry"]
            self.proc = env.spawn("%s%s" % (name, attempt or ""), argv)
            if h.wait_for(self._up_or_dead, 30, "Azurite to listen on port "
                          "%d" % self.port) == "up":
                break
            if "EADDRINUSE" in self.proc.text():
                # Lost the port to another socket: an expected exit.
                self.proc.expect(self.proc.p.returncode)
                continue
            raise AssertionError("azurite-queue exited (status %s):\n%s"
                                 % (self.proc.p.returncode,
                                    self.proc.text()[-2000:]))
        else:
            raise AssertionError("Azurite found no free port")
        self.endpoint = "http://127.0.0.1:%d/%s" % (self.port, DEV_ACCOUNT)
        self.conn = ("DefaultEndpointsProtocol=http;AccountName=%s;"
                     "AccountKey=%s;QueueEndpoint=%s;"
                     % (DEV_ACCOUNT, DEV_KEY, self.endpoint))
        # What fanout-master needs in its environment.
        self.env_vars = {"AZURE_STORAGE_CONNECTION_STRING": self.conn}

    def _up_or_dead(self):
        if not self.proc.alive():
            return "dead"
        try:
            socket.create_connection(("127.0.0.1", self.port),
                                     timeout=1).close()
            return "up"
        except OSError:
            return None

    def url(self, queue, **params):
        """azure-queue://devstoreaccount1/QUEUE?endpoint=...&k=v..."""
        q = [("endpoint", self.endpoint)] + sorted(params.items())
        return "azure-queue://%s/%s?%s" % (
            DEV_ACCOUNT, queue, urllib.parse.urlencode(q, safe=":/",
                                     quote_via=urllib.parse.quote))

    def _node(self, script, args, seconds=60):
        argv = ["node", os.path.join(QUEUES_DIR, script), "--conn",
                self.conn] + [str(a) for a in args]
        try:
            r = subprocess.run(argv, cwd=QUEUES_DIR, capture_output=True,
                               stdin=subprocess.DEVNULL, text=True,
                               timeout=seconds * h.SCALE)
        except subprocess.TimeoutExpired:
            raise AssertionError("%s did not finish within %.0fs"
                                 % (script, seconds * h.SCALE))
        if r.returncode != 0:
            raise AssertionError("%s %s failed (%d): %s" % (
                script, " ".join(argv[4:]), r.returncode, r.stderr.strip()))
        return json.loads(r.stdout)

    def enqueue(self, queue, count=0, start=1, base64=False, create=True,
                raw=None):
        """Sends {"id":"item-K","src":"azure","n":K} for K in
        [start, start+count) (base64 of it with base64=True), or raw text
        once; returns {"sent", "first", "ids"} (ids: Azure message ids)."""
        args = ["--queue", queue, "--count", count, "--start", start]
        if base64:
            args.append("--base64")
        if create:
            args.append("--create")
        if raw is not None:
            args += ["--raw", raw]
        return self._node("enqueue.js", args)

    def qstat(self, queue):
        """{"exists", "messages": approximateMessagesCount (invisible
        messages included), "visible": peekable now, at most 32}."""
        return self._node("qstat.js", ["--queue", queue])


# ------------------------------------------------------------- the job

class QueueJob(h.Job):
    """A job reading a queue, its URL path under the test server."""

    def __init__(self, env, source, server, *extra, url_path="/items/{id}",
                 name="", master_env=None):
        super().__init__(env, source, server.base + url_path, *extra,
                         name=name, master_env=master_env)


def stays_alive(proc, seconds, what):
    """Asserts proc keeps running for seconds (an observation of elapsed
    time, not a synchronisation): fails as soon as it exits."""
    end = h.deadline(seconds)
    while time.monotonic() < end:
        assert proc.alive(), "%s exited (status %s) while it should keep " \
            "running:\n%s" % (what, proc.p.returncode, proc.text()[-3000:])
        time.sleep(0.05)


def per_id_calls(server, prefix="/items/"):
    """{id: number of requests the API server saw for it}, from the
    server's request log (the path's segment after prefix)."""
    seen = {}
    for r in server.requests():
        p = r["path"].split("?", 1)[0]
        if not p.startswith(prefix):
            continue
        k = urllib.parse.unquote(p[len(prefix):].split("/", 1)[0])
        seen[k] = seen.get(k, 0) + 1
    return seen
