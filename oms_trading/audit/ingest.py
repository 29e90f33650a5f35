"""Fast path from journal files to Arrow: frame walk, SHA-256 check and JSON parse in numba.

``catch_up`` (the ``oms serve`` projection process, ``oms audit rebuild``) used to pay, per
event, ~3.5 us of Python for the frame walk and its SHA-256 check (``journal._scan``) and ~5 us
for Arrow's JSON reader. Here both run in compiled kernels over the bytes read from the
segment, GIL released:

- ``FastJournalReader`` is ``journal.JournalReader`` with the frame walk of ``_scan`` done by
  ``_scan_kernel``: magic, length, seq continuity and the **same SHA-256 frame check** (OpenSSL's
  ``SHA256_Init/Update/Final`` from the libcrypto that ``hashlib`` uses, called from numba; the
  check field and the stored hex are compared to the digest). Every frame is still verified, as
  before. Whatever the kernel does not accept (an old ``b'OMSJ'`` frame, a bad checksum, a seq
  gap, a short frame...) is handed from that point to the reference ``journal._scan``, so errors,
  torn tails and old journals behave exactly as in ``JournalReader``.
- ``frames_to_arrow`` parses the payloads (compact JSON objects written by ``orjson``: flat, int,
  str or null values) straight into the typed columns of ``projection.ARROW_SCHEMA``. A row the
  kernel does not take as plain (a key that is not a typed column, a value not of its column's
  type or range, a duplicate key, a float/bool/object, a surrogate escape, invalid UTF-8, a
  payload seq that differs from its frame's...) is marked and converted by the reference
  ``projection._payloads_to_arrow_py`` (``record_to_row`` semantics: ``details`` filled), then
  merged back in seq order, so the table is the reference table row for row.

Without libcrypto (no ``SHA256_Init`` symbol) the frame check falls back to ``hashlib`` in a
Python loop (slower, same result).
"""
from __future__ import annotations

import hashlib

import numba
import numpy as np
import pyarrow as pa
from numba.core import cgutils, types
from numba.extending import intrinsic

from . import journal as _j
from .journal import HLEN, JournalReader
from .schema import EVENT_COLUMNS

# ---------------------------------------------------------------------------------------------
# SHA-256 from numba


def _load_sha() -> bool:
    """Make OpenSSL's SHA256_Init/Update/Final callable from compiled code by symbol name (so
    the kernels can be cached): the libcrypto ``hashlib`` is linked against, found and loaded
    as the journal's native chain does. False if there is none (``hashlib`` then checks)."""
    from ._chain_kernel import open_libcrypto
    try:
        open_libcrypto()
    except OSError:
        return False
    return True


HAVE_NATIVE_SHA = _load_sha()

_sha_init = types.ExternalFunction("SHA256_Init", types.int32(types.voidptr))
_sha_update = types.ExternalFunction("SHA256_Update", types.int32(types.voidptr, types.voidptr, types.uintp))
_sha_final = types.ExternalFunction("SHA256_Final", types.int32(types.voidptr, types.voidptr))


@intrinsic
def _ptr(typingctx, arr, off):
    """``&arr[off]`` as a void pointer."""
    sig = types.voidptr(arr, types.intp)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.bitcast(builder.gep(ary.data, [args[1]]), cgutils.voidptr_t)
    return sig, codegen


if HAVE_NATIVE_SHA:
    @numba.njit(nogil=True, cache=True)
    def _sha_into(buf, ps, q, ctx, brace, digest):
        _sha_init(_ptr(ctx, 0))
        _sha_update(_ptr(ctx, 0), _ptr(buf, ps), q - ps)
        _sha_update(_ptr(ctx, 0), _ptr(brace, 0), 1)
        _sha_final(_ptr(digest, 0), _ptr(ctx, 0))
        return True
else:  # pragma: no cover
    @numba.njit(nogil=True, cache=True)
    def _sha_into(buf, ps, q, ctx, brace, digest):
        return False


# ---------------------------------------------------------------------------------------------
# Frame walk

ST_END, ST_LIMIT, ST_SHORT, ST_OTHER = 0, 1, 2, 3
_HASH_KEY = np.frombuffer(b',"hash":"', dtype=np.uint8)
_SUFFIX = _j.HASH_SUFFIX_LEN     # ',"hash":"' + 64 hex + '"}'
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


