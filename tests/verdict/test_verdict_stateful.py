# SPDX-License-Identifier: GPL-2.0-or-later
"""Stateful conntrack (TCP states, UDP, ICMP echo, related ICMP errors, inbound tracking)
and the protocol sanity switches (docs/internals.md, "Conntrack" and "Protocol sanity")."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from verdict_packets import (
    ADDR, ARP, ICMP, IP, TCP, UDP, FAMILIES, ICMPV6_P, ICMP_P, ICMPv6EchoRequest, ICMPv6ND_NS,
    IPv6, IPv6ExtHdrFragment, Raw, TCP_P, UDP_P, TC_ACT_OK, ct_key, eth, ip, now_ns,
)
from scapy.all import ICMPv6EchoReply, ICMPv6PacketTooBig, ICMPv6DestUnreach  # noqa: E402

fams = pytest.mark.parametrize("fam", FAMILIES)
S = 10**9
T = dict(ct_timeout_ns=300 * S, ct_tcp_syn_ns=60 * S, ct_tcp_fin_ns=30 * S, ct_udp_ns=30 * S,
         ct_udp_stream_ns=180 * S, ct_icmp_ns=30 * S)
STATE = {"legacy": 0, "syn_sent": 1, "syn_recv": 2, "established": 3, "fin_wait": 4,
         "time_wait": 5, "close": 6, "udp": 7, "udp_stream": 8, "icmp_echo": 9}
INBOUND, SYNACK = 1 << 8, 1 << 11
LPORT, RPORT = 40000, 443


def out_tcp(fam, flags, seq=0, ack=0, sport=LPORT, dport=RPORT):
    return eth() / ip(fam, ADDR[fam]["local"], ADDR[fam]["src"]) / TCP(
        sport=sport, dport=dport, flags=flags, seq=seq, ack=ack)


def in_tcp(fam, flags, seq=0, ack=0, sport=RPORT, dport=LPORT, src=None):
    return eth() / ip(fam, src or ADDR[fam]["src"], ADDR[fam]["local"]) / TCP(
        sport=sport, dport=dport, flags=flags, seq=seq, ack=ack)


def key(fam, proto=TCP_P, sport=RPORT, dport=LPORT):
    return ct_key(ADDR[fam]["src"], ADDR[fam]["local"], sport, dport, proto)


def egress(fw, pkt):
    retval, delta, dummy = fw.tc(pkt)
    assert retval == TC_ACT_OK
    return delta


def state(fw, fam, proto=TCP_P, sport=RPORT, dport=LPORT, table="ct"):
    entries = fw.ct_entries() if table == "ct" else fw.ct_syn_entries()
    value = entries.get(key(fam, proto, sport, dport))
    return None if value is None else value[1] & 0xFF


@pytest.fixture
def deny(fw):
    fw.config(policy=1, ct_enabled=1, **T)
    return fw


# ---------------------------------------------------------------- TCP, outbound

@fams
def test_tcp_outbound_lifecycle(deny, fam):
    fw = deny
    egress(fw, out_tcp(fam, "S"))
    assert state(fw, fam) == STATE["syn_sent"]
    fw.expect(in_tcp(fam, "A"), "drop_policy")          # only SYN+ACK or RST answers a SYN
    fw.expect(in_tcp(fam, "SA"), "pass_conntrack")
    assert state(fw, fam) == STATE["established"]
    egress(fw, out_tcp(fam, "A"))
    fw.expect(in_tcp(fam, "PA"), "pass_conntrack")
    egress(fw, out_tcp(fam, "FA"))
    assert state(fw, fam) == STATE["fin_wait"]
    fw.expect(in_tcp(fam, "A"), "pass_conntrack")
    fw.expect(in_tcp(fam, "FA"), "pass_conntrack")
    egress(fw, out_tcp(fam, "A"))
    assert state(fw, fam) == STATE["fin_wait"]
    expire(fw, fam, "ct_tcp_fin_ns")
    fw.expect(in_tcp(fam, "A"), "drop_policy")


def established_flow(fw, fam, inbound):
    """An established flow: one this host opened, or one the peer opened to a port rule's service."""
    if not inbound:
        egress(fw, out_tcp(fam, "S", seq=5000))
        fw.expect(in_tcp(fam, "SA", seq=9000, ack=5001), "pass_conntrack")
        egress(fw, out_tcp(fam, "A", seq=5001, ack=9001))
        return {}
    ports = dict(sport=50000, dport=22)
    fw.rule(ADDR[fam]["net"], TCP_P, 22, 1)
    fw.expect(in_tcp(fam, "S", seq=9000, **ports), "pass_rule")
    egress(fw, out_tcp(fam, "SA", seq=5000, ack=9001, sport=22, dport=50000))
    fw.expect(in_tcp(fam, "A", seq=9001, ack=5001, **ports), "pass_rule")
    fw.rule(ADDR[fam]["net"], TCP_P, 22, 0)  # action 0 matches nothing: only the ct entry lets the flow in
    return ports


