# SPDX-License-Identifier: GPL-2.0-or-later
"""Any rule change that makes a source blocked cuts its tracked flows, whatever the change (engine.
refresh_flows after sources.write), and only those; the flows peers opened follow their rate limit
when it changes; an auto-ban's sweep cuts only what the banned address does not hold; an expiry the
data plane cannot hold is refused."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import os
import socket
import struct
import time

import pytest

from ansible_collections.netxfw.firewall.plugins.module_utils import bpfsys, layout, rules
from ansible_collections.netxfw.firewall.plugins.module_utils.errors import NetxfwError

LOCAL = {4: "203.0.113.1", 6: "2001:db8:2::1"}
NET = {4: "198.51.100.0/24", 6: "2001:db8:1::/64"}
INSIDE = {4: "198.51.100.7", 6: "2001:db8:1::7"}       # whitelisted inside NET by the tests
NEIGHBOUR = {4: "198.51.100.8", 6: "2001:db8:1::8"}    # in NET, not whitelisted
OUTSIDE = {4: "203.0.113.50", 6: "2001:db8:3::5"}
ESTABLISHED, UDP = 3, 7


def ct_key(remote, sport, dport, proto):
    r, l_ = ipaddress.ip_address(remote), ipaddress.ip_address(LOCAL[ipaddress.ip_address(remote).version])
    return struct.pack("=16s16s", r.packed, l_.packed) + struct.pack("!HH", sport, dport) + \
        struct.pack("=BB2x", proto, r.version)


def track(env, remote, sport=443, dport=40000, proto=socket.IPPROTO_TCP, flags=ESTABLISHED):
    with bpfsys.Map.open_pinned(os.path.join(env.pin_path, "ct")) as ct:
        ct.update(ct_key(remote, sport, dport, proto), struct.pack("=QQ", time.monotonic_ns(), flags))


def tracked(env):
    """{(remote address, proto)} of the ct entries."""
    with bpfsys.Map.open_pinned(os.path.join(env.pin_path, "ct")) as ct:
        return set((str(ipaddress.ip_address(f["saddr"])), f["proto"])
                   for f in (layout.decode_ct_key(k) for k in ct.keys()))


def flows(*addresses):
    return set((a, socket.IPPROTO_TCP) for a in addresses)


@pytest.mark.parametrize("fam", (4, 6))
def test_removing_a_whitelist_entry_inside_a_blacklisted_prefix_cuts_its_flows(fresh, fam):
    fw = fresh.fw
    fw.apply_rules("blacklist", [NET[fam]])
    fw.apply_rules("whitelist", [INSIDE[fam]])
    for address in (INSIDE[fam], OUTSIDE[fam]):
        track(fresh, address)
    fw.apply_rules("port", [{"proto": "tcp", "port": 22}])           # a change that blocks nobody
    assert tracked(fresh) == flows(INSIDE[fam], OUTSIDE[fam])
    fw.apply_rules("whitelist", [INSIDE[fam]], state="absent")       # INSIDE falls to the blacklisted prefix
    assert tracked(fresh) == flows(OUTSIDE[fam])


@pytest.mark.parametrize("fam", (4, 6))
def test_narrowing_a_whitelisted_prefix_cuts_what_it_no_longer_covers(fresh, fam):
    fw = fresh.fw
    half = {4: "198.51.100.0/25", 6: "2001:db8:1::/65"}[fam]
    fw.apply_rules("blacklist", [NET[fam]])
    fw.apply_rules("whitelist", [half])
    track(fresh, INSIDE[fam])
    track(fresh, NEIGHBOUR[fam])
    fw.apply_rules("whitelist", [INSIDE[fam]], exclusive=True)       # the /25 goes, INSIDE stays
    assert tracked(fresh) == flows(INSIDE[fam])


@pytest.mark.parametrize("fam", (4, 6))
def test_blacklisting_a_prefix_spares_its_whitelisted_hosts(fresh, fam):
    fw = fresh.fw
    fw.apply_rules("whitelist", [INSIDE[fam]])
    for address in (INSIDE[fam], NEIGHBOUR[fam], OUTSIDE[fam]):
        track(fresh, address)
    fw.apply_rules("blacklist", [NET[fam]])
    assert tracked(fresh) == flows(INSIDE[fam], OUTSIDE[fam])
    fw.apply_rules("blacklist", [{"cidr": OUTSIDE[fam], "expires": time.time() - 1}])  # already expired
    assert tracked(fresh) == flows(INSIDE[fam], OUTSIDE[fam])


def flags(env, remote, sport=443, dport=40000, proto=socket.IPPROTO_TCP):
    with bpfsys.Map.open_pinned(os.path.join(env.pin_path, "ct")) as ct:
        return layout.decode_ct_value(ct.lookup(ct_key(remote, sport, dport, proto)))[1]


@pytest.mark.parametrize("fam", (4, 6))
def test_a_rate_limit_follows_the_flows_peers_opened(fresh, fam):
    """A rate-limit rule added after a peer opened its flow reaches that flow (rl flag); one removed, or
    the peer whitelisted, frees it; flows this host opened never get it."""
    fw = fresh.fw
    inbound = ESTABLISHED | layout.CT_F_INBOUND
    track(fresh, INSIDE[fam], flags=inbound)
    track(fresh, NEIGHBOUR[fam], flags=ESTABLISHED)                  # opened by this host
    track(fresh, OUTSIDE[fam], flags=inbound)
    fw.apply_rules("ratelimit", [{"source": NET[fam], "rate": 10}])
    assert flags(fresh, INSIDE[fam]) == inbound | layout.CT_F_RL
    assert flags(fresh, NEIGHBOUR[fam]) == ESTABLISHED and flags(fresh, OUTSIDE[fam]) == inbound
    fw.apply_rules("whitelist", [INSIDE[fam]])
    assert flags(fresh, INSIDE[fam]) == inbound
    fw.apply_rules("whitelist", [], exclusive=True)
    assert flags(fresh, INSIDE[fam]) == inbound | layout.CT_F_RL
    fw.apply_rules("ratelimit", [], exclusive=True)
    assert flags(fresh, INSIDE[fam]) == inbound
    assert tracked(fresh) == flows(INSIDE[fam], NEIGHBOUR[fam], OUTSIDE[fam])


def test_sweep_cuts_only_what_a_banned_address_does_not_hold(fresh):
    """A live auto-ban: its address's TCP flows (the ones it opened completed a handshake) and the
    flows this host opened stay; a UDP flow it opened proves nothing and goes."""
    fw = fresh.fw
    banned = NEIGHBOUR[4]
    with bpfsys.Map.open_pinned(os.path.join(fresh.pin_path, "src4_host")) as hosts:
        hosts.update(ipaddress.ip_address(banned).packed, layout.encode_ban(time.monotonic_ns() + 60 * 10 ** 9))
    track(fresh, banned, sport=40001, dport=443, flags=ESTABLISHED | layout.CT_F_INBOUND | layout.CT_F_RL)
    track(fresh, banned, sport=53, dport=40000, proto=socket.IPPROTO_UDP, flags=UDP)
    track(fresh, banned, sport=5353, dport=53, proto=socket.IPPROTO_UDP, flags=UDP | layout.CT_F_INBOUND)
    swept = fw.sweep()
    assert swept["bans_purged_flows"] == 1, swept
    with bpfsys.Map.open_pinned(os.path.join(fresh.pin_path, "ct")) as ct:
        ports = sorted(layout.decode_ct_key(k)["sport"] for k in ct.keys())
    assert ports == [53, 40001]


@pytest.mark.parametrize("ttl", [19 * 365 * 86400, rules.MAX_TTL + 1])
def test_a_ttl_the_expiry_cannot_hold_is_refused_and_changes_nothing(fresh, ttl):
    fresh.fw.apply_rules("blacklist", ["203.0.113.9"])
    before = fresh.snapshot()
    with pytest.raises(NetxfwError, match=r"invalid ttl .*at most 315360000 \(10 years"):
        fresh.fw.apply_rules("blacklist", ["203.0.113.10"], ttl=ttl)
    assert fresh.snapshot() == before
    assert fresh.fw.apply_rules("blacklist", ["203.0.113.10"], ttl=rules.MAX_TTL)["changed"]
    with bpfsys.Map.open_pinned(os.path.join(fresh.pin_path, "src4_host")) as hosts:
        bits, expires = layout.source_class(hosts.lookup(bytes([203, 0, 113, 10])))
    assert bits == layout.SRC_BL and expires >= time.monotonic_ns() + (rules.MAX_TTL - 60) * 10 ** 9
