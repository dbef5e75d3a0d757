# SPDX-License-Identifier: GPL-2.0-or-later
"""policy -> nftables ruleset: what a careful operator writes for the same policy.

The ruleset is the oracle's reference ("netfilter semantics"), in this order:

1. loopback accepted;
2. protocol sanity as netxfw's defaults: `tcp_flags` (netfilter's own tcp_valid_flags set) and
   `land` (a source address of this host: `fib saddr type local`);
3. IPv6 link plumbing before any list, as netxfw passes ARP and ND (docs/internals.md, "ICMP and
   ICMPv6 types"): ND, inverse ND and SEND with hop limit 255 and code 0 (RFC 4861 7.1; RA and
   redirect from a link-local source), MLD and multicast router discovery with hop limit 1 from a
   link-local or unspecified source (RFC 2710, 3810, 4286);
4. whitelist accept, then blacklist drop (hosts and prefixes), before conntrack: a block cuts
   established flows and wins over "related" (issue 12, items 7 and 8);
5. `ct state established,related accept`: replies to this host's flows and the ICMP errors that
   quote them (IPv4 and IPv6 fragments are reassembled by conntrack first);
6. port rules, the longest source prefix first (netxfw's LPM: the most specific source decides);
7. under an ICMP rate, echo requests of both families share one named `limit` (netxfw's one
   bucket) and the excess is dropped under either policy;
8. the default policy as the chain policy.

The observation table (observe()) is the same on both target hosts: one counter per corpus
mark (IPv4 id, IPv6 flow label) at the input hook after the filter, so "counted" means "the
datagram reached the host's stack". Its `ct` expression makes conntrack (and its defragmenter)
run on the netxfw host too, so both hosts count reassembled datagrams.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress

FILTER_TABLE = "nxo_filter"
OBS_TABLE = "nxo_obs"
TCP_VALID = "syn, syn | urg, syn | ack, rst, rst | ack, fin | ack, fin | ack | urg, ack, ack | urg"
ND_TYPES = (133, 135, 136, 141, 142, 148, 149)  # hop limit 255, code 0
ND_LINK_LOCAL_TYPES = (134, 137)  # RA and redirect: also from a link-local source
MLD_TYPES = (130, 131, 132, 143, 151, 152, 153)  # hop limit 1, link-local or unspecified source


def _types(types):
    return ", ".join(str(t) for t in types)


def _split(cidrs):
    out = {4: [], 6: []}
    for cidr in cidrs:
        net = ipaddress.ip_network(cidr if isinstance(cidr, str) else cidr["cidr"], strict=False)
        out[net.version].append(str(net))
    return out


def _set(name, family, elements):
    kind = "ipv4_addr" if family == 4 else "ipv6_addr"
    body = "type %s; flags interval;" % kind
    if elements:
        body += " elements = { %s }" % ", ".join(elements)
    return "  set %s { %s }" % (name, body)


def _port_rules(rules):
    """Port rules as nft rules, most specific source first (ties: any order, the engine refuses
    conflicting actions for one source, proto and port)."""
    def specificity(rule):
        if rule["source"] == "any":
            return -1
        return ipaddress.ip_network(rule["source"], strict=False).prefixlen

    out = []
    for rule in sorted(rules, key=specificity, reverse=True):
        ports = str(rule.get("port", rule.get("ports"))).replace(" ", "")
        verdict = "accept" if rule["action"] == "allow" else "drop"
        match = "%s dport %s" % (rule["proto"], ports)
        if rule["source"] == "any":
            out.append("    %s %s" % (match, verdict))
        else:
            net = ipaddress.ip_network(rule["source"], strict=False)
            out.append("    %s saddr %s %s %s" % ("ip" if net.version == 4 else "ip6", net, match, verdict))
    return out


def ruleset(policy):
    """The nftables ruleset (nft -f input, replacing the previous one) of an oracle policy."""
    settings = policy["settings"]
    wl, bl = _split(policy["whitelist"]), _split(policy["blacklist"])
    rate = settings.get("icmp_rate", 0)
    lines = ["table inet %s" % FILTER_TABLE, "delete table inet %s" % FILTER_TABLE, "table inet %s {" % FILTER_TABLE]
    lines += [_set("wl4", 4, wl[4]), _set("wl6", 6, wl[6]), _set("bl4", 4, bl[4]), _set("bl6", 6, bl[6])]
    if rate:
        burst = settings.get("icmp_burst") or rate
        lines.append("  limit echo { rate %d/second burst %d packets }" % (rate, burst))
    lines += [
        "  chain input {",
        "    type filter hook input priority filter; policy %s;" % ("drop" if settings["policy"] == "deny" else "accept"),
        '    iifname "lo" accept',
        "    tcp flags & (fin | syn | rst | ack | urg) != { %s } drop" % TCP_VALID,
        "    fib saddr type local drop",
        "    icmpv6 type { %s } icmpv6 code 0 ip6 hoplimit 255 accept" % _types(ND_TYPES),
        "    icmpv6 type { %s } icmpv6 code 0 ip6 hoplimit 255 ip6 saddr fe80::/10 accept" % _types(ND_LINK_LOCAL_TYPES),
        "    icmpv6 type { %s } ip6 hoplimit 1 ip6 saddr { fe80::/10, :: } accept" % _types(MLD_TYPES),
        "    ip saddr @wl4 accept",
        "    ip6 saddr @wl6 accept",
        "    ip saddr @bl4 drop",
        "    ip6 saddr @bl6 drop",
        "    ct state established,related accept",
    ]
    lines += _port_rules(policy["port"])
    if rate:
        lines += ['    icmp type echo-request limit name "echo" accept',
                  '    icmpv6 type echo-request limit name "echo" accept',
                  "    icmp type echo-request drop",
                  "    icmpv6 type echo-request drop"]
    lines += ["  }", "}", ""]
    return "\n".join(lines)


def observe(marks4, marks6, ifname_prefix="t0"):
    """The observation table: a counter per mark, at the input hook after the filter (priority 100)."""
    def elements(marks):
        return (" elements = { %s }" % ", ".join(str(m) for m in sorted(marks))) if marks else ""

    return "\n".join([
        "table inet %s" % OBS_TABLE, "delete table inet %s" % OBS_TABLE,
        "table inet %s {" % OBS_TABLE,
        "  set m4 { typeof ip id; counter;%s }" % elements(marks4),
        "  set m6 { typeof ip6 flowlabel; counter;%s }" % elements(marks6),
        "  chain input {",
        "    type filter hook input priority 100; policy accept;",
        '    iifname != "%s*" return' % ifname_prefix,
        "    ct state invalid counter",
        "    ip id @m4",
        "    ip6 flowlabel @m6",
        "  }",
        "}", ""])
