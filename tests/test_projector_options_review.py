"""projection_options (audit/projector.py): the backlog settings of the projection process and
of `oms audit` commands must stay bounded on a big or CPU-restricted host."""
from __future__ import annotations

import os

from oms_trading.audit import projector

ROW_GROUP = 122_880


def test_batch_memory_is_bounded_on_a_many_core_host(monkeypatch):
    # two batches in flight (one inserted, the next parsed), ~400 B/row in Arrow and again in
    # the storage copy: 63 row groups per batch on a 64-core host is several GB on the OMS box
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    opts = projector.projection_options()
    assert opts["bulk_batch_rows"] <= 8 * ROW_GROUP, opts


def test_threads_follow_the_cpus_this_process_may_use(monkeypatch):
    # a container or taskset giving the process 2 of the host's 64 cores
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    if hasattr(os, "process_cpu_count"):
        monkeypatch.setattr(os, "process_cpu_count", lambda: 2)
    opts = projector.projection_options()
    assert opts["bulk_threads"] == 1 and opts["bulk_batch_rows"] == ROW_GROUP, opts


def test_two_and_one_core_hosts_keep_todays_settings(monkeypatch):
    for n in (1, 2):
        monkeypatch.setattr(os, "cpu_count", lambda n=n: n)
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, n=n: set(range(n)), raising=False)
        if hasattr(os, "process_cpu_count"):
            monkeypatch.setattr(os, "process_cpu_count", lambda n=n: n)
        opts = projector.projection_options()
        assert opts["bulk_threads"] == 1 and opts["bulk_batch_rows"] == ROW_GROUP and opts["prefetch"]
