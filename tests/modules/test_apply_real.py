# Copyright: (c) 2025, netxfw developers
# GNU General Public License v2.0+ (see https://www.gnu.org/licenses/gpl-2.0.txt)
# SPDX-License-Identifier: GPL-2.0-or-later

"""netxfw_apply run directly (see conftest.py) with rollback=false, as a play that opts out of
confirm-or-rollback runs it: there, nothing undoes a part applied before a later one fails. The
rate-limit rules are also applied with rollback=true and rolled back by the host's window."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import signal
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = os.path.join(REPO, "agent", "bin", "netxfw")
FW_ADDR, PEER_ADDR = "198.51.100.1", "198.51.100.2"  # conftest.py's namespaces
PROGRAM = {"interfaces": ["vm0"], "policy": "allow"}
STATE = {"whitelist": ["198.51.100.2"], "blacklist": ["203.0.113.0/24"],
         "port": [{"proto": "tcp", "port": 22}], "program": PROGRAM}


@pytest.fixture
def applied(loaded):
    env = loaded
    result = env.run("netxfw_apply", dict(STATE, rollback=False))
    assert result["rc"] == 0 and result["changed"] is True, result
    return env


def apply(env, **changes):
    return env.run("netxfw_apply", dict(STATE, rollback=False, **changes))


@pytest.mark.parametrize("changes, message", [
    ({"port": [{"proto": "tcp", "port": 22}, {"proto": "tcp", "port": 0}]}, "ports must be between 1 and 65535"),
    ({"program": dict(PROGRAM, interfaces=["nxm-nonexistent0"])}, "unknown interface 'nxm-nonexistent0'"),
    ({"program": dict(PROGRAM, polcy="deny")}, "unknown program setting 'polcy'"),
    ({"program": {"policy": "allow"}}, "program.interfaces is required"),
    ({"ratelimit": [{"source": "198.51.100.0/24", "rate": 0}]}, "rate must be an integer between 1 and"),
    ({"ratelimit": [{"source": "198.51.100.0/24", "rate": 5, "brust": 3}]}, "unknown field(s) brust"),
])
def test_a_mistake_in_a_later_part_applies_no_part(applied, changes, message):
    env = applied
    before = env.read_state("rules.json"), env.read_state("config.json")
    # the lists change too: without the check up front they were applied before the mistake was found
    result = apply(env, whitelist=["198.51.100.3"], blacklist=["203.0.113.0/25"],
                   **dict({"ratelimit": [{"source": "203.0.113.0/24", "rate": 5}]}, **changes))
    assert result["rc"] != 0 and result["failed"] is True
    assert message in result["msg"], result["msg"]
    assert (env.read_state("rules.json"), env.read_state("config.json")) == before
    assert env.xdp_attached("vm0")
    assert apply(env)["changed"] is False


def test_check_mode_predicts_and_changes_nothing(applied):
    env = applied
    before = env.read_state("rules.json"), env.read_state("config.json")
    check = env.run("netxfw_apply", dict(STATE, whitelist=[], program=dict(PROGRAM, policy="deny")), check=True)
    assert check["rc"] == 0 and check["changed"] is True
    assert check["parts"]["whitelist"]["removed"] == ["198.51.100.2/32"]
    assert check["parts"]["program"]["changed"] is True and check["parts"]["blacklist"]["changed"] is False
    assert (env.read_state("rules.json"), env.read_state("config.json")) == before
    assert env.run("netxfw_apply", STATE, check=True)["changed"] is False


LIMIT = {"source": PEER_ADDR + "/32", "rate": 1, "burst": 5}
NOT_THE_PEER = ["198.51.100.3"]  # STATE whitelists the peer, and a whitelisted source is never limited
STORED = dict(LIMIT, syn_only=False, ban_ttl=0)


def test_ratelimits_add_noop_change_remove(applied):
    env = applied
    first = env.run("netxfw_apply", dict(STATE, rollback=False, ratelimit=[LIMIT]), diff=True)
    assert first["rc"] == 0 and first["changed"] is True, first
    part = first["parts"]["ratelimit"]
    assert part["changed"] is True and part["added"] == [STORED] and part["removed"] == [], part
    assert [first["parts"][name]["changed"] for name in ("whitelist", "blacklist", "port", "program")] == [False] * 4
    assert [(d["before_header"], d["before"], d["after"]) for d in first["diff"]] == [
        ("netxfw ratelimit: 0 removed", "", "198.51.100.2/32 rate 1 burst 5\n")]
    assert env.rules()["ratelimits"] == [STORED]

    again = env.run("netxfw_apply", dict(STATE, rollback=False, ratelimit=[LIMIT]), diff=True)
    assert again["rc"] == 0 and again["changed"] is False and again["diff"] == [], again

    changed = dict(LIMIT, rate=2, syn_only=True)
    result = env.run("netxfw_apply", dict(STATE, rollback=False, ratelimit=[changed]), diff=True)
    assert result["changed"] is True and result["parts"]["ratelimit"]["removed"] == [STORED], result
    assert result["diff"][0]["before"] == "198.51.100.2/32 rate 1 burst 5\n", result["diff"]
    assert result["diff"][0]["after"] == "198.51.100.2/32 rate 2 burst 5 syn_only\n", result["diff"]
    assert env.rules()["ratelimits"] == [dict(STORED, rate=2, syn_only=True)]

    # the list is the whole truth: left out, the rule goes
    result = apply(env)
    assert result["changed"] is True and result["parts"]["ratelimit"]["removed_count"] == 1, result
    assert not env.rules().get("ratelimits")
    assert apply(env)["changed"] is False


def test_ratelimit_check_mode_predicts_and_changes_nothing(applied):
    env = applied
    before = env.read_state("rules.json")
    check = env.run("netxfw_apply", dict(STATE, ratelimit=[LIMIT]), check=True, diff=True)
    assert check["rc"] == 0 and check["changed"] is True, check
    assert check["parts"]["ratelimit"]["added"] == [STORED] and len(check["diff"]) == 1, check
    assert env.read_state("rules.json") == before
    assert apply(env, ratelimit=[LIMIT])["changed"] is True
    check = env.run("netxfw_apply", dict(STATE, ratelimit=[]), check=True)
    assert check["changed"] is True and check["parts"]["ratelimit"]["removed"] == [STORED], check
    assert env.rules()["ratelimits"] == [STORED]


def counter(env, name):
    info = env.run("netxfw_info", {})
    assert info["rc"] == 0, info
    return info["counters"].get(name, {}).get("packets", 0)


def peer_python(env, code, *args):
    proc = subprocess.run(["nsenter", "--net=/run/netns/" + env.peer_ns, "/usr/bin/python3", "-c", code] + list(args),
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


SEND_UDP = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[2])):
    s.sendto(b"x", (sys.argv[1], 9300))
"""


