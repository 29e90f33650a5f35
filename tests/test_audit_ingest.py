"""The compiled journal -> Arrow path (``audit.ingest``) against the reference path.

The reference is ``JournalReader`` (Python frame walk, SHA-256 per frame) and, per row,
``projection._payloads_to_arrow_py`` (``record_to_row``: ``details`` filled, types checked). The
fast path must give the same frames, the same errors and torn-tail handling, and the same table
row for row, on any journal: odd records, unicode, escapes, None values, ints at and beyond the
column ranges, keys that are not columns, torn tails, old CRC frames."""
from __future__ import annotations

import hashlib
import zlib

import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from oms_trading.audit import ingest
from oms_trading.audit import journal as jmod
from oms_trading.audit.chain import GENESIS_HASH
from oms_trading.audit.ingest import FastJournalReader, frames_to_arrow, fast_scan
from oms_trading.audit.journal import HLEN, Journal, JournalCorrupt, JournalReader, list_segments
from oms_trading.audit.projection import (TABLE, Projection, _payloads_to_arrow_py, ndjson_to_arrow)
from oms_trading.audit.schema import COLUMN_NAMES
from oms_trading.audit.verify import verify


def ev(i: int, **kw) -> dict:
    e = {"type": "order_received", "ts": 1_700_000_000_000_000_000 + i, "order_id": i,
         "cl_ord_id": f"C{i}", "account": "ACC1", "symbol": "AAPL", "side": "1", "qty": 100,
         "price": "187.25", "text": None}
    e.update(kw)
    return e


def read_all_fast(jdir, batch=1000, **kw) -> pa.Table | None:
    r = FastJournalReader(jdir, **kw)
    parts = []
    while (t := r.read_arrow(batch)) is not None:
        parts.append(t)
    return pa.concat_tables(parts) if parts else None


def read_all_ref(jdir, batch=1000, **kw) -> pa.Table | None:
    r = JournalReader(jdir, **kw)
    parts = []
    while True:
        n, blob = r.read_ndjson(batch)
        if not n:
            break
        parts.append(ndjson_to_arrow(blob, n))
    return pa.concat_tables(parts) if parts else None


def rows_ref(jdir) -> list[dict]:
    """The spec: each payload through the reference per-record conversion."""
    payloads = [bytes(p) for p in jmod.iter_payloads(jdir)]
    return _payloads_to_arrow_py(payloads).to_pylist() if payloads else []


def write_raw(jdir, bodies: list[bytes], magic: bytes = jmod.MAGIC_SHA, start_seq: int = 1,
              prev: str = GENESIS_HASH) -> list[bytes]:
    """A segment of frames whose payload bodies are given as JSON text *without* the trailing
    ``,"seq":..,"prev_hash":..}``: chained, hashed and framed as ``Journal.append`` does."""
    jdir.mkdir(parents=True, exist_ok=True)
    out = bytearray()
    payloads = []
    for k, body in enumerate(bodies):
        seq = start_seq + k
        sep = b"" if body == b"{" else b","
        hashed = body + sep + b'"seq":%d,"prev_hash":"%s"}' % (seq, prev.encode())
        d = hashlib.sha256(hashed).digest()
        payload = hashed[:-1] + b',"hash":"' + d.hex().encode() + b'"}'
        check = d[:4] if magic == jmod.MAGIC_SHA else zlib.crc32(payload).to_bytes(4, "little")
        out += jmod._HEADER_SHA.pack(magic, len(payload), check, seq) + payload
        payloads.append(payload)
        prev = d.hex()
    (jdir / jmod.segment_name(start_seq)).write_bytes(bytes(out))
    return payloads


# -- same table as the reference

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_value = st.one_of(st.none(), st.integers(min_value=-(2**63), max_value=2**64 - 1),
                   st.integers(min_value=-(2**31) - 2, max_value=2**31 + 1), _text)
