# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-2.0-or-later
"""The netxfw engine: the one implementation behind the modules, the CLI and the agent.

Desired state is the JSON in state_dir; runtime state is the pinned maps under
pin_path. Every entry point takes the state lock, compares the two, acts once
and persists. Firewall holds the writes; the read-only views are in queries.py.
Imports nothing from ansible.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import time

from . import bpfsys, flows, layout, program, program_settings, rulemaps, rules, sources
from . import reload as hot_reload
from .errors import NetxfwError
from .rulemaps import RULE_KINDS
from .payload import request_digest
from .state import StateStore

DEFAULT_PIN_PATH = "/sys/fs/bpf/netxfw"
DEFAULT_STATE_DIR = "/var/lib/netxfw"


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

    def attached_interfaces(self):
        """Interfaces where this firewall's pinned programs are attached, from the kernel."""
        return program.attached_interfaces(self.pin_path)

    # ---------------------------------------------------------------- program
    def _wanted(self, settings):
        """Settings normalised and their interfaces checked, with the program identity they need."""
        wanted = program_settings.normalize_program(settings)
        for name in wanted["interfaces"]:
            program.ifindex(name)
        return wanted, program.program_identity(wanted["capacity"])

    def check_program(self, settings):
        """`settings` normalised, their interfaces checked: a NetxfwError before anything is read or changed."""
        return self._wanted(settings)[0]

    def apply_program(self, settings, check_mode=False, merge=False):
        """Make the program match `settings`; merge=True treats them as changes to the stored
        config, read under the same lock so that concurrent changes are never lost."""
        program.require_root()
        with self.store.lock(create=not check_mode):
            previous = self.store.read_config() or None
            if merge:
                if previous is None:
                    raise NetxfwError("the data plane is not deployed (%s has no config.json): deploy it with "
                                      "netxfw.firewall.netxfw_program first" % self.store.state_dir)
                settings = dict(previous, **settings)
            wanted, identity = self._wanted(settings)
            recovered = hot_reload.recover_pending(self.store, self.pin_path, check_mode)  # a reload killed half-way
            maps = self.open_maps(wanted["capacity"])
            try:
                reload_needed = maps is None or self.loaded_identity(maps) != identity
                actions = []
                if reload_needed:
                    actions.append("compile and load the data plane")
                else:
                    if program_settings.runtime_config_differs(maps, wanted):
                        actions.append("update runtime settings")
                    if rulemaps.generation_stale(maps, self.store.read_rules()):
                        actions.append("resynchronise rule maps from %s" % self.store.rules_path)
                attached = program.attachments(self.pin_path, wanted["interfaces"]) if not reload_needed else {}
                for name in wanted["interfaces"]:
                    state = attached.get(name, {})
                    if reload_needed or not (state.get("xdp") and state.get("tc")) or not self._mode_ok(state, wanted):
                        actions.append("attach to %s" % name)
                stale = [n for n in self.attached_interfaces() if n not in wanted["interfaces"]]
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
                    # compile and load, migrate every map from the pinned program (or fill from the JSON on
                    # a first load), swap the programs atomically on every interface, swap the pins
                    report = hot_reload.reload(self.store, self.pin_path, wanted, identity, stale)
                    result["compiled"] = True
                    for key in ("migrated", "skipped", "duration_ms"):
                        result[key] = report[key]
                else:
                    program_settings.write_runtime_config(maps, wanted)
                    data = self.store.read_rules()
                    if rulemaps.generation_stale(maps, data):
                        rulemaps.sync_all(maps, data, self.capacities())
                    for name in wanted["interfaces"]:
                        if "attach to %s" % name in actions:
                            program.attach_pinned(self.pin_path, name, wanted["xdp_mode"])
                    for name in stale:
                        program.detach(name)
                self.store.write_config(wanted)
                return result
            finally:
                self.close_maps(maps)

    def reload(self, capacity=None, force=False, check_mode=False):
        """Lossless hot reload with the stored settings plus `capacity` changes (netxfw_reload; reload.py).

        Reloads when the identity (source + capacities) differs from the loaded one, or with force."""
        program.require_root()
        with self.store.lock(create=not check_mode):
            recovered = hot_reload.recover_pending(self.store, self.pin_path, check_mode)
            stored = self.store.read_config()
            if not stored:
                raise NetxfwError("nothing to reload: %s does not exist; load the data plane with "
                                  "netxfw.firewall.netxfw_program first" % self.store.path(self.store.CONFIG_FILE))
            settings = dict(stored)
            settings["capacity"] = dict(stored.get("capacity") or {})
            settings["capacity"].update((k, v) for k, v in (capacity or {}).items() if v is not None)
            wanted, identity = self._wanted(settings)
            old = hot_reload.PinSet(self.pin_path)
            try:
                loaded_identity = old.identity()[1] if old.loaded else None
                if old.loaded:
                    hot_reload.check_capacities(self.store, old, wanted["capacity"])  # also in check mode: it would fail
                counts = hot_reload.entry_counts(old) if check_mode else {}
            finally:
                old.close()
            needed = bool(force) or loaded_identity != identity
            actions = [recovered] if recovered else []
            if needed:
                actions.append("compile and load the data plane (identity %s)" % identity[:12])
                source = ("identity %s" % loaded_identity[:12]) if loaded_identity \
                    else "nothing (not loaded: fill from rules.json)"
                actions.append("migrate the maps of %s" % source)
                actions.extend("swap the programs on %s" % name for name in wanted["interfaces"])
            result = {
                "changed": needed or bool(recovered) or stored != wanted,
                "compiled": False,
                "identity": identity,
                "previous_identity": loaded_identity,
                "actions": actions,
                "migrated": {},
                "skipped": [],
                "duration_ms": 0.0,
                "diff": {"before": dict(stored, identity=loaded_identity), "after": dict(wanted, identity=identity)},
            }
            if check_mode:
                if needed:
                    result["migrated"] = dict((name, {"entries": n, "source": "would copy"}) for name, n in counts.items())
                return result
            if not needed:
                if stored != wanted:
                    self.store.write_config(wanted)
                return result
            stale = [n for n in self.attached_interfaces() if n not in wanted["interfaces"]]
            report = hot_reload.reload(self.store, self.pin_path, wanted, identity, stale)
            self.store.write_config(wanted)
            result.update(compiled=True, migrated=report["migrated"], skipped=report["skipped"],
                          duration_ms=report["duration_ms"], steps_ms=report["steps_ms"],
                          interfaces=report["interfaces"])
            return result

    @staticmethod
    def _mode_ok(state, wanted):
        return wanted["xdp_mode"] == "auto" or state.get("xdp_mode") == wanted["xdp_mode"]

    def remove_program(self, check_mode=False):
        program.require_root()
        with self.store.lock(create=not check_mode):
            if not check_mode:
                # a reload killed half-way: its staged programs may run somewhere
                hot_reload.recover_pending(self.store, self.pin_path)
            pins = [n for n in list(layout.MAPS) + list(layout.PROGRAMS) + list(layout.RETIRED_MAPS)
                    if os.path.exists(self._pin(n))]
            attached = self.attached_interfaces()
            previous = self.store.read_config() or None
            changed = bool(pins or attached or previous)
            result = {"changed": changed, "actions": ["detach from %s" % n for n in attached],
                      "diff": {"before": previous or {}, "after": {}}}
            if pins:
                result["actions"].append("remove pins under %s" % self.pin_path)
            if check_mode or not changed:
                return result
            for name in attached:
                program.detach(name)
            for name in pins:
                os.unlink(self._pin(name))
            try:
                os.rmdir(self.pin_path)
            except OSError:
                pass
            self.store.remove_config()
            return result

    # ---------------------------------------------------------------- rules
    def capacities(self):
        """The capacities of the stored config (the defaults without one)."""
        return program_settings.stored_capacities(self.store.read_config())

    def apply_rules(self, kind, entries, state="present", exclusive=False, ttl=None, check_mode=False, request=None,
                    alias=None):
        """entries=None with `request` (a request_digest, from a controller that holds the entries, or
        a payload.file_digest of a src file): the no-op result when the request cache answers for it,
        else None (nothing is read or changed: send, or read, the entries).
        alias: with entries, another digest of this request (the src file's), remembered with it."""
        rules.rule_kind(kind)
        if state not in ("present", "absent"):
            raise NetxfwError("state must be present or absent, not '%s'" % state)
        if entries is not None:
            request = request_digest(kind, entries, state, exclusive, ttl)
        repeated = request is not None and any(r.get("request") == request for r in self.store.recent_requests(kind))
        if entries is None and not repeated:
            return None
        keys = rules.KeyCache()  # each CIDR parsed once: normalize, the capacity check and the source classes share it
        wanted = None if repeated else rules.normalize(kind, entries, ttl=ttl, state=state, keys=keys)
        program.require_root()
        with self.store.lock(create=not check_mode):
            if not check_mode:
                hot_reload.recover_pending(self.store, self.pin_path)  # rules go into the maps the pins will name after a killed reload
            if repeated:
                answer = self._repeated_answer(kind, request)
                if answer is not None:
                    if not check_mode:
                        self.store.record_alias(kind, request, alias)
                    return answer
            data = self.store.read_rules()
            current = data.get(RULE_KINDS[kind], [])
            maps = self.open_maps()
            try:
                stale = maps is not None and rulemaps.generation_stale(maps, data)
                if repeated and not stale and self.store.request_applied(data, kind, request):
                    # The same request as the last one of this kind, nothing written since, nothing expired:
                    # it cannot change anything (a million-entry re-run skips parsing and diffing).
                    if not check_mode:
                        self.store.record_alias(kind, request, alias)
                    return {"changed": False, "added": [], "removed": [], "loaded": maps is not None}
                if entries is None:
                    return None
                if wanted is None:
                    wanted = rules.normalize(kind, entries, ttl=ttl, state=state, keys=keys)
                new_list, added, removed = rules.diff(kind, current, wanted, state, exclusive, wanted_sorted=True)
                result = {
                    "changed": bool(added or removed) or stale,
                    "added": added,
                    "removed": removed,
                    "loaded": maps is not None,
                }
                if not result["changed"]:
                    if not check_mode:
                        self.store.record_request(kind, request, data, alias)
                    return result  # the maps already hold new_list: no need to encode it for the capacity check
                new_data = dict(data)
                new_data[RULE_KINDS[kind]] = new_list
                new_expected = rulemaps.expected_entries(kind, new_list)
                if maps is not None:
                    rulemaps.check_capacity(maps, kind, new_data, new_expected, self.capacities(), keys=keys)
                if check_mode:
                    return result
                new_data["generation"] = data.get("generation", 0) + 1
                if maps is not None:
                    if stale:
                        rulemaps.sync_all(maps, new_data, self.capacities())
                    else:
                        rulemaps.mark_generation(maps, None)
                        changed = []
                        sources.write(maps, sources.expected(new_data, keys=keys), changed=changed)
                        for name, want in new_expected.items():
                            rulemaps.sync_map(maps[name], want)
                        # any change that makes a source blocked cuts its flows (a blacklist entry
                        # added, a whitelist entry inside a blacklisted prefix removed...), and the
                        # flows peers opened follow their rate limit
                        flows.refresh_flows(maps, changed)
                self.store.write_rules(new_data)
                if maps is not None:
                    rulemaps.mark_generation(maps, new_data)
                self.store.record_request(kind, request, new_data, alias)
                return result
            finally:
                self.close_maps(maps)

    def _repeated_answer(self, kind, request):
        """The no-op result of a request the cache says left the rules.json still there (known by the
        file's identity, without reading it) when the maps hold that generation; else None. Held lock."""
        generation = self.store.applied_generation(kind, request)
        if generation is None:
            return None
        maps = self.open_maps()
        try:
            if maps is not None and rulemaps.generation_stale(maps, {"generation": generation}):
                return None
            return {"changed": False, "added": [], "removed": [], "loaded": maps is not None}
        finally:
            self.close_maps(maps)

    # ---------------------------------------------------------------- conntrack
    def gc_conntrack(self):
        """Delete expired ct and ct_syn entries (each state has its own timeout, read from the config map).

        The LRU evicts on its own when full; this keeps usage honest and frees room before that. An entry
        refreshed by the data plane between the scan and the delete survives (its value is checked again)."""
        maps = self.open_maps()
        if maps is None:
            return {"loaded": False, "removed": 0}
        try:
            return dict(loaded=True, **flows.gc_flows(maps))
        finally:
            self.close_maps(maps)

    # ---------------------------------------------------------------- sweeping
    def sweep(self, check_mode=False):
        """Remove what has expired: blacklist entries of rules.json (and their map keys), expired
        auto-bans, expired conntrack entries; and cut the flows of live auto-bans that their addresses do
        not hold (unheld: the data plane already drops their packets; this frees the entries)."""
        program.require_root()
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
                            sources.mark_listed(maps, [key])  # held by the ban: set already, unless lost
                            maps[name].update(key, want[name][key])
                        else:
                            maps[name].delete(key)
            if not check_mode:
                if live_bans:
                    out["bans_purged_flows"] = flows.purge_conntrack(maps["ct"], live_bans, flows.unheld)
                out["conntrack"] = flows.gc_flows(maps)
            out["changed"] = bool(out["changed"] or out["map_entries_expired"] or out["bans_purged_flows"]
                                  or out["conntrack"]["removed"])
            return out
        finally:
            self.close_maps(maps)
