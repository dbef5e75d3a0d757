# SPDX-License-Identifier: GPL-2.0-or-later
"""Source classes (layout 2, docs/internals.md "Source classes"): the whitelist, the blacklist
and the port rules' sources resolved by the engine (sources.resolve) into src4/6_host and
src4/6_lpm, the exact address decided first, the port-rule trie consulted only for sources a
rule covers, and auto-bans in the host hash keeping the rule bit."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import random
import struct
import time

import pytest

from ansible_collections.netxfw.firewall.plugins.module_utils import layout
from test_verdict_fragments import datagram
from verdict_packets import ADDR, FAMILIES, TC_ACT_OK, TCP, TCP_P, UDP_P, eth, handshake, host, ip, now_ns, tcp, udp

fams = pytest.mark.parametrize("fam", FAMILIES)

S = 10 ** 9
ALLOW, DENY = 1, 2
BAN, WL, BL, RULES, RL = layout.SRC_BAN, layout.SRC_WL, layout.SRC_BL, layout.SRC_RULES, layout.SRC_RL
EXPIRY = layout.SRC_EXPIRY_MASK

# a prefix of src (ADDR[fam]["src"]) inside ADDR[fam]["net"], one bit longer
HALF = {4: "198.51.100.0/25", 6: "2001:db8:1::/65"}
# outside every prefix above, neither src nor peer
OUT = {4: "198.51.100.200", 6: "2001:db8:1:0:8000::9"}


def out_udp(fw, fam):
    """local:40000 -> src:53 through tc_egress (records the reply tuple if conntrack is on)."""
    pkt = udp(fam, sport=40000, dport=53, src=ADDR[fam]["local"], dst=ADDR[fam]["src"])
    retval, dummy, dummy = fw.tc(pkt)
    assert retval == TC_ACT_OK


def back_udp(fam):
    """The reply src:53 -> local:40000."""
    return udp(fam, sport=53, dport=40000)


# ---- whitelist and blacklist nested ----

@fams
def test_blacklisted_host_inside_whitelisted_prefix_passes(fw, fam):
    fw.config(policy=1)
    fw.whitelist(ADDR[fam]["net"])
    fw.blacklist(host(fam))
    # resolved: the /32 (/128) carries the whitelist of its prefix; the whitelist wins
    assert fw.list_value(ADDR[fam]["src"]) & ~EXPIRY == WL | BL
    fw.expect(tcp(fam), "pass_whitelist")
    fw.expect(tcp(fam, src=ADDR[fam]["peer"]), "pass_whitelist")
    fw.expect(tcp(fam, src=ADDR[fam]["other"]), "drop_policy")


@fams
def test_blacklisted_host_inside_whitelisted_prefix_passes_with_a_tracked_flow(fw, fam):
    """Host first: the exact entry decides before conntrack, and it is whitelisted."""
    fw.config(policy=1, ct_enabled=1, ct_udp_ns=60 * S, ct_udp_stream_ns=60 * S)
    out_udp(fw, fam)
    fw.whitelist(ADDR[fam]["net"])
    fw.blacklist(host(fam))
    fw.expect(back_udp(fam), "pass_whitelist")


@fams
@pytest.mark.parametrize("order", ["whitelist_first", "blacklist_first"])
def test_whitelisted_host_inside_blacklisted_prefix_passes(fw, fam, order):
    calls = [lambda: fw.whitelist(host(fam)), lambda: fw.blacklist(ADDR[fam]["net"])]
    for call in calls if order == "whitelist_first" else calls[::-1]:
        call()
    fw.expect(tcp(fam), "pass_whitelist")
    fw.expect(tcp(fam, src=ADDR[fam]["peer"]), "drop_blacklist")
    fw.expect(tcp(fam, src=ADDR[fam]["other"]), "pass_policy")


@fams
def test_whitelisted_prefix_inside_blacklisted_prefix_passes(fw, fam):
    fw.blacklist(ADDR[fam]["net"])
    fw.whitelist(HALF[fam])
    fw.expect(tcp(fam), "pass_whitelist")
    fw.expect(tcp(fam, src=OUT[fam]), "drop_blacklist")


@fams
def test_expiring_prefix_inside_a_permanent_one_never_expires(fw, fam):
    """An expired /25 must not hide the live /24 around it: it carries the /24's expiry."""
    fw.blacklist(ADDR[fam]["net"])
    fw.blacklist(HALF[fam], expires_ns=now_ns() - S)
    fw.expect(tcp(fam), "drop_blacklist")
    fw.expect(tcp(fam, src=OUT[fam]), "drop_blacklist")


