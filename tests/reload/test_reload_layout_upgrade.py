# SPDX-License-Identifier: GPL-2.0-or-later
"""Upgrade of a running firewall from data plane layout 1 (wl*/bl* maps, the collection as of
LAYOUT1_REV) to the current layout (src* maps), by a hot reload of the current collection.

The layout-1 firewall is loaded by the layout-1 collection itself (its engine and its
tests/reload/runner.py, extracted from git), on the same pin_path and state_dir the current
engine then takes over: exactly what a collection upgrade on a host does. Verdicts are compared
with BPF_PROG_TEST_RUN on the pinned XDP program before and after (the program the interfaces run).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import json
import os
import struct
import time

import pytest

from scapy.all import IP, TCP, UDP, Ether, IPv6

from ansible_collections.netxfw.firewall.plugins.module_utils import layout, sources
from ansible_collections.netxfw.firewall.plugins.module_utils import reload as hot_reload

import netns
from reload_env import SETTINGS, old_collection

LAYOUT1_REV = "c44fab5"  # the last commit of the layout-1 data plane (wl4_host ... bl6_lpm)
LAYOUT1_MAPS = ("wl4_host", "wl6_host", "wl4_lpm", "wl6_lpm", "bl4_host", "bl6_host", "bl4_lpm", "bl6_lpm")
IFACES = SETTINGS["interfaces"]
ADDR = netns.ADDR

WHITELIST = ["203.0.113.138", "2001:db8:bad::10"]
BLACKLIST = ["203.0.113.128/26", "2001:db8:bad::/48", ADDR[4]["att"], ADDR[6]["att"]]
EXPIRING = ["198.51.100.128/25", "2001:db8:cafe:8000::/49"]  # blacklisted for an hour
PORT_RULES = [
    {"source": "any", "proto": "udp", "ports": 40404, "action": "allow"},
    {"source": "198.51.100.0/24", "proto": "tcp", "ports": 22, "action": "allow"},
    {"source": "2001:db8:cafe::/48", "proto": "tcp", "ports": 22, "action": "allow"},
]
RATELIMITS = [{"source": "2001:db8:cafe::/48", "rate": 100000, "burst": 100000, "ban_ttl": 60}]  # never reached
BANS = {  # address -> ttl (s): auto-bans of the rate limiter, bit 63 of bl4_host/bl6_host
    "198.51.100.99": 600,      # inside a port rule's source: carried with SRC_RULES
    "2001:db8:cafe::99": 600,  # and a rate-limit rule's: SRC_RL too
    "203.0.113.178": 600,         # inside a blacklisted prefix that outlives it: not carried
    "198.51.100.140": 7200,    # inside a blacklisted prefix it outlives: carried
    "198.51.100.141": 600,     # inside a blacklisted prefix that outlives it: not carried
    "203.0.113.138": 600,         # whitelisted: the whitelist wins, not carried
    "198.51.100.98": -1,       # expired: not carried
}
CARRIED = ("198.51.100.99", "2001:db8:cafe::99", "198.51.100.140")
# Inside the blacklisted /26, expires after the upgrade: an exact-address entry shadows the prefixes
# covering it, so a carried ban would let the address through once expired (layout 1 looked up both).
SHORT_BAN = ("203.0.113.179", 15)
# source -> (UDP 40404, TCP 22) under policy deny
EXPECTED = {
    ADDR[4]["att_ok"]: ("pass", "drop"),
    ADDR[4]["att"]: ("drop", "drop"),
    "203.0.113.138": ("pass", "pass"),        # whitelisted inside a blacklisted /26 (and banned)
    "203.0.113.148": ("drop", "drop"),
    "203.0.113.178": ("drop", "drop"),
    "203.0.113.179": ("drop", "drop"),
    "198.51.100.7": ("pass", "pass"),
    "198.51.100.99": ("drop", "drop"),     # banned
    "198.51.100.98": ("pass", "pass"),     # its ban expired
    "198.51.100.130": ("drop", "drop"),    # expiring blacklist
    "198.51.100.140": ("drop", "drop"),
    "198.51.100.141": ("drop", "drop"),
    ADDR[6]["att_ok"]: ("pass", "drop"),
    ADDR[6]["att"]: ("drop", "drop"),
    "2001:db8:bad::10": ("pass", "pass"),
    "2001:db8:bad::20": ("drop", "drop"),
    "2001:db8:cafe::7": ("pass", "pass"),
    "2001:db8:cafe::99": ("drop", "drop"),
    "2001:db8:cafe:8000::5": ("drop", "drop"),
}
VERDICT = {1: "drop", 2: "pass"}


@pytest.fixture(scope="module")
def layout1(tmp_path_factory):
    """(collections root, runner script) of the layout-1 collection, extracted from git."""
    extracted, source = old_collection(LAYOUT1_REV, 1, tmp_path_factory.mktemp("layout1"))
    assert "bl4_host" in source
    return extracted


def frames(src):
    """Hex frames from `src` to the firewalled host: a UDP datagram to 40404, a TCP SYN to 22."""
    fam = ipaddress.ip_address(src).version
    ip = IP(src=src, dst=ADDR[4]["fw_att"]) if fam == 4 else IPv6(src=src, dst=ADDR[6]["fw_att"])
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    return [bytes(eth / ip / UDP(sport=40000, dport=40404) / b"probe").hex(),
            bytes(eth / ip / TCP(sport=40001, dport=22, flags="S")).hex()]


def verdicts(fw):
    """{source: (UDP 40404, TCP 22)} of the pinned XDP program."""
    names = sorted(EXPECTED)
    got = fw.call("xdp_verdicts", frames=[f for src in names for f in frames(src)])
    assert got is not None, "no XDP program pinned"
    return dict((src, (VERDICT.get(got[2 * i], got[2 * i]), VERDICT.get(got[2 * i + 1], got[2 * i + 1])))
                for i, src in enumerate(names))


def load_layout1(fwenv, layout1):
    old = fwenv.runner(root=layout1[0], script=layout1[1])
    old.call("apply_program", settings=dict(SETTINGS, capacity=dict(SETTINGS["capacity"])))
    old.call("apply_rules", kind="whitelist", entries=WHITELIST)
    old.call("apply_rules", kind="blacklist", entries=BLACKLIST)
    old.call("apply_rules", kind="blacklist", entries=EXPIRING, ttl=3600)
    old.call("apply_rules", kind="port", entries=PORT_RULES)
    old.call("apply_rules", kind="ratelimit", entries=RATELIMITS)
    for address, ttl in sorted(BANS.items()) + [SHORT_BAN]:
        old.call("ban", address=address, ttl=ttl)
    return old


def ban_expiries(old_dump):
    """address -> expiry ns of the auto-bans in a layout-1 dump (bl4_host/bl6_host, bit 63)."""
    out = {}
    for name in ("bl4_host", "bl6_host"):
        for key, value in old_dump[name]:
            raw = int.from_bytes(bytes.fromhex(value), "little")
            if raw >> 63:
                out[str(ipaddress.ip_address(bytes.fromhex(key)))] = raw & ((1 << 63) - 1)
    return out


def longest_prefix(want, raw):
    """The class of the longest prefix of sources.expected() output covering an address (0: none)."""
    network = ipaddress.ip_network(ipaddress.ip_address(raw))
    lpm = want[sources.map_name(network.version, "lpm")]
    for plen in range(network.prefixlen, -1, -1):
        cover = network.supernet(new_prefix=plen)
        value = lpm.get(struct.pack("=I", plen) + cover.network_address.packed)
        if value is not None:
            return layout.decode_u64(value)
    return 0


def assert_src_maps(dump, rules_json, bans):
    """The src maps hold the resolved classes of rules.json, plus the carried bans (exact expiry)."""
    want = sources.expected(rules_json)
    for address, expiry in bans.items():
        raw = ipaddress.ip_address(address).packed
        name = sources.map_name(4 if len(raw) == 4 else 6, "host")
        assert raw not in want[name], address  # a listed address: its entry would win
        want[name][raw] = layout.encode_ban(expiry, longest_prefix(want, raw))  # keeps its rule bits
    for name in sources.SRC_MAPS:
        got = dict((bytes.fromhex(k), layout.decode_u64(bytes.fromhex(v))) for k, v in dump[name])
        expect = dict((k, layout.decode_u64(v)) for k, v in want[name].items())
        assert sorted(got) == sorted(expect), (name, sorted(k.hex() for k in set(got) ^ set(expect)))
        for key, value in expect.items():
            bits, expiry = layout.source_class(layout.encode_u64(value))
            got_bits, got_expiry = layout.source_class(layout.encode_u64(got[key]))
            assert got_bits == bits, (name, key.hex(), hex(got_bits), hex(bits))
            # rules.json expiries are wall-clock seconds, converted when written: a few seconds apart
            assert (got_expiry == 0) == (expiry == 0) and abs(got_expiry - expiry) < 30e9, (name, key.hex())


@pytest.mark.parametrize("how", ["reload", "apply_program"])
def test_layout1_firewall_upgrades_by_hot_reload(fwenv, layout1, how):
    old = load_layout1(fwenv, layout1)
    old_dump = old.call("dump")
    assert set(LAYOUT1_MAPS) <= set(old_dump), sorted(old_dump)
    expiries = ban_expiries(old_dump)
    assert set(expiries) == set(BANS) | {SHORT_BAN[0]}
    old_state = old.call("state", interfaces=IFACES)
    old.close()

    fw = fwenv.runner()
    before = verdicts(fw)  # the layout-1 program (BPF_PROG_TEST_RUN needs no maps of ours)
    assert before == EXPECTED
    # the current engine does not take layout-1 pins for its own (open_maps: None) ...
    assert fw.call("dump") is None
    assert set(LAYOUT1_MAPS) <= set(fw.call("pins"))
    # ... a rule change meanwhile goes to rules.json only, and is in force after the upgrade
    pending = fw.call("apply_rules", kind="whitelist", entries=["203.0.113.88"])
    assert pending == {"changed": True, "added": 1, "removed": 0, "loaded": False}

    if how == "reload":
        result = fw.call("reload")
    else:
        result = fw.call("apply_program", settings=dict(SETTINGS, capacity=dict(SETTINGS["capacity"])))
        assert "compile and load the data plane" in result["actions"], result
    assert result["changed"] and result["compiled"], result
    if how == "reload":
        assert result["previous_identity"] == old_state["identity"] != result["identity"]
    skipped = dict((s["map"], s["reason"]) for s in result["skipped"])
    assert all(skipped.get(name) == "not a map of the new program" for name in LAYOUT1_MAPS), result["skipped"]
    for name in hot_reload.RULE_MAPS:
        assert result["migrated"][name]["source"] == "rules.json", (name, result["migrated"][name])
    assert result["migrated"]["ct"]["source"] == "copy"

    # every interface runs the new pinned program; only the new layout's pins are left
    st = fw.call("state", interfaces=IFACES)
    assert not st["staging"] and st["identity"] == result["identity"], st
    for ifname in IFACES:
        assert st["running"][ifname]["xdp"] == st["pins"]["prog_xdp"] != old_state["pins"]["prog_xdp"], st
        assert st["running"][ifname]["tc"] == st["pins"]["prog_tc"], st
    assert fw.call("pins") == sorted(set(layout.MAPS) | set(layout.PROGRAMS))

    # the src maps hold rules.json resolved, and the live bans that no listed entry decides
    with open(os.path.join(fwenv.state_dir, "rules.json")) as stream:
        rules_json = json.load(stream)
    assert "203.0.113.88/32" in rules_json["whitelist"]
    carried = dict((a, e) for a, e in expiries.items() if a in CARRIED)
    dump = fw.call("dump")
    assert_src_maps(dump, rules_json, carried)
    classes = fw.call("sources_of", addresses=list(carried))
    for address, (bits, expiry) in classes.items():
        assert bits & layout.SRC_BAN and bits & layout.SRC_BL and expiry == carried[address], (address, hex(bits))
    assert classes["2001:db8:cafe::99"][0] & layout.SRC_RL and classes["198.51.100.99"][0] & layout.SRC_RULES
    bans = dict((b["address"], b["expires_in"]) for b in fw.call("info")["bans"])
    assert set(bans) == set(carried), bans

    # no verdict changed (and the rule added meanwhile is in force)
    after = verdicts(fw)
    assert after == before
    assert fw.call("sources_of", addresses=["203.0.113.88"])["203.0.113.88"][0] & layout.SRC_WL

    # the short ban has expired (CLOCK_MONOTONIC is the same in every namespace): its blacklisted
    # prefix still blocks the address
    time.sleep(max(0.0, (expiries[SHORT_BAN[0]] - time.monotonic_ns()) / 1e9) + 0.5)
    assert verdicts(fw) == before

    # the upgraded firewall reloads as usual, and is then in step
    again = fw.call("reload", force=True)
    assert again["compiled"] and all(s["reason"] == "expired" for s in again["skipped"]), again
    assert verdicts(fw) == before
    assert fw.call("reload")["compiled"] is False


def test_layout1_firewall_removed_by_current_engine(fwenv, layout1):
    """Removing the firewall with the new collection before any reload: the layout-1 pins go too
    (layout.RETIRED_MAPS), and nothing stays attached."""
    old = load_layout1(fwenv, layout1)
    old.close()
    fw = fwenv.runner()
    assert set(LAYOUT1_MAPS) <= set(fw.call("pins"))
    result = fw.call("remove_program")
    assert result["changed"], result
    assert fw.call("pins") == []
    assert not os.path.exists(fwenv.pin_path)
    st = fw.call("state", interfaces=IFACES)
    assert all(not running["xdp"] and not running["tc"] for running in st["running"].values()), st
    assert fw.call("remove_program")["changed"] is False
