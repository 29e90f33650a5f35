"""Crash windows of the FIX session layer that a random kill -9 rarely hits, each forced
(tests/crash_launcher.py) or made by a kill -9 at a quiet moment, against real servers:

- between a batch's journal write and its FIX store write: the store's next inbound MsgSeqNum
  lags commands already journaled; the counterparty's resend of them must not run them twice;
- a session with cancel on disconnect logged on when the server died: its orders must not
  stay working (nobody is connected to manage them) after the restart.
"""
from __future__ import annotations

from oms_trading.audit import schema as ev
from oms_trading.audit.journal import iter_records
from oms_trading.audit.paths import journal_dir
from tests.fixclient import FixClient, field, utc_now
from tests.server_process import ServerProcess


def _client(server, name: str, begin: str = "FIX.4.4") -> FixClient:
    return FixClient("127.0.0.1", server.fix_port, name, begin_string=begin, timeout=5.0)


def _records(data) -> list[dict]:
    return list(iter_records(journal_dir(data)))


def test_commands_journaled_before_a_crash_cut_the_store_write_are_not_run_twice(tmp_path):
    data = tmp_path / "data"
    server = ServerProcess(data, module="tests.crash_launcher", env={"OMS_CRASH_BEFORE_STORE": "11=N1\x01"}).start()
    c = _client(server, "CLIENT1")
    c.logon(password="demo1", reset=True)
    c.new_order("K1", "AAPL", "1", 10, "185.00")
    assert field(c.expect("8"), 39) == "0"
    # one write: a mass cancel (seq 3), then a new order (seq 4) whose report kills the server
    # after both were journaled, before the store saved the inbound seq or the reports
    mass_cancel = c.build("q", [(11, "MC1"), (530, "7"), (60, utc_now())])
    c.seq += 1
    order = c.build("D", [(11, "N1"), (55, "AAPL"), (54, "1"), (60, utc_now()), (38, 10), (40, "2"),
                          (44, "185.00"), (59, "0")])
    c.seq += 1
    c.sock.sendall(mass_cancel + order)
    server.proc.wait(30)
    assert server.proc.returncode == 137
    c.close()
    journaled = [r for r in _records(data) if r["type"] in ev.COMMAND_TYPES and r.get("session") == "CLIENT1->OMS"]
    assert [(r["type"], r["msg_seq_num"]) for r in journaled][-2:] == [
        (ev.MASS_CANCEL_REQUESTED, 3), (ev.ORDER_RECEIVED, 4)]

    server = ServerProcess(data).start()
    try:
        assert any("next inbound MsgSeqNum 3 -> 5" in line for line in server.stderr_lines)
        c = _client(server, "CLIENT1")
        c.seq = 5
        logon = c.logon(password="demo1")
        assert field(logon, 141) is None
        # the client resends 3 and 4 as QuickFIX/J would after a ResendRequest: duplicates now
        for seq, raw_fields in ((3, [(11, "MC1"), (530, "7"), (60, utc_now())]),
                                (4, [(11, "N1"), (55, "AAPL"), (54, "1"), (60, utc_now()), (38, 10), (40, "2"),
                                     (44, "185.00"), (59, "0")])):
            c.send_built("q" if seq == 3 else "D", raw_fields, seq=seq, extra_header=[(43, "Y"), (122, utc_now())])
        c.send("H", [(11, "N1"), (55, "AAPL"), (54, "1")])
        # the reports the crash kept from the store come by resend; the status says N1 works
        status, seen = None, []
        for _ in range(20):
            msg = c.recv()
            if msg is None:
                break
            seen.append(msg)
            if field(msg, 35) == "8" and field(msg, 150) == "I":
                status = msg
                break
        assert status is not None and field(status, 39) == "0" and field(status, 11) == "N1", seen
        assert not [m for m in seen if field(m, 35) in ("2", "3")], seen     # no ResendRequest, no Reject
        c.close()
    finally:
        server.stop()
    commands = [r for r in _records(data) if r["type"] in ev.COMMAND_TYPES and r.get("session") == "CLIENT1->OMS"]
    assert sum(r["type"] == ev.MASS_CANCEL_REQUESTED for r in commands) == 1
    assert sum(r["type"] == ev.ORDER_RECEIVED and r["cl_ord_id"] == "N1" for r in commands) == 1


def test_cancel_on_disconnect_runs_at_the_restart_after_a_crash(tmp_path):
    data = tmp_path / "data"
    server = ServerProcess(data).start()
    c = _client(server, "CLIENT2", "FIX.4.2")
    c.logon(reset=True)
    c.new_order("S1", "AAPL", "2", 100, "200.00")
    assert field(c.expect("8"), 39) == "0"
    server.kill()                                     # SIGKILL: CLIENT2's connection dies with it
    c.close()
    server = ServerProcess(data).start()
    try:
        assert any("CLIENT2->OMS was logged on when the server stopped" in line for line in server.stderr_lines)
    finally:
        assert server.stop() == 0
    records = _records(data)
    canceled = [r for r in records if r["type"] == ev.ORDER_CANCELED and r.get("cl_ord_id") == "S1"]
    assert len(canceled) == 1
    ended = [r for r in records if r["type"] == ev.SESSION_LOGOUT and r.get("session") == "CLIENT2->OMS"]
    assert len(ended) == 1 and "crash" in ended[0]["text"]
    # a clean stop logs its sessions out: the next start finds none lost
    server = ServerProcess(data).start()
    c = _client(server, "CLIENT2", "FIX.4.2")
    c.logon(reset=True)
    c.close()
    assert server.stop() == 0
    server = ServerProcess(data).start()
    try:
        assert not any("logged on when the server stopped" in line for line in server.stderr_lines)
    finally:
        server.stop()


def test_a_daily_reset_at_the_restart_after_such_a_crash_starts_the_new_numbering_at_1(tmp_path):
    """Reviewed: the same crash, and the restart comes after the daily reset time. The rebuilt
    reports reset the store (a new FIX day) and then the journaled MsgSeqNums of the old day
    moved its inbound seq back up: the client's new-day Logon at 1 was refused as too low."""
    import datetime as dt
    import os

    from oms_trading.config import demo_config_text
    reset_at = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)).strftime("%H:%M")
    cfg = tmp_path / "oms.toml"
    cfg.write_text(demo_config_text().replace('# daily_reset = "21:05"', f'daily_reset = "{reset_at}"'))
    data = tmp_path / "data"
    server = ServerProcess(data, config=cfg, module="tests.crash_launcher",
                           env={"OMS_CRASH_BEFORE_STORE": "11=N1\x01"}).start()
    c = _client(server, "CLIENT1")
    c.logon(password="demo1", reset=True)
    c.new_order("K1", "AAPL", "1", 10, "185.00")
    assert field(c.expect("8"), 39) == "0"
    c.new_order("N1", "AAPL", "1", 10, "185.00")
    server.proc.wait(30)
    assert server.proc.returncode == 137
    c.close()
    two_days_ago = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2)).timestamp()
    for f in (data / "fix").rglob("*"):       # the crash was before today's reset time
        if f.is_file():
            os.utime(f, (two_days_ago, two_days_ago))
    server = ServerProcess(data, config=cfg).start()
    try:
        c = _client(server, "CLIENT1")
        logon = c.logon(password="demo1")       # MsgSeqNum 1, the new day's numbering
        assert field(logon, 35) == "A", logon
        c.close()
    finally:
        server.stop()
