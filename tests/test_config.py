"""Configuration: the demo config, CSV reference data and clear errors naming file and key."""
from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from oms_trading.config import ConfigError, demo_config_text, load_config, parse_config


def test_demo_config_has_what_the_contract_promises():
    cfg = load_config()
    assert cfg.fix_port == 9878 and cfg.http_port == 8080 and cfg.host == "127.0.0.1"
    assert str(cfg.data_dir) == "oms-data"
    assert len(cfg.instruments) >= 3 and all(i.reference_price for i in cfg.instruments)
    assert len(cfg.accounts) >= 3
    targets = {(s.target_comp_id, s.sender_comp_id, s.begin_string) for s in cfg.sessions}
    assert ("CLIENT1", "OMS", "FIX.4.4") in targets and ("BENCH", "OMS", "FIX.4.4") in targets
    assert any(t[0] == "CLIENT2" and t[2] == "FIX.4.2" for t in targets)
    assert {u.role for u in cfg.users} == {"risk", "compliance", "viewer"}
    assert cfg.risk_defaults["max_order_qty"] > 0 and cfg.risk_defaults["max_order_notional"] > 0
    assert cfg.risk_defaults["price_collar_pct"] == Decimal("10")


def test_csv_reference_data(tmp_path: Path):
    (tmp_path / "instruments.csv").write_text(
        "symbol,tick_size,lot_size,reference_price,currency\nNEW1,0.05,10,12.35,EUR\nNEW2,1,1,,\n")
    (tmp_path / "accounts.csv").write_text("name,description,stp_mode\nFIRM9,From CSV,cancel_incoming\n")
    text = demo_config_text().replace('# instruments_csv = "instruments.csv"', 'instruments_csv = "instruments.csv"')
    text = text.replace('# accounts_csv = "accounts.csv"', 'accounts_csv = "accounts.csv"')
    text = text.replace('GBP = "1.27"', 'GBP = "1.27"\nEUR = "1.08"')     # NEW1 is in EUR
    path = tmp_path / "oms.toml"
    path.write_text(text)
    cfg = load_config(path)
    new1 = cfg.instrument("NEW1")
    assert new1.tick_size == Decimal("0.05") and new1.lot_size == 10 and new1.reference_price == Decimal("12.35")
    assert new1.currency == "EUR" and cfg.instrument("NEW2").reference_price is None
    assert any(a.name == "FIRM9" and a.stp_mode == "cancel_incoming" for a in cfg.accounts)
    assert [i.index for i in cfg.instruments] == list(range(len(cfg.instruments)))


def _assert_config_error(edit: tuple[str, str], key: str, problem: str) -> None:
    """The demo config with ``edit`` (old, new) applied fails, naming the file, the key and the problem."""
    old, new = edit
    text = demo_config_text()
    assert old in text, old
    with pytest.raises(ConfigError) as info:
        parse_config(text.replace(old, new, 1), "my.toml", Path("."))
    message = str(info.value)
    assert message.startswith("my.toml: ") and key in message and problem in message, message


