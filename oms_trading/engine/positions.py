"""Positions, exposure and risk limits as int64 arrays indexed by account and instrument.

The engine keeps the position/exposure columns current on every accept, fill, cancel and
replace (with or without a risk object); the risk engine writes the limit columns; the
numba pre-trade kernel (compliance.kernels) reads both without any Python object.

Money is held as integers of one *money unit* = 10**-S, where S is the largest number of
decimals of any instrument's tick size, so every instrument's tick is a whole number of
units (``I[i, I_MULT]``) and price_ticks * qty * mult is an exact amount in money units.
Amounts per account x instrument (and the notional limits) are in the instrument's own
currency. The per-account sums the credit limit reads (A_OPEN_MONEY, A_FILLED_MONEY, A_CREDIT)
are in money units of the *base currency* ([risk] base_currency): each amount is converted
with the instrument's FX rate (I_FX_NUM / I_FX_DEN) and rounded up, so a conversion never
makes an exposure look smaller than it is.

Layout
------
``AI``  shape (n_accounts * n_instruments, AI_COLS), row ``a * n_inst + i``
``A``   shape (n_accounts, A_COLS)
``I``   shape (n_instruments, I_COLS)
all views, in this order, into one flat int64 array ``mem`` (followed by OUT_COLS scratch).
Limit value 0 means "check off" (as in the config); flags are 0/1.
"""
from __future__ import annotations

from decimal import Decimal

import numpy as np

from ..config import Config

# -- AI: account x instrument ---------------------------------------------------------------
POS = 0               # net filled position (buys +, sells -)
OPEN_BUY = 1          # resting buy leaves
OPEN_SELL = 2         # resting sell leaves
BOUGHT = 3            # filled buy qty (since start)
SOLD = 4              # filled sell qty
BOUGHT_MONEY = 5      # filled buy notional, money units
SOLD_MONEY = 6
OPEN_BUY_MONEY = 7    # resting buy notional at the limit price, money units
OPEN_SELL_MONEY = 8
L_MAX_QTY = 9         # effective limits (instrument override > account > default)
L_MAX_NOTIONAL = 10   # money units
L_COLLAR_PCT = 11     # percent * 10**4 (so "10" -> 100000, "2.5" -> 25000)
L_COLLAR_TICKS = 12
L_MAX_LONG = 13
L_MAX_SHORT = 14
L_RESTRICTED = 15     # restricted for this account (per-account list)
AI_COLS = 16

# -- A: account -----------------------------------------------------------------------------
A_OPEN_MONEY = 0      # gross notional of resting orders (buy + sell), base-currency money units
A_FILLED_MONEY = 1    # gross notional of fills of the day (reset at end of day), base currency
A_CREDIT = 2          # credit limit, base-currency money units (0: off)
A_REDUCE_ONLY = 3
A_KILLED = 4
A_COLS = 5

# -- I: instrument --------------------------------------------------------------------------
I_REF = 0             # reference price in ticks: last trade, else configured (0: none)
I_MULT = 1            # money units per tick
I_HALTED = 2
I_KILLED = 3
I_RESTRICTED = 4      # on the global restricted list
I_FX_NUM = 5          # base currency per unit of the instrument's currency = I_FX_NUM / I_FX_DEN
I_FX_DEN = 6
I_COLS = 7

# -- OUT: the kernel's scratch output (limit, actual, reference) at the end of ``mem`` ------
OUT_COLS = 4

INT64_MAX = 2**63 - 1
LIMIT_CAP = 2**62     # limits are clipped here: a cap this large is "no limit" in practice
# the largest value of one order, money units: a hard sanity bound whatever the risk limits say,
# so an order, its fills and the running sums stay well inside int64 (2**10 such orders at once)
ORDER_VALUE_CAP = 2**53


def fx_fraction(config: Config, currency: str) -> tuple[int, int]:
    """The FX rate of ``currency`` into the base currency as integers (num, den)."""
    if currency == config.base_currency:
        return 1, 1
    rate = config.fx_rates.get(currency)
    if rate is None:
        raise ValueError(f"no FX rate for {currency} into the base currency {config.base_currency}")
    num, den = rate.as_integer_ratio()
    return num, den


