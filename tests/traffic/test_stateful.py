# SPDX-License-Identifier: GPL-2.0-or-later
"""Stateful conntrack with real packets: TCP state transitions and timeouts, inbound service
flows on the fast path, UDP, ICMP echo, related ICMP errors (PMTU) under default deny, GC.

The session program runs policy deny. Tests that shorten a timeout restore the session
settings in a finally. Waits poll the engine's view of a flow (bounded in count and time);
nothing asserts on a duration.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import socket
import time

import pytest
from scapy.all import ICMP, IP, TCP, ICMPv6PacketTooBig, IPv6

from netns import ADDR, NS_ATT, NS_CLI, NS_FW, SETTINGS, Delta, inside, sock
from test_traffic import FAMILIES, hard_close, ping, tcp_listener, tcp_open


def flows(fw, remote, local_port=None, remote_port=None, proto=None):
    return [f for f in fw.call("flows") if f["remote"] == remote
            and (proto is None or f["proto"] == proto)
            and (local_port is None or f["local_port"] == local_port)
            and (remote_port is None or f["remote_port"] == remote_port)]


def wait_flow(fw, pred, what, remote, polls=50, **ports):
    """Poll (at most polls x 0.1 s) until one flow matches pred; return it."""
    seen = None
    for dummy in range(polls):
        seen = flows(fw, remote, **ports)
        if len(seen) == 1 and pred(seen[0]):
            return seen[0]
        time.sleep(0.1)
    raise AssertionError("no flow became %s: %r" % (what, seen))


@contextlib.contextmanager
def settings(fw, **changes):
    fw.call("apply_program", settings=dict(SETTINGS, **changes))
    try:
        yield
    finally:
        fw.call("apply_program", settings=SETTINGS)


@contextlib.contextmanager
def outbound_tcp(fw, family, port):
    """The fw host connected to a listener in nxt-cli: (fw-side socket, cli-side socket, fw port)."""
    a = ADDR[family]
    with tcp_listener(port, family, ns=NS_CLI) as listener:
        pair = tcp_open(NS_FW, family, a["cli"], port, listener, timeout=2)
        assert pair is not None
        try:
            yield pair[0], pair[1], pair[0].getsockname()[1]
        finally:
            for s in pair:
                hard_close(s)


# ------------------------------------------------------------------ TCP states
@pytest.mark.parametrize("family", FAMILIES)
def test_tcp_outbound_states_fin_wait_expiry(fw, family):
    a = ADDR[family]
    with outbound_tcp(fw, family, 7101) as (mine, theirs, lport):
        ports = dict(local_port=lport, remote_port=7101)
        flow = wait_flow(fw, lambda f: f["state"] == "established", "established", a["cli"], **ports)
        assert not flow["inbound"]
        mine.shutdown(socket.SHUT_WR)                       # our FIN
        wait_flow(fw, lambda f: f["state"] == "fin_wait", "fin_wait", a["cli"], **ports)
        assert theirs.recv(16) == b""
        with Delta(fw) as d:
            theirs.shutdown(socket.SHUT_WR)                 # their FIN: passes, both sides closed
            assert mine.recv(16) == b""
        assert d["pass_conntrack"] >= 1 and d["drop_policy"] == 0, d
        assert flows(fw, a["cli"], **ports)[0]["state"] == "fin_wait"  # the peer's FIN moves nothing
        with settings(fw, conntrack_timeouts={"tcp_fin": 1}):
            wait_flow(fw, lambda f: not f["live"], "expired (tcp_fin)", a["cli"], **ports)
            removed = fw.call("gc_conntrack")
            assert removed["removed"] >= 1, removed
            assert flows(fw, a["cli"], **ports) == []


@pytest.mark.parametrize("family", FAMILIES)
def test_tcp_syn_sent_then_reset_closes(fw, family):
    a = ADDR[family]
    with outbound_tcp(fw, family, 7102) as (mine, _theirs, lport):
        ports = dict(local_port=lport, remote_port=7102)
        wait_flow(fw, lambda f: f["state"] == "established", "established", a["cli"], **ports)
        hard_close(mine)                                    # our RST
        wait_flow(fw, lambda f: f["state"] == "close", "close", a["cli"], **ports)


def send_seq(s):
    """The next sequence number the connected TCP socket s sends (TCP_REPAIR's view of its send queue,
    left without the window probe)."""
    tcp_repair, tcp_repair_queue, tcp_queue_seq, tcp_send_queue, tcp_repair_off_no_wp = 19, 20, 21, 2, -1
    s.setsockopt(socket.IPPROTO_TCP, tcp_repair, 1)
    try:
        s.setsockopt(socket.IPPROTO_TCP, tcp_repair_queue, tcp_send_queue)
        return s.getsockopt(socket.IPPROTO_TCP, tcp_queue_seq) & 0xFFFFFFFF
    finally:
        s.setsockopt(socket.IPPROTO_TCP, tcp_repair, tcp_repair_off_no_wp)


def forge_tcp(family, src, dst, sport, dport, flags, seq, ns=NS_CLI):
    """A TCP segment src:sport -> dst:dport from a raw socket in ns (the kernel adds the IP header)."""
    l3 = IP(src=src, dst=dst) if family == 4 else IPv6(src=src, dst=dst)
    segment = bytes(l3 / TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=1))[20 if family == 4 else 40:]
    with inside(ns):
        raw = socket.socket(socket.AF_INET if family == 4 else socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_TCP)
    try:
        raw.bind((src, 0))
        raw.sendto(segment, (dst, 0))
    finally:
        raw.close()


@pytest.mark.parametrize("flags", ["R", "FA"])
@pytest.mark.parametrize("family", FAMILIES)
def test_forged_close_does_not_end_the_connection(fw, family, flags):
    """A blind attacker forges the peer's RST (or FIN) with the right tuple and a sequence number half the
    sequence space off: the fw host's kernel ignores it, and so must the flow. Once the flow has been
    idle longer than tcp_fin, the peer speaks and still gets through."""
    a = ADDR[family]
    with outbound_tcp(fw, family, 7104) as (mine, theirs, lport):
        ports = dict(local_port=lport, remote_port=7104)
        wait_flow(fw, lambda f: f["state"] == "established", "established", a["cli"], **ports)
        time.sleep(0.3)  # delayed ACKs settle
        seq = (send_seq(theirs) + 2**31) % 2**32
        with settings(fw, conntrack_timeouts={"tcp_fin": 1}):
            with Delta(fw) as d:
                forge_tcp(family, a["cli"], a["fw"], 7104, lport, flags, seq)
                wait_counter(d, "pass_conntrack")
            assert d["drop_policy"] == 0, d
            wait_flow(fw, lambda f: f["age"] > 1.5, "idle past tcp_fin", a["cli"], **ports)
            idle = flows(fw, a["cli"], **ports)[0]
            with Delta(fw) as d:
                theirs.sendall(b"still")
                mine.settimeout(5.0)
                assert mine.recv(16) == b"still"
            assert d["drop_policy"] == 0, d
            assert idle["state"] == "established" and idle["live"], idle
        mine.sendall(b"here")
        assert theirs.recv(16) == b"here"


@pytest.mark.parametrize("family", FAMILIES)
def test_the_peers_reset_closes_the_flow(fw, family):
    """A real RST from the peer (an abortive close) carries the sequence number the fw host acknowledged
    last, the one RST its kernel accepts at once: the flow closes with the fw host's socket, and the
    tuple is closed to the peer once tcp_fin has passed."""
    a = ADDR[family]
    with outbound_tcp(fw, family, 7105) as (mine, theirs, lport):
        ports = dict(local_port=lport, remote_port=7105)
        wait_flow(fw, lambda f: f["state"] == "established", "established", a["cli"], **ports)
        mine.sendall(b"hello")                              # the peer's ACK moves no number of its own
        assert theirs.recv(16) == b"hello"
        with settings(fw, conntrack_timeouts={"tcp_fin": 1}):
            hard_close(theirs)                              # the peer's RST
            mine.settimeout(5.0)
            with pytest.raises(ConnectionResetError):
                mine.recv(16)
            wait_flow(fw, lambda f: f["state"] == "close", "close", a["cli"], **ports)
            wait_flow(fw, lambda f: not f["live"], "expired (tcp_fin)", a["cli"], **ports)
            with Delta(fw) as d:
                forge_tcp(family, a["cli"], a["fw"], 7105, lport, "PA", 1)
                wait_counter(d, "drop_policy")
            assert d["pass_conntrack"] == 0, d


@pytest.mark.parametrize("family", FAMILIES)
def test_tcp_established_timeout_and_revival(fw, family):
    """An idle flow past tcp_established no longer passes; the host sending again revives it."""
    a = ADDR[family]
    with outbound_tcp(fw, family, 7103) as (mine, theirs, lport):
        ports = dict(local_port=lport, remote_port=7103)
        time.sleep(0.3)  # delayed ACKs settle
        with settings(fw, conntrack_timeout=1):
            wait_flow(fw, lambda f: not f["live"], "expired (tcp_established)", a["cli"], **ports)
            with Delta(fw) as d:
                theirs.sendall(b"late")
                mine.settimeout(1.0)
                with pytest.raises((socket.timeout, TimeoutError)):
                    mine.recv(16)
            assert d["drop_policy"] >= 1 and d["pass_conntrack"] == 0, d
        mine.settimeout(5.0)
        mine.sendall(b"again")                              # egress refreshes the entry
        assert theirs.recv(16) == b"again"
        assert mine.recv(16) == b"late"                     # their retransmission passes now


@pytest.mark.parametrize("family", FAMILIES)
def test_inbound_service_connection_takes_the_fast_path(fw, family):
    a = ADDR[family]
    fw.call("apply_rules", kind="port", entries=[{"proto": "tcp", "port": 9100, "source": a["cli_net"]}])
    with tcp_listener(9100, family) as listener:
        pair = tcp_open(NS_CLI, family, a["fw"], 9100, listener, timeout=2)
        assert pair is not None
        client, server = pair
        try:
            flow = wait_flow(fw, lambda f: f["state"] == "established", "established", a["cli"], local_port=9100)
            assert flow["inbound"]
            with Delta(fw) as d:
                for dummy in range(3):
                    client.sendall(b"ping")
                    assert server.recv(16) == b"ping"
                    server.sendall(b"pong")
                    assert client.recv(16) == b"pong"
            assert d["pass_conntrack"] >= 3 and d["pass_rule"] == 0, d
        finally:
            hard_close(client)
            hard_close(server)


# ------------------------------------------------------------------ UDP, ICMP echo
@pytest.mark.parametrize("family", FAMILIES)
def test_udp_new_stream_and_timeout(fw, family):
    a = ADDR[family]
    peer = sock(NS_CLI, family, socket.SOCK_DGRAM)
    own = sock(NS_FW, family, socket.SOCK_DGRAM)
    try:
        peer.bind((a["cli"], 7110))
        own.sendto(b"query", (a["cli"], 7110))
        data, source = peer.recvfrom(64)
        lport = source[1]
        wait_flow(fw, lambda f: f["state"] == "udp", "udp", a["cli"], local_port=lport, remote_port=7110)
        peer.sendto(b"answer", source)
        assert own.recvfrom(64)[0] == b"answer"
        wait_flow(fw, lambda f: f["state"] == "udp_stream", "udp_stream", a["cli"], local_port=lport)
        with settings(fw, conntrack_timeouts={"udp_stream": 1}):
            wait_flow(fw, lambda f: not f["live"], "expired (udp_stream)", a["cli"], local_port=lport)
            with Delta(fw) as d:
                peer.sendto(b"late", source)
                with pytest.raises((socket.timeout, TimeoutError)):
                    own.recvfrom(64)
            assert d["drop_policy"] == 1 and d["pass_conntrack"] == 0, d
    finally:
        peer.close()
        own.close()


@pytest.mark.parametrize("family", FAMILIES)
def test_icmp_echo_from_the_host_gets_its_replies(fw, family):
    with Delta(fw) as d:
        assert ping(NS_FW, ADDR[family]["cli"], 3, family=family) == 3
    assert d["pass_conntrack"] >= 3 and d["pass_icmp"] == 0 and d["drop_policy"] == 0, d
    wait_flow(fw, lambda f: f["state"] == "icmp_echo", "icmp_echo", ADDR[family]["cli"],
              proto="icmp" if family == 4 else "icmpv6")


# ------------------------------------------------------------------ related ICMP errors
def send_pmtu_error(family, quoted_src, quoted_dst, sport, dport, ns=NS_CLI, src=None, dst=None):
    """From ns (nxt-cli, from its address or `src`) to `dst` (default: fw), an ICMP 'fragmentation
    needed' / ICMPv6 'packet too big' quoting a TCP segment quoted_src:sport -> quoted_dst:dport (the
    kernel adds the outer IP header)."""
    if family == 4:
        inner = bytes(IP(src=quoted_src, dst=quoted_dst) / TCP(sport=sport, dport=dport, flags="A"))
        payload = bytes(ICMP(type=3, code=4, nexthopmtu=1280) / inner)
        proto = socket.IPPROTO_ICMP
    else:
        inner = bytes(IPv6(src=quoted_src, dst=quoted_dst) / TCP(sport=sport, dport=dport, flags="A"))
        payload = bytes(ICMPv6PacketTooBig(mtu=1280, cksum=0) / inner)  # the kernel fills the checksum
        proto = socket.IPPROTO_ICMPV6
    with inside(ns):
        raw = socket.socket(socket.AF_INET if family == 4 else socket.AF_INET6, socket.SOCK_RAW, proto)
    try:
        if src:
            raw.bind((src, 0))
        raw.sendto(payload, (dst or ADDR[family]["fw"], 0))
    finally:
        raw.close()


@pytest.mark.parametrize("family", FAMILIES)
def test_frag_needed_for_tracked_flow_passes_unrelated_dropped(fw, family):
    """A related error passes (pass_related) with the ICMP bucket off and on; an error that relates
    to no tracked flow meets the default deny either way (the bucket holds echo requests only)."""
    a = ADDR[family]
    with outbound_tcp(fw, family, 7120) as (_mine, _theirs, lport):
        time.sleep(0.3)  # delayed ACKs settle
        with settings(fw, icmp_rate=0):
            with Delta(fw) as d:
                send_pmtu_error(family, a["fw"], a["cli"], lport, 7120)
                wait_counter(d, "pass_related")
            assert d["pass_related"] == 1 and d["drop_policy"] == 0 and d["pass_icmp"] == 0, d
            with Delta(fw) as d:
                send_pmtu_error(family, a["fw"], a["cli"], lport + 1, 7120)   # no such flow
                wait_counter(d, "drop_policy")
            assert d["drop_policy"] == 1 and d["pass_related"] == 0, d
        with Delta(fw) as d:
            send_pmtu_error(family, a["fw"], a["cli"], lport, 7120)           # bucket on
            send_pmtu_error(family, a["fw"], a["cli"], lport + 1, 7120)
            wait_counter(d, "drop_policy")
        assert d["pass_related"] == 1 and d["drop_policy"] == 1 and d["pass_icmp"] == 0, d


@pytest.mark.parametrize("family", FAMILIES)
def test_related_error_from_a_blacklisted_prefix_is_dropped(fw, family):
    """A blacklist wins over "related": an error quoting a flow of this host passes from a router,
    and is dropped once a blacklisted prefix covers the router (the flow's own peer is not listed)."""
    a = ADDR[family]
    router_net = {4: "203.0.113.72/29", 6: "2001:db8:2::70/124"}[family]   # att_ok, not att
    with tcp_listener(7122, family, ns=NS_ATT) as listener:
        pair = tcp_open(NS_FW, family, a["att"], 7122, listener, timeout=2)
        assert pair is not None
        mine, theirs = pair
        lport = mine.getsockname()[1]
        try:
            time.sleep(0.3)  # delayed ACKs settle
            with settings(fw, icmp_rate=0):
                def error():
                    send_pmtu_error(family, a["fw_att"], a["att"], lport, 7122, ns=NS_ATT, src=a["att_ok"],
                                    dst=a["fw_att"])
                with Delta(fw) as d:
                    error()
                    wait_counter(d, "pass_related")
                assert d["pass_related"] == 1 and d["drop_blacklist"] == 0, d
                fw.call("apply_rules", kind="blacklist", entries=[router_net])
                with Delta(fw) as d:
                    error()
                    wait_counter(d, "drop_blacklist")
                assert d["drop_blacklist"] == 1 and d["pass_related"] == 0, d
                mine.sendall(b"still")                       # the flow with att is not the router's
                assert theirs.recv(16) == b"still"
                theirs.sendall(b"here")
                assert mine.recv(16) == b"here"
        finally:
            hard_close(mine)
            hard_close(theirs)


def wait_counter(d, reason, polls=40):
    """Poll (at most polls x 0.05 s) until counter reason grew inside a Delta block."""
    for dummy in range(polls):
        if d.agent.counters()[reason] > d.before[reason]:
            return
        time.sleep(0.05)


def test_info_reports_conntrack_by_state(fw):
    a = ADDR[4]
    with outbound_tcp(fw, 4, 7130):
        wait_flow(fw, lambda f: f["state"] == "established", "established", a["cli"], remote_port=7130)
        info = fw.call("info")["conntrack"]
        assert info["by_state"].get("established", 0) >= 1, info
        assert info["capacity"] > 0 and 0 < info["usage"] <= 1, info
