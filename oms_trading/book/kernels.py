"""numba kernels of the order book.

The whole state of one book lives in ONE flat C-contiguous int64 array ``mem`` (numba's
dispatch cost grows with every array argument, ~130 ns each here, so the book is packed
into a single one). Regions, their offsets kept in the header:

header   HDR words: counters and region offsets (H_* below)
slots    scap x SK: one resting order each (order id, price, remaining qty, side, account,
         ts, tif, prev/next slot in its level's FIFO, level index). Free slots form a list
         through S_NEXT; never-used slots are handed out by a bump counter.
levels   scap x LK: one price level each (price, total qty, order count, head/tail slot,
         side). Free levels form a list through L_HEAD.
ladders  four regions of scap words: for bids and asks, the sorted keys of the live levels
         and their level indices. Keys ascend with priority so the best level is LAST:
         key = price for bids, key = ~price (= -price-1, order reversing on all int64) for
         asks. A level is found by galloping from the best end then bisecting, so prices
         near the touch cost O(1) and any int64 price works (no fixed window).
hash     hcap x 2 (key, value): open addressing, linear probing, backward-shift deletion,
         order id -> slot; value -1 = empty. hcap is a power of two >= 2 * scap.
fills    scap x FK: fills of the last call (order id, account, price, qty, leaves).
stp      scap x 2: STP cancels of the last call (order id, qty); also mass-cancel output.

A call can fill or cancel at most every resting order once, so scap rows of output always
suffice. Capacity: levels and ladders never hold more entries than there are resting
orders, so everything is sized by the slot capacity ``scap``; an add that finds the book
full returns NEED_GROW before changing anything, and the caller grows (``grow``: a new
array of twice the capacity, used regions copied, hash table rebuilt; one O(n) step,
amortised O(1)) and retries.

Costs: add to an existing level O(log d) (d = levels between the price and the touch),
creating/removing a level adds a shift of d ladder words (a memmove, no order is visited);
cancel O(1) plus that level removal; matching O(fills + levels crossed).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .constants import (
    BUY, SELL, MARKET, LIMIT, TIF_DAY, TIF_GTC, TIF_IOC, TIF_FOK,
    STP_NONE, STP_CANCEL_RESTING, STP_CANCEL_INCOMING, STP_CANCEL_BOTH,
    OK, ERR_QTY, ERR_DUPLICATE_ID, ERR_UNKNOWN_ORDER, ERR_BAD_ARGUMENT,
)

NEED_GROW = -1  # internal status: the book is full, grow and retry

# ---------------------------------------------------------------- header layout
H_NORD = 0      # resting orders
H_SCAP = 1      # slot capacity (= level capacity = ladder capacity = output rows)
H_SFREE = 2     # head of the free-slot list (-1 none)
H_SUSED = 3     # slots ever handed out (bump allocator)
H_LFREE = 4     # head of the free-level list
H_LUSED = 5     # levels ever handed out
H_HCAP = 6      # hash capacity (power of two)
H_HSHIFT = 7    # 64 - log2(hcap)
H_NB = 8        # live bid levels
H_NA = 9        # live ask levels
H_OSLOT = 10
H_OLVL = 11
H_OBK = 12      # bid keys
H_OBL = 13      # bid level indices
H_OAK = 14      # ask keys
H_OAL = 15      # ask level indices
H_OHASH = 16
H_OFILL = 17
H_OSTP = 18
H_TOTAL = 19
HDR = 32

# slot fields
SK = 10
S_OID = 0
S_PRICE = 1
S_QTY = 2
S_SIDE = 3
S_ACCT = 4
S_TS = 5
S_TIF = 6
S_PREV = 7
S_NEXT = 8
S_LVL = 9

# level fields
LK = 6
L_PRICE = 0
L_TOTAL = 1
L_COUNT = 2
L_HEAD = 3
L_TAIL = 4
L_SIDE = 5

FK = 5  # fill row: order id, account, price, qty, leaves

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@njit(cache=True)
def alloc(scap):
    """A new empty book of slot capacity scap (>= 1)."""
    hcap = 8
    while hcap < 2 * scap:
        hcap *= 2
    lg = 0
    while (1 << lg) < hcap:
        lg += 1
    oslot = HDR
    olvl = oslot + scap * SK
    obk = olvl + scap * LK
    obl = obk + scap
    oak = obl + scap
    oal = oak + scap
    ohash = oal + scap
    ofill = ohash + 2 * hcap
    ostp = ofill + scap * FK
    total = ostp + 2 * scap
    mem = np.empty(total, dtype=np.int64)
    mem[:HDR] = 0
    mem[H_SCAP] = scap
    mem[H_SFREE] = -1
    mem[H_LFREE] = -1
    mem[H_HCAP] = hcap
    mem[H_HSHIFT] = 64 - lg
    mem[H_OSLOT] = oslot
    mem[H_OLVL] = olvl
    mem[H_OBK] = obk
    mem[H_OBL] = obl
    mem[H_OAK] = oak
    mem[H_OAL] = oal
    mem[H_OHASH] = ohash
    mem[H_OFILL] = ofill
    mem[H_OSTP] = ostp
    mem[H_TOTAL] = total
    for i in range(hcap):
        mem[ohash + 2 * i + 1] = -1
    return mem


# ---------------------------------------------------------------- hash table
@njit(cache=True, inline="always")
def _home(mem, oid):
    h = (np.uint64(oid) * _GOLDEN) >> np.uint64(mem[H_HSHIFT])
    return np.int64(h)


@njit(cache=True)
def h_find(mem, oid):
    off = mem[H_OHASH]
    mask = mem[H_HCAP] - 1
    i = _home(mem, oid)
    while True:
        v = mem[off + 2 * i + 1]
        if v < 0:
            return -1
        if mem[off + 2 * i] == oid:
            return v
        i = (i + 1) & mask


@njit(cache=True)
def h_insert(mem, oid, slot):
    """Insert a key known to be absent."""
    off = mem[H_OHASH]
    mask = mem[H_HCAP] - 1
    i = _home(mem, oid)
    while mem[off + 2 * i + 1] >= 0:
        i = (i + 1) & mask
    mem[off + 2 * i] = oid
    mem[off + 2 * i + 1] = slot


@njit(cache=True)
def h_delete(mem, oid):
    """Delete a key known to be present (backward-shift deletion, no tombstones)."""
    off = mem[H_OHASH]
    mask = mem[H_HCAP] - 1
    i = _home(mem, oid)
    while mem[off + 2 * i] != oid or mem[off + 2 * i + 1] < 0:
        i = (i + 1) & mask
    j = i
    while True:
        j = (j + 1) & mask
        if mem[off + 2 * j + 1] < 0:
            break
        k = _home(mem, mem[off + 2 * j])
        # entry j may move to the hole i unless its home k lies cyclically in (i, j]
        if i <= j:
            stays = i < k and k <= j
        else:
            stays = i < k or k <= j
        if stays:
            continue
        mem[off + 2 * i] = mem[off + 2 * j]
        mem[off + 2 * i + 1] = mem[off + 2 * j + 1]
        i = j
    mem[off + 2 * i + 1] = -1


# ---------------------------------------------------------------- ladders
@njit(cache=True, inline="always")
def _lad(mem, side):
    """(key offset, level-index offset, header index of the count) of a side."""
    if side == BUY:
        return mem[H_OBK], mem[H_OBL], H_NB
    return mem[H_OAK], mem[H_OAL], H_NA


@njit(cache=True, inline="always")
def _key(side, price):
    if side == BUY:
        return price
    return ~price


@njit(cache=True)
def lower_bound(mem, koff, n, key):
    """Smallest i in [0, n] with keys[i] >= key; gallops from the best (last) end."""
    if n == 0 or mem[koff + n - 1] < key:
        return n
    hi = n - 1
    step = 1
    lo = -1
    while True:
        c = hi - step
        if c < 0:
            lo = -1
            break
        if mem[koff + c] < key:
            lo = c
            break
        hi = c
        step <<= 1
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        if mem[koff + mid] >= key:
            hi = mid
        else:
            lo = mid
    return hi


@njit(cache=True)
def level_for_append(mem, side, price):
    """Level of (side, price), created (and put in the ladder) if absent."""
    koff, loff, hn = _lad(mem, side)
    n = mem[hn]
    key = _key(side, price)
    pos = lower_bound(mem, koff, n, key)
    if pos < n and mem[koff + pos] == key:
        return mem[loff + pos]
    # new level
    lev = mem[H_LFREE]
    olvl = mem[H_OLVL]
    if lev >= 0:
        mem[H_LFREE] = mem[olvl + lev * LK + L_HEAD]
    else:
        lev = mem[H_LUSED]
        mem[H_LUSED] = lev + 1
    b = olvl + lev * LK
    mem[b + L_PRICE] = price
    mem[b + L_TOTAL] = 0
    mem[b + L_COUNT] = 0
    mem[b + L_HEAD] = -1
    mem[b + L_TAIL] = -1
    mem[b + L_SIDE] = side
    j = n
    while j > pos:
        mem[koff + j] = mem[koff + j - 1]
        mem[loff + j] = mem[loff + j - 1]
        j -= 1
    mem[koff + pos] = key
    mem[loff + pos] = lev
    mem[hn] = n + 1
    return lev


@njit(cache=True)
def level_remove(mem, lev):
    """Remove an (empty) level from its ladder and free it."""
    b = mem[H_OLVL] + lev * LK
    side = mem[b + L_SIDE]
    koff, loff, hn = _lad(mem, side)
    n = mem[hn]
    if n > 0 and mem[loff + n - 1] == lev:
        pos = n - 1  # the best level: the common case when matching
    else:
        pos = lower_bound(mem, koff, n, _key(side, mem[b + L_PRICE]))
    for j in range(pos, n - 1):
        mem[koff + j] = mem[koff + j + 1]
        mem[loff + j] = mem[loff + j + 1]
    mem[hn] = n - 1
    mem[b + L_HEAD] = mem[H_LFREE]
    mem[H_LFREE] = lev


# ---------------------------------------------------------------- slots
@njit(cache=True)
def slot_rest(mem, slot, oid, side, price, qty, acct, ts, tif):
    """Fill slot fields and append it at the tail of its level (slot already allocated)."""
    lev = level_for_append(mem, side, price)
    s = mem[H_OSLOT] + slot * SK
    b = mem[H_OLVL] + lev * LK
    mem[s + S_OID] = oid
    mem[s + S_PRICE] = price
    mem[s + S_QTY] = qty
    mem[s + S_SIDE] = side
    mem[s + S_ACCT] = acct
    mem[s + S_TS] = ts
    mem[s + S_TIF] = tif
    mem[s + S_LVL] = lev
    tail = mem[b + L_TAIL]
    mem[s + S_PREV] = tail
    mem[s + S_NEXT] = -1
    if tail >= 0:
        mem[mem[H_OSLOT] + tail * SK + S_NEXT] = slot
    else:
        mem[b + L_HEAD] = slot
    mem[b + L_TAIL] = slot
    mem[b + L_TOTAL] += qty
    mem[b + L_COUNT] += 1


@njit(cache=True)
def slot_alloc(mem):
    slot = mem[H_SFREE]
    if slot >= 0:
        mem[H_SFREE] = mem[mem[H_OSLOT] + slot * SK + S_NEXT]
    else:
        slot = mem[H_SUSED]
        mem[H_SUSED] = slot + 1
    mem[H_NORD] += 1
    return slot


@njit(cache=True)
def slot_free(mem, slot):
    mem[mem[H_OSLOT] + slot * SK + S_NEXT] = mem[H_SFREE]
    mem[H_SFREE] = slot
    mem[H_NORD] -= 1


@njit(cache=True)
def slot_unlink(mem, slot):
    """Take a slot out of its level FIFO; subtract its qty; remove the level if empty.
    The slot stays allocated and in the hash table."""
    oslot = mem[H_OSLOT]
    s = oslot + slot * SK
    lev = mem[s + S_LVL]
    b = mem[H_OLVL] + lev * LK
    p = mem[s + S_PREV]
    nx = mem[s + S_NEXT]
    if p >= 0:
        mem[oslot + p * SK + S_NEXT] = nx
    else:
        mem[b + L_HEAD] = nx
    if nx >= 0:
        mem[oslot + nx * SK + S_PREV] = p
    else:
        mem[b + L_TAIL] = p
    mem[b + L_TOTAL] -= mem[s + S_QTY]
    c = mem[b + L_COUNT] - 1
    mem[b + L_COUNT] = c
    if c == 0:
        level_remove(mem, lev)


@njit(cache=True)
def slot_delete(mem, slot):
    """Remove a resting order entirely."""
    slot_unlink(mem, slot)
    h_delete(mem, mem[mem[H_OSLOT] + slot * SK + S_OID])
    slot_free(mem, slot)


# ---------------------------------------------------------------- matching
@njit(cache=True)
def fok_ok(mem, side, acct, market, price, qty, stp):
    """Would an incoming order of qty fill completely? Walks exactly like match()."""
    if side == BUY:
        koff, loff, hn = _lad(mem, SELL)
    else:
        koff, loff, hn = _lad(mem, BUY)
    n = mem[hn]
    olvl = mem[H_OLVL]
    oslot = mem[H_OSLOT]
    avail = 0
    pos = n - 1
    while pos >= 0:
        b = olvl + mem[loff + pos] * LK
        lp = mem[b + L_PRICE]
        if not market:
            if side == BUY:
                if lp > price:
                    return False
            elif lp < price:
                return False
        if stp == STP_NONE:
            avail += mem[b + L_TOTAL]
            if avail >= qty:
                return True
        else:
            slot = mem[b + L_HEAD]
            while slot >= 0:
                s = oslot + slot * SK
                if mem[s + S_ACCT] == acct:
                    if stp != STP_CANCEL_RESTING:
                        return False
                else:
                    avail += mem[s + S_QTY]
                    if avail >= qty:
                        return True
                slot = mem[s + S_NEXT]
        pos -= 1
    return False


@njit(cache=True)
def match(mem, side, acct, market, price, qty, stp):
    """Match an incoming order against the opposite side.
    Returns (remaining, n_fills, n_stp, stopped) -- stopped: STP killed the incoming."""
    if side == BUY:
        koff, loff, hn = _lad(mem, SELL)
    else:
        koff, loff, hn = _lad(mem, BUY)
    olvl = mem[H_OLVL]
    oslot = mem[H_OSLOT]
    ofill = mem[H_OFILL]
    ostp = mem[H_OSTP]
    rem = qty
    nf = 0
    ns = 0
    stopped = False
    while rem > 0:
        n = mem[hn]
        if n == 0:
            break
        lev = mem[loff + n - 1]
        b = olvl + lev * LK
        lp = mem[b + L_PRICE]
        if not market:
            if side == BUY:
                if lp > price:
                    break
            elif lp < price:
                break
        slot = mem[b + L_HEAD]
        while slot >= 0 and rem > 0:
            s = oslot + slot * SK
            nxt = mem[s + S_NEXT]
            rq = mem[s + S_QTY]
            if stp != STP_NONE and mem[s + S_ACCT] == acct:
                if stp != STP_CANCEL_INCOMING:
                    f = ostp + 2 * ns
                    mem[f] = mem[s + S_OID]
                    mem[f + 1] = rq
                    ns += 1
                    # unlink from the head (slot is the head of this level)
                    mem[b + L_HEAD] = nxt
                    if nxt >= 0:
                        mem[oslot + nxt * SK + S_PREV] = -1
                    else:
                        mem[b + L_TAIL] = -1
                    mem[b + L_TOTAL] -= rq
                    mem[b + L_COUNT] -= 1
                    h_delete(mem, mem[s + S_OID])
                    slot_free(mem, slot)
                if stp != STP_CANCEL_RESTING:
                    stopped = True
                    break
                slot = nxt
                continue
            t = rem if rem < rq else rq
            rem -= t
            rq -= t
            mem[s + S_QTY] = rq
            mem[b + L_TOTAL] -= t
            f = ofill + FK * nf
            mem[f] = mem[s + S_OID]
            mem[f + 1] = mem[s + S_ACCT]
            mem[f + 2] = lp
            mem[f + 3] = t
            mem[f + 4] = rq
            nf += 1
            if rq == 0:
                mem[b + L_HEAD] = nxt
                if nxt >= 0:
                    mem[oslot + nxt * SK + S_PREV] = -1
                else:
                    mem[b + L_TAIL] = -1
                mem[b + L_COUNT] -= 1
                h_delete(mem, mem[s + S_OID])
                slot_free(mem, slot)
            slot = nxt
        if mem[b + L_COUNT] == 0:
            # the best level is the last ladder entry
            mem[hn] = n - 1
            mem[b + L_HEAD] = mem[H_LFREE]
            mem[H_LFREE] = lev
        if stopped:
            break
    return rem, nf, ns, stopped


# ---------------------------------------------------------------- operations
@njit(cache=True)
def add(mem, oid, acct, side, ord_type, tif, price, qty, ts, stp):
    if (side != BUY and side != SELL) or (ord_type != MARKET and ord_type != LIMIT) \
            or (tif != TIF_DAY and tif != TIF_GTC and tif != TIF_IOC and tif != TIF_FOK) \
            or stp < 0 or stp > 3:
        return (ERR_BAD_ARGUMENT, 0, 0, 0, 0)
    if qty <= 0:
        return (ERR_QTY, 0, 0, 0, 0)
    if h_find(mem, oid) >= 0:
        return (ERR_DUPLICATE_ID, 0, 0, 0, 0)
    if mem[H_NORD] >= mem[H_SCAP]:
        return (NEED_GROW, 0, 0, 0, 0)
    market = ord_type == MARKET
    if tif == TIF_FOK:
        if not fok_ok(mem, side, acct, market, price, qty, stp):
            return (OK, 0, 0, 0, qty)
    rem, nf, ns, stopped = match(mem, side, acct, market, price, qty, stp)
    if stopped:
        return (OK, nf, ns, 0, rem)
    if rem > 0:
        if market or tif == TIF_IOC or tif == TIF_FOK:
            return (OK, nf, ns, 0, rem)
        slot = slot_alloc(mem)
        h_insert(mem, oid, slot)
        slot_rest(mem, slot, oid, side, price, rem, acct, ts, tif)
        return (OK, nf, ns, rem, 0)
    return (OK, nf, ns, 0, 0)


@njit(cache=True)
def cancel(mem, oid):
    slot = h_find(mem, oid)
    if slot < 0:
        return (ERR_UNKNOWN_ORDER, 0)
    q = mem[mem[H_OSLOT] + slot * SK + S_QTY]
    slot_delete(mem, slot)
    return (OK, q)


@njit(cache=True)
def replace(mem, oid, new_price, new_qty, ts, stp):
    if stp < 0 or stp > 3:
        return (ERR_BAD_ARGUMENT, 0, 0, 0, 0)
    if new_qty <= 0:
        return (ERR_QTY, 0, 0, 0, 0)
    slot = h_find(mem, oid)
    if slot < 0:
        return (ERR_UNKNOWN_ORDER, 0, 0, 0, 0)
    s = mem[H_OSLOT] + slot * SK
    rq = mem[s + S_QTY]
    if new_price == mem[s + S_PRICE] and new_qty <= rq:
        b = mem[H_OLVL] + mem[s + S_LVL] * LK
        mem[b + L_TOTAL] -= rq - new_qty
        mem[s + S_QTY] = new_qty
        return (OK, 0, 0, new_qty, 0)
    side = mem[s + S_SIDE]
    acct = mem[s + S_ACCT]
    tif = mem[s + S_TIF]
    # leave the level but keep the slot and the id while matching (the order cannot
    # meet itself: it is on the other side)
    slot_unlink(mem, slot)
    rem, nf, ns, stopped = match(mem, side, acct, False, new_price, new_qty, stp)
    if stopped or rem == 0:
        h_delete(mem, oid)
        slot_free(mem, slot)
        if stopped:
            return (OK, nf, ns, 0, rem)
        return (OK, nf, ns, 0, 0)
    slot_rest(mem, slot, oid, side, new_price, rem, acct, ts, tif)
    return (OK, nf, ns, rem, 0)


@njit(cache=True)
def mass_cancel(mem, account, side):
    """Cancel every resting order of account (-1 any) on side (0 any). Writes
    (order id, qty) rows into the stp region, bids before asks, each side best price
    first, FIFO within a level. Returns the count."""
    ostp = mem[H_OSTP]
    oslot = mem[H_OSLOT]
    olvl = mem[H_OLVL]
    cnt = 0
    for sd in (BUY, SELL):
        if side != 0 and side != sd:
            continue
        koff, loff, hn = _lad(mem, sd)
        n = mem[hn]
        pos = n - 1
        while pos >= 0:
            lev = mem[loff + pos]
            b = olvl + lev * LK
            slot = mem[b + L_HEAD]
            while slot >= 0:
                s = oslot + slot * SK
                nxt = mem[s + S_NEXT]
                if account == -1 or mem[s + S_ACCT] == account:
                    mem[ostp + 2 * cnt] = mem[s + S_OID]
                    mem[ostp + 2 * cnt + 1] = mem[s + S_QTY]
                    cnt += 1
                    p = mem[s + S_PREV]
                    if p >= 0:
                        mem[oslot + p * SK + S_NEXT] = nxt
                    else:
                        mem[b + L_HEAD] = nxt
                    if nxt >= 0:
                        mem[oslot + nxt * SK + S_PREV] = p
                    else:
                        mem[b + L_TAIL] = p
                    mem[b + L_TOTAL] -= mem[s + S_QTY]
                    mem[b + L_COUNT] -= 1
                    h_delete(mem, mem[s + S_OID])
                    slot_free(mem, slot)
                slot = nxt
            pos -= 1
        # compact the ladder: drop emptied levels, keep the order
        w = 0
        for r in range(n):
            lev = mem[loff + r]
            if mem[olvl + lev * LK + L_COUNT] == 0:
                mem[olvl + lev * LK + L_HEAD] = mem[H_LFREE]
                mem[H_LFREE] = lev
            else:
                mem[koff + w] = mem[koff + r]
                mem[loff + w] = lev
                w += 1
        mem[hn] = w
    return cnt


@njit(cache=True)
def best(mem, side):
    """(found, price, total qty) of the best level of side."""
    koff, loff, hn = _lad(mem, side)
    n = mem[hn]
    if n == 0:
        return (0, 0, 0)
    b = mem[H_OLVL] + mem[loff + n - 1] * LK
    return (1, mem[b + L_PRICE], mem[b + L_TOTAL])


@njit(cache=True)
def depth(mem, side, n):
    """Writes the top n levels of side as (price, total, count) into the fill region
    (row stride FK); returns how many."""
    koff, loff, hn = _lad(mem, side)
    nl = mem[hn]
    ofill = mem[H_OFILL]
    olvl = mem[H_OLVL]
    k = 0
    while k < n and k < nl:
        b = olvl + mem[loff + nl - 1 - k] * LK
        mem[ofill + FK * k] = mem[b + L_PRICE]
        mem[ofill + FK * k + 1] = mem[b + L_TOTAL]
        mem[ofill + FK * k + 2] = mem[b + L_COUNT]
        k += 1
    return k


@njit(cache=True)
def get(mem, oid):
    """(found, side, price, remaining qty, account, ts)."""
    slot = h_find(mem, oid)
    if slot < 0:
        return (0, 0, 0, 0, 0, 0)
    s = mem[H_OSLOT] + slot * SK
    return (1, mem[s + S_SIDE], mem[s + S_PRICE], mem[s + S_QTY], mem[s + S_ACCT],
            mem[s + S_TS])


@njit(cache=True)
def orders(mem):
    """Every resting order as rows (order id, side, price, qty, account, ts): bids then
    asks, best price first, FIFO within a level. Allocates (not a hot-path kernel)."""
    out = np.empty((mem[H_NORD], 6), dtype=np.int64)
    oslot = mem[H_OSLOT]
    olvl = mem[H_OLVL]
    k = 0
    for sd in (BUY, SELL):
        koff, loff, hn = _lad(mem, sd)
        n = mem[hn]
        for r in range(n - 1, -1, -1):
            slot = mem[olvl + mem[loff + r] * LK + L_HEAD]
            while slot >= 0:
                s = oslot + slot * SK
                out[k, 0] = mem[s + S_OID]
                out[k, 1] = sd
                out[k, 2] = mem[s + S_PRICE]
                out[k, 3] = mem[s + S_QTY]
                out[k, 4] = mem[s + S_ACCT]
                out[k, 5] = mem[s + S_TS]
                k += 1
                slot = mem[s + S_NEXT]
    return out


@njit(cache=True)
def grow(mem, new_scap):
    """A copy of the book with slot capacity new_scap (>= the used counts)."""
    new = alloc(new_scap)
    for h in (H_NORD, H_SFREE, H_SUSED, H_LFREE, H_LUSED, H_NB, H_NA):
        new[h] = mem[h]
    used = mem[H_SUSED] * SK
    new[new[H_OSLOT]:new[H_OSLOT] + used] = mem[mem[H_OSLOT]:mem[H_OSLOT] + used]
    used = mem[H_LUSED] * LK
    new[new[H_OLVL]:new[H_OLVL] + used] = mem[mem[H_OLVL]:mem[H_OLVL] + used]
    nb = mem[H_NB]
    na = mem[H_NA]
    new[new[H_OBK]:new[H_OBK] + nb] = mem[mem[H_OBK]:mem[H_OBK] + nb]
    new[new[H_OBL]:new[H_OBL] + nb] = mem[mem[H_OBL]:mem[H_OBL] + nb]
    new[new[H_OAK]:new[H_OAK] + na] = mem[mem[H_OAK]:mem[H_OAK] + na]
    new[new[H_OAL]:new[H_OAL] + na] = mem[mem[H_OAL]:mem[H_OAL] + na]
    off = mem[H_OHASH]
    for i in range(mem[H_HCAP]):
        v = mem[off + 2 * i + 1]
        if v >= 0:
            h_insert(new, mem[off + 2 * i], v)
    return new
