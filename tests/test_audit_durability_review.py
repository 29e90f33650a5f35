"""Review 7: the durable side of the audit trail (journal recovery, live reading, projection)."""
from __future__ import annotations

import os

import orjson
import pytest

from oms_trading.audit import journal as jmod
from oms_trading.audit.journal import (
    HLEN, Journal, JournalCorrupt, JournalReader, iter_records, list_segments,
)

T0 = 1_700_000_000_000_000_000


def ev(i: int, **kw) -> dict:
    e = {"type": "order_accepted", "ts": T0 + i * 1000, "order_id": i, "cl_ord_id": f"C{i:08d}",
         "symbol": "AAPL", "side": "1", "price": "187.25", "qty": 100, "text": None}
    e.update(kw)
    return e


def _write(d, n, **kw):
    with Journal(d, fsync="os", **kw) as j:
        recs = [j.append(ev(i)) for i in range(1, n + 1)]
    return recs


def _last_frame_offset(data: bytes) -> int:
    off = 0
    while True:
        n = int.from_bytes(data[off + 4:off + 8], "little")
        if off + HLEN + n >= len(data):
            return off
        off += HLEN + n


@pytest.mark.parametrize("fast", [False, True])
def test_reader_of_a_live_journal_is_not_fooled_by_a_write_that_completes_and_rotates(tmp_path, monkeypatch, fast):
    """A reader that saw the last frame of a segment half written (a write in progress) and then
    finds a next segment (the write completed and the writer rotated in between) must read the
    rest, not report the segment as corrupt."""
    recs = _write(tmp_path, 10, rotate_bytes=1500)
    segs = list_segments(tmp_path)
    assert len(segs) >= 2
    p1 = segs[0][1]
    full = {p: p.read_bytes() for _, p in segs}
    # the state while the writer was in the middle of the write of seg 1's last frame
    for _, p in segs[1:]:
        p.unlink()
    p1.write_bytes(full[p1][:-7])
    if fast:
        from oms_trading.audit.ingest import FastJournalReader as cls
    else:
        cls = JournalReader
    r = cls(tmp_path)
    first = [orjson.loads(p)["seq"] for p in r.read_payloads()]
    assert r.tail_bytes > 0
    real = jmod.list_segments
    done = []

    def racing_list_segments(d):
        if not done:   # between the reader's read and its look at the directory: the write ends
            done.append(1)
            for p, b in full.items():
                p.write_bytes(b)
        return real(d)

    monkeypatch.setattr(jmod, "list_segments", racing_list_segments)
    got = first
    while (c := r.read_payloads()):
        got += [orjson.loads(p)["seq"] for p in c]
    assert got == [x["seq"] for x in recs]


@pytest.mark.parametrize("field", ["check", "length"])
def test_a_damaged_header_of_an_intact_last_record_is_corruption_not_a_torn_tail(tmp_path, field):
    """A crash leaves a prefix of the last write: it never leaves a complete record whose
    SHA-256 verifies behind a header that disagrees with it. Such a header was damaged at rest;
    cutting the (acknowledged) record off as a torn tail would lose it silently."""
    _write(tmp_path, 4)
    (_, path), = list_segments(tmp_path)
    data = bytearray(path.read_bytes())
    off = _last_frame_offset(bytes(data))
    if field == "check":
        data[off + 8] ^= 0x01
    else:
        n = int.from_bytes(data[off + 4:off + 8], "little")
        data[off + 4:off + 8] = (n + 4096).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(JournalCorrupt) as ei:
        Journal(tmp_path)
    assert ei.value.seq == 4
    assert path.read_bytes() == bytes(data)   # nothing cut
    assert not list(tmp_path.glob("*.torn-*"))
