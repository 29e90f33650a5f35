"""Scenario tests run against both books (NumbaBook and ReferenceBook)."""

from __future__ import annotations

import pytest

from oms_trading.book import (
    NumbaBook, ReferenceBook, warm_up, BUY, SELL, MARKET, LIMIT, TIF_DAY, TIF_GTC,
    TIF_IOC, TIF_FOK, STP_NONE, STP_CANCEL_RESTING, STP_CANCEL_INCOMING, STP_CANCEL_BOTH,
    OK, ERR_QTY, ERR_DUPLICATE_ID, ERR_UNKNOWN_ORDER, ERR_BAD_ARGUMENT,
)

BOOKS = [NumbaBook, ReferenceBook]


@pytest.fixture(params=BOOKS, ids=["numba", "reference"])
def B(request):
    return request.param


def lim(b, oid, side, price, qty, acct=1, tif=TIF_GTC, stp=STP_NONE, ts=None):
    return b.add(oid, acct, side, LIMIT, tif, price, qty, oid if ts is None else ts, stp)


def test_warm_up():
    warm_up()
    warm_up()


def test_rest_and_match_price_time(B):
    b = B()
    assert lim(b, 1, SELL, 101, 5) == (OK, 0, 0, 5, 0)
    assert lim(b, 2, SELL, 101, 5, acct=2) == (OK, 0, 0, 5, 0)
    assert lim(b, 3, SELL, 100, 5, acct=3) == (OK, 0, 0, 5, 0)
    assert b.best_ask() == (100, 5)
    r = lim(b, 4, BUY, 101, 12, acct=9)
    assert r == (OK, 3, 0, 0, 0)
    assert b.fills(3) == [(3, 3, 100, 5, 0), (1, 1, 101, 5, 0), (2, 2, 101, 2, 3)]
    assert b.depth(5) == ([], [(101, 3, 1)])
    assert b.get(2) == (SELL, 101, 3, 2, 2)
    assert len(b) == 1


def test_rejects_change_nothing(B):
    b = B()
    lim(b, 1, BUY, 100, 5)
    before = b.orders()
    assert lim(b, 2, 3, 100, 5) == (ERR_BAD_ARGUMENT, 0, 0, 0, 0)
    assert b.add(2, 1, BUY, 7, TIF_GTC, 100, 5, 1, 0)[0] == ERR_BAD_ARGUMENT
    assert b.add(2, 1, BUY, LIMIT, 2, 100, 5, 1, 0)[0] == ERR_BAD_ARGUMENT
    assert b.add(2, 1, BUY, LIMIT, TIF_GTC, 100, 5, 1, 4)[0] == ERR_BAD_ARGUMENT
    assert b.add(2, 1, BUY, LIMIT, TIF_GTC, 100, 0, 1, 4)[0] == ERR_BAD_ARGUMENT  # arg first
    assert lim(b, 2, BUY, 100, 0) == (ERR_QTY, 0, 0, 0, 0)
    assert lim(b, 2, BUY, 100, -3) == (ERR_QTY, 0, 0, 0, 0)
    assert lim(b, 1, SELL, 100, 0) == (ERR_QTY, 0, 0, 0, 0)  # qty before duplicate
    assert lim(b, 1, SELL, 100, 5) == (ERR_DUPLICATE_ID, 0, 0, 0, 0)
    assert b.cancel(99) == (ERR_UNKNOWN_ORDER, 0)
    assert b.replace(99, 100, 5, 3, 0) == (ERR_UNKNOWN_ORDER, 0, 0, 0, 0)
    assert b.replace(1, 100, 0, 3, 0) == (ERR_QTY, 0, 0, 0, 0)
    assert b.replace(1, 100, 5, 3, 9) == (ERR_BAD_ARGUMENT, 0, 0, 0, 0)
    assert b.orders() == before
    with pytest.raises(ValueError):
        b.mass_cancel(-1, 5)


def test_filled_and_canceled_ids_are_unknown(B):
    b = B()
    lim(b, 1, SELL, 100, 5)
    lim(b, 2, BUY, 100, 5, acct=2)
    assert b.cancel(1) == (ERR_UNKNOWN_ORDER, 0)
    lim(b, 3, SELL, 100, 5)
    assert b.cancel(3) == (OK, 5)
    assert b.cancel(3) == (ERR_UNKNOWN_ORDER, 0)
    assert b.replace(3, 100, 1, 9, 0)[0] == ERR_UNKNOWN_ORDER
    assert lim(b, 3, SELL, 100, 5) == (OK, 0, 0, 5, 0)  # an id can be reused once gone


