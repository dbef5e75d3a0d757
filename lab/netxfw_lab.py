#!/usr/bin/python3
"""netxfw lab: N managed hosts on this machine as network + mount namespaces.

    netxfw_lab.py up --hosts N [--second-uplink] [--state-dir DIR] [--force]
    netxfw_lab.py down [--state-dir DIR]
    netxfw_lab.py status [--state-dir DIR] [--json]
    netxfw_lab.py exec HOST -- CMD...

Layout (all in 198.51.100.0/24 and 2001:db8:100::/64; eth0, 192.0.2.0/24 and
fd00::/64 are never touched):

    root ns   bridge nxlab0  198.51.100.1      2001:db8:100::1     (controller)
    nxhK      lan0           198.51.100.(10+K) 2001:db8:100::(10+K) sshd :22
    nxclient  lan0           198.51.100.200    2001:db8:100::c8
    nxattacker lan0          198.51.100.250    2001:db8:100::fa

With --second-uplink, a second, IPv6-only uplink (a host with two uplinks, or an
IPv6 uplink separate from the IPv4 one):

    root ns   bridge nxlab1  2001:db8:101::1
    nxhK      wan1           2001:db8:101::(10+K)   the host's IPv6 default route
    nxattacker wan1          2001:db8:101::fa

Each host's sshd runs in the host's netns, a private UTS namespace (hostname
nxhK) and a private mount namespace
with its own sysfs, its own bpffs on /sys/fs/bpf and a private bind mount on
/var/lib/netxfw (from <state>/hosts/nxhK/var-lib-netxfw).  Everything else in
the filesystem is shared with the machine.  `ip netns exec` is deliberately
not used: it remounts /sys and would hide the host's bpffs.

Only the stdlib is used; the kernel is driven with `ip`, `nsenter`, `unshare`.
"""

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

BRIDGE = "nxlab0"
BR_V4 = "198.51.100.1"
BR_V6 = "2001:db8:100::1"
BRIDGE2 = "nxlab1"            # --second-uplink: IPv6 only
BR2_V6 = "2001:db8:101::1"
UPLINK2 = "wan1"
UPLINK2_SUFFIX = "b"          # root-side ends of the second uplink: nxv-<ns>b
V4_PREFIX = 24
V6_PREFIX = 64
HOST_PREFIX = "nxh"
VETH_PREFIX = "nxv-"          # root-side veth ends: nxv-<ns>
MAX_HOSTS = 20
DEFAULT_STATE_DIR = "/var/lib/netxfw-lab"
HOST_STATE_MOUNT = "/var/lib/netxfw"
LOCK_FILE = "/run/netxfw-lab.lock"
# marks that the lab (not someone else) created the empty /var/lib/netxfw
# mount point in the root ns; kept outside the state dir so a half-removed
# lab still cleans it up
CREATED_MARK = "/run/netxfw-lab.created-var-lib-netxfw"
SSHD = "/usr/sbin/sshd"
EXTRA = {
    # name: (ipv4, ipv6)
    "nxclient": ("198.51.100.200", "2001:db8:100::c8"),
    "nxattacker": ("198.51.100.250", "2001:db8:100::fa"),
}
FORBIDDEN_LINKS = {"eth0", "lo"}


class LabError(Exception):
    pass


# --------------------------------------------------------------- helpers

def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run(cmd, check=True, input=None, timeout=60):
    p = subprocess.run(cmd, input=input, capture_output=True, text=True,
                       timeout=timeout, check=False)
    if check and p.returncode != 0:
        raise LabError("command failed (%d): %s\n%s" % (
            p.returncode, " ".join(cmd), (p.stderr or p.stdout).strip()))
    return p


def ip_batch(lines, netns=None, check=True):
    """Run many `ip` commands in one process (fast for 20 hosts)."""
    if not lines:
        return
    cmd = ["ip"]
    if netns:
        cmd += ["-n", netns]
    cmd += ["-batch", "-"]
    if not check:
        cmd.insert(1, "-force")
    run(cmd, check=check, input="\n".join(lines) + "\n")


def host_names(n):
    return ["%s%d" % (HOST_PREFIX, k) for k in range(1, n + 1)]


def host_addrs(k):
    return "198.51.100.%d" % (10 + k), "2001:db8:100::%d" % (10 + k)


def uplink2_addr(k):
    return "2001:db8:101::%d" % (10 + k)


def veth_name(ns):
    name = VETH_PREFIX + ns
    assert len(name) <= 15, name
    return name


