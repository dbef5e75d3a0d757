# Copyright: (c) 2025, netxfw developers
# GNU General Public License v2.0+ (see https://www.gnu.org/licenses/gpl-2.0.txt)
# SPDX-License-Identifier: GPL-2.0-or-later

"""Parsing, normalisation, diffs and map-key encodings of netxfw rules.

Canonical forms (what normalize() returns and rules.json stores):

- whitelist entry: CIDR string, e.g. "198.51.100.7/32", "2001:db8::/48";
- blacklist entry: {"cidr": str, "expires": float or None} (wall-clock epoch seconds, None = never);
- port rule: {"source": CIDR or "any", "proto": "tcp"|"udp", "ports": "22" or "1000-2000",
  "action": "allow"|"deny"}; its identity is (source, proto, ports);
- rate-limit rule: {"source": CIDR, "rate", "burst", "syn_only", "ban_ttl"}; its identity is the source.

REGISTRY lists the kinds: everything that handles rules (engine, state, queries, exchange, the
agent, rollback, the netxfw_rule module) reads the kinds and their facts from it.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import collections
import functools
import ipaddress
import itertools
import math
import operator
import re
import socket
import struct
import time

from .errors import NetxfwError

STATES = ("present", "absent")
ANY_SOURCE = "any"
PROTOCOL_NUMBERS = {"tcp": 6, "udp": 17}
ACTION_VALUES = {"allow": 1, "deny": 2}

# The data plane keeps an expiry as CLOCK_MONOTONIC ns in 59 bits (layout.SRC_EXPIRY_MASK: 18.2 years
# after boot). Ten years from now leave eight years of uptime; a longer block is a permanent one (no
# expiry). The one limit of every ttl, ban_ttl and expires (the agent reads it from here).
MAX_TTL = 10 * 365 * 86400
MAX_EXPIRES = 253402300799.0  # 9999-12-31T23:59:59Z: the largest expiry rules.json can hold

# Bits of a rules4/rules6 LPM key before the source address: proto (8) + port (16).
RULE_KEY_FIXED_BITS = 24

MAX_RATE = 10 ** 9
RL_SYN_ONLY = 1  # rl_cfg.flags bit (bpf/netxfw.c RL_F_SYN_ONLY)

RuleKind = collections.namedtuple("RuleKind", (
    "name",      # what modules, CLI and API call it
    "key",       # its list in rules.json (and in an export document)
    "fields",    # the fields of its record (rule_record); a whitelist entry is the bare CIDR string
    "identity",  # the fields that name an entry (its canonical key: two entries with the same one are one rule)
    "plain",     # a plain list of CIDRs (one per line) is a form of its entries
    "ttl",       # it takes a ttl (seconds until the entries expire)
    "optional",  # rules.json holds its list only when the list has entries
    "maps",      # its own maps besides the src maps (where every kind's sources go)
    "capacity",  # the program setting that sizes it
    "types",     # the types an entry may have as input (a str is a CIDR)
    "entry",     # what one entry is, for messages
    "absent",    # fields a removal may leave out (only the identity must match)
))

REGISTRY = (
    RuleKind(name="whitelist", key="whitelist", fields=("cidr",), identity=("cidr",), plain=True, ttl=False,
             optional=False, maps=(), capacity="whitelist", types=(str,), entry="an address or CIDR string",
             absent={}),
    RuleKind(name="blacklist", key="blacklist", fields=("cidr", "expires"), identity=("cidr",), plain=True, ttl=True,
             optional=False, maps=(), capacity="blacklist", types=(str, dict),
             entry="an address or CIDR string or a {cidr, expires} mapping", absent={}),
    RuleKind(name="port", key="port_rules", fields=("source", "proto", "ports", "action"),
             identity=("source", "proto", "ports"), plain=False, ttl=False, optional=False, maps=("rules4", "rules6"),
             capacity="port_rules", types=(dict,), entry="a {source, proto, port or ports, action} mapping",
             absent={}),
    RuleKind(name="ratelimit", key="ratelimits", fields=("source", "rate", "burst", "syn_only", "ban_ttl"),
             identity=("source",), plain=False, ttl=False, optional=True, maps=("rl4_cfg", "rl6_cfg"),
             capacity="ratelimit (fixed: NETXFW_RL_SIZE)", types=(dict,),
             entry="a {source, rate, burst, syn_only, ban_ttl} mapping", absent={"rate": 1}),
)
KIND = collections.OrderedDict((kind.name, kind) for kind in REGISTRY)
KINDS = tuple(KIND)  # whitelist first: a restore lets a whitelisted controller in again before anything else
LIST_KEYS = collections.OrderedDict((kind.name, kind.key) for kind in REGISTRY)
PLAIN_KINDS = tuple(kind.name for kind in REGISTRY if kind.plain)
# kinds with no maps of their own: their capacity counts their entries in the src maps (per family, exact / prefix)
SRC_ONLY_KINDS = tuple(kind.name for kind in REGISTRY if not kind.maps)


def _identity_of(kind):
    if kind.name == "whitelist":
        return lambda entry: entry
    if len(kind.identity) == 1:
        field = kind.identity[0]
        return lambda entry: entry[field]
    return lambda entry: tuple(entry[field] for field in kind.identity)


_IDENTITY = dict((kind.name, _identity_of(kind)) for kind in REGISTRY)


def rule_kind(name):
    """The registry entry of a kind; NetxfwError naming the kinds for anything else."""
    try:
        return KIND[name]
    except (KeyError, TypeError):
        raise NetxfwError("invalid rule kind %r: expected one of %s" % (name, ", ".join(KINDS)))


def rule_record(kind, entry):
    """A canonical entry as a flat record carrying its kind (what listings, the API and CSV show)."""
    if kind == "whitelist":
        return {"kind": kind, "cidr": entry}
    record = dict(entry)
    record["kind"] = kind
    return record


def record_entry(record, kind=None):
    """Inverse of rule_record for input: (kind, the entry in the form normalize() takes). `kind` is
    the kind of a record without one. The fields are the engine's to check, but a whitelist entry is
    the bare CIDR: its record has that one field."""
    if not isinstance(record, dict):
        raise NetxfwError("a rule must be an object with a 'kind', not %r" % (record,))
    fields = dict(record)
    kind = rule_kind(fields.pop("kind", kind)).name
    if kind != "whitelist":
        return kind, fields
    if set(fields) != {"cidr"}:
        raise NetxfwError("a whitelist rule has exactly one field, 'cidr' (got %s)"
                          % (", ".join(sorted(fields)) or "none"))
    return kind, fields["cidr"]


def describe(kind, entry):
    """One line for a canonical entry (diffs, CLI listings)."""
    if kind == "whitelist":
        return entry
    if kind == "blacklist":
        if entry.get("expires") is None:
            return entry["cidr"]
        return "%s expires %s" % (entry["cidr"], time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(entry["expires"])))
    if kind == "ratelimit":
        return "%s rate %d burst %d%s%s" % (entry["source"], entry["rate"], entry["burst"],
                                            " syn_only" if entry["syn_only"] else "",
                                            " ban_ttl %d" % entry["ban_ttl"] if entry["ban_ttl"] else "")
    return "%s %s from %s %s" % (entry["proto"], entry["ports"], entry["source"], entry["action"])


_PORT_RANGE_RE = re.compile(r"^(\d+)(?:\s*-\s*(\d+))?$", re.ASCII)
_PORT_RULE_FIELDS = ("source", "proto", "port", "ports", "action")
_BLACKLIST_FIELDS = ("cidr", "expires")
_EXPIRES = operator.itemgetter("expires")
_ANY_NETWORKS = (ipaddress.IPv4Network("0.0.0.0/0"), ipaddress.IPv6Network("::/0"))


_inet_aton = socket.inet_aton
_inet_ntoa = socket.inet_ntoa
_inet_pton = socket.inet_pton
_inet_ntop = socket.inet_ntop
_AF_INET6 = socket.AF_INET6
_from_bytes = int.from_bytes
_V4_MASKS = tuple((0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF for plen in range(33))
_V6_MASKS = tuple(((1 << 128) - 1) ^ ((1 << (128 - plen)) - 1) for plen in range(129))


# prefix lengths written plainly (no sign, space or leading zero)
_PLEN4 = dict((str(plen), plen) for plen in range(33))
_PLEN6 = dict((str(plen), plen) for plen in range(129))
# the (family, "host" or "lpm") of cidr_key by the length of its key bytes (an LPM key adds the prefix length)
FAMILY_WHERE_OF_KEY_LENGTH = {4: (4, "host"), 8: (4, "lpm"), 16: (6, "host"), 20: (6, "lpm")}


def _fast_v4(text):
    """(address as int, prefixlen) of an IPv4 address or CIDR written plainly ("a.b.c.d" or
    "a.b.c.d/n", no leading zeros, no spaces), else None (then parse_cidr decides).

    Rule lists hold up to millions of such strings; building an ipaddress object for each,
    several times per run, was most of a netxfw_rule task's time.
    """
    if not isinstance(text, str):
        return None
    addr, slash, plen = text.partition("/")
    try:
        packed = _inet_aton(addr)
    except (OSError, ValueError):
        return None
    if _inet_ntoa(packed) != addr:  # inet_aton also takes "1.2.3", "01.2.3.4" (octal), "1.2.3.4 "...
        return None
    if not slash:
        return _from_bytes(packed, "big"), 32
    plen = _PLEN4.get(plen)
    return None if plen is None else (_from_bytes(packed, "big"), plen)


def _fast_v6(text):
    """(address as int, prefixlen) of an IPv6 address or CIDR written as ipaddress prints it
    (RFC 5952: lower case, the longest run of two or more zero groups as "::", no dotted quad),
    else None (then parse_cidr decides). inet_ntop prints that same form, so an address it gives
    back unchanged is canonical; ipaddress took about 20 us per IPv6 CIDR, this takes 1."""
    addr, slash, plen = text.partition("/")
    if "." in addr:  # ::ffff:a.b.c.d and the like: ipaddress and inet_ntop print them differently
        return None
    try:
        packed = _inet_pton(_AF_INET6, addr)
    except (OSError, ValueError):
        return None
    if _inet_ntop(_AF_INET6, packed) != addr:
        return None
    if not slash:
        return _from_bytes(packed, "big"), 128
    plen = _PLEN6.get(plen)
    return None if plen is None else (_from_bytes(packed, "big"), plen)


def _fast_cidr(text):
    """(family, address as int, prefixlen) of a plainly written IPv4 or canonical IPv6 address or
    CIDR whose host bits are clear, else None (then parse_cidr decides). _fast_v4 inlined: it runs
    once per entry of every list."""
    if not isinstance(text, str):
        return None
    if ":" in text:
        fast = _fast_v6(text)
        if fast is not None and fast[0] & _V6_MASKS[fast[1]] == fast[0]:
            return 6, fast[0], fast[1]
        return None
    addr, slash, plen = text.partition("/")
    try:
        packed = _inet_aton(addr)
    except (OSError, ValueError):
        return None
    if _inet_ntoa(packed) != addr:
        return None
    value = _from_bytes(packed, "big")
    if not slash:
        return 4, value, 32
    plen = _PLEN4.get(plen)
    if plen is None or value & _V4_MASKS[plen] != value:
        return None
    return 4, value, plen


def canonical_cidr(text):
    """str(parse_cidr(text)), without building an ipaddress object for plain input."""
    fast = _fast_cidr(text)
    if fast is not None:
        return text if "/" in text else "%s/%d" % (text, 32 if fast[0] == 4 else 128)
    return str(parse_cidr(text))


def cidr_key(cidr):
    """(family, "host" or "lpm", key bytes) of an address or CIDR: host_or_lpm(parse_cidr(cidr))
    with the family, fast for plain input."""
    fast = _fast_cidr(cidr)
    if fast is None:
        fast = _fast_v4(cidr)
        if fast is None:
            network = parse_cidr(cidr)
            where, key = host_or_lpm(network)
            return network.version, where, key
        fast = (4, fast[0] & _V4_MASKS[fast[1]], fast[1])  # "1.2.3.4/24": host bits masked
    family, value, plen = fast
    packed = value.to_bytes(4 if family == 4 else 16, "big")
    if plen == (32 if family == 4 else 128):
        return family, "host", packed
    return family, "lpm", struct.pack("=I", plen) + packed


def parse_cidr(text):
    """Return the network of an address or CIDR string; host bits are masked.

    An IPv6 network stays IPv6, IPv4-mapped ones (::ffff:0:0/96 and inside) included: it matches
    IPv6 packets only, whose source is literally such an address (docs/internals.md, "Source
    classes"). ::ffff:0:0/96 is in every IPv6 bogon list; it never means all of IPv4.
    """
    if not isinstance(text, str):
        raise NetxfwError("invalid CIDR %r: expected a string such as '198.51.100.0/24' or '2001:db8::/48'" % (text,))
    stripped = text.strip()
    if "%" in stripped:
        raise NetxfwError("invalid CIDR '%s': IPv6 zone indexes (%%eth0) cannot be matched; remove the zone" % text)
    try:
        network = ipaddress.ip_network(stripped, strict=False)
    except ValueError as e:
        raise NetxfwError("invalid CIDR '%s': %s; expected an address or address/prefix such as "
                          "'198.51.100.0/24' or '2001:db8::/48'" % (text, e))
    return network


def parse_ports(value):
    """Return (first, last) of a port (int or "22") or range ("1000-2000")."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise NetxfwError("invalid port %r: expected a port such as 22 or a range such as '1000-2000'" % (value,))
    if isinstance(value, int):
        first = last = value
    else:
        match = _PORT_RANGE_RE.match(value.strip())
        if not match:
            raise NetxfwError("invalid port '%s': expected a port such as 22 or a range such as '1000-2000'" % value)
        first = int(match.group(1))
        last = int(match.group(2) or first)
    for port in (first, last):
        if not 1 <= port <= 65535:
            raise NetxfwError("invalid port '%s': ports must be between 1 and 65535" % (value,))
    if first > last:
        raise NetxfwError("invalid port range '%s': the first port must not be greater than the last" % (value,))
    return first, last


def format_ports(first, last):
    return str(first) if first == last else "%d-%d" % (first, last)


def identity(kind, entry):
    """The part of a canonical entry that names it (its kind's identity fields)."""
    return _IDENTITY[kind](entry)


def describe_port_rule(rule):
    return "%s %s from %s (%s)" % (rule["proto"], rule["ports"], rule["source"], rule["action"])


def normalize(kind, entries, ttl=None, now=None, state="present", keys=None):
    """Canonical, deduplicated, sorted list of `kind` entries: the one validation of rules, strict
    about types (everything that takes rules passes them here as they came).

    For the blacklist, `ttl` (seconds) sets expires = now + ttl on entries that give no expiry.
    With state absent, entries need only their identity (the kind's `absent` fields may be left out).
    keys: a KeyCache that receives the cidr_key of each whitelist and blacklist entry (the cache
    sources.counts and sources.expected take), from the same parse.
    """
    spec = rule_kind(kind)
    if entries is None:
        entries = []
    if isinstance(entries, (str, bytes, dict)) or not hasattr(entries, "__iter__"):
        raise NetxfwError("%s entries must be a list, got %r" % (kind, entries))
    if ttl is not None and not spec.ttl:
        raise NetxfwError("ttl applies to %s entries only; remove it from the %s rules"
                          % (" and ".join(k.name for k in REGISTRY if k.ttl), kind))
    if ttl is not None and state == "absent":
        raise NetxfwError("ttl sets when added entries expire; it means nothing with state absent: remove it")
    if state == "absent" and spec.absent:
        entries = [dict(spec.absent, **entry) if isinstance(entry, dict) else entry for entry in entries]
    if kind in PLAIN_KINDS:
        try:
            if kind == "whitelist":
                return _unique_whitelist(entries, keys)  # sorted
            now = time.time() if now is None else now
            default_expires = None if ttl is None else now + _positive_seconds(ttl)
            return _unique_blacklist(entries, default_expires, now, keys)  # sorted
        except NetxfwError:
            _check_entry_types(spec, entries)  # a clearer message for an entry of the wrong type
            raise
    if kind == "ratelimit":
        canonical = _unique_ratelimits(entries)
    else:
        canonical = _unique_port_rules(entries)
        _check_port_overlaps(canonical)
    return sort_entries(kind, canonical)


def diff(kind, current, wanted, state, exclusive, now=None, wanted_sorted=False):
    """Apply canonical `wanted` entries to canonical `current` ones.

    Returns (new_list, added, removed), each sorted. An entry whose value changes (blacklist
    expiry, port rule action) appears in `added` with its new value and in `removed` with its
    old one. Expired blacklist entries of `current` are always dropped and reported as removed.
    `exclusive` only matters with state present: `wanted` then becomes the whole list.
    `wanted_sorted`: `wanted` comes from normalize() and `current` from rules.json (both sorted),
    so `added` (taken from `wanted` in order), a list made of `wanted` alone and `current` less
    removals are sorted already: a million entries are not sorted again.
    """
    _check_kind(kind)
    if state not in STATES:
        raise NetxfwError("invalid state '%s': expected one of %s" % (state, ", ".join(STATES)))
    if (wanted_sorted and not current and state == "present" and kind in PLAIN_KINDS
            and (kind == "whitelist" or operator.countOf(map(_EXPIRES, wanted), None) == len(wanted))):
        # a list added to an empty one, nothing expiring: all of it is added, as it is (the loop below,
        # a million times over, gives the same)
        return list(wanted), list(wanted), []
    removed = []
    if kind == "blacklist":
        now = time.time() if now is None else now
        live = []
        for entry in current:
            (removed if is_expired(entry, now) else live).append(entry)
        current = live
    key_of = _IDENTITY[kind]
    current_by_id = dict((key_of(entry), entry) for entry in current)
    added = []
    if state == "absent":
        result = dict(current_by_id)
        for entry in wanted:
            old = result.pop(key_of(entry), None)
            if old is not None:
                removed.append(old)
    else:
        result = {} if exclusive else dict(current_by_id)
        for entry in wanted:
            key = key_of(entry)
            old = current_by_id.get(key)
            if kind == "blacklist" and is_expired(entry, now):
                # its expiry is past: the entry ends now, not stored to be dropped (and changed) every run
                if result.pop(key, None) is not None:
                    removed.append(old)
                continue
            if old != entry:
                added.append(entry)
                if old is not None:
                    removed.append(old)
            result[key] = entry
        if exclusive:
            removed.extend(entry for key, entry in current_by_id.items() if key not in result)
    if not added and not removed:
        # Nothing changes: the list stays as stored (sorted when written). Sorting a million
        # entries again only to find them equal was most of a no-op run.
        new_list = list(current)
    elif wanted_sorted and (state == "absent" or exclusive or not current_by_id):
        new_list = list(result.values())  # in the order of `current` less removals, or of `wanted` alone
    else:
        new_list = sort_entries(kind, result.values())
    if kind == "port":
        _check_port_overlaps(new_list)
    return new_list, added if wanted_sorted else sort_entries(kind, added), sort_entries(kind, removed)


def is_expired(blacklist_entry, now=None):
    expires = blacklist_entry["expires"]
    return expires is not None and expires <= (time.time() if now is None else now)


def sort_entries(kind, entries):
    """Sort canonical entries by family, network address and prefix length (port rules: by
    source, then proto, then first port)."""
    if kind == "whitelist":
        return sorted(entries, key=_cidr_order)
    if kind == "blacklist":
        return sorted(entries, key=lambda entry: _cidr_order(entry["cidr"]))
    if kind == "ratelimit":
        return sorted(entries, key=lambda entry: _cidr_order(entry["source"]))
    return sorted(entries, key=_port_rule_order)


def host_or_lpm(network):
    """Where a whitelist/blacklist network goes: ("host", address bytes) for a /32 or /128,
    else ("lpm", key bytes) with key = native u32 prefixlen + address bytes."""
    if isinstance(network, str):
        network = parse_cidr(network)
    address = network.network_address.packed
    if network.prefixlen == network.max_prefixlen:
        return "host", address
    return "lpm", struct.pack("=I", network.prefixlen) + address


def rule_keys(rule):
    """rules4/rules6 entries of a canonical port rule: list of (family, key bytes, action value).

    One key per port of the range; source "any" yields keys for both families.
    Key = native u32 prefixlen (24 + source prefixlen), proto, port (big endian), address, pad.
    """
    first, last = parse_ports(rule["ports"])
    proto = PROTOCOL_NUMBERS[rule["proto"]]
    action = ACTION_VALUES[rule["action"]]
    sources = _ANY_NETWORKS if rule["source"] == ANY_SOURCE else (parse_cidr(rule["source"]),)
    keys = []
    for source in sources:
        head = struct.pack("=IB", RULE_KEY_FIXED_BITS + source.prefixlen, proto)
        tail = source.network_address.packed + b"\0"
        keys.extend((source.version, head + struct.pack("!H", port) + tail, action)
                    for port in range(first, last + 1))
    return keys


def _check_kind(kind):
    rule_kind(kind)


def _check_entry_types(spec, entries):
    for entry in entries:
        if isinstance(entry, bool) or not isinstance(entry, spec.types):
            raise NetxfwError("a %s entry is %s, not %r" % (spec.name, spec.entry, entry))


def _check_fields(entry, allowed, what):
    unknown = sorted(str(field) for field in entry if field not in allowed)
    if unknown:
        raise NetxfwError("%s %r has unknown field(s) %s; allowed fields are %s"
                          % (what, entry, ", ".join(unknown), ", ".join(allowed)))


def _positive_seconds(ttl):
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not math.isfinite(ttl) or not 0 < ttl <= MAX_TTL:
        raise NetxfwError("invalid ttl %r: expected a positive number of seconds, at most %d (10 years: the data "
                          "plane cannot hold a later expiry); for a longer block give no ttl (never expires)"
                          % (ttl, MAX_TTL))
    return ttl


def _expiry(value, entry, now):
    if value is None:
        return None
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or not 0 <= value <= MAX_EXPIRES):
        raise NetxfwError("invalid expires %r in blacklist entry %r: expected epoch seconds (before the year "
                          "10000) or null for never" % (value, entry))
    if value > now + MAX_TTL:
        raise NetxfwError("invalid expires %r in blacklist entry %r: at most %d seconds (10 years) from now, the "
                          "latest expiry the data plane can hold; for a longer block give null (never expires)"
                          % (value, entry, MAX_TTL))
    return float(value)


