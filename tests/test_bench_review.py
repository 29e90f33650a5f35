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
