# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-2.0-or-later
"""Read-only queries over a Firewall's desired state (rules.json) and runtime state
(pinned maps): rule listings with search and paging, conntrack listing, counters, the
info summary (conntrack, rate limits, bans), sampled drops.

Used by the host agent (CLI, API, metrics) and open to the modules. Nothing here
writes: every change goes through engine.Firewall. Imports nothing from ansible.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fcntl
import ipaddress
import os
import struct
import time

from . import bpfsys, flows, layout, program, rulemaps, rules, sources
from .errors import NetxfwError

PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6"}
rule_record = rules.rule_record
record_entry = rules.record_entry


def _matcher(search):
    """search text -> predicate over records: an address matches the rules whose network holds
    it, anything else is a case-insensitive substring of the record's values."""
    if search is None or not str(search).strip():
        return lambda record: True
    text = str(search).strip().lower()
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        address = None

    def match(record):
        for field in ("cidr", "source"):
            value = record.get(field)
            if address is not None and value and value != rules.ANY_SOURCE:
                network = rules.parse_cidr(value)
                if network.version == address.version and address in network:
                    return True
        return any(text in str(value).lower() for key, value in record.items() if key != "kind")
    return match


def page(items, offset=0, limit=None):
    """{"total", "offset", "limit", "items"} for one page of a list."""
    offset = max(0, int(offset or 0))
    chosen = items[offset:] if limit is None else items[offset:offset + int(limit)]
    return {"total": len(items), "offset": offset, "limit": limit, "items": chosen}


def list_rules(firewall, kind=None, search=None, offset=0, limit=None, include_expired=False):
    """Rules from rules.json (the desired state the maps hold) as records, in the engine's
    sort order, filtered by kind and search, one page of them."""
    kinds = [rules.rule_kind(kind).name] if kind is not None else rules.KINDS
    data = firewall.store.read_rules()
    now = time.time()
    match = _matcher(search)
    records = []
    for name in kinds:
        for entry in data.get(rules.LIST_KEYS[name], []):
            if name == "blacklist" and not include_expired and rules.is_expired(entry, now):
                continue
            record = rule_record(name, entry)
            if match(record):
                records.append(record)
    out = page(records, offset, limit)
    out["generation"] = data.get("generation", 0)
    return out


def rule_counts(firewall, data=None):
    """{kind: number of live rules} from rules.json (or its contents `data`, read already)."""
    data = firewall.store.read_rules() if data is None else data
    now = time.time()
    return dict((kind.name, sum(1 for e in data.get(kind.key, []) if not (kind.ttl and rules.is_expired(e, now))))
                for kind in rules.REGISTRY)


def read_counters(maps):
    """{reason: {"packets", "bytes"}} summed over CPUs, from open maps."""
    ncpus = bpfsys.num_possible_cpus()
    out = {}
    for index, reason in enumerate(layout.REASONS):
        packets, octets = layout.sum_counters(maps["counters"].lookup(layout.encode_u32(index)), ncpus)
        out[reason] = {"packets": packets, "bytes": octets}
    return out


def counters(firewall):
    """Counters by reason, or None when the program is not loaded. Cheap: one map."""
    maps = firewall.open_maps()
    if maps is None:
        return None
    try:
        return read_counters(maps)
    finally:
        firewall.close_maps(maps)


def rates(before, after, seconds):
    """Per-second packet and byte rates by reason between two counters() snapshots."""
    seconds = max(seconds, 1e-9)
    out = {}
    for reason, now in after.items():
        then = before.get(reason, {"packets": 0, "bytes": 0})
        out[reason] = {
            "packets": max(0, now["packets"] - then["packets"]) / seconds,
            "bytes": max(0, now["bytes"] - then["bytes"]) / seconds,
        }
    return out


def _cfg(maps, index):
    return layout.decode_u64(maps["config"].lookup(layout.encode_u32(index)))


