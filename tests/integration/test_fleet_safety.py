"""Fleet safety on the lab: every uplink covered, and confirm-or-rollback through reboots, races and
failed plays (issue 13). One host, nxh1, with two uplinks: lan0 carries the IPv4 default route,
wan1 (--second-uplink) the IPv6 one.

1. harden.yml attaches to both uplinks by default; the attacker is dropped on both.
2. A reboot inside a rollback window (timer killed, programs detached, bpffs emptied): `netxfw
   restore` brings back the last confirmed state, not the unconfirmed change.
3. Two plays at once on one host: each opens its own window in turn, and each reports what
   happened to its own change (both confirmed; nothing rolled back).
4. An API change during a play that fails: the play's change is rolled back at once, the API's
   change is kept, and the play says both.
5. A boot without kernel headers: `netxfw restore` fails loudly (stderr, `netxfw status`), and
   the next restore with headers clears the alert.

Run as root:  /opt/netxfw-venv/bin/python -m pytest tests/integration/test_fleet_safety.py
The tests build on each other and run in file order.
"""

import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from labkit import ANSIBLE_BIN, CLI, HARDEN, LAB_VARS, NEEDS, PROBE, WaitingLab, agent_pid, host_state, without_generation

HOST = "nxh1"
UPLINKS = ["lan0", "wan1"]
AGENT_ON = ("-e", "netxfw_agent_run_without_systemd=true")

pytestmark = NEEDS


@pytest.fixture(scope="module")
def lab(root_netns):
    with WaitingLab(hosts=1, force=False, second_uplink=True) as lab:
        yield lab


def harden(lab, env, *args, check=True):
    t0 = time.monotonic()
    r = lab.ansible_playbook(HARDEN, "-e", "@" + LAB_VARS, *AGENT_ON, *args, timeout=900, env=env)
    out = r.stdout + r.stderr
    if check:
        assert r.returncode == 0, out
    return r, out, time.monotonic() - t0


def cli(lab, *args, check=True, env=""):
    r = lab.host_exec(HOST, "%s%s --json %s" % (env, CLI, " ".join(args)), timeout=300)
    if check:
        assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r


def status(lab):
    return json.loads(cli(lab, "status", "--sample", "0").stdout)


def probe(lab, src, addr, *args):
    r = lab.run_in(src, ["/usr/bin/python3", PROBE, "--json", "--timeout", "2",
                         "--target", "%s=%s" % (HOST, addr)] + list(args), timeout=90)
    assert r.returncode == 0, r.stderr
    return dict((e["probe"], e["outcome"]) for e in json.loads(r.stdout))


def simulate_reboot(lab):
    """What a reboot does to the firewall: programs detached, bpffs empty, the agent and any
    rollback timer gone. state_dir survives, as it does on disk."""
    for pid in (agent_pid(lab, HOST), timer_pid(lab)):
        if pid:
            os.kill(pid, 9)
    cmds = ["ip link set dev %s xdp off; ip link set dev %s xdpgeneric off; tc qdisc del dev %s clsact" % (i, i, i)
            for i in UPLINKS]
    r = lab.host_exec(HOST, "; ".join(cmds) + "; rm -rf /sys/fs/bpf/netxfw; true")
    assert r.returncode == 0, r.stderr
    gone = status(lab)
    assert not gone["loaded"], gone


def timer_pid(lab):
    pending = json.loads(cli(lab, "rollback-status").stdout)["pending"]
    return pending["pid"] if pending and pending["timer_alive"] else None


def blacklist(lab):
    r = cli(lab, "rule", "list", "blacklist")
    return sorted(e["cidr"] for e in json.loads(r.stdout)["items"])


def test_every_uplink_is_covered(lab, ansible_env):
    wan1 = lab.host(HOST)["uplink2_ipv6"]
    # before: the IPv6-only uplink answers
    assert probe(lab, "nxattacker", wan1, "--udp", "9999")["udp/9999"] == "passed-refused"
    out, elapsed = harden(lab, ansible_env)[1:]
    assert "CONFIRMED on %s" % HOST in out, out
    st = status(lab)
    assert sorted(st["config"]["interfaces"]) == UPLINKS, st["config"]
    for name in UPLINKS:
        assert st["interfaces"][name]["xdp"] and st["interfaces"][name]["tc"], st["interfaces"]
    assert probe(lab, "nxattacker", wan1, "--udp", "9999")["udp/9999"] == "dropped"
    assert probe(lab, "nxattacker", lab.host(HOST)["ipv4"], "--udp", "9999")["udp/9999"] == "dropped"
    # sshd listens on lan0's addresses only: a RST from wan1 means the packet got through
    assert probe(lab, "nxattacker", wan1, "--tcp", "22")["tcp/22"] == "passed-refused"
    print("\nharden.yml, 1 host with two uplinks: %.1fs" % elapsed)


