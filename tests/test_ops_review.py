"""An operator's review of a running `oms serve`: /health and /metrics when the audit
projection process dies, and what the log says (and when) at start and stop."""
from __future__ import annotations

import json
import os
import re
import signal
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.fixclient import FixClient, field
from tests.server_process import ServerProcess
from tests.test_faults import tiny_disk  # noqa: F401  (fixture: a 4 MiB tmpfs, needs root)


def get(server: ServerProcess, path: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{server.http_port}{path}")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def health(server: ServerProcess) -> dict:
    return json.loads(get(server, "/health")[1])


def projection_pids(server: ServerProcess) -> list[int]:
    """The server's multiprocessing children that run the projection (not the resource tracker)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == server.proc.pid and b"spawn_main" in cmdline:
            pids.append(int(entry.name))
    return pids



def _logged(server, text: str, timeout: float = 10.0) -> bool:
    """Whether the server logged ``text`` (within ``timeout``: its stderr is read by a thread)."""
    deadline = time.monotonic() + timeout
    while not any(text in line for line in server.stderr_lines):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True

def test_killed_projection_process_is_restarted_reported_and_catches_up(tmp_path):
    """kill -9 of the projection child: /health kept saying "ok", nothing was logged, nothing
    started a new one, so every audit query answered 503 and the lag grew until a restart."""
    server = ServerProcess(tmp_path / "data").start()
    client = None
    try:
        [child] = projection_pids(server)
        os.kill(child, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:           # bounded: the supervisor looks every second
            body = health(server)
            if body.get("audit_projection_restarts") == 1 and body.get("audit_projection_running"):
                break
            time.sleep(0.2)
        assert body.get("audit_projection_restarts") == 1 and body["audit_projection_running"], body
        assert body["status"] == "ok" and body["ready"], body
        [new_child] = projection_pids(server)
        assert new_child != child
        assert _logged(server, f"audit projection process (pid {child}) died"), "".join(server.stderr_lines[-20:])

        client = FixClient("127.0.0.1", server.fix_port, "CLIENT1", timeout=15)
        client.logon(password="demo1")
        client.new_order("K1", "AAPL", "1", 100, "190.00")
        client.expect("8")
        status, text = get(server, "/api/audit/lifecycle?cl_ord_id=K1", token="demo-compliance1-token")
        assert status == 200, text
        assert [e["type"] for e in json.loads(text)["events"]][:2] == ["order_received", "order_accepted"], text
        _, metrics = get(server, "/metrics")
        assert b"\noms_audit_projection_up 1.0\n" in metrics
        assert b"\noms_audit_projection_restarts 1.0\n" in metrics
    finally:
        if client is not None:
            client.close()
        assert server.stop() == 0


def test_log_lines_are_utc_and_say_so_and_start_and_stop_are_logged(tmp_path):
    """Log times were the host's local time with no zone (TZ=America/New_York: five hours off
    the journal's and FIX's UTC); the start logged nothing of the version, the FIX sessions or
    TLS, and the stop nothing at all (both went to stdout only, without a time)."""
    data = tmp_path / "data"
    server = ServerProcess(data, env={"TZ": "America/New_York"}).start()
    try:
        deadline = time.monotonic() + 10     # stderr is read by a thread: the line may come just after
        while not (started := [line for line in server.stderr_lines if " started: " in line]) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started, "".join(server.stderr_lines)
        line = started[0]
        stamp = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z INFO ", line)
        assert stamp, line
        logged = datetime.strptime(stamp.group(1), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=timezone.utc)
        assert abs((datetime.now(timezone.utc) - logged).total_seconds()) < 600, line
        from oms_trading import __version__
        for part in (f"oms_trading {__version__} ", f"data dir {data}", "4 FIX sessions", "FIX TLS off",
                     f"FIX 127.0.0.1:{server.fix_port}", f"HTTP 127.0.0.1:{server.http_port}"):
            assert part in line, (part, line)
        assert not any("demo-" in l and "token" in l for l in server.stderr_lines)   # tokens: stdout only
    finally:
        assert server.stop() == 0
    stopped = re.compile(r"\d{4}-\d\d-\d\dT[\d:.]+Z INFO oms: oms_trading stopped: journal seq \d+")
    deadline = time.monotonic() + 10     # the stderr reader thread takes the last lines
    while not any(stopped.match(line) for line in server.stderr_lines) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any(stopped.match(line) for line in server.stderr_lines), "".join(server.stderr_lines[-10:])


def test_health_is_ready_again_once_the_journal_writes_again_after_a_full_disk(tmp_path, tiny_disk):
    """After a full journal disk had space again, /health kept answering 503 "journal write
    failed" although the journal had since written records (a session's logout, a logon): only
    an order's batch cleared the state, and a readiness probe taking the server out of service
    keeps the orders away."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "journal").symlink_to(tiny_disk)
    server = ServerProcess(data).start()
    client = FixClient("127.0.0.1", server.fix_port, "CLIENT1", timeout=15)
    other = None
    try:
        client.logon(password="demo1")
        filler = tiny_disk / "filler"
        free = os.statvfs(tiny_disk).f_bavail * os.statvfs(tiny_disk).f_frsize
        filler.write_bytes(b"\0" * max(0, free - 48 * 1024))
        for i in range(2000):                              # bounded: the disk fills long before
            client.new_order(f"F{i}", "AAPL", "1", 10, "189.00")
            if field(client.expect("8"), 39) == "8":
                break
        status, text = get(server, "/health")
        assert status == 503 and json.loads(text)["journal_error"], text
        failed_at = json.loads(text)["journal_last_seq"]
        filler.unlink()                                    # space returns
        other = FixClient("127.0.0.1", server.fix_port, "CLIENT2", begin_string="FIX.4.2", timeout=15)
        other.logon()                                      # journals its logon: the journal writes again
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            status, text = get(server, "/health")
            if status == 200:
                break
            time.sleep(0.2)
        body = json.loads(text)
        assert body["journal_last_seq"] > failed_at, body
        assert status == 200 and body["ready"] and body["journal_error"] is None, body
        assert _logged(server, "journal writes again"), "".join(server.stderr_lines[-20:])
    finally:
        client.close()
        if other is not None:
            other.close()
        assert server.stop() == 0
