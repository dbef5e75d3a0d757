# SPDX-License-Identifier: GPL-2.0-or-later
"""Fragments: one verdict per datagram without reassembly (docs/internals.md, "Fragments").

The first fragment (offset 0, with the L4 header) meets every stage; when it passes, its datagram
(IPv4: source, destination, id, protocol; IPv6: source, destination, identification) goes into
`frags`, and the later fragments of that datagram pass as `pass_fragment`. A later fragment with no
entry goes on as a packet without ports."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import struct

import pytest
from scapy.all import fragment, fragment6

from ansible_collections.netxfw.firewall.plugins.module_utils import layout
from verdict_packets import (
    ADDR, ICMP, IP, TCP, UDP, FAMILIES, ICMP_P, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, Raw, TCP_P, UDP_P, eth, host,
    ip, now_ns, packed,
)

fams = pytest.mark.parametrize("fam", FAMILIES)
S = 10**9
ALLOW = 1
PORT = 5353
FRAG_TIMEOUT_NS = 60 * S  # bpf/lib/fragments.h FRAG_TIMEOUT_NS


def datagram(fam, size=3000, sport=40000, dport=PORT, src=None, dst=None, ident=0x4242):
    """One UDP datagram in fragments of at most 1280 bytes, as a sending stack cuts it (list of frames)."""
    if fam == 4:
        pkt = IP(src=src or ADDR[4]["src"], dst=dst or ADDR[4]["local"], id=ident) / UDP(
            sport=sport, dport=dport) / Raw(bytes(size))
        return [eth() / f for f in fragment(pkt, 1280)]
    pkt = IPv6(src=src or ADDR[6]["src"], dst=dst or ADDR[6]["local"]) / IPv6ExtHdrFragment(id=ident) / UDP(
        sport=sport, dport=dport) / Raw(bytes(size))
    return [eth() / f for f in fragment6(pkt, 1280)]


def frag_key(fam, ident, src=None, dst=None, proto=UDP_P):
    """struct frag_key as docs/internals.md lays it out."""
    s, d = packed(src or ADDR[fam]["src"]), packed(dst or ADDR[fam]["local"])
    ident_bytes = struct.pack(">H", ident) + b"\0\0" if fam == 4 else struct.pack(">I", ident)
    return struct.pack("16s16s4sBB2x", s, d, ident_bytes, proto if fam == 4 else 0, fam)


def frags(fw):
    return {bytes(k): v.value for k, v in fw.t("frags").items()}


def expect_all(fw, frames, first, later):
    fw.expect(frames[0], first)
    for f in frames[1:]:
        fw.expect(f, later)


@fams
def test_datagram_to_open_port_passes_whole(fw, fam):
    fw.config(policy=1)
    fw.rule(host(fam), UDP_P, PORT, ALLOW)
    frames = datagram(fam)
    assert len(frames) == 3
    before = now_ns()
    expect_all(fw, frames, "pass_rule", "pass_fragment")
    entries = frags(fw)
    assert list(entries) == [frag_key(fam, 0x4242)]
    assert before <= entries[frag_key(fam, 0x4242)] <= now_ns()


@fams
def test_datagram_to_closed_port_is_dropped_whole(fw, fam):
    """A first fragment that drops records nothing: its later fragments meet the policy."""
    fw.config(policy=1)
    fw.rule(host(fam), UDP_P, PORT, ALLOW)
    expect_all(fw, datagram(fam, dport=PORT + 1), "drop_policy", "drop_policy")
    assert frags(fw) == {}


@fams
def test_orphan_later_fragment_is_a_packet_without_ports(fw, fam):
    """No first fragment seen (it comes later, or was lost): the source and the policy decide."""
    frames = datagram(fam)
    fw.rule(host(fam), UDP_P, PORT, ALLOW)
    fw.config(policy=1)
    fw.expect(frames[2], "drop_policy")
    fw.expect(frames[1], "drop_policy")
    fw.expect(frames[0], "pass_rule")  # the first, late: its own verdict; the earlier ones are gone
    fw.config(policy=0)
    fw.expect(datagram(fam, ident=7)[1], "pass_policy")
    fw.whitelist(host(fam))
    fw.expect(datagram(fam, ident=8)[1], "pass_whitelist")


@fams
def test_later_fragment_of_another_datagram_is_an_orphan(fw, fam):
    """The key is the kernel's reassembly key: id, source, destination (and the IPv4 protocol)."""
    fw.config(policy=1)
    fw.rule(host(fam), UDP_P, PORT, ALLOW)
    fw.rule(ADDR[fam]["peer"] + ("/32" if fam == 4 else "/128"), UDP_P, PORT, ALLOW)
    fw.expect(datagram(fam)[0], "pass_rule")
    fw.expect(datagram(fam, ident=0x4243)[1], "drop_policy")
    fw.expect(datagram(fam, src=ADDR[fam]["peer"])[1], "drop_policy")
    fw.expect(datagram(fam, dst=ADDR[fam]["other"])[1], "drop_policy")
    if fam == 4:
        other_proto = datagram(4)[1]
        other_proto[IP].proto = 6
        fw.expect(other_proto, "drop_policy")
    fw.expect(datagram(fam)[1], "pass_fragment")


