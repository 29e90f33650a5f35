"""FIX round trip benchmark: open-loop load over real FIX sessions, beside an echo floor.

    oms bench fix --rate R --duration S [--sessions K] [--mix passive=60,cross=10,cancel=20,replace=10]
                  [--target HOST:PORT] [--json FILE] [--plot FILE.png] [--progress]
    oms bench fix --find-max --p99-bound US [--start-rate 250] [--step-factor 1.5] [--max-steps 8]
    oms bench fix --mode closed --orders N          (one operation in flight per session)
    oms bench fix --mode pipelined --orders N       (N orders written back to back per session)

What it does, in one run:

1. the book baseline: ``benchmarks.bench_book.run`` with a small ``--book-ops`` (numba vs the
   pure-Python reference book), so the machine's speed that day is on record;
2. ``oms serve`` in its own process on free loopback ports with a fresh data folder and a
   temp config (the demo config plus sessions BENCH2..BENCHK like BENCH: FIX.4.4, account
   BENCH, ResetSeqNumFlag on logon) -- or ``--target HOST:PORT``, an OMS you run yourself
   that has those sessions;
3. the floor: ``benchmarks/echo_server.py`` (bare uvloop, answers each order with a
   pre-encoded ExecutionReport-sized message) measured by the same client with the same
   schedule and mix, then the OMS;
4. the report: p50 p90 p99 p99.9 p99.99 max per path (new, cross, cancel, replace) from the
   *scheduled* send time (coordinated omission corrected; see benchmarks/loadgen.py), the
   same from the actual write ("service"), the sender's lag, achieved versus offered rate,
   sent = acknowledged + rejected + errors, unsent, and the OMS/floor ratios; a table on
   stdout, ``--json FILE`` and a percentile plot ``--plot FILE.png``.

``--find-max`` offers ``--start-rate`` and multiplies it by ``--step-factor`` for at most
``--max-steps`` steps of ``--step-duration`` seconds (one OMS, one set of sessions), stops at
the first step that fails (p99 of all round trips above ``--p99-bound`` microseconds, achieved
rate below 95% of offered, unsent operations or errors, or more than 1% rejects), bisects
``--refine`` times between the last pass and the first failure (a failing step is retried
``--step-retries`` times first: one noisy second should not end the search; the server idles
``--settle`` seconds between steps), and then measures the best
rate for ``--duration`` seconds beside the floor. A saturated OMS is handled by the bounded
backlog (``--max-backlog`` unanswered operations): the sender waits, its schedule keeps
running, and the report says the offered rate was not met.

Targets of the FIX issue, reported when the run allows: p50 <= 2x echo and p99 <= 3x echo at
10,000 orders/s; >= 50,000 orders/s pipelined on one session. Latest figures with the machine
and commands: benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import json
import math
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks import affinity, calibration, loadgen
from benchmarks.loadgen import PATHS, LoadGen, parse_mix, run_coro

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"


# -- machine -----------------------------------------------------------------------------------

def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    try:
        import uvloop
        uv = uvloop.__version__
    except ImportError:
        uv = None
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "implementation": platform.python_implementation(), "platform": platform.platform(),
            "uvloop": uv, "load_average": load,
            # this VM runs the same code 1.5-1.8x slower in some minutes: which ones these were
            "calibration": calibration.reading()}


# -- child processes ---------------------------------------------------------------------------

def _die_with_parent() -> None:
    """In the child: SIGTERM when the benchmark process dies (Linux), so nothing is left behind."""
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)     # PR_SET_PDEATHSIG
    except Exception:   # noqa: BLE001 - best effort, not on this platform
        pass


class Child:
    """A server process we start and stop ourselves (by its PID)."""

    def __init__(self, name: str, cmd: list[str], ready: re.Pattern, timeout: float = 240.0,
                 cwd: Path | str = ROOT, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
                                     env=dict(os.environ, PYTHONUNBUFFERED="1", **(env or {})),
                                     preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        self.stderr: list[str] = []
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()
        deadline = time.monotonic() + timeout
        self.port = 0
        try:
            while time.monotonic() < deadline:
                line = self.proc.stdout.readline()
                if not line:
                    if self.proc.poll() is not None:
                        time.sleep(0.2)
                        raise RuntimeError(f"{name} exited with {self.proc.returncode}: "
                                           f"{''.join(self.stderr)[-2000:]}")
                    continue
                if m := ready.search(line):
                    self.port = int(m.group(1))
                    break
            else:
                raise RuntimeError(f"{name} not ready in {timeout:.0f} s")
        except BaseException:
            self.stop()
            raise
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class RssSampler:
    """Samples a process's resident memory (VmRSS, Linux /proc) twice a second in a thread."""

    def __init__(self, pid: int, interval_s: float = 0.5) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.samples: list[tuple[float, int]] = []     # (seconds since start, RSS in KiB)
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def _read_kib(self) -> int | None:
        try:
            with open(f"/proc/{self.pid}/status", encoding="ascii") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except (OSError, ValueError):
            return None
        return None

    def _run(self) -> None:
        while not self._stop.is_set():
            kib = self._read_kib()
            if kib is not None:
                self.samples.append((round(time.monotonic() - self._t0, 2), kib))
            self._stop.wait(self.interval_s)

    def stop(self) -> dict:
        """RSS at the first and last sample, the peak, and the full timeline (MiB)."""
        self._stop.set()
        self._thread.join(5)
        if not self.samples:
            return {"available": False}
        mib = [(t, round(k / 1024, 1)) for t, k in self.samples]
        return {"available": True, "first_mib": mib[0][1], "last_mib": mib[-1][1],
                "max_mib": max(m for _, m in mib), "growth_mib": round(mib[-1][1] - mib[0][1], 1),
                "samples": mib}


