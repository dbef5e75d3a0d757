"""harden.yml and ad-hoc netxfw_rule over real SSH on a fresh 3-host lab.

Rhythm: --check (nothing changes on the hosts) -> apply (changed) -> apply
again (changed=0) -> --check --diff (changed=0); the diff of one blocklist
entry; real packets from nxclient / nxattacker; then an ad-hoc
`ansible netxfw_lab -m netxfw.firewall.netxfw_rule -a 'kind=blacklist ...'`
that cuts the attacker off every host.

Run as root:  /opt/netxfw-venv/bin/python -m pytest tests/integration/test_harden.py
The tests in this file build on each other and run in file order.
"""

import ctypes
import importlib.util
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location(
    "netxfw_tests_lab", os.path.join(os.path.dirname(_HERE), "lab.py"))
_labmod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_labmod)
_spec = importlib.util.spec_from_file_location(
    "netxfw_tests_collection", os.path.join(os.path.dirname(_HERE), "collection.py"))
_collection = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_collection)

REPO = _labmod.REPO
HARDEN = os.path.join(REPO, "harden.yml")
LAB_VARS = os.path.join(REPO, "lab", "harden-lab-vars.yml")
PROBE = os.path.join(REPO, "lab", "probe.py")
N_HOSTS = 2  # a fleet: every check runs on each host; a third adds time, not coverage
SERVICE_PORT = 8080
CLOSED_UDP = 9999
LAB_WAIT_SECONDS = 900
# the lab vars' blocklist, plus one entry for the diff test
BLOCKLIST = ["203.0.113.0/24", "2001:db8:bad::/48"]
EXTRA_BLOCK = "2001:db8:beef::/48"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not os.path.exists(os.path.join(_labmod.ANSIBLE_BIN, "ansible-playbook")),
                       reason="needs the controller venv (scripts/install-deps)"),
]

RECAP_RE = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+"
                      r"failed=(\d+)", re.M)


class WaitingLab(_labmod.Lab):
    """A Lab that waits for somebody else's lab to go instead of forcing it
    away, and never tears down a lab it did not build."""

    def up(self):
        deadline = time.monotonic() + LAB_WAIT_SECONDS
        while True:
            p = self.cli("up", "--hosts", str(self.n), *(["--second-uplink"] if self.second_uplink else []),
                         check=False, timeout=300)
            if p.returncode == 0:
                break
            if "a lab already exists" in p.stderr and time.monotonic() < deadline:
                time.sleep(10)
                continue
            # `up` tears down its own half-built lab itself; an existing
            # lab is somebody else's and stays
            raise RuntimeError("lab up failed (%d):\n%s%s" % (p.returncode, p.stdout, p.stderr))
        with open(os.path.join(self.state_dir, "lab.json")) as f:
            self.meta = json.load(f)
        return self


CLONE_NEWNET = 0x40000000
# The network namespace pytest started in, taken at collection, before any
# fixture runs (PID 1's may not be readable here).
_START_NETNS = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)


def _setns(fd):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "setns: %s" % os.strerror(err))


@pytest.fixture(scope="module")
def root_netns():
    """Run this module in the network namespace pytest started in.

    A session-scoped fixture of another test package may have moved the
    pytest process into its own netns (with its own 198.51.100.0/24 veth);
    the lab's bridge and the controller's SSH belong in the original one.
    """
    if os.readlink("/proc/self/ns/net") == os.readlink("/proc/self/fd/%d" % _START_NETNS):
        yield
        return
    saved = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(_START_NETNS)
        yield
    finally:
        _setns(saved)
        os.close(saved)


@pytest.fixture(scope="module")
def lab(root_netns):
    with WaitingLab(hosts=N_HOSTS, force=False) as lab:
        yield lab


