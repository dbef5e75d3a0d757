"""harden.yml (the netxfw role) on the lab: first run and no-change re-run, this checkout side by side
with another commit (default: main), with ssh pipelining on and off.

    /usr/bin/python3 bench/fleet_bench.py [--sizes 1,20] [--baseline main] [--no-pipelining-sizes 1] [--json OUT]

For each size, and for each collection (the baseline commit's, then this checkout's) and pipelining
setting: a fresh lab (lab/netxfw_lab.py up --hosts N; waits for somebody else's lab to go, never
forces it), that collection's harden.yml with lab/harden-lab-vars.yml and forks = max(N, 5), timed;
the same again (must report changed=0 on every host); lab down. Each run installs the agent into
its own temp lib dir, CLI path and unit dir (role variables), so every first run really installs
it (the lab's hosts share /usr and /etc with this machine). Pipelining is the lab inventory's
(on); "off" overrides it with -e ansible_ssh_pipelining=false. The collections are snapshots
taken at start (the baseline with `git archive`), so edits made meanwhile do not count.
Everything it made is removed on exit (lab, temp dirs). Run it under the lab lock:

    flock /run/netxfw-tests.lock /usr/bin/python3 bench/fleet_bench.py
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAB = [sys.executable if sys.executable.startswith("/usr/bin/") else "/usr/bin/python3",
       os.path.join(REPO, "lab", "netxfw_lab.py")]
VENV = "/opt/netxfw-venv/bin"
INVENTORY = "/var/lib/netxfw-lab/inventory.ini"
PARTS = ("galaxy.yml", "meta", "plugins", "roles", "agent", "bpf", "playbooks", "harden.yml")
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def snapshot(dest):
    os.makedirs(dest)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for part in PARTS:
        src = os.path.join(REPO, part)
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(dest, part), ignore=ignore, symlinks=True)
        else:
            shutil.copy2(src, os.path.join(dest, part))


def snapshot_commit(ref, dest):
    """The collection as it is at commit `ref` (git archive: committed files only)."""
    os.makedirs(dest)
    sha = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", ref], capture_output=True, text=True,
                         check=True).stdout.strip()
    present = subprocess.run(["git", "-C", REPO, "ls-tree", "--name-only", ref], capture_output=True, text=True,
                             check=True).stdout.split()
    archive = subprocess.run(["git", "-C", REPO, "archive", "--format=tar", ref] + [p for p in PARTS if p in present],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", dest], input=archive, check=True)
    return sha


def lab_up(n, wait=1800):
    deadline = time.monotonic() + wait
    while True:
        p = subprocess.run(LAB + ["up", "--hosts", str(n)], capture_output=True, text=True, timeout=600, check=False)
        if p.returncode == 0:
            return
        if "a lab already exists" in p.stderr and time.monotonic() < deadline:
            time.sleep(10)
            continue
        raise RuntimeError("lab up --hosts %d failed:\n%s%s" % (n, p.stdout, p.stderr))


def lab_down():
    subprocess.run(LAB + ["down"], capture_output=True, text=True, timeout=300, check=False)


def harden(env, coll, forks, extra):
    t0 = time.monotonic()
    p = subprocess.run([os.path.join(VENV, "ansible-playbook"), "-i", INVENTORY, "-f", str(forks),
                        os.path.join(coll, "harden.yml"), "-e", "@" + os.path.join(REPO, "lab", "harden-lab-vars.yml")]
                       + extra, capture_output=True, text=True, env=env, timeout=3600, check=False)
    elapsed = time.monotonic() - t0
    recap = {m.group(1): {"changed": int(m.group(3)), "unreachable": int(m.group(4)), "failed": int(m.group(5))}
             for m in RECAP.finditer(p.stdout)}
    if p.returncode != 0 or not recap or any(v["failed"] or v["unreachable"] for v in recap.values()):
        raise RuntimeError("harden.yml failed:\n%s%s" % (p.stdout[-6000:], p.stderr[-3000:]))
    tasks = p.stdout.count("\nTASK [")
    return elapsed, recap, tasks


def collection(root, name):
    """A collections path holding one netxfw.firewall; returns (collections path, collection dir)."""
    top = os.path.join(root, name, "collections")
    return top, os.path.join(top, "ansible_collections", "netxfw", "firewall")


def measure(root, label, coll_top, coll, n, pipelining):
    work = tempfile.mkdtemp(prefix="run-", dir=root)
    os.makedirs(os.path.join(work, "tmp"))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=coll_top, ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
               ANSIBLE_LOCAL_TEMP=os.path.join(work, "tmp"), ANSIBLE_HOST_KEY_CHECKING="False", ANSIBLE_NOCOLOR="1")
    # a private agent install per run: each first run installs it for real
    extra = ["-e", json.dumps({"netxfw_lib_dir": os.path.join(work, "lib"),
                               "netxfw_cli_path": os.path.join(work, "sbin", "netxfw"),
                               "netxfw_systemd_unit_dir": os.path.join(work, "units")})]
    os.makedirs(os.path.join(work, "units"))
    if not pipelining:
        extra += ["-e", "ansible_ssh_pipelining=false"]
    forks = max(n, 5)
    lab_up(n)
    try:
        first, recap1, tasks1 = harden(env, coll, forks, extra)
        again, recap2, tasks2 = harden(env, coll, forks, extra)
    finally:
        lab_down()
    changed_again = sum(v["changed"] for v in recap2.values())
    row = {"collection": label, "hosts": n, "forks": forks, "pipelining": pipelining,
           "first_s": round(first, 1), "rerun_s": round(again, 1),
           "first_changed_per_host": sorted({v["changed"] for v in recap1.values()}),
           "rerun_changed": changed_again, "first_task_banners": tasks1, "rerun_task_banners": tasks2}
    print("%-22s %2d hosts (forks %2d), pipelining %-3s: first run %6.1fs, re-run %6.1fs (changed on re-run: %d)"
          % (label, n, forks, "on" if pipelining else "off", first, again, changed_again), flush=True)
    if changed_again:
        raise RuntimeError("the re-run of %s on %d hosts changed something" % (label, n))
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    ap.add_argument("--sizes", default="1,20")
    ap.add_argument("--baseline", default="main", help="the commit to compare with (default main); '' for none")
    ap.add_argument("--no-pipelining-sizes", default="1", help="sizes also measured with pipelining off")
    ap.add_argument("--json", default=os.path.join(REPO, "bench", "results", "fleet.json"))
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    no_pipe = {int(s) for s in args.no_pipelining_sizes.split(",") if s}
    if os.geteuid() != 0:
        sys.exit("run as root")
    root = tempfile.mkdtemp(prefix="netxfw-fleet-bench-")
    results = []
    try:
        variants = []
        if args.baseline:
            top, coll = collection(root, "baseline")
            sha = snapshot_commit(args.baseline, coll)
            variants.append(("%s (%s)" % (args.baseline, sha), top, coll))
        top, coll = collection(root, "checkout")
        snapshot(coll)
        head = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=False).stdout.strip()
        variants.append(("this checkout (%s)" % head, top, coll))
        for n in sizes:
            for pipelining in (True, False) if n in no_pipe else (True,):
                for label, top, coll in variants:
                    results.append(measure(root, label, top, coll, n, pipelining))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    out = {"when": time.strftime("%Y-%m-%dT%H:%M:%S"), "cpus": os.cpu_count(),
           "load_before": os.getloadavg(), "results": results}
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(out, f, indent=2)
    print("| collection | lab hosts | forks | pipelining | first run | no-change re-run |")
    print("|---|---:|---:|---|---:|---:|")
    for r in results:
        pipelining = "on" if r["pipelining"] else "off"
        print("| %s | %d | %d | %s | %.1f s | %.1f s |"
              % (r["collection"], r["hosts"], r["forks"], pipelining, r["first_s"], r["rerun_s"]))


if __name__ == "__main__":
    main()
