"""A ResendRequest is answered as the store is read, in writes of RESEND_CHUNK_BYTES: whatever
the chunk size, the counterparty gets the same messages (application messages with PossDupFlag,
administrative ones and gaps as SequenceReset-GapFill), in order."""
from __future__ import annotations

import re

import pytest

from oms_trading.fix import session as session_mod
from tests.test_fix_fastpath import Stack, frame, logon, now_ts


def _order(seq: int, cl: bytes) -> bytes:
    return frame(b"FIX.4.4", [(b"35", b"D"), (b"49", b"BENCH"), (b"56", b"OMS"), (b"34", str(seq).encode()),
                              (b"52", now_ts()), (b"11", cl), (b"55", b"AAPL"), (b"54", b"1"),
                              (b"60", now_ts()), (b"38", b"100"), (b"40", b"2"), (b"44", b"190.00")])


def _resent(tmp_path, chunk: int, monkeypatch) -> list[tuple[bytes, bytes, bytes]]:
    monkeypatch.setattr(session_mod, "RESEND_CHUNK_BYTES", chunk)
    s = Stack(tmp_path, True)
    try:
        s.feed(logon(b"FIX.4.4"))
        for i in range(6):
            s.feed(_order(i + 2, b"R%d" % i))
        s.feed(frame(b"FIX.4.4", [(b"35", b"1"), (b"49", b"BENCH"), (b"56", b"OMS"), (b"34", b"8"),
                                  (b"52", now_ts()), (b"112", b"T")]))          # our Heartbeat: seq 8
        s.feed(_order(9, b"R6"))                                                # ER: seq 9
        start = len(s.transport.out)
        s.feed(frame(b"FIX.4.4", [(b"35", b"2"), (b"49", b"BENCH"), (b"56", b"OMS"), (b"34", b"10"),
                                  (b"52", now_ts()), (b"7", b"1"), (b"16", b"0")]))
        out = bytes(s.transport.out[start:])
    finally:
        s.close()
    msgs = re.findall(rb"8=FIX.*?\x0110=\d{3}\x01", out, re.S)

    def tag(m: bytes, t: bytes) -> bytes:
        found = re.search(rb"\x01" + t + rb"=([^\x01]*)", m)
        return found.group(1) if found else b""
    return [(tag(m, b"35"), tag(m, b"34"), tag(m, b"36") or tag(m, b"11")) for m in msgs]


@pytest.mark.parametrize("chunk", [1, 300])
def test_resend_the_same_whatever_the_chunk(tmp_path, monkeypatch, chunk):
    whole = _resent(tmp_path / "whole", 1 << 20, monkeypatch)
    assert whole == [(b"4", b"1", b"2")] + [(b"8", b"%d" % (i + 2), b"R%d" % i) for i in range(6)] + \
        [(b"4", b"8", b"9"), (b"8", b"9", b"R6")]
    assert _resent(tmp_path / "chunked", chunk, monkeypatch) == whole
