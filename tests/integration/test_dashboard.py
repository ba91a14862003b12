"""The dashboard and its metrics (issue 16): /healthz; /metrics carries
build info, process_*, calls by status class and a latency histogram, and
never a -1; --metrics-textfile; the page at / loaded in headless Chromium
during a job shows the numbers /status has, and they move; a page without
--dashboard-token offers no buttons and its POSTs are refused (403); with
it, POST /api/rate and /api/pause act on the job. deploy/grafana/fanout.json
parses.

Chromium is Debian's `chromium`, installed with deploy/install-deps.sh
when missing (as root, as .ci/run runs); these tests skip with a message
only when it cannot be installed. It is only ever pointed at 127.0.0.1, with
every background service off and every other host unresolvable.
A screenshot of the page is left in the build directory (dashboard.png).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def get(url):
    """(status, headers, body) of a GET, HTTP errors included."""
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def post(url, body=None, token=None):
    """(status, parsed JSON body) of a POST."""
    data = json.dumps(body or {}).encode()
    req = urllib.request.Request(url, data=data, method="POST")
    req.add_header("Content-Type", "application/json")
    if token is not None:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def status(base):
    return json.loads(get(base + "/status")[2])


def check_no_unknowns(text):
    """No -1 sentinel, no negative value, no NaN anywhere."""
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        value = line.rsplit(" ", 1)[1]
        assert not value.startswith("-") and value.lower() != "nan", line
    assert " -1" not in text


# ---- Chromium ---------------------------------------------------------------

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--no-first-run", "--no-default-browser-check", "--disable-sync",
    "--disable-background-networking", "--disable-component-update",
    "--disable-default-apps", "--disable-extensions",
    "--metrics-recording-only", "--disable-domain-reliability",
    "--disable-client-side-phishing-detection", "--disable-breakpad",
    "--disable-features=Translate,OptimizationHints,MediaRouter,"
    "AutofillServerCommunication,CertificateTransparencyComponentUpdater",
    # Nothing but loopback resolves, whatever the page or Chromium tries.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--proxy-server=direct://", "--hide-scrollbars",
]
_chromium = None


def chromium():
    """The Chromium binary, installing Debian's package once if missing;
    None (with the reason printed) when it cannot be had."""
    global _chromium
    if _chromium is not None:
        return _chromium or None
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        script = os.path.join(ROOT, "deploy", "install-deps.sh")
        r = subprocess.run([script, "chromium"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=900)
        found = shutil.which("chromium")
        if not found:
            print("SKIP: Chromium is not installed and could not be "
                  "(deploy/install-deps.sh chromium said: %s)"
                  % r.stdout.decode(errors="replace").strip()[-400:])
    _chromium = found or ""
    return found


def browse(env, url, *args, budget_ms=3000):
    """Runs headless Chromium on url (127.0.0.1 only) with a virtual time
    budget; returns its stdout."""
    assert url.startswith("http://127.0.0.1:"), url
    argv = [chromium()] + CHROMIUM_FLAGS + [
        "--user-data-dir=" + env.path("chromium-profile"),
        "--virtual-time-budget=%d" % budget_ms] + list(args) + [url]
    with open(env.path("chromium.log"), "ab") as log:
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=log,
                           timeout=90 * h.SCALE)
    return r.stdout.decode(errors="replace")


def dom_text(dom, elem_id):
    m = re.search(r'id="%s"[^>]*>([^<]*)<' % re.escape(elem_id), dom)
    assert m, "no #%s in the page:\n%s" % (elem_id, dom[:3000])
    return m.group(1)


def dom_int(dom, elem_id):
    return int(dom_text(dom, elem_id).replace(",", ""))


# ---- tests ------------------------------------------------------------------


def test_healthz_metrics_and_textfile(env):
    s = env.server("--rate", "40/s", "--fail-pct", "15", "--latency-ms", "5")
    n = 160
    items = env.write_items("items.jsonl", n)
    prom = env.path("textfile", "fanout.prom")
    os.makedirs(os.path.dirname(prom))
    m = env.master("--input", items, "--out", env.path("out"), "--url",
                   s.base + "/x/{id}", "--rate", "40/s", "--max-attempts",
                   "2", "--backoff-base", "20", "--metrics", "127.0.0.1:0",
                   "--metrics-textfile", prom, expect=(0, 1))
    ep = m.wait_ready()
    base = ep["metrics"]
    st, hdr, body = get(base + "/healthz")
    assert st == 200 and body == "ok\n", (st, body)
    env.worker(ep["control"])
    env.worker(ep["control"])
    h.wait_for(lambda: status(base)["items"] >= 40, 30, "40 items")
    st, hdr, text = get(base + "/metrics")
    assert st == 200
    check_no_unknowns(text)
    v = h.prom_samples(text)
    build = [k for k in v if k.startswith("fanout_build_info{")]
    assert len(build) == 1 and v[build[0]] == 1, build
    assert 'version="' in build[0] and 'protocol="' in build[0], build
    assert v["process_resident_memory_bytes"] > 1 << 20
    assert v["process_open_fds"] > 3
    assert "process_cpu_seconds_total" in v
    assert abs(v["process_start_time_seconds"] - time.time()) < 600
    classes = ["2xx", "3xx", "4xx", "5xx", "none"]
    calls = {c: v['fanout_calls_total{class="%s"}' % c] for c in classes}
    assert calls["2xx"] > 0, calls
    inf = v['fanout_call_latency_seconds_bucket{le="+Inf"}']
    assert inf == v["fanout_call_latency_seconds_count"] == sum(
        calls.values()), (inf, calls)
    assert v["fanout_call_latency_seconds_sum"] >= 0.004 * inf
    assert "# TYPE fanout_call_latency_seconds histogram" in text
    assert "fanout_retries_total" in v and "fanout_operator_paused" in v
    assert v["fanout_items_expected"] == n
    # The dashboard's figures in /status.
    j = status(base)
    assert j["controls"] is False and j["limit_per_s"] == 40
    assert set(j["calls"]) == set(classes)
    assert j["latency_ms"]["p50"] > 0
    hist = json.loads(get(base + "/history")[2])
    assert len(hist["at_ms"]) == len(hist["calls_per_s"]) >= 1, hist
    status_code = m.proc.wait(60)
    j_fail = h.results(env.path("out"))
    failed = [r for r in j_fail if r["status"] == "failed"]
    assert status_code == (1 if failed else 0)
    # The final metrics for node_exporter: whole, no process_*, no -1.
    with open(prom) as f:
        final = f.read()
    check_no_unknowns(final)
    fv = h.prom_samples(final)
    assert not [k for k in fv if k.startswith("process_")]
    assert fv["fanout_job_finished"] == 1
    assert fv["fanout_job_exit_status"] == status_code
    assert fv['fanout_items_total{status="ok"}'] + \
        fv['fanout_items_total{status="failed"}'] == n
    assert fv["fanout_call_latency_seconds_count"] == n
    assert not os.path.exists(prom + ".tmp")
    h.report("fanout_calls_total at the end: %s" % {
        c: fv['fanout_calls_total{class="%s"}' % c] for c in classes})


def test_stream_input_has_no_unknown_values(env):
    """Stdin: the total and the source lag are unknown, so those series
    are absent rather than -1."""
    s = env.server()
    m = env.master("--input", "-", "--out", env.path("out"), "--url",
                   s.base + "/x/{id}", "--metrics", "127.0.0.1:0",
                   stdin=subprocess.PIPE, wait=False)
    for i in range(5):
        m.proc.p.stdin.write(b'{"id":"s%d"}\n' % i)
    m.proc.p.stdin.flush()
    ep = m.wait_ready()
    env.worker(ep["control"])
    base = ep["metrics"]
    h.wait_for(lambda: status(base)["items"] >= 5, 30, "5 items")
    text = get(base + "/metrics")[2]
    check_no_unknowns(text)
    v = h.prom_samples(text)
    assert "fanout_items_expected" not in v and \
        "fanout_source_lag_bytes" not in v, text
    j = status(base)
    assert j["progress"] == -1 and j["eta_s"] is None
    m.proc.p.stdin.close()
    assert m.proc.wait(30) == 0


def test_page_in_chromium_follows_status(env):
    if not chromium():
        return
    s = env.server("--rate", "60/s", "--fail-pct", "10")
    n = 500
    items = env.write_items("items.jsonl", n)
    m = env.master("--input", items, "--out", env.path("out"), "--url",
                   s.base + "/x/{id}", "--rate", "20/s", "--max-attempts",
                   "1", "--metrics", "127.0.0.1:0")
    ep = m.wait_ready()
    base = ep["metrics"]
    st, hdr, page = get(base + "/")
    assert st == 200 and hdr["Content-Type"].startswith("text/html")
    csp = hdr["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp, csp
    # Self-contained: no external script, style, image or font.
    assert not re.search(r'(src|href)="(https?:)?//', page), "external asset"
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    env.worker(ep["control"])
    env.worker(ep["control"])
    h.wait_for(lambda: status(base)["items"] >= 20, 30, "20 items")

    def snapshot():
        before = status(base)
        dom = browse(env, base + "/", "--dump-dom")
        after = status(base)
        return before, dom, after

    before, dom, after = snapshot()
    assert int(re.search(r'data-polls="(\d+)"', dom).group(1)) >= 2, \
        "the page polled /status fewer than twice in 3 s"
    items1 = dom_int(dom, "items")
    assert before["items"] <= items1 <= after["items"], \
        (before["items"], items1, after["items"])
    assert before["items_ok"] <= dom_int(dom, "ok") <= after["items_ok"]
    assert dom_int(dom, "total") == n
    assert dom_text(dom, "rate") == "20/s"
    assert dom_int(dom, "workers-count") == len(after["workers"]) == 2
    assert len(re.findall(r'<tr class="worker"', dom)) == 2
    for w in after["workers"]:
        assert w["id"] in dom, w["id"]
    # No operator credential: no buttons at all.
    assert 'id="pause"' not in dom and 'id="set-rate"' not in dom
    assert "<button" not in dom
    st, j = post(base + "/api/pause")
    assert st == 403 and "dashboard-token" in j["error"], (st, j)
    assert post(base + "/api/rate", {"rate": "1/s"})[0] == 403
    assert status(base)["rate"] == "20/s" and not status(base)["paused_by_operator"]
    fails = [f for f in after["failures"]]
    if fails:
        assert fails[0]["error"], fails[0]
    # The numbers move.
    h.wait_for(lambda: status(base)["items"] >= items1 + 20, 30,
               "20 more items")
    before, dom2, after = snapshot()
    items2 = dom_int(dom2, "items")
    assert items2 > items1 and before["items"] <= items2 <= after["items"]
    if after["failures"]:
        assert len(re.findall(r'<tr class="failure"', dom2)) >= 1
    # A screenshot for people (and the README), kept in the build dir.
    shot = os.path.join(os.path.abspath(h.BIN), "dashboard.png")
    if os.path.exists(shot):
        os.unlink(shot)
    browse(env, base + "/", "--window-size=1280,900",
           "--screenshot=" + shot, budget_ms=4000)
    with open(shot, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    h.report("dashboard screenshot: %s (items %d -> %d in the page)"
             % (shot, items1, items2))
    m.proc.kill()


def test_token_unlocks_pause_resume_and_rate(env):
    s = env.server()
    items = env.write_items("items.jsonl", 400)
    out = env.path("out")
    token = "t0k3n-" + os.urandom(12).hex()
    tf = env.path("dash.token")
    with open(tf, "w") as f:
        f.write(token + "\n")
    os.chmod(tf, 0o600)
    # Misuse is a usage error naming the flag.
    bad = env.path("short.token")
    with open(bad, "w") as f:
        f.write("short\n")
    for args, says in ((["--dashboard-token", tf], "--metrics"),
                       (["--dashboard-token", bad, "--metrics",
                         "127.0.0.1:0"], "--dashboard-token")):
        p = env.master("--input", items, "--out", env.path("o2"), "--url",
                       s.base + "/x/{id}", *args, name="bad", expect=2)
        assert p.proc.wait(20, expect=2) == 2
        assert says in p.proc.text(), p.proc.text()
    m = env.master("--input", items, "--out", out, "--url",
                   s.base + "/x/{id}", "--rate", "10/s", "--metrics",
                   "127.0.0.1:0", "--dashboard-token", tf)
    ep = m.wait_ready()
    base = ep["metrics"]
    assert status(base)["controls"] is True
    env.worker(ep["control"])
    h.wait_for(lambda: status(base)["items"] >= 5, 30, "5 items")
    assert post(base + "/api/pause")[0] == 401
    assert post(base + "/api/pause", token="wrong" + token)[0] == 401
    assert post(base + "/api/pause", token=token[:-1])[0] == 401
    st, j = post(base + "/api/rate", {"rate": "nonsense"}, token=token)
    assert st == 400 and not j["ok"], (st, j)
    st, j = post(base + "/api/rate", {"rate": "25/s"}, token=token)
    assert st == 200 and j["ok"] and j["rate"] == "25/s", (st, j)
    j = status(base)
    assert j["rate"] == "25/s" and j["limit_per_s"] == 25, j
    v = h.prom_samples(get(base + "/metrics")[2])
    assert v["fanout_rate_limit_per_second"] == 25
    st, j = post(base + "/api/pause", token=token)
    assert st == 200 and j["paused_by_operator"] is True, (st, j)
    assert h.prom_samples(get(base + "/metrics")[2])["fanout_operator_paused"] == 1
    # Paused: once the calls already granted are done, nothing moves.
    time.sleep(1.0)
    held_at = status(base)["items"]
    time.sleep(1.0)
    assert status(base)["items"] == held_at
    if chromium():
        dom = browse(env, base + "/", "--dump-dom")
        assert 'id="pause"' in dom and 'id="resume"' in dom and \
            'id="set-rate"' in dom, dom[:2000]
        assert "paused by operator" in dom
    st, j = post(base + "/api/resume", token=token)
    assert st == 200 and j["paused_by_operator"] is False
    assert get(base + "/api/pause")[0] == 405
    assert m.proc.wait(60) == 0
    log = m.proc.text()
    assert "dashboard.command" in log and token not in log


def raw_request(port, data):
    """Sends raw bytes; returns the status line and the whole answer."""
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        out = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            out += d
    return out.split(b"\r\n", 1)[0].decode(), out


def test_http_server_refuses_what_it_should(env):
    s = env.server()
    items = env.write_items("items.jsonl", 5)
    m = env.master("--input", items, "--out", env.path("out"), "--url",
                   s.base + "/x/{id}", "--metrics", "127.0.0.1:0")
    port = int(m.wait_ready()["metrics"].rsplit(":", 1)[1])
    for req, want in (
            (b"HEAD / HTTP/1.1\r\n\r\n", "HTTP/1.1 200 OK"),
            (b"GET /healthz HTTP/1.0\n\n", "HTTP/1.1 200 OK"),
            (b"DELETE / HTTP/1.1\r\n\r\n", "HTTP/1.1 405 Method Not Allowed"),
            (b"GARBAGE\r\n\r\n", "HTTP/1.1 400 Bad Request"),
            (b"POST /api/rate HTTP/1.1\r\nContent-Length: x\r\n\r\n",
             "HTTP/1.1 400 Bad Request"),
            (b"POST /api/rate HTTP/1.1\r\nContent-Length: 99999\r\n\r\n",
             "HTTP/1.1 413 Content Too Large"),
            (b"POST /api/pause HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
             "HTTP/1.1 403 Forbidden"),
            (b"POST /metrics HTTP/1.1\r\n\r\n",
             "HTTP/1.1 405 Method Not Allowed")):
        line, whole = raw_request(port, req)
        assert line == want, (req, line)
        if req.startswith(b"HEAD"):
            assert whole.endswith(b"\r\n\r\n"), "HEAD answered a body"
    assert get("http://127.0.0.1:%d/healthz" % port)[0] == 200
    env.worker(m.control)
    assert m.proc.wait(30) == 0


def test_grafana_dashboard_is_valid_json(env):
    path = os.path.join(ROOT, "deploy", "grafana", "fanout.json")
    with open(path) as f:
        d = json.load(f)
    assert d["title"] and d["panels"], "no panels"
    exprs = [t["expr"] for p in d["panels"] for t in p.get("targets", [])]
    text = " ".join(exprs)
    for series in ("fanout_calls_per_second", "fanout_rate_limit_per_second",
                   "fanout_effective_rate_per_second", "fanout_items_total",
                   "fanout_throttled_total", "fanout_retries_total",
                   "fanout_call_latency_seconds_bucket", "fanout_workers",
                   "process_resident_memory_bytes"):
        assert series in text, "no panel uses " + series


if __name__ == "__main__":
    h.main(globals())
