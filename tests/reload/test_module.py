# SPDX-License-Identifier: GPL-2.0-or-later
"""netxfw_reload as a real module run (the tests/modules pattern: a private namespace pair, direct
module runs through nsenter, a temporary pin_path and state_dir, everything removed afterwards)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib.util
import os
import shutil
import tempfile
import uuid

import pytest

from ansible_collections.netxfw.firewall.plugins.module_utils import layout

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("netxfw_modules_conftest",
                                               os.path.join(os.path.dirname(HERE), "modules", "conftest.py"))
modules_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(modules_conftest)

collections_path = modules_conftest.collections_path  # the session fixture, reused


@pytest.fixture
def env(collections_path):  # pylint: disable=redefined-outer-name
    reason = modules_conftest._skip_reason()
    if reason:
        pytest.skip(reason)
    environment = modules_conftest.Env(collections_path, tempfile.mkdtemp(prefix="netxfw-reloadmod-"))
    tag = uuid.uuid4().hex[:8]  # own names: never collide with a tests/modules run
    environment.fw_ns, environment.peer_ns = "nxr-fw-" + tag, "nxr-peer-" + tag
    environment.pin_path = os.path.join(modules_conftest.BPFFS, "netxfw-reloadmod-" + tag)
    try:
        environment.up()
        yield environment
    finally:
        environment.down()
        shutil.rmtree(environment.pin_path + "_staging", ignore_errors=True)


CAPS = {"whitelist": 128, "blacklist": 256, "port_rules": 128, "conntrack": 1024}
SRC_SLOTS = CAPS["whitelist"] + CAPS["blacklist"] + CAPS["port_rules"] + layout.RL_SIZE  # every kind's sources


def test_reload_module(env):
    loaded = env.run("netxfw_program", {"interfaces": ["vm0"], "capacity": CAPS})
    assert loaded["rc"] == 0 and loaded["compiled"], loaded
    added = env.run("netxfw_rule", {"kind": "blacklist", "entries": ["203.0.113.9", "203.0.113.10", "2001:db8:9::/48"]})
    assert added["rc"] == 0 and added["changed"], added
    assert env.ping_from_peer()

    # nothing to do: same identity
    same = env.run("netxfw_reload", {}, diff=True)
    assert same["rc"] == 0 and same["changed"] is False and same["compiled"] is False and same["actions"] == []

    # check mode: says what would happen, changes nothing
    check = env.run("netxfw_reload", {"capacity": {"blacklist": 512}}, check=True, diff=True)
    assert check["rc"] == 0 and check["changed"] is True and check["compiled"] is False, check
    assert check["migrated"]["src4_host"]["entries"] == 2 and check["migrated"]["src6_lpm"]["entries"] == 1
    assert any(a.startswith("compile and load") for a in check["actions"])
    assert check["diff"]["before"]["capacity"]["blacklist"] == 256
    assert check["diff"]["after"]["capacity"]["blacklist"] == 512
    assert check["diff"]["before"]["identity"] == loaded["identity"] != check["identity"]
    info = env.run("netxfw_info")
    assert info["maps"]["src4_host"]["capacity"] == SRC_SLOTS and info["identity"] == loaded["identity"]

    # the reload
    grown = env.run("netxfw_reload", {"capacity": {"blacklist": 512}})
    assert grown["rc"] == 0 and grown["changed"] and grown["compiled"], grown
    assert grown["migrated"]["src4_host"] == dict(grown["migrated"]["src4_host"], entries=2, source="copy")
    assert grown["skipped"] == [] and grown["duration_ms"] > 0
    info = env.run("netxfw_info")
    assert info["maps"]["src4_host"]["capacity"] == SRC_SLOTS + 256 and info["maps"]["src4_host"]["entries"] == 2
    assert info["identity"] == grown["identity"]
    assert info["config"]["capacity"]["blacklist"] == 512  # stored: netxfw_program with it is a no-op
    assert env.ping_from_peer()
    again = env.run("netxfw_program", {"interfaces": ["vm0"], "capacity": dict(CAPS, blacklist=512)})
    assert again["rc"] == 0 and again["changed"] is False and again["compiled"] is False, again

    # force: same identity, reloaded anyway
    forced = env.run("netxfw_reload", {"force": True})
    assert forced["rc"] == 0 and forced["compiled"] and forced["identity"] == grown["identity"], forced
    assert env.run("netxfw_info")["maps"]["src6_lpm"]["entries"] == 1

    # shrinking below the entries fails before anything changes, also in check mode: the blacklist
    # holds 4 exact IPv4 addresses
    more = env.run("netxfw_rule", {"kind": "blacklist", "entries": ["203.0.113.11", "203.0.113.12"]})
    assert more["rc"] == 0 and more["changed"], more
    for check_mode in (True, False):
        shrink = env.run("netxfw_reload", {"capacity": {"whitelist": 1, "blacklist": 1, "port_rules": 1}},
                         check=check_mode)
        assert shrink["rc"] != 0 and shrink.get("failed"), shrink
        assert "cannot shrink" in shrink["msg"], shrink
        assert "the blacklist holds 4 exact-address entries (IPv4) but capacity.blacklist would be 1" in shrink["msg"]
    assert env.run("netxfw_info")["identity"] == grown["identity"]


def test_reload_module_without_a_loaded_program_fails_clearly(env):
    result = env.run("netxfw_reload", {})
    assert result["rc"] != 0 and "netxfw_program first" in result["msg"], result
