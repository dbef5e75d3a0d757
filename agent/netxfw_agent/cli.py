# SPDX-License-Identifier: GPL-2.0-or-later
"""`netxfw`: the host CLI. Exit codes: 0 ok, 1 error (message on stderr), 2 usage."""

import argparse
import json
import os
import sys
import time

from netxfw_engine import exchange, queries, rules
from netxfw_engine.engine import DEFAULT_PIN_PATH, DEFAULT_STATE_DIR, Firewall
from netxfw_engine.errors import NetxfwError
from netxfw_engine.state import OWNER_ENV

from . import auth, ops

PROG = "netxfw"


class UsageError(Exception):
    pass


def _globals_parser(suppress):
    parent = argparse.ArgumentParser(add_help=False)
    default = argparse.SUPPRESS if suppress else None
    parent.add_argument("--pin-path", default=default if suppress else DEFAULT_PIN_PATH,
                        help="bpffs directory of the pinned program and maps (default %s)" % DEFAULT_PIN_PATH)
    parent.add_argument("--state-dir", default=default if suppress else DEFAULT_STATE_DIR,
                        help="directory of config.json and rules.json (default %s)" % DEFAULT_STATE_DIR)
    parent.add_argument("--json", action="store_true", default=default if suppress else False,
                        help="print machine-readable JSON")
    return parent


