"""ansible-pull mode's runner (agent/netxfw_agent/pull.py): `netxfw pull` with the real ansible-pull
against a local git repository, on a state dir with no data plane loaded (the lab test,
tests/integration/test_pull.py, covers the data plane, packets, status and /metrics on a host).
Here: the window the runner opens covers what the play changed, a failed play and a failed self-check
are both rolled back at once and reported, a reboot in the middle of a pull brings back the confirmed
state, the --loop fallback runs cycle after cycle, and the result file says what happened."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = os.path.join(REPO, "agent", "bin", "netxfw")
ANSIBLE_PULL = "/opt/netxfw-venv/bin/ansible-pull"
sys.path.insert(0, os.path.join(REPO, "agent"))
from netxfw_agent import devpath  # noqa: E402  pylint: disable=wrong-import-position

devpath.install(REPO)
from netxfw_agent import pull  # noqa: E402  pylint: disable=wrong-import-position

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the engine's rule writes need root"),
    pytest.mark.skipif(not os.path.exists(ANSIBLE_PULL), reason="needs the controller venv (scripts/install-deps)"),
]

# a play that changes the whitelist through the CLI (as the role's modules change the rules),
# then fails or not
PLAY = """---
- name: Change this host
  hosts: all
  gather_facts: false
  tasks:
    - name: Whitelist an address
      ansible.builtin.command: {cli} --pin-path {pins} --state-dir {state} rule add whitelist 198.51.100.7
    - name: Then fail
      ansible.builtin.fail:
        msg: "the policy has a typo"
      when: {fail}
    - name: Or hang (until the host goes down)
      ansible.builtin.wait_for:
        path: {state}/never
        timeout: 600
      when: {hang}
