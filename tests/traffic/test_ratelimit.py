# SPDX-License-Identifier: GPL-2.0-or-later
"""Rate limiting with real packets: a bounded UDP flood from nxt-att above its source's rate is
dropped and bans nobody (packets prove nothing of their source); SYNs spoofed from nxt-att in the
client's name do not get the client banned nor cut its connection; connections completed faster
than the rate (proof) ban, the ban spares the connections the address holds and expires after its
TTL (and is swept); a flood on a UDP flow the peer opened is limited, the replies of a flow this
host opened never are. Every loop is bounded in count and time; nothing asserts on a duration."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import socket
import time

import pytest
from scapy.all import IP, TCP, Ether, IPv6

from netns import ADDR, NS_ATT, NS_CLI, NS_FW, Delta, inside, run_in, sock
from test_traffic import FAMILIES, hard_close, tcp_listener, tcp_open

FLOOD_PACKETS = 300
FLOOD_SECONDS = 5.0
BAN_TTL = 2


def bans(fw):
    return dict((b["address"], b["expires_in"]) for b in fw.call("info")["bans"])


def spoof_syns(family, src, dst, dports, count):
    """`count` TCP SYNs from nxt-att with the source address `src` (someone else's), straight onto the
    link to nxt-fw (AF_PACKET: no route or source check of the attacker's stack in the way)."""
    fw_mac = json.loads(run_in(NS_FW, ["ip", "-j", "link", "show", "fw0"], check=True).stdout)[0]["address"]
    att_mac = json.loads(run_in(NS_ATT, ["ip", "-j", "link", "show", "att0"], check=True).stdout)[0]["address"]
    with inside(NS_ATT):
        raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    try:
        raw.bind(("att0", 0))
        for n in range(count):
            l3 = IP(src=src, dst=dst) if family == 4 else IPv6(src=src, dst=dst)
            raw.send(bytes(Ether(src=att_mac, dst=fw_mac) / l3 / TCP(sport=50000 + n, dport=dports[n % len(dports)],
                                                                     flags="S", seq=1000 + n)))
    finally:
        raw.close()


@pytest.mark.parametrize("family", FAMILIES)
def test_udp_flood_is_limited_and_bans_nobody(fw, family):
    a = ADDR[family]
    fw.call("apply_rules", kind="port", entries=[
        {"proto": "tcp", "port": 9200, "source": a["cli_net"]},
        {"proto": "udp", "port": 9300, "source": a["att_net"]}])
    # the client's CIDR is limited too (SYNs only): its established connection is not
    fw.call("apply_rules", kind="ratelimit", entries=[
        {"source": a["att_net"], "rate": 5, "burst": 5, "ban_ttl": BAN_TTL},
        {"source": a["cli_net"], "rate": 2, "burst": 4, "syn_only": True}])
    flood = sock(NS_ATT, family, socket.SOCK_DGRAM)
    receiver = sock("nxt-fw", family, socket.SOCK_DGRAM, timeout=0.5)
    try:
        receiver.bind((a["fw_att"], 9300))
        flood.bind((a["att"], 0))
        with tcp_listener(9200, family) as listener:
            pair = tcp_open(NS_CLI, family, a["fw"], 9200, listener, timeout=2)
            assert pair is not None
            client, server = pair
            try:
                exchanged = 0
                deadline = time.monotonic() + FLOOD_SECONDS
                with Delta(fw) as d:
                    for n in range(FLOOD_PACKETS):
                        if time.monotonic() > deadline:
                            break
                        flood.sendto(b"x", (a["fw_att"], 9300))
                        if n % 30 == 0:   # the legitimate client, in the middle of the flood
                            client.sendall(b"ping")
                            assert server.recv(16) == b"ping"
                            server.sendall(b"pong")
                            assert client.recv(16) == b"pong"
                            exchanged += 1
                assert exchanged >= 2
                assert d["drop_ratelimit"] >= 1 and d["auto_ban"] == 0, d     # limited, never banned
                assert d["pass_rule"] <= 5 + 1, d                   # burst (+ one refilled token at most)
                assert bans(fw) == {}
                assert fw.call("info")["ratelimit"]["sources_tracked"] >= 1
            finally:
                hard_close(client)
                hard_close(server)
    finally:
        for s in (flood, receiver):
            s.close()
        fw.call("apply_rules", kind="ratelimit", entries=[], exclusive=True)


@pytest.mark.parametrize("family", FAMILIES)
def test_spoofed_syns_in_the_clients_name_do_not_ban_it(fw, family):
    """The attacker never sees the replies: its SYNs in the client's name, over the client's rate, are
    dropped; the client is not banned and its real connection goes on."""
    a = ADDR[family]
    fw.call("apply_rules", kind="port", entries=[{"proto": "tcp", "port": 9200, "source": a["cli_net"]}])
    fw.call("apply_rules", kind="ratelimit", entries=[
        {"source": a["cli_net"], "rate": 1, "burst": 2, "syn_only": True, "ban_ttl": 60}])
    try:
        with tcp_listener(9200, family) as listener:
            pair = tcp_open(NS_CLI, family, a["fw"], 9200, listener, timeout=2)
            assert pair is not None
            client, server = pair
            try:
                with Delta(fw) as d:
                    spoof_syns(family, a["cli"], a["fw"], (9200, 9209), 40)  # an open and a closed port
                    for dummy in range(20):                     # the last SYNs reach XDP (bounded poll)
                        if d.agent.counters()["drop_ratelimit"] - d.before["drop_ratelimit"] >= 30:
                            break
                        time.sleep(0.05)
                assert d["drop_ratelimit"] >= 30 and d["auto_ban"] == 0, d
                assert bans(fw) == {}
                client.sendall(b"still")                    # and the client never noticed
                assert server.recv(16) == b"still"
                server.sendall(b"here")
                assert client.recv(16) == b"here"
            finally:
                hard_close(client)
                hard_close(server)
    finally:
        fw.call("apply_rules", kind="ratelimit", entries=[], exclusive=True)


@pytest.mark.parametrize("family", FAMILIES)
def test_connections_beyond_the_rate_ban_and_the_ban_spares_held_ones(fw, family):
    """Completed handshakes are proof: the third connection within the burst of two bans the address;
    its open connections go on, a new one fails, and after the TTL it connects again. (The banned
    address is att_ok: no earlier test of this module used its bucket.)"""
    a = ADDR[family]
    banned_addr, neighbour_addr = a["att_ok"], a["att"]
    fw.call("apply_rules", kind="port", entries=[{"proto": "tcp", "port": 9201, "source": a["att_net"]}])
    fw.call("apply_rules", kind="ratelimit", entries=[
        {"source": a["att_net"], "rate": 1, "burst": 2, "syn_only": True, "ban_ttl": BAN_TTL}])
    pairs = []
    try:
        with tcp_listener(9201, family) as listener:
            with Delta(fw) as d:
                for dummy in range(3):
                    pair = tcp_open(NS_ATT, family, a["fw_att"], 9201, listener, src=banned_addr, timeout=2)
                    assert pair is not None
                    pairs.append(pair)
            assert d["auto_ban"] == 1 and d["drop_ratelimit"] == 0, d
            banned = bans(fw)
            assert banned_addr in banned and 0 < banned[banned_addr] <= BAN_TTL, banned
            with Delta(fw) as d:
                for client, server in pairs:                # the connections it holds go on
                    client.sendall(b"held")
                    assert server.recv(16) == b"held"
                    server.sendall(b"ok")
                    assert client.recv(16) == b"ok"
                assert tcp_open(NS_ATT, family, a["fw_att"], 9201, listener, src=banned_addr, timeout=0.5) is None
            assert d["drop_blacklist"] >= 1, d
            neighbour = tcp_open(NS_ATT, family, a["fw_att"], 9201, listener, src=neighbour_addr, timeout=2)
            assert neighbour is not None                    # its neighbour in the CIDR is not banned
            pairs.append(neighbour)
            for dummy in range(50):                             # the ban expires after its TTL (bounded poll)
                if banned_addr not in bans(fw):
                    break
                time.sleep(0.1)
            assert banned_addr not in bans(fw)
            again = tcp_open(NS_ATT, family, a["fw_att"], 9201, listener, src=banned_addr, timeout=2)
            assert again is not None
            pairs.append(again)
            swept = fw.call("sweep")
            assert swept["map_entries_expired"] >= 1, swept  # the expired ban left the map
    finally:
        for pair in pairs:
            for s in pair:
                hard_close(s)
        fw.call("apply_rules", kind="ratelimit", entries=[], exclusive=True)


@pytest.mark.parametrize("family", FAMILIES)
def test_flood_on_a_udp_flow_the_peer_opened_is_limited(fw, family):
    """The attacker's datagram is answered once: the flow is the attacker's, and its flood on it stays
    under the rate limit. A flow this host opened to the same address is never limited."""
    a = ADDR[family]
    rate = 10
    fw.call("apply_rules", kind="port", entries=[{"proto": "udp", "port": 9300, "source": a["att_net"]}])
    fw.call("apply_rules", kind="ratelimit", entries=[{"source": a["att_net"], "rate": rate, "burst": rate}])
    peer = sock(NS_ATT, family, socket.SOCK_DGRAM, timeout=0.5)
    server = sock(NS_FW, family, socket.SOCK_DGRAM, timeout=0.5)
    mine = sock(NS_FW, family, socket.SOCK_DGRAM, timeout=0.5)
    try:
        peer.bind((a["att"], 9400))
        server.bind((a["fw_att"], 9300))
        peer.sendto(b"hello", (a["fw_att"], 9300))
        dummy, where = server.recvfrom(16)
        server.sendto(b"welcome", where)                    # answered once: now a tracked flow
        assert peer.recvfrom(16)[0] == b"welcome"
        start = time.monotonic()
        with Delta(fw) as d:
            sent = 0
            while sent < 200 and time.monotonic() - start < FLOOD_SECONDS:
                peer.sendto(b"x", (a["fw_att"], 9300))
                sent += 1
            received = 0
            while True:
                try:
                    server.recvfrom(16)
                    received += 1
                except (socket.timeout, TimeoutError):
                    break
        allowed = rate + rate * (time.monotonic() - start) + 1
        assert received <= allowed and d["drop_ratelimit"] >= sent - allowed, (sent, received, d)
        assert d["pass_conntrack"] >= 1, d                  # they took the conntrack path, and were limited there
        # this host's own flow to the attacker's socket: every answer passes
        mine.bind((a["fw_att"], 0))
        with Delta(fw) as d:
            mine.sendto(b"query", (a["att"], 9400))
            dummy, back = peer.recvfrom(16)
            for dummy in range(3 * rate):
                peer.sendto(b"answer", back)
            got = 0
            for dummy in range(3 * rate):
                try:
                    mine.recvfrom(16)
                    got += 1
                except (socket.timeout, TimeoutError):
                    break
        assert got == 3 * rate and d["drop_ratelimit"] == 0, (got, d)
    finally:
        for s in (peer, server, mine):
            s.close()
        fw.call("apply_rules", kind="ratelimit", entries=[], exclusive=True)


def test_drop_events_are_readable_and_bounded_under_a_flood(fw):
    """SETTINGS leave drop sampling at its default (10 events/s, burst 10): a bounded UDP flood
    to a closed port (policy deny) leaves at most burst + 10/s x elapsed events, all readable."""
    a = ADDR[4]
    assert fw.call("info")["ratelimit"]["rules"] == []    # removing rate-limit rules empties the maps
    time.sleep(1.1)                                      # the sampling bucket refills (10/s) after earlier drops
    fw.call("drops", limit=2000)                         # drain what earlier tests left
    flood = sock(NS_ATT, 4, socket.SOCK_DGRAM)
    try:
        flood.bind((a["att"], 0))
        start = time.monotonic()
        with Delta(fw) as d:
            for dummy in range(FLOOD_PACKETS):
                if time.monotonic() - start > FLOOD_SECONDS:
                    break
                flood.sendto(b"x", (a["fw_att"], 9301))
            for dummy in range(20):                          # the last packets reach XDP (bounded poll)
                if d.agent.counters()["drop_policy"] - d.before["drop_policy"] >= FLOOD_PACKETS:
                    break
                time.sleep(0.05)
        elapsed = time.monotonic() - start
        events = fw.call("drops", limit=2000)["events"]
        assert d["drop_policy"] >= 100, d
        ours = [e for e in events if e["src"] == a["att"] and e["dport"] == 9301]
        assert ours and all(e["reason"] == "drop_policy" and e["proto"] == 17 and e["dst"] == a["fw_att"]
                            for e in ours), events[:5]
        assert len(events) <= 10 + 10 * (int(elapsed) + 1), (len(events), elapsed)
    finally:
        flood.close()
