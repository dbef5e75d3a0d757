# SPDX-License-Identifier: GPL-2.0-or-later
"""Drop rate and CPU per packet on a veth pair: netxfw (native XDP on the receiving veth)
against nftables netdev ingress with the same set (interval set) and iptables raw + ipset
(hash:net), same traffic, plus a drop-everything XDP program as the floor of the veth path.
Not a test module.

Traffic: bench/sender.c (AF_PACKET sendmmsg, compiled at run time) in nxb-gen sends 60-byte
UDP frames from 380 sources (203.0.113.1-254, blacklisted as /32 hosts, and
198.51.100.129-254, inside a blacklisted /25) to 198.51.100.1 in nxb-dut, bounded by a frame
count and a time limit. Every frame must be dropped.

CPU: /proc/stat deltas over the run, summed over CPUs, minus the background measured just
before the run (other work on the machine). The receive side (veth NAPI/backlog, XDP,
netdev ingress, IP input up to raw PREROUTING) runs in softirq context: "rx CPU" is the
softirq delta (tick-sampled: this kernel has no IRQ_TIME_ACCOUNTING). "total CPU" is every
busy category (sender included).
"""

import json
import os
import statistics
import time

import common
from common import log, sh

NFT_TABLE = "nxb"
# xdp: XDP frames redirected into the veth (bench/xdpgen.c): the receiver sees what a NIC driver sees.
# skb: AF_PACKET frames (bench/sender.c): they arrive as skbs, and XDP on veth first copies each one.
TRAFFIC = ("xdp", "skb")
IPSET = "nxb-bl"


def compile_sender():
    os.makedirs(common.RESULTS, exist_ok=True)
    exe = os.path.join(common.RESULTS, "sender")
    sh(["gcc", "-O2", "-Wall", "-o", exe, os.path.join(common.BENCH, "sender.c")])
    return exe


def traffic_sources():
    return ["203.0.113.%d" % i for i in range(1, 255)] + ["198.51.100.%d" % i for i in range(129, 255)]


# system -> index of its veth pair (nxbg<i> -> nxbd<i>)
DEVICES = {"netxfw": 0, "nftables": 1, "iptables_ipset": 2, "xdp_drop_all": 3}