def netns_list():
    p = run(["ip", "-j", "netns", "list"], check=False)
    try:
        return [e["name"] for e in json.loads(p.stdout or "[]")]
    except ValueError:
        return [l.split()[0] for l in p.stdout.splitlines() if l.strip()]


def is_lab_ns(name):
    if name in EXTRA:
        return True
    return (name.startswith(HOST_PREFIX) and name[len(HOST_PREFIX):].isdigit())


def link_exists(name):
    return os.path.exists("/sys/class/net/%s" % name)


def root_links():
    try:
        return os.listdir("/sys/class/net")
    except OSError:
        return []


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
    except OSError:
        return False
    # zombies are dead for our purposes
    return st.rsplit(")", 1)[1].split()[0] != "Z"


def proc_cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def all_pids():
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def netns_pids(ns):
    p = run(["ip", "netns", "pids", ns], check=False)
    return [int(x) for x in p.stdout.split() if x.isdigit()]


def kill_and_wait(pids, timeout=5.0):
    pids = {p for p in pids if p != os.getpid() and p > 1}
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in list(pids):
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pids.discard(p)
        deadline = time.monotonic() + (timeout if sig == signal.SIGTERM else 3)
        while pids and time.monotonic() < deadline:
            for p in list(pids):
                # reap our own children if any
                with contextlib.suppress(ChildProcessError, OSError):
                    os.waitpid(p, os.WNOHANG)
                if not pid_alive(p):
                    pids.discard(p)
            if pids:
                time.sleep(0.02)
        if not pids:
            return []
    return sorted(pids)


@contextlib.contextmanager
def lab_lock():
    fd = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def write(path, text, mode=0o644):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def check_state_dir(state):
    state = os.path.abspath(state)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if state == "/" or state.startswith(here + os.sep) or state == here:
        raise LabError("state dir %s must not be / or inside the git tree %s"
                       % (state, here))
    if len(os.path.join(state, "cp-") + "x" * 40) > 104:
        raise LabError("state dir path too long for ssh ControlPath sockets")
    return state


def load_meta(state):
    try:
        with open(os.path.join(state, "lab.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------- up

def ensure_sshd():
    if not os.access(SSHD, os.X_OK) or not shutil.which("ssh-keygen"):
        log("openssh-server missing; installing it")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends",
                        "openssh-server", "openssh-client"], check=True,
                       env=env, stdout=sys.stderr)
    # privilege separation directory (normally made by the Debian unit,
    # which we never start)
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)


SSHD_CONFIG = """\
# generated by netxfw_lab.py for {host}; do not edit
Port 22
ListenAddress {v4}
ListenAddress [{v6}]
HostKey {hdir}/ssh_host_ed25519_key
PidFile {hdir}/sshd.pid
AuthorizedKeysFile {state}/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
MaxStartups 100:30:200
MaxSessions 100
MaxAuthTries 10
LoginGraceTime 30
ClientAliveInterval 0
LogLevel INFO
Subsystem sftp internal-sftp
"""


def inventory_text(meta):
    state = meta["state_dir"]
    lines = ["# generated by netxfw_lab.py", "[netxfw_lab]"]
    for h in meta["hosts"]:
        lines.append("%s ansible_host=%s netxfw_lab_ipv6=%s" % (
            h["name"], h["ipv4"], h["ipv6"]))
    ssh_args = ("-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                "-o LogLevel=ERROR -o ControlMaster=auto "
                "-o ControlPersist=60s -o ControlPath=%s/cp-%%C" % state)
    c, a = meta["client"], meta["attacker"]
    lines += [
        "",
        "[netxfw_lab:vars]",
        "ansible_user=root",
        "ansible_ssh_private_key_file=%s/id_ed25519" % state,
        "ansible_python_interpreter=/usr/bin/python3",
        "ansible_ssh_common_args='%s'" % ssh_args,
        "ansible_ssh_pipelining=true",
        "netxfw_lab_controller_ipv4=%s" % BR_V4,
        "netxfw_lab_controller_ipv6=%s" % BR_V6,
        "netxfw_lab_client_ipv4=%s" % c["ipv4"],
        "netxfw_lab_client_ipv6=%s" % c["ipv6"],
        "netxfw_lab_attacker_ipv4=%s" % a["ipv4"],
        "netxfw_lab_attacker_ipv6=%s" % a["ipv6"],
        "netxfw_lab_state_dir=%s" % state,
        "",
    ]
    return "\n".join(lines)


