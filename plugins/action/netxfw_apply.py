# -*- coding: utf-8 -*-
# Copyright: (c) 2025, netxfw developers
# GNU General Public License v2.0+ (see https://www.gnu.org/licenses/gpl-2.0.txt)
# SPDX-License-Identifier: GPL-2.0-or-later
"""Controller side of netxfw_apply: confirm-or-rollback in one task, as
community.general.iptables_state does it. The module applies the change inside a rollback window
the host opened; this plugin drops the connection, reconnects and confirms. If it cannot, the
host rolls the change back by itself; the plugin waits until the host answers again and fails
saying what happened. The window's logic is the host agent's (netxfw confirm): this plugin only
reports it."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import shlex
import time

from ansible.errors import AnsibleConnectionFailure
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

display = Display()

WAIT_SLACK = 120   # seconds, past the host's deadline, to wait for the host to answer again
RETRY_EVERY = 2


def _when(epoch):
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(epoch)))
    except (TypeError, ValueError):
        return "?"


def kept_by_others(report):
    kept = (report or {}).get("kept_changes_by_others") or []
    return "; ".join(kept)


def actions_of(report):
    return "; ".join((report or {}).get("actions") or []) or "no change needed"


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _requires_connection = True

    def _cli(self, args, *command):
        argv = [args.get("cli_path", "/usr/local/sbin/netxfw"),
                "--pin-path", args.get("pin_path", "/sys/fs/bpf/netxfw"),
                "--state-dir", args.get("state_dir", "/var/lib/netxfw"), "--json"] + list(command)
        res = self._low_level_execute_command(" ".join(shlex.quote(str(a)) for a in argv), sudoable=True)
        try:
            data = json.loads(res.get("stdout") or "null")
        except ValueError:
            data = None
        return res.get("rc"), data, (res.get("stderr") or "").strip()

    def run(self, tmp=None, task_vars=None):
        self._supports_check_mode = True
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        args = dict(self._task.args)
        host = task_vars.get("inventory_hostname", "?")
        result.update(self._execute_module(module_name="netxfw.firewall.netxfw_apply", module_args=args,
                                           task_vars=task_vars))
        window = result.get("rollback") or {}
        report = []
        previous = window.get("previous_rollback")
        if previous:
            report.append(
                "WARNING: netxfw on %s: an earlier change (rollback id %s, owner %s) was not confirmed and was "
                "ROLLED BACK at %s (host time): %s." % (host, previous.get("id"), previous.get("owner") or "?",
                                                        _when(previous.get("rolled_back_at")),
                                                        previous.get("reason") or ""))
        if window.get("waited_for"):
            report.append("netxfw on %s: waited for the window(s) %s of another run to close."
                          % (host, ", ".join(window["waited_for"])))
        result["report"] = report
        if result.get("failed"):
            result["msg"] = self._failed_apply(host, result, window, report)
            return result
        if not window.get("id"):
            return result
        outcome = self._confirm(args, window["id"])
        window["confirmed"] = outcome["rc"] == 0
        if outcome["rc"] == 0:
            parts = result.get("parts") or {}
            summary = ", ".join("%s %s" % (name, "changed" if part.get("changed") else "unchanged")
                                for name, part in parts.items())
            report.append("netxfw: change %s CONFIRMED on %s: %s" % (window["id"], host, summary))
            return result
        result["failed"] = True
        result["msg"] = self._unconfirmed(host, args, window["id"], outcome)
        return result

    def _failed_apply(self, host, result, window, report):
        rescue = result.get("rescue") or {}
        msg = "netxfw: the apply FAILED on %s: %s. " % (host, result.get("error") or result.get("msg"))
        if not window.get("id"):
            msg += "netxfw_rollback is off: nothing was rolled back."
        elif rescue.get("rc") == 0:
            msg += "This run's change was ROLLED BACK at once (%s)" % actions_of(rescue.get("report"))
            kept = kept_by_others(rescue.get("report"))
            if kept:
                msg += "; changes made by others meanwhile were kept (%s)" % kept
            msg += "."
        else:
            msg += ("The immediate rollback did not happen (%s); the host's timer rolls the change back at its "
                    "deadline (netxfw rollback-status)." % (rescue.get("stderr") or "no answer"))
        return " ".join(report + [msg])

    def _confirm(self, args, ident):
        """Confirm over a fresh connection; when the host cannot be reached, wait until it can
        (after its own rollback) and ask it what became of the change."""
        connect_timeout = int(args.get("rollback_connect_timeout", 10))
        timeout = int(args.get("rollback_timeout", 30))
        try:
            self._connection.set_option("timeout", connect_timeout)
        except Exception:  # pylint: disable=broad-except
            pass  # connections without a connect timeout
        try:
            self._connection.reset()
        except AttributeError:
            display.warning("netxfw_apply: this connection cannot be reset; the confirmation reuses it")
        try:
            rc, data, err = self._cli(args, "confirm", ident)
            return dict(rc=rc, data=data, stderr=err, unreachable=False)
        except AnsibleConnectionFailure as exc:
            display.vv("netxfw_apply: %s; waiting for the host's rollback" % exc)
        time.sleep(timeout)
        deadline = time.monotonic() + WAIT_SLACK
        last = None
        while True:
            try:
                self._connection.reset()
            except AttributeError:
                pass
            try:
                rc, data, err = self._cli(args, "confirm", ident)
                return dict(rc=rc, data=data, stderr=err, unreachable=True)
            except AnsibleConnectionFailure as exc:
                last = exc
            if time.monotonic() >= deadline:
                return dict(rc=None, data=None, stderr="the host did not answer again within %ds: %s"
                            % (timeout + WAIT_SLACK, last), unreachable=True)
            time.sleep(RETRY_EVERY)

    @staticmethod
    def _unconfirmed(host, args, ident, outcome):
        data = outcome["data"] if isinstance(outcome["data"], dict) else {}
        if outcome["rc"] == 3:
            rolled = data.get("rolled_back") or {}
            msg = ("netxfw: ROLLED BACK on %s. After the apply, the controller could not %s within %ss. The host "
                   "restored the previous state (%s%s)" % (
                       host, "reconnect over SSH" if outcome["unreachable"] else "confirm",
                       args.get("rollback_timeout", 30), actions_of(rolled),
                       ", error: %s" % rolled["error"] if rolled.get("error") else ""))
            kept = kept_by_others(rolled)
            if kept:
                msg += ", keeping the changes others made meanwhile (%s)" % kept
            msg += (", and is reachable again. The policy most likely blocks the controller's SSH. Keep "
                    "netxfw_whitelist_controller true, or open tcp/22 to the controller, and run again. "
                    "Rollback id %s; details: %s." % (ident, json.dumps(rolled, sort_keys=True)))
            return msg
        return ("netxfw: could not confirm change %s on %s (nothing is known to have been rolled back): %s. "
                "Run `netxfw rollback-status` on the host." % (ident, host, outcome["stderr"] or data))
