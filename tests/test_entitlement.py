"""Per-session account entitlement: `accounts = [...]` on a [[fix.sessions]] entry limits the
accounts (tag 1) that session may trade; without it, any configured account (as before)."""
from __future__ import annotations

from pathlib import Path

import pytest

from oms_trading.audit import schema as ev
from oms_trading.config import ConfigError, demo_config_text, parse_config
from tests.fixclient import field
from tests.server_process import ServerProcess
from tests.test_engine_common import CONFIG_TOML, S1, S2, MemJournal, cancel, make_config, make_engine, new, replace, reports
from tests.test_fix_session import logged_on, write_test_config

S3 = "S3->OMS"
# S3 may trade A3 (its default) and A1, not A2; S1 and S2 have no list: any account
RESTRICTED = """
[[fix.sessions]]
sender_comp_id = "OMS"
target_comp_id = "S3"
begin_string = "FIX.4.4"
account = "A3"
accounts = ["A3", "A1"]
"""


# -- config --------------------------------------------------------------------------------------

def test_config_reads_the_list_and_its_absence():
    cfg = make_config(RESTRICTED)
    by_key = {s.key: s for s in cfg.sessions}
    assert by_key[S3].accounts == ("A3", "A1")
    assert by_key[S1].accounts is None          # no list: any configured account


def test_the_demo_configs_commented_example_loads():
    text = demo_config_text()
    assert all(s.accounts is None for s in parse_config(text, "demo.toml", Path(".")).sessions)
    text = text.replace('# accounts = ["ACC1", "HOUSE"]', 'accounts = ["ACC1", "HOUSE"]', 1)
    assert parse_config(text, "demo.toml", Path(".")).sessions[0].accounts == ("ACC1", "HOUSE")


@pytest.mark.parametrize("line,problem", [
    ('accounts = ["A3", "NOBODY"]', "no such account 'NOBODY'"),
    ('accounts = ["A1"]', "default account 'A3' must be in accounts"),
    ("accounts = []", "non-empty list"),
    ('accounts = "A3"', "non-empty list"),
    ("accounts = [3]", "non-empty list"),
])
def test_bad_accounts_list_names_the_key(line, problem):
    text = RESTRICTED.replace('accounts = ["A3", "A1"]', line)
    with pytest.raises(ConfigError) as info:
        parse_config(CONFIG_TOML + text, "my.toml", Path("."))
    message = str(info.value)
    assert message.startswith("my.toml: fix.sessions[2].accounts: ") and problem in message, message


# -- engine --------------------------------------------------------------------------------------

def snapshot(eng) -> tuple:
    return (sorted(eng.orders), eng.next_order_id, eng.next_exec_id, eng.positions(), eng.exposures(),
            eng.book_depth("AAPL"), eng.by_cl_ord_id)


@pytest.mark.parametrize("risk", [True, False])
def test_entitled_account_trades_and_another_is_rejected_changing_nothing(risk):
    journal = MemJournal()
    cfg = make_config(RESTRICTED)
    eng = make_engine(risk=risk, config=cfg, journal=journal)
    assert reports(eng.process(new("OK1", "1", 10, "99.00", session=S3, account="A1")))[0]["type"] == ev.ORDER_ACCEPTED
    assert reports(eng.process(new("OK3", "1", 10, "99.00", session=S3)))[0]["type"] == ev.ORDER_ACCEPTED
    before = snapshot(eng)
    out = reports(eng.process(new("BAD", "1", 10, "99.00", session=S3, account="A2")))
    assert len(out) == 1
    rej = out[0]
    assert rej["type"] == ev.ORDER_REJECTED and rej["ord_status"] == "8" and rej["order_id"] is None
    assert rej["rej_reason"] == 0 and rej["rule"] == "account_entitlement"
    assert rej["text"] == "Account A2 is not permitted on session S3->OMS"
    # the audit keeps what the session was entitled to at the time, and what it asked for
    assert rej["account"] == "A2" and rej["limit_value"] == "A1,A3" and rej["actual_value"] == "A2"
    # nothing but the audit changed (the exec id counter moves for every report)
    after = snapshot(eng)
    assert after[:2] == before[:2] and after[3:] == before[3:] and after[2] == before[2] + 1
    assert not any(p["account"] == "A2" for p in eng.positions())
    # a session without a list still trades any configured account, as before
    assert reports(eng.process(new("ANY", "1", 10, "99.00", session=S1, account="A2")))[0]["type"] == ev.ORDER_ACCEPTED
    # the same journal replayed through a fresh engine gives the same state
    replayed = make_engine(risk=risk, config=cfg, journal=MemJournal())
    replayed.replay(journal.records)
    assert snapshot(replayed) == snapshot(eng)
    assert sorted(o.cl_ord_id for o in replayed.orders.values()) == ["ANY", "OK1", "OK3"]


