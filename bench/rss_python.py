# SPDX-License-Identifier: GPL-2.0-or-later
"""The module interpreter of bench/lists.py (through the small sh script lists.rss_interpreter writes): runs $NXB_RSS_PYTHON with the same arguments and appends
the peak RSS (MiB) of what it ran, the module (and a respawned one, if any), to $NXB_RSS_LOG."""
import os
import resource
import subprocess
import sys

rc = subprocess.call([os.environ.get("NXB_RSS_PYTHON", sys.executable)] + sys.argv[1:])
if os.environ.get("NXB_RSS_LOG"):
    with open(os.environ["NXB_RSS_LOG"], "a") as log:
        log.write("%.1f\n" % (resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0))
sys.exit(rc)
