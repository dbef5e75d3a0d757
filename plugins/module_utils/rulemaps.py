# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-2.0-or-later
"""The rule maps (the src maps, rules4/rules6, rl4_cfg/rl6_cfg) as rules.json fills them: what
each kind puts there, the capacity check before any write, and the generation mark in the config
map that says which rules.json the maps hold.

Shared by the engine (rule changes) and the hot reload (refilling new maps). Works on open maps
and the data it is given; reads no file. Imports nothing from ansible.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from . import flows, layout, rules, sources
from .errors import NetxfwError

RULE_KINDS = rules.LIST_KEYS  # {kind: its list in rules.json}, from the registry of rule kinds


def expected_entries(kind, entries):
    """Port rules or rate-limit rules -> {map name: {key: value}} of their own maps (the sources of
    every kind go to the src maps: sources.expected)."""
    out = dict((name, {}) for name in kind_maps(kind))
    if kind == "port":
        for rule in entries:
            for family, key, action in rules.rule_keys(rule):
                out[layout.rules_map(family)][key] = layout.encode_u32(action)
    elif kind == "ratelimit":
        for rule in entries:
            family, key, value = rules.ratelimit_key(rule)
            out["rl%d_cfg" % family][key] = value
    return out


def kind_maps(kind):
    """The maps of a kind besides the src maps."""
    return list(rules.KIND[kind].maps)


def _capacity_name(kind):
    return rules.KIND[kind].capacity


def sync_map(m, want):
    """Make one map hold exactly `want`, writing only what differs."""
    current = dict(m.items())
    m.update_many([(k, v) for k, v in want.items() if current.get(k) != v])
    m.delete_many([k for k in current if k not in want])


def generation_stale(maps, data):
    """True unless the maps hold exactly generation N of rules.json `data` (they store N + 1; 0 = write under way)."""
    applied = layout.decode_u64(maps["config"].lookup(layout.encode_u32(layout.CFG_RULES_GENERATION)))
    return applied != data.get("generation", 0) + 1


def mark_generation(maps, data):
    """Record that the maps hold rules.json `data`; data=None marks them dirty while they are being written."""
    value = 0 if data is None else data.get("generation", 0) + 1
    maps["config"].update(layout.encode_u32(layout.CFG_RULES_GENERATION), layout.encode_u64(value))


def check_capacity(maps, kind, data, expected, capacities, keys=None):
    """Each kind's entries against its capacity: whitelist and blacklist per family and per exact
    address / prefix (capacity.whitelist, capacity.blacklist in `capacities`), the others per map."""
    if kind in rules.SRC_ONLY_KINDS:
        capacity = capacities[kind]
        for (family, where), count in sorted(sources.counts(data, kind, keys).items()):
            if count > capacity:
                raise NetxfwError(
                    "%s needs %d %s entries (IPv%d) but capacity.%s is %d: raise capacity.%s with "
                    "netxfw.firewall.netxfw_program (a hot reload) and try again"
                    % (kind, count, "exact-address" if where == "host" else "prefix", family, kind,
                       capacity, kind))
        return
    for name, want in expected.items():
        if len(want) > maps[name].max_entries:
            raise NetxfwError(
                "%s needs %d entries in map %s but its capacity is %d: raise capacity.%s with "
                "netxfw.firewall.netxfw_program (a hot reload) and try again"
                % (kind, len(want), name, maps[name].max_entries, _capacity_name(kind))
            )


def sync_all(maps, data, capacities):
    """Make every rule map hold exactly what rules.json `data` says; capacity is checked before any write."""
    data = dict(data, blacklist=[e for e in data.get("blacklist", []) if not rules.is_expired(e)])
    expected = dict((kind, expected_entries(kind, data.get(key, []))) for kind, key in RULE_KINDS.items())
    for kind in RULE_KINDS:
        check_capacity(maps, kind, data, expected[kind], capacities)
    mark_generation(maps, None)
    changed = []
    sources.write(maps, sources.expected(data), changed=changed)
    for kind in RULE_KINDS:
        for name, want in expected[kind].items():
            sync_map(maps[name], want)
    flows.refresh_flows(maps, changed)
    mark_generation(maps, data)
