"""Hot-path FIX tag=value codec: framing, splitting, encoding.

Pure bytes-level Python (bytes.find / split / join and C builtins); simplefix is kept only as
the test oracle. Measured alternatives and the reasons for the choices are in
benchmarks/bench_codec.py's docstring.

Framing (``FixParser``)
    A message is ``8=<BeginString>|9=<BodyLength>|35=<MsgType>|...10=NNN|`` where ``|`` is
    SOH. Garbage before ``8=FIX`` is skipped silently. A frame whose BodyLength does not
    land on ``10=NNN<SOH>``, or whose CheckSum is wrong, or whose BodyLength is malformed or
    above ``max_message_bytes``, or whose third field is not MsgType (35) is yielded as
    ``Garbled(reason, raw)`` and skipped: the session ignores it without consuming a
    sequence number, as the FIX session specification prescribes for garbled messages. Any
    BeginString starting with ``FIX`` is framed; the session refuses the ones it does not
    support.

    Every decision is taken only when enough bytes are buffered for it to be final, so
    feeding a stream in any chunking yields exactly what feeding it whole yields. The buffer
    never holds more than about ``max_message_bytes`` + 64 bytes beyond the last ``feed``.

Checksum
    FIX CheckSum is ``sum(bytes) % 256``. ``sum()`` over bytes costs ~10 ns/byte in
    CPython; ``zlib.adler32(data, 0) & 0xFFFF`` is the byte sum modulo 65521, computed in C,
    which is the exact sum for up to 256 bytes (256 * 255 < 65521). ``checksum()`` sums
    256-byte chunks that way.

Splitting
    Fast path: if the separators (bytes.translate deleting everything else) strictly
    alternate ``=`` SOH, replacing SOH by ``=`` and splitting on ``=`` gives tags and values
    alternately in one list.
    Tags convert through a prebuilt ``bytes -> int`` dict (canonical decimal only). The
    first-occurrence dict is built in C; if it has fewer entries than fields (repeats,
    repeating groups), a tag is not canonical, a value is empty or a raw-data length field
    is present, the careful slow path runs instead.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Iterable, Iterator, Union
from zlib import adler32 as _adler32

__all__ = [
    "FixMessage",
    "Garbled",
    "FixParser",
    "checksum",
    "encode",
    "ExecReportTemplate",
    "with_poss_dup",
    "split_message",
    "SOH",
]

SOH = b"\x01"
_EQ = b"="
_EMPTY: tuple = ()
_DEL_NON_SEP = bytes(b for b in range(256) if b not in (1, 61))  # keep only SOH and '='
_ALT_SEP = b"=\x01"

# Raw data (length tag -> data tag) pairs: the data value may contain SOH. Same table as
# simplefix (FIX 4.x-5.0 SP2 data fields).
RAW_DATA_PAIRS: dict[int, int] = {
    90: 91, 93: 89, 95: 96, 212: 213, 348: 349, 350: 351, 352: 353, 354: 355, 356: 357,
    358: 359, 360: 361, 362: 363, 364: 365, 445: 446, 618: 619, 621: 622, 1277: 1278,
    1280: 1281, 1282: 1283, 1397: 1398, 1401: 1402, 1403: 1404, 1468: 1469, 1525: 1527,
    1578: 1579, 1620: 1621, 1664: 1665, 1678: 1697, 1733: 1734, 2072: 2073, 2074: 2075,
    2179: 2180, 2111: 2112,
}
_RAW_LEN_TAGS = frozenset(RAW_DATA_PAIRS)

# Canonical decimal tag text -> int, for tags 1..9999 (covers FIX 4.x and the usual
# user-defined range). Larger tags go through the slow path (still accepted).
_TAG_CACHE: dict[bytes, int] = {b"%d" % i: i for i in range(1, 10000)}
_tag_get = _TAG_CACHE.get


def _parse_tag(t: bytes) -> int | None:
    """Tag text -> positive int, or None if it is not a positive decimal integer."""
    v = _tag_get(t)
    if v is not None:
        return v
    if t.isdigit() and len(t) <= 9:  # isdigit on bytes: ASCII digits only
        v = int(t)
        if v > 0:
            return v
    return None


def checksum(data: bytes) -> int:
    """FIX CheckSum (10) of ``data``: sum of the bytes modulo 256."""
    n = len(data)
    if n <= 256:
        return _adler32(data, 0) & 0xFF  # A = sum mod 65521 = exact sum here
    mv = memoryview(data)
    s = 0
    for i in range(0, n, 256):
        s += _adler32(mv[i:i + 256], 0) & 0xFFFF
    return s & 0xFF


# Repeating groups of the message types we receive, for `repeated_tags`: a tag repeated
# inside a group declared by its NumInGroup tag is not a repeat. Filled from dictionary.py
# (msg_type -> {count tag -> all member tags, nested ones included}); resolved lazily to
# keep this module importable on its own.
_groups_by_type: dict[bytes, dict[int, frozenset]] | None = None


def _groups_for(msg_type: bytes) -> dict[int, frozenset]:
    global _groups_by_type
    g = _groups_by_type
    if g is None:
        from oms_trading.fix.dictionary import GROUP_MEMBERS_ANY_VERSION

        g = _groups_by_type = GROUP_MEMBERS_ANY_VERSION
    return g.get(msg_type, _NO_GROUPS)


_NO_GROUPS: dict = {}


class FixMessage:
    """One framed FIX message.

    Attributes: ``begin_string``, ``msg_type`` (b"" if 35 is missing), ``raw`` (the whole
    message), ``seq_num`` (34 as int, -1 if missing/invalid), ``fields`` (all
    ``(tag, value)`` in wire order, header and trailer included; fields whose tag is not a
    positive integer are left out and listed in ``bad_tags``), and the problems found
    while splitting: ``bad_tags`` (tag texts), ``empty_tags`` (tags with no value; they
    are in ``fields`` with value b""), ``repeated_tags`` (tags seen twice outside a
    repeating group of this message type). The problem attributes are empty tuples when
    there is nothing to report (treat them as read-only sequences).
    """

    __slots__ = ("begin_string", "msg_type", "raw", "seq_num", "_d", "_fields",
                 "bad_tags", "empty_tags", "repeated_tags")

    def __init__(self, raw: bytes, begin_string: bytes | None = None):
        # Public constructor: split ``raw`` (a complete message; framing not checked).
        m = split_message(raw, begin_string)
        for a in FixMessage.__slots__:
            setattr(self, a, getattr(m, a))

    @property
    def fields(self) -> list[tuple[int, bytes]]:
        f = self._fields
        if f is None:
            f = self._fields = list(self._d.items())
        return f

    def get(self, tag: int, default=None):
        """Value of the first occurrence of ``tag`` (bytes), or ``default``."""
        return self._d.get(tag, default)

    def __contains__(self, tag: int) -> bool:
        return tag in self._d

    def get_all(self, tag: int) -> list[bytes]:
        return [v for t, v in self.fields if t == tag]

    def __repr__(self) -> str:
        return "FixMessage(%r)" % self.raw.replace(SOH, b"|")


class Garbled:
    """A frame that failed BodyLength/CheckSum/format checks; to be ignored by the session."""

    __slots__ = ("reason", "raw")

    def __init__(self, reason: str, raw: bytes):
        self.reason = reason
        self.raw = raw

    def __repr__(self) -> str:
        return "Garbled(%r, %r)" % (self.reason, self.raw[:80])

    def __eq__(self, other) -> bool:
        return isinstance(other, Garbled) and other.reason == self.reason and other.raw == self.raw

    __hash__ = None  # type: ignore[assignment]


_new_msg = object.__new__


def split_message(raw: bytes, begin_string: bytes | None = None) -> FixMessage:
    """Split a complete, framed message into a FixMessage. Never raises on bytes input."""
    seps = raw.translate(None, _DEL_NON_SEP)
    # Separators strictly alternate '=' SOH: every field has exactly one '=' (no '=' inside
    # a value, no field without '='), and the message ends with SOH.
    if seps == _ALT_SEP * (len(seps) >> 1) and b"=\x01" not in raw:
        ns = len(seps) >> 1
        kv = raw.replace(SOH, _EQ).split(_EQ)
        kv.pop()
        it = iter(kv)
        d = dict(zip(map(_tag_get, it), it))  # tag, value alternate; first item -> tag
        if len(d) == ns and None not in d and _RAW_LEN_TAGS.isdisjoint(d):
            m = _new_msg(FixMessage)
            m.raw = raw
            m._d = d
            m._fields = None
            m.begin_string = d.get(8, b"") if begin_string is None else begin_string
            m.msg_type = d.get(35, b"")
            sq = d.get(34)
            m.seq_num = int(sq) if sq is not None and sq.isdigit() and len(sq) < 19 else -1
            m.bad_tags = m.empty_tags = m.repeated_tags = _EMPTY
            return m
    return _split_slow(raw, begin_string)


def _split_slow(raw: bytes, begin_string: bytes | None) -> FixMessage:
    fields: list[tuple[int, bytes]] = []
    bad: list[bytes] = []
    empty: list[int] = []
    n = len(raw)
    i = 0
    raw_len = -1  # pending raw-data length
    raw_tag = 0   # data tag that length applies to
    find = raw.find
    while i < n:
        soh = find(SOH, i)
        if soh < 0:
            soh = n
        eq = find(_EQ, i, soh)
        if eq < 0:
            t = raw[i:soh]
            tag = _parse_tag(t)
            if tag is None:
                if t:
                    bad.append(t)
            else:
                empty.append(tag)
                fields.append((tag, b""))
            i = soh + 1
            continue
        t = raw[i:eq]
        tag = _parse_tag(t)
        if tag is not None and tag == raw_tag and raw_len >= 0:
            vend = eq + 1 + raw_len
            if vend <= n and (vend == n or raw[vend] == 1):
                soh = vend
        raw_len = -1
        raw_tag = 0
        v = raw[eq + 1:soh]
        i = soh + 1
        if tag is None:
            bad.append(t)
            continue
        if not v:
            empty.append(tag)
        elif tag in RAW_DATA_PAIRS and v.isdigit() and len(v) < 10:
            raw_len = int(v)
            raw_tag = RAW_DATA_PAIRS[tag]
        fields.append((tag, v))

    d = dict(reversed(fields))  # first occurrence wins
    m = _new_msg(FixMessage)
    m.raw = raw
    m._d = d
    m._fields = fields
    m.begin_string = d.get(8, b"") if begin_string is None else begin_string
    mt = m.msg_type = d.get(35, b"")
    sq = d.get(34)
    m.seq_num = int(sq) if sq is not None and sq.isdigit() and len(sq) < 19 else -1
    m.bad_tags = bad or _EMPTY
    m.empty_tags = empty or _EMPTY
    repeated: list[int] = []
    if len(d) != len(fields):
        groups = _groups_for(mt)
        seen: set[int] = set()
        # the repeated tags as a set too: 'in' on the list made a frame of thousands of tags
        # each sent twice quadratic (250 ms of the event loop, every session's, per 64 KiB frame)
        twice: set[int] = set()
        members = None
        for tag, _ in fields:
            if members is not None:
                if tag in members:
                    continue
                members = None
            g = groups.get(tag)
            if g is not None:
                members = g
            if tag in seen:
                if tag not in twice:
                    twice.add(tag)
                    repeated.append(tag)
            else:
                seen.add(tag)
    m.repeated_tags = repeated or _EMPTY
    return m


class StreamBuffer:
    """Received bytes not yet framed: ``_buf[_pos:]``; framers advance ``_pos``."""

    __slots__ = ("_buf", "_pos")

    def __init__(self) -> None:
        self._buf = b""
        self._pos = 0

    def feed(self, data: bytes) -> None:
        if self._pos:
            self._buf = self._buf[self._pos:] + data
            self._pos = 0
        elif self._buf:
            self._buf += data
        else:
            self._buf = bytes(data)

    def buffered(self) -> int:
        """Bytes held waiting for the rest of a frame."""
        return len(self._buf) - self._pos


class FixParser(StreamBuffer):
    """Streaming FIX framer: ``feed(bytes)`` then iterate ``messages()``."""

    __slots__ = ("max_message_bytes",)

    # Longest BeginString field we wait for ("8=FIX.4.4" is 9 bytes) and BodyLength digits.
    _MAX_BEGIN = 32
    _MAX_LEN_DIGITS = 9

    def __init__(self, max_message_bytes: int = 65536):
        super().__init__()
        self.max_message_bytes = max_message_bytes

    def messages(self) -> Iterator[Union[FixMessage, Garbled]]:
        nxt = self.next_message
        while True:
            m = nxt()
            if m is None:
                return
            yield m

    def next_message(self) -> FixMessage | Garbled | None:
        """The next complete message or Garbled frame, or None if more data is needed."""
        buf = self._buf
        pos = self._pos
        n = len(buf)
        while True:
            if not buf.startswith(b"8=FIX", pos):
                s = buf.find(b"8=FIX", pos)
                if s < 0:
                    # Keep a tail that may be the start of "8=FIX".
                    keep = n - 4 if n - 4 > pos else pos
                    self._buf = buf[keep:]
                    self._pos = 0
                    return None
                pos = s
            e1 = buf.find(SOH, pos + 5, pos + self._MAX_BEGIN)
            if e1 < 0:
                if n - pos >= self._MAX_BEGIN:
                    return self._garbled("BeginString (8) too long or unterminated", pos, pos + self._MAX_BEGIN, pos + 1)
                self._pos = pos
                return None
            if n < e1 + 3:
                self._pos = pos
                return None
            if buf[e1 + 1:e1 + 3] != b"9=":
                return self._garbled("BodyLength (9) is not the second field", pos, e1 + 3, pos + 1)
            lstart = e1 + 3
            e2 = buf.find(SOH, lstart, lstart + self._MAX_LEN_DIGITS + 1)
            if e2 < 0:
                if n - lstart > self._MAX_LEN_DIGITS:
                    return self._garbled("BodyLength (9) malformed", pos, lstart + self._MAX_LEN_DIGITS + 1, pos + 1)
                self._pos = pos
                return None
            lb = buf[lstart:e2]
            if not lb.isdigit():
                return self._garbled("BodyLength (9) malformed: %r" % lb, pos, e2 + 1, pos + 1)
            blen = int(lb)
            if blen > self.max_message_bytes:
                return self._garbled("BodyLength (9) %d above limit %d" % (blen, self.max_message_bytes),
                                     pos, e2 + 1, pos + 1)
            bend = e2 + 1 + blen
            end = bend + 7
            if n < end:
                self._pos = pos
                return None
            if buf[end - 1] != 1 or not buf.startswith(b"10=", bend) or not buf[bend + 3:end - 1].isdigit():
                return self._garbled("BodyLength (9) %d does not end at CheckSum (10)" % blen, pos, end, pos + 1)
            want = int(buf[bend + 3:end - 1])
            raw = buf[pos:end]
            got = checksum(memoryview(raw)[:-7])
            if got != want:
                return self._garbled("CheckSum (10) %03d, computed %03d" % (want, got), pos, end, end)
            if not buf.startswith(b"35=", e2 + 1):
                # garbled by the session spec: ignored, its MsgSeqNum left to a ResendRequest
                return self._garbled("MsgType (35) is not the third field", pos, end, end)
            self._pos = end
            if end == n:
                self._buf = b""
                self._pos = 0
            return split_message(raw, buf[pos + 2:e1])

    def _garbled(self, reason: str, start: int, end: int, resume: int) -> Garbled:
        raw = self._buf[start:end]
        self._pos = resume
        return Garbled(reason, raw)


# ---------------------------------------------------------------------------------------
# Encoding

_PFX: dict[int, bytes] = {i: b"%d=" % i for i in range(1, 2000)}


def _pfx(tag: int) -> bytes:
    p = _PFX.get(tag)
    if p is None:
        p = b"%d=" % tag
    return p


def _to_bytes(v) -> bytes:
    t = type(v)
    if t is bytes:
        return v
    if t is str:
        return v.encode()
    if t is int:
        return b"%d" % v
    if t is bool:
        return b"Y" if v else b"N"
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v)
    if isinstance(v, Decimal):
        return format(v, "f").encode()
    if isinstance(v, float):
        # Shortest round-trip text, never exponent notation.
        r = repr(v)
        if "e" in r or "E" in r:
            r = format(v, "f").rstrip("0").rstrip(".")
        return r.encode()
    return str(v).encode()


def _finish(begin_string: bytes, body: bytes) -> bytes:
    msg = b"8=%b\x019=%d\x01%b" % (begin_string, len(body), body)
    return b"%b10=%03d\x01" % (msg, checksum(msg))


def encode(begin_string, msg_type, sender, target, seq_num: int, sending_time,
           body: Iterable[tuple[int, object]],
           extra_header: Iterable[tuple[int, object]] = ()) -> bytes:
    """Encode a message: 8, 9, 35, 49, 56, 34, 52, extra header, body, 10.

    Values may be bytes, str, int, bool (Y/N), float or anything with a sensible str().
    """
    parts = [b"35=%b\x0149=%b\x0156=%b\x0134=%d\x0152=%b\x01" % (
        _to_bytes(msg_type), _to_bytes(sender), _to_bytes(target), seq_num, _to_bytes(sending_time))]
    ap = parts.append
    for tag, v in extra_header:
        ap(_pfx(tag))
        ap(v if type(v) is bytes else _to_bytes(v))
        ap(SOH)
    for tag, v in body:
        ap(_pfx(tag))
        ap(v if type(v) is bytes else _to_bytes(v))
        ap(SOH)
    return _finish(_to_bytes(begin_string), b"".join(parts))


class ExecReportTemplate:
    """Fast ExecutionReport (35=8) encoder for one session.

    ``t = ExecReportTemplate(b"FIX.4.4", sender_comp_id, target_comp_id)``, then::

        t.encode(seq_num, sending_time,
                 order_id, cl_ord_id, exec_id, exec_type, ord_status,
                 symbol, side, order_qty, ord_type,
                 last_qty, last_px, leaves_qty, cum_qty, avg_px, transact_time,
                 orig_cl_ord_id=None, price=None, time_in_force=None, account=None,
                 ord_rej_reason=None, text=None) -> bytes

    Positional arguments are the fast path. Types on the fast path: ``seq_num`` int;
    quantities (``order_qty``, ``last_qty``, ``leaves_qty``, ``cum_qty``) int; everything
    else bytes (prices are decimal text: ticks -> text is the gateway's job). Any other
    type (str, float, Decimal, int for a bytes slot...) is accepted too and converted on a
    slower path; a float quantity is formatted as a decimal, never truncated. Optional
    fields are left out when None.

    Field order: 37 11 41 17 [20=0 in FIX.4.2] 150 39 103 1 55 54 38 40 44 59 32 31 151 14
    6 60 58.
    """

    __slots__ = ("begin_string", "sender", "target", "_fmt", "_fmt_b", "_head")

    def __init__(self, begin_string, sender, target):
        bs = self.begin_string = _to_bytes(begin_string)
        self.sender = _to_bytes(sender)
        self.target = _to_bytes(target)
        etx = b"20=0\x01" if bs == b"FIX.4.2" else b""
        # %b slots: optional fields arrive pre-rendered (b"" when absent).
        tail = (b"37=%b\x0111=%b\x01%b17=%b\x01" + etx.replace(b"%", b"%%") +
                b"150=%b\x0139=%b\x01%b%b55=%b\x0154=%b\x0138=%d\x0140=%b\x01%b%b"
                b"32=%d\x0131=%b\x01151=%d\x0114=%d\x016=%b\x0160=%b\x01%b")
        hdr = (b"35=8\x0149=" + self.sender.replace(b"%", b"%%") + b"\x0156=" +
               self.target.replace(b"%", b"%%") + b"\x0134=%d\x0152=%b\x01")
        self._fmt = hdr + tail
        self._fmt_b = self._fmt.replace(b"%d", b"%b")
        self._head = b"8=" + bs + b"\x019="

    def encode(self, seq_num, sending_time, order_id, cl_ord_id, exec_id, exec_type, ord_status,
               symbol, side, order_qty, ord_type, last_qty, last_px, leaves_qty, cum_qty, avg_px,
               transact_time, orig_cl_ord_id=None, price=None, time_in_force=None, account=None,
               ord_rej_reason=None, text=None) -> bytes:
        body = None
        # %d would silently truncate a float quantity: only exact ints take the fast path.
        if type(seq_num) is int and type(order_qty) is int and type(last_qty) is int \
                and type(leaves_qty) is int and type(cum_qty) is int:
            try:
                body = self._fmt % (
                    seq_num, sending_time, order_id, cl_ord_id,
                    b"" if orig_cl_ord_id is None else b"41=%b\x01" % orig_cl_ord_id,
                    exec_id, exec_type, ord_status,
                    b"" if ord_rej_reason is None else b"103=%b\x01" % ord_rej_reason,
                    b"" if account is None else b"1=%b\x01" % account,
                    symbol, side, order_qty, ord_type,
                    b"" if price is None else b"44=%b\x01" % price,
                    b"" if time_in_force is None else b"59=%b\x01" % time_in_force,
                    last_qty, last_px, leaves_qty, cum_qty, avg_px, transact_time,
                    b"" if text is None else b"58=%b\x01" % text)
            except TypeError:
                pass
        if body is None:
            b = _to_bytes

            def o(pfx, v):
                return b"" if v is None else pfx + b(v) + SOH

            body = self._fmt_b % (
                b(seq_num), b(sending_time), b(order_id), b(cl_ord_id), o(b"41=", orig_cl_ord_id),
                b(exec_id), b(exec_type), b(ord_status), o(b"103=", ord_rej_reason), o(b"1=", account),
                b(symbol), b(side), b(order_qty), b(ord_type), o(b"44=", price), o(b"59=", time_in_force),
                b(last_qty), b(last_px), b(leaves_qty), b(cum_qty), b(avg_px), b(transact_time),
                o(b"58=", text))
        msg = b"%b%d\x01%b" % (self._head, len(body), body)
        if len(msg) <= 256:
            ck = _adler32(msg, 0) & 0xFF
        else:
            ck = checksum(msg)
        return b"%b10=%03d\x01" % (msg, ck)


def with_poss_dup(raw: bytes, new_sending_time) -> bytes:
    """Resend form of a message we sent: PossDupFlag 43=Y, OrigSendingTime 122 = the
    original 52 (kept if the message already carries 122), new SendingTime 52; 9 and 10
    recomputed. 43 and 122 are placed just before 52."""
    m = split_message(raw)
    fields = m.fields
    orig = m.get(122)
    if orig is None:
        orig = m.get(52, b"")
    nst = _to_bytes(new_sending_time)
    parts = []
    ap = parts.append
    placed = False
    for tag, v in fields:
        if tag == 8 or tag == 9 or tag == 10 or tag == 43 or tag == 122:
            continue
        if tag == 52:
            if not placed:
                ap(b"43=Y\x01122=%b\x0152=%b\x01" % (orig, nst))
                placed = True
            continue
        ap(b"%d=%b\x01" % (tag, v))
    if not placed:  # no 52 in the original: insert after 34 (header order 35 49 56 34)
        ins = b"43=Y\x01122=%b\x0152=%b\x01" % (orig, nst)
        for k, p in enumerate(parts):
            if p.startswith(b"34="):
                parts.insert(k + 1, ins)
                break
        else:
            parts.insert(1 if parts else 0, ins)
    return _finish(m.begin_string or m.get(8, b"FIX.4.4"), b"".join(parts))
