# SPDX-License-Identifier: GPL-2.0-or-later
"""The exact-source prefilter (docs/internals.md, "The exact-source prefilter"): a bit per hash of a source
address in src_filter, set for every key of src4_host/src6_host. A clear bit skips the exact-address lookup,
so a missing bit would let a listed address skip its entry: these tests prove that the engine's writer
(sources.write, as conftest.sync_sources runs it) and the data plane's auto-ban leave none missing, with
blacklisted exact hosts dropped for SYN, ACK and UDP after each. The reload's side is tests/reload's."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import random

import pytest

from ansible_collections.netxfw.firewall.plugins.module_utils import layout, sources
from verdict_packets import ADDR, FAMILIES, TCP, eth, handshake, ip, now_ns, udp

fams = pytest.mark.parametrize("fam", FAMILIES)
S = 10 ** 9
FILTER = sources.FILTER_MAP


def addresses(fam, count, seed):
    """Random addresses of the test ranges (198.51.100.0/24 and 203.0.113.0/24; 2001:db8::/32)."""
    rnd = random.Random(seed)
    out = set()
    while len(out) < count:
        if fam == 4:
            out.add(str(ipaddress.ip_address(rnd.choice((0xC6336400, 0xCB007100)) | rnd.randrange(2, 255))))
        else:
            out.add(str(ipaddress.ip_address((0x20010DB8 << 96) | rnd.getrandbits(96))))
    return sorted(out)


def key(addr):
    return ipaddress.ip_address(addr).packed


def word_bit(fw, addr):
    bit = layout.src_filter_bit(key(addr), fw.src_maps[FILTER].max_entries)
    return bit >> 6, bit & 63


def filter_words(fw):
    return dict((int.from_bytes(k, "little"), layout.decode_u64(v)) for k, v in fw.src_maps[FILTER].items() if v != bytes(8))


def expected_words(fw, addrs):
    out = {}
    for addr in addrs:
        word, bit = word_bit(fw, addr)
        out[word] = out.get(word, 0) | 1 << bit
    return out


def flood(fam, src):
    """A SYN, an ACK without a flow, a UDP datagram: what a listed host's flood is made of."""
    return (eth() / ip(fam, src) / TCP(sport=40001, dport=443, flags="S"),
            eth() / ip(fam, src) / TCP(sport=40002, dport=443, flags="A"),
            udp(fam, src=src))


def expect_dropped(fw, fam, addrs, reason="drop_blacklist"):
    for addr in addrs:
        for pkt in flood(fam, addr):
            fw.expect(pkt, reason)


@fams
def test_the_hash_is_the_data_planes(fw, fam):
    """Each address, alone in the filter with the bit layout.src_filter_bit gives it, is looked up (the
    Python hash and bpf/lib/sources.h agree); without it, it is not."""
    fw.config(policy=1)
    for addr in addresses(fam, 24, seed=fam):
        fw.reset()
        fw.config(policy=1)
        fw.set_list_value(addr, layout.SRC_BL, prefilter=False)
        fw.expect(flood(fam, addr)[0], "drop_policy")  # no bit, no lookup: the entry is not seen
        fw.whitelist(addr + ("/32" if fam == 4 else "/128"))
        assert filter_words(fw) == expected_words(fw, [addr])
        fw.expect(flood(fam, addr)[0], "pass_whitelist")


@fams
def test_engine_add_and_remove_leave_no_bit_missing(fw, fam):
    """Blacklisted exact hosts added in steps, then some removed (their bits cleared after the deletes, by a
    rebuild that keeps the bits of the others, sharing a word with them or not): every listed host drops for
    SYN, ACK (no flow) and UDP, after
    each write, and the filter holds exactly the bits of the host keys."""
    fw.config(policy=0, ct_enabled=1, ct_timeout_ns=300 * S, ct_udp_stream_ns=300 * S)
    addrs = addresses(fam, 160, seed=10 + fam)
    words = {}
    for addr in addrs:
        words.setdefault(word_bit(fw, addr)[0], []).append(addr)
    shared = [group for group in words.values() if len(group) > 1]
    assert shared, "no two addresses share a filter word: pick more"
    removed = set(group[0] for group in shared) | set(addrs[::3])
    kept = [a for a in addrs if a not in removed]
    assert any(set(group) & removed and set(group) - removed for group in shared)
    plen = "/32" if fam == 4 else "/128"
    for step in (addrs[:40], addrs[40:]):
        for addr in step:
            fw.bl[addr + plen] = None
        fw.sync_sources()
        expect_dropped(fw, fam, step)
    assert filter_words(fw) == expected_words(fw, addrs)
    for addr in removed:
        del fw.bl[addr + plen]
    fw.sync_sources()
    assert filter_words(fw) == expected_words(fw, kept)
    expect_dropped(fw, fam, kept)
    for addr in sorted(removed)[:10]:
        fw.expect(flood(fam, addr)[2], "pass_policy")


@fams
def test_a_ban_kept_by_the_engine_keeps_its_bit(fw, fam):
    """A live auto-ban the engine keeps (not in its lists) keeps its bit through a rebuild, and one whose
    bit was lost (the data plane's OR undone by an engine write of the word) gets it back at the engine's
    next write of the filter."""
    fw.config(policy=0)
    banned, listed = addresses(fam, 2, seed=20 + fam)
    ban = layout.SRC_BAN | layout.SRC_BL | (now_ns() + 60 * S)
    fw.set_list_value(banned, ban)
    fw.blacklist(listed + ("/32" if fam == 4 else "/128"))
    del fw.bl[listed + ("/32" if fam == 4 else "/128")]
    fw.sync_sources()  # deletes the listed host: a rebuild
    assert filter_words(fw) == expected_words(fw, [banned])
    expect_dropped(fw, fam, [banned])
    fw.src_maps[FILTER].update(layout.encode_u32(word_bit(fw, banned)[0]), layout.encode_u64(0))  # the lost OR
    fw.blacklist(listed + ("/32" if fam == 4 else "/128"))
    assert filter_words(fw) == expected_words(fw, [banned, listed])
    expect_dropped(fw, fam, [banned, listed])


@fams
def test_an_auto_ban_sets_its_bit(fw, fam):
    """The data plane's auto-ban sets its bit (from an empty filter, the engine having written none for
    the address): the banned source drops for SYN, ACK without a flow and UDP."""
    fw.config(policy=0, ct_enabled=1, ct_tcp_syn_ns=60 * S, ct_timeout_ns=300 * S)
    fw.ratelimit(ADDR[fam]["net"], rate=1, burst=1, syn_only=True, ban_ttl_ns=60 * S)
    src = ADDR[fam]["src"]
    assert filter_words(fw) == {}
    handshake(fw, fam, 41000)
    dummy, (dummy, delta, length) = handshake(fw, fam, 41001)
    assert delta.get("auto_ban") == (1, length), delta
    assert fw.list_value(src) & layout.SRC_BAN
    assert filter_words(fw) == expected_words(fw, [src])
    expect_dropped(fw, fam, [src])
    fw.expect(udp(fam, src=ADDR[fam]["peer"]), "pass_policy")
