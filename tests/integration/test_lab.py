"""The lab itself: N hosts as namespaces, reachable over SSH like real hosts.

Run as root:  /opt/netxfw-venv/bin/python -m pytest tests/integration/test_lab.py
"""

import os
import subprocess
import time
import uuid

import pytest

from lab import Lab, REPO

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

N_HOSTS = 3


def _lab_netns():
    out = subprocess.run(["ip", "netns", "list"], capture_output=True,
                         text=True, check=False).stdout
    names = [l.split()[0] for l in out.splitlines() if l.strip()]
    return [n for n in names
            if n in ("nxclient", "nxattacker")
            or (n.startswith("nxh") and n[3:].isdigit())]


def _lab_links():
    return [l for l in os.listdir("/sys/class/net")
            if l in ("nxlab0", "nxlab1") or l.startswith("nxv-")]


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _live_pids_mentioning(text):
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                cl = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cl and _alive(int(d)):
            pids.append((int(d), cl))
    return pids


def _mounts():
    with open("/proc/self/mountinfo") as f:
        return [l.split()[4] for l in f]


# Runs first (file order), before the module-scoped lab below exists: it
# builds and tears down its own lab and proves `down` leaves nothing behind,
# even with live ssh sessions, an ssh ControlPersist master on the
# controller and background processes in the client namespace.
def test_down_leaves_nothing_behind(tmp_path):
    state = "/var/lib/netxfw-lab-t%s" % uuid.uuid4().hex[:6]
    lab = Lab(hosts=2, state_dir=state, keep=False)
    lab.up()
    lab_netns = tuple("/run/netns/" + name for name in lab.host_names + ["nxclient", "nxattacker"])
    try:
        ns_pids = {}
        for ns in lab.host_names + ["nxclient", "nxattacker"]:
            assert os.path.exists("/run/netns/%s" % ns)
        cp = os.path.join(state, "cp-%C")
        master = subprocess.run(
            lab.ssh_argv("nxh1")[:-1] + [
                "-o", "ControlMaster=auto", "-o", "ControlPersist=600",
                "-o", "ControlPath=%s" % cp, lab.ssh_argv("nxh1")[-1], "true"],
            capture_output=True, text=True, timeout=30, check=False)
        assert master.returncode == 0, master.stderr
        session = subprocess.Popen(lab.ssh_argv("nxh2") + ["sleep 600"],
                                   stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        bg = lab.popen_in("nxclient", ["sleep", "600"])
        for dummy in range(100):
            ns_pids = {ns: subprocess.run(["ip", "netns", "pids", ns],
                                          capture_output=True,
                                          text=True, check=False).stdout.split()
                       for ns in ("nxh2", "nxclient")}
            if len(ns_pids["nxh2"]) >= 2 and ns_pids["nxclient"]:
                break
            time.sleep(0.05)
        assert len(ns_pids["nxh2"]) >= 2, "ssh session not in nxh2"
        in_lab = {int(p) for v in ns_pids.values() for p in v}
        sshd_pids = [h["sshd_pid"] for h in lab.hosts]
        assert _live_pids_mentioning(state + "/cp-"), "no ControlPersist master"
    finally:
        lab.down()

    session.wait(timeout=10)
    bg.wait(timeout=10)
    assert _lab_netns() == []
    assert _lab_links() == []
    assert not os.path.exists(state)
    assert [m for m in _mounts() if m.startswith(state) or m.startswith(lab_netns)] == []
    assert [p for p in sshd_pids + sorted(in_lab) if _alive(p)] == []
    assert _live_pids_mentioning(state) == []
    # down is idempotent: a second one on nothing succeeds
    assert lab.down().returncode == 0


@pytest.fixture(scope="module")
def lab():
    with Lab(hosts=N_HOSTS) as lab:
        yield lab


def test_layout(lab):
    assert lab.host_names == ["nxh%d" % k for k in range(1, N_HOSTS + 1)]
    assert sorted(_lab_netns()) == sorted(lab.host_names +
                                          ["nxclient", "nxattacker"])
    for k, h in enumerate(lab.hosts, 1):
        assert h["ipv4"] == "198.51.100.%d" % (10 + k)
        assert h["ipv6"] == "2001:db8:100::%d" % (10 + k)
    inv = open(lab.inventory).read()
    assert "[netxfw_lab]" in inv
    assert "netxfw_lab_controller_ipv4=198.51.100.1" in inv
    assert "netxfw_lab_client_ipv4=198.51.100.200" in inv
    assert "netxfw_lab_attacker_ipv6=2001:db8:100::fa" in inv
    # the uplink is untouched and not on the lab bridge
    assert not os.path.exists("/sys/class/net/eth0/master")
    assert not lab.state_dir.startswith(REPO)
    st = lab.cli("status")
    assert st.returncode == 0 and "ready" in st.stdout


@pytest.mark.parametrize("family", [4, 6])
def test_ssh_every_host(lab, family):
    for name in lab.host_names:
        r = lab.ssh(name, "hostname; cat /proc/self/mountinfo", family=family)
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines()[0] == name


def test_ansible_ping(lab):
    r = lab.ansible("netxfw_lab", "-m", "ping", "-o")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("SUCCESS") == N_HOSTS, r.stdout


def test_private_bpffs(lab):
    probe = "probe-%s" % uuid.uuid4().hex[:8]
    first, others = lab.host_names[0], lab.host_names[1:]
    for name in lab.host_names:
        r = lab.host_exec(name, "stat -f -c %T /sys/fs/bpf")
        assert r.stdout.strip() == "bpf_fs", (name, r.stdout, r.stderr)
    # made over ssh, i.e. in the namespaces the modules will run in
    r = lab.ssh(first, "mkdir /sys/fs/bpf/%s && ls /sys/fs/bpf" % probe)
    assert r.returncode == 0 and probe in r.stdout, r.stderr
    assert lab.host_exec(first, "test -d /sys/fs/bpf/%s" % probe).returncode == 0
    for name in others:
        assert lab.host_exec(name, "test -e /sys/fs/bpf/%s" % probe).returncode == 1
        assert lab.ssh(name, "test -e /sys/fs/bpf/%s" % probe).returncode == 1
    assert not os.path.exists("/sys/fs/bpf/%s" % probe)
    lab.host_exec(first, "rmdir /sys/fs/bpf/%s" % probe, check=True)


def test_private_var_lib_netxfw(lab):
    for name in lab.host_names:
        r = lab.ssh(name, "echo %s > /var/lib/netxfw/whoami" % name)
        assert r.returncode == 0, r.stderr
    for h in lab.hosts:
        r = lab.ssh(h["name"], "ls /var/lib/netxfw; cat /var/lib/netxfw/whoami")
        assert r.stdout.split() == ["whoami", h["name"]], r.stdout
        with open(os.path.join(h["var_lib_netxfw"], "whoami")) as f:
            assert f.read().strip() == h["name"]
    assert not os.path.exists("/var/lib/netxfw/whoami")


def test_client_and_attacker_reach_hosts(lab):
    for ns in ("nxclient", "nxattacker"):
        for h in lab.hosts:
            for addr in (h["ipv4"], h["ipv6"]):
                r = lab.run_in(ns, ["ping", "-c1", "-W2", addr])
                assert r.returncode == 0, (ns, addr, r.stdout, r.stderr)
    # and the controller is reachable from the hosts
    r = lab.host_exec(lab.host_names[0], "ping -c1 -W2 198.51.100.1 && "
                      "ping -c1 -W2 2001:db8:100::1")
    assert r.returncode == 0, r.stdout + r.stderr
