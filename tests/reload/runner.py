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
import sys
import traceback

sys.path.insert(0, sys.argv[1])

from ansible_collections.netxfw.firewall.plugins.module_utils import bpfsys, engine, layout  # noqa: E402
from ansible_collections.netxfw.firewall.plugins.module_utils import reload as hot_reload  # noqa: E402

RULE_MAPS = hot_reload.RULE_MAPS


def dump(fw):
    """Every rule map's contents (hex, sorted) plus the rules generation marker."""
    maps = fw.open_maps()
    if maps is None:
        return None
    try:
        out = dict((name, sorted([k.hex(), v.hex()] for k, v in maps[name].items())) for name in RULE_MAPS)
        out["generation"] = layout.decode_u64(maps["config"].lookup(layout.encode_u32(layout.CFG_RULES_GENERATION)))
        return out
    finally:
        fw.close_maps(maps)


def counts(fw):
    maps = fw.open_maps()
    if maps is None:
        return None
    try:
        return dict((name, len(m.keys()) if name not in ("bl4_host", "bl6_host", "ct") else len(m.items()))
                    for name, m in maps.items() if name not in ("config", "counters", "meta", "icmp_bucket"))
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
                         "tc": bpfsys.tc_egress_query(idx, engine.TC_HANDLE, engine.TC_PRIO)}
    return {"pins": pins, "identity": identity, "running": running,
            "staging": os.path.isdir(hot_reload.staging_path(fw.pin_path))}


def summary(result):
    """apply_rules without its entry lists (a million-entry diff would be a 100 MB reply)."""
    return {"changed": result["changed"], "added": len(result["added"]), "removed": len(result["removed"]),
            "loaded": result["loaded"]}


def ban(fw, address, ttl):
    """What the rate limiter does to a source over its rate: an auto-ban in bl*_host (bit 63)."""
    import ipaddress
    import time
    maps = fw.open_maps()
    try:
        raw = ipaddress.ip_address(address).packed
        maps["bl%d_host" % (4 if len(raw) == 4 else 6)].update(
            raw, layout.encode_ban(time.monotonic_ns() + int(ttl * 1e9)))
    finally:
        fw.close_maps(maps)


def mark_rules_stale(fw):
    """Rule maps out of step with rules.json: the next run refills them from it."""
    maps = fw.open_maps()
    try:
        fw._mark_generation(maps, None)
    finally:
        fw.close_maps(maps)


def main():
    fw = engine.Firewall(pin_path=sys.argv[2], state_dir=sys.argv[3])
    ops = {
        "apply_program": fw.apply_program,
        "remove_program": fw.remove_program,
        "apply_rules": lambda **args: summary(fw.apply_rules(**args)),
        "reload": fw.reload,
        "info": fw.info,
        "dump": lambda: dump(fw),
        "counts": lambda: counts(fw),
        "has_keys": lambda name, addresses: has_keys(fw, name, addresses),
        "state": lambda interfaces: state(fw, interfaces),
        "ban": lambda address, ttl: ban(fw, address, ttl),
        "mark_rules_stale": lambda: mark_rules_stale(fw),
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
