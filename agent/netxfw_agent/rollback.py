# SPDX-License-Identifier: GPL-2.0-or-later
"""Confirm-or-rollback ("commit confirmed"), in the spirit of community.general.iptables_state
and of the network operating systems' `commit confirmed`.

A *window* is one change awaiting confirmation. Its files live in <state_dir>/rollback/:

- pending: the open window {id, owner, deadline, pid, boot_id, ...}; at most one per host;
- snapshot.json: the state before the window opened, the last confirmed state;
- journal.jsonl: changes that others (API, CLI, modules run with another or no window) made
  while the window was open, written by the engine's StateStore (state.py);
- history/<id>.json: what happened to each window (confirmed, or rolled back and how);
- rolled-back.json: the last rollback, until the next `rollback-after` has reported it.

Guarantees (README.md "No lockouts" and roles/netxfw/README.md say the same to users):

1. Every decision (arm, confirm, countdown, fire, boot check) is taken under the state lock,
   which is also what the engine's writes take: exactly one of confirm and rollback happens.
2. One window per host. `rollback-after` while another window is open waits for it to close
   (up to --wait seconds), else fails naming the window, its owner and its deadline.
3. A rollback reverts the owner's change only: it restores the snapshot and replays on top
   of it the journal of everyone else's changes made during the window.
4. An unconfirmed change never outlives its timer: `netxfw restore` (the boot restore) and the
   next `rollback-after` roll back a window whose timer is gone (reboot, kill).
5. A due rollback is retried until it is done: the timer waits for the lock as long as it
   takes, retries a failed restore, and says so in its log, in `rollback-status` and in
   `netxfw status` while it cannot.
"""

import json
import os
import secrets
import signal
import sys
import time

from netxfw_engine.rules import LIST_KEYS as RULE_KINDS  # {kind: its list in rules.json}, whitelist first
from netxfw_engine.errors import NetxfwError
from netxfw_engine.state import JOURNAL_FILE, ROLLBACK_DIR, WINDOW_FILE, entry_key

SUBDIR = ROLLBACK_DIR
PENDING = WINDOW_FILE
ROLLED_BACK = "rolled-back.json"
SNAPSHOT = "snapshot.json"
BLOCKED = "blocked.json"
HISTORY = "history"
HISTORY_KEPT = 50
LOG = "timer.log"
POLL = 0.25
LOCK_TRY = 30          # seconds of one lock attempt of the timer; it retries for as long as it takes
RETRY_EVERY = 5        # seconds before the first retry of a due rollback whose restore failed,
RETRY_MAX = 300        # doubling up to this: it retries for as long as it takes
MAX_TIMEOUT = 24 * 3600


def rollback_dir(fw):
    return os.path.join(fw.store.state_dir, SUBDIR)


def _path(fw, name):
    return os.path.join(rollback_dir(fw), name)


def boot_id():
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as stream:
            return stream.read().strip()
    except OSError:
        return None


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


def timer_alive(window):
    """The window's timer still runs: same boot, and its process is there."""
    if window.get("boot_id") and window["boot_id"] != boot_id():
        return False
    return _alive(window.get("pid"))


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
    fw.store.write_json(path, data)
    return data


def restore_snapshot(fw, snap):
    """Bring back a snapshot: every rule kind first, the whitelist before the others (so a
    whitelisted controller is let in again as soon as possible), then the program (the previous
    config, or no program at all)."""
    if not isinstance(snap, dict) or snap.get("version") != 1:
        raise NetxfwError("not a netxfw snapshot (version 1)")
    actions = []
    with fw.store.lock(timeout=LOCK_TRY):
        for kind in RULE_KINDS:  # the engine's kinds, whitelist first
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


def read_journal(fw):
    try:
        with open(_path(fw, JOURNAL_FILE), encoding="utf-8") as stream:
            lines = stream.read().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a crash: the write it describes did not complete either
    return out


