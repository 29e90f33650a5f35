"""Order book benchmark: numba book (one call per op), numba batch kernel, reference book.

One seeded stream, three phases:
  A. near the touch: passive adds 1-20 ticks behind the touch, cancels and replaces of
     recent orders (in-place decreases and re-prices), aggressive orders that cross several
     levels (limit DAY/IOC/FOK and market), on a mid price that random-walks;
  B. deep-book build: 100,000 resting orders (or ops/5 if fewer) spread over 2 x 5,000
     levels;
  C. the same mix on the deep book: adds at any depth, cancels of random deep orders,
     replaces, aggressive orders.
After the comparison, one mass cancel of one account on the deep book is timed apart
(a kill-switch operation, kept out of the per-op mix; it visits only that account's
orders through its per-account list).
Run through (a) NumbaBook, one Python call per op, (b) the batch kernel (whole stream in
one call), (c) ReferenceBook. (a) and (c) run twice on fresh books: once untimed for
throughput, once with time.perf_counter_ns() around each call for p50/p99/p99.9/max
(the timer overhead, ~100-150 ns, is inside those figures; the ops/s figure comes from the
untimed pass). (b) runs again with one batch call per phase for per-phase throughput, then
once more on the whole stream after that book is freed (the first run of a process also
pays for taking fresh memory from the OS, slow on this VM; the second mostly reuses freed
pages); the targets use the first run. Throughputs are wall clock (the targets); beside
them the same runs per second of this thread's CPU time (time.thread_time), which tells
waiting for a CPU apart from running slowly. The one-call-per-op loops run with the cyclic
GC collected, frozen and switched off, as the server runs its engine (server.py
_gc_loop). All three must give the same per-op results and end in the same state;
otherwise run() raises and main() returns 1.

    python -m benchmarks.bench_book --ops 1000000 --seed 1 --json bench-book.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time

import numpy as np

from oms_trading.book import (
    NumbaBook, ReferenceBook, warm_up, BUY, SELL, MARKET, LIMIT, TIF_DAY, TIF_GTC, TIF_IOC,
    TIF_FOK, STP_NONE, STP_CANCEL_RESTING, OK, OP_ADD, OP_CANCEL, OP_REPLACE, OP_MASS_CANCEL,
)

MID0 = 1_000_000
DEEP_LEVELS = 5_000
N_ACCOUNTS = 50


def make_stream(ops: int, seed: int) -> np.ndarray:
    """The (ops, 10) int64 operation stream (layout of oms_trading.book.batch)."""
    rng = np.random.default_rng(seed)
    n_deep = min(100_000, ops // 5)
    rest = ops - n_deep
    n_a = rest * 2 // 3
    n_c = rest - n_a
    out = np.zeros((ops, 10), dtype=np.int64)
    out[:, 8] = np.arange(1, ops + 1)  # ts
    out[:, 2] = rng.integers(1, N_ACCOUNTS + 1, ops)
    out[:, 4] = LIMIT
    out[:, 5] = TIF_GTC
    # mid price: random walk, one tick step every ~50 ops on average
    steps = rng.choice(np.array([-1, 0, 1]), size=ops, p=[0.01, 0.98, 0.01])
    mid = MID0 + np.cumsum(steps)

    def fill_phase(lo, hi, deep):
        n = hi - lo
        if n <= 0:
            return
        sl = slice(lo, hi)
        u = rng.random(n)
        side = rng.choice(np.array([BUY, SELL]), n)
        sgn = np.where(side == BUY, -1, 1)
        m = mid[sl]
        kind = np.full(n, OP_ADD)
        kind[(u >= 0.50) & (u < 0.75)] = OP_CANCEL
        kind[(u >= 0.75) & (u < 0.90)] = OP_REPLACE
        aggr = u >= 0.90
        o = out[sl]
        o[:, 0] = kind
        o[:, 3] = side
        # passive adds
        if deep:
            off = rng.integers(1, DEEP_LEVELS + 1, n)
        else:
            off = 1 + np.minimum(rng.geometric(0.25, n) - 1, 19)
        o[:, 6] = m + sgn * off
        o[:, 7] = rng.integers(1, 101, n)
        o[:, 9] = np.where(rng.random(n) < 0.05, STP_CANCEL_RESTING, STP_NONE)
        # aggressive: limit 3-8 ticks through the touch, quantity of a few levels
        a = np.nonzero(aggr)[0]
        o[a, 6] = m[a] - sgn[a] * rng.integers(3, 9, a.size)
        o[a, 7] = rng.integers(50, 400, a.size)
        t = rng.random(a.size)
        o[a, 5] = np.where(t < 0.5, TIF_IOC, np.where(t < 0.9, TIF_DAY, TIF_FOK))
        o[a[t >= 0.95], 4] = MARKET

    fill_phase(0, n_a, False)
    # deep build: passive adds over 2 x DEEP_LEVELS levels around the current mid
    sl = slice(n_a, n_a + n_deep)
    side = rng.choice(np.array([BUY, SELL]), n_deep)
    out[sl, 0] = OP_ADD
    out[sl, 3] = side
    out[sl, 6] = mid[sl] + np.where(side == BUY, -1, 1) * rng.integers(1, DEEP_LEVELS + 1,
                                                                     n_deep)
    out[sl, 7] = rng.integers(1, 101, n_deep)
    fill_phase(n_a + n_deep, ops, True)

    # order ids: each add row gets a fresh id; cancels/replaces pick an earlier add
    is_add = out[:, 0] == OP_ADD
    add_rows = np.nonzero(is_add)[0]
    out[add_rows, 1] = add_rows + 1
    before = np.cumsum(is_add) - is_add  # adds strictly before each row
    ref = ~is_add & (before > 0)
    r = np.nonzero(ref)[0]
    window = np.where(r < n_a, 2_000, 150_000)
    back = 1 + (rng.random(r.size) * np.minimum(window, before[r])).astype(np.int64)
    src = add_rows[before[r] - back]
    out[r, 1] = src + 1
    rep = r[out[r, 0] == OP_REPLACE]
    srcp = add_rows[before[rep] - back[out[r, 0] == OP_REPLACE]]
    half = rng.random(rep.size) < 0.5
    # half: same price, smaller qty (in place when the order is still as added);
    # half: re-price by +-1..3 ticks with a new qty
    out[rep, 6] = out[srcp, 6] + np.where(half, 0, rng.integers(-3, 4, rep.size))
    out[rep, 7] = np.where(half, np.maximum(out[srcp, 7] // 2, 1), rng.integers(1, 101,
                                                                              rep.size))
    out[rep, 9] = STP_NONE
    return np.ascontiguousarray(out)


def phases(ops: int) -> list[tuple[str, int, int]]:
    """(name, start, end) of the three phases of make_stream(ops, ...)."""
    n_deep = min(100_000, ops // 5)
    rest = ops - n_deep
    n_a = rest * 2 // 3
    return [("A_near_touch_mixed", 0, n_a), ("B_deep_build", n_a, n_a + n_deep),
            ("C_deep_mixed", n_a + n_deep, ops)]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _calls(ops: np.ndarray):
    """Per-op (code, args) for the one-call-per-op runs."""
    calls = []
    for row in ops.tolist():
        op = row[0]
        if op == OP_ADD:
            calls.append((0, tuple(row[1:10])))
        elif op == OP_CANCEL:
            calls.append((1, (row[1],)))
        elif op == OP_REPLACE:
            calls.append((2, (row[1], row[6], row[7], row[8], row[9])))
        else:
            calls.append((3, (row[2], row[3])))
    return calls


def _run_calls(book, calls, timed: bool):
    """One Python call per op. The cyclic GC is handled as the server does it (server.py
    _gc_loop: collected and frozen up front, automatic collection off while orders flow):
    otherwise a full collection walking the million input tuples lands inside whichever
    call triggers it, a pause that belongs to the harness, not to the book."""
    fns = (book.add, book.cancel, book.replace, book.mass_cancel)
    res = [None] * len(calls)
    lat = None
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        return _loop(fns, calls, res, timed)
    finally:
        gc.enable()
        gc.unfreeze()


def _loop(fns, calls, res, timed):
    lat = None
    if timed:
        lat = [0] * len(calls)
        clock = time.perf_counter_ns
        i = 0
        for code, args in calls:
            t0 = clock()
            r = fns[code](*args)
            t1 = clock()
            lat[i] = t1 - t0
            res[i] = r
            i += 1
        wall = sum(lat) / 1e9
    else:
        i = 0
        c0 = time.thread_time()
        t0 = time.perf_counter()
        for code, args in calls:
            res[i] = fns[code](*args)
            i += 1
        wall = time.perf_counter() - t0
        cpu = time.thread_time() - c0
        return res, lat, wall, cpu
    return res, lat, wall, None


def _norm(res, calls):
    """Results as 5-lists comparable with the batch kernel's rows."""
    out = []
    for (code, _), r in zip(calls, res):
        if code == 3:
            out.append([OK, len(r), sum(q for _, q in r), 0, 0])
        elif code == 1:
            out.append([r[0], r[1], 0, 0, 0])
        else:
            out.append(list(r))
    return out