def test_reboot_inside_the_window_restores_the_last_confirmed_state(lab):
    confirmed = without_generation(host_state(lab, HOST))
    attacker = lab.attacker["ipv4"]
    assert probe(lab, "nxattacker", lab.host(HOST)["ipv4"], "--tcp", "22")["tcp/22"] == "passed"
    armed = json.loads(cli(lab, "rollback-after", "600", "--owner", "test-reboot").stdout)
    # the unconfirmed change: the attacker blocked, tcp/22 closed
    mine = "NETXFW_ROLLBACK_ID=%s " % armed["id"]
    cli(lab, "rule", "add", "blacklist", attacker, env=mine)
    cli(lab, "rule", "remove", "port", "tcp:22", env=mine)
    assert probe(lab, "nxattacker", lab.host(HOST)["ipv4"], "--tcp", "22")["tcp/22"] == "dropped"

    simulate_reboot(lab)
    r = cli(lab, "restore")
    restored = json.loads(r.stdout)
    assert restored["rolled_back"]["id"] == armed["id"] and restored["rolled_back"]["ok"], restored
    assert without_generation(host_state(lab, HOST)) == confirmed
    assert probe(lab, "nxattacker", lab.host(HOST)["ipv4"], "--tcp", "22", "--udp", "9999") == \
        {"tcp/22": "passed", "udp/9999": "dropped"}
    # the window's own id says what happened to it; the next window snapshots the confirmed state
    out = cli(lab, "confirm", armed["id"], check=False)
    assert out.returncode == 3 and json.loads(out.stdout)["rolled_back"]["id"] == armed["id"], out.stdout
    nxt = json.loads(cli(lab, "rollback-after", "600").stdout)
    snap = json.loads(lab.host_exec(HOST, "cat /var/lib/netxfw/rollback/snapshot.json", check=True).stdout)
    assert attacker + "/32" not in [e["cidr"] for e in snap["rules"]["blacklist"]], snap
    cli(lab, "confirm", nxt["id"])


