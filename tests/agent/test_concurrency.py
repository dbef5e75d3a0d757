# SPDX-License-Identifier: GPL-2.0-or-later
"""Concurrent writers: the CLI (separate processes), the API (threads over HTTP), the engine as the
modules call it (in this process), and the netxfw_rule module itself (ansible ad hoc), all at once.
No acknowledged rule may be lost, and rules.json and the maps must end in step."""

import ipaddress
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time

import pytest

from agent_env import REPO

ANSIBLE = "/opt/netxfw-venv/bin/ansible"


class Collections:
    """ANSIBLE_COLLECTIONS_PATH with ansible_collections/netxfw/firewall -> this checkout."""

    def __enter__(self):
        self.root = tempfile.mkdtemp(prefix="netxfw-collections-")
        os.makedirs(os.path.join(self.root, "ansible_collections", "netxfw"))
        os.symlink(REPO, os.path.join(self.root, "ansible_collections", "netxfw", "firewall"))
        return self.root

    def __exit__(self, *exc):
        shutil.rmtree(self.root, ignore_errors=True)  # removes the link, not the checkout


def run_module(lab, root, args):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=root, ANSIBLE_HOST_KEY_CHECKING="False",
               ANSIBLE_LOCAL_TEMP=os.path.join(lab.tmp, "ansible-local"), ANSIBLE_NOCOLOR="1")
    args = dict(args, pin_path=lab.pin_path, state_dir=lab.state_dir)
    proc = subprocess.run(
        [ANSIBLE, "localhost", "-i", "localhost,", "-c", "local", "-e", "ansible_python_interpreter=/usr/bin/python3",
         "-m", "netxfw.firewall.netxfw_rule", "-a", json.dumps(args)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:]
    return proc.stdout


def _writers(lab, root, state):
    """Run every writer at once; return {kind: set of canonical entries each acknowledged}."""
    done = {"whitelist": set(), "blacklist": set(), "port": set()}
    lock = threading.Lock()
    errors = []
    slow_finished = threading.Event()
    barrier = threading.Barrier(2 + 3 + 1 + 1)  # slow, API, engine writers and this thread

    def ack(kind, key):
        with lock:
            done[kind].add(key)

    def guard(fn):
        def run():
            try:
                barrier.wait(30)
                fn()
            except BaseException as exc:  # reported by the test
                errors.append(exc)
        return run

    def cli_writer():
        for i in range(1, 13):
            cidr = "203.0.113.%d" % i
            lab.cli("rule", "add" if state == "present" else "remove", "blacklist", cidr)
            ack("blacklist", cidr + "/32")

    def module_writer():
        for n in range(3):
            cidrs = ["198.51.100.%d" % (100 + n * 5 + i) for i in range(5)]
            run_module(lab, root, {"kind": "blacklist", "entries": cidrs, "state": state})
            for c in cidrs:
                ack("blacklist", c + "/32")

    def api_writer(t):
        def run():
            i = 0
            while (state == "absent") or not slow_finished.is_set() or i < 10:
                cidr = "2001:db8:100::%x" % (t * 1000 + i)
                if state == "present":
                    status, body, dummy = lab.request("POST", "/api/v1/rules", {"kind": "whitelist", "cidr": cidr})
                    assert status in (200, 201), body
                else:
                    if (t, i) not in api_added:
                        break
                    status, body, dummy = lab.request("DELETE", "/api/v1/rules?kind=whitelist&cidr=" + cidr)
                    assert status == 200, body
                ack("whitelist", str(ipaddress.ip_network(cidr)))
                with lock:
                    if state == "present":
                        api_added.add((t, i))
                i += 1
                time.sleep(0.02)
        return run

    def engine_writer():
        i = 0
        while (state == "absent") or not slow_finished.is_set() or i < 10:
            if state == "absent" and i not in engine_added:
                break
            lab.fw.apply_rules("port", [{"proto": "tcp", "ports": str(2000 + i), "action": "deny"}], state=state)
            ack("port", ("any", "tcp", str(2000 + i)))
            if state == "present":
                engine_added.add(i)
            i += 1
            time.sleep(0.02)

    slow = [threading.Thread(target=guard(cli_writer), daemon=True),
            threading.Thread(target=guard(module_writer), daemon=True)]
    fast = [threading.Thread(target=guard(api_writer(t)), daemon=True) for t in range(3)]
    fast.append(threading.Thread(target=guard(engine_writer), daemon=True))
    for t in slow + fast:
        t.start()
    try:
        barrier.wait(30)
        for t in slow:
            t.join(600)
    finally:
        slow_finished.set()
        for t in fast:
            t.join(120)
    assert not errors, errors
    return done


api_added, engine_added = set(), set()


def test_concurrent_cli_api_engine_module(clean):
    lab = clean
    if not os.path.exists(ANSIBLE):
        pytest.skip("needs ansible-core in /opt/netxfw-venv")
    with Collections() as root:
        added = _writers(lab, root, "present")
        data = lab.assert_in_step()
        assert set(data["whitelist"]) == added["whitelist"]
        assert set(e["cidr"] for e in data["blacklist"]) == added["blacklist"]
        assert set((r["source"], r["proto"], r["ports"]) for r in data["port_rules"]) == added["port"]
        assert len(added["blacklist"]) == 12 + 15 and len(added["whitelist"]) >= 30 and len(added["port"]) >= 10
        assert len(lab.source_keys("src4_host", "blacklist")) == len(lab.map_keys("src4_host")) == 27
        assert len(lab.source_keys("src6_host", "whitelist")) == len(lab.map_keys("src6_host")) == len(added["whitelist"])
        assert len(lab.map_keys("rules4")) == len(added["port"])
        print("concurrent adds: %s" % dict((k, len(v)) for k, v in added.items()))

        removed = _writers(lab, root, "absent")
        data = lab.assert_in_step()
        assert removed["blacklist"] == added["blacklist"]
        assert data["whitelist"] == [] and data["blacklist"] == [] and data["port_rules"] == []
        for name in ("src4_host", "src6_host", "src4_lpm", "src6_lpm", "rules4", "rules6"):
            assert lab.map_keys(name) == set(), name
