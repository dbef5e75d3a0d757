# SPDX-License-Identifier: GPL-2.0-or-later
"""Hot reload benchmark (not a test): reload time at 1k, 100k and 1M blacklist entries, and which
program processed the packets of a bounded stream around the swap.

    sudo /usr/bin/python3 bench/reload_bench.py [--sizes 1000,100000,1000000] [--stream 60000]

Topology (own names, removed at exit, also after a failure): namespaces nxrb-gen (gen0,
198.51.100.2) and nxrb-fw (fw0, 198.51.100.1), one veth pair; the engine runs inside nxrb-fw
through nsenter (never `ip netns exec`: it remounts /sys and hides bpffs); pins under
/sys/fs/bpf/nxrb-*; state in a temporary directory.

Swap accounting: the reload is paused (test hook NETXFW_RELOAD_PAUSE_AT=staged,swapped) once the new
object is staged, a sender starts an unpaced bounded UDP stream, the reload resumes and swaps the
programs while the stream runs, and pauses again before the old counters are added to the new ones. A
sampler reads the old program's counters map (opened before the reload) and the new program's
(its staging pin) in a tight loop. After the stream, old + new `pass_policy` counts must equal the
packets sent: a packet that met no program would be counted by neither. The timeline shows when the
old program last and the new one first counted a packet, the longest stretch during the swap in
which neither counted one, and the longest the sampler itself was descheduled in that window (on a
busy 2-core machine that, not the swap, bounds the timeline's resolution).
"""

from __future__ import absolute_import, division, print_function

import argparse
import atexit
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
SYS_PYTHON = "/usr/bin/python3"
NS_FW, NS_GEN = "nxrb-fw", "nxrb-gen"
FW_IF, GEN_IF = "fw0", "gen0"
FW_IP, GEN_IP = "198.51.100.1", "198.51.100.2"
UDP_PORT = 40999
PAUSE_ENV = "NETXFW_RELOAD_PAUSE_AT"


def collections_root():
    root = tempfile.mkdtemp(prefix="nxrb-collections-")
    os.makedirs(os.path.join(root, "ansible_collections", "netxfw"))
    os.symlink(REPO, os.path.join(root, "ansible_collections", "netxfw", "firewall"))
    return root


def sh(argv, check=True, timeout=60):
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode:
        raise RuntimeError("%s: %s%s" % (" ".join(argv), proc.stdout, proc.stderr))
    return proc


def in_ns(ns, argv):
    return ["nsenter", "--net=/run/netns/" + ns] + argv


# ---------------------------------------------------------------- roles run in subprocesses

def engine_call(root, pin_path, state_dir, op, args):
    """(inside nxrb-fw) one engine operation; prints its JSON result."""
    sys.path.insert(0, root)
    from ansible_collections.netxfw.firewall.plugins.module_utils import engine
    fw = engine.Firewall(pin_path, state_dir)
    if op == "blacklist":
        base = int(ipaddress.IPv6Address("2001:db8:aa::"))
        entries = [str(ipaddress.IPv6Address(base + i)) for i in range(args["count"])]
        start = time.monotonic()
        fw.apply_rules("blacklist", entries, exclusive=True)
        result = {"push_ms": (time.monotonic() - start) * 1000}
    else:
        result = getattr(fw, op)(**args)
    print(json.dumps(result, default=str))


def send(count, times_path=None):
    """(inside nxrb-gen) `count` UDP datagrams, unpaced, from one socket (one flow: the veth keeps their
    order); with times_path, the CLOCK_MONOTONIC send time of every datagram is written there."""
    import array
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    payload = b"x" * 32
    stamps = array.array("Q", bytes(8 * count)) if times_path else None
    clock = time.monotonic_ns
    start = time.monotonic()
    for n in range(count):
        if stamps is not None:
            stamps[n] = clock()
        s.sendto(payload, (FW_IP, UDP_PORT))
    seconds = time.monotonic() - start
    if times_path:
        with open(times_path, "wb") as stream:
            stamps.tofile(stream)
    print(json.dumps({"sent": count, "seconds": seconds}))


