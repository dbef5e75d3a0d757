# Copyright: (c) 2025, netxfw developers
# GNU General Public License v2.0+ (see https://www.gnu.org/licenses/gpl-2.0.txt)
# SPDX-License-Identifier: GPL-2.0-or-later

"""Desired state of a host in state_dir: config.json, rules.json and the run lock.

While a confirm-or-rollback window is open (<state_dir>/rollback/pending, written by the host
agent's rollback module), every write of config.json or rules.json made by anyone but the
window's owner is also appended to <state_dir>/rollback/journal.jsonl as a diff, so that rolling
the window back reverts the owner's change and keeps everyone else's. The owner is named by
the environment variable NETXFW_ROLLBACK_ID (the role sets it on its own tasks).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import contextlib
import fcntl
import json
import operator
import os
import tempfile
import threading
import time

from .errors import NetxfwError
from .rules import REGISTRY

RULES_VERSION = 1
# rules.json's lists (the registry of rule kinds); an optional one is stored only when it has entries
RULE_LISTS = tuple(kind.key for kind in REGISTRY if not kind.optional)
OPTIONAL_LISTS = tuple(kind.key for kind in REGISTRY if kind.optional)
LOCK_POLL_SECONDS = 0.1
REQUESTS_KEPT = 8  # per kind, in <state_dir>/.requests.json
ROLLBACK_DIR = "rollback"
WINDOW_FILE = "pending"
JOURNAL_FILE = "journal.jsonl"
OWNER_ENV = "NETXFW_ROLLBACK_ID"

# lock files this thread holds: the lock is re-entrant within a thread (a rollback holds it
# across the engine calls that restore a snapshot), exclusive between threads and processes
_HELD = threading.local()


def _held():
    if not hasattr(_HELD, "paths"):
        _HELD.paths = set()
    return _HELD.paths


def _forget_held():
    _HELD.paths = set()


# a forked child does not hold its parent's locks (it must close the inherited descriptor)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_held)


def entry_key(entry):
    return json.dumps(entry, sort_keys=True)


class StateStore:
    CONFIG_FILE = "config.json"
    RULES_FILE = "rules.json"
    LOCK_FILE = ".lock"
    REQUESTS_FILE = ".requests.json"  # the request cache: the last requests applied per rule kind (below)

    def __init__(self, state_dir):
        self.state_dir = state_dir
        # whose writes these are: the id of the rollback window they belong to, if any
        self.actor = os.environ.get(OWNER_ENV) or None

    def path(self, name):
        return os.path.join(self.state_dir, name)

    @contextlib.contextmanager
    def lock(self, timeout=60, create=True):
        """Hold the exclusive run lock; NetxfwError if another run keeps it for `timeout` seconds.

        create=False (check mode) never creates state_dir or the lock file: without a
        state_dir there is no state to read consistently, so there is nothing to lock.
        """
        if not create and not os.path.exists(self.path(self.LOCK_FILE)):
            yield
            return
        self._make_dir()
        lock_path = self.path(self.LOCK_FILE)
        key = os.path.realpath(lock_path)
        if key in _held():
            yield
            return
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise NetxfwError("another netxfw run holds %s; wait for it to finish, or stop it "
                                          "if it hangs, then run again" % lock_path)
                    time.sleep(min(LOCK_POLL_SECONDS, remaining))
            _held().add(key)
            try:
                yield
            finally:
                _held().discard(key)
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    def read_config(self):
        return self.read_json(self.CONFIG_FILE, {})

    def write_config(self, config):
        self._journal_config(config)
        self.write_json(self.CONFIG_FILE, config)

    def remove_config(self):
        self._journal_config(None)
        self.remove(self.CONFIG_FILE)

    # ---------------------------------------------------------------- rollback window journal
    def open_window(self):
        """The open confirm-or-rollback window ({id, owner, ...}), or None."""
        try:
            with open(os.path.join(self.state_dir, ROLLBACK_DIR, WINDOW_FILE), encoding="utf-8") as stream:
                window = json.load(stream)
        except (OSError, ValueError):
            return None
        return window if isinstance(window, dict) else None

    def _foreign_window(self):
        window = self.open_window()
        if window is None or window.get("id") == self.actor:
            return None
        return window

    def _journal(self, window, record):
        record = dict(record, window=window.get("id"), actor=self.actor, time=time.time(), pid=os.getpid())
        path = os.path.join(self.state_dir, ROLLBACK_DIR, JOURNAL_FILE)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, (json.dumps(record, sort_keys=True) + "\n").encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)

    def _journal_config(self, config):
        window = self._foreign_window()
        if window is None:
            return
        before = self.read_json(self.CONFIG_FILE, {}) or None
        if before != config:
            self._journal(window, {"config": {"before": before, "after": config}})

    def _journal_rules(self, stored):
        window = self._foreign_window()
        if window is None:
            return
        before = self.read_json(self.RULES_FILE, {})
        diff = {}
        for name in RULE_LISTS + OPTIONAL_LISTS:
            old = dict((entry_key(e), e) for e in before.get(name) or [])
            new = dict((entry_key(e), e) for e in stored.get(name) or [])
            added = [new[k] for k in new if k not in old]
            removed = [old[k] for k in old if k not in new]
            if added or removed:
                diff[name] = {"added": added, "removed": removed}
        if diff:
            self._journal(window, {"rules": diff})

    @property
    def rules_path(self):
        return self.path(self.RULES_FILE)

    def read_rules(self):
        """{"version": 1, "generation": N, and each kind's list (RULE_LISTS, OPTIONAL_LISTS when stored)};
        no file = empty lists. `generation` counts writes; the maps record which one they hold."""
        stored = self.read_json(self.RULES_FILE, {"version": RULES_VERSION})
        if stored.get("version") != RULES_VERSION:
            raise NetxfwError("%s has version %r, this netxfw reads version %d; upgrade netxfw or restore the file"
                              % (self.path(self.RULES_FILE), stored.get("version"), RULES_VERSION))
        rules = {"version": RULES_VERSION, "generation": stored.get("generation", 0)}
        for name in RULE_LISTS:
            entries = stored.get(name, [])
            if not isinstance(entries, list):
                raise NetxfwError("%s: '%s' must be a list; fix or remove the file"
                                  % (self.path(self.RULES_FILE), name))
            rules[name] = entries
        for name in OPTIONAL_LISTS:  # stored only when there are some (files without them stay as they were)
            if isinstance(stored.get(name), list):
                rules[name] = stored[name]
        return rules

    def write_rules(self, rules):
        stored = {"version": RULES_VERSION, "generation": rules.get("generation", 0)}
        for name in RULE_LISTS:
            stored[name] = list(rules.get(name, []))
        for name in OPTIONAL_LISTS:
            if rules.get(name):
                stored[name] = list(rules[name])
        compact = sum(len(stored[name]) for name in RULE_LISTS) > COMPACT_ABOVE
        self._journal_rules(stored)
        self.write_json(self.RULES_FILE, stored, compact=compact)

    # ---------------------------------------------------------------- request cache (.requests.json)
    def _read_requests(self):
        """{kind: [{"request", "generation", "next_expiry"}]}; a cache, so an unreadable file is empty."""
        try:
            return self.read_json(self.REQUESTS_FILE, {})
        except (NetxfwError, OSError):  # unreadable (not root, say): as if empty
            return {}

    def recent_requests(self, kind):
        """The last requests of a kind (newest first) that each left rules.json as it was then."""
        recent = self._read_requests().get(kind)
        return [r for r in recent if isinstance(r, dict)] if isinstance(recent, list) else []

    def rules_file_identity(self):
        """What tells one rules.json file from another without reading it: device, inode, size,
        modification and change times (ns). Every write replaces the file (a new inode), an edit in
        place moves its change time (which no one can set back); None when there is no file."""
        try:
            st = os.stat(self.rules_path)
        except FileNotFoundError:
            return None
        return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]

    def _applied(self, kind, request, generation=None):
        """The records of `request` that still hold: made on the rules.json that is still there (the
        same file, and the same generation when `generation` is given) with no blacklist entry expired
        since (an expiry is a change). A record without the file's identity (an older netxfw's) holds
        on the generation alone."""
        now = time.time()
        identity = self.rules_file_identity()
        return [r for r in self.recent_requests(kind)
                if r.get("request") == request and r.get("rules_file", identity) == identity
                and (generation is None or r.get("generation") == generation)
                and (r.get("next_expiry") is None or r["next_expiry"] > now)]

    def request_applied(self, data, kind, request):
        """`request` was applied to the rules.json that is still there (same file, same generation)."""
        return bool(self._applied(kind, request, data.get("generation", 0)))

    def applied_generation(self, kind, request):
        """The generation of rules.json that `request` left and that is still there, known without
        reading rules.json (the file's identity in the record), else None."""
        for record in self._applied(kind, request):
            if "rules_file" in record and isinstance(record.get("generation"), int):
                return record["generation"]
        return None

    def record_request(self, kind, request, data, alias=None):
        """Remember the last few requests of a kind that left rules.json as it is now (a sweep between
        two runs of a playbook is one of them). `alias`: another digest of the same request (a src
        file's bytes, payload.file_digest), remembered alike."""
        if request is None:
            return
        expiries = [e["expires"] for e in data.get("blacklist", []) if e["expires"] is not None] \
            if kind == "blacklist" else []
        last = {"request": request, "generation": data.get("generation", 0),
                "next_expiry": min(expiries) if expiries else None, "rules_file": self.rules_file_identity()}
        self._remember(kind, [last] + ([dict(last, request=alias)] if alias else []))

    def record_alias(self, kind, request, alias):
        """Remember `alias` as naming what the still holding record of `request` names."""
        if alias is None:
            return
        held = self._applied(kind, request)
        if held:
            self._remember(kind, [dict(held[0], request=alias)])

    def _remember(self, kind, records):
        recent = self.recent_requests(kind)
        if recent[:len(records)] == records:
            return
        names = set(r["request"] for r in records)
        requests = self._read_requests()
        requests[kind] = (records + [r for r in recent if r.get("request") not in names])[:REQUESTS_KEPT]
        self.write_json(self.REQUESTS_FILE, requests)

    def _make_dir(self):
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)

    # ---------------------------------------------------------------- the JSON files it guards
    # `name` is relative to state_dir (it may name a file in a subdirectory, e.g. "rollback/pending").
    # Callers that keep files of their own there (the hot reload's journal, the rollback window)
    # read and write them with these, under the lock.

    def read_json(self, name, missing=None):
        """The JSON object in `name`, or `missing` when there is no such file."""
        file_path = self.path(name)
        try:
            with open(file_path, encoding="utf-8") as stream:
                data = json.load(stream)
        except FileNotFoundError:
            return missing
        except ValueError as e:  # includes UnicodeDecodeError
            raise NetxfwError("%s is not valid JSON (%s); fix it or restore it from a backup" % (file_path, e))
        if not isinstance(data, dict):
            raise NetxfwError("%s must hold a JSON object; fix it or restore it from a backup" % file_path)
        return data

    def write_json(self, name, data, compact=False):
        """Replace `name` atomically: a crash leaves either the old or the new file, never a mix."""
        file_path = self.path(name)
        directory = os.path.dirname(file_path)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd, temp_path = tempfile.mkstemp(prefix="." + os.path.basename(file_path) + ".", suffix=".tmp",
                                         dir=directory)  # mode 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as stream:
                if compact:
                    stream.write(compact_json(data))
                else:
                    json.dump(data, stream, indent=2, sort_keys=True)
                stream.write("\n")
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temp_path, file_path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp_path)
            raise
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def remove(self, name):
        """Remove `name` (nothing if it is not there)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(name))


# Above this many rule entries rules.json is written compact: json.dump(indent=2) runs the
# pure-Python encoder, ~10 s for a million blacklist entries; this one runs the C encoder.
COMPACT_ABOVE = 10000


class _CEncoder(json.JSONEncoder):
    def iterencode(self, o, _one_shot=False):
        return super(_CEncoder, self).iterencode(o, _one_shot=True)


_BLACKLIST_HEAD = '{"blacklist": []'  # of a document whose first key in sorted order is the blacklist, empty
_NEVER_EXPIRING = '", "expires": null}, {"cidr": "'  # between two blacklist entries' CIDRs


def compact_json(data):
    """json.dumps(data, sort_keys=True) by the C encoder; a blacklist of entries that are all {"cidr": CIDR,
    "expires": None} (a million) is joined as one string: the same text without encoding a dict per entry."""
    blacklist = data.get("blacklist")
    text = json.dumps(data if not blacklist else dict(data, blacklist=[]), sort_keys=True, cls=_CEncoder)
    if not blacklist:
        return text
    try:
        joined = _NEVER_EXPIRING.join(map(operator.itemgetter("cidr"), blacklist))  # a TypeError unless each is a str
        plain = (operator.countOf(map(type, blacklist), dict) == len(blacklist)
                 and operator.countOf(map(len, blacklist), 2) == len(blacklist)  # cidr and expires, nothing else
                 and operator.countOf(map(operator.itemgetter("expires"), blacklist), None) == len(blacklist))
    except (KeyError, TypeError):
        plain = False
    # JSON writes printable ASCII as it is but for '"' and '\\': the CIDRs hold none (the quotes are the joints')
    if not (plain and joined.isascii() and joined.isprintable() and "\\" not in joined
            and joined.count('"') == _NEVER_EXPIRING.count('"') * (len(blacklist) - 1) and text.startswith(_BLACKLIST_HEAD)):
        return json.dumps(data, sort_keys=True, cls=_CEncoder)
    return '{"blacklist": [{"cidr": "%s", "expires": null}]%s' % (joined, text[len(_BLACKLIST_HEAD):])
