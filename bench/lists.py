# SPDX-License-Identifier: GPL-2.0-or-later
"""Large lists through one netxfw_rule task (issue 15), side by side: this checkout's collection and
the collection of another git revision (default main) in one run, on the same data:

- the synthetic blacklist of the benchmarks (bench/common.py: half /32 hosts, half prefixes),
  100k entries as `entries:` (a playbook variable) and as `src:` (a file on the host), 1M as `src:`;
- a real, IPv6-heavy set: every country's ranges but five from Debian's geoip-database
  (bench/realdata.py: 303k IPv4 and 392k IPv6 prefixes) as `src:`;
- `entries:` the ways a playbook gives a list: a play variable (vars_files: ansible-core loads and
  tags it again for every variable lookup), an inventory variable (host_vars beside the playbook:
  loaded once), a lookup of a file on the controller split into a list (one CIDR per line), and
  that file's text as one string (this checkout only: REV may not take it).

Each push is an add (from an empty blacklist) and the same task again (the no-op), on REV's
collection and then on this one before the next push (interleaved, so that a shared machine's
drifting load weighs on both alike), each one
ansible-playbook run of that one task (-c local, the arguments in the play's vars_files, the result
written by the tree callback) measured by bench/spawner.py: wall and CPU seconds, and the peak RSS
of the module process on the host (the interpreter is bench/rss_python.py, which records it).
The data plane is loaded without interfaces under a private bpffs. Run as root, under the machine's
test lock, from the repository:

    flock /run/netxfw-tests.lock /opt/netxfw-venv/bin/python bench/lists.py [--compare main] [--quick]

Prints a markdown table and writes bench/results/lists-<time>.json. Not a test module.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import log  # noqa: E402
import control  # noqa: E402

VENV_BIN = os.path.dirname(control.VENV_PYTHON)
# entries: from a file on the controller, one CIDR per line: no playbook variable holds the list
LOOKUP = "{{ lookup('file', '%s').splitlines() }}"
TEXT = "{{ lookup('file', '%s') }}"  # the file's text as one string
HOST_VARS = "{{ nxb_list }}"  # an inventory variable, from host_vars/localhost.json beside the playbook
TASK = """- hosts: localhost
  gather_facts: false
  vars_files: [%s]
  tasks:
    - netxfw.firewall.%s: "{{ nxb_args }}"
