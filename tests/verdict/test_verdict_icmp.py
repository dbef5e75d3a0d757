# SPDX-License-Identifier: GPL-2.0-or-later
"""ICMP and ICMPv6 by type (docs/internals.md, "ICMP and ICMPv6 types"): every type under allow and
deny, with and without the ICMP bucket; neighbour discovery and MLD by hop limit, source, code and
fragmentation, also from blacklisted sources; echo replies and errors only for this host's flows."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from verdict_packets import (
    ADDR, FAMILIES, ICMP_P, ICMPV6_P, IP, TCP, TCP_P, UDP, Dot1AD, Dot1Q, IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, Raw,
    ct_key, eth, host, now_ns,
)

fams = pytest.mark.parametrize("fam", FAMILIES)
policies = pytest.mark.parametrize("policy", [0, 1], ids=["allow", "deny"])
buckets = pytest.mark.parametrize("bucket", [False, True], ids=["nobucket", "bucket"])

S = 10**9
ESTABLISHED = 3
LPORT, RPORT = 40000, 443
LINK_LOCAL = "fe80::7"

# The contract, by type (RFC 792, 4443, 4861, 4890 4.4, 2710, 3810, 4286).
ECHO_REQUEST = {4: 8, 6: 128}
ECHO_REPLY = {4: 0, 6: 129}
ERRORS = {4: {3: range(16), 11: (0, 1), 12: (0, 1, 2)},  # unreachable (4: fragmentation needed), time exceeded, parameter problem
          6: {1: range(8), 2: (0,), 3: (0, 1), 4: (0, 1, 2, 3)}}  # unreachable, packet too big, time exceeded, parameter problem
NOT_RELATED = {4: (4, 5), 6: ()}  # source quench (RFC 6633), redirect: quote a packet, never related here
ND = (133, 134, 135, 136, 137, 141, 142, 148, 149)  # hop limit 255, code 0
ND_LINK_LOCAL_SOURCE = (134, 137)  # RA, redirect
MLD = (130, 131, 132, 143, 151, 152, 153)  # hop limit 1, link-local (or unspecified) source


def icmp(fam, itype, code=0, src=None, hlim=64, body=bytes(24), ext=()):
    """An ICMP/ICMPv6 message of any type: type, code, checksum 0, then body (id/seq, quoted packet...)."""
    payload = Raw(bytes([itype, code, 0, 0]) + body)
    src = src or ADDR[fam]["src"]
    if fam == 4:
        return eth() / IP(src=src, dst=ADDR[4]["local"], proto=ICMP_P) / payload
    pkt = eth() / IPv6(src=src, dst=ADDR[6]["local"], hlim=hlim)
    for header in ext:
        pkt = pkt / header
    pkt.lastlayer().nh = ICMPV6_P
    return pkt / payload


def policy_reason(policy):
    return "drop_policy" if policy else "pass_policy"


def unsolicited(fam, itype, policy, bucket):
    """No flow, no list entry: only an echo request is special (the bucket), the rest meets the policy."""
    if itype == ECHO_REQUEST[fam] and bucket:
        return "pass_icmp"
    return policy_reason(policy)


def configure(fw, policy, bucket, **more):
    fw.config(policy=policy, ct_enabled=1, ct_timeout_ns=300 * S, ct_icmp_ns=30 * S,
              icmp_rate=1000 if bucket else 0, icmp_burst=1000, **more)


def check(fw, cases):
    """Run (packet, expected reason, label) cases; report every mismatch at once."""
    wrong = []
    for pkt, want, label in cases:
        retval, delta, length = fw.xdp(pkt)
        got = [r for r, (n, _bytes) in delta.items() if n]
        wanted = 1 if want.startswith("drop_") else 2
        if (retval, delta) != (wanted, {want: (1, length)}):
            wrong.append("%s: want %s, got retval %d %s" % (label, want, retval, got))
    assert not wrong, "\n".join(wrong)


# ---------------------------------------------------------------- every type, unsolicited

@fams
@policies
@buckets
def test_every_type_without_state(fw, fam, policy, bucket):
    """Hop limit 64 from a global source: nothing is ND or MLD; only an echo request meets the bucket."""
    configure(fw, policy, bucket)
    check(fw, [(icmp(fam, t), unsolicited(fam, t, policy, bucket), "type %d" % t) for t in range(256)])


def link_plumbing(itype, code, hlim, src):
    if itype in ND:
        return hlim == 255 and code == 0 and (itype not in ND_LINK_LOCAL_SOURCE or src.startswith("fe80:"))
    if itype in MLD:
        return hlim == 1 and (src.startswith("fe80:") or src == "::")
    return False


@policies
@buckets
@pytest.mark.parametrize("hlim,src", [
    (255, LINK_LOCAL), (255, ADDR[6]["src"]), (255, "::"), (254, LINK_LOCAL), (64, LINK_LOCAL),
    (1, LINK_LOCAL), (1, "::"), (1, ADDR[6]["src"]), (2, LINK_LOCAL),
], ids=str)
def test_every_icmpv6_type_by_hop_limit_and_source(fw, policy, bucket, hlim, src):
    """ND passes with hop limit 255 only (RA and redirect from a link-local source), MLD and MRD
    with hop limit 1 from a link-local or unspecified source; any other combination is not link
    plumbing and takes the normal stages."""
    configure(fw, policy, bucket)
    cases = []
    for t in range(256):
        want = "pass_neighbor" if link_plumbing(t, 0, hlim, src) else unsolicited(6, t, policy, bucket)
        cases.append((icmp(6, t, src=src, hlim=hlim), want, "type %d" % t))
    check(fw, cases)
    # the table above really has both outcomes for this hop limit and source
    if (hlim, src) in ((255, LINK_LOCAL), (1, LINK_LOCAL)):
        assert any(case[1] == "pass_neighbor" for case in cases)


@pytest.mark.parametrize("itype", ND)
def test_nd_needs_code_zero(fw, itype):
    configure(fw, 1, True)
    fw.expect(icmp(6, itype, src=LINK_LOCAL, hlim=255), "pass_neighbor")
    fw.expect(icmp(6, itype, code=1, src=LINK_LOCAL, hlim=255), "drop_policy")


@pytest.mark.parametrize("itype", MLD)
def test_mld_code_is_ignored(fw, itype):
    """RFC 2710: receivers ignore the MLD code."""
    configure(fw, 1, False)
    fw.expect(icmp(6, itype, code=3, src=LINK_LOCAL, hlim=1), "pass_neighbor")


@pytest.mark.parametrize("itype", ND + MLD)
def test_fragmented_nd_is_not_link_plumbing(fw, itype):
    """RFC 6980: ND in a fragment is ignored by hosts; it takes the normal stages."""
    configure(fw, 1, False)
    hlim = 255 if itype in ND else 1
    whole = icmp(6, itype, src=LINK_LOCAL, hlim=hlim, ext=[IPv6ExtHdrHopByHop()])
    fw.expect(whole, "pass_neighbor")
    fw.expect(icmp(6, itype, src=LINK_LOCAL, hlim=hlim, ext=[IPv6ExtHdrFragment(offset=0, m=1)]), "drop_policy")


def test_truncated_icmpv6_header_is_not_nd(fw):
    configure(fw, 1, False)
    pkt = eth() / IPv6(src=LINK_LOCAL, dst=ADDR[6]["local"], hlim=255, nh=ICMPV6_P) / Raw(bytes([135]))
    fw.expect(pkt, "drop_policy")


def test_nd_type_in_ipv4_is_not_nd(fw):
    configure(fw, 1, False)
    for t in ND + MLD:
        fw.expect(icmp(4, t), "drop_policy")


# ---------------------------------------------------------------- ND and MLD versus the source stages

@pytest.mark.parametrize("listed", ["host", "prefix"])
@pytest.mark.parametrize("policy", [0, 1], ids=["allow", "deny"])
def test_fake_nd_from_a_blacklisted_source_is_dropped(fw, listed, policy):
    """The reported flood: 50 'neighbour solicitations' with hop limit 64 and 1200 bytes of payload
    from a blacklisted address are not ND; the blacklist drops every one."""
    configure(fw, policy, True)
    fw.blacklist(host(6) if listed == "host" else ADDR[6]["net"])
    flood = icmp(6, 135, hlim=64, body=bytes(1200))
    for _packet in range(50):
        fw.expect(flood, "drop_blacklist")


@pytest.mark.parametrize("listed", ["host", "prefix"])
@pytest.mark.parametrize("itype", ND)
def test_real_nd_from_a_blacklisted_on_link_address_passes(fw, listed, itype):
    """Hop limit 255: it was sent on this link; like ARP it passes before the source stages (the
    blacklist still drops every IP packet of that neighbour)."""
    configure(fw, 1, False)
    src = "fe80::66" if itype in ND_LINK_LOCAL_SOURCE else ADDR[6]["src"]
    fw.blacklist(("%s/128" % src) if listed == "host" else ("fe80::/64" if src.startswith("fe80") else ADDR[6]["net"]))
    fw.expect(icmp(6, itype, src=src, hlim=255), "pass_neighbor")
    fw.expect(icmp(6, 128, src=src, hlim=255), "drop_blacklist")
    fw.expect(icmp(6, itype, src=src, hlim=64), "drop_blacklist")


def test_mld_from_a_blacklisted_link_local_source_passes(fw):
    configure(fw, 1, False)
    fw.blacklist("fe80::/10")
    for t in MLD:
        fw.expect(icmp(6, t, src=LINK_LOCAL, hlim=1), "pass_neighbor")
        fw.expect(icmp(6, t, src=LINK_LOCAL, hlim=2), "drop_blacklist")


def test_fake_nd_from_a_whitelisted_source_is_plain_traffic(fw):
    configure(fw, 1, False)
    fw.whitelist(host(6))
    fw.expect(icmp(6, 135, hlim=64), "pass_whitelist")


# ---------------------------------------------------------------- the ICMP bucket

@fams
def test_bucket_counts_echo_requests_only(fw, fam):
    fw.config(policy=1, ct_enabled=1, icmp_rate=1, icmp_burst=1)
    # nothing but an echo request takes a token: a hundred others leave the one token there
    others = [t for t in range(256) if t != ECHO_REQUEST[fam]]
    check(fw, [(icmp(fam, t), "drop_policy", "type %d" % t) for t in others[:100]])
    fw.expect(icmp(fam, ECHO_REQUEST[fam]), "pass_icmp")
    fw.expect(icmp(fam, ECHO_REQUEST[fam]), "drop_icmp_rate")
    # an empty bucket drops echo requests under allow too: the rate is a limit, not an opening
    fw.config(policy=0)
    fw.expect(icmp(fam, ECHO_REQUEST[fam]), "drop_icmp_rate")
    fw.expect(icmp(fam, ECHO_REPLY[fam]), "pass_policy")


# ---------------------------------------------------------------- echo replies and errors for this host's flows

def track_tcp(fw, fam):
    fw.ct_put(ct_key(ADDR[fam]["src"], ADDR[fam]["local"], RPORT, LPORT, TCP_P), now_ns(), ESTABLISHED)


def quoted(fam, sport=LPORT):
    """The start of a TCP segment this host sent to src (as an error quotes it)."""
    pkt = (IP if fam == 4 else IPv6)(src=ADDR[fam]["local"], dst=ADDR[fam]["src"]) / TCP(sport=sport, dport=RPORT, flags="A")
    return bytes(pkt)[:28 if fam == 4 else 48]


def error(fam, itype, code, body, src=None):
    """An error from a router (other) about body; ICMPv4 keeps 4 bytes (unused / next-hop MTU) before the quote."""
    return icmp(fam, itype, code, src=src or ADDR[fam]["other"], body=bytes(4) + body)


@fams
@policies
@buckets
def test_errors_quoting_a_flow_of_this_host(fw, fam, policy, bucket):
    configure(fw, policy, bucket)
    track_tcp(fw, fam)
    cases = []
    for t, codes in ERRORS[fam].items():
        for code in codes:
            label = "type %d code %d" % (t, code)
            cases.append((error(fam, t, code, quoted(fam)), "pass_related", label + " related"))
            cases.append((error(fam, t, code, quoted(fam, LPORT + 1)), policy_reason(policy), label + " other flow"))
    for t in NOT_RELATED[fam]:
        cases.append((error(fam, t, 0, quoted(fam)), policy_reason(policy), "type %d quoting the flow" % t))
    check(fw, cases)


@fams
@policies
@buckets
def test_echo_reply_only_for_an_echo_request_of_this_host(fw, fam, policy, bucket):
    configure(fw, policy, bucket)
    reply = icmp(fam, ECHO_REPLY[fam], body=bytes([0x12, 0x34, 0, 1]))
    fw.expect(reply, policy_reason(policy))
    proto = ICMP_P if fam == 4 else ICMPV6_P
    fw.ct_put(ct_key(ADDR[fam]["src"], ADDR[fam]["local"], 0, 0x1234, proto), now_ns(), 9)
    fw.expect(reply, "pass_conntrack")
    fw.expect(icmp(fam, ECHO_REPLY[fam], body=bytes([0x43, 0x21, 0, 1])), policy_reason(policy))


@pytest.mark.parametrize("vlans", [(), (10,), (100, 10), (0x6DD,), (0x6DD, 0x6DD)],
                         ids=["untagged", "1tag", "2tags", "tci86dd", "2tci86dd"])
def test_hop_limit_is_read_behind_vlan_tags(fw, vlans):
    """The hop limit is read again from the frame: behind 0, 1 or 2 tags, also when a tag's TCI
    (priority 4, VLAN 0x6dd) looks like the IPv6 ethertype."""
    configure(fw, 1, False)
    for hlim, want in ((255, "pass_neighbor"), (64, "drop_policy"), (254, "drop_policy")):
        frame = eth()
        for n, vid in enumerate(vlans):
            frame = frame / (Dot1AD if n == 0 and len(vlans) > 1 else Dot1Q)(prio=4 if vid == 0x6DD else 0, vlan=vid)
        frame = frame / IPv6(src=LINK_LOCAL, dst=ADDR[6]["local"], hlim=hlim, nh=ICMPV6_P) / Raw(bytes([135, 0, 0, 0]) + bytes(20))
        if vlans and vlans[0] == 0x6DD:
            assert bytes(frame)[14:16] == b"\x86\xdd"
        fw.expect(frame, want)


@policies
def test_icmpv6_errors_quoting_a_first_fragment_of_this_host(fw, policy):
    """A large UDP answer this host sent in fragments meets a link with a smaller MTU: the router's
    packet too big (or any error) quotes the first fragment, whose UDP header follows the fragment
    header. It is related, as netfilter finds it (PMTU discovery of a DNS server under deny). A later
    fragment quotes no ports: not related."""
    configure(fw, policy, False, ct_udp_ns=30 * S)
    local, peer = ADDR[6]["local"], ADDR[6]["src"]
    first = IPv6(src=local, dst=peer) / IPv6ExtHdrFragment(nh=17, offset=0, m=1, id=7) / UDP(sport=53, dport=LPORT) / Raw(bytes(1400))
    fw.tc(eth() / first)
    later = IPv6(src=local, dst=peer) / IPv6ExtHdrFragment(nh=17, offset=176, m=0, id=7) / Raw(bytes(600))
    other = IPv6(src=local, dst=peer) / IPv6ExtHdrFragment(nh=17, offset=0, m=1, id=8) / UDP(sport=53, dport=LPORT + 1) / Raw(bytes(64))
    mtu = (1280).to_bytes(4, "big")
    check(fw, [
        (icmp(6, 2, 0, src=ADDR[6]["other"], body=mtu + bytes(first)[:1184]), "pass_related", "packet too big quoting the first fragment"),
        (icmp(6, 1, 4, src=ADDR[6]["other"], body=bytes(4) + bytes(first)[:200]), "pass_related", "unreachable quoting it"),
        (icmp(6, 2, 0, src=ADDR[6]["other"], body=mtu + bytes(later)), policy_reason(policy), "quoting a later fragment"),
        (icmp(6, 2, 0, src=ADDR[6]["other"], body=mtu + bytes(other)), policy_reason(policy), "quoting another flow"),
    ])
