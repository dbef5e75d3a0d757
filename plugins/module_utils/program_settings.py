# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-2.0-or-later
"""The program's settings (config.json): defaults, normalisation, and the runtime part of them
that lives in the config map (applied from the next packet, no reload).

Strict about types: a setting is a real boolean, a real integer or a string, never a value
that merely converts to one (the string "false" is not false). The modules get their types
from Ansible's argument spec; the agent passes JSON through. Imports nothing from ansible.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from . import layout
from .errors import NetxfwError

# seconds per conntrack state (tcp_established is conntrack_timeout)
CT_TIMEOUT_DEFAULTS = {"tcp_syn": 60, "tcp_fin": 30, "udp": 30, "udp_stream": 180, "icmp": 30}
# protocol sanity switches: on where no legitimate packet can trip them
SANITY_DEFAULTS = {"bogon": False, "fragments": False, "tcp_flags": True, "land": True}

PROGRAM_DEFAULTS = {
    "interfaces": [],
    "xdp_mode": "auto",
    "policy": "allow",
    "conntrack": True,
    # established TCP: netfilter's nf_conntrack_tcp_timeout_established (5 days). A flow this host opened
    # whose peer alone speaks next (an idle ssh session, a push after a long silence) must still get in.
    "conntrack_timeout": 432000,
    "icmp_rate": 0,
    "icmp_burst": 0,
    # seconds per conntrack state; tcp_established defaults to conntrack_timeout (the two are one setting)
    "conntrack_timeouts": dict(CT_TIMEOUT_DEFAULTS),
    # protocol sanity switches (docs/internals.md, "Protocol sanity")
    "sanity": dict(SANITY_DEFAULTS),
    # global bucket of the rate-limit stage (packets/s of untracked traffic; 0 = off), against spoofed floods
    "ratelimit_global_rate": 0,
    "ratelimit_global_burst": 0,
    # drop sampling: events per second into the drops ring buffer (0 = off), and its burst
    "drop_sampling_rate": 10,
    "drop_sampling_burst": 0,
    "capacity": dict((name, spec[1]) for name, spec in layout.CAPACITIES.items()),
}
XDP_MODES = ("auto", "native", "generic")
MAX_CAPACITY = 1 << 26


def normalize_program(settings):
    """Program settings with defaults filled in and every value checked."""
    merged = dict(PROGRAM_DEFAULTS)
    merged["capacity"] = dict(PROGRAM_DEFAULTS["capacity"])
    merged["conntrack_timeouts"] = {}
    merged["sanity"] = {}
    for key, value in (settings or {}).items():
        if value is None:
            continue
        if key in ("conntrack_timeouts", "sanity", "capacity"):
            if not isinstance(value, dict):
                raise NetxfwError("%s must be a mapping, not %r" % (key, value))
        if key in ("conntrack_timeouts", "sanity"):
            known = layout.CT_TIMEOUT_INDEX if key == "conntrack_timeouts" else layout.SANITY_BITS
            for name, item in value.items():
                if name not in known:
                    raise NetxfwError("unknown %s key '%s' (known: %s)" % (key, name, ", ".join(sorted(known))))
                if item is not None:
                    merged[key][name] = item
        elif key == "capacity":
            for cap, size in value.items():
                if size is None:
                    continue
                if cap not in layout.CAPACITIES:
                    raise NetxfwError("unknown capacity '%s' (known: %s)" % (cap, ", ".join(sorted(layout.CAPACITIES))))
                merged["capacity"][cap] = _int_in_range("capacity.%s" % cap, size, 1, MAX_CAPACITY)
        elif key in PROGRAM_DEFAULTS:
            merged[key] = value
        else:
            raise NetxfwError("unknown program setting '%s'" % key)
    _choice(merged["policy"], sorted(layout.POLICY_CODES), "policy must be allow or deny, not '%s'")
    _choice(merged["xdp_mode"], XDP_MODES, "xdp_mode must be one of %s, not '%%s'" % ", ".join(XDP_MODES))
    merged["conntrack"] = _boolean("conntrack", merged["conntrack"])
    merged["conntrack_timeout"] = _int_in_range("conntrack_timeout", merged["conntrack_timeout"], 1, 86400 * 7)
    # conntrack_timeouts.tcp_established is another name for conntrack_timeout: the normalized settings
    # keep it in conntrack_timeout only, so that changing either one later is never shadowed.
    timeouts = dict(CT_TIMEOUT_DEFAULTS)
    for name, item in merged["conntrack_timeouts"].items():
        seconds = _int_in_range("conntrack_timeouts.%s" % name, item, 1, 86400 * 7)
        if name == "tcp_established":
            merged["conntrack_timeout"] = seconds
        else:
            timeouts[name] = seconds
    merged["conntrack_timeouts"] = timeouts
    sanity = dict(SANITY_DEFAULTS)
    for name, item in merged["sanity"].items():
        sanity[name] = _boolean("sanity.%s" % name, item)
    merged["sanity"] = sanity
    merged["icmp_rate"] = _int_in_range("icmp_rate", merged["icmp_rate"], 0, 10 ** 9)
    merged["icmp_burst"] = _int_in_range("icmp_burst", merged["icmp_burst"], 0, 10 ** 9)
    if merged["icmp_rate"] and not merged["icmp_burst"]:
        merged["icmp_burst"] = merged["icmp_rate"]
    for name in ("ratelimit_global_rate", "ratelimit_global_burst"):
        merged[name] = _int_in_range(name, merged[name], 0, 10 ** 9)
    if merged["ratelimit_global_rate"] and not merged["ratelimit_global_burst"]:
        merged["ratelimit_global_burst"] = merged["ratelimit_global_rate"]
    for name in ("drop_sampling_rate", "drop_sampling_burst"):
        merged[name] = _int_in_range(name, merged[name], 0, 10 ** 6)
    if merged["drop_sampling_rate"] and not merged["drop_sampling_burst"]:
        merged["drop_sampling_burst"] = merged["drop_sampling_rate"]
    interfaces = merged["interfaces"]
    if not isinstance(interfaces, (list, tuple)) or not all(isinstance(n, str) and n for n in interfaces):
        raise NetxfwError("interfaces must be a list of interface names, not %r" % (interfaces,))
    merged["interfaces"] = sorted(set(interfaces))
    return merged


def _choice(value, choices, message):
    if not isinstance(value, str) or value not in choices:
        raise NetxfwError(message % (value,))


def _boolean(name, value):
    """A real boolean only: bool("false") is True, and 1 or "yes" say nothing a YAML or JSON
    boolean would not say plainly."""
    if not isinstance(value, bool):
        raise NetxfwError("%s must be true or false, not %r" % (name, value))
    return value


def _int_in_range(name, value, low, high):
    """A real integer only (True is not 1, "10" is a string, 2.5 is no count)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise NetxfwError("%s must be an integer, not %r" % (name, value))
    if not low <= value <= high:
        raise NetxfwError("%s must be between %d and %d, not %d" % (name, low, high, value))
    return value


