# Copyright: (c) 2025, netxfw developers
# GNU General Public License v2.0+ (see https://www.gnu.org/licenses/gpl-2.0.txt)
# SPDX-License-Identifier: GPL-2.0-or-later

"""netxfw_rule's src parsing and result capping; no kernel needed (the real runs are in
tests/modules/test_rule_src_real.py)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json

import pytest

from ansible_collections.netxfw.firewall.plugins.module_utils import exchange
from ansible_collections.netxfw.firewall.plugins.module_utils.errors import NetxfwError
from ansible_collections.netxfw.firewall.plugins.modules import netxfw_rule


def test_plain_lines_skip_blanks_and_comments():
    text = "# head\n\n 203.0.113.9 \r\n203.0.113.0/28# tail\n\t\n2001:db8::/48\n#203.0.113.1\n"
    assert exchange.parse_rules(text, "plain", "whitelist") == {
        "whitelist": ["203.0.113.9", "203.0.113.0/28", "2001:db8::/48"]}
    assert exchange.parse_rules("", kind="whitelist") == {"whitelist": []}
    assert exchange.parse_rules("\n# only\n", kind="whitelist") == {"whitelist": []}


def test_json_detected_by_first_non_blank_character(tmp_path):
    path = tmp_path / "list"
    path.write_text('\ufeff \n ["203.0.113.9", " 203.0.113.10 ", "", {"cidr": "2001:db8::/48", "expires": 1}]',
                    encoding="utf-8")
    assert netxfw_rule.read_src(str(path), "blacklist") == [
        "203.0.113.9", "203.0.113.10", {"cidr": "2001:db8::/48", "expires": 1}]
    path.write_text('[{"proto": "tcp", "port": 22}]')
    assert netxfw_rule.read_src(str(path), "port") == [{"proto": "tcp", "port": 22}]


@pytest.mark.parametrize("kind, text, message", [
    ("whitelist", "[1]", "item 1 of 1 is a number (1); a whitelist entry is an address or CIDR string"),
    ("blacklist", '["203.0.113.9", null]', "item 2 of 2 is null"),
    ("port", '["tcp 22"]', "item 1 of 1 is a string"),
    ("ratelimit", "[[]]", "item 1 of 1 is a list"),
    ("blacklist", "[", "is not valid JSON"),
    ("blacklist", '{"a": 1}', "holds a JSON mapping"),
    ("ratelimit", "0.0.0.0/0\n", "ratelimit rules need a JSON list"),
])
def test_src_errors(tmp_path, kind, text, message):
    path = tmp_path / "src"
    path.write_text(text)
    with pytest.raises(NetxfwError) as error:
        netxfw_rule.read_src(str(path), kind)
    assert message in str(error.value) and str(path) in str(error.value)


def test_missing_and_unreadable_src(tmp_path):
    with pytest.raises(NetxfwError, match="does not exist on the managed host"):
        netxfw_rule.read_src(str(tmp_path / "nope"), "whitelist")
    with pytest.raises(NetxfwError, match="is a directory"):
        netxfw_rule.read_src(str(tmp_path), "whitelist")


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_device_is_refused_not_read_until_memory_runs_out(device):
    with pytest.raises(NetxfwError, match="cannot read src %s: it is a device, not a file of rules" % device):
        netxfw_rule.read_src(device, "blacklist")


def test_a_pipe_is_read(tmp_path):
    """`netxfw import <(command)` names a pipe: it stays readable."""
    import os
    import subprocess
    fifo = str(tmp_path / "pipe")
    os.mkfifo(fifo)
    writer = subprocess.Popen(["sh", "-c", 'printf "203.0.113.9\\n" > "$1"', "sh", fifo])
    try:
        assert exchange.load(fifo, "blacklist") == {"blacklist": ["203.0.113.9"]}
    finally:
        writer.kill()  # blocked in open() if the load never opened the pipe
        writer.wait()


def test_a_million_lines_parse_whole(tmp_path):
    """Speed is bench/lists.py's to measure; here: nothing lost or reordered at 1M lines."""
    cidrs = ["10.%d.%d.%d/32" % (i >> 16, (i >> 8) & 255, i & 255) for i in range(1000000)]
    plain, listed = tmp_path / "plain", tmp_path / "json"
    plain.write_text("# blocklist\n" + "\n".join(cidrs) + "\n")
    listed.write_text(json.dumps(cidrs))
    for path in (plain, listed):
        entries = netxfw_rule.read_src(str(path), "blacklist")
        assert entries == cidrs


