"""Reports nobody saw: fills while a client is away, and reports a crash kept from the store.

Both reach the client the standard way: our Logon carries a MsgSeqNum above what the client
expects, the client asks for a resend, and gets them with PossDupFlag=Y.
"""
from __future__ import annotations

import struct

from tests.fixclient import FixClient, field
from tests.server_process import ServerProcess


def resend_after_logon(client: FixClient, expected_from_server: int, password: str | None = None) -> list:
    """Log on, ask for everything from ``expected_from_server`` on, return the app messages."""
    logon = client.logon(password=password)
    server_seq = int(field(logon, 34))
    assert server_seq > expected_from_server, "the server had nothing new for us"
    client.send("2", [(7, expected_from_server), (16, 0)])
    got = []
    while True:
        msg = client.recv(timeout=5)
        if msg is None:
            break
        got.append(msg)
    return [m for m in got if field(m, 35) not in ("0", "1", "4")]


def test_fill_while_disconnected_is_delivered_by_resend(tmp_path):
    server = ServerProcess(tmp_path / "data").start()
    try:
        buyer = FixClient("127.0.0.1", server.fix_port, "CLIENT1")
        buyer.logon(password="demo1")
        buyer.new_order("AWAY1", "SPY", "1", 100, "560.00")
        ack = buyer.expect("8")
        assert field(ack, 39) == "0"
        next_expected = int(field(ack, 34)) + 1
        buyer.send("5", [])
        buyer.expect("5")
        buyer.close()

        seller = FixClient("127.0.0.1", server.fix_port, "CLIENT2", begin_string="FIX.4.2")
        seller.logon()
        seller.new_order("HIT1", "SPY", "2", 100, "560.00")
        assert field(seller.expect("8"), 39) == "0"
        assert field(seller.expect("8"), 39) == "2"
        seller.close()

        again = FixClient("127.0.0.1", server.fix_port, "CLIENT1")
        again.seq = buyer.seq
        reports = resend_after_logon(again, next_expected, password="demo1")
        fills = [m for m in reports if field(m, 35) == "8" and field(m, 150) == "F"]
        assert len(fills) == 1, [str(m) for m in reports]
        fill = fills[0]
        assert field(fill, 11) == "AWAY1" and field(fill, 39) == "2" and field(fill, 32) == "100"
        assert field(fill, 43) == "Y" and field(fill, 122) is not None
        again.close()
    finally:
        assert server.stop() == 0


def _cut_last_frames(store_log, keep_frames: int) -> int:
    """Drop all but the first ``keep_frames`` frames of an outbound store (a crash that lost
    the tail between the journal write and the store write); returns frames dropped."""
    data = store_log.read_bytes()
    assert data.startswith(b"OMSFIXS2")
    offset, frames = 8, []
    while offset + 28 <= len(data):
        _seq, length, _event, _target = struct.unpack_from("<QIQQ", data, offset)
        frames.append(offset)
        offset += 28 + length
    store_log.write_bytes(data[:frames[keep_frames]] if keep_frames < len(frames) else data)
    return max(0, len(frames) - keep_frames)


def test_reports_journaled_but_lost_before_the_store_are_rebuilt_after_a_crash(tmp_path):
    data = tmp_path / "data"
    server = ServerProcess(data).start()
    client = FixClient("127.0.0.1", server.fix_port, "CLIENT1")
    client.logon(password="demo1")                       # our seq 1: Logon
    for i in range(3):
        client.new_order(f"CR{i}", "MSFT", "1", 10, "419.00")
        assert field(client.expect("8"), 39) == "0"      # our seqs 2, 3, 4
    client.close()
    server.proc.kill()                                   # kill -9: no clean stop
    server.proc.wait()
    assert _cut_last_frames(data / "fix" / "CLIENT1-OMS" / "outbound.log", keep_frames=2) == 2

    restarted = ServerProcess(data).start()
    try:
        again = FixClient("127.0.0.1", restarted.fix_port, "CLIENT1")
        again.seq = client.seq
        reports = resend_after_logon(again, 3, password="demo1")
        acks = [field(m, 11) for m in reports if field(m, 35) == "8"]
        assert acks == ["CR1", "CR2"], [str(m) for m in reports]
        again.close()
    finally:
        assert restarted.stop() == 0
