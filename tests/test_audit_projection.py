"""DuckDB projection: bulk catch-up, idempotency, rebuild, background mode, exact round trip."""
from __future__ import annotations

import time

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from oms_trading.audit.chain import record_hash
from oms_trading.audit.journal import Journal, iter_records
from oms_trading.audit.projection import (
    COLUMNS_SQL, DECIMAL_VIEW, is_current_layout,
    TABLE, Projection, connect_readonly, create_table_sql, order_lifecycle, record_to_row, row_to_record,
    stored_hash_type, to_storage,
)
from oms_trading.audit.schema import COLUMN_NAMES

T0 = 1_700_000_000_000_000_000


def ev(i: int, **kw) -> dict:
    e = {"type": "order_accepted", "ts": T0 + i, "order_id": i // 3 + 1, "cl_ord_id": f"C{i // 3 + 1:08d}",
         "symbol": "AAPL", "side": "1", "price": "187.25", "qty": 100, "rej_reason": None}
    e.update(kw)
    return e


def fill(jdir, n, start=0, **kw):
    with Journal(jdir, fsync="os", **kw) as j:
        for i in range(start, start + n):
            j.append(ev(i))
            if i % 50 == 0:
                j.flush()


def nonull(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if v is not None}


def rows(con):
    cur = con.execute(f"SELECT {COLUMNS_SQL} FROM {TABLE} ORDER BY seq")
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def test_catch_up_of_a_live_journal_stops_at_the_end_it_reached(tmp_path):
    """A follower of a journal that a writer keeps growing (the projection process) must not
    chase it: the read that reaches the end is the call's last batch, and what came after is
    the next call's, in one batch (before: one INSERT per few records, in a call that only
    ended when the writer paused)."""
    jdir, db = tmp_path / "journal", tmp_path / "audit.duckdb"
    j = Journal(jdir, fsync="os")
    written = 0

    def write(n):
        nonlocal written
        for _ in range(n):
            j.append(ev(written))
            written += 1
        j.flush()

    write(40)
    p = Projection(db, jdir, batch_rows=1000)
    real_read = p._read_batch
    reads = []

    def read_while_writing(reader, want):
        tbl = real_read(reader, want)
        reads.append(0 if tbl is None else tbl.num_rows)
        write(3)                       # the writer goes on after every read
        return tbl

    p._read_batch = read_while_writing
    assert p.catch_up() == 40 and reads == [40]
    assert p.catch_up() == 3 and reads == [40, 3]
    write(500)
    assert p.catch_up() == 503 and reads == [40, 3, 503]
    p.close()
    j.close()


def test_catch_up_is_idempotent(tmp_path):
    jdir, db = tmp_path / "journal", tmp_path / "audit.duckdb"
    fill(jdir, 120)
    p = Projection(db, jdir, batch_rows=50)
    assert p.catch_up() == 120
    assert p.catch_up() == 0
    fill(jdir, 30, start=120)
    assert p.catch_up() == 30
    assert p.lag() == 0
    p.close()
    # a fresh projection (restart) on the same file adds nothing twice
    p2 = Projection(db, jdir)
    assert p2.catch_up() == 0
    con = p2.cursor()
    assert con.execute(f"SELECT count(*), count(DISTINCT seq), min(seq), max(seq) FROM {TABLE}").fetchall() == [(150, 150, 1, 150)]
    journal = [nonull(r) for r in iter_records(jdir)]
    assert [row_to_record(r) for r in rows(con)] == journal
    con.close()
    p2.close()