@numba.njit(nogil=True, cache=True)
def _scan_kernel(buf, start, size, expected_seq, limit, skip_below, ps_out, pe_out, native_sha):
    """Walk ``b'OMSH'`` frames of ``buf[start:size]`` (see ``journal._scan``). Returns
    ``(stop, end_offset, next_seq, count, collected)``; stop is ST_OTHER at the first frame
    this kernel does not accept (the reference scan takes over there). Without the native
    SHA-256 (``native_sha`` False) the digest check is left to the caller, which checks the
    collected frames itself."""
    ctx = np.zeros(256, dtype=np.uint8)
    brace = np.full(1, 125, dtype=np.uint8)   # '}'
    digest = np.zeros(32, dtype=np.uint8)
    hk = _HASH_KEY
    hx = _HEX
    off = start
    seq_expect = expected_seq
    count = 0
    ncoll = 0
    stop = ST_END
    while True:
        if off == size:
            stop = ST_END
            break
        if limit == 0:
            stop = ST_LIMIT
            break
        if size - off < 20:
            stop = ST_SHORT
            break
        if buf[off] != 79 or buf[off + 1] != 77 or buf[off + 2] != 83 or buf[off + 3] != 72:  # OMSH
            stop = ST_OTHER
            break
        n = (np.int64(buf[off + 4]) | (np.int64(buf[off + 5]) << 8) | (np.int64(buf[off + 6]) << 16)
             | (np.int64(buf[off + 7]) << 24))
        seq = np.int64(0)
        for k in range(8):
            seq |= np.int64(buf[off + 12 + k]) << (8 * k)
        ps = off + 20
        pe = ps + n
        if pe > size:
            stop = ST_SHORT
            break
        if n < 77:
            stop = ST_OTHER
            break
        q = pe - 75
        good = buf[pe - 2] == 34 and buf[pe - 1] == 125
        for k in range(9):
            if buf[q + k] != hk[k]:
                good = False
        if not good:
            stop = ST_OTHER
            break
        if native_sha:
            _sha_into(buf, ps, q, ctx, brace, digest)
            for k in range(4):
                if digest[k] != buf[off + 8 + k]:
                    good = False
            if good:
                h = pe - 66
                for k in range(32):
                    d = digest[k]
                    if buf[h + 2 * k] != hx[d >> 4] or buf[h + 2 * k + 1] != hx[d & 15]:
                        good = False
                        break
            if not good:
                stop = ST_OTHER
                break
        if seq != seq_expect:
            stop = ST_OTHER
            break
        if seq >= skip_below:
            ps_out[ncoll] = ps
            pe_out[ncoll] = pe
            ncoll += 1
            limit -= 1
        count += 1
        seq_expect += 1
        off = pe
    return stop, off, seq_expect, count, ncoll


def _py_sha_ok(buf, ps: np.ndarray, pe: np.ndarray) -> int:
    """Without native SHA-256: how many of the frames (in order) pass the digest check."""
    sha = hashlib.sha256
    mv = memoryview(buf)
    for i in range(len(ps)):
        s, e = int(ps[i]), int(pe[i])
        h = sha(mv[s:e - _SUFFIX])
        h.update(b"}")
        d = h.digest()
        if bytes(mv[s - 12:s - 8]) != d[:4] or bytes(mv[e - 66:e - 2]) != d.hex().encode():
            return i
    return len(ps)


class _FastScan:
    __slots__ = ("count", "end", "next_seq", "stop", "stop_off", "stop_msg", "ps", "pe")


