# SPDX-License-Identifier: GPL-2.0-or-later
"""Glue the CLI and the API share: argument checks and calls into the engine.

Everything that changes the firewall is one call to netxfw_engine.engine.Firewall
(apply_rules / apply_program), which takes the state lock, updates the maps and
writes the JSON atomically. Nothing here touches a map or a state file itself.
"""

import json
import math
import os
import time

from netxfw_engine import queries
from netxfw_engine.errors import NetxfwError
from netxfw_engine.rules import MAX_TTL  # the engine's limit: the data plane holds no later expiry

KINDS = ("whitelist", "blacklist", "port")
RESTORE_FAILED = "restore-failed.json"  # in state_dir: the last boot restore failed (`netxfw restore`)
SETTINGS = {
    "policy": str,
    "icmp_rate": int,
    "icmp_burst": int,
    "conntrack": bool,
    "conntrack_timeout": int,
}


class NotDeployed(NetxfwError):
    """The data plane has no stored configuration to work from."""


def check_kind(kind):
    if kind not in KINDS:
        raise NetxfwError("rule kind must be one of %s, not %r" % (", ".join(KINDS), kind))
    return kind


def check_ttl(ttl):
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not math.isfinite(ttl) \
            or not 0 < ttl <= MAX_TTL:
        raise NetxfwError("ttl must be a number of seconds between 1 and %d, not %r" % (MAX_TTL, ttl))
    return ttl


def check_expires(entries):
    """Blacklist expiries must be finite epoch seconds within MAX_TTL of now (or null)."""
    limit = time.time() + MAX_TTL
    for entry in entries:
        if isinstance(entry, dict) and "expires" in entry and entry["expires"] is not None:
            value = entry["expires"]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not 0 <= value <= limit:
                raise NetxfwError("expires must be epoch seconds before %d (or null for never), not %r"
                                  % (limit, value))


def check_entries(kind, entries):
    """Type checks the engine's normaliser assumes (it is written for validated module input)."""
    for entry in entries:
        if kind == "whitelist":
            if not isinstance(entry, str):
                raise NetxfwError("a whitelist entry is a CIDR string, not %r" % (entry,))
        elif kind == "blacklist":
            if isinstance(entry, dict):
                if not isinstance(entry.get("cidr"), str):
                    raise NetxfwError("a blacklist entry needs 'cidr' as a CIDR string, got %r" % (entry,))
            elif not isinstance(entry, str):
                raise NetxfwError("a blacklist entry is a CIDR string or {cidr, expires}, not %r" % (entry,))
        else:
            if not isinstance(entry, dict):
                raise NetxfwError("a port rule is an object {proto, ports, source, action}, not %r" % (entry,))
            for field in ("proto", "action", "source"):
                if field in entry and not isinstance(entry[field], str):
                    raise NetxfwError("port rule field '%s' must be a string, not %r" % (field, entry[field]))
            for field in ("port", "ports"):
                if field in entry and (isinstance(entry[field], bool) or not isinstance(entry[field], (int, str))):
                    raise NetxfwError("port rule field '%s' must be a port number or a range string such as "
                                      "'1000-2000', not %r" % (field, entry[field]))
    if kind == "blacklist":
        check_expires(entries)
    return entries


def change_rules(fw, kind, entries, state="present", ttl=None, exclusive=False):
    check_kind(kind)
    check_entries(kind, entries)
    if ttl is not None and kind != "blacklist":
        raise NetxfwError("ttl applies to blacklist entries only")
    return fw.apply_rules(kind, entries, state=state, exclusive=exclusive, ttl=check_ttl(ttl))


def import_rules(fw, parsed, replace=False):
    """Apply {kind: [entries]} (exchange.parse_rules); one engine call per kind."""
    results = {}
    for kind in KINDS:
        if kind in parsed:
            result = change_rules(fw, kind, parsed[kind], exclusive=replace)
            results[kind] = {"changed": result["changed"], "added": len(result["added"]),
                             "removed": len(result["removed"])}
    return results


def stored_config(fw):
    config = fw.store.read_config()
    if not config:
        raise NotDeployed("the data plane is not deployed: %s has no config.json. Deploy it with the "
                          "netxfw.firewall.netxfw_program module (or the netxfw role) first"
                          % fw.store.state_dir)
    return config


def settings_view(fw):
    """Runtime settings: the stored ones, and what the loaded data plane applies now."""
    config = fw.store.read_config() or {}
    out = {"stored": dict((k, config.get(k)) for k in SETTINGS), "active": None, "deployed": bool(config)}
    maps = fw.open_maps()
    if maps is not None:
        try:
            out["active"] = queries.runtime_settings(maps)
        finally:
            fw.close_maps(maps)
    return out


def check_settings(changes):
    if not isinstance(changes, dict):
        raise NetxfwError("settings must be an object with any of %s" % ", ".join(SETTINGS))
    unknown = sorted(set(changes) - set(SETTINGS))
    if unknown:
        raise NetxfwError("unknown setting(s) %s; runtime settings are %s" % (", ".join(unknown), ", ".join(SETTINGS)))
    for key, value in changes.items():
        kind = SETTINGS[key]
        ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
        if not ok:
            raise NetxfwError("setting '%s' must be %s, not %r" % (key, {str: "a string", int: "an integer",
                                                                         bool: "true or false"}[kind], value))
    return changes


def update_settings(fw, changes, check_mode=False):
    """Merge runtime settings into the stored config and apply it: a map update, never a recompile
    (runtime settings are not part of the program's identity)."""
    check_settings(changes)
    stored_config(fw)  # a clear NotDeployed before waiting for the lock
    return fw.apply_program(changes, check_mode=check_mode, merge=True)


def reapply(fw, check_mode=False):
    """reload / restore: apply the stored program config (recompiles only if needed; refills the
    maps from rules.json when they are new or stale)."""
    return fw.apply_program(stored_config(fw), check_mode=check_mode)


def restore_failure(fw):
    """The last boot restore's failure, while it stands (a successful restore removes it)."""
    try:
        with open(os.path.join(fw.store.state_dir, RESTORE_FAILED), encoding="utf-8") as stream:
            return json.load(stream)
    except (OSError, ValueError):
        return None


def status(fw, sample=0.0):
    """engine info() plus rule counts, the rollback window, `alerts` (a failed boot restore, an
    unconfirmed change without a timer, a due rollback that cannot happen), and rates over
    `sample` seconds when > 0."""
    from . import rollback
    info = queries.info(fw)
    info["rules"] = queries.rule_counts(fw)
    info["rollback"] = rollback.status(fw)
    info["restore_failed"] = restore_failure(fw)
    info["alerts"] = ["BOOT RESTORE FAILED at %s (kernel %s): %s" % (
        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(f["time"])), f["kernel"], f["error"])
        for f in [info["restore_failed"]] if f] + rollback.problems(fw)
    if info.get("loaded") and sample > 0:
        before, t0 = info["counters"], time.monotonic()
        time.sleep(sample)
        after = queries.counters(fw)
        if after is not None:
            info["rates"] = queries.rates(before, after, time.monotonic() - t0)
            info["rate_interval"] = round(time.monotonic() - t0, 3)
            info["counters"] = after
    return info
