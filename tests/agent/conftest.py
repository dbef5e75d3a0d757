# SPDX-License-Identifier: GPL-2.0-or-later
"""Agent tests: the real data plane in a test network namespace, the agent run in it.

Layout (all removed at the end, also on failure):
  netns nxag-h<pid>  "host": veth nxah0 198.51.100.1/24, 2001:db8:a9::1/64, the program attached,
                     the agent (`nsenter --net=/run/netns/...  agent/bin/netxfw serve`) on 127.0.0.1:11811
  netns nxag-p<pid>  "peer": veth nxap0 198.51.100.2/24, 2001:db8:a9::2/64, sends the test packets
  pins under /sys/fs/bpf/nxag-<pid>, state_dir and token in a temp dir.

The pytest process itself (its main thread, and so every thread, subprocess, chromedriver and
chromium it starts) enters the host namespace for each test module that uses the lab: the API is reachable only on
that namespace's loopback, and the engine resolves interface names there. setns(CLONE_NEWNET)
leaves the mount namespace alone, so bpffs stays visible (unlike `ip netns exec`).

Run as root: /opt/netxfw-venv/bin/python -m pytest tests/agent -q
"""

import ctypes
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "agent"))
from netxfw_agent import devpath  # noqa: E402

devpath.install(REPO)

from netxfw_engine import engine, layout, rulemaps, sources  # noqa: E402

LAUNCHER = os.path.join(REPO, "agent", "bin", "netxfw")
SYSTEM_PYTHON = "/usr/bin/python3"
CLONE_NEWNET = 0x40000000
PORT = 11811
from agent_env import HOST_IF, PEER_IF, HOST4, HOST6, PEER4, PEER6, every_kind  # noqa: E402,F401
CAPACITY = {"whitelist": 1024, "blacklist": 4096, "port_rules": 1024, "conntrack": 4096}
DEFAULT_SETTINGS = {"policy": "allow", "icmp_rate": 0, "icmp_burst": 0, "conntrack": True, "conntrack_timeout": 300}

_libc = ctypes.CDLL(None, use_errno=True)


def setns(path):
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, "setns(%s): %s" % (path, os.strerror(err)))
    finally:
        os.close(fd)