@fams
def test_entry_expires(fw, fam):
    fw.config(policy=1)
    fw.rule(host(fam), UDP_P, PORT, ALLOW)
    frames = datagram(fam)
    fw.expect(frames[0], "pass_rule")
    table = fw.t("frags")
    key = table.Key.from_buffer_copy(frag_key(fam, 0x4242))
    table[key] = table.Leaf(now_ns() - FRAG_TIMEOUT_NS - S)
    fw.expect(frames[1], "drop_policy")
    table[key] = table.Leaf(now_ns() - FRAG_TIMEOUT_NS + 5 * S)
    fw.expect(frames[1], "pass_fragment")


@fams
def test_reply_to_own_request_in_fragments(fw, fam):
    """A 3000-byte answer to a UDP request of this host (a large DNS answer) under deny."""
    fw.config(policy=1, ct_enabled=1, ct_udp_ns=30 * S, ct_udp_stream_ns=180 * S)
    a = ADDR[fam]
    fw.tc(eth() / ip(fam, a["local"], a["src"]) / UDP(sport=40000, dport=53))
    expect_all(fw, datagram(fam, sport=53, dport=40000), "pass_conntrack", "pass_fragment")
    # not to another port of this host
    expect_all(fw, datagram(fam, sport=53, dport=40001, ident=9), "drop_policy", "drop_policy")


@fams
def test_overlapping_fragments_take_the_first_verdict(fw, fam):
    """A later fragment overlapping the first (here: offset 8 bytes, over the UDP header) passes with
    the datagram; the kernel drops a datagram with overlapping fragments when it reassembles
    (RFC 5722; Linux does so for IPv4 too). A second first fragment is judged on its own."""
    fw.config(policy=1)
    fw.rule(host(fam), UDP_P, PORT, ALLOW)
    frames = datagram(fam)
    fw.expect(frames[0], "pass_rule")
    if fam == 4:
        overlap = eth() / IP(src=ADDR[4]["src"], dst=ADDR[4]["local"], id=0x4242, proto=UDP_P, frag=1,
                             flags="MF") / Raw(bytes(UDP(sport=40000, dport=22)) + bytes(64))
        again = eth() / IP(src=ADDR[4]["src"], dst=ADDR[4]["local"], id=0x4242, flags="MF") / UDP(
            sport=40000, dport=22) / Raw(bytes(64))
    else:
        overlap = eth() / ip(6) / IPv6ExtHdrFragment(nh=UDP_P, id=0x4242, offset=1, m=1) / Raw(
            bytes(UDP(sport=40000, dport=22)) + bytes(64))
        again = eth() / ip(6) / IPv6ExtHdrFragment(id=0x4242, offset=0, m=1) / UDP(sport=40000, dport=22) / Raw(
            bytes(64))
    fw.expect(overlap, "pass_fragment")
    fw.expect(again, "drop_policy")
    fw.expect(frames[1], "pass_fragment")


@fams
def test_source_stages_still_decide_later_fragments(fw, fam):
    """The exact-address stage runs before the fragment lookup: a source blocked after its first
    fragment passed loses the rest; a whitelisted one passes as whitelisted."""
    fw.config(policy=1)
    fw.rule(host(fam), UDP_P, PORT, ALLOW)
    frames = datagram(fam)
    fw.expect(frames[0], "pass_rule")
    fw.blacklist(host(fam))
    fw.expect(frames[1], "drop_blacklist")
    fw.bl.clear()
    fw.whitelist(host(fam))
    fw.expect(frames[2], "pass_whitelist")


@fams
def test_sanity_fragments_drops_them_all(fw, fam):
    fw.config(policy=1)
    fw.rule(host(fam), UDP_P, PORT, ALLOW)
    frames = datagram(fam)
    fw.expect(frames[0], "pass_rule")
    fw.config(sanity=2)
    for f in frames:
        fw.expect(f, "drop_fragment")


