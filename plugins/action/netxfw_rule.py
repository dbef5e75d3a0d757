# -*- coding: utf-8 -*-
# Copyright: (c) 2025, netxfw developers
# GNU General Public License v2.0+ (see https://www.gnu.org/licenses/gpl-2.0.txt)
# SPDX-License-Identifier: GPL-2.0-or-later

"""Action plugin of netxfw.firewall.netxfw_rule: a long `entries:` list without Ansible's cost.

As a task argument a list of 100k entries is templated item by item, serialised into the module,
validated and echoed back in the result (several seconds). This plugin instead
0. templates `entries` itself (finalize_task_arg): a list of plain strings that holds no template is
   taken as it is, in a few C passes over the whole list; anything else is templated as Ansible does;
1. from payload.SEND_AS_FILE_FROM entries on, computes the request digest (payload.request_digest,
   the key of the host's request cache) and runs the module with only that digest: when the host
   applied this very request last and nothing changed since, that run is the answer and the list is
   never sent;
2. otherwise sends the list as one compressed file (payload.encode, with its count and digest,
   checked on the host) and runs the module on it.
`entries` given as one string of several lines is the text of a src file (one entry per line, or
any other format src takes): it goes the same way, digested as the host digests a src file
(payload.file_digest) and parsed on the host by the src parser.
The module's results, check mode, diff and errors are those of the same task with `entries:`;
`entries_transfer` says which way was taken. Shorter lists, lists that are no JSON and async tasks
take the plain path, as do tasks that also give `src` (the module then refuses them).
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
    encode_text,
    file_digest,
    request_digest,
)

try:
    from ansible.template import trust_as_template
except ImportError:  # ansible-core before 2.19: no tagged strings (and finalize_task_arg is never called)
    trust_as_template = str

INTERNAL_OPTIONS = ("entries_digest", "entries_file")
# the types of a string that templating may return as it is: str, and str carrying data tags (its
# origin, its trust as a template) in ansible-core 2.19
PLAIN_STRING_TYPES = frozenset((str, type(trust_as_template("x"))))


def plain_strings(items):
    """The list `items` as templating gives it when every item is a string that cannot be a template
    (no '{', which starts every Jinja variable, block or comment, and no '#jinja2:' override header):
    the same strings, as plain str; None when some item is anything else. Whole-list C passes, no
    Python call per item."""
    if not items:
        return []
    if not set(map(type, items)) <= PLAIN_STRING_TYPES:
        return None
    joined = "\n".join(items)
    if "{" in joined or "#jinja2:" in joined or joined.count("\n") != len(items) - 1:
        return None
    return joined.split("\n")


def is_text(entries):
    """`entries` given as one string of several lines: the text of a src file."""
    return isinstance(entries, str) and "\n" in entries


class ActionModule(ActionBase):

    _supports_check_mode = True
    _supports_async = True

    @classmethod
    def finalize_task_arg(cls, name, value, templar, context):
        """Template the task's `entries` without a Python call per item when it cannot hold a template.

        The default templates a list item by item (about 3 s for 100k strings) and hands back strings
        carrying tags that are then pickled back with the task (about 0.5 s). A string argument is
        resolved up to the container it gives (a list from '{{ blocklist }}' or a lookup), then the
        list is checked whole (plain_strings). Anything else, a list of mappings or one item that may be
        a template, goes the default way, from the value as given (an expression is evaluated again
        then, as the default path evaluates it)."""
        resolve = getattr(templar, "resolve_to_container", None)  # an experimental API: the default if it moved
        if name == "entries" and value is not None and resolve is not None:
            resolved = resolve(value) if isinstance(value, str) else value
            if isinstance(resolved, str):
                return resolved  # a string result is final (resolve_to_container stops at containers only)
            if isinstance(resolved, list):
                fast = plain_strings(list(list.__iter__(resolved)))  # the raw items: no lazy templating
                if fast is not None:
                    return fast
        return super(ActionModule, cls).finalize_task_arg(name, value, templar, context)

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp  # tmp no longer has any effect
        wrap_async = self._task.async_val and not self._connection.has_native_async
        args = dict(self._task.args)
        if wrap_async and is_text(args.get("entries")):
            result.update(failed=True, msg="entries given as one text of several lines needs the netxfw_rule action "
                                           "plugin, which does not run async tasks: give a list, or src")
            return result
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
        """(count of entries or None for a text, request digest or None, a function making the
        compressed file, whether to ask the host's cache first) for a long list or a text, else None."""
        entries = args.get("entries")
        text = is_text(entries)
        if not text and (not isinstance(entries, list) or len(entries) < SEND_AS_FILE_FROM):
            return None
        if any(args.get(name) is not None for name in ("src",) + INTERNAL_OPTIONS):
            return None  # the module says what is wrong with the task
        try:
            exclusive = boolean(args.get("exclusive", False), strict=True)
        except TypeError:
            return None  # likewise
        # the values the module would give the engine: its defaults, a ttl given at all means a ttl
        request = (args.get("kind"), args.get("state", "present"), exclusive, args.get("ttl"))
        if text:
            data = entries.encode("utf-8", "surrogatepass")  # the host says what is wrong with a lone surrogate
            digest = file_digest(request[0], data, *request[1:])
            return None, digest, lambda: encode_text(entries, digest), entries.count("\n") + 1 >= SEND_AS_FILE_FROM
        entries = clean_entries(entries)
        digest = request_digest(request[0], entries, *request[1:])
        return len(entries), digest, lambda: encode(entries, digest), True

    def _send(self, args, plan, task_vars):
        count, digest, make_file, ask_first = plan
        base = dict((k, v) for k, v in args.items() if k != "entries")
        transfer = {"mode": "cache", "entries": count, "bytes": 0}
        if digest is not None and ask_first:
            answer = self._execute_module(module_args=dict(base, entries_digest=digest), task_vars=task_vars)
            if not answer.pop("entries_needed", False):
                if not answer.get("failed"):
                    answer["entries_transfer"] = transfer
                return answer  # the request cache answered, or the task is wrong (the module's message)
        try:
            data = make_file()
        except (TypeError, ValueError):
            # not JSON (a YAML date, say): the module converts it as it always did
            return self._execute_module(module_args=args, task_vars=task_vars)
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