@pytest.fixture(scope="module")
def ansible_env():
    """The collection as users install it (tests/collection.py: ansible-galaxy build of this
    checkout, installed into an empty temp collections path), the only one ansible sees."""
    root = tempfile.mkdtemp(prefix="netxfw-harden-")
    try:
        coll = _collection.install_checkout(root).collections_path
        yield _collection.ansible_env(root, coll, ANSIBLE_FORKS="10")
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def listeners(lab):
    """A bounded HTTP listener on SERVICE_PORT on every host."""
    www = tempfile.mkdtemp(prefix="netxfw-www-")
    with open(os.path.join(www, "index.html"), "w") as f:
        f.write("netxfw lab\n")
    procs = [lab.popen_in(h, ["timeout", "600", "/usr/bin/python3", "-m", "http.server",
                              str(SERVICE_PORT), "--bind", "::", "--directory", www],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for h in lab.host_names]
    for h in lab.host_names:
        for dummy in range(100):
            r = lab.run_in(h, ["ss", "-Hltn", "sport = :%d" % SERVICE_PORT])
            if r.stdout.strip():
                break
            time.sleep(0.1)
        else:
            pytest.fail("listener on %s:%d did not come up" % (h, SERVICE_PORT))
    yield
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)
    shutil.rmtree(www, ignore_errors=True)


# ------------------------------------------------------------------ helpers

def playbook(lab, env, *args):
    t0 = time.monotonic()
    r = lab.ansible_playbook(HARDEN, "-e", "@" + LAB_VARS, *args, timeout=1200, env=env)
    elapsed = time.monotonic() - t0
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    recap = {m.group(1): {"ok": int(m.group(2)), "changed": int(m.group(3)),
                          "unreachable": int(m.group(4)), "failed": int(m.group(5))}
             for m in RECAP_RE.finditer(r.stdout)}
    assert sorted(recap) == sorted(lab.host_names), out
    assert all(v["failed"] == 0 and v["unreachable"] == 0 for v in recap.values()), out
    return recap, r.stdout, elapsed


def task_section(stdout, title):
    """The output of one task, from its TASK banner to the next banner."""
    # harden.yml runs the netxfw role: its banners read "TASK [netxfw.firewall.netxfw : title]"
    m = re.search(r"^TASK \[(?:[\w.]+ : )?%s\][^\n]*\n(.*?)(?=^TASK \[|^PLAY RECAP)" % re.escape(title),
                  stdout, re.M | re.S)
    assert m, "no task %r in:\n%s" % (title, stdout)
    return m.group(1)


APPLY = "Apply the rules and the data plane (confirm-or-rollback)"
PARTS = ("whitelist", "blacklist", "port", "ratelimit", "program")


def diff_part(section, part):
    """The diffs of one part (netxfw whitelist, blacklist, port, ratelimit, program) in a netxfw_apply task's
    output: its diff holds one before/after pair per changed part, headed by the part's name."""
    chunks = re.split(r"^(?=--- before)", section, flags=re.M)
    return "".join(c for c in chunks if re.match(r"--- before: netxfw %s[: ]" % part, c))


def confirmed_parts(stdout, host):
    """{part: "changed"|"unchanged"} from the role's report of a confirmed change on host."""
    m = re.search(r"CONFIRMED on %s: ((?:\w+ (?:un)?changed(?:, )?)+)" % re.escape(host), stdout)
    assert m, "no confirmation for %s in:\n%s" % (host, stdout)
    return dict(item.split() for item in m.group(1).split(", "))


def probe(lab, src, hosts, *args, family=4):
    targets = []
    for h in hosts:
        targets += ["--target", "%s=%s" % (h, lab.host(h)["ipv%d" % family])]
    r = lab.run_in(src, ["/usr/bin/python3", PROBE, "--json", "--timeout", "2"] + targets + list(args),
                   timeout=90)
    assert r.returncode == 0, r.stderr
    out = {}
    for row in json.loads(r.stdout):
        out.setdefault(row["target"], {})[row["probe"]] = row["outcome"]
    return out


def outcomes(result, probe_name):
    return {h: v[probe_name] for h, v in result.items()}


def host_pins(lab, host):
    r = lab.host_exec(host, "ls -A /sys/fs/bpf/netxfw 2>/dev/null; true")
    return r.stdout.split()


def xdp_attached(lab, host):
    r = lab.host_exec(host, "ip -d link show dev lan0")
    return "xdp" in r.stdout.split("\n", 1)[0] or "prog/xdp" in r.stdout