class Systems:
    """Every system is set up once, on its own receiving veth, and stays on."""

    def __init__(self, deployment, cleanup):
        common.import_root()
        from ansible_collections.netxfw.firewall.plugins.module_utils import bpfsys, layout
        self.bpfsys, self.layout = bpfsys, layout
        self.pin_path = deployment["pin_path"]
        with open(deployment["entries_file"]) as f:
            self.entries = [e for e in json.load(f) if ":" not in e]
        self.ns = common.NS_DUT
        self.ncpu = bpfsys.num_possible_cpus()
        self.load = {}
        self.iptables = "iptables-legacy"
        if sh([self.iptables, "-t", "raw", "-L", "-n"], ns=self.ns, check=False).returncode != 0:
            self.iptables = "iptables"
        dev = dict((name, common.veth_pair_names(i)[1]) for name, i in DEVICES.items())
        self.dev = dev
        # GRO on turns on the receiving veth's NAPI mode, which XDP-frame traffic needs where no
        # XDP program is attached; on everywhere, so that all systems receive the same way.
        for d in dev.values():
            sh(["ethtool", "-K", d, "gro", "on"], ns=self.ns)

        # netxfw: attached (native XDP + TC) to nxbd0 by the deploy of bench/control.py
        # floor: drop everything, native XDP
        from bcc import BPF
        self.bpf = BPF(src_file=os.path.join(common.BENCH, "bare.c").encode(), cflags=["-DBARE_SIZE=16", "-w"])
        cleanup.push(self.bpf.cleanup)
        drop_all = os.path.join(common.BPFFS, "drop_all")
        bpfsys.obj_pin(self.bpf.load_func(b"xdp_drop_all", self.bpf.XDP).fd, drop_all)
        sh(["ip", "-n", self.ns, "link", "set", "dev", dev["xdp_drop_all"], "xdpdrv", "pinned", drop_all])

        # nftables: table, interval set with the same CIDRs, ingress chain and rule in one file.
        # (Any later nft command would read the 1M-element set back: minutes. Not needed.)
        path = os.path.join(common.RESULTS, "nxb-set.nft")
        with open(path, "w") as f:
            f.write("table netdev %s {\n set bl {\n  type ipv4_addr; flags interval; auto-merge;\n"
                    "  elements = { %s }\n }\n chain in {\n  type filter hook ingress device %s priority -500;\n"
                    "  ip saddr @bl counter drop\n }\n}\n"
                    % (NFT_TABLE, ", ".join(self.entries), dev["nftables"]))
        t = time.perf_counter()
        sh(["nft", "-f", path], ns=self.ns, timeout=1800)
        self.load["nft_set_seconds"] = round(time.perf_counter() - t, 2)
        os.unlink(path)

        # ipset hash:net with the same CIDRs, iptables raw PREROUTING on its veth
        path = os.path.join(common.RESULTS, "nxb-set.ipset")
        with open(path, "w") as f:
            f.write("create %s hash:net family inet hashsize %d maxelem %d\n"
                    % (IPSET, 1 << 20, max(2 * len(self.entries), 65536)))
            for e in self.entries:
                f.write("add %s %s\n" % (IPSET, e))
        t = time.perf_counter()
        with open(path) as f:
            common.subprocess.run(["ip", "netns", "exec", self.ns, "ipset", "restore"], stdin=f, check=True,
                                  timeout=1800)
        self.load["ipset_seconds"] = round(time.perf_counter() - t, 2)
        os.unlink(path)
        sh([self.iptables, "-t", "raw", "-I", "PREROUTING", "-i", dev["iptables_ipset"], "-m", "set",
            "--match-set", IPSET, "src", "-j", "DROP"], ns=self.ns)
        self.load["entries"] = len(self.entries)

    # -- drop counters
    def netxfw_drops(self):
        m = self.bpfsys.Map.open_pinned(os.path.join(self.pin_path, "counters"))
        try:
            raw = m.lookup(self.layout.encode_u32(self.layout.REASONS.index("drop_blacklist")))
            return self.layout.sum_counters(raw, self.ncpu)[0]
        finally:
            m.close()

    def rx_packets(self, name):
        """Frames the veth handed to the stack (where the nft ingress rule drops them all)."""
        out = json.loads(sh(["ip", "-j", "-s", "-n", self.ns, "link", "show", self.dev[name]]).stdout)[0]
        return out["stats64"]["rx"]["packets"]

    def ipt_drops(self):
        lines = sh([self.iptables, "-t", "raw", "-nvxL", "PREROUTING"], ns=self.ns).stdout.splitlines()
        for line in lines[2:]:
            if IPSET in line:
                return int(line.split()[0])
        return 0

    def drop_counter(self, name):
        return {"netxfw": self.netxfw_drops, "nftables": lambda: self.rx_packets("nftables"),
                "iptables_ipset": self.ipt_drops, "xdp_drop_all": None}[name]