def expire(fw, fam, index, **ports):
    """Ages the flow's entry (state and flags kept) past the timeout named, plus a second."""
    k = key(fam, **ports)
    dummy, flags = fw.ct_entries()[k]
    fw.ct_put(k, now_ns() - T[index] - S, flags)


@fams
@pytest.mark.parametrize("inbound", [False, True], ids=["outbound", "inbound"])
@pytest.mark.parametrize("flags", ["R", "RA", "FA", "F"])
def test_forged_peer_close_does_not_shorten_the_flow(deny, fam, inbound, flags):
    """A blind attacker who guesses the tuple forges the peer's RST or FIN with a sequence number off the
    window: the host's kernel ignores it (RFC 5961) and the flow must live on. Later, past the tcp_fin
    timeout (the entry's stamp aged, the state the forged packet left), the peer still gets through."""
    fw = deny
    ports = established_flow(fw, fam, inbound)
    before = fw.ct_entries()
    fw.expect(in_tcp(fam, flags, seq=123456789, ack=1, **ports), "pass_conntrack")  # the kernel judges it
    assert fw.ct_entries() == before
    assert state(fw, fam, **ports) == STATE["established"]
    expire(fw, fam, "ct_tcp_fin_ns", **ports)
    fw.expect(in_tcp(fam, "PA", seq=9001, ack=5001, **ports), "pass_conntrack")


@fams
@pytest.mark.parametrize("inbound", [False, True], ids=["outbound", "inbound"])
def test_peer_closes_first_then_this_host(deny, fam, inbound):
    fw = deny
    ports = established_flow(fw, fam, inbound)
    rev = dict(sport=ports["dport"], dport=ports["sport"]) if ports else {}
    fw.expect(in_tcp(fam, "FA", **ports), "pass_conntrack")
    assert state(fw, fam, **ports) == STATE["established"]
    egress(fw, out_tcp(fam, "PA", **rev))  # half-closed by the peer: this host may still send
    egress(fw, out_tcp(fam, "FA", **rev))
    assert state(fw, fam, **ports) == STATE["fin_wait"]
    fw.expect(in_tcp(fam, "A", **ports), "pass_conntrack")  # the peer's last ACK
    expire(fw, fam, "ct_tcp_fin_ns", **ports)
    fw.expect(in_tcp(fam, "A", **ports), "drop_policy")


@fams
def test_half_close_by_this_host(deny, fam):
    """This host sends its FIN (shutdown for writing); the peer goes on sending, this host ACKs each
    segment, and every ACK stamps the entry: the flow lives while the peer speaks."""
    fw = deny
    established_flow(fw, fam, False)
    egress(fw, out_tcp(fam, "FA"))
    assert state(fw, fam) == STATE["fin_wait"]
    for dummy in range(3):
        expire(fw, fam, "ct_tcp_fin_ns")
        stale = fw.ct_entries()[key(fam)][0]
        egress(fw, out_tcp(fam, "A"))  # the ACK of the peer's last segment
        assert fw.ct_entries()[key(fam)][0] > stale
        fw.expect(in_tcp(fam, "PA"), "pass_conntrack")
    fw.expect(in_tcp(fam, "FA"), "pass_conntrack")
    egress(fw, out_tcp(fam, "A"))
    assert state(fw, fam) == STATE["fin_wait"]