def stored_capacities(config):
    """The capacities of a stored config (config.json), the defaults without one."""
    return (config or {}).get("capacity") or PROGRAM_DEFAULTS["capacity"]


def runtime_config(settings):
    """config map index -> value for the runtime settings."""
    out = {
        layout.CFG_POLICY: layout.POLICY_CODES[settings["policy"]],
        layout.CFG_ICMP_RATE: settings["icmp_rate"],
        layout.CFG_ICMP_BURST: settings["icmp_burst"],
        layout.CFG_CT_ENABLED: int(settings["conntrack"]),
        layout.CFG_CT_TIMEOUT_NS: settings["conntrack_timeout"] * 10 ** 9,
    }
    timeouts = settings.get("conntrack_timeouts") or {}
    for name, index in layout.CT_TIMEOUT_INDEX.items():
        if name != "tcp_established":
            out[index] = timeouts.get(name, CT_TIMEOUT_DEFAULTS[name]) * 10 ** 9
    sanity = dict(SANITY_DEFAULTS, **(settings.get("sanity") or {}))
    out[layout.CFG_SANITY] = sum(bit for name, bit in layout.SANITY_BITS.items() if sanity[name])
    out[layout.CFG_RL_GLOBAL_RATE] = settings.get("ratelimit_global_rate", 0)
    out[layout.CFG_RL_GLOBAL_BURST] = settings.get("ratelimit_global_burst", 0)
    rate = settings.get("drop_sampling_rate", PROGRAM_DEFAULTS["drop_sampling_rate"])
    out[layout.CFG_DROPLOG_RATE] = rate
    out[layout.CFG_DROPLOG_BURST] = settings.get("drop_sampling_burst") or rate
    return out


def runtime_config_differs(maps, settings):
    """The config map does not hold `settings`' runtime values."""
    for index, value in runtime_config(settings).items():
        if layout.decode_u64(maps["config"].lookup(layout.encode_u32(index))) != value:
            return True
    return False


def write_runtime_config(maps, settings):
    maps["config"].update_many(
        (layout.encode_u32(i), layout.encode_u64(v)) for i, v in runtime_config(settings).items()
    )