@fams
def test_expiring_host_takes_the_latest_covering_expiry(fw, fam):
    fw.blacklist(ADDR[fam]["net"], expires_ns=now_ns() + 60 * S)
    fw.blacklist(host(fam), expires_ns=now_ns() - S)
    value = fw.list_value(ADDR[fam]["src"])
    assert value & ~EXPIRY == BL and value & EXPIRY > now_ns()
    fw.expect(tcp(fam), "drop_blacklist")


@fams
def test_egress_opens_flows_by_resolved_class(fw, fam):
    """tc_egress opens no flow to a blocked source, by its exact entry or its prefix, and does
    open one to a whitelisted host inside a blacklisted prefix."""
    fw.config(policy=1, ct_enabled=1, ct_udp_ns=60 * S, ct_udp_stream_ns=60 * S)
    fw.blacklist(ADDR[fam]["net"])
    out_udp(fw, fam)
    assert fw.ct_entries() == {}
    fw.whitelist(host(fam))
    out_udp(fw, fam)
    assert len(fw.ct_entries()) == 1


@fams
def test_egress_opens_a_flow_once_the_blacklist_expired(fw, fam):
    fw.config(policy=1, ct_enabled=1, ct_udp_ns=60 * S, ct_udp_stream_ns=60 * S)
    fw.blacklist(ADDR[fam]["net"], expires_ns=now_ns() - S)
    out_udp(fw, fam)
    assert len(fw.ct_entries()) == 1
    fw.expect(back_udp(fam), "pass_conntrack")


# ---- port rules and their sources ----

@fams
def test_rule_source_inside_blacklisted_prefix_follows_its_expiry(fw, fam):
    """A port rule whose source (a /25) sits inside a blacklisted /24: dropped while the /24
    is live (the /25 carries the /24's blacklist and expiry), allowed once it expired."""
    fw.config(policy=1)
    fw.blacklist(ADDR[fam]["net"], expires_ns=now_ns() + 300 * 10 ** 6)
    fw.rule(HALF[fam], TCP_P, 443, ALLOW)
    fw.expect(tcp(fam, dport=443), "drop_blacklist")
    fw.expect(tcp(fam, dport=443, src=OUT[fam]), "drop_blacklist")
    time.sleep(0.35)  # the data plane compares the expiry itself: nothing is rewritten
    fw.expect(tcp(fam, dport=443), "pass_rule")
    fw.expect(tcp(fam, dport=444), "drop_policy")
    fw.expect(tcp(fam, dport=443, src=OUT[fam]), "drop_policy")   # outside the rule's source


@fams
def test_rule_host_inside_blacklisted_prefix_is_dropped(fw, fam):
    fw.blacklist(ADDR[fam]["net"])
    fw.rule(host(fam), TCP_P, 443, ALLOW)
    assert fw.list_value(ADDR[fam]["src"]) & ~EXPIRY == BL | RULES
    fw.expect(tcp(fam, dport=443), "drop_blacklist")


