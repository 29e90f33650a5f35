"""NumbaBook: one instrument's limit order book on numba kernels (thin Python facade).

Semantics (identical in :class:`oms_trading.book.reference.ReferenceBook`)
--------------------------------------------------------------------------
* Price-time priority; prices are any int64 (no window); fills at the resting price.
* add(): validation order is ERR_BAD_ARGUMENT (side, ord_type, tif, stp), then ERR_QTY
  (qty <= 0), then ERR_DUPLICATE_ID (id resting). On status != OK nothing changes and the
  counts are 0. MARKET ignores price, matches at any price and never rests (remainder
  killed, whatever the tif; MARKET+FOK is all-or-nothing at any price). IOC: remainder
  killed. DAY/GTC limit: remainder rests.
* Self-trade prevention applies when the incoming order meets a resting order of the same
  account and stp != STP_NONE, in the order the match visits resting orders:
  CANCEL_RESTING removes the resting order (reported as an STP cancel, not a fill) and
  matching goes on; CANCEL_INCOMING kills the incoming remainder (killed_qty) and matching
  stops, the resting order stays; CANCEL_BOTH removes the resting order and kills the
  incoming remainder. Fills made before that point stand.
* FOK: the book first simulates the match walk (best price first, FIFO, same STP rules):
  it is fillable iff the quantity of other accounts' orders visited before the walk would
  stop reaches qty. The walk stops at a price that does not cross or, with
  CANCEL_INCOMING/CANCEL_BOTH, at the first same-account resting order; with
  CANCEL_RESTING same-account orders contribute nothing and are skipped. If not fillable
  the order is killed whole (killed_qty = qty, 0 fills, 0 STP cancels) and NOTHING in the
  book changes. If fillable it executes exactly that walk: it fills completely, and any
  same-account orders the walk passed over are STP-canceled (CANCEL_RESTING only; with the
  other modes a fillable walk never met one). With STP_NONE, self-trades are allowed.
* replace(order_id, new_price, new_qty, ts, stp): validation ERR_BAD_ARGUMENT (stp), then
  ERR_QTY (new_qty <= 0), then ERR_UNKNOWN_ORDER. Same price and new_qty <= remaining:
  reduced in place (priority and ts kept), returns (OK, 0, 0, new_qty, 0). Otherwise the
  order leaves its level and re-enters as a limit order (same id, side, account, tif) at
  new_price with qty new_qty and timestamp ts, at the back of its level, matching first
  with the given stp (it may be filled completely, or killed by STP: it is then gone).
* cancel(order_id) -> (status, canceled_qty).
* mass_cancel(account=-1, side=0) -> [(order_id, qty)]: -1 = any account, 0 = any side
  (ValueError for another side value). Order: bids before asks, each side best price
  first, FIFO within a level (the same order as orders()).
* Outputs of the last add/replace: fill_* arrays (order id, account, price, qty, leaves of
  the resting order) for i < n_fills, stp_order_id/stp_qty for i < n_stp_cancels. They
  are views into the book's memory, valid until the next call.

Arguments are Python ints within int64 (a larger int raises OverflowError). The facade
calls the compiled kernels' entry points directly (skipping numba's type dispatch, which
costs more than the kernel itself) and passes the book array's address as an int64, not
the array (unboxing an array argument costs more than a small kernel); kernels are
compiled with explicit int64 signatures at the first Book() or by warm_up().
"""

from __future__ import annotations

import threading

import numpy as np
from numba import types

from . import kernels as K
from .constants import BUY, SELL, OK

_MEM = types.Array(types.int64, 1, "C")
_OPS = types.Array(types.int64, 2, "C")
_I = types.int64

