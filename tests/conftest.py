# Copyright: (c) 2025, netxfw developers
# GNU General Public License v2.0+ (see https://www.gnu.org/licenses/gpl-2.0.txt)
# SPDX-License-Identifier: GPL-2.0-or-later

"""Make `ansible_collections.netxfw.firewall` importable from this checkout.

If the checkout already sits at .../ansible_collections/netxfw/firewall (ansible-test), its
grandparent's parent goes on sys.path; otherwise a temporary symlink tree is built.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import atexit
import os
import shutil
import sys
import tempfile

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _collections_root():
    namespace_dir = os.path.dirname(REPO_ROOT)
    if os.path.basename(REPO_ROOT) == "firewall" and os.path.basename(namespace_dir) == "netxfw" \
            and os.path.basename(os.path.dirname(namespace_dir)) == "ansible_collections":
        return os.path.dirname(os.path.dirname(namespace_dir))
    root = tempfile.mkdtemp(prefix="netxfw-collections-")
    atexit.register(shutil.rmtree, root, True)  # removes the symlink, never what it points to
    os.makedirs(os.path.join(root, "ansible_collections", "netxfw"))
    os.symlink(REPO_ROOT, os.path.join(root, "ansible_collections", "netxfw", "firewall"))
    return root


if "ansible_collections.netxfw.firewall" not in sys.modules:
    sys.path.insert(0, _collections_root())


# ---------------------------------------------------------------- no silent skips in CI
#
# A skip is allowed only for a fact of the machine the suite cannot change (a big-endian host):
# such a test skips with a reason that starts with MACHINE_FACT. Under CI (the CI variable set, as .ci/run does), any
# other skip means a dependency or precondition is missing, and it fails, naming what it needed.

MACHINE_FACT = "machine fact: "


def _in_ci():
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def _skip_reason(longrepr):
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(getattr(longrepr, "longrepr", longrepr))


def _forbid_skip(report):
    reason = _skip_reason(report.longrepr)
    if MACHINE_FACT in reason:
        return
    report.outcome = "failed"
    report.longrepr = "CI allows no skip for a missing dependency or precondition: %s" % reason


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # pylint: disable=unused-argument
    outcome = yield
    report = outcome.get_result()
    if _in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        _forbid_skip(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):  # pylint: disable=unused-argument
    outcome = yield
    report = outcome.get_result()
    if _in_ci() and report.skipped:
        _forbid_skip(report)


# ---------------------------------------------------------------- what may run side by side
#
# scripts/test runs the suite with pytest-xdist (--dist loadgroup). Tests that share fixed names on
# this machine run in one worker, one after the other: the traffic topology (tests/traffic/netns.py,
# namespaces nxt-*, which tests/reload uses too) and the lab (tests/lab.py: nxh*, nxlab0, the role's
# files under /usr/lib/netxfw). Every other module creates uniquely named namespaces and pins (or
# none) and is one group of its own, so its module-scoped fixtures (a compiled program, a topology)
# are built once.

SHARED_RESOURCES = {  # layer -> group, the longest group first
    "integration": "lab",
    "traffic": "nxt-topology",
    "reload": "nxt-topology",
    "sanity": "sanity",  # nothing shared, but long: started early too
}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the xdist_group marks into the node ids
def pytest_collection_modifyitems(config, items):  # pylint: disable=unused-argument
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    groups = {}
    for item in items:
        path = os.path.relpath(str(item.fspath), tests_dir)
        layer = path.split(os.sep, 1)[0]
        groups[item] = SHARED_RESOURCES.get(layer, path)
        item.add_marker(pytest.mark.xdist_group(groups[item]))
    # the long serial groups first, so that the short ones fill the other workers around them
    first = list(dict.fromkeys(SHARED_RESOURCES.values()))
    items.sort(key=lambda item: first.index(groups[item]) if groups[item] in first else len(first))