def _pcts(lat):
    a = np.asarray(lat, dtype=np.int64)
    p50, p99, p999 = np.percentile(a, [50, 99, 99.9])
    return {"p50_ns": int(p50), "p99_ns": int(p99), "p999_ns": int(p999), "max_ns": int(a.max())}


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def run(ops: int = 1_000_000, seed: int = 1) -> dict:
    load_start = _load()
    warm_up()
    stream = make_stream(ops, seed)
    calls = _calls(stream)
    out: dict = {
        "benchmark": "book", "ops": ops, "seed": seed,
        "machine": {"cpu": _cpu_model(), "platform": platform.platform(),
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "numba": __import__("numba").__version__,
                    "numpy": np.__version__},
        "mix": {name: int((stream[:, 0] == code).sum()) for name, code in
                (("add", OP_ADD), ("cancel", OP_CANCEL), ("replace", OP_REPLACE),
                 ("mass_cancel", OP_MASS_CANCEL))},
    }

    # (b) batch kernel
    nbb = NumbaBook()
    c0 = time.thread_time()
    t0 = time.perf_counter()
    bres = nbb.run_batch(stream)
    tb = time.perf_counter() - t0
    cb = time.thread_time() - c0
    out["batch"] = {"ops_per_s": ops / tb, "seconds": tb, "ops_per_cpu_s": ops / cb}
    # (b') the same stream, one batch call per phase on a fresh book: per-phase throughput
    nbp = NumbaBook()
    per_phase = {}
    for name, lo, hi in phases(ops):
        if hi <= lo:
            continue
        c0 = time.thread_time()
        t0 = time.perf_counter()
        nbp.run_batch(stream[lo:hi])
        t = time.perf_counter() - t0
        c = time.thread_time() - c0
        per_phase[name] = {"ops": hi - lo, "ops_per_s": (hi - lo) / t,
                           "ops_per_cpu_s": (hi - lo) / c if c > 0 else None}
    out["batch"]["per_phase"] = per_phase
    # (b'') the whole stream once more on a fresh book, after the per-phase book is freed:
    # the first run of a process also pays for taking fresh memory from the OS (slow on
    # this VM); this one mostly reuses the pages the per-phase book gave back
    del nbp
    t0 = time.perf_counter()
    NumbaBook().run_batch(stream)
    out["batch"]["ops_per_s_second_run"] = ops / (time.perf_counter() - t0)

    # (a) numba, one call per op
    nb = NumbaBook()
    _, _, wa, ca = _run_calls(nb, calls, timed=False)
    nb = NumbaBook()
    ares, alat, wa_in, _ = _run_calls(nb, calls, timed=True)
    out["numba_call"] = {"ops_per_s": ops / wa, "seconds": wa, "ops_per_cpu_s": ops / ca,
                         "ops_per_s_in_call": ops / wa_in, **_pcts(alat)}
    lat_a = np.asarray(alat, dtype=np.int64)
    codes = np.fromiter((c for c, _ in calls), dtype=np.int64, count=len(calls))
    worst = int(np.argmax(lat_a))
    out["numba_call"]["worst_call"] = {
        "ns": int(lat_a[worst]), "op_index": worst,
        "op": ("add", "cancel", "replace", "mass_cancel")[calls[worst][0]],
        "phase": next(n for n, lo, hi in phases(ops) if lo <= worst < hi)}
    out["numba_call"]["per_phase_op"] = {}
    for name, lo, hi in phases(ops):
        for code, opn in enumerate(("add", "cancel", "replace")):
            sel = lat_a[lo:hi][codes[lo:hi] == code]
            if sel.size:
                out["numba_call"]["per_phase_op"][f"{name}/{opn}"] = {"n": int(sel.size),
                                                                     **_pcts(sel)}
    del lat_a

    # (c) reference
    rb = ReferenceBook()
    _, _, wc, cc = _run_calls(rb, calls, timed=False)
    rb = ReferenceBook()
    cres, clat, wc_in, _ = _run_calls(rb, calls, timed=True)
    out["reference"] = {"ops_per_s": ops / wc, "seconds": wc, "ops_per_cpu_s": ops / cc,
                        "ops_per_s_in_call": ops / wc_in, **_pcts(clat)}
    del alat, clat

    out["ratios"] = {
        "batch_vs_reference": out["batch"]["ops_per_s"] / out["reference"]["ops_per_s"],
        "call_vs_reference": out["numba_call"]["ops_per_s"] / out["reference"]["ops_per_s"],
        "batch_vs_call": out["batch"]["ops_per_s"] / out["numba_call"]["ops_per_s"],
    }
    # same results, same final state
    ra = _norm(ares, calls)
    rc = _norm(cres, calls)
    if ra != rc:
        i = next(i for i, (x, y) in enumerate(zip(ra, rc)) if x != y)
        raise RuntimeError(f"numba vs reference results differ at op {i}: {ra[i]} {rc[i]}")
    rbl = bres.tolist()
    if rbl != rc:
        i = next(i for i, (x, y) in enumerate(zip(rbl, rc)) if x != y)
        raise RuntimeError(f"batch vs reference results differ at op {i}: {rbl[i]} {rc[i]}")
    sa, sb, sc = nb.orders(), nbb.orders(), rb.orders()
    if not (sa == sc and sb == sc):
        raise RuntimeError("final book states differ")
    out["final_state"] = {"resting_orders": len(sc), "bid_levels": len(rb.depth(10**9)[0]),
                          "ask_levels": len(rb.depth(10**9)[1]), "identical": True}
    out["fills"] = sum(r[1] for (code, _), r in zip(calls, rc) if code in (0, 2))
    # a kill-switch style mass cancel of one account on the deep book, timed apart
    t0 = time.perf_counter()
    ma = nb.mass_cancel(7, 0)
    t1 = time.perf_counter()
    mc = rb.mass_cancel(7, 0)
    t2 = time.perf_counter()
    if ma != mc or nb.orders() != rb.orders():
        raise RuntimeError("mass cancel results differ")
    out["mass_cancel_one_account"] = {"book_orders": len(sc), "canceled": len(ma),
                                      "numba_ms": (t1 - t0) * 1e3,
                                      "reference_ms": (t2 - t1) * 1e3}
    out["load_average"] = {"start": load_start, "end": _load()}
    out["targets"] = {
        "batch_ge_5M": out["batch"]["ops_per_s"] >= 5_000_000,
        "batch_ge_10x_ref": out["ratios"]["batch_vs_reference"] >= 10,
        "call_ge_1M": out["numba_call"]["ops_per_s"] >= 1_000_000,
        "call_p99_lt_2us": out["numba_call"]["p99_ns"] < 2_000,
        "call_ge_2x_ref": out["ratios"]["call_vs_reference"] >= 2,
    }
    return out


