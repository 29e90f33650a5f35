"""Each pre-trade check: just inside the limit passes, just outside is rejected with the right
Text, OrdRejReason and audit fields; limits change while running; kill switches; expiry."""
from __future__ import annotations

import pytest

from oms_trading.audit import schema as ev

from tests.test_engine_common import (S1, S2, S3, cancel, kill, limit, make_config, make_engine, new, replace,
                                      reports, strip)


@pytest.fixture
def eng():
    return make_engine()


def one(events):
    rs = reports(events)
    return rs[0]


def accepted(events):
    r = one(events)
    assert r["type"] == ev.ORDER_ACCEPTED, r
    return r


def rejected(events, rule, reason, text=None, limit_value=None, actual_value=None):
    r = one(events)
    assert r["type"] == ev.ORDER_REJECTED, r
    assert r["exec_type"] == "8" and r["ord_status"] == "8"
    assert r["rule"] == rule, r
    assert r["rej_reason"] == reason, r
    if text is not None:
        assert text in r["text"], r["text"]
    if limit_value is not None:
        assert r["limit_value"] == limit_value, r
    if actual_value is not None:
        assert r["actual_value"] == actual_value, r
    assert len(reports(events)) == 1
    return r


def test_max_order_qty(eng):
    accepted(eng.process(new("a", "1", 1000, "100.00")))
    rejected(eng.process(new("b", "1", 1001, "100.00")), "max_order_qty", 3, "Order quantity 1001 exceeds max_order_qty 1000",
             "1000", "1001")


def test_max_order_notional_account_override(eng):
    accepted(eng.process(new("a", "1", 500, "100.00", session=S2)))
    r = rejected(eng.process(new("b", "1", 501, "100.00", session=S2)), "max_order_notional", 3, None,
                 "50000.00", "50100.00")
    assert "Order notional 50100.00 exceeds max_order_notional 50000.00" in r["text"]
    # the default applies to the other account
    accepted(eng.process(new("c", "1", 501, "100.00", session=S1)))


def test_market_order_notional_uses_reference(eng):
    accepted(eng.process(new("a", "2", 500, "100.00", session=S3)))   # liquidity for the market buy
    accepted(eng.process(new("m1", "1", 500, ord_type="1", tif="3", session=S2)))
    rejected(eng.process(new("m2", "1", 501, ord_type="1", tif="3", session=S2)), "max_order_notional", 3,
             "market order at the reference price", "50000.00", "50100.00")


@pytest.mark.parametrize("side,inside,outside", [("1", "110.00", "110.01"), ("2", "90.00", "89.99")])
def test_price_collar_pct(eng, side, inside, outside):
    accepted(eng.process(new("a", side, 10, inside)))
    r = rejected(eng.process(new("b", side, 10, outside)), "price_collar_pct", 0, "Price collar", "10")
    assert r["actual_value"] == "10.01"
    assert f"{outside} is 10.01% from reference 100.00, limit 10%" in r["text"]


def test_price_collar_instrument_override(eng):
    accepted(eng.process(new("a", "1", 10, "52.50", symbol="VOD")))
    rejected(eng.process(new("b", "1", 10, "52.52", symbol="VOD")), "price_collar_pct", 0, "limit 5%", "5")


def test_price_collar_ticks(eng):
    assert reports(eng.process(limit("instrument:AAPL", "price_collar_ticks", "5")))[0]["type"] == ev.LIMIT_CHANGED
    eng.process(limit("instrument:AAPL", "price_collar_pct", "0"))
    accepted(eng.process(new("a", "1", 10, "100.05")))
    rejected(eng.process(new("b", "1", 10, "100.06")), "price_collar_ticks", 0, "6 ticks", "5", "6")


def test_reference_becomes_last_trade(eng):
    accepted(eng.process(new("s", "2", 10, "105.00", session=S2)))
    evs = reports(eng.process(new("b", "1", 10, "105.00")))
    assert evs[-1]["type"] == ev.ORDER_FILLED and evs[-1]["last_px"] == "105.00"
    accepted(eng.process(new("c", "1", 10, "115.50")))             # 10% of 105.00
    rejected(eng.process(new("d", "1", 10, "115.51")), "price_collar_pct", 0, "reference 105.00")


