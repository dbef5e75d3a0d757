#!/usr/bin/python3
"""Send real packets to lab hosts and say what each probe got.

Run it inside a lab namespace (the client or the attacker):

    nsenter --net=/run/netns/nxclient -- /usr/bin/python3 lab/probe.py \
        --target nxh1=198.51.100.11 --target nxh1=2001:db8:100::11 \
        --ping --tcp 22 --tcp 8080 --udp 9999 [--timeout 2] [--json]

Every probe is bounded by --timeout and all run in parallel.  Outcomes:

    ping       passed (echo reply) | dropped (no reply)
    tcp PORT   passed (connected) | passed-refused (RST: the packet reached
               the host, nothing listens) | dropped (no answer)
    udp PORT   passed-refused (ICMP port unreachable: the datagram reached the
               host, nothing listens) | dropped (no answer)

Only the stdlib is used.
"""

import argparse
import errno
import json
import socket
import subprocess
import sys
import threading


def probe_ping(addr, timeout):
    cmd = ["ping", "-n", "-q", "-c", "1", "-W", str(max(1, int(timeout))), addr]
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=timeout + 3, check=False)
    except subprocess.TimeoutExpired:
        return "dropped"
    return "passed" if p.returncode == 0 else "dropped"


def _family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def probe_tcp(addr, port, timeout):
    s = socket.socket(_family(addr), socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((addr, port))
        return "passed"
    except ConnectionRefusedError:
        return "passed-refused"
    except (socket.timeout, TimeoutError):
        return "dropped"
    except OSError as e:
        if e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return "unreachable"
        return "error: %s" % e
    finally:
        s.close()


def probe_udp(addr, port, timeout):
    s = socket.socket(_family(addr), socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.connect((addr, port))
        s.send(b"netxfw-probe\n")
        s.recv(512)
        return "passed"            # something answered
    except ConnectionRefusedError:
        return "passed-refused"
    except (socket.timeout, TimeoutError):
        return "dropped"
    except OSError as e:
        return "error: %s" % e
    finally:
        s.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    ap.add_argument("--target", action="append", default=[],
                    help="NAME=ADDRESS (repeatable)")
    ap.add_argument("--ping", action="store_true")
    ap.add_argument("--tcp", type=int, action="append", default=[])
    ap.add_argument("--udp", type=int, action="append", default=[])
    ap.add_argument("--timeout", type=float, default=2.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    probes = []
    if args.ping:
        probes.append(("ping", lambda a: probe_ping(a, args.timeout)))
    for port in args.tcp:
        probes.append(("tcp/%d" % port,
                       lambda a, p=port: probe_tcp(a, p, args.timeout)))
    for port in args.udp:
        probes.append(("udp/%d" % port,
                       lambda a, p=port: probe_udp(a, p, args.timeout)))

    results = []
    lock = threading.Lock()
    threads = []
    for target in args.target:
        name, dummy, addr = target.partition("=")
        for label, fn in probes:
            def work(name=name, addr=addr, label=label, fn=fn):
                try:
                    outcome = fn(addr)
                except Exception as e:  # never hang or die on one probe
                    outcome = "error: %s" % e
                with lock:
                    results.append({"target": name, "address": addr,
                                    "probe": label, "outcome": outcome})
            t = threading.Thread(target=work, daemon=True)
            t.start()
            threads.append(t)
    for t in threads:
        t.join(args.timeout + 10)
    order = {t: i for i, t in enumerate(args.target)}
    plabels = [p[0] for p in probes]
    results.sort(key=lambda r: (order.get("%s=%s" % (r["target"], r["address"]), 0),
                                plabels.index(r["probe"])))
    if args.json:
        json.dump(results, sys.stdout, indent=1)
        print()
    else:
        for r in results:
            print("%-8s %-22s %-9s %s" % (r["target"], r["address"],
                                          r["probe"], r["outcome"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
