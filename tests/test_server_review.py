"""Review findings on `oms serve`: its command line, bad input and the lifecycle."""
from __future__ import annotations

import pytest

from oms_trading import cli


@pytest.mark.parametrize("flag", ["--fix-port", "--http-port"])
@pytest.mark.parametrize("value", ["70000", "65536", "-1"])
def test_a_port_out_of_range_on_the_command_line_is_refused(flag, value, capsys, monkeypatch):
    served = []
    monkeypatch.setattr("oms_trading.server.serve", lambda config, options: served.append(options) or 0)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["serve", flag, value])
    assert exit_.value.code == 2 and not served      # not a listener on 70000 % 65536 = 4464
    err = capsys.readouterr().err
    assert "0..65535" in err and value in err and "Traceback" not in err


def _serve(*args: str, timeout: float = 120) -> "subprocess.CompletedProcess[str]":
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "oms_trading.cli", "serve", "--fix-port", "0", "--http-port", "0",
                           *args], capture_output=True, text=True, timeout=timeout)


def test_a_data_dir_another_server_has_open_is_one_line_not_a_traceback(tmp_path):
    from oms_trading.audit.journal import Journal
    from oms_trading.audit.paths import journal_dir
    holder = Journal(journal_dir(tmp_path), fsync="os")     # stands for the `oms serve` already running
    try:
        result = _serve("--data-dir", str(tmp_path))
    finally:
        holder.close()
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("oms serve: ")
    assert "open by another writer" in result.stderr


def test_a_corrupt_journal_is_one_line_not_a_traceback(tmp_path):
    from oms_trading.audit.paths import journal_dir
    journal_dir(tmp_path).mkdir()
    (journal_dir(tmp_path) / "journal-000000000005.log").write_bytes(b"x" * 64)   # seq 1..4 gone
    result = _serve("--data-dir", str(tmp_path))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("oms serve: ")


def test_the_http_ready_line_names_the_bound_address_as_the_fix_line_does(tmp_path):
    """`--host localhost` printed 'FIX listening on 127.0.0.1:P' but 'HTTP listening on
    localhost:Q': tools that read the ready lines (tests/server_process.py too) match an
    address there and never saw the HTTP port."""
    import asyncio
    import io
    import re

    from oms_trading.config import load_config
    from oms_trading.server import OmsServer, ServeOptions

    async def scenario() -> str:
        out = io.StringIO()
        server = OmsServer(load_config(None), ServeOptions(tmp_path, "localhost", 0, 0, book="reference"), out=out)
        await server.start()
        try:
            return out.getvalue()
        finally:
            await server.stop()

    text = asyncio.run(scenario())
    fix = re.search(r"FIX listening on ([\d.]+):(\d+)", text)
    http = re.search(r"HTTP listening on ([\d.]+):(\d+)", text)
    assert fix and http, text
    assert http.group(1) == fix.group(1)


def test_ctrl_c_before_serve_takes_over_the_signal_is_one_line_not_a_traceback(capsys, monkeypatch):
    """SIGINT in the first second of `oms serve` (imports, config, before run_until_stopped's
    handler) was a KeyboardInterrupt traceback and death by SIGINT; nothing had started yet."""
    def interrupted(path):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "load_config", interrupted)
    assert cli.main(["serve"]) == 130
    assert capsys.readouterr().err.strip() == "oms serve: interrupted"
