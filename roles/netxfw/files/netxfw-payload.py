#!/usr/bin/env python
# SPDX-License-Identifier: GPL-2.0-or-later
"""Controller side of the netxfw role: pack the host agent's library into one reproducible
tarball (same sources -> same bytes -> same sha256), so a host needs one `copy` round trip to
find out it is up to date, instead of one per file.

    netxfw-payload.py COLLECTION_ROOT OUTPUT_DIR   -> prints {"path": ..., "sha256": ...}

Contents: netxfw_engine/*.py (plugins/module_utils), netxfw_agent/** (agent/netxfw_agent),
bin/netxfw (agent/bin/netxfw). No __pycache__.
"""
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile


def entries(root):
    sources = [("netxfw_engine", os.path.join(root, "plugins", "module_utils")),
               ("netxfw_agent", os.path.join(root, "agent", "netxfw_agent"))]
    for prefix, top in sources:
        for directory, dirs, files in os.walk(top):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                if name.endswith((".pyc", ".pyo")):
                    continue
                full = os.path.join(directory, name)
                yield os.path.join(prefix, os.path.relpath(full, top)), full, 0o644
    yield "bin/netxfw", os.path.join(root, "agent", "bin", "netxfw"), 0o755


def build(root):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for arcname, full, mode in entries(root):
            with open(full, "rb") as stream:
                data = stream.read()
            info = tarfile.TarInfo(arcname)
            info.size, info.mode, info.mtime = len(data), mode, 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw.getvalue())
    return packed.getvalue()


def main():
    root, outdir = sys.argv[1], sys.argv[2]
    data = build(os.path.realpath(root))
    sha = hashlib.sha256(data).hexdigest()
    os.makedirs(outdir, exist_ok=True)
    path = os.path.join(outdir, "netxfw-payload-%s.tar.gz" % sha[:16])
    if not os.path.exists(path):
        temp = "%s.%d.tmp" % (path, os.getpid())
        with open(temp, "wb") as stream:
            stream.write(data)
        os.replace(temp, path)
    json.dump({"path": path, "sha256": sha}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
