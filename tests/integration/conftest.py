"""Fixtures the lab tests share. The helpers they share are in labkit.py (this directory) and the
lab itself in tests/lab.py; both directories go on sys.path here."""

import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(_HERE))
sys.path.insert(0, _HERE)
import collection  # noqa: E402
from labkit import SERVICE_PORT, stop  # noqa: E402

CLONE_NEWNET = 0x40000000
# The network namespace pytest started in, taken at collection, before any
# fixture runs (PID 1's may not be readable here).
_START_NETNS = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)


def _setns(fd):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "setns: %s" % os.strerror(err))


@pytest.fixture(scope="module")
def root_netns():
    """Run this module in the network namespace pytest started in.

    A session-scoped fixture of another test package may have moved the
    pytest process into its own netns (with its own 198.51.100.0/24 veth);
    the lab's bridge and the controller's SSH belong in the original one.
    """
    if os.readlink("/proc/self/ns/net") == os.readlink("/proc/self/fd/%d" % _START_NETNS):
        yield
        return
    saved = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(_START_NETNS)
        yield
    finally:
        _setns(saved)
        os.close(saved)


@pytest.fixture(scope="module")
def ansible_env():
    """The collection as users install it (tests/collection.py: ansible-galaxy build of this
    checkout, installed into an empty temp collections path), the only one ansible sees."""
    root = tempfile.mkdtemp(prefix="netxfw-harden-")
    try:
        coll = collection.install_checkout(root).collections_path
        yield collection.ansible_env(root, coll, ANSIBLE_FORKS="10")
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def listeners(lab):
    """A bounded HTTP listener on SERVICE_PORT on every host."""
    www = tempfile.mkdtemp(prefix="netxfw-www-")
    with open(os.path.join(www, "index.html"), "w") as f:
        f.write("netxfw lab\n")
    procs = [lab.popen_in(h, ["timeout", "600", "/usr/bin/python3", "-m", "http.server",
                              str(SERVICE_PORT), "--bind", "::", "--directory", www],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for h in lab.host_names]
    for h in lab.host_names:
        for dummy in range(100):
            r = lab.run_in(h, ["ss", "-Hltn", "sport = :%d" % SERVICE_PORT])
            if r.stdout.strip():
                break
            time.sleep(0.1)
        else:
            pytest.fail("listener on %s:%d did not come up" % (h, SERVICE_PORT))
    yield
    for p in procs:
        stop(p)
    shutil.rmtree(www, ignore_errors=True)
