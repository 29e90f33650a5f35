"""The audit journal: an append-only, hash-chained, checksummed log. The source of truth.

File layout: ``DIR/journal-{first_seq:012d}.log`` segments, each a sequence of frames::

    header  struct '<4sIIq': magic, payload length, check, seq
    payload the record as compact UTF-8 JSON

Two frame kinds, told apart by the magic, may follow each other in one file:

- ``b'OMSH'`` (written since 2026-11-25 19:30 UTC): the payload's own SHA-256 is its
  checksum. ``check`` is the first 4 bytes of the record's SHA-256 digest (little-endian
  uint32); a frame is intact when ``sha256(hashed bytes)`` equals the ``hash`` stored at the
  payload's end and starts with ``check``. The writer computes one digest per record (the
  chain hash) and no CRC; a reader pays one SHA-256 per frame (~1 us more than a CRC-32).
- ``b'OMSJ'`` (older journals): ``check`` is ``zlib.crc32(payload)``. Still read and verified.

The payload is the canonical encoding of the record without ``hash`` (see ``chain``: the
compact JSON of the record's keys in their order, ``None`` as ``null``) with
``,"hash":"<hex>"`` spliced in before the closing brace, so ``payload[:-HASH_SUFFIX_LEN] + b"}"``
is exactly the byte string that was hashed, and the payload is ``orjson.dumps(record)`` of the
record ``append`` returned. The hash is defined over those stored bytes: ``verify`` hashes them
as they are, it never re-encodes. ``seq`` is repeated in the header so that a scan can check
continuity and skip records without decoding JSON; it must equal the payload's seq.

Journals written before this encoding (sorted keys, ``None`` values left out) read and verify
unchanged: their payloads are the same kind of bytes (a record's JSON in the stored order).

One writer per directory (an flock on ``DIR/LOCK``). The engine thread calls ``append`` for each
event of a batch, then ``flush`` once (one ``os.write``), then acknowledges. A record is an event's
keys (str) with int, str or None values; with the native hash chain (``chain_native``, the
default) a value of another JSON type is found by ``flush``, which then writes nothing of the
batch and raises ``JournalRecordError``: callers treat it as a failed write. With
``fsync="interval"`` a background thread fsyncs the current file descriptor at most every
``fsync_interval_ms`` while there are unsynced writes; it touches nothing but the descriptor.
"""
from __future__ import annotations

import binascii
import errno
import fcntl
import hashlib
import logging
import mmap
import os
import re
import struct
import threading
import time
import weakref
import zlib
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import orjson

from . import chain_native
from .chain import GENESIS_HASH, canonical_bytes

log = logging.getLogger(__name__)

MAGIC = b"OMSJ"          # frame checked by CRC-32 of the payload (written before 2026-11-25 19:30)
MAGIC_SHA = b"OMSH"      # frame checked by the record's SHA-256 (what ``append`` writes)
MAGICS = (MAGIC_SHA, MAGIC)
HEADER = struct.Struct("<4sIIq")
_HEADER_SHA = struct.Struct("<4sI4sq")   # same bytes as HEADER; the check is the digest's first 4 bytes
HLEN = HEADER.size  # 20
HASH_KEY_PREFIX = b',"hash":"'
HASH_SUFFIX_LEN = len(HASH_KEY_PREFIX) + 64 + 2  # ',"hash":"' + 64 hex + '"}'
NS_PER_DAY = 86_400 * 1_000_000_000
SEGMENT_RE = re.compile(r"^journal-(\d{12})\.log$")
FSYNC_POLICIES = ("batch", "interval", "os")
MAX_PAYLOAD = 64 * 1024 * 1024

_dumps = orjson.dumps
_loads = orjson.loads
_sha256 = hashlib.sha256
_crc32 = zlib.crc32
_pack = HEADER.pack
_pack_sha = _HEADER_SHA.pack
_from_le = int.from_bytes
_unpack_from = HEADER.unpack_from
_ALLOWED_TYPES = frozenset((int, str, type(None)))
_types_ok = _ALLOWED_TYPES.issuperset
_HASH_KEY = b',"hash":"'
# the native path's encoding: orjson raises TypeError for these (the Python path checks types)
_PASSTHROUGH = orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_PENDING = chain_native.PENDING   # a hash the native path computes at flush (64 chars)
_WS_HEX, _WS_CHAIN, _HEX_STRIDE = chain_native.WS_HEX, chain_native.WS_CHAIN, chain_native.HEX_STRIDE
_BYTES_MASK = chain_native.MULTI - 1   # the native call's result: bytes written + MULTI * segments started


def _check_value_types(event: Mapping[str, Any]) -> None:
    """TypeError naming the values that are not int, str or None (the journal sets and replaces
    ``hash``, ``seq`` and ``prev_hash`` itself, so theirs do not count)."""
    bad = {k: type(v).__name__ for k, v in event.items()
           if type(v) not in _ALLOWED_TYPES and k not in ("hash", "seq", "prev_hash")}
    if bad:
        raise TypeError(f"audit event values must be int, str or None; got {bad}")


class JournalError(Exception):
    """Base class of journal errors."""


class JournalCorrupt(JournalError):
    """A record that is not at the torn tail of the last segment fails validation."""

    def __init__(self, message: str, *, file: Path | str | None = None, offset: int | None = None,
                 seq: int | None = None):
        self.file = str(file) if file is not None else None
        self.offset = offset
        self.seq = seq
        where = []
        if file is not None:
            where.append(f"file {self.file}")
        if offset is not None:
            where.append(f"offset {offset}")
        if seq is not None:
            where.append(f"seq {seq}")
        super().__init__(f"journal corrupt: {message}" + (f" ({', '.join(where)})" if where else ""))


class JournalRecordError(JournalError, TypeError):
    """``flush`` of the native path found a pending record with a value the journal does not
    take (a float, bool, list, tuple or dict, which ``append`` encoded without looking at the
    types). Nothing of the batch was written; the journal is back at its last record that
    reached the OS (``last_seq``) and stays usable, as after a ``JournalWriteError``. ``seq``
    and ``key`` name the record and the key (None when they cannot be told), ``problem`` what
    is wrong. Also a ``TypeError``: what the pure-Python path raises at ``append``."""

    def __init__(self, message: str, *, seq: int | None = None, key: str | None = None, problem: str = "",
                 last_seq: int = 0):
        self.seq = seq
        self.key = key
        self.problem = problem
        self.last_seq = last_seq
        super().__init__(message)


class JournalWriteError(JournalError):
    """Writing to the journal failed. Unwritten records were discarded; the journal stays usable."""

    def __init__(self, message: str, *, errno_: int | None = None, last_seq: int = 0):
        self.errno = errno_
        self.last_seq = last_seq
        super().__init__(message)


# the Journal open on each directory in this process (for Projection.lag())
_OPEN_JOURNALS: "weakref.WeakValueDictionary[str, Journal]" = weakref.WeakValueDictionary()


def open_journal(directory: Path | str) -> "Journal | None":
    """The ``Journal`` this process has open on ``directory``, if any."""
    return _OPEN_JOURNALS.get(str(Path(directory).resolve()))


def segment_name(first_seq: int) -> str:
    return f"journal-{first_seq:012d}.log"


