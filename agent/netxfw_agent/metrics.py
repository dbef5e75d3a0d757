# SPDX-License-Identifier: GPL-2.0-or-later
"""Prometheus exposition (/metrics): a custom collector that reads the engine on every scrape."""

import time

from netxfw_engine import queries

from . import pull

try:
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
except ImportError:  # the API still runs; /metrics says what to install
    CollectorRegistry = None
    CONTENT_TYPE_LATEST = "text/plain; version=0.0.4; charset=utf-8"

MISSING = ("prometheus_client is not installed for this interpreter: install python3-prometheus-client "
           "(Debian/Ubuntu) or python3-prometheus_client (RHEL/Fedora)")


class EngineCollector:
    """Reads counters, map usage, conntrack size, attachments and rule counts through the engine."""

    def __init__(self, fw):
        self.fw = fw

    def describe(self):
        return []  # collected on demand only; nothing at registration time

    def collect(self):
        started = time.monotonic()
        data = self.fw.store.read_rules()
        info = queries.info(self.fw, data)
        loaded = GaugeMetricFamily("netxfw_loaded", "1 when the data plane is loaded and its pins match the layout")
        loaded.add_metric([], 1 if info.get("loaded") else 0)
        yield loaded
        if info.get("rules_in_step") is not None:
            in_step = GaugeMetricFamily("netxfw_rules_in_step", "1 when the rule maps hold rules.json; 0 when a write "
                                        "to them was interrupted (netxfw reload rebuilds them)")
            in_step.add_metric([], 1 if info["rules_in_step"] else 0)
            yield in_step

        counts = queries.rule_counts(self.fw, data)
        rules = GaugeMetricFamily("netxfw_rules", "Rules in rules.json by kind (live blacklist entries only)",
                                  labels=["kind"])
        for kind, number in sorted(counts.items()):
            rules.add_metric([kind], number)
        yield rules
        yield from self._pull()

        attached = GaugeMetricFamily("netxfw_interface_attached",
                                     "1 when our program is attached to the hook (mode: whatever program is)",
                                     labels=["interface", "hook", "mode"])
        for name, state in sorted(info.get("interfaces", {}).items()):
            attached.add_metric([name, "xdp", state.get("xdp_mode") or "none"], 1 if state["xdp"] else 0)
            attached.add_metric([name, "tc_egress", "clsact"], 1 if state["tc"] else 0)
        yield attached

        if not info.get("loaded"):
            yield self._duration(started)
            return
        packets = CounterMetricFamily("netxfw_packets", "Packets by verdict reason (XDP ingress; "
                                      "egress_tracked counts TC egress)", labels=["reason"])
        octets = CounterMetricFamily("netxfw_bytes", "Bytes by verdict reason", labels=["reason"])
        for reason, c in info["counters"].items():
            packets.add_metric([reason], c["packets"])
            octets.add_metric([reason], c["bytes"])
        yield packets
        yield octets

        entries = GaugeMetricFamily("netxfw_map_entries", "Entries in a pinned map", labels=["map"])
        capacity = GaugeMetricFamily("netxfw_map_capacity", "max_entries of a pinned map", labels=["map"])
        for name, m in sorted(info["maps"].items()):
            entries.add_metric([name], m["entries"])
            capacity.add_metric([name], m["capacity"])
        yield entries
        yield capacity

        ct = info["maps"].get("ct", {"entries": 0, "capacity": 0})
        size = GaugeMetricFamily("netxfw_conntrack_entries", "Tracked flows in the conntrack map (live or stale)")
        size.add_metric([], ct["entries"])
        yield size
        ct_cap = GaugeMetricFamily("netxfw_conntrack_capacity", "Capacity of the conntrack map")
        ct_cap.add_metric([], ct["capacity"])
        yield ct_cap

        yield self._duration(started)

    def _pull(self):
        """The last ansible-pull run (pull/last.json), on hosts in pull mode only."""
        res = pull.last_result(self.fw)
        if not res:
            return
        for name, text, value in (
                ("netxfw_pull_last_run_timestamp_seconds", "When the last ansible-pull run ended (epoch)",
                 res.get("finished")),
                ("netxfw_pull_last_success", "1 when the last ansible-pull run applied and confirmed its change",
                 1 if res.get("success") else 0),
                ("netxfw_pull_last_duration_seconds", "How long the last ansible-pull run took", res.get("duration")),
                ("netxfw_pull_last_changed_tasks", "Tasks the last ansible-pull run changed", res.get("changed")),
                ("netxfw_pull_last_rolled_back", "1 when the last ansible-pull run's change was rolled back",
                 1 if res.get("rollback", {}).get("outcome") == "rolled_back" else 0),
                ("netxfw_pull_last_success_timestamp_seconds", "When an ansible-pull run last succeeded (epoch)",
                 res.get("last_success"))):
            if value is not None:
                g = GaugeMetricFamily(name, text)
                g.add_metric([], value)
                yield g
        info = GaugeMetricFamily("netxfw_pull_last_run_info", "The last ansible-pull run: commit and stage reached",
                                 labels=["commit", "stage", "outcome"])
        info.add_metric([res.get("commit") or "", res.get("stage") or "",
                         res.get("rollback", {}).get("outcome") or ""], 1)
        yield info

    @staticmethod
    def _duration(started):
        g = GaugeMetricFamily("netxfw_scrape_duration_seconds", "Time the agent took to read the engine")
        g.add_metric([], time.monotonic() - started)
        return g


class Metrics:
    def __init__(self, fw):
        self.available = CollectorRegistry is not None
        if self.available:
            self.registry = CollectorRegistry(auto_describe=False)
            self.registry.register(EngineCollector(fw))

    def render(self):
        """(body bytes, content type)"""
        if not self.available:
            raise RuntimeError(MISSING)
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
