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


_CHILD = r'''
import os, signal, sys
from oms_trading.audit import journal as jmod

kill_at, native, daily, out = int(sys.argv[1]), sys.argv[2] == "1", sys.argv[3] == "1", sys.argv[5]
calls = [0]


class _Os:
    """``os`` as the journal sees it: SIGKILL at the ``kill_at``-th file operation (a write
    is first done halfway: the crash leaves a prefix of it)."""
    def __getattr__(self, name):
        real = getattr(os, name)
        if name not in ("open", "write", "fsync", "close", "ftruncate"):
            return real
        def op(*a, **k):
            calls[0] += 1
            if calls[0] == kill_at:
                if name == "write" and len(a[1]) > 1:
                    os.write(a[0], bytes(a[1])[:len(a[1]) // 2])
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*a, **k)
        return op


T0 = 1_700_000_000_000_000_000
DAY = jmod.NS_PER_DAY
j = jmod.Journal(sys.argv[4], fsync="batch", rotate_bytes=700, native=native)
jmod.os = _Os()
ack = open(out, "a")
for i in range(1, 10):
    ts = (T0 // DAY + 1 + i // 3) * DAY - 1 + i % 3 if daily else T0 + i
    j.append({"type": "order_accepted", "ts": ts, "order_id": i, "text": "x" * (i % 7) * 20})
    j.flush()
    ack.write(f"{i}\n")
    ack.flush()
jmod.os = os
j.close()
'''


@pytest.mark.parametrize("native,daily", [(False, False), (True, False), (False, True)])
def test_kill_9_at_every_file_operation_of_a_rotating_writer(tmp_path, native, daily):
    """kill -9 the writer at each os.open / write (halfway) / fsync / close of a journal that
    rotates (by size, or by UTC day with records at midnight exactly): the next open keeps
    every acknowledged record, the chain verifies, appends continue it, and the reader agrees."""
    import subprocess
    import sys

    from oms_trading.audit.chain import GENESIS_HASH, record_hash
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]))
    k = 1
    finished = False
    while not finished:
        d = tmp_path / f"j{k}"
        acks = tmp_path / f"ack{k}"
        acks.write_text("")
        p = subprocess.run([sys.executable, str(script), str(k), "1" if native else "0", "1" if daily else "0",
                            str(d), str(acks)], env=env, capture_output=True, timeout=120)
        finished = p.returncode == 0
        assert finished or p.returncode == -9, p.stderr.decode()[-2000:]
        acked = len(acks.read_text().split())
        with Journal(d, fsync="os") as j:
            assert j.last_seq >= acked, k
            last = j.last_seq
            j.append({"type": "after", "ts": T0})
        got = list(iter_records(d))
        prev = GENESIS_HASH
        for n, r in enumerate(got, 1):
            assert r["seq"] == n and r["prev_hash"] == prev and r["hash"] == record_hash(r), (k, n)
            prev = r["hash"]
        assert len(got) == last + 1
        k += 1
    assert len(list_segments(d)) >= 3
    assert k > 30


@pytest.mark.parametrize("lost", ["torn", "whole_records"])
def test_power_cut_after_a_rotation_created_the_next_segment_but_lost_the_old_ones_tail(tmp_path, lost):
    """fsync "os": a rotation fsyncs the directory (the new, empty segment is durable) but not
    the old segment, so a power cut can leave the old segment without its unsynced tail and the
    new one empty. That is the journal's torn tail, not corruption: the journal opens at the old
    segment's last whole record and goes on from there."""
    recs = _write(tmp_path, 10, rotate_bytes=1500)
    segs = list_segments(tmp_path)
    assert len(segs) >= 3
    (_, old), (_, new) = segs[-2], segs[-1]
    for _, p in segs[-1:]:
        p.write_bytes(b"")
    data = old.read_bytes()
    last_off = _last_frame_offset(data)
    old.write_bytes(data[:-7] if lost == "torn" else data[:last_off])
    keep = segs[-2][0] + sum(1 for _ in jmod._frames_in(data, last_off)) - 1
    with Journal(tmp_path, fsync="os", rotate_bytes=1500) as j:
        assert j.last_seq == keep
        assert j.last_hash == recs[keep - 1]["hash"]
        for i in range(keep + 1, 13):
            j.append(ev(i))
    got = list(iter_records(tmp_path))
    assert [r["seq"] for r in got] == list(range(1, 13))
    assert [r["hash"] for r in got[:keep]] == [r["hash"] for r in recs[:keep]]
    from oms_trading.audit.verify import verify_journal
    assert verify_journal(tmp_path).ok


@pytest.mark.parametrize("native", [False, True])
def test_untap_from_another_thread_during_a_flush_does_not_fail_the_written_flush(tmp_path, native):
    """``Projection.stop`` (``detach_journal`` -> ``Journal.untap``) runs on another thread than
    the engine's flush. An untap between the flush's look at ``_tap_on`` and its hand-over to
    the tap made ``flush`` raise AttributeError *after* the batch reached the OS: the gateway
    would treat journaled records as not journaled (and the exception is not a JournalError)."""
    j = Journal(tmp_path, fsync="os", native=native)
    j.tap()

    class _Racing(list):
        def __bool__(self):
            j.untap()       # the other thread, at the worst moment
            return True

    j.append(ev(1))
    if native:
        orig = j._native_chunks

        def chunks(*a):
            out = orig(*a)
            j._tap_pending = _Racing(j._tap_pending)
            return out
        j._native_chunks = chunks
    else:
        j._tap_pending = _Racing(j._tap_pending)
    j.flush()
    assert j.written_seq == 1
    j.append(ev(2))
    j.close()
    assert [r["seq"] for r in iter_records(tmp_path)] == [1, 2]


def test_kill_9_right_after_a_rotation_created_its_segment_goes_on_in_that_segment(tmp_path):
    recs = _write(tmp_path, 10, rotate_bytes=1500)
    (_, old), = list_segments(tmp_path)[-1:]
    nxt = old.with_name(jmod.segment_name(11))
    nxt.write_bytes(b"")    # created, nothing written yet
    with Journal(tmp_path, fsync="os", rotate_bytes=1500) as j:
        assert j.last_seq == 10 and j.last_hash == recs[-1]["hash"]
        j.append(ev(11))
    assert nxt.stat().st_size > 0 and list_segments(tmp_path)[-1][1] == nxt
    assert [r["seq"] for r in iter_records(tmp_path)] == list(range(1, 12))
