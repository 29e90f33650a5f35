"""The engine's record of one order: its identity, its quantities and where it stands."""
from __future__ import annotations

from ..model import Instrument

# FIX OrdStatus values as plain strings (the hot path compares strings, not enums)
NEW, PARTIALLY_FILLED, FILLED, CANCELED, REJECTED, EXPIRED = "0", "1", "2", "4", "8", "C"
CLOSED_STATUSES = frozenset({FILLED, CANCELED, REJECTED, EXPIRED})


class Order:
    """Mutable state of one live or finished order. Only the engine writes it."""

    __slots__ = (
        "order_id", "cl_ord_id", "orig_cl_ord_id", "session", "account", "account_idx",
        "instrument", "side", "is_buy", "ord_type", "tif", "price_ticks", "price_text",
        "qty", "cum_qty", "leaves_qty", "notional_ticks", "status", "ts", "last_px_text", "open_money",
        "open_base", "aliases",
    )

    def __init__(self, order_id: int, cl_ord_id: str, session: str, account: str, account_idx: int,
                 instrument: Instrument, side: str, ord_type: str, tif: str,
                 price_ticks: int, price_text: str | None, qty: int, ts: int) -> None:
        self.order_id = order_id
        self.cl_ord_id = cl_ord_id
        self.orig_cl_ord_id: str | None = None
        self.session = session
        self.account = account
        self.account_idx = account_idx
        self.instrument = instrument
        self.side = side
        self.is_buy = side == "1"
        self.ord_type = ord_type
        self.tif = tif
        self.price_ticks = price_ticks
        self.price_text = price_text
        self.qty = qty
        self.cum_qty = 0
        self.leaves_qty = qty
        self.notional_ticks = 0   # sum of fill price (ticks) * fill qty, for an exact AvgPx
        self.status = NEW
        self.ts = ts
        self.last_px_text: str | None = None
        self.open_money = 0       # resting notional counted in Positions (money units)
        self.open_base = 0        # the same in the base currency (the credit limit's sums)
        self.aliases: list[str] | None = None   # earlier ClOrdIDs (cancel/replace chain)

    def rename(self, cl_ord_id: str) -> None:
        """A cancel or replace gives the order a new ClOrdID; the old one stays its alias."""
        if self.aliases is None:
            self.aliases = [self.cl_ord_id]
        else:
            self.aliases.append(self.cl_ord_id)
        self.orig_cl_ord_id = self.cl_ord_id
        self.cl_ord_id = cl_ord_id

    @property
    def is_open(self) -> bool:
        return self.status not in CLOSED_STATUSES

    @property
    def symbol(self) -> str:
        return self.instrument.symbol