def rebase(snap, journal):
    """The snapshot with everyone else's changes of the window replayed on top of it."""
    target = json.loads(json.dumps(snap))
    keys = dict((key, kind) for kind, key in RULE_KINDS.items())
    replayed = []
    for record in journal:
        for name, diff in sorted((record.get("rules") or {}).items()):
            kind = keys.get(name, name)
            current = target["rules"].setdefault(kind, [])
            gone = set(entry_key(e) for e in diff.get("removed", []))
            have = set(entry_key(e) for e in current)
            current[:] = [e for e in current if entry_key(e) not in gone]
            current.extend(e for e in diff.get("added", []) if entry_key(e) not in have)
            replayed.append("%s: +%d -%d" % (kind, len(diff.get("added", [])), len(diff.get("removed", []))))
        if "config" in record:
            before, after = record["config"]["before"], record["config"]["after"]
            if after is None:
                target["config"], target["loaded"] = None, False
            elif before is None or target.get("config") is None:
                target["config"], target["loaded"] = after, True
            else:
                merged = dict(target["config"])
                for key in set(before) | set(after):
                    if before.get(key) != after.get(key):
                        if key in after:
                            merged[key] = after[key]
                        else:
                            merged.pop(key, None)
                target["config"] = merged
            replayed.append("config")
    return target, replayed


def _history(fw, ident, outcome):
    fw.store.write_json(os.path.join(rollback_dir(fw), HISTORY, "%s.json" % ident), outcome)
    directory = os.path.join(rollback_dir(fw), HISTORY)
    names = sorted(os.listdir(directory), key=lambda n: os.path.getmtime(os.path.join(directory, n)))
    for name in names[:-HISTORY_KEPT]:
        fw.store.remove(os.path.join(directory, name))


def outcome_of(fw, ident):
    if not ident or "/" in ident:
        return None
    return fw.store.read_json(os.path.join(rollback_dir(fw), HISTORY, "%s.json" % ident))


def _roll_back(fw, window, reason):
    """Under the state lock: restore the window's snapshot plus everyone else's changes. On
    success the window is closed and the outcome recorded; on failure the window stays open,
    with the error, and the caller retries or reports."""
    outcome = {"id": window["id"], "owner": window.get("owner"), "armed": window.get("armed"),
               "deadline": window.get("deadline"), "reason": reason, "rolled_back_at": time.time(),
               "snapshot": window.get("snapshot"), "confirmed": False}
    fw.store.actor = window["id"]  # the restore's own writes are not someone else's change
    try:
        snap = fw.store.read_json(window["snapshot"])
        if snap is None:
            raise NetxfwError("the snapshot %s is gone" % window["snapshot"])
        target, replayed = rebase(snap, read_journal(fw))
        outcome["kept_changes_by_others"] = replayed
        outcome["actions"] = restore_snapshot(fw, target)
        outcome["ok"] = True
    except Exception as exc:  # noqa: BLE001 - report whatever went wrong
        outcome["ok"] = False
        outcome["error"] = "%s: %s" % (type(exc).__name__, exc)
    finally:
        fw.store.actor = None
    outcome["finished_at"] = time.time()
    if outcome["ok"]:
        _history(fw, window["id"], outcome)
        fw.store.write_json(_path(fw, ROLLED_BACK), outcome)
        for name in (PENDING, JOURNAL_FILE, BLOCKED):
            fw.store.remove(_path(fw, name))
    else:
        failed = dict(window, attempts=window.get("attempts", 0) + 1, last_error=outcome["error"],
                      due_since=window.get("due_since") or time.time())
        fw.store.write_json(_path(fw, PENDING), failed)
    return outcome


def _close_orphan(fw, reason):
    """Under the state lock: roll back an open window whose timer is gone."""
    window = fw.store.read_json(_path(fw, PENDING))
    if window is None or timer_alive(window):
        return None
    return _roll_back(fw, window, reason)


def boot_check(fw):
    """`netxfw restore`: a window whose timer died (the host restarted inside it) is rolled back
    before anything is loaded: the last confirmed state comes back, never the unconfirmed one."""
    if fw.store.read_json(_path(fw, PENDING)) is None:
        return None
    with fw.store.lock(timeout=600):
        return _close_orphan(fw, "its timer was gone (the host restarted, or the timer was killed) "
                                 "before the change was confirmed")