@fams
def test_this_hosts_reset_closes(deny, fam):
    fw = deny
    established_flow(fw, fam, False)
    egress(fw, out_tcp(fam, "R"))
    assert state(fw, fam) == STATE["close"]
    fw.expect(in_tcp(fam, "A"), "pass_conntrack")
    expire(fw, fam, "ct_tcp_fin_ns")
    fw.expect(in_tcp(fam, "A"), "drop_policy")


@fams
@pytest.mark.parametrize("inbound", [False, True], ids=["outbound", "inbound"])
@pytest.mark.parametrize("flags", ["R", "RA"])
def test_peers_reset_at_the_acknowledged_number_closes(deny, fam, inbound, flags):
    """The peer's RST carrying exactly the sequence number this host acknowledged last is the one the
    kernel accepts at once (RFC 5961 3.2): the entry closes, and the tuple is gone after tcp_fin. Its
    ACK number is whatever the peer likes: the kernel does not check it on a RST either."""
    fw = deny
    ports = established_flow(fw, fam, inbound)
    fw.expect(in_tcp(fam, flags, seq=9001, ack=777, **ports), "pass_conntrack")
    assert state(fw, fam, **ports) == STATE["close"]
    fw.expect(in_tcp(fam, "PA", seq=9001, ack=5001, **ports), "pass_conntrack")
    expire(fw, fam, "ct_tcp_fin_ns", **ports)
    fw.expect(in_tcp(fam, "PA", seq=9001, ack=5001, **ports), "drop_policy")


@fams
def test_the_number_a_reset_must_carry_follows_this_hosts_acks(deny, fam):
    """After this host acknowledged more data, a RST at the old number is an old or forged one."""
    fw = deny
    established_flow(fw, fam, False)
    fw.expect(in_tcp(fam, "PA", seq=9001, ack=5001), "pass_conntrack")
    egress(fw, out_tcp(fam, "A", seq=5001, ack=9501))
    fw.expect(in_tcp(fam, "R", seq=9001), "pass_conntrack")
    assert state(fw, fam) == STATE["established"]
    fw.expect(in_tcp(fam, "R", seq=9501), "pass_conntrack")
    assert state(fw, fam) == STATE["close"]


@fams
def test_a_flow_picked_up_from_this_hosts_ack_knows_its_number(deny, fam):
    """An entry made by a plain ACK of this host (a connection older than the program) keeps that ACK's
    number from the start."""
    fw = deny
    egress(fw, out_tcp(fam, "A", seq=5001, ack=9001))
    assert state(fw, fam) == STATE["established"]
    fw.expect(in_tcp(fam, "R", seq=9001), "pass_conntrack")
    assert state(fw, fam) == STATE["close"]


@fams
@pytest.mark.parametrize("seq", [9000, 9002, 9001 + 1000, 0], ids=["one-before", "one-after", "in-window", "zero"])
def test_after_the_peers_reset_elsewhere_the_kernels_reset_closes(deny, fam, seq):
    """A RST from the peer at another number: the kernel answers one inside its window with a
    challenge ACK and drops the rest, so the entry stays established. The peer's next packet on the
    tuple reaches the kernel, whose RST (egress) closes the entry."""
    fw = deny
    established_flow(fw, fam, False)
    fw.expect(in_tcp(fam, "R", seq=seq), "pass_conntrack")
    assert state(fw, fam) == STATE["established"]
    fw.expect(in_tcp(fam, "PA", seq=9001), "pass_conntrack")
    egress(fw, out_tcp(fam, "R", seq=5001))
    assert state(fw, fam) == STATE["close"]
    expire(fw, fam, "ct_tcp_fin_ns")
    fw.expect(in_tcp(fam, "PA", seq=9001), "drop_policy")


@fams
def test_an_entry_without_a_known_ack_is_not_closed_by_a_reset(deny, fam):
    """An entry written by an earlier program of this layout holds no ACK number (bits 32-63 zero,
    CT_F_ACKED clear): a RST at sequence number 0 must not pass for one at the acknowledged number."""
    fw = deny
    fw.ct_put(key(fam), now_ns(), STATE["established"])
    fw.expect(in_tcp(fam, "R", seq=0), "pass_conntrack")
    assert state(fw, fam) == STATE["established"]


