"""CurveZMQ (issue 5): every socket encrypted, only listed workers admitted;
a worker without an admitted key gets no job, no items and no tokens, and
nothing it sends is recorded."""
import os
import stat
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402


def keygen(env, name):
    p = subprocess.run([os.path.join(h.BIN, "fanout-keygen"),
                        env.path("keys", name)], capture_output=True,
                       text=True)
    assert p.returncode == 0, p.stderr
    return env.path("keys", name + ".key"), env.path("keys", name + ".pub")


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
    # fanout-ctl needs an admitted key too.
    ctl = [os.path.join(h.BIN, "fanout-ctl"), "--master", ep["control"]]
    p = subprocess.run(ctl + ["status", "--timeout", "1s"],
                       capture_output=True, text=True)
    assert p.returncode == 3, p.stdout
    p = subprocess.run(ctl + ["status", "--curve-secret", w1key,
                              "--curve-server-key", mpub],
                       capture_output=True, text=True)
    assert p.returncode == 0 and "workers    0" in p.stdout, p.stdout
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


if __name__ == "__main__":
    h.main(globals())
