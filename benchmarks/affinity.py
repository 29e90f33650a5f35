"""Keep the server under test and the load generator on separate cores (Linux).

On the 2-vCPU VM of benchmarks/RESULTS.md the two vCPUs do not run at the same speed: timed
pinned to each in turn, a calibration loop took 15-16 us on one and 27-31 us on the other, and
each moves between the two by itself over seconds to minutes (the host shares their cores).
Left to the scheduler, the order-path thread of ``oms serve`` lands on either and moves as the
load generator and the projection child wake up, so the same run passed or missed. Pinned
(every server thread to one CPU, the client and the projection child to the others), the
server's CPU per operation was 4-6% lower in two alternating pairs of 20 s runs of the
ten-session load; and the server goes to the CPU that runs the calibration loop fastest just
before the run (``calibration.per_cpu``). It is what a latency benchmark does anyway (keep the
system under test apart from its client) and what an operator of a trading server does with
the order-path thread.

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
    (``calibration.per_cpu``), their child processes (the projection) and this process to the
    others. None (nothing changed) with fewer than two CPUs or off Linux; else what was pinned
    where and each CPU's calibration loop, for the report."""
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
