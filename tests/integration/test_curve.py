"""CurveZMQ (issue 5): every socket encrypted, only listed workers admitted;
a worker without an admitted key gets no job, no items and no tokens, and
nothing it sends is recorded. Issue 13: worker and operator keys have
separate roles (--curve-allow, --ctl-allow), fanout-ctl says why it cannot
get in, and workers expand only the ${NAME}s they were allowed."""
import os
import stat
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402


keygen = h.keygen


def test_only_admitted_workers_join(env):
    os.makedirs(env.path("keys"))
    os.makedirs(env.path("allow"))
    mkey, mpub = keygen(env, "master")
    w1key, w1pub = keygen(env, "w1")
    w2key, _ = keygen(env, "w2")
    assert stat.S_IMODE(os.stat(mkey).st_mode) == 0o600
    os.link(w1pub, env.path("allow", "w1.pub"))
    s = env.server()
    n = 200
    items = env.write_items("items.jsonl", n)
    out = env.path("out")
    m = env.master("--input", items, "--out", out, "--url",
                   s.base + "/x/{id}", "--curve-secret", mkey,
                   "--curve-allow", env.path("allow"))
    ep = m.wait_ready()
    intruder = env.worker(ep["control"], "--id", "intruder",
                          "--curve-secret", w2key, "--curve-server-key", mpub,
                          name="intruder")
    plain = env.worker(ep["control"], "--id", "plain", name="plain")
    h.wait_for(lambda: "curve.refused" in intruder.text(), 20,
               "the intruder to be refused")
    assert len(s.requests()) == 0, "an unadmitted worker made calls"
    # fanout-ctl needs an admitted key too (test_ctl_roles has more).
    ctl = [os.path.join(h.BIN, "fanout-ctl"), "--master", ep["control"]]
    p = subprocess.run(ctl + ["status", "--curve-secret", w2key,
                              "--curve-server-key", mpub],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 3, (p.returncode, p.stdout, p.stderr)
    assert "refused our Curve key" in p.stderr, p.stderr
    good = env.worker(ep["control"], "--id", "w1", "--curve-secret", w1key,
                      "--curve-server-key", mpub, name="w1")
    assert m.proc.wait(60) == 0, m.proc.text()[-2000:]
    good.wait(30)
    recs = h.results(out)
    h.assert_exactly_once(recs, ["item-%d" % i for i in range(1, n + 1)])
    assert {r["worker"] for r in recs} == {"w1"}
    assert "curve.denied" in m.proc.text()
    assert "worker.joined: worker intruder" not in m.proc.text()
    assert "worker.joined: worker plain" not in m.proc.text()
    for p in (intruder, plain):
        assert p.alive(), "%s should keep waiting, not crash" % p.name
        p.kill()


def test_sighup_admits_a_key_added_while_running(env):
    os.makedirs(env.path("keys"))
    os.makedirs(env.path("allow"))
    mkey, mpub = keygen(env, "master")
    _, w1pub = keygen(env, "w1")
    w2key, w2pub = keygen(env, "w2")
    os.link(w1pub, env.path("allow", "w1.pub"))
    s = env.server("--rate", "50/s")
    n = 150
    out = env.path("out")
    m = env.master("--input", env.write_items("items.jsonl", n), "--out", out,
                   "--url", s.base + "/x/{id}", "--rate", "50/s",
                   "--curve-secret", mkey, "--curve-allow", env.path("allow"))
    ep = m.wait_ready()
    late = env.worker(ep["control"], "--id", "w2", "--curve-secret", w2key,
                      "--curve-server-key", mpub, name="w2")
    h.wait_for(lambda: "curve.denied" in m.proc.text(), 20, "a refusal")
    os.link(w2pub, env.path("allow", "w2.pub"))
    m.proc.signal(__import__("signal").SIGHUP)
    h.wait_for(lambda: "curve.reloaded: 2 worker keys" in m.proc.text(), 20,
               "the reload")
    assert m.proc.wait(60) == 0, m.proc.text()[-2000:]
    late.wait(30)
    recs = h.results(out)
    h.assert_exactly_once(recs, ["item-%d" % i for i in range(1, n + 1)])
    assert {r["worker"] for r in recs} == {"w2"}


def test_curve_configuration_errors(env):
    os.makedirs(env.path("keys"))
    os.makedirs(env.path("allow"))
    mkey, mpub = keygen(env, "master")
    master = os.path.join(h.BIN, "fanout-master")
    base = ["--input", env.write_items("i.jsonl", 1), "--out",
            env.path("out"), "--url", "http://127.0.0.1:9/{id}", "--bind",
            "tcp://127.0.0.1:0"]
    cases = [
        (["--curve-secret", mkey], "--curve-secret needs --curve-allow too"),
        (["--curve-secret", mkey, "--curve-allow", env.path("allow")],
         "holds no *.pub files"),
        (["--curve-secret", mpub, "--curve-allow", env.path("allow")],
         "no secret-key line: give the .key file"),
        (["--curve-secret", env.path("nope.key"), "--curve-allow",
          env.path("allow")], "No such file"),
    ]
    # A key has one role: worker or operator, never both.
    wdir, odir = env.path("workers"), env.path("operators")
    os.makedirs(wdir)
    os.makedirs(odir)
    _, wpub = keygen(env, "w")
    os.link(wpub, os.path.join(wdir, "w.pub"))
    os.link(wpub, os.path.join(odir, "also-w.pub"))
    cases += [
        (["--ctl-allow", odir], "--ctl-allow needs --curve-secret"),
        (["--curve-secret", mkey, "--curve-allow", wdir, "--ctl-allow",
          odir],
         "is both a worker's (w.pub in --curve-allow %s) and an operator's "
         "(also-w.pub in --ctl-allow %s): a key has one role"
         % (wdir, odir)),
    ]
    for extra, msg in cases:
        p = subprocess.run([master] + base + extra, capture_output=True,
                           text=True, timeout=30)
        assert p.returncode == 2, (extra, p.returncode, p.stderr)
        assert msg in p.stderr, (extra, p.stderr)
    # keygen never overwrites a key.
    p = subprocess.run([os.path.join(h.BIN, "fanout-keygen"),
                        env.path("keys", "master")], capture_output=True,
                       text=True)
    assert p.returncode == 2 and "refusing to overwrite" in p.stderr


def ctl_run(ep, *args, keys=None, timeout="5s"):
    argv = [os.path.join(h.BIN, "fanout-ctl"), "--master", ep["control"],
            "--timeout", timeout]
    if keys:
        argv += ["--curve-secret", keys[0], "--curve-server-key", keys[1]]
    return subprocess.run(argv + list(args), capture_output=True, text=True,
                          timeout=60 * h.SCALE)


def test_ctl_roles(env):
    """A worker key may not steer the job and an operator key may not work
    it; fanout-ctl without keys is told that keys are missing."""
    os.makedirs(env.path("keys"))
    os.makedirs(env.path("allow"))
    os.makedirs(env.path("ctl"))
    mkey, mpub = keygen(env, "master")
    wkey, wpub = keygen(env, "w1")
    okey, opub = keygen(env, "alice")
    os.link(wpub, env.path("allow", "w1.pub"))
    os.link(opub, env.path("ctl", "alice.pub"))
    s = env.server()
    out = env.path("out")
    m = env.master("--input", env.write_items("items.jsonl", 20), "--out",
                   out, "--url", s.base + "/x/{id}", "--curve-secret", mkey,
                   "--curve-allow", env.path("allow"), "--ctl-allow",
                   env.path("ctl"))
    ep = m.wait_ready()
    assert "1 operator keys from %s" % env.path("ctl") in m.proc.text()
    # No keys at all: the handshake fails, and ctl says what is missing.
    p = ctl_run(ep, "status")
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert ("the master at %s requires Curve keys: pass --curve-secret and "
            "--curve-server-key" % ep["control"]) in p.stderr, p.stderr
    # The operator's key works.
    p = ctl_run(ep, "status", keys=(okey, mpub))
    assert p.returncode == 0, (p.returncode, p.stderr)
    assert "workers    0" in p.stdout, p.stdout
    p = ctl_run(ep, "set", "--rate", "500/s", keys=(okey, mpub))
    assert p.returncode == 0, (p.returncode, p.stderr)
    h.wait_for(lambda: "rate set to 500/s by fanout-ctl" in m.proc.text(), 10,
               "the master to log the new rate")
    w = env.worker(ep["control"], "--id", "w1", "--curve-secret", wkey,
                   "--curve-server-key", mpub, name="w1")
    assert m.proc.wait(60) == 0, m.proc.text()[-2000:]
    w.wait(30, expect=0)
    recs = h.results(out)
    h.assert_exactly_once(recs, ["item-%d" % i for i in range(1, 21)])
    assert {r["worker"] for r in recs} == {"w1"}


def test_roles_are_enforced_by_the_master(env):
    """A worker's key passes the handshake (ZAP admits it as "worker"), but
    the master refuses its CTL: ctl prints the error and exits 3, the
    master logs it, and the setting is unchanged. An operator's key cannot
    work the job. Needs the role check in master/control.c (curve_role_of
    on each message's User-Id)."""
    os.makedirs(env.path("keys"))
    os.makedirs(env.path("allow"))
    os.makedirs(env.path("ctl"))
    mkey, mpub = keygen(env, "master")
    wkey, wpub = keygen(env, "w1")
    okey, opub = keygen(env, "alice")
    os.link(wpub, env.path("allow", "w1.pub"))
    os.link(opub, env.path("ctl", "alice.pub"))
    s = env.server()
    out = env.path("out")
    m = env.master("--input", env.write_items("items.jsonl", 5), "--out",
                   out, "--url", s.base + "/x/{id}",
                   "--rate", "50/s", "--curve-secret", mkey, "--curve-allow",
                   env.path("allow"), "--ctl-allow", env.path("ctl"))
    ep = m.wait_ready()
    p = ctl_run(ep, "set", "--rate", "1/s", keys=(wkey, mpub))
    assert p.returncode == 3, (p.returncode, p.stdout, p.stderr)
    assert "fanout-ctl: the master refused: forbidden" in p.stderr, p.stderr
    assert "--ctl-allow" in p.stderr, p.stderr
    h.wait_for(lambda: "forbidden" in m.proc.text(), 10,
               "the master to log the refused CTL")
    assert "rate set to 1/s" not in m.proc.text()
    intruder = env.worker(ep["control"], "--id", "op-as-worker",
                          "--curve-secret", okey, "--curve-server-key", mpub,
                          name="op-as-worker", once=False)
    # The master either refuses its HELLO (a second "forbidden" line) or,
    # wrongly, lets it join (which the assertions below catch).
    h.wait_for(lambda: m.proc.text().count("forbidden") >= 2
               or "op-as-worker" in m.proc.text(), 10,
               "the master to refuse the operator's key acting as a worker")
    w = env.worker(ep["control"], "--id", "w1", "--curve-secret", wkey,
                   "--curve-server-key", mpub, name="w1")
    assert m.proc.wait(60) == 0, m.proc.text()[-2000:]
    w.wait(30, expect=0)
    assert {r["worker"] for r in h.results(out)} == {"w1"}
    assert "worker.joined: worker op-as-worker" not in m.proc.text()
    intruder.kill()


def test_worker_expands_only_allowed_env(env):
    s = env.server()
    n = 10
    items = env.write_items("items.jsonl", n)
    secret = "x-t0ken-%d" % os.getpid()
    # Refused: the job names ${X} and ${Y}, and the worker allows neither.
    out = env.path("out")
    m = env.master("--input", items, "--out", out, "--url",
                   s.base + "/x/{id}", "--header", "Authorization: ${X}",
                   "--header", "X-Other: ${Y}-${X}")
    ep = m.wait_ready()
    w = env.worker(ep["control"], env={"X": secret, "Y": "y"}, expect=2,
                   name="refuser")
    assert w.wait(30, expect=2) == 2
    msg = ("the job asks for ${X}, ${Y}, which this worker does not allow; "
           "start it with --allow-env X --allow-env Y")
    assert "worker.env_not_allowed: " + msg in w.text(), w.text()
    assert secret not in w.text()
    assert len(s.requests()) == 0, "a refusing worker made calls"
    # Allowed: the same job runs.
    w = env.worker(ep["control"], "--allow-env", "X", "--allow-env", "Y",
                   env={"X": secret, "Y": "y"}, name="allower")
    assert m.proc.wait(60) == 0, m.proc.text()[-2000:]
    w.wait(30, expect=0)
    recs = h.results(out)
    h.assert_exactly_once(recs, ["item-%d" % i for i in range(1, n + 1)])
    assert all(r["status"] == "ok" for r in recs)
    assert secret not in w.text() and secret not in m.proc.text()


def test_spawned_workers_get_keys_of_their_own(env):
    """--spawn-workers under Curve: the master makes a key pair for its own
    workers, admits it for this run and keeps it private in --out; the
    allow list stays empty and the job completes."""
    os.makedirs(env.path("keys"))
    os.makedirs(env.path("allow"))
    mkey, _ = keygen(env, "master")
    s = env.server()
    n = 60
    items = env.write_items("items.jsonl", n)
    out = env.path("out")
    m = env.master("--input", items, "--out", out, "--url",
                   s.base + "/x/{id}", "--curve-secret", mkey,
                   "--curve-allow", env.path("allow"), "--spawn-workers", "2",
                   wait=False)
    assert m.proc.wait(60) == 0, m.proc.text()[-2000:]
    h.assert_exactly_once(h.results(out),
                          ["item-%d" % i for i in range(1, n + 1)])
    wkey = os.path.join(out, ".spawned-keys", "worker.key")
    assert stat.S_IMODE(os.stat(wkey).st_mode) == 0o600
    assert "curve.denied" not in m.proc.text()


if __name__ == "__main__":
    h.main(globals())