def test_columns_details_and_types(tmp_path):
    jdir, db = tmp_path / "journal", tmp_path / "audit.duckdb"
    with Journal(jdir, fsync="os") as j:
        j.append(ev(1, venue="XNAS", details="a key named details", text=None))
        j.append(ev(2, order_id="not-an-int", rej_reason=2**40, qty=-(2**63)))
        j.append({"type": "clock", "ts": T0})
    with Projection(db, jdir) as p:
        p.catch_up()
        con = p.cursor()
        r1, r2, r3 = rows(con)
        assert r1["venue" if "venue" in r1 else "details"] is not None
        assert r1["order_id"] == 1 and r1["text"] is None
        import json
        assert json.loads(r1["details"]) == {"venue": "XNAS", "details": "a key named details"}
        assert r2["order_id"] is None and r2["rej_reason"] is None and r2["qty"] == -(2**63)
        assert json.loads(r2["details"]) == {"order_id": "not-an-int", "rej_reason": 2**40}
        assert r3["details"] is None
        for r, rec in zip((r1, r2, r3), iter_records(jdir)):
            assert row_to_record(r) == nonull(rec)
            # the hash is over the journal's bytes (key order, nulls): checked against the journal
            assert record_hash(rec) == rec["hash"] == r["hash"]
        # the DECIMAL view
        assert str(con.execute("SELECT price FROM audit_events_v WHERE seq = 1").fetchall()[0][0]) == "187.2500000000"
        con.close()


def test_rebuild(tmp_path):
    jdir, db = tmp_path / "journal", tmp_path / "audit.duckdb"
    fill(jdir, 40)
    with Projection(db, jdir) as p:
        p.catch_up()
        con = p.cursor()
        con.execute(f"DELETE FROM {TABLE} WHERE seq > 10")  # damage the projection
        con.close()
        assert p.rebuild() == 40
        con = p.cursor()
        assert [row_to_record(r) for r in rows(con)] == [nonull(r) for r in iter_records(jdir)]
        con.close()


def test_background_mode_and_lag(tmp_path):
    jdir, db = tmp_path / "journal", tmp_path / "audit.duckdb"
    j = Journal(jdir, fsync="os")
    p = Projection(db, jdir, interval_ms=20)
    p.start()
    try:
        for i in range(200):
            j.append(ev(i))
            if i % 20 == 19:
                j.flush()
                p.notify(j.last_seq)
        deadline = time.time() + 20
        while p.max_seq() < 200 and time.time() < deadline:
            time.sleep(0.02)
        assert p.max_seq() == 200 and p.lag() == 0
        p.notify(250)
        assert p.lag() == 50
    finally:
        j.close()
        p.stop()
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute(f"SELECT count(*) FROM {TABLE}").fetchall() == [(200,)]


def test_locked_database_is_retried(tmp_path):
    import subprocess, sys, textwrap
    jdir, db = tmp_path / "journal", tmp_path / "audit.duckdb"
    fill(jdir, 10)
    # another process holds the DuckDB file
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import duckdb, sys, time
        con = duckdb.connect({str(db)!r})
        print("ready", flush=True)
        sys.stdin.readline()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        p = Projection(db, jdir, interval_ms=20)
        with pytest.raises(duckdb.Error):
            p.catch_up()
        p.start()
        deadline = time.time() + 20
        while p.last_error is None and time.time() < deadline:
            time.sleep(0.02)
        assert p.last_error is not None and p._thread.is_alive()  # logged, still retrying
    finally:
        holder.stdin.write("\n")
        holder.stdin.flush()
        holder.wait(10)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            if p.max_seq() == 10:
                break
        except duckdb.Error:
            pass
        time.sleep(0.05)
    p.stop()
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute(f"SELECT count(*) FROM {TABLE}").fetchall() == [(10,)]


def test_connect_readonly_and_lifecycle(tmp_path):
    jdir, db = tmp_path / "journal", tmp_path / "audit.duckdb"
    fill(jdir, 30)
    with Projection(db, jdir) as p:
        p.catch_up()
        con = connect_readonly(db)  # same process: a cursor on the projection's database
        evs = order_lifecycle(con, order_id=4)
        assert [e["seq"] for e in evs] == [10, 11, 12]
        assert [e["seq"] for e in order_lifecycle(con, cl_ord_id="C00000004")] == [10, 11, 12]
        con.close()
    con = connect_readonly(db)  # no projection open: a real read-only connection
    with pytest.raises(duckdb.Error):
        con.execute(f"DELETE FROM {TABLE}")
    con.close()


