# SPDX-License-Identifier: GPL-2.0-or-later
"""The netxfw_rule action plugin's own templating of `entries` (finalize_task_arg) gives what
ansible-core's templating gives, with ansible-core's real template engine and data tags: a list of
plain strings is taken whole, anything that may be a template is templated as Ansible templates it,
and untrusted strings stay as they are."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible.plugins.action import ActionBase
from ansible.template import Templar, trust_as_template

from ansible_collections.netxfw.firewall.plugins.action import netxfw_rule as action

finalize = getattr(ActionBase, "finalize_task_arg", None)
pytestmark = pytest.mark.skipif(finalize is None, reason="ansible-core before 2.19 has no finalize_task_arg")


def engine(variables):
    return Templar(variables=variables)._engine  # what Task.post_validate hands finalize_task_arg


def both(value, variables=None):
    """(the plugin's result, ansible-core's default result) of templating `entries` = value."""
    templar = engine(dict(variables or {}))
    mine = action.ActionModule.finalize_task_arg("entries", value, templar, None)
    theirs = ActionBase.finalize_task_arg("entries", value, templar, None)
    return mine, theirs


def test_plain_strings_whole_list():
    tagged = [trust_as_template("203.0.113.%d" % i) for i in range(5)]
    assert action.plain_strings(tagged) == ["203.0.113.%d" % i for i in range(5)]
    assert all(type(s) is str for s in action.plain_strings(tagged))  # pylint: disable=unidiomatic-typecheck
    assert action.plain_strings([]) == []
    for bad in (["203.0.113.9", "{{ x }}"], ["{% if 1 %}a{% endif %}"], ["#jinja2:x\nb"], ["a\nb"],
                ["203.0.113.9", {"cidr": "x"}], [1], [None]):
        assert action.plain_strings(bad) is None, bad


@pytest.mark.parametrize("value, variables", [
    ([trust_as_template("203.0.113.9"), trust_as_template(" 2001:db8::/48 "), ""], None),
    ([trust_as_template("{{ peer }}"), trust_as_template("203.0.113.9")], {"peer": "198.51.100.2"}),
    (["{{ peer }}", "203.0.113.9"], {"peer": "198.51.100.2"}),  # untrusted: stays a string
    ([{"cidr": trust_as_template("{{ peer }}"), "expires": None}], {"peer": "198.51.100.2"}),
    (trust_as_template("{{ big }}"), {"big": [trust_as_template("203.0.113.%d" % i) for i in range(300)]}),
    (trust_as_template("{{ big }}"), {"big": [trust_as_template("{{ peer }}"), "203.0.113.9"], "peer": "198.51.100.2"}),
    (trust_as_template("{{ text.splitlines() }}"), {"text": "203.0.113.9\n198.51.100.0/24"}),
    (trust_as_template("{{ text }}"), {"text": "203.0.113.9\n198.51.100.0/24\n"}),
    (trust_as_template("{{ ['203.0.113.9', peer] }}"), {"peer": "198.51.100.2"}),
    ("203.0.113.9,203.0.113.10", None),
    ([], None),
])
def test_same_as_ansible(value, variables):
    mine, theirs = both(value, variables)
    assert mine == theirs
    assert type(mine) is type(theirs) or (isinstance(mine, list) and isinstance(theirs, list))  # pylint: disable=unidiomatic-typecheck


def test_untrusted_template_strings_stay_untemplated():
    mine, theirs = both(["{{ peer }}"] * 3, {"peer": "198.51.100.2"})
    assert mine == theirs == ["{{ peer }}"] * 3
