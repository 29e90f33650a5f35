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
  are views into the book's memory, valid until the next call. killed_by_stp: why the
  incoming order stopped, which killed_qty alone does not say: True iff CANCEL_INCOMING /
  CANCEL_BOTH met a same-account resting order, so killed_qty (> 0) is an STP cancel and
  not an IOC/FOK/market remainder; for a FOK, iff its simulated walk stopped at such an
  order before reaching qty (the whole FOK is then killed because of STP, even if the
  quantity past that order would not have filled it either). False after any other add
  or replace (also a refused one). run_batch does not report it.

Arguments are Python ints within int64 (a larger int raises OverflowError). The quantities
resting at one price level must also sum to at most int64 max (level totals are int64: past
it best/depth totals and the FOK check of STP_NONE, which reads them, would be wrong; the
engine caps an order at 10**12). The facade
calls the compiled kernels' entry points directly (skipping numba's type dispatch, which
costs more than the kernel itself) and passes the book array's address as an int64, not
the array (unboxing an array argument costs more than a small kernel); a book's add,
cancel and replace are those entry points bound to its address (functools.partial), with
no Python frame of the facade per call: a full book is grown by the kernel calling back
(see _grown). Kernels are compiled with explicit int64 signatures at the first Book() or
by warm_up().

Memory: see the comment above RESERVE_MIN (one reserved mapping per book, growth in
place, a background thread laying out the next capacity's hash tables).
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import os
import queue
import sys
import threading
import weakref

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
    "mem_size": (K.mem_size, (_I, _I)),
    "init": (K.init, (_MEM, _I, _I, _I)),
    "copy_into": (K.copy_into, (_MEM, _MEM)),
    "grow": (K.grow, (_MEM, _I)),
    "prepare": (K.prepare, (_MEM, _I)),
    "spans": (K.spans, (_MEM, _I)),
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
_GROW = _PREPARE = _SPANS = None
_MEMSIZE = _INIT = _COPY = _ADD = _CANCEL = _REPLACE = _MASS = _BEST = _DEPTH = _GET = None
_ORDERS = _BATCH = None


def compile_kernels() -> None:
    """Compile (or load from numba's cache) every kernel with its int64 signature and bind
    the entry points the facade calls. Idempotent, thread safe."""
    global _compiled, _MEMSIZE, _INIT, _COPY, _ADD, _CANCEL, _REPLACE, _MASS, _BEST
    global _DEPTH, _GET, _ORDERS, _BATCH, _GROW, _PREPARE, _SPANS
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
        _GROW = eps["grow"]
        _PREPARE = eps["prepare"]
        _SPANS = eps["spans"]
        _ADD = eps["add"]
        _CANCEL = eps["cancel"]
        _REPLACE = eps["replace"]
        _MASS = eps["mass_cancel"]
        _BEST = eps["best"]
        _DEPTH = eps["depth"]
        _GET = eps["get"]
        _ORDERS = eps["orders"]
        _compiled = True


# ---------------------------------------------------------------------- memory
# A book's array is a view over its own anonymous mapping that reserves address space for
# RESERVE_MIN slots or more (MAP_NORESERVE: memory is committed only when touched), every
# region sized for the reservation. Growth within it is in place: the regions already have
# room, only the hash tables are rebuilt, each into a spare area that a background thread
# laid out (and so faulted in) while the book was in use; a growth step then costs the
# rebuild alone. Each region starts 256 KiB before a 2 MiB boundary and asks for
# transparent huge pages from there on (a small book stays in small pages; a large one
# takes one fault per 2 MiB instead of 512: the first touch of a page is slow on this VM).
# The initial capacity's pages are faulted in when the book is made.
RESERVE_MIN = 1 << 22
# Fault in the next capacity's slots, levels, blocks and output rows in the background
# too (not only lay out its hash tables). Off by default: on this shared 2-vCPU VM the
# extra thread's page zeroing (twice the capacity ahead, partly never used) competed with
# the book for the CPU and memory bus and did not pay in wall-clock time; it takes the
# page faults off the book's thread (1,575 -> ~10 in the deep-build phase), which pays
# where a core is idle.
_PREFAULT = os.environ.get("OMS_BOOK_PREFAULT", "") not in ("", "0")
_SYNC_AHEAD = 4096  # up to this capacity the next one is prepared at once, not in the
#                     background (about 1.3 MB of pages)
_MAX_SLOTS = (1 << 31) - 1  # slot indexes are packed in 32 bits
_HUGE = 1 << 21
_ALIGN_WORDS = _HUGE // 8
_MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE",
                         0x4000 if sys.platform.startswith("linux") else 0)
_MADV_POPULATE_WRITE = 23  # Linux >= 5.14
_populate_ok = sys.platform.startswith("linux")
try:
    _madvise = ctypes.CDLL(None, use_errno=True).madvise  # releases the GIL while it runs
    _madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    _madvise.restype = ctypes.c_int
