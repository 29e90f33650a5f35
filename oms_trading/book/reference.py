"""Reference limit order book in plain Python on sortedcontainers.

It is the oracle of the differential tests and the baseline of the benchmark: it implements
exactly the semantics of :class:`oms_trading.book.book.NumbaBook` (see that module's
docstring for the rules: validation order, STP, FOK, replace, mass-cancel order).

Structure: a dict order_id -> _Order; per side a SortedDict price -> _Level; a level keeps
its orders in a deque in arrival order with lazy deletion (a canceled order is marked dead
and skipped; the deque is compacted when dead entries dominate), plus its live total
quantity and live order count.
"""

from __future__ import annotations

from collections import deque

from sortedcontainers import SortedDict

from .constants import (
    BUY, SELL, MARKET, LIMIT, TIF_DAY, TIF_GTC, TIF_IOC, TIF_FOK,
    STP_NONE, STP_CANCEL_RESTING, STP_CANCEL_INCOMING,
    OK, ERR_QTY, ERR_DUPLICATE_ID, ERR_UNKNOWN_ORDER, ERR_BAD_ARGUMENT,
)

_VALID_TIF = (TIF_DAY, TIF_GTC, TIF_IOC, TIF_FOK)
_ZERO5 = (0, 0, 0, 0, 0)


class _Order:
    __slots__ = ("oid", "side", "price", "qty", "acct", "ts", "tif", "alive")

    def __init__(self, oid, side, price, qty, acct, ts, tif):
        self.oid = oid
        self.side = side
        self.price = price
        self.qty = qty
        self.acct = acct
        self.ts = ts
        self.tif = tif
        self.alive = True


class _Level:
    __slots__ = ("price", "total", "count", "q")

    def __init__(self, price):
        self.price = price
        self.total = 0
        self.count = 0
        self.q = deque()


