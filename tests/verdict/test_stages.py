# SPDX-License-Identifier: GPL-2.0-or-later
"""Ingress stages 4..8 (whitelist, blacklist, port rules, ICMP bucket, policy),
for IPv4 and IPv6, and the order between them."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from verdict_packets import (
    ADDR, FAMILIES, ICMP_P, TCP_P, UDP_P, XDP_PASS, host, now_ns, ping, tcp, udp,
)

fams = pytest.mark.parametrize("fam", FAMILIES)

ALLOW, DENY = 1, 2


# ---- default policy ----

@fams
def test_default_allow(fw, fam):
    fw.expect(tcp(fam), "pass_policy")
    fw.expect(udp(fam), "pass_policy")


@fams
def test_default_deny(fw, fam):
    fw.config(policy=1)
    fw.expect(tcp(fam), "drop_policy")
    fw.expect(udp(fam), "drop_policy")


@fams
def test_unknown_policy_value_denies(fw, fam):
    fw.config(policy=7)
    fw.expect(tcp(fam), "drop_policy")


def test_config_applies_from_next_packet(fw):
    fw.expect(tcp(4), "pass_policy")
    fw.config(policy=1)
    fw.expect(tcp(4), "drop_policy")
    fw.config(policy=0)
    fw.expect(tcp(4), "pass_policy")


# ---- whitelist ----

@fams
def test_whitelist_host_passes_under_deny(fw, fam):
    fw.config(policy=1)
    fw.whitelist(host(fam))
    fw.expect(tcp(fam), "pass_whitelist")
    fw.expect(tcp(fam, src=ADDR[fam]["peer"]), "drop_policy")


@fams
def test_whitelist_prefix_passes_under_deny(fw, fam):
    fw.config(policy=1)
    fw.whitelist(ADDR[fam]["net"])
    fw.expect(tcp(fam), "pass_whitelist")
    fw.expect(tcp(fam, src=ADDR[fam]["peer"]), "pass_whitelist")
    fw.expect(tcp(fam, src=ADDR[fam]["other"]), "drop_policy")


@fams
def test_whitelist_beats_blacklist_and_deny_rule(fw, fam):
    fw.whitelist(ADDR[fam]["net"])
    fw.blacklist(host(fam))
    fw.rule(host(fam), TCP_P, 443, DENY)
    fw.expect(tcp(fam), "pass_whitelist")


# ---- blacklist ----

@fams
def test_blacklist_host(fw, fam):
    fw.blacklist(host(fam))
    fw.expect(tcp(fam), "drop_blacklist")
    fw.expect(ping(fam), "drop_blacklist")
    fw.expect(tcp(fam, src=ADDR[fam]["peer"]), "pass_policy")


@fams
def test_blacklist_prefix(fw, fam):
    fw.blacklist(ADDR[fam]["net"])
    fw.expect(tcp(fam), "drop_blacklist")
    fw.expect(udp(fam, src=ADDR[fam]["peer"]), "drop_blacklist")
    fw.expect(tcp(fam, src=ADDR[fam]["other"]), "pass_policy")


@fams
@pytest.mark.parametrize("entry", ["host", "prefix"])
def test_blacklist_expiry(fw, fam, entry):
    cidr = host(fam) if entry == "host" else ADDR[fam]["net"]
    fw.blacklist(cidr, expires_ns=now_ns() - 1000000)
    fw.expect(tcp(fam), "pass_policy")
    fw.blacklist(cidr, expires_ns=now_ns() + 60 * 10**9)
    fw.expect(tcp(fam), "drop_blacklist")
    fw.blacklist(cidr, expires_ns=0)
    fw.expect(tcp(fam), "drop_blacklist")


@fams
def test_expired_host_entry_falls_back_to_prefix(fw, fam):
    fw.blacklist(host(fam), expires_ns=now_ns() - 1)
    fw.blacklist(ADDR[fam]["net"])
    fw.expect(tcp(fam), "drop_blacklist")


@fams
def test_blacklist_beats_allow_rule(fw, fam):
    fw.config(policy=1)
    fw.blacklist(host(fam))
    fw.rule(host(fam), TCP_P, 443, ALLOW)
    fw.expect(tcp(fam), "drop_blacklist")


# ---- IP + port rules ----

@fams
def test_rule_allow_under_deny(fw, fam):
    fw.config(policy=1)
    fw.rule(host(fam), TCP_P, 443, ALLOW)
    fw.expect(tcp(fam, dport=443), "pass_rule")
    fw.expect(tcp(fam, dport=444), "drop_policy")
    fw.expect(udp(fam, dport=443), "drop_policy")
    fw.expect(tcp(fam, dport=443, src=ADDR[fam]["peer"]), "drop_policy")


@fams
def test_rule_deny_under_allow(fw, fam):
    fw.rule(ADDR[fam]["net"], UDP_P, 53, DENY)
    fw.expect(udp(fam, dport=53), "drop_rule")
    fw.expect(udp(fam, dport=53, src=ADDR[fam]["peer"]), "drop_rule")
    fw.expect(tcp(fam, dport=53), "pass_policy")
    fw.expect(udp(fam, dport=53, src=ADDR[fam]["other"]), "pass_policy")


@fams
def test_rule_most_specific_source_wins(fw, fam):
    fw.rule(ADDR[fam]["net"], TCP_P, 22, DENY)
    fw.rule(host(fam), TCP_P, 22, ALLOW)
    fw.expect(tcp(fam, dport=22), "pass_rule")
    fw.expect(tcp(fam, dport=22, src=ADDR[fam]["peer"]), "drop_rule")


@fams
def test_rule_any_source(fw, fam):
    any_src = "0.0.0.0/0" if fam == 4 else "::/0"
    fw.rule(any_src, TCP_P, 8080, DENY)  # key prefixlen 24: proto and port only
    fw.rule(host(fam), TCP_P, 8080, ALLOW)
    fw.expect(tcp(fam, dport=8080, src=ADDR[fam]["other"]), "drop_rule")
    fw.expect(tcp(fam, dport=8080, src=ADDR[fam]["peer"]), "drop_rule")
    fw.expect(tcp(fam, dport=8080), "pass_rule")
    fw.expect(tcp(fam, dport=8081), "pass_policy")


@fams
def test_rule_ignores_icmp(fw, fam):
    fw.config(policy=1)
    any_src = "0.0.0.0/0" if fam == 4 else "::/0"
    fw.rule(any_src, ICMP_P if fam == 4 else 58, 0, ALLOW)
    fw.expect(ping(fam), "drop_policy")


# ---- ICMP token bucket ----

@fams
def test_icmp_bucket_burst_then_drop(fw, fam):
    fw.config(policy=1, icmp_rate=1, icmp_burst=3)
    for dummy in range(3):
        fw.expect(ping(fam), "pass_icmp")
    fw.expect(ping(fam), "drop_icmp_rate")
    fw.expect(ping(fam), "drop_icmp_rate")
    # TCP is not ICMP: it still meets the policy
    fw.expect(tcp(fam), "drop_policy")


@fams
def test_icmp_bucket_refills_with_time(fw, fam):
    fw.config(icmp_rate=2, icmp_burst=1)
    fw.expect(ping(fam), "pass_icmp")
    fw.expect(ping(fam), "drop_icmp_rate")
    # pretend 0.6 s went by: at 2/s that is one packet of credit
    bucket = fw.bucket()
    fw.set_bucket(bucket.credit_ns, bucket.last_ns - 600 * 10**6)
    fw.expect(ping(fam), "pass_icmp")
    fw.expect(ping(fam), "drop_icmp_rate")


def test_icmp_bucket_credit_is_in_ns(fw):
    fw.config(icmp_rate=4, icmp_burst=2)
    fw.expect(ping(4), "pass_icmp")
    bucket = fw.bucket()
    # capacity 2 * 250 ms, minus one packet of 250 ms
    assert bucket.credit_ns == 250 * 10**6
    assert 0 < bucket.last_ns <= now_ns()


def test_icmp_bucket_is_shared_by_both_families(fw):
    fw.config(icmp_rate=1, icmp_burst=2)
    fw.expect(ping(4), "pass_icmp")
    fw.expect(ping(6), "pass_icmp")
    fw.expect(ping(4), "drop_icmp_rate")
    fw.expect(ping(6), "drop_icmp_rate")


@fams
@pytest.mark.parametrize("policy,reason", [(0, "pass_policy"), (1, "drop_policy")])
def test_icmp_rate_zero_falls_to_policy(fw, fam, policy, reason):
    fw.config(policy=policy, icmp_rate=0, icmp_burst=5)
    for dummy in range(3):
        fw.expect(ping(fam), reason)


@fams
def test_icmp_bucket_after_blacklist(fw, fam):
    fw.config(icmp_rate=1000, icmp_burst=10)
    fw.blacklist(host(fam))
    fw.expect(ping(fam), "drop_blacklist")
    fw.whitelist(host(fam, "peer"))
    fw.expect(ping(fam, src=ADDR[fam]["peer"]), "pass_whitelist")


def test_counters_accumulate_bytes(fw):
    pkt = tcp(4)
    before = fw.counters()["pass_policy"]
    for dummy in range(3):
        retval, dummy, dummy = fw.xdp(pkt)
        assert retval == XDP_PASS
    after = fw.counters()["pass_policy"]
    assert (after[0] - before[0], after[1] - before[1]) == (3, 3 * len(pkt))
