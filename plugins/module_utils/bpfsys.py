# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-2.0-or-later
"""Thin ctypes binding to libbpf: pins, map operations, XDP attach, test runs.

Rule edits only need this module, not BCC, so they work from any interpreter
and never recompile anything.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import array
import ctypes
import ctypes.util
import errno
import operator
import os
import struct

from .errors import NetxfwError

BPF_ANY = 0
BPF_NOEXIST = 1

BPF_MAP_TYPE_HASH = 1
BPF_MAP_TYPE_ARRAY = 2
BPF_MAP_TYPE_PERCPU_ARRAY = 6
BPF_MAP_TYPE_LPM_TRIE = 11
BPF_MAP_TYPE_LRU_HASH = 9
BPF_MAP_TYPE_RINGBUF = 27

XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
XDP_FLAGS_REPLACE = 1 << 4

BPF_TC_EGRESS = 1 << 1
BPF_TC_F_REPLACE = 1 << 0

XDP_ATTACHED_NONE = 0
XDP_ATTACHED_DRV = 1
XDP_ATTACHED_SKB = 2

BATCH_CHUNK = 65536


class _MapBatchOpts(ctypes.Structure):
    _fields_ = [("sz", ctypes.c_size_t), ("elem_flags", ctypes.c_uint64), ("flags", ctypes.c_uint64)]


class _TestRunOpts(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("data_in", ctypes.c_void_p),
        ("data_out", ctypes.c_void_p),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_void_p),
        ("ctx_out", ctypes.c_void_p),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("repeat", ctypes.c_int),
        ("duration", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
    ]


class _XdpQueryOpts(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("prog_id", ctypes.c_uint32),
        ("drv_prog_id", ctypes.c_uint32),
        ("hw_prog_id", ctypes.c_uint32),
        ("skb_prog_id", ctypes.c_uint32),
        ("attach_mode", ctypes.c_uint8),
    ]


class _TcHook(ctypes.Structure):
    _fields_ = [("sz", ctypes.c_size_t), ("ifindex", ctypes.c_int), ("attach_point", ctypes.c_int),
                ("parent", ctypes.c_uint32)]


class _TcOpts(ctypes.Structure):
    _fields_ = [("sz", ctypes.c_size_t), ("prog_fd", ctypes.c_int), ("flags", ctypes.c_uint32),
                ("prog_id", ctypes.c_uint32), ("handle", ctypes.c_uint32), ("priority", ctypes.c_uint32)]


class _MapInfo(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("name", ctypes.c_char * 16),
    ]


class _ProgInfo(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("tag", ctypes.c_uint8 * 8),
        ("jited_prog_len", ctypes.c_uint32),
        ("xlated_prog_len", ctypes.c_uint32),
        ("jited_prog_insns", ctypes.c_uint64),
        ("xlated_prog_insns", ctypes.c_uint64),
        ("load_time", ctypes.c_uint64),
        ("created_by_uid", ctypes.c_uint32),
        ("nr_map_ids", ctypes.c_uint32),
        ("map_ids", ctypes.c_uint64),
        ("name", ctypes.c_char * 16),
    ]


_LIB = None
# int (*ring_buffer_sample_fn)(void *ctx, void *data, size_t size)
_RING_SAMPLE_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)


def _lib():
    global _LIB
    if _LIB is None:
        name = ctypes.util.find_library("bpf") or "libbpf.so.1"
        try:
            lib = ctypes.CDLL(name, use_errno=True)
        except OSError as exc:
            raise NetxfwError(
                "cannot load libbpf (%s): install the distribution's libbpf package "
                "(Debian/Ubuntu: libbpf1, RHEL/Fedora: libbpf)" % exc
            )
        vp, i, u32 = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32
        sigs = {
            "bpf_obj_get": ([ctypes.c_char_p], i),
            "bpf_obj_pin": ([i, ctypes.c_char_p], i),
            "bpf_obj_get_info_by_fd": ([i, vp, ctypes.POINTER(u32)], i),
            "bpf_map_lookup_elem": ([i, vp, vp], i),
            "bpf_map_update_elem": ([i, vp, vp, ctypes.c_uint64], i),
            "bpf_map_delete_elem": ([i, vp], i),
            "bpf_map_get_next_key": ([i, vp, vp], i),
            "bpf_map_update_batch": ([i, vp, vp, ctypes.POINTER(u32), vp], i),
            "bpf_map_delete_batch": ([i, vp, ctypes.POINTER(u32), vp], i),
            "bpf_map_lookup_batch": ([i, vp, vp, vp, vp, ctypes.POINTER(u32), vp], i),
            "bpf_prog_test_run_opts": ([i, vp], i),
            "bpf_prog_get_fd_by_id": ([u32], i),
            "bpf_xdp_attach": ([i, i, u32, vp], i),
            "bpf_xdp_detach": ([i, u32, vp], i),
            "bpf_xdp_query": ([i, i, vp], i),
            "libbpf_num_possible_cpus": ([], i),
            "bpf_tc_hook_create": ([vp], i),
            "bpf_tc_attach": ([vp, vp], i),
            "bpf_tc_detach": ([vp, vp], i),
            "bpf_tc_query": ([vp, vp], i),
            "ring_buffer__new": ([i, _RING_SAMPLE_FN, vp, vp], vp),
            "ring_buffer__consume": ([vp], i),
            "ring_buffer__poll": ([vp, i], i),
            "ring_buffer__free": ([vp], None),
        }
        for fname, (argtypes, restype) in sigs.items():
            fn = getattr(lib, fname)
            fn.argtypes = argtypes
            fn.restype = restype
        # Errors reach the caller as exceptions; libbpf's own stderr chatter would only repeat them.
        lib.libbpf_set_print.argtypes = [vp]
        lib.libbpf_set_print(None)
        _LIB = lib
    return _LIB


def _check(ret, what):
    """libbpf 1.x returns -errno and also sets errno."""
    if ret < 0:
        err = -ret if ret != -1 else (ctypes.get_errno() or errno.EIO)
        raise BpfCallError(err, what)
    return ret


class BpfCallError(NetxfwError):
    def __init__(self, err, what):
        self.errno = err
        hint = ""
        if err == errno.EPERM:
            hint = " (netxfw must run as root: it needs CAP_BPF and CAP_NET_ADMIN)"
        elif err == errno.E2BIG or err == errno.ENOSPC:
            hint = " (the map is full: raise its capacity)"
        super(BpfCallError, self).__init__("%s failed: %s%s" % (what, os.strerror(err), hint))


def num_possible_cpus():
    return _check(_lib().libbpf_num_possible_cpus(), "libbpf_num_possible_cpus")


def obj_get(path):
    """Open a pinned object; None when the pin does not exist."""
    ret = _lib().bpf_obj_get(path.encode())
    if ret < 0:
        err = -ret if ret != -1 else ctypes.get_errno()
        if err == errno.ENOENT:
            return None
        raise BpfCallError(err, "opening pin %s" % path)
    return ret


def obj_pin(fd, path):
    _check(_lib().bpf_obj_pin(fd, path.encode()), "pinning %s" % path)


def _info(fd, struct):
    info = struct()
    size = ctypes.c_uint32(ctypes.sizeof(info))
    _check(_lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)), "bpf_obj_get_info_by_fd")
    return info


def map_info(fd):
    info = _info(fd, _MapInfo)
    return {
        "type": info.type,
        "id": info.id,
        "key_size": info.key_size,
        "value_size": info.value_size,
        "max_entries": info.max_entries,
        "map_flags": info.map_flags,
        "name": info.name.decode(errors="replace"),
    }


def prog_info(fd):
    info = _info(fd, _ProgInfo)
    return {"type": info.type, "id": info.id, "tag": bytes(info.tag).hex(), "name": info.name.decode(errors="replace")}


def prog_fd_by_id(prog_id):
    return _check(_lib().bpf_prog_get_fd_by_id(prog_id), "bpf_prog_get_fd_by_id(%d)" % prog_id)


class Map:
    """A BPF map by fd. Keys and values are bytes; per-CPU values are the
    concatenation of one 8-byte-aligned slot per possible CPU."""

    def __init__(self, fd, name=None):
        self.fd = fd
        info = map_info(fd)
        self.name = name or info["name"]
        self.type = info["type"]
        self.key_size = info["key_size"]
        self.max_entries = info["max_entries"]
        self.value_size = info["value_size"]
        if self.type == BPF_MAP_TYPE_PERCPU_ARRAY:
            self.value_size = ((info["value_size"] + 7) // 8 * 8) * num_possible_cpus()
        self._batch_ok = True

    @classmethod
    def open_pinned(cls, path):
        fd = obj_get(path)
        if fd is None:
            return None
        return cls(fd, os.path.basename(path))

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def lookup(self, key):
        value = ctypes.create_string_buffer(self.value_size)
        ret = _lib().bpf_map_lookup_elem(self.fd, key, value)
        if ret < 0:
            err = -ret if ret != -1 else ctypes.get_errno()
            if err == errno.ENOENT:
                return None
            raise BpfCallError(err, "lookup in map %s" % self.name)
        return value.raw

    def update(self, key, value, flags=BPF_ANY):
        _check(_lib().bpf_map_update_elem(self.fd, key, value, flags), "update of map %s" % self.name)

    def delete(self, key):
        ret = _lib().bpf_map_delete_elem(self.fd, key)
        if ret < 0:
            err = -ret if ret != -1 else ctypes.get_errno()
            if err == errno.ENOENT:
                return False
            raise BpfCallError(err, "delete from map %s" % self.name)
        return True

    def keys(self):
        if self.type == BPF_MAP_TYPE_RINGBUF:
            return []  # a ring buffer has no keys: read it with ring_buffer_read()
        lib = _lib()
        prev = None
        nxt = ctypes.create_string_buffer(self.key_size)
        out = []
        while True:
            ret = lib.bpf_map_get_next_key(self.fd, prev, nxt)
            if ret < 0:
                err = -ret if ret != -1 else ctypes.get_errno()
                if err == errno.ENOENT:
                    return out
                raise BpfCallError(err, "iterating map %s" % self.name)
            out.append(nxt.raw)
            prev = ctypes.create_string_buffer(nxt.raw, self.key_size)

    def items(self):
        """All (key, value) pairs; batched where the map type supports it."""
        if self.type in (BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_LRU_HASH, BPF_MAP_TYPE_ARRAY):
            try:
                return self._lookup_batch()
            except BpfCallError as exc:
                if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
                    raise
        items = []
        for key in self.keys():
            value = self.lookup(key)
            if value is not None:
                items.append((key, value))
        return items

    def _lookup_batch(self):
        items = []
        ks, vs = self.key_size, self.value_size
        for kraw, vraw, count in self._batches():
            for n in range(count):
                items.append((kraw[n * ks:(n + 1) * ks], vraw[n * vs:(n + 1) * vs]))
        return items

    def array_values(self):
        """The values of an array map in index order, as one bytes object (batch reads: a few syscalls
        for the 2 MiB prefilter, no pair per entry)."""
        ks, vs = self.key_size, self.value_size
        if self.type != BPF_MAP_TYPE_ARRAY or ks != 4:
            raise ValueError("array_values of map %s, not an array" % self.name)
        chunks, done = [], 0
        try:
            for kraw, vraw, count in self._batches():
                if array.array("I", kraw[:count * ks]) != array.array("I", range(done, done + count)):
                    raise ValueError("a batch lookup of array map %s out of index order" % self.name)
                chunks.append(vraw[:count * vs])
                done += count
        except BpfCallError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
            chunks = [self.lookup(struct.pack("=I", index)) for index in range(self.max_entries)]
        return b"".join(chunks)

    def _batches(self):
        """(keys buffer, values buffer, entries in them) of each batch lookup over the whole map."""
        lib = _lib()
        chunk = max(1, min(BATCH_CHUNK, self.max_entries))
        keys = ctypes.create_string_buffer(self.key_size * chunk)
        values = ctypes.create_string_buffer(self.value_size * chunk)
        in_batch = ctypes.create_string_buffer(max(self.key_size, 8))
        out_batch = ctypes.create_string_buffer(max(self.key_size, 8))
        opts = _MapBatchOpts(ctypes.sizeof(_MapBatchOpts), 0, 0)
        first = True
        while True:
            count = ctypes.c_uint32(chunk)
            ret = lib.bpf_map_lookup_batch(
                self.fd, None if first else in_batch, out_batch, keys, values, ctypes.byref(count), ctypes.byref(opts)
            )
            err = 0
            if ret < 0:
                err = -ret if ret != -1 else ctypes.get_errno()
                if err != errno.ENOENT:
                    raise BpfCallError(err, "batch lookup in map %s" % self.name)
            yield keys.raw, values.raw, count.value
            if err == errno.ENOENT:
                return
            ctypes.memmove(in_batch, out_batch, len(out_batch))
            first = False

    def update_many(self, pairs):
        """Write (key, value) pairs: batch syscalls where supported, else one by one."""
        pairs = list(pairs)
        self.update_blobs(b"".join(map(operator.itemgetter(0), pairs)), b"".join(map(operator.itemgetter(1), pairs)))

    def update_blobs(self, keys, values):
        """Write the entries whose keys are laid end to end in the bytes `keys` and their values likewise
        in `values` (no pair per entry): batch syscalls where supported, else one by one."""
        ks, vs = self.key_size, self.value_size
        count = len(keys) // ks
        if len(keys) != count * ks or len(values) != count * vs:
            raise ValueError("update of map %s: %d key bytes and %d value bytes are not whole entries"
                             % (self.name, len(keys), len(values)))
        if self._batch_ok:
            try:
                for start in range(0, count, BATCH_CHUNK):
                    end = min(count, start + BATCH_CHUNK)
                    self._update_batch(keys[start * ks:end * ks], values[start * vs:end * vs], end - start)
                return
            except BpfCallError as exc:
                if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
                    raise
                self._batch_ok = False
        update = _lib().bpf_map_update_elem
        for n in range(count):
            ret = update(self.fd, keys[n * ks:(n + 1) * ks], values[n * vs:(n + 1) * vs], BPF_ANY)
            if ret < 0:
                _check(ret, "update of map %s" % self.name)

    def _update_batch(self, keys, values, count):
        count = ctypes.c_uint32(count)
        opts = _MapBatchOpts(ctypes.sizeof(_MapBatchOpts), 0, 0)
        _check(
            _lib().bpf_map_update_batch(self.fd, keys, values, ctypes.byref(count), ctypes.byref(opts)),
            "batch update of map %s" % self.name,
        )

    def delete_many(self, keys):
        """Delete keys; missing keys are ignored."""
        delete = _lib().bpf_map_delete_elem
        for key in keys:
            ret = delete(self.fd, key)
            if ret < 0:
                err = -ret if ret != -1 else ctypes.get_errno()
                if err != errno.ENOENT:
                    raise BpfCallError(err, "delete from map %s" % self.name)

    def clear(self):
        self.delete_many(self.keys())


def ring_buffer_read(map_fd, limit=None, timeout_ms=0):
    """Consume records of a BPF ring buffer (libbpf ring_buffer__new + __consume/__poll on the map fd,
    e.g. of a pinned map, so a later process can read what the data plane wrote): a list of bytes,
    oldest first, at most `limit` (the rest stay in the ring). timeout_ms > 0 waits for a first record."""
    lib = _lib()
    out = []

    def sample(_ctx, data, size):
        out.append(ctypes.string_at(data, size))
        return -1 if limit is not None and len(out) >= limit else 0  # < 0 stops after this record

    callback = _RING_SAMPLE_FN(sample)  # kept alive until ring_buffer__free
    rb = lib.ring_buffer__new(map_fd, callback, None, None)
    if not rb:
        raise BpfCallError(ctypes.get_errno() or errno.EIO, "ring_buffer__new")
    try:
        if limit is None or limit > 0:
            ret = lib.ring_buffer__poll(rb, timeout_ms) if timeout_ms else lib.ring_buffer__consume(rb)
            if ret < 0 and not (limit is not None and len(out) >= limit):
                _check(ret, "ring buffer read")
    finally:
        lib.ring_buffer__free(rb)
    return out


def test_run(prog_fd, data, repeat=1):
    """BPF_PROG_TEST_RUN: returns (retval, average ns per run, output packet)."""
    data_out = ctypes.create_string_buffer(len(data) + 256)
    opts = _TestRunOpts()
    opts.sz = ctypes.sizeof(_TestRunOpts)
    buf = ctypes.create_string_buffer(data, len(data))
    opts.data_in = ctypes.cast(buf, ctypes.c_void_p)
    opts.data_size_in = len(data)
    opts.data_out = ctypes.cast(data_out, ctypes.c_void_p)
    opts.data_size_out = len(data_out)
    opts.repeat = repeat
    _check(_lib().bpf_prog_test_run_opts(prog_fd, ctypes.byref(opts)), "BPF_PROG_TEST_RUN")
    return opts.retval, opts.duration, data_out.raw[:opts.data_size_out]


def xdp_attach(ifindex, prog_fd, flags):
    _check(_lib().bpf_xdp_attach(ifindex, prog_fd, flags, None), "attaching XDP to ifindex %d" % ifindex)


class _XdpAttachOpts(ctypes.Structure):
    _fields_ = [("sz", ctypes.c_size_t), ("old_prog_fd", ctypes.c_int)]


def xdp_replace(ifindex, prog_fd, old_prog_fd, flags):
    """Atomically swap the attached XDP program for prog_fd, but only if old_prog_fd is the one attached
    (XDP_FLAGS_REPLACE): a concurrent change makes the kernel refuse with EEXIST instead of clobbering it."""
    opts = _XdpAttachOpts(ctypes.sizeof(_XdpAttachOpts), old_prog_fd)
    _check(_lib().bpf_xdp_attach(ifindex, prog_fd, flags | XDP_FLAGS_REPLACE, ctypes.byref(opts)),
           "replacing the XDP program on ifindex %d" % ifindex)


def xdp_detach(ifindex, flags):
    _check(_lib().bpf_xdp_detach(ifindex, flags, None), "detaching XDP from ifindex %d" % ifindex)


def xdp_query(ifindex):
    """Returns {'mode': 'native'|'generic'|'offload'|'multi'|None, 'prog_id': int}."""
    opts = _XdpQueryOpts()
    opts.sz = ctypes.sizeof(_XdpQueryOpts)
    _check(_lib().bpf_xdp_query(ifindex, 0, ctypes.byref(opts)), "querying XDP on ifindex %d" % ifindex)
    modes = {0: None, 1: "native", 2: "generic", 3: "offload", 4: "multi"}
    return {"mode": modes.get(opts.attach_mode), "prog_id": opts.prog_id}


def _tc_hook(ifindex):
    return _TcHook(ctypes.sizeof(_TcHook), ifindex, BPF_TC_EGRESS, 0)


def _tc_opts(handle, priority, prog_fd=0, flags=0):
    return _TcOpts(ctypes.sizeof(_TcOpts), prog_fd, flags, 0, handle, priority)


def tc_egress_attach(ifindex, prog_fd, handle, priority):
    """Add the clsact qdisc if missing, then put prog_fd at (handle, priority) on egress, replacing in place."""
    hook = _tc_hook(ifindex)
    ret = _lib().bpf_tc_hook_create(ctypes.byref(hook))
    if ret < 0 and -ret != errno.EEXIST:
        _check(ret, "creating the clsact qdisc on ifindex %d" % ifindex)
    opts = _tc_opts(handle, priority, prog_fd, BPF_TC_F_REPLACE)
    _check(_lib().bpf_tc_attach(ctypes.byref(hook), ctypes.byref(opts)), "attaching TC egress to ifindex %d" % ifindex)


def tc_egress_query(ifindex, handle, priority):
    """Program id at (handle, priority) on egress, or None."""
    opts = _tc_opts(handle, priority)
    ret = _lib().bpf_tc_query(ctypes.byref(_tc_hook(ifindex)), ctypes.byref(opts))
    if ret < 0:
        if -ret in (errno.ENOENT, errno.EINVAL):
            return None
        _check(ret, "querying TC egress on ifindex %d" % ifindex)
    return opts.prog_id


def tc_egress_detach(ifindex, handle, priority):
    ret = _lib().bpf_tc_detach(ctypes.byref(_tc_hook(ifindex)), ctypes.byref(_tc_opts(handle, priority)))
    if ret < 0 and -ret not in (errno.ENOENT, errno.EINVAL):
        _check(ret, "detaching TC egress from ifindex %d" % ifindex)
