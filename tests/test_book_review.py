"""Review findings on the numba book: crafted cases compared with the reference book."""

from __future__ import annotations

import pytest

from oms_trading.book import (
    NumbaBook, ReferenceBook, BUY, SELL, LIMIT, MARKET, TIF_GTC, TIF_FOK, STP_NONE,
    STP_CANCEL_RESTING, STP_CANCEL_INCOMING, STP_CANCEL_BOTH,
)

BIG = 2**62


def _both(ops):
    out = []
    for cls in (NumbaBook, ReferenceBook):
        b = cls(capacity=4)
        res = []
        for ts, op in enumerate(ops, start=1):
            kind, args = op[0], op[1:]
            if kind == "add":
                r = b.add(*args[:7], ts, args[7])
                res.append((r, b.fills(r[1]), b.stp_cancels(r[2]), bool(b.killed_by_stp)))
            elif kind == "replace":
                r = b.replace(args[0], args[1], args[2], ts, args[3])
                res.append((r, b.fills(r[1]), b.stp_cancels(r[2]), bool(b.killed_by_stp)))
            else:
                res.append(b.cancel(args[0]))
        out.append((res, b.orders(), b.depth(100)))
        if cls is NumbaBook:
            b.check_integrity()
    return out


@pytest.mark.parametrize("stp", [STP_NONE, STP_CANCEL_RESTING, STP_CANCEL_INCOMING, STP_CANCEL_BOTH])
@pytest.mark.parametrize("ord_type", [LIMIT, MARKET])
def test_fok_walk_sum_does_not_wrap(stp, ord_type):
    """The FOK simulation summed the visited quantity in an int64: two levels of 2**62 each
    wrapped it negative, so a fillable FOK was killed (the reference fills it)."""
    ops = [("add", 1, 1, SELL, LIMIT, TIF_GTC, 100, BIG, STP_NONE),
           ("add", 2, 1, SELL, LIMIT, TIF_GTC, 101, BIG, STP_NONE),
           ("add", 3, 1, SELL, LIMIT, TIF_GTC, 102, BIG, STP_NONE),
           ("add", 4, 2, BUY, ord_type, TIF_FOK, 102, BIG + 1, stp)]
    nb, rb = _both(ops)
    assert nb == rb
    r = rb[0][-1][0]
    assert r[1] == 2 and r[4] == 0  # filled completely
