# SPDX-License-Identifier: GPL-2.0-or-later
"""DHCP and DHCPv6 replies under default deny (docs/internals.md, "DHCP").

tc_egress records each DHCP request (UDP 68 -> 67, BOOTREQUEST: xid and chaddr) and DHCPv6 client
message (546 -> 547: transaction id) in `dhcp_expect`; xdp_ingress passes a reply (67 -> 68,
BOOTREPLY; 547 -> 546) as `pass_dhcp` only when it echoes a fresh one."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import struct

import pytest
from scapy.all import BOOTP, DHCP, DHCP6_Advertise, Ether, DHCP6_Reply, DHCP6_Request, DHCP6_Solicit

from verdict_packets import ADDR, IP, UDP, IPv6, TC_ACT_OK, eth, host, now_ns

S = 10**9
DHCP_EXPECT_NS = 30 * S  # bpf/lib/dhcp.h DHCP_EXPECT_NS
MAC = bytes.fromhex("020000000002")
OTHER_MAC = bytes.fromhex("020000000099")
XID = 0x5EC0_1D42
SERVER4, CLIENT4 = ADDR[4]["src"], ADDR[4]["local"]
SERVER6, CLIENT6 = "fe80::7", "fe80::1"


def request4(xid=XID, mac=MAC, src="0.0.0.0", dst="255.255.255.255", kind="discover", op=1):
    return eth() / IP(src=src, dst=dst) / UDP(sport=68, dport=67) / BOOTP(op=op, xid=xid, chaddr=mac) / DHCP(
        options=[("message-type", kind), "end"])


def reply4(xid=XID, mac=MAC, src=SERVER4, dst="255.255.255.255", kind="offer", op=2, sport=67):
    return eth() / IP(src=src, dst=dst) / UDP(sport=sport, dport=68) / BOOTP(
        op=op, xid=xid, chaddr=mac, yiaddr=CLIENT4) / DHCP(options=[("message-type", kind), "end"])


def request6(trid=0xABCDEF, msg=DHCP6_Solicit):
    return eth() / IPv6(src=CLIENT6, dst="ff02::1:2") / UDP(sport=546, dport=547) / msg(trid=trid)


def reply6(trid=0xABCDEF, msg=DHCP6_Advertise, src=SERVER6, sport=547):
    return eth() / IPv6(src=src, dst=CLIENT6) / UDP(sport=sport, dport=546) / msg(trid=trid)


def expectations(fw):
    return {bytes(k): v.value for k, v in fw.t("dhcp_expect").items()}


def dhcp_key(family, xid_bytes, mac=b""):
    """struct dhcp_key as docs/internals.md lays it out."""
    return struct.pack("4sB3x8s", xid_bytes, family, mac)


@pytest.fixture
def deny(fw):
    fw.config(policy=1, ct_enabled=1, ct_udp_ns=30 * S, ct_udp_stream_ns=180 * S)
    return fw


def test_offer_and_ack_echoing_our_discover_pass(deny):
    assert deny.tc(request4())[0] == TC_ACT_OK
    assert list(expectations(deny)) == [dhcp_key(4, struct.pack(">I", XID), MAC)]
    deny.expect(reply4(), "pass_dhcp")
    deny.expect(reply4(dst=CLIENT4), "pass_dhcp")  # some servers unicast the offer
    deny.tc(request4(kind="request"))              # REQUEST keeps the xid of the DISCOVER
    deny.expect(reply4(kind="ack"), "pass_dhcp")
    deny.expect(reply4(src=ADDR[4]["peer"]), "pass_dhcp")  # a second server's offer


def test_offer_without_request_is_dropped(deny):
    deny.expect(reply4(), "drop_policy")


def test_offer_with_wrong_xid_or_chaddr_is_dropped(deny):
    deny.tc(request4())
    deny.expect(reply4(xid=XID + 1), "drop_policy")
    deny.expect(reply4(mac=OTHER_MAC), "drop_policy")
    deny.expect(reply4(op=1), "drop_policy")           # a request, not a reply
    deny.expect(reply4(sport=6767), "drop_policy")     # not from a server port
    short = bytes(reply4())[:14 + 20 + 8 + 33]         # chaddr cut short
    deny.expect(Ether(short), "drop_policy")


def test_expectation_expires(deny):
    deny.tc(request4())
    table = deny.t("dhcp_expect")
    key = table.Key.from_buffer_copy(dhcp_key(4, struct.pack(">I", XID), MAC))
    table[key] = table.Leaf(now_ns() - DHCP_EXPECT_NS - S)
    deny.expect(reply4(), "drop_policy")
    deny.tc(request4())  # the client retransmits: fresh again
    deny.expect(reply4(), "pass_dhcp")


def test_renewal_unicast_passes_by_xid_and_opens_no_flow(deny):
    """A RENEW goes unicast from the leased address to the server: the ACK passes on its xid;
    the request opens no conntrack entry (the DISCOVER's would be 255.255.255.255 <- 0.0.0.0)."""
    deny.tc(request4(xid=XID + 5, src=CLIENT4, dst=SERVER4, kind="request"))
    deny.tc(request4())
    assert deny.ct_entries() == {}
    deny.expect(reply4(xid=XID + 5, dst=CLIENT4, kind="ack"), "pass_dhcp")


def test_outbound_reply_records_nothing(deny):
    """A DHCP server on this host sends BOOTREPLY 67 -> 68: no expectation of anything."""
    deny.tc(eth() / IP(src=CLIENT4, dst="255.255.255.255") / UDP(sport=68, dport=67) / BOOTP(
        op=2, xid=XID, chaddr=MAC))
    assert expectations(deny) == {}


def test_expectation_does_not_depend_on_conntrack(fw):
    fw.config(policy=1, ct_enabled=0)
    fw.tc(request4())
    fw.expect(reply4(), "pass_dhcp")


def test_blacklisted_server_is_dropped(deny):
    deny.tc(request4())
    deny.blacklist(host(4))
    deny.expect(reply4(), "drop_blacklist")


def test_dhcpv6_advertise_and_reply_echoing_our_transaction_id(deny):
    deny.expect(reply6(), "drop_policy")
    deny.tc(request6())
    assert list(expectations(deny)) == [dhcp_key(6, bytes.fromhex("abcdef"))]
    deny.expect(reply6(), "pass_dhcp")
    deny.expect(reply6(trid=0xABCDEE), "drop_policy")
    deny.expect(reply6(sport=5470), "drop_policy")
    deny.tc(request6(trid=0x123456, msg=DHCP6_Request))
    deny.expect(reply6(trid=0x123456, msg=DHCP6_Reply), "pass_dhcp")


def test_default_allow_is_unchanged(fw):
    fw.expect(reply4(), "pass_policy")
    fw.expect(reply6(), "pass_policy")
