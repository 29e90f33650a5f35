"""A set of 64-bit fingerprints in one int64 array (open addressing, linear probing).

The engine keeps the ClOrdIDs and OrderIDs of orders that left memory as
``hash((session, ClOrdID))`` and ``hash((session, OrderID))``, all day.
A Python set of ints costs ~90 bytes an entry (an int object and a slot); this table costs
8 bytes a slot and is one numba call per look-up.

Memory: the table is allocated once for ``capacity`` entries (``[trading]
finished_ids_capacity``; slots = the power of two at or above capacity / 0.75, so up to
~21 bytes an entry of capacity). It is zeroed memory the OS maps on first write: the pages
become resident as fingerprints land on them (hashes scatter, so the whole table is resident
after a few entries per page, ~3 * slots / 512 entries) and then the process stays flat --
no doubling that would leave the old table's pages behind in the allocator. Past the
capacity the table still doubles (and says so in the log): duplicates are refused all day
whatever the count, the memory is then no longer flat.
"""
from __future__ import annotations

import logging

import numba as nb
import numpy as np

log = logging.getLogger(__name__)

_EMPTY = 0            # a free slot; the fingerprint 0 is stored as 1 (one more false match in 2**64)
_MIN_SLOTS = 1 << 12
DEFAULT_CAPACITY = 2_000_000    # entries before the table grows: 4 Mi slots, 32 MiB
_LOAD_NUM, _LOAD_DEN = 3, 4     # at most 3/4 full (linear probing: ~8 slots read on a miss)


def slots_for(capacity: int) -> int:
    """Table slots (a power of two) holding ``capacity`` entries at most 3/4 full."""
    need = -(-max(int(capacity), 1) * _LOAD_DEN // _LOAD_NUM)
    slots = _MIN_SLOTS
    while slots < need:
        slots <<= 1
    return slots


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
def _insert_many(table, values):
    """``_insert`` of each value in order (0 stored as 1); returns how many were new."""
    added = 0
    for v in values:
        fp = v if v != _EMPTY else 1
        i = _slot(table, fp)
        if table[i] != fp:
            table[i] = fp
            added += 1
    return added


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
        _insert_many(table, np.zeros(1, dtype=np.int64))
        _contains(table, 5)
        _rehash(table, np.zeros(16, dtype=np.int64))
        _warm = True


def _fp(value: int) -> int:
    return value if value != _EMPTY else 1


class FingerprintSet:
    """``add`` / ``in`` for Python ints of 64 bits (``hash()`` values); no removal."""

    __slots__ = ("_table", "count", "capacity", "_limit")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        slots = slots_for(capacity)
        self._table = np.zeros(slots, dtype=np.int64)   # calloc: resident as pages are written
        self.capacity = int(capacity)
        self._limit = slots * _LOAD_NUM // _LOAD_DEN
        self.count = 0
        _warm_up()

    @property
    def nbytes(self) -> int:
        return int(self._table.nbytes)

    def __len__(self) -> int:
        return self.count

    def __contains__(self, value: int) -> bool:
        return self.count > 0 and bool(_contains(self._table, _fp(value)))

    def add(self, value: int) -> None:
        if self.count >= self._limit:
            self._grow()
        self.count += int(_insert(self._table, _fp(value)))

    def add_many(self, values: list[int]) -> None:
        """``add`` of each value, in order, in one compiled call (the same entries as one by one;
        the table may double a little earlier, when the values could pass its limit)."""
        if not values:
            return
        while self.count + len(values) > self._limit:
            self._grow()
        self.count += int(_insert_many(self._table, np.array(values, dtype=np.int64)))

    def _grow(self) -> None:
        bigger = np.zeros(self._table.shape[0] * 2, dtype=np.int64)
        _rehash(self._table, bigger)
        self._table = bigger
        self._limit = bigger.shape[0] * _LOAD_NUM // _LOAD_DEN
        log.warning("fingerprints of finished orders: %d entries, past the capacity of %d "
                    "([trading] finished_ids_capacity): the table doubled to %d MiB; memory grows "
                    "with the orders of the day from here", self.count, self.capacity, bigger.nbytes >> 20)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FingerprintSet):
            return NotImplemented
        return self.count == other.count and set(self._table[self._table != 0].tolist()) == \
            set(other._table[other._table != 0].tolist())

    __hash__ = None  # type: ignore[assignment]
