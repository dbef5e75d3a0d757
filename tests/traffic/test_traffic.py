# SPDX-License-Identifier: GPL-2.0-or-later
"""Real packets through the engine-loaded data plane (XDP on fw0 in nxt-fw, TC egress).

Every socket has a timeout and every tool a bounded count and deadline. The
session's program runs with policy deny, conntrack on, ICMP 5/s burst 5.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import re
import socket
import struct
import subprocess
import time

import pytest

from ansible_collections.netxfw.firewall.plugins.module_utils import layout
from netns import ADDR, NS_ATT, NS_CLI, NS_FW, SETTINGS, Delta, nsenter, run_in, sock

FAMILIES = [pytest.param(4, id="ipv4"), pytest.param(6, id="ipv6")]
DROP_WAIT = 1.0  # seconds a dropped connection attempt is given


@contextlib.contextmanager
def tcp_listener(port, family, ns=NS_FW):
    s = sock(ns, family, socket.SOCK_STREAM, timeout=DROP_WAIT)
    if family == 6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind(("0.0.0.0" if family == 4 else "::", port))
    s.listen(8)
    try:
        yield s
    finally:
        s.close()


def hard_close(s):
    """Close with RST: no FIN retransmissions leak into the next test's counters."""
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    s.close()


def tcp_open(ns, family, dst, port, listener, src=None, timeout=DROP_WAIT):
    """Connect from ns and exchange one message each way: (client, server) sockets, or None on timeout."""
    client = sock(ns, family, socket.SOCK_STREAM, timeout=timeout)
    if src:
        client.bind((src, 0))
    try:
        client.connect((dst, port))
    except (socket.timeout, TimeoutError):
        client.close()
        return None
    server, dummy = listener.accept()
    server.settimeout(timeout)
    client.sendall(b"hello")
    assert server.recv(16) == b"hello"
    server.sendall(b"welcome")
    assert client.recv(16) == b"welcome"
    return client, server


def tcp_reaches(ns, family, dst, port, listener, src=None):
    pair = tcp_open(ns, family, dst, port, listener, src=src)
    if pair is None:
        return False
    for s in pair:
        hard_close(s)
    return True


def udp_arrives(src_ns, family, dst, port, src=None):
    """Send one datagram from src_ns to a fresh listener in nxt-fw: True if it arrived within DROP_WAIT."""
    server = sock(NS_FW, family, socket.SOCK_DGRAM, timeout=DROP_WAIT)
    client = sock(src_ns, family, socket.SOCK_DGRAM)
    try:
        server.bind(("0.0.0.0" if family == 4 else "::", port))
        if src:
            client.bind((src, 0))
        client.sendto(b"knock", (dst, port))
        try:
            return server.recvfrom(64)[0] == b"knock"
        except (socket.timeout, TimeoutError):
            return False
    finally:
        server.close()
        client.close()


def ping(ns, dst, count, interval=0.2, family=4):
    argv = ["ping", "-%d" % family, "-n", "-q", "-c", str(count), "-i", str(interval), "-W", "1", dst]
    proc = run_in(ns, argv, timeout=count * interval + 10)
    match = re.search(r"(\d+) packets transmitted, (\d+) received", proc.stdout)
    assert match, proc.stdout + proc.stderr
    return int(match.group(2))


# --------------------------------------------------------------- default deny + conntrack
@pytest.mark.parametrize("family", FAMILIES)
def test_default_deny_drops_unsolicited_tcp_and_udp(fw, family):
    a = ADDR[family]
    with tcp_listener(9001, family) as listener:
        with Delta(fw) as d:
            assert not tcp_reaches(NS_CLI, family, a["fw"], 9001, listener)
            assert not udp_arrives(NS_CLI, family, a["fw"], 9002)
    assert d["drop_policy"] >= 2, d  # the SYN (and its retransmission) and the datagram
    assert d["pass_conntrack"] == 0, d


