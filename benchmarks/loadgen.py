"""Open-loop FIX load generator (coordinated omission corrected), used by ``oms bench fix``.

One asyncio loop (uvloop when available) drives K FIX 4.4 initiator sessions. The measured
run has a send schedule fixed before it starts: operation ``i`` is due at
``t0 + i / rate`` on session ``i % K``, and its kind (passive NewOrderSingle, crossing IOC
NewOrderSingle, OrderCancelRequest, OrderCancelReplaceRequest) is drawn from the mix with
a seeded generator. Every latency is measured from that *scheduled* time to the arrival of
the message that answers it, so a stall of the server (or of this client) delays every
operation due during the stall and shows up in the percentiles, instead of silently
slowing the sender down (coordinated omission). The time from the actual write is recorded
too ("service" latency, what a closed-loop client would report) and so is the sender's own
lateness ("send lag"), so the correction can be seen.

Paths and what answers them:

* ``new``     passive buy limit (rests; 380.00-399.99 around a 420.00 reference) -> first
              ExecutionReport with its ClOrdID (New, or Rejected);
* ``cross``   sell IOC at 380.00, qty 1, trading against our resting bids -> first
              ExecutionReport (New, then fills / expiry follow and are not timed);
* ``cancel``  OrderCancelRequest of one of our acknowledged resting orders -> Canceled
              (ExecType 4), or OrderCancelReject (counted as rejected);
* ``replace`` OrderCancelReplaceRequest re-pricing one of them -> Replaced (ExecType 5).

A cancel or replace due when the session has no acknowledged resting order to work on is
sent as a passive order instead and counted in ``substituted``.

Accounting: ``sent = acknowledged + rejected + errors`` for every path, where ``rejected``
is an ExecutionReport with ExecType 8, an OrderCancelReject (35=9), a BusinessMessageReject
(35=j) or a session Reject (35=3) of that message, and ``errors`` are answers that never
came (``--drain-timeout`` after the last send), lost connections and unexpected answers.
Operations the sender could not write before the send deadline (the backlog of unanswered
operations is bounded by ``max_backlog``: past it the sender waits, and its schedule keeps
running) are ``unsent``; ``offered = sent + unsent``.

Reading: each socket read is framed and checked (BeginString, BodyLength, CheckSum, as our
FixParser does) in one compiled call (``answer_scan.scan_answers``), which returns the offsets
of the only tags the generator reads (MsgType, MsgSeqNum, ClOrdID, ExecType, OrdStatus); rare
answers (rejects, session messages) are then read as ``Lite`` messages. ``reader="lite"``
frames in Python (``LiteParser``, the reference the scan is tested against);
``reader="fixparser"`` uses the full FixParser (about 20% lower ceiling: see the pipelined echo
figure).

Timing: absolute deadlines on CLOCK_MONOTONIC through a Linux timerfd watched by the event
loop (the loop's own timers have 1 ms granularity), with the process timer slack set to
1 ns; all operations due at a wake-up leave in one write per session. Elsewhere the
generator falls back to ``asyncio.sleep``.
"""
from __future__ import annotations

import asyncio
import collections
import ctypes
import os
import socket
import sys
import time
from dataclasses import dataclass, field

from hdrh.histogram import HdrHistogram

import numpy as np

from benchmarks import answer_scan
from oms_trading.fix.codec import FixParser, Garbled, StreamBuffer, checksum
from oms_trading.fix.timefmt import fix_timestamp

PATHS = ("new", "cross", "cancel", "replace")
NEW, CROSS, CANCEL, REPLACE = 0, 1, 2, 3
MIX_KEYS = {"passive": NEW, "new": NEW, "cross": CROSS, "cancel": CANCEL, "replace": REPLACE}
DEFAULT_MIX = "passive=60,cross=10,cancel=20,replace=10"
PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9), ("p99.99", 99.99))
HIST_MAX_NS = 3_600 * 1_000_000_000        # one hour: anything longer is clamped (and counted)
mono_ns = time.monotonic_ns


def parse_mix(text: str) -> list[float]:
    """``"passive=60,cross=10,cancel=20,replace=10"`` -> probabilities indexed by path."""
    weights = [0.0] * 4
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in MIX_KEYS:
            raise ValueError(f"mix item {part!r}: expected one of passive=, cross=, cancel=, replace= with a number")
        try:
            w = float(value)
        except ValueError:
            raise ValueError(f"mix item {part!r}: {value!r} is not a number") from None
        if w < 0:
            raise ValueError(f"mix item {part!r}: negative weight")
        weights[MIX_KEYS[key]] += w
    total = sum(weights)
    if total <= 0:
        raise ValueError("mix: the weights add up to zero")
    return [w / total for w in weights]


def mix_text(probs: list[float]) -> str:
    return ",".join(f"{name}={p * 100:g}" for name, p in zip(("passive", "cross", "cancel", "replace"), probs))


def schedule_kinds(n: int, probs: list[float], seed: int) -> bytes:
    """The kinds of the ``n`` scheduled operations, one byte each (seeded, reproducible)."""
    import numpy as np
    rng = np.random.default_rng(seed)
    return rng.choice(4, size=n, p=probs).astype(np.uint8).tobytes()


