# SPDX-License-Identifier: GPL-2.0-or-later
"""Upgrade of a running firewall from data plane layout 2 (the collection as of LAYOUT2_REV) to the
current layout (layout 3 added `frags`, `dhcp_expect` and two counter reasons, layout 4 widened the
rate-limit buckets) by a hot reload: every map of layout 2 is copied by name (the buckets converted),
the new ones start empty, verdicts stay, and later fragments pass now.

As in test_reload_layout_upgrade.py, the old firewall is loaded by the old collection itself
(extracted from git) on the pin_path and state_dir the current engine then takes over.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest
from scapy.all import IP, UDP, Ether, IPv6, IPv6ExtHdrFragment, Raw, fragment, fragment6

from ansible_collections.netxfw.firewall.plugins.module_utils import layout, sources
from ansible_collections.netxfw.firewall.plugins.module_utils import reload as hot_reload

import netns
from reload_env import SETTINGS, old_collection

LAYOUT2_REV = "db86754"  # a commit of the layout-2 data plane (src* maps, no frags)
NEW_MAPS = ("frags", "dhcp_expect")
ADDR = netns.ADDR
VERDICT = {1: "drop", 2: "pass"}


@pytest.fixture(scope="module")
def layout2(tmp_path_factory):
    extracted, source = old_collection(LAYOUT2_REV, 2, tmp_path_factory.mktemp("layout2"))
    assert "frags" not in source
    return extracted


def probes():
    """Hex frames to the firewalled host under deny, in order: {name: frame}."""
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    out = {}
    for fam in (4, 6):
        src, dst = ADDR[fam]["att_ok"], ADDR[fam]["fw_att"]
        if fam == 4:
            frags = fragment(IP(src=src, dst=dst, id=0x77) / UDP(sport=40000, dport=40404) / Raw(bytes(3000)), 1280)
            plain = IP(src=src, dst=dst) / UDP(sport=40000, dport=40405)
        else:
            frags = fragment6(IPv6(src=src, dst=dst) / IPv6ExtHdrFragment(id=0x77) / UDP(
                sport=40000, dport=40404) / Raw(bytes(3000)), 1280)
            plain = IPv6(src=src, dst=dst) / UDP(sport=40000, dport=40405)
        out["closed%d" % fam] = bytes(eth / plain).hex()
        for n, f in enumerate(frags):
            out["fragment%d_%d" % (fam, n)] = bytes(eth / f).hex()
    return out


def verdicts(fw):
    frames = probes()
    got = fw.call("xdp_verdicts", frames=list(frames.values()))
    assert got is not None, "no XDP program pinned"
    return dict((name, VERDICT.get(v, v)) for name, v in zip(frames, got))


def test_layout2_firewall_upgrades_by_hot_reload(fwenv, layout2):
    old = fwenv.runner(root=layout2[0], script=layout2[1])
    old.call("apply_program", settings=dict(SETTINGS, capacity=dict(SETTINGS["capacity"])))
    old.call("apply_rules", kind="port", entries=[{"source": "any", "proto": "udp", "ports": 40404, "action": "allow"}])
    old.call("apply_rules", kind="blacklist", entries=[ADDR[4]["att"], ADDR[6]["att"]])
    old_state = old.call("state", interfaces=SETTINGS["interfaces"])
    old_dump = old.call("dump")
    old.close()

    fw = fwenv.runner()
    assert fw.call("dump") is None  # layout-2 pins are not the current layout's (meta version, maps)
    before = verdicts(fw)
    # layout 2: the first fragment passes on the port rule, the later ones meet the policy
    assert before["fragment4_0"] == before["fragment6_0"] == "pass"
    assert before["fragment4_1"] == before["fragment6_1"] == "drop"
    assert before["closed4"] == before["closed6"] == "drop"

    result = fw.call("reload")
    assert result["changed"] and result["compiled"], result
    assert result["previous_identity"] == old_state["identity"] != result["identity"]
    assert result["skipped"] == [], result["skipped"]
    for name in NEW_MAPS:
        assert result["migrated"][name]["source"] == "new", (name, result["migrated"][name])
    converted = set(key[0] for key in hot_reload.CONVERTERS)  # maps whose value format a later layout changed
    assert result["migrated"][sources.FILTER_MAP]["source"] == "rebuilt"  # layout 5's: from the copied host maps
    for name in set(layout.MAPS) - set(NEW_MAPS) - {"meta", "drops", "counters", sources.FILTER_MAP}:
        want = "converted" if name in converted else "copy"
        assert result["migrated"][name]["source"] == want, (name, result["migrated"][name])
    assert fw.call("pins") == sorted(set(layout.MAPS) | set(layout.PROGRAMS))
    st = fw.call("state", interfaces=SETTINGS["interfaces"])
    for ifname in SETTINGS["interfaces"]:
        assert st["running"][ifname]["xdp"] == st["pins"]["prog_xdp"] != old_state["pins"]["prog_xdp"], st
    dump = fw.call("dump")
    assert dump is not None
    assert dict((k, v) for k, v in dump.items() if k != "generation") == \
        dict((k, v) for k, v in old_dump.items() if k != "generation")

    after = verdicts(fw)
    assert after == dict(before, fragment4_1="pass", fragment4_2="pass", fragment6_1="pass", fragment6_2="pass")
    assert fw.call("reload")["compiled"] is False