except (OSError, AttributeError):  # pragma: no cover - not Linux / no libc symbol
    _madvise = None
    _populate_ok = False


def _populate(addr: int, nbytes: int) -> None:
    """Fault in [addr, addr + nbytes) for writing, contents unchanged (a hint: on a kernel
    without MADV_POPULATE_WRITE it does nothing and pages fault in when first touched)."""
    global _populate_ok
    if not _populate_ok or nbytes <= 0:
        return
    a = addr & ~(mmap.PAGESIZE - 1)
    n = addr + nbytes - a
    if _madvise(a, n, _MADV_POPULATE_WRITE) != 0 and ctypes.get_errno() in (22, 95):
        _populate_ok = False  # EINVAL / EOPNOTSUPP: an older kernel


_wq: queue.SimpleQueue | None = None
_wthread: threading.Thread | None = None
_wpid = None
_wlock = threading.Lock()


def _worker_alive() -> bool:
    return _wthread is not None and _wpid == os.getpid() and _wthread.is_alive()


def _work(q) -> None:
    while True:
        job = q.get()
        try:
            job()
        except Exception:  # pragma: no cover - a hint failed; the book does not need it
            pass
        del job


def _submit(job) -> None:
    """Run job in the book's background thread (one per process, started on demand; a
    forked child starts its own)."""
    global _wq, _wthread, _wpid
    with _wlock:
        if not _worker_alive():
            _wq = queue.SimpleQueue()
            _wpid = os.getpid()
            _wthread = threading.Thread(target=_work, args=(_wq,), name="book-prefault",
                                        daemon=True)
            _wthread.start()
        _wq.put(job)


class _Arena:
    """An anonymous private mapping viewed as one int64 array, 2 MiB aligned."""

    def __init__(self, words: int, huge: bool):
        nbytes = words * 8 + (_HUGE if huge else 0)
        self.mm = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
                            | _MAP_NORESERVE)
        raw = np.frombuffer(self.mm, dtype=np.uint8)
        base = raw.ctypes.data
        skip = (-base % _HUGE) if huge else 0
        self.mem = np.frombuffer(self.mm, dtype=np.int64, count=words, offset=skip)
        self.raw = base
        self.base = base + skip

    def advise_huge(self, spans) -> None:
        """Transparent huge pages for each region from its first 2 MiB boundary on."""
        adv = getattr(mmap, "MADV_HUGEPAGE", None)
        if adv is None:
            return
        for off, end in spans:
            lo = (self.base + off * 8 + _HUGE - 1) // _HUGE * _HUGE
            hi = (self.base + end * 8) // _HUGE * _HUGE
            if hi > lo:
                try:
                    self.mm.madvise(adv, lo - self.raw, hi - lo)
                except OSError:
                    return

    def populate(self, spans) -> None:
        for off, n in spans:
            _populate(self.base + int(off) * 8, int(n) * 8)


def _reservation(scap: int) -> int:
    return min(max(RESERVE_MIN, 8 * scap), _MAX_SLOTS)


