"""Compiled fast path for the inbound application messages that make up a trading day.

A logged-on session receives mostly NewOrderSingle, OrderCancelRequest,
OrderCancelReplaceRequest and OrderStatusRequest messages of a few plain shapes. ``scan``
(numba) walks the received bytes and, for each consecutive message that is beyond doubt
well formed and in sequence, records where its fields are; the session then builds the
engine command straight from those offsets. Framing, BodyLength, CheckSum, header and
sequence checks, the dictionary's tag, type and enumeration checks and the SendingTime
tolerance all run in one compiled call per read instead of ~1,200 Python bytecodes per
message.

The fast path only ever *accepts*: it stops at the first message it is not sure of (any
tag outside a small per-type whitelist, a repeated or empty field, ``=`` inside a value,
PossDupFlag, a sequence number other than the next expected one, a value whose format or
range is in doubt, an incomplete frame, garbage between frames...) and leaves it, and
everything after it, to the general path (codec -> dictionary -> session), which answers it
exactly as the FIX rules prescribe. So every message it accepts is one the general path would
accept with the same fields; tests/test_fix_fastpath.py checks both paths give the same
answers on random and mutated streams.

The whitelist and the value rules come from ``dictionary`` (the data dictionary of the
session's FIX version), restricted to the checks this kernel implements exactly; a tag whose
rule it cannot express is simply not on the fast path.
"""
from __future__ import annotations

import numba as nb
import numpy as np

from . import dictionary

__all__ = ["FastTables", "tables_for", "scan", "ROW", "SLOT", "MSG_TYPES", "warm_up"]

MSG_TYPES = (b"D", b"F", b"G", b"H")
# Tags the fast path can carry per message type (more tags: general path).
_WHITELIST = {
    b"D": (1, 11, 21, 38, 40, 44, 54, 55, 59, 60),
    b"F": (1, 11, 37, 38, 41, 54, 55, 60),
    b"G": (1, 11, 21, 37, 38, 40, 41, 44, 54, 55, 59, 60),
    b"H": (1, 11, 37, 54, 55),
}
SLOT_TAGS = (11, 1, 21, 38, 40, 44, 54, 55, 59, 60, 41, 37)
SLOT = {t: i for i, t in enumerate(SLOT_TAGS)}
NSLOTS = len(SLOT_TAGS)
MAX_TAG = 10000
# Row layout of ``out``: msg type index, MsgSeqNum, frame start, frame end, then the value
# (start, end) of each slot (-1, -1 when absent), then OrderQty as an int (-1 absent,
# -2 present but not a whole number: the caller converts it the general way).
R_MT, R_SEQ, R_START, R_END = 0, 1, 2, 3
R_QTY = 4 + 2 * NSLOTS
ROW = R_QTY + 1

# value rules a slot can have
K_STRING, K_CHAR, K_FLOAT, K_TS = 0, 1, 2, 3
_KIND_OF_CHECKER = {
    None: K_STRING,
    dictionary._is_char: K_CHAR,
    dictionary._is_float: K_FLOAT,
    dictionary._is_ts: K_TS,
}


