"""The load generator's receive path in one compiled call per socket read.

``scan_answers`` frames every complete message of a read exactly as ``loadgen.LiteParser``
does (same BeginString search, BodyLength and CheckSum checks, same garbled cases, same
resynchronisation) and returns, per message, the offsets of the few fields the load generator
reads (MsgType, MsgSeqNum, ClOrdID, ExecType, OrdStatus) instead of a Python object per
message and a ``find`` per field. The load generator shares the two cores with the server it
measures: at 20,000 answers/s its Python framing and field lookups were about a quarter of
its CPU. ``LiteParser`` stays as the reference (tests/test_answer_scan.py compares the two on
random streams, cut at random points).
"""
from __future__ import annotations

import numba
import numpy as np

# row layout of ``scan_answers``' output
KIND, START, END, MT_S, MT_E, SEQ, CL_S, CL_E, ET_S, ET_E, OS_S, OS_E = range(12)
ROW = 12
OK = 0
GARBLED_BEGIN = 1      # "BeginString/BodyLength malformed"
GARBLED_LENGTH = 2     # "BodyLength (9) malformed"
GARBLED_FRAME = 3      # "BodyLength/CheckSum mismatch"
REASONS = {GARBLED_BEGIN: "BeginString/BodyLength malformed", GARBLED_LENGTH: "BodyLength (9) malformed",
           GARBLED_FRAME: "BodyLength/CheckSum mismatch"}
NO_SEQ = -1            # MsgSeqNum absent or not all digits (as ``int(raw) if raw.isdigit() else -1``)
HUGE_SEQ = -2          # more digits than an int64 holds: never the number expected


def new_rows(capacity: int = 4096) -> np.ndarray:
    return np.empty((capacity, ROW), dtype=np.int64)


@numba.njit(cache=True, nogil=True)
def _starts_fix(b, i, n):
    return (i + 5 <= n and b[i] == 56 and b[i + 1] == 61 and b[i + 2] == 70 and b[i + 3] == 73
            and b[i + 4] == 88)   # b"8=FIX"


@numba.njit(cache=True, nogil=True)
def _field(b, s, e, t0, t1, t2, tlen):
    """(start, end) of the value of the first ``SOH tag =`` in ``b[s:e]`` (tag given as up to
    three ASCII digits ``t0 t1 t2`` of which ``tlen`` are used), (-1, -1) if absent; the value
    ends at the next SOH (or at ``e - 1`` when there is none, as ``bytes.find`` giving -1 does)."""
    i = s
    last = e - tlen - 2
    while i <= last:
        if b[i] == 1 and b[i + 1] == t0 and (tlen < 2 or b[i + 2] == t1) and (tlen < 3 or b[i + 3] == t2) \
                and b[i + 1 + tlen] == 61:
            v = i + 2 + tlen
            j = v
            while j < e and b[j] != 1:
                j += 1
            if j == e:
                j = e - 1
            return v, j
        i += 1
    return -1, -1


@numba.njit(cache=True, nogil=True)
def _mark(r, kind, start, end):
    r[KIND] = kind
    r[START] = start
    r[END] = end


@numba.njit(cache=True, nogil=True)
def scan_answers(b, pos, n, out):
    """Frame ``b[pos:n]``; returns ``(rows, pos, trim)``: ``rows`` of ``out`` filled, the
    offset where the next scan starts, and whether the bytes before ``max(pos, n - 4)`` are to
    be dropped (no ``8=FIX`` left: ``LiteParser`` keeps only the last four bytes then)."""
    rows = 0
    cap = out.shape[0]
    while rows < cap:
        if not _starts_fix(b, pos, n):
            s = pos
            while s < n and not _starts_fix(b, s, n):
                s += 1
            if s >= n:
                return rows, pos, True
            pos = s
        # "\x019=" inside b[pos:pos + 32]
        lim = min(n, pos + 32)
        e1 = -1
        i = pos
        while i + 3 <= lim:
            if b[i] == 1 and b[i + 1] == 57 and b[i + 2] == 61:
                e1 = i
                break
            i += 1
        r = out[rows]
        if e1 < 0:
            if n - pos >= 32:
                _mark(r, GARBLED_BEGIN, pos, min(n, pos + 32))
                rows += 1
                pos += 1
                continue
            return rows, pos, False
        # BodyLength digits up to the SOH inside b[e1 + 3:e1 + 13]
        e2 = -1
        lim = min(n, e1 + 13)
        i = e1 + 3
        while i < lim:
            if b[i] == 1:
                e2 = i
                break
            i += 1
        digits = e2 > e1 + 3
        length = 0
        if e2 >= 0:
            for k in range(e1 + 3, e2):
                c = b[k]
                if c < 48 or c > 57:
                    digits = False
                    break
                length = length * 10 + (c - 48)
        if e2 < 0 or not digits:
            if e2 < 0 and n - e1 < 13:
                return rows, pos, False
            _mark(r, GARBLED_LENGTH, pos, min(n, e1 + 13))
            rows += 1
            pos += 1
            continue
        end = e2 + 1 + length + 7
        if n < end:
            return rows, pos, False
        # trailer "10=ddd\x01" and the sum of the bytes before it
        ok = (b[end - 7] == 49 and b[end - 6] == 48 and b[end - 5] == 61 and b[end - 1] == 1)
        cs = 0
        if ok:
            for k in range(end - 4, end - 1):
                c = b[k]
                if c < 48 or c > 57:
                    ok = False
                    break
                cs = cs * 10 + (c - 48)
        if ok:
            total = 0
            for k in range(pos, end - 7):
                total += b[k]
            ok = (total & 0xFF) == cs
        if not ok:
            _mark(r, GARBLED_FRAME, pos, end)
            rows += 1
            pos += 1
            continue
        _mark(r, OK, pos, end)
        # MsgType: first "\x0135=" from e2 - 1 on (LiteParser's raw.find(b"\x0135=", e2 - pos - 1))
        ms, me = _field(b, e2 - 1, end, 51, 53, 0, 2)
        if ms < 0:
            ms, me = 0, 0
        r[MT_S] = ms
        r[MT_E] = me
        ss, se = _field(b, pos, end, 51, 52, 0, 2)
        seq = NO_SEQ
        if ss >= 0 and se > ss:
            if se - ss > 18:
                seq = HUGE_SEQ
            else:
                seq = 0
                for k in range(ss, se):
                    c = b[k]
                    if c < 48 or c > 57:
                        seq = NO_SEQ
                        break
                    seq = seq * 10 + (c - 48)
        r[SEQ] = seq
        r[CL_S], r[CL_E] = _field(b, pos, end, 49, 49, 0, 2)
        r[ET_S], r[ET_E] = _field(b, pos, end, 49, 53, 48, 3)
        r[OS_S], r[OS_E] = _field(b, pos, end, 51, 57, 0, 2)
        rows += 1
        pos = end
    return rows, pos, False


def warm_up() -> None:
    """Compile (or load from numba's cache) before the measured run."""
    msg = b"8=FIX.4.4\x019=5\x0135=0\x01"
    msg += b"10=%03d\x01" % (sum(msg) & 0xFF)
    buf = np.frombuffer(msg + b"x", np.uint8)
    scan_answers(buf, 0, len(buf), new_rows(4))
