# SPDX-License-Identifier: GPL-2.0-or-later
"""The constants Python mirrors (plugins/module_utils/layout.py, the registry; rules.py) against the data
plane's C (bpf/lib/layout.h, as scripts/gen_bpf_source.py joins it): config indices, counter reasons, source
classes, conntrack states and flags, sanity bits, rule actions, the layout version."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib.util
import os
import re

from ansible_collections.netxfw.firewall.plugins.module_utils import layout, rules

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _c_source():
    spec = importlib.util.spec_from_file_location("gen_bpf_source", os.path.join(ROOT, "scripts", "gen_bpf_source.py"))
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    return gen.joined()


SOURCE = _c_source()


def c_defines(prefix):
    """{name: value} of the object-like `#define PREFIX...` macros, evaluated (integer expressions of literals,
    of macros defined before them and of __builtin_clzll)."""
    out = {}
    for name, expr in re.findall(r"^#define (%s\w*)[ \t]+([^/\n]+?)[ \t]*(?:/\*.*)?$" % prefix, SOURCE, re.M):
        expr = re.sub(r"\b(0[xX][0-9a-fA-F]+|\d+)(?:[uU][lL]{0,2}|[lL]{1,2}[uU]?)\b", r"\1", expr)
        names = dict(out, __builtin_clzll=lambda x: 64 - x.bit_length())
        out[name] = eval(expr, {"__builtins__": {}}, names)  # noqa: S307 (our own header)
    return out


def python_constants(prefix):
    return dict((name, value) for name, value in vars(layout).items() if name.startswith(prefix))


def test_config_indices():
    assert c_defines("CFG_") == python_constants("CFG_")


def test_counter_reasons_in_order():
    body = re.search(r"^enum reason \{(.*?)^\};", SOURCE, re.M | re.S).group(1)
    names = re.findall(r"^\s*R_(\w+)", body, re.M)
    assert re.search(r"^\s*R_%s = 0,$" % names[0], body, re.M)
    assert tuple(n.lower() for n in names) == layout.REASONS
    assert c_defines("NX_REASONS") == {"NX_REASONS": layout.COUNTER_SLOTS}


def test_source_classes():
    classes = dict((name, value) for name, value in python_constants("SRC_").items()
                   if isinstance(value, int) and not name.startswith("SRC_FILTER_"))
    assert c_defines("SRC_") == classes


def test_conntrack_states_and_flags():
    c = c_defines("CT_")
    states = dict((value, name[len("CT_"):].lower()) for name, value in c.items()
                  if not name.startswith(("CT_F_", "CT_STATE_MASK")))
    assert states.pop(0) == "legacy" and layout.CT_STATES[0] == "established"  # layout 1 entries count as established
    assert states == dict((code, name) for code, name in layout.CT_STATES.items() if code)
    assert c["CT_STATE_MASK"] == 0xFF
    for name, value in python_constants("CT_F_").items():
        assert c[name] == value, name


def test_sanity_bits_rule_actions_and_rate_limit_flags():
    assert dict((name[len("SANITY_"):].lower(), value) for name, value in c_defines("SANITY_").items()) == \
        layout.SANITY_BITS
    assert dict((name[len("RULE_"):].lower(), value) for name, value in c_defines("RULE_").items()) == \
        layout.RULE_ACTIONS
    assert c_defines("RL_F_") == {"RL_F_SYN_ONLY": rules.RL_SYN_ONLY}


def test_layout_version():
    assert c_defines("NETXFW_LAYOUT_VERSION") == {"NETXFW_LAYOUT_VERSION": layout.LAYOUT_VERSION}


def test_exact_source_prefilter():
    """Its size (a function of the capacities: bpf/lib/layout.h's macros with the default ones) and hash."""
    c = c_defines("NETXFW_")
    assert c["NETXFW_SRC_FILTER_BITS_PER_SLOT"] == layout.SRC_FILTER_BITS_PER_SLOT
    assert c["NETXFW_SRC_FILTER_MUL"] == layout.SRC_FILTER_MUL
    defaults = dict((name, spec[1]) for name, spec in layout.CAPACITIES.items())
    assert c["NETXFW_SRC_FILTER_WORDS"] == layout.expected_map("src_filter", defaults)[3]
    assert c["NETXFW_SRC_HOST_SIZE"] == layout.expected_map("src4_host", defaults)[3]
    words = layout.src_filter_words(defaults)
    assert words * 64 >= layout.SRC_FILTER_BITS_PER_SLOT * c["NETXFW_SRC_HOST_SIZE"] > words * 32
    assert layout.src_filter_words(dict(defaults, blacklist=1)) < words