def process_cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds a process has used so far (Linux /proc), or None."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def child_pids(pid: int | None) -> list[int]:
    """Every descendant process of ``pid`` (Linux /proc: each thread's ``children``), e.g. the
    audit projection process ``oms serve`` spawns and its helpers; [] elsewhere."""
    out: list[int] = []
    stack = [pid] if pid is not None else []
    while stack:
        p = stack.pop()
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{p}/task/{t}/children", encoding="ascii") as handle:
                    kids = [int(x) for x in handle.read().split()]
            except (OSError, ValueError):
                continue
            out.extend(k for k in kids if k not in out)
            stack.extend(kids)
    return out


def children_cpu_s(pid: int | None) -> dict[int, float]:
    """CPU seconds used so far by each descendant process of ``pid``."""
    out = {}
    for k in child_pids(pid):
        c = process_cpu_s(k)
        if c is not None:
            out[k] = c
    return out


def server_cpu_before(pid: int | None) -> tuple[float | None, dict[int, float]]:
    """What ``add_server_cpu`` needs from just before a measured run."""
    return process_cpu_s(pid), children_cpu_s(pid)


def add_server_cpu(result: dict, before, pid: int | None, settle_s: float = 10.0) -> None:
    """The server's CPU over one measured run, in all and per operation answered: how close to
    one busy core the run took it (its order path is one thread).

    ``before``: ``server_cpu_before(pid)`` (or the serve process's CPU alone). The serve process
    is read at the end of the run. Its child processes (the audit projection that ``oms serve``
    runs in a process of its own) do per-order work too, part of it after the last answer (a
    projection catching up): they are read once they are idle again (not one 10 ms clock tick
    of CPU in 0.25 s, at most ``settle_s`` seconds after the run) and reported apart and in the
    total.
    ``/proc/PID/stat`` counts a process's own threads only, so without this the projection's
    CPU (as much as the order path's in a pipelined run) was in no figure."""
    cpu0, kids0 = before if isinstance(before, tuple) else (before, None)
    after = process_cpu_s(pid)
    answered = (result.get("acknowledged") or 0) + (result.get("rejected") or 0)
    if cpu0 is None or after is None or not answered:
        return
    cpu = after - cpu0
    out = {"cpu_s": round(cpu, 2), "us_per_operation": round(cpu / answered * 1e6, 1)}
    if kids0 is not None:
        t0 = time.monotonic()
        last = children_cpu_s(pid)
        while time.monotonic() - t0 < settle_s:
            time.sleep(0.25)
            now = children_cpu_s(pid)
            busy = sum(c - last.get(k, 0.0) for k, c in now.items())
            last = now
            if busy < 0.005:
                break
        kids = sum(c - kids0.get(k, 0.0) for k, c in last.items())
        out.update(children_cpu_s=round(kids, 2), children_us_per_operation=round(kids / answered * 1e6, 1),
                   children_settle_s=round(time.monotonic() - t0, 2),
                   total_us_per_operation=round((cpu + kids) / answered * 1e6, 1))
    result["server_cpu"] = out


def bench_config_text(sessions: int) -> str:
    """The demo config plus BENCH2..BENCHK, each like BENCH."""
    from oms_trading.config import demo_config_text
    text = demo_config_text()
    extra = "".join(f"""
[[fix.sessions]]
sender_comp_id = "OMS"
target_comp_id = "BENCH{k}"
begin_string = "FIX.4.4"
account = "BENCH"
heartbeat = 0
reset_on_logon = true
""" for k in range(2, sessions + 1))
    if extra:
        text += "\n# -- added by oms bench fix: more sessions like BENCH\n" + extra
    return text


def start_oms(tmp: Path, sessions: int) -> Child:
    cfg = tmp / "bench.toml"
    cfg.write_text(bench_config_text(sessions), encoding="utf-8")
    return Child("oms serve", [sys.executable, "-m", "oms_trading.cli", "serve", "--config", str(cfg),
                               "--data-dir", str(tmp / "data"), "--host", LOOPBACK,
                               "--fix-port", "0", "--http-port", "0"],
                 re.compile(r"FIX listening on [\d.]+:(\d+)"))