def test_market_orders(B):
    b = B()
    assert b.add(1, 1, BUY, MARKET, TIF_DAY, 0, 10, 1, 0) == (OK, 0, 0, 0, 10)  # empty side
    assert b.add(2, 1, SELL, MARKET, TIF_FOK, 0, 10, 1, 0) == (OK, 0, 0, 0, 10)
    lim(b, 3, SELL, 2**62, 4)
    lim(b, 4, SELL, 100, 4)
    assert b.add(5, 2, BUY, MARKET, TIF_GTC, -(2**62), 10, 5, 0) == (OK, 2, 0, 0, 2)
    assert b.fills(2) == [(4, 1, 100, 4, 0), (3, 1, 2**62, 4, 0)]
    assert len(b) == 0


def test_ioc(B):
    b = B()
    lim(b, 1, SELL, 100, 4)
    assert lim(b, 2, BUY, 100, 10, acct=2, tif=TIF_IOC) == (OK, 1, 0, 0, 6)
    assert lim(b, 3, BUY, 100, 10, acct=2, tif=TIF_IOC) == (OK, 0, 0, 0, 10)
    assert len(b) == 0


def test_fok_just_fits_and_just_does_not(B):
    b = B()
    lim(b, 1, SELL, 100, 4)
    lim(b, 2, SELL, 101, 4)
    lim(b, 3, SELL, 103, 4)
    before = b.orders()
    assert lim(b, 9, BUY, 101, 9, acct=2, tif=TIF_FOK) == (OK, 0, 0, 0, 9)
    assert b.orders() == before
    assert lim(b, 10, BUY, 101, 8, acct=2, tif=TIF_FOK) == (OK, 2, 0, 0, 0)
    assert b.orders() == [(3, SELL, 103, 4, 1, 3)]


def _own_order_in_the_middle(B):
    """Asks 3 (acct 2) and 5 (acct 1, the incoming order's own) at 100, then 3 (acct 3) at 101."""
    b = B()
    lim(b, 1, SELL, 100, 3, acct=2)
    lim(b, 2, SELL, 100, 5, acct=1)
    lim(b, 3, SELL, 101, 3, acct=3)
    return b


def test_fok_with_stp(B):
    # acct 1 (self) order in the middle of the queue
    def mk():
        return _own_order_in_the_middle(B)

    # CANCEL_RESTING: self order contributes nothing; 6 available from others
    b = mk()
    before = b.orders()
    assert lim(b, 9, BUY, 101, 7, acct=1, tif=TIF_FOK, stp=STP_CANCEL_RESTING) == \
        (OK, 0, 0, 0, 7)
    assert b.orders() == before  # no STP cancel when killed
    assert lim(b, 9, BUY, 101, 6, acct=1, tif=TIF_FOK, stp=STP_CANCEL_RESTING) == \
        (OK, 2, 1, 0, 0)
    assert b.stp_cancels(1) == [(2, 5)]
    assert len(b) == 0
    # CANCEL_INCOMING / CANCEL_BOTH: walk stops at the self order: only 3 available
    for mode in (STP_CANCEL_INCOMING, STP_CANCEL_BOTH):
        b = mk()
        before = b.orders()
        assert lim(b, 9, BUY, 101, 4, acct=1, tif=TIF_FOK, stp=mode) == (OK, 0, 0, 0, 4)
        assert b.orders() == before
        assert lim(b, 9, BUY, 101, 3, acct=1, tif=TIF_FOK, stp=mode) == (OK, 1, 0, 0, 0)
        assert b.orders() == before[1:]
    # STP_NONE: self trade allowed, 11 available
    b = mk()
    assert lim(b, 9, BUY, 101, 11, acct=1, tif=TIF_FOK) == (OK, 3, 0, 0, 0)


def test_stp_modes(B):
    def mk():
        return _own_order_in_the_middle(B)

    b = mk()
    assert lim(b, 9, BUY, 101, 10, acct=1, stp=STP_CANCEL_RESTING) == (OK, 2, 1, 4, 0)
    assert b.stp_cancels(1) == [(2, 5)]
    assert b.fills(2) == [(1, 2, 100, 3, 0), (3, 3, 101, 3, 0)]
    assert b.orders() == [(9, BUY, 101, 4, 1, 9)]
    b = mk()
    assert lim(b, 9, BUY, 101, 10, acct=1, stp=STP_CANCEL_INCOMING) == (OK, 1, 0, 0, 7)
    assert [o[0] for o in b.orders()] == [2, 3]
    b = mk()
    assert lim(b, 9, BUY, 101, 10, acct=1, stp=STP_CANCEL_BOTH) == (OK, 1, 1, 0, 7)
    assert b.stp_cancels(1) == [(2, 5)]
    assert [o[0] for o in b.orders()] == [3]
    b = mk()
    assert lim(b, 9, BUY, 101, 10, acct=1, stp=STP_NONE) == (OK, 3, 0, 0, 0)


