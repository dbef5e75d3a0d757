# SPDX-License-Identifier: GPL-2.0-or-later
"""A request repeated unchanged is answered from <state_dir>/.requests.json without parsing it
again (Firewall.apply_rules), and only when nothing it depends on has moved since."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import time

from ansible_collections.netxfw.firewall.plugins.module_utils import layout, payload, rulemaps, rules


def requests_file(env):
    path = os.path.join(env.fw.store.state_dir, env.fw.store.REQUESTS_FILE)
    with open(path) as stream:
        return json.load(stream)


def test_repeated_request_is_a_noop_from_the_record(fresh, monkeypatch):
    entries = ["203.0.113.%d" % n for n in range(1, 50)] + ["198.51.100.0/25"]
    assert fresh.fw.apply_rules("blacklist", entries)["changed"]
    recorded = requests_file(fresh)["blacklist"][0]
    assert recorded["generation"] == fresh.rules_json()["generation"] and recorded["next_expiry"] is None

    # answered from the record: normalize() would fail if it ran
    monkeypatch.setattr(rules, "normalize", lambda *args, **kwargs: 1 / 0)
    monkeypatch.setattr(fresh.fw.store, "read_rules", lambda: 1 / 0)  # nor is rules.json read
    before = fresh.read_file("rules.json")
    again = fresh.fw.apply_rules("blacklist", list(entries))
    assert again == {"changed": False, "added": [], "removed": [], "loaded": True}
    assert fresh.read_file("rules.json") == before
    monkeypatch.undo()
    fresh.assert_maps_match_json()


def test_rules_json_changed_behind_the_engines_back_is_no_cache_hit(fresh):
    """The record names the rules.json file it was made on: an edit (same generation) is seen."""
    entries = ["203.0.113.50", "203.0.113.51"]
    assert fresh.fw.apply_rules("blacklist", entries, exclusive=True)["changed"]
    data = fresh.rules_json()
    data["blacklist"] = [e for e in data["blacklist"] if e["cidr"] != "203.0.113.51/32"]
    path = os.path.join(fresh.fw.store.state_dir, "rules.json")
    with open(path, "r+") as stream:  # in place: same inode, same generation, shorter
        stream.write(json.dumps(data))
        stream.truncate()
    again = fresh.fw.apply_rules("blacklist", entries, exclusive=True)
    assert again["changed"] is True and [e["cidr"] for e in again["added"]] == ["203.0.113.51/32"]
    fresh.assert_maps_match_json()


def test_rules_json_rewritten_alike_is_no_cache_hit(fresh, monkeypatch):
    """Another file with the same generation and content (restored from a backup, say): the
    request is worked out again, and finds nothing to change."""
    entries = ["203.0.113.52"]
    assert fresh.fw.apply_rules("blacklist", entries)["changed"]
    path = os.path.join(fresh.fw.store.state_dir, "rules.json")
    with open(path, "rb") as stream:
        raw = stream.read()
    os.unlink(path)
    with open(path, "wb") as stream:
        stream.write(raw)
    calls = []
    real = rules.normalize
    monkeypatch.setattr(rules, "normalize", lambda *args, **kwargs: calls.append(1) or real(*args, **kwargs))
    assert fresh.fw.apply_rules("blacklist", entries)["changed"] is False
    assert calls == [1]


def test_a_lost_record_never_answers_for_the_rules_after_it(fresh):
    """A run killed after writing the maps and rules.json but before its own record: the record
    left from before names the old rules.json, so the old request is applied again."""
    first, second = ["203.0.113.60"], ["203.0.113.61"]
    assert fresh.fw.apply_rules("blacklist", first, exclusive=True)["changed"]
    old_record = fresh.read_file(fresh.fw.store.REQUESTS_FILE)
    assert fresh.fw.apply_rules("blacklist", second, exclusive=True)["changed"]
    with open(os.path.join(fresh.fw.store.state_dir, fresh.fw.store.REQUESTS_FILE), "wb") as stream:
        stream.write(old_record)
    again = fresh.fw.apply_rules("blacklist", first, exclusive=True)
    assert again["changed"] is True and [e["cidr"] for e in again["added"]] == ["203.0.113.60/32"]
    fresh.assert_maps_match_json()


def test_a_write_in_between_makes_the_request_count_again(fresh):
    entries = ["203.0.113.7", "2001:db8:7::/48"]
    assert fresh.fw.apply_rules("blacklist", entries, exclusive=True)["changed"]
    assert fresh.fw.apply_rules("blacklist", ["203.0.113.7"], state="absent")["changed"]
    again = fresh.fw.apply_rules("blacklist", entries, exclusive=True)
    assert again["changed"] is True and again["added"] == [{"cidr": "203.0.113.7/32", "expires": None}]
    fresh.assert_maps_match_json()
    assert fresh.fw.apply_rules("blacklist", entries, exclusive=True)["changed"] is False


def test_a_sweep_between_two_runs_keeps_both_records(fresh, monkeypatch):
    entries = ["203.0.113.9"]
    fresh.fw.apply_rules("blacklist", entries)
    mine = requests_file(fresh)["blacklist"][0]
    fresh.fw.sweep()  # a request of its own (blacklist, [], present), nothing expired: no write
    recent = requests_file(fresh)["blacklist"]
    assert recent[0]["request"] != mine["request"] and mine in recent
    monkeypatch.setattr(rules, "normalize", lambda *args, **kwargs: 1 / 0)
    assert fresh.fw.apply_rules("blacklist", entries)["changed"] is False


def test_an_expiry_in_between_makes_the_request_count_again(fresh):
    soon = time.time() + 1.5
    entries = [{"cidr": "203.0.113.20", "expires": soon}, "203.0.113.21"]
    assert fresh.fw.apply_rules("blacklist", entries)["changed"]
    assert requests_file(fresh)["blacklist"][0]["next_expiry"] == soon
    time.sleep(max(0.0, soon - time.time()) + 0.2)
    again = fresh.fw.apply_rules("blacklist", entries)  # parsed again: the expired entry is dropped
    assert again["changed"] is True
    assert [e["cidr"] for e in again["removed"]] == ["203.0.113.20/32"]
    fresh.assert_maps_match_json()
    assert fresh.maps(["src4_host"])["src4_host"] == [
        (bytes([203, 0, 113, 21]), layout.encode_u64(layout.SRC_BL))]


def test_maps_out_of_step_are_rebuilt_even_for_a_repeated_request(fresh):
    entries = ["198.51.100.77"]
    assert fresh.fw.apply_rules("whitelist", entries)["changed"]
    maps = fresh.fw.open_maps()
    try:
        maps["src4_host"].delete(bytes([198, 51, 100, 77]))
        rulemaps.mark_generation(maps, None)  # as a run killed half-way leaves them
    finally:
        fresh.fw.close_maps(maps)
    again = fresh.fw.apply_rules("whitelist", entries)
    assert again["changed"] is True
    fresh.assert_maps_match_json()
    value = dict(fresh.maps(["src4_host"])["src4_host"])[bytes([198, 51, 100, 77])]
    assert layout.decode_u64(value) & layout.SRC_WL


def test_ttl_requests_are_never_answered_from_the_record(fresh):
    assert payload.request_digest("blacklist", ["203.0.113.30"], "present", False, 60) is None
    first = fresh.fw.apply_rules("blacklist", ["203.0.113.30"], ttl=60)
    time.sleep(0.05)
    second = fresh.fw.apply_rules("blacklist", ["203.0.113.30"], ttl=60)
    assert first["changed"] and second["changed"]  # the expiry moved: now + ttl
    assert second["added"][0]["expires"] > first["added"][0]["expires"]


def test_digest_tells_lists_apart():
    digest = payload.request_digest
    assert digest("whitelist", ["203.0.113.1", "203.0.113.2"], "present", False, None) != \
        digest("whitelist", ["203.0.113.1\x00203.0.113.2"], "present", False, None)
    assert digest("whitelist", ["203.0.113.1"], "present", False, None) != \
        digest("whitelist", ["203.0.113.1"], "present", True, None)
    assert digest("whitelist", ["203.0.113.1"], "present", False, None) != \
        digest("blacklist", ["203.0.113.1"], "present", False, None)
    assert digest("port", [{"proto": "tcp", "port": 22}], "absent", False, None) == \
        digest("port", [{"port": 22, "proto": "tcp"}], "absent", False, None)
    assert digest("whitelist", [object()], "present", False, None) is None


def test_an_unreadable_record_is_ignored(fresh):
    fresh.fw.apply_rules("whitelist", ["203.0.113.40"])
    with open(os.path.join(fresh.fw.store.state_dir, fresh.fw.store.REQUESTS_FILE), "w") as stream:
        stream.write("{not json")
    assert fresh.fw.apply_rules("whitelist", ["203.0.113.40"])["changed"] is False
    assert requests_file(fresh)["whitelist"][0]["generation"] == fresh.rules_json()["generation"]


def test_a_src_file_digest_answers_only_for_the_rules_it_left(fresh, monkeypatch):
    """netxfw_rule's src shortcut: the digest of the file's bytes (payload.file_digest) is remembered
    beside the entries' digest, answers for the same file unparsed, and for nothing after a write."""
    alias = payload.file_digest("blacklist", b"203.0.113.80\n", "present", True, None)
    assert fresh.fw.apply_rules("blacklist", None, exclusive=True, request=alias) is None  # unknown: parse it
    assert fresh.fw.apply_rules("blacklist", ["203.0.113.80"], exclusive=True, alias=alias)["changed"]
    monkeypatch.setattr(rules, "normalize", lambda *args, **kwargs: 1 / 0)
    assert fresh.fw.apply_rules("blacklist", None, exclusive=True, request=alias) == \
        {"changed": False, "added": [], "removed": [], "loaded": True}
    assert fresh.fw.apply_rules("blacklist", None, exclusive=True, request=alias, check_mode=True)["changed"] is False
    monkeypatch.undo()
    assert fresh.fw.apply_rules("blacklist", ["203.0.113.81"])["changed"]  # another write
    assert fresh.fw.apply_rules("blacklist", None, exclusive=True, request=alias) is None
    fresh.assert_maps_match_json()


def test_a_repeated_request_remembers_its_src_digest(fresh):
    """The same entries from a file not seen before (touched, say): answered by the entries' digest,
    and the file's digest remembered for next time."""
    assert fresh.fw.apply_rules("whitelist", ["198.51.100.90"], exclusive=True)["changed"]
    alias = payload.file_digest("whitelist", b"198.51.100.90\n\n", "present", True, None)
    assert fresh.fw.apply_rules("whitelist", ["198.51.100.90"], exclusive=True, alias=alias)["changed"] is False
    assert alias in [r["request"] for r in requests_file(fresh)["whitelist"]]
    assert fresh.fw.apply_rules("whitelist", None, exclusive=True, request=alias)["changed"] is False