_keys = st.one_of(st.sampled_from([c for c in COLUMN_NAMES if c not in ("seq", "prev_hash", "hash")]), _text)
_plain = st.fixed_dictionaries({"type": st.sampled_from(["order_received", "order_filled"]),
                                "ts": st.integers(0, 2**63 - 1), "order_id": st.integers(-(2**63), 2**63 - 1),
                                "cl_ord_id": _text, "text": st.one_of(st.none(), _text),
                                "rej_reason": st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1))})


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(st.one_of(_plain, st.dictionaries(_keys, _value, max_size=10)), min_size=1, max_size=30),
       batch=st.sampled_from([1, 3, 1000]))
def test_random_journals_give_the_reference_table(tmp_path_factory, events, batch):
    jdir = tmp_path_factory.mktemp("ing") / "journal"
    with Journal(jdir, fsync="os", rotate_bytes=4000) as j:
        for e in events:
            j.append(e)
    fast = read_all_fast(jdir, batch)
    ref = read_all_ref(jdir, batch)
    assert fast.schema == ref.schema
    assert fast.to_pylist() == ref.to_pylist() == rows_ref(jdir)
    fast.validate(full=True)


def test_odd_values(tmp_path):
    jdir = tmp_path / "journal"
    odd = [
        ev(1, text='quote " backslash \\ slash / nl \n tab \t cr \r bs \b ff \f nul \x00 \x1f \x7f'),
        ev(2, text="caf\u00e9 \u20ac \U0001F600 \u0800 \uffff \U00010000 \U0010FFFF", cl_ord_id="\u00e9"),
        ev(3, order_id=-(2**63), qty=2**63 - 1, rej_reason=-(2**31), trade_id=0, cum_qty=-1),
        ev(4, order_id=2**63, rej_reason=2**31),          # beyond BIGINT / INTEGER: details
        ev(5, rej_reason=2**31 - 1, text=""),
        ev(6, order_id="12", qty="x", symbol=5),          # wrong types: details
        ev(7, extra="kept", nested_none=None, **{"": "empty key", "ключ": "значение"}),
        ev(8, text=None, account=None),
        ev(9, details="a key named details"),
        ev(10, price="1" * 5000),
        {"seq": 777, "type": "seq key first (the journal sets its value in place)"},
        {},
    ]
    with Journal(jdir, fsync="os") as j:
        for e in odd:
            j.append(e)
        for i in range(11, 200):
            j.append(ev(i))
    fast = read_all_fast(jdir, 7)
    assert fast.to_pylist() == read_all_ref(jdir, 7).to_pylist() == rows_ref(jdir)
    fast.validate(full=True)
    got = fast.to_pylist()
    assert got[0]["text"].endswith("\x7f") and got[1]["text"].startswith("café")
    assert got[2]["order_id"] == -(2**63) and got[2]["rej_reason"] == -(2**31)
    assert got[3]["order_id"] is None and orjson.loads(got[3]["details"]) == {"order_id": 2**63, "rej_reason": 2**31}
    assert got[4]["text"] == ""


@pytest.mark.parametrize("body", [
    b'{"type":"x","ts":1.5',                 # float
    b'{"type":"x","ts":1e3',
    b'{"type":true',                         # bool
    b'{"type":"x","order_id":[1,2]',         # array
    b'{"type":"x","text":{"a":1}',           # object
    b'{"type":"x","order_id":01',            # not JSON: the reference raises, so must we
    b'{"type":"x", "order_id":1',            # whitespace
    b'{"type":"x","type":"y"',               # duplicate key (last wins in the reference)
    b'{"type":"\\ud83d\\ude00"',             # escaped surrogate pair
    b'{"type":"\\u00e9\\u0800\\u0041"',      # \\u escapes of 2- and 3-byte characters
    b'{"t\\u0079pe":"escaped key"',
    b'{"order_id":-0',
    b'{"order_id":-9223372036854775809',
    b'{"order_id":-9223372036854775808',
    b'{"order_id":9223372036854775807',
    b'{"order_id":18446744073709551615',
    b'{"order_id":184467440737095516150',
    b'{"type":"\xe9"',                       # invalid UTF-8
    b'{"type":"\xed\xa0\x80"',               # UTF-8 of a surrogate
    b'{"type":"\xf0\x9f\x98\x80"',           # valid 4-byte UTF-8
    b'{',                                    # only the journal's keys
])
def test_hand_written_payloads(tmp_path, body):
    jdir = tmp_path / "journal"
    plain = [b'{"type":"order_received","ts":%d,"order_id":%d' % (i, i) for i in range(5)]
    payloads = write_raw(jdir, plain + [body] + plain)
    try:
        want = _payloads_to_arrow_py(payloads).to_pylist()
    except Exception as exc:  # the reference refuses the batch: so does the fast path
        with pytest.raises(type(exc)):
            read_all_fast(jdir)
        return
    fast = read_all_fast(jdir)
    assert fast.to_pylist() == want
    fast.validate(full=True)


