# Copyright: (c) 2025, netxfw developers
# GNU General Public License v2.0+ (see https://www.gnu.org/licenses/gpl-2.0.txt)
# SPDX-License-Identifier: GPL-2.0-or-later

"""Real module runs: the modules load the real data plane into a veth inside a private network
namespace, with a temporary pin_path under /sys/fs/bpf and a temporary state_dir.

Layout per test: namespace FW holds vm0 (198.51.100.1/24, 2001:db8:51::1/64; the firewall attaches
here) and vm2 (a second, unaddressed veth end); namespace PEER holds vm1 (198.51.100.2/24), the
other end of vm0, to send real packets. Modules run as `nsenter --net=/run/netns/FW python -m
<module> args.json` (never `ip netns exec`, which hides bpffs), or through `ansible localhost -m`.
Everything (namespaces, pins, state) is removed afterwards, even when a test fails.

Run as root: /opt/netxfw-venv/bin/python -m pytest tests/modules
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BPFFS = "/sys/fs/bpf"
FW_ADDR = "198.51.100.1"
PEER_ADDR = "198.51.100.2"
# The interpreter for direct runs needs ansible-core and (for netxfw_program) the distro bcc.
MODULE_PYTHON = os.environ.get("NETXFW_TEST_MODULE_PYTHON", sys.executable)
ANSIBLE_BIN = os.path.join(os.path.dirname(sys.executable), "ansible")


def _skip_reason():
    if os.geteuid() != 0:
        return "needs root (BPF, namespaces)"
    if not os.path.ismount(BPFFS):
        return "needs bpffs at %s" % BPFFS
    if shutil.which("nsenter") is None or shutil.which("ip") is None:
        return "needs nsenter and ip"
    return None


def sh(*cmd, **kwargs):
    check = kwargs.pop("check", True)
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=60, check=check, **kwargs)


@pytest.fixture(scope="session")
def collections_path():
    """<tmp>/ansible_collections/netxfw/firewall -> the checkout (or its real location under ansible-test)."""
    root = tempfile.mkdtemp(prefix="netxfw-mod-collections-")
    try:
        os.makedirs(os.path.join(root, "ansible_collections", "netxfw"))
        os.symlink(REPO, os.path.join(root, "ansible_collections", "netxfw", "firewall"))
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)  # removes the symlink, not the checkout


class Env:
    def __init__(self, collections_root, tmp):
        tag = uuid.uuid4().hex[:8]
        self.fw_ns = "nxm-fw-" + tag
        self.peer_ns = "nxm-peer-" + tag
        self.pin_path = os.path.join(BPFFS, "netxfw-modtest-" + tag)
        self.state_dir = os.path.join(tmp, "state")
        self.tmp = tmp
        self.collections_root = collections_root
        self.runs = 0

    # ---- setup / teardown ----
    def up(self):
        sh("ip", "netns", "add", self.fw_ns)
        sh("ip", "netns", "add", self.peer_ns)
        sh("ip", "-n", self.fw_ns, "link", "add", "vm0", "type", "veth", "peer", "name", "vm1", "netns", self.peer_ns)
        sh("ip", "-n", self.fw_ns, "link", "add", "vm2", "type", "veth", "peer", "name", "vm3")
        for ns, link, addrs in ((self.fw_ns, "vm0", (FW_ADDR + "/24", "2001:db8:51::1/64")),
                                (self.peer_ns, "vm1", (PEER_ADDR + "/24", "2001:db8:51::2/64"))):
            for addr in addrs:
                sh("ip", "-n", ns, "addr", "add", addr, "dev", link, "nodad")
            sh("ip", "-n", ns, "link", "set", link, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        for link in ("vm2", "vm3"):
            sh("ip", "-n", self.fw_ns, "link", "set", link, "up")

    def down(self):
        for ns in (self.fw_ns, self.peer_ns):
            sh("ip", "netns", "del", ns, check=False)  # destroys the veths, and with them the attachments
        if os.path.isdir(self.pin_path):
            for name in os.listdir(self.pin_path):
                try:
                    os.unlink(os.path.join(self.pin_path, name))
                except OSError:
                    pass
            try:
                os.rmdir(self.pin_path)
            except OSError:
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ---- running modules ----
    def module_env(self):
        env = dict(os.environ)
        env["PYTHONPATH"] = self.collections_root
        env["ANSIBLE_COLLECTIONS_PATH"] = self.collections_root
        env.pop("ANSIBLE_MODULE_ARGS", None)
        return env

    def run(self, module, args=None, check=False, diff=False, python=None):
        """Run a module directly in the firewall namespace; return its JSON result (with 'rc')."""
        params = dict(pin_path=self.pin_path, state_dir=self.state_dir)
        params.update(args or {})
        params["_ansible_check_mode"] = check
        params["_ansible_diff"] = diff
        self.runs += 1
        args_file = os.path.join(self.tmp, "args-%d.json" % self.runs)
        with open(args_file, "w") as stream:
            json.dump({"ANSIBLE_MODULE_ARGS": params}, stream)
        proc = subprocess.run(
            ["nsenter", "--net=/run/netns/" + self.fw_ns, python or MODULE_PYTHON, "-m",
             "ansible_collections.netxfw.firewall.plugins.modules." + module, args_file],
            capture_output=True, text=True, timeout=180, env=self.module_env(), cwd=self.tmp, check=False,
        )
        return self._parse(proc)

    def ansible(self, module, args, python, check=False, diff=False):
        """`ansible localhost -m netxfw.firewall.<module> -a args` in the firewall namespace."""
        cmd = ["nsenter", "--net=/run/netns/" + self.fw_ns, ANSIBLE_BIN, "localhost", "-c", "local",
               "-e", "ansible_python_interpreter=" + python, "-m", "netxfw.firewall." + module,
               "-a", "%s pin_path=%s state_dir=%s" % (args, self.pin_path, self.state_dir), "--one-line"]
        if check:
            cmd.append("--check")
        if diff:
            cmd.append("--diff")
        env = self.module_env()
        env.update(ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
                   ANSIBLE_NOCOLOR="1")
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env, cwd=self.tmp, check=False)
        try:
            # --one-line: "localhost | CHANGED => {...}" (a diff, if any, comes before it)
            line = [text for text in proc.stdout.splitlines() if text.startswith("localhost | ")][-1]
            result = json.loads(line.split(" => ", 1)[1])
        except (ValueError, IndexError):
            raise AssertionError("ansible output is not JSON (rc %d):\n%s\n%s" % (proc.returncode, proc.stdout, proc.stderr))
        result["rc"] = proc.returncode
        return result

    def playbook(self, module, args, python=None, check=False, diff=False, keywords=""):
        """One netxfw.firewall.<module> task through ansible-playbook in the firewall namespace, its
        arguments as JSON in a vars file (as a playbook's variables carry a long list), more task
        keywords as YAML lines in `keywords`; the registered result (a failure included)."""
        self.runs += 1
        tag = os.path.join(self.tmp, "play-%d" % self.runs)
        args = dict(args, pin_path=self.pin_path, state_dir=self.state_dir)
        with open(tag + "-vars.json", "w") as stream:
            json.dump({"nxt_args": args, "nxt_out": tag + "-result.json"}, stream)
        with open(tag + ".yml", "w") as stream:
            stream.write("- hosts: localhost\n  gather_facts: false\n  tasks:\n"
                         "    - netxfw.firewall.%s: \"{{ nxt_args }}\"\n%s"
                         "      register: nxt_result\n      ignore_errors: true\n"
                         "    - ansible.builtin.copy: {content: \"{{ nxt_result | to_json }}\", dest: \"{{ nxt_out }}\"}\n"
                         "      check_mode: false\n" % (module, keywords))
        cmd = ["nsenter", "--net=/run/netns/" + self.fw_ns, ANSIBLE_BIN + "-playbook", "-c", "local", "-i", "localhost,",
               "-e", "@" + tag + "-vars.json", "-e", "ansible_python_interpreter=" + (python or MODULE_PYTHON),
               tag + ".yml"] + (["--check"] if check else []) + (["--diff"] if diff else [])
        env = self.module_env()
        env.update(ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false", ANSIBLE_NOCOLOR="1")
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=self.tmp, check=False)
        if proc.returncode != 0 or not os.path.exists(tag + "-result.json"):
            raise AssertionError("ansible-playbook failed (rc %d):\n%s\n%s"
                                 % (proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:]))
        with open(tag + "-result.json") as stream:
            return json.load(stream)

    @staticmethod
    def _parse(proc):
        try:
            result = json.loads(proc.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise AssertionError("module output is not JSON (rc %d):\nstdout: %s\nstderr: %s"
                                 % (proc.returncode, proc.stdout, proc.stderr))
        result["rc"] = proc.returncode
        return result

    # ---- observing ----
    def in_fw(self, *cmd, **kwargs):
        return sh("nsenter", "--net=/run/netns/" + self.fw_ns, *cmd, **kwargs)

    def ping_from_peer(self, addr=FW_ADDR, count=1):
        """True if the peer got an answer from the firewalled side."""
        proc = sh("nsenter", "--net=/run/netns/" + self.peer_ns, "ping", "-n", "-q", "-c", str(count),
                  "-W", "1", addr, check=False)
        return proc.returncode == 0

    def xdp_attached(self, link):
        return " xdp" in self.in_fw("ip", "link", "show", "dev", link).stdout

    def pins(self):
        return sorted(os.listdir(self.pin_path)) if os.path.isdir(self.pin_path) else []

    def read_state(self, name):
        """Bytes of a state file, or None."""
        try:
            with open(os.path.join(self.state_dir, name), "rb") as stream:
                return stream.read()
        except FileNotFoundError:
            return None

    def rules(self):
        raw = self.read_state("rules.json")
        return json.loads(raw) if raw else {}


@pytest.fixture
def env(collections_path):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    environment = Env(collections_path, tempfile.mkdtemp(prefix="netxfw-modtest-"))
    try:
        environment.up()
        yield environment
    finally:
        environment.down()


@pytest.fixture
def loaded(env):
    """An env with the data plane loaded on vm0."""
    result = env.run("netxfw_program", {"interfaces": ["vm0"]})
    assert result["rc"] == 0 and result["changed"] and result["compiled"], result
    return env
