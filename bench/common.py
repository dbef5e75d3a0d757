# SPDX-License-Identifier: GPL-2.0-or-later
"""Shared helpers of the netxfw benchmarks: imports, namespaces, cleanup,
synthetic rule sets and packet crafting. Not a test module."""

import atexit
import ipaddress
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
RESULTS = os.path.join(BENCH, "results")
SYS_PYTHON = "/usr/bin/python3"  # has bcc + pyroute2

# Namespaces, links and mounts this benchmark owns (a stale set from a crashed run is removed first).
NS_GEN = "nxb-gen"
NS_DUT = "nxb-dut"
NS_XF = "nxb-xf"
VETH_GEN = "nxbg0"
VETH_DUT = "nxbd0"
BPFFS = "/tmp/nxb-bpffs"

# Addresses that go on a (virtual) wire: only documentation ranges.
DUT_IP = "198.51.100.1"
GEN_IP = "198.51.100.2"


def import_root():
    """Make ansible_collections.netxfw.firewall importable (a symlink tree, as tests/conftest.py)."""
    if "ansible_collections.netxfw.firewall" in sys.modules:
        return
    root = tempfile.mkdtemp(prefix="nxb-collections-")
    atexit.register(shutil.rmtree, root, True)
    os.makedirs(os.path.join(root, "ansible_collections", "netxfw"))
    os.symlink(REPO, os.path.join(root, "ansible_collections", "netxfw", "firewall"))
    sys.path.insert(0, root)
    return root


