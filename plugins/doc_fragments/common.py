# -*- coding: utf-8 -*-
# Copyright: (c) 2025, netxfw developers
# GNU General Public License v2.0+ (see https://www.gnu.org/licenses/gpl-2.0.txt)
# SPDX-License-Identifier: GPL-2.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The options of module_support.common_argument_spec(), shared by every netxfw module.
    DOCUMENTATION = r"""
options:
  pin_path:
    description:
      - Directory on a BPF filesystem where the programs and maps are pinned.
    type: path
    default: /sys/fs/bpf/netxfw
  state_dir:
    description:
      - Directory holding the desired state (config.json, rules.json) and the run lock.
    type: path
    default: /var/lib/netxfw
"""
