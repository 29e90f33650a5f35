"""Batch kernel: a whole stream of operations in one numba call.

ops is an (n, 10) C-contiguous int64 array, one row per operation, columns:
  0 op (OP_ADD=1, OP_CANCEL=2, OP_REPLACE=3, OP_MASS_CANCEL=4), 1 order_id, 2 account,
  3 side, 4 ord_type, 5 tif, 6 price, 7 qty, 8 ts, 9 stp.
add uses all of them; cancel uses order_id; replace uses order_id, price (new price),
qty (new remaining qty), ts, stp; mass cancel uses account (-1 any) and side (0 any).
res is an (n, 5) int64 array receiving per row: add/replace the 5-tuple of NumbaBook.add;
cancel (status, canceled_qty, 0, 0, 0); mass cancel (OK, count, total canceled qty, 0, 0)
or (ERR_BAD_ARGUMENT, ...) for a bad side; an unknown op code gives ERR_BAD_ARGUMENT.
run_batch(mem, ops, res, start) runs rows start.. and returns the index of the first row it
could not run because the book is full (NEED_GROW: that row changed nothing), or n when
done; the caller (NumbaBook.run_batch) grows the book in Python and resumes from there.
Fills of individual operations are not kept (each overwrites the previous).

The kernel itself lives in kernels.py (numba's on-disk cache is keyed on the source file
of each function: with run_batch beside the kernels it inlines, an edit of kernels.py can
no longer leave a stale run_batch compiled against an old memory layout in the cache).
While it runs row i on a large book it prefetches the cache lines later rows will need
(see PF1..PF3 in kernels.py).
"""

from __future__ import annotations

from .kernels import run_batch, PF1, PF2, PF3, PF_MIN_HCAP  # noqa: F401

N_COLS = 10

__all__ = ["run_batch", "N_COLS", "PF1", "PF2", "PF3", "PF_MIN_HCAP"]
