# SPDX-License-Identifier: GPL-2.0-or-later
"""The compiled maps match plugins/module_utils/layout.py (docs/internals.md)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.netxfw.firewall.plugins.module_utils import bpfsys, layout

BPF_F_NO_PREALLOC = 1


def _capacities(cflags):
    macros = dict(re.match(r"-D(\w+)=(\d+)", f).groups() for f in cflags)
    return {cap: int(macros[names[0]]) for cap, (names, dummy) in layout.CAPACITIES.items()}


def test_maps_match_layout(dataplane):
    caps = _capacities(dataplane.cflags)
    for name in layout.MAPS:
        info = bpfsys.map_info(dataplane.t(name).map_fd)
        got = (info["type"], info["key_size"], info["value_size"], info["max_entries"])
        assert got == layout.expected_map(name, caps), name
        if info["type"] == bpfsys.BPF_MAP_TYPE_LPM_TRIE:
            assert info["map_flags"] & BPF_F_NO_PREALLOC, name


def test_layout_version_matches(dataplane):
    version = re.search(r"^#define NETXFW_LAYOUT_VERSION (\d+)$", dataplane.source, re.M).group(1)
    assert int(version) == layout.LAYOUT_VERSION


def test_capacity_defaults_match(dataplane):
    src = dataplane.source
    for names, default in layout.CAPACITIES.values():
        for macro in names:
            assert re.search(r"#ifndef %s\n#define %s %d\n#endif" % (macro, macro, default), src), macro
