"""Engine logic that needs no kernel: settings, identity, expiry arithmetic."""

import pytest

from ansible_collections.netxfw.firewall.plugins.module_utils import layout, program, program_settings, sources
from ansible_collections.netxfw.firewall.plugins.module_utils.errors import NetxfwError


def bl(cidr, expires=None):
    return {"cidr": cidr, "expires": expires}


def test_expiring_prefix_takes_the_expiry_of_a_permanent_cover():
    eff = sources.effective_expiry([bl("203.0.113.0/24"), bl("203.0.113.16/28", 100.0)])
    assert eff == {"203.0.113.0/24": None, "203.0.113.16/28": None}


def test_expiring_prefix_takes_the_latest_covering_expiry():
    eff = sources.effective_expiry([bl("203.0.113.0/24", 500.0), bl("203.0.113.0/16", 300.0),
                                   bl("203.0.113.16/28", 100.0), bl("198.51.100.0/24", 50.0)])
    assert eff["203.0.113.16/28"] == 500.0
    assert eff["203.0.113.0/24"] == 500.0
    assert eff["198.51.100.0/24"] == 50.0


def test_ipv6_cover():
    eff = sources.effective_expiry([bl("2001:db8::/32"), bl("2001:db8:1::/48", 10.0)])
    assert eff["2001:db8:1::/48"] is None


def test_wall_to_monotonic():
    assert sources.wall_to_monotonic_ns(None) == 0
    assert sources.wall_to_monotonic_ns(110.0, now_wall=100.0, now_mono_ns=5) == 5 + 10 * 10**9
    assert sources.wall_to_monotonic_ns(10.0, now_wall=100.0, now_mono_ns=5) == 1  # already expired, never 0


def test_program_defaults_and_identity():
    settings = program_settings.normalize_program({"interfaces": ["b", "a", "a"], "icmp_rate": 7})
    assert settings["interfaces"] == ["a", "b"]
    assert settings["icmp_burst"] == 7
    assert settings["policy"] == "allow"
    small = dict(settings["capacity"], blacklist=1024)
    assert program.program_identity(settings["capacity"]) != program.program_identity(small)
    assert program.program_identity(small) == program.program_identity(dict(small))


@pytest.mark.parametrize("settings, message", [
    ({"policy": "drop"}, "policy must be allow or deny"),
    ({"xdp_mode": "offload"}, "xdp_mode must be one of"),
    ({"capacity": {"blacklist": 0}}, "capacity.blacklist must be between"),
    ({"capacity": {"nope": 1}}, "unknown capacity 'nope'"),
    ({"conntrack_timeout": "x"}, "conntrack_timeout must be an integer"),
    ({"colour": "red"}, "unknown program setting 'colour'"),
    # strict about types: what only converts to a boolean or an integer is refused, never guessed
    ({"conntrack": "false"}, "conntrack must be true or false, not 'false'"),
    ({"conntrack": 1}, "conntrack must be true or false, not 1"),
    ({"sanity": {"bogon": "no"}}, "sanity.bogon must be true or false, not 'no'"),
    ({"sanity": "on"}, "sanity must be a mapping"),
    ({"icmp_rate": True}, "icmp_rate must be an integer, not True"),
    ({"icmp_rate": "10"}, "icmp_rate must be an integer, not '10'"),
    ({"capacity": {"blacklist": 2.5}}, "capacity.blacklist must be an integer, not 2.5"),
    ({"capacity": [1]}, "capacity must be a mapping"),
    ({"interfaces": "eth1"}, "interfaces must be a list of interface names"),
    ({"policy": ["deny"]}, "policy must be allow or deny"),
])
def test_program_settings_are_checked(settings, message):
    with pytest.raises(NetxfwError, match=message):
        program_settings.normalize_program(settings)


def test_program_settings_booleans_are_booleans():
    settings = program_settings.normalize_program({"conntrack": False, "sanity": {"bogon": True}})
    assert settings["conntrack"] is False and settings["sanity"]["bogon"] is True
    cfg = program_settings.runtime_config(settings)
    assert cfg[layout.CFG_CT_ENABLED] == 0
    assert cfg[layout.CFG_SANITY] & layout.SANITY_BITS["bogon"]