def list_segments(directory: Path | str) -> list[tuple[int, Path]]:
    """``(first_seq, path)`` of every segment in ``directory``, in order."""
    d = Path(directory)
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        m = SEGMENT_RE.match(name)
        if m:
            out.append((int(m.group(1)), d / name))
    out.sort()
    return out


def split_payload(payload: bytes) -> tuple[bytes, str]:
    """``(hashed canonical bytes, stored hex hash)`` of a payload written by this journal."""
    if len(payload) < HASH_SUFFIX_LEN + 2 or payload[-HASH_SUFFIX_LEN:-HASH_SUFFIX_LEN + len(HASH_KEY_PREFIX)] != HASH_KEY_PREFIX:
        raise ValueError("payload does not end with the hash field")
    return payload[:-HASH_SUFFIX_LEN] + b"}", payload[-66:-2].decode("ascii")


# ---------------------------------------------------------------------------------------------
# Scanning


def _sha_frame_check(mv, ps: int, pe: int, check: int) -> int:
    """0 if the ``b'OMSH'`` payload ``mv[ps:pe]`` is intact (the SHA-256 of its hashed bytes is
    the hash stored at its end and starts with the header's ``check``); 1 if not (a torn or
    damaged write); 2 if its bytes hash to ``check`` and its hash field is a well-formed hash of
    other content: not damage but an edit of the record (a torn write matches a 32-bit check by
    chance once in 4 billion)."""
    if pe - ps < HASH_SUFFIX_LEN + 2 or mv[pe - HASH_SUFFIX_LEN:pe - 66] != HASH_KEY_PREFIX \
            or mv[pe - 2:pe] != b'"}':
        return 1
    h = _sha256(mv[ps:pe - HASH_SUFFIX_LEN])
    h.update(b"}")
    d = h.digest()
    if _from_le(d[:4], "little") != check:
        return 1
    stored = mv[pe - 66:pe - 2]
    if stored == d.hex().encode():
        return 0
    # the bytes before the hash are intact (they match the check): a garbled hash field is the
    # end of a torn write; a well-formed hash of other content is an edit
    return 2 if not bytes(stored).translate(None, b"0123456789abcdef") else 1


def frame_check(payload: bytes, magic: bytes = MAGIC_SHA) -> int:
    """The header ``check`` of a frame of ``magic`` holding ``payload`` (tests and tools)."""
    if magic == MAGIC:
        return _crc32(payload)
    return _from_le(_sha256(payload[:-HASH_SUFFIX_LEN] + b"}").digest()[:4], "little")


def _frame_ok(mv, magic, ps: int, pe: int, check: int) -> bool:
    if magic == MAGIC_SHA:
        return _sha_frame_check(mv, ps, pe, check) == 0
    return _crc32(mv[ps:pe]) == check


class _Scan:
    """Result of walking the frames of one buffer."""

    __slots__ = ("count", "end", "next_seq", "first", "last", "stop", "stop_off", "stop_msg", "frames")

    def __init__(self):
        self.count = 0
        self.end = 0           # offset just after the last good frame
        self.next_seq = 0
        self.first = None      # (start, end) of the first good payload
        self.last = None       # (start, end) of the last good payload
        self.stop = "end"      # end | short | crc | hash | magic | seq | length
        self.stop_off = 0
        self.stop_msg = ""
        self.frames = None


def _scan(buf, size: int, expected_seq: int, *, collect: bool = False, skip_below: int = 0,
          start: int = 0, limit: int = -1) -> _Scan:
    """Walk the frames of ``buf[start:size]`` expecting seqs from ``expected_seq`` on.

    Stops at the first frame that is incomplete or invalid and says why in ``stop``. With
    ``collect`` the payload (start, end) of every frame whose seq >= ``skip_below`` is kept.
    """
    r = _Scan()
    frames = [] if collect else None
    off = start
    seq_expect = expected_seq
    count = 0
    first = last = None
    crc32 = _crc32
    sha_check = _sha_frame_check
    sha256 = _sha256
    from_le = _from_le
    unpack_from = _unpack_from
    mv = memoryview(buf) if not isinstance(buf, memoryview) else buf
    src = buf if isinstance(buf, (bytes, bytearray, mmap.mmap)) else bytes(buf)
    unhexlify = binascii.unhexlify
    while True:
        if off == size:
            break
        if limit == 0:
            r.stop = "limit"
            break
        if size - off < HLEN:
            r.stop, r.stop_msg = "short", f"{size - off} bytes where a {HLEN}-byte header was expected"
            break
        magic, n, crc, seq = unpack_from(buf, off)
        if magic != MAGIC_SHA and magic != MAGIC:
            r.stop, r.stop_msg = "magic", f"bad frame magic {bytes(magic)!r}"
            break
        ps = off + HLEN
        pe = ps + n
        if pe > size:
            r.stop, r.stop_msg = "short", f"frame of {n} bytes but only {size - ps} remain"
            break
        if magic == MAGIC_SHA:
            # inline fast path of _sha_frame_check (about 1 us a frame more than a CRC-32)
            q = pe - HASH_SUFFIX_LEN
            try:
                d = sha256(src[ps:q] + b"}").digest()
                ok = (from_le(d[:4], "little") == crc and unhexlify(src[pe - 66:pe - 2]) == d
                      and src[q:pe - 66] == _HASH_KEY and src[pe - 2:pe] == b'"}')
            except (binascii.Error, ValueError):
                ok = False
            bad = 0 if ok else sha_check(mv, ps, pe, crc)
            if bad:
                if bad == 1:
                    r.stop, r.stop_msg = "crc", "payload checksum mismatch (SHA-256 of the record)"
                else:
                    r.stop, r.stop_msg = "hash", "record's stored hash does not match its content"
                break
        elif crc32(mv[ps:pe]) != crc:
            r.stop, r.stop_msg = "crc", "payload CRC mismatch"
            break
        if seq != seq_expect:
            r.stop, r.stop_msg = "seq", f"frame seq {seq} where {seq_expect} was expected"
            break
        if first is None:
            first = (ps, pe)
        last = (ps, pe)
        if collect and seq >= skip_below:
            frames.append((ps, pe))
            limit -= 1
        count += 1
        seq_expect += 1
        off = pe
    r.count = count
    r.end = off
    r.stop_off = off
    r.next_seq = seq_expect
    r.first = first
    r.last = last
    r.frames = frames
    return r


def _all_zero(buf, start: int, end: int) -> bool:
    chunk = 1 << 20
    zero = bytes(chunk)
    i = start
    while i < end:
        j = min(end, i + chunk)
        if buf[i:j] != zero[: j - i]:
            return False
        i = j
    return True


def _valid_frame_after(buf, start: int, size: int) -> bool:
    """Whether a complete frame with a good checksum starts somewhere in ``buf[start:size]``."""
    find = buf.find
    mv = memoryview(buf)
    i = find(b"OMS", start, size)
    while i != -1:
        if i + HLEN <= size:
            magic, n, crc, _ = _unpack_from(buf, i)
            pe = i + HLEN + n
            if magic in MAGICS and pe <= size and _frame_ok(mv, magic, i + HLEN, pe, crc):
                return True
        i = find(b"OMS", i + 1, size)
    return False


