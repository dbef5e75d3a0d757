# SPDX-License-Identifier: GPL-2.0-or-later
"""Per-packet cost of each netxfw path with BPF_PROG_TEST_RUN, next to a bare hash lookup,
a bare LPM-trie lookup and xdp-filter, at growing blacklist sizes. Not a test module.

Every number is ns per packet net of an empty XDP program, measured over many distinct
crafted packets (round-robin, each test run repeated `repeat` times; the median over rounds
of the per-round means). A second, "cold" figure runs each packet once (repeat=1), so that
consecutive lookups touch different keys.
"""

import json
import os
import random
import statistics
import struct
import time

import common
from common import ip4, log, sh

XDP_DROP, XDP_PASS = 1, 2
RULE_PORT = 443
CT_FILL = 50000
N_WL = 1000
N_RULES = 1000
XF_IFACE = "nxbx0"


def _mask(plen):
    return (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF


def _covered(a, by_len):
    return any((a & _mask(p)) in nets for p, nets in by_len.items())


def host_key(a):
    return struct.pack("!I", a)


def lpm_key(a, plen):
    return struct.pack("=I", plen) + struct.pack("!I", a)


def ct_key(src, dst, sport, dport, proto=6):
    return (struct.pack("!I", src) + b"\0" * 12 + struct.pack("!I", dst) + b"\0" * 12
            + struct.pack("!HH", sport, dport) + struct.pack("=BB2x", proto, 4))


def cidr(a, plen=32):
    return "%s/%d" % (ip4(a), plen)


class XdpFilter:
    """xdp-filter (xdp-tools) loaded in skb mode on a veth in its own namespace, pins in our bpffs."""

    def __init__(self, cleanup):
        self.env = dict(os.environ, LIBXDP_BPFFS=common.BPFFS)
        sh(["xdp-filter", "load", "-m", "skb", "-f", "ipv4,ipv6", XF_IFACE], ns=common.NS_XF, env=self.env)
        self.prog_id = common.link_xdp_prog_id(common.NS_XF, XF_IFACE)
        self.version = sh(["xdp-filter", "-V"], check=False).stdout.strip() or \
            sh(["dpkg-query", "-W", "-f", "${Version}", "xdp-tools"], check=False).stdout.strip()
        from ansible_collections.netxfw.firewall.plugins.module_utils import bpfsys
        self.bpfsys = bpfsys
        self.fd = bpfsys.prog_fd_by_id(self.prog_id)
        self.name = bpfsys.prog_info(self.fd)["name"]
        self.map = bpfsys.Map.open_pinned(os.path.join(common.BPFFS, "xdp-filter", "filter_ipv4"))
        self.capacity = self.map.max_entries
        self.ncpu = bpfsys.num_possible_cpus()
        self.count = 0

    def add_cli(self, addrs):
        """The documented way, one address per call (used for the first few entries)."""
        for a in addrs:
            sh(["xdp-filter", "ip", "-m", "src", ip4(a)], ns=common.NS_XF, env=self.env)
        self.count += len(addrs)

    def add_bulk(self, addrs):
        # value: per-CPU u64, low bits = mode flags (1 = src), as `xdp-filter ip -m src` writes it
        value = struct.pack("=Q", 1) * self.ncpu
        self.map.update_many((host_key(a), value) for a in addrs)
        self.count += len(addrs)


HOLDER_DEVS = ["nxbx0p", "nxbx1", "nxbx1p", "nxbx2", "nxbx2p", "nxbx3", "nxbx3p"]


def holder_namespace(cleanup):
    """A namespace with veth pairs: xdp-filter goes on nxbx0, and every program we test-run is
    also attached (generic mode) to one of the other ends. An attached program stays in the
    kernel's XDP dispatcher; otherwise each BPF_PROG_TEST_RUN call adds it to and removes it from
    the dispatcher, which waits for an RCU grace period (milliseconds) and makes the program run
    through an indirect call instead of the dispatcher's direct one."""
    sh(["ip", "netns", "add", common.NS_XF])
    cleanup.push(sh, ["ip", "netns", "del", common.NS_XF], False)
    for i in range(4):
        sh(["ip", "-n", common.NS_XF, "link", "add", "nxbx%d" % i, "type", "veth", "peer", "name", "nxbx%dp" % i])
        sh(["ip", "-n", common.NS_XF, "link", "set", "nxbx%d" % i, "up"])
    return list(HOLDER_DEVS)


def hold(fd, name, devs):
    from ansible_collections.netxfw.firewall.plugins.module_utils import bpfsys
    path = os.path.join(common.BPFFS, "hold_" + name)
    bpfsys.obj_pin(fd, path)
    sh(["ip", "-n", common.NS_XF, "link", "set", "dev", devs.pop(0), "xdpgeneric", "pinned", path])
    os.unlink(path)


def data_plane_file(path):
    """A netxfw.c as BCC compiles it: with the lib/ headers beside it joined in (scripts/gen_bpf_source.py)."""
    def read(rel):
        with open(os.path.join(os.path.dirname(path), rel)) as f:
            return f.read()
    return common.gen_bpf_source().joined(lambda rel: read(os.path.basename(path) if rel == "netxfw.c" else rel))


def measure(combos, repeat, rounds, cold_rounds):
    """combos: list of (label, fd, packets). Returns {label: {...}} of absolute ns."""
    from ansible_collections.netxfw.firewall.plugins.module_utils.bpfsys import test_run
    hot = dict((c[0], []) for c in combos)
    cold = dict((c[0], []) for c in combos)
    order = list(combos)
    rnd = random.Random(3)
    for r in range(rounds):
        rnd.shuffle(order)
        for label, fd, pkts in order:
            total = 0
            for p in pkts:
                total += test_run(fd, p, repeat)[1]
            hot[label].append(total / len(pkts))
    for r in range(cold_rounds):
        rnd.shuffle(order)
        for label, fd, pkts in order:
            total = 0
            for p in pkts:
                total += test_run(fd, p, 1)[1]
            cold[label].append(total / len(pkts))
    out = {}
    for label in hot:
        out[label] = {"hot_ns": statistics.median(hot[label]),
                      "hot_rounds": [round(x, 2) for x in hot[label]],
                      "cold_ns": statistics.median(cold[label]) if cold[label] else None}
    return out


def validate(combos, expected):
    from ansible_collections.netxfw.firewall.plugins.module_utils.bpfsys import test_run
    bad = {}
    for label, fd, pkts in combos:
        want = expected[label]
        wrong = sum(1 for p in pkts if test_run(fd, p, 1)[0] != want)
        if wrong:
            bad[label] = wrong
    return bad


def run(opts, cleanup):
    common.import_root()
    from bcc import BPF
    from ansible_collections.netxfw.firewall.plugins.module_utils import bpfsys, layout, sources
    from ansible_collections.netxfw.firewall.plugins.module_utils.bpf_source import SOURCE

    sizes = opts["sizes"]
    npk = opts["packets"]
    nmax = max(sizes)
    t0 = time.time()
    log("xdp cost: generating %d hosts + %d prefixes" % (nmax, nmax))
    syn = common.Synthetic(nmax)
    rnd = random.Random(11)

    # ---- whitelist, rules, conntrack: fixed, in the same dense range as the blacklist
    wl_hosts, wl_prefixes = [], []
    while len(wl_hosts) < N_WL:
        a = rnd.randrange(common.SYN_LO, common.SYN_HI)
        if a not in syn.host_set and not syn.covered(a):
            wl_hosts.append(a)
    while len(wl_prefixes) < N_WL:
        plen = rnd.choice((24, 26, 28))
        a = rnd.randrange(common.SYN_LO, common.SYN_HI) & _mask(plen)
        wl_prefixes.append((a, plen))
    wl_by_len = {32: set(wl_hosts)}
    for a, plen in wl_prefixes:
        wl_by_len.setdefault(plen, set()).add(a)

    rule_prefixes = []
    while len(rule_prefixes) < N_RULES:
        a = rnd.randrange(common.SYN_LO, common.SYN_HI) & _mask(24)
        probe = a | 0x55
        if not syn.covered(probe) and probe not in syn.host_set and not _covered(probe, wl_by_len):
            rule_prefixes.append(a)
    rule_by_len = {24: set(rule_prefixes)}

    def clean(addrs, extra=()):
        return [a for a in addrs if not _covered(a, wl_by_len) and not any(_covered(a, b) for b in extra)]

    def sample(gen, count, extra=()):
        out = []
        while len(out) < count:
            out.extend(clean(gen(count - len(out)), extra))
        return out

    dmac = b"\x02\0\0\0\0\x01"
    dst = struct.unpack("!I", bytes([198, 51, 100, 1]))[0]

    def tcp(srcs, sport_base=40000):
        return [common.ipv4_packet(s, dst, 6, sport_base + i % 20000, RULE_PORT, dmac=dmac)
                for i, s in enumerate(srcs)]

    ct_srcs = [rnd.randrange(common.SYN_LO, common.SYN_HI) for dummy in range(npk)]
    ct_flows = [(s, 30000 + i % 30000) for i, s in enumerate(ct_srcs)]
    rule_srcs = []
    for i in range(npk):
        a = rule_prefixes[i % N_RULES] | rnd.randrange(256)
        if not syn.covered(a) and a not in syn.host_set and not _covered(a, wl_by_len):
            rule_srcs.append(a)
    miss_srcs = sample(syn.misses, npk, (rule_by_len,))
    wl_host_srcs = [wl_hosts[i % N_WL] for i in range(npk)]
    wl_lpm_srcs = [(wl_prefixes[i % N_WL][0] | rnd.randrange(1 << (32 - wl_prefixes[i % N_WL][1])))
                   for i in range(npk)]
    wl_lpm_srcs = [a for a in wl_lpm_srcs if a not in set(wl_hosts)]

    def m(bpf, name):
        return bpfsys.Map(bpf[name.encode()].map_fd, name)

    # ---- programs
    caps = dict((name, spec[1]) for name, spec in layout.CAPACITIES.items())
    log("xdp cost: compiling netxfw (engine source, default capacities) and the reference programs")
    before = before_fd = None
    if opts.get("compare_rev"):
        # the data plane as of another commit, measured side by side with the same maps and packets
        if os.path.isfile(opts["compare_rev"]):
            before_src = data_plane_file(opts["compare_rev"])
        else:
            before_src = common.gen_bpf_source().joined(
                lambda rel: sh(["git", "-C", common.REPO, "show", "%s:bpf/%s" % (opts["compare_rev"], rel)]).stdout)
        before = BPF(text=before_src, cflags=layout.cflags(caps) + ["-w"])
        cleanup.push(before.cleanup)
        before_fd = before.load_func(b"xdp_ingress", BPF.XDP).fd
    main_src = SOURCE
    if opts.get("source"):  # another netxfw.c in place of the engine's (a change not yet in bpf_source.py)
        main_src = data_plane_file(opts["source"])
    nx = BPF(text=main_src, cflags=layout.cflags(caps) + ["-w"])
    cleanup.push(nx.cleanup)
    nx_fd = nx.load_func(b"xdp_ingress", BPF.XDP).fd
    bare = BPF(src_file=os.path.join(common.BENCH, "bare.c").encode(),
               cflags=["-DBARE_SIZE=%d" % max(nmax + 16, 1024), "-w"])
    cleanup.push(bare.cleanup)
    empty_fd = bare.load_func(b"xdp_empty", BPF.XDP).fd
    bhash_fd = bare.load_func(b"xdp_bare_hash", BPF.XDP).fd
    blpm_fd = bare.load_func(b"xdp_bare_lpm", BPF.XDP).fd

    ct_keys = [ct_key(rnd.randrange(1 << 32), rnd.randrange(1 << 32), rnd.randrange(1024, 65536), 443)
               for dummy in range(CT_FILL)] + [ct_key(s, dst, sp, RULE_PORT) for s, sp in ct_flows]
    zero = layout.encode_u64(0)

    def has_map(bpf, name):
        try:
            bpf[name.encode()]
        except KeyError:
            return False
        return True

    def per_list(bpf):
        """A program of layout 1 (--compare-rev before this layout) has a hash and a trie per list."""
        return has_map(bpf, "bl4_host")

    # what rules.json would hold: the whitelist, the port rules' sources, the blacklist as it grows
    wl_cidrs = [cidr(a) for a in wl_hosts] + [cidr(a, p) for a, p in wl_prefixes]
    rule_sources = [{"source": cidr(a, 24)} for a in rule_prefixes]

    def setup_nx(bpf):
        """Fixed content of a netxfw program's maps: config, whitelist, port rules."""
        cfg = m(bpf, "config")
        # CFG_RULES_GENERATION as the engine leaves it after writing the maps
        for idx, val in ((layout.CFG_POLICY, 1), (layout.CFG_CT_ENABLED, 1),
                         (layout.CFG_CT_TIMEOUT_NS, 86400 * 10 ** 9), (layout.CFG_RULES_GENERATION, 1)):
            cfg.update(layout.encode_u32(idx), layout.encode_u64(val))
        if per_list(bpf):
            m(bpf, "wl4_host").update_many((host_key(a), zero) for a in wl_hosts)
            m(bpf, "wl4_lpm").update_many((lpm_key(a, p), zero) for a, p in wl_prefixes)
        m(bpf, "rules4").update_many(
            (struct.pack("=IB", 24 + 24, 6) + struct.pack("!H", RULE_PORT) + struct.pack("!I", a) + b"\0",
             layout.encode_u32(1)) for a in rule_prefixes)

    def fill_sources(bpf, n):
        """The engine's own resolution and writer, as apply_rules runs them."""
        blacklist = [{"cidr": cidr(a), "expires": None} for a in syn.hosts[:n]] + \
            [{"cidr": cidr(a, p), "expires": None} for a, p in syn.prefixes[:n]]
        t_r = time.time()
        want = sources.to_maps(sources.resolve(wl_cidrs, blacklist, rule_sources), lambda e: 0)
        resolved_s = time.time() - t_r
        names = sources.SRC_MAPS + ((sources.FILTER_MAP,) if has_map(bpf, sources.FILTER_MAP) else ())
        sources.write(dict((name, m(bpf, name)) for name in names), want)
        return resolved_s

    nx_progs = [nx] + ([before] if before is not None else [])
    for bpf in nx_progs:
        setup_nx(bpf)

    def ct_refresh():  # flows seen "now", so none times out while we measure
        ctv = struct.pack("=QQ", time.monotonic_ns(), 0)
        for bpf in nx_progs:
            m(bpf, "ct").update_many((k, ctv) for k in ct_keys)
    # the packets of established flows: ACK segments (a SYN is no packet of an established flow)
    ct_pkts = [common.ipv4_packet(s, dst, 6, sp, RULE_PORT, dmac=dmac, tcp_flags=0x10) for s, sp in ct_flows]

    devs = holder_namespace(cleanup)
    for fd, name in ((nx_fd, "netxfw"), (empty_fd, "empty"), (bhash_fd, "bare_hash"), (blpm_fd, "bare_lpm"),
                     (before_fd, "before")):
        if fd is not None:
            hold(fd, name, devs)
    xf = None
    if opts.get("xdp_filter", True):
        try:
            xf = XdpFilter(cleanup)
            log("xdp cost: xdp-filter %s loaded, program %s id %d, deny-list capacity %d"
                % (xf.version, xf.name, xf.prog_id, xf.capacity))
        except Exception as exc:
            log("xdp cost: xdp-filter unavailable: %s" % exc)
            xf = None

    b_hash, b_lpm = m(bare, "bare_hash"), m(bare, "bare_lpm")
    result = {"sizes": {}, "params": {"packets_per_path": npk, "repeat": opts["repeat"], "rounds": opts["rounds"],
                                      "cold_rounds": opts["cold_rounds"],
                                      "compare_rev": opts.get("compare_rev"),
                                      "source": opts.get("source") or "engine bpf_source.SOURCE",
                                      "whitelist": [N_WL, N_WL],
                                      "port_rules": N_RULES, "conntrack_entries": CT_FILL + npk},
              "xdp_filter": None if xf is None else {"version": xf.version, "program": xf.name,
                                                     "capacity": xf.capacity}}
    done = 0
    for n in sorted(sizes):
        t = time.time()
        hosts = syn.hosts[done:n]
        prefixes = syn.prefixes[done:n]
        resolve_s = None
        for bpf in nx_progs:
            if per_list(bpf):
                m(bpf, "bl4_host").update_many((host_key(a), zero) for a in hosts)
                m(bpf, "bl4_lpm").update_many((lpm_key(a, p), zero) for a, p in prefixes)
            else:
                resolve_s = fill_sources(bpf, n)
        b_hash.update_many((host_key(a), zero) for a in hosts)
        b_lpm.update_many((lpm_key(a, p), zero) for a, p in prefixes)
        xf_n = 0
        if xf is not None:
            room = xf.capacity - xf.count
            new = syn.hosts[xf.count:min(n, xf.count + room)]
            if xf.count == 0:
                xf.add_cli(new[:4])
                new = new[4:]
            xf.add_bulk(new)
            xf_n = xf.count
        ct_refresh()
        done = n
        fill_s = time.time() - t
        log("xdp cost: %d hosts + %d prefixes loaded in %.1fs; measuring" % (n, n, fill_s))

        bl_host_srcs = sample(lambda c: syn.host_hits(n, c), npk)
        bl_host_pkts = tcp(bl_host_srcs)
        # a blacklisted host's ACK flood: packets with no flow, which look for one before the source
        bl_host_ack_pkts = [common.ipv4_packet(s, dst, 6, 40000 + i % 20000, RULE_PORT, dmac=dmac, tcp_flags=0x10)
                            for i, s in enumerate(bl_host_srcs)]
        bl_lpm_pkts = tcp(sample(lambda c: syn.prefix_hits(n, c), npk))
        miss_pkts = tcp(miss_srcs)
        combos = [
            ("empty", empty_fd, miss_pkts),
            ("netxfw:conntrack", nx_fd, ct_pkts),
            ("netxfw:whitelist_host", nx_fd, tcp(wl_host_srcs)),
            ("netxfw:whitelist_prefix", nx_fd, tcp(wl_lpm_srcs)),
            ("netxfw:blacklist_host", nx_fd, bl_host_pkts),
            ("netxfw:blacklist_host_ack", nx_fd, bl_host_ack_pkts),
            ("netxfw:blacklist_prefix", nx_fd, bl_lpm_pkts),
            ("netxfw:port_rule", nx_fd, tcp(rule_srcs)),
            ("netxfw:default_policy", nx_fd, miss_pkts),
            ("bare_hash:hit", bhash_fd, bl_host_pkts),
            ("bare_hash:miss", bhash_fd, miss_pkts),
            ("bare_lpm:hit", blpm_fd, bl_lpm_pkts),
            ("bare_lpm:miss", blpm_fd, miss_pkts),
        ]
        expected = {"empty": XDP_PASS, "netxfw:conntrack": XDP_PASS, "netxfw:whitelist_host": XDP_PASS,
                    "netxfw:whitelist_prefix": XDP_PASS, "netxfw:blacklist_host": XDP_DROP,
                    "netxfw:blacklist_host_ack": XDP_DROP,
                    "netxfw:blacklist_prefix": XDP_DROP, "netxfw:port_rule": XDP_PASS,
                    "netxfw:default_policy": XDP_DROP, "bare_hash:hit": XDP_DROP, "bare_hash:miss": XDP_PASS,
                    "bare_lpm:hit": XDP_DROP, "bare_lpm:miss": XDP_PASS,
                    "xdp_filter:deny": XDP_DROP, "xdp_filter:miss": XDP_PASS}
        if before_fd is not None:
            for label, fd, pkts in list(combos):
                if label.startswith("netxfw:"):
                    combos.append(("before:" + label[7:], before_fd, pkts))
                    expected["before:" + label[7:]] = expected[label]
        if xf is not None:
            xf_srcs = [syn.hosts[rnd.randrange(xf_n)] for dummy in range(npk)]
            combos += [("xdp_filter:deny", xf.fd, tcp(xf_srcs)), ("xdp_filter:miss", xf.fd, miss_pkts)]
        bad = validate(combos, expected)
        if bad:
            raise RuntimeError("wrong verdicts at %d entries (bench bug or data-plane bug): %s" % (n, bad))
        res = measure(combos, opts["repeat"], opts["rounds"], opts["cold_rounds"])
        e_hot, e_cold = res["empty"]["hot_ns"], res["empty"]["cold_ns"]
        for label, r in res.items():
            r["net_hot_ns"] = round(r["hot_ns"] - e_hot, 2)
            r["net_cold_ns"] = None if r["cold_ns"] is None else round(r["cold_ns"] - e_cold, 2)
        result["sizes"][str(n)] = {"paths": res, "fill_seconds": round(fill_s, 2), "xdp_filter_entries": xf_n,
                                   "measure_seconds": round(time.time() - t - fill_s, 1),
                                   "resolve_seconds": None if resolve_s is None else round(resolve_s, 2)}
        log("xdp cost @%d: %s" % (n, ", ".join("%s=%.1f" % (k, v["net_hot_ns"]) for k, v in res.items())))
    result["seconds"] = round(time.time() - t0, 1)
    return result


if __name__ == "__main__":
    import sys
    cl = common.Cleanup()
    common.remove_everything()
    common.ensure_bpffs()
    cl.push(common.remove_everything)
    out = run({"sizes": [1000, 100000], "packets": 256, "repeat": 50, "rounds": 5, "cold_rounds": 2}, cl)
    json.dump(out, sys.stdout, indent=1)
