"""Scale-out on the namespace network: the same job with 2, 4 and 8
workers spread over four worker hosts, each against a fresh strict test
API; prints the rate achieved as a fraction of the limit.

    python3 tests/cluster/scaleout.py [--workers 2,4,8] [--rate 400]
        [--seconds 8] [--latency-ms 20] [--concurrency 16]

Checks every run (every id once, zero 429s, max_in_1s <= limit); does not
assert the fraction, which depends on how busy the machine is.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import clusterlib as c  # noqa: E402
from clusterlib import h  # noqa: E402


def run(args, env, lab):
    m, api = lab.add_host("m"), lab.add_host("api")
    whosts = [lab.add_host("w%d" % i) for i in range(1, 5)]
    limit = args.rate
    rows = []
    for k, nw in enumerate(args.workers):
        n = limit * args.seconds
        s = c.ApiServer(lab, api, "--rate", "%d/s" % limit, "--latency-ms",
                        str(args.latency_ms), name="api%d" % nw,
                        port=c.API_PORT + k)
        job = c.Job(lab, m, s, n, "--rate", "%d/s" % limit,
                    name="x%d" % nw).start()
        used = set()
        for i in range(nw):
            host = whosts[i % len(whosts)]
            used.add(host.name)
            job.worker(host, "%s-%d" % (host.name, i // len(whosts)),
                       "--concurrency", str(args.concurrency))
        job.finish(seconds=120 + 4 * args.seconds)
        st = c.check_limit(s, limit)
        rate = c.achieved_rate(s)
        rows.append((nw, len(used), n, rate, rate / limit, st["max_in_1s"],
                     st["status"].get("429", 0), c.repeats(s)))
        s.proc.kill()
    print()
    print("scale-out: limit %d/s, API latency %d ms, worker concurrency %d, "
          "%d s of work per run" % (limit, args.latency_ms, args.concurrency,
                                    args.seconds))
    print("%-8s %-6s %-6s %-9s %-9s %-10s %-5s %s" % (
        "workers", "hosts", "calls", "rate/s", "of limit", "max_in_1s",
        "429s", "repeats"))
    for r in rows:
        print("%-8d %-6d %-6d %-9.1f %-9.3f %-10d %-5d %d" % r)
    for r in rows:
        h.report("scale-out: %d workers on %d hosts: %.1f/s = %.3f of %d/s, "
                 "max_in_1s %d, 429s %d" % (r[0], r[1], r[3], r[4], limit,
                                            r[5], r[6]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", default=[2, 4, 8],
                    type=lambda s: [int(x) for x in s.split(",")])
    ap.add_argument("--rate", type=int, default=400)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--latency-ms", type=int, default=20)
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    c.prepare("scaleout")
    ok = c.run_in_lab("scaleout", lambda env, lab: run(args, env, lab))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
