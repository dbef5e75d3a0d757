# SPDX-License-Identifier: GPL-2.0-or-later
"""Confirm-or-rollback, in the spirit of community.general.iptables_state.

Before a policy is applied over SSH, the controller runs `netxfw rollback-after SECONDS`:

1. the current desired and runtime state is snapshotted (config.json, rules.json and whether
   the data plane is loaded) into <state_dir>/rollback/snapshot.json;
2. a detached timer process (setsid, double fork, no stdio) is left running on the host;
3. the controller applies the new policy, opens a *fresh* SSH connection and runs
   `netxfw confirm ID`, which cancels the timer;
4. if nobody confirms before the deadline, the timer restores the snapshot through the engine
   (the same calls the modules make) and writes <state_dir>/rollback/rolled-back.json, which
   `netxfw confirm` and `netxfw rollback-status` report.

Confirm and the timer race for one file: both rename <state_dir>/rollback/pending, and
exactly one of them wins, so a confirmation is never half-honoured.
"""

import json
import os
import secrets
import signal
import sys
import tempfile
import time

from netxfw_engine.engine import RULE_KINDS
from netxfw_engine.errors import NetxfwError

SUBDIR = "rollback"
PENDING = "pending"
ROLLED_BACK = "rolled-back.json"
SNAPSHOT = "snapshot.json"
LOG = "timer.log"
POLL = 0.25
MAX_TIMEOUT = 24 * 3600


def rollback_dir(fw):
    return os.path.join(fw.store.state_dir, SUBDIR)


def _path(fw, name):
    return os.path.join(rollback_dir(fw), name)


