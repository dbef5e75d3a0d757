#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, netxfw developers
# GNU General Public License v2.0+ (see https://www.gnu.org/licenses/gpl-2.0.txt), so also v3.0 (https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-2.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: netxfw_rule
short_description: Manage netxfw whitelist, blacklist, port and rate-limit rules
version_added: "0.1.0"
description:
  - Adds or removes entries of one kind of netxfw rule, in the live maps of the loaded data plane
    (batch map operations, no reload) and in O(state_dir)/rules.json.
  - Only the difference between the wanted and the current entries is written, so pushing a list of
    100k entries again changes nothing.
  - For lists of 100k entries and more, put them in a file on the managed host and pass its path as
    O(src); carrying a million entries as a task argument costs Ansible far more time than applying them.
  - The returned RV(added) and RV(removed) lists and the diff hold at most O(max_listed) entries each;
    RV(added_count) and RV(removed_count) are always exact.
  - Adding a blacklist entry also cuts the tracked flows from the blocked addresses.
  - When the data plane is not loaded, the rules are only persisted; they apply when
    M(netxfw.firewall.netxfw_program) loads it (the module then warns).
  - Needs only libbpf (through ctypes), not BCC, and never recompiles anything.
author:
  - netxfw developers (@netxfw)
extends_documentation_fragment:
  - netxfw.firewall.common