@pytest.mark.parametrize("edit,key,problem", [
    (('fix_port = 9878', 'fix_port = "x"'), "server.fix_port", "whole number"),
    (('fix_port = 9878', 'fix_port = 70000'), "server.fix_port", "TCP port"),
    (('tick_size = "0.01"\nlot_size = 1\nreference_price = "190.00"',
      'tick_size = 0.01\nlot_size = 1\nreference_price = "190.00"'), "instruments[0].tick_size", "floats"),
    (('reference_price = "190.00"', 'reference_price = "190.005"'), "instruments[0].reference_price", "tick"),
    (('begin_string = "FIX.4.4"          #', 'begin_string = "FIX.5.0"          #'),
     "fix.sessions[0].begin_string", "FIX.4.2 or FIX.4.4"),
    (('stp_mode = "cancel_both"', 'stp_mode = "sometimes"'), "accounts[3].stp_mode", "must be one of"),
    (('max_order_qty = 100000 ', 'max_order_qty = -5 '), "risk.defaults.max_order_qty", ">= 0"),
    (('max_order_qty = 100000 ', 'max_ordr_qty = 5 '), "risk.defaults.max_ordr_qty", "unknown limit"),
    # one grammar for every numeric limit, as the HTTP API takes it: ASCII digits, no "_" or exponent
    (('max_order_notional = "5000000"', 'max_order_notional = "5_000_000"'),
     "risk.defaults.max_order_notional", "decimal text"),
    (('max_order_notional = "5000000"', 'max_order_notional = "5e6"'),
     "risk.defaults.max_order_notional", "decimal text"),
    (('max_order_notional = "5000000"', 'max_order_notional = "\u0665000000"'),
     "risk.defaults.max_order_notional", "decimal text"),
    (('max_order_notional = "5000000"', 'max_order_notional = 5000000.0'),
     "risk.defaults.max_order_notional", "decimal text"),
    (('price_collar_pct = "5"', 'price_collar_pct = "5E0"'), "risk.instruments.TSLA.price_collar_pct", "decimal text"),
    (('credit_limit = "10000000"', 'credit_limit = "-1"'), "risk.accounts.ACC2.credit_limit", "decimal text"),
    (('max_order_qty = 100000 ', 'max_order_qty = "\u0663" '), "risk.defaults.max_order_qty", "whole number"),
    (('max_order_qty = 100000 ', 'max_order_qty = "1e3" '), "risk.defaults.max_order_qty", "whole number"),
    (('[risk.accounts.ACC2]', '[risk.accounts.NOBODY]'), "risk.accounts.NOBODY", "no such account"),
    (('fsync = "interval"', 'fsync = "sometimes"'), "journal.fsync", "interval"),
    (('end_of_day = "21:00"', 'end_of_day = "25:00"'), "trading.end_of_day", "HH:MM"),
    (('end_of_day = "21:00"', 'end_of_day = "21:00:60"'), "trading.end_of_day", "HH:MM:SS"),
    (('# daily_reset = "21:05"', 'daily_reset = "21:5"'), "fix.daily_reset", "HH:MM"),
    (('username = "CLIENT1"', 'username = 5'), "fix.sessions[0].username", "string"),
    (('account = "ACC1"', 'account = "ZZZ"'), "fix.sessions[0].account", "no such account"),
    (('role = "viewer"', 'role = "admin"'), "http.users[3].role", "must be one of"),
    (('demo_token = "demo-risk1-token"', 'demo_token = "other"'), "http.users[0].demo_token", "does not match"),
    (('token_sha256 = "da72fad47287700b038b5a4ccb98bc95d2439a6c529a496318353ef7d3d5c69b"\ndemo_token = "demo-risk2-token"',
      'token_sha256 = "91894f5ee1864bc923c1f24edf5e021db104a2d4df5a7d99511be0fb1bee02c4"'),
     "http.users[1].token_sha256", "same token as user 'risk1'"),
])
def test_bad_config_names_file_key_and_problem(edit, key, problem):
    _assert_config_error(edit, key, problem)


def test_times_of_day_take_seconds_and_username_is_read():
    text = demo_config_text().replace('# daily_reset = "21:05"', 'daily_reset = "21:05:30"', 1)
    cfg = parse_config(text, "my.toml", Path("."))
    assert cfg.daily_reset == "21:05:30"
    assert cfg.sessions[0].username == "CLIENT1" and cfg.sessions[1].username is None


def test_syntax_error_and_unknown_section():
    with pytest.raises(ConfigError, match="my.toml: \\(syntax\\)"):
        parse_config("[server\n", "my.toml", Path("."))
    with pytest.raises(ConfigError, match="my.toml: serverz: unknown key"):
        parse_config(demo_config_text() + "\n[serverz]\n", "my.toml", Path("."))


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml")


