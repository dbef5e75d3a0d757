# SPDX-License-Identifier: GPL-2.0-or-later
"""Namespace topology for real-packet tests (importable helper, not a test module).

    nxt-cli (cli0) ──┐
    nxt-att (att0) ──┼── br0 in nxt-br
    nxt-fw  (fw0)  ──┘

Nothing is created in the root network namespace: the bridge lives in its own
namespace and each veth is created there with its peer moved straight into the
host namespace. Addresses come only from 198.51.100.0/24, 203.0.113.0/24 and
2001:db8::/32 (IPv6 with nodad).

The engine runs *inside* nxt-fw as a long-lived agent process started with
`nsenter --net=/run/netns/nxt-fw /usr/bin/python3 fw_agent.py` (never
`ip netns exec`, which remounts /sys and hides bpffs). Test sockets are opened
in a namespace by switching the calling thread with setns(2) only for the
socket() call (what nsenter does), so every socket gets the namespace's stack
and can carry a timeout.

Usage as a pytest fixture (see tests/traffic/conftest.py):

    with Topology() as topo:          # namespaces, links, addresses
        with topo.engine(settings) as fw:   # agent in nxt-fw, pins + state in temp dirs
            fw.call("apply_rules", kind="blacklist", entries=[...])

Both context managers clean up on exit, also when the body raises. Concurrent
runs on the machine serialise on /run/lock/nxt-traffic.lock.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import ctypes
import fcntl
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
AGENT = os.path.join(HERE, "fw_agent.py")
SYSTEM_PYTHON = "/usr/bin/python3"
LOCK_PATH = "/run/lock/nxt-traffic.lock"
BPFFS = "/sys/fs/bpf"

NS_BR, NS_FW, NS_CLI, NS_ATT = "nxt-br", "nxt-fw", "nxt-cli", "nxt-att"
FW_IF = "fw0"

# host namespace -> (interface, [addresses with prefix])
HOSTS = {
    NS_FW: ("fw0", ["198.51.100.1/24", "203.0.113.1/24", "2001:db8:1::1/64", "2001:db8:2::1/64"]),
    NS_CLI: ("cli0", ["198.51.100.2/24", "2001:db8:1::2/64"]),
    # .66 is the attacker; .77 sits in the same /24 and is whitelisted by some tests
    NS_ATT: ("att0", ["203.0.113.66/24", "203.0.113.77/24", "2001:db8:2::66/64", "2001:db8:2::77/64"]),
}
ADDR = {
    4: {"fw": "198.51.100.1", "fw_att": "203.0.113.1", "cli": "198.51.100.2",
        "att": "203.0.113.66", "att_ok": "203.0.113.77",
        "cli_net": "198.51.100.0/24", "att_net": "203.0.113.0/24"},
    6: {"fw": "2001:db8:1::1", "fw_att": "2001:db8:2::1", "cli": "2001:db8:1::2",
        "att": "2001:db8:2::66", "att_ok": "2001:db8:2::77",
        "cli_net": "2001:db8:1::/64", "att_net": "2001:db8:2::/64"},
}

# the program settings the traffic session loads
SETTINGS = {
    "interfaces": [FW_IF],
    "policy": "deny",
    "conntrack": True,
    "conntrack_timeout": 60,
    "icmp_rate": 5,
    "icmp_burst": 5,
    "capacity": {"whitelist": 256, "blacklist": 1024, "port_rules": 1024, "conntrack": 4096},
}
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def run(argv, timeout=10, check=True):
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError("%s failed (%d): %s%s" % (" ".join(argv), proc.returncode, proc.stdout, proc.stderr))
    return proc


def ns_path(ns):
    return "/run/netns/%s" % ns


def nsenter(ns, argv):
    """argv prefixed to run in the network namespace ns (mount namespace untouched: bpffs stays visible)."""
    return ["nsenter", "--net=%s" % ns_path(ns)] + list(argv)


def run_in(ns, argv, timeout=10, check=False):
    return run(nsenter(ns, argv), timeout=timeout, check=check)


def _setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "setns: %s" % os.strerror(err))


@contextlib.contextmanager
def inside(ns):
    """Switch this thread into ns for the body (use it only around socket())."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    target = os.open(ns_path(ns), os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)
        os.close(target)


def sock(ns, family, kind, timeout=1.0):
    """A socket of the network namespace ns, with a timeout on every operation."""
    with inside(ns):
        s = socket.socket(socket.AF_INET if family == 4 else socket.AF_INET6, kind)
    s.settimeout(timeout)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return s


