"""Importable helpers for the lab tests (not a test module): the paths of the main job, a lab
that waits for somebody else's, packet probes from the lab's client namespaces, and a dump of a
host's firewall state.

tests/integration/conftest.py puts this directory and tests/ on sys.path; the fixtures the lab
tests share (root_netns, ansible_env, listeners) live there.
"""

import json
import os
import re
import subprocess
import time

import pytest

import lab as labs

REPO = labs.REPO
ANSIBLE_BIN = labs.ANSIBLE_BIN
HARDEN = os.path.join(REPO, "harden.yml")
LAB_VARS = os.path.join(REPO, "lab", "harden-lab-vars.yml")
PROBE = os.path.join(REPO, "lab", "probe.py")
CLI = "/usr/local/sbin/netxfw"  # the role's netxfw_cli_path default
SERVICE_PORT = 8080
LAB_WAIT_SECONDS = 900

NEEDS = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not os.path.exists(os.path.join(ANSIBLE_BIN, "ansible-playbook")),
                       reason="needs the controller venv (scripts/install-deps)"),
]

RECAP_RE = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+"
                      r"failed=(\d+)", re.M)


class WaitingLab(labs.Lab):
    """A Lab that waits for somebody else's lab to go instead of forcing it
    away, and never tears down a lab it did not build."""

    def up(self):
        deadline = time.monotonic() + LAB_WAIT_SECONDS
        while True:
            p = self.cli("up", "--hosts", str(self.n), *(["--second-uplink"] if self.second_uplink else []),
                         check=False, timeout=300)
            if p.returncode == 0:
                break
            if "a lab already exists" in p.stderr and time.monotonic() < deadline:
                time.sleep(10)
                continue
            # `up` tears down its own half-built lab itself; an existing
            # lab is somebody else's and stays
            raise RuntimeError("lab up failed (%d):\n%s%s" % (p.returncode, p.stdout, p.stderr))
        with open(os.path.join(self.state_dir, "lab.json")) as f:
            self.meta = json.load(f)
        return self


def stop(proc):
    """Terminate a helper process (a listener, a git daemon), then kill it if it does not go."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def probe(lab, src, hosts, *args, family=4):
    """{host: {probe: outcome}} of lab/probe.py run in namespace src against each host."""
    targets = []
    for h in hosts:
        targets += ["--target", "%s=%s" % (h, lab.host(h)["ipv%d" % family])]
    r = lab.run_in(src, ["/usr/bin/python3", PROBE, "--json", "--timeout", "2"] + targets + list(args),
                   timeout=90)
    assert r.returncode == 0, r.stderr
    out = {}
    for row in json.loads(r.stdout):
        out.setdefault(row["target"], {})[row["probe"]] = row["outcome"]
    return out


def outcomes(result, probe_name):
    return {h: v[probe_name] for h, v in result.items()}


# map contents that define the firewall
DUMP = r"""
import json, sys
sys.path.insert(0, "/usr/lib/netxfw")
from netxfw_engine.engine import Firewall
from netxfw_engine import layout
from netxfw_engine.reload import RULE_MAPS
fw = Firewall()
maps = fw.open_maps()
out = {}
if maps is not None:
    # the rule maps, the runtime config and configured limits; not traffic-driven state
    # (counters, conntrack, token buckets), which the layout may grow more of
    def wanted(name):
        return name in RULE_MAPS or name == "config"
    for name, m in sorted(maps.items()):
        if wanted(name):
            out[name] = sorted((k.hex(), v.hex()) for k, v in m.items())
    # which write of rules.json the maps hold: a count of writes, not content
    generation = layout.encode_u32(layout.CFG_RULES_GENERATION).hex()
    out["rules_generation"] = [kv for kv in out["config"] if kv[0] == generation]
    out["config"] = [kv for kv in out["config"] if kv[0] != generation]
    fw.close_maps(maps)
print(json.dumps(out, sort_keys=True))
"""


def host_state(lab, host):
    """What defines a host's firewall: its rule maps and config, status, pins."""
    dump = lab.host_exec(host, ["/usr/bin/python3", "-c", DUMP], check=True).stdout
    status = json.loads(lab.host_exec(host, [CLI, "--json", "status", "--sample", "0"], check=True).stdout)
    return {
        "maps": json.loads(dump),
        "loaded": status["loaded"],
        "identity": status.get("identity"),
        "config": status.get("config"),
        "interfaces": status.get("interfaces"),
        "rules": status.get("rules"),
        "pins": sorted(lab.host_exec(host, "ls -A /sys/fs/bpf/netxfw 2>/dev/null; true").stdout.split()),
    }


def without_generation(state):
    """A rollback rewrites rules.json (exclusive lists back to the snapshot): same content, a
    later generation number."""
    state = dict(state, maps=dict(state["maps"]))
    state["maps"].pop("rules_generation", None)
    return state


def agent_pid(lab, host):
    r = lab.host_exec(host, "cat /var/lib/netxfw/agent.pid 2>/dev/null")
    pid = r.stdout.strip()
    if pid and os.path.exists("/proc/%s" % pid):
        with open("/proc/%s/cmdline" % pid, "rb") as f:
            if b"serve" in f.read():
                return int(pid)
    return None
