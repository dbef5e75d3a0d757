# SPDX-License-Identifier: GPL-2.0-or-later
"""Rate-limit rules: canonical form, validation, diff, map encoding, engine settings and state."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import struct

import pytest

from ansible_collections.netxfw.firewall.plugins.module_utils import layout, program_settings, rulemaps, rules
from ansible_collections.netxfw.firewall.plugins.module_utils.errors import NetxfwError
from ansible_collections.netxfw.firewall.plugins.module_utils.state import StateStore


def test_canonical_form_and_defaults():
    out = rules.normalize("ratelimit", [{"source": "203.0.113.7/24", "rate": 20},
                                        {"source": "2001:db8::/32", "rate": 5, "burst": 9, "syn_only": True,
                                         "ban_ttl": 600}])
    assert out == [
        {"source": "203.0.113.0/24", "rate": 20, "burst": 20, "syn_only": False, "ban_ttl": 0},
        {"source": "2001:db8::/32", "rate": 5, "burst": 9, "syn_only": True, "ban_ttl": 600},
    ]


@pytest.mark.parametrize("entry", [
    "203.0.113.0/24",
    {"source": "203.0.113.0/24"},
    {"rate": 5},
    {"source": "203.0.113.0/24", "rate": 0},
    {"source": "203.0.113.0/24", "rate": True},
    {"source": "203.0.113.0/24", "rate": "5"},
    {"source": "203.0.113.0/24", "rate": 5, "burst": 0},
    {"source": "203.0.113.0/24", "rate": 5, "ban_ttl": -1},
    {"source": "203.0.113.0/24", "rate": 5, "syn_only": "yes"},
    {"source": "203.0.113.0/24", "rate": 5, "action": "deny"},
    {"source": "not-a-cidr", "rate": 5},
])
def test_invalid_entries_are_clear_errors(entry):
    with pytest.raises(NetxfwError):
        rules.normalize("ratelimit", [entry])


def test_conflicting_rules_for_one_source():
    with pytest.raises(NetxfwError, match="conflict"):
        rules.normalize("ratelimit", [{"source": "203.0.113.0/24", "rate": 5},
                                      {"source": "203.0.113.0/24", "rate": 6}])


def test_diff_by_source():
    current = rules.normalize("ratelimit", [{"source": "203.0.113.0/24", "rate": 5}])
    wanted = rules.normalize("ratelimit", [{"source": "203.0.113.0/24", "rate": 6}])
    new, added, removed = rules.diff("ratelimit", current, wanted, "present", False)
    assert new == added == wanted and removed == current
    new, added, removed = rules.diff("ratelimit", new, [{"source": "203.0.113.0/24"}], "absent", False)
    assert new == [] and removed == wanted


def test_map_encoding():
    [rule] = rules.normalize("ratelimit", [{"source": "198.51.100.0/24", "rate": 7, "burst": 9,
                                            "syn_only": True, "ban_ttl": 3}])
    family, key, value = rules.ratelimit_key(rule)
    assert family == 4 and key == struct.pack("=I", 24) + bytes([198, 51, 100, 0])
    assert layout.decode_rl_cfg(value) == {"rate": 7, "burst": 9, "syn_only": True, "ban_ttl": 3}
    assert rulemaps.kind_maps("ratelimit") == ["rl4_cfg", "rl6_cfg"]
    assert rulemaps.expected_entries("ratelimit", [rule]) == {"rl4_cfg": {key: value}, "rl6_cfg": {}}


def test_ban_value_and_settings():
    # an auto-ban is a blacklisted source (SRC_BAN | SRC_BL) with its expiry in the low 59 bits
    assert layout.source_class(layout.encode_ban(12345)) == (layout.SRC_BAN | layout.SRC_BL, 12345)
    assert layout.source_class(layout.encode_ban(12345, layout.SRC_RULES)) == \
        (layout.SRC_BAN | layout.SRC_BL | layout.SRC_RULES, 12345)
    assert layout.source_class(layout.encode_ban(layout.SRC_RULES | 5)) == (layout.SRC_BAN | layout.SRC_BL, 5)
    # a user's blacklist entry: no ban bit
    assert layout.source_class(layout.encode_u64(layout.SRC_BL | 777)) == (layout.SRC_BL, 777)
    assert layout.source_class(layout.encode_u64(layout.SRC_WL)) == (layout.SRC_WL, 0)
    assert layout.SRC_EXPIRY_MASK == (1 << 59) - 1
    # a ban keeps the rule bits of the class it replaces, nothing else
    assert layout.source_class(layout.encode_ban(9, layout.SRC_RL | layout.SRC_WL)) == \
        (layout.SRC_BAN | layout.SRC_BL | layout.SRC_RL, 9)
    cfg = program_settings.runtime_config(program_settings.normalize_program({"ratelimit_global_rate": 100, "drop_sampling_rate": 3}))
    assert cfg[layout.CFG_RL_GLOBAL_RATE] == 100 and cfg[layout.CFG_RL_GLOBAL_BURST] == 100
    assert cfg[layout.CFG_DROPLOG_RATE] == 3 and cfg[layout.CFG_DROPLOG_BURST] == 3
    with pytest.raises(NetxfwError):
        program_settings.normalize_program({"ratelimit_global_rate": -1})


def test_rules_json_keeps_ratelimits_only_when_there_are_some(tmp_path):
    store = StateStore(str(tmp_path))
    rule = {"source": "203.0.113.0/24", "rate": 5, "burst": 5, "syn_only": False, "ban_ttl": 0}
    store.write_rules({"generation": 1, "ratelimits": [rule]})
    assert store.read_rules()["ratelimits"] == [rule]
    store.write_rules({"generation": 2, "ratelimits": []})
    assert "ratelimits" not in store.read_rules()
