# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-2.0-or-later
"""Tracked flows (the ct and ct_syn maps) as the engine changes them: expiry by state, and the
cut of the flows of a source that a rule change blocks. Imports nothing from ansible.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import socket
import struct
import time

from . import layout, sources


def ct_timeouts(maps):
    """{state code: timeout ns} from the config map (layout.ct_timeouts_ns)."""
    return layout.ct_timeouts_ns(lambda index: layout.decode_u64(maps["config"].lookup(layout.encode_u32(index))))


def gc_flows(maps):
    """Delete expired conntrack entries; {"removed", "remaining"}."""
    timeouts, now = ct_timeouts(maps), time.monotonic_ns()
    removed = remaining = 0
    for name in ("ct", "ct_syn"):
        doomed = []
        for key, value in maps[name].items():
            if layout.ct_live(value, timeouts, now):
                remaining += 1
            else:
                doomed.append((key, value))
        # check again right before deleting: the data plane may have refreshed it meanwhile
        gone = [k for k, v in doomed if maps[name].lookup(k) == v]
        maps[name].delete_many(gone)
        removed += len(gone)
        remaining += len(doomed) - len(gone)
    return {"removed": removed, "remaining": remaining}


def unheld(flow):
    """A tracked flow its remote address does not prove it holds: one the peer opened, not TCP (a TCP
    flow the peer opened completed a handshake). An auto-ban cuts these only."""
    return bool(flow["flags"] & layout.CT_F_INBOUND) and flow["proto"] != socket.IPPROTO_TCP


def refresh_flows(maps, changed, now_ns=None):
    """After the src maps changed (`changed`, from sources.write): cut the tracked flows of every source
    now blocked (any change that blocks a source cuts its flows, not only a blacklist entry added), and
    give the flows peers opened (`inbound`) the rl flag of their source's class now (a rate limit added
    later applies to them too; one removed, or a whitelist entry added, frees them). Only flows under
    the keys that could matter are checked (sources.flows_to_check), each against the maps. Returns the
    number of flows deleted."""
    now_ns = time.monotonic_ns() if now_ns is None else now_ns
    if not changed:
        return 0
    updates = []

    def check(flow):
        cls = sources.address_class(maps, flow["family"], flow["saddr"])
        if sources.blocks(cls, now_ns):
            return True
        rl = layout.CT_F_RL if sources.limited(cls) else 0
        if flow["flags"] & layout.CT_F_INBOUND and flow["flags"] & layout.CT_F_RL != rl:
            updates.append((flow["key"], rl))
        return False

    purged = purge_conntrack(maps["ct"], sources.flows_to_check(maps, changed, now_ns), check)
    for key, rl in updates:
        value = maps["ct"].lookup(key)  # the freshest value: the data plane may have written it meanwhile
        if value is not None:
            last_seen, flags = layout.decode_ct_value(value)
            maps["ct"].update(key, struct.pack("=QQ", last_seen, (flags & ~layout.CT_F_RL) | rl))
    return purged


def purge_conntrack(ct_map, networks, also=None):
    """Delete tracked flows whose remote address lies in any of the networks ((family, prefix length,
    network as int)): a block cuts them at once. `networks` may be a generator: it is not consumed
    when no flow is tracked. `also(flow)`, if given, must be true too (flow: decode_ct_key() plus
    "flags" and "key")."""
    flows = ct_map.items()
    if not flows:
        return 0
    by_len = {}
    for family, plen, net in networks:
        by_len.setdefault((family, plen), set()).add(net)
    doomed = []
    for key, value in flows:
        flow = layout.decode_ct_key(key)
        addr = int.from_bytes(flow["saddr"], "big")
        bits = 32 if flow["family"] == 4 else 128
        for (family, plen), nets in by_len.items():
            if family == flow["family"] and (addr >> (bits - plen) << (bits - plen) if plen else 0) in nets:
                flow["flags"], flow["key"] = layout.decode_ct_value(value)[1], key
                if also is None or also(flow):
                    doomed.append(key)
                break
    ct_map.delete_many(doomed)
    return len(doomed)