class ReferenceBook:
    """Plain-Python order book with the same API and semantics as NumbaBook."""

    def __init__(self, capacity: int = 1024):
        self._orders: dict[int, _Order] = {}
        self._bids = SortedDict()  # best = last
        self._asks = SortedDict()  # best = first
        self.fill_order_id: list[int] = []
        self.fill_account: list[int] = []
        self.fill_price: list[int] = []
        self.fill_qty: list[int] = []
        self.fill_leaves: list[int] = []
        self.stp_order_id: list[int] = []
        self.stp_qty: list[int] = []
        self.killed_by_stp = False  # STP killed the incoming order of the last add/replace

    # ------------------------------------------------------------------ internals
    def _remove_resting(self, o: _Order) -> None:
        """Take a live resting order out of the book (it must be live)."""
        o.alive = False
        book = self._bids if o.side == BUY else self._asks
        lvl = book[o.price]
        lvl.total -= o.qty
        lvl.count -= 1
        del self._orders[o.oid]
        if lvl.count == 0:
            del book[o.price]
        elif len(lvl.q) > 2 * lvl.count + 16:
            lvl.q = deque(x for x in lvl.q if x.alive)

    def _rest(self, oid, side, price, qty, acct, ts, tif) -> None:
        o = _Order(oid, side, price, qty, acct, ts, tif)
        book = self._bids if side == BUY else self._asks
        lvl = book.get(price)
        if lvl is None:
            lvl = _Level(price)
            book[price] = lvl
        lvl.q.append(o)
        lvl.total += qty
        lvl.count += 1
        self._orders[oid] = o

    def _fok_ok(self, side, acct, market, price, qty, stp) -> bool:
        """Would the FOK fill completely? Sets killed_by_stp when the walk stops at a
        same-account order first (CANCEL_INCOMING / CANCEL_BOTH)."""
        avail = 0
        levels = self._asks.values() if side == BUY else reversed(self._bids.values())
        for lvl in levels:
            lp = lvl.price
            if not market and (lp > price if side == BUY else lp < price):
                return False
            if stp == STP_NONE:
                avail += lvl.total
                if avail >= qty:
                    return True
                continue
            for o in lvl.q:
                if not o.alive:
                    continue
                if o.acct == acct:
                    if stp == STP_CANCEL_RESTING:
                        continue  # would be canceled: contributes nothing
                    self.killed_by_stp = True
                    return False  # the incoming order would be killed here
                avail += o.qty
                if avail >= qty:
                    return True
        return False

    def _match(self, side, acct, market, price, rem, stp):
        """Match an incoming order; returns (remaining, n_fills, n_stp, stopped)."""
        if side == BUY:
            book = self._asks
            idx = 0
        else:
            book = self._bids
            idx = -1
        fo = []
        fa = []
        fp = []
        fq = []
        fl = []
        so = []
        sq = []
        stopped = False
        orders = self._orders
        while rem > 0 and book:
            lp, lvl = book.peekitem(idx)
            if not market and (lp > price if side == BUY else lp < price):
                break
            q = lvl.q
            while rem > 0 and lvl.count:
                o = q[0]
                if not o.alive:
                    q.popleft()
                    continue
                if stp and o.acct == acct:
                    if stp != STP_CANCEL_INCOMING:  # CANCEL_RESTING or CANCEL_BOTH
                        so.append(o.oid)
                        sq.append(o.qty)
                        o.alive = False
                        q.popleft()
                        lvl.total -= o.qty
                        lvl.count -= 1
                        del orders[o.oid]
                    if stp != STP_CANCEL_RESTING:  # CANCEL_INCOMING or CANCEL_BOTH
                        stopped = self.killed_by_stp = True
                        break
                    continue
                oq = o.qty
                t = rem if rem < oq else oq
                rem -= t
                oq -= t
                o.qty = oq
                lvl.total -= t
                fo.append(o.oid)
                fa.append(o.acct)
                fp.append(lp)
                fq.append(t)
                fl.append(oq)
                if oq == 0:
                    o.alive = False
                    q.popleft()
                    lvl.count -= 1
                    del orders[o.oid]
            if lvl.count == 0:
                del book[lp]
            if stopped:
                break
        if fo:
            self.fill_order_id = fo
            self.fill_account = fa
            self.fill_price = fp
            self.fill_qty = fq
            self.fill_leaves = fl
        if so:
            self.stp_order_id = so
            self.stp_qty = sq
        return rem, len(fo), len(so), stopped

    # ------------------------------------------------------------------ operations
    def add(self, order_id, account, side, ord_type, tif, price, qty, ts, stp):
        self.killed_by_stp = False
        if (side != BUY and side != SELL) or (ord_type != MARKET and ord_type != LIMIT) \
                or tif not in _VALID_TIF or not (0 <= stp <= 3):
            return (ERR_BAD_ARGUMENT, 0, 0, 0, 0)
        if qty <= 0:
            return (ERR_QTY, 0, 0, 0, 0)
        if order_id in self._orders:
            return (ERR_DUPLICATE_ID, 0, 0, 0, 0)
        market = ord_type == MARKET
        if tif == TIF_FOK and not self._fok_ok(side, account, market, price, qty, stp):
            return (OK, 0, 0, 0, qty)
        rem, nf, ns, stopped = self._match(side, account, market, price, qty, stp)
        if stopped:
            return (OK, nf, ns, 0, rem)
        if rem > 0:
            if market or tif == TIF_IOC or tif == TIF_FOK:
                return (OK, nf, ns, 0, rem)
            self._rest(order_id, side, price, rem, account, ts, tif)
            return (OK, nf, ns, rem, 0)
        return (OK, nf, ns, 0, 0)

    def cancel(self, order_id):
        o = self._orders.get(order_id)
        if o is None:
            return (ERR_UNKNOWN_ORDER, 0)
        q = o.qty
        self._remove_resting(o)
        return (OK, q)

    def replace(self, order_id, new_price, new_qty, ts, stp):
        self.killed_by_stp = False
        if not (0 <= stp <= 3):
            return (ERR_BAD_ARGUMENT, 0, 0, 0, 0)
        if new_qty <= 0:
            return (ERR_QTY, 0, 0, 0, 0)
        o = self._orders.get(order_id)
        if o is None:
            return (ERR_UNKNOWN_ORDER, 0, 0, 0, 0)
        if new_price == o.price and new_qty <= o.qty:
            lvl = (self._bids if o.side == BUY else self._asks)[o.price]
            lvl.total -= o.qty - new_qty
            o.qty = new_qty
            return (OK, 0, 0, new_qty, 0)
        self._remove_resting(o)
        rem, nf, ns, stopped = self._match(o.side, o.acct, False, new_price, new_qty, stp)
        if stopped:
            return (OK, nf, ns, 0, rem)
        if rem > 0:
            self._rest(order_id, o.side, new_price, rem, o.acct, ts, o.tif)
            return (OK, nf, ns, rem, 0)
        return (OK, nf, ns, 0, 0)

    def mass_cancel(self, account: int = -1, side: int = 0):
        if side not in (0, BUY, SELL):
            raise ValueError(f"side must be 0, {BUY} or {SELL}, not {side!r}")
        out = []
        victims = []
        for s in (BUY, SELL):
            if side and s != side:
                continue
            levels = reversed(self._bids.values()) if s == BUY else self._asks.values()
            for lvl in levels:
                for o in lvl.q:
                    if o.alive and (account == -1 or o.acct == account):
                        victims.append(o)
        for o in victims:
            out.append((o.oid, o.qty))
            self._remove_resting(o)
        return out

    # ------------------------------------------------------------------ queries
    def best_bid(self):
        if not self._bids:
            return None
        p, lvl = self._bids.peekitem(-1)
        return (p, lvl.total)

    def best_ask(self):
        if not self._asks:
            return None
        p, lvl = self._asks.peekitem(0)
        return (p, lvl.total)

    def depth(self, n: int):
        bids = []
        asks = []
        if n > 0:
            for lvl in reversed(self._bids.values()):
                if len(bids) >= n:
                    break
                bids.append((lvl.price, lvl.total, lvl.count))
            for lvl in self._asks.values():
                if len(asks) >= n:
                    break
                asks.append((lvl.price, lvl.total, lvl.count))
        return bids, asks

    def get(self, order_id):
        o = self._orders.get(order_id)
        if o is None:
            return None
        return (o.side, o.price, o.qty, o.acct, o.ts)

    def orders(self):
        out = []
        for s, levels in ((BUY, reversed(self._bids.values())), (SELL, self._asks.values())):
            for lvl in levels:
                for o in lvl.q:
                    if o.alive:
                        out.append((o.oid, s, o.price, o.qty, o.acct, o.ts))
        return out

    def fills(self, n: int):
        return list(zip(self.fill_order_id[:n], self.fill_account[:n], self.fill_price[:n],
                        self.fill_qty[:n], self.fill_leaves[:n]))

    def stp_cancels(self, n: int):
        return list(zip(self.stp_order_id[:n], self.stp_qty[:n]))

    def __len__(self):
        return len(self._orders)
