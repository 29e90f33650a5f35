"""verify(): the journal chain and the DuckDB table against it; tampering is found and located."""
from __future__ import annotations

import duckdb
import pytest

from oms_trading.audit.chain import GENESIS_HASH, record_hash
from oms_trading.audit.journal import HLEN, Journal, list_segments
from oms_trading.audit.paths import duckdb_path, journal_dir
from oms_trading.audit.projection import COLUMNS_SQL, TABLE, Projection, column_sql
from oms_trading.audit.verify import VerifyResult, verify

T0 = 1_700_000_000_000_000_000
N = 60


def ev(i: int, **kw) -> dict:
    e = {"type": "order_accepted", "ts": T0 + i, "order_id": i // 3 + 1, "cl_ord_id": f"C{i // 3 + 1:08d}",
         "symbol": "AAPL", "side": "1", "price": "187.25", "qty": 100 + i}
    if i % 7 == 0:
        e["venue"] = "XNAS"  # goes to details
    e.update(kw)
    return e


@pytest.fixture
def data(tmp_path):
    with Journal(journal_dir(tmp_path), fsync="os", rotate_bytes=4000) as j:
        for i in range(N):
            j.append(ev(i))
            if i % 10 == 9:
                j.flush()
    with Projection(duckdb_path(tmp_path), journal_dir(tmp_path)) as p:
        p.catch_up()
    return tmp_path


def raw(data):
    return duckdb.connect(str(duckdb_path(data)))


def test_clean_trail_verifies(data):
    r = verify(data)
    assert r == VerifyResult(ok=True, checked_journal=N, checked_table=N, first_bad_seq=None, where="", reason="")
    assert "OK" in str(r)
    assert len(list_segments(journal_dir(data))) > 1


def test_projection_lag_is_not_a_failure(tmp_path):
    with Journal(journal_dir(tmp_path), fsync="os") as j:
        for i in range(10):
            j.append(ev(i))
    r = verify(tmp_path)
    assert r.ok and r.checked_journal == 10 and r.checked_table == 0
    with Projection(duckdb_path(tmp_path), journal_dir(tmp_path)) as p:
        p.catch_up()
    with Journal(journal_dir(tmp_path), fsync="os") as j:
        j.append(ev(11))
    r = verify(tmp_path)
    assert r.ok and (r.checked_journal, r.checked_table) == (11, 10) and "lags" in r.reason


@pytest.mark.parametrize("sql,seq", [
    (f"UPDATE {TABLE} SET qty = 1 WHERE seq = 17", 17),
    (f"UPDATE {TABLE} SET price = '1.00' WHERE seq = 30", 30),
    (f"UPDATE {TABLE} SET details = NULL WHERE seq = 8", 8),          # seq 8 is event 7: has venue
    (f"UPDATE {TABLE} SET text = 'x' WHERE seq = 44", 44),            # NULL -> value
    (f"DELETE FROM {TABLE} WHERE seq = 23", 23),
    (f"DELETE FROM {TABLE} WHERE seq >= 50", None),                   # cut from the end: only a lag
])
def test_tampered_rows_are_found(data, sql, seq):
    with raw(data) as con:
        con.execute(sql)
    r = verify(data)
    if seq is None:
        assert r.ok and r.checked_table == 49
        return
    assert not r.ok and r.where == "duckdb" and r.first_bad_seq == seq, r
    assert r.checked_journal == N and r.checked_table == seq - 1


def test_inserted_rows_are_found(data):
    with raw(data) as con:
        # a duplicate of seq 12 with different content
        con.execute(f"INSERT INTO {TABLE} SELECT * REPLACE (qty + 1 AS qty) FROM {TABLE} WHERE seq = 12")
    r = verify(data)
    assert not r.ok and r.where == "duckdb" and r.first_bad_seq == 12