def test_missing_reference_price_fails_closed(eng):
    rejected(eng.process(new("a", "1", 10, "10.00", symbol="NOREF")), "no_reference_price", 0, "fail closed")
    rejected(eng.process(new("m", "1", 10, ord_type="1", tif="3", symbol="NOREF")), "no_reference_price", 0)
    eng.process(limit("instrument:NOREF", "price_collar_pct", "0"))
    accepted(eng.process(new("b", "1", 10, "10.00", symbol="NOREF")))


def test_credit_limit_counts_resting_both_sides_and_fills(eng):
    eng.process(limit("account:A1", "credit_limit", "249750"))
    accepted(eng.process(new("b1", "1", 1000, "100.00")))       # 100000
    accepted(eng.process(new("s1", "2", 950, "105.00")))        # 99750 (sells count: gross)
    accepted(eng.process(new("b2", "1", 500, "100.00")))        # 50000 -> 249750 exactly
    rejected(eng.process(new("b3", "1", 1, "100.00")), "credit_limit", 3, "Gross exposure of A1 would be 249850.00",
             "249750.00", "249850.00")
    # a fill moves exposure from resting to filled: still counted
    eng.process(new("x", "2", 500, "100.00", session=S2))
    assert eng.exposures("A1")[0]["gross_exposure"] == "249750.00"
    rejected(eng.process(new("b4", "1", 1, "100.00")), "credit_limit", 3)
    # canceling frees it; the end of day drops the day's fills
    eng.process(cancel("c1", "b2"))
    accepted(eng.process(new("b5", "1", 1, "100.00")))
    eng.process({"type": ev.CLOCK, "ts": 2, "end_of_day": 0})
    assert eng.exposures("A1")[0]["filled_notional_today"] == "50000.00"
    eng.process({"type": ev.CLOCK, "ts": 3, "end_of_day": 1})
    assert eng.exposures("A1")[0]["filled_notional_today"] == "0.00"


def test_position_limits_long_and_short_count_resting(eng):
    eng.process(limit("account:A1", "max_order_qty", "0"))
    eng.process(limit("account:A1", "max_order_notional", "0"))
    accepted(eng.process(new("b1", "1", 1000, "100.00")))
    accepted(eng.process(new("b2", "1", 1000, "99.00")))
    rejected(eng.process(new("b3", "1", 1, "99.00")), "max_long_position", 3, "could reach 2001", "2000", "2001")
    # a fill keeps the worst case the same; a sell does not count against the long side
    accepted(eng.process(new("s1", "2", 2000, "101.00")))
    rejected(eng.process(new("s2", "2", 1, "101.00")), "max_short_position", 3, "could reach 2001", "2000", "2001")


def test_reduce_only(eng):
    accepted(eng.process(new("s", "2", 500, "100.00", session=S2)))
    eng.process(new("b", "1", 500, "100.00"))
    assert eng.positions("A1")[0]["position"] == 500
    eng.process(limit("account:A1", "reduce_only", "true"))
    rejected(eng.process(new("b2", "1", 1, "100.00")), "reduce_only", 0, "reduce-only")
    rejected(eng.process(new("s2", "2", 501, "100.00")), "reduce_only", 0, None, "0", "-1")
    accepted(eng.process(new("s3", "2", 500, "101.00")))
    rejected(eng.process(new("s4", "2", 1, "101.00")), "reduce_only", 0)   # resting sells count
    eng.process(limit("account:A1", "reduce_only", "false"))
    accepted(eng.process(new("b3", "1", 1, "100.00")))


def test_halt_and_resume(eng):
    accepted(eng.process(new("a", "1", 10, "100.00")))
    eng.process(limit("instrument:AAPL", "halted", "true"))
    rejected(eng.process(new("b", "1", 10, "100.00")), "trading_halt", 2, "Trading halted in AAPL", "instrument:AAPL")
    assert reports(eng.process(cancel("c", "a")))[0]["type"] == ev.ORDER_CANCELED     # cancels still work
    eng.process(limit("instrument:AAPL", "halted", "false"))
    accepted(eng.process(new("d", "1", 10, "100.00")))


