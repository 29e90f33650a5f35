"""The order path in one process, without sockets: FIX bytes -> session -> engine -> journal ->
ExecutionReport bytes, the transport a counter. What a read of ``--batch`` NewOrderSingles
costs the order-path thread, per order, with the demo config (risk on, native journal, fsync
interval), so a change to the path can be compared run against run without the network, the
event loop and the client in the figure.

    python -m benchmarks.inproc_path --orders 20000 --batch 50
    python -m benchmarks.inproc_path --orders 20000 --batch 1 --stages

``--stages`` also times the main steps (wall time per order, the wrappers' own cost included).
Each run prints a calibration loop's time too: this VM's speed moves 1.5-2x between runs, so
compare runs by alternating them, not across hours.
"""
from __future__ import annotations

import argparse
import collections
import gc
import shutil
import sys
import tempfile
import time
from pathlib import Path

import simplefix

from oms_trading.audit.journal import Journal
from oms_trading.book import NumbaBook
from oms_trading.book import warm_up as book_warm_up
from oms_trading.compliance.risk import RiskEngine
from oms_trading.config import load_config
from oms_trading.engine.engine import Engine
from oms_trading.fix import fastpath
from oms_trading.fix import session as session_mod
from oms_trading.fix.gateway import Gateway
from oms_trading.fix.session import FixAcceptor, FixSession
from oms_trading.fix.timefmt import fix_timestamp


class CountingTransport:
    """Stands in for the socket: counts the bytes the session writes."""

    def __init__(self) -> None:
        self.bytes = 0

    def write(self, data: bytes) -> None:
        self.bytes += len(data)

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, key: str):
        return None

    def close(self) -> None:
        pass


def message(msg_type: str, seq: int, fields: list[tuple[int, object]]) -> bytes:
    m = simplefix.FixMessage()
    for tag, value in ((8, "FIX.4.4"), (35, msg_type), (49, "BENCH"), (56, "OMS"), (34, seq),
                       (52, fix_timestamp(time.time_ns()).decode())):
        m.append_pair(tag, value, header=True)
    for tag, value in fields:
        m.append_pair(tag, value)
    return m.encode()


def orders(n: int, first_seq: int) -> list[bytes]:
    """Passive limit orders on both sides of AAPL (none crosses), 50 price levels each side."""
    out = []
    for i in range(n):
        buy = i % 2
        price = 185 + (i % 50) * 0.01 if buy else 195 - (i % 50) * 0.01
        out.append(message("D", first_seq + i, [(11, f"C{i}"), (55, "AAPL"), (54, "1" if buy else "2"),
                                                (60, fix_timestamp(time.time_ns()).decode()), (38, 100),
                                                (40, "2"), (44, f"{price:.2f}"), (59, "0")]))
    return out


def calibration_us() -> float:
    t = time.process_time_ns()
    for _ in range(300):
        sum(range(1000))
    return (time.process_time_ns() - t) / 300 / 1000


def run(n: int, batch: int, stages: bool, warm: int = 2000) -> dict:
    book_warm_up()
    fastpath.warm_up()
    cfg = load_config()
    work = Path(tempfile.mkdtemp(prefix="oms-inproc-"))
    try:
        journal = Journal(work / "journal", fsync="interval")
        engine = Engine(cfg, journal, lambda: NumbaBook(capacity=1 << 16), risk=RiskEngine(cfg))
        gateway = Gateway(engine)
        acceptor = FixAcceptor(cfg, gateway, work)
        transport = CountingTransport()
        session = FixSession(acceptor)
        session.connection_made(transport)
        session.data_received(message("A", 1, [(98, 0), (108, 30), (141, "Y")]))
        msgs = orders(warm + n, 2)
        for i in range(0, warm, batch):
            session.data_received(b"".join(msgs[i:i + batch]))
        spent: collections.Counter = collections.Counter()
        if stages:
            _time_stages(spent, session, gateway, journal)
        calib = calibration_us()
        gc.collect()
        gc.freeze()           # as oms serve does: no collection of the day's objects mid-run
        gc.disable()
        t0 = time.perf_counter_ns()
        c0 = time.process_time_ns()
        for i in range(warm, warm + n, batch):
            session.data_received(b"".join(msgs[i:i + batch]))
        cpu = (time.process_time_ns() - c0) / n / 1000
        wall = (time.perf_counter_ns() - t0) / n / 1000
        gc.enable()
        gc.unfreeze()
        journal.close()
        return {"orders": n, "batch": batch, "cpu_us_per_order": round(cpu, 2), "wall_us_per_order": round(wall, 2),
                "calibration_us": round(calib, 2), "ratio_to_calibration": round(cpu / calib, 2),
                "stages_us_per_order": {k: round(v / n / 1000, 2) for k, v in spent.most_common()},
                "bytes_out": transport.bytes}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _time_stages(spent: collections.Counter, session: FixSession, gateway: Gateway, journal: Journal) -> None:
    clock = time.perf_counter_ns

    def timed(obj, name: str, label: str) -> None:
        fn = getattr(obj, name)

        def wrapper(*args, **kwargs):
            t = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[label] += clock() - t
        setattr(obj, name, wrapper)

    timed(session_mod, "_fast_scan", "scan (compiled)")
    timed(gateway, "submit", "engine (per command)")
    timed(journal, "flush", "journal flush")
    timed(gateway, "_deliver", "ExecutionReport render")
    timed(session.store, "save_sent", "FIX store write")
    timed(session, "_write", "transport write")
    timed(gateway, "end_batch", "end of batch (all of it)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--orders", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=50, help="NewOrderSingles per read (default 50)")
    ap.add_argument("--stages", action="store_true", help="also time the main steps")
    a = ap.parse_args(argv)
    r = run(a.orders, a.batch, a.stages)
    print(f"{r['orders']:,} orders, {r['batch']} per read: {r['cpu_us_per_order']} us CPU per order "
          f"(wall {r['wall_us_per_order']}); calibration loop {r['calibration_us']} us, ratio {r['ratio_to_calibration']}")
    for k, v in r["stages_us_per_order"].items():
        print(f"  {k:28s} {v:7.2f} us per order")
    return 0


if __name__ == "__main__":
    sys.exit(main())