def _intact_sha_payload(buf, ps: int, pe: int) -> bool:
    """Whether ``buf[ps:pe]`` is a whole ``b'OMSH'`` payload: its stored hash is the SHA-256 of
    its hashed bytes (a prefix of a payload never is)."""
    mv = memoryview(buf)
    if pe - ps < HASH_SUFFIX_LEN + 2 or mv[pe - HASH_SUFFIX_LEN:pe - 66] != HASH_KEY_PREFIX \
            or mv[pe - 2:pe] != b'"}':
        return False
    h = _sha256(mv[ps:pe - HASH_SUFFIX_LEN])
    h.update(b"}")
    return bytes(mv[pe - 66:pe - 2]) == h.hexdigest().encode()


def _is_torn_tail(buf, size: int, r: _Scan) -> bool:
    """Whether the stop of scan ``r`` looks like a write cut short by a crash (tail of the file).

    A crash leaves a prefix of the last write, so no complete, valid frame can follow the stop
    point; if one does (say a bit flip in a length field), it is corruption, not a torn tail.
    Nor does it leave a whole record (its hash verifies) behind a header that disagrees with it
    (a length or check damaged at rest)."""
    off = r.stop_off
    if r.stop in ("short", "crc") and _valid_frame_after(buf, off + 1, size):
        return False
    if r.stop in ("short", "crc") and size - off > HLEN and bytes(buf[off:off + 4]) == MAGIC_SHA \
            and _intact_sha_payload(buf, off + HLEN, size):
        return False
    if r.stop == "short":
        # a prefix of a frame: the bytes that are there must not contradict a header
        head = bytes(buf[off:min(size, off + 4)])
        return MAGIC.startswith(head) or MAGIC_SHA.startswith(head) or _all_zero(buf, off, size)
    if r.stop == "crc":
        _, n, _, _ = _unpack_from(buf, off)
        return off + HLEN + n == size
    if r.stop == "magic":
        return _all_zero(buf, off, size)  # file extended with zeros, data never written
    return False