# ---------------------------------------------------------------- orchestration

class Bench:
    def __init__(self):
        self.root = collections_root()
        self.pin_path = tempfile.mkdtemp(prefix="nxrb-", dir="/sys/fs/bpf")
        os.rmdir(self.pin_path)
        self.state_dir = tempfile.mkdtemp(prefix="nxrb-state-")
        self.procs = []

    def up(self):
        self.down()
        for ns in (NS_FW, NS_GEN):
            sh(["ip", "netns", "add", ns])
            sh(["ip", "-n", ns, "link", "set", "lo", "up"])
        sh(["ip", "-n", NS_FW, "link", "add", FW_IF, "type", "veth", "peer", "name", GEN_IF, "netns", NS_GEN])
        for ns in (NS_FW, NS_GEN):  # no IPv6 chatter (MLD, RS) in the counted reason
            sh(in_ns(ns, ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]))
        sh(["ip", "-n", NS_FW, "addr", "add", FW_IP + "/24", "dev", FW_IF])
        sh(["ip", "-n", NS_GEN, "addr", "add", GEN_IP + "/24", "dev", GEN_IF])
        sh(["ip", "-n", NS_FW, "link", "set", FW_IF, "up"])
        sh(["ip", "-n", NS_GEN, "link", "set", GEN_IF, "up"])
        for dummy in range(50):
            if sh(in_ns(NS_GEN, ["ping", "-c", "1", "-W", "1", FW_IP]), check=False).returncode == 0:
                break

    def down(self):
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
        present = sh(["ip", "netns", "list"]).stdout
        for ns in (NS_FW, NS_GEN):
            if ns in present:
                sh(["ip", "netns", "del", ns], check=False)  # the veth and its attachments go with it
        for path in (self.pin_path, self.pin_path + "_staging"):
            shutil.rmtree(path, ignore_errors=True)

    def cleanup(self):
        self.down()
        shutil.rmtree(self.state_dir, ignore_errors=True)
        shutil.rmtree(self.root, ignore_errors=True)

    def engine_argv(self, op, args):
        return in_ns(NS_FW, [SYS_PYTHON, os.path.abspath(__file__), "--engine", op, json.dumps(args),
                             self.root, self.pin_path, self.state_dir])

    def call(self, op, timeout=900, env=None, **args):
        full_env = dict(os.environ)
        full_env.pop(PAUSE_ENV, None)
        full_env.update(env or {})
        proc = subprocess.run(self.engine_argv(op, args), capture_output=True, text=True, timeout=timeout,
                              env=full_env, check=False)
        if proc.returncode:
            raise RuntimeError("%s failed: %s" % (op, proc.stderr[-3000:]))
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def reset(self, capacity):
        self.call("remove_program")
        shutil.rmtree(self.state_dir, ignore_errors=True)
        os.makedirs(self.state_dir)
        self.call("apply_program", settings={"interfaces": [FW_IF], "policy": "allow", "capacity": capacity})


def counters_total(m, index, ncpus, layout):
    raw = m.lookup(layout.encode_u32(index))
    return layout.sum_counters(raw, ncpus)[0] if raw else 0


