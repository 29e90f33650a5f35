"""Interoperability with a standard FIX engine: QuickFIX (C++ engine, Python binding) as the
initiator against a real `oms serve` (issue 5: "any standard FIX engine must be able to log
on, trade, disconnect, reconnect and recover its gap").

QuickFIX validates every message we send against its own data dictionaries (FIX42.xml,
FIX44.xml), so a field we get wrong shows up as a Reject it sends us. The quickfix package
has no wheel and takes minutes to compile, so CI skips this module; `scripts/interop.sh`
builds it once and runs it (see RELIABILITY.md for the recorded run).
"""
from __future__ import annotations

import os
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.server_process import ServerProcess

qf = pytest.importorskip("quickfix")


def _spec_dir() -> Path:
    candidates = [os.environ.get("QUICKFIX_SPEC_DIR"), Path(sys.prefix) / "share" / "quickfix",
                  Path(qf.__file__).parent / "spec"]
    for c in candidates:
        if c and (Path(c) / "FIX44.xml").exists():
            return Path(c)
    pytest.skip("QuickFIX data dictionaries (FIX42.xml, FIX44.xml) not found: set QUICKFIX_SPEC_DIR")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Recorder(qf.Application):
    """Keeps every message QuickFIX hands to the application, per session."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.app: dict[str, list[str]] = {"CLIENT1": [], "CLIENT2": []}
        self.admin_in: dict[str, list[str]] = {"CLIENT1": [], "CLIENT2": []}
        self.admin_out: dict[str, list[str]] = {"CLIENT1": [], "CLIENT2": []}
        self.logons: dict[str, int] = {"CLIENT1": 0, "CLIENT2": 0}
        self.online: dict[str, bool] = {"CLIENT1": False, "CLIENT2": False}

    def onCreate(self, sid):
        pass

    def onLogon(self, sid):
        with self.lock:
            self.logons[sid.getSenderCompID().getValue()] += 1
            self.online[sid.getSenderCompID().getValue()] = True

    def onLogout(self, sid):
        with self.lock:
            self.online[sid.getSenderCompID().getValue()] = False

    def toAdmin(self, message, sid):
        msg_type = message.getHeader().getField(35)
        who = sid.getSenderCompID().getValue()
        if msg_type == "A" and who == "CLIENT1":
            message.setField(553, "CLIENT1")
            message.setField(554, "demo1")
        with self.lock:
            self.admin_out[who].append(message.toString())

    def fromAdmin(self, message, sid):
        with self.lock:
            self.admin_in[sid.getSenderCompID().getValue()].append(message.toString())

    def toApp(self, message, sid):
        pass

    def fromApp(self, message, sid):
        with self.lock:
            self.app[sid.getSenderCompID().getValue()].append(message.toString())


def _fields(raw: str) -> dict[int, str]:
    out: dict[int, str] = {}
    for part in raw.split("\x01"):
        if "=" in part:
            tag, _, value = part.partition("=")
            out.setdefault(int(tag), value)
    return out


def _wait(predicate, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _settings(base: Path, port: int, spec: Path) -> Path:
    text = f"""[DEFAULT]
ConnectionType=initiator
ReconnectInterval=1
FileStorePath={base / 'qf-store'}
FileLogPath={base / 'qf-log'}
StartTime=00:00:00
EndTime=00:00:00
UseDataDictionary=Y
ValidateUserDefinedFields=Y
SocketConnectHost=127.0.0.1
SocketConnectPort={port}
HeartBtInt=30
TargetCompID=OMS

[SESSION]
BeginString=FIX.4.4
SenderCompID=CLIENT1
DataDictionary={spec / 'FIX44.xml'}

