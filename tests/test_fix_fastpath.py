"""The compiled inbound fast path (fix/fastpath.py) against the general path.

Two identical acceptor stacks (engine, journal, session) in one process, one with the fast
path and one without, take the same byte stream in the same chunks: clean orders, cancels,
replaces and status requests mixed with mutated ones (bad values, repeated and unknown tags,
header fields in the body, PossDup, sequence gaps, stale SendingTime, garbled frames (MsgType
not the third field among them), garbage) and standard optional fields off the fast path. Everything they answer and everything they journal must be the same, apart from
the clock.
"""
from __future__ import annotations

import itertools
import re
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oms_trading.audit.journal import Journal, iter_records
from oms_trading.book import NumbaBook
from oms_trading.compliance.risk import RiskEngine
from oms_trading.config import load_config
from oms_trading.engine.engine import Engine
from oms_trading.fix import fastpath
from oms_trading.fix import session as session_mod
from oms_trading.fix.codec import checksum
from oms_trading.fix.gateway import Gateway
from oms_trading.fix.session import FixAcceptor, FixSession
from tests.memtransport import MemoryTransport as Transport

SOH = b"\x01"
CFG = load_config()


class Stack:
    """An acceptor with one connection, its clock counting from a fixed start."""

    def __init__(self, root: Path, fast: bool) -> None:
        clock = itertools.count(1_800_000_000_000_000_000, 1000)
        self.journal = Journal(root / "journal", fsync="os")
        self.engine = Engine(CFG, self.journal, lambda: NumbaBook(capacity=1 << 10), risk=RiskEngine(CFG))
        self.gateway = Gateway(self.engine, clock_ns=lambda: next(clock))
        self.acceptor = FixAcceptor(CFG, self.gateway, root)
        self.transport = Transport()
        self.session = FixSession(self.acceptor)
        self.session.use_fast_path = fast
        self.session.connection_made(self.transport)

    def feed(self, data: bytes) -> None:
        if not self.transport.closed:
            self.session.data_received(data)

    def answers(self) -> list[bytes]:
        """What was written, each message without the fields that carry the clock."""
        msgs = re.findall(rb"8=FIX.*?\x0110=\d{3}\x01", bytes(self.transport.out), re.S)
        return [re.sub(rb"\x01(9|10|52|60|122)=[^\x01]*", b"", m) for m in msgs]

    def journaled(self) -> list[dict]:
        self.journal.flush()
        drop = ("ts", "hash", "prev_hash")
        return [{k: v for k, v in r.items() if k not in drop} for r in iter_records(self.journal.directory)]

    def close(self) -> None:
        self.journal.close()


def now_ts(offset_s: float = 0.0) -> bytes:
    t = datetime.fromtimestamp(time.time() + offset_s, timezone.utc)
    return t.strftime("%Y%m%d-%H:%M:%S.%f")[:-3].encode()


def frame(begin: bytes, fields: list[tuple[bytes, bytes]], garble: str | None = None) -> bytes:
    body = b"".join(t + b"=" + v + SOH for t, v in fields)
    length = len(body) + (2 if garble == "length" else 0)
    msg = b"8=" + begin + SOH + b"9=" + str(length).encode() + SOH + body
    total = checksum(msg)
    if garble == "checksum":
        total = (total + 1) % 256
    return msg + b"10=%03d" % total + SOH


SESSIONS = {b"FIX.4.4": b"BENCH", b"FIX.4.2": b"CLIENT2"}
PRICES = [b"190.00", b"190.01", b"189.99", b"190", b"190.5"]

weird = st.sampled_from([b"-1", b"0", b"9" * 30, b"1e9", b"\xff", b"1.5", b"190.", b".5", b" ", b"Z", b"100.0",
                         b"100.50", b"0100", b"20260101-00:00:00", b"20261301-00:00:00.000", b"2", b"A" * 300])