def test_listed_caps_and_says_so():
    assert netxfw_rule.listed([1, 2, 3], 3) == ([1, 2, 3], False)
    assert netxfw_rule.listed([1, 2, 3], 2) == ([1, 2], True)
    assert netxfw_rule.listed([1], 0) == ([], True)
    assert netxfw_rule.listed([], 0) == ([], False)


def test_compact_diff_caps_each_side_and_keeps_exact_counts():
    added = ["203.0.113.%d/32" % i for i in range(5)]
    removed = ["198.51.100.1/32"]
    diff = netxfw_rule.compact_diff("whitelist", added, removed, True, 2)
    assert diff == {
        "before": "198.51.100.1/32\n",
        "after": "203.0.113.0/32\n203.0.113.1/32\n",
        "before_header": "netxfw whitelist: 1 removed",
        "after_header": "netxfw whitelist: 5 added, the first 2 shown",
    }
    assert netxfw_rule.compact_diff("whitelist", added, removed, True, 5) == \
        netxfw_rule.compact_diff("whitelist", added, removed, True)


def test_src_reads_every_format_netxfw_import_reads(tmp_path):
    """src and `netxfw import` share exchange's parser: an export in any format is a src."""
    data = {"version": 1, "whitelist": ["198.51.100.0/24"],
            "blacklist": [{"cidr": "203.0.113.7/32", "expires": None}, {"cidr": "203.0.113.8/32", "expires": 1.5}],
            "port_rules": [{"source": "any", "proto": "tcp", "ports": "22", "action": "allow"}],
            "ratelimits": [{"source": "203.0.113.0/24", "rate": 10, "burst": 20, "syn_only": True, "ban_ttl": 0}]}
    records = [{"kind": "blacklist", "cidr": "198.51.100.9"}, {"kind": "ratelimit", "source": "2001:db8::/32",
                                                               "rate": 5}]
    files = {"export.json": exchange.export_rules(data, "json"), "export.csv": exchange.export_rules(data, "csv"),
             "records.json": json.dumps(records), "blocked.txt": exchange.export_rules(data, "plain", ["blacklist"])}
    for name, text in files.items():
        path = tmp_path / name
        path.write_text(text)
        everything = exchange.load(str(path), kind="blacklist" if name.endswith(".txt") else None)
        assert everything, name
        for kind, entries in everything.items():
            assert netxfw_rule.read_src(str(path), kind) == entries, (name, kind)
    assert netxfw_rule.read_src(str(tmp_path / "export.csv"), "ratelimit") == data["ratelimits"]
    assert netxfw_rule.read_src(str(tmp_path / "export.json"), "port") == data["port_rules"]
    assert netxfw_rule.read_src(str(tmp_path / "records.json"), "blacklist") == [{"cidr": "198.51.100.9"}]
    assert netxfw_rule.read_src(str(tmp_path / "blocked.txt"), "blacklist") == ["203.0.113.7/32", "203.0.113.8/32"]
    (tmp_path / "partial.json").write_text(exchange.export_rules(data, "json", ["whitelist"]))
    with pytest.raises(NetxfwError, match="holds no ratelimit rules"):
        netxfw_rule.read_src(str(tmp_path / "partial.json"), "ratelimit")
