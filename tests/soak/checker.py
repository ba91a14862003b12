"""The soak's checker: every promise, over the whole history of a run.

It reads only what the run left behind: the input ids, the final
results.jsonl, when the soak first saw each record (first_seen, wall
time, polled every 0.2 s while the job ran: the record was committed at
or before then), the test server's request log (one line per request:
arrival time, path, status, Idempotency-Key), the faults the nemesis
injected, the master's resident memory sampled every second, and the
parameters of the run. check() returns a list of Verdicts; figures holds
what the report prints.

Terms:

- A call of an item is *repeated* when an earlier call of the same item
  got a 2xx from the API (the work was done). A call after a 5xx, a 429
  or a call the API never answered is a retry, which the contract allows.
- A call is *in flight* at a moment T when it reached the API in
  [T - latency - IN_FLIGHT_SLACK_S, T]: the API may have answered it, and
  its result may still be on its way to the master (IN_FLIGHT_SLACK_S
  covers the way back and the group commit).
- The rate bound while a fault delays packets (nemesis.DELAYING, and
  DELAY_TAIL_S after it heals): calls held back by a cut cable, lost
  segments or a stopped process can reach the API together, late, and so
  the same window as calls made on time. The global --max-in-flight cap
  bounds how many calls can be held back at once, so the API sees at most
  limit + max_in_flight arrivals in any window of its length, and at most
  max_in_flight 429s per such fault. Outside those spans: no 429 at all,
  and so at most the limit in every window.
"""
import bisect
import urllib.parse

from nemesis import DELAYING, DELAY_TAIL_S, LOSING

IN_FLIGHT_SLACK_S = 1.0
# A killed master has granted tokens up to GRANT_HORIZON_NS (master.c, 250
# ms) ahead, spent up to token_slack_ms (5 ms) late: workers that have not
# noticed the death make those calls after the kill, and their results can
# only reach a later life (resent, kept as orphans until the message comes
# back). Calls arriving this long after a master kill were in flight at it.
MASTER_GRANTED_AHEAD_S = 0.25 + 0.005
MIB = 1024


class Verdict:
    def __init__(self, name, ok, detail):
        self.name, self.ok, self.detail = name, ok, detail

    def __repr__(self):
        return "%s %s: %s" % ("ok  " if self.ok else "FAIL", self.name,
                              self.detail)


def item_of(path, prefix="/items/"):
    p = path.split("?", 1)[0]
    if not p.startswith(prefix):
        return None
    return urllib.parse.unquote(p[len(prefix):].split("/", 1)[0])


