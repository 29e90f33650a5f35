"""The pre-trade check kernel: every array-based risk check of one order in one numba call.

It reads the engine's position/exposure columns and the risk engine's limit columns (see
engine.positions for the layout) and returns the first failing rule (0: pass), writing the
limit in force and the actual value into OUT. All arithmetic saturates at int64 max, so an
absurd order can never wrap round and pass.

Calling cost is what matters here: the checks themselves take a few ns, while each argument
of a numba call costs ~15 ns to unbox (an array ~50 ns) and numba's type dispatch several
hundred ns (measured on the 2-vCPU EPYC VM of benchmarks/RESULTS.md).
So the kernels take the one flat array ``Positions.mem`` plus the order's integers, and the
risk engine calls the compiled entry points directly (``compiled()``), skipping the
dispatcher. Everything else the kernel needs sits in ``mem`` itself: the last OUT slot holds
the *context word* written by RiskEngine (number of accounts and instruments, global kill
switch), so the shape of the arrays and the global switch cost no argument.

The message-rate window lives here too, so that a new order's whole pre-trade check is ONE
call with seven ints (``new_order``): each FIX session has a *window* array (header + a ring
of the times of its counted messages, oldest first), owned by RiskEngine and passed by its
address (an int64 costs ~15 ns to unbox, an array ~50 ns). The header holds the address of
``Positions.mem`` and of the per-account rate limits, so no other argument is needed; the
arrays stay alive in RiskEngine, which rewrites every header when a limit changes or the
arrays are replaced (reset), and swaps in a window twice the size when a ring is full
(``RATE_RING_FULL``: nothing was counted, the caller grows the ring and calls again). Every
counted message first drops, oldest first, the times <= its ts - 1 s and the times > its ts
(amortised O(1): each time is dropped once), then is refused (rated kinds only) if the window still holds ``limit`` times, else
appended. Messages that are never refused (cancels, mass cancels) of a session where every
message counts need no kernel at all: RiskEngine appends their times to the window's
*pending* buffer (an array.array, ~20 ns an item from Python), which the next kernel call
moves into the ring first, in order. That defers their trimming, which gives the same
counts as long as times do not go backwards. They can (the gateway stamps commands with
the wall clock, which a clock step sets back): a time later than the message's is from
before the step and is dropped, else the oldest such time would stop the trimming and the
session would be refused for as long as the clock was set back. A
replace is counted and checked with ``rate`` (four ints).

Those two, taking only ints, are also compiled as C functions (``cfunc``) and called through
a METH_FASTCALL builtin (see fastcall): ~80 ns for the seven ints instead of numba's ~180.
"""
from __future__ import annotations

import threading

import numba as nb
import numpy as np
from numba import carray, cfunc, types

from . import fastcall
from ..nbptr import ptr as _ptr

from ..engine.positions import (AI_COLS, A_COLS, A_CREDIT, A_FILLED_MONEY, A_KILLED, A_OPEN_MONEY, A_REDUCE_ONLY,
                                I_COLS, I_FX_DEN, I_FX_NUM, I_HALTED, I_KILLED, I_MULT, I_REF, I_RESTRICTED,
                                L_COLLAR_PCT, L_COLLAR_TICKS,
                                L_MAX_LONG, L_MAX_NOTIONAL, L_MAX_QTY, L_MAX_SHORT, L_RESTRICTED, OPEN_BUY, OPEN_SELL,
                                OUT_COLS, POS)

R_OK = 0
R_KILL_GLOBAL = 1
R_KILL_ACCOUNT = 2
R_KILL_INSTRUMENT = 3
R_HALTED = 4
R_RESTRICTED = 5
R_RESTRICTED_ACCOUNT = 6
R_MAX_QTY = 7
R_NO_REFERENCE = 8
R_COLLAR_PCT = 9
R_COLLAR_TICKS = 10
R_MAX_NOTIONAL = 11
R_REDUCE_ONLY = 12
R_MAX_LONG = 13
R_MAX_SHORT = 14
R_CREDIT = 15
R_NO_CONTEXT = 16      # account/instrument index outside the arrays, or no context word: fail closed
R_MESSAGE_RATE = 17    # the session's message-rate window is full (limit in O_LIMIT, count + 1 in O_ACTUAL)
R_KILL_SESSION = 18    # the session's kill switch is engaged (new_order only)
# not rules (no R_ prefix): new_order's answers that need the caller
RATE_RING_FULL = 19    # the window's ring is full: grow it and call again (nothing was counted)
CHECK_DUPLICATE = 20   # every rule passed, a duplicate-order window is in use: the caller checks it

