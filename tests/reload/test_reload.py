# SPDX-License-Identifier: GPL-2.0-or-later
"""Lossless hot reload (issue 4) against the real kernel, with real packets through namespaces.

Topology and runners: conftest.py (tests/traffic/netns.py plus rl0, a second firewalled link).
Every traffic loop is bounded in packets and in time; no assertion depends on timing.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import ipaddress
import os
import random
import socket
import threading
import time

import pytest
from scapy.all import IP, TCP, UDP, Ether, IPv6

from ansible_collections.netxfw.firewall.plugins.module_utils import bpfsys, layout, sources
from ansible_collections.netxfw.firewall.plugins.module_utils import reload as hot_reload
from ansible_collections.netxfw.firewall.plugins.module_utils.bpf_source import SOURCE

import netns
from reload_env import EXTRA_IF, PAUSE_ENV, SETTINGS, SOURCE_ENV

ADDR = netns.ADDR
PORT_UDP = 40404
PORT_TCP = 40405
IFACES = SETTINGS["interfaces"]
GROWN = {"blacklist": 2048, "conntrack": 8192}


def settings(**changes):
    out = dict(SETTINGS)
    out["capacity"] = dict(SETTINGS["capacity"])
    out.update(changes)
    return out


def src_capacity(capacity):
    """Slots of a src map: the whitelist, blacklist and port-rule capacities and the rate-limit rules (layout.MAPS)."""
    caps = dict(SETTINGS["capacity"], **capacity)
    return caps["whitelist"] + caps["blacklist"] + caps["port_rules"] + layout.RL_SIZE


def base_rules(fw):
    """UDP PORT_UDP allowed from anywhere, the attacker (.66 / ::66) blacklisted: without the blacklist its
    packets would reach the listener, so a lost blacklist shows as received packets."""
    fw.call("apply_rules", kind="port", entries=[{"source": "any", "proto": "udp", "ports": PORT_UDP, "action": "allow"}])
    fw.call("apply_rules", kind="blacklist", entries=[ADDR[4]["att"] + "/32", ADDR[6]["att"] + "/128"])


class Listener:
    """UDP listeners on the firewalled host; counts datagrams by source address in a bounded thread."""

    def __init__(self, max_seconds=120):
        self.socks = []
        for fam in (4, 6):
            s = netns.sock(netns.NS_FW, fam, socket.SOCK_DGRAM, timeout=0.2)
            s.bind((ADDR[fam]["fw_att"], PORT_UDP))
            self.socks.append(s)
        self.received = collections.Counter()
        self.stop = threading.Event()
        self.deadline = time.monotonic() + max_seconds
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        quiet = 0
        while time.monotonic() < self.deadline and not (self.stop.is_set() and quiet >= 2):
            got = False
            for s in self.socks:
                try:
                    while True:
                        _data, peer = s.recvfrom(2048)
                        self.received[str(ipaddress.ip_address(peer[0].split("%")[0]))] += 1
                        got = True
                        s.settimeout(0)
                except (socket.timeout, BlockingIOError):
                    s.settimeout(0.1)
            quiet = 0 if got else quiet + 1

    def finish(self):
        self.stop.set()
        self.thread.join(150)
        for s in self.socks:
            s.close()
        return self.received


class Sender:
    """Datagrams from one attacker-side address, paced, at most `limit` of them, until stopped."""

    def __init__(self, fam, who, limit=20000, gap=0.001):
        self.fam, self.src = fam, ADDR[fam][who]
        self.sock = netns.sock(netns.NS_ATT, fam, socket.SOCK_DGRAM)
        self.sock.bind((self.src, 0))
        self.limit, self.gap, self.sent = limit, gap, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        dest = (ADDR[self.fam]["fw_att"], PORT_UDP)
        while self.sent < self.limit and not self.stop.is_set():
            self.sock.sendto(b"netxfw-reload-probe", dest)
            self.sent += 1
            time.sleep(self.gap)

    def burst(self, count):
        for dummy in range(count):
            self.sock.sendto(b"netxfw-reload-probe", (ADDR[self.fam]["fw_att"], PORT_UDP))
            self.sent += 1

    def close(self):
        self.stop.set()
        if self.thread.is_alive() or self.thread.ident:
            self.thread.join(60)
        self.sock.close()


def udp_probe(count=20):
    """Send `count` datagrams from each attacker-side address: {(family, who): received}."""
    listener = Listener(max_seconds=30)
    senders = [Sender(fam, who) for fam in (4, 6) for who in ("att", "att_ok")]
    try:
        for s in senders:
            s.burst(count)
    finally:
        got = listener.finish()
        for s in senders:
            s.close()
    return dict(((s.fam, who), got[str(ipaddress.ip_address(s.src))])
                for s, who in zip(senders, ["att", "att_ok"] * 2))


def assert_filtering(count=20):
    got = udp_probe(count)
    assert got[(4, "att")] == 0 and got[(6, "att")] == 0, got  # blacklisted: nothing reaches the host
    assert got[(4, "att_ok")] > 0 and got[(6, "att_ok")] > 0, got  # the path works


class Conns:
    """n established TCP connections from the firewalled host (client) to nxt-cli (server)."""

    def __init__(self, n, port=PORT_TCP):
        self.server = netns.sock(netns.NS_CLI, 4, socket.SOCK_STREAM, timeout=10)
        self.server.bind((ADDR[4]["cli"], port))
        self.server.listen(256)
        self.pairs = []
        for dummy in range(n):
            client = netns.sock(netns.NS_FW, 4, socket.SOCK_STREAM, timeout=10)
            client.connect((ADDR[4]["cli"], port))
            peer, dummy = self.server.accept()
            peer.settimeout(10)
            self.pairs.append((client, peer))

    @staticmethod
    def _recv_exact(s, n):
        data = b""
        while len(data) < n:
            chunk = s.recv(n - len(data))
            if not chunk:
                raise AssertionError("connection closed")
            data += chunk
        return data

    def roundtrip(self, i, tag):
        """Client -> server and back (the reply passes the firewall's ingress by conntrack only)."""
        client, peer = self.pairs[i]
        msg = ("%-16s" % tag)[:16].encode()
        client.sendall(msg)
        assert self._recv_exact(peer, 16) == msg
        peer.sendall(msg[::-1])
        assert self._recv_exact(client, 16) == msg[::-1]

    def all_work(self, tag):
        for i in range(len(self.pairs)):
            self.roundtrip(i, "%s-%d" % (tag, i))

    def close(self):
        for pair in self.pairs:
            for s in pair:
                s.close()
        self.server.close()


def loaded(fwenv, **changes):
    fw = fwenv.runner()
    fw.call("apply_program", settings=settings(**changes))
    base_rules(fw)
    return fw


def assert_completed(fw, identity=None):
    st = fw.call("state", interfaces=IFACES)
    assert not st["staging"], st
    for ifname in IFACES:
        assert st["running"][ifname]["xdp"] == st["pins"]["prog_xdp"], st
        assert st["running"][ifname]["tc"] == st["pins"]["prog_tc"], st
    if identity:
        assert st["identity"] == identity
    return st


# ---------------------------------------------------------------- under traffic

def test_reload_under_traffic_loses_nothing(fwenv):
    fw = loaded(fwenv)
    conns = Conns(60)
    try:
        conns.all_work("before")
        before_dump = fw.call("dump")
        before = fw.counters()
        listener = Listener()
        senders = [Sender(fam, who) for fam in (4, 6) for who in ("att", "att_ok")]
        for s in senders:
            s.thread.start()
        stop_rounds = threading.Event()
        rounds = {"done": 0, "error": None}

        def keep_talking():  # the connections carry data while the programs are swapped
            try:
                while not stop_rounds.is_set() and rounds["done"] < 5000:
                    conns.roundtrip(rounds["done"] % len(conns.pairs), "during-%d" % rounds["done"])
                    rounds["done"] += 1
                    time.sleep(0.002)
            except Exception as exc:  # reported below
                rounds["error"] = exc

        talker = threading.Thread(target=keep_talking, daemon=True)
        talker.start()
        try:
            while min(s.sent for s in senders) < 200:  # traffic flows before the reload starts
                time.sleep(0.01)
            result = fw.call("reload", capacity=GROWN)
            at_swap = [s.sent for s in senders]
            while min(s.sent - a for s, a in zip(senders, at_swap)) < 200:  # and after it ends
                time.sleep(0.01)
        finally:
            stop_rounds.set()
            for s in senders:
                s.close()
            talker.join(60)
            got = listener.finish()
        assert result["compiled"] and result["changed"], result
        assert rounds["error"] is None, rounds
        sent = dict(((s.fam, s.src), s.sent) for s in senders)
        # not one datagram from a blacklisted source reached the host, before, during or after the swap
        assert got[ADDR[4]["att"]] == 0 and got[str(ipaddress.ip_address(ADDR[6]["att"]))] == 0, (got, sent)
        assert got[ADDR[4]["att_ok"]] > 0 and got[str(ipaddress.ip_address(ADDR[6]["att_ok"]))] > 0, (got, sent)
        # every established connection keeps working under default deny (conntrack migrated)
        assert result["migrated"]["ct"]["entries"] >= 60, result["migrated"]["ct"]
        conns.all_work("after")
        # counters continue from where they were; every blacklisted datagram was counted by one program or the
        # other (the per-CPU add after the swap races the new program for a few microseconds: at most a
        # packet or two may be lost there)
        after = fw.counters()
        assert all(after[k] >= before[k] for k in before), (before, after)
        dropped = after["drop_blacklist"] - before["drop_blacklist"]
        blocked_sent = sent[(4, ADDR[4]["att"])] + sent[(6, ADDR[6]["att"])]
        print("reload under traffic: sent %r received %r drop_blacklist delta %d, %d round trips during, %.0f ms"
              % (sent, dict(got), dropped, rounds["done"], result["duration_ms"]))
        assert blocked_sent - 2 <= dropped <= blocked_sent, (dropped, blocked_sent)
        # rules identical, capacities grown, every interface on the new pinned program
        after_dump = fw.call("dump")
        assert after_dump == before_dump
        info = fw.call("info")
        assert info["maps"]["src4_host"]["capacity"] == src_capacity(GROWN)
        assert info["maps"]["ct"]["capacity"] == GROWN["conntrack"]
        assert_completed(fw, result["identity"])
    finally:
        conns.close()


# ---------------------------------------------------------------- capacity growth with many entries

# Enough entries for several batch copies and a partial last one (bpfsys.BATCH_CHUNK per batch): what
# a million would prove too, in a fifth of the time. bench/reload_bench.py reloads a million.
MANY = 3 * bpfsys.BATCH_CHUNK + 7


def test_grow_capacity_with_many_blacklist_entries(fwenv):
    fw = fwenv.runner(timeout=600)
    fw.call("apply_program", settings=settings(interfaces=[netns.FW_IF],
                                               capacity=dict(SETTINGS["capacity"], blacklist=1 << 18)))
    base = int(ipaddress.IPv6Address("2001:db8:aa::"))
    entries = [str(ipaddress.IPv6Address(base + i)) for i in range(MANY)]
    fw.call("apply_rules", kind="blacklist", entries=entries)
    fw.call("apply_rules", kind="blacklist", entries=[ADDR[4]["att"] + "/32", "2001:db8:bb::/48"])
    before = fw.call("counts")
    assert before["src6_host"] == MANY
    result = fw.call("reload", capacity={"blacklist": 1 << 19})
    assert result["compiled"], result
    assert result["migrated"]["src6_host"]["entries"] == MANY
    assert result["skipped"] == []
    after = fw.call("counts")
    assert after == before
    sample = random.Random(4).sample(entries, 2000) + [entries[0], entries[-1]]
    assert fw.call("has_keys", name="src6_host", addresses=sample) == len(sample)
    assert fw.call("has_keys", name="src4_host", addresses=[ADDR[4]["att"]]) == 1
    info = fw.call("info")
    assert info["maps"]["src6_host"]["capacity"] == src_capacity({"blacklist": 1 << 19})
    del entries, sample


# ---------------------------------------------------------------- failures leave the old program

def _snapshot(fw):
    return {"state": fw.call("state", interfaces=IFACES), "dump": fw.call("dump")}


def _assert_unchanged(fw, before, fwenv):
    assert _snapshot(fw) == before
    assert not os.path.exists(fwenv.pin_path + "_staging")
    assert_filtering()


def _failing_reload(fwenv, source_text):
    path = os.path.join(fwenv.state_dir, "test-source.c")
    with open(path, "w") as stream:
        stream.write(source_text)
    return fwenv.runner(env={SOURCE_ENV: path})


def test_broken_source_keeps_the_old_program(fwenv):
    fw = loaded(fwenv)
    before = _snapshot(fw)
    broken = _failing_reload(fwenv, SOURCE + "\nthis is not C;\n")
    with pytest.raises(netns.AgentError) as err:
        broken.call("reload", force=True)
    assert "compiling the data plane failed" in err.value.message
    _assert_unchanged(fw, before, fwenv)
    # the same through netxfw_program's path (the identity changes with the source)
    with pytest.raises(netns.AgentError) as err:
        broken.call("apply_program", settings=settings())
    assert "compiling the data plane failed" in err.value.message
    _assert_unchanged(fw, before, fwenv)


def test_verifier_rejection_keeps_the_old_program(fwenv):
    fw = loaded(fwenv)
    before = _snapshot(fw)
    anchor = "int xdp_ingress(struct xdp_md *ctx)\n{\n"
    assert anchor in SOURCE
    # compiles, but reads the packet without a bounds check: the verifier refuses it
    rejected = SOURCE.replace(anchor, anchor + "\tif (*(volatile u8 *)((void *)(long)ctx->data + 64))\n"
                                               "\t\treturn XDP_DROP;\n")
    bad = _failing_reload(fwenv, rejected)
    with pytest.raises(netns.AgentError) as err:
        bad.call("reload", force=True)
    assert "verifier rejected" in err.value.message
    _assert_unchanged(fw, before, fwenv)


def test_attach_failure_rolls_back_every_interface(fwenv):
    """rl0's program changes while the reload runs (after fw0 could be swapped): XDP_FLAGS_REPLACE refuses,
    fw0 goes back to the old program, the old maps and pins are untouched, the run fails with the reason."""
    fw = loaded(fwenv)
    before = _snapshot(fw)
    paused = fwenv.runner(env={PAUSE_ENV: "swapped_first"})
    paused.send("reload", capacity=GROWN)
    assert paused.wait_paused() == "swapped_first"
    mid = fw.call("state", interfaces=IFACES)
    assert mid["running"][netns.FW_IF]["xdp"] != before["state"]["running"][netns.FW_IF]["xdp"]  # fw0 swapped
    mode = before["state"]["running"][EXTRA_IF]["mode"]
    # someone else replaces rl0's program (here: the staged one, it is at hand) behind the reload's back
    staged = fwenv.pin_path + "_staging/prog_xdp"
    flag = {"native": "xdpdrv", "generic": "xdpgeneric"}[mode]
    netns.run_in(netns.NS_FW, ["ip", "-force", "link", "set", "dev", EXTRA_IF, flag, "pinned", staged], check=True)
    paused.resume()
    with pytest.raises(netns.AgentError) as err:
        paused.receive()
    assert "rolled back" in err.value.message and "changed while the reload ran" in err.value.message
    after = _snapshot(fw)
    assert after["state"]["running"][netns.FW_IF] == before["state"]["running"][netns.FW_IF]
    assert after["state"]["pins"] == before["state"]["pins"]
    assert after["state"]["identity"] == before["state"]["identity"]
    assert after["dump"] == before["dump"]
    assert not after["state"]["staging"]
    assert_filtering()


def test_shrink_below_entries_fails_before_anything_changes(fwenv):
    fw = loaded(fwenv)
    hosts = ["2001:db8:2::%x" % (0x1000 + i) for i in range(40)]
    fw.call("apply_rules", kind="blacklist", entries=hosts)
    before = _snapshot(fw)
    with open(os.path.join(fwenv.state_dir, "config.json"), "rb") as stream:
        config = stream.read()
    small = {"whitelist": 8, "port_rules": 8}
    with pytest.raises(netns.AgentError) as err:
        fw.call("reload", capacity=dict(small, blacklist=16))
    assert "cannot shrink" in err.value.message
    assert "the blacklist holds 41 exact-address entries (IPv6) but capacity.blacklist would be 16" in err.value.message
    assert _snapshot(fw) == before
    with open(os.path.join(fwenv.state_dir, "config.json"), "rb") as stream:
        assert stream.read() == config
    # shrinking to what still fits works and keeps every entry
    result = fw.call("reload", capacity=dict(small, blacklist=64))
    assert result["compiled"] and result["migrated"]["src6_host"]["entries"] == 41
    assert fw.call("dump") == before["dump"]


# ---------------------------------------------------------------- kill -9 at every step

@pytest.mark.parametrize("step", hot_reload.STEPS)
def test_kill_at_each_step_leaves_a_working_firewall_and_a_rerun_completes(fwenv, step):
    fw = loaded(fwenv)
    conns = Conns(5, port=PORT_TCP + 1 + hot_reload.STEPS.index(step))
    try:
        conns.all_work("before")
        rules_before = fw.call("dump")
        victim = fwenv.runner(env={PAUSE_ENV: step})
        victim.send("reload", capacity=GROWN)
        assert victim.wait_paused() == step
        victim.kill()
        # a working firewall: every interface runs a program, the blacklist holds, flows survive
        st = fw.call("state", interfaces=IFACES)
        for ifname in IFACES:
            assert st["running"][ifname]["xdp"] and st["running"][ifname]["tc"], st
        assert_filtering()
        conns.all_work("killed")
        # a re-run completes the reload
        result = fw.call("reload", capacity=GROWN)
        info = fw.call("info")
        assert info["maps"]["src4_host"]["capacity"] == src_capacity(GROWN), (step, result)
        assert_completed(fw, info["identity"])
        dump = fw.call("dump")
        assert dump == rules_before
        assert_filtering()
        conns.all_work("after")
        again = fw.call("reload", capacity=GROWN)
        assert again["changed"] is False and again["compiled"] is False
    finally:
        conns.close()


# ---------------------------------------------------------------- upgrade path

def test_source_change_reloads_losslessly_through_apply_program(fwenv):
    fw = loaded(fwenv)
    conns = Conns(10, port=PORT_TCP + 20)
    try:
        conns.all_work("before")
        assert_filtering()
        before = fw.counters()
        path = os.path.join(fwenv.state_dir, "upgraded.c")
        with open(path, "w") as stream:
            stream.write(SOURCE + "\n/* netxfw test: a new collection version */\n")
        upgraded = fwenv.runner(env={SOURCE_ENV: path})
        same = upgraded.call("apply_program", settings=settings())
        assert same["compiled"] is True and "compile and load the data plane" in same["actions"]
        assert same["migrated"]["ct"]["entries"] >= 10
        assert same["migrated"]["src4_host"]["source"] == "copy"
        conns.all_work("after")
        after = upgraded.counters()
        assert all(after[k] >= before[k] for k in before), (before, after)
        assert_filtering()
        assert_completed(upgraded, same["identity"])
        again = upgraded.call("apply_program", settings=settings())
        assert again["changed"] is False and again["compiled"] is False
    finally:
        conns.close()


def test_auto_bans_survive_reloads_and_rule_refills(fwenv):
    """Auto-bans are runtime state, not in rules.json: copied by a reload, also when the rule maps
    are refilled from rules.json, and kept when a stale rule sync rebuilds the blacklist maps."""
    fw = loaded(fwenv)

    def banned():
        return dict((b["address"], b["expires_in"]) for b in fw.call("info")["bans"])

    fw.call("ban", address="203.0.113.99", ttl=600)
    fw.call("ban", address="2001:db8:2::99", ttl=600)
    assert set(banned()) == {"203.0.113.99", "2001:db8:2::99"}
    fw.call("reload", force=True)                          # maps copied
    assert set(banned()) == {"203.0.113.99", "2001:db8:2::99"}
    fw.call("mark_rules_stale")
    fw.call("reload", force=True)                          # rule maps refilled from rules.json
    assert set(banned()) == {"203.0.113.99", "2001:db8:2::99"}
    fw.call("mark_rules_stale")
    fw.call("apply_rules", kind="blacklist", entries=["203.0.113.98"])   # stale: full rule sync
    assert set(banned()) == {"203.0.113.99", "2001:db8:2::99"}
    assert all(0 < ttl <= 600 for ttl in banned().values())


def test_the_prefilter_keeps_every_exact_source_through_reloads(fwenv):
    """The exact-source prefilter (a bit per exact address; a clear bit skips the lookup) holds the bit of
    every key of src4_host/src6_host after a reload that copies it, one that rebuilds it (another capacity:
    another size), a refill from rules.json, an engine removal (a rebuild) and a restore from rules.json (the
    boot's first load): a blacklisted exact host and an auto-banned one drop for SYN, ACK and UDP to ports a
    rule allows, in the pinned program (BPF_PROG_TEST_RUN), while an unlisted neighbour passes."""
    fw = loaded(fwenv)
    fw.call("apply_rules", kind="port", entries=[{"source": "any", "proto": "tcp", "ports": PORT_TCP, "action": "allow"}])
    banned = {4: "203.0.113.99", 6: "2001:db8:2::99"}
    gone = {4: "203.0.113.98", 6: "2001:db8:2::98"}  # blacklisted, then removed: its bit may go, the others' not
    fw.call("apply_rules", kind="blacklist", entries=[gone[4] + "/32", gone[6] + "/128"])
    for fam in (4, 6):
        fw.call("ban", address=banned[fam], ttl=600)

    def flood(src):
        fam = ipaddress.ip_address(src).version
        ip = IP(src=src, dst=ADDR[4]["fw_att"]) if fam == 4 else IPv6(src=src, dst=ADDR[6]["fw_att"])
        eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        return [bytes(eth / ip / TCP(sport=40001, dport=PORT_TCP, flags="S")).hex(),
                bytes(eth / ip / TCP(sport=40002, dport=PORT_TCP, flags="A")).hex(),
                bytes(eth / ip / UDP(sport=40003, dport=PORT_UDP) / b"probe").hex()]

    def check(step, with_bans=True):
        assert fw.call("prefilter_missing") == [], step
        dropped = [ADDR[fam]["att"] for fam in (4, 6)] + ([banned[4], banned[6]] if with_bans else [])
        got = fw.call("xdp_verdicts", frames=[f for src in dropped + [ADDR[4]["att_ok"]] for f in flood(src)])
        assert got[:-3] == [1] * 3 * len(dropped) and got[-3] == got[-1] == 2, (step, got)  # the neighbour's SYN, UDP pass

    check("loaded")
    fw.call("apply_rules", kind="blacklist", entries=[gone[4] + "/32", gone[6] + "/128"], state="absent")
    check("entries removed")
    result = fw.call("reload", force=True)
    assert result["migrated"][sources.FILTER_MAP]["source"] == "copy"
    check("reload, copied")
    bigger = dict(SETTINGS["capacity"], blacklist=4 * src_capacity({}))  # more than twice the src slots
    assert layout.src_filter_words(bigger) > layout.src_filter_words(SETTINGS["capacity"])
    result = fw.call("reload", capacity=bigger)
    assert result["migrated"][sources.FILTER_MAP]["source"] == "rebuilt"
    check("reload, another size")
    fw.call("mark_rules_stale")
    fw.call("reload", force=True)
    check("reload, rule maps refilled from rules.json")
    fw.call("remove_program")
    fw.call("apply_program", settings=settings(capacity=bigger))
    check("restored from rules.json", with_bans=False)