def test_restricted_global_and_per_account():
    eng = make_engine(config=make_config('\n[risk]\nrestricted = ["VOD"]\n[risk.restricted_by_account]\nA1 = ["AAPL"]\n'))
    rejected(eng.process(new("a", "1", 10, "50.00", symbol="VOD", session=S2)), "restricted_instrument", 0,
             "Restricted instrument VOD", "global")
    rejected(eng.process(new("b", "1", 10, "100.00")), "restricted_instrument", 0, "for account A1", "account:A1")
    accepted(eng.process(new("c", "1", 10, "100.00", session=S2)))
    eng.process(limit("account:A1/instrument:AAPL", "restricted", "false"))
    accepted(eng.process(new("d", "1", 10, "100.00")))
    eng.process(limit("instrument:AAPL", "restricted", "true"))
    rejected(eng.process(new("e", "1", 10, "100.00", session=S2)), "restricted_instrument", 0, None, "global")


def test_message_rate_sliding_window(eng):
    eng.process(limit("account:A1", "max_messages_per_second", "3"))
    second = 1_000_000_000
    for k in range(3):
        accepted(eng.process(new(f"o{k}", "1", 1, "100.00", ts=10 * second + k)))
    r = rejected(eng.process(new("o3", "1", 1, "100.00", ts=10 * second + 5)), "message_rate", 0,
                 "more than 3 messages per second", "3", "4")
    assert r["cl_ord_id"] == "o3"
    # a cancel always passes (and counts)
    assert reports(eng.process(cancel("c0", "o0", ts=10 * second + 6)))[0]["type"] == ev.ORDER_CANCELED
    # the window slides: one second after the first message, one slot is free again
    accepted(eng.process(new("o4", "1", 1, "100.00", ts=11 * second + 1)))
    rejected(eng.process(new("o5", "1", 1, "100.00", ts=11 * second + 1)), "message_rate", 0)
    # other sessions have their own window
    accepted(eng.process(new("p", "1", 1, "100.00", session=S2, ts=11 * second + 1)))


def test_duplicate_order_window(eng):
    eng.process(limit("account:A1", "duplicate_window_ms", "100"))
    ms = 1_000_000
    accepted(eng.process(new("a", "1", 10, "100.00", ts=1000 * ms)))
    rejected(eng.process(new("b", "1", 10, "100.00", ts=1099 * ms)), "duplicate_order", 6, "Duplicate order", "100")
    accepted(eng.process(new("c", "1", 11, "100.00", ts=1099 * ms)))
    accepted(eng.process(new("d", "1", 10, "100.00", ts=1200 * ms)))


def test_limit_change_applies_to_next_order_and_is_audited(eng):
    accepted(eng.process(new("a", "1", 800, "100.00")))
    evs = reports(eng.process(limit("account:A1", "max_order_qty", "500", ts=7, reason="client asked")))
    assert len(evs) == 1
    change = evs[0]
    assert change["type"] == ev.LIMIT_CHANGED and change["user"] == "risk1" and change["ts"] == 7
    assert change["old_value"] is None and change["old_effective"] == "1000"
    assert change["new_value"] == "500" and change["new_effective"] == "500" and change["reason"] == "client asked"
    rejected(eng.process(new("b", "1", 501, "100.00")), "max_order_qty", 3, None, "500", "501")
    accepted(eng.process(new("c", "1", 500, "100.00")))
    accepted(eng.process(new("d", "1", 501, "99.00", session=S2)))   # other accounts keep the default


