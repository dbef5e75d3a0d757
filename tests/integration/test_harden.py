"""harden.yml and ad-hoc netxfw_rule over real SSH on a fresh 3-host lab.

Rhythm: --check (nothing changes on the hosts) -> apply (changed) -> apply
again (changed=0) -> --check --diff (changed=0); the diff of one blocklist
entry; real packets from nxclient / nxattacker; then an ad-hoc
`ansible netxfw_lab -m netxfw.firewall.netxfw_rule -a 'kind=blacklist ...'`
that cuts the attacker off every host.

Run as root:  /opt/netxfw-venv/bin/python -m pytest tests/integration/test_harden.py
The tests in this file build on each other and run in file order.
"""

import json
import re
import time

import pytest

from labkit import HARDEN, LAB_VARS, NEEDS, RECAP_RE, SERVICE_PORT, WaitingLab, outcomes, probe

N_HOSTS = 2  # a fleet: every check runs on each host; a third adds time, not coverage
CLOSED_UDP = 9999
# the lab vars' blocklist, plus one entry for the diff test
BLOCKLIST = ["203.0.113.0/24", "2001:db8:bad::/48"]
EXTRA_BLOCK = "2001:db8:beef::/48"

pytestmark = NEEDS


@pytest.fixture(scope="module")
def lab(root_netns):
    with WaitingLab(hosts=N_HOSTS, force=False) as lab:
        yield lab


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