"""


def collection_of(rev, work):
    """A collections root holding netxfw.firewall as of git revision `rev`."""
    root = os.path.join(work, "coll-" + rev.replace("/", "_"))
    dest = os.path.join(root, "ansible_collections", "netxfw", "firewall")
    os.makedirs(dest)
    archive = subprocess.run(["git", "-C", common.REPO, "archive", rev], check=True, stdout=subprocess.PIPE).stdout
    subprocess.run(["tar", "-x", "-C", dest], input=archive, check=True)
    return root


def rss_interpreter(work):
    """An executable that runs bench/rss_python.py (ansible runs the interpreter's first word only)."""
    path = os.path.join(work, "rss_python")
    if not os.path.exists(path):
        with open(path, "w") as f:
            f.write('#!/bin/sh\nexec %s %s "$@"\n' % (common.SYS_PYTHON, os.path.join(common.BENCH, "rss_python.py")))
        os.chmod(path, 0o755)
    return path


class Runner:
    """ansible-playbook runs of one collection against one pin_path / state_dir."""

    def __init__(self, label, coll_root, work):
        self.label, self.coll_root, self.work = label, coll_root, work
        self.pin_path = os.path.join(common.BPFFS, "lists-" + label)
        self.state_dir = os.path.join(work, "state-" + label)
        self.runs = 0

    def task(self, module, args, timeout=1800, host_vars=None):
        self.runs += 1
        tag = os.path.join(self.work, "%s-%d" % (self.label, self.runs))
        args = dict(args, pin_path=self.pin_path, state_dir=self.state_dir)
        with open(tag + "-vars.json", "w") as f:
            json.dump({"nxb_args": args}, f)
        play = tag + ".yml"
        if host_vars is not None:  # a directory of its own: host_vars beside a playbook apply to it
            play = os.path.join(tag + "-play", "play.yml")
            os.makedirs(os.path.join(tag + "-play", "host_vars"))
            with open(os.path.join(tag + "-play", "host_vars", "localhost.json"), "w") as f:
                json.dump(host_vars, f)
        with open(play, "w") as f:
            f.write(TASK % (json.dumps(tag + "-vars.json"), module))
        rss_log = tag + "-rss"
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=self.coll_root, ANSIBLE_LOCALHOST_WARNING="False",
                   ANSIBLE_INVENTORY_UNPARSED_WARNING="False", ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="False",
                   ANSIBLE_CALLBACKS_ENABLED="ansible.builtin.tree", ANSIBLE_CALLBACK_TREE_DIR=tag + "-tree",
                   NXB_RSS_LOG=rss_log, NXB_RSS_PYTHON=control.VENV_PYTHON)
        # the list in vars_files, as a play carries it (-e @file loads it twice and deep-copies it)
        cmd = [os.path.join(VENV_BIN, "ansible-playbook"), "-c", "local", "-i", "localhost,", play,
               "-e", "ansible_python_interpreter=" + rss_interpreter(self.work)]
        wall, rss, rc, tail = control.run_measured(cmd, timeout, env=env)[1:]
        if rc != 0:
            raise RuntimeError("%s: ansible-playbook %s failed (rc %s): %s" % (self.label, module, rc, tail))
        with open(os.path.join(tag + "-tree", "localhost")) as f:  # the tree callback's copy of the task's result
            result = json.load(f)
        module_rss = 0.0
        if os.path.exists(rss_log):
            with open(rss_log) as f:
                module_rss = max(float(line) for line in f if line.strip())
        return {"wall_seconds": round(wall, 3), "cpu_seconds": round(control.run_measured.last_cpu or 0, 3),
                "peak_rss_mib": round(rss, 1), "module_rss_mib": round(module_rss, 1),
                "changed": result.get("changed"), "added_count": result.get("added_count"),
                "transfer": (result.get("entries_transfer") or {}).get("mode")}