def start_echo() -> Child:
    return Child("echo server", [sys.executable, "-m", "benchmarks.echo_server", "--host", LOOPBACK, "--port", "0"],
                 re.compile(r"ECHO (\d+)"), timeout=60.0)


# -- measurements ------------------------------------------------------------------------------

def _gen(args, host: str, port: int, label: str) -> LoadGen:
    return LoadGen(host, port, sessions=args.sessions, comp_id=args.comp_id, max_backlog=args.max_backlog,
                   drain_timeout=args.drain_timeout, progress=args.progress, label=label, reader=args.reader,
                   check_seq=label != "echo")


def _hists(gen: LoadGen) -> dict:
    return {"paths": gen.hist, "all": gen.hist_all}


def _with_hdr(report: dict, gen: LoadGen) -> dict:
    """Attach the encoded histograms (HdrHistogram base64, ns) so anyone can replot or merge them."""
    for k, name in enumerate(PATHS):
        if gen.hist[k].get_total_count():
            report["paths"][name]["hdr_ns"] = gen.hist[k].encode().decode()
    if gen.hist_all.get_total_count():
        report["hdr_ns"] = gen.hist_all.encode().decode()
    return report


def measure_open(args, host: str, port: int, label: str, rate: float, duration: float, probs) -> tuple[dict, dict]:
    async def go():
        gen = _gen(args, host, port, label)
        try:
            await gen.connect()
            await gen.warmup(args.warmup)
            rep = await gen.run_open(rate, duration, probs, seed=args.seed)
        finally:
            await gen.close()
        return _with_hdr(rep, gen), _hists(gen)
    return run_coro(go())


def measure_closed(args, host: str, port: int, label: str, probs) -> dict:
    async def go():
        gen = _gen(args, host, port, label)
        try:
            await gen.connect()
            await gen.warmup(args.warmup)
            return await gen.run_closed(args.orders, probs, seed=args.seed,
                                        max_seconds=args.duration if args.duration else 60.0)
        finally:
            await gen.close()
    return run_coro(go())


def measure_pipelined(args, host: str, port: int, label: str) -> dict:
    async def go():
        gen = _gen(args, host, port, label)
        try:
            await gen.connect()
            await gen.warmup(args.warmup)
            return await gen.run_pipelined(args.orders, timeout=max(60.0, args.drain_timeout))
        finally:
            await gen.close()
    return run_coro(go())


def step_ok(rep: dict, p99_bound_us: float) -> tuple[bool, str]:
    """Whether one find-max step sustained its rate, and why not."""
    p99 = rep["latency_us"].get("p99")
    if rep["unsent"]:
        return False, f"{rep['unsent']} operations could not be sent (backlog full)"
    if rep["errors"]:
        return False, f"{rep['errors']} errors"
    if rep.get("seq_gaps"):
        return False, f"{rep['seq_gaps']} MsgSeqNum gaps in the answers"
    if rep["achieved_rate"] < 0.95 * rep["offered_rate"]:
        return False, f"achieved {rep['achieved_rate']:,.0f}/s < 95% of offered"
    if rep["rejected"] > 0.01 * max(1, rep["sent"]):
        return False, f"{rep['rejected']} rejects"
    if p99 is None or p99 > p99_bound_us:
        return False, f"p99 {p99:,.0f} us > bound {p99_bound_us:,.0f} us"
    return True, "ok"


def find_max(args, host: str, port: int, probs) -> dict:
    """Raise the offered rate step by step; the highest rate whose p99 stays under the bound."""
    steps: list[dict] = []

    async def go():
        gen = _gen(args, host, port, "oms find-max")
        try:
            await gen.connect()
            await gen.warmup(args.warmup)
            best, first_bad = None, None

            async def step(rate: float) -> bool:
                for attempt in range(1 + args.step_retries):
                    if await attempt_once(rate, attempt):
                        return True
                return False

            async def attempt_once(rate: float, attempt: int) -> bool:
                rep = await gen.run_open(rate, args.step_duration, probs, seed=args.seed + len(steps))
                ok, why = step_ok(rep, args.p99_bound)
                lat = rep["latency_us"]
                steps.append({"offered_rate": round(rate, 1), "attempt": attempt + 1,
                              "achieved_rate": rep["achieved_rate"], "ok": ok,
                              "why": why, "p50_us": lat.get("p50"), "p99_us": lat.get("p99"),
                              "max_us": lat.get("max"), "sent": rep["sent"], "unsent": rep["unsent"],
                              "acknowledged": rep["acknowledged"], "rejected": rep["rejected"],
                              "errors": rep["errors"]})
                print(f"  find-max step {len(steps)}{' (retry)' if attempt else ''}: offered {rate:>9,.0f}/s achieved {rep['achieved_rate']:>9,.0f}/s "
                      f"p50 {_fmt(lat.get('p50'))} p99 {_fmt(lat.get('p99'))}  {'ok' if ok else 'FAIL: ' + why}",
                      flush=True)
                # each step starts from a quiet server: its background work (journal fsync, audit
                # projection) of the previous step is not charged to the next one
                await asyncio.sleep(args.settle if ok else 3 * args.settle)
                return ok

            rate = args.start_rate
            for _ in range(args.max_steps):
                if await step(rate):
                    best = rate
                    rate *= args.step_factor
                else:
                    first_bad = rate
                    break
            if best is not None and first_bad is not None:
                lo, hi = best, first_bad
                for _ in range(args.refine):
                    mid = math.sqrt(lo * hi)
                    if await step(mid):
                        lo = best = mid
                    else:
                        hi = mid
            return best, first_bad
        finally:
            await gen.close()

    best, first_bad = run_coro(go())
    return {"p99_bound_us": args.p99_bound, "start_rate": args.start_rate, "step_factor": args.step_factor,
            "step_retries": args.step_retries, "settle_s": args.settle,
            "step_duration_s": args.step_duration, "max_rate": round(best, 1) if best else None,
            "first_failing_rate": round(first_bad, 1) if first_bad else None,
            "limited_by_max_steps": first_bad is None, "steps": steps}


