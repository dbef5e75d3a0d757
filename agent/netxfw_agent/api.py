# SPDX-License-Identifier: GPL-2.0-or-later
"""The agent's HTTP server: JSON API, /metrics, /openapi.json and the Web UI (stdlib http.server).

Status codes: 400 bad input (including every engine NetxfwError), 401 missing or wrong
token, 404 unknown route, 405 wrong method, 409 state conflict (not deployed, lock busy),
413 body too large. A 5xx only ever means a bug in the agent or the engine.
"""

import json
import math
import mimetypes
import os
import socket
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from netxfw_engine import exchange, queries, rules
from netxfw_engine.errors import NetxfwError

from . import __version__, auth, ops
from .metrics import MISSING, Metrics
from .openapi import MAX_LIMIT, document

MAX_BODY = 1 << 20
WEB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "web")
RATE_MIN_INTERVAL = 0.2


class HttpError(Exception):
    def __init__(self, status, message, headers=None):
        Exception.__init__(self, message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def _one(query, name, default=None):
    values = query.get(name)
    if not values:
        return default
    if len(values) > 1:
        raise HttpError(400, "query parameter '%s' given %d times; give it once" % (name, len(values)))
    return values[0]


def _int_param(query, name, default, low, high):
    raw = _one(query, name)
    if raw is None:
        return default
    try:
        value = int(raw, 10)
    except ValueError:
        raise HttpError(400, "query parameter '%s' must be an integer, not %r" % (name, raw))
    if not low <= value <= high:
        raise HttpError(400, "query parameter '%s' must be between %d and %d, not %d" % (name, low, high, value))
    return value


def _bool_param(query, name):
    raw = _one(query, name)
    if raw is None:
        return False
    if raw.lower() in ("1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no", ""):
        return False
    raise HttpError(400, "query parameter '%s' must be true or false, not %r" % (name, raw))


def _text_param(query, name, max_len=200):
    raw = _one(query, name)
    if raw is not None and len(raw) > max_len:
        raise HttpError(400, "query parameter '%s' is longer than %d characters" % (name, max_len))
    return raw


def _kind_param(query, required=False):
    kind = _one(query, "kind")
    if kind is None:
        if required:
            raise HttpError(400, "query parameter 'kind' is required (%s)" % ", ".join(rules.KINDS))
        return None
    if kind not in rules.KINDS:
        raise HttpError(400, "kind must be one of %s, not %r" % (", ".join(rules.KINDS), kind))
    return kind


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("non-finite number")
    return value


class Agent:
    """Shared state of the server: the engine, the token, the counters sampler, metrics."""

    def __init__(self, fw, token_file):
        self.fw = fw
        self.token = auth.TokenFile(token_file)
        self.metrics = Metrics(fw)
        self.openapi = json.dumps(document(), indent=1).encode()
        self._sample_lock = threading.Lock()
        self._sample = None  # (monotonic, counters)
        self.static = self._static_files()

    @staticmethod
    def _static_files():
        files = {}
        if os.path.isdir(WEB_DIR):
            for name in os.listdir(WEB_DIR):
                path = os.path.join(WEB_DIR, name)
                if os.path.isfile(path) and not name.startswith("."):
                    files["/" + name] = path
        if "/index.html" in files:
            files["/"] = files["/index.html"]
        return files

    # ------------------------------------------------------------ handlers
    def counters(self):
        now = time.monotonic()
        current = queries.counters(self.fw)
        if current is None:
            return {"loaded": False, "time": time.time(), "counters": None, "rates": None}
        rates, interval = None, None
        with self._sample_lock:
            if self._sample is not None:
                interval = now - self._sample[0]
                if interval >= RATE_MIN_INTERVAL:
                    rates = queries.rates(self._sample[1], current, interval)
            if self._sample is None or interval >= RATE_MIN_INTERVAL:
                self._sample = (now, current)
        return {"loaded": True, "time": time.time(), "counters": current, "rates": rates,
                "rate_interval": None if rates is None else round(interval, 3)}

    def status(self):
        info = ops.status(self.fw, 0)
        sample = self.counters()
        info["rates"] = sample["rates"]
        info["rate_interval"] = sample.get("rate_interval")
        info["agent"] = {"version": __version__, "pid": os.getpid()}
        return info

    def list_rules(self, query):
        limit = _int_param(query, "limit", 100, 1, MAX_LIMIT)
        offset = _int_param(query, "offset", 0, 0, 10 ** 9)
        return queries.list_rules(self.fw, _kind_param(query), _text_param(query, "search"), offset, limit)

    def add_rules(self, body):
        if not isinstance(body, dict):
            raise HttpError(400, "the body must be a JSON object such as {\"kind\": \"blacklist\", \"cidr\": "
                                 "\"198.51.100.7\", \"ttl\": 3600}")
        body = dict(body)
        kind = body.get("kind")
        if kind not in rules.KINDS:
            raise HttpError(400, "'kind' must be one of %s, not %r" % (", ".join(rules.KINDS), kind))
        ttl = body.pop("ttl", None)
        if "entries" in body:
            entries = body.pop("entries")
            body.pop("kind")
            if body:
                raise HttpError(400, "give either 'entries' or one rule's fields, not both (%s)"
                                % ", ".join(sorted(body)))
            if not isinstance(entries, list):
                raise HttpError(400, "'entries' must be a list")
        else:
            if "expires" in body and ttl is not None:
                raise HttpError(400, "give 'ttl' or 'expires', not both")
            entries = [rules.record_entry(body)[1]]  # the rule's record is its fields and its kind
        result = ops.change_rules(self.fw, kind, entries, state="present", ttl=ttl)
        out = self._change(kind, result)
        return (201 if result["changed"] else 200), out

    def delete_rule(self, query, body):
        if body is not None:
            raise HttpError(400, "DELETE takes query parameters (kind and the fields naming the rule), not a body")
        kind = _kind_param(query, required=True)
        names = rules.KIND[kind].identity
        unknown = sorted(set(query) - set(names) - {"kind"})
        if unknown:
            raise HttpError(400, "query parameter(s) %s do not apply to %s rules (use %s)"
                            % (", ".join(unknown), kind, ", ".join(names)))
        record = dict((name, _one(query, name)) for name in names if _one(query, name) is not None)
        if kind in rules.PLAIN_KINDS and "cidr" not in record:
            raise HttpError(400, "removing a %s rule needs 'cidr'" % kind)
        record["kind"] = kind
        entry = rules.record_entry(record)[1]
        return self._change(kind, ops.change_rules(self.fw, kind, [entry], state="absent"))

    def export_rules(self, query):
        fmt = _one(query, "format", "json")
        if fmt not in exchange.FORMATS:
            raise HttpError(400, "format must be one of %s, not %r" % (", ".join(exchange.FORMATS), fmt))
        kind = _kind_param(query)
        text = exchange.export_rules(self.fw.store.read_rules(), fmt, [kind] if kind else None)
        return {"format": fmt, "document": text}

    def import_rules(self, body):
        """{"document": text in any format of `netxfw import`, "format", "kind", "replace"} -> per kind changes."""
        if not isinstance(body, dict) or not isinstance(body.get("document"), str):
            raise HttpError(400, "the body must be a JSON object with 'document' (the text of an export: JSON, CSV "
                                 "or a plain list) and optionally 'format', 'kind' and 'replace'")
        unknown = sorted(set(body) - {"document", "format", "kind", "replace"})
        if unknown:
            raise HttpError(400, "unknown field(s) %s; the fields are document, format, kind, replace"
                            % ", ".join(unknown))
        fmt, kind, replace = body.get("format"), body.get("kind"), body.get("replace", False)
        if fmt is not None and fmt not in exchange.FORMATS:
            raise HttpError(400, "'format' must be one of %s, not %r" % (", ".join(exchange.FORMATS), fmt))
        if kind is not None and kind not in rules.KINDS:
            raise HttpError(400, "'kind' must be one of %s, not %r" % (", ".join(rules.KINDS), kind))
        if not isinstance(replace, bool):
            raise HttpError(400, "'replace' must be true or false, not %r" % (replace,))
        parsed = exchange.parse_rules(body["document"], fmt, kind, "the document")
        return {"results": ops.import_rules(self.fw, parsed, replace=replace)}

    @staticmethod
    def _change(kind, result):
        return {"changed": result["changed"], "loaded": result["loaded"],
                "added": [rules.rule_record(kind, e) for e in result["added"]],
                "removed": [rules.rule_record(kind, e) for e in result["removed"]]}

    def conntrack(self, query):
        limit = _int_param(query, "limit", 100, 1, MAX_LIMIT)
        offset = _int_param(query, "offset", 0, 0, 10 ** 9)
        return queries.conntrack(self.fw, _text_param(query, "search"), offset, limit, _bool_param(query, "live"))

    def put_settings(self, body):
        if not isinstance(body, dict) or not body:
            raise HttpError(400, "the body must be a JSON object with any of %s" % ", ".join(ops.SETTINGS))
        result = ops.update_settings(self.fw, body)
        view = ops.settings_view(self.fw)
        view.update(changed=result["changed"], actions=result["actions"])
        return view


class Handler(BaseHTTPRequestHandler):
    server_version = "netxfw-agent/" + __version__
    sys_version = ""
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes: no 40 ms delayed-ACK stall
    timeout = 30
    agent = None  # set by make_server
    access_log = False

    ROUTES = {
        "/health": {"GET": "health"},
        "/api/v1/status": {"GET": "status"},
        "/api/v1/counters": {"GET": "counters"},
        "/api/v1/rules": {"GET": "rules_get", "POST": "rules_post", "DELETE": "rules_delete"},
        "/api/v1/rules/export": {"GET": "rules_export"},
        "/api/v1/rules/import": {"POST": "rules_import"},
        "/api/v1/conntrack": {"GET": "conntrack"},
        "/api/v1/settings": {"GET": "settings_get", "PUT": "settings_put"},
        "/metrics": {"GET": "metrics"},
        "/openapi.json": {"GET": "openapi"},
    }
    PUBLIC = {"/health"}

    def __getattr__(self, name):
        # Every method, even unknown ones, gets an answer from the router (405/404), never a 501.
        if name.startswith("do_"):
            return lambda: self.dispatch(name[3:])
        raise AttributeError(name)

    def log_message(self, fmt, *args):
        if self.access_log:
            BaseHTTPRequestHandler.log_message(self, fmt, *args)

    # ------------------------------------------------------------ plumbing
    def send_body(self, status, body, content_type, headers=None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "no-store")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status, data, headers=None):
        body = json.dumps(data, sort_keys=True, default=str).encode() + b"\n"
        self.send_body(status, body, "application/json", headers)

    def read_body(self):
        """Parsed JSON body, or None when there is none."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise HttpError(411, "chunked bodies are not accepted: send Content-Length")
        raw_len = self.headers.get("Content-Length")
        if raw_len is None:
            return None
        try:
            length = int(raw_len)
            if length < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            raise HttpError(400, "invalid Content-Length %r" % raw_len)
        if length > MAX_BODY:
            self.close_connection = True
            raise HttpError(413, "the body is larger than %d bytes" % MAX_BODY)
        raw = self.rfile.read(length) if length else b""
        if not raw.strip():
            return None
        try:
            return json.loads(raw.decode("utf-8"), parse_constant=lambda c: _finite(float(c)))
        except (ValueError, RecursionError) as exc:
            raise HttpError(400, "the body is not valid JSON: %s" % exc)

    def dispatch(self, method):
        self.close_connection = self.close_connection or False
        try:
            url = urlsplit(self.path)
            path = url.path
            try:
                query = parse_qs(url.query, keep_blank_values=True, strict_parsing=False, errors="strict",
                                 max_num_fields=100)
            except (ValueError, UnicodeDecodeError) as exc:
                raise HttpError(400, "invalid query string: %s" % exc)
            if path in self.ROUTES:
                methods = self.ROUTES[path]
                if path not in self.PUBLIC and not self.agent.token.check(self.headers.get("Authorization")):
                    self._drain()
                    raise HttpError(401, "missing or wrong bearer token: send 'Authorization: Bearer <token>' "
                                         "(the token is in the agent's token file)",
                                    {"WWW-Authenticate": 'Bearer realm="netxfw"'})
                if method == "HEAD" and "GET" in methods:
                    method = "GET"  # the GET answer's status and headers, no body (send_body); RFC 9110 9.3.2
                if method not in methods:
                    self._drain()
                    raise HttpError(405, "%s does not allow %s (allowed: %s)" % (path, method, ", ".join(methods)),
                                    {"Allow": ", ".join(methods)})
                getattr(self, "route_" + methods[method])(query)
            elif method in ("GET", "HEAD") and path in self.agent.static:
                self.static(path)
            else:
                self._drain()
                raise HttpError(404, "no route %s %s; see /openapi.json" % (method, path))
        except HttpError as exc:
            self.send_json(exc.status, {"error": exc.message}, exc.headers)
        except ops.NotDeployed as exc:
            self.send_json(409, {"error": str(exc)})
        except NetxfwError as exc:
            status = 409 if str(exc).startswith("another netxfw run holds") else 400
            self.send_json(status, {"error": str(exc)})
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            self.close_connection = True
        except Exception:  # a bug: log it, answer 500 without internals
            traceback.print_exc(file=sys.stderr)
            self.close_connection = True
            try:
                self.send_json(500, {"error": "internal error in the netxfw agent; see its log"})
            except OSError:
                pass

    def _drain(self):
        """Read (and drop) a small body we will not use so keep-alive stays in step; else close."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if 0 < length <= MAX_BODY and not self.headers.get("Transfer-Encoding"):
            self.rfile.read(length)
        elif length != 0 or self.headers.get("Transfer-Encoding"):
            self.close_connection = True

    def static(self, path):
        self._drain()
        filename = self.agent.static[path]
        with open(filename, "rb") as stream:
            body = stream.read()
        ctype = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype == "application/javascript":
            ctype += "; charset=utf-8"
        self.send_body(200, body, ctype, {
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                       "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; "
                                       "base-uri 'none'; form-action 'none'",
            "X-Frame-Options": "DENY"})

    def _no_body(self):
        if self.read_body() is not None:
            raise HttpError(400, "this route takes no body")

    # ------------------------------------------------------------ routes
    def route_health(self, query):
        self._drain()
        self.send_json(200, {"status": "ok", "version": __version__})

    def route_status(self, query):
        self._no_body()
        self.send_json(200, self.agent.status())

    def route_counters(self, query):
        self._no_body()
        self.send_json(200, self.agent.counters())

    def route_rules_get(self, query):
        self._no_body()
        self.send_json(200, self.agent.list_rules(query))

    def route_rules_post(self, query):
        body = self.read_body()
        if body is None:
            raise HttpError(400, "POST /api/v1/rules needs a JSON body such as {\"kind\": \"blacklist\", "
                                 "\"cidr\": \"198.51.100.7\"}")
        status, out = self.agent.add_rules(body)
        self.send_json(status, out)

    def route_rules_delete(self, query):
        self.send_json(200, self.agent.delete_rule(query, self.read_body()))

    def route_rules_export(self, query):
        self._no_body()
        self.send_json(200, self.agent.export_rules(query))

    def route_rules_import(self, query):
        self.send_json(200, self.agent.import_rules(self.read_body()))

    def route_conntrack(self, query):
        self._no_body()
        self.send_json(200, self.agent.conntrack(query))

    def route_settings_get(self, query):
        self._no_body()
        self.send_json(200, ops.settings_view(self.agent.fw))

    def route_settings_put(self, query):
        body = self.read_body()
        if body is None:
            raise HttpError(400, "PUT /api/v1/settings needs a JSON body such as {\"policy\": \"deny\"}")
        self.send_json(200, self.agent.put_settings(body))

    def route_metrics(self, query):
        self._no_body()
        if not self.agent.metrics.available:  # a missing package on this host, said plainly
            raise HttpError(503, MISSING)
        body, ctype = self.agent.metrics.render()
        self.send_body(200, body, ctype)

    def route_openapi(self, query):
        self._no_body()
        self.send_body(200, self.agent.openapi, "application/json")


