# SPDX-License-Identifier: GPL-2.0-or-later
"""Engine runner for the reload tests, inside the firewalled namespace (same protocol as tests/traffic/fw_agent.py).

    nsenter --net=/run/netns/nxt-fw /usr/bin/python3 -u runner.py COLLECTIONS_ROOT PIN_PATH STATE_DIR

One JSON request per line on stdin ({"op": ..., "args": {...}}), one JSON line back: {"ok": result} or
{"error": message, "type": exception class}. The test-only environment variables of reload.py
(NETXFW_TEST_SOURCE, NETXFW_RELOAD_PAUSE_AT) are inherited from the test.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import json
import os
import socket
import struct
import sys
import time
import traceback

sys.path.insert(0, sys.argv[1])

from ansible_collections.netxfw.firewall.plugins.module_utils import bpfsys, engine, layout, program, queries, rulemaps, sources  # noqa: E402
from ansible_collections.netxfw.firewall.plugins.module_utils import reload as hot_reload  # noqa: E402


def dump(fw):
    """Every rule map's contents (hex, sorted) plus the rules generation marker (the reload's rule
    maps: tests/traffic/fw_agent.py dumps only those its tests read)."""
    maps = fw.open_maps()
    if maps is None:
        return None
    try:
        out = dict((name, sorted([k.hex(), v.hex()] for k, v in maps[name].items())) for name in hot_reload.RULE_MAPS)
        out["generation"] = layout.decode_u64(maps["config"].lookup(layout.encode_u32(layout.CFG_RULES_GENERATION)))
        return out
    finally:
        fw.close_maps(maps)


def counts(fw):
    maps = fw.open_maps()
    if maps is None:
        return None
    try:
        return dict((name, len(m.items()) if name in sources.HOST_MAPS + ("ct",) else len(m.keys()))
                    for name, m in maps.items() if name not in ("config", "counters", "meta", "icmp_bucket", sources.FILTER_MAP))
    finally:
        fw.close_maps(maps)


def has_keys(fw, name, addresses):
    """How many of the addresses are keys of the host map `name`."""
    maps = fw.open_maps()
    try:
        return sum(1 for a in addresses if maps[name].lookup(ipaddress.ip_address(a).packed) is not None)
    finally:
        fw.close_maps(maps)


def state(fw, interfaces):
    """Pins, identity, and which program runs where (ids), to compare before and after."""
    pins = {}
    for pin in layout.PROGRAMS:
        fd = bpfsys.obj_get(os.path.join(fw.pin_path, pin))
        if fd is not None:
            pins[pin] = bpfsys.prog_info(fd)["id"]
            os.close(fd)
    maps = fw.open_maps()
    identity = fw.loaded_identity(maps) if maps else None
    fw.close_maps(maps)
    running = {}
    for name in interfaces:
        idx = socket.if_nametoindex(name)
        xdp = bpfsys.xdp_query(idx)
        running[name] = {"xdp": xdp["prog_id"], "mode": xdp["mode"],
                         "tc": bpfsys.tc_egress_query(idx, program.TC_HANDLE, program.TC_PRIO)}
    return {"pins": pins, "identity": identity, "running": running,
            "staging": os.path.isdir(hot_reload.staging_path(fw.pin_path))}


def summary(result):
    """apply_rules without its entry lists (a million-entry diff would be a 100 MB reply)."""
    return {"changed": result["changed"], "added": len(result["added"]), "removed": len(result["removed"]),
            "loaded": result["loaded"]}


def source_class(maps, raw):
    """The class the data plane finds for a source: its exact address, else its longest prefix (0: none)."""
    family = 4 if len(raw) == 4 else 6
    value = maps[sources.map_name(family, "host")].lookup(raw)
    if value is None:
        value = maps[sources.map_name(family, "lpm")].lookup(struct.pack("=I", len(raw) * 8) + raw)
    return layout.decode_u64(value) if value is not None else 0


def ban(fw, address, ttl):
    """What the rate limiter does to a source over its rate: an auto-ban in src*_host that keeps the
    rule bits of the source's class (layout.SRC_INHERITED)."""
    maps = fw.open_maps()
    try:
        raw = ipaddress.ip_address(address).packed
        sources.mark_listed(maps, [raw])  # its prefilter bit first, as the data plane sets it
        maps[sources.map_name(4 if len(raw) == 4 else 6, "host")].update(
            raw, layout.encode_ban(time.monotonic_ns() + int(ttl * 1e9), source_class(maps, raw)))
    finally:
        fw.close_maps(maps)


