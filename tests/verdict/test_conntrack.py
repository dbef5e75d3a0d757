# SPDX-License-Identifier: GPL-2.0-or-later
"""TC egress flow recording and the ingress conntrack fast path (stage 3)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

import pytest

from ansible_collections.netxfw.firewall.plugins.module_utils import layout, program_settings
from verdict_packets import (
    ADDR, ARP, FAMILIES, TC_ACT_OK, TCP, TCP_P, UDP_P, ct_key, eth, host, ip, now_ns, tcp, udp,
)

fams = pytest.mark.parametrize("fam", FAMILIES)
protos = pytest.mark.parametrize("proto", ["tcp", "udp"])

TIMEOUT = 60 * 10**9
# every per-state timeout (docs/internals.md, config indices 4-9)
CT_ALL = dict(ct_timeout_ns=TIMEOUT, ct_tcp_syn_ns=TIMEOUT, ct_tcp_fin_ns=TIMEOUT, ct_udp_ns=TIMEOUT,
              ct_udp_stream_ns=TIMEOUT, ct_icmp_ns=TIMEOUT)
LOCAL_PORT, REMOTE_PORT = 40000, 443
ESTABLISHED = 3


def outbound(fam, proto, vlans=()):
    """local:40000 -> remote(src):443"""
    build = tcp if proto == "tcp" else udp
    return build(fam, sport=LOCAL_PORT, dport=REMOTE_PORT,
                 src=ADDR[fam]["local"], dst=ADDR[fam]["src"], vlans=vlans)


def reply(fam, proto, vlans=(), sport=REMOTE_PORT, dport=LOCAL_PORT):
    """remote(src):443 -> local:40000"""
    build = tcp if proto == "tcp" else udp
    return build(fam, sport=sport, dport=dport, vlans=vlans)


def reply_key(fam, proto):
    return ct_key(
        ADDR[fam]["src"], ADDR[fam]["local"], REMOTE_PORT, LOCAL_PORT,
        TCP_P if proto == "tcp" else UDP_P)


def egress(fw, pkt):
    retval, delta, length = fw.tc(pkt)
    assert retval == TC_ACT_OK
    return delta, length


@fams
@protos
def test_egress_records_reply_tuple(fw, fam, proto):
    fw.config(ct_enabled=1, **CT_ALL)
    before = now_ns()
    delta, length = egress(fw, outbound(fam, proto))
    assert delta == {"egress_tracked": (1, length)}
    entries = fw.ct_entries()
    assert list(entries) == [reply_key(fam, proto)]
    last_seen, flags = entries[reply_key(fam, proto)]
    assert before <= last_seen <= now_ns()
    assert flags == (1 if proto == "tcp" else 7)  # SYN_SENT, UDP (one direction)


@fams
@protos
def test_reply_passes_via_conntrack_under_deny(fw, fam, proto):
    fw.config(policy=1, ct_enabled=1, **CT_ALL)
    fw.expect(reply(fam, proto), "drop_policy")
    egress(fw, outbound(fam, proto))
    fw.expect(reply(fam, proto), "pass_conntrack")
    # anything that is not exactly the reply tuple still meets the policy
    fw.expect(reply(fam, proto, dport=LOCAL_PORT + 1), "drop_policy")
    fw.expect(reply(fam, proto, sport=REMOTE_PORT + 1), "drop_policy")
    other = "udp" if proto == "tcp" else "tcp"
    fw.expect(reply(fam, other), "drop_policy")
    build = tcp if proto == "tcp" else udp
    fw.expect(build(fam, sport=REMOTE_PORT, dport=LOCAL_PORT, src=ADDR[fam]["peer"]), "drop_policy")


@fams
@pytest.mark.parametrize("vlans", [(10,), (100, 10)], ids=["1tag", "2tags"])
def test_conntrack_through_vlan_tags(fw, fam, vlans):
    fw.config(policy=1, ct_enabled=1, **CT_ALL)
    egress(fw, outbound(fam, "tcp", vlans=vlans))
    fw.expect(reply(fam, "tcp", vlans=vlans), "pass_conntrack")


@fams
def test_egress_refreshes_last_seen(fw, fam):
    fw.config(ct_enabled=1, **CT_ALL)
    fw.ct_put(reply_key(fam, "tcp"), 12345)
    egress(fw, outbound(fam, "tcp"))
    entries = fw.ct_entries()
    assert len(entries) == 1
    assert entries[reply_key(fam, "tcp")][0] > 12345


@fams
def test_conntrack_entry_expires(fw, fam):
    fw.config(policy=1, ct_enabled=1, **CT_ALL)
    fw.ct_put(reply_key(fam, "tcp"), now_ns() - TIMEOUT - 10**9)
    fw.expect(reply(fam, "tcp"), "drop_policy")
    fw.ct_put(reply_key(fam, "tcp"), now_ns() - TIMEOUT + 10 * 10**9)
    fw.expect(reply(fam, "tcp"), "pass_conntrack")


def test_conntrack_timeout_is_read_per_packet(fw):
    """An entry without a state (flags 0, written by a layout-1 program) uses CFG_CT_TIMEOUT_NS. Ages are
    judged with the coarse clock, up to a tick (4 ms at HZ=250, 10 ms at HZ=100) late: the sleep outlasts one."""
    fw.config(policy=1, ct_enabled=1, **CT_ALL)
    fw.ct_put(reply_key(4, "udp"), now_ns())
    fw.expect(reply(4, "udp"), "pass_conntrack")
    fw.config(ct_timeout_ns=1000)  # 1 us
    time.sleep(0.025)
    fw.expect(reply(4, "udp"), "drop_policy")
    fw.config(**CT_ALL)
    fw.expect(reply(4, "udp"), "pass_conntrack")


@fams
def test_conntrack_disabled(fw, fam):
    fw.config(policy=1, ct_enabled=0, **CT_ALL)
    delta, dummy = egress(fw, outbound(fam, "tcp"))
    assert delta == {}
    assert fw.ct_entries() == {}
    # an entry left from earlier does not pass either
    fw.ct_put(reply_key(fam, "tcp"), now_ns())
    fw.expect(reply(fam, "tcp"), "drop_policy")
    fw.config(ct_enabled=1)
    fw.expect(reply(fam, "tcp"), "pass_conntrack")


@fams
def test_conntrack_comes_before_blacklisted_prefix(fw, fam):
    """Stage 3 precedes a prefix's class: blocking a peer by prefix relies on the engine purging its flows."""
    fw.config(ct_enabled=1, **CT_ALL)
    egress(fw, outbound(fam, "tcp"))
    fw.blacklist(ADDR[fam]["net"])
    fw.expect(reply(fam, "tcp"), "pass_conntrack")
    for key in list(fw.t("ct").keys()):
        del fw.t("ct")[key]
    fw.expect(reply(fam, "tcp"), "drop_blacklist")