class FastTables:
    """The fast path's rules for one BeginString, as arrays for ``scan``."""

    __slots__ = ("prefix", "slot_of", "kind", "has_enum", "enum_mask", "required", "rules")

    def __init__(self, begin_string: bytes):
        specs = dictionary._SPECS[begin_string]
        self.prefix = np.frombuffer(b"8=" + begin_string + b"\x019=", np.uint8).copy()
        self.slot_of = np.full((len(MSG_TYPES), MAX_TAG), -1, np.int8)
        self.kind = np.zeros(NSLOTS, np.int8)
        self.has_enum = np.zeros(NSLOTS, np.uint8)
        self.enum_mask = np.zeros((NSLOTS, 256), np.uint8)
        self.required = np.zeros((len(MSG_TYPES), NSLOTS), np.uint8)
        kinds: dict[int, int] = {}
        for mi, mt in enumerate(MSG_TYPES):
            spec = specs.get(mt)
            if spec is None or mt not in dictionary.SUPPORTED_IN:
                continue
            for tag in _WHITELIST[mt]:
                info = spec.info.get(tag)
                if info is None:
                    continue
                checker, enum, where = info
                kind = _KIND_OF_CHECKER.get(checker)
                if where != 0 or kind is None:
                    continue           # header/trailer/group field or a rule not expressed here
                if enum is not None and not all(len(v) == 1 for v in enum):
                    continue
                sl = SLOT[tag]
                if kinds.setdefault(sl, kind) != kind:
                    raise ValueError(f"tag {tag}: different value rules by message type")
                self.kind[sl] = kind
                if enum is not None:
                    self.has_enum[sl] = 1
                    for v in enum:
                        self.enum_mask[sl, v[0]] = 1
                self.slot_of[mi, tag] = sl
            for tag in spec.required:
                sl = SLOT.get(tag)
                if sl is None or self.slot_of[mi, tag] < 0:
                    # a required tag the fast path cannot carry: no message of this type is fast
                    self.slot_of[mi, :] = -1
                    break
                self.required[mi, sl] = 1
        # the same tables end to end in one array: ``scan`` takes four arrays, not eight
        # (numba's per-call argument unboxing is most of a short call's cost)
        self.rules = np.concatenate([self.slot_of.ravel(), self.kind, self.has_enum.view(np.int8),
                                     self.enum_mask.view(np.int8).ravel(), self.required.view(np.int8).ravel()])

    def ids(self, their_comp_id: bytes, our_comp_id: bytes) -> tuple[np.ndarray, int, int]:
        """``scan``'s ``ids`` argument for a session: the frame prefix and both CompIDs."""
        raw = bytes(self.prefix) + their_comp_id + our_comp_id
        return np.frombuffer(raw, np.uint8), len(self.prefix), len(their_comp_id)


_TABLES: dict[bytes, FastTables] = {}


def tables_for(begin_string: bytes) -> FastTables | None:
    """The fast path's tables for a FIX version, or None if it has no dictionary."""
    t = _TABLES.get(begin_string)
    if t is None:
        if begin_string not in dictionary._SPECS:
            return None
        t = _TABLES[begin_string] = FastTables(begin_string)
    return t


# --------------------------------------------------------------------------------------
# The kernel

_DIM = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], np.int64)


@nb.njit(cache=True)
def _digits(buf, s, e):
    """Value of buf[s:e] if all ASCII digits (1..18 of them), else -1."""
    if e <= s or e - s > 18:
        return -1
    v = 0
    for k in range(s, e):
        c = buf[k]
        if c < 48 or c > 57:
            return -1
        v = v * 10 + (c - 48)
    return v