# ---------------------------------------------------------------- status
def status(fw):
    pending = fw.store.read_json(_path(fw, PENDING))
    if pending is not None:
        pending["timer_alive"] = timer_alive(pending)
        pending["remaining"] = max(0.0, pending["deadline"] - time.time())
        pending["overdue"] = pending["deadline"] < time.time()
        blocked = fw.store.read_json(_path(fw, BLOCKED))
        if blocked is not None and blocked.get("id") == pending["id"]:
            pending["blocked"] = blocked
    return {"pending": pending, "rolled_back": fw.store.read_json(_path(fw, ROLLED_BACK))}


def problems(fw):
    """What `netxfw status` must shout about: an unconfirmed change nobody will roll back, a
    due rollback that cannot happen."""
    out = []
    pending = status(fw)["pending"]
    if pending is None:
        return out
    if not pending["timer_alive"]:
        out.append("UNCONFIRMED change %s (owner %s) and its rollback timer is NOT running: `netxfw restore` or the "
                   "next `netxfw rollback-after` rolls it back; `netxfw confirm %s` keeps it"
                   % (pending["id"], pending.get("owner"), pending["id"]))
    if pending.get("last_error"):
        out.append("ROLLBACK of %s is due since %s and FAILED %d time(s): %s"
                   % (pending["id"], _when(pending["due_since"]), pending.get("attempts", 0), pending["last_error"]))
    elif pending.get("blocked"):
        out.append("ROLLBACK of %s is due since %s and WAITING: %s"
                   % (pending["id"], _when(pending["blocked"]["since"]), pending["blocked"]["error"]))
    return out


def _when(epoch):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


# ---------------------------------------------------------------- arm / confirm
def default_owner():
    who = os.environ.get("SUDO_USER") or os.environ.get("USER") or "root"
    ssh = (os.environ.get("SSH_CONNECTION") or "").split()
    return "%s@%s" % (who, ssh[0] if ssh else "local")


def arm(fw, timeout, snapshot_path=None, foreground=False, owner=None, wait=0.0, on_wait=None):
    """Open a window: snapshot now (the last confirmed state), leave a detached timer that rolls
    the change back after `timeout` seconds unless `confirm` runs first. Waits up to `wait`
    seconds for another open window to close, calling on_wait(window) once per window it waits
    for. Returns the window record plus previous_rollback (a rollback nobody has reported yet)
    and waited_for."""
    if not 1 <= timeout <= MAX_TIMEOUT:
        raise NetxfwError("the rollback timeout must be between 1 and %d seconds" % MAX_TIMEOUT)
    give_up = time.monotonic() + max(0.0, wait)
    waited_for = []
    while True:
        with fw.store.lock(timeout=max(60.0, wait)):
            # a window whose timer is gone was never confirmed: roll it back before
            # snapshotting, so the snapshot is a confirmed state
            orphan = _close_orphan(fw, "its timer was gone when the next window was armed")
            if orphan is not None and not orphan["ok"]:
                raise NetxfwError("an earlier unconfirmed change %s could not be rolled back: %s"
                                  % (orphan["id"], orphan["error"]))
            current = fw.store.read_json(_path(fw, PENDING))
            if current is None:
                record, previous = _open_window(fw, timeout, snapshot_path, foreground, owner)
                break
            if current["id"] not in waited_for:
                waited_for.append(current["id"])
                if on_wait is not None and time.monotonic() < give_up:
                    on_wait(current)
        if time.monotonic() >= give_up:
            raise NetxfwError(
                "another change awaits confirmation on this host: window %s, owner %s, armed %s, rolls back at %s. "
                "One window at a time: wait for it (or raise --wait), or on this host run `netxfw confirm %s` "
                "to keep that change, or `netxfw rollback-now %s` to revert it now"
                % (current["id"], current.get("owner"), _when(current["armed"]), _when(current["deadline"]),
                   current["id"], current["id"]))
        time.sleep(min(1.0, max(0.05, give_up - time.monotonic())))
    if foreground:
        _timer(fw, record)
    return dict(record, previous_rollback=previous, waited_for=waited_for)


