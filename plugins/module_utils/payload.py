# -*- coding: utf-8 -*-
# Copyright: (c) 2025, netxfw developers
# GNU General Public License v2.0+ (see https://www.gnu.org/licenses/gpl-2.0.txt)
# SPDX-License-Identifier: GPL-2.0-or-later

"""The entries of a netxfw_rule request on their way from the controller to the host.

One implementation for both ends, so that they agree byte for byte: how entries are cleaned,
the request digest that the host's request cache (<state_dir>/.requests.json) is keyed on, and
the compressed file in which the netxfw_rule action plugin sends a large list. Imports nothing
from ansible (the engine uses it on the host, the action plugin on the controller).

The file: gzip of the JSON document {"format": 1, "count": N, "digest": <request digest or
null>, "entries": [...]}, or for `entries` given as one text (the content of a src file)
{"format": 1, "count": <characters>, "digest": <its file_digest or null>, "text": "..."}; the reader
checks the format, the count and the digest, so a file cut short or meant for another request fails
instead of applying a wrong list.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import gzip
import hashlib
import json

from .errors import NetxfwError

FORMAT = 1
# From this many entries on, the action plugin asks the host's request cache first and sends the
# list as a compressed file; a shorter list goes as a task argument (one round trip instead of two).
SEND_AS_FILE_FROM = 2000


def clean_entries(entries):
    """Strip string entries and drop empty ones ('a, b,' from the command line)."""
    try:
        return list(filter(None, map(str.strip, entries or [])))  # all strings: no Python call per entry
    except TypeError:
        pass  # a mapping among them
    out = []
    for entry in entries or []:
        if isinstance(entry, str):
            entry = entry.strip()
            if not entry:
                continue
        out.append(entry)
    return out


def request_digest(kind, entries, state, exclusive, ttl):
    """A digest of an apply_rules request, or None when the same request may mean something else
    next time (a ttl counts from now) or cannot be digested."""
    if ttl is not None:
        return None
    count = len(entries) if isinstance(entries, list) else -1  # with it, no two lists of strings join alike
    digest = hashlib.sha256(("%s\0%s\0%s\0%d\0" % (kind, state, bool(exclusive), count)).encode())
    joined = None
    if isinstance(entries, list):
        try:
            joined = "\0".join(entries)  # a TypeError unless every entry is a str: the check in C
        except TypeError:
            pass
    try:
        if joined is not None:
            digest.update(b"str\0" + joined.encode("utf-8", "surrogatepass"))
        else:
            digest.update(b"json\0" + json.dumps(entries, sort_keys=True, separators=(",", ":")).encode())
    except (TypeError, ValueError):
        return None
    return digest.hexdigest()


def file_digest(kind, data, state, exclusive, ttl):
    """The digest of a request whose entries are the bytes `data` of a src file, or None (with a ttl):
    the request cache remembers it beside the entries' request_digest, so that a file unchanged since
    it was applied is answered without being parsed. Never equal to a request_digest."""
    if ttl is not None:
        return None
    digest = hashlib.sha256(("src\0%s\0%s\0%s\0" % (kind, state, bool(exclusive))).encode())
    digest.update(data)
    return "src:" + digest.hexdigest()


def encode(entries, digest):
    """The compressed file's bytes for a list of (cleaned) entries and their request digest.
    Raises TypeError or ValueError when an entry is no JSON value."""
    document = {"format": FORMAT, "count": len(entries), "digest": digest, "entries": entries}
    text = json.dumps(document, separators=(",", ":"), allow_nan=False)
    # level 1: a 100k-entry list shrinks about 4x in tens of milliseconds; level 9 gains a few percent
    return gzip.compress(text.encode("utf-8"), compresslevel=1, mtime=0)


def encode_text(text, digest):
    """The compressed file's bytes for `entries` given as one text (read on the host as a src file is)
    and its file_digest."""
    document = {"format": FORMAT, "count": len(text), "digest": digest, "text": text}
    return gzip.compress(json.dumps(document, separators=(",", ":")).encode("utf-8"), compresslevel=1, mtime=0)


def decode(data, kind, state, exclusive, ttl):
    """The entries of a file made by encode() for this request, or the bytes of the text of one made
    by encode_text(). Raises NetxfwError."""
    try:
        document = json.loads(gzip.decompress(data).decode("utf-8"))
    except (OSError, EOFError, ValueError) as exc:  # gzip.BadGzipFile is an OSError
        raise NetxfwError("the entries file sent by the netxfw_rule action plugin is damaged (%s); run the task again"
                          % exc)
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise NetxfwError("the entries file sent by the netxfw_rule action plugin has an unknown format; the "
                          "controller's netxfw.firewall collection and this module must be the same version")
    if "text" in document:
        return _decode_text(document, kind, state, exclusive, ttl)
    entries = document.get("entries")
    if not isinstance(entries, list) or document.get("count") != len(entries):
        raise NetxfwError("the entries file sent by the netxfw_rule action plugin is incomplete; run the task again")
    digest = document.get("digest")
    if digest is not None and digest != request_digest(kind, entries, state, exclusive, ttl):
        raise NetxfwError("the entries file sent by the netxfw_rule action plugin does not match its digest (another "
                          "kind, state or exclusive than the task's); run the task again")
    return entries


def _decode_text(document, kind, state, exclusive, ttl):
    text = document["text"]
    if not isinstance(text, str) or document.get("count") != len(text):
        raise NetxfwError("the entries file sent by the netxfw_rule action plugin is incomplete; run the task again")
    data = text.encode("utf-8", "surrogatepass")
    digest = document.get("digest")
    if digest is not None and digest != file_digest(kind, data, state, exclusive, ttl):
        raise NetxfwError("the entries file sent by the netxfw_rule action plugin does not match its digest (another "
                          "kind, state or exclusive than the task's); run the task again")
    return data
