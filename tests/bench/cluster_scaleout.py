"""Scenario 6 of the benchmarks on separate (namespace) hosts: the same job
with 1, 2, 4 and 8 workers, each worker on its own host, the master on
host m and the test API (no limit) on host api, through tests/cluster's
network of namespaces (netlab.py, clusterlib.py). The master's --rate is
set far above what the run can reach, so the limiter runs but never binds:
the figure is items/s per worker count.

    python3 tests/bench/cluster_scaleout.py BUILD_DIR ITEMS

bench.py runs this as a child process. It is a separate program for two
reasons: the namespaces are torn down by the process that made them, on
SIGTERM too, so the driver's cleanup stays simple; and netlab.remove_stale()
keeps only the namespaces of live processes whose command line mentions
"cluster", which this file's name does.

Prints one line "BENCH-SCALEOUT <json>" on success, or clusterlib's one
line "bench-scaleout: skipped: <why>" when this machine cannot build the
network (exit 0 either way); exit 1 when a run failed.
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
os.environ["FANOUT_BIN"] = os.path.abspath(sys.argv[1])
sys.path.insert(0, os.path.join(HERE, "..", "cluster"))
import clusterlib as c  # noqa: E402


def main():
    n = int(sys.argv[2])
    counts = [1, 2, 4, 8]
    rows = []

    def run(env, lab):
        m, api = lab.add_host("m"), lab.add_host("api")
        whosts = [lab.add_host("w%d" % i) for i in range(1, max(counts) + 1)]
        lab.check_isolation()
        for k, nw in enumerate(counts):
            s = c.ApiServer(lab, api, name="api%d" % nw,
                            port=c.API_PORT + k)
            job = c.Job(lab, m, s, n, "--rate", "1000000/s",
                        "--max-in-flight", "0", name="s%d" % nw).start()
            for i in range(nw):
                job.worker(whosts[i], "w%d" % (i + 1), "--concurrency", "16")
            job.finish(seconds=600)
            st = s.stats()
            span = st["last_t"] - st["first_t"]
            rows.append({"workers": nw, "hosts": nw, "items": n,
                         "requests": st["requests"],
                         "items_per_s": (st["requests"] - 1) / span
                         if span > 0 else 0.0})
            s.proc.kill()

    c.prepare("bench-scaleout")
    ok = c.run_in_lab("bench-scaleout", run)
    if ok:
        print("BENCH-SCALEOUT " + json.dumps(rows), flush=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
