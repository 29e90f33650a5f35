"""Pre-trade risk: limits per account and per instrument over defaults (where both are set,
the stricter binds: ``RiskEngine.effective``), kill switches, halts, restricted lists,
reduce-only, message-rate and duplicate-order checks.

All state here changes only through commands sequenced by the engine (so a replay of the
journal rebuilds it exactly) and all time comes from the commands' ``ts``.

Checks on a new order, in this order (the first failure is reported)
---------------------------------------------------------------------
=====================  ===========  ======================================================
rule                   OrdRejReason what
=====================  ===========  ======================================================
message_rate           0 broker     > max_messages_per_second messages of the session in
                                    the last second (sliding window; cancels always pass)
kill_switch            0 broker     global / account / session / instrument switch engaged
trading_halt           2 exch.closed instrument halted
restricted_instrument  0 broker     global restricted list or the account's own list
max_order_qty          3 exceeds    OrderQty > limit
no_reference_price     0 broker     a collar (limit order) or notional/credit check (market
                                    order) needs a reference price and there is none: fail
                                    closed
price_collar_pct       0 broker     |price - ref| > pct% of ref (ref = last trade, else the
price_collar_ticks     0 broker     configured reference price); FIX 4.4 has no price-band
                                    value (16 exists only from FIX 5.0)
max_order_notional     3 exceeds    price * qty (market orders at the reference price)
reduce_only            0 broker     account is reduce-only and the order could increase its
                                    position (worst case counting resting orders)
max_long_position      3 exceeds    position + resting buys + order > limit
max_short_position     3 exceeds    short side likewise
credit_limit           3 exceeds    resting notional + filled notional of the day + order
                                    > limit (gross, per account)
duplicate_order        6 duplicate  same account, symbol, side, type, qty, price within
                                    duplicate_window_ms
=====================  ===========  ======================================================

A replace is checked the same way with the replaced order's own exposure taken out; a
replace that only lowers the quantity at the same price always passes (it reduces risk).
Rejected replaces answer OrderCancelReject with CxlRejReason 2 (broker option).

Cost on the accept path (what every accepted order pays; ``oms bench engine`` measures it):
``new_order`` makes ONE numba call (kernels.new_order, seven ints) that counts the order in
its session's message-rate window, looks at the session's kill switch and runs every array
check; a 0 back means accepted. The duplicate-order window is looked at (in Python) only
while one is in use. Text, limit and actual value of a rejection are built only when it
fails. The engine calls ``on_message`` for every other message of a session and for a new
order that fails validation before risk (it still counts; over the rate, that is the
answer): a cancel's time goes to the window's pending buffer from Python (no kernel call),
a replace is counted and checked by one numba call (kernels.rate). ``on_message`` +
``check_new`` remain for callers that count and check separately (a new order counted by
both ``on_message`` and ``new_order`` would count twice).

Notional limits compare amounts in the instrument's currency; the credit limit sums an
account's notionals in the base currency ([risk] base_currency, fx_rates), each converted
with its instrument's rate and rounded up.

Control commands (built by the HTTP API; sequenced and journaled like orders)
-----------------------------------------------------------------------------
Limit change (also halts, restricted lists and reduce-only)::

    {"type": "limit_change_requested", "ts": <int ns>,
     "user": "risk1", "approver": None | "risk2",      # approver: four-eyes, checked by HTTP
     "reason": "client request #123",                  # required, non-empty
     "scope": "default" | "account:ACC1" | "instrument:TSLA" | "account:ACC1/instrument:TSLA",
     "limit": "max_order_notional",                    # see below
     "new_value": "2000000" | None,                    # text; None/"" removes an override
     "expires_ts": None | <int ns>,                    # optional: previous value returns then
     "request_id": None | "<HTTP id>"}                 # optional, echoed in the events

  limit names: every name of limits.LIMIT_DEFS (scope default/account; the per-instrument
  ones of limits.INSTRUMENT_LIMITS also at instrument scope), plus flags with value
  "true"/"false": ``halted`` (instrument), ``restricted`` (instrument: global list;
  account/instrument: the account's list), ``reduce_only`` (account).
  -> ``limit_changed`` {user, approver, reason, scope, limit, old_value, new_value,
     expires_ts, request_id} or ``limit_change_rejected`` {..., text}. ``old_value`` and
     ``new_value`` are the scope's own value as text, None when it inherits. At
     ``expires_ts`` a CLOCK command (ts >= expires_ts) puts the value from before the
     temporary change back: ``limit_expired`` {scope, limit, old_value, new_value, user,
     reason}. A later change of the same scope and limit replaces a pending expiry (a
     temporary one keeps the original value to return to; a permanent one cancels it).

Kill switch::

    {"type": "kill_switch_requested", "ts": <int ns>, "user": "risk1", "approver": None,
     "reason": "runaway algo", "scope": "global" | "account:ACC1" | "session:CLIENT1->OMS"
     | "instrument:AAPL", "action": "engage" | "release", "request_id": None}

  engage -> ``kill_switch_engaged`` {user, reason, scope, old_value, new_value "engaged",
  affected} then ``order_canceled`` for every resting order in scope (each to its owner's
  session, text "Kill switch engaged (scope)", rule "kill_switch"); while engaged new
  orders and risk-increasing replaces in scope are rejected. release ->
  ``kill_switch_released``. A malformed request (or releasing a switch that is not
  engaged) -> ``limit_change_rejected`` with text.
"""
from __future__ import annotations