def _read_payload(path: Path, start: int, end: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(start)
        return f.read(end - start)


# ---------------------------------------------------------------------------------------------
# Reading


class JournalReader:
    """Incremental reader of a (possibly live) journal directory, from ``from_seq`` on.

    ``read_payloads(max_records)`` returns the raw payloads of the next complete records; it
    returns an empty list when it has caught up. An incomplete frame at the end of the last
    segment (a write in progress, or a torn tail not yet cut off by ``Journal.open``) is not
    returned; ``tail_bytes`` says how many bytes it has. Anything else that is invalid raises
    ``JournalCorrupt``.
    """

    def __init__(self, directory: Path | str, from_seq: int = 1, chunk_bytes: int = 32 << 20):
        self.directory = Path(directory)
        self.next_seq = max(1, int(from_seq))
        self.chunk_bytes = chunk_bytes
        self.tail_bytes = 0
        self.tail_reason = ""
        self._seg: tuple[int, Path] | None = None
        self._off = 0
        self._seg_seq = 0   # seq expected at self._off

    def _locate(self) -> bool:
        segs = list_segments(self.directory)
        if not segs:
            return False
        if segs[0][0] != 1:
            raise JournalCorrupt(f"first segment starts at seq {segs[0][0]}, not 1", file=segs[0][1])
        cand = None
        for first, path in segs:
            if first <= self.next_seq:
                cand = (first, path)
            else:
                break
        self._seg = cand
        self._off = 0
        self._seg_seq = cand[0]
        return True

    def read_payloads(self, max_records: int = 50_000) -> list[memoryview]:
        out: list = []
        for buf, frames in self._read_frames(max_records):
            mv = memoryview(buf)
            out.extend([mv[ps:pe] for ps, pe in frames])
        return out

    def read_ndjson(self, max_records: int = 50_000) -> tuple[int, bytes | bytearray]:
        """``(count, blob)``: the next complete records (as ``read_payloads``) as one
        newline-delimited JSON text: the file's bytes with each frame header overwritten by a
        newline and 19 spaces (JSON whitespace), so no per-record copy or join in Python."""
        parts = []
        count = 0
        for buf, frames in self._read_frames(max_records):
            if frames:
                parts.append(_blank_headers(buf, frames))
                count += len(frames)
        if not parts:
            return 0, b""
        return count, parts[0] if len(parts) == 1 else b"".join(parts)

    def _scan_chunk(self, buf, n: int, limit: int):
        """Frames of one chunk read: (scan result, the item ``_read_frames`` lists, count)."""
        r = _scan(buf, n, self._seg_seq, collect=True, skip_below=self.next_seq, limit=limit)
        return r, (buf, r.frames), len(r.frames)

    def _read_frames(self, max_records: int) -> list:
        """``[(buffer, [(payload start, payload end), ...]), ...]`` of the next complete records
        (each item as ``_scan_chunk`` makes it; a subclass may scan differently)."""
        out: list = []
        got = 0
        if self._seg is None and not self._locate():
            return out
        while got < max_records:
            first, path = self._seg
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                raise JournalCorrupt("segment disappeared while reading", file=path) from None
            try:
                size = os.fstat(fd).st_size
                avail = size - self._off
                want = min(avail, self.chunk_bytes)
                buf = os.pread(fd, want, self._off) if want > 0 else b""
            finally:
                os.close(fd)
            n = len(buf)
            read_end = self._off + n
            r, item, count = self._scan_chunk(buf, n, max_records - got)
            if count:
                out.append(item)
                got += count
            self._off += r.end
            self._seg_seq = r.next_seq
            self.next_seq = max(self.next_seq, r.next_seq)
            if r.stop == "limit":
                return out
            if r.stop != "end":
                if r.stop == "short" and want < avail:
                    if r.count == 0:  # one frame larger than the chunk: read more at once
                        self.chunk_bytes = max(self.chunk_bytes * 2, 1 << 20)
                    continue  # the chunk boundary cut a frame: read on
                # segments after this one that are all empty were started by a rotation a crash
                # cut short (``Journal.open`` removes them): this is still the last segment, and
                # its torn tail the journal's, as the writer takes it
                is_last = _only_empty(s for s in list_segments(self.directory) if s[0] > first)
                if is_last and r.stop == "short" and _is_torn_tail(buf, n, r):
                    self.tail_bytes = n - r.end
                    self.tail_reason = r.stop_msg
                    return out
                if r.stop == "short" and os.stat(path).st_size > read_end:
                    continue  # a write in progress ended (and the writer may have rotated): read on
                raise JournalCorrupt(r.stop_msg, file=path, offset=self._off, seq=self._seg_seq)
            if want < avail:
                continue
            self.tail_bytes = 0
            self.tail_reason = ""
            # clean end of the file: is there a next segment?
            nxt = [s for s in list_segments(self.directory) if s[0] > first]
            if not nxt:
                return out
            if os.stat(path).st_size != self._off:
                continue  # it grew before the next segment appeared
            if nxt[0][0] != self._seg_seq:
                if _only_empty(nxt):   # a cut-short rotation after a lost tail: the journal ends here
                    return out
                raise JournalCorrupt(f"segment ends at seq {self._seg_seq - 1} but the next segment "
                                     f"{nxt[0][1].name} starts at seq {nxt[0][0]}", file=path,
                                     offset=self._off, seq=self._seg_seq)
            self._seg = nxt[0]
            self._off = 0
        return out


def _only_empty(segments) -> bool:
    """Whether every ``(first_seq, path)`` of ``segments`` is an empty file (or gone)."""
    for _, path in segments:
        try:
            if os.path.getsize(path):
                return False
        except FileNotFoundError:
            pass
    return True


_HEADER_BLANK = np.frombuffer(b"\n" + b" " * (HLEN - 1), dtype=np.uint8)


def _blank_headers(buf, frames) -> bytearray:
    """The bytes of consecutive ``frames`` of ``buf`` (from the first header to the last
    payload's end) with every header replaced by ``\\n`` and spaces: newline-delimited JSON."""
    s = frames[0][0] - HLEN
    e = frames[-1][1]
    out = bytearray(memoryview(buf)[s:e])
    arr = np.frombuffer(out, dtype=np.uint8)
    starts = np.fromiter([ps for ps, _ in frames], dtype=np.int64, count=len(frames))
    starts -= s + HLEN
    for k in range(HLEN):
        arr[starts + k] = _HEADER_BLANK[k]
    del arr
    return out


def iter_payloads(directory: Path | str, from_seq: int = 1, batch: int = 50_000) -> Iterator[memoryview]:
    """Raw payloads (memoryviews; ``bytes(p)`` to keep one) of the journal's complete records
    with seq >= ``from_seq``, in order."""
    reader = JournalReader(directory, from_seq)
    while True:
        chunk = reader.read_payloads(batch)
        if not chunk:
            return
        yield from chunk


def iter_records(directory: Path | str, from_seq: int = 1) -> Iterator[dict]:
    """Records (dicts with seq, prev_hash and hash) from ``from_seq`` on: exactly the records
    ``Journal.append`` returned, key order and ``None`` values included (they are part of the
    hashed bytes, so ``chain.record_hash(record) == record["hash"]``). Journals written before
    2026-11-25 left ``None`` values out; their records have none. (A value the native path
    journals by value, an Enum member, a UUID, a float NaN, reads back as that value.)"""
    loads = _loads
    for p in iter_payloads(directory, from_seq):
        yield loads(p)


# ---------------------------------------------------------------------------------------------
# Writing


class JournalTap:
    """Payloads a ``Journal`` flushed, handed to one consumer in the same process.

    The journal appends each flush's payloads after the write succeeded (``_push``, engine
    thread); ``take()`` (consumer thread) swaps the whole buffer out in O(1) and returns
    ``(first_seq, [payload, ...])`` for consecutive seqs from ``first_seq``. If a flush does not
    continue the buffer (records rolled back or cut short by a failed write) or the consumer falls
    more than ``max_records`` behind, the buffer is dropped: the consumer then sees a seq gap and
    reads those records from the journal files."""

    __slots__ = ("_lock", "_first", "_buf", "max_records", "dropped")

    def __init__(self, max_records: int):
        self._lock = threading.Lock()
        self._first = 0
        self._buf: list = []
        self.max_records = max_records
        self.dropped = 0

    def _push(self, first: int, payloads: list) -> None:
        with self._lock:
            buf = self._buf
            if buf and (self._first + len(buf) != first or len(buf) >= self.max_records):
                self.dropped += len(buf)
                buf = self._buf = []
            if not buf:
                self._first = first
            buf += payloads

    def take(self) -> tuple[int, list]:
        with self._lock:
            first, buf = self._first, self._buf
            self._buf = []
            return first, buf

    def first_seq(self) -> int | None:
        """Seq of the oldest payload held, None when empty."""
        with self._lock:
            return self._first if self._buf else None

    def __len__(self) -> int:
        return len(self._buf)



class Journal:
    """Append-only writer of one journal directory. Not thread-safe: one engine thread calls it."""

    def __init__(self, directory: Path | str, fsync: str = "interval", fsync_interval_ms: int = 5,
                 rotate_bytes: int = 256 * 1024 * 1024, rotate_daily: bool = True,
                 native: bool | None = None):
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {FSYNC_POLICIES}, not {fsync!r}")
        if rotate_bytes < HLEN + 2:
            raise ValueError("rotate_bytes too small")
        self._dir = Path(directory)
        self._policy = fsync
        self._interval = max(0, fsync_interval_ms) / 1000.0
        self._rotate_bytes = int(rotate_bytes)
        self._rotate_daily = bool(rotate_daily)
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._fd_lock = threading.Lock()
        self._wake = threading.Event()
        # set by a flush that woke the fsync thread, cleared by that thread after it cleared
        # ``_wake`` and before it fsyncs: a flush reads this bool instead of ``_wake.is_set()``
        self._sync_asked = False
        self._fsync_each = fsync == "batch"
        self._wake_sync = fsync == "interval"
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._sync_error: OSError | None = None
        self._closed = True
        # payloads of the records flushed, for a DuckDB projection in this process (``tap``)
        self._tap_on = False
        # an object with a ``value`` (a shared multiprocessing.Value) set to ``written_seq``
        # after each write: the projection process reads no further (projector.py)
        self.watermark = None
        self._tap: JournalTap | None = None
        self._tap_pending: list[bytes] = []
        # the hash chain in native code, one call per flush (chain_native); None: Python path.
        # ``native=None`` follows OMS_JOURNAL_NATIVE (default on); False forces the Python path.
        self._native_req = native
        self._encode = None
        self.open()

    # -- properties
    @property
    def last_seq(self) -> int:
        """Seq of the last appended record (including records not flushed yet)."""
        return self._last_seq

    @property
    def last_hash(self) -> str:
        """Hash of the last appended record (including records not flushed yet)."""
        if self._encode is not None and self._bodies:
            return self._pending_last_hash()
        return self._last_hash

    @property
    def native(self) -> bool:
        """Whether the hash chain is computed in native code at flush (``chain_native``)."""
        return self._encode is not None

    @property
    def written_seq(self) -> int:
        """Seq of the last record that reached the OS."""
        return self._os_seq

    @property
    def directory(self) -> Path:
        return self._dir

    @property
    def sync_error(self) -> OSError | None:
        """The last error of the background fsync, if any (also raised by ``sync``/``close``)."""
        return self._sync_error

    TAP_MAX_RECORDS = 500_000

    def tap(self) -> "JournalTap":
        """The payloads of every record flushed from now on, for an in-process consumer (the
        DuckDB projection): see ``JournalTap``. Costs the engine one list append per record
        and one locked list extend per flush. Idempotent."""
        if self._tap is None:
            self._tap = JournalTap(self.TAP_MAX_RECORDS)
            self._tap_pending = []
            self._tap_on = True
        return self._tap

    def untap(self) -> None:
        """Stop collecting payloads for ``tap``."""
        self._tap_on = False
        self._tap = None
        self._tap_pending = []

    # -- open / recovery
    def open(self) -> None:
        if not self._closed:
            return
        self._dir.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(self._dir / "LOCK", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(lock_fd)
            raise JournalError(f"journal {self._dir} is open by another writer") from None
        self._lock_fd = lock_fd
        try:
            self._recover()
        except BaseException:
            os.close(lock_fd)
            self._lock_fd = None
            raise
        self._chunks: list[tuple[int, Any, bytearray]] = []
        self._pending = bytearray()
        self._tail_first = self._seg_first if self._seg_first is not None else self._last_seq + 1
        self._tail_bytes = self._seg_size
        self._tail_day = self._seg_day
        self._needs_truncate: tuple[int, int] | None = None
        self._open_native()
        self._closed = False
        self._stopping = False
        _OPEN_JOURNALS[str(self._dir.resolve())] = self
        if self._policy == "interval":
            self._thread = threading.Thread(target=self._sync_loop, name="journal-fsync", daemon=True)
            self._thread.start()

    def _recover(self) -> None:
        segs = list_segments(self._dir)
        last_seq, last_hash = 0, GENESIS_HASH
        self._fd = None
        self._seg_first = None
        self._seg_size = 0
        self._seg_day = None
        if segs and segs[0][0] != 1:
            raise JournalCorrupt(f"first segment starts at seq {segs[0][0]}, not 1", file=segs[0][1])
        # empty segments at the end were created by a rotation that a crash cut short before any
        # record reached them (after a power cut under fsync "os" the segment before them may also
        # have lost its unsynced tail): the journal ends in the last segment with data; the first
        # of them goes on being the open segment if it continues the chain, else they go
        empty = []
        while len(segs) > 1 and os.path.getsize(segs[-1][1]) == 0:
            empty.append(segs.pop()[1])
        expected = 1
        for i, (first, path) in enumerate(segs):
            is_last = i == len(segs) - 1
            if first != expected:
                raise JournalCorrupt(f"segment starts at seq {first} but the previous one ends at seq "
                                     f"{expected - 1}", file=path, seq=expected)
            with open(path, "r+b") as f:
                size = os.fstat(f.fileno()).st_size
                mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
                try:
                    r = _scan(mm, size, first)
                    if r.stop != "end":
                        if is_last and _is_torn_tail(mm, size, r):
                            torn = bytes(mm[r.stop_off:size])
                        else:
                            raise JournalCorrupt(r.stop_msg, file=path, offset=r.stop_off, seq=r.next_seq)
                    else:
                        torn = None
                    if r.last is not None:
                        payload = bytes(mm[r.last[0]:r.last[1]])
                        rec = _loads(payload)
                        if rec.get("seq") != r.next_seq - 1:
                            raise JournalCorrupt(f"payload seq {rec.get('seq')!r} differs from its frame seq",
                                                 file=path, offset=r.last[0] - HLEN, seq=r.next_seq - 1)
                        hashed, stored = split_payload(payload)
                        if stored != rec.get("hash") or _sha256(hashed).hexdigest() != stored \
                                or hashed != canonical_bytes(rec):
                            raise JournalCorrupt("last record's hash does not match its content",
                                                 file=path, offset=r.last[0] - HLEN, seq=r.next_seq - 1)
                        last_hash = stored
                    if is_last and r.first is not None:
                        ts = _loads(bytes(mm[r.first[0]:r.first[1]])).get("ts")
                        self._seg_day = ts // NS_PER_DAY if type(ts) is int else None
                finally:
                    if size:
                        mm.close()
                if torn is not None:
                    side = path.with_name(f"{path.name}.torn-{r.stop_off}")
                    side.write_bytes(torn)
                    f.truncate(r.stop_off)
                    f.flush()
                    os.fsync(f.fileno())
                    log.warning("journal %s: torn tail of %d bytes at offset %d cut off (%s); "
                                "bytes kept in %s", path, len(torn), r.stop_off, r.stop_msg, side.name)
                    size = r.stop_off
            last_seq = r.next_seq - 1
            expected = r.next_seq
            if is_last:
                self._seg_first = first
                self._seg_size = size
                self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        if empty and empty[-1].name == segment_name(expected):
            keep = empty.pop()
            os.close(self._fd)
            self._fd = os.open(keep, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            self._seg_first, self._seg_size, self._seg_day = expected, 0, None
        if empty:
            for p in empty:
                os.unlink(p)
            dfd = os.open(self._dir, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
            log.warning("journal %s: empty segment(s) %s of an interrupted rotation removed; the journal "
                        "continues from seq %d", self._dir, ", ".join(p.name for p in reversed(empty)), expected)
        self._last_seq = self._os_seq = last_seq
        self._last_hash = self._os_hash = last_hash

    # -- hot path
    def append(self, event: Mapping[str, Any]) -> dict:
        """Chain ``event`` (seq, prev_hash, hash), buffer it, and return the full record.

        (The pure-Python path. When ``chain_native`` is available, ``open`` binds ``append`` to
        ``_append_native`` and ``flush`` to ``_flush_native`` instead: the same bytes on disk for
        every record both take, the hashes computed at ``flush``, and the value types checked
        there: a float, bool, list, tuple or dict value makes that ``flush`` raise
        ``JournalRecordError`` (a ``TypeError``) with nothing of its batch written; see
        ``_append_native`` for what each path refuses where.) Nothing reaches the OS until
        ``flush``. Raises ``TypeError`` (journal unchanged) if a value is not int, str or None, a
        key is not a str, or an int does not fit 64 bits.

        The hashed bytes are the compact JSON of the record in its key order (the event's keys,
        then ``seq`` and ``prev_hash``), ``None`` kept as ``null``: no key sort, no filtering.
        Per event: one type pass over the values, one dict copy, one ``orjson.dumps``, one
        SHA-256 (the chain hash, whose first bytes are also the frame's check: no CRC), the
        payload built by concatenation, and two appends to the pending buffer.
        """
        if not _types_ok(map(type, event.values())):
            _check_value_types(event)
        rec = dict(event)
        if "hash" in rec:
            del rec["hash"]
        seq = self._last_seq + 1
        rec["seq"] = seq
        rec["prev_hash"] = self._last_hash
        body = _dumps(rec)  # TypeError (JSONEncodeError) on a non-str key or an int > 64 bits
        d = _sha256(body).digest()
        h = d.hex()
        payload = body[:-1] + _HASH_KEY + h.encode() + b'"}'
        n = len(payload)
        frame_len = HLEN + n
        tail = self._tail_bytes
        if tail:
            if tail + frame_len > self._rotate_bytes:
                self._seal(seq)
            elif self._rotate_daily:
                ts = rec.get("ts")
                if type(ts) is int and ts // NS_PER_DAY != self._tail_day:
                    self._seal(seq)
        if not self._tail_bytes and self._tail_day is None:
            ts = rec.get("ts")
            if type(ts) is int:
                self._tail_day = ts // NS_PER_DAY
        pending = self._pending
        pending += _pack_sha(MAGIC_SHA, n, d[:4], seq)
        pending += payload
        self._tail_bytes += frame_len
        self._last_seq = seq
        self._last_hash = h
        if self._tap_on:
            self._tap_pending.append(payload)
        rec["hash"] = h
        return rec

    # -- hot path, native hash chain (chain_native): checking, hashing and framing in ``flush``
    def _open_native(self) -> None:
        """Bind ``append`` and ``flush`` to the native path if ``chain_native`` loads (compiled,
        or from numba's cache, and self-checked: this is also its warm-up, before the first
        order)."""
        want = self._native_req if self._native_req is not None else chain_native.enabled_by_env()
        enc = chain_native.load() if want else None
        self._encode = enc
        self._bodies: list[bytes] = []
        self._recs: list[dict] = []
        if enc is None:
            self.__dict__.pop("append", None)
            self.__dict__.pop("flush", None)
            return
        self._workspaces(1024, 1 << 16, None)
        self._st[chain_native.ROT_LIMIT] = self._rotate_bytes
        self._st[chain_native.ROT_DAILY] = self._rotate_daily
        self._set_rot()
        self.append = self._append_native
        self.flush = self._flush_native

    def _workspaces(self, records: int, out_bytes: int, old_st) -> None:
        """(Re)allocate the kernel's workspaces for ``records`` records and ``out_bytes`` bytes
        of frames per flush, with the chain head ``last_hash`` and the rotation state and next
        seq of ``old_st`` (if not None)."""
        self._ws, self._st = chain_native.workspaces(records, out_bytes, self._last_hash, old_st)
        self._cap = records
        self._room = out_bytes
        mv = memoryview(self._ws)
        self._hex_mv = mv[_WS_HEX:]
        self._out_mv = mv[int(self._st[chain_native.ST_OUT]):]

    def _set_rot(self) -> None:
        """The open segment's size and day, for the native path's rotation."""
        day = self._tail_day
        st = self._st
        st[chain_native.ROT_TAIL] = self._tail_bytes
        st[chain_native.ROT_DAY] = day if day is not None else 0
        st[chain_native.ROT_DAY_SET] = day is not None
        st[chain_native.ST_FIRST_SEQ] = self._last_seq + 1   # (nothing pending here)

    def _append_native(self, event: Mapping[str, Any]) -> dict:
        """``append`` of the native path: the same record (key order, None kept) encoded by
        ``orjson`` with placeholders for the two hashes; ``flush`` checks, chains, hashes and
        frames all pending records in one native call and then fills ``hash`` (and
        ``prev_hash``, which holds the real value already for the first record after a flush)
        in the returned dicts. Until then they hold ``chain_native.PENDING`` (64 dashes).
        Rotation (by size and UTC day, the same rule) is decided there too, per record.

        The value types are not looked at here (that pass cost more than ``orjson.dumps``):
        ``orjson`` raises ``TypeError`` (journal unchanged) for what it cannot encode with
        passthrough options: datetime/date/time, dataclasses, subclasses of str, int, dict and
        list, bytes, Decimal, sets, numpy values, other objects; also for a non-str key or an
        int beyond 64 bits. A float, bool, list, tuple or dict value is refused by ``flush``
        (``JournalRecordError``, nothing of the batch written). Journaled by their value, as
        ``orjson`` encodes them: Enum members (IntEnum and StrEnum too), UUIDs (as the string),
        float NaN and infinities (as null). Never pass an ``orjson.Fragment``: its raw JSON is
        copied as given and only partly checked (see ``chain_native``)."""
        rec = dict(event)
        if "hash" in rec:
            del rec["hash"]
        seq = self._last_seq + 1
        rec["seq"] = seq
        recs = self._recs
        rec["prev_hash"] = _PENDING if recs else self._last_hash   # known after a flush
        rec["hash"] = _PENDING
        body = _dumps(rec, option=_PASSTHROUGH)   # TypeError: see above
        self._bodies.append(body)
        recs.append(rec)
        self._last_seq = seq
        return rec

    def _flush_native(self) -> None:
        """``flush`` of the native path: one ``chain_native`` call checks, hashes, chains and
        frames every pending record, the hashes go into the records ``append`` returned, then
        one ``os.write`` (per segment). Raises ``JournalRecordError`` if a pending record holds
        a value the journal does not take (see ``_append_native``): nothing of the batch is
        written, the journal is back at its last record that reached the OS and goes on from
        there, as after a failed write."""
        bodies = self._bodies
        if self._closed:
            raise JournalError("journal is closed")
        if self._needs_truncate is not None:
            self._retry_truncate()
        count = len(bodies)
        if not count:
            return
        blob = bodies[0] if count == 1 else b"".join(bodies)
        total = len(blob) + HLEN * count
        if total > self._room or count > self._cap:
            self._workspaces(max(self._cap, 2 * count), max(self._room, 2 * total), self._st)
        r = self._encode(blob, self._ws, self._st)
        if r != total and (r < 0 or r & _BYTES_MASK != total):
            self._refuse_pending(r, count)
        prev = self._last_hash
        hexes = self._hex_mv[:_HEX_STRIDE * count].tobytes().decode("ascii")
        i = 0
        for rec in self._recs:
            rec["prev_hash"] = prev
            rec["hash"] = prev = hexes[i:i + 64]
            i += _HEX_STRIDE
        self._last_hash = prev
        self._bodies = []
        self._recs = []
        if r != total or not self._seg_size or self._tap_on:
            self._write(self._native_chunks(r >> 40, total, bodies))
            return
        # the common case, one chunk into the open segment, written here rather than by
        # ``_write`` (same steps for one chunk: 0.4 us less per flush, and the order path
        # flushes after every socket read)
        seg_start = self._seg_size
        buf = self._out_mv[:total]
        done = 0
        try:
            done = os.write(self._fd, buf)
            while done < total:
                w = os.write(self._fd, buf[done:])
                if w <= 0:
                    raise OSError(errno.EIO, "write returned 0")
                done += w
            self._seg_size = seg_start + total
            if self._fsync_each:
                try:
                    os.fsync(self._fd)
                except OSError:
                    done = 0  # nothing of the chunk is known durable: cut it off
                    raise
        except OSError as e:
            self._rollback([(self._seg_first, self._seg_day, buf)], 0, done, seg_start, e)
        self._os_seq = self._last_seq
        self._os_hash = prev
        if self.watermark is not None:
            self.watermark.value = self._os_seq
        if self._wake_sync and not self._sync_asked:
            self._sync_asked = True
            self._wake.set()

    def _native_chunks(self, cuts: int, total: int, bodies: list) -> list:
        """The frames the native call wrote for ``bodies`` (``total`` bytes, ``cuts`` new
        segments started among them) as ``_write`` takes them: ``[(first seq, day, frames),
        ...]``, one chunk per segment. Also hands the payloads to the tap."""
        nch = cuts + 1
        mv = self._out_mv
        if self._tap_on:   # the payloads as bytes of their own (the buffers are reused)
            pl = self._tap_pending
            frames = mv[:total].tobytes()
            off = 0
            for n in map(len, bodies):
                off += HLEN
                pl.append(frames[off:off + n])
                off += n
        first_seq = self._last_seq - len(bodies) + 1
        cuts = self._st[chain_native.ST_CUTS:chain_native.ST_CUTS + 4 * nch].tolist()
        chunks = []
        first = self._tail_first
        for k in range(nch):
            i, start, day, day_set = cuts[4 * k:4 * k + 4]
            if k:
                first = first_seq + i
            end = cuts[4 * k + 5] if k + 1 < nch else total
            chunks.append((first, day if day_set else None, mv[start:end]))
        self._tail_first = first
        return chunks

    def _refuse_pending(self, r: int, count: int) -> None:
        """Drop every pending record because the native call refused one (``r``: its result)
        and raise ``JournalRecordError`` naming the record's seq, the key and the problem."""
        st = self._st
        first = self._last_seq - count + 1
        seq = key = value = None
        if r < 0:
            kind, i, kpos, vpos = st[chain_native.ST_BAD_KIND:chain_native.ST_BAD_VAL + 1].tolist()
            what = chain_native.BAD_WHAT.get(kind, "not a JSON value the journal takes")
            seq = first + i if i < count else None
            if i < count and 0 < kpos < vpos:
                try:
                    key = _loads(self._bodies[i][kpos:vpos - 1])
                    value = self._recs[i].get(key)
                except (ValueError, TypeError):
                    key = None
        else:
            what = "raw JSON that splits into other records than those appended (an orjson.Fragment?)"
        self._discard_pending()
        if key is not None:
            v = repr(value)
            problem = f"the value of key {key!r} is {what} ({v[:60]}{'...' if len(v) > 60 else ''})"
        else:
            problem = f"the record is {what}" if seq is not None else f"a record of seqs {first}..{first + count - 1} is {what}"
        msg = (f"journal {self._dir}: record seq {seq if seq is not None else first}: {problem}; audit event "
               f"values must be int, str or None. Nothing of this flush was written: records after seq "
               f"{self._os_seq} were discarded, the journal continues from seq {self._os_seq + 1}")
        log.error(msg)
        raise JournalRecordError(msg, seq=seq, key=key, problem=problem, last_seq=self._os_seq)

    def _discard_pending(self) -> None:
        """Back to the last record that reached the OS (pending records dropped, the native
        kernel's chain head and rotation state taken from the open segment)."""
        self._last_seq = self._os_seq
        self._last_hash = self._os_hash
        self._bodies = []
        self._recs = []
        self._chunks = []
        self._pending = bytearray()
        self._tail_first = self._seg_first if self._seg_first is not None else self._os_seq + 1
        self._tail_bytes = self._seg_size
        self._tail_day = self._seg_day if self._seg_size else None
        if self._encode is not None:
            self._ws[_WS_CHAIN:_WS_CHAIN + 64] = np.frombuffer(self._os_hash.encode("ascii"), dtype=np.uint8)
            self._set_rot()

    def _pending_last_hash(self) -> str:
        """Hash of the last pending record, computed here in Python (``last_hash`` between an
        ``append`` and the ``flush`` of the native path)."""
        prev = self._last_hash
        for body in self._bodies:
            q = len(body) - HASH_SUFFIX_LEN
            ph = q - 65
            if body[ph - 13:ph] != b'"prev_hash":"' or body[ph - 14] not in b",{":
                i = body.find(b',"prev_hash":"')
                ph = (i if i >= 0 else body.find(b'{"prev_hash":"')) + 14
            prev = _sha256(body[:ph] + prev.encode() + body[ph + 64:q] + b"}").hexdigest()
        return prev

    def _seal(self, seq: int) -> None:
        """Start a new segment at ``seq``: what is pending goes to the current one."""
        self._chunks.append((self._tail_first, self._tail_day, self._pending))
        self._pending = bytearray()
        self._tail_first = seq
        self._tail_bytes = 0
        self._tail_day = None

    def flush(self) -> None:
        """Write every pending record to the OS (one os.write per segment), then apply the
        fsync policy. On failure raises ``JournalWriteError`` after rolling back to the last
        record that reached the OS; the journal stays usable.

        (The pure-Python path; the native path binds ``flush`` to ``_flush_native``, which may
        also raise ``JournalRecordError`` for a value the journal does not take: nothing of the
        batch written, the same state as after a failed write.)"""
        if self._closed:
            raise JournalError("journal is closed")
        if self._needs_truncate is not None:
            self._retry_truncate()
        if not self._pending and not self._chunks:
            return
        chunks = self._chunks
        chunks.append((self._tail_first, self._tail_day, self._pending))
        self._chunks = []
        self._pending = bytearray()
        self._write(chunks)

    def _write(self, chunks: list) -> None:
        """Write ``[(first seq, day, frames), ...]`` (one os.write per chunk, switching segment
        where a chunk's first seq says so), apply the fsync policy, hand the payloads to the tap,
        wake the fsync thread. On failure roll back (``_rollback``) and raise."""
        i = 0
        done = 0
        seg_start = self._seg_size
        start = (self._seg_first, self._seg_size, self._seg_day)   # where the batch begins
        made: list[int] = []     # the segments this batch started (a failure deletes them)
        try:
            for i, (first, day, buf) in enumerate(chunks):
                done = 0
                if first != self._seg_first:
                    self._switch_segment(first, day)
                    made.append(first)
                seg_start = self._seg_size
                if seg_start == 0:
                    self._seg_day = day
                fd = self._fd
                total = len(buf)
                done = os.write(fd, buf)
                if done != total:
                    mv = memoryview(buf)
                    while done < total:
                        w = os.write(fd, mv[done:])
                        if w <= 0:
                            raise OSError(errno.EIO, "write returned 0")
                        done += w
                self._seg_size = seg_start + total
            if self._fsync_each:
                try:
                    os.fsync(self._fd)
                except OSError:
                    done = 0  # nothing of the last chunk is known durable: cut it off
                    raise
        except (OSError, JournalError) as e:   # JournalError: a new segment that already has data
            self._tap_pending = []
            self._rollback(chunks, i, done, seg_start, e, (made, *start))
        tap = self._tap   # once: ``untap`` may run on another thread meanwhile
        if self._tap_on and self._tap_pending and tap is not None:
            tap._push(self._last_seq - len(self._tap_pending) + 1, self._tap_pending)
            self._tap_pending = []
        self._os_seq = self._last_seq
        self._os_hash = self._last_hash
        if self.watermark is not None:
            self.watermark.value = self._os_seq
        if self._wake_sync and not self._sync_asked:
            self._sync_asked = True
            self._wake.set()

    def _switch_segment(self, first: int, day) -> None:
        path = self._dir / segment_name(first)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            if os.fstat(fd).st_size:
                raise JournalError(f"new segment {path} already has data")
            dfd = os.open(self._dir, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
            old = self._fd
            if old is not None and self._policy != "os":
                os.fsync(old)
        except BaseException:
            os.close(fd)
            try:
                if not os.path.getsize(path):
                    os.unlink(path)
            except OSError:
                pass
            raise
        with self._fd_lock:
            self._fd = fd
            if old is not None:
                os.close(old)
        self._seg_first = first
        self._seg_size = 0
        self._seg_day = day

    def _rollback(self, chunks, i: int, done: int, seg_start: int, err: Exception,
                  start: tuple | None = None) -> None:
        """Undo the failed write of chunk ``i`` (``done`` bytes of it were written at offset
        ``seg_start`` of the current segment): the journal goes back to where the batch began
        (``start``: the segments it started, and its first segment, size and day then), the
        chunks before ``i`` cut too. Raises JournalWriteError."""
        new_seq, new_hash = self._os_seq, self._os_hash
        kept = i if i == 0 or start is None else self._cut_batch(chunks, i, *start)
        # whole chunks before ``kept`` reached the OS and could not be cut: the journal keeps them
        for k in range(kept - 1, -1, -1):
            last = _last_frame(chunks[k][2], len(chunks[k][2]))
            if last is not None:
                new_seq, new_hash = last
                break
        # whole records of the failed chunk that reached the OS are cut too: the caller refuses
        # every command of the batch, and a command kept without its events would come back
        # to life (an order told "not accepted" resting in the book) when the engine rebuilds
        if self._fd is not None and chunks[i][0] == self._seg_first:
            keep = seg_start
            self._seg_size = keep
            try:
                os.ftruncate(self._fd, keep)
            except OSError as e2:
                self._needs_truncate = (self._fd, keep)
                log.error("journal: could not truncate a partial write: %s", e2)
        self._os_seq = new_seq
        self._os_hash = new_hash
        if self.watermark is not None:
            self.watermark.value = new_seq
        self._discard_pending()
        code = getattr(err, "errno", None)
        name = errno.errorcode.get(code, str(code)) if code else type(err).__name__
        msg = (f"journal write to {self._dir} failed ({name}: {getattr(err, 'strerror', None) or err}); records after "
               f"seq {new_seq} were discarded, the journal continues from seq {new_seq + 1}")
        log.error(msg)
        raise JournalWriteError(msg, errno_=code, last_seq=new_seq) from err

    def _cut_batch(self, chunks, i: int, made: list[int], first0: int | None, size0: int, day0) -> int:
        """A batch that started new segments failed in chunk ``i``: delete the segments it
        started (``made``; a file it found at a segment's name is not its to delete) and cut the
        one it began in back to ``size0``, so that none of its records stays
        journaled (the gateway refuses every command of the batch; one kept would come back to
        life when the engine rebuilds from the journal). The segments go first, newest first (a
        crash in between leaves a journal that ends early, never one with a gap); the cut of the
        first segment is fsynced unless the policy is "os" (the switch fsynced the records it
        cuts); a cut that fails is retried before the next write (``_retry_truncate``, which
        refuses writes until it works). Returns how many of the batch's leading chunks stay
        journaled: 0 when all were cut; ``i`` (logged, nothing changed) if a segment cannot be
        opened or the first delete fails; if a later delete fails, the chunks up to the segment
        it left, which becomes the open one (every segment after it is gone)."""
        fds: dict[int, int] = {}
        try:
            # every segment the journal may go on in, opened before anything is deleted: the one
            # it began in, and each it started but the last (the open one, ``self._fd``)
            if first0 is not None:
                fds[first0] = os.open(self._dir / segment_name(first0), os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            for first in made[:-1]:
                fds[first] = os.open(self._dir / segment_name(first), os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        except OSError as e:
            for fd in fds.values():
                os.close(fd)
            log.error("journal: could not cut the records of a failed batch from the segments it started: %s", e)
            return i
        left = None          # the newest segment a failed delete left (None: all deleted)
        for first in reversed(made):
            try:
                os.unlink(self._dir / segment_name(first))
            except FileNotFoundError:
                pass
            except OSError as e:
                log.error("journal: could not delete segment %s of a failed batch: %s", segment_name(first), e)
                left = first
                break
        if left is not None and left == made[-1]:     # nothing deleted: nothing changed
            for fd in fds.values():
                os.close(fd)
            return i
        try:
            dfd = os.open(self._dir, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as e:
            log.error("journal: fsync of %s after deleting a failed batch's segments: %s", self._dir, e)
        if left is None:
            keep, seg, kept = first0, (first0, size0, day0), 0
        else:   # a whole chunk of the batch is the segment's whole content (it started empty)
            k = next(k for k, c in enumerate(chunks) if c[0] == left)
            keep, seg, kept = left, (left, len(chunks[k][2]), chunks[k][1]), k + 1
        fd = fds.pop(keep, None) if keep is not None else None
        for other in fds.values():
            os.close(other)
        with self._fd_lock:
            old, self._fd = self._fd, fd
            if old is not None:
                os.close(old)
        self._seg_first, self._seg_size, self._seg_day = seg
        if fd is not None and left is None:
            try:
                os.ftruncate(fd, size0)
            except OSError as e:
                self._needs_truncate = (fd, size0)
                log.error("journal: could not truncate a failed batch's records: %s", e)
            else:
                if self._policy != "os":
                    try:
                        os.fsync(fd)
                    except OSError as e:
                        log.error("journal: fsync after cutting a failed batch's records: %s", e)
        return kept

    def _retry_truncate(self) -> None:
        """Cut the partial write a failed rollback left. While that fails, records appended since
        are discarded too (their commands are refused): none may reach the journal later."""
        fd, size = self._needs_truncate
        try:
            os.ftruncate(fd, size)
        except OSError as e:
            self._tap_pending = []
            self._discard_pending()
            raise JournalWriteError(f"journal {self._dir}: cannot truncate a partial write: {e}",
                                    errno_=e.errno, last_seq=self._os_seq) from e
        self._needs_truncate = None

    # -- durability
    def _sync_loop(self) -> None:
        wake = self._wake
        interval = self._interval
        lock = self._fd_lock
        while True:
            wake.wait()
            if self._stopping:
                return
            wake.clear()
            self._sync_asked = False   # after the clear: a flush from now on wakes us again
            t0 = time.monotonic()
            with lock:
                fd = self._fd
                if fd is not None:
                    try:
                        os.fsync(fd)
                    except OSError as e:  # reported by sync()/close()
                        self._sync_error = e
                        log.error("journal fsync failed: %s", e)
            rest = interval - (time.monotonic() - t0)
            if rest > 0:
                time.sleep(rest)

    def sync(self) -> None:
        """fsync the current segment now."""
        with self._fd_lock:
            if self._fd is not None:
                try:
                    os.fsync(self._fd)
                except OSError as e:
                    raise JournalWriteError(f"journal fsync failed: {e}", errno_=e.errno,
                                            last_seq=self._os_seq) from e
        err, self._sync_error = self._sync_error, None
        if err is not None:
            raise JournalWriteError(f"an earlier background fsync failed: {err}", errno_=err.errno,
                                    last_seq=self._os_seq)

    def close(self) -> None:
        """Flush, fsync, stop the fsync thread and release the directory."""
        if self._closed:
            return
        try:
            self.flush()
            self.sync()
        finally:
            self._stopping = True
            self._wake.set()
            if self._thread is not None:
                self._thread.join()
                self._thread = None
            with self._fd_lock:
                if self._fd is not None:
                    os.close(self._fd)
                    self._fd = None
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
            self._closed = True
            key = str(self._dir.resolve())
            if _OPEN_JOURNALS.get(key) is self:
                del _OPEN_JOURNALS[key]

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # pragma: no cover - best effort
        try:
            if not self._closed:
                self._stopping = True
                self._wake.set()
        except Exception:
            pass


def _frames_in(buf, limit: int):
    off = 0
    while off + HLEN <= limit:
        _, n, _, seq = _unpack_from(buf, off)
        end = off + HLEN + n
        if end > limit:
            return
        yield seq, off + HLEN, end
        off = end


def _last_frame(buf, limit: int) -> tuple[int, str] | None:
    last = None
    for last in _frames_in(buf, limit):
        pass
    if last is None:
        return None
    seq, ps, pe = last
    return seq, bytes(buf[pe - 66:pe - 2]).decode("ascii")