@pytest.mark.parametrize("cmd,text", [
    (limit("account:A1", "max_order_qty", "5", reason=""), "reason"),
    (limit("account:NOPE", "max_order_qty", "5"), "Unknown account"),
    (limit("account:A1", "max_order_qty", "-5"), "whole number"),
    (limit("account:A1", "max_order_qty", "abc"), "whole number"),
    (limit("account:A1", "no_such_limit", "5"), "Unknown limit"),
    (limit("instrument:AAPL", "credit_limit", "5"), "cannot be set"),
    (limit("default", "halted", "true"), "cannot be set"),
    (limit("account:A1", "max_order_qty", "5", ts=10, expires_ts=5), "expires_ts"),
    (kill("account:A1", action="release"), "not engaged"),
    (kill("bogus:1"), "scope"),
])
def test_bad_control_is_rejected_and_changes_nothing(eng, cmd, text):
    before = eng.risk.snapshot()
    evs = reports(eng.process(cmd))
    assert len(evs) == 1 and evs[0]["type"] == ev.LIMIT_CHANGE_REJECTED and text in evs[0]["text"], evs
    assert eng.risk.snapshot() == before
    accepted(eng.process(new("a", "1", 1000, "100.00")))


@pytest.mark.parametrize("scope,killed_sessions", [
    ("account:A1", {S1}), ("session:S2->OMS", {S2}), ("instrument:AAPL", {S1, S2, S3}), ("global", {S1, S2, S3}),
])
def test_kill_switch_cancels_resting_and_blocks_new(eng, scope, killed_sessions):
    orders = {S1: "o1", S2: "o2", S3: "o3"}
    for session, cl in orders.items():
        accepted(eng.process(new(cl, "1", 10, "100.00", session=session)))
    accepted(eng.process(new("v", "1", 10, "50.00", symbol="VOD", session=S1)))
    evs = reports(eng.process(kill(scope, ts=5, reason="runaway")))
    assert evs[0]["type"] == ev.KILL_SWITCH_ENGAGED and evs[0]["scope"] == scope and evs[0]["reason"] == "runaway"
    canceled = evs[1:]
    assert all(e["type"] == ev.ORDER_CANCELED and e["exec_type"] == "4" and e["ord_status"] == "4"
               and e["leaves_qty"] == 0 and scope in e["text"] for e in canceled)
    assert {e["session"] for e in canceled if e["symbol"] == "AAPL"} == killed_sessions
    assert evs[0]["affected"] == len(canceled)
    for session in (S1, S2, S3):
        r = reports(eng.process(new(f"n{session}", "1", 10, "100.00", session=session)))[0]
        if session in killed_sessions:
            assert r["type"] == ev.ORDER_REJECTED and r["rule"] == "kill_switch" and r["rej_reason"] == 0
        else:
            assert r["type"] == ev.ORDER_ACCEPTED
    evs = reports(eng.process(kill(scope, action="release", ts=6)))
    assert [e["type"] for e in evs] == [ev.KILL_SWITCH_RELEASED]
    for session in (S1, S2, S3):
        accepted(eng.process(new(f"m{session}", "1", 10, "100.00", session=session)))


def test_replace_checked_by_risk_and_reduction_always_passes(eng):
    accepted(eng.process(new("a", "1", 800, "100.00")))
    r = reports(eng.process(replace("b", "a", 1001, "100.00")))[0]
    assert r["type"] == ev.REPLACE_REJECTED and r["rej_reason"] == 2 and r["rule"] == "max_order_qty"
    assert r["response_to"] == "2" and "max_order_qty" in r["text"]
    r = reports(eng.process(replace("c", "a", 800, "120.00")))[0]
    assert r["type"] == ev.REPLACE_REJECTED and r["rule"] == "price_collar_pct"
    eng.process(kill("account:A1"))                     # cancels "a"; re-test with a fresh order after release
    eng.process(kill("account:A1", action="release"))
    accepted(eng.process(new("d", "1", 800, "100.00")))
    eng.process(limit("account:A1", "max_order_qty", "100"))
    r = reports(eng.process(replace("e", "d", 700, "100.00")))[0]   # reduction passes a lower limit
    assert r["type"] == ev.ORDER_REPLACED and r["leaves_qty"] == 700