def ratios(oms: dict, floor: dict) -> dict:
    """OMS / floor, per path and for all round trips, on the corrected and the service latency."""
    out = {}
    pairs = [("all", oms["latency_us"], floor["latency_us"])]
    pairs += [(p, oms["paths"][p]["latency_us"], floor["paths"][p]["latency_us"]) for p in PATHS]
    for name, o, f in pairs:
        if o.get("count") and f.get("count"):
            out[name] = {k: round(o[k] / f[k], 2) if f[k] else None for k in ("p50", "p90", "p99", "p99.9", "p99.99",
                                                                               "max")}
    svc_o = [oms["paths"][p]["service_latency_us"] for p in PATHS]
    svc_f = [floor["paths"][p]["service_latency_us"] for p in PATHS]
    if svc_o[0].get("count") and svc_f[0].get("count"):
        out["new_service"] = {k: round(svc_o[0][k] / svc_f[0][k], 2) if svc_f[0][k] else None
                              for k in ("p50", "p99", "p99.9")}
    return out


def book_baseline(ops: int) -> dict:
    """numba vs reference book figures of this run (benchmarks.bench_book.run with a small stream)."""
    from benchmarks import bench_book
    t0 = time.perf_counter()
    try:
        r = bench_book.run(ops, 1)
        return _book_figures(r, ops, t0)
    except Exception as exc:   # noqa: BLE001 - a baseline failing must not hide the FIX figures
        return {"ops": ops, "error": f"{type(exc).__name__}: {exc}"}


def _book_figures(r: dict, ops: int, t0: float) -> dict:
    return {"ops": ops, "seconds": round(time.perf_counter() - t0, 2),
            "numba_call_ops_per_s": round(r["numba_call"]["ops_per_s"]),
            "numba_batch_ops_per_s": round(r["batch"]["ops_per_s"]),
            "reference_ops_per_s": round(r["reference"]["ops_per_s"]),
            "numba_call_p99_ns": r["numba_call"].get("p99_ns"), "reference_p99_ns": r["reference"].get("p99_ns"),
            "ratios": {k: round(v, 2) for k, v in r["ratios"].items()}}


# -- output ------------------------------------------------------------------------------------

def _fmt(us) -> str:
    if us is None:
        return "      -"
    if us >= 100_000:
        return f"{us / 1e6:6.2f}s"
    if us >= 1000:
        return f"{us / 1e3:5.2f}ms"
    return f"{us:5.0f}us"


_COLS = ("p50", "p90", "p99", "p99.9", "p99.99", "max")


def _ratio(v) -> str:
    if v is None:
        return "-"
    return f" {v:.2f}x" if v < 100 else f" {v:,.0f}x"


def _row(target: str, path: str, count, lat: dict) -> str:
    return f"{target:<7}{path:<9}{count:>9,}" + "".join(f"{_fmt(lat.get(c)):>9}" for c in _COLS)


def print_open(rep_floor: dict | None, rep: dict, rat: dict | None) -> None:
    print("latency from the scheduled send time (coordinated omission corrected)")
    print(f"{'target':<7}{'path':<9}{'count':>9}" + "".join(f"{c:>9}" for c in _COLS))
    if rep_floor is not None:
        print(_row("echo", "all", rep_floor["latency_us"].get("count", 0), rep_floor["latency_us"]))
    for p in PATHS:
        lat = rep["paths"][p]["latency_us"]
        if lat.get("count"):
            print(_row("oms", p, lat["count"], lat))
    print(_row("oms", "all", rep["latency_us"].get("count", 0), rep["latency_us"]))
    if rat and "all" in rat:
        r = rat["all"]
        print(f"{'ratio':<7}{'oms/echo':<9}{'':>9}" + "".join(
            f"{_ratio(r.get(c)):>9}" for c in ("p50", "p90", "p99", "p99.9", "p99.99", "max")))
    for r_ in ([rep_floor] if rep_floor else []) + [rep]:
        svc = r_["paths"]["new"]["service_latency_us"]
        lag = r_["send_lag_us"]
        print(f"{r_['target']}: offered {r_['offered_rate']:,.0f}/s, achieved {r_['achieved_rate']:,.0f}/s "
              f"({'met' if r_['offered_rate_met'] else 'NOT MET'}); sent {r_['sent']:,} = acknowledged "
              f"{r_['acknowledged']:,} + rejected {r_['rejected']:,} + errors {r_['errors']:,}; unsent "
              f"{r_['unsent']:,}; substituted {r_['substituted']:,}; backlog peak {r_['backlog_peak']:,}"
              + (f"; MsgSeqNum gaps {r_['seq_gaps']:,}" if r_.get("seq_gaps") is not None else ""))
        print(f"{'':6}new from the actual write: p50 {_fmt(svc.get('p50')).strip()} p99 "
              f"{_fmt(svc.get('p99')).strip()}; sender lag behind schedule: p50 {_fmt(lag.get('p50')).strip()} "
              f"p99 {_fmt(lag.get('p99')).strip()} max {_fmt(lag.get('max')).strip()}")
        for what in ("reject_reasons", "error_reasons"):
            if r_[what]:
                print(f"{'':6}{what.replace('_', ' ')}: {r_[what]}")


