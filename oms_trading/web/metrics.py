"""Prometheus metrics of one running server (its own registry, so tests can run several)."""
from __future__ import annotations

import time
from bisect import bisect_left
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from ..audit import schema as ev

if TYPE_CHECKING:
    from ..server import OmsServer

_CONTROL_TYPES = frozenset({ev.LIMIT_CHANGED, ev.LIMIT_CHANGE_REJECTED, ev.LIMIT_EXPIRED, ev.KILL_SWITCH_ENGAGED,
                            ev.KILL_SWITCH_RELEASED})

# round trip inside the process: bytes received -> reports written (seconds)
LATENCY_BUCKETS = (5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5, 1.0)


class _Histogram:
    """Bucket counts as plain ints: an observe is one bisect and two adds on the engine thread
    (prometheus_client's Histogram takes a lock and walks every bucket), read at scrape time."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)      # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def family(self, name: str, doc: str) -> HistogramMetricFamily:
        family = HistogramMetricFamily(name, doc)
        cumulative, buckets = 0, []
        for bound, count in zip((*map(floatToGoString, self.bounds), "+Inf"), self.counts):
            cumulative += count
            buckets.append((bound, cumulative))
        family.add_metric([], buckets, self.total)
        return family


class _EngineCounters:
    """Order-path counters kept as plain Python numbers by the engine thread (no locks, no label
    look-ups per event) and turned into Prometheus metric families only when scraped."""

    def __init__(self) -> None:
        self.orders: dict[str, int] = {"accepted": 0, "rejected": 0}
        self.rejects: dict[str, int] = {}
        self.controls: dict[str, int] = {}
        self.fills = 0
        self.cancels = 0
        self.events = 0
        self.latency = _Histogram(LATENCY_BUCKETS)
        self.order_latency = _Histogram(LATENCY_BUCKETS)

    def collect(self):
        def counter(name: str, doc: str, values: dict[str, int] | int, label: str | None = None):
            family = CounterMetricFamily(name, doc, labels=[label] if label else None)
            if label:
                for key, value in sorted(values.items()):
                    family.add_metric([key], value)
            else:
                family.add_metric([], values)
            return family
        yield counter("oms_orders", "New orders by outcome", dict(self.orders), "outcome")
        yield counter("oms_order_rejects", "Rejected orders by rule", dict(self.rejects), "rule")
        yield counter("oms_fills", "Fill reports (both sides)", self.fills)
        yield counter("oms_cancels", "Orders canceled", self.cancels)
        yield counter("oms_audit_events", "Events journaled", self.events)
        yield counter("oms_control_actions", "Risk-desk control events", dict(self.controls), "type")
        yield self.latency.family("oms_batch_latency_seconds",
                                  "Time from FIX bytes received to reports written, per batch")
        yield self.order_latency.family("oms_order_round_trip_seconds",
                                        "From a new order's command timestamp (FIX message parsed) to its "
                                        "reports journaled and routed")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.counters = _EngineCounters()
        r.register(self.counters)
        self.sessions = Gauge("oms_fix_sessions", "FIX sessions logged on", registry=r)
        self.audit_lag = Gauge("oms_audit_projection_lag", "Journal events not yet in DuckDB", registry=r)
        self.projection_up = Gauge("oms_audit_projection_up", "1 while the audit projection process runs",
                                   registry=r)
        self.projection_restarts = Gauge("oms_audit_projection_restarts", "Audit projection processes started "
                                         "again after one died, since the start", registry=r)
        self.journal_seq = Gauge("oms_journal_last_seq", "Last journal sequence number", registry=r)
        self.clock_steps_back = Gauge("oms_clock_steps_back", "Times the wall clock stepped back under a "
                                      "journaled record since the start", registry=r)
        self.http_latency = Histogram("oms_http_request_seconds", "HTTP request handling time by route",
                                      ["route"], buckets=LATENCY_BUCKETS, registry=r)

    def observe_events(self, events: list[dict]) -> None:
        """Gateway hook after each batch (engine thread): count what the batch did."""
        now = time.time_ns()
        c = self.counters
        oldest = None
        journaled = 0
        for event in events:
            kind = event["type"]
            if "seq" in event:
                journaled += 1
            if kind == ev.ORDER_RECEIVED:
                ts = event["ts"]
                c.order_latency.observe(max(0, now - ts) / 1e9)
                if oldest is None or ts < oldest:
                    oldest = ts
            elif kind == ev.ORDER_ACCEPTED:
                c.orders["accepted"] += 1
            elif kind == ev.ORDER_FILLED or kind == ev.ORDER_PARTIALLY_FILLED:
                c.fills += 1
            elif kind == ev.ORDER_CANCELED:
                c.cancels += 1
            elif kind == ev.ORDER_REJECTED:
                c.orders["rejected"] += 1
                rule = event.get("rule") or "other"
                c.rejects[rule] = c.rejects.get(rule, 0) + 1
            elif kind in _CONTROL_TYPES:
                c.controls[kind] = c.controls.get(kind, 0) + 1
        c.events += journaled
        if oldest is not None:
            c.latency.observe(max(0, now - oldest) / 1e9)

    def render(self, server: "OmsServer") -> bytes:
        self.sessions.set(len(server.gateway.sessions))
        self.audit_lag.set(server.projection.lag())
        self.projection_up.set(1 if server.projection.running() else 0)
        self.projection_restarts.set(server.projection.restarts)
        self.journal_seq.set(server.journal.last_seq)
        self.clock_steps_back.set(server.engine.clock_steps_back)
        return generate_latest(self.registry)
