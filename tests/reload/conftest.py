# SPDX-License-Identifier: GPL-2.0-or-later
"""Fixtures of the hot reload tests: the tests/traffic namespace topology plus a second firewalled
link (rl0, a veth pair inside nxt-fw), and engine runners inside nxt-fw.

Run as root: /opt/netxfw-venv/bin/python -m pytest tests/reload -q
Every test gets its own pin_path under /sys/fs/bpf and state_dir, removed afterwards with the
staging pins (<pin_path>_staging) and anything attached to fw0/rl0, also when the test fails.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "traffic"))
import netns  # noqa: E402

RUNNER = os.path.join(HERE, "runner.py")
from reload_env import EXTRA_IF, EXTRA_PEER, PAUSE_ENV, SOURCE_ENV  # noqa: E402


def collections_root():
    for entry in sys.path:
        if os.path.isdir(os.path.join(entry, "ansible_collections", "netxfw", "firewall")):
            return entry
    raise RuntimeError("ansible_collections.netxfw.firewall is not importable (tests/conftest.py)")


class Runner(netns.Agent):
    """runner.py in nxt-fw on a given pin_path/state_dir, with extra environment (test hooks); `root`
    (a collections root) and `script` (its runner) run another version of the collection."""

    def __init__(self, pin_path, state_dir, env=None, timeout=120, root=None, script=None):  # pylint: disable=super-init-not-called
        self.timeout = timeout
        self.pin_path = pin_path
        self.state_dir = state_dir
        full_env = dict(os.environ)
        full_env.pop(PAUSE_ENV, None)
        full_env.pop(SOURCE_ENV, None)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            netns.nsenter(netns.NS_FW, [netns.SYSTEM_PYTHON, "-u", script or RUNNER, root or collections_root(),
                                        pin_path, state_dir]),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1, env=full_env)
        self._buf = ""

    def send(self, op, **args):
        self.proc.stdin.write(json.dumps({"op": op, "args": args}) + "\n")
        self.proc.stdin.flush()

    def receive(self):
        deadline = time.monotonic() + self.timeout
        fd = self.proc.stdout.fileno()
        while "\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError("runner did not answer within %ss" % self.timeout)
            ready, dummy, dummy = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 1 << 20).decode()
                if not chunk:
                    raise RuntimeError("runner exited (rc %s)" % self.proc.poll())
                self._buf += chunk
        line, self._buf = self._buf.split("\n", 1)
        reply = json.loads(line)
        if "error" in reply:
            raise netns.AgentError(reply["type"], reply["error"])
        return reply["ok"]

    def call(self, op, **args):
        self.send(op, **args)
        return self.receive()

    def wait_paused(self, timeout=120):
        """Wait (bounded) until the run reaches its pause point; the step name it reports."""
        path = os.path.join(self.state_dir, ".reload-pause")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(path):
                with open(path) as stream:
                    return stream.read().split()[0]
            if self.proc.poll() is not None or select.select([self.proc.stdout.fileno()], [], [], 0)[0]:
                raise AssertionError("the run ended before its pause point: %r" % (self.receive(),))
            time.sleep(0.05)
        raise AssertionError("the run did not reach its pause point within %ss" % timeout)

    def resume(self):
        os.unlink(os.path.join(self.state_dir, ".reload-pause"))

    def kill(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        with_pause = os.path.join(self.state_dir, ".reload-pause")
        if os.path.exists(with_pause):
            os.unlink(with_pause)

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def remove_pins(path):
    for directory in (path, path.rstrip("/") + "_staging"):
        shutil.rmtree(directory, ignore_errors=True)


def detach_all():
    for ifname in (netns.FW_IF, EXTRA_IF):
        netns.run_in(netns.NS_FW, ["ip", "link", "set", "dev", ifname, "xdp", "off"])
        netns.run_in(netns.NS_FW, ["tc", "qdisc", "del", "dev", ifname, "clsact"])


@pytest.fixture(scope="module")
def topo():
    if os.geteuid() != 0:
        pytest.skip("reload tests create namespaces and load XDP programs: run as root")
    for tool in ("ip", "nsenter", "tc"):
        if shutil.which(tool) is None:
            pytest.skip("reload tests need %s" % tool)
    if not os.path.exists(netns.SYSTEM_PYTHON):
        pytest.skip("needs %s with the BCC bindings" % netns.SYSTEM_PYTHON)
    with netns.Topology() as topology:
        netns.run(["ip", "-n", netns.NS_FW, "link", "add", EXTRA_IF, "type", "veth", "peer", "name", EXTRA_PEER])
        for ifname in (EXTRA_IF, EXTRA_PEER):
            netns.run(["ip", "-n", netns.NS_FW, "link", "set", ifname, "up"])
        yield topology


class FwEnv:
    def __init__(self):
        self.pin_path = tempfile.mkdtemp(prefix="nxt-reload-", dir=netns.BPFFS)
        os.rmdir(self.pin_path)
        self.state_dir = tempfile.mkdtemp(prefix="nxt-reload-state-")
        self.runners = []

    def runner(self, env=None, timeout=120, root=None, script=None):
        r = Runner(self.pin_path, self.state_dir, env=env, timeout=timeout, root=root, script=script)
        self.runners.append(r)
        return r

    def cleanup(self):
        for r in self.runners:
            try:
                r.kill() if r.proc.poll() is None and os.path.exists(os.path.join(self.state_dir, ".reload-pause")) \
                    else r.close()
            except Exception as exc:  # still clean up the rest
                sys.stderr.write("runner cleanup: %s\n" % exc)
        try:
            closer = Runner(self.pin_path, self.state_dir)
            try:
                closer.call("remove_program")
            finally:
                closer.close()
        except Exception as exc:
            sys.stderr.write("remove_program failed: %s\n" % exc)
        detach_all()
        remove_pins(self.pin_path)
        shutil.rmtree(self.state_dir, ignore_errors=True)


@pytest.fixture
def fwenv(topo):
    env = FwEnv()
    try:
        yield env
    finally:
        env.cleanup()