def _later(first, second):
    """The later of two expiries; None (never) is the latest."""
    if first is None or second is None:
        return None
    return max(first, second)


def _canonical_and_order(text):
    """(canonical_cidr(text), its sort key), computing both from one parse."""
    fast = _fast_cidr(text)
    if fast is not None:
        family, value, plen = fast
        return (text if "/" in text else "%s/%d" % (text, 32 if family == 4 else 128)), \
            family << 136 | value << 8 | plen
    network = parse_cidr(text)
    return str(network), network.version << 136 | int(network.network_address) << 8 | network.prefixlen


class KeyCache(dict):
    """{canonical CIDR: cidr_key(CIDR)} that normalize() fills from its own parse, for the capacity count
    and the src maps (sources.keys_of, sources.key_bytes): one parse per CIDR per run. A list that
    _bulk took (a million plain CIDRs) is kept whole instead: bulk_cidrs, the normalised list, and
    bulk_keys, the key bytes of its CIDRs in the same order; expand() puts them in the dict."""
    bulk_cidrs = bulk_keys = None

    def set_bulk(self, cidrs, raw):
        self.expand()  # a bulk list of an earlier call
        self.bulk_cidrs, self.bulk_keys = cidrs, raw

    def key_bytes(self, cidrs):
        """The src map key bytes of the CIDRs of the list `cidrs` when it is the normalised bulk list
        (equal, in order), in its order; else None."""
        if self.bulk_cidrs is None or cidrs != self.bulk_cidrs:
            return None
        return self.bulk_keys

    def expand(self):
        """Put the bulk list in the dict (what one cidr_key call per CIDR gives)."""
        cidrs, raw = self.bulk_cidrs, self.bulk_keys
        self.bulk_cidrs = self.bulk_keys = None
        if cidrs is not None:
            places = list(map(FAMILY_WHERE_OF_KEY_LENGTH.__getitem__, map(len, raw)))
            self.update(zip(cidrs, zip(map(operator.itemgetter(0), places), map(operator.itemgetter(1), places), raw)))


