# Copyright: (c) 2025, netxfw developers
# GNU General Public License v2.0+ (see https://www.gnu.org/licenses/gpl-2.0.txt)
# SPDX-License-Identifier: GPL-2.0-or-later

"""netxfw_rule with src (entries from a file on the managed host) and max_listed (capped result
lists and diff), against the real kernel: the env / loaded fixtures of conftest.py."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ipaddress
import json
import os
import sys

import pytest

PEER_ADDR = "198.51.100.2"  # conftest.py: vm1, in the peer namespace


def write(env, name, text):
    path = os.path.join(env.tmp, name)
    with open(path, "w") as stream:
        stream.write(text)
    return path


def hosts(count):
    """`count` distinct /128s of 2001:db8:5::/64, canonical, in the order the engine sorts them."""
    return [str(ipaddress.ip_network("2001:db8:5::%x/128" % i)) for i in range(count)]


def test_src_json_list_blacklist_then_noop(loaded):
    env = loaded
    assert env.ping_from_peer()
    items = [PEER_ADDR, {"cidr": "203.0.113.0/28", "expires": None}, " 2001:db8:bad::/48 "]
    src = write(env, "bl.json", "\n  " + json.dumps(items, indent=1))
    result = env.run("netxfw_rule", {"kind": "blacklist", "src": src}, diff=True)
    assert result["rc"] == 0 and result["changed"] is True, result
    wanted = [{"cidr": "203.0.113.0/28", "expires": None}, {"cidr": PEER_ADDR + "/32", "expires": None},
              {"cidr": "2001:db8:bad::/48", "expires": None}]
    assert sorted(result["added"], key=repr) == sorted(wanted, key=repr)
    assert result["added_count"] == 3 and result["removed_count"] == 0 and result["truncated"] is False
    assert result["diff"]["after_header"] == "netxfw blacklist: 3 added"
    assert sorted(env.rules()["blacklist"], key=repr) == sorted(wanted, key=repr)
    assert not env.ping_from_peer()

    again = env.run("netxfw_rule", {"kind": "blacklist", "src": src})
    assert again["rc"] == 0 and again["changed"] is False, again
    assert again["added"] == [] and again["added_count"] == 0 and again["truncated"] is False
    # The same entries as a task argument are the same rules: nothing to do either.
    same = env.run("netxfw_rule", {"kind": "blacklist", "entries": items})
    assert same["changed"] is False


def test_src_file_changed_in_place_is_applied_again(loaded):
    """An unchanged src file is answered from the request cache unparsed (its digest); the same
    file rewritten with other entries of the same length never is."""
    env = loaded
    src = write(env, "same-size.txt", "203.0.113.40\n203.0.113.41\n")
    args = {"kind": "blacklist", "src": src, "exclusive": True}
    assert env.run("netxfw_rule", args)["changed"] is True
    again = env.run("netxfw_rule", args)
    assert again["rc"] == 0 and again["changed"] is False, again
    with open(os.path.join(env.state_dir, ".requests.json")) as stream:
        assert any(r["request"].startswith("src:") for r in json.load(stream)["blacklist"])
    with open(src, "r+") as stream:
        stream.write("203.0.113.42\n203.0.113.43\n")
    check = env.run("netxfw_rule", args, check=True)
    assert check["changed"] is True and check["added_count"] == 2 and check["removed_count"] == 2, check
    changed = env.run("netxfw_rule", args)
    assert changed["changed"] is True and [e["cidr"] for e in changed["added"]] == ["203.0.113.42/32", "203.0.113.43/32"]
    assert [e["cidr"] for e in env.rules()["blacklist"]] == ["203.0.113.42/32", "203.0.113.43/32"]


def test_src_plain_text_whitelist_with_comments_exclusive(loaded):
    env = loaded
    assert env.run("netxfw_rule", {"kind": "whitelist", "entries": ["198.51.100.200"]})["changed"]
    src = write(env, "wl.txt", "# management networks\n\n198.51.100.0/28\r\n  203.0.113.5   # the bastion\n"
                               "2001:db8:1::/48\n\n#198.51.100.99\n")
    check = env.run("netxfw_rule", {"kind": "whitelist", "src": src, "exclusive": True}, check=True, diff=True)
    assert check["rc"] == 0 and check["changed"] is True, check
    assert env.rules()["whitelist"] == ["198.51.100.200/32"]  # check mode reads src, writes nothing
    result = env.run("netxfw_rule", {"kind": "whitelist", "src": src, "exclusive": True}, diff=True)
    assert result["rc"] == 0 and result["changed"] is True, result
    assert result["added"] == ["198.51.100.0/28", "203.0.113.5/32", "2001:db8:1::/48"]
    assert result["removed"] == ["198.51.100.200/32"]
    assert result["diff"] == check["diff"]
    assert result["diff"]["after"] == "198.51.100.0/28\n203.0.113.5/32\n2001:db8:1::/48\n"
    assert env.rules()["whitelist"] == ["198.51.100.0/28", "203.0.113.5/32", "2001:db8:1::/48"]
    maps = env.run("netxfw_info")["maps"]
    assert maps["src4_host"]["entries"] == 1 and maps["src4_lpm"]["entries"] == 1 and maps["src6_lpm"]["entries"] == 1
    gone = env.run("netxfw_rule", {"kind": "whitelist", "src": write(env, "one.txt", "203.0.113.5\n"),
                                   "state": "absent"})
    assert gone["removed"] == ["203.0.113.5/32"] and gone["removed_count"] == 1


def test_src_and_entries_together_or_neither_fail(loaded):
    env = loaded
    src = write(env, "bl.txt", "203.0.113.9\n")
    both = env.run("netxfw_rule", {"kind": "blacklist", "src": src, "entries": ["203.0.113.10"]})
    assert both["rc"] != 0 and both["failed"] is True
    assert "mutually exclusive" in both["msg"] and "entries" in both["msg"] and "src" in both["msg"], both["msg"]
    neither = env.run("netxfw_rule", {"kind": "blacklist"})
    assert neither["rc"] != 0 and "one of the following is required: entries, src" in neither["msg"], neither["msg"]
    assert env.read_state("rules.json") is None


@pytest.mark.parametrize("kind, name, text, message", [
    ("blacklist", None, None, "does not exist on the managed host"),
    ("blacklist", "dir", None, "is a directory"),
    ("blacklist", "bad.json", '["203.0.113.9",', "is not valid JSON"),
    ("blacklist", "obj.json", '{"cidr": "203.0.113.9"}', "holds a JSON mapping"),
    ("blacklist", "num.json", '["203.0.113.9", 5]', "item 2 of 2 is a number (5); a blacklist entry is"),
    ("whitelist", "map.json", '[{"cidr": "203.0.113.9"}]', "item 1 of 1 is a mapping"),
    ("port", "ports.txt", "tcp 22\n", "plain text, one CIDR per line, is only for the whitelist and the blacklist"),
    ("blacklist", "latin1.txt", b"203.0.113.9 # caf\xe9\n", "is not UTF-8 text"),
    ("blacklist", "bad.txt", "203.0.113.9\n203.0.113.300\n", "invalid CIDR '203.0.113.300'"),
])
def test_src_errors_fail_and_change_nothing(loaded, kind, name, text, message):
    env = loaded
    assert env.run("netxfw_rule", {"kind": "blacklist", "entries": ["203.0.113.200"]})["changed"]
    before = env.read_state("rules.json")
    path = os.path.join(env.tmp, name or "missing.txt")
    if name == "dir":
        os.mkdir(path)
    elif text is not None:
        with open(path, "wb") as stream:
            stream.write(text if isinstance(text, bytes) else text.encode())
    result = env.run("netxfw_rule", {"kind": kind, "src": path, "exclusive": True})
    assert result["rc"] != 0 and result["failed"] is True
    assert message in result["msg"], result["msg"]
    assert "exception" not in result
    assert env.read_state("rules.json") == before
    maps = env.run("netxfw_info")["maps"]
    assert maps["src4_host"]["entries"] == 1 and maps["rules4"]["entries"] == 0


def test_large_push_lists_are_capped_with_exact_counts(loaded):
    env = loaded
    entries = hosts(5000)
    src = write(env, "big.txt", "\n".join(entries) + "\n")
    result = env.run("netxfw_rule", {"kind": "whitelist", "src": src}, diff=True)
    assert result["rc"] == 0 and result["changed"] is True, result
    assert result["added_count"] == 5000 and result["removed_count"] == 0 and result["truncated"] is True
    assert result["added"] == entries[:1000] and result["removed"] == []
    assert result["diff"]["after"] == "".join(e + "\n" for e in entries[:1000])
    assert result["diff"]["after_header"] == "netxfw whitelist: 5000 added, the first 1000 shown"
    assert result["diff"]["before"] == "" and result["diff"]["before_header"] == "netxfw whitelist: 0 removed"
    assert len(env.rules()["whitelist"]) == 5000
    assert env.run("netxfw_info")["maps"]["src6_host"]["entries"] == 5000

    noop = env.run("netxfw_rule", {"kind": "whitelist", "src": src}, diff=True)
    assert noop["changed"] is False and noop["added_count"] == 0 and noop["truncated"] is False

    # The same 5000 as a task argument, with a larger cap: everything listed, as before the cap existed.
    check = env.run("netxfw_rule", {"kind": "whitelist", "entries": [], "exclusive": True, "max_listed": 5000},
                    check=True, diff=True)
    assert check["removed"] == entries and check["removed_count"] == 5000 and check["truncated"] is False
    assert check["diff"]["before_header"] == "netxfw whitelist: 5000 removed"

    cleared = env.run("netxfw_rule", {"kind": "whitelist", "entries": [], "exclusive": True, "max_listed": 0},
                      diff=True)
    assert cleared["changed"] is True and cleared["removed"] == [] and cleared["removed_count"] == 5000
    assert cleared["truncated"] is True and cleared["diff"]["before"] == ""
    assert cleared["diff"]["before_header"] == "netxfw whitelist: 5000 removed, the first 0 shown"
    assert env.rules()["whitelist"] == []
    assert env.run("netxfw_info")["maps"]["src6_host"]["entries"] == 0

    negative = env.run("netxfw_rule", {"kind": "whitelist", "entries": [], "max_listed": -1})
    assert negative["failed"] is True and "max_listed must be 0 or more" in negative["msg"]


def test_src_through_ansible_adhoc(loaded):
    """The file is read on the managed host by the module; only its path travels as an argument."""
    env = loaded
    src = write(env, "bl.txt", "%s\n203.0.113.0/28\n" % PEER_ADDR)
    result = env.ansible("netxfw_rule", "kind=blacklist src=%s" % src, sys.executable, diff=True)
    assert result["rc"] == 0 and result["changed"] is True, result
    assert result["added_count"] == 2 and result["truncated"] is False
    assert not env.ping_from_peer()
    both = env.ansible("netxfw_rule", "kind=blacklist src=%s entries=203.0.113.1" % src, sys.executable)
    assert both["rc"] != 0 and "mutually exclusive" in both["msg"], both
