"""Journal: framing, hash chain, recovery of a torn tail, corruption, rotation, write failures."""
from __future__ import annotations

import errno
import logging
import os
import types

import orjson
import pytest

from oms_trading.audit import journal as jmod
from oms_trading.audit.chain import GENESIS_HASH, canonical_bytes, record_hash
from oms_trading.audit.journal import (
    HLEN, NS_PER_DAY, Journal, JournalCorrupt, JournalError, JournalReader, JournalRecordError,
    JournalWriteError, iter_records, list_segments, split_payload,
)

T0 = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z


def ev(i: int, **kw) -> dict:
    e = {"type": "order_accepted", "ts": T0 + i * 1000, "order_id": i, "cl_ord_id": f"C{i:08d}",
         "symbol": "AAPL", "side": "1", "price": "187.25", "qty": 100, "text": None}
    e.update(kw)
    return e


def check_chain(records: list[dict]) -> None:
    prev = GENESIS_HASH
    for n, r in enumerate(records, 1):
        assert r["seq"] == n
        assert r["prev_hash"] == prev
        assert r["hash"] == record_hash(r)
        prev = r["hash"]


def test_canonical_bytes_and_hash():
    # the record's JSON in its own key order, None as null, without the hash key
    r = {"seq": 1, "type": "x", "b": None, "a": 2, "prev_hash": GENESIS_HASH, "hash": "zz"}
    assert canonical_bytes(r) == b'{"seq":1,"type":"x","b":null,"a":2,"prev_hash":"' + GENESIS_HASH.encode() + b'"}'
    h = record_hash(r)
    assert len(h) == 64 and h == record_hash({k: v for k, v in r.items() if k != "hash"})
    assert record_hash(r, "1" * 64) != h
    # key order and null keys are part of the hashed bytes
    assert record_hash({k: v for k, v in r.items() if v is not None}) != h
    assert record_hash(dict(sorted(r.items()))) != h


def test_old_sorted_journal_still_reads_and_verifies(tmp_path):
    """A journal written with the previous encoding (sorted keys, no None values) stays valid."""
    import hashlib
    import zlib
    from oms_trading.audit.verify import verify_journal
    prev = GENESIS_HASH
    out = bytearray()
    for seq in range(1, 6):
        rec = {k: v for k, v in ev(seq).items() if v is not None}
        rec["seq"], rec["prev_hash"] = seq, prev
        body = orjson.dumps(rec, option=orjson.OPT_SORT_KEYS)
        h = hashlib.sha256(body).hexdigest()
        payload = body[:-1] + b',"hash":"' + h.encode() + b'"}'
        out += jmod.HEADER.pack(jmod.MAGIC, len(payload), zlib.crc32(payload), seq) + payload
        prev = h
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / jmod.segment_name(1)).write_bytes(bytes(out))
    r = verify_journal(tmp_path)
    assert r.ok and r.checked_journal == 5, r
    with Journal(tmp_path, fsync="os") as j:
        assert (j.last_seq, j.last_hash) == (5, prev)
        j.append(ev(6))
    r = verify_journal(tmp_path)
    assert r.ok and r.checked_journal == 6, r
    check_chain(list(iter_records(tmp_path)))


def test_round_trip(tmp_path):
    with Journal(tmp_path, fsync="batch") as j:
        out = [j.append(ev(i)) for i in range(1, 101)]
        j.flush()
        assert j.last_seq == 100 and j.last_hash == out[-1]["hash"]
    assert out[0]["prev_hash"] == GENESIS_HASH and out[0]["seq"] == 1
    assert out[0]["text"] is None  # the returned record keeps the event's keys
    recs = list(iter_records(tmp_path))
    assert len(recs) == 100
    check_chain(recs)
    assert recs[0] == out[0]  # exactly what append returned, None values included
    assert [r["seq"] for r in iter_records(tmp_path, from_seq=97)] == [97, 98, 99, 100]
    # reopen restores the chain head; appends continue
    with Journal(tmp_path) as j:
        assert (j.last_seq, j.last_hash) == (100, recs[-1]["hash"])
        r = j.append(ev(101))
        assert r["seq"] == 101 and r["prev_hash"] == recs[-1]["hash"]
    check_chain(list(iter_records(tmp_path)))