def test_replace_semantics(B):
    b = B()
    lim(b, 1, BUY, 100, 10)
    lim(b, 2, BUY, 100, 10, acct=2)
    # decrease: keeps priority and ts
    assert b.replace(1, 100, 4, 50, 0) == (OK, 0, 0, 4, 0)
    assert b.orders()[0] == (1, BUY, 100, 4, 1, 1)
    # same qty, same price: in place too
    assert b.replace(1, 100, 4, 51, 0) == (OK, 0, 0, 4, 0)
    assert b.orders()[0] == (1, BUY, 100, 4, 1, 1)
    # increase loses priority, new ts
    assert b.replace(1, 100, 5, 52, 0) == (OK, 0, 0, 5, 0)
    assert b.orders() == [(2, BUY, 100, 10, 2, 2), (1, BUY, 100, 5, 1, 52)]
    # partial fill then replace: new_qty is the new remaining
    lim(b, 3, SELL, 100, 12, acct=3)
    assert b.orders() == [(3 - 2, BUY, 100, 3, 1, 52)]
    assert b.replace(1, 100, 2, 53, 0) == (OK, 0, 0, 2, 0)
    # price change that crosses: matches, id kept
    lim(b, 4, SELL, 102, 5, acct=4)
    assert b.replace(1, 103, 7, 54, 0) == (OK, 1, 0, 2, 0)
    assert b.fills(1) == [(4, 4, 102, 5, 0)]
    assert b.get(1) == (BUY, 103, 2, 1, 54)
    # replace killed by STP
    lim(b, 5, SELL, 104, 5, acct=1)
    assert b.replace(1, 104, 3, 55, STP_CANCEL_INCOMING) == (OK, 0, 0, 0, 3)
    assert b.get(1) is None and b.get(5) is not None
    # replace fully filled
    lim(b, 6, BUY, 90, 5, acct=2)
    assert b.replace(6, 104, 5, 56, 0) == (OK, 1, 0, 0, 0)
    assert b.get(6) is None and len(b) == 0


def test_mass_cancel_order(B):
    b = B()
    lim(b, 1, BUY, 99, 1, acct=1)
    lim(b, 2, BUY, 100, 2, acct=2)
    lim(b, 3, BUY, 100, 3, acct=1)
    lim(b, 4, SELL, 102, 4, acct=1)
    lim(b, 5, SELL, 101, 5, acct=1)
    lim(b, 6, SELL, 101, 6, acct=2)
    assert b.mass_cancel(1, SELL) == [(5, 5), (4, 4)]
    assert b.mass_cancel(account=1) == [(3, 3), (1, 1)]
    assert b.depth(3) == ([(100, 2, 1)], [(101, 6, 1)])
    assert b.mass_cancel() == [(2, 2), (6, 6)]
    assert b.mass_cancel() == []
    assert len(b) == 0 and b.best_bid() is None and b.best_ask() is None


def test_extreme_prices_and_ids(B):
    b = B()
    lo, hi = -(2**63), 2**63 - 1
    lim(b, hi, BUY, lo, 1)
    lim(b, lo, SELL, hi, 1)
    lim(b, 0, BUY, -(2**62), 1)
    lim(b, -1, SELL, 2**62, 1)
    assert b.depth(5) == ([(-(2**62), 1, 1), (lo, 1, 1)], [(2**62, 1, 1), (hi, 1, 1)])
    assert b.add(7, 2, SELL, LIMIT, TIF_IOC, lo, 5, 7, 0) == (OK, 2, 0, 0, 3)
    assert b.add(8, 2, BUY, LIMIT, TIF_GTC, hi, 5, 8, 0) == (OK, 2, 0, 3, 0)
    assert b.best_bid() == (hi, 3) and b.best_ask() is None


def test_depth_and_get(B):
    b = B()
    for i in range(10):
        lim(b, i + 1, BUY, 100 - i, i + 1)
        lim(b, i + 101, SELL, 110 + i, i + 1)
    lim(b, 50, BUY, 100, 5, acct=3)
    bids, asks = b.depth(3)
    assert bids == [(100, 6, 2), (99, 2, 1), (98, 3, 1)]
    assert asks == [(110, 1, 1), (111, 2, 1), (112, 3, 1)]
    assert b.depth(0) == ([], [])
    assert len(b.depth(100)[0]) == 10
    assert b.get(50) == (BUY, 100, 5, 3, 50)
    assert b.get(12345) is None


