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


def v6_texts(rnd, count):
    """IPv6 addresses and CIDRs with zero runs of every length and place, written in every form."""
    out = []
    for _ in range(count):
        groups = [rnd.choice((0, 0, 0, 1, 0xffff, rnd.randrange(1 << 16))) for _ in range(8)]
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


@pytest.mark.parametrize("text", EDGE + v6_texts(random.Random(15), 3000))
def test_fast_paths_match_ipaddress(text):
    try:
        expected = reference(text)
    except ValueError:
        with pytest.raises(rules.NetxfwError):
            rules.canonical_cidr(text)
        with pytest.raises(rules.NetxfwError):
            rules.cidr_key(text)
        return
    canonical, key, order = expected
    assert rules.canonical_cidr(text) == canonical
    assert rules.cidr_key(text) == key
    assert rules._canonical_and_order(text) == (canonical, order)
    assert rules._cidr_order(canonical) == order


def test_fast_path_takes_canonical_ipv6():
    """The point of it: canonical IPv6 input never reaches ipaddress."""
    assert rules._fast_cidr("2001:db8:1::/48") == (6, 0x20010db8000100000000000000000000, 48)
    assert rules._fast_cidr("2001:db8::1") == (6, 0x20010db8000000000000000000000001, 128)
    assert rules._fast_cidr("2001:DB8::/48") is None  # not canonical: ipaddress decides
    assert rules._fast_cidr("2001:db8::1/64") is None  # host bits set: likewise
