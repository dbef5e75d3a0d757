# SPDX-License-Identifier: GPL-2.0-or-later
"""The netxfw CLI against the real data plane: round trips, import/export, exit codes, restore."""

import json
import os
import re
import shutil
import struct
import subprocess

import pytest

from agent_env import HOST_IF, HOST4, PEER4
from netxfw_engine import queries, rules


def test_rule_round_trip_every_kind(clean):
    lab = clean
    lab.cli("rule", "add", "whitelist", "203.0.113.0/25", "2001:db8:77::/48")
    lab.cli("rule", "add", "blacklist", "198.51.100.77", "--ttl", "600")
    lab.cli("rule", "add", "port", "tcp:22", "udp:5000-5003", "--source", "203.0.113.0/24", "--action", "deny")
    data = lab.assert_in_step()
    assert data["whitelist"] == ["203.0.113.0/25", "2001:db8:77::/48"]
    assert data["blacklist"][0]["cidr"] == "198.51.100.77/32" and data["blacklist"][0]["expires"] > 0
    assert len(data["port_rules"]) == 2
    assert lab.map_keys("src4_host") == lab.source_keys("src4_host", "blacklist") == {bytes([198, 51, 100, 77])}
    # 203.0.113.0/25 is whitelisted and inside the port rules' source: one entry, both classes
    assert lab.source_keys("src4_lpm", "whitelist") == lab.source_keys("src4_lpm", "rules") - {
        struct.pack("=I", 24) + bytes([203, 0, 113, 0])} == {struct.pack("=I", 25) + bytes([203, 0, 113, 0])}
    assert len(lab.map_keys("rules4")) == 1 + 4  # one key per port

    listing = json.loads(lab.cli("--json", "rule", "list").stdout)
    assert listing["total"] == 5
    assert [r["kind"] for r in listing["items"]] == ["whitelist", "whitelist", "blacklist", "port", "port"]
    text = lab.cli("rule", "list", "port").stdout
    assert "udp 5000-5003 from 203.0.113.0/24: deny" in text
    found = json.loads(lab.cli("rule", "list", "--search", "2001:db8:77::5", "--json").stdout)
    assert [r["cidr"] for r in found["items"]] == ["2001:db8:77::/48"]

    out = lab.cli("rule", "add", "whitelist", "203.0.113.0/25").stdout
    assert "no change" in out
    lab.cli("rule", "remove", "port", "udp:5000-5003", "--source", "203.0.113.0/24")
    lab.cli("rule", "remove", "whitelist", "2001:db8:77::/48")
    lab.cli("rule", "remove", "blacklist", "198.51.100.77")
    data = lab.assert_in_step()
    assert data["whitelist"] == ["203.0.113.0/25"] and data["blacklist"] == []
    assert [r["ports"] for r in data["port_rules"]] == ["22"]
    assert lab.map_keys("src4_host") == set() and len(lab.map_keys("rules4")) == 1
    assert lab.map_keys("src6_lpm") == set() and len(lab.map_keys("src4_lpm")) == 2  # /25 whitelisted, /24 a source


def test_ratelimit_rules_add_list_remove(clean):
    lab = clean
    lab.cli("rule", "add", "ratelimit", "203.0.113.128/25", "2001:db8:44::/48", "--rate", "100", "--burst", "200",
            "--syn-only", "--ban-ttl", "60")
    data = lab.assert_in_step()
    assert data["ratelimits"] == [
        {"source": "203.0.113.128/25", "rate": 100, "burst": 200, "syn_only": True, "ban_ttl": 60},
        {"source": "2001:db8:44::/48", "rate": 100, "burst": 200, "syn_only": True, "ban_ttl": 60}]
    assert len(lab.map_keys("rl4_cfg")) == 1 and len(lab.map_keys("rl6_cfg")) == 1
    text = lab.cli("rule", "list", "ratelimit").stdout
    assert "ratelimit  203.0.113.128/25 rate 100 burst 200 syn_only ban_ttl 60" in text
    assert "no change" in lab.cli("rule", "add", "ratelimit", "203.0.113.128/25", "--rate", "100", "--burst", "200",
                                  "--syn-only", "--ban-ttl", "60").stdout
    lab.cli("rule", "remove", "ratelimit", "2001:db8:44::/48")  # the source names the rule
    data = lab.assert_in_step()
    assert [r["source"] for r in data["ratelimits"]] == ["203.0.113.128/25"] and lab.map_keys("rl6_cfg") == set()
    missing = lab.cli("rule", "add", "ratelimit", "203.0.113.0/24", check=False)  # the engine's message
    assert missing.returncode == 1 and "needs a 'source' CIDR and a 'rate'" in missing.stderr, missing.stderr
    wrong = lab.cli("rule", "add", "whitelist", "203.0.113.9", "--rate", "5", check=False)
    assert wrong.returncode == 2 and "--rate apply to ratelimit rules only" in wrong.stderr, wrong.stderr


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_export_import_round_trip_of_every_kind(clean, fmt, tmp_path):
    """A state holding every kind of the registry: `netxfw export`, an empty state, `netxfw import` gives
    back the same rules (rules.json and the maps)."""
    lab = clean
    wanted = lab.fill_every_kind()
    out = tmp_path / ("rules." + fmt)
    lab.cli("export", "-o", str(out))
    lab.reset()
    assert not any(lab.rule_lists().values())
    imported = json.loads(lab.cli("--json", "import", str(out)).stdout)
    assert dict((kind, r["added"]) for kind, r in imported.items()) == dict((k, len(v)) for k, v in wanted.items())
    assert lab.rule_lists() == wanted
    listing = json.loads(lab.cli("--json", "rule", "list").stdout)
    assert [r["kind"] for r in listing["items"]] == [kind for kind in rules.KINDS for dummy in wanted[kind]]
    # the same file again: nothing to do
    again = json.loads(lab.cli("--json", "import", str(out)).stdout)
    assert not any(r["changed"] for r in again.values())


