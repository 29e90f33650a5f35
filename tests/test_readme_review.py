"""What a new user following the README meets with `oms audit tail|rebuild|verify`.

- A mistyped or missing --data-dir: `verify` printed "audit chain intact: 0 journal records"
  (exit 0), and `tail`/`rebuild` created an empty audit.duckdb there and reported success.
- `oms serve` still running on the data dir (the README says to stop it first, and a user
  forgets): `tail` and `rebuild` ended in a DuckDB traceback, and `verify` said
  "audit chain BROKEN in duckdb at seq None" (exit 1) for a file that was only in use.
"""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from oms_trading.audit.paths import duckdb_path
from oms_trading.cli import main

from .test_audit_queries import run_trading_day


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", ["verify", "tail", "rebuild"])
def test_missing_data_dir_is_an_error_and_creates_nothing(command, capsys, tmp_path):
    missing = tmp_path / "oms-dta"          # a typo of oms-data
    code, out, err = run(capsys, "audit", command, "--data-dir", str(missing))
    assert code != 0
    assert "no journal" in err
    assert "intact" not in out
    assert not missing.exists()


HOLD_LOCK = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("locked", flush=True)
time.sleep(60)
"""


@pytest.fixture
def locked_data_dir(tmp_path, capsys):
    d = tmp_path / "data"
    run_trading_day(d)
    assert main(["audit", "rebuild", "--data-dir", str(d)]) == 0
    capsys.readouterr()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(duckdb_path(d))],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield d
    finally:
        holder.kill()
        holder.wait(timeout=10)


def test_commands_on_a_duckdb_in_use_say_so(locked_data_dir, capsys):
    d = str(locked_data_dir)
    for command in ("tail", "rebuild"):
        code, _, err = run(capsys, "audit", command, "--data-dir", d)
        assert code == 1, command
        assert "in use" in err and "oms serve" in err, (command, err)
    code, out, err = run(capsys, "audit", "verify", "--data-dir", d)
    assert code == 2
    assert "BROKEN" not in out + err
    assert "in use" in err
