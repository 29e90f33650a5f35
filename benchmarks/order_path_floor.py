"""What the order path's parts cost with nothing between them: a floor for the FIX issue's
pipelined target, beside the real path in the same process.

For a passive NewOrderSingle the order path cannot do less than: frame and check the message
(the compiled ``fastpath.scan``), build the command record and journal it, run the pre-trade
checks (one numba call) and the book (one numba call), build the acceptance and journal it,
flush the journal (native hash chain, one ``os.write``), render the ExecutionReport, store it
and write it. ``lean`` does exactly that, calling the same components the server uses, with
none of the engine's bookkeeping (no Order object, positions, ClOrdID index or validation), no
session state and no gateway routing. ``real`` feeds the same kind of batches to
``FixSession.data_received`` (the whole path). The two alternate in one process, pinned to the
CPU that runs Python fastest at the start, so the VM's speed changes hit both.

    python -m benchmarks.order_path_floor --orders 30000 --batch 50 --reps 6

The FIX issue asks for 50,000 orders/s on one session, pipelined: 20 us of the server's CPU
per order, everything included. If ``lean`` alone costs about that, the target cannot be met
by trimming the glue; the parts themselves (JSON journal records with SHA-256, Python-rendered
reports) would have to become compiled code.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import calibration
from benchmarks.bench_fix import bench_config_text
from benchmarks.inproc_path import CountingTransport, message, orders
from oms_trading.audit.journal import Journal
from oms_trading.book import NumbaBook
from oms_trading.book import warm_up as book_warm_up
from oms_trading.compliance.risk import RiskEngine
from oms_trading.config import parse_config
from oms_trading.engine.engine import Engine, Rejection
from oms_trading.fix import fastpath
from oms_trading.fix.gateway import Gateway, _word
from oms_trading.fix.session import FixAcceptor, FixSession
from oms_trading.fix.timefmt import fix_timestamp

TARGET_PER_S = 50_000      # the FIX issue's pipelined target, one session


class Floor:
    """The server's components for one logged-on session, driven with no glue (``lean``) or
    through the session (``real``)."""

    def __init__(self, work: Path, capacity: int) -> None:
        book_warm_up()
        fastpath.warm_up()
        cfg = parse_config(bench_config_text(1), "bench config", work)
        self.journal = Journal(work / "journal", fsync="interval")
        self.engine = Engine(cfg, self.journal, lambda: NumbaBook(capacity=capacity), risk=RiskEngine(cfg))
        acceptor = FixAcceptor(cfg, Gateway(self.engine), work)
        self.transport = CountingTransport()
        self.session = s = FixSession(acceptor)
        s.connection_made(self.transport)
        s.data_received(message("A", 1, [(98, 0), (108, 30), (141, "Y")]))
        if not s.logged_on:
            raise RuntimeError("the bench session did not log on")
        self.ids = s._fast.ids(b"BENCH", b"OMS")
        self.rules = s._fast.rules
        self.out = np.empty((1024, fastpath.ROW), np.int64)
        self.inst = self.engine.instruments["AAPL"]
        self.account = self.engine.account_index["BENCH"]
        self.book = self.engine.books[self.inst.index]
        self.ticks: dict[str, int] = {}
        self.next_id = 1 << 40          # the lean orders' ids, clear of the engine's
        self.rejected = 0
        self.spent: dict[str, int] = {}

    def real(self, data: bytes) -> None:
        self.session.data_received(data)

    def lean(self, data: bytes, timed: bool = False) -> int:
        """The parts of the path for a read of passive NewOrderSingles; returns how many."""
        clock = time.perf_counter_ns if timed else None
        t = clock() if timed else 0
        s = self.session
        store = s.store
        ids, n_prefix, n_them = self.ids
        rows, _ = fastpath.scan(np.frombuffer(data, np.uint8), 0, len(data), ids, n_prefix, n_them,
                                store.next_target_seq, time.time(), 120.0, self.rules, self.out)
        store.next_target_seq += rows
        t = self._lap("scan", t, clock)
        append = self.journal.append
        risk = self.engine.risk
        inst, account, book, memo = self.inst, self.account, self.book, self.ticks
        reports = []
        for row in self.out[:rows].tolist():
            seq, a11, b11, a44, b44, a54, b54, qty = (row[1], row[4], row[5], row[14], row[15], row[16],
                                                      row[17], row[-1])
            ts = time.time_ns()
            price = _word(data[a44:b44])
            side = _word(data[a54:b54])
            cl = data[a11:b11].decode("latin-1")
            command = {"type": "order_received", "ts": ts, "session": s.key, "msg_seq_num": seq, "cl_ord_id": cl,
                       "account": "BENCH", "symbol": "AAPL", "side": side, "ord_type": "2", "tif": "0",
                       "price": price, "qty": qty}
            append(command)
            t = self._lap("command record + journal append", t, clock)
            ticks = memo.get(price)
            if ticks is None:
                ticks = memo[price] = inst.to_ticks(price)
            try:
                risk.new_order(command, inst, account, ticks)   # one numba call when accepted
            except Rejection:
                self.rejected += 1
            t = self._lap("pre-trade risk (numba)", t, clock)
            order_id = self.next_id
            self.next_id += 1
            book.add(order_id, account, 1 if side == "1" else 2, 2, 0, ticks, qty, ts, 0)
            t = self._lap("book add (numba)", t, clock)
            reports.append(append({
                "type": "order_accepted", "ts": ts, "order_id": order_id, "cl_ord_id": cl, "orig_cl_ord_id": None,
                "session": s.key, "account": "BENCH", "symbol": "AAPL", "side": side, "ord_type": "2", "tif": "0",
                "price": price, "qty": qty, "exec_id": str(order_id), "exec_type": "0", "ord_status": "0",
                "cum_qty": 0, "leaves_qty": qty, "avg_px": "0"}))
            t = self._lap("acceptance + journal append", t, clock)
        self.journal.flush()
        t = self._lap("journal flush (native chain, write)", t, clock)
        now = fix_timestamp(time.time_ns(), "ms")
        render = s.writer.execution_report
        pending = []
        for event in reports:
            out_seq = s.next_out
            s.next_out += 1
            pending.append((out_seq, render(out_seq, now, event), event["seq"]))
        t = self._lap("ExecutionReport render", t, clock)
        store.save_sent(pending)
        t = self._lap("FIX store write", t, clock)
        self.transport.write(b"".join(item[1] for item in pending))
        self._lap("socket write (counted)", t, clock)
        return rows

    def _lap(self, label: str, t: int, clock) -> int:
        if clock is None:
            return 0
        now = clock()
        self.spent[label] = self.spent.get(label, 0) + now - t
        return now


def _pin_fastest(pin: bool) -> dict:
    cpus = calibration.per_cpu() if pin else {}
    if cpus and hasattr(os, "sched_setaffinity"):
        fastest = min(cpus, key=cpus.get)
        os.sched_setaffinity(0, {fastest})
        return {"pinned_to": fastest, "calibration_us_by_cpu": cpus}
    return {"pinned_to": None, "calibration_us_by_cpu": cpus}


def run(n: int, batch: int, reps: int, warm: int = 2000, pin: bool = True) -> dict:
    """``reps`` alternating measurements of ``n`` orders in reads of ``batch`` through each path,
    then one timed pass of the parts; the process is put back on its CPUs afterwards."""
    work = Path(tempfile.mkdtemp(prefix="oms-floor-"))
    cpus_before = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    try:
        pinning = _pin_fastest(pin)
        # real and lean orders all rest in the book: room for every one without a growth
        f = Floor(work, capacity=1 << max(16, ((2 * reps + 1) * n + warm).bit_length()))
        msgs = orders(warm + (2 * reps + 1) * n, 2)
        for i in range(0, warm, 2 * batch):     # both paths warm (compiled, cached, grown)
            f.real(b"".join(msgs[i:i + batch]))
            f.lean(b"".join(msgs[i + batch:i + 2 * batch]))
        pos = warm
        gc.collect()
        gc.freeze()           # as oms serve does
        gc.disable()
        per: dict[str, list[float]] = {"real": [], "lean": []}
        calib = []
        for _ in range(reps):
            calib.append(calibration.calibration_us())
            for kind in ("real", "lean"):
                reads = [b"".join(msgs[i:i + batch]) for i in range(pos, pos + n, batch)]
                pos += n
                c0 = time.process_time_ns()
                if kind == "real":
                    for data in reads:
                        f.real(data)
                else:
                    for data in reads:
                        if f.lean(data) != batch:
                            raise RuntimeError("the fast path refused a bench order")
                per[kind].append((time.process_time_ns() - c0) / n / 1000)
        # the parts, timed in a pass of their own (the timers cost ~0.1 us each)
        timed = [b"".join(msgs[i:i + batch]) for i in range(pos, pos + n, batch)]
        for data in timed:
            if f.lean(data, timed=True) != batch:
                raise RuntimeError("the fast path refused a bench order")
        gc.enable()
        gc.unfreeze()
        f.journal.close()
        real, lean = statistics.median(per["real"]), statistics.median(per["lean"])
        return {
            "orders_per_rep": n, "batch": batch, "reps": reps, **pinning,
            "calibration_us": [round(c, 2) for c in calib],
            "real_cpu_us_per_order": [round(v, 2) for v in per["real"]],
            "lean_cpu_us_per_order": [round(v, 2) for v in per["lean"]],
            "real_median_us": round(real, 2), "lean_median_us": round(lean, 2),
            "lean_share_of_real": round(lean / real, 3),
            "lean_orders_per_s_one_core": round(1e6 / lean),
            "target_us_per_order": 1e6 / TARGET_PER_S,
            "lean_parts_us_per_order": {k: round(v / n / 1000, 2)
                                        for k, v in sorted(f.spent.items(), key=lambda kv: -kv[1])},
            "lean_risk_rejects": f.rejected,
        }
    finally:
        if cpus_before is not None:
            os.sched_setaffinity(0, cpus_before)
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--orders", type=int, default=30000, help="orders per repetition and path")
    ap.add_argument("--batch", type=int, default=50, help="orders per read (pipelined: many)")
    ap.add_argument("--reps", type=int, default=6, help="alternating repetitions of real and lean")
    ap.add_argument("--no-pin", action="store_true", help="leave this process on every CPU")
    ap.add_argument("--json", help="write the result here too")
    args = ap.parse_args(argv)
    if args.orders % args.batch:
        ap.error("--orders must be a multiple of --batch")
    r = run(args.orders, args.batch, args.reps, pin=not args.no_pin)
    print(json.dumps(r, indent=2))
    print(f"real path {r['real_median_us']} us/order, its parts alone {r['lean_median_us']} us/order "
          f"({r['lean_share_of_real']:.0%} of it; {r['lean_orders_per_s_one_core']:,}/s on one core); "
          f"{TARGET_PER_S:,}/s needs {r['target_us_per_order']:.0f} us; calibration loop "
          f"{min(r['calibration_us'])}-{max(r['calibration_us'])} us (fast vCPU: 15-19)", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