def gen_bpf_source():
    """scripts/gen_bpf_source.py as a module (joined(): the data plane as the one source BCC compiles)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("gen_bpf_source", os.path.join(REPO, "scripts", "gen_bpf_source.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def log(msg):
    sys.stderr.write("[bench %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


def sh(cmd, check=True, ns=None, timeout=600, **kw):
    """Run a command (list or shell string), optionally inside a namespace."""
    if isinstance(cmd, str):
        cmd = ["sh", "-c", cmd]
    if ns:
        cmd = ["ip", "netns", "exec", ns] + cmd
    return subprocess.run(cmd, check=check, timeout=timeout, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, **kw)


# ------------------------------------------------------------------ cleanup

class Cleanup:
    """LIFO cleanup actions, run on normal exit, exceptions, SIGINT and SIGTERM."""

    def __init__(self, register=True):
        self.actions = []
        if register:
            atexit.register(self.run)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, self._signal)

    def _signal(self, signum, frame):
        raise SystemExit(128 + signum)

    def push(self, fn, *args):
        self.actions.append((fn, args))

    def run(self):
        while self.actions:
            fn, args = self.actions.pop()
            try:
                fn(*args)
            except Exception as exc:  # keep cleaning
                log("cleanup %s%r: %s" % (getattr(fn, "__name__", fn), args, exc))


def remove_everything():
    """Remove whatever this benchmark may have left: namespaces (with their veths, XDP/TC
    programs, nft tables, iptables rules and ipsets) and the private bpffs with its pins."""
    for ns in (NS_GEN, NS_DUT, NS_XF):
        if os.path.exists("/run/netns/%s" % ns):
            sh(["ip", "netns", "pids", ns], check=False)
            for pid in sh(["ip", "netns", "pids", ns], check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
            sh(["ip", "netns", "del", ns], check=False)
    if os.path.ismount(BPFFS):
        sh(["umount", "-l", BPFFS], check=False)
    if os.path.isdir(BPFFS) and not os.path.ismount(BPFFS):
        try:
            os.rmdir(BPFFS)
        except OSError:
            pass


def ensure_bpffs():
    os.makedirs(BPFFS, exist_ok=True)
    if not os.path.ismount(BPFFS):
        sh(["mount", "-t", "bpf", "bpf", BPFFS])


def veth_pair_names(i):
    return "nxbg%d" % i, "nxbd%d" % i


def make_veth_pairs(count=4):
    """nxb-gen:nxbg<i> <-> nxb-dut:nxbd<i>: one pair per system under test, so that no filter
    is ever switched on or off between runs (nft commands with a 1M-element set take minutes).
    nxbd0 (netxfw's) has 198.51.100.1/24, nxbg0 198.51.100.2/24."""
    for ns in (NS_GEN, NS_DUT):
        sh(["ip", "netns", "add", ns])
        sh(["ip", "-n", ns, "link", "set", "lo", "up"])
        sh(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"], check=False)
        sh(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"], check=False)
    for i in range(count):
        gen, dut = veth_pair_names(i)
        sh(["ip", "link", "add", gen, "netns", NS_GEN, "type", "veth", "peer", "name", dut, "netns", NS_DUT])
        sh(["ip", "-n", NS_GEN, "link", "set", gen, "up"])
        sh(["ip", "-n", NS_DUT, "link", "set", dut, "up"])
    sh(["ip", "-n", NS_GEN, "addr", "add", GEN_IP + "/24", "dev", VETH_GEN])
    sh(["ip", "-n", NS_DUT, "addr", "add", DUT_IP + "/24", "dev", VETH_DUT])


def link_mac(ns, dev):
    out = json.loads(sh(["ip", "-j", "-n", ns, "link", "show", dev]).stdout)
    return out[0]["address"]


def link_xdp_prog_id(ns, dev):
    out = json.loads(sh(["ip", "-j", "-d", "-n", ns, "link", "show", dev]).stdout)[0]
    xdp = out.get("xdp") or {}
    if "prog" in xdp:
        return xdp["prog"]["id"]
    for att in xdp.get("attached", []):
        return att["prog"]["id"]
    return None


# ------------------------------------------------------------------ synthetic data

# Map entries are only keys: synthetic entries come from 1.0.0.0-126.255.255.255 and never go on a wire.
SYN_LO = 1 << 24
SYN_HI = 127 << 24
PREFIX_LENGTHS = (16, 18, 20, 21, 22, 23, 24, 24, 24, 24, 24, 24, 25, 26, 27, 28, 29, 30)


class Synthetic:
    """Deterministic blacklist: `n` /32 hosts and `n` shorter prefixes, nested by size
    (the first 1k entries of the 1M set are the 1k set)."""

    def __init__(self, n, seed=7):
        rnd = random.Random(seed)
        self.rnd = random.Random(seed + 1)
        # Short prefixes are rare, so that most of the space stays uncovered (misses exist).
        hosts, prefixes = [], []
        seen_h, seen_p = set(), set()
        while len(prefixes) < n:
            plen = rnd.choice(PREFIX_LENGTHS)
            if plen < 20 and rnd.random() < 0.9:
                continue
            a = rnd.randrange(SYN_LO, SYN_HI) & ((0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF)
            if (a, plen) not in seen_p:
                seen_p.add((a, plen))
                prefixes.append((a, plen))
        self.prefixes = prefixes
        by_len = {}
        for a, plen in prefixes:
            by_len.setdefault(plen, set()).add(a)
        self.by_len = by_len
        while len(hosts) < n:
            a = rnd.randrange(SYN_LO, SYN_HI)
            if a not in seen_h and not self.covered(a):
                seen_h.add(a)
                hosts.append(a)
        self.hosts = hosts
        self.host_set = seen_h

    def covered(self, a, upto=None):
        for plen, nets in self.by_len.items():
            if (a & ((0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF)) in nets:
                return True
        return False

    def prefix_set(self, n):
        """Networks of the first n prefixes by length, for coverage checks at size n."""
        by_len = {}
        for a, plen in self.prefixes[:n]:
            by_len.setdefault(plen, set()).add(a)
        return by_len

    def misses(self, count, avoid=()):
        """Addresses in the synthetic range that match no host and no prefix of the full set."""
        out = []
        avoid = set(avoid)
        while len(out) < count:
            a = self.rnd.randrange(SYN_LO, SYN_HI)
            if a not in self.host_set and a not in avoid and not self.covered(a):
                out.append(a)
                avoid.add(a)
        return out

    def prefix_hits(self, n, count):
        """Addresses inside one of the first n prefixes that are not in the host set,
        whose longest match among the first n prefixes is that prefix's entry."""
        out = []
        while len(out) < count:
            a, plen = self.prefixes[self.rnd.randrange(n)]
            addr = a | self.rnd.randrange(1 << (32 - plen))
            if addr not in self.host_set:
                out.append(addr)
        return out

    def host_hits(self, n, count):
        return [self.hosts[self.rnd.randrange(n)] for dummy in range(count)]


def ip4(a):
    return str(ipaddress.IPv4Address(a))


def cidr_strings(syn, n):
    """The n-entry blacklist as CIDR strings (n/2 hosts + n/2 prefixes)."""
    half = n // 2
    return ["%s/32" % ip4(h) for h in syn.hosts[:half]] + \
        ["%s/%d" % (ip4(a), p) for a, p in syn.prefixes[:n - half]]


# ------------------------------------------------------------------ packets

def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def ipv4_packet(src, dst, proto=6, sport=40000, dport=443, payload=b"", dmac=b"\x02\0\0\0\0\x01",
                smac=b"\x02\0\0\0\0\x02", tcp_flags=0x02):
    """Ethernet + IPv4 + TCP (SYN unless tcp_flags) or UDP, valid checksums on the IP header and UDP."""
    src_b = struct.pack("!I", src) if isinstance(src, int) else ipaddress.IPv4Address(src).packed
    dst_b = struct.pack("!I", dst) if isinstance(dst, int) else ipaddress.IPv4Address(dst).packed
    if proto == 6:
        l4 = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, tcp_flags, 65535, 0, 0) + payload
    else:
        l4 = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    pseudo = src_b + dst_b + struct.pack("!BBH", 0, proto, len(l4))
    c = csum(pseudo + l4)
    if proto == 6:
        l4 = l4[:16] + struct.pack("!H", c) + l4[18:]
    else:
        l4 = l4[:6] + struct.pack("!H", c or 0xFFFF) + l4[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0x4000, 64, proto, 0, src_b, dst_b)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return dmac + smac + b"\x08\x00" + ip + l4


# ------------------------------------------------------------------ CPU accounting

def cpu_times():
    """/proc/stat cpu line summed over CPUs, in seconds: user, system, softirq, irq, busy."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    hz = os.sysconf("SC_CLK_TCK")
    v = [int(x) / hz for x in fields]
    user, nice, system, idle, iowait, irq, softirq, steal = v[:8]
    return {"user": user + nice, "system": system, "softirq": softirq, "irq": irq,
            "busy": user + nice + system + irq + softirq + steal}


def delta(after, before):
    return dict((k, after[k] - before[k]) for k in after)


def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = 0
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) // 1024
    return {"nproc": os.cpu_count(), "cpu_model": model, "kernel": os.uname().release,
            "mem_mb": mem, "loadavg_start": open("/proc/loadavg").read().split()[:3]}