"""


def git(*args, cwd=None):
    p = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@netxfw.invalid"] + list(args), cwd=cwd,
                       capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0, (args, p.stderr)
    return p.stdout.strip()


@pytest.fixture
def host(tmp_path):
    state, pins, work = tmp_path / "state", tmp_path / "pins", tmp_path / "work"
    git("init", "-q", "-b", "main", str(work))
    state.mkdir(mode=0o700)

    def commit(fail, hang=False):
        (work / "local.yml").write_text(PLAY.format(cli=CLI, pins=pins, state=state, fail=fail, hang=hang))
        git("add", "-A", cwd=work)
        git("commit", "-q", "--allow-empty", "-m", "fail=%s" % fail, cwd=work)
        return git("rev-parse", "HEAD", cwd=work)

    def run():
        env = dict(os.environ)
        env.pop("NETXFW_ROLLBACK_ID", None)
        p = subprocess.run(["/usr/bin/python3", CLI, "--pin-path", str(pins), "--state-dir", str(state), "--json",
                            "pull"], capture_output=True, text=True, timeout=600, check=False, env=env)
        return p.returncode, json.loads(p.stdout)

    def whitelist():
        path = state / "rules.json"
        entries = json.loads(path.read_text())["whitelist"] if path.exists() else []
        return [e["cidr"] if isinstance(e, dict) else e for e in entries]

    (state / "pull.json").write_text(json.dumps({
        "repo": "file://%s" % work, "ansible_pull": ANSIBLE_PULL, "timeout": 300, "ssh_port": 0,
        "cli": ["/usr/bin/python3", CLI]}))
    host.commit, host.run, host.whitelist, host.state = commit, run, whitelist, state
    host.kill_all = lambda: kill_all(tmp_path)
    yield host
    kill_all(tmp_path)


def kill_all(tmp_path):
    """Every process of this test (runner, ansible-pull, rollback timer): SIGKILL, as a power cut."""
    for proc in os.listdir("/proc"):
        if proc.isdigit() and int(proc) != os.getpid():
            try:
                with open("/proc/%s/cmdline" % proc, "rb") as f:
                    if str(tmp_path).encode() in f.read():
                        os.kill(int(proc), signal.SIGKILL)
            except (OSError, ProcessLookupError):
                pass


def test_a_failed_play_is_rolled_back_and_named(host):
    head = host.commit(fail=True)
    rc, res = host.run()
    assert rc == 1 and not res["success"], res
    assert res["stage"] == "play" and res["commit"] == head and res["rc"] == 2, res
    assert res["failed_task"] == "Then fail" and res["error"] == "the policy has a typo", res
    # the whitelist entry the play added belonged to the runner's window: it is gone
    assert res["rollback"]["outcome"] == "rolled_back" and host.whitelist() == [], res
    assert res["last_success"] is None
    assert json.loads((host.state / "pull" / "last.json").read_text()) == res
    assert "Then fail" in (host.state / "pull" / "last.log").read_text()


def test_a_failed_self_check_rolls_back_a_successful_play(host):
    host.commit(fail=False)
    rc, res = host.run()
    # the play worked, but no data plane is loaded here: the host does not confirm
    assert rc == 1 and res["rc"] == 0 and res["stage"] == "check", res
    assert res["changed"] == 1, res
    checks = dict((c["check"], c["ok"]) for c in res["checks"])
    assert checks == {"data plane loaded and attached": False, "policy repository reachable": True}, res
    assert res["rollback"]["outcome"] == "rolled_back" and host.whitelist() == [], res
    # no window left open
    assert not (host.state / "rollback" / "pending").exists()


def test_a_failed_fetch_changes_nothing_and_says_so(host):
    settings = host.state / "pull.json"
    settings.write_text(json.dumps(dict(json.loads(settings.read_text()), repo="file:///nonexistent/policy.git")))
    rc, res = host.run()
    assert rc == 1 and res["stage"] == "checkout" and res["commit"] is None and res["rc"] != 0, res
    assert "nonexistent" in res["error"], res
    assert res["rollback"]["outcome"] == "rolled_back" and res["rollback"]["actions"] == [], res
    assert not (host.state / "rollback" / "pending").exists()


def test_a_reboot_in_the_middle_of_a_pull_brings_back_the_confirmed_state(host):
    host.commit(fail=False, hang=True)
    env = dict(os.environ)
    env.pop("NETXFW_ROLLBACK_ID", None)
    runner = subprocess.Popen(["/usr/bin/python3", CLI, "--pin-path", str(host.state.parent / "pins"), "--state-dir",
                               str(host.state), "pull"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not host.whitelist() and time.monotonic() < deadline and runner.poll() is None:
            time.sleep(0.2)
        assert host.whitelist(), "the play did not get to its change"
        pending = json.loads((host.state / "rollback" / "pending").read_text())
        assert pending["owner"].startswith("ansible-pull "), pending
    finally:
        host.kill_all()  # the host goes down: runner, ansible-pull and the window's timer with it
        runner.wait(timeout=30)
    # the boot restore rolls back the change whose timer is gone
    p = subprocess.run(["/usr/bin/python3", CLI, "--pin-path", str(host.state.parent / "pins"), "--state-dir",
                        str(host.state), "--json", "restore"], capture_output=True, text=True, timeout=120, check=False,
                       env=env)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["rolled_back"]["id"] == pending["id"], p.stdout
    assert host.whitelist() == [] and not (host.state / "rollback" / "pending").exists()


def test_the_loop_runs_cycle_after_cycle(host):
    """Without systemd: `netxfw pull --loop` (what netxfw_pull_run_without_systemd starts)."""
    host.commit(fail=True)
    settings = host.state / "pull.json"
    settings.write_text(json.dumps(dict(json.loads(settings.read_text()), interval=0, splay=0)))
    env = dict(os.environ)
    env.pop("NETXFW_ROLLBACK_ID", None)
    loop = subprocess.Popen(["/usr/bin/python3", CLI, "--pin-path", str(host.state.parent / "pins"), "--state-dir",
                             str(host.state), "pull", "--loop"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    seen = set()
    try:
        deadline = time.monotonic() + 300
        while len(seen) < 2 and time.monotonic() < deadline and loop.poll() is None:
            try:
                seen.add(json.loads((host.state / "pull" / "last.json").read_text())["started"])
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        assert (host.state / "pull" / "loop.pid").read_text().strip() == str(loop.pid)
    finally:
        os.killpg(loop.pid, signal.SIGKILL)
        loop.wait(timeout=30)
    assert len(seen) == 2, "the loop ran %d cycle(s)" % len(seen)


def test_settings_are_checked(tmp_path):
    class Store:
        state_dir = str(tmp_path)

    class Fw:
        store = Store()
    with pytest.raises(pull.NetxfwError, match="netxfw_pull_repo"):
        pull.load_config(Fw())
    (tmp_path / "pull.json").write_text(json.dumps({"repo": "x", "interval_s": 5}))
    with pytest.raises(pull.NetxfwError, match="interval_s"):
        pull.load_config(Fw())
    (tmp_path / "pull.json").write_text(json.dumps({"repo": "x"}))
    cfg = pull.load_config(Fw())
    assert cfg["branch"] == "main" and cfg["checkout_dir"] == str(tmp_path / "pull" / "checkout")


OUTPUT = """Starting Ansible Pull at 2026-12-03 10:30:00
nxh1 | CHANGED => {"after": "ee0f", "before": null, "changed": true}

PLAY [Harden hosts with the netxfw XDP firewall] *******************************

TASK [netxfw.firewall.netxfw : Whitelist the controller and the management CIDRs] ***
changed: [nxh1]

TASK [netxfw.firewall.netxfw : Probe something optional] ***********************
fatal: [nxh1]: FAILED! => {"changed": false, "msg": "optional"}
...ignoring

TASK [netxfw.firewall.netxfw : Block the declared list] ************************
fatal: [nxh1]: FAILED! => {"changed": false, "msg": "invalid CIDR 'not-an-address'"}

PLAY RECAP *********************************************************************
nxh1                       : ok=12   changed=1    unreachable=0    failed=1    skipped=3    rescued=0    ignored=1
"""


def test_output_parsing():
    out = pull.parse_output(OUTPUT, "nxh1")
    assert out == {"recap": {"ok": 12, "changed": 1, "unreachable": 0, "failed": 1}, "played": True,
                   "failed_task": "netxfw.firewall.netxfw : Block the declared list",
                   "failed_msg": "invalid CIDR 'not-an-address'"}
    checkout_only = pull.parse_output('nxh1 | FAILED! => {"msg": "Failed to init/update submodules"}\n', "nxh1")
    assert checkout_only == {"recap": None, "played": False, "failed_task": None, "failed_msg": None}
