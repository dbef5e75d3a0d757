"""Confirm-or-rollback (agent/netxfw_agent/rollback.py) through the `netxfw` CLI, on a state dir
with no data plane loaded (the rule lists and the JSON are what a rollback restores; the lab
tests in tests/integration/test_fleet.py cover the loaded data plane and SSH)."""

import json
import os
import select
import subprocess
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = os.path.join(REPO, "agent", "bin", "netxfw")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the engine's rule writes need root")


@pytest.fixture
def netxfw(tmp_path):
    base = ["/usr/bin/python3", CLI, "--pin-path", str(tmp_path / "pins"), "--state-dir", str(tmp_path / "state")]

    def run(*args, rc=0, owner=None):
        env = dict(os.environ)
        env.pop("NETXFW_ROLLBACK_ID", None)
        if owner:
            env["NETXFW_ROLLBACK_ID"] = owner  # this change belongs to window `owner`
        p = subprocess.run(base + ["--json"] + list(args), capture_output=True, text=True, timeout=60, check=False, env=env)
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
    mine = armed["id"]
    netxfw("rule", "remove", "whitelist", "198.51.100.1", owner=mine)
    netxfw("rule", "add", "blacklist", "203.0.113.0/24", owner=mine)
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
    netxfw("rule", "add", "blacklist", "203.0.113.9", owner=armed["id"])
    res = netxfw("confirm", armed["id"])
    assert res["confirmed"] is True
    assert wait_gone(armed["pid"])
    assert rules(netxfw)["blacklist"][0]["cidr"] == "203.0.113.9/32"
    # asked again, confirm says what happened to that change: it was confirmed
    assert netxfw("confirm", armed["id"])["confirmed"] is True
    netxfw("confirm", "0123456789abcdef", rc=1)  # an id this host never saw


def test_countdown_restarts_the_timer(netxfw):
    armed = netxfw("rollback-after", "600")
    netxfw("rule", "add", "blacklist", "203.0.113.9", owner=armed["id"])
    netxfw("rollback-countdown", armed["id"], "1")
    assert wait_gone(armed["pid"], 10)
    assert rules(netxfw)["blacklist"] == []
    netxfw("rollback-countdown", armed["id"], "5", rc=3)  # too late: already rolled back


