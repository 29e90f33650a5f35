"""Engine events rendered as FIX application messages for one session.

The same writer serves a live connection and a session that is offline (its reports go to the
store, to be resent when it logs on) and the rebuild after a crash of reports whose events
reached the journal but not the store.
"""
from __future__ import annotations

from ..audit import schema as ev
from ..config import SessionConfig
from .codec import ExecReportTemplate, encode
from .timefmt import fix_timestamp

# events that become an ExecutionReport (35=8)
EXEC_REPORT_TYPES = frozenset({
    ev.ORDER_ACCEPTED, ev.ORDER_REJECTED, ev.ORDER_PARTIALLY_FILLED, ev.ORDER_FILLED, ev.ORDER_CANCELED,
    ev.ORDER_REPLACED, ev.ORDER_EXPIRED, "order_status",
})
CANCEL_REJECT_TYPES = frozenset({ev.CANCEL_REJECTED, ev.REPLACE_REJECTED})
# what a journaled event is sent as: everything above but the (unjournaled) status answers
JOURNALED_REPORT_TYPES = (EXEC_REPORT_TYPES - {"order_status"}) | CANCEL_REJECT_TYPES | {ev.MASS_CANCEL_DONE}

_UNPRINTABLE = {i: f"\\x{i:02x}" for i in (*range(0x20), *range(0x7f, 0x100))}


def safe_text(text: str) -> bytes:
    """Text (58) as printable ASCII: client bytes echoed in a reason are escaped (\\xNN), so
    no control character (SOH least of all) or stray encoding ever reaches the wire."""
    if text.isascii() and text.isprintable():
        return text.encode("ascii")
    return text.translate(_UNPRINTABLE).encode("ascii", "backslashreplace")


class ReportWriter:
    """Encodes reports for one session (its BeginString and CompIDs) at a given seq."""

    def __init__(self, cfg: SessionConfig, precision: str) -> None:
        self.begin = cfg.begin_string.encode()
        self.sender = cfg.sender_comp_id.encode()
        self.target = cfg.target_comp_id.encode()
        self.precision = precision
        self.template = ExecReportTemplate(self.begin, self.sender, self.target)

    def now(self, ns: int) -> bytes:
        return fix_timestamp(ns, self.precision)

    def render(self, seq: int, now: bytes, event: dict) -> bytes:
        kind = event["type"]
        if kind in EXEC_REPORT_TYPES:
            return self.execution_report(seq, now, event)
        if kind in CANCEL_REJECT_TYPES:
            return self.cancel_reject(seq, now, event)
        return self.mass_cancel_report(seq, now, event)

    def execution_report(self, seq: int, now: bytes, event: dict) -> bytes:
        exec_type = event["exec_type"]
        if self.begin == b"FIX.4.2":
            if exec_type == "F":
                exec_type = "2" if event["ord_status"] == "2" else "1"
            elif exec_type == "I":
                return self._status_42(seq, now, event)
        price = event.get("price")
        rej = event.get("rej_reason")
        text = event.get("text")
        account = event.get("account")
        orig = event.get("orig_cl_ord_id")
        return self.template.encode(
            seq, now, str(event.get("order_id") or "NONE").encode(), (event.get("cl_ord_id") or "NONE").encode(),
            event["exec_id"].encode(), exec_type.encode(), event["ord_status"].encode(),
            (event.get("symbol") or "").encode(), (event.get("side") or "1").encode(), event.get("qty") or 0,
            (event.get("ord_type") or "2").encode(), event.get("last_qty") or 0,
            (event.get("last_px") or "0").encode(), event["leaves_qty"], event["cum_qty"],
            event["avg_px"].encode(), fix_timestamp(event["ts"], self.precision),
            orig_cl_ord_id=orig.encode() if orig else None,
            price=price.encode() if price else None,
            time_in_force=event["tif"].encode() if event.get("tif") else None,
            account=account.encode() if account else None,
            ord_rej_reason=str(rej).encode() if rej is not None and event["exec_type"] in ("8", "I") else None,
            text=safe_text(text) if text else None)

    def _status_42(self, seq: int, now: bytes, event: dict) -> bytes:
        body = [(37, str(event.get("order_id") or "NONE")), (11, event.get("cl_ord_id") or "NONE"),
                (17, "0"), (20, "3"), (150, event["ord_status"]), (39, event["ord_status"]),
                (55, event.get("symbol") or ""), (54, event.get("side") or "1"), (38, event.get("qty") or 0),
                (32, 0), (31, "0"), (151, event["leaves_qty"]), (14, event["cum_qty"]), (6, event["avg_px"])]
        if event.get("text"):
            body.append((58, safe_text(event["text"])))
        return encode(self.begin, b"8", self.sender, self.target, seq, now, body)

    def cancel_reject(self, seq: int, now: bytes, event: dict) -> bytes:
        body = [(37, str(event.get("order_id") or "NONE")), (11, event.get("cl_ord_id") or "NONE"),
                (41, event.get("orig_cl_ord_id") or "NONE"), (39, event.get("ord_status") or "8"),
                (434, event["response_to"]), (102, str(event["rej_reason"])),
                (58, safe_text(event.get("text") or ""))]
        if self.begin == b"FIX.4.4":
            body.append((60, fix_timestamp(event["ts"], self.precision)))
        return encode(self.begin, b"9", self.sender, self.target, seq, now, body)

    def mass_cancel_report(self, seq: int, now: bytes, event: dict) -> bytes:
        body = [(37, f"MC{event.get('seq', 0)}"), (11, event.get("cl_ord_id") or "NONE"),
                (530, event.get("mass_cancel_type") or "7"), (531, event.get("mass_cancel_response") or "0"),
                (533, event.get("affected", 0))]
        if event.get("rej_reason") is not None:
            body.append((532, str(event["rej_reason"])))
        if event.get("symbol"):
            body.append((55, event["symbol"]))
        if event.get("text"):
            body.append((58, safe_text(event["text"])))
        return encode(self.begin, b"r", self.sender, self.target, seq, now, body)
