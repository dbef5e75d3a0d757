# SPDX-License-Identifier: GPL-2.0-or-later
"""Packet builders and addresses for the verdict tests (test ranges only)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import struct
import time

from scapy.all import (  # re-exported for the tests  # noqa: F401  # pylint: disable=unused-import
    ARP, ICMP, IP, TCP, UDP, Dot1AD, Dot1Q, Ether, ICMPv6EchoRequest, ICMPv6ND_NA,
    ICMPv6ND_NS, ICMPv6ND_RA, ICMPv6ND_Redirect, ICMPv6ND_RS, IPv6, IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, Raw,
)

XDP_DROP, XDP_PASS = 1, 2
TC_ACT_OK = 0
TCP_P, UDP_P, ICMP_P, ICMPV6_P = 6, 17, 1, 58

# src: the remote peer we filter; local: this host; peer: a neighbour of src.
ADDR = {
    4: {"src": "198.51.100.7", "peer": "198.51.100.8", "net": "198.51.100.0/24",
        "local": "203.0.113.1", "other": "203.0.113.9"},
    6: {"src": "2001:db8:1::7", "peer": "2001:db8:1::8", "net": "2001:db8:1::/64",
        "local": "2001:db8:2::1", "other": "2001:db8:9::9"},
}
FAMILIES = (4, 6)


def host(fam, name="src"):
    """The /32 or /128 of a named address."""
    return "%s/%d" % (ADDR[fam][name], 32 if fam == 4 else 128)


def eth(vlans=()):
    frame = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    for n, vid in enumerate(vlans):
        outer = n == 0 and len(vlans) > 1
        frame = frame / (Dot1AD(vlan=vid) if outer else Dot1Q(vlan=vid))
    return frame


def ip(fam, src=None, dst=None, **kw):
    src = src or ADDR[fam]["src"]
    dst = dst or ADDR[fam]["local"]
    return IP(src=src, dst=dst, **kw) if fam == 4 else IPv6(src=src, dst=dst, **kw)


def tcp(fam, sport=40000, dport=443, src=None, dst=None, vlans=()):
    return eth(vlans) / ip(fam, src, dst) / TCP(sport=sport, dport=dport, flags="S")


def udp(fam, sport=40000, dport=53, src=None, dst=None, vlans=()):
    return eth(vlans) / ip(fam, src, dst) / UDP(sport=sport, dport=dport)


def ping(fam, src=None, vlans=()):
    return eth(vlans) / ip(fam, src) / (ICMP() if fam == 4 else ICMPv6EchoRequest())


def packed(addr):
    return ipaddress.ip_address(addr).packed


def ct_key(saddr, daddr, sport, dport, proto):
    """struct ct_key bytes as the contract lays it out (ports in network order)."""
    s, d = packed(saddr), packed(daddr)
    family = 4 if len(s) == 4 else 6
    return struct.pack("16s16s2s2sBB2x", s, d, sport.to_bytes(2, "big"),
                       dport.to_bytes(2, "big"), proto, family)


def now_ns():
    """CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns."""
    return time.monotonic_ns()


def handshake(fw, fam, sport, dport=443, src=None, isn=777000):
    """A peer's TCP handshake to this host: its SYN (xdp_ingress), our SYN+ACK (tc_egress: its ISN
    goes to the ct_syn entry), its ACK of that ISN (xdp_ingress). Returns the (retval, counter
    delta, length) of the SYN and of the ACK."""
    src = src or ADDR[fam]["src"]
    first = fw.xdp(eth() / ip(fam, src) / TCP(sport=sport, dport=dport, flags="S", seq=1000))
    fw.tc(eth() / ip(fam, ADDR[fam]["local"], src) / TCP(sport=dport, dport=sport, flags="SA", seq=isn, ack=1001))
    return first, fw.xdp(eth() / ip(fam, src) / TCP(sport=sport, dport=dport, flags="A", seq=1001, ack=isn + 1))
