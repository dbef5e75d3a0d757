# SPDX-License-Identifier: GPL-2.0-or-later
"""The fast CIDR paths of rules.py (inet_pton / inet_ntop instead of ipaddress) give exactly what
ipaddress gives: the same canonical string (rules.json identity), the same map key and sort order."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ipaddress
import random
import struct

import pytest

from ansible_collections.netxfw.firewall.plugins.module_utils import rules


def reference(text):
    if "%" in text:
        raise ValueError("netxfw refuses zones, which ipaddress takes")
    network = ipaddress.ip_network(text.strip(), strict=False)
    address = network.network_address.packed
    if network.prefixlen == network.max_prefixlen:
        key = (network.version, "host", address)
    else:
        key = (network.version, "lpm", struct.pack("=I", network.prefixlen) + address)
    return str(network), key, (network.version, int(network.network_address), network.prefixlen)


def as_int(order):
    family, value, plen = order
    return family << 136 | value << 8 | plen


def v6_texts(rnd, count):
    """IPv6 addresses and CIDRs with zero runs of every length and place, written in every form."""
    out = []
    for dummy in range(count):
        groups = [rnd.choice((0, 0, 0, 1, 0xffff, rnd.randrange(1 << 16))) for dummy in range(8)]
        value = 0
        for group in groups:
            value = value << 16 | group
        address = ipaddress.IPv6Address(value)
        text = rnd.choice((str(address), address.exploded, str(address).upper()))
        form = rnd.randrange(4)
        if form == 0:
            out.append(text)
        elif form == 1:  # host bits may be set
            out.append("%s/%d" % (text, rnd.randrange(129)))
        else:  # a network as a list holds it
            plen = rnd.randrange(129)
            out.append(str(ipaddress.IPv6Network((value, plen), strict=False)))
    return out


EDGE = ["::", "::/0", "::1", "::1/128", "1::", "1::/16", "1:0:0:1::/64", "1::1:0:0:1", "1:0:0:1:0:0:1:0",
        "0:1:0:0:1:0:0:1", "2001:db8::/32", "2001:db8:0:0:1::/80", "2001:db8::1:0:0:1",
        "::ffff:198.51.100.7", "::ffff:c633:6407", "::ffff:0:0/96", "::198.51.100.7", "::c633:6407",
        "64:ff9b::198.51.100.7", "2001:DB8::/32", "2001:0db8::/32", "2001:db8::/032", "2001:db8::/129",
        "2001:db8::/+3", "2001:db8:: ", " 2001:db8::", "2001:db8::%eth0", "fe80::1%1", "2001:db8::/48/1",
        "198.51.100.7", "198.51.100.7/24", "198.51.100.0/24", "0.0.0.0/0", "198.51.100.07", "198.51.100.0/024",
        "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8", "1:2:3:4:5:6::8"]


INPUTS = EDGE + v6_texts(random.Random(15), 3000)


def mismatches(text):
    """What the fast paths get wrong about `text` (empty: nothing)."""
    try:
        expected = reference(text)
    except ValueError:
        wrong = []
        for name in ("canonical_cidr", "cidr_key"):
            try:
                got = getattr(rules, name)(text)
            except rules.NetxfwError:
                continue
            wrong.append("%s(%r) = %r, expected NetxfwError" % (name, text, got))
        return wrong
    canonical, key, order = expected
    checks = (("canonical_cidr", rules.canonical_cidr(text), canonical),
              ("cidr_key", rules.cidr_key(text), key),
              ("_canonical_and_order", rules._canonical_and_order(text), (canonical, as_int(order))),
              ("_cidr_order of the canonical form", rules._cidr_order(canonical), as_int(order)),
              ("_cidr_order", rules._cidr_order(text), as_int(order)))
    return ["%s(%r) = %r, expected %r" % (name, text, got, want) for name, got, want in checks if got != want]


def test_fast_paths_match_ipaddress():
    """Every input checked, every mismatch reported at once."""
    wrong = [line for text in INPUTS for line in mismatches(text)]
    assert not wrong, "%d mismatches:\n%s" % (len(wrong), "\n".join(wrong))


@pytest.mark.parametrize("kind", ["whitelist", "blacklist"])
def test_normalize_gives_the_keys_cidr_key_gives(kind):
    """The keys normalize() hands the capacity count and the source classes (one parse per CIDR)
    are cidr_key's of each canonical entry, for every valid input, alone and all in one list."""
    valid = []
    for text in INPUTS:
        try:
            reference(text)
        except ValueError:
            continue
        valid.append(text)
    keys = {}
    listed = rules.normalize(kind, valid, keys=keys)
    cidrs = listed if kind == "whitelist" else [entry["cidr"] for entry in listed]
    wrong = ["%r: %r, cidr_key %r" % (cidr, keys.get(cidr), rules.cidr_key(cidr))
             for cidr in cidrs if keys.get(cidr) != rules.cidr_key(cidr)]
    assert sorted(keys) == sorted(cidrs)
    assert not wrong, "%d mismatches:\n%s" % (len(wrong), "\n".join(wrong))


def test_fast_path_takes_canonical_ipv6():
    """The point of it: canonical IPv6 input never reaches ipaddress."""
    assert rules._fast_cidr("2001:db8:1::/48") == (6, 0x20010db8000100000000000000000000, 48)
    assert rules._fast_cidr("2001:db8::1") == (6, 0x20010db8000000000000000000000001, 128)
    assert rules._fast_cidr("2001:DB8::/48") is None  # not canonical: ipaddress decides
    assert rules._fast_cidr("2001:db8::1/64") is None  # host bits set: likewise