def wait_ssh(addr, deadline):
    """Wait until sshd on addr:22 sends its banner."""
    last = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((addr, 22), timeout=1) as s:
                s.settimeout(2)
                if s.recv(4).startswith(b"SSH-"):
                    return None
        except OSError as e:
            last = e
        time.sleep(0.05)
    return "sshd on %s not answering: %s" % (addr, last)


def cmd_up(args):
    n = args.hosts
    if not 1 <= n <= MAX_HOSTS:
        raise LabError("--hosts must be between 1 and %d" % MAX_HOSTS)
    state = check_state_dir(args.state_dir)
    t0 = time.monotonic()
    with lab_lock():
        existing = [ns for ns in netns_list() if is_lab_ns(ns)]
        leftovers = existing + [b for b in (BRIDGE, BRIDGE2) if link_exists(b)]
        if leftovers or os.path.exists(state):
            if not args.force:
                raise LabError(
                    "a lab already exists (%s); run `down` or use --force"
                    % (", ".join(leftovers) or state))
            _down(state, quiet=True)
        try:
            meta = _up(n, state, second_uplink=args.second_uplink)
        except BaseException:
            log("up failed; tearing down what was made")
            with contextlib.suppress(Exception):
                _down(state, quiet=True)
            raise
    dt = time.monotonic() - t0
    print("lab up: %d hosts in %.2fs; state %s" % (n, dt, state))
    print("  inventory: %s" % meta["inventory"])
    for h in meta["hosts"]:
        print("  %-10s %-15s %-20s sshd pid %d" % (
            h["name"], h["ipv4"], h["ipv6"], h["sshd_pid"]))
    for role in ("client", "attacker"):
        e = meta[role]
        print("  %-10s %-15s %s" % (e["netns"], e["ipv4"], e["ipv6"]))
    return 0


