# -*- coding: utf-8 -*-
# Copyright: (c) 2025, netxfw developers
# GNU General Public License v2.0+ (see https://www.gnu.org/licenses/gpl-2.0.txt)
# SPDX-License-Identifier: GPL-2.0-or-later
"""Controller side of netxfw_host: what the host check compares against, prepared here so that
the host needs one module run. The agent library is packed by the role's own packer
(roles/netxfw/files/netxfw-payload.py), the dependency check is the role's netxfw-host-deps
(its `check` mode), the templates are the role's."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import importlib.util
import os

from ansible import constants as C
from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

try:  # ansible-core 2.19+: file contents must be trusted before they are templated
    from ansible.template import trust_as_template
except ImportError:  # older ansible-core templates any string
    def trust_as_template(text):
        return text

COLLECTION_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROLE_FILES = os.path.join(COLLECTION_ROOT, "roles", "netxfw", "files")


def load_packer():
    spec = importlib.util.spec_from_file_location("netxfw_payload", os.path.join(ROLE_FILES, "netxfw-payload.py"))
    packer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(packer)
    return packer


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _requires_connection = True

    def _render(self, src, task_vars):
        try:
            path = self._find_needle("templates", src)
        except Exception as exc:  # pylint: disable=broad-except
            raise AnsibleActionFail("netxfw_host: template %s not found: %s" % (src, exc))
        text = self._loader.get_text_file_contents(path)
        templar = self._templar.copy_with_new_env(available_variables=task_vars)
        rendered = templar.template(trust_as_template(text))
        rendered = "" if rendered is None else str(rendered)
        return rendered if rendered.endswith("\n") else rendered + "\n"

    def run(self, tmp=None, task_vars=None):
        self._supports_check_mode = True
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        args = dict(self._task.args)
        for private in ("_deps_script", "_payload_sha256", "_files"):
            if private in args:
                raise AnsibleActionFail("netxfw_host: %s is set by the action plugin, not by the task" % private)
        files = []
        for item in args.get("templates") or []:
            if not isinstance(item, dict) or not item.get("src") or not item.get("dest"):
                raise AnsibleActionFail("netxfw_host: every item of templates needs src and dest, not %r" % (item,))
            content = self._render(item["src"], task_vars)
            files.append({"dest": item["dest"], "mode": item.get("mode"), "content": content,
                          "sha256": hashlib.sha256(content.encode("utf-8")).hexdigest()})
        args["_files"] = [{"dest": f["dest"], "mode": f["mode"], "sha256": f["sha256"]} for f in files]
        if args.get("deps", True):
            with open(os.path.join(ROLE_FILES, "netxfw-host-deps"), encoding="utf-8") as stream:
                args["_deps_script"] = stream.read()
        packed = None
        if args.get("agent", True):
            packer = load_packer()
            data = packer.build(COLLECTION_ROOT)
            packed = (data, hashlib.sha256(data).hexdigest())
            args["_payload_sha256"] = packed[1]

        module = self._execute_module(module_name="netxfw.firewall.netxfw_host", module_args=args,
                                      task_vars=task_vars)
        result.update(module)
        if files:
            result["files"] = [{"dest": f["dest"], "mode": f["mode"], "content": f["content"]} for f in files]
        if packed is not None and (result.get("missing") or {}).get("agent"):
            result["payload"] = self._leave_payload(*packed)
        return result

    @staticmethod
    def _leave_payload(data, sha):
        """The packed library in this run's local temp dir (ansible removes it at exit); every host
        of the run writes the same bytes under the same name, atomically."""
        path = os.path.join(C.DEFAULT_LOCAL_TMP, "netxfw-payload-%s.tar.gz" % sha[:16])
        if not os.path.exists(path):
            temp = "%s.%d.tmp" % (path, os.getpid())
            with open(temp, "wb") as stream:
                stream.write(data)
            os.replace(temp, path)
        return {"path": path, "sha256": sha}
