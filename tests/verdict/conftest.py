# SPDX-License-Identifier: GPL-2.0-or-later
"""Verdict tests: compile the data plane (bpf/netxfw.c and bpf/lib/, joined as scripts/gen_bpf_source.py
joins them for plugins/module_utils/bpf_source.py) with BCC once, feed it packets with
BPF_PROG_TEST_RUN, and check verdicts and counters against docs/internals.md.

Nothing is attached to any interface and nothing is pinned.
Run as root: /opt/netxfw-venv/bin/python -m pytest tests/verdict
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib.util
import ipaddress
import os
import struct

import pytest

bcc = pytest.importorskip("bcc", reason="needs the distro BCC bindings (python3-bpfcc)")
scapy_all = pytest.importorskip("scapy.all", reason="needs scapy (python3-scapy)")

from ansible_collections.netxfw.firewall.plugins.module_utils import bpfsys, layout, rules, sources  # noqa: E402
from ansible_collections.netxfw.firewall.plugins.module_utils.bpfsys import ring_buffer_read, test_run  # noqa: E402
from ansible_collections.netxfw.firewall.plugins.module_utils.layout import decode_drop_event  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_spec = importlib.util.spec_from_file_location("gen_bpf_source", os.path.join(REPO, "scripts", "gen_bpf_source.py"))
gen_bpf_source = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen_bpf_source)
CFLAGS = [
    "-DNETXFW_WL_LPM_SIZE=64",
    "-DNETXFW_WL_HOST_SIZE=64",
    "-DNETXFW_BL_LPM_SIZE=64",
    "-DNETXFW_BL_HOST_SIZE=64",
    "-DNETXFW_RULE_SIZE=256",
    "-DNETXFW_CT_SIZE=64",
]

XDP_DROP, XDP_PASS = 1, 2

# the registry (plugins/module_utils/layout.py, checked against the C by tests/unit/test_bpf_constants.py)
REASONS = layout.REASONS
CFG = dict((name[len("CFG_"):].lower(), value) for name, value in vars(layout).items() if name.startswith("CFG_"))

SET_MAPS = ("src4_host", "src6_host", "src4_lpm", "src6_lpm", "rules4", "rules6", "ct", "ct_syn",
            "rl4_cfg", "rl6_cfg", "rl4_state", "rl6_state", "frags", "dhcp_expect")


def packed(addr):
    return ipaddress.ip_address(addr).packed


class Dataplane:
    def __init__(self, bpf, source):
        self.b = bpf
        self.source, self.cflags = source, CFLAGS
        self.xdp_fd = bpf.load_func(b"xdp_ingress", bcc.BPF.XDP).fd
        self.tc_fd = bpf.load_func(b"tc_egress", bcc.BPF.SCHED_CLS).fd
        # the src maps and the exact-source prefilter through the engine's own map wrapper (the fds stay BCC's)
        self.src_maps = dict((name, bpfsys.Map(bpf[name.encode()].map_fd, name))
                             for name in sources.SRC_MAPS + (sources.FILTER_MAP,))
        self._clear_lists()

    # ---- map state ----

    def t(self, name):
        return self.b[name.encode()]

    def _clear_lists(self):
        self.wl = []  # CIDR strings
        self.bl = {}  # CIDR -> expiry (CLOCK_MONOTONIC ns) or None for never
        self.rule_sources = []  # CIDR strings of the port rules' sources
        self.rl_sources = []  # CIDR strings of the rate-limit rules' sources

    def reset(self):
        self._clear_lists()
        for name in SET_MAPS:
            table = self.t(name)
            for key in list(table.keys()):
                del table[key]
        self.src_maps[sources.FILTER_MAP].update_many(
            (layout.encode_u32(i), layout.encode_u64(0)) for i in range(self.src_maps[sources.FILTER_MAP].max_entries))
        for idx in range(layout.MAPS["config"][3]):
            self.t("config")[idx] = self.t("config").Leaf(0)
        self.generation = 1
        self.config(rules_generation=self.generation)
        self.t("icmp_bucket")[0] = self.t("icmp_bucket").Leaf()
        self.t("rl_global")[0] = self.t("rl_global").Leaf()
        self.t("droplog_bucket")[0] = self.t("droplog_bucket").Leaf()
        self.drop_events()  # drain

    def config(self, **settings):
        for name, value in settings.items():
            self.t("config")[CFG[name]] = self.t("config").Leaf(value)

    def _put(self, name, key, value):
        table = self.t(name)
        table[table.Key.from_buffer_copy(key)] = table.Leaf(value)

    def _split(self, cidr):
        net = ipaddress.ip_network(cidr)
        return net.network_address.packed, net.prefixlen, net.max_prefixlen

    def sync_sources(self):
        """(Re)write the src maps from the lists as the engine resolves them (sources.resolve,
        to_maps, write): expiries stay in monotonic ns, live auto-bans are kept."""
        blacklist = [{"cidr": cidr, "expires": exp} for cidr, exp in self.bl.items()]
        port_rules = [{"source": cidr} for cidr in self.rule_sources]
        ratelimits = [{"source": cidr} for cidr in self.rl_sources]
        resolved = sources.resolve(self.wl, blacklist, port_rules, ratelimits)
        # as the engine writes them: generation 0 while it writes, then a new one
        self.config(rules_generation=0)
        sources.write(self.src_maps, sources.to_maps(resolved, lambda e: e or 0))
        self.generation += 1
        self.config(rules_generation=self.generation)

    def whitelist(self, cidr):
        if cidr not in self.wl:
            self.wl.append(cidr)
        self.sync_sources()

    def blacklist(self, cidr, expires_ns=0):
        """expires_ns: CLOCK_MONOTONIC ns, 0 never; listing a CIDR again replaces its expiry."""
        self.bl[cidr] = expires_ns or None
        self.sync_sources()

    def rule_key(self, cidr, proto, dport, action):
        """Only the rules4/rules6 key of a port rule (its source left out of the src maps)."""
        addr, plen, full = self._split(cidr)
        key = struct.pack("<IB2s%dsx" % len(addr), 24 + plen, proto, dport.to_bytes(2, "big"), addr)
        self._put("rules%d" % (4 if full == 32 else 6), key, action)

    def rule(self, cidr, proto, dport, action):
        """action 1 allow, 2 deny; the key's prefixlen is 24 + source prefix ("any": 0.0.0.0/0
        and ::/0). The source goes to the src maps (SRC_RULES) as a port rule's source does."""
        for source in ("0.0.0.0/0", "::/0") if cidr == rules.ANY_SOURCE else (cidr,):
            self.rule_key(source, proto, dport, action)
        if cidr not in self.rule_sources:
            self.rule_sources.append(cidr)
        self.sync_sources()

    def ratelimit(self, cidr, rate, burst, syn_only=False, ban_ttl_ns=0):
        addr, plen, full = self._split(cidr)
        table = self.t("rl%d_cfg" % (4 if full == 32 else 6))
        key = table.Key.from_buffer_copy(struct.pack("<I", plen) + addr)
        table[key] = table.Leaf(rate, burst, 1 if syn_only else 0, ban_ttl_ns)
        if cidr not in self.rl_sources:
            self.rl_sources.append(cidr)
        self.sync_sources()

    def rl_state(self, addr):
        raw = packed(addr)
        table = self.t("rl%d_state" % (4 if len(raw) == 4 else 6))
        for k, v in table.items():
            if bytes(k) == raw:
                return v.credit_ns, v.last_ns, v.dropped
        return None

    def list_value(self, addr):
        """src*_host value of an address (u64), or None."""
        raw = packed(addr)
        value = self.src_maps["src%d_host" % (4 if len(raw) == 4 else 6)].lookup(raw)
        return None if value is None else struct.unpack("=Q", value)[0]

    def set_list_value(self, addr, value, prefilter=True):
        """Write a src*_host value directly (an auto-ban aged by the test, say), its prefilter bit first
        (prefilter=False: without it, as no writer of the engine or the data plane leaves it)."""
        raw = packed(addr)
        if prefilter:
            sources.mark_listed(self.src_maps, [raw])
        self.src_maps["src%d_host" % (4 if len(raw) == 4 else 6)].update(raw, struct.pack("=Q", value))

    def drop_events(self, limit=None):
        """Consume the drops ring buffer with the engine's reader (libbpf ring_buffer via ctypes)."""
        return [decode_drop_event(raw) for raw in ring_buffer_read(self.t("drops").map_fd, limit=limit)]

    def ct_entries(self):
        return {bytes(k): (v.last_seen_ns, v.flags) for k, v in self.t("ct").items()}

    def ct_put(self, key, last_seen_ns, flags=0, name="ct"):
        table = self.t(name)
        table[table.Key.from_buffer_copy(key)] = table.Leaf(last_seen_ns, flags)

    def ct_syn_entries(self):
        return {bytes(k): (v.last_seen_ns, v.flags) for k, v in self.t("ct_syn").items()}

    def bucket(self):
        return self.t("icmp_bucket")[0]

    def set_bucket(self, credit_ns, last_ns):
        leaf = self.t("icmp_bucket").Leaf()
        leaf.credit_ns, leaf.last_ns = credit_ns, last_ns
        self.t("icmp_bucket")[0] = leaf

    def counters(self):
        """{reason: (packets, bytes)} summed over CPUs."""
        table = self.t("counters")
        out = {}
        for idx, name in enumerate(REASONS):
            per_cpu = table[idx]
            out[name] = (sum(c.packets for c in per_cpu), sum(c.bytes for c in per_cpu))
        return out

    # ---- running packets ----

    def _run(self, fd, pkt):
        data = bytes(pkt)
        before = self.counters()
        retval = test_run(fd, data)[0]
        after = self.counters()
        delta = {r: (after[r][0] - before[r][0], after[r][1] - before[r][1])
                 for r in REASONS if after[r] != before[r]}
        return retval, delta, len(data)

    def xdp(self, pkt):
        """Returns (retval, {reason: (packets, bytes)} counter delta, length)."""
        return self._run(self.xdp_fd, pkt)

    def tc(self, pkt):
        return self._run(self.tc_fd, pkt)

    def expect(self, pkt, reason):
        """Run pkt through xdp_ingress: the verdict follows the reason, and
        exactly that reason's counter grew by one packet of this length."""
        retval, delta, length = self.xdp(pkt)
        want = XDP_DROP if reason.startswith("drop_") else XDP_PASS
        assert (retval, delta) == (want, {reason: (1, length)}), \
            "expected %s (%d), got retval %d, counters %r" % (reason, want, retval, delta)


@pytest.fixture(scope="session")
def dataplane():
    if os.geteuid() != 0:
        pytest.skip("verdict tests load BPF programs: run as root")
    source = gen_bpf_source.joined()
    bpf = bcc.BPF(text=source.encode(), cflags=CFLAGS)
    try:
        yield Dataplane(bpf, source)
    finally:
        bpf.cleanup()


@pytest.fixture
def fw(dataplane):
    dataplane.reset()
    yield dataplane
    dataplane.reset()
