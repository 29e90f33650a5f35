"""The projection's in-memory feed: records the engine already holds go into DuckDB without the
journal being read back, and give exactly the rows a journal catch-up gives (verify passes);
gaps are filled from the journal; odd values go to ``details`` as on the journal path."""
from __future__ import annotations

import time

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
    assert p.ingest_records(recs[60:80]) == 70            # the catch-up reads all the journal has
    assert p.rows_from_journal == 70
    assert p.ingest_records(recs[:80]) == 0               # already there
    assert p.ingest_records(recs[75:]) == 0
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
    assert p.rows_from_feed > 0 and p.lag() == 0
    j.close()
    p.stop()
    assert verify(tmp_path).ok and first


def test_records_to_arrow_chunks():
    recs = [dict(ev(i), seq=i + 1, prev_hash="0" * 64, hash="1" * 64) for i in range(1000)]
    t = records_to_arrow(recs, chunk=64)
    assert t.num_rows == 1000 and t.column("seq").to_pylist() == list(range(1, 1001))
    assert t.column("details").null_count == 1000
