# Copyright: (c) 2025, netxfw developers
# GNU General Public License v2.0+ (see https://www.gnu.org/licenses/gpl-2.0.txt)
# SPDX-License-Identifier: GPL-2.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class NetxfwError(Exception):
    """A failure the user can act on.

    The message is shown as is: it says what is wrong and how to fix it.
    """
