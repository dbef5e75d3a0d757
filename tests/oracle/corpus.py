# SPDX-License-Identifier: GPL-2.0-or-later
"""The oracle's packet corpus (importable helper, not a test module).

An item is one probe datagram (possibly several frames: fragments), sent by the sender namespace
to both target hosts under the policies it lists. Every probe carries a unique mark (IPv4 id or
IPv6 flow label: what the observation table counts) and a unique port (TCP/UDP source port or
ICMP echo id: what the replies are matched by). An item with a `flow` first has the target open
that flow (socket, or a raw frame for DHCP), and builds its probe from the packet the sender
captured (TCP ISN, the quoted header of an ICMP error, the DHCP transaction id).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from scapy.all import (
    BOOTP, DHCP, ICMP, IP, TCP, UDP, DHCP6_Advertise, DHCP6_Solicit, Dot1AD, Dot1Q, Ether, ICMPv6DestUnreach,
    ICMPv6EchoReply, ICMPv6EchoRequest, ICMPv6MLQuery, ICMPv6MLReport, ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6ND_RA,
    ICMPv6ND_Redirect, ICMPv6ND_RS, ICMPv6NDOptSrcLLAddr, ICMPv6PacketTooBig, ICMPv6Unknown, IPv6, IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, Raw, RouterAlert)
from scapy.layers.ipsec import AH

from policies import GENERAL, SENDER_LL, SENDER_MAC, SRC, TARGET, TARGET_LL, TARGET_MAC

ICMP_ERRORS4 = (3, 4, 5, 11, 12)
ICMP6_TYPES = (1, 2, 3, 4, 100, 101, 127) + tuple(range(128, 163)) + (200, 201, 255)
TCP_FLAGS = ("S", "SA", "A", "R", "RA", "F", "FA", "", "FPU", "SF", "SR", "SU", "AU", "PA", "FR", "SEC")


class Item:
    """name, build(ctx) -> [frames], the policies it runs under, optional flow, observation."""

    def __init__(self, name, family, build, policies=GENERAL, flow=None, observe="stack", nd_src=None):
        self.name, self.family, self.build, self.policies = name, family, build, tuple(policies)
        self.flow, self.observe, self.nd_src = flow, observe, nd_src


class Ctx:
    def __init__(self, port, mark, out=None):
        self.port, self.mark, self.out = port, mark, out


def eth(dst=TARGET_MAC):
    return Ether(src=SENDER_MAC, dst=dst)


def ip(fam, ctx, src="cli", dst="t", **kw):
    s = SRC[fam].get(src, src)
    d = TARGET[fam].get(dst, dst)
    if fam == 4:
        return IP(src=s, dst=d, id=ctx.mark, **kw)
    return IPv6(src=s, dst=d, fl=ctx.mark, **kw)


def one(layers):
    """An item builder for a fixed packet: layers(ctx) is the IP datagram."""
    return lambda ctx: [eth() / layers(ctx)]


def tcp(fam, dport, flags="S", src="cli"):
    return one(lambda c: ip(fam, c, src) / TCP(sport=c.port, dport=dport, flags=flags, seq=1000, ack=0 if "A" not in flags else 1))


def udp(fam, dport, src="cli", size=8):
    return one(lambda c: ip(fam, c, src) / UDP(sport=c.port, dport=dport) / Raw(b"q" * size))


def echo(fam, src="cli", size=8):
    if fam == 4:
        return one(lambda c: ip(4, c, src) / ICMP(type=8, id=c.port, seq=1) / Raw(b"p" * size))
    return one(lambda c: ip(6, c, src) / ICMPv6EchoRequest(id=c.port, seq=1) / Raw(b"p" * size))


def quoted(fam, sport=40000, dport=40001):
    """An unrelated quoted packet (no flow of the target has this tuple)."""
    if fam == 4:
        return bytes(IP(src=TARGET[4]["t"], dst=SRC[4]["cli"], id=1) / UDP(sport=sport, dport=dport))
    return bytes(IPv6(src=TARGET[6]["t"], dst=SRC[6]["cli"]) / UDP(sport=sport, dport=dport))


def icmp4_type(t):
    def build(c):
        body = (b"\0" * 4 + quoted(4)) if t in ICMP_ERRORS4 else b"\0" * 12
        return [eth() / ip(4, c) / ICMP(type=t, code=0, id=c.port, seq=1) / Raw(body)]
    return build


def icmp6_type(t, hlim=64, src="cli"):
    def build(c):
        body = (b"\0" * 4 + quoted(6)) if t <= 4 else (c.port.to_bytes(2, "big") + b"\0\x01" + b"\0" * 20)
        return [eth() / ip(6, c, src, hlim=hlim) / ICMPv6Unknown(type=t, code=0, msgbody=body)]
    return build


# ---- fragments -------------------------------------------------------------------------------

def l4_bytes(fam, l4, src="cli"):
    """The L4 bytes (checksum over the right pseudo header) of l4 sent from src to the target."""
    c = Ctx(0, 0)
    return bytes(ip(fam, c, src) / l4)[20 if fam == 4 else 40:]


def frag_frames(fam, ctx, proto, data, pieces, src="cli"):
    """Frames of the datagram data (L4 bytes) cut at pieces [(offset, length, more)], in that order."""
    out = []
    for off, length, more in pieces:
        chunk = data[off:off + length]
        if fam == 4:
            pkt = ip(4, ctx, src, proto=proto, flags="MF" if more else 0, frag=off // 8) / Raw(chunk)
        else:
            pkt = ip(6, ctx, src) / IPv6ExtHdrFragment(nh=proto, offset=off // 8, m=int(more), id=ctx.mark) / Raw(chunk)
        out.append(eth() / pkt)
    return out


def split(total, size):
    """[(offset, length, more)] cutting total bytes in pieces of size (a multiple of 8)."""
    return [(o, min(size, total - o), o + size < total) for o in range(0, total, size)]


def frag_udp(fam, dport, order="in", size=1200, src="cli"):
    def build(c):
        data = l4_bytes(fam, UDP(sport=c.port, dport=dport) / Raw(b"f" * size), src)
        pieces = split(len(data), 512)
        if order == "reversed":
            pieces = pieces[::-1]
        elif order == "first":
            pieces = pieces[:1]
        elif order == "later":
            pieces = pieces[1:]
        elif order == "overlap":  # the second piece starts inside the first
            pieces = [(0, 512, True), (256, 512, True)] + pieces[2:]
        return frag_frames(fam, c, 17, data, pieces, src)
    return build


def frag_echo(fam, size=3000):
    def build(c):
        icmp = ICMP(type=8, id=c.port, seq=1) if fam == 4 else ICMPv6EchoRequest(id=c.port, seq=1)
        data = l4_bytes(fam, icmp / Raw(b"e" * size))
        return frag_frames(fam, c, 1 if fam == 4 else 58, data, split(len(data), 1400))
    return build


def frag_tcp_syn(fam, dport, size=2000):
    """A SYN carrying data, in fragments; the first holds the whole TCP header."""
    def build(c):
        data = l4_bytes(fam, TCP(sport=c.port, dport=dport, flags="S", seq=1000) / Raw(b"s" * size))
        return frag_frames(fam, c, 6, data, split(len(data), 1024))
    return build


def tiny_tcp_first(fam, padded=False):
    """A SYN whose first fragment holds 8 bytes of TCP. padded: the frame of that first fragment goes on
    with the rest of a TCP header claiming ACK, past the IP length (the kernel trims it)."""
    def build(c):
        data = l4_bytes(fam, TCP(sport=c.port, dport=22, flags="S", seq=1000))
        frames = frag_frames(fam, c, 6, data, [(0, 8, True), (8, len(data) - 8, False)])
        if padded:
            disguise = l4_bytes(fam, TCP(sport=c.port, dport=22, flags="A", seq=1000, ack=1))
            frames[0] = Ether(bytes(frames[0]) + disguise[8:])
        return frames
    return build


# ---- VLAN, extension headers -------------------------------------------------------------------

def vlan(fam, vid, dport, outer=None, proto="udp", src="cli"):
    """A tagged frame. The kernel here has no 802.1Q devices: a tag of VLAN 0 (priority tag) reaches
    t0's stack untagged (also two of them, QinQ), any other VLAN id goes nowhere on both hosts."""
    def build(c):
        l4 = UDP(sport=c.port, dport=dport) / Raw(b"v" * 8) if proto == "udp" else TCP(sport=c.port, dport=dport, flags="S")
        tags = Dot1Q(prio=5, vlan=vid) if outer is None else Dot1AD(prio=5, vlan=outer) / Dot1Q(prio=5, vlan=vid)
        return [eth() / tags / ip(fam, c, src) / l4]
    return build


