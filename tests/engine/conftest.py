# SPDX-License-Identifier: GPL-2.0-or-later
"""Engine-level safety tests: one program loaded (attached nowhere) per module.

Pins go to a unique directory under /sys/fs/bpf, state to a temporary dir;
both are removed at teardown. Run as root:
/opt/netxfw-venv/bin/python -m pytest tests/engine
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine_env import KINDS, SETTINGS, Env, make_public_root  # noqa: E402

from ansible_collections.netxfw.firewall.plugins.module_utils import bpfsys  # noqa: E402


@pytest.fixture(scope="session")
def public_root():
    root = make_public_root()
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def env(public_root):
    if os.geteuid() != 0:
        pytest.skip("engine tests load BPF programs: run as root")
    pytest.importorskip("bcc", reason="needs the distro BCC bindings (python3-bpfcc)")
    e = Env(public_root)
    try:
        result = e.fw.apply_program(SETTINGS)
        assert result["compiled"]
        yield e
    finally:
        e.close()


@pytest.fixture
def fresh(env):
    """The module's firewall with empty rule lists and empty conntrack."""
    for kind in KINDS:
        env.fw.apply_rules(kind, [], exclusive=True)
    with bpfsys.Map.open_pinned(os.path.join(env.pin_path, "ct")) as ct:
        ct.clear()
    return env
