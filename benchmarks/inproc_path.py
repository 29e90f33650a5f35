"""The order path in one process, without sockets: FIX bytes -> session -> engine -> journal ->
ExecutionReport bytes, the transport a counter. What a read of ``--batch`` NewOrderSingles
costs the order-path thread, per order, with the demo config (risk on, native journal, fsync
interval), so a change to the path can be compared run against run without the network, the
event loop and the client in the figure.

    python -m benchmarks.inproc_path --orders 20000 --batch 50
    python -m benchmarks.inproc_path --orders 20000 --batch 1 --stages
    python -m benchmarks.inproc_path --orders 40000 --batch 1 --sessions 10 \
        --mix passive=45,cross=5,cancel=45,replace=5

``--mix`` sends the load generator's operations instead of passive orders only (new passive
orders, crossing IOC sells, cancels and replaces of the oldest resting order of the session, as
``oms bench fix --mix`` does) over ``--sessions`` sessions of the bench config, reads going
round the sessions: what the ten-session load costs the order-path thread, without the client.

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

from benchmarks.calibration import calibration_us
from oms_trading.audit.journal import Journal
from oms_trading.book import NumbaBook
from oms_trading.book import warm_up as book_warm_up
from oms_trading.compliance.risk import RiskEngine
from oms_trading.config import load_config, parse_config
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


def message(msg_type: str, seq: int, fields: list[tuple[int, object]], sender: str = "BENCH") -> bytes:
    m = simplefix.FixMessage()
    for tag, value in ((8, "FIX.4.4"), (35, msg_type), (49, sender), (56, "OMS"), (34, seq),
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


def mix_messages(n: int, sessions: int, probs: list[float], seed: int = 1) -> list[list[bytes]]:
    """``n`` operations of the load generator's mix, dealt round the sessions: per session its
    messages in order (MsgSeqNum from 2). A cancel or replace names the session's oldest
    resting order (a replace's new ClOrdID rests in its place); with none resting it becomes a
    new order, as in ``loadgen``."""
    from benchmarks.loadgen import CANCEL, CROSS, NEW, REPLACE, schedule_kinds
    kinds = schedule_kinds(n, probs, seed)
    out: list[list[bytes]] = [[] for _ in range(sessions)]
    live: list[collections.deque] = [collections.deque() for _ in range(sessions)]
    now = fix_timestamp(time.time_ns()).decode()
    for i, kind in enumerate(kinds):
        k = i % sessions
        seq = len(out[k]) + 2
        cl = f"S{k}_{i}"
        sender = "BENCH" if k == 0 else f"BENCH{k + 1}"
        if kind in (CANCEL, REPLACE) and not live[k]:
            kind = NEW
        price = f"{380 + (i * 7919) % 2000 / 100:.2f}"
        if kind == NEW:
            body = [(11, cl), (1, "BENCH"), (55, "MSFT"), (54, "1"), (60, now), (38, 100), (40, "2"), (44, price), (59, "0")]
            live[k].append(cl)
            mt = "D"
        elif kind == CROSS:
            body = [(11, cl), (1, "BENCH"), (55, "MSFT"), (54, "2"), (60, now), (38, 1), (40, "2"), (44, "380.00"), (59, "3")]
            mt = "D"
        elif kind == CANCEL:
            body = [(41, live[k].popleft()), (11, cl), (1, "BENCH"), (55, "MSFT"), (54, "1"), (60, now), (38, 100)]
            mt = "F"
        else:
            body = [(41, live[k].popleft()), (11, cl), (1, "BENCH"), (55, "MSFT"), (54, "1"), (60, now), (38, 100),
                    (40, "2"), (44, price), (59, "0")]
            live[k].append(cl)
            mt = "G"
        out[k].append(message(mt, seq, body, sender))
    return out


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


def run_mix(n: int, batch: int, sessions: int, mix: str, stages: bool, warm: int = 4000) -> dict:
    """``run`` with the load generator's mix over ``sessions`` sessions (see ``mix_messages``):
    reads of ``batch`` messages of one session, going round the sessions."""
    from benchmarks.bench_fix import bench_config_text
    from benchmarks.loadgen import parse_mix
    book_warm_up()
    fastpath.warm_up()
    work = Path(tempfile.mkdtemp(prefix="oms-inproc-"))
    try:
        cfg = parse_config(bench_config_text(max(sessions, 1)), "bench config", work)
        journal = Journal(work / "journal", fsync="interval")
        engine = Engine(cfg, journal, lambda: NumbaBook(capacity=1 << 16), risk=RiskEngine(cfg))
        gateway = Gateway(engine)
        acceptor = FixAcceptor(cfg, gateway, work)
        conns = []
        for k in range(sessions):
            transport = CountingTransport()
            session = FixSession(acceptor)
            session.connection_made(transport)
            session.data_received(message("A", 1, [(98, 0), (108, 30), (141, "Y")],
                                          "BENCH" if k == 0 else f"BENCH{k + 1}"))
            conns.append((session, transport))
        per = mix_messages(warm + n, sessions, parse_mix(mix))
        reads = []         # (session, bytes) in the order they are fed
        pos = [0] * sessions
        left = True
        while left:
            left = False
            for k, (session, _) in enumerate(conns):
                chunk = per[k][pos[k]:pos[k] + batch]
                if chunk:
                    reads.append((session, b"".join(chunk), len(chunk)))
                    pos[k] += len(chunk)
                    left = True
        fed = 0
        i = 0
        while fed < warm:
            session, data, m = reads[i]
            session.data_received(data)
            fed += m
            i += 1
        spent: collections.Counter = collections.Counter()
        if stages:
            _time_stages(spent, conns[0][0], gateway, journal, [c[0] for c in conns])
        calib = calibration_us()
        gc.collect()
        gc.freeze()
        gc.disable()
        t0 = time.perf_counter_ns()
        c0 = time.process_time_ns()
        count = 0
        for session, data, m in reads[i:]:
            session.data_received(data)
            count += m
        cpu = (time.process_time_ns() - c0) / count / 1000
        wall = (time.perf_counter_ns() - t0) / count / 1000
        gc.enable()
        gc.unfreeze()
        journal.close()
        return {"orders": count, "batch": batch, "sessions": sessions, "mix": mix,
                "cpu_us_per_order": round(cpu, 2), "wall_us_per_order": round(wall, 2),
                "calibration_us": round(calib, 2), "ratio_to_calibration": round(cpu / calib, 2),
                "stages_us_per_order": {k: round(v / count / 1000, 2) for k, v in spent.most_common()},
                "bytes_out": sum(t.bytes for _, t in conns)}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _time_stages(spent: collections.Counter, session: FixSession, gateway: Gateway, journal: Journal,
                 sessions: list[FixSession] | None = None) -> None:
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
    for one in sessions or [session]:
        timed(one.store, "save_sent", "FIX store write")
        timed(one, "_write", "transport write")
    timed(gateway, "end_batch", "end of batch (all of it)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--orders", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=50, help="NewOrderSingles per read (default 50)")
    ap.add_argument("--stages", action="store_true", help="also time the main steps")
    ap.add_argument("--mix", default="", help="the load generator's mix instead of passive orders only, "
                                             "e.g. passive=45,cross=5,cancel=45,replace=5")
    ap.add_argument("--sessions", type=int, default=1, help="with --mix: sessions the reads go round")
    a = ap.parse_args(argv)
    r = run_mix(a.orders, a.batch, a.sessions, a.mix, a.stages) if a.mix else run(a.orders, a.batch, a.stages)
    print(f"{r['orders']:,} orders, {r['batch']} per read: {r['cpu_us_per_order']} us CPU per order "
          f"(wall {r['wall_us_per_order']}); calibration loop {r['calibration_us']} us, ratio {r['ratio_to_calibration']}")
    for k, v in r["stages_us_per_order"].items():
        print(f"  {k:28s} {v:7.2f} us per order")
    return 0


if __name__ == "__main__":
    sys.exit(main())
