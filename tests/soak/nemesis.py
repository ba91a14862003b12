"""The soak's nemesis: from a seed, the faults and their moments.

A Nemesis draws faults from a deck holding every kind once (shuffled by
the seed, dealt again when empty), so even a short soak injects each kind,
and a long one injects each kind about as often as the others. Every
choice (the kind, the victim, how long, how much loss, the pause before
the next fault) comes from one random.Random(seed): the same seed gives
the same faults in the same order against the same processes. What the
programs do in between is not deterministic (threads, the kernel, the
clock), so a seed reproduces the attack, not every byte of the run.

A fault is injected by inject(), which returns once it is healed (a
killed process is left to the supervisor in soak.py, which restarts it as
systemd would). Each Fault records its start and end (wall time) for the
checker; the soak records when progress resumed after it.

The kinds, and what they stand for:

    kill_master    SIGKILL of the master (a crash, an OOM kill)
    kill_worker    SIGKILL of one worker
    kill_several   SIGKILL of two or three processes at once, the master
                   among them half of the time (a rack losing power)
    stop_worker    SIGSTOP of a worker for 1.5 to 3 leases, then SIGCONT
                   (a VM paused, a process swapped out, a GC pause)
    link_cut       a host's cable pulled at the switch, plugged in again
                   3 to 10 s later (a worker host or the master's)
    packet_loss    3 to 10 % of a host's packets dropped each way for 10
                   to 20 s (nftables numgen; this kernel has no netem)
    api_down       the API refuses connections and resets the open ones
                   for 3 to 10 s (a deploy, a crashed load balancer)
    disk_full      the --out file system (a small tmpfs) filled until a
                   write fails, held 3 to 8 s, then freed
    queue_restart  the queue server (Redis or Azurite) restarted (only
                   with a queue source)
"""
import random
import time

KINDS = ("kill_master", "kill_worker", "kill_several", "stop_worker",
         "link_cut", "packet_loss", "api_down", "disk_full", "queue_restart")

# Faults that can hold calls back in the network or in a stopped process
# and release them together: while one of these lasts (and for
# DELAY_TAIL_S after), the API may see more than the limit in a window,
# up to the bound the checker documents.
DELAYING = frozenset({"link_cut", "packet_loss", "stop_worker"})
DELAY_TAIL_S = 2.0

# Faults that can lose the answer of a call the API already served (the
# process holding it dies or is cut off past the lease), so that the item
# is called again: the checker attributes every repeated call to one.
LOSING = frozenset({"kill_master", "kill_worker", "kill_several",
                    "stop_worker", "link_cut", "packet_loss", "api_down",
                    "queue_restart", "disk_full"})


class Fault:
    """One injected fault: kind, its parameters, and when it began and
    ended (wall time; equal for an instant fault such as a kill)."""

    def __init__(self, seq, kind, params):
        self.seq, self.kind, self.params = seq, kind, params
        self.start = self.end = None
        self.recovered = None      # wall time of the first progress after
        self.note = ""             # what happened, in a few words

    def to_dict(self):
        return {"seq": self.seq, "kind": self.kind, "params": self.params,
                "start": self.start, "end": self.end,
                "recovered": self.recovered, "note": self.note}

    def describe(self):
        p = ", ".join("%s=%s" % kv for kv in sorted(self.params.items()))
        return "#%d %s(%s)" % (self.seq, self.kind, p)


class Nemesis:
    """Draws and injects faults against a soak.Cluster (the interface it
    uses: worker_ids(), kill_master(), kill_worker(wid), signal_worker(),
    link(), add_loss(), remove_loss(), api(up), fill_disk(), free_disk(),
    restart_queue(), worker_hosts, master_host, lease_s)."""

    def __init__(self, seed, cluster, kinds):
        self.rng = random.Random(seed)
        self.cluster = cluster
        self.kinds = [k for k in KINDS if k in kinds]
        self.deck = []
        self.faults = []

    def pause(self):
        """Seconds to wait before the next fault."""
        return self.rng.uniform(2.0, 8.0)

    def draw(self):
        """The next fault, with every parameter chosen now (so the run's
        fault sequence depends on the seed alone)."""
        if not self.deck:
            self.deck = list(self.kinds)
            self.rng.shuffle(self.deck)
        kind = self.deck.pop()
        r, c = self.rng, self.cluster
        wids = sorted(c.worker_specs)
        if kind == "kill_worker":
            p = {"worker": r.choice(wids)}
        elif kind == "kill_several":
            n = r.choice((2, 3))
            victims = r.sample(["master"] + wids, n)
            p = {"victims": sorted(victims)}
        elif kind == "stop_worker":
            p = {"worker": r.choice(wids),
                 "seconds": round(c.lease_s * r.uniform(1.5, 3.0), 2)}
        elif kind == "link_cut":
            p = {"host": r.choice(sorted(c.worker_hosts) + [c.master_host]),
                 "seconds": round(r.uniform(3, 10), 2)}
        elif kind == "packet_loss":
            p = {"host": r.choice(sorted(c.worker_hosts) + [c.master_host]),
                 "pct": r.randint(3, 10),
                 "seconds": round(r.uniform(10, 20), 2)}
        elif kind == "api_down":
            p = {"seconds": round(r.uniform(3, 10), 2)}
        elif kind == "disk_full":
            p = {"seconds": round(r.uniform(3, 8), 2)}
        else:
            p = {}
        f = Fault(len(self.faults) + 1, kind, p)
        self.faults.append(f)
        return f

    def inject(self, f):
        """Injects f and returns once it is healed."""
        c, p = self.cluster, f.params
        f.start = time.time()
        if f.kind == "kill_master":
            f.note = c.kill_master()
        elif f.kind == "kill_worker":
            f.note = c.kill_worker(p["worker"])
        elif f.kind == "kill_several":
            f.note = c.kill_several(p["victims"])
        elif f.kind == "stop_worker":
            f.note = c.stop_worker(p["worker"], p["seconds"])
        elif f.kind == "link_cut":
            c.link(p["host"], False)
            time.sleep(p["seconds"])
            c.link(p["host"], True)
        elif f.kind == "packet_loss":
            c.add_loss(p["host"], p["pct"])
            time.sleep(p["seconds"])
            f.note = c.remove_loss(p["host"])
        elif f.kind == "api_down":
            c.api(False)
            time.sleep(p["seconds"])
            c.api(True)
        elif f.kind == "disk_full":
            f.note = c.fill_disk()
            time.sleep(p["seconds"])
            c.free_disk()
        elif f.kind == "queue_restart":
            f.note = c.restart_queue()
        else:
            raise AssertionError("unknown fault %s" % f.kind)
        f.end = time.time()
        return f
