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
                    this and the last frame's value holds, both only grow until a reset.
The next outbound sequence number is derived from the log itself (last seq + 1), so the two can
never disagree. A torn last frame (crash mid-write) is cut off on open. The files'
modification times are the session's last activity, which decides a daily reset
(``last_activity_ns``).
"""
from __future__ import annotations

import logging
import os
import struct
import time
from array import array
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)
_FRAME = struct.Struct("<QIQQ")   # seq, length, journal seq, next inbound seq
_FRAME_V1 = struct.Struct("<QIQ")  # the first format: no inbound seq, no file tag
_TAG = b"OMSFIXS2"


class SentIndex:
    """Where each stored message lies in the log: seq -> (offset, length).

    Sent seqs follow each other, so the index is two flat arrays from the first seq on
    (12 bytes a message instead of a dict entry and a tuple, ~150): a session sends millions
    of messages a day and the index lives as long as its store."""

    __slots__ = ("_first", "_offsets", "_lengths")

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self._first = 0
        self._offsets = array("q")      # -1: no message stored for that seq
        self._lengths = array("I")

    def __bool__(self) -> bool:
        return len(self._offsets) > 0

    def __len__(self) -> int:
        return sum(1 for o in self._offsets if o >= 0)

    def add(self, seq: int, offset: int, length: int) -> None:
        offsets, lengths = self._offsets, self._lengths
        if not offsets:
            self._first = seq
        i = seq - self._first
        if i < 0:                  # before the first one (not expected): start over from it
            self.clear()
            self._first, i = seq, 0
        if i < len(offsets):
            # not expected (seqs only grow until a reset), but a later frame wins, as in a map
            del offsets[i:], lengths[i:]
        while len(offsets) < i:    # a gap (not expected either): nothing stored there
            offsets.append(-1)
            lengths.append(0)
        offsets.append(offset)
        lengths.append(length)

    def between(self, begin: int, end: int) -> Iterator[tuple[int, int, int]]:
        """(seq, offset, length) of the stored messages with begin <= seq <= end, in order."""
        first, offsets = self._first, self._offsets
        for i in range(max(begin - first, 0), min(end - first + 1, len(offsets))):
            if offsets[i] >= 0:
                yield first + i, offsets[i], self._lengths[i]


class MessageStore:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._out_path = self.directory / "outbound.log"
        self._in_path = self.directory / "inbound.seq"
        self._events_path = self.directory / "events.seq"
        self.event_seq = 0            # highest journal seq rendered into this store
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

    def _load(self) -> None:
        if self._out_path.exists():
            data = self._out_path.read_bytes()
            if data and not data.startswith(_TAG):
                data = self._convert_v1(data)
            offset = len(_TAG) if data else 0
            good = offset
            frame_target = 0
            while offset + _FRAME.size <= len(data):
                seq, length, event_seq, target = _FRAME.unpack_from(data, offset)
                start = offset + _FRAME.size
                if start + length > len(data) or seq == 0:
                    break
                self._index.add(seq, start, length)
                self.next_sender_seq = seq + 1
                self.event_seq = max(self.event_seq, event_seq)
                frame_target = target
                offset = start + length
                good = offset
            if good < len(data):
                log.warning("message store %s: cutting torn tail at byte %d of %d", self._out_path, good, len(data))
                with open(self._out_path, "r+b") as handle:
                    handle.truncate(good)
            self.next_target_seq = max(self.next_target_seq, frame_target)
        if self._events_path.exists():
            raw = self._events_path.read_bytes()
            if len(raw) >= 8:
                self.event_seq = max(self.event_seq, struct.unpack("<Q", raw[:8])[0])
        if self._in_path.exists():
            raw = self._in_path.read_bytes()
            if len(raw) >= 8:
                self.next_target_seq = max(self.next_target_seq, struct.unpack("<Q", raw[:8])[0])

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

    def save_sent(self, messages: list[tuple[int, bytes, int]]) -> None:
        """Persist sent messages (seq, raw, journal seq) with one write, before the socket."""
        if not messages:
            return
        buf = bytearray()
        offset = self._out_size
        event_seq = self.event_seq
        target = self.next_target_seq
        pack = _FRAME.pack
        for seq, raw, reported in messages:
            buf += pack(seq, len(raw), reported, target)
            self._index.add(seq, offset + len(buf), len(raw))
            buf += raw
            if reported > event_seq:
                event_seq = reported
        view = memoryview(buf)
        while view:
            written = os.write(self._out_fd, view)
            view = view[written:]
        self._out_size += len(buf)
        self.next_sender_seq = messages[-1][0] + 1
        self.event_seq = event_seq
        self._saved_target_seq = target      # the frames carry it: no second write

    def mark_events(self, event_seq: int) -> None:
        """Record that every journal event up to ``event_seq`` was rendered or is not ours."""
        if event_seq > self.event_seq or not self._events_path.exists():
            self.event_seq = max(self.event_seq, event_seq)
            tmp = self._events_path.with_suffix(".tmp")
            tmp.write_bytes(struct.pack("<Q", self.event_seq))
            os.replace(tmp, self._events_path)

    def save_target_seq(self) -> None:
        """Persist the next expected inbound seq if it moved (one pwrite of 8 bytes)."""
        if self.next_target_seq != self._saved_target_seq:
            os.pwrite(self._in_fd, struct.pack("<Q", self.next_target_seq), 0)
            self._saved_target_seq = self.next_target_seq

    def get_sent(self, begin: int, end: int) -> Iterator[tuple[int, bytes]]:
        """Stored messages with begin <= seq <= end, in order (missing ones are skipped)."""
        if not self._index:
            return
        with open(self._out_path, "rb") as handle:
            for seq, offset, length in list(self._index.between(begin, end)):
                handle.seek(offset)
                yield seq, handle.read(length)

    def reset(self) -> None:
        """Start both sequences again at 1 (ResetSeqNumFlag, reset_on_logon, daily reset).

        The old log is kept beside the new one (renamed with a timestamp) for the record.
        """
        self.mark_events(self.event_seq)     # the watermark outlives the log it came from
        os.close(self._out_fd)
        if self._out_path.exists() and self._out_path.stat().st_size > len(_TAG):
            self._out_path.rename(self.directory / f"outbound-{time.strftime('%Y%m%dT%H%M%S')}-{time.time_ns()}.log")
        self._out_fd = os.open(self._out_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(self._out_fd, _TAG)
        self._out_size = len(_TAG)
        self._index.clear()
        self.next_sender_seq = 1
        self.next_target_seq = 1
        self._saved_target_seq = -1
        self.save_target_seq()

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
