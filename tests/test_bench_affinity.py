"""benchmarks/affinity.py and calibration.py: the server under test on one CPU (the fastest just
then), this client and the server's children on the others, and this process put back after."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from benchmarks import affinity, calibration


def test_calibration_reads_a_positive_time_on_each_cpu():
    r = calibration.reading(3)
    assert 0 < r["min_us"] <= r["median_us"] <= r["max_us"]
    by_cpu = calibration.per_cpu(2)
    assert set(by_cpu) == set(affinity.available()) and all(v > 0 for v in by_cpu.values())
    assert "calibration loop" in calibration.describe(r, r)


@pytest.mark.skipif(len(affinity.available()) < 2, reason="needs two CPUs")
def test_the_server_goes_to_one_cpu_and_its_child_and_this_client_to_the_others():
    before = os.sched_getaffinity(0)
    # a "server" with a child process of its own, as oms serve has its projection
    server = subprocess.Popen([sys.executable, "-c",
                               "import subprocess, sys, time; "
                               "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
                               "print(c.pid, flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        child = int(server.stdout.readline())
        time.sleep(0.2)
        pinned = affinity.pin_server_and_client([server.pid])
        assert pinned is not None and len(pinned["server_cpus"]) == 1
        assert os.sched_getaffinity(server.pid) == set(pinned["server_cpus"])
        assert os.sched_getaffinity(child) == set(pinned["client_cpus"])
        assert os.sched_getaffinity(0) == set(pinned["client_cpus"])
        assert set(pinned["server_cpus"]).isdisjoint(pinned["client_cpus"])
        assert set(pinned["calibration_us_by_cpu"]) == {str(c) for c in before}
    finally:
        affinity.unpin_self()
        server.kill()
        server.wait()
        try:
            os.kill(child, 9)
        except (OSError, NameError):
            pass
    assert os.sched_getaffinity(0) == before
