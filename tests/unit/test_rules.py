# Copyright: (c) 2025, netxfw developers
# GNU General Public License v2.0+ (see https://www.gnu.org/licenses/gpl-2.0.txt)
# SPDX-License-Identifier: GPL-2.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ipaddress
import struct

import pytest

from ansible_collections.netxfw.firewall.plugins.module_utils import rules
from ansible_collections.netxfw.firewall.plugins.module_utils.errors import NetxfwError

NOW = 1700000000.0


def port_rule(ports, source="any", proto="tcp", action="allow"):
    return {"source": source, "proto": proto, "ports": ports, "action": action}


# parse_cidr

@pytest.mark.parametrize("text, expected", [
    ("198.51.100.7", "198.51.100.7/32"),
    ("  198.51.100.7/32\n", "198.51.100.7/32"),
    ("198.51.100.77/24", "198.51.100.0/24"),
    ("203.0.113.0/255.255.255.0", "203.0.113.0/24"),
    ("0.0.0.0/0", "0.0.0.0/0"),
    ("2001:db8::1", "2001:db8::1/128"),
    ("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1/128"),
    ("2001:DB8::", "2001:db8::/128"),
    ("2001:db8:0:0:1::/48", "2001:db8::/48"),
    ("::/0", "::/0"),
    # IPv4-mapped stays IPv6: it matches IPv6 packets only, never all of IPv4
    ("::ffff:198.51.100.7", "::ffff:c633:6407/128"),
    ("::ffff:198.51.100.0/120", "::ffff:c633:6400/120"),
    ("::ffff:0:0/96", "::ffff:0:0/96"),
    ("::ffff:0:0/95", "::fffe:0:0/95"),
])
def test_parse_cidr_accepts(text, expected):
    assert str(rules.parse_cidr(text)) == expected


@pytest.mark.parametrize("text", [
    "300.1.1.1/24", "1.2.3.4/33", "2001:db8::/129", "", "   ", "abc", "1.2.3.4/", "1.2.3.4/-1",
    "01.2.3.4", "2001:db8::1::2", "fe80::1%eth0", None, 17, b"1.2.3.4",
])
def test_parse_cidr_rejects(text):
    with pytest.raises(NetxfwError, match="invalid CIDR"):
        rules.parse_cidr(text)


def test_parse_cidr_error_names_the_input():
    with pytest.raises(NetxfwError, match=r"^invalid CIDR '1\.2\.3\.4/33': "):
        rules.parse_cidr("1.2.3.4/33")


# ports

@pytest.mark.parametrize("value, expected", [
    (22, (22, 22)), ("22", (22, 22)), (" 443 ", (443, 443)), ("1000-2000", (1000, 2000)),
    ("1000 - 2000", (1000, 2000)), ("1-65535", (1, 65535)), ("80-80", (80, 80)),
])
def test_parse_ports_accepts(value, expected):
    assert rules.parse_ports(value) == expected


@pytest.mark.parametrize("value, message", [
    (0, "invalid port '0'"), (65536, "invalid port '65536'"), ("0", "invalid port '0'"),
    ("0-10", "invalid port '0-10'"), ("1-65536", "invalid port '1-65536'"),
    ("20-10", "invalid port range '20-10'"), ("a-b", "invalid port 'a-b'"), ("", "invalid port ''"),
    ("22,23", "invalid port '22,23'"), ("-5", "invalid port '-5'"), (-1, "invalid port '-1'"),
    (True, "invalid port True"), (22.0, "invalid port 22.0"), (None, "invalid port None"),
])
def test_parse_ports_rejects(value, message):
    with pytest.raises(NetxfwError) as raised:
        rules.parse_ports(value)
    assert str(raised.value).startswith(message)


# normalize: whitelist

def test_whitelist_dedups_and_sorts():
    entries = ["2001:db8::/48", "203.0.113.9", "198.51.100.0/24", " 198.51.100.5/24 ",
               "2001:db8:0::/48", "198.51.100.0/25", "::ffff:203.0.113.9", "2001:db8::1"]
    assert rules.normalize("whitelist", entries) == [
        "198.51.100.0/24", "198.51.100.0/25", "203.0.113.9/32", "::ffff:cb00:7109/128", "2001:db8::/48",
        "2001:db8::1/128",
    ]


