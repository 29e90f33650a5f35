"""DuckDB query projection of the journal.

Table ``audit_events`` has the columns of ``schema.EVENT_COLUMNS``. A record key that is not a
typed column, or whose value does not have the column's type (say a str ``order_id``), is kept
in the ``details`` JSON object instead, so ``row_to_record`` gives back exactly the journal
record and its hash can be recomputed from the row. The projection only ever INSERTs rows with
``seq > max(seq)``; ``rebuild`` (drop + recreate from the journal) is the only DDL that removes
rows. Nothing here runs UPDATE or DELETE on audit rows.

The journal is the truth: if DuckDB is locked or missing, the projection logs it and retries.

Three ways in, same rows: ``catch_up`` reads the journal files back (start-up, ``oms audit``
commands, after any gap or error, and all day in ``oms serve``'s projection process): frames
walked and SHA-256-checked and the JSON parsed into typed columns by compiled kernels
(``ingest.FastJournalReader``; ``fast_ingest=False`` keeps the reference path, Arrow's JSON
reader), and a backlog inserted in bulk mode (``bulk_threads``, prefetch of the next batch).
At run time, when the ``Journal`` is open in this process, ``start`` attaches to its ``tap``:
every flush hands over the payloads it wrote (already-encoded JSON bytes, no per-record work on the engine thread beyond a list append), and
the background thread newline-joins them, parses them with Arrow's C++ JSON reader and INSERTs
the Arrow table: both steps run with the GIL released, so the projection hardly ever holds up
the engine thread (it still needs a CPU core). Without a journal in the process, ``feed`` (the
gateway's ``on_events`` hook) hands over the record dicts and the thread builds Arrow from them
(``records_to_arrow``, GIL held). A gap in what memory holds (a lost tap entry, a failed write)
is read from the journal files, bounded to the gap so that catch-up never chases a live writer.
DuckDB runs with one thread so that it does not compete with the engine for the CPU (bulk mode
on more threads is for the idle-class projection process and ``rebuild``).
"""
from __future__ import annotations

import collections
import io
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any, Iterable

import duckdb
import numba
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from .ingest import FastJournalReader
from .journal import JournalReader, open_journal
from .schema import COLUMN_NAMES, EVENT_COLUMNS

log = logging.getLogger(__name__)

TABLE = "audit_events"
_ARROW_TYPES = {"BIGINT": pa.int64(), "INTEGER": pa.int32(), "VARCHAR": pa.string(), "JSON": pa.string()}
ARROW_SCHEMA = pa.schema([pa.field(n, _ARROW_TYPES[t]) for n, t in EVENT_COLUMNS])
_STRUCT = pa.struct(list(ARROW_SCHEMA))
# typed columns a record key can map to (``details`` itself is not: a key "details" goes into it)
_TYPED = {n: t for n, t in EVENT_COLUMNS if n != "details"}
_TYPED_KEYS = frozenset(_TYPED)
_INT_RANGE = {"BIGINT": (-(1 << 63), (1 << 63) - 1), "INTEGER": (-(1 << 31), (1 << 31) - 1)}
_OPT = orjson.OPT_SORT_KEYS
_loads = orjson.loads
_dumps = orjson.dumps

DECIMAL_VIEW = "audit_events_v"

# in-process registry: DuckDB refuses a read-only connection to a file this process has open
# read-write, so readers get a cursor on the projection's database instead
_OPEN: dict[str, "Projection"] = {}
_OPEN_LOCK = threading.Lock()


# The two hash columns are stored as their 32 raw bytes, uncompressed. As 64-character hex
# text DuckDB spent about a third of each row's insert on them (compression analysis of random
# strings); as uncompressed BLOBs the insert is ~1.4x faster with the same file size
# (benchmarks/RESULTS.md, Audit, 2026-11-26). Records, queries and exports keep the hex text:
# ``to_storage`` unhexes on the way in, ``COLUMNS_SQL`` / ``column_sql`` hex on the way out.
HASH_COLUMNS = ("prev_hash", "hash")


def create_table_sql(table: str = TABLE) -> str:
    cols = ",\n  ".join(f'"{n}" BLOB NOT NULL USING COMPRESSION uncompressed' if n in HASH_COLUMNS
                        else f'"{n}" {t}{" NOT NULL" if n == "seq" else ""}'
                        for n, t in EVENT_COLUMNS)
    return f"CREATE TABLE IF NOT EXISTS {table} (\n  {cols}\n)"


def column_sql(name: str) -> str:
    """The select expression giving a column as records carry it (hashes as lowercase hex)."""
    return f'lower(hex("{name}")) AS "{name}"' if name in HASH_COLUMNS else f'"{name}"'


COLUMNS_SQL = ", ".join(column_sql(n) for n in COLUMN_NAMES)


def stored_hash_type(con, table: str = TABLE) -> str | None:
    """DuckDB type of the table's ``hash`` column: BLOB, VARCHAR (a file written before the
    hashes were stored as bytes), or None (no table)."""
    row = con.execute("SELECT data_type FROM information_schema.columns WHERE table_name = ? "
                      "AND column_name = 'hash'", [table]).fetchall()
    return row[0][0] if row else None


