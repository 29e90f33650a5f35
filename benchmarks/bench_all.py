"""All benchmarks with small defaults, one JSON report: ``oms bench all [--json bench-all.json]``.

Runs book, engine, audit and fix one after the other, each in its own process
(``python -m oms_trading.cli bench WHAT ...``) with a time limit, so one failing or hanging
benchmark cannot take the others down and the whole run stays bounded (``--budget``
seconds, default 290). Each benchmark writes its own JSON; this collects them, with the
machine, the load average before and after, the exact commands, and the time and exit
status of each, into one report. A summary table goes to stdout.

    oms bench all                                    # about 1-2 minutes on 2 cores
    oms bench all --only fix,book --json out.json
    oms bench all --fix-args="--rate 5000 --duration 5"      # use = : the value starts with --
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

DEFAULTS = {
    "book": "--ops 300000",
    "engine": "--orders 20000",
    "audit": "--events 200000 --lifecycle-events 1000000",
    "fix": "--rate 1000 --duration 5 --book-ops 0 --no-progress",
}
ORDER = ("book", "engine", "audit", "fix")


def _headline(name: str, r: dict | None) -> str:
    if not r:
        return ""
    try:
        if name == "book":
            return (f"numba per call {r['numba_call']['ops_per_s']:,.0f} ops/s vs reference "
                    f"{r['reference']['ops_per_s']:,.0f} ({r['ratios']['call_vs_reference']:.1f}x); "
                    f"batch {r['batch']['ops_per_s']:,.0f} ops/s")
        if name == "engine":
            return "; ".join(f"journal={x['journal']} risk={x['risk']} {x['commands_per_s']:,} cmd/s"
                             for x in r["runs"])
        if name == "fix":
            o, f = r["oms"], r.get("floor")
            s = (f"{o['offered_rate']:,.0f}/s offered, {o['achieved_rate']:,.0f}/s achieved: oms p50 "
                 f"{o['latency_us']['p50']:,.0f} us p99 {o['latency_us']['p99']:,.0f} us")
            if f:
                s += f"; echo p50 {f['latency_us']['p50']:,.0f} us p99 {f['latency_us']['p99']:,.0f} us"
            return s
        if name == "audit":
            # the serve path: the projection process catches up from the journal files, indexes on
            # the journal: the plain append + flush runs (``journal_reps``), not the first run
            # ("journal"), which also keeps every record and feeds a tap for the projection runs
            # after it (1.5-1.8x slower)
            jr, p = r.get("journal_reps"), r.get("projection_with_indexes") or r.get("projection", {})
            if jr and jr.get("us_per_event_median"):
                out = (f"journal {1e6 / jr['us_per_event_median']:,.0f} events/s (append + flush, "
                       f"median of {jr['reps']})")
            else:
                out = f"journal {r['journal']['events_per_s']:,.0f} events/s (records kept, tap on)"
            rate = next((p[k] for k in p if k.endswith("per_s")), None)
            return out + (f", DuckDB catch-up from the journal (oms serve path) {rate:,.0f} events/s"
                          if isinstance(rate, (int, float)) else "")
    except (KeyError, TypeError, ZeroDivisionError):
        return "see JSON"
    return ""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="oms bench all", description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--json", default="bench-all.json", metavar="FILE", help="the report (default bench-all.json)")
    ap.add_argument("--only", default=",".join(ORDER), help=f"comma-separated subset of {','.join(ORDER)}")
    ap.add_argument("--budget", type=float, default=290.0, help="seconds for everything (default 290)")
    for name in ORDER:
        ap.add_argument(f"--{name}-args", default=DEFAULTS[name],
                        help=f"options of `oms bench {name}` (default: {DEFAULTS[name]!r})")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in ORDER]
    if unknown:
        ap.error(f"unknown benchmark(s) {unknown}; choose from {ORDER}")

    from benchmarks.bench_fix import machine
    t_all = time.monotonic()
    report: dict = {"benchmark": "all", "schema": 1, "command": "oms bench all " + shlex.join(argv or sys.argv[1:]),
                    "started_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                    "machine": machine(), "commands": {}, "status": {}, "seconds": {}, "results": {}}
    deadline = t_all + args.budget
    with tempfile.TemporaryDirectory(prefix="oms-bench-all-") as tmp:
        for name in names:
            out = Path(tmp) / f"{name}.json"
            extra = shlex.split(getattr(args, f"{name}_args"))
            cmd = [sys.executable, "-m", "oms_trading.cli", "bench", name, *extra, "--json", str(out)]
            report["commands"][name] = "oms bench " + shlex.join([name, *extra])
            remaining = deadline - time.monotonic()
            if remaining < 5:
                report["status"][name] = "skipped: out of --budget"
                continue
            print(f"=== oms bench {name} {' '.join(extra)}  (limit {remaining:.0f} s)", flush=True)
            t0 = time.monotonic()
            proc = subprocess.Popen(cmd, cwd=ROOT)
            try:
                rc = proc.wait(remaining)
                report["status"][name] = "ok" if rc == 0 else f"failed: exit {rc}"
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGTERM)        # bench fix stops its own servers on SIGTERM
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                report["status"][name] = "failed: over the time budget"
            except BaseException:
                proc.send_signal(signal.SIGTERM)
                proc.wait(20)
                raise
            report["seconds"][name] = round(time.monotonic() - t0, 1)
            try:
                report["results"][name] = json.loads(out.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                report["results"][name] = None
    report["elapsed_s"] = round(time.monotonic() - t_all, 1)
    report["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    m = report["machine"]
    print(f"\n=== oms bench all: {report['elapsed_s']:.0f} s on {m['cpu']} ({m['cores']} cores), Python "
          f"{m['python']}, load average {m['load_average']} -> {m['load_average_end']}")
    for name in names:
        st = report["status"].get(name, "?")
        print(f"{name:<7}{st:<28}{report['seconds'].get(name, 0):>7.1f} s  "
              f"{_headline(name, report['results'].get(name))}")
    print(f"report: {args.json}")
    return 0 if all(report["status"].get(n) == "ok" for n in names) else 1


if __name__ == "__main__":
    sys.exit(main())
