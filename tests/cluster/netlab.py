"""A small network of hosts built from Linux network namespaces.

    switch namespace  <tag>-sw : bridge br0, one port p-<host> per host
    host namespaces   <tag>-<host> : lo, eth0 (10.203.0.X/24), nothing else

<tag> is "focl<pid of the test>". Every interface is created directly inside
one of these namespaces (`ip -n NS link add ... peer ... netns OTHER`), so
the machine's own namespace never gets an interface, address or route in
the test subnet, and the bridge reaches nothing but the test hosts. Every
process of a test is started with `ip netns exec`; nothing is sent before
the namespaces exist.

Failures are modelled on the switch side, like a pulled cable:
link(host, False) takes the host's bridge port down, power_off(host) does
that and SIGKILLs every process in the host at once. add_loss() installs an
nftables table inside the host that drops a share of eth0's packets (this
kernel has no netem); delay comes from delayproxy.py.

Teardown (Lab.teardown, also run for leftovers of crashed runs by
remove_stale()) kills every process in our namespaces, deletes our nft
tables and the namespaces. A run's namespaces carry its pid, so a run never
removes the namespaces of another run that is still alive.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness as h  # noqa: E402

PREFIX = "focl"
SUBNET = "10.203.0"          # /24, lives only inside our namespaces
NFT_TABLE = "focl_loss"
IP = shutil.which("ip") or "/usr/sbin/ip"
NFT = shutil.which("nft") or "/usr/sbin/nft"
SETPRIV = shutil.which("setpriv")
NICE = int(os.environ.get("FANOUT_CLUSTER_NICE", "-10"))
NS_RE = re.compile(r"^%s(\d+)-" % PREFIX)
SHM = "/dev/shm"


def _ip(*args, check=True):
    r = subprocess.run([IP] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError("ip %s: %s" % (" ".join(args), r.stderr.strip()))
    return r


def list_namespaces():
    r = _ip("netns", "list", check=False)
    return [line.split()[0] for line in r.stdout.splitlines() if line.strip()]


def ns_pids(ns):
    r = _ip("netns", "pids", ns, check=False)
    return [int(p) for p in r.stdout.split() if p.isdigit()]


def _kill_all(pids):
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def destroy_namespace(ns):
    """Kills everything in ns (twice: a dying process may have forked),
    drops our nft table and deletes the namespace."""
    for _ in range(50):
        pids = ns_pids(ns)
        if not pids:
            break
        _kill_all(pids)
        end = time.monotonic() + 2
        while time.monotonic() < end and any(
                os.path.exists("/proc/%d" % p) for p in pids):
            time.sleep(0.01)
    if os.path.exists(NFT):
        subprocess.run([IP, "netns", "exec", ns, NFT, "delete", "table",
                        "inet", NFT_TABLE], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=30)
    _ip("netns", "del", ns, check=False)


def _run_alive(pid):
    """Is pid a live cluster test run (and not a recycled pid)?"""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return b"cluster" in f.read()
    except OSError:
        return False


def remove_stale():
    """Removes the namespaces of earlier runs that are no longer alive.
    Returns their names."""
    gone = []
    for ns in list_namespaces():
        m = NS_RE.match(ns)
        if m and (int(m.group(1)) == os.getpid()
                  or not _run_alive(int(m.group(1)))):
            destroy_namespace(ns)
            gone.append(ns)
    try:
        names = os.listdir(SHM)
    except OSError:
        names = []
    for name in names:
        m = NS_RE.match(name)
        if m and not _run_alive(int(m.group(1))):
            shutil.rmtree(os.path.join(SHM, name), ignore_errors=True)
            gone.append(os.path.join(SHM, name))
    return gone


def probe():
    """None when this machine can run the lab, else the reason in a few
    words. Creates and deletes one namespace with a bridge and a veth."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if not os.path.exists(IP):
        return "needs iproute2 (ip)"
    ns = "%s%d-probe" % (PREFIX, os.getpid())
    try:
        _ip("netns", "add", ns)
        _ip("-n", ns, "link", "add", "br0", "type", "bridge")
        _ip("-n", ns, "link", "add", "pa", "type", "veth", "peer", "name",
            "pb")
    except Exception as e:  # noqa: BLE001 - any failure means "cannot"
        return "cannot create network namespaces here (%s)" % (
            str(e).splitlines()[0][:120])
    finally:
        _ip("netns", "del", ns, check=False)
    return None