# name -> (dispatcher, argument types); compiled lazily by compile_kernels(). The hot
# per-call kernels take the book array's address (an int64): unboxing an array argument
# costs numba more than the kernel itself on a small book.
_SIGS = {
    "mem_size": (K.mem_size, (_I,)),
    "init": (K.init, (_MEM, _I)),
    "copy_into": (K.copy_into, (_MEM, _MEM)),
    "add": (K.a_add, (_I,) * 10),
    "cancel": (K.a_cancel, (_I, _I)),
    "replace": (K.a_replace, (_I,) * 6),
    "mass_cancel": (K.a_mass_cancel, (_I, _I, _I)),
    "best": (K.a_best, (_I, _I)),
    "depth": (K.a_depth, (_I, _I, _I)),
    "get": (K.a_get, (_I, _I)),
    "orders": (K.orders, (_MEM,)),
}

_lock = threading.Lock()
_compiled = False
_MEMSIZE = _INIT = _COPY = _ADD = _CANCEL = _REPLACE = _MASS = _BEST = _DEPTH = _GET = None
_ORDERS = _BATCH = None


def compile_kernels() -> None:
    """Compile (or load from numba's cache) every kernel with its int64 signature and bind
    the entry points the facade calls. Idempotent, thread safe."""
    global _compiled, _MEMSIZE, _INIT, _COPY, _ADD, _CANCEL, _REPLACE, _MASS, _BEST
    global _DEPTH, _GET, _ORDERS, _BATCH
    if _compiled:
        return
    with _lock:
        if _compiled:
            return
        eps = {}
        for name, (disp, sig) in _SIGS.items():
            eps[name] = disp.compile(sig)
        from .batch import run_batch
        _BATCH = run_batch.compile((_MEM, _OPS, _OPS, _I))
        _MEMSIZE = eps["mem_size"]
        _INIT = eps["init"]
        _COPY = eps["copy_into"]
        _ADD = eps["add"]
        _CANCEL = eps["cancel"]
        _REPLACE = eps["replace"]
        _MASS = eps["mass_cancel"]
        _BEST = eps["best"]
        _DEPTH = eps["depth"]
        _GET = eps["get"]
        _ORDERS = eps["orders"]
        _compiled = True


def _alloc(scap: int) -> np.ndarray:
    """An empty book array of slot capacity scap: allocated by numpy (huge pages for large
    books where the OS allows them), 64-byte aligned so slot and level records are one
    cache line each."""
    if scap >= 1 << 31:  # slot indexes are packed in 32 bits
        raise ValueError(f"capacity {scap} too large (at most {(1 << 31) - 1})")
    n = int(_MEMSIZE(scap))
    raw = np.empty(n + 8, dtype=np.int64)
    k = (-raw.ctypes.data % 64) // 8
    mem = raw[k:k + n]
    _INIT(mem, scap)
    return mem


