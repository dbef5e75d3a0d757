# SPDX-License-Identifier: GPL-2.0-or-later
"""Engine queries and import/export formats, without a loaded program (no root needed)."""

import json
import time

import pytest

from agent_env import every_kind
from netxfw_engine import exchange, queries, rules
from netxfw_engine.errors import NetxfwError
from netxfw_engine.state import StateStore

DATA = {
    "version": 1, "generation": 3,
    "whitelist": ["198.51.100.0/24", "2001:db8::/48"],
    "blacklist": [{"cidr": "203.0.113.7/32", "expires": None}, {"cidr": "203.0.113.8/32", "expires": 1.0}],
    "port_rules": [{"source": "any", "proto": "tcp", "ports": "22", "action": "allow"},
                   {"source": "198.51.100.0/24", "proto": "udp", "ports": "1000-2000", "action": "deny"}],
}


class FakeFirewall:
    def __init__(self, state_dir):
        self.store = StateStore(state_dir)

    def open_maps(self):
        return None


@pytest.fixture
def fw(tmp_path):
    fake = FakeFirewall(str(tmp_path))
    fake.store.write_rules(DATA)
    return fake


def test_list_rules_paging_search_and_expiry(fw):
    everything = queries.list_rules(fw)
    assert everything["total"] == 5 and everything["generation"] == 3  # the expired entry is left out
    assert [r["kind"] for r in everything["items"]] == ["whitelist", "whitelist", "blacklist", "port", "port"]
    assert queries.list_rules(fw, include_expired=True)["total"] == 6
    page = queries.list_rules(fw, offset=1, limit=2)
    assert page["total"] == 5 and [r.get("cidr") for r in page["items"]] == ["2001:db8::/48", "203.0.113.7/32"]
    assert [r["cidr"] for r in queries.list_rules(fw, search="2001:db8::42")["items"]] == ["2001:db8::/48"]
    by_addr = queries.list_rules(fw, search="198.51.100.3")["items"]
    assert [r["kind"] for r in by_addr] == ["whitelist", "port"]  # covered by the CIDR and the rule's source
    assert [r["ports"] for r in queries.list_rules(fw, "port", search="UDP")["items"]] == ["1000-2000"]
    assert queries.list_rules(fw, "blacklist", search="nothing-like-this")["total"] == 0
    with pytest.raises(NetxfwError):
        queries.list_rules(fw, "everything")
    assert queries.rule_counts(fw) == {"whitelist": 2, "blacklist": 1, "port": 2, "ratelimit": 0}


def test_conntrack_and_counters_without_a_program(fw):
    assert queries.conntrack(fw) == {"total": 0, "offset": 0, "limit": None, "items": [], "loaded": False,
                                     "capacity": 0}
    assert queries.counters(fw) is None


def test_rates():
    before = {"pass_policy": {"packets": 10, "bytes": 1000}}
    after = {"pass_policy": {"packets": 30, "bytes": 3000}, "drop_rule": {"packets": 4, "bytes": 400}}
    assert queries.rates(before, after, 2.0) == {"pass_policy": {"packets": 10.0, "bytes": 1000.0},
                                                 "drop_rule": {"packets": 2.0, "bytes": 200.0}}


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_export_parse_round_trip(fmt):
    text = exchange.export_rules(DATA, fmt)
    parsed = exchange.parse_rules(text, fmt)
    assert parsed["whitelist"] == DATA["whitelist"]
    assert parsed["blacklist"] == DATA["blacklist"]
    assert parsed["port"] == DATA["port_rules"]


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_every_kind_round_trips_through_json_and_csv(fmt):
    wanted = every_kind(time.time())
    assert sorted(wanted) == sorted(rules.KINDS)  # a new kind must be added to every_kind
    data = dict((rules.LIST_KEYS[kind], entries) for kind, entries in wanted.items())
    text = exchange.export_rules(dict(data, version=1, generation=7), fmt)
    assert exchange.detect_format(text) == fmt
    parsed = exchange.parse_rules(text)  # the format told by the content, as `netxfw import` and src do
    assert parsed == wanted
    for kind, entries in parsed.items():
        assert rules.normalize(kind, entries) == wanted[kind]
        assert exchange.parse_rules(text, kind=kind) == {kind: wanted[kind]}


def test_plain_and_kind_filters():
    assert exchange.export_rules(DATA, "plain", ["blacklist"]) == "203.0.113.7/32\n203.0.113.8/32\n"
    assert exchange.parse_rules(" 198.51.100.1 # a host\n\n# comment only\n2001:db8::/32\n", "plain", "whitelist") == \
        {"whitelist": ["198.51.100.1", "2001:db8::/32"]}
    assert exchange.parse_rules(exchange.export_rules(DATA, "json"), "json", "port") == {"port": DATA["port_rules"]}
    records = [{"kind": "whitelist", "cidr": "198.51.100.9"}, {"kind": "port", "proto": "tcp", "ports": "80"}]
    assert exchange.parse_rules(json.dumps(records), "json") == {
        "whitelist": ["198.51.100.9"], "port": [{"proto": "tcp", "ports": "80"}]}
    assert exchange.guess_format("x.CSV") == "csv" and exchange.guess_format("x.txt") == "plain"


@pytest.mark.parametrize("text,fmt,kind,needle", [
    ("{", "json", None, "not valid JSON"),
    ('{"whitelist": "198.51.100.1"}', "json", None, "must be a list"),
    ('{"rules": []}', "json", None, "unknown key"),
    ("42", "json", None, "object or a list"),
    ("kind,cidr,colour\nwhitelist,198.51.100.1,red\n", "csv", None, "unknown CSV column"),
    ("kind,cidr\nnope,198.51.100.1\n", "csv", None, "line 2"),
    ("kind,cidr,expires\nblacklist,198.51.100.1,soon\n", "csv", None, "expires"),
    ("198.51.100.1\n", "plain", None, "needs a kind"),
    ("198.51.100.1\n", "yaml", "whitelist", "format"),
    ("kind,source,rate\nratelimit,203.0.113.0/24,fast\n", "csv", None, "rate must be an integer"),
    ("kind,source,rate,syn_only\nratelimit,203.0.113.0/24,5,maybe\n", "csv", None, "true or false"),
    ("kind,cidr,proto\nwhitelist,198.51.100.1,tcp\n", "csv", None, "whitelist rules have no proto"),
    ('["198.51.100.1"]', "json", None, "without a kind"),
    ("[" * 100000, None, None, "not valid JSON"),
])
def test_parse_errors(text, fmt, kind, needle):
    with pytest.raises(NetxfwError, match=needle):
        exchange.parse_rules(text, fmt, kind)