def test_normalize_is_idempotent_for_each_kind():
    whitelist = rules.normalize("whitelist", ["198.51.100.0/24", "2001:db8::1"])
    blacklist = rules.normalize("blacklist", ["203.0.113.1", {"cidr": "2001:db8::/32", "expires": None}],
                                ttl=60, now=NOW)
    ports = rules.normalize("port", [{"proto": "tcp", "port": 22}, {"proto": "udp", "ports": "53"}])
    assert rules.normalize("whitelist", whitelist) == whitelist
    assert rules.normalize("blacklist", blacklist) == blacklist
    assert rules.normalize("port", ports) == ports


@pytest.mark.parametrize("entries", ["198.51.100.0/24", {"cidr": "198.51.100.0/24"}, 5])
def test_normalize_wants_a_list(entries):
    with pytest.raises(NetxfwError, match="must be a list"):
        rules.normalize("whitelist", entries)


def test_normalize_none_is_empty():
    assert rules.normalize("whitelist", None) == []


def test_normalize_rejects_unknown_kind():
    with pytest.raises(NetxfwError, match="invalid rule kind 'greylist'"):
        rules.normalize("greylist", [])


def test_normalize_rejects_invalid_whitelist_entry():
    with pytest.raises(NetxfwError, match="invalid CIDR '1.2.3.4/33'"):
        rules.normalize("whitelist", ["198.51.100.0/24", "1.2.3.4/33"])


# normalize: blacklist

def test_blacklist_ttl_sets_expiry():
    assert rules.normalize("blacklist", ["203.0.113.7"], ttl=3600, now=NOW) == [
        {"cidr": "203.0.113.7/32", "expires": NOW + 3600},
    ]


def test_blacklist_without_ttl_never_expires():
    assert rules.normalize("blacklist", ["203.0.113.0/24"]) == [{"cidr": "203.0.113.0/24", "expires": None}]


def test_blacklist_explicit_expiry_wins_over_ttl():
    entries = [{"cidr": "203.0.113.1", "expires": 5}, {"cidr": "203.0.113.2", "expires": None},
               {"cidr": "203.0.113.3"}]
    assert rules.normalize("blacklist", entries, ttl=10, now=NOW) == [
        {"cidr": "203.0.113.1/32", "expires": 5.0},
        {"cidr": "203.0.113.2/32", "expires": None},
        {"cidr": "203.0.113.3/32", "expires": NOW + 10},
    ]


def test_blacklist_duplicates_keep_the_longest_block():
    assert rules.normalize("blacklist", [{"cidr": "203.0.113.1", "expires": 10},
                                         {"cidr": "203.0.113.1/32", "expires": 20}]) == [
        {"cidr": "203.0.113.1/32", "expires": 20.0}]
    assert rules.normalize("blacklist", [{"cidr": "203.0.113.1", "expires": 10}, "203.0.113.1"]) == [
        {"cidr": "203.0.113.1/32", "expires": None}]


@pytest.mark.parametrize("ttl", [0, -5, "60", True, float("nan"), float("inf")])
def test_blacklist_rejects_bad_ttl(ttl):
    with pytest.raises(NetxfwError, match="invalid ttl"):
        rules.normalize("blacklist", ["203.0.113.1"], ttl=ttl, now=NOW)


def test_blacklist_refuses_what_the_expiry_cannot_hold():
    """The data plane keeps an expiry in 59 bits of CLOCK_MONOTONIC ns (18.2 years after boot): a ttl
    of ~18 years wrapped and never blocked. Beyond MAX_TTL (10 years) is refused, whichever way given."""
    assert rules.normalize("blacklist", ["203.0.113.7"], ttl=rules.MAX_TTL, now=NOW) == [
        {"cidr": "203.0.113.7/32", "expires": NOW + rules.MAX_TTL}]
    for ttl in (rules.MAX_TTL + 1, 18.3 * 365 * 86400, 100 * 365 * 86400):
        with pytest.raises(NetxfwError, match=r"invalid ttl .*at most 315360000 \(10 years.*give no ttl"):
            rules.normalize("blacklist", ["203.0.113.7"], ttl=ttl, now=NOW)
    assert rules.normalize("blacklist", [{"cidr": "203.0.113.7", "expires": NOW + rules.MAX_TTL}], now=NOW)
    with pytest.raises(NetxfwError, match=r"invalid expires .*at most 315360000 seconds \(10 years\) from now"):
        rules.normalize("blacklist", [{"cidr": "203.0.113.7", "expires": NOW + rules.MAX_TTL + 1}], now=NOW)
    with pytest.raises(NetxfwError, match="ban_ttl must be an integer between 0 and 315360000"):
        rules.normalize("ratelimit", [{"source": "203.0.113.0/24", "rate": 5, "ban_ttl": rules.MAX_TTL + 1}])


