"""Differential tests: random streams of every book operation give identical outputs and
identical state in NumbaBook and ReferenceBook; invariants hold after every step."""

from __future__ import annotations

import random
from collections import defaultdict

import pytest

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

from oms_trading.book import (
    NumbaBook, ReferenceBook, BUY, SELL, OK, OP_ADD, OP_CANCEL, OP_REPLACE, OP_MASS_CANCEL,
)

EXTREME = [2**62, -(2**62), 2**62 - 1, -(2**62) + 1, 2**63 - 1, -(2**63)]

prices = st.one_of(st.integers(95, 105), st.integers(97, 103), st.integers(95, 105),
                   st.sampled_from(EXTREME))
qtys = st.one_of(st.integers(1, 12), st.integers(1, 12), st.integers(1, 30), st.integers(1, 5),
                 st.integers(-2, 0), st.sampled_from([2**40]))
oids = st.one_of(*[st.integers(1, 30)] * 12, st.sampled_from([0, -1, 2**63 - 1, -(2**63)]))
accounts = st.integers(1, 3)
sides = st.sampled_from([BUY] * 12 + [SELL] * 12 + [0, 3])
ord_types = st.sampled_from([2] * 14 + [1] * 2 + [0])
tifs = st.sampled_from([0] * 5 + [1] * 6 + [3] * 3 + [4] * 4 + [2])
stps = st.sampled_from([0] * 10 + [1] * 3 + [2] * 3 + [3] * 3 + [5])



@st.composite
def one_op(draw):
    k = draw(st.integers(0, 99))
    if k < 62:
        return ("add", draw(oids), draw(accounts), draw(sides), draw(ord_types), draw(tifs),
                draw(prices), draw(qtys), draw(stps))
    if k < 77:
        return ("cancel", draw(oids))
    if k < 97:
        return ("replace", draw(oids), draw(prices), draw(qtys), draw(stps))
    return ("mass", draw(st.sampled_from([-1, 1, 2, 3])), draw(st.sampled_from([0, BUY, SELL])))


ops_strategy = st.lists(one_op(), min_size=10, max_size=150)


def random_stream(rnd, n):
    """A denser, realistic stream (hypothesis' own draws favour simple values)."""
    ops = []
    for _ in range(n):
        k = rnd.random()
        oid = rnd.randint(1, 60)
        if k < 0.6:
            side = rnd.choice((BUY, SELL))
            price = rnd.randint(96, 104) if rnd.random() > 0.02 else rnd.choice(EXTREME)
            ordt = 1 if rnd.random() < 0.05 else 2
            tif = rnd.choice((0, 1, 1, 1, 3, 4, 4))
            qty = rnd.randint(1, 20) if rnd.random() > 0.03 else rnd.randint(-1, 0)
            stp = rnd.choice((0, 0, 0, 1, 2, 3))
            ops.append(("add", oid, rnd.randint(1, 3), side, ordt, tif, price, qty, stp))
        elif k < 0.75:
            ops.append(("cancel", oid))
        elif k < 0.98:
            price = rnd.randint(96, 104)
            ops.append(("replace", oid, price, rnd.randint(0, 20), rnd.choice((0, 0, 1, 2, 3))))
        else:
            ops.append(("mass", rnd.choice((-1, 1, 2, 3)), rnd.choice((0, BUY, SELL))))
    return ops


def _apply(book, op, ts):
    kind = op[0]
    if kind == "add":
        _, oid, acct, side, ordt, tif, price, qty, stp = op
        r = book.add(oid, acct, side, ordt, tif, price, qty, ts, stp)
        return r, book.fills(r[1]), book.stp_cancels(r[2]), bool(book.killed_by_stp)
    if kind == "cancel":
        return book.cancel(op[1]), [], [], False
    if kind == "replace":
        _, oid, price, qty, stp = op
        r = book.replace(oid, price, qty, ts, stp)
        return r, book.fills(r[1]), book.stp_cancels(r[2]), bool(book.killed_by_stp)
    return book.mass_cancel(op[1], op[2]), [], [], False


def _state(book):
    return (book.orders(), book.depth(10_000), book.best_bid(), book.best_ask(), len(book))


def _check_invariants(orders, depth, best_bid, best_ask):
    # never crossed at rest
    if best_bid is not None and best_ask is not None:
        assert best_bid[0] < best_ask[0]
    # FIFO within each level (ts increase with arrival in these streams), grouping by level
    last_ts = {}
    agg = defaultdict(lambda: [0, 0])
    for oid, side, price, qty, acct, ts in orders:
        assert qty > 0
        key = (side, price)
        assert last_ts.get(key, -1) <= ts
        last_ts[key] = ts
        agg[key][0] += qty
        agg[key][1] += 1
    bids, asks = depth
    assert [p for p, _, _ in bids] == sorted({p for s, p in agg if s == BUY}, reverse=True)
    assert [p for p, _, _ in asks] == sorted({p for s, p in agg if s == SELL})
    # level totals equal the sum of their orders
    for side, levels in ((BUY, bids), (SELL, asks)):
        for price, total, count in levels:
            assert agg[(side, price)] == [total, count]


