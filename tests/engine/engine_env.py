# SPDX-License-Identifier: GPL-2.0-or-later
"""Shared pieces of the engine tests (importable helper, not a test module): settings,
a pinned firewall environment with state snapshots, and a child-process runner."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shutil
import subprocess
import tempfile

from ansible_collections.netxfw.firewall.plugins.module_utils import bpfsys, engine, layout, rulemaps, rules, sources

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
RUNNER = os.path.join(HERE, "engine_runner.py")
SYSTEM_PYTHON = "/usr/bin/python3"
SETTINGS = {
    "interfaces": [],
    "policy": "deny",
    "capacity": {"whitelist": 8, "blacklist": 65536, "port_rules": 256, "conntrack": 1024},
}
RULE_MAPS = sources.SRC_MAPS + tuple(name for kind in rules.REGISTRY for name in kind.maps)
SNAPSHOT_MAPS = RULE_MAPS + ("config", "ct", "meta")
KINDS = rules.LIST_KEYS  # {kind: its list in rules.json}


def make_public_root():
    """A world-readable ansible_collections tree (the one tests/conftest.py builds is 0700)."""
    root = tempfile.mkdtemp(prefix="nxt-engine-collections-")
    os.chmod(root, 0o755)
    os.makedirs(os.path.join(root, "ansible_collections", "netxfw"), mode=0o755)
    os.symlink(REPO, os.path.join(root, "ansible_collections", "netxfw", "firewall"))
    return root


class Env:
    def __init__(self, root):
        self.root = root
        self.pin_path = tempfile.mkdtemp(prefix="nxt-engine-", dir="/sys/fs/bpf")
        os.rmdir(self.pin_path)
        self.state_dir = tempfile.mkdtemp(prefix="nxt-engine-state-")
        self.fw = engine.Firewall(pin_path=self.pin_path, state_dir=self.state_dir)
        self.arg_dir = tempfile.mkdtemp(prefix="nxt-engine-args-")
        os.chmod(self.arg_dir, 0o755)

    # ------------------------------------------------------------ observation
    def read_file(self, name):
        try:
            with open(os.path.join(self.state_dir, name), "rb") as stream:
                return stream.read()
        except FileNotFoundError:
            return None

    def rules_json(self):
        raw = self.read_file("rules.json")
        return json.loads(raw) if raw else {}

    def maps(self, names=RULE_MAPS):
        """{map name: sorted [(key, value)]} read straight from the pins."""
        out = {}
        for name in names:
            with bpfsys.Map.open_pinned(os.path.join(self.pin_path, name)) as m:
                out[name] = sorted(m.items())
        return out

    def snapshot(self):
        """Everything a failed call must leave alone: both JSON files (bytes) and the maps."""
        return {"rules.json": self.read_file("rules.json"), "config.json": self.read_file("config.json"),
                "maps": self.maps(SNAPSHOT_MAPS)}

    def generation(self):
        with bpfsys.Map.open_pinned(os.path.join(self.pin_path, "config")) as m:
            return layout.decode_u64(m.lookup(layout.encode_u32(layout.CFG_RULES_GENERATION)))

    def expected_from_json(self):
        """What the rule maps must hold according to rules.json (no expiring entries in these tests)."""
        data = self.rules_json()
        want = dict((name, {}) for name in RULE_MAPS)
        want.update(sources.expected(data))
        for kind, key in KINDS.items():
            for name, pairs in rulemaps.expected_entries(kind, data.get(key, [])).items():
                want[name].update(pairs)
        return dict((name, sorted(pairs.items())) for name, pairs in want.items())

    def assert_maps_match_json(self):
        assert self.maps() == self.expected_from_json()
        assert self.generation() == self.rules_json().get("generation", 0) + 1

    # ------------------------------------------------------------ other processes
    def runner_argv(self, op, **kwargs):
        args = json.dumps(kwargs)
        if len(args) > 4096:
            fd, path = tempfile.mkstemp(suffix=".json", dir=self.arg_dir)
            with os.fdopen(fd, "w") as stream:
                stream.write(args)
            os.chmod(path, 0o644)
            args = "@" + path
        return [SYSTEM_PYTHON, RUNNER, self.root, self.pin_path, self.state_dir, op, args]

    def run(self, op, prefix=(), timeout=60, **kwargs):
        """(returncode, reply dict) of one engine call in a child process."""
        proc = subprocess.run(list(prefix) + self.runner_argv(op, **kwargs), capture_output=True, text=True,
                              timeout=timeout, check=False)
        lines = proc.stdout.strip().splitlines()
        assert lines, "runner printed nothing (rc %d): %s" % (proc.returncode, proc.stderr)
        return proc.returncode, json.loads(lines[-1])

    def close(self):
        try:
            self.fw.remove_program()
        finally:
            shutil.rmtree(self.pin_path, ignore_errors=True)
            shutil.rmtree(self.state_dir, ignore_errors=True)
            shutil.rmtree(self.arg_dir, ignore_errors=True)