def other_l2(fam, kind, dport=55):
    """IP in an encapsulation that netxfw passes as non-IP: an 802.3 frame with LLC/SNAP (OUI 0,
    the IP ethertype), or a tag with the old QinQ TPID 0x9100. The kernel must deliver neither as IP,
    or port rules would be bypassed."""
    ethertype = b"\x08\x00" if fam == 4 else b"\x86\xdd"

    def build(c):
        datagram = bytes(ip(fam, c) / UDP(sport=c.port, dport=dport) / Raw(b"l" * 8))
        if kind == "snap":
            payload = b"\xaa\xaa\x03\x00\x00\x00" + ethertype + datagram
            return [Ether(src=SENDER_MAC, dst=TARGET_MAC, type=len(payload)) / Raw(payload)]
        return [Ether(src=SENDER_MAC, dst=TARGET_MAC, type=0x9100) / Raw(b"\x00\x00" + ethertype + datagram)]
    return build


def triple_tag(fam):
    return lambda c: [eth() / Dot1AD(vlan=0) / Dot1Q(vlan=0) / Dot1Q(vlan=0) / ip(fam, c) / UDP(sport=c.port, dport=53)]


def ext6(chain, nh_l4, l4_fn):
    """IPv6 with the given extension headers (list of callables(ctx)), then the L4 layer."""
    def build(c):
        pkt = ip(6, c)
        for hdr in chain:
            pkt = pkt / hdr(c)
        return [eth() / pkt / l4_fn(c)]
    return build