def _new_arena(scap: int, rcap: int):
    """(arena, mem) laid out for rcap slots (falling back to smaller reservations down to
    scap if the address space is refused) with an empty book of capacity scap."""
    while True:
        huge = rcap >= 1 << 16
        align = _ALIGN_WORDS if huge else 8
        n = int(_MEMSIZE(rcap, align))
        try:
            arena = _Arena(n, huge)
            break
        except OSError:
            if rcap <= scap:
                raise MemoryError(f"cannot map a book of capacity {scap}") from None
            rcap = max(scap, rcap // 4)
    mem = arena.mem
    _INIT(mem, scap, rcap, align)
    if huge:
        ends = sorted(int(mem[h]) for h in (K.H_OSLOT, K.H_OLVL, K.H_OBLK, K.H_ODB, K.H_ODA,
                                            K.H_OHASH, K.H_OHASH2, K.H_OPB, K.H_OPB2,
                                            K.H_OPA, K.H_OPA2, K.H_OACC, K.H_OACC2,
                                            K.H_OFILL, K.H_OSTP)) + [n]
        arena.advise_huge(list(zip(ends[:-1], ends[1:])))
    arena.populate(_SPANS(mem, scap).tolist())
    return arena, mem


def _unregister(box) -> None:
    if box and box[0] is not None:
        K.GROWERS.pop(box[0], None)


class _Words:
    """Python ints out of a (mostly unused, reserved) book array, read on demand."""

    __slots__ = ("a",)

    def __init__(self, a):
        self.a = a

    def __getitem__(self, i):
        return int(self.a[i])


class NumbaBook:
    """Limit order book of one instrument; state in one int64 array, kernels in numba."""

    def __init__(self, capacity: int = 1024):
        compile_kernels()
        cap = max(int(capacity), 1)
        if cap > _MAX_SLOTS:
            raise ValueError(f"capacity {cap} too large (at most {_MAX_SLOTS})")
        self._job = None
        self._arena, self._mem = _new_arena(cap, _reservation(cap))
        self._bind()
        self._ahead()
        weakref.finalize(self, _unregister, self._key_box)

    # ------------------------------------------------------------------ memory
    def _bind(self) -> None:
        mem = self._mem
        a = mem.ctypes.data  # the kernels' handle on the book; mem stays referenced
        if a != getattr(self, "_a", None):
            self._a = a
            # add/replace/cancel bound straight to the kernels' entry points: no Python
            # frame per call (add and replace grow a full book through _grown)
            self.add = functools.partial(_ADD, a)
            self.cancel = functools.partial(_CANCEL, a)
            self.replace = functools.partial(_REPLACE, a)
            box = getattr(self, "_key_box", None)
            if box is None:
                box = self._key_box = [None]
            if box[0] is not None:
                K.GROWERS.pop(box[0], None)
            box[0] = a
            K.GROWERS[a] = weakref.WeakMethod(self._grown)
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

    def _grown(self) -> int:
        """Called by the add/replace kernels when the book is full: grow, give back the
        (possibly new) address. A book moved to a new mapping keeps the old one alive
        until the next growth (the kernel that called is still running on it)."""
        old = self._arena
        self._grow()
        if self._arena is not old:
            self._old_arena = old
        else:
            self._old_arena = None
        return self._a

    @property
    def capacity(self) -> int:
        return int(self._mem[K.H_SCAP])

    def _ahead(self) -> None:
        """Lay out the hash tables of the next capacity (twice this one) in their spare
        areas, then fault in the pages that capacity will use: in the background for a
        large book. Only the first part must be over before grow(): faulting pages in is
        a hint that may run on beside the book (it never changes their contents)."""
        mem = self._mem
        cap = int(mem[K.H_SCAP])
        nxt = min(2 * cap, int(mem[K.H_RCAP]))
        if nxt <= cap:
            self._job = None
            return
        arena = self._arena
        plock = threading.Lock()
        pid = os.getpid()
        state = [False]  # True once grow() no longer wants the spare tables prepared

        def job():
            with plock:
                if not state[0]:
                    _PREPARE(mem, nxt)
            if _PREFAULT:
                arena.populate(_SPANS(mem, nxt).tolist())

        def claim():
            mem[K.H_STOP] = 1  # a prepare() under way gives up within 4096 entries
            if os.getpid() != pid:  # a forked child: the worker is the parent's
                state[0] = True     # (a half laid out table is redone by grow())
                return
            with plock:
                state[0] = True
        if nxt <= _SYNC_AHEAD:  # a small book: cheaper done now than handed over
            job()
            self._job = None
        else:
            _submit(job)
            self._job = claim

    def _resize(self, capacity: int) -> None:
        if capacity > _MAX_SLOTS:
            raise ValueError(f"capacity {capacity} too large (at most {_MAX_SLOTS})")
        if self._job is not None:
            self._job()  # the spare tables are laid out or will not be touched
            self._job = None
        if capacity <= int(self._mem[K.H_RCAP]):
            _GROW(self._mem, capacity)
        else:  # past the reservation: a new mapping, the book copied into it
            arena, mem = _new_arena(capacity, _reservation(capacity))
            _COPY(self._mem, mem)
            self._arena, self._mem = arena, mem
        self._bind()
        self._ahead()

    def reserve(self, capacity: int) -> None:
        """Grow now (outside the hot path) to hold at least capacity resting orders."""
        if capacity > self.capacity:
            self._resize(int(capacity))
            self._arena.populate(_SPANS(self._mem, self.capacity).tolist())

    def _grow(self) -> None:
        self._resize(min(2 * int(self._mem[K.H_SCAP]), _MAX_SLOTS))

    # ------------------------------------------------------------------ operations
    # add, cancel and replace are bound per book in _bind() (functools.partial over the
    # entry points); these are the same operations, for calls through the class
    def add(self, order_id, account, side, ord_type, tif, price, qty, ts, stp):
        return _ADD(self._a, order_id, account, side, ord_type, tif, price, qty, ts, stp)

    def cancel(self, order_id):
        return _CANCEL(self._a, order_id)

    def replace(self, order_id, new_price, new_qty, ts, stp):
        return _REPLACE(self._a, order_id, new_price, new_qty, ts, stp)

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

    @property
    def killed_by_stp(self) -> bool:
        """STP killed the incoming order of the last add/replace (a header word the
        kernels set: add/replace keep returning their 5-tuple)."""
        return self._mem[K.H_KSTP] != 0

    def __len__(self):
        return int(self._mem[K.H_NORD])

    # ------------------------------------------------------------------ debugging
    def check_integrity(self) -> None:
        """Verify the internal structure (slow; for tests). Raises AssertionError."""
        m = _Words(self._mem)
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