class Host:
    def __init__(self, lab, name, ip):
        self.lab, self.name, self.ip = lab, name, ip
        self.ns = "%s-%s" % (lab.tag, name)
        self.port = "p-" + name          # its port on the bridge
        self.procs = []

    def __repr__(self):
        return "<host %s %s>" % (self.name, self.ip)


class Lab:
    def __init__(self, env):
        self.env = env
        self.tag = "%s%d" % (PREFIX, os.getpid())
        self.sw = self.tag + "-sw"
        self.hosts = {}
        self.made = []              # namespaces created, in order
        self.next_ip = 10
        # Files written on every request (the test server's log) go to
        # memory: on a busy disk, write() can stall for tens of ms under
        # dirty-page throttling and bunch the server's arrival times.
        self.fast = None
        if os.access(SHM, os.W_OK):
            self.fast = tempfile.mkdtemp(prefix=self.tag + "-", dir=SHM)

    def fast_path(self, name):
        """A path in memory for name; moved into the test directory at
        teardown."""
        return os.path.join(self.fast or self.env.dir, name)

    # ---- building ------------------------------------------------------

    def _netns_add(self, ns):
        _ip("netns", "add", ns)
        self.made.append(ns)
        _ip("-n", ns, "link", "set", "lo", "up")
        # No IPv6: no router solicitations or DAD chatter on the bridge.
        self.sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "1")
        self.sysctl(ns, "net.ipv6.conf.default.disable_ipv6", "1")

    def sysctl(self, ns, key, value):
        """Best effort (a kernel without IPv6 has no such key)."""
        path = "/proc/sys/" + key.replace(".", "/")
        subprocess.run([IP, "netns", "exec", ns, "sh", "-c",
                        "echo %s > %s" % (value, path)], timeout=30,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self):
        self._netns_add(self.sw)
        _ip("-n", self.sw, "link", "add", "br0", "type", "bridge",
            "stp_state", "0")
        _ip("-n", self.sw, "link", "set", "br0", "up")
        return self

    def add_host(self, name):
        """Plugs a new host into the switch (also while a job runs)."""
        assert name not in self.hosts and len("p-" + name) <= 15, name
        host = Host(self, name, "%s.%d" % (SUBNET, self.next_ip))
        self.next_ip += 1
        self._netns_add(host.ns)
        _ip("-n", self.sw, "link", "add", host.port, "type", "veth", "peer",
            "name", "eth0", "netns", host.ns)
        _ip("-n", self.sw, "link", "set", host.port, "master", "br0")
        _ip("-n", self.sw, "link", "set", host.port, "up")
        _ip("-n", host.ns, "addr", "add", host.ip + "/24", "dev", "eth0")
        _ip("-n", host.ns, "link", "set", "eth0", "up")
        self.hosts[name] = host
        self.check_isolation()
        return host

    def check_isolation(self):
        """The machine's own namespace has nothing in the test subnet."""
        addrs = _ip("-4", "-o", "addr", "show").stdout
        routes = _ip("-4", "route", "show", "table", "all").stdout
        assert SUBNET + "." not in addrs, "test subnet on a root interface"
        assert SUBNET + "." not in routes, "route to the test subnet in root"
        links = _ip("-o", "link", "show").stdout
        for hst in self.hosts.values():
            assert (": %s@" % hst.port) not in links, "%s in root" % hst.port

    # ---- running -------------------------------------------------------

    def argv(self, host, argv, wrap=False):
        """argv run inside host's namespace, with the host's own hostname
        (a private UTS namespace), so workers report host names.

        Every host process runs at nice -10 (NICE): the hosts stand for
        machines of their own, and work on this machine that has nothing
        to do with the test should not delay their calls and skew the
        strict server's clock. setpriv: if the harness is killed (a ctest
        timeout), so is the process."""
        if wrap and h.WRAP:
            argv = h.WRAP + list(argv)
        pre = []
        if NICE and os.geteuid() == 0:
            pre += ["nice", "-n", str(NICE)]
        if SETPRIV:
            pre += [SETPRIV, "--pdeathsig", "KILL"]
        return pre + [IP, "netns", "exec", host.ns, "unshare", "--uts", "sh",
                      "-c", 'hostname "$0" && exec "$@"', host.name] + list(
                          argv)

    def spawn(self, host, name, argv, wrap=False):
        p = self.env.spawn(name, self.argv(host, argv, wrap=wrap))
        host.procs.append(p)
        return p

    def run(self, host, argv, timeout=60, check=True):
        r = subprocess.run(self.argv(host, argv), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True,
                           timeout=timeout * h.SCALE)
        if check and r.returncode != 0:
            raise AssertionError("%s on %s exited %d: %s" % (
                argv[0], host.name, r.returncode, r.stderr[-2000:]))
        return r

    def http_get(self, host, url, timeout=10):
        """GET from inside host; returns the body as text."""
        code = ("import sys, urllib.request\n"
                "with urllib.request.urlopen(sys.argv[1], timeout=%d) as r:\n"
                "    sys.stdout.write(r.read().decode())\n" % timeout)
        return self.run(host, [sys.executable, "-c", code, url],
                        timeout=timeout + 20).stdout

    # ---- failures ------------------------------------------------------

    def link(self, host, up):
        """Plugs (up=True) or pulls host's cable at the switch."""
        _ip("-n", self.sw, "link", "set", host.port, "up" if up else "down")

    def power_off(self, host):
        """Pulls the cable (a dead host sends no FIN or RST) and SIGKILLs
        every process of the host at once. Returns the pids killed."""
        self.link(host, False)
        pids = ns_pids(host.ns)
        _kill_all(pids)
        for p in host.procs:
            p.sent.add(signal.SIGKILL)  # an expected death (harness.Proc)
            try:
                p.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        return pids

    def add_loss(self, host, pct, dev="eth0", tcp_ports=None):
        """Drops pct% of the packets host sends and pct% of those it
        receives on dev, at random (nft numgen), with counters; only TCP
        to or from tcp_ports ("8080", "5555-5557") when given."""
        rin = rout = ""
        if tcp_ports:
            rin, rout = "tcp sport %s " % tcp_ports, "tcp dport %s " % (
                tcp_ports)
        rules = """
table inet %(t)s {
    chain in {
        type filter hook input priority 0; policy accept;
        iifname "%(d)s" %(rin)snumgen random mod 100 < %(p)d counter drop
    }
    chain out {
        type filter hook output priority 0; policy accept;
        oifname "%(d)s" %(rout)snumgen random mod 100 < %(p)d counter drop
    }
}
""" % {"t": NFT_TABLE, "d": dev, "p": pct, "rin": rin, "rout": rout}
        r = subprocess.run([IP, "netns", "exec", host.ns, NFT, "-f", "-"],
                           input=rules, text=True, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30)
        assert r.returncode == 0, "nft: %s" % r.stderr

    def loss_counters(self, host):
        """(packets dropped in, packets dropped out) by add_loss rules."""
        r = subprocess.run([IP, "netns", "exec", host.ns, NFT, "list",
                            "table", "inet", NFT_TABLE],
                           stdout=subprocess.PIPE, text=True, timeout=30)
        got = [int(x) for x in re.findall(r"counter packets (\d+)", r.stdout)]
        return tuple(got[:2]) if len(got) >= 2 else (0, 0)

    # ---- teardown ------------------------------------------------------

    def teardown(self):
        for host in self.hosts.values():
            for p in host.procs:
                if p.alive():
                    p.sent.add(signal.SIGKILL)
                    p.p.kill()
        for ns in reversed(self.made):
            destroy_namespace(ns)
        for host in self.hosts.values():
            for p in host.procs:
                try:
                    p.p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        self.made = []
        if self.fast:
            for name in os.listdir(self.fast):
                shutil.move(os.path.join(self.fast, name), self.env.dir)
            shutil.rmtree(self.fast, ignore_errors=True)
            self.fast = None
        left = [ns for ns in list_namespaces() if ns.startswith(self.tag)]
        assert not left, "namespaces left behind: %s" % left