# -- frames: same records, same errors, same torn tails


def _frames(reader_cls, jdir, batch=10, **kw):
    """What a reader gives: the payloads, then the tail or the error it stopped at."""
    r = reader_cls(jdir, **kw)
    got = []
    try:
        while (c := r.read_payloads(batch)):
            got.extend(bytes(p) for p in c)
    except JournalCorrupt as e:
        return got, "error", str(e), e.offset, e.seq
    return got, r.tail_bytes, r.next_seq


def test_torn_tail_every_offset(tmp_path):
    jdir = tmp_path / "journal"
    with Journal(jdir, fsync="os") as j:
        recs = [j.append(ev(i)) for i in range(1, 6)]
    (_, path), = list_segments(jdir)
    data = path.read_bytes()
    last = len(orjson.dumps(recs[-1])) + HLEN
    for cut in range(len(data) - last - 3, len(data) + 1):
        path.write_bytes(data[:cut])
        a = _frames(FastJournalReader, jdir)
        assert a == _frames(JournalReader, jdir), cut
        assert a[1] != "error"
        t = read_all_fast(jdir)
        assert t.num_rows == (5 if cut == len(data) else 4 if cut >= len(data) - last else 3)
    # a garbled hash field or a flipped byte in the last record: the same answer from both (a
    # reader leaves complete-but-bad frames to the writer's open, which cuts a torn tail)
    for pos in (len(data) - 10, len(data) - 100, len(data) - last + 3, len(data) - last + 9):
        bad = bytearray(data)
        bad[pos] ^= 0x55
        path.write_bytes(bytes(bad))
        for batch in (1, 4, 10):
            assert _frames(FastJournalReader, jdir, batch) == _frames(JournalReader, jdir, batch)


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("where", ["payload", "hash", "check", "magic", "seq", "length"])
def test_mid_file_corruption_raises_the_same(tmp_path, monkeypatch, native, where):
    if not native:
        monkeypatch.setattr(ingest, "HAVE_NATIVE_SHA", False)
    jdir = tmp_path / "journal"
    with Journal(jdir, fsync="os") as j:
        for i in range(1, 8):
            j.append(ev(i))
    (_, path), = list_segments(jdir)
    data = bytearray(path.read_bytes())
    off = 0
    for _ in range(3):
        off += HLEN + int.from_bytes(data[off + 4:off + 8], "little")
    n = int.from_bytes(data[off + 4:off + 8], "little")
    if where == "payload":
        data[off + HLEN + 10] ^= 0x01
    elif where == "hash":
        data[off + HLEN + n - 5] ^= 0x01
    elif where == "check":
        data[off + 9] ^= 0x01
    elif where == "magic":
        data[off] = ord("X")
    elif where == "seq":
        data[off + 12:off + 20] = (9).to_bytes(8, "little")
    else:
        data[off + 4:off + 8] = (n - 1).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    for batch in (2, 100):
        a = _frames(FastJournalReader, jdir, batch)
        assert a[1] == "error" and a == _frames(JournalReader, jdir, batch)
    # what comes before the damage is read alike
    r1, r2 = JournalReader(jdir), FastJournalReader(jdir)
    assert [bytes(p) for p in r1.read_payloads(3)] == [bytes(p) for p in r2.read_payloads(3)]


