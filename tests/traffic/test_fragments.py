# SPDX-License-Identifier: GPL-2.0-or-later
"""Fragmented UDP under default deny, with real stacks: the sender's kernel cuts a 3000-byte
datagram into fragments (veth MTU 1500), the fw host's kernel reassembles what XDP let through
(docs/internals.md, "Fragments"). The session program runs policy deny, conntrack on."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import socket

import pytest

from netns import ADDR, NS_CLI, NS_FW, Delta, sock
from test_stateful import settings
from test_traffic import FAMILIES

SIZE = 3000  # three fragments at MTU 1500, IPv4 and IPv6


def payload(tag):
    return (tag * SIZE)[:SIZE]


def fw_socket(family, port):
    s = sock(NS_FW, family, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0" if family == 4 else "::", port))
    return s


@pytest.mark.parametrize("family", FAMILIES)
def test_fragmented_datagram_to_an_open_port_arrives_whole(fw, family):
    a = ADDR[family]
    fw.call("apply_rules", kind="port", entries=[{"proto": "udp", "port": 7300, "source": a["cli_net"]}])
    server, client = fw_socket(family, 7300), sock(NS_CLI, family, socket.SOCK_DGRAM)
    try:
        with Delta(fw) as d:
            client.sendto(payload(b"open"), (a["fw"], 7300))
            assert server.recvfrom(SIZE + 1)[0] == payload(b"open")
        assert d["pass_rule"] == 1 and d["pass_fragment"] == 2 and d["drop_policy"] == 0, d
        # the same datagram to a port that is not open: every fragment meets the policy
        closed = fw_socket(family, 7301)
        try:
            with Delta(fw) as d:
                client.sendto(payload(b"shut"), (a["fw"], 7301))
                with pytest.raises((socket.timeout, TimeoutError)):
                    closed.recvfrom(SIZE + 1)
            assert d["drop_policy"] == 3 and d["pass_fragment"] == 0, d
        finally:
            closed.close()
    finally:
        server.close()
        client.close()


@pytest.mark.parametrize("family", FAMILIES)
def test_large_reply_to_an_outbound_request_arrives(fw, family):
    """A large DNS-like answer: a small request from the fw host, a 3000-byte reply in fragments."""
    a = ADDR[family]
    peer, own = sock(NS_CLI, family, socket.SOCK_DGRAM), sock(NS_FW, family, socket.SOCK_DGRAM)
    try:
        peer.bind((a["cli"], 7302))
        own.sendto(b"query", (a["cli"], 7302))
        data, source = peer.recvfrom(64)
        assert data == b"query"
        with Delta(fw) as d:
            peer.sendto(payload(b"answer"), source)
            assert own.recvfrom(SIZE + 1)[0] == payload(b"answer")
        assert d["pass_conntrack"] == 1 and d["pass_fragment"] == 2 and d["drop_policy"] == 0, d
        # an unsolicited large datagram from the same peer to another port of the fw host does not
        other = fw_socket(family, source[1] + 1 if source[1] < 65535 else source[1] - 1)
        try:
            with Delta(fw) as d:
                peer.sendto(payload(b"push"), (a["fw"], other.getsockname()[1]))
                with pytest.raises((socket.timeout, TimeoutError)):
                    other.recvfrom(SIZE + 1)
            assert d["drop_policy"] == 3 and d["pass_fragment"] == 0, d
        finally:
            other.close()
    finally:
        peer.close()
        own.close()


@pytest.mark.parametrize("family", FAMILIES)
def test_sanity_fragments_still_drops_them(fw, family):
    a = ADDR[family]
    fw.call("apply_rules", kind="port", entries=[{"proto": "udp", "port": 7303, "source": a["cli_net"]}])
    server, client = fw_socket(family, 7303), sock(NS_CLI, family, socket.SOCK_DGRAM)
    try:
        with settings(fw, sanity={"fragments": True}):
            with Delta(fw) as d:
                client.sendto(payload(b"frag"), (a["fw"], 7303))
                with pytest.raises((socket.timeout, TimeoutError)):
                    server.recvfrom(SIZE + 1)
            assert d["drop_fragment"] == 3 and d["pass_rule"] == 0, d
            client.sendto(b"small", (a["fw"], 7303))
            assert server.recvfrom(64)[0] == b"small"
    finally:
        server.close()
        client.close()
