# SPDX-License-Identifier: GPL-2.0-or-later
"""Names shared by the reload tests and their conftest (a test module must not import
`conftest`: with several test folders, another folder's conftest can answer)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import sys

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
