# SPDX-License-Identifier: GPL-2.0-or-later
"""Source classes without a kernel: sources.resolve, effective_expiry, to_maps, expected
(docs/internals.md, "Source classes"), and a model check of one lookup per source."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import struct

from hypothesis import given, settings, strategies as st

from ansible_collections.netxfw.firewall.plugins.module_utils import layout, rules, sources

WL, BL, RULES, RL, BAN = layout.SRC_WL, layout.SRC_BL, layout.SRC_RULES, layout.SRC_RL, layout.SRC_BAN
ANY4 = (4, "lpm", struct.pack("=I", 0) + bytes(4))
ANY6 = (6, "lpm", struct.pack("=I", 0) + bytes(16))


def k(cidr):
    return rules.cidr_key(cidr)


def bl(cidr, expires=None):
    return {"cidr": cidr, "expires": expires}


def rule(source):
    return {"source": source}


def value(raw):
    return layout.decode_u64(raw)


# ---- resolve: own classes ----

def test_nothing_listed():
    assert sources.resolve([], [], []) == {}
    assert sources.to_maps({}, lambda e: 0) == dict((name, {}) for name in sources.SRC_MAPS)


def test_own_classes_without_nesting():
    out = sources.resolve(["203.0.113.0/24"], [bl("198.51.100.7/32", 50)], [rule("198.51.100.128/25")])
    assert out == {
        k("203.0.113.0/24"): (WL, None),
        k("198.51.100.7/32"): (BL, 50),
        k("198.51.100.128/25"): (RULES, None),
    }


def test_one_cidr_in_several_lists():
    out = sources.resolve(["198.51.100.0/24"], [bl("198.51.100.0/24", 7)], [rule("198.51.100.0/24")])
    assert out == {k("198.51.100.0/24"): (WL | BL | RULES, 7)}


def test_host_keys_and_lpm_keys():
    out = sources.resolve(["198.51.100.7", "2001:db8::1"], [bl("198.51.100.0/24")], [])
    assert set(out) == {(4, "host", bytes([198, 51, 100, 7])),
                        (6, "host", ipaddress.ip_address("2001:db8::1").packed),
                        (4, "lpm", struct.pack("=I", 24) + bytes([198, 51, 100, 0]))}


# ---- resolve: nesting ----

def test_whitelist_over_blacklist():
    """A blacklisted host inside a whitelisted prefix carries the whitelist (which wins)."""
    out = sources.resolve(["198.51.100.0/24"], [bl("198.51.100.7/32", 50), bl("198.51.100.16/28")], [])
    assert out[k("198.51.100.7/32")] == (WL | BL, 50)
    assert out[k("198.51.100.16/28")] == (WL | BL, None)
    assert out[k("198.51.100.0/24")] == (WL, None)


def test_blacklist_around_a_whitelisted_entry_is_not_added():
    """A whitelisted entry inside a blacklisted prefix needs only its whitelist."""
    out = sources.resolve(["198.51.100.7/32", "198.51.100.64/26"], [bl("198.51.100.0/24", 9)], [])
    assert out[k("198.51.100.7/32")] == (WL, None)
    assert out[k("198.51.100.64/26")] == (WL, None)
    assert out[k("198.51.100.0/24")] == (BL, 9)


def test_blacklist_over_rules():
    """A rule's source inside a blacklisted prefix carries its blacklist and expiry."""
    out = sources.resolve([], [bl("198.51.100.0/24", 500)], [rule("198.51.100.0/25"), rule("198.51.100.7/32")])
    assert out[k("198.51.100.0/25")] == (BL | RULES, 500)
    assert out[k("198.51.100.7/32")] == (BL | RULES, 500)
    assert out[k("198.51.100.0/24")] == (BL, 500)


def test_rules_over_blacklist_and_whitelist():
    """Entries inside a rule's source carry the rule bit."""
    out = sources.resolve(["198.51.100.9/32"], [bl("198.51.100.0/24", 5), bl("198.51.100.7/32")],
                          [rule("198.51.100.0/16")])
    assert out[k("198.51.100.0/24")] == (BL | RULES, 5)
    assert out[k("198.51.100.7/32")] == (BL | RULES, None)
    assert out[k("198.51.100.9/32")] == (WL | RULES, None)
    assert out[k("198.51.0.0/16")] == (RULES, None)


