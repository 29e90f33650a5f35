"""The journal's hash chain in native code: one numba call per ``Journal.flush``.

``Journal.append`` (native mode) only copies the event and has ``orjson`` encode the record, with
two 64-character placeholders: ``prev_hash`` (unless the previous record's hash is already known)
and ``hash`` (always the last key). It does not look at the value types: ``orjson`` refuses at
append what it cannot encode (with the journal's options: datetimes, dataclasses, subclasses of
str/int/dict/list, bytes, Decimal, sets, numpy values, arbitrary objects, ints beyond 64 bits,
non-str keys), and ``encode`` refuses at flush what it encoded but the journal does not take.
``encode`` runs once per flush over the bodies of every pending record, in order, and for each:

1. walks the body as JSON: it must be one flat object whose values are strings, integers or
   ``null``; a float, ``true``/``false``, an array (list, tuple) or a nested object refuses
   the whole call (``-1``, with the record, the key, the value and the kind in ``st``). The
   walk (``_scan_fast``: colon to colon, eight bytes at a time, ~0.15 us for a 450-byte
   record; ``_scan``, string by string, when that one cannot decide) also finds where the body
   ends (no length list) and its integer ``ts``,
2. writes the 20-byte frame header (``b'OMSH'``, payload length, check, seq),
3. copies the body behind it and writes the previous record's hex hash into the ``prev_hash``
   placeholder,
4. hashes the canonical bytes (the body up to ``,"hash":"``, then ``}``) with OpenSSL's
   SHA-256 (``SHA256_Init/Update/Final`` of the ``libcrypto`` that Python's ``_hashlib`` uses,
   called from nopython mode; not our own SHA-256),
5. writes the hex digest into the ``hash`` placeholder, its first 4 bytes into the header's
   check, and the hex (plus a space) into the workspace so that Python can hand the hashes back
   to the returned records with one ``split``,
6. decides whether the record starts a new segment (size; UTC day of its integer ``ts``), by
   the rule of the Python path.

What neither catches, because ``orjson`` encodes it as an allowed JSON value: an ``enum.Enum``
member of any kind (IntEnum and StrEnum included) is journaled as its value, a ``uuid.UUID`` as
its canonical string, a float NaN or infinity as ``null``. An ``orjson.Fragment`` is raw JSON
that ``orjson`` copies as given: the walk refuses some malformed ones, not all (it can add keys,
or make the record unreadable): never put one in an event. The pure-Python path refuses all of
these at append (it checks each value's type).

The frames are byte for byte those of the pure-Python path (``Journal.append`` as written in
journal.py, used when this module cannot load) for every record both accept: the payload is
``orjson.dumps(record)`` of the completed record, i.e. the canonical bytes with
``,"hash":"<hex>"`` spliced in before the closing brace.

One call takes three arguments (the joined bodies, ``ws``, ``st``) and returns one int: each
argument numba unboxes costs ~0.1 us and the flush of 2 records is on the order path.

Why ``SHA256_Init/Update/Final`` and not the one-shot ``SHA256()``: in OpenSSL 3 the one-shot
goes through ``EVP_Q_digest`` and fetches the algorithm on every call (1.09 us for a 460-byte
record here, against 0.36 us for Init/Update/Final; hashlib's ``sha256(b).digest()`` costs
1.2-1.4 us from Python). The three calls are deprecated in OpenSSL 3 but exported, and exist in
1.1 too.

``load()`` returns the kernel after a self-check against ``hashlib`` (random records, chained;
and a float refused), or ``None`` with the reason in ``error`` (no libcrypto, no such symbol,
numba failed, mismatch); the journal then uses the pure-Python path. ``OMS_JOURNAL_NATIVE=0``
forces that path.
"""
from __future__ import annotations

import hashlib
import logging
import os
import random

import numpy as np

log = logging.getLogger(__name__)

PENDING = "-" * 64               # placeholder of a hash not computed yet (64 chars, like a hash)
CTX_BYTES = 512                  # >= sizeof(SHA256_CTX) (112) of any OpenSSL
HEX_STRIDE = 65                  # 64 hex + a space, per record in ``hexes``
# the kernel's workspaces: ``ws`` (uint8) = SHA-256 context | chain head (64 hex) | hexes
# (HEX_STRIDE per record, room for st[ST_CAP] records) | frames (from st[ST_OUT] on)
WS_CHAIN = CTX_BYTES
WS_HEX = CTX_BYTES + 64
# ``st`` (int64) = rotation state | next seq | capacity | frames' offset | refusal | chunks
ROT_TAIL, ROT_DAY, ROT_DAY_SET, ROT_LIMIT, ROT_DAILY, ST_FIRST_SEQ = 0, 1, 2, 3, 4, 5
ST_CAP, ST_OUT = 6, 7
ST_BAD_KIND, ST_BAD_REC, ST_BAD_KEY, ST_BAD_VAL = 8, 9, 10, 11   # a refused record (``encode`` -1)
ST_CUTS = 12
MULTI = 1 << 40                  # ``encode``'s result: bytes + (chunks - 1) * MULTI
# why ``encode`` refused a record (st[ST_BAD_KIND])
BAD_FLOAT, BAD_BOOL, BAD_ARRAY, BAD_OBJECT, BAD_SHAPE = 1, 2, 3, 4, 5
BAD_WHAT = {BAD_FLOAT: "a float", BAD_BOOL: "a bool (JSON true/false)",
            BAD_ARRAY: "a list or tuple (JSON array)", BAD_OBJECT: "a dict (nested JSON object)",
            BAD_SHAPE: "raw JSON that is not one string, integer or null (an orjson.Fragment?)"}


