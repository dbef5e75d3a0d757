# SPDX-License-Identifier: GPL-2.0-or-later
"""Fixtures for real-packet tests: one topology and one loaded engine per session.

Run as root: /opt/netxfw-venv/bin/python -m pytest tests/traffic
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netns  # noqa: E402

from ansible_collections.netxfw.firewall.plugins.module_utils.rules import KINDS  # noqa: E402


def collections_root():
    """The sys.path entry that tests/conftest.py made hold ansible_collections/netxfw/firewall."""
    for entry in sys.path:
        if os.path.isdir(os.path.join(entry, "ansible_collections", "netxfw", "firewall")):
            return entry
    raise RuntimeError("ansible_collections.netxfw.firewall is not importable (tests/conftest.py)")


def _requirements():
    if os.geteuid() != 0:
        pytest.skip("traffic tests create namespaces and load XDP programs: run as root")
    for tool in ("ip", "nsenter", "ping", "nc"):
        if shutil.which(tool) is None:
            pytest.skip("traffic tests need %s" % tool)
    if not os.path.exists(netns.SYSTEM_PYTHON):
        pytest.skip("needs %s with the BCC bindings" % netns.SYSTEM_PYTHON)


@pytest.fixture(scope="module")
def topo():
    _requirements()
    with netns.Topology() as topology:
        yield topology


@pytest.fixture(scope="module")
def engine_agent(topo):
    with topo.engine(collections_root(), netns.SETTINGS) as agent:
        yield agent


@pytest.fixture
def fw(engine_agent):
    """The loaded firewall with empty rule lists before and after the test."""
    for kind in KINDS:
        engine_agent.call("apply_rules", kind=kind, entries=[], exclusive=True)
    yield engine_agent
    for kind in KINDS:
        engine_agent.call("apply_rules", kind=kind, entries=[], exclusive=True)