def test_forged_row_with_valid_hash_is_found(data):
    # a forger who recomputes the hash chain of the table cannot match the journal
    with raw(data) as con:
        last = con.execute(f"SELECT {column_sql('hash')} FROM {TABLE} WHERE seq = {N}").fetchall()[0][0]
        rec = {"seq": N + 1, "prev_hash": last, "type": "order_filled", "ts": T0, "order_id": 1}
        h = record_hash(rec)
        con.execute(f"INSERT INTO {TABLE} (seq, prev_hash, hash, type, ts, order_id) "
                    f"VALUES (?, unhex(?), unhex(?), ?, ?, ?)", [N + 1, last, h, "order_filled", T0, 1])
    r = verify(data)
    assert not r.ok and r.where == "duckdb" and r.first_bad_seq == N + 1 and "not in the journal" in r.reason


def test_rewritten_chain_in_table_is_found(data):
    # edit row 5 and recompute every hash after it: the table chain is valid but differs from the journal
    with raw(data) as con:
        cur = con.execute(f"SELECT {COLUMNS_SQL} FROM {TABLE} ORDER BY seq")
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, r)) for r in cur.fetchall()]
        from oms_trading.audit.projection import row_to_record
        prev = GENESIS_HASH
        for row in rows:
            rec = row_to_record(row)
            if rec["seq"] < 5:  # rows before the edit keep their (journal) hashes
                prev = rec["hash"]
                continue
            if rec["seq"] == 5:
                rec["qty"] = 999
            rec["prev_hash"] = prev
            rec["hash"] = record_hash(rec)
            prev = rec["hash"]
            con.execute(f"UPDATE {TABLE} SET qty = ?, prev_hash = unhex(?), hash = unhex(?) WHERE seq = ?",
                        [rec["qty"], rec["prev_hash"], rec["hash"], rec["seq"]])
    r = verify(data)
    assert not r.ok and r.where == "duckdb" and r.first_bad_seq == 5 and "journal" in r.reason


def _frame_offsets(path):
    data = path.read_bytes()
    offs, off = [], 0
    while off < len(data):
        offs.append(off)
        off += HLEN + int.from_bytes(data[off + 4:off + 8], "little")
    return offs


def test_edited_journal_byte_is_found(data):
    (first, path), *_ = list_segments(journal_dir(data))
    offs = _frame_offsets(path)
    b = bytearray(path.read_bytes())
    b[offs[3] + HLEN + 15] ^= 0x01  # inside record seq first+3
    path.write_bytes(bytes(b))
    r = verify(data)
    assert not r.ok and r.where == "journal" and r.first_bad_seq == first + 3
    assert "checksum" in r.reason and path.name in r.reason


def test_edited_journal_with_fixed_crc_is_found(data):
    import orjson
    from oms_trading.audit.journal import frame_check
    segs = list_segments(journal_dir(data))
    first, path = segs[1]
    offs = _frame_offsets(path)
    b = bytearray(path.read_bytes())
    off = offs[1]
    n = int.from_bytes(b[off + 4:off + 8], "little")
    rec = orjson.loads(bytes(b[off + HLEN:off + HLEN + n]))
    rec["qty"] += 1  # same length, header check fixed, wrong hash
    payload = orjson.dumps(rec)
    assert len(payload) == n
    b[off + HLEN:off + HLEN + n] = payload
    b[off + 8:off + 12] = frame_check(payload).to_bytes(4, "little")
    path.write_bytes(bytes(b))
    r = verify(data)
    assert not r.ok and r.where == "journal" and r.first_bad_seq == first + 1 and "hash" in r.reason


def test_deleted_journal_segment_is_found(data):
    segs = list_segments(journal_dir(data))
    segs[1][1].unlink()
    r = verify(data)
    assert not r.ok and r.where == "journal" and r.first_bad_seq == segs[1][0]


def test_missing_duckdb_is_reported_not_failed(tmp_path):
    with Journal(journal_dir(tmp_path), fsync="os") as j:
        j.append(ev(1))
    r = verify(tmp_path)
    assert r.ok and r.checked_journal == 1 and "no DuckDB" in r.reason