class NumbaBook:
    """Limit order book of one instrument; state in one int64 array, kernels in numba."""

    def __init__(self, capacity: int = 1024):
        compile_kernels()
        self._mem = _alloc(max(int(capacity), 1))
        self._bind()

    # ------------------------------------------------------------------ memory
    def _bind(self) -> None:
        mem = self._mem
        self._a = mem.ctypes.data  # the kernels' handle on the book; mem stays referenced
        cap = int(mem[K.H_SCAP])
        of = int(mem[K.H_OFILL])
        os_ = int(mem[K.H_OSTP])
        f = mem[of:of + cap * K.FK].reshape(cap, K.FK)
        s = mem[os_:os_ + cap * 2].reshape(cap, 2)
        self._f2 = f
        self._s2 = s
        self.fill_order_id = f[:, 0]
        self.fill_account = f[:, 1]
        self.fill_price = f[:, 2]
        self.fill_qty = f[:, 3]
        self.fill_leaves = f[:, 4]
        self.stp_order_id = s[:, 0]
        self.stp_qty = s[:, 1]

    @property
    def capacity(self) -> int:
        return int(self._mem[K.H_SCAP])

    def _resize(self, capacity: int) -> None:
        new = _alloc(capacity)
        _COPY(self._mem, new)
        self._mem = new
        self._bind()

    def reserve(self, capacity: int) -> None:
        """Grow now (outside the hot path) to hold at least capacity resting orders."""
        if capacity > self.capacity:
            self._resize(int(capacity))

    def _grow(self) -> None:
        self._resize(2 * int(self._mem[K.H_SCAP]))

    # ------------------------------------------------------------------ operations
    def add(self, order_id, account, side, ord_type, tif, price, qty, ts, stp):
        r = _ADD(self._a, order_id, account, side, ord_type, tif, price, qty, ts, stp)
        while r[0] < 0:  # NEED_GROW: nothing was changed
            self._grow()
            r = _ADD(self._a, order_id, account, side, ord_type, tif, price, qty, ts, stp)
        return r

    def cancel(self, order_id):
        return _CANCEL(self._a, order_id)

    def replace(self, order_id, new_price, new_qty, ts, stp):
        r = _REPLACE(self._a, order_id, new_price, new_qty, ts, stp)
        while r[0] < 0:  # NEED_GROW (the price tables are full): nothing was changed
            self._grow()
            r = _REPLACE(self._a, order_id, new_price, new_qty, ts, stp)
        return r

    def mass_cancel(self, account: int = -1, side: int = 0):
        if side not in (0, BUY, SELL):
            raise ValueError(f"side must be 0, {BUY} or {SELL}, not {side!r}")
        n = _MASS(self._a, account, side)
        return [tuple(r) for r in self._s2[:n].tolist()]

    def run_batch(self, ops: np.ndarray) -> np.ndarray:
        """Run a whole stream in one kernel call (see oms_trading.book.batch for the
        layout of ops); returns the (n, 5) int64 results. When the book is full the kernel
        stops at that row; the book grows here and the kernel resumes from it."""
        ops = np.ascontiguousarray(ops, dtype=np.int64)
        n = ops.shape[0]
        res = np.zeros((n, 5), dtype=np.int64)
        i = 0
        while True:
            i = _BATCH(self._mem, ops, res, i)
            if i >= n:
                break
            self._grow()
        return res

    # ------------------------------------------------------------------ queries
    def best_bid(self):
        r = _BEST(self._a, BUY)
        return (r[1], r[2]) if r[0] else None

    def best_ask(self):
        r = _BEST(self._a, SELL)
        return (r[1], r[2]) if r[0] else None

    def depth(self, n: int):
        if n <= 0:
            return [], []
        k = _DEPTH(self._a, BUY, n)
        bids = [tuple(r) for r in self._f2[:k, :3].tolist()]
        k = _DEPTH(self._a, SELL, n)
        asks = [tuple(r) for r in self._f2[:k, :3].tolist()]
        return bids, asks

    def get(self, order_id):
        r = _GET(self._a, order_id)
        return r[1:] if r[0] else None

    def orders(self):
        return [tuple(r) for r in _ORDERS(self._mem).tolist()]

    def fills(self, n: int):
        return [tuple(r) for r in self._f2[:n].tolist()]

    def stp_cancels(self, n: int):
        return [tuple(r) for r in self._s2[:n].tolist()]

    def __len__(self):
        return int(self._mem[K.H_NORD])

    # ------------------------------------------------------------------ debugging
    def check_integrity(self) -> None:
        """Verify the internal structure (slow; for tests). Raises AssertionError."""
        m = self._mem.tolist()
        oslot, olvl, oblk = m[K.H_OSLOT], m[K.H_OLVL], m[K.H_OBLK]
        BS, BW = K.BS, K.BW
        assert self._a % 64 == 0 and oslot % 8 == 0 and olvl % 8 == 0, "alignment"

        def lo(w):
            w &= 0xFFFFFFFF
            return w - (1 << 32) if w >= 1 << 31 else w

        def hi(w):
            return w >> 32

        def table(off):
            hc = m[off - 2]
            return {m[off + 2 * i]: m[off + 2 * i + 1] for i in range(hc)
                    if m[off + 2 * i + 1] >= 0}

        oid_tab = table(m[K.H_OHASH])
        acc_tab = table(m[K.H_OACC])
        assert len(oid_tab) == sum(1 for i in range(m[K.H_HCAP])
                                   if m[m[K.H_OHASH] + 2 * i + 1] >= 0), "hash duplicates"
        seen = 0
        nlev = 0
        by_acct = {}
        for side, doff, hn, poff in ((BUY, m[K.H_ODB], K.H_NDB, m[K.H_OPB]),
                                     (SELL, m[K.H_ODA], K.H_NDA, m[K.H_OPA])):
            price_tab = table(poff)
            nd = m[hn]
            keys, levs, counts = [], [], []
            for j in range(nd):
                bb = oblk + m[doff + j] * BW
                n = m[bb]
                assert 1 <= n <= BS, "block count"
                counts.append(n)
                for i in range(n):
                    keys.append(m[bb + 1 + i])
                    lev = m[bb + 1 + BS + i]
                    levs.append(lev)
                    assert m[olvl + lev * K.LK + K.L_BLK] == m[doff + j], "level block"
            for a, b in zip(counts, counts[1:]):
                assert a + b >= K.HALF, "adjacent blocks under half full"
            assert keys == sorted(keys) and len(set(keys)) == len(keys), "ladder not sorted"
            nlev += len(levs)
            assert len(price_tab) == (len(levs) if K.PRICE_HASH else 0), "price hash size"
            for key, lev in zip(keys, levs):
                b = olvl + lev * K.LK
                price = m[b + K.L_PRICE]
                assert not K.PRICE_HASH or price_tab.get(price) == lev, "price hash"
                assert m[b + K.L_SIDE] == side
                assert key == (price if side == BUY else ~price)
                slot = m[b + K.L_HEAD]
                prev = -1
                tot = cnt = 0
                lastseq = -1
                while slot >= 0:
                    s = oslot + slot * K.SK
                    meta = m[s + K.S_META]
                    assert lo(m[s + K.S_LINK]) == prev and meta >> 8 == lev
                    assert meta & 3 == side
                    assert (meta >> 2) & 7 in (0, 1, 3, 4), "tif"
                    assert m[s + K.S_QTY] > 0
                    assert m[s + K.S_SEQ] > lastseq, "fifo sequence"
                    lastseq = m[s + K.S_SEQ]
                    oid = m[s + K.S_OID]
                    assert oid_tab.get(oid) == slot, "order hash"
                    by_acct.setdefault(m[s + K.S_ACCT], set()).add(slot)
                    tot += m[s + K.S_QTY]
                    cnt += 1
                    prev = slot
                    slot = hi(m[s + K.S_LINK])
                assert m[b + K.L_TAIL] == prev
                assert cnt > 0 and cnt == m[b + K.L_COUNT], "level count"
                assert tot == m[b + K.L_TOTAL], "level total"
                seen += cnt
        assert seen == m[K.H_NORD], "order count"
        assert len(oid_tab) == seen, "hash entries"
        assert set(acc_tab) == set(by_acct), "account table"
        assert m[K.H_NACC] == len(acc_tab), "account count"
        assert m[K.H_NLEV] == nlev, "level count"
        assert 2 * nlev <= m[K.H_PCAP] and 2 * len(acc_tab) <= m[K.H_PCAP], "table load"
        for acct, head in acc_tab.items():
            got = set()
            prev = -1
            slot = head
            while slot >= 0:
                s = oslot + slot * K.SK
                assert lo(m[s + K.S_ALINK]) == prev and m[s + K.S_ACCT] == acct
                got.add(slot)
                prev = slot
                slot = hi(m[s + K.S_ALINK])
            assert got == by_acct[acct], "account list"
