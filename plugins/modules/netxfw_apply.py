#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, netxfw developers
# GNU General Public License v2.0+ (see https://www.gnu.org/licenses/gpl-2.0.txt), so also v3.0 (https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-2.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
---
module: netxfw_apply
short_description: Apply a host's whole netxfw state (the four rule lists and the program) under confirm-or-rollback
description:
  - Makes the whitelist, the blacklist, the port rules and the rate-limit rules exactly O(whitelist), O(blacklist),
    O(port) and O(ratelimit) (as M(netxfw.firewall.netxfw_rule) with C(exclusive=true)), then the data plane O(program)
    (as M(netxfw.firewall.netxfw_program) with C(state=present)), in one run on the host. The rules go first, so
    that the controller is whitelisted before a default deny goes live.
  - O(program), O(port) and O(ratelimit) are checked before any part is applied (a mistake there changes nothing,
    also with O(rollback=false)); the entries of O(whitelist) and O(blacklist), which may be long, are checked as
    each list is applied.
  - Auto-bans (what a O(ratelimit) rule with C(ban_ttl) bans at run time) are not rule-list entries; an apply keeps
    the live ones, as M(netxfw.firewall.netxfw_rule) does, also when it changes or removes the rule that banned.
  - With O(rollback) (the default), the change is confirm-or-rollback, as C(community.general.iptables_state).
    On the host, before anything changes, C(netxfw rollback-after) opens a rollback window (a snapshot of the last
    confirmed state and a detached timer; one window per host, waiting up to O(rollback_wait) for another one).
    The apply runs as the window's owner. When it fails, C(netxfw rollback-now) reverts this change at once and
    the task fails saying so. Otherwise C(netxfw rollback-countdown) leaves O(rollback_timeout) seconds.
  - The action plugin of the same name then drops the connection, reconnects and runs C(netxfw confirm). When it
    cannot reconnect, the host rolls the change back by itself; the plugin waits until the host answers again and
    fails, saying that the change was ROLLED BACK and what was restored. Changes others made while the window was
    open are kept.
  - The logic of the window is the host agent's (C(netxfw rollback-after), C(confirm), C(rollback-countdown),
    C(rollback-now)); the agent must be installed (the netxfw role installs it).
version_added: "0.1.0"
author:
  - netxfw developers (@netxfw)
