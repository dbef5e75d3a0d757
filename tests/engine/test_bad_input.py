# SPDX-License-Identifier: GPL-2.0-or-later
"""Bad input and hostile environments: each call fails with a message that says
what is wrong and how to fix it, and leaves rules.json, config.json and every map
exactly as they were."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import tempfile

import pytest

from ansible_collections.netxfw.firewall.plugins.module_utils import layout
from ansible_collections.netxfw.firewall.plugins.module_utils.errors import NetxfwError

from engine_env import SETTINGS

GOOD = {
    "whitelist": ["198.51.100.7", "2001:db8:1::/48"],
    "blacklist": ["203.0.113.0/24", "2001:db8:2::66"],
    "port": [{"proto": "tcp", "port": 8080, "source": "198.51.100.0/24"}],
}


@pytest.fixture
def loaded(fresh):
    """Some rules in place, so that 'unchanged' means something."""
    for kind, entries in GOOD.items():
        fresh.fw.apply_rules(kind, entries)
    fresh.assert_maps_match_json()
    return fresh


def fails_cleanly(env, match, call, *args, **kwargs):
    before = env.snapshot()
    with pytest.raises(NetxfwError, match=match) as info:
        call(*args, **kwargs)
    assert env.snapshot() == before, "a failed call changed state: %s" % info.value
    return str(info.value)


@pytest.mark.parametrize("kind, entries", [
    ("blacklist", ["198.51.100.300/24"]),
    ("blacklist", ["203.0.113.0/33"]),
    ("blacklist", ["203.0.113.0/24", "not-an-address"]),  # one bad entry spoils the whole call
    ("whitelist", ["2001:db8::g/64"]),
    ("whitelist", ["fe80::1%eth0"]),
    ("port", [{"proto": "tcp", "port": 22, "source": "198.51.100.0/24x"}]),
    ("blacklist", [{"cidr": "203.0.113.0/24/8"}]),
])
def test_invalid_cidr(loaded, kind, entries):
    message = fails_cleanly(loaded, r"invalid CIDR", loaded.fw.apply_rules, kind, entries)
    # it shows what a valid one looks like, or what to remove
    assert "198.51.100.0/24" in message or "remove the zone" in message


@pytest.mark.parametrize("port", [0, 65536, "0", "65536", "0-10", "65530-65536", -1])
def test_port_out_of_range(loaded, port):
    fails_cleanly(loaded, r"between 1 and 65535", loaded.fw.apply_rules, "port",
                  [{"proto": "tcp", "port": port}])


def test_port_range_reversed_and_garbage(loaded):
    fails_cleanly(loaded, r"first port must not be greater", loaded.fw.apply_rules, "port",
                  [{"proto": "udp", "ports": "2000-1000"}])
    fails_cleanly(loaded, r"invalid port", loaded.fw.apply_rules, "port", [{"proto": "udp", "ports": "http"}])


def test_unknown_interface(loaded):
    message = fails_cleanly(loaded, r"unknown interface 'nxt-nope0'", loaded.fw.apply_program,
                            dict(SETTINGS, interfaces=["nxt-nope0"]))
    assert "does not exist" in message
    assert loaded.fw.apply_program(SETTINGS)["changed"] is False


def test_missing_kernel_headers(loaded):
    """/lib/modules really empty, in a private mount namespace, for a run that must compile."""
    empty = tempfile.mkdtemp(prefix="nxt-no-modules-")
    try:
        # a new capacity changes the program identity: a compile is needed
        settings = dict(SETTINGS, capacity=dict(SETTINGS["capacity"], port_rules=512))
        script = 'mount --bind "$0" /lib/modules && test ! -e /lib/modules/"$(uname -r)" && exec "$@"'
        prefix = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, empty]
        before = loaded.snapshot()
        rc, reply = loaded.run("apply_program", prefix=prefix, settings=settings)
        assert loaded.snapshot() == before
    finally:
        os.rmdir(empty)
    assert rc == 3 and reply["type"] == "NetxfwError", reply
    release = os.uname().release
    message = reply["error"]
    assert "kernel headers for %s are missing" % release in message
    assert "install linux-headers-%s" % release in message
    assert "nearest linux-headers-*" in message and "/lib/modules/%s/source" % release in message
    # the bind mount stayed private: the host still sees its headers
    assert os.path.isdir("/lib/modules/%s/build" % release)


def whitelisted(env, name):
    """Keys of a src map whose class has the whitelist bit."""
    return [k for k, v in env.maps([name])[name] if layout.decode_u64(v) & layout.SRC_WL]


def test_full_map_refused_before_any_write(loaded):
    """capacity.whitelist is 8 here: the whitelist already holds one IPv4 address."""
    more = ["198.51.100.%d" % n for n in range(10, 18)]  # 8 more: 9 exact IPv4 addresses
    message = fails_cleanly(loaded, r"whitelist needs 9 exact-address entries \(IPv4\) but capacity.whitelist is 8",
                            loaded.fw.apply_rules, "whitelist", more)
    assert "raise capacity.whitelist" in message
    # check mode reports the same problem
    fails_cleanly(loaded, r"capacity.whitelist is 8", loaded.fw.apply_rules, "whitelist", more, check_mode=True)
    # exactly full is fine
    result = loaded.fw.apply_rules("whitelist", more[:7])
    assert result["changed"]
    loaded.assert_maps_match_json()
    assert len(whitelisted(loaded, "src4_host")) == 8
    # the capacity is per list: blacklisted and port-rule sources do not count against it
    loaded.fw.apply_rules("blacklist", ["203.0.113.%d" % n for n in range(1, 21)])
    loaded.fw.apply_rules("port", [{"proto": "udp", "port": 53, "source": "198.51.100.%d" % n} for n in range(101, 111)])
    loaded.assert_maps_match_json()
    assert len(loaded.maps(["src4_host"])["src4_host"]) == 8 + 20 + 10


def test_full_map_in_one_call(fresh):
    fails_cleanly(fresh, r"whitelist needs 20 exact-address entries \(IPv6\) but capacity.whitelist is 8",
                  fresh.fw.apply_rules, "whitelist", ["2001:db8::%x" % n for n in range(1, 21)])


def test_prefixes_have_their_own_capacity(fresh):
    """8 prefixes and 8 exact addresses per family fit capacity.whitelist = 8; a 9th prefix does not."""
    fresh.fw.apply_rules("whitelist", ["198.51.100.%d" % n for n in range(1, 9)]
                         + ["10.%d.0.0/16" % n for n in range(1, 9)])
    fresh.assert_maps_match_json()
    fails_cleanly(fresh, r"whitelist needs 9 prefix entries \(IPv4\) but capacity.whitelist is 8",
                  fresh.fw.apply_rules, "whitelist", ["10.9.0.0/16"])


def test_shrinking_the_whitelist_below_its_entries_is_refused(fresh):
    """The src maps are sized by a sum of capacities: the shrink is checked per list, like a write."""
    fresh.fw.apply_rules("whitelist", ["198.51.100.%d" % n for n in range(1, 6)] + ["203.0.113.0/24"])
    message = fails_cleanly(fresh, r"cannot shrink below the current number of entries", fresh.fw.reload,
                            capacity={"whitelist": 4})
    assert "the whitelist holds 5 exact-address entries (IPv4) but capacity.whitelist would be 4" in message
    assert fresh.fw.store.read_config()["capacity"]["whitelist"] == 8


NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


@pytest.mark.parametrize("op, kwargs", [
    ("apply_rules", {"kind": "blacklist", "entries": ["203.0.113.99"]}),
    ("apply_rules", {"kind": "whitelist", "entries": [], "exclusive": True}),
    ("apply_program", {"settings": dict(SETTINGS, policy="allow")}),
    ("remove_program", {}),
])
def test_not_root(loaded, op, kwargs):
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (util-linux)")
    before = loaded.snapshot()
    rc, reply = loaded.run(op, prefix=NOBODY, **kwargs)
    assert loaded.snapshot() == before
    assert rc == 3 and reply["type"] == "NetxfwError", reply
    assert "must run as root" in reply["error"] and "CAP_BPF" in reply["error"]


def test_bad_input_in_a_child_process_as_root(loaded):
    """The runner itself works as root: the not-root failures above are not a runner artefact."""
    rc, reply = loaded.run("apply_rules", kind="blacklist", entries=["203.0.113.0/24"])
    assert rc == 0 and reply["ok"]["changed"] is False, reply
