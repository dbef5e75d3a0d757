# SPDX-License-Identifier: GPL-2.0-or-later
"""ICMP, ICMPv6 and neighbour discovery with real packets under default deny (docs/internals.md,
"ICMP and ICMPv6 types"): ping both ways, ND after the neighbour caches are flushed, unsolicited
ICMP dropped (and passed under allow), a fake ND flood from a blacklisted address, and path MTU
discovery of a real TCP flow through a router with a smaller MTU.

Raw sockets see what the fw host's stack receives (a copy of every ICMP message delivered), so
"arrived" is observed in the host, not inferred from counters. Every wait is bounded.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import socket
import time

import pytest

from netns import ADDR, FW_IF, NS_ATT, NS_CLI, NS_FW, Delta, inside, run, run_in, sock
from test_stateful import settings
from test_traffic import DROP_WAIT, FAMILIES, ping

ICMP_PROTO = {4: socket.IPPROTO_ICMP, 6: socket.IPPROTO_ICMPV6}
MARK = b"\xbe\xef"  # identifier of the messages these tests send


@contextlib.contextmanager
def icmp_socket(ns, family, hops=None):
    """A raw ICMP/ICMPv6 socket of ns: receives a copy of every ICMP message the stack gets; sends
    with the given IPv6 hop limit (the kernel fills the ICMPv6 checksum)."""
    with inside(ns):
        s = socket.socket(socket.AF_INET if family == 4 else socket.AF_INET6, socket.SOCK_RAW, ICMP_PROTO[family])
    s.settimeout(0.1)
    if hops is not None and family == 6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, hops)
    try:
        yield s
    finally:
        s.close()


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum((data[i] << 8) | data[i + 1] for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return (~total & 0xFFFF).to_bytes(2, "big")


def message(family, itype, body=MARK + b"\0\1" + bytes(16)):
    """type, code 0, checksum (IPv4: computed here; IPv6: by the kernel), body."""
    raw = bytes([itype, 0, 0, 0]) + body
    return raw[:2] + checksum(raw) + raw[4:] if family == 4 else raw


def collect(s, family, wait=DROP_WAIT):
    """The ICMP messages (from the type on) that s got within wait."""
    got, deadline = [], time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            data = s.recv(4096)
        except (socket.timeout, TimeoutError):
            continue
        if family == 4:
            data = data[(data[0] & 0x0F) * 4:]  # IPv4 raw sockets get the IP header too
        got.append(data)
    return got


def marked(messages, itype):
    return sum(1 for m in messages if m[0] == itype and m[4:6] == MARK)


# ---------------------------------------------------------------- ping
@pytest.mark.parametrize("family", FAMILIES)
def test_ping_both_ways(fw, family):
    """Echo requests to the host pass within the ICMP bucket (5/s, burst 5); the host's own pings
    get their replies through conntrack."""
    a = ADDR[family]
    with Delta(fw) as d:
        assert ping(NS_CLI, a["fw"], 3, interval=0.3, family=family) == 3
    assert d["pass_icmp"] == 3 and d["drop_icmp_rate"] == 0 and d["drop_policy"] == 0, d
    with Delta(fw) as d:
        assert ping(NS_FW, a["cli"], 3, interval=0.3, family=family) == 3
    assert d["pass_conntrack"] == 3 and d["pass_icmp"] == 0 and d["drop_policy"] == 0, d


def test_neighbour_discovery_under_deny_after_flushing_the_caches(fw):
    """With no neighbour entry on either side, ping6 both ways needs NS/NA to pass the firewall."""
    a = ADDR[6]
    for ns, ifname in ((NS_FW, FW_IF), (NS_CLI, "cli0")):
        run_in(ns, ["ip", "-6", "neigh", "flush", "dev", ifname], check=True)
    with Delta(fw) as d:
        assert ping(NS_FW, a["cli"], 2, interval=0.3, family=6) == 2
    assert d["pass_neighbor"] >= 1 and d["pass_conntrack"] == 2 and d["drop_policy"] == 0, d
    for ns, ifname in ((NS_FW, FW_IF), (NS_CLI, "cli0")):
        run_in(ns, ["ip", "-6", "neigh", "flush", "dev", ifname], check=True)
    with Delta(fw) as d:
        assert ping(NS_CLI, a["fw"], 2, interval=0.3, family=6) == 2
    assert d["pass_neighbor"] >= 1 and d["pass_icmp"] == 2 and d["drop_policy"] == 0, d
    shown = run_in(NS_FW, ["ip", "-6", "neigh", "show", a["cli"], "dev", FW_IF], check=True).stdout
    assert "lladdr" in shown, shown


# ---------------------------------------------------------------- unsolicited ICMP
UNSOLICITED = {
    4: (0, 5, 13, 17),  # echo reply, redirect, timestamp request, address mask request
    6: (129, 137, 139),  # echo reply, redirect (hop limit 64), node information query
}


@pytest.mark.parametrize("family", FAMILIES)
def test_unsolicited_icmp_is_dropped_under_deny_and_passes_under_allow(fw, family):
    a = ADDR[family]
    types = UNSOLICITED[family]
    for policy in ("deny", "allow"):
        with settings(fw, policy=policy):
            with icmp_socket(NS_FW, family) as tap, icmp_socket(NS_ATT, family, hops=64) as att:
                att.bind((a["att"], 0))
                with Delta(fw) as d:
                    for itype in types:
                        att.sendto(message(family, itype), (a["fw_att"], 0))
                    got = collect(tap, family)
                    seen = dict((itype, marked(got, itype)) for itype in types)
                    # the host answers a timestamp request (RFC 792) when it gets one
                    answered = marked(collect(att, family, wait=0.3), 14) if family == 4 else None
        if policy == "deny":
            assert seen == dict.fromkeys(types, 0), seen
            assert d["drop_policy"] == len(types) and d["pass_policy"] == 0, d
            assert answered in (0, None)
        else:
            assert seen == dict.fromkeys(types, 1), seen
            assert d["pass_policy"] == len(types), d
            assert answered in (1, None)


def test_fake_nd_flood_from_a_blacklisted_address_is_dropped_real_nd_passes(fw):
    """The reported case: 50 'neighbour solicitations' with hop limit 64 and a 1200-byte payload from
    a blacklisted address. They are not ND (RFC 4861 7.1) and the blacklist drops them. A real NS
    (hop limit 255) from the same on-link address still passes, like its ARP would."""
    a = ADDR[6]
    fw.call("apply_rules", kind="blacklist", entries=[a["att"]])
    target = socket.inet_pton(socket.AF_INET6, a["fw_att"])
    fake = bytes([135, 0, 0, 0]) + bytes(4) + target + bytes(1200 - 24)
    with icmp_socket(NS_FW, 6) as tap:
        with icmp_socket(NS_ATT, 6, hops=64) as att:
            att.bind((a["att"], 0))
            with Delta(fw) as d:
                for _packet in range(50):
                    att.sendto(fake, (a["fw_att"], 0))
                # (att's kernel may resolve fw's address meanwhile: its own NS are short)
                assert [len(m) for m in collect(tap, 6) if m[0] == 135 and len(m) > 1000] == []
        assert d["drop_blacklist"] == 50, d
        with icmp_socket(NS_ATT, 6, hops=255) as att:
            att.bind((a["att"], 0))
            with Delta(fw) as d:
                att.sendto(bytes([135, 0, 0, 0]) + bytes(4) + target, (a["fw_att"], 0))
                assert [m for m in collect(tap, 6) if m[0] == 135 and len(m) == 24], "the real NS did not arrive"
        assert d["pass_neighbor"] >= 1 and d["drop_blacklist"] == 0, d


# ---------------------------------------------------------------- path MTU discovery of a real flow
NS_FAR = "nxt-far"
FAR = {4: "203.0.113.200", 6: "2001:db8:3::2"}  # behind nxt-cli, which routes with MTU 1280 towards it
SMALL_MTU = 1280


def _far_down():
    if NS_FAR in run(["ip", "netns", "list"]).stdout.split():
        run(["ip", "netns", "del", NS_FAR], check=False)
    run_in(NS_CLI, ["sysctl", "-qw", "net.ipv4.ip_forward=0", "net.ipv6.conf.all.forwarding=0"])
    for family in (4, 6):
        run(["ip", "-n", NS_FW, "-%d" % family, "route", "del", FAR[family] + ("/32" if family == 4 else "/128")],
            check=False)


@pytest.fixture
def far_host(topo):
    """nxt-far, one hop behind nxt-cli: the fw host reaches it through nxt-cli, whose link towards it
    has MTU 1280 while nxt-far's own side keeps 1500 (so its MSS invites segments too big for the path)."""
    _far_down()
    try:
        run(["ip", "netns", "add", NS_FAR])
        run(["ip", "-n", NS_FAR, "link", "set", "lo", "up"])
        run(["ip", "-n", NS_CLI, "link", "add", "clifar0", "type", "veth", "peer", "name", "far0", "netns", NS_FAR])
        run(["ip", "-n", NS_CLI, "link", "set", "clifar0", "mtu", str(SMALL_MTU), "up"])
        run(["ip", "-n", NS_FAR, "link", "set", "far0", "up"])
        run(["ip", "-n", NS_CLI, "addr", "add", "198.51.100.254/32", "dev", "clifar0"])
        run(["ip", "-n", NS_CLI, "addr", "add", "2001:db8:3::1/64", "dev", "clifar0", "nodad"])
        run(["ip", "-n", NS_CLI, "route", "add", FAR[4] + "/32", "dev", "clifar0"])
        run(["ip", "-n", NS_FAR, "addr", "add", FAR[4] + "/32", "dev", "far0"])
        run(["ip", "-n", NS_FAR, "addr", "add", FAR[6] + "/64", "dev", "far0", "nodad"])
        run(["ip", "-n", NS_FAR, "route", "add", "198.51.100.254/32", "dev", "far0"])
        run(["ip", "-n", NS_FAR, "route", "add", "default", "via", "198.51.100.254"])
        run(["ip", "-n", NS_FAR, "-6", "route", "add", "default", "via", "2001:db8:3::1"])
        run_in(NS_CLI, ["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"], check=True)
        run(["ip", "-n", NS_FW, "route", "add", FAR[4] + "/32", "via", ADDR[4]["cli"]])
        run(["ip", "-n", NS_FW, "-6", "route", "add", FAR[6] + "/128", "via", ADDR[6]["cli"]])
        yield FAR
    finally:
        _far_down()