def test_ttl_only_for_blacklist():
    with pytest.raises(NetxfwError, match="ttl applies to blacklist entries only"):
        rules.normalize("whitelist", ["198.51.100.1"], ttl=60)


def test_ttl_only_when_adding():
    with pytest.raises(NetxfwError, match="it means nothing with state absent"):
        rules.normalize("blacklist", ["198.51.100.1"], ttl=60, state="absent")
    assert rules.normalize("blacklist", ["198.51.100.1"], state="absent")[0]["cidr"] == "198.51.100.1/32"


@pytest.mark.parametrize("entry, message", [
    ({"cidr": "203.0.113.1", "expires": "soon"}, "invalid expires 'soon'"),
    ({"cidr": "203.0.113.1", "ttl": 5}, "unknown field"),
    ({"expires": 5}, "has no 'cidr'"),
    ({"cidr": "203.0.113.1/40"}, "invalid CIDR"),
])
def test_blacklist_rejects_bad_entries(entry, message):
    with pytest.raises(NetxfwError, match=message):
        rules.normalize("blacklist", [entry])


# normalize: port rules

def test_port_rule_defaults_and_forms():
    entries = [
        {"proto": "TCP", "port": 22},
        {"proto": "udp", "ports": "1000-2000", "source": "2001:db8::5/48", "action": "Deny"},
        {"proto": "tcp", "port": "443-443", "source": " 198.51.100.9 "},
        {"proto": "tcp", "port": "22"},
    ]
    assert rules.normalize("port", entries) == [
        port_rule("22"),
        port_rule("443", source="198.51.100.9/32"),
        port_rule("1000-2000", source="2001:db8::/48", proto="udp", action="deny"),
    ]


def test_port_rules_sort_by_source_proto_first_port():
    entries = [
        {"proto": "udp", "port": 53, "source": "198.51.100.0/24"},
        {"proto": "tcp", "port": 80, "source": "198.51.100.0/24"},
        {"proto": "tcp", "port": 22, "source": "198.51.100.0/24"},
        {"proto": "tcp", "port": 22, "source": "198.51.100.0/25"},
        {"proto": "tcp", "port": 22, "source": "2001:db8::/32"},
        {"proto": "tcp", "port": 22, "source": "203.0.113.0/24"},
        {"proto": "udp", "port": 1, "source": "any"},
        {"proto": "tcp", "port": 9, "source": "0.0.0.0/0"},
    ]
    assert [(r["source"], r["proto"], r["ports"]) for r in rules.normalize("port", entries)] == [
        ("any", "udp", "1"),
        ("0.0.0.0/0", "tcp", "9"),
        ("198.51.100.0/24", "tcp", "22"),
        ("198.51.100.0/24", "tcp", "80"),
        ("198.51.100.0/24", "udp", "53"),
        ("198.51.100.0/25", "tcp", "22"),
        ("203.0.113.0/24", "tcp", "22"),
        ("2001:db8::/32", "tcp", "22"),
    ]


@pytest.mark.parametrize("entry, message", [
    ({"proto": "tcp", "port": 0}, "invalid port '0'"),
    ({"proto": "tcp", "port": 65536}, "invalid port '65536'"),
    ({"proto": "tcp", "ports": "20-10"}, "invalid port range '20-10'"),
    ({"proto": "tcp", "ports": "a-b"}, "invalid port 'a-b'"),
    ({"port": 22}, "proto must be one of tcp, udp"),
    ({"proto": "icmp", "port": 22}, "proto must be one of tcp, udp"),
    ({"proto": "tcp"}, "exactly one of 'port' or 'ports'"),
    ({"proto": "tcp", "port": 22, "ports": "22"}, "exactly one of 'port' or 'ports'"),
    ({"proto": "tcp", "port": 22, "action": "reject"}, "action must be one of allow, deny"),
    ({"proto": "tcp", "port": 22, "source": "300.1.1.1/24"}, "invalid CIDR '300.1.1.1/24'"),
    ({"proto": "tcp", "port": 22, "dest": "any"}, "unknown field"),
    ("tcp/22", "must be a mapping"),
])
def test_port_rule_rejects(entry, message):
    with pytest.raises(NetxfwError, match=message):
        rules.normalize("port", [entry])


