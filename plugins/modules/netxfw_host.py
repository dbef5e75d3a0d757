#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, netxfw developers
# GNU General Public License v2.0+ (see https://www.gnu.org/licenses/gpl-2.0.txt)
# SPDX-License-Identifier: GPL-2.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
---
module: netxfw_host
short_description: Learn what a netxfw host is, and what it lacks, in one round trip
description:
  - Read-only. In one run on the host it learns the controller's SSH source address, the interfaces to attach
    to and whether systemd runs, and it checks everything the netxfw role installs (packages and kernel headers,
    the agent release, the CLI, unit and environment files, the API token, the enabled units or the running
    agent). It reports what is missing; the role runs its install tasks only then.
  - The action plugin of the same name prepares the checks on the controller. It packs the agent library and
    hashes it, renders O(templates) and reads the dependency script. When the agent release is missing it
    leaves the packed library in the run's local temp dir (RV(payload)) for the install to copy.
  - The controller address comes from C(SSH_CONNECTION). Under C(become) the environment no longer has it,
    so the module reads it from the SSH session's processes, its ancestors.
version_added: "0.1.0"
author: netxfw developers
options:
  interfaces:
    description:
      - Interfaces to attach to, as a list or a comma-separated string. When empty, every interface that carries
        a default route (IPv4 or IPv6, each leg of a multipath route), else the one holding the address the SSH
        session came in on.
    type: raw
    default: []
  whitelist_controller:
    description: Report the controller's SSH source address in RV(controller). With V(false), RV(controller) is empty.
    type: bool
    default: true
  controller_address:
    description: Use this controller address instead of the one from C(SSH_CONNECTION) (behind NAT).
    type: str
    default: ""
  use_systemd:
    description: Whether units are enabled and started. V(auto) means where systemd runs (C(/run/systemd/system) exists).
    type: str
    choices: [auto, "yes", "no"]
    default: auto
  deps:
    description:
      - Check the packages and kernel headers that C(netxfw-host-deps) installs (it runs C(netxfw-host-deps check)).
    type: bool
    default: true
  agent:
    description:
      - Check the agent release, the CLI, O(templates), O(token_file) and that the units are enabled (systemd) or the
        agent runs (O(agent_run_without_systemd)).
    type: bool
    default: true
  lib_dir:
    description: The agent library directory (C(releases/<sha256>) and the symlinks to the current one).
    type: path
    default: /usr/lib/netxfw
  cli_path:
    description: Where the C(netxfw) CLI is installed.
    type: path
    default: /usr/local/sbin/netxfw
  state_dir:
    description: The netxfw state directory (it must exist with mode 0700; the agent's pid file is here).
    type: path
    default: /var/lib/netxfw
  templates:
    description:
      - Files whose content must be exactly a rendered template of the role, each V({src, dest, mode}). The action
        plugin renders O(templates[].src) with the task's variables; RV(files) returns what it rendered.
    type: list
    elements: dict
    default: []
  token_file:
    description: The agent's API token file, which must exist.
    type: path
  agent_service:
    description: Where systemd runs, C(netxfw-agent.service) must be enabled and active.
    type: bool
    default: true
  agent_run_without_systemd:
    description: Where systemd does not run, the agent must be running (its pid file is C(<state_dir>/agent.pid)).
    type: bool
    default: false
notes:
  - Supports check mode; it changes nothing either way.
  - The netxfw role calls it once per host and per play, and registers the result.
seealso:
  - module: netxfw.firewall.netxfw_apply
"""

EXAMPLES = r"""
- name: What does this host need?
  netxfw.firewall.netxfw_host:
    templates:
      - {src: netxfw-restore.service.j2, dest: /etc/systemd/system/netxfw-restore.service, mode: "0644"}
    token_file: /var/lib/netxfw/agent.token
  register: host

- name: Install the dependencies only when something is missing
  ansible.builtin.script:
    cmd: netxfw-host-deps all
  when: host.missing.deps | length > 0
"""

RETURN = r"""
controller:
  description: The controller's address to whitelist, a list of zero or one address.
  returned: always
  type: list
  elements: str
  sample: ["198.51.100.1"]
interfaces:
  description: The interfaces to attach to.
  returned: always
  type: list
  elements: str
  sample: [lan0]
systemd:
  description: Whether units are enabled and started on this host.
  returned: always
  type: bool
missing:
  description: What the host lacks. Everything empty or false means nothing to install.
  returned: always
  type: dict
  contains:
    deps:
      description: What C(netxfw-host-deps all) would install or link, one line each.
      type: list
      elements: str
    agent:
      description: The agent release (library, symlinks, CLI) is not the one of this collection.
      type: bool
    directories:
      description: Directories to create or fix (the library and the state directory).
      type: list
      elements: str
    files:
      description: The destinations of O(templates) whose content or mode differs.
      type: list
      elements: str
    token:
      description: The API token file is missing.
      type: bool
    units:
      description: The units are not enabled (or the agent not active) where systemd runs.
      type: bool
    agent_running:
      description: The agent should run without systemd and does not.
      type: bool
needs_install:
  description: Whether anything in RV(missing) is missing.
  returned: always
  type: bool
files:
  description: O(templates) as rendered, V({dest, mode, content}) (set by the action plugin).
  returned: when O(templates) is given
  type: list
  elements: dict
payload:
  description:
    - The packed agent library on the controller, V({path, sha256}), left in the run's local temp dir for the
      install to copy. Only when the release is missing.
  returned: when RV(missing.agent) is true
  type: dict
"""

import hashlib
import json
import os
import stat
import subprocess

from ansible.module_utils.basic import AnsibleModule

NO_ROUTE_TYPES = ("unreachable", "blackhole", "prohibit", "throw")
SSH_ENV = b"SSH_CONNECTION="


def ssh_connection():
    """SSH_CONNECTION from the environment, else from the nearest ancestor that has it (become
    clears the environment; the session's shell still holds it)."""
    value = os.environ.get("SSH_CONNECTION")
    if value:
        return value
    pid = os.getppid()
    for dummy in range(16):
        if pid <= 1:
            break
        try:
            with open("/proc/%d/environ" % pid, "rb") as stream:
                for item in stream.read().split(b"\0"):
                    if item.startswith(SSH_ENV):
                        return item[len(SSH_ENV):].decode("ascii", "replace")
            with open("/proc/%d/stat" % pid, "rb") as stream:
                pid = int(stream.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return ""


def ip_json(module, args):
    rc, out, dummy = module.run_command(["ip", "-j"] + args)
    if rc != 0 or not out.strip():
        return []
    try:
        return json.loads(out)
    except ValueError:
        return []


def uplinks(module):
    """Every interface a default route leads out of (IPv4 then IPv6, each leg of a multipath route)."""
    found = []
    for family in ("-4", "-6"):
        for route in ip_json(module, [family, "route", "show", "default"]):
            if route.get("type") in NO_ROUTE_TYPES:
                continue
            legs = route.get("nexthops") or [route]
            for leg in legs:
                dev = leg.get("dev")
                if dev and dev != "lo" and dev not in found:
                    found.append(dev)
    return found


def interface_of(module, address):
    for link in ip_json(module, ["addr", "show", "to", address]):
        name = link.get("ifname")
        if name:
            return name
    return None


def wanted_interfaces(module, given, ssh):
    if isinstance(given, str):
        return [name.strip() for name in given.split(",") if name.strip()]
    if given:
        return [str(name) for name in given]
    found = uplinks(module)
    if found:
        return found
    server = ssh[2] if len(ssh) > 2 else ""
    dev = interface_of(module, server) if server else None
    return [dev] if dev else []


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def same_file(path, sha256, mode):
    try:
        st = os.stat(path)
    except OSError:
        return False
    if mode is not None and stat.S_IMODE(st.st_mode) != int(str(mode), 8):
        return False
    return file_sha256(path) == sha256


def agent_release_missing(lib_dir, cli_path, sha):
    release = os.path.join(lib_dir, "releases", sha)
    if not os.path.isdir(release):
        return True
    for name in ("netxfw_engine", "netxfw_agent", "bin"):
        try:
            if os.readlink(os.path.join(lib_dir, name)) != "releases/%s/%s" % (sha, name):
                return True
        except OSError:
            return True
    try:
        return file_sha256(cli_path) != file_sha256(os.path.join(release, "bin", "netxfw"))
    except OSError:
        return True


def directories_missing(params):
    out = []
    for path, mode in ((params["lib_dir"], 0o755), (params["state_dir"], 0o700)):
        try:
            st = os.stat(path)
        except OSError:
            out.append(path)
            continue
        if not stat.S_ISDIR(st.st_mode) or stat.S_IMODE(st.st_mode) != mode:
            out.append(path)
    return out


def agent_alive(state_dir):
    try:
        with open(os.path.join(state_dir, "agent.pid"), encoding="ascii") as stream:
            pid = int(stream.read().strip())
        with open("/proc/%d/cmdline" % pid, "rb") as stream:
            return b"serve" in stream.read()
    except (OSError, ValueError):
        return False


def units_missing(module, agent_service):
    def systemctl(*args):
        return module.run_command(["systemctl"] + list(args))[0] == 0
    if not systemctl("is-enabled", "--quiet", "netxfw-restore.service"):
        return True
    if agent_service:
        return not (systemctl("is-enabled", "--quiet", "netxfw-agent.service")
                    and systemctl("is-active", "--quiet", "netxfw-agent.service"))
    return systemctl("is-active", "--quiet", "netxfw-agent.service")


def deps_missing(module, script):
    rc, out, err = module.run_command(["bash", "-c", script, "netxfw-host-deps", "check"])
    if rc != 0:
        module.fail_json(msg="netxfw-host-deps check failed (%d): %s" % (rc, (err or out).strip()))
    prefix = "netxfw-host-deps: missing: "
    return [line[len(prefix):] for line in out.splitlines() if line.startswith(prefix)]


def main():
    module = AnsibleModule(
        argument_spec=dict(
            interfaces=dict(type="raw", default=[]),
            whitelist_controller=dict(type="bool", default=True),
            controller_address=dict(type="str", default=""),
            use_systemd=dict(type="str", choices=["auto", "yes", "no"], default="auto"),
            deps=dict(type="bool", default=True),
            agent=dict(type="bool", default=True),
            lib_dir=dict(type="path", default="/usr/lib/netxfw"),
            cli_path=dict(type="path", default="/usr/local/sbin/netxfw"),
            state_dir=dict(type="path", default="/var/lib/netxfw"),
            templates=dict(type="list", elements="dict", default=[]),
            token_file=dict(type="path"),
            agent_service=dict(type="bool", default=True),
            agent_run_without_systemd=dict(type="bool", default=False),
            # set by the action plugin
            _deps_script=dict(type="str"),
            _payload_sha256=dict(type="str"),
            _files=dict(type="list", elements="dict", default=[]),
        ),
        supports_check_mode=True,
    )
    params = module.params
    ssh = ssh_connection().split()
    controller = []
    if params["whitelist_controller"]:
        if params["controller_address"]:
            controller = [params["controller_address"]]
        elif ssh:
            controller = [ssh[0]]
    interfaces = wanted_interfaces(module, params["interfaces"], ssh)
    if not interfaces or (params["whitelist_controller"] and not controller):
        module.fail_json(
            msg="netxfw: interfaces %s, controller address %s. Set netxfw_interfaces when the host has no default "
                "route, and netxfw_controller_address (or netxfw_whitelist_controller=false) when SSH_CONNECTION is "
                "not available (e.g. connection=local)." % (interfaces, controller),
            interfaces=interfaces, controller=controller)
    use = params["use_systemd"]
    systemd = use == "yes" or (use == "auto" and os.path.isdir("/run/systemd/system"))

    missing = dict(deps=[], agent=False, directories=[], files=[], token=False, units=False, agent_running=False)
    if params["deps"]:
        if not params["_deps_script"]:
            module.fail_json(msg="deps=true needs the action plugin netxfw.firewall.netxfw_host (it passes the check)")
        missing["deps"] = deps_missing(module, params["_deps_script"])
    if params["agent"]:
        if params["_payload_sha256"]:
            missing["agent"] = agent_release_missing(params["lib_dir"], params["cli_path"], params["_payload_sha256"])
        missing["directories"] = directories_missing(params)
        missing["files"] = [f["dest"] for f in params["_files"] if not same_file(f["dest"], f["sha256"], f.get("mode"))]
        if params["token_file"]:
            missing["token"] = not os.path.isfile(params["token_file"])
        if systemd:
            missing["units"] = units_missing(module, params["agent_service"])
        elif params["agent_run_without_systemd"]:
            missing["agent_running"] = not agent_alive(params["state_dir"])
    module.exit_json(changed=False, controller=controller, interfaces=interfaces, systemd=systemd, missing=missing,
                     needs_install=any(bool(v) for v in missing.values()))


if __name__ == "__main__":
    main()
