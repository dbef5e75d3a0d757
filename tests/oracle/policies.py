# SPDX-License-Identifier: GPL-2.0-or-later
"""The oracle's addresses and policies (importable helper, not a test module).

A policy is written once, in netxfw's terms: program settings plus the rule lists of
`netxfw_rule` (whitelist, blacklist, port). nft.py translates it into an nftables ruleset;
oracle.py applies it to netxfw through the engine. Policies run in the order of POLICIES, and
state carries over (conntrack on both hosts), which the cross-policy items use.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# the target host (identical on both target namespaces)
T4, T4B, T6, T6B = "198.51.100.1", "203.0.113.1", "2001:db8:1::1", "2001:db8:2::1"
TARGET_ADDRS = [T4 + "/24", T4B + "/24", T6 + "/64", T6B + "/64"]
TARGET_MAC, SENDER_MAC = "02:00:5e:00:53:01", "02:00:5e:00:53:02"
TARGET_LL, SENDER_LL = "fe80::5eff:fe00:5301", "fe80::2"

# sources the sender speaks for (the targets hold static neighbour entries for them)
SRC = {
    4: {
        "cli": "198.51.100.2",     # no list
        "wl": "198.51.100.50",     # whitelisted host
        "bl": "198.51.100.99",     # blacklisted host
        "net": "203.0.113.66",     # inside the blacklisted prefix
        "ok": "203.0.113.77",      # whitelisted host inside the blacklisted prefix
        "router": "203.0.113.100",  # a router inside the blacklisted prefix
        "rule_ok": "198.51.100.5",   # port 8080: allowed /28
        "rule_no": "198.51.100.20",  # port 8080: denied /28 inside the allowed /26
    },
    6: {
        "cli": "2001:db8:1::2",
        "wl": "2001:db8:1::50",
        "bl": "2001:db8:1::99",
        "net": "2001:db8:2::66",
        "ok": "2001:db8:2::77",
        "router": "2001:db8:2::100",
        "rule_ok": "2001:db8:1::5",
        "rule_no": "2001:db8:1::14",
    },
}
TARGET = {4: {"t": T4}, 6: {"t": T6}}

CAPACITY = {"whitelist": 64, "blacklist": 64, "port_rules": 256, "conntrack": 4096}
ICMP_OPEN = {"icmp_rate": 100000, "icmp_burst": 100000}  # echo requests never run out (one policy tests the limit)

LISTS = {
    "whitelist": [SRC[4]["wl"], SRC[4]["ok"], SRC[6]["wl"], SRC[6]["ok"]],
    "blacklist": [SRC[4]["bl"], "203.0.113.0/24", SRC[6]["bl"], "2001:db8:2::/64"],
}
SERVICES = [
    {"source": "any", "proto": "tcp", "port": 22, "action": "allow"},
    {"source": "any", "proto": "tcp", "port": 23, "action": "allow"},  # no listener: RST
    {"source": "any", "proto": "udp", "port": 53, "action": "allow"},
    {"source": "any", "proto": "udp", "port": 54, "action": "allow"},  # no listener: port unreachable
]
BY_SOURCE = [
    {"source": "198.51.100.0/26", "proto": "tcp", "port": 8080, "action": "allow"},
    {"source": "198.51.100.16/28", "proto": "tcp", "port": 8080, "action": "deny"},
    {"source": "2001:db8:1::/120", "proto": "tcp", "port": 8080, "action": "allow"},
    {"source": "2001:db8:1::10/124", "proto": "tcp", "port": 8080, "action": "deny"},
]
DENY_UNDER_ALLOW = [
    {"source": "any", "proto": "udp", "port": 55, "action": "deny"},
    {"source": "any", "proto": "tcp", "port": 25, "action": "deny"},
    {"source": "198.51.100.16/28", "proto": "tcp", "port": 8080, "action": "deny"},
    {"source": "2001:db8:1::10/124", "proto": "tcp", "port": 8080, "action": "deny"},
]


def _policy(name, policy, icmp=None, whitelist=(), blacklist=(), port=()):
    settings = {"policy": policy, "conntrack": True, "capacity": CAPACITY}
    settings.update(icmp or {"icmp_rate": 0, "icmp_burst": 0})
    return {"name": name, "settings": settings, "whitelist": list(whitelist), "blacklist": list(blacklist),
            "port": list(port)}


POLICIES = [
    # first: the ICMP bucket of the freshly loaded program is full, as nftables' new limit is
    _policy("icmp-limit", "deny", {"icmp_rate": 1, "icmp_burst": 3}, port=SERVICES),
    _policy("allow", "allow"),
    _policy("deny", "deny", ICMP_OPEN, port=SERVICES),
    _policy("lists-deny", "deny", ICMP_OPEN, port=SERVICES + BY_SOURCE, **LISTS),
    # the same with the whitelist gone: its addresses fall back to the blacklisted prefix
    _policy("lists-deny-nowl", "deny", ICMP_OPEN, port=SERVICES + BY_SOURCE, blacklist=LISTS["blacklist"]),
    _policy("lists-allow", "allow", port=DENY_UNDER_ALLOW, **LISTS),
    _policy("mapped", "allow", blacklist=["::ffff:0:0/96"]),
]
BY_NAME = dict((p["name"], p) for p in POLICIES)
# the policies every general corpus item runs under
GENERAL = ("allow", "deny", "lists-deny", "lists-allow")
