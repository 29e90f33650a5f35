"""How fast this machine runs Python right now: a fixed loop, timed in process CPU.

The 2-vCPU VM of benchmarks/RESULTS.md runs this loop in 15-18 us on a vCPU in its normal state
and in 26-31 us on one the host is sharing, and each vCPU moves between the two by itself, over
seconds to minutes (2026-11-26: one vCPU at 28-31 us for minutes while the other flipped between
15 and 30). A benchmark that prints these figures says what its numbers ran on; ``per_cpu``
lets it put the server under test on the faster vCPU.
"""
from __future__ import annotations

import os
import statistics
import time

FAST_US = (15.0, 19.0)        # this VM's vCPUs in their fast state, for the printed hint


def calibration_us() -> float:
    """One reading: ``sum(range(1000))`` 300 times, process CPU per iteration in us."""
    t = time.process_time_ns()
    for _ in range(300):
        sum(range(1000))
    return (time.process_time_ns() - t) / 300 / 1000


def reading(samples: int = 8) -> dict:
    """The median of ``samples`` readings, and their range."""
    values = [calibration_us() for _ in range(samples)]
    return {"median_us": round(statistics.median(values), 2), "min_us": round(min(values), 2),
            "max_us": round(max(values), 2), "samples": samples}


def per_cpu(samples: int = 5) -> dict[int, float]:
    """The loop's median time on each CPU this process may use (this thread moved to each in
    turn, then back), Linux; {} elsewhere."""
    if not hasattr(os, "sched_getaffinity"):
        return {}
    try:
        allowed = os.sched_getaffinity(0)
    except OSError:
        return {}
    out = {}
    try:
        for cpu in sorted(allowed):
            os.sched_setaffinity(0, {cpu})
            out[cpu] = round(statistics.median(calibration_us() for _ in range(samples)), 2)
    except OSError:
        return {}
    finally:
        try:
            os.sched_setaffinity(0, allowed)
        except OSError:
            pass
    return out


def describe(before: dict | None, after: dict | None = None) -> str:
    """One line for a report: the loop's time before (and after) the run, and what it means here."""
    if not before:
        return "calibration loop: not measured"
    text = f"calibration loop (Python speed now): {before['median_us']} us"
    if after:
        text += f" before, {after['median_us']} us after"
    lo, hi = FAST_US
    worst = max(before["median_us"], (after or before)["median_us"])
    state = "fast" if worst <= hi else "SLOW (compare runs by alternating them)"
    return text + f"; this VM's vCPUs read {lo:g}-{hi:g} us when fast: {state}"