def test_temporary_limit_expires_by_clock(eng):
    evs = reports(eng.process(limit("account:A1", "max_order_qty", "2000", ts=100, expires_ts=1000)))
    assert evs[0]["type"] == ev.LIMIT_CHANGED and evs[0]["expires_ts"] == 1000
    assert eng.next_due_ns() == 1000
    eng.process(limit("account:A1", "max_long_position", "0", ts=150))
    eng.process(limit("account:A1", "max_order_notional", "0", ts=151))
    accepted(eng.process(new("a", "1", 1500, "100.00", ts=200)))
    assert reports(eng.process({"type": ev.CLOCK, "ts": 999})) == []
    evs = reports(eng.process({"type": ev.CLOCK, "ts": 1000}))
    assert len(evs) == 1 and evs[0]["type"] == ev.LIMIT_EXPIRED
    assert evs[0]["old_value"] == "2000" and evs[0]["new_value"] is None and evs[0]["scope"] == "account:A1"
    assert eng.next_due_ns() is None
    rejected(eng.process(new("b", "1", 1500, "100.00", ts=1001)), "max_order_qty", 3, None, "1000", "1500")


def test_second_temporary_change_returns_to_the_original(eng):
    eng.process(limit("account:A1", "max_order_qty", "10", ts=1))
    eng.process(limit("account:A1", "max_order_qty", "20", ts=2, expires_ts=100))
    eng.process(limit("account:A1", "max_order_qty", "30", ts=3, expires_ts=200))
    assert eng.next_due_ns() == 200
    evs = reports(eng.process({"type": ev.CLOCK, "ts": 200}))
    assert evs[0]["old_value"] == "30" and evs[0]["new_value"] == "10"


def test_controls_replay_to_the_same_state(eng):
    eng.process(limit("account:A1", "max_order_qty", "10", ts=1, expires_ts=50))
    eng.process(new("a", "1", 10, "100.00", ts=2))
    eng.process(new("b", "1", 10, "100.00", ts=2, session=S2))
    eng.process(kill("session:S2->OMS", ts=3))
    eng.process(new("c", "1", 11, "100.00", ts=4))
    eng.process({"type": ev.CLOCK, "ts": 60})
    eng.process(new("d", "1", 11, "100.00", ts=61))
    records = eng.journal.records
    fresh = make_engine()
    fresh.journal = None
    fresh.replay(records)
    assert fresh.risk.snapshot() == eng.risk.snapshot()
    assert fresh.positions() == eng.positions() and fresh.exposures() == eng.exposures()
    again = make_engine()
    events = []
    for cmd in eng.journal.commands():
        events.extend(again.process(strip(cmd)))
    assert [strip(e) for e in events] == [strip(e) for e in records if e["type"] != ev.ENGINE_RULES]


def test_no_risk_object_rejects_controls_cleanly():
    eng = make_engine(risk=False)
    evs = reports(eng.process(limit("account:A1", "max_order_qty", "10")))
    assert evs[0]["type"] == ev.LIMIT_CHANGE_REJECTED
    accepted(eng.process(new("a", "1", 100000, "1000.00")))
    assert eng.next_due_ns() is None


def _gbp_engine():
    from pathlib import Path
    from oms_trading.config import parse_config
    from tests.test_engine_common import CONFIG_TOML
    text = CONFIG_TOML.replace('lot_size = 10\n', 'lot_size = 10\ncurrency = "GBP"\n', 1)
    cfg = parse_config(text + '\n[risk.fx_rates]\nGBP = "1.2345"\n', "<test>", Path("."))
    return make_engine(config=cfg)


