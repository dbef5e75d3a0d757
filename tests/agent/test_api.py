# SPDX-License-Identifier: GPL-2.0-or-later
"""API: auth on every protected route, 400 on bad input, rules/settings round trips, metrics."""

import json
import subprocess
import time

import pytest

from ansible_collections.netxfw.firewall.plugins.module_utils import layout

from agent_env import HOST4, PEER4
from netxfw_engine import rulemaps, rules


def _operations(lab):
    status, doc, dummy = lab.request("GET", "/openapi.json")
    assert status == 200
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            yield path, method.upper(), op


def test_health_is_public(lab):
    status, body, dummy = lab.request("GET", "/health", token=None)
    assert status == 200 and body["status"] == "ok"


@pytest.mark.parametrize("token", [None, "wrong-token-0123456789", ""])
def test_every_protected_route_needs_the_token(lab, token):
    checked = 0
    for path, method, op in _operations(lab):
        if op.get("security") == []:
            continue
        body = {"kind": "blacklist", "cidr": PEER4} if method in ("POST", "PUT") else None
        query = "?kind=blacklist&cidr=" + PEER4 if method == "DELETE" else ""
        status, answer, headers = lab.request(method, path + query, body=body, token=token)
        assert status == 401, (method, path, status, answer)
        assert "token" in answer["error"] and headers.get("WWW-Authenticate", "").startswith("Bearer")
        checked += 1
    assert checked >= 9
    # a rejected write changed nothing
    assert PEER4 + "/32" not in json.dumps(lab.fw.store.read_rules())


def test_other_auth_schemes_are_refused(lab):
    for header in ("Basic " + lab.token, lab.token, "Bearer", "Bearer  " + lab.token + "x", "Bearer" + lab.token,
                   "Bearer\t" + lab.token, "Bearerx " + lab.token):
        status, dummy, dummy = lab.request("GET", "/api/v1/status", token=None, headers={"Authorization": header})
        assert status == 401, header


def test_the_scheme_name_is_case_insensitive(lab):
    """RFC 9110 11.1: clients that send 'bearer' or 'BEARER' are not refused."""
    for scheme in ("bearer", "BEARER"):
        status, dummy, dummy = lab.request("GET", "/api/v1/status", token=None,
                                           headers={"Authorization": scheme + " " + lab.token})
        assert status == 200, scheme


def test_head_answers_like_get_without_a_body(lab):
    """Uptime checks probe with HEAD (RFC 9110 9.1: a server that answers GET answers HEAD)."""
    for path, token in (("/health", None), ("/api/v1/status", "default"), ("/metrics", "default"),
                        ("/openapi.json", "default"), ("/", None)):
        got, body, headers = lab.request("GET", path, token=token)
        status, head_body, head_headers = lab.request("HEAD", path, token=token)
        assert (status, head_body) == (got, ""), path
        assert head_headers["Content-Type"] == headers["Content-Type"], path
    assert lab.request("HEAD", "/api/v1/status", token=None)[0] == 401
    status, dummy, headers = lab.request("HEAD", "/api/v1/rules/import")
    assert status == 405 and headers["Allow"] == "POST"


def test_unknown_route_and_method(lab):
    assert lab.request("GET", "/api/v1/nope")[0] == 404
    assert lab.request("GET", "/nope", token=None)[0] == 404
    status, body, headers = lab.request("PATCH", "/api/v1/rules")
    assert status == 405 and "GET" in headers["Allow"]
    assert lab.request("BREW", "/api/v1/rules")[0] == 405


