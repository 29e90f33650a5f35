"""Keep the server under test and the load generator on separate cores (Linux).

On the 2-vCPU VM of benchmarks/RESULTS.md the scheduler moves ``oms serve``'s order-path thread
between the two vCPUs as the load generator and the projection child wake up; each move leaves
the first vCPU's L1/L2 behind. Pinning the server (every thread, its projection child aside) to
one CPU and the client and the projection child to the others took 4-6% off the server's CPU per
operation in alternating 20 s runs of the ten-session load (2026-11-26, tenth session). The
server goes to the CPU that runs a calibration loop fastest just before: that VM's two vCPUs
differ by up to 1.8x for minutes at a time (benchmarks/calibration.py). It is
what a latency benchmark does anyway (isolate the system under test from its client) and what
an operator of a trading server does with the order-path thread.

Threads started later inherit the affinity of the thread that starts them, so pinning once the
server is ready covers them too.
"""
from __future__ import annotations

import os
from pathlib import Path

from benchmarks import calibration


_original: set[int] | None = None     # this process's CPUs before it was pinned


def _tasks(pid: int) -> list[int]:
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for tid in _tasks(pid):
        try:
            kids += [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
        except OSError:
            continue
    return kids


def _pin(pid: int, cpus: set[int]) -> None:
    for tid in _tasks(pid):
        try:
            os.sched_setaffinity(tid, cpus)
        except OSError:        # a thread that ended meanwhile
            continue


def available() -> list[int]:
    """The CPUs this process may run on (a container's or taskset's), sorted; [] off Linux."""
    if not hasattr(os, "sched_getaffinity"):
        return []
    try:
        return sorted(os.sched_getaffinity(0))
    except OSError:
        return []


def pin_server_and_client(server_pids: list[int]) -> dict | None:
    """Pin each server in ``server_pids`` to the CPU that runs Python fastest right now
    (``calibration.per_cpu``: on the shared VM one vCPU can be ~1.8x slower than the other for
    minutes), their child processes (the projection) and this process to the others. None
    (nothing changed) with fewer than two CPUs or off Linux; else what was pinned where and
    each CPU's calibration loop, for the report."""
    cpus = available()
    if len(cpus) < 2:
        return None
    global _original
    if _original is None:
        _original = set(cpus)
    speed = calibration.per_cpu()
    best = min(cpus, key=lambda c: speed.get(c, float("inf")))
    server, client = {best}, set(cpus) - {best}
    for pid in server_pids:
        _pin(pid, server)
        for child in _children(pid):
            _pin(child, client)
    _pin(os.getpid(), client)
    return {"server_cpus": sorted(server), "client_cpus": sorted(client),
            "calibration_us_by_cpu": {str(c): v for c, v in speed.items()}}


def unpin_self() -> None:
    """This process's threads back on the CPUs they had before ``pin_server_and_client``."""
    global _original
    if _original:
        _pin(os.getpid(), _original)
    _original = None