def test_two_plays_at_once_each_report_their_own_change(lab, ansible_env):
    # a window held open by hand makes both plays wait at `rollback-after`, so that they do meet
    held = json.loads(cli(lab, "rollback-after", "600", "--owner", "test-holder").stdout)
    plays = {}
    for n in (1, 2):
        extra = json.dumps({"netxfw_blocklist": ["203.0.113.0/24", "2001:db8:bad::/48", "2001:db8:c0de::%d/128" % n]})
        plays[n] = subprocess.Popen(
            [os.path.join(ANSIBLE_BIN, "ansible-playbook"), "-i", lab.inventory, HARDEN,
             "-e", "@" + LAB_VARS, *AGENT_ON, "-e", extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=dict(os.environ, ANSIBLE_HOST_KEY_CHECKING="False", **ansible_env))
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            waiting = lab.host_exec(HOST, ["pgrep", "-fc", "rollback-after.*--wai[t]"]).stdout.strip()
            if waiting == "2":
                break
            assert all(p.poll() is None for p in plays.values()), {n: p.poll() for n, p in plays.items()}
            time.sleep(0.5)
        assert waiting == "2", "both plays should be waiting for the open window"
        cli(lab, "confirm", held["id"])
        outs = {n: p.communicate(timeout=600)[0] for n, p in plays.items()}
    finally:
        for p in plays.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    ids = {}
    for n, p in plays.items():
        assert p.returncode == 0, outs[n]
        assert "ROLLED BACK" not in outs[n], outs[n]
        line = [ln for ln in outs[n].splitlines() if "CONFIRMED on %s" % HOST in ln]
        assert line, outs[n]
        ids[n] = line[0].split("change ")[1].split()[0]
        assert held["id"] in outs[n], outs[n]          # it says whose window it waited for
    assert ids[1] != ids[2]
    for n in (1, 2):
        outcome = json.loads(cli(lab, "confirm", ids[n]).stdout)
        assert outcome["confirmed"] is True and outcome["id"] == ids[n], outcome
    st = json.loads(cli(lab, "rollback-status").stdout)
    assert st["pending"] is None and st["rolled_back"] is None, st
    # the later window's play is the state now, and nothing of the two was rolled back
    later = 1 if ids[2] in outs[1] else 2
    assert "2001:db8:c0de::%d/128" % later in blacklist(lab)


def test_api_change_during_a_failing_play_is_kept(lab, ansible_env):
    before = blacklist(lab)
    token = lab.host_exec(HOST, "cat /var/lib/netxfw/agent.token", check=True).stdout.strip()
    emergency = "198.51.100.77"
    # as soon as the play's window is open, block an address through the API
    api = ("import json, urllib.request as u\n"
           "r = u.Request('http://127.0.0.1:11811/api/v1/rules', method='POST', "
           "data=json.dumps({'kind': 'blacklist', 'cidr': '%s'}).encode(), "
           "headers={'Authorization': 'Bearer %s', 'Content-Type': 'application/json'})\n"
           "print(u.urlopen(r, timeout=120).status)\n" % (emergency, token))
    # the play's module pauses once its window is open (NETXFW_TEST_APPLY_PAUSE, test only) until the
    # API change is made: the change falls inside the window whatever the timing
    pause = "/var/lib/netxfw/.apply-pause"
    wrapper = os.path.join(tempfile.mkdtemp(prefix="netxfw-pause-"), "python3")
    helper = subprocess.Popen(
        ["nsenter", "--net=/run/netns/%s" % HOST, "--mount=/proc/%d/ns/mnt" % lab.host(HOST)["sshd_pid"], "--",
         "sh", "-c", "for i in $(seq 6000); do [ -e %s ] && break; sleep 0.05; done; "
                     "/usr/bin/python3 -c \"$0\"; rc=$?; rm -f %s; exit $rc" % (pause, pause), api],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # the play's own change: a new whitelist entry (the first list applied), then a blocklist entry the
        # engine rejects as it applies the blacklist (a mistake in the port rules, the rate-limit rules or the
        # program is found before the window opens, and nothing is applied)
        bad = json.dumps({"netxfw_management_cidrs": ["2001:db8:c0de::/48"],
                          "netxfw_blocklist": ["203.0.113.0/24", "2001:db8:bad::/48", "2001:db8:c0de::200/129"]})
        # the modules run under a wrapper that sets the pause (/tmp is shared with the lab's hosts)
        with open(wrapper, "w", encoding="utf-8") as f:
            f.write("#!/bin/sh\nNETXFW_TEST_APPLY_PAUSE=%s exec /usr/bin/python3 \"$@\"\n" % pause)
        os.chmod(wrapper, 0o755)
        r, out = harden(lab, ansible_env, "-e", bad, "-e", "ansible_python_interpreter=" + wrapper, check=False)[:2]
        api_out, api_err = helper.communicate(timeout=60)  # done before the module went on, if it paused
    finally:
        if helper.poll() is None:
            helper.kill()
            helper.wait()
        shutil.rmtree(os.path.dirname(wrapper), ignore_errors=True)
    assert r.returncode != 0, out
    assert helper.returncode == 0 and api_out.strip() == "201", (api_out, api_err)  # created
    assert "the apply FAILED on %s" % HOST in out and "ROLLED BACK at once" in out, out
    assert "changes made by others meanwhile were kept (blacklist: +1 -0)" in out, out
    now = blacklist(lab)
    assert sorted(now) == sorted(before + [emergency + "/32"]), now
    whitelist = json.loads(lab.host_exec(HOST, "cat /var/lib/netxfw/rules.json", check=True).stdout)["whitelist"]
    assert "2001:db8:c0de::/48" not in whitelist, whitelist  # the play's own change, rolled back
    st = json.loads(cli(lab, "rollback-status").stdout)
    assert st["pending"] is None, st
    cli(lab, "rule", "remove", "blacklist", emergency)


def test_a_boot_without_kernel_headers_says_so(lab):
    release = os.uname().release
    simulate_reboot(lab)
    hide = "mount -t tmpfs -o size=1m netxfw-test-no-headers /lib/modules/%s" % release
    r = lab.host_exec(HOST, hide)
    assert r.returncode == 0, r.stderr
    try:
        r = cli(lab, "restore", check=False)
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert "restore FAILED" in r.stderr and "NO netxfw firewall" in r.stderr, r.stderr
        assert "kernel headers" in r.stderr, r.stderr
        st = status(lab)
        assert not st["loaded"] and any("BOOT RESTORE FAILED" in a for a in st["alerts"]), st["alerts"]
        text = lab.host_exec(HOST, [CLI, "status", "--sample", "0"]).stdout
        assert text.startswith("!! BOOT RESTORE FAILED"), text
    finally:
        lab.host_exec(HOST, "umount /lib/modules/%s" % release)
    r = cli(lab, "restore")
    st = status(lab)
    assert st["loaded"] and st["alerts"] == [] and st["restore_failed"] is None, st
    assert probe(lab, "nxattacker", lab.host(HOST)["uplink2_ipv6"], "--udp", "9999")["udp/9999"] == "dropped"
