"""Importable helper for tests that need the netxfw lab (not a test module).

    from tests.lab import Lab          # or: sys.path tweak + `from lab import Lab`

    with Lab(hosts=3) as lab:
        lab.host_exec("nxh1", "ls /sys/fs/bpf")
        lab.ssh("nxh2", "hostname")
        lab.run_in("nxclient", ["ping", "-c1", lab.host("nxh1")["ipv4"]])

`Lab` runs `lab/netxfw_lab.py up --force` on enter and `down` on exit, even
when the body raises.  As a pytest fixture:

    @pytest.fixture(scope="module")
    def lab():
        with Lab(hosts=3) as l:
            yield l

The lab uses fixed names (nxlab0, nxh1..N, 198.51.100.0/24), so only one lab
can exist on the machine at a time; `up` serialises on /run/netxfw-lab.lock
and refuses to clobber a lab that is not its own unless force=True.
"""

import json
import os
import shlex
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAB_SCRIPT = os.path.join(REPO, "lab", "netxfw_lab.py")
SYSTEM_PYTHON = "/usr/bin/python3"
DEFAULT_STATE_DIR = "/var/lib/netxfw-lab"
ANSIBLE_BIN = "/opt/netxfw-venv/bin"


def _argv(cmd):
    return ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)


class Lab:
    def __init__(self, hosts=3, state_dir=DEFAULT_STATE_DIR, force=True,
                 keep=None):
        self.n = hosts
        self.state_dir = state_dir
        self.force = force
        # NETXFW_LAB_KEEP=1 leaves the lab up after the tests (debugging)
        self.keep = (os.environ.get("NETXFW_LAB_KEEP") == "1"
                     if keep is None else keep)
        self.meta = None

    # -- lifecycle ---------------------------------------------------------
    def cli(self, *args, check=True, timeout=120):
        argv = [SYSTEM_PYTHON, LAB_SCRIPT, "--state-dir", self.state_dir]
        argv += list(args)
        p = subprocess.run(argv, capture_output=True, text=True,
                           timeout=timeout, check=False)
        if check and p.returncode != 0:
            raise RuntimeError("%s failed (%d):\n%s%s" % (
                " ".join(argv), p.returncode, p.stdout, p.stderr))
        return p

    def up(self):
        args = ["up", "--hosts", str(self.n)]
        if self.force:
            args.append("--force")
        try:
            self.cli(*args)
        except BaseException:
            self.down(check=False)
            raise
        with open(os.path.join(self.state_dir, "lab.json")) as f:
            self.meta = json.load(f)
        return self

    def down(self, check=True):
        return self.cli("down", check=check)

    def __enter__(self):
        return self.up()

    def __exit__(self, *exc):
        if not self.keep:
            self.down(check=exc[0] is None)
        return False

    # -- description -------------------------------------------------------
    @property
    def hosts(self):
        return self.meta["hosts"]

    @property
    def host_names(self):
        return [h["name"] for h in self.meta["hosts"]]

    def host(self, name):
        for h in self.meta["hosts"]:
            if h["name"] == name:
                return h
        raise KeyError(name)

    @property
    def client(self):
        return self.meta["client"]

    @property
    def attacker(self):
        return self.meta["attacker"]

    @property
    def inventory(self):
        return self.meta["inventory"]

    @property
    def ssh_key(self):
        return self.meta["ssh_key"]

    # -- running things ----------------------------------------------------
    def run_in(self, ns, cmd, timeout=30, check=False, input=None):
        """Run cmd (str -> sh -c, or argv list) in a lab netns via nsenter.

        Meant for nxclient / nxattacker (network namespace only).  For a
        managed host use host_exec, which also enters its mount namespace.
        """
        argv = ["nsenter", "--net=/run/netns/%s" % ns, "--"] + _argv(cmd)
        return subprocess.run(argv, capture_output=True, text=True,
                              timeout=timeout, check=check, input=input)

    def popen_in(self, ns, cmd, **kw):
        """Background process in a lab netns; it dies with `down` anyway."""
        argv = ["nsenter", "--net=/run/netns/%s" % ns, "--"] + _argv(cmd)
        return subprocess.Popen(argv, **kw)

    def host_exec(self, host, cmd, timeout=60, check=False, input=None):
        """Run cmd in host's net + mount namespaces (sees its bpffs and
        its /var/lib/netxfw), directly via nsenter, without ssh."""
        pid = self.host(host)["sshd_pid"]
        argv = ["nsenter", "--net=/run/netns/%s" % host,
                "--mount=/proc/%d/ns/mnt" % pid,
                "--uts=/proc/%d/ns/uts" % pid, "--"] + _argv(cmd)
        return subprocess.run(argv, capture_output=True, text=True,
                              timeout=timeout, check=check, input=input)

    def ssh_argv(self, host, family=4):
        h = self.host(host)
        addr = h["ipv4"] if family == 4 else h["ipv6"]
        return ["ssh", "-i", self.ssh_key, "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                "-o", "ConnectTimeout=5", "-o", "IdentitiesOnly=yes",
                "-o", "IdentityAgent=none", "root@%s" % addr]

    def ssh(self, host, cmd, timeout=30, check=False, family=4):
        """Run cmd on host over real ssh from the controller (root ns)."""
        if not isinstance(cmd, str):
            cmd = " ".join(shlex.quote(c) for c in cmd)
        return subprocess.run(self.ssh_argv(host, family) + [cmd],
                              capture_output=True, text=True, timeout=timeout,
                              check=check)

    def ansible(self, *args, timeout=600, check=False, env=None):
        """`ansible -i <inventory> ...` with the venv's ansible-core."""
        e = dict(os.environ, ANSIBLE_HOST_KEY_CHECKING="False")
        e.update(env or {})
        argv = [os.path.join(ANSIBLE_BIN, "ansible"), "-i", self.inventory]
        return subprocess.run(argv + list(args), capture_output=True,
                              text=True, timeout=timeout, check=check, env=e)

    def ansible_playbook(self, *args, timeout=1800, check=False, env=None):
        e = dict(os.environ, ANSIBLE_HOST_KEY_CHECKING="False")
        e.update(env or {})
        argv = [os.path.join(ANSIBLE_BIN, "ansible-playbook"), "-i",
                self.inventory]
        return subprocess.run(argv + list(args), capture_output=True,
                              text=True, timeout=timeout, check=check, env=e)
