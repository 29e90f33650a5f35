"""Limits set in the config file are audited: a start whose configured limits differ from the
last ones journaled writes a `limits_loaded` record (audit/config_limits.py), and
`oms audit limits --at T` reads the configured layers in force at T from those records rather
than from today's file."""
from __future__ import annotations

import json
import subprocess
import sys

from oms_trading.audit import schema as ev
from oms_trading.audit.config_limits import describe_changes, limits_loaded_record
from oms_trading.audit.journal import iter_records
from oms_trading.audit.paths import journal_dir
from oms_trading.config import demo_config_text
from tests.server_process import ServerProcess


def test_record_only_when_the_layers_change():
    layers = {"default": {"max_order_qty": "100"}, "account:A1": {"credit_limit": "5"}}
    first = limits_loaded_record(layers, None, "oms.toml", 7)
    assert first["type"] == ev.LIMITS_LOADED and first["user"] == "config" and first["old_value"] is None
    assert first["text"] == "first configuration journaled" and "oms.toml" in first["reason"]
    journaled = {**first, "seq": 1}
    # the same limits, keys in another order: nothing new to say
    assert limits_loaded_record({"account:A1": {"credit_limit": "5"}, "default": {"max_order_qty": "100"}},
                                journaled, "oms.toml", 8) is None
    changed = {"default": {"max_order_qty": "200"}, "instrument:X": {"restricted": "true"}}
    second = limits_loaded_record(changed, journaled, "oms.toml", 9)
    assert second["old_value"] == first["new_value"]
    assert second["text"] == ("account:A1 credit_limit 5 -> (none); default max_order_qty 100 -> 200; "
                              "instrument:X restricted (none) -> true")
    assert describe_changes(layers, layers) == ""


def _config(path, max_qty: int):
    text = demo_config_text().replace("max_order_qty = 100000 ", f"max_order_qty = {max_qty} ", 1)
    assert f"max_order_qty = {max_qty}" in text
    path.write_text(text, encoding="utf-8")
    return path


def _loaded(data) -> list[dict]:
    return [r for r in iter_records(journal_dir(data)) if r["type"] == ev.LIMITS_LOADED]