def fast_scan(buf, size: int, expected_seq: int, *, skip_below: int = 0, start: int = 0,
              limit: int = -1) -> _FastScan:
    """``journal._scan(collect=True)`` with the OMSH frame checks in a kernel: same result
    (frames as arrays ``ps``/``pe`` of payload starts and ends)."""
    arr = np.frombuffer(buf, dtype=np.uint8) if not isinstance(buf, np.ndarray) else buf
    cap = (size - start) // (HLEN + 77) + 1
    if limit >= 0:
        cap = min(cap, limit)
    ps = np.empty(cap, dtype=np.int64)
    pe = np.empty(cap, dtype=np.int64)
    stop, off, nxt, count, ncoll = _scan_kernel(arr, start, size, expected_seq, limit, skip_below,
                                                ps, pe, HAVE_NATIVE_SHA)
    ps = ps[:ncoll]
    pe = pe[:ncoll]
    if not HAVE_NATIVE_SHA:  # no libcrypto (tests: monkeypatched)
        good = _py_sha_ok(buf, ps, pe)
        if good < ncoll:
            # rewind to the first bad frame: the reference scan takes it from there
            bad_ps = int(ps[good])
            skipped_before = count - ncoll   # frames below skip_below come first
            off = bad_ps - HLEN
            count = skipped_before + good
            nxt = expected_seq + count
            if limit >= 0:
                limit += ncoll - good
            ps, pe = ps[:good], pe[:good]
            ncoll = good
            stop = ST_OTHER
    r = _FastScan()
    if stop == ST_OTHER:
        rest = limit - ncoll if limit >= 0 else -1
        r2 = _j._scan(buf, size, nxt, collect=True, skip_below=skip_below, start=off, limit=rest)
        if r2.frames:
            f = np.asarray(r2.frames, dtype=np.int64).reshape(-1, 2)
            ps = np.concatenate([ps, f[:, 0]])
            pe = np.concatenate([pe, f[:, 1]])
        r.count = count + r2.count
        r.end = r2.end
        r.next_seq = r2.next_seq
        r.stop = r2.stop
        r.stop_off = r2.stop_off
        r.stop_msg = r2.stop_msg
    else:
        r.count = count
        r.end = off
        r.next_seq = nxt
        r.stop = ("end", "limit", "short")[stop]
        r.stop_off = off
        r.stop_msg = (f"{size - off} bytes where a {HLEN}-byte header was expected" if size - off < HLEN
                      else "frame longer than the bytes that remain") if stop == ST_SHORT else ""
    r.ps = ps
    r.pe = pe
    return r


class FastJournalReader(JournalReader):
    """``JournalReader`` whose frame walk runs in ``fast_scan``; ``read_arrow`` gives the next
    records as an Arrow table of ``projection.ARROW_SCHEMA``."""

    def __init__(self, directory, from_seq: int = 1, chunk_bytes: int = 64 << 20):
        super().__init__(directory, from_seq, chunk_bytes)

    def read_payloads(self, max_records: int = 50_000) -> list[memoryview]:
        out: list = []
        for buf, ps, pe in self._read_frames_fast(max_records):
            mv = memoryview(buf)
            out.extend([mv[s:e] for s, e in zip(ps.tolist(), pe.tolist())])
        return out

    def read_ndjson(self, max_records: int = 50_000):
        parts = []
        count = 0
        for buf, ps, pe in self._read_frames_fast(max_records):
            if len(ps):
                parts.append(_j._blank_headers(buf, list(zip(ps.tolist(), pe.tolist()))))
                count += len(ps)
        if not parts:
            return 0, b""
        return count, parts[0] if len(parts) == 1 else b"".join(parts)

    def read_arrow(self, max_records: int = 122_880) -> pa.Table | None:
        """The next complete records (at most ``max_records``) as an Arrow table, or None when
        caught up."""
        tables = [frames_to_arrow(buf, ps, pe) for buf, ps, pe in self._read_frames_fast(max_records)
                  if len(ps)]
        if not tables:
            return None
        return tables[0] if len(tables) == 1 else pa.concat_tables(tables)

    def _scan_chunk(self, buf, n: int, limit: int):
        """``JournalReader._read_frames`` walks the segments; each chunk is scanned by
        ``fast_scan``, so ``_read_frames`` lists ``(buffer, ps, pe)``."""
        r = fast_scan(buf, n, self._seg_seq, skip_below=self.next_seq, limit=limit)
        return r, (buf, r.ps, r.pe), len(r.ps)

    _read_frames_fast = JournalReader._read_frames


# ---------------------------------------------------------------------------------------------
# JSON -> columns

