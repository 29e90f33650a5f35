"""Review findings on the pre-trade kernel (compliance.kernels), called directly on a
hand-made Positions.mem of one account x one instrument."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from oms_trading.compliance import kernels as K
from oms_trading.engine.positions import (AI_COLS, A_COLS, A_CREDIT, I_COLS, I_FX_DEN, I_FX_NUM, I_MULT, I_REF,
                                          L_COLLAR_PCT, OUT_COLS)


def _mem(ref=0, mult=1, pct=0, credit=0, fx=(1, 1)):
    mem = np.zeros(AI_COLS + A_COLS + I_COLS + OUT_COLS, dtype=np.int64)
    ai, a, i = 0, AI_COLS, AI_COLS + A_COLS
    mem[ai + L_COLLAR_PCT] = pct
    mem[a + A_CREDIT] = credit
    mem[i + I_REF] = ref
    mem[i + I_MULT] = mult
    mem[i + I_FX_NUM], mem[i + I_FX_DEN] = fx
    mem[-OUT_COLS + K.O_CTX] = K.context_word(1, 1, False)
    return mem


def _check(mem, price, qty, is_buy=True):
    check_new = K.compiled()[0]
    return check_new(mem, 0, 0, is_buy, price, qty)


@pytest.mark.parametrize("pct,ref,price", [
    (1_000_000, 10**13, 25 * 10**12),         # 100 %: 1.5e13 ticks off, 1e13 allowed
    (1_000_000, 10**13, 2 * 10**13 + 1),      # one tick past 100 %
    (10**7, 10**12, 11 * 10**12 + 1),         # 1000 %, one tick past
    (2**62, 2**40, 2**62),                    # a capped limit far away: passes (below)
])
def test_price_collar_pct_exact_when_both_products_saturate(pct, ref, price):
    """|price - ref| * 10**6 > pct * ref was compared with both products saturated at int64
    max: once both saturate, BIG > BIG is false and any price passed the collar."""
    mem = _mem(ref=ref, pct=pct)
    dev = abs(price - ref)
    outside = dev * 1_000_000 > pct * ref
    rule = _check(mem, price, 1)
    assert rule == (K.R_COLLAR_PCT if outside else K.R_OK)
    if outside:
        assert mem[-OUT_COLS + K.O_ACTUAL] == dev


@pytest.mark.parametrize("pct,ref,price", [(1, 1, 2), (100_000, 1000, 1100), (100_000, 1000, 1101),
                                           (100_001, 999, 1099), (99_999, 10**6, 1_100_000), (3, 333_333, 333_334),
                                           (3, 333_334, 333_335)])
def test_price_collar_pct_boundaries(pct, ref, price):
    for p in (price, 2 * ref - price):
        if p <= 0:
            continue   # 0 is a market order
        mem = _mem(ref=ref, pct=pct)
        outside = abs(p - ref) * 1_000_000 > pct * ref
        assert _check(mem, p, 1) == (K.R_COLLAR_PCT if outside else K.R_OK)


@pytest.mark.parametrize("rate", ["1.23456789", "1.08567", "150.12345678", "0.00006250", "15000.5"])
@pytest.mark.parametrize("money", [10**11, 10**13, 2**53])
def test_credit_fx_conversion_is_exact_for_large_orders(rate, money):
    """The order's notional was converted with ceil(sat(money * num) / den): past int64 max
    the product saturated, then the division made it small (money 1e13 at rate 1.23456789
    counted as ~9.2e10 base units instead of ~1.23e13), so the credit check let it pass."""
    num, den = Fraction(rate).as_integer_ratio()
    base = -(-money * num // den)
    for credit, rule in ((base, K.R_OK), (base - 1, K.R_CREDIT)):
        if credit > 2**62:
            continue
        mem = _mem(ref=1, credit=credit, fx=(num, den))
        assert _check(mem, 1, money) == rule
        if rule == K.R_CREDIT:
            assert mem[-OUT_COLS + K.O_ACTUAL] == base


def test_rate_window_after_the_clock_is_set_back():
    """Times come from the gateway's wall clock, which a clock step can set back. The ring
    was trimmed from its oldest entry while <= ts - 1 s: a time from before the step (an
    hour ahead) stopped the trimming, so the session was refused for the whole hour at 2
    messages a second under a limit of 3. A time later than the message's is dropped now;
    the same commands replayed give the same answers."""
    from oms_trading.audit import schema as ev
    from tests.test_engine_common import limit, make_engine, new

    second = 1_000_000_000

    def run():
        eng = make_engine()
        eng.process(limit("account:A1", "max_messages_per_second", "3"))
        cmds = [new("a", "1", 1, "100.00", ts=3600 * second)]
        cmds += [new(f"b{k}", "1", 1, "100.00", ts=k * second // 2) for k in range(10)]   # set back an hour
        cmds += [new(f"c{k}", "1", 1, "100.00", ts=6 * second + k) for k in range(4)]     # 4 within 1 s
        out = []
        for cmd in cmds:
            out += [e.get("rule") or "ok" for e in eng.process(cmd)
                    if e["type"] in (ev.ORDER_ACCEPTED, ev.ORDER_REJECTED)]
        return out

    out = run()
    assert out == ["ok"] * 14 + ["message_rate"]
    assert run() == out