def _limits(data, config, at: int) -> dict:
    out = subprocess.run([sys.executable, "-m", "oms_trading.cli", "audit", "limits", "--data-dir", str(data),
                          "--config", str(config), "--account", "ACC1", "--at", str(at), "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return {(r["limit"], r["scope"]): r for r in json.loads(out.stdout)}


def test_a_changed_config_file_is_journaled_and_read_back_at_its_time(tmp_path):
    data = tmp_path / "data"
    first_cfg = _config(tmp_path / "first.toml", 100000)
    for _ in range(2):        # the second start with the same file journals nothing new
        server = ServerProcess(data, config=first_cfg).start()
        assert server.stop() == 0
    records = _loaded(data)
    assert len(records) == 1 and records[0]["text"] == "first configuration journaled"
    second_cfg = _config(tmp_path / "second.toml", 2500)
    server = ServerProcess(data, config=second_cfg).start()
    assert server.stop() == 0
    records = _loaded(data)
    assert len(records) == 2
    first, second = records
    assert second["text"] == "default max_order_qty 100000 -> 2500" and second["user"] == "config"
    assert "second.toml" in second["reason"]
    # asked with today's file, the moment between the two starts still shows the first file's value
    between = _limits(data, second_cfg, second["ts"] - 1)
    row = between[("max_order_qty", "default")]
    assert (row["value"], row["source"], row["set_by"], row["seq"]) == ("100000", "config", "config", first["seq"])
    after = _limits(data, second_cfg, second["ts"])
    row = after[("max_order_qty", "default")]
    assert (row["value"], row["seq"], row["reason"]) == ("2500", second["seq"], second["reason"])


def _start(cfg, journal, records=None):
    """What `oms serve` does at a start, in process: replay, then journal the file's limits
    when they differ from the last ones journaled, and apply them."""
    from oms_trading.audit.queries import baseline_from_config
    from tests.test_engine_common import make_engine
    eng = make_engine(config=cfg, journal=journal)
    eng.replay(records or [])
    record = limits_loaded_record(baseline_from_config(cfg), eng.limits_loaded, "oms.toml", 10**9)
    if record is not None:
        eng.apply_limits_loaded(eng.record(record))
    return eng


def test_replay_decides_past_orders_under_the_limits_of_the_file_that_ran_then():
    """Yesterday's file allowed 1000 a order; today's allows 500. The GTC order of 800 accepted
    yesterday must come back from the journal (it did not: the replay refused it under today's
    file and the client's working order vanished); today's limit holds for new orders; the
    desk's own value for an account wins over either file; a temporary desk change on a
    configured key gives it back to the file in force when it expires."""
    from pathlib import Path

    from oms_trading.config import parse_config
    from tests.test_engine_common import CONFIG_TOML, MemJournal, limit, make_config, new, reports
    yesterday_cfg = make_config()                                  # default max_order_qty 1000
    assert "max_order_qty = 1000\n" in CONFIG_TOML
    today_cfg = parse_config(CONFIG_TOML.replace("max_order_qty = 1000\n", "max_order_qty = 500\n", 1),
                             "<test>", Path("."))
    journal = MemJournal()
    live = _start(yesterday_cfg, journal)
    assert reports(live.process(new("BIG", "1", 800, "99.00")))[0]["type"] == ev.ORDER_ACCEPTED
    live.process(limit("account:A2", "max_order_qty", "3000"))    # the desk's, for A2
    live.process(limit("default", "price_collar_pct", "50", ts=2, expires_ts=100))   # temporary
    today = _start(today_cfg, journal, list(journal.records))
    assert today.replay_check.differences == 0, today.replay_check.first.describe()
    assert [o.cl_ord_id for o in today.open_orders()] == ["BIG"]
    loaded = [r for r in journal.records if r["type"] == ev.LIMITS_LOADED]
    assert [r["text"] for r in loaded] == ["first configuration journaled", "default max_order_qty 1000 -> 500"]
    assert today.risk.value("max_order_qty", "A1") == 500
    assert today.risk.value("max_order_qty", "A2") == 3000          # the desk's change still wins
    rej = reports(today.process(new("BIG2", "1", 800, "99.00", ts=3)))[0]
    assert rej["type"] == ev.ORDER_REJECTED and rej["rule"] == "max_order_qty"
    # the temporary collar expires back to the configured value in force (both files: 10)
    today.process({"type": ev.CLOCK, "ts": 200, "end_of_day": 0})
    assert str(today.risk.value("price_collar_pct")) == "10"
    # and all of it replays as it ran
    again = _start(today_cfg, MemJournal(), list(journal.records))
    assert again.replay_check.differences == 0, again.replay_check.first.describe()
    assert again.risk.layers == today.risk.layers and again.limits_loaded["seq"] == loaded[-1]["seq"]


def test_a_start_whose_limits_cannot_be_journaled_does_not_go_on(tmp_path, monkeypatch):
    """Reviewed: the journal refusing the limits_loaded record (disk full) at start left the
    replay's limits (the previous file's) deciding orders with nothing refusing them. The
    start now stops with one clear error instead."""
    import os
    import types

    import pytest

    from oms_trading.audit import journal as journal_mod
    from oms_trading.audit.journal import Journal, JournalError
    from oms_trading.config import parse_config
    from oms_trading.engine.engine import Engine
    from oms_trading.server import OmsServer, make_book_factory, make_risk

    def config(qty: int):
        text = demo_config_text().replace("max_order_qty = 100000 ", f"max_order_qty = {qty} ", 1)
        return parse_config(text, f"oms-{qty}.toml", tmp_path)

    def start(cfg):
        journal = Journal(tmp_path / "journal", fsync="os")
        engine = Engine(cfg, journal, make_book_factory("numba"), risk=make_risk(cfg))
        engine.replay(iter_records(tmp_path / "journal"))
        server = types.SimpleNamespace(risk=engine.risk, engine=engine, config=cfg)
        return journal, engine, server

    journal, _, server = start(config(100000))
    OmsServer._journal_config_limits(server)
    journal.close()
    journal, engine, server = start(config(10))

    def disk_full(fd, data):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(journal_mod.os, "write", disk_full)
    with pytest.raises(JournalError, match="cannot journal the limits configured in oms-10.toml"):
        OmsServer._journal_config_limits(server)
    monkeypatch.undo()
    journal.close()