def new_histogram() -> HdrHistogram:
    return HdrHistogram(1, HIST_MAX_NS, 3)


def summarize(h: HdrHistogram) -> dict:
    """Percentiles of a nanosecond histogram, in microseconds."""
    n = h.get_total_count()
    if n == 0:
        return {"count": 0}
    out = {"count": n}
    for name, p in PERCENTILES:
        out[name] = round(h.get_value_at_percentile(p) / 1000.0, 1)
    out["max"] = round(h.get_max_value() / 1000.0, 1)
    out["mean"] = round(h.get_mean_value() / 1000.0, 1)
    return out


def record_all(h: HdrHistogram, values: list[int]) -> int:
    """Record nanosecond values; returns how many had to be clamped into range.

    hdrh's ``record_value`` is Python (~2-3 us a call), and the load generator shares the
    machine with the server it measures: so the values are first cut with numpy to the
    histogram's own resolution (the low bits that do not change which bucket a value falls
    in, one bit finer than that to be safe) and each distinct value is recorded once with its
    count. The histogram ends up exactly as if every value had been recorded one by one."""
    if not values:
        return 0
    import numpy as np
    arr = np.asarray(values, dtype=np.int64)
    clamped = int(np.count_nonzero(arr > HIST_MAX_NS))
    arr = np.clip(arr, 1, HIST_MAX_NS)
    bits = np.frexp(arr.astype(np.float64))[1].astype(np.int64)        # bit length (values < 2**53)
    shift = np.maximum(bits - (h.sub_bucket_half_count_magnitude + h.unit_magnitude + 2), 0)
    cut = (arr >> shift) << shift
    uniq, counts = np.unique(cut, return_counts=True)
    rec = h.record_value
    for v, c in zip(uniq.tolist(), counts.tolist()):
        rec(v, c)
    return clamped


# -- precise wake-ups --------------------------------------------------------------------------

