"""Review findings on `oms serve`'s configuration, process lifecycle and scripts (third pass).

Each test shows a defect an operator would have hit; the commit that adds it says what was wrong.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from oms_trading import cli
from oms_trading.config import ConfigError, demo_config_text, load_config

REPO = Path(__file__).resolve().parent.parent


# -- configuration files an editor or a spreadsheet wrote ------------------------------------

def test_a_config_file_that_is_not_utf8_is_one_line_naming_the_file(tmp_path, capsys):
    """A config saved as Windows-1252 (a comment "# Société") was a UnicodeDecodeError
    traceback from `oms serve`, not the one line naming the file that the README promises."""
    path = tmp_path / "oms.toml"
    path.write_bytes("# Soci\u00e9t\u00e9 G\u00e9n\u00e9rale\n".encode("cp1252") + demo_config_text().encode())
    assert cli.main(["serve", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"oms serve: bad configuration: {path}: (file): not UTF-8"), err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_config_file_with_a_byte_order_mark_is_read(tmp_path):
    """Notepad's "UTF-8 with BOM": it was "(syntax): Invalid statement (at line 1, column 1)"."""
    path = tmp_path / "oms.toml"
    path.write_bytes(b"\xef\xbb\xbf" + demo_config_text().encode())
    assert load_config(path).sessions


def _with_accounts_csv(tmp_path: Path, data: bytes) -> Path:
    (tmp_path / "accounts.csv").write_bytes(data)
    text = demo_config_text().replace('# accounts_csv = "accounts.csv"', 'accounts_csv = "accounts.csv"', 1)
    path = tmp_path / "oms.toml"
    path.write_text(text)
    return path