# a session's window array: header, then the ring of message times (capacity a power of two)
W_MEM = 0          # address of Positions.mem
W_MEMLEN = 1       # its length
W_RATES = 2        # address of the rate limits: one per account, then the default (n_acct + 1)
W_NACCT = 3        # number of accounts
W_LIMIT = 4        # the session's limit (messages per second, 0: off), or -1: each message's account's
W_MASK = 5         # ring capacity - 1
W_HEAD = 6         # ring index of the oldest time (grows without bound; taken & mask)
W_COUNT = 7        # times in the ring
W_FLAGS = 8        # WF_* below
W_PEND = 9         # address of the pending buffer: [n, time 1, ..., time n, ...] (RiskEngine)
W_RING = 10        # first ring slot
WF_KILLED = 1      # the session's kill switch is engaged
WF_DUPLICATES = 2  # some account has a duplicate-order window (checked in Python after the rules)
NS_PER_S = 1_000_000_000

# OUT (the last OUT_COLS slots of mem): limit, actual value, reference price, context word
O_LIMIT, O_ACTUAL, O_REF, O_CTX = 0, 1, 2, 3
assert OUT_COLS > O_CTX
# context word: n_acct << CTX_ACCT_SHIFT | n_inst << 1 | global kill switch
CTX_ACCT_SHIFT = 32
CTX_MAX_DIM = (1 << 31) - 1

_BIG = np.int64(2**63 - 1)


def context_word(n_acct: int, n_inst: int, global_killed: bool) -> int:
    """The value RiskEngine writes into mem[-OUT_COLS + O_CTX] (cold path)."""
    if not (0 < n_acct <= CTX_MAX_DIM and 0 < n_inst <= CTX_MAX_DIM):
        raise ValueError(f"risk arrays: {n_acct} accounts x {n_inst} instruments out of range")
    return (n_acct << CTX_ACCT_SHIFT) | (n_inst << 1) | int(bool(global_killed))




@nb.njit(cache=True, inline="always")
def _rate(w, mem, ts, a, rated):
    """Count one message in the session window ``w`` (an int64*); a rule code (see module doc)."""
    pend = _ptr(w[W_PEND])
    n = pend[0]
    if n > 0:                                   # times counted by RiskEngine since the last call
        count = w[W_COUNT]
        mask = w[W_MASK]
        if count + n > mask + 1:
            return RATE_RING_FULL
        tail = w[W_HEAD] + count
        for k in range(n):
            w[W_RING + ((tail + k) & mask)] = pend[1 + k]
        w[W_COUNT] = count + n
        pend[0] = 0
    limit = w[W_LIMIT]
    if limit < 0:                               # by the message's account (-1/unknown: default)
        n = w[W_NACCT]
        limit = _ptr(w[W_RATES])[a if 0 <= a < n else n]
    if limit <= 0:
        return R_OK                             # off: not counted
    horizon = ts - NS_PER_S
    mask = w[W_MASK]
    head = w[W_HEAD]
    count = w[W_COUNT]
    while count > 0:
        t = w[W_RING + (head & mask)]
        if horizon < t <= ts:
            break
        head += 1
        count -= 1
    w[W_HEAD] = head
    w[W_COUNT] = count
    if count >= limit and rated:
        o = mem.shape[0] - OUT_COLS
        mem[o + O_LIMIT] = limit
        mem[o + O_ACTUAL] = count + 1
        return R_MESSAGE_RATE
    if count > mask:
        return RATE_RING_FULL
    w[W_RING + ((head + count) & mask)] = ts
    w[W_COUNT] = count + 1
    return R_OK


@nb.njit(cache=True, inline="always")
def _mem(w):
    return carray(_ptr(w[W_MEM]), (w[W_MEMLEN],))


@nb.njit(cache=True, inline="always")
def _sat_mul(a, b):
    if a == 0 or b == 0:
        return np.int64(0)
    if a > _BIG // b:
        return _BIG
    return a * b


@nb.njit(cache=True, inline="always")
def _sat_add(a, b):
    if b > 0 and a > _BIG - b:
        return _BIG
    return a + b


