# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-2.0-or-later
"""Rule import/export formats: JSON, CSV and a plain list of CIDRs.

export_rules() renders the desired state; parse_rules() turns a document into
{kind: [entries]} that engine.Firewall.apply_rules() takes (which normalises and
validates every entry). Imports nothing from ansible.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import csv
import io
import json

from .errors import NetxfwError

FORMATS = ("json", "csv", "plain")
KINDS = ("whitelist", "blacklist", "port")
LISTS = {"whitelist": "whitelist", "blacklist": "blacklist", "port": "port_rules"}
CSV_FIELDS = ("kind", "cidr", "expires", "source", "proto", "ports", "action")


def guess_format(filename, default="json"):
    lowered = (filename or "").lower()
    if lowered.endswith(".json"):
        return "json"
    if lowered.endswith(".csv"):
        return "csv"
    if lowered.endswith((".txt", ".list", ".lst")):
        return "plain"
    return default


def _kinds(kinds):
    kinds = list(kinds or KINDS)
    for kind in kinds:
        if kind not in KINDS:
            raise NetxfwError("rule kind must be one of %s, not %r" % (", ".join(KINDS), kind))
    return kinds


def export_rules(data, fmt="json", kinds=None):
    """Render rules.json data (engine state) as text in one of FORMATS."""
    kinds = _kinds(kinds)
    if fmt == "json":
        doc = {"version": 1}
        for kind in kinds:
            doc[LISTS[kind]] = data.get(LISTS[kind], [])
        return json.dumps(doc, indent=2, sort_keys=True) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        for kind in kinds:
            for entry in data.get(LISTS[kind], []):
                if kind == "whitelist":
                    row = {"kind": kind, "cidr": entry}
                elif kind == "blacklist":
                    row = {"kind": kind, "cidr": entry["cidr"],
                           "expires": "" if entry.get("expires") is None else repr(float(entry["expires"]))}
                else:
                    row = dict(entry, kind=kind)
                writer.writerow(row)
        return out.getvalue()
    if fmt == "plain":
        if "port" in kinds and len(kinds) == 1:
            raise NetxfwError("port rules have no plain-list form: export them as json or csv")
        lines = []
        for kind in kinds:
            if kind == "whitelist":
                lines.extend(data.get("whitelist", []))
            elif kind == "blacklist":
                lines.extend(e["cidr"] for e in data.get("blacklist", []))
        return "".join(line + "\n" for line in lines)
    raise NetxfwError("format must be one of %s, not %r" % (", ".join(FORMATS), fmt))


def parse_rules(text, fmt="json", kind=None):
    """Parse an import document -> {kind: [entries]} (only kinds present in it).

    json: an export document ({"whitelist": [...], "blacklist": [...], "port_rules": [...]}),
          or a list of records [{"kind": ..., ...}];
    csv: a header row naming CSV_FIELDS columns (kind is optional when `kind` is given);
    plain: one CIDR per line, '#' starts a comment; `kind` (whitelist or blacklist) is required.
    """
    if kind is not None and kind not in KINDS:
        raise NetxfwError("rule kind must be one of %s, not %r" % (", ".join(KINDS), kind))
    out = {}
    if fmt == "json":
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise NetxfwError("the import is not valid JSON: %s" % exc)
        if isinstance(doc, dict):
            unknown = sorted(set(doc) - set(LISTS.values()) - {"version", "generation"})
            if unknown:
                raise NetxfwError("unknown key(s) in the JSON import: %s (expected %s)"
                                  % (", ".join(unknown), ", ".join(LISTS.values())))
            for name, listname in LISTS.items():
                if listname in doc:
                    if not isinstance(doc[listname], list):
                        raise NetxfwError("'%s' in the JSON import must be a list" % listname)
                    out[name] = list(doc[listname])
        elif isinstance(doc, list):
            for record in doc:
                if isinstance(record, str) and kind in ("whitelist", "blacklist"):
                    out.setdefault(kind, []).append(record)
                    continue
                if not isinstance(record, dict):
                    raise NetxfwError("each record of the JSON import must be an object with a 'kind', not %r"
                                      % (record,))
                record = dict(record)
                rkind = record.pop("kind", kind)
                if rkind not in KINDS:
                    raise NetxfwError("record %r: kind must be one of %s" % (record, ", ".join(KINDS)))
                out.setdefault(rkind, []).append(record["cidr"] if rkind == "whitelist" and "cidr" in record
                                                 else record)
        else:
            raise NetxfwError("the JSON import must be an object or a list")
        if kind is not None:
            out = dict((k, v) for k, v in out.items() if k == kind)
        return out
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames:
            return out
        unknown = sorted(set(f.strip() for f in reader.fieldnames if f) - set(CSV_FIELDS))
        if unknown:
            raise NetxfwError("unknown CSV column(s) %s; columns are %s" % (", ".join(unknown), ", ".join(CSV_FIELDS)))
        for line, row in enumerate(reader, start=2):
            row = dict((k.strip(), (v or "").strip()) for k, v in row.items() if k)
            rkind = row.get("kind") or kind
            if rkind not in KINDS:
                raise NetxfwError("CSV line %d: kind must be one of %s" % (line, ", ".join(KINDS)))
            if kind is not None and rkind != kind:
                continue
            if rkind == "whitelist":
                out.setdefault(rkind, []).append(row.get("cidr", ""))
            elif rkind == "blacklist":
                expires = row.get("expires") or None
                if expires is not None:
                    try:
                        expires = float(expires)
                    except ValueError:
                        raise NetxfwError("CSV line %d: expires must be epoch seconds or empty, not %r" % (line, expires))
                out.setdefault(rkind, []).append({"cidr": row.get("cidr", ""), "expires": expires})
            else:
                rule = dict((k, row[k]) for k in ("source", "proto", "ports", "action") if row.get(k))
                out.setdefault(rkind, []).append(rule)
        return out
    if fmt == "plain":
        if kind not in ("whitelist", "blacklist"):
            raise NetxfwError("a plain list of CIDRs needs a kind: whitelist or blacklist")
        entries = []
        for raw in text.splitlines():
            line = raw.split("#", 1)[0].strip()
            if line:
                entries.append(line)
        return {kind: entries}
    raise NetxfwError("format must be one of %s, not %r" % (", ".join(FORMATS), fmt))