_COLS = [(n, t) for n, t in EVENT_COLUMNS if n != "details"]
_KIND = {"BIGINT": 0, "INTEGER": 1, "VARCHAR": 2}
NCOL = len(_COLS)
_MAXLEN = max(len(n) for n, _ in _COLS)
_NAMES = np.zeros((NCOL, _MAXLEN), dtype=np.uint8)
_NAMELEN = np.zeros(NCOL, dtype=np.int64)
_KINDS = np.zeros(NCOL, dtype=np.int64)
_SLOT = np.zeros(NCOL, dtype=np.int64)     # index among the int columns or the str columns
_INT_COLS: list[str] = []
_STR_COLS: list[str] = []
for _c, (_n, _t) in enumerate(_COLS):
    _b = _n.encode()
    _NAMES[_c, :len(_b)] = np.frombuffer(_b, dtype=np.uint8)
    _NAMELEN[_c] = len(_b)
    _KINDS[_c] = _KIND[_t]
    if _t == "VARCHAR":
        _SLOT[_c] = len(_STR_COLS)
        _STR_COLS.append(_n)
    else:
        _SLOT[_c] = len(_INT_COLS)
        _INT_COLS.append(_n)
_BYLEN = np.full((_MAXLEN + 1, NCOL), -1, dtype=np.int64)
for _c, (_n, _) in enumerate(_COLS):
    _L = len(_n)
    _k = int((_BYLEN[_L] >= 0).sum())
    _BYLEN[_L, _k] = _c
NINT = len(_INT_COLS)
NSTR = len(_STR_COLS)
_SEQ_COL = _COLS.index(("seq", "BIGINT"))
_I64_MAX = np.int64(9223372036854775807)
_I32_LO, _I32_HI = -(1 << 31), (1 << 31) - 1


# bytes that stand for themselves inside a JSON string: printable ASCII but '"' and '\\'
_PLAIN = np.zeros(256, dtype=np.uint8)
_PLAIN[32:128] = 1
_PLAIN[34] = _PLAIN[92] = 0


@numba.njit(nogil=True, cache=True, inline="always")
def _hexval(c):
    if 48 <= c <= 57:
        return c - 48
    if 97 <= c <= 102:
        return c - 87
    if 65 <= c <= 70:
        return c - 55
    return -1


@numba.njit(nogil=True, cache=True, inline="always")
def _name_is(names, c, buf, ks, n):
    """Column ``c``'s name equals the ``n`` key bytes at ``buf[ks:]``."""
    for m in range(n):
        if names[c, m] != buf[ks + m]:
            return False
    return True