def test_an_unknown_account_on_a_restricted_session_is_not_told_apart():
    """A restricted session learns nothing about which other accounts exist."""
    eng = make_engine(config=make_config(RESTRICTED))
    rej = reports(eng.process(new("X", "1", 10, "99.00", session=S3, account="NOBODY")))[0]
    assert rej["rule"] == "account_entitlement" and rej["rej_reason"] == 0
    # an order without any account (and no default) is still "unknown account"
    rej = reports(eng.process({**new("Y", "1", 10, "99.00", session=S3), "account": None}))[0]
    assert rej["rule"] == "unknown_account"


def test_replace_keeps_the_entitled_account():
    eng = make_engine(config=make_config(RESTRICTED))
    eng.process(new("A", "1", 10, "99.00", session=S3, account="A1"))
    out = reports(eng.process({**replace("B", "A", 20, "98.00", session=S3), "account": "A2"}))
    assert out[0]["type"] == ev.ORDER_REPLACED and out[0]["account"] == "A1"


def test_a_session_cannot_act_on_another_sessions_orders():
    """Cancel, replace, status and mass cancel reach only the session's own orders, even when
    it names the other session's OrderID or account."""
    eng = make_engine()
    theirs = reports(eng.process(new("T", "1", 10, "99.00", session=S2)))[0]["order_id"]
    by_id = {"order_id": theirs, "orig_cl_ord_id": None}
    assert reports(eng.process({**cancel("C", None), **by_id}))[0]["rej_reason"] == 1
    assert reports(eng.process({**replace("R", None, 20, "98.00"), **by_id}))[0]["rej_reason"] == 1
    status = eng.process({"type": ev.STATUS_REQUESTED, "ts": 1, "session": S1, "cl_ord_id": "T",
                          "order_id": theirs, "symbol": "AAPL", "side": "1"})[0]
    assert status["order_id"] is None and status["text"] == "Unknown order"
    done = reports(eng.process({"type": ev.MASS_CANCEL_REQUESTED, "ts": 2, "session": S1, "cl_ord_id": "M",
                                "mass_cancel_type": "7", "symbol": None, "side": None, "account": "A2"}))
    assert [e["type"] for e in done] == [ev.MASS_CANCEL_DONE] and done[0]["affected"] == 0
    assert [o.cl_ord_id for o in eng.open_orders()] == ["T"]


# -- over a real socket --------------------------------------------------------------------------

def test_rejected_over_fix(tmp_path):
    config = write_test_config(tmp_path / "oms.toml", sessions={"ENT": 'accounts = ["ACC1"]'})
    server = ServerProcess(tmp_path / "data", config=config).start()
    try:
        client = logged_on(server, "ENT")
        client.new_order("E1", "AAPL", "1", 100, "190.00", account="ACC2")
        rej = client.expect("8")
        assert field(rej, 39) == "8" and field(rej, 150) == "8" and field(rej, 103) == "0"
        assert field(rej, 58) == "Account ACC2 is not permitted on session ENT->OMS"
        assert field(rej, 11) == "E1" and field(rej, 1) == "ACC2"
        client.new_order("E2", "AAPL", "1", 100, "190.00")          # the default account, ACC1
        ack = client.expect("8")
        assert field(ack, 39) == "0" and field(ack, 1) == "ACC1"
        client.close()
    finally:
        server.kill()


def test_replay_after_the_accounts_list_changed_gives_the_journaled_state():
    """The compliance desk narrows S3 to A3/A1 and restarts: the GTC order S3 entered for A2
    yesterday (accepted, resting, known to the client) must come back from the journal as it was,
    and so must the order ids of everything after it."""
    open_cfg = make_config(RESTRICTED.replace('accounts = ["A3", "A1"]\n', ""))
    journal = MemJournal()
    live = make_engine(config=open_cfg, journal=journal)
    acc = reports(live.process(new("GTC", "1", 10, "99.00", session=S3, account="A2")))[0]
    assert acc["type"] == ev.ORDER_ACCEPTED
    later = reports(live.process(new("LATER", "2", 5, "101.00", session=S1)))[0]
    replayed = make_engine(config=make_config(RESTRICTED), journal=MemJournal())
    replayed.replay(journal.records)
    assert sorted(o.cl_ord_id for o in replayed.orders.values()) == ["GTC", "LATER"]
    assert replayed.orders[later["order_id"]].cl_ord_id == "LATER"
    assert snapshot(replayed) == snapshot(live)
    assert replayed.replay_check.differences == 0, replayed.replay_check.first.describe()