def plot(path: str, curves: list[tuple[str, object, str]], title: str) -> str | None:
    """Latency by percentile, HdrHistogram style: x = 1/(1-p) on a log axis."""
    try:
        import logging
        logging.getLogger("matplotlib").setLevel(logging.WARNING)
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot skipped: matplotlib is not installed (pip install 'oms_trading[plot]')", file=sys.stderr)
        return None
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    max_nines = 1
    for label, h, style in curves:
        n = h.get_total_count()
        if not n:
            continue
        nines = max(1.0, math.log10(n))            # do not plot beyond what the sample resolves
        max_nines = max(max_nines, nines)
        xs, ys = [], []
        steps = 400
        for k in range(steps + 1):
            x = nines * k / steps
            p = 100.0 * (1.0 - 10.0 ** (-x))
            xs.append(10.0 ** x)
            ys.append(h.get_value_at_percentile(p) / 1e6)
        xs.append(10.0 ** nines)
        ys.append(h.get_max_value() / 1e6)
        ax.plot(xs, ys, style, label=f"{label} (n={n:,})", linewidth=1.6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = [10.0 ** k for k in range(0, int(math.ceil(max_nines)) + 1)]
    names = {0: "0%", 1: "90%", 2: "99%", 3: "99.9%", 4: "99.99%", 5: "99.999%", 6: "99.9999%"}
    ax.set_xticks(ticks)
    ax.set_xticklabels([names.get(k, f"{100 - 10 ** (2 - k):.{k}f}%") for k in range(len(ticks))])
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency from scheduled send (ms, log)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.4)
    ax.grid(True, which="minor", alpha=0.12)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# -- main --------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="oms bench fix", description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Method and figures: the module docstring of benchmarks/bench_fix.py and "
                                        "benchmarks/loadgen.py; benchmarks/RESULTS.md.")
    ap.add_argument("--mode", choices=("open", "closed", "pipelined"), default="open",
                    help="open: scheduled load at --rate (default); closed: one operation in flight per session; "
                         "pipelined: --orders written back to back per session")
    ap.add_argument("--rate", type=float, default=1000.0, help="offered operations/s, all sessions (default 1000)")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds of measured load (default 5)")
    ap.add_argument("--sessions", type=int, default=1, help="FIX sessions BENCH, BENCH2.. (default 1)")
    ap.add_argument("--mix", default=loadgen.DEFAULT_MIX, help=f"operation mix (default {loadgen.DEFAULT_MIX})")
    ap.add_argument("--target", metavar="HOST:PORT", help="an OMS already running (with the BENCH.. sessions); "
                                                          "default: start `oms serve` here")
    ap.add_argument("--json", metavar="FILE", help="write the full report as JSON")
    ap.add_argument("--plot", metavar="FILE.png", help="write the latency-by-percentile plot")
    ap.add_argument("--progress", action="store_true", default=None,
                    help="live progress line on stderr (default: only when stderr is a terminal)")
    ap.add_argument("--no-progress", dest="progress", action="store_false")
    ap.add_argument("--find-max", action="store_true", help="search the highest rate with p99 under --p99-bound")
    ap.add_argument("--p99-bound", type=float, default=10_000.0, metavar="US",
                    help="find-max: p99 bound in microseconds (default 10000)")
    ap.add_argument("--start-rate", type=float, default=250.0, help="find-max: first offered rate (default 250)")
    ap.add_argument("--step-factor", type=float, default=1.5, help="find-max: rate multiplier per step (default 1.5)")
    ap.add_argument("--max-steps", type=int, default=10, help="find-max: at most this many rising steps (default 10)")
    ap.add_argument("--step-duration", type=float, default=2.0, help="find-max: seconds per step (default 2)")
    ap.add_argument("--refine", type=int, default=2, help="find-max: bisection steps after the first failure (default 2)")
    ap.add_argument("--step-retries", type=int, default=1,
                    help="find-max: a failing step is tried again this many times before it counts (default 1: "
                         "one noisy second on a shared machine does not end the search)")
    ap.add_argument("--settle", type=float, default=1.0,
                    help="find-max: idle seconds after a step, three times that after a failing one (default 1)")
    ap.add_argument("--no-confirm", action="store_true",
                    help="find-max: skip the final --duration run at the best rate beside the floor")
    ap.add_argument("--orders", type=int, default=5000, help="closed/pipelined: operations per session (default 5000)")
    ap.add_argument("--warmup", type=int, default=500, help="unmeasured passive orders before measuring (default 500)")
    ap.add_argument("--max-backlog", type=int, default=20000,
                    help="unanswered operations allowed before the sender waits (default 20000)")
    ap.add_argument("--drain-timeout", type=float, default=10.0,
                    help="seconds to wait for answers after the last send; later ones count as errors (default 10)")
    ap.add_argument("--no-echo", action="store_true", help="skip the echo floor")
    ap.add_argument("--no-pin", action="store_true",
                    help="do not pin the servers to one CPU and this client to the others (Linux, 2+ CPUs)")
    ap.add_argument("--book-ops", type=int, default=20000, help="book baseline size; 0 skips it (default 20000)")
    ap.add_argument("--comp-id", default="BENCH", help="SenderCompID of the first session (default BENCH)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the operation mix (default 1)")
    ap.add_argument("--reader", choices=("scan", "lite", "fixparser"), default="scan",
                    help="how the client reads answers: scan (framing + checksum + the tags it needs in one "
                         "compiled call per read, default), lite (the same in Python) or our full FixParser")
    return ap


