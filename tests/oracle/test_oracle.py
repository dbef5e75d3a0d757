# SPDX-License-Identifier: GPL-2.0-or-later
"""Differential oracle: netxfw against nftables with conntrack, one corpus, same replies.

Every case (policy, corpus item) compares what the two target hosts did with the same frames:
how many datagrams reached the host's stack (DHCP: the client's AF_PACKET view) and which
replies the host sent back. They must agree, except for the deliberate differences, listed with
their reasons in docs/internals.md ("Differential oracle"): this test reads that table, and fails
when a listed difference is no longer seen.

Run as root, under the machine-wide test lock:
    flock /run/netxfw-tests.lock /opt/netxfw-venv/bin/python -m pytest -q -p no:cacheprovider tests/oracle
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fnmatch
import os
import re
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "traffic"))

import corpus  # noqa: E402

DOC = os.path.join(os.path.dirname(os.path.dirname(HERE)), "docs", "internals.md")
DOC_SECTION = "## Differential oracle (tests/oracle)"  # its table of deliberate differences


def deliberate():
    """[(item pattern, policy pattern, reason)] from the table of docs/internals.md."""
    with open(DOC) as f:
        text = f.read()
    rows = []
    for line in text[text.index("\n" + DOC_SECTION + "\n") + 1:].splitlines()[1:]:
        if line.startswith("## "):
            break
        m = re.match(r"^\| `([^`]+)` \| `([^`]+)` \| (.+) \|$", line.strip())
        if m:
            rows.append((m.group(1), m.group(2), m.group(3)))
    return rows


DELIBERATE = deliberate()


def _names(pattern):
    return pattern if isinstance(pattern, tuple) else (pattern,)


def _match(table, policy, name):
    return [row for row in table if fnmatch.fnmatchcase(policy, row[1])
            and any(fnmatch.fnmatchcase(name, p) for p in _names(row[0]))]


def _params():
    return [pytest.param(policy, item.name, id="%s:%s" % (policy, item.name)) for policy, item in corpus.CASES]


@pytest.fixture(scope="module")
def outcome():
    if os.geteuid() != 0:
        pytest.skip("the oracle creates namespaces and loads XDP programs: run as root")
    import oracle
    with oracle.session() as run:
        run.execute()
        return run.results()


def test_tables_name_real_cases():
    """Every pattern of the table matches some case (no stale or misspelt pattern)."""
    for row in DELIBERATE:
        for pattern in _names(row[0]):
            assert any(fnmatch.fnmatchcase(item.name, pattern) and fnmatch.fnmatchcase(policy, row[1])
                       for policy, item in corpus.CASES), (pattern, row)
    assert DELIBERATE, "docs/internals.md lost its table of deliberate differences"


@pytest.mark.parametrize("policy,name", _params())
def test_verdicts_agree(outcome, policy, name):
    got = outcome[(policy, name)]
    why = _match(DELIBERATE, policy, name)
    if why:
        assert got["xfw"] != got["nft"], (
            "documented deliberate difference (%s) no longer seen: netxfw and nftables both give %r; "
            "update docs/internals.md" % (why[0][2], got["xfw"]))
    else:
        assert got["xfw"] == got["nft"], "netxfw %r, nftables %r (delivered datagrams, replies)" % (got["xfw"], got["nft"])
