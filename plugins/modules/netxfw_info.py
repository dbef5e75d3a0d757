#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, netxfw developers
# GNU General Public License v2.0+ (see https://www.gnu.org/licenses/gpl-2.0.txt), so also v3.0 (https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-2.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: netxfw_info
short_description: Report the state of the netxfw firewall on a host
version_added: "0.1.0"
description:
  - Reports whether the netxfw data plane is loaded, its settings, program identity, interface
    attachments, per-verdict packet counters and map usage.
  - Reads only; never changes anything.
  - O(query) filters the result on the host, so that only what is asked for crosses the wire.
author:
  - netxfw developers (@netxfw)
extends_documentation_fragment:
  - netxfw.firewall.common
options:
  query:
    description:
      - A JMESPath expression evaluated on the host over the result (the keys RV(loaded), RV(config),
        RV(identity), RV(interfaces), RV(counters) and RV(maps)); its value is returned as RV(query_result).
      - Needs the jmespath Python library on the host (Debian/Ubuntu C(python3-jmespath),
        RHEL/Fedora C(python3-jmespath)).
    type: str
  drops:
    description:
      - Read up to this many sampled drop events (time, reason, addresses, ports) from the data plane's
        ring buffer into RV(drops). Reading consumes them; the data plane samples at most
        O(netxfw.firewall.netxfw_program#module:drop_sampling_rate) drops per second.
      - V(0) reads none.
    type: int
    default: 0
attributes:
  check_mode:
    description: Runs the same in check mode; it changes nothing anyway.
    support: full
  diff_mode:
    description: Never changes anything, so there is no diff.
    support: none
requirements:
  - Linux with BPF support, root.
  - libbpf 1.x (Debian/Ubuntu C(libbpf1), RHEL/Fedora C(libbpf)).
  - jmespath, only with O(query).
seealso:
  - module: netxfw.firewall.netxfw_program
  - module: netxfw.firewall.netxfw_rule
"""

EXAMPLES = r"""
- name: Gather the firewall state
  netxfw.firewall.netxfw_info:
  register: fw

- name: Fail when the data plane is not attached everywhere
  ansible.builtin.assert:
    that:
      - fw.loaded
      - fw.interfaces | dict2items | rejectattr('value.xdp') | list | length == 0

- name: Only the drop counters, filtered on the host
  netxfw.firewall.netxfw_info:
    query: "counters | {blacklist: drop_blacklist.packets, policy: drop_policy.packets}"
  register: drops

- name: Source entries in use (whitelist, blacklist, port-rule sources, auto-bans; one per address or prefix), summed on the host
  netxfw.firewall.netxfw_info:
    query: "sum(maps.[src4_host.entries, src6_host.entries, src4_lpm.entries, src6_lpm.entries])"
  register: source_entries
"""

RETURN = r"""
loaded:
  description: Whether the data plane is loaded (its pins exist and match this layout).
  returned: always
  type: bool
  sample: true
config:
  description: The program settings persisted by M(netxfw.firewall.netxfw_program); empty when there are none.
  returned: always
  type: dict
  sample: {"interfaces": ["eth1"], "policy": "deny", "xdp_mode": "auto", "conntrack": true, "conntrack_timeout": 300,
           "icmp_rate": 0, "icmp_burst": 0,
           "capacity": {"whitelist": 65536, "blacklist": 1048576, "port_rules": 65536, "conntrack": 262144}}
identity:
  description: Identity (hash of source and compile-time options) of the loaded program; null when not loaded.
  returned: always
  type: str
  sample: 3f2b9c0d8e1a4b5c6d7e8f9012345678abcdef0123456789abcdef0123456789
interfaces:
  description:
    - Per interface (configured or carrying the program), its XDP mode and whether the netxfw XDP
      and TC programs are the ones attached. When not loaded, the configured interfaces, where an
      XDP mode is that of a program no valid pin set names (it still filters, with the rules it had).
  returned: always
  type: dict
  sample: {"eth1": {"xdp_mode": "native", "xdp": true, "tc": true}}
counters:
  description: Packets and bytes per verdict reason, summed over CPUs. Empty when not loaded.
  returned: always
  type: dict
  sample: {"drop_blacklist": {"packets": 120, "bytes": 7200}, "pass_policy": {"packets": 5000, "bytes": 420000}}
maps:
  description: Entries in use and capacity of each rule and conntrack map. Empty when not loaded.
  returned: always
  type: dict
  sample: {"src4_host": {"entries": 2, "capacity": 1183744}, "ct": {"entries": 31, "capacity": 262144}}
conntrack:
  description: Conntrack table size, usage and live entries by state (ct plus ct_syn). Empty when not loaded.
  returned: always
  type: dict
  sample: {"entries": 31, "live": 30, "expired": 1, "capacity": 327680, "usage": 9.5e-05,
           "by_state": {"established": 28, "fin_wait": 2}}
ratelimit:
  description:
    - Rate-limit rules as the maps hold them, the global bucket settings, and the source addresses with
      per-source state (most dropped first, at most 100) with their dropped packets. Empty when not loaded.
  returned: always
  type: dict
  sample: {"rules": [{"source": "0.0.0.0/0", "rate": 20, "burst": 40, "syn_only": true, "ban_ttl": 600}],
           "global": {"rate": 0, "burst": 0}, "sources_tracked": 1,
           "sources": [{"address": "203.0.113.66", "dropped": 1200, "idle_s": 0.2}]}
bans:
  description:
    - Addresses the rate limiter banned (runtime state, not in rules.json) with their remaining seconds,
      soonest expiry first. Empty when not loaded.
  returned: always
  type: list
  elements: dict
  sample: [{"address": "203.0.113.66", "expires_in": 598.2}]
rules_in_step:
  description:
    - V(true) when the rule maps hold what rules.json says. V(false) when a write to them was interrupted (the
      module or the agent killed, a crash); the data plane then enforces neither the old rules nor the new ones
      until a netxfw.firewall.netxfw_rule or netxfw.firewall.netxfw_program run, or C(netxfw reload), rebuilds
      them; the module warns. V(null) when not loaded, when rules.json cannot be read, or while a run writes.
  returned: always
  type: bool
  sample: true
drops:
  description:
    - Sampled drop events read (and consumed) from the data plane's ring buffer, oldest first, when
      O(drops) > 0. C(time) is epoch seconds.
  returned: when O(drops) > 0
  type: list
  elements: dict
  sample: [{"time": 1767225600.5, "reason": "drop_ratelimit", "proto": 17, "src": "203.0.113.66",
            "dst": "203.0.113.1", "sport": 40000, "dport": 9300, "len": 43}]
query_result:
  description: The value of O(query) over the result.
  returned: when O(query) is given
  type: raw
  sample: {"blacklist": 120, "policy": 0}
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.netxfw.firewall.plugins.module_utils.module_support import (
    common_argument_spec,
    load_engine,
    load_queries,
    run_engine,
)

try:
    import jmespath
except ImportError:
    jmespath = None
    JMESPATH_IMPORT_ERROR = traceback.format_exc()
else:
    JMESPATH_IMPORT_ERROR = None


def argument_spec():
    spec = dict(query=dict(type="str"), drops=dict(type="int", default=0))
    spec.update(common_argument_spec())
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    if params["query"] is not None and jmespath is None:
        module.fail_json(msg=missing_required_lib("jmespath", reason="to evaluate query")
                         + " (Debian/Ubuntu: python3-jmespath, RHEL/Fedora: python3-jmespath)",
                         exception=JMESPATH_IMPORT_ERROR)
    if params["drops"] < 0:
        module.fail_json(msg="drops must be 0 (none) or more, not %d" % params["drops"])
    engine = load_engine(module)
    firewall = run_engine(module, lambda: engine.Firewall(params["pin_path"], params["state_dir"]), "netxfw_info")
    queries = load_queries(module)
    info = run_engine(module, lambda: queries.info(firewall), "netxfw_info")
    output = dict(
        changed=False,
        loaded=bool(info.get("loaded")),
        config=info.get("config") or {},
        identity=info.get("identity"),
        interfaces=info.get("interfaces") or {},
        counters=info.get("counters") or {},
        maps=info.get("maps") or {},
        conntrack=info.get("conntrack") or {},
        ratelimit=info.get("ratelimit") or {},
        bans=info.get("bans") or [],
        rules_in_step=info.get("rules_in_step"),
    )
    if output["rules_in_step"] is False:
        module.warn("the rule maps under %s do not hold %s: a write to them was interrupted, the data plane does not "
                    "enforce the stored rules; any netxfw.firewall.netxfw_rule or netxfw_program run (or `netxfw "
                    "reload` on the host) rebuilds them" % (params["pin_path"], firewall.store.rules_path))
    if params["drops"] > 0:
        output["drops"] = run_engine(module, lambda: queries.drops(firewall, limit=params["drops"]), "netxfw_info")["events"]
    if params["query"] is not None:
        data = dict((key, value) for key, value in output.items() if key != "changed")
        try:
            output["query_result"] = jmespath.search(params["query"], data)
        except jmespath.exceptions.JMESPathError as exc:
            module.fail_json(msg="invalid query %r: %s" % (params["query"], exc))
    module.exit_json(**output)


if __name__ == "__main__":
    main()