@fams
def test_source_outside_every_rule_source_skips_the_rules(fw, fam):
    """A port with rules for other sources: a source none of them covers meets the policy."""
    fw.rule(host(fam, "peer"), TCP_P, 443, DENY)
    fw.expect(tcp(fam, dport=443, src=ADDR[fam]["peer"]), "drop_rule")
    fw.expect(tcp(fam, dport=443), "pass_policy")
    fw.config(policy=1)
    fw.rule(host(fam, "peer"), TCP_P, 444, ALLOW)
    fw.expect(tcp(fam, dport=444, src=ADDR[fam]["peer"]), "pass_rule")
    fw.expect(tcp(fam, dport=444), "drop_policy")


@fams
def test_rule_trie_is_consulted_only_with_the_rule_bit(fw, fam):
    """A rules4/6 key whose source is in no src map (SRC_RULES unset) is never looked up."""
    fw.rule_key(host(fam), TCP_P, 443, DENY)
    fw.expect(tcp(fam, dport=443), "pass_policy")
    fw.rule(ADDR[fam]["net"], TCP_P, 22, ALLOW)     # now a rule source covers src
    fw.expect(tcp(fam, dport=443), "drop_rule")      # the most specific key, /32 deny


@fams
def test_expired_blacklisted_host_inside_a_rule_source_keeps_the_rule(fw, fam):
    """The exact entry shadows the prefixes: it must carry the rule bit of the rule's source."""
    fw.rule(ADDR[fam]["net"], TCP_P, 443, DENY)
    fw.blacklist(host(fam), expires_ns=now_ns() - S)
    assert fw.list_value(ADDR[fam]["src"]) & ~EXPIRY == BL | RULES
    fw.expect(tcp(fam, dport=443), "drop_rule")
    fw.expect(tcp(fam, dport=80), "pass_policy")


@fams
def test_any_source_rule_applies_to_everyone(fw, fam):
    """An "any"-source rule (0.0.0.0/0 and ::/0 with SRC_RULES): every source, those with
    exact entries included (an expired blacklisted host, a rule's own host)."""
    fw.rule("any", UDP_P, 53, DENY)
    fw.blacklist(host(fam), expires_ns=now_ns() - S)
    fw.rule(host(fam, "peer"), TCP_P, 22, ALLOW)
    fw.blacklist(HALF[fam], expires_ns=now_ns() - S)
    for src in (ADDR[fam]["src"], ADDR[fam]["peer"], OUT[fam], ADDR[fam]["other"]):
        fw.expect(udp(fam, dport=53, src=src), "drop_rule")
        fw.expect(udp(fam, dport=54, src=src), "pass_policy")
    # the whitelist still wins over it, and a live blacklist entry too
    fw.whitelist(host(fam, "other"))
    fw.expect(udp(fam, dport=53, src=ADDR[fam]["other"]), "pass_whitelist")
    fw.blacklist(host(fam), expires_ns=0)
    fw.expect(udp(fam, dport=53), "drop_blacklist")


def test_any_source_rule_covers_both_families(fw):
    fw.rule("any", TCP_P, 8080, DENY)
    for fam in FAMILIES:
        fw.expect(tcp(fam, dport=8080), "drop_rule")
        fw.expect(tcp(fam, dport=8081), "pass_policy")


# ---- auto-bans ----

def _age_rl_state(fw, fam):
    table = fw.t("rl%d_state" % fam)
    for k, v in table.items():
        v.last_ns -= 2 * S
        table[k] = v


def _ban(fw, fam, passed):
    """Two handshakes completed by src under a syn_only rule of rate 1, burst 1 with a ban: the second
    is proven excess and bans src. Its packets pass with `passed` (a port rule or the policy)."""
    fw.config(ct_enabled=1, ct_tcp_syn_ns=60 * S, ct_timeout_ns=300 * S)
    fw.ratelimit(ADDR[fam]["net"], rate=1, burst=1, syn_only=True, ban_ttl_ns=60 * S)
    (dummy, d_syn, l_syn), (dummy, d_ack, l_ack) = handshake(fw, fam, 40001)
    assert (d_syn, d_ack) == ({passed: (1, l_syn)}, {passed: (1, l_ack)})
    assert fw.list_value(ADDR[fam]["src"]) is None or not fw.list_value(ADDR[fam]["src"]) & BAN
    (dummy, d_syn, l_syn), (dummy, d_ack, l_ack) = handshake(fw, fam, 40002)
    assert (d_syn, d_ack) == ({passed: (1, l_syn)}, {passed: (1, l_ack), "auto_ban": (1, l_ack)})


