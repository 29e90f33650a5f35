"""Persisted FIX message store: sequence numbers both ways and every message we sent.

One folder per session under ``DATA/fix/<TARGET>-<SENDER>/``:
  ``outbound.log``  the 8-byte tag ``OMSFIXS2`` then every message we sent, framed as
                    <seq u64><len u32><journal seq u64><next inbound seq u64><bytes> (the
                    journal seq is that of the event the message reports, 0 for session
                    messages), written with one os.write per batch *before* the batch goes to
                    the socket, so after a kill -9 a resend can serve every message the
                    counterparty may have seen. Carrying the inbound seq in the frame saves
                    the batch a second write; a log of the first format (no tag) is converted
                    on open;
  ``events.seq``    the highest journal seq already rendered for this session, kept across a
                    sequence reset and written at a clean stop: at start, reports of later
                    journal events (lost in a crash between journal and store) are rebuilt;
  ``inbound.seq``   the next MsgSeqNum expected from the counterparty (8 bytes, rewritten in
                    place after a processed batch that sent nothing); on open the higher of
                    this and the last frame's value holds, both only grow until a reset;
  ``reset.pending`` present only while a sequence reset moves the log and rewrites
                    inbound.seq (two steps): left by a crash between them, the next open
                    finishes the reset, so an empty log never meets the old inbound seq.
The next outbound sequence number is derived from the log itself (last seq + 1), so the two can
never disagree. Memory: the log is scanned in pieces on open and only a checkpoint every
``CHECKPOINT_EVERY`` messages stays in memory (``SentIndex``); a resend reads the frames from
the file, so what a session sent all day costs the process ~0.06 bytes a message. A torn last frame (crash mid-write) is cut off on open. The files'
modification times are the session's last activity, which decides a daily reset
(``last_activity_ns``); reports stored while the session is logged off leave them as they were.
"""
from __future__ import annotations

import logging
import os
import struct
import time
from array import array
from bisect import bisect_left, bisect_right
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)
_FRAME = struct.Struct("<QIQQ")   # seq, length, journal seq, next inbound seq
_FRAME_V1 = struct.Struct("<QIQ")  # the first format: no inbound seq, no file tag
_TAG = b"OMSFIXS2"


# one checkpoint (seq, frame offset) every this many sent messages: the rest of the index is the
# log itself, walked from the nearest checkpoint on a resend (at most this many frames more)
CHECKPOINT_EVERY = 256
_READ_CHUNK = 1 << 20      # the log is scanned on open in pieces of this size, never read whole


