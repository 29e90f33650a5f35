"""The numba kernel of ``chain_native`` (imported only when a journal opens: numba loads in
~0.3 s, which tools that read the journal need not pay). See ``chain_native`` for the design."""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.cpython.unsafe.numbers import trailing_zeros
from numba.extending import intrinsic

from .chain_native import (BAD_ARRAY, BAD_BOOL, BAD_FLOAT, BAD_OBJECT, BAD_SHAPE, CTX_BYTES, HEX_STRIDE, ROT_DAILY,
                           ROT_DAY, ROT_DAY_SET, ROT_LIMIT, ROT_TAIL, ST_BAD_KEY, ST_BAD_KIND, ST_BAD_REC,
                           ST_BAD_VAL, ST_CAP, ST_CUTS, ST_FIRST_SEQ, ST_OUT, WS_CHAIN, WS_HEX, find_libcrypto)


def open_libcrypto() -> None:
    """Make libcrypto's SHA-256 symbols resolvable by numba's linker (before the first call)."""
    import llvmlite.binding as ll

    path = find_libcrypto()
    if not path:
        raise OSError("libcrypto not found")
    ll.load_library_permanently(path)
    for sym in ("SHA256_Init", "SHA256_Update", "SHA256_Final"):
        if not ll.address_of_symbol(sym):
            raise OSError(f"{path} has no {sym}")


# Declared by symbol name (resolved when the kernel is linked, after open_libcrypto), not as
# ctypes pointers: a kernel holding a ctypes address cannot go into numba's on-disk cache.
_u64 = types.uint64
_sha_init = types.ExternalFunction("SHA256_Init", types.int32(_u64))
_sha_update = types.ExternalFunction("SHA256_Update", types.int32(_u64, _u64, _u64))
_sha_final = types.ExternalFunction("SHA256_Final", types.int32(_u64, _u64))
_memcpy = types.ExternalFunction("memcpy", _u64(_u64, _u64, _u64))
_HEXDIG = np.frombuffer(b"0123456789abcdef", dtype=np.uint8).copy()
_KEY = np.frombuffer(b'"prev_hash":"', dtype=np.uint8).copy()   # 13 bytes
_HKEY = np.frombuffer(b',"hash":"', dtype=np.uint8).copy()      # 9 bytes


@intrinsic
def _data_address(typingctx, buf):
    """Address of the first byte of a buffer argument (``bytes`` has no ``.ctypes`` in numba)."""
    sig = types.uint64(buf)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.ptrtoint(ary.data, context.get_value_type(types.uint64))

    return sig, codegen


NS_PER_DAY = 86_400 * 1_000_000_000


@njit(cache=True, boundscheck=False)
def _refuse(st, kind, i, key, val):
    """Record why record ``i`` is refused (``key``/``val``: offsets in its body); -1."""
    st[ST_BAD_KIND] = kind
    st[ST_BAD_REC] = i
    st[ST_BAD_KEY] = key
    st[ST_BAD_VAL] = val
    return -1


