# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-2.0-or-later
"""Rule files: JSON, CSV and a plain list of CIDRs, for every kind of the registry (rules.REGISTRY).

export_rules() renders the desired state; parse_rules() (and load(), which reads a file first) turns
a document into {kind: [entries]} that engine.Firewall.apply_rules() takes, which normalises and
validates every entry. The one parser of rule files: `netxfw import`, the API's import and the
netxfw_rule module's `src` all read files here, so they take the same formats. Imports nothing
from ansible.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import csv
import io
import json
import os
import stat

from . import rules
from .errors import NetxfwError

FORMATS = ("json", "csv", "plain")


def _csv_columns():
    columns = ["kind"]
    for kind in rules.REGISTRY:
        columns.extend(field for field in kind.fields if field not in columns)
    return tuple(columns)


CSV_FIELDS = _csv_columns()  # kind, then every kind's record fields
# how a CSV cell becomes a field's value (every other field is text); an empty cell is no value
_CSV_NUMBERS = {"expires": (float, "epoch seconds or empty"), "rate": (int, "an integer"),
                "burst": (int, "an integer"), "ban_ttl": (int, "an integer")}
_CSV_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
_METADATA = ("version", "generation")  # keys of an export document besides the lists
_JSON_TYPES = {list: "a list", dict: "a mapping", str: "a string", int: "a number", float: "a number",
               bool: "a boolean", type(None): "null"}


def guess_format(filename, default="json"):
    lowered = (filename or "").lower()
    if lowered.endswith(".json"):
        return "json"
    if lowered.endswith(".csv"):
        return "csv"
    if lowered.endswith((".txt", ".list", ".lst")):
        return "plain"
    return default


def detect_format(text):
    """json when the first non-blank character is '[' or '{', csv when the first line names only CSV
    columns, else plain."""
    stripped = text.lstrip()
    if stripped[:1] in ("[", "{"):
        return "json"
    header = [name.strip() for name in stripped.split("\n", 1)[0].split(",")]
    if header and all(name in CSV_FIELDS for name in header):
        return "csv"
    return "plain"


def _kinds(kinds):
    return [rules.rule_kind(kind) for kind in (kinds or rules.KINDS)]


def _csv_cell(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def export_rules(data, fmt="json", kinds=None):
    """Render rules.json data (engine state) as text in one of FORMATS."""
    kinds = _kinds(kinds)
    if fmt == "json":
        doc = {"version": 1}
        for kind in kinds:
            doc[kind.key] = data.get(kind.key, [])
        return json.dumps(doc, indent=2, sort_keys=True) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        for kind in kinds:
            for entry in data.get(kind.key, []):
                writer.writerow(dict((k, _csv_cell(v)) for k, v in rules.rule_record(kind.name, entry).items()))
        return out.getvalue()
    if fmt == "plain":
        plain = [kind for kind in kinds if kind.plain]
        if not plain:
            raise NetxfwError("%s rules have no plain-list form: export them as json or csv"
                              % " and ".join(kind.name for kind in kinds))
        lines = []
        for kind in plain:
            lines.extend(rules.rule_record(kind.name, entry)["cidr"] for entry in data.get(kind.key, []))
        return "".join(line + "\n" for line in lines)
    raise NetxfwError("format must be one of %s, not %r" % (", ".join(FORMATS), fmt))


def read_bytes(path, label=None, missing=""):
    """The bytes of a file; NetxfwError naming it (as `label`) when it cannot be read."""
    label = label or path
    try:
        with open(path, "rb") as stream:
            mode = os.fstat(stream.fileno()).st_mode
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):  # /dev/zero, /dev/urandom: read until memory runs out
                raise NetxfwError("cannot read %s: it is a device, not a file of rules" % label)
            return stream.read()
    except FileNotFoundError:
        raise NetxfwError("cannot read %s: it does not exist%s" % (label, missing))
    except IsADirectoryError:
        raise NetxfwError("cannot read %s: it is a directory, not a file" % label)
    except OSError as exc:
        raise NetxfwError("cannot read %s: %s" % (label, exc.strerror or exc))


def decode_text(raw, label):
    """The UTF-8 text of a file's bytes (a BOM is dropped); NetxfwError naming it (as `label`)."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise NetxfwError("%s is not UTF-8 text: %s" % (label, exc))


def read_text(path, label=None, missing=""):
    """The UTF-8 text of a file (a BOM is dropped); NetxfwError naming it (as `label`) when it cannot be read."""
    label = label or path
    return decode_text(read_bytes(path, label, missing), label)


def load(path, kind=None, fmt=None, label=None, missing=""):
    """parse_rules() of the file at `path`."""
    label = label or path
    return parse_rules(read_text(path, label, missing), fmt, kind, label)


def parse_rules(text, fmt=None, kind=None, label="the import"):
    """Parse a rule document -> {kind: [entries]}; errors name the document as `label`.

    fmt None: detect_format(text). With `kind`, the result holds that kind only, and always holds it
    but for an export document without its list.
    json: an export document ({"whitelist": [...], ..., "ratelimits": [...]}), or a list whose items
          are records ({"kind": ..., fields}) or, with `kind`, entries of that kind;
    csv: a header row naming CSV_FIELDS columns (kind is optional when `kind` is given);
    plain: one CIDR per line, '#' starts a comment; `kind` must have a plain form (whitelist, blacklist).
    """
    spec = None if kind is None else rules.rule_kind(kind)
    text = text[1:] if text.startswith("\ufeff") else text  # a byte order mark
    fmt = detect_format(text) if fmt is None else fmt
    try:
        if fmt == "json":
            out = _parse_json(text, spec)
        elif fmt == "csv":
            out = _parse_csv(text, spec)
        elif fmt == "plain":
            out = _parse_plain(text, spec)
        else:
            raise NetxfwError("format must be one of %s, not %r" % (", ".join(FORMATS), fmt))
    except NetxfwError as exc:
        raise NetxfwError("%s: %s" % (label, exc))
    if spec is not None and fmt != "json":
        out.setdefault(spec.name, [])
    return out