def test_edited_record_with_matching_check_is_refused(tmp_path):
    """An edit whose header check was fixed up (hash field left stale): the reference calls it
    an edit ('hash'); the fast path hands the frame to the reference scan and says the same."""
    jdir = tmp_path / "journal"
    with Journal(jdir, fsync="os") as j:
        for i in range(1, 5):
            j.append(ev(i))
    (_, path), = list_segments(jdir)
    data = bytearray(path.read_bytes())
    off = HLEN + int.from_bytes(data[4:8], "little")
    n = int.from_bytes(data[off + 4:off + 8], "little")
    payload = bytearray(data[off + HLEN:off + HLEN + n])
    i = payload.index(b'"AAPL"')
    payload[i + 1] = ord("B")
    data[off + HLEN:off + HLEN + n] = payload
    data[off + 8:off + 12] = jmod.frame_check(bytes(payload)).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    a = _frames(FastJournalReader, jdir)
    assert a[1] == "error" and "stored hash does not match" in a[2]
    assert a == _frames(JournalReader, jdir)


def test_old_crc_frames_segments_and_from_seq(tmp_path):
    """Old b'OMSJ' frames, then b'OMSH' frames in the same segment, then more segments; read
    from any seq, in any batch size, with a chunk smaller than a frame."""
    jdir = tmp_path / "journal"
    old = write_raw(jdir, [b'{"type":"old","ts":%d' % i for i in range(3)], magic=jmod.MAGIC)
    last = orjson.loads(old[-1])["hash"]
    with Journal(jdir, fsync="os", rotate_bytes=3000) as j:
        assert j.last_hash == last
        for i in range(4, 60):
            j.append(ev(i, text="x" * (i * 37 % 400)))
    assert len(list_segments(jdir)) > 3
    for from_seq in (1, 2, 4, 17, 59, 60, 61):
        for batch in (1, 5, 1000):
            for chunk in (256, 1 << 20):
                a = _frames(FastJournalReader, jdir, batch, from_seq=from_seq, chunk_bytes=chunk)
                b = _frames(JournalReader, jdir, batch, from_seq=from_seq, chunk_bytes=chunk)
                assert a == b, (from_seq, batch, chunk)
                t = read_all_fast(jdir, batch, from_seq=from_seq, chunk_bytes=chunk)
                want = read_all_ref(jdir, batch, from_seq=from_seq, chunk_bytes=chunk)
                assert (t is None and want is None) or t.to_pylist() == want.to_pylist()


def test_growing_journal_is_followed(tmp_path):
    """A reader at the end of a live journal picks up what the writer flushes next, including an
    incomplete frame that is completed later."""
    jdir = tmp_path / "journal"
    j = Journal(jdir, fsync="os")
    r = FastJournalReader(jdir)
    assert r.read_arrow(100) is None
    seen = []
    for k in range(5):
        for i in range(k * 10, k * 10 + 10):
            j.append(ev(i + 1))
        j.flush()
        seen += r.read_arrow(100).column("seq").to_pylist()
    (_, path), = list_segments(jdir)
    data = path.read_bytes()
    j.close()
    path.write_bytes(data[:-30])
    assert r.read_arrow(100) is None
    assert seen == list(range(1, 51))
    r2 = FastJournalReader(jdir)
    assert r2.read_arrow(100).num_rows == 49 and r2.tail_bytes > 0


# -- the projection on both paths


def test_projection_tables_and_verify_agree(tmp_path):
    jdir = tmp_path / "journal"
    with Journal(jdir, fsync="os", rotate_bytes=20_000) as j:
        for i in range(1, 400):
            extra = {}
            if i % 17 == 0:
                extra = {"note": f"n{i}", "text": "é\n\"x\""}
            if i % 29 == 0:
                extra = {"order_id": str(i)}
            j.append(ev(i, **extra))
    tables = []
    for fast in (True, False):
        db = tmp_path / f"audit-{fast}.duckdb"
        p = Projection(db, jdir, batch_rows=64, fast_ingest=fast)
        assert p.catch_up(upto=100) == 100
        assert p.catch_up() == 299
        assert p.catch_up() == 0
        con = p.cursor()
        tables.append(con.execute(f"SELECT * FROM {TABLE} ORDER BY seq").fetchall())
        con.close()
        p.close()
    assert tables[0] == tables[1]
    # verify stays strict and sees the fast projection as correct
    import shutil
    data = tmp_path / "data"
    shutil.copytree(jdir, data / "journal")
    shutil.copy(tmp_path / "audit-True.duckdb", data / "audit.duckdb")
    res = verify(data)
    assert res.ok, res