@pytest.mark.parametrize("family", FAMILIES)
def test_outbound_tcp_gets_its_replies(fw, family):
    a = ADDR[family]
    with tcp_listener(7001, family, ns=NS_CLI) as listener:
        with Delta(fw) as d:
            pair = tcp_open(NS_FW, family, a["cli"], 7001, listener)
            assert pair is not None, "the fw host's own connection got no SYN-ACK under default deny"
            client, server = pair
            server.sendall(b"x" * 20000)  # several segments back towards the fw host
            got = b""
            while len(got) < 20000:
                chunk = client.recv(65536)
                assert chunk
                got += chunk
            hard_close(client)
            hard_close(server)
    assert d["pass_conntrack"] >= 3, d
    assert d["egress_tracked"] >= 3, d
    assert d["drop_policy"] == 0, d


@pytest.mark.parametrize("family", FAMILIES)
def test_outbound_udp_exchange_gets_its_reply(fw, family):
    a = ADDR[family]
    peer = sock(NS_CLI, family, socket.SOCK_DGRAM)
    own = sock(NS_FW, family, socket.SOCK_DGRAM)
    try:
        peer.bind((a["cli"], 7002))
        with Delta(fw) as d:
            own.sendto(b"query", (a["cli"], 7002))
            data, source = peer.recvfrom(64)
            assert data == b"query"
            peer.sendto(b"answer", source)
            assert own.recvfrom(64)[0] == b"answer"
    finally:
        peer.close()
        own.close()
    assert d["pass_conntrack"] == 1, d
    assert d["drop_policy"] == 0, d


# --------------------------------------------------------------- black and white lists
@pytest.mark.parametrize("family", FAMILIES)
def test_blacklisted_prefix_dropped_whitelisted_address_inside_passes(fw, family):
    a = ADDR[family]
    # tcp 8080 open to everyone, so only the lists decide
    fw.call("apply_rules", kind="port", entries=[{"proto": "tcp", "port": 8080, "source": "any"}])
    with tcp_listener(8080, family) as listener:
        assert tcp_reaches(NS_ATT, family, a["fw_att"], 8080, listener, src=a["att"])  # open before the block
        fw.call("apply_rules", kind="blacklist", entries=[a["att_net"]])
        fw.call("apply_rules", kind="whitelist", entries=[a["att_ok"]])
        with Delta(fw) as d:
            assert not tcp_reaches(NS_ATT, family, a["fw_att"], 8080, listener, src=a["att"])
            assert not udp_arrives(NS_ATT, family, a["fw_att"], 8082, src=a["att"])
        assert d["drop_blacklist"] >= 2, d
        assert d["pass_rule"] == 0 and d["drop_policy"] == 0, d
        with Delta(fw) as d:
            assert tcp_reaches(NS_ATT, family, a["fw_att"], 8080, listener, src=a["att_ok"])
            assert udp_arrives(NS_ATT, family, a["fw_att"], 8082, src=a["att_ok"])  # whitelist beats the policy too
        assert d["pass_whitelist"] >= 2 and d["drop_blacklist"] == 0, d
        # the client is in neither list and still gets the port rule
        assert tcp_reaches(NS_CLI, family, a["fw"], 8080, listener)


# --------------------------------------------------------------- port rules
@pytest.mark.parametrize("family", FAMILIES)
def test_port_rule_opens_one_port_to_one_cidr(fw, family):
    a = ADDR[family]
    fw.call("apply_rules", kind="port", entries=[{"proto": "tcp", "port": 8080, "source": a["cli_net"]}])
    with tcp_listener(8080, family) as open_port, tcp_listener(8081, family) as closed_port:
        with Delta(fw) as d:
            assert tcp_reaches(NS_CLI, family, a["fw"], 8080, open_port)
        # the SYN and the handshake-completing ACK by rule (that ACK moves the flow from ct_syn to ct),
        # the rest as a known flow
        assert d["pass_rule"] == 2 and d["pass_conntrack"] >= 2, d
        with Delta(fw) as d:
            assert not tcp_reaches(NS_ATT, family, a["fw_att"], 8080, open_port, src=a["att"])
            assert not tcp_reaches(NS_CLI, family, a["fw"], 8081, closed_port)
            assert not udp_arrives(NS_CLI, family, a["fw"], 8080)  # tcp only
        assert d["drop_policy"] >= 3 and d["pass_rule"] == 0, d


