# SPDX-License-Identifier: GPL-2.0-or-later
"""Rate limiting (docs/internals.md, "Rate limiting"): per-source buckets of a CIDR's rule,
SYN-only mode, auto-ban into the blacklist host hash with an expiry, the global bucket, and
the stage's place (after conntrack, whitelist and blacklist; before port rules)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.netxfw.firewall.plugins.module_utils import layout
from verdict_packets import ADDR, FAMILIES, TCP, TC_ACT_OK, ct_key, eth, handshake, ip, now_ns, tcp, udp

fams = pytest.mark.parametrize("fam", FAMILIES)
S = 10 ** 9
BAN, BL, RL, EXPIRY = layout.SRC_BAN, layout.SRC_BL, layout.SRC_RL, layout.SRC_EXPIRY_MASK
XDP_DROP = 1


def syn(fam, src=None, flags="S", sport=40000):
    return eth() / ip(fam, src) / TCP(sport=sport, dport=443, flags=flags)


@fams
def test_source_over_its_rate_is_dropped_and_others_in_the_cidr_are_not(fw, fam):
    fw.ratelimit(ADDR[fam]["net"], rate=1, burst=3)
    for dummy in range(3):
        fw.expect(udp(fam), "pass_policy")
    fw.expect(udp(fam), "drop_ratelimit")
    assert fw.rl_state(ADDR[fam]["src"])[2] == 1                 # dropped
    # one source in the CIDR cannot starve another: each has its own bucket
    fw.expect(udp(fam, src=ADDR[fam]["peer"]), "pass_policy")
    # outside every rate-limit CIDR: not limited
    for dummy in range(5):
        fw.expect(udp(fam, src=ADDR[fam]["local"]), "pass_policy")


@fams
def test_bucket_refills_with_time(fw, fam):
    fw.ratelimit(ADDR[fam]["net"], rate=1, burst=1)
    fw.expect(udp(fam), "pass_policy")
    fw.expect(udp(fam), "drop_ratelimit")
    # age the source's state by 2 s: a token is back
    table = fw.t("rl%d_state" % fam)
    for k, v in table.items():
        v.last_ns -= 2 * S
        table[k] = v
    fw.expect(udp(fam), "pass_policy")


@fams
def test_syn_only_limits_only_syns(fw, fam):
    fw.ratelimit(ADDR[fam]["net"], rate=1, burst=1, syn_only=True)
    fw.expect(syn(fam), "pass_policy")
    fw.expect(syn(fam), "drop_ratelimit")
    for flags in ("A", "SA", "PA"):
        fw.expect(syn(fam, flags=flags), "pass_policy")
    fw.expect(udp(fam), "pass_policy")


@fams
def test_over_the_rate_drops_without_a_ban(fw, fam):
    """Packets prove nothing of their source: over the rate they drop, as iptables hashlimit."""
    fw.ratelimit(ADDR[fam]["net"], rate=1, burst=1, ban_ttl_ns=60 * S)
    fw.expect(udp(fam), "pass_policy")
    for dummy in range(5):
        fw.expect(udp(fam), "drop_ratelimit")
        fw.expect(syn(fam), "drop_ratelimit")
    assert fw.list_value(ADDR[fam]["src"]) is None                # no ban (the class is the /24's)


@fams
def test_proven_excess_bans_with_expiry(fw, fam):
    """Completed handshakes beyond rate and burst ban the source; their SYNs' tokens come back."""
    fw.config(ct_enabled=1, ct_tcp_syn_ns=60 * S, ct_timeout_ns=300 * S)
    fw.ratelimit(ADDR[fam]["net"], rate=1, burst=2, syn_only=True, ban_ttl_ns=60 * S)
    for sport in (41000, 41001):
        dummy, (dummy, delta, length) = handshake(fw, fam, sport)
        assert delta == {"pass_policy": (1, length)}
    assert fw.rl_state(ADDR[fam]["src"])[2] == 0                  # nothing dropped: the SYNs were refunded
    before = now_ns()
    dummy, (retval, delta, length) = handshake(fw, fam, 41002)
    assert delta == {"pass_policy": (1, length), "auto_ban": (1, length)}, delta
    value = fw.list_value(ADDR[fam]["src"])
    assert value & ~EXPIRY == BAN | BL | RL                       # the rate-limit source's bit, no port rule's
    assert before + 60 * S <= value & EXPIRY <= now_ns() + 60 * S
    fw.expect(syn(fam), "drop_blacklist")                         # banned: no new connection
    fw.expect(syn(fam, src=ADDR[fam]["peer"]), "pass_policy")     # its neighbour is not
    # the ban expires in the data plane (lookup compares the expiry without the class bits)
    fw.set_list_value(ADDR[fam]["src"], BAN | BL | RL | (now_ns() - 1))
    table = fw.t("rl%d_state" % fam)
    for k, v in table.items():
        v.last_ns -= 2 * S
        table[k] = v
    fw.expect(syn(fam), "pass_policy")