def test_the_role_s_rate_limit_limits_real_packets(applied):
    env = applied
    assert apply(env, whitelist=NOT_THE_PEER, ratelimit=[LIMIT])["changed"] is True
    dropped = counter(env, "drop_ratelimit")
    peer_python(env, SEND_UDP, FW_ADDR, "60")
    # rate 1/s, burst 5: five pass at once and about one more a second of sending
    assert counter(env, "drop_ratelimit") - dropped >= 40
    # removed by the next run: nothing is limited any more
    assert apply(env, whitelist=NOT_THE_PEER)["changed"] is True
    dropped = counter(env, "drop_ratelimit")
    peer_python(env, SEND_UDP, FW_ADDR, "60")
    assert counter(env, "drop_ratelimit") == dropped


CONNECT = """
import socket, sys
for i in range(int(sys.argv[2])):
    c = socket.create_connection((sys.argv[1], 9301), timeout=2)
    c.close()
"""


def test_the_role_s_runs_keep_live_auto_bans(applied):
    """Completed handshakes beyond the rate ban the peer (runtime state); the role's next runs, which
    change and then remove the rule that banned, keep the ban: only its expiry ends it."""
    env = applied
    banning = dict(LIMIT, rate=1, burst=2, syn_only=True, ban_ttl=600)
    assert apply(env, whitelist=NOT_THE_PEER, ratelimit=[banning])["changed"] is True
    listener = subprocess.Popen(["nsenter", "--net=/run/netns/" + env.fw_ns, "/usr/bin/python3", "-c",
                                 "import socket, time\ns = socket.create_server(('%s', 9301), backlog=16)\n"
                                 "print('up', flush=True)\ntime.sleep(60)" % FW_ADDR],
                                stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout.readline().strip() == "up"
        peer_python(env, CONNECT, FW_ADDR, "3")
    finally:
        listener.kill()
        listener.wait(timeout=10)
    bans = env.run("netxfw_info", {})["bans"]
    assert [ban["address"] for ban in bans] == [PEER_ADDR], bans
    for ratelimit in ([dict(banning, rate=2)], []):
        result = apply(env, whitelist=NOT_THE_PEER, ratelimit=ratelimit, blacklist=["203.0.113.0/25"])
        assert result["changed"] is True and result["parts"]["ratelimit"]["changed"] is True, result
        bans = env.run("netxfw_info", {})["bans"]
        assert [ban["address"] for ban in bans] == [PEER_ADDR], (ratelimit, bans)
    assert not env.ping_from_peer()  # the ban still blocks what the peer cannot prove


def stop_timer(env):
    try:
        with open(os.path.join(env.state_dir, "rollback", "pending")) as stream:
            pid = json.load(stream).get("pid")
    except (OSError, ValueError):
        return
    if pid:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_rolled_back_apply_restores_the_rate_limit_rules(applied):
    """The role's run with rollback on, never confirmed: the host's window rolls its rate-limit change
    back (rollback-now is what the host's timer runs at the deadline)."""
    env = applied
    assert apply(env, whitelist=NOT_THE_PEER, ratelimit=[LIMIT])["changed"] is True
    held = env.rules()["ratelimits"]
    try:
        result = env.run("netxfw_apply", dict(STATE, whitelist=NOT_THE_PEER, ratelimit=[dict(LIMIT, rate=50)], cli_path=CLI,
                                              rollback_timeout=600))
        assert result["rc"] == 0 and result["parts"]["ratelimit"]["changed"] is True, result
        window = result["rollback"]["id"]
        assert env.rules()["ratelimits"] == [dict(STORED, rate=50)]
        proc = env.in_fw("/usr/bin/python3", CLI, "--pin-path", env.pin_path, "--state-dir", env.state_dir, "--json",
                         "rollback-now", window, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        # the apply's changes are its window's own: rolled back, none kept as someone else's
        assert not json.loads(proc.stdout).get("kept_changes_by_others"), proc.stdout
    finally:
        stop_timer(env)
    assert env.rules()["ratelimits"] == held
    # the maps too: the rolled-back state is what the role's list now finds, unchanged
    assert apply(env, whitelist=NOT_THE_PEER, ratelimit=[LIMIT])["changed"] is False
    dropped = counter(env, "drop_ratelimit")
    peer_python(env, SEND_UDP, FW_ADDR, "60")
    assert counter(env, "drop_ratelimit") - dropped >= 40