def sh(*args, check=True):
    return subprocess.run(args, check=check, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def needs_root():
    if os.geteuid() != 0:
        pytest.skip("agent tests load XDP programs: run as root")
    try:
        import bcc  # noqa: F401
    except ImportError:
        pytest.skip("needs the distro BCC bindings (python3-bpfcc)")


class Lab:
    def __init__(self):
        tag = str(os.getpid())
        self.host_ns, self.peer_ns = "nxag-h" + tag, "nxag-p" + tag
        self.pin_path = "/sys/fs/bpf/nxag-" + tag
        self.tmp = tempfile.mkdtemp(prefix="netxfw-agent-test-")
        self.state_dir = os.path.join(self.tmp, "state")
        self.token_file = os.path.join(self.tmp, "agent.token")
        self.url = "http://127.0.0.1:%d" % PORT
        self.fw = engine.Firewall(self.pin_path, self.state_dir)
        self.agent = None
        self._orig_ns = None
        self.token = None

    # ------------------------------------------------------------ setup / teardown
    def up(self):
        sh("ip", "netns", "add", self.host_ns)
        sh("ip", "netns", "add", self.peer_ns)
        sh("ip", "-n", self.host_ns, "link", "add", HOST_IF, "type", "veth", "peer", "name", PEER_IF,
           "netns", self.peer_ns)
        for ns, dev, a4, a6 in ((self.host_ns, HOST_IF, HOST4, HOST6), (self.peer_ns, PEER_IF, PEER4, PEER6)):
            sh("ip", "-n", ns, "addr", "add", a4 + "/24", "dev", dev)
            sh("ip", "-n", ns, "addr", "add", a6 + "/64", "dev", dev, "nodad")
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        self._orig_ns = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        setns(self.ns_path(self.host_ns))
        self.fw.apply_program({"interfaces": [HOST_IF], "capacity": CAPACITY})
        self.token = self.cli("token", "generate", "--token-file", self.token_file, "--print").stdout.strip()
        self.start_agent()

    def start_agent(self):
        self.agent_log = open(os.path.join(self.tmp, "agent.log"), "ab")
        self.agent = subprocess.Popen(
            ["nsenter", "--net=" + self.ns_path(self.host_ns), SYSTEM_PYTHON, LAUNCHER,
             "--pin-path", self.pin_path, "--state-dir", self.state_dir,
             "serve", "--listen", "127.0.0.1:%d" % PORT, "--token-file", self.token_file],
            stdout=self.agent_log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.agent.poll() is not None:
                raise RuntimeError("the agent exited: %s" % self.agent_log_text())
            try:
                if self.request("GET", "/health", token=None)[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the agent did not answer /health: %s" % self.agent_log_text())

    def agent_log_text(self):
        with open(os.path.join(self.tmp, "agent.log"), "rb") as stream:
            return stream.read().decode(errors="replace")[-20000:]

    def keep_agent_log(self):
        """A traceback in the agent's log is a bug (a 5xx): keep the log past the cleanup."""
        try:
            text = self.agent_log_text()
        except OSError:
            return
        if "Traceback" in text:
            kept = "/tmp/netxfw-agent-%s-%d.log" % (self.host_ns, int(time.time()))
            with open(kept, "w") as stream:
                stream.write(text)
            sys.stderr.write("\nthe agent logged a traceback; kept in %s\n" % kept)

    def down(self):
        errors = []
        self.keep_agent_log()
        if self.agent is not None and self.agent.poll() is None:
            os.killpg(self.agent.pid, signal.SIGTERM)  # our own process group (start_new_session)
            try:
                self.agent.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.agent.pid, signal.SIGKILL)
                self.agent.wait(5)
        try:
            if self._orig_ns is not None:
                self.fw.remove_program()
        except Exception as exc:  # keep cleaning
            errors.append(exc)
        if self._orig_ns is not None:
            _libc.setns(self._orig_ns, CLONE_NEWNET)
            os.close(self._orig_ns)
        for ns in (self.host_ns, self.peer_ns):
            sh("ip", "netns", "del", ns, check=False)
        if os.path.isdir(self.pin_path):
            for name in os.listdir(self.pin_path):
                os.unlink(os.path.join(self.pin_path, name))
            os.rmdir(self.pin_path)
        shutil.rmtree(self.tmp, ignore_errors=True)
        if errors:
            raise errors[0]

    # ------------------------------------------------------------ helpers
    @staticmethod
    def ns_path(name):
        return "/run/netns/" + name

    def cli(self, *args, check=True, stdin=None):
        """Run the netxfw CLI in the host namespace (exactly as a shell user would)."""
        proc = subprocess.run(
            ["nsenter", "--net=" + self.ns_path(self.host_ns), SYSTEM_PYTHON, LAUNCHER,
             "--pin-path", self.pin_path, "--state-dir", self.state_dir] + list(args),
            input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120, check=False)
        if check and proc.returncode != 0:
            raise AssertionError("netxfw %s exited %d: %s" % (" ".join(args), proc.returncode, proc.stderr))
        return proc

    def request(self, method, path, body=None, token="default", headers=None, raw=None):
        """(status, parsed JSON or text, headers) from the agent."""
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
        try:
            hdrs = dict(headers or {})
            if token == "default":
                token = self.token
            if token is not None:
                hdrs["Authorization"] = "Bearer " + token
            data = raw
            if body is not None:
                data = json.dumps(body).encode()
                hdrs["Content-Type"] = "application/json"
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            payload = resp.read()
            ctype = resp.getheader("Content-Type", "")
            parsed = json.loads(payload) if ctype.startswith("application/json") and payload else \
                payload.decode(errors="replace")
            return resp.status, parsed, dict(resp.getheaders())
        finally:
            conn.close()

    def ping(self, address, count=1):
        """True when `count` pings from the peer namespace to `address` are answered."""
        cmd = ["ping", "-6"] if ":" in address else ["ping"]
        proc = subprocess.run(["nsenter", "--net=" + self.ns_path(self.peer_ns)] + cmd +
                              ["-c", str(count), "-W", "1", "-i", "0.2", address],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
        return proc.returncode == 0

    def rules_json(self):
        return self.fw.store.read_rules()

    def map_keys(self, name):
        maps = self.fw.open_maps()
        assert maps is not None, "the program is not loaded"
        try:
            return set(maps[name].keys())
        finally:
            self.fw.close_maps(maps)

    def source_keys(self, name, cls):
        """Keys of a src map (src4_host, src6_lpm, ...) whose resolved class includes `cls`:
        "whitelist", "blacklist", "rules" (a port rule's source covers it) or "ban" (an auto-ban)."""
        bit = {"whitelist": layout.SRC_WL, "blacklist": layout.SRC_BL, "rules": layout.SRC_RULES,
               "ban": layout.SRC_BAN}[cls]
        maps = self.fw.open_maps()
        assert maps is not None, "the program is not loaded"
        try:
            return set(k for k, v in maps[name].items() if layout.source_class(v)[0] & bit)
        finally:
            self.fw.close_maps(maps)

    def assert_in_step(self):
        """rules.json and the rule maps hold the same thing, and the maps know which generation."""
        data = self.rules_json()
        maps = self.fw.open_maps()
        assert maps is not None
        try:
            gen = layout.decode_u64(maps["config"].lookup(layout.encode_u32(layout.CFG_RULES_GENERATION)))
            assert gen == data.get("generation", 0) + 1, "maps hold generation %d, rules.json %d" % (
                gen - 1, data.get("generation", 0))
            for kind, listname in engine.RULE_KINDS.items():
                expected = rulemaps.expected_entries(kind, data.get(listname, []))
                for name in rulemaps.kind_maps(kind):
                    assert set(maps[name].keys()) == set(expected.get(name, {})), "map %s differs from rules.json" % name
            # the src maps: every listed source with its class (blacklist expiries aside), auto-bans aside
            for name, want in sources.expected(data).items():
                have = dict((k, layout.source_class(v)[0]) for k, v in maps[name].items())
                bans = set(k for k, bits in have.items() if bits & layout.SRC_BAN)
                have = dict((k, bits) for k, bits in have.items() if k not in bans)
                want = dict((k, layout.source_class(v)[0]) for k, v in want.items() if k not in bans)
                assert have == want, "map %s differs from rules.json" % name
        finally:
            self.fw.close_maps(maps)
        return data

    def rule_lists(self):
        """{kind: its list in rules.json}, rules.json and the maps checked in step."""
        data = self.assert_in_step()
        return dict((kind, data.get(key, [])) for kind, key in engine.RULE_KINDS.items())

    def fill_every_kind(self):
        """Rules of every kind of the registry (agent_env.every_kind) through the engine; returns them."""
        wanted = every_kind(time.time())
        assert sorted(wanted) == sorted(engine.RULE_KINDS), "agent_env.every_kind must cover every kind"
        for kind, entries in wanted.items():
            self.fw.apply_rules(kind, entries)
        assert self.rule_lists() == wanted
        return wanted

    def reset(self):
        """Empty rule lists and default runtime settings (engine calls, like a module would)."""
        for kind in engine.RULE_KINDS:
            self.fw.apply_rules(kind, [], state="present", exclusive=True)
        config = dict(self.fw.store.read_config())
        config.update(DEFAULT_SETTINGS)
        self.fw.apply_program(config)


@pytest.fixture(scope="module")
def lab():
    """One lab per test module: pytest leaves the namespace again before the next module, so test
    directories collected after tests/agent (in a whole-suite run) never run inside it."""
    needs_root()
    the_lab = Lab()
    try:
        the_lab.up()
        yield the_lab
    finally:
        the_lab.down()


@pytest.fixture
def clean(lab):
    lab.reset()
    yield lab
    lab.reset()
