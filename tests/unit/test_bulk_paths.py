# SPDX-License-Identifier: GPL-2.0-or-later
"""The whole-list paths of a large add (rules._bulk, the empty-list diff, the blacklist-alone
resolve, to_maps' split, layout.src_filter_bits) give exactly what the per-entry paths give: the
same entries, keys, order, map contents and errors, on a random mix with the edge cases."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ipaddress
import json
import random
import socket

import pytest

from ansible_collections.netxfw.firewall.plugins.module_utils import layout, rules, sources, state
from ansible_collections.netxfw.firewall.plugins.module_utils.errors import NetxfwError

EDGE = ["10.0.0.0/8", "10.0.0.1/8", " 10.0.0.0/8 ", "10.0.0.0/8 ", "10.0.0.0 /8", "10.0.0.0/08", "10.0.0.0/+8",
        "10.0.0.0/", "10.0.0.0//8", "10.0.0.0/33", "10.0.0.0/8/1", "10.0.0.7", "10.0.0.7/32", "0.0.0.0/0",
        "0.0.0.0", "255.255.255.255", "10.1", "10.0.0", "010.0.0.1", "10.0.0.01", "0x0a.0.0.1", "10.0.0.256",
        "", "/", "/8", "abc", "10.0.0.1%eth0", "198.51.100.7\x00", "198.51.1\u0660.7", "2001:db8::/32",
        "::ffff:198.51.100.7", "198.51.100.0/24", "198.51.100.128/25", "198.51.100.128/24"]


def v4_texts(rnd, count):
    """Plain IPv4 CIDRs and addresses (most), with duplicates written both ways."""
    out = []
    for dummy in range(count):
        value = rnd.randrange(1 << 32)
        plen = rnd.choice((32, 32, 24, 16, 8, 0, rnd.randrange(33)))
        value &= (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF
        text = "%d.%d.%d.%d" % (value >> 24, value >> 16 & 255, value >> 8 & 255, value & 255)
        out.append(text if plen == 32 and rnd.random() < 0.3 else "%s/%d" % (text, plen))
    out += [text.split("/")[0] if text.endswith("/32") else text + "/32" if "/" not in text else text
            for text in out[:count // 10]]
    return out


EDGE6 = ["2001:DB8::/32", "2001:db8::1/32", "::ffff:198.51.100.7", "::ffff:198.51.100.7/128", "2001:db8:0::/48",
         "2001:db8::/129", "2001:db8::/048", "fe80::1%eth0", "::/0", "::", "::1", ":::", "2001:db8::/", "1::2:3:4:5:6:7",
         "2001:0db8::/32", " 2001:db8::/32", "2001:db8::/32 ", "1:0:0:2::/64", "2001:db8::/+32", "2001:db8:::/48",
         "2001:db8::/32/1", "::1.2.3.4", "1:2:3:4:5:6:7:8:9"]


def v6_texts(rnd, count):
    """IPv6 CIDRs and addresses as ipaddress prints them (runs of zero groups of every length), with
    duplicates written both ways."""
    out = []
    for dummy in range(count):
        value = 0
        for group in range(8):
            value = value << 16 | (0 if rnd.random() < 0.5 else rnd.randrange(1 << 16))
        plen = rnd.choice((128, 128, 64, 48, 32, 0, rnd.randrange(129)))
        value &= ((1 << 128) - 1) ^ ((1 << (128 - plen)) - 1)
        text = str(ipaddress.IPv6Address(value))
        if "." in socket.inet_ntop(socket.AF_INET6, ipaddress.IPv6Address(value).packed):
            continue  # ::a.b.c.d, ::ffff:a.b.c.d: the C library prints them otherwise (EDGE6 has them)
        out.append(text if plen == 128 and rnd.random() < 0.3 else "%s/%d" % (text, plen))
    out += [text.split("/")[0] if text.endswith("/128") else text + "/128" if "/" not in text else text
            for text in out[:count // 10]]
    return out


def lists(seed):
    """Lists the bulk path takes (plain IPv4 alone, then IPv4 and IPv6 mixed) and lists with one edge
    case each."""
    rnd = random.Random(seed)
    plain = v4_texts(rnd, 2000)
    yield plain
    yield []
    both = plain[:1000] + v6_texts(rnd, 1000)
    rnd.shuffle(both)
    yield both
    yield v6_texts(rnd, 300)
    for edge in EDGE + EDGE6:
        for base in (plain[:200], both[:200]):
            mixed = list(base)
            mixed.insert(rnd.randrange(len(mixed) + 1), edge)
            yield mixed


def outcome(call):
    try:
        return "ok", call()
    except NetxfwError as exc:
        return "error", str(exc)


@pytest.mark.parametrize("kind", ["whitelist", "blacklist"])
def test_normalize_bulk_matches_per_entry(kind, monkeypatch):
    for entries in lists(15):
        keys = rules.KeyCache()
        fast = outcome(lambda: rules.normalize(kind, entries, keys=keys))
        fast_keys = keys
        with monkeypatch.context() as patch:
            patch.setattr(rules, "_bulk", lambda texts, keys=None: None)
            keys = rules.KeyCache()
            slow = outcome(lambda: rules.normalize(kind, entries, keys=keys))
        assert fast == slow, entries
        assert keys.bulk_cidrs is None
        if fast[0] == "ok" and fast[1]:
            cidrs = fast[1] if kind == "whitelist" else [entry["cidr"] for entry in fast[1]]
            raw = fast_keys.key_bytes(cidrs)  # the bulk list's key bytes: those of the per-entry parse
            if fast_keys.bulk_cidrs is not None:
                assert raw == [keys[cidr][2] for cidr in cidrs]
                assert fast_keys.key_bytes(cidrs[1:]) is None and fast_keys.key_bytes(list(reversed(cidrs))) is None
        fast_keys.expand()
        assert fast_keys.bulk_cidrs is None
        assert fast_keys == keys


def test_bulk_path_is_taken_for_plain_ipv4_and_ipv6():
    entries = next(lists(16))
    assert rules._bulk(entries) is not None
    assert rules._bulk(entries + ["2001:db8::/32", "2001:db8::7"]) is not None
    assert rules._bulk(entries + ["10.0.0.1/8"]) is None
    assert rules._bulk(entries + ["2001:db8::1/32"]) is None
    assert rules._bulk(entries + ["::ffff:198.51.100.7"]) is None


@pytest.mark.parametrize("kind", ["whitelist", "blacklist"])
def test_diff_of_an_empty_list_matches_the_general_path(kind):
    wanted = rules.normalize(kind, next(lists(17)))
    fast = rules.diff(kind, [], wanted, "present", False, wanted_sorted=True)
    general = rules.diff(kind, [], wanted, "present", False, wanted_sorted=False)  # never takes the shortcut
    assert fast == general
    assert fast[0] == wanted and fast[0] is not wanted


def test_diff_of_an_empty_list_with_expiries_takes_the_general_path():
    wanted = [{"cidr": "198.51.100.0/24", "expires": 1.0}, {"cidr": "203.0.113.0/24", "expires": None}]
    assert rules.diff("blacklist", [], wanted, "present", False, now=10.0, wanted_sorted=True) == \
        ([wanted[1]], [wanted[1]], [])


def test_resolve_of_a_blacklist_alone_matches_the_general_path():
    blacklist = rules.normalize("blacklist", next(lists(18)))
    alone = sources.resolve([], blacklist, [])
    general = sources.resolve(iter(()), blacklist, iter(()))  # an iterator is never "empty": the general path
    assert alone == general
    assert list(alone) == list(general)


def to_maps_per_entry(resolved, expiry_ns):
    """to_maps as one loop over the entries (the oracle)."""
    out = dict((name, {}) for name in sources.SRC_MAPS)
    for (family, where, key), (bits, exp) in resolved.items():
        if bits & layout.SRC_BL:
            bits |= min(expiry_ns(exp), layout.SRC_EXPIRY_MASK)
        out[sources.map_name(family, where)][key] = layout.encode_u64(bits)
    return out


@pytest.mark.parametrize("seed", range(3))
def test_to_maps_split_matches_one_loop(seed):
    rnd = random.Random(seed)
    blacklist = [{"cidr": cidr, "expires": rnd.choice((None, 2e9, 3e9))}
                 for cidr in rules.normalize("whitelist", next(lists(seed)) + ["2001:db8::/48", "2001:db8::1"])]
    whitelist = ["198.51.100.0/24", "2001:db8::7"]
    rules_ = [{"source": "203.0.113.0/24"}, {"source": "any"}][:seed]
    resolved = sources.resolve(whitelist, blacklist, rules_)

    def expiry_ns(exp):
        return 0 if exp is None else int(exp)
    got = sources.to_maps(resolved, expiry_ns)
    want = to_maps_per_entry(resolved, expiry_ns)
    assert got == want
    assert all(list(got[name]) == list(want[name]) for name in want)


def test_src_filter_bits_match_one_by_one():
    rnd = random.Random(19)
    for size in (4, 16):
        keys = [bytes(rnd.randrange(256) for dummy in range(size)) for dummy in range(500)]
        for words in (64, 1 << 14, 1 << 20):
            assert layout.src_filter_bits(keys, words) == [layout.src_filter_bit(key, words) for key in keys]
    mixed = [b"\1\2\3\4", bytes(range(16))]
    assert layout.src_filter_bits(mixed, 64) == [layout.src_filter_bit(key, 64) for key in mixed]
    assert layout.src_filter_bits([], 64) == []


def test_expected_of_a_blacklist_alone_matches_the_general_path():
    keys = rules.KeyCache()
    blacklist = rules.normalize("blacklist", next(lists(20)) + ["2001:db8::/48", "2001:db8::1"], keys=keys)
    alone = sources.expected({"blacklist": blacklist}, keys=keys)
    general = sources.to_maps(sources.resolve(iter(()), blacklist, iter(())), lambda exp: 0)
    assert alone == general
    assert all(list(alone[name]) == list(general[name]) for name in general)
    assert sum(map(len, alone.values())) == len(blacklist)


@pytest.mark.parametrize("kind", ["whitelist", "blacklist"])
@pytest.mark.parametrize("which", [0, 2])
def test_counts_and_expected_of_a_bulk_list_match_the_per_entry_keys(kind, which):
    # plain IPv4, then IPv4 and IPv6, some listed twice: lists _bulk takes, kept whole in the cache
    entries = list(lists(21))[which]
    keys = rules.KeyCache()
    listed = rules.normalize(kind, entries, keys=keys)
    assert keys.bulk_cidrs is not None
    blacklist = listed if kind == "blacklist" else [{"cidr": cidr, "expires": None} for cidr in listed]
    data = {kind: listed}
    assert sources.counts(data, kind, keys) == sources.counts(data, kind)
    assert keys.bulk_cidrs is not None  # answered from the bulk list
    for part in (blacklist, blacklist[1:]):  # the normalised list, and another one (the cache expands)
        alone = sources.expected({"blacklist": part}, keys=keys)
        general = sources.to_maps(sources.resolve(iter(()), part, iter(())), lambda exp: 0)
        assert alone == general
        assert all(list(alone[name]) == list(general[name]) for name in general)
        assert sources.expected({"blacklist": part}) == general
    assert keys.bulk_cidrs is None


def test_compact_rules_json_matches_the_encoder():
    """state.compact_json joins a never-expiring blacklist: the text json.dumps gives, else json.dumps decides."""
    blacklist = rules.normalize("blacklist", next(lists(22)))
    base = {"version": 1, "generation": 7, "whitelist": ["198.51.100.0/24"], "port_rules": []}
    odd = [[{"cidr": "a\"b", "expires": None}], [{"cidr": "a\\b", "expires": None}], [{"cidr": "\u00e9", "expires": None}],
           [{"cidr": "a\nb", "expires": None}], [{"cidr": "a\x7fb", "expires": None}], [{"cidr": "", "expires": None}],
           [{"cidr": "10.0.0.0/8", "expires": 5.0}], [{"cidr": "10.0.0.0/8"}], [{"cidr": "10.0.0.0/8", "expires": None, "x": 1}],
           [{"cidr": 7, "expires": None}], [{"expires": None, "other": 1}], [], blacklist[:1],
           blacklist[:2] + [{"cidr": 'b"', "expires": None}], [{"cidr": '", "expires": null}, {"cidr": "', "expires": None}] * 2]
    for listed in [blacklist] + odd:
        data = dict(base, blacklist=listed)
        assert state.compact_json(data) == json.dumps(data, sort_keys=True), listed
        assert json.loads(state.compact_json(data)) == data
    assert state.compact_json({"version": 1, "blacklist": blacklist}) == json.dumps({"version": 1, "blacklist": blacklist},
                                                                                    sort_keys=True)


def test_compact_rules_json_joins_a_never_expiring_blacklist(monkeypatch):
    encoded = []
    dumps = json.dumps
    monkeypatch.setattr(state.json, "dumps", lambda obj, **kw: encoded.append(obj.get("blacklist")) or dumps(obj, **kw))
    blacklist = rules.normalize("blacklist", next(lists(23)))
    state.compact_json({"version": 1, "blacklist": blacklist})
    assert encoded == [[]]  # the entries were joined, never encoded one by one