@st.composite
def order_flow(draw):
    """(begin string, messages as field lists before the header is added, mutation per message)."""
    begin = draw(st.sampled_from(sorted(SESSIONS)))
    n = draw(st.integers(1, 14))
    out = []
    for i in range(n):
        kind = draw(st.sampled_from(["D", "D", "D", "F", "G", "H"]))
        cl = b"C%d" % i
        side = draw(st.sampled_from([b"1", b"2"]))
        body = [(b"11", cl), (b"55", b"AAPL"), (b"54", side)]
        if kind in ("D", "G"):
            if begin == b"FIX.4.2" or draw(st.booleans()):
                body.append((b"21", b"1"))
            body += [(b"38", draw(st.sampled_from([b"100", b"200", b"100.0"]))), (b"40", b"2"),
                     (b"44", draw(st.sampled_from(PRICES)))]
            if draw(st.booleans()):
                body.append((b"59", draw(st.sampled_from([b"0", b"1", b"3"]))))
            if draw(st.booleans()):
                body.append((b"1", b"BENCH"))
        if kind in ("F", "G"):
            ref = draw(st.integers(0, max(i - 1, 0)))
            body.insert(1, (b"41", b"C%d" % ref))
            if draw(st.booleans()):
                body.append((b"37", str(draw(st.integers(1, 5))).encode()))
            if kind == "F":
                body.append((b"38", b"100"))
        if kind == "H" and draw(st.booleans()):
            body.append((b"37", b"1"))
        if kind == "H" and draw(st.booleans()):
            body.append((b"1", b"BENCH"))     # on the fast path in both versions
        if kind in ("F", "G") and draw(st.booleans()):
            # standard optional fields the fast path leaves to the general path
            body.append(draw(st.sampled_from([(b"66", b"L1"), (b"586", now_ts()), (b"377", b"N")])))
        if kind != "H" and (begin == b"FIX.4.4" or draw(st.booleans())):
            body.append((b"60", now_ts()))
        mutation = draw(st.sampled_from([None] * 6 + ["value", "duplicate", "unknown", "drop", "header_in_body",
                                                       "possdup", "gap", "stale", "length", "checksum",
                                                       "garbage", "equals", "empty", "user_tag",
                                                       "late_header", "late_msgtype"]))
        if mutation == "value":
            j = draw(st.integers(0, len(body) - 1))
            body[j] = (body[j][0], draw(weird))
        elif mutation == "duplicate":
            j = draw(st.integers(0, len(body) - 1))
            body.insert(j, body[j])
        elif mutation == "unknown":
            body.insert(draw(st.integers(0, len(body))), (str(draw(st.integers(1, 999))).encode(), b"X"))
        elif mutation == "drop":
            del body[draw(st.integers(0, len(body) - 1))]
        elif mutation == "equals":
            body[0] = (b"11", cl + b"=x")
        elif mutation == "empty":
            body[-1] = (body[-1][0], b"")
        elif mutation == "user_tag":
            body.append((b"5001", b"x"))
        out.append((kind, body, mutation))
    chunks = draw(st.lists(st.integers(1, 400), min_size=1, max_size=8))
    return begin, out, chunks


def stream(begin: bytes, flow) -> bytes:
    them = SESSIONS[begin]
    seq = 2
    data = []
    for kind, body, mutation in flow:
        header = [(b"35", kind.encode()), (b"49", them), (b"56", b"OMS"), (b"34", str(seq).encode()),
                  (b"52", now_ts(-1000 if mutation == "stale" else 0))]
        if mutation == "possdup":
            header += [(b"43", b"Y"), (b"122", now_ts())]
        if mutation == "header_in_body":
            body = body + [(b"50", b"DESK")]
        if mutation == "gap":
            header[3] = (b"34", str(seq + 1).encode())
        if mutation == "late_header":
            body = body + [header.pop()]             # SendingTime after the body fields
        if mutation == "late_msgtype":
            header[0], header[1] = header[1], header[0]   # 35 not the third field: garbled
        raw = frame(begin, header + body, mutation if mutation in ("length", "checksum") else None)
        if mutation == "garbage":
            raw = b"xx" + raw
        data.append(raw)
        if mutation not in ("length", "checksum", "late_msgtype"):
            seq += 1
    return b"".join(data)


def logon(begin: bytes) -> bytes:
    return frame(begin, [(b"35", b"A"), (b"49", SESSIONS[begin]), (b"56", b"OMS"), (b"34", b"1"),
                         (b"52", now_ts()), (b"98", b"0"), (b"108", b"30"), (b"141", b"Y")])


@pytest.fixture(scope="module", autouse=True)
def _compiled():
    fastpath.warm_up()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order_flow())
def test_fast_path_answers_and_journals_what_the_general_path_does(tmp_path_factory, flow):
    begin, msgs, chunks = flow
    data = logon(begin) + stream(begin, msgs)
    stacks = [Stack(tmp_path_factory.mktemp("slow"), False),
              Stack(tmp_path_factory.mktemp("fast"), True)]
    try:
        for s in stacks:
            pos = 0
            for size in itertools.cycle(chunks):
                if pos >= len(data):
                    break
                s.feed(data[pos:pos + size])
                pos += size
        slow, fast = stacks
        assert fast.answers() == slow.answers()
        assert fast.journaled() == slow.journaled()
        assert fast.session.store.next_target_seq == slow.session.store.next_target_seq
        assert fast.transport.closed == slow.transport.closed
    finally:
        for s in stacks:
            s.close()