def _open_window(fw, timeout, snapshot_path, foreground, owner):
    """Under the state lock: nothing changes between the snapshot and the window."""
    previous = fw.store.read_json(_path(fw, ROLLED_BACK))
    if previous is not None:
        os.replace(_path(fw, ROLLED_BACK), _path(fw, ROLLED_BACK + ".seen"))
    snapshot_path = snapshot_path or _path(fw, SNAPSHOT)
    save_snapshot(fw, snapshot_path)
    fw.store.remove(_path(fw, JOURNAL_FILE))
    fw.store.remove(_path(fw, BLOCKED))
    now = time.time()
    record = {"id": secrets.token_hex(8), "owner": owner or default_owner(), "armed": now,
              "deadline": now + timeout, "timeout": timeout, "snapshot": snapshot_path, "pid": None,
              "boot_id": boot_id()}
    if foreground:
        record["pid"] = os.getpid()
        fw.store.write_json(_path(fw, PENDING), record)
    else:
        record["pid"] = _spawn_timer(fw, record)
    return record, previous


def _spawn_timer(fw, record):
    """Fork the detached timer; it writes the window (with its pid) before the caller goes on."""
    pending_path = _path(fw, PENDING)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # first child: new session, fork again so the timer is nobody's child
        os.close(read_fd)
        try:
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            record["pid"] = os.getpid()
            fw.store.write_json(pending_path, record)
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
    return int(line)


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
    # keep no other descriptor (the SSH session's pipes, the parent's state lock) open
    os.closerange(3, 65536)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def _log(message):
    sys.stderr.write("%s %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%S"), message))
    _syslog(message)


def _syslog(message):
    """The journal (or syslog) hears about the timer too, where there is one."""
    try:
        import syslog
        syslog.openlog("netxfw-rollback", 0, syslog.LOG_DAEMON)
        syslog.syslog(syslog.LOG_WARNING, message)
    except Exception:  # noqa: BLE001 - logging must never stop a rollback
        pass


def _timer(fw, record):
    pending_path = _path(fw, PENDING)
    _log("armed %s (owner %s): rollback in %ss unless confirmed" % (record["id"], record["owner"], record["timeout"]))
    deadline = record["deadline"]
    failures = 0
    while True:
        while time.time() < deadline:
            time.sleep(POLL)
            try:
                current = fw.store.read_json(pending_path)
            except NetxfwError:
                continue  # rewrites are atomic: a bad read is transient, never a reason to fire
            if current is None or current.get("id") != record["id"]:
                _log("%s confirmed or closed: timer exits" % record["id"])
                return
            if current.get("deadline") != deadline:
                deadline = current["deadline"]
                _log("%s: countdown restarted, rollback at %s" % (record["id"], time.ctime(deadline)))
        try:
            # first without waiting, so that a held lock is reported at once
            with fw.store.lock(timeout=LOCK_TRY if os.path.exists(_path(fw, BLOCKED)) else 0):
                current = fw.store.read_json(pending_path)
                if current is None or current.get("id") != record["id"]:
                    _log("%s confirmed at the deadline: timer exits" % record["id"])
                    return
                if current.get("deadline", deadline) > time.time():
                    deadline = current["deadline"]  # restarted at the last moment
                    continue
                _log("%s not confirmed in time: rolling back to %s" % (record["id"], record["snapshot"]))
                outcome = _roll_back(fw, current, "not confirmed before the deadline")
        except NetxfwError as exc:  # the lock: someone holds it; the rollback waits, loudly
            blocked = fw.store.read_json(_path(fw, BLOCKED)) or {}
            fw.store.write_json(_path(fw, BLOCKED), {"id": record["id"], "since": blocked.get("since") or time.time(),
                                                     "attempts": blocked.get("attempts", 0) + 1, "error": str(exc)})
            _log("ROLLBACK %s is due but cannot start yet (%s): retrying" % (record["id"], exc))
            continue
        if outcome["ok"]:
            _log("%s rolled back: %s" % (record["id"], json.dumps(outcome, sort_keys=True)))
            return
        failures += 1
        pause = min(RETRY_MAX, RETRY_EVERY * 2 ** (failures - 1))
        _log("ROLLBACK %s FAILED (%s): retrying in %ds" % (record["id"], outcome["error"], pause))
        time.sleep(pause)