def runtime_settings(maps):
    """The runtime settings the data plane applies now, read from the config map."""
    def cfg(index):
        return _cfg(maps, index)
    policy = dict((code, name) for name, code in layout.POLICY_CODES.items()).get(cfg(layout.CFG_POLICY), "unknown")
    return {
        "policy": policy,
        "icmp_rate": cfg(layout.CFG_ICMP_RATE),
        "icmp_burst": cfg(layout.CFG_ICMP_BURST),
        "conntrack": bool(cfg(layout.CFG_CT_ENABLED)),
        "conntrack_timeout": cfg(layout.CFG_CT_TIMEOUT_NS) // 10 ** 9,
        "conntrack_timeouts": dict((name, cfg(index) // 10 ** 9) for name, index in layout.CT_TIMEOUT_INDEX.items()
                                   if name != "tcp_established"),
        "sanity": dict((name, bool(cfg(layout.CFG_SANITY) & bit)) for name, bit in layout.SANITY_BITS.items()),
    }


def _flow_record(key, value, now_ns, timeouts):
    """timeouts: {state code: ns} (layout.ct_timeouts_ns)."""
    flow = layout.decode_ct_key(key)
    last_seen, flags = layout.decode_ct_value(value)
    age_ns = max(0, now_ns - last_seen)
    timeout_ns = timeouts.get(flags & 0xFF, timeouts[0])
    make = ipaddress.IPv4Address if flow["family"] == 4 else ipaddress.IPv6Address
    return {
        "family": flow["family"],
        "proto": PROTO_NAMES.get(flow["proto"], str(flow["proto"])),
        # The map holds the reply tuple (what the next inbound packet carries): source = the remote end.
        "remote": str(make(flow["saddr"])),
        "remote_port": flow["sport"],
        "local": str(make(flow["daddr"])),
        "local_port": flow["dport"],
        "age": round(age_ns / 1e9, 3),
        "live": age_ns < timeout_ns,
        "state": layout.ct_state(flags),
        "inbound": bool(flags & layout.CT_F_INBOUND),
        "expires_in": round(max(0, timeout_ns - age_ns) / 1e9, 3),
    }


def conntrack(firewall, search=None, offset=0, limit=None, live_only=False):
    """Tracked flows, newest first, as records; loaded False when there is no program."""
    maps = firewall.open_maps()
    if maps is None:
        out = page([], offset, limit)
        out.update(loaded=False, capacity=0)
        return out
    try:
        timeouts = flows.ct_timeouts(maps)
        capacity = maps["ct"].max_entries
        # embryonic inbound flows (syn_recv) wait in ct_syn until the handshake completes
        items = maps["ct"].items() + maps["ct_syn"].items()
    finally:
        firewall.close_maps(maps)
    now_ns = time.monotonic_ns()
    records = [_flow_record(k, v, now_ns, timeouts) for k, v in items]
    if live_only:
        records = [f for f in records if f["live"]]
    if search is not None and str(search).strip():
        text = str(search).strip().lower()
        records = [f for f in records if any(text == str(f[k]).lower() or text in str(f[k]).lower()
                                             for k in ("remote", "local", "proto", "remote_port", "local_port"))]
    records.sort(key=lambda f: f["age"])
    out = page(records, offset, limit)
    out.update(loaded=True, capacity=capacity)
    return out


# ---------------------------------------------------------------- info
def info(firewall, data=None):
    """Program, interfaces, counters, map usage, conntrack and rate-limit summaries, bans, and whether
    the rule maps hold rules.json (its contents `data`, when read already)."""
    config = firewall.store.read_config()
    maps = firewall.open_maps()
    try:
        out = {"loaded": maps is not None, "pin_path": firewall.pin_path, "state_dir": firewall.store.state_dir,
               "config": config}
        configured = (config or {}).get("interfaces", [])
        if maps is None:
            # what runs there anyway: a program whose pins were removed (or half written) still enforces
            out["interfaces"] = program.attachments(firewall.pin_path, configured)
            return out
        out["identity"] = firewall.loaded_identity(maps)
        out["counters"] = read_counters(maps)
        out["maps"] = dict(
            (name, {"entries": len(m.keys()), "capacity": m.max_entries})
            for name, m in maps.items() if name not in ("config", "counters", "meta", "icmp_bucket")
        )
        out["conntrack"] = conntrack_summary(maps)
        out["ratelimit"] = ratelimit_summary(maps)
        out["bans"] = bans(maps)
        names = sorted(set(configured) | set(firewall.attached_interfaces()))
        out["interfaces"] = program.attachments(firewall.pin_path, names)
        out["rules_in_step"] = _maps_in_step(firewall, maps, data)
        return out
    finally:
        firewall.close_maps(maps)


def _maps_in_step(firewall, maps, data=None):
    """True when the open rule `maps` hold what rules.json says; False when they do not and no run is
    writing them: a write died half way (killed, a crash, a reboot in the middle), the data plane
    enforces neither the old rules nor the new ones, and only the next write run, `netxfw reload` or
    a restore rebuilds them. None when rules.json cannot be read, or when a run holds the state lock
    (a write under way marks the maps dirty until it ends: that is not a fault)."""
    try:
        if not rulemaps.generation_stale(maps, firewall.store.read_rules() if data is None else data):
            return True
        # Stale: a fault only if no run is writing. Look again under a shared hold of the run lock
        # (taken only in this rare case; no writer starts while it is held).
        try:
            fd = os.open(firewall.store.path(firewall.store.LOCK_FILE), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            fd = None
        try:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return not rulemaps.generation_stale(maps, firewall.store.read_rules())
        finally:
            if fd is not None:
                os.close(fd)
    except BlockingIOError:
        return None
    except (NetxfwError, OSError):
        return None


# ---------------------------------------------------------------- drop sampling
def drops(firewall, limit=100):
    """Read (and consume) up to `limit` sampled drop events from the pinned drops ring buffer,
    oldest first: [{"time" (epoch s), "reason", "proto", "src", "dst", "sport", "dport", "len"}].
    The data plane writes at most drop_sampling_rate events per second; events not read before
    the ring fills are lost (counters still count every drop)."""
    fd = bpfsys.obj_get(os.path.join(firewall.pin_path, "drops"))
    if fd is None:
        return {"loaded": False, "events": []}
    try:
        records = bpfsys.ring_buffer_read(fd, limit=limit)
    finally:
        os.close(fd)
    wall, mono = time.time(), time.monotonic_ns()
    events = []
    for raw in records:
        ev = layout.decode_drop_event(raw)
        events.append({
            "time": round(wall - (mono - ev["ts_ns"]) / 1e9, 6), "reason": ev["reason"],
            "proto": ev["proto"], "len": ev["len"], "sport": ev["sport"], "dport": ev["dport"],
            "src": str(ipaddress.ip_address(ev["saddr"])) if ev["family"] else None,
            "dst": str(ipaddress.ip_address(ev["daddr"])) if ev["family"] else None,
        })
    return {"loaded": True, "events": events}


def bans(maps, now_ns=None):
    """Live auto-bans of the rate limiter: [{"address", "expires_in" (seconds)}], soonest first."""
    now_ns = time.monotonic_ns() if now_ns is None else now_ns
    out = []
    for name in sources.HOST_MAPS:
        for key, value in maps[name].items():
            bits, expires = layout.source_class(value)
            if bits & layout.SRC_BAN and expires > now_ns:
                out.append({"address": str(ipaddress.ip_address(key)),
                            "expires_in": round((expires - now_ns) / 1e9, 3)})
    return sorted(out, key=lambda b: b["expires_in"])


def ratelimit_summary(maps, limit=100):
    """Rate-limit rules (from the maps), global bucket settings, and the tracked sources
    (at most `limit`, most dropped first) with their credit in packets."""
    rules_out = []
    for family in (4, 6):
        for key, value in maps["rl%d_cfg" % family].items():
            plen = struct.unpack_from("=I", key)[0]
            rule = layout.decode_rl_cfg(value)
            rule["source"] = "%s/%d" % (ipaddress.ip_address(key[4:]), plen)
            rules_out.append(rule)
    tracked = []
    for family in (4, 6):
        for key, value in maps["rl%d_state" % family].items():
            state = layout.decode_rl_state(value)
            tracked.append({"address": str(ipaddress.ip_address(key)), "dropped": state["dropped"],
                            "idle_s": round(max(0, time.monotonic_ns() - state["last_ns"]) / 1e9, 3)})
    tracked.sort(key=lambda s: -s["dropped"])
    return {"rules": sorted(rules_out, key=lambda r: r["source"]), "sources_tracked": len(tracked),
            "sources": tracked[:limit],
            "global": {"rate": _cfg(maps, layout.CFG_RL_GLOBAL_RATE), "burst": _cfg(maps, layout.CFG_RL_GLOBAL_BURST)}}


def conntrack_summary(maps):
    """Table size and usage, live entries by state (ct plus the embryonic ct_syn)."""
    timeouts, now = flows.ct_timeouts(maps), time.monotonic_ns()
    by_state, expired, total = {}, 0, 0
    for name in ("ct", "ct_syn"):
        for _key, value in maps[name].items():
            total += 1
            if not layout.ct_live(value, timeouts, now):
                expired += 1
                continue
            state = layout.ct_state(layout.decode_ct_value(value)[1])
            by_state[state] = by_state.get(state, 0) + 1
    capacity = maps["ct"].max_entries + maps["ct_syn"].max_entries
    return {"entries": total, "live": total - expired, "expired": expired, "capacity": capacity,
            "usage": round(total / capacity, 6), "by_state": by_state}
