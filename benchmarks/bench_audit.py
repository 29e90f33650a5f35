"""Audit trail benchmark: journal append+flush, DuckDB projection ingest, lifecycle query.

    python -m benchmarks.bench_audit --events 300000 --lifecycle-events 10000000 --json bench-audit.json

1. Journal: ``events`` order-lifecycle events appended in batches of ``--batch`` then one
   ``flush()`` (group commit, fsync policy "interval" 5 ms), as the engine does. Reported: wall
   and engine-thread CPU per event, minus the same loop without a journal (what journaling
   *adds* to the order path), ``--reps`` repetitions (medians); beside it, in the same run, the
   floor: the bare record copy + ``orjson.dumps`` + SHA-256 of the same events (no CRC-32: since
   2026-11-25 19:30 UTC the record's SHA-256 is the frame checksum).
   ``journal_ab``: the same measurement with the native hash chain (``audit/chain_native``, the
   default) and the pure-Python path (``OMS_JOURNAL_NATIVE=0``) alternating in one process,
   ``--ab-reps`` pairs, medians and minima; also per flush of 2 records (``batch2``: the order
   path's common flush, an order's command and its event); beside them the part of ``append``
   each path does in Python (record copy + ``orjson.dumps``, plus the type check on the Python
   path; the native path checks types at flush), same events, same run.
2. Projection into a fresh DuckDB file, same events, same run:
   - ``catch_up()``: the journal files read back and parsed: what ``oms serve``'s projection
     process does all day (audit/projector.py), and any projection at startup or after a gap
     (``projection_with_indexes`` is that path as the projection process runs it, ART indexes
     on; ``ingest_compare`` puts it beside the reference path and ``rebuild`` in one run,
     interleaved repetitions, medians: **the headline DuckDB ingest figure**;
     ``projection_catch_up_parts`` splits both paths into read + frame check, JSON -> Arrow,
     and DuckDB's INSERT of the ready tables on 1 thread and on every core, the floor);
   - tap: the payload bytes the journal flushed (``Journal.tap``, for a projection thread in the
     journal's own process), newline-joined, Arrow's C++ JSON reader, INSERT (GIL released);
   - ``ingest_records()``: the record dicts ``Journal.append`` returned (the gateway's
     ``on_events`` feed), Arrow built from the dicts (GIL held);
   plus the floor beside them: DuckDB's own INSERT of the ready Arrow table, and the same
   insert into an in-memory database (no compression/storage).
3. Concurrent: the order-path loop (append + flush + ``Projection.feed``) with a projection
   thread running beside it in the same process vs the same loop alone: the order path's
   slowdown and how fast the projection keeps up (``oms serve`` avoids that slowdown by running
   the projection in a process of its own).
4. Lifecycle: a table of ``lifecycle_events`` rows laid out as the projection writes it (seq
   order, order ids increasing with seq, 4 events per order), built directly in DuckDB; time of
   ``order_lifecycle`` by order_id and by cl_ord_id, without and with ART indexes.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
import zlib
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa

from oms_trading.audit.journal import Journal
from oms_trading.audit.projection import (TABLE, Projection, create_table_sql, order_lifecycle, payloads_to_arrow,
                                          records_to_arrow, to_storage)
from oms_trading.audit.projector import projection_options
from oms_trading.audit.queries import lifecycle

T0 = 1_700_000_000_000_000_000
TYPES = ("order_received", "order_accepted", "order_partially_filled", "order_filled")


def machine() -> dict:
    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    t = time.perf_counter()
    x = 0
    for i in range(2_000_000):
        x += i
    loop = time.perf_counter() - t
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "duckdb": duckdb.__version__, "orjson": orjson.__version__,
            "loadavg": os.getloadavg(), "py_loop_2M_s": round(loop, 4)}


def make_event(i: int) -> dict:
    oid = i // 4 + 1
    k = i % 4
    e = {"type": TYPES[k], "ts": T0 + i * 1000, "order_id": oid, "cl_ord_id": f"C{oid:010d}",
         "session": "CLIENT1->OMS", "account": "ACC1", "symbol": "AAPL", "side": "1", "ord_type": "2",
         "tif": "0", "price": "187.25", "qty": 100, "ord_status": "0", "cum_qty": 25 * k,
         "leaves_qty": 100 - 25 * k, "text": None}
    if k == 0:   # a command carries the MsgSeqNum it came in (after "session", as the gateway puts it)
        e = {**{key: e[key] for key in ("type", "ts", "order_id", "cl_ord_id", "session")}, "msg_seq_num": oid + 1,
             **{key: v for key, v in e.items() if key not in ("type", "ts", "order_id", "cl_ord_id", "session")}}
    if k >= 2:
        e.update(exec_id=f"E{i}", exec_type="F", last_px="187.25", last_qty=25, trade_id=i,
                 contra_order_id=oid + 7, liquidity="A", avg_px="187.25")
    return e


def bench_journal(jdir: Path, events: int, batch: int, policy: str, keep: list | None = None,
                  tap: list | None = None, native: bool | None = None) -> dict:
    """Journal append + flush per batch of ``batch`` events, as the engine thread does it.

    Besides wall time and process CPU (which includes the fsync thread), the engine thread's
    own CPU time (``time.thread_time``): the fsync runs in another thread and, on an idle core,
    adds nothing to the order path. The no-journal loop of the same run (same events, same
    batching, the record handed to a list instead of the journal) is subtracted to give what
    journaling *adds* per event."""
    pool = [make_event(i) for i in range(4096)]
    j = Journal(jdir, fsync=policy, fsync_interval_ms=5, native=native)
    is_native = j.native
    if tap is not None:
        taps = j.tap()
    flush_ns = []
    n = 0
    append = j.append
    pc = time.perf_counter_ns
    t0 = time.perf_counter()
    c0 = time.process_time()
    th0 = time.thread_time()
    while n < events:
        m = min(batch, events - n)
        s = pc()
        if keep is None:
            for k in range(n, n + m):
                append(pool[k & 4095])
        else:
            for k in range(n, n + m):
                keep.append(append(pool[k & 4095]))
        j.flush()
        flush_ns.append(pc() - s)
        n += m
        if tap is not None and len(taps) >= 100_000:
            tap.append(taps.take())
    dt = time.perf_counter() - t0
    cpu = time.process_time() - c0
    th = time.thread_time() - th0
    if tap is not None and len(taps):
        tap.append(taps.take())
    j.close()
    flush_ns.sort()
    # the same loop without a journal (the order path's own per-event overhead of this loop)
    sink: list = []
    put = sink.append
    t1 = time.perf_counter()
    th1 = time.thread_time()
    n = 0
    while n < events:
        m = min(batch, events - n)
        for k in range(n, n + m):
            put(pool[k & 4095])
        sink.clear()
        n += m
    base_wall = time.perf_counter() - t1
    base_th = time.thread_time() - th1
    # the floor, same events, same run: the record copy, canonical JSON and SHA-256 alone (what
    # append cannot do without); and, for reference, a CRC-32 of the JSON (b'OMSJ' frames had one)
    sha = hashlib.sha256
    crc = zlib.crc32
    dumps = orjson.dumps
    ph = "0" * 64
    t2 = time.perf_counter()
    c2 = time.process_time()
    for k in range(events):
        r = dict(pool[k & 4095])
        r["seq"] = k + 1
        r["prev_hash"] = ph
        b = dumps(r)
        sha(b).digest().hex()
    floor = time.perf_counter() - t2
    floor_cpu = time.process_time() - c2
    t3 = time.perf_counter()
    for k in range(events):
        crc(b)
    crc_s = time.perf_counter() - t3
    size = sum(p.stat().st_size for p in jdir.glob("journal-*.log"))
    return {
        "events": events, "batch": batch, "fsync": policy, "tap": tap is not None, "keeps_records": keep is not None,
        "native": is_native,
        "events_per_s": round(events / dt), "us_per_event": round(dt / events * 1e6, 3),
        "engine_thread_cpu_us_per_event": round(th / events * 1e6, 3),
        "cpu_us_per_event": round(cpu / events * 1e6, 3),  # process CPU incl. the fsync thread
        "no_journal_loop_us_per_event": round(base_wall / events * 1e6, 3),
        "added_us_per_event_wall": round((dt - base_wall) / events * 1e6, 3),
        "added_us_per_event_engine_cpu": round((th - base_th) / events * 1e6, 3),
        "batch_us_p50": round(flush_ns[len(flush_ns) // 2] / 1e3, 1),
        "batch_us_p99": round(flush_ns[int(len(flush_ns) * 0.99)] / 1e3, 1),
        "batch_us_max": round(flush_ns[-1] / 1e3, 1),
        "floor_copy_dumps_sha256_us_per_event": round(floor / events * 1e6, 3),
        "floor_cpu_us_per_event": round(floor_cpu / events * 1e6, 3),
        "crc32_of_record_us_per_event": round(crc_s / events * 1e6, 3),
        "bytes_per_event": round(size / events, 1),
    }


def bench_journal_reps(base: Path, events: int, batch: int, reps: int) -> dict:
    """``reps`` runs of ``bench_journal`` (fsync interval, the server's policy); medians."""
    runs = [bench_journal(base / f"journal-rep{r}", events, batch, "interval") for r in range(reps)]
    keys = ("us_per_event", "engine_thread_cpu_us_per_event", "cpu_us_per_event",
            "no_journal_loop_us_per_event", "added_us_per_event_wall", "added_us_per_event_engine_cpu",
            "floor_copy_dumps_sha256_us_per_event")
    out = {"reps": reps, "events": events, "batch": batch}
    for k in keys:
        vals = sorted(r[k] for r in runs)
        out[k + "_median"] = vals[len(vals) // 2]
        out[k + "_all"] = vals
    return out


def bench_journal_ab(base: Path, events: int, batch: int, reps: int) -> dict:
    """Native hash chain vs pure-Python journal, alternating in one process (``reps`` pairs,
    the order flipped every pair), fsync interval: what journaling adds per event, engine-thread
    CPU and wall, medians and minima; the same for flushes of 2 records (the order path flushes
    once per socket read, often with just an order's command and its event), per flush. Plus the
    part of ``append`` each path does in Python: type check + copy + ``orjson.dumps`` (Python
    path); copy + ``orjson.dumps`` with the passthrough options, types checked at flush (native)."""
    from oms_trading.audit import chain_native
    from oms_trading.audit.journal import _PASSTHROUGH, _types_ok
    runs: dict = {"native": [], "python": []}
    small: dict = {"native": [], "python": []}
    small_events = max(2, min(events, 20_000) // 2 * 2)
    for r in range(reps):
        order = (True, False) if r % 2 == 0 else (False, True)
        for native in order:
            name = "native" if native else "python"
            d = base / f"journal-ab-{r}-{int(native)}"
            res = bench_journal(d, events, batch, "interval", native=native)
            if res["native"] != native:
                raise RuntimeError(f"native journal unavailable: {chain_native.error}")
            runs[name].append(res)
            shutil.rmtree(d, ignore_errors=True)
            small[name].append(bench_journal(d, small_events, 2, "interval", native=native))
            shutil.rmtree(d, ignore_errors=True)
    out: dict = {"reps": reps, "events": events, "batch": batch, "fsync": "interval"}
    for name, rs in runs.items():
        for k in ("added_us_per_event_engine_cpu", "added_us_per_event_wall", "engine_thread_cpu_us_per_event",
                  "floor_copy_dumps_sha256_us_per_event", "batch_us_p50", "batch_us_p99"):
            vals = sorted(x[k] for x in rs)
            out[f"{name}_{k}_median"] = vals[len(vals) // 2]
            out[f"{name}_{k}_min"] = vals[0]
    for name, rs in small.items():   # 2 appends + 1 flush, engine-thread CPU, per flush
        vals = sorted(2 * x["added_us_per_event_engine_cpu"] for x in rs)
        out[f"{name}_batch2_added_us_per_flush_engine_cpu_median"] = round(vals[len(vals) // 2], 3)
        out[f"{name}_batch2_added_us_per_flush_engine_cpu_min"] = round(vals[0], 3)
    # what append does in Python: the Python path (type check + copy + seq + orjson.dumps) and the
    # native path (copy + seq + orjson.dumps with passthrough options; the kernel checks at flush)
    pool = [make_event(i) for i in range(4096)]
    dumps = orjson.dumps
    ph = "0" * 64
    parts: dict = {"python_part_check_copy_dumps": [], "native_part_copy_dumps": []}
    for _ in range(max(3, reps)):
        t = time.thread_time()
        for k in range(events):
            e = pool[k & 4095]
            _types_ok(map(type, e.values()))
            r = dict(e)
            r["seq"] = k + 1
            r["prev_hash"] = ph
            r["hash"] = ph
            dumps(r)
        parts["python_part_check_copy_dumps"].append((time.thread_time() - t) / events * 1e6)
        t = time.thread_time()
        for k in range(events):
            r = dict(pool[k & 4095])
            r["seq"] = k + 1
            r["prev_hash"] = ph
            r["hash"] = ph
            dumps(r, option=_PASSTHROUGH)
        parts["native_part_copy_dumps"].append((time.thread_time() - t) / events * 1e6)
    for name, vals in parts.items():
        vals.sort()
        out[f"{name}_us_per_event_median"] = round(vals[len(vals) // 2], 3)
        out[f"{name}_us_per_event_min"] = round(vals[0], 3)
    return out


def _remove_db(db: Path) -> None:
    """Start from no database: the file and its write-ahead log."""
    for f in (db, Path(str(db) + ".wal")):
        if f.exists():
            f.unlink()


def bench_projection(jdir: Path, db: Path, events: int, indexes: bool, **kw) -> dict:
    """``Projection.catch_up`` into a fresh file (``kw``: Projection options, e.g. the reference
    path ``fast_ingest=False``); with ``indexes`` the ART indexes exist before the load (steady
    state: every insert maintains them)."""
    _remove_db(db)
    p = Projection(db, jdir, indexes=indexes, **kw)
    if indexes:
        p._ensure_indexes(p._connect())
    return {"indexes": indexes, **_timed_load(p, p.catch_up)}


def _timed_load(p: Projection, load) -> dict:
    """Run ``load()`` (rows loaded), close ``p``; rows, wall and CPU time, rates."""
    t = time.perf_counter()
    c = time.process_time()
    n = load()
    dt = time.perf_counter() - t
    cpu = time.process_time() - c
    p.close()
    return {"rows": n, "seconds": round(dt, 3), "events_per_s": round(n / dt), "cpu_s": round(cpu, 3),
            "events_per_cpu_s": round(n / cpu)}


def bench_rebuild(jdir: Path, db: Path, **kw) -> dict:
    """``Projection.rebuild()`` (drop, load from the journal, ART indexes built at the end), as
    ``oms audit rebuild`` runs it."""
    _remove_db(db)
    p = Projection(db, jdir, **kw)
    p._connect()
    return _timed_load(p, p.rebuild)


# the catch-up paths compared in one run: the reference (Python frame walk + SHA-256 per frame,
# Arrow's JSON reader, DuckDB on 1 thread: the path before 2026-11-25 21:30), the compiled
# path on one core, and the path the projection process runs (compiled, bulk mode on every core)
CATCH_UP_PATHS = {
    "reference_1_thread": dict(fast_ingest=False),
    "fast_1_thread": dict(bulk_threads=1, prefetch=False),
    "fast_serve_all_cores": projection_options(),
}
REBUILD_PATHS = {
    "reference_1_thread": dict(fast_ingest=False),
    "fast_all_cores": dict(),
}


def bench_catch_up_compare(jdir: Path, base: Path, reps: int) -> dict:
    """The catch-up paths (``CATCH_UP_PATHS``, ART on) and rebuild (``REBUILD_PATHS``) over the
    same journal, repetitions interleaved (path A, B, C, A, B, C...), medians: the before/after of
    the DuckDB ingest on the ``oms serve`` path, measured side by side."""
    from oms_trading.audit import ingest
    ingest.warm()
    runs: dict = {f"catch_up.{k}": [] for k in CATCH_UP_PATHS}
    runs.update({f"rebuild.{k}": [] for k in REBUILD_PATHS})
    loads = []
    for _ in range(reps):
        for name, kw in CATCH_UP_PATHS.items():
            runs[f"catch_up.{name}"].append(bench_projection(jdir, base / "cmp.duckdb", 0, True, **kw))
            loads.append(os.getloadavg()[0])
        for name, kw in REBUILD_PATHS.items():
            runs[f"rebuild.{name}"].append(bench_rebuild(jdir, base / "cmp.duckdb", **kw))
            loads.append(os.getloadavg()[0])
    _remove_db(base / "cmp.duckdb")
    out: dict = {"reps": reps, "loadavg_1min_min_max": [min(loads), max(loads)]}
    for key, rs in runs.items():
        out[key] = {"rows": rs[0]["rows"],
                    "events_per_s_median": statistics.median(r["events_per_s"] for r in rs),
                    "events_per_cpu_s_median": statistics.median(r["events_per_cpu_s"] for r in rs),
                    "events_per_s_all": sorted(r["events_per_s"] for r in rs)}
    return out


def bench_catch_up_parts(jdir: Path, db: Path, events: int, batch_rows: int = 122_880) -> dict:
    """What bounds ``catch_up`` (the ``oms serve`` path), step by step over the same journal.

    Reference path: read + frame check (``JournalReader.read_ndjson``, Python per frame), JSON ->
    Arrow (``ndjson_to_arrow``, Arrow's JSON reader). Compiled path (``ingest``): read + frame
    walk + SHA-256 check (``FastJournalReader``'s scan kernel), JSON -> typed Arrow columns
    (``frames_to_arrow``). Then the floor both share: DuckDB's own INSERT of the ready Arrow
    tables into a fresh file with the ART indexes, on 1 thread and on every core."""
    from oms_trading.audit import ingest
    from oms_trading.audit.journal import JournalReader
    from oms_trading.audit.projection import ndjson_to_arrow
    ingest.warm()
    r = JournalReader(jdir)
    c = time.process_time()
    blobs = []
    while True:
        n, blob = r.read_ndjson(batch_rows)
        if not n:
            break
        blobs.append((n, blob))
    read_cpu = time.process_time() - c
    c = time.process_time()
    tbls = [ndjson_to_arrow(b, n) for n, b in blobs]
    parse_cpu = time.process_time() - c
    del blobs
    # compiled path, the same steps
    fr = ingest.FastJournalReader(jdir)
    c = time.process_time()
    frames = []
    while True:
        got = fr._read_frames_fast(batch_rows)
        if not got:
            break
        frames.extend(got)
    fread_cpu = time.process_time() - c
    c = time.process_time()
    ftbls = [ingest.frames_to_arrow(b, ps, pe) for b, ps, pe in frames]
    fparse_cpu = time.process_time() - c
    del frames
    n = sum(t.num_rows for t in tbls)
    assert sum(t.num_rows for t in ftbls) == n
    del ftbls
    out = {"rows": n,
           "reference": {"read_and_check_us_per_event": round(read_cpu / n * 1e6, 3),
                         "json_to_arrow_us_per_event": round(parse_cpu / n * 1e6, 3)},
           "fast": {"read_and_check_us_per_event": round(fread_cpu / n * 1e6, 3),
                    "json_to_arrow_us_per_event": round(fparse_cpu / n * 1e6, 3)}}
    # as the projection inserts them: hashes as bytes (``to_storage``, outside the timing)
    tbls = [to_storage(t) for t in tbls]
    whole = pa.concat_tables(tbls).combine_chunks()
    ncpu = os.cpu_count() or 1
    for threads, one in sorted({(1, False), (ncpu, False), (ncpu, True)}):
        _remove_db(db)
        con = duckdb.connect(str(db), config={"threads": threads, "preserve_insertion_order": threads == 1})
        con.execute(create_table_sql())
        con.execute(f"CREATE INDEX {TABLE}_order_id ON {TABLE}(order_id)")
        con.execute(f"CREATE INDEX {TABLE}_cl_ord_id ON {TABLE}(cl_ord_id)")
        t = time.perf_counter()
        c = time.process_time()
        for tb in ([whole] if one else tbls):
            con.execute(f"INSERT INTO {TABLE} SELECT * FROM tb")
        con.execute("CHECKPOINT")
        ins_cpu = time.process_time() - c
        ins_wall = time.perf_counter() - t
        con.close()
        # batches of 122,880 rows (one row group each, as catch_up inserts), or the whole table
        # in one INSERT (the most DuckDB can spread over its threads)
        out[f"insert_with_art_{threads}_thread" + ("_one_insert" if one else "")] = {
            "us_cpu_per_event": round(ins_cpu / n * 1e6, 3),
            "events_per_s": round(n / ins_wall), "events_per_cpu_s": round(n / ins_cpu)}
    _remove_db(db)
    return out


def bench_feed(jdir: Path, db: Path, records: list, batch_rows: int = 122_880) -> dict:
    """Projection fed from memory (the server's path), beside the DuckDB insert floor."""
    _remove_db(db)
    p = Projection(db, jdir, batch_rows=batch_rows)
    p._connect()
    p._feed_ok = True                 # empty table, records from seq 1: nothing to read back
    t = time.perf_counter()
    c = time.process_time()
    n = 0
    for i in range(0, len(records), batch_rows):
        n += p.ingest_records(records[i:i + batch_rows])
    dt = time.perf_counter() - t
    cpu = time.process_time() - c
    assert p.rows_from_journal == 0 and n == len(records)
    p.close()
    # the parts: dicts -> Arrow (holds the GIL, in 256-record chunks), then DuckDB INSERT
    t = time.perf_counter()
    tbls = [records_to_arrow(records[i:i + batch_rows]) for i in range(0, len(records), batch_rows)]
    conv = time.perf_counter() - t
    out = {"rows": n, "indexes": True, "seconds": round(dt, 3), "events_per_s": round(n / dt),
           "cpu_s": round(cpu, 3), "events_per_cpu_s": round(n / cpu), "to_arrow_events_per_s": round(n / conv)}
    for name, target in (("insert_only_file", str(db) + ".floor"), ("insert_only_memory", ":memory:")):
        if target != ":memory:":
            _remove_db(Path(target))
        con = duckdb.connect(target)
        con.execute(create_table_sql())
        stored = [to_storage(t) for t in tbls]
        t = time.perf_counter()
        for tb in stored:
            con.execute(f"INSERT INTO {TABLE} SELECT * FROM tb")
        out[name + "_events_per_s"] = round(n / (time.perf_counter() - t))
        con.close()
    return out


def bench_tap(jdir: Path, db: Path, entries: list, batch_rows: int = 122_880) -> dict:
    """Projection fed the journal's already-encoded payloads (``Journal.tap``: a projection thread
    in the journal's process), parsed by Arrow's C++ JSON reader and inserted, GIL released."""
    from oms_trading.audit.journal import JournalTap
    _remove_db(db)
    p = Projection(db, jdir, batch_rows=batch_rows)
    p._connect()
    p._feed_ok = True                 # empty table, payloads from seq 1: nothing to read back
    p._tap = JournalTap(max_records=1 << 40)
    for first, payloads in entries:
        p._tap._push(first, payloads)
    n_in = sum(len(x[1]) for x in entries)
    t = time.perf_counter()
    c = time.process_time()
    n = p._drain_tap()
    dt = time.perf_counter() - t
    cpu = time.process_time() - c
    assert p.rows_from_journal == 0 and n == n_in, (n, n_in, p.rows_from_journal)
    p._tap = None
    p.close()
    # the parts: newline-join + Arrow JSON reader, then the INSERT alone
    payloads = [x for e in entries for x in e[1]]
    t = time.perf_counter()
    tbls = [payloads_to_arrow(payloads[i:i + batch_rows]) for i in range(0, len(payloads), batch_rows)]
    conv = time.perf_counter() - t
    return {"rows": n, "indexes": True, "seconds": round(dt, 3), "events_per_s": round(n / dt),
            "cpu_s": round(cpu, 3), "events_per_cpu_s": round(n / cpu),
            "json_to_arrow_events_per_s": round(n / conv)}


def bench_concurrent(base: Path, events: int, batch: int) -> dict:
    """The order path with a projection thread running beside it in the same process: the engine
    loop (journal append + flush + ``Projection.feed``) in this thread, the projection thread
    ingesting either from the journal's tap (payload bytes, Arrow C++ JSON reader, GIL released)
    or from the fed record dicts (``records_to_arrow``, GIL held). Compared with the same loop
    without a projection, same run: the order path's slowdown (mean and per-batch p99/max, where
    GIL stalls show) and how fast the projection keeps up."""
    pool = [make_event(i) for i in range(4096)]
    out = {}
    for mode in ("alone", "tap", "dicts"):
        jdir = base / f"conc-{mode}"
        j = Journal(jdir, fsync="interval", fsync_interval_ms=5)
        p = None
        if mode != "alone":
            p = Projection(base / f"conc-{mode}.duckdb", jdir, interval_ms=50)
            p.start()
            if mode == "dicts":
                p.detach_journal()
        append = j.append
        pc = time.perf_counter_ns
        lat = []
        n = 0
        t0 = time.perf_counter()
        th0 = time.thread_time()
        while n < events:
            m = min(batch, events - n)
            s = pc()
            recs = [append(pool[k & 4095]) for k in range(n, n + m)]
            j.flush()
            if p is not None:
                p.feed(recs)
            lat.append(pc() - s)
            n += m
        dt = time.perf_counter() - t0
        th = time.thread_time() - th0
        lat.sort()
        r = {"us_per_event": round(dt / events * 1e6, 3),
             "engine_thread_cpu_us_per_event": round(th / events * 1e6, 3),
             "batch_us_p50": round(lat[len(lat) // 2] / 1e3, 1),
             "batch_us_p99": round(lat[int(len(lat) * 0.99)] / 1e3, 1),
             "batch_us_p999": round(lat[int(len(lat) * 0.999)] / 1e3, 1),
             "batch_us_max": round(lat[-1] / 1e3, 1)}
        if p is not None:
            p.notify(j.last_seq)
            while p.max_seq() < j.last_seq and time.perf_counter() - t0 < 600:
                time.sleep(0.005)
            total = time.perf_counter() - t0
            r["projection_done_s"] = round(total, 3)
            r["projection_events_per_s"] = round(events / total)
            r["rows_from_tap"] = p.rows_from_tap
            r["rows_from_feed"] = p.rows_from_feed
            r["rows_from_journal"] = p.rows_from_journal
            p.stop()
        j.close()
        out[mode] = r
    for mode in ("tap", "dicts"):
        out[f"order_path_slowdown_us_per_event_{mode}"] = round(out[mode]["us_per_event"] - out["alone"]["us_per_event"], 3)
    return out


def build_lifecycle_table(db: Path, n: int, chunk: int = 1_000_000) -> float:
    """A table of n rows in the projection's physical layout, generated in DuckDB."""
    _remove_db(db)
    con = duckdb.connect(str(db))
    con.execute(create_table_sql())
    t = time.perf_counter()
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        con.execute(f"""
            INSERT INTO {TABLE} (seq, ts, type, order_id, cl_ord_id, session, account, symbol, side,
                ord_type, tif, price, qty, exec_id, exec_type, ord_status, cum_qty, leaves_qty,
                avg_px, last_px, last_qty, prev_hash, hash)
            SELECT i + 1, {T0} + i * 1000,
                ['order_received','order_accepted','order_partially_filled','order_filled'][i % 4 + 1],
                i // 4 + 1, 'C' || lpad(CAST(i // 4 + 1 AS VARCHAR), 10, '0'), 'CLIENT1->OMS',
                'ACC' || CAST((i // 4) % 50 AS VARCHAR), 'SYM' || CAST((i // 4) % 500 AS VARCHAR),
                '1', '2', '0', '187.25', 100,
                CASE WHEN i % 4 >= 2 THEN 'E' || CAST(i AS VARCHAR) END, 'F', '1',
                25 * (i % 4), 100 - 25 * (i % 4), '187.25', '187.25', 25,
                unhex(sha256(CAST(i AS VARCHAR))), unhex(sha256(CAST(i + 1 AS VARCHAR)))
            FROM range({lo}, {hi}) t(i)""")
    dt = time.perf_counter() - t
    con.execute("CHECKPOINT")
    con.close()
    return dt


def time_queries(con, n_orders: int, by: str, reps: int = 60, seed: int = 42) -> dict:
    """``reps`` lifecycle queries of random orders (the first 3 not counted: they warm the
    buffer pool). Give each call its own ``seed``: orders queried before are in DuckDB's
    buffer pool, which made later variants faster than a query of any other order."""
    rng = random.Random(seed)
    ids = [rng.randrange(1, n_orders + 1) for _ in range(reps)]
    out = []
    for k, oid in enumerate(ids):
        t = time.perf_counter()
        if by == "order_id":
            r = order_lifecycle(con, order_id=oid)
        elif by == "cl_ord_id":
            r = order_lifecycle(con, cl_ord_id=f"C{oid:010d}")
        elif by == "queries.lifecycle(order_id)":
            r = lifecycle(con, order_id=oid)
        else:
            r = lifecycle(con, cl_ord_id=f"C{oid:010d}")
        dt = time.perf_counter() - t
        assert len(r) >= 1, (by, oid)
        if k >= 3:  # first queries warm the buffer pool
            out.append(dt * 1e3)
    out.sort()
    return {"p50_ms": round(statistics.median(out), 2), "p90_ms": round(out[int(len(out) * 0.9)], 2),
            "max_ms": round(out[-1], 2)}


def bench_lifecycle(db: Path, n: int) -> dict:
    res = {"rows": n, "query": "order_lifecycle(): all 39 columns, ORDER BY seq, rows as dicts"}
    res["build_s"] = round(build_lifecycle_table(db, n), 2)
    n_orders = (n + 3) // 4
    con = duckdb.connect(str(db))
    # a different sample of orders for each variant (see time_queries)
    res["no_index"] = {"order_id": time_queries(con, n_orders, "order_id", seed=1),
                       "cl_ord_id": time_queries(con, n_orders, "cl_ord_id", seed=2)}
    t = time.perf_counter()
    con.execute(f"CREATE INDEX {TABLE}_order_id ON {TABLE}(order_id)")
    con.execute(f"CREATE INDEX {TABLE}_cl_ord_id ON {TABLE}(cl_ord_id)")
    res["index_build_s"] = round(time.perf_counter() - t, 2)
    res["art_index"] = {"order_id": time_queries(con, n_orders, "order_id", seed=3),
                        "cl_ord_id": time_queries(con, n_orders, "cl_ord_id", seed=4),
                        "queries.lifecycle(order_id)": time_queries(con, n_orders, "queries.lifecycle(order_id)",
                                                                    seed=5),
                        "queries.lifecycle(cl_ord_id)": time_queries(con, n_orders, "queries.lifecycle(cl_ord_id)",
                                                                     seed=6)}
    plan = con.execute(f"EXPLAIN ANALYZE SELECT * FROM {TABLE} WHERE order_id = 12345").fetchall()
    res["art_index"]["plan_uses_index"] = "Index Scan" in str(plan)
    con.close()
    return res


def run(events: int = 1_000_000, lifecycle_events: int = 10_000_000, batch: int = 10,
        workdir: str | None = None, keep: bool = False, reps: int = 3, concurrent: bool = True,
        ab_reps: int = 7) -> dict:
    base = Path(tempfile.mkdtemp(prefix="bench-audit-", dir=workdir))
    try:
        out = {"machine": machine()}
        jdir = base / "journal"
        records: list = []
        taps: list = []
        out["journal"] = bench_journal(jdir, events, batch, "interval", keep=records, tap=taps)
        out["journal_reps"] = bench_journal_reps(base, min(events, 100_000), batch, reps)
        if ab_reps:
            out["journal_ab"] = bench_journal_ab(base, min(events, 50_000), batch, ab_reps)
        out["journal_fsync_os"] = bench_journal(base / "journal-os", events, batch, "os")
        out["projection"] = bench_projection(jdir, base / "audit.duckdb", events, indexes=False)
        out["projection_with_indexes"] = bench_projection(jdir, base / "audit.duckdb", events, indexes=True,
                                                          **CATCH_UP_PATHS["fast_serve_all_cores"])
        out["ingest_compare"] = bench_catch_up_compare(jdir, base, reps)
        out["projection_catch_up_parts"] = bench_catch_up_parts(jdir, base / "parts.duckdb", events)
        out["projection_tap"] = bench_tap(jdir, base / "tap.duckdb", taps)
        del taps
        out["projection_feed"] = bench_feed(jdir, base / "feed.duckdb", records)
        del records
        if concurrent:
            out["concurrent"] = bench_concurrent(base, min(events, 200_000), batch)
        if lifecycle_events:
            out["lifecycle"] = bench_lifecycle(base / "lifecycle.duckdb", lifecycle_events)
        out["machine"]["loadavg_end"] = os.getloadavg()
        cmp_ = out["ingest_compare"]
        floor = {k: v for k, v in out["projection_catch_up_parts"].items() if k.startswith("insert_with_art")}
        out["summary"] = {
            "duckdb_ingest_target_events_per_s": 500_000,
            "serve_path_catch_up_events_per_s": cmp_["catch_up.fast_serve_all_cores"]["events_per_s_median"],
            "serve_path_catch_up_events_per_cpu_s": cmp_["catch_up.fast_serve_all_cores"]["events_per_cpu_s_median"],
            "catch_up_fast_1_thread_events_per_s": cmp_["catch_up.fast_1_thread"]["events_per_s_median"],
            "catch_up_reference_events_per_s": cmp_["catch_up.reference_1_thread"]["events_per_s_median"],
            "catch_up_reference_events_per_cpu_s": cmp_["catch_up.reference_1_thread"]["events_per_cpu_s_median"],
            "rebuild_events_per_s": cmp_["rebuild.fast_all_cores"]["events_per_s_median"],
            "rebuild_reference_events_per_s": cmp_["rebuild.reference_1_thread"]["events_per_s_median"],
            "floor_duckdb_insert_ready_arrow": {k: v["events_per_s"] for k, v in floor.items()},
            "loadavg_1min_min_max": cmp_["loadavg_1min_min_max"],
        }
        return out
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--lifecycle-events", type=int, default=10_000_000)
    ap.add_argument("--batch", type=int, default=10, help="events per flush (group commit)")
    ap.add_argument("--workdir", default=None, help="where to put the temporary files")
    ap.add_argument("--json", default=None, help="write the results to this file")
    ap.add_argument("--reps", type=int, default=3, help="repetitions of the journal measurement (medians)")
    ap.add_argument("--no-concurrent", action="store_true", help="skip the order path + projection thread run")
    ap.add_argument("--ab-reps", type=int, default=7,
                    help="pairs of native / pure-Python journal runs, alternating (0: skip)")
    ap.add_argument("--journal-only", action="store_true",
                    help="only the journal measurements (no DuckDB projection, no lifecycle)")
    a = ap.parse_args(argv)
    if a.journal_only:
        base = Path(tempfile.mkdtemp(prefix="bench-audit-", dir=a.workdir))
        try:
            res = {"machine": machine()}
            res["journal_reps"] = bench_journal_reps(base, min(a.events, 100_000), a.batch, a.reps)
            if a.ab_reps:
                res["journal_ab"] = bench_journal_ab(base, min(a.events, 50_000), a.batch, a.ab_reps)
            res["machine"]["loadavg_end"] = os.getloadavg()
        finally:
            shutil.rmtree(base, ignore_errors=True)
    else:
        res = run(a.events, a.lifecycle_events, a.batch, a.workdir, reps=a.reps, concurrent=not a.no_concurrent,
                  ab_reps=a.ab_reps)
    text = json.dumps(res, indent=2)
    print(text)
    s = res.get("summary")
    if s:
        print(f"DuckDB ingest, oms serve path (catch_up from the journal files, ART on): "
              f"{s['serve_path_catch_up_events_per_s']:,} events/s ({s['serve_path_catch_up_events_per_cpu_s']:,}"
              f" events/CPU-s); reference path in the same run {s['catch_up_reference_events_per_s']:,} events/s; "
              f"rebuild {s['rebuild_events_per_s']:,} events/s (reference {s['rebuild_reference_events_per_s']:,}); "
              f"DuckDB's own insert of ready Arrow tables {s['floor_duckdb_insert_ready_arrow']}; target 500,000",
              file=sys.stderr)
    if a.json:
        Path(a.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
