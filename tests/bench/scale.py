"""Scale figures for the durability work: for each input size, the master's
peak RSS, the state store's peak size (db + WAL), results throughput with no
rate limit, and after a kill -9 at the end the time from a master restart to
its first dispatch. Usage: scale.py [BUILD_DIR] [N ...]"""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))

BIN = sys.argv[1] if len(sys.argv) > 1 else "build"
SIZES = [int(x) for x in sys.argv[2:]] or [100000, 1000000]


def gen(path, n):
    with open(path, "w") as f:
        chunk = []
        for i in range(1, n + 1):
            chunk.append('{"id":"it-%d","n":%d,"pad":"abcdefghijklmnop"}\n'
                         % (i, i))
            if len(chunk) == 10000:
                f.write("".join(chunk))
                chunk = []
        f.write("".join(chunk))


def wait_file(path, secs):
    end = time.time() + secs
    while time.time() < end:
        if os.path.exists(path) and os.path.getsize(path) > 0:
            return open(path).read()
        time.sleep(0.02)
    raise SystemExit("timed out waiting for " + path)


def lines(path):
    try:
        with open(path, "rb") as f:
            return sum(buf.count(b"\n") for buf in iter(lambda: f.read(1 << 20), b""))
    except OSError:
        return 0


def run(n, workdir):
    items = os.path.join(workdir, "items.jsonl")
    extra = max(20000, n // 20)
    gen(items, n + extra)
    pf = os.path.join(workdir, "port")
    srv = subprocess.Popen([os.path.join(BIN, "fanout-testserver"), "--port",
                            "0", "--port-file", pf],
                           stderr=subprocess.DEVNULL)
    port = int(wait_file(pf, 10))
    out = os.path.join(workdir, "out")
    args = [os.path.join(BIN, "fanout-master"), "--input", items, "--out", out,
            "--url", "http://127.0.0.1:%d/i/{id}" % port, "--spawn-workers",
            "2", "--worker-concurrency", "32", "--max-in-flight", "0",
            "--progress", "off", "--bind", "tcp://127.0.0.1:0", "--log-level",
            "warn"]
    db = os.path.join(out, "state.db")
    t0 = time.time()
    m = subprocess.Popen(args, stderr=subprocess.DEVNULL)
    peak_db = 0
    results = os.path.join(out, "results.jsonl")
    last_check = 0
    while True:
        time.sleep(0.25)
        size = sum(os.path.getsize(p) for p in (db, db + "-wal")
                   if os.path.exists(p))
        peak_db = max(peak_db, size)
        if time.time() - last_check > 2:
            last_check = time.time()
            if lines(results) >= n:
                break
        if m.poll() is not None:
            break
    elapsed = time.time() - t0
    done = lines(results)
    # kill -9 at n items, then measure the restart.
    m.send_signal(signal.SIGKILL)
    _, st, ru = os.wait4(m.pid, 0)
    rss_kb = ru.ru_maxrss
    t1 = time.time()
    log = os.path.join(workdir, "restart.log")
    with open(log, "w") as lf:
        m2 = subprocess.Popen(args[:-2] + ["--log-level", "info"],
                              stderr=lf)
        r = m2.wait(timeout=600)
    text = open(log).read()
    mt = re.search(r"first item dispatched ([0-9.]+) s after start", text)
    first = float(mt.group(1)) if mt else float("nan")
    srv.send_signal(signal.SIGTERM)
    srv.wait()
    return {"items": n, "done_at_kill": done, "items_per_s": done / elapsed,
            "master_peak_rss_mib": rss_kb / 1024.0,
            "state_peak_mib": peak_db / 1048576.0,
            "restart_to_first_dispatch_s": first, "resume_exit": r,
            "final_results": lines(results), "expected": n + extra}


def main():
    rows = []
    for n in SIZES:
        with tempfile.TemporaryDirectory(prefix="fanout-scale-") as d:
            rows.append(run(n, d))
            print(json.dumps(rows[-1]), flush=True)
    print("\n| items | items/s (no limit) | master peak RSS MiB | state peak "
          "MiB | restart to first dispatch s | exactly once |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print("| %d | %.0f | %.1f | %.2f | %.3f | %s |" % (
            r["items"], r["items_per_s"], r["master_peak_rss_mib"],
            r["state_peak_mib"], r["restart_to_first_dispatch_s"],
            "yes" if r["final_results"] == r["expected"] else "NO"))


if __name__ == "__main__":
    main()
