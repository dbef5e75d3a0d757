# -*- coding: utf-8 -*-
# Copyright: (c) 2025, netxfw developers
# GNU General Public License v2.0+ (see https://www.gnu.org/licenses/gpl-2.0.txt)
# SPDX-License-Identifier: GPL-2.0-or-later

"""Action plugin of netxfw.firewall.netxfw_rule: a long `entries:` list without Ansible's cost.

As a task argument a list of 100k entries is serialised into the module, validated and echoed back
in the result (several seconds). From payload.SEND_AS_FILE_FROM entries on this plugin instead
1. computes the request digest (payload.request_digest, the key of the host's request cache) and
   runs the module with only that digest: when the host applied this very request last and nothing
   changed since, that run is the answer and the list is never sent;
2. otherwise sends the list as one compressed file (payload.encode, with its count and digest,
   checked on the host) and runs the module on it.
The module's results, check mode, diff and errors are those of the same task with `entries:`;
`entries_transfer` says which way was taken. Shorter lists, strings, lists that are no JSON and
async tasks take the plain path, as do tasks that also give `src` (the module then refuses them).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible.utils.vars import merge_hash

from ansible_collections.netxfw.firewall.plugins.module_utils.payload import (
    SEND_AS_FILE_FROM,
    clean_entries,
    encode,
    request_digest,
)

INTERNAL_OPTIONS = ("entries_digest", "entries_file")


class ActionModule(ActionBase):

    _supports_check_mode = True
    _supports_async = True

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp  # tmp no longer has any effect
        wrap_async = self._task.async_val and not self._connection.has_native_async
        args = dict(self._task.args)
        try:
            plan = None if wrap_async else self._plan(args)
            if plan is None:
                return merge_hash(result, self._execute_module(module_args=args, task_vars=task_vars,
                                                               wrap_async=wrap_async))
            return merge_hash(result, self._send(args, plan, task_vars))
        finally:
            if not wrap_async:
                self._remove_tmp_path(self._connection._shell.tmpdir)

    @staticmethod
    def _plan(args):
        """(cleaned entries, request digest or None, compressed file) for a long list, else None."""
        entries = args.get("entries")
        if not isinstance(entries, list) or len(entries) < SEND_AS_FILE_FROM:
            return None
        if any(args.get(name) is not None for name in ("src",) + INTERNAL_OPTIONS):
            return None  # the module says what is wrong with the task
        try:
            exclusive = boolean(args.get("exclusive", False), strict=True)
        except TypeError:
            return None  # likewise
        entries = clean_entries(list(entries))
        # the values the module would give the engine: its defaults, a ttl given at all means a ttl
        digest = request_digest(args.get("kind"), entries, args.get("state", "present"), exclusive,
                                args.get("ttl"))
        try:
            data = encode(entries, digest)
        except (TypeError, ValueError):
            return None  # not JSON (a YAML date, say): the module converts it as it always did
        return entries, digest, data

    def _send(self, args, plan, task_vars):
        entries, digest, data = plan
        base = dict((k, v) for k, v in args.items() if k != "entries")
        transfer = {"mode": "cache", "entries": len(entries), "bytes": 0}
        if digest is not None:
            answer = self._execute_module(module_args=dict(base, entries_digest=digest), task_vars=task_vars)
            if not answer.pop("entries_needed", False):
                if not answer.get("failed"):
                    answer["entries_transfer"] = transfer
                return answer  # the request cache answered, or the task is wrong (the module's message)
        tmpdir = self._connection._shell.tmpdir or self._make_tmp_path()
        remote = self._connection._shell.join_path(tmpdir, "netxfw-entries.json.gz")
        self._transfer_data(remote, data)
        self._fixup_perms2((tmpdir, remote))
        module_args = dict(base, entries_file=remote)
        if digest is not None:
            module_args["entries_digest"] = digest
        answer = self._execute_module(module_args=module_args, task_vars=task_vars)
        if not answer.get("failed"):
            transfer.update(mode="file", bytes=len(data))
            answer["entries_transfer"] = transfer
        return answer
