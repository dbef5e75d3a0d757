# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-2.0-or-later
"""The data plane program: its source and identity, compiling it with BCC (kernel headers,
bpffs), and attaching it to interfaces (XDP ingress, TC egress) or detaching it.

Shared by the engine (first load, attach, detach, remove) and the hot reload. Holds no
state of its own: the pins it reads are under the pin_path it is given. Imports nothing
from ansible.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import socket
import subprocess

from . import bpfsys, layout
from .bpf_source import SOURCE
from .errors import NetxfwError

TC_HANDLE = 1
TC_PRIO = 0x4E58

# Test-only hook (never set it in production): NETXFW_TEST_SOURCE=<file> compiles that C file
# instead of the shipped data plane (its identity follows the file), to inject compile errors and
# verifier rejections.
SOURCE_ENV = "NETXFW_TEST_SOURCE"


def data_plane_source():
    """The C source the engine compiles: the shipped one, or the test override (SOURCE_ENV)."""
    path = os.environ.get(SOURCE_ENV)
    if not path:
        return SOURCE
    with open(path, encoding="utf-8") as stream:
        return stream.read()


def program_identity(capacities):
    """Hash of the source plus compile-time options: equal identities never recompile."""
    digest = hashlib.sha256(data_plane_source().encode())
    digest.update(b"\0" + " ".join(layout.cflags(capacities)).encode())
    return digest.hexdigest()


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


def ensure_bpffs(pin_path):
    """Mount bpffs on pin_path's parent if it is not, and create pin_path."""
    mount_point = os.path.dirname(pin_path.rstrip("/"))
    if not os.path.isdir(mount_point):
        raise NetxfwError("pin_path parent %s does not exist" % mount_point)
    with open("/proc/self/mounts") as mounts:
        mounted = any(line.split()[1] == mount_point and line.split()[2] == "bpf" for line in mounts)
    if not mounted:
        subprocess.run(["mount", "-t", "bpf", "bpf", mount_point], check=True)
    os.makedirs(pin_path, mode=0o700, exist_ok=True)


def compile_program(pin_path, capacities):
    """(bpf, xdp fd, tc fd) of a freshly compiled and verified object, or NetxfwError."""
    kernel_headers_dir()
    ensure_bpffs(pin_path)
    try:
        from bcc import BPF
    except ImportError:
        raise NetxfwError(
            "the BCC Python bindings are missing for this interpreter: install python3-bpfcc (Debian/Ubuntu) "
            "or python3-bcc (RHEL/Fedora), and run netxfw with the system python3"
        )
    try:
        bpf = BPF(text=data_plane_source().encode(), cflags=layout.cflags(capacities) + ["-w"])
    except Exception as exc:
        raise NetxfwError("compiling the data plane failed (the running firewall is unchanged): %s" % exc)
    try:
        xdp_fn = bpf.load_func(b"xdp_ingress", BPF.XDP)  # bytes: BCC warns about str
        tc_fn = bpf.load_func(b"tc_egress", BPF.SCHED_CLS)
    except Exception as exc:
        bpf.cleanup()
        raise NetxfwError("loading the data plane failed, the verifier rejected it (the running firewall is "
                          "unchanged): %s" % exc)
    return bpf, xdp_fn.fd, tc_fn.fd


# ------------------------------------------------------------------ attach and detach

def mode_flags(mode):
    return bpfsys.XDP_FLAGS_DRV_MODE if mode == "native" else bpfsys.XDP_FLAGS_SKB_MODE


def _prog_fd(pin_path, pin):
    path = os.path.join(pin_path, pin)
    fd = bpfsys.obj_get(path)
    if fd is None:
        raise NetxfwError("the data plane is not loaded (no pin at %s)" % path)
    return fd


def attach(name, mode, xdp_fd, tc_fd):
    """Attach over whatever is there: the kernel swaps XDP programs atomically."""
    idx = ifindex(name)
    current = bpfsys.xdp_query(idx)["mode"]
    tries = {"native": ["native"], "generic": ["generic"], "auto": ["native", "generic"]}[mode]
    error = None
    for wanted_mode in tries:
        if current and current != wanted_mode:
            # A program in the other mode would block this one: the kernel allows one mode at a time.
            bpfsys.xdp_detach(idx, mode_flags(current))
            current = None
        try:
            bpfsys.xdp_attach(idx, xdp_fd, mode_flags(wanted_mode))
            error = None
            break
        except NetxfwError as exc:
            error = exc
    if error is not None:
        raise NetxfwError("cannot attach XDP to %s in %s mode: %s" % (name, mode, error))
    bpfsys.tc_egress_attach(idx, tc_fd, TC_HANDLE, TC_PRIO)


def attach_pinned(pin_path, name, mode):
    """attach() the programs pinned under pin_path."""
    xdp_fd = _prog_fd(pin_path, "prog_xdp")
    try:
        tc_fd = _prog_fd(pin_path, "prog_tc")
        try:
            attach(name, mode, xdp_fd, tc_fd)
        finally:
            os.close(tc_fd)
    finally:
        os.close(xdp_fd)


def detach(name):
    """Take our XDP and TC programs off an interface (nothing if it does not exist)."""
    try:
        idx = socket.if_nametoindex(name)
    except OSError:
        return
    mode = bpfsys.xdp_query(idx)["mode"]
    if mode:
        bpfsys.xdp_detach(idx, mode_flags(mode))
    bpfsys.tc_egress_detach(idx, TC_HANDLE, TC_PRIO)


def pinned_prog_ids(pin_path):
    """{pin name: program id} of the programs pinned under pin_path."""
    ids = {}
    for pin in layout.PROGRAMS:
        fd = bpfsys.obj_get(os.path.join(pin_path, pin))
        if fd is not None:
            ids[pin] = bpfsys.prog_info(fd)["id"]
            os.close(fd)
    return ids


def attachments(pin_path, names):
    """{ifname: {"xdp_mode": mode or None, "xdp": ours?, "tc": ours?}} for existing interfaces."""
    prog_ids = pinned_prog_ids(pin_path)
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


def attached_interfaces(pin_path):
    """Interfaces where the programs pinned under pin_path are attached, from the kernel."""
    names = [name for _index, name in socket.if_nameindex()]
    return sorted(n for n, a in attachments(pin_path, names).items() if a["xdp"] or a["tc"])


def interfaces_running(prog_ids):
    """Interfaces (all of this network namespace) where any of prog_ids runs at XDP or our TC slot."""
    wanted = set(i for i in prog_ids if i)
    out = []
    for index, name in socket.if_nameindex():
        try:
            xdp = bpfsys.xdp_query(index)["prog_id"]
            tc = bpfsys.tc_egress_query(index, TC_HANDLE, TC_PRIO)
        except NetxfwError:
            continue
        if xdp in wanted or tc in wanted:
            out.append(name)
    return sorted(out)