@fams
def test_this_host_talks_again_after_its_reset(deny, fam):
    fw = deny
    established_flow(fw, fam, False)
    egress(fw, out_tcp(fam, "R"))
    egress(fw, out_tcp(fam, "A"))
    assert state(fw, fam) == STATE["established"]


@fams
def test_rst_answers_a_syn(deny, fam):
    """Connection refused: the RST passes (the kernel checks it acknowledges the SYN) and leaves the entry
    to its tcp_syn timeout; a forged one would otherwise cut it short."""
    egress(deny, out_tcp(fam, "S"))
    deny.expect(in_tcp(fam, "RA"), "pass_conntrack")
    assert state(deny, fam) == STATE["syn_sent"]
    deny.expect(in_tcp(fam, "SA"), "pass_conntrack")
    assert state(deny, fam) == STATE["established"]


@fams
@pytest.mark.parametrize("st,index", [("syn_sent", "ct_tcp_syn_ns"), ("established", "ct_timeout_ns"),
                                      ("fin_wait", "ct_tcp_fin_ns"), ("time_wait", "ct_tcp_fin_ns"),
                                      ("close", "ct_tcp_fin_ns"), ("legacy", "ct_timeout_ns")])
def test_each_state_has_its_timeout(deny, fam, st, index):
    fw = deny
    flags = "SA" if st == "syn_sent" else "A"
    fw.ct_put(key(fam), now_ns() - 20 * S, STATE[st])
    fw.config(**{index: 10 * S})
    fw.expect(in_tcp(fam, flags), "drop_policy")
    fw.config(**{index: 40 * S})
    fw.expect(in_tcp(fam, flags), "pass_conntrack")


@fams
@pytest.mark.parametrize("flags", ["F", "R", "FA", "RA", "SF", "SR", "", "FPU", "SFRPAU"])
def test_egress_garbage_or_closing_flags_create_nothing(deny, fam, flags):
    assert egress(deny, out_tcp(fam, flags)) == {}
    assert deny.ct_entries() == {}


@fams
def test_egress_plain_ack_picks_up_established(deny, fam):
    egress(deny, out_tcp(fam, "PA"))
    assert state(deny, fam) == STATE["established"]
    deny.expect(in_tcp(fam, "A"), "pass_conntrack")


@fams
def test_egress_garbage_flags_leave_entry_alone(deny, fam):
    egress(deny, out_tcp(fam, "S"))
    before = deny.ct_entries()
    egress(deny, out_tcp(fam, "SF"))
    assert deny.ct_entries() == before


# ---------------------------------------------------------------- TCP, inbound service

@fams
def test_inbound_handshake_tracked_after_rule(deny, fam):
    fw = deny
    fw.rule(ADDR[fam]["net"], TCP_P, 22, 1)
    syn = in_tcp(fam, "S", seq=1000, sport=50000, dport=22)
    fw.expect(syn, "pass_rule")
    assert fw.ct_entries() == {}
    assert state(fw, fam, sport=50000, dport=22, table="ct_syn") == STATE["syn_recv"]
    # our SYN+ACK records its ISN
    egress(fw, out_tcp(fam, "SA", seq=777000, ack=1001, sport=22, dport=50000))
    flags = fw.ct_syn_entries()[key(fam, sport=50000, dport=22)][1]
    assert flags & SYNACK and flags >> 32 == 777000
    # an ACK that does not acknowledge the ISN (blind spoofing) opens nothing
    fw.expect(in_tcp(fam, "A", seq=1001, ack=12345, sport=50000, dport=22), "pass_rule")
    assert fw.ct_entries() == {}
    fw.expect(in_tcp(fam, "A", seq=1001, ack=777001, sport=50000, dport=22), "pass_rule")
    assert state(fw, fam, sport=50000, dport=22) == STATE["established"]
    assert fw.ct_entries()[key(fam, sport=50000, dport=22)][1] & INBOUND
    assert fw.ct_syn_entries() == {}
    # later packets take the fast path, even once the rule is gone
    fw.expect(in_tcp(fam, "PA", sport=50000, dport=22), "pass_conntrack")


