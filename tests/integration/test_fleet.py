"""The netxfw role on the lab: boot restore after a simulated reboot, and no lockouts.

Fresh 1-host lab -> harden.yml (the role; the agent started without systemd) -> packets ->
simulated reboot of nxh1 (XDP and TC detached, pins removed, agent killed) -> packets show the
firewall gone -> `netxfw restore`, run directly -> the same maps, config, program identity and
attachments as before -> packets again. Then a deliberate lockout: a policy that blocks the
controller's SSH (netxfw_whitelist_controller=false, tcp/22 not opened) is rolled back by the
host on its own, the play fails saying so, and the host is reachable over SSH afterwards.

Run as root:  /opt/netxfw-venv/bin/python -m pytest tests/integration/test_fleet.py
The tests in this file build on each other and run in file order.
"""

import json
import os
import subprocess
import time

import pytest

from ansible_collections.netxfw.firewall.plugins.module_utils import layout

from labkit import CLI, HARDEN, LAB_VARS, NEEDS, WaitingLab, agent_pid, host_state, outcomes, probe, without_generation

N_HOSTS = 1  # the role on one host: many hosts at once are test_harden.py's part
HOST = "nxh1"
ROLLBACK_TIMEOUT = 8

pytestmark = NEEDS


@pytest.fixture(scope="module")
def lab(root_netns):
    with WaitingLab(hosts=N_HOSTS, force=False) as lab:
        yield lab


def run_harden(lab, env, *args):
    t0 = time.monotonic()
    r = lab.ansible_playbook(HARDEN, "-e", "@" + LAB_VARS, *args, timeout=900, env=env)
    return r, time.monotonic() - t0


def whitelisted(pairs):
    """The keys of dumped src map pairs (hex) whose class has the whitelist bit."""
    return [k for k, v in pairs if layout.source_class(bytes.fromhex(v))[0] & layout.SRC_WL]


def assert_same(got, want):
    diff = {k: (got.get(k), want.get(k)) for k in set(got) | set(want) if k != "maps" and got.get(k) != want.get(k)}
    for name in set(got["maps"]) | set(want["maps"]):
        if got["maps"].get(name) != want["maps"].get(name):
            diff["map " + name] = (got["maps"].get(name), want["maps"].get(name))
    assert not diff, json.dumps(diff, indent=1, sort_keys=True)


def test_role_deploys_with_agent(lab, ansible_env):
    r, elapsed = run_harden(lab, ansible_env, "-e", "netxfw_agent_run_without_systemd=true")
    assert r.returncode == 0, r.stdout + r.stderr
    for host in lab.host_names:
        assert agent_pid(lab, host), host
        token = lab.host_exec(host, "stat -c %a /var/lib/netxfw/agent.token", check=True).stdout.strip()
        assert token == "600", (host, token)
        # the agent answers on its port (it needs the token for anything but the health check)
        r = lab.host_exec(host, ["/usr/bin/python3", "-c",
                                 "import urllib.request as u, urllib.error as e\n"
                                 "try: print(u.urlopen('http://127.0.0.1:11811/', timeout=5).status)\n"
                                 "except e.HTTPError as x: print(x.code)"])
        assert r.stdout.strip() in ("200", "401"), (host, r.stdout, r.stderr)
        # /metrics works on a deployed host: the role installs python3-prometheus-client
        token = lab.host_exec(host, "cat /var/lib/netxfw/agent.token", check=True).stdout.strip()
        r = lab.host_exec(host, ["/usr/bin/python3", "-c",
                                 "import urllib.request as u\n"
                                 "r = u.Request('http://127.0.0.1:11811/metrics', headers={'Authorization': 'Bearer %s'})\n"
                                 "x = u.urlopen(r, timeout=10); print(x.status); print(x.read().decode()[:20000])" % token])
        assert r.returncode == 0 and r.stdout.startswith("200") and "netxfw_loaded 1.0" in r.stdout, (r.stdout, r.stderr)
    # the units are installed (systemd is not PID 1 here: nothing enabled)
    for unit in ("netxfw-restore.service", "netxfw-agent.service"):
        with open("/etc/systemd/system/" + unit) as f:
            assert "/usr/local/sbin/netxfw" in f.read()
    print("\nharden.yml (role, %d host(s), first run): %.1fs" % (N_HOSTS, elapsed))


