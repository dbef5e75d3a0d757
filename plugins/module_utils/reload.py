# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-2.0-or-later
"""Lossless hot reload of the data plane (docs/internals.md, "Hot reload").

Steps (each one a pause point for the crash tests, see PAUSE_ENV):

  compiled       the new object is compiled, verified and loaded (nothing else changed yet)
  copied         every map's contents are copied from the pinned (old) maps into the new ones
  staged         the new programs and maps are pinned under <pin_path>_staging (same bpffs)
  swapped_first  the first interface runs the new programs (TC replaced in place, then XDP
                 swapped with XDP_FLAGS_REPLACE against the program seen when the reload began)
  swapped        every interface runs the new programs
  recopied       what the old program wrote in between is copied again (conntrack entries that
                 are newer in the old map, the ICMP bucket) and the old counters are added to the
                 new ones per CPU
  exchanged      <pin_path> and <pin_path>_staging are swapped with one renameat2(RENAME_EXCHANGE)
  (done)         the old pins (now under <pin_path>_staging) are removed: the old object is released

Failure safety: until `swapped_first` nothing the old program uses is touched: the old maps are
only ever read. A failure at or after the first interface swap rolls every swapped interface back to
the program it had, then removes the staging pins. A process killed at any step leaves every
interface running either the old or the new program, each with complete maps; the next engine run
(`recover_pending`) either discards the staging pins (no interface runs them) or completes the
reload (some interface runs them).

Its collaborators come as arguments: the StateStore (rules.json, config.json, the reload journal)
and the pin path. The program's build and attach are program.py's, the rule maps' fill is
rulemaps.py's. Imports nothing from ansible and nothing from engine (engine imports this module).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import ctypes
import errno
import os
import struct
import time

from . import bpfsys, layout, program, program_settings, rulemaps, rules, sources
from .errors import NetxfwError

# Test-only hook (never set it in production; program.SOURCE_ENV is the other one):
#   NETXFW_RELOAD_PAUSE_AT=<step>[,<step>...]  at that step, create <state_dir>/.reload-pause (holding the step
#                              name and pid) and wait until that file is removed (at most
#                              PAUSE_LIMIT_S seconds), so a test can SIGKILL the run there.
PAUSE_ENV = "NETXFW_RELOAD_PAUSE_AT"
PAUSE_FILE = ".reload-pause"
PAUSE_LIMIT_S = 300
JOURNAL_FILE = ".reload.json"
STAGING_SUFFIX = "_staging"  # bpffs refuses names with a dot

STEPS = ("compiled", "copied", "staged", "swapped_first", "swapped", "recopied", "exchanged")

AT_FDCWD = -100
RENAME_EXCHANGE = 1 << 1

# Maps refilled from rules.json when their pinned contents cannot be trusted or copied.
RULE_MAPS = sources.SRC_MAPS + ("rules4", "rules6", "rl4_cfg", "rl6_cfg")
# Where the auto-bans (runtime state, not in rules.json) live: this layout's maps, and those of
# layout 1 (bl4_host/bl6_host, value bit 63 = ban, the other bits its expiry) they move from.
BAN_SOURCES = (("src4_host", "src4_host", layout.SRC_EXPIRY_MASK), ("src6_host", "src6_host", layout.SRC_EXPIRY_MASK),
               ("bl4_host", "src4_host", (1 << 63) - 1), ("bl6_host", "src6_host", (1 << 63) - 1))
NOT_COPIED = {"meta": "holds the identity of the program it belongs to; written fresh",
              "drops": "ring buffer of sampled drop events: unread events of the old program are not carried"}


def _rl_state_v4(value):
    """Layouts 1-3 -> 4: struct rl_state gained the ban bucket; zeros read as a full one (its clock at 0)."""
    return value + bytes(16)


# (map name, old value size, new value size) -> function(old value bytes) -> new value bytes.
# Used when a layout version changes a value format; a map whose key or value format changed and
# that has no converter here is skipped (rule maps are then refilled from rules.json).
CONVERTERS = {("rl4_state", 24, 40): _rl_state_v4, ("rl6_state", 24, 40): _rl_state_v4}

QUIESCE_POLL_S = 0.005
QUIESCE_MAX_POLLS = 40


def staging_path(pin_path):
    return pin_path.rstrip("/") + STAGING_SUFFIX


def _ms(seconds):
    return round(seconds * 1000.0, 3)


def pause_point(store, step):
    """Test hook: wait at `step` while <state_dir>/.reload-pause exists (see PAUSE_ENV)."""
    if step not in os.environ.get(PAUSE_ENV, "").split(","):
        return
    path = store.path(PAUSE_FILE)
    with open(path, "w") as stream:
        stream.write("%s %d\n" % (step, os.getpid()))
    deadline = time.monotonic() + PAUSE_LIMIT_S
    while os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)


def _rename_exchange(a, b):
    libc = ctypes.CDLL(None, use_errno=True)
    fn = libc.renameat2
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    if fn(AT_FDCWD, a.encode(), AT_FDCWD, b.encode(), RENAME_EXCHANGE) != 0:
        err = ctypes.get_errno()
        raise NetxfwError("exchanging %s and %s failed: %s" % (a, b, os.strerror(err)))


def _remove_pin_dir(path):
    if not os.path.isdir(path):
        return
    for name in os.listdir(path):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(path, name))
    with contextlib.suppress(OSError):
        os.rmdir(path)


# ------------------------------------------------------------------ pinned sets

class PinSet:
    """The maps and programs pinned in one directory, opened by fd (read-only use for the old set)."""

    def __init__(self, path):
        self.path = path
        self.maps = {}
        self.progs = {}
        self.prog_ids = {}
        if not os.path.isdir(path):
            return
        try:
            for name in sorted(os.listdir(path)):
                full = os.path.join(path, name)
                if name in layout.PROGRAMS:
                    fd = bpfsys.obj_get(full)
                    if fd is not None:
                        self.progs[name] = fd
                        self.prog_ids[name] = bpfsys.prog_info(fd)["id"]
                elif not name.startswith("."):
                    fd = bpfsys.obj_get(full)
                    if fd is not None:
                        try:
                            self.maps[name] = bpfsys.Map(fd, name)
                        except NetxfwError:  # a pinned program or link under an unexpected name
                            os.close(fd)
        except BaseException:
            self.close()
            raise

    @property
    def loaded(self):
        """A program set worth migrating from: both programs and the meta map are pinned."""
        return set(layout.PROGRAMS) <= set(self.progs) and "meta" in self.maps

    def identity(self):
        raw = self.maps["meta"].lookup(layout.encode_u32(0)) if "meta" in self.maps else None
        return layout.decode_meta(raw) if raw else (None, None)

    def close(self):
        for m in self.maps.values():
            m.close()
        for fd in self.progs.values():
            os.close(fd)
        self.maps, self.progs = {}, {}


def _config_value(maps, index, default=0):
    if "config" not in maps:
        return default
    raw = maps["config"].lookup(layout.encode_u32(index))
    return layout.decode_u64(raw) if raw else default


def _live_filter(name, old_maps, now_ns):
    """A predicate value -> live? for maps whose entries expire; None when every entry is live."""
    if name in sources.HOST_MAPS:  # an expired auto-ban is not carried (an expired listed entry is)
        return lambda value: not sources.expired_ban(value, now_ns)
    if name in ("ct", "ct_syn"):
        # each conntrack state has its own timeout (layout.CT_STATE_TIMEOUT); an old program without
        # states wrote flags 0, which reads as established with CFG_CT_TIMEOUT_NS
        timeouts = layout.ct_timeouts_ns(lambda index: _config_value(old_maps, index))
        if timeouts[0]:
            return lambda value: layout.ct_live(value, timeouts, now_ns)
    return None


def _compatible(old, new):
    return (old.type, old.key_size, old.value_size) == (new.type, new.key_size, new.value_size)


def _rules_in_step(old_maps, data):
    return "config" in old_maps and not rulemaps.generation_stale(old_maps, data)


def check_capacities(store, old, capacities):
    """Fail before anything changes when a map would get fewer slots than the live entries it holds.

    Only maps whose size shrinks are counted. Returns {map: live entries} of the counted maps."""
    counted = {}
    now = time.monotonic_ns()
    problems = []
    for name, m in old.maps.items():
        if name not in layout.MAPS:
            continue
        wanted = layout.expected_map(name, capacities)[3]
        if wanted >= m.max_entries or m.type in (bpfsys.BPF_MAP_TYPE_ARRAY, bpfsys.BPF_MAP_TYPE_PERCPU_ARRAY):
            continue
        live = _live_filter(name, old.maps, now)
        count = sum(1 for _k, v in m.items() if live is None or live(v))
        counted[name] = count
        if count > wanted:
            problems.append("map %s holds %d live entries but would get room for %d" % (name, count, wanted))
    # whitelist and blacklist share the src maps (sized by a sum): their capacities are per list, family and
    # exact address / prefix (rulemaps.check_capacity), so a shrink is checked against rules.json
    data = store.read_rules()
    data = dict(data, blacklist=[e for e in data.get("blacklist", []) if not rules.is_expired(e)])
    stored = program_settings.stored_capacities(store.read_config())
    for kind in rules.SRC_ONLY_KINDS:
        if kind not in capacities or capacities[kind] >= stored.get(kind, capacities[kind]):
            continue
        for (family, where), count in sorted(sources.counts(data, kind).items()):
            if count > capacities[kind]:
                problems.append("the %s holds %d %s entries (IPv%d) but capacity.%s would be %d" % (
                    kind, count, "exact-address" if where == "host" else "prefix", family, kind, capacities[kind]))
    if problems:
        raise NetxfwError("cannot shrink below the current number of entries (nothing was changed): %s; raise the "
                          "capacity or remove entries first" % "; ".join(problems))
    return counted


# ------------------------------------------------------------------ migration

def first_copy(store, old, new_maps, settings, identity, report):
    """Fill the new maps: copy from the old ones, refill rule maps from rules.json when needed."""
    data = store.read_rules()
    refill = not old.loaded or not _rules_in_step(old.maps, data) or \
        any(name not in old.maps for name in RULE_MAPS)  # another layout: rebuilt from rules.json
    now = time.monotonic_ns()
    for name in sorted(old.maps):
        if name not in new_maps:
            report["skipped"].append({"map": name, "entries": None, "reason": "not a map of the new program"})
    for name in sorted(new_maps):
        new = new_maps[name]
        start = time.monotonic()
        old_map = old.maps.get(name)
        entry = {"entries": 0, "source": "copy", "duration_ms": 0.0}
        if name in NOT_COPIED:
            entry["source"] = "new"
        elif name == "counters" or new.type == bpfsys.BPF_MAP_TYPE_PERCPU_ARRAY:
            entry["source"] = "per-cpu sum at the swap"  # added in recopy(), when the old program stopped
        elif name in RULE_MAPS and refill:
            entry["source"] = "rules.json"  # filled below, all rule maps together
        elif name == sources.FILTER_MAP and (old_map is None or old_map.max_entries != new.max_entries):
            entry["source"] = "rebuilt"  # below, from the new host maps (another size hashes otherwise)
        elif old_map is None:
            entry["source"] = "new"  # not in the old program (or nothing was loaded): starts empty
        else:
            convert = None
            if not _compatible(old_map, new):
                convert = CONVERTERS.get((name, old_map.value_size, new.value_size))
                if convert is None or (old_map.type, old_map.key_size) != (new.type, new.key_size):
                    entries = len(old_map.keys())
                    report["skipped"].append({"map": name, "entries": entries, "reason": (
                        "format changed (type/key/value %d/%d/%d -> %d/%d/%d) and no converter"
                        % (old_map.type, old_map.key_size, old_map.value_size, new.type, new.key_size, new.value_size))})
                    if name in RULE_MAPS:
                        refill = True
                        entry["source"] = "rules.json"
                    report["migrated"][name] = entry
                    continue
                entry["source"] = "converted"
            live = _live_filter(name, old.maps, now)
            pairs, expired = [], 0
            for key, value in old_map.items():
                if live is not None and not live(value):
                    expired += 1
                    continue
                pairs.append((key, convert(value) if convert else value))
            new.update_many(pairs)
            entry["entries"] = len(pairs)
            if expired:
                report["skipped"].append({"map": name, "entries": expired, "reason": "expired"})
        entry["duration_ms"] = _ms(time.monotonic() - start)
        report["migrated"][name] = entry
    if refill:
        start = time.monotonic()
        rulemaps.sync_all(new_maps, data, settings["capacity"])  # checks capacity before writing
        copy_bans(old.maps, new_maps, now)  # auto-bans are not in rules.json: carry them over
        per_map = _ms(time.monotonic() - start)
        for name in RULE_MAPS:
            if name in new_maps:
                report["migrated"][name] = {"entries": len(new_maps[name].keys()), "source": "rules.json",
                                            "duration_ms": per_map}
    if report["migrated"].get(sources.FILTER_MAP, {}).get("source") == "rebuilt":
        start = time.monotonic()
        sources.rebuild_filter(new_maps)
        report["migrated"][sources.FILTER_MAP]["duration_ms"] = _ms(time.monotonic() - start)
    program_settings.write_runtime_config(new_maps, settings)
    if refill:
        rulemaps.mark_generation(new_maps, data)
    new_maps["meta"].update(layout.encode_u32(0), layout.encode_meta(identity))
    report["rules_source"] = "rules.json" if refill else "maps"


def copy_bans(old_maps, new_maps, now_ns):
    """Copy the live auto-bans the new maps lack; returns the count. A ban gives way where the
    address's class decides it anyway (sources.ban_over): whitelisted, or blacklisted at least as
    long, since an exact entry shadows the prefixes covering it."""
    copied = 0
    for old_name, name, expiry_mask in BAN_SOURCES:
        if old_name not in old_maps or name not in new_maps:
            continue
        for key, value in old_maps[old_name].items():
            bits = layout.decode_u64(value)
            expires = bits & expiry_mask
            if not bits >> 63 or 0 < expires <= now_ns:
                continue
            current = new_maps[name].lookup(key)
            cls = layout.decode_u64(current) if current is not None else sources.covering_class(new_maps, name, key)
            if current is not None and cls & layout.SRC_BAN:
                continue
            ban = sources.ban_over(expires, cls)
            if ban is not None:
                sources.mark_listed(new_maps, [key])
                new_maps[name].update(key, ban)
                copied += 1
    return copied


def _read_u64_sums(m):
    return [m.lookup(key) for key in m.keys()] if m is not None else []


def quiesce(old):
    """Wait (bounded) until the old program stopped counting: in-flight runs finish within an RCU grace."""
    counters = old.maps.get("counters")
    if counters is None:
        return 0
    last = _read_u64_sums(counters)
    for polls in range(1, QUIESCE_MAX_POLLS + 1):
        time.sleep(QUIESCE_POLL_S)
        now = _read_u64_sums(counters)
        if now == last:
            return polls
        last = now
    return QUIESCE_MAX_POLLS


def _add_u64s(a, b):
    n = len(a) // 8
    return struct.pack("=%dQ" % n, *[(x + y) & 0xFFFFFFFFFFFFFFFF
                                     for x, y in zip(struct.unpack("=%dQ" % n, a), struct.unpack("=%dQ" % n, b))])


def recopy(old, new_maps, report, fold_counters=True):
    """After the swap: copy what the old program wrote since the first copy, add the counters."""
    start = time.monotonic()
    # conntrack (every LRU map: ct, ct_syn, ...; values start with u64 last_seen_ns): entries the old
    # program created or refreshed in between (the newer last_seen wins)
    for name in sorted(new_maps):
        if new_maps[name].type != bpfsys.BPF_MAP_TYPE_LRU_HASH or name not in old.maps \
                or not _compatible(old.maps[name], new_maps[name]):
            continue
        current = dict(new_maps[name].items())
        now = time.monotonic_ns()
        live = _live_filter(name, old.maps, now)
        # rl*_state: struct rl_state {credit_ns; last_ns; dropped}: last_ns is the stamp
        offset = 8 if name in ("rl4_state", "rl6_state") else 0
        writes = [(k, v) for k, v in old.maps[name].items()
                  if (live is None or live(v))
                  and (k not in current or struct.unpack_from("=Q", v, offset)[0]
                       > struct.unpack_from("=Q", current[k], offset)[0])]
        new_maps[name].update_many(writes)
        report["migrated"].setdefault(name, {"entries": 0}).update(recopied=len(writes))
    # auto-bans the old program made since the first copy
    bans = copy_bans(old.maps, new_maps, time.monotonic_ns())
    if bans:
        report["migrated"].setdefault("bl_bans", {"entries": 0}).update(recopied=bans)
    # ICMP and global rate-limit buckets: the newer state wins (last_ns is the third u64 after the lock word)
    for bucket in ("icmp_bucket", "rl_global"):
        if bucket not in old.maps or bucket not in new_maps or \
                not _compatible(old.maps[bucket], new_maps[bucket]):
            continue
        key = layout.encode_u32(0)
        ov, nv = old.maps[bucket].lookup(key), new_maps[bucket].lookup(key)
        if ov and nv and struct.unpack_from("=Q", ov, 16)[0] > struct.unpack_from("=Q", nv, 16)[0]:
            new_maps[bucket].update(key, ov)
            report["migrated"].setdefault(bucket, {"entries": 1}).update(recopied=1)
    # counters: new (since the swap) + old (everything before it), per CPU, so they continue
    if fold_counters and "counters" in old.maps and "counters" in new_maps and \
            _compatible(old.maps["counters"], new_maps["counters"]):
        folded = 0
        for key, old_value in old.maps["counters"].items():
            new_value = new_maps["counters"].lookup(key)
            if new_value is not None:
                new_maps["counters"].update(key, _add_u64s(new_value, old_value))
                folded += 1
        report["migrated"]["counters"] = dict(report["migrated"].get("counters", {}), entries=folded,
                                              source="per-cpu sum at the swap")
    report["migrated"].setdefault("counters", {})["duration_ms"] = _ms(time.monotonic() - start)


def sync_rule_maps(old, new_maps):
    """Make the new rule maps and config hold exactly what the old ones hold (completing a reload)."""
    for name in RULE_MAPS + ("config",):
        if name in old.maps and name in new_maps and _compatible(old.maps[name], new_maps[name]):
            want = dict(old.maps[name].items())
            if name in sources.HOST_MAPS:
                sources.mark_listed(new_maps, want)
            if new_maps[name].type != bpfsys.BPF_MAP_TYPE_ARRAY:
                new_maps[name].delete_many([k for k in new_maps[name].keys() if k not in want])
            new_maps[name].update_many(want.items())


# ------------------------------------------------------------------ interfaces

class Swap:
    """One interface: what ran there when the reload began, how it was swapped, how to undo it."""

    def __init__(self, name):
        self.name = name
        self.index = program.ifindex(name)
        xdp = bpfsys.xdp_query(self.index)
        self.mode = xdp["mode"]
        self.xdp_id = xdp["prog_id"] or 0
        self.tc_id = bpfsys.tc_egress_query(self.index, program.TC_HANDLE, program.TC_PRIO) or 0
        self.xdp_fd = bpfsys.prog_fd_by_id(self.xdp_id) if self.xdp_id else None  # held: the old one cannot vanish
        self.tc_fd = bpfsys.prog_fd_by_id(self.tc_id) if self.tc_id else None
        self.tc_done = self.xdp_done = None  # None, or how it was done: "replace"/"attach"/"reattach:<mode>"

    def swap(self, wanted_mode, xdp_fd, tc_fd):
        # TC first: new flows are then recorded in the new conntrack map a moment before the new XDP
        # program starts reading it (the reverse order leaves them in the old map until recopy()).
        bpfsys.tc_egress_attach(self.index, tc_fd, program.TC_HANDLE, program.TC_PRIO)  # replaces in place
        self.tc_done = "replace" if self.tc_id else "attach"
        if self.xdp_id and self.mode in ("native", "generic") and wanted_mode in ("auto", self.mode):
            try:
                bpfsys.xdp_replace(self.index, xdp_fd, self.xdp_fd, program.mode_flags(self.mode))
            except bpfsys.BpfCallError as exc:
                if exc.errno == errno.EEXIST:
                    raise NetxfwError("the XDP program on %s changed while the reload ran (expected program id %d); "
                                      "nothing was replaced there" % (self.name, self.xdp_id))
                raise
            self.xdp_done = "replace"
            return
        if not self.xdp_id:
            error = None
            for mode in (["native", "generic"] if wanted_mode == "auto" else [wanted_mode]):
                try:
                    bpfsys.xdp_attach(self.index, xdp_fd, program.mode_flags(mode) | bpfsys.XDP_FLAGS_UPDATE_IF_NOEXIST)
                    self.xdp_done = "attach:" + mode
                    return
                except NetxfwError as exc:
                    error = exc
            raise NetxfwError("cannot attach XDP to %s in %s mode: %s" % (self.name, wanted_mode, error))
        # The user asked for another XDP mode: the kernel holds one mode at a time, so this is a detach and an
        # attach (not atomic); program.attach does it.
        program.attach(self.name, wanted_mode, xdp_fd, tc_fd)
        self.xdp_done = "reattach"

    def rollback(self, xdp_fd):
        """Put back what ran here when the reload began (best effort, every step tried)."""
        errors = []
        try:
            if self.xdp_done == "replace":
                bpfsys.xdp_replace(self.index, self.xdp_fd, xdp_fd, program.mode_flags(self.mode))
            elif self.xdp_done and self.xdp_done.startswith("attach:"):
                bpfsys.xdp_detach(self.index, program.mode_flags(self.xdp_done.split(":", 1)[1]))
            elif self.xdp_done == "reattach":
                current = bpfsys.xdp_query(self.index)["mode"]
                if current:
                    bpfsys.xdp_detach(self.index, program.mode_flags(current))
                if self.xdp_fd is not None:
                    bpfsys.xdp_attach(self.index, self.xdp_fd, program.mode_flags(self.mode))
        except NetxfwError as exc:
            errors.append(str(exc))
        try:
            if self.tc_done and self.tc_fd is not None:
                bpfsys.tc_egress_attach(self.index, self.tc_fd, program.TC_HANDLE, program.TC_PRIO)
            elif self.tc_done:
                bpfsys.tc_egress_detach(self.index, program.TC_HANDLE, program.TC_PRIO)
        except NetxfwError as exc:
            errors.append(str(exc))
        self.xdp_done = self.tc_done = None
        return errors

    def close(self):
        for fd in (self.xdp_fd, self.tc_fd):
            if fd is not None:
                os.close(fd)
        self.xdp_fd = self.tc_fd = None


def _pin_set(path, maps, progs):
    _remove_pin_dir(path)
    os.mkdir(path, 0o700)
    for name, m in maps.items():
        bpfsys.obj_pin(m.fd, os.path.join(path, name))
    for name, fd in progs.items():
        bpfsys.obj_pin(fd, os.path.join(path, name))


# ------------------------------------------------------------------ the reload

def _new_report():
    return {"migrated": {}, "skipped": [], "steps_ms": {}, "duration_ms": 0.0, "interfaces": []}


def reload(store, pin_path, settings, identity, stale):
    """Replace the loaded data plane by a freshly compiled one without losing state (caller holds the lock).

    Also the first load: with nothing pinned, the new maps are filled from rules.json."""
    report = _new_report()
    t0 = time.monotonic()
    mark = [t0]

    def step(name):
        now = time.monotonic()
        report["steps_ms"][name] = _ms(now - mark[0])
        mark[0] = now
        pause_point(store, name)

    recovered = recover_pending(store, pin_path)
    if recovered:
        report["recovered"] = recovered
    staging = staging_path(pin_path)
    old = PinSet(pin_path)
    swaps = []
    bpf = None
    try:
        if old.loaded:
            report["counted"] = check_capacities(store, old, settings["capacity"])
        report["from_identity"] = old.identity()[1] if old.loaded else None
        # What runs on each interface now: REPLACE swaps against exactly that.
        swaps = [Swap(name) for name in settings["interfaces"]]
        bpf, xdp_fd, tc_fd = program.compile_program(pin_path, settings["capacity"])
        step("compiled")
        new_maps = dict((name, bpfsys.Map(bpf[name.encode()].map_fd, name)) for name in layout.MAPS)
        first_copy(store, old, new_maps, settings, identity, report)
        step("copied")
        _pin_set(staging, new_maps, {"prog_xdp": xdp_fd, "prog_tc": tc_fd})
        step("staged")
        try:
            for n, swap in enumerate(swaps):
                swap.swap(settings["xdp_mode"], xdp_fd, tc_fd)
                report["interfaces"].append(swap.name)
                if n == 0:
                    step("swapped_first")
            step("swapped")
            report["quiesce_polls"] = quiesce(old)
            recopy(old, new_maps, report)
            store.write_json(JOURNAL_FILE, {"staging_prog_xdp": bpfsys.prog_info(xdp_fd)["id"], "folded": True})
            step("recopied")
            # Interfaces no longer wanted go before the pins move: after the exchange, no interface may run
            # the set under the staging dir (recover_pending tells the two cases apart by that).
            for name in stale:
                program.detach(name)
        except BaseException as exc:
            errors = []
            for swap in reversed(swaps):
                errors.extend(swap.rollback(xdp_fd))
            _remove_pin_dir(staging)
            store.remove(JOURNAL_FILE)
            if isinstance(exc, NetxfwError):
                raise NetxfwError("hot reload failed, %s rolled back to the running program: %s%s" % (
                    ", ".join(s.name for s in swaps) or "nothing to", exc,
                    ("; rollback errors: " + "; ".join(errors)) if errors else ""))
            raise
        if not os.path.isdir(pin_path):
            os.mkdir(pin_path, 0o700)
        _rename_exchange(staging, pin_path)
        step("exchanged")
    except BaseException:
        if not os.path.isdir(staging) or not program.interfaces_running(program.pinned_prog_ids(staging).values()):
            _remove_pin_dir(staging)
        raise
    finally:
        for swap in swaps:
            swap.close()
        old.close()
        if bpf is not None:
            bpf.cleanup()
    _remove_pin_dir(staging)  # the old pins: the old object goes with its last reference
    store.remove(JOURNAL_FILE)
    report["steps_ms"]["released"] = _ms(time.monotonic() - mark[0])
    report["duration_ms"] = _ms(time.monotonic() - t0)
    report["identity"] = identity
    return report


def recover_pending(store, pin_path, check_mode=False):
    """Finish what a killed reload left (caller holds the lock). Returns a description, or None.

    No interface runs the staged programs -> they were never swapped in, or the pins were already
    exchanged (the staging dir then holds the old set): remove the staging pins. Some interface runs
    them -> the swap was under way: bring the staged maps in step with the pinned ones, swap the
    remaining interfaces, copy again, exchange the pins."""
    staging = staging_path(pin_path)
    if not os.path.isdir(staging):
        return None
    new = PinSet(staging)
    old = PinSet(pin_path)
    swaps = []
    try:
        running_new = program.interfaces_running(list(new.prog_ids.values())) if new.loaded else []
        if not running_new:
            if check_mode:
                return "remove the staging pins of an interrupted reload (%s)" % staging
            new.close()
            _remove_pin_dir(staging)
            store.remove(JOURNAL_FILE)
            return "removed the staging pins of an interrupted reload"
        if check_mode:
            return "complete an interrupted reload (%s runs the new program)" % ", ".join(running_new)
        report = _new_report()
        journal = store.read_json(JOURNAL_FILE, {})
        folded = journal.get("folded") and journal.get("staging_prog_xdp") == new.prog_ids.get("prog_xdp")
        if old.loaded:
            sync_rule_maps(old, new.maps)  # rule edits made on the old maps since the crash
            swaps = [Swap(name) for name in program.interfaces_running(list(old.prog_ids.values()))]
        for swap in swaps:
            swap.swap("auto", new.progs["prog_xdp"], new.progs["prog_tc"])
        if old.loaded:
            quiesce(old)
            recopy(old, new.maps, report, fold_counters=not folded)
        if not os.path.isdir(pin_path):
            os.mkdir(pin_path, 0o700)
        _rename_exchange(staging, pin_path)
        new.close()
        old.close()
        _remove_pin_dir(staging)
        store.remove(JOURNAL_FILE)
        return "completed an interrupted reload (%s)" % ", ".join(running_new + [s.name for s in swaps])
    finally:
        for swap in swaps:
            swap.close()
        new.close()
        old.close()


# ------------------------------------------------------------------ netxfw_reload

def entry_counts(old):
    """{map: entries} of a pinned set (array maps: their size), what a reload would copy (check mode)."""
    counts = {}
    for name, m in old.maps.items():
        if name in NOT_COPIED:
            continue
        if m.type in (bpfsys.BPF_MAP_TYPE_ARRAY, bpfsys.BPF_MAP_TYPE_PERCPU_ARRAY):
            counts[name] = m.max_entries
        else:
            counts[name] = len(m.items()) if m.type in (bpfsys.BPF_MAP_TYPE_HASH, bpfsys.BPF_MAP_TYPE_LRU_HASH) \
                else len(m.keys())
    return counts