@numba.njit(nogil=True, cache=True)
def _parse_kernel(buf, ps, pe, names, namelen, bylen, kinds, slot, ints, ivalid, sstart, slen, sesc,
                  slow, tot):
    """Parse each payload ``buf[ps[i]:pe[i]]`` (a compact JSON object) into the typed columns:
    int columns into ``ints[i, slot]`` / ``ivalid``; str columns as (start, decoded length,
    has-escapes) in ``sstart``/``slen``/``sesc`` (start -1: NULL), ``tot[slot]`` the bytes of each
    str column. ``slow[i] = 1`` when the row is not plain (the reference conversion takes it;
    its entries are reset to NULL). Returns the number of slow rows."""
    n = ps.shape[0]
    nslow = 0
    guess = np.full(names.shape[0] + 1, -1, dtype=np.int64)   # column seen after column k-1 last time
    plain = _PLAIN
    for i in range(n):
        p = ps[i]
        e = pe[i]
        ok = True
        seen = np.uint64(0)
        prev = 0
        if e - p < 2 or buf[p] != 123 or buf[e - 1] != 125:   # { ... }
            ok = False
        p += 1
        if ok and p < e - 1:
            while True:
                # key
                if buf[p] != 34:
                    ok = False
                    break
                ks = p + 1
                k = ks
                while k < e and buf[k] != 34 and buf[k] != 92 and buf[k] >= 32:
                    k += 1
                if k >= e or buf[k] != 34:
                    ok = False       # escape or control char in a key, or no end
                    break
                L = k - ks
                col = -1
                g = guess[prev]
                if g >= 0 and namelen[g] == L and _name_is(names, g, buf, ks, L):
                    col = g
                if col < 0 and L <= names.shape[1]:
                    for j in range(bylen.shape[1]):
                        c = bylen[L, j]
                        if c < 0:
                            break
                        if _name_is(names, c, buf, ks, L):
                            col = c
                            break
                if col < 0:
                    ok = False       # a key that is not a typed column: details
                    break
                guess[prev] = col
                prev = col + 1
                bit = np.uint64(1) << np.uint64(col)
                if seen & bit:
                    ok = False       # duplicate key
                    break
                seen |= bit
                p = k + 1
                if p >= e or buf[p] != 58:   # ':'
                    ok = False
                    break
                p += 1
                if p >= e:
                    ok = False
                    break
                c0 = buf[p]
                kind = kinds[col]
                if c0 == 110:   # null
                    if p + 4 > e or buf[p + 1] != 117 or buf[p + 2] != 108 or buf[p + 3] != 108:
                        ok = False
                        break
                    p += 4
                elif c0 == 34:  # string
                    if kind != 2:
                        ok = False
                        break
                    s = p + 1
                    q = s
                    dlen = 0
                    esc = 0
                    while q < e:
                        q0 = q
                        while q < e and plain[buf[q]]:   # the common bytes: one lookup each
                            q += 1
                        dlen += q - q0
                        if q >= e:
                            break
                        b = buf[q]
                        if b == 34:
                            break
                        if b < 32:
                            ok = False
                            break
                        if b == 92:
                            esc = 1
                            if q + 1 >= e:
                                ok = False
                                break
                            b2 = buf[q + 1]
                            if b2 == 34 or b2 == 92 or b2 == 47 or b2 == 98 or b2 == 102 or b2 == 110 \
                                    or b2 == 114 or b2 == 116:
                                dlen += 1
                                q += 2
                            elif b2 == 117:
                                if q + 6 > e:
                                    ok = False
                                    break
                                cp = 0
                                for m in range(4):
                                    h = _hexval(buf[q + 2 + m])
                                    if h < 0:
                                        cp = -1
                                        break
                                    cp = cp * 16 + h
                                if cp < 0 or (0xD800 <= cp <= 0xDFFF):
                                    ok = False   # surrogates: the reference decides
                                    break
                                dlen += 1 if cp < 0x80 else (2 if cp < 0x800 else 3)
                                q += 6
                            else:
                                ok = False
                                break
                        elif b < 128:
                            dlen += 1
                            q += 1
                        else:
                            # UTF-8 sequence: validate
                            if 0xC2 <= b <= 0xDF:
                                need = 1
                                lo, hi = 0x80, 0xBF
                            elif b == 0xE0:
                                need = 2
                                lo, hi = 0xA0, 0xBF
                            elif 0xE1 <= b <= 0xEC or b == 0xEE or b == 0xEF:
                                need = 2
                                lo, hi = 0x80, 0xBF
                            elif b == 0xED:
                                need = 2
                                lo, hi = 0x80, 0x9F
                            elif b == 0xF0:
                                need = 3
                                lo, hi = 0x90, 0xBF
                            elif 0xF1 <= b <= 0xF3:
                                need = 3
                                lo, hi = 0x80, 0xBF
                            elif b == 0xF4:
                                need = 3
                                lo, hi = 0x80, 0x8F
                            else:
                                ok = False
                                break
                            if q + need >= e:
                                ok = False
                                break
                            b1 = buf[q + 1]
                            if b1 < lo or b1 > hi:
                                ok = False
                                break
                            for m in range(2, need + 1):
                                bm = buf[q + m]
                                if bm < 0x80 or bm > 0xBF:
                                    ok = False
                                    break
                            if not ok:
                                break
                            dlen += need + 1
                            q += need + 1
                    if not ok:
                        break
                    if q >= e:
                        ok = False
                        break
                    sl = slot[col]
                    sstart[i, sl] = s
                    slen[i, sl] = dlen
                    sesc[i, sl] = esc
                    p = q + 1
                elif c0 == 45 or (48 <= c0 <= 57):   # integer
                    if kind == 2:
                        ok = False
                        break
                    neg = c0 == 45
                    if neg:
                        p += 1
                    ds = p
                    v = np.int64(0)
                    over = False
                    # 18 digits cannot overflow int64: no check in the loop
                    while p < e and p - ds < 18 and 48 <= buf[p] <= 57:
                        v = v * 10 + np.int64(buf[p] - 48)
                        p += 1
                    if p < e and 48 <= buf[p] <= 57:   # a 19th digit: at the edge of int64
                        d = np.int64(buf[p] - 48)
                        if v > np.int64(922337203685477580) or (v == np.int64(922337203685477580)
                                                                and d > (8 if neg else 7)):
                            over = True
                        else:
                            v = -v * 10 - d if neg else v * 10 + d   # -2**63 fits only this way
                            neg = False
                            p += 1
                            if p < e and 48 <= buf[p] <= 57:
                                over = True                          # 20 digits and more
                    nd = p - ds
                    if over or nd == 0 or (nd > 1 and buf[ds] == 48):
                        ok = False
                        break
                    if p < e and (buf[p] == 46 or buf[p] == 101 or buf[p] == 69):   # float
                        ok = False
                        break
                    if neg:
                        v = -v
                    if kind == 1 and (v < -2147483648 or v > 2147483647):
                        ok = False
                        break
                    sl = slot[col]
                    ints[i, sl] = v
                    ivalid[i, sl] = 1
                else:
                    ok = False   # true/false/object/array/float...: the reference decides
                    break
                # , or }
                if p >= e:
                    ok = False
                    break
                if buf[p] == 44:
                    p += 1
                    if p >= e - 1:
                        ok = False
                        break
                    continue
                if buf[p] == 125 and p == e - 1:
                    break
                ok = False
                break
        if ok:
            # the payload's seq must be the frame's (header bytes 12..19 before the payload)
            fseq = np.int64(0)
            h = ps[i] - 8
            for m in range(8):
                fseq |= np.int64(buf[h + m]) << (8 * m)
            s0 = slot[0]
            if not ivalid[i, s0] or ints[i, s0] != fseq:
                ok = False
        if not ok:
            slow[i] = 1
            nslow += 1
            for j in range(sstart.shape[1]):
                sstart[i, j] = -1
                slen[i, j] = 0
            for j in range(ivalid.shape[1]):
                ivalid[i, j] = 0
        else:
            for j in range(sstart.shape[1]):
                tot[j] += slen[i, j]
    return nslow


