"""Batch kernel: a whole stream of operations in one numba call.

ops is an (n, 10) C-contiguous int64 array, one row per operation, columns:
  0 op (OP_ADD=1, OP_CANCEL=2, OP_REPLACE=3, OP_MASS_CANCEL=4), 1 order_id, 2 account,
  3 side, 4 ord_type, 5 tif, 6 price, 7 qty, 8 ts, 9 stp.
add uses all of them; cancel uses order_id; replace uses order_id, price (new price),
qty (new remaining qty), ts, stp; mass cancel uses account (-1 any) and side (0 any).
res is an (n, 5) int64 array receiving per row: add/replace the 5-tuple of NumbaBook.add;
cancel (status, canceled_qty, 0, 0, 0); mass cancel (OK, count, total canceled qty, 0, 0)
or (ERR_BAD_ARGUMENT, ...) for a bad side; an unknown op code gives ERR_BAD_ARGUMENT.
The kernel grows the book when it is full and returns the (possibly new) memory array.
Fills of individual operations are not kept (each overwrites the previous).

Caution: numba's on-disk cache (cache=True) of run_batch is keyed on THIS file only; after
changing kernels.py, touch this file (or delete oms_trading/book/__pycache__/*.nb*), or a
stale run_batch compiled against the old memory layout is loaded (it hangs or corrupts).
"""

from __future__ import annotations

from numba import njit

from .constants import (
    OK, ERR_BAD_ARGUMENT, OP_ADD, OP_CANCEL, OP_REPLACE, OP_MASS_CANCEL, BUY, SELL,
)
from .kernels import add, cancel, replace, mass_cancel, grow, NEED_GROW, H_SCAP, H_OSTP

N_COLS = 10


@njit(cache=True)
def run_batch(mem, ops, res):
    for i in range(ops.shape[0]):
        op = ops[i, 0]
        if op == OP_ADD:
            r = add(mem, ops[i, 1], ops[i, 2], ops[i, 3], ops[i, 4], ops[i, 5], ops[i, 6],
                    ops[i, 7], ops[i, 8], ops[i, 9])
            while r[0] == NEED_GROW:
                mem = grow(mem, 2 * mem[H_SCAP])
                r = add(mem, ops[i, 1], ops[i, 2], ops[i, 3], ops[i, 4], ops[i, 5],
                        ops[i, 6], ops[i, 7], ops[i, 8], ops[i, 9])
            for j in range(5):
                res[i, j] = r[j]
        elif op == OP_CANCEL:
            c = cancel(mem, ops[i, 1])
            res[i, 0] = c[0]
            res[i, 1] = c[1]
        elif op == OP_REPLACE:
            r = replace(mem, ops[i, 1], ops[i, 6], ops[i, 7], ops[i, 8], ops[i, 9])
            while r[0] == NEED_GROW:
                mem = grow(mem, 2 * mem[H_SCAP])
                r = replace(mem, ops[i, 1], ops[i, 6], ops[i, 7], ops[i, 8], ops[i, 9])
            for j in range(5):
                res[i, j] = r[j]
        elif op == OP_MASS_CANCEL:
            sd = ops[i, 3]
            if sd != 0 and sd != BUY and sd != SELL:
                res[i, 0] = ERR_BAD_ARGUMENT
                continue
            n = mass_cancel(mem, ops[i, 2], sd)
            ostp = mem[H_OSTP]
            tot = 0
            for k in range(n):
                tot += mem[ostp + 2 * k + 1]
            res[i, 0] = OK
            res[i, 1] = n
            res[i, 2] = tot
        else:
            res[i, 0] = ERR_BAD_ARGUMENT
    return mem
