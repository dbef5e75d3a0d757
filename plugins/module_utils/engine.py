# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-2.0-or-later
"""The netxfw engine: the one implementation behind the modules, the CLI and the agent.

Desired state is the JSON in state_dir; runtime state is the pinned maps under
pin_path. Every entry point takes the state lock, compares the two, acts once
and persists. Imports nothing from ansible.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import hashlib
import ipaddress
import os
import struct
import socket
import subprocess
import time

from . import bpfsys, layout, rules, sources
from . import reload as hot_reload
from .errors import NetxfwError
from .payload import request_digest
from .state import StateStore

DEFAULT_PIN_PATH = "/sys/fs/bpf/netxfw"
DEFAULT_STATE_DIR = "/var/lib/netxfw"
BPF_FS_MAGIC = 0xCAFE4A11
TC_HANDLE = 1
TC_PRIO = 0x4E58

RULE_KINDS = {"whitelist": "whitelist", "blacklist": "blacklist", "port": "port_rules", "ratelimit": "ratelimits"}
SOURCE_KINDS = ("whitelist", "blacklist", "port", "ratelimit")
REQUESTS_KEPT = 4  # per kind, in <state_dir>/.requests.json  # kinds whose entries (or sources) go into the src maps

# seconds per conntrack state (tcp_established is conntrack_timeout)
CT_TIMEOUT_DEFAULTS = {"tcp_syn": 60, "tcp_fin": 30, "udp": 30, "udp_stream": 180, "icmp": 30}
# protocol sanity switches: on where no legitimate packet can trip them
SANITY_DEFAULTS = {"bogon": False, "fragments": False, "tcp_flags": True, "land": True}

PROGRAM_DEFAULTS = {
    "interfaces": [],
    "xdp_mode": "auto",
    "policy": "allow",
    "conntrack": True,
    "conntrack_timeout": 300,
    "icmp_rate": 0,
    "icmp_burst": 0,
    # seconds per conntrack state; tcp_established defaults to conntrack_timeout (the two are one setting)
    "conntrack_timeouts": dict(CT_TIMEOUT_DEFAULTS),
    # protocol sanity switches (docs/internals.md, "Protocol sanity")
    "sanity": dict(SANITY_DEFAULTS),
    # global bucket of the rate-limit stage (packets/s of untracked traffic; 0 = off), against spoofed floods
    "ratelimit_global_rate": 0,
    "ratelimit_global_burst": 0,
    # drop sampling: events per second into the drops ring buffer (0 = off), and its burst
    "drop_sampling_rate": 10,
    "drop_sampling_burst": 0,
    "capacity": dict((name, spec[1]) for name, spec in layout.CAPACITIES.items()),
}
XDP_MODES = ("auto", "native", "generic")
MAX_CAPACITY = 1 << 26


def normalize_program(settings):
    """Program settings with defaults filled in and every value checked."""
    merged = dict(PROGRAM_DEFAULTS)
    merged["capacity"] = dict(PROGRAM_DEFAULTS["capacity"])
    merged["conntrack_timeouts"] = {}
    merged["sanity"] = {}
    for key, value in (settings or {}).items():
        if value is None:
            continue
        if key in ("conntrack_timeouts", "sanity"):
            if not isinstance(value, dict):
                raise NetxfwError("%s must be a mapping, not %r" % (key, value))
            known = layout.CT_TIMEOUT_INDEX if key == "conntrack_timeouts" else layout.SANITY_BITS
            for name, item in value.items():
                if name not in known:
                    raise NetxfwError("unknown %s key '%s' (known: %s)" % (key, name, ", ".join(sorted(known))))
                if item is not None:
                    merged[key][name] = item
        elif key == "capacity":
            for cap, size in value.items():
                if size is None:
                    continue
                if cap not in layout.CAPACITIES:
                    raise NetxfwError("unknown capacity '%s' (known: %s)" % (cap, ", ".join(sorted(layout.CAPACITIES))))
                merged["capacity"][cap] = _int_in_range("capacity.%s" % cap, size, 1, MAX_CAPACITY)
        elif key in PROGRAM_DEFAULTS:
            merged[key] = value
        else:
            raise NetxfwError("unknown program setting '%s'" % key)
    if merged["policy"] not in layout.POLICY_CODES:
        raise NetxfwError("policy must be allow or deny, not '%s'" % merged["policy"])
    if merged["xdp_mode"] not in XDP_MODES:
        raise NetxfwError("xdp_mode must be one of %s, not '%s'" % (", ".join(XDP_MODES), merged["xdp_mode"]))
    merged["conntrack"] = bool(merged["conntrack"])
    merged["conntrack_timeout"] = _int_in_range("conntrack_timeout", merged["conntrack_timeout"], 1, 86400 * 7)
    # conntrack_timeouts.tcp_established is another name for conntrack_timeout: the normalized settings
    # keep it in conntrack_timeout only, so that changing either one later is never shadowed.
    timeouts = dict(CT_TIMEOUT_DEFAULTS)
    for name, item in merged["conntrack_timeouts"].items():
        seconds = _int_in_range("conntrack_timeouts.%s" % name, item, 1, 86400 * 7)
        if name == "tcp_established":
            merged["conntrack_timeout"] = seconds
        else:
            timeouts[name] = seconds
    merged["conntrack_timeouts"] = timeouts
    sanity = dict(SANITY_DEFAULTS)
    for name, item in merged["sanity"].items():
        if not isinstance(item, bool):
            raise NetxfwError("sanity.%s must be true or false, not %r" % (name, item))
        sanity[name] = item
    merged["sanity"] = sanity
    merged["icmp_rate"] = _int_in_range("icmp_rate", merged["icmp_rate"], 0, 10 ** 9)
    merged["icmp_burst"] = _int_in_range("icmp_burst", merged["icmp_burst"], 0, 10 ** 9)
    if merged["icmp_rate"] and not merged["icmp_burst"]:
        merged["icmp_burst"] = merged["icmp_rate"]
    for name in ("ratelimit_global_rate", "ratelimit_global_burst"):
        merged[name] = _int_in_range(name, merged[name], 0, 10 ** 9)
    if merged["ratelimit_global_rate"] and not merged["ratelimit_global_burst"]:
        merged["ratelimit_global_burst"] = merged["ratelimit_global_rate"]
    for name in ("drop_sampling_rate", "drop_sampling_burst"):
        merged[name] = _int_in_range(name, merged[name], 0, 10 ** 6)
    if merged["drop_sampling_rate"] and not merged["drop_sampling_burst"]:
        merged["drop_sampling_burst"] = merged["drop_sampling_rate"]
    merged["interfaces"] = sorted(set(merged["interfaces"]))
    return merged


def _int_in_range(name, value, low, high):
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise NetxfwError("%s must be an integer, not '%s'" % (name, value))
    if not low <= number <= high:
        raise NetxfwError("%s must be between %d and %d, not %d" % (name, low, high, number))
    return number


def program_identity(capacities):
    """Hash of the source plus compile-time options: equal identities never recompile."""
    digest = hashlib.sha256(hot_reload.data_plane_source().encode())
    digest.update(b"\0" + " ".join(layout.cflags(capacities)).encode())
    return digest.hexdigest()


def runtime_config(settings):
    """config map index -> value for the runtime settings."""
    out = {
        layout.CFG_POLICY: layout.POLICY_CODES[settings["policy"]],
        layout.CFG_ICMP_RATE: settings["icmp_rate"],
        layout.CFG_ICMP_BURST: settings["icmp_burst"],
        layout.CFG_CT_ENABLED: int(settings["conntrack"]),
        layout.CFG_CT_TIMEOUT_NS: settings["conntrack_timeout"] * 10 ** 9,
    }
    timeouts = settings.get("conntrack_timeouts") or {}
    for name, index in layout.CT_TIMEOUT_INDEX.items():
        if name != "tcp_established":
            out[index] = timeouts.get(name, CT_TIMEOUT_DEFAULTS[name]) * 10 ** 9
    sanity = dict(SANITY_DEFAULTS, **(settings.get("sanity") or {}))
    out[layout.CFG_SANITY] = sum(bit for name, bit in layout.SANITY_BITS.items() if sanity[name])
    out[layout.CFG_RL_GLOBAL_RATE] = settings.get("ratelimit_global_rate", 0)
    out[layout.CFG_RL_GLOBAL_BURST] = settings.get("ratelimit_global_burst", 0)
    rate = settings.get("drop_sampling_rate", PROGRAM_DEFAULTS["drop_sampling_rate"])
    out[layout.CFG_DROPLOG_RATE] = rate
    out[layout.CFG_DROPLOG_BURST] = settings.get("drop_sampling_burst") or rate
    return out


def expected_entries(kind, entries):
    """Port rules or rate-limit rules -> {map name: {key: value}} of their own maps (the sources of
    every kind go to the src maps: sources.expected)."""
    out = dict((name, {}) for name in kind_maps(kind))
    if kind == "port":
        for rule in entries:
            for family, key, action in rules.rule_keys(rule):
                out[layout.rules_map(family)][key] = layout.encode_u32(action)
    elif kind == "ratelimit":
        for rule in entries:
            family, key, value = rules.ratelimit_key(rule)
            out["rl%d_cfg" % family][key] = value
    return out


def kind_maps(kind):
    """The maps of a kind besides the src maps."""
    if kind == "port":
        return [layout.rules_map(4), layout.rules_map(6)]
    if kind == "ratelimit":
        return ["rl4_cfg", "rl6_cfg"]
    return []


def sync_map(m, want):
    """Make one map hold exactly `want`, writing only what differs."""
    current = dict(m.items())
    m.update_many([(k, v) for k, v in want.items() if current.get(k) != v])
    m.delete_many([k for k in current if k not in want])


def require_root():
    if os.geteuid() != 0:
        raise NetxfwError("netxfw must run as root: loading XDP programs and editing BPF maps needs CAP_BPF and CAP_NET_ADMIN")


def kernel_headers_dir():
    release = os.uname().release
    build = "/lib/modules/%s/build" % release
    if not os.path.isdir(build):
        raise NetxfwError(
            "kernel headers for %s are missing (%s does not exist). BCC needs them to compile the data plane: "
            "install linux-headers-%s (Debian/Ubuntu) or kernel-devel-%s (RHEL/Fedora); on a custom or cloud kernel "
            "without a matching package, install the nearest linux-headers-* and link %s and /lib/modules/%s/source "
            "to it (the netxfw.firewall.netxfw role does this)." % (release, build, release, release, build, release)
        )
    return build


def ifindex(name):
    try:
        return socket.if_nametoindex(name)
    except OSError:
        raise NetxfwError("unknown interface '%s': it does not exist on this host" % name)


class Firewall:
    def __init__(self, pin_path=DEFAULT_PIN_PATH, state_dir=DEFAULT_STATE_DIR):
        self.pin_path = pin_path
        self.store = StateStore(state_dir)

    # ---------------------------------------------------------------- runtime
    def _pin(self, name):
        return os.path.join(self.pin_path, name)

    def open_maps(self, capacities=None):
        """Pinned maps as {name: bpfsys.Map}, or None when the program is not loaded
        or its pins do not match the layout (a partial or foreign pin set)."""
        maps = {}
        try:
            for name in layout.MAPS:
                m = bpfsys.Map.open_pinned(self._pin(name))
                if m is None:
                    return None
                maps[name] = m
                mtype, key_size, value_size, size = layout.MAPS[name]
                if (m.type, m.key_size) != (mtype, key_size) or bpfsys.map_info(m.fd)["value_size"] != value_size:
                    return None
                if capacities is not None and m.max_entries != layout.expected_map(name, capacities)[3]:
                    return None
            version, _identity = layout.decode_meta(maps["meta"].lookup(layout.encode_u32(0)))
            if version != layout.LAYOUT_VERSION:
                return None
            result, maps = maps, {}
            return result
        finally:
            for m in maps.values():
                m.close()

    @staticmethod
    def close_maps(maps):
        for m in (maps or {}).values():
            m.close()

    def loaded_identity(self, maps):
        return layout.decode_meta(maps["meta"].lookup(layout.encode_u32(0)))[1]

    def _pinned_prog_ids(self):
        ids = {}
        for pin in layout.PROGRAMS:
            fd = bpfsys.obj_get(self._pin(pin))
            if fd is not None:
                ids[pin] = bpfsys.prog_info(fd)["id"]
                os.close(fd)
        return ids

    def attachments(self, names):
        """{ifname: {"xdp_mode": mode or None, "xdp": ours?, "tc": ours?}} for existing interfaces."""
        prog_ids = self._pinned_prog_ids()
        out = {}
        for name in names:
            try:
                idx = socket.if_nametoindex(name)
            except OSError:
                continue
            xdp = bpfsys.xdp_query(idx)
            tc_id = bpfsys.tc_egress_query(idx, TC_HANDLE, TC_PRIO)
            out[name] = {
                "xdp_mode": xdp["mode"],
                "xdp": bool(xdp["prog_id"]) and xdp["prog_id"] == prog_ids.get("prog_xdp"),
                "tc": bool(tc_id) and tc_id == prog_ids.get("prog_tc"),
            }
        return out

    def _attached_interfaces(self):
        """Interfaces where our pinned programs are attached, from the kernel."""
        names = [name for _index, name in socket.if_nameindex()]
        return sorted(n for n, a in self.attachments(names).items() if a["xdp"] or a["tc"])

    # ---------------------------------------------------------------- program
    def apply_program(self, settings, check_mode=False, merge=False):
        """Make the program match `settings`; merge=True treats them as changes to the stored
        config, read under the same lock so that concurrent changes are never lost."""
        require_root()
        with self.store.lock(create=not check_mode):
            previous = self.store.read_config() or None
            if merge:
                if previous is None:
                    raise NetxfwError("the data plane is not deployed (%s has no config.json): deploy it with "
                                      "netxfw.firewall.netxfw_program first" % self.store.state_dir)
                settings = dict(previous, **settings)
            wanted = normalize_program(settings)
            for name in wanted["interfaces"]:
                ifindex(name)
            recovered = hot_reload.recover_pending(self, check_mode)  # a reload killed half-way
            maps = self.open_maps(wanted["capacity"])
            try:
                identity = program_identity(wanted["capacity"])
                reload_needed = maps is None or self.loaded_identity(maps) != identity
                actions = []
                if reload_needed:
                    actions.append("compile and load the data plane")
                else:
                    if self._config_differs(maps, wanted):
                        actions.append("update runtime settings")
                    if self._rules_generation_stale(maps):
                        actions.append("resynchronise rule maps from %s" % self.store.rules_path)
                attached = self.attachments(wanted["interfaces"]) if not reload_needed else {}
                for name in wanted["interfaces"]:
                    state = attached.get(name, {})
                    if reload_needed or not (state.get("xdp") and state.get("tc")) or not self._mode_ok(state, wanted):
                        actions.append("attach to %s" % name)
                stale = [n for n in self._attached_interfaces() if n not in wanted["interfaces"]]
                actions.extend("detach from %s" % n for n in stale)
                if recovered:
                    actions.insert(0, recovered)
                config_changed = previous != wanted
                changed = bool(actions) or config_changed
                result = {
                    "changed": changed,
                    "actions": actions,
                    "compiled": False,
                    "identity": identity,
                    "diff": {"before": previous or {}, "after": wanted},
                }
                if check_mode or not changed:
                    return result
                if reload_needed:
                    report = self._load(wanted, identity, stale)
                    result["compiled"] = True
                    for key in ("migrated", "skipped", "duration_ms"):
                        result[key] = report[key]
                else:
                    self._write_config(maps, wanted)
                    self._sync_rules_if_stale(maps)
                    for name in wanted["interfaces"]:
                        if "attach to %s" % name in actions:
                            self._attach(name, wanted["xdp_mode"])
                    for name in stale:
                        self._detach(name)
                self.store.write_config(wanted)
                return result
            finally:
                self.close_maps(maps)

    def reload(self, capacity=None, force=False, check_mode=False):
        """Lossless hot reload with the stored settings plus capacity changes (netxfw_reload; reload.py)."""
        return hot_reload.reload_program(self, capacity, force, check_mode)

    @staticmethod
    def _mode_ok(state, wanted):
        return wanted["xdp_mode"] == "auto" or state.get("xdp_mode") == wanted["xdp_mode"]

    def _config_differs(self, maps, settings):
        for index, value in runtime_config(settings).items():
            if layout.decode_u64(maps["config"].lookup(layout.encode_u32(index))) != value:
                return True
        return False

    def _write_config(self, maps, settings):
        maps["config"].update_many(
            (layout.encode_u32(i), layout.encode_u64(v)) for i, v in runtime_config(settings).items()
        )

    def _load(self, settings, identity, stale):
        """Compile and load, migrate every map from the pinned program (or fill from the JSON on a first
        load), swap the programs atomically on every interface, swap the pins (reload.py)."""
        return hot_reload.reload(self, settings, identity, stale)

    def _ensure_bpffs(self):
        mount_point = os.path.dirname(self.pin_path.rstrip("/"))
        if not os.path.isdir(mount_point):
            raise NetxfwError("pin_path parent %s does not exist" % mount_point)
        if not self._is_bpffs(mount_point):
            subprocess.run(["mount", "-t", "bpf", "bpf", mount_point], check=True)
        os.makedirs(self.pin_path, mode=0o700, exist_ok=True)

    @staticmethod
    def _is_bpffs(path):
        with open("/proc/self/mounts") as mounts:
            return any(line.split()[1] == path and line.split()[2] == "bpf" for line in mounts)

    def _replace_pins(self, map_fds, prog_fds):
        for name, fd in list(map_fds.items()) + list(prog_fds.items()):
            path = self._pin(name)
            try:
                os.unlink(path)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise
            bpfsys.obj_pin(fd, path)

    def _prog_fd(self, pin):
        fd = bpfsys.obj_get(self._pin(pin))
        if fd is None:
            raise NetxfwError("the data plane is not loaded (no pin at %s)" % self._pin(pin))
        return fd

    def _attach(self, name, mode, xdp_fd=None, tc_fd=None):
        """Attach over whatever is there: the kernel swaps XDP programs atomically."""
        idx = ifindex(name)
        own = []
        if xdp_fd is None:
            xdp_fd = self._prog_fd("prog_xdp")
            own.append(xdp_fd)
        if tc_fd is None:
            tc_fd = self._prog_fd("prog_tc")
            own.append(tc_fd)
        try:
            current = bpfsys.xdp_query(idx)["mode"]
            tries = {"native": [bpfsys.XDP_FLAGS_DRV_MODE], "generic": [bpfsys.XDP_FLAGS_SKB_MODE],
                     "auto": [bpfsys.XDP_FLAGS_DRV_MODE, bpfsys.XDP_FLAGS_SKB_MODE]}[mode]
            error = None
            for flags in tries:
                wanted_mode = "native" if flags == bpfsys.XDP_FLAGS_DRV_MODE else "generic"
                if current and current != wanted_mode:
                    # A program in the other mode would block this one: the kernel allows one mode at a time.
                    bpfsys.xdp_detach(idx, bpfsys.XDP_FLAGS_DRV_MODE if current == "native" else bpfsys.XDP_FLAGS_SKB_MODE)
                    current = None
                try:
                    bpfsys.xdp_attach(idx, xdp_fd, flags)
                    error = None
                    break
                except NetxfwError as exc:
                    error = exc
            if error is not None:
                raise NetxfwError("cannot attach XDP to %s in %s mode: %s" % (name, mode, error))
            bpfsys.tc_egress_attach(idx, tc_fd, TC_HANDLE, TC_PRIO)
        finally:
            for fd in own:
                os.close(fd)

    def _detach(self, name):
        try:
            idx = socket.if_nametoindex(name)
        except OSError:
            return
        mode = bpfsys.xdp_query(idx)["mode"]
        if mode:
            bpfsys.xdp_detach(idx, bpfsys.XDP_FLAGS_DRV_MODE if mode == "native" else bpfsys.XDP_FLAGS_SKB_MODE)
        bpfsys.tc_egress_detach(idx, TC_HANDLE, TC_PRIO)

    def remove_program(self, check_mode=False):
        require_root()
        with self.store.lock(create=not check_mode):
            if not check_mode:
                hot_reload.recover_pending(self)  # a reload killed half-way: its staged programs may run somewhere
            pins = [n for n in list(layout.MAPS) + list(layout.PROGRAMS) + list(layout.RETIRED_MAPS)
                    if os.path.exists(self._pin(n))]
            attached = self._attached_interfaces()
            previous = self.store.read_config() or None
            changed = bool(pins or attached or previous)
            result = {"changed": changed, "actions": ["detach from %s" % n for n in attached],
                      "diff": {"before": previous or {}, "after": {}}}
            if pins:
                result["actions"].append("remove pins under %s" % self.pin_path)
            if check_mode or not changed:
                return result
            for name in attached:
                self._detach(name)
            for name in pins:
                os.unlink(self._pin(name))
            try:
                os.rmdir(self.pin_path)
            except OSError:
                pass
            self.store.remove_config()
            return result

    # ---------------------------------------------------------------- rules
    def _rules_generation_stale(self, maps, data=None):
        """True unless the maps hold exactly generation N of rules.json (they store N + 1; 0 = write under way)."""
        data = self.store.read_rules() if data is None else data
        applied = layout.decode_u64(maps["config"].lookup(layout.encode_u32(layout.CFG_RULES_GENERATION)))
        return applied != data.get("generation", 0) + 1

    @staticmethod
    def _mark_generation(maps, data):
        """data=None marks the rule maps dirty while they are being written."""
        value = 0 if data is None else data.get("generation", 0) + 1
        maps["config"].update(layout.encode_u32(layout.CFG_RULES_GENERATION), layout.encode_u64(value))

    def _sync_rules_if_stale(self, maps):
        data = self.store.read_rules()
        if self._rules_generation_stale(maps, data):
            self._sync_all_rules(maps, data)

    def _sync_all_rules(self, maps, data, capacities=None):
        """Make every rule map hold exactly what rules.json says; capacity is checked before any write."""
        data = dict(data, blacklist=[e for e in data.get("blacklist", []) if not rules.is_expired(e)])
        expected = dict((kind, expected_entries(kind, data.get(key, []))) for kind, key in RULE_KINDS.items())
        for kind in RULE_KINDS:
            self._check_capacity(maps, kind, data, expected[kind], capacities)
        self._mark_generation(maps, None)
        changed = []
        sources.write(maps, sources.expected(data), changed=changed)
        for kind in RULE_KINDS:
            for name, want in expected[kind].items():
                sync_map(maps[name], want)
        refresh_flows(maps, changed)
        self._mark_generation(maps, data)

    def _capacities(self):
        config = self.store.read_config() or {}
        return config.get("capacity") or PROGRAM_DEFAULTS["capacity"]

    def _check_capacity(self, maps, kind, data, expected, capacities=None, keys=None):
        """Each kind's entries against its capacity: whitelist and blacklist per family and per exact
        address / prefix (capacity.whitelist, capacity.blacklist), the others per map."""
        if kind in ("whitelist", "blacklist"):
            capacity = (capacities or self._capacities())[kind]
            for (family, where), count in sorted(sources.counts(data, kind, keys).items()):
                if count > capacity:
                    raise NetxfwError(
                        "%s needs %d %s entries (IPv%d) but capacity.%s is %d: raise capacity.%s with "
                        "netxfw.firewall.netxfw_program (a hot reload) and try again"
                        % (kind, count, "exact-address" if where == "host" else "prefix", family, kind,
                           capacity, kind))
            return
        for name, want in expected.items():
            if len(want) > maps[name].max_entries:
                raise NetxfwError(
                    "%s needs %d entries in map %s but its capacity is %d: raise capacity.%s with "
                    "netxfw.firewall.netxfw_program (a hot reload) and try again"
                    % (kind, len(want), name, maps[name].max_entries, _capacity_name(kind))
                )

    def apply_rules(self, kind, entries, state="present", exclusive=False, ttl=None, check_mode=False, request=None):
        """entries=None with `request` (a request_digest, from a controller that holds the entries):
        the no-op result when the request cache answers for it, else None (nothing is read or changed:
        send the entries)."""
        if kind not in RULE_KINDS:
            raise NetxfwError("kind must be one of %s, not '%s'" % (", ".join(sorted(RULE_KINDS)), kind))
        if state not in ("present", "absent"):
            raise NetxfwError("state must be present or absent, not '%s'" % state)
        if entries is not None:
            request = request_digest(kind, entries, state, exclusive, ttl)
        repeated = request is not None and any(r.get("request") == request for r in self._recent_requests(kind))
        if entries is None and not repeated:
            return None
        wanted = None if repeated else rules.normalize(kind, entries, ttl=ttl)
        require_root()
        with self.store.lock(create=not check_mode):
            if not check_mode:
                hot_reload.recover_pending(self)  # rules go into the maps the pins will name after a killed reload
            data = self.store.read_rules()
            current = data.get(RULE_KINDS[kind], [])
            maps = self.open_maps()
            try:
                stale = maps is not None and self._rules_generation_stale(maps, data)
                if repeated and not stale and self._request_applied(data, kind, request):
                    # The same request as the last one of this kind, nothing written since, nothing expired:
                    # it cannot change anything (a million-entry re-run skips parsing and diffing).
                    return {"changed": False, "added": [], "removed": [], "loaded": maps is not None,
                            "diff": {"before": current, "after": current}}
                if entries is None:
                    return None
                if wanted is None:
                    wanted = rules.normalize(kind, entries, ttl=ttl)
                new_list, added, removed = rules.diff(kind, current, wanted, state, exclusive, wanted_sorted=True)
                result = {
                    "changed": bool(added or removed) or stale,
                    "added": added,
                    "removed": removed,
                    "loaded": maps is not None,
                    "diff": {"before": current, "after": new_list},
                }
                if not result["changed"]:
                    if not check_mode:
                        self._record_request(kind, request, data)
                    return result  # the maps already hold new_list: no need to encode it for the capacity check
                new_data = dict(data)
                new_data[RULE_KINDS[kind]] = new_list
                new_expected = expected_entries(kind, new_list)
                keys = {}  # each CIDR parsed once for the capacity check and the source classes
                if maps is not None:
                    self._check_capacity(maps, kind, new_data, new_expected, keys=keys)
                if check_mode:
                    return result
                new_data["generation"] = data.get("generation", 0) + 1
                if maps is not None:
                    if stale:
                        self._sync_all_rules(maps, new_data)
                    else:
                        self._mark_generation(maps, None)
                        changed = []
                        if kind in SOURCE_KINDS:
                            sources.write(maps, sources.expected(new_data, keys=keys), changed=changed)
                        for name, want in new_expected.items():
                            sync_map(maps[name], want)
                        # any change that makes a source blocked cuts its flows (a blacklist entry
                        # added, a whitelist entry inside a blacklisted prefix removed...), and the
                        # flows peers opened follow their rate limit
                        refresh_flows(maps, changed)
                self.store.write_rules(new_data)
                if maps is not None:
                    self._mark_generation(maps, new_data)
                self._record_request(kind, request, new_data)
                return result
            finally:
                self.close_maps(maps)

    def _recent_requests(self, kind):
        recent = self.store.read_requests().get(kind)
        return [r for r in recent if isinstance(r, dict)] if isinstance(recent, list) else []

    def _request_applied(self, data, kind, request):
        """`request` was applied to the rules.json that is still there (same generation), and no
        blacklist entry has expired since (an expiry is a change)."""
        now = time.time()
        return any(r.get("request") == request and r.get("generation") == data.get("generation", 0) and
                   (r.get("next_expiry") is None or r["next_expiry"] > now) for r in self._recent_requests(kind))

    def _record_request(self, kind, request, data):
        """Remember the last few requests of a kind that left rules.json as it is now (a sweep between
        two runs of a playbook is one of them)."""
        if request is None:
            return
        expiries = [e["expires"] for e in data.get("blacklist", []) if e["expires"] is not None] \
            if kind == "blacklist" else []
        last = {"request": request, "generation": data.get("generation", 0),
                "next_expiry": min(expiries) if expiries else None}
        recent = self._recent_requests(kind)
        if recent[:1] == [last]:
            return
        requests = self.store.read_requests()
        requests[kind] = [last] + [r for r in recent if r.get("request") != request][:REQUESTS_KEPT - 1]
        self.store.write_requests(requests)

    # ---------------------------------------------------------------- conntrack
    def gc_conntrack(self):
        """Delete expired ct and ct_syn entries (each state has its own timeout, read from the config map).

        The LRU evicts on its own when full; this keeps usage honest and frees room before that. An entry
        refreshed by the data plane between the scan and the delete survives (its value is checked again)."""
        maps = self.open_maps()
        if maps is None:
            return {"loaded": False, "removed": 0}
        try:
            return dict(loaded=True, **gc_flows(maps))
        finally:
            self.close_maps(maps)

    # ---------------------------------------------------------------- sweeping
    def sweep(self, check_mode=False):
        """Remove what has expired: blacklist entries of rules.json (and their map keys), expired
        auto-bans, expired conntrack entries; and cut the flows of live auto-bans that their addresses do
        not hold (unheld: the data plane already drops their packets; this frees the entries)."""
        require_root()
        result = self.apply_rules("blacklist", [], state="present", check_mode=check_mode)
        out = {"changed": result["changed"], "rules_expired": result["removed"], "map_entries_expired": 0,
               "bans_purged_flows": 0, "conntrack": {"removed": 0}}
        maps = self.open_maps()
        if maps is None:
            return out
        try:
            now = time.monotonic_ns()
            live_bans, doomed = [], {}
            for name in sources.HOST_MAPS:
                for key, value in maps[name].items():
                    bits, expires = layout.source_class(value)
                    if not bits & layout.SRC_BAN:
                        continue
                    if 0 < expires <= now:
                        doomed.setdefault(name, []).append((key, value))
                    else:
                        live_bans.append((6 if len(key) == 16 else 4, len(key) * 8, int.from_bytes(key, "big")))
            out["map_entries_expired"] = sum(len(pairs) for pairs in doomed.values())
            if doomed and not check_mode:
                # an expired ban gives its address back: to the entry rules.json has for it, if any
                want = sources.expected(self.store.read_rules())
                for name, pairs in doomed.items():
                    for key, value in pairs:
                        if maps[name].lookup(key) != value:
                            continue  # banned again meanwhile
                        if key in want[name]:
                            maps[name].update(key, want[name][key])
                        else:
                            maps[name].delete(key)
            if not check_mode:
                if live_bans:
                    out["bans_purged_flows"] = purge_conntrack(maps["ct"], live_bans, unheld)
                out["conntrack"] = gc_flows(maps)
            out["changed"] = bool(out["changed"] or out["map_entries_expired"] or out["bans_purged_flows"]
                                  or out["conntrack"]["removed"])
            return out
        finally:
            self.close_maps(maps)

    # ---------------------------------------------------------------- drop sampling
    def drops(self, limit=100):
        """Read (and consume) up to `limit` sampled drop events from the pinned drops ring buffer,
        oldest first: [{"time" (epoch s), "reason", "proto", "src", "dst", "sport", "dport", "len"}].
        The data plane writes at most drop_sampling_rate events per second; events not read before
        the ring fills are lost (counters still count every drop)."""
        fd = bpfsys.obj_get(self._pin("drops"))
        if fd is None:
            return {"loaded": False, "events": []}
        try:
            records = bpfsys.ring_buffer_read(fd, limit=limit)
        finally:
            os.close(fd)
        wall, mono = time.time(), time.monotonic_ns()
        events = []
        for raw in records:
            ev = layout.decode_drop_event(raw)
            events.append({
                "time": round(wall - (mono - ev["ts_ns"]) / 1e9, 6), "reason": ev["reason"],
                "proto": ev["proto"], "len": ev["len"], "sport": ev["sport"], "dport": ev["dport"],
                "src": str(ipaddress.ip_address(ev["saddr"])) if ev["family"] else None,
                "dst": str(ipaddress.ip_address(ev["daddr"])) if ev["family"] else None,
            })
        return {"loaded": True, "events": events}

    # ---------------------------------------------------------------- info
    def info(self):
        config = self.store.read_config()
        maps = self.open_maps()
        try:
            out = {"loaded": maps is not None, "pin_path": self.pin_path, "state_dir": self.store.state_dir,
                   "config": config}
            if maps is None:
                return out
            ncpus = bpfsys.num_possible_cpus()
            counters = {}
            for index, reason in enumerate(layout.REASONS):
                packets, octets = layout.sum_counters(maps["counters"].lookup(layout.encode_u32(index)), ncpus)
                counters[reason] = {"packets": packets, "bytes": octets}
            out["identity"] = self.loaded_identity(maps)
            out["counters"] = counters
            out["maps"] = dict(
                (name, {"entries": len(m.keys()), "capacity": m.max_entries})
                for name, m in maps.items() if name not in ("config", "counters", "meta", "icmp_bucket")
            )
            out["conntrack"] = conntrack_summary(maps)
            out["ratelimit"] = ratelimit_summary(maps)
            out["bans"] = bans(maps)
            names = sorted(set((config or {}).get("interfaces", [])) | set(self._attached_interfaces()))
            out["interfaces"] = self.attachments(names)
            return out
        finally:
            self.close_maps(maps)


def _capacity_name(kind):
    return {"whitelist": "whitelist", "blacklist": "blacklist", "port": "port_rules",
            "ratelimit": "ratelimit (fixed: NETXFW_RL_SIZE)"}[kind]


def bans(maps, now_ns=None):
    """Live auto-bans of the rate limiter: [{"address", "expires_in" (seconds)}], soonest first."""
    now_ns = time.monotonic_ns() if now_ns is None else now_ns
    out = []
    for name in sources.HOST_MAPS:
        for key, value in maps[name].items():
            bits, expires = layout.source_class(value)
            if bits & layout.SRC_BAN and expires > now_ns:
                out.append({"address": str(ipaddress.ip_address(key)),
                            "expires_in": round((expires - now_ns) / 1e9, 3)})
    return sorted(out, key=lambda b: b["expires_in"])


def ratelimit_summary(maps, limit=100):
    """Rate-limit rules (from the maps), global bucket settings, and the tracked sources
    (at most `limit`, most dropped first) with their credit in packets."""
    rules_out = []
    for family in (4, 6):
        for key, value in maps["rl%d_cfg" % family].items():
            plen = struct.unpack_from("=I", key)[0]
            rule = layout.decode_rl_cfg(value)
            rule["source"] = "%s/%d" % (ipaddress.ip_address(key[4:]), plen)
            rules_out.append(rule)
    sources = []
    for family in (4, 6):
        for key, value in maps["rl%d_state" % family].items():
            state = layout.decode_rl_state(value)
            sources.append({"address": str(ipaddress.ip_address(key)), "dropped": state["dropped"],
                            "idle_s": round(max(0, time.monotonic_ns() - state["last_ns"]) / 1e9, 3)})
    sources.sort(key=lambda s: -s["dropped"])

    def cfg(index):
        return layout.decode_u64(maps["config"].lookup(layout.encode_u32(index)))

    return {"rules": sorted(rules_out, key=lambda r: r["source"]), "sources_tracked": len(sources),
            "sources": sources[:limit],
            "global": {"rate": cfg(layout.CFG_RL_GLOBAL_RATE), "burst": cfg(layout.CFG_RL_GLOBAL_BURST)}}


def _ct_timeouts(maps):
    return layout.ct_timeouts_ns(lambda index: layout.decode_u64(maps["config"].lookup(layout.encode_u32(index))))


def conntrack_summary(maps):
    """Table size and usage, live entries by state (ct plus the embryonic ct_syn)."""
    timeouts, now = _ct_timeouts(maps), time.monotonic_ns()
    by_state, expired, total = {}, 0, 0
    for name in ("ct", "ct_syn"):
        for _key, value in maps[name].items():
            total += 1
            if not layout.ct_live(value, timeouts, now):
                expired += 1
                continue
            state = layout.ct_state(layout.decode_ct_value(value)[1])
            by_state[state] = by_state.get(state, 0) + 1
    capacity = maps["ct"].max_entries + maps["ct_syn"].max_entries
    return {"entries": total, "live": total - expired, "expired": expired, "capacity": capacity,
            "usage": round(total / capacity, 6), "by_state": by_state}


def gc_flows(maps):
    """Delete expired conntrack entries; {"removed", "remaining"}."""
    timeouts, now = _ct_timeouts(maps), time.monotonic_ns()
    removed = remaining = 0
    for name in ("ct", "ct_syn"):
        doomed = []
        for key, value in maps[name].items():
            if layout.ct_live(value, timeouts, now):
                remaining += 1
            else:
                doomed.append((key, value))
        # check again right before deleting: the data plane may have refreshed it meanwhile
        gone = [k for k, v in doomed if maps[name].lookup(k) == v]
        maps[name].delete_many(gone)
        removed += len(gone)
        remaining += len(doomed) - len(gone)
    return {"removed": removed, "remaining": remaining}


def unheld(flow):
    """A tracked flow its remote address does not prove it holds: one the peer opened, not TCP (a TCP
    flow the peer opened completed a handshake). An auto-ban cuts these only."""
    return bool(flow["flags"] & layout.CT_F_INBOUND) and flow["proto"] != socket.IPPROTO_TCP


def refresh_flows(maps, changed, now_ns=None):
    """After the src maps changed (`changed`, from sources.write): cut the tracked flows of every source
    now blocked (any change that blocks a source cuts its flows, not only a blacklist entry added), and
    give the flows peers opened (`inbound`) the rl flag of their source's class now (a rate limit added
    later applies to them too; one removed, or a whitelist entry added, frees them). Only flows under
    the keys that could matter are checked (sources.flows_to_check), each against the maps. Returns the
    number of flows deleted."""
    now_ns = time.monotonic_ns() if now_ns is None else now_ns
    if not changed:
        return 0
    updates = []

    def check(flow):
        cls = sources.address_class(maps, flow["family"], flow["saddr"])
        if sources.blocks(cls, now_ns):
            return True
        rl = layout.CT_F_RL if sources.limited(cls) else 0
        if flow["flags"] & layout.CT_F_INBOUND and flow["flags"] & layout.CT_F_RL != rl:
            updates.append((flow["key"], rl))
        return False

    purged = purge_conntrack(maps["ct"], sources.flows_to_check(maps, changed, now_ns), check)
    for key, rl in updates:
        value = maps["ct"].lookup(key)  # the freshest value: the data plane may have written it meanwhile
        if value is not None:
            last_seen, flags = layout.decode_ct_value(value)
            maps["ct"].update(key, struct.pack("=QQ", last_seen, (flags & ~layout.CT_F_RL) | rl))
    return purged


def purge_conntrack(ct_map, networks, also=None):
    """Delete tracked flows whose remote address lies in any of the networks ((family, prefix length,
    network as int)): a block cuts them at once. `networks` may be a generator: it is not consumed
    when no flow is tracked. `also(flow)`, if given, must be true too (flow: decode_ct_key() plus
    "flags" and "key")."""
    flows = ct_map.items()
    if not flows:
        return 0
    by_len = {}
    for family, plen, net in networks:
        by_len.setdefault((family, plen), set()).add(net)
    doomed = []
    for key, value in flows:
        flow = layout.decode_ct_key(key)
        addr = int.from_bytes(flow["saddr"], "big")
        bits = 32 if flow["family"] == 4 else 128
        for (family, plen), nets in by_len.items():
            if family == flow["family"] and (addr >> (bits - plen) << (bits - plen) if plen else 0) in nets:
                flow["flags"], flow["key"] = layout.decode_ct_value(value)[1], key
                if also is None or also(flow):
                    doomed.append(key)
                break
    ct_map.delete_many(doomed)
    return len(doomed)
