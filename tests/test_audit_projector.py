"""The projection process oms serve runs: follows the journal, answers queries, stops cleanly."""
from __future__ import annotations

import time

import duckdb
import pytest

from oms_trading.audit import queries
from oms_trading.audit.journal import Journal
from oms_trading.audit.projection import TABLE
from oms_trading.audit.projector import ProjectionProcess, ProjectorError

T0 = 1_764_000_000_000_000_000


def ev(i: int) -> dict:
    return {"type": "order_accepted", "ts": T0 + i, "order_id": i // 3 + 1, "cl_ord_id": f"C{i // 3 + 1:08d}",
            "session": "CLIENT1", "account": "ACC1", "symbol": "AAPL", "side": "1", "price": "187.25",
            "qty": 100, "rej_reason": None}


def _count(con) -> int:
    return con.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]


def _wait_for(projection: ProjectionProcess, seq: int) -> None:
    deadline = time.time() + 60
    while projection.lag() and time.time() < deadline:
        time.sleep(0.05)
    assert projection.lag() == 0, f"projection still {projection.lag()} behind seq {seq}"


def test_follows_the_journal_answers_queries_and_stops(tmp_path):
    jdir, db = tmp_path / "journal", tmp_path / "audit.duckdb"
    journal = Journal(jdir, fsync="os")
    projection = ProjectionProcess(db, jdir, journal)
    projection.start()
    try:
        for i in range(300):
            record = journal.append(ev(i))
            if i % 25 == 24:
                journal.flush()
                projection.feed([record])
        _wait_for(projection, 300)
        assert projection.run(_count) == 300
        events = projection.run(queries.lifecycle, order_id=7)
        assert [e["seq"] for e in events] == [19, 20, 21]
        with pytest.raises(ValueError):               # a bad argument comes back as ValueError
            projection.run(queries.lifecycle)
        result = projection.verify(tmp_path)           # runs where the DuckDB connection is
        assert result.ok and result.checked_journal == 300 and result.checked_table == 300, result
        for i in range(300, 310):                      # the stop catches up with the last ones
            journal.append(ev(i))
        journal.flush()
    finally:
        projection.stop()
        journal.close()
    with duckdb.connect(str(db), read_only=True) as con:
        assert _count(con) == 310
    with pytest.raises(ProjectorError):
        projection.run(_count)


def test_reads_no_further_than_the_journal_kept(tmp_path):
    """While the server runs, the projection process stops at the journal's watermark (the last
    seq a write kept): records past it may still be cut again by a failed write's rollback, and
    DuckDB must not take them (it would fork from the journal). The journal moves the mark after
    each write, and down again when a failed batch is cut."""
    jdir, db = tmp_path / "journal", tmp_path / "audit.duckdb"
    journal = Journal(jdir, fsync="os")
    for i in range(10):
        journal.append(ev(i))
    journal.flush()
    projection = ProjectionProcess(db, jdir, journal)
    projection.start()
    try:
        assert journal.watermark is not None and journal.watermark.value == 10
        for i in range(10, 20):
            journal.append(ev(i))
        journal.flush()
        assert journal.watermark.value == 20
        journal.watermark.value = 15          # as if records 16-20 were not kept yet
        projection.catch_up()
        assert projection.run(_count) == 15
        journal.watermark.value = journal.written_seq
        projection.catch_up()
        assert projection.run(_count) == 20
    finally:
        projection.stop()
        journal.close()