def countdown(fw, ident, seconds):
    """Restart the countdown of pending rollback `ident`: it now fires `seconds` from now. The role
    arms with a long window covering the apply (a first compile on a busy host takes a while),
    then, once the apply is done, leaves the controller exactly `seconds` to reconnect."""
    if not 1 <= seconds <= MAX_TIMEOUT:
        raise NetxfwError("the rollback timeout must be between 1 and %d seconds" % MAX_TIMEOUT)
    pending_path = _path(fw, PENDING)
    with fw.store.lock(timeout=600):
        current = fw.store.read_json(pending_path)
        if current is None or current.get("id") != ident:
            done = outcome_of(fw, ident)
            if done is not None:
                return {"id": ident, "rolled_back": None if done.get("confirmed") else done, "outcome": done}
            raise NetxfwError("no pending rollback %s" % ident)
        current["deadline"] = time.time() + seconds
        current["timeout"] = seconds
        fw.store.write_json(pending_path, current)
    return {"id": ident, "deadline": current["deadline"], "rolled_back": None}


def confirm(fw, ident=None):
    """Keep the change: close the window. Returns {confirmed, id, rolled_back}: exactly what
    happened to window `ident` (rolled_back holds the report of its rollback, if it had one)."""
    pending_path = _path(fw, PENDING)
    with fw.store.lock(timeout=600):
        current = fw.store.read_json(pending_path)
        if current is not None and (ident is None or current.get("id") == ident):
            if current.get("last_error"):
                raise NetxfwError("window %s is past its deadline and its rollback is under way (it failed so far: "
                                  "%s); it can no longer be confirmed" % (current["id"], current["last_error"]))
            outcome = {"id": current["id"], "owner": current.get("owner"), "confirmed": True,
                       "confirmed_at": time.time(), "armed": current.get("armed")}
            _history(fw, current["id"], outcome)
            for name in (PENDING, JOURNAL_FILE, BLOCKED):
                fw.store.remove(_path(fw, name))
            return {"confirmed": True, "id": current["id"], "rolled_back": None,
                    "remaining": max(0.0, current["deadline"] - time.time())}
        done = outcome_of(fw, ident)
        if done is None and ident is None:
            last = fw.store.read_json(_path(fw, ROLLED_BACK))
            done = last
        if done is not None:
            if done.get("confirmed"):
                return {"confirmed": True, "id": done["id"], "rolled_back": None, "already": True}
            return {"confirmed": False, "id": done["id"], "rolled_back": done}
        if current is not None:
            raise NetxfwError("the open window is %s (owner %s), not %s: window %s is unknown on this host"
                              % (current["id"], current.get("owner"), ident, ident))
        raise NetxfwError("no change awaits confirmation%s" % (" with id %s" % ident if ident else ""))


def rollback_now(fw, ident=None):
    """Roll the open window back now, as its timer would (the snapshot plus others' changes)."""
    with fw.store.lock(timeout=600):
        current = fw.store.read_json(_path(fw, PENDING))
        if current is None or (ident and current["id"] != ident):
            done = outcome_of(fw, ident)
            if done is not None:
                return done
            raise NetxfwError("no open window%s to roll back" % (" " + ident if ident else ""))
        outcome = _roll_back(fw, current, "rolled back on request (netxfw rollback-now)")
    if not outcome["ok"]:
        raise NetxfwError("the rollback of %s failed: %s" % (current["id"], outcome["error"]))
    return outcome
