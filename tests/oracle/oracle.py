# SPDX-License-Identifier: GPL-2.0-or-later
"""The differential oracle's topology and run (importable helper, not a test module).

    nxo-snd: s-xfw ── t0 nxo-xfw   netxfw (XDP + TC through the engine, private pins)
             s-nft ── t0 nxo-nft   nftables (nft.ruleset of the same policy)

Both targets have the same addresses and MAC; the sender has no address at all (its kernel never
answers), sends every frame of the corpus to both through AF_PACKET, and captures what the
targets send back. The targets hold static neighbour entries for the sender's addresses.

Per policy: apply it to both hosts; phase A, the targets open the flows the items answer (real
sockets; DHCP through AF_PACKET as a DHCP client does) and the sender captures them; phase B,
the probes, paced by ARP sentinels (an ARP reply comes back once the target processed every
frame before it: a veth with XDP has a 256-frame ring). At the end: the observation counters of
both hosts, the DHCP client's view (AF_PACKET in the target), and the replies by item.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import json
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

from scapy.all import (ARP, BOOTP, DHCP, ICMP, IP, TCP, UDP, DHCP6_Solicit, DHCP6OptClientId, DUID_LL, Ether, ICMPv6EchoRequest,
                       IPv6, Raw)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "traffic"))

import corpus  # noqa: E402
import netns  # noqa: E402
import nft  # noqa: E402
from policies import POLICIES, SENDER_LL, SENDER_MAC, SRC, TARGET, TARGET_ADDRS, TARGET_LL, TARGET_MAC  # noqa: E402

NS_SND, NS_XFW, NS_NFT = "nxo-snd", "nxo-xfw", "nxo-nft"
HOSTS = ("xfw", "nft")
TARGET_NS = {"xfw": NS_XFW, "nft": NS_NFT}
SENDER_IF = {"xfw": "s-xfw", "nft": "s-nft"}
TARGET_IF = "t0"
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SO_RCVBUFFORCE = 33
PORT_BASE = 20000
PIN_PREFIX = "nxo-oracle-"  # pin_path under /sys/fs/bpf and state_dir under /tmp
PACE = 32  # frames per host between two sentinels (the XDP ring of a veth holds 256)
TARGET_SYSCTLS = [
    "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
    "net.ipv6.conf.all.accept_ra=0", "net.ipv6.conf.default.accept_ra=0",
    "net.ipv6.conf.all.accept_redirects=0", "net.ipv6.conf.default.accept_redirects=0",
    "net.ipv6.conf.default.router_solicitations=0",
    "net.ipv4.conf.all.accept_redirects=0", "net.ipv4.conf.default.accept_redirects=0",
    # the hosts answer every probe: no ICMP rate limits of their own
    "net.ipv4.icmp_ratelimit=0", "net.ipv6.icmp.ratelimit=0",
    "net.ipv4.icmp_msgs_per_sec=1000000", "net.ipv4.icmp_msgs_burst=1000000",
]


def run(argv, timeout=20):
    return netns.run(argv, timeout=timeout, check=True)


def packet_socket(ns, ifname):
    with netns.inside(ns):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
    s.bind((ifname, 0))
    s.setblocking(False)
    return s


def drain(sock, into):
    """Append every incoming frame waiting on sock to into (outgoing copies are skipped)."""
    while True:
        try:
            data, addr = sock.recvfrom(65535)
        except BlockingIOError:
            return
        if addr[2] != PACKET_OUTGOING:
            into.append(data)


class Topology:
    """The three namespaces; removed on exit, also when the body raises."""

    def __enter__(self):
        try:
            self.down()
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc):
        self.down()

    def up(self):
        for ns in (NS_SND, NS_XFW, NS_NFT):
            run(["ip", "netns", "add", ns])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
        netns.run_in(NS_SND, ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                              "net.ipv6.conf.default.disable_ipv6=1"], check=True)
        for host in HOSTS:
            ns = TARGET_NS[host]
            netns.run_in(ns, ["sysctl", "-qw"] + TARGET_SYSCTLS, check=True)
            run(["ip", "-n", NS_SND, "link", "add", SENDER_IF[host], "address", SENDER_MAC, "type", "veth",
                 "peer", "name", TARGET_IF, "address", TARGET_MAC, "netns", ns])
            run(["ip", "-n", NS_SND, "link", "set", SENDER_IF[host], "up"])
            for addr in TARGET_ADDRS:
                run(["ip", "-n", ns, "addr", "add", addr, "dev", TARGET_IF] + (["nodad"] if ":" in addr else []))
            run(["ip", "-n", ns, "link", "set", TARGET_IF, "up"])
            batch = ["neigh replace %s lladdr %s nud permanent dev %s" % (addr, SENDER_MAC, TARGET_IF)
                     for addr in [SENDER_LL] + list(SRC[4].values()) + list(SRC[6].values())]
            feed(["ip", "-n", ns, "-batch", "-"], "\n".join(batch) + "\n")

    def down(self):
        present = netns.netns_list()
        for ns in (NS_XFW, NS_NFT, NS_SND):
            if ns in present:
                netns.run(["ip", "netns", "del", ns], check=False)


def feed(argv, text):
    """Run argv with text on its stdin; fail with its stderr."""
    proc = subprocess.run(argv, input=text, capture_output=True, text=True, timeout=20, check=False)
    if proc.returncode != 0:
        raise RuntimeError("%s: %s\n%s" % (" ".join(argv), proc.stderr, text))


def nft_load(ns, text):
    feed(netns.nsenter(ns, ["nft", "-f", "-"]), text)


def nft_counters(ns, set_name):
    out = run(netns.nsenter(ns, ["nft", "-j", "list", "set", "inet", nft.OBS_TABLE, set_name])).stdout
    counts = {}
    for obj in json.loads(out)["nftables"]:
        for elem in obj.get("set", {}).get("elem", []):
            e = elem["elem"]
            counts[e["val"]] = e["counter"]["packets"]
    return counts


class Case:
    def __init__(self, index, policy, item):
        self.policy, self.item = policy, item
        self.port = PORT_BASE + index
        self.mark = index + 1
        self.flow_policy = (item.flow[2] if item.flow and len(item.flow) > 2 else policy)
        self.out = {}  # host -> captured outbound packet of the flow


class Run:
    """One oracle run over every policy; results() after it."""

    def __init__(self, agent):
        self.agent = agent
        self.cases = [Case(i, policy, item) for i, (policy, item) in enumerate(corpus.CASES)]
        self.snd = dict((h, packet_socket(NS_SND, SENDER_IF[h])) for h in HOSTS)
        self.tgt = dict((h, packet_socket(TARGET_NS[h], TARGET_IF)) for h in HOSTS)
        self.captured = dict((h, []) for h in HOSTS)  # raw frames from the target
        self.parsed = dict((h, []) for h in HOSTS)  # [scapy frame or None (used as a flow's packet)]
        self.tgt_frames = dict((h, []) for h in HOSTS)
        self.sockets = []
        self.sentinel = 0
        self.timings = {}
        for h in HOSTS:
            self.services(TARGET_NS[h])

    def services(self, ns):
        """The target's open ports: TCP 22 and 8080 listen, UDP 53 is bound (nothing answers), and
        so are the DHCP client ports 68 and 546 (no port unreachable for a DHCP answer)."""
        for fam in (4, 6):
            af = socket.AF_INET if fam == 4 else socket.AF_INET6
            for kind, addr, port in ((socket.SOCK_STREAM, TARGET[fam]["t"], 22), (socket.SOCK_STREAM, TARGET[fam]["t"], 8080),
                                     (socket.SOCK_DGRAM, TARGET[fam]["t"], 53),
                                     (socket.SOCK_DGRAM, "0.0.0.0" if fam == 4 else "::", 68 if fam == 4 else 546)):
                with netns.inside(ns):
                    s = socket.socket(af, kind)
                self.sockets.append(s)
                s.bind((addr, port))
                if kind == socket.SOCK_STREAM:
                    s.listen(1024)

    def close(self):
        for s in self.sockets + list(self.snd.values()) + list(self.tgt.values()):
            s.close()

    # ---- sending, pacing ----------------------------------------------------------------------

    def pump(self, timeout=0.0):
        ready = select.select(list(self.snd.values()), [], [], timeout)[0]
        for h in HOSTS:
            if self.snd[h] in ready:
                drain(self.snd[h], self.captured[h])
        return bool(ready)

    def parse_new(self):
        for h in HOSTS:
            while len(self.parsed[h]) < len(self.captured[h]):
                self.parsed[h].append(Ether(self.captured[h][len(self.parsed[h])]))

    def sync(self, limit=5.0):
        """An ARP request to both targets; returns once both answered it (bounded)."""
        self.sentinel += 1
        mac = "02:00:5e:00:%02x:%02x" % (self.sentinel >> 8 & 0xff, self.sentinel & 0xff)
        frame = bytes(Ether(src=SENDER_MAC, dst="ff:ff:ff:ff:ff:ff")
                      / ARP(op=1, hwsrc=mac, psrc=SRC[4]["cli"], pdst=TARGET[4]["t"]))
        want = bytes.fromhex(mac.replace(":", ""))
        start = dict((h, len(self.captured[h])) for h in HOSTS)
        for h in HOSTS:
            self.snd[h].send(frame)
        deadline = time.monotonic() + limit
        pending = set(HOSTS)
        while pending:
            self.pump(0.05)
            for h in list(pending):
                for data in self.captured[h][start[h]:]:
                    if data[12:14] == b"\x08\x06" and data[0:6] == want and data[20:22] == b"\x00\x02":
                        pending.discard(h)
                        break
            if pending and time.monotonic() > deadline:
                raise RuntimeError("oracle: no ARP sentinel reply from %s" % sorted(pending))

    def send(self, frames_by_host):
        """frames_by_host: host -> [frames]; returns how many were sent."""
        sent = 0
        for h in HOSTS:
            for frame in frames_by_host[h]:
                self.snd[h].send(frame)
                sent += 1
        return sent

    # ---- policies ---------------------------------------------------------------------------------

    def apply(self, policy):
        nft_load(NS_NFT, nft.ruleset(policy))
        settings = dict(policy["settings"], interfaces=[TARGET_IF])
        self.agent.call("apply_program", settings=settings)
        for kind in ("whitelist", "blacklist", "port"):
            self.agent.call("apply_rules", kind=kind, entries=policy[kind], exclusive=True)

    def open_flow(self, case, host):
        kind, peer = case.item.flow[0], case.item.flow[1]
        fam = case.item.family
        ns = TARGET_NS[host]
        local = TARGET[fam]["t"]
        remote = SRC[fam][peer] if peer else None
        af = socket.AF_INET if fam == 4 else socket.AF_INET6
        if kind in ("udp", "udp-big", "tcp"):
            with netns.inside(ns):
                s = socket.socket(af, socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM)
            self.sockets.append(s)
            s.setblocking(False)
            s.bind((local, case.port))
            if kind == "udp":
                s.sendto(b"oracle", (remote, case.port))
            elif kind == "udp-big":  # fragmented by the target (MTU 1500)
                s.sendto(b"oracle" * 500, (remote, case.port))
            else:
                s.connect_ex((remote, case.port))
        elif kind == "ping":
            with netns.inside(ns):
                s = socket.socket(af, socket.SOCK_RAW, socket.IPPROTO_ICMP if fam == 4 else socket.IPPROTO_ICMPV6)
            self.sockets.append(s)
            s.bind((local, 0))
            if fam == 4:
                msg = bytes(ICMP(type=8, id=case.port, seq=7) / Raw(b"oracle"))
            else:
                msg = bytes(ICMPv6EchoRequest(id=case.port, seq=7) / Raw(b"oracle"))
            s.sendto(msg, (remote, 0))
        elif kind == "dhcp":
            self.tgt[host].send(bytes(
                Ether(src=TARGET_MAC, dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0", dst="255.255.255.255")
                / UDP(sport=68, dport=67) / BOOTP(xid=case.port, chaddr=bytes.fromhex(TARGET_MAC.replace(":", "")))
                / DHCP(options=[("message-type", "discover"), "end"])))
        elif kind == "dhcp6":
            self.tgt[host].send(bytes(
                Ether(src=TARGET_MAC, dst="33:33:00:01:00:02") / IPv6(src=TARGET_LL, dst="ff02::1:2", hlim=1)
                / UDP(sport=546, dport=547) / DHCP6_Solicit(trid=case.port)
                / DHCP6OptClientId(duid=DUID_LL(lladdr=TARGET_MAC))))
        else:
            raise ValueError(kind)

    @staticmethod
    def flow_match(case, pkt):
        kind = case.item.flow[0]
        if kind in ("udp", "udp-big"):
            return UDP in pkt and pkt[UDP].sport == case.port and pkt[UDP].dport == case.port
        if kind == "tcp":
            return TCP in pkt and pkt[TCP].sport == case.port and pkt[TCP].flags == "S"
        if kind == "ping":
            if case.item.family == 4:
                return ICMP in pkt and pkt[ICMP].type == 8 and pkt[ICMP].id == case.port
            return ICMPv6EchoRequest in pkt and pkt[ICMPv6EchoRequest].id == case.port
        if kind == "dhcp":
            return BOOTP in pkt and pkt[BOOTP].xid == case.port
        return DHCP6_Solicit in pkt and pkt[DHCP6_Solicit].trid == case.port

    def capture_flows(self, cases, limit=5.0):
        deadline = time.monotonic() + limit
        while True:
            self.pump(0.02)
            self.parse_new()
            missing = []
            for case in cases:
                for h in HOSTS:
                    if h in case.out:
                        continue
                    for i, pkt in enumerate(self.parsed[h]):
                        if pkt is not None and self.flow_match(case, pkt):
                            case.out[h] = pkt
                            self.parsed[h][i] = None  # not a reply
                            break
                    else:
                        missing.append((case.item.name, h))
            if not missing:
                return
            if time.monotonic() > deadline:
                raise RuntimeError("oracle: the targets did not send the flows of %s" % missing[:5])

    def run_policy(self, policy):
        name = policy["name"]
        t0 = time.monotonic()
        self.apply(policy)
        opening = [c for c in self.cases if c.item.flow and c.flow_policy == name]
        for case in opening:
            for h in HOSTS:
                self.open_flow(case, h)
        self.capture_flows(opening)
        self.sync()
        sent = 0
        for case in [c for c in self.cases if c.policy == name]:
            frames = {}
            if case.item.flow:
                for h in HOSTS:
                    frames[h] = [bytes(f) for f in case.item.build(corpus.Ctx(case.port, case.mark, case.out[h]))]
            else:
                same = [bytes(f) for f in case.item.build(corpus.Ctx(case.port, case.mark))]
                frames = dict((h, same) for h in HOSTS)
            sent += self.send(frames)
            if sent >= PACE * 2:
                self.sync()
                sent = 0
        self.sync()
        self.timings[name] = time.monotonic() - t0

    def execute(self):
        marks = {4: [], 6: []}
        for case in self.cases:
            marks[case.item.family].append(case.mark)
        for h in HOSTS:
            nft_load(TARGET_NS[h], nft.observe(marks[4], marks[6]))
        self.sync()
        for policy in POLICIES:
            self.run_policy(policy)
        for h in HOSTS:
            drain(self.tgt[h], self.tgt_frames[h])
        self.pump(0.0)
        self.parse_new()

    # ---- verdicts -------------------------------------------------------------------------------

    def results(self):
        """{(policy, item name): {host: (delivered, sorted replies)}}."""
        counts = {}
        for h in HOSTS:
            counts[h] = {4: nft_counters(TARGET_NS[h], "m4"), 6: nft_counters(TARGET_NS[h], "m6")}
        seen = dict((h, self.client_view(h)) for h in HOSTS)
        replies = dict((h, self.replies(h)) for h in HOSTS)
        out = {}
        for case in self.cases:
            fam = case.item.family
            verdict = {}
            for h in HOSTS:
                if case.item.observe == "packet":
                    delivered = seen[h].get((fam, case.mark), 0)
                else:
                    delivered = counts[h][fam].get(case.mark, 0)
                keys = [("p", case.port), ("m%d" % fam, case.mark)]
                if case.item.nd_src:
                    keys.append(("nd", corpus.nd_src(corpus.Ctx(case.port, case.mark))))
                got = set()
                for key in keys:
                    got.update(replies[h].get(key, ()))
                verdict[h] = (delivered, tuple(sorted(got)))
            out[(case.policy, case.item.name)] = verdict
        return out

    def client_view(self, host):
        """What a DHCP client reading AF_PACKET on the target saw: (family, mark) -> frames."""
        seen = {}
        for data in self.tgt_frames[host]:
            pkt = Ether(data)
            if UDP not in pkt or pkt[UDP].dport not in (68, 546):
                continue
            key = (4, pkt[IP].id) if IP in pkt else (6, pkt[IPv6].fl)
            seen[key] = seen.get(key, 0) + 1
        return seen

    def replies(self, host):
        """key -> set of reply signatures, for every frame the target sent (but the flows' packets)."""
        out = {}
        for pkt in self.parsed[host]:
            if pkt is None or ARP in pkt:
                continue
            for key, sig in classify(pkt):
                out.setdefault(key, set()).add(sig)
        return out


def classify(pkt):
    """[(key, signature)] of a frame the target sent."""
    if TCP in pkt and (IP in pkt or IPv6 in pkt) and not _is_quote(pkt):
        if pkt[TCP].flags == "S":  # the target's own connect (or its retransmission): never a reply
            return []
        return [(("p", pkt[TCP].dport), "tcp:%s" % pkt[TCP].flags)]
    if IP in pkt and ICMP in pkt:
        icmp = pkt[ICMP]
        sig = "icmp:%d/%d" % (icmp.type, icmp.code)
        if icmp.type in corpus.ICMP_ERRORS4:
            inner = bytes(icmp.payload)
            if len(inner) >= 6:
                return [(("m4", struct.unpack("!H", inner[4:6])[0]), sig)]
            return []
        return [(("p", icmp.id), sig)]
    if IPv6 in pkt and _is_quote(pkt):
        nh, l4 = pkt[IPv6].nh, pkt[IPv6].payload
        while nh in (0, 43, 44, 60):
            if nh == 44 and l4.offset:
                return []  # a later fragment of a reply: its first one counts
            nh, l4 = l4.nh, l4.payload
        raw = bytes(l4)
        if nh != 58 or len(raw) < 4:
            return []
        t, code = raw[0], raw[1]
        sig = "icmp6:%d/%d" % (t, code)
        if 1 <= t <= 4 and len(raw) >= 12:
            return [(("m6", struct.unpack("!I", raw[8:12])[0] & 0xFFFFF), sig)]
        if t == 129 and len(raw) >= 6:
            return [(("p", struct.unpack("!H", raw[4:6])[0]), sig)]
        if t == 136:
            return [(("nd", pkt[IPv6].dst), sig)]
        return []
    if UDP in pkt and (IP in pkt or IPv6 in pkt) and not _is_quote(pkt):
        return [(("p", pkt[UDP].dport), "udp")]
    return []


def _is_quote(pkt):
    """An ICMP or ICMPv6 packet (a TCP/UDP layer scapy finds in it is quoted)."""
    if ICMP in pkt:
        return True
    if IPv6 not in pkt:
        return False
    nh, layer = pkt[IPv6].nh, pkt[IPv6].payload
    while nh in (0, 43, 44, 60) and hasattr(layer, "nh"):
        nh, layer = layer.nh, layer.payload
    return nh == 58


def remove_leftovers():
    """Pins and state of a run that was killed (callers hold the machine-wide test lock)."""
    for parent in (netns.BPFFS, tempfile.gettempdir()):
        for name in os.listdir(parent):
            if name.startswith(PIN_PREFIX):
                shutil.rmtree(os.path.join(parent, name), ignore_errors=True)


def collections_root():
    """The sys.path entry holding ansible_collections/netxfw/firewall (tests/conftest.py puts it there)."""
    import ansible_collections.netxfw.firewall as collection  # pylint: disable=import-outside-toplevel
    return os.path.dirname(os.path.dirname(os.path.dirname(list(collection.__path__)[0])))


@contextlib.contextmanager
def session():
    """The topology with netxfw loaded on nxo-xfw; yields the Run."""
    remove_leftovers()
    with Topology():
        agent = netns.Agent(collections_root(), ns=NS_XFW, prefix=PIN_PREFIX)
        try:
            oracle = Run(agent)
            try:
                yield oracle
            finally:
                oracle.close()
        finally:
            agent.close()