def test_port_rule_with_netcat(fw):
    """The same with netcat-openbsd on both ends (listener in nxt-fw, clients bounded by -w)."""
    fw.call("apply_rules", kind="port", entries=[{"proto": "tcp", "port": 8085, "source": ADDR[4]["cli_net"]}])
    server = subprocess.Popen(nsenter(NS_FW, ["timeout", "10", "nc", "-lk", "-p", "8085"]),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.2)
        ok = run_in(NS_CLI, ["nc", "-z", "-w", "1", ADDR[4]["fw"], "8085"], timeout=5)
        blocked = run_in(NS_ATT, ["nc", "-z", "-w", "1", "-s", ADDR[4]["att"], ADDR[4]["fw_att"], "8085"], timeout=5)
    finally:
        server.kill()
        server.wait(5)
    assert ok.returncode == 0, ok.stderr
    assert blocked.returncode != 0


# --------------------------------------------------------------- ICMP token bucket
@pytest.mark.parametrize("family", FAMILIES)
def test_icmp_above_rate_is_dropped(fw, family):
    rate, burst, sent = SETTINGS["icmp_rate"], SETTINGS["icmp_burst"], 30
    time.sleep(burst / rate + 0.1)  # let the bucket refill after earlier tests
    with Delta(fw) as d:
        start = time.monotonic()
        received = ping(NS_CLI, ADDR[family]["fw"], sent, interval=0.01, family=family)
        elapsed = time.monotonic() - start
    assert burst <= received <= burst + rate * elapsed + 1, (received, elapsed, d)
    assert d["drop_icmp_rate"] >= sent - received > 0, d
    assert d["pass_icmp"] == received, d


# --------------------------------------------------------------- blocking cuts established flows
@contextlib.contextmanager
def established(fw, family, port):
    a = ADDR[family]
    fw.call("apply_rules", kind="port", entries=[{"proto": "tcp", "port": port, "source": a["cli"]}])
    with tcp_listener(port, family) as listener:
        pair = tcp_open(NS_CLI, family, a["fw"], port, listener, timeout=1.5)
        assert pair is not None
        try:
            time.sleep(0.2)  # delayed ACKs settle: from here the fw host sends nothing unasked
            flows = [f for f in fw.call("conntrack") if f["saddr"] == a["cli"] and f["dport"] == port]
            assert len(flows) == 1, flows
            yield pair
        finally:
            for s in pair:
                hard_close(s)


@pytest.mark.parametrize("family", FAMILIES)
def test_blacklisting_the_client_cuts_its_established_connection(fw, family):
    a = ADDR[family]
    with established(fw, family, 8090) as (client, server):
        client.sendall(b"before")
        assert server.recv(16) == b"before"
        time.sleep(0.2)  # the fw host's delayed ACK of "before" goes out first
        with Delta(fw) as d:
            fw.call("apply_rules", kind="blacklist", entries=[a["cli"]])
            assert not [f for f in fw.call("conntrack") if f["saddr"] == a["cli"]], "conntrack not purged"
            client.sendall(b"after")
            with pytest.raises((socket.timeout, TimeoutError)):
                server.recv(16)
        assert d["drop_blacklist"] >= 1 and d["pass_conntrack"] == 0, d


@pytest.mark.parametrize("family", FAMILIES)
def test_blacklisted_client_stays_cut_while_the_host_keeps_sending(fw, family):
    """The fw host's own packets to a blocked peer must not re-open the flow through TC egress."""
    a = ADDR[family]
    with established(fw, family, 8091) as (client, server):
        fw.call("apply_rules", kind="blacklist", entries=[a["cli"]])
        with Delta(fw) as d:
            server.sendall(b"push")  # egress towards the blocked client
            assert client.recv(16) == b"push"
            client.sendall(b"after")  # its ACK and this data
            with pytest.raises((socket.timeout, TimeoutError)):
                server.recv(16)
        assert d["pass_conntrack"] == 0, d


