"""`oms audit lifecycle|query|export|limits|verify` and `oms report eod` on a data dir written by
a real engine (see test_audit_queries.run_trading_day), with the server stopped: each command
catches the DuckDB projection up from the journal first."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from oms_trading.cli import main
from oms_trading.audit.paths import duckdb_path

from .test_audit_queries import DAY, run_trading_day


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("auditcli")
    facts = run_trading_day(d)
    return d, facts


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_lifecycle_table_and_json(data, capsys):
    d, facts = data
    code, out, _ = run(capsys, "audit", "lifecycle", "--data-dir", str(d), "--cl-ord-id", "B-2b")
    assert code == 0
    assert out.splitlines()[0].split()[:3] == ["seq", "time", "type"]
    assert "order_replaced" in out and "order_canceled" in out and "(9 rows)" in out
    code, out, _ = run(capsys, "audit", "lifecycle", "--data-dir", str(d), "--order-id", str(facts["buy_order"]),
                       "--json")
    rows = json.loads(out)
    assert code == 0 and rows[0]["type"] == "order_received" and rows[-1]["type"] == "order_canceled"
    code, out, _ = run(capsys, "audit", "lifecycle", "--data-dir", str(d), "--cl-ord-id", "NOPE")
    assert code == 3 and "(no rows)" in out


def test_query_filters_and_iso_times(data, capsys):
    d, facts = data
    code, out, _ = run(capsys, "audit", "query", "--data-dir", str(d), "--event", "rejects", "--json")
    rows = json.loads(out)
    assert code == 0 and {r["type"] for r in rows} == {"order_rejected", "cancel_rejected"}
    code, out, _ = run(capsys, "audit", "query", "--data-dir", str(d), "--account", "ACC2", "--symbol", "MSFT",
                       "--from", "2026-11-25T14:11:00Z", "--to", str(facts["kill_ts"] + 1))
    assert code == 0 and "order_accepted" in out and "order_canceled" in out and "ACC1" not in out
    code, _, err = run(capsys, "audit", "query", "--data-dir", str(d), "--from", "yesterday")
    assert code == 2 and "not a time" in err


def test_export_formats(data, capsys, tmp_path):
    d, facts = data
    for fmt in ("csv", "parquet", "cat"):
        out_file = tmp_path / f"x.{fmt}"
        code, out, _ = run(capsys, "audit", "export", "--data-dir", str(d), "--format", fmt, "--out", str(out_file),
                           "--from", "2026-11-25T00:00:00Z", "--to", "2026-11-26T00:00:00Z")
        assert code == 0 and out_file.stat().st_size > 0 and "wrote" in out
    rows = list(csv.DictReader(open(tmp_path / "x.csv", newline="")))
    assert len(rows) == facts["last_seq"]
    lines = (tmp_path / "x.cat").read_text().splitlines()
    assert all(json.loads(x)["type"] in ("MENO", "MEOM", "MEOC", "MEOT") for x in lines)


def test_limits_command(data, capsys):
    d, facts = data
    code, out, _ = run(capsys, "audit", "limits", "--data-dir", str(d), "--account", "ACC1",
                       "--at", str(facts["limit_ts"]), "--json")
    rows = {r["limit"]: r for r in json.loads(out)}
    assert code == 0 and rows["max_order_notional"]["value"] == "10000"
    assert rows["max_order_qty"]["source"] == "config"
    code, out, _ = run(capsys, "audit", "limits", "--data-dir", str(d), "--account", "ACC1")
    assert code == 0 and "raised after review" in out and "max_order_qty" in out


def test_report_eod(data, capsys, tmp_path):
    d, _ = data
    code, out, _ = run(capsys, "report", "eod", "--data-dir", str(d), "--date", DAY)
    assert code == 0 and "section,Blotter" in out and "partly filled, canceled" in out
    page = tmp_path / "eod.html"
    code, out, _ = run(capsys, "report", "eod", "--data-dir", str(d), "--format", "html", "--out", str(page))
    assert code == 0 and page.read_text().startswith("<!DOCTYPE html>")


def test_verify_ok_with_note_and_cli_entry_point(data, capsys, tmp_path):
    d, facts = data
    # a fresh data dir whose projection was never built: verify is OK and says why it checked no rows
    fresh = tmp_path / "fresh"
    run_trading_day(fresh)
    code, out, _ = run(capsys, "audit", "verify", "--data-dir", str(fresh))
    assert code == 0 and "no DuckDB projection to check" in out
    # the real `oms` entry point, as an operator runs it
    duckdb_path(d).exists()
    proc = subprocess.run([sys.executable, "-m", "oms_trading.cli", "audit", "verify", "--data-dir", str(d)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{facts['last_seq']} journal records, {facts['last_seq']} DuckDB rows" in proc.stdout


def test_missing_journal_is_a_clear_error(capsys, tmp_path):
    code, _, err = run(capsys, "audit", "query", "--data-dir", str(tmp_path / "none"))
    assert code == 1 and "no journal" in err