class Checker:
    def __init__(self, history):
        self.h = history
        self.p = history["params"]
        self.figures = {}
        self.calls = {}            # id -> [request], by arrival
        for r in sorted(history["requests"], key=lambda r: r["t"]):
            k = item_of(r["path"])
            if k is not None:
                self.calls.setdefault(k, []).append(r)

    def check(self):
        return [self.exactly_once(), self.idempotency_keys(),
                self.no_call_after_commit(), self.repeats_bounded(),
                self.rate_windows(), self.memory_flat(), self.recovery(),
                self.processes()]

    # ---- results --------------------------------------------------------

    def exactly_once(self):
        seen = {}
        for r in self.h["records"]:
            seen[r["id"]] = seen.get(r["id"], 0) + 1
        ids = set(self.h["ids"])
        dups = sorted(k for k, v in seen.items() if v > 1)
        missing = sorted(i for i in ids if i not in seen)
        extra = sorted(k for k in seen if k not in ids)
        st = {}
        for r in self.h["records"]:
            st[r["status"]] = st.get(r["status"], 0) + 1
        self.figures["items"] = len(ids)
        self.figures["record_status"] = st
        ok = not dups and not missing and not extra
        return Verdict("every input item has exactly one record", ok,
                       "%d items, records by status %s; %d duplicated %s, "
                       "%d missing %s, %d unexpected %s"
                       % (len(ids), st, len(dups), dups[:5], len(missing),
                          missing[:5], len(extra), extra[:5]))

    def idempotency_keys(self):
        bad = []
        for k, calls in self.calls.items():
            keys = {c["idem"] for c in calls}
            if len(keys) != 1 or not calls[0]["idem"]:
                bad.append((k, sorted(keys)))
        return Verdict("every call of an item carries its first call's "
                       "Idempotency-Key", not bad,
                       "%d items with other keys %s" % (len(bad), bad[:3]))

    # ---- calls ----------------------------------------------------------

    def _spans(self, kinds, tail=0.0):
        return [(f["start"], f["end"] + tail, f) for f in self.h["faults"]
                if f["kind"] in kinds and f["start"] is not None]

    def no_call_after_commit(self):
        """A call that reached the API after the soak had seen the item's
        record. The one exception: a call held back by a delaying fault
        (it arrived while one lasted, or within its tail) was made before
        the commit and delivered late; those are counted and reported."""
        delaying = self._spans(DELAYING, DELAY_TAIL_S)
        first_seen = self.h["first_seen"]
        after, held = [], []
        for k, calls in self.calls.items():
            seen = first_seen.get(k)
            if seen is None:
                continue
            for c in calls:
                if c["wall"] > seen:
                    f = next((f for a, b, f in delaying
                              if a <= c["wall"] <= b), None)
                    if f:
                        held.append((k, round(c["wall"] - seen, 3),
                                     "#%d %s" % (f["seq"], f["kind"])))
                    else:
                        after.append((k, round(c["wall"] - seen, 3),
                                      c["status"]))
        self.figures["calls_after_commit_held_by_network"] = len(held)
        return Verdict("no item was called again after its record "
                       "committed", not after,
                       "%d calls after the record was seen (id, seconds "
                       "after, status) %s; %d more arrived while a fault "
                       "held packets back %s" % (len(after), after[:5],
                                                 len(held), held[:5]))

    def repeats_bounded(self):
        """Each repeated call is explained by a fault that could lose the
        result of the earlier answered call: that call was in flight when
        the fault struck. For a delaying fault, the calls it held back are
        in flight too: those reaching the API while it lasts and in the
        DELAY_TAIL_S after it heals (a cut cable or a stopped worker
        releases them at once); a full disk can lose results while it
        lasts. A master kill also covers the calls made after it on tokens it
        had granted (MASTER_GRANTED_AHEAD_S). Per fault, the repeats it
        explains are at most its calls in flight."""
        lat = self.p["latency_s"] + IN_FLIGHT_SLACK_S
        windows = []
        for f in self.h["faults"]:
            if f["kind"] not in LOSING or f["start"] is None:
                continue
            if f["kind"] in DELAYING:
                hi = f["end"] + DELAY_TAIL_S
            elif f["kind"] == "disk_full":
                hi = f["end"]
            elif f["kind"] == "kill_master":
                hi = f["start"] + MASTER_GRANTED_AHEAD_S
            else:
                hi = f["start"]
            windows.append([f["start"] - lat, hi + 0.05, f, 0, 0])
        arrivals = sorted(c["wall"] for calls in self.calls.values()
                          for c in calls)
        for w in windows:
            w[3] = (bisect.bisect_right(arrivals, w[1])
                    - bisect.bisect_left(arrivals, w[0]))
        total, unexplained = 0, []
        for k, calls in self.calls.items():
            answered = None
            for c in calls:
                if answered is not None:
                    total += 1
                    w = next((w for w in windows
                              if w[0] <= answered["wall"] <= w[1]), None)
                    if w is None:
                        unexplained.append((k, round(answered["wall"], 3),
                                            round(c["wall"], 3)))
                    else:
                        w[4] += 1
                if 200 <= c["status"] < 300 and answered is None:
                    answered = c
        over = [(w[2]["seq"], w[2]["kind"], w[4], w[3]) for w in windows
                if w[4] > w[3]]
        by_kind = {}
        for w in windows:
            d = by_kind.setdefault(w[2]["kind"], [0, 0])
            d[0] += w[4]
            d[1] += w[3]
        self.figures["repeats"] = total
        self.figures["repeats_by_fault_kind"] = {
            k: {"repeats": v[0], "in_flight_at_faults": v[1]}
            for k, v in sorted(by_kind.items())}
        self.figures["repeats_unexplained"] = unexplained[:10]
        mk = by_kind.get("kill_master", [0, 0])
        ok = not unexplained and not over
        return Verdict("repeated calls are bounded by the calls in flight "
                       "at the faults that lost them", ok,
                       "%d repeated calls; master kills: %d repeats of %d "
                       "calls in flight; %d repeats not explained by any "
                       "fault (id, answered at, called again at) %s; faults "
                       "with more repeats than calls in flight %s"
                       % (total, mk[0], mk[1], len(unexplained),
                          unexplained[:5], over))

    def rate_windows(self):
        """Sliding windows of the API's own length over every arrival,
        429s included (the API saw them)."""
        limit, win = self.p["limit"], self.p["window_s"]
        cap = self.p["max_in_flight"]
        reqs = sorted(self.h["requests"], key=lambda r: r["t"])
        t = [r["t"] for r in reqs]
        spans = self._spans(DELAYING, DELAY_TAIL_S)

        def span_of(r):
            return next((f for a, b, f in spans if a <= r["wall"] <= b),
                        None)
        worst_out = worst_in = (0, None)
        lo = 0
        for i, r in enumerate(reqs):
            while t[lo] <= t[i] - win:
                lo += 1
            n = i - lo + 1
            f = span_of(r)
            if f is None and n > worst_out[0]:
                worst_out = (n, r["wall"])
            if f is not None and n > worst_in[0]:
                worst_in = (n, r["wall"])
        n429_out, n429_in = [], {}
        for r in reqs:
            if r["status"] != 429:
                continue
            f = span_of(r)
            if f is None:
                n429_out.append(r)
            else:
                n429_in[f["seq"]] = n429_in.get(f["seq"], 0) + 1
        self.figures["worst_window"] = {
            "outside_delaying_faults": worst_out[0],
            "during_delaying_faults": worst_in[0], "limit": limit,
            "window_s": win, "bound_during": limit + cap}
        self.figures["429s"] = {"outside_delaying_faults": len(n429_out),
                                "during_delaying_faults_by_fault": n429_in}
        over_in = {k: v for k, v in n429_in.items() if v > cap}
        ok = (not n429_out and worst_out[0] <= limit and
              worst_in[0] <= limit + cap and not over_in)
        where = ", ".join("%.3f %s" % (r["wall"], r["path"])
                          for r in n429_out[:5])
        return Verdict("the API never saw more than the limit in a window "
                       "of its length (bound while a fault delays)", ok,
                       "worst window %d outside delaying faults (limit %d "
                       "per %gs), %d during them (bound %d); 429s outside "
                       "%d [%s], during, by fault %s (bound %d each)"
                       % (worst_out[0], limit, win, worst_in[0],
                          limit + cap, len(n429_out), where, n429_in, cap))

    # ---- the processes --------------------------------------------------

    def memory_flat(self):
        """Per master life of at least 30 s, after a 5 s warm-up: the
        peak of the last third exceeds the peak of the first third by at
        most max(4 MiB, 10%)."""
        lives = {}
        for wall, pid, kb in self.h["rss"]:
            lives.setdefault(pid, []).append((wall, kb))
        growth, peak = [], 0
        for pid, s in lives.items():
            peak = max(peak, max(kb for _, kb in s))
            s = [x for x in s if x[0] >= s[0][0] + 5]
            if len(s) < 25 or s[-1][0] - s[0][0] < 25:
                continue
            third = len(s) // 3
            first = max(kb for _, kb in s[:third])
            last = max(kb for _, kb in s[-third:])
            growth.append((pid, round(s[-1][0] - s[0][0]), first, last))
        bad = [g for g in growth if g[3] - g[2] > max(4 * MIB, g[2] // 10)]
        longest = max(growth, key=lambda g: g[1]) if growth else None
        self.figures["memory"] = {
            "peak_rss_kib": peak, "lives_checked": len(growth),
            "longest_life": longest and {
                "seconds": longest[1], "first_third_peak_kib": longest[2],
                "last_third_peak_kib": longest[3]}}
        return Verdict("the master's memory stayed flat", not bad,
                       "%d master lives of 30 s or more checked, peak RSS "
                       "%.1f MiB; longest %s; grew: %s"
                       % (len(growth), peak / MIB, longest, bad))

    def recovery(self):
        bound = self.p["recovery_bound_s"]
        times, bad = [], []
        for f in self.h["faults"]:
            if f["end"] is None:
                continue
            if f["recovered"] is None:
                bad.append((f["seq"], f["kind"], None))
                continue
            dt = f["recovered"] - f["end"]
            times.append((f["seq"], f["kind"], round(dt, 2)))
            if dt > bound:
                bad.append((f["seq"], f["kind"], round(dt, 2)))
        self.figures["recovery_s"] = times
        return Verdict("every fault was followed by progress within %gs"
                       % bound, not bad,
                       "slowest %s; over the bound or never %s"
                       % (max(times, key=lambda x: x[2]) if times else None,
                          bad))

    def processes(self):
        bad = self.h.get("process_problems", [])
        return Verdict("no process died unexpectedly, no sanitizer report",
                       not bad, "; ".join(bad[:5]) or "none")
