# SPDX-License-Identifier: GPL-2.0-or-later
"""Run one engine call in a separate process (another user, mount namespace, or a process to kill).

    /usr/bin/python3 engine_runner.py COLLECTIONS_ROOT PIN_PATH STATE_DIR OP 'JSON_KWARGS' | @FILE

Prints one JSON line: {"ok": result} or {"error": message, "type": exception class}.
Exit status 0 when the call returned, 3 when it raised.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import sys

sys.path.insert(0, sys.argv[1])

from ansible_collections.netxfw.firewall.plugins.module_utils.engine import Firewall  # noqa: E402


def main():
    pin_path, state_dir, op, kwargs = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
    if kwargs.startswith("@"):  # large argument lists come in a file
        with open(kwargs[1:]) as stream:
            kwargs = stream.read()
    kwargs = json.loads(kwargs)
    fw = Firewall(pin_path=pin_path, state_dir=state_dir)
    sys.stderr.write("started\n")
    sys.stderr.flush()
    try:
        result = getattr(fw, op)(**kwargs)
    except Exception as exc:
        print(json.dumps({"error": str(exc), "type": type(exc).__name__}))
        return 3
    print(json.dumps({"ok": result}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