def _by_order(order_by_item, keys=None):
    """The items sorted by their order; `keys` (a KeyCache), if given, receives {item: cidr_key(item)}
    worked out from each order, so that the capacity count and the src maps need no second parse."""
    if keys is not None:
        keys.update(zip(order_by_item, map(_key_of_order, order_by_item.values())))
    return sorted(order_by_item, key=order_by_item.__getitem__)


_LPM_PREFIX = tuple(struct.pack("=I", plen) for plen in range(129))
_VALUE_MASK = (1 << 128) - 1


def _key_of_order(order):
    """cidr_key of the CIDR whose sort key (_canonical_and_order) is `order`."""
    plen = order & 0xFF
    if order >> 136 == 4:
        packed = ((order >> 8) & 0xFFFFFFFF).to_bytes(4, "big")
        return (4, "host", packed) if plen == 32 else (4, "lpm", _LPM_PREFIX[plen] + packed)
    packed = ((order >> 8) & _VALUE_MASK).to_bytes(16, "big")
    return (6, "host", packed) if plen == 128 else (6, "lpm", _LPM_PREFIX[plen] + packed)


def _unique_whitelist(entries, keys=None):
    """Sorted as sort_entries sorts, with each sort key computed while parsing."""
    if isinstance(entries, list) and _all_strings(entries):
        bulk = _bulk(entries, keys)
        if bulk is not None:
            return bulk
    return _by_order(dict(map(_canonical_and_order, entries)), keys)