def HBH(c):  # pylint: disable=invalid-name
    return IPv6ExtHdrHopByHop()


def DO(c):  # pylint: disable=invalid-name
    return IPv6ExtHdrDestOpt()


def RT0(c):  # pylint: disable=invalid-name
    return IPv6ExtHdrRouting(type=0, segleft=0, addresses=[])


def ATOMIC(c):  # pylint: disable=invalid-name
    return IPv6ExtHdrFragment(offset=0, m=0, id=c.mark)


def AH6(c):  # pylint: disable=invalid-name
    return AH(nh=17, payloadlen=4, spi=1, seq=1, icv=b"\0" * 12)


def udp53(c):
    return UDP(sport=c.port, dport=53) / Raw(b"x" * 8)


# ---- neighbour discovery, MLD -----------------------------------------------------------------------

def nd_src(c):
    return "2001:db8:1::%x" % (0x8000 + c.mark)


def ns(hlim=255, size=0, src=None):
    def build(c):
        s = SRC[6][src] if src else nd_src(c)
        pkt = IPv6(src=s, dst="ff02::1:ff00:1", hlim=hlim, fl=c.mark) / ICMPv6ND_NS(tgt=TARGET[6]["t"])
        pkt = pkt / ICMPv6NDOptSrcLLAddr(lladdr=SENDER_MAC)
        if size:
            pkt = pkt / Raw(b"n" * size)
        return [eth("33:33:ff:00:00:01") / pkt]
    return build


def nd(layer, hlim, src=SENDER_LL, dst="ff02::1"):
    return lambda c: [eth("33:33:00:00:00:01") / IPv6(src=src, dst=dst, hlim=hlim, fl=c.mark) / layer()]


def mld(t, src=SENDER_LL):
    def build(c):
        hop = IPv6ExtHdrHopByHop(options=[RouterAlert()])
        body = ICMPv6MLQuery() if t == 130 else ICMPv6MLReport(type=t, mladdr="ff02::1:ff00:1")
        return [eth("33:33:00:00:00:01") / IPv6(src=src, dst="ff02::1", hlim=1, fl=c.mark) / hop / body]
    return build


