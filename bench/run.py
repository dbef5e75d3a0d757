# SPDX-License-Identifier: GPL-2.0-or-later
"""netxfw benchmarks, side by side in one run (issue 7). Run as root from the repository:

    /opt/netxfw-venv/bin/python bench/run.py            # full run, ~15 min on 2 cores
    /opt/netxfw-venv/bin/python bench/run.py --quick    # ~3 min: fewer repeats, 100k control plane

Writes bench/results/run-<time>.json and bench/results/latest.json (git-ignored), then
regenerates the tables and plots of docs/benchmarks.md with bench/report.py (--no-report to skip).
Everything it creates (namespaces nxb-gen, nxb-dut, nxb-xf with their veths, XDP/TC programs,
nft tables, iptables rules and ipsets; the bpffs at /tmp/nxb-bpffs with its pins; temp dirs)
is removed at the end, on errors and on SIGINT/SIGTERM. Needs: bench/install-deps.
"""

import argparse
import json
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import log  # noqa: E402

FULL = {"sizes": [1000, 100000, 1000000], "packets": 1024, "repeat": 200, "rounds": 7, "cold_rounds": 3,
        "cp_sizes": [100000, 1000000], "module": True,
        "frames": 30000000, "seconds": 8, "veth_rounds": 3, "background_seconds": 2}
QUICK = {"sizes": [1000, 100000, 1000000], "packets": 256, "repeat": 100, "rounds": 5, "cold_rounds": 1,
         "cp_sizes": [100000], "module": True,
         "frames": 5000000, "seconds": 3, "veth_rounds": 1, "background_seconds": 1}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repeats and sizes (~3 min)")
    ap.add_argument("--only", default="xdp,control,veth", help="comma list of sections: xdp,control,veth "
                    "(veth needs control: it reuses the deployed netxfw)")
    ap.add_argument("--no-module", action="store_true", help="skip the ansible netxfw_rule module runs")
    ap.add_argument("--no-report", action="store_true", help="do not regenerate docs/benchmarks.md and plots")
    ap.add_argument("--compare-rev", default="", help="also test-run bpf/netxfw.c as of this git revision "
                    "(e.g. HEAD~1), side by side: before/after numbers of a data-plane change")
    ap.add_argument("--source", default="", help="test-run this netxfw.c (and the lib/ beside it) instead of the engine's embedded "
                    "source (xdp section only)")
    ap.add_argument("--label", default="", help="free text stored with the results (e.g. 'before', 'after')")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/run.py must run as root (BPF, namespaces, nftables)")
    opts = dict(QUICK if args.quick else FULL)
    if args.no_module:
        opts["module"] = False
    if args.source:
        opts["source"] = os.path.abspath(args.source)
    if args.compare_rev:
        opts["compare_rev"] = args.compare_rev
    only = set(args.only.split(","))
    if "veth" in only:
        only.add("control")

    common.import_root()
    cleanup = common.Cleanup()
    import control
    control.start_spawner()  # before anything big is allocated: see bench/spawner.py
    cleanup.push(control.stop_spawner)
    common.remove_everything()  # a crashed earlier run
    cleanup.push(common.remove_everything)
    common.ensure_bpffs()
    os.makedirs(common.RESULTS, exist_ok=True)

    started = time.time()
    out = {"label": args.label, "mode": "quick" if args.quick else "full", "opts": opts,
           "machine": common.machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
           "git": common.sh(["git", "-C", common.REPO, "rev-parse", "--short", "HEAD"], check=False).stdout.strip(),
           "git_dirty": common.sh(["git", "-C", common.REPO, "status", "--short", "--untracked-files=no"],
                                  check=False).stdout.split("\n"),
           "errors": {}}
    try:
        sections(out, opts, only, cleanup)
    except BaseException:
        out["errors"]["interrupted"] = traceback.format_exc()
        raise
    finally:
        path = save(out, started)  # also the partial results of an interrupted run
    cleanup.run()
    if not args.no_report and "interrupted" not in out["errors"]:
        import report
        report.main([path])
    return 1 if out["errors"] else 0


def save(out, started):
    out["seconds"] = round(time.time() - started, 1)
    out["machine"]["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = os.path.join(common.RESULTS, "run-%s.json" % stamp)
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    with open(os.path.join(common.RESULTS, "latest.json"), "w") as f:
        json.dump(out, f, indent=1)
    log("results: %s (%.0fs)" % (path, out["seconds"]))
    return path


def sections(out, opts, only, cleanup):
    import control
    nmax = max(opts["sizes"] + opts["cp_sizes"])
    syn = None

    if "xdp" in only:
        import xdp_cost
        section = common.Cleanup(register=False)
        cleanup.push(section.run)
        try:
            out["xdp_cost"] = xdp_cost.run(opts, section)
        except Exception:
            out["errors"]["xdp_cost"] = traceback.format_exc()
            log(out["errors"]["xdp_cost"])
        section.run()

    deployment = None
    if "control" in only:
        try:
            common.make_veth_pairs()
            log("control: generating the %d-entry blacklist" % nmax)
            syn = common.Synthetic(nmax // 2 + 1)
            out["control"], deployment = control.run(opts, cleanup, syn)
            deployment["entries"] = out["control"]["entries_last"]
        except Exception:
            out["errors"]["control"] = traceback.format_exc()
            log(out["errors"]["control"])

    if "veth" in only and deployment:
        import veth
        section = common.Cleanup(register=False)
        cleanup.push(section.run)
        try:
            out["veth"] = veth.run(opts, section, deployment)
        except Exception:
            out["errors"]["veth"] = traceback.format_exc()
            log(out["errors"]["veth"])
        section.run()


if __name__ == "__main__":
    sys.exit(main())