def test_ban_expiry_saturates(fw):
    """A ban_ttl beyond the 59-bit expiry saturates instead of wrapping into the past."""
    fw.config(ct_enabled=1, ct_tcp_syn_ns=60 * S, ct_timeout_ns=300 * S)
    fw.ratelimit(ADDR[4]["net"], rate=1, burst=1, syn_only=True, ban_ttl_ns=EXPIRY)
    handshake(fw, 4, 41000)
    dummy, (dummy, delta, length) = handshake(fw, 4, 41001)
    assert delta == {"pass_policy": (1, length), "auto_ban": (1, length)}, delta
    assert fw.list_value(ADDR[4]["src"]) & EXPIRY == EXPIRY
    fw.expect(syn(4), "drop_blacklist")


@fams
def test_tracked_and_whitelisted_are_never_limited(fw, fam):
    fw.config(policy=1, ct_enabled=1, ct_timeout_ns=300 * S)
    fw.ratelimit(ADDR[fam]["net"], rate=1, burst=1, ban_ttl_ns=60 * S)
    out = eth() / ip(fam, ADDR[fam]["local"], ADDR[fam]["src"]) / TCP(sport=40000, dport=443, flags="PA")
    assert fw.tc(out)[0] == TC_ACT_OK
    inbound = eth() / ip(fam) / TCP(sport=443, dport=40000, flags="PA")
    for dummy in range(5):
        fw.expect(inbound, "pass_conntrack")
    fw.whitelist(ADDR[fam]["peer"] + ("/32" if fam == 4 else "/128"))
    for dummy in range(5):
        fw.expect(udp(fam, src=ADDR[fam]["peer"]), "pass_whitelist")


@fams
def test_longest_prefix_rule_applies(fw, fam):
    fw.ratelimit(ADDR[fam]["net"], rate=1, burst=1)
    fw.ratelimit(ADDR[fam]["src"] + ("/32" if fam == 4 else "/128"), rate=1, burst=5)
    for dummy in range(5):
        fw.expect(udp(fam), "pass_policy")
    fw.expect(udp(fam), "drop_ratelimit")


@fams
def test_rate_limit_sits_before_port_rules(fw, fam):
    fw.rule(ADDR[fam]["net"], 6, 443, 1)
    fw.ratelimit(ADDR[fam]["net"], rate=1, burst=1)
    fw.expect(tcp(fam), "pass_rule")
    fw.expect(tcp(fam), "drop_ratelimit")


@fams
def test_global_bucket(fw, fam):
    fw.config(rl_global_rate=1, rl_global_burst=2)
    fw.expect(udp(fam), "pass_policy")
    fw.expect(udp(fam, src=ADDR[fam]["peer"]), "pass_policy")
    fw.expect(udp(fam, src=ADDR[fam]["local"]), "drop_rate_global")   # every source shares it
    assert fw.list_value(ADDR[fam]["local"]) is None                   # nobody is banned