def build_parser():
    sub_globals = _globals_parser(True)
    parser = argparse.ArgumentParser(
        prog=PROG, parents=[_globals_parser(False)],
        description="netxfw host agent: inspect and change the XDP firewall on this host.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    def command(name, help_text, **kw):
        return commands.add_parser(name, help=help_text, description=help_text, parents=[sub_globals], **kw)

    p = command("status", "counters and rates by reason, map usage, interfaces and modes")
    p.add_argument("--sample", type=float, default=1.0, metavar="SECONDS",
                   help="measure rates over this many seconds (0: no rates; default 1)")

    rule = command("rule", "add, remove or list rules: %s" % ", ".join(rules.KINDS))
    rule_cmds = rule.add_subparsers(dest="rule_command", metavar="ACTION")
    rule_cmds.required = True
    for action in ("add", "remove"):
        rp = rule_cmds.add_parser(
            action, parents=[sub_globals],
            help="%s rules (persisted to rules.json at once)" % action,
            description="%s rules. whitelist/blacklist: ITEM is an address or CIDR. port: ITEM is PROTO:PORTS, "
                        "e.g. tcp:22 or udp:1000-2000. ratelimit: ITEM is the source CIDR." % action.capitalize())
        rp.add_argument("kind", choices=rules.KINDS)
        rp.add_argument("items", nargs="+", metavar="ITEM")
        rp.add_argument("--source", help="port rules: source CIDR (default any)")
        if action == "add":
            rp.add_argument("--ttl", type=float, help="blacklist: expire after SECONDS")
            rp.add_argument("--action", dest="rule_action", choices=("allow", "deny"), default="allow",
                            help="port rules: allow (default) or deny")
            rp.add_argument("--rate", type=int, help="ratelimit: packets per second of each source address")
            rp.add_argument("--burst", type=int, help="ratelimit: bucket depth in packets (default the rate)")
            rp.add_argument("--syn-only", action="store_true", default=None, help="ratelimit: limit only TCP SYNs")
            rp.add_argument("--ban-ttl", type=int, help="ratelimit: ban a source over its rate for SECONDS")
    lp = rule_cmds.add_parser("list", parents=[sub_globals], help="list rules from rules.json")
    lp.add_argument("kind", nargs="?", choices=rules.KINDS)
    lp.add_argument("--search", help="an address (rules covering it) or text")
    lp.add_argument("--offset", type=int, default=0)
    lp.add_argument("--limit", type=int, default=None)
    lp.add_argument("--expired", action="store_true", help="include expired blacklist entries")

    ip = command("import", "import rules from JSON, CSV or a plain list of CIDRs (the formats netxfw_rule's src "
                 "takes)")
    ip.add_argument("file", help="file to read, - for stdin")
    ip.add_argument("--format", choices=exchange.FORMATS, help="default: told by the content (exchange.detect_format)")
    ip.add_argument("--kind", choices=rules.KINDS, help="rule kind (required for a plain list)")
    ip.add_argument("--replace", action="store_true",
                    help="make each imported kind exactly the file's list (default: add to it)")

    ep = command("export", "export rules as JSON, CSV or a plain list of CIDRs")
    ep.add_argument("--format", choices=exchange.FORMATS, help="default: from --output's name, else json")
    ep.add_argument("--kind", choices=rules.KINDS, action="append", help="only this kind (repeatable)")
    ep.add_argument("-o", "--output", help="write to this file instead of stdout")

    cp = command("conntrack", "list tracked flows (newest first)")
    cp.add_argument("--search", help="address, port or protocol")
    cp.add_argument("--limit", type=int, default=None)
    cp.add_argument("--offset", type=int, default=0)
    cp.add_argument("--live", action="store_true", help="only flows younger than the conntrack timeout")

    dp = command("drops", "read (and consume) sampled drop events from the data plane's ring buffer")
    dp.add_argument("--limit", type=int, default=100)
    command("sweep", "remove expired blacklist entries and auto-bans, purge the flows banned sources do not hold, gc conntrack")

    rp = command("reload", "re-apply the program from config.json (recompiles only when needed)")
    rp.add_argument("--check", action="store_true", help="only say what would change")
    command("restore", "boot restore: roll back a change that was awaiting confirmation when its timer died (a "
            "reboot inside a rollback window), then load the program from config.json and refill the maps from "
            "rules.json; a failure is written to stderr (the journal) and shown by `netxfw status`")

    sn = command("snapshot", "save the current state (config, rules, loaded or not) to a JSON file")
    sn.add_argument("file", help="where to write the snapshot")
    ra = command("rollback-after", "snapshot now and leave a detached timer that restores the snapshot after "
                 "SECONDS unless `netxfw confirm` runs first (confirm-or-rollback)")
    ra.add_argument("seconds", type=float)
    ra.add_argument("--snapshot", help="snapshot file (default STATE_DIR/rollback/snapshot.json)")
    ra.add_argument("--owner", help="who opens the window, shown to others (default USER@SSH client address)")
    ra.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                    help="wait up to SECONDS for another open window to close (one window per host; default 0)")
    ra.add_argument("--foreground", action="store_true", help="run the timer in this process (tests)")
    cf = command("confirm", "keep the applied change: cancel the pending rollback (exit 3 if it already "
                 "rolled back)")
    cf.add_argument("id", nargs="?", help="the id `rollback-after` printed (default: whatever is pending)")
    cd = command("rollback-countdown", "restart the countdown of a pending rollback: it fires SECONDS from now")
    cd.add_argument("id")
    cd.add_argument("seconds", type=float)
    command("rollback-status", "the pending rollback timer, and the last rollback that happened")
    rn = command("rollback-now", "roll the open window back now, as its timer would (changes made by others "
                 "during the window are kept); with --snapshot, or with no window open, restore a snapshot file")
    rn.add_argument("id", nargs="?", help="the open window's id (default: whatever is open)")
    rn.add_argument("--snapshot", help="snapshot file to restore as it is (default STATE_DIR/rollback/snapshot.json)")

    pl = command("pull", "ansible-pull mode: apply the policy repository to this host under confirm-or-rollback, "
                 "confirmed only by the host's own checks (settings: STATE_DIR/pull.json; result: `netxfw status`)")
    pl.add_argument("--config", help="settings file (default STATE_DIR/pull.json, written by the netxfw role)")
    pl.add_argument("--loop", action="store_true", help="run again every interval (+ splay) seconds, for hosts "
                    "without systemd (the role's netxfw-pull.timer does this where systemd runs)")

    sp = command("serve", "run the API, Web UI and metrics server")
    sp.add_argument("--listen", default="127.0.0.1:11811", help="HOST:PORT (default 127.0.0.1:11811)")
    sp.add_argument("--token-file", default=auth.DEFAULT_TOKEN_FILE)
    sp.add_argument("--access-log", action="store_true", help="log every request to stderr")

    tp = command("token", "manage the API token")
    token_cmds = tp.add_subparsers(dest="token_command", metavar="ACTION")
    token_cmds.required = True
    tg = token_cmds.add_parser("generate", parents=[sub_globals], help="create a random token file (mode 0600)")
    tg.add_argument("--token-file", default=auth.DEFAULT_TOKEN_FILE)
    tg.add_argument("--force", action="store_true", help="replace an existing token")
    tg.add_argument("--print", dest="show", action="store_true", help="print the new token")
    return parser