def sources_of(fw, addresses):
    """{address: [class bits, expiry ns]} of the source classes the data plane finds, None when not loaded."""
    maps = fw.open_maps()
    if maps is None:
        return None
    try:
        return dict((a, list(layout.source_class(layout.encode_u64(source_class(maps, ipaddress.ip_address(a).packed)))))
                    for a in addresses)
    finally:
        fw.close_maps(maps)


def pins(fw):
    """Names pinned under pin_path."""
    return sorted(os.listdir(fw.pin_path)) if os.path.isdir(fw.pin_path) else []


def xdp_verdicts(fw, frames):
    """BPF_PROG_TEST_RUN of the pinned XDP program (any layout) on each hex frame: [retval]."""
    fd = bpfsys.obj_get(os.path.join(fw.pin_path, "prog_xdp"))
    if fd is None:
        return None
    try:
        return [bpfsys.test_run(fd, bytes.fromhex(frame))[0] for frame in frames]
    finally:
        os.close(fd)


def prefilter_missing(fw):
    """The keys of src4_host/src6_host (as addresses) whose exact-source prefilter bit is clear (a security
    bug: their lookup would be skipped)."""
    maps = fw.open_maps()
    try:
        words = dict((struct.unpack("=I", k)[0], layout.decode_u64(v)) for k, v in maps[sources.FILTER_MAP].items())
        out = []
        for name in sources.HOST_MAPS:
            for key, _value in maps[name].items():
                bit = layout.src_filter_bit(key, maps[sources.FILTER_MAP].max_entries)
                if not words.get(bit >> 6, 0) >> (bit & 63) & 1:
                    out.append(str(ipaddress.ip_address(key)))
        return sorted(out)
    finally:
        fw.close_maps(maps)


def mark_rules_stale(fw):
    """Rule maps out of step with rules.json: the next run refills them from it."""
    maps = fw.open_maps()
    try:
        rulemaps.mark_generation(maps, None)
    finally:
        fw.close_maps(maps)


def main():
    fw = engine.Firewall(pin_path=sys.argv[2], state_dir=sys.argv[3])
    ops = {
        "apply_program": fw.apply_program,
        "remove_program": fw.remove_program,
        "apply_rules": lambda **args: summary(fw.apply_rules(**args)),
        "reload": fw.reload,
        "info": lambda: queries.info(fw),
        "dump": lambda: dump(fw),
        "counts": lambda: counts(fw),
        "has_keys": lambda name, addresses: has_keys(fw, name, addresses),
        "state": lambda interfaces: state(fw, interfaces),
        "ban": lambda address, ttl: ban(fw, address, ttl),
        "mark_rules_stale": lambda: mark_rules_stale(fw),
        "prefilter_missing": lambda: prefilter_missing(fw),
        "sources_of": lambda addresses: sources_of(fw, addresses),
        "pins": lambda: pins(fw),
        "xdp_verdicts": lambda frames: xdp_verdicts(fw, frames),
    }
    for line in sys.stdin:
        request = json.loads(line)
        try:
            reply = {"ok": ops[request["op"]](**request.get("args", {}))}
        except Exception as exc:  # reported to the test, which decides
            reply = {"error": str(exc) or traceback.format_exc(), "type": type(exc).__name__,
                     "trace": traceback.format_exc()}
        sys.stdout.write(json.dumps(reply, default=str) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