BAD = [
    ("POST", "/api/v1/rules", {"kind": "whitelist", "cidr": "not-an-address"}, "invalid CIDR"),
    ("POST", "/api/v1/rules", {"kind": "nope", "cidr": "198.51.100.9"}, "kind"),
    ("POST", "/api/v1/rules", {"cidr": "198.51.100.9"}, "kind"),
    ("POST", "/api/v1/rules", {"kind": "blacklist", "cidr": "198.51.100.9", "ttl": -5}, "ttl"),
    ("POST", "/api/v1/rules", {"kind": "blacklist", "cidr": "198.51.100.9", "ttl": 1e300}, "ttl"),
    ("POST", "/api/v1/rules", {"kind": "blacklist", "cidr": "198.51.100.9", "expires": 1e300}, "expires"),
    ("POST", "/api/v1/rules", {"kind": "blacklist", "cidr": "198.51.100.9", "ttl": True}, "ttl"),
    ("POST", "/api/v1/rules", {"kind": "whitelist", "cidr": "198.51.100.9", "ttl": 5}, "ttl"),
    ("POST", "/api/v1/rules", {"kind": "whitelist", "cidr": ["198.51.100.9"]}, "CIDR"),
    ("POST", "/api/v1/rules", {"kind": "whitelist", "cidr": "2001:db8::1%eth0"}, "zone"),
    ("POST", "/api/v1/rules", {"kind": "port", "proto": "icmp", "ports": "22"}, "proto"),
    ("POST", "/api/v1/rules", {"kind": "port", "proto": {"a": 1}, "ports": "22"}, "proto"),
    ("POST", "/api/v1/rules", {"kind": "port", "proto": "tcp", "ports": "70000"}, "port"),
    ("POST", "/api/v1/rules", {"kind": "port", "proto": "tcp", "ports": "30-20"}, "port"),
    ("POST", "/api/v1/rules", {"kind": "port", "proto": "tcp", "ports": 22.5}, "port"),
    ("POST", "/api/v1/rules", {"kind": "port", "proto": "tcp", "ports": "22", "action": "maybe"}, "action"),
    ("POST", "/api/v1/rules", {"kind": "port", "proto": "tcp"}, "port"),
    ("POST", "/api/v1/rules", {"kind": "port", "proto": "tcp", "ports": "22", "colour": "red"}, "colour"),
    ("POST", "/api/v1/rules", {"kind": "whitelist", "entries": "198.51.100.9"}, "list"),
    ("POST", "/api/v1/rules", {"kind": "whitelist", "entries": [5]}, "whitelist"),
    ("POST", "/api/v1/rules", [1, 2], "object"),
    ("POST", "/api/v1/rules", None, "body"),
    ("POST", "/api/v1/rules", {"kind": "ratelimit", "source": "203.0.113.0/24", "rate": "10"}, "rate"),
    ("POST", "/api/v1/rules", {"kind": "ratelimit", "source": "203.0.113.0/24"}, "rate"),
    ("POST", "/api/v1/rules", {"kind": "ratelimit", "source": "203.0.113.0/24", "rate": 5, "syn_only": "no"},
     "syn_only"),
    ("POST", "/api/v1/rules/import", {"document": "{"}, "not valid JSON"),
    ("POST", "/api/v1/rules/import", {"document": "[]", "replace": "yes"}, "replace"),
    ("POST", "/api/v1/rules/import", {"document": "198.51.100.9\n"}, "needs a kind"),
    ("POST", "/api/v1/rules/import", {"text": "[]"}, "document"),
    ("GET", "/api/v1/rules/export?format=yaml", None, "format"),
    ("GET", "/api/v1/rules/export?format=plain&kind=ratelimit", None, "plain"),
    ("DELETE", "/api/v1/rules?kind=ratelimit&cidr=198.51.100.9", None, "source"),
    ("DELETE", "/api/v1/rules?cidr=198.51.100.9", None, "kind"),
    ("DELETE", "/api/v1/rules?kind=port&proto=tcp", None, "ports"),
    ("DELETE", "/api/v1/rules?kind=whitelist&cidr=1.2.3.4&proto=tcp", None, "proto"),
    ("DELETE", "/api/v1/rules?kind=whitelist&cidr=x", None, "CIDR"),
    ("GET", "/api/v1/rules?limit=0", None, "limit"),
    ("GET", "/api/v1/rules?limit=abc", None, "limit"),
    ("GET", "/api/v1/rules?offset=-1", None, "offset"),
    ("GET", "/api/v1/rules?kind=all", None, "kind"),
    ("GET", "/api/v1/rules?limit=1&limit=2", None, "once"),
    ("GET", "/api/v1/conntrack?live=perhaps", None, "live"),
    ("PUT", "/api/v1/settings", {"policy": "sometimes"}, "policy"),
    ("PUT", "/api/v1/settings", {"icmp_rate": "10"}, "integer"),
    ("PUT", "/api/v1/settings", {"icmp_rate": -1}, "icmp_rate"),
    ("PUT", "/api/v1/settings", {"conntrack": 1}, "true or false"),
    ("PUT", "/api/v1/settings", {"conntrack_timeout": 0}, "conntrack_timeout"),
    ("PUT", "/api/v1/settings", {"interfaces": ["eth0"]}, "unknown setting"),
    ("PUT", "/api/v1/settings", {}, "object"),
]


