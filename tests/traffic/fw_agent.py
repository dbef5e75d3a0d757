# SPDX-License-Identifier: GPL-2.0-or-later
"""Engine agent for the traffic tests: runs inside the firewalled namespace.

    nsenter --net=/run/netns/nxt-fw /usr/bin/python3 -u fw_agent.py COLLECTIONS_ROOT PIN_PATH STATE_DIR

Reads one JSON request per line on stdin ({"op": ..., "args": {...}}) and writes
one JSON line back: {"ok": result} or {"error": message, "type": exception class}.
Exits at end of input. Imports the engine exactly as the modules do.
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

from ansible_collections.netxfw.firewall.plugins.module_utils import bpfsys, engine, layout, program, queries  # noqa: E402
from ansible_collections.netxfw.firewall.plugins.module_utils.reload import RULE_MAPS  # noqa: E402


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


def conntrack(fw):
    maps = fw.open_maps()
    try:
        flows = []
        for key, dummy in maps["ct"].items():
            flow = layout.decode_ct_key(key)
            flow["saddr"] = str(ipaddress.ip_address(flow["saddr"]))
            flow["daddr"] = str(ipaddress.ip_address(flow["daddr"]))
            flows.append(flow)
        return flows
    finally:
        fw.close_maps(maps)


def reboot(fw):
    """What a reboot does to the runtime state: programs detached, pins gone; state_dir survives."""
    for name in fw.attached_interfaces():
        program.detach(name)
    for name in list(layout.MAPS) + list(layout.PROGRAMS):
        path = os.path.join(fw.pin_path, name)
        if os.path.exists(path):
            os.unlink(path)
    return {"attached": fw.attached_interfaces(), "pins": sorted(os.listdir(fw.pin_path))}


def xdp_state(fw, ifname):
    idx = socket.if_nametoindex(ifname)
    return {"xdp": bpfsys.xdp_query(idx), "tc": bpfsys.tc_egress_query(idx, program.TC_HANDLE, program.TC_PRIO)}


def main():
    fw = engine.Firewall(pin_path=sys.argv[2], state_dir=sys.argv[3])
    ops = {
        "apply_program": fw.apply_program,
        "remove_program": fw.remove_program,
        "apply_rules": fw.apply_rules,
        "info": lambda: queries.info(fw),
        "dump": lambda: dump(fw),
        "conntrack": lambda: conntrack(fw),
        "reboot": lambda: reboot(fw),
        "xdp_state": lambda ifname: xdp_state(fw, ifname),
        "gc_conntrack": fw.gc_conntrack,
        "sweep": fw.sweep,
        "drops": lambda limit=100: queries.drops(fw, limit),
        "flows": lambda: queries.conntrack(fw)["items"],  # with state, inbound, live, expires_in
    }
    for line in sys.stdin:
        request = json.loads(line)
        try:
            reply = {"ok": ops[request["op"]](**request.get("args", {}))}
        except Exception as exc:  # reported to the test, which decides
            reply = {"error": str(exc), "type": type(exc).__name__, "trace": traceback.format_exc()}
        sys.stdout.write(json.dumps(reply, default=str) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