def _validate(ap: argparse.ArgumentParser, args) -> None:
    if args.rate <= 0 or args.duration <= 0:
        ap.error("--rate and --duration must be positive")
    if not 1 <= args.sessions <= 64:
        ap.error("--sessions must be 1..64")
    if args.find_max and (args.start_rate <= 0 or args.step_factor <= 1.0 or args.max_steps < 1
                          or args.step_duration <= 0 or not 0 <= args.refine <= 10 or args.max_steps > 40
                          or not 0 <= args.step_retries <= 3 or not 0 <= args.settle <= 30):
        ap.error("find-max needs --start-rate > 0, --step-factor > 1, 1 <= --max-steps <= 40, "
                 "--step-duration > 0, 0 <= --refine <= 10, 0 <= --step-retries <= 3, 0 <= --settle <= 30")
    if args.find_max and args.mode != "open":
        ap.error("--find-max works in --mode open")
    if args.max_backlog < 1 or args.warmup < 0 or args.orders < 1 or args.drain_timeout <= 0:
        ap.error("--max-backlog, --orders >= 1, --warmup >= 0, --drain-timeout > 0")
    if args.target:
        host, _, port = args.target.rpartition(":")
        if not host or not port.isdigit():
            ap.error("--target must be HOST:PORT")
    try:
        args.probs = parse_mix(args.mix)
    except ValueError as exc:
        ap.error(str(exc))
    if args.progress is None:
        args.progress = sys.stderr.isatty()