def test_capacity_growth():
    nb = NumbaBook(capacity=4)
    rb = ReferenceBook(capacity=4)
    n = 5000
    for i in range(n):
        side = BUY if i % 2 else SELL
        price = (1000 - i % 700) if side == BUY else (1001 + i % 700)
        for b in (nb, rb):
            assert lim(b, i + 1, side, price, 1 + i % 7) == (OK, 0, 0, 1 + i % 7, 0)
    assert nb.capacity >= n and len(nb) == n
    assert nb.orders() == rb.orders()
    nb.check_integrity()
    # one call with thousands of fills (output buffers sized by the book)
    r1 = nb.add(10**6, 9, BUY, MARKET, TIF_IOC, 0, 10**9, 1, 0)
    r2 = rb.add(10**6, 9, BUY, MARKET, TIF_IOC, 0, 10**9, 1, 0)
    assert r1 == r2 and r1[1] == n // 2
    assert nb.fills(r1[1]) == rb.fills(r2[1])
    assert nb.orders() == rb.orders()
    nb.check_integrity()
    nb.reserve(100_000)
    assert nb.capacity >= 100_000 and nb.orders() == rb.orders()


def test_capacity_limit():
    # slot indexes are packed in 32 bits: a larger capacity is refused before allocating
    with pytest.raises(ValueError):
        NumbaBook(capacity=2**31)
    b = NumbaBook(capacity=8)
    with pytest.raises(ValueError):
        b.reserve(2**31)
    assert b.capacity == 8



@pytest.mark.parametrize("reserve_min", [64, 1 << 22])
def test_growth_in_place_and_past_the_reservation(monkeypatch, reserve_min):
    """Growth inside the book's reserved mapping (hash tables rebuilt into their spare
    areas, laid out ahead by the background thread for a large book) and past it (a new
    mapping, the book copied): the state matches the reference book at every capacity."""
    from oms_trading.book import book as bookmod
    from oms_trading.book import kernels as K
    monkeypatch.setattr(bookmod, "RESERVE_MIN", reserve_min)
    monkeypatch.setattr(bookmod, "_SYNC_AHEAD", 64)  # the background path from 128 slots
    nb = NumbaBook(capacity=4)
    rb = ReferenceBook(capacity=4)
    caps = set()
    n = 20_000
    for i in range(n):
        side = BUY if i % 2 else SELL
        price = (1000 - i % 3000) if side == BUY else (1001 + i % 3000)
        for b in (nb, rb):
            assert lim(b, i + 1, side, price, 1 + i % 7, acct=i % 300) == \
                (OK, 0, 0, 1 + i % 7, 0)
        if i % 7 == 3:
            for b in (nb, rb):
                assert b.cancel(i - 2)[0] == OK
        caps.add(nb.capacity)
    assert len(caps) > 8
    assert nb._mem[K.H_RCAP] >= nb.capacity
    if reserve_min == 64:
        assert nb._mem[K.H_RCAP] > 64  # it went past the first reservation
    assert nb.orders() == rb.orders()
    nb.check_integrity()
    r1 = nb.add(10**6, 9, BUY, MARKET, TIF_IOC, 0, 10**9, 1, 0)
    r2 = rb.add(10**6, 9, BUY, MARKET, TIF_IOC, 0, 10**9, 1, 0)
    assert r1 == r2 and nb.fills(r1[1]) == rb.fills(r2[1])
    nb.check_integrity()


def test_growth_when_the_background_layout_was_stopped():
    """grow() stops a prepare() still running (H_STOP): the spare table it left unfinished
    (capacity word 0) is laid out by grow() itself."""
    from oms_trading.book import book as bookmod
    from oms_trading.book import kernels as K
    nb = NumbaBook(capacity=8)
    rb = ReferenceBook(capacity=8)
    for i in range(8):
        for b in (nb, rb):
            lim(b, i + 1, BUY, 100 - i, 1)
    nb._job = None  # no background job for this book
    m = nb._mem
    for h in (K.H_OHASH2, K.H_OPB2, K.H_OPA2, K.H_OACC2):
        m[m[h] - 2] = 0  # the spare tables not laid out
    nb._mem[K.H_STOP] = 1
    bookmod._PREPARE(nb._mem, 16)  # gives up at once
    assert nb._mem[nb._mem[K.H_OHASH2] - 2] == 0
    for i in range(8, 40):
        for b in (nb, rb):
            lim(b, i + 1, BUY, 100 - i, 1)
    assert nb._mem[K.H_STOP] == 0 and nb.capacity >= 40
    assert nb.orders() == rb.orders()
    nb.check_integrity()