def test_a_reference_data_csv_that_is_not_utf8_is_a_config_error(tmp_path):
    """Excel's plain "CSV" is Windows-1252: a description with an accent was a traceback."""
    path = _with_accounts_csv(tmp_path, "name,description,stp_mode\nFIRM9,Soci\u00e9t\u00e9,none\n".encode("cp1252"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "reference_data.accounts_csv" in message and "not UTF-8" in message and "accounts.csv" in message


def test_a_reference_data_csv_with_a_byte_order_mark_is_read(tmp_path):
    """Excel's "CSV UTF-8" starts with a BOM: the first column was then "\\ufeffname",
    refused as "accounts.csv:2.name: unknown key (allowed: description, name, stp_mode)"."""
    path = _with_accounts_csv(tmp_path, b"\xef\xbb\xbfname,description,stp_mode\nFIRM9,Firm nine,none\n")
    cfg = load_config(path)
    assert any(a.name == "FIRM9" and a.stp_mode == "none" for a in cfg.accounts)


@pytest.mark.parametrize("key,old,new", [
    ("trading.end_of_day", 'end_of_day = "21:00"', 'end_of_day = "\u00b2\u00b9:00"'),
    ("fix.daily_reset", '# daily_reset = "21:05"', 'daily_reset = "21:0\u2075"'),
])
def test_a_time_of_day_with_non_ascii_digits_is_a_config_error(key, old, new):
    """"²¹:00" passed the str.isdigit() check, then int() raised ValueError: a traceback."""
    from oms_trading.config import parse_config
    text = demo_config_text()
    assert old in text
    with pytest.raises(ConfigError) as info:
        parse_config(text.replace(old, new, 1), "my.toml", Path("."))
    assert key in str(info.value) and "HH:MM" in str(info.value)


# -- `oms serve` as a process ------------------------------------------------------------------

def _serve_cmd(data: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "oms_trading.cli", "serve", "--data-dir", str(data), "--book", "reference", *args]


def test_a_clean_stop_after_the_ready_lines_reader_went_away_exits_0(tmp_path):
    """A tool that starts `oms serve`, waits for its ready lines and then closes its end of the
    pipe (it has what it waited for) saw a clean SIGTERM stop exit 1 with
    "oms serve: [Errno 32] Broken pipe": only the last line, "stopped cleanly", had failed."""
    proc = subprocess.Popen(_serve_cmd(tmp_path / "data", "--fix-port", "0", "--http-port", "0"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, f"oms serve exited {proc.wait()}: {proc.stderr.read()[-2000:]}"
            if "HTTP listening on" in line:
                break
        proc.stdout.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 0, proc.stderr.read()[-2000:]
        err = proc.stderr.read()
        assert "Broken pipe" not in err and "Traceback" not in err and "Exception ignored" not in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _serve_fails(data: Path, *args: str) -> str:
    result = subprocess.run(_serve_cmd(data, *args), capture_output=True, text=True, timeout=240)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    return result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("which", ["FIX", "HTTP"])
def test_a_port_in_use_says_which_listener(tmp_path, which):
    """It was "oms serve: [Errno 98] error while attempting to bind on address ('127.0.0.1',
    8080): address already in use": the operator had to work out which of the two it was."""
    import socket
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        ports = ["--fix-port", port, "--http-port", "0"] if which == "FIX" else ["--fix-port", "0", "--http-port", port]
        last = _serve_fails(tmp_path / "data", *ports)
    assert last.startswith(f"oms serve: cannot listen for {which} on 127.0.0.1:{port}: "), last
    assert "in use" in last, last


def test_a_host_that_does_not_resolve_is_named(tmp_path):
    """`--host` (or server.host) with a typo was "oms serve: [Errno -2] Name or service not
    known", naming no name."""
    last = _serve_fails(tmp_path / "data", "--host", "oms-no-such-host.invalid", "--fix-port", "0", "--http-port", "0")
    assert last.startswith("oms serve: cannot listen for FIX on oms-no-such-host.invalid:0: "), last


# -- scripts/serve.sh ----------------------------------------------------------------------------

def _fake_repo(tmp_path: Path) -> Path:
    """scripts/serve.sh in a repo whose setup does nothing and whose `oms` prints where it runs
    and what it was given, one line each."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    (repo / "scripts" / "serve.sh").write_text((REPO / "scripts" / "serve.sh").read_text())
    (repo / "scripts" / "setup.sh").write_text("exit 0\n")
    oms = repo / ".venv" / "bin" / "oms"
    oms.parent.mkdir(parents=True)
    oms.write_text('#!/usr/bin/env bash\npwd\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    oms.chmod(0o755)
    return repo


def test_serve_sh_takes_relative_paths_from_where_it_was_started(tmp_path):
    """serve.sh cd's into the repo before `oms serve`, so `bash ~/oms/scripts/serve.sh --config
    oms.toml --data-dir day1` run from elsewhere read ~/oms/oms.toml ("cannot read", for a file
    that is right there) and wrote the journal into ~/oms/day1, silently."""
    repo = _fake_repo(tmp_path)
    here = tmp_path / "work"
    here.mkdir()
    result = subprocess.run(["bash", str(repo / "scripts" / "serve.sh"), "--config", "oms.toml", "--data-dir",
                             "day1", "--fix-port", "0", "--config=sub/x.toml", "--data-dir=/abs/d", "--host", "h"],
                            cwd=here, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == str(repo)                     # oms still runs in the repo: ./oms-data is its
    assert lines[1:] == ["serve", "--config", f"{here}/oms.toml", "--data-dir", f"{here}/day1", "--fix-port", "0",
                         f"--config={here}/sub/x.toml", "--data-dir=/abs/d", "--host", "h"]


def test_serve_sh_without_arguments_runs_oms_serve_alone(tmp_path):
    repo = _fake_repo(tmp_path)
    result = subprocess.run(["bash", str(repo / "scripts" / "serve.sh")], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [str(repo), "serve"]


# -- a clean stop with a client that ignores the Logout -----------------------------------------

def test_a_clean_stop_stores_the_cancel_on_disconnect_reports_of_a_client_ignoring_the_logout(tmp_path):
    """A cancel-on-disconnect session whose client does not answer the shutdown's Logout: the
    stop disconnects it, and its cancels are journaled when the connection is lost. With
    uvloop that callback ran after the FIX stores had been closed: "reports for its next
    logon not stored yet ([Errno 9] Bad file descriptor)" at a clean stop, and the next start
    warned of reports "journaled before a crash"."""
    from tests.fixclient import FixClient, field
    from tests.server_process import ServerProcess
    from tests.test_fix_session import write_test_config
    config = write_test_config(tmp_path / "oms.toml", sessions={"COD": "cancel_on_disconnect = true"})
    server = ServerProcess(tmp_path / "data", config=config).start()
    client = None
    try:
        client = FixClient("127.0.0.1", server.fix_port, "COD", begin_string="FIX.4.4", timeout=5.0)
        client.logon(heartbeat=30, reset=True)
        client.new_order("COD1", "TSLA", "1", 10, "249.00")
        assert field(client.expect("8"), 39) == "0"
        assert server.stop() == 0                 # the client never answers the Logout
    finally:
        if client is not None:
            client.close()
        server.kill()
    log = "".join(server.stderr_lines)
    assert "not stored" not in log and "Bad file descriptor" not in log, log[-3000:]
    again = ServerProcess(tmp_path / "data", config=config).start()
    try:
        assert again.stop() == 0
    finally:
        again.kill()
    log = "".join(again.stderr_lines)
    assert "before a crash" not in log, log[-3000:]


def test_setup_sh_makes_a_half_made_venv_again(tmp_path):
    """A first `python3 -m venv` that failed half way (Debian without python3-venv: no
    ensurepip) leaves .venv/bin/python without pip; setup.sh took any .venv/bin/python as made,
    so every later run failed in pip until .venv was deleted by hand."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    (repo / "scripts" / "setup.sh").write_text((REPO / "scripts" / "setup.sh").read_text())
    (repo / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    half = repo / ".venv" / "bin" / "python"
    half.parent.mkdir(parents=True)
    half.write_text("#!/usr/bin/env bash\necho 'No module named pip' >&2\nexit 1\n")
    half.chmod(0o755)
    calls = tmp_path / "calls"
    # a python whose venv makes a python that logs what pip is asked
    fake = tmp_path / "python3"
    fake.write_text(f"""#!/usr/bin/env bash
[[ "$1 $2" == "-m venv" ]] || exit 3
mkdir -p "$3/bin"
printf '#!/usr/bin/env bash\\necho "$*" >> {calls}\\n' > "$3/bin/python"
chmod +x "$3/bin/python"
""")
    fake.chmod(0o755)
    result = subprocess.run(["bash", str(repo / "scripts" / "setup.sh")], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "PYTHON": str(fake)})
    assert result.returncode == 0, result.stderr
    assert "No module named pip" not in half.read_text()          # made again by the venv
    assert calls.read_text().splitlines() == ["-m pip install --quiet --upgrade pip",
                                              "-m pip install --quiet -e .[dev,plot]"]