def test_expiry_propagation_takes_the_latest_cover():
    bls = [bl("203.0.113.0/16", 300), bl("203.0.113.0/24", 500), bl("203.0.113.16/28", 100)]
    out = sources.resolve([], bls, [rule("203.0.113.17/32"), rule("203.0.113.128/25"), rule("203.0.200.0/24")])
    assert out[k("203.0.113.17/32")] == (BL | RULES, 500)     # /16, /24, /28 cover it
    assert out[k("203.0.113.128/25")] == (BL | RULES, 500)    # /16, /24
    assert out[k("203.0.200.0/24")] == (BL | RULES, 300)      # /16 only
    assert out[k("203.0.113.16/28")] == (BL, 500)             # effective_expiry
    assert out[k("203.0.113.0/24")] == (BL, 500)
    assert out[k("203.0.0.0/16")] == (BL, 300)


def test_expiry_propagation_never_wins():
    out = sources.resolve([], [bl("203.0.113.0/24"), bl("203.0.113.16/28", 100), bl("203.0.113.17/32", 50)],
                          [rule("203.0.113.18/32")])
    assert out[k("203.0.113.16/28")] == (BL, None)
    assert out[k("203.0.113.17/32")] == (BL, None)
    assert out[k("203.0.113.18/32")] == (BL | RULES, None)


def test_own_expiry_later_than_the_cover_stays():
    out = sources.resolve([], [bl("203.0.113.0/24", 100), bl("203.0.113.17/32", 900)], [])
    assert out[k("203.0.113.17/32")] == (BL, 900)
    assert out[k("203.0.113.0/24")] == (BL, 100)


def test_siblings_and_neighbours_do_not_cover():
    out = sources.resolve(["198.51.100.0/25"], [bl("198.51.100.0/24", 5)],
                          [rule("198.51.100.200/32"), rule("198.51.101.0/24"), rule("198.51.100.128/25")])
    assert out[k("198.51.100.200/32")] == (BL | RULES, 5)     # in the /24, not in the whitelisted /25
    assert out[k("198.51.101.0/24")] == (RULES, None)         # the next /24
    assert out[k("198.51.100.128/25")] == (BL | RULES, 5)
    assert out[k("198.51.100.0/25")] == (WL, None)


def test_ipv6_nesting():
    out = sources.resolve(["2001:db8:1::/48"], [bl("2001:db8::/32", 70), bl("2001:db8:1::7/128", 20)],
                          [rule("2001:db8:1::7/128"), rule("2001:db8:2::/64")])
    assert out[k("2001:db8:1::7/128")] == (WL | BL | RULES, 70)   # the /32's later expiry
    assert out[k("2001:db8:2::/64")] == (BL | RULES, 70)
    assert out[k("2001:db8:1::/48")] == (WL, None)
    assert out[k("2001:db8::/32")] == (BL, 70)


def test_families_do_not_cover_each_other():
    out = sources.resolve(["0.0.0.0/0"], [bl("2001:db8::7/128", 3)], [rule("::/0"), rule("198.51.100.7/32")])
    assert out[k("2001:db8::7/128")] == (BL | RULES, 3)
    assert out[k("198.51.100.7/32")] == (WL | RULES, None)
    assert out[ANY4] == (WL, None)
    assert out[ANY6] == (RULES, None)


def test_ipv4_mapped_ipv6_stays_ipv6():
    """::ffff:0:0/96 is an IPv6 bogon prefix, not all of IPv4: it covers no IPv4 source."""
    out = sources.resolve([], [bl("::ffff:0:0/96", 4)], [rule("198.51.100.7/32")])
    assert out[k("198.51.100.7/32")] == (RULES, None)
    assert k("::ffff:0:0/96")[0] == 6 and out[k("::ffff:0:0/96")] == (BL, 4)
    assert k("::ffff:198.51.100.0/120") != k("198.51.100.0/24")


def test_an_expiry_past_59_bits_saturates():
    """An expiry the maps cannot hold (stored before the limit, or after years of uptime) blocks as long
    as it can: it never wraps into the past."""
    maps = sources.to_maps(sources.resolve([], [bl("198.51.100.0/24", 1)], []), lambda e: layout.SRC_EXPIRY_MASK + 5)
    value = layout.decode_u64(maps["src4_lpm"][k("198.51.100.0/24")[2]])
    assert value == layout.SRC_BL | layout.SRC_EXPIRY_MASK


def test_ratelimit_sources_nest_like_rule_sources():
    out = sources.resolve(["198.51.100.9/32"], [bl("198.51.100.0/24", 5)], [rule("198.51.100.0/25")],
                          [rule("198.51.0.0/16"), rule("198.51.100.7/32")])
    assert out[k("198.51.0.0/16")] == (RL, None)
    assert out[k("198.51.100.0/24")] == (BL | RL, 5)
    assert out[k("198.51.100.0/25")] == (BL | RULES | RL, 5)
    assert out[k("198.51.100.7/32")] == (BL | RULES | RL, 5)
    assert out[k("198.51.100.9/32")] == (WL | RULES | RL, None)