def netns_list():
    out = run(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


class Topology:
    """The four namespaces and their links; serialised with other runs by a file lock."""

    def __init__(self, lock_timeout=180):
        self.lock_timeout = lock_timeout
        self._lock_fd = None

    def __enter__(self):
        self._lock()
        try:
            self.down()  # a previous run that died hard may have left them (we hold the lock: not someone else's)
            self.up()
        except BaseException:
            self.down()
            self._unlock()
            raise
        return self

    def __exit__(self, *exc):
        try:
            self.down()
        finally:
            self._unlock()

    def _lock(self):
        self._lock_fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(self._lock_fd)
                    raise RuntimeError("another traffic test run holds %s" % LOCK_PATH)
                time.sleep(0.2)

    def _unlock(self):
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def up(self):
        for ns in (NS_BR, NS_FW, NS_CLI, NS_ATT):
            run(["ip", "netns", "add", ns])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
            # no IPv6 duplicate address detection and no router solicitations delaying the links
            run_in(ns, ["sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0",
                        "net.ipv6.conf.default.accept_dad=0"], check=True)
        run(["ip", "-n", NS_BR, "link", "add", "br0", "type", "bridge"])
        run(["ip", "-n", NS_BR, "link", "set", "br0", "up"])
        for ns, (ifname, addrs) in HOSTS.items():
            port = "p-" + ns.split("-")[1]
            run(["ip", "-n", NS_BR, "link", "add", port, "type", "veth", "peer", "name", ifname, "netns", ns])
            run(["ip", "-n", NS_BR, "link", "set", port, "master", "br0", "up"])
            for addr in addrs:
                argv = ["ip", "-n", ns, "addr", "add", addr, "dev", ifname]
                run(argv + (["nodad"] if ":" in addr else []))
            run(["ip", "-n", ns, "link", "set", ifname, "up"])
        self.wait_reachable()

    def wait_reachable(self, timeout=10):
        """Every client address answers a ping from the fw host (links up, neighbours resolved)."""
        deadline = time.monotonic() + timeout
        targets = [ADDR[4]["cli"], ADDR[4]["att"], ADDR[4]["att_ok"], ADDR[6]["cli"], ADDR[6]["att"], ADDR[6]["att_ok"]]
        while targets:
            target = targets[0]
            if run_in(NS_FW, ["ping", "-c", "1", "-W", "1", target], timeout=5).returncode == 0:
                targets.pop(0)
            elif time.monotonic() > deadline:
                raise RuntimeError("topology: %s unreachable from %s" % (target, NS_FW))

    def down(self):
        present = netns_list()
        for ns in (NS_FW, NS_CLI, NS_ATT, NS_BR):
            if ns in present:
                run(["ip", "netns", "del", ns], check=False)

    @contextlib.contextmanager
    def engine(self, collections_root, settings=None):
        """An engine agent inside nxt-fw with a unique pin_path and a temporary state_dir."""
        agent = Agent(collections_root)
        try:
            if settings is not None:
                agent.call("apply_program", settings=settings)
            yield agent
        finally:
            agent.close()


class AgentError(Exception):
    def __init__(self, kind, message):
        Exception.__init__(self, message)
        self.kind = kind
        self.message = message


class Agent:
    """fw_agent.py running in nxt-fw; one JSON request/response per line, every read bounded."""

    def __init__(self, collections_root, ns=NS_FW, timeout=60, prefix="nxt-traffic-"):
        self.timeout = timeout
        self.pin_path = tempfile.mkdtemp(prefix=prefix, dir=BPFFS)
        os.rmdir(self.pin_path)  # the engine creates it (mode 0700); we only wanted a unique name
        self.state_dir = tempfile.mkdtemp(prefix=prefix + "state-")
        self.proc = subprocess.Popen(
            nsenter(ns, [SYSTEM_PYTHON, "-u", AGENT, collections_root, self.pin_path, self.state_dir]),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self._buf = ""

    def call(self, op, **args):
        """Run one engine operation in the agent: its result, or AgentError(type, message)."""
        self.proc.stdin.write(json.dumps({"op": op, "args": args}) + "\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + self.timeout
        fd = self.proc.stdout.fileno()
        while "\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError("engine agent did not answer %s within %ss" % (op, self.timeout))
            ready, dummy, dummy = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 1 << 20).decode()
                if not chunk:
                    raise RuntimeError("engine agent exited (rc %s) during %s" % (self.proc.poll(), op))
                self._buf += chunk
        line, self._buf = self._buf.split("\n", 1)
        reply = json.loads(line)
        if "error" in reply:
            raise AgentError(reply["type"], reply["error"])
        return reply["ok"]

    def counters(self):
        return dict((k, v["packets"]) for k, v in self.call("info")["counters"].items())

    def close(self):
        try:
            if self.proc.poll() is None:
                try:
                    self.call("remove_program")
                except Exception as exc:  # still clean up below
                    sys.stderr.write("agent remove_program failed: %s\n" % exc)
        finally:
            if self.proc.poll() is None:
                self.proc.stdin.close()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    os.kill(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(5)
            shutil.rmtree(self.pin_path, ignore_errors=True)  # pins: unlink works on bpffs
            shutil.rmtree(self.state_dir, ignore_errors=True)


class Delta:
    """Counter growth over a block: `with Delta(fw) as d: ...; d["drop_policy"]`."""

    def __init__(self, agent):
        self.agent = agent
        self.before = self.after = None

    def __enter__(self):
        self.before = self.agent.counters()
        return self

    def __exit__(self, *exc):
        self.after = self.agent.counters()

    def __getitem__(self, reason):
        return self.after[reason] - self.before[reason]

    def __repr__(self):
        return repr(dict((k, self[k]) for k in self.before if self[k]))
