"""Engine throughput and latency with all pre-trade risk checks on versus off, in one run.

    python -m benchmarks.bench_engine --orders 50000 [--repeat 3] [--book numba|reference] [--json out.json]

The same deterministic command stream (70% new limit orders around the reference price,
some crossing, 20% cancels, 10% replaces, on two instruments and two accounts of the demo
config) runs through a fresh engine four times: {in-memory journal stub, real Journal in a
temp dir (fsync="os", flush every 64 commands like a gateway batch)} x {risk off, risk on}.
Each setting runs --repeat times (off/on alternating, so a slow spell of a shared machine hits
both); reported are the median commands/s, per-command p50/p99 of that run and the median
on/off ratio of same-repeat pairs. Then the risk check alone, per order, as the engine calls
it on the accept path (RiskEngine.new_order: rate window + every check), p50/p99/p99.9 and
mean (see risk_check_latency), and its parts.
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


def _nothing(cmd, inst, acct, price) -> None:
    """A Python function of new_order's arguments that does nothing (the call's own cost)."""


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


def _clock_overhead(clock, n: int = 20_000) -> int:
    """Median ns of two back-to-back clock() calls (taken out of every timed call below)."""
    samples = []
    for _ in range(n):
        t0 = clock()
        samples.append(clock() - t0)
    samples.sort()
    return samples[len(samples) // 2]


def _stats(samples: list[int]) -> dict:
    samples = sorted(samples)
    return {"p50_ns": percentile(samples, 50), "p90_ns": percentile(samples, 90), "p99_ns": percentile(samples, 99),
            "p999_ns": percentile(samples, 99.9), "mean_ns": round(sum(samples) / len(samples))}


def risk_check_latency(cfg, cmds: list[dict], rounds: int = 5, session: str | None = None) -> dict:
    """The whole pre-trade check of one new order, measured directly, exactly as the engine
    calls it for a validated new order: RiskEngine.new_order (one numba call counting the
    order in its session's message-rate window, looking at the session kill switch and
    running every array check; the duplicate window only while one is in use), on the
    accept path. (Before the rate window moved into the kernel, the engine called
    on_message + check_new here, and this measured those two calls.)

    The orders are the new orders of the engine stream (two sessions of account BENCH, AAPL
    and MSFT, both sides, prices around the reference), each already validated by the
    engine (instrument, account index, price in ticks are inputs of new_order). Positions
    stay empty, so every order passes: this is the cost every accepted order pays. As in
    the engine, each command is a dict built just before it is checked. ``session``: send
    every order on that session instead (the stream's BENCH2->OMS is not a configured
    session: its rate limit is each message's account's, read by the kernel).

    Per order: ``perf_counter_ns()`` around the call, minus the median cost of the
    timer itself (measured in the same round). ``mean_ns``: untimed loops over chunks of
    100 orders, in CPU time of the thread (``thread_time_ns``), minus the same loop doing
    nothing, median chunk: on a shared machine time slices lost to other processes are not
    a cost of the check. Each round moves the times forward so the rate windows keep
    sliding. Reported: the median round (by p50) and the best round.
    """
    from oms_trading.book import ReferenceBook
    from oms_trading.compliance.kernels import numba_entries
    from oms_trading.compliance.risk import RiskEngine
    from oms_trading.engine.engine import Engine, Rejection
    risk = RiskEngine(cfg)
    engine = Engine(cfg, None, ReferenceBook, risk=risk)
    orders = []
    for cmd in cmds:
        if cmd["type"] == ev.ORDER_RECEIVED:
            inst, acct, price = engine._validate_new(cmd)
            orders.append((dict(cmd, session=session) if session else cmd, inst, acct, price))
    span = orders[-1][0]["ts"] - orders[0][0]["ts"] + 2 * 1_000_000_000
    new_order = risk.new_order
    clock, cpu = time.perf_counter_ns, time.thread_time_ns
    for cmd, inst, acct, price in orders[:2000]:   # warm-up
        new_order(dict(cmd), inst, acct, price)
    per_round = []
    shift = 0
    for _ in range(rounds):
        shift += span
        overhead = _clock_overhead(clock)
        lat = []
        append = lat.append
        rejected = 0
        for proto, inst, acct, price in orders:
            cmd = dict(proto)
            cmd["ts"] = proto["ts"] + shift
            t0 = clock()
            try:
                new_order(cmd, inst, acct, price)
            except Rejection:
                rejected += 1
            append(clock() - t0 - overhead)
        shift += span
        chunk_means = []
        for k in range(0, len(orders) - 99, 100):
            chunk = []
            for proto, inst, acct, price in orders[k:k + 100]:
                cmd = dict(proto)
                cmd["ts"] = proto["ts"] + shift
                chunk.append((cmd, inst, acct, price))
            t0 = cpu()
            for cmd, inst, acct, price in chunk:
                new_order(cmd, inst, acct, price)
            t1 = cpu()
            for cmd, inst, acct, price in chunk:
                if cmd is None:
                    new_order(cmd, inst, acct, price)
            chunk_means.append(((t1 - t0) - (cpu() - t1)) / len(chunk))
        chunk_means.sort()
        stats = _stats(lat)
        stats["mean_ns"] = round(chunk_means[len(chunk_means) // 2])
        stats["mean_timed_ns"] = round(sum(lat) / len(lat))     # includes time slices lost to others
        stats["timer_overhead_ns"] = overhead
        stats["rejected"] = rejected
        per_round.append(stats)
    per_round.sort(key=lambda r: r["p50_ns"])
    result = {"orders": len(orders), "rounds": rounds, "session": session or "as in the stream",
              "median_round": per_round[len(per_round) // 2], "best_round": per_round[0]}
    # the parts, untimed loops on one order (ns per call, best of 25 loops of 2,000 calls):
    # new_order, its numba kernel alone, the rate window alone (a cancel's on_message), the
    # two-call path on_message + check_new. Calls 100 us apart (10,000/s, under the stream
    # account's rate limit), so each window keeps sliding at a steady size.
    proto, inst, acct, price = orders[0]
    session, idx = proto["session"], inst.index
    kernel = risk._new_order
    fast = kernel is not numba_entries()[2]   # a fastcall builtin, or numba's entry point (see kernels)
    on_message, check_new = risk.on_message, risk.check_new
    n, step = 2_000, 100_000
    next_ts = [proto["ts"] + shift + 2 * span]

    def times():
        start = next_ts[0]
        next_ts[0] = start + n * step
        return range(start, start + n * step, step)

    def loop(run, reps=25):
        """ns per call: the fastest of ``reps`` loops (timeit's rule on a busy box); ``run``
        gets the times of a loop and returns (its args, the function looping over them)."""
        best = None
        for _ in range(reps):
            args, body = run(times())
            t0 = clock()
            body(args)
            per = (clock() - t0) / n
            best = per if best is None or per < best else best
        return best

    def empty(tss):
        def body(tss):
            for _t in tss:
                pass
        return list(tss), body

    def full(tss):
        def body(cmds):
            for c in cmds:
                new_order(c, inst, acct, price)
        return [dict(proto, ts=t) for t in tss], body

    def kernel_only(tss, kernel=kernel):
        waddr = risk._waddr[session]       # looked up per loop: a full ring moves the window (not here)

        def body(tss):
            for t in tss:
                kernel(waddr, t, acct, idx, True, price, 100)
        return list(tss), body

    def numba_entry(tss):
        return kernel_only(tss, numba_entries()[2])

    def cancel(tss):
        def body(cmds):
            for c in cmds:
                on_message(c)
        return [{"type": ev.CANCEL_REQUESTED, "ts": t, "session": session} for t in tss], body

    def two_calls(tss):
        def body(cmds):
            for c in cmds:
                if on_message(c) is None:
                    check_new(c, inst, acct, price)
        return [dict(proto, ts=t) for t in tss], body

    def nothing(tss):
        def body(cmds):
            for c in cmds:
                _nothing(c, inst, acct, price)
        return [proto] * n, body

    base = loop(empty)
    result["parts_ns"] = {
        "new_order": round(loop(full) - base),
        "numba_kernel_call": round(loop(kernel_only) - base),
        "numba_kernel_call_numba_entry": round(loop(numba_entry) - base),
        "empty_python_call": round(loop(nothing) - base),
        "on_message_cancel": round(loop(cancel) - base),
        "on_message_plus_check_new": round(loop(two_calls) - base),
        "fastcall": fast,
    }

    # the reject path (max_order_qty): the Rejection with its text is built only here
    def reject(tss):
        def body(cmds):
            for c in cmds:
                try:
                    new_order(c, inst, acct, price)
                except Rejection:
                    pass
        return [dict(proto, ts=t, qty=10**9) for t in tss], body
    result["parts_ns"]["check_new_reject_max_qty"] = round(loop(reject) - base)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=50_000, help="commands per run (default 50000)")
    parser.add_argument("--book", choices=("numba", "reference"), default="numba")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each (journal, risk) setting, alternating off/on; medians reported (default 3)")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)
    if args.orders < 100:
        parser.error("--orders must be >= 100")
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    cfg = load_config()
    cmds = make_commands(args.orders)
    load_before = os.getloadavg()
    # warm-up (kernel compilation / cache load) outside the measurement
    run_once(cfg, cmds[:2000], args.book, True, "stub")
    results = []
    all_runs = []
    ratios = {}
    for journal_kind in ("stub", "real"):
        runs: dict[bool, list[dict]] = {False: [], True: []}
        for rep in range(args.repeat):
            # alternate the order so a slow spell of the (shared) machine hits both sides
            for risk_on in ((False, True) if rep % 2 == 0 else (True, False)):
                res = run_once(cfg, cmds, args.book, risk_on, journal_kind)
                res["repeat"] = rep
                runs[risk_on].append(res)
                all_runs.append(res)
        for risk_on in (False, True):
            rs = sorted(runs[risk_on], key=lambda r: r["commands_per_s"])
            med = dict(rs[len(rs) // 2])
            med["commands_per_s_all"] = [r["commands_per_s"] for r in runs[risk_on]]
            results.append(med)
            print(f"journal={journal_kind:4} risk={'on ' if risk_on else 'off'}  {med['commands_per_s']:>9,} cmd/s "
                  f"(median of {len(rs)}: {', '.join(f'{r:,}' for r in med['commands_per_s_all'])})  "
                  f"p50 {med['p50_us']:7.2f} us  p99 {med['p99_us']:8.2f} us  "
                  f"({med['events']} events, {med['rejected_orders']} rejected)")
        pairs = [on["commands_per_s"] / off["commands_per_s"] for off, on in zip(runs[False], runs[True])]
        pairs.sort()
        ratios[journal_kind] = round(pairs[len(pairs) // 2], 3)
        print(f"journal={journal_kind}: risk on / off throughput ratio {ratios[journal_kind]:.3f} "
              f"(median of {len(pairs)} same-repeat pairs: {', '.join(f'{p:.3f}' for p in pairs)})")
    cost = risk_check_latency(cfg, cmds)
    cost_one = risk_check_latency(cfg, cmds, session="BENCH->OMS")
    for c in (cost, cost_one):
        m, b = c["median_round"], c["best_round"]
        print(f"risk check per order (new_order: rate window + all checks, accept path, {c['orders']} orders x "
              f"{c['rounds']} rounds, sessions {c['session']}): p50 {m['p50_ns']} ns  p99 {m['p99_ns']} ns  "
              f"p99.9 {m['p999_ns']} ns  mean {m['mean_ns']} ns CPU  (best round: p50 {b['p50_ns']}, "
              f"p99 {b['p99_ns']}, mean {b['mean_ns']}; timer {m['timer_overhead_ns']} ns taken out)")
    parts = cost["parts_ns"]
    print(f"  parts: new_order {parts['new_order']} ns, its numba kernel call {parts['numba_kernel_call']} ns "
          f"({'fastcall builtin' if parts['fastcall'] else 'numba entry point'}; through numba's entry point "
          f"{parts['numba_kernel_call_numba_entry']} ns), "
          f"empty Python call {parts['empty_python_call']} ns; rate window alone (a cancel's on_message) "
          f"{parts['on_message_cancel']} ns; two calls on_message + check_new {parts['on_message_plus_check_new']} ns; "
          f"reject path (max_order_qty, Rejection built) {parts['check_new_reject_max_qty']} ns")
    load_after = os.getloadavg()
    print(f"load average: {load_before[0]:.2f} -> {load_after[0]:.2f}")
    machine = {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count(),
               "processor": platform.processor() or platform.machine()}
    print(f"machine: {machine}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"runs": results, "all_runs": all_runs, "ratio_on_off": ratios, "risk_check": cost,
                       "risk_check_one_configured_session": cost_one,
                       "machine": machine, "load_average": [load_before[0], load_after[0]],
                       "orders": args.orders, "book": args.book, "repeat": args.repeat}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