def test_cli_blacklist_drops_packets(clean):
    lab = clean
    assert lab.ping(HOST4)
    lab.cli("rule", "add", "blacklist", PEER4)
    assert not lab.ping(HOST4)
    lab.cli("rule", "remove", "blacklist", PEER4)
    assert lab.ping(HOST4)


@pytest.mark.parametrize("fmt", ["json", "csv", "plain"])
def test_export_import_round_trip(clean, fmt, tmp_path):
    lab = clean
    lab.cli("rule", "add", "blacklist", "203.0.113.8/29", "198.51.100.200")
    lab.cli("rule", "add", "whitelist", "2001:db8:1::/64")
    lab.cli("rule", "add", "port", "tcp:443")
    lab.cli("rule", "add", "ratelimit", "203.0.113.64/26", "--rate", "100")
    before = lab.rules_json()
    kind_args = ["--kind", "blacklist"] if fmt == "plain" else []
    out = tmp_path / ("rules." + {"json": "json", "csv": "csv", "plain": "txt"}[fmt])
    lab.cli("export", "-o", str(out), *kind_args)
    lab.reset()
    assert lab.rules_json()["blacklist"] == []
    lab.cli("import", str(out), *kind_args)
    after = lab.assert_in_step()
    if fmt == "plain":
        assert [e["cidr"] for e in after["blacklist"]] == [e["cidr"] for e in before["blacklist"]]
    else:
        for name in rules.LIST_KEYS.values():
            assert after[name] == before[name]
    # import --replace makes the kind exactly the file's list
    lab.cli("import", "-", "--format", "plain", "--kind", "blacklist", "--replace", stdin="# one\n203.0.113.99\n")
    assert [e["cidr"] for e in lab.assert_in_step()["blacklist"]] == ["203.0.113.99/32"]


def test_export_stdout_formats(clean):
    lab = clean
    lab.cli("rule", "add", "blacklist", "198.51.100.201")
    assert json.loads(lab.cli("export").stdout)["blacklist"][0]["cidr"] == "198.51.100.201/32"
    assert lab.cli("export", "--format", "csv").stdout.splitlines()[0].startswith("kind,cidr")
    assert lab.cli("export", "--format", "plain", "--kind", "blacklist").stdout == "198.51.100.201/32\n"


ERRORS = [
    (["rule", "add", "whitelist", "300.1.1.1"], 1, "invalid CIDR"),
    (["rule", "add", "port", "tcp:99999"], 1, "port"),
    (["rule", "add", "whitelist", "198.51.100.1", "--ttl", "5"], 2, "--ttl"),
    (["rule", "add", "port", "tcp"], 2, "PROTO:PORTS"),
    (["rule", "add", "bogus", "1.2.3.4"], 2, "invalid choice"),
    (["rule"], 2, "required"),
    (["nope"], 2, "invalid choice"),
    (["import", "/nonexistent/file.json"], 1, "cannot read"),
    (["import", "-", "--format", "plain"], 1, "needs a kind"),
    (["export", "--format", "plain", "--kind", "port"], 1, "plain"),
    (["status", "--sample", "x"], 2, "invalid float"),
]


@pytest.mark.parametrize("args,code,needle", ERRORS, ids=[" ".join(a) for a, dummy, dummy in ERRORS])
def test_exit_codes_and_messages(clean, args, code, needle):
    proc = clean.cli(*args, check=False, stdin="")
    assert proc.returncode == code, proc.stderr
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr
    assert re.match(r"netxfw( [a-z]+)*: error: ", proc.stderr.strip().splitlines()[-1])


def test_status_with_an_unreadable_rules_json_still_shows_the_host(clean):
    """A hand edit gone wrong: status names the problem first and shows the rest, instead of failing."""
    lab = clean
    lab.cli("rule", "add", "blacklist", "203.0.113.9")
    path = lab.fw.store.rules_path
    with open(path) as stream:
        good = stream.read()
    try:
        with open(path, "w") as stream:
            stream.write(good[:20])
        text = lab.cli("status", "--sample", "0").stdout
        assert text.startswith("!! RULES UNREADABLE: %s is not valid JSON" % path), text
        assert "nxah0" in text and "src4_host" in text
        assert lab.request("GET", "/api/v1/status")[1]["alerts"][0].startswith("RULES UNREADABLE")
    finally:
        with open(path, "w") as stream:
            stream.write(good)
    assert not lab.cli("status", "--sample", "0").stdout.startswith("!!")