@intrinsic
def _load8(typingctx, addr):
    """The 8 bytes at address ``addr`` as a little-endian uint64 (any alignment)."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.load(builder.inttoptr(args[0], ir.IntType(64).as_pointer()), align=1)

    return sig, codegen


_ONES = np.uint64(0x0101010101010101)
_HIGHS = np.uint64(0x8080808080808080)
_QUOTES = np.uint64(0x2222222222222222)        # '"' in every byte
_BACKSLASHES = np.uint64(0x5C5C5C5C5C5C5C5C)   # '\\' in every byte


@njit(cache=True, boundscheck=False)
def _string_end(b, p, j, end):
    """Index just past the JSON string whose opening quote is ``b[j]`` (``p``: the address of
    ``b[0]``), ``end`` if unterminated. A backslash escapes the byte after it; any other quote
    ends the string. Eight bytes at a time: the lowest byte of a word that is a quote or a
    backslash is found with the "has zero byte" bit trick (exact for the lowest match)."""
    j += 1
    while j + 8 <= end:
        w = _load8(p + np.uint64(j))
        x = w ^ _QUOTES
        y = w ^ _BACKSLASHES
        m = (((x - _ONES) & ~x) | ((y - _ONES) & ~y)) & _HIGHS
        if m == 0:
            j += 8
            continue
        j += np.int64(trailing_zeros(m) >> 3)
        if b[j] == 34:
            return j + 1
        j += 2
    while j < end:
        c = b[j]
        if c == 34:
            return j + 1
        if c == 92:
            j += 1
        j += 1
    return end


_COLONS = np.uint64(0x3A3A3A3A3A3A3A3A)       # ':' in every byte


@njit(cache=True, boundscheck=False)
def _scan_fast(b, p, ip, end):
    """The common case of ``_scan``, about a third cheaper: it jumps from colon to colon (eight
    bytes at a time) instead of walking every string. A colon right after a quote is a key's
    end unless the quote is escaped (a backslash before it: undecided) or opens a string value
    that starts with a colon (then the byte after the colon is not a value's first byte:
    undecided). So every value's first byte is looked at: a string or null is fine, an integer
    is read to its end (a ``.``, ``e`` or ``E`` there: undecided), anything else is undecided.
    The record ends at its last key, the journal's ``,"hash":"`` + 64 chars + ``"}``.

    Returns ``_scan``'s ``(end, has integer "ts", its day)`` for a record that passes, or
    ``(-1, ...)`` when undecided: ``_scan`` then walks the record and names what is wrong, if
    anything. Raw JSON (``orjson.Fragment``) it lets through may be malformed: never pass one."""
    has_ts = False
    day = np.int64(0)
    if b[ip] != 123:
        return -1, has_ts, day
    j = ip
    while j + 8 <= end:
        x = _load8(p + np.uint64(j)) ^ _COLONS
        m = ((x - _ONES) & ~x) & _HIGHS
        while m != 0:
            k = j + np.int64(trailing_zeros(m) >> 3)
            m &= m - np.uint64(1)
            if b[k - 1] != 34:
                continue                                  # a colon inside a string
            if b[k - 2] == 92 or k + 68 > end:
                return -1, has_ts, day
            v = b[k + 1]
            if v == 34:
                if b[k - 2] == 104 and b[k - 3] == 115 and b[k - 4] == 97 and b[k - 5] == 104 \
                        and b[k - 6] == 34 and b[k - 7] == 44:   # ,"hash": (the last key)
                    if b[k + 66] == 34 and b[k + 67] == 125:
                        return k + 68, has_ts, day
                    return -1, has_ts, day
                continue
            if v == 110:                                  # null
                continue
            t = k + 1
            if v == 45:
                t += 1
            d0 = t
            n = np.uint64(0)
            while t < end and b[t] >= 48 and b[t] <= 57:
                n = n * np.uint64(10) + np.uint64(b[t] - 48)
                t += 1
            if t == d0 or t >= end or (b[t] != 44 and b[t] != 125):
                return -1, has_ts, day                    # not an integer (a float?)
            if b[k - 2] == 115 and b[k - 3] == 116 and b[k - 4] == 34 and (b[k - 5] == 44 or b[k - 5] == 123):
                has_ts = True                             # ,"ts": or {"ts":
                d = np.uint64(NS_PER_DAY)
                if v == 45:                               # floor division, as Python's //
                    day = -np.int64((n + d - np.uint64(1)) // d)
                else:
                    day = np.int64(n // d)
        j += 8
    return -1, has_ts, day


@njit(cache=True, boundscheck=False)
def _scan(b, p, ip, end, st, i):
    """Walk the record starting at ``b[ip]`` as the flat JSON object ``orjson.dumps`` writes
    for a dict of str keys and int, str or None values: ``{"key":value,...}``, a value being a
    string, ``null`` or an integer (``-?[0-9]+``). Returns ``(index just past its closing
    brace, has an integer "ts", its UTC day)``, or ``(-1, ...)`` after ``_refuse`` names the
    first value of another kind: a float (digits then ``.``, ``e`` or ``E``), ``true``/``false``,
    an array, a nested object, or anything that is not this shape (raw JSON of an
    ``orjson.Fragment``). Keys and strings are skipped quote to quote, honouring escapes."""
    has_ts = False
    day = np.int64(0)
    if ip >= end or b[ip] != 123:
        return _refuse(st, BAD_SHAPE, i, 0, 0), has_ts, day
    j = ip + 1
    while True:
        k0 = j
        if j >= end or b[j] != 34:
            return _refuse(st, BAD_SHAPE, i, k0 - ip, k0 - ip), has_ts, day
        j = _string_end(b, p, j, end)
        is_ts = j - k0 == 4 and b[k0 + 1] == 116 and b[k0 + 2] == 115      # "ts"
        if j >= end or b[j] != 58:
            return _refuse(st, BAD_SHAPE, i, k0 - ip, j - ip), has_ts, day
        j += 1
        v0 = j
        if j >= end:
            return _refuse(st, BAD_SHAPE, i, k0 - ip, v0 - ip), has_ts, day
        c = b[j]
        if c == 34:                                   # a string
            j = _string_end(b, p, j, end)
        elif c == 110:                                # null
            if j + 4 > end or b[j + 1] != 117 or b[j + 2] != 108 or b[j + 3] != 108:
                return _refuse(st, BAD_SHAPE, i, k0 - ip, v0 - ip), has_ts, day
            j += 4
        elif c == 45 or (c >= 48 and c <= 57):        # an integer (or a float)
            neg = c == 45
            if neg:
                j += 1
            d0 = j
            v = np.uint64(0)                          # orjson writes ints of -2**63 .. 2**64-1
            while j < end and b[j] >= 48 and b[j] <= 57:
                v = v * np.uint64(10) + np.uint64(b[j] - 48)
                j += 1
            if j < end and (b[j] == 46 or b[j] == 101 or b[j] == 69):
                return _refuse(st, BAD_FLOAT, i, k0 - ip, v0 - ip), has_ts, day
            if j == d0:
                return _refuse(st, BAD_SHAPE, i, k0 - ip, v0 - ip), has_ts, day
            if is_ts:
                has_ts = True
                d = np.uint64(NS_PER_DAY)
                if neg:                               # floor division, as Python's //
                    day = -np.int64((v + d - np.uint64(1)) // d)
                else:
                    day = np.int64(v // d)
        elif c == 116 or c == 102:
            return _refuse(st, BAD_BOOL, i, k0 - ip, v0 - ip), has_ts, day
        elif c == 91:
            return _refuse(st, BAD_ARRAY, i, k0 - ip, v0 - ip), has_ts, day
        elif c == 123:
            return _refuse(st, BAD_OBJECT, i, k0 - ip, v0 - ip), has_ts, day
        else:
            return _refuse(st, BAD_SHAPE, i, k0 - ip, v0 - ip), has_ts, day
        if j >= end:
            return _refuse(st, BAD_SHAPE, i, k0 - ip, v0 - ip), has_ts, day
        c = b[j]
        if c == 125:
            return j + 1, has_ts, day
        if c != 44:
            return _refuse(st, BAD_SHAPE, i, k0 - ip, v0 - ip), has_ts, day
        j += 1


@njit(cache=True, boundscheck=False)
def encode(blob, ws, st):
    """Check, chain, hash and frame every record of ``blob`` (the bodies ``Journal.append``
    encoded, back to back; seqs from ``st[ST_FIRST_SEQ]``, which is advanced past them) into
    the output area of ``ws``.

    ``ws`` (uint8): the SHA-256 context, the chain (the previous record's hex hash on entry,
    the last record's on return), the records' hex hashes (each followed by a space; room for
    ``st[ST_CAP]`` records), and from ``st[ST_OUT]`` on the frames. ``st`` (int64): the rotation
    state, the first seq, the refusal details and the chunks.

    Each record is first walked (``_scan_fast``, else ``_scan``): it must be a flat JSON object
    of string, integer and null values; its end is found there, so the bodies need no length
    list. A record that is not is refused: the call returns -1 with ``st[ST_BAD_KIND]``,
    ``st[ST_BAD_REC]`` (its index), ``st[ST_BAD_KEY]`` and ``st[ST_BAD_VAL]`` (offsets of the key
    and the value in its body) set, and nothing of the kept state changed (chain head, rotation
    state, first seq), so the caller can drop the batch and go on.

    Rotation, the rule of the Python path (``Journal.append`` in journal.py): a record starts a
    new segment when the open one has data and the frame would take it past ``st[ROT_LIMIT]``
    bytes, or (``ROT_DAILY``) when its integer ``ts`` falls on another UTC day than the
    segment's; a segment's day is that of its first record with an integer ``ts``. ``st``
    carries the open segment's size and day in and out. Chunk ``c`` (a run of frames for one
    segment) starts at record ``cuts[4c]``, byte ``cuts[4c+1]`` of the output; ``cuts[4c+2]``
    is its day if ``cuts[4c+3]`` (``cuts`` is ``st[ST_CUTS:]``).

    Returns the bytes written, plus ``(chunks - 1) << 40`` when the records span more than one
    segment; -1 when a record is refused. The caller checks that the bytes are
    ``len(blob) + 20 * records``: that many records were found."""
    nblob = len(blob)
    cap = st[ST_CAP]
    out_off = st[ST_OUT]
    room = len(ws) - out_off
    ws_p = np.uint64(ws.ctypes.data)
    prev_p = ws_p + np.uint64(WS_CHAIN)   # the previous record's hex hash
    c = ws_p                              # the SHA-256 context
    md = ws[CTX_BYTES - 32:CTX_BYTES]     # the digest goes into the context's spare tail
    md_p = ws_p + np.uint64(CTX_BYTES - 32)
    out = ws[out_off:]
    out_p = ws_p + np.uint64(out_off)
    blob_p = _data_address(blob)
    cuts = st[ST_CUTS:]
    tail = st[ROT_TAIL]
    day = st[ROT_DAY]
    day_set = st[ROT_DAY_SET]
    limit = st[ROT_LIMIT]
    daily = st[ROT_DAILY] != 0
    nch = 0
    cuts[0] = 0
    cuts[1] = 0
    ip = 0
    op = 0
    i = 0
    seq = st[ST_FIRST_SEQ]
    while ip < nblob:
        rec_end, has_ts, ts_day = _scan_fast(blob, blob_p, ip, nblob)
        if rec_end < 0:
            rec_end, has_ts, ts_day = _scan(blob, blob_p, ip, nblob, st, i)
            if rec_end < 0:
                return -1
        n = rec_end - ip
        ps = op + 20
        e = ps + n
        if i >= cap or e > room:   # more records than appended (cannot happen for orjson's bodies)
            return _refuse(st, BAD_SHAPE, i, 0, 0)
        _memcpy(out_p + np.uint64(ps), blob_p + np.uint64(ip), np.uint64(n))
        # the hash placeholder: the last key, ',"hash":"' + 64 chars + '"}'
        q = e - 75
        if n < 162:                # shortest record: {"seq":N,"prev_hash":...,"hash":...}
            return _refuse(st, BAD_SHAPE, i, 0, 0)
        for k in range(9):
            if out[q + k] != _HKEY[k]:
                return _refuse(st, BAD_SHAPE, i, 0, 0)
        # rotation
        frame = 20 + n
        seal = False
        if tail != 0:
            if tail + frame > limit:
                seal = True
            elif daily and has_ts and (day_set == 0 or ts_day != day):
                seal = True
        if seal:
            cuts[4 * nch + 2] = day
            cuts[4 * nch + 3] = day_set
            nch += 1
            cuts[4 * nch] = i
            cuts[4 * nch + 1] = op
            tail = 0
            day_set = 0
        if tail == 0 and day_set == 0 and has_ts:
            day = ts_day
            day_set = 1
        tail += frame
        # the prev_hash placeholder: normally the key just before "hash"; else (the event
        # carried a prev_hash key of its own, kept at its place) search for the key
        ph = q - 65
        ok = out[q - 79] == 44 or out[q - 79] == 123     # ',' or '{'
        if ok:
            for k in range(13):
                if out[q - 78 + k] != _KEY[k]:
                    ok = False
                    break
        if not ok:
            ph = -1
            j = ps + 1
            while j + 13 + 65 <= q:
                if out[j - 1] == 44 or out[j - 1] == 123:
                    hit = True
                    for k in range(13):
                        if out[j + k] != _KEY[k]:
                            hit = False
                            break
                    if hit:
                        ph = j + 13
                        break
                j += 1
            if ph < 0:
                return _refuse(st, BAD_SHAPE, i, 0, 0)
        _memcpy(out_p + np.uint64(ph), prev_p, np.uint64(64))
        # canonical bytes: the body up to ',"hash":"', then '}'
        out[q] = 125
        _sha_init(c)
        _sha_update(c, out_p + np.uint64(ps), np.uint64(q + 1 - ps))
        _sha_final(md_p, c)
        out[q] = 44
        x = WS_HEX + i * HEX_STRIDE        # the hex hash, then a space, into ws
        for k in range(32):
            b = md[k]
            ws[x + 2 * k] = _HEXDIG[b >> 4]
            ws[x + 2 * k + 1] = _HEXDIG[b & 15]
        ws[x + 64] = 32
        prev_p = ws_p + np.uint64(x)
        _memcpy(out_p + np.uint64(e - 66), prev_p, np.uint64(64))
        # header '<4sI4sq': magic, payload length, first 4 digest bytes, seq
        out[op] = 79      # O
        out[op + 1] = 77  # M
        out[op + 2] = 83  # S
        out[op + 3] = 72  # H
        for k in range(4):
            out[op + 4 + k] = (n >> (8 * k)) & 255
            out[op + 8 + k] = md[k]
        s = seq
        for k in range(8):
            out[op + 12 + k] = s & 255
            s >>= 8
        seq += 1
        ip = rec_end
        op = e
        i += 1
    cuts[4 * nch + 2] = day
    cuts[4 * nch + 3] = day_set
    _memcpy(ws_p + np.uint64(WS_CHAIN), prev_p, np.uint64(64))   # the chain's new head
    st[ST_FIRST_SEQ] = seq                                          # the next call's first seq
    st[ROT_TAIL] = tail
    st[ROT_DAY] = day
    st[ROT_DAY_SET] = day_set
    return op + (nch << 40)
