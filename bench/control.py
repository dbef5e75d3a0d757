# SPDX-License-Identifier: GPL-2.0-or-later
"""Control-plane benchmark: first deploy (compile + load + attach), blacklist pushes of
100k and 1M CIDRs through the engine (Firewall.apply_rules, what netxfw_rule calls) and
through the real module (one netxfw_rule task in ansible-playbook, the list given as `entries:`
and as `src:`, a file on the host), their no-op re-runs, and the peak RSS of each process. Leaves netxfw deployed on the DUT veth with the
largest list, for the veth benchmark. Not a test module."""

import json
import os
import re
import subprocess
import tempfile

import common
from common import log

VENV_PYTHON = "/opt/netxfw-venv/bin/python"


def covers():
    """Entries that the veth traffic hits: 254 hosts (hash) and one /25 (LPM)."""
    return ["203.0.113.%d/32" % i for i in range(1, 255)] + ["198.51.100.128/25"]


_SPAWNER = None


def start_spawner():
    """Start bench/spawner.py while this process is still small (see its docstring)."""
    global _SPAWNER
    if _SPAWNER is None:
        _SPAWNER = subprocess.Popen([common.SYS_PYTHON, os.path.join(common.BENCH, "spawner.py")],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, universal_newlines=True)
    return _SPAWNER


def stop_spawner():
    global _SPAWNER
    if _SPAWNER is not None:
        _SPAWNER.stdin.close()
        try:
            _SPAWNER.wait(timeout=30)
        except subprocess.TimeoutExpired:
            _SPAWNER.kill()
            _SPAWNER.wait()
        _SPAWNER = None


def run_measured(cmd, timeout, env=None):
    """Run cmd through the spawner: (parsed last JSON line of its output or None, wall seconds,
    peak RSS MiB of it and the children it waited for, rc, output tail)."""
    sp = start_spawner()
    sp.stdin.write(json.dumps({"cmd": cmd, "timeout": timeout, "env": env}) + "\n")
    sp.stdin.flush()
    ans = json.loads(sp.stdout.readline())
    text = ans["out"]
    parsed = None
    for line in reversed(text.strip().splitlines()):
        try:
            parsed = json.loads(line)
            break
        except ValueError:
            continue
    run_measured.last_cpu = ans.get("cpu")  # user + system CPU of the process and its children
    return parsed, ans["wall"], ans["maxrss_mib"], ans["rc"], text[-2000:]


def child(args, ns=None, timeout=900):
    cmd = [common.SYS_PYTHON, os.path.join(common.BENCH, "cp_child.py")] + args
    if ns:
        cmd = ["ip", "netns", "exec", ns] + cmd
    parsed, wall, rss, rc, tail = run_measured(cmd, timeout)
    if rc != 0 or parsed is None:
        raise RuntimeError("cp_child %s failed (rc %s): %s" % (args[0], rc, tail))
    parsed.update({"wall_seconds": round(wall, 3), "peak_rss_mib": round(rss, 1),
                   "cpu_seconds": round(run_measured.last_cpu or 0, 3)})
    return parsed


PLAYBOOK = """- hosts: localhost
  gather_facts: false
  tasks:
    - name: push the benchmark blacklist
      netxfw.firewall.netxfw_rule:
        kind: blacklist
        entries: "{{ nxb_entries }}"
        pin_path: %s
        state_dir: %s
"""


PLAYBOOK_SRC = """- hosts: localhost
  gather_facts: false
  tasks:
    - name: push the benchmark blacklist from a file on the host
      netxfw.firewall.netxfw_rule:
        kind: blacklist
        src: %s
        pin_path: %s
        state_dir: %s
"""


def write_src(path, entries):
    """The list as netxfw_rule's plain-text src: one CIDR per line."""
    with open(path, "w") as f:
        f.write("\n".join(entries) + "\n")
    return path


def module(coll_root, pin_path, state_dir, entries_file, timeout=1200, src=None):
    """One netxfw_rule task through ansible-playbook (a playbook, not `ansible -m`: an ad-hoc
    run prints the whole result). The list is the `entries:` argument (entries_file: a vars file
    with nxb_entries), or, with src (a path on the host, here local), read by the module itself."""
    work = os.path.dirname(entries_file)
    book = os.path.join(work, "push-src.yml" if src else "push.yml")
    with open(book, "w") as f:
        if src:
            f.write(PLAYBOOK_SRC % (json.dumps(src), json.dumps(pin_path), json.dumps(state_dir)))
        else:
            f.write(PLAYBOOK % (json.dumps(pin_path), json.dumps(state_dir)))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=coll_root, ANSIBLE_LOCALHOST_WARNING="False",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="False", ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="False")
    playbook = os.path.join(os.path.dirname(VENV_PYTHON), "ansible-playbook")
    cmd = [playbook, "-c", "local", "-i", "localhost,", book] + ([] if src else ["-e", "@" + entries_file]) + \
        ["-e", "ansible_python_interpreter=" + VENV_PYTHON]
    wall, rss, rc, tail = run_measured(cmd, timeout, env=env)[1:]
    if rc != 0:
        raise RuntimeError("ansible-playbook netxfw_rule failed (rc %s): %s" % (rc, tail))
    m = re.search(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)", tail)
    # ru_maxrss after wait4(): the largest of ansible-playbook and the module processes it waited for
    return {"wall_seconds": round(wall, 3), "peak_rss_mib": round(rss, 1),
            "cpu_seconds": round(run_measured.last_cpu or 0, 3), "changed": None if not m else m.group(2) != "0"}