# ------------------------------------------------------------------ tests

def test_check_mode_changes_nothing(lab, ansible_env):
    recap, out, dummy = playbook(lab, ansible_env, "--check", "--diff")
    # check mode reports what it would do ...
    for host, v in recap.items():
        assert v["changed"] >= 1, (host, out)
    assert "+198.51.100.1/32" in diff_part(task_section(out, APPLY), "whitelist")
    # ... and does none of it
    for host in lab.host_names:
        assert host_pins(lab, host) == [], host
        assert not xdp_attached(lab, host), host
        r = lab.host_exec(host, "ls -A /var/lib/netxfw")
        # no config.json / rules.json; the engine's flock file (.lock) is
        # created even in check mode (it takes the run lock to read)
        assert set(r.stdout.split()) <= {".lock"}, (host, r.stdout)


def test_apply_then_reapply_is_a_noop(lab, ansible_env):
    recap, out, first = playbook(lab, ansible_env)
    for host, v in recap.items():
        # the apply, plus the role's first install of the agent (the lab's hosts share /usr and
        # /etc, so which host installs the shared files first varies)
        assert v["changed"] >= 2, (host, out)
        # four rule lists and the program, all in the one apply task
        assert confirmed_parts(out, host) == dict((part, "changed") for part in PARTS), (host, out)
    assert task_section(out, APPLY).count("changed: [") == N_HOSTS, out
    for host in lab.host_names:
        pins = host_pins(lab, host)
        assert "prog_xdp" in pins and "prog_tc" in pins and "src4_host" in pins, (host, pins)
        assert xdp_attached(lab, host), host
        rules = json.loads(lab.host_exec(host, "cat /var/lib/netxfw/rules.json", check=True).stdout)
        assert rules["ratelimits"] == [{"source": lab.attacker["ipv4"] + "/32", "rate": 100, "burst": 200,
                                        "syn_only": True, "ban_ttl": 0}], (host, rules)
    recap, out, second = playbook(lab, ansible_env)
    for host, v in recap.items():
        assert v["changed"] == 0, (host, out)
    print("\nharden.yml on %d lab hosts: first run %.1fs, re-run (no-op) %.1fs"
          % (N_HOSTS, first, second))


def test_check_diff_after_apply_is_a_noop(lab, ansible_env):
    recap, out, dummy = playbook(lab, ansible_env, "--check", "--diff")
    for host, v in recap.items():
        assert v["changed"] == 0, (host, out)
    assert "--- before" not in out, out


def test_diff_shows_exactly_the_changed_entry(lab, ansible_env):
    # add one entry: the blacklist task's diff shows that entry and nothing else
    extra = json.dumps({"netxfw_blocklist": BLOCKLIST + [EXTRA_BLOCK]})
    recap, out, dummy = playbook(lab, ansible_env, "--diff", "-e", extra)
    for host, v in recap.items():
        assert v["changed"] == 1, (host, out)
    section = diff_part(task_section(out, APPLY), "blacklist")
    added = [l[1:] for l in section.splitlines() if l.startswith("+") and not l.startswith("+++")]
    removed = [l[1:] for l in section.splitlines() if l.startswith("-") and not l.startswith("---")]
    assert added == [EXTRA_BLOCK] * N_HOSTS, section
    assert removed == [], section
    for other in ("whitelist", "port", "ratelimit", "program"):
        assert diff_part(task_section(out, APPLY), other) == "", out
    assert task_section(out, APPLY).count("--- before") == N_HOSTS, out
    for host in lab.host_names:
        r = lab.host_exec(host, "cat /var/lib/netxfw/rules.json")
        assert EXTRA_BLOCK in r.stdout, (host, r.stdout)

    # back to the declared list: exclusive, so the entry goes, and the diff says so
    recap, out, dummy = playbook(lab, ansible_env, "--diff")
    section = diff_part(task_section(out, APPLY), "blacklist")
    removed = [l[1:] for l in section.splitlines() if l.startswith("-") and not l.startswith("---")]
    added = [l[1:] for l in section.splitlines() if l.startswith("+") and not l.startswith("+++")]
    assert removed == [EXTRA_BLOCK] * N_HOSTS and added == [], section
    for host, v in recap.items():
        assert v["changed"] == 1, (host, out)