def workspaces(records: int, out_bytes: int, chain_head: str, old_st=None):
    """``(ws, st)`` for up to ``records`` records and ``out_bytes`` bytes of frames per call
    (``st``'s state copied from ``old_st``)."""
    out_off = WS_HEX + HEX_STRIDE * records
    ws = np.zeros(out_off + out_bytes, dtype=np.uint8)
    ws[WS_CHAIN:WS_CHAIN + 64] = np.frombuffer(chain_head.encode("ascii"), dtype=np.uint8)
    st = np.zeros(ST_CUTS + 4 * (records + 1), dtype=np.int64)
    if old_st is not None:
        st[:ST_FIRST_SEQ + 1] = old_st[:ST_FIRST_SEQ + 1]
    st[ST_CAP] = records
    st[ST_OUT] = out_off
    return ws, st


error: str | None = None         # why the native path is not available (after ``load``)
_kernel = None
_tried = False


def enabled_by_env() -> bool:
    """False when ``OMS_JOURNAL_NATIVE=0`` (or ``false``/``no``/``off``) forces the Python path."""
    return os.environ.get("OMS_JOURNAL_NATIVE", "1").strip().lower() not in ("0", "false", "no", "off")


def find_libcrypto() -> str | None:
    """Path of the libcrypto that Python's ``_hashlib`` links against (so the journal and
    hashlib use one OpenSSL), else whatever ``ctypes.util.find_library('crypto')`` finds."""
    try:
        import _hashlib  # noqa: F401  (maps its libcrypto into the process)
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6 and "/libcrypto" in parts[-1]:
                    return parts[-1]
    except (ImportError, OSError):
        pass
    import ctypes.util
    return ctypes.util.find_library("crypto")


def _self_check(encode) -> None:
    """Chain 200 random records natively and with hashlib; raise if any byte differs."""
    import struct

    import orjson

    rnd = random.Random(1234)
    prev = "0" * 64
    bodies = []
    expect = bytearray()
    for seq in range(1, 201):
        rec = {"type": "x" * rnd.randrange(0, 300), "ts": rnd.randrange(-2**63, 2**63),
               "text": "".join(chr(rnd.randrange(32, 0x3000)) for _ in range(rnd.randrange(0, 40))),
               "none": None}
        if seq % 7 == 0:   # a record whose event carried its own prev_hash key (searched for)
            rec = {"prev_hash": "z", **rec}
        rec["seq"] = seq
        rec["prev_hash"] = prev if seq == 1 else PENDING
        rec["hash"] = PENDING
        body = orjson.dumps(rec)
        bodies.append(body)
        rec["prev_hash"] = prev
        del rec["hash"]
        canon = orjson.dumps(rec)
        h = hashlib.sha256(canon).hexdigest()
        payload = canon[:-1] + b',"hash":"' + h.encode() + b'"}'
        expect += struct.pack("<4sI4sq", b"OMSH", len(payload), bytes.fromhex(h)[:4], seq) + payload
        prev = h
    blob = b"".join(bodies)
    ws, st = workspaces(len(bodies), len(blob) + 20 * len(bodies), "0" * 64)
    st[ROT_LIMIT] = 1 << 62
    st[ST_FIRST_SEQ] = 1
    total = encode(blob, ws, st)
    if total >= MULTI:
        raise RuntimeError("native journal encoding rotated where it should not")
    out = ws[st[ST_OUT]:]
    if total != len(expect) or out[:total].tobytes() != bytes(expect):
        raise RuntimeError("native journal encoding differs from the Python encoding")
    if ws[WS_CHAIN:WS_CHAIN + 64].tobytes().decode() != prev \
            or ws[WS_HEX:st[ST_OUT]].tobytes().decode().split()[-1] != prev:
        raise RuntimeError("native hash chain differs from hashlib")
    bad = orjson.dumps({"type": "x", "px": 1.5, "seq": 201, "prev_hash": prev, "hash": PENDING})
    if encode(bad, ws, st) != -1 or (st[ST_BAD_KIND], st[ST_BAD_REC], st[ST_BAD_KEY]) != (BAD_FLOAT, 0, 12) \
            or st[ST_FIRST_SEQ] != 201:
        raise RuntimeError("native journal encoding does not refuse a float")


def load():
    """The ``encode`` kernel (compiled or loaded from numba's cache, self-checked), or None."""
    global _kernel, _tried, error
    if _tried:
        return _kernel
    _tried = True
    try:
        from . import _chain_kernel   # numba is imported only here, when a journal opens
        _chain_kernel.open_libcrypto()
        k = _chain_kernel.encode
        _self_check(k)
        # the compiled function itself for the one signature the journal calls it with (saves
        # the dispatcher's type resolution, ~0.4 us a flush); the dispatcher if not available
        sigs = list(getattr(k, "overloads", {}).values())
        entry = getattr(sigs[0], "entry_point", None) if len(sigs) == 1 else None
        _kernel = entry if callable(entry) else k
        error = None
    except Exception as e:  # any failure: the pure-Python path stays in use
        error = f"{type(e).__name__}: {e}"
        log.warning("journal: native hash chain unavailable, using the Python path (%s)", error)
        _kernel = None
    return _kernel
