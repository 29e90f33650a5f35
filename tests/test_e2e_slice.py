"""The whole path on real sockets: `oms serve` subprocess, FIX logon, a trade, DuckDB rows."""
from __future__ import annotations

import subprocess
import sys

import duckdb
import pytest

from tests.fixclient import FixClient, field
from tests.server_process import ServerProcess, audit_verify_ok


@pytest.fixture
def server(tmp_path):
    proc = ServerProcess(tmp_path / "data").start()
    yield proc
    proc.kill()


def test_two_crossing_orders_trade_and_land_in_duckdb(server, tmp_path):
    buyer = FixClient("127.0.0.1", server.fix_port, "CLIENT1")
    seller = FixClient("127.0.0.1", server.fix_port, "CLIENT2", begin_string="FIX.4.2")
    try:
        logon = buyer.logon(password="demo1")
        assert field(logon, 98) == "0"
        seller.logon()

        buyer.new_order("B1", "AAPL", "1", 300, "190.00")
        ack = buyer.expect("8")
        assert field(ack, 150) == "0" and field(ack, 39) == "0"
        assert field(ack, 11) == "B1" and field(ack, 151) == "300" and field(ack, 14) == "0"
        buy_order_id = field(ack, 37)

        seller.new_order("S1", "AAPL", "2", 100, "189.99")
        sell_ack = seller.expect("8")
        assert field(sell_ack, 150) == "0" and field(sell_ack, 20) == "0"  # FIX 4.2 carries ExecTransType
        sell_fill = seller.expect("8")
        # FIX 4.2: ExecType 2 (Fill); the aggressor trades at the resting price
        assert field(sell_fill, 150) == "2" and field(sell_fill, 39) == "2"
        assert field(sell_fill, 32) == "100" and field(sell_fill, 31) == "190.00"
        assert field(sell_fill, 14) == "100" and field(sell_fill, 151) == "0"
        assert field(sell_fill, 6) == "190.00"

        buy_fill = buyer.expect("8")
        # FIX 4.4: ExecType F (Trade), partially filled
        assert field(buy_fill, 150) == "F" and field(buy_fill, 39) == "1"
        assert field(buy_fill, 37) == buy_order_id
        assert field(buy_fill, 32) == "100" and field(buy_fill, 31) == "190.00"
        assert field(buy_fill, 14) == "100" and field(buy_fill, 151) == "200"
        assert field(buy_fill, 6) == "190.00"

        # bad input gets a clear answer: unknown symbol and an off-tick price
        buyer.new_order("B2", "NOPE", "1", 10, "1.00")
        rej = buyer.expect("8")
        assert field(rej, 150) == "8" and field(rej, 39) == "8" and field(rej, 103) == "1"
        assert "Unknown symbol" in field(rej, 58)
        buyer.new_order("B3", "AAPL", "1", 10, "190.005")
        rej = buyer.expect("8")
        assert field(rej, 39) == "8" and field(rej, 103) == "99"
        assert "tick" in field(rej, 58)
    finally:
        buyer.close()
        seller.close()

    assert server.stop() == 0
    con = duckdb.connect(str(tmp_path / "data" / "audit.duckdb"), read_only=True)
    try:
        rows = con.execute("SELECT type, cl_ord_id, ord_status, cum_qty, leaves_qty, last_px, last_qty "
                           "FROM audit_events WHERE cl_ord_id IS NOT NULL ORDER BY seq").fetchall()
        seqs = [r[0] for r in con.execute("SELECT seq FROM audit_events ORDER BY seq").fetchall()]
    finally:
        con.close()
    assert seqs == list(range(1, len(seqs) + 1))  # gap-free
    kinds = [(r[0], r[1]) for r in rows]
    assert ("order_received", "B1") in kinds and ("order_accepted", "B1") in kinds
    assert ("order_filled", "S1") in kinds and ("order_partially_filled", "B1") in kinds
    assert ("order_rejected", "B2") in kinds and ("order_rejected", "B3") in kinds
    fill = next(r for r in rows if r[0] == "order_partially_filled")
    assert fill[2:] == ("1", 100, 200, "190.00", 100)

    audit_verify_ok(tmp_path / "data")


def test_bad_config_stops_serve_with_file_key_and_problem(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[instruments]]\nsymbol = "X"\ntick_size = 0.01\n', encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "oms_trading.cli", "serve", "--config", str(bad),
                             "--data-dir", str(tmp_path / "d")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert str(bad) in result.stderr and "instruments[0].tick_size" in result.stderr
    assert "floats are not exact" in result.stderr


def test_sigint_stops_cleanly_and_restart_recovers_state(tmp_path):
    import signal
    data = tmp_path / "data"
    first = ServerProcess(data).start()
    try:
        client = FixClient("127.0.0.1", first.fix_port, "CLIENT1")
        client.logon(password="demo1")
        client.new_order("R1", "MSFT", "1", 50, "420.00")
        assert field(client.expect("8"), 39) == "0"
        client.close()
        first.proc.send_signal(signal.SIGINT)
        assert first.proc.wait(60) == 0
        assert any("stopped cleanly" in line for line in first.lines)
    finally:
        first.kill()
    second = ServerProcess(data).start()
    try:
        client = FixClient("127.0.0.1", second.fix_port, "CLIENT1")
        client.seq = 3   # logon(1) and the order(2) were processed before the restart
        client.logon(password="demo1")
        # the resting order survived the restart: a status request finds it, New with 50 leaves
        client.send("H", [(11, "R1"), (55, "MSFT"), (54, "1")])
        status = client.expect("8")
        assert field(status, 150) == "I" and field(status, 39) == "0" and field(status, 151) == "50"
        client.close()
    finally:
        assert second.stop() == 0