_repeat = itertools.repeat
_pton6 = functools.partial(_inet_pton, _AF_INET6)
_ntop6 = functools.partial(_inet_ntop, _AF_INET6)


class _Family(collections.namedtuple("_Family", "pton ntop tail masks scale plen_text key_head width")):
    """What _bulk_family needs of one address family: parse and print an address, {what follows the
    address ("/24", or nothing for a bare address): prefix length}, the masks, the sort number's
    scale (a float for IPv4: exact below 2 ** 53, and floats sort faster than ints of more than 30
    bits), "/n" by prefix length, what a key puts before the address by prefix length, address bytes."""


def _family(pton, ntop, bits, masks, scale):
    tail = dict(("/%d" % plen, plen) for plen in range(bits + 1))
    tail[""] = bits
    return _Family(pton, ntop, tail, masks, scale, tuple("/%d" % plen for plen in range(bits + 1)),
                   tuple(b"" if plen == bits else struct.pack("=I", plen) for plen in range(bits + 1)), bits // 8)


_BULK_FAMILIES = {4: _family(_inet_aton, _inet_ntoa, 32, _V4_MASKS, 256.0),
                  6: _family(_pton6, _ntop6, 128, _V6_MASKS, 256)}


def _bulk(texts, keys=None):
    """What _by_order(dict(map(_canonical_and_order, texts)), keys) gives, when every text is a plainly
    written IPv4 address or CIDR, or an IPv6 one as ipaddress prints it, with its host bits clear (else
    None: the general path decides, and words any error). The checks of _fast_cidr, each a C loop over
    the whole list: a million CIDRs take a few C passes instead of a million Python calls. `keys` (a
    KeyCache) gets the list whole (set_bulk)."""
    is_v6 = list(map(operator.contains, texts, _repeat(":")))
    v6 = list(itertools.compress(texts, is_v6)) if True in is_v6 else []
    v4 = list(itertools.compress(texts, map(operator.not_, is_v6))) if v6 else texts
    out4 = _bulk_family(v4, _BULK_FAMILIES[4])
    out6 = _bulk_family(v6, _BULK_FAMILIES[6]) if out4 is not None else None
    if out6 is None:
        return None
    cidrs, raw = (out4[0] + out6[0], out4[1] + out6[1]) if v6 else out4  # IPv4 sorts first
    if keys is not None:
        keys.set_bulk(cidrs, raw)
    return cidrs


def _bulk_family(texts, family):
    """(the sorted canonical CIDRs, their key bytes in the same order) of texts of one family as _bulk
    takes them, else None."""
    parts = list(map(str.partition, texts, _repeat("/")))
    addrs = list(map(operator.itemgetter(0), parts))
    if family.width == 16 and True in map(operator.contains, addrs, _repeat(".")):
        return None  # ::ffff:a.b.c.d and the like: ipaddress and inet_ntop print them differently
    try:
        packed = list(map(family.pton, addrs))
    except (OSError, ValueError):
        return None
    if list(map(family.ntop, packed)) != addrs:  # not written plainly ("1.2.3", "01.2.3.4", "1.2.3.4 ", "::0"...)
        return None
    plens = list(map(family.tail.get, map(operator.add, map(operator.itemgetter(1), parts),
                                          map(operator.itemgetter(2), parts))))
    if None in plens:  # "/08", "/ 8", "/33", "/"...
        return None
    values = list(map(int.from_bytes, packed, _repeat("big")))
    if list(map(operator.and_, values, map(family.masks.__getitem__, plens))) != values:
        return None  # host bits set ("10.0.0.1/8"): the general path masks them
    # the sort key of _canonical_and_order less the family bits (the same for every entry): address * 256 + prefix length
    order = sorted(map(operator.add, map(operator.mul, values, _repeat(family.scale)), plens))
    # one number per CIDR (a CIDR listed twice, however written, gives the same number twice: next to each other)
    order = list(itertools.compress(order, map(operator.ne, order, itertools.islice(order, 1, None)))) + order[-1:]
    numbers = list(map(int, order))
    plens = list(map(operator.and_, numbers, _repeat(0xFF)))
    packed = list(map(int.to_bytes, map(operator.rshift, numbers, _repeat(8)), _repeat(family.width), _repeat("big")))
    # each CIDR written again from its number, as canonical_cidr writes it (the texts were checked to be
    # written so): the list comes out sorted, with its map keys in the same order (a trie fills faster so)
    return (list(map(operator.add, map(family.ntop, packed), map(family.plen_text.__getitem__, plens))),
            list(map(operator.add, map(family.key_head.__getitem__, plens), packed)))


def _all_strings(entries):
    try:
        "".join(entries)  # a TypeError unless every entry is a str: the check in C
    except TypeError:
        return False
    return True


def _unique_blacklist(entries, default_expires, now, keys=None):
    """Sorted as sort_entries sorts, with each sort key computed while parsing."""
    if isinstance(entries, list) and _all_strings(entries):
        # every entry takes the default expiry (a list of a million CIDRs): no expiry to merge
        cidrs = _bulk(entries, keys)
        if cidrs is None:
            cidrs = _by_order(dict(map(_canonical_and_order, entries)), keys)
        return [{"cidr": cidr, "expires": default_expires} for cidr in cidrs]
    expires_by_cidr = {}
    order = {}
    for entry in entries:
        if isinstance(entry, dict):
            _check_fields(entry, _BLACKLIST_FIELDS, "blacklist entry")
            if "cidr" not in entry:
                raise NetxfwError("blacklist entry %r has no 'cidr'" % (entry,))
            cidr, order[cidr] = _canonical_and_order(entry["cidr"])
            expires = _expiry(entry["expires"], entry, now) if "expires" in entry else default_expires
        else:
            cidr, order[cidr] = _canonical_and_order(entry)
            expires = default_expires
        # The same network listed twice keeps the longer-lived block.
        expires_by_cidr[cidr] = _later(expires_by_cidr[cidr], expires) if cidr in expires_by_cidr else expires
    return [{"cidr": cidr, "expires": expires_by_cidr[cidr]} for cidr in _by_order(order, keys)]


def _port_rule(entry):
    if not isinstance(entry, dict):
        raise NetxfwError("port rule %r must be a mapping with proto, port or ports, and optional source and action"
                          % (entry,))
    _check_fields(entry, _PORT_RULE_FIELDS, "port rule")
    if ("port" in entry) == ("ports" in entry):
        raise NetxfwError("port rule %r needs exactly one of 'port' or 'ports'" % (entry,))
    first, last = parse_ports(entry["port"] if "port" in entry else entry["ports"])
    proto = entry.get("proto")
    proto = proto.strip().lower() if isinstance(proto, str) else proto
    if not isinstance(proto, str) or proto not in PROTOCOL_NUMBERS:
        raise NetxfwError("port rule %r: proto must be one of %s" % (entry, ", ".join(PROTOCOL_NUMBERS)))
    action = entry.get("action", "allow")
    action = action.strip().lower() if isinstance(action, str) else action
    if not isinstance(action, str) or action not in ACTION_VALUES:
        raise NetxfwError("port rule %r: action must be one of %s" % (entry, ", ".join(ACTION_VALUES)))
    source = entry.get("source", ANY_SOURCE)
    if isinstance(source, str) and source.strip().lower() == ANY_SOURCE:
        source = ANY_SOURCE
    else:
        source = str(parse_cidr(source))
    return {"source": source, "proto": proto, "ports": format_ports(first, last), "action": action}


def _unique_port_rules(entries):
    rules_by_id = {}
    for entry in entries:
        rule = _port_rule(entry)
        key = identity("port", rule)
        other = rules_by_id.setdefault(key, rule)
        if other["action"] != rule["action"]:
            raise NetxfwError("port rules conflict: %s and %s; keep one action per source, proto and ports"
                              % (describe_port_rule(other), describe_port_rule(rule)))
    return list(rules_by_id.values())


def _ratelimit(entry):
    """Canonical rate-limit rule: {"source": CIDR, "rate": packets/s, "burst": packets,
    "syn_only": bool, "ban_ttl": seconds (0 = drop only, no ban)}; its identity is the source."""
    if not isinstance(entry, dict):
        raise NetxfwError("rate-limit rule %r must be a mapping with source and rate, and optional burst, "
                          "syn_only and ban_ttl" % (entry,))
    _check_fields(entry, KIND["ratelimit"].fields, "rate-limit rule")
    if "source" not in entry or "rate" not in entry:
        raise NetxfwError("rate-limit rule %r needs a 'source' CIDR and a 'rate' (packets per second)" % (entry,))

    def number(name, value, low, high):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise NetxfwError("rate-limit rule %r: %s must be an integer between %d and %d" % (entry, name, low, high))
        return value

    rate = number("rate", entry["rate"], 1, MAX_RATE)
    burst = entry.get("burst")
    burst = rate if burst is None else number("burst", burst, 1, MAX_RATE)
    ban_ttl = entry.get("ban_ttl")
    ban_ttl = 0 if ban_ttl is None else number("ban_ttl", ban_ttl, 0, MAX_TTL)
    syn_only = entry.get("syn_only", False)
    if not isinstance(syn_only, bool):
        raise NetxfwError("rate-limit rule %r: syn_only must be true or false" % (entry,))
    return {"source": canonical_cidr(entry["source"]), "rate": rate, "burst": burst,
            "syn_only": syn_only, "ban_ttl": ban_ttl}


def _unique_ratelimits(entries):
    by_source = {}
    for entry in entries:
        rule = _ratelimit(entry)
        other = by_source.setdefault(rule["source"], rule)
        if other != rule:
            raise NetxfwError("rate-limit rules conflict for %s: %r and %r; keep one per source CIDR"
                              % (rule["source"], other, rule))
    return list(by_source.values())


def ratelimit_key(rule):
    """(family, rl4_cfg/rl6_cfg LPM key bytes, struct rl_cfg value bytes) of a canonical rate-limit rule."""
    network = parse_cidr(rule["source"])
    key = struct.pack("=I", network.prefixlen) + network.network_address.packed
    value = struct.pack("=QQQQ", rule["rate"], rule["burst"], RL_SYN_ONLY if rule["syn_only"] else 0,
                        rule["ban_ttl"] * 10 ** 9)
    return network.version, key, value


def _check_port_overlaps(rules):
    """Refuse rules of one source and proto whose port ranges overlap without being identical:
    each port of a source must map to exactly one action."""
    previous_by_group = {}
    for rule in sorted(rules, key=_port_rule_order):
        group = (rule["source"], rule["proto"])
        previous = previous_by_group.get(group)
        # Sorted by first port and never overlapping so far: the previous rule reaches furthest.
        if previous is not None and parse_ports(rule["ports"])[0] <= parse_ports(previous["ports"])[1]:
            raise NetxfwError("port rules overlap: %s and %s; split them so that no port is in both"
                              % (describe_port_rule(previous), describe_port_rule(rule)))
        previous_by_group[group] = rule


def _cidr_order(cidr):
    """The sort key of a CIDR: by family, network address, prefix length, as one int (a million
    ints sort in a third of the time tuples take)."""
    fast = _fast_cidr(cidr)
    if fast is None:
        fast = _fast_v4(cidr)
        if fast is not None:
            fast = 4, fast[0] & _V4_MASKS[fast[1]], fast[1]
        else:
            network = parse_cidr(cidr)
            fast = network.version, int(network.network_address), network.prefixlen
    family, value, plen = fast
    return family << 136 | value << 8 | plen


def _port_rule_order(rule):
    source = -1 if rule["source"] == ANY_SOURCE else _cidr_order(rule["source"])
    return source, rule["proto"], parse_ports(rule["ports"])