@nb.njit(cache=True)
def _timestamp_s(buf, s, e):
    """Whole seconds since the epoch of a UTCTimestamp (YYYYMMDD-HH:MM:SS[.fff|.ffffff|
    .fffffffff]) under the rules of timefmt.parse_fix_timestamp; -1 if malformed."""
    n = e - s
    if n != 17 and n != 21 and n != 24 and n != 27:
        return -1
    if buf[s + 8] != 45 or buf[s + 11] != 58 or buf[s + 14] != 58:
        return -1
    if n > 17:
        if buf[s + 17] != 46 or _digits(buf, s + 18, e) < 0:
            return -1
    y = _digits(buf, s, s + 4)
    m = _digits(buf, s + 4, s + 6)
    d = _digits(buf, s + 6, s + 8)
    hh = _digits(buf, s + 9, s + 11)
    mi = _digits(buf, s + 12, s + 14)
    ss = _digits(buf, s + 15, s + 17)
    if y < 0 or m < 1 or m > 12 or d < 1 or hh < 0 or hh > 23 or mi < 0 or mi > 59 or ss < 0 or ss > 60:
        return -1
    dim = _DIM[m]
    if m == 2 and (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)):
        dim += 1
    if d > dim:
        return -1
    # days from civil (Howard Hinnant), y >= 0 here
    yy = y - 1 if m <= 2 else y
    era = yy // 400
    yoe = yy - era * 400
    doy = (153 * (m - 3 if m > 2 else m + 9) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days = era * 146097 + doe - 719468
    return ((days * 24 + hh) * 60 + mi) * 60 + ss


@nb.njit(cache=True)
def _is_float(buf, s, e):
    """Digits, or digits '.' digits: a subset of dictionary._is_float (no sign, no bare
    leading or trailing point)."""
    dot = -1
    for k in range(s, e):
        c = buf[k]
        if c == 46:
            if dot >= 0:
                return False
            dot = k
        elif c < 48 or c > 57:
            return False
    return dot != s and dot != e - 1


@nb.njit(cache=True)
def _whole_qty(buf, s, e):
    """OrderQty as an int when it is a whole number below 10**18 written as digits with an
    optional all-zero fraction (what gateway._int yields), else -2."""
    k = s
    v = 0
    while k < e and buf[k] != 46:
        if k - s >= 18:
            return -2
        v = v * 10 + (buf[k] - 48)
        k += 1
    for j in range(k + 1, e):
        if buf[j] != 48:
            return -2
    return v


@nb.njit(cache=True)
def _one(buf, p, end, prefix, sender, target, expected, now_s, tol_s,
         slot_of, kind, has_enum, enum_mask, required, row):
    """Check the frame at ``p``; fill ``row`` and return its end, or -1 to stop here."""
    npf = prefix.shape[0]
    if end - p < npf + 2:
        return -1
    for k in range(npf):
        if buf[p + k] != prefix[k]:
            return -1
    q = p + npf
    blen = 0
    nd = 0
    while q < end and nd < 9 and 48 <= buf[q] <= 57:
        blen = blen * 10 + (buf[q] - 48)
        q += 1
        nd += 1
    if nd == 0 or q >= end or buf[q] != 1:
        return -1
    bstart = q + 1
    bend = bstart + blen
    fend = bend + 7
    if fend > end or blen < 5:
        return -1
    if buf[bend] != 49 or buf[bend + 1] != 48 or buf[bend + 2] != 61 or buf[fend - 1] != 1:
        return -1
    want = _digits(buf, bend + 3, bend + 6)
    if want < 0:
        return -1
    total = 0
    for k in range(p, bend):
        total += buf[k]
    if (total & 255) != want or buf[bend - 1] != 1:
        return -1
    # 35=<one char> first
    q = bstart
    if buf[q] != 51 or buf[q + 1] != 53 or buf[q + 2] != 61 or buf[q + 4] != 1:
        return -1
    c = buf[q + 3]
    if c == 68:
        mt = 0
    elif c == 70:
        mt = 1
    elif c == 71:
        mt = 2
    elif c == 72:
        mt = 3
    else:
        return -1
    q += 5
    for k in range(row.shape[0]):
        row[k] = -1
    header = 0     # 49, 56, 34, 52 seen (bits 0-3); all four come before the body
    seen = 0       # slots seen
    while q < bend:
        c = buf[q]
        if c < 49 or c > 57:          # canonical tag: no leading zero
            return -1
        tag = 0
        while q < bend and 48 <= buf[q] <= 57:
            tag = tag * 10 + (buf[q] - 48)
            q += 1
            if tag >= MAX_TAG:
                return -1
        if q >= bend or buf[q] != 61:
            return -1
        q += 1
        vs = q
        while buf[q] != 1:              # bend - 1 is SOH: the scan stops inside the body
            if buf[q] == 61:
                return -1
            q += 1
        ve = q
        q += 1
        if ve == vs:
            return -1
        if tag == 49 or tag == 56 or tag == 34 or tag == 52:
            bit = 1 if tag == 49 else 2 if tag == 56 else 4 if tag == 34 else 8
            if header & bit or seen:
                return -1
            header |= bit
            if tag == 49 or tag == 56:
                ref = sender if tag == 49 else target
                if ve - vs != ref.shape[0]:
                    return -1
                for k in range(ref.shape[0]):
                    if buf[vs + k] != ref[k]:
                        return -1
            elif tag == 34:
                if _digits(buf, vs, ve) != expected:
                    return -1
            else:
                secs = _timestamp_s(buf, vs, ve)
                if secs < 0 or abs(now_s - secs) > tol_s + 1:
                    return -1
            continue
        if header != 15:
            return -1
        sl = slot_of[mt, tag]
        if sl < 0 or seen & (1 << sl):
            return -1
        seen |= 1 << sl
        k_ = kind[sl]
        if k_ == 1:
            if ve - vs != 1 or buf[vs] == 32:
                return -1
        elif k_ == 2:
            if not _is_float(buf, vs, ve):
                return -1
        elif k_ == 3:
            if _timestamp_s(buf, vs, ve) < 0:
                return -1
        if has_enum[sl] and (ve - vs != 1 or not enum_mask[sl, buf[vs]]):
            return -1
        row[4 + 2 * sl] = vs
        row[5 + 2 * sl] = ve
    if header != 15:
        return -1
    for sl in range(required.shape[1]):
        if required[mt, sl] and not seen & (1 << sl):
            return -1
    row[0] = mt
    row[1] = expected
    row[2] = p
    row[3] = fend
    qs = row[4 + 2 * 3]
    if qs >= 0:
        row[4 + 2 * NSLOTS] = _whole_qty(buf, qs, row[5 + 2 * 3])
    return fend


_R_KIND = len(MSG_TYPES) * MAX_TAG
_R_HAS_ENUM = _R_KIND + NSLOTS
_R_ENUM = _R_HAS_ENUM + NSLOTS
_R_REQUIRED = _R_ENUM + NSLOTS * 256
_R_END = _R_REQUIRED + len(MSG_TYPES) * NSLOTS


@nb.njit(cache=True)
def scan(buf, pos, end, ids, n_prefix, n_them, expected, now_s, tol_s, rules, out):
    """Accept consecutive clean application messages from ``buf[pos:end]``, numbered from
    ``expected``; one row of ``out`` each. Returns (rows, position after the last one).

    ``ids`` and ``rules`` come from ``FastTables.ids`` and ``FastTables.rules``. Short calls
    on the order path: the GIL is kept (releasing it would hand it to a waiting thread)."""
    prefix = ids[:n_prefix]
    sender = ids[n_prefix:n_prefix + n_them]
    target = ids[n_prefix + n_them:]
    slot_of = rules[:_R_KIND].reshape((len(MSG_TYPES), MAX_TAG))
    kind = rules[_R_KIND:_R_HAS_ENUM]
    has_enum = rules[_R_HAS_ENUM:_R_ENUM]
    enum_mask = rules[_R_ENUM:_R_REQUIRED].reshape((NSLOTS, 256))
    required = rules[_R_REQUIRED:_R_END].reshape((len(MSG_TYPES), NSLOTS))
    rows = 0
    while rows < out.shape[0]:
        fend = _one(buf, pos, end, prefix, sender, target, expected, now_s, tol_s,
                    slot_of, kind, has_enum, enum_mask, required, out[rows])
        if fend < 0:
            break
        pos = fend
        expected += 1
        rows += 1
    return rows, pos


def warm_up() -> None:
    """Compile (or load from cache) the kernel before the first order."""
    t = tables_for(b"FIX.4.4")
    out = np.zeros((4, ROW), np.int64)
    # the argument types the session passes (read-only arrays over bytes), so the signature
    # compiled here is the one orders use
    empty = np.frombuffer(b"8=FIX.4.4\x01", np.uint8)
    ids, n_prefix, n_them = t.ids(b"CLIENT", b"OMS")
    scan(empty, 0, len(empty), ids, n_prefix, n_them, 1, 0.0, 1.0, t.rules, out)