def _write_json(path, data):
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            json.dump(data, stream, indent=2, sort_keys=True)
            stream.write("\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as stream:
            return json.load(stream)
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise NetxfwError("%s is not valid JSON (%s)" % (path, exc))


def _alive(pid):
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie or a recycled pid running something else is not our timer
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as stream:
            return b"rollback-after" in stream.read()
    except OSError:
        return False


# ---------------------------------------------------------------- snapshot / restore
def snapshot(fw):
    """The state a rollback goes back to: stored config and rules, and whether the program runs."""
    with fw.store.lock():
        maps = fw.open_maps()
        loaded = maps is not None
        fw.close_maps(maps)
        config = fw.store.read_config() or None
        rules = fw.store.read_rules()
    return {"version": 1, "taken": time.time(), "pin_path": fw.pin_path, "state_dir": fw.store.state_dir,
            "loaded": loaded, "config": config,
            "rules": {kind: rules.get(key, []) for kind, key in RULE_KINDS.items()}}


def save_snapshot(fw, path):
    data = snapshot(fw)
    _write_json(path, data)
    return data


def restore_snapshot(fw, snap):
    """Bring back a snapshot: rules first (so a whitelisted controller is let in again as soon as
    possible), then the program (the previous config, or no program at all)."""
    if not isinstance(snap, dict) or snap.get("version") != 1:
        raise NetxfwError("not a netxfw snapshot (version 1)")
    actions = []
    for kind in ("whitelist", "port", "blacklist"):
        entries = snap["rules"].get(kind, [])
        if kind == "blacklist":
            now = time.time()
            entries = [e for e in entries if e.get("expires") is None or e["expires"] > now]
        result = fw.apply_rules(kind, entries, exclusive=True)
        if result["changed"]:
            actions.append("%s: +%d -%d" % (kind, len(result["added"]), len(result["removed"])))
    if snap.get("loaded") and snap.get("config"):
        result = fw.apply_program(snap["config"])
        actions.extend(result["actions"] or (["config"] if result["changed"] else []))
    else:
        result = fw.remove_program()
        actions.extend(result["actions"])
        if snap.get("config"):
            fw.store.write_config(snap["config"])  # deployed but not loaded: keep it that way
    return actions


# ---------------------------------------------------------------- timer
def status(fw):
    pending = _read_json(_path(fw, PENDING))
    if pending is not None:
        pending["timer_alive"] = _alive(pending.get("pid"))
        pending["remaining"] = max(0.0, pending["deadline"] - time.time())
    return {"pending": pending, "rolled_back": _read_json(_path(fw, ROLLED_BACK))}


def arm(fw, timeout, snapshot_path=None, foreground=False):
    """Snapshot now, leave a detached timer that restores the snapshot after `timeout` seconds
    unless `confirm` runs first. Returns {id, deadline, snapshot, previous_rollback}."""
    if not 1 <= timeout <= MAX_TIMEOUT:
        raise NetxfwError("the rollback timeout must be between 1 and %d seconds" % MAX_TIMEOUT)
    pending_path = _path(fw, PENDING)
    current = _read_json(pending_path)
    superseded = None
    if current is not None and _alive(current.get("pid")) and os.path.exists(current.get("snapshot", "")):
        # An earlier change was never confirmed (its play died or was interrupted): the new
        # timer takes over and, if it fires, goes back to that change's snapshot, the last
        # confirmed state (the old timer exits when it sees the new id).
        superseded = current["id"]
        snapshot_path = current["snapshot"]
    # a rollback nobody has seen yet is reported once, then kept as rolled-back.json.seen
    previous = _read_json(_path(fw, ROLLED_BACK))
    if previous is not None:
        os.replace(_path(fw, ROLLED_BACK), _path(fw, ROLLED_BACK + ".seen"))
    if superseded is None:
        snapshot_path = snapshot_path or _path(fw, SNAPSHOT)
        save_snapshot(fw, snapshot_path)
    ident = secrets.token_hex(8)
    record = {"id": ident, "armed": time.time(), "deadline": time.time() + timeout, "timeout": timeout,
              "snapshot": snapshot_path, "pid": None, "superseded": superseded}
    _write_json(pending_path, record)
    if foreground:
        record["pid"] = os.getpid()
        _write_json(pending_path, record)
        _timer(fw, record)
        return dict(record, previous_rollback=previous)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # first child: new session, fork again so the timer is nobody's child
        os.close(read_fd)
        try:
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            record["pid"] = os.getpid()
            _write_json(pending_path, record)
            os.write(write_fd, b"%d\n" % record["pid"])
            os.close(write_fd)
            _detach_stdio(fw)
            _timer(fw, record)
        except BaseException as exc:  # noqa: BLE001 - the timer must never return into the CLI
            try:
                sys.stderr.write("netxfw rollback timer: %s\n" % exc)
            finally:
                os._exit(1)
        os._exit(0)
    os.close(write_fd)
    os.waitpid(pid, 0)
    with os.fdopen(read_fd) as stream:
        line = stream.readline().strip()
    if not line:
        raise NetxfwError("the rollback timer did not start (see %s)" % _path(fw, LOG))
    record["pid"] = int(line)
    return dict(record, previous_rollback=previous)


def _detach_stdio(fw):
    null = os.open(os.devnull, os.O_RDWR)
    log = os.open(_path(fw, LOG), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    # keep no other descriptor (the SSH session's pipes) open: the session must be able to end
    os.closerange(3, 65536)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def _log(message):
    sys.stderr.write("%s %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%S"), message))


