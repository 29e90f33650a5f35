"""Prometheus metrics of one running server (its own registry, so tests can run several)."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ..audit import schema as ev

if TYPE_CHECKING:
    from ..server import OmsServer

_CONTROL_TYPES = frozenset({ev.LIMIT_CHANGED, ev.LIMIT_CHANGE_REJECTED, ev.LIMIT_EXPIRED, ev.KILL_SWITCH_ENGAGED,
                            ev.KILL_SWITCH_RELEASED})

# round trip inside the process: bytes received -> reports written (seconds)
LATENCY_BUCKETS = (5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5, 1.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.orders = Counter("oms_orders", "New orders by outcome", ["outcome"], registry=r)
        self.rejects = Counter("oms_order_rejects", "Rejected orders by rule", ["rule"], registry=r)
        self.fills = Counter("oms_fills", "Fill reports (both sides)", registry=r)
        self.cancels = Counter("oms_cancels", "Orders canceled", registry=r)
        self.events = Counter("oms_audit_events", "Events journaled", registry=r)
        self.sessions = Gauge("oms_fix_sessions", "FIX sessions logged on", registry=r)
        self.audit_lag = Gauge("oms_audit_projection_lag", "Journal events not yet in DuckDB", registry=r)
        self.journal_seq = Gauge("oms_journal_last_seq", "Last journal sequence number", registry=r)
        self.latency = Histogram("oms_batch_latency_seconds",
                                 "Time from FIX bytes received to reports written, per batch",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.order_latency = Histogram("oms_order_round_trip_seconds",
                                       "From a new order's command timestamp (FIX message parsed) to its reports "
                                       "journaled and routed", buckets=LATENCY_BUCKETS, registry=r)
        self.controls = Counter("oms_control_actions", "Risk-desk control events", ["type"], registry=r)
        self.http_latency = Histogram("oms_http_request_seconds", "HTTP request handling time by route",
                                      ["route"], buckets=LATENCY_BUCKETS, registry=r)

    def observe_events(self, events: list[dict]) -> None:
        now = time.time_ns()
        oldest = None
        for event in events:
            kind = event["type"]
            if kind == ev.ORDER_RECEIVED:
                self.order_latency.observe(max(0, now - event["ts"]) / 1e9)
                oldest = event["ts"] if oldest is None else min(oldest, event["ts"])
            elif kind in _CONTROL_TYPES:
                self.controls.labels(kind).inc()
            if "seq" in event:
                self.events.inc()
            if kind == ev.ORDER_ACCEPTED:
                self.orders.labels("accepted").inc()
            elif kind == ev.ORDER_REJECTED:
                self.orders.labels("rejected").inc()
                self.rejects.labels(event.get("rule") or "other").inc()
            elif kind in (ev.ORDER_FILLED, ev.ORDER_PARTIALLY_FILLED):
                self.fills.inc()
            elif kind == ev.ORDER_CANCELED:
                self.cancels.inc()
        if oldest is not None:
            self.latency.observe(max(0, now - oldest) / 1e9)

    def render(self, server: "OmsServer") -> bytes:
        self.sessions.set(len(server.gateway.sessions))
        self.audit_lag.set(server.projection.lag())
        self.journal_seq.set(server.journal.last_seq)
        return generate_latest(self.registry)