def _on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def run(args) -> dict:
    """Run the benchmark described by parsed ``args``; returns the report."""
    t_start = time.time()
    report: dict = {
        "benchmark": "fix", "schema": 1,
        "command": "oms bench fix " + shlex.join(args.argv),
        "started_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "config": {"mode": args.mode, "rate": args.rate, "duration_s": args.duration, "sessions": args.sessions,
                   "mix": loadgen.mix_text(args.probs), "target": args.target or "oms serve (started here)",
                   "warmup": args.warmup, "max_backlog": args.max_backlog, "drain_timeout_s": args.drain_timeout,
                   "seed": args.seed, "reader": args.reader, "timer": "timerfd" if sys.platform.startswith("linux") else "asyncio",
                   "latency_from": "scheduled send time (coordinated omission corrected)"},
    }
    if args.book_ops:
        print(f"book baseline: bench_book.run(ops={args.book_ops}) ...", flush=True)
        report["book_baseline"] = bb = book_baseline(args.book_ops)
        if "error" in bb:
            print(f"book baseline FAILED: {bb['error']}", flush=True)
        else:
            print(f"book baseline: numba per call {bb['numba_call_ops_per_s']:,} ops/s, reference "
                  f"{bb['reference_ops_per_s']:,} ops/s ({bb['ratios']['call_vs_reference']}x), batch "
                  f"{bb['numba_batch_ops_per_s']:,} ops/s", flush=True)
    hists: dict = {}
    with tempfile.TemporaryDirectory(prefix="oms-bench-fix-") as tmp:
        oms = echo = rss = server_pid = None
        try:
            if args.target:
                host, _, port = args.target.rpartition(":")
                oms_addr = (host, int(port))
            else:
                oms = start_oms(Path(tmp), args.sessions)
                oms_addr = (LOOPBACK, oms.port)
                rss = RssSampler(oms.proc.pid) if sys.platform.startswith("linux") else None
                server_pid = oms.proc.pid
            if not args.no_echo:
                echo = start_echo()
            print(f"oms at {oms_addr[0]}:{oms_addr[1]}" + (f", echo floor at {LOOPBACK}:{echo.port}" if echo else ""),
                  flush=True)
            if not args.no_pin and oms is not None:
                # servers on one core, this client (and the projection child) on the others
                pinned = affinity.pin_server_and_client([c.proc.pid for c in (oms, echo) if c is not None])
                report["cpu_pinning"] = pinned
                if pinned:
                    print(f"cpu pinning: servers on CPU {pinned['server_cpus']}, client and projection on "
                          f"{pinned['client_cpus']} (calibration loop by CPU, us: {pinned['calibration_us_by_cpu']}; "
                          f"--no-pin to leave it to the scheduler)", flush=True)
            if args.mode == "open":
                rate = args.rate
                if args.find_max:
                    print(f"find-max: p99 bound {args.p99_bound:,.0f} us, from {args.start_rate:,.0f}/s x"
                          f"{args.step_factor} per step, {args.step_duration:g} s each", flush=True)
                    fm = report["find_max"] = find_max(args, *oms_addr, args.probs)
                    best = f"{fm['max_rate']:,.0f}/s" if fm["max_rate"] else "none (lower --start-rate)"
                    bad = (f", first failure at {fm['first_failing_rate']:,.0f}/s" if fm["first_failing_rate"]
                           else ", no failure within --max-steps")
                    print(f"find-max: max rate {best}{bad}", flush=True)
                    rate = fm["max_rate"]
                if rate and not (args.find_max and args.no_confirm):
                    print(f"open loop: {rate:,.0f}/s for {args.duration:g} s on {args.sessions} session(s), "
                          f"mix {loadgen.mix_text(args.probs)}", flush=True)
                    if echo:
                        report["floor"], hists["echo"] = measure_open(args, LOOPBACK, echo.port, "echo", rate,
                                                                      args.duration, args.probs)
                    cpu0 = server_cpu_before(server_pid)
                    report["oms"], hists["oms"] = measure_open(args, *oms_addr, "oms", rate, args.duration,
                                                               args.probs)
                    add_server_cpu(report["oms"], cpu0, server_pid)
                    if args.find_max:
                        ok, why = step_ok(report["oms"], args.p99_bound)
                        report["find_max"]["confirm"] = {
                            "rate": rate, "duration_s": args.duration, "p99_us": report["oms"]["latency_us"].get("p99"),
                            "within_bound": ok, "why": why}
                    if echo:
                        report["ratios"] = ratios(report["oms"], report["floor"])
                        r = report["ratios"].get("new", {})
                        report["targets"] = {"rate": rate, "applies": rate >= 10_000,
                                             "p50_le_2x_echo": (r.get("p50") or math.inf) <= 2.0,
                                             "p99_le_3x_echo": (r.get("p99") or math.inf) <= 3.0}
            elif args.mode == "closed":
                print(f"closed loop: {args.orders:,} operations, one in flight per session "
                      f"({args.sessions} session(s))", flush=True)
                report["closed"] = c = {}
                if echo:
                    c["floor"] = measure_closed(args, LOOPBACK, echo.port, "echo", args.probs)
                c["oms"] = measure_closed(args, *oms_addr, "oms", args.probs)
                if echo:
                    c["ratios"] = ratios(c["oms"], c["floor"])
            else:
                print(f"pipelined: {args.orders:,} passive orders per session back to back", flush=True)
                report["pipelined"] = p = {}
                if echo:
                    p["floor"] = measure_pipelined(args, LOOPBACK, echo.port, "echo")
                cpu0 = server_cpu_before(server_pid)
                p["oms"] = measure_pipelined(args, *oms_addr, "oms")
                add_server_cpu(p["oms"], cpu0, server_pid)
                p["targets"] = {"ge_50k_per_s_one_session": args.sessions == 1
                                and (p["oms"]["orders_per_s"] or 0) >= 50_000}
            if rss is not None:
                report["server_rss"] = rss.stop()
                rss = None
            if oms is not None and not oms.alive():
                report["server_exit"] = {"code": oms.proc.returncode, "stderr_tail": "".join(oms.stderr)[-2000:]}
        finally:
            if rss is not None:
                rss.stop()
            for child in (echo, oms):
                if child is not None:
                    child.stop()
            affinity.unpin_self()
    report["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    report["machine"]["calibration_end"] = calibration.reading()
    report["elapsed_s"] = round(time.time() - t_start, 1)
    report["_hists"] = hists
    return report


def print_report(report: dict) -> None:
    m = report["machine"]
    print(f"machine: {m['cpu']} ({m['cores']} cores), Python {m['python']}, uvloop {m['uvloop']}, "
          f"load average {m['load_average']} -> {m.get('load_average_end')}")
    print(calibration.describe(m.get("calibration"), m.get("calibration_end")))
    fm = report.get("find_max")
    if fm:
        print(f"find-max (p99 bound {fm['p99_bound_us']:,.0f} us, {fm['step_duration_s']:g} s steps): max rate "
              + (f"{fm['max_rate']:,.0f}/s" if fm["max_rate"] else "none")
              + (f", first failure at {fm['first_failing_rate']:,.0f}/s" if fm["first_failing_rate"] else ""))
        c = fm.get("confirm")
        if c:
            print(f"confirmation at {c['rate']:,.0f}/s for {c['duration_s']:g} s: p99 {_fmt(c['p99_us']).strip()} -> "
                  + ("within the bound" if c["within_bound"] else f"NOT within the bound ({c['why']}): the rate "
                     "is marginal on this machine now; rerun with longer --step-duration"))
    if "oms" in report:
        print_open(report.get("floor"), report["oms"], report.get("ratios"))
        t = report.get("targets")
        if t:
            print(f"FIX issue targets ({'apply' if t['applies'] else 'informative only: they are set at 10,000/s'}): "
                  f"p50 <= 2x echo {'met' if t['p50_le_2x_echo'] else 'MISSED'}, "
                  f"p99 <= 3x echo {'met' if t['p99_le_3x_echo'] else 'MISSED'}")
    if "closed" in report:
        c = report["closed"]
        print("closed loop (latency from the write; one operation in flight per session)")
        print(f"{'target':<7}{'path':<9}{'count':>9}" + "".join(f"{x:>9}" for x in _COLS) + f"{'ops/s':>10}")
        for name, r in (("echo", c.get("floor")), ("oms", c["oms"])):
            if r:
                print(_row(name, "all", r["latency_us"].get("count", 0), r["latency_us"])
                      + f"{r['achieved_rate']:>10,.0f}")
        if "ratios" in c and "all" in c["ratios"]:
            print(f"ratio oms/echo: {c['ratios']['all']}")
    if "pipelined" in report:
        p = report["pipelined"]
        for name, r in (("echo", p.get("floor")), ("oms", p["oms"])):
            if r:
                print(f"pipelined {name:<5} {r['orders']:>8,} orders in {r['seconds']:.3f} s: "
                      f"{r['orders_per_s'] or 0:>10,.0f} orders/s (sent {r['sent']:,} = acknowledged "
                      f"{r['acknowledged']:,} + rejected {r['rejected']:,} + errors {r['errors']:,})")
        print(f"target >= 50,000 orders/s on one session: "
              f"{'met' if p['targets']['ge_50k_per_s_one_session'] else 'MISSED'}")
    for r in (report.get("oms"), report.get("pipelined", {}).get("oms")):
        cpu = (r or {}).get("server_cpu")
        if cpu:
            print(f"oms serve process CPU during the oms run: {cpu['cpu_s']:,.2f} s, {cpu['us_per_operation']:,.1f} us "
                  f"per operation answered (one core is 1 s per second of run)")
            if "children_cpu_s" in cpu:
                print(f"  its child processes (audit projection), until idle {cpu['children_settle_s']:g} s after the "
                      f"run: {cpu['children_cpu_s']:,.2f} s, {cpu['children_us_per_operation']:,.1f} us per operation; "
                      f"server in all {cpu['total_us_per_operation']:,.1f} us per operation")
    r = report.get("server_rss")
    if r and r.get("available"):
        print(f"oms serve RSS (whole run, incl. the echo run and warm-up): first {r['first_mib']:,.1f} MiB, "
              f"last {r['last_mib']:,.1f} MiB, peak {r['max_mib']:,.1f} MiB ({r['growth_mib']:+,.1f} MiB)")
    if "server_exit" in report:
        print(f"oms serve EXITED during the run: {report['server_exit']}")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = build_parser()
    args = ap.parse_args(argv)
    args.argv = argv
    _validate(ap, args)
    old = signal.signal(signal.SIGTERM, _on_sigterm) if threading.current_thread() is threading.main_thread() \
        else None
    try:
        report = run(args)
    except (RuntimeError, OSError, ConnectionError, asyncio.TimeoutError) as exc:
        print(f"oms bench fix: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)
    hists = report.pop("_hists")
    print_report(report)
    if args.plot and "oms" in hists:
        curves = [(f"oms {p}", hists["oms"]["paths"][k], "-") for k, p in enumerate(PATHS)]
        if "echo" in hists:
            curves.append(("echo floor (all paths)", hists["echo"]["all"], "k--"))
        m = report["machine"]
        o = report["oms"]
        title = (f"oms bench fix: {o['offered_rate']:,.0f}/s offered, oms achieved {o['achieved_rate']:,.0f}/s"
                 f"{'' if o['offered_rate_met'] else ' (NOT MET)'}, {args.sessions} session(s), "
                 f"{report['config']['mix']}\n{m['cpu']} ({m['cores']} cores), Python {m['python']}, "
                 f"load avg {m['load_average'][0] if m['load_average'] else '?'}")
        if plot(args.plot, curves, title):
            report["plot"] = args.plot
            print(f"plot: {args.plot}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"report: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