def run(opts, cleanup, syn):
    """Returns (results, deployment) where deployment tells veth.py where netxfw is pinned."""
    coll_root = common.import_root() or os.path.dirname(os.path.dirname(os.path.dirname(
        __import__("ansible_collections.netxfw.firewall", fromlist=["x"]).__path__[0])))
    work = tempfile.mkdtemp(prefix="nxb-cp-")
    cleanup.push(__import__("shutil").rmtree, work, True)
    pin_path = os.path.join(common.BPFFS, "netxfw")
    state_dir = os.path.join(work, "state")
    res = {"sizes": opts["cp_sizes"], "engine": {}, "module": {}}

    log("control: first deploy (compile + load + attach native XDP to %s)" % common.VETH_DUT)
    res["deploy"] = child(["deploy", pin_path, state_dir, common.VETH_DUT], ns=common.NS_DUT)
    res["deploy_again"] = child(["deploy", pin_path, state_dir, common.VETH_DUT], ns=common.NS_DUT)
    log("control: deploy %.1fs (re-run %.1fs)" % (res["deploy"]["wall_seconds"], res["deploy_again"]["wall_seconds"]))

    empty = os.path.join(work, "empty.json")
    with open(empty, "w") as f:
        json.dump([], f)
    files = {}
    for n in opts["cp_sizes"]:
        path = os.path.join(work, "bl%d.json" % n)
        with open(path, "w") as f:
            json.dump(common.cidr_strings(syn, n) + covers(), f)
        files[n] = path
        if opts.get("module"):
            vpath = os.path.join(work, "vars%d.json" % n)
            with open(vpath, "w") as f:
                json.dump({"nxb_entries": common.cidr_strings(syn, n) + covers()}, f)
            files[("vars", n)] = vpath
            files[("src", n)] = write_src(os.path.join(work, "bl%d.txt" % n), common.cidr_strings(syn, n) + covers())
    evars = os.path.join(work, "vars_empty.json")
    with open(evars, "w") as f:
        json.dump({"nxb_entries": []}, f)

    for n in opts["cp_sizes"]:
        r = {}
        r["clear"] = child(["rules", pin_path, state_dir, "blacklist", empty, "exclusive"])
        r["add"] = child(["rules", pin_path, state_dir, "blacklist", files[n]])
        r["noop"] = child(["rules", pin_path, state_dir, "blacklist", files[n]])
        res["engine"][str(n)] = r
        log("control engine %d: add %.1fs (rss %.0f MiB), no-op %.1fs, clear before %.1fs"
            % (n, r["add"]["wall_seconds"], r["add"]["peak_rss_mib"], r["noop"]["wall_seconds"],
               r["clear"]["wall_seconds"]))
        if opts.get("module"):
            m = {}
            child(["rules", pin_path, state_dir, "blacklist", empty, "exclusive"])
            try:
                m["add"] = module(coll_root, pin_path, state_dir, files[("vars", n)])
                m["noop"] = module(coll_root, pin_path, state_dir, files[("vars", n)])
                log("control module %d: add %.1fs (rss %.0f MiB), no-op %.1fs"
                    % (n, m["add"]["wall_seconds"], m["add"]["peak_rss_mib"], m["noop"]["wall_seconds"]))
                child(["rules", pin_path, state_dir, "blacklist", empty, "exclusive"])
                m["src_add"] = module(coll_root, pin_path, state_dir, files[("vars", n)], src=files[("src", n)])
                m["src_noop"] = module(coll_root, pin_path, state_dir, files[("vars", n)], src=files[("src", n)])
                log("control module src %d: add %.1fs (rss %.0f MiB), no-op %.1fs"
                    % (n, m["src_add"]["wall_seconds"], m["src_add"]["peak_rss_mib"], m["src_noop"]["wall_seconds"]))
            except Exception as exc:
                m["error"] = str(exc)[-1500:]
                log("control module %d failed: %s" % (n, str(exc)[-500:]))
                # make sure the engine state is the list for the veth part
                child(["rules", pin_path, state_dir, "blacklist", files[n]])
            res["module"][str(n)] = m
    res["entries_last"] = len(common.cidr_strings(syn, max(opts["cp_sizes"]))) + len(covers())
    return res, {"pin_path": pin_path, "state_dir": state_dir, "entries_file": files[max(opts["cp_sizes"])]}
