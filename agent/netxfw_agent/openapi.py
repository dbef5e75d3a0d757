# SPDX-License-Identifier: GPL-2.0-or-later
"""The OpenAPI 3 document served at /openapi.json (the API's contract, and the fuzz's input)."""

from netxfw_engine import exchange
from netxfw_engine.rules import KINDS, MAX_RATE, MAX_TTL

from . import __version__

MAX_LIMIT = 1000


def _error(description):
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _json(description, schema):
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _q(name, schema, description):
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


KIND = {"type": "string", "enum": list(KINDS)}
FORMAT = {"type": "string", "enum": list(exchange.FORMATS)}
RATELIMIT_FIELDS = {
    "rate": {"type": "integer", "minimum": 1, "maximum": MAX_RATE, "description": "ratelimit: packets/s per source"},
    "burst": {"type": "integer", "minimum": 1, "maximum": MAX_RATE, "description": "ratelimit: bucket depth"},
    "syn_only": {"type": "boolean", "description": "ratelimit: limit only TCP SYNs"},
    "ban_ttl": {"type": "integer", "minimum": 0, "maximum": MAX_TTL, "description": "ratelimit: ban seconds (0: none)"},
}
PAGING = [
    _q("offset", {"type": "integer", "minimum": 0, "maximum": 1000000000, "default": 0}, "items to skip"),
    _q("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 100}, "page size"),
]
COMMON_ERRORS = {"400": _error("invalid input"), "401": _error("missing or wrong bearer token")}

OBJ = {"type": "object"}


def document():
    schemas = {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
        "RuleRecord": {
            "type": "object", "required": ["kind"],
            "properties": dict(RATELIMIT_FIELDS, **{
                "kind": KIND,
                "cidr": {"type": "string", "description": "whitelist/blacklist: address or CIDR"},
                "expires": {"type": "number", "nullable": True, "description": "blacklist: wall-clock epoch s"},
                "source": {"type": "string", "description": "port: source CIDR or 'any'; ratelimit: source CIDR"},
                "proto": {"type": "string", "enum": ["tcp", "udp"]},
                "ports": {"type": "string", "description": "port: '22' or '1000-2000'"},
                "action": {"type": "string", "enum": ["allow", "deny"]},
            }),
        },
        "RuleCreate": {
            "type": "object", "required": ["kind"], "additionalProperties": False,
            "description": "One rule (cidr, or proto+ports[+source, action], or source+rate[+burst, syn_only, "
                           "ban_ttl]) or several ('entries').",
            "properties": dict(RATELIMIT_FIELDS, **{
                "kind": KIND,
                "cidr": {"type": "string", "example": "198.51.100.7"},
                "ttl": {"type": "number", "minimum": 1, "maximum": MAX_TTL,
                        "description": "blacklist: seconds until the entry expires"},
                "expires": {"type": "number", "nullable": True},
                "source": {"type": "string", "example": "203.0.113.0/24"},
                "proto": {"type": "string", "enum": ["tcp", "udp"]},
                "ports": {"oneOf": [{"type": "string", "example": "1000-2000"},
                                    {"type": "integer", "minimum": 1, "maximum": 65535}]},
                "action": {"type": "string", "enum": ["allow", "deny"]},
                "entries": {"type": "array", "maxItems": 100000,
                            "items": {"oneOf": [{"type": "string"}, {"type": "object"}]}},
            }),
        },
        "RuleImport": {
            "type": "object", "required": ["document"], "additionalProperties": False,
            "properties": {
                "document": {"type": "string", "description": "an export (JSON, CSV or a plain list of CIDRs): "
                                                               "what `netxfw import` and netxfw_rule's src read"},
                "format": FORMAT, "kind": KIND,
                "replace": {"type": "boolean", "default": False,
                            "description": "make each imported kind exactly the document's list"},
            },
        },
        "RuleExport": {
            "type": "object",
            "properties": {"format": FORMAT, "document": {"type": "string"}},
        },
        "RuleChange": {
            "type": "object",
            "properties": {"changed": {"type": "boolean"}, "loaded": {"type": "boolean"},
                           "added": {"type": "array", "items": {}}, "removed": {"type": "array", "items": {}},
                           "generation": {"type": "integer"}},
        },
        "RuleList": {
            "type": "object",
            "properties": {"total": {"type": "integer"}, "offset": {"type": "integer"},
                           "limit": {"type": "integer", "nullable": True}, "generation": {"type": "integer"},
                           "items": {"type": "array", "items": {"$ref": "#/components/schemas/RuleRecord"}}},
        },
        "Flow": {
            "type": "object",
            "properties": {"family": {"type": "integer"}, "proto": {"type": "string"},
                           "remote": {"type": "string"}, "remote_port": {"type": "integer"},
                           "local": {"type": "string"}, "local_port": {"type": "integer"},
                           "age": {"type": "number"}, "live": {"type": "boolean"}},
        },
        "Settings": {
            "type": "object", "additionalProperties": False,
            "properties": {
                "policy": {"type": "string", "enum": ["allow", "deny"]},
                "icmp_rate": {"type": "integer", "minimum": 0, "maximum": 1000000000},
                "icmp_burst": {"type": "integer", "minimum": 0, "maximum": 1000000000},
                "conntrack": {"type": "boolean"},
                "conntrack_timeout": {"type": "integer", "minimum": 1, "maximum": 604800},
            },
        },
    }
    paths = {
        "/health": {"get": {
            "summary": "Liveness (no token needed)", "security": [], "operationId": "health",
            "responses": {"200": _json("the agent answers", OBJ)}}},
        "/api/v1/status": {"get": {
            "summary": "Program, interfaces and modes, counters, map usage, rule counts", "operationId": "status",
            "responses": dict(COMMON_ERRORS, **{"200": _json("status", OBJ)})}},
        "/api/v1/counters": {"get": {
            "summary": "Counters by reason, with rates since the previous sample (any client's)",
            "operationId": "counters",
            "responses": dict(COMMON_ERRORS, **{"200": _json("counters", OBJ)})}},
        "/api/v1/rules": {
            "get": {
                "summary": "List rules (rules.json) with search and paging", "operationId": "listRules",
                "parameters": [_q("kind", KIND, "only this kind"),
                               _q("search", {"type": "string", "maxLength": 200},
                                  "an address (rules covering it) or text")] + PAGING,
                "responses": dict(COMMON_ERRORS, **{"200": _json("one page of rules",
                                                                 {"$ref": "#/components/schemas/RuleList"})})},
            "post": {
                "summary": "Add rules (maps and rules.json at once)", "operationId": "addRules",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/RuleCreate"}}}},
                "responses": dict(COMMON_ERRORS, **{
                    "200": _json("nothing to change", {"$ref": "#/components/schemas/RuleChange"}),
                    "201": _json("added", {"$ref": "#/components/schemas/RuleChange"}),
                    "413": _error("body too large")})},
            "delete": {
                "summary": "Remove one rule, named by query parameters", "operationId": "deleteRule",
                "parameters": [
                    {"name": "kind", "in": "query", "required": True, "schema": KIND},
                    _q("cidr", {"type": "string"}, "whitelist/blacklist: the CIDR"),
                    _q("proto", {"type": "string", "enum": ["tcp", "udp"]}, "port: protocol"),
                    _q("ports", {"type": "string"}, "port: '22' or '1000-2000'"),
                    _q("source", {"type": "string"}, "port: source CIDR (default any); ratelimit: source CIDR"),
                ],
                "responses": dict(COMMON_ERRORS, **{
                    "200": _json("removed, or not there (changed false)",
                                 {"$ref": "#/components/schemas/RuleChange"})})},
        },
        "/api/v1/rules/export": {"get": {
            "summary": "Export rules (rules.json) as the document `netxfw export` writes", "operationId": "exportRules",
            "parameters": [_q("format", FORMAT, "json (default), csv or plain"), _q("kind", KIND, "only this kind")],
            "responses": dict(COMMON_ERRORS, **{"200": _json("the document",
                                                             {"$ref": "#/components/schemas/RuleExport"})})}},
        "/api/v1/rules/import": {"post": {
            "summary": "Import rules from a document (any format `netxfw import` reads); one change per kind",
            "operationId": "importRules",
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/RuleImport"}}}},
            "responses": dict(COMMON_ERRORS, **{"200": _json("changes by kind", OBJ),
                                                "413": _error("body too large")})}},
        "/api/v1/conntrack": {"get": {
            "summary": "Tracked flows, newest first", "operationId": "conntrack",
            "parameters": [_q("search", {"type": "string", "maxLength": 200}, "address, port or protocol"),
                           _q("live", {"type": "boolean"}, "only flows younger than the timeout")] + PAGING,
            "responses": dict(COMMON_ERRORS, **{"200": _json("flows", {
                "type": "object", "properties": {
                    "total": {"type": "integer"}, "loaded": {"type": "boolean"}, "capacity": {"type": "integer"},
                    "items": {"type": "array", "items": {"$ref": "#/components/schemas/Flow"}}}})})}},
        "/api/v1/settings": {
            "get": {"summary": "Runtime settings: stored and active", "operationId": "getSettings",
                    "responses": dict(COMMON_ERRORS, **{"200": _json("settings", OBJ)})},
            "put": {"summary": "Change runtime settings (config map update through apply_program; no recompile)",
                    "operationId": "putSettings",
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/Settings"}}}},
                    "responses": dict(COMMON_ERRORS, **{
                        "200": _json("applied", OBJ),
                        "409": _error("the data plane is not deployed (no config.json)")})}},
        "/metrics": {"get": {
            "summary": "Prometheus exposition", "operationId": "metrics",
            "responses": dict(COMMON_ERRORS, **{"200": {"description": "metrics",
                                                        "content": {"text/plain": {"schema": {"type": "string"}}}}})}},
        "/openapi.json": {"get": {
            "summary": "This document", "operationId": "openapi",
            "responses": dict(COMMON_ERRORS, **{"200": _json("OpenAPI 3 document", OBJ)})}},
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "netxfw agent API", "version": __version__,
                 "description": "Host API of the netxfw XDP firewall. Every route but /health (and the static "
                                "Web UI files) needs `Authorization: Bearer <token>`."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}, "schemas": schemas},
        "paths": paths,
    }
