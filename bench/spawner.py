# SPDX-License-Identifier: GPL-2.0-or-later
"""A small process, started before the benchmark allocates anything, that runs the measured
control-plane commands for it. ru_maxrss of a child counts the memory of the process it was
exec'ed from (the kernel keeps the pre-exec high-water mark), so children of the big
benchmark process would report its size; children of this one start from ~10 MiB.
Protocol: one JSON request per line on stdin {"cmd": [...], "timeout": s, "env": {...}},
one JSON answer per line on stdout {"rc", "wall", "maxrss_mib", "out"}. Not a test module."""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time


def main():
    for line in sys.stdin:
        req = json.loads(line)
        with tempfile.TemporaryFile() as out:
            t0 = time.perf_counter()
            p = subprocess.Popen(req["cmd"], stdout=out, stderr=subprocess.STDOUT, env=req.get("env"),
                                 stdin=subprocess.DEVNULL)
            timer = threading.Timer(req.get("timeout", 900), p.kill)
            timer.start()
            try:
                dummy, status, ru = os.wait4(p.pid, 0)
            finally:
                timer.cancel()
            p.returncode = os.waitstatus_to_exitcode(status)
            wall = time.perf_counter() - t0
            out.seek(0)
            text = out.read().decode(errors="replace")
        sys.stdout.write(json.dumps({"rc": p.returncode, "wall": wall, "maxrss_mib": ru.ru_maxrss / 1024.0,
                                     "cpu": ru.ru_utime + ru.ru_stime,
                                     "out": text[-20000:]}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