@fams
def test_auto_ban_keeps_the_rule_bit_and_the_rule_applies_after_it(fw, fam):
    fw.config(policy=1)
    fw.rule(ADDR[fam]["net"], TCP_P, 443, ALLOW)
    _ban(fw, fam, "pass_rule")
    value = fw.list_value(ADDR[fam]["src"])
    assert value & ~EXPIRY == BAN | BL | RULES | RL
    fw.expect(tcp(fam, dport=443), "drop_blacklist")
    fw.expect(tcp(fam, dport=443, src=ADDR[fam]["peer"]), "pass_rule")
    # the ban expires: the host entry still shadows the /24, and carries its rule bit
    fw.set_list_value(ADDR[fam]["src"], (value & ~EXPIRY) | (now_ns() - 1))
    _age_rl_state(fw, fam)
    fw.expect(tcp(fam, dport=443), "pass_rule")
    _age_rl_state(fw, fam)
    fw.expect(tcp(fam, dport=444), "drop_policy")


@fams
def test_auto_ban_survives_a_rewrite_and_takes_a_new_rule_bit(fw, fam):
    """sources.write keeps a live ban, with the rule bit of the prefix now covering it."""
    _ban(fw, fam, "pass_policy")
    fw.config(policy=1)
    assert fw.list_value(ADDR[fam]["src"]) & ~EXPIRY == BAN | BL | RL
    fw.rule(HALF[fam], TCP_P, 443, ALLOW)
    value = fw.list_value(ADDR[fam]["src"])
    assert value & ~EXPIRY == BAN | BL | RULES | RL
    fw.expect(tcp(fam, dport=443), "drop_blacklist")
    fw.set_list_value(ADDR[fam]["src"], (value & ~EXPIRY) | (now_ns() - 1))
    _age_rl_state(fw, fam)
    fw.expect(tcp(fam, dport=443), "pass_rule")


@fams
def test_auto_ban_gives_way_to_the_whitelist(fw, fam):
    _ban(fw, fam, "pass_policy")
    fw.expect(tcp(fam, dport=443), "drop_blacklist")
    fw.whitelist(HALF[fam])
    assert fw.list_value(ADDR[fam]["src"]) is None
    fw.expect(tcp(fam, dport=443), "pass_whitelist")


# ---- model check: random lists, every address of a small corner, both families ----

def _random_lists(rnd, fam):
    """Prefixes of the first 16 addresses of 198.51.100.0 or 2001:db8:1::, often nested."""
    base = ipaddress.ip_address(ADDR[fam]["net"].split("/")[0])
    width = 32 if fam == 4 else 128

    def cidr():
        plen = rnd.choice([0, width - 4, width - 3, width - 2, width - 1, width, width])
        return str(ipaddress.ip_network((int(base) + rnd.randrange(16), plen), strict=False))

    now = now_ns()
    wl = [cidr() for dummy in range(rnd.randrange(3))]
    bl = dict((cidr(), rnd.choice([None, now - S, now + 600 * S])) for dummy in range(rnd.randrange(5)))
    rl = dict(("any" if rnd.random() < 0.15 else cidr(), rnd.choice([ALLOW, DENY]))
              for dummy in range(rnd.randrange(4)))
    return base, wl, bl, rl