# -- property: anything the journal accepts survives journal -> DuckDB -> record with its hash

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_value = st.one_of(st.none(), st.integers(min_value=-(2**63), max_value=2**64 - 1), _text)
_keys = st.one_of(st.sampled_from([c for c in COLUMN_NAMES if c not in ("seq", "prev_hash", "hash")]), _text)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(st.dictionaries(_keys, _value, max_size=10), min_size=1, max_size=8))
def test_random_events_round_trip(tmp_path_factory, events):
    d = tmp_path_factory.mktemp("rt")
    jdir, db = d / "journal", d / "audit.duckdb"
    with Journal(jdir, fsync="os") as j:
        out = [j.append(e) for e in events]
    with Projection(db, jdir, indexes=False) as p:
        p.catch_up()
        con = p.cursor()
        got = rows(con)
        con.close()
    assert len(got) == len(out)
    for r, rec in zip(got, out):
        back = row_to_record(r)
        assert back == {k: v for k, v in rec.items() if v is not None}
        assert record_hash(rec) == rec["hash"] == r["hash"]


@given(st.dictionaries(_keys, _value, max_size=12))
def test_record_to_row_inverse(rec):
    assert row_to_record(record_to_row(rec)) == {k: v for k, v in rec.items() if v is not None}


def test_table_ahead_of_journal_is_not_extended(tmp_path):
    """After a power cut loses the journal's unsynced tail, DuckDB may hold rows the journal no
    longer has; the projection must refuse to graft the new journal records onto them."""
    from oms_trading.audit.projection import ProjectionDiverged
    jdir, db = tmp_path / "journal", tmp_path / "audit.duckdb"
    fill(jdir, 20)
    with Projection(db, jdir) as p:
        p.catch_up()
    # the journal loses its last 5 records, then the engine writes 3 different ones
    from oms_trading.audit.journal import list_segments, HLEN
    (_, path), = list_segments(jdir)
    data = path.read_bytes()
    off, offs = 0, []
    while off < len(data):
        offs.append(off)
        off += HLEN + int.from_bytes(data[off + 4:off + 8], "little")
    path.write_bytes(data[:offs[15]])
    fill(jdir, 3, start=100)
    p = Projection(db, jdir)
    with pytest.raises(ProjectionDiverged):
        p.catch_up()
    assert p.rebuild() == 18
    p.close()


@settings(max_examples=80, deadline=None)
@given(events=st.lists(st.dictionaries(_keys, _value, max_size=8), min_size=1, max_size=12))
def test_fast_and_reference_conversion_agree(events):
    import orjson
    from oms_trading.audit.chain import GENESIS_HASH
    from oms_trading.audit.projection import _payloads_to_arrow_py, payloads_to_arrow
    payloads = []
    prev = GENESIS_HASH
    for i, e in enumerate(events, 1):
        rec = {k: v for k, v in e.items() if v is not None}
        rec.update(seq=i, prev_hash=prev)
        rec["hash"] = prev = record_hash(rec)
        payloads.append(orjson.dumps(rec))
    fast = payloads_to_arrow(payloads)
    ref = _payloads_to_arrow_py(payloads)
    assert fast.schema == ref.schema
    assert fast.to_pylist() == ref.to_pylist()


def test_lag_sees_the_open_journal(tmp_path):
    jdir, db = tmp_path / "journal", tmp_path / "audit.duckdb"
    j = Journal(jdir, fsync="os")
    p = Projection(db, jdir)
    try:
        for i in range(10):
            j.append(ev(i))
        assert p.lag() == 0  # nothing written yet
        j.flush()
        assert p.lag() == 10  # no notify needed
        p.catch_up()
        assert p.lag() == 0
    finally:
        j.close()
        p.stop()


def test_database_file_deleted_while_the_projection_runs_is_made_again(tmp_path):
    """The DuckDB file removed under a running projection (its connection still writes to the
    unlinked file): the next catch-up notices, opens a new file and fills it from the journal,
    rather than projecting into a file nobody can open any more."""
    jdir, db = tmp_path / "journal", tmp_path / "audit.duckdb"
    fill(jdir, 30)
    p = Projection(db, jdir)
    assert p.catch_up() == 30
    for f in tmp_path.glob("audit.duckdb*"):
        f.unlink()
    fill(jdir, 20, start=30)
    p.catch_up()
    assert db.exists()
    p.stop()
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute(f"SELECT count(*), min(seq), max(seq) FROM {TABLE}").fetchall() == [(50, 1, 50)]