# ---------------------------------------------------------------- output
def emit(args, data, text):
    if args.json:
        json.dump(data, sys.stdout, indent=2, sort_keys=True, default=str)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")


def _fmt_num(value):
    for unit in ("", "k", "M", "G", "T"):
        if abs(value) < 1000:
            return ("%.0f%s" if unit == "" and float(value).is_integer() else "%.1f%s") % (value, unit)
        value /= 1000.0
    return "%.1fP" % value


def _table(rows, header):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                       for i, (c, w) in enumerate(zip(row, widths))).rstrip() for row in [header] + rows]
    return "\n".join(lines)


def status_text(info):
    if not info.get("loaded"):
        cfg = "config.json present" if info.get("config") else "no config.json"
        return ("netxfw: data plane NOT loaded (no valid pins under %s; %s in %s)\nrules in rules.json: %s"
                % (info["pin_path"], cfg, info["state_dir"],
                   ", ".join("%s %d" % kv for kv in sorted(info.get("rules", {}).items()))))
    cfg = info.get("config") or {}
    out = ["netxfw: loaded, program %s, pins %s, state %s" % (info["identity"][:12], info["pin_path"], info["state_dir"]),
           "policy %s, conntrack %s (timeout %ss), icmp %s" % (
               cfg.get("policy", "?"), "on" if cfg.get("conntrack") else "off", cfg.get("conntrack_timeout", "?"),
               "%s/s burst %s" % (cfg["icmp_rate"], cfg.get("icmp_burst")) if cfg.get("icmp_rate") else "not limited"),
           "", "interfaces:"]
    if not info.get("interfaces"):
        out.append("  (none)")
    for name, state in sorted(info.get("interfaces", {}).items()):
        out.append("  %-16s xdp %s%s  tc egress %s" % (
            name, "attached" if state["xdp"] else "NOT attached",
            " (%s)" % state["xdp_mode"] if state.get("xdp_mode") else "", "attached" if state["tc"] else "NOT attached"))
    rates = info.get("rates")
    rows = []
    for reason, c in info["counters"].items():
        row = [reason, c["packets"], _fmt_num(c["bytes"]) + "B"]
        if rates:
            row += [_fmt_num(rates[reason]["packets"]), _fmt_num(rates[reason]["bytes"] * 8) + "b/s"]
        rows.append(row)
    header = ["reason", "packets", "bytes"] + (["pkt/s", "rate"] if rates else [])
    out += ["", "counters%s:" % (" (rates over %.1fs)" % info["rate_interval"] if rates else ""),
            _table(rows, header), "", "maps:"]
    rows = [[name, m["entries"], m["capacity"], "%.1f%%" % (100.0 * m["entries"] / m["capacity"])]
            for name, m in sorted(info["maps"].items())]
    out.append(_table(rows, ["map", "entries", "capacity", "used"]))
    out += ["", "rules in rules.json: %s" % ", ".join("%s %d" % kv for kv in sorted(info.get("rules", {}).items()))]
    return "\n".join(out)


