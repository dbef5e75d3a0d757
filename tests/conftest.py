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
