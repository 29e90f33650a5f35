"""The numba kernel of ``chain_native`` (imported only when a journal opens: numba loads in
~0.3 s, which tools that read the journal need not pay). See ``chain_native`` for the design."""
from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

from .chain_native import CTX_BYTES, WS_CHAIN, WS_HEX, ST_CUTS, find_libcrypto


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


@intrinsic
def _data_address(typingctx, buf):
    """Address of the first byte of a buffer argument (``bytes`` has no ``.ctypes`` in numba)."""
    sig = types.uint64(buf)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.ptrtoint(ary.data, context.get_value_type(types.uint64))

    return sig, codegen


NS_PER_DAY = 86_400 * 1_000_000_000

# st[0:5]: the open segment's state, kept between flushes; st[5]: the first record's seq
from .chain_native import ROT_TAIL, ROT_DAY, ROT_DAY_SET, ROT_LIMIT, ROT_DAILY, ST_FIRST_SEQ  # noqa: E402


@njit(cache=True, nogil=True, boundscheck=False)
def _ts_day(out, ps, e):
    """``(True, UTC day)`` of the record ``out[ps:e]`` if its ``"ts"`` is an integer, else
    ``(False, 0)``. The key is found as ``,"ts":`` or ``{"ts":`` (inside a JSON string a quote is
    always escaped, so that cannot be a value's text) and is normally the second key."""
    j = ps + 1
    while j + 5 < e:
        if out[j] == 34 and out[j + 1] == 116 and out[j + 2] == 115 and out[j + 3] == 34 \
                and out[j + 4] == 58 and (out[j - 1] == 44 or out[j - 1] == 123):
            k = j + 5
            neg = out[k] == 45
            if neg:
                k += 1
            if out[k] < 48 or out[k] > 57:
                return False, np.int64(0)           # a string or null: not an int
            v = np.uint64(0)                         # orjson writes ints of -2**63 .. 2**64-1
            while out[k] >= 48 and out[k] <= 57:
                v = v * np.uint64(10) + np.uint64(out[k] - 48)
                k += 1
            d = np.uint64(NS_PER_DAY)
            if neg:                                  # floor division, as Python's //
                return True, -np.int64((v + d - np.uint64(1)) // d)
            return True, np.int64(v // d)
        j += 1
    return False, np.int64(0)


@njit(cache=True, nogil=True, boundscheck=False)
def encode(blob, lens, out, ws, st):
    """Frame every record of ``blob`` (bodies of ``lens`` bytes each, seqs from
    ``st[ST_FIRST_SEQ]``, which is advanced past them) into ``out``. ``ws`` (bytes) holds the
    SHA-256 context, the chain (the previous record's hex hash on entry, the last record's on
    return) and the records' hex hashes, each followed by a space; ``st`` (int64) the rotation
    state and the chunks.

    Rotation, the rule of the Python path (``Journal.append`` in journal.py): a record starts a
    new segment when the open one has data and the frame would take it past ``rot[ROT_LIMIT]``
    bytes, or (``ROT_DAILY``) when its integer ``ts`` falls on another UTC day than the
    segment's; a segment's day is that of its first record with an integer ``ts``. ``rot`` carries the open segment's size and day
    in and out. Chunk ``c`` (a run of frames for one segment) starts at record ``cuts[4c]``,
    byte ``cuts[4c+1]`` of ``out``; ``cuts[4c+2]`` is its day if ``cuts[4c+3]`` (``cuts`` is
    ``st[ST_CUTS:]``).

    Returns ``(bytes written, chunks, first chunk's day, whether it has one)``, or
    ``(-1 - i, 0, 0, 0)`` if record i is too short or has no ``prev_hash`` placeholder (cannot
    happen for bodies built by ``Journal._append_native``)."""
    n_rec = len(lens)
    ctx = ws[:CTX_BYTES]
    ws_p = np.uint64(ws.ctypes.data)
    prev_p = ws_p + np.uint64(WS_CHAIN)   # the previous record's hex hash
    rot = st
    cuts = st[ST_CUTS:]
    first_seq = st[ST_FIRST_SEQ]
    c = np.uint64(ctx.ctypes.data)
    md = ctx[CTX_BYTES - 32:]           # the digest goes into the context's spare tail
    md_p = np.uint64(md.ctypes.data)
    out_p = np.uint64(out.ctypes.data)
    blob_p = _data_address(blob)
    tail = rot[ROT_TAIL]
    day = rot[ROT_DAY]
    day_set = rot[ROT_DAY_SET]
    limit = rot[ROT_LIMIT]
    daily = rot[ROT_DAILY] != 0
    nch = 0
    cuts[0] = 0
    cuts[1] = 0
    ip = 0
    op = 0
    seq = first_seq
    for i in range(n_rec):
        n = lens[i]
        if n < 162 or ip + n > len(blob):   # shortest record: {"seq":N,"prev_hash":...,"hash":...}
            return -1 - i, 0, np.int64(0), np.int64(0)
        ps = op + 20
        e = ps + n
        _memcpy(out_p + np.uint64(ps), blob_p + np.uint64(ip), np.uint64(n))
        # rotation
        frame = 20 + n
        parsed = False
        has_ts = False
        ts_day = np.int64(0)
        seal = False
        if tail != 0:
            if tail + frame > limit:
                seal = True
            elif daily:
                has_ts, ts_day = _ts_day(out, ps, e)
                parsed = True
                if has_ts and (day_set == 0 or ts_day != day):
                    seal = True
        if seal:
            cuts[4 * nch + 2] = day
            cuts[4 * nch + 3] = day_set
            nch += 1
            cuts[4 * nch] = i
            cuts[4 * nch + 1] = op
            tail = 0
            day_set = 0
        if tail == 0 and day_set == 0:
            if not parsed:
                has_ts, ts_day = _ts_day(out, ps, e)
            if has_ts:
                day = ts_day
                day_set = 1
        tail += frame
        q = e - 75                       # ',"hash":"' + 64 hex + '"}'
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
                return -1 - i, 0, np.int64(0), np.int64(0)
        _memcpy(out_p + np.uint64(ph), prev_p, np.uint64(64))
        # canonical bytes: the body up to ',"hash":"', then '}'
        out[q] = 125
        _sha_init(c)
        _sha_update(c, out_p + np.uint64(ps), np.uint64(q + 1 - ps))
        _sha_final(md_p, c)
        out[q] = 44
        x = WS_HEX + i * 65                # the hex hash, then a space, into ws
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
        ip += n
        op = e
    cuts[4 * nch + 2] = day
    cuts[4 * nch + 3] = day_set
    _memcpy(ws_p + np.uint64(WS_CHAIN), prev_p, np.uint64(64))   # the chain's new head
    st[ST_FIRST_SEQ] = seq                                          # the next call's first seq
    rot[ROT_TAIL] = tail
    rot[ROT_DAY] = day
    rot[ROT_DAY_SET] = day_set
    return op, nch + 1, cuts[2], cuts[3]
