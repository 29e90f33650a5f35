"""FIX session layer: what survives a server stop, a kill -9, and TLS (each its own `oms serve`)."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.fixclient import FixClient, field
from tests.server_process import ServerProcess
from tests.test_fix_session import write_test_config

SESSIONS = {"RST": "", "KILL": "", "TLS": ""}


def _logon(port: int, name: str, seq: int = 1, **kw) -> FixClient:
    c = FixClient("127.0.0.1", port, name, timeout=5.0, **kw)
    c.seq = seq
    return c


def _orders(c: FixClient, prefix: str, n: int) -> list[str]:
    sent_times = []
    for i in range(n):
        c.new_order(f"{prefix}{i}", "MSFT", "1", 1, f"{400 + i}.00")
        er = c.expect("8")
        assert field(er, 39) == "0"
        sent_times.append(field(er, 52))
    return sent_times


def _resend_all(c: FixClient) -> list:
    c.send("2", [(7, 1), (16, 0)])
    return c.drain(1.0)


def test_logout_by_server_on_stop_then_resend_after_restart(tmp_path):
    config = write_test_config(tmp_path / "oms.toml", sessions=SESSIONS)
    srv = ServerProcess(tmp_path / "data", config=config).start()
    try:
        c = _logon(srv.fix_port, "RST")
        c.logon(heartbeat=30)
        times = _orders(c, "R", 3)                         # our seqs: 1 logon, 2..4 ERs
        # stop: the server logs out first (server-initiated Logout), we answer, it closes
        import threading
        stopper = threading.Thread(target=srv.stop)
        stopper.start()
        logout = c.expect("5", timeout=10)
        assert "shutting down" in field(logout, 58)
        c.send("5")
        c.wait_closed(10)
        stopper.join(30)
        assert srv.proc.returncode == 0
        c.close()
        srv = ServerProcess(tmp_path / "data", config=config).start()
        c = _logon(srv.fix_port, "RST", seq=c.seq)           # carry on with our next seq
        ack = c.logon(heartbeat=30)
        assert field(ack, 34) == "6" and field(ack, 141) is None   # 5 was the Logout
        msgs = _resend_all(c)
        summary = [(field(m, 35), field(m, 34), field(m, 36), field(m, 11)) for m in msgs]
        assert summary == [("4", "1", "2", None), ("8", "2", None, "R0"), ("8", "3", None, "R1"),
                           ("8", "4", None, "R2"), ("4", "5", "7", None)], summary
        assert [field(m, 122) for m in msgs if m.get(35) == b"8"] == times
        assert all(field(m, 43) == "Y" for m in msgs)
        c.close()
    finally:
        srv.kill()


def test_kill_9_then_restart_recovers_by_resend_not_reset(tmp_path):
    config = write_test_config(tmp_path / "oms.toml", sessions=SESSIONS)
    srv = ServerProcess(tmp_path / "data", config=config).start()
    try:
        c = _logon(srv.fix_port, "KILL")
        c.logon(heartbeat=30)
        # pipeline orders, read every report, then kill -9 with no goodbye
        for i in range(50):
            c.new_order(f"K{i}", "MSFT", "1", 1, f"{390 + i % 20}.00")
        ers = [c.expect("8") for _ in range(50)]
        last_seen = int(field(ers[-1], 34))
        assert last_seen == 51
        srv.kill()
        c.close()
        srv = ServerProcess(tmp_path / "data", config=config).start()
        c = _logon(srv.fix_port, "KILL", seq=c.seq)
        ack = c.logon(heartbeat=30)
        # the server remembered both sequence numbers: no reset, our next message is in sequence
        assert field(ack, 141) is None and field(ack, 34) == str(last_seen + 1)
        msgs = _resend_all(c)
        ers = [m for m in msgs if m.get(35) == b"8"]
        assert [field(m, 11) for m in ers] == [f"K{i}" for i in range(50)]
        assert [field(m, 34) for m in ers] == [str(i) for i in range(2, 52)]
        assert field(c.test_request("AFTER"), 112) == "AFTER"
        c.close()
    finally:
        srv.kill()


def _openssl_cert(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("no openssl CLI to make a self-signed certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    result = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                             "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"openssl could not make a certificate: {result.stderr[-300:]}")
    return cert, key


def test_tls_session_and_microsecond_timestamps(tmp_path):
    import ssl
    cert, key = _openssl_cert(tmp_path)
    config = write_test_config(tmp_path / "oms.toml", sessions=SESSIONS,
                               extra_fix={"tls_cert": f'"{cert}"', "tls_key": f'"{key}"',
                                          "sending_time_precision": '"us"'})
    srv = ServerProcess(tmp_path / "data", config=config).start()
    try:
        ctx = ssl.create_default_context(cafile=str(cert))
        ctx.check_hostname = False
        c = _logon(srv.fix_port, "TLS")
        c.sock = ctx.wrap_socket(c.sock, server_hostname="localhost")
        ack = c.logon(heartbeat=30)
        assert re.match(r"^\d{8}-\d{2}:\d{2}:\d{2}\.\d{6}$", field(ack, 52))
        c.new_order("T1", "MSFT", "1", 1, "400.00")
        er = c.expect("8")
        assert re.match(r"^\d{8}-\d{2}:\d{2}:\d{2}\.\d{6}$", field(er, 60))
        c.close()
        # plain text on the TLS port gets nowhere
        plain = _logon(srv.fix_port, "TLS")
        plain.sock.sendall(plain.build("A", [(98, 0), (108, 30)]))
        assert plain.recv(2) is None
        plain.close()
    finally:
        srv.kill()


def test_daily_reset_time_logs_out_a_connected_session_and_resets_both_sequences(tmp_path):
    import time
    from datetime import datetime, timedelta, timezone
    for _attempt in range(3):
        # the reset time (HH:MM:SS) falls a few seconds after the logon; a slow start (cold
        # numba cache) that passes it is retried with a later time
        at = datetime.now(timezone.utc) + timedelta(seconds=8)
        config = write_test_config(tmp_path / "oms.toml", sessions={"DAYEND": ""},
                                   extra_fix={"daily_reset": f'"{at.strftime("%H:%M:%S")}"'})
        srv = ServerProcess(tmp_path / "data", config=config).start()
        if datetime.now(timezone.utc) < at - timedelta(seconds=4):
            break
        srv.kill()
        shutil.rmtree(tmp_path / "data", ignore_errors=True)
        time.sleep(1)
    try:
        c = _logon(srv.fix_port, "DAYEND")
        c.logon(heartbeat=30)
        _orders(c, "E", 2)                                    # our seqs 1..3, theirs 1..3
        logout = c.expect("5", timeout=15)                    # at the reset time, unasked
        assert "sequence numbers start again at 1" in field(logout, 58)
        assert field(logout, 34) == "4"
        c.wait_closed(5)
        c.close()
        c = _logon(srv.fix_port, "DAYEND", seq=1)             # the new day: both sides at 1
        ack = c.logon(heartbeat=30)
        assert field(ack, 34) == "1"
        _orders(c, "F", 1)
        c.close()
        assert "daily reset time" in "".join(srv.stderr_lines)
    finally:
        srv.kill()
