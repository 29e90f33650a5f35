"""Domain model: FIX-valued enums and exact price <-> tick conversion."""
from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oms_trading.model import (MAX_PRICE_TICKS, CxlRejReason, ExecType, Instrument, OrdRejReason, OrdStatus,
                               OrdType, PriceError, Side, TimeInForce, format_avg_px, price_to_ticks,
                               ticks_to_price)


def test_enums_carry_fix_values():
    assert Side.from_fix(b"1") is Side.BUY and Side.SELL.fix == "2"
    assert OrdType.LIMIT.fix == "2" and TimeInForce.IOC.fix == "3" and TimeInForce.FOK.fix == "4"
    assert OrdStatus.PARTIALLY_FILLED.fix == "1" and OrdStatus.PENDING_NEW.fix == "A"
    assert ExecType.TRADE.fix == "F" and ExecType.ORDER_STATUS.fix == "I"
    assert int(OrdRejReason.UNKNOWN_SYMBOL) == 1 and int(OrdRejReason.DUPLICATE_ORDER) == 6
    assert int(CxlRejReason.UNKNOWN_ORDER) == 1 and int(CxlRejReason.TOO_LATE_TO_CANCEL) == 0
    with pytest.raises(ValueError):
        Side.from_fix("Z")


@pytest.mark.parametrize("text,tick,ticks", [
    ("190.00", "0.01", 19000), ("190", "0.01", 19000), ("0.02", "0.02", 1), ("70.04", "0.02", 3502),
    (b"1.5", "0.5", 3), ("-1.25", "0.25", -5), ("100", "5", 20),
])
def test_price_to_ticks_exact(text, tick, ticks):
    assert price_to_ticks(text, Decimal(tick)) == ticks


@pytest.mark.parametrize("text,tick", [
    ("190.005", "0.01"), ("70.01", "0.02"), ("1e3", "0.01"), ("abc", "0.01"), ("", "0.01"),
    ("1.2.3", "0.01"), ("NaN", "0.01"), ("Infinity", "0.01"), (" 1,5", "0.01"), ("9" * 30, "0.01"),
])
def test_price_off_grid_or_malformed_is_rejected_not_rounded(text, tick):
    with pytest.raises(PriceError):
        price_to_ticks(text, Decimal(tick))


@given(ticks=st.integers(-MAX_PRICE_TICKS, MAX_PRICE_TICKS),
       tick=st.sampled_from(["0.01", "0.02", "0.0001", "0.5", "1", "5", "0.25"]))
def test_ticks_round_trip_through_text(ticks, tick):
    size = Decimal(tick)
    assert price_to_ticks(ticks_to_price(ticks, size), size) == ticks


def test_instrument_formats_on_its_grid():
    inst = Instrument("VOD.L", Decimal("0.02"), 100, Decimal("70.00"))
    assert inst.format_price(3501) == "70.02"
    assert inst.reference_ticks == 3500
    with pytest.raises(ValueError):
        Instrument("X", Decimal("0"))


def test_avg_px_is_exact():
    tick = Decimal("0.01")
    # 100 @ 190.00 + 200 @ 190.01 -> 190.00666...
    assert format_avg_px(19000 * 100 + 19001 * 200, 300, tick) == "190.00666667"
    assert format_avg_px(19000 * 3, 3, tick) == "190.00"
    assert format_avg_px(0, 0, tick) == "0"


# -- integer price formatting agrees with the exact Decimal formulas it replaced -------------

_TICKS = st.sampled_from([Decimal(t) for t in ("0.01", "0.010", "0.25", "0.5", "1", "5", "1E+1", "0.0001",
                                                 "0.00000001", "12.5")])


def _decimal_avg(notional: int, qty: int, tick: Decimal, extra: int = 6) -> str:
    if qty <= 0:
        return "0"
    scale = max(0, -int(tick.normalize().as_tuple().exponent)) + extra
    text = f"{(Decimal(notional) * tick) / Decimal(qty):.{scale}f}"
    if "." in text:
        head, tail = text.split(".")
        tail = tail.rstrip("0")
        base = scale - extra
        if len(tail) < base:
            tail += "0" * (base - len(tail))
        text = head + ("." + tail if tail else "")
    return text


@given(st.integers(min_value=-10**15, max_value=10**15), _TICKS)
def test_ticks_to_price_matches_decimal(ticks, tick):
    scale = max(0, -int(tick.normalize().as_tuple().exponent))
    assert ticks_to_price(ticks, tick) == f"{tick * ticks:.{scale}f}"
    assert ticks_to_price(ticks, tick, scale + 3) == f"{tick * ticks:.{scale + 3}f}"


@given(st.integers(min_value=1, max_value=10**9), st.integers(min_value=1, max_value=10**9), _TICKS,
        st.booleans())
def test_avg_px_matches_decimal(price_ticks, qty, tick, on_grid):
    notional = price_ticks * qty if on_grid else price_ticks * qty + (qty // 3 or 1)
    assert format_avg_px(notional, qty, tick) == _decimal_avg(notional, qty, tick)