def run_stream(ops, capacity=4):
    nb = NumbaBook(capacity=capacity)
    rb = ReferenceBook(capacity=capacity)
    submitted = filled = canceled = killed = 0
    for ts, op in enumerate(ops, start=1):
        old = rb.get(op[1]) if op[0] == "replace" else None
        out_n = _apply(nb, op, ts)
        out_r = _apply(rb, op, ts)
        assert out_n == out_r, (ts, op, out_n, out_r)
        # quantity conservation bookkeeping
        if op[0] == "add" and out_r[0][0] == OK:
            r, fills, stpc, _ = out_r
            assert sum(f[3] for f in fills) + r[3] + r[4] == op[7]
            submitted += op[7]
        elif op[0] == "replace" and out_r[0][0] == OK:
            r, fills, stpc, _ = out_r
            assert sum(f[3] for f in fills) + r[3] + r[4] == op[3]
            submitted += op[3] - old[2]
        if op[0] in ("add", "replace"):
            r, fills, stpc, by_stp = out_r
            # killed by STP: only an accepted order with something killed, and only with
            # CANCEL_INCOMING / CANCEL_BOTH
            assert not by_stp or (r[0] == OK and r[4] > 0 and op[-1] in (2, 3)), (ts, op, out_r)
        if op[0] in ("add", "replace") and out_r[0][0] == OK:
            r, fills, stpc, _ = out_r
            filled += sum(f[3] for f in fills)
            canceled += sum(q for _, q in stpc)
            killed += r[4]
            for f in fills:
                assert 0 <= f[4]
        elif op[0] == "cancel":
            canceled += out_r[0][1]
        elif op[0] == "mass":
            canceled += sum(q for _, q in out_r[0])
        sn = _state(nb)
        sr = _state(rb)
        assert sn == sr, (ts, op)
        _check_invariants(*sr[:4])
        resting = sum(o[3] for o in sr[0])
        assert submitted == 2 * filled + canceled + killed + resting
        nb.check_integrity()
    for oid in range(-1, 41):
        assert nb.get(oid) == rb.get(oid)
    return nb, rb


# streams of up to 150 ops: large inputs on purpose (data_too_large would fail at random)
_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]


@settings(max_examples=200, deadline=None, suppress_health_check=_SLOW_OK)
@given(ops_strategy)
def test_differential_random_streams(ops):
    ops = [op for op in ops if not (op[0] == "mass" and op[2] not in (0, BUY, SELL))]
    run_stream(ops)


@settings(max_examples=40, deadline=None, suppress_health_check=_SLOW_OK)
@given(st.randoms(use_true_random=False), st.integers(50, 400))
def test_differential_dense_streams(rnd, n):
    run_stream(random_stream(rnd, n))


def _to_batch(ops):
    rows = []
    for ts, op in enumerate(ops, start=1):
        row = [0] * 10
        if op[0] == "add":
            _, oid, acct, side, ordt, tif, price, qty, stp = op
            row = [OP_ADD, oid, acct, side, ordt, tif, price, qty, ts, stp]
        elif op[0] == "cancel":
            row[0], row[1] = OP_CANCEL, op[1]
        elif op[0] == "replace":
            _, oid, price, qty, stp = op
            row = [OP_REPLACE, oid, 0, 0, 0, 0, price, qty, ts, stp]
        else:
            row[0], row[2], row[3] = OP_MASS_CANCEL, op[1], op[2]
        rows.append(row)
    return np.array(rows, dtype=np.int64).reshape(-1, 10)


@settings(max_examples=60, deadline=None, suppress_health_check=_SLOW_OK)
@given(ops_strategy)
def test_batch_kernel_matches_reference(ops):
    nb = NumbaBook(capacity=4)
    rb = ReferenceBook()
    res = nb.run_batch(_to_batch(ops))
    for ts, (op, row) in enumerate(zip(ops, res.tolist()), start=1):
        out = _apply(rb, op, ts)[0]
        if op[0] == "mass":
            assert row[:3] == [OK, len(out), sum(q for _, q in out)]
        elif op[0] == "cancel":
            assert tuple(row[:2]) == out and row[2:] == [0, 0, 0]
        else:
            assert tuple(row) == out
    assert _state(nb) == _state(rb)
    nb.check_integrity()