def push(runner, name, args, out, host_vars=None):
    runner.task("netxfw_rule", {"kind": "blacklist", "entries": [], "exclusive": True})  # empty first
    add = runner.task("netxfw_rule", dict(args, kind="blacklist", exclusive=True), host_vars=host_vars)
    noop = runner.task("netxfw_rule", dict(args, kind="blacklist", exclusive=True), host_vars=host_vars)
    out[name] = {"add": add, "noop": noop}
    log("lists %s %s: add %.1fs (module %.0f MiB), no-op %.1fs, transfer %s/%s"
        % (runner.label, name, add["wall_seconds"], add["module_rss_mib"], noop["wall_seconds"], add["transfer"],
           noop["transfer"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--compare", default="main", help="git revision measured beside this checkout ('' for none)")
    ap.add_argument("--quick", action="store_true", help="100k and the real set only (no 1M)")
    ap.add_argument("--only", action="append", default=[], help="only this push (e.g. 'src 1M'; repeatable)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/lists.py must run as root")
    common.import_root()
    cleanup = common.Cleanup()
    control.start_spawner()
    cleanup.push(control.stop_spawner)
    common.ensure_bpffs()
    work = tempfile.mkdtemp(prefix="nxb-lists-")
    cleanup.push(__import__("shutil").rmtree, work, True)

    log("lists: data sets")
    syn = common.Synthetic((1000000 if not args.quick else 100000) // 2 + 1)
    data = {"100k": common.cidr_strings(syn, 100000) + control.covers()}
    if not args.quick:
        data["1M"] = common.cidr_strings(syn, 1000000) + control.covers()
    real = subprocess.run([common.SYS_PYTHON, os.path.join(common.BENCH, "realdata.py")], check=True,
                          stdout=subprocess.PIPE, universal_newlines=True).stdout.split()
    data["real"] = real
    files = {}
    for name, entries in data.items():
        files[name] = control.write_src(os.path.join(work, name + ".txt"), entries)
    counts = dict((name, len(entries)) for name, entries in data.items())
    counts["real_ipv6"] = sum(1 for e in real if ":" in e)

    this_root = os.path.dirname(os.path.dirname(os.path.dirname(
        __import__("ansible_collections.netxfw.firewall", fromlist=["x"]).__path__[0])))
    collections = [("this", this_root)]
    if args.compare:
        collections.insert(0, (args.compare, collection_of(args.compare, work)))
    out = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "counts": counts, "machine": common.machine(),
           "git": common.sh(["git", "-C", common.REPO, "rev-parse", "--short", "HEAD"], check=False).stdout.strip(),
           "compare": args.compare, "results": {}}
    # interleaved: each push runs on REV's collection and then on this one before the next push, so
    # that the load of a shared machine, which drifts over minutes, weighs on both sides alike
    runners = [Runner(label.replace("/", "_"), root, work) for label, root in collections]
    # (name, task arguments, host_vars, whether REV runs it too)
    pushes = [("entries 100k", {"entries": data["100k"]}, None, True), ("src 100k", {"src": files["100k"]}, None, True),
              ("host_vars 100k", {"entries": HOST_VARS}, {"nxb_list": data["100k"]}, True),
              ("lookup 100k", {"entries": LOOKUP % files["100k"]}, None, True),
              ("text 100k", {"entries": TEXT % files["100k"]}, None, False),
              ("src real", {"src": files["real"]}, None, True), ("lookup real", {"entries": LOOKUP % files["real"]}, None, True),
              ("text real", {"entries": TEXT % files["real"]}, None, False)]
    if "1M" in data:
        pushes.append(("src 1M", {"src": files["1M"]}, None, True))
    if args.only:
        pushes = [push_ for push_ in pushes if push_[0] in args.only]
    started = []
    try:
        for (label, _root), runner in zip(collections, runners):
            out["results"][label] = {}
            started.append(runner)
            runner.task("netxfw_program", {"interfaces": []})
        for name, push_args, host_vars, on_rev in pushes:
            for (label, _root), runner in zip(collections, runners):
                if label == "this" or on_rev:
                    push(runner, name, push_args, out["results"][label], host_vars)
    finally:
        for runner in started:
            runner.task("netxfw_program", {"state": "absent"})
    os.makedirs(common.RESULTS, exist_ok=True)
    path = os.path.join(common.RESULTS, "lists-%s.json" % time.strftime("%Y%m%d-%H%M%S"))
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(table(out))
    log("results: %s" % path)
    cleanup.run()


def table(out):
    labels = list(out["results"])
    other = labels[0] if len(labels) > 1 else None
    rows = ["| task | entries | %s wall s | %s CPU s | this wall s | this CPU s | module peak RSS MiB (%s / this) | transfer |"
            % (other or "-", other or "-", other or "-"), "|---|---|---|---|---|---|---|---|"]
    this = out["results"]["this"]
    for name, pair in this.items():
        size = out["counts"][name.split()[1]]
        for step in ("add", "noop"):
            mine = pair[step]
            theirs = out["results"][other].get(name, {}).get(step) if other else None
            rows.append("| %s, %s | %s | %s | %s | %.2f | %.2f | %s / %.0f | %s |" % (
                name, "add" if step == "add" else "no-op re-run", "{:,}".format(size),
                "%.2f" % theirs["wall_seconds"] if theirs else "-", "%.2f" % theirs["cpu_seconds"] if theirs else "-",
                mine["wall_seconds"], mine["cpu_seconds"], "%.0f" % theirs["module_rss_mib"] if theirs else "-",
                mine["module_rss_mib"], mine["transfer"] or "-"))
    return "\n".join(rows)


if __name__ == "__main__":
    main()