@fams
def test_exact_address_comes_before_conntrack(fw, fam):
    """Layout 2: the exact-address hash is looked up before conntrack, so a blacklisted /32 or
    /128 drops its tracked flow too (layout 1 passed it: pass_conntrack until the purge)."""
    fw.config(ct_enabled=1, **CT_ALL)
    egress(fw, outbound(fam, "tcp"))
    fw.blacklist(host(fam))
    fw.expect(reply(fam, "tcp"), "drop_blacklist")
    assert reply_key(fam, "tcp") in fw.ct_entries()   # the flow is still there: the host hash decided
    for key in list(fw.t("ct").keys()):
        del fw.t("ct")[key]
    fw.expect(reply(fam, "tcp"), "drop_blacklist")


@fams
def test_whitelisted_exact_address_with_a_tracked_flow(fw, fam):
    """Layout 2: a whitelisted exact address passes before conntrack (pass_whitelist, not
    pass_conntrack); a whitelisted prefix comes after conntrack."""
    fw.config(policy=1, ct_enabled=1, **CT_ALL)
    egress(fw, outbound(fam, "udp"))
    fw.whitelist(ADDR[fam]["net"])
    fw.expect(reply(fam, "udp"), "pass_conntrack")
    fw.whitelist(host(fam))
    fw.expect(reply(fam, "udp"), "pass_whitelist")