def _print(r: dict) -> None:
    print(f"book benchmark: {r['ops']:,} ops, seed {r['seed']}, mix {r['mix']}, "
          f"{r['fills']:,} fills")
    m = r["machine"]
    print(f"machine: {m['cpu']}, {m['platform']}, {m['cpus']} cpus, python {m['python']}, "
          f"numba {m['numba']}, numpy {m['numpy']}")
    la = r.get("load_average", {})
    if la:
        print(f"load average (1/5/15 min): start {la['start']}, end {la['end']}")
    print(f"{'':<22}{'ops/s':>13}{'ops/CPU-s':>13}{'p50':>9}{'p99':>9}{'p99.9':>9}{'max':>11}")
    for key, name in (("batch", "(b) numba batch"), ("numba_call", "(a) numba per call"),
                      ("reference", "(c) reference")):
        x = r[key]
        if "p50_ns" in x:
            print(f"{name:<22}{x['ops_per_s']:>13,.0f}{x['ops_per_cpu_s']:>13,.0f}"
                  f"{x['p50_ns']:>7}ns{x['p99_ns']:>7}ns"
                  f"{x['p999_ns']:>7}ns{x['max_ns'] / 1e3:>9.0f}us")
        else:
            print(f"{name:<22}{x['ops_per_s']:>13,.0f}{x['ops_per_cpu_s']:>13,.0f}"
                  f"   (throughput of one call)")
    print("ops/s: wall clock (the targets); ops/CPU-s: the same run per second of this "
          "thread's CPU time (leaves out time spent waiting for a CPU)")
    print("(a) ops/s: untimed pass (plain loop of calls); p50..max: separate pass with "
          "perf_counter_ns around each call (timer cost included)")
    w = r["numba_call"]["worst_call"]
    print(f"(a) worst single call: {w['ns'] / 1e3:,.0f} us ({w['op']} #{w['op_index']}, "
          f"phase {w['phase']})")
    for k, x in r["numba_call"]["per_phase_op"].items():
        print(f"    (a) {k:<32} n={x['n']:>8,} p50 {x['p50_ns']:>6}ns p99 {x['p99_ns']:>6}ns "
              f"p99.9 {x['p999_ns']:>7}ns")
    if "ops_per_s_second_run" in r["batch"]:
        print(f"    (b) whole stream again on a fresh book, reusing freed memory: "
              f"{r['batch']['ops_per_s_second_run']:,.0f} ops/s")
    for k, x in r["batch"]["per_phase"].items():
        cpu = f" ({x['ops_per_cpu_s']:,.0f} ops/CPU-s)" if x.get("ops_per_cpu_s") else ""
        print(f"    (b) {k:<32} {x['ops']:>9,} ops {x['ops_per_s']:>13,.0f} ops/s{cpu}")
    print("ratios: " + ", ".join(f"{k} {v:.1f}x" for k, v in r["ratios"].items()))
    print(f"final state identical: {r['final_state']}")
    x = r["mass_cancel_one_account"]
    print(f"mass cancel of one account on a {x['book_orders']:,}-order book "
          f"({x['canceled']:,} canceled): numba {x['numba_ms']:.1f} ms, "
          f"reference {x['reference_ms']:.1f} ms")
    print("targets: " + ", ".join(f"{k}={'met' if v else 'MISSED'}"
                                  for k, v in r["targets"].items()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench_book", description=__doc__.splitlines()[0])
    p.add_argument("--ops", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", metavar="FILE", default=None)
    a = p.parse_args(argv)
    try:
        r = run(a.ops, a.seed)
    except RuntimeError as e:
        print(f"bench_book: FAILED: {e}", file=sys.stderr)
        return 1
    _print(r)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