from array import array
from decimal import ROUND_CEILING, Decimal
from typing import TYPE_CHECKING

import numpy as np

from ..audit import schema as ev
from ..config import Config
from ..engine.engine import Rejection
from ..engine.positions import (AI_COLS, A_COLS, A_CREDIT, A_KILLED, A_REDUCE_ONLY, I_COLS, I_HALTED, I_KILLED,
                                I_RESTRICTED, L_COLLAR_PCT, L_COLLAR_TICKS, L_MAX_LONG, L_MAX_NOTIONAL, L_MAX_QTY,
                                L_MAX_SHORT, L_RESTRICTED, LIMIT_CAP, OUT_COLS)
from . import kernels as K
from .limits import BUILTIN_DEFAULTS, INSTRUMENT_LIMITS, LIMIT_DEFS, LimitValueError

if TYPE_CHECKING:
    from ..engine.engine import Engine

# FIX 4.4 OrdRejReason (103) values used here (4.4 defines 0-15 and 99)
BROKER_OPTION, EXCHANGE_CLOSED, ORDER_EXCEEDS_LIMIT, DUPLICATE_ORDER = 0, 2, 3, 6
CXL_BROKER_OPTION = 2   # CxlRejReason (102) for a replace refused by risk

FLAGS = {"halted": ("instrument",), "restricted": ("instrument", "pair"), "reduce_only": ("account",)}
ACCOUNT_ONLY = frozenset(LIMIT_DEFS) - INSTRUMENT_LIMITS
_AI_LIMIT_COLS = (("max_order_qty", L_MAX_QTY), ("max_order_notional", L_MAX_NOTIONAL),
                  ("price_collar_pct", L_COLLAR_PCT), ("price_collar_ticks", L_COLLAR_TICKS),
                  ("max_long_position", L_MAX_LONG), ("max_short_position", L_MAX_SHORT))
_RATED_TYPES = frozenset((ev.ORDER_RECEIVED, ev.REPLACE_REQUESTED))   # what the rate limit can reject
_RING_START = 256   # first ring capacity of a session's rate window (a power of two; doubles when full)
_PENDING = 64       # times a session's pending buffer holds (see kernels: counted without a kernel call)


def _text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class ControlError(ValueError):
    """A control command that cannot be applied; the text goes into limit_change_rejected."""