def test_port_rules_overlap_names_both():
    with pytest.raises(NetxfwError) as raised:
        rules.normalize("port", [{"proto": "tcp", "ports": "1000-2000"}, {"proto": "tcp", "port": 1500}])
    assert "tcp 1000-2000 from any" in str(raised.value)
    assert "tcp 1500 from any" in str(raised.value)


def test_port_rules_overlap_names_the_overlapping_pair():
    with pytest.raises(NetxfwError, match="tcp 20-30 from any .* and tcp 25-40 from any"):
        rules.normalize("port", [{"proto": "tcp", "ports": "25-40"}, {"proto": "tcp", "ports": "1-10"},
                                 {"proto": "tcp", "ports": "20-30"}])


def test_port_rules_touching_ranges_do_not_overlap():
    assert len(rules.normalize("port", [{"proto": "tcp", "ports": "1-10"}, {"proto": "tcp", "ports": "11-20"}])) == 2


def test_port_rules_overlap_only_within_source_and_proto():
    entries = [{"proto": "tcp", "ports": "1-100"}, {"proto": "udp", "ports": "50"},
               {"proto": "tcp", "ports": "50", "source": "198.51.100.0/24", "action": "deny"}]
    assert len(rules.normalize("port", entries)) == 3


def test_port_rules_same_identity_conflicting_action():
    with pytest.raises(NetxfwError, match="port rules conflict: tcp 22 from any"):
        rules.normalize("port", [{"proto": "tcp", "port": 22}, {"proto": "tcp", "port": 22, "action": "deny"}])


# diff

def test_diff_whitelist_present_adds():
    current = ["198.51.100.0/24"]
    new, added, removed = rules.diff("whitelist", current, ["2001:db8::/48", "198.51.100.0/24"], "present", False)
    assert new == ["198.51.100.0/24", "2001:db8::/48"]
    assert added == ["2001:db8::/48"]
    assert removed == []
    assert current == ["198.51.100.0/24"]  # inputs are not modified


def test_diff_whitelist_present_no_change():
    assert rules.diff("whitelist", ["198.51.100.0/24"], ["198.51.100.0/24"], "present", False) == (
        ["198.51.100.0/24"], [], [])


def test_diff_exclusive_replaces_the_list():
    current = ["198.51.100.0/24", "203.0.113.1/32"]
    new, added, removed = rules.diff("whitelist", current, ["203.0.113.1/32", "2001:db8::/48"], "present", True)
    assert new == ["203.0.113.1/32", "2001:db8::/48"]
    assert added == ["2001:db8::/48"]
    assert removed == ["198.51.100.0/24"]


def test_diff_exclusive_empty_wanted_clears():
    assert rules.diff("whitelist", ["198.51.100.0/24"], [], "present", True) == ([], [], ["198.51.100.0/24"])


def test_diff_absent_removes_and_ignores_missing():
    current = ["198.51.100.0/24", "203.0.113.1/32"]
    new, added, removed = rules.diff("whitelist", current, ["203.0.113.1/32", "2001:db8::/48"], "absent", False)
    assert (new, added, removed) == (["198.51.100.0/24"], [], ["203.0.113.1/32"])


def test_diff_absent_ignores_exclusive():
    assert rules.diff("whitelist", ["198.51.100.0/24"], [], "absent", True) == (["198.51.100.0/24"], [], [])


def test_diff_rejects_bad_state():
    with pytest.raises(NetxfwError, match="invalid state 'gone'"):
        rules.diff("whitelist", [], [], "gone", False)


def test_diff_blacklist_expiry_change_is_an_update():
    old = {"cidr": "203.0.113.1/32", "expires": NOW + 10}
    new_entry = {"cidr": "203.0.113.1/32", "expires": NOW + 3600}
    assert rules.diff("blacklist", [old], [new_entry], "present", False, now=NOW) == ([new_entry], [new_entry], [old])


def test_diff_blacklist_drops_expired_entries():
    expired = {"cidr": "203.0.113.1/32", "expires": NOW}
    live = {"cidr": "203.0.113.2/32", "expires": NOW + 1}
    forever = {"cidr": "2001:db8::/32", "expires": None}
    for state in ("present", "absent"):
        assert rules.diff("blacklist", [forever, expired, live], [], state, False, now=NOW) == (
            [live, forever], [], [expired])


