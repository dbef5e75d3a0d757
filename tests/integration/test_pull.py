"""ansible-pull mode on the lab (issue 15 item 4): nxh1 applies a policy repository to itself.

The repository is a bare git repository in a temp dir served by `git daemon` on the controller's
lab address (198.51.100.1), so the host fetches it over lan0, through its own firewall. It holds
what the README's "ansible-pull mode" tells users to put there: local.yml (imports
netxfw.firewall.harden), hosts.yml and group_vars/all.yml (the policy), ansible.cfg and the
collection as users install it, under collections/.

1. Bootstrap from the controller: harden.yml with netxfw_pull_repo sets the host up (ansible-core
   in a venv, as the host has no ansible-pull, from wheels in a local directory as the lab reaches
   no PyPI; pull.json; netxfw-pull.service and .timer, checked with systemd-analyze verify).
2. One pull cycle, run as the service runs it (`netxfw pull`, a clean environment; systemd is not
   PID 1 in the lab, so the timer is not what starts it): the repository's rules are live (real
   packets), `netxfw status` and /metrics show the result, the commit is the repository's HEAD.
3. A bad change that the play applies fine but that cuts the host off its repository (the
   server's address blocked): the host's own check fails, the change is rolled back at once,
   and status and /metrics say so.
4. A change the play cannot apply: the part already applied is rolled back, the failed task and
   its error are reported; fixing the repository makes the next pull succeed.

Run as root:  flock /run/netxfw-tests.lock /opt/netxfw-venv/bin/python -m pytest tests/integration/test_pull.py
The tests build on each other and run in file order.
"""

import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest
import yaml

import collection
from labkit import CLI, HARDEN, LAB_VARS, NEEDS, PROBE, WaitingLab, stop

HOST = "nxh1"
# the role installs ansible-core here: the lab hosts have no ansible-pull on PATH (/usr, like
# /usr/lib/netxfw, is the machine's, shared by the lab hosts; the fixture removes it)
ANSIBLE_VENV = "/usr/lib/netxfw/ansible"
ANSIBLE_PULL = ANSIBLE_VENV + "/bin/ansible-pull"
SERVER = "198.51.100.1"  # the controller's lab address (bridge nxlab0)
GIT_PORT = "9418"
URL = "git://%s/policy.git" % SERVER
UNITS = ["netxfw-pull.service", "netxfw-pull.timer"]
# what a systemd unit gets: no ANSIBLE_* or PYTHONPATH of the test process
CLEAN_ENV = "env -i PATH=/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "
POLICY = {
    "netxfw_policy": "deny",
    "netxfw_management_cidrs": ["2001:db8:100::1/128"],
    "netxfw_service_ports": [
        {"source": "any", "proto": "tcp", "port": 22, "action": "allow"},
        {"source": "198.51.100.200/32", "proto": "tcp", "port": 8080, "action": "allow"},
        # not in the lab's harden vars: proves the repository's policy is what got applied
        {"source": "any", "proto": "udp", "port": 9999, "action": "allow"},
    ],
    "netxfw_blocklist": ["203.0.113.0/24"],
    "netxfw_agent_run_without_systemd": True,
    "netxfw_pull_repo": URL,
    "netxfw_pull_inventory": "hosts.yml",
}
LOCAL_YML = "---\n# the host applies harden.yml to itself\n- name: Harden this host\n  ansible.builtin.import_playbook: netxfw.firewall.harden\n"
HOSTS_YML = "all:\n  hosts:\n    %s:\n" % HOST
ANSIBLE_CFG = "[defaults]\ncollections_path = ./collections\ncollections_scan_sys_path = false\n"

pytestmark = NEEDS


@pytest.fixture(scope="module")
def lab(root_netns):
    with WaitingLab(hosts=1, force=False) as lab:
        shutil.rmtree(ANSIBLE_VENV, ignore_errors=True)
        try:
            yield lab
        finally:
            shutil.rmtree(ANSIBLE_VENV, ignore_errors=True)