def test_icmp_echo_in_fragments_takes_one_token(fw):
    """The ICMP bucket is charged once per datagram (its first fragment)."""
    fw.config(policy=1, icmp_rate=1, icmp_burst=1)
    pkt = IP(src=ADDR[4]["src"], dst=ADDR[4]["local"], id=77) / ICMP(id=1) / Raw(bytes(3000))
    frames = [eth() / f for f in fragment(pkt, 1280)]
    expect_all(fw, frames, "pass_icmp", "pass_fragment")
    lone = eth() / IP(src=ADDR[4]["src"], dst=ADDR[4]["local"], id=78, proto=ICMP_P, frag=160) / Raw(bytes(8))
    fw.expect(lone, "drop_policy")  # an orphan has no ICMP type: no echo request, the bucket does not see it


@fams
def test_unfragmented_packets_record_nothing(fw, fam):
    fw.config(policy=1)
    fw.rule(host(fam), UDP_P, PORT, ALLOW)
    fw.expect(eth() / ip(fam) / UDP(sport=40000, dport=PORT), "pass_rule")
    assert frags(fw) == {}


def test_ipv6_key_ignores_the_header_after_the_fragment_header(fw):
    """IPv6 reassembly keys on source, destination and identification only: a first fragment whose
    fragment header is followed by a destination-options header matches later fragments whose
    fragment header names that header, not UDP."""
    fw.config(policy=1)
    fw.rule(host(6), UDP_P, PORT, ALLOW)
    first = eth() / ip(6) / IPv6ExtHdrFragment(id=0x99, offset=0, m=1) / IPv6ExtHdrDestOpt() / UDP(
        sport=40000, dport=PORT) / Raw(bytes(64))
    later = eth() / ip(6) / IPv6ExtHdrFragment(nh=60, id=0x99, offset=10) / Raw(bytes(64))
    fw.expect(first, "pass_rule")
    fw.expect(later, "pass_fragment")
    assert list(frags(fw)) == [frag_key(6, 0x99)]


def tiny_first(fam, proto, l4, held, ident=0x77):
    """A first fragment whose IP length holds only `held` bytes of l4 (bytes); the frame carries all
    of l4 anyway, as padding the kernel trims (an Ethernet pad, or bytes appended)."""
    if fam == 4:
        hdr = IP(src=ADDR[4]["src"], dst=ADDR[4]["local"], id=ident, flags="MF", proto=proto, len=20 + held)
    else:
        hdr = IPv6(src=ADDR[6]["src"], dst=ADDR[6]["local"], plen=8 + held) / IPv6ExtHdrFragment(
            nh=proto, offset=0, m=1, id=ident)
    return eth() / hdr / Raw(l4)


@fams
def test_tiny_first_fragment_is_judged_by_its_ip_length_not_the_frame(fw, fam):
    """RFC 1858: a SYN whose first fragment holds 8 bytes of TCP (ports, sequence) has its flags in
    the next fragment. Padding that looks like the rest of a TCP header with ACK must not stand in
    for them: a syn_only rate limit (1/s, burst 1) would never see these SYNs, and a SYN+FIN would
    pass `sanity.tcp_flags`. The first fragment is too short for its header: drop_malformed."""
    fw.config(policy=1, sanity=layout.SANITY_BITS["tcp_flags"])
    fw.rule("any", TCP_P, 22, ALLOW)
    fw.ratelimit(ADDR[fam]["net"], 1, 1, syn_only=True)
    for n, flags in enumerate(("S", "S", "SF")):
        real = bytes(TCP(sport=40000 + n, dport=22, flags=flags, seq=1))
        disguise = bytes(TCP(sport=40000 + n, dport=22, flags="A", seq=1))
        fw.expect(tiny_first(fam, TCP_P, real[:8] + disguise[8:], 8, ident=0x70 + n), "drop_malformed")
    assert frags(fw) == {}


@fams
def test_padded_frames_that_hold_their_header_pass(fw, fam):
    """The IP length is what counts: a first fragment holding its whole UDP header, and an
    unfragmented empty UDP datagram in a minimum-size (padded) Ethernet frame, pass."""
    fw.config(policy=1)
    fw.rule("any", UDP_P, PORT, ALLOW)
    fw.expect(tiny_first(fam, UDP_P, bytes(UDP(sport=40000, dport=PORT)) + bytes(12), 8), "pass_rule")
    frame = eth() / ip(fam) / UDP(sport=40001, dport=PORT)
    padded = bytes(frame) + bytes(max(0, 60 - len(frame)))
    fw.expect(padded, "pass_rule")