def test_killed_by_stp_flag(B):
    """killed_by_stp says why the incoming order of the last add/replace stopped: True only
    when CANCEL_INCOMING/CANCEL_BOTH met a same-account resting order (its remainder, for a
    FOK the whole order, is killed by STP), False for a plain IOC/FOK/market remainder."""
    def mk():
        return _own_order_in_the_middle(B)

    def mkt(b, oid, qty, tif, stp):
        return b.add(oid, 1, BUY, MARKET, tif, 0, qty, oid, stp)

    for mode, n_stp in ((STP_CANCEL_INCOMING, 0), (STP_CANCEL_BOTH, 1)):
        b = mk()
        assert lim(b, 9, BUY, 101, 10, acct=1, tif=TIF_IOC, stp=mode) == (OK, 1, n_stp, 0, 7)
        assert b.killed_by_stp
        b = mk()
        assert mkt(b, 9, 10, TIF_IOC, mode) == (OK, 1, n_stp, 0, 7)
        assert b.killed_by_stp
        b = mk()
        assert mkt(b, 9, 10, TIF_DAY, mode) == (OK, 1, n_stp, 0, 7)
        assert b.killed_by_stp
        # FOK: the walk stops at the self order short of qty: killed whole, book unchanged
        b = mk()
        before = b.orders()
        assert lim(b, 9, BUY, 101, 4, acct=1, tif=TIF_FOK, stp=mode) == (OK, 0, 0, 0, 4)
        assert b.killed_by_stp and b.orders() == before
        assert mkt(b, 10, 4, TIF_FOK, mode) == (OK, 0, 0, 0, 4)
        assert b.killed_by_stp and b.orders() == before
        # FOK filled before the walk reaches the self order: no STP
        assert lim(b, 11, BUY, 101, 3, acct=1, tif=TIF_FOK, stp=mode) == (OK, 1, 0, 0, 0)
        assert not b.killed_by_stp
        # the flag is reset by the next call, also one that is refused
        b = mk()
        lim(b, 9, BUY, 101, 10, acct=1, tif=TIF_IOC, stp=mode)
        assert b.killed_by_stp
        assert lim(b, 9, 3, 101, 10, acct=1, tif=TIF_IOC, stp=mode)[0] == ERR_BAD_ARGUMENT
        assert not b.killed_by_stp
        # replace killed by STP; then an in-place reduction
        b = mk()
        lim(b, 20, BUY, 99, 4, acct=1)
        assert b.replace(20, 100, 4, 30, mode) == (OK, 1, n_stp, 0, 1)
        assert b.killed_by_stp
        lim(b, 21, BUY, 90, 4, acct=1)
        assert b.replace(21, 90, 2, 31, mode) == (OK, 0, 0, 2, 0)
        assert not b.killed_by_stp

    # no STP involvement: IOC / FOK / market simply unfilled or short
    b = mk()
    assert lim(b, 9, BUY, 100, 10, acct=4, tif=TIF_IOC, stp=STP_CANCEL_INCOMING) == (OK, 2, 0, 0, 2)
    assert not b.killed_by_stp  # the next level does not cross: a plain IOC expiry
    b = mk()
    assert lim(b, 9, BUY, 99, 10, acct=1, tif=TIF_IOC, stp=STP_CANCEL_INCOMING) == (OK, 0, 0, 0, 10)
    assert not b.killed_by_stp  # does not cross: a plain IOC expiry
    assert lim(b, 10, BUY, 101, 20, acct=4, tif=TIF_IOC, stp=STP_CANCEL_BOTH) == (OK, 3, 0, 0, 9)
    assert not b.killed_by_stp  # book exhausted
    b = mk()
    assert lim(b, 9, BUY, 101, 20, acct=4, tif=TIF_FOK, stp=STP_CANCEL_INCOMING) == (OK, 0, 0, 0, 20)
    assert not b.killed_by_stp  # not enough liquidity
    b = mk()
    assert mkt(b, 9, 20, TIF_IOC, STP_CANCEL_RESTING) == (OK, 2, 1, 0, 14)
    assert not b.killed_by_stp  # CANCEL_RESTING never stops the incoming order
    b = mk()
    assert mkt(b, 9, 20, TIF_IOC, STP_NONE) == (OK, 3, 0, 0, 9)
    assert not b.killed_by_stp
    b = mk()
    assert lim(b, 9, BUY, 101, 20, acct=1, tif=TIF_FOK, stp=STP_CANCEL_RESTING) == (OK, 0, 0, 0, 20)
    assert not b.killed_by_stp