# ---- resolve: "any" ----

def test_any_source_is_both_zero_prefixes():
    assert sources.resolve([], [], [rule("any")]) == {ANY4: (RULES, None), ANY6: (RULES, None)}


def test_any_source_covers_every_entry():
    out = sources.resolve(["198.51.100.0/24", "2001:db8::1/128"],
                          [bl("203.0.113.7/32", 5), bl("2001:db8:9::/48")],
                          [rule("any"), rule("203.0.113.128/25")])
    assert out[k("198.51.100.0/24")] == (WL | RULES, None)
    assert out[k("2001:db8::1/128")] == (WL | RULES, None)
    assert out[k("203.0.113.7/32")] == (BL | RULES, 5)
    assert out[k("2001:db8:9::/48")] == (BL | RULES, None)
    assert out[k("203.0.113.128/25")] == (RULES, None)
    assert out[ANY4] == out[ANY6] == (RULES, None)


def test_any_source_and_a_whitelisted_or_blacklisted_zero_prefix():
    out = sources.resolve(["::/0"], [bl("0.0.0.0/0", 8)], [rule("any"), rule("198.51.100.7/32")])
    assert out[ANY4] == (BL | RULES, 8)
    assert out[ANY6] == (WL | RULES, None)
    assert out[k("198.51.100.7/32")] == (BL | RULES, 8)


# ---- effective_expiry ----

def test_effective_expiry_alone_and_unrelated():
    eff = sources.effective_expiry([bl("203.0.113.0/24", 5), bl("198.51.100.0/24"), bl("2001:db8::/32", 6)])
    assert eff == {"203.0.113.0/24": 5, "198.51.100.0/24": None, "2001:db8::/32": 6}


def test_effective_expiry_keeps_a_later_own_expiry():
    eff = sources.effective_expiry([bl("203.0.113.0/24", 5), bl("203.0.113.7/32", 50)])
    assert eff == {"203.0.113.0/24": 5, "203.0.113.7/32": 50}


def test_effective_expiry_host_inside_never():
    eff = sources.effective_expiry([bl("0.0.0.0/0"), bl("203.0.113.7/32", 50), bl("2001:db8::7/128", 1)])
    assert eff == {"0.0.0.0/0": None, "203.0.113.7/32": None, "2001:db8::7/128": 1}


# ---- to_maps ----

def test_to_maps_encoding():
    resolved = sources.resolve(["198.51.100.0/24"], [bl("198.51.100.7/32", 1234), bl("2001:db8::/32")],
                               [rule("2001:db8:5::/48"), rule("203.0.113.9/32")])
    calls = []

    def expiry_ns(exp):
        calls.append(exp)
        return 0 if exp is None else exp * 1000

    maps = sources.to_maps(resolved, expiry_ns)
    assert set(maps) == set(sources.SRC_MAPS)
    assert maps["src4_host"] == {bytes([198, 51, 100, 7]): layout.encode_u64(WL | BL | 1234000),
                                 bytes([203, 0, 113, 9]): layout.encode_u64(RULES)}
    assert maps["src4_lpm"] == {struct.pack("=I", 24) + bytes([198, 51, 100, 0]): layout.encode_u64(WL)}
    assert maps["src6_host"] == {}
    assert maps["src6_lpm"] == {k("2001:db8::/32")[2]: layout.encode_u64(BL),
                                k("2001:db8:5::/48")[2]: layout.encode_u64(BL | RULES)}
    assert sorted(calls, key=lambda e: e or 0) == [None, None, 1234]   # blacklisted entries only


def test_to_maps_masks_the_expiry_and_decodes_with_source_class():
    maps = sources.to_maps({k("198.51.100.7/32"): (BL | RULES, 1)}, lambda e: (1 << 64) - 1)
    raw = maps["src4_host"][bytes([198, 51, 100, 7])]
    assert layout.source_class(raw) == (BL | RULES, layout.SRC_EXPIRY_MASK)
    assert not value(raw) & BAN


def test_expected_drops_expired_entries_and_converts_to_monotonic():
    data = {"whitelist": ["203.0.113.0/25"],
            "blacklist": [bl("198.51.100.0/24", 90.0), bl("198.51.100.7/32", 110.0), bl("203.0.113.128/25")],
            "port_rules": [rule("198.51.100.7/32")]}
    maps = sources.expected(data, now_wall=100.0, now_mono_ns=10 ** 12)
    # the expired /24 is left out: the host keeps only its own expiry
    assert maps["src4_lpm"] == {k("203.0.113.0/25")[2]: layout.encode_u64(WL),
                                k("203.0.113.128/25")[2]: layout.encode_u64(BL)}
    assert maps["src4_host"] == {bytes([198, 51, 100, 7]): layout.encode_u64(BL | RULES | (10 ** 12 + 10 * 10 ** 9))}