def test_replay_after_the_accounts_list_widened_still_refuses_what_was_refused():
    """The other way: an order refused while S3 was restricted stays refused when the list is
    lifted before the restart, with the same audit values (the accounts then in force)."""
    journal = MemJournal()
    live = make_engine(config=make_config(RESTRICTED), journal=journal)
    rej = reports(live.process(new("NO", "1", 10, "99.00", session=S3, account="A2")))[0]
    assert rej["type"] == ev.ORDER_REJECTED and rej["limit_value"] == "A1,A3"
    command = next(r for r in journal.records if r["type"] == ev.ORDER_RECEIVED)
    assert command["account_not_permitted"] == "A1,A3"        # the decision is on the record
    live.process(new("OK", "1", 10, "99.00", session=S3, account="A3"))
    assert "account_not_permitted" not in journal.records[-2]     # an entitled order: no stamp
    replayed = make_engine(config=make_config(RESTRICTED.replace('accounts = ["A3", "A1"]\n', "")),
                           journal=MemJournal())
    replayed.replay(journal.records)
    assert sorted(o.cl_ord_id for o in replayed.orders.values()) == ["OK"]
    assert snapshot(replayed) == snapshot(live)
    assert replayed.replay_check.differences == 0, replayed.replay_check.first.describe()


@pytest.mark.parametrize("risk", [True, False])
def test_replace_of_an_order_whose_account_left_the_list_is_refused_cancel_is_not(risk):
    """S3 entered a GTC order for A2 while unrestricted; the desk then narrows S3 to A3/A1 and
    restarts. S3 may still cancel that order (less risk), but not replace it (a replace is a
    new order in all but name): OrderCancelReject 102=2, audited as account_entitlement. The
    refusal is on the journaled command, so a replay under the widened list refuses it again."""
    open_cfg = make_config(RESTRICTED.replace('accounts = ["A3", "A1"]\n', ""))
    yesterday = MemJournal()
    live = make_engine(risk=risk, config=open_cfg, journal=yesterday)
    assert reports(live.process(new("GTC", "1", 10, "99.00", session=S3, account="A2", tif="1")))[0]["type"] \
        == ev.ORDER_ACCEPTED
    assert reports(live.process(new("GTC2", "1", 10, "98.00", session=S3, account="A2", tif="1")))[0]["type"] \
        == ev.ORDER_ACCEPTED
    journal = MemJournal()
    today = make_engine(risk=risk, config=make_config(RESTRICTED), journal=journal)
    today.replay(yesterday.records)
    journal.records.extend(yesterday.records)
    before = snapshot(today)
    rej = reports(today.process(replace("R1", "GTC", 20, "98.50", session=S3)))
    assert len(rej) == 1 and rej[0]["type"] == ev.REPLACE_REJECTED and rej[0]["rej_reason"] == 2
    assert rej[0]["rule"] == "account_entitlement" and rej[0]["limit_value"] == "A1,A3"
    assert rej[0]["text"] == "Account A2 is not permitted on session S3->OMS"
    assert snapshot(today) == before
    command = next(r for r in reversed(journal.records) if r["type"] == ev.REPLACE_REQUESTED)
    assert command["account_not_permitted"] == "A1,A3"
    done = reports(today.process(cancel("C1", "GTC2", session=S3)))
    assert [e["type"] for e in done] == [ev.ORDER_CANCELED]
    # an entitled order of the same session replaces as usual, its command unstamped
    reports(today.process(new("OK", "1", 10, "97.00", session=S3, account="A1")))
    assert reports(today.process(replace("OK2", "OK", 20, "97.50", session=S3)))[0]["type"] == ev.ORDER_REPLACED
    assert "account_not_permitted" not in next(r for r in reversed(journal.records)
                                               if r["type"] == ev.REPLACE_REQUESTED)
    replayed = make_engine(risk=risk, config=open_cfg, journal=MemJournal())
    replayed.replay(journal.records)
    assert snapshot(replayed) == snapshot(today)
    assert replayed.replay_check.differences == 0, replayed.replay_check.first.describe()


def test_accounts_on_a_drop_copy_session_is_refused():
    """A drop-copy session is sent the ExecutionReports of every session and every account
    (gateway.end_batch, and the resend after a restart): an `accounts` list on one reads as
    "this session sees A3 and A1" but would limit only what it may trade, while it still
    receives A2's reports. Refused, naming the key, rather than leaking silently."""
    text = RESTRICTED + "drop_copy = true\n"
    with pytest.raises(ConfigError) as info:
        parse_config(CONFIG_TOML + text, "my.toml", Path("."))
    message = str(info.value)
    assert message.startswith("my.toml: fix.sessions[2].accounts: ") and "drop_copy" in message, message