def wait_pause(path, step, proc, timeout=600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with open(path) as stream:
                if stream.read().split()[:1] == [step]:
                    return
        if proc.poll() is not None:
            raise RuntimeError("reload ended before %s: %s" % (step, proc.stderr.read()[-2000:]))
        time.sleep(0.005)
    raise RuntimeError("reload did not reach %s" % step)


def swap_accounting(bench, stream, entries):
    """Bounded UDP stream through a reload paused at 'staged' and 'swapped': old + new counts == sent."""
    sys.path.insert(0, bench.root)
    from ansible_collections.netxfw.firewall.plugins.module_utils import bpfsys, layout
    ncpus = bpfsys.num_possible_cpus()
    idx = layout.REASONS.index("pass_policy")
    old = bpfsys.Map.open_pinned(os.path.join(bench.pin_path, "counters"))
    old_start = counters_total(old, idx, ncpus, layout)
    pause_file = os.path.join(bench.state_dir, ".reload-pause")
    staging_counters = bench.pin_path + "_staging/counters"
    env = dict(os.environ, **{PAUSE_ENV: "staged,swapped"})
    # The sender on CPU 0, the reload and the sampler on CPU 1: the reload waking up to swap must not
    # preempt the sender (on a shared CPU that shows as a send gap at the handover, not a packet gap).
    cpus = sorted(os.sched_getaffinity(0))
    sender_cpu, other_cpu = (cpus[0], cpus[1]) if len(cpus) > 1 else (cpus[0], cpus[0])
    os.sched_setaffinity(0, {other_cpu})
    reload_proc = subprocess.Popen(["taskset", "-c", str(other_cpu)] + bench.engine_argv("reload", {"force": True}),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    bench.procs.append(reload_proc)
    wait_pause(pause_file, "staged", reload_proc)
    new = bpfsys.Map.open_pinned(staging_counters)
    samples = []  # (t, packets counted by the old program, by the new one)
    stop = threading.Event()

    def sample():
        deadline = time.monotonic() + 600
        while not stop.is_set() and time.monotonic() < deadline:
            samples.append((time.monotonic(), counters_total(old, idx, ncpus, layout) - old_start,
                            counters_total(new, idx, ncpus, layout)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    times_path = os.path.join(bench.state_dir, "send-times.bin")
    sender = subprocess.Popen(["taskset", "-c", str(sender_cpu)] + in_ns(
        NS_GEN, [SYS_PYTHON, os.path.abspath(__file__), "--send", str(stream), "--times", times_path]),
        stdout=subprocess.PIPE, text=True)
    bench.procs.append(sender)
    while not samples or samples[-1][1] < stream // 5:  # the old program is busy with the stream
        if sender.poll() is not None:
            break
        time.sleep(0.001)
    swap_started = time.monotonic()
    os.unlink(pause_file)  # go: the reload swaps the programs while the stream runs
    wait_pause(pause_file, "swapped", reload_proc)
    swap_done = time.monotonic()
    sent = json.loads(sender.communicate(timeout=600)[0].strip().splitlines()[-1])
    time.sleep(0.2)  # the last packets cross the veth
    stop.set()
    sampler.join(30)
    final_old = counters_total(old, idx, ncpus, layout) - old_start
    final_new = counters_total(new, idx, ncpus, layout)
    new.close()
    os.unlink(pause_file)  # the reload continues: copy again, add the counters, exchange the pins
    out, err = reload_proc.communicate(timeout=600)
    if reload_proc.returncode:
        raise RuntimeError("reload failed: %s" % err[-2000:])
    os.sched_setaffinity(0, set(cpus))
    result = json.loads(out.strip().splitlines()[-1])
    after = bpfsys.Map.open_pinned(os.path.join(bench.pin_path, "counters"))
    after_total = counters_total(after, idx, ncpus, layout) - old_start
    after.close()
    old.close()
    last_old = first_new = None
    for (t0, o0, _n0), (t1, o1, n1) in zip(samples, samples[1:]):
        if o1 > o0:
            last_old = t1
        if n1 and first_new is None:
            first_new = t1
    # the longest stretch, during the swap, in which neither program counted a packet
    longest = 0.0
    last_progress = None
    for (t0, o0, n0), (t1, o1, n1) in zip(samples, samples[1:]):
        if swap_started <= t1 <= swap_done + 0.05:
            if o1 + n1 > o0 + n0:
                if last_progress is not None:
                    longest = max(longest, t1 - last_progress)
                last_progress = t1
    # the same measure over the rest of the stream (before the swap): the machine's own scheduling noise
    stream_start = next((t for t, o, _n in samples if o > 0), swap_started)
    baseline = 0.0
    last_progress = None
    for (t0, o0, n0), (t1, o1, n1) in zip(samples, samples[1:]):
        if stream_start <= t1 < swap_started and o1 + n1 > o0 + n0:
            if last_progress is not None:
                baseline = max(baseline, t1 - last_progress)
            last_progress = t1
    intervals = [b[0] - a[0] for a, b in zip(samples, samples[1:])]
    window = [b[0] - a[0] for a, b in zip(samples, samples[1:]) if swap_started <= b[0] <= swap_done + 0.05]
    # One flow in order: the old program processed datagrams 0..K-1, the new one K..N-1 (K = its count).
    # The handover happened between the sends of datagrams K-1 and K.
    import array
    stamps = array.array("Q")
    with open(times_path, "rb") as stream_file:
        stamps.fromfile(stream_file, sent["sent"])
    gaps = sorted(b - a for a, b in zip(stamps, stamps[1:]))
    k = final_old
    handover_gap_us = (stamps[k] - stamps[k - 1]) / 1000.0 if 0 < k < len(stamps) else None
    return {
        "entries": entries,
        "handover_after_datagram": k,
        "handover_send_gap_us": handover_gap_us,
        "median_send_gap_us": gaps[len(gaps) // 2] / 1000.0,
        "p99_send_gap_us": gaps[int(len(gaps) * 0.99)] / 1000.0,
        "sent": sent["sent"],
        "stream_seconds": round(sent["seconds"], 3),
        "stream_pps": int(sent["sent"] / sent["seconds"]),
        "processed_by_old": final_old,
        "processed_by_new": final_new,
        "unaccounted": sent["sent"] - final_old - final_new,
        "counter_after_reload_minus_before": after_total,
        "samples": len(samples),
        "median_sample_interval_ms": round(sorted(intervals)[len(intervals) // 2] * 1000, 3) if intervals else None,
        "old_last_counted_minus_new_first_counted_ms": round((last_old - first_new) * 1000, 3)
        if last_old and first_new else None,
        "longest_no_progress_during_swap_ms": round(longest * 1000, 3),
        "longest_sampler_gap_during_swap_ms": round(max(window) * 1000, 3) if window else None,
        "longest_no_progress_before_swap_ms": round(baseline * 1000, 3),
        "stream_before_swap_ms": round((swap_started - stream_start) * 1000, 3),
        "swap_window_ms": round((swap_done - swap_started) * 1000, 3),
        "reload_ms_incl_pauses": result["duration_ms"],
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--engine", nargs=5, metavar=("OP", "ARGS", "ROOT", "PIN", "STATE"))
    parser.add_argument("--send", type=int)
    parser.add_argument("--times")
    parser.add_argument("--sizes", default="1000,100000,1000000")
    parser.add_argument("--stream", type=int, default=60000)
    parser.add_argument("--out", default=None)
    opts = parser.parse_args()
    if opts.engine:
        op, args, root, pin, state = opts.engine
        return engine_call(root, pin, state, op, json.loads(args))
    if opts.send:
        return send(opts.send, opts.times)
    if os.geteuid() != 0:
        sys.exit("run as root")
    bench = Bench()
    atexit.register(bench.cleanup)
    bench.up()
    results = {"reload": [], "swap": []}
    small = {"whitelist": 1024, "port_rules": 1024, "conntrack": 65536}
    for size in [int(s) for s in opts.sizes.split(",")]:
        capacity = dict(small, blacklist=max(1024, 1 << (size - 1).bit_length()))
        bench.reset(capacity)
        push = bench.call("blacklist", count=size)
        forced = bench.call("reload", force=True)
        grown = bench.call("reload", capacity={"blacklist": capacity["blacklist"] * 2})
        row = {"entries": size, "push_ms": round(push["push_ms"], 1),
               "force_reload_ms": forced["duration_ms"], "force_steps_ms": forced["steps_ms"],
               "grow_reload_ms": grown["duration_ms"], "grow_steps_ms": grown["steps_ms"],
               "src6_host_copy_ms": grown["migrated"]["src6_host"]["duration_ms"],
               "src6_host_entries": grown["migrated"]["src6_host"]["entries"]}
        print(json.dumps(row), flush=True)
        results["reload"].append(row)
        if size <= 100000:
            swap = swap_accounting(bench, opts.stream, size)
            print(json.dumps(swap), flush=True)
            results["swap"].append(swap)
    if opts.out:
        with open(opts.out, "w") as stream:
            json.dump(results, stream, indent=1)


if __name__ == "__main__":
    main()
