"""Limit order book: numba kernels over one int64 array (NumbaBook), a plain-Python
reference book (ReferenceBook), and a batch kernel (run_batch / NumbaBook.run_batch).

Call warm_up() at server start, before accepting connections: it compiles every kernel
(or loads it from numba's on-disk cache) and runs each once on a throwaway book.
"""

from .constants import *  # noqa: F401,F403
from .constants import __all__ as _const_all
from .book import NumbaBook, compile_kernels
from .reference import ReferenceBook

Book = NumbaBook


def warm_up() -> None:
    """Compile (cache=True) and exercise every kernel once on a throwaway book."""
    import numpy as np

    from .constants import (BUY, SELL, LIMIT, MARKET, TIF_GTC, TIF_IOC, TIF_FOK,
                            STP_NONE, STP_CANCEL_RESTING, OP_ADD, OP_CANCEL, OP_REPLACE,
                            OP_MASS_CANCEL)
    compile_kernels()
    b = NumbaBook(capacity=2)
    b.add(1, 1, BUY, LIMIT, TIF_GTC, 100, 10, 1, STP_NONE)
    b.add(2, 2, BUY, LIMIT, TIF_GTC, 99, 10, 2, STP_NONE)
    b.add(3, 3, BUY, LIMIT, TIF_GTC, 98, 10, 3, STP_NONE)  # grows
    b.add(4, 4, SELL, LIMIT, TIF_FOK, 99, 15, 4, STP_NONE)
    b.add(5, 2, SELL, MARKET, TIF_IOC, 0, 5, 5, STP_CANCEL_RESTING)
    b.add(6, 5, SELL, LIMIT, TIF_GTC, 105, 5, 6, STP_NONE)
    b.replace(6, 104, 4, 7, STP_NONE)
    b.replace(6, 104, 3, 8, STP_NONE)
    b.best_bid()
    b.best_ask()
    b.depth(5)
    b.get(6)
    b.orders()
    b.fills(1)
    b.stp_cancels(1)
    b.cancel(6)
    b.mass_cancel(-1, 0)
    len(b)
    ops = np.zeros((4, 10), dtype=np.int64)
    ops[:, 0] = (OP_ADD, OP_REPLACE, OP_CANCEL, OP_MASS_CANCEL)
    ops[:, 1] = 1
    ops[:, 3] = BUY
    ops[:, 4] = LIMIT
    ops[:, 6] = 100
    ops[:, 7] = 1
    b.run_batch(ops)


__all__ = list(_const_all) + ["NumbaBook", "ReferenceBook", "Book", "warm_up",
                              "compile_kernels"]
