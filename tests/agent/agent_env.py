# SPDX-License-Identifier: GPL-2.0-or-later
"""Names shared by the agent tests and their conftest (a test module must not import
`conftest`: with several test folders, another folder's conftest can answer)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOST_IF, PEER_IF = "nxah0", "nxap0"
HOST4, PEER4 = "198.51.100.1", "198.51.100.2"
HOST6, PEER6 = "2001:db8:a9::1", "2001:db8:a9::2"


def every_kind(now):
    """Rules of every kind of the registry in their canonical form (what rules.json stores), IPv4 and
    IPv6, with every optional field set somewhere: a round trip must give them back as they are."""
    return {
        "whitelist": ["203.0.113.0/25", "2001:db8:77::/48"],
        "blacklist": [{"cidr": "198.51.100.77/32", "expires": float(int(now) + 3600) + 0.25},
                      {"cidr": "198.51.100.96/28", "expires": None},
                      {"cidr": "2001:db8:66::/64", "expires": None}],
        "port": [{"source": "any", "proto": "tcp", "ports": "22", "action": "allow"},
                 {"source": "203.0.113.0/24", "proto": "udp", "ports": "5000-5003", "action": "deny"},
                 {"source": "2001:db8:55::/48", "proto": "tcp", "ports": "443", "action": "deny"}],
        "ratelimit": [{"source": "203.0.113.128/25", "rate": 100, "burst": 200, "syn_only": True, "ban_ttl": 60},
                      {"source": "2001:db8:44::/48", "rate": 5, "burst": 5, "syn_only": False, "ban_ttl": 0}],
    }