def test_status_alerts_when_the_program_is_detached_by_hand(clean):
    lab = clean
    lab.cli("rule", "add", "blacklist", PEER4)
    try:
        assert not lab.ping(HOST4)
        subprocess.run(["ip", "-n", lab.host_ns, "link", "set", "dev", HOST_IF, "xdp", "off"], check=True, timeout=30)
        assert lab.ping(HOST4)  # what the alert is about: the blacklist no longer holds
        text = lab.cli("status", "--sample", "0").stdout
        assert text.startswith("!! NOT ENFORCING on %s: the XDP program is not attached" % HOST_IF), text
        assert lab.request("GET", "/api/v1/status")[1]["alerts"][0].startswith("NOT ENFORCING on " + HOST_IF)
        lab.cli("restore")
        assert not lab.ping(HOST4)
        assert not lab.cli("status", "--sample", "0").stdout.startswith("!!")
    finally:
        lab.cli("rule", "remove", "blacklist", PEER4)


def test_status_alerts_when_a_program_filters_without_its_pins(clean):
    """A pin removed by hand (or left half written): the data plane is not loaded as far as the engine can
    tell, yet the orphaned program still filters with the rules it had, not rules.json's. status, the API and
    /metrics say both; restore replaces the program with rules.json's rules."""
    lab = clean
    lab.cli("rule", "add", "blacklist", PEER4)
    try:
        os.unlink(os.path.join(lab.pin_path, "meta"))
        lab.cli("rule", "remove", "blacklist", PEER4)  # rules.json only: no valid pin set to write to
        assert not lab.ping(HOST4)  # what the alert is about: the old rules still hold
        text = lab.cli("status", "--sample", "0").stdout
        assert text.startswith("!! NOT LOADED: config.json deploys the firewall on %s, but %s holds no valid pin set"
                               % (HOST_IF, lab.pin_path)), text
        assert "!! STALE PROGRAM on %s: an XDP program no valid pin set names is attached" % HOST_IF in text, text
        alerts = lab.request("GET", "/api/v1/status")[1]["alerts"]
        assert [a.split(":")[0] for a in alerts] == ["NOT LOADED", "STALE PROGRAM on " + HOST_IF], alerts
        metrics = lab.request("GET", "/metrics")[1]
        assert "netxfw_loaded 0.0" in metrics, metrics
        # the program's own pin is still there: the engine knows the program, not its maps
        assert re.search(r'netxfw_interface_attached\{hook="xdp",interface="%s",mode="(native|generic)"\} 1\.0'
                         % HOST_IF, metrics), metrics
    finally:
        lab.cli("restore")
    assert lab.ping(HOST4)
    assert not lab.cli("status", "--sample", "0").stdout.startswith("!!")


def test_status_and_conntrack(clean):
    lab = clean
    assert lab.ping(HOST4, count=2)
    text = lab.cli("status", "--sample", "0.3").stdout
    assert "loaded" in text and "nxah0" in text and "pass_policy" in text and "src4_host" in text
    info = json.loads(lab.cli("status", "--json", "--sample", "0.2").stdout)
    assert info["loaded"] and info["interfaces"]["nxah0"]["xdp"] and info["interfaces"]["nxah0"]["tc"]
    assert set(info["rates"]) == set(info["counters"]) and info["counters"]["pass_policy"]["packets"] >= 2
    flows = json.loads(lab.cli("conntrack", "--json").stdout)
    assert flows["loaded"] and flows["capacity"] == 4096
    assert "flows (capacity 4096)" in lab.cli("conntrack").stdout


def test_reload_and_boot_restore(clean):
    """restore after a "reboot" (pins gone, JSON kept) reloads the program and the rules."""
    lab = clean
    lab.cli("rule", "add", "blacklist", PEER4)
    assert "up to date" in lab.cli("reload").stdout
    saved = os.path.join(lab.tmp, "config.saved")
    shutil.copy(os.path.join(lab.state_dir, "config.json"), saved)
    try:
        lab.fw.remove_program()  # detaches, unpins, drops config.json: the state after a reboot, but for it
        shutil.copy(saved, os.path.join(lab.state_dir, "config.json"))
        assert not queries.info(lab.fw)["loaded"]
        assert lab.ping(HOST4)
        out = json.loads(lab.cli("restore", "--json").stdout)
        assert out["restored"] and out["compiled"]
        assert lab.source_keys("src4_host", "blacklist") == {bytes([198, 51, 100, 2])}
        assert not lab.ping(HOST4)
        lab.assert_in_step()
    finally:
        if not queries.info(lab.fw)["loaded"]:
            lab.fw.apply_program(json.load(open(saved)))
    lab.cli("rule", "remove", "blacklist", PEER4)
    assert lab.ping(HOST4)
