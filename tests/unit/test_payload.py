# SPDX-License-Identifier: GPL-2.0-or-later
"""payload.py: the compressed entries file of the netxfw_rule action plugin and the request digest
that the host's request cache is keyed on (the same function on both ends)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import gzip
import json

import pytest

from ansible_collections.netxfw.firewall.plugins.module_utils import engine, payload
from ansible_collections.netxfw.firewall.plugins.module_utils.errors import NetxfwError

ENTRIES = ["203.0.113.9", "2001:db8::/48", {"cidr": "198.51.100.0/24", "expires": None}]


def test_the_engine_keys_its_cache_on_this_digest():
    assert engine.request_digest is payload.request_digest


def test_round_trip_and_format():
    digest = payload.request_digest("blacklist", ENTRIES, "present", True, None)
    data = payload.encode(ENTRIES, digest)
    assert data[:2] == b"\x1f\x8b"  # gzip
    assert json.loads(gzip.decompress(data)) == {"format": 1, "count": 3, "digest": digest, "entries": ENTRIES}
    assert payload.decode(data, "blacklist", "present", True, None) == ENTRIES
    assert payload.encode(ENTRIES, digest) == data  # no timestamp: the same list gives the same bytes


def test_digest_binds_the_request():
    digest = payload.request_digest("blacklist", ENTRIES, "present", False, None)
    data = payload.encode(ENTRIES, digest)
    for kind, state, exclusive in (("whitelist", "present", False), ("blacklist", "absent", False),
                                   ("blacklist", "present", True)):
        with pytest.raises(NetxfwError, match="does not match its digest"):
            payload.decode(data, kind, state, exclusive, None)
    # a ttl request has no digest (it means something else next time); its file carries none
    assert payload.request_digest("blacklist", ENTRIES, "present", False, 60) is None
    assert payload.decode(payload.encode(ENTRIES, None), "blacklist", "present", False, 60) == ENTRIES


def test_digest_tells_lists_apart():
    digest = payload.request_digest
    assert digest("whitelist", ["a", "b"], "present", False, None) != digest("whitelist", ["a\0b"], "present", False, None)
    assert digest("whitelist", ["a", "b"], "present", False, None) != digest("whitelist", ["b", "a"], "present", False, None)
    assert digest("port", [{"proto": "tcp", "port": 22}], "present", False, None) == \
        digest("port", [{"port": 22, "proto": "tcp"}], "present", False, None)


@pytest.mark.parametrize("damage, message", [
    (lambda data: data[:-9], "damaged"),
    (lambda data: b"not gzip at all", "damaged"),
    (lambda data: gzip.compress(b"[1, 2]"), "unknown format"),
    (lambda data: gzip.compress(json.dumps({"format": 2, "count": 0, "digest": None, "entries": []}).encode()),
     "unknown format"),
    (lambda data: gzip.compress(json.dumps({"format": 1, "count": 4, "digest": None, "entries": ENTRIES}).encode()),
     "incomplete"),
    (lambda data: gzip.compress(b"\xff\xfe"), "damaged"),
])
def test_damaged_files_fail_before_anything_applies(damage, message):
    data = payload.encode(ENTRIES, None)
    with pytest.raises(NetxfwError, match=message):
        payload.decode(damage(data), "blacklist", "present", False, None)


def test_entries_that_are_no_json_are_refused_by_encode():
    with pytest.raises((TypeError, ValueError)):
        payload.encode([float("nan")], None)
    with pytest.raises((TypeError, ValueError)):
        payload.encode([object()], None)


def test_clean_entries_as_the_module_cleans_them():
    assert payload.clean_entries(["203.0.113.9", " 203.0.113.0/28 ", "", {"cidr": "x"}]) == [
        "203.0.113.9", "203.0.113.0/28", {"cidr": "x"}]
    assert payload.clean_entries(None) == []


def test_digest_is_the_documented_bytes():
    """Host and controller of different netxfw versions keep answering each other's requests: the
    digest of a list of strings and of any other list is the same bytes as ever."""
    import hashlib
    head = "blacklist\0present\0True\0%d\0"
    strings = ["198.51.100.0/24", "2001:db8::/48"]
    assert payload.request_digest("blacklist", strings, "present", True, None) == hashlib.sha256(
        (head % 2).encode() + b"str\x00" + b"198.51.100.0/24\x00" + b"2001:db8::/48").hexdigest()
    mixed = ["198.51.100.1", {"cidr": "203.0.113.0/24", "expires": None}]
    assert payload.request_digest("blacklist", mixed, "present", True, None) == hashlib.sha256(
        (head % 2).encode() + b'json\0["198.51.100.1",{"cidr":"203.0.113.0/24","expires":null}]').hexdigest()


def test_text_round_trip_is_bound_to_its_src_digest():
    """`entries` as one text goes as the text, digested as the host digests a src file's bytes."""
    text = "203.0.113.9\n# a comment\n2001:db8::/48\n"
    digest = payload.file_digest("blacklist", text.encode(), "present", True, None)
    data = payload.encode_text(text, digest)
    assert payload.decode(data, "blacklist", "present", True, None) == text.encode()
    assert payload.encode_text(text, digest) == data
    with pytest.raises(NetxfwError, match="does not match its digest"):
        payload.decode(data, "blacklist", "present", False, None)
    assert payload.decode(payload.encode_text(text, None), "blacklist", "present", False, 60) == text.encode()
    cut = json.loads(gzip.decompress(data))
    cut["text"] = cut["text"][:-3]
    with pytest.raises(NetxfwError, match="incomplete"):
        payload.decode(gzip.compress(json.dumps(cut).encode()), "blacklist", "present", True, None)


def test_clean_entries_of_strings_only():
    assert payload.clean_entries([" 203.0.113.9", "", "  ", "2001:db8::/48 "]) == ["203.0.113.9", "2001:db8::/48"]