def test_live_writer_projection_and_verify(tmp_path):
    """Engine thread appending with rotation while the projection ingests in the background."""
    import time
    j = Journal(journal_dir(tmp_path), fsync="interval", fsync_interval_ms=1, rotate_bytes=20_000)
    p = Projection(duckdb_path(tmp_path), journal_dir(tmp_path), interval_ms=5, batch_rows=37)
    p.start()
    try:
        for i in range(1500):
            j.append(ev(i))
            if i % 7 == 0:
                j.flush()
                p.notify(j.last_seq)
        j.flush()
        deadline = time.time() + 30
        while p.max_seq() < 1500 and time.time() < deadline:
            time.sleep(0.01)
    finally:
        j.close()
        p.stop()
    assert len(list_segments(journal_dir(tmp_path))) > 10
    r = verify(tmp_path)
    assert r.ok and r.checked_journal == r.checked_table == 1500, r


@pytest.mark.parametrize("sql,seq", [
    # the value moves from its column into details: the record a row stands for is unchanged,
    # but a query on the column (symbol = 'AAPL', order_id = 6) no longer finds the row
    (f"""UPDATE {TABLE} SET symbol = NULL, details = '{{"symbol":"AAPL"}}' WHERE seq = 17""", 17),
    (f"""UPDATE {TABLE} SET order_id = NULL, details = json_merge_patch(details, '{{"order_id":3}}')
         WHERE seq = 8""", 8),
])
def test_value_moved_out_of_its_column_is_found(data, sql, seq):
    with raw(data) as con:
        con.execute(sql)
    r = verify(data)
    assert not r.ok and r.where == "duckdb" and r.first_bad_seq == seq, r


def test_anchors_find_a_journal_cut_from_its_end_or_rewritten(tmp_path):
    """A chain cannot tell that its last records were cut (from the journal and the table
    alike); an anchor kept outside (the EOD report prints the day's last) can."""
    import subprocess
    import sys

    from oms_trading.audit.journal import iter_records
    from oms_trading.audit.verify import parse_anchor
    full, cut = tmp_path / "full", tmp_path / "cut"
    for folder, n in ((full, N), (cut, N - 5)):      # the same events: the same hashes up to N - 5
        with Journal(journal_dir(folder), fsync="os") as j:
            for i in range(n):
                j.append(ev(i))
            j.flush()
    hashes = {r["seq"]: r["hash"] for r in iter_records(journal_dir(full))}
    anchor = {N: hashes[N]}
    r = verify(full, anchor)
    assert r.ok and "1 anchor(s) matched" in r.reason
    r = verify(cut, anchor)                            # the cut journal verifies alone, not with the anchor
    assert verify(cut).ok
    assert not r.ok and r.first_bad_seq == N - 4 and f"ends at seq {N - 5}, before anchor seq {N}" in r.reason
    r = verify(full, {10: hashes[11]})
    assert not r.ok and r.first_bad_seq == 10 and "differs from its anchor" in r.reason
    assert parse_anchor(f" {N}:{hashes[N]} ") == (N, hashes[N])
    for bad in ("0:" + hashes[N], f"{N}:{hashes[N][:-1]}", f"{N}:{hashes[N].upper()}", f"{N}{hashes[N]}"):
        with pytest.raises(ValueError, match="SEQ:HASH"):
            parse_anchor(bad)
    cli = [sys.executable, "-m", "oms_trading.cli", "audit", "verify", "--data-dir"]
    ok = subprocess.run([*cli, str(full), "--anchor", f"{N}:{hashes[N]}"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    broken = subprocess.run([*cli, str(cut), "--anchor", f"{N}:{hashes[N]}"], capture_output=True, text=True)
    assert broken.returncode == 1 and "before anchor seq" in broken.stdout
    bad = subprocess.run([*cli, str(full), "--anchor", "nonsense"], capture_output=True, text=True)
    assert bad.returncode == 2 and "SEQ:HASH" in bad.stderr