def ksoftirqd_ticks():
    """utime+stime (clock ticks) of all ksoftirqd threads: receive work deferred out of the sender."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % pid) as f:
                st = f.read()
        except OSError:
            continue
        if "(ksoftirqd/" in st:
            fields = st.rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total


def generate(traffic, sender, src_file, gen_dev, dmac, opts):
    """Run the traffic generator; returns (its JSON, cpu_times before, after, ksoftirqd before, after)."""
    args = [gen_dev, dmac, common.DUT_IP, str(opts["frames"]), str(opts["seconds"]), src_file]
    if traffic == "skb":
        c0, k0 = common.cpu_times(), ksoftirqd_ticks()
        p = sh(["ip", "netns", "exec", common.NS_GEN, sender] + args, timeout=opts["seconds"] + 60)
        c1, k1 = common.cpu_times(), ksoftirqd_ticks()
        return json.loads(p.stdout.strip().splitlines()[-1]), c0, c1, k0, k1
    p = common.subprocess.Popen(["ip", "netns", "exec", common.NS_GEN, common.SYS_PYTHON,
                                 os.path.join(common.BENCH, "xdpgen.py")] + args,
                                stdin=common.subprocess.PIPE, stdout=common.subprocess.PIPE,
                                universal_newlines=True)
    try:
        line = p.stdout.readline()
        if line.strip() != "READY":
            raise RuntimeError("xdpgen did not start: %r" % line)
        c0, k0 = common.cpu_times(), ksoftirqd_ticks()
        p.stdin.write("GO\n")
        p.stdin.flush()
        out, dummy = p.communicate(timeout=opts["seconds"] + 60)
        c1, k1 = common.cpu_times(), ksoftirqd_ticks()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    if p.returncode != 0:
        raise RuntimeError("xdpgen failed with rc %s" % p.returncode)
    return json.loads(out.strip().splitlines()[-1]), c0, c1, k0, k1


def one_run(traffic, sender, src_file, gen_dev, dmac, opts, drops):
    # background: what the rest of the machine burns while we do nothing
    b0 = common.cpu_times()
    time.sleep(opts["background_seconds"])
    b1 = common.cpu_times()
    bg = dict((k, v / opts["background_seconds"]) for k, v in common.delta(b1, b0).items())
    d0 = drops() if drops else 0
    s, c0, c1, k0, k1 = generate(traffic, sender, src_file, gen_dev, dmac, opts)
    d1 = drops() if drops else None
    cpu = common.delta(c1, c0)
    secs = s["seconds"]
    dropped = (d1 - d0) if drops else s["sent"]
    ksoft = (k1 - k0) / os.sysconf("SC_CLK_TCK")
    own = s["user"] + s["system"] + ksoft
    net = dict((k, max(cpu[k] - bg[k] * secs, 1e-3)) for k in cpu)
    net["busy"] = max(net["busy"], own)  # background noise can exceed the signal
    return {
        "sent": s["sent"], "dropped": dropped, "seconds": round(secs, 3),
        "pps": round(dropped / secs), "sender_cpu": round(s["user"] + s["system"], 3),
        "cpu_raw": dict((k, round(v, 3)) for k, v in cpu.items()),
        "cpu_background_per_s": dict((k, round(v, 3)) for k, v in bg.items()),
        "ksoftirqd_cpu": round(ksoft, 3), "own_cpu_s": round(own, 3),
        "pkts_per_own_cpu_s": round(dropped / max(own, 1e-9)),
        "ns_per_pkt_own": round(own * 1e9 / max(dropped, 1), 1),
        "rx_cpu_s": round(net["softirq"], 3), "total_cpu_s": round(net["busy"], 3),
        "pkts_per_rx_cpu_s": round(dropped / net["softirq"]),
        "pkts_per_total_cpu_s": round(dropped / net["busy"]),
        "ns_per_pkt_rx": round(net["softirq"] * 1e9 / max(dropped, 1), 1),
        "ns_per_pkt_total": round(net["busy"] * 1e9 / max(dropped, 1), 1),
    }


def run(opts, cleanup, deployment):
    sender = compile_sender()
    src_file = os.path.join(common.RESULTS, "sources.txt")
    with open(src_file, "w") as f:
        f.write("\n".join(traffic_sources()) + "\n")
    log("veth: loading the same %s-entry set into nftables and ipset" % deployment.get("entries", "?"))
    systems = Systems(deployment, cleanup)
    log("veth: nft set %.1fs, ipset %.1fs" % (systems.load["nft_set_seconds"], systems.load["ipset_seconds"]))
    runs = dict(((t, name), []) for t in TRAFFIC for name in DEVICES)
    for r in range(opts["veth_rounds"]):
        for traffic in TRAFFIC:
            for name, i in DEVICES.items():
                gen_dev, dut_dev = common.veth_pair_names(i)
                dmac = common.link_mac(common.NS_DUT, dut_dev)
                res = one_run(traffic, sender, src_file, gen_dev, dmac, opts, systems.drop_counter(name))
                runs[(traffic, name)].append(res)
                log("veth %s round %d %s: %d pps, %d pkts/own-CPU-s, %d pkts/rx-CPU-s, dropped %d/%d"
                    % (traffic, r + 1, name, res["pps"], res["pkts_per_own_cpu_s"], res["pkts_per_rx_cpu_s"],
                       res["dropped"], res["sent"]))
    out = {"load": systems.load, "iptables": systems.iptables, "params": {
        "frames": opts["frames"], "seconds": opts["seconds"], "rounds": opts["veth_rounds"],
        "sources": len(traffic_sources()), "frame_bytes": 60}, "devices": systems.dev, "systems": {}}
    for (traffic, name), rs in runs.items():
        med = {}
        for key in ("pps", "pkts_per_own_cpu_s", "ns_per_pkt_own", "pkts_per_rx_cpu_s", "pkts_per_total_cpu_s",
                    "ns_per_pkt_rx", "ns_per_pkt_total"):
            med[key] = statistics.median(x[key] for x in rs)
        med["drop_ratio"] = round(sum(x["dropped"] for x in rs) / max(1, sum(x["sent"] for x in rs)), 4)
        out["systems"].setdefault(traffic, {})[name] = {"median": med, "runs": rs}
    return out
