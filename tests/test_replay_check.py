"""The start-up replay compares the events it makes with those journaled then
(engine/replay_check.py): a journal replays as journaled; a configuration change that alters
past decisions, or a record missing or added, is found and named; a torn tail is not a
difference."""
from __future__ import annotations

import json
import re
import urllib.request

import pytest

from oms_trading.audit import schema as ev
from oms_trading.engine.replay_check import NOT_FROM_COMMANDS
from oms_trading.engine.replay_check import ReplayCheck, same_event
from tests.fixclient import field
from tests.server_process import ServerProcess
from tests.test_engine_common import (
    S1, S2, MemJournal, cancel, kill, limit, make_config, make_engine, new, replace,
)
from tests.test_fix_session import logged_on, write_test_config


def _trade(journal: MemJournal, config=None, numba: bool = False):
    eng = make_engine(journal=journal, config=config, numba=numba)
    eng.process(new("B1", "1", 100, "100.00", ts=1))
    eng.process(new("S1", "2", 40, "100.00", session=S2, ts=2))          # partial fill
    eng.process(replace("B2", "B1", 80, "100.01", ts=3))
    eng.process(new("V1", "1", 20, "50.00", symbol="VOD", ts=4))         # lot size 10: accepted
    eng.process(new("BIG", "1", 5000, ts=5))                              # rejected: max_order_qty
    eng.process(cancel("C1", "B2", ts=6))
    eng.process(limit("account:A1", "max_order_qty", "500", ts=7))
    eng.process(kill("account:A2", ts=8))
    eng.process(new("S2", "2", 10, session=S2, ts=9))                     # rejected: kill switch
    eng.record({"type": ev.SESSION_LOGON, "ts": 10, "session": S1, "text": "logon"})
    eng.process(new("B3", "1", 10, "99.00", ts=11))
    return eng


@pytest.mark.parametrize("numba", [False, True])
def test_a_journal_replays_as_it_was_journaled(numba):
    journal = MemJournal()
    _trade(journal, numba=numba)
    fresh = make_engine(journal=MemJournal(), numba=numba)
    fresh.replay(journal.records)
    check = fresh.replay_check
    events = [r for r in journal.records if r["type"] not in ev.COMMAND_TYPES and r["type"] not in NOT_FROM_COMMANDS]
    assert check.differences == 0 and check.first is None and not check.torn_tail
    assert check.events_checked == len(events) > 10


def test_a_config_change_that_alters_a_past_decision_is_named():
    journal = MemJournal()
    _trade(journal)
    cfg = make_config()
    vod = next(i for i in cfg.instruments if i.symbol == "VOD")
    object.__setattr__(vod, "lot_size", 100)     # the file's lot size raised since (frozen or not)
    fresh = make_engine(journal=MemJournal(), config=cfg)
    fresh.replay(journal.records)
    check = fresh.replay_check
    v1 = next(r for r in journal.records if r["type"] == ev.ORDER_ACCEPTED and r["cl_ord_id"] == "V1")
    assert check.differences >= 1 and check.first.seq == v1["seq"]
    text = check.first.describe()
    assert f"seq {v1['seq']}" in text and "type 'order_accepted' -> 'order_rejected'" in text, text
    assert "V1" not in {o.cl_ord_id for o in fresh.orders.values()}


def test_a_missing_or_added_event_is_a_difference_but_a_torn_tail_is_not():
    journal = MemJournal()
    _trade(journal)
    records = journal.records
    # the journal cut inside the last command's events (a crash mid-write): not a difference
    fresh = make_engine(journal=MemJournal())
    fresh.replay(records[:-1])
    assert fresh.replay_check.differences == 0 and fresh.replay_check.torn_tail
    # an event missing in the middle: named at its command
    accepted = next(i for i, r in enumerate(records) if r["type"] == ev.ORDER_ACCEPTED and r["cl_ord_id"] == "B1")
    fresh = make_engine(journal=MemJournal())
    fresh.replay(records[:accepted] + records[accepted + 1:])
    first = fresh.replay_check.first
    assert fresh.replay_check.differences >= 1 and first.command_seq == records[accepted - 1]["seq"]
    # an event the commands do not make
    forged = dict(records[accepted], seq=10_000, cl_ord_id="FORGED")
    fresh = make_engine(journal=MemJournal())
    fresh.replay(records[:accepted + 1] + [forged] + records[accepted + 1:])
    assert fresh.replay_check.differences >= 1 and fresh.replay_check.first.seq == 10_000
    assert "not made by the replay" in fresh.replay_check.first.describe()


def test_same_event_ignores_only_the_journal_keys():
    def e(**kw):
        return {"type": "order_accepted", "order_id": 1, "text": None, **kw}
    assert same_event(e(seq=3, prev_hash="0" * 64, hash="1" * 64), e())
    assert same_event(e(seq=3), e())                      # an in-memory journal adds seq only
    assert not same_event(e(seq=3), e(text="x"))
    assert not same_event(e(seq=3), e(extra=1))
    assert not same_event({"type": "order_accepted", "order_id": 1, "seq": 3}, e())   # a key missing
    assert not same_event(e(seq=3, order_id=2), e())
    check = ReplayCheck()
    check.command(1, [e()])
    check.record(e(seq=2))
    check.finish()
    assert check.differences == 0 and check.events_checked == 1


def _health(proc) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{proc.http_port}/health", timeout=10) as r:
        return json.loads(r.read())


def test_serve_reports_a_journal_that_replays_differently(tmp_path):
    config = write_test_config(tmp_path / "oms.toml", sessions={"RPL": ""})
    proc = ServerProcess(tmp_path / "data", config=config).start()
    try:
        client = logged_on(proc, "RPL")
        client.new_order("V1", "VOD.L", "1", 200, "70.00")
        er = client.expect("8")
        assert field(er, 39) == "0", field(er, 58)
        client.close()
        assert "replay_differences" not in _health(proc)
    finally:
        proc.stop()
    # the lot size of VOD.L raised in the file: the accepted order of 200 would be refused now
    text = config.read_text(encoding="utf-8")
    text = re.sub(r'(symbol = "VOD\.L"(?:\n(?!\[).*)*?\nlot_size = )100', r"\g<1>1000", text)
    assert "lot_size = 1000" in text
    config.write_text(text, encoding="utf-8")
    proc = ServerProcess(tmp_path / "data", config=config).start()
    try:
        health = _health(proc)
        assert health["replay_differences"] >= 1 and "order_rejected" in health["replay_first_difference"]
        log = "".join(proc.stderr_lines)
        assert "replays differently from how it was journaled" in log
    finally:
        proc.stop()
