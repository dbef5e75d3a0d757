# SPDX-License-Identifier: GPL-2.0-or-later
"""Drop sampling (docs/internals.md, "Drop sampling"): drop events in the drops ring buffer,
bounded by a token bucket in the data plane, read with libbpf's ring_buffer via ctypes."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

import pytest

from verdict_packets import ADDR, FAMILIES, Ether, Raw, packed, tcp, udp

fams = pytest.mark.parametrize("fam", FAMILIES)


def test_off_by_default_in_the_map(fw):
    fw.config(policy=1)
    for dummy in range(5):
        fw.expect(udp(4), "drop_policy")
    assert fw.drop_events() == []


@fams
def test_a_drop_is_sampled_with_reason_addresses_ports(fw, fam):
    fw.config(policy=1, droplog_rate=100, droplog_burst=10)
    pkt = udp(fam, sport=40001, dport=53)
    fw.expect(pkt, "drop_policy")
    [ev] = fw.drop_events()
    assert ev["reason"] == "drop_policy" and ev["family"] == fam and ev["proto"] == 17
    assert ev["saddr"] == packed(ADDR[fam]["src"]) and ev["daddr"] == packed(ADDR[fam]["local"])
    assert (ev["sport"], ev["dport"], ev["len"]) == (40001, 53, len(bytes(pkt)))
    assert ev["ts_ns"] > 0


def test_passes_are_not_sampled(fw):
    fw.config(policy=0, droplog_rate=100, droplog_burst=10)
    fw.expect(udp(4), "pass_policy")
    assert fw.drop_events() == []


def test_other_drop_reasons_are_sampled(fw):
    fw.config(policy=0, droplog_rate=100, droplog_burst=10)
    fw.blacklist(ADDR[4]["src"] + "/32")
    fw.expect(tcp(4), "drop_blacklist")
    fw.expect(Ether(type=0x0800) / Raw(b"\x45\x00"), "drop_malformed")
    events = fw.drop_events()
    assert [e["reason"] for e in events] == ["drop_blacklist", "drop_malformed"]
    assert events[1]["family"] == 0 and events[1]["saddr"] == b""


def test_flood_is_bounded_by_the_bucket(fw):
    fw.config(policy=1, droplog_rate=1, droplog_burst=5)
    start = time.monotonic()
    for dummy in range(200):
        fw.expect(udp(4), "drop_policy")
    elapsed = time.monotonic() - start
    events = fw.drop_events()
    # the burst, plus at most one per second elapsed (rate 1)
    assert 5 <= len(events) <= 5 + int(elapsed) + 1, (len(events), elapsed)


def test_reader_limit_leaves_the_rest(fw):
    fw.config(policy=1, droplog_rate=100, droplog_burst=10)
    for port in range(1, 5):
        fw.expect(udp(4, dport=port), "drop_policy")
    assert [e["dport"] for e in fw.drop_events(limit=2)] == [1, 2]
    assert [e["dport"] for e in fw.drop_events()] == [3, 4]
