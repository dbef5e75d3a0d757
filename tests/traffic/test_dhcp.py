# SPDX-License-Identifier: GPL-2.0-or-later
"""A real DHCP client (ISC dhclient) on a hardened host gets its lease from a real DHCP server
(dnsmasq) under policy deny, IPv4 and IPv6; offers that do not echo its request are dropped
(docs/internals.md, "DHCP").

    nxt-dhs (ds0: dnsmasq, 198.51.100.1/24, 2001:db8:5::1/64) ── veth ── nxt-dhc (dc0: dhclient, netxfw)

The engine runs in nxt-dhc as in the other traffic tests (fw_agent.py through nsenter). dhclient
applies nothing itself: its -sf script here only adds the leased address to dc0 (the stock
dhclient-script would rewrite this machine's /etc/resolv.conf). Every process is bounded by a
timeout and stopped by its pid; the namespaces go on exit, also on failure.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import pytest
from scapy.all import BOOTP, DHCP, IP, UDP, Ether

from conftest import collections_root
from netns import Agent, Delta, inside, netns_list, nsenter, run, run_in

NS_SRV, NS_CLI = "nxt-dhs", "nxt-dhc"
SRV_IF, CLI_IF = "ds0", "dc0"
SRV4, SRV6 = "198.51.100.1", "2001:db8:5::1"
POOL4 = ipaddress.ip_network("198.51.100.0/24")
POOL6 = ipaddress.ip_network("2001:db8:5::/64")
SETTINGS = {
    "interfaces": [CLI_IF],
    "policy": "deny",
    "conntrack": True,
    "capacity": {"whitelist": 64, "blacklist": 64, "port_rules": 64, "conntrack": 1024},
}
# dhclient: first retransmission after 1 s; -1 gives up after `timeout` seconds (exit 2)
DHCLIENT_CONF = "initial-interval 1;\nbackoff-cutoff 2;\ntimeout %d;\n"
SCRIPT = """#!/bin/sh
echo "$reason ip=$new_ip_address ip6=$new_ip6_address" >> "$NXT_LOG"
case "$reason" in
  PREINIT|PREINIT6) /usr/sbin/ip link set dev "$interface" up ;;
  BOUND|RENEW|REBIND|REBOOT) /usr/sbin/ip addr replace "$new_ip_address/$new_subnet_mask" dev "$interface" ;;
  BOUND6|RENEW6|REBIND6|REBOOT6) /usr/sbin/ip -6 addr replace "$new_ip6_address/128" dev "$interface" nodad ;;
