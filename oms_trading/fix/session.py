"""FIX 4.2/4.4 acceptor sessions: logon, sequence numbers, heartbeats, resends, logout.

Follows the FIX session rules as QuickFIX/J and Artio implement them: a connection must open
with a valid Logon; a sequence gap is answered with a ResendRequest and later messages wait
in order until it is filled; a resend is served from the persisted store with PossDupFlag and
OrigSendingTime, administrative messages replaced by SequenceReset-GapFill. Everything we send
reaches the store before the socket.
"""
from __future__ import annotations

import asyncio
import hmac
import logging
import os
import shutil
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..config import DAY_NS, Config, SessionConfig, previous_utc_time_ns
from . import dictionary, fastpath
from .codec import FixMessage, FixParser, Garbled, encode, split_message, with_poss_dup
from ..audit import schema as ev
from ..audit.journal import JournalError, iter_records
from .gateway import COD_REASON
from .reports import EXEC_REPORT_TYPES, JOURNALED_REPORT_TYPES, ReportWriter, safe_text
from .store import MessageStore
from .timefmt import fix_timestamp, parse_fix_timestamp

if TYPE_CHECKING:
    from .gateway import Gateway

log = logging.getLogger(__name__)

ADMIN_TYPES = frozenset({b"0", b"1", b"2", b"3", b"4", b"5", b"A"})
APP_TYPES_IN = frozenset({b"D", b"F", b"G", b"H", b"q"})
MAX_QUEUED = 10_000          # messages held while waiting for a resend to fill a gap
# ... and their bytes: 10,000 messages of the 64 KiB a frame may have held over 1 GB per session
# (a client logged on without a password could send them); 10,000 orders of a few hundred bytes
# stay well below this
MAX_QUEUED_BYTES = 32 << 20
# the compiled inbound fast path (fastpath.py); OMS_FIX_FASTPATH=0 sends everything the general way
FAST_PATH = os.environ.get("OMS_FIX_FASTPATH", "1") != "0"
FAST_ROWS = 256              # messages per compiled scan
RESEND_CHUNK_BYTES = 1 << 20  # a ResendRequest is answered in writes of about this size
MAX_RESENDS_WAITING = 64      # ResendRequests queued behind a resend the client is not reading
# the most digits a sequence number field (7, 16, 36) may have: what the codec reads as a MsgSeqNum
# and the store's 64-bit fields hold (a NewSeqNo of 2^64 broke every store write of the session,
# one of 5,000 digits made int() raise); SequenceReset-Reset and an early ResendRequest are taken
# before the dictionary's checks, so the session checks it itself
MAX_SEQ_DIGITS = dictionary.MAX_INT_DIGITS
_fast_scan = fastpath.scan
# the longest text a session record (journal, log) keeps: reasons echo client bytes (CompIDs,
# field values) of up to a frame's 64 KiB, and a refused logon needs no password
MAX_RECORD_TEXT = 1000


def _password_ok(given: bytes, password: str) -> bool:
    """Password (554) ``given`` is ``password`` read as latin-1 (as every value is), compared in
    constant time: how long it takes says nothing of how much of it matched."""
    try:
        want = password.encode("latin-1")
    except UnicodeEncodeError:      # no bytes read as latin-1 give it: never matched
        return False
    return hmac.compare_digest(given, want)


def _bounded(text: str) -> str:
    return text if len(text) <= MAX_RECORD_TEXT else text[:MAX_RECORD_TEXT] + "..."


@dataclass(slots=True)
class Timing:
    """Session timers; tests shrink them."""
    logon_timeout_s: float = 10.0
    test_request_factor: float = 1.2      # silence of hb * factor -> TestRequest
    logout_timeout_s: float = 2.0