class SentIndex:
    """Where the stored messages lie in the log: a checkpoint every ``CHECKPOINT_EVERY`` seqs.

    A session sends millions of messages a day and its store lives all day: an entry per
    message (12 bytes in flat arrays, ~150 in a dict) grew the process by that much per
    message. The log frames carry their seq, so the index only says where to start reading:
    (seq, frame offset) of the first frame of each block of ``CHECKPOINT_EVERY`` seqs, 16 bytes
    per block (0.06 bytes a message), and ``MessageStore.get_sent`` walks the frames from the
    checkpoint at or before the first seq asked for.

    Seqs follow each other until a reset (which starts a new log). A frame whose seq is not
    above the last one (not expected) replaces that seq and drops every later one, as the
    frames of a log are read in order; it starts a checkpoint of its own and marks the index
    ``rewound``: a walk then reads to the end of the log instead of stopping past the range.
    """

    __slots__ = ("_seqs", "_offsets", "_next", "last_seq", "count", "rewound")

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self._seqs = array("q")
        self._offsets = array("q")
        self._next = 0             # the next seq that starts a checkpoint
        self.last_seq = 0
        self.count = 0             # frames added (since the last clear)
        self.rewound = False

    def __bool__(self) -> bool:
        return self.count > 0

    @property
    def nbytes(self) -> int:
        """Bytes held by the checkpoint arrays (for the memory probe and tests)."""
        return (len(self._seqs) + len(self._offsets)) * 8

    def add(self, seq: int, frame_offset: int) -> None:
        """The frame of ``seq`` starts at byte ``frame_offset`` of the log."""
        if self.count and seq <= self.last_seq:
            self.rewound = True
            cut = bisect_left(self._seqs, seq)
            del self._seqs[cut:], self._offsets[cut:]
            self._next = seq          # this frame starts a checkpoint
        if seq >= self._next:
            self._seqs.append(seq)
            self._offsets.append(frame_offset)
            self._next = (seq // CHECKPOINT_EVERY + 1) * CHECKPOINT_EVERY
        self.last_seq = seq
        self.count += 1

    def start(self, begin: int) -> int:
        """Offset of the frame to read from for seqs >= ``begin``: every frame that decides
        what is stored for those seqs lies at or after it."""
        i = bisect_right(self._seqs, begin) - 1
        return self._offsets[max(i, 0)]


class MessageStore:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._out_path = self.directory / "outbound.log"
        self._in_path = self.directory / "inbound.seq"
        self._events_path = self.directory / "events.seq"
        self._reset_path = self.directory / "reset.pending"
        self.event_seq = 0            # highest journal seq rendered into this store
        self._unsaved: list[tuple[int, bytes, int]] = []   # numbered, refused by the disk (save_sent)
        self._torn = False            # a failed write's bytes are still at the log's end
        self._index = SentIndex()
        self.next_sender_seq = 1
        self.next_target_seq = 1
        self._load()
        if not self._out_path.exists() or not self._out_path.stat().st_size:
            self._out_path.write_bytes(_TAG)
        self._out_fd = os.open(self._out_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._in_fd = os.open(self._in_path, os.O_RDWR | os.O_CREAT, 0o644)
        self._out_size = os.fstat(self._out_fd).st_size
        self._saved_target_seq = self.next_target_seq
        if self._reset_path.exists():
            log.warning("message store %s: finishing a sequence reset cut short by a crash", self.directory)
            self.reset()

    def _load(self) -> None:
        if self._out_path.exists():
            with open(self._out_path, "rb") as handle:
                head = handle.read(len(_TAG))
            if head and head != _TAG:
                self._convert_v1(self._out_path.read_bytes())
            good, size, frame_target = self._scan()
            if good < size:
                log.warning("message store %s: cutting torn tail at byte %d of %d", self._out_path, good, size)
                kept = os.stat(self._out_path)
                with open(self._out_path, "r+b") as handle:
                    handle.truncate(good)
                # a repair is not the session's activity: its time decides a daily reset
                os.utime(self._out_path, ns=(kept.st_atime_ns, kept.st_mtime_ns))
            self.next_target_seq = max(self.next_target_seq, frame_target)
        if self._events_path.exists():
            raw = self._events_path.read_bytes()
            if len(raw) >= 8:
                self.event_seq = max(self.event_seq, struct.unpack("<Q", raw[:8])[0])
        if self._in_path.exists():
            raw = self._in_path.read_bytes()
            if len(raw) >= 8:
                self.next_target_seq = max(self.next_target_seq, struct.unpack("<Q", raw[:8])[0])

    def _scan(self) -> tuple[int, int, int]:
        """Index the log's frames, reading it in pieces: (end of the last whole frame, file
        size, the inbound seq the last frame carries)."""
        index = self._index
        unpack_from, hdr = _FRAME.unpack_from, _FRAME.size
        frame_target = 0
        with open(self._out_path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size < len(_TAG):
                return 0, size, 0
            handle.seek(len(_TAG))
            base, buf, pos = len(_TAG), b"", 0       # buf[0] is at file offset base
            while True:
                need = pos + hdr
                if need <= len(buf):
                    seq, length, event_seq, target = unpack_from(buf, pos)
                    if seq == 0:
                        break
                    need += length
                if need > len(buf):
                    more = handle.read(max(_READ_CHUNK, need - len(buf)))
                    if not more:
                        break                        # end of the log, or a torn last frame
                    buf = buf[pos:] + more
                    base += pos
                    pos = 0
                    continue
                index.add(seq, base + pos)
                self.next_sender_seq = seq + 1
                if event_seq > self.event_seq:
                    self.event_seq = event_seq
                frame_target = target
                pos = need
        return base + pos, size, frame_target

    def _convert_v1(self, data: bytes) -> bytes:
        """Rewrite a first-format log (frames without the inbound seq) in the current one."""
        out = bytearray(_TAG)
        offset = 0
        while offset + _FRAME_V1.size <= len(data):
            seq, length, event_seq = _FRAME_V1.unpack_from(data, offset)
            start = offset + _FRAME_V1.size
            if start + length > len(data) or seq == 0:
                break
            out += _FRAME.pack(seq, length, event_seq, 0)
            out += data[start:start + length]
            offset = start + length
        tmp = self._out_path.with_suffix(".tmp")
        tmp.write_bytes(out)
        os.replace(tmp, self._out_path)
        log.info("message store %s: converted to the current frame format", self._out_path)
        return bytes(out)

    @property
    def has_history(self) -> bool:
        """The session has used this store (so it expects what happens while it is away)."""
        return bool(self._index) or self._events_path.exists() or self.next_target_seq > 1

    def save_sent(self, messages: list[tuple[int, bytes, int]], activity: bool = True) -> None:
        """Persist sent messages (seq, raw, journal seq) with one write, before the socket.
        ``activity=False`` (reports stored for a session that is logged off) keeps the log's
        modification time: they are not the session's activity (``last_activity_ns``).

        A write that fails (disk full) raises OSError and leaves the log as it was; the
        messages are kept, numbered, and written first by the next call (``unsaved``): the log
        stays a prefix of what the session is owed, none of them may go to the socket yet, and
        a crash meanwhile loses nothing the journal cannot rebuild (their events lie past the
        log's watermark)."""
        if self._unsaved:
            messages = self._unsaved + messages
        if not messages:
            return
        kept = None if activity else os.fstat(self._out_fd)
        buf = bytearray()
        offsets = []
        offset = self._out_size
        event_seq = self.event_seq
        target = self.next_target_seq
        pack = _FRAME.pack
        for seq, raw, reported in messages:
            offsets.append(offset + len(buf))
            buf += pack(seq, len(raw), reported, target)
            buf += raw
            if reported > event_seq:
                event_seq = reported
        self.next_sender_seq = messages[-1][0] + 1
        self.event_seq = event_seq           # rendered: not to be rendered again while we run
        self._write_log(buf, messages)
        for (seq, _raw, _reported), at in zip(messages, offsets):
            self._index.add(seq, at)
        if kept is not None:
            os.utime(self._out_fd, ns=(kept.st_atime_ns, kept.st_mtime_ns))
        self._saved_target_seq = target      # the frames carry it: no second write

    @property
    def unsaved(self) -> int:
        """Messages numbered but not in the log yet (a write refused by a full disk)."""
        return len(self._unsaved)

    def _write_log(self, buf: bytearray, messages: list) -> None:
        """Append ``buf`` whole or not at all: a partial write (disk full) is cut off again,
        else the next frames would land behind a torn one."""
        try:
            if self._torn:
                os.ftruncate(self._out_fd, self._out_size)
                self._torn = False
            view = memoryview(buf)
            while view:
                written = os.write(self._out_fd, view)
                view = view[written:]
        except OSError:
            self._unsaved = messages
            try:
                os.ftruncate(self._out_fd, self._out_size)
            except OSError:
                self._torn = True            # cut before the next write
            raise
        self._unsaved = []
        self._out_size += len(buf)

    def mark_events(self, event_seq: int) -> None:
        """Record that every journal event up to ``event_seq`` was rendered or is not ours.
        Not while rendered messages wait unsaved: a restart rebuilds them from the journal."""
        if self._unsaved:
            return
        if event_seq > self.event_seq or not self._events_path.exists():
            self.event_seq = max(self.event_seq, event_seq)
            tmp = self._events_path.with_suffix(".tmp")
            tmp.write_bytes(struct.pack("<Q", self.event_seq))
            os.replace(tmp, self._events_path)

    def save_target_seq(self) -> None:
        """Persist the next expected inbound seq if it moved (one pwrite of 8 bytes). A disk
        that refuses it (full) leaves it to the next call: the frames and the journal's
        commands carry it too, and the session's replies must not wait on it."""
        if self.next_target_seq != self._saved_target_seq:
            try:
                os.pwrite(self._in_fd, struct.pack("<Q", self.next_target_seq), 0)
            except OSError as exc:
                log.error("message store %s: inbound seq %d not saved (%s): tried again at the next batch",
                          self.directory, self.next_target_seq, exc)
                return
            self._saved_target_seq = self.next_target_seq

    def get_sent(self, begin: int, end: int) -> Iterator[tuple[int, bytes]]:
        """Stored messages with begin <= seq <= end, in order (missing ones are skipped): read
        from the log, from the index's checkpoint at or before ``begin``."""
        index = self._index
        if not index or end < begin:
            return
        limit = self._out_size
        rewound = index.rewound
        found: dict[int, bytes] = {}        # a rewound log: what the frames read so far keep
        unpack_from, hdr = _FRAME.unpack_from, _FRAME.size
        with open(self._out_path, "rb") as handle:
            pos = index.start(begin)
            handle.seek(pos)
            while pos + hdr <= limit:
                head = handle.read(hdr)
                if len(head) < hdr:
                    break
                seq, length, _event_seq, _target = unpack_from(head)
                pos += hdr + length
                if seq > end and not rewound:
                    break
                while rewound and found and next(reversed(found)) >= seq:
                    found.popitem()            # this frame replaces that seq and what follows
                if seq < begin or seq > end:
                    handle.seek(length, 1)
                    continue
                raw = handle.read(length)
                if len(raw) < length:
                    break
                if rewound:
                    found[seq] = raw
                else:
                    yield seq, raw
        if rewound:
            yield from sorted(found.items())

    def reset(self) -> None:
        """Start both sequences again at 1 (ResetSeqNumFlag, reset_on_logon, daily reset).

        The old log is kept beside the new one (renamed with a timestamp) for the record.
        Messages still unsaved belong to the old numbering: dropped with it.
        """
        if self._unsaved:
            log.warning("message store %s: %d messages never stored (disk full) dropped by a sequence reset",
                        self.directory, len(self._unsaved))
            self._unsaved = []
        self.mark_events(self.event_seq)     # the watermark outlives the log it came from
        fresh = self.directory / "outbound.new"
        fresh.write_bytes(_TAG)              # a full disk fails here, before anything moved
        self._reset_path.touch()             # a crash from here on: the next open finishes the reset
        os.close(self._out_fd)
        if self._out_path.exists() and self._out_path.stat().st_size > len(_TAG):
            # named by UTC time, as every time of the system (time.strftime alone is local time)
            now = time.time_ns()
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now // 1_000_000_000))
            self._out_path.rename(self.directory / f"outbound-{stamp}-{now}.log")
        os.replace(fresh, self._out_path)
        self._out_fd = os.open(self._out_path, os.O_WRONLY | os.O_APPEND, 0o644)
        self._out_size = len(_TAG)
        self._torn = False
        self._index.clear()
        self.next_sender_seq = 1
        self.next_target_seq = 1
        # not save_target_seq, which lets a failure pass: the old inbound seq must not outlive
        # the marker (an overwrite in place, it takes no new space)
        os.pwrite(self._in_fd, struct.pack("<Q", 1), 0)
        self._saved_target_seq = 1
        self._reset_path.unlink()

    def last_activity_ns(self) -> int:
        """When the session last wrote to its store (sent a message or moved the inbound seq),
        from the files' modification times; 0 for a store that never held anything."""
        if not self._index and self.next_target_seq == 1:
            return 0
        latest = 0
        for path in (self._out_path, self._in_path):
            try:
                latest = max(latest, os.stat(path).st_mtime_ns)
            except OSError:
                pass
        return latest

    def close(self) -> None:
        for fd in (self._out_fd, self._in_fd):
            try:
                os.close(fd)
            except OSError:
                pass