def test_fast_path_takes_clean_orders(tmp_path, monkeypatch):
    """Clean messages go through the compiled scan (not the general path) and are answered."""
    s = Stack(tmp_path, True)
    calls = []
    real = fastpath.scan
    monkeypatch.setattr(session_mod, "_fast_scan", lambda *a: calls.append(real(*a)) or calls[-1])
    flow = [("D", [(b"11", b"A%d" % i), (b"55", b"AAPL"), (b"54", b"1"), (b"60", now_ts()), (b"38", b"100"),
                   (b"40", b"2"), (b"44", b"190.00"), (b"59", b"0")], None) for i in range(20)]
    s.feed(logon(b"FIX.4.4"))
    s.feed(stream(b"FIX.4.4", flow))
    assert sum(rows for rows, _ in calls) == 20
    answers = s.answers()
    assert len(answers) == 21 and all(b"\x0135=8\x01" in a and b"\x01150=0\x01" in a for a in answers[1:])
    assert s.session.store.next_target_seq == 22
    s.close()


def test_kernel_refuses_what_it_cannot_vouch_for():
    t = fastpath.tables_for(b"FIX.4.4")
    ids, n_prefix, n_them = t.ids(b"BENCH", b"OMS")
    out = np.zeros((8, fastpath.ROW), np.int64)

    def rows(fields, expected=2):
        raw = frame(b"FIX.4.4", [(b"35", b"D"), (b"49", b"BENCH"), (b"56", b"OMS"), (b"34", b"2"),
                                 (b"52", now_ts())] + fields)
        buf = np.frombuffer(raw, np.uint8)
        n, pos = fastpath.scan(buf, 0, len(raw), ids, n_prefix, n_them, expected, time.time(), 120.0,
                               t.rules, out)
        return n

    good = [(b"11", b"X"), (b"55", b"AAPL"), (b"54", b"1"), (b"60", now_ts()), (b"38", b"100"), (b"40", b"2"),
            (b"44", b"1.5")]
    assert rows(good) == 1
    assert rows(good, expected=3) == 0                                  # not the next MsgSeqNum
    assert rows(good[:-1] + [(b"44", b"-1.5")]) == 0                    # a sign: general path decides
    assert rows([(b"11", b"X")] + good[1:3] + good[4:]) == 0            # TransactTime missing
    assert rows(good + [(b"11", b"Y")]) == 0                            # repeated tag
    assert rows(good + [(b"58", b"hi")]) == 0                           # a tag not on the fast path
    assert rows(good[:2] + [(b"54", b"Z")] + good[3:]) == 0             # Side out of range
    assert rows(good[:3] + [(b"60", b"20260230-00:00:00")] + good[4:]) == 0   # no 30 February


def test_kernel_takes_what_the_dictionary_allows_and_leaves_the_rest():
    """Account (1) in a FIX 4.2 OrderStatusRequest is on the fast path now that the 4.2
    dictionary has it; ListID (66) in a cancel is not on it (general path, accepted there)."""
    out = np.zeros((8, fastpath.ROW), np.int64)

    def rows(begin, mt, fields):
        t = fastpath.tables_for(begin)
        ids, n_prefix, n_them = t.ids(SESSIONS[begin], b"OMS")
        raw = frame(begin, [(b"35", mt), (b"49", SESSIONS[begin]), (b"56", b"OMS"), (b"34", b"2"),
                            (b"52", now_ts())] + fields)
        return fastpath.scan(np.frombuffer(raw, np.uint8), 0, len(raw), ids, n_prefix, n_them, 2,
                             time.time(), 120.0, t.rules, out)[0]

    status = [(b"11", b"S1"), (b"55", b"AAPL"), (b"54", b"1")]
    assert rows(b"FIX.4.2", b"H", status + [(b"1", b"CLIENT2")]) == 1
    cancel = [(b"41", b"C1"), (b"11", b"C2"), (b"55", b"AAPL"), (b"54", b"1"), (b"60", now_ts())]
    assert rows(b"FIX.4.4", b"F", cancel) == 1
    assert rows(b"FIX.4.4", b"F", cancel + [(b"66", b"L1")]) == 0
