#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, netxfw developers
# GNU General Public License v2.0+ (see https://www.gnu.org/licenses/gpl-2.0.txt), so also v3.0 (https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-2.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: netxfw_program
short_description: Load, configure, attach or remove the netxfw XDP/eBPF firewall data plane
version_added: "0.1.0"
description:
  - Compiles the netxfw data plane with BCC, loads it, pins its programs and maps under O(pin_path),
    and attaches it to O(interfaces) (XDP ingress and TC egress).
  - Runtime settings (O(policy), O(conntrack), O(conntrack_timeout), O(icmp_rate), O(icmp_burst)) are
    written into the loaded program's config map and apply from the next packet, without a reload.
  - Only a change of O(capacity) (the map sizes) or of the data-plane source (a new collection
    version) recompiles. That is the lossless hot reload of M(netxfw.firewall.netxfw_reload); every
    map's contents (rules, expiring entries, conntrack, counters, rate-limit state) are migrated to
    the new maps and the programs are swapped atomically on every interface; when the new program
    fails to compile, to verify or to attach, the old one keeps running untouched.
  - The program's identity is a hash of its source and compile-time options; a run whose identity,
    settings and attachments already match changes nothing and compiles nothing.
  - Interfaces that carry the netxfw program but are no longer listed in O(interfaces) are detached.
  - The settings are persisted in O(state_dir)/config.json, which a restore at boot rebuilds from.
  - With O(state=present) the BCC Python bindings are needed. When the interpreter running the module
    lacks them, the module respawns under the system interpreter (C(/usr/bin/python3),
    C(/usr/libexec/platform-python)) that the distribution package installs them for.
author:
  - netxfw developers (@netxfw)
extends_documentation_fragment:
  - netxfw.firewall.common