@numba.njit(nogil=True, cache=True)
def _gather_kernel(buf, sstart, slen, sesc, slow, bases, offsets, data, svalid):
    """Str column j: Arrow offsets ``offsets[j]`` (int32, relative to the column's part of
    ``data``, which starts at ``bases[j]``) and the decoded bytes, in one pass over the rows
    (row-major: the payloads are read once, in order)."""
    n, ncol = sstart.shape
    cur = bases[:ncol].copy()
    for j in range(ncol):
        offsets[j, 0] = 0
    for i in range(n):
        sl = slow[i]
        for j in range(ncol):
            s = sstart[i, j]
            pos = cur[j]
            if s >= 0 and not sl:
                svalid[j, i] = 1
                L = slen[i, j]
                if not sesc[i, j]:
                    for m in range(L):
                        data[pos + m] = buf[s + m]
                else:
                    w = pos
                    q = s
                    while w < pos + L:
                        b = buf[q]
                        if b != 92:
                            data[w] = b
                            w += 1
                            q += 1
                            continue
                        b2 = buf[q + 1]
                        if b2 == 117:
                            cp = 0
                            for m in range(4):
                                cp = cp * 16 + _hexval(buf[q + 2 + m])
                            if cp < 0x80:
                                data[w] = cp
                                w += 1
                            elif cp < 0x800:
                                data[w] = 0xC0 | (cp >> 6)
                                data[w + 1] = 0x80 | (cp & 0x3F)
                                w += 2
                            else:
                                data[w] = 0xE0 | (cp >> 12)
                                data[w + 1] = 0x80 | ((cp >> 6) & 0x3F)
                                data[w + 2] = 0x80 | (cp & 0x3F)
                                w += 3
                            q += 6
                        else:
                            if b2 == 98:
                                data[w] = 8
                            elif b2 == 102:
                                data[w] = 12
                            elif b2 == 110:
                                data[w] = 10
                            elif b2 == 114:
                                data[w] = 13
                            elif b2 == 116:
                                data[w] = 9
                            else:
                                data[w] = b2      # " \\ /
                            w += 1
                            q += 2
                pos += L
                cur[j] = pos
            offsets[j, i + 1] = pos - bases[j]
    return 0


def _validity(valid: np.ndarray):
    """(Arrow validity buffer or None, null count) of a 0/1 uint8 array."""
    n = valid.shape[0]
    nn = int(np.count_nonzero(valid))
    if nn == n:
        return None, 0
    return pa.py_buffer(np.packbits(valid, bitorder="little")), n - nn