@pytest.mark.parametrize("family", FAMILIES)
def test_removing_the_client_from_the_whitelist_inside_a_blacklisted_prefix_cuts_it(fw, family):
    """Unblocking in reverse: the client's whitelist entry, inside a blacklisted prefix, goes away; the
    client is now blocked and its established connection is cut, as by adding a blacklist entry."""
    a = ADDR[family]
    with established(fw, family, 8092) as (client, server):
        fw.call("apply_rules", kind="blacklist", entries=[a["cli_net"]])
        fw.call("apply_rules", kind="whitelist", entries=[a["cli"]])
        client.sendall(b"listed")
        assert server.recv(16) == b"listed"
        server.sendall(b"ok")                               # the fw host's packets keep its flow tracked
        assert client.recv(16) == b"ok"
        time.sleep(0.2)  # delayed ACKs settle
        assert [f for f in fw.call("conntrack") if f["saddr"] == a["cli"]], "the whitelisted flow is tracked"
        with Delta(fw) as d:
            fw.call("apply_rules", kind="whitelist", entries=[a["cli"]], state="absent")
            assert not [f for f in fw.call("conntrack") if f["saddr"] == a["cli"]], "conntrack not purged"
            client.sendall(b"after")
            with pytest.raises((socket.timeout, TimeoutError)):
                server.recv(16)
        assert d["drop_blacklist"] >= 1 and d["pass_conntrack"] == 0, d


def test_ipv4_mapped_blacklist_entry_blocks_no_ipv4_client(fw):
    """::ffff:0:0/96 (an IPv6 bogon prefix) is an IPv6 entry: it is not all of IPv4."""
    a = ADDR[4]
    fw.call("apply_rules", kind="port", entries=[{"proto": "tcp", "port": 8093, "source": a["cli_net"]}])
    result = fw.call("apply_rules", kind="blacklist", entries=["::ffff:0:0/96"])
    assert result["added"] == [{"cidr": "::ffff:0:0/96", "expires": None}]
    with tcp_listener(8093, 4) as listener, Delta(fw) as d:
        assert tcp_reaches(NS_CLI, 4, a["fw"], 8093, listener)
    assert d["drop_blacklist"] == 0, d


# --------------------------------------------------------------- persistence and idempotence
def test_reboot_rebuilds_the_same_maps_from_json_and_second_apply_is_a_noop(fw):
    v4, v6 = ADDR[4], ADDR[6]
    fw.call("apply_rules", kind="whitelist", entries=[v4["att_ok"], v6["att_ok"], "198.51.100.128/25"])
    fw.call("apply_rules", kind="blacklist", entries=[v4["att_net"], v6["att_net"], "203.0.113.9"])
    fw.call("apply_rules", kind="blacklist", entries=["2001:db8:9::/48"], ttl=3600)
    fw.call("apply_rules", kind="port", entries=[
        {"proto": "tcp", "port": 8080, "source": v4["cli_net"]},
        {"proto": "tcp", "port": 8080, "source": v6["cli_net"]},
        {"proto": "udp", "ports": "5000-5003", "source": "any", "action": "allow"},
        {"proto": "tcp", "port": 22, "source": "203.0.113.0/25", "action": "deny"},
    ])
    before = fw.call("dump")
    # one src map key per listed source (3 whitelisted, 4 blacklisted, 5 port-rule sources, "any" being
    # a /0 per family; the CIDRs differ) and the rule keys (one per port and family)
    assert sum(len(before[m]) for m in before if m != "generation") == 3 + 4 + 5 + (2 + 4 * 2 + 1)
    assert (len(before["src4_host"]), len(before["src6_host"]), len(before["src4_lpm"]), len(before["src6_lpm"])) \
        == (2, 1, 5, 4)

    def behaviour():
        with tcp_listener(8080, 4) as l4, tcp_listener(8080, 6) as l6:
            return (tcp_reaches(NS_CLI, 4, v4["fw"], 8080, l4), tcp_reaches(NS_CLI, 6, v6["fw"], 8080, l6),
                    tcp_reaches(NS_ATT, 4, v4["fw_att"], 8080, l4, src=v4["att_ok"]),
                    tcp_reaches(NS_ATT, 4, v4["fw_att"], 8080, l4, src=v4["att"]),
                    udp_arrives(NS_ATT, 6, v6["fw_att"], 5001, src=v6["att"]),
                    udp_arrives(NS_CLI, 6, v6["fw"], 5002))
    expected = (True, True, True, False, False, True)
    assert behaviour() == expected

    gone = fw.call("reboot")
    assert gone == {"attached": [], "pins": []}
    assert fw.call("info")["loaded"] is False
    assert udp_arrives(NS_CLI, 4, v4["fw"], 9003)  # nothing attached: no filtering at all

    result = fw.call("apply_program", settings=SETTINGS)
    assert result["changed"] and result["compiled"], result
    after = fw.call("dump")
    ttl_before = before.pop("src6_lpm")  # holds the expiring blacklist entry
    ttl_after = after.pop("src6_lpm")
    assert after == before
    # the expiring entry: same key, same class, same wall-clock expiry converted again to CLOCK_MONOTONIC
    assert [k for k, dummy in ttl_after] == [k for k, dummy in ttl_before]
    expiring = 0
    for (dummy, old), (dummy, new) in zip(ttl_before, ttl_after):
        (old_bits, old_ns), (new_bits, new_ns) = (layout.source_class(bytes.fromhex(v)) for v in (old, new))
        assert old_bits == new_bits
        assert old_ns == new_ns == 0 or (old_ns and abs(old_ns - new_ns) < 50 * 10 ** 6), (old_ns, new_ns)
        expiring += bool(old_ns)
    assert expiring == 1
    assert behaviour() == expected

    again = fw.call("apply_program", settings=SETTINGS)
    assert (again["changed"], again["compiled"], again["actions"]) == (False, False, []), again
    assert fw.call("dump") == dict(after, src6_lpm=ttl_after)
    check = fw.call("apply_program", settings=SETTINGS, check_mode=True)
    assert check["changed"] is False
    same = fw.call("apply_rules", kind="blacklist", entries=[v4["att_net"], v6["att_net"], "203.0.113.9"])
    assert same["changed"] is False, same


