# SPDX-License-Identifier: GPL-2.0-or-later
"""Ingress stages 1..2: L2 and VLAN tags, neighbour discovery, non-IP,
IPv6 extension headers, fragments and malformed input."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from verdict_packets import (
    ADDR, ARP, FAMILIES, TCP, TCP_P, UDP, UDP_P, Ether, ICMPv6EchoRequest,
    ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6ND_RA, ICMPv6ND_Redirect, ICMPv6ND_RS,
    IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, Raw,
    eth, host, ip, tcp, udp,
)

fams = pytest.mark.parametrize("fam", FAMILIES)
vlan_stacks = pytest.mark.parametrize("vlans", [(), (10,), (100, 10)], ids=["untagged", "1tag", "2tags"])

DENY = 2


# ---- VLAN tags ----

@fams
@vlan_stacks
def test_vlan_tags_reach_every_stage(fw, fam, vlans):
    fw.expect(tcp(fam, vlans=vlans), "pass_policy")
    fw.blacklist(host(fam))
    fw.expect(tcp(fam, vlans=vlans), "drop_blacklist")
    fw.rule(host(fam, "peer"), TCP_P, 443, DENY)
    fw.expect(tcp(fam, vlans=vlans, src=ADDR[fam]["peer"]), "drop_rule")
    fw.config(policy=1)
    fw.expect(udp(fam, vlans=vlans, src=ADDR[fam]["other"]), "drop_policy")
    fw.whitelist(host(fam, "other"))
    fw.expect(udp(fam, vlans=vlans, src=ADDR[fam]["other"]), "pass_whitelist")


@pytest.mark.parametrize("tpid", [0x8100, 0x88a8])
def test_both_vlan_tpids(fw, tpid):
    fw.config(policy=1)
    fw.blacklist(host(4))
    pkt = Ether(type=tpid) / Raw(b"\x00\x0a\x08\x00") / ip(4) / TCP()
    fw.expect(pkt, "drop_blacklist")


@fams
def test_third_vlan_tag_is_malformed(fw, fam):
    fw.expect(tcp(fam, vlans=(1, 2, 3)), "drop_malformed")


# ---- neighbour discovery and non-IP ----

@vlan_stacks
def test_arp_passes_under_deny(fw, vlans):
    fw.config(policy=1)
    fw.expect(eth(vlans) / ARP(psrc=ADDR[4]["src"], pdst=ADDR[4]["local"]), "pass_neighbor")


@vlan_stacks
@pytest.mark.parametrize("nd", [ICMPv6ND_RS, ICMPv6ND_RA, ICMPv6ND_NS, ICMPv6ND_NA, ICMPv6ND_Redirect])
def test_neighbour_discovery_passes_under_deny(fw, vlans, nd):
    """scapy sends ND with hop limit 255; by type, hop limit and source: test_verdict_icmp.py."""
    fw.config(policy=1, icmp_rate=1, icmp_burst=1)
    fw.blacklist("fe80::7/128")
    for dummy in range(3):
        fw.expect(eth(vlans) / ip(6, src="fe80::7", dst="ff02::1") / nd(), "pass_neighbor")


def test_neighbour_discovery_after_extension_header(fw):
    fw.config(policy=1)
    fw.expect(eth() / ip(6, dst="ff02::1", hlim=255) / IPv6ExtHdrHopByHop() / ICMPv6ND_NA(), "pass_neighbor")
    fw.expect(eth() / ip(6, dst="ff02::1", hlim=64) / IPv6ExtHdrHopByHop() / ICMPv6ND_NA(), "drop_policy")


def test_other_icmpv6_is_not_neighbour_discovery(fw):
    fw.config(policy=1)
    fw.expect(eth() / ip(6) / ICMPv6EchoRequest(), "drop_policy")


def test_icmpv6_type_in_ipv4_is_not_neighbour_discovery(fw):
    fw.config(policy=1)
    fw.expect(eth() / ip(4, proto=58) / Raw(bytes([135, 0, 0, 0]) + bytes(20)), "drop_policy")


@vlan_stacks
def test_non_ip_passes_under_deny(fw, vlans):
    fw.config(policy=1)
    frame = eth(vlans)
    frame.lastlayer().type = 0x88cc  # LLDP
    fw.expect(frame / Raw(bytes(46)), "pass_non_ip")


# ---- IPv6 extension headers ----

EXT = {
    "hop": IPv6ExtHdrHopByHop,
    "route": IPv6ExtHdrRouting,
    "dest": IPv6ExtHdrDestOpt,
    "frag0": lambda: IPv6ExtHdrFragment(offset=0, m=1),
}


@pytest.mark.parametrize("chain", [
    ["hop"], ["route"], ["dest"], ["frag0"],
    ["hop", "dest", "route", "frag0"],
    ["hop", "dest", "route", "dest"],
], ids="+".join)
@pytest.mark.parametrize("l4", ["tcp", "udp"])
def test_ipv6_extension_headers_before_l4(fw, chain, l4):
    pkt = eth() / ip(6)
    for name in chain:
        pkt = pkt / EXT[name]()
    pkt = pkt / (TCP(sport=40000, dport=443) if l4 == "tcp" else UDP(sport=40000, dport=443))
    fw.expect(pkt, "pass_policy")
    # the port was found behind the chain
    fw.rule(host(6), TCP_P if l4 == "tcp" else UDP_P, 443, DENY)
    fw.expect(pkt, "drop_rule")


def test_ipv6_long_hop_by_hop_header(fw):
    fw.rule(host(6), TCP_P, 443, DENY)
    # hdrlen 3: 32 bytes, one PadN option filling it
    hop = Raw(bytes([TCP_P, 3, 1, 28]) + bytes(28))
    fw.expect(eth() / ip(6, nh=0) / hop / TCP(dport=443), "drop_rule")


def test_ipv6_fifth_extension_header_is_malformed(fw):
    pkt = eth() / ip(6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / IPv6ExtHdrRouting() \
        / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / TCP(dport=443)
    fw.expect(pkt, "drop_malformed")


# ---- fragments ----

def _tcp_bytes(dport):
    return bytes(TCP(sport=40000, dport=dport))


def test_ipv4_first_fragment_has_ports(fw):
    fw.rule(host(4), TCP_P, 443, DENY)
    fw.expect(eth() / ip(4, flags="MF", frag=0) / TCP(dport=443), "drop_rule")


def test_ipv4_later_fragment_has_no_ports(fw):
    fw.rule(host(4), TCP_P, 443, DENY)
    # bytes that would read as dport 443 if the parser took them for a TCP header
    later = eth() / ip(4, proto=TCP_P, frag=100) / Raw(_tcp_bytes(443))
    fw.expect(later, "pass_policy")
    short = eth() / ip(4, proto=TCP_P, frag=100) / Raw(b"\x01\x02")
    fw.expect(short, "pass_policy")


def test_ipv4_later_fragment_still_meets_drop_stages(fw):
    fw.blacklist(host(4))
    fw.expect(eth() / ip(4, proto=TCP_P, frag=100) / Raw(_tcp_bytes(443)), "drop_blacklist")
    fw.config(policy=1)
    fw.expect(eth() / ip(4, proto=TCP_P, frag=100, src=ADDR[4]["peer"]) / Raw(bytes(8)), "drop_policy")


def test_ipv4_later_fragment_not_conntrack(fw):
    fw.config(policy=1, ct_enabled=1, ct_timeout_ns=60 * 10**9, ct_tcp_syn_ns=60 * 10**9)
    fw.tc(tcp(4, src=ADDR[4]["local"], dst=ADDR[4]["src"], sport=40000, dport=443))
    fw.expect(tcp(4, sport=443, dport=40000), "pass_conntrack")
    fw.expect(eth() / ip(4, proto=TCP_P, frag=100) / Raw(_tcp_bytes(40000)), "drop_policy")


def test_ipv6_later_fragment_has_no_ports(fw):
    fw.rule(host(6), TCP_P, 443, DENY)
    later = eth() / ip(6) / IPv6ExtHdrFragment(nh=TCP_P, offset=100) / Raw(_tcp_bytes(443))
    fw.expect(later, "pass_policy")
    first = eth() / ip(6) / IPv6ExtHdrFragment(offset=0, m=1) / TCP(dport=443)
    fw.expect(first, "drop_rule")
    fw.blacklist(host(6))
    fw.expect(later, "drop_blacklist")


# ---- malformed input: dropped whatever the policy and lists say ----

def _cut(pkt, n):
    return bytes(pkt)[:n]


MALFORMED = {
    "eth_vlan_truncated": lambda: _cut(eth((10,)) / ip(4) / TCP(), 16),
    "eth_vlan_empty": lambda: bytes(Ether(type=0x8100)),
    "eth_2nd_vlan_truncated": lambda: _cut(eth((100, 10)) / ip(4) / TCP(), 20),
    "ipv4_truncated": lambda: _cut(eth() / ip(4) / TCP(), 14 + 10),
    "ipv4_no_header": lambda: bytes(Ether(type=0x0800)),
    "ipv4_ihl_lt_5": lambda: bytes(eth() / ip(4, ihl=4) / TCP()),
    "ipv4_ihl_0": lambda: bytes(eth() / ip(4, ihl=0) / TCP()),
    "ipv4_options_beyond_end": lambda: _cut(eth() / ip(4, ihl=15) / Raw(bytes(40)), 14 + 30),
    "ipv4_version_6": lambda: bytes(eth() / ip(4, version=6) / TCP()),
    "tcp4_truncated": lambda: _cut(eth() / ip(4) / TCP(), 14 + 20 + 10),
    "udp4_truncated": lambda: _cut(eth() / ip(4) / UDP(), 14 + 20 + 4),
    "tcp4_first_fragment_truncated": lambda: _cut(eth() / ip(4, flags="MF") / TCP(), 14 + 20 + 12),
    "tcp4_after_options_truncated": lambda: _cut(eth() / ip(4, ihl=6, proto=TCP_P) / Raw(bytes(4))
                                                 / TCP(), 14 + 24 + 19),
    "ipv6_truncated": lambda: _cut(eth() / ip(6) / TCP(), 14 + 30),
    "ipv6_no_header": lambda: bytes(Ether(type=0x86dd)),
    "ipv6_version_4": lambda: bytes(eth() / ip(6, version=4) / TCP()),
    "tcp6_truncated": lambda: _cut(eth() / ip(6) / TCP(), 14 + 40 + 19),
    "udp6_truncated": lambda: _cut(eth() / ip(6) / UDP(), 14 + 40 + 7),
    "ipv6_ext_truncated_1byte": lambda: _cut(eth() / ip(6) / IPv6ExtHdrHopByHop() / TCP(), 14 + 40 + 1),
    "ipv6_ext_truncated_body": lambda: bytes(eth() / ip(6, nh=0) / Raw(bytes([6, 1]) + bytes(8))),
    "ipv6_frag_truncated": lambda: _cut(eth() / ip(6) / IPv6ExtHdrFragment() / TCP(), 14 + 40 + 6),
    "ipv6_2nd_ext_truncated": lambda: _cut(eth() / ip(6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
                                           / TCP(), 14 + 40 + 8 + 4),
    "tcp6_after_ext_truncated": lambda: _cut(eth() / ip(6) / IPv6ExtHdrDestOpt() / TCP(), 14 + 40 + 8 + 10),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
@pytest.mark.parametrize("setup", ["allow", "whitelisted"])
def test_malformed_is_dropped(fw, name, setup):
    if setup == "whitelisted":
        fw.whitelist("0.0.0.0/0")
        fw.whitelist("::/0")
        fw.config(ct_enabled=1, ct_timeout_ns=60 * 10**9)
    fw.expect(MALFORMED[name](), "drop_malformed")


@fams
def test_ip_header_with_nothing_after_is_not_malformed(fw, fam):
    """Only TCP/UDP need their header; an IP packet of another protocol may be empty."""
    pkt = eth() / ip(fam, proto=47) if fam == 4 else eth() / ip(fam, nh=47)
    fw.expect(pkt, "pass_policy")


def test_ipv4_options_before_tcp(fw):
    fw.rule(host(4), TCP_P, 443, DENY)
    pkt = eth() / ip(4, ihl=6, proto=TCP_P) / Raw(b"\x01\x01\x01\x00") / TCP(dport=443)
    fw.expect(pkt, "drop_rule")
