# SPDX-License-Identifier: GPL-2.0-or-later
"""One control-plane operation in its own process (so that the parent can read its peak RSS
with wait4). Run by bench/control.py; prints one JSON line. Not a test module.

  cp_child.py deploy  PIN_PATH STATE_DIR IFACE
  cp_child.py rules   PIN_PATH STATE_DIR KIND FILE [exclusive]
"""

import json
import sys
import time

sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.abspath(__file__)))
import common  # noqa: E402

common.import_root()
from ansible_collections.netxfw.firewall.plugins.module_utils.engine import Firewall  # noqa: E402


def main(argv):
    op, pin_path, state_dir = argv[1:4]
    fw = Firewall(pin_path=pin_path, state_dir=state_dir)
    t0 = time.perf_counter()
    if op == "deploy":
        res = fw.apply_program({"interfaces": [argv[4]], "xdp_mode": "native", "policy": "allow"})
        out = {"changed": res["changed"], "compiled": res["compiled"], "actions": res["actions"]}
    elif op == "rules":
        kind, path = argv[4], argv[5]
        with open(path) as f:
            entries = json.load(f)
        t_load = time.perf_counter() - t0
        res = fw.apply_rules(kind, entries, exclusive=len(argv) > 6 and argv[6] == "exclusive")
        out = {"changed": res["changed"], "added": len(res["added"]), "removed": len(res["removed"]),
               "loaded": res["loaded"], "json_load_seconds": round(t_load, 3)}
    else:
        raise SystemExit("unknown op %s" % op)
    out["seconds"] = round(time.perf_counter() - t0, 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv)