def test_reboot_then_restore_brings_back_the_same_state(lab):
    hosts = lab.host_names
    before = host_state(lab, HOST)
    assert before["loaded"] and whitelisted(before["maps"]["src4_host"]), before
    assert set(before["maps"]) >= {"src4_host", "src6_host", "src4_lpm", "src6_lpm", "rules4", "rules6"}, before
    packets = probe(lab, "nxattacker", hosts, "--udp", "9999", "--tcp", "22")
    assert outcomes(packets, "udp/9999") == {h: "dropped" for h in hosts}, packets

    # simulated reboot: programs detached, pins gone, agent gone (state_dir survives, as on disk)
    pid = agent_pid(lab, HOST)
    os.kill(pid, 9)
    r = lab.host_exec(HOST, "ip link set dev lan0 xdp off; ip link set dev lan0 xdpgeneric off; "
                            "tc qdisc del dev lan0 clsact; rm -rf /sys/fs/bpf/netxfw; true")
    assert r.returncode == 0, r.stderr
    time.sleep(0.5)
    assert agent_pid(lab, HOST) is None
    gone = host_state(lab, HOST)
    assert not gone["loaded"] and gone["pins"] == [] and gone["maps"] == {}, gone
    packets = probe(lab, "nxattacker", [HOST], "--udp", "9999")
    assert packets[HOST]["udp/9999"] != "dropped", packets  # no firewall: the host answers

    # the boot restore, run directly (what netxfw-restore.service runs)
    r = lab.host_exec(HOST, [CLI, "restore"], timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    after = host_state(lab, HOST)
    assert_same(after, before)
    packets = probe(lab, "nxattacker", hosts, "--udp", "9999", "--tcp", "22")
    assert outcomes(packets, "udp/9999") == {h: "dropped" for h in hosts}, packets
    assert outcomes(packets, "tcp/22") == {h: "passed" for h in hosts}, packets
    client = probe(lab, "nxclient", [HOST], "--ping", "--tcp", "22")
    assert client[HOST] == {"ping": "passed", "tcp/22": "passed"}, client


def test_lockout_is_rolled_back(lab, ansible_env):
    before = host_state(lab, HOST)
    lockout = json.dumps({
        "netxfw_whitelist_controller": False,        # the explicit opt-out
        "netxfw_management_cidrs": [],
        "netxfw_service_ports": [{"source": "%s/32" % lab.client["ipv4"], "proto": "tcp", "port": 8080,
                                  "action": "allow"}],
        "netxfw_rollback_timeout": ROLLBACK_TIMEOUT,
        "netxfw_rollback_connect_timeout": 5,
    })
    r, elapsed = run_harden(lab, ansible_env, "--limit", HOST, "-e", lockout)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "ROLLED BACK on %s" % HOST in out, out
    assert "could not reconnect over SSH" in out, out
    print("\nlockout rolled back, play reported it after %.1fs" % elapsed)

    # reachable again over a fresh SSH connection, and exactly the state from before
    r = lab.ssh(HOST, "hostname")
    assert r.returncode == 0 and r.stdout.strip() == HOST, r.stderr
    assert_same(without_generation(host_state(lab, HOST)), without_generation(before))
    status = json.loads(lab.host_exec(HOST, [CLI, "--json", "rollback-status"], check=True).stdout)
    assert status["pending"] is None and status["rolled_back"]["ok"], status

    # the next run reports the earlier rollback once, and applies cleanly
    r, dummy = run_harden(lab, ansible_env, "--limit", HOST)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "was not confirmed and was ROLLED BACK" in r.stdout, r.stdout
    assert_same(without_generation(host_state(lab, HOST)), without_generation(before))


def test_no_timer_left_behind(lab):
    for host in lab.host_names:
        r = lab.host_exec(host, [CLI, "--json", "rollback-status"], check=True)
        assert json.loads(r.stdout)["pending"] is None, (host, r.stdout)
    # the role's CLI only: other test layers run their own timers side by side
    r = subprocess.run(["pgrep", "-f", CLI + ".*rollback-after"], capture_output=True, text=True, check=False)
    assert r.stdout.strip() == "", r.stdout
