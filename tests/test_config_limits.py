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