def git(*args, cwd=None):
    r = subprocess.run(["git", "-c", "user.name=netxfw", "-c", "user.email=dev@netxfw.invalid"] + list(args),
                       cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r.stdout.strip()


class Repo:
    def __init__(self, work):
        self.work = work

    def commit(self, policy, message):
        with open(os.path.join(self.work, "group_vars", "all.yml"), "w", encoding="utf-8") as f:
            yaml.safe_dump(policy, f, sort_keys=True)
        git("add", "-A", cwd=self.work)
        git("commit", "-q", "-m", message, cwd=self.work)
        git("push", "-q", "origin", "main", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)


@pytest.fixture(scope="module")
def repo(lab):
    tmp = tempfile.mkdtemp(prefix="netxfw-pull-")
    daemon = None
    try:
        srv = os.path.join(tmp, "srv")
        os.makedirs(srv)
        git("init", "-q", "--bare", "-b", "main", os.path.join(srv, "policy.git"))
        work = os.path.join(tmp, "work")
        git("init", "-q", "-b", "main", work)
        git("remote", "add", "origin", os.path.join(srv, "policy.git"), cwd=work)
        installed = collection.install_checkout(os.path.join(tmp, "build"))
        shutil.copytree(installed.root, os.path.join(work, "collections", "ansible_collections", "netxfw", "firewall"))
        os.makedirs(os.path.join(work, "group_vars"))
        for name, text in (("local.yml", LOCAL_YML), ("ansible.cfg", ANSIBLE_CFG), ("hosts.yml", HOSTS_YML)):
            with open(os.path.join(work, name), "w", encoding="utf-8") as f:
                f.write(text)
        r = Repo(work)
        r.commit(POLICY, "policy")
        # served on the lab bridge only; bounded in time like every process a test starts
        daemon = subprocess.Popen(["timeout", "1800", "git", "daemon", "--reuseaddr", "--export-all",
                                   "--informative-errors", "--listen=" + SERVER, "--port=" + GIT_PORT,
                                   "--base-path=" + srv, srv],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for dummy in range(100):
            if subprocess.run(["git", "ls-remote", URL], capture_output=True, timeout=30, check=False).returncode == 0:
                break
            time.sleep(0.1)
        else:
            pytest.fail("git daemon did not come up on %s" % URL)
        yield r
    finally:
        if daemon is not None:
            stop(daemon)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def wheels():
    """ansible-core and its dependencies as wheels: the lab hosts reach no PyPI, so the role installs
    from a local directory (netxfw_pull_pip_extra_args), as a fleet without internet uses a mirror."""
    tmp = tempfile.mkdtemp(prefix="netxfw-pull-wheels-")
    try:
        r = subprocess.run(["/opt/netxfw-venv/bin/pip", "download", "-q", "-d", tmp, "ansible-core>=2.15,<2.20"],
                           capture_output=True, text=True, timeout=600, check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def host(lab, cmd, check=True, timeout=300):
    r = lab.host_exec(HOST, cmd, timeout=timeout)
    if check:
        assert r.returncode == 0, (cmd, r.stdout, r.stderr)
    return r


def pull(lab):
    """One cycle, as netxfw-pull.service runs it."""
    r = host(lab, CLEAN_ENV + CLI + " --json pull", check=False, timeout=1200)
    try:
        return r.returncode, json.loads(r.stdout)
    except ValueError:
        pytest.fail("netxfw pull printed no result (exit %d): %s %s" % (r.returncode, r.stdout, r.stderr))


def status(lab):
    return json.loads(host(lab, CLI + " --json status --sample 0").stdout)


def status_text(lab):
    return host(lab, CLI + " status --sample 0").stdout


def metrics(lab):
    token = host(lab, "cat /var/lib/netxfw/agent.token").stdout.strip()
    r = host(lab, ["/usr/bin/python3", "-c",
                   "import urllib.request as u\n"
                   "r = u.Request('http://127.0.0.1:11811/metrics', headers={'Authorization': 'Bearer %s'})\n"
                   "print(u.urlopen(r, timeout=10).read().decode())" % token])
    values = {}
    for line in r.stdout.splitlines():
        if line.startswith("netxfw_pull_"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def rules(lab, kind):
    items = json.loads(host(lab, CLI + " --json rule list " + kind).stdout)["items"]
    return sorted(e["cidr"] for e in items) if kind != "port" else items


def probe(lab, src, *args):
    r = lab.run_in(src, ["/usr/bin/python3", PROBE, "--json", "--timeout", "2",
                         "--target", "%s=%s" % (HOST, lab.host(HOST)["ipv4"])] + list(args), timeout=90)
    assert r.returncode == 0, r.stderr
    return dict((e["probe"], e["outcome"]) for e in json.loads(r.stdout))


def test_bootstrap_from_the_controller(lab, ansible_env, repo, wheels):
    r = lab.ansible_playbook(HARDEN, "-e", "@" + LAB_VARS, "-e", "netxfw_agent_run_without_systemd=true",
                             "-e", "netxfw_pull_repo=" + URL, "-e", "netxfw_pull_inventory=hosts.yml",
                             "-e", "netxfw_pull_pip_extra_args='--no-index --find-links %s'" % wheels,
                             timeout=900, env=ansible_env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "CONFIRMED on %s" % HOST in r.stdout, r.stdout
    settings = json.loads(host(lab, "cat /var/lib/netxfw/pull.json").stdout)
    assert settings["repo"] == URL and settings["ansible_pull"] == ANSIBLE_PULL, settings
    assert settings["cli"] == ["/usr/bin/python3", CLI], settings
    # no ansible-pull on the host: the role installed ansible-core into a venv (from the wheels)
    assert "Install ansible-core from PyPI" in r.stdout, r.stdout
    version = host(lab, [ANSIBLE_PULL, "--version"]).stdout
    assert version.startswith("ansible-pull [core 2."), version
    # the units are installed (systemd is not PID 1 here: none is enabled) and valid
    paths = ["/etc/systemd/system/" + u for u in UNITS]
    v = subprocess.run(["systemd-analyze", "verify", "--man=no"] + paths, capture_output=True, text=True,
                       timeout=120, check=False)
    assert v.returncode == 0, v.stdout + v.stderr
    # no pull has run yet: status says nothing about one, /metrics has no netxfw_pull_*
    assert status(lab)["pull"] is None
    assert metrics(lab) == {}
    # the lab's own vars do not open udp/9999
    assert probe(lab, "nxattacker", "--udp", "9999")["udp/9999"] == "dropped"


def test_one_pull_cycle_applies_the_repository(lab, repo):
    head = git("rev-parse", "HEAD", cwd=repo.work)
    rc, res = pull(lab)
    assert rc == 0 and res["success"], res
    assert res["commit"] == head and res["stage"] == "confirm", res
    assert res["rollback"]["outcome"] == "confirmed" and res["rollback"]["id"], res
    assert [(c["check"], c["ok"]) for c in res["checks"]] == [
        ("data plane loaded and attached", True), ("management access to tcp/22", True),
        ("policy repository reachable", True)], res["checks"]
    assert res["changed"] > 0, res  # the port rules and the whitelist differ from the bootstrap's
    # the repository's rules, with real packets
    got = probe(lab, "nxattacker", "--udp", "9999", "--tcp", "8080", "--tcp", "22")
    assert got == {"udp/9999": "passed-refused", "tcp/8080": "dropped", "tcp/22": "passed"}, got
    assert probe(lab, "nxclient", "--tcp", "8080")["tcp/8080"] == "passed-refused"
    # no controller address in pull mode: the whitelist is the repository's management CIDRs only
    assert rules(lab, "whitelist") == ["2001:db8:100::1/128"]
    st = status(lab)
    assert st["pull"]["success"] and st["pull"]["commit"] == head and st["rollback"]["pending"] is None, st["pull"]
    assert not [a for a in st["alerts"] if "PULL" in a], st["alerts"]
    assert "last pull: ok" in status_text(lab)
    m = metrics(lab)
    assert m["netxfw_pull_last_success"] == 1.0, m
    assert m["netxfw_pull_last_rolled_back"] == 0.0, m
    assert m["netxfw_pull_last_run_timestamp_seconds"] == pytest.approx(res["finished"], abs=1e-3), m
    assert m["netxfw_pull_last_duration_seconds"] == pytest.approx(res["duration"], abs=1e-3), m
    assert m['netxfw_pull_last_run_info{commit="%s",outcome="confirmed",stage="confirm"}' % head] == 1.0, m
    # a second cycle with nothing new: confirmed again
    rc, again = pull(lab)
    assert rc == 0 and again["success"] and again["commit"] == head, again


def test_a_change_that_cuts_the_repository_off_is_rolled_back(lab, repo):
    before = status(lab)["pull"]
    bad = repo.commit(dict(POLICY, netxfw_blocklist=["203.0.113.0/24", SERVER + "/32"]),
                      "block the repository server (a mistake)")
    rc, res = pull(lab)
    assert rc == 1 and not res["success"], res
    # the play itself succeeded: the host's own check refused the change
    assert res["commit"] == bad and res["stage"] == "check" and res["rc"] == 0, res
    failed = [c for c in res["checks"] if not c["ok"]]
    assert [c["check"] for c in failed] == ["policy repository reachable"], res["checks"]
    assert res["rollback"]["outcome"] == "rolled_back", res
    # rolled back: the blocklist is the confirmed one, the repository answers the host again
    assert rules(lab, "blacklist") == ["203.0.113.0/24"]
    host(lab, "git ls-remote --exit-code %s main" % URL, timeout=60)
    assert probe(lab, "nxattacker", "--udp", "9999")["udp/9999"] == "passed-refused"
    st = status(lab)
    assert st["pull"]["last_success"] == before["last_success"], st["pull"]
    assert any(a.startswith("LAST PULL FAILED") and "ROLLED BACK" in a for a in st["alerts"]), st["alerts"]
    assert "!! LAST PULL FAILED" in status_text(lab)
    m = metrics(lab)
    assert m["netxfw_pull_last_success"] == 0.0 and m["netxfw_pull_last_rolled_back"] == 1.0, m
    assert m["netxfw_pull_last_success_timestamp_seconds"] == pytest.approx(before["last_success"], abs=1e-3), m


def test_a_play_that_fails_is_rolled_back_and_names_the_task(lab, repo):
    whitelist = rules(lab, "whitelist")
    # the whitelist task changes the host first, then the blocklist task fails on a bad entry
    bad = repo.commit(dict(POLICY, netxfw_management_cidrs=["2001:db8:100::1/128", "198.51.100.200/32"],
                           netxfw_blocklist=["203.0.113.0/24", "not-an-address"]), "a typo")
    rc, res = pull(lab)
    assert rc == 1 and not res["success"] and res["commit"] == bad, res
    assert res["stage"] == "play" and res["rc"] != 0, res
    assert res["failed_task"] and "not-an-address" in res["error"], res
    assert res["rollback"]["outcome"] == "rolled_back", res
    assert rules(lab, "whitelist") == whitelist
    assert rules(lab, "blacklist") == ["203.0.113.0/24"]
    assert metrics(lab)["netxfw_pull_last_success"] == 0.0
    # the fix, pushed: the next cycle succeeds and the alert is gone
    fixed = repo.commit(POLICY, "fix the typo")
    rc, res = pull(lab)
    assert rc == 0 and res["success"] and res["commit"] == fixed, res
    assert not [a for a in status(lab)["alerts"] if "PULL" in a]