def test_hashes_are_stored_as_32_bytes_and_read_back_as_hex(tmp_path):
    jdir, db = tmp_path / "journal", tmp_path / "audit.duckdb"
    fill(jdir, 40)
    p = Projection(db, jdir, batch_rows=16)
    p.catch_up()
    con = p.cursor()
    assert stored_hash_type(con) == "BLOB"
    assert con.execute(f"SELECT min(octet_length(hash)), max(octet_length(prev_hash)) FROM {TABLE}").fetchall() == [(32, 32)]
    journal = [nonull(r) for r in iter_records(jdir)]
    assert [row_to_record(r) for r in rows(con)] == journal
    view = con.execute(f"SELECT seq, prev_hash, hash FROM {DECIMAL_VIEW} ORDER BY seq").fetchall()
    assert view == [(r["seq"], r["prev_hash"], r["hash"]) for r in journal]
    assert [r["hash"] for r in order_lifecycle(con, order_id=2)] == [r["hash"] for r in journal if r["order_id"] == 2]
    p.close()


def test_table_of_an_earlier_version_with_text_hashes_is_rebuilt(tmp_path):
    # a file written when the hashes were stored as hex text: verify still reads it as it is,
    # and the first catch-up makes the table again in the current layout from the journal
    jdir, db = tmp_path / "journal", tmp_path / "audit.duckdb"
    fill(jdir, 30)
    legacy = create_table_sql().replace("BLOB NOT NULL USING COMPRESSION uncompressed", "VARCHAR NOT NULL")
    with duckdb.connect(str(db)) as con:
        con.execute(legacy)
        for r in iter_records(jdir):
            row = record_to_row(r)
            con.execute(f"INSERT INTO {TABLE} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
        assert stored_hash_type(con) == "VARCHAR"
    from oms_trading.audit.verify import verify
    data = tmp_path
    res = verify(data)
    assert res.ok and res.checked_table == 30, res.reason
    p = Projection(db, jdir)
    assert p.catch_up() == 30
    con = p.cursor()
    assert stored_hash_type(con) == "BLOB"
    assert [row_to_record(r) for r in rows(con)] == [nonull(r) for r in iter_records(jdir)]
    p.close()
    assert verify(data).ok


def to_storage_row(row: dict) -> dict:
    """A row as the table stores it: the hash columns as 32 bytes."""
    return {k: bytes.fromhex(v) if k in ("hash", "prev_hash") else v for k, v in row.items()}


def test_table_of_an_earlier_version_without_msg_seq_num_is_rebuilt(tmp_path):
    # a file written before commands carried their FIX MsgSeqNum (a column added since): verify
    # reads it as it is (its rows simply lack the key), and the first catch-up rebuilds it
    jdir, db = tmp_path / "journal", tmp_path / "audit.duckdb"
    fill(jdir, 30)
    old = create_table_sql().replace('"msg_seq_num" BIGINT,\n  ', "")
    assert "msg_seq_num" not in old
    with duckdb.connect(str(db)) as con:
        con.execute(old)
        for r in iter_records(jdir):
            row = to_storage_row(record_to_row(r))
            row.pop("msg_seq_num", None)
            con.execute(f"INSERT INTO {TABLE} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
        assert not is_current_layout(con)
    from oms_trading.audit.verify import verify
    res = verify(tmp_path)
    assert res.ok and res.checked_table == 30, res.reason
    p = Projection(db, jdir)
    assert p.catch_up() == 30
    con = p.cursor()
    assert is_current_layout(con)
    assert [row_to_record(r) for r in rows(con)] == [nonull(r) for r in iter_records(jdir)]
    p.close()
    assert verify(tmp_path).ok


def test_hash_columns_of_other_shapes_are_refused():
    import pyarrow as pa
    good = "0" * 64
    with pytest.raises(ValueError, match="hash"):      # every value empty: no data buffer at all
        to_storage(pa.table({"prev_hash": pa.array([good]), "hash": pa.array([""])}))
    with pytest.raises(ValueError, match="32-byte"):   # already bytes, but not 32 of them
        to_storage(pa.table({"prev_hash": pa.array([good]), "hash": pa.array([b"ab"], pa.binary(2))}))
    ok = to_storage(pa.table({"prev_hash": pa.array([good]), "hash": pa.array([b"x" * 32], pa.binary(32))}))
    assert ok.column("hash").to_pylist() == [b"x" * 32]


@pytest.mark.parametrize("bad", ["A" * 64, "0" * 63, "0" * 65, "g" + "0" * 63, None])
def test_a_hash_that_is_not_64_lowercase_hex_digits_is_refused(bad):
    import pyarrow as pa
    good = "0" * 64
    tbl = pa.table({"prev_hash": pa.array([good, good], pa.string()), "hash": pa.array([good, bad], pa.string())})
    with pytest.raises(ValueError, match="hash"):
        to_storage(tbl)
    out = to_storage(pa.table({"prev_hash": pa.array([good]), "hash": pa.array(["ab" * 32])}))
    assert out.column("hash").to_pylist() == [bytes.fromhex("ab" * 32)]


def _assert_legacy_table_kept(db, rows: int) -> None:
    """The earlier version's table (text hashes) is still there with all its rows."""
    with duckdb.connect(str(db), read_only=True) as con:
        assert stored_hash_type(con) == "VARCHAR"
        assert con.execute(f"SELECT count(*) FROM {TABLE}").fetchall() == [(rows,)]


def _legacy_file(db, records):
    """An audit table as an earlier version wrote it: hashes as hex text."""
    legacy = create_table_sql().replace("BLOB NOT NULL USING COMPRESSION uncompressed", "VARCHAR NOT NULL")
    with duckdb.connect(str(db)) as con:
        con.execute(legacy)
        for r in records:
            row = record_to_row(r)
            con.execute(f"INSERT INTO {TABLE} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                        list(row.values()))


@pytest.mark.parametrize("journal_rows", [0, 10])
def test_a_text_hash_table_the_journal_does_not_cover_is_not_dropped(tmp_path, journal_rows):
    # The table of an earlier version is remade from the journal only if the journal has what it
    # holds (its last row is the journal's record of the same seq), as catch_up demands of any
    # table. A table ahead of the journal (a power cut lost the journal's unsynced tail, a file
    # copied next to another day's journal) is the only copy of those rows: the upgrade must stop
    # with ProjectionDiverged and leave it as it is, not drop it.
    from oms_trading.audit.projection import ProjectionDiverged
    src, jdir, db = tmp_path / "src", tmp_path / "journal", tmp_path / "audit.duckdb"
    fill(src, 30)
    _legacy_file(db, iter_records(src))
    if journal_rows:
        fill(jdir, journal_rows)
    else:
        jdir.mkdir()
    p = Projection(db, jdir)
    with pytest.raises(ProjectionDiverged, match="rebuild"):
        p.catch_up()
    p.close()
    _assert_legacy_table_kept(db, 30)
    # rebuild is the operator's explicit choice: it makes the table from the journal
    p = Projection(db, jdir)
    assert p.rebuild() == journal_rows
    con = p.cursor()
    assert stored_hash_type(con) == "BLOB"
    p.close()


def test_the_upgrade_of_a_text_hash_table_is_all_or_nothing(tmp_path, monkeypatch):
    # drop the old table, create the new one and its view in one transaction: a failure half way
    # leaves the old table, not a file without the table or its view
    import oms_trading.audit.projection as proj
    jdir, db = tmp_path / "journal", tmp_path / "audit.duckdb"
    fill(jdir, 20)
    _legacy_file(db, iter_records(jdir))

    def broken():
        raise RuntimeError("disk full")
    monkeypatch.setattr(proj, "_view_sql", broken)
    p = Projection(db, jdir)
    with pytest.raises(RuntimeError, match="disk full"):
        p.catch_up()
    p.close()
    _assert_legacy_table_kept(db, 20)
    monkeypatch.undo()
    p = Projection(db, jdir)
    assert p.catch_up() == 20
    p.close()