def test_payload_layout(tmp_path):
    with Journal(tmp_path, fsync="os") as j:
        r = j.append(ev(1, hash="ignored", seq=99))
    assert r["seq"] == 1 and r["hash"] != "ignored"
    (_, path), = list_segments(tmp_path)
    data = path.read_bytes()
    payload = data[HLEN:]
    hashed, h = split_payload(payload)
    assert hashed == canonical_bytes(r) and h == r["hash"]
    assert orjson.loads(payload) == r and payload == orjson.dumps(r)


@pytest.mark.parametrize("native", [False, True])
@pytest.mark.parametrize("bad", [1.5, True, [1], (1,), {"a": 1}, b"x"])
def test_rejects_values_outside_contract(tmp_path, bad, native):
    """The pure-Python path refuses a bad value at ``append``; the native path refuses it at
    ``append`` when orjson cannot encode it (bytes) and else at ``flush`` with the whole batch
    (a JournalRecordError, also a TypeError). Either way nothing of it is written and the
    journal goes on from its last written record."""
    with Journal(tmp_path, fsync="os", native=native) as j:
        j.append(ev(1))
        j.flush()
        j.append(ev(2))
        try:
            j.append(ev(3, qty=bad))
        except TypeError:
            assert not native or type(bad) is bytes
            assert j.last_seq == 2
            kept = 2
        else:
            assert native and type(bad) is not bytes
            with pytest.raises(JournalRecordError) as ei:
                j.flush()
            e = ei.value
            assert isinstance(e, TypeError) and isinstance(e, JournalError)
            assert (e.seq, e.key, e.last_seq) == (3, "qty", 1)
            assert "seq 3" in str(e) and "'qty'" in str(e) and "continues from seq 2" in str(e)
            assert j.last_seq == j.written_seq == 1
            kept = 1
        assert j.append(ev(kept + 1))["seq"] == kept + 1
    with Journal(tmp_path, fsync="os", native=native) as j:
        assert j.last_seq == kept + 1
        with pytest.raises(TypeError):
            j.append(ev(3, qty=2**64))  # does not fit 64 bits
        with pytest.raises(TypeError):
            j.append({1: "x", "type": "x"})  # non-str key
        assert j.last_seq == kept + 1
    check_chain(list(iter_records(tmp_path)))


def test_unflushed_records_are_not_written(tmp_path):
    j = Journal(tmp_path, fsync="os")
    j.append(ev(1))
    j.flush()
    j.append(ev(2))
    assert [r["seq"] for r in iter_records(tmp_path)] == [1]
    j.close()  # close flushes
    assert [r["seq"] for r in iter_records(tmp_path)] == [1, 2]


def test_single_writer(tmp_path):
    with Journal(tmp_path):
        with pytest.raises(JournalError):
            Journal(tmp_path)


def _write(tmp_path, n, **kw):
    with Journal(tmp_path, fsync="os", **kw) as j:
        recs = [j.append(ev(i)) for i in range(1, n + 1)]
    return recs


def test_torn_tail_every_offset(tmp_path, caplog):
    recs = _write(tmp_path, 4)
    (_, path), = list_segments(tmp_path)
    data = path.read_bytes()
    last_len = len(orjson.dumps(recs[-1])) + HLEN
    start = len(data) - last_len
    for cut in range(start, len(data)):
        path.write_bytes(data[:cut])
        for p in tmp_path.glob("*.torn-*"):
            p.unlink()
        with caplog.at_level(logging.WARNING):
            with Journal(tmp_path, fsync="os") as j:
                assert j.last_seq == 3, cut
                assert j.last_hash == recs[2]["hash"]
                j.append(ev(99))
        got = list(iter_records(tmp_path))
        assert [r["seq"] for r in got] == [1, 2, 3, 4]
        check_chain(got)
        assert got[3]["order_id"] == 99
        if cut > start:
            assert "torn tail" in caplog.text
            assert len(list(tmp_path.glob("*.torn-*"))) == 1
        caplog.clear()


