# Copyright: (c) 2025, netxfw developers
# GNU General Public License v2.0+ (see https://www.gnu.org/licenses/gpl-2.0.txt)
# SPDX-License-Identifier: GPL-2.0-or-later

"""netxfw_apply run directly (see conftest.py) with rollback=false, as a play that opts out of
confirm-or-rollback runs it: there, nothing undoes a part applied before a later one fails."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

PROGRAM = {"interfaces": ["vm0"], "policy": "allow"}
STATE = {"whitelist": ["198.51.100.2"], "blacklist": ["203.0.113.0/24"],
         "port": [{"proto": "tcp", "port": 22}], "program": PROGRAM}


@pytest.fixture
def applied(loaded):
    env = loaded
    result = env.run("netxfw_apply", dict(STATE, rollback=False))
    assert result["rc"] == 0 and result["changed"] is True, result
    return env


def apply(env, **changes):
    return env.run("netxfw_apply", dict(STATE, rollback=False, **changes))


@pytest.mark.parametrize("changes, message", [
    ({"port": [{"proto": "tcp", "port": 22}, {"proto": "tcp", "port": 0}]}, "ports must be between 1 and 65535"),
    ({"program": dict(PROGRAM, interfaces=["nxm-nonexistent0"])}, "unknown interface 'nxm-nonexistent0'"),
    ({"program": dict(PROGRAM, polcy="deny")}, "unknown program setting 'polcy'"),
    ({"program": {"policy": "allow"}}, "program.interfaces is required"),
])
def test_a_mistake_in_a_later_part_applies_no_part(applied, changes, message):
    env = applied
    before = env.read_state("rules.json"), env.read_state("config.json")
    # the lists change too: without the check up front they were applied before the mistake was found
    result = apply(env, whitelist=["198.51.100.3"], blacklist=["203.0.113.0/25"], **changes)
    assert result["rc"] != 0 and result["failed"] is True
    assert message in result["msg"], result["msg"]
    assert (env.read_state("rules.json"), env.read_state("config.json")) == before
    assert env.xdp_attached("vm0")
    assert apply(env)["changed"] is False


def test_check_mode_predicts_and_changes_nothing(applied):
    env = applied
    before = env.read_state("rules.json"), env.read_state("config.json")
    check = env.run("netxfw_apply", dict(STATE, whitelist=[], program=dict(PROGRAM, policy="deny")), check=True)
    assert check["rc"] == 0 and check["changed"] is True
    assert check["parts"]["whitelist"]["removed"] == ["198.51.100.2/32"]
    assert check["parts"]["program"]["changed"] is True and check["parts"]["blacklist"]["changed"] is False
    assert (env.read_state("rules.json"), env.read_state("config.json")) == before
    assert env.run("netxfw_apply", STATE, check=True)["changed"] is False
