"""`oms serve`: wires journal, engine, FIX acceptor, HTTP API and the DuckDB projection.

Start-up order matters: the journal is opened and replayed into the engine, numba kernels are
compiled and warmed, and only then do the FIX and HTTP ports open and the ready lines print.
Shutdown is the reverse: sessions get a Logout, the journal is flushed and fsynced, the
projection catches up and the DuckDB file is closed.
"""
from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import ssl
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from aiohttp import web

from .audit.journal import Journal, iter_records
from .audit.paths import duckdb_path, journal_dir
from .audit.projector import ProjectionProcess
from .config import DEMO_CONFIG_NAME, Config, previous_utc_time_ns
from .engine.engine import Engine
from .fix.gateway import Gateway
from .fix.session import FixAcceptor, Timing

log = logging.getLogger("oms")


@dataclass
class ServeOptions:
    data_dir: Path
    host: str
    fix_port: int
    http_port: int
    book: str = "numba"                 # "numba" | "reference"
    timing: Timing | None = None


# Orders per instrument book before its first growth step. Growth copies the whole book (tens
# of ms at this size), so start big enough that a normal day never pays for it.
BOOK_CAPACITY = 1 << 16

PROJECTION_CHECK_S = 1.0     # how often the server looks whether the projection process still runs


def make_book_factory(kind: str) -> Callable[[], object]:
    if kind == "reference":
        from .book import ReferenceBook
        return lambda: ReferenceBook(capacity=BOOK_CAPACITY)
    from .book import NumbaBook, warm_up
    from .fix import fastpath
    warm_up()   # compile (or load cached) kernels now, so no order pays for compilation
    fastpath.warm_up()
    return lambda: NumbaBook(capacity=BOOK_CAPACITY)


def listen_error(what: str, host: str, port: int, exc: OSError) -> OSError:
    """A listener that cannot open, saying which one: the socket layer's text names neither
    FIX nor HTTP, and for a host that does not resolve not even the host ("[Errno -2] Name or
    service not known")."""
    return OSError(f"cannot listen for {what} on {host}:{port}: {exc.strerror or exc}")


def drop_output(out: object) -> None:
    """Point ``out``'s file descriptor at /dev/null after a broken pipe: the unwritten text
    would fail again when the interpreter flushes it at exit (status 120)."""
    try:
        fd = out.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
    except (AttributeError, OSError, ValueError):   # not a file (a StringIO): nothing flushed at exit
        return
    os.dup2(devnull, fd)
    os.close(devnull)


def make_risk(config: Config) -> object | None:
    try:
        from .compliance.risk import RiskEngine
    except ImportError:
        return None
    return RiskEngine(config)