@fams
def test_syn_flood_never_reaches_ct(deny, fam):
    fw = deny
    fw.rule(ADDR[fam]["net"], TCP_P, 22, 1)
    egress(fw, out_tcp(fam, "S"))  # a real outbound flow
    for port in range(20000, 20100):
        fw.xdp(in_tcp(fam, "S", sport=port, dport=22))
    assert list(fw.ct_entries()) == [key(fam)]
    assert len(fw.ct_syn_entries()) >= 60


@fams
def test_syn_not_allowed_by_rule_is_not_tracked(deny, fam):
    deny.expect(in_tcp(fam, "S", sport=50000, dport=22), "drop_policy")
    assert deny.ct_syn_entries() == {}


def test_synack_without_embryo_creates_nothing(deny):
    assert egress(deny, out_tcp(4, "SA", sport=22, dport=50000)) == {}
    assert deny.ct_entries() == {} and deny.ct_syn_entries() == {}


def test_expired_embryo_does_not_promote(deny):
    fw = deny
    fw.rule(ADDR[4]["net"], TCP_P, 22, 1)
    k = key(4, sport=50000, dport=22)
    fw.ct_put(k, now_ns() - 120 * S, STATE["syn_recv"] | INBOUND | SYNACK | (5 << 32), name="ct_syn")
    fw.expect(in_tcp(4, "A", ack=6, sport=50000, dport=22), "pass_rule")
    assert fw.ct_entries() == {}


# ---------------------------------------------------------------- UDP, ICMP echo

@fams
def test_udp_new_then_stream(deny, fam):
    fw = deny
    out = eth() / ip(fam, ADDR[fam]["local"], ADDR[fam]["src"]) / UDP(sport=LPORT, dport=53)
    back = eth() / ip(fam) / UDP(sport=53, dport=LPORT)
    egress(fw, out)
    assert state(fw, fam, UDP_P, 53) == STATE["udp"]
    fw.expect(back, "pass_conntrack")
    assert state(fw, fam, UDP_P, 53) == STATE["udp_stream"]
    # each has its own timeout
    fw.ct_put(key(fam, UDP_P, 53), now_ns() - 60 * S, STATE["udp_stream"])
    fw.expect(back, "pass_conntrack")
    fw.ct_put(key(fam, UDP_P, 53), now_ns() - 60 * S, STATE["udp"])
    fw.expect(back, "drop_policy")


def _echo(fam, request, src, dst, ident=0x1234):
    if fam == 4:
        return eth() / IP(src=src, dst=dst) / ICMP(type=8 if request else 0, id=ident)
    layer = ICMPv6EchoRequest if request else ICMPv6EchoReply
    return eth() / IPv6(src=src, dst=dst) / layer(id=ident)


@fams
def test_icmp_echo_reply_passes(deny, fam):
    fw = deny
    local, remote = ADDR[fam]["local"], ADDR[fam]["src"]
    fw.expect(_echo(fam, False, remote, local), "drop_policy")
    egress(fw, _echo(fam, True, local, remote))
    proto = ICMP_P if fam == 4 else ICMPV6_P
    assert state(fw, fam, proto, 0, 0x1234) == STATE["icmp_echo"]
    fw.expect(_echo(fam, False, remote, local), "pass_conntrack")
    fw.expect(_echo(fam, False, remote, local, ident=0x4321), "drop_policy")
    # the peer's own echo request is not a reply
    fw.expect(_echo(fam, True, remote, local), "drop_policy")
    # our echo replies (to the peer's pings) create nothing
    fw.reset()
    fw.config(policy=1, ct_enabled=1, **T)
    assert egress(fw, _echo(fam, False, local, remote)) == {}
    assert fw.ct_entries() == {}
    fw.ct_put(key(fam, proto, 0, 0x1234), now_ns() - 40 * S, STATE["icmp_echo"])
    fw.expect(_echo(fam, False, remote, local), "drop_policy")