@nb.njit(cache=True, inline="always")
def _collar_ticks(pct, ref):
    """The largest deviation from ``ref`` (> 0) that ``pct`` (percent * 10**4, > 0) allows,
    floor(pct * ref / 10**6), saturated; exact where pct * ref itself passes int64 max (both
    sides of dev * 10**6 > pct * ref saturated would compare BIG > BIG and pass any price)."""
    q = pct // 1_000_000
    r = pct - q * 1_000_000
    a = ref // 1_000_000
    return _sat_add(_sat_mul(q, ref), r * a + r * (ref - a * 1_000_000) // 1_000_000)


@nb.njit(cache=True, inline="always")
def _fx_up(money, num, den):
    """ceil(money * num / den), saturated, without forming money * num (which passes int64 max
    for a large order: saturating it and then dividing made the amount small). Exact for
    den < 3 * 10**9 (the config allows 8 decimals: den <= 10**8)."""
    q = money // den
    r = money - q * den
    return _sat_add(_sat_mul(q, num), r * (num // den) - (-(r * (num % den)) // den))


@nb.njit(cache=True, inline="always")
def _rules(mem, a, i, is_buy, price, qty, old_qty, old_money):
    """First failing rule for an order of ``qty`` at ``price`` ticks (0: market order).

    For a replace, ``old_qty`` / ``old_money`` are what the replaced order counts now (see
    RiskEngine.check_replace); 0 for a new order. Writes limit, actual value and reference
    price into OUT.
    """
    o = mem.shape[0] - OUT_COLS                 # OUT
    ctx = mem[o + O_CTX]
    n_acct = ctx >> CTX_ACCT_SHIFT
    n_inst = (ctx >> 1) & CTX_MAX_DIM
    mem[o + O_LIMIT] = 0
    mem[o + O_ACTUAL] = 0
    mem[o + O_REF] = 0
    if a < 0 or a >= n_acct or i < 0 or i >= n_inst:
        return R_NO_CONTEXT
    base_i = o - n_inst * I_COLS
    ri = base_i + i * I_COLS                    # the instrument's row
    ra = base_i - (n_acct - a) * A_COLS         # the account's row
    r = (a * n_inst + i) * AI_COLS              # this account x instrument's row
    if ctx & 1:
        return R_KILL_GLOBAL
    if mem[ra + A_KILLED]:
        return R_KILL_ACCOUNT
    if mem[ri + I_KILLED]:
        return R_KILL_INSTRUMENT
    if mem[ri + I_HALTED]:
        return R_HALTED
    if mem[ri + I_RESTRICTED]:
        return R_RESTRICTED
    if mem[r + L_RESTRICTED]:
        return R_RESTRICTED_ACCOUNT
    lim = mem[r + L_MAX_QTY]
    if lim > 0 and qty > lim:
        mem[o + O_LIMIT] = lim
        mem[o + O_ACTUAL] = qty
        return R_MAX_QTY
    ref = mem[ri + I_REF]
    mem[o + O_REF] = ref
    is_market = price == 0
    max_notional = mem[r + L_MAX_NOTIONAL]
    credit = mem[ra + A_CREDIT]
    pct = mem[r + L_COLLAR_PCT]
    ticks = mem[r + L_COLLAR_TICKS]
    if ref <= 0:
        if (is_market and (max_notional > 0 or credit > 0)) or (not is_market and (pct > 0 or ticks > 0)):
            return R_NO_REFERENCE
    px = ref if is_market else price
    if not is_market:
        dev = price - ref if price > ref else ref - price
        if pct > 0 and dev > _collar_ticks(pct, ref):
            mem[o + O_LIMIT] = pct
            mem[o + O_ACTUAL] = dev
            return R_COLLAR_PCT
        if ticks > 0 and dev > ticks:
            mem[o + O_LIMIT] = ticks
            mem[o + O_ACTUAL] = dev
            return R_COLLAR_TICKS
    money = _sat_mul(_sat_mul(px, qty), mem[ri + I_MULT])
    if max_notional > 0 and money > max_notional:
        mem[o + O_LIMIT] = max_notional
        mem[o + O_ACTUAL] = money
        return R_MAX_NOTIONAL
    pos = mem[r + POS]
    if is_buy:
        worst = pos + mem[r + OPEN_BUY] - old_qty + qty
        if mem[ra + A_REDUCE_ONLY] and worst > 0:
            mem[o + O_LIMIT] = 0
            mem[o + O_ACTUAL] = worst
            return R_REDUCE_ONLY
        lim = mem[r + L_MAX_LONG]
        if lim > 0 and worst > lim:
            mem[o + O_LIMIT] = lim
            mem[o + O_ACTUAL] = worst
            return R_MAX_LONG
    else:
        worst = -(pos - (mem[r + OPEN_SELL] - old_qty) - qty)
        if mem[ra + A_REDUCE_ONLY] and worst > 0:
            mem[o + O_LIMIT] = 0
            mem[o + O_ACTUAL] = -worst
            return R_REDUCE_ONLY
        lim = mem[r + L_MAX_SHORT]
        if lim > 0 and worst > lim:
            mem[o + O_LIMIT] = lim
            mem[o + O_ACTUAL] = worst
            return R_MAX_SHORT
    if credit > 0:
        # the account's sums are in the base currency: convert this order's notional, rounded up
        num = mem[ri + I_FX_NUM]
        den = mem[ri + I_FX_DEN]
        if num != den and money < _BIG:
            money = _fx_up(money, num, den)
        exposure = _sat_add(_sat_add(mem[ra + A_OPEN_MONEY], mem[ra + A_FILLED_MONEY]) - old_money, money)
        if exposure > credit:
            mem[o + O_LIMIT] = credit
            mem[o + O_ACTUAL] = exposure
            return R_CREDIT
    return R_OK


@nb.njit(cache=True)
def check_new(mem, a, i, is_buy, price, qty):
    """A new order (price 0: market order at the reference price)."""
    return _rules(mem, a, i, is_buy, price, qty, 0, 0)


@nb.njit(cache=True)
def check_replace(mem, a, i, is_buy, price, qty, old_qty, old_money):
    """A replace: the replaced order's own quantity and money taken out first."""
    return _rules(mem, a, i, is_buy, price, qty, old_qty, old_money)


@nb.njit(cache=True)
def new_order(waddr, ts, a, i, is_buy, price, qty):
    """A new order's whole check: counted in its session's window (address ``waddr``), the
    session's kill switch, then every array check. The accept path of a validated new order
    is this one call; 0 means accepted (nothing left to check)."""
    w = _ptr(waddr)
    mem = _mem(w)
    rule = _rate(w, mem, ts, a, True)
    if rule:
        return rule
    flags = w[W_FLAGS]
    if flags & WF_KILLED:
        return R_KILL_SESSION
    rule = _rules(mem, a, i, is_buy, price, qty, 0, 0)
    if rule == R_OK and flags & WF_DUPLICATES:
        return CHECK_DUPLICATE
    return rule


@nb.njit(cache=True)
def replace_order(waddr, a, i, is_buy, price, qty, old_qty, old_money):
    """check_replace reaching ``mem`` through a window's header (any session's: the risk
    engine passes the session-less one, which never moves), so it takes only ints."""
    return _rules(_mem(_ptr(waddr)), a, i, is_buy, price, qty, old_qty, old_money)


@nb.njit(cache=True)
def rate(waddr, ts, a, rated):
    """Any other message of the session: counted; refused only if ``rated`` (a replace)."""
    w = _ptr(waddr)
    return _rate(w, _mem(w), ts, a, rated)


_I = types.int64
_MEM = types.Array(types.int64, 1, "C")
SIG_NEW = (_MEM,) + (_I,) * 5
SIG_REPLACE = (_MEM,) + (_I,) * 7
SIG_NEW_ORDER = (_I,) * 7
SIG_RATE = (_I,) * 4
SIG_REPLACE_ORDER = (_I,) * 8
_lock = threading.Lock()
_entries = None
_numba_entries = None


def _new_order_c(waddr, ts, a, i, is_buy, price, qty):
    return new_order(waddr, ts, a, i, is_buy, price, qty)


def _rate_c(waddr, ts, a, rated):
    return rate(waddr, ts, a, rated)


def _replace_order_c(waddr, a, i, is_buy, price, qty, old_qty, old_money):
    return replace_order(waddr, a, i, is_buy, price, qty, old_qty, old_money)


def compiled():
    """(check_new, check_replace, new_order, rate, replace_order): the compiled entry points,
    called without numba's type dispatch (which costs more than the checks). Arguments must
    be exactly a C-contiguous int64 array (check_new, check_replace) and ints (bools are
    fine). The last three are fastcall builtins when they can be built, else numba's entry
    points."""
    global _entries, _numba_entries
    if _entries is None:
        with _lock:
            if _entries is None:
                entries = []
                for fn, sig in ((check_new, SIG_NEW), (check_replace, SIG_REPLACE), (new_order, SIG_NEW_ORDER),
                                (rate, SIG_RATE), (replace_order, SIG_REPLACE_ORDER)):
                    fn.compile(sig)
                    entries.append(fn.overloads[sig].entry_point)
                _numba_entries = tuple(entries)
                if fastcall.enabled():
                    for k, (py, sig, name) in ((2, (_new_order_c, SIG_NEW_ORDER, "new_order")),
                                               (3, (_rate_c, SIG_RATE, "rate")),
                                               (4, (_replace_order_c, SIG_REPLACE_ORDER, "replace_order"))):
                        c = cfunc(types.int64(*sig), cache=True)(py)
                        fast = fastcall.fastcall(c.address, len(sig), name)
                        if fast is not None:
                            _keep_cfuncs.append(c)
                            entries[k] = fast
                _entries = tuple(entries)
    return _entries


_keep_cfuncs: list = []     # the cfuncs whose code the fastcall builtins call


def numba_entries():
    """compiled(), always with numba's own entry points (tests and benchmark comparisons)."""
    compiled()
    return _numba_entries