@pytest.mark.parametrize("family", FAMILIES)
def test_path_mtu_discovery_of_a_real_flow_passes(fw, far_host, family):
    """The host sends 64 KiB over TCP to nxt-far. Its full-size segments do not fit the router's
    next link: the router answers 'fragmentation needed' / 'packet too big' (related to the flow:
    pass_related), the host lowers its path MTU and the transfer completes. Dropping the error
    would leave the flow hanging on a PMTU black hole."""
    payload = bytes(range(256)) * 256
    server = sock(NS_FAR, family, socket.SOCK_STREAM, timeout=5)
    try:
        server.bind((far_host[family], 7300))
        server.listen(1)
        with Delta(fw) as d:
            client = sock(NS_FW, family, socket.SOCK_STREAM, timeout=5)
            try:
                client.bind((ADDR[family]["fw"], 0))  # the address nxt-cli routes back to
                client.connect((far_host[family], 7300))
                peer = server.accept()[0]
                peer.settimeout(5)
                try:
                    client.sendall(payload)
                    got = b""
                    while len(got) < len(payload):
                        chunk = peer.recv(65536)
                        assert chunk, "connection closed after %d bytes" % len(got)
                        got += chunk
                    assert got == payload
                    peer.sendall(b"done")
                    assert client.recv(16) == b"done"
                finally:
                    peer.close()
            finally:
                client.close()
    finally:
        server.close()
    assert d["pass_related"] >= 1 and d["drop_policy"] == 0, d
    route = run_in(NS_FW, ["ip", "-%d" % family, "route", "get", far_host[family]], check=True).stdout
    assert "mtu %d" % SMALL_MTU in route, route