@pytest.mark.parametrize("method,path,body,needle", BAD, ids=["%s %s %s" % (m, p, json.dumps(b)) for m, p, b, dummy in BAD])
def test_bad_input_is_400_with_a_message(clean, method, path, body, needle):
    lab = clean
    before = lab.rules_json()
    settings_before = lab.request("GET", "/api/v1/settings")[1]["active"]
    status, answer, dummy = lab.request(method, path, body=body)
    assert status == 400, (status, answer)
    assert needle.lower() in answer["error"].lower(), answer["error"]
    assert lab.rules_json() == before
    assert lab.request("GET", "/api/v1/settings")[1]["active"] == settings_before


@pytest.mark.parametrize("raw", [b"{", b"\xff\xfe", b'{"kind": NaN}', b"[" * 100000, b'"just a string"'])
def test_malformed_bodies(clean, raw):
    status, answer, dummy = clean.request("POST", "/api/v1/rules", raw=raw, headers={"Content-Type": "application/json"})
    assert status == 400, answer


def test_oversized_body_is_413(lab):
    """The agent answers from the headers alone and closes; it never reads the oversized body."""
    import socket
    with socket.create_connection(("127.0.0.1", 11811), timeout=10) as sock:
        sock.sendall(b"POST /api/v1/rules HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + lab.token.encode() +
                     b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{\"kind\"" % ((1 << 20) + 1))
        reply = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    head, dummy, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413") and b"larger than" in body


def test_rules_create_list_search_page_delete(clean):
    lab = clean
    status, answer, dummy = lab.request("POST", "/api/v1/rules", {"kind": "blacklist", "cidr": "203.0.113.0/28", "ttl": 600})
    assert status == 201 and answer["added"][0]["cidr"] == "203.0.113.0/28" and answer["loaded"]
    assert lab.request("POST", "/api/v1/rules", {"kind": "blacklist", "cidr": "203.0.113.0/28"})[0] in (200, 201)
    status, answer, dummy = lab.request("POST", "/api/v1/rules", {"kind": "whitelist", "entries": [
        "198.51.100.%d" % i for i in range(10, 40)]})
    assert status == 201 and len(answer["added"]) == 30
    assert lab.request("POST", "/api/v1/rules", {"kind": "port", "proto": "tcp", "ports": 8080,
                                                 "action": "deny"})[0] == 201
    # again: no change
    status, answer, dummy = lab.request("POST", "/api/v1/rules", {"kind": "port", "proto": "tcp", "ports": "8080",
                                                                  "action": "deny"})
    assert status == 200 and answer["changed"] is False

    status, page, dummy = lab.request("GET", "/api/v1/rules?kind=whitelist&limit=7&offset=28")
    assert page["total"] == 30 and len(page["items"]) == 2 and page["items"][-1]["cidr"] == "198.51.100.39/32"
    status, page, dummy = lab.request("GET", "/api/v1/rules?search=203.0.113.5")
    assert [r["cidr"] for r in page["items"]] == ["203.0.113.0/28"]
    status, page, dummy = lab.request("GET", "/api/v1/rules?search=8080")
    assert [r["kind"] for r in page["items"]] == ["port"]
    lab.assert_in_step()

    status, answer, dummy = lab.request("DELETE", "/api/v1/rules?kind=blacklist&cidr=203.0.113.0/28")
    assert status == 200 and answer["changed"] and answer["removed"][0]["cidr"] == "203.0.113.0/28"
    status, answer, dummy = lab.request("DELETE", "/api/v1/rules?kind=port&proto=tcp&ports=8080")
    assert status == 200 and answer["changed"]
    status, answer, dummy = lab.request("DELETE", "/api/v1/rules?kind=port&proto=tcp&ports=8080")
    assert status == 200 and not answer["changed"]
    data = lab.assert_in_step()
    assert data["blacklist"] == [] and data["port_rules"] == [] and len(data["whitelist"]) == 30


def test_ratelimit_rules_create_list_delete(clean):
    lab = clean
    rule = {"kind": "ratelimit", "source": "203.0.113.128/25", "rate": 100, "syn_only": True, "ban_ttl": 60}
    status, answer, dummy = lab.request("POST", "/api/v1/rules", rule)
    assert status == 201 and answer["added"] == [dict(rule, burst=100)], answer
    assert lab.request("POST", "/api/v1/rules", dict(rule, burst=100))[0] == 200  # the same rule: no change
    status, answer, dummy = lab.request("POST", "/api/v1/rules", {"kind": "ratelimit", "entries": [
        {"source": "2001:db8:44::/48", "rate": 5}]})
    assert status == 201 and answer["added"][0]["source"] == "2001:db8:44::/48"
    status, page, dummy = lab.request("GET", "/api/v1/rules?kind=ratelimit")
    assert [r["source"] for r in page["items"]] == ["203.0.113.128/25", "2001:db8:44::/48"]
    assert len(lab.map_keys("rl4_cfg")) == 1 and len(lab.map_keys("rl6_cfg")) == 1
    lab.assert_in_step()
    status, answer, dummy = lab.request("DELETE", "/api/v1/rules?kind=ratelimit&source=2001:db8:44::/48")
    assert status == 200 and answer["changed"] and answer["removed"][0]["rate"] == 5
    data = lab.assert_in_step()
    assert [r["source"] for r in data["ratelimits"]] == ["203.0.113.128/25"] and lab.map_keys("rl6_cfg") == set()


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_export_import_round_trip_of_every_kind(clean, fmt):
    """A state holding every kind of the registry: GET /api/v1/rules/export, an empty state,
    POST /api/v1/rules/import gives back the same rules (rules.json and the maps)."""
    lab = clean
    wanted = lab.fill_every_kind()
    status, exported, dummy = lab.request("GET", "/api/v1/rules/export?format=" + fmt)
    assert status == 200 and exported["format"] == fmt
    lab.reset()
    assert not any(lab.rule_lists().values())
    status, imported, dummy = lab.request("POST", "/api/v1/rules/import", {"document": exported["document"]})
    assert status == 200, imported
    assert dict((k, r["added"]) for k, r in imported["results"].items()) == dict((k, len(v)) for k, v in wanted.items())
    assert lab.rule_lists() == wanted
    status, page, dummy = lab.request("GET", "/api/v1/rules?limit=1000")
    assert [r["kind"] for r in page["items"]] == [kind for kind in rules.KINDS for dummy in wanted[kind]]
    status, again, dummy = lab.request("POST", "/api/v1/rules/import", {"document": exported["document"]})
    assert status == 200 and not any(r["changed"] for r in again["results"].values())


def test_blacklist_through_the_api_drops_packets(clean):
    lab = clean
    assert lab.ping("198.51.100.1")
    assert lab.request("POST", "/api/v1/rules", {"kind": "blacklist", "cidr": PEER4})[0] == 201
    assert lab.map_keys("src4_host") == lab.source_keys("src4_host", "blacklist") == {bytes([198, 51, 100, 2])}
    assert not lab.ping("198.51.100.1")
    assert lab.request("DELETE", "/api/v1/rules?kind=blacklist&cidr=" + PEER4)[0] == 200
    assert lab.map_keys("src4_host") == set()
    assert lab.ping("198.51.100.1")


def test_settings_get_put(clean):
    lab = clean
    status, view, dummy = lab.request("GET", "/api/v1/settings")
    assert status == 200 and view["active"]["policy"] == "allow" and view["deployed"]
    status, view, dummy = lab.request("PUT", "/api/v1/settings", {"policy": "deny", "icmp_rate": 0})
    assert status == 200 and view["active"]["policy"] == "deny" and view["stored"]["policy"] == "deny"
    assert view["actions"] == ["update runtime settings"]  # a map update, no recompile
    assert not lab.ping("2001:db8:a9::1")
    status, view, dummy = lab.request("PUT", "/api/v1/settings", {"icmp_rate": 50, "icmp_burst": 10,
                                                                  "conntrack_timeout": 120})
    assert view["active"]["icmp_rate"] == 50 and view["active"]["conntrack_timeout"] == 120
    assert lab.ping("198.51.100.1")  # ICMP now passes through the token bucket under deny
    status, view, dummy = lab.request("PUT", "/api/v1/settings", {"policy": "allow", "icmp_rate": 0})
    assert view["active"]["policy"] == "allow"
    assert lab.fw.store.read_config()["policy"] == "allow"


def test_status_counters_conntrack(clean):
    lab = clean
    lab.request("GET", "/api/v1/counters")
    assert lab.ping("198.51.100.1", count=3)
    status, info, dummy = lab.request("GET", "/api/v1/status")
    assert status == 200 and info["loaded"] and info["interfaces"]["nxah0"]["xdp"]
    assert info["counters"]["pass_policy"]["packets"] >= 3
    # the source maps hold the whitelist, the blacklist and the port rules' sources: their capacities add up
    assert info["maps"]["src4_host"]["capacity"] == 1024 + 4096 + 1024 + layout.RL_SIZE
    time.sleep(0.3)  # rates need two samples at least 0.2 s apart
    status, counters, dummy = lab.request("GET", "/api/v1/counters")
    assert counters["rates"] is not None and counters["rates"]["pass_policy"]["packets"] >= 0
    # an outbound TCP attempt from the host namespace creates a conntrack entry (TC egress)
    import socket
    s = socket.socket()
    s.settimeout(0.5)
    try:
        s.connect(("198.51.100.2", 9))
    except OSError:
        pass
    finally:
        s.close()
    status, flows, dummy = lab.request("GET", "/api/v1/conntrack?search=198.51.100.2")
    assert status == 200 and flows["loaded"] and flows["total"] >= 1
    flow = flows["items"][0]
    assert flow["remote"] == "198.51.100.2" and flow["remote_port"] == 9 and flow["proto"] == "tcp"


def test_metrics(clean):
    lab = clean
    if subprocess.run(["/usr/bin/python3", "-c", "import prometheus_client"], check=False).returncode:
        status, answer, dummy = lab.request("GET", "/metrics")
        assert status == 503 and "python3-prometheus-client" in answer["error"]
        pytest.skip("needs python3-prometheus-client for /usr/bin/python3 (scripts/install-deps)")
    lab.request("POST", "/api/v1/rules", {"kind": "blacklist", "cidr": "203.0.113.77"})
    status, text, headers = lab.request("GET", "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert 'netxfw_packets_total{reason="pass_policy"}' in text
    assert 'netxfw_bytes_total{reason="drop_blacklist"}' in text
    assert 'netxfw_map_entries{map="src4_host"} 1.0' in text
    assert 'netxfw_map_capacity{map="src4_host"} %.1f' % (6144 + layout.RL_SIZE) in text
    assert "netxfw_conntrack_entries" in text and "netxfw_loaded 1.0" in text
    assert 'netxfw_rules{kind="blacklist"} 1.0' in text


def has_prometheus_client():
    return subprocess.run(["/usr/bin/python3", "-c", "import prometheus_client"], check=False).returncode == 0


def test_half_written_rule_maps_are_reported_until_reload(clean):
    """What a write killed half way leaves (tests/engine/test_crash_and_concurrency.py makes it with a
    real SIGKILL): the maps marked dirty and without an entry rules.json holds. The firewall then lets
    a blacklisted peer in; status, the CLI and /metrics say so until `netxfw reload` rebuilds the maps."""
    lab = clean
    assert lab.request("POST", "/api/v1/rules", {"kind": "blacklist", "cidr": PEER4})[0] == 201
    assert not lab.ping(HOST4)
    assert lab.request("GET", "/api/v1/status")[1]["alerts"] == []
    maps = lab.fw.open_maps()
    try:
        rulemaps.mark_generation(maps, None)
        maps["src4_host"].delete(bytes([198, 51, 100, 2]))
    finally:
        lab.fw.close_maps(maps)
    assert lab.ping(HOST4), "the peer should get in through the half-written maps"

    status = lab.request("GET", "/api/v1/status")[1]
    assert status["rules_in_step"] is False
    assert [a for a in status["alerts"] if a.startswith("RULE MAPS OUT OF STEP")], status["alerts"]
    assert lab.cli("status").stdout.startswith("!! RULE MAPS OUT OF STEP")
    if has_prometheus_client():
        assert "\nnetxfw_rules_in_step 0.0\n" in lab.request("GET", "/metrics")[1]

    lab.cli("reload")
    assert not lab.ping(HOST4)
    status = lab.request("GET", "/api/v1/status")[1]
    assert status["rules_in_step"] is True and status["alerts"] == []
    assert not lab.cli("status").stdout.startswith("!!")
    if has_prometheus_client():
        assert "\nnetxfw_rules_in_step 1.0\n" in lab.request("GET", "/metrics")[1]


def test_openapi_document(lab):
    status, doc, dummy = lab.request("GET", "/openapi.json")
    assert doc["openapi"].startswith("3.") and "/api/v1/rules" in doc["paths"]
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_ui_files_are_served(lab):
    status, html, headers = lab.request("GET", "/", token=None)
    assert status == 200 and "<html" in html.lower()
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    for path in ("/app.js", "/style.css"):
        assert lab.request("GET", path, token=None)[0] == 200
    assert lab.request("GET", "/../conftest.py", token=None)[0] == 404
