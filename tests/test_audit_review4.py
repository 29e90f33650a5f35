"""Fourth audit review: tampering with the journal files and the DuckDB projection, as an
auditor or a compliance officer would meet it (see the commit messages for each defect)."""
from __future__ import annotations

import duckdb
import pytest

from oms_trading.audit.journal import Journal
from oms_trading.audit.paths import duckdb_path, journal_dir
from oms_trading.audit.projection import TABLE, Projection
from oms_trading.audit.verify import verify

T0 = 1_700_000_000_000_000_000


def ev(i: int, **kw) -> dict:
    e = {"type": "order_accepted", "ts": T0 + i, "order_id": i + 1, "cl_ord_id": f"C{i + 1:08d}",
         "symbol": "AAPL", "side": "1", "price": "187.25", "qty": 100 + i}
    e.update(kw)
    return e


@pytest.fixture
def details_trail(tmp_path):
    """Records with keys kept in ``details``: a str, small ints and an int beyond BIGINT."""
    with Journal(journal_dir(tmp_path), fsync="os") as j:
        for i in range(6):
            j.append(ev(i, venue="XNAS", fills=5, one=1, big=1 << 63))
    with Projection(duckdb_path(tmp_path), journal_dir(tmp_path)) as p:
        p.catch_up()
    assert verify(tmp_path).ok
    return tmp_path


@pytest.mark.parametrize("details,what", [
    # a duplicate key: Python's parser keeps the last value, DuckDB's JSON functions the first,
    # so the compliance query on details->>'venue' reads EVIL while verify compared XNAS
    ('{"big":9223372036854775808,"fills":5,"one":1,"venue":"EVIL","venue":"XNAS"}', "EVIL"),
    # numbers of another type that Python compares equal: 5.0 == 5, 2.0**63 == 2**63, true == 1
    ('{"big":9223372036854775808,"fills":5.0,"one":1,"venue":"XNAS"}', "5.0"),
    ('{"big":9.223372036854775808e18,"fills":5,"one":1,"venue":"XNAS"}', None),
    ('{"big":9223372036854775808,"fills":5,"one":true,"venue":"XNAS"}', "true"),
])
def test_details_edited_to_values_python_compares_equal_are_found(details_trail, details, what):
    with duckdb.connect(str(duckdb_path(details_trail))) as con:
        con.execute(f"UPDATE {TABLE} SET details = ? WHERE seq = 3", [details])
        if what is not None:   # what a query on the projection now reads
            got = con.execute(f"SELECT details->>'venue', details->>'fills', details->>'one' FROM {TABLE} WHERE seq = 3").fetchall()[0]
            assert what in got
    r = verify(details_trail)
    assert not r.ok and r.where == "duckdb" and r.first_bad_seq == 3, r
    assert "details" in r.reason


@pytest.mark.parametrize("fast_ingest", [True, False])
def test_details_as_every_ingest_path_writes_them_verify(tmp_path, fast_ingest):
    # the exact check of details must not report a break for what the projection itself writes
    odd = {"venue": "é😀\ufeff\u2028\x00\x01\"\\/", "details": "a key named details", "": "empty key",
           "order_id": "5", "rej_reason": 1 << 31, "big": -(1 << 63) - 1 + 1, "u64": (1 << 64) - 1,
           "nothing": None, "empty": "", "long": "x" * 100_000}
    with Journal(journal_dir(tmp_path), fsync="os") as j:
        for i in range(5):
            j.append(ev(i, **(odd if i % 2 else {})))
    with Projection(duckdb_path(tmp_path), journal_dir(tmp_path), fast_ingest=fast_ingest) as p:
        p.catch_up()
    r = verify(tmp_path)
    assert r.ok and r.checked_table == 5, r
    # and through the in-memory feed (records as Journal.append returned them)
    sub = tmp_path / "feed"
    with Journal(journal_dir(sub), fsync="os") as j:
        recs = [j.append(ev(i, **(odd if i % 2 else {}))) for i in range(5)]
        j.flush()
        with Projection(duckdb_path(sub), journal_dir(sub)) as p:
            assert p.ingest_records(recs) == 5
    r = verify(sub)
    assert r.ok and r.checked_table == 5, r


def _rotated_journal(tmp_path):
    """20 records flushed one by one into segments of ~1.5 kB (several segments); its folder."""
    jdir = journal_dir(tmp_path)
    with Journal(jdir, fsync="os", rotate_bytes=1500) as j:
        for i in range(20):
            j.append(ev(i))
            j.flush()
    return jdir


def _frame_offsets(path) -> list[int]:
    from oms_trading.audit.journal import HLEN
    data, offs, off = path.read_bytes(), [], 0
    while off < len(data):
        offs.append(off)
        off += HLEN + int.from_bytes(data[off + 4:off + 8], "little")
    return offs


