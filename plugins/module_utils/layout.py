# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-2.0-or-later
"""The pinned layout of bpf/netxfw.c, seen from Python (docs/internals.md)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import array
import itertools
import operator
import struct

from .bpfsys import (
    BPF_MAP_TYPE_RINGBUF,
    BPF_MAP_TYPE_ARRAY,
    BPF_MAP_TYPE_HASH,
    BPF_MAP_TYPE_LPM_TRIE,
    BPF_MAP_TYPE_LRU_HASH,
    BPF_MAP_TYPE_PERCPU_ARRAY,
)

LAYOUT_VERSION = 5

REASONS = (
    "pass_conntrack",
    "pass_whitelist",
    "drop_blacklist",
    "pass_rule",
    "drop_rule",
    "pass_icmp",
    "drop_icmp_rate",
    "pass_policy",
    "drop_policy",
    "pass_neighbor",
    "pass_non_ip",
    "drop_malformed",
    "egress_tracked",
    "pass_related",
    "drop_bogon",
    "drop_fragment",
    "drop_tcp_flags",
    "drop_land",
    "drop_ratelimit",
    "drop_rate_global",
    "auto_ban",  # an event (a source banned), counted besides the verdict of the ACK that proved it
    "pass_fragment",  # a later fragment of a datagram whose first fragment passed
    "pass_dhcp",  # a DHCP/DHCPv6 reply to a request this host sent
)
COUNTER_SLOTS = 32  # size of the counters array: reasons are appended, never renumbered

CFG_POLICY = 0
CFG_ICMP_RATE = 1
CFG_ICMP_BURST = 2
CFG_CT_ENABLED = 3
CFG_CT_TIMEOUT_NS = 4  # TCP established (and state-less entries of older programs)
CFG_CT_TCP_SYN_NS = 5
CFG_CT_TCP_FIN_NS = 6
CFG_CT_UDP_NS = 7
CFG_CT_UDP_STREAM_NS = 8
CFG_CT_ICMP_NS = 9
CFG_SANITY = 10
CFG_RL_GLOBAL_RATE = 11  # global bucket of the rate-limit stage, packets/s (0 = off)
CFG_RL_GLOBAL_BURST = 12
CFG_DROPLOG_RATE = 13  # drop events per second into the drops ring buffer (0 = off)
CFG_DROPLOG_BURST = 14
# Source class, the u64 value of src4/6_host and src4/6_lpm (docs/internals.md, "Source classes").
SRC_BAN = 1 << 63  # an auto-ban of the rate limiter (runtime state, not in rules.json)
SRC_WL = 1 << 62
SRC_BL = 1 << 61
SRC_RULES = 1 << 60  # a port rule's source covers it: the port-rule stage looks
SRC_RL = 1 << 59  # a rate-limit rule's source covers it: the rate-limit stage looks
SRC_EXPIRY_MASK = SRC_RL - 1  # blacklist expiry, CLOCK_MONOTONIC ns, 0 = never
SRC_INHERITED = SRC_RULES | SRC_RL  # what an auto-ban keeps of the class of the prefix covering it
# conntrack_timeouts setting -> config index (seconds in the settings, ns in the map)
CT_TIMEOUT_INDEX = {
    "tcp_syn": CFG_CT_TCP_SYN_NS,
    "tcp_established": CFG_CT_TIMEOUT_NS,
    "tcp_fin": CFG_CT_TCP_FIN_NS,
    "udp": CFG_CT_UDP_NS,
    "udp_stream": CFG_CT_UDP_STREAM_NS,
    "icmp": CFG_CT_ICMP_NS,
}
# sanity setting -> bit of CFG_SANITY
SANITY_BITS = {"bogon": 1, "fragments": 2, "tcp_flags": 4, "land": 8}

# ct_val.flags: bits 0-7 the state (docs/internals.md, "Conntrack")
CT_STATES = {
    0: "established",  # written by a program without states: treated as established
    1: "syn_sent",
    2: "syn_recv",
    3: "established",
    4: "fin_wait",
    5: "time_wait",
    6: "close",
    7: "udp",
    8: "udp_stream",
    9: "icmp_echo",
}
CT_STATE_TIMEOUT = {
    0: CFG_CT_TIMEOUT_NS, 1: CFG_CT_TCP_SYN_NS, 2: CFG_CT_TCP_SYN_NS, 3: CFG_CT_TIMEOUT_NS,
    4: CFG_CT_TCP_FIN_NS, 5: CFG_CT_TCP_FIN_NS, 6: CFG_CT_TCP_FIN_NS, 7: CFG_CT_UDP_NS,
    8: CFG_CT_UDP_STREAM_NS, 9: CFG_CT_ICMP_NS,
}
CT_F_INBOUND = 1 << 8  # opened by the peer
CT_F_RL = 1 << 12  # opened by a peer that a rate-limit rule covers: its packets stay under the limit
# The rules.json generation + 1 the maps hold, 0 while a write is under way: any write of the src maps changes it.
CFG_RULES_GENERATION = 15

POLICY_CODES = {"allow": 0, "deny": 1}
RULE_ACTIONS = {"allow": 1, "deny": 2}

# User-facing capacity -> (compile-time macros, default entries).
CAPACITIES = {
    "whitelist": (("NETXFW_WL_LPM_SIZE", "NETXFW_WL_HOST_SIZE"), 65536),
    "blacklist": (("NETXFW_BL_LPM_SIZE", "NETXFW_BL_HOST_SIZE"), 1048576),
    "port_rules": (("NETXFW_RULE_SIZE",), 65536),
    "conntrack": (("NETXFW_CT_SIZE",), 262144),
}

# name -> (type, key_size, value_size, fixed size, capacity names whose sizes add up, or a function of the capacities)
RL_SIZE = 4096  # NETXFW_RL_SIZE: rate-limit rules
SRC_HOST_SIZE = ("whitelist", "blacklist", "port_rules", RL_SIZE)  # NETXFW_SRC_HOST_SIZE
SRC_LPM_SIZE = ("whitelist", "blacklist", "port_rules", RL_SIZE)  # NETXFW_SRC_LPM_SIZE
# The exact-source prefilter (src_filter, u64 words): a bit per hash of a source address, set for every key of
# src4_host and src6_host (docs/internals.md, "The exact-source prefilter").
SRC_FILTER_BITS_PER_SLOT = 8  # NETXFW_SRC_FILTER_BITS_PER_SLOT: at least, rounded up to a power of two
SRC_FILTER_MUL = 0x9E3779B97F4A7C15  # NETXFW_SRC_FILTER_MUL: the multiplicative hash


def src_filter_words(capacities):
    """NETXFW_SRC_FILTER_WORDS: u64 words of src_filter."""
    slots = sum(part if isinstance(part, int) else capacities[part] for part in SRC_HOST_SIZE)
    return 1 << ((SRC_FILTER_BITS_PER_SLOT * slots - 1).bit_length() - 6)


def src_filter_bit(key, words):
    """The src_filter bit of a src4_host or src6_host key (as bpf/lib/sources.h src_filter_word: IPv6
    folded to 32 bits, the top bits of the product) in a filter of `words` u64 words."""
    folded = 0
    for part in struct.unpack("=%dI" % (len(key) // 4), key):
        folded ^= part
    return ((folded * SRC_FILTER_MUL) & 0xFFFFFFFFFFFFFFFF) >> (64 - 6 - (words.bit_length() - 1))


def src_filter_bits(keys, words):
    """[src_filter_bit(key, words) for key in keys], by C loops when the keys are all IPv4 or all IPv6
    (those of one map: a million of them)."""
    keys = list(keys)
    lengths = set(map(len, keys))
    if len(lengths) != 1 or not lengths <= {4, 16} or array.array("I").itemsize != 4:
        return [src_filter_bit(key, words) for key in keys]
    parts = array.array("I", b"".join(keys))  # native u32s, as "=I"
    if lengths == {16}:
        parts = map(operator.xor, map(operator.xor, parts[0::4], parts[1::4]), map(operator.xor, parts[2::4], parts[3::4]))
    repeat = itertools.repeat
    return list(map(operator.rshift, map(operator.and_, map(operator.mul, parts, repeat(SRC_FILTER_MUL)),
                                         repeat(0xFFFFFFFFFFFFFFFF)),
                    repeat(64 - 6 - (words.bit_length() - 1))))


MAPS = {
    "config": (BPF_MAP_TYPE_ARRAY, 4, 8, 16),
    "counters": (BPF_MAP_TYPE_PERCPU_ARRAY, 4, 16, COUNTER_SLOTS),
    "meta": (BPF_MAP_TYPE_ARRAY, 4, 40, 1),
    "src4_host": (BPF_MAP_TYPE_HASH, 4, 8, SRC_HOST_SIZE),
    "src6_host": (BPF_MAP_TYPE_HASH, 16, 8, SRC_HOST_SIZE),
    "src_filter": (BPF_MAP_TYPE_ARRAY, 4, 8, src_filter_words),
    "src4_lpm": (BPF_MAP_TYPE_LPM_TRIE, 8, 8, SRC_LPM_SIZE),
    "src6_lpm": (BPF_MAP_TYPE_LPM_TRIE, 20, 8, SRC_LPM_SIZE),
    "rules4": (BPF_MAP_TYPE_LPM_TRIE, 12, 4, ("port_rules",)),
    "rules6": (BPF_MAP_TYPE_LPM_TRIE, 24, 4, ("port_rules",)),
    "ct": (BPF_MAP_TYPE_LRU_HASH, 40, 16, ("conntrack",)),
    "ct_syn": (BPF_MAP_TYPE_LRU_HASH, 40, 16, 65536),  # NETXFW_CT_SYN_SIZE: embryonic inbound TCP
    "icmp_bucket": (BPF_MAP_TYPE_ARRAY, 4, 24, 1),
    "rl4_cfg": (BPF_MAP_TYPE_LPM_TRIE, 8, 32, RL_SIZE),  # struct rl_cfg per source CIDR
    "rl6_cfg": (BPF_MAP_TYPE_LPM_TRIE, 20, 32, RL_SIZE),
    "rl4_state": (BPF_MAP_TYPE_LRU_HASH, 4, 40, 65536),  # NETXFW_RL_STATE_SIZE: struct rl_state per source
    "rl6_state": (BPF_MAP_TYPE_LRU_HASH, 16, 40, 65536),
    "rl_global": (BPF_MAP_TYPE_ARRAY, 4, 24, 1),
    "drops": (BPF_MAP_TYPE_RINGBUF, 0, 0, 16 * 4096),  # NETXFW_DROPLOG_PAGES pages of struct drop_event
    "droplog_bucket": (BPF_MAP_TYPE_ARRAY, 4, 24, 1),
    "frags": (BPF_MAP_TYPE_LRU_HASH, 40, 8, 8192),  # NETXFW_FRAG_SIZE: datagrams whose first fragment passed
    "dhcp_expect": (BPF_MAP_TYPE_LRU_HASH, 16, 8, 1024),  # NETXFW_DHCP_SIZE: DHCP requests this host sent
}

PROGRAMS = {"prog_xdp": "xdp_ingress", "prog_tc": "tc_egress"}
# Pins of earlier layouts that this one no longer has: a reload drops them, remove_program too.
RETIRED_MAPS = ("wl4_host", "wl6_host", "wl4_lpm", "wl6_lpm", "bl4_host", "bl6_host", "bl4_lpm", "bl6_lpm")  # layout 1


def expected_map(name, capacities):
    """(type, key_size, value_size, max_entries) the layout wants for a map."""
    mtype, key_size, value_size, size = MAPS[name]
    if callable(size):
        size = size(capacities)
    elif not isinstance(size, int):
        size = sum(part if isinstance(part, int) else capacities[part] for part in size)
    return mtype, key_size, value_size, size


def cflags(capacities):
    flags = []
    for cap_name in sorted(CAPACITIES):
        for macro in CAPACITIES[cap_name][0]:
            flags.append("-D%s=%d" % (macro, capacities[cap_name]))
    return flags


def rules_map(family):
    return "rules%d" % family


def encode_u64(value):
    return struct.pack("=Q", value)


def decode_u64(raw):
    return struct.unpack("=Q", raw[:8])[0]


def encode_u32(value):
    return struct.pack("=I", value)


def encode_meta(identity_hex):
    return struct.pack("=Q", LAYOUT_VERSION) + bytes.fromhex(identity_hex)


def decode_meta(raw):
    version = struct.unpack("=Q", raw[:8])[0]
    return version, raw[8:40].hex()


def sum_counters(raw, ncpus):
    """Per-CPU `struct counter {u64 packets; u64 bytes;}` -> (packets, bytes)."""
    packets = octets = 0
    for cpu in range(ncpus):
        p, b = struct.unpack_from("=QQ", raw, cpu * 16)
        packets += p
        octets += b
    return packets, octets


def source_class(raw):
    """src* map value -> (class bits without the expiry, blacklist expiry ns or 0 for never)."""
    value = decode_u64(raw)
    return value & ~SRC_EXPIRY_MASK, value & SRC_EXPIRY_MASK


def encode_ban(expires_ns, inherited=0):
    """An auto-ban as the data plane writes it (inherited: the SRC_INHERITED bits of the source's class)."""
    return encode_u64((expires_ns & SRC_EXPIRY_MASK) | SRC_BAN | SRC_BL | (inherited & SRC_INHERITED))


def decode_rl_cfg(raw):
    rate, burst, flags, ban_ttl_ns = struct.unpack("=QQQQ", raw[:32])
    return {"rate": rate, "burst": burst, "syn_only": bool(flags & 1), "ban_ttl": ban_ttl_ns // 10 ** 9}


def decode_rl_state(raw):
    credit_ns, last_ns, dropped, proof_credit_ns, proof_last_ns = struct.unpack("=QQQQQ", raw[:40])
    return {"credit_ns": credit_ns, "last_ns": last_ns, "dropped": dropped,
            "proof_credit_ns": proof_credit_ns, "proof_last_ns": proof_last_ns}


DROP_EVENT = struct.Struct("=Q16s16sHHBBBxI4x")  # struct drop_event, 56 bytes


def decode_drop_event(raw):
    """struct drop_event -> dict (addresses as packed bytes of the family's length; ports host order)."""
    ts_ns, saddr, daddr, sport, dport, proto, family, reason, length = DROP_EVENT.unpack(raw[:DROP_EVENT.size])
    alen = 4 if family == 4 else 16
    return {
        "ts_ns": ts_ns, "family": family, "proto": proto, "len": length,
        "reason": REASONS[reason] if reason < len(REASONS) else str(reason),
        "saddr": saddr[:alen] if family else b"", "daddr": daddr[:alen] if family else b"",
        "sport": int.from_bytes(struct.pack("=H", sport), "big"),
        "dport": int.from_bytes(struct.pack("=H", dport), "big"),
    }


def decode_ct_key(raw):
    """ct key -> dict (addresses as packed bytes of the family's length)."""
    saddr, daddr, sport, dport, proto, family = struct.unpack("=16s16sHHBB2x", raw)
    alen = 4 if family == 4 else 16
    return {
        "family": family,
        "proto": proto,
        "saddr": saddr[:alen],
        "daddr": daddr[:alen],
        "sport": int.from_bytes(struct.pack("=H", sport), "big"),
        "dport": int.from_bytes(struct.pack("=H", dport), "big"),
    }


def decode_ct_value(raw):
    """ct value -> (last_seen_ns, flags)."""
    return struct.unpack("=QQ", raw[:16])


def ct_state(flags):
    return CT_STATES.get(flags & 0xFF, "unknown")


def ct_timeouts_ns(config_lookup):
    """{state code: timeout ns} from a function config index -> u64."""
    cache = {}
    for state, index in CT_STATE_TIMEOUT.items():
        if index not in cache:
            cache[index] = config_lookup(index)
    return dict((state, cache[index]) for state, index in CT_STATE_TIMEOUT.items())


def ct_live(value, timeouts, now_ns):
    """A ct/ct_syn value is live: now - last_seen < its state's timeout (docs/internals.md)."""
    last_seen, flags = decode_ct_value(value)
    timeout = timeouts.get(flags & 0xFF, timeouts[0])
    return now_ns - last_seen < timeout
