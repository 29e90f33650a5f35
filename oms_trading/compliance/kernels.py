"""The pre-trade check kernel: every array-based risk check of one order in one numba call.

It reads the engine's position/exposure columns and the risk engine's limit columns (see
engine.positions for the layout) and returns the first failing rule (0: pass), writing the
limit in force and the actual value into ``out``. All arithmetic saturates at int64 max, so
an absurd order can never wrap round and pass.
"""
from __future__ import annotations

import threading

import numba as nb
import numpy as np
from numba import types

from ..engine.positions import (AI_COLS, A_COLS, I_COLS, A_CREDIT, A_FILLED_MONEY, A_KILLED, A_OPEN_MONEY, A_REDUCE_ONLY, I_HALTED,
                                I_KILLED, I_MULT, I_REF, I_RESTRICTED, L_COLLAR_PCT, L_COLLAR_TICKS, L_MAX_LONG,
                                L_MAX_NOTIONAL, L_MAX_QTY, L_MAX_SHORT, L_RESTRICTED, OPEN_BUY, OPEN_SELL, POS)

R_OK = 0
R_KILL_GLOBAL = 1
R_KILL_ACCOUNT = 2
R_KILL_INSTRUMENT = 3
R_HALTED = 4
R_RESTRICTED = 5
R_RESTRICTED_ACCOUNT = 6
R_MAX_QTY = 7
R_NO_REFERENCE = 8
R_COLLAR_PCT = 9
R_COLLAR_TICKS = 10
R_MAX_NOTIONAL = 11
R_REDUCE_ONLY = 12
R_MAX_LONG = 13
R_MAX_SHORT = 14
R_CREDIT = 15

_BIG = np.int64(2**63 - 1)


@nb.njit(cache=True, inline="always")
def _sat_mul(a, b):
    if a == 0 or b == 0:
        return np.int64(0)
    if a > _BIG // b:
        return _BIG
    return a * b


@nb.njit(cache=True, inline="always")
def _sat_add(a, b):
    if b > 0 and a > _BIG - b:
        return _BIG
    return a + b


@nb.njit(cache=True)
def check(mem, n_acct, n_inst, a, i, is_buy, is_market, price, qty, old_qty, old_money, global_killed):
    """First failing rule for an order of ``qty`` at ``price`` ticks (0 for a market order).

    ``mem`` is Positions.mem (AI, A, I, OUT back to back). For a replace, ``old_qty`` /
    ``old_money`` are what the replaced order counts now (see RiskEngine.check_replace); 0 for
    a new order. Writes limit, actual value and reference price into OUT.
    """
    n_ai = n_acct * n_inst * AI_COLS
    r = (a * n_inst + i) * AI_COLS             # this account x instrument's row
    ra = n_ai + a * A_COLS                      # the account's row
    base_i = n_ai + n_acct * A_COLS
    ri = base_i + i * I_COLS                    # the instrument's row
    o = base_i + n_inst * I_COLS                # OUT
    mem[o + 0] = 0
    mem[o + 1] = 0
    mem[o + 2] = 0
    if global_killed:
        return R_KILL_GLOBAL
    if mem[ra + A_KILLED]:
        return R_KILL_ACCOUNT
    if mem[ri + I_KILLED]:
        return R_KILL_INSTRUMENT
    if mem[ri + I_HALTED]:
        return R_HALTED
    if mem[ri + I_RESTRICTED]:
        return R_RESTRICTED
    if mem[r + L_RESTRICTED]:
        return R_RESTRICTED_ACCOUNT
    lim = mem[r + L_MAX_QTY]
    if lim > 0 and qty > lim:
        mem[o + 0] = lim
        mem[o + 1] = qty
        return R_MAX_QTY
    ref = mem[ri + I_REF]
    mem[o + 2] = ref
    max_notional = mem[r + L_MAX_NOTIONAL]
    credit = mem[ra + A_CREDIT]
    pct = mem[r + L_COLLAR_PCT]
    ticks = mem[r + L_COLLAR_TICKS]
    if ref <= 0:
        if (is_market and (max_notional > 0 or credit > 0)) or (not is_market and (pct > 0 or ticks > 0)):
            return R_NO_REFERENCE
    px = ref if is_market else price
    if not is_market:
        dev = price - ref if price > ref else ref - price
        if pct > 0 and _sat_mul(dev, np.int64(1_000_000)) > _sat_mul(pct, ref):
            mem[o + 0] = pct
            mem[o + 1] = dev
            return R_COLLAR_PCT
        if ticks > 0 and dev > ticks:
            mem[o + 0] = ticks
            mem[o + 1] = dev
            return R_COLLAR_TICKS
    money = _sat_mul(_sat_mul(px, qty), mem[ri + I_MULT])
    if max_notional > 0 and money > max_notional:
        mem[o + 0] = max_notional
        mem[o + 1] = money
        return R_MAX_NOTIONAL
    pos = mem[r + POS]
    if is_buy:
        worst = pos + mem[r + OPEN_BUY] - old_qty + qty
        if mem[ra + A_REDUCE_ONLY] and worst > 0:
            mem[o + 0] = 0
            mem[o + 1] = worst
            return R_REDUCE_ONLY
        lim = mem[r + L_MAX_LONG]
        if lim > 0 and worst > lim:
            mem[o + 0] = lim
            mem[o + 1] = worst
            return R_MAX_LONG
    else:
        worst = -(pos - (mem[r + OPEN_SELL] - old_qty) - qty)
        if mem[ra + A_REDUCE_ONLY] and worst > 0:
            mem[o + 0] = 0
            mem[o + 1] = -worst
            return R_REDUCE_ONLY
        lim = mem[r + L_MAX_SHORT]
        if lim > 0 and worst > lim:
            mem[o + 0] = lim
            mem[o + 1] = worst
            return R_MAX_SHORT
    if credit > 0:
        exposure = _sat_add(_sat_add(mem[ra + A_OPEN_MONEY], mem[ra + A_FILLED_MONEY]) - old_money, money)
        if exposure > credit:
            mem[o + 0] = credit
            mem[o + 1] = exposure
            return R_CREDIT
    return R_OK


_I = types.int64
_SIG = (types.Array(types.int64, 1, "C"),) + (_I,) * 11
_lock = threading.Lock()
_entry = None


def compiled_check():
    """The compiled entry point (skips numba's type dispatch on every call)."""
    global _entry
    if _entry is None:
        with _lock:
            if _entry is None:
                _entry = check.compile(_SIG)
    return _entry