def test_packets_after_harden(lab, listeners):
    hosts = lab.host_names

    def everywhere(outcome):
        return {h: outcome for h in hosts}

    for family in (4, 6):
        client = probe(lab, "nxclient", hosts, "--ping", "--tcp", "22", "--tcp", str(SERVICE_PORT),
                       "--udp", str(CLOSED_UDP), family=family)
        attacker = probe(lab, "nxattacker", hosts, "--ping", "--tcp", "22", "--tcp", str(SERVICE_PORT),
                         "--udp", str(CLOSED_UDP), family=family)
        # the client reaches ssh and the service (open to its address only)
        assert outcomes(client, "tcp/22") == everywhere("passed"), (family, client)
        assert outcomes(client, "tcp/%d" % SERVICE_PORT) == everywhere("passed"), (family, client)
        assert outcomes(client, "ping") == everywhere("passed"), (family, client)
        # the attacker reaches ssh (open to any) but not the service
        assert outcomes(attacker, "tcp/22") == everywhere("passed"), (family, attacker)
        assert outcomes(attacker, "tcp/%d" % SERVICE_PORT) == everywhere("dropped"), (family, attacker)
        # unsolicited UDP hits default deny (without it: ICMP port unreachable)
        assert outcomes(attacker, "udp/%d" % CLOSED_UDP) == everywhere("dropped"), (family, attacker)
        assert outcomes(client, "udp/%d" % CLOSED_UDP) == everywhere("dropped"), (family, client)


def test_adhoc_blacklist_cuts_the_attacker_off_every_host(lab, ansible_env, listeners):
    hosts = lab.host_names
    before = probe(lab, "nxattacker", hosts, "--ping", "--tcp", "22")
    assert outcomes(before, "ping") == {h: "passed" for h in hosts}, before
    assert outcomes(before, "tcp/22") == {h: "passed" for h in hosts}, before

    attacker = lab.attacker["ipv4"]
    t0 = time.monotonic()
    r = lab.ansible("netxfw_lab", "-m", "netxfw.firewall.netxfw_rule",
                    "-a", "kind=blacklist entries=%s" % attacker, env=ansible_env, timeout=300)
    elapsed = time.monotonic() - t0
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("CHANGED") == N_HOSTS, r.stdout
    print("\nad-hoc block of %s on %d hosts: %.1fs" % (attacker, N_HOSTS, elapsed))

    after = probe(lab, "nxattacker", hosts, "--ping", "--tcp", "22", "--tcp", str(SERVICE_PORT))
    for name in ("ping", "tcp/22", "tcp/%d" % SERVICE_PORT):
        assert outcomes(after, name) == {h: "dropped" for h in hosts}, after
    client = probe(lab, "nxclient", hosts, "--ping", "--tcp", "22", "--tcp", str(SERVICE_PORT))
    for name in ("ping", "tcp/22", "tcp/%d" % SERVICE_PORT):
        assert outcomes(client, name) == {h: "passed" for h in hosts}, client
    for host in hosts:
        rules = json.loads(lab.host_exec(host, "cat /var/lib/netxfw/rules.json", check=True).stdout)
        assert {"cidr": attacker + "/32", "expires": None} in rules["blacklist"], rules

    # the same command again changes nothing
    r = lab.ansible("netxfw_lab", "-m", "netxfw.firewall.netxfw_rule",
                    "-a", "kind=blacklist entries=%s" % attacker, env=ansible_env, timeout=300)
    assert r.returncode == 0 and "CHANGED" not in r.stdout, r.stdout + r.stderr

    # harden.yml's lists are exclusive: its next run lifts the ad-hoc block
    recap, out, dummy = playbook(lab, ansible_env)
    for host, v in recap.items():
        assert v["changed"] == 1, (host, out)
    again = probe(lab, "nxattacker", hosts, "--tcp", "22")
    assert outcomes(again, "tcp/22") == {h: "passed" for h in hosts}, again