class RiskEngine:
    """Pre-trade risk for one engine. Construct with the config; the engine calls ``bind``."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.engine: Engine | None = None
        self.acct_index = {a.name: a.index for a in config.accounts}
        self.inst_index = {i.symbol: i.index for i in config.instruments}
        self.session_account = {s.key: self.acct_index.get(s.account) for s in config.sessions if s.account}
        self._check_new, self._check_replace, self._new_order, self._rate, self._replace_order = K.compiled()

    # -- engine interface ------------------------------------------------------------------

    def bind(self, engine: "Engine") -> None:
        self.engine = engine

    def reset(self) -> None:
        """Back to the configured limits (the state before the first journaled command)."""
        cfg = self.config
        defaults = dict(BUILTIN_DEFAULTS)
        defaults.update(cfg.risk_defaults or {})
        self.layers: dict[str, dict[str, object]] = {"default": defaults}
        for name, values in (cfg.risk_accounts or {}).items():
            self.layers[f"account:{name}"] = dict(values)
        for symbol, values in (cfg.risk_instruments or {}).items():
            self.layers[f"instrument:{symbol}"] = dict(values)
        for symbol in cfg.restricted or ():
            self.layers.setdefault(f"instrument:{symbol}", {})["restricted"] = True
        for name, symbols in (cfg.restricted_by_account or {}).items():
            for symbol in symbols:
                self.layers.setdefault(f"account:{name}/instrument:{symbol}", {})["restricted"] = True
        # the configured layers in force (the file's, until a journaled limits_loaded record
        # says which file ran then: apply_baseline), and the (scope, limit) keys the desk set
        # since: those a new configuration leaves alone, as the desk's changes always won over
        # the file at a restart. _desk_before: whether a key under a temporary change was the
        # desk's before it (its expiry gives a configured key back to the configuration).
        self._baseline = {scope: dict(values) for scope, values in self.layers.items()}
        self._desk: set[tuple[str, str]] = set()
        self._desk_before: dict[tuple[str, str], bool] = {}
        self.global_killed = False
        self.killed: set[str] = set()               # engaged scopes (account:/instrument:/session:)
        self.killed_sessions: set[str] = set()
        self.pending: dict[tuple[str, str], tuple[int, object, dict]] = {}   # expiries
        # four eyes: (scope, limit) -> the layer value one risk user may move it from (by the
        # four-eyes factor at most; None: the scope falls back). The value before the desk's
        # first change, until a permanent change approved by two users replaces it; a single
        # user's changes never move it, so a limit cannot be raised in steps each within the
        # factor. Rebuilt by the replay, like every limit (the journal has user and approver).
        self.four_eyes_ref: dict[tuple[str, str], object] = {}
        # rate windows (see kernels): session -> its window array, and -> that array's address
        # (what the kernels take); every session seen gets one, None included (limit 0)
        self._window_arrays: dict[str | None, np.ndarray] = {}
        self._waddr: dict[str | None, int] = {}
        self._pend_arrays: dict[str | None, array] = {}   # session -> its pending buffer (kept alive)
        self._pending: dict[str | None, array] = {}       # the same, for sessions where every message counts
        self._rates = np.zeros(self.engine.pos.n_acct + 1, dtype=np.int64)   # per account, then default
        self.last_orders: dict[tuple, int] = {}
        self.pos = self.engine.pos
        self._mem = self.pos.mem
        self._apply()
        self._mem_window = self._open_window(None)   # never counts, so never moves: check_replace's way to mem

    # -- effective values ------------------------------------------------------------------

    def value(self, name: str, account: str | None = None, symbol: str | None = None):
        """Effective limit of ``account`` (on ``symbol``); see ``effective``."""
        return self.effective(name, account, symbol)[0]

    def effective(self, name: str, account: str | None = None, symbol: str | None = None) -> tuple[object, str]:
        """(value, scope it comes from). An instrument's limit stands in for the default on
        that instrument; an account's own limit stands in for the default everywhere; where
        both are set, each is a check of its own, so the stricter binds (0 is "off": the other
        one then). A risk manager who tightens an account expects it on every instrument, and
        an instrument's limit still holds for an account allowed more elsewhere."""
        inst_scope = f"instrument:{symbol}"
        own_scope = f"account:{account}"
        inst = self.layers.get(inst_scope) if symbol is not None and name in INSTRUMENT_LIMITS else None
        own = self.layers.get(own_scope) if account is not None else None
        in_inst = inst is not None and name in inst
        in_own = own is not None and name in own
        if in_own and in_inst:
            if self.engine.rules < 2:          # engine rules 1: the instrument's stood in for the account's
                return inst[name], inst_scope
            a, b = own[name], inst[name]
            if not b or (a and a <= b):
                return a, own_scope
            return b, inst_scope
        if in_inst:
            return inst[name], inst_scope
        if in_own:
            return own[name], own_scope
        return self.layers["default"].get(name, BUILTIN_DEFAULTS.get(name)), "default"

    def _apply(self) -> None:
        """Write every limit and flag into the arrays the kernel reads (cold path)."""
        pos = self.pos
        n_inst = pos.n_inst
        AI, A, I = pos.AI, pos.A, pos.I
        self.rate_limit = [0] * pos.n_acct
        self.dup_window_ns = [0] * pos.n_acct
        for acct in self.config.accounts:
            a = acct.index
            A[a, A_CREDIT] = pos.to_units(Decimal(self.value("credit_limit", acct.name)))
            A[a, A_REDUCE_ONLY] = int(bool(self.layers.get(f"account:{acct.name}", {}).get("reduce_only")))
            A[a, A_KILLED] = int(f"account:{acct.name}" in self.killed)
            self.rate_limit[a] = int(self.value("max_messages_per_second", acct.name))
            self.dup_window_ns[a] = int(self.value("duplicate_window_ms", acct.name)) * 1_000_000
            for inst in self.config.instruments:
                row = a * n_inst + inst.index
                for name, col in _AI_LIMIT_COLS:
                    v = self.value(name, acct.name, inst.symbol)
                    if name == "max_order_notional":
                        v = pos.to_units(Decimal(v))
                    elif name == "price_collar_pct":
                        v = int(Decimal(v) * 10_000)
                    AI[row, col] = min(int(v), LIMIT_CAP)
                AI[row, L_RESTRICTED] = int(bool(
                    self.layers.get(f"account:{acct.name}/instrument:{inst.symbol}", {}).get("restricted")))
        for inst in self.config.instruments:
            layer = self.layers.get(f"instrument:{inst.symbol}", {})
            I[inst.index, I_HALTED] = int(bool(layer.get("halted")))
            I[inst.index, I_RESTRICTED] = int(bool(layer.get("restricted")))
            I[inst.index, I_KILLED] = int(f"instrument:{inst.symbol}" in self.killed)
        default_rate = int(self.value("max_messages_per_second"))
        # a session with a configured account: that account's limit; without: each message's
        # account's (the default for an unknown one), read by the kernel from _rates
        self.session_rate = {key: (self.rate_limit[a] if a is not None else default_rate)
                             for key, a in self.session_account.items()}
        self.default_rate = default_rate
        self._rates[:-1] = self.rate_limit
        self._rates[-1] = default_rate
        for session, window in self._window_arrays.items():
            self._write_window_header(session, window)
        self._slow_new = bool(self.killed_sessions) or any(self.dup_window_ns)
        self._write_context()

    # -- rate windows (cold path: a session's first message, a full ring, a limit change) -----

    def _write_window_header(self, session: str | None, window: np.ndarray) -> None:
        window[K.W_MEM] = self._mem.ctypes.data
        window[K.W_MEMLEN] = self._mem.shape[0]
        window[K.W_RATES] = self._rates.ctypes.data
        window[K.W_NACCT] = self._rates.shape[0] - 1
        window[K.W_LIMIT] = 0 if session is None else self.session_rate.get(session, -1)
        window[K.W_FLAGS] = ((K.WF_KILLED if session in self.killed_sessions else 0)
                             | (K.WF_DUPLICATES if any(self.dup_window_ns) else 0))
        pend = self._pend_arrays.get(session)
        if pend is None:
            pend = self._pend_arrays[session] = array("q", bytes(8 * (1 + _PENDING)))
        window[K.W_PEND] = pend.buffer_info()[0]
        # every message of the session counts (its limit, or every account's and the
        # default): a cancel's time can go to the pending buffer without a kernel call
        limit = int(window[K.W_LIMIT])
        if limit > 0 or (limit < 0 and all(self._rates)):
            self._pending[session] = pend
        else:
            self._pending.pop(session, None)

    def _open_window(self, session: str | None) -> int:
        """The address of the session's rate window, made on its first message."""
        addr = self._waddr.get(session)
        if addr is None:
            addr = self._install_window(session, np.zeros(K.W_RING + _RING_START, dtype=np.int64))
        return addr

    def _install_window(self, session: str | None, window: np.ndarray) -> int:
        window[K.W_MASK] = window.shape[0] - K.W_RING - 1
        self._write_window_header(session, window)
        self._window_arrays[session] = window       # keeps the memory alive while its address is used
        addr = self._waddr[session] = window.ctypes.data
        return addr

    def _grow_window(self, session: str | None) -> int:
        """The session's ring is full: copy its times, oldest first, into one twice as large."""
        old = self._window_arrays[session]
        cap = old.shape[0] - K.W_RING
        head, count = int(old[K.W_HEAD]), int(old[K.W_COUNT])
        new = np.zeros(K.W_RING + 2 * cap, dtype=np.int64)
        new[:K.W_RING] = old[:K.W_RING]
        new[K.W_RING:K.W_RING + count] = old[K.W_RING + (head + np.arange(count)) % cap]
        new[K.W_HEAD] = 0
        return self._install_window(session, new)

    def window_times(self, session: str | None) -> list[int]:
        """The times (ns) in the session's rate window, oldest first (tests, diagnostics)."""
        window = self._window_arrays.get(session)
        if window is None:
            return []
        cap = window.shape[0] - K.W_RING
        head, count = int(window[K.W_HEAD]), int(window[K.W_COUNT])
        pend = self._pend_arrays[session]
        return [int(window[K.W_RING + (head + k) % cap]) for k in range(count)] + list(pend[1:1 + pend[0]])

    def _write_context(self) -> None:
        """The kernel's context word: array shape and the global kill switch (see kernels)."""
        pos = self.pos
        expected = pos.n_acct * pos.n_inst * AI_COLS + pos.n_acct * A_COLS + pos.n_inst * I_COLS + OUT_COLS
        if self._mem.shape != (expected,) or self._mem.dtype != np.int64 or not self._mem.flags.c_contiguous:
            raise RuntimeError("risk: Positions.mem does not have the layout the kernel expects")
        pos.OUT[K.O_CTX] = K.context_word(pos.n_acct, pos.n_inst, self.global_killed)

    # -- hot path ----------------------------------------------------------------------------

    def on_message(self, cmd: dict) -> Rejection | None:
        """Count one message of a session in its rate window; a Rejection when a new order or
        a replace is over the session's rate (cancels and the like are counted, always pass).

        Sliding one-second window of message times per session (kernels.rate, one numba
        call): the limit is the session's account's, or for a session without a configured
        account the message's account's (unknown: the default); 0: off, not counted. A
        message that is never refused, on a session where every message counts: its time
        goes to the window's pending buffer (no kernel call, see kernels)."""
        session = cmd.get("session")
        if cmd["type"] not in _RATED_TYPES:
            pend = self._pending.get(session)
            if pend is not None:
                n = pend[0] + 1
                if n <= _PENDING:
                    pend[n] = cmd["ts"]
                    pend[0] = n
                    return None
        addr = self._waddr.get(session)
        if addr is None:
            addr = self._open_window(session)
        rule = self._rate(addr, cmd["ts"], self.acct_index.get(cmd.get("account"), -1), cmd["type"] in _RATED_TYPES)
        while rule == K.RATE_RING_FULL:
            rule = self._rate(self._grow_window(session), cmd["ts"], self.acct_index.get(cmd.get("account"), -1),
                              cmd["type"] in _RATED_TYPES)
        if rule:
            return self._rate_rejection(session)
        return None

    def _rate_rejection(self, session: str) -> Rejection:
        """The message_rate Rejection from the limit and count the kernel wrote into OUT."""
        return self._rejection(K.R_MESSAGE_RATE, None, None, 0, False, session)

    def new_order(self, cmd: dict, inst, account_idx: int, price_ticks: int) -> None:
        """The whole pre-trade check of a validated new order (price_ticks 0: market order):
        counts it in its session's rate window and runs every check; raises Rejection.

        Accept path: one numba call (kernels.new_order, seven ints; the session kill switch is
        a flag in the session's window); the duplicate-order window is looked at only while
        one is in use (the kernel answers CHECK_DUPLICATE then).
        Replaces on_message + check_new for a new order: call one or the other, not both."""
        try:
            addr = self._waddr[cmd.get("session")]
        except KeyError:
            addr = self._open_window(cmd.get("session"))
        rule = self._new_order(addr, cmd["ts"], account_idx, inst.index, cmd["side"] == "1", price_ticks, cmd["qty"])
        if rule:
            self._new_order_slow(cmd, inst, account_idx, price_ticks, rule)

    def _new_order_slow(self, cmd: dict, inst, account_idx: int, price_ticks: int, rule: int) -> None:
        """What the kernel could not finish: a full ring, a rejection's text, the duplicate window."""
        session = cmd.get("session")
        while rule == K.RATE_RING_FULL:
            rule = self._new_order(self._grow_window(session), cmd["ts"], account_idx, inst.index, cmd["side"] == "1",
                                   price_ticks, cmd["qty"])
        if rule == K.R_MESSAGE_RATE:
            raise self._rate_rejection(session)
        if rule == K.R_KILL_SESSION:
            raise self._rejection(rule, inst, cmd.get("account"), price_ticks, False, session)
        if rule == K.CHECK_DUPLICATE:
            rule = K.R_OK
        if rule or self._slow_new:
            self._check_new_slow(cmd, inst, account_idx, price_ticks, rule)

    def check_new(self, cmd: dict, inst, account_idx: int, price_ticks: int) -> None:
        """Every check but the rate window (for a caller that counted the order with
        on_message first); raises Rejection. One numba call (kernels.check_new)."""
        rule = self._check_new(self._mem, account_idx, inst.index, cmd["side"] == "1", price_ticks, cmd["qty"])
        if rule or self._slow_new:
            self._check_new_slow(cmd, inst, account_idx, price_ticks, rule)

    def _check_new_slow(self, cmd: dict, inst, account_idx: int, price_ticks: int, rule: int) -> None:
        """Every check of a new order in the documented order, with its Rejection (cold path);
        ``rule``: what the kernel found (OUT still holds its limit and value)."""
        if self.killed_sessions and cmd.get("session") in self.killed_sessions:
            scope = f"session:{cmd.get('session')}"
            raise Rejection(BROKER_OPTION, f"Kill switch engaged ({scope})", "kill_switch", scope)
        qty = cmd["qty"]
        if rule:
            raise self._rejection(rule, inst, cmd["account"], price_ticks, price_ticks == 0)
        window = self.dup_window_ns[account_idx]
        if window:
            key = (account_idx, inst.index, cmd["side"], cmd["ord_type"], qty, price_ticks)
            last = self.last_orders.get(key)
            # a time later than this order's is from before a wall clock step back (the gateway
            # stamps commands with it): not a duplicate, or every same order would be one for as
            # long as the step (as the rate window drops such times; engine rules 4)
            if last is not None and cmd["ts"] - last < window and (cmd["ts"] >= last or self.engine.rules < 4):
                raise Rejection(DUPLICATE_ORDER, f"Duplicate order: same {inst.symbol} {cmd['side']} {qty} @ "
                                f"{cmd.get('price')} within {window // 1_000_000} ms", "duplicate_order",
                                str(window // 1_000_000), str((cmd["ts"] - last) // 1_000_000))
            if len(self.last_orders) > 100_000:
                # each remembered order by its own account's window (key[0]): this account's
                # window would drop another account's orders still inside a longer one
                windows = self.dup_window_ns
                self.last_orders = {k: v for k, v in self.last_orders.items() if cmd["ts"] - v < windows[k[0]]}
            self.last_orders[key] = cmd["ts"]

    def check_replace(self, order, price_ticks: int, new_qty: int, session: str | None) -> None:
        if price_ticks == order.price_ticks and new_qty <= order.qty:
            return   # a pure reduction never adds risk
        if self.killed_sessions and order.session in self.killed_sessions:
            scope = f"session:{order.session}"
            raise Rejection(BROKER_OPTION, f"Kill switch engaged ({scope})", "kill_switch", scope)
        inst = order.instrument
        # the kernel adds the whole replaced order's notional (qty * price, in the base currency,
        # rounded up) and takes old_money out: the order's resting money now, and the part of the
        # whole that is its CumQty, so that what stays is its new leaves' money rounded up as
        # Positions.open_add will count them (ceil(whole) - ceil(cum part) can be one unit less)
        cum_money = order.cum_qty * price_ticks * self.pos.mult[inst.index]
        if self.engine.rules >= 3:
            whole = new_qty * price_ticks * self.pos.mult[inst.index]
            old_money = order.open_base + self.pos.to_base(inst.index, whole) \
                - self.pos.to_base(inst.index, whole - cum_money)
        else:   # engine rules 1-2: the CumQty part converted on its own
            old_money = order.open_base + self.pos.to_base(inst.index, cum_money)
        rule = self._replace_order(self._mem_window, order.account_idx, inst.index, order.is_buy, price_ticks, new_qty,
                                   order.leaves_qty + order.cum_qty, old_money)
        if rule:
            raise self._rejection(rule, inst, order.account, price_ticks, False)

    def _rejection(self, rule: int, inst, account: str | None, price_ticks: int, is_market: bool,
                   session: str | None = None) -> Rejection:
        """Text, OrdRejReason and audit values of a failed kernel check (cold path)."""
        out = self.pos.OUT.tolist()
        limit, actual, ref = out[K.O_LIMIT], out[K.O_ACTUAL], out[K.O_REF]
        if rule == K.R_MESSAGE_RATE:
            return Rejection(BROKER_OPTION, f"Message rate limit: more than {limit} messages per second on "
                             f"session {session}", "message_rate", str(limit), str(actual))
        if rule == K.R_KILL_SESSION:
            scope = f"session:{session}"
            return Rejection(BROKER_OPTION, f"Kill switch engaged ({scope})", "kill_switch", scope)
        sym = inst.symbol
        money = self.pos.money_text
        if rule == K.R_KILL_GLOBAL:
            return Rejection(BROKER_OPTION, "Kill switch engaged (global)", "kill_switch", "global")
        if rule == K.R_KILL_ACCOUNT:
            scope = f"account:{account}"
            return Rejection(BROKER_OPTION, f"Kill switch engaged ({scope})", "kill_switch", scope)
        if rule == K.R_KILL_INSTRUMENT:
            scope = f"instrument:{sym}"
            return Rejection(BROKER_OPTION, f"Kill switch engaged ({scope})", "kill_switch", scope)
        if rule == K.R_HALTED:
            return Rejection(EXCHANGE_CLOSED, f"Trading halted in {sym}", "trading_halt", f"instrument:{sym}")
        if rule == K.R_RESTRICTED:
            return Rejection(BROKER_OPTION, f"Restricted instrument {sym}", "restricted_instrument", "global")
        if rule == K.R_RESTRICTED_ACCOUNT:
            return Rejection(BROKER_OPTION, f"Restricted instrument {sym} for account {account}",
                             "restricted_instrument", f"account:{account}")
        if rule == K.R_MAX_QTY:
            return Rejection(ORDER_EXCEEDS_LIMIT, f"Order quantity {actual} exceeds max_order_qty {limit}",
                             "max_order_qty", str(limit), str(actual))
        if rule == K.R_NO_REFERENCE:
            return Rejection(BROKER_OPTION, f"No reference price for {sym}: cannot apply the price checks "
                             "(fail closed)", "no_reference_price")
        if rule == K.R_COLLAR_PCT:
            pct = Decimal(limit) / 10_000
            dev_pct = (Decimal(actual) * 100 / Decimal(ref)).quantize(Decimal("0.0001"), rounding=ROUND_CEILING)
            return Rejection(BROKER_OPTION, f"Price collar: {inst.format_price(price_ticks)} is {dev_pct.normalize():f}% from "
                             f"reference {inst.format_price(ref)}, limit {pct.normalize():f}%", "price_collar_pct",
                             f"{pct.normalize():f}", f"{dev_pct.normalize():f}")
        if rule == K.R_COLLAR_TICKS:
            return Rejection(BROKER_OPTION, f"Price collar: {inst.format_price(price_ticks)} is {actual} ticks from "
                             f"reference {inst.format_price(ref)}, limit {limit} ticks", "price_collar_ticks",
                             str(limit), str(actual))
        if rule == K.R_MAX_NOTIONAL:
            return Rejection(ORDER_EXCEEDS_LIMIT, f"Order notional {money(actual)} exceeds max_order_notional "
                             f"{money(limit)}" + (" (market order at the reference price)" if is_market else ""),
                             "max_order_notional", money(limit), money(actual))
        if rule == K.R_REDUCE_ONLY:
            return Rejection(BROKER_OPTION, f"Account {account} is reduce-only: the order could take the {sym} "
                             f"position to {actual}", "reduce_only", "0", str(actual))
        if rule == K.R_MAX_LONG:
            return Rejection(ORDER_EXCEEDS_LIMIT, f"Long position in {sym} could reach {actual} (incl. resting "
                             f"buys), max_long_position {limit}", "max_long_position", str(limit), str(actual))
        if rule == K.R_MAX_SHORT:
            return Rejection(ORDER_EXCEEDS_LIMIT, f"Short position in {sym} could reach {actual} (incl. resting "
                             f"sells), max_short_position {limit}", "max_short_position", str(limit), str(actual))
        if rule == K.R_CREDIT:
            base = self.pos.config.base_currency
            return Rejection(ORDER_EXCEEDS_LIMIT, f"Gross exposure of {account} would be {money(actual)} {base}, "
                             f"credit_limit {money(limit)} {base}", "credit_limit", money(limit), money(actual))
        if rule == K.R_NO_CONTEXT:   # cannot happen after reset(): the engine validated both indexes
            return Rejection(BROKER_OPTION, f"Risk state has no row for account {account} and {sym}: cannot "
                             "apply the checks (fail closed)", "risk_state")
        raise AssertionError(f"unknown risk rule {rule}")

    # -- time ------------------------------------------------------------------------------

    def next_due_ns(self) -> int | None:
        return min((due for due, _v, _c in self.pending.values()), default=None)

    def on_clock(self, cmd: dict, out: list[dict]) -> None:
        ts = cmd["ts"]
        due = sorted((exp, key) for key, (exp, _v, _c) in self.pending.items() if exp <= ts)
        if not due:
            return
        for _exp, key in due:
            _, restore, change = self.pending.pop(key)
            scope, name = key
            if not self._desk_before.pop(key, True):
                # configured before the change: back to the configuration in force now (a
                # restart may have brought another file since)
                restore = self._baseline.get(scope, {}).get(name)
                self._desk.discard(key)
            layer = self.layers.setdefault(scope, {})
            old = layer.get(name)
            if restore is None:
                layer.pop(name, None)
            else:
                layer[name] = restore
            self.engine._emit(out, {
                "type": ev.LIMIT_EXPIRED, "ts": ts, "scope": scope, "limit": name, "old_value": _text(old),
                "new_value": _text(restore), "user": change.get("user"), "approver": change.get("approver"),
                "reason": f"temporary change expired (was: {change.get('reason')})",
                "expires_ts": change.get("expires_ts"), "request_id": change.get("request_id")})
        self._apply()

    # -- controls --------------------------------------------------------------------------

    def on_control(self, cmd: dict, out: list[dict]) -> None:
        try:
            if cmd["type"] == ev.KILL_SWITCH_REQUESTED:
                self._kill_switch(cmd, out)
            else:
                self._limit_change(cmd, out)
        except ControlError as exc:
            self.engine._emit(out, self._control_event(ev.LIMIT_CHANGE_REJECTED, cmd, text=str(exc),
                                                       limit=cmd.get("limit"), new_value=_text(cmd.get("new_value")),
                                                       action=cmd.get("action")))

    @staticmethod
    def _control_event(kind: str, cmd: dict, **fields) -> dict:
        event = {"type": kind, "ts": cmd["ts"], "user": cmd.get("user"), "approver": cmd.get("approver"),
                 "reason": cmd.get("reason"), "scope": cmd.get("scope"), "request_id": cmd.get("request_id")}
        event.update(fields)
        return event

    def _common(self, cmd: dict) -> None:
        if not isinstance(cmd.get("user"), str) or not cmd["user"].strip():
            raise ControlError("A control action must name its user")
        reason = cmd.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise ControlError("A control action must carry a reason")

    def _parse_scope(self, scope) -> tuple[str, str | None, str | None]:
        """-> (kind, account, symbol); kind in default/account/instrument/pair."""
        if scope == "default":
            return "default", None, None
        if not isinstance(scope, str):
            raise ControlError(f"Unknown scope {scope!r}")
        if "/" in scope:
            left, _, right = scope.partition("/")
            kind_a, acct, _ = self._parse_scope(left)
            kind_i, _, sym = self._parse_scope(right)
            if kind_a != "account" or kind_i != "instrument":
                raise ControlError(f"Unknown scope {scope!r} (use account:NAME/instrument:SYMBOL)")
            return "pair", acct, sym
        kind, _, name = scope.partition(":")
        if kind == "account":
            if name not in self.acct_index:
                raise ControlError(f"Unknown account {name!r} in scope {scope!r}")
            return "account", name, None
        if kind == "instrument":
            if name not in self.inst_index:
                raise ControlError(f"Unknown instrument {name!r} in scope {scope!r}")
            return "instrument", None, name
        raise ControlError(f"Unknown scope {scope!r} (default, account:NAME, instrument:SYMBOL, "
                           "account:NAME/instrument:SYMBOL)")

    def _limit_change(self, cmd: dict, out: list[dict]) -> None:
        self._common(cmd)
        scope = cmd.get("scope")
        kind, _acct, _sym = self._parse_scope(scope)
        name = cmd.get("limit")
        raw = cmd.get("new_value")
        if name in FLAGS:
            if kind not in FLAGS[name]:
                raise ControlError(f"{name} cannot be set at scope {scope!r}")
            if raw not in ("true", "false", True, False):
                raise ControlError(f"{name} must be \"true\" or \"false\", got {raw!r}")
            value = raw in ("true", True)
            value = value if value else None   # false: the flag is simply absent
        elif name in LIMIT_DEFS:
            if kind == "pair" or (kind == "instrument" and name not in INSTRUMENT_LIMITS):
                raise ControlError(f"{name} cannot be set at scope {scope!r}")
            if raw is None or raw == "":
                if kind == "default":
                    raise ControlError(f"The default {name} cannot be removed, only changed")
                value = None
            else:
                if isinstance(raw, float):
                    raise ControlError(f"{name}: give the value as text, not a float")
                try:
                    value = LIMIT_DEFS[name].parse(raw)
                except LimitValueError as exc:
                    raise ControlError(str(exc)) from None
        else:
            known = ", ".join(sorted([*LIMIT_DEFS, *FLAGS]))
            raise ControlError(f"Unknown limit {name!r} (known: {known})")
        too_fine = self.too_fine(name, value)
        if too_fine is not None:
            raise ControlError(too_fine)
        expires = cmd.get("expires_ts")
        if expires is not None and (not isinstance(expires, int) or isinstance(expires, bool) or expires <= cmd["ts"]):
            raise ControlError(f"expires_ts must be a time (int ns) after the request, got {expires!r}")
        layer = self.layers.setdefault(scope, {})
        old = layer.get(name)
        old_effective = self._effective_text(kind, _acct, _sym, name)
        key = (scope, name)
        if key not in self.four_eyes_ref:
            self.four_eyes_ref[key] = old if key not in self.pending else self.pending[key][1]
        if cmd.get("approver") and expires is None:
            self.four_eyes_ref[key] = value      # two users set it (a temporary one returns)
        if expires is not None:
            if key not in self.pending:
                self._desk_before[key] = key in self._desk
            restore = self.pending[key][1] if key in self.pending else old
            self.pending[key] = (expires, restore, {k: cmd.get(k) for k in ("user", "approver", "reason",
                                                                            "expires_ts", "request_id")})
        else:
            self.pending.pop(key, None)
            self._desk_before.pop(key, None)
        self._desk.add(key)
        if value is None:
            layer.pop(name, None)
        else:
            layer[name] = value
        self._apply()
        self.engine._emit(out, self._control_event(ev.LIMIT_CHANGED, cmd, limit=name, old_value=_text(old),
                                                   new_value=_text(value), expires_ts=expires,
                                                   old_effective=old_effective,
                                                   new_effective=self._effective_text(kind, _acct, _sym, name)))

    def rules_changed(self) -> None:
        """The engine's rules version changed (a replay reached another one): the limits in
        effect may combine otherwise (``effective``)."""
        self._apply()

    def apply_baseline(self, layers: dict[str, dict[str, str]]) -> None:
        """Another configuration's limits from here on (a journaled ``limits_loaded`` record's
        layers, as text): every configured key takes its new value or goes; keys the desk set
        keep theirs. Replaying the records where they were journaled decides each past order
        under the file that ran then, not under today's."""
        new: dict[str, dict[str, object]] = {}
        for scope, values in layers.items():
            for name, text in values.items():
                if name in LIMIT_DEFS:
                    new.setdefault(scope, {})[name] = LIMIT_DEFS[name].parse(text)
                elif text in ("true", True):       # a flag (restricted, halted, reduce_only)
                    new.setdefault(scope, {})[name] = True
        old = self._baseline
        for scope in set(old) | set(new):
            for name in set(old.get(scope, {})) | set(new.get(scope, {})):
                if (scope, name) in self._desk:
                    continue
                value = new.get(scope, {}).get(name)
                if value is None:
                    self.layers.get(scope, {}).pop(name, None)
                else:
                    self.layers.setdefault(scope, {})[name] = value
        self._baseline = new
        self._apply()

    def too_fine(self, name: str, value) -> str | None:
        """Why a positive value would be 0 in the kernel's integer columns (which switches the
        check off: money in money units rounded down, the collar in 1/10000 %), or None."""
        if name not in ("max_order_notional", "credit_limit", "price_collar_pct") or not value:
            return None
        if name == "price_collar_pct":
            if int(Decimal(value) * 10_000) == 0:
                return f"{name} {value} is below the smallest step 0.0001 (0 would switch the check off)"
        elif self.pos.to_units(Decimal(value)) == 0:
            return f"{name} {value} is below the smallest money unit {self.pos.unit:f} (0 would switch the check off)"
        return None

    def _effective_text(self, kind: str, account: str | None, symbol: str | None, name: str) -> str:
        """The value in force at a scope, inherited or not (for the audit of a change)."""
        if name in FLAGS:
            scope = {"account": f"account:{account}", "instrument": f"instrument:{symbol}",
                     "pair": f"account:{account}/instrument:{symbol}"}.get(kind, "default")
            return _text(bool(self.layers.get(scope, {}).get(name)))
        return _text(self.value(name, account, symbol))

    def _kill_switch(self, cmd: dict, out: list[dict]) -> None:
        self._common(cmd)
        scope = cmd.get("scope")
        action = cmd.get("action")
        if action not in ("engage", "release"):
            raise ControlError(f"action must be \"engage\" or \"release\", got {action!r}")
        if scope == "global":
            engaged = self.global_killed
            match = lambda o: True   # noqa: E731
        elif isinstance(scope, str) and scope.startswith("session:") and len(scope) > 8:
            session = scope[8:]
            engaged = session in self.killed_sessions
            match = lambda o: o.session == session   # noqa: E731
        else:
            kind, acct, sym = self._parse_scope(scope)
            if kind == "account":
                match = lambda o: o.account == acct   # noqa: E731
            elif kind == "instrument":
                match = lambda o: o.instrument.symbol == sym   # noqa: E731
            else:
                raise ControlError(f"Kill switch scope must be global, account:NAME, session:KEY or "
                                   f"instrument:SYMBOL, got {scope!r}")
            engaged = scope in self.killed
        old = "engaged" if engaged else "released"
        if action == "release":
            if not engaged:
                raise ControlError(f"Kill switch {scope} is not engaged")
            self._set_kill(scope, False)
            self.engine._emit(out, self._control_event(ev.KILL_SWITCH_RELEASED, cmd, old_value=old,
                                                       new_value="released", action=action))
            return
        self._set_kill(scope, True)
        victims = [o for o in self.engine.open_orders() if match(o)]
        self.engine._emit(out, self._control_event(ev.KILL_SWITCH_ENGAGED, cmd, old_value=old, new_value="engaged",
                                                   action=action, affected=len(victims)))
        self.engine.cancel_orders(victims, cmd["ts"], out, f"Kill switch engaged ({scope})", "kill_switch")

    def _set_kill(self, scope: str, on: bool) -> None:
        if scope == "global":
            self.global_killed = on
        elif scope.startswith("session:"):
            (self.killed_sessions.add if on else self.killed_sessions.discard)(scope[8:])
        else:
            (self.killed.add if on else self.killed.discard)(scope)
        self._apply()

    # -- read side ---------------------------------------------------------------------------

    def snapshot(self) -> dict:
        """Limits, flags, kill switches and pending expiries as JSON-ready text (HTTP API)."""
        return {
            "layers": {scope: {k: _text(v) for k, v in layer.items()} for scope, layer in self.layers.items() if layer},
            "kill_switches": sorted(["global"] * self.global_killed + list(self.killed)
                                    + [f"session:{s}" for s in self.killed_sessions]),
            "pending_expiries": [{"scope": s, "limit": n, "expires_ts": exp, "restore_value": _text(v)}
                                 for (s, n), (exp, v, _c) in sorted(self.pending.items())],
            "four_eyes_references": [{"scope": s, "limit": n, "value": _text(v)}
                                     for (s, n), v in sorted(self.four_eyes_ref.items()) if n in LIMIT_DEFS],
        }
