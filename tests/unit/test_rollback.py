"""Confirm-or-rollback (agent/netxfw_agent/rollback.py) through the `netxfw` CLI, on a state dir
with no data plane loaded (the rule lists and the JSON are what a rollback restores; the lab
tests in tests/integration/test_fleet.py cover the loaded data plane and SSH)."""

import json
import os
import subprocess
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = os.path.join(REPO, "agent", "bin", "netxfw")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the engine's rule writes need root")


@pytest.fixture
def netxfw(tmp_path):
    base = ["/usr/bin/python3", CLI, "--pin-path", str(tmp_path / "pins"), "--state-dir", str(tmp_path / "state")]

    def run(*args, rc=0):
        p = subprocess.run(base + ["--json"] + list(args), capture_output=True, text=True, timeout=60, check=False)
        assert p.returncode == rc, (args, p.stdout, p.stderr)
        return json.loads(p.stdout) if p.stdout.strip() else None
    run.state = tmp_path / "state"
    yield run
    # never leave a timer behind
    pending = tmp_path / "state" / "rollback" / "pending"
    if pending.exists():
        pid = json.loads(pending.read_text()).get("pid")
        if pid:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass


def rules(run):
    return json.loads((run.state / "rules.json").read_text())


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def wait_gone(pid, timeout=5):
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


def test_unconfirmed_change_is_rolled_back(netxfw):
    netxfw("rule", "add", "whitelist", "198.51.100.1")
    armed = netxfw("rollback-after", "1.5")
    netxfw("rule", "remove", "whitelist", "198.51.100.1")
    netxfw("rule", "add", "blacklist", "203.0.113.0/24")
    assert rules(netxfw)["whitelist"] == []
    assert wait_gone(armed["pid"], 10)
    assert rules(netxfw)["whitelist"] == ["198.51.100.1/32"]
    assert rules(netxfw)["blacklist"] == []
    res = netxfw("confirm", armed["id"], rc=3)
    assert res["confirmed"] is False and res["rolled_back"]["ok"], res
    status = netxfw("rollback-status")
    assert status["pending"] is None and status["rolled_back"]["id"] == armed["id"]
    # the next arm reports it once, then it is seen
    again = netxfw("rollback-after", "60")
    assert again["previous_rollback"]["id"] == armed["id"]
    assert netxfw("confirm", again["id"])["confirmed"] is True
    assert netxfw("rollback-status")["rolled_back"] is None


def test_confirmed_change_stays_and_the_timer_exits(netxfw):
    armed = netxfw("rollback-after", "30")
    assert alive(armed["pid"])
    netxfw("rule", "add", "blacklist", "203.0.113.9")
    res = netxfw("confirm", armed["id"])
    assert res["confirmed"] is True
    assert wait_gone(armed["pid"])
    assert rules(netxfw)["blacklist"][0]["cidr"] == "203.0.113.9/32"
    netxfw("confirm", armed["id"], rc=1)  # nothing pending any more


def test_countdown_restarts_the_timer(netxfw):
    armed = netxfw("rollback-after", "600")
    netxfw("rule", "add", "blacklist", "203.0.113.9")
    netxfw("rollback-countdown", armed["id"], "1")
    assert wait_gone(armed["pid"], 10)
    assert rules(netxfw)["blacklist"] == []
    netxfw("rollback-countdown", armed["id"], "5", rc=3)  # too late: already rolled back


def test_a_new_arm_takes_over_and_keeps_the_older_snapshot(netxfw):
    netxfw("rule", "add", "whitelist", "198.51.100.1")
    first = netxfw("rollback-after", "600")
    netxfw("rule", "add", "whitelist", "198.51.100.2")      # never confirmed (the play died)
    second = netxfw("rollback-after", "600")
    assert second["superseded"] == first["id"]
    assert wait_gone(first["pid"])                          # the old timer sees the new id and exits
    netxfw("rule", "add", "whitelist", "198.51.100.3")
    netxfw("rollback-countdown", second["id"], "1")
    assert wait_gone(second["pid"], 10)
    # back to the last confirmed state, before both unconfirmed changes
    assert rules(netxfw)["whitelist"] == ["198.51.100.1/32"]
