# SPDX-License-Identifier: GPL-2.0-or-later
"""Names shared by the reload tests and their conftest (a test module must not import
`conftest`: with several test folders, another folder's conftest can answer)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import io
import os
import shutil
import subprocess
import sys
import tarfile

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "traffic"))
import netns  # noqa: E402

EXTRA_IF, EXTRA_PEER = "rl0", "rl1"
PAUSE_ENV = "NETXFW_RELOAD_PAUSE_AT"
SOURCE_ENV = "NETXFW_TEST_SOURCE"

SETTINGS = {
    "interfaces": [netns.FW_IF, EXTRA_IF],
    "policy": "deny",
    "conntrack": True,
    "conntrack_timeout": 120,
    "icmp_rate": 0,
    "icmp_burst": 0,
    "capacity": {"whitelist": 256, "blacklist": 1024, "port_rules": 256, "conntrack": 4096},
}


def extract_collection(repo, rev, root):
    """The collection as of git revision rev, extracted under root/ansible_collections/netxfw/firewall:
    (collections root, its tests/reload/runner.py), or None with the reason when git cannot give it."""
    proc = subprocess.run(["git", "-c", "safe.directory=*", "-C", repo, "archive", "--format=tar", rev],
                          capture_output=True, timeout=60, check=False)
    if proc.returncode != 0:
        return None, "cannot extract %s from %s: %s" % (rev, repo, proc.stderr.decode(errors="replace"))
    target = os.path.join(str(root), "ansible_collections", "netxfw", "firewall")
    os.makedirs(target)
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        tar.extractall(target)
    return (str(root), os.path.join(target, "tests", "reload", "runner.py")), None


def old_collection(rev, layout_version, root):
    """(collections root, runner.py) and the C source of the collection at git revision rev, whose data
    plane is layout_version: an earlier release that a hot reload upgrades."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if shutil.which("git") is None:
        pytest.skip("needs git to extract the layout-%d collection (%s)" % (layout_version, rev))
    extracted, why = extract_collection(repo, rev, root)
    if extracted is None:
        pytest.skip(why)
    with open(os.path.join(extracted[0], "ansible_collections", "netxfw", "firewall", "bpf", "netxfw.c")) as stream:
        source = stream.read()
    assert "#define NETXFW_LAYOUT_VERSION %d\n" % layout_version in source
    return extracted, source