def vouched(fw, fam, proto):
    """The generation the reply's flow was vouched for (ct flags bits 32-63), 0 = none."""
    return fw.ct_entries()[reply_key(fam, proto)][1] >> layout.CT_GEN_SHIFT


def established(fam):
    """A packet of the reply's TCP flow once established (ACK, no SYN): it looks its flow up first."""
    return eth() / ip(fam) / TCP(sport=REMOTE_PORT, dport=LOCAL_PORT, flags="A")


@fams
@protos
def test_a_flow_vouched_for_skips_its_source(fw, fam, proto):
    """Under a rules generation (CFG_RULES_GENERATION, which the engine changes around every write of the
    src maps: conftest.sync_sources does the same), a flow whose exact source was found neither
    whitelisted nor blocked is vouched for: its later packets pass on the ct lookup alone. An entry
    written behind the engine's back is not seen until the generation changes."""
    pkt = established(fam) if proto == "tcp" else reply(fam, proto)
    fw.config(policy=1, ct_enabled=1, **CT_ALL)
    egress(fw, outbound(fam, proto))
    if proto == "tcp":
        fw.ct_put(reply_key(fam, proto), now_ns(), 3)  # established
    fw.expect(pkt, "pass_conntrack")
    assert vouched(fw, fam, proto) == fw.generation
    fw.set_list_value(ADDR[fam]["src"], layout.SRC_WL)  # whitelisted, generation unchanged
    fw.expect(pkt, "pass_conntrack")
    fw.config(rules_generation=fw.generation + 1)
    fw.expect(pkt, "pass_whitelist")
    assert vouched(fw, fam, proto) == fw.generation   # a whitelisted source is never vouched for


@fams
def test_a_block_beats_a_vouched_flow(fw, fam):
    """A blacklisted exact address drops its flow at once, vouched for or not, as without the shortcut."""
    fw.config(policy=1, ct_enabled=1, **CT_ALL)
    egress(fw, outbound(fam, "udp"))
    fw.expect(reply(fam, "udp"), "pass_conntrack")
    assert vouched(fw, fam, "udp") == fw.generation
    fw.blacklist(host(fam))
    fw.expect(reply(fam, "udp"), "drop_blacklist")
    assert reply_key(fam, "udp") in fw.ct_entries()


@fams
def test_generation_zero_vouches_for_nothing(fw, fam):
    """Generation 0 (a write under way) neither trusts a vouch nor gives one."""
    fw.config(policy=1, ct_enabled=1, **CT_ALL)
    egress(fw, outbound(fam, "udp"))
    fw.expect(reply(fam, "udp"), "pass_conntrack")
    gen = fw.generation
    fw.config(rules_generation=0)
    fw.set_list_value(ADDR[fam]["src"], layout.SRC_BL)  # blacklisted mid-write
    fw.expect(reply(fam, "udp"), "drop_blacklist")
    fw.set_list_value(ADDR[fam]["src"], layout.SRC_RULES)  # a port rule's source: neither listed nor blocked
    fw.expect(reply(fam, "udp"), "pass_conntrack")
    assert vouched(fw, fam, "udp") == gen