def test_oms_init_writes_the_demo_config(tmp_path):
    target = tmp_path / "oms.toml"
    result = subprocess.run([sys.executable, "-m", "oms_trading.cli", "init", str(target)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert target.read_text() == demo_config_text()
    assert load_config(target).sessions
    again = subprocess.run([sys.executable, "-m", "oms_trading.cli", "init", str(target)],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "exists" in again.stderr


@pytest.mark.parametrize("edit,key,problem", [
    (('restricted = []', 'restricted = [["TSLA"]]'), "risk.restricted", "no such instrument"),
    (('restricted = []', 'restricted = [{ symbol = "TSLA" }]'), "risk.restricted", "no such instrument"),
    (('# restricted lists per account: [risk.restricted_by_account] ACC1 = ["TSLA"]',
      '[risk.restricted_by_account]\nACC1 = [["TSLA"]]'), "risk.restricted_by_account.ACC1", "known symbols"),
    (('reference_price = "190.00"', 'reference_price = "1000000000000000000000000000000"'),
     "instruments[0].reference_price", "tick"),
    (('max_body_kb = 64', 'max_body_kb = 0'), "http.max_body_kb", ">= 1"),
])
def test_a_value_of_the_wrong_shape_is_a_config_error_not_a_crash(edit, key, problem):
    """Found by putting values of every type in every key: these raised TypeError or
    decimal.InvalidOperation (a traceback from `oms serve`), or were taken silently."""
    _assert_config_error(edit, key, problem)


def _with_session(sender: str, target: str) -> str:
    return demo_config_text().replace("[http]", f'[[fix.sessions]]\nsender_comp_id = "{sender}"\n'
                                      f'target_comp_id = "{target}"\nbegin_string = "FIX.4.4"\n\n[http]', 1)


def test_two_sessions_that_would_share_a_message_store_folder_are_refused():
    # DATA/fix/<TARGET>-<SENDER>: "CLIENT1-X" + "OMS" and "CLIENT1" + "X-OMS" are one folder,
    # where two stores would interleave their frames and sequence numbers
    text = _with_session("OMS", "CLIENT1-X").replace("[http]", '[[fix.sessions]]\nsender_comp_id = "X-OMS"\n'
                                                     'target_comp_id = "CLIENT1"\nbegin_string = "FIX.4.4"\n\n[http]', 1)
    with pytest.raises(ConfigError) as info:
        parse_config(text, "my.toml", Path("."))
    assert "fix.sessions[5]" in str(info.value) and "CLIENT1-X-OMS" in str(info.value)


@pytest.mark.parametrize("sender,target", [("OMS", "../../x"), ("a/b", "CLIENT9"), ("OMS", "CL\\u0001X")])
def test_a_comp_id_that_cannot_name_a_store_folder_or_a_fix_field_is_refused(sender, target):
    with pytest.raises(ConfigError) as info:
        parse_config(_with_session(sender, target), "my.toml", Path("."))
    assert "fix.sessions[4]" in str(info.value) and "comp_id" in str(info.value)


def _with_tls(tmp_path: Path) -> Path:
    text = demo_config_text().replace('# tls_cert = "cert.pem"', 'tls_cert = "cert.pem"', 1)
    text = text.replace('# tls_key = "key.pem"', 'tls_key = "key.pem"', 1)
    path = tmp_path / "oms.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("present,key", [((), "fix.tls_cert"), (("cert.pem",), "fix.tls_key")])
def test_a_missing_tls_file_names_its_key_and_path(tmp_path, present, key):
    """It was `oms serve: [Errno 2] No such file or directory` from ssl.load_cert_chain, after
    the journal replay and the kernels' warm-up: no file, no key."""
    path = _with_tls(tmp_path)
    for name in present:
        (tmp_path / name).write_text("x")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    missing = "key.pem" if present else "cert.pem"
    assert key in message and str(tmp_path / missing) in message and "cannot read" in message, message


def test_tls_files_that_are_not_a_certificate_and_key_are_a_config_error(tmp_path):
    """It was `oms serve: [SSL] PEM lib (_ssl.c:3905)`."""
    path = _with_tls(tmp_path)
    (tmp_path / "cert.pem").write_text("not a certificate\n")
    (tmp_path / "key.pem").write_text("not a key\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "fix.tls_cert" in message and str(tmp_path / "cert.pem") in message and "PEM" in message, message