def _up(n, state, second_uplink=False):
    ensure_sshd()
    os.makedirs(state, mode=0o700)
    os.chmod(state, 0o700)
    meta = {
        "version": 1,
        "state_dir": state,
        "bridge": {"name": BRIDGE, "ipv4": BR_V4, "ipv6": BR_V6,
                   "ipv4_prefix": V4_PREFIX, "ipv6_prefix": V6_PREFIX},
        "controller": {"ipv4": BR_V4, "ipv6": BR_V6},
        "ssh_key": os.path.join(state, "id_ed25519"),
        "inventory": os.path.join(state, "inventory.ini"),
        "hosts": [],
        "created_var_lib_netxfw": False,
        "created_at": time.time(),
    }
    # record early so a failed/partial `up` can still be torn down
    write(os.path.join(state, "lab.json"), json.dumps(meta, indent=2))

    # mount point for the per-host bind mounts, in the root ns
    if not os.path.isdir(HOST_STATE_MOUNT):
        os.makedirs(HOST_STATE_MOUNT, mode=0o700)
        meta["created_var_lib_netxfw"] = True
        write(CREATED_MARK, HOST_STATE_MOUNT + "\n")

    # controller key
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
         "netxfw-lab-controller", "-f", meta["ssh_key"]])
    with open(meta["ssh_key"] + ".pub") as f:
        write(os.path.join(state, "authorized_keys"), f.read(), 0o600)

    names = host_names(n)
    all_ns = names + list(EXTRA)
    addrs = {h: host_addrs(k) for k, h in enumerate(names, 1)}
    addrs.update(EXTRA)

    # ---- root namespace: namespaces, bridge, veths (one ip process)
    root = ["link add %s type bridge stp_state 0 forward_delay 0" % BRIDGE]
    for ns in all_ns:
        root.append("netns add %s" % ns)
    ip_batch(root)
    # no DAD on the bridge, no RA/autoconf noise
    for key, val in (("accept_dad", "0"), ("accept_ra", "0"),
                     ("autoconf", "0")):
        with contextlib.suppress(OSError):
            with open("/proc/sys/net/ipv6/conf/%s/%s" % (BRIDGE, key), "w") as f:
                f.write(val)
    root = [
        "addr add %s/%d dev %s" % (BR_V4, V4_PREFIX, BRIDGE),
        "addr add %s/%d dev %s nodad" % (BR_V6, V6_PREFIX, BRIDGE),
        "link set %s up" % BRIDGE,
    ]
    for ns in all_ns:
        v = veth_name(ns)
        root += ["link add %s type veth peer name lan0 netns %s" % (v, ns),
                 "link set %s master %s" % (v, BRIDGE),
                 "link set %s up" % v]
    ip_batch(root)

    # ---- inside each namespace
    for ns in all_ns:
        v4, v6 = addrs[ns]
        ip_batch([
            "link set lo up",
            "addr add %s/%d dev lan0" % (v4, V4_PREFIX),
            "addr add %s/%d dev lan0 nodad" % (v6, V6_PREFIX),
            "link set lan0 up",
            "route add default via %s dev lan0" % BR_V4,
            "route add default via %s dev lan0" % BR_V6,
        ], netns=ns)

    for role, ns in (("client", "nxclient"), ("attacker", "nxattacker")):
        meta[role] = {"netns": ns, "ipv4": EXTRA[ns][0], "ipv6": EXTRA[ns][1],
                      "veth": veth_name(ns), "ifname": "lan0"}

    if second_uplink:
        _second_uplink(meta, names)

    # ---- per-host sshd, each in its own mount namespace
    keygens = []
    for h in names:
        hdir = os.path.join(state, "hosts", h)
        os.makedirs(os.path.join(hdir, "var-lib-netxfw"), mode=0o700)
        keygens.append(subprocess.Popen(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", h,
             "-f", os.path.join(hdir, "ssh_host_ed25519_key")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    for p in keygens:
        if p.wait() != 0:
            raise LabError("ssh-keygen failed: %s" % p.stderr.read().decode())

    for k, h in enumerate(names, 1):
        v4, v6 = addrs[h]
        hdir = os.path.join(state, "hosts", h)
        cfg = os.path.join(hdir, "sshd_config")
        write(cfg, SSHD_CONFIG.format(host=h, v4=v4, v6=v6, hdir=hdir,
                                      state=state))
        if k == 1:
            run([SSHD, "-t", "-f", cfg])
        inner = ("set -e; "
                 "hostname {host}; "
                 "mount -t sysfs sysfs /sys; "
                 "mount -t bpf bpf /sys/fs/bpf; "
                 "mount --bind {vl} {mnt}; "
                 "exec {sshd} -D -e -f {cfg}").format(
                     host=h, vl=os.path.join(hdir, "var-lib-netxfw"),
                     mnt=HOST_STATE_MOUNT, sshd=SSHD, cfg=cfg)
        logf = open(os.path.join(hdir, "sshd.log"), "ab")
        # nsenter (no --pid) and unshare (no --fork) exec in place, and the
        # shell execs sshd: the Popen pid is the sshd pid.
        p = subprocess.Popen(
            ["nsenter", "--net=/run/netns/%s" % h, "--",
             "unshare", "--mount", "--uts", "--propagation", "private", "--",
             "sh", "-c", inner],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
            start_new_session=True, close_fds=True)
        logf.close()
        meta["hosts"].append({
            "name": h, "netns": h, "ipv4": v4, "ipv6": v6,
            "uplink2_ipv6": uplink2_addr(k) if second_uplink else None,
            "veth": veth_name(h), "ifname": "lan0", "sshd_pid": p.pid,
            "sshd_config": cfg, "dir": hdir,
            "var_lib_netxfw": os.path.join(hdir, "var-lib-netxfw"),
        })
        write(os.path.join(state, "lab.json"), json.dumps(meta, indent=2))

    # ---- wait for every sshd (bounded), in parallel
    deadline = time.monotonic() + 20
    errors = []
    threads = []
    for h in meta["hosts"]:
        for addr in (h["ipv4"], h["ipv6"]):
            def target(a=addr, h=h):
                err = wait_ssh(a, deadline)
                if err:
                    errors.append("%s: %s (see %s/sshd.log)" % (
                        h["name"], err, h["dir"]))
            t = threading.Thread(target=target)
            t.start()
            threads.append(t)
    for t in threads:
        t.join()
    if errors:
        raise LabError("\n".join(sorted(errors)))
    for h in meta["hosts"]:
        h["mntns"] = os.readlink("/proc/%d/ns/mnt" % h["sshd_pid"])

    write(meta["inventory"], inventory_text(meta))
    meta["ready"] = True
    write(os.path.join(state, "lab.json"), json.dumps(meta, indent=2))
    return meta


# --------------------------------------------------------------- down

def _second_uplink(meta, names):
    """Bridge nxlab1 (IPv6 only) with a wan1 leg in every host and in the attacker; the hosts'
    IPv6 default route moves to wan1, so lan0 carries the IPv4 default route and wan1 the IPv6
    one."""
    root = ["link add %s type bridge stp_state 0 forward_delay 0" % BRIDGE2]
    ip_batch(root)
    for key, val in (("accept_dad", "0"), ("accept_ra", "0"), ("autoconf", "0")):
        with contextlib.suppress(OSError):
            with open("/proc/sys/net/ipv6/conf/%s/%s" % (BRIDGE2, key), "w") as f:
                f.write(val)
    members = [(h, uplink2_addr(k)) for k, h in enumerate(names, 1)]
    members.append(("nxattacker", "2001:db8:101::fa"))
    root = ["addr add %s/%d dev %s nodad" % (BR2_V6, V6_PREFIX, BRIDGE2), "link set %s up" % BRIDGE2]
    for ns, dummy in members:
        v = veth_name(ns) + UPLINK2_SUFFIX
        assert len(v) <= 15, v
        root += ["link add %s type veth peer name %s netns %s" % (v, UPLINK2, ns),
                 "link set %s master %s" % (v, BRIDGE2), "link set %s up" % v]
    ip_batch(root)
    for ns, addr in members:
        cmds = ["addr add %s/%d dev %s nodad" % (addr, V6_PREFIX, UPLINK2), "link set %s up" % UPLINK2]
        if ns != "nxattacker":
            cmds += ["route del default via %s dev lan0" % BR_V6,
                     "route add default via %s dev %s" % (BR2_V6, UPLINK2)]
        ip_batch(cmds, netns=ns)
    meta["second_uplink"] = {"bridge": BRIDGE2, "ipv6": BR2_V6, "ifname": UPLINK2}
    meta["attacker"]["uplink2_ipv6"] = "2001:db8:101::fa"


def _down(state, quiet=False):
    """Remove everything; tolerate any part being missing already."""
    problems = []
    meta = load_meta(state) or {}

    # 1. processes: everything in a lab netns (sshd, sessions, pings, ...),
    #    recorded sshd pids, and anything whose cmdline names the state dir
    #    (ssh ControlPersist masters on the controller, stray sshds).
    pids = set()
    lab_ns = [ns for ns in netns_list() if is_lab_ns(ns)]
    for ns in lab_ns:
        pids.update(netns_pids(ns))
    for h in meta.get("hosts", []):
        pid = h.get("sshd_pid")
        if pid and pid_alive(pid) and state in proc_cmdline(pid):
            pids.add(pid)
    needle = state.rstrip("/") + "/"
    for pid in all_pids():
        if pid in (os.getpid(), os.getppid()):
            continue
        cl = proc_cmdline(pid)
        argv0 = os.path.basename(cl.split(" ", 1)[0].rstrip(":"))
        if needle in cl and (argv0.startswith("ssh")
                             or argv0 in ("nsenter", "unshare", "sh")):
            pids.add(pid)
    left = kill_and_wait(pids)
    if left:
        problems.append("processes survived SIGKILL: %s" % left)

    # 2. links and namespaces (veth peers die with their netns)
    cmds = []
    for name in root_links():
        if name.startswith(VETH_PREFIX) and name not in FORBIDDEN_LINKS:
            cmds.append("link del %s" % name)
    for bridge in (BRIDGE, BRIDGE2):
        if link_exists(bridge):
            cmds.append("link del %s" % bridge)
    for ns in lab_ns:
        cmds.append("netns del %s" % ns)
    ip_batch(cmds, check=False)
    for ns in lab_ns:
        # `ip netns del` can fail if a mount still pins it; retry by hand
        path = "/run/netns/%s" % ns
        if os.path.exists(path):
            run(["umount", "-l", path], check=False)
            with contextlib.suppress(OSError):
                os.unlink(path)

    # 3. mounts: the per-host mounts live in the sshd mount namespaces and
    #    vanished with them; sweep the root ns for anything under the state dir
    with open("/proc/self/mountinfo") as f:
        mps = [l.split()[4] for l in f]
    for mp in sorted(mps, key=len, reverse=True):
        if mp.startswith(needle):
            run(["umount", "-l", mp], check=False)

    # 4. files
    if meta.get("created_var_lib_netxfw") or os.path.exists(CREATED_MARK):
        with contextlib.suppress(OSError):
            os.rmdir(HOST_STATE_MOUNT)          # only if still empty
        with contextlib.suppress(OSError):
            os.unlink(CREATED_MARK)
    if os.path.isdir(state):
        shutil.rmtree(state, ignore_errors=True)

    remaining = [ns for ns in netns_list() if is_lab_ns(ns)]
    remaining += [l for l in root_links()
                  if l in (BRIDGE, BRIDGE2) or l.startswith(VETH_PREFIX)]
    if remaining:
        problems.append("still present: %s" % ", ".join(remaining))
    if os.path.exists(state):
        problems.append("state dir still present: %s" % state)
    if problems:
        raise LabError("down incomplete: " + "; ".join(problems))
    if not quiet:
        log("lab down")


def cmd_down(args):
    state = check_state_dir(args.state_dir)
    t0 = time.monotonic()
    with lab_lock():
        _down(state, quiet=True)
    print("lab down in %.2fs" % (time.monotonic() - t0))
    return 0


# --------------------------------------------------------------- status/exec

def cmd_status(args):
    state = check_state_dir(args.state_dir)
    meta = load_meta(state)
    ns = [n for n in netns_list() if is_lab_ns(n)]
    out = {"state_dir": state, "exists": bool(meta or ns),
           "ready": bool(meta and meta.get("ready")),
           "netns": sorted(ns), "bridge": link_exists(BRIDGE), "hosts": []}
    for h in (meta or {}).get("hosts", []):
        pid = h.get("sshd_pid")
        out["hosts"].append({"name": h["name"], "ipv4": h["ipv4"],
                             "ipv6": h["ipv6"], "sshd_pid": pid,
                             "sshd_alive": bool(pid and pid_alive(pid)),
                             "netns": h["netns"] in ns})
    if args.json:
        print(json.dumps(out, indent=2))
    elif not out["exists"]:
        print("no lab (state dir %s)" % state)
    else:
        print("lab: %s, bridge %s, %d namespaces, state %s" % (
            "ready" if out["ready"] else "NOT ready",
            "up" if out["bridge"] else "MISSING", len(ns), state))
        for h in out["hosts"]:
            print("  %-6s %-15s %-20s sshd %s" % (
                h["name"], h["ipv4"], h["ipv6"],
                "pid %d" % h["sshd_pid"] if h["sshd_alive"] else "DEAD"))
    healthy = out["ready"] and out["bridge"] and all(
        h["sshd_alive"] and h["netns"] for h in out["hosts"])
    return 0 if (healthy or not out["exists"]) else 1


def nsenter_argv(state, name):
    """argv prefix entering lab namespace `name` (host: net+mount)."""
    meta = load_meta(state)
    if name in EXTRA:
        return ["nsenter", "--net=/run/netns/%s" % name, "--"]
    for h in (meta or {}).get("hosts", []):
        if h["name"] == name:
            pid = h["sshd_pid"]
            if not pid_alive(pid):
                raise LabError("sshd of %s (pid %d) is not running" % (name, pid))
            return ["nsenter", "--net=/run/netns/%s" % name,
                    "--mount=/proc/%d/ns/mnt" % pid,
                    "--uts=/proc/%d/ns/uts" % pid, "--"]
    raise LabError("no such lab host: %s" % name)


def cmd_exec(args):
    state = check_state_dir(args.state_dir)
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise LabError("exec needs a command after --")
    argv = nsenter_argv(state, args.host) + cmd
    os.execvp(argv[0], argv)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    ap.add_argument("--state-dir", default=DEFAULT_STATE_DIR)
    sub = ap.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="build the lab")
    up.add_argument("--hosts", type=int, required=True)
    up.add_argument("--force", action="store_true",
                    help="tear an existing lab down first")
    up.add_argument("--second-uplink", action="store_true",
                    help="give every host a second, IPv6-only uplink (wan1 on bridge "
                         "nxlab1, 2001:db8:101::/64) carrying its IPv6 default route")
    down = sub.add_parser("down", help="remove everything the lab made")
    st = sub.add_parser("status", help="show the lab")
    st.add_argument("--json", action="store_true")
    ex = sub.add_parser("exec", help="run CMD in a lab namespace")
    ex.add_argument("host")
    ex.add_argument("cmd", nargs=argparse.REMAINDER)
    for p in (up, down, st, ex):
        p.add_argument("--state-dir", default=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        log("netxfw_lab: must run as root")
        return 2
    try:
        return {"up": cmd_up, "down": cmd_down, "status": cmd_status,
                "exec": cmd_exec}[args.command](args)
    except LabError as e:
        log("netxfw_lab: error: %s" % e)
        return 1
    except BrokenPipeError:
        # `up | head`: the lab is built; only the summary was cut short
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