options:
  state:
    description:
      - V(present) loads (or reloads) the data plane and attaches it to O(interfaces).
      - V(absent) detaches the program from every interface, removes its pins and
        O(state_dir)/config.json. The rules in O(state_dir)/rules.json are kept.
    type: str
    choices: [present, absent]
    default: present
  interfaces:
    description:
      - Network interfaces to attach the firewall to. Required with O(state=present);
        an empty list loads the data plane without attaching it anywhere.
      - Each interface must exist on the host.
    type: list
    elements: str
  xdp_mode:
    description:
      - How the XDP program is attached.
      - V(native) runs in the driver, V(generic) in the kernel's generic path (slower, works everywhere),
        V(auto) tries native first and falls back to generic.
    type: str
    choices: [auto, native, generic]
    default: auto
  policy:
    description:
      - Verdict for packets that no stage (conntrack, whitelist, blacklist, port rules, ICMP) decided.
      - Under either policy, the later fragments of a datagram pass when its first fragment passed, and replies
        to this host's own DHCP and DHCPv6 requests (echoing their transaction id) pass.
    type: str
    choices: [allow, deny]
    default: allow
  conntrack:
    description:
      - Track outbound TCP and UDP flows on egress so their replies pass ingress even under O(policy=deny).
    type: bool
    default: true
  conntrack_timeout:
    description:
      - Seconds an established TCP flow stays tracked after its last packet (the other states have their own
        O(conntrack_timeouts)). The default, 5 days, is netfilter's; an idle connection this host opened whose
        peer speaks first after a longer silence is dropped under O(policy=deny).
    type: int
    default: 432000
  conntrack_timeouts:
    description:
      - Seconds a tracked flow stays valid after its last packet, per state. They apply from the next
        packet, without a reload. Options left out keep their defaults.
    type: dict
    suboptions:
      tcp_syn:
        description: Handshake in progress (SYN_SENT, SYN_RECV).
        type: int
        default: 60
      tcp_established:
        description: Established TCP; another name for O(conntrack_timeout), which applies when this is unset.
        type: int
      tcp_fin:
        description: Closing TCP (FIN_WAIT after this host's FIN, CLOSE after its reset).
        type: int
        default: 30
      udp:
        description: UDP flows that have seen packets in one direction only.
        type: int
        default: 30
      udp_stream:
        description: UDP flows that have seen packets in both directions.
        type: int
        default: 180
      icmp:
        description: ICMP and ICMPv6 echo (an outbound echo request lets its reply in).
        type: int
        default: 30
  sanity:
    description:
      - Protocol sanity switches; each drops with its own counter reason. ARP, neighbour discovery and
        DHCP are never affected. Options left out keep their defaults.
    type: dict
    suboptions:
      bogon:
        description:
          - Drop sources that can never be real on the wire (IPv4 0/8 except a DHCP client's 0.0.0.0:68 to port
            67, 127/8, 224/4, 240/4; IPv6 ::1, ff00::/8, ::ffff:0:0/96). Private ranges are not bogons here.
        type: bool
        default: false
      fragments:
        description:
          - Drop every IP fragment (IPv4 with MF or an offset, IPv6 with a fragment header).
          - When off, a datagram's later fragments pass when its first fragment passed (one verdict per datagram).
        type: bool
        default: false
      tcp_flags:
        description: Drop TCP flag combinations no stack sends (null, SYN+FIN, SYN+RST, FIN+RST, FIN without ACK,
          Xmas, ...), the valid set being netfilter's.
        type: bool
        default: true
      land:
        description: Drop packets whose source address is the destination address (land attack).
        type: bool
        default: true
  icmp_rate:
    description:
      - Inbound echo requests (ping, ICMP and ICMPv6) allowed per second (token bucket, both families share it);
        the excess is dropped under either O(policy).
      - V(0) makes echo requests not special; they then fall through to O(policy).
      - No other ICMP type takes from the bucket. Under O(policy=deny) echo replies and errors pass only when they
        belong to a flow of this host (O(conntrack)), and IPv6 neighbour discovery and MLD only as link-local
        traffic (hop limit 255, or 1 from a link-local source); the type table is in docs/internals.md.
    type: int
    default: 0
  icmp_burst:
    description:
      - Depth of the ICMP token bucket, in packets. V(0) means the same as O(icmp_rate).
    type: int
    default: 0
  ratelimit_global_rate:
    description:
      - Global token bucket of the rate-limit stage, against spoofed floods whose every packet has a new
        source; it counts packets per second of traffic that is neither tracked (conntrack), whitelisted
        nor blacklisted. Over it, packets drop with reason C(drop_rate_global); nobody is banned.
      - Established flows take the conntrack fast path before this stage and are never limited.
      - V(0) turns it off. Per-source limits are rules, see M(netxfw.firewall.netxfw_rule) O(netxfw.firewall.netxfw_rule#module:kind=ratelimit).
    type: int
    default: 0
  ratelimit_global_burst:
    description:
      - Depth of the global bucket, in packets. V(0) means the same as O(ratelimit_global_rate).
    type: int
    default: 0
  drop_sampling_rate:
    description:
      - Dropped packets sampled per second into the data plane's ring buffer of drop events (time,
        reason, addresses, ports), which M(netxfw.firewall.netxfw_info) O(netxfw.firewall.netxfw_info#module:drops) reads. A token bucket in
        the data plane bounds it, so a flood never becomes an event storm. V(0) turns sampling off.
    type: int
    default: 10
  drop_sampling_burst:
    description:
      - Depth of the drop sampling bucket, in events. V(0) means the same as O(drop_sampling_rate).
    type: int
    default: 0
  capacity:
    description:
      - Map sizes, in entries. They are compile-time options; changing one recompiles and hot-reloads
        the data plane, migrating every map's contents. Shrinking one below the entries it holds fails
        before anything changes.
      - The whitelist, the blacklist and the sources of the port and rate-limit rules share one
        exact-address hash and one prefix trie per family, each sized O(capacity.whitelist) +
        O(capacity.blacklist) + O(capacity.port_rules) + 4096; each list is still held to its own
        capacity.
      - Options left out keep their defaults.
    type: dict
    suboptions:
      whitelist:
        description: Whitelist entries per family and kind (host addresses and prefixes each).
        type: int
        default: 65536
      blacklist:
        description: Blacklist entries per family and kind (host addresses and prefixes each).
        type: int
        default: 1048576
      port_rules:
        description: Port rule keys per family; a port range takes one key per port.
        type: int
        default: 65536
      conntrack:
        description: Tracked flows (LRU).
        type: int
        default: 262144
attributes:
  check_mode:
    description: Reports what would be done (see RV(actions)) without compiling, loading or attaching.
    support: full
  diff_mode:
    description: Shows the program settings before and after.
    support: full
requirements:
  - Linux with XDP and BPF support, root (CAP_BPF and CAP_NET_ADMIN).
  - libbpf 1.x (Debian/Ubuntu C(libbpf1), RHEL/Fedora C(libbpf)).
  - With O(state=present), the BCC Python bindings for the system interpreter
    (Debian/Ubuntu C(python3-bpfcc), RHEL/Fedora C(python3-bcc)) and the kernel headers of the running kernel.
notes:
  - Never install the PyPI package named C(bcc); it is an unrelated library.
seealso:
  - module: netxfw.firewall.netxfw_rule
  - module: netxfw.firewall.netxfw_info
  - module: netxfw.firewall.netxfw_reload
"""

EXAMPLES = r"""
- name: Load the firewall on the uplink, default allow
  netxfw.firewall.netxfw_program:
    interfaces:
      - eth1

- name: Default deny with replies to outbound flows, rate-limited ping
  netxfw.firewall.netxfw_program:
    interfaces: [eth1, eth2]
    policy: deny
    conntrack: true
    conntrack_timeout: 600
    icmp_rate: 50
    icmp_burst: 100

- name: Room for two million blacklist entries (hot reload, rules are migrated)
  netxfw.firewall.netxfw_program:
    interfaces: [eth1]
    capacity:
      blacklist: 2097152

- name: Remove the firewall from every interface
  netxfw.firewall.netxfw_program:
    state: absent
"""

RETURN = r"""
actions:
  description: What was done, or would be done in check mode; empty when nothing had to change.
  returned: always
  type: list
  elements: str
  sample: ["compile and load the data plane", "attach to eth1"]
compiled:
  description: Whether the data plane was compiled and loaded by this run.
  returned: always
  type: bool
  sample: false
identity:
  description: Hash of the data-plane source and its compile-time options, the same for equal programs.
  returned: when O(state=present)
  type: str
  sample: 3f2b9c0d8e1a4b5c6d7e8f9012345678abcdef0123456789abcdef0123456789
diff:
  description: Program settings before and after (with every default filled in).
  returned: in diff mode
  type: dict
  contains:
    before:
      description: Settings before the run; empty when there were none.
      type: dict
    after:
      description: Settings after the run; empty after O(state=absent).
      type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.netxfw.firewall.plugins.module_utils.module_support import (
    common_argument_spec,
    load_engine,
    run_engine,
)

SETTINGS = ("interfaces", "xdp_mode", "policy", "conntrack", "conntrack_timeout", "conntrack_timeouts", "sanity",
            "icmp_rate", "icmp_burst", "ratelimit_global_rate", "ratelimit_global_burst",
            "drop_sampling_rate", "drop_sampling_burst", "capacity")


def argument_spec():
    spec = dict(
        state=dict(type="str", choices=["present", "absent"], default="present"),
        interfaces=dict(type="list", elements="str"),
        xdp_mode=dict(type="str", choices=["auto", "native", "generic"], default="auto"),
        policy=dict(type="str", choices=["allow", "deny"], default="allow"),
        conntrack=dict(type="bool", default=True),
        conntrack_timeout=dict(type="int", default=432000),
        conntrack_timeouts=dict(
            type="dict",
            options=dict(
                tcp_syn=dict(type="int", default=60),
                tcp_established=dict(type="int"),
                tcp_fin=dict(type="int", default=30),
                udp=dict(type="int", default=30),
                udp_stream=dict(type="int", default=180),
                icmp=dict(type="int", default=30),
            ),
        ),
        sanity=dict(
            type="dict",
            options=dict(
                bogon=dict(type="bool", default=False),
                fragments=dict(type="bool", default=False),
                tcp_flags=dict(type="bool", default=True),
                land=dict(type="bool", default=True),
            ),
        ),
        icmp_rate=dict(type="int", default=0),
        icmp_burst=dict(type="int", default=0),
        ratelimit_global_rate=dict(type="int", default=0),
        ratelimit_global_burst=dict(type="int", default=0),
        drop_sampling_rate=dict(type="int", default=10),
        drop_sampling_burst=dict(type="int", default=0),
        capacity=dict(
            type="dict",
            options=dict(
                whitelist=dict(type="int", default=65536),
                blacklist=dict(type="int", default=1048576),
                port_rules=dict(type="int", default=65536),
                conntrack=dict(type="int", default=262144),
            ),
        ),
    )
    spec.update(common_argument_spec())
    return spec


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        required_if=[("state", "present", ("interfaces",))],
        supports_check_mode=True,
    )
    params = module.params
    present = params["state"] == "present"
    engine = load_engine(module, need_bcc=present)
    firewall = run_engine(module, lambda: engine.Firewall(params["pin_path"], params["state_dir"]), "netxfw_program")
    if present:
        settings = dict((name, params[name]) for name in SETTINGS)
        result = run_engine(module, lambda: firewall.apply_program(settings, check_mode=module.check_mode),
                            "netxfw_program")
    else:
        result = run_engine(module, lambda: firewall.remove_program(check_mode=module.check_mode), "netxfw_program")

    output = dict(
        changed=bool(result["changed"]),
        actions=list(result.get("actions", [])),
        compiled=bool(result.get("compiled", False)),
    )
    if present:
        output["identity"] = result.get("identity")
    if module._diff:
        output["diff"] = result.get("diff", {"before": {}, "after": {}})
    module.exit_json(**output)


if __name__ == "__main__":
    main()
