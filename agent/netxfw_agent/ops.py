# SPDX-License-Identifier: GPL-2.0-or-later
"""Glue the CLI and the API share: calls into the engine (which validates what it is given).

Everything that changes the firewall is one call to netxfw_engine.engine.Firewall
(apply_rules / apply_program), which takes the state lock, updates the maps and
writes the JSON atomically. Nothing here touches a map or a state file itself.
"""

import json
import os
import time

from netxfw_engine import queries, rules
from netxfw_engine.errors import NetxfwError

RESTORE_FAILED = "restore-failed.json"  # in state_dir: the last boot restore failed (`netxfw restore`)
# the program settings the settings route changes (runtime ones: a map update, never a recompile)
SETTINGS = ("policy", "icmp_rate", "icmp_burst", "conntrack", "conntrack_timeout")
NOT_ENFORCING = "NOT ENFORCING on %s: %s; `netxfw restore` attaches the programs again"
NOT_LOADED = ("NOT LOADED: config.json deploys the firewall on %s, but %s holds no valid pin set; `netxfw restore` "
              "loads rules.json")
STALE_PROGRAM = ("STALE PROGRAM on %s: an XDP program no valid pin set names is attached: it enforces the rules "
                 "it had, not rules.json's; `netxfw restore` replaces it")
OUT_OF_STEP = ("RULE MAPS OUT OF STEP with %s: a write to them was interrupted, the data plane does not enforce "
               "the stored rules; `netxfw reload` rebuilds them (so does the next rule change)")


class NotDeployed(NetxfwError):
    """The data plane has no stored configuration to work from."""


def change_rules(fw, kind, entries, state="present", ttl=None, exclusive=False):
    """One engine call: the engine validates kind, entries and ttl (its message goes back as it is)."""
    return fw.apply_rules(kind, entries, state=state, exclusive=exclusive, ttl=ttl)


def import_rules(fw, parsed, replace=False):
    """Apply {kind: [entries]} (exchange.parse_rules); one engine call per kind, in the registry's order."""
    results = {}
    for kind in rules.KINDS:
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
    return changes  # their values are the engine's to check (program_settings.normalize_program)


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


def not_loaded(info):
    """Alerts for a deployed firewall whose pins are gone or half there (removed by hand, a reboot
    without boot restore, a crash while pinning): nothing guards the configured interfaces, or an
    orphaned program still does with whatever rules it had."""
    names = (info.get("config") or {}).get("interfaces", [])
    if info.get("loaded") or not names:
        return []
    return [NOT_LOADED % (", ".join(names), info["pin_path"])] + [
        STALE_PROGRAM % name for name in names if (info.get("interfaces") or {}).get(name, {}).get("xdp_mode")]


def detached(info):
    """(interface, why) for each configured interface the loaded programs do not guard: it is gone, or
    someone detached the XDP or the TC egress program by hand (`ip link set dev X xdp off`, `tc`)."""
    if not info.get("loaded"):
        return []
    out = []
    for name in (info.get("config") or {}).get("interfaces", []):
        where = info["interfaces"].get(name)
        if where is None:
            out.append((name, "the interface does not exist"))
        elif not where["xdp"]:
            out.append((name, "the XDP program is not attached: inbound packets are not filtered"))
        elif not where["tc"]:
            out.append((name, "the TC egress program is not attached: this host's flows are not tracked"))
    return out


def status(fw, sample=0.0):
    """engine info() plus rule counts, the rollback window, the last ansible-pull run (`pull`),
    `alerts` (a failed boot restore, an unconfirmed change without a timer, a due rollback that
    cannot happen, a failed pull, rule maps left half written, a configured interface left unguarded), and rates over
    `sample` seconds when > 0."""
    from . import pull, rollback
    try:
        data, unreadable = fw.store.read_rules(), None
    except NetxfwError as exc:  # status is where a person looks first: it still shows the rest
        data, unreadable = None, str(exc)
    info = queries.info(fw, data)
    info["rules"] = queries.rule_counts(fw, data) if data is not None else {}
    info["rollback"] = rollback.status(fw)
    info["restore_failed"] = restore_failure(fw)
    info["pull"] = pull.last_result(fw)
    info["alerts"] = ["BOOT RESTORE FAILED at %s (kernel %s): %s" % (
        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(f["time"])), f["kernel"], f["error"])
        for f in [info["restore_failed"]] if f] + rollback.problems(fw) + pull.problems(fw)
    if unreadable:
        info["alerts"].append("RULES UNREADABLE: %s; a restore or reload fails until it is fixed" % unreadable)
    if info.get("rules_in_step") is False:
        info["alerts"].append(OUT_OF_STEP % fw.store.rules_path)
    info["alerts"].extend(NOT_ENFORCING % (name, why) for name, why in detached(info))
    info["alerts"].extend(not_loaded(info))
    if info.get("loaded") and sample > 0:
        before, t0 = info["counters"], time.monotonic()
        time.sleep(sample)
        after = queries.counters(fw)
        if after is not None:
            info["rates"] = queries.rates(before, after, time.monotonic() - t0)
            info["rate_interval"] = round(time.monotonic() - t0, 3)
            info["counters"] = after
    return info