# ---------------------------------------------------------------- related ICMP errors

def _quoted(fam, sport=LPORT, dport=RPORT, src=None):
    """The start of a packet this host sent (as an ICMP error quotes it)."""
    src = src or ADDR[fam]["local"]
    if fam == 4:
        return bytes(IP(src=src, dst=ADDR[fam]["src"]) / TCP(sport=sport, dport=dport, flags="A"))[:28]
    return bytes(IPv6(src=src, dst=ADDR[fam]["src"]) / TCP(sport=sport, dport=dport, flags="A"))[:48]


def _error(fam, quoted, router=None):
    router = router or ADDR[fam]["other"]
    if fam == 4:  # fragmentation needed
        return eth() / IP(src=router, dst=ADDR[fam]["local"]) / ICMP(type=3, code=4, nexthopmtu=1280) / Raw(quoted)
    return eth() / IPv6(src=router, dst=ADDR[fam]["local"]) / ICMPv6PacketTooBig(mtu=1280) / Raw(quoted)


@fams
def test_pmtu_error_for_tracked_flow_passes_under_deny(deny, fam):
    fw = deny
    fw.expect(_error(fam, _quoted(fam)), "drop_policy")
    egress(fw, out_tcp(fam, "S"))
    fw.expect(in_tcp(fam, "SA"), "pass_conntrack")
    fw.expect(_error(fam, _quoted(fam)), "pass_related")


@fams
def test_unrelated_errors_are_dropped(deny, fam):
    fw = deny
    egress(fw, out_tcp(fam, "PA"))
    fw.expect(_error(fam, _quoted(fam, sport=LPORT + 1)), "drop_policy")   # another flow
    fw.expect(_error(fam, _quoted(fam, src=ADDR[fam]["other"])), "drop_policy")  # not sent by us
    fw.expect(_error(fam, _quoted(fam)[:20 if fam == 4 else 40]), "drop_policy")  # ports cut off


@fams
def test_expired_flow_has_no_related_errors(deny, fam):
    deny.ct_put(key(fam), now_ns() - 400 * S, STATE["established"])
    deny.expect(_error(fam, _quoted(fam)), "drop_policy")


@fams
def test_error_about_an_echo_request(deny, fam):
    fw = deny
    local, remote = ADDR[fam]["local"], ADDR[fam]["src"]
    egress(fw, _echo(fam, True, local, remote))
    quoted = bytes(_echo(fam, True, local, remote))[14:14 + (28 if fam == 4 else 48)]
    if fam == 4:
        err = eth() / IP(src=ADDR[4]["other"], dst=local) / ICMP(type=11) / Raw(quoted)
    else:
        err = eth() / IPv6(src=ADDR[6]["other"], dst=local) / ICMPv6DestUnreach() / Raw(quoted)
    fw.expect(err, "pass_related")


def test_related_needs_conntrack_enabled(deny):
    egress(deny, out_tcp(4, "PA"))
    deny.config(ct_enabled=0)
    deny.expect(_error(4, _quoted(4)), "drop_policy")


# ---------------------------------------------------------------- protocol sanity

BOGON, FRAG, FLAGS, LAND = 1, 2, 4, 8


@fams
@pytest.mark.parametrize("flags", ["", "SF", "SR", "FR", "F", "FPU", "SFRPAU", "PU", "P"])
def test_invalid_tcp_flags(fw, fam, flags):
    fw.config(sanity=FLAGS)
    fw.expect(in_tcp(fam, flags), "drop_tcp_flags")
    fw.config(sanity=0)
    fw.expect(in_tcp(fam, flags), "pass_policy")


@fams
@pytest.mark.parametrize("flags", ["S", "SA", "A", "PA", "FA", "R", "RA", "SEC", "AU"])
def test_valid_tcp_flags(fw, fam, flags):
    fw.config(sanity=FLAGS)
    fw.expect(in_tcp(fam, flags), "pass_policy")


def test_invalid_flags_dropped_even_on_a_tracked_flow(deny):
    deny.config(sanity=FLAGS)
    egress(deny, out_tcp(4, "PA"))
    deny.expect(in_tcp(4, "SF"), "drop_tcp_flags")
    deny.expect(in_tcp(4, "A"), "pass_conntrack")