def test_diff_blacklist_readds_expired_entry():
    expired = {"cidr": "203.0.113.1/32", "expires": NOW - 5}
    wanted = {"cidr": "203.0.113.1/32", "expires": NOW + 60}
    assert rules.diff("blacklist", [expired], [wanted], "present", False, now=NOW) == ([wanted], [wanted], [expired])


def test_diff_blacklist_entry_wanted_with_a_past_expiry_is_not_added():
    """A playbook that keeps "block until <date>" past the date must not report a change on every run
    (the entry was added, stored, then dropped as expired by the next run, and added again)."""
    past = {"cidr": "203.0.113.1/32", "expires": NOW - 5}
    assert rules.diff("blacklist", [], [past], "present", False, now=NOW) == ([], [], [])
    # still blocked until then: the entry stops at its wanted expiry, reported once as removed
    live = {"cidr": "203.0.113.1/32", "expires": None}
    assert rules.diff("blacklist", [live], [past], "present", False, now=NOW) == ([], [], [live])
    assert rules.diff("blacklist", [live], [past], "present", True, now=NOW) == ([], [], [live])


def test_diff_blacklist_absent_by_cidr_only():
    entry = {"cidr": "203.0.113.1/32", "expires": None}
    wanted = rules.normalize("blacklist", ["203.0.113.1"], ttl=5, now=NOW)
    assert rules.diff("blacklist", [entry], wanted, "absent", False, now=NOW) == ([], [], [entry])


def test_diff_port_action_change_is_an_update():
    old = port_rule("22")
    new_rule = port_rule("22", action="deny")
    other = port_rule("53", proto="udp")
    assert rules.diff("port", [old, other], [new_rule], "present", False) == ([new_rule, other], [new_rule], [old])


def test_diff_port_absent_by_identity():
    current = [port_rule("22", action="deny"), port_rule("80")]
    wanted = rules.normalize("port", [{"proto": "tcp", "port": 22}])  # action differs: still removes
    assert rules.diff("port", current, wanted, "absent", False) == ([port_rule("80")], [], [current[0]])


def test_diff_port_overlap_with_current():
    with pytest.raises(NetxfwError, match="port rules overlap: tcp 1000-2000 from any .* and tcp 1500 from any"):
        rules.diff("port", [port_rule("1000-2000")], [port_rule("1500")], "present", False)


def test_diff_port_exclusive_may_replace_an_overlapping_rule():
    assert rules.diff("port", [port_rule("1000-2000")], [port_rule("1500")], "present", True) == (
        [port_rule("1500")], [port_rule("1500")], [port_rule("1000-2000")])


# encodings

def test_host_or_lpm_v4():
    assert rules.host_or_lpm(rules.parse_cidr("198.51.100.7")) == ("host", bytes([198, 51, 100, 7]))
    assert rules.host_or_lpm(rules.parse_cidr("198.51.100.0/24")) == (
        "lpm", struct.pack("=I", 24) + bytes([198, 51, 100, 0]))


def test_host_or_lpm_v6():
    assert rules.host_or_lpm(ipaddress.ip_network("2001:db8::1/128")) == (
        "host", bytes.fromhex("20010db8000000000000000000000001"))
    kind, key = rules.host_or_lpm("2001:db8::/32")
    assert kind == "lpm"
    assert key == struct.pack("=I", 32) + bytes.fromhex("20010db8" + "00" * 12)
    assert len(key) == 20


def test_host_or_lpm_byte_exact_on_little_endian():
    if struct.pack("=I", 1) != b"\x01\x00\x00\x00":
        pytest.skip("machine fact: big-endian host")
    assert rules.host_or_lpm("203.0.113.0/24") == ("lpm", b"\x18\x00\x00\x00\xcb\x00\x71\x00")
    assert rules.host_or_lpm("0.0.0.0/0") == ("lpm", b"\x00\x00\x00\x00\x00\x00\x00\x00")


def test_rule_keys_v4_byte_exact():
    if struct.pack("=I", 1) != b"\x01\x00\x00\x00":
        pytest.skip("machine fact: big-endian host")
    keys = rules.rule_keys(port_rule("22", source="198.51.100.0/24", action="deny"))
    assert keys == [(4, b"\x30\x00\x00\x00" + b"\x06" + b"\x00\x16" + b"\xc6\x33\x64\x00" + b"\x00", 2)]
    assert len(keys[0][1]) == 12


