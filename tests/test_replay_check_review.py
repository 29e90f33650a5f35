"""Review of replay_check (engine/replay_check.py) against journals the live server writes."""
from __future__ import annotations

from oms_trading.audit import schema as ev
from oms_trading.audit.journal import Journal, iter_records
from oms_trading.server import OmsServer
from tests.test_engine_common import S2, MemJournal, make_engine, new


def _strip(r):
    return {k: v for k, v in r.items() if k not in ("seq", "prev_hash", "hash")}


def _start(d):
    """What a server start does with the journal in ``d``: open it, replay it into an engine."""
    j = Journal(d, fsync="batch")
    j.open()
    eng = make_engine(journal=j)
    eng.replay(iter_records(d))
    return j, eng


def test_a_torn_tail_the_server_wrote_past_is_not_a_difference_at_later_starts(tmp_path):
    """kill -9 (or power loss) cut the journal at a frame boundary inside the events of its last
    command. The next start finds a torn tail (fine), opens the journal and goes on writing after
    it. Every later start must not report that old cut as a difference: the journal is a
    legitimate one, written by the server itself."""
    mem = MemJournal()
    eng = make_engine(journal=mem)
    eng.process(new("S1", "2", 10, "100.00", session=S2, ts=1))
    eng.process(new("S2", "2", 10, "100.00", session=S2, ts=2))
    events = eng.process(new("B1", "1", 20, "100.00", ts=3))       # accepted, 2 fills x 2 sides
    assert len(events) >= 4
    cut = len(mem.records) - len(events) + 2                        # the command and its first event only
    d = tmp_path / "journal"
    j = Journal(d, fsync="batch")
    j.open()
    for r in mem.records[:cut]:
        j.append(_strip(r))
    j.flush()
    j.close()
    # start 1: the torn tail is found, not a difference; the server goes on writing
    j, eng = _start(d)
    assert eng.replay_check.torn_tail and eng.replay_check.differences == 0
    OmsServer._report_replay(eng.replay_check, eng)       # what `oms serve` does at start-up
    eng.process(new("B2", "1", 5, "99.00", ts=4))
    eng.flush()
    j.close()
    # start 2: the same journal, nothing changed in config or code
    j, eng = _start(d)
    j.close()
    assert eng.replay_check.differences == 0, eng.replay_check.first.describe()
    assert not eng.replay_check.torn_tail
    # the mark forgives only the command it names: a difference elsewhere is still one
    records = list(iter_records(d))
    mark = next(r for r in records if r["type"] == "journal_torn_tail")
    fresh = make_engine(journal=MemJournal())
    fresh.replay([dict(r, command_seq=1) if r is mark else r for r in records])
    assert fresh.replay_check.differences >= 1


def test_unauthenticated_health_names_the_difference_without_trade_values():
    """/health needs no token; the first difference's values (accounts, prices, limits,
    ClOrdIDs, reject texts) go to the server log, /health says where and which keys."""
    import asyncio
    import json
    from types import SimpleNamespace

    from oms_trading.web.app import SERVER_KEY, health
    from tests.test_engine_common import make_config
    journal = MemJournal()
    eng = make_engine(journal=journal)
    eng.process(new("SECRET-CL-1", "1", 20, "50.00", symbol="VOD", ts=1, account="A1"))
    fresh = make_engine(journal=MemJournal(), config=make_config(
        '\n[risk.accounts.A1]\nmax_order_qty = 5\n'))
    fresh.replay(journal.records)
    assert fresh.replay_check.differences
    server = SimpleNamespace(gateway=SimpleNamespace(journal_failed=None, sessions={}, journal_ok=lambda: True),
                             journal=SimpleNamespace(last_seq=2),
                             projection=SimpleNamespace(lag=lambda: 0, running=lambda: True, restarts=0),
                             engine=fresh)
    request = SimpleNamespace(app={SERVER_KEY: server})
    body = json.loads(asyncio.run(health(request)).body)
    text = body["replay_first_difference"]
    assert "order_accepted" in text and "order_rejected" in text, text
    assert "SECRET-CL-1" not in json.dumps(body) and "'5'" not in text and "max_order_qty" not in text, text


def test_a_torn_tail_mark_the_journal_refuses_does_not_stop_the_start(caplog):
    """The journal full at start-up: the mark cannot be written; the server still starts and
    says what that means (it is not an error worth refusing to trade over)."""
    import logging
    from types import SimpleNamespace

    from oms_trading.engine.replay_check import ReplayCheck

    check = ReplayCheck()
    check.command(7, [{"type": "order_accepted"}, {"type": "order_filled"}])
    check.record({"type": "order_accepted", "seq": 8})
    check.finish()
    assert check.torn_tail and check.torn_command_seq == 7

    def full():
        raise OSError(28, "No space left on device")
    recorded = []
    engine = SimpleNamespace(record=recorded.append, flush=full)
    with caplog.at_level(logging.ERROR, logger="oms"):
        OmsServer._report_replay(check, engine)
    assert recorded and recorded[0]["type"] == "journal_torn_tail" and recorded[0]["command_seq"] == 7
    assert "could not journal the torn-tail mark" in caplog.text and "command seq 7" in caplog.text
