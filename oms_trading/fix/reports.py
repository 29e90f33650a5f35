"""Engine events rendered as FIX application messages for one session.

The same writer serves a live connection and a session that is offline (its reports go to the
store, to be resent when it logs on) and the rebuild after a crash of reports whose events
reached the journal but not the store.
"""
from __future__ import annotations

from operator import itemgetter
from zlib import adler32 as _adler32

from ..audit import schema as ev
from ..config import SessionConfig
from .codec import ExecReportTemplate, checksum, encode
from .timefmt import fix_timestamp

# events that become an ExecutionReport (35=8)
EXEC_REPORT_TYPES = frozenset({
    ev.ORDER_ACCEPTED, ev.ORDER_REJECTED, ev.ORDER_PARTIALLY_FILLED, ev.ORDER_FILLED, ev.ORDER_CANCELED,
    ev.ORDER_REPLACED, ev.ORDER_EXPIRED, "order_status",
})
CANCEL_REJECT_TYPES = frozenset({ev.CANCEL_REJECTED, ev.REPLACE_REJECTED})
# what a journaled event is sent as: everything above but the (unjournaled) status answers
JOURNALED_REPORT_TYPES = (EXEC_REPORT_TYPES - {"order_status"}) | CANCEL_REJECT_TYPES | {ev.MASS_CANCEL_DONE}

_TT_DIV = {"ms": 1_000_000, "us": 1_000, "s": 1_000_000_000}   # ns per TransactTime unit
# precision -> [ts // unit, its TransactTime text]: one cache for all the sessions' writers, since
# the reports of a batch (whichever session they go to) share their millisecond
_TT_CACHES: dict[str, list] = {}
# the keys every report the engine makes (Engine._report) carries, fetched in one call
_REPORT_KEYS = itemgetter("ts", "order_id", "cl_ord_id", "orig_cl_ord_id", "account", "symbol", "side", "ord_type",
                          "tif", "price", "qty", "exec_id", "exec_type", "ord_status", "cum_qty", "leaves_qty",
                          "avg_px")

# FIX 4.2 ends OrdRejReason (103) at 8 and CxlRejReason (102) at 3: the later codes the engine
# uses (FIX 4.4's 11, 13, 15, 99; 6 Duplicate ClOrdID) go to a 4.2 session as Broker option,
# the Text saying why (a 4.2 data dictionary refuses them as out of range)
_ORD_REJ_42_MAX, _ORD_REJ_42_OTHER = 8, 0
_CXL_REJ_42_MAX, _CXL_REJ_42_OTHER = 3, 2

_UNPRINTABLE = {i: f"\\x{i:02x}" for i in (*range(0x20), *range(0x7f, 0x100))}


def safe_text(text: str) -> bytes:
    """Text (58) as printable ASCII: client bytes echoed in a reason are escaped (\\xNN), so
    no control character (SOH least of all) or stray encoding ever reaches the wire."""
    if text.isascii() and text.isprintable():
        return text.encode("ascii")
    return text.translate(_UNPRINTABLE).encode("ascii", "backslashreplace")