options:
  kind:
    description:
      - Which rules O(entries) or O(src) holds.
      - V(whitelist) entries pass before any other check; V(blacklist) entries are dropped;
        V(port) rules allow or deny TCP/UDP destination ports by source; V(ratelimit) rules limit the
        packets per second of each source address in a CIDR (token bucket per source), optionally banning it.
    type: str
    choices: [whitelist, blacklist, port, ratelimit]
    required: true
  entries:
    description:
      - The entries, a list.
      - For V(whitelist) and V(blacklist), IPv4 or IPv6 addresses or CIDRs such as V(203.0.113.9)
        or V(2001:db8::/48); host bits are masked.
      - For V(blacklist), an entry may also be a mapping C({cidr, expires}) where C(expires) is
        epoch seconds (wall clock) or V(null) for never. An C(expires) already past ends the entry (it is removed
        if present, never added), so a play that keeps it past the date stays unchanged.
      - For V(port), each entry is a mapping with C(proto) (V(tcp) or V(udp)), exactly one of C(port)
        (a port) or C(ports) (a port such as V(22) or a range such as V(8000-8100)), optional C(source)
        (a CIDR or V(any), the default) and optional C(action) (V(allow), the default, or V(deny)).
      - For V(ratelimit), each entry is a mapping with C(source) (a CIDR; the longest matching prefix
        applies), C(rate) (packets per second allowed to each source address of it), optional C(burst)
        (bucket depth in packets, default C(rate)), optional C(syn_only) (V(true) limits only TCP SYNs,
        default V(false)) and optional C(ban_ttl) (seconds, at most 10 years; default V(0), drop only).
        Packets over the rate are dropped. A ban takes proof that the source holds its address. With
        C(ban_ttl), a source that completes TCP handshakes beyond the rate and burst is banned (an
        expiring entry that is runtime state, not in rules.json); anything that can be forged in someone
        else's name (spoofed SYNs, UDP, ICMP) is dropped and bans nobody. A ban blocks new connections
        and spares the TCP connections the source holds.
        Flows the source opened stay under its limit; flows this host opened and whitelisted sources
        are never limited.
      - An IPv6 entry matches IPv6 packets only, and an IPv4-mapped one such as V(::ffff:0:0/96) (an IPv6
        bogon prefix) never matches IPv4 sources. Write IPv4 addresses as IPv4.
      - A comma-separated string is read as a list, which is handy ad hoc
        (C(entries=203.0.113.9,203.0.113.0/28)).
      - A string of several lines is read as the content of an O(src) file, in any format O(src) takes (one
        address or CIDR per line, blank lines and C(#) comments ignored, a JSON list, or CSV). With it a
        blocklist kept on the controller needs no list variable at all, O(entries) being
        C("{{ lookup('ansible.builtin.file', 'blocklist.txt') }}"), which is the fastest way for long lists
        kept on the controller. Like a list of 2000 entries and more, it goes to the host as one
        compressed file, and is not sent at all when the host has applied the very same text last and
        nothing changed since.
      - With O(exclusive=true) and O(state=present), an empty list empties the list of O(kind).
      - Exactly one of O(entries) and O(src) is required.
      - A long list (2000 entries and more) goes to the host as one compressed file, and when the host has
        already applied the very same request and nothing changed since, it is not sent at all (the action
        plugin of this module does it; RV(entries_transfer) tells which way was taken).
      - A list of plain strings (addresses and CIDRs) that holds no template is taken as it is, without
        templating each item; a list of which one item may be a template (it holds C({)) and lists of
        mappings are templated as any task argument is.
    type: list
    elements: raw
  src:
    description:
      - Path of a file B(on the managed host) holding the entries, instead of O(entries); copy it there
        first, for example with M(ansible.builtin.copy).
      - The file takes every format C(netxfw import) on the host reads (one parser for both), told apart by
        its content.
      - A JSON list (the file's first non-blank character is C([)) of the same items as O(entries), or of
        records carrying their C(kind) (those of other kinds are skipped).
      - A JSON export document (C(netxfw export), first character C({)); only the list of O(kind) is read.
      - CSV whose first line names its columns (C(kind), C(cidr), C(expires), C(source), C(proto), C(ports),
        C(action), C(rate), C(burst), C(syn_only), C(ban_ttl)), as C(netxfw export --format csv) writes it.
      - Plain text with one address or CIDR per line, for O(kind=whitelist) and O(kind=blacklist) only.
        In plain text, blank lines and everything from C(#) to the end of a line are ignored; a
        blacklist line is only a CIDR (its expiry comes from O(ttl)).
      - A file whose bytes are those of the request applied last (and nothing changed since) is answered
        from the host's request cache without being parsed.
      - The file is read in check mode too. A file that is missing, unreadable, not UTF-8, not valid JSON
        or CSV, or holds items of the wrong type fails the task and nothing is changed.
      - With O(exclusive=true) and O(state=present), an empty file empties the list of O(kind).
      - Mutually exclusive with O(entries).
    type: path
  entries_digest:
    description:
      - Set by the action plugin of this module, which sends a long O(entries) list (2000 entries and more)
        this way; not meant to be set in a task.
      - The digest of the request (O(kind), O(state), O(exclusive) and the entries). Given without O(entries),
        O(src) and O(entries_file), the module only asks the host's request cache (C(.requests.json) in
        O(state_dir)) whether this very request was the last applied and nothing changed since; then it
        returns the no-op result, else RV(entries_needed) and changes nothing.
    type: str
  entries_file:
    description:
      - Set by the action plugin of this module; not meant to be set in a task.
      - Path on the managed host of the entries as the action plugin sends them, a gzip-compressed JSON
        document with their count and request digest, checked before anything is applied.
    type: path
  state:
    description:
      - V(present) adds the entries, or updates them (a new blacklist expiry, a new port rule action).
      - V(absent) removes them; only the address (for port rules source, proto and ports; for rate-limit rules
        the source) must match, and the other fields may be left out.
    type: str
    choices: [present, absent]
    default: present
  exclusive:
    description:
      - With O(state=present), O(entries) become the whole list of O(kind); every other entry of
        that kind is removed.
    type: bool
    default: false
  ttl:
    description:
      - Seconds until blacklist entries given without their own C(expires) stop blocking.
      - At most 315360000 (10 years), and an C(expires) at most that far ahead (the data plane cannot hold
        a later expiry). For a longer block give no O(ttl) (the entry never expires).
      - Only for O(kind=blacklist) with O(state=present).
    type: int
  max_listed:
    description:
      - At most this many entries are returned in RV(added) and in RV(removed), and shown in each side of
        the diff, the first ones in sorted order. RV(truncated) tells when some were left out.
      - RV(added_count) and RV(removed_count) are always the exact numbers.
      - V(0) lists none.
    type: int
    default: 1000
attributes:
  check_mode:
    description: Reports the entries that would be added and removed without writing anything.
    support: full
  diff_mode:
    description:
      - Shows only the entries removed (before) and added (after), one per line, never the whole lists;
        at most O(max_listed) of each.
    support: full
requirements:
  - Linux with BPF support, root.
  - libbpf 1.x (Debian/Ubuntu C(libbpf1), RHEL/Fedora C(libbpf)).
seealso:
  - module: netxfw.firewall.netxfw_program
  - module: netxfw.firewall.netxfw_info
"""

EXAMPLES = r"""
- name: Block two sources for an hour
  netxfw.firewall.netxfw_rule:
    kind: blacklist
    entries:
      - 203.0.113.9
      - 2001:db8:bad::/48
    ttl: 3600

- name: Block a network until a given time (epoch seconds), and another one for good
  netxfw.firewall.netxfw_rule:
    kind: blacklist
    entries:
      - cidr: 203.0.113.0/28
        expires: 1767225600
      - cidr: 198.51.100.77/32
        expires: null

- name: The management networks are the whole whitelist
  netxfw.firewall.netxfw_rule:
    kind: whitelist
    entries:
      - 198.51.100.0/24
      - 2001:db8:1::/48
    exclusive: true

- name: SSH from the management network only, web from anywhere
  netxfw.firewall.netxfw_rule:
    kind: port
    entries:
      - {source: 198.51.100.0/24, proto: tcp, port: 22, action: allow}
      - {source: any, proto: tcp, port: 22, action: deny}
      - {proto: tcp, ports: "80"}
      - {proto: tcp, ports: 8000-8100}

- name: At most 20 new connections per second from each address of the Internet, 10 minute ban above it
  netxfw.firewall.netxfw_rule:
    kind: ratelimit
    entries:
      - {source: 0.0.0.0/0, rate: 20, burst: 40, syn_only: true, ban_ttl: 600}
      - {source: "::/0", rate: 20, burst: 40, syn_only: true, ban_ttl: 600}

- name: Copy a large blocklist (one CIDR per line, or a JSON list) to the host
  ansible.builtin.copy:
    src: files/blocklist.txt
    dest: /var/lib/netxfw/blocklist.txt
    owner: root
    mode: "0600"

- name: It is the whole blacklist (a million entries take seconds this way, minutes as a task argument)
  netxfw.firewall.netxfw_rule:
    kind: blacklist
    src: /var/lib/netxfw/blocklist.txt
    exclusive: true
  register: blocklist

- name: Say how many entries changed (the lists hold at most max_listed of them)
  ansible.builtin.debug:
    msg: "{{ blocklist.added_count }} added, {{ blocklist.removed_count }} removed"

- name: A blocklist kept on the controller, one CIDR per line, is the whole blacklist (one text, no list variable)
  netxfw.firewall.netxfw_rule:
    kind: blacklist
    entries: "{{ lookup('ansible.builtin.file', 'files/blocklist.txt') }}"
    exclusive: true

- name: Unblock an address
  netxfw.firewall.netxfw_rule:
    kind: blacklist
    entries: [203.0.113.9]
    state: absent

# Ad hoc, across the fleet:
#   ansible all -m netxfw.firewall.netxfw_rule -a 'kind=blacklist entries=203.0.113.9,203.0.113.0/28'
"""

RETURN = r"""
added:
  description:
    - Entries added or updated (in canonical form), or that would be in check mode.
    - At most O(max_listed) of them, the first ones in sorted order; RV(added_count) is the exact number.
    - Whitelist entries are CIDR strings; blacklist entries are C({cidr, expires}) with C(expires) in
      epoch seconds or V(null); port rules are C({source, proto, ports, action}).
  returned: always
  type: list
  elements: raw
  sample: [{"cidr": "203.0.113.9/32", "expires": null}]
removed:
  description:
    - Entries removed (in canonical form), including the old version of an updated entry and
      expired blacklist entries that were dropped.
    - At most O(max_listed) of them, the first ones in sorted order; RV(removed_count) is the exact number.
  returned: always
  type: list
  elements: raw
  sample: []
added_count:
  description: How many entries were added or updated (or would be, in check mode); never truncated.
  returned: always
  type: int
  sample: 1
removed_count:
  description: How many entries were removed (or would be, in check mode); never truncated.
  returned: always
  type: int
  sample: 0
truncated:
  description:
    - Whether RV(added) or RV(removed) (and then the diff) holds fewer entries than changed, because
      there were more than O(max_listed).
  returned: always
  type: bool
  sample: false
loaded:
  description:
    - Whether the data plane was loaded, so the maps were updated too. When false the rules were
      only persisted and apply at the next program load.
  returned: always
  type: bool
  sample: true
entries_transfer:
  description:
    - How O(entries) reached the host, when the action plugin of this module sent a long list its own way.
  returned: when O(entries) held 2000 entries or more, or was a string of several lines
  type: dict
  contains:
    mode:
      description:
        - V(cache) when the host's request cache answered (the list was not sent), V(file) when it went as
          one compressed file.
      type: str
      sample: cache
    entries:
      description: How many entries the list held; V(null) when O(entries) was one text (the host parses it).
      type: int
      sample: 100000
    bytes:
      description: The size of the compressed file sent (V(0) when none was).
      type: int
      sample: 412345
entries_needed:
  description:
    - True when the module was given only O(entries_digest) and the request cache could not answer for it;
      nothing was read or changed. The action plugin then sends the entries.
  returned: only then
  type: bool
  sample: true
diff:
  description:
    - Only what changed, one entry per line; never the whole lists, and at most O(max_listed) entries
      on each side.
  returned: in diff mode
  type: dict
  contains:
    before:
      description: Removed entries, one per line (at most O(max_listed)).
      type: str
      sample: "203.0.113.7/32\n"
    after:
      description: Added entries, one per line (at most O(max_listed)).
      type: str
      sample: "203.0.113.9/32 expires 2026-01-01T00:00:00Z\n"
    before_header:
      description: What RV(diff.before) holds, with the exact count (and how many are shown when truncated).
      type: str
      sample: "netxfw blacklist: 1 removed"
    after_header:
      description: What RV(diff.after) holds, with the exact count (and how many are shown when truncated).
      type: str
      sample: "netxfw blacklist: 5000 added, the first 1000 shown"
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.netxfw.firewall.plugins.module_utils import exchange, rules
from ansible_collections.netxfw.firewall.plugins.module_utils.errors import NetxfwError
from ansible_collections.netxfw.firewall.plugins.module_utils.module_support import (
    common_argument_spec,
    compact_diff,
    listed,
    load_engine,
    run_engine,
)
from ansible_collections.netxfw.firewall.plugins.module_utils.payload import clean_entries, decode, file_digest


def argument_spec():
    spec = dict(
        kind=dict(type="str", choices=list(rules.KINDS), required=True),
        entries=dict(type="list", elements="raw"),
        src=dict(type="path"),
        entries_digest=dict(type="str"),
        entries_file=dict(type="path"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        exclusive=dict(type="bool", default=False),
        ttl=dict(type="int"),
        max_listed=dict(type="int", default=1000),
    )
    spec.update(common_argument_spec())
    return spec


SRC_MISSING = " on the managed host; copy it there first (e.g. with ansible.builtin.copy)"


def read_src_bytes(path):
    return exchange.read_bytes(path, "src %s" % path, SRC_MISSING)


def read_src(path, kind, raw=None, label=None):
    """The entries of `kind` held by the file at `path` on the managed host (its bytes `raw` when
    read already, named `label` in errors), in any form `netxfw import` reads (exchange.parse_rules: a
    JSON list or export document, CSV, or one CIDR per line). NetxfwError."""
    label = label or "src %s" % path
    raw = read_src_bytes(path) if raw is None else raw
    parsed = exchange.parse_rules(exchange.decode_text(raw, label), None, kind, label)
    if kind not in parsed:
        raise NetxfwError("%s holds no %s rules: an export document without '%s'" % (label, kind, rules.KIND[kind].key))
    return parsed[kind]


def read_entries_file(path, params):
    """The entries of the file the action plugin sent, or the bytes of the text it holds when `entries`
    was one text (payload.decode). Raises NetxfwError."""
    try:
        with open(path, "rb") as stream:
            data = stream.read()
    except OSError as exc:
        raise NetxfwError("cannot read the entries file %s sent by the netxfw_rule action plugin: %s"
                          % (path, exc.strerror or exc))
    return decode(data, params["kind"], params["state"], params["exclusive"], params["ttl"])


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           mutually_exclusive=[("entries", "src", "entries_file")],
                           required_one_of=[("entries", "src", "entries_file", "entries_digest")])
    params = module.params
    limit = params["max_listed"]
    if limit < 0:
        module.fail_json(msg="max_listed must be 0 or more, not %d" % limit)
    entries = None  # only entries_digest: ask the request cache
    raw = alias = result = None
    if params["src"] is not None:
        try:
            raw = read_src_bytes(params["src"])
        except NetxfwError as exc:
            module.fail_json(msg=str(exc))
    elif params["entries_file"] is not None:
        entries = run_engine(module, lambda: read_entries_file(params["entries_file"], params), "netxfw_rule")
        if isinstance(entries, bytes):  # `entries` was one text: read as a src file's bytes
            raw, entries = entries, None
    elif params["entries"] is not None:
        entries = clean_entries(params["entries"])
    engine = load_engine(module)
    firewall = run_engine(module, lambda: engine.Firewall(params["pin_path"], params["state_dir"]), "netxfw_rule")

    def apply(entries, request):
        return run_engine(
            module,
            lambda: firewall.apply_rules(params["kind"], entries, state=params["state"], exclusive=params["exclusive"],
                                         ttl=params["ttl"], check_mode=module.check_mode, request=request,
                                         alias=alias if entries is not None else None),
            "netxfw_rule",
        )

    if raw is not None:
        alias = file_digest(params["kind"], raw, params["state"], params["exclusive"], params["ttl"])
    if alias is not None:
        result = apply(None, alias)  # the same file as a request applied last: not even parsed
    if result is None and raw is not None:
        try:
            entries = read_src(params["src"], params["kind"], raw, None if params["src"] else "entries")
        except NetxfwError as exc:
            module.fail_json(msg=str(exc))
    if result is None:
        result = apply(entries, params["entries_digest"])
    if result is None:
        module.exit_json(changed=False, entries_needed=True)
    added, removed = result["added"], result["removed"]
    added_listed, added_cut = listed(added, limit)
    removed_listed, removed_cut = listed(removed, limit)
    output = dict(changed=bool(result["changed"]), added=added_listed, removed=removed_listed,
                  added_count=len(added), removed_count=len(removed), truncated=added_cut or removed_cut,
                  loaded=bool(result["loaded"]))
    if not output["loaded"]:
        module.warn("the netxfw data plane is not loaded (no valid pins under %s): the rules are only saved in %s "
                    "and apply when netxfw.firewall.netxfw_program loads it"
                    % (params["pin_path"], firewall.store.rules_path))
    if module._diff:
        output["diff"] = compact_diff(params["kind"], added, removed, output["changed"], limit)
    module.exit_json(**output)


if __name__ == "__main__":
    main()