def test_rule_keys_v6_udp_range():
    keys = rules.rule_keys(port_rule("1000-1002", source="2001:db8::/48", proto="udp"))
    address = bytes.fromhex("20010db80000" + "00" * 10)
    assert keys == [(6, struct.pack("=I", 24 + 48) + b"\x11" + struct.pack("!H", port) + address + b"\x00", 1)
                    for port in (1000, 1001, 1002)]
    assert all(len(key) == 24 for dummy, key, dummy in keys)


def test_rule_keys_any_expands_to_both_families():
    keys = rules.rule_keys(port_rule("443"))
    assert keys == [
        (4, struct.pack("=I", 24) + b"\x06\x01\xbb" + b"\x00" * 4 + b"\x00", 1),
        (6, struct.pack("=I", 24) + b"\x06\x01\xbb" + b"\x00" * 16 + b"\x00", 1),
    ]


def test_rule_keys_host_source_and_full_range():
    keys = rules.rule_keys(port_rule("1-65535", source="203.0.113.9/32"))
    assert len(keys) == 65535
    assert keys[-1] == (4, struct.pack("=I", 56) + b"\x06\xff\xff" + bytes([203, 0, 113, 9]) + b"\x00", 1)


@pytest.mark.parametrize("entry", [{"cidr": "203.0.113.1", "expires": 1e300}, {"cidr": "203.0.113.1", "expires": 1e12},
                                   {"cidr": "203.0.113.1", "expires": -1}])
def test_absurd_expiry_is_a_clear_error(entry):
    with pytest.raises(NetxfwError, match="invalid expires"):
        rules.normalize("blacklist", [entry])


def test_absurd_ttl_is_a_clear_error():
    with pytest.raises(NetxfwError, match="invalid ttl"):
        rules.normalize("blacklist", ["203.0.113.1"], ttl=10 ** 12)


@pytest.mark.parametrize("field", ["proto", "action"])
def test_non_string_proto_or_action_is_a_clear_error(field):
    rule = {"proto": "tcp", "port": 22, "action": "allow"}
    rule[field] = ["tcp"]
    with pytest.raises(NetxfwError, match="%s must be one of" % field):
        rules.normalize("port", [rule])


@pytest.mark.parametrize("kind, entries, message", [
    ("whitelist", [5], "a whitelist entry is an address or CIDR string, not 5"),
    ("whitelist", ["198.51.100.1", {"cidr": "198.51.100.2"}], "a whitelist entry is an address or CIDR string, not {"),
    ("blacklist", [None], "a blacklist entry is an address or CIDR string or a {cidr, expires} mapping, not None"),
    ("blacklist", [True], "a blacklist entry is"),
    ("ratelimit", [{"source": "203.0.113.0/24"}], "needs a 'source' CIDR and a 'rate'"),
])
def test_entries_of_the_wrong_type_are_named_by_their_kind(kind, entries, message):
    with pytest.raises(NetxfwError) as error:
        rules.normalize(kind, entries)
    assert message in str(error.value)


def test_a_removal_needs_only_the_identity():
    assert rules.normalize("ratelimit", [{"source": "203.0.113.0/24"}], state="absent") == [
        {"source": "203.0.113.0/24", "rate": 1, "burst": 1, "syn_only": False, "ban_ttl": 0}]
    current = rules.normalize("ratelimit", [{"source": "203.0.113.0/24", "rate": 50, "syn_only": True}])
    wanted = rules.normalize("ratelimit", [{"source": "203.0.113.0/24"}], state="absent")
    assert rules.diff("ratelimit", current, wanted, "absent", False) == ([], [], current)


def test_registry_is_the_one_list_of_kinds():
    assert rules.KINDS == tuple(kind.name for kind in rules.REGISTRY) == ("whitelist", "blacklist", "port", "ratelimit")
    for kind in rules.REGISTRY:
        assert set(kind.identity) <= set(kind.fields) and set(kind.absent) <= set(kind.fields) - set(kind.identity)
        record = rules.rule_record(kind.name, rules.normalize(kind.name, [
            {"whitelist": "198.51.100.0/24", "blacklist": "198.51.100.0/24",
             "port": {"proto": "tcp", "port": 22}, "ratelimit": {"source": "198.51.100.0/24", "rate": 5}}[kind.name]])[0])
        assert sorted(record) == sorted(kind.fields + ("kind",))
        assert rules.record_entry(record) == (kind.name, rules.normalize(kind.name, [rules.record_entry(record)[1]])[0])
