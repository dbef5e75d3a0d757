# SPDX-License-Identifier: GPL-2.0-or-later
"""Runs that overlap, runs that die half way, and the lock between them.

Invariants checked after every scenario: rules.json holds every change that was
reported as done, and the rule maps hold exactly what rules.json says (with the
generation marker config[15] = generation + 1)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fcntl
import ipaddress
import json
import os
import signal
import struct
import subprocess
import time

import pytest

from ansible_collections.netxfw.firewall.plugins.module_utils import bpfsys, layout, queries, rules
from ansible_collections.netxfw.firewall.plugins.module_utils.errors import NetxfwError
from ansible_collections.netxfw.firewall.plugins.module_utils.state import StateStore

from engine_env import SETTINGS

BASE = ["203.0.113.0/24", "2001:db8:2::66"]


def v6_nets(block, count):
    """count distinct /64s inside 2001:db8:<block>::/48 .. (documentation space only)."""
    return ["2001:db8:%x:%x::/64" % (block + n // 65536, n % 65536) for n in range(count)]


def norm(cidrs):
    return set(str(ipaddress.ip_network(c)) for c in cidrs)


def blacklist_cidrs(env):
    return set(e["cidr"] for e in env.rules_json().get("blacklist", []))


@pytest.fixture
def based(fresh):
    fresh.fw.apply_rules("blacklist", BASE)
    fresh.fw.apply_rules("port", [{"proto": "tcp", "port": 8080, "source": "198.51.100.0/24"}])
    fresh.assert_maps_match_json()
    return fresh


# --------------------------------------------------------------- the lock
def test_second_run_waits_for_the_lock(based):
    lock = os.open(os.path.join(based.state_dir, ".lock"), os.O_RDWR)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        before = based.snapshot()
        proc = subprocess.Popen(based.runner_argv("apply_rules", kind="blacklist", entries=["198.51.100.66"]),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)
        assert proc.poll() is None, "the run did not wait for the lock"
        assert based.snapshot() == before
    finally:
        os.close(lock)  # releases the flock
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, out + err
    assert json.loads(out)["ok"]["added"] == [{"cidr": "198.51.100.66/32", "expires": None}]
    based.assert_maps_match_json()


def test_lock_timeout_message_and_nothing_changed(based, monkeypatch):
    monkeypatch.setattr(based.fw.store, "lock", lambda timeout=0.3, create=True: StateStore.lock(based.fw.store, timeout, create))
    lock = os.open(os.path.join(based.state_dir, ".lock"), os.O_RDWR)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        before = based.snapshot()
        for call, args in ((based.fw.apply_rules, ("blacklist", ["198.51.100.66"])),
                           (based.fw.apply_program, (dict(SETTINGS, policy="allow"),))):
            with pytest.raises(NetxfwError, match=r"another netxfw run holds .*\.lock; wait for it to finish"):
                call(*args)
            assert based.snapshot() == before
    finally:
        os.close(lock)


def test_concurrent_runs_lose_no_rule(based):
    """Three processes at once, two on the same list: each succeeds after the other or fails with the
    lock message; every success is in rules.json and the maps match it."""
    sets = {"a": v6_nets(0x100, 6000), "b": v6_nets(0x200, 6000)}
    jobs = {name: based.runner_argv("apply_rules", kind="blacklist", entries=entries) for name, entries in sets.items()}
    jobs["port"] = based.runner_argv("apply_rules", kind="port",
                                     entries=[{"proto": "udp", "ports": "5000-5100", "source": "any"}])
    procs = dict((name, subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
                 for name, argv in jobs.items())
    replies = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=90)
        replies[name] = (proc.returncode, json.loads(out.strip().splitlines()[-1]) if out.strip() else err)
    wanted = set(BASE)
    for name, (rc, reply) in replies.items():
        if rc == 0:
            assert reply["ok"]["changed"], (name, reply)
            if name in sets:
                wanted |= set(sets[name])
        else:
            assert "another netxfw run holds" in reply["error"], (name, reply)
    assert any(rc == 0 for rc, dummy in replies.values())
    assert blacklist_cidrs(based) == norm(wanted)
    assert (replies["port"][0] == 0) == bool(based.rules_json()["port_rules"][1:])
    based.assert_maps_match_json()


# --------------------------------------------------------------- crash mid-write
def start_and_kill_mid_write(env, entries):
    """Start a large apply_rules in a child; SIGKILL it while the maps are marked dirty (config[15] = 0)."""
    proc = subprocess.Popen(env.runner_argv("apply_rules", kind="blacklist", entries=entries),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    try:
        with bpfsys.Map.open_pinned(os.path.join(env.pin_path, "config")) as config:
            key = layout.encode_u32(layout.CFG_RULES_GENERATION)
            while layout.decode_u64(config.lookup(key)) != 0:
                assert proc.poll() is None, "the run finished before it could be killed: %r" % (proc.communicate(),)
                assert time.monotonic() < deadline, "the maps were never marked dirty"
        # then until a new entry is in the exact-address map (written before the LPM trie): the writes are under way
        with bpfsys.Map.open_pinned(os.path.join(env.pin_path, "src6_host")) as host:
            marker = rules.cidr_key(entries[-1])[2]  # an exact address
            while host.lookup(marker) is None:
                assert proc.poll() is None, "the run finished before it could be killed: %r" % (proc.communicate(),)
                assert time.monotonic() < deadline, "the writes never started"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL


@pytest.fixture
def crashed(based):
    before = based.snapshot()
    # two maps to write (src6_host, then src6_lpm); the kill lands after the first
    big = v6_nets(0x300, 15000) + ["2001:db8:400::%x" % n for n in range(1, 15001)]
    start_and_kill_mid_write(based, big)
    # rules.json is written only after the maps: the old file is intact
    assert based.read_file("rules.json") == before["rules.json"]
    assert based.generation() == 0, "the maps are not marked dirty after the crash"
    maps = based.maps()
    assert len(maps["src6_host"]) > 1, "none of the new entries reached the maps"
    assert maps != based.expected_from_json()
    return based, before, big


def test_crash_then_apply_program_resyncs_from_json(crashed):
    env, before, dummy = crashed
    result = env.fw.apply_program(SETTINGS)
    assert result["changed"] and not result["compiled"], result
    assert "resynchronise rule maps from %s" % os.path.join(env.state_dir, "rules.json") in result["actions"]
    env.assert_maps_match_json()
    assert env.snapshot()["rules.json"] == before["rules.json"]
    assert env.maps() == dict((n, v) for n, v in before["maps"].items() if n in env.maps())
    again = env.fw.apply_program(SETTINGS)
    assert again["changed"] is False, again


def test_crash_then_rerun_converges(crashed):
    env, dummy, big = crashed
    check = env.fw.apply_rules("blacklist", big, check_mode=True)
    assert check["changed"]
    assert env.generation() == 0  # check mode repaired nothing
    result = env.fw.apply_rules("blacklist", big)
    assert result["changed"] and len(result["added"]) == len(big)
    assert blacklist_cidrs(env) == norm(BASE + big)
    env.assert_maps_match_json()
    assert env.fw.apply_rules("blacklist", big)["changed"] is False


def test_crash_then_other_kind_resyncs_everything(crashed):
    """A run on another list notices the dirty maps and rebuilds the blacklist maps too."""
    env, before, dummy = crashed
    result = env.fw.apply_rules("whitelist", ["198.51.100.7"])
    assert result["changed"]
    env.assert_maps_match_json()
    assert blacklist_cidrs(env) == norm(BASE)


def test_crash_is_reported_until_repaired(crashed):
    """Until the next write run repairs them, half-written maps are reported (status, /metrics and
    netxfw_info read this), and a write under way (the lock held) is not mistaken for one."""
    env, dummy, dummy = crashed
    assert queries.info(env.fw)["rules_in_step"] is False
    with env.fw.store.lock():
        assert queries.info(env.fw)["rules_in_step"] is None
    env.fw.apply_rules("whitelist", ["198.51.100.7"])
    assert queries.info(env.fw)["rules_in_step"] is True


# --------------------------------------------------------------- conntrack purge on every path
def ct_key(saddr, daddr, sport, dport, proto=6):
    src, dst = ipaddress.ip_address(saddr), ipaddress.ip_address(daddr)
    return struct.pack("=16s16s2s2sBB2x", src.packed, dst.packed, sport.to_bytes(2, "big"),
                       dport.to_bytes(2, "big"), proto, src.version)


@pytest.mark.parametrize("dirty", [False, True], ids=["clean-maps", "dirty-maps"])
def test_blacklist_purges_conntrack_also_when_maps_are_resynced(fresh, dirty):
    flows = {"blocked": ct_key("2001:db8:7::5", "2001:db8:1::1", 40000, 22),
             "kept": ct_key("2001:db8:8::5", "2001:db8:1::1", 40001, 22)}
    with bpfsys.Map.open_pinned(os.path.join(fresh.pin_path, "ct")) as ct:
        for key in flows.values():
            ct.update(key, struct.pack("=QQ", time.monotonic_ns(), 0))
        if dirty:
            with bpfsys.Map.open_pinned(os.path.join(fresh.pin_path, "config")) as config:
                config.update(layout.encode_u32(layout.CFG_RULES_GENERATION), layout.encode_u64(0))
        fresh.fw.apply_rules("blacklist", ["2001:db8:7::/48"])
        left = set(ct.keys())
    fresh.assert_maps_match_json()
    assert flows["kept"] in left
    assert flows["blocked"] not in left, "a blocked peer keeps its conntrack entry: its flow is not cut"