def _model(fam, address, wl, bl, rl, policy, now):
    """The reason docs/internals.md gives for TCP to port 443 from address."""
    def covers(c):
        return c == "any" or address in ipaddress.ip_network(c)
    if any(covers(c) for c in wl):
        return "pass_whitelist"
    if any(covers(c) and (e is None or e > now) for c, e in bl.items()):
        return "drop_blacklist"
    covering = [c for c in rl if covers(c)]
    if covering:
        best = max(covering, key=lambda c: -1 if c == "any" else ipaddress.ip_network(c).prefixlen)
        return "pass_rule" if rl[best] == ALLOW else "drop_rule"
    return "drop_policy" if policy else "pass_policy"


@fams
@pytest.mark.parametrize("seed", range(25))
def test_random_lists_match_the_model(fw, fam, seed):
    rnd = random.Random(seed * 10 + fam)
    base, wl, bl, rl = _random_lists(rnd, fam)
    policy = rnd.randrange(2)
    fw.config(policy=policy)
    for c in wl:
        fw.whitelist(c)
    for c, e in bl.items():
        fw.blacklist(c, expires_ns=e or 0)
    for c, action in rl.items():
        fw.rule(c, TCP_P, 443, action)
    now = now_ns()
    for n in range(18):
        address = ipaddress.ip_address(int(base) + n)
        want = _model(fam, address, wl, bl, rl, policy, now)
        retval, delta, length = fw.xdp(tcp(fam, dport=443, src=str(address)))
        assert delta == {want: (1, length)}, (str(address), wl, bl, rl, policy, delta)


# ---- rate limiting and the class ----

@fams
def test_ratelimit_trie_is_consulted_only_with_the_rl_bit(fw, fam):
    """An rl4/6_cfg entry whose source is in no src map (SRC_RL unset) limits nobody."""
    table = fw.t("rl%d_cfg" % fam)
    key = table.Key.from_buffer_copy(
        struct.pack("<I", 32 if fam == 4 else 128) + ipaddress.ip_address(ADDR[fam]["src"]).packed)
    table[key] = table.Leaf(1, 1, 0, 60 * S)
    for dummy in range(3):
        fw.expect(udp(fam), "pass_policy")
    assert fw.list_value(ADDR[fam]["src"]) is None
    fw.ratelimit(ADDR[fam]["net"], rate=1000, burst=1000)  # now a rate-limit source covers src:
    fw.expect(udp(fam), "pass_policy")                     # the /32 (/128) entry, the longest, applies
    fw.expect(udp(fam), "drop_ratelimit")                  # over its rate: dropped, never banned by UDP
    assert fw.list_value(ADDR[fam]["src"]) is None         # no ban


def _flows(fw, fam):
    """src's flows: ours, a UDP query of this host (local:40000 -> src:53); its own, a UDP flow it opened
    (src:5353 -> local:53, answered once) and a TCP connection it completed (src:40003 -> local:443)."""
    out_udp(fw, fam)
    fw.expect(udp(fam, sport=5353, dport=53), "pass_policy")
    fw.tc(udp(fam, sport=53, dport=5353, src=ADDR[fam]["local"], dst=ADDR[fam]["src"]))
    dummy, (dummy, delta, length) = handshake(fw, fam, 40003)
    assert delta == {"pass_policy": (1, length)}


def back_tcp(fam, sport=40003):
    return eth() / ip(fam) / TCP(sport=sport, dport=443, flags="PA", seq=1001, ack=777001)


