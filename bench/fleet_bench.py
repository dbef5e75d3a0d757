"""harden.yml (the netxfw role) on 1, 5, 10 and 20 lab hosts: first run and re-run.

    /usr/bin/python3 bench/fleet_bench.py [--sizes 1,5,10,20] [--json OUT]

For each size: a fresh lab (lab/netxfw_lab.py up --hosts N; waits for somebody else's lab to
go, never forces it), harden.yml with lab/harden-lab-vars.yml and forks = max(N, 5), timed;
the same again (must report changed=0 on every host and compile nothing); lab down. The
collection is a snapshot copy of the checkout taken at start, so edits made meanwhile do not
count as changes. Everything it made is removed on exit (lab, temp dirs).
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
PARTS = ("galaxy.yml", "meta", "plugins", "roles", "agent", "bpf")
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


def harden(env, forks):
    t0 = time.monotonic()
    p = subprocess.run([os.path.join(VENV, "ansible-playbook"), "-i", INVENTORY, "-f", str(forks),
                        os.path.join(REPO, "harden.yml"), "-e", "@" + os.path.join(REPO, "lab", "harden-lab-vars.yml")],
                       capture_output=True, text=True, env=env, timeout=3600, check=False)
    elapsed = time.monotonic() - t0
    recap = {m.group(1): {"changed": int(m.group(3)), "unreachable": int(m.group(4)), "failed": int(m.group(5))}
             for m in RECAP.finditer(p.stdout)}
    if p.returncode != 0 or any(v["failed"] or v["unreachable"] for v in recap.values()):
        raise RuntimeError("harden.yml failed:\n%s%s" % (p.stdout[-6000:], p.stderr[-3000:]))
    compiled = p.stdout.count("compile and load")  # only printed with -v; kept for completeness
    return elapsed, recap, compiled


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    ap.add_argument("--sizes", default="1,5,10,20")
    ap.add_argument("--json", default=os.path.join(REPO, "bench", "results", "fleet.json"))
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if os.geteuid() != 0:
        sys.exit("run as root")
    root = tempfile.mkdtemp(prefix="netxfw-fleet-bench-")
    coll = os.path.join(root, "collections", "ansible_collections", "netxfw", "firewall")
    snapshot(coll)
    os.makedirs(os.path.join(root, "tmp"))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(root, "collections"),
               ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false", ANSIBLE_LOCAL_TEMP=os.path.join(root, "tmp"),
               ANSIBLE_HOST_KEY_CHECKING="False", ANSIBLE_NOCOLOR="1")
    results = []
    ours = False
    try:
        for n in sizes:
            lab_up(n)
            ours = True
            forks = max(n, 5)
            first, recap1, dummy = harden(env, forks)
            again, recap2, dummy = harden(env, forks)
            changed_again = sum(v["changed"] for v in recap2.values())
            row = {"hosts": n, "forks": forks, "first_s": round(first, 1), "rerun_s": round(again, 1),
                   "first_changed_per_host": sorted({v["changed"] for v in recap1.values()}),
                   "rerun_changed": changed_again}
            results.append(row)
            print("%2d hosts (forks %2d): first run %6.1fs, re-run %6.1fs (changed on re-run: %d)"
                  % (n, forks, first, again, changed_again), flush=True)
            lab_down()
            ours = False
            if changed_again:
                raise RuntimeError("the re-run on %d hosts changed something" % n)
    finally:
        if ours:
            lab_down()
        shutil.rmtree(root, ignore_errors=True)
    out = {"when": time.strftime("%Y-%m-%dT%H:%M:%S"), "cpus": os.cpu_count(),
           "load_before": os.getloadavg(), "results": results}
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(out, f, indent=2)
    print("| hosts | forks | first run | re-run (changed=0, no compile) |")
    print("|---:|---:|---:|---:|")
    for r in results:
        print("| %d | %d | %.1f s | %.1f s |" % (r["hosts"], r["forks"], r["first_s"], r["rerun_s"]))


if __name__ == "__main__":
    main()