def parse_listen(listen):
    """'127.0.0.1:11811', '[::1]:11811', ':11811' (all IPv4), '11811' -> (family, host, port)."""
    text = str(listen).strip()
    if text.isdigit():
        host, port = "127.0.0.1", text
    elif text.startswith("["):
        host, dummy, rest = text[1:].partition("]")
        if not rest.startswith(":"):
            raise NetxfwError("--listen %r: expected [IPV6]:PORT" % listen)
        port = rest[1:]
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise NetxfwError("--listen %r: expected HOST:PORT, e.g. 127.0.0.1:11811" % listen)
        host = host or "0.0.0.0"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise NetxfwError("--listen %r: invalid port" % listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return family, host, int(port)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


def make_server(fw, listen, token_file, access_log=False):
    agent = Agent(fw, token_file)
    family, host, port = parse_listen(listen)
    handler = type("BoundHandler", (Handler,), {"agent": agent, "access_log": access_log})
    Server.address_family = family
    try:
        server = Server((host, port), handler)
    except OSError as exc:
        raise NetxfwError("cannot listen on %s: %s" % (listen, exc.strerror))
    return server


def serve(fw, listen, token_file, access_log=False):
    server = make_server(fw, listen, token_file, access_log)
    host, port = server.server_address[:2]
    sys.stderr.write("netxfw agent listening on http://%s:%d/ (pins %s, state %s)\n"
                     % (host if ":" not in host else "[%s]" % host, port, fw.pin_path, fw.store.state_dir))
    sys.stderr.flush()
    import signal
    signal.signal(signal.SIGTERM, lambda *a: threading.Thread(target=server.shutdown, daemon=True).start())
    try:
        server.serve_forever(poll_interval=1.0)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
