"""Prometheus metrics of one running server (its own registry, so tests can run several)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ..audit import schema as ev

if TYPE_CHECKING:
    from ..server import OmsServer

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

    def observe_events(self, events: list[dict]) -> None:
        for event in events:
            kind = event["type"]
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

    def render(self, server: "OmsServer") -> bytes:
        self.sessions.set(len(server.gateway.sessions))
        self.audit_lag.set(server.projection.lag())
        self.journal_seq.set(server.journal.last_seq)
        return generate_latest(self.registry)