class Timer:
    """``await wait_until(monotonic_ns)`` with ~10 us precision (timerfd), else asyncio.sleep."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.fd = -1
        self._fut: asyncio.Future | None = None
        if sys.platform.startswith("linux") and os.environ.get("OMS_BENCH_NO_TIMERFD") != "1":
            try:
                self._setup()
            except (OSError, AttributeError):
                self.fd = -1

    def _setup(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(29, ctypes.c_ulong(1), 0, 0, 0)  # PR_SET_TIMERSLACK: 1 ns (this process only)

        class Timespec(ctypes.Structure):
            _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]

        class ITimerspec(ctypes.Structure):
            _fields_ = [("it_interval", Timespec), ("it_value", Timespec)]

        fd = libc.timerfd_create(1, os.O_NONBLOCK | os.O_CLOEXEC)    # CLOCK_MONOTONIC
        if fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create")
        settime = libc.timerfd_settime
        settime.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        self._spec = ITimerspec()
        self._value = self._spec.it_value
        self._ptr = ctypes.addressof(self._spec)
        self._settime = settime
        self.fd = fd
        self.loop.add_reader(fd, self._fired)

    def _fired(self) -> None:
        try:
            os.read(self.fd, 8)
        except BlockingIOError:
            return
        fut = self._fut
        if fut is not None and not fut.done():
            fut.set_result(None)

    async def wait_until(self, deadline_ns: int) -> None:
        if self.fd < 0:
            delay = (deadline_ns - mono_ns()) / 1e9
            await asyncio.sleep(max(delay, 0.0))
            return
        self._value.tv_sec, self._value.tv_nsec = divmod(max(deadline_ns, 1), 1_000_000_000)
        self._fut = self.loop.create_future()
        if self._settime(self.fd, 1, self._ptr, None) != 0:   # TFD_TIMER_ABSTIME
            self._fut = None
            await asyncio.sleep(max((deadline_ns - mono_ns()) / 1e9, 0.0))
            return
        try:
            await self._fut
        finally:
            self._fut = None

    def close(self) -> None:
        if self.fd >= 0:
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = -1


# -- wire ---------------------------------------------------------------------------------------

_ts_cache = [-1, b""]


def sending_time() -> bytes:
    """FIX UTCTimestamp (ms), formatted once per millisecond."""
    now = time.time_ns()
    ms = now // 1_000_000
    if ms != _ts_cache[0]:
        _ts_cache[0] = ms
        _ts_cache[1] = fix_timestamp(now)
    return _ts_cache[1]


def frame(begin: bytes, body: bytes) -> bytes:
    msg = b"8=%b\x019=%d\x01%b" % (begin, len(body), body)
    return b"%b10=%03d\x01" % (msg, checksum(msg))


def _price(ticks: int) -> bytes:
    return b"%d.%02d" % (ticks // 100, ticks % 100)


PASSIVE_LO, PASSIVE_SPAN = 38000, 2000        # 380.00 .. 399.99, below the 420.00 reference
CROSS_PRICE = _price(38000)                  # sell IOC at the lowest bid price: crosses any bid


# -- reading: framing + the few fields we need -------------------------------------------------

_PREFIX = {}


class Lite:
    """A framed, checksum-verified message; fields found on demand (``get`` like FixMessage)."""

    __slots__ = ("raw", "msg_type")

    def __init__(self, raw: bytes, msg_type: bytes) -> None:
        self.raw = raw
        self.msg_type = msg_type

    def get(self, tag: int, default=None):
        p = _PREFIX.get(tag)
        if p is None:
            p = _PREFIX[tag] = b"\x01%d=" % tag
        raw = self.raw
        i = raw.find(p)
        if i < 0:
            return default
        i += len(p)
        return raw[i:raw.find(b"\x01", i)]


class LiteParser(StreamBuffer):
    """Streaming framer with FixParser's interface (``feed``, ``next_message``) that checks
    BeginString, BodyLength and CheckSum like it but does not split the message into fields:
    the load generator reads 4-5 tags of each answer, and splitting every field was most of
    its receive cost (which set the echo floor's throughput). ``FixParser`` is kept as
    ``reader="fixparser"``."""

    __slots__ = ()

    def next_message(self):
        buf, pos = self._buf, self._pos
        n = len(buf)
        while True:
            if not buf.startswith(b"8=FIX", pos):
                s = buf.find(b"8=FIX", pos)
                if s < 0:
                    self._buf, self._pos = buf[max(pos, n - 4):], 0
                    return None
                pos = s
            e1 = buf.find(b"\x019=", pos, pos + 32)
            if e1 < 0:
                if n - pos >= 32:
                    self._pos = pos + 1
                    return Garbled("BeginString/BodyLength malformed", buf[pos:pos + 32])
                self._pos = pos
                return None
            e2 = buf.find(b"\x01", e1 + 3, e1 + 13)
            if e2 < 0 or not buf[e1 + 3:e2].isdigit():
                if e2 < 0 and n - e1 < 13:
                    self._pos = pos
                    return None
                self._pos = pos + 1
                return Garbled("BodyLength (9) malformed", buf[pos:e1 + 13])
            end = e2 + 1 + int(buf[e1 + 3:e2]) + 7
            if n < end:
                self._pos = pos
                return None
            raw = buf[pos:end]
            if raw[-7:-4] != b"10=" or raw[-1] != 1 or not raw[-4:-1].isdigit() \
                    or checksum(raw[:-7]) != int(raw[-4:-1]):
                self._pos = pos + 1
                return Garbled("BodyLength/CheckSum mismatch", raw)
            if end == n:
                self._buf, self._pos = b"", 0
            else:
                self._pos = end
            t = raw.find(b"\x0135=", e2 - pos - 1)
            mt = raw[t + 4:raw.find(b"\x01", t + 4)] if t >= 0 else b""
            return Lite(raw, mt)


class ScanParser(StreamBuffer):
    """``LiteParser``'s framing in one compiled call per read (``answer_scan``): ``scan()``
    returns ``(rows, buf)``, the rows of ``answer_scan``'s layout for every message complete
    in the buffer, their offsets into ``buf``."""

    __slots__ = ("_rows",)

    def __init__(self) -> None:
        super().__init__()
        self._rows = answer_scan.new_rows()

    def scan(self):
        buf, pos = self._buf, self._pos
        n = len(buf)
        rows, pos, trim = answer_scan.scan_answers(np.frombuffer(buf, np.uint8), pos, n, self._rows)
        if trim:
            self._buf, self._pos = buf[max(pos, n - 4):], 0
        elif pos == n:
            self._buf, self._pos = b"", 0
        else:
            self._pos = pos
        return self._rows[:rows].tolist(), buf


@dataclass
class Stats:
    sent: list = field(default_factory=lambda: [0] * 4)
    acked: list = field(default_factory=lambda: [0] * 4)
    rejected: list = field(default_factory=lambda: [0] * 4)
    errors: list = field(default_factory=lambda: [0] * 4)
    substituted: list = field(default_factory=lambda: [0] * 4)
    seq_gaps: int = 0              # answers whose MsgSeqNum was not the one expected (OMS only)
    reject_reasons: collections.Counter = field(default_factory=collections.Counter)
    error_reasons: collections.Counter = field(default_factory=collections.Counter)


class Session(asyncio.Protocol):
    """One FIX initiator connection. Answers are matched to pending operations by ClOrdID."""

    def __init__(self, gen: "LoadGen", index: int, sender: str, target: str) -> None:
        self.gen = gen
        self.index = index
        self.sender = sender.encode()
        self.target = target.encode()
        self.seq = 1
        self.in_seq = 0     # next MsgSeqNum expected from the target (0: not logged on yet)
        self.parser = FixParser() if gen.reader == "fixparser" else LiteParser() if gen.reader == "lite" \
            else ScanParser()
        self.scanning = gen.reader == "scan"
        self.transport: asyncio.Transport | None = None
        self.logged_on = asyncio.get_event_loop().create_future()
        self.logged_out = asyncio.get_event_loop().create_future()
        self.closed = False
        self.live: collections.OrderedDict[bytes, None] = collections.OrderedDict()   # acked resting orders
        self.out: list[bytes] = []
        head = b"\x0149=%b\x0156=%b\x0134=" % (self.sender, self.target)
        self._hdr = {mt: b"35=" + mt + head for mt in (b"D", b"F", b"G", b"A", b"0", b"5")}

    # -- connection
    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc) -> None:
        self.closed = True
        for fut in (self.logged_on, self.logged_out):
            if not fut.done():
                fut.set_exception(ConnectionError(f"session {self.sender.decode()}: connection lost ({exc})"))
        self.gen.session_lost(self, f"connection lost ({exc or 'closed by peer'})")

    # -- encode
    def encode(self, mt: bytes, body: bytes) -> bytes:
        seq = self.seq
        self.seq = seq + 1
        return frame(b"FIX.4.4", b"%b%d\x0152=%b\x01%b" % (self._hdr[mt], seq, sending_time(), body))

    def logon(self, heartbeat: int = 30) -> None:
        self.transport.write(self.encode(b"A", b"98=0\x01108=%d\x01141=Y\x01" % heartbeat))

    def logout(self) -> None:
        if not self.closed:
            self.transport.write(self.encode(b"5", b""))

    # -- decode
    def data_received(self, data: bytes) -> None:
        now = mono_ns()
        parser = self.parser
        parser.feed(data)
        gen = self.gen
        if self.scanning:
            self._take_scanned(now)
            return
        while True:
            msg = parser.next_message()
            if msg is None:
                break
            if type(msg) is Garbled:
                gen.stats.error_reasons[f"garbled frame: {msg.reason}"] += 1
                continue
            mt = msg.msg_type
            if gen.check_seq:
                self._check_seq(msg, mt)
            if mt == b"8":
                gen.on_exec_report(self, msg, now)
            else:
                self._dispatch(msg, mt, now)


    def _take_scanned(self, now: int) -> None:
        """``data_received`` with the compiled framing (``ScanParser``): an ExecutionReport
        that is not a reject is matched from the scanned offsets alone; anything else is
        handed on as a ``Lite`` message, as ``LiteParser`` would have."""
        gen = self.gen
        check_seq = gen.check_seq
        while True:
            rows, buf = self.parser.scan()
            for kind, start, end, ms, me, seq, cs, ce, es, ee, os_, oe in rows:
                if kind:
                    gen.stats.error_reasons[f"garbled frame: {answer_scan.REASONS[kind]}"] += 1
                    continue
                mt = buf[ms:me]
                if check_seq:
                    self._check_seq_value(seq if seq != answer_scan.HUGE_SEQ else -1, mt)
                et = buf[es:ee] if es >= 0 else None
                if mt == b"8" and et != b"8":
                    gen.on_answer(self, buf[cs:ce] if cs >= 0 else None, et,
                                  buf[os_:oe] if os_ >= 0 else None, None, now)
                else:
                    self._dispatch(Lite(buf[start:end], mt), mt, now)
            if len(rows) < len(self.parser._rows):
                return

    def _dispatch(self, msg, mt: bytes, now: int) -> None:
        """What ``data_received`` does with a message other than a plain ExecutionReport."""
        gen = self.gen
        if mt == b"8":
            gen.on_exec_report(self, msg, now)
        elif mt == b"9":
            gen.on_reject(msg.get(11), now, "OrderCancelReject: " + (msg.get(58) or b"").decode(errors="replace"))
        elif mt == b"j" or mt == b"3":
            gen.on_session_reject(self, msg, now)
        elif mt == b"1":
            self.transport.write(self.encode(b"0", b"112=%b\x01" % (msg.get(112) or b"TEST")))
        elif mt == b"A":
            if not self.logged_on.done():
                self.logged_on.set_result(None)
        elif mt == b"5":
            if not self.logged_on.done():
                self.logged_on.set_exception(ConnectionError(
                    f"logon of {self.sender.decode()} refused: {(msg.get(58) or b'').decode(errors='replace')}"))
            if not self.logged_out.done():
                self.logged_out.set_result(None)

    def _check_seq(self, msg, mt: bytes) -> None:
        """Every answer carries the next MsgSeqNum (we never ask for a resend, so a gap or a
        repeat means a message was lost or sent twice); a Logon with 141=Y starts at 1."""
        raw = msg.get(34)
        self._check_seq_value(int(raw) if raw is not None and raw.isdigit() else -1, mt)

    def _check_seq_value(self, seq: int, mt: bytes) -> None:
        if mt == b"A":
            self.in_seq = seq + 1
            return
        expected = self.in_seq
        if expected and seq != expected:
            self.gen.stats.seq_gaps += 1
            self.gen.stats.error_reasons[f"MsgSeqNum from the target {seq}, expected {expected}"] += 1
        self.in_seq = seq + 1


class LoadGen:
    """Drives the sessions; one instance per target (OMS or echo floor)."""

    def __init__(self, host: str, port: int, sessions: int = 1, comp_id: str = "BENCH", target_comp: str = "OMS",
                 account: str = "BENCH", symbol: str = "MSFT", max_backlog: int = 20000,
                 drain_timeout: float = 10.0, progress: bool = False, label: str = "",
                 run_tag: str | None = None, reader: str = "scan", check_seq: bool = True) -> None:
        if reader not in ("scan", "lite", "fixparser"):
            raise ValueError(f"reader {reader!r}: scan, lite or fixparser")
        if reader == "scan":
            answer_scan.warm_up()
        self.reader = reader
        self.check_seq = check_seq      # off for the echo floor, which has no sequence numbers
        self.host, self.port = host, port
        self.n_sessions = sessions
        self.names = [comp_id if i == 0 else f"{comp_id}{i + 1}" for i in range(sessions)]
        self.target_comp = target_comp
        self.account = account.encode()
        self.symbol = symbol.encode()
        self.max_backlog = max_backlog
        self.drain_timeout = drain_timeout
        self.progress = progress
        self.label = label
        self.sessions: list[Session] = []
        # run-unique ClOrdID prefix: a long-lived target keeps ClOrdIDs per session
        self.tag = (run_tag or _base36(time.time_ns() // 1_000_000 % 36 ** 7)).encode()
        self.step = 0
        self.pending: dict[bytes, tuple] = {}
        self.recording = False
        self._reset_measure()
        self._idle: asyncio.Future | None = None
        self._idle_below = 0
        self._waiters: dict[bytes, asyncio.Future] = {}     # closed loop: ClOrdID -> its sender
        self.timer: Timer | None = None

    # -- lifecycle
    async def connect(self, timeout: float = 30.0) -> None:
        loop = asyncio.get_running_loop()
        self.timer = Timer(loop)
        for i, name in enumerate(self.names):
            _, s = await asyncio.wait_for(
                loop.create_connection(lambda i=i, name=name: Session(self, i, name, self.target_comp),
                                       self.host, self.port), timeout)
            s.logon()
            self.sessions.append(s)
        await asyncio.wait_for(asyncio.gather(*(s.logged_on for s in self.sessions)), timeout)

    async def close(self, timeout: float = 2.0) -> None:
        for s in self.sessions:
            s.logout()
        try:
            await asyncio.wait_for(asyncio.gather(*(s.logged_out for s in self.sessions), return_exceptions=True),
                                   timeout)
        except asyncio.TimeoutError:
            pass
        for s in self.sessions:
            if s.transport is not None:
                s.transport.close()
        if self.timer is not None:
            self.timer.close()

    # -- measurement state
    def _reset_measure(self) -> None:
        self.stats = Stats()
        self.lat: list[list[int]] = [[] for _ in range(4)]       # corrected (from schedule), ns
        self.svc: list[list[int]] = [[] for _ in range(4)]       # from the actual write, ns
        self.hist = [new_histogram() for _ in range(4)]
        self.svc_hist = [new_histogram() for _ in range(4)]
        self.hist_all = new_histogram()
        self.lag_hist = new_histogram()
        self.lags: list[int] = []
        self.clamped = 0
        self.last_answer_ns = 0
        self.backlog_max = 0
        self.backlog_waits = 0

    def _drain_lists(self) -> None:
        for k in range(4):
            lat = self.lat[k]
            if lat:
                self.lat[k] = []
                self.clamped += record_all(self.hist[k], lat)
                record_all(self.hist_all, lat)
            svc = self.svc[k]
            if svc:
                self.svc[k] = []
                record_all(self.svc_hist[k], svc)
        if self.lags:
            lags, self.lags = self.lags, []
            record_all(self.lag_hist, lags)

    def _check_idle(self) -> None:
        fut = self._idle
        if fut is not None and len(self.pending) <= self._idle_below and not fut.done():
            fut.set_result(None)

    async def wait_pending_below(self, n: int, deadline_ns: int) -> bool:
        """Wait until at most ``n`` operations are unanswered; False at the deadline."""
        while len(self.pending) > n:
            remaining = (deadline_ns - mono_ns()) / 1e9
            if remaining <= 0:
                return False
            self._idle_below = n
            self._idle = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(self._idle, remaining)
            except asyncio.TimeoutError:
                return len(self.pending) <= n
            finally:
                self._idle = None
        return True

    # -- answers
    def _complete(self, p: tuple, now: int) -> None:
        kind, sched, sent = p[0], p[1], p[2]
        self.stats.acked[kind] += 1
        if self.recording:
            self.lat[kind].append(now - sched)
            self.svc[kind].append(now - sent)
        self.last_answer_ns = now

    def on_exec_report(self, s: Session, msg, now: int) -> None:
        self.on_answer(s, msg.get(11), msg.get(150), msg.get(39), msg, now)

    def on_answer(self, s: Session, cl, et, ord_status, msg, now: int) -> None:
        """An ExecutionReport: its ClOrdID, ExecType and OrdStatus; ``msg`` (for the Text of a
        reject) may be None when ExecType is not 8."""
        p = self.pending.pop(cl, None)
        if p is None:
            # a later report (fills, expiry) of an answered order: keep the resting pool right
            if ord_status in (b"2", b"4", b"C", b"8") and cl in s.live:
                del s.live[cl]
            return
        if self._waiters:
            self._wake(cl)
        kind = p[0]
        if et == b"8":
            self._rejected(p, now, "ExecutionReport rejected: " + (msg.get(58) or b"").decode(errors="replace"))
        elif kind == CANCEL:
            if et == b"4":
                self._complete(p, now)
            else:
                self._errored(p, f"cancel answered with ExecType {et!r}")
        elif kind == REPLACE:
            if et == b"5":
                self._complete(p, now)
                if ord_status in (b"0", b"1", b"5"):
                    s.live[cl] = None
            else:
                self._errored(p, f"replace answered with ExecType {et!r}")
        else:
            self._complete(p, now)
            if kind == NEW and et == b"0":
                s.live[cl] = None
        if self._idle is not None:
            self._check_idle()

    def on_reject(self, cl, now: int, reason: str) -> None:
        p = self.pending.pop(cl, None)
        if p is not None:
            if self._waiters:
                self._wake(cl)
            self._rejected(p, now, reason)
            if self._idle is not None:
                self._check_idle()

    def on_session_reject(self, s: Session, msg, now: int) -> None:
        ref = msg.get(45)
        text = ("BusinessMessageReject: " if msg.msg_type == b"j" else "Reject: ") + \
            (msg.get(58) or b"").decode(errors="replace")
        if ref is None or not ref.isdigit():
            self.stats.error_reasons[text + " (no RefSeqNum)"] += 1
            return
        seq = int(ref)
        for cl, p in self.pending.items():       # rare path: find the message by session and seq
            if p[3] == s.index and p[4] == seq:
                self.on_reject(cl, now, text)
                return

    def _wake(self, cl) -> None:
        w = self._waiters.get(cl)
        if w is not None and not w.done():
            w.set_result(None)

    def _rejected(self, p: tuple, now: int, reason: str) -> None:
        self.stats.rejected[p[0]] += 1
        self.stats.reject_reasons[reason[:120]] += 1
        self.last_answer_ns = now

    def _errored(self, p: tuple, reason: str) -> None:
        self.stats.errors[p[0]] += 1
        self.stats.error_reasons[reason[:120]] += 1

    def session_lost(self, s: Session, reason: str) -> None:
        for cl in [cl for cl, p in self.pending.items() if p[3] == s.index]:
            self._errored(self.pending.pop(cl), reason)
            if self._waiters:
                self._wake(cl)
        self._check_idle()

    # -- operations
    def _op(self, s: Session, kind: int, i: int, sched: int, now: int) -> bytes | None:
        """Encode operation ``i`` for session ``s``; registers it as pending."""
        cl = b"%b%d_%d" % (self.tag, self.step, i)
        t = sending_time()
        if kind == CANCEL or kind == REPLACE:
            if not s.live:
                self.stats.substituted[kind] += 1
                kind = NEW
            else:
                orig, _ = s.live.popitem(last=False)
        if kind == NEW:
            raw = s.encode(b"D", b"11=%b\x011=%b\x0155=%b\x0154=1\x0160=%b\x0138=100\x0140=2\x0144=%b\x0159=0\x01" % (
                cl, self.account, self.symbol, t, _price(PASSIVE_LO + (i * 7919) % PASSIVE_SPAN)))
        elif kind == CROSS:
            raw = s.encode(b"D", b"11=%b\x011=%b\x0155=%b\x0154=2\x0160=%b\x0138=1\x0140=2\x0144=%b\x0159=3\x01" % (
                cl, self.account, self.symbol, t, CROSS_PRICE))
        elif kind == CANCEL:
            raw = s.encode(b"F", b"41=%b\x0111=%b\x011=%b\x0155=%b\x0154=1\x0160=%b\x0138=100\x01" % (
                orig, cl, self.account, self.symbol, t))
        else:
            raw = s.encode(b"G", b"41=%b\x0111=%b\x011=%b\x0155=%b\x0154=1\x0160=%b\x0138=100\x0140=2\x0144=%b"
                                 b"\x0159=0\x01" % (orig, cl, self.account, self.symbol, t,
                                                    _price(PASSIVE_LO + (i * 7919 + 997) % PASSIVE_SPAN)))
        self.stats.sent[kind] += 1
        self.pending[cl] = (kind, sched, now, s.index, s.seq - 1)
        self.last_cl = cl
        return raw

    async def warmup(self, orders: int, timeout: float = 60.0) -> None:
        """Unmeasured passive orders in small windows: warms both ends, fills the resting pools."""
        self.step += 1
        deadline = mono_ns() + int(timeout * 1e9)
        i = 0
        window = max(10, 20 * self.n_sessions)
        while i < orders:
            now = mono_ns()
            for _ in range(min(window, orders - i)):
                s = self.sessions[i % self.n_sessions]
                if not s.closed:
                    s.transport.write(self._op(s, NEW, i, now, now))
                i += 1
            if not await self.wait_pending_below(0, deadline):
                raise RuntimeError(f"{self.label}: warm-up not answered in {timeout:.0f} s")
        bad = sum(self.stats.rejected) + sum(self.stats.errors)
        if bad:
            reasons = dict((self.stats.reject_reasons + self.stats.error_reasons).most_common(3))
            raise RuntimeError(f"{self.label}: {bad} warm-up orders refused: {reasons}")

    # -- open loop
    async def run_open(self, rate: float, duration: float, probs: list[float], seed: int = 1,
                       grace: float | None = None) -> dict:
        """The measured open-loop run; returns its report."""
        if rate <= 0 or duration <= 0:
            raise ValueError("rate and duration must be positive")
        n = max(1, int(round(rate * duration)))
        kinds = schedule_kinds(n, probs, seed)
        self.step += 1
        self._reset_measure()
        self.pending.clear()
        period = 1e9 / rate
        K = self.n_sessions
        sessions = self.sessions
        grace_s = grace if grace is not None else max(1.0, 0.5 * duration)
        t0 = mono_ns() + 20_000_000               # start 20 ms from now, on the schedule
        send_deadline = t0 + int((duration + grace_s) * 1e9)
        self.recording = True
        stop_progress = asyncio.Event()
        prog = asyncio.ensure_future(self._progress(t0, rate, stop_progress)) if self.progress else None
        pending = self.pending
        op = self._op
        lags = self.lags
        max_backlog = self.max_backlog
        i = 0
        try:
            while i < n:
                now = mono_ns()
                due = t0 + int(i * period)
                if due > now:
                    await self.timer.wait_until(due)
                    continue
                if now > send_deadline:
                    break
                room = max_backlog - len(pending)
                if room <= 0:
                    self.backlog_waits += 1
                    await self.wait_pending_below(max_backlog - max(1, max_backlog // 10), send_deadline)
                    continue
                j = i
                limit = min(n, i + room)
                while j < limit and t0 + int(j * period) <= now:
                    j += 1
                for k in range(i, j):
                    s = sessions[k % K]
                    if s.closed:
                        kind = kinds[k]
                        self.stats.sent[kind] += 1
                        self._errored((kind,), "session closed before the send")
                        continue
                    sched = t0 + int(k * period)
                    s.out.append(op(s, kinds[k], k, sched, now))
                    lags.append(now - sched)
                for s in sessions:
                    if s.out:
                        s.transport.write(b"".join(s.out))
                        s.out.clear()
                i = j
                if len(pending) > self.backlog_max:
                    self.backlog_max = len(pending)
                await asyncio.sleep(0)      # read the answers that arrived before sending more
            sent_end = mono_ns()
            unsent = n - i
            # drain: wait for the answers still due
            await self.wait_pending_below(0, mono_ns() + int(self.drain_timeout * 1e9))
            for cl in list(pending):
                self._errored(pending.pop(cl), f"no answer within --drain-timeout {self.drain_timeout:g} s")
        finally:
            self.recording = False
            if prog is not None:
                stop_progress.set()
                await prog
        self._drain_lists()
        return self._report("open", rate, duration, n, i, unsent, t0, sent_end, probs)

    async def _progress(self, t0: int, rate: float, stop: asyncio.Event) -> None:
        tty = sys.stderr.isatty()
        last = ""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), 0.5)
            except asyncio.TimeoutError:
                pass
            self._drain_lists()
            el = max(1e-9, (mono_ns() - t0) / 1e9)
            st = self.stats
            answered = sum(st.acked) + sum(st.rejected)
            p99 = self.hist_all.get_value_at_percentile(99.0) / 1e6 if self.hist_all.get_total_count() else 0.0
            line = (f"[{self.label}] t={el:5.1f}s offered {rate:,.0f}/s sent {sum(st.sent):,} "
                    f"answered {answered:,} ({answered / el:,.0f}/s) p99 so far {p99:,.2f} ms "
                    f"backlog {len(self.pending):,} rejects {sum(st.rejected)} errors {sum(st.errors)}")
            if tty:
                sys.stderr.write("\r" + line.ljust(len(last)))
            else:
                sys.stderr.write(line + "\n")
            sys.stderr.flush()
            last = line
        if tty and last:
            sys.stderr.write("\n")
            sys.stderr.flush()

    def _report(self, mode: str, rate: float, duration: float, offered: int, sent_ops: int, unsent: int,
                t0: int, sent_end: int, probs: list[float]) -> dict:
        st = self.stats
        sent, acked, rej, err = sum(st.sent), sum(st.acked), sum(st.rejected), sum(st.errors)
        answered = acked + rej
        span = max((self.last_answer_ns - t0) / 1e9 if self.last_answer_ns else 0.0, offered / rate)
        send_span = max((sent_end - t0) / 1e9, 1e-9)
        achieved = answered / span if span > 0 else 0.0
        paths = {}
        for k, name in enumerate(PATHS):
            paths[name] = {"sent": st.sent[k], "acknowledged": st.acked[k], "rejected": st.rejected[k],
                           "errors": st.errors[k], "substituted": st.substituted[k],
                           "latency_us": summarize(self.hist[k]), "service_latency_us": summarize(self.svc_hist[k])}
        met = unsent == 0 and err == 0 and achieved >= 0.95 * rate
        return {
            "target": self.label, "mode": mode, "sessions": self.n_sessions, "mix": mix_text(probs),
            "offered_rate": rate, "duration_s": duration, "offered": offered, "sent": sent, "unsent": unsent,
            "acknowledged": acked, "rejected": rej, "errors": err,
            "substituted": sum(st.substituted), "seq_gaps": st.seq_gaps if self.check_seq else None,
            "achieved_rate": round(achieved, 1), "send_rate": round(sent / send_span, 1),
            "offered_rate_met": met, "saturated": (not met) and (unsent > 0 or self.backlog_waits > 0
                                                                 or achieved < 0.95 * rate),
            "max_backlog": self.max_backlog, "backlog_peak": self.backlog_max, "backlog_waits": self.backlog_waits,
            "latency_us": summarize(self.hist_all), "send_lag_us": summarize(self.lag_hist),
            "paths": paths, "clamped_values": self.clamped,
            "reject_reasons": dict(st.reject_reasons.most_common(5)),
            "error_reasons": dict(st.error_reasons.most_common(5)),
        }

    # -- closed loop and pipelined (the FIX issue's targets are phrased that way)
    async def run_closed(self, orders: int, probs: list[float], seed: int = 1, max_seconds: float = 60.0) -> dict:
        """Each session keeps one operation in flight: send, wait for its answer, send the next."""
        kinds = schedule_kinds(orders, probs, seed)
        self.step += 1
        self._reset_measure()
        self.pending.clear()
        self.recording = True
        t0 = mono_ns()
        deadline = t0 + int(max_seconds * 1e9)
        counter = iter(range(orders))
        done_at = [0]

        async def worker(s: Session) -> None:
            my: asyncio.Future | None = None
            for k in counter:
                if s.closed or mono_ns() > deadline:
                    return
                now = mono_ns()
                s.transport.write(self._op(s, kinds[k], k, now, now))
                cl = self.last_cl
                while cl in self.pending and not s.closed:
                    my = asyncio.get_running_loop().create_future()
                    self._waiters[cl] = my
                    try:
                        await asyncio.wait_for(my, max(0.001, (deadline - mono_ns()) / 1e9))
                    except asyncio.TimeoutError:
                        return
                    finally:
                        self._waiters.pop(cl, None)
            done_at[0] = mono_ns()

        try:
            await asyncio.gather(*(worker(s) for s in self.sessions))
            for cl in list(self.pending):
                self._errored(self.pending.pop(cl), "no answer in the closed-loop time limit")
        finally:
            self._waiters.clear()
            self.recording = False
        self._drain_lists()
        elapsed = max(1e-9, ((done_at[0] or mono_ns()) - t0) / 1e9)
        st = self.stats
        sent = sum(st.sent)
        rep = self._report("closed", max(sent / elapsed, 1e-9), elapsed, orders, sent, orders - sent, t0,
                           mono_ns(), probs)
        rep["offered_rate"] = None
        rep["offered_rate_met"] = None
        rep["saturated"] = None
        rep["achieved_rate"] = round((sum(st.acked) + sum(st.rejected)) / elapsed, 1)
        return rep

    async def run_pipelined(self, orders: int, timeout: float = 120.0) -> dict:
        """``orders`` passive orders per session, pre-encoded, written back to back in large
        writes; orders/s counted from the first write until the last answer."""
        self.step += 1
        self._reset_measure()
        self.pending.clear()
        self.recording = False
        batches = []
        now = mono_ns()
        for s in self.sessions:
            msgs = [self._op(s, NEW, i * self.n_sessions + s.index, now, now) for i in range(orders)]
            batches.append((s, msgs))
        t0 = mono_ns()
        chunk = 500
        for start in range(0, orders, chunk):
            for s, msgs in batches:
                if not s.closed:
                    s.transport.write(b"".join(msgs[start:start + chunk]))
            if any(s.transport.get_write_buffer_size() > 1 << 20 for s, _ in batches if not s.closed):
                await asyncio.sleep(0)
        ok = await self.wait_pending_below(0, t0 + int(timeout * 1e9))
        elapsed = ((self.last_answer_ns or mono_ns()) - t0) / 1e9
        for cl in list(self.pending):
            self._errored(self.pending.pop(cl), f"no answer within {timeout:g} s")
        st = self.stats
        total = orders * self.n_sessions
        return {"target": self.label, "mode": "pipelined", "sessions": self.n_sessions, "orders": total,
                "sent": sum(st.sent), "acknowledged": sum(st.acked), "rejected": sum(st.rejected),
                "errors": sum(st.errors), "complete": ok, "seconds": round(elapsed, 4),
                "orders_per_s": round((sum(st.acked) + sum(st.rejected)) / elapsed, 1) if elapsed > 0 else None,
                "reject_reasons": dict(st.reject_reasons.most_common(5)),
                "error_reasons": dict(st.error_reasons.most_common(5))}


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def run_coro(coro):
    """Run ``coro`` on a fresh uvloop (asyncio if uvloop is missing) loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)
