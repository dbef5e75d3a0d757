# Copyright: (c) 2025, netxfw developers
# GNU General Public License v2.0+ (see https://www.gnu.org/licenses/gpl-2.0.txt)
# SPDX-License-Identifier: GPL-2.0-or-later

"""Module documentation, argument specs and module-side helpers; no kernel needed."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re

import pytest
import yaml

from ansible_collections.netxfw.firewall.plugins.module_utils import engine, layout, module_support, program_settings, rules
from ansible_collections.netxfw.firewall.plugins.modules import netxfw_apply, netxfw_info, netxfw_program, netxfw_reload, netxfw_rule
from ansible_collections.netxfw.firewall.plugins.doc_fragments import common as common_fragment

FRAGMENTS = {"common": common_fragment}
MODULES = {"netxfw_program": netxfw_program, "netxfw_rule": netxfw_rule, "netxfw_info": netxfw_info,
           "netxfw_reload": netxfw_reload}
SPEC_KEYS = ("type", "default", "choices", "required", "elements")


def doc_options_as_spec(options):
    """DOCUMENTATION options -> the argument_spec they describe."""
    spec = {}
    for name, doc in options.items():
        entry = dict((key, doc[key]) for key in SPEC_KEYS if key in doc)
        if "suboptions" in doc:
            entry["options"] = doc_options_as_spec(doc["suboptions"])
        spec[name] = entry
    return spec


def normalized_spec(spec):
    out = {}
    for name, entry in spec.items():
        entry = dict(entry)
        if not entry.get("required"):
            entry.pop("required", None)
        if entry.get("default") is None:
            entry.pop("default", None)
        if "options" in entry:
            entry["options"] = normalized_spec(entry["options"])
        out[name] = entry
    return out


def documented_options(doc):
    """The module's own options plus those of its netxfw doc fragments."""
    options = dict(doc["options"])
    for fragment in doc.get("extends_documentation_fragment", []):
        assert fragment.startswith("netxfw.firewall."), fragment
        options.update(yaml.safe_load(FRAGMENTS[fragment.split(".")[-1]].ModuleDocFragment.DOCUMENTATION)["options"])
    return options


@pytest.mark.parametrize("name", sorted(MODULES))
def test_documentation_options_match_argument_spec(name):
    module = MODULES[name]
    doc = yaml.safe_load(module.DOCUMENTATION)
    assert doc["module"] == name
    assert normalized_spec(doc_options_as_spec(documented_options(doc))) == normalized_spec(module.argument_spec())


@pytest.mark.parametrize("name", sorted(MODULES))
def test_examples_and_return_parse_and_use_fqcn(name):
    module = MODULES[name]
    examples = yaml.safe_load(module.EXAMPLES)
    assert examples, "no examples"
    for task in examples:
        modules = [key for key in task if key not in ("name", "register", "when", "check_mode", "diff")]
        assert len(modules) == 1, task
        assert "." in modules[0], "example without FQCN: %r" % (task,)
    assert "netxfw.firewall.%s:" % name in module.EXAMPLES
    returned = yaml.safe_load(module.RETURN)
    assert isinstance(returned, dict) and returned


@pytest.mark.parametrize("name", sorted(MODULES))
def test_shared_options_come_from_module_support(name):
    spec = MODULES[name].argument_spec()
    for option, entry in module_support.common_argument_spec().items():
        assert spec[option] == entry
    assert spec["pin_path"] == {"type": "path", "default": "/sys/fs/bpf/netxfw"}
    assert spec["state_dir"] == {"type": "path", "default": "/var/lib/netxfw"}
    assert module_support.DEFAULT_PIN_PATH == engine.DEFAULT_PIN_PATH
    assert module_support.DEFAULT_STATE_DIR == engine.DEFAULT_STATE_DIR


def test_program_defaults_are_the_engine_defaults():
    spec = netxfw_program.argument_spec()
    for setting in netxfw_program.SETTINGS:
        if setting in ("interfaces", "capacity"):
            continue
        if setting in ("conntrack_timeouts", "sanity"):
            defaults = dict((name, opt.get("default")) for name, opt in spec[setting]["options"].items()
                            if opt.get("default") is not None)
            assert defaults == program_settings.PROGRAM_DEFAULTS[setting], setting
            continue
        assert spec[setting]["default"] == program_settings.PROGRAM_DEFAULTS[setting], setting
    capacity = spec["capacity"]["options"]
    assert sorted(capacity) == sorted(layout.CAPACITIES)
    for name, macros_and_default in layout.CAPACITIES.items():
        assert capacity[name]["default"] == macros_and_default[1]
    assert spec["xdp_mode"]["choices"] == list(program_settings.XDP_MODES)
    assert sorted(spec["policy"]["choices"]) == sorted(layout.POLICY_CODES)
    assert set(netxfw_program.SETTINGS) == set(program_settings.PROGRAM_DEFAULTS)


def test_rule_kinds_are_the_engine_kinds():
    assert sorted(netxfw_rule.argument_spec()["kind"]["choices"]) == sorted(engine.RULE_KINDS)
    # DOCUMENTATION stays literal (ansible-test reads it without running the module): it must list the registry
    assert yaml.safe_load(netxfw_rule.DOCUMENTATION)["options"]["kind"]["choices"] == list(rules.KINDS)


