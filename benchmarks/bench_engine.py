"""Engine throughput and latency with all pre-trade risk checks on versus off, in one run.

    python -m benchmarks.bench_engine --orders 50000 [--book numba|reference] [--json out.json]

The same deterministic command stream (70% new limit orders around the reference price,
some crossing, 20% cancels, 10% replaces, on two instruments and two accounts of the demo
config) runs through a fresh engine four times: {in-memory journal stub, real Journal in a
temp dir (fsync="os", flush every 64 commands like a gateway batch)} x {risk off, risk on}.
Reports commands/s, per-command p50/p99 and the on/off ratio, plus the cost of the risk
check alone (RiskEngine.check_new per call: the numba kernel and its Python wrapper).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time

from oms_trading.audit import schema as ev
from oms_trading.config import load_config


class StubJournal:
    def __init__(self) -> None:
        self.seq = 0

    def append(self, event: dict) -> dict:
        self.seq += 1
        rec = dict(event)
        rec["seq"] = self.seq
        return rec

    def flush(self) -> None:
        pass


def make_commands(n: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    sessions = [("BENCH->OMS", "BENCH"), ("BENCH2->OMS", "BENCH")]   # BENCH has stp none: they trade
    refs = {"AAPL": 19000, "MSFT": 42000}
    live: list[tuple[str, str]] = []
    cmds = []
    ts = 1_700_000_000_000_000_000
    k = 0
    for _ in range(n):
        ts += 10_000
        r = rng.random()
        if r < 0.2 and live:
            session, cl = live.pop(rng.randrange(len(live)))
            k += 1
            cmds.append({"type": ev.CANCEL_REQUESTED, "ts": ts, "session": session, "cl_ord_id": f"x{k}",
                         "orig_cl_ord_id": cl, "order_id": None, "symbol": None, "side": None})
        elif r < 0.3 and live:
            i = rng.randrange(len(live))
            session, cl = live[i]
            k += 1
            new_cl = f"r{k}"
            live[i] = (session, new_cl)
            sym = "AAPL"
            px = refs[sym] + rng.randint(-60, 60)
            cmds.append({"type": ev.REPLACE_REQUESTED, "ts": ts, "session": session, "cl_ord_id": new_cl,
                         "orig_cl_ord_id": cl, "order_id": None, "symbol": None, "side": None, "ord_type": None,
                         "tif": None, "price": f"{px // 100}.{px % 100:02d}", "qty": rng.choice([100, 200, 300])})
        else:
            session, account = sessions[rng.randrange(2)]
            sym = rng.choice(("AAPL", "MSFT"))
            side = rng.choice("12")
            px = refs[sym] + rng.randint(-50, 50) + (10 if side == "1" else -10)
            k += 1
            cl = f"n{k}"
            cmds.append({"type": ev.ORDER_RECEIVED, "ts": ts, "session": session, "cl_ord_id": cl,
                         "account": account, "symbol": sym, "side": side, "ord_type": "2", "tif": "1",
                         "price": f"{px // 100}.{px % 100:02d}", "qty": rng.choice([100, 200, 300, 500])})
            live.append((session, cl))
    return cmds


def percentile(sorted_ns: list[int], p: float) -> int:
    return sorted_ns[min(len(sorted_ns) - 1, int(p / 100 * len(sorted_ns)))]


def run_once(cfg, cmds, book: str, risk_on: bool, journal_kind: str) -> dict:
    from oms_trading.engine.engine import Engine
    from oms_trading.server import make_book_factory
    from oms_trading.compliance.risk import RiskEngine
    factory = make_book_factory(book)
    tmp = None
    if journal_kind == "real":
        from oms_trading.audit.journal import Journal
        tmp = tempfile.TemporaryDirectory(prefix="bench_engine_")
        journal = Journal(tmp.name, fsync="os")
    else:
        journal = StubJournal()
    engine = Engine(cfg, journal, factory, risk=RiskEngine(cfg) if risk_on else None)
    lat = []
    events = 0
    rejected = 0
    clock = time.perf_counter_ns
    process = engine.process
    started = clock()
    for i, cmd in enumerate(cmds):
        t0 = clock()
        out = process(cmd)
        lat.append(clock() - t0)
        events += len(out)
        if len(out) > 1 and out[1]["type"] == ev.ORDER_REJECTED:
            rejected += 1
        if i % 64 == 63:
            engine.flush()
    engine.flush()
    elapsed = (clock() - started) / 1e9
    if tmp is not None:
        journal.close()
        tmp.cleanup()
    lat.sort()
    return {"book": book, "risk": risk_on, "journal": journal_kind, "commands": len(cmds), "events": events,
            "rejected_orders": rejected, "seconds": round(elapsed, 4),
            "commands_per_s": round(len(cmds) / elapsed), "p50_us": round(percentile(lat, 50) / 1000, 2),
            "p99_us": round(percentile(lat, 99) / 1000, 2), "max_us": round(lat[-1] / 1000, 1)}


def risk_check_cost(cfg, n: int) -> dict:
    """ns per RiskEngine.check_new call (all array checks in one numba call) on a passing order."""
    from oms_trading.book import ReferenceBook
    from oms_trading.compliance.risk import RiskEngine
    from oms_trading.engine.engine import Engine
    risk = RiskEngine(cfg)
    engine = Engine(cfg, None, ReferenceBook, risk=risk)
    inst = engine.instruments["AAPL"]
    acct = engine.account_index["BENCH"]
    cmd = {"type": ev.ORDER_RECEIVED, "ts": 1, "session": "BENCH->OMS", "cl_ord_id": "a", "account": "BENCH",
           "symbol": "AAPL", "side": "1", "ord_type": "2", "tif": "1", "price": "190.05", "qty": 100}
    check = risk.check_new
    price = inst.to_ticks("190.05")
    for _ in range(1000):
        check(cmd, inst, acct, price)
    best = None
    for _ in range(5):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            check(cmd, inst, acct, price)
        per = (time.perf_counter_ns() - t0) / n
        best = per if best is None else min(best, per)
    kernel = risk._check
    pos = risk.pos
    mem, n_acct, n_inst, idx = pos.mem, pos.n_acct, pos.n_inst, inst.index
    t0 = time.perf_counter_ns()
    for _ in range(n):
        kernel(mem, n_acct, n_inst, acct, idx, True, False, price, 100, 0, 0, False)
    kernel_ns = (time.perf_counter_ns() - t0) / n
    return {"check_new_ns": round(best), "kernel_call_ns": round(kernel_ns)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=50_000, help="commands per run (default 50000)")
    parser.add_argument("--book", choices=("numba", "reference"), default="numba")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)
    if args.orders < 100:
        parser.error("--orders must be >= 100")
    cfg = load_config()
    cmds = make_commands(args.orders)
    results = []
    # warm-up (kernel compilation / cache load) outside the measurement
    run_once(cfg, cmds[:2000], args.book, True, "stub")
    for journal_kind in ("stub", "real"):
        for risk_on in (False, True):
            res = run_once(cfg, cmds, args.book, risk_on, journal_kind)
            results.append(res)
            print(f"journal={journal_kind:4} risk={'on ' if risk_on else 'off'}  {res['commands_per_s']:>9,} cmd/s  "
                  f"p50 {res['p50_us']:7.2f} us  p99 {res['p99_us']:8.2f} us  "
                  f"({res['events']} events, {res['rejected_orders']} rejected)")
    ratios = {}
    for journal_kind in ("stub", "real"):
        off, on = (r for r in results if r["journal"] == journal_kind)
        ratios[journal_kind] = round(on["commands_per_s"] / off["commands_per_s"], 3)
        print(f"journal={journal_kind}: risk on / off throughput ratio {ratios[journal_kind]:.3f}")
    cost = risk_check_cost(cfg, 100_000)
    print(f"risk check alone: check_new {cost['check_new_ns']} ns/order, numba kernel call {cost['kernel_call_ns']} ns")
    machine = {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count(),
               "processor": platform.processor() or platform.machine()}
    print(f"machine: {machine}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"runs": results, "ratio_on_off": ratios, "risk_check": cost, "machine": machine,
                       "orders": args.orders, "book": args.book}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