class OmsServer:
    """The running system; `start()` then `wait()`; `stop()` from a signal."""

    def __init__(self, config: Config, options: ServeOptions, out=sys.stdout) -> None:
        self.config = config
        self.options = options
        self.out = out
        self.stopping = asyncio.Event()

    async def start(self) -> None:
        opts = self.options
        opts.data_dir.mkdir(parents=True, exist_ok=True)
        cfg = self.config
        self.journal = Journal(journal_dir(opts.data_dir), fsync=cfg.fsync, fsync_interval_ms=cfg.fsync_interval_ms,
                               rotate_bytes=cfg.rotate_mb * 1024 * 1024)
        self.risk = make_risk(cfg)
        self.engine = Engine(cfg, self.journal, make_book_factory(opts.book), risk=self.risk)
        started = time.perf_counter()
        replayed = self.engine.replay(iter_records(self.journal.directory))
        if replayed:
            log.info("replayed %d commands from the journal in %.2fs (last seq %d)", replayed,
                     time.perf_counter() - started, self.journal.last_seq)
        self._report_replay(self.engine.replay_check, self.engine)
        self.engine.journal_rules()
        self._journal_config_limits()
        # DuckDB in a process of its own: its GIL holds would delay the order path (projector.py)
        self.projection = ProjectionProcess(duckdb_path(opts.data_dir), self.journal.directory, self.journal)
        self.projection.start()
        self.gateway = Gateway(self.engine)
        self.gateway.on_events.append(self.projection.feed)   # the child reads the journal; this counts
        from .web.metrics import Metrics
        self.metrics = Metrics()
        self.gateway.on_events.append(self.metrics.observe_events)
        self.acceptor = FixAcceptor(cfg, self.gateway, opts.data_dir, opts.timing)
        # inbound seqs first: recover_reports may reset a store (a daily reset passed while down),
        # after which the old numbering's MsgSeqNums no longer apply (the reset is journaled, and
        # the engine drops them from inbound_seqs as it records it)
        self.acceptor.recover_inbound_seqs(self.engine.inbound_seqs)
        self.acceptor.recover_reports()
        self.acceptor.end_sessions_lost_in_a_crash(self.engine.sessions_logged_on)
        # the time that passed while down, before a port opens: an order taken first would be
        # decided against the old day's credit (and a DAY order of it expired by the late roll)
        self._next_eod = self._catch_up_clock()
        tls = None
        if cfg.tls_cert is not None:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(str(cfg.tls_cert), str(cfg.tls_key))
        try:
            fix_host, fix_port = await self.acceptor.start(opts.host, opts.fix_port, ssl=tls)
        except OSError as exc:
            raise listen_error("FIX", opts.host, opts.fix_port, exc) from None
        from .web.app import build_app
        self.app = build_app(self)
        # an idle connection (none of its requests under way, or none ever sent) is closed after
        # idle_timeout_s: aiohttp's default keeps it an hour, so idle connections nobody
        # authenticated could hold every file descriptor, and the FIX acceptor then refused logons
        self.runner = web.AppRunner(self.app, access_log=None, keepalive_timeout=cfg.idle_timeout_s)
        await self.runner.setup()
        site = web.TCPSite(self.runner, opts.host, opts.http_port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            raise listen_error("HTTP", opts.host, opts.http_port, exc) from None
        http_host, http_port = self.runner.addresses[0][:2]   # the bound address, as the FIX line prints
        self.fix_address = (fix_host, fix_port)
        self.http_address = (http_host, http_port)
        self._clock_task = asyncio.create_task(self._clock_loop())
        self._gc_task = asyncio.create_task(self._gc_loop())
        self._projection_task = asyncio.create_task(self._projection_loop())
        print(f"oms_trading: config {cfg.source}, data dir {opts.data_dir}, journal seq {self.journal.last_seq}",
              file=self.out)
        # what an operator (or a log search after an incident) needs to know of this start: which
        # code, on which interpreter, with how many sessions, and whether FIX is encrypted
        from . import __version__
        log.info("oms_trading %s (Python %s) started: config %s, data dir %s, journal seq %d, book %s, "
                 "%d FIX sessions, FIX TLS %s, FIX %s:%d, HTTP %s:%d", __version__, sys.version.split()[0],
                 cfg.source, opts.data_dir, self.journal.last_seq, opts.book, len(cfg.sessions),
                 "on" if tls is not None else "off", fix_host, fix_port, http_host, http_port)
        if cfg.source == DEMO_CONFIG_NAME:
            for user in cfg.users:
                if user.demo_token:
                    print(f"demo HTTP token for {user.name} ({user.role}): {user.demo_token}", file=self.out)
        print(f"FIX listening on {fix_host}:{fix_port}", file=self.out)
        print(f"HTTP listening on {http_host}:{http_port}", file=self.out, flush=True)

    async def _gc_loop(self) -> None:
        """Keep the cyclic garbage collector off the order path.

        A full collection walks every tracked object: with a day's orders in memory that is a
        pause of 100 ms and more, at a moment nobody chooses. Instead automatic collection is
        off; every quarter second the young generations (short-lived cycles: tracebacks,
        closed connections) are collected, a millisecond or so, and what survives is frozen,
        so it is never walked again. Engine state lives all day anyway; the end of the day
        unfreezes and runs one full collection.
        """
        gc.collect()
        gc.freeze()
        gc.disable()
        try:
            while True:
                await asyncio.sleep(0.25)
                gc.collect(1)
                gc.freeze()
        finally:
            gc.unfreeze()
            gc.enable()

    async def _projection_loop(self) -> None:
        """A projection process that died is started again (and logged): nothing else notices,
        and until then audit queries fail and DuckDB falls behind the journal."""
        delay, restarted_at = PROJECTION_CHECK_S, 0.0
        while True:
            await asyncio.sleep(delay)
            try:
                if self.projection.restart_if_dead():
                    # one that dies again at once (a damaged DuckDB file) is retried less and less
                    # often, up to once a minute, not logged every second
                    delay, restarted_at = min(delay * 2, 60.0), time.monotonic()
                elif time.monotonic() - restarted_at > 60.0:
                    delay = PROJECTION_CHECK_S
            except Exception:       # cannot start one now (no memory, no processes): next time
                log.exception("audit projection process could not be started again")

    @staticmethod
    def _report_replay(check, engine=None) -> None:
        """Say so when the journal did not replay as it was journaled: the state rebuilt follows
        the configuration and code running now, not what the clients were told then. A torn tail
        is marked in the journal (``engine``), which goes on after it: later starts then do not
        count the events the crash cut off as missing."""
        if check is None:
            return
        if check.differences:
            log.error("the journal replays differently from how it was journaled: %d event(s) differ, "
                      "first %s. The configuration (lot sizes, limits in the file, accounts, instruments) "
                      "or the code changed since; the state rebuilt follows the current ones. Restore the "
                      "configuration in force then, or check the orders named here with their owners.",
                      check.differences, check.first.describe())
        if check.torn_tail:
            log.warning("the journal ends inside the events of its last command (a write cut short by a "
                        "crash); that command was not acknowledged")
            if engine is not None:
                from .audit.journal import JournalError
                from .engine.replay_check import torn_tail_record
                try:
                    engine.record(torn_tail_record(check, time.time_ns()))
                    engine.flush()
                except (OSError, JournalError) as exc:   # the journal rolled it back; start anyway
                    log.error("could not journal the torn-tail mark (%s): later starts will report the "
                              "cut events of command seq %s as a replay difference", exc, check.torn_command_seq)

    def _journal_config_limits(self) -> None:
        """The limits the config file sets, journaled when they differ from the last ones
        journaled (who changed the file is not known here: the record names the file and the
        time it took effect; audit/config_limits.py). A journal that refuses it (disk full)
        fails the start: the replay left the last journaled file's limits in force, and the
        running file's must not decide orders without the audit trail saying so."""
        if self.risk is None:
            return
        from .audit.config_limits import limits_loaded_record
        from .audit.journal import JournalError
        from .audit.queries import baseline_from_config
        record = limits_loaded_record(baseline_from_config(self.config), self.engine.limits_loaded,
                                      str(self.config.source), time.time_ns())
        if record is None:
            return
        try:
            journaled = self.engine.record(record)
            self.engine.flush()
        except (OSError, JournalError) as exc:
            raise JournalError(f"cannot journal the limits configured in {self.config.source} ({exc}); not "
                               f"starting: they would decide orders without the audit trail saying so") from exc
        self.engine.apply_limits_loaded(journaled)
        log.info("configured limits journaled (seq %d): %s", journaled["seq"], record["text"])

    def _submit_clock(self, end_of_day: bool) -> None:
        self.gateway.submit({"type": "clock", "ts": time.time_ns(), "end_of_day": int(end_of_day)})
        self.gateway.end_batch()

    def _catch_up_clock(self) -> int:
        """At start, before any port opens: roll a day the server was down at the end of, and
        put back temporary limits that expired meanwhile. Returns the next end of day's time
        (from the same reading of the clock: a start just before it must not skip it)."""
        now = time.time_ns()
        last_eod = previous_utc_time_ns(self.config.end_of_day, now)
        # down across an end of day with the day before it not rolled (journaled commands since
        # the last end of day, from before this one)? Roll it now: DAY orders expire, the fills
        # of that day stop counting against credit, its finished orders' ClOrdIDs are free again.
        # Not when the last roll came after this end of day: commands stamped before it after
        # the roll are of the new day, with a wall clock that stepped back
        first, rolled = self.engine.day_first_ts, self.engine.day_rolled_ts
        if first is not None and first < last_eod and (rolled is None or rolled < last_eod):
            log.info("the server was down at the end of day (%s UTC): rolling the day now",
                     self.config.end_of_day)
            self._submit_clock(end_of_day=True)      # (expired temporary limits go back too)
        else:
            due = self.engine.next_due_ns()
            if due is not None and due <= time.time_ns():
                self._submit_clock(end_of_day=False)
        return last_eod + 86_400 * 10**9

    async def _clock_loop(self) -> None:
        """Time passing is a command too: limit expiries and the end of the trading day."""
        next_eod = self._next_eod
        while True:
            due = self.engine.next_due_ns()
            now = time.time_ns()
            wake = min(next_eod, due) if due is not None else next_eod
            # re-check at least every second: a limit change may bring an expiry forward
            await asyncio.sleep(min(max(wake - now, 0) / 1e9, 1.0))
            now = time.time_ns()
            if now >= next_eod:
                next_eod += 86_400 * 10**9
                self._submit_clock(end_of_day=True)
                gc.unfreeze()        # the quiet moment of the day: one full collection
                gc.collect()
                gc.freeze()
            elif due is not None and now >= due:
                self._submit_clock(end_of_day=False)

    async def stop(self) -> None:
        self._clock_task.cancel()
        self._gc_task.cancel()
        self._projection_task.cancel()
        await self.acceptor.stop()
        self.gateway.end_batch()
        await self.runner.cleanup()
        self.journal.close()
        try:   # a child that died still brings DuckDB up to date at the stop, as promised
            self.projection.restart_if_dead()
        except Exception:
            log.exception("audit projection process could not be started for the final catch-up")
        await asyncio.get_running_loop().run_in_executor(None, self.projection.stop)
        log.info("oms_trading stopped: journal seq %d flushed, audit projection lag %d", self.journal.last_seq,
                 self.projection.lag())
        try:
            print("oms_trading stopped cleanly", file=self.out, flush=True)
        except BrokenPipeError:
            # whoever started us read the ready lines and closed its end: the stop succeeded all
            # the same, and is not exit status 1 ("oms serve: [Errno 32] Broken pipe")
            drop_output(self.out)

    async def run_until_stopped(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stopping.set)
        await self.start()
        await self.stopping.wait()
        await self.stop()


def serve(config: Config, options: ServeOptions) -> int:
    server = OmsServer(config, options)
    try:
        import uvloop
    except ImportError:   # not on Linux: the stdlib loop works, a little slower
        asyncio.run(server.run_until_stopped())
    else:
        uvloop.run(server.run_until_stopped())
    return 0