def test_apply_takes_one_list_per_rule_kind():
    spec = netxfw_apply.argument_spec()
    options = yaml.safe_load(netxfw_apply.DOCUMENTATION)["options"]
    for kind in rules.KINDS:
        assert spec[kind]["type"] == options[kind]["type"] == "list", kind
        assert spec[kind]["default"] == options[kind]["default"] == [], kind
    assert netxfw_apply.RULE_PARTS == rules.KINDS


def test_clean_entries_drops_blank_command_line_items():
    assert netxfw_rule.clean_entries(["203.0.113.9", " 203.0.113.0/28 ", "", {"cidr": "x"}]) == [
        "203.0.113.9", "203.0.113.0/28", {"cidr": "x"}]
    assert netxfw_rule.clean_entries(None) == []


def test_compact_diff_lists_only_changes():
    added = [{"cidr": "203.0.113.9/32", "expires": None}, {"cidr": "2001:db8::/48", "expires": 1767225600.0}]
    removed = [{"cidr": "203.0.113.7/32", "expires": None}]
    diff = netxfw_rule.compact_diff("blacklist", added, removed, True)
    assert diff == {
        "before": "203.0.113.7/32\n",
        "after": "203.0.113.9/32\n2001:db8::/48 expires 2026-01-01T00:00:00Z\n",
        "before_header": "netxfw blacklist: 1 removed",
        "after_header": "netxfw blacklist: 2 added",
    }
    port = netxfw_rule.compact_diff(
        "port", [{"source": "any", "proto": "tcp", "ports": "8000-8100", "action": "deny"}], [], True)
    assert port["after"] == "tcp 8000-8100 from any deny\n" and port["before"] == ""
    assert netxfw_rule.compact_diff("whitelist", [], [], False)["after"] == ""
    assert "resynchronised" in netxfw_rule.compact_diff("whitelist", [], [], True)["after_header"]


def test_compact_diff_stays_compact_for_large_pushes():
    added = ["198.51.%d.%d/32" % (i // 256, i % 256) for i in range(100000)]
    diff = netxfw_rule.compact_diff("whitelist", added, [], True)
    assert diff["after"].count("\n") == 100000 and diff["before"] == ""


class FakeModule:
    class Failed(Exception):
        pass

    def __init__(self):
        self.failed = None

    def fail_json(self, **kwargs):
        self.failed = kwargs
        raise self.Failed(kwargs["msg"])


class Respawned(Exception):
    pass


@pytest.fixture
def respawn(monkeypatch):
    calls = {"probe": [], "respawn": []}

    def probe(paths, name):
        calls["probe"].append((list(paths), name))
        return calls.get("interpreter")

    def respawn_module(path):
        calls["respawn"].append(path)
        raise Respawned(path)

    monkeypatch.setattr(module_support, "probe_interpreters_for_module", probe)
    monkeypatch.setattr(module_support, "respawn_module", respawn_module)
    monkeypatch.setattr(module_support, "has_respawned", lambda: calls.get("respawned", False))
    return calls


def test_load_engine_without_bcc_when_not_needed(respawn, monkeypatch):
    monkeypatch.setattr(module_support, "_importable", lambda name, attribute=None: name != "bcc")
    assert module_support.load_engine(FakeModule()) is engine
    assert respawn["probe"] == []


def test_load_engine_respawns_under_the_system_python_for_bcc(respawn, monkeypatch):
    monkeypatch.setattr(module_support, "_importable", lambda name, attribute=None: name != "bcc")
    respawn["interpreter"] = "/usr/bin/python3"
    with pytest.raises(Respawned):
        module_support.load_engine(FakeModule(), need_bcc=True)
    assert respawn["probe"] == [(["/usr/bin/python3", "/usr/libexec/platform-python", "/usr/bin/python"], "bcc")]
    assert respawn["respawn"] == ["/usr/bin/python3"]


@pytest.mark.parametrize("respawned, interpreter", [(False, None), (True, "/usr/bin/python3")])
def test_load_engine_fails_naming_the_distribution_package(respawn, monkeypatch, respawned, interpreter):
    monkeypatch.setattr(module_support, "_importable", lambda name, attribute=None: name != "bcc")
    respawn["respawned"], respawn["interpreter"] = respawned, interpreter
    module = FakeModule()
    with pytest.raises(FakeModule.Failed):
        module_support.load_engine(module, need_bcc=True)
    assert respawn["respawn"] == []
    msg = module.failed["msg"]
    assert "python3-bpfcc" in msg and "python3-bcc" in msg
    assert not re.search(r"pip3? install", msg)


def test_importable_checks_the_attribute():
    assert module_support._importable("json", "dumps")
    assert not module_support._importable("json", "no_such_thing")
    assert not module_support._importable("no_such_module_netxfw")


def test_run_engine_turns_errors_into_fail_json():
    module = FakeModule()

    def bad_cidr():
        raise engine.NetxfwError("bad CIDR")

    with pytest.raises(FakeModule.Failed):
        module_support.run_engine(module, bad_cidr, "x")
    assert module.failed == {"msg": "bad CIDR"}
    with pytest.raises(FakeModule.Failed):
        module_support.run_engine(module, lambda: {}["missing"], "netxfw_rule")
    assert module.failed["msg"].startswith("netxfw_rule failed unexpectedly: KeyError")
    assert "Traceback" in module.failed["exception"]
    assert module_support.run_engine(module, lambda: 42, "x") == 42
