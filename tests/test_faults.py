"""Faults around a running `oms serve`: a full journal disk, a locked DuckDB file, a client
that sends half a message and stalls."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb
import pytest

from tests.fixclient import FixClient, field
from tests.server_process import ServerProcess, audit_verify_ok


def health(server: ServerProcess) -> dict:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/health", timeout=10) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:   # 503 while degraded still carries the JSON body
        return json.loads(exc.read())


@pytest.fixture
def tiny_disk(tmp_path):
    """A 4 MiB tmpfs (needs root, as CI and the dev machines run); skipped where mount is refused."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_journal_disk_full_rejects_clearly_and_trading_resumes_when_space_returns(tmp_path, tiny_disk):
    data = tmp_path / "data"
    data.mkdir()
    (data / "journal").symlink_to(tiny_disk)          # only the journal lives on the tiny disk
    server = ServerProcess(data).start()
    client = FixClient("127.0.0.1", server.fix_port, "CLIENT1", timeout=15)
    try:
        client.logon(password="demo1")
        filler = tiny_disk / "filler"
        free = os.statvfs(tiny_disk).f_bavail * os.statvfs(tiny_disk).f_frsize
        with filler.open("wb") as handle:                 # leave ~48 KiB: a hundred or so events
            handle.write(b"\0" * max(0, free - 48 * 1024))
        refused = None
        accepted = 0
        for i in range(2000):                              # bounded: the disk fills long before
            client.new_order(f"F{i}", "AAPL", "1", 10, "189.00")
            report = client.expect("8")
            if field(report, 39) == "8":
                refused = report
                break
            accepted += 1
        assert refused is not None, "the journal never reported the full disk"
        assert "audit journal unavailable" in field(refused, 58)
        assert health(server)["ready"] is False or health(server)["journal_error"] is None
        filler.unlink()                                    # space returns
        time.sleep(0.7)                                    # past the gateway's retry pause
        client.new_order("AFTER", "AAPL", "1", 10, "189.00")
        report = client.expect("8")
        assert field(report, 39) == "0" and field(report, 11) == "AFTER"
        # every order acknowledged before the failure is still there
        client.send("H", [(11, "F0"), (55, "AAPL"), (54, "1")])
        assert field(client.expect("8"), 39) == "0"
    finally:
        client.close()
        assert server.stop() == 0
    audit_verify_ok(data)
    assert accepted > 0


def test_locked_duckdb_file_leaves_the_journal_in_charge_and_the_projection_catches_up(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    holder = subprocess.Popen([sys.executable, "-c",
                               "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
                               "print('locked', flush=True); time.sleep(600)", str(data / "audit.duckdb")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        server = ServerProcess(data).start()
        client = FixClient("127.0.0.1", server.fix_port, "CLIENT1")
        client.logon(password="demo1")
        for i in range(20):
            client.new_order(f"L{i}", "MSFT", "1", 5, "419.00")
            assert field(client.expect("8"), 39) == "0"      # trading goes on: the journal has the truth
        assert health(server)["audit_projection_lag"] > 0
        holder.kill()
        holder.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and health(server)["audit_projection_lag"] > 0:
            time.sleep(0.3)
        assert health(server)["audit_projection_lag"] == 0
        client.close()
        assert server.stop() == 0
    finally:
        if holder.poll() is None:
            holder.kill()
    con = duckdb.connect(str(data / "audit.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM audit_events WHERE cl_ord_id LIKE 'L%'").fetchone()[0] >= 40
    finally:
        con.close()


def test_half_a_message_then_silence_does_not_stall_other_sessions(tmp_path):
    server = ServerProcess(tmp_path / "data").start()
    staller = FixClient("127.0.0.1", server.fix_port, "CLIENT1")
    other = FixClient("127.0.0.1", server.fix_port, "CLIENT2", begin_string="FIX.4.2")
    try:
        staller.logon(password="demo1")
        other.logon()
        staller.new_order("HALF", "AAPL", "1", 10, "189.00")   # consumed seq; now send half of the next
        assert field(staller.expect("8"), 39) == "0"
        raw = staller.message("D", [(11, "H2"), (55, "AAPL"), (54, "1"), (38, 10), (40, "2"), (44, "189.00")]).encode()
        staller.send_raw(raw[: len(raw) // 2])
        started = time.monotonic()
        for i in range(20):
            other.new_order(f"O{i}", "MSFT", "2", 5, "421.00")
            assert field(other.expect("8", timeout=5), 39) == "0"
        assert time.monotonic() - started < 20
    finally:
        staller.close()
        other.close()
        assert server.stop() == 0
