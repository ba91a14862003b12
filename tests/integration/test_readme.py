"""The README's five-minute tour runs as written (issue 14): its first
shell block, with the port and the output directory moved somewhere free,
and the programs taken from the build under test."""
import os
import re
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def tour_block():
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    tour = text[text.index("## Five-minute tour"):]
    m = re.search(r"```sh\n(.*?)```", tour, re.S)
    assert m, "no shell block in the tour"
    return m.group(1)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_the_tour_runs_as_written(env):
    block = tour_block()
    assert "make build" in block and "build/fanout-master" in block, block
    port = free_port()
    out = env.path("out")
    script = block.replace("make build\n", "")  # the suite built it
    script = script.replace("8080", str(port))
    script = script.replace("build/", h.BIN.rstrip("/") + "/")
    script = script.replace("--out out/", "--out %s/" % out)
    # The test API must be up before the master's first call, as it is for
    # a person typing the lines one by one.
    script = script.replace(
        "&\n", "&\nfor i in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/%d) "
        "2>/dev/null && break; sleep 0.05; done\n" % port, 1)
    p = subprocess.run(["bash", "-e", "-c", script + "\nwait\n"],
                       cwd=ROOT, capture_output=True, text=True,
                       timeout=120 * h.SCALE)
    assert p.returncode == 0, (p.returncode, p.stdout[-2000:],
                               p.stderr[-3000:])
    recs = h.results(out)
    with open(os.path.join(ROOT, "examples", "items.jsonl")) as f:
        ids = [__import__("json").loads(line)["id"] for line in f
               if line.strip()]
    h.assert_exactly_once(recs, ids)
    assert all(r["status"] == "ok" for r in recs), [
        r for r in recs if r["status"] != "ok"][:3]
    assert "done: 300 items" in p.stderr, p.stderr[-2000:]
    h.report("README tour: 300 items ok as written")


if __name__ == "__main__":
    h.main(globals())