def test_live_and_expired_bans():
    ban = layout.encode_ban(100, RULES)
    assert sources.live_ban(ban, 99) and not sources.expired_ban(ban, 99)
    assert not sources.live_ban(ban, 100) and sources.expired_ban(ban, 100)
    user = layout.encode_u64(BL | 100)
    assert not sources.live_ban(user, 0) and not sources.expired_ban(user, 200)


# ---- model check: one lookup per source decides as every listed prefix would ----

def _lookup(maps, family, addr):
    """The data plane's source_class(): the exact address, else the longest prefix."""
    width = 32 if family == 4 else 128
    packed = addr.to_bytes(width // 8, "big")
    raw = maps["src%d_host" % family].get(packed)
    if raw is None:
        for plen in range(width, -1, -1):
            net = addr >> (width - plen) << (width - plen) if plen else 0
            raw = maps["src%d_lpm" % family].get(struct.pack("=I", plen) + net.to_bytes(width // 8, "big"))
            if raw is not None:
                break
    return 0 if raw is None else value(raw)


def _covers(cidr, family, addr):
    net = ipaddress.ip_network(cidr)
    address = ipaddress.IPv4Address(addr) if family == 4 else ipaddress.IPv6Address(addr)
    return net.version == family and address in net


def _prefix(family):
    # a small corner of each family, so that prefixes nest and overlap often
    if family == 4:
        base, width = int(ipaddress.IPv4Address("198.51.100.0")), 32
    else:
        base, width = int(ipaddress.IPv6Address("2001:db8::")), 128
    return st.tuples(st.integers(0, 15), st.sampled_from([width - 4, width - 3, width - 2, width - 1, width, 0])).map(
        lambda t: str(ipaddress.ip_network((base + t[0], t[1]), strict=False)))


CIDRS = st.one_of(_prefix(4), _prefix(6))
TIMES = st.one_of(st.none(), st.integers(1, 5))


@settings(max_examples=300, deadline=None, database=None)
@given(wl=st.lists(CIDRS, max_size=3, unique=True),
       bls=st.dictionaries(CIDRS, TIMES, max_size=5),
       srcs=st.lists(st.one_of(CIDRS, st.just("any")), max_size=3, unique=True),
       rls=st.lists(CIDRS, max_size=2, unique=True))
def test_one_lookup_equals_every_covering_prefix(wl, bls, srcs, rls):
    resolved = sources.resolve(wl, [bl(c, e) for c, e in bls.items()], [rule(s) for s in srcs], [rule(s) for s in rls])
    maps = sources.to_maps(resolved, lambda e: e or 0)
    for family, base in ((4, int(ipaddress.IPv4Address("198.51.100.0"))),
                         (6, int(ipaddress.IPv6Address("2001:db8::")))):
        for addr in range(base, base + 18):
            cls = _lookup(maps, family, addr)
            whitelisted = any(_covers(c, family, addr) for c in wl)
            ruled = any(s == "any" or _covers(s, family, addr) for s in srcs)
            assert bool(cls & WL) == whitelisted
            assert bool(cls & RULES) == ruled
            assert bool(cls & RL) == any(_covers(c, family, addr) for c in rls)
            for now in range(0, 7):
                live = any(_covers(c, family, addr) and (e is None or e > now) for c, e in bls.items())
                exp = cls & layout.SRC_EXPIRY_MASK
                blocking = (cls & (WL | BL)) == BL and (exp == 0 or exp > now)
                # the data plane's blocking(): the whitelist wins, else any live covering entry
                assert blocking == (live and not whitelisted), (addr, now)


def test_older_rate_limit_buckets_convert_with_an_empty_ban_bucket_clock():
    """A hot reload from layouts 1-3 keeps each source's bucket; the ban bucket starts with its clock at 0,
    which the data plane reads as full (the first take adds all the time since boot)."""
    from ansible_collections.netxfw.firewall.plugins.module_utils import reload
    old = struct.pack("=QQQ", 5, 6, 7)
    for name in ("rl4_state", "rl6_state"):
        new = reload.CONVERTERS[(name, 24, layout.MAPS[name][2])](old)
        assert layout.decode_rl_state(new) == dict(credit_ns=5, last_ns=6, dropped=7, proof_credit_ns=0,
                                                   proof_last_ns=0)