def _json_type(value):
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _parse_json(text, spec):
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise NetxfwError("is not valid JSON: %s" % exc)
    if isinstance(doc, dict):
        lists = [kind.key for kind in rules.REGISTRY]
        unknown = sorted(set(doc) - set(lists) - set(_METADATA))
        if unknown:
            raise NetxfwError("holds a JSON mapping with unknown key(s) %s; expected a JSON list of %s or an export "
                              "document with the lists %s"
                              % (", ".join(unknown), "%s entries" % spec.name if spec else "rules", ", ".join(lists)))
        out = {}
        for kind in rules.REGISTRY if spec is None else (spec,):
            if kind.key in doc:
                if not isinstance(doc[kind.key], list):
                    raise NetxfwError("'%s' must be a list, not %s" % (kind.key, _json_type(doc[kind.key])))
                out[kind.name] = doc[kind.key]
        return out
    if not isinstance(doc, list):
        raise NetxfwError("must hold a JSON object or a list, not %s" % _json_type(doc))
    if spec is not None and all(isinstance(item, str) for item in doc):  # a list of CIDRs: the large case, fast
        if doc and str not in spec.types:
            raise NetxfwError("item 1 of %d is a string (%s); a %s entry is %s"
                              % (len(doc), json.dumps(doc[0])[:80], spec.name, spec.entry))
        return {spec.name: [entry for entry in map(str.strip, doc) if entry]}
    out = {} if spec is None else {spec.name: []}
    for index, item in enumerate(doc):
        if isinstance(item, dict) and "kind" in item:
            kind, entry = rules.record_entry(item)
        elif spec is None:
            raise NetxfwError("item %d of %d is %s (%s); without a kind, each item is a record with a 'kind'"
                              % (index + 1, len(doc), _json_type(item), json.dumps(item)[:80]))
        elif isinstance(item, spec.types) and not isinstance(item, bool):
            kind, entry = spec.name, item.strip() if isinstance(item, str) else item
            if entry == "":
                continue
        else:
            raise NetxfwError("item %d of %d is %s (%s); a %s entry is %s"
                              % (index + 1, len(doc), _json_type(item), json.dumps(item)[:80], spec.name, spec.entry))
        if spec is None or kind == spec.name:
            out.setdefault(kind, []).append(entry)
    return out


def _csv_value(line, field, text):
    if field in _CSV_NUMBERS:
        convert, what = _CSV_NUMBERS[field]
        try:
            return convert(text)
        except ValueError:
            raise NetxfwError("CSV line %d: %s must be %s, not %r" % (line, field, what, text))
    if field == "syn_only":
        if text.lower() not in _CSV_BOOLEANS:
            raise NetxfwError("CSV line %d: %s must be true or false, not %r" % (line, field, text))
        return _CSV_BOOLEANS[text.lower()]
    return text


def _parse_csv(text, spec):
    out = {}
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        return out
    unknown = sorted(set(f.strip() for f in reader.fieldnames if f) - set(CSV_FIELDS))
    if unknown:
        raise NetxfwError("unknown CSV column(s) %s; columns are %s" % (", ".join(unknown), ", ".join(CSV_FIELDS)))
    for line, row in enumerate(reader, start=2):
        row = dict((k.strip(), (v or "").strip()) for k, v in row.items() if k)
        name = row.pop("kind", "") or (spec.name if spec else None)
        if name not in rules.KIND:
            raise NetxfwError("CSV line %d: kind must be one of %s" % (line, ", ".join(rules.KINDS)))
        if spec is not None and name != spec.name:
            continue
        kind = rules.KIND[name]
        stray = sorted(field for field, value in row.items() if value and field not in kind.fields)
        if stray:
            raise NetxfwError("CSV line %d: %s rules have no %s (their columns: %s)"
                              % (line, name, ", ".join(stray), ", ".join(kind.fields)))
        record = dict((field, _csv_value(line, field, row[field])) for field in kind.fields if row.get(field))
        if "expires" in kind.fields:
            record.setdefault("expires", None)  # an empty cell: never expires
        record["kind"] = name
        try:
            name, entry = rules.record_entry(record)
        except NetxfwError as exc:
            raise NetxfwError("CSV line %d: %s" % (line, exc))
        out.setdefault(name, []).append(entry)
    return out


def _parse_plain(text, spec):
    plain = " and the ".join(rules.PLAIN_KINDS)
    if spec is None:
        raise NetxfwError("a plain list of CIDRs needs a kind: %s" % " or ".join(rules.PLAIN_KINDS))
    if not spec.plain:
        raise NetxfwError("is not a JSON list (its first non-blank character is not '[') nor CSV (a header line "
                          "naming the columns %s); plain text, one CIDR per line, is only for the %s, %s rules "
                          "need a JSON list or CSV" % (", ".join(CSV_FIELDS), plain, spec.name))
    lines = text.splitlines()
    if "#" in text:
        lines = [line.partition("#")[0] for line in lines]
    return {spec.name: [line for line in map(str.strip, lines) if line]}