def test_credit_limit_sums_currencies_in_the_base_currency_rounded_up():
    eng = _gbp_engine()
    # 10 VOD @ 50.02 GBP = 500.20 GBP = 617.4969 USD -> 617.50 (rounded up: never understated)
    eng.process(limit("account:A1", "credit_limit", "717.50"))
    accepted(eng.process(new("v1", "1", 10, "50.02", symbol="VOD")))
    assert eng.exposures("A1")[0]["gross_exposure"] == "617.50" and eng.exposures("A1")[0]["currency"] == "USD"
    accepted(eng.process(new("a1", "1", 1, "100.00")))                         # 100.00 USD: 717.50 exactly
    rejected(eng.process(new("a2", "1", 1, "100.00")), "credit_limit", 3,
             "Gross exposure of A1 would be 817.50 USD, credit_limit 717.50 USD", "717.50", "817.50")
    # a GBP order is converted before the comparison: 10 @ 50.00 GBP = 617.25 USD
    rejected(eng.process(new("v2", "2", 10, "50.00", symbol="VOD")), "credit_limit", 3,
             "would be 1334.75 USD")
    # a fill moves the converted amount from resting to filled; canceling frees it exactly
    eng.process(new("x", "2", 10, "50.02", symbol="VOD", session=S2))
    assert eng.exposures("A1")[0]["gross_exposure"] == "717.50"
    eng.process(cancel("c1", "a1"))
    assert eng.exposures("A1")[0]["gross_exposure"] == "617.50"
    eng.process({"type": "clock", "ts": 2, "end_of_day": 1})
    assert eng.exposures("A1")[0]["gross_exposure"] == "0.00"
    # the per-order notional limit stays in the instrument's own currency
    eng.process(limit("account:A1", "max_order_notional", "500.00"))
    accepted(eng.process(new("v3", "1", 10, "50.00", symbol="VOD")))           # 500.00 GBP, not 617.25 USD


@pytest.mark.parametrize("toml,problem", [
    ('', "instrument VOD is in GBP"),
    ('\n[risk.fx_rates]\nGBP = 1.27\n', "decimal text"),
    ('\n[risk.fx_rates]\nGBP = "-1"\n', "positive"),
    ('\n[risk.fx_rates]\nGBP = "1.2"\nUSD = "2"\n', "rate 1"),
])
def test_fx_rates_are_checked_when_the_config_loads(toml, problem):
    from pathlib import Path
    from oms_trading.config import ConfigError, parse_config
    from tests.test_engine_common import CONFIG_TOML
    text = CONFIG_TOML.replace('lot_size = 10\n', 'lot_size = 10\ncurrency = "GBP"\n', 1)
    with pytest.raises(ConfigError, match=problem):
        parse_config(text + toml, "<test>", Path("."))


def test_an_account_limit_and_an_instrument_limit_both_hold_the_stricter_binds(eng):
    """Reviewed: tightening ACC1's collar to 1% did nothing on TSLA-like instruments with their
    own collar (the instrument's value stood in for the account's). Each is a check of its own:
    the stricter binds, either way round; 0 ("off") on one side leaves the other's."""
    assert reports(eng.process(limit("account:A1", "price_collar_pct", "1")))[0]["type"] == ev.LIMIT_CHANGED
    # VOD's own collar is 5%: the account's 1% binds there too
    rejected(eng.process(new("a", "1", 10, "50.60", symbol="VOD")), "price_collar_pct", 0, "limit 1%", "1")
    assert eng.risk.effective("price_collar_pct", "A1", "VOD") == (1, "account:A1")
    # an account allowed more than an instrument's limit is still held to the instrument's
    eng.process(limit("account:A1", "price_collar_pct", "50"))
    rejected(eng.process(new("b", "1", 10, "52.52", symbol="VOD")), "price_collar_pct", 0, "limit 5%", "5")
    assert eng.risk.effective("price_collar_pct", "A1", "VOD")[1] == "instrument:VOD"
    # the account's check off: the instrument's holds; the instrument's off: the account's holds
    eng.process(limit("account:A1", "price_collar_pct", "0"))
    assert eng.risk.effective("price_collar_pct", "A1", "VOD")[1] == "instrument:VOD"
    eng.process(limit("account:A1", "price_collar_pct", "2"))
    eng.process(limit("instrument:VOD", "price_collar_pct", "0"))
    assert eng.risk.effective("price_collar_pct", "A1", "VOD") == (2, "account:A1")
    # an account without its own value: the instrument's stands in for the default
    assert eng.risk.effective("price_collar_pct", "A2", "AAPL")[1] == "default"