def _wire(text: str) -> bytes:
    """A value the gateway decoded from the client's bytes (latin-1: ClOrdID, Symbol...) as those
    same bytes again; text no client byte can give (past U+00FF) as UTF-8."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode()


class ReportWriter:
    """Encodes reports for one session (its BeginString and CompIDs) at a given seq."""

    def __init__(self, cfg: SessionConfig, precision: str) -> None:
        self.begin = cfg.begin_string.encode()
        self.sender = cfg.sender_comp_id.encode()
        self.target = cfg.target_comp_id.encode()
        self.precision = precision
        self.template = ExecReportTemplate(self.begin, self.sender, self.target)
        # the ExecutionReport as one str template, encoded once (fewer objects per report than
        # encoding each field); ExecReportTemplate stays the reference and the fallback
        etx = "20=0\x01" if self.begin == b"FIX.4.2" else ""
        self._er_head = b"8=" + self.begin + b"\x019="
        # encoded as latin-1, as the gateway decodes what it receives (the CompIDs keep their
        # UTF-8 bytes, those logons are matched on)
        self._er_fmt = ("35=8\x0149=" + self.sender.decode("latin-1").replace("%", "%%") + "\x0156="
                        + self.target.decode("latin-1").replace("%", "%%") + "\x0134=%d\x0152=%s\x01"
                        "37=%s\x0111=%s\x01%s17=%s\x01" + etx + "150=%s\x0139=%s\x01%s%s55=%s\x0154=%s\x01"
                        "38=%d\x0140=%s\x01%s%s32=%d\x0131=%s\x01151=%d\x0114=%d\x016=%s\x0160=%s\x01%s")
        self._now_b = b""          # SendingTime bytes last seen -> its text
        self._now_s = ""
        self._tt = _TT_CACHES.setdefault(precision, [None, ""])   # (see _TT_CACHES)
        self._tt_div = _TT_DIV.get(precision, 0)
        # the common report in one format: every field present, no Text; with and without
        # OrigClOrdID (41). FIX 4.2 takes it too but for fills (ExecType F is 1 or 2 there)
        self._is42 = self.begin == b"FIX.4.2"
        common = ("35=8\x0149=" + self.sender.decode("latin-1").replace("%", "%%") + "\x0156="
                  + self.target.decode("latin-1").replace("%", "%%") + "\x0134=%d\x0152=%s\x0137=%s\x0111=%s\x01")
        rest = ("17=%s\x01" + etx + "150=%s\x0139=%s\x011=%s\x0155=%s\x0154=%s\x0138=%d\x0140=%s\x0144=%s\x01"
                "59=%s\x0132=%d\x0131=%s\x01151=%d\x0114=%d\x016=%s\x0160=%s\x01")
        self._er_plain = common + rest
        self._er_orig = common + "41=%s\x01" + rest

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
        """The ExecutionReport of ``event``: the common report (every field of an engine report
        present, no Text; ExecType 0, 4, 5, C, or F on FIX 4.4) in one format here, anything
        else by ``_execution_report_any``; the same bytes either way."""
        try:
            (ts, order_id, cl, orig, account, symbol, side, ord_type, tif, price, qty, exec_id, exec_type,
             ord_status, cum, leaves, avg_px) = _REPORT_KEYS(event)
        except KeyError:
            return self._execution_report_any(seq, now, event)
        get = event.get
        last_qty = get("last_qty") or 0
        if exec_type == "I" or exec_type == "8" or (exec_type == "F" and self._is42) or get("text") \
                or not (order_id and cl and account and symbol and side and ord_type and price and tif) \
                or type(qty) is not int or type(cum) is not int or type(leaves) is not int \
                or type(last_qty) is not int or type(ts) is not int:
            return self._execution_report_any(seq, now, event)
        if now is not self._now_b:
            self._now_b, self._now_s = now, now.decode("ascii")
        div = self._tt_div
        tt = self._tt
        if div and ts // div == tt[0]:
            transact = tt[1]               # reports of one batch share their millisecond
        else:
            transact = fix_timestamp(ts, self.precision).decode("ascii")
            if div:
                tt[0], tt[1] = ts // div, transact
        try:
            if orig:
                body = (self._er_orig % (seq, self._now_s, order_id, cl, orig, exec_id, exec_type, ord_status, account,
                                         symbol, side, qty, ord_type, price, tif, last_qty, get("last_px") or "0",
                                         leaves, cum, avg_px, transact)).encode("latin-1")
            else:
                body = (self._er_plain % (seq, self._now_s, order_id, cl, exec_id, exec_type, ord_status, account,
                                          symbol, side, qty, ord_type, price, tif, last_qty, get("last_px") or "0",
                                          leaves, cum, avg_px, transact)).encode("latin-1")
        except (TypeError, UnicodeEncodeError):   # a value of an unexpected type or past U+00FF
            return self._execution_report_any(seq, now, event)
        msg = b"%b%d\x01%b" % (self._er_head, len(body), body)
        return b"%b10=%03d\x01" % (msg, (_adler32(msg, 0) & 0xFF) if len(msg) <= 256 else checksum(msg))

    def _execution_report_any(self, seq: int, now: bytes, event: dict) -> bytes:
        """``execution_report`` for any event: FIX 4.2's ExecType and status layout, status
        answers, rejects, Text, absent fields; values of other types by the general encoder."""
        exec_type = event["exec_type"]
        if self.begin == b"FIX.4.2":
            if exec_type == "F":
                exec_type = "2" if event["ord_status"] == "2" else "1"
            elif exec_type == "I":
                return self._status_42(seq, now, event)
        elif exec_type == "I" and event.get("order_id") is None:
            return self._unknown_order_status_44(seq, now, event)
        get = event.get
        if now is not self._now_b:
            self._now_b, self._now_s = now, now.decode("ascii")
        ts = event["ts"]
        div = self._tt_div
        tt = self._tt
        if div and type(ts) is int and ts // div == tt[0]:
            transact = tt[1]               # reports of one batch share their millisecond
        else:
            transact = fix_timestamp(ts, self.precision).decode("ascii")
            if div and type(ts) is int:
                tt[0], tt[1] = ts // div, transact
        orig = get("orig_cl_ord_id")
        rej = get("rej_reason")
        if rej is not None and self.begin == b"FIX.4.2" and type(rej) is int and rej > _ORD_REJ_42_MAX:
            rej = _ORD_REJ_42_OTHER
        account = get("account")
        price = get("price")
        tif = get("tif")
        text = get("text")
        qty = get("qty") or 0
        last_qty = get("last_qty") or 0
        leaves = event["leaves_qty"]
        cum = event["cum_qty"]
        if type(qty) is not int or type(last_qty) is not int or type(leaves) is not int or type(cum) is not int:
            # %d would truncate a float quantity: anything but an exact int takes the general path
            return self._execution_report_general(seq, now, event, exec_type)
        try:
            body = (self._er_fmt % (
                seq, self._now_s, get("order_id") or "NONE", get("cl_ord_id") or "NONE",
                "41=%s\x01" % orig if orig else "", event["exec_id"], exec_type, event["ord_status"],
                "103=%d\x01" % rej if rej is not None and event["exec_type"] in ("8", "I") else "",
                "1=%s\x01" % account if account else "", get("symbol") or "", get("side") or "1",
                qty, get("ord_type") or "2", "44=%s\x01" % price if price else "",
                "59=%s\x01" % tif if tif else "", last_qty, get("last_px") or "0",
                leaves, cum, event["avg_px"], transact,
                "58=%s\x01" % safe_text(text).decode("ascii") if text else "")).encode("latin-1")
        except (TypeError, UnicodeEncodeError):   # a value of an unexpected type or past U+00FF
            return self._execution_report_general(seq, now, event, exec_type)
        msg = b"%b%d\x01%b" % (self._er_head, len(body), body)
        return b"%b10=%03d\x01" % (msg, (_adler32(msg, 0) & 0xFF) if len(msg) <= 256 else checksum(msg))

    def _execution_report_general(self, seq: int, now: bytes, event: dict, exec_type: str) -> bytes:
        """``execution_report`` through ``ExecReportTemplate``: the same bytes for the str and
        int values engine events carry; it also takes float quantities (never truncated)."""
        price = event.get("price")
        rej = event.get("rej_reason")
        if rej is not None and self.begin == b"FIX.4.2" and type(rej) is int and rej > _ORD_REJ_42_MAX:
            rej = _ORD_REJ_42_OTHER
        text = event.get("text")
        account = event.get("account")
        orig = event.get("orig_cl_ord_id")
        return self.template.encode(
            seq, now, str(event.get("order_id") or "NONE").encode(), _wire(event.get("cl_ord_id") or "NONE"),
            event["exec_id"].encode(), exec_type.encode(), event["ord_status"].encode(),
            _wire(event.get("symbol") or ""), _wire(event.get("side") or "1"), event.get("qty") or 0,
            _wire(event.get("ord_type") or "2"), event.get("last_qty") or 0,
            (event.get("last_px") or "0").encode(), event["leaves_qty"], event["cum_qty"],
            event["avg_px"].encode(), fix_timestamp(event["ts"], self.precision),
            orig_cl_ord_id=_wire(orig) if orig else None,
            price=_wire(price) if price else None,
            time_in_force=_wire(event["tif"]) if event.get("tif") else None,
            account=_wire(account) if account else None,
            ord_rej_reason=str(rej).encode() if rej is not None and event["exec_type"] in ("8", "I") else None,
            text=safe_text(text) if text else None)

    def _status_42(self, seq: int, now: bytes, event: dict) -> bytes:
        body = [(37, str(event.get("order_id") or "NONE")), (11, _wire(event.get("cl_ord_id") or "NONE")),
                (17, "0"), (20, "3"), (150, event["ord_status"]), (39, event["ord_status"]),
                (55, _wire(event.get("symbol") or "")), (54, _wire(event.get("side") or "1")),
                (38, event.get("qty") or 0),
                (32, 0), (31, "0"), (151, event["leaves_qty"]), (14, event["cum_qty"]), (6, event["avg_px"])]
        rej = event.get("rej_reason")
        if rej is not None:      # a status request for an order we do not know: 103=5 Unknown order
            body.append((103, str(rej if type(rej) is int and rej <= _ORD_REJ_42_MAX else _ORD_REJ_42_OTHER)))
        if event.get("text"):
            body.append((58, safe_text(event["text"])))
        return encode(self.begin, b"8", self.sender, self.target, seq, now, body)

    def _unknown_order_status_44(self, seq: int, now: bytes, event: dict) -> bytes:
        """The FIX 4.4 status answer for an order we do not know: OrdStatus 8, OrdRejReason 5,
        nothing of an order that does not exist (no OrdType or OrderQty, which FIX 4.4's
        ExecutionReport does not require; the template would fill in 40=2 and 38=0)."""
        body = [(37, "NONE"), (11, _wire(event.get("cl_ord_id") or "NONE")), (17, "0"), (150, "I"),
                (39, event["ord_status"])]
        if event.get("symbol"):      # optional in FIX 4.4 (Instrument): left out, never sent empty
            body.append((55, _wire(event["symbol"])))
        body += [(54, _wire(event.get("side") or "1")), (151, event["leaves_qty"]), (14, event["cum_qty"]),
                 (6, event["avg_px"])]
        rej = event.get("rej_reason")
        if rej is not None:
            body.append((103, str(rej)))
        if event.get("text"):
            body.append((58, safe_text(event["text"])))
        body.append((60, fix_timestamp(event["ts"], self.precision)))
        return encode(self.begin, b"8", self.sender, self.target, seq, now, body)

    def cancel_reject(self, seq: int, now: bytes, event: dict) -> bytes:
        reason = event["rej_reason"]
        if self.begin == b"FIX.4.2" and type(reason) is int and reason > _CXL_REJ_42_MAX:
            reason = _CXL_REJ_42_OTHER
        body = [(37, str(event.get("order_id") or "NONE")), (11, _wire(event.get("cl_ord_id") or "NONE")),
                (41, _wire(event.get("orig_cl_ord_id") or "NONE")), (39, event.get("ord_status") or "8"),
                (434, event["response_to"]), (102, str(reason)),
                (58, safe_text(event.get("text") or ""))]
        if self.begin == b"FIX.4.4":
            body.append((60, fix_timestamp(event["ts"], self.precision)))
        return encode(self.begin, b"9", self.sender, self.target, seq, now, body)

    def mass_cancel_report(self, seq: int, now: bytes, event: dict) -> bytes:
        body = [(37, f"MC{event.get('seq', 0)}"), (11, _wire(event.get("cl_ord_id") or "NONE")),
                (530, event.get("mass_cancel_type") or "7"), (531, event.get("mass_cancel_response") or "0"),
                (533, event.get("affected", 0))]
        if event.get("rej_reason") is not None:
            body.append((532, str(event["rej_reason"])))
        if event.get("symbol"):
            body.append((55, _wire(event["symbol"])))
        if event.get("text"):
            body.append((58, safe_text(event["text"])))
        return encode(self.begin, b"r", self.sender, self.target, seq, now, body)