esac
exit 0
"""


def _down():
    present = netns_list()
    for ns in (NS_CLI, NS_SRV):
        if ns in present:
            run(["ip", "netns", "del", ns], check=False)


@pytest.fixture(scope="module")
def pair():
    if os.geteuid() != 0:
        pytest.skip("traffic tests create namespaces and load XDP programs: run as root")
    for tool in ("dhclient", "dnsmasq"):
        assert shutil.which(tool), "%s is missing: scripts/install-deps installs it" % tool
    _down()
    try:
        for ns in (NS_SRV, NS_CLI):
            run(["ip", "netns", "add", ns])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
            run_in(ns, ["sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"],
                   check=True)
        run(["ip", "-n", NS_SRV, "link", "add", SRV_IF, "type", "veth", "peer", "name", CLI_IF, "netns", NS_CLI])
        run(["ip", "-n", NS_SRV, "addr", "add", SRV4 + "/24", "dev", SRV_IF])
        run(["ip", "-n", NS_SRV, "addr", "add", SRV6 + "/64", "dev", SRV_IF, "nodad"])
        for ns, ifname in ((NS_SRV, SRV_IF), (NS_CLI, CLI_IF)):
            run(["ip", "-n", ns, "link", "set", ifname, "up"])
        yield
    finally:
        _down()


@pytest.fixture(scope="module")
def agent(pair):
    fw = Agent(collections_root(), ns=NS_CLI)
    try:
        fw.call("apply_program", settings=SETTINGS)
        yield fw
    finally:
        fw.close()


@pytest.fixture
def workdir():
    path = tempfile.mkdtemp(prefix="nxt-dhcp-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _stop(pid_file):
    """Stop the daemon whose pid the file names (a process this test started)."""
    try:
        with open(pid_file) as stream:
            pid = int(stream.read().split()[0])
    except (OSError, ValueError, IndexError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)


def stop(proc):
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@contextlib.contextmanager
def dnsmasq(workdir):
    argv = ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0", "--no-resolv", "--no-hosts",
            "--interface=" + SRV_IF, "--bind-interfaces", "--user=root", "--group=root", "--dhcp-authoritative",
            "--dhcp-range=198.51.100.50,198.51.100.60,255.255.255.0,10m",
            "--dhcp-range=2001:db8:5::50,2001:db8:5::60,64,10m",
            "--dhcp-leasefile=" + os.path.join(workdir, "dnsmasq.leases"),
            "--pid-file=" + os.path.join(workdir, "dnsmasq.pid"),
            "--log-dhcp", "--log-facility=" + os.path.join(workdir, "dnsmasq.log")]
    proc = subprocess.Popen(nsenter(NS_SRV, argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield proc
    finally:
        stop(proc)


def dhclient_argv(workdir, family, timeout, conf_extra=""):
    """dhclient -1 (one try) in nxt-dhc with its files in workdir: (argv, pid file, script log)."""
    conf, script, log = (os.path.join(workdir, name) for name in ("dhclient.conf", "script", "script.log"))
    pid_file = os.path.join(workdir, "dhclient%d.pid" % family)
    with open(conf, "w") as stream:
        stream.write(DHCLIENT_CONF % timeout + conf_extra)
    with open(script, "w") as stream:
        stream.write(SCRIPT)
    os.chmod(script, 0o700)
    argv = ["dhclient", "-%d" % family, "-1", "-v", "-cf", conf, "-sf", script, "-e", "NXT_LOG=" + log,
            "-lf", os.path.join(workdir, "dhclient%d.leases" % family), "-pf", pid_file]
    if family == 6:
        argv += ["--dad-wait-time", "0"]
    return argv, pid_file, log


def dhclient(workdir, family, timeout):
    """Run dhclient -1 (one try) in nxt-dhc: its exit code (0 bound, 2 no lease) and its script log.
    A bound dhclient goes to the background: it is stopped here by its pid."""
    argv, pid_file, log = dhclient_argv(workdir, family, timeout)
    try:
        proc = run_in(NS_CLI, argv + [CLI_IF], timeout=timeout + 30)
    finally:
        _stop(pid_file)
    with contextlib.suppress(FileNotFoundError), open(log) as stream:
        return proc.returncode, stream.read(), proc.stderr
    return proc.returncode, "", proc.stderr


def addresses(family):
    out = run(["ip", "-n", NS_CLI, "-%d" % family, "-o", "addr", "show", "dev", CLI_IF, "scope", "global"]).stdout
    return [ipaddress.ip_interface(line.split()[3]).ip for line in out.splitlines()]


def flush_addresses():
    run(["ip", "-n", NS_CLI, "addr", "flush", "dev", CLI_IF, "scope", "global"])


@pytest.mark.parametrize("family", [pytest.param(4, id="ipv4"), pytest.param(6, id="ipv6")])
def test_dhclient_gets_a_lease_under_deny(agent, workdir, family):
    flush_addresses()
    with dnsmasq(workdir):
        with Delta(agent) as d:
            rc, log, err = dhclient(workdir, family, timeout=20)
    assert rc == 0, (log, err)
    leased = addresses(family)
    assert len(leased) == 1 and leased[0] in (POOL4 if family == 4 else POOL6), (leased, log)
    # DHCP: OFFER and ACK; DHCPv6: ADVERTISE and REPLY
    assert d["pass_dhcp"] >= 2, d
    flush_addresses()


def spoofer(stop, seen):
    """In nxt-dhs, no server: answer every DHCPDISCOVER with two forged offers, one with the wrong
    xid and one with the right xid for another hardware address (bounded by the socket timeout)."""
    with inside(NS_SRV):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    try:
        s.bind((SRV_IF, 0))
        s.settimeout(0.5)
        while not stop.is_set():
            try:
                frame = Ether(s.recv(2048))
            except (socket.timeout, TimeoutError):
                continue
            if BOOTP not in frame or frame[BOOTP].op != 1:
                continue
            xid, mac = frame[BOOTP].xid, frame[BOOTP].chaddr
            seen.append(xid)
            other_mac = bytes([mac[0] ^ 0x02]) + mac[1:]
            for fake_xid, fake_mac in ((xid ^ 0xFFFFFFFF, mac), (xid, other_mac)):
                offer = Ether(dst="ff:ff:ff:ff:ff:ff") / IP(src=SRV4, dst="255.255.255.255") / UDP(
                    sport=67, dport=68) / BOOTP(op=2, xid=fake_xid, chaddr=fake_mac, yiaddr="198.51.100.66",
                                                siaddr=SRV4) / DHCP(options=[
                                                    ("message-type", "offer"), ("server_id", SRV4),
                                                    ("lease_time", 600), ("subnet_mask", "255.255.255.0"), "end"])
                s.send(bytes(offer))
    finally:
        s.close()


def test_forged_offers_are_dropped(agent, workdir):
    """Offers that do not echo the client's xid and hardware address never reach dhclient."""
    flush_addresses()
    stop, seen = threading.Event(), []
    thread = threading.Thread(target=spoofer, args=(stop, seen))
    thread.start()
    try:
        with Delta(agent) as d:
            rc, log, err = dhclient(workdir, 4, timeout=5)
    finally:
        stop.set()
        thread.join(10)
    assert seen, "dhclient sent no DHCPDISCOVER"
    assert rc == 2 and addresses(4) == [], (rc, log, err)
    assert d["pass_dhcp"] == 0 and d["drop_policy"] >= 2 * len(seen), (d, seen)


