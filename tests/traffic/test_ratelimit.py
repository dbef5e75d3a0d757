# SPDX-License-Identifier: GPL-2.0-or-later
"""Rate limiting with real packets: a bounded flood from nxt-att above its source's rate is
dropped and auto-banned, the ban expires after its TTL (and is swept), and a legitimate client's
established connection keeps working throughout. Every loop is bounded in count and time;
nothing asserts on a duration."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import socket
import time

import pytest

from netns import ADDR, NS_ATT, NS_CLI, Delta, sock
from test_traffic import FAMILIES, hard_close, tcp_listener, tcp_open

FLOOD_PACKETS = 300
FLOOD_SECONDS = 5.0
BAN_TTL = 2


def bans(fw):
    return dict((b["address"], b["expires_in"]) for b in fw.call("info")["bans"])


@pytest.mark.parametrize("family", FAMILIES)
def test_flood_is_banned_ban_expires_client_keeps_working(fw, family):
    a = ADDR[family]
    fw.call("apply_rules", kind="port", entries=[
        {"proto": "tcp", "port": 9200, "source": a["cli_net"]},
        {"proto": "udp", "port": 9300, "source": a["att_net"]}])
    # the client's CIDR is limited too: its established flow is tracked, so never limited
    fw.call("apply_rules", kind="ratelimit", entries=[
        {"source": a["att_net"], "rate": 5, "burst": 5, "ban_ttl": BAN_TTL},
        {"source": a["cli_net"], "rate": 2, "burst": 4, "syn_only": True}])
    sink = sock(NS_ATT, family, socket.SOCK_DGRAM)
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
                assert d["drop_ratelimit"] >= 1 and d["auto_ban"] >= 1, d
                assert d["drop_blacklist"] >= 1, d                  # the rest of the flood hit the ban
                assert d["pass_rule"] <= 5 + 1, d                   # burst (+ one refilled token at most)
                banned = bans(fw)
                assert a["att"] in banned and 0 < banned[a["att"]] <= BAN_TTL, banned
                assert a["att_ok"] not in banned and a["cli"] not in banned, banned
                assert fw.call("info")["ratelimit"]["sources_tracked"] >= 1
                # the ban expires after its TTL (poll, bounded: 50 x 0.1 s)
                for dummy in range(50):
                    if a["att"] not in bans(fw):
                        break
                    time.sleep(0.1)
                assert a["att"] not in bans(fw)
                for dummy in range(20):  # drain what passed during the flood (at most burst + 1 datagrams)
                    try:
                        receiver.recvfrom(16)
                    except (socket.timeout, TimeoutError):
                        break
                flood.sendto(b"back", (a["fw_att"], 9300))
                assert receiver.recvfrom(16)[0] == b"back"          # passes again
                swept = fw.call("sweep")
                assert swept["map_entries_expired"] >= 1, swept     # the expired ban left the map
                client.sendall(b"still")                            # and the client never noticed
                assert server.recv(16) == b"still"
            finally:
                hard_close(client)
                hard_close(server)
    finally:
        for s in (sink, flood, receiver):
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