def rule_text(record):
    kind, entry = rules.record_entry(record)
    if kind == "blacklist" and entry["expires"] is not None:
        return "blacklist  %s  (expires in %ds)" % (entry["cidr"], max(0, entry["expires"] - time.time()))
    if kind == "port":
        return "port       %s %s from %s: %s" % (entry["proto"], entry["ports"], entry["source"], entry["action"])
    return "%-10s %s" % (kind, rules.describe(kind, entry))


def change_text(kind, result):
    if not result["changed"]:
        return "%s: no change" % kind
    parts = []
    if result["added"]:
        parts.append("added %d" % len(result["added"]))
    if result["removed"]:
        parts.append("removed %d" % len(result["removed"]))
    where = "rules.json and maps" if result.get("loaded") else "rules.json (data plane not loaded)"
    return "%s: %s (%s)" % (kind, ", ".join(parts) or "resynchronised", where)


# ---------------------------------------------------------------- commands
def port_items(items, source, action):
    entries = []
    for item in items:
        proto, sep, ports = item.partition(":")
        if not sep or not proto or not ports:
            raise UsageError("port rule %r: expected PROTO:PORTS such as tcp:22 or udp:1000-2000" % item)
        entry = {"proto": proto, "ports": ports, "action": action}
        if source:
            entry["source"] = source
        entries.append(entry)
    return entries


RATELIMIT_OPTIONS = ("rate", "burst", "syn_only", "ban_ttl")  # --rate, --burst, --syn-only, --ban-ttl


def rule_entries(args):
    """The entries `rule add/remove` names; their contents are the engine's to check."""
    if getattr(args, "ttl", None) is not None and not rules.KIND[args.kind].ttl:
        raise UsageError("--ttl applies to %s rules only" % " and ".join(k.name for k in rules.REGISTRY if k.ttl))
    if args.kind == "port":
        return port_items(args.items, args.source, getattr(args, "rule_action", "allow"))
    if args.source:
        raise UsageError("--source applies to port rules only")
    if args.kind == "ratelimit":
        options = dict((name, getattr(args, name, None)) for name in RATELIMIT_OPTIONS)
        options = dict((name, value) for name, value in options.items() if value is not None)
        return [dict(options, source=item) for item in args.items]
    given = sorted("--" + name.replace("_", "-") for name in RATELIMIT_OPTIONS if getattr(args, name, None) is not None)
    if given:
        raise UsageError("%s apply to ratelimit rules only" % ", ".join(given))
    return list(args.items)


def cmd_rule(args, fw):
    if args.rule_command == "list":
        listing = queries.list_rules(fw, args.kind, args.search, args.offset, args.limit, args.expired)
        text = "\n".join(rule_text(r) for r in listing["items"]) or "(no rules)"
        if listing["total"] > len(listing["items"]):
            text += "\n(%d of %d shown)" % (len(listing["items"]), listing["total"])
        return emit(args, listing, text)
    state = "present" if args.rule_command == "add" else "absent"
    result = ops.change_rules(fw, args.kind, rule_entries(args), state=state, ttl=getattr(args, "ttl", None))
    out = {"changed": result["changed"], "added": result["added"], "removed": result["removed"],
           "loaded": result["loaded"]}
    emit(args, out, change_text(args.kind, result))


def cmd_import(args, fw):
    name = args.file
    if name == "-":
        parsed = exchange.parse_rules(sys.stdin.read(), args.format, args.kind, "stdin")
    else:
        parsed = exchange.load(name, args.kind, args.format)
    if not parsed:
        raise NetxfwError("%s holds no rules%s" % (name, " of kind %s" % args.kind if args.kind else ""))
    results = ops.import_rules(fw, parsed, replace=args.replace)
    lines = ["%s: %s" % (k, "added %(added)d, removed %(removed)d" % r if r["changed"] else "no change")
             for k, r in results.items()]
    emit(args, results, "\n".join(lines))


def cmd_export(args, fw):
    fmt = args.format or exchange.guess_format(args.output or "", "json")
    text = exchange.export_rules(fw.store.read_rules(), fmt, args.kind)
    if args.output:
        temp = args.output + ".tmp"
        with open(temp, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temp, args.output)
        if not args.json:
            sys.stderr.write("exported to %s (%s)\n" % (args.output, fmt))
    else:
        sys.stdout.write(text)


