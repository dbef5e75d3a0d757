# SPDX-License-Identifier: GPL-2.0-or-later
"""netxfw_rule's action plugin with a long `entries:` list, through real ansible-playbook runs in the
firewall namespace (the env / loaded fixtures of conftest.py): the list goes as one compressed file,
an unchanged list is answered by the host's request cache without being sent, and results, check
mode, diff and errors are those of the module run on the same list without the plugin."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ipaddress
import json
import os

from ansible_collections.netxfw.firewall.plugins.module_utils import payload

PEER_ADDR = "198.51.100.2"  # conftest.py: vm1, in the peer namespace
COMPARED = ("changed", "added", "removed", "added_count", "removed_count", "truncated", "loaded", "diff", "msg",
            "failed")


def long_list(count):
    """`count` entries, IPv6 and IPv4, more than the plugin sends as an argument; the peer among them."""
    six = [str(ipaddress.ip_network("2001:db8:%x::/48" % i)) for i in range(count // 2)]
    four = ["203.0.%d.%d" % (i // 256 % 256, i % 256) for i in range(count - len(six) - 1)]
    return six + four + [PEER_ADDR]


def playbook(env, args, check=False, diff=False):
    return env.playbook("netxfw_rule", dict(args, max_listed=5), check=check, diff=diff)


def same(plugin, direct):
    """The user-visible results agree (the plugin's run and the module's own on the same list)."""
    def seen(result):
        return dict((k, bool(result.get(k)) if k in ("failed", "changed") else result.get(k)) for k in COMPARED)
    assert seen(plugin) == seen(direct)


def test_long_entries_file_then_cache_then_changed_list(loaded):
    env = loaded
    assert env.ping_from_peer()
    entries = long_list(6000)
    args = {"kind": "blacklist", "entries": entries, "exclusive": True}

    # check mode first: what the module alone says, nothing written
    check = playbook(env, args, check=True, diff=True)
    direct = env.run("netxfw_rule", dict(args, max_listed=5), check=True, diff=True)
    assert check["changed"] is True and check["added_count"] == 6000, check
    assert check["entries_transfer"]["mode"] == "file"
    same(check, direct)
    assert env.rules().get("blacklist", []) == []
    assert env.ping_from_peer()

    added = playbook(env, args, diff=True)
    assert added["changed"] is True and added["added_count"] == 6000 and added["truncated"] is True, added
    transfer = added["entries_transfer"]
    assert transfer["mode"] == "file" and transfer["entries"] == 6000
    assert 0 < transfer["bytes"] < len(json.dumps(entries)) / 2  # compressed
    assert len(env.rules()["blacklist"]) == 6000
    assert not env.ping_from_peer()

    # unchanged: the request cache answers, the list is not sent (0 bytes: the module got only the digest)
    again = playbook(env, args, diff=True)
    assert again["changed"] is False and again["added_count"] == 0, again
    assert again["entries_transfer"] == {"mode": "cache", "entries": 6000, "bytes": 0}
    assert again["diff"] == env.run("netxfw_rule", dict(args, max_listed=5), diff=True)["diff"]
    checked = playbook(env, args, check=True)
    assert checked["changed"] is False and checked["entries_transfer"]["mode"] == "cache"

    # a changed list (the peer left out) is sent again and applied
    smaller = dict(args, entries=[e for e in entries if e != PEER_ADDR] + ["2001:db8:ffff::/48"])
    changed = playbook(env, smaller, diff=True)
    assert changed["changed"] is True and changed["entries_transfer"]["mode"] == "file", changed
    assert changed["added"] == [{"cidr": "2001:db8:ffff::/48", "expires": None}]
    assert changed["removed"] == [{"cidr": PEER_ADDR + "/32", "expires": None}]
    assert env.ping_from_peer()
    # the first list again: not the last request any more, so it is sent
    back = playbook(env, args)
    assert back["changed"] is True and back["entries_transfer"]["mode"] == "file"
    assert back["added_count"] == 1 and back["removed_count"] == 1


def test_long_entries_errors_are_the_modules(loaded):
    env = loaded
    entries = long_list(3000)
    entries[2345] = "203.0.113.300/32"
    args = {"kind": "whitelist", "entries": entries}
    failed = playbook(env, args)
    direct = env.run("netxfw_rule", dict(args, max_listed=5))
    assert failed["failed"] is True and "203.0.113.300/32" in failed["msg"], failed
    same(failed, direct)
    assert env.rules().get("whitelist", []) == []
    # a ttl: no cache (it counts from now), the list goes as a file every time
    entries = long_list(3000)
    ttl = playbook(env, {"kind": "blacklist", "entries": entries, "ttl": 600})
    assert ttl["changed"] is True and ttl["entries_transfer"]["mode"] == "file", ttl
    assert all(e["expires"] is not None for e in env.rules()["blacklist"])
    bad = playbook(env, {"kind": "blacklist", "entries": entries, "src": "/nonexistent"})
    assert bad["failed"] is True and "mutually exclusive" in bad["msg"] and "entries_transfer" not in bad


def test_module_alone_with_the_internal_options(loaded):
    """What the module does with the plugin's options when it runs without the plugin."""
    env = loaded
    args = {"kind": "blacklist", "state": "present", "exclusive": False}
    digest = payload.request_digest("blacklist", ["203.0.113.9"], "present", False, None)
    asked = env.run("netxfw_rule", dict(args, entries_digest=digest))
    assert asked["rc"] == 0 and asked["changed"] is False and asked["entries_needed"] is True, asked
    assert env.rules().get("blacklist", []) == []

    path = os.path.join(env.tmp, "entries.json.gz")
    with open(path, "wb") as stream:
        stream.write(payload.encode(["203.0.113.9"], digest))
    applied = env.run("netxfw_rule", dict(args, entries_file=path, entries_digest=digest))
    assert applied["rc"] == 0 and applied["changed"] is True and applied["added_count"] == 1, applied
    answered = env.run("netxfw_rule", dict(args, entries_digest=digest))
    assert answered["changed"] is False and "entries_needed" not in answered and answered["added_count"] == 0
    other = env.run("netxfw_rule", dict(args, entries_file=path, exclusive=True))
    assert other["rc"] == 1 and "does not match its digest" in other["msg"], other
    with open(path, "wb") as stream:
        stream.write(payload.encode(["203.0.113.9"], digest)[:-9])
    cut = env.run("netxfw_rule", dict(args, entries_file=path))
    assert cut["rc"] == 1 and "damaged" in cut["msg"], cut