@fams
def test_fragments_switch(fw, fam):
    if fam == 4:
        first = eth() / IP(src=ADDR[4]["src"], dst=ADDR[4]["local"], flags="MF") / UDP(sport=1, dport=2)
        later = eth() / IP(src=ADDR[4]["src"], dst=ADDR[4]["local"], frag=10, proto=UDP_P) / Raw(bytes(8))
    else:
        first = eth() / ip(6) / IPv6ExtHdrFragment(offset=0, m=1) / UDP(sport=1, dport=2)
        later = eth() / ip(6) / IPv6ExtHdrFragment(nh=UDP_P, offset=10) / Raw(bytes(8))
    fw.expect(first, "pass_policy")
    fw.expect(later, "pass_fragment")  # the verdict of its first fragment
    fw.config(sanity=FRAG)
    for pkt in (first, later):
        fw.expect(pkt, "drop_fragment")
    fw.expect(eth() / ip(fam) / UDP(sport=1, dport=2), "pass_policy")


@fams
def test_land(fw, fam):
    same = ADDR[fam]["local"]
    pkt = eth() / ip(fam, same, same) / TCP(sport=139, dport=139, flags="S")
    fw.expect(pkt, "pass_policy")
    fw.config(sanity=LAND)
    fw.expect(pkt, "drop_land")
    fw.expect(in_tcp(fam, "S"), "pass_policy")


@pytest.mark.parametrize("src", ["0.1.2.3", "127.0.0.1", "224.0.0.5", "240.0.0.1", "255.255.255.255",
                                 "::1", "ff02::1", "::ffff:198.51.100.7"])
def test_bogon_sources(fw, src):
    fam = 6 if ":" in src else 4
    pkt = eth() / ip(fam, src) / UDP(sport=1000, dport=2000)
    fw.expect(pkt, "pass_policy")
    fw.config(sanity=BOGON)
    fw.expect(pkt, "drop_bogon")


@pytest.mark.parametrize("src", ["10.1.2.3", "192.168.1.1", "169.254.1.1", "198.51.100.7", "::",
                                 "fe80::1", "2001:db8::1", "::2"])
def test_not_bogons(fw, src):
    fam = 6 if ":" in src else 4
    fw.config(sanity=BOGON | FRAG | FLAGS | LAND)
    fw.expect(eth() / ip(fam, src) / UDP(sport=1000, dport=2000), "pass_policy")


def test_sanity_never_breaks_arp_nd_dhcp(fw):
    fw.config(policy=1, sanity=BOGON | FRAG | FLAGS | LAND)
    fw.expect(eth() / ARP(psrc="0.0.0.0", pdst="198.51.100.1"), "pass_neighbor")
    fw.expect(eth() / IPv6(src="::", dst="ff02::1:ff00:1") / ICMPv6ND_NS(tgt="2001:db8:2::1"), "pass_neighbor")
    dhcp = eth() / IP(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=68, dport=67) / Raw(bytes(240))
    fw.config(policy=0)
    fw.expect(dhcp, "pass_policy")
    # 0.0.0.0 to any other port is a bogon
    fw.expect(eth() / IP(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=68, dport=68), "drop_bogon")


@fams
@pytest.mark.parametrize("listed", ["host", "prefix"])
def test_blacklist_wins_over_related(deny, fam, listed):
    """An error quoting a flow of this host, from a blacklisted router: dropped, whether the router is
    listed by its address or by a prefix (the related check runs after the source stages)."""
    fw = deny
    egress(fw, out_tcp(fam, "PA"))
    fw.expect(_error(fam, _quoted(fam)), "pass_related")
    router = ADDR[fam]["other"]
    fw.blacklist(router + ("/32" if fam == 4 else "/128") if listed == "host" else
                 ("203.0.113.0/24" if fam == 4 else "2001:db8:9::/48"))
    fw.expect(_error(fam, _quoted(fam)), "drop_blacklist")
    fw.expect(in_tcp(fam, "PA"), "pass_conntrack")     # the flow itself is src's, not the router's
