# SPDX-License-Identifier: GPL-2.0-or-later
"""The README's links into the repository resolve (files and #anchors), and its list of test layers is
the folders of tests/."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LINK = re.compile(r"\]\(([^)\s]+)\)")


def read(path):
    with open(os.path.join(REPO, path), encoding="utf-8") as stream:
        return stream.read()


def anchors(markdown):
    """GitHub's heading anchors: lower case, punctuation but '-' and '_' dropped, spaces to '-'."""
    out = set()
    for line in markdown.splitlines():
        match = re.match(r"#+\s+(.*)", line)
        if match:
            out.add(re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-"))
    return out


def test_readme_links_into_the_repository_resolve():
    readme = read("README.md")
    checked = 0
    for target in LINK.findall(readme):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not in the repository
        path, _sep, anchor = target.partition("#")
        path = path or "README.md"
        assert os.path.exists(os.path.join(REPO, path)), target
        if anchor:
            assert anchor in anchors(read(path)), "%s: no heading with the anchor #%s" % (path, anchor)
        checked += 1
    assert checked >= 3


def test_readme_lists_every_test_layer():
    layers = sorted(name for name in os.listdir(os.path.join(REPO, "tests"))
                    if os.path.isdir(os.path.join(REPO, "tests", name)) and not name.startswith((".", "_")))
    readme = read("README.md")
    listed = re.search(r"`tests/`\s*\(([^)]*)\)", readme)
    assert listed, "the README's layout no longer lists the test layers after `tests/`"
    assert sorted(re.findall(r"`(\w+)`", listed.group(1))) == layers