def test_remove_program_detaches_keeps_rules_json_and_reapply_restores(fw):
    v4 = ADDR[4]
    fw.call("apply_rules", kind="blacklist", entries=[v4["att_net"]])
    fw.call("apply_rules", kind="port", entries=[{"proto": "udp", "port": 5010, "source": "any"}])
    before = fw.call("dump")
    removed = fw.call("remove_program")
    assert removed["changed"] and "detach from fw0" in removed["actions"], removed
    state = fw.call("xdp_state", ifname="fw0")
    assert state["xdp"]["prog_id"] == 0 and not state["tc"], state
    info = fw.call("info")
    assert info["loaded"] is False and info["config"] == {}
    assert udp_arrives(NS_ATT, 4, v4["fw_att"], 5010, src=v4["att"])  # unfiltered now
    again = fw.call("apply_program", settings=SETTINGS)
    assert again["changed"] and again["compiled"]
    assert fw.call("dump") == before  # rebuilt from the rules.json that remove_program kept
    assert not udp_arrives(NS_ATT, 4, v4["fw_att"], 5010, src=v4["att"])
    assert udp_arrives(NS_CLI, 4, v4["fw"], 5010)


def test_runtime_policy_switch_applies_without_recompile(fw):
    v4 = ADDR[4]
    try:
        result = fw.call("apply_program", settings=dict(SETTINGS, policy="allow"))
        assert result["changed"] and not result["compiled"], result
        assert result["actions"] == ["update runtime settings"], result
        with Delta(fw) as d:
            assert udp_arrives(NS_CLI, 4, v4["fw"], 9010)
        assert d["pass_policy"] == 1, d
    finally:
        result = fw.call("apply_program", settings=SETTINGS)
    assert result["changed"] and not result["compiled"], result
    assert not udp_arrives(NS_CLI, 4, v4["fw"], 9010)


def test_blacklist_ttl_expires_in_the_data_plane(fw):
    v4 = ADDR[4]
    fw.call("apply_rules", kind="port", entries=[{"proto": "udp", "port": 5020, "source": "any"}])
    fw.call("apply_rules", kind="blacklist", entries=[v4["att"]], ttl=1.5)
    start = time.monotonic()
    with Delta(fw) as d:
        assert not udp_arrives(NS_ATT, 4, v4["fw_att"], 5020, src=v4["att"])
    assert d["drop_blacklist"] == 1, d
    time.sleep(max(0, 1.6 - (time.monotonic() - start)))
    with Delta(fw) as d:
        assert udp_arrives(NS_ATT, 4, v4["fw_att"], 5020, src=v4["att"])
    assert d["pass_rule"] == 1 and d["drop_blacklist"] == 0, d