def cmd_conntrack(args, fw):
    listing = queries.conntrack(fw, args.search, args.offset, args.limit, args.live)
    if not listing["loaded"]:
        return emit(args, listing, "data plane not loaded: no conntrack table")
    rows = [[f["proto"], "%s:%d" % (f["remote"], f["remote_port"]) if f["family"] == 4 else
             "[%s]:%d" % (f["remote"], f["remote_port"]),
             "%s:%d" % (f["local"], f["local_port"]) if f["family"] == 4 else "[%s]:%d" % (f["local"], f["local_port"]),
             "%.1fs" % f["age"], "live" if f["live"] else "stale"] for f in listing["items"]]
    text = _table(rows, ["proto", "remote", "local", "idle", "state"]) if rows else "(no tracked flows)"
    text += "\n%d flows (capacity %d)" % (listing["total"], listing["capacity"])
    emit(args, listing, text)


def cmd_drops(args, fw):
    listing = queries.drops(fw, limit=args.limit)
    if not listing["loaded"]:
        return emit(args, listing, "data plane not loaded: no drop events")
    rows = [[time.strftime("%H:%M:%S", time.localtime(e["time"])), e["reason"], str(e["proto"]),
             "%s:%d" % (e["src"], e["sport"]) if e["src"] else "-",
             "%s:%d" % (e["dst"], e["dport"]) if e["dst"] else "-"] for e in listing["events"]]
    emit(args, listing, _table(rows, ["time", "reason", "proto", "source", "destination"]) if rows
         else "(no sampled drops)")


def cmd_sweep(args, fw):
    result = fw.sweep()
    emit(args, result, "%d expired rules, %d expired map entries, %d flows of banned sources, %d conntrack entries"
         % (len(result["rules_expired"]), result["map_entries_expired"], result["bans_purged_flows"],
            result["conntrack"]["removed"]))


def cmd_restore(args, fw):
    """The boot restore. It never fails quietly: the host is without a firewall when it fails, so
    the error goes to stderr (the unit's journal), to restore-failed.json (`netxfw status`) and to
    syslog, and the exit code is 1."""
    from . import rollback
    failed = os.path.join(fw.store.state_dir, ops.RESTORE_FAILED)
    try:
        rolled = rollback.boot_check(fw)
        if rolled is not None and not rolled["ok"]:
            raise NetxfwError("the unconfirmed change %s could not be rolled back: %s" % (rolled["id"], rolled["error"]))
        note = ("rolled back the unconfirmed change %s (%s): %s; " % (
            rolled["id"], rolled["reason"], "; ".join(rolled["actions"]) or "no change needed")) if rolled else ""
        if not fw.store.read_config():
            out = {"changed": bool(rolled), "restored": False, "rolled_back": rolled}
            text = note + "nothing to restore: no config.json in %s" % fw.store.state_dir
        else:
            result = ops.reapply(fw)
            out = {"changed": result["changed"] or bool(rolled), "actions": result["actions"],
                   "compiled": result["compiled"], "identity": result["identity"], "restored": True,
                   "rolled_back": rolled}
            text = note + ("; ".join(result["actions"]) if result["actions"] else "up to date: nothing to do")
    except Exception as exc:
        record = {"time": time.time(), "kernel": os.uname().release, "error": "%s" % exc,
                  "pin_path": fw.pin_path}
        try:
            fw.store.write_json(failed, record)
        except OSError:
            pass
        message = ("netxfw restore FAILED: the data plane is NOT loaded, this host has NO netxfw firewall: %s"
                   % exc)
        rollback._syslog(message)
        raise NetxfwError(message)
    if os.path.exists(failed):
        os.unlink(failed)
    return emit(args, out, text)


