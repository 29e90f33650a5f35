"""Verification of the audit trail: the journal's hash chain, then the DuckDB table against it.

Journal: every frame's checksum (the record's SHA-256, or the CRC-32 of older frames), seq gap-free from 1, ``prev_hash`` links, ``hash`` recomputed over the
stored payload bytes (see ``chain``), and the payload in canonical form (``canonical_bytes`` of the
parsed record gives back the hashed bytes). Table (ordered by seq): each row rebuilt into a record
(columns + details) and compared with the hash-verified journal record of the same seq: every
value, ``prev_hash`` and ``hash``, and each value in its own column (not moved into details);
a missing, extra, duplicated or edited row is reported with the first bad seq.

What a chain alone cannot see: records cut from the *end* of both the journal and the table (a
chain has no memory of its own length). For that, anchors: a (seq, hash) kept outside the data
folder (the EOD report prints the day's last one) is checked with ``anchors``: the journal must
still hold that record with that hash, so nothing up to it was cut or changed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import duckdb
import orjson

from .chain import GENESIS_HASH, canonical_bytes
from .journal import JournalCorrupt, JournalReader, _sha256, split_payload
from .paths import duckdb_path, journal_dir
from .projection import TABLE, columns_sql_for, connect_readonly, record_to_row, row_to_record
from .schema import COLUMN_NAMES

_loads = orjson.loads


@dataclass
class VerifyResult:
    ok: bool
    checked_journal: int = 0
    checked_table: int = 0
    first_bad_seq: int | None = None
    where: str = ""          # "journal" | "duckdb" when not ok
    reason: str = ""

    def __str__(self) -> str:
        if self.ok:
            return (f"OK: {self.checked_journal} journal records and {self.checked_table} DuckDB rows "
                    f"verified{'; ' + self.reason if self.reason else ''}")
        at = f" at seq {self.first_bad_seq}" if self.first_bad_seq is not None else ""
        return (f"FAILED in {self.where}{at}: {self.reason} (checked {self.checked_journal} journal "
                f"records, {self.checked_table} rows)")


def _journal_records(jdir: Path, reader: JournalReader, batch: int = 50_000) -> Iterator[dict]:
    while True:
        chunk = reader.read_payloads(batch)
        if not chunk:
            return
        for p in chunk:
            yield _loads(p)


ANCHOR = re.compile(r"([1-9][0-9]{0,18}):([0-9a-f]{64})")


def parse_anchor(text: str) -> tuple[int, str]:
    """``SEQ:HASH`` (as the EOD report prints it) -> (seq, hex hash); ValueError otherwise."""
    m = ANCHOR.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"an anchor is SEQ:HASH (a seq >= 1, a colon, 64 lowercase hex digits), got {text!r}")
    return int(m.group(1)), m.group(2)


def verify_journal(jdir: Path, anchors: dict[int, str] | None = None) -> VerifyResult:
    res = VerifyResult(ok=True)
    reader = JournalReader(jdir)
    prev = GENESIS_HASH
    expected = 1
    sha = _sha256
    loads = _loads
    try:
        while True:
            chunk = reader.read_payloads(50_000)
            if not chunk:
                break
            for p in chunk:
                p = bytes(p)
                rec = loads(p)
                seq = rec.get("seq") if type(rec) is dict else None
                if seq != expected:
                    return _bad(res, "journal", expected, f"record seq {seq!r} where {expected} was expected")
                if rec.get("prev_hash") != prev:
                    return _bad(res, "journal", seq, "prev_hash does not link to the previous record's hash")
                try:
                    hashed, stored = split_payload(p)
                except (ValueError, UnicodeDecodeError):
                    return _bad(res, "journal", seq, "payload does not end with its hash field")
                h = sha(hashed).hexdigest()
                if stored != h or rec.get("hash") != h:
                    return _bad(res, "journal", seq, f"hash mismatch (stored {rec.get('hash')}, recomputed {h})")
                if canonical_bytes(rec) != hashed:
                    return _bad(res, "journal", seq, "payload is not in canonical form (re-encoding it "
                                                     "does not give the hashed bytes)")
                if anchors and seq in anchors and anchors[seq] != h:
                    return _bad(res, "journal", seq, f"record differs from its anchor (hash {h}, anchored "
                                                     f"{anchors[seq]}): the journal up to it was rewritten")
                prev = h
                expected += 1
                res.checked_journal += 1
    except JournalCorrupt as e:
        return _bad(res, "journal", e.seq if e.seq is not None else expected, str(e))
    except (ValueError, orjson.JSONDecodeError) as e:
        return _bad(res, "journal", expected, f"undecodable record: {e}")
    beyond = [seq for seq in (anchors or {}) if seq >= expected]
    if beyond:
        return _bad(res, "journal", expected, f"the journal ends at seq {expected - 1}, before anchor seq "
                                              f"{min(beyond)}: records were cut from its end")
    if reader.tail_bytes:
        res.reason = (f"an incomplete record of {reader.tail_bytes} bytes at the end of the journal was "
                      f"ignored (a write in progress, or a torn tail the next open cuts off)")
    if anchors:
        res.reason = "; ".join(filter(None, [res.reason, f"{len(anchors)} anchor(s) matched"]))
    res.last_hash = prev  # type: ignore[attr-defined]
    return res


def _bad(res: VerifyResult, where: str, seq: int | None, reason: str) -> VerifyResult:
    res.ok = False
    res.where = where
    res.first_bad_seq = seq
    res.reason = reason
    return res


def _rows(con, batch: int = 20_000) -> Iterator[dict]:
    cur = con.execute(f"SELECT {columns_sql_for(con)} FROM {TABLE} ORDER BY seq")
    names = [d[0] for d in cur.description]     # an earlier version's table may lack a column
    while True:
        b = cur.fetchmany(batch)
        if not b:
            return
        for r in b:
            yield dict(zip(names, r))


def verify_table(con: duckdb.DuckDBPyConnection, jdir: Path, res: VerifyResult) -> VerifyResult:
    """Compare the table, row by row in seq order, with the journal (whose hashes
    ``verify_journal`` has checked). A row's hash cannot be recomputed from the row alone (the
    hashed bytes keep the record's key order and its null keys, which a row does not), so each
    row must equal the journal record of its seq: every value, ``prev_hash`` and ``hash``."""
    journal = _journal_records(jdir, JournalReader(jdir))
    prev = GENESIS_HASH
    expected = 1
    for row in _rows(con):
        seq = row["seq"]
        if seq != expected:
            if seq is not None and seq < expected:
                return _bad(res, "duckdb", seq, f"duplicate or out-of-order row with seq {seq}")
            return _bad(res, "duckdb", expected, f"row with seq {expected} is missing (next row has seq {seq})")
        try:
            rec = row_to_record(row)
        except (ValueError, orjson.JSONDecodeError) as e:
            return _bad(res, "duckdb", seq, f"row cannot be decoded: {e}")
        jrec = next(journal, None)
        if jrec is None:
            return _bad(res, "duckdb", seq, f"row with seq {seq} is not in the journal")
        jh = jrec.get("hash")
        if row["hash"] != jh:
            return _bad(res, "duckdb", seq, f"row hash {row['hash']} differs from the journal record's hash "
                                            f"{jh}: the row was edited")
        if row["prev_hash"] != prev:
            return _bad(res, "duckdb", seq, "prev_hash does not link to the previous row's hash")
        if None in jrec.values():
            jrec = {k: v for k, v in jrec.items() if v is not None}
        if jrec != rec:
            diff = sorted(k for k in set(jrec) | set(rec) if jrec.get(k) != rec.get(k))
            return _bad(res, "duckdb", seq, f"row differs from the journal record in {diff}: the row was edited")
        if row["details"] is not None:
            # same record, but a value moved from its column into details hides the row from
            # queries on that column: the row must be laid out as the projection writes it
            want = record_to_row(jrec)
            moved = [c for c in COLUMN_NAMES if c != "details" and row.get(c) != want.get(c)]
            if moved:
                return _bad(res, "duckdb", seq, f"row keeps {moved} in details instead of its column"
                                                f"{'s' if len(moved) > 1 else ''}: the row was edited")
            # the parsed details equal the record's by Python's ==, which takes 5.0 or true for
            # 5 or 1 and keeps the last of two equal keys (DuckDB's ->> reads the first): the
            # text must be the one the projection writes (record_to_row, sorted compact JSON)
            if row["details"] != want["details"]:
                return _bad(res, "duckdb", seq, "row's details are not the journal record's as the projection "
                                                "writes them (a duplicate key, or a number of another type): "
                                                "the row was edited")
        prev = jh
        expected += 1
        res.checked_table += 1
    return res


def verify(data_dir: Path | str, anchors: dict[int, str] | None = None) -> VerifyResult:
    """Verify the journal in ``DATA/journal`` (against ``anchors``, seq -> hash, if given) and
    the table in ``DATA/audit.duckdb``."""
    jdir = journal_dir(data_dir)
    res = verify_journal(jdir, anchors)
    if not res.ok:
        return res
    db = duckdb_path(data_dir)
    if not db.exists():
        res.reason = "; ".join(filter(None, [res.reason, "no DuckDB projection to check"]))
        return res
    try:
        con = connect_readonly(db)
    except duckdb.Error as e:
        return _bad(res, "duckdb", None, f"cannot open {db}: {e}")
    try:
        exists = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?",
                             [TABLE]).fetchall()[0][0]
        if not exists:
            res.reason = "; ".join(filter(None, [res.reason, f"no {TABLE} table to check"]))
            return res
        verify_table(con, jdir, res)
    finally:
        con.close()
    if res.ok and res.checked_table < res.checked_journal:
        note = f"DuckDB lags the journal by {res.checked_journal - res.checked_table} records"
        res.reason = "; ".join(filter(None, [res.reason, note]))
    return res
