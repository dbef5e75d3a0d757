# SPDX-License-Identifier: GPL-2.0-or-later
"""Names shared by the agent tests and their conftest (a test module must not import
`conftest`: with several test folders, another folder's conftest can answer)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOST4, PEER4 = "198.51.100.1", "198.51.100.2"
HOST6, PEER6 = "2001:db8:a9::1", "2001:db8:a9::2"