def cmd_reload(args, fw):
    result = ops.reapply(fw, check_mode=getattr(args, "check", False))
    out = {"changed": result["changed"], "actions": result["actions"], "compiled": result["compiled"],
           "identity": result["identity"]}
    text = "; ".join(result["actions"]) if result["actions"] else "up to date: nothing to do"
    if getattr(args, "check", False) and result["actions"]:
        text = "would: " + text
    emit(args, out, text)


def _when(epoch):
    import time
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def _say_waiting(window):
    sys.stderr.write("waiting for window %s (owner %s, rolls back at %s) to close\n"
                     % (window["id"], window.get("owner"), _when(window["deadline"])))
    sys.stderr.flush()


def cmd_rollback(args, fw):
    from . import rollback
    if args.command == "rollback-now" and (args.snapshot or (not args.id and rollback.status(fw)["pending"] is None)):
        path = args.snapshot or os.path.join(rollback.rollback_dir(fw), rollback.SNAPSHOT)
        try:
            with open(path, encoding="utf-8") as stream:
                snap = json.load(stream)
        except (OSError, ValueError) as exc:
            raise NetxfwError("cannot read the snapshot %s: %s" % (path, exc))
        actions = rollback.restore_snapshot(fw, snap)
        return emit(args, {"changed": bool(actions), "actions": actions},
                    "; ".join(actions) if actions else "already as in the snapshot")
    if args.command == "rollback-now":
        res = rollback.rollback_now(fw, args.id)
        if res.get("confirmed"):
            emit(args, res, "window %s was CONFIRMED: nothing to roll back" % res["id"])
            return 3
        return emit(args, res, "rolled back %s: %s%s" % (
            res["id"], "; ".join(res.get("actions") or []) or "no change needed",
            " (kept the changes others made meanwhile: %s)" % "; ".join(res["kept_changes_by_others"])
            if res.get("kept_changes_by_others") else ""))
    if args.command == "snapshot":
        data = rollback.save_snapshot(fw, args.file)
        return emit(args, data, "snapshot written to %s (data plane %s)"
                    % (args.file, "loaded" if data["loaded"] else "not loaded"))
    if args.command == "rollback-after":
        rec = rollback.arm(fw, args.seconds, args.snapshot, foreground=args.foreground, owner=args.owner,
                           wait=args.wait, on_wait=_say_waiting)
        text = "rollback %s armed: restores %s at %s unless `netxfw confirm %s`" % (
            rec["id"], rec["snapshot"], _when(rec["deadline"]), rec["id"])
        text += ("\nchanges belong to this window when made with %s=%s in their environment (the role does "
                 "this); changes made without it are someone else's and a rollback keeps them" % (
                     OWNER_ENV, rec["id"]))
        if rec.get("waited_for"):
            text += "\nnote: waited for the window(s) %s to close first" % ", ".join(rec["waited_for"])
        if rec.get("previous_rollback"):
            text += "\nnote: an earlier change (%s) was rolled back at %s" % (
                rec["previous_rollback"]["id"], _when(rec["previous_rollback"]["rolled_back_at"]))
        return emit(args, rec, text)
    if args.command == "confirm":
        res = rollback.confirm(fw, args.id)
        if res["confirmed"]:
            emit(args, res, "confirmed %s: rollback cancelled" % res["id"] if not res.get("already")
                 else "%s was already confirmed" % res["id"])
            return 0
        rb = res["rolled_back"]
        emit(args, res, "too late: change %s was ROLLED BACK at %s (%s)" % (
            rb["id"], _when(rb["rolled_back_at"]), "; ".join(rb.get("actions") or []) or rb.get("error", "")))
        return 3
    if args.command == "rollback-countdown":
        res = rollback.countdown(fw, args.id, args.seconds)
        if res["rolled_back"]:
            emit(args, res, "too late: change %s was already ROLLED BACK" % args.id)
            return 3
        if res.get("outcome"):
            emit(args, res, "change %s was already confirmed" % args.id)
            return 3
        return emit(args, res, "rollback %s now fires at %s unless confirmed" % (args.id, _when(res["deadline"])))
    if args.command == "rollback-status":
        st = rollback.status(fw)
        lines = []
        p = st["pending"]
        lines.append("pending: %s" % ("none" if not p else "%s, %.0fs left, timer %s" % (
            p["id"], p["remaining"], "running" if p["timer_alive"] else "NOT running")) + (
            ", owner %s" % p["owner"] if p and p.get("owner") else ""))
        rb = st["rolled_back"]
        lines.append("last rollback: %s" % ("none unseen" if not rb else "%s at %s" % (
            rb["id"], _when(rb["rolled_back_at"]))))
        lines.extend(rollback.problems(fw))
        return emit(args, st, "\n".join(lines))


