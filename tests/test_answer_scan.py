"""The load generator's compiled answer framing (benchmarks/answer_scan.py) against its Python
reference (loadgen.LiteParser): the same messages, fields and garbled frames, the same bytes
kept between reads, for any stream cut at any points."""
from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks import answer_scan, loadgen
from benchmarks.loadgen import LiteParser, ScanParser
from oms_trading.fix.codec import Garbled, encode

TS = b"20261126-02:00:00.000"


def _er(seq: int, cl: bytes, et: bytes, ost: bytes, text: bytes | None = None) -> bytes:
    body = [(37, b"7"), (11, cl), (17, b"1"), (150, et), (39, ost), (55, b"MSFT"), (54, b"1"), (38, 100),
            (151, 100), (14, 0), (6, b"0")]
    if text:
        body.append((58, text))
    return encode(b"FIX.4.4", b"8", b"OMS", b"BENCH", seq, TS, body)


def _corrupt(msg: bytes, how: int, at: int) -> bytes:
    b = bytearray(msg)
    if how == 0:        # a byte of the body changed: CheckSum mismatch
        i = 20 + at % max(1, len(b) - 30)
        b[i] = (b[i] + 1) % 256 or 65
    elif how == 1:      # BodyLength not digits
        i = b.index(b"\x019=") + 3
        b[i] = ord("x")
    elif how == 2:      # no BodyLength at all
        return b"8=FIX.4.4\x01" + b"35=0\x01" * 8 + bytes(msg[msg.index(b"\x0135=") + 1:])
    elif how == 3:      # MsgSeqNum not a number
        return msg.replace(b"\x0134=", b"\x0134=x", 1)
    elif how == 4:      # cut short: the next message starts inside it
        return msg[: max(10, at % len(msg))]
    return bytes(b)


pieces = st.one_of(
    st.builds(_er, st.integers(0, 10**20), st.binary(min_size=0, max_size=12).map(lambda b: b.replace(b"\x01", b"")),
              st.sampled_from([b"0", b"4", b"5", b"8", b"F"]), st.sampled_from([b"0", b"1", b"2", b"4", b"8"]),
              st.one_of(st.none(), st.just(b"too late"))),
    st.builds(lambda seq: encode(b"FIX.4.4", b"0", b"OMS", b"BENCH", seq, TS, []), st.integers(1, 10**6)),
    st.builds(_corrupt, st.builds(_er, st.integers(1, 99), st.just(b"C1"), st.just(b"0"), st.just(b"0")),
              st.integers(0, 4), st.integers(0, 10**6)),
    st.binary(max_size=40),
)


def _lite_items(parser: LiteParser) -> list:
    out = []
    while (m := parser.next_message()) is not None:
        if type(m) is Garbled:
            out.append(("garbled", m.reason))
        else:
            raw34 = m.get(34)
            seq = int(raw34) if raw34 is not None and raw34.isdigit() else -1
            out.append((m.raw, m.msg_type, seq, m.get(11), m.get(150), m.get(39)))
    return out


def _scan_items(parser: ScanParser) -> list:
    out = []
    while True:
        rows, buf = parser.scan()
        for kind, start, end, ms, me, seq, cs, ce, es, ee, os_, oe in rows:
            if kind:
                out.append(("garbled", answer_scan.REASONS[kind]))
                continue
            if seq == answer_scan.HUGE_SEQ:
                raw34 = loadgen.Lite(buf[start:end], b"").get(34)
                seq = int(raw34)          # what LiteParser's int() gives: a number > int64
            out.append((buf[start:end], buf[ms:me], seq, buf[cs:ce] if cs >= 0 else None,
                        buf[es:ee] if es >= 0 else None, buf[os_:oe] if os_ >= 0 else None))
        if len(rows) < len(parser._rows):
            return out


@settings(max_examples=300, deadline=None)
@given(st.lists(pieces, max_size=25), st.lists(st.integers(1, 400), min_size=1, max_size=30))
def test_scan_frames_like_lite_parser(parts, cuts):
    stream = b"".join(parts)
    lite, scan = LiteParser(), ScanParser()
    got_l, got_s = [], []
    i = k = 0
    while i < len(stream):
        step = cuts[k % len(cuts)]
        k += 1
        for p in (lite, scan):
            p.feed(stream[i:i + step])
        got_l += _lite_items(lite)
        got_s += _scan_items(scan)
        assert lite._buf[lite._pos:] == scan._buf[scan._pos:]     # the same bytes wait for more
        i += step
    assert got_s == got_l


def test_scan_fills_many_rows_in_several_calls():
    """More complete messages in one read than the row buffer holds: scanned in rounds."""
    stream = b"".join(_er(i + 2, b"C%d" % i, b"0", b"0") for i in range(answer_scan.new_rows().shape[0] + 50))
    scan, lite = ScanParser(), LiteParser()
    scan.feed(stream)
    lite.feed(stream)
    assert _scan_items(scan) == _lite_items(lite)


def test_load_generator_matches_answers_with_the_scan_reader():
    """The default reader completes operations and counts a MsgSeqNum gap and a reject."""
    async def run() -> loadgen.LoadGen:
        gen = loadgen.LoadGen("127.0.0.1", 1, label="oms")
        assert gen.reader == "scan"
        session = loadgen.Session(gen, 0, "BENCH", "OMS")
        session.transport = type("Sink", (), {"write": lambda self, data: None})()
        gen.pending[b"A1"] = (loadgen.NEW, 0, 0, 0, 1)
        gen.pending[b"A2"] = (loadgen.NEW, 0, 0, 0, 2)
        answers = [encode(b"FIX.4.4", b"A", b"OMS", b"BENCH", 1, TS, [(98, 0), (108, 30), (141, b"Y")]),
                   _er(2, b"A1", b"0", b"0"), _er(4, b"A2", b"8", b"8", b"Unknown symbol")]
        data = b"".join(answers)
        session.data_received(data[:50])
        session.data_received(data[50:])
        return gen

    gen = asyncio.run(run())
    assert gen.stats.acked[loadgen.NEW] == 1 and gen.stats.rejected[loadgen.NEW] == 1
    assert gen.stats.seq_gaps == 1
    assert gen.stats.reject_reasons == {"ExecutionReport rejected: Unknown symbol": 1}
    assert not gen.pending


def test_scan_agrees_at_every_cut_point():
    """One read cut at each byte of a stream with every garbled case: same items, same rest."""
    good = _er(2, b"C1", b"0", b"0")
    stream = (b"xx" + good + b"8=FIX.4.4\x019=1234567890x" + _corrupt(good, 0, 5) + _corrupt(good, 1, 0)
              + _corrupt(good, 2, 0) + b"8=FIX.4.4\x01" + b"A" * 40 + _corrupt(good, 3, 0) + good + b"8=FI")
    for cut in range(len(stream) + 1):
        lite, scan = LiteParser(), ScanParser()
        got_l, got_s = [], []
        for part in (stream[:cut], stream[cut:]):
            lite.feed(part)
            scan.feed(part)
            got_l += _lite_items(lite)
            got_s += _scan_items(scan)
            assert lite._buf[lite._pos:] == scan._buf[scan._pos:], cut
        assert got_s == got_l, cut
