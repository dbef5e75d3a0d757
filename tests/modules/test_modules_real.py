# Copyright: (c) 2025, netxfw developers
# GNU General Public License v2.0+ (see https://www.gnu.org/licenses/gpl-2.0.txt)
# SPDX-License-Identifier: GPL-2.0-or-later

"""netxfw_program, netxfw_rule and netxfw_info against the real kernel (see conftest.py)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import struct
import subprocess

import pytest
import yaml

from ansible_collections.netxfw.firewall.plugins.module_utils import bpfsys, layout, rulemaps
from ansible_collections.netxfw.firewall.plugins.modules import netxfw_info

FW_ADDR = "198.51.100.1"  # conftest.py: vm0, where the firewall attaches
PEER_ADDR = "198.51.100.2"  # conftest.py: vm1, in the peer namespace


@pytest.fixture(scope="module")
def python_without_bcc(tmp_path_factory):
    """An interpreter that lacks bcc, to exercise the respawn to the system python: a venv of the
    system python without its site packages (ansible ships the module its own module_utils)."""
    venv = str(tmp_path_factory.mktemp("no-bcc-venv"))
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", venv], check=True, timeout=120)
    python = os.path.join(venv, "bin", "python3")
    assert subprocess.run([python, "-c", "import bcc"], capture_output=True, check=False).returncode != 0
    return python


def src_classes(env, name):
    """{key: class bits (expiry left out)} of a pinned src map (src4_host, src6_lpm, ...)."""
    with bpfsys.Map.open_pinned(os.path.join(env.pin_path, name)) as m:
        return dict((key, layout.source_class(value)[0]) for key, value in m.items())


def src_capacity(capacity, name):
    """max_entries of a src map: the sum of the capacities whose entries it holds."""
    return layout.expected_map(name, capacity)[3]


# ---------------------------------------------------------------- netxfw_program

def test_program_check_mode_changes_nothing(env):
    result = env.run("netxfw_program", {"interfaces": ["vm0"]}, check=True, diff=True)
    assert result["rc"] == 0, result
    assert result["changed"] is True and result["compiled"] is False
    assert result["actions"] == ["compile and load the data plane", "attach to vm0"]
    assert result["diff"]["before"] == {} and result["diff"]["after"]["interfaces"] == ["vm0"]
    assert env.pins() == []
    assert env.read_state("config.json") is None
    assert not env.xdp_attached("vm0")


def test_program_apply_reapply_and_check_again(loaded):
    env = loaded
    assert env.xdp_attached("vm0") and not env.xdp_attached("vm2")
    assert set(layout.MAPS) | set(layout.PROGRAMS) <= set(env.pins())
    again = env.run("netxfw_program", {"interfaces": ["vm0"]}, diff=True)
    assert again["rc"] == 0, again
    assert again["changed"] is False and again["compiled"] is False and again["actions"] == []
    assert again["diff"]["before"] == again["diff"]["after"]
    check = env.run("netxfw_program", {"interfaces": ["vm0"]}, check=True)
    assert check["changed"] is False and check["actions"] == []
    assert env.ping_from_peer()


def test_program_runtime_change_updates_in_place(loaded):
    env = loaded
    first = env.run("netxfw_program", {"interfaces": ["vm0"]})
    assert env.ping_from_peer()
    result = env.run("netxfw_program", {"interfaces": ["vm0"], "policy": "deny", "icmp_rate": 0}, diff=True)
    assert result["rc"] == 0, result
    assert result["changed"] is True and result["compiled"] is False
    assert result["actions"] == ["update runtime settings"]
    assert result["identity"] == first["identity"]
    assert result["diff"]["before"]["policy"] == "allow" and result["diff"]["after"]["policy"] == "deny"
    assert not env.ping_from_peer()  # default deny applies from the next packet
    info = env.run("netxfw_info")
    assert info["config"]["policy"] == "deny"
    assert info["counters"]["drop_policy"]["packets"] >= 1


def test_program_interface_change_attaches_and_detaches_without_recompiling(loaded):
    env = loaded
    result = env.run("netxfw_program", {"interfaces": ["vm2"], "xdp_mode": "generic"})
    assert result["rc"] == 0, result
    assert result["compiled"] is False
    assert "attach to vm2" in result["actions"] and "detach from vm0" in result["actions"]
    assert env.xdp_attached("vm2") and not env.xdp_attached("vm0")


def test_program_capacity_change_recompiles_and_keeps_rules(loaded):
    env = loaded
    assert env.run("netxfw_rule", {"kind": "whitelist", "entries": ["198.51.100.0/28"]})["changed"]
    result = env.run("netxfw_program", {"interfaces": ["vm0"], "capacity": {"whitelist": 1024}})
    assert result["rc"] == 0, result
    assert result["changed"] is True and result["compiled"] is True
    info = env.run("netxfw_info")
    assert info["config"]["capacity"]["whitelist"] == 1024
    capacity = info["config"]["capacity"]
    assert capacity["blacklist"] == layout.CAPACITIES["blacklist"][1]
    assert info["maps"]["src4_lpm"] == {"entries": 1, "capacity": 1024 + capacity["blacklist"] + capacity["port_rules"]
                                        + layout.RL_SIZE}
    assert list(src_classes(env, "src4_lpm").values()) == [layout.SRC_WL]
    assert info["interfaces"]["vm0"]["xdp"] is True


def test_program_reload_detaches_interfaces_no_longer_listed(loaded):
    """A recompile (capacity change) that also drops an interface must detach the old program from it;
    otherwise the old program stays attached, invisible once the pins point at the new one."""
    env = loaded
    result = env.run("netxfw_program", {"interfaces": ["vm2"], "capacity": {"whitelist": 1024}})
    assert result["rc"] == 0 and result["compiled"] is True, result
    assert "detach from vm0" in result["actions"]
    assert env.xdp_attached("vm2") and not env.xdp_attached("vm0")
    assert list(env.run("netxfw_info")["interfaces"]) == ["vm2"]


@pytest.mark.parametrize("args, message", [
    ({"interfaces": ["nxm-nonexistent0"]}, "unknown interface 'nxm-nonexistent0'"),
    ({"interfaces": ["vm0"], "conntrack_timeout": 0}, "conntrack_timeout must be between"),
    ({"interfaces": ["vm0"], "capacity": {"blacklist": 0}}, "capacity.blacklist must be between"),
])
def test_program_invalid_settings_fail_and_change_nothing(loaded, args, message):
    env = loaded
    config, rules = env.read_state("config.json"), env.read_state("rules.json")
    result = env.run("netxfw_program", args)
    assert result["rc"] != 0 and result["failed"] is True
    assert message in result["msg"], result["msg"]
    assert "exception" not in result  # an expected error, not a crash
    assert env.read_state("config.json") == config and env.read_state("rules.json") == rules
    assert env.xdp_attached("vm0")


def test_program_requires_interfaces_when_present(env):
    result = env.run("netxfw_program", {})
    assert result["failed"] is True and "interfaces" in result["msg"]


def test_program_absent_removes_pins_and_detaches(loaded):
    env = loaded
    assert env.run("netxfw_rule", {"kind": "blacklist", "entries": ["203.0.113.0/24"]})["changed"]
    check = env.run("netxfw_program", {"state": "absent"}, check=True)
    assert check["changed"] is True and "detach from vm0" in check["actions"]
    assert env.xdp_attached("vm0") and env.pins()
    result = env.run("netxfw_program", {"state": "absent"}, diff=True)
    assert result["rc"] == 0, result
    assert result["changed"] is True and result["diff"]["after"] == {}
    assert env.pins() == [] and not os.path.exists(env.pin_path)
    assert not env.xdp_attached("vm0")
    assert "tc_egress" not in env.in_fw("tc", "filter", "show", "dev", "vm0", "egress", check=False).stdout
    assert env.read_state("config.json") is None
    assert env.rules()["blacklist"] == [{"cidr": "203.0.113.0/24", "expires": None}]  # rules are kept
    again = env.run("netxfw_program", {"state": "absent"})
    assert again["changed"] is False and again["actions"] == []


# ---------------------------------------------------------------- netxfw_rule

def test_rule_blacklist_diff_check_apply_and_idempotence(loaded):
    env = loaded
    assert env.ping_from_peer()
    check = env.run("netxfw_rule", {"kind": "blacklist", "entries": [PEER_ADDR, "203.0.113.0/28"]},
                    check=True, diff=True)
    assert check["changed"] is True and check["loaded"] is True
    assert check["diff"]["after"] == "%s/32\n203.0.113.0/28\n" % PEER_ADDR or \
        check["diff"]["after"] == "203.0.113.0/28\n%s/32\n" % PEER_ADDR
    assert check["diff"]["before"] == ""
    assert env.rules().get("blacklist", []) == []
    assert env.ping_from_peer()

    result = env.run("netxfw_rule", {"kind": "blacklist", "entries": [PEER_ADDR, "203.0.113.0/28"]}, diff=True)
    assert result["rc"] == 0 and result["changed"] is True, result
    assert result["diff"] == check["diff"]
    assert result["diff"]["after_header"] == "netxfw blacklist: 2 added"
    assert sorted(e["cidr"] for e in result["added"]) == sorted([PEER_ADDR + "/32", "203.0.113.0/28"])
    assert result["removed"] == [] and "warnings" not in result
    assert not env.ping_from_peer()

    again = env.run("netxfw_rule", {"kind": "blacklist", "entries": [PEER_ADDR, "203.0.113.0/28"]}, diff=True)
    assert again["changed"] is False and again["added"] == [] and again["removed"] == []
    assert again["diff"]["before"] == "" and again["diff"]["after"] == ""

    gone = env.run("netxfw_rule", {"kind": "blacklist", "entries": [PEER_ADDR], "state": "absent"}, diff=True)
    assert gone["changed"] is True
    assert gone["diff"]["before"] == PEER_ADDR + "/32\n" and gone["diff"]["after"] == ""
    assert gone["diff"]["before_header"] == "netxfw blacklist: 1 removed"
    assert env.ping_from_peer()
    info = env.run("netxfw_info")
    assert info["counters"]["drop_blacklist"]["packets"] >= 1
    assert info["maps"]["src4_lpm"]["entries"] == 1 and info["maps"]["src4_host"]["entries"] == 0
    assert list(src_classes(env, "src4_lpm").values()) == [layout.SRC_BL]


def test_rule_ttl_shows_expiry_in_diff(loaded):
    env = loaded
    result = env.run("netxfw_rule", {"kind": "blacklist", "entries": ["203.0.113.77"], "ttl": 3600}, diff=True)
    assert result["changed"] is True
    assert result["added"][0]["expires"] is not None
    assert result["diff"]["after"].startswith("203.0.113.77/32 expires 20")


def test_rule_ttl_beyond_the_expiry_range_is_refused(loaded):
    """A ttl of ~18 years wrapped the 59-bit expiry (the entry never blocked, reported added): refused."""
    env = loaded
    before = env.read_state("rules.json")
    for ttl in (19 * 365 * 86400, 10 * 365 * 86400 + 1):
        result = env.run("netxfw_rule", {"kind": "blacklist", "entries": ["203.0.113.78"], "ttl": ttl})
        assert result["rc"] != 0 and result["failed"] is True and "exception" not in result, result
        assert "at most 315360000 (10 years" in result["msg"], result["msg"]
    assert env.read_state("rules.json") == before


def test_rule_exclusive_replaces_the_whole_list(loaded):
    env = loaded
    first = env.run("netxfw_rule", {"kind": "whitelist", "entries": ["198.51.100.0/28", "203.0.113.5", "2001:db8:1::/48"]})
    assert first["changed"] is True
    result = env.run("netxfw_rule", {"kind": "whitelist", "entries": ["203.0.113.5", "2001:db8:2::/48"],
                                     "exclusive": True}, diff=True)
    assert result["changed"] is True
    assert result["added"] == ["2001:db8:2::/48"]
    assert result["removed"] == ["198.51.100.0/28", "2001:db8:1::/48"]
    assert result["diff"]["before"] == "198.51.100.0/28\n2001:db8:1::/48\n"
    assert result["diff"]["after"] == "2001:db8:2::/48\n"
    assert env.rules()["whitelist"] == ["203.0.113.5/32", "2001:db8:2::/48"]
    info = env.run("netxfw_info")
    assert info["maps"]["src4_host"]["entries"] == 1 and info["maps"]["src4_lpm"]["entries"] == 0
    assert info["maps"]["src6_lpm"]["entries"] == 1 and info["maps"]["src6_host"]["entries"] == 0
    assert src_classes(env, "src4_host") == {bytes([203, 0, 113, 5]): layout.SRC_WL}
    empty = env.run("netxfw_rule", {"kind": "whitelist", "entries": [], "exclusive": True})
    assert empty["changed"] is True and env.rules()["whitelist"] == []


def test_rule_port_rules(loaded):
    env = loaded
    entries = [{"source": "198.51.100.0/24", "proto": "tcp", "port": 22, "action": "allow"},
               {"proto": "udp", "ports": "5000-5003", "action": "deny"}]
    result = env.run("netxfw_rule", {"kind": "port", "entries": entries}, diff=True)
    assert result["rc"] == 0 and result["changed"] is True, result
    assert result["diff"]["after"] == "udp 5000-5003 from any deny\ntcp 22 from 198.51.100.0/24 allow\n"
    info = env.run("netxfw_info")
    assert info["maps"]["rules4"]["entries"] == 5 and info["maps"]["rules6"]["entries"] == 4
    # the sources: 198.51.100.0/24 and "any" (a /0 per family), marked for the port-rule stage
    assert src_classes(env, "src4_lpm") == {struct.pack("=I", 24) + bytes([198, 51, 100, 0]): layout.SRC_RULES,
                                            bytes(8): layout.SRC_RULES}
    assert src_classes(env, "src6_lpm") == {bytes(20): layout.SRC_RULES}
    assert env.run("netxfw_rule", {"kind": "port", "entries": entries})["changed"] is False


@pytest.mark.parametrize("kind, entries, message", [
    ("blacklist", ["203.0.113.9", "not-a-cidr"], "invalid CIDR 'not-a-cidr'"),
    ("whitelist", ["198.51.100.300/32"], "invalid CIDR '198.51.100.300/32'"),
    ("port", [{"proto": "tcp", "port": 0}], "ports must be between 1 and 65535"),
    ("port", [{"proto": "tcp", "port": 65536}], "ports must be between 1 and 65535"),
    ("port", [{"proto": "icmp", "port": 22}], "proto must be one of"),
    ("whitelist", ["198.51.100.1"], None),  # ttl with a whitelist, below
])
def test_rule_invalid_entries_fail_and_leave_rules_json_unchanged(loaded, kind, entries, message):
    env = loaded
    assert env.run("netxfw_rule", {"kind": "blacklist", "entries": ["203.0.113.200"]})["changed"]
    before = env.read_state("rules.json")
    args = {"kind": kind, "entries": entries}
    if message is None:
        args["ttl"], message = 60, "ttl applies to blacklist entries only"
    result = env.run("netxfw_rule", args)
    assert result["rc"] != 0 and result["failed"] is True
    assert message in result["msg"], result["msg"]
    assert "exception" not in result
    assert env.read_state("rules.json") == before
    assert env.run("netxfw_info")["maps"]["src4_host"]["entries"] == 1
    assert src_classes(env, "src4_host") == {bytes([203, 0, 113, 200]): layout.SRC_BL}


def test_rule_without_loaded_program_persists_and_warns(env):
    result = env.run("netxfw_rule", {"kind": "blacklist", "entries": [PEER_ADDR]})
    assert result["rc"] == 0 and result["changed"] is True and result["loaded"] is False
    assert "not loaded" in str(result["warnings"]), result["warnings"]
    assert env.pins() == []
    load = env.run("netxfw_program", {"interfaces": ["vm0"]})
    assert load["compiled"] is True
    assert env.run("netxfw_info")["maps"]["src4_host"]["entries"] == 1
    assert src_classes(env, "src4_host") == {bytes([198, 51, 100, 2]): layout.SRC_BL}
    assert not env.ping_from_peer()


@pytest.mark.parametrize("module, args", [
    ("netxfw_program", {"interfaces": ["vm0"]}),
    ("netxfw_program", {"state": "absent"}),
    ("netxfw_rule", {"kind": "blacklist", "entries": [PEER_ADDR]}),
    ("netxfw_reload", {"capacity": {"blacklist": 4096}}),
    ("netxfw_info", {}),
    ("netxfw_apply", {"program": {"interfaces": ["vm0"]}, "whitelist": [PEER_ADDR]}),
])
def test_check_mode_on_a_fresh_host_creates_nothing(env, module, args):
    """Not even the state directory or its lock file (netxfw_reload in check mode made both)."""
    env.run(module, args, check=True)
    assert not os.path.exists(env.state_dir), os.listdir(env.state_dir)
    assert env.pins() == [] and not env.xdp_attached("vm0")


# ---------------------------------------------------------------- netxfw_info

def test_info_not_loaded(env):
    result = env.run("netxfw_info", check=True)
    assert result["rc"] == 0 and result["changed"] is False
    assert result["loaded"] is False and result["config"] == {} and result["identity"] is None
    assert result["counters"] == {} and result["maps"] == {} and result["interfaces"] == {}
    bad = env.run("netxfw_info", {"drops": -1})
    assert bad["failed"] is True and bad["msg"] == "drops must be 0 (none) or more, not -1"


def test_info_counters_maps_and_query(loaded):
    env = loaded
    assert env.ping_from_peer(count=2)
    result = env.run("netxfw_info")
    assert result["rc"] == 0 and result["changed"] is False and result["loaded"] is True
    assert sorted(result["counters"]) == sorted(layout.REASONS)
    assert result["counters"]["pass_policy"]["packets"] >= 2
    assert result["counters"]["pass_policy"]["bytes"] > 0
    assert result["maps"]["ct"]["capacity"] == layout.CAPACITIES["conntrack"][1]
    assert set(result["maps"]) == set(layout.MAPS) - {"config", "counters", "meta", "icmp_bucket"}
    assert result["interfaces"] == {"vm0": {"xdp_mode": result["interfaces"]["vm0"]["xdp_mode"], "xdp": True, "tc": True}}
    assert len(result["identity"]) == 64
    query = env.run("netxfw_info", {"query": "{passed: counters.pass_policy.packets, vm0: interfaces.vm0.xdp}"})
    assert query["query_result"]["passed"] >= 2 and query["query_result"]["vm0"] is True
    for name in ("src4_host", "src6_host", "src4_lpm", "src6_lpm"):
        assert result["maps"][name] == {"entries": 0, "capacity": src_capacity(result["config"]["capacity"], name)}
    # the query of the module's EXAMPLES: a CIDR both whitelisted and a port rule's source is one entry
    assert env.run("netxfw_rule", {"kind": "whitelist", "entries": ["203.0.113.5", "2001:db8:1::/48"]})["changed"]
    assert env.run("netxfw_rule", {"kind": "blacklist", "entries": ["198.51.100.128/25"]})["changed"]
    assert env.run("netxfw_rule", {"kind": "port", "entries": [
        {"proto": "tcp", "port": 22, "source": "2001:db8:1::/48"}]})["changed"]
    example = [task for task in yaml.safe_load(netxfw_info.EXAMPLES) if "source_entries" == task.get("register")]
    total = env.run("netxfw_info", {"query": example[0]["netxfw.firewall.netxfw_info"]["query"]})
    assert total["query_result"] == 3, total
    bad = env.run("netxfw_info", {"query": "counters.["})
    assert bad["failed"] is True and "invalid query" in bad["msg"]


def test_info_reports_half_written_rule_maps_until_a_run_repairs_them(loaded):
    """A netxfw_rule run killed between marking the maps dirty and writing rules.json leaves the data plane
    enforcing neither list (tests/engine/test_crash_and_concurrency.py kills one for real)."""
    env = loaded
    assert env.run("netxfw_rule", {"kind": "blacklist", "entries": [PEER_ADDR]})["changed"]
    assert env.run("netxfw_info")["rules_in_step"] is True
    with bpfsys.Map.open_pinned(os.path.join(env.pin_path, "config")) as config:
        rulemaps.mark_generation({"config": config}, None)
    with bpfsys.Map.open_pinned(os.path.join(env.pin_path, "src4_host")) as host:
        host.delete(bytes([198, 51, 100, 2]))
    assert env.ping_from_peer()
    info = env.run("netxfw_info")
    assert info["rc"] == 0 and info["rules_in_step"] is False
    assert "a write to them was interrupted" in str(info["warnings"]), info.get("warnings")
    # the same rule again (no change to rules.json) repairs the maps, and says it changed something
    assert env.run("netxfw_rule", {"kind": "blacklist", "entries": [PEER_ADDR]}, check=True)["changed"] is True
    assert env.run("netxfw_rule", {"kind": "blacklist", "entries": [PEER_ADDR]})["changed"] is True
    info = env.run("netxfw_info")
    assert info["rules_in_step"] is True and not info.get("warnings")
    assert not env.ping_from_peer()


# ---------------------------------------------------------------- through ansible, with respawn

def test_adhoc_respawns_without_bcc_and_comma_separated_entries(env, python_without_bcc):
    python = python_without_bcc
    first = env.ansible("netxfw_program", "interfaces=vm0", python)
    assert first["rc"] == 0 and first["changed"] is True and first["compiled"] is True, first
    again = env.ansible("netxfw_program", "interfaces=vm0", python, check=True)
    assert again["rc"] == 0 and again["changed"] is False, again
    rule = env.ansible("netxfw_rule", "kind=blacklist entries=%s,203.0.113.0/28" % PEER_ADDR, python, diff=True)
    assert rule["rc"] == 0 and rule["changed"] is True, rule
    assert sorted(e["cidr"] for e in rule["added"]) == sorted([PEER_ADDR + "/32", "203.0.113.0/28"])
    assert not env.ping_from_peer(FW_ADDR)
