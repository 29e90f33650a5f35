"""The projection's in-memory feed: records the engine already holds go into DuckDB without the
journal being read back, and give exactly the rows a journal catch-up gives (verify passes);
gaps are filled from the journal; odd values go to ``details`` as on the journal path."""
from __future__ import annotations

import time

import orjson

from oms_trading.audit.journal import Journal
from oms_trading.audit.paths import duckdb_path, journal_dir
from oms_trading.audit.projection import TABLE, Projection, records_to_arrow
from oms_trading.audit.verify import verify

T0 = 1_700_000_000_000_000_000


def ev(i: int, **kw) -> dict:
    e = {"type": "order_accepted", "ts": T0 + i, "order_id": i // 3 + 1, "cl_ord_id": f"C{i:06d}",
         "orig_cl_ord_id": None, "symbol": "AAPL", "side": "1", "price": "187.25", "qty": 100, "text": None}
    e.update(kw)
    return e


ODD = [
    {"limit": "max_order_qty", "expires_ts": None, "request_id": "r1"},  # keys that are not columns
    {"order_id": "not-an-int"},                                          # wrong type for a column
    {"rej_reason": 1 << 40},                                             # beyond INTEGER
    {"price": 187},                                                      # int in a VARCHAR column
    {"details": "a key named details"},
]


def _write(jdir, n):
    recs = []
    with Journal(jdir, fsync="os") as j:
        for i in range(n):
            extra = ODD[i // 7 % len(ODD)] if i % 7 == 3 else {}
            recs.append(j.append(ev(i, **extra)))
            if i % 10 == 9:
                j.flush()
    return recs


def _table(con):
    cur = con.execute(f"SELECT * FROM {TABLE} ORDER BY seq")
    return cur.fetchall()


def test_feed_rows_equal_journal_rows_and_verify(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    recs = _write(journal_dir(a), 400)
    (journal_dir(b)).mkdir(parents=True)
    for f in journal_dir(a).glob("journal-*.log"):
        (journal_dir(b) / f.name).write_bytes(f.read_bytes())
    pa_ = Projection(duckdb_path(a), journal_dir(a))
    pa_._feed_ok = True                      # the table is empty and so is what it lacks: feed only
    assert pa_.ingest_records(recs) == 400 and pa_.rows_from_journal == 0
    pb = Projection(duckdb_path(b), journal_dir(b))
    assert pb.catch_up() == 400
    assert _table(pa_.cursor()) == _table(pb.cursor())
    pa_.close()
    pb.close()
    res = verify(a)
    assert res.ok and res.checked_table == 400, res


def test_feed_skips_known_rows_and_fills_gaps_from_journal(tmp_path):
    recs = _write(journal_dir(tmp_path), 100)
    p = Projection(duckdb_path(tmp_path), journal_dir(tmp_path))
    p._feed_ok = True
    assert p.ingest_records(recs[:30]) == 30
    # 30..59 never fed (say session events journaled outside a batch): read from the journal
    assert p.ingest_records(recs[60:80]) == 50            # the catch-up reads just the gap
    assert p.rows_from_journal == 30 and p.rows_from_feed == 50
    assert p.ingest_records(recs[:80]) == 0               # already there
    assert p.ingest_records(recs[75:]) == 20
    assert p.max_seq() == 100
    p.close()
    assert verify(tmp_path).ok


def test_background_feed_and_stop(tmp_path):
    jdir = journal_dir(tmp_path)
    j = Journal(jdir, fsync="os")
    first = [j.append(ev(i)) for i in range(50)]
    j.flush()                                # before the projection starts: catch-up reads them
    p = Projection(duckdb_path(tmp_path), jdir, interval_ms=20)
    p.start()
    deadline = time.monotonic() + 10
    while p.max_seq() < 50 and time.monotonic() < deadline:   # the start-up catch-up
        time.sleep(0.01)
    for k in range(20):
        batch = [j.append(ev(50 + k * 10 + i)) for i in range(10)]
        if k == 7:
            j.append({"type": "session_logon", "ts": T0, "session": "S", "text": "not fed"})
        j.flush()
        p.feed(batch + [{"type": "order_status", "ts": T0}])   # unjournaled: ignored
        time.sleep(0.03)
    deadline = time.monotonic() + 10
    while p.max_seq() < j.last_seq and time.monotonic() < deadline:
        time.sleep(0.02)
    assert p.max_seq() == j.last_seq == 251
    # the journal is open in this process: the rows come from its tap (payload bytes), not the dicts
    assert p.rows_from_tap > 0 and p.lag() == 0
    j.close()
    p.stop()
    assert verify(tmp_path).ok and first


def test_records_to_arrow_chunks():
    recs = [dict(ev(i), seq=i + 1, prev_hash="0" * 64, hash="1" * 64) for i in range(1000)]
    t = records_to_arrow(recs, chunk=64)
    assert t.num_rows == 1000 and t.column("seq").to_pylist() == list(range(1, 1001))
    assert t.column("details").null_count == 1000


def test_tap_payloads_and_gaps(tmp_path):
    """Journal.tap hands over the payloads of flushed records only; gaps are read back."""
    jdir = journal_dir(tmp_path)
    j = Journal(jdir, fsync="os")
    for i in range(5):
        j.append(ev(i))
    j.flush()                                 # before the tap: read from the journal files
    tap = j.tap()
    recs = [j.append(ev(5 + i)) for i in range(10)]
    assert not tap and tap.first_seq() is None   # nothing until the flush
    j.flush()
    assert tap.first_seq() == 6
    first, payloads = tap.take()
    assert first == 6 and [orjson.loads(x) for x in payloads] == recs and not tap
    j._tap._push(first, payloads)             # give them back for the projection
    p = Projection(duckdb_path(tmp_path), jdir)
    p.attach_journal(j)
    assert p._drain_tap() == 15                   # first call: catch-up from the files up to the tap
    assert (p.rows_from_journal, p.rows_from_tap) == (5, 10) and not tap
    for i in range(3):
        j.append(ev(20 + i))
    j.flush()
    assert p._drain_tap() == 3 and p.rows_from_tap == 13 and p.max_seq() == 18
    j.append(ev(99))
    j.flush()
    tap.take()                                    # a lost buffer: the projection sees a gap
    j.append(ev(100))
    j.flush()
    assert p._drain_tap() == 2 and p.max_seq() == 20                       # seq 19 from the files
    assert (p.rows_from_journal, p.rows_from_tap) == (6, 14)
    p.detach_journal()
    assert j._tap is None
    p.close()
    j.close()
    assert verify(tmp_path).ok


def test_tap_drops_a_discontinuous_buffer(tmp_path):
    from oms_trading.audit.journal import JournalTap
    t = JournalTap(max_records=5)
    t._push(1, [b"a", b"b"])
    t._push(3, [b"c"])
    assert t.take() == (1, [b"a", b"b", b"c"])
    t._push(4, [b"d"])
    t._push(9, [b"e"])                        # 5..8 rolled back or lost: the buffer restarts at 9
    assert t.dropped == 1 and t.take() == (9, [b"e"])
    t._push(10, [b"1", b"2", b"3", b"4", b"5"])
    t._push(15, [b"6"])                       # consumer too far behind: dropped, it reads the files
    assert t.dropped == 6 and t.take() == (15, [b"6"])
