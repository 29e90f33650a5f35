"""Review of the benchmark harness: the figures the tools print mean what their labels say."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from benchmarks import bench_fix

linux_proc = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

_SPIN = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass\ntime.sleep(30)\n"


@linux_proc
def test_server_cpu_counts_the_child_processes_apart():
    """``oms serve`` runs its audit projection in a child process: the server's CPU per
    operation must not silently leave that process out (it reads /proc/PID/stat, which counts
    the process's own threads only)."""
    parent = subprocess.Popen([sys.executable, "-c",
                               "import subprocess, sys, time\n"
                               f"subprocess.Popen([sys.executable, '-c', {_SPIN!r}])\n"
                               "time.sleep(30)\n"])
    try:
        deadline = time.monotonic() + 10
        while not bench_fix.child_pids(parent.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        before = bench_fix.server_cpu_before(parent.pid)
        assert len(before[1]) == 1
        result = {"acknowledged": 1000, "rejected": 0}
        bench_fix.add_server_cpu(result, before, parent.pid, settle_s=5.0)
        cpu = result["server_cpu"]
        # the child spun ~0.4 s after the "run" started: counted once it went idle
        assert cpu["children_cpu_s"] >= 0.2, cpu
        assert cpu["us_per_operation"] < 100, cpu        # the parent itself only slept
        assert cpu["total_us_per_operation"] == pytest.approx(
            cpu["us_per_operation"] + cpu["children_us_per_operation"], abs=0.2)
    finally:
        for pid in bench_fix.child_pids(parent.pid):
            os.kill(pid, signal.SIGKILL)
        parent.kill()
        parent.wait()


def test_server_cpu_accepts_the_serve_process_alone(monkeypatch):
    monkeypatch.setattr(bench_fix, "process_cpu_s", lambda pid: 3.0)
    result = {"acknowledged": 900, "rejected": 100}
    bench_fix.add_server_cpu(result, 2.0, 1)
    assert result["server_cpu"] == {"cpu_s": 1.0, "us_per_operation": 1000.0}


def test_bench_all_audit_headline_is_the_plain_journal_rate():
    """``oms bench all``'s audit headline gave the events/s of bench_audit's first journal run,
    which also keeps every record and feeds a tap (for the projection runs after it): 1.5-1.8x
    below what append + flush does. It gives the plain runs' median now."""
    from benchmarks import bench_all
    report = {"journal": {"events_per_s": 130_000, "tap": True, "keeps_records": True},
              "journal_reps": {"reps": 3, "us_per_event_median": 4.0},
              "projection_with_indexes": {"rows": 10, "events_per_s": 150_000}}
    line = bench_all._headline("audit", report)
    assert line.startswith("journal 250,000 events/s (append + flush, median of 3)"), line
    assert "150,000 events/s" in line
    del report["journal_reps"]
    assert bench_all._headline("audit", report).startswith("journal 130,000 events/s (records kept, tap on)")


def test_lifecycle_variants_query_different_orders(monkeypatch, tmp_path):
    """Each lifecycle variant (no index / ART, by order_id / ClOrdID) queried the same 60
    orders (one fixed seed), so the ART runs found those orders' rows in DuckDB's buffer pool
    from the scans before them (p50 0-30% lower than for other orders on 3M rows)."""
    from benchmarks import bench_audit
    seen: list[list] = []

    def fake(con, order_id=None, cl_ord_id=None):
        seen[-1].append(order_id or int(cl_ord_id[1:]))
        return [1]

    class Con:
        def execute(self, sql):
            return self

        def fetchall(self):
            return [("Index Scan",)]

        def close(self):
            pass

    monkeypatch.setattr(bench_audit, "build_lifecycle_table", lambda db, n: 0.0)
    monkeypatch.setattr(bench_audit.duckdb, "connect", lambda path: Con())
    monkeypatch.setattr(bench_audit, "order_lifecycle", fake)
    monkeypatch.setattr(bench_audit, "lifecycle", fake)
    real = bench_audit.time_queries

    def tq(*a, **kw):
        seen.append([])
        return real(*a, **kw)

    monkeypatch.setattr(bench_audit, "time_queries", tq)
    bench_audit.bench_lifecycle(tmp_path / "x.duckdb", 4_000_000)
    assert len(seen) == 6
    samples = [frozenset(s[3:]) for s in seen]          # the timed queries of each variant
    for i in range(6):
        for j in range(i + 1, 6):
            assert len(samples[i] & samples[j]) <= 3, (i, j)