def test_without_libcrypto_the_python_check_gives_the_same(tmp_path, monkeypatch):
    jdir = tmp_path / "journal"
    with Journal(jdir, fsync="os") as j:
        for i in range(1, 50):
            j.append(ev(i))
    want = read_all_fast(jdir).to_pylist()
    monkeypatch.setattr(ingest, "HAVE_NATIVE_SHA", False)
    assert read_all_fast(jdir, 7).to_pylist() == want
    (_, path), = list_segments(jdir)
    data = bytearray(path.read_bytes())
    data[-10] ^= 1
    path.write_bytes(bytes(data))
    assert _frames(FastJournalReader, jdir, 7) == _frames(JournalReader, jdir, 7)


def test_fast_scan_limit_and_skip(tmp_path):
    jdir = tmp_path / "journal"
    with Journal(jdir, fsync="os") as j:
        for i in range(1, 21):
            j.append(ev(i))
    (_, path), = list_segments(jdir)
    data = path.read_bytes()
    r = fast_scan(data, len(data), 1, skip_below=5, limit=4)
    ref = jmod._scan(data, len(data), 1, collect=True, skip_below=5, limit=4)
    assert list(zip(r.ps.tolist(), r.pe.tolist())) == ref.frames
    assert (r.count, r.end, r.next_seq, r.stop) == (ref.count, ref.end, ref.next_seq, ref.stop)
    t = frames_to_arrow(data, r.ps, r.pe)
    assert t.column("seq").to_pylist() == [5, 6, 7, 8]


def test_bulk_catch_up_with_prefetch_and_threads(tmp_path):
    """A backlog switches catch_up to bulk mode (bigger batches, DuckDB on more threads, the next
    batch parsed while one is inserted): same table, ``upto`` respected, settings restored, and
    a bad frame in the middle stops it with the table a clean prefix."""
    jdir = tmp_path / "journal"
    with Journal(jdir, fsync="os", rotate_bytes=50_000) as j:
        for i in range(1, 1001):
            j.append(ev(i, **({"note": "x"} if i % 97 == 0 else {})))
    want = None
    for fast, kw in ((False, {}), (True, dict(bulk_threads=2, bulk_batch_rows=128, prefetch=True)),
                     (True, dict(bulk_threads=1, prefetch=False))):
        db = tmp_path / f"audit-{fast}-{len(kw)}.duckdb"
        p = Projection(db, jdir, batch_rows=64, fast_ingest=fast, **kw)
        assert p.catch_up(upto=500) == 500
        assert p.catch_up() == 500
        con = p.cursor()
        assert con.execute("SELECT current_setting('threads')").fetchall()[0][0] == 1
        got = con.execute(f"SELECT * FROM {TABLE} ORDER BY seq").fetchall()
        con.close()
        p.close()
        if want is None:
            want = got
        assert got == want
    # damage record 700: the catch-up stops there, the table holds a prefix, and says so again
    (_, path), *_ = [s for s in list_segments(jdir) if s[0] <= 700][-1:]
    data = bytearray(path.read_bytes())
    off = 0
    seq = int.from_bytes(data[12:20], "little")
    while seq < 700:
        off += HLEN + int.from_bytes(data[off + 4:off + 8], "little")
        seq = int.from_bytes(data[off + 12:off + 20], "little")
    data[off + HLEN + 5] ^= 1
    path.write_bytes(bytes(data))
    p = Projection(tmp_path / "bad.duckdb", jdir, batch_rows=64, bulk_threads=2, bulk_batch_rows=128)
    with pytest.raises(JournalCorrupt):
        p.catch_up()
    con = p.cursor()
    n, mx = con.execute(f"SELECT count(*), max(seq) FROM {TABLE}").fetchall()[0]
    assert n == mx and 0 < mx < 700
    assert con.execute("SELECT current_setting('threads')").fetchall()[0][0] == 1
    con.close()
    with pytest.raises(JournalCorrupt):
        p.catch_up()
    p.close()