def test_torn_tail_bad_crc_and_zeros(tmp_path):
    recs = _write(tmp_path, 3)
    (_, path), = list_segments(tmp_path)
    data = bytearray(path.read_bytes())
    good = bytes(data)
    data[-5] ^= 0xFF  # last record complete but corrupt: a torn write, cut off
    path.write_bytes(bytes(data))
    with Journal(tmp_path, fsync="os") as j:
        assert j.last_seq == 2 and j.last_hash == recs[1]["hash"]
    # the file was extended with zeros but the data never made it
    path.write_bytes(good + bytes(300))
    with Journal(tmp_path, fsync="os") as j:
        assert j.last_seq == 3
    assert path.read_bytes() == good


def test_reader_ignores_incomplete_tail(tmp_path):
    _write(tmp_path, 3)
    (_, path), = list_segments(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:-7])
    r = JournalReader(tmp_path)
    assert len(r.read_payloads()) == 2 and r.tail_bytes > 0
    path.write_bytes(data)  # the writer finished
    assert len(r.read_payloads()) == 1 and r.next_seq == 4


@pytest.mark.parametrize("where", ["crc", "magic", "seq"])
def test_mid_file_corruption_raises(tmp_path, where):
    recs = _write(tmp_path, 5)
    (_, path), = list_segments(tmp_path)
    data = bytearray(path.read_bytes())
    # offset of record 3
    off = 0
    for _ in range(2):
        n = int.from_bytes(data[off + 4:off + 8], "little")
        off += HLEN + n
    if where == "crc":
        data[off + HLEN + 10] ^= 0x01
    elif where == "magic":
        data[off] = ord("X")
    else:
        data[off + 12:off + 20] = (7).to_bytes(8, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(JournalCorrupt) as ei:
        Journal(tmp_path)
    assert ei.value.file == str(path) and ei.value.offset == off and ei.value.seq == 3
    assert str(path) in str(ei.value) and f"offset {off}" in str(ei.value)
    with pytest.raises(JournalCorrupt):
        list(iter_records(tmp_path))
    assert path.read_bytes() == bytes(data)  # nothing was cut


def test_corrupt_tail_of_non_last_segment_raises(tmp_path):
    _write(tmp_path, 30, rotate_bytes=2000)
    segs = list_segments(tmp_path)
    assert len(segs) >= 3
    p = segs[0][1]
    p.write_bytes(p.read_bytes()[:-3])
    with pytest.raises(JournalCorrupt):
        Journal(tmp_path)


def test_rotation_by_size_keeps_chain(tmp_path):
    recs = _write(tmp_path, 50, rotate_bytes=1500)
    segs = list_segments(tmp_path)
    assert len(segs) > 5
    for _, p in segs:
        assert p.stat().st_size <= 1500
    got = list(iter_records(tmp_path))
    check_chain(got)
    assert [r["hash"] for r in got] == [r["hash"] for r in recs]
    assert [s for s, _ in segs] == sorted(s for s, _ in segs)
    # reopen and continue across segments
    with Journal(tmp_path, fsync="os", rotate_bytes=1500) as j:
        assert j.last_seq == 50
        for i in range(51, 61):
            j.append(ev(i))
    check_chain(list(iter_records(tmp_path)))
    assert [r["seq"] for r in iter_records(tmp_path, from_seq=45)] == list(range(45, 61))


def test_rotation_by_utc_day_uses_record_ts(tmp_path):
    day0 = (T0 // NS_PER_DAY + 1) * NS_PER_DAY  # a UTC midnight
    with Journal(tmp_path, fsync="os") as j:
        for k, ts in enumerate([day0 - 2, day0 - 1, day0, day0 + 5, day0 + NS_PER_DAY, day0 + NS_PER_DAY]):
            j.append({"type": "clock", "ts": ts, "k": k})
            j.flush()
    assert [s for s, _ in list_segments(tmp_path)] == [1, 3, 5]
    check_chain(list(iter_records(tmp_path)))
    # a restart on the same day continues the last segment; a later day opens a new one
    with Journal(tmp_path, fsync="os") as j:
        j.append({"type": "clock", "ts": day0 + NS_PER_DAY + 7})
        j.flush()
        assert [s for s, _ in list_segments(tmp_path)] == [1, 3, 5]
        j.append({"type": "clock", "ts": day0 + 2 * NS_PER_DAY})
    assert [s for s, _ in list_segments(tmp_path)] == [1, 3, 5, 8]
    check_chain(list(iter_records(tmp_path)))


def test_rotation_inside_one_flush(tmp_path):
    with Journal(tmp_path, fsync="batch", rotate_bytes=1200) as j:
        for i in range(1, 21):
            j.append(ev(i))
        j.flush()  # one flush spanning several segments
    assert len(list_segments(tmp_path)) > 3
    check_chain(list(iter_records(tmp_path)))


class _FailingWrite:
    """os.write that fails (or writes ``partial`` bytes and then fails) ``times`` times."""

    def __init__(self, monkeypatch, err=errno.ENOSPC, times=1, partial=0):
        self.real = os.write
        self.err, self.times, self.partial = err, times, partial
        monkeypatch.setattr(jmod.os, "write", self)

    def __call__(self, fd, data):
        if self.times > 0:
            if self.partial:
                n = self.real(fd, bytes(data[:self.partial]))
                self.partial = 0
                return n
            self.times -= 1
            raise OSError(self.err, os.strerror(self.err))
        return self.real(fd, data)


@pytest.mark.parametrize("policy", ["batch", "interval", "os"])
def test_write_failure_rolls_back_and_recovers(tmp_path, monkeypatch, policy):
    j = Journal(tmp_path, fsync=policy)
    for i in range(1, 4):
        j.append(ev(i))
    j.flush()
    head = j.last_hash
    _FailingWrite(monkeypatch, errno.ENOSPC)
    for i in range(4, 7):
        j.append(ev(i))
    with pytest.raises(JournalWriteError) as ei:
        j.flush()
    assert "ENOSPC" in str(ei.value) and ei.value.last_seq == 3 and ei.value.errno == errno.ENOSPC
    assert (j.last_seq, j.last_hash) == (3, head)
    # space is back: trading resumes with no gap
    r = j.append(ev(7))
    assert r["seq"] == 4 and r["prev_hash"] == head
    j.flush()
    j.close()
    got = list(iter_records(tmp_path))
    assert [g["order_id"] for g in got] == [1, 2, 3, 7]
    check_chain(got)


def test_partial_write_then_failure_cuts_the_whole_batch(tmp_path, monkeypatch):
    """Whole records of the failed write are cut too: the gateway refuses every command of
    the batch, so none may stay journaled (tests/test_faults_disk_full.py shows why)."""
    j = Journal(tmp_path, fsync="os")
    j.append(ev(1))
    j.flush()
    recs = [j.append(ev(i)) for i in range(2, 6)]
    frame2 = HLEN + len(orjson.dumps(recs[0]))
    _FailingWrite(monkeypatch, errno.EIO, partial=frame2 + 11)  # record 2 and 11 bytes of 3
    with pytest.raises(JournalWriteError) as ei:
        j.flush()
    assert j.last_seq == 1 and ei.value.last_seq == 1
    assert j.append(ev(9))["seq"] == 2
    j.close()
    got = list(iter_records(tmp_path))
    assert [g["order_id"] for g in got] == [1, 9]
    check_chain(got)
    with Journal(tmp_path) as j2:
        assert j2.last_seq == 2


def test_failure_at_segment_switch(tmp_path, monkeypatch):
    j = Journal(tmp_path, fsync="os", rotate_bytes=1200)
    n = 0
    while len(list_segments(tmp_path)) < 2:
        n += 1
        j.append(ev(n))
        j.flush()
    real_open = os.open
    calls = {"n": 0}

    def failing_open(path, flags, *a):
        if str(path).endswith(".log") and flags & os.O_CREAT and calls["n"] == 0:
            calls["n"] += 1
            raise OSError(errno.EACCES, "Permission denied")
        return real_open(path, flags, *a)

    monkeypatch.setattr(jmod.os, "open", failing_open)
    before = j.last_seq
    with pytest.raises(JournalWriteError):
        for i in range(40):
            n += 1
            j.append(ev(n))
            j.flush()
    assert j.last_seq < before + 40
    for i in range(10):
        n += 1
        j.append(ev(n))
        j.flush()
    j.close()
    check_chain(list(iter_records(tmp_path)))
    with Journal(tmp_path) as j2:
        assert j2.last_seq == j.last_seq


@pytest.mark.parametrize("native", [False, True])
@pytest.mark.parametrize("fail_chunk", [1, 2])
def test_batch_failing_after_a_rotation_is_cut_from_every_segment(tmp_path, monkeypatch, native, fail_chunk):
    """One flush spans segments and a later segment's write fails: the records the batch wrote
    into the earlier segments are cut too (the first truncated, the ones it started deleted), so
    the journal holds none of the refused batch -- the gateway refuses every command of it, and a
    command kept would come back to life when the engine rebuilds from the journal."""
    j = Journal(tmp_path, fsync="os", rotate_bytes=1200, native=native)
    for i in range(1, 3):
        j.append(ev(i))
    j.flush()
    before = (j.last_seq, j.last_hash)
    segments_before = list_segments(tmp_path)
    size_before = segments_before[-1][1].stat().st_size
    j.watermark = types.SimpleNamespace(value=before[0])     # what the projection process may read

    real = os.write
    calls = {"n": 0}

    def write(fd, data):          # the batch's chunk ``fail_chunk`` (0-based) fails
        calls["n"] += 1
        if calls["n"] == fail_chunk + 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)
    for i in range(3, 40):        # ~8 records per 1,200-byte segment: several segments
        j.append(ev(i))
    monkeypatch.setattr(jmod.os, "write", write)
    with pytest.raises(JournalWriteError) as ei:
        j.flush()
    monkeypatch.setattr(jmod.os, "write", real)
    assert ei.value.last_seq == before[0] and (j.last_seq, j.last_hash) == before
    assert j.watermark.value == before[0]
    assert list_segments(tmp_path) == segments_before
    assert segments_before[-1][1].stat().st_size == size_before
    assert [r["order_id"] for r in iter_records(tmp_path)] == [1, 2]
    # the journal goes on from there, across segments again
    for i in range(50, 70):
        j.append(ev(i))
    j.flush()
    j.close()
    got = list(iter_records(tmp_path))
    assert [r["order_id"] for r in got] == [1, 2, *range(50, 70)]
    check_chain(got)
    with Journal(tmp_path) as j2:
        assert j2.last_seq == 22


def test_interval_fsync_thread(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(jmod.os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    j = Journal(tmp_path, fsync="interval", fsync_interval_ms=1)
    j.append(ev(1))
    j.flush()
    import time
    deadline = time.time() + 5
    while not synced and time.time() < deadline:
        time.sleep(0.005)
    assert synced
    j.close()
    assert j._thread is None


def test_empty_directory_and_reopen_empty(tmp_path):
    d = tmp_path / "j"
    with Journal(d) as j:
        assert (j.last_seq, j.last_hash) == (0, GENESIS_HASH)
        assert j.directory == d
    assert list(iter_records(d)) == []
    with Journal(d) as j:
        assert j.append(ev(1))["seq"] == 1


def test_tampered_last_record_refuses_to_open(tmp_path):
    import zlib
    _write(tmp_path, 3)
    (_, path), = list_segments(tmp_path)
    data = bytearray(path.read_bytes())
    off = 0
    for _ in range(2):
        off += HLEN + int.from_bytes(data[off + 4:off + 8], "little")
    n = int.from_bytes(data[off + 4:off + 8], "little")
    payload = bytes(data[off + HLEN:off + HLEN + n]).replace(b'"qty":100', b'"qty":900')
    data[off + HLEN:] = payload
    # the header's check made to match the edited bytes: not a torn write but an edit
    data[off + 8:off + 12] = jmod.frame_check(payload).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(JournalCorrupt) as ei:
        Journal(tmp_path)
    assert ei.value.seq == 3


def test_corrupt_length_mid_file_is_not_mistaken_for_a_torn_tail(tmp_path):
    _write(tmp_path, 6)
    (_, path), = list_segments(tmp_path)
    data = bytearray(path.read_bytes())
    off = 0
    for _ in range(2):
        off += HLEN + int.from_bytes(data[off + 4:off + 8], "little")
    data[off + 4:off + 8] = (10**6).to_bytes(4, "little")  # record 3 claims to run past EOF
    path.write_bytes(bytes(data))
    with pytest.raises(JournalCorrupt) as ei:
        Journal(tmp_path)
    assert ei.value.seq == 3
    assert path.read_bytes() == bytes(data)  # nothing cut
    with pytest.raises(JournalCorrupt):
        list(iter_records(tmp_path))  # a reader does not wait forever for "the rest" either


def test_reader_frame_larger_than_chunk(tmp_path):
    with Journal(tmp_path, fsync="os") as j:
        j.append(ev(1))
        j.append(ev(2, text="x" * 300_000))
        j.append(ev(3))
    r = JournalReader(tmp_path, chunk_bytes=4096)
    got = []
    while (c := r.read_payloads(10)):
        got.extend(orjson.loads(p)["seq"] for p in c)
    assert got == [1, 2, 3]


def test_frames_are_sha_checked_and_a_garbled_hash_field_is_a_torn_tail(tmp_path):
    """``append`` writes b'OMSH' frames: the record's SHA-256 is the frame's checksum (no CRC).
    At the tail, a hash field garbled by a cut-short write is cut off like any torn write."""
    recs = _write(tmp_path, 3)
    (_, path), = list_segments(tmp_path)
    data = bytearray(path.read_bytes())
    assert data[:4] == jmod.MAGIC_SHA
    off = 0
    for _ in range(2):
        off += HLEN + int.from_bytes(data[off + 4:off + 8], "little")
    n = int.from_bytes(data[off + 4:off + 8], "little")
    payload = bytes(data[off + HLEN:off + HLEN + n])
    assert int.from_bytes(data[off + 8:off + 12], "little") == jmod.frame_check(payload)
    data[-10:-2] = bytes(8)   # zeros where the end of the hash was
    path.write_bytes(bytes(data))
    with Journal(tmp_path, fsync="os") as j:
        assert (j.last_seq, j.last_hash) == (2, recs[1]["hash"])
    assert len(list(tmp_path.glob("*.torn-*"))) == 1


def test_old_crc_frames_and_new_frames_mix_in_one_segment(tmp_path):
    """A segment that starts with b'OMSJ' (CRC-32) frames continues with b'OMSH' frames."""
    import zlib
    from oms_trading.audit.verify import verify_journal
    rec = dict(ev(1), seq=1, prev_hash=GENESIS_HASH)
    body = orjson.dumps(rec)
    import hashlib
    h = hashlib.sha256(body).hexdigest()
    payload = body[:-1] + b',"hash":"' + h.encode() + b'"}'
    assert jmod.frame_check(payload, jmod.MAGIC) == zlib.crc32(payload)
    (tmp_path / jmod.segment_name(1)).write_bytes(jmod.HEADER.pack(jmod.MAGIC, len(payload),
                                                                   zlib.crc32(payload), 1) + payload)
    with Journal(tmp_path, fsync="os") as j:
        assert j.last_hash == h
        j.append(ev(2))
    data = (tmp_path / jmod.segment_name(1)).read_bytes()
    assert data[:4] == jmod.MAGIC and data[HLEN + len(payload):HLEN + len(payload) + 4] == jmod.MAGIC_SHA
    assert verify_journal(tmp_path).ok
    assert [r["seq"] for r in iter_records(tmp_path)] == [1, 2]


def test_read_ndjson_gives_the_payloads_as_newline_delimited_json(tmp_path):
    """``read_ndjson`` (the projection's catch-up) returns the same records as ``read_payloads``,
    across segments and from any seq, with the frame headers turned into JSON whitespace."""
    _write(tmp_path, 40, rotate_bytes=3000)
    assert len(list_segments(tmp_path)) > 3
    want = [orjson.loads(p) for p in JournalReader(tmp_path).read_payloads(1000)]
    r = JournalReader(tmp_path, from_seq=5)
    got = []
    while True:
        n, blob = r.read_ndjson(7)
        if not n:
            break
        lines = [ln for ln in bytes(blob).split(b"\n") if ln.strip()]
        assert len(lines) == n
        got += [orjson.loads(ln) for ln in lines]
    assert got == want[4:]


@pytest.mark.parametrize("native", [False, True])
def test_records_appended_while_a_partial_write_cannot_be_cut_never_reach_the_journal(tmp_path, monkeypatch, native):
    """A failed write leaves a partial frame and its truncate fails too: every flush until the
    truncate works refuses its batch (JournalWriteError), and those records are discarded, so
    the journal never holds a record whose command was refused."""
    j = Journal(tmp_path, fsync="os", native=native)
    j.append(ev(1))
    j.flush()
    recs = [j.append(ev(i)) for i in range(2, 4)]
    _FailingWrite(monkeypatch, errno.EIO, partial=HLEN + len(orjson.dumps(recs[0])) + 5)
    real_truncate = os.ftruncate
    fails = {"n": 2}

    def ftruncate(fd, size):
        if fails["n"]:
            fails["n"] -= 1
            raise OSError(errno.EIO, "I/O error")
        return real_truncate(fd, size)

    monkeypatch.setattr(jmod.os, "ftruncate", ftruncate)
    with pytest.raises(JournalWriteError):
        j.flush()                              # record 2 and part of 3 reached the OS; could not be cut
    assert j.last_seq == 1                     # the whole batch is refused, 2 with it
    j.append(ev(50))
    with pytest.raises(JournalWriteError):
        j.flush()                              # the truncate fails again: record 50 is refused
    assert j.last_seq == 1
    j.append(ev(60))
    j.flush()                                  # the truncate works: 60 goes on after 1
    j.close()
    got = list(iter_records(tmp_path))
    assert [g["order_id"] for g in got] == [1, 60]
    check_chain(got)


@pytest.mark.parametrize("native", [False, True])
def test_new_segment_with_data_in_it_fails_the_flush_cleanly(tmp_path, native):
    """A file already sitting at the next segment's name (left by something else) is not
    appended to: the flush fails with JournalWriteError, the journal rolls back to what reached
    the OS, and goes on once the file is moved away."""
    j = Journal(tmp_path, fsync="os", rotate_bytes=1200, native=native)
    n = 0
    while len(list_segments(tmp_path)) < 2:
        n += 1
        j.append(ev(n))
        j.flush()
    squatters = [tmp_path / jmod.segment_name(s) for s in range(j.last_seq + 1, j.last_seq + 60)]
    for path in squatters:
        path.write_bytes(b"not ours")
    head = (j.last_seq, j.last_hash)
    with pytest.raises(JournalWriteError):
        for _ in range(50):
            n += 1
            j.append(ev(n))
            j.flush()
            head = (j.last_seq, j.last_hash)
    assert (j.last_seq, j.last_hash) == head        # back to the last record that reached the OS
    for path in squatters:
        path.unlink()
    n += 1
    assert j.append(ev(n))["seq"] == head[0] + 1
    j.flush()
    j.close()
    got = list(iter_records(tmp_path))
    assert got[-1]["order_id"] == n and got[-1]["seq"] == head[0] + 1
    check_chain(got)
