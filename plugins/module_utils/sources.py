# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-2.0-or-later
"""Source classes: the whitelist, the blacklist and the port rules' sources in one exact-address
hash and one LPM trie per family (src4_host, src6_host, src4_lpm, src6_lpm).

Each entry carries its *resolved* class: its own and that of every listed prefix covering it
(whitelisted, blacklisted with the latest covering expiry, covered by a port rule's source), so
the data plane decides a source with one lookup: the exact address, else its longest prefix
(docs/internals.md, "Source classes").
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import array
import itertools
import operator
import struct
import time

from . import layout, rules

HOST_MAPS = ("src4_host", "src6_host")
FILTER_MAP = "src_filter"  # the exact-source prefilter: a bit per hash of every key of the HOST_MAPS
SRC_MAPS = HOST_MAPS + ("src4_lpm", "src6_lpm")
ANY_SOURCE_KEYS = ((4, "lpm", struct.pack("=I", 0) + bytes(4)), (6, "lpm", struct.pack("=I", 0) + bytes(16)))


_RAW_KEY = operator.itemgetter(2)
_CIDR = operator.itemgetter("cidr")
_EXPIRES = operator.itemgetter("expires")


def map_name(family, where):
    return "src%d_%s" % (family, where)


def effective_expiry(blacklist):
    """cidr -> the expiry its map value must carry.

    An LPM lookup returns only the longest matching prefix, so an expiring
    prefix carries the latest expiry of every blacklist prefix covering it:
    an expired /28 then never hides a live /24 around it. None = never.
    """
    expires = dict((e["cidr"], e["expires"]) for e in blacklist)
    effective = dict(expires)
    for cidr, own in expires.items():
        if own is None:
            continue
        network = rules.parse_cidr(cidr)
        for plen in range(network.prefixlen - 1, -1, -1):
            cover = str(network.supernet(new_prefix=plen))
            if cover in expires:
                outer = expires[cover]
                if outer is None or outer > effective[cidr]:
                    effective[cidr] = outer
                if outer is None:
                    break
    return effective


def wall_to_monotonic_ns(expires, now_wall=None, now_mono_ns=None):
    """Epoch seconds -> CLOCK_MONOTONIC ns as the data plane compares them; None (never) -> 0."""
    if expires is None:
        return 0
    now_wall = time.time() if now_wall is None else now_wall
    now_mono_ns = time.monotonic_ns() if now_mono_ns is None else now_mono_ns
    return max(1, now_mono_ns + int((expires - now_wall) * 10 ** 9))


def _network(family, where, key):
    """(address as int, prefix length, address bits) of a src map key."""
    bits = 32 if family == 4 else 128
    if where == "host":
        return int.from_bytes(key, "big"), bits, bits
    return int.from_bytes(key[4:], "big"), struct.unpack_from("=I", key)[0], bits


def _later(first, second):
    """The later of two expiries, None (never) being the latest."""
    if first is None or second is None:
        return None
    return max(first, second)


def resolve(whitelist, blacklist, port_rules, ratelimits=(), keys=None):
    """Listed sources -> {(family, where, key): (class bits, blacklist expiry or None)}.

    whitelist: CIDR strings; blacklist: live entries {"cidr", "expires"}; port_rules and
    ratelimits: canonical rules (their "source"). Each entry gets the classes of the prefixes
    covering it; a blacklisted one its effective expiry (that of the covering blacklist entries
    included). keys: a cache {cidr: rules.cidr_key(cidr)} shared with counts()."""
    key = _key_function(keys)
    never = operator.countOf(map(_EXPIRES, blacklist), None) == len(blacklist)
    if never and not whitelist and not port_rules and not ratelimits:  # a blacklist alone: one C loop
        return dict.fromkeys(keys_of(list(map(_CIDR, blacklist)), keys), (layout.SRC_BL, None))
    cls = {}
    expiry = {}
    for cidr in whitelist:
        k = key(cidr)
        cls[k] = cls.get(k, 0) | layout.SRC_WL
    # only expiring entries are in `expiry` (a million never-expiring ones need no lookups of covers)
    effective = {} if never else effective_expiry(blacklist)
    blacklist_keys = keys_of(list(map(_CIDR, blacklist)), keys)
    # cls[k] |= SRC_BL for each blacklist key, in the same order, a million keys in C
    listed = dict.fromkeys(blacklist_keys, layout.SRC_BL)
    if cls:
        both = [(k, bits) for k, bits in cls.items() if k in listed]
        cls.update(listed)
        for k, bits in both:
            cls[k] = bits | layout.SRC_BL
    else:
        cls = listed
    if effective:
        for entry, k in zip(blacklist, blacklist_keys):
            if effective.get(entry["cidr"]) is not None:
                expiry[k] = effective[entry["cidr"]]
    others = set()  # the keys of every class but the blacklist: few next to a large blacklist
    for bit, listed in ((layout.SRC_RULES, port_rules), (layout.SRC_RL, ratelimits)):
        for source in set(rule["source"] for rule in listed):
            for k in ANY_SOURCE_KEYS if source == rules.ANY_SOURCE else (key(source),):
                cls[k] = cls.get(k, 0) | bit
                others.add(k)
    others.update(key(cidr) for cidr in whitelist)

    # covering prefixes, by family and class: {(family, bit): {prefixlen: {network int: expiry}}}
    covering = {}

    def cover(k, bits):
        family, where, raw = k
        if where == "lpm":
            addr, plen, _width = _network(family, where, raw)
            for bit in (layout.SRC_WL, layout.SRC_BL, layout.SRC_RULES, layout.SRC_RL):
                if bits & bit:
                    covering.setdefault((family, bit), {}).setdefault(plen, {})[addr] = expiry.get(k)

    for k in others:
        cover(k, cls[k] & ~layout.SRC_BL)
    # a blacklist prefix covers only entries of another class that are not blacklisted or whitelisted
    # (a port rule or rate-limit source); without one, a million blacklist keys need no covering map
    for family in set(k[0] for k in others if not cls[k] & (layout.SRC_BL | layout.SRC_WL)):
        for k, bits in cls.items():
            if k[0] == family and bits & layout.SRC_BL:
                cover(k, layout.SRC_BL)
    if not covering:
        if not expiry:  # a million blacklist keys that never expire: built in C
            return dict(zip(cls, zip(cls.values(), itertools.repeat(None))))
        return dict((k, (bits, expiry.get(k))) for k, bits in cls.items())

    # a blacklisted entry can only gain a class from a covering whitelist or rule source
    gains = dict((family, any((family, bit) in covering for bit in (layout.SRC_WL, layout.SRC_RULES, layout.SRC_RL)))
                 for family in (4, 6))
    out = {}
    for k, bits in cls.items():
        family, where, raw = k
        exp = expiry.get(k)
        if bits & layout.SRC_BL and not gains[family]:
            out[k] = (bits, exp)
            continue
        addr, plen, width = _network(family, where, raw)
        for bit in (layout.SRC_WL, layout.SRC_RULES, layout.SRC_RL, layout.SRC_BL):
            by_len = covering.get((family, bit))
            # a blacklisted entry's expiry already counts its covering entries (effective_expiry)
            if not by_len or bits & bit or (bit == layout.SRC_BL and bits & layout.SRC_WL):
                continue
            for cover_len, nets in by_len.items():
                net = addr >> (width - cover_len) << (width - cover_len) if cover_len else 0
                if cover_len < plen and net in nets:
                    if bit == layout.SRC_BL:
                        exp = _later(exp, nets[net]) if bits & bit else nets[net]
                    bits |= bit
                    if bit != layout.SRC_BL:
                        break
        out[k] = (bits, exp)
    return out


def to_maps(resolved, expiry_ns):
    """resolve() output -> {src map name: {key: value bytes}}; expiry_ns(expiry) -> monotonic ns (0 = never)."""
    # (class bits, expiry) -> value bytes: a million entries share a handful
    values = dict((cls, _class_value(cls, expiry_ns)) for cls in set(resolved.values()))
    return _split(list(resolved), lambda: map(values.__getitem__, resolved.values()))


def _class_value(cls, expiry_ns):
    bits, exp = cls
    if bits & layout.SRC_BL:
        # saturates: an expiry past the 59 bits (one stored before rules.MAX_TTL, or after eight
        # years of uptime) must never wrap into the past and silently unblock
        bits |= min(expiry_ns(exp), layout.SRC_EXPIRY_MASK)
    return layout.encode_u64(bits)


def _split(keys, values):
    """{src map name: {key bytes: value}} of `keys` (a list of cidr_key tuples) and values() (a new iterator
    of their values at each call), in their order, split by C loops (a million keys): a key's length tells
    its map (the address, after the u32 prefix length in an LPM key)."""
    out = dict((name, {}) for name in SRC_MAPS)
    lengths = list(map(len, map(_RAW_KEY, keys)))
    present = set(lengths)
    for family in (4, 6):
        size = 4 if family == 4 else 16
        for where, length in (("host", size), ("lpm", size + 4)):
            if length in present:
                pairs = zip(map(_RAW_KEY, keys), values())
                out[map_name(family, where)] = dict(
                    pairs if len(present) == 1 else itertools.compress(pairs, map(length.__eq__, lengths)))
    return out


def keys_of(cidrs, keys=None):
    """[rules.cidr_key(cidr) for cidr in cidrs], through the cache `keys` (a rules.KeyCache) when given
    (filling it in): a million cached keys come out of one map() instead of a million calls."""
    if keys is None:
        return [rules.cidr_key(cidr) for cidr in cidrs]
    keys.expand()
    out = list(map(keys.get, cidrs))
    if None in out:
        for index, k in enumerate(out):
            if k is None:
                out[index] = keys[cidrs[index]] = rules.cidr_key(cidrs[index])
    return out


def _key_function(keys):
    """rules.cidr_key, remembering its results in `keys` when given (one parse per CIDR per run)."""
    if keys is None:
        return rules.cidr_key
    keys.expand()

    def key(cidr):
        k = keys.get(cidr)
        if k is None:
            k = keys[cidr] = rules.cidr_key(cidr)
        return k
    return key


def key_bytes(cidrs, keys=None):
    """{(family, "host" or "lpm"): [src map key bytes]} of the list of canonical CIDRs `cidrs`, in its
    order (the keys of a list the cache holds whole come from it)."""
    raw = keys.key_bytes(cidrs) if keys is not None else None
    if raw is None:
        raw = list(map(_RAW_KEY, keys_of(cidrs, keys)))
    lengths = list(map(len, raw))
    present = set(lengths)
    if len(present) == 1:
        return {rules.FAMILY_WHERE_OF_KEY_LENGTH[lengths[0]]: raw}
    return dict((rules.FAMILY_WHERE_OF_KEY_LENGTH[length], list(itertools.compress(raw, map(length.__eq__, lengths))))
                for length in present)


def expected(data, now_wall=None, now_mono_ns=None, keys=None):
    """rules.json data -> {src map name: {key: value bytes}} (expired blacklist entries left out)."""
    now_wall = time.time() if now_wall is None else now_wall
    now_mono_ns = time.monotonic_ns() if now_mono_ns is None else now_mono_ns
    blacklist = data.get("blacklist", [])
    if operator.countOf(map(_EXPIRES, blacklist), None) != len(blacklist):  # else none expires (a million)
        blacklist = [e for e in blacklist if not rules.is_expired(e, now_wall)]
    others = data.get("whitelist", []), data.get("port_rules", []), data.get("ratelimits", [])

    def expiry_ns(exp):
        return wall_to_monotonic_ns(exp, now_wall, now_mono_ns)
    if not any(others) and operator.countOf(map(_EXPIRES, blacklist), None) == len(blacklist):
        # a blacklist alone, nothing expiring (a million CIDRs): to_maps(resolve(...)) without its dict
        value = _class_value((layout.SRC_BL, None), expiry_ns)
        out = dict((name, {}) for name in SRC_MAPS)
        for (family, where), raw in key_bytes(list(map(_CIDR, blacklist)), keys).items():
            out[map_name(family, where)] = dict.fromkeys(raw, value)
        return out
    return to_maps(resolve(others[0], blacklist, others[1], others[2], keys), expiry_ns)


def live_ban(value, now_ns):
    """A src host value that is an auto-ban still in force."""
    bits, expires = layout.source_class(value)
    return bool(bits & layout.SRC_BAN) and (expires == 0 or expires > now_ns)


def covering_class(maps, host_map, address):
    """The class the longest prefix of the trie beside `host_map` gives an address (0: none)."""
    value = maps[host_map.replace("_host", "_lpm")].lookup(struct.pack("=I", len(address) * 8) + address)
    return layout.decode_u64(value) if value is not None else 0


def ban_over(expires_ns, cls):
    """The value a live auto-ban takes over an address of class `cls` (its exact entry's, else its
    longest prefix's; 0 = listed nowhere), keeping the rule bits; None when that class decides the
    address anyway: whitelisted, or blacklisted at least as long as the ban."""
    if cls & layout.SRC_WL:
        return None
    listed_until = cls & layout.SRC_EXPIRY_MASK
    if cls & layout.SRC_BL and (listed_until == 0 or listed_until >= expires_ns):
        return None
    return layout.encode_ban(expires_ns, cls)


def expired_ban(value, now_ns):
    bits, expires = layout.source_class(value)
    return bool(bits & layout.SRC_BAN) and 0 < expires <= now_ns


def _filter_array(m):
    """Every prefilter word, in index order (an array of native u64s: "=Q")."""
    return array.array("Q", m.array_values())


def _filter_words(m, indices):
    """{word index: u64} of the prefilter words `indices` (more than a few thousand: all, one batch read)."""
    if len(indices) > 4096:
        return dict(enumerate(_filter_array(m)))
    out = {}
    for index in indices:
        raw = m.lookup(layout.encode_u32(index))
        out[index] = layout.decode_u64(raw) if raw is not None else 0
    return out


def _filter_write(maps, bits, exact):
    """Set the prefilter bits `bits` (bit indices, layout.src_filter_bits); exact: every other bit cleared.
    Returns the number of words written (only those that change)."""
    m = maps[FILTER_MAP]
    if exact or len(bits) > 4096:  # every word: one batch read, the bits set in an array, compared in C
        old = _filter_array(m)
        new = array.array("Q", bytes(len(old) * old.itemsize)) if exact else array.array("Q", old)
        for bit in bits:
            new[bit >> 6] |= 1 << (bit & 63)
        index = list(itertools.compress(range(len(new)), map(operator.ne, old, new)))
        m.update_blobs(array.array("I", index).tobytes(), array.array("Q", map(new.__getitem__, index)).tobytes())
        return len(index)
    masks = {}
    for bit in bits:
        masks[bit >> 6] = masks.get(bit >> 6, 0) | 1 << (bit & 63)
    writes = [(layout.encode_u32(index), layout.encode_u64(old | masks[index]))
              for index, old in _filter_words(m, masks).items() if old | masks[index] != old]
    m.update_many(writes)
    return len(writes)


def _can_ban(maps):
    """Some rate-limit rule bans (the data plane may write auto-bans); true when the rule maps are not at hand."""
    for name in ("rl4_cfg", "rl6_cfg"):
        if name not in maps or any(struct.unpack_from("=Q", v, 24)[0] for _k, v in maps[name].items()):
            return True
    return False


def _ban_bits_lost(maps):
    """After the engine wrote prefilter words: set again the bits of auto-bans whose bit the data plane set
    between the engine's read of the word and its write (the data plane's atomic OR, lost under that write).
    The data plane sets a ban's bit before and again after it writes the ban, so a lost bit belongs to a ban
    that is in the map by now."""
    if not _can_ban(maps):
        return
    for _attempt in range(3):  # a bit lost again: another ban on the same word meanwhile
        bans = [key for name in HOST_MAPS for key, value in maps[name].items()
                if layout.decode_u64(value) & layout.SRC_BAN]
        bits = layout.src_filter_bits(bans, maps[FILTER_MAP].max_entries)
        current = _filter_words(maps[FILTER_MAP], set(bit >> 6 for bit in bits))
        lost = [bit for bit in bits if not current[bit >> 6] >> (bit & 63) & 1]
        if not lost:
            return
        _filter_write(maps, lost, False)


def mark_listed(maps, keys):
    """Set the prefilter bits of src4_host/src6_host keys: BEFORE they are written (the lookup of a key whose
    bit is clear is skipped: a blacklisted address would pass). No-op without the prefilter map."""
    if FILTER_MAP in maps and _filter_write(maps, layout.src_filter_bits(keys, maps[FILTER_MAP].max_entries), False):
        _ban_bits_lost(maps)


def rebuild_filter(maps, keys=None):
    """Make the prefilter hold the bits of exactly `keys` (default: every key the host maps hold), clearing
    those of deleted entries: AFTER the deletes. No-op without the prefilter map."""
    if FILTER_MAP not in maps:
        return
    if keys is None:
        keys = [key for name in HOST_MAPS for key, _value in maps[name].items()]
    if _filter_write(maps, layout.src_filter_bits(keys, maps[FILTER_MAP].max_entries), True):
        _ban_bits_lost(maps)


def write(maps, want, now_ns=None, changed=None):
    """Make the src maps hold `want` ({name: {key: value}}); only differing entries are written.

    Live auto-bans (runtime state, not in rules.json) stay, with the rule bits of the class the
    address has otherwise (ban_over); a ban on an address now whitelisted, or blacklisted at least
    as long, gives way. Returns the number of entries written and deleted; `changed` (a list), if
    given, receives (map name, key, old value or None, new value or None if deleted) of each, for
    flows_to_check(). The prefilter (maps[FILTER_MAP], if given) gets the bits of the host keys before
    they are written and loses those of deleted ones after."""
    now_ns = time.monotonic_ns() if now_ns is None else now_ns
    touched = 0
    bans = {}
    host_deleted = False
    for name in SRC_MAPS:
        target = want.get(name, {})
        current = dict(maps[name].items())
        written, values, deletes = [], [], []
        if not current:  # a first fill (a million keys): every key is written, no ban to keep
            written, values = list(target), list(target.values())
        for key, value in target.items() if current else ():
            old = current.get(key)
            if old == value:
                continue
            if old is not None and name in HOST_MAPS and live_ban(old, now_ns):
                bans[(name, key)] = old  # decided below, once the tries hold the new classes
                continue
            written.append(key)
            values.append(value)
        for key, value in current.items():
            if key in target:
                continue
            if name in HOST_MAPS and live_ban(value, now_ns):
                bans[(name, key)] = value
            else:
                deletes.append(key)
        if name in HOST_MAPS:
            mark_listed(maps, written)
            host_deleted = host_deleted or bool(deletes)
        maps[name].update_blobs(b"".join(written), b"".join(values))
        maps[name].delete_many(deletes)
        touched += len(written) + len(deletes)
        if changed is not None:
            changed.extend(zip(itertools.repeat(name), written, map(current.get, written), values))
            changed.extend((name, key, current[key], None) for key in deletes)
    for (name, key), value in bans.items():
        listed = want.get(name, {}).get(key)
        cls = layout.decode_u64(listed) if listed is not None else covering_class(maps, name, key)
        new = ban_over(layout.source_class(value)[1], cls)
        if new is None and listed is not None:
            maps[name].update(key, listed)
            if changed is not None:
                changed.append((name, key, value, listed))
        elif new is None:
            maps[name].delete(key)
            host_deleted = True
        elif new != value:
            maps[name].update(key, new)  # the key holds a ban: its bit is set
        touched += new != value
    if host_deleted:
        rebuild_filter(maps, [key for name in HOST_MAPS for key in want.get(name, {})] +
                       [key for (name, key), value in bans.items() if maps[name].lookup(key) is not None])
    return touched


def counts(data, kind, keys=None):
    """{(family, "host" or "lpm"): entries} of the whitelist or blacklist, for its capacity check."""
    listed = data.get(kind, [])
    cidrs = listed if kind == "whitelist" else list(map(_CIDR, listed))
    return dict((where, len(raw)) for where, raw in key_bytes(list(cidrs), keys).items())


def blocks(cls, now_ns):
    """A class that drops the address and cuts its flows: blacklisted (not whitelisted), not expired.
    An auto-ban alone does not cut the flows the address holds (docs/internals.md, "Rate limiting")."""
    expires = cls & layout.SRC_EXPIRY_MASK
    return cls & (layout.SRC_WL | layout.SRC_BL | layout.SRC_BAN) == layout.SRC_BL and (expires == 0 or expires > now_ns)


def address_class(maps, family, address):
    """The class the maps give an address, as the data plane decides it: its exact entry, else its
    longest prefix; an auto-banned address the class beneath its ban (a blacklist under it still cuts)."""
    host_map = map_name(family, "host")
    value = maps[host_map].lookup(address)
    cls = layout.decode_u64(value) if value is not None else None
    if cls is None or cls & layout.SRC_BAN:
        cls = covering_class(maps, host_map, address)
    return cls


def limited(cls):
    """The class keeps the flows its address opened under a rate limit (the rl flag of ct entries)."""
    return bool(cls & layout.SRC_RL) and not cls & layout.SRC_WL


def _covering(maps, name, where, key):
    """The class of the prefix covering a src map key's range, the key itself left out (0: none)."""
    if where == "host":
        return covering_class(maps, name, key)
    plen = struct.unpack_from("=I", key)[0]
    cover = maps[name].lookup(struct.pack("=I", plen - 1) + key[4:]) if plen else None
    return layout.decode_u64(cover) if cover is not None else 0


def flows_to_check(maps, changed, now_ns):
    """Of what sources.write just wrote or deleted (`changed`), the networks (family, prefix length,
    network as int) whose addresses' tracked flows may need a change: those that became blocked (the
    flows are cut) and those whose rate limit came or went (the rl flag of the flows they opened). A
    written key counts by its new class, a deleted one by the prefix now covering it (a whitelist entry
    inside a blacklisted prefix removed, say), a key that did not exist before against the prefix that
    covered its range. A generator."""
    for name, key, old, new in changed:
        family, where = int(name[3]), name.split("_")[1]
        if new is not None:
            cls = layout.decode_u64(new)
            if blocks(cls, now_ns) or (old is None and limited(cls)):
                check = True  # no need to look at what covered it before (a million new blacklist keys)
            else:
                before = layout.decode_u64(old) if old is not None else _covering(maps, name, where, key)
                check = limited(cls) != limited(before)
        else:
            cls = _covering(maps, name, where, key)
            check = blocks(cls, now_ns) or limited(cls) != limited(layout.decode_u64(old))
        if check:
            addr, plen, _width = _network(family, where, key)
            yield family, plen, addr