[SESSION]
BeginString=FIX.4.2
SenderCompID=CLIENT2
DataDictionary={spec / 'FIX42.xml'}
"""
    path = base / "quickfix.cfg"
    path.write_text(text)
    return path


def _order(begin: str, cl: str, side: str, qty: int, price: str):
    msg = qf.Message()
    header = msg.getHeader()
    header.setField(8, begin)
    header.setField(35, "D")
    msg.setField(11, cl)
    if begin == "FIX.4.2":
        msg.setField(21, "1")                 # HandlInst, required in 4.2
    msg.setField(55, "AAPL")
    msg.setField(54, side)
    msg.setField(60, time.strftime("%Y%m%d-%H:%M:%S", time.gmtime()))
    msg.setField(38, str(qty))
    msg.setField(40, "2")
    msg.setField(44, price)
    msg.setField(59, "0")
    return msg


def _reports(rec: Recorder, who: str, cl: str) -> list[dict[int, str]]:
    with rec.lock:
        return [f for f in map(_fields, rec.app[who]) if f.get(35) == "8" and f.get(11) == cl]


def test_quickfix_initiator_trades_recovers_gaps_and_survives_kill_9(tmp_path):
    spec = _spec_dir()
    port = _free_port()
    data = tmp_path / "data"
    server = ServerProcess(data, extra=["--fix-port", str(port)]).start()
    rec = Recorder()
    settings = qf.SessionSettings(str(_settings(tmp_path, port, spec)))
    initiator = qf.SocketInitiator(rec, qf.FileStoreFactory(settings), settings, qf.FileLogFactory(settings))
    c1 = qf.SessionID("FIX.4.4", "CLIENT1", "OMS")
    c2 = qf.SessionID("FIX.4.2", "CLIENT2", "OMS")
    initiator.start()
    try:
        _wait(lambda: rec.online["CLIENT1"] and rec.online["CLIENT2"], what="both QuickFIX logons")

        # trade: CLIENT1 (4.4) rests a bid, replaces it, then logs out
        qf.Session.sendToTarget(_order("FIX.4.4", "Q1", "1", 100, "189.00"), c1)
        _wait(lambda: any(r.get(39) == "0" for r in _reports(rec, "CLIENT1", "Q1")), what="New for Q1")
        replace = qf.Message()
        replace.getHeader().setField(35, "G")
        for tag, value in ((41, "Q1"), (11, "Q1R"), (55, "AAPL"), (54, "1"),
                           (60, time.strftime("%Y%m%d-%H:%M:%S", time.gmtime())), (38, "200"), (40, "2"),
                           (44, "189.00")):
            replace.setField(tag, value)
        qf.Session.sendToTarget(replace, c1)
        _wait(lambda: any(r.get(150) == "5" for r in _reports(rec, "CLIENT1", "Q1R")), what="Replaced")

        qf.Session.lookupSession(c1).logout("going away")
        _wait(lambda: not rec.online["CLIENT1"], what="CLIENT1 logout")

        # while CLIENT1 is away, CLIENT2 (4.2) sells into its bid: CLIENT1's fill waits in our store
        qf.Session.sendToTarget(_order("FIX.4.2", "S1", "2", 200, "189.00"), c2)
        _wait(lambda: any(r.get(39) == "2" for r in _reports(rec, "CLIENT2", "S1")), what="CLIENT2 filled")
        assert _reports(rec, "CLIENT2", "S1")[-1].get(20) == "0"          # ExecTransType in 4.2

        # CLIENT1 comes back: our Logon is ahead of what it expects -> ResendRequest -> the fill
        logons_before = rec.logons["CLIENT1"]
        qf.Session.lookupSession(c1).logon()
        _wait(lambda: rec.logons["CLIENT1"] > logons_before, what="CLIENT1 logon again")
        _wait(lambda: any(r.get(39) == "2" for r in _reports(rec, "CLIENT1", "Q1R")), what="resent fill")
        fill = [r for r in _reports(rec, "CLIENT1", "Q1R") if r.get(39) == "2"][-1]
        assert fill.get(43) == "Y" and 122 in fill and fill.get(32) == "200" and float(fill[31]) == 189.0
        with rec.lock:
            resend_requests = [f for f in map(_fields, rec.admin_out["CLIENT1"]) if f.get(35) == "2"]
        assert resend_requests, "QuickFIX should have asked for the gap"

        # kill -9 and restart: QuickFIX reconnects by itself and carries on with its numbers
        server.kill()
        _wait(lambda: not rec.online["CLIENT1"] and not rec.online["CLIENT2"], what="disconnect seen")
        logons_before = dict(rec.logons)
        server = ServerProcess(data, extra=["--fix-port", str(port)]).start()
        _wait(lambda: rec.logons["CLIENT1"] > logons_before["CLIENT1"]
              and rec.logons["CLIENT2"] > logons_before["CLIENT2"], timeout=60, what="logons after restart")
        status = qf.Message()
        status.getHeader().setField(35, "H")
        for tag, value in ((11, "Q1R"), (55, "AAPL"), (54, "1")):
            status.setField(tag, value)
        qf.Session.sendToTarget(status, c1)
        _wait(lambda: any(r.get(150) == "I" for r in _reports(rec, "CLIENT1", "Q1R")), what="status answer")
        assert [r for r in _reports(rec, "CLIENT1", "Q1R") if r.get(150) == "I"][-1].get(39) == "2"
    finally:
        initiator.stop()
        server.stop() if server.proc and server.proc.poll() is None else None

    # no sequence reset anywhere, and QuickFIX never rejected a message of ours
    with rec.lock:
        sent_admin = [f for who in rec.admin_out for f in map(_fields, rec.admin_out[who])]
        got_admin = [f for who in rec.admin_in for f in map(_fields, rec.admin_in[who])]
    assert not [f for f in sent_admin if f.get(35) == "3"], [f for f in sent_admin if f.get(35) == "3"]
    assert not [f for f in sent_admin + got_admin if f.get(141) == "Y"]
    assert not [f for f in sent_admin + got_admin if f.get(35) == "4" and f.get(123) != "Y"]