@fams
def test_a_syn_looks_its_source_up_first(fw, fam):
    """A TCP SYN never takes the shortcut: a listed attacker's SYN flood costs one hash lookup."""
    fw.config(policy=1, ct_enabled=1, **CT_ALL)
    fw.ct_put(reply_key(fam, "tcp"), now_ns(), 3 | (fw.generation << layout.CT_GEN_SHIFT))
    fw.expect(established(fam), "pass_conntrack")
    fw.set_list_value(ADDR[fam]["src"], layout.SRC_BL)  # blacklisted, generation unchanged
    fw.expect(reply(fam, "tcp"), "drop_blacklist")
    fw.expect(established(fam), "pass_conntrack")


@fams
def test_egress_ignores_what_has_no_ports(fw, fam):
    fw.config(ct_enabled=1, **CT_ALL)
    pkts = [
        eth() / ARP(),
        eth() / ip(fam, src=ADDR[fam]["local"], dst=ADDR[fam]["src"], proto=47)
        if fam == 4 else eth() / ip(fam, src=ADDR[fam]["local"], dst=ADDR[fam]["src"], nh=47),
        # truncated TCP (the kernel's skb test run refuses a truncated IP header)
        bytes(outbound(fam, "tcp"))[:14 + (20 if fam == 4 else 40) + 10],
        bytes(outbound(fam, "tcp", vlans=(1, 2, 3))),      # third tag
    ]
    for pkt in pkts:
        delta, dummy = egress(fw, pkt)
        assert delta == {}
    assert fw.ct_entries() == {}


def test_egress_returns_ok_with_conntrack_off(fw):
    for pkt in (outbound(4, "tcp"), outbound(6, "udp"), eth() / ARP(), bytes(eth())[:14]):
        delta, dummy = egress(fw, pkt)
        assert delta == {}


def test_conntrack_fills_lru_without_failing(fw):
    """ct is an LRU: more flows than NETXFW_CT_SIZE (64 here) evict old ones."""
    fw.config(ct_enabled=1, **CT_ALL)
    for port in range(30000, 30200):
        egress(fw, tcp(4, sport=port, dport=443, src=ADDR[4]["local"], dst=ADDR[4]["src"]))
    assert 0 < len(fw.ct_entries()) <= 64 + 8


@fams
@protos
def test_egress_to_a_blacklisted_peer_opens_no_flow(fw, fam, proto):
    """After a block purges a flow, the host's retransmissions must not re-open the fast path."""
    fw.config(policy=1, ct_enabled=1, **CT_ALL)
    fw.blacklist(host(fam, "src"))
    egress(fw, outbound(fam, proto))
    assert fw.ct_entries() == {}
    fw.expect(reply(fam, proto), "drop_blacklist")


@fams
def test_default_settings_keep_an_idle_outbound_connection(fw, fam):
    """An ssh session this host opened sits idle for an hour; then the server speaks first (the output
    of a long command, an IMAP IDLE push). Under the default settings and policy deny its segment
    passes: netfilter keeps an established flow for 5 days (nf_conntrack_tcp_timeout_established),
    and a host whose peer alone speaks next never refreshes the entry itself."""
    settings = program_settings.normalize_program({"policy": "deny"})
    for index, value in program_settings.runtime_config(settings).items():
        fw.t("config")[index] = fw.t("config").Leaf(value)
    egress(fw, outbound(fam, "tcp"))
    fw.expect(eth() / ip(fam) / TCP(sport=REMOTE_PORT, dport=LOCAL_PORT, flags="SA", seq=5000, ack=1), "pass_conntrack")
    egress(fw, eth() / ip(fam, ADDR[fam]["local"], ADDR[fam]["src"]) / TCP(sport=LOCAL_PORT, dport=REMOTE_PORT, flags="A"))
    (last_seen, flags), = fw.ct_entries().values()
    assert flags & 0xff == ESTABLISHED
    fw.ct_put(reply_key(fam, "tcp"), last_seen - 3600 * 10**9, flags)
    fw.expect(eth() / ip(fam) / TCP(sport=REMOTE_PORT, dport=LOCAL_PORT, flags="PA", seq=5001, ack=1), "pass_conntrack")
