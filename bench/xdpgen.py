# SPDX-License-Identifier: GPL-2.0-or-later
"""XDP traffic generator (bench/xdpgen.c through BPF_PROG_TEST_RUN, live-frames mode), run by
bench/veth.py inside the generator namespace. Not a test module.

  xdpgen.py IFNAME DST_MAC DST_IP FRAMES MAX_SECONDS SRC_FILE

Sends FRAMES frames in chunks, stopping after MAX_SECONDS; prints one JSON line like sender.c.
"""

import ctypes
import os
import resource
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

common.import_root()
from ansible_collections.netxfw.firewall.plugins.module_utils import bpfsys  # noqa: E402

BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1
CHUNK = 1 << 17  # the time limit is checked between chunks


def live_run(fd, frame, repeat, batch=64):
    opts = bpfsys._TestRunOpts()
    opts.sz = ctypes.sizeof(opts)
    buf = ctypes.create_string_buffer(frame, len(frame))
    opts.data_in = ctypes.cast(buf, ctypes.c_void_p)
    opts.data_size_in = len(frame)
    opts.repeat = repeat
    opts.flags = BPF_F_TEST_XDP_LIVE_FRAMES
    opts.batch_size = batch
    bpfsys._check(bpfsys._lib().bpf_prog_test_run_opts(fd, ctypes.byref(opts)), "BPF_PROG_TEST_RUN (live frames)")


def main(argv):
    ifname, dmac, dst, frames, max_s, src_file = argv[1:7]
    frames, max_s = int(frames), float(max_s)
    from bcc import BPF
    b = BPF(src_file=os.path.join(common.BENCH, "xdpgen.c").encode(), cflags=["-w"])
    fd = b.load_func(b"xdp_gen", BPF.XDP).fd
    with open(src_file) as f:
        srcs = [socket.inet_aton(line.strip()) for line in f if line.strip()]
    sm = bpfsys.Map(b[b"srcs"].map_fd)
    sm.update_many((struct.pack("=I", i), s) for i, s in enumerate(srcs))
    cm = bpfsys.Map(b[b"cfg"].map_fd)
    cm.update(struct.pack("=I", 0), struct.pack("=I", len(srcs)))
    cm.update(struct.pack("=I", 1), struct.pack("=I", socket.if_nametoindex(ifname)))
    frame = common.ipv4_packet("198.51.100.2", dst, 17, 1024, 9, payload=b"\0" * 18,
                               dmac=bytes.fromhex(dmac.replace(":", "")))
    frame = frame[:40] + b"\0\0" + frame[42:]  # UDP checksum 0 (none): the program changes the source
    print("READY", flush=True)  # the parent starts its CPU accounting, then says GO
    sys.stdin.readline()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    sent = 0
    while sent < frames and time.perf_counter() - t0 < max_s:
        n = min(CHUNK, frames - sent)
        live_run(fd, frame, n)
        sent += n
    secs = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    print('{"sent": %d, "seconds": %.6f, "user": %.6f, "system": %.6f, "sources": %d}'
          % (sent, secs, r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime, len(srcs)))
    b.cleanup()


if __name__ == "__main__":
    main(sys.argv)