def frames_to_arrow(buf, ps: np.ndarray, pe: np.ndarray) -> pa.Table:
    """Arrow table (``projection.ARROW_SCHEMA``) of the journal payloads ``buf[ps[i]:pe[i]]``
    (frames already checked: the 8 bytes before each payload are its frame's seq)."""
    from .projection import ARROW_SCHEMA, _payloads_to_arrow_py
    n = len(ps)
    if n == 0:
        return ARROW_SCHEMA.empty_table()
    arr = np.frombuffer(buf, dtype=np.uint8) if not isinstance(buf, np.ndarray) else buf
    ints = np.zeros((n, NINT), dtype=np.int64)
    ivalid = np.zeros((n, NINT), dtype=np.uint8)
    pos_t = np.int32 if len(arr) < (1 << 31) else np.int64
    sstart = np.full((n, NSTR), -1, dtype=pos_t)
    slen = np.zeros((n, NSTR), dtype=np.int32)
    sesc = np.zeros((n, NSTR), dtype=np.uint8)
    slow = np.zeros(n, dtype=np.uint8)
    tot = np.zeros(NSTR, dtype=np.int64)
    nslow = _parse_kernel(arr, ps, pe, _NAMES, _NAMELEN, _BYLEN, _KINDS, _SLOT, ints, ivalid, sstart,
                          slen, sesc, slow, tot)
    if int(tot.max()) >= (1 << 31) - 1:  # pragma: no cover - int32 offsets: split the batch
        h = n // 2
        return pa.concat_tables([frames_to_arrow(buf, ps[:h], pe[:h]), frames_to_arrow(buf, ps[h:], pe[h:])])
    bases = np.zeros(NSTR + 1, dtype=np.int64)
    np.cumsum(tot, out=bases[1:])
    offsets = np.empty((NSTR, n + 1), dtype=np.int32)
    data = np.empty(max(int(bases[-1]), 1), dtype=np.uint8)
    svalid_t = np.zeros((NSTR, n), dtype=np.uint8)
    _gather_kernel(arr, sstart, slen, sesc, slow, bases, offsets, data, svalid_t)
    ints_t = np.ascontiguousarray(ints.T)
    ivalid_t = np.ascontiguousarray(ivalid.T)
    cols = {}
    for j, name in enumerate(_INT_COLS):
        vb, nulls = _validity(ivalid_t[j])
        typ = ARROW_SCHEMA.field(name).type
        vals = ints_t[j] if typ == pa.int64() else ints_t[j].astype(np.int32)
        cols[name] = pa.Array.from_buffers(typ, n, [vb, pa.py_buffer(vals)], null_count=nulls)
    for j, name in enumerate(_STR_COLS):
        vb, nulls = _validity(svalid_t[j])
        d = data[bases[j]:bases[j + 1]]
        cols[name] = pa.Array.from_buffers(pa.string(), n, [vb, pa.py_buffer(offsets[j]), pa.py_buffer(d)],
                                           null_count=nulls)
    cols["details"] = pa.nulls(n, pa.string())
    out = pa.Table.from_arrays([cols[f.name] for f in ARROW_SCHEMA], schema=ARROW_SCHEMA)
    if nslow:
        mv = memoryview(buf)
        idx = np.flatnonzero(slow)
        fixed = _payloads_to_arrow_py([mv[int(ps[i]):int(pe[i])] for i in idx])
        keep = pa.array(slow == 0)
        out = pa.concat_tables([out.filter(keep), fixed]).sort_by("seq")
    return out


def warm() -> None:
    """Compile the kernels (a few seconds the first time)."""
    from .projection import ARROW_SCHEMA  # noqa: F401
    rec = b'{"type":"x","seq":1,"prev_hash":"' + b"0" * 64 + b'"'
    h = hashlib.sha256(rec + b"}").digest()
    payload = rec + b',"hash":"' + h.hex().encode() + b'"}'
    frame = _j._HEADER_SHA.pack(_j.MAGIC_SHA, len(payload), h[:4], 1) + payload
    r = fast_scan(frame, len(frame), 1)
    frames_to_arrow(frame, r.ps, r.pe)