def cmd_pull(args, fw):
    from . import pull
    if args.loop:
        pull.loop(fw, args.config)
    cfg = pull.load_config(fw, args.config)
    if not cfg["cli"]:
        cfg["cli"] = [sys.executable, os.path.abspath(sys.argv[0])]
    res = pull.run_once(fw, cfg)
    emit(args, res, pull.summary(res) + ("" if res["success"] else "\n" + "\n".join(pull.problems(fw))))
    return 0 if res["success"] else 1


def cmd_status(args, fw):
    info = ops.status(fw, max(0.0, args.sample))
    if args.json:
        return emit(args, info, None)
    pending = info["rollback"]["pending"]
    lines = ["!! " + a for a in info["alerts"]] + [status_text(info)]
    if pending is not None:
        lines.append("rollback window %s open (owner %s): rolls back at %s unless confirmed" % (
            pending["id"], pending.get("owner"), _when(pending["deadline"])))
    if info.get("pull"):
        from . import pull
        lines.append(pull.summary(info["pull"]))
    print("\n".join(lines))


def cmd_serve(args, fw):
    from . import api
    api.serve(fw, args.listen, args.token_file, access_log=args.access_log)


def cmd_token(args, fw):
    token = auth.generate(args.token_file, force=args.force)
    emit(args, {"token_file": args.token_file, "token": token if args.show else None},
         token if args.show else "new token written to %s (mode 0600)" % args.token_file)


def main(argv=None):
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    for name, default in (("pin_path", DEFAULT_PIN_PATH), ("state_dir", DEFAULT_STATE_DIR), ("json", False)):
        if getattr(args, name, None) is None:
            setattr(args, name, default)
    fw = Firewall(pin_path=args.pin_path, state_dir=args.state_dir)
    handlers = {
        "status": lambda: cmd_status(args, fw),
        "rule": lambda: cmd_rule(args, fw),
        "import": lambda: cmd_import(args, fw),
        "export": lambda: cmd_export(args, fw),
        "conntrack": lambda: cmd_conntrack(args, fw),
        "drops": lambda: cmd_drops(args, fw),
        "sweep": lambda: cmd_sweep(args, fw),
        "reload": lambda: cmd_reload(args, fw),
        "restore": lambda: cmd_restore(args, fw),
        "serve": lambda: cmd_serve(args, fw),
        "pull": lambda: cmd_pull(args, fw),
        "snapshot": lambda: cmd_rollback(args, fw),
        "rollback-after": lambda: cmd_rollback(args, fw),
        "confirm": lambda: cmd_rollback(args, fw),
        "rollback-status": lambda: cmd_rollback(args, fw),
        "rollback-countdown": lambda: cmd_rollback(args, fw),
        "rollback-now": lambda: cmd_rollback(args, fw),
        "token": lambda: cmd_token(args, fw),
    }
    try:
        rc = handlers[args.command]()
        return rc if isinstance(rc, int) else 0
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        sys.stderr.write("%s: error: %s\n" % (PROG, exc))
        return 2
    except (NetxfwError, auth.TokenError) as exc:
        sys.stderr.write("%s: error: %s\n" % (PROG, exc))
        return 1
    except BrokenPipeError:  # `netxfw ... | head`: the reader had enough
        return 0
    except OSError as exc:
        sys.stderr.write("%s: error: %s\n" % (PROG, exc))
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