def test_one_window_at_a_time(netxfw):
    """A second arm while a window is open waits for it (here: not at all) and then fails,
    naming the open window and its owner; the first window is untouched and confirms."""
    netxfw("rule", "add", "whitelist", "198.51.100.1")
    first = netxfw("rollback-after", "600", "--owner", "play-one")
    netxfw("rule", "add", "whitelist", "198.51.100.2", owner=first["id"])
    p = subprocess.run(["/usr/bin/python3", CLI, "--state-dir", str(netxfw.state), "rollback-after", "600",
                        "--owner", "play-two", "--wait", "0.5"], capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 1 and first["id"] in p.stderr and "play-one" in p.stderr, p.stderr
    assert alive(first["pid"])
    assert netxfw("confirm", first["id"])["confirmed"] is True
    assert rules(netxfw)["whitelist"] == ["198.51.100.1/32", "198.51.100.2/32"]


def test_a_waiting_arm_opens_its_window_after_the_first_closes(netxfw):
    first = netxfw("rollback-after", "600", "--owner", "play-one")
    waiting = subprocess.Popen(["/usr/bin/python3", CLI, "--json", "--state-dir", str(netxfw.state), "rollback-after",
                                "600", "--owner", "play-two", "--wait", "60"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # it says whom it waits for (and only then is confirming the first window a test of the wait)
        assert select.select([waiting.stderr], [], [], 60)[0], "the waiting arm said nothing in 60 s"
        said = waiting.stderr.readline()
        assert said.startswith("waiting for window %s (owner play-one," % first["id"]), said
        # the waiting arm does not touch the open window
        assert waiting.poll() is None and netxfw("rollback-status")["pending"]["id"] == first["id"]
        assert netxfw("confirm", first["id"])["confirmed"] is True
        second = json.loads(waiting.communicate(timeout=60)[0])
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert second["waited_for"] == [first["id"]] and second["owner"] == "play-two"
    assert netxfw("confirm", second["id"])["confirmed"] is True
    assert netxfw("confirm", first["id"])["confirmed"] is True   # each id keeps its own outcome


def test_changes_by_others_survive_the_rollback(netxfw):
    """An emergency block made during the window by someone else (no window id: the CLI, the
    API, a run with rollback off) is kept; only the owner's change is reverted."""
    netxfw("rule", "add", "whitelist", "198.51.100.1")
    armed = netxfw("rollback-after", "600")
    netxfw("rule", "remove", "whitelist", "198.51.100.1", owner=armed["id"])
    netxfw("rule", "add", "port", "tcp:8080", owner=armed["id"])
    netxfw("rule", "add", "blacklist", "203.0.113.66")                      # someone else
    netxfw("rule", "add", "whitelist", "198.51.100.7")                      # someone else
    res = netxfw("rollback-now", armed["id"])
    assert res["ok"] and sorted(res["kept_changes_by_others"]) == ["blacklist: +1 -0", "whitelist: +1 -0"], res
    got = rules(netxfw)
    assert got["whitelist"] == ["198.51.100.1/32", "198.51.100.7/32"]
    assert [e["cidr"] for e in got["blacklist"]] == ["203.0.113.66/32"]
    assert got["port_rules"] == []
    assert wait_gone(armed["pid"])
    assert netxfw("confirm", armed["id"], rc=3)["rolled_back"]["id"] == armed["id"]


def test_snapshots_restore_rate_limit_rules(netxfw):
    netxfw("rule", "add", "whitelist", "198.51.100.1")
    before = rules(netxfw)
    armed = netxfw("rollback-after", "600")
    entry = {"source": "203.0.113.0/24", "rate": 10, "burst": 20}
    p = subprocess.run(["/usr/bin/python3", "-c", ADD_RATELIMIT, str(netxfw.state), json.dumps(entry)],
                       capture_output=True, text=True, timeout=60, check=False,
                       env=dict(os.environ, NETXFW_ROLLBACK_ID=armed["id"]))
    assert p.returncode == 0, p.stderr
    assert rules(netxfw).get("ratelimits"), rules(netxfw)
    netxfw("rollback-now", armed["id"])
    assert not rules(netxfw).get("ratelimits") and rules(netxfw)["whitelist"] == before["whitelist"]
    # and the other way round: a snapshot holding rate-limit rules brings them back
    p = subprocess.run(["/usr/bin/python3", "-c", ADD_RATELIMIT, str(netxfw.state), json.dumps(entry)],
                       capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    held = rules(netxfw)["ratelimits"]
    armed = netxfw("rollback-after", "600")
    p = subprocess.run(["/usr/bin/python3", "-c", ADD_RATELIMIT.replace("present", "absent"), str(netxfw.state),
                        json.dumps(entry)], capture_output=True, text=True, timeout=60, check=False,
                       env=dict(os.environ, NETXFW_ROLLBACK_ID=armed["id"]))
    assert p.returncode == 0, p.stderr
    assert not rules(netxfw).get("ratelimits")
    netxfw("rollback-now", armed["id"])
    assert rules(netxfw)["ratelimits"] == held


ADD_RATELIMIT = """
import json, sys
sys.path.insert(0, %r)
from netxfw_agent import devpath
devpath.install()
from netxfw_engine.engine import Firewall
fw = Firewall(pin_path=sys.argv[1] + "/../pins", state_dir=sys.argv[1])
fw.apply_rules("ratelimit", [json.loads(sys.argv[2])], state="present")  # the CLI has no rate-limit rules
""" % os.path.join(REPO, "agent")


def test_reboot_inside_the_window_restores_the_last_confirmed_state(netxfw):
    """The timer dies with the host; `netxfw restore` at boot rolls the unconfirmed change back,
    and the next arm snapshots the confirmed state, not the unconfirmed one."""
    netxfw("rule", "add", "whitelist", "198.51.100.1")
    armed = netxfw("rollback-after", "600")
    netxfw("rule", "add", "blacklist", "203.0.113.0/24", owner=armed["id"])
    os.kill(armed["pid"], 9)
    assert wait_gone(armed["pid"])
    status = netxfw("rollback-status")
    assert status["pending"]["timer_alive"] is False
    res = netxfw("restore")
    assert res["rolled_back"]["id"] == armed["id"] and res["rolled_back"]["ok"], res
    assert rules(netxfw)["blacklist"] == [] and rules(netxfw)["whitelist"] == ["198.51.100.1/32"]
    assert netxfw("confirm", armed["id"], rc=3)["rolled_back"]["id"] == armed["id"]


def test_the_next_arm_rolls_back_a_window_whose_timer_died(netxfw):
    netxfw("rule", "add", "whitelist", "198.51.100.1")
    armed = netxfw("rollback-after", "600")
    netxfw("rule", "add", "blacklist", "203.0.113.0/24", owner=armed["id"])
    os.kill(armed["pid"], 9)
    assert wait_gone(armed["pid"])
    again = netxfw("rollback-after", "600")
    assert again["previous_rollback"]["id"] == armed["id"]
    snap = json.loads((netxfw.state / "rollback" / "snapshot.json").read_text())
    assert snap["rules"]["blacklist"] == [] and snap["rules"]["whitelist"] == ["198.51.100.1/32"]
    assert netxfw("confirm", again["id"])["confirmed"] is True


def test_a_held_lock_delays_the_rollback_loudly_but_never_cancels_it(netxfw):
    """The timer fires while another process holds the state lock for longer than the timer's
    lock timeout: the rollback waits, says so (rollback-status, status), and happens once the
    lock is free."""
    import fcntl
    netxfw("rule", "add", "whitelist", "198.51.100.1")
    armed = netxfw("rollback-after", "600")
    netxfw("rule", "remove", "whitelist", "198.51.100.1", owner=armed["id"])
    fd = os.open(str(netxfw.state / ".lock"), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        # restart the countdown without the CLI (it would wait for the lock we hold): 1 s from now
        pending = netxfw.state / "rollback" / "pending"
        window = json.loads(pending.read_text())
        window["deadline"] = time.time() + 1
        tmp = pending.with_name(".pending.test")
        tmp.write_text(json.dumps(window))
        os.replace(tmp, pending)
        blocked = netxfw.state / "rollback" / "blocked.json"
        deadline = time.monotonic() + 120
        while not blocked.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert blocked.exists(), (netxfw.state / "rollback" / "timer.log").read_text()
        assert alive(armed["pid"])
        p = subprocess.run(["/usr/bin/python3", CLI, "--state-dir", str(netxfw.state), "rollback-status"],
                           capture_output=True, text=True, timeout=60, check=False)
        assert "is due since" in p.stdout and "WAITING" in p.stdout, p.stdout
        assert "cannot start yet" in (netxfw.state / "rollback" / "timer.log").read_text()
    finally:
        os.close(fd)
    assert wait_gone(armed["pid"], 120)
    assert rules(netxfw)["whitelist"] == ["198.51.100.1/32"]
    assert netxfw("rollback-status")["pending"] is None


def test_a_failing_rollback_is_retried_and_says_so(netxfw):
    """The restore itself fails (here: its snapshot is missing): the window stays open and says
    FAILED in rollback-status and status, cannot be confirmed any more, and the timer retries
    until the restore succeeds."""
    netxfw("rule", "add", "whitelist", "198.51.100.1")
    armed = netxfw("rollback-after", "600")
    netxfw("rule", "remove", "whitelist", "198.51.100.1", owner=armed["id"])
    snap = netxfw.state / "rollback" / "snapshot.json"
    aside = netxfw.state / "snapshot.aside"
    os.replace(snap, aside)
    netxfw("rollback-countdown", armed["id"], "1")
    deadline = time.monotonic() + 120
    while "last_error" not in (netxfw("rollback-status")["pending"] or {}) and time.monotonic() < deadline:
        time.sleep(0.2)
    pending = netxfw("rollback-status")["pending"]
    assert "snapshot" in pending["last_error"] and pending["attempts"] >= 1, pending
    alerts = netxfw("status", "--sample", "0")["alerts"]
    assert any("FAILED" in a and armed["id"] in a for a in alerts), alerts
    netxfw("confirm", armed["id"], rc=1)            # too late to keep it: it is being rolled back
    os.replace(aside, snap)
    assert wait_gone(armed["pid"], 120)
    assert rules(netxfw)["whitelist"] == ["198.51.100.1/32"]
    assert netxfw("rollback-status")["pending"] is None and netxfw("status", "--sample", "0")["alerts"] == []
