"""The DuckDB projection of a running server, in a process of its own.

Inside the server's process the projection thread, however low its priority, holds the GIL
for part of every ingest (DuckDB's and Arrow's Python glue), and every hold delays the order
path: with `oms bench fix` at 3,000 orders/s the round trip went from p50 0.4 / p99 3.4 ms
without the projection to p50 1.6-2.1 / p99 12-15 ms with it. So ``oms serve`` runs the
projection in a child process, scheduled SCHED_IDLE (a child at nice 10 still cost the order
path as much: on two cores it competes with the server for the CPU; an idle-class task runs
only when no other task wants the CPU and is preempted at once). The child follows the journal's files as the server flushes
them (they are in the page cache), checks and parses each batch in compiled kernels
(``ingest``) and inserts it (``Projection.catch_up``, the same code ``oms audit rebuild``
uses; a backlog is inserted with DuckDB on every core, the idle class keeping it off the
server's way), and it answers the
server's audit queries over a pipe: DuckDB lets one process at a time open the file for
writing, so the queries run where the connection is.

The child never touches engine state; if it dies, the journal still holds the truth and a new
child catches up from DuckDB's max(seq). When the server goes away (even by kill -9) the pipe
closes and the child finishes its catch-up and exits.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)

POLL_S = 0.2           # how often the child looks for new journal records when nobody asks
STOP_TIMEOUT_S = 120.0  # the final catch-up of a long backlog may take a while
CALL_TIMEOUT_S = 600.0  # an export of the whole trail
MAX_BATCH_ROW_GROUPS = 8   # row groups (122,880 rows) per bulk batch at most: bounds its memory


def projection_options() -> dict:
    """``Projection`` options for a backlog (the projection process, ``oms audit`` commands):
    DuckDB inserts on every core but one, one row group (122,880 rows) per thread per batch,
    while the next batch is read and parsed (compiled kernels, GIL released) on the core left.
    On the 2-core VM of benchmarks/RESULTS.md (Audit, 2026-11-26 04:30) DuckDB on one thread
    beside the parse took 181k events/s against 126k with DuckDB on both cores, where it
    competes with the parse (and alone it inserts these batches no faster on two threads).
    The cores counted are those this process may run on (a container's or taskset's, not the
    host's), and a batch holds at most ``MAX_BATCH_ROW_GROUPS`` row groups: two batches are in
    flight, ~50 MB per row group each in Arrow and again in the storage copy, so a batch of one
    row group per core took several GB on a 64-core host (the OMS's own box)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    threads = max(1, cpus - 1)
    return {"bulk_threads": threads, "bulk_batch_rows": 122_880 * min(threads, MAX_BATCH_ROW_GROUPS),
            "prefetch": True}


class ProjectorError(RuntimeError):
    """The projection process failed or is not running."""


class ProjectionProcess:
    """Server-side handle of the projection process (same role as ``Projection`` in a thread)."""

    def __init__(self, db_path: Path | str, journal_dir: Path | str, journal=None) -> None:
        self.db_path = Path(db_path)
        self.journal_dir = Path(journal_dir)
        self.journal = journal                   # the server's Journal: its written seq, for lag()
        ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads and a loop
        self._ctx = ctx
        self._db_max = ctx.Value("q", 0, lock=False)   # max(seq) in DuckDB, written by the child
        # the last seq the server's journal wrote and kept (Journal.watermark). The child reads
        # no further while the server runs: a write that fails is cut from the journal again
        # (Journal._rollback), and records the child read meanwhile would fork DuckDB from it
        self._written = ctx.Value("q", 0, lock=False)
        self._conn = None
        self._proc = None
        self._lock = threading.Lock()            # one request at a time on the pipe
        self._fed_seq = 0
        self.restarts = 0                        # children started again after one died
        self.last_exit: int | None = None        # exit code of the last child that died

    # -- lifecycle
    def start(self) -> None:
        if self._proc is not None:
            return
        parent, child = self._ctx.Pipe()
        if self.journal is not None and hasattr(self.journal, "watermark"):
            self._written.value = self.journal.written_seq
            self.journal.watermark = self._written     # the journal moves it after each write
        else:
            self._written.value = -1     # no journal object to follow: up to the files' end
        self._proc = self._ctx.Process(target=_child_main, name="oms-audit-projection", daemon=True,
                                       args=(str(self.db_path), str(self.journal_dir), child, self._db_max,
                                             self._written))
        self._proc.start()
        child.close()
        self._conn = parent

    def running(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    def restart_if_dead(self) -> bool:
        """Start a new child if the last one died (killed, out of memory, a crash in DuckDB):
        the journal still holds everything, and the new child catches up from DuckDB's
        max(seq). Without this, queries answered 503 and the projection fell further behind
        until the server restarted, with nothing in the log. Returns True if it restarted;
        never waits for a request under way on the pipe (the caller is the event loop)."""
        proc = self._proc
        if proc is None or proc.is_alive():
            return False
        if not self._lock.acquire(blocking=False):   # a request is finding out right now
            return False
        try:
            if self._proc is not proc:
                return False
            proc.join(0)
            self.last_exit = proc.exitcode
            self.restarts += 1
            log.error("audit projection process (pid %s) died with exit code %s: starting a new one "
                      "(restart %d); it catches up from the journal", proc.pid, proc.exitcode, self.restarts)
            try:
                self._conn.close()
            except OSError:
                pass
            self._proc = self._conn = None
            self.start()
            return True
        finally:
            self._lock.release()

    def stop(self) -> None:
        """Ask the child for a final catch-up, wait for it to close DuckDB and exit."""
        proc, conn = self._proc, self._conn
        if proc is None:
            return
        try:
            with self._lock:
                conn.send(("stop",))
                if conn.poll(STOP_TIMEOUT_S):
                    conn.recv()
        except (OSError, EOFError):
            pass
        proc.join(STOP_TIMEOUT_S)
        if proc.is_alive():
            log.warning("audit projection process did not stop in %.0f s: killing it", STOP_TIMEOUT_S)
            proc.kill()
            proc.join(5)
        conn.close()
        self._proc = self._conn = None

    # -- what the server and the HTTP API call
    def feed(self, events: list[dict]) -> None:
        """Gateway hook: nothing to hand over (the child reads the journal); remember the seq."""
        if events:
            last = events[-1].get("seq")
            if last is not None and last > self._fed_seq:
                self._fed_seq = last

    def lag(self) -> int:
        """Journal events not yet in DuckDB."""
        known = self._fed_seq
        if self.journal is not None:
            known = max(known, getattr(self.journal, "written_seq", 0))
        return max(0, known - self._db_max.value)

    def run(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """``fn(connection, *args, **kwargs)`` in the child after a catch-up; ``fn`` must be a
        module-level function (it travels by name). ValueError from it is raised here as such."""
        return self._call(("run", fn, args, kwargs))

    def catch_up(self) -> int:
        return self._call(("catch_up",))

    def verify(self, data_dir: Path | str, anchors: dict[int, str] | None = None):
        """``audit.verify.verify(data_dir, anchors)`` where the DuckDB connection is."""
        return self._call(("verify", str(data_dir), anchors))

    def _call(self, request: tuple) -> Any:
        if self._conn is None or self._proc is None or not self._proc.is_alive():
            raise ProjectorError("the audit projection process is not running")
        with self._lock:
            try:
                self._conn.send(request)
                if not self._conn.poll(CALL_TIMEOUT_S):
                    raise ProjectorError(f"the audit projection process did not answer in {CALL_TIMEOUT_S:.0f} s")
                status, value = self._conn.recv()
            except (OSError, EOFError) as exc:
                raise ProjectorError(f"the audit projection process went away: {exc}") from None
        if status == "ok":
            return value
        kind, text = value
        if kind == "value":
            raise ValueError(text)
        raise ProjectorError(text)


def _child_main(db_path: str, journal_dir: str, conn, db_max, written=None) -> None:
    """The projection process: catch up every POLL_S, answer requests, stop when told or
    when the server's end of the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # Ctrl-C is the server's to handle
    try:   # a follower: runs only when no other task wants the CPU, preempted at once when one does
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        try:
            os.nice(19)
        except OSError:
            pass
    from .. import configure_logging
    configure_logging(logging.INFO)
    from .projection import Projection
    # at idle priority the projection may use every core the machine leaves idle: a backlog
    # (start-up, or after the server outran it) is inserted with DuckDB on all cores while the
    # next batch is read and parsed (Projection's bulk mode); steady state stays one thread
    projection = Projection(db_path, journal_dir, **projection_options())
    last_error = None

    def catch_up() -> int:
        nonlocal last_error
        try:
            upto = written.value if written is not None else -1
            added = projection.catch_up(upto=None if upto < 0 else upto)
            last_error = None
            return added
        except Exception as exc:                    # locked or missing DB, journal being cut: retry
            text = f"{type(exc).__name__}: {exc}"
            if text != last_error:
                log.warning("audit projection catch-up failed, will retry: %s", text)
            last_error = text
            projection.close()
            return 0
        finally:
            db_max.value = projection._db_max

    try:
        while True:
            try:
                ready = conn.poll(POLL_S)
                request = conn.recv() if ready else None
            except (EOFError, OSError):              # the server is gone
                break
            if request is None:
                catch_up()
                continue
            op = request[0]
            if op == "stop":
                catch_up()
                try:
                    conn.send(("ok", None))
                except OSError:
                    pass
                break
            catch_up()
            try:
                if op == "catch_up":
                    value = projection.rows_ingested
                elif op == "run":
                    _, fn, args, kwargs = request
                    con = projection.cursor()
                    try:
                        value = fn(con, *args, **kwargs)
                    finally:
                        con.close()
                elif op == "verify":
                    from .verify import verify
                    value = verify(Path(request[1]), request[2] if len(request) > 2 else None)
                else:
                    raise ProjectorError(f"unknown request {op!r}")
                answer = ("ok", value)
            except ValueError as exc:
                answer = ("error", ("value", str(exc)))
            except Exception as exc:
                answer = ("error", ("other", f"{type(exc).__name__}: {exc}"))
            try:
                conn.send(answer)
            except OSError:
                break
    finally:
        try:
            projection.close()
        except Exception:
            pass