class FixSession(asyncio.Protocol):
    """One TCP connection; becomes a logged-on session once its Logon is accepted."""

    def __init__(self, acceptor: "FixAcceptor") -> None:
        self.acceptor = acceptor
        self.gateway: "Gateway" = acceptor.gateway
        self.parser = FixParser(max_message_bytes=65536)
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.cfg: SessionConfig | None = None
        self.store: MessageStore | None = None
        self.key: str | None = None
        self.logged_on = False
        self.closing = False
        self.logout_sent = False
        self.heartbeat_s = 30
        self.next_out = 1
        self._pending: list[tuple[int, bytes, int]] = []   # (seq, raw, journal seq reported)
        self._queued: dict[int, FixMessage] = {}
        self._queued_bytes = 0                      # len(raw) of the messages in _queued
        self._resend_until = 0                  # we asked for a resend up to this seq (0: none)
        self._logon_msg: FixMessage | None = None   # a too-high Logon waiting in the queue
        self._served_early: set[int] = set()       # queued ResendRequests already answered
        self._st_prefix = b""                      # SendingTime second cache (_sending_time_ok)
        self._st_secs = 0
        self._tolerance_s = 120
        self._validate = True
        self.writer: ReportWriter | None = None
        self._begin = b"FIX.4.4"
        self._sender = b"OMS"
        self._target = b""
        now = time.monotonic()
        self.last_received = now
        self.last_sent = now
        self.connected_at = now
        self.test_request_id: str | None = None
        self.test_request_sent_at = 0.0
        self._test_counter = 0
        self._day_ends_ns = 0
        self.use_fast_path = FAST_PATH
        self._fast: fastpath.FastTables | None = None   # the fast path's tables, set at logon
        self._fast_ids: tuple | None = None
        self._fast_out = None
        self._now_ms, self._now_text = -1, b""   # _now()'s last millisecond and its text
        # a resend being served under the transport's flow control: its chunk iterators and
        # what the session sent meanwhile (bytes), written in this order as the transport drains
        self._held: deque = deque()
        self._held_bytes = 0
        self._paused = False
        self._garbled_logged_at = float("-inf")   # see _log_garbled
        self._garbled_quiet = 0

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        sock = transport.get_extra_info("socket")
        if sock is not None:
            import socket
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        acceptor = self.acceptor
        waiting = sum(1 for s in acceptor.connections if not s.logged_on)
        if waiting >= acceptor.config.max_connections_before_logon:
            # each such connection holds a descriptor for up to the logon timeout, before any
            # credential is checked: without a bound, anyone could use up the process's
            # descriptors (journal segments, stores, logged-on sessions and HTTP need them too)
            acceptor.refused_before_logon += 1
            now = time.monotonic()
            if now - acceptor.refusal_logged_at >= 1.0:      # one line a second under a flood
                acceptor.refusal_logged_at = now
                log.warning("FIX connection from %s refused: %d connections not logged on yet (max_connections_"
                            "before_logon); %d refused so far", self.peer, waiting, acceptor.refused_before_logon)
            self.closing = True
            transport.abort()
            return
        acceptor.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.acceptor.connections.discard(self)
        self._drop_resends()
        self._held.clear()
        self._held_bytes = 0
        if self.logged_on:
            self.logged_on = False
            self.acceptor.session_ended(self, "connection lost" if exc is None else f"connection lost: {exc}")
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.last_received = time.monotonic()
        parser = self.parser
        parser.feed(data)
        try:
            while not self.closing:
                if self._fast is not None and self.logged_on and not self._queued and not self._resend_until:
                    self._take_fast()
                    if self.closing or parser._pos == len(parser._buf):
                        break
                item = parser.next_message()
                if item is None:
                    break
                if isinstance(item, Garbled):
                    self._log_garbled(item.reason)
                    if not self.logged_on:
                        self.disconnect(f"first message garbled: {item.reason}")
                        break
                    continue
                if not self.logged_on:
                    self._on_logon_attempt(item)
                else:
                    self._on_message(item)
        finally:
            self.gateway.end_batch()
            self.flush()

    def _log_garbled(self, reason: str) -> None:
        """One warning a second per session at most (the rest counted in the next one), each of
        bounded length: a client sending garbage must not turn its bytes into ten times as
        many bytes of log."""
        now = time.monotonic()
        if now - self._garbled_logged_at < 1.0:
            self._garbled_quiet += 1
            return
        more = f"; {self._garbled_quiet} more in the last second not logged" if self._garbled_quiet else ""
        log.warning("%s %s: garbled message ignored (%s)%s", self.key or "-", self.peer, reason[:200], more)
        self._garbled_logged_at = now
        self._garbled_quiet = 0

    def pause_writing(self) -> None:  # the transport's buffer is over its high-water mark
        self._paused = True

    def resume_writing(self) -> None:  # drained below its low-water mark: go on with a resend
        self._paused = False
        self._pump()

    # -- logon --------------------------------------------------------------------------

    def _refuse(self, why: str) -> None:
        why = _bounded(why)
        log.warning("FIX logon refused from %s: %s", self.peer, why)
        self.acceptor.record_session_event("session_reject", self.key, f"logon refused from {self.peer}: {why}")
        self.disconnect(why)

    def _on_logon_attempt(self, msg: FixMessage) -> None:
        if msg.msg_type != b"A":
            self._refuse(f"first message is MsgType {msg.msg_type!r}, not Logon")
            return
        sender, target = msg.get(49), msg.get(56)
        cfg = self.acceptor.find_config(sender, target)
        if cfg is None:
            self._refuse(f"unknown CompID pair SenderCompID={sender!r} TargetCompID={target!r}")
            return
        if msg.begin_string != cfg.begin_string.encode():
            self._refuse(f"BeginString {msg.begin_string!r} does not match session ({cfg.begin_string})")
            return
        problem = dictionary.validate(msg, msg.begin_string)
        if problem is not None:
            self._refuse(f"invalid Logon: {problem.text}")
            return
        tolerance = cfg.sending_time_tolerance_s or self.acceptor.config.sending_time_tolerance_s
        sending = parse_fix_timestamp(msg.get(52) or b"")
        if sending is None or abs(time.time_ns() - sending) > tolerance * 10**9:
            self._refuse("SendingTime missing or outside the accepted tolerance")
            return
        if cfg.username is not None and (msg.get(553) or b"").decode("latin-1") != cfg.username:
            self._refuse(f"wrong or missing Username (553) for {cfg.target_comp_id}")
            return
        if cfg.password is not None and not _password_ok(msg.get(554) or b"", cfg.password):
            self._refuse(f"wrong password for {cfg.target_comp_id}")
            return
        if cfg.key in self.gateway.sessions:
            self._refuse(f"session {cfg.key} is already logged on from another connection")
            return
        hb = msg.get(108)
        if hb is None or not hb.isdigit():
            self._refuse("HeartBtInt (108) missing or not a number")
            return
        if msg.get(141) == b"Y" and msg.seq_num != 1:
            self._refuse(f"ResetSeqNumFlag=Y with MsgSeqNum {msg.seq_num} (must be 1)")
            return
        self.cfg = cfg
        self.key = cfg.key
        self._tolerance_s = tolerance
        self._validate = cfg.validate
        self.heartbeat_s = cfg.heartbeat or int(hb)      # 0 from the client: no heartbeats
        self._begin = cfg.begin_string.encode()
        self._sender = cfg.sender_comp_id.encode()
        self._target = cfg.target_comp_id.encode()
        self.writer = self.acceptor.writer_for(cfg)
        if self.use_fast_path and not cfg.drop_copy:   # a drop copy's orders are refused (general path)
            self._fast = fastpath.tables_for(self._begin)
            if self._fast is not None:
                self._fast_ids = self._fast.ids(self._target, self._sender)
                self._fast_out = np.empty((FAST_ROWS, fastpath.ROW), np.int64)
        reset_requested = msg.get(141) == b"Y"
        try:
            self.store = self.acceptor.store_for(cfg)
            # one reading of the clock decides both whether the reset passed and when this
            # session's FIX day ends: two readings straddling the reset time left the session
            # on the old numbering through it (not due by the first, tomorrow's by the second)
            logon_ns = time.time_ns()
            daily = self.acceptor.daily_reset_due(self.store, logon_ns)
            if daily:
                log.info("FIX session %s: daily reset time %s UTC passed since its last activity: sequence reset",
                         cfg.key, self.acceptor.config.daily_reset)
            resetting = cfg.reset_on_logon or reset_requested or daily
            if resetting:
                self._reset_sequences("daily reset time passed" if daily else
                                      "reset_on_logon" if cfg.reset_on_logon else "Logon with ResetSeqNumFlag=Y")
        except OSError as exc:       # a full disk: the store's files cannot be made or reset
            self._refuse(f"message store unavailable: {exc}")
            return
        self.next_out = self.store.next_sender_seq
        seq = msg.seq_num
        expected = self.store.next_target_seq
        if seq < expected:
            # cannot be a resend of the logon: the counterparty lost messages we processed
            log.warning("FIX logon of %s from %s: MsgSeqNum too low, expecting %d but received %d",
                        cfg.key, self.peer, expected, seq)
            self.acceptor.record_session_event("session_reject", self.key,
                                               f"logon from {self.peer}: MsgSeqNum {seq} below {expected}")
            self.send_logout(f"MsgSeqNum too low, expecting {expected} but received {seq}")
            self.flush()
            self.disconnect("MsgSeqNum too low on Logon")
            return
        self._register()
        reset_at = self.acceptor.config.daily_reset
        # the moment this session's FIX day ends while it stays logged on (0: no daily reset)
        self._day_ends_ns = previous_utc_time_ns(reset_at, logon_ns) + DAY_NS if reset_at else 0
        logon_fields = [(98, b"0"), (108, str(self.heartbeat_s).encode())]
        if resetting:
            logon_fields.append((141, b"Y"))
        self.send(b"A", logon_fields)
        if seq > expected:
            # the logon itself is processed; it waits in the queue as a marker so that a
            # resend which stops short of it still lets the sequence move past it
            self._logon_msg = msg
            self._queue(seq, msg)
            self._request_resend(expected, seq)
        else:
            self.store.next_target_seq = seq + 1
        log.info("FIX session %s logged on from %s (hb %ss, in %d, out %d)", self.key, self.peer,
                 self.heartbeat_s, self.store.next_target_seq, self.next_out)
        self.acceptor.record_session_event("session_logon", self.key, f"logon from {self.peer}")

    def _reset_sequences(self, why: str) -> None:
        self.acceptor.reset_sequences(self.key, self.store, why)

    def _register(self) -> None:
        self.logged_on = True
        self.gateway.sessions[self.key] = self

    # -- messages after logon -----------------------------------------------------------

    def _on_message(self, msg: FixMessage) -> None:
        if msg.begin_string != self._begin:
            self.send_logout(f"Incorrect BeginString {msg.begin_string!r}")
            self.flush()
            self.disconnect("wrong BeginString")
            return
        seq = msg.seq_num
        if seq <= 0:
            self.send_logout("MsgSeqNum (34) missing or invalid")
            self.flush()
            self.disconnect("MsgSeqNum missing")
            return
        get = msg._d.get
        if get(49) != self._target or get(56) != self._sender:
            self.send_reject(msg, 9, None, "CompID problem")
            if seq == self.store.next_target_seq:    # a seq off the expected one leaves it as it is
                self._advance(seq)
            self.send_logout("CompID problem")
            self.flush()
            self.disconnect("CompID problem")
            return
        mt = msg.msg_type
        expected = self.store.next_target_seq
        if mt == b"4" and get(123) != b"Y":
            if not self._stale_sending_time(msg):
                self._sequence_reset(msg)
            return
        if mt == b"A" and get(141) == b"Y" and get(43) != b"Y":
            # whatever its seq, as QuickFIX/J: it starts the new numbering (a seq above 1 is a gap in it)
            if not self._stale_sending_time(msg):
                self._in_session_reset(msg)
            return
        if seq > expected:
            if mt == b"2":
                # answer at once (the counterparty waits for it to fill our side), not again later
                self._serve_resend(msg)
                self._served_early.add(seq)
            if mt == b"5":
                self._on_logout(msg)
                return
            if len(self._queued) >= MAX_QUEUED or self._queued_bytes + len(msg.raw) > MAX_QUEUED_BYTES:
                self.send_logout("Too many messages queued behind a sequence gap")
                self.flush()
                self.disconnect("queue overflow")
                return
            self._queue(seq, msg)
            if self._resend_until:
                # our ResendRequest (EndSeqNo 0: everything) is still being answered
                self._resend_until = max(self._resend_until, seq)
            else:
                self._request_resend(expected, seq)
            return
        if seq < expected:
            if msg.get(43) == b"Y":
                return  # a duplicate we already processed
            self.send_logout(f"MsgSeqNum too low, expecting {expected} but received {seq}")
            self.flush()
            self.disconnect("MsgSeqNum too low")
            return
        self._process_in_order(msg)
        self._drain_queue()

    def _take_fast(self) -> None:
        """Process the clean application messages at the head of the buffer in one compiled
        scan (fastpath.py); the first message it is unsure of stays for the general path."""
        parser = self.parser
        buf = parser._buf
        pos = parser._pos
        end = len(buf)
        if end - pos < 64:
            return
        out = self._fast_out
        ids, n_prefix, n_them = self._fast_ids
        rows, parser._pos = _fast_scan(np.frombuffer(buf, np.uint8), pos, end, ids, n_prefix, n_them,
                                       self.store.next_target_seq, time.time(), float(self._tolerance_s),
                                       self._fast.rules, out)
        if not rows:
            return
        store = self.store
        key = self.key
        account = self.cfg.account
        build = self.gateway.command_from_row
        submit = self.gateway.submit
        for row in out[:rows].tolist():
            if self.closing:
                return
            store.next_target_seq = row[1] + 1
            try:
                submit(build(key, account, buf, row))
            except Exception as exc:   # the application could not take it: say so, keep the session
                msg = split_message(buf[row[2]:row[3]])
                log.exception("%s: application failed on %s seq %d", key, msg.msg_type, row[1])
                self.send_business_reject(msg, 4, None, f"Application could not process the message: {exc}")

    def _drain_queue(self) -> None:
        queued = self._queued
        if not queued:
            return
        while not self.closing:
            nxt = self.store.next_target_seq
            msg = queued.pop(nxt, None)
            if msg is None:
                break
            self._queued_bytes -= len(msg.raw)
            if msg is self._logon_msg:
                self._logon_msg = None
                self._advance(nxt)
            elif nxt in self._served_early:
                self._served_early.discard(nxt)
                self._advance(nxt)
            else:
                self._process_in_order(msg)
        nxt = self.store.next_target_seq
        for seq in [s for s in queued if s < nxt]:     # skipped by a SequenceReset / GapFill
            self._queued_bytes -= len(queued.pop(seq).raw)
            self._served_early.discard(seq)
        if self._resend_until and nxt > self._resend_until:
            self._resend_until = 0

    def _queue(self, seq: int, msg: FixMessage) -> None:
        """Hold ``msg`` until the gap before ``seq`` is filled, counting its bytes."""
        old = self._queued.get(seq)
        if old is not None:       # the same seq again: the later one is kept, as before
            self._queued_bytes -= len(old.raw)
        self._queued[seq] = msg
        self._queued_bytes += len(msg.raw)

    def _in_session_reset(self, msg: FixMessage) -> None:
        """Logon with ResetSeqNumFlag=Y while logged on: both sides start again at 1."""
        log.info("%s: in-session sequence reset requested by the counterparty", self.key)
        self.gateway.end_batch()    # reports of earlier messages of this read keep the old numbering
        self.flush()
        self._drop_resends()          # the rest of a resend under way is of the old numbering
        self._reset_sequences("in-session Logon with ResetSeqNumFlag=Y")
        self.next_out = 1
        self._queued.clear()
        self._queued_bytes = 0
        self._served_early.clear()
        self._resend_until = 0
        self._logon_msg = None
        self.send(b"A", [(98, b"0"), (108, str(self.heartbeat_s).encode()), (141, b"Y")])
        seq = msg.seq_num
        if seq > 1:
            # the spec wants MsgSeqNum 1 here; QuickFIX/J takes a higher one as a gap in the new
            # numbering: 1.. is asked for, the Logon waits in the queue as a marker (as at logon)
            log.warning("%s: in-session reset Logon with MsgSeqNum %d (should be 1): asking for 1..%d",
                        self.key, seq, seq - 1)
            self._logon_msg = msg
            self._queue(seq, msg)
            self._request_resend(1, seq)
        else:
            self.store.next_target_seq = 2
        self.acceptor.record_session_event("session_logon", self.key, "in-session sequence reset")

    def _reject_bad_time(self, msg, tag: int, name: str, raw: bytes | None) -> None:
        """Reject a timestamp field that cannot be read: absent 1, empty 4, not a UTCTimestamp 6."""
        if raw is None:
            self.send_reject(msg, 1, tag, f"Required tag missing: {tag} ({name})")
        elif not raw:
            self.send_reject(msg, 4, tag, f"Tag specified without a value: {tag} ({name})")
        else:
            self.send_reject(msg, 6, tag, f"Incorrect data format for value: {tag} ({name})")

    def _sending_time_ok(self, raw: bytes | None) -> bool:
        """SendingTime within the tolerance. The whole-second prefix is parsed once per second
        of SendingTime (a hot-path saving); the fraction's format is the dictionary's check."""
        if not raw:
            return False
        prefix = raw[:17]
        if prefix == self._st_prefix:
            secs = self._st_secs
        else:
            ns = parse_fix_timestamp(raw)
            if ns is None:
                return False
            secs = ns // 10**9
            self._st_prefix, self._st_secs = prefix, secs
        return abs(time.time() - secs) <= self._tolerance_s + 1

    def _stale_sending_time(self, msg: FixMessage) -> bool:
        """For the messages taken whatever their MsgSeqNum (SequenceReset-Reset, in-session reset
        Logon), which change the numbering before ``_process_in_order`` would check them: a
        readable SendingTime outside the tolerance is answered as on any message (Reject 10,
        Logout, disconnect) and the message is not applied. True if it was."""
        raw = msg.get(52)
        if self._sending_time_ok(raw) or parse_fix_timestamp(raw or b"") is None:
            return False
        self.send_reject(msg, 10, 52, "SendingTime accuracy problem")
        self.send_logout("SendingTime accuracy problem")
        self.flush()
        self.disconnect("SendingTime accuracy problem")
        return True

    def _advance(self, seq: int) -> None:
        self.store.next_target_seq = seq + 1

    def _process_in_order(self, msg: FixMessage) -> None:
        seq = msg.seq_num
        mt = msg.msg_type
        get = msg._d.get
        # SendingTime first, PossDup or not (as QuickFIX/J): a resend's SendingTime is the time
        # it was sent again, so a stale one is an accuracy problem, never a licence to replay
        if not self._sending_time_ok(get(52)):
            sending = get(52)
            if not sending or parse_fix_timestamp(sending) is None:
                # no time to judge: rejected as any other required field, the session goes on
                self._reject_bad_time(msg, 52, "SendingTime", sending)
                self._advance(seq)
                return
            self.send_reject(msg, 10, 52, "SendingTime accuracy problem")
            self._advance(seq)
            self.send_logout("SendingTime accuracy problem")
            self.flush()
            self.disconnect("SendingTime accuracy problem")
            return
        if get(43) == b"Y" and mt != b"4":
            orig_raw = get(122)
            orig = parse_fix_timestamp(orig_raw or b"")
            if orig is None:
                self._reject_bad_time(msg, 122, "OrigSendingTime", orig_raw)
                self._advance(seq)
                return
            sending = parse_fix_timestamp(get(52))     # None: a bad fraction, the dictionary's to reject
            if sending is not None and orig > sending:
                self.send_reject(msg, 10, 122, "OrigSendingTime is after SendingTime")
                self._advance(seq)
                return
        problem = dictionary.validate(msg, self._begin) if self._validate else None
        if problem is not None:
            if getattr(problem, "business", False):
                self.send_business_reject(msg, 3, problem.tag, problem.text)
            else:
                self.send_reject(msg, problem.reason, problem.tag, problem.text)
            self._advance(seq)
            return
        if mt == b"4":              # gap fill
            raw_new = msg.get(36) or b""
            if len(raw_new) > MAX_SEQ_DIGITS:     # reaches here only with validation off
                self.send_reject(msg, 6, 36, "NewSeqNo (36) not a sequence number")
                self._advance(seq)
                return
            new_seq = int(raw_new) if raw_new.isdigit() else 0
            if new_seq <= seq:
                self.send_reject(msg, 5, 36, f"NewSeqNo {new_seq} must be above MsgSeqNum {seq}")
                self._advance(seq)
                return
            self.store.next_target_seq = new_seq
            return
        self._advance(seq)
        if mt in APP_TYPES_IN and self.cfg.drop_copy:
            self._refuse_on_drop_copy(msg)
        elif mt in APP_TYPES_IN:
            try:
                command = self.gateway.command_from_fix(self.key, self.cfg.account, msg)
                if command is None:
                    self.send_business_reject(msg, 3, 35, f"Unsupported message type {mt.decode('latin-1')}")
                    return
                self.gateway.submit(command)
            except Exception as exc:   # the application could not take it: say so, keep the session
                log.exception("%s: application failed on %s seq %d", self.key, mt, seq)
                self.send_business_reject(msg, 4, None, f"Application could not process the message: {exc}")
        elif mt == b"0":
            if self.test_request_id is not None and msg.get(112) == self.test_request_id.encode():
                self.test_request_id = None
        elif mt == b"1":
            self.send(b"0", [(112, msg.get(112) or b"")])
        elif mt == b"2":
            self._serve_resend(msg)
        elif mt == b"5":
            self._on_logout(msg)
        elif mt == b"3":
            log.warning("%s: counterparty rejected our message %s: %s", self.key, msg.get(45), msg.get(58))
        elif mt == b"j":
            # never answered with a j of our own: two engines rejecting each other's rejects loop
            log.warning("%s: counterparty's application rejected our message %s (MsgType %s, reason %s): %s",
                        self.key, msg.get(45), msg.get(372), msg.get(380), msg.get(58))
        elif mt == b"A":
            self.send_reject(msg, 5, 35, "Already logged on")
        else:
            self.send_business_reject(msg, 3, 35, f"Unsupported message type {mt.decode('latin-1')}")

    def _refuse_on_drop_copy(self, msg: FixMessage) -> None:
        """A drop-copy session only receives copies of reports: an order, cancel, replace,
        status or mass cancel it sends is refused (BusinessMessageReject, Not authorized in
        FIX 4.4, Other in 4.2, which has no such reason), audited, and never reaches the engine."""
        mt = msg.msg_type.decode("latin-1")
        text = f"Session {self.key} is a drop-copy session: it receives copies of reports and cannot send MsgType {mt}"
        log.warning("%s: %s message seq %d refused (drop-copy session)", self.key, mt, msg.seq_num)
        self.send_business_reject(msg, 6 if self._begin != b"FIX.4.2" else 0, None, text)
        self.acceptor.record_session_event(ev.SESSION_REJECT, self.key, f"BusinessMessageReject: {text}",
                                           ref_seq=msg.seq_num)

    def _sequence_reset(self, msg: FixMessage) -> None:
        """SequenceReset in reset mode: accepted whatever its MsgSeqNum."""
        raw = msg.get(36) or b""
        if not raw.isdigit() or len(raw) > MAX_SEQ_DIGITS:
            self.send_reject(msg, 1 if not raw else 6, 36, "NewSeqNo (36) missing or not a number")
            return
        new_seq = int(raw)
        if new_seq < self.store.next_target_seq:
            self.send_reject(msg, 5, 36, f"NewSeqNo {new_seq} is below the expected {self.store.next_target_seq}")
            return
        self.store.next_target_seq = new_seq
        self._drain_queue()

    def _request_resend(self, begin: int, end_seen: int) -> None:
        self._resend_until = end_seen
        self.send(b"2", [(7, str(begin).encode()), (16, b"0")])

    def _serve_resend(self, msg: FixMessage) -> None:
        begin_raw, end_raw = msg.get(7) or b"", msg.get(16) or b""
        if not begin_raw.isdigit() or not end_raw.isdigit():
            return
        # serve what reached the store; messages still pending in this batch (higher seqs)
        # go out right after, with the flush that follows
        last = self.store.next_sender_seq - 1
        # more digits than a sequence number has: beyond anything we sent (never int()'d)
        begin = int(begin_raw) if len(begin_raw) <= MAX_SEQ_DIGITS else last + 1
        end = int(end_raw) if len(end_raw) <= MAX_SEQ_DIGITS else last
        if end == 0 or (end == 999999 and self._begin == b"FIX.4.2") or end > last:
            end = last
        if begin < 1 or begin > end:
            log.info("%s: ResendRequest %d..%s beyond our last sent %d: nothing to resend",
                     self.key, begin, end_raw[:20].decode(), last)
            return
        if sum(1 for item in self._held if not isinstance(item, bytes)) >= MAX_RESENDS_WAITING:
            # a client that keeps asking while it does not read what we resend: each request
            # waits here, uncounted by the outbound byte bound, so their number is bounded
            log.warning("%s %s: %d ResendRequests waiting to be served (client not reading): disconnecting",
                        self.key, self.peer, MAX_RESENDS_WAITING)
            self.closing = True
            if self.transport is not None:
                self.transport.abort()
            return
        log.info("%s: serving ResendRequest %d..%d", self.key, begin, end)
        # written as the transport takes it (pause_writing / resume_writing); what the session
        # sends meanwhile waits behind it, so the counterparty sees the resent seqs first
        self._held.append(self._resend_chunks(begin, end))
        self._pump()

    def _resend_chunks(self, begin: int, end: int):
        """The answer to a ResendRequest in writes of about RESEND_CHUNK_BYTES, streamed from
        the store: a resend of a whole day is never held at once."""
        now = fix_timestamp(time.time_ns(), self.acceptor.config.sending_time_precision)
        gap_start = begin            # first seq not resent yet: a gap fill covers it up to the next one
        out: list[bytes] = []
        size = 0
        for seq, raw in self.store.get_sent(begin, end):
            if seq < gap_start or _msg_type_of(raw) in ADMIN_TYPES:
                continue
            if seq > gap_start:
                out.append(self._gap_fill(gap_start, seq, now))
            out.append(with_poss_dup(raw, now))
            gap_start = seq + 1
            size += len(raw)
            if size >= RESEND_CHUNK_BYTES:
                yield b"".join(out)
                out, size = [], 0
        if gap_start <= end:
            out.append(self._gap_fill(gap_start, end + 1, now))
        if out:
            yield b"".join(out)

    def _pump(self) -> None:
        """Write what waits in ``_held`` while the transport takes it."""
        held = self._held
        while held and not self._paused:
            transport = self.transport
            if transport is None or transport.is_closing():
                return
            item = held[0]
            if isinstance(item, bytes):
                held.popleft()
                self._held_bytes -= len(item)
            else:
                item = next(item, None)
                if item is None:
                    held.popleft()
                    continue
            transport.write(item)
            self.last_sent = time.monotonic()

    def _drop_resends(self) -> None:
        """Give up the resends under way (closing, or a sequence reset); what the session sent
        meanwhile stays to be written."""
        for item in [i for i in self._held if not isinstance(i, bytes)]:
            self._held.remove(item)
            item.close()

    def _gap_fill(self, seq: int, new_seq: int, now: bytes) -> bytes:
        return encode(self._begin, b"4", self._sender, self._target, seq, now,
                      [(123, b"Y"), (36, str(new_seq).encode())], extra_header=[(43, b"Y"), (122, now)])

    def _on_logout(self, msg: FixMessage) -> None:
        if not self.logout_sent:
            self.send_logout(None)
        self.flush()
        self.disconnect("logout")

    # -- sending ------------------------------------------------------------------------

    def _now(self) -> bytes:
        ns = time.time_ns()
        precision = self.acceptor.config.sending_time_precision
        if precision != "ms":
            return fix_timestamp(ns, precision)
        ms = ns // 1_000_000
        if ms != self._now_ms:             # a batch's reports share their millisecond
            self._now_ms, self._now_text = ms, fix_timestamp(ns, precision)
        return self._now_text

    def send(self, msg_type: bytes, body: list[tuple[int, object]]) -> None:
        if self.gateway.has_pending():
            # reports caused by earlier messages of this batch go first, so an answer
            # (Heartbeat to a TestRequest, a Reject) never overtakes them
            self.gateway.end_batch()
        seq = self.next_out
        self.next_out += 1
        raw = encode(self._begin, msg_type, self._sender, self._target, seq, self._now(), body)
        self._pending.append((seq, raw, 0))

    def send_logout(self, text: str | None) -> None:
        self.logout_sent = True
        self.send(b"5", [(58, safe_text(text))] if text else [])

    def send_reject(self, msg: FixMessage, reason: int, tag: int | None, text: str) -> None:
        body: list[tuple[int, object]] = [(45, str(max(msg.seq_num, 0)).encode())]
        if tag is not None:
            body.append((371, str(tag).encode()))
        body.append((372, msg.msg_type or b"?"))
        if self._begin != b"FIX.4.2" or reason <= 11:
            body.append((373, str(reason).encode()))
        body.append((58, safe_text(text)))
        self.send(b"3", body)
        self.acceptor.record_session_event("session_reject", self.key, f"Reject {reason} tag {tag}: {text}",
                                           ref_seq=msg.seq_num)

    def send_business_reject(self, msg: FixMessage, reason: int, tag: int | None, text: str) -> None:
        body: list[tuple[int, object]] = [(45, str(max(msg.seq_num, 0)).encode()), (372, msg.msg_type or b"?")]
        ref_id = msg.get(11)
        if ref_id:
            body.append((379, ref_id))
        body.append((380, str(reason).encode()))
        body.append((58, safe_text(text)))
        self.send(b"j", body)

    def queue_report(self, event: dict) -> None:
        """An engine event as its FIX message (ExecutionReport, OrderCancelReject or
        OrderMassCancelReport), remembering which journal seq it reports."""
        seq = self.next_out
        self.next_out += 1
        self._pending.append((seq, self.writer.render(seq, self._now(), event), event.get("seq", 0)))

    def flush(self) -> None:
        """Store first, then one socket write for everything queued."""
        pending = self._pending
        if self.store is not None:
            if pending:
                self._pending = []
                try:
                    self.store.save_sent(pending)
                except OSError as exc:
                    self._store_failed(exc)
                    return
            self.store.save_target_seq()
        if pending:
            self._write(b"".join(item[1] for item in pending))

    def _store_failed(self, exc: OSError) -> None:
        """The store refused the batch (disk full): none of it may leave, nor anything after it
        (a Logout needs a stored seq too), so the connection is closed. The store keeps the
        messages and writes them first once it can: the next logon's resend delivers them."""
        log.error("%s %s: message store write failed (%s): %d messages held for the next logon's resend",
                  self.key, self.peer, exc, self.store.unsaved)
        self.disconnect(f"message store unavailable: {exc}")

    def _write(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing() or not data:
            return
        limit = self.acceptor.config.max_outbound_buffer_kb * 1024
        if self._held:
            # a resend is being served: this follows it, and what waits is bounded the same way
            self._held.append(data)
            self._held_bytes += len(data)
            if self._held_bytes > limit:
                log.warning("%s %s: %d KiB waiting behind a resend (client not reading): disconnecting",
                            self.key, self.peer, self._held_bytes // 1024)
                self.closing = True
                transport.abort()
            return
        transport.write(data)
        self.last_sent = time.monotonic()
        if transport.get_write_buffer_size() > limit:
            log.warning("%s %s: outbound buffer over %d KiB (client not reading): disconnecting",
                        self.key, self.peer, limit // 1024)
            self.closing = True
            transport.abort()

    def disconnect(self, why: str) -> None:
        if self.closing and self.transport is None:
            return
        self.closing = True
        if self._held:                 # a Logout waiting behind a resend goes out, the resend not
            self._drop_resends()
            self._paused = False
            self._pump()
        if self.transport is not None and not self.transport.is_closing():
            log.info("%s %s: disconnecting (%s)", self.key or "-", self.peer, why)
            self.transport.close()

    # -- timers (called by the acceptor's ticker) ----------------------------------------

    def _end_session_day(self) -> None:
        """The daily reset time came while logged on: log out, then both sequences start
        again at 1 (QuickFIX does the same at a session's end time)."""
        reset_at = self.acceptor.config.daily_reset
        log.info("FIX session %s: daily reset time %s UTC: logging out and resetting sequence numbers",
                 self.key, reset_at)
        self.send_logout(f"End of the FIX session day ({reset_at} UTC): sequence numbers start again at 1")
        self.flush()
        self.disconnect("daily session reset")
        self._reset_sequences("end of the FIX session day")
        self.next_out = self.store.next_sender_seq

    def tick(self, now: float) -> None:
        if self.closing:
            return
        if not self.logged_on:
            if now - self.connected_at > self.acceptor.timing.logon_timeout_s:
                self._refuse("no Logon received in time")
            return
        if self._day_ends_ns and time.time_ns() >= self._day_ends_ns:
            self._end_session_day()
            return
        hb = self.heartbeat_s
        if hb <= 0:
            return
        if self.test_request_id is not None and self.last_received > self.test_request_sent_at:
            self.test_request_id = None           # the counterparty is alive
        if self.test_request_id is not None:
            if now - self.test_request_sent_at > hb:
                self.send_logout("Test request not answered")
                self.flush()
                self.disconnect("TestRequest unanswered")
            return
        if now - self.last_received > hb * self.acceptor.timing.test_request_factor:
            self._test_counter += 1
            self.test_request_id = f"TEST{self._test_counter}"
            self.test_request_sent_at = now
            self.send(b"1", [(112, self.test_request_id.encode())])
            self.flush()
        elif now - self.last_sent >= hb:
            self.send(b"0", [])
            self.flush()


def _msg_type_of(raw: bytes) -> bytes | None:
    start = raw.find(b"\x0135=")
    if start < 0:
        return None
    end = raw.find(b"\x01", start + 4)
    return raw[start + 4:end]


class FixAcceptor:
    """Listens for FIX connections, knows the configured sessions and their stores."""

    def __init__(self, config: Config, gateway: "Gateway", data_dir: Path, timing: Timing | None = None) -> None:
        self.config = config
        self.gateway = gateway
        self.data_dir = Path(data_dir)
        self.timing = timing or Timing()
        self.connections: set[FixSession] = set()
        self._configs = {(s.target_comp_id.encode(), s.sender_comp_id.encode()): s for s in config.sessions}
        self._by_key = {s.key: s for s in config.sessions}
        self._stores: dict[str, MessageStore] = {}
        self._writers: dict[str, ReportWriter] = {}
        self._no_store: set[str] = set()        # sessions known to have no store yet
        self._records_unflushed = False         # session records journaled but not flushed
        self.refused_before_logon = 0           # connections refused by max_connections_before_logon
        self.refusal_logged_at = 0.0
        gateway.drop_copies = {s.key for s in config.sessions if s.drop_copy}
        gateway.offline_sink = self.store_offline
        gateway.no_offline = self._no_store
        self._server: asyncio.AbstractServer | None = None
        self._ticker: asyncio.Task | None = None

    def find_config(self, sender: bytes | None, target: bytes | None) -> SessionConfig | None:
        return self._configs.get((sender or b"", target or b""))

    def _store_path(self, cfg: SessionConfig) -> Path:
        return self.data_dir / "fix" / f"{cfg.target_comp_id}-{cfg.sender_comp_id}"

    def _journal_seq(self) -> int:
        journal = getattr(self.gateway.engine, "journal", None)
        return journal.last_seq if journal is not None else 0

    def store_for(self, cfg: SessionConfig) -> MessageStore:
        store = self._stores.get(cfg.key)
        if store is None:
            path = self._store_path(cfg)
            new = not path.exists()
            try:
                store = MessageStore(path)
                if new:   # nothing journaled before a session's first logon is its to receive
                    store.mark_events(self._journal_seq())
            except OSError:
                if new:   # a half-made store (disk full) would be taken as used at the next try
                    shutil.rmtree(path, ignore_errors=True)
                raise
            self._stores[cfg.key] = store
            self._no_store.discard(cfg.key)
        return store

    def existing_store(self, cfg: SessionConfig) -> MessageStore | None:
        """The store of a session that has used it before; None for one never logged on."""
        store = self._stores.get(cfg.key)
        if store is None:
            if cfg.key in self._no_store:
                return None
            if not self._store_path(cfg).exists():
                self._no_store.add(cfg.key)      # until its first logon creates one
                return None
            store = self.store_for(cfg)
        return store if store.has_history else None

    def writer_for(self, cfg: SessionConfig) -> ReportWriter:
        writer = self._writers.get(cfg.key)
        if writer is None:
            writer = self._writers[cfg.key] = ReportWriter(cfg, self.config.sending_time_precision)
        return writer

    def store_offline(self, batches: dict[str, list[dict]]) -> None:
        """Reports for sessions that are not logged on go to their store, as QuickFIX does:
        the counterparty gets them by the resend it asks for at its next logon. Sessions
        that reset on logon would throw them away, and those never logged on expect nothing."""
        now_ns = time.time_ns()
        for key, events in batches.items():
            cfg = self._by_key.get(key)
            if cfg is None or cfg.reset_on_logon:
                continue
            store = self.existing_store(cfg)
            if store is None:
                continue
            if self.daily_reset_due(store, now_ns):
                # a new FIX day began while the session was away (QuickFIX resets a session's
                # store at its start time, connected or not): this day's reports go to this
                # day's numbering, where the next logon's resend finds them, not into the old
                # day's log that logon would reset away
                log.info("FIX session %s: daily reset time %s UTC passed while logged off: sequence reset",
                         key, self.config.daily_reset)
                try:
                    self.reset_sequences(key, store, "daily reset time passed while logged off", end_batch=False)
                except OSError as exc:     # disk full: the other sessions' reports still go out
                    log.error("FIX session %s: daily reset failed (%s): %d reports not stored",
                              key, exc, len(events))
                    continue
            writer = self.writer_for(cfg)
            now = writer.now(now_ns)
            seq = store.next_sender_seq
            messages = []
            for event in events:
                if event["seq"] > store.event_seq:
                    messages.append((seq, writer.render(seq, now, event), event["seq"]))
                    seq += 1
            first = not store.unsaved
            try:
                store.save_sent(messages, activity=False)    # not the session's: no daily reset postponed
            except OSError as exc:   # kept by the store, written first by its next save
                if first:
                    log.error("FIX session %s: reports for its next logon not stored yet (%s): held in "
                              "memory until the store takes writes", key, exc)

    def recover_reports(self) -> int:
        """Rebuild reports whose events reached the journal but not the session's store (a
        crash between the two), so the counterparty recovers them by a normal resend."""
        journal = getattr(self.gateway.engine, "journal", None)
        if journal is None:
            return 0
        stores = {cfg.key: store for cfg in self.config.sessions
                  if not cfg.reset_on_logon and (store := self.existing_store(cfg)) is not None}
        last = journal.last_seq
        batches: dict[str, list[dict]] = {}
        if stores:
            start = min(store.event_seq for store in stores.values()) + 1
            if start <= last:
                for record in iter_records(journal.directory, from_seq=start):
                    kind = record["type"]
                    if kind not in JOURNALED_REPORT_TYPES:
                        continue
                    if kind == ev.MASS_CANCEL_DONE and record.get("cl_ord_id") is None:
                        continue    # a cancel on disconnect: its owner gets the cancels, no 35=r (as live)
                    owner = record.get("session")
                    targets = [owner]
                    if kind in EXEC_REPORT_TYPES:
                        targets += [k for k in self.gateway.drop_copies if k != owner]
                    for key in targets:
                        store = stores.get(key)
                        if store is not None and record["seq"] > store.event_seq:
                            batches.setdefault(key, []).append(record)
        self.store_offline(batches)
        for store in stores.values():
            store.mark_events(last)
        rebuilt = sum(len(events) for events in batches.values())
        if rebuilt:
            log.warning("rebuilt %d FIX reports journaled before a crash but never stored; "
                        "counterparties get them by resend", rebuilt)
        return rebuilt

    def recover_inbound_seqs(self, journaled: dict[str, int]) -> int:
        """After a crash between a batch's journal write and its store write, the store's next
        inbound MsgSeqNum lags the commands already journaled (``Engine.inbound_seqs``): moved
        past them, so the counterparty's resend of those messages (PossDupFlag=Y, below the
        expected number) is ignored as the duplicate it is instead of run a second time.
        Returns how many sessions moved."""
        moved = 0
        for cfg in self.config.sessions:
            last = journaled.get(cfg.key)
            if last is None:
                continue
            store = self.existing_store(cfg)
            if store is None or store.next_target_seq > last or self.daily_reset_due(store):
                continue      # (a daily reset due: that numbering is over, the next starts at 1)
            log.warning("FIX session %s: next inbound MsgSeqNum %d -> %d (messages up to %d were journaled "
                        "before a crash cut the store's write; a resend of them is ignored as duplicates)",
                        cfg.key, store.next_target_seq, last + 1, last)
            store.next_target_seq = last + 1
            store.save_target_seq()
            moved += 1
        return moved

    def end_sessions_lost_in_a_crash(self, logged_on: set[str]) -> int:
        """Sessions logged on when the server stopped without logging them out (a crash took
        their connections) are journaled as ended, and those with cancel on disconnect get the
        cancel they would have had at the disconnect, now, before anyone can trade against
        their orders. Returns how many sessions had their orders canceled."""
        canceled = 0
        for cfg in self.config.sessions:
            if cfg.key not in logged_on:
                continue
            log.warning("FIX session %s was logged on when the server stopped without a logout (crash)%s",
                        cfg.key, ": cancel on disconnect runs now" if cfg.cancel_on_disconnect else "")
            self.record_session_event(ev.SESSION_LOGOUT, cfg.key, "connection lost: the server stopped without "
                                      "logging the session out (crash)")
            if cfg.cancel_on_disconnect:
                self._cancel_on_disconnect(cfg.key)
                canceled += 1
        self.gateway.end_batch()
        return canceled

    def _cancel_on_disconnect(self, key: str) -> None:
        self.gateway.submit({"type": ev.MASS_CANCEL_REQUESTED, "ts": time.time_ns(), "session": key,
                             "cl_ord_id": None, "mass_cancel_type": "7", "symbol": None, "side": None,
                             "account": None, "reason": COD_REASON})

    def daily_reset_due(self, store: MessageStore, now_ns: int | None = None) -> bool:
        """True if [fix] daily_reset ("HH:MM" UTC) passed since the store's last activity."""
        reset_at = self.config.daily_reset
        if not reset_at:
            return False
        last = store.last_activity_ns()
        if last == 0:
            return False
        return last < previous_utc_time_ns(reset_at, time.time_ns() if now_ns is None else now_ns)

    def record_session_event(self, kind: str, key: str | None, text: str, **extra: object) -> None:
        record = getattr(self.gateway.engine, "record", None)
        if record is not None:
            record({"type": kind, "ts": time.time_ns(), "session": key, "text": _bounded(text), **extra})
            self._records_unflushed = True

    def flush_session_records(self) -> None:
        """Write out the session records (logons, refused logons, rejects) journaled since the
        last flush. Only a batch of commands flushed them: on a server nobody traded on, every
        refused logon stayed in the journal's memory, which clients without any password could
        grow without bound. The acceptor's timer calls this."""
        if not self._records_unflushed:
            return
        self._records_unflushed = False
        flush = getattr(self.gateway.engine, "flush", None)
        if flush is None:
            return
        self.gateway.end_batch()      # a batch under way goes first, with its reports, as usual
        try:
            flush()
        except (OSError, JournalError) as exc:   # the next batch's flush tries again and recovers
            log.error("session records not journaled yet: %s", exc)

    def reset_sequences(self, key: str, store: MessageStore, why: str, end_batch: bool = True) -> None:
        """Both sequence numbers of ``key`` start again at 1. Journaled first: a restart then
        never reads the MsgSeqNums the journal's commands carry from the old numbering as this
        one's (``Engine.inbound_seqs``, ``recover_inbound_seqs``)."""
        self.journal_seq_reset(key, why, end_batch)
        store.reset()

    def journal_seq_reset(self, key: str, why: str, end_batch: bool = True) -> None:
        """Journal (and flush) that ``key``'s sequence numbers start again, before its store
        resets. The batch under way ends first (its events flushed and sent as usual; a caller
        inside ``end_batch``, after its journal flush, says ``end_batch=False``), so a flush that
        fails here can only drop session records, never an acknowledged event."""
        if end_batch:
            self.gateway.end_batch()
        self.record_session_event(ev.SESSION_SEQ_RESET, key, f"sequence numbers start again at 1: {why}")
        try:
            self.gateway.engine.flush()
        except (OSError, JournalError) as exc:
            log.error("%s: the sequence reset could not be journaled (%s): after a crash before the next "
                      "journal write, a restart may expect the old numbering's MsgSeqNums", key, exc)

    def session_ended(self, session: FixSession, why: str) -> None:
        if self.gateway.sessions.get(session.key) is session:
            del self.gateway.sessions[session.key]
        log.info("FIX session %s ended: %s", session.key, why)
        self.record_session_event("session_logout", session.key, why)
        if session.cfg is not None and session.cfg.cancel_on_disconnect:
            self._cancel_on_disconnect(session.key)
        self.gateway.end_batch()

    async def start(self, host: str, port: int, ssl=None) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: FixSession(self), host, port, ssl=ssl,
                                                reuse_address=True)
        self._ticker = asyncio.create_task(self._tick_loop())
        sock = self._server.sockets[0]
        addr = sock.getsockname()
        return addr[0], addr[1]

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            now = time.monotonic()
            for session in list(self.connections):
                try:
                    session.tick(now)
                except Exception:   # one broken session must not stop the others' timers
                    log.exception("timer of session %s failed", session.key)
            try:
                self.gateway.retry_cancel_on_disconnect()
            except Exception:
                log.exception("retrying a cancel on disconnect failed")
            try:
                self.flush_session_records()
            except Exception:
                log.exception("flushing the session records failed")

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        sessions = [s for s in self.connections if s.logged_on]
        for session in sessions:
            session.send_logout("Server shutting down")
            session.flush()
        deadline = time.monotonic() + self.timing.logout_timeout_s
        while any(s.transport is not None for s in sessions) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for session in list(self.connections):
            session.disconnect("shutdown")
        # connection_lost runs from the loop after the close (with uvloop, not before the next
        # iterations): it journals a cancel on disconnect and stores its reports, so the stores
        # stay open until it ran; a client that does not read is aborted past the deadline
        deadline = time.monotonic() + self.timing.logout_timeout_s
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for session in list(self.connections):
            if session.transport is not None:
                session.transport.abort()
        for _ in range(100):
            if not self.connections:
                break
            await asyncio.sleep(0.01)
        if self._ticker is not None:
            self._ticker.cancel()
        if self._server is not None:
            await self._server.wait_closed()
        last = self._journal_seq()
        for store in self._stores.values():
            try:
                store.mark_events(last)      # everything journaled was routed: nothing to rebuild
            except OSError as exc:           # disk full: the next start rebuilds from an older mark
                log.error("message store %s: watermark not saved at stop (%s)", store.directory, exc)
            store.close()
