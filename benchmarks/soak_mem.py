"""Memory soak: `oms serve` under sustained multi-session FIX load, RSS sampled, slope reported.

    python -m benchmarks.soak_mem [--sessions 10] [--rate 5000] [--duration 120] [--settle 45]
                                  [--mix passive=45,cross=5,cancel=45,replace=5] [--keep N]
                                  [--sample-every 5] [--server-path DIR] [--json FILE]

Starts ``oms serve`` on loopback (the ``oms bench fix`` config: the demo config plus sessions
BENCH2..BENCHK) in a temp data folder, logs on ``--sessions`` FIX sessions, sends a 500-order
warm-up, then the open-loop load of ``benchmarks/loadgen.py`` at ``--rate`` operations/s in
all for ``--duration`` seconds (bounded: the run ends then, answers are drained for at most
``--drain-timeout`` s), and stops the server. The server's VmRSS is sampled every 0.5 s and
printed every ``--sample-every`` s.

Reported: sent = acknowledged + rejected + errors, unsent, MsgSeqNum gaps, latency p50/p99/max
from the scheduled send time, and the RSS slope after warm-up: a least-squares line through the
samples from ``--settle`` seconds after the load started to its end, in MiB/s and in bytes per
operation (slope / achieved rate), with the slopes of the two halves of that window (flat
memory: both near 0; a one-off step shows in one half only). Choose ``--settle`` past the
moment ``[trading] finished_orders_in_memory`` finished orders are reached (about keep / (rate *
0.5) s with the default mix), or lower that cap with ``--keep``.

``--server-path DIR`` runs the server from another checkout (e.g. ``git archive`` of an older
commit) with this same client, to compare before/after in the same conditions.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks import affinity, calibration, loadgen
from benchmarks.bench_fix import LOOPBACK, ROOT, Child, RssSampler, bench_config_text, machine


class Server(Child):
    """`oms serve` started here (and stopped by its PID), from the checkout at ``path``."""

    def __init__(self, path: Path, config: Path, data: Path, timeout: float = 240.0) -> None:
        super().__init__(
            "oms serve",
            [sys.executable, "-m", "oms_trading.cli", "serve", "--config", str(config), "--data-dir", str(data),
             "--host", LOOPBACK, "--fix-port", "0", "--http-port", "0"],
            re.compile(r"FIX listening on [\d.]+:(\d+)"), timeout, cwd=path, env={"PYTHONPATH": str(path)})


def slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (t, y)."""
    n = len(points)
    if n < 3:
        return None
    mt = sum(t for t, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    if var <= 0:
        return None
    return sum((t - mt) * (y - my) for t, y in points) / var


def rss_analysis(samples: list[tuple[float, int]], load_start: float, load_end: float, settle: float,
                 rate: float) -> dict:
    """Slope of RSS (KiB samples at seconds since the sampler started) after the warm-up."""
    mib = [(t, k / 1024) for t, k in samples]
    window = [(t, m) for t, m in mib if load_start + settle <= t <= load_end]
    out: dict = {"window_s": [round(load_start + settle, 1), round(load_end, 1)], "samples": len(window)}
    s = slope(window)
    if s is None or rate <= 0:
        out["slope_mib_per_s"] = None
        return out
    out["slope_mib_per_s"] = round(s, 4)
    out["bytes_per_op"] = round(s * 1024 * 1024 / rate, 1)
    half = len(window) // 2
    for name, part in (("first_half", window[:half]), ("second_half", window[half:])):
        hs = slope(part)
        out[f"{name}_mib_per_s"] = round(hs, 4) if hs is not None else None
    out["rss_at_window_start_mib"] = round(window[0][1], 1)
    out["rss_at_window_end_mib"] = round(window[-1][1], 1)
    before = [m for t, m in mib if t <= load_start]
    out["rss_idle_before_load_mib"] = round(before[-1], 1) if before else None
    out["rss_peak_mib"] = round(max(m for _, m in mib), 1)
    return out


def config_text(sessions: int, keep: int | None, server_path: Path) -> str:
    """``oms bench fix``'s config (demo + BENCH2..BENCHK), from the server checkout's demo config
    (an older checkout may not know this one's keys)."""
    text = bench_config_text(sessions)
    demo = Path(server_path) / "oms_trading" / "demo_config.toml"
    if demo.is_file():
        from oms_trading.config import demo_config_text
        text = text.replace(demo_config_text(), demo.read_text(encoding="utf-8"), 1)
    if keep is not None:
        text, n = re.subn(r"^finished_orders_in_memory = .*$", f"finished_orders_in_memory = {keep}", text, flags=re.M)
        if n != 1:
            raise RuntimeError("the demo config has no finished_orders_in_memory line to change")
    return text


def run(args) -> dict:
    probs = loadgen.parse_mix(args.mix)
    report: dict = {"benchmark": "soak_mem", "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "machine": machine(), "command": "python -m benchmarks.soak_mem " + " ".join(args.argv),
                    "config": {"sessions": args.sessions, "rate": args.rate, "duration_s": args.duration,
                               "settle_s": args.settle, "mix": loadgen.mix_text(probs), "keep": args.keep,
                               "server_path": str(args.server_path)}}
    with tempfile.TemporaryDirectory(prefix="oms-soak-mem-") as tmpname:
        tmp = Path(tmpname)
        cfg = tmp / "soak.toml"
        cfg.write_text(config_text(args.sessions, args.keep, Path(args.server_path)), encoding="utf-8")
        server = Server(Path(args.server_path).resolve(), cfg, tmp / "data")
        if not args.no_pin:     # the server on one core, this client and the projection on the others
            report["cpu_pinning"] = affinity.pin_server_and_client([server.proc.pid])
        sampler = RssSampler(server.proc.pid, 0.5)
        marks: dict[str, float] = {}
        stop_print = threading.Event()

        def printer() -> None:
            last = -1.0
            while not stop_print.wait(0.25):
                if sampler.samples and sampler.samples[-1][0] - last >= args.sample_every:
                    t, kib = sampler.samples[-1]
                    last = t
                    phase = "load" if "load_start" in marks and "load_end" not in marks else "idle"
                    since = f" t_load={t - marks['load_start']:6.1f}s" if "load_start" in marks else ""
                    print(f"rss t={t:6.1f}s{since} {kib / 1024:8.1f} MiB ({phase})", flush=True)

        threading.Thread(target=printer, daemon=True).start()

        async def go() -> dict:
            gen = loadgen.LoadGen(LOOPBACK, server.port, sessions=args.sessions, max_backlog=args.max_backlog,
                                  drain_timeout=args.drain_timeout, progress=False, label="oms")
            try:
                await gen.connect()
                await gen.warmup(500)
                marks["load_start"] = time.monotonic() - sampler._t0
                rep = await gen.run_open(args.rate, args.duration, probs, seed=args.seed)
                return rep
            finally:
                marks.setdefault("load_end", time.monotonic() - sampler._t0)
                await gen.close()

        try:
            rep = loadgen.run_coro(go())
            marks["load_end"] = min(marks["load_end"], marks["load_start"] + args.duration + 1.0)
            time.sleep(1.0)
        finally:
            rss = sampler.stop()
            stop_print.set()
            alive = server.proc.poll() is None
            server.stop()
            affinity.unpin_self()
        report["load"] = {k: rep[k] for k in ("offered", "sent", "unsent", "acknowledged", "rejected", "errors",
                                               "seq_gaps", "achieved_rate", "offered_rate_met", "latency_us",
                                               "reject_reasons", "error_reasons")}
        report["server_alive_at_end"] = alive
        report["marks_s"] = {k: round(v, 1) for k, v in marks.items()}
        report["rss"] = rss_analysis(sampler.samples, marks["load_start"], marks["load_end"], args.settle,
                                     rep["achieved_rate"] or args.rate)
        report["rss_samples_mib"] = rss.get("samples")
    report["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    report["machine"]["calibration_end"] = calibration.reading()
    return report


def print_report(r: dict) -> None:
    m = r["machine"]
    ld = r["load"]
    lat = ld["latency_us"]
    print(f"machine: {m['cpu']} ({m['cores']} cores), load average {m['load_average']} -> {m['load_average_end']}")
    print(calibration.describe(m.get("calibration"), m.get("calibration_end")))
    print(f"load: {r['config']['sessions']} sessions, {r['config']['rate']:,.0f}/s offered for {r['config']['duration_s']:g} s, "
          f"mix {r['config']['mix']}: sent {ld['sent']:,} = acknowledged {ld['acknowledged']:,} + rejected "
          f"{ld['rejected']:,} + errors {ld['errors']:,}; unsent {ld['unsent']:,}; MsgSeqNum gaps {ld['seq_gaps']}; "
          f"achieved {ld['achieved_rate']:,.0f}/s")
    if lat.get("count"):
        print(f"latency from the scheduled send: p50 {lat['p50'] / 1000:.2f} ms, p99 {lat['p99'] / 1000:.2f} ms, "
              f"p99.9 {lat['p99.9'] / 1000:.2f} ms, max {lat['max'] / 1000:.2f} ms")
    x = r["rss"]
    if x.get("slope_mib_per_s") is None:
        print(f"RSS: too few samples after the warm-up ({x})")
        return
    print(f"RSS: idle {x['rss_idle_before_load_mib']} MiB, {x['rss_at_window_start_mib']} MiB at "
          f"t={x['window_s'][0]} s -> {x['rss_at_window_end_mib']} MiB at t={x['window_s'][1]} s, peak "
          f"{x['rss_peak_mib']} MiB")
    halves = " / ".join("n/a" if x[k] is None else f"{x[k]:+.4f}" for k in ("first_half_mib_per_s", "second_half_mib_per_s"))
    print(f"RSS slope after warm-up: {x['slope_mib_per_s']:+.4f} MiB/s = {x['bytes_per_op']:+.1f} bytes per operation "
          f"(halves: {halves} MiB/s)")
    if not r["server_alive_at_end"]:
        print("oms serve was NOT alive at the end of the run")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=10)
    ap.add_argument("--rate", type=float, default=5000.0, help="operations/s, all sessions (default 5000)")
    ap.add_argument("--duration", type=float, default=120.0, help="seconds of load (default 120, at most 600)")
    ap.add_argument("--settle", type=float, default=45.0, help="seconds of load before the slope window (default 45)")
    ap.add_argument("--mix", default="passive=45,cross=5,cancel=45,replace=5")
    ap.add_argument("--keep", type=int, default=None, help="[trading] finished_orders_in_memory (default: the demo's)")
    ap.add_argument("--sample-every", type=float, default=5.0, help="print RSS every N s (default 5)")
    ap.add_argument("--max-backlog", type=int, default=20000)
    ap.add_argument("--drain-timeout", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-pin", action="store_true",
                    help="do not pin the server to one CPU and this client to the others (Linux, 2+ CPUs)")
    ap.add_argument("--server-path", default=str(ROOT), help="checkout whose oms_trading runs the server")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)
    args.argv = argv
    if not 0 < args.duration <= 600 or args.settle >= args.duration or args.rate <= 0 or args.sessions < 1:
        ap.error("need 0 < duration <= 600, settle < duration, rate > 0, sessions >= 1")
    report = run(args)
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        print(f"report: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