@fams
def test_auto_ban_spares_the_flows_the_address_holds(fw, fam):
    """A ban (after proven excess) drops new connections and what the address cannot prove, and spares
    the flows it really holds: the ones this host opened and the TCP connections it completed."""
    fw.config(ct_enabled=1, ct_udp_ns=60 * S, ct_udp_stream_ns=60 * S, ct_tcp_syn_ns=60 * S, ct_timeout_ns=300 * S)
    fw.ratelimit(ADDR[fam]["net"], rate=1000, burst=1000)
    _flows(fw, fam)
    _age_rl_state(fw, fam)
    _ban(fw, fam, "pass_policy")
    fw.expect(back_udp(fam), "pass_conntrack")                       # this host's query
    fw.expect(back_tcp(fam), "pass_conntrack")                       # its completed connection
    fw.expect(back_tcp(fam, sport=40002), "pass_conntrack")          # the one that got it banned too
    fw.expect(udp(fam, sport=5353, dport=53), "drop_blacklist")      # a UDP flow it opened proves nothing
    fw.expect(tcp(fam, sport=40004), "drop_blacklist")               # a new connection
    fw.expect(udp(fam, sport=5354, dport=53), "drop_blacklist")      # anything else
    fw.expect(eth() / ip(fam) / TCP(sport=40005, dport=443, flags="A"), "drop_blacklist")


@fams
def test_spoofed_syns_over_the_rate_never_ban(fw, fam):
    """Anyone can send SYNs in src's name: over the rate they are dropped, src is not banned, and
    src's real connection goes on."""
    fw.config(policy=1, ct_enabled=1, ct_tcp_syn_ns=60 * S, ct_timeout_ns=300 * S)
    fw.rule(ADDR[fam]["net"], TCP_P, 443, ALLOW)
    fw.ratelimit(ADDR[fam]["net"], rate=1, burst=1, syn_only=True, ban_ttl_ns=60 * S)
    dummy, (dummy, delta, length) = handshake(fw, fam, 40003)  # proven: its SYN's token comes back
    assert delta == {"pass_rule": (1, length)}
    fw.expect(tcp(fam, sport=41000), "pass_rule")                    # the last token
    for sport in range(41001, 41011):                                # closed port or not: never answered
        fw.expect(tcp(fam, sport=sport), "drop_ratelimit")
    assert fw.list_value(ADDR[fam]["src"]) is None                   # no ban
    for dummy in range(3):
        fw.expect(back_tcp(fam), "pass_conntrack")


@fams
def test_auto_ban_gives_way_to_a_blacklist_that_outlives_it(fw, fam):
    _ban(fw, fam, "pass_policy")
    fw.blacklist(ADDR[fam]["net"])                       # never expires: the ban is not needed
    assert fw.list_value(ADDR[fam]["src"]) is None
    fw.expect(tcp(fam, dport=443), "drop_blacklist")


@fams
def test_auto_ban_stays_over_a_shorter_blacklist(fw, fam):
    _ban(fw, fam, "pass_policy")
    ban = fw.list_value(ADDR[fam]["src"])
    fw.blacklist(ADDR[fam]["net"], expires_ns=now_ns() + 200 * 10 ** 6)
    assert fw.list_value(ADDR[fam]["src"]) == ban
    time.sleep(0.25)                                     # the prefix expired, the ban (60 s) did not
    fw.expect(tcp(fam, dport=443), "drop_blacklist")
    fw.expect(tcp(fam, dport=443, src=ADDR[fam]["peer"]), "pass_policy")


@fams
def test_a_banned_sources_fragments_pass_only_on_a_flow_it_holds(fw, fam):
    """A large answer on a flow this host opened to a banned address arrives whole (its first fragment
    passes on the flow, the later ones follow it); fragments of anything else from it drop."""
    fw.config(ct_enabled=1, ct_udp_ns=60 * S, ct_udp_stream_ns=60 * S)
    out_udp(fw, fam)                                   # local:40000 -> src:53
    _ban(fw, fam, "pass_policy")
    held = datagram(fam, sport=53, dport=40000, ident=0x77)
    fw.expect(held[0], "pass_conntrack")
    for frame in held[1:]:
        fw.expect(frame, "pass_fragment")
    other = datagram(fam, sport=53, dport=40001, ident=0x78)
    for frame in other:
        fw.expect(frame, "drop_blacklist")