# ---- replies to flows the target opened -------------------------------------------------------------

def out_ip(c):
    return c.out[IP] if IP in c.out else c.out[IPv6]


def reply(fam, l4_fn, src=None):
    """A reply to the captured outbound packet (addresses swapped), from its peer or from src."""
    def build(c):
        o = out_ip(c)
        s = SRC[fam].get(src, src) if src else o.dst
        hdr = IP(src=s, dst=o.src, id=c.mark) if fam == 4 else IPv6(src=s, dst=o.src, fl=c.mark)
        return [eth() / hdr / l4_fn(c, o)]
    return build


def udp_reply(fam, size=8, sport_delta=0, src=None):
    return reply(fam, lambda c, o: UDP(sport=o[UDP].dport + sport_delta, dport=o[UDP].sport) / Raw(b"r" * size), src)


def reply_frag(fam, proto, l4_fn):
    """A reply (l4_fn(ctx, outbound IP layer), several KB) to the captured outbound packet, in fragments."""
    def build(c):
        o = out_ip(c)
        data = bytes((IP(src=o.dst, dst=o.src) if fam == 4 else IPv6(src=o.dst, dst=o.src)) / l4_fn(c, o))[20 if fam == 4 else 40:]
        out = []
        for off, length, more in split(len(data), 1400):
            if fam == 4:
                pkt = IP(src=o.dst, dst=o.src, id=c.mark, proto=proto, flags="MF" if more else 0, frag=off // 8)
            else:
                pkt = IPv6(src=o.dst, dst=o.src, fl=c.mark) / IPv6ExtHdrFragment(nh=proto, offset=off // 8, m=int(more), id=c.mark)
            out.append(eth() / pkt / Raw(data[off:off + length]))
        return out
    return build


def udp_reply_frag(fam, size=3000):
    return reply_frag(fam, 17, lambda c, o: UDP(sport=o[UDP].dport, dport=o[UDP].sport) / Raw(b"R" * size))


def echo_reply_frag(fam, size=3000):
    if fam == 4:
        return reply_frag(4, 1, lambda c, o: ICMP(type=0, id=o[ICMP].id, seq=o[ICMP].seq) / Raw(b"E" * size))
    return reply_frag(6, 58, lambda c, o: ICMPv6EchoReply(id=o[ICMPv6EchoRequest].id, seq=o[ICMPv6EchoRequest].seq)
                      / Raw(b"E" * size))


def synack(fam):
    return reply(fam, lambda c, o: TCP(sport=o[TCP].dport, dport=o[TCP].sport, flags="SA", seq=5000, ack=o[TCP].seq + 1))


def echo_reply(fam, id_delta=0):
    if fam == 4:
        return reply(4, lambda c, o: ICMP(type=0, id=o[ICMP].id + id_delta, seq=o[ICMP].seq) / Raw(bytes(o[ICMP].payload)))
    return reply(6, lambda c, o: ICMPv6EchoReply(id=o[ICMPv6EchoRequest].id + id_delta, seq=o[ICMPv6EchoRequest].seq)
                 / Raw(bytes(o[ICMPv6EchoRequest].payload)))


def error_about(fam, kind, src=None, quote_len=None):
    """An ICMP error quoting the captured outbound packet (related), sent by its peer or by src;
    quote_len: how much of it (default: the IP header and 8 bytes)."""
    def l4(c, o):
        quote = bytes(o)[:quote_len or (28 if fam == 4 else 48)]
        if fam == 4:
            if kind == "unreach":
                return ICMP(type=3, code=3) / Raw(quote)
            return ICMP(type=3, code=4, nexthopmtu=1280) / Raw(quote)  # fragmentation needed (PMTU)
        if kind == "unreach":
            return ICMPv6DestUnreach(code=4) / Raw(quote)
        return ICMPv6PacketTooBig(mtu=1280) / Raw(quote)
    return reply(fam, l4, src)


def dhcp_offer(xid_delta=0, chaddr=TARGET_MAC):
    def build(c):
        xid = c.out[BOOTP].xid + xid_delta
        return [Ether(src=SENDER_MAC, dst="ff:ff:ff:ff:ff:ff") / IP(src=SRC[4]["cli"], dst="255.255.255.255", id=c.mark)
                / UDP(sport=67, dport=68) / BOOTP(op=2, xid=xid, yiaddr="198.51.100.60", chaddr=bytes.fromhex(chaddr.replace(":", "")))
                / DHCP(options=[("message-type", "offer"), ("server_id", SRC[4]["cli"]), "end"])]
    return build


def dhcp6_advertise(trid_delta=0):
    def build(c):
        trid = c.out[DHCP6_Solicit].trid + trid_delta
        return [eth() / IPv6(src=SENDER_LL, dst=TARGET_LL, fl=c.mark) / UDP(sport=547, dport=546) / DHCP6_Advertise(trid=trid)]
    return build


# ---- the corpus -------------------------------------------------------------------------------------

def _items():
    items = []

    def add(name, family, build, **kw):
        items.append(Item(name, family, build, **kw))

    for fam in (4, 6):
        f = "v%d" % fam
        # TCP flag combinations to an open port (22), and a SYN to closed/allowed, closed/not allowed
        for flags in TCP_FLAGS:
            add("%s-tcp22-flags-%s" % (f, flags or "none"), fam, tcp(fam, 22, flags))
        add("%s-tcp23-syn-closed" % f, fam, tcp(fam, 23))
        add("%s-tcp25-syn" % f, fam, tcp(fam, 25))
        add("%s-udp53" % f, fam, udp(fam, 53))
        add("%s-udp54-closed" % f, fam, udp(fam, 54))
        add("%s-udp55" % f, fam, udp(fam, 55))
        add("%s-echo" % f, fam, echo(fam))
        # sources: blacklisted host, blacklisted prefix, whitelisted host inside it, whitelisted host,
        # port rules by source
        for src in ("bl", "net", "ok", "wl", "rule_ok", "rule_no"):
            add("%s-src-%s-tcp8080" % (f, src), fam, tcp(fam, 8080, src=src))
            add("%s-src-%s-tcp25" % (f, src), fam, tcp(fam, 25, src=src))
            add("%s-src-%s-udp53" % (f, src), fam, udp(fam, 53, src=src))
            add("%s-src-%s-echo" % (f, src), fam, echo(fam, src=src))
        # fragments
        for order in ("in", "reversed", "first", "later", "overlap"):
            add("%s-frag-udp53-%s" % (f, order), fam, frag_udp(fam, 53, order))
        add("%s-frag-udp55-in" % f, fam, frag_udp(fam, 55, "in"))
        add("%s-frag-udp53-bl" % f, fam, frag_udp(fam, 53, "in", src="bl"))
        add("%s-frag-echo" % f, fam, frag_echo(fam))
        add("%s-frag-tcp22-tiny-first" % f, fam, tiny_tcp_first(fam))
        add("%s-frag-tcp22-tiny-first-padded" % f, fam, tiny_tcp_first(fam, padded=True))
        add("%s-frag-tcp22-syn" % f, fam, frag_tcp_syn(fam, 22))
        add("%s-frag-tcp25-syn" % f, fam, frag_tcp_syn(fam, 25))
        # VLAN
        add("%s-vlan0-udp53" % f, fam, vlan(fam, 0, 53))
        add("%s-vlan0-udp55" % f, fam, vlan(fam, 0, 55))
        add("%s-vlan0-tcp25" % f, fam, vlan(fam, 0, 25, proto="tcp"))
        add("%s-vlan0-bl-udp53" % f, fam, vlan(fam, 0, 53, src="bl"))
        add("%s-qinq0-udp53" % f, fam, vlan(fam, 0, 53, outer=0))
        add("%s-qinq0-udp55" % f, fam, vlan(fam, 0, 55, outer=0))
        add("%s-vlan100-udp53" % f, fam, vlan(fam, 100, 53))
        add("%s-triple-tag-udp53" % f, fam, triple_tag(fam))
        add("%s-llc-snap-udp55" % f, fam, other_l2(fam, "snap"))
        add("%s-tpid9100-udp55" % f, fam, other_l2(fam, "9100"))
        # replies to flows the target opened
        add("%s-flow-udp-reply" % f, fam, udp_reply(fam), flow=("udp", "cli"))
        add("%s-flow-udp-reply-3000-frag" % f, fam, udp_reply_frag(fam), flow=("udp", "cli"))
        add("%s-flow-udp-other-port" % f, fam, udp_reply(fam, sport_delta=1), flow=("udp", "cli"))
        add("%s-flow-tcp-synack" % f, fam, synack(fam), flow=("tcp", "cli"))
        add("%s-flow-echo-reply" % f, fam, echo_reply(fam), flow=("ping", "cli"))
        add("%s-flow-echo-reply-3000-frag" % f, fam, echo_reply_frag(fam), flow=("ping", "cli"))
        add("%s-echo-reply-unsolicited" % f, fam, echo_reply(fam, id_delta=1), flow=("ping", "cli"))
        add("%s-flow-error-unreach" % f, fam, error_about(fam, "unreach"), flow=("udp", "cli"))
        add("%s-flow-error-pmtu-tcp" % f, fam, error_about(fam, "pmtu"), flow=("tcp", "cli"))
        # errors about a large datagram the target sent in fragments: they quote its first fragment
        add("%s-flow-frag-error-unreach" % f, fam, error_about(fam, "unreach", quote_len=548 if fam == 4 else 1232),
            flow=("udp-big", "cli"))
        add("%s-flow-error-from-bl-prefix" % f, fam, error_about(fam, "unreach", src="router"), flow=("udp", "cli"))
        add("%s-flow-error-from-bl-host" % f, fam, error_about(fam, "unreach", src="bl"), flow=("udp", "cli"))
        add("%s-flow-udp-reply-bl-host" % f, fam, udp_reply(fam), flow=("udp", "bl"))
        add("%s-flow-udp-reply-bl-prefix" % f, fam, udp_reply(fam), flow=("udp", "net"))
        # a block cuts established flows: opened under deny, answered once the peer is blacklisted
        add("%s-flow-cut-by-bl-host" % f, fam, udp_reply(fam), flow=("udp", "bl", "deny"), policies=("lists-deny",))
        add("%s-flow-cut-by-bl-prefix" % f, fam, udp_reply(fam), flow=("udp", "net", "deny"), policies=("lists-deny",))
        # unblocking in reverse: opened while whitelisted, answered once the whitelist entry is gone
        add("%s-flow-unwhitelisted" % f, fam, udp_reply(fam), flow=("udp", "ok", "lists-deny"), policies=("lists-deny-nowl",))
        # land and bogon sources
        add("%s-land" % f, fam, udp(fam, 53, src=TARGET[fam]["t"]))
        add("%s-bogon-loopback" % f, fam, udp(fam, 53, src="127.0.0.1" if fam == 4 else "::1"))
        # ::ffff:0:0/96 blacklisted: an IPv6 entry, IPv4 packets are not in it
        for name, build in (("udp53", udp(fam, 53)), ("tcp22", tcp(fam, 22)), ("echo", echo(fam))):
            add("%s-mapped-%s" % (f, name), fam, build, policies=("mapped",))
        # the ICMP limit: one bucket, 3 deep at 1/s; twice as many echo requests in a burst
        for n in range(3):
            add("%s-limit-echo-%d" % (f, n), fam, echo(fam), policies=("icmp-limit",))
    add("v6-flow-frag-error-pmtu", 6, error_about(6, "pmtu", quote_len=1232), flow=("udp-big", "cli"))
    add("v6-mapped-src-udp53", 6, udp(6, 53, src="::ffff:198.51.100.2"), policies=("mapped",))

    # every ICMP and ICMPv6 type
    for t in range(0, 44):
        if t != 8:
            add("v4-icmp-type-%d" % t, 4, icmp4_type(t))
    for t in ICMP6_TYPES:
        if t not in (128, 133, 134, 135, 136, 137):
            add("v6-icmp-type-%d" % t, 6, icmp6_type(t))
    # neighbour discovery: RFC 4861 hop limit 255, or not
    add("v6-nd-ns", 6, ns(), nd_src=True)
    add("v6-nd-ns-hl64", 6, ns(hlim=64), nd_src=True)
    add("v6-nd-ns-hl64-1200-bl", 6, ns(hlim=64, size=1200, src="bl"))
    add("v6-nd-ns-bl", 6, ns(src="bl"))
    add("v6-nd-na", 6, nd(lambda: ICMPv6ND_NA(tgt=SRC[6]["cli"], R=0, S=0), 255))
    add("v6-nd-na-hl64", 6, nd(lambda: ICMPv6ND_NA(tgt=SRC[6]["cli"], R=0, S=0), 64))
    add("v6-nd-rs", 6, nd(ICMPv6ND_RS, 255, dst="ff02::2"))
    add("v6-nd-ra", 6, nd(ICMPv6ND_RA, 255))
    add("v6-nd-ra-hl64", 6, nd(ICMPv6ND_RA, 64))
    add("v6-nd-ra-global-src", 6, nd(ICMPv6ND_RA, 255, src=SRC[6]["cli"]))
    add("v6-nd-redirect", 6, nd(lambda: ICMPv6ND_Redirect(tgt=SENDER_LL, dst=SRC[6]["wl"]), 255, dst=TARGET[6]["t"]))
    add("v6-nd-redirect-hl64", 6, nd(lambda: ICMPv6ND_Redirect(tgt=SENDER_LL, dst=SRC[6]["wl"]), 64, dst=TARGET[6]["t"]))
    for t in (130, 131, 132, 143):
        add("v6-mld-%d" % t, 6, mld(t))
        add("v6-mld-%d-global-src" % t, 6, mld(t, src=SRC[6]["cli"]))
    # IPv6 extension header chains (netxfw skips up to 4)
    add("v6-ext-hbh-udp53", 6, ext6([HBH], 17, udp53))
    add("v6-ext-do-rt0-udp53", 6, ext6([DO, RT0], 17, udp53))
    add("v6-ext-hbh-do-rt0-frag-udp53", 6, ext6([HBH, DO, RT0, ATOMIC], 17, udp53))
    add("v6-ext-five-udp53", 6, ext6([HBH, DO, RT0, DO, DO], 17, udp53))
    add("v6-ext-five-udp55", 6, ext6([HBH, DO, RT0, DO, DO], 17, lambda c: UDP(sport=c.port, dport=55) / Raw(b"x" * 8)))
    add("v6-ext-do-unknown-253", 6, ext6([DO], 253, lambda c: Raw(b"\0" * 8)))
    add("v6-ext-ah-udp53", 6, ext6([AH6], 17, udp53))
    add("v6-ext-hbh-tcp25", 6, ext6([HBH], 6, lambda c: TCP(sport=c.port, dport=25, flags="S")))
    # DHCP: the answer a DHCP client reads through AF_PACKET (observed there, before netfilter)
    add("v4-dhcp-offer", 4, dhcp_offer(), flow=("dhcp", None), observe="packet")
    add("v4-dhcp-offer-wrong-xid", 4, dhcp_offer(xid_delta=1), flow=("dhcp", None), observe="packet")
    add("v4-dhcp-offer-other-chaddr", 4, dhcp_offer(chaddr="02:00:5e:00:53:99"), flow=("dhcp", None), observe="packet")
    add("v6-dhcp6-advertise", 6, dhcp6_advertise(), flow=("dhcp6", None), observe="packet")
    add("v6-dhcp6-advertise-wrong-trid", 6, dhcp6_advertise(trid_delta=1), flow=("dhcp6", None), observe="packet")
    return items


ITEMS = _items()
NAMES = frozenset(item.name for item in ITEMS)
assert len(NAMES) == len(ITEMS), "corpus item names must be unique"
CASES = [(policy, item) for item in ITEMS for policy in item.policies]