def test_dhclient_renews_and_reboots_under_deny(agent, workdir):
    """The life of a DHCP host under deny after its first lease: it renews (a unicast REQUEST from
    its address to the server, the ACK unicast back), and after a reboot (its address gone, the lease
    file kept) it asks for its old address again (INIT-REBOOT) and keeps it. The lease's renewal time
    is cut to 2 s on the client (dhclient.conf supersede), so that a renewal comes at once."""
    flush_addresses()
    with dnsmasq(workdir):
        argv, pid_file, log = dhclient_argv(workdir, 4, 20, "supersede dhcp-renewal-time 2;\n"
                                            "supersede dhcp-rebinding-time 600;\n")
        with Delta(agent) as d:
            proc = subprocess.Popen(nsenter(NS_CLI, argv[:1] + ["-d"] + argv[1:] + [CLI_IF]),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                deadline = time.monotonic() + 30  # a bound on the wait, not an assertion on speed
                events = ""
                while "RENEW" not in events and proc.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.5)
                    with contextlib.suppress(FileNotFoundError), open(log) as stream:
                        events = stream.read()
            finally:
                stop(proc)
        assert "BOUND" in events and "RENEW" in events, (events, proc.stderr.read())
        leased = addresses(4)
        assert len(leased) == 1 and leased[0] in POOL4, (leased, events)
        # OFFER, ACK of the first lease, ACK of the renewal
        assert d["pass_dhcp"] >= 3, d
        os.remove(log)
        flush_addresses()  # the reboot: the address is gone, the lease file stays
        rc, events, err = dhclient(workdir, 4, timeout=20)
    assert rc == 0 and "REBOOT" in events, (rc, events, err)
    assert addresses(4) == leased, (addresses(4), leased, events)
    flush_addresses()
