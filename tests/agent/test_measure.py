# SPDX-License-Identifier: GPL-2.0-or-later
"""The agent under a bounded local load (2000 requests over 4 keep-alive connections) answers every
request; the measurements (API latency p50/p99, the agent's CPU and RSS, and with
NETXFW_MEASURE_IDLE=30 its idle CPU over 30 s) are printed, never asserted: the machine is shared.

NETXFW_MEASURE_IDLE (seconds, default 0: no idle measurement in the suite) and
NETXFW_MEASURE_REQUESTS (default 2000) tune it; NETXFW_MEASURE_OUT=path writes the numbers as JSON.
Run with -s to see them."""

import http.client
import json
import os
import threading
import time

IDLE = float(os.environ.get("NETXFW_MEASURE_IDLE", "0"))
REQUESTS = int(os.environ.get("NETXFW_MEASURE_REQUESTS", "2000"))
THREADS = 4
TICKS = os.sysconf("SC_CLK_TCK")
MIX = [("GET", "/api/v1/counters"), ("GET", "/api/v1/rules?kind=blacklist&limit=100&offset=200"),
       ("GET", "/api/v1/rules?search=203.0.113.77"), ("GET", "/api/v1/status"), ("GET", "/health")]


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as stream:
        fields = stream.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as stream:
        for line in stream:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1))))]


def test_measure_idle_and_latency(clean):
    lab = clean
    pid = lab.agent.pid  # nsenter execs the interpreter: this is the agent itself
    lab.request("POST", "/api/v1/rules", {"kind": "blacklist", "entries": ["203.0.%d.%d" % (113, i) for i in range(256)]
                                          + ["198.51.100.%d" % i for i in range(100, 250)]})
    out = {"loadavg_before": os.getloadavg()[0]}

    if IDLE > 0:  # nobody talks to the agent
        time.sleep(1)
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(IDLE)
        out["idle_seconds"] = round(time.monotonic() - t0, 1)
        out["idle_cpu_percent"] = round(100 * (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0), 3)
        out["idle_rss_mib"] = round(rss_kib(pid) / 1024.0, 1)

    # bounded load
    latencies = dict((path, []) for dummy, path in MIX)
    errors = []
    per_thread = REQUESTS // THREADS

    def worker(n):
        conn = http.client.HTTPConnection("127.0.0.1", 11811, timeout=30)
        headers = {"Authorization": "Bearer " + lab.token}
        try:
            for i in range(per_thread):
                method, path = MIX[(i + n) % len(MIX)]
                start = time.perf_counter()
                conn.request(method, path, headers=headers)
                resp = conn.getresponse()
                resp.read()
                latencies[path].append(time.perf_counter() - start)
                if resp.status != 200:
                    errors.append((path, resp.status))
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    out["load_requests"] = per_thread * THREADS
    out["load_threads"] = THREADS
    out["load_seconds"] = round(wall, 2)
    out["load_requests_per_second"] = round(per_thread * THREADS / wall, 1)
    out["load_agent_cpu_percent"] = round(100 * (cpu_seconds(pid) - cpu0) / wall, 1)
    out["load_rss_mib"] = round(rss_kib(pid) / 1024.0, 1)
    everything = [v for vs in latencies.values() for v in vs]
    out["latency_ms"] = {"all": {"p50": round(1000 * pct(everything, 50), 2), "p99": round(1000 * pct(everything, 99), 2)}}
    for path, values in latencies.items():
        out["latency_ms"][path] = {"p50": round(1000 * pct(values, 50), 2), "p99": round(1000 * pct(values, 99), 2),
                                   "n": len(values)}
    out["errors"] = len(errors)
    out["loadavg_after"] = os.getloadavg()[0]
    out["cpus"] = os.cpu_count()
    print("\nagent measurements:\n" + json.dumps(out, indent=2))
    if os.environ.get("NETXFW_MEASURE_OUT"):
        with open(os.environ["NETXFW_MEASURE_OUT"], "w") as stream:
            json.dump(out, stream, indent=2)
    assert errors == [] and sum(len(values) for values in latencies.values()) == per_thread * THREADS, errors[:20]
