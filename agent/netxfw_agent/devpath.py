# SPDX-License-Identifier: GPL-2.0-or-later
"""Make the engine importable as `netxfw_engine` from a checkout (dev launcher, tests).

A deployed host has /usr/lib/netxfw/netxfw_engine/ (a copy of plugins/module_utils);
in the repository a temporary directory holding the symlink
`netxfw_engine -> <repo>/plugins/module_utils` stands in for it.
"""

import atexit
import os
import shutil
import sys
import tempfile

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def engine_dir(repo=REPO_ROOT):
    """A new temp dir with netxfw_engine -> repo/plugins/module_utils; removed at exit."""
    root = tempfile.mkdtemp(prefix="netxfw-engine-")
    atexit.register(shutil.rmtree, root, True)  # removes the link, never what it points to
    os.symlink(os.path.join(repo, "plugins", "module_utils"), os.path.join(root, "netxfw_engine"))
    return root


def install(repo=REPO_ROOT):
    """Put the repo's agent and a netxfw_engine link on sys.path (idempotent); returns the
    PYTHONPATH a child process needs to import both."""
    agent = os.path.join(repo, "agent")
    if "netxfw_engine" not in sys.modules and not any(
            os.path.isdir(os.path.join(p, "netxfw_engine")) for p in sys.path if p):
        sys.path.insert(0, engine_dir(repo))
    if agent not in sys.path:
        sys.path.insert(0, agent)
    roots = [p for p in sys.path if p and os.path.isdir(os.path.join(p, "netxfw_engine"))]
    return os.pathsep.join([agent] + roots[:1])