def test_entries_as_one_text_like_src(loaded):
    """`entries: "{{ lookup('file', ...) }}"`: one text, the content of a src file, sent as a file and
    then answered by the request cache; the same results as the module's src on the same file."""
    env = loaded
    entries = long_list(3000)
    path = os.path.join(env.tmp, "blocklist.txt")
    with open(path, "w") as stream:
        stream.write("# a blocklist\n\n" + "\n".join(entries[:10]) + "  # ten\n" + "\n".join(entries[10:]) + "\n")
    args = {"kind": "blacklist", "entries": "{{ lookup('ansible.builtin.file', '%s') }}" % path, "exclusive": True}
    check = playbook(env, args, check=True, diff=True)
    direct = env.run("netxfw_rule", {"kind": "blacklist", "src": path, "exclusive": True, "max_listed": 5},
                     check=True, diff=True)
    assert check["changed"] is True and check["added_count"] == 3000, check
    assert check["entries_transfer"]["mode"] == "file" and check["entries_transfer"]["entries"] is None
    same(check, direct)
    assert env.rules().get("blacklist", []) == []
    assert env.ping_from_peer()

    added = playbook(env, args, diff=True)
    assert added["changed"] is True and added["added_count"] == 3000, added
    assert added["entries_transfer"]["mode"] == "file" and 0 < added["entries_transfer"]["bytes"] < os.path.getsize(path)
    assert not env.ping_from_peer()
    again = playbook(env, args, diff=True)
    assert again["changed"] is False and again["entries_transfer"] == {"mode": "cache", "entries": None, "bytes": 0}
    # the same bytes as src: the request cache knows them already
    as_src = playbook(env, {"kind": "blacklist", "src": path, "exclusive": True})
    assert as_src["changed"] is False and as_src["added_count"] == 0, as_src

    # a short text goes as a file at once (no cache question first); a wrong line fails it whole
    short = playbook(env, dict(args, entries="198.51.100.7\n198.51.100.8\n", exclusive=False))
    assert short["changed"] is True and short["added_count"] == 2 and short["entries_transfer"]["mode"] == "file"
    bad = playbook(env, dict(args, entries="198.51.100.9\n198.51.100.300\n", exclusive=False))
    assert bad["failed"] is True and "198.51.100.300" in bad["msg"], bad
    assert len(env.rules()["blacklist"]) == 3002
    # an async task runs without the plugin's transfer: refused rather than split at commas
    not_async = env.playbook("netxfw_rule", dict(args, entries="198.51.100.10\n198.51.100.11\n"),
                             keywords="      async: 60\n      poll: 1\n")
    assert not_async["failed"] is True and "async" in not_async["msg"], not_async
    assert len(env.rules()["blacklist"]) == 3002


def test_entries_templates_still_templated(loaded):
    """The plugin templates `entries` itself: an item that is a template is still templated, a string
    that is not trusted as a template (a file's lines) is not, and an expression giving the list works."""
    env = loaded
    entries = long_list(2500)
    templated = playbook(env, {"kind": "blacklist", "entries": entries[:-1] + ["{{ '203.0.113.%d' % (70 + 7) }}"]})
    assert templated["changed"] is True and templated["added_count"] == 2500, templated
    cidrs = set(e["cidr"] for e in env.rules()["blacklist"])
    assert "203.0.113.77/32" in cidrs and PEER_ADDR + "/32" not in cidrs

    path = os.path.join(env.tmp, "lines.txt")
    with open(path, "w") as stream:
        stream.write("\n".join(entries) + "\n")
    lookup = "{{ lookup('ansible.builtin.file', '%s').splitlines() }}" % path
    expression = playbook(env, {"kind": "blacklist", "entries": lookup, "exclusive": True})
    assert expression["changed"] is True and expression["entries_transfer"]["entries"] == 2500, expression
    assert set(e["cidr"] for e in env.rules()["blacklist"]) == cidrs - {"203.0.113.77/32"} | {PEER_ADDR + "/32"}
    cached = playbook(env, {"kind": "blacklist", "entries": lookup, "exclusive": True})
    assert cached["changed"] is False and cached["entries_transfer"]["mode"] == "cache", cached

    with open(path, "a") as stream:
        stream.write("{{ '203.0.113.5' }}\n")  # a file's content is no template: it stays as written
    untrusted = playbook(env, {"kind": "blacklist", "entries": lookup, "exclusive": True})
    assert untrusted["failed"] is True and "{{ '203.0.113.5' }}" in untrusted["msg"], untrusted
    assert "203.0.113.5/32" not in set(e["cidr"] for e in env.rules()["blacklist"])