def _timer(fw, record):
    pending_path = _path(fw, PENDING)
    firing = _path(fw, "firing-" + record["id"])
    _log("armed %s: rollback in %ss unless confirmed" % (record["id"], record["timeout"]))
    deadline = record["deadline"]
    while True:
        while time.time() < deadline:
            time.sleep(POLL)
            try:
                current = _read_json(pending_path)
            except NetxfwError:
                continue  # rewrites are atomic: a bad read is transient, never a reason to fire
            if current is None or current.get("id") != record["id"]:
                _log("%s confirmed or replaced: timer exits" % record["id"])
                return
            if current.get("deadline") != deadline:
                deadline = current["deadline"]
                _log("%s: countdown restarted, rollback at %s" % (record["id"], time.ctime(deadline)))
        try:
            with fw.store.lock(timeout=300):  # serialised with `rollback-countdown`
                current = _read_json(pending_path)
                if current is None or current.get("id") != record["id"]:
                    _log("%s confirmed at the deadline: timer exits" % record["id"])
                    return
                if current.get("deadline", deadline) > time.time():
                    deadline = current["deadline"]  # restarted at the last moment
                    continue
                os.rename(pending_path, firing)  # the confirm/timer race is decided here
                break
        except FileNotFoundError:
            _log("%s confirmed at the deadline: timer exits" % record["id"])
            return
    _log("%s not confirmed in time: restoring %s" % (record["id"], record["snapshot"]))
    outcome = {"id": record["id"], "armed": record["armed"], "deadline": record["deadline"],
               "rolled_back_at": time.time(), "snapshot": record["snapshot"]}
    try:
        snap = _read_json(record["snapshot"])
        outcome["actions"] = restore_snapshot(fw, snap)
        outcome["ok"] = True
    except Exception as exc:  # noqa: BLE001 - report whatever went wrong
        outcome["ok"] = False
        outcome["error"] = "%s: %s" % (type(exc).__name__, exc)
    outcome["finished_at"] = time.time()
    _write_json(_path(fw, ROLLED_BACK), outcome)
    os.unlink(firing)
    _log("%s rolled back: %s" % (record["id"], json.dumps(outcome, sort_keys=True)))


def countdown(fw, ident, seconds):
    """Restart the countdown of pending rollback `ident`: it now fires `seconds` from now. The role
    arms with a long window covering the apply (a first compile on a busy host takes a while),
    then, once the apply is done, leaves the controller exactly `seconds` to reconnect."""
    if not 1 <= seconds <= MAX_TIMEOUT:
        raise NetxfwError("the rollback timeout must be between 1 and %d seconds" % MAX_TIMEOUT)
    pending_path = _path(fw, PENDING)
    with fw.store.lock():
        current = _read_json(pending_path)
        if current is None or current.get("id") != ident:
            done = _read_json(_path(fw, ROLLED_BACK))
            if done is not None and done.get("id") == ident:
                return {"id": ident, "rolled_back": done}
            raise NetxfwError("no pending rollback %s" % ident)
        current["deadline"] = time.time() + seconds
        current["timeout"] = seconds
        _write_json(pending_path, current)
    return {"id": ident, "deadline": current["deadline"], "rolled_back": None}


def confirm(fw, ident=None):
    """Cancel the pending rollback. Returns {confirmed, rolled_back}; rolled_back holds the
    report of a rollback that already happened to `ident` (confirmed is then False)."""
    pending_path = _path(fw, PENDING)
    current = _read_json(pending_path)
    if current is not None and (ident is None or current.get("id") == ident):
        claimed = _path(fw, ".confirmed-" + current["id"])
        try:
            os.rename(pending_path, claimed)
        except FileNotFoundError:
            current = None
        else:
            os.unlink(claimed)
            return {"confirmed": True, "id": current["id"], "rolled_back": None,
                    "remaining": max(0.0, current["deadline"] - time.time())}
    # lost the race, or too late: wait for a firing timer to finish, then report it
    deadline = time.time() + 120
    while ident and os.path.exists(_path(fw, "firing-" + ident)) and time.time() < deadline:
        time.sleep(POLL)
    done = _read_json(_path(fw, ROLLED_BACK))
    if done is not None and (ident is None or done.get("id") == ident):
        return {"confirmed": False, "id": done["id"], "rolled_back": done}
    if current is not None:
        raise NetxfwError("the pending change is %s, not %s" % (current.get("id"), ident))
    raise NetxfwError("no change awaits confirmation%s" % (" with id %s" % ident if ident else ""))