options:
  whitelist:
    description: The whole whitelist, addresses or CIDRs.
    type: list
    elements: str
    default: []
  blacklist:
    description: The whole blacklist, each a CIDR or V({cidr, expires}).
    type: list
    elements: raw
    default: []
  port:
    description: The whole list of port rules, each V({source, proto, port or ports, action}).
    type: list
    elements: dict
    default: []
  ratelimit:
    description:
      - The whole list of rate-limit rules, each V({source, rate, burst, syn_only, ban_ttl}), the entries of
        M(netxfw.firewall.netxfw_rule) with C(kind=ratelimit) (see its O(netxfw.firewall.netxfw_rule#module:entries)).
    type: list
    elements: dict
    default: []
  program:
    description:
      - The data plane's settings, the options of M(netxfw.firewall.netxfw_program) with C(state=present)
        (V(interfaces) required; V(policy), V(xdp_mode), V(conntrack), V(icmp_rate), V(capacity), ...). What is
        left out takes the engine's defaults.
    type: dict
    required: true
  rollback:
    description: Confirm-or-rollback around the apply. Does nothing in check mode.
    type: bool
    default: true
  rollback_timeout:
    description: Seconds the controller has, after the apply, to reconnect and confirm.
    type: int
    default: 30
  rollback_apply_window:
    description: Extra seconds the host's timer allows for the apply itself (a first compile takes a while).
    type: int
    default: 900
  rollback_wait:
    description: Seconds to wait for another run's open window on the host to close before opening this one.
    type: int
    default: 930
  rollback_connect_timeout:
    description: SSH connect timeout, in seconds, of the confirming reconnect (action plugin).
    type: int
    default: 10
  rollback_owner:
    description: Who opened the window, as C(netxfw rollback-status) shows it.
    type: str
    default: netxfw.firewall.netxfw_apply
  cli_path:
    description: The host's C(netxfw) CLI (the agent), which runs the rollback window.
    type: path
    default: /usr/local/sbin/netxfw
  max_listed:
    description: At most this many added and removed entries per list in RV(parts) and in the diff.
    type: int
    default: 1000
extends_documentation_fragment:
  - netxfw.firewall.common
notes:
  - Supports check mode and diff mode. The diff has one part per list that changes (C(netxfw whitelist),
    C(netxfw blacklist), C(netxfw port), C(netxfw ratelimit)) and one for the program.
  - Requires root on the managed host, and the BCC Python bindings (it compiles the data plane when it changes).
seealso:
  - module: netxfw.firewall.netxfw_rule
  - module: netxfw.firewall.netxfw_program
  - module: netxfw.firewall.netxfw_host
"""

EXAMPLES = r"""
- name: The host's whole firewall, confirmed over a fresh connection or rolled back by the host
  netxfw.firewall.netxfw_apply:
    whitelist: [198.51.100.1, 10.20.0.0/16]
    blacklist: [203.0.113.0/24]
    port:
      - {source: any, proto: tcp, port: 22, action: allow}
    ratelimit:
      - {source: 0.0.0.0/0, rate: 20, burst: 40, syn_only: true, ban_ttl: 600}
    program:
      interfaces: [eth0]
      policy: deny
      icmp_rate: 100
      icmp_burst: 200
    rollback_timeout: 30
"""

RETURN = r"""
parts:
  description:
    - What changed, per part. V(whitelist), V(blacklist), V(port) and V(ratelimit) as M(netxfw.firewall.netxfw_rule) returns them
      (V(changed), V(added), V(removed), V(added_count), V(removed_count), V(truncated)); V(program) as
      M(netxfw.firewall.netxfw_program) (V(changed), V(actions), V(compiled), V(identity)).
  returned: success
  type: dict
rollback:
  description:
    - The window of this change. V(id); V(previous_rollback), an earlier unconfirmed change that was rolled back and
      not reported yet; V(waited_for), the windows of other runs this one waited for; V(confirmed), set by the
      action plugin. Empty when O(rollback) is off or in check mode.
  returned: always
  type: dict
report:
  description: What the play should say about the window, one line each (the role prints it).
  returned: always
  type: list
  elements: str
  sample: ["netxfw: change 5f0c2a7d9e1b3c44 CONFIRMED on web1: whitelist unchanged, blacklist changed, port unchanged, ratelimit unchanged, program unchanged"]
"""

import json
import os
import time
import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.netxfw.firewall.plugins.module_utils.module_support import (
    common_argument_spec,
    compact_diff,
    listed,
    load_engine,
    run_engine,
)
from ansible_collections.netxfw.firewall.plugins.module_utils.payload import clean_entries
from ansible_collections.netxfw.firewall.plugins.module_utils.rules import REGISTRY
from ansible_collections.netxfw.firewall.plugins.module_utils.errors import NetxfwError
from ansible_collections.netxfw.firewall.plugins.module_utils.state import OWNER_ENV

# one option per rule kind, named after it, applied in the registry's order (the whitelist first); the lists of
# mappings are short and checked before any part is applied, the plain ones (maybe long) as they are applied
RULE_PARTS = tuple(kind.name for kind in REGISTRY)
CHECKED_FIRST = tuple(kind.name for kind in REGISTRY if not kind.plain)
# test only (docs/internals.md): once the window is open, create this file and wait until it is removed
TEST_PAUSE_ENV = "NETXFW_TEST_APPLY_PAUSE"
TEST_PAUSE_MAX = 600


def argument_spec():
    spec = dict(
        whitelist=dict(type="list", elements="str", default=[]),
        blacklist=dict(type="list", elements="raw", default=[]),
        port=dict(type="list", elements="dict", default=[]),
        ratelimit=dict(type="list", elements="dict", default=[]),
        program=dict(type="dict", required=True),
        rollback=dict(type="bool", default=True),
        rollback_timeout=dict(type="int", default=30),
        rollback_apply_window=dict(type="int", default=900),
        rollback_wait=dict(type="int", default=930),
        rollback_connect_timeout=dict(type="int", default=10),
        rollback_owner=dict(type="str", default="netxfw.firewall.netxfw_apply"),
        cli_path=dict(type="path", default="/usr/local/sbin/netxfw"),
        max_listed=dict(type="int", default=1000),
    )
    spec.update(common_argument_spec())
    return spec


def cli(module, *args):
    params = module.params
    argv = [params["cli_path"], "--pin-path", params["pin_path"], "--state-dir", params["state_dir"], "--json"]
    rc, out, err = module.run_command(argv + [str(a) for a in args])
    try:
        data = json.loads(out) if out.strip() else None
    except ValueError:
        data = None
    return rc, data, (err or "").strip()


def arm(module):
    params = module.params
    if not os.access(params["cli_path"], os.X_OK):
        module.fail_json(msg="netxfw: confirm-or-rollback needs the netxfw CLI at %s (the host agent: "
                             "netxfw_rollback needs netxfw_install_agent)" % params["cli_path"])
    seconds = params["rollback_apply_window"] + params["rollback_timeout"]
    rc, armed, err = cli(module, "rollback-after", seconds, "--owner", params["rollback_owner"],
                         "--wait", params["rollback_wait"])
    if rc != 0 or not isinstance(armed, dict) or not armed.get("id"):
        module.fail_json(msg="netxfw: could not open a rollback window: %s" % (err or armed), rollback={})
    return armed


def test_pause():
    path = os.environ.get(TEST_PAUSE_ENV)
    if not path:
        return
    with open(path, "w", encoding="utf-8"):
        pass
    give_up = time.monotonic() + TEST_PAUSE_MAX
    while os.path.exists(path) and time.monotonic() < give_up:
        time.sleep(0.05)


def apply_all(module, firewall):
    params = module.params
    limit = params["max_listed"]
    parts, diffs = {}, []
    for name in RULE_PARTS:
        result = firewall.apply_rules(name, clean_entries(params[name]), state="present", exclusive=True,
                                      check_mode=module.check_mode)
        added, removed = result["added"], result["removed"]
        added_listed, added_cut = listed(added, limit)
        removed_listed, removed_cut = listed(removed, limit)
        parts[name] = dict(changed=bool(result["changed"]), added=added_listed, removed=removed_listed,
                           added_count=len(added), removed_count=len(removed), truncated=added_cut or removed_cut)
        if result["changed"]:
            diffs.append(compact_diff(name, added, removed, True, limit))
    result = firewall.apply_program(params["program"], check_mode=module.check_mode)
    parts["program"] = dict(changed=bool(result["changed"]), actions=list(result.get("actions", [])),
                            compiled=bool(result.get("compiled", False)), identity=result.get("identity"))
    if result["changed"]:
        diff = dict(result.get("diff") or {"before": {}, "after": {}})
        diff.setdefault("before_header", "netxfw program (before)")
        diff.setdefault("after_header", "netxfw program (after)")
        diffs.append(diff)
    return parts, diffs


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    if params["max_listed"] < 0:
        module.fail_json(msg="max_listed must be 0 or more, not %d" % params["max_listed"])
    # first: a respawn under the system python (BCC) starts this module again from the top
    engine = load_engine(module, need_bcc=True)
    if params["program"].get("interfaces") is None:
        module.fail_json(msg="program.interfaces is required: the interfaces to attach to (without it the data plane "
                             "would be detached from every interface; [] loads it attached nowhere)")
    firewall = run_engine(module, lambda: engine.Firewall(params["pin_path"], params["state_dir"]), "netxfw_apply")
    # what is cheap to check goes first, so that a mistake there fails before any part is applied (without
    # rollback nothing would undo the parts before it); a long blacklist is checked as it is applied
    run_engine(module, lambda: (firewall.check_program(params["program"]),
                                [engine.rules.normalize(name, clean_entries(params[name])) for name in CHECKED_FIRST]),
               "netxfw_apply")
    armed = None
    if params["rollback"] and not module.check_mode:
        armed = arm(module)
        os.environ[OWNER_ENV] = armed["id"]  # this run's changes are the window's own, not journaled
        # the state store takes its owner when it is made: one made before the window would journal this run's
        # changes as others' and a rollback would keep them
        firewall = run_engine(module, lambda: engine.Firewall(params["pin_path"], params["state_dir"]), "netxfw_apply")
        test_pause()
    window = {}
    if armed:
        window = dict(id=armed["id"], previous_rollback=armed.get("previous_rollback"),
                      waited_for=armed.get("waited_for") or [], confirmed=None)
    try:
        parts, diffs = apply_all(module, firewall)
    except Exception as exc:  # pylint: disable=broad-except
        error = str(exc) if isinstance(exc, NetxfwError) else "%s: %s" % (type(exc).__name__, exc)
        rescue = None
        if armed:
            # a failed apply is not left half-done for the length of the window: its own change is
            # rolled back now (others' changes made meanwhile are kept)
            rc, report, err = cli(module, "rollback-now", armed["id"])
            rescue = dict(rc=rc, report=report, stderr=err)
        module.fail_json(msg="netxfw: the apply failed: %s" % error, error=error, rollback=window, rescue=rescue,
                         exception=None if isinstance(exc, NetxfwError) else traceback.format_exc())
    if armed:
        rc, dummy, err = cli(module, "rollback-countdown", armed["id"], params["rollback_timeout"])
        if rc != 0:
            window["countdown_error"] = err  # the confirm says what became of the window
    changed = any(part["changed"] for part in parts.values())
    output = dict(changed=changed, parts=parts, rollback=window, report=[])
    if module._diff:
        output["diff"] = diffs
    module.exit_json(**output)


if __name__ == "__main__":
    main()
