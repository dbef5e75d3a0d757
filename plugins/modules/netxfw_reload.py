#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, netxfw developers
# GNU General Public License v2.0+ (see https://www.gnu.org/licenses/gpl-2.0.txt), so also v3.0 (https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-2.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: netxfw_reload
short_description: Lossless hot reload of the netxfw data plane (capacity changes and program upgrades)
version_added: "0.1.0"
description:
  - Recompiles the netxfw data plane with the settings stored in O(state_dir)/config.json plus the
    given O(capacity) changes, and replaces the running program without losing state.
  - The new object is loaded first; every map's contents (whitelist, blacklist with expiring
    entries, port rules, conntrack, ICMP token bucket, per-CPU counters, runtime settings) are
    copied from the pinned maps in batches; the XDP and TC programs are swapped atomically on every
    interface (XDP with C(XDP_FLAGS_REPLACE) against the program that ran when the reload began, TC
    replaced in place); what the old program wrote in between is copied again; the pins are swapped
    with one rename; the old object is released.
  - When the new program fails to compile, fails the verifier or cannot be attached to every
    interface, the interfaces already swapped are rolled back, the old program keeps running with
    its maps untouched, and the task fails with the reason.
  - Shrinking a capacity below the number of live entries a map holds fails before anything changes.
  - A run killed half-way leaves every interface on the old or the new program, each with complete
    maps; the next netxfw run (any module) completes or discards the interrupted reload.
  - Nothing is done when the program identity (source and capacities) is already loaded, unless
    O(force) is set. M(netxfw.firewall.netxfw_program) uses the same reload when its capacities or
    the data-plane source change (an upgrade of the collection).
author:
  - netxfw developers (@netxfw)
extends_documentation_fragment:
  - netxfw.firewall.common
options:
  capacity:
    description:
      - Map sizes to change, in entries; options left out keep their stored values.
    type: dict
    suboptions:
      whitelist:
        description: Whitelist entries per family and kind (host addresses and prefixes each).
        type: int
      blacklist:
        description: Blacklist entries per family and kind (host addresses and prefixes each).
        type: int
      port_rules:
        description: Port rule keys per family; a port range takes one key per port.
        type: int
      conntrack:
        description: Tracked flows (LRU).
        type: int
  force:
    description:
      - Reload even when the identity is unchanged.
    type: bool
    default: false
attributes:
  check_mode:
    description: Reports what would be done (RV(actions), and in RV(migrated) the entries each map would
      migrate) without compiling; a shrink below the current entries fails also in check mode.
    support: full
  diff_mode:
    description: Shows the program settings and identity before and after.
    support: full
requirements:
  - Linux with XDP and BPF support, root (CAP_BPF and CAP_NET_ADMIN).
  - libbpf 1.x, the BCC Python bindings for the system interpreter (Debian/Ubuntu C(python3-bpfcc),
    RHEL/Fedora C(python3-bcc)) and the kernel headers of the running kernel.
notes:
  - The data plane must have been loaded with M(netxfw.firewall.netxfw_program) (O(state_dir)/config.json exists).
  - Changing O(capacity) here also stores it in config.json; later M(netxfw.firewall.netxfw_program) runs
    compare against what they are given.
seealso:
  - module: netxfw.firewall.netxfw_program
  - module: netxfw.firewall.netxfw_info
"""

EXAMPLES = r"""
- name: Grow the blacklist to two million entries on a live host
  netxfw.firewall.netxfw_reload:
    capacity:
      blacklist: 2097152

- name: Reload the same program (for example to pick up a rebuilt source)
  netxfw.firewall.netxfw_reload:
    force: true

- name: What would a conntrack resize migrate?
  netxfw.firewall.netxfw_reload:
    capacity:
      conntrack: 1048576
  check_mode: true
"""

RETURN = r"""
actions:
  description: What was done, or would be done in check mode; empty when nothing had to change.
  returned: always
  type: list
  elements: str
  sample: ["compile and load the data plane (identity 3f2b9c0d8e1a)", "migrate the maps of identity 9a0c1d2e3f40",
           "swap the programs on eth1"]
compiled:
  description: Whether a new program was compiled and swapped in by this run.
  returned: always
  type: bool
  sample: true
identity:
  description: Identity of the program loaded after the run (or that would be, in check mode).
  returned: always
  type: str
  sample: 3f2b9c0d8e1a4b5c6d7e8f9012345678abcdef0123456789abcdef0123456789
migrated:
  description:
    - Per map, what was migrated; in check mode, the entries each map holds now.
    - C(source) is C(copy), C(converted), C(rules.json) (refilled from the JSON), C(new) (starts empty),
      C(rebuilt) (the exact-source prefilter, from the new exact-address maps) or
      C(per-cpu sum at the swap) (counters); C(recopied) counts entries copied again after the swap.
  returned: always
  type: dict
  sample: {"src4_host": {"entries": 1000000, "source": "copy", "duration_ms": 812.4},
           "ct": {"entries": 52, "source": "copy", "duration_ms": 0.4, "recopied": 3}}
skipped:
  description: Entries not migrated and why (expired entries, maps whose format changed without a converter).
  returned: always
  type: list
  elements: dict
  sample: [{"map": "src4_host", "entries": 3, "reason": "expired"}]
duration_ms:
  description: Wall time of the reload, in milliseconds (0 when nothing was reloaded).
  returned: always
  type: float
  sample: 1840.2
diff:
  description: Program settings (with the identity) before and after.
  returned: in diff mode
  type: dict
  contains:
    before:
      description: Stored settings and the loaded identity before the run.
      type: dict
    after:
      description: Settings and identity after the run.
      type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.netxfw.firewall.plugins.module_utils.module_support import (
    common_argument_spec,
    load_engine,
    run_engine,
)


def argument_spec():
    spec = dict(
        capacity=dict(
            type="dict",
            options=dict(
                whitelist=dict(type="int"),
                blacklist=dict(type="int"),
                port_rules=dict(type="int"),
                conntrack=dict(type="int"),
            ),
        ),
        force=dict(type="bool", default=False),
    )
    spec.update(common_argument_spec())
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    engine = load_engine(module, need_bcc=not module.check_mode)
    firewall = run_engine(module, lambda: engine.Firewall(params["pin_path"], params["state_dir"]), "netxfw_reload")
    result = run_engine(
        module,
        lambda: firewall.reload(capacity=params["capacity"], force=params["force"], check_mode=module.check_mode),
        "netxfw_reload",
    )
    output = dict(
        changed=bool(result["changed"]),
        actions=list(result.get("actions", [])),
        compiled=bool(result.get("compiled", False)),
        identity=result.get("identity"),
        migrated=result.get("migrated", {}),
        skipped=list(result.get("skipped", [])),
        duration_ms=float(result.get("duration_ms", 0.0)),
    )
    if module._diff:
        output["diff"] = result.get("diff", {"before": {}, "after": {}})
    module.exit_json(**output)


if __name__ == "__main__":
    main()
