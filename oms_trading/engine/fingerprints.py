"""A set of 64-bit fingerprints in one int64 array (open addressing, linear probing).

The engine keeps the ClOrdIDs and OrderIDs of orders that left memory as
``hash((session, ClOrdID))`` and ``hash((session, OrderID))``.
A Python set of ints costs ~90 bytes an entry (an int object and a slot); this table costs
8 bytes a slot at most half full, so ~16 bytes an entry, and is one numba call per look-up.
"""
from __future__ import annotations

import numba as nb
import numpy as np

_EMPTY = 0            # a free slot; the fingerprint 0 is stored as 1 (one more false match in 2**64)
_MIN_SLOTS = 1 << 12


@nb.njit(cache=True)
def _slot(table, fp):
    mask = table.shape[0] - 1
    i = (fp ^ (fp >> 29)) & mask      # fingerprints are hashes already: mix the high bits in
    while True:
        v = table[i]
        if v == fp or v == _EMPTY:
            return i
        i = (i + 1) & mask


@nb.njit(cache=True)
def _contains(table, fp):
    return table[_slot(table, fp)] == fp


@nb.njit(cache=True)
def _insert(table, fp):
    """1 if added, 0 if it was there."""
    i = _slot(table, fp)
    if table[i] == fp:
        return 0
    table[i] = fp
    return 1


@nb.njit(cache=True)
def _rehash(old, new):
    for v in old:
        if v != _EMPTY:
            new[_slot(new, v)] = v


_warm = False


def _warm_up() -> None:
    """Compile (or load from numba's cache) before the first order needs it, not during it."""
    global _warm
    if not _warm:
        table = np.zeros(8, dtype=np.int64)
        _insert(table, 5)
        _contains(table, 5)
        _rehash(table, np.zeros(16, dtype=np.int64))
        _warm = True


def _fp(value: int) -> int:
    return value if value != _EMPTY else 1


class FingerprintSet:
    """``add`` / ``in`` for Python ints of 64 bits (``hash()`` values); no removal."""

    __slots__ = ("_table", "count")

    def __init__(self) -> None:
        self._table = np.zeros(_MIN_SLOTS, dtype=np.int64)
        self.count = 0
        _warm_up()

    def __len__(self) -> int:
        return self.count

    def __contains__(self, value: int) -> bool:
        return self.count > 0 and bool(_contains(self._table, _fp(value)))

    def add(self, value: int) -> None:
        if 2 * (self.count + 1) > self._table.shape[0]:
            bigger = np.zeros(self._table.shape[0] * 2, dtype=np.int64)
            _rehash(self._table, bigger)
            self._table = bigger
        self.count += int(_insert(self._table, _fp(value)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FingerprintSet):
            return NotImplemented
        return self.count == other.count and set(self._table[self._table != 0].tolist()) == \
            set(other._table[other._table != 0].tolist())

    __hash__ = None  # type: ignore[assignment]
