"""Hostile peers (issue 13): a client on the master's socket that speaks the
protocol but lies. Each attack runs against a real master, with and without
Curve (then the attacker holds an admitted worker key); each must fail, be
counted, and leave the job finishing with every item recorded exactly once
from a real call.

The attacker is a pyzmq DEALER that encodes messages with msgpack
(Debian's python3-zmq and python3-msgpack; the suite skips without them).
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

VERSION = 2
HELLO, JOB, HEARTBEAT, TOKEN_REQ = 1, 2, 3, 4
THROTTLED, BYE, RESET, WORK, RESULT = 6, 7, 8, 9, 10
CTL, CTL_REPLY, MULTI = 14, 15, 17


def _modules():
    try:
        import msgpack
        import zmq
    except ImportError:
        sys.path.append("/usr/lib/python3/dist-packages")
        try:
            import msgpack
            import zmq
        except ImportError:
            return None, None
    return zmq, msgpack


ZMQ, MSGPACK = _modules()


def _key_line(path, name):
    with open(path) as f:
        for line in f:
            k, _, v = line.partition("=")
            if k.strip() == name:
                return v.strip().strip('"').encode()
    raise AssertionError("no %s in %s" % (name, path))


class Rogue:
    """A lying peer. curve: (secret key file, master's public key file)."""

    def __init__(self, endpoint, curve=None):
        self.ctx = ZMQ.Context()
        self.z = self.ctx.socket(ZMQ.DEALER)
        self.z.setsockopt(ZMQ.LINGER, 0)
        if curve:
            secret, server = curve
            self.z.curve_secretkey = _key_line(secret, "secret-key")
            self.z.curve_publickey = _key_line(secret, "public-key")
            self.z.curve_serverkey = _key_line(server, "public-key")
        self.z.connect(endpoint)
        self.epoch = 0
        self.work = []     # WORK messages received
        self.pending = []  # the rest of a MULTI envelope

    def close(self):
        self.z.close(linger=0)
        self.ctx.term()

    def send(self, mtype, *fields):
        self.z.send(MSGPACK.packb([VERSION, mtype, self.epoch] + list(fields),
                                  use_bin_type=True))

    def recv(self, seconds):
        """The next message (a list), or None after seconds. A MULTI
        envelope's messages come one by one."""
        if not self.pending:
            if not self.z.poll(int(seconds * 1000)):
                return None
            msg = MSGPACK.unpackb(self.z.recv(), raw=False)
            if msg[1] == MULTI:
                self.pending = [MSGPACK.unpackb(f, raw=False)
                                for f in msg[3]]
            else:
                self.pending = [msg]
        msg = self.pending.pop(0)
        if msg[1] == WORK:
            self.work.append(msg)
        return msg

    def wait_for(self, mtype, seconds):
        end = time.monotonic() + seconds * h.SCALE
        while time.monotonic() < end:
            m = self.recv(0.1)
            if m and m[1] == mtype:
                return m
        raise AssertionError("no message of type %d" % mtype)

    def hello(self, concurrency=1):
        self.send(HELLO, "rogue", "evil-host", 4242, concurrency)
        job = self.wait_for(JOB, 10)
        self.epoch = job[2]
        return job

    def pump(self, seconds):
        """Reads whatever comes for seconds."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.recv(0.05)

    def held(self):
        """The refs of the items it was given, flat, as HEARTBEAT and BYE
        carry them: [batch, idx, batch, idx, ...]."""
        return [x for w in self.work for x in (w[3], w[4])]


def skip_without_modules(name):
    if ZMQ is None:
        print("SKIP: %s: pyzmq or msgpack missing (apt-get install "
              "python3-zmq python3-msgpack)" % name)
        return True
    return False


keygen = h.keygen


class Setup:
    """A master over n items, with or without Curve; worker() starts an
    honest worker, rogue() connects an attacker (with an admitted worker
    key under Curve)."""

    def __init__(self, env, n, *extra, curve=False, server_args=()):
        self.env, self.n = env, n
        self.s = env.server(*server_args)
        items = env.write_items("items.jsonl", n)
        self.out = env.path("out")
        args = ["--input", items, "--out", self.out, "--url",
                self.s.base + "/items/{id}", "--lease", "2s", "--heartbeat",
                "250ms"] + list(extra)
        self.wkeys = []
        if curve:
            os.makedirs(env.path("keys"))
            os.makedirs(env.path("allow"))
            self.mkey, self.mpub = keygen(env, "master")
            for name in ("honest", "rogue"):
                k, pub = keygen(env, name)
                os.link(pub, env.path("allow", name + ".pub"))
                self.wkeys.append(k)
            args += ["--curve-secret", self.mkey, "--curve-allow",
                     env.path("allow")]
        self.curve = curve
        self.m = env.master(*args)
        self.control = self.m.endpoints["control"]

    def worker(self, *args):
        extra = []
        if self.curve:
            extra = ["--curve-secret", self.wkeys[0], "--curve-server-key",
                     self.mpub]
        return self.env.worker(self.control, "--id", "honest", *(
            extra + list(args)))

    def rogue(self):
        return Rogue(self.control, (self.wkeys[1], self.mpub)
                     if self.curve else None)

    def finish(self, seconds=60):
        status = self.m.proc.wait(seconds)
        assert status == 0, self.m.proc.text()[-3000:]
        recs = h.results(self.out)
        h.assert_exactly_once(recs, ["item-%d" % i
                                     for i in range(1, self.n + 1)])
        for r in recs:
            assert r["status"] == "ok", r
            assert "FORGED" not in str(r.get("response")), r
        return recs, h.summary(self.out)


def forged_results(setup, rogue):
    """RESULT messages, claiming success with a forged response, for every
    item of the first batches except those the rogue holds."""
    flat = rogue.held()
    held = set(zip(flat[0::2], flat[1::2]))
    first = min(b for b, _ in held) if held else 0
    n = 0
    for i in range(setup.n):
        b, k = first + i // 10, i % 10
        if (b, k) in held:
            continue
        rogue.send(RESULT, b, k, "item-%d" % (i + 1), 0, 200, 1, 0, 5, None,
                   b'{"FORGED":true}', "honest", None)
        n += 1
    return n


def run_forged_results(env, curve):
    setup = Setup(env, 40, curve=curve, server_args=("--latency-ms", "50"))
    rogue = setup.rogue()
    try:
        # A stranger's results draw RESET and are not recorded.
        rogue.send(RESULT, 0, 0, "item-1", 0, 200, 1, 0, 5, None,
                   b'{"FORGED":true}', "honest", None)
        rogue.wait_for(RESET, 10)
        # Joined, it is given two items (credit 2 x concurrency 1) and
        # forges results for all the others.
        rogue.hello(concurrency=1)
        h.wait_for(lambda: rogue.pump(0.05) or len(rogue.work) >= 2, 10,
                   "the rogue's items")
        sent = forged_results(setup, rogue)
        # It hands its own items back and leaves; an honest worker runs
        # the job.
        rogue.send(BYE, rogue.held())
        setup.worker()
        recs, sm = setup.finish()
    finally:
        rogue.close()
    assert sm["foreign_reports"] >= sent, (sm, sent)
    assert {r["worker"] for r in recs} == {"honest"}
    calls = len(setup.s.requests())
    assert calls >= setup.n, calls
    h.report("forged results (%s): %d sent, %d refused, %d API calls for "
             "%d items, 0 forged records" % (
                 "Curve" if curve else "no Curve", sent,
                 sm["foreign_reports"], calls, setup.n))


def test_forged_results_are_not_recorded(env):
    if not skip_without_modules("test_forged_results_are_not_recorded"):
        run_forged_results(env, curve=False)


def test_forged_results_are_not_recorded_with_curve(env):
    if not skip_without_modules(
            "test_forged_results_are_not_recorded_with_curve"):
        run_forged_results(env, curve=True)


def run_false_claims(env, curve):
    setup = Setup(env, 60, curve=curve, server_args=("--latency-ms", "20"))
    rogue = setup.rogue()
    try:
        rogue.hello(concurrency=1)
        h.wait_for(lambda: rogue.pump(0.05) or len(rogue.work) >= 2, 10,
                   "the rogue's items")
        first = min(rogue.held()[0::2])
        everything = [x for i in range(setup.n)
                      for x in (first + i // 10, i % 10)]
        mine = rogue.held()
        # It lists every item in its heartbeats, as if it held them all,
        # and hands its own back.
        rogue.send(BYE, mine)
        w = setup.worker()
        end = time.monotonic() + 60 * h.SCALE
        while setup.m.proc.alive() and time.monotonic() < end:
            rogue.send(HEARTBEAT, 0, everything)
            rogue.pump(0.1)
        recs, sm = setup.finish(5)
        w.wait(30)
    finally:
        rogue.close()
    assert sm["foreign_reports"] > 0, sm
    h.report("false heartbeat claims (%s): %d refused; the job finished "
             "with %d API calls for %d items" % (
                 "Curve" if curve else "no Curve", sm["foreign_reports"],
                 len(setup.s.requests()), setup.n))


def test_false_heartbeat_claims_do_not_hold_items(env):
    if not skip_without_modules(
            "test_false_heartbeat_claims_do_not_hold_items"):
        run_false_claims(env, curve=False)


def test_false_heartbeat_claims_do_not_hold_items_with_curve(env):
    if not skip_without_modules(
            "test_false_heartbeat_claims_do_not_hold_items_with_curve"):
        run_false_claims(env, curve=True)


def test_one_workers_endless_retry_after_is_capped(env):
    """THROTTLED with a Retry-After of 2^32-1 ms (49 days) pauses the
    cluster for at most the single-report cap, and the job finishes."""
    if skip_without_modules("test_one_workers_endless_retry_after_is_capped"):
        return
    setup = Setup(env, 20)
    rogue = setup.rogue()
    try:
        rogue.hello(concurrency=1)
        rogue.send(THROTTLED, 429, 4294967295)
        rogue.pump(0.2)
        rogue.send(BYE, rogue.held())
        t0 = time.monotonic()
        setup.worker()
        recs, sm = setup.finish(120)
        took = time.monotonic() - t0
    finally:
        rogue.close()
    text = setup.m.proc.text()
    assert "api.long_pause_capped" in text, text[-2000:]
    h.report("Retry-After 4294967295 ms from one worker: paused at most "
             "10 s; the job finished %.1f s after an honest worker joined"
             % took)


def test_a_concurrency_claim_is_capped(env):
    """A HELLO claiming concurrency 1,000,000 is counted as
    --max-worker-concurrency: the claimant is given at most twice that."""
    if skip_without_modules("test_a_concurrency_claim_is_capped"):
        return
    setup = Setup(env, 200, "--max-worker-concurrency", "3")
    rogue = setup.rogue()
    try:
        rogue.hello(concurrency=1000000)
        # It lists what it gets, so nothing goes back for being unclaimed.
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            rogue.send(HEARTBEAT, 0, rogue.held())
            rogue.pump(0.1)
        got = len(rogue.work)
        rogue.send(BYE, rogue.held())
        setup.worker()
        setup.finish()
    finally:
        rogue.close()
    assert got == 6, got
    assert "worker.concurrency_capped" in setup.m.proc.text()
    h.report("HELLO claiming concurrency 1000000 with "
             "--max-worker-concurrency 3: given %d items" % got)


def test_a_worker_key_cannot_run_commands(env):
    """Under Curve, CTL from a worker key is refused with a reason, and the
    rate stays as it was."""
    if skip_without_modules("test_a_worker_key_cannot_run_commands"):
        return
    setup = Setup(env, 20, "--rate", "50/s", curve=True)
    rogue = setup.rogue()
    try:
        rogue.send(CTL, '{"cmd":"set","rate":"none","max_in_flight":0}')
        reply = rogue.wait_for(CTL_REPLY, 10)
        assert '"ok":false' in reply[3] and "forbidden" in reply[3], reply
        setup.worker()
        recs, sm = setup.finish()
    finally:
        rogue.close()
    text = setup.m.proc.text()
    assert "peer.forbidden" in text, text[-2000:]
    assert sm["forbidden_messages"] >= 1, sm
    h.report("CTL from a worker key: refused (%s)" % reply[3][:60])


if __name__ == "__main__":
    h.main(globals())