def test_global_bucket_spares_tracked_flows(fw):
    fw.config(policy=1, ct_enabled=1, ct_timeout_ns=300 * S, rl_global_rate=1, rl_global_burst=1)
    out = eth() / ip(4, ADDR[4]["local"], ADDR[4]["src"]) / TCP(sport=40000, dport=443, flags="PA")
    fw.tc(out)
    fw.expect(udp(4, src=ADDR[4]["peer"]), "drop_policy")              # took the only token
    fw.expect(udp(4, src=ADDR[4]["peer"]), "drop_rate_global")
    fw.expect(eth() / ip(4) / TCP(sport=443, dport=40000, flags="A"), "pass_conntrack")


def test_permanent_blacklist_value_unchanged(fw):
    """Plain entries keep their meaning: 0 never expires, an expiry in the past counts as absent."""
    fw.blacklist(ADDR[4]["src"] + "/32", 0)
    fw.expect(udp(4), "drop_blacklist")
    fw.blacklist(ADDR[4]["src"] + "/32", now_ns() - S)
    fw.expect(udp(4), "pass_policy")


@fams
def test_flows_the_peer_opened_stay_limited(fw, fam):
    """A tracked flow opened by a rate-limited peer takes the peer's tokens on the conntrack path (its
    entry carries CT_F_RL); a flow this host opened to the same peer never does."""
    fw.config(policy=1, ct_enabled=1, ct_udp_ns=30 * S, ct_udp_stream_ns=180 * S, ct_tcp_syn_ns=60 * S,
              ct_timeout_ns=300 * S)
    fw.rule(ADDR[fam]["net"], 17, 53, 1)
    fw.rule(ADDR[fam]["net"], 6, 443, 1)
    fw.ratelimit(ADDR[fam]["net"], rate=1, burst=3)
    # UDP: the peer's datagram, this host's answer: the peer's flow
    query = udp(fam, sport=5353, dport=53)
    fw.expect(query, "pass_rule")
    fw.tc(udp(fam, sport=53, dport=5353, src=ADDR[fam]["local"], dst=ADDR[fam]["src"]))
    flags = fw.ct_entries()[ct_key(ADDR[fam]["src"], ADDR[fam]["local"], 5353, 53, 17)][1]
    assert flags & (layout.CT_F_INBOUND | layout.CT_F_RL) == layout.CT_F_INBOUND | layout.CT_F_RL
    fw.expect(query, "pass_conntrack")
    fw.expect(query, "pass_conntrack")
    for dummy in range(20):
        fw.expect(query, "drop_ratelimit")
    # TCP: a connection the peer completed
    peer = ADDR[fam]["peer"]
    (dummy, d_syn, l_syn), (dummy, d_ack, l_ack) = handshake(fw, fam, 41000, src=peer)
    assert (d_syn, d_ack) == ({"pass_rule": (1, l_syn)}, {"pass_rule": (1, l_ack)})
    data = eth() / ip(fam, peer) / TCP(sport=41000, dport=443, flags="PA", seq=1001, ack=777001)
    fw.expect(data, "pass_conntrack")
    for dummy in range(20):
        fw.expect(data, "drop_ratelimit")
    # a flow this host opened to src: its answers are never limited
    fw.tc(udp(fam, sport=40000, dport=53, src=ADDR[fam]["local"], dst=ADDR[fam]["src"]))
    flags = fw.ct_entries()[ct_key(ADDR[fam]["src"], ADDR[fam]["local"], 53, 40000, 17)][1]
    assert flags & (layout.CT_F_INBOUND | layout.CT_F_RL) == 0
    for dummy in range(20):
        fw.expect(udp(fam, sport=53, dport=40000), "pass_conntrack")


@fams
def test_udp_mark_only_for_rate_limited_peers(fw, fam):
    """Only a rate-limited peer's untracked datagram leaves a mark in ct_syn; others cost nothing."""
    fw.config(ct_enabled=1, ct_udp_ns=30 * S)
    fw.expect(udp(fam, sport=5353, dport=53), "pass_policy")
    assert fw.ct_syn_entries() == {}
    fw.tc(udp(fam, sport=53, dport=5353, src=ADDR[fam]["local"], dst=ADDR[fam]["src"]))
    flags = fw.ct_entries()[ct_key(ADDR[fam]["src"], ADDR[fam]["local"], 5353, 53, 17)][1]
    assert flags & (layout.CT_F_INBOUND | layout.CT_F_RL) == 0