def stored_columns(con, table: str = TABLE) -> list[str]:
    """The table's column names in their order ([] for no table)."""
    return [r[0] for r in con.execute("SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                                      "ORDER BY ordinal_position", [table]).fetchall()]


def is_current_layout(con, table: str = TABLE) -> bool:
    """The table has this version's columns, in order, with the hashes as bytes."""
    return stored_columns(con, table) == list(COLUMN_NAMES) and stored_hash_type(con, table) == "BLOB"


def columns_sql_for(con) -> str:
    """``COLUMNS_SQL``, or the columns a table written by an earlier version has (hashes as
    text, or without a column added since); for readers that must not change the file
    (``verify``): a record rebuilt from such a row simply lacks the missing keys."""
    if is_current_layout(con):
        return COLUMNS_SQL
    have = set(stored_columns(con))
    text_hashes = stored_hash_type(con) == "VARCHAR"
    return ", ".join(f'"{n}"' if text_hashes else column_sql(n) for n in COLUMN_NAMES if n in have)


_HEX_VALUE = np.full(256, 16, dtype=np.uint8)     # 16: not a lowercase hex digit
_HEX_VALUE[np.frombuffer(b"0123456789abcdef", np.uint8)] = np.arange(16, dtype=np.uint8)


@numba.njit(nogil=True, cache=True)
def _unhex_kernel(data, offsets, n, table, out):
    """64 lowercase hex digits per value -> 32 bytes each into ``out``; returns the index of
    the first value that is not exactly that, or -1."""
    for i in range(n):
        s = np.int64(offsets[i])
        if np.int64(offsets[i + 1]) - s != 64:
            return i
        bad = np.uint8(0)
        for k in range(32):
            hi = table[data[s + 2 * k]]
            lo = table[data[s + 2 * k + 1]]
            bad |= hi | lo
            out[32 * i + k] = (hi << 4) | (lo & 15)
        if bad & 16:
            return i
    return -1


def _unhex_32(col, name: str) -> pa.Array:
    """A string column of 64-character lowercase hex values -> their 32 bytes each."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    n = len(arr)
    if pa.types.is_fixed_size_binary(arr.type):
        if arr.type.byte_width != 32 or arr.null_count:
            raise ValueError(f"{name}: values of {arr.type.byte_width} bytes or missing, not 32-byte hashes")
        return arr
    if arr.type != pa.string():
        arr = arr.cast(pa.string())
    if arr.null_count:
        raise ValueError(f"{name}: a record without {name}")
    raw = np.empty(32 * n, dtype=np.uint8)
    if n:
        offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset:arr.offset + n + 1]
        data = arr.buffers()[2]    # None when every value is empty
        chars = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
        bad = _unhex_kernel(chars, offsets, n, _HEX_VALUE, raw)
        if bad >= 0:
            raise ValueError(f"{name}: {arr[bad].as_py()!r} is not 64 lowercase hex digits")
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(32), n, [None, pa.py_buffer(raw)])


def to_storage(tbl: pa.Table) -> pa.Table:
    """An ``ARROW_SCHEMA`` table as the audit table stores it: the hash columns as bytes."""
    for name in HASH_COLUMNS:
        i = tbl.schema.get_field_index(name)
        tbl = tbl.set_column(i, name, _unhex_32(tbl.column(i), name))
    return tbl


def _view_sql() -> str:
    cols = []
    for n, _ in EVENT_COLUMNS:
        if n in ("price", "avg_px", "last_px"):
            cols.append(f'TRY_CAST("{n}" AS DECIMAL(38, 10)) AS "{n}"')
        else:
            cols.append(column_sql(n))
    return (f"CREATE OR REPLACE VIEW {DECIMAL_VIEW} AS SELECT {', '.join(cols)}, "
            f"make_timestamp_ns(ts) AS ts_utc FROM {TABLE}")


def _fits(col_type: str, v: Any) -> bool:
    t = type(v)
    if col_type == "VARCHAR":
        return t is str
    if t is not int:
        return False
    lo, hi = _INT_RANGE[col_type]
    return lo <= v <= hi


def record_to_row(rec: dict) -> dict:
    """Split a journal record into typed column values and the ``details`` JSON text."""
    row: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for k, v in rec.items():
        if v is None:
            continue
        ct = _TYPED.get(k)
        if ct is not None and _fits(ct, v):
            row[k] = v
        else:
            extra[k] = v
    row["details"] = _dumps(extra, option=_OPT).decode() if extra else None
    return row


def row_to_record(row: dict) -> dict:
    """The journal record a row stands for: non-NULL columns plus the keys of ``details``."""
    rec = {k: v for k, v in row.items() if v is not None and k != "details"}
    d = row.get("details")
    if d is not None:
        extra = _loads(d)
        if not isinstance(extra, dict):
            raise ValueError("details is not a JSON object")
        rec.update(extra)
    return rec


def _payloads_to_arrow_py(payloads) -> pa.Table:
    """Reference conversion: orjson per record, dicts to an Arrow struct array."""
    loads = _loads
    recs = [loads(p) for p in payloads]
    issuperset = _TYPED_KEYS.issuperset
    rows = recs
    for i, r in enumerate(recs):
        if not issuperset(r):  # keys that are not columns: split off into details
            if rows is recs:
                rows = list(recs)
            rows[i] = record_to_row(r)
    try:
        arr = pa.array(rows, type=_STRUCT)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
        # some value does not fit its column's type: route it to details, row by row
        arr = pa.array([record_to_row(r) for r in recs], type=_STRUCT)
    return pa.Table.from_struct_array(arr)


_JSON_SCHEMA = pa.schema([f for f in ARROW_SCHEMA if f.name != "details"])
JSON_BLOCK_BYTES = 4 << 20
_JSON_PARSE = pa_json.ParseOptions(explicit_schema=_JSON_SCHEMA, unexpected_field_behavior="infer")


JOIN_RECORDS = 4096   # payloads newline-joined per Arrow JSON read (the join holds the GIL)


def payloads_to_arrow(payloads, chunk: int = JOIN_RECORDS) -> pa.Table:
    """Arrow table (``ARROW_SCHEMA``) of journal payloads, converted ``chunk`` payloads at a
    time: joining them is the only step that holds the GIL (~2 MB of memcpy, about 1-2 ms;
    joining a whole 122,880-record batch at once held it ~70 ms here)."""
    n = len(payloads)
    if n <= chunk:
        return _payloads_to_arrow_1(payloads)
    return pa.concat_tables([_payloads_to_arrow_1(payloads[i:i + chunk]) for i in range(0, n, chunk)])


def _payloads_to_arrow_1(payloads) -> pa.Table:
    """Arrow table (``ARROW_SCHEMA``) of journal payloads (newline-joined, then
    ``ndjson_to_arrow``)."""
    n = len(payloads)
    if n == 0:
        return ARROW_SCHEMA.empty_table()
    return ndjson_to_arrow(b"\n".join(payloads), n, lambda: payloads)


def _split_ndjson(blob) -> list[bytes]:
    return [line.strip() for line in bytes(blob).split(b"\n") if line.strip()]


def ndjson_to_arrow(blob, n: int, payloads=None, block_bytes: int = JSON_BLOCK_BYTES) -> pa.Table:
    """Arrow table (``ARROW_SCHEMA``) of ``n`` journal payloads given as newline-delimited JSON
    (``JournalReader.read_ndjson``, or the payloads newline-joined); ``payloads()``, when given,
    returns them as a list (for the rows that need the reference path; else ``blob`` is split).

    Fast path: Arrow's C++ JSON reader (no GIL, no Python object per value) with the typed
    columns as explicit schema. It is strict (a str where a BIGINT is expected, an int beyond
    the type's range... fail the batch), so whenever it fails the batch goes through the
    reference path. Rows with keys that are not columns are rebuilt in Python to fill
    ``details``.
    """
    if n == 0:
        return ARROW_SCHEMA.empty_table()
    get = payloads if payloads is not None else (lambda: _split_ndjson(blob))
    try:
        # bounded blocks (memory); a record larger than a block fails the batch, which then
        # takes the reference path
        t = pa_json.read_json(pa.BufferReader(pa.py_buffer(blob)), read_options=pa_json.ReadOptions(
            use_threads=False, block_size=block_bytes), parse_options=_JSON_PARSE)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        return _payloads_to_arrow_py(get())
    if t.num_rows != n:  # pragma: no cover - defensive
        return _payloads_to_arrow_py(get())
    extra = [c for c in t.column_names if c not in _TYPED_KEYS]
    if len(set(t.column_names)) != t.num_columns:  # pragma: no cover - duplicate keys
        return _payloads_to_arrow_py(get())
    slow: list[int] = []
    if extra:
        mask = None
        for c in extra:
            v = pc.is_valid(t.column(c))
            mask = v if mask is None else pc.or_(mask, v)
        slow = pc.indices_nonzero(mask).to_pylist() if pc.any(mask).as_py() else []
    cols = [t.column(name) if name != "details" else pa.nulls(t.num_rows, pa.string())
            for name in ARROW_SCHEMA.names]
    out = pa.Table.from_arrays(cols, schema=ARROW_SCHEMA)
    if slow:
        keep = pc.invert(mask)
        pl = get()
        fixed = _payloads_to_arrow_py([pl[i] for i in slow])
        out = pa.concat_tables([out.filter(keep), fixed]).sort_by("seq")
    return out


FEED_CHUNK = 512   # records converted per call into Arrow (one GIL hold of ~1-2 ms)


def records_to_arrow(recs: list[dict], chunk: int = FEED_CHUNK) -> pa.Table:
    """Arrow table (``ARROW_SCHEMA``) of journal records already in memory (the dicts
    ``Journal.append`` returned: ``None`` values allowed, they become NULL as in the journal,
    which omits them).

    Arrow builds the struct array from the dicts in C, looking up each column's key; records
    with keys that are not columns (or whose value does not fit its column's type) go through
    ``record_to_row`` to fill ``details``, exactly as when the journal is read back. Done in
    chunks of ``chunk`` records: between chunks the interpreter can hand the GIL to the engine
    thread (``Projection.start`` lowers the switch interval so it does so within ~1 ms), so a
    big batch never holds the engine up for long. (No ``sleep(0)`` here: on a busy machine it
    gives the core away to other processes and halves the throughput.)"""
    issuperset = _TYPED_KEYS.issuperset
    arrays = []
    for i in range(0, len(recs), chunk):
        part = recs[i:i + chunk]
        rows = part
        for k, r in enumerate(part):
            if not issuperset(r):
                if rows is part:
                    rows = list(part)
                rows[k] = record_to_row(r)
        try:
            arrays.append(pa.array(rows, type=_STRUCT))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
            arrays.append(pa.array([record_to_row(r) for r in part], type=_STRUCT))
    if not arrays:
        return ARROW_SCHEMA.empty_table()
    # one contiguous array: DuckDB scans a few big Arrow chunks far faster than many small ones
    arr = arrays[0] if len(arrays) == 1 else pa.concat_arrays(arrays)
    return pa.Table.from_struct_array(arr)


class ProjectionDiverged(Exception):
    """The table is not a prefix of the journal: it needs ``rebuild`` (after ``verify``)."""


PROJECTION_NICE = 10


class Projection:
    """Ingests the journal into DuckDB, in bulk, idempotently (only seq > max(seq))."""

    def __init__(self, db_path: Path | str, journal_dir: Path | str, batch_rows: int = 122_880,
                 interval_ms: int = 200, indexes: bool = True, threads: int | None = 1,
                 fast_ingest: bool = True, bulk_threads: int | None = None,
                 bulk_batch_rows: int | None = None, prefetch: bool | None = None):
        self.db_path = Path(db_path)
        self.journal_dir = Path(journal_dir)
        self.batch_rows = int(batch_rows)
        self.interval = interval_ms / 1000.0
        self.indexes = indexes
        self.threads = threads
        # catch_up reads and parses the journal files in compiled kernels (``ingest``); False:
        # the reference path (``JournalReader.read_ndjson`` + Arrow's JSON reader)
        self.fast_ingest = fast_ingest
        # a catch-up that finds a backlog (a full batch) switches to bulk mode: batches of
        # ``bulk_batch_rows``, DuckDB on ``bulk_threads`` threads, the next batch read and parsed
        # (GIL released) while DuckDB inserts the current one. Defaults: the projection's
        # ``threads`` and ``batch_rows``, prefetch only with more than one bulk thread (an
        # in-process projection keeps to one core); the projection process (``projector``,
        # SCHED_IDLE) and ``rebuild`` use every core.
        self.bulk_threads = bulk_threads if bulk_threads is not None else threads
        self.bulk_batch_rows = int(bulk_batch_rows or batch_rows)
        self.prefetch = prefetch if prefetch is not None else (self.bulk_threads or 2) > 1
        self._con: duckdb.DuckDBPyConnection | None = None
        self._con_file: tuple[int, int] | None = None   # (device, inode) of the file it opened
        self._rebuilding = False       # rebuild(): _ensure_schema drops an old table unchecked
        self._lock = threading.RLock()
        self._reader: JournalReader | None = None
        self._db_max = 0
        self._journal_known = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self.rows_ingested = 0
        self._indexed = False
        # in-memory feed: lists of records from the engine thread (``feed``), ingested by the
        # background thread without reading the journal back
        self._feed: collections.deque = collections.deque()
        self._feed_rows = 0
        self._feed_ok = False          # True once the table caught up with the journal
        self.max_feed_rows = 2_000_000  # beyond this the feed is dropped: the journal has it
        self.rows_from_feed = 0
        self.rows_from_journal = 0
        self.rows_from_tap = 0
        # payloads of flushed records straight from the Journal this process has open on
        # journal_dir (``Journal.tap``), attached by ``start``/``attach_journal``
        self._tap = None               # a journal.JournalTap
        self._tap_journal = None

    # -- connection
    def _file_id(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.db_path)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def _connect(self) -> duckdb.DuckDBPyConnection:
        if self._con is not None:
            if self._file_id() == self._con_file:
                return self._con
            # the file was removed or replaced under the connection (which would go on writing
            # to a file nobody can open): a new one, filled from the journal
            log.warning("audit projection: %s was removed or replaced; projecting into a new file", self.db_path)
            self.close()
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        config = {}
        if self.threads:
            config["threads"] = int(self.threads)
        con = duckdb.connect(str(self.db_path), config=config)
        try:
            self._ensure_schema(con)
            self._db_max = con.execute(f"SELECT coalesce(max(seq), 0) FROM {TABLE}").fetchall()[0][0]
        except BaseException:
            con.close()
            raise
        self._con = con
        self._con_file = self._file_id()
        self._reader = None
        self._indexed = False
        with _OPEN_LOCK:
            _OPEN[str(self.db_path.resolve())] = self
        return con

    def _ensure_schema(self, con) -> None:
        old = stored_hash_type(con)
        if old is None or is_current_layout(con):
            con.execute(create_table_sql())
            con.execute(_view_sql())
            return
        hash_sql = "hash"
        if old == "BLOB":
            old = "bytes, without a column added since"
            hash_sql = column_sql("hash")
        # written by an earlier version (hashes as text, a column missing): the table is a projection of the
        # journal, so it is made again in the current layout rather than converted in place;
        # but only once the journal is known to hold what the table holds (its last row is the
        # journal's record of the same seq, the check catch_up makes of any table): a table
        # ahead of or forked from the journal keeps the only copy of its rows until the
        # operator runs verify, then rebuild (which skips this check)
        if not self._rebuilding:
            last = con.execute(f"SELECT seq, {hash_sql} FROM {TABLE} ORDER BY seq DESC LIMIT 1").fetchall()
            if last:
                self._check_journal_has(last[0][0], last[0][1],
                                        f"(a table of an earlier version, hashes as {old}, not rebuilt)")
        log.warning("audit projection %s: a table of an earlier version (hashes as %s); "
                    "rebuilding the table from the journal", self.db_path, old)
        # one transaction: a failure or a crash half way leaves the old table as it was
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(f"DROP VIEW IF EXISTS {DECIMAL_VIEW}")
            con.execute(f"DROP TABLE {TABLE}")
            con.execute(create_table_sql())
            con.execute(_view_sql())
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def _check_journal_has(self, seq: int, db_hash: str | None, note: str = "") -> JournalReader:
        """A reader positioned at ``seq``, once the journal's record of ``seq`` is known to have
        the hash ``db_hash`` (the table's row of that seq); else ProjectionDiverged."""
        cls = FastJournalReader if self.fast_ingest else JournalReader
        reader = cls(self.journal_dir, seq)
        got = reader.read_payloads(1)
        tail = f" {note}" if note else ""
        if not got:
            raise ProjectionDiverged(f"{self.db_path} has rows up to seq {seq} but the journal "
                                     f"ends before it; run rebuild{tail}")
        if db_hash != _loads(got[0]).get("hash"):
            raise ProjectionDiverged(f"{self.db_path} row seq {seq} differs from the journal "
                                     f"record; run verify, then rebuild{tail}")
        return reader

    def _ensure_indexes(self, con) -> None:
        if self.indexes:
            con.execute(f"CREATE INDEX IF NOT EXISTS {TABLE}_order_id ON {TABLE}(order_id)")
            con.execute(f"CREATE INDEX IF NOT EXISTS {TABLE}_cl_ord_id ON {TABLE}(cl_ord_id)")

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                with _OPEN_LOCK:
                    if _OPEN.get(str(self.db_path.resolve())) is self:
                        del _OPEN[str(self.db_path.resolve())]
                try:
                    self._con.close()
                finally:
                    self._con = None
                    self._reader = None
                    self._feed_ok = False

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new connection to the projection's database (for read-side queries; it does not
        wait for a catch-up in progress)."""
        con = self._con
        if con is not None:
            return con.cursor()
        with self._lock:
            return self._connect().cursor()

    # -- ingestion
    def catch_up(self, upto: int | None = None) -> int:
        """Insert every journal record with seq > max(seq) in the table (up to seq ``upto``
        when given). Returns rows added.

        It reads until it reaches the journal's end, which a live writer keeps moving: a read
        that comes back with fewer records than asked for has reached it, so that batch is the
        last of the call (every record written before the call is in by then). Without that
        stop, a follower of a live journal (the projection process) inserted a few records at a
        time in an endless call, burning a core at 1,000 orders/s. The background thread also
        bounds it by the first record the tap or the feed holds, and takes the rest from memory."""
        with self._lock:
            con = self._connect()
            if self._reader is None or self._reader.next_seq != self._db_max + 1:
                self._reader = self._open_reader(con)
            reader = self._reader
            added = 0
            batch_rows = self.batch_rows
            pending = None        # the next batch, being read and parsed in the prefetch thread
            asked = 0             # records asked of the read that made ``tbl``
            bulk = False
            try:
                while True:
                    if pending is not None:
                        tbl = pending.result()
                        pending = None
                    else:
                        asked = self._want(upto, self._db_max, batch_rows)
                        tbl = self._read_batch(reader, asked)
                    if tbl is None:
                        break
                    n = tbl.num_rows
                    at_end = n < asked   # the reader stopped at the journal's end: last batch
                    first = tbl.column(0)[0].as_py()
                    if first != self._db_max + 1:  # pragma: no cover - reader guarantees it
                        raise RuntimeError(f"projection expected seq {self._db_max + 1}, got {first}")
                    if n >= self.batch_rows and not bulk and self.fast_ingest:
                        # a backlog: bigger batches, more DuckDB threads, and the next batch read
                        # and parsed while this one is inserted
                        bulk = True
                        batch_rows = max(self.batch_rows, self.bulk_batch_rows)
                        self._set_bulk(con, True)
                    if bulk and self.prefetch and not at_end:
                        w = self._want(upto, self._db_max + n, batch_rows)
                        if w > 0:
                            pending = _prefetch_pool().submit(self._read_batch, reader, w)
                            asked = w
                    self._insert(con, tbl)
                    del tbl
                    self._db_max += n
                    added += n
                    if at_end:
                        break
            except BaseException:
                if pending is not None:
                    try:
                        pending.result()
                    except BaseException:
                        pass
                self._reader = None  # re-read max(seq) next time
                try:
                    self._db_max = con.execute(f"SELECT coalesce(max(seq), 0) FROM {TABLE}").fetchall()[0][0]
                except Exception:  # pragma: no cover
                    self.close()
                raise
            finally:
                if bulk and self._con is not None:
                    self._set_bulk(con, False)
            if not self._indexed:
                self._ensure_indexes(con)
                self._indexed = True
            self._journal_known = max(self._journal_known, reader.next_seq - 1)
            self.rows_ingested += added
            self.rows_from_journal += added
            return added

    @staticmethod
    def _want(upto: int | None, db_max: int, batch_rows: int) -> int:
        return batch_rows if upto is None else min(batch_rows, upto - db_max)

    def _read_batch(self, reader, want: int) -> pa.Table | None:
        """The next ``want`` journal records as an Arrow table (None when there are none)."""
        if want <= 0:
            return None
        if self.fast_ingest:
            return reader.read_arrow(want)
        count, blob = reader.read_ndjson(want)
        if not count:
            return None
        return ndjson_to_arrow(blob, count)

    def _set_bulk(self, con, on: bool) -> None:
        """DuckDB settings for a backlog: ``bulk_threads`` threads, and insertion order not
        preserved (each thread appends whole runs of rows; every query orders by seq)."""
        if not self.bulk_threads or self.bulk_threads == self.threads:
            return
        if on:
            con.execute(f"SET threads = {int(self.bulk_threads)}")
            con.execute("SET preserve_insertion_order = false")
        else:
            con.execute(f"SET threads = {int(self.threads or os.cpu_count() or 1)}")
            con.execute("RESET preserve_insertion_order")

    def _insert(self, con, tbl: pa.Table) -> None:
        con.register("_audit_ingest", to_storage(tbl))
        try:
            con.execute(f"INSERT INTO {TABLE} SELECT * FROM _audit_ingest")
        finally:
            con.unregister("_audit_ingest")

    def _insert_or_resync(self, con, tbl: pa.Table) -> None:
        """Insert rows held in memory; if that fails, what memory held is in the journal: read
        max(seq) again and let the next catch-up take the rows from the files."""
        try:
            self._insert(con, tbl)
        except BaseException:
            self._feed_ok = False
            self._reader = None
            self._db_max = con.execute(f"SELECT coalesce(max(seq), 0) FROM {TABLE}").fetchall()[0][0]
            raise

    def ingest_records(self, recs: list[dict]) -> int:
        """Insert journal records held in memory (seq-ordered dicts as ``Journal.append``
        returned them, already flushed to the journal). Records at or below the table's max seq
        are skipped; a gap before a record (say a session event journaled outside a batch) is
        filled from the journal files first. Returns rows added."""
        if not recs:
            return 0
        with self._lock:
            con = self._connect()
            if not self._feed_ok:
                self.catch_up(upto=recs[0]["seq"] - 1)
                self._feed_ok = True
            added = 0
            start = 0
            n = len(recs)
            while start < n:
                # skip what the table has
                while start < n and recs[start]["seq"] <= self._db_max:
                    start += 1
                if start == n:
                    break
                if recs[start]["seq"] != self._db_max + 1:
                    got = self.catch_up(upto=recs[start]["seq"] - 1)  # the journal has them
                    if not got and recs[start]["seq"] != self._db_max + 1:
                        raise RuntimeError(f"projection: records {self._db_max + 1}..{recs[start]['seq'] - 1} "
                                           f"are neither fed nor in the journal")
                    added += got
                    continue
                end = start + 1
                seq = recs[start]["seq"]
                while end < n and recs[end]["seq"] == seq + 1:
                    seq += 1
                    end += 1
                tbl = records_to_arrow(recs[start:end])
                self._insert_or_resync(con, tbl)
                self._db_max = seq
                added += end - start
                self.rows_from_feed += end - start
                start = end
            if not self._indexed:
                self._ensure_indexes(con)
                self._indexed = True
            self._journal_known = max(self._journal_known, self._db_max)
            self.rows_ingested += added
            return added

    def attach_journal(self, journal=None) -> bool:
        """Take the payloads of flushed records from ``journal`` (by default the ``Journal`` this
        process has open on ``journal_dir``) through its ``tap`` instead of the ``feed`` dicts:
        the background thread then joins the already-encoded JSON and parses it with Arrow's
        C++ reader, GIL released, rather than building Arrow from Python dicts."""
        j = journal if journal is not None else open_journal(self.journal_dir)
        if j is None:
            return False
        self._tap = j.tap()
        self._tap_journal = j
        return True

    def detach_journal(self) -> None:
        j, self._tap_journal = self._tap_journal, None
        if j is not None and self._tap is not None and j._tap is self._tap:
            j.untap()
        self._tap = None

    def ingest_payloads(self, first_seq: int, payloads: list) -> int:
        """Insert the journal payloads of seqs ``first_seq, first_seq + 1, ...`` (flushed by this
        process's journal). Seqs at or below the table's max are skipped; a gap before them is
        filled from the journal files first. Returns rows added."""
        if not payloads:
            return 0
        with self._lock:
            con = self._connect()
            added = 0
            if not self._feed_ok:
                added += self.catch_up(upto=first_seq - 1)
                self._feed_ok = True
            skip = self._db_max + 1 - first_seq
            if skip < 0:
                added += self.catch_up(upto=first_seq - 1)   # the journal has the records in between
                skip = self._db_max + 1 - first_seq
                if skip < 0:
                    raise RuntimeError(f"projection: records {self._db_max + 1}..{first_seq - 1} are "
                                       f"neither fed nor in the journal")
            if skip >= len(payloads):
                return added
            if skip:
                payloads = payloads[skip:]
            tbl = payloads_to_arrow(payloads)
            seqs = tbl.column(0)
            n = tbl.num_rows
            if n != len(payloads) or seqs[0].as_py() != self._db_max + 1 or seqs[n - 1].as_py() != self._db_max + n:
                raise RuntimeError(f"projection: payloads do not carry seqs {self._db_max + 1}..{self._db_max + n}")
            self._insert_or_resync(con, tbl)
            self._db_max += n
            self.rows_from_tap += n
            self.rows_ingested += n
            self._journal_known = max(self._journal_known, self._db_max)
            if not self._indexed:
                self._ensure_indexes(con)
                self._indexed = True
            return added + n

    def _catch_up_bound(self) -> int | None:
        """The last seq to read from the journal files before the records held in memory (the
        tap's or the feed's first) take over; None (read to the end) when nothing is held."""
        tap = self._tap
        if tap is not None:
            first = tap.first_seq()
            if first is not None:
                return first - 1
            j = self._tap_journal
            # everything flushed after this read goes to the tap
            return j.written_seq if j is not None and j._tap is tap else None
        for batch in list(self._feed):
            for e in batch:
                seq = e.get("seq")
                if seq is not None:
                    return seq - 1
        return None

    def _drain_tap(self) -> int:
        """Ingest what the journal's tap holds, in batches of up to ``batch_rows`` records (one
        O(1) swap of the tap's buffer: no per-record or per-flush Python work here)."""
        tap = self._tap
        added = 0
        while True:
            first, payloads = tap.take()
            if not payloads:
                return added
            step = self.batch_rows
            for i in range(0, len(payloads), step):
                added += self.ingest_payloads(first + i, payloads[i:i + step])

    def feed(self, events: list[dict]) -> None:
        """Hand the projection the events of a batch the journal has flushed (a
        ``Gateway.on_events`` hook: runs on the engine thread, so it only queues the list).
        Events without ``seq`` (not journaled: status answers) are ignored later. With the
        journal's tap attached the dicts are not kept (the tap has the payloads): this only
        counts them and wakes the thread once a batch is due."""
        if not events:
            return
        if self._tap is None:
            self._feed.append(events)
        self._feed_rows += len(events)
        last = events[-1].get("seq")
        if last is not None and last > self._journal_known:
            self._journal_known = last
        if self._feed_rows >= self.batch_rows and not self._wake.is_set():
            self._wake.set()

    def _drain_feed(self) -> int:
        """Ingest everything queued by ``feed`` (background thread)."""
        feed = self._feed
        if self._tap is not None:   # the journal hands us the payloads: the dicts are not needed
            feed.clear()
            self._feed_rows = 0
            return self._drain_tap()
        if self._feed_rows > self.max_feed_rows:   # far behind (DB unavailable?): use the journal
            feed.clear()
            self._feed_rows = 0
            self._feed_ok = False
            return self.catch_up()
        added = 0
        while feed:
            recs: list[dict] = []
            while feed and len(recs) < self.batch_rows:
                batch = feed.popleft()
                self._feed_rows -= len(batch)
                recs.extend(e for e in batch if "seq" in e)
            if recs:
                if any(recs[i]["seq"] > recs[i + 1]["seq"] for i in range(len(recs) - 1)):
                    recs.sort(key=_seq_key)  # pragma: no cover - batches arrive in seq order
                added += self.ingest_records(recs)
        return added

    def _open_reader(self, con) -> JournalReader:
        """A reader positioned after the table's last row, once that row is known to be the
        journal's record of the same seq (a table ahead of or forked from the journal, say after
        a power cut lost the journal's unsynced tail, is an error until ``rebuild``)."""
        cls = FastJournalReader if self.fast_ingest else JournalReader
        if self._db_max == 0:
            return cls(self.journal_dir, 1)
        db_hash = con.execute(f"SELECT {column_sql('hash')} FROM {TABLE} WHERE seq = ?", [self._db_max]).fetchall()
        return self._check_journal_has(self._db_max, db_hash[0][0] if db_hash else None)

    def rebuild(self) -> int:
        """Drop the table and recreate it from the journal. Returns the rows inserted."""
        with self._lock:
            self._rebuilding = True     # a table of an earlier version is dropped unchecked
            try:
                con = self._connect()
            finally:
                self._rebuilding = False
            con.execute(f"DROP VIEW IF EXISTS {DECIMAL_VIEW}")
            con.execute(f"DROP TABLE IF EXISTS {TABLE}")
            self._ensure_schema(con)
            self._db_max = 0
            self._reader = None
            # the ART indexes first, maintained by every insert: building them after the load
            # cost more (2026-11-25, 300k events, 5 interleaved pairs: 186k vs 200k events/s,
            # 156k vs 165k events/CPU-s)
            self._ensure_indexes(con)
            self._indexed = True
            # an offline bulk load: the backlog options of the projection process (DuckDB on
            # every core but one, the next batch parsed on the core left)
            from .projector import projection_options
            opts = projection_options()
            saved = self.bulk_threads, self.bulk_batch_rows, self.prefetch
            self.bulk_threads, self.bulk_batch_rows, self.prefetch = (
                opts["bulk_threads"], opts["bulk_batch_rows"], opts["prefetch"])
            try:
                return self.catch_up()
            finally:
                self.bulk_threads, self.bulk_batch_rows, self.prefetch = saved

    def max_seq(self) -> int:
        with self._lock:
            self._connect()
            return self._db_max

    def lag(self) -> int:
        """Journal seq known to the projection minus the max seq in DuckDB (for /health).

        The journal's seq is the larger of what the projection has read, what ``notify`` told
        it, and the written seq of a ``Journal`` this process has open on the directory."""
        known = self._journal_known
        j = open_journal(self.journal_dir)
        if j is not None:
            known = max(known, j.written_seq)
        return max(0, known - self._db_max)

    # -- background mode
    def notify(self, last_seq: int | None = None) -> None:
        """Poke the background thread (optionally telling it the journal's last seq)."""
        if last_seq is not None and last_seq > self._journal_known:
            self._journal_known = last_seq
        self._wake.set()

    # the engine thread waits at most about this long for the GIL while the projection thread
    # runs Python code (CPython's default is 5 ms)
    SWITCH_INTERVAL_S = 0.001

    def start(self) -> None:
        """Ingest in a background thread (catch-up from the journal, then the ``feed``). Also
        lowers the interpreter's switch interval to ``SWITCH_INTERVAL_S`` if it is longer, so
        the engine thread is not kept waiting for the GIL."""
        if self._thread is not None:
            return
        if sys.getswitchinterval() > self.SWITCH_INTERVAL_S:
            sys.setswitchinterval(self.SWITCH_INTERVAL_S)
        if self._tap is None:
            self.attach_journal()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="audit-projection", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # The projection is a follower: on a busy box the order path's thread goes first.
        # (Linux applies a nice value to one thread when given its native id.)
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), PROJECTION_NICE)
        except (OSError, AttributeError):
            pass
        backoff = self.interval
        while not self._stop.is_set():
            self._wake.wait(backoff)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                if not self._feed_ok:
                    self.catch_up(upto=self._catch_up_bound())
                    self._feed_ok = True
                self._drain_feed()
                self.last_error = None
                backoff = self.interval
            except Exception as e:  # locked/missing DB, journal being cut...: retry later
                msg = f"{type(e).__name__}: {e}"
                if msg != self.last_error:
                    log.warning("audit projection catch-up failed, will retry: %s", msg)
                self.last_error = msg
                self._feed_ok = False     # what the feed held is in the journal: read it back
                self._feed.clear()
                self._feed_rows = 0
                self.close()
                backoff = min(5.0, max(self.interval, backoff * 2))

    def stop(self) -> None:
        """Stop the thread, do a final catch-up and close the connection."""
        if self._thread is not None:
            self._stop.set()
            self._wake.set()
            self._thread.join()
            self._thread = None
        try:
            if self._feed_ok:
                self._drain_feed()
            self.catch_up()
        except Exception as e:
            log.warning("audit projection final catch-up failed: %s", e)
        finally:
            self.detach_journal()
            self.close()

    def __enter__(self) -> "Projection":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


_POOL = None
_POOL_LOCK = threading.Lock()


def _prefetch_pool():
    """One worker thread for catch-up prefetch (reads and parses the next batch)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            from concurrent.futures import ThreadPoolExecutor
            _POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-prefetch")
        return _POOL


def _seq_key(r: dict) -> int:
    return r["seq"]


def connect_readonly(db_path: Path | str) -> duckdb.DuckDBPyConnection:
    """A connection for queries. If this process runs the projection on ``db_path`` it is a
    cursor on that database (DuckDB allows one configuration per file per process); otherwise
    a read-only connection (which fails while another process holds the file read-write)."""
    key = str(Path(db_path).resolve())
    with _OPEN_LOCK:
        proj = _OPEN.get(key)
    if proj is not None:
        try:
            return proj.cursor()
        except Exception:  # pragma: no cover - projection closing
            pass
    return duckdb.connect(str(db_path), read_only=True)


def order_lifecycle(con, *, order_id: int | None = None, cl_ord_id: str | None = None,
                    columns: Iterable[str] = COLUMN_NAMES) -> list[dict]:
    """All events of one order, in seq order: by ``order_id``, or by a ``cl_ord_id`` the order had
    (the order ids carrying it are looked up first, so both steps are index point lookups;
    events with that cl_ord_id and no order_id, such as early rejects, are included)."""
    cols = ", ".join(column_sql(c) for c in columns)
    if order_id is not None:
        cur = con.execute(f"SELECT {cols} FROM {TABLE} WHERE order_id = ? ORDER BY seq", [order_id])
    elif cl_ord_id is not None:
        ids = [r[0] for r in con.execute(f"SELECT DISTINCT order_id FROM {TABLE} WHERE cl_ord_id = ?",
                                         [cl_ord_id]).fetchall()]
        parts, params = [], []
        for oid in ids:
            if oid is None:
                parts.append(f"SELECT {cols} FROM {TABLE} WHERE cl_ord_id = ? AND order_id IS NULL")
            else:
                parts.append(f"SELECT {cols} FROM {TABLE} WHERE order_id = ?")
            params.append(cl_ord_id if oid is None else oid)
        if not parts:
            return []
        cur = con.execute(" UNION ALL ".join(parts) + " ORDER BY seq", params)
    else:
        raise ValueError("order_id or cl_ord_id is required")
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]