def money_scale(config: Config) -> int:
    """Decimals of the money unit: the finest tick of any instrument."""
    scale = 0
    for inst in config.instruments:
        exponent = int(inst.tick_size.normalize().as_tuple().exponent)
        scale = max(scale, -exponent)
    return scale


class Positions:
    """The arrays plus the Python-side helpers the engine calls on each state change."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.n_acct = len(config.accounts)
        self.n_inst = len(config.instruments)
        self.scale = money_scale(config)
        self.unit = Decimal(1).scaleb(-self.scale)
        # one flat array (the kernel takes a single argument: each array passed to a numba
        # call costs ~100+ ns of unboxing); AI, A, I and OUT are views into it
        n_ai = self.n_acct * self.n_inst * AI_COLS
        n_a = self.n_acct * A_COLS
        n_i = self.n_inst * I_COLS
        self.mem = np.zeros(n_ai + n_a + n_i + OUT_COLS, dtype=np.int64)
        self.AI = self.mem[:n_ai].reshape(self.n_acct * self.n_inst, AI_COLS)
        self.A = self.mem[n_ai:n_ai + n_a].reshape(self.n_acct, A_COLS)
        self.I = self.mem[n_ai + n_a:n_ai + n_a + n_i].reshape(self.n_inst, I_COLS)
        self.OUT = self.mem[n_ai + n_a + n_i:]
        # the hot-path updates go through a memoryview of ``mem``: an item += with Python ints
        # costs less than half of numpy's 2-D scalar indexing (and raises, rather than wraps,
        # past int64); flat index of AI[row, col] = row * AI_COLS + col, of A[a, col] = _a0 + a * A_COLS + col
        self._m = memoryview(self.mem)
        self._a0 = n_ai
        self.mult: list[int] = []
        self.fx: list[tuple[int, int] | None] = []   # (num, den); None: the base currency
        for inst in config.instruments:
            mult = inst.tick_size / self.unit
            assert mult == int(mult)
            self.mult.append(int(mult))
            self.I[inst.index, I_MULT] = int(mult)
            self.I[inst.index, I_REF] = inst.reference_ticks or 0
            num, den = fx_fraction(config, inst.currency)
            self.fx.append(None if num == den else (num, den))
            self.I[inst.index, I_FX_NUM] = num
            self.I[inst.index, I_FX_DEN] = den

    def to_base(self, inst_idx: int, money: int) -> int:
        """Money units of the instrument's currency -> base-currency money units, rounded up."""
        fx = self.fx[inst_idx]
        if fx is None:
            return money
        return -(-money * fx[0] // fx[1])

    # -- conversions (cold path) -------------------------------------------------------------

    def money_text(self, units: int) -> str:
        return f"{Decimal(int(units)) * self.unit:.{self.scale}f}"

    def to_units(self, amount: Decimal) -> int:
        """Decimal currency -> money units, rounded down (exact for a <= comparison with ints)."""
        return min(int(amount / self.unit), LIMIT_CAP)

    # -- updates (hot path) ------------------------------------------------------------------

    def open_add(self, order) -> None:
        """The order rests (or is about to be matched) with its leaves."""
        inst_idx = order.instrument.index
        r = (order.account_idx * self.n_inst + inst_idx) * AI_COLS
        leaves = order.leaves_qty
        money = leaves * order.price_ticks * self.mult[inst_idx]
        order.open_money = money
        base = money if self.fx[inst_idx] is None else self.to_base(inst_idx, money)
        order.open_base = base
        m = self._m
        if order.is_buy:
            m[r + OPEN_BUY] += leaves
            m[r + OPEN_BUY_MONEY] += money
        else:
            m[r + OPEN_SELL] += leaves
            m[r + OPEN_SELL_MONEY] += money
        m[self._a0 + order.account_idx * A_COLS + A_OPEN_MONEY] += base

    def open_remove(self, order) -> None:
        """The order's leaves leave the market (cancel, expire, replace-out)."""
        r = (order.account_idx * self.n_inst + order.instrument.index) * AI_COLS
        money = order.open_money
        m = self._m
        if order.is_buy:
            m[r + OPEN_BUY] -= order.leaves_qty
            m[r + OPEN_BUY_MONEY] -= money
        else:
            m[r + OPEN_SELL] -= order.leaves_qty
            m[r + OPEN_SELL_MONEY] -= money
        m[self._a0 + order.account_idx * A_COLS + A_OPEN_MONEY] -= order.open_base
        order.open_money = 0
        order.open_base = 0

    def fill(self, order, qty: int, price: int) -> None:
        """``qty`` of the order traded at ``price`` ticks; order.leaves_qty is already reduced."""
        inst_idx = order.instrument.index
        r = (order.account_idx * self.n_inst + inst_idx) * AI_COLS
        mult = self.mult[inst_idx]
        money = qty * price * mult
        open_money = order.leaves_qty * order.price_ticks * mult
        released = order.open_money - open_money
        order.open_money = open_money
        if self.fx[inst_idx] is None:
            released_base, money_base = released, money
            order.open_base = open_money
        else:
            open_base = self.to_base(inst_idx, open_money)
            released_base, order.open_base = order.open_base - open_base, open_base
            money_base = self.to_base(inst_idx, money)
        m = self._m
        if order.is_buy:
            m[r + POS] += qty
            m[r + BOUGHT] += qty
            m[r + BOUGHT_MONEY] += money
            m[r + OPEN_BUY] -= qty
            m[r + OPEN_BUY_MONEY] -= released
        else:
            m[r + POS] -= qty
            m[r + SOLD] += qty
            m[r + SOLD_MONEY] += money
            m[r + OPEN_SELL] -= qty
            m[r + OPEN_SELL_MONEY] -= released
        a = self._a0 + order.account_idx * A_COLS
        m[a + A_OPEN_MONEY] -= released_base
        m[a + A_FILLED_MONEY] += money_base

    def trade_price(self, inst_idx: int, price: int) -> None:
        self.I[inst_idx, I_REF] = price

    def end_of_day(self) -> None:
        self.A[:, A_FILLED_MONEY] = 0

    # -- read side ---------------------------------------------------------------------------

    def rows(self, account: str | None = None) -> list[dict]:
        """Positions and resting exposure per account and instrument (rows with any activity)."""
        out = []
        AI = self.AI.tolist()
        for acct in self.config.accounts:
            if account is not None and acct.name != account:
                continue
            for inst in self.config.instruments:
                r = AI[acct.index * self.n_inst + inst.index]
                if not any(r[:L_MAX_QTY]):
                    continue
                out.append({
                    "account": acct.name, "symbol": inst.symbol, "currency": inst.currency,
                    "position": r[POS], "bought_qty": r[BOUGHT], "sold_qty": r[SOLD],
                    "bought_notional": self.money_text(r[BOUGHT_MONEY]),
                    "sold_notional": self.money_text(r[SOLD_MONEY]),
                    "open_buy_qty": r[OPEN_BUY], "open_sell_qty": r[OPEN_SELL],
                    "open_buy_notional": self.money_text(r[OPEN_BUY_MONEY]),
                    "open_sell_notional": self.money_text(r[OPEN_SELL_MONEY]),
                    "worst_case_long": r[POS] + r[OPEN_BUY], "worst_case_short": -(r[POS] - r[OPEN_SELL]),
                })
        return out

    def exposure_rows(self, account: str | None = None) -> list[dict]:
        out = []
        A = self.A.tolist()
        for acct in self.config.accounts:
            if account is not None and acct.name != account:
                continue
            r = A[acct.index]
            out.append({
                "account": acct.name, "currency": self.config.base_currency,
                "open_notional": self.money_text(r[A_OPEN_MONEY]),
                "filled_notional_today": self.money_text(r[A_FILLED_MONEY]),
                "gross_exposure": self.money_text(r[A_OPEN_MONEY] + r[A_FILLED_MONEY]),
                "credit_limit": self.money_text(r[A_CREDIT]) if r[A_CREDIT] else None,
                "reduce_only": bool(r[A_REDUCE_ONLY]), "kill_switch": bool(r[A_KILLED]),
            })
        return out
