"""numba kernels of the order book.

The whole state of one book lives in ONE flat C-contiguous int64 array ``mem``, a view
over an anonymous mapping made in Python (book.py): each region is sized for the
reservation and starts on a cache line (slot and level records are exactly one cache line
each), 256 KiB before a 2 MiB boundary from which on it takes transparent huge pages.
Regions, their offsets kept in the header:

header   HDR words: counters and region offsets (H_* below)
slots    scap x SK (8 words = one 64-byte line): one resting order each: order id,
         timestamp, remaining qty, account, FIFO link (prev slot in the low 32 bits, next
         slot in the high 32 bits), account-list link (same packing), meta (level << 8 |
         tif << 2 | side), arrival sequence number. (The price is its level's.) Free slots
         form a list through the link word; never-used slots are handed out by a bump
         counter. Everything an add, a cancel or a fill reads or writes of a slot (and of
         its FIFO / account neighbours) is in one line.
levels   scap x LK (8 words = one line): one price level each (price, total qty, order
         count, head/tail slot, side, ladder block). Free levels form a list through
         L_HEAD.
blocks   nblk x BW: the ladder of each side is a sorted sequence of blocks of at most BS
         (key, level) pairs; word 0 of a block is its entry count (the free-list link when
         the block is free). Keys ascend with priority so the best level is the LAST entry
         of the LAST block: key = price for bids, key = ~price (= -price-1, reversing the
         order on all int64) for asks.
dirs     2 x nblk: per side, the block ids in key order (best block last).
hashes   four open-addressing tables, each with a spare area of the same size for growth
         (key, value; value -1 = empty; linear probing,
         backward-shift deletion, no tombstones), each preceded by 2 words (capacity,
         hash shift): order id -> slot (hcap, a power of two >= 2 * scap), bid price ->
         level, ask price -> level, account -> newest slot of its list (pcap = hcap / 8
         each; add/replace return NEED_GROW before a change that could fill one of them
         past one half, so the book grows also when levels or accounts are many).
fills    scap x FK: fills of the last call (order id, account, price, qty, leaves).
stp      scap x 2: STP cancels of the last call (order id, qty); also mass-cancel output.

Costs (d = levels of a side, n = resting orders; none of them scans a level or the book):
  * an order id or a price is found by one hash probe (expected O(1));
  * a new level: the price hash misses, the block is found by galloping over the block
    directory from the best end (O(1) near the touch, O(log(d/BS)) deep), the entry is
    inserted by shifting at most BS words; a full block splits in two (adds one directory
    entry: a shift of at most d/(BS/4) words, once per >= BS/2 new levels);
  * a level that empties leaves its block by a shift of at most BS words; a block whose
    count plus a neighbour's drops below BS/2 is merged into it, so every adjacent pair of
    blocks holds >= BS/2 entries and there are at most 4*d/BS + 1 blocks per side;
  * the best level is the last entry of the last block: O(1), also after it empties;
  * cancel O(1) + the level removal above; matching O(fills + levels crossed);
  * mass cancel of one account: O(k log k) for its k orders (per-account linked lists,
    sorted into the output order), never the rest of the book.

A call can fill or cancel at most every resting order once, so scap rows of output always
suffice; levels never outnumber resting orders. An add that finds the book full returns
NEED_GROW before changing anything; the caller (the Python facade, also for the batch
kernel, which stops at that row) grows the book and retries. The array is a view over a
mapping reserved for H_RCAP slots (book.py): every region is laid out for the reservation,
so growth within it (``grow``) copies nothing: it raises the capacity and rebuilds only
the hash tables whose capacity changes, each from its area into its spare area (laid out
ahead by ``prepare``, run by a background thread), in table order (with top-bits hashing
that is a sequential pass). Past the reservation the book is copied into a new mapping
(``init`` then ``copy_into``).

Per-call entry points (``a_add``, ``a_cancel``, ``a_replace``, ...) take the array's
address as a plain int64 instead of the array: numba unboxes an array argument much more
slowly than an int (the facade keeps the array alive and passes its address).

The batch kernel (``run_batch``, at the end of this file) runs a whole stream of rows; on a
large book it prefetches, while running row i, the cache lines that rows i+3..i+12 will
need (hash entries, then slots and levels, then FIFO / account neighbours), so the
dependent cache misses of consecutive rows overlap instead of adding up.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, objmode, types, carray
from numba.core import cgutils
from numba.extending import intrinsic

from ..nbptr import ptr as _ptr

from .constants import (
    BUY, SELL, MARKET, LIMIT, TIF_DAY, TIF_GTC, TIF_IOC, TIF_FOK,
    STP_NONE, STP_CANCEL_RESTING, STP_CANCEL_INCOMING, STP_CANCEL_BOTH,
    OK, ERR_QTY, ERR_DUPLICATE_ID, ERR_UNKNOWN_ORDER, ERR_BAD_ARGUMENT,
    OP_ADD, OP_CANCEL, OP_REPLACE, OP_MASS_CANCEL,
)

NEED_GROW = -1  # internal status: the book is full, grow and retry

# ---------------------------------------------------------------- header layout
H_NORD = 0      # resting orders
H_SCAP = 1      # slot capacity (= level capacity = output rows)
H_SFREE = 2     # head of the free-slot list (-1 none)
H_SUSED = 3     # slots ever handed out (bump allocator)
H_LFREE = 4     # head of the free-level list
H_LUSED = 5     # levels ever handed out
H_HCAP = 6      # order-id table capacity (power of two >= 2 * scap)
H_HSHIFT = 7    # 64 - log2(hcap)
H_NDB = 8       # bid blocks in the bid directory
H_NDA = 9       # ask blocks
H_OSLOT = 10
H_OLVL = 11
H_OBLK = 12     # block pool
H_ODB = 13      # bid block directory
H_ODA = 14      # ask block directory
H_OHASH = 15    # order id -> slot
H_OFILL = 16
H_OSTP = 17
H_TOTAL = 18
H_OPB = 19      # bid price -> level
H_OPA = 20      # ask price -> level
H_OACC = 21     # account -> newest slot
H_NBLK = 22     # block capacity
H_BFREE = 23    # free-block list head
H_BUSED = 24    # blocks ever handed out
H_SEQ = 25      # arrival sequence counter (FIFO order across levels, for mass cancel)
H_PCAP = 26     # capacity of each price table and of the account table (hcap / 8)
H_NLEV = 27     # live levels (both sides)
H_NACC = 28     # accounts with resting orders
H_RCAP = 29     # reserved slot capacity: every region has room for it (growth in place)
H_OHASH2 = 30   # spare area of each hash table (growth rebuilds into it)
H_OPB2 = 31
H_OPA2 = 32
H_OACC2 = 33
H_STOP = 34     # set by grow(): a prepare() still running in the background gives up
H_KSTP = 35     # 1: self-trade prevention killed the incoming order of the last add/replace
HDR = 40

# slot fields (one 64-byte line)
SK = 8
S_OID = 0
S_TS = 1
S_QTY = 2
S_ACCT = 3
S_LINK = 4      # FIFO: prev (low 32 bits, sign extended) | next (high 32 bits)
S_ALINK = 5     # account list: prev (low) | next (high)
S_META = 6      # level << 8 | tif << 2 | side
S_SEQ = 7
# the free-slot list uses the whole S_LINK word

# level fields (one line)
LK = 8
L_PRICE = 0
L_TOTAL = 1
L_COUNT = 2
L_HEAD = 3
L_TAIL = 4
L_SIDE = 5
L_BLK = 6

# ladder blocks
BS = 64             # entries per block
BW = 1 + 2 * BS     # words per block: count, keys[BS], levels[BS]
HALF = BS // 2

# price -> level: one hash probe (True) or the block directory + a binary search in
# one block (False; no table to keep, smaller memory footprint)
PRICE_HASH = True

FK = 5  # fill row: order id, account, price, qty, leaves

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M32 = 0xFFFFFFFF


# ---------------------------------------------------------------- raw address -> array (_ptr: nbptr)


@intrinsic
def prefetch(typingctx, arr, idx):
    """Hint the CPU to fetch the cache line of arr[idx] (for writing); no effect on
    results, never faults (used by the batch kernel to fetch ahead)."""
    sig = types.void(arr, types.int64)

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]],
                                       wraparound=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 1),
                          ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()
    return sig, codegen


@njit(cache=True, inline="always")
def view(addr):
    """The book array whose data starts at addr (its length is in the header)."""
    p = _ptr(addr)
    return carray(p, (p[H_TOTAL],))


# ---------------------------------------------------------------- packed slot words
@njit(cache=True, inline="always")
def _lo(w):
    return (w << 32) >> 32


@njit(cache=True, inline="always")
def _hi(w):
    return w >> 32


@njit(cache=True, inline="always")
def _pack(lo, hi):
    return (hi << 32) | (lo & _M32)


@njit(cache=True, inline="always")
def s_prev(mem, s):
    return _lo(mem[s + S_LINK])


@njit(cache=True, inline="always")
def s_next(mem, s):
    return _hi(mem[s + S_LINK])


@njit(cache=True, inline="always")
def s_set_prev(mem, s, v):
    mem[s + S_LINK] = _pack(v, _hi(mem[s + S_LINK]))


@njit(cache=True, inline="always")
def s_set_next(mem, s, v):
    mem[s + S_LINK] = _pack(_lo(mem[s + S_LINK]), v)


@njit(cache=True, inline="always")
def s_aprev(mem, s):
    return _lo(mem[s + S_ALINK])


@njit(cache=True, inline="always")
def s_anext(mem, s):
    return _hi(mem[s + S_ALINK])


@njit(cache=True, inline="always")
def s_set_aprev(mem, s, v):
    mem[s + S_ALINK] = _pack(v, _hi(mem[s + S_ALINK]))


@njit(cache=True, inline="always")
def s_set_anext(mem, s, v):
    mem[s + S_ALINK] = _pack(_lo(mem[s + S_ALINK]), v)


@njit(cache=True, inline="always")
def s_lvl(mem, s):
    return mem[s + S_META] >> 8


@njit(cache=True, inline="always")
def s_side(mem, s):
    return mem[s + S_META] & 3


@njit(cache=True, inline="always")
def s_tif(mem, s):
    return (mem[s + S_META] >> 2) & 7


@njit(cache=True, inline="always")
def _pf_links(mem, oslot, s):
    """Prefetch the FIFO and account-list neighbours of the slot at s (removing it writes
    all four): on a deep book their cache misses then overlap instead of following one
    another (measured: deep-book cancel -13% cycles at the median)."""
    w = mem[s + S_LINK]
    p = _lo(w)
    nx = _hi(w)
    if p >= 0:
        prefetch(mem, oslot + p * SK)
    if nx >= 0:
        prefetch(mem, oslot + nx * SK)
    w = mem[s + S_ALINK]
    p = _lo(w)
    nx = _hi(w)
    if p >= 0:
        prefetch(mem, oslot + p * SK)
    if nx >= 0:
        prefetch(mem, oslot + nx * SK)


# ---------------------------------------------------------------- layout
@njit(cache=True, inline="always")
def _al(x):
    return (x + 7) & ~7


@njit(cache=True, inline="always")
def hcap_of(scap):
    """Order-id table capacity for slot capacity scap (a power of two >= 2 * scap)."""
    hcap = 8
    while hcap < 2 * scap:
        hcap *= 2
    return hcap


@njit(cache=True, inline="always")
def pcap_of(hcap):
    """Capacity of each price table and of the account table (never shrinks as hcap
    grows)."""
    return hcap if hcap <= 64 else max(64, hcap // 8)


@njit(cache=True, inline="always")
def nblk_of(scap):
    return 4 * scap // BS + 8


PREFIX = 1 << 17  # words (1 MiB) of each region before its first 2 MiB boundary


@njit(cache=True, inline="always")
def _rg(x, align, k):
    """Start of the k-th region after word x. In a large reservation (align = 2 MiB of
    words) it starts PREFIX words before a 2 MiB boundary, less a stagger of k x 65 lines
    (so the regions' starts do not all fall in the same cache sets): the book maps huge
    pages from that boundary on, so a small book stays in small pages and a large one is
    in huge pages past its first 256 KiB of each region."""
    if align <= 8:
        return _al(x)
    return ((x + PREFIX + align - 1) // align) * align - PREFIX + k * 520


@njit(cache=True)
def layout(rcap, align):
    """Word offsets of every region of a book reserved for rcap slots (each region sized
    for rcap; a book of capacity scap <= rcap uses the start of each): (hcap, pcap, nblk,
    oslot, olvl, oblk, odb, oda, ohash, ohash2, opb, opb2, opa, opa2, oacc, oacc2, ofill,
    ostp, total). Every hash table has two areas (x, x2): growth rebuilds the table from
    one into the other."""
    hcap = hcap_of(rcap)
    pcap = pcap_of(hcap)
    nblk = nblk_of(rcap)
    oslot = HDR
    olvl = _rg(oslot + rcap * SK, align, 1)
    oblk = _rg(olvl + rcap * LK, align, 2)
    odb = _rg(oblk + nblk * BW, align, 3)
    oda = _rg(odb + nblk, align, 4)
    # each table: 2 words (capacity, hash shift) then capacity x (key, value)
    ohash = _rg(oda + nblk, align, 5) + 8
    ohash2 = _rg(ohash + 2 * hcap, align, 6) + 8
    opb = _rg(ohash2 + 2 * hcap, align, 7) + 8
    opb2 = _rg(opb + 2 * pcap, align, 8) + 8
    opa = _rg(opb2 + 2 * pcap, align, 9) + 8
    opa2 = _rg(opa + 2 * pcap, align, 10) + 8
    oacc = _rg(opa2 + 2 * pcap, align, 11) + 8
    oacc2 = _rg(oacc + 2 * pcap, align, 12) + 8
    ofill = _rg(oacc2 + 2 * pcap, align, 13)
    ostp = _rg(ofill + rcap * FK, align, 14)
    total = _al(ostp + 2 * rcap)
    return (hcap, pcap, nblk, oslot, olvl, oblk, odb, oda, ohash, ohash2, opb, opb2, opa,
            opa2, oacc, oacc2, ofill, ostp, total)


@njit(cache=True)
def mem_size(rcap, align):
    """Words of a book array reserved for rcap slots."""
    return layout(rcap, align)[18]


@njit(cache=True, inline="always")
def _lg(x):
    lg = 0
    while (1 << lg) < x:
        lg += 1
    return lg


@njit(cache=True)
def table_init(mem, off, cap):
    """An empty hash table of capacity cap (a power of two) at off; the capacity word is
    written last (grow() takes a table whose capacity word is right as prepared). Gives
    up, leaving the capacity word 0, once mem[H_STOP] is set (checked every 4096
    entries); returns whether it finished."""
    mem[off - 2] = 0
    i = 0
    while i < cap:
        if mem[H_STOP] != 0:
            return False
        e = min(cap, i + 4096)
        for j in range(i, e):
            mem[off + 2 * j + 1] = -1
        i = e
    mem[off - 1] = 64 - _lg(cap)
    mem[off - 2] = cap
    return True


_TABLES = ((H_OHASH, H_OHASH2), (H_OPB, H_OPB2), (H_OPA, H_OPA2), (H_OACC, H_OACC2))


@njit(cache=True)
def init(mem, scap, rcap, align):
    """Lay out an empty book of slot capacity scap (1 <= scap <= rcap) in mem (>=
    mem_size(rcap, align) words; its contents are ignored: only the header and the hash
    tables of capacity scap are written)."""
    (hcap, pcap, nblk, oslot, olvl, oblk, odb, oda, ohash, ohash2, opb, opb2, opa, opa2,
     oacc, oacc2, ofill, ostp, total) = layout(rcap, align)
    hcap = hcap_of(scap)
    pcap = pcap_of(hcap)
    mem[:HDR] = 0
    mem[H_SCAP] = scap
    mem[H_RCAP] = rcap
    mem[H_SFREE] = -1
    mem[H_LFREE] = -1
    mem[H_BFREE] = -1
    mem[H_HCAP] = hcap
    mem[H_HSHIFT] = 64 - _lg(hcap)
    mem[H_NBLK] = nblk_of(scap)
    mem[H_OSLOT] = oslot
    mem[H_OLVL] = olvl
    mem[H_OBLK] = oblk
    mem[H_ODB] = odb
    mem[H_ODA] = oda
    mem[H_OHASH] = ohash
    mem[H_OHASH2] = ohash2
    mem[H_OPB] = opb
    mem[H_OPB2] = opb2
    mem[H_OPA] = opa
    mem[H_OPA2] = opa2
    mem[H_OACC] = oacc
    mem[H_OACC2] = oacc2
    mem[H_OFILL] = ofill
    mem[H_OSTP] = ostp
    mem[H_TOTAL] = total
    mem[H_PCAP] = pcap
    table_init(mem, ohash, hcap)
    for off in (opb, opa, oacc):
        table_init(mem, off, pcap)
    for off in (ohash2, opb2, opa2, oacc2):
        mem[off - 2] = 0  # not prepared


@njit(cache=True, nogil=True)
def prepare(mem, scap):
    """Lay out, in the spare area of each hash table, the empty table that grow(mem,
    scap) will rebuild into. Touches nothing the book uses: it may run in another thread
    while the book is in use (never at the same time as grow)."""
    hcap = hcap_of(scap)
    pcap = pcap_of(hcap)
    for t in range(4):
        cur = mem[_TABLES[t][0]]
        alt = mem[_TABLES[t][1]]
        cap = hcap if t == 0 else pcap
        if cap != mem[cur - 2] and cap != mem[alt - 2]:
            if not table_init(mem, alt, cap):
                return


@njit(cache=True)
def grow(mem, scap):
    """Grow the book in place to slot capacity scap (<= the reservation): the regions
    already have room; only hash tables whose capacity changes are rebuilt, each into its
    spare area (prepared ahead by prepare(), else laid out here), in table order (with
    top-bits hashing that is a sequential pass). The caller has stopped any prepare()
    (H_STOP set, then waited for it to return); H_STOP is cleared here."""
    mem[H_STOP] = 0
    hcap = hcap_of(scap)
    pcap = pcap_of(hcap)
    for t in range(4):
        hcur = _TABLES[t][0]
        halt = _TABLES[t][1]
        cur = mem[hcur]
        alt = mem[halt]
        cap = hcap if t == 0 else pcap
        if cap == mem[cur - 2]:
            continue
        if mem[alt - 2] != cap:
            table_init(mem, alt, cap)
        for i in range(mem[cur - 2]):
            v = mem[cur + 2 * i + 1]
            if v >= 0:
                hx_insert(mem, alt, mem[cur + 2 * i], v)
        mem[cur - 2] = 0  # the old area is spare (not prepared)
        mem[hcur] = alt
        mem[halt] = cur
    mem[H_SCAP] = scap
    mem[H_HCAP] = hcap
    mem[H_HSHIFT] = 64 - _lg(hcap)
    mem[H_PCAP] = pcap
    mem[H_NBLK] = nblk_of(scap)


@njit(cache=True)
def spans(mem, scap):
    """(word offset, word count) of what a book of capacity scap will probably touch in
    each region: the ranges to fault in ahead of time. Slots up to scap; levels, ladder
    blocks and output rows as far as twice what is used now (they follow the number of
    price levels and of fills per call, not of orders) and at least a few thousand. The
    hash tables are left out: init/prepare write them whole."""
    nblk = nblk_of(scap)
    nlev = min(scap, max(2 * mem[H_LUSED], 4096))
    nb = min(nblk, max(2 * mem[H_BUSED], 64))
    nout = min(scap, 4096)
    out = np.empty((7, 2), dtype=np.int64)
    k = 0
    for off, n in ((0, HDR + scap * SK), (mem[H_OLVL], nlev * LK),
                   (mem[H_OBLK], nb * BW), (mem[H_ODB], nblk), (mem[H_ODA], nblk),
                   (mem[H_OFILL], nout * FK), (mem[H_OSTP], 2 * nout)):
        out[k, 0] = off
        out[k, 1] = n
        k += 1
    return out


# ---------------------------------------------------------------- hash tables
@njit(cache=True, inline="always")
def _home(mem, off, key):
    h = (np.uint64(key) * _GOLDEN) >> np.uint64(mem[off - 1])
    return np.int64(h)


@njit(cache=True)
def hx_pos(mem, off, key):
    """Entry index of key in the table at off, or -1."""
    mask = mem[off - 2] - 1
    i = _home(mem, off, key)
    while True:
        e = off + 2 * i
        if mem[e + 1] < 0:
            return -1
        if mem[e] == key:
            return i
        i = (i + 1) & mask


@njit(cache=True)
def hx_find(mem, off, key):
    mask = mem[off - 2] - 1
    i = _home(mem, off, key)
    while True:
        e = off + 2 * i
        v = mem[e + 1]
        if v < 0:
            return -1
        if mem[e] == key:
            return v
        i = (i + 1) & mask


@njit(cache=True)
def hx_insert(mem, off, key, val):
    """Insert a key known to be absent."""
    mask = mem[off - 2] - 1
    i = _home(mem, off, key)
    while mem[off + 2 * i + 1] >= 0:
        i = (i + 1) & mask
    mem[off + 2 * i] = key
    mem[off + 2 * i + 1] = val


@njit(cache=True)
def hx_delete_at(mem, off, i):
    """Delete entry i (backward-shift deletion, no tombstones)."""
    mask = mem[off - 2] - 1
    j = i
    while True:
        j = (j + 1) & mask
        if mem[off + 2 * j + 1] < 0:
            break
        k = _home(mem, off, mem[off + 2 * j])
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


@njit(cache=True)
def hx_delete(mem, off, key):
    """Delete a key known to be present."""
    mask = mem[off - 2] - 1
    i = _home(mem, off, key)
    while mem[off + 2 * i] != key or mem[off + 2 * i + 1] < 0:
        i = (i + 1) & mask
    hx_delete_at(mem, off, i)


@njit(cache=True)
def h_find(mem, oid):
    return hx_find(mem, mem[H_OHASH], oid)


@njit(cache=True)
def h_insert(mem, oid, slot):
    hx_insert(mem, mem[H_OHASH], oid, slot)


@njit(cache=True)
def h_delete(mem, oid):
    hx_delete(mem, mem[H_OHASH], oid)


# ---------------------------------------------------------------- ladders
@njit(cache=True, inline="always")
def _key(side, price):
    if side == BUY:
        return price
    return ~price


@njit(cache=True, inline="always")
def _dir(mem, side):
    """(directory offset, header index of the block count, price-hash offset)."""
    if side == BUY:
        return mem[H_ODB], H_NDB, mem[H_OPB]
    return mem[H_ODA], H_NDA, mem[H_OPA]


@njit(cache=True, inline="always")
def _bb(mem, blk):
    return mem[H_OBLK] + blk * BW


@njit(cache=True)
def best_level(mem, side):
    """Level index of the best level of side, -1 if the side is empty."""
    if side == BUY:
        doff = mem[H_ODB]
        nd = mem[H_NDB]
    else:
        doff = mem[H_ODA]
        nd = mem[H_NDA]
    if nd == 0:
        return -1
    bb = mem[H_OBLK] + mem[doff + nd - 1] * BW
    return mem[bb + BS + mem[bb]]  # levels start at bb + 1 + BS; last is n - 1


@njit(cache=True)
def dir_find(mem, doff, nd, key):
    """Index j of the block that covers key: the largest j whose first key <= key (0 if
    key precedes every block). Gallops from the best end. nd >= 1."""
    obl = mem[H_OBLK]
    hi = nd - 1
    if mem[obl + mem[doff + hi] * BW + 1] <= key:
        return hi
    step = 1
    lo = -1
    while True:
        c = hi - step
        if c < 0:
            break
        if mem[obl + mem[doff + c] * BW + 1] <= key:
            lo = c
            break
        hi = c
        step <<= 1
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        if mem[obl + mem[doff + mid] * BW + 1] <= key:
            lo = mid
        else:
            hi = mid
    return lo if lo >= 0 else 0


@njit(cache=True, inline="always")
def _blk_pos(mem, bb, n, key):
    """Smallest i in [0, n] with keys[i] >= key in block bb; checks the end first."""
    if n == 0 or mem[bb + n] < key:
        return n
    lo = -1
    hi = n - 1
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        if mem[bb + 1 + mid] >= key:
            hi = mid
        else:
            lo = mid
    return hi


@njit(cache=True)
def blk_alloc(mem):
    b = mem[H_BFREE]
    if b >= 0:
        mem[H_BFREE] = mem[_bb(mem, b)]
    else:
        b = mem[H_BUSED]
        mem[H_BUSED] = b + 1
    return b


@njit(cache=True)
def blk_free(mem, b):
    mem[_bb(mem, b)] = mem[H_BFREE]
    mem[H_BFREE] = b


@njit(cache=True)
def level_find(mem, side, price):
    """Level of (side, price) or -1."""
    doff, hn, poff = _dir(mem, side)
    if PRICE_HASH:
        return hx_find(mem, poff, price)
    nd = mem[hn]
    if nd == 0:
        return -1
    key = _key(side, price)
    bb = _bb(mem, mem[doff + dir_find(mem, doff, nd, key)])
    n = mem[bb]
    pos = _blk_pos(mem, bb, n, key)
    if pos < n and mem[bb + 1 + pos] == key:
        return mem[bb + 1 + BS + pos]
    return -1


@njit(cache=True)
def level_new(mem, side, price):
    """Create the (absent) level (side, price) and put it in the ladder."""
    doff, hn, poff = _dir(mem, side)
    lev = mem[H_LFREE]
    olvl = mem[H_OLVL]
    if lev >= 0:
        mem[H_LFREE] = mem[olvl + lev * LK + L_HEAD]
    else:
        lev = mem[H_LUSED]
        mem[H_LUSED] = lev + 1
    lb = olvl + lev * LK
    mem[lb + L_PRICE] = price
    mem[lb + L_TOTAL] = 0
    mem[lb + L_COUNT] = 0
    mem[lb + L_HEAD] = -1
    mem[lb + L_TAIL] = -1
    mem[lb + L_SIDE] = side
    mem[H_NLEV] += 1
    if PRICE_HASH:
        hx_insert(mem, poff, price, lev)
    key = _key(side, price)
    nd = mem[hn]
    if nd == 0:
        b = blk_alloc(mem)
        bb = _bb(mem, b)
        mem[bb] = 1
        mem[bb + 1] = key
        mem[bb + 1 + BS] = lev
        mem[doff] = b
        mem[hn] = 1
        mem[lb + L_BLK] = b
        return lev
    j = dir_find(mem, doff, nd, key)
    b = mem[doff + j]
    bb = _bb(mem, b)
    n = mem[bb]
    if n == BS:
        # split: the upper half moves to a new block placed after b
        c = blk_alloc(mem)
        cb = _bb(mem, c)
        for i in range(BS - HALF):
            mem[cb + 1 + i] = mem[bb + 1 + HALF + i]
            lv = mem[bb + 1 + BS + HALF + i]
            mem[cb + 1 + BS + i] = lv
            mem[olvl + lv * LK + L_BLK] = c
        mem[bb] = HALF
        mem[cb] = BS - HALF
        k = nd
        while k > j + 1:
            mem[doff + k] = mem[doff + k - 1]
            k -= 1
        mem[doff + j + 1] = c
        mem[hn] = nd + 1
        if key >= mem[cb + 1]:
            b = c
            bb = cb
            n = BS - HALF
        else:
            n = HALF
    pos = _blk_pos(mem, bb, n, key)
    i = n
    while i > pos:
        mem[bb + 1 + i] = mem[bb + i]
        mem[bb + 1 + BS + i] = mem[bb + BS + i]
        i -= 1
    mem[bb + 1 + pos] = key
    mem[bb + 1 + BS + pos] = lev
    mem[bb] = n + 1
    mem[lb + L_BLK] = b
    return lev


@njit(cache=True)
def _merge_into(mem, dst, src):
    """Append block src's entries to block dst (src follows dst in key order)."""
    olvl = mem[H_OLVL]
    db = _bb(mem, dst)
    sb = _bb(mem, src)
    nd_ = mem[db]
    ns = mem[sb]
    for i in range(ns):
        mem[db + 1 + nd_ + i] = mem[sb + 1 + i]
        lv = mem[sb + 1 + BS + i]
        mem[db + 1 + BS + nd_ + i] = lv
        mem[olvl + lv * LK + L_BLK] = dst
    mem[db] = nd_ + ns


@njit(cache=True)
def _dir_remove(mem, doff, hn, j):
    nd = mem[hn]
    for k in range(j, nd - 1):
        mem[doff + k] = mem[doff + k + 1]
    mem[hn] = nd - 1


@njit(cache=True)
def level_remove(mem, lev):
    """Remove an (empty) level from its ladder and its price hash, and free it."""
    olvl = mem[H_OLVL]
    lb = olvl + lev * LK
    side = mem[lb + L_SIDE]
    price = mem[lb + L_PRICE]
    doff, hn, poff = _dir(mem, side)
    mem[H_NLEV] -= 1
    if PRICE_HASH:
        hx_delete(mem, poff, price)
    key = _key(side, price)
    b = mem[lb + L_BLK]
    bb = _bb(mem, b)
    n = mem[bb]
    nd = mem[hn]
    # directory index of b (found before b changes: its first key still covers key)
    if mem[doff + nd - 1] == b:
        j = nd - 1
    else:
        j = dir_find(mem, doff, nd, key)
    if n == 1:
        _dir_remove(mem, doff, hn, j)
        blk_free(mem, b)
    else:
        if mem[bb + n] == key:
            pos = n - 1
        else:
            pos = _blk_pos(mem, bb, n, key)
        for i in range(pos, n - 1):
            mem[bb + 1 + i] = mem[bb + 2 + i]
            mem[bb + 1 + BS + i] = mem[bb + 2 + BS + i]
        n -= 1
        mem[bb] = n
        # keep every adjacent pair of blocks >= HALF entries
        if j > 0:
            p = mem[doff + j - 1]
            if mem[_bb(mem, p)] + n < HALF:
                _merge_into(mem, p, b)
                _dir_remove(mem, doff, hn, j)
                blk_free(mem, b)
                n = -1
        if n >= 0 and j < nd - 1:
            q = mem[doff + j + 1]
            if mem[_bb(mem, q)] + n < HALF:
                _merge_into(mem, b, q)
                _dir_remove(mem, doff, hn, j + 1)
                blk_free(mem, q)
    mem[lb + L_HEAD] = mem[H_LFREE]
    mem[H_LFREE] = lev


# ---------------------------------------------------------------- accounts
@njit(cache=True)
def acct_link(mem, slot, acct):
    """Put a (new) slot at the head of its account's list."""
    off = mem[H_OACC]
    oslot = mem[H_OSLOT]
    s = oslot + slot * SK
    i = hx_pos(mem, off, acct)
    if i < 0:
        mem[s + S_ALINK] = _pack(-1, -1)
        hx_insert(mem, off, acct, slot)
        mem[H_NACC] += 1
    else:
        head = mem[off + 2 * i + 1]
        mem[s + S_ALINK] = _pack(-1, head)
        s_set_aprev(mem, oslot + head * SK, slot)
        mem[off + 2 * i + 1] = slot


@njit(cache=True)
def acct_unlink(mem, slot):
    oslot = mem[H_OSLOT]
    s = oslot + slot * SK
    w = mem[s + S_ALINK]
    p = _lo(w)
    nx = _hi(w)
    if nx >= 0:
        s_set_aprev(mem, oslot + nx * SK, p)
    if p >= 0:
        s_set_anext(mem, oslot + p * SK, nx)
    else:
        off = mem[H_OACC]
        i = hx_pos(mem, off, mem[s + S_ACCT])
        if nx >= 0:
            mem[off + 2 * i + 1] = nx
        else:
            hx_delete_at(mem, off, i)
            mem[H_NACC] -= 1


# ---------------------------------------------------------------- slots
@njit(cache=True)
def slot_rest(mem, slot, oid, side, price, qty, acct, ts, tif):
    """Fill slot fields and append it at the tail of its level (slot already allocated;
    the account list is not touched)."""
    lev = level_find(mem, side, price)
    if lev < 0:
        lev = level_new(mem, side, price)
    oslot = mem[H_OSLOT]
    s = oslot + slot * SK
    b = mem[H_OLVL] + lev * LK
    mem[s + S_OID] = oid
    mem[s + S_TS] = ts
    mem[s + S_QTY] = qty
    mem[s + S_ACCT] = acct
    mem[s + S_META] = (lev << 8) | (tif << 2) | side
    sq = mem[H_SEQ]
    mem[s + S_SEQ] = sq
    mem[H_SEQ] = sq + 1
    tail = mem[b + L_TAIL]
    mem[s + S_LINK] = _pack(tail, -1)
    if tail >= 0:
        s_set_next(mem, oslot + tail * SK, slot)
    else:
        mem[b + L_HEAD] = slot
    mem[b + L_TAIL] = slot
    mem[b + L_TOTAL] += qty
    mem[b + L_COUNT] += 1


@njit(cache=True)
def slot_alloc(mem):
    slot = mem[H_SFREE]
    if slot >= 0:
        mem[H_SFREE] = mem[mem[H_OSLOT] + slot * SK + S_LINK]
    else:
        slot = mem[H_SUSED]
        mem[H_SUSED] = slot + 1
    mem[H_NORD] += 1
    return slot


@njit(cache=True)
def slot_free(mem, slot):
    """Free a slot: leaves its account list and goes to the free list."""
    acct_unlink(mem, slot)
    mem[mem[H_OSLOT] + slot * SK + S_LINK] = mem[H_SFREE]
    mem[H_SFREE] = slot
    mem[H_NORD] -= 1


@njit(cache=True)
def slot_unlink(mem, slot):
    """Take a slot out of its level FIFO; subtract its qty; remove the level if empty.
    The slot stays allocated, in the hash table and in its account list."""
    oslot = mem[H_OSLOT]
    s = oslot + slot * SK
    lev = s_lvl(mem, s)
    b = mem[H_OLVL] + lev * LK
    w = mem[s + S_LINK]
    p = _lo(w)
    nx = _hi(w)
    if p >= 0:
        s_set_next(mem, oslot + p * SK, nx)
    else:
        mem[b + L_HEAD] = nx
    if nx >= 0:
        s_set_prev(mem, oslot + nx * SK, p)
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
FOK_SHORT = 0   # fok_check: not fillable (the walk ran out of crossing quantity)
FOK_FILLS = 1   # fillable
FOK_STP = 2     # not fillable: the walk stopped at a same-account order (STP)


@njit(cache=True)
def fok_check(mem, side, acct, market, price, qty, stp):
    """Would an incoming order of qty fill completely? Walks exactly like match(); returns
    FOK_FILLS, FOK_SHORT, or FOK_STP when CANCEL_INCOMING/CANCEL_BOTH stopped the walk at a
    same-account order before qty was reached (the FOK is then killed because of STP).
    Counts down what is still needed (a running sum of the visited quantity could pass
    int64 max and wrap)."""
    opp = SELL if side == BUY else BUY
    doff, hn, _ = _dir(mem, opp)
    olvl = mem[H_OLVL]
    oslot = mem[H_OSLOT]
    need = qty
    j = mem[hn] - 1
    while j >= 0:
        bb = _bb(mem, mem[doff + j])
        i = mem[bb] - 1
        while i >= 0:
            b = olvl + mem[bb + 1 + BS + i] * LK
            lp = mem[b + L_PRICE]
            if not market:
                if side == BUY:
                    if lp > price:
                        return FOK_SHORT
                elif lp < price:
                    return FOK_SHORT
            if stp == STP_NONE:
                need -= mem[b + L_TOTAL]
                if need <= 0:
                    return FOK_FILLS
            else:
                slot = mem[b + L_HEAD]
                while slot >= 0:
                    s = oslot + slot * SK
                    if mem[s + S_ACCT] == acct:
                        if stp != STP_CANCEL_RESTING:
                            return FOK_STP
                    else:
                        need -= mem[s + S_QTY]
                        if need <= 0:
                            return FOK_FILLS
                    slot = s_next(mem, s)
            i -= 1
        j -= 1
    return FOK_SHORT


@njit(cache=True)
def match(mem, side, acct, market, price, qty, stp):
    """Match an incoming order against the opposite side.
    Returns (remaining, n_fills, n_stp, stopped) -- stopped: STP killed the incoming."""
    opp = SELL if side == BUY else BUY
    olvl = mem[H_OLVL]
    oslot = mem[H_OSLOT]
    ofill = mem[H_OFILL]
    ostp = mem[H_OSTP]
    rem = qty
    nf = 0
    ns = 0
    stopped = False
    while rem > 0:
        lev = best_level(mem, opp)
        if lev < 0:
            break
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
            nxt = s_next(mem, s)
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
                        s_set_prev(mem, oslot + nxt * SK, -1)
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
                    s_set_prev(mem, oslot + nxt * SK, -1)
                else:
                    mem[b + L_TAIL] = -1
                mem[b + L_COUNT] -= 1
                h_delete(mem, mem[s + S_OID])
                slot_free(mem, slot)
            slot = nxt
        if mem[b + L_COUNT] == 0:
            level_remove(mem, lev)
        if stopped:
            break
    return rem, nf, ns, stopped


# ---------------------------------------------------------------- operations
@njit(cache=True)
def add(mem, oid, acct, side, ord_type, tif, price, qty, ts, stp):
    mem[H_KSTP] = 0
    if (side != BUY and side != SELL) or (ord_type != MARKET and ord_type != LIMIT) \
            or (tif != TIF_DAY and tif != TIF_GTC and tif != TIF_IOC and tif != TIF_FOK) \
            or stp < 0 or stp > 3:
        return (ERR_BAD_ARGUMENT, 0, 0, 0, 0)
    if qty <= 0:
        return (ERR_QTY, 0, 0, 0, 0)
    if h_find(mem, oid) >= 0:
        return (ERR_DUPLICATE_ID, 0, 0, 0, 0)
    if mem[H_NORD] >= mem[H_SCAP] or 2 * (mem[H_NLEV] + 1) > mem[H_PCAP] \
            or 2 * (mem[H_NACC] + 1) > mem[H_PCAP]:
        return (NEED_GROW, 0, 0, 0, 0)
    market = ord_type == MARKET
    if tif == TIF_FOK:
        f = fok_check(mem, side, acct, market, price, qty, stp)
        if f != FOK_FILLS:
            if f == FOK_STP:
                mem[H_KSTP] = 1
            return (OK, 0, 0, 0, qty)
    rem, nf, ns, stopped = match(mem, side, acct, market, price, qty, stp)
    if stopped:
        mem[H_KSTP] = 1
        return (OK, nf, ns, 0, rem)
    if rem > 0:
        if market or tif == TIF_IOC or tif == TIF_FOK:
            return (OK, nf, ns, 0, rem)
        slot = slot_alloc(mem)
        h_insert(mem, oid, slot)
        slot_rest(mem, slot, oid, side, price, rem, acct, ts, tif)
        acct_link(mem, slot, acct)
        return (OK, nf, ns, rem, 0)
    return (OK, nf, ns, 0, 0)


@njit(cache=True)
def cancel(mem, oid):
    slot = h_find(mem, oid)
    if slot < 0:
        return (ERR_UNKNOWN_ORDER, 0)
    oslot = mem[H_OSLOT]
    s = oslot + slot * SK
    _pf_links(mem, oslot, s)
    q = mem[s + S_QTY]
    slot_delete(mem, slot)
    return (OK, q)


@njit(cache=True)
def replace(mem, oid, new_price, new_qty, ts, stp):
    mem[H_KSTP] = 0
    if stp < 0 or stp > 3:
        return (ERR_BAD_ARGUMENT, 0, 0, 0, 0)
    if new_qty <= 0:
        return (ERR_QTY, 0, 0, 0, 0)
    slot = h_find(mem, oid)
    if slot < 0:
        return (ERR_UNKNOWN_ORDER, 0, 0, 0, 0)
    s = mem[H_OSLOT] + slot * SK
    rq = mem[s + S_QTY]
    b = mem[H_OLVL] + s_lvl(mem, s) * LK
    if new_price == mem[b + L_PRICE] and new_qty <= rq:
        mem[b + L_TOTAL] -= rq - new_qty
        mem[s + S_QTY] = new_qty
        return (OK, 0, 0, new_qty, 0)
    if 2 * (mem[H_NLEV] + 1) > mem[H_PCAP]:
        return (NEED_GROW, 0, 0, 0, 0)  # it may need a new level: nothing changed
    _pf_links(mem, mem[H_OSLOT], s)
    side = s_side(mem, s)
    acct = mem[s + S_ACCT]
    tif = s_tif(mem, s)
    # leave the level but keep the slot, the id and the account link while matching
    # (the order cannot meet itself: it is on the other side)
    slot_unlink(mem, slot)
    rem, nf, ns, stopped = match(mem, side, acct, False, new_price, new_qty, stp)
    if stopped or rem == 0:
        h_delete(mem, oid)
        slot_free(mem, slot)
        if stopped:
            mem[H_KSTP] = 1
            return (OK, nf, ns, 0, rem)
        return (OK, nf, ns, 0, 0)
    slot_rest(mem, slot, oid, side, new_price, rem, acct, ts, tif)
    return (OK, nf, ns, rem, 0)


@njit(cache=True)
def mass_cancel(mem, account, side):
    """Cancel every resting order of account (-1 any) on side (0 any). Writes
    (order id, qty) rows into the stp region, bids before asks, each side best price
    first, FIFO within a level. Returns the count. One account: only its own orders are
    visited (its list), then sorted into that order."""
    ostp = mem[H_OSTP]
    oslot = mem[H_OSLOT]
    olvl = mem[H_OLVL]
    cnt = 0
    if account == -1:
        for sd in (BUY, SELL):
            if side != 0 and side != sd:
                continue
            while True:
                lev = best_level(mem, sd)
                if lev < 0:
                    break
                slot = mem[olvl + lev * LK + L_HEAD]
                s = oslot + slot * SK
                mem[ostp + 2 * cnt] = mem[s + S_OID]
                mem[ostp + 2 * cnt + 1] = mem[s + S_QTY]
                cnt += 1
                slot_delete(mem, slot)
        return cnt
    head = hx_find(mem, mem[H_OACC], account)
    k = 0
    slot = head
    while slot >= 0:
        s = oslot + slot * SK
        if side == 0 or s_side(mem, s) == side:
            k += 1
        slot = s_anext(mem, s)
    if k == 0:
        return 0
    slots = np.empty(k, dtype=np.int64)
    sides = np.empty(k, dtype=np.int64)
    keys = np.empty(k, dtype=np.int64)
    seqs = np.empty(k, dtype=np.int64)
    k = 0
    slot = head
    while slot >= 0:
        s = oslot + slot * SK
        sd = s_side(mem, s)
        if side == 0 or sd == side:
            slots[k] = slot
            sides[k] = sd
            price = mem[olvl + s_lvl(mem, s) * LK + L_PRICE]
            keys[k] = ~_key(sd, price)  # ascending = best price first
            seqs[k] = mem[s + S_SEQ]
            k += 1
        slot = s_anext(mem, s)
    # sort by (side, best price first, arrival): stable sorts, least significant first
    order = np.argsort(seqs, kind="mergesort")
    o2 = np.argsort(keys[order], kind="mergesort")
    order = order[o2]
    o3 = np.argsort(sides[order], kind="mergesort")
    order = order[o3]
    for r in range(k):
        slot = slots[order[r]]
        s = oslot + slot * SK
        mem[ostp + 2 * cnt] = mem[s + S_OID]
        mem[ostp + 2 * cnt + 1] = mem[s + S_QTY]
        cnt += 1
        slot_delete(mem, slot)
    return cnt


@njit(cache=True)
def best(mem, side):
    """(found, price, total qty) of the best level of side."""
    lev = best_level(mem, side)
    if lev < 0:
        return (0, 0, 0)
    b = mem[H_OLVL] + lev * LK
    return (1, mem[b + L_PRICE], mem[b + L_TOTAL])


@njit(cache=True)
def depth(mem, side, n):
    """Writes the top n levels of side as (price, total, count) into the fill region
    (row stride FK); returns how many."""
    doff, hn, _ = _dir(mem, side)
    ofill = mem[H_OFILL]
    olvl = mem[H_OLVL]
    k = 0
    j = mem[hn] - 1
    while j >= 0 and k < n:
        bb = _bb(mem, mem[doff + j])
        i = mem[bb] - 1
        while i >= 0 and k < n:
            b = olvl + mem[bb + 1 + BS + i] * LK
            mem[ofill + FK * k] = mem[b + L_PRICE]
            mem[ofill + FK * k + 1] = mem[b + L_TOTAL]
            mem[ofill + FK * k + 2] = mem[b + L_COUNT]
            k += 1
            i -= 1
        j -= 1
    return k


@njit(cache=True)
def get(mem, oid):
    """(found, side, price, remaining qty, account, ts)."""
    slot = h_find(mem, oid)
    if slot < 0:
        return (0, 0, 0, 0, 0, 0)
    s = mem[H_OSLOT] + slot * SK
    price = mem[mem[H_OLVL] + s_lvl(mem, s) * LK + L_PRICE]
    return (1, s_side(mem, s), price, mem[s + S_QTY], mem[s + S_ACCT], mem[s + S_TS])


@njit(cache=True)
def orders(mem):
    """Every resting order as rows (order id, side, price, qty, account, ts): bids then
    asks, best price first, FIFO within a level. Allocates (not a hot-path kernel)."""
    out = np.empty((mem[H_NORD], 6), dtype=np.int64)
    oslot = mem[H_OSLOT]
    olvl = mem[H_OLVL]
    k = 0
    for sd in (BUY, SELL):
        doff, hn, _ = _dir(mem, sd)
        for j in range(mem[hn] - 1, -1, -1):
            bb = _bb(mem, mem[doff + j])
            for i in range(mem[bb] - 1, -1, -1):
                b = olvl + mem[bb + 1 + BS + i] * LK
                price = mem[b + L_PRICE]
                slot = mem[b + L_HEAD]
                while slot >= 0:
                    s = oslot + slot * SK
                    out[k, 0] = mem[s + S_OID]
                    out[k, 1] = sd
                    out[k, 2] = price
                    out[k, 3] = mem[s + S_QTY]
                    out[k, 4] = mem[s + S_ACCT]
                    out[k, 5] = mem[s + S_TS]
                    k += 1
                    slot = s_next(mem, s)
    return out


@njit(cache=True)
def copy_into(mem, new):
    """Copy the book mem into new (laid out by init with a slot capacity >= the used
    counts): used regions copied as slices (ids of slots, levels and blocks are kept),
    hash tables rebuilt in table order (top-bits hashing: a sequential pass)."""
    for h in (H_NORD, H_SFREE, H_SUSED, H_LFREE, H_LUSED, H_NDB, H_NDA, H_BFREE, H_BUSED,
              H_SEQ, H_NLEV, H_NACC):
        new[h] = mem[h]
    used = mem[H_SUSED] * SK
    new[new[H_OSLOT]:new[H_OSLOT] + used] = mem[mem[H_OSLOT]:mem[H_OSLOT] + used]
    used = mem[H_LUSED] * LK
    new[new[H_OLVL]:new[H_OLVL] + used] = mem[mem[H_OLVL]:mem[H_OLVL] + used]
    used = mem[H_BUSED] * BW
    new[new[H_OBLK]:new[H_OBLK] + used] = mem[mem[H_OBLK]:mem[H_OBLK] + used]
    nb = mem[H_NDB]
    na = mem[H_NDA]
    new[new[H_ODB]:new[H_ODB] + nb] = mem[mem[H_ODB]:mem[H_ODB] + nb]
    new[new[H_ODA]:new[H_ODA] + na] = mem[mem[H_ODA]:mem[H_ODA] + na]
    for t in (H_OHASH, H_OPB, H_OPA, H_OACC):
        off = mem[t]
        noff = new[t]
        for i in range(mem[off - 2]):
            v = mem[off + 2 * i + 1]
            if v >= 0:
                hx_insert(new, noff, mem[off + 2 * i], v)


# ---------------------------------------------------------------- per-call entry points
# The same kernels, taking the book array's address (an int64) instead of the array.
# add and replace grow a full book themselves: they call back into Python (numba's object
# mode, only on that rare path) to the book registered under the address, which grows
# (in place, or into a new mapping) and gives back its address; then they retry. So the
# facade can bind them to the address directly (functools.partial) with no Python frame
# of its own on the per-order path.
GROWERS: dict = {}  # book array address -> weak reference to a callable growing it


def _grow_cb(addr):
    return GROWERS[addr]()()


@njit(cache=True)
def a_add(addr, oid, acct, side, ord_type, tif, price, qty, ts, stp):
    r = add(view(addr), oid, acct, side, ord_type, tif, price, qty, ts, stp)
    while r[0] == NEED_GROW:
        with objmode(grown="int64"):
            grown = _grow_cb(addr)
        addr = grown
        r = add(view(addr), oid, acct, side, ord_type, tif, price, qty, ts, stp)
    return r


@njit(cache=True)
def a_cancel(addr, oid):
    return cancel(view(addr), oid)


@njit(cache=True)
def a_replace(addr, oid, new_price, new_qty, ts, stp):
    r = replace(view(addr), oid, new_price, new_qty, ts, stp)
    while r[0] == NEED_GROW:
        with objmode(grown="int64"):
            grown = _grow_cb(addr)
        addr = grown
        r = replace(view(addr), oid, new_price, new_qty, ts, stp)
    return r


@njit(cache=True)
def a_mass_cancel(addr, account, side):
    return mass_cancel(view(addr), account, side)


@njit(cache=True)
def a_best(addr, side):
    return best(view(addr), side)


@njit(cache=True)
def a_depth(addr, side, n):
    return depth(view(addr), side, n)


@njit(cache=True)
def a_get(addr, oid):
    return get(view(addr), oid)


# ---------------------------------------------------------------- batch kernel
# (here, not in batch.py, so that numba's on-disk cache of run_batch, keyed on the source
# file, is invalidated together with the kernels it inlines)
# Fetch-ahead distances (rows): the kernel is bound by memory latency on a deep book (an
# order id's hash entry, then its slot, then the slot's neighbours are dependent misses),
# so while running row i it prefetches those lines for later rows, one step of the chain
# per stage: hash entries PF1 rows ahead, slots / levels PF2 rows ahead, neighbours PF3
# rows ahead. Prefetches are hints: the results do not depend on them.
PF1 = 12
PF2 = 6
PF3 = 3
# below this many order-id table entries (16 bytes each) the book fits in the L2 cache and
# fetching ahead only costs instructions: it is off
PF_MIN_HCAP = 1 << 16


@njit(cache=True, inline="always")
def _pf_hash(mem, ops, j):
    op = ops[j, 0]
    if op == OP_ADD or op == OP_CANCEL or op == OP_REPLACE:
        off = mem[H_OHASH]
        prefetch(mem, off + 2 * _home(mem, off, ops[j, 1]))
        if op == OP_ADD:
            poff = mem[H_OPB] if ops[j, 3] == BUY else mem[H_OPA]
            prefetch(mem, poff + 2 * _home(mem, poff, ops[j, 6]))
            aoff = mem[H_OACC]
            prefetch(mem, aoff + 2 * _home(mem, aoff, ops[j, 2]))


@njit(cache=True, inline="always")
def _pf_slot(mem, ops, j, deep):
    op = ops[j, 0]
    if op == OP_CANCEL or op == OP_REPLACE:
        slot = hx_find(mem, mem[H_OHASH], ops[j, 1])
        if slot >= 0:
            oslot = mem[H_OSLOT]
            s = oslot + slot * SK
            if not deep:
                prefetch(mem, s)
                return
            w = mem[s + S_LINK]
            p = (w << 32) >> 32
            nx = w >> 32
            if p >= 0:
                prefetch(mem, oslot + p * SK)
            if nx >= 0:
                prefetch(mem, oslot + nx * SK)
            w = mem[s + S_ALINK]
            p = (w << 32) >> 32
            nx = w >> 32
            if p >= 0:
                prefetch(mem, oslot + p * SK)
            if nx >= 0:
                prefetch(mem, oslot + nx * SK)
            prefetch(mem, mem[H_OLVL] + (mem[s + S_META] >> 8) * LK)
    elif op == OP_ADD:
        poff = mem[H_OPB] if ops[j, 3] == BUY else mem[H_OPA]
        lev = hx_find(mem, poff, ops[j, 6])
        if lev >= 0:
            b = mem[H_OLVL] + lev * LK
            if not deep:
                prefetch(mem, b)
                return
            tail = mem[b + L_TAIL]
            if tail >= 0:
                prefetch(mem, mem[H_OSLOT] + tail * SK)
        if deep:
            head = hx_find(mem, mem[H_OACC], ops[j, 2])
            if head >= 0:
                prefetch(mem, mem[H_OSLOT] + head * SK)
            # the slot it will probably get (head of the free list)
            f = mem[H_SFREE]
            if f < 0:
                f = mem[H_SUSED]
            prefetch(mem, mem[H_OSLOT] + f * SK)


@njit(cache=True, nogil=True)
def run_batch(mem, ops, res, start):
    n = ops.shape[0]
    pf = mem[H_HCAP] >= PF_MIN_HCAP  # the capacity changes only between calls
    for i in range(start, n):
        if pf and i + PF1 < n:
            _pf_hash(mem, ops, i + PF1)
        if pf and i + PF2 < n:
            _pf_slot(mem, ops, i + PF2, False)
        if pf and i + PF3 < n:
            _pf_slot(mem, ops, i + PF3, True)
        op = ops[i, 0]
        if op == OP_ADD:
            r = add(mem, ops[i, 1], ops[i, 2], ops[i, 3], ops[i, 4], ops[i, 5], ops[i, 6],
                    ops[i, 7], ops[i, 8], ops[i, 9])
            if r[0] == NEED_GROW:
                return i
            for j in range(5):
                res[i, j] = r[j]
        elif op == OP_CANCEL:
            c = cancel(mem, ops[i, 1])
            res[i, 0] = c[0]
            res[i, 1] = c[1]
        elif op == OP_REPLACE:
            r = replace(mem, ops[i, 1], ops[i, 6], ops[i, 7], ops[i, 8], ops[i, 9])
            if r[0] == NEED_GROW:
                return i
            for j in range(5):
                res[i, j] = r[j]
        elif op == OP_MASS_CANCEL:
            sd = ops[i, 3]
            if sd != 0 and sd != BUY and sd != SELL:
                res[i, 0] = ERR_BAD_ARGUMENT
                continue
            cnt = mass_cancel(mem, ops[i, 2], sd)
            ostp = mem[H_OSTP]
            tot = 0
            for k in range(cnt):
                tot += mem[ostp + 2 * k + 1]
            res[i, 0] = OK
            res[i, 1] = cnt
            res[i, 2] = tot
        else:
            res[i, 0] = ERR_BAD_ARGUMENT
    return n