@pytest.mark.parametrize("lost", ["torn", "whole_records"])
def test_verify_after_a_power_cut_that_left_an_empty_next_segment_agrees_with_the_writer(tmp_path, lost):
    """A rotation creates the next segment (and fsyncs the directory) before the old segment's
    tail is known durable: a power cut can leave the old segment with a torn or lost tail and an
    empty segment after it. ``Journal.open`` takes that as the journal's torn tail (the empty
    segment goes); ``verify`` run before the restart reported the same files as corrupt, then
    intact after it."""
    from oms_trading.audit.journal import iter_records, list_segments
    jdir = _rotated_journal(tmp_path)
    segs = list_segments(jdir)
    assert len(segs) >= 3
    (_, old), (_, new) = segs[-2], segs[-1]
    new.write_bytes(b"")
    offs = _frame_offsets(old)
    data = old.read_bytes()
    old.write_bytes(data[:-7] if lost == "torn" else data[:offs[-2]])
    keep = segs[-2][0] + len(offs) - (2 if lost == "torn" else 3)   # the old segment's last whole record
    r = verify(tmp_path)
    assert r.ok and r.checked_journal == keep, r
    assert lost == "whole_records" or "incomplete record" in r.reason
    with Journal(jdir, fsync="os", rotate_bytes=1500) as j:    # what the writer makes of it
        assert j.last_seq == keep
    assert [x["seq"] for x in iter_records(jdir)] == list(range(1, keep + 1))
    assert verify(tmp_path).ok


def test_a_segment_with_records_after_an_empty_one_is_still_corruption(tmp_path):
    # only empty segments at the very end are a rotation's leftovers; one in the middle is a gap
    from oms_trading.audit.journal import list_segments
    jdir = _rotated_journal(tmp_path)
    segs = list_segments(jdir)
    segs[-2][1].write_bytes(b"")
    r = verify(tmp_path)
    assert not r.ok and r.where == "journal" and r.first_bad_seq == segs[-2][0], r


@pytest.mark.parametrize("command", ["tail", "rebuild"])
def test_a_projection_file_that_is_not_duckdb_is_not_reported_as_in_use(tmp_path, capsys, command):
    # tail and rebuild told the operator to stop `oms serve` (every IOException read as DuckDB's
    # lock) for a damaged or foreign audit.duckdb; verify already said what it was
    from oms_trading.cli import main
    with Journal(journal_dir(tmp_path), fsync="os") as j:
        for i in range(3):
            j.append(ev(i))
    duckdb_path(tmp_path).write_bytes(b"not a database " * 300)
    assert main(["audit", command, "--data-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "not a valid DuckDB database" in err and "move it aside" in err, err
    assert "in use" not in err and "oms serve" not in err, err
    assert duckdb_path(tmp_path).read_bytes() == b"not a database " * 300    # left as it was
    assert main(["audit", "verify", "--data-dir", str(tmp_path)]) == 1
    assert "BROKEN in duckdb" in capsys.readouterr().out


def test_rebuild_refuses_to_overwrite_the_table_from_a_journal_whose_chain_is_broken(tmp_path, capsys):
    """`oms audit rebuild` over a tampered journal succeeded and replaced the DuckDB rows that
    still held the original values (the review left it open): it now checks the chain first and
    refuses, naming the seq, unless --force."""
    from oms_trading import cli
    with Journal(journal_dir(tmp_path), fsync="os") as j:
        for i in range(20):
            j.append(ev(i))
    with Projection(duckdb_path(tmp_path), journal_dir(tmp_path)) as p:
        p.catch_up()
    seg = sorted(journal_dir(tmp_path).glob("journal-*.log"))[0]
    data = seg.read_bytes()
    at = data.index(b'"qty":115')                       # seq 16's quantity, in its payload
    seg.write_bytes(data[:at] + b'"qty":999' + data[at + 9:])
    assert cli.main(["audit", "rebuild", "--data-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "not rebuilt" in err and "BROKEN at seq 16" in err and "--force" in err, err
    with duckdb.connect(str(duckdb_path(tmp_path))) as con:      # the original value is still there
        assert con.execute(f"SELECT qty FROM {TABLE} WHERE seq = 16").fetchone()[0] == 115
    # --force goes on, and stops clearly at the frame whose checksum fails (it was a traceback)
    assert cli.main(["audit", "rebuild", "--data-dir", str(tmp_path), "--force"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("oms audit: not rebuilt: journal corrupt") and "seq 16" in err and "Traceback" not in err
    seg.write_bytes(data)                               # intact again: rebuilt as before
    assert cli.main(["audit", "rebuild", "--data-dir", str(tmp_path)]) == 0
    assert "20 events" in capsys.readouterr().out
