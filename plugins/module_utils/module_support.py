# -*- coding: utf-8 -*-
# Copyright: (c) 2025, netxfw developers
# GNU General Public License v2.0+ (see https://www.gnu.org/licenses/gpl-2.0.txt)
# SPDX-License-Identifier: GPL-2.0-or-later

"""Ansible-side support shared by the netxfw modules.

The engine imports nothing from ansible; this file is the one place where the
modules meet it. It holds the argument spec pieces every module shares and
`load_engine()`, which makes sure the interpreter running the module can use
the engine: when it cannot (no BCC bindings, no ctypes), the module respawns
under the system interpreter, where the distributions install them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import sys
import traceback

from ansible.module_utils.common.respawn import has_respawned, probe_interpreters_for_module, respawn_module

try:
    from ansible_collections.netxfw.firewall.plugins.module_utils import engine as _engine
    from ansible_collections.netxfw.firewall.plugins.module_utils import queries as _queries
except ImportError:
    _engine = _queries = None
    ENGINE_IMPORT_ERROR = traceback.format_exc()
else:
    ENGINE_IMPORT_ERROR = None

from ansible_collections.netxfw.firewall.plugins.module_utils import rules
from ansible_collections.netxfw.firewall.plugins.module_utils.errors import NetxfwError

DEFAULT_PIN_PATH = "/sys/fs/bpf/netxfw"
DEFAULT_STATE_DIR = "/var/lib/netxfw"

# Where the distributions install python3-bpfcc / python3-bcc: the "system python".
SYSTEM_INTERPRETERS = ["/usr/bin/python3", "/usr/libexec/platform-python", "/usr/bin/python"]

BCC_HINT = (
    "the BCC Python bindings (module 'bcc') are not importable by %s nor by any system interpreter (%s). "
    "Install the distribution package: python3-bpfcc on Debian/Ubuntu, python3-bcc on RHEL/Fedora/CentOS "
    "(never the unrelated PyPI package named 'bcc'). They exist only for the system python3, "
    "so pointing ansible_python_interpreter at it also works."
)

CTYPES_HINT = (
    "the Python interpreter %s has no working ctypes module and no system interpreter (%s) has one; "
    "netxfw reaches libbpf through ctypes. Use a complete CPython build, e.g. the distribution's python3."
)


def common_argument_spec():
    """The options every netxfw module takes: where the pins and the JSON state live."""
    return dict(
        pin_path=dict(type="path", default=DEFAULT_PIN_PATH),
        state_dir=dict(type="path", default=DEFAULT_STATE_DIR),
    )


def _importable(name, attribute=None):
    """True if this interpreter can import `name` (and it has `attribute`: the PyPI package
    named bcc is an unrelated library without bcc.BPF)."""
    try:
        imported = __import__(name)
    except Exception:  # pylint: disable=broad-except
        return False
    return attribute is None or hasattr(imported, attribute)


def _respawn_or_fail(module, python_module, hint):
    """Respawn under a system interpreter that can import `python_module`; never returns."""
    if not has_respawned():
        interpreter = probe_interpreters_for_module(SYSTEM_INTERPRETERS, python_module)
        if interpreter:
            respawn_module(interpreter)  # exits with the respawned module's return code
    module.fail_json(msg=hint % (sys.executable, ", ".join(SYSTEM_INTERPRETERS)))


def load_engine(module, need_bcc=False):
    """The netxfw engine module, usable by this interpreter.

    need_bcc: the task may compile the data plane (netxfw_program, state=present), which needs
    the BCC bindings; every other operation only needs libbpf through ctypes.
    Respawns the module under the system interpreter when this one lacks what is needed, and
    fails with a message naming the package to install when no interpreter has it.
    """
    if not _importable("ctypes"):
        _respawn_or_fail(module, "ctypes", CTYPES_HINT)
    if need_bcc and not _importable("bcc", "BPF"):
        _respawn_or_fail(module, "bcc", BCC_HINT)
    if _engine is None:
        module.fail_json(msg="cannot import the netxfw engine (plugins/module_utils/engine.py)",
                         exception=ENGINE_IMPORT_ERROR)
    return _engine


def load_queries(module):
    """The engine's read-only views (queries.py), with the same checks as load_engine."""
    load_engine(module)
    return _queries


def run_engine(module, call, what):
    """Run call() and turn failures into fail_json: NetxfwError messages as they are (they say
    what to do), anything else as an unexpected error with its traceback."""
    try:
        return call()
    except NetxfwError as exc:
        module.fail_json(msg=str(exc))
    except Exception as exc:  # pylint: disable=broad-except
        module.fail_json(msg="%s failed unexpectedly: %s: %s" % (what, type(exc).__name__, exc),
                         exception=traceback.format_exc())


# ---------------------------------------------------------------- rule entries in results and diffs
def clean_entries(entries):
    """Strip string entries and drop empty ones ('a, b,' from the command line)."""
    out = []
    for entry in entries or []:
        if isinstance(entry, str):
            entry = entry.strip()
            if not entry:
                continue
        out.append(entry)
    return out


def compact_diff(kind, added, removed, changed, limit=None):
    """Removed (before) and added (after) entries, one per line; at most `limit` of each (None: all)."""
    header = "netxfw %s" % kind
    if changed and not added and not removed:
        # Only the live maps lagged behind rules.json and were brought back in step.
        header += " (maps resynchronised from rules.json)"

    def side(entries, verb):
        count = "%s: %d %s" % (header, len(entries), verb)
        if limit is not None and len(entries) > limit:
            entries = entries[:limit]
            count += ", the first %d shown" % limit
        return "".join(rules.describe(kind, e) + "\n" for e in entries), count

    before, before_header = side(removed, "removed")
    after, after_header = side(added, "added")
    return {"before": before, "after": after, "before_header": before_header, "after_header": after_header}


def listed(entries, limit):
    """(at most `limit` entries, whether some were left out)."""
    if len(entries) > limit:
        return list(entries[:limit]), True
    return list(entries), False
