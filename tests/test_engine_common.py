"""Shared helpers of the engine and risk tests (no tests here): a config, an in-memory
journal, command builders."""
from __future__ import annotations

from pathlib import Path

from oms_trading.audit import schema as ev
from oms_trading.book import NumbaBook, ReferenceBook
from oms_trading.compliance.risk import RiskEngine
from oms_trading.config import parse_config
from oms_trading.engine.engine import Engine

CONFIG_TOML = """
[[instruments]]
symbol = "AAPL"
tick_size = "0.01"
reference_price = "100.00"

[[instruments]]
symbol = "VOD"
tick_size = "0.02"
lot_size = 10
reference_price = "50.00"

[[instruments]]
symbol = "NOREF"
tick_size = "0.05"

[[accounts]]
name = "A1"
stp_mode = "cancel_resting"

[[accounts]]
name = "A2"
stp_mode = "none"

[[accounts]]
name = "A3"
stp_mode = "cancel_both"

[risk.defaults]
max_order_qty = 1000
max_order_notional = "100000"
price_collar_pct = "10"
price_collar_ticks = 0
credit_limit = "500000"
max_long_position = 2000
max_short_position = 2000
max_messages_per_second = 0
duplicate_window_ms = 0

[risk.accounts.A2]
max_order_notional = "50000"

[risk.instruments.VOD]
price_collar_pct = "5"

[[fix.sessions]]
sender_comp_id = "OMS"
target_comp_id = "S1"
begin_string = "FIX.4.4"
account = "A1"

[[fix.sessions]]
sender_comp_id = "OMS"
target_comp_id = "S2"
begin_string = "FIX.4.4"
account = "A2"
"""

S1, S2, S3 = "S1->OMS", "S2->OMS", "S3->OMS"
SESSION_ACCOUNT = {S1: "A1", S2: "A2", S3: "A3"}


def make_config(extra: str = ""):
    return parse_config(CONFIG_TOML + extra, "<test>", Path("."))


class MemJournal:
    """In-memory journal: append returns the record with seq, like the real one."""

    def __init__(self) -> None:
        self.records: list[dict] = []
        self.flushes = 0

    def append(self, event: dict) -> dict:
        for key, value in event.items():
            if type(value) not in (int, str, type(None)):
                raise TypeError(f"{key}: {type(value).__name__} not allowed in the journal")
        rec = dict(event)
        rec["seq"] = len(self.records) + 1
        self.records.append(rec)
        return rec

    def flush(self) -> None:
        self.flushes += 1

    def commands(self) -> list[dict]:
        return [r for r in self.records if r["type"] in ev.COMMAND_TYPES]


def make_engine(risk: bool = True, numba: bool = False, config=None, journal=None):
    cfg = config or make_config()
    factory = (lambda: NumbaBook(capacity=64)) if numba else (lambda: ReferenceBook())
    journal = journal if journal is not None else MemJournal()
    return Engine(cfg, journal, factory, risk=RiskEngine(cfg) if risk else None)


def new(cl, side, qty, price="100.00", session=S1, symbol="AAPL", tif="1", ord_type="2", ts=1, account=None):
    return {"type": ev.ORDER_RECEIVED, "ts": ts, "session": session, "cl_ord_id": cl,
            "account": account or SESSION_ACCOUNT[session], "symbol": symbol, "side": side, "ord_type": ord_type,
            "tif": tif, "price": price if ord_type == "2" else None, "qty": qty}


def cancel(cl, orig, session=S1, ts=1):
    return {"type": ev.CANCEL_REQUESTED, "ts": ts, "session": session, "cl_ord_id": cl, "orig_cl_ord_id": orig,
            "order_id": None, "symbol": None, "side": None}


def replace(cl, orig, qty, price=None, session=S1, ts=1):
    return {"type": ev.REPLACE_REQUESTED, "ts": ts, "session": session, "cl_ord_id": cl, "orig_cl_ord_id": orig,
            "order_id": None, "symbol": None, "side": None, "ord_type": None, "tif": None, "price": price,
            "qty": qty}


def limit(scope, name, value, ts=1, expires_ts=None, reason="test", user="risk1"):
    return {"type": ev.LIMIT_CHANGE_REQUESTED, "ts": ts, "user": user, "approver": None, "reason": reason,
            "scope": scope, "limit": name, "new_value": value, "expires_ts": expires_ts}


def kill(scope, action="engage", ts=1, reason="test"):
    return {"type": ev.KILL_SWITCH_REQUESTED, "ts": ts, "user": "risk1", "approver": None, "reason": reason,
            "scope": scope, "action": action}


def reports(events):
    """Events without the command record (and the engine_rules record a fresh engine journals
    before its first command)."""
    return [e for e in events if e["type"] not in ev.COMMAND_TYPES and e["type"] != ev.ENGINE_RULES]


def strip(event):
    return {k: v for k, v in event.items() if k not in ("seq", "prev_hash", "hash")}