def _wide_stream(rnd, n, nprices):
    """Many price levels (hundreds per side) so ladder blocks split and merge."""
    ops = []
    next_id = 1
    live = []
    for _ in range(n):
        k = rnd.random()
        if k < 0.62 or not live:
            side = rnd.choice((BUY, SELL))
            off = rnd.randint(1, nprices)
            price = 10_000 - off if side == BUY else 10_000 + off
            if rnd.random() < 0.04:
                price = 10_000 + (rnd.randint(-5, 5))  # occasionally crossing
            ops.append(("add", next_id, rnd.randint(1, 4), side, 2, 1, price,
                        rnd.randint(1, 20), rnd.choice((0, 0, 1))))
            live.append(next_id)
            next_id += 1
        elif k < 0.85:
            ops.append(("cancel", live.pop(rnd.randrange(len(live)))))
        elif k < 0.995:
            oid = live[rnd.randrange(len(live))]
            ops.append(("replace", oid, 10_000 + rnd.randint(-nprices, nprices),
                        rnd.randint(1, 20), 0))
        else:
            ops.append(("mass", rnd.choice((-1, 1, 2, 3, 4)), rnd.choice((0, BUY, SELL))))
    return ops


@pytest.mark.parametrize("seed,nprices", [(1, 300), (2, 800), (3, 1500), (4, 3000)])
def test_differential_wide_book_blocks_split_and_merge(seed, nprices):
    ops = _wide_stream(random.Random(seed), 4000, nprices)
    nb = NumbaBook(capacity=8)
    rb = ReferenceBook(capacity=8)
    for ts, op in enumerate(ops, start=1):
        assert _apply(nb, op, ts) == _apply(rb, op, ts), (ts, op)
        if ts % 250 == 0:
            assert _state(nb) == _state(rb)
            nb.check_integrity()
    assert _state(nb) == _state(rb)
    nb.check_integrity()
    res = NumbaBook(capacity=8).run_batch(_to_batch(ops))
    rb2 = ReferenceBook()
    for ts, (op, row) in enumerate(zip(ops, res.tolist()), start=1):
        out = _apply(rb2, op, ts)[0]
        if op[0] == "add" or op[0] == "replace":
            assert tuple(row) == out


@pytest.mark.parametrize("capacity", [4, 1 << 15])
def test_batch_fetch_ahead_on_a_large_book(capacity):
    """The batch kernel prefetches ahead (order-id hash entries, slots, neighbours) once the
    book is large (an order-id table of >= 2**16 entries): results must not change. From
    capacity 4 the kernel stops at each growth and resumes, and fetching ahead switches on
    mid-stream; from 2**15 it is on from the first row."""
    from benchmarks.bench_book import make_stream, _calls, _run_calls, _norm
    from oms_trading.book.batch import PF_MIN_HCAP
    from oms_trading.book.kernels import H_HCAP

    stream = make_stream(60_000, 5)
    # a few mass cancels in the stream (one account / one side, and everything once)
    for k, row in enumerate(range(7_000, 60_000, 6_000)):
        stream[row, :] = 0
        stream[row, 0] = OP_MASS_CANCEL
        stream[row, 2] = -1 if k == 4 else 1 + k % 5
        stream[row, 3] = (0, BUY, SELL)[k % 3]
    nb = NumbaBook(capacity=capacity)
    res = nb.run_batch(stream)
    assert nb._mem[H_HCAP] >= PF_MIN_HCAP  # the fetch-ahead path did run
    rb = ReferenceBook()
    calls = _calls(stream)
    cres = _run_calls(rb, calls, timed=False)[0]
    assert res.tolist() == _norm(cres, calls)
    assert nb.orders() == rb.orders()
    nb.check_integrity()


@pytest.mark.parametrize("seed", [5, 6])
def test_batch_fetch_ahead_random_ops(seed):
    """Every operation kind (unknown ids, mass cancels, crossing orders) through the batch
    kernel with fetching ahead on (capacity 2**15), against the reference book."""
    ops = _wide_stream(random.Random(seed), 6000, 400)
    nb = NumbaBook(capacity=1 << 15)
    res = nb.run_batch(_to_batch(ops))
    rb = ReferenceBook()
    for ts, (op, row) in enumerate(zip(ops, res.tolist()), start=1):
        out = _apply(rb, op, ts)[0]
        if op[0] == "mass":
            assert row[:3] == [OK, len(out), sum(q for _, q in out)]
        elif op[0] == "cancel":
            assert tuple(row[:2]) == out
        else:
            assert tuple(row) == out
    assert _state(nb) == _state(rb)
    nb.check_integrity()

