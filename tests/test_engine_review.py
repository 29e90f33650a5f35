"""Engine review: order semantics found wrong, each pinned by a test."""
from __future__ import annotations

from oms_trading.audit import schema as ev
from tests.test_engine_common import S1, S2, make_engine, new, reports


def mass_cancel(cl, request_type, session=S1, symbol=None, side=None, account=None, ts=2):
    return {"type": ev.MASS_CANCEL_REQUESTED, "ts": ts, "session": session, "cl_ord_id": cl,
            "mass_cancel_type": request_type, "symbol": symbol, "side": side, "account": account}


def test_mass_cancel_of_an_unsupported_scope_is_refused_and_cancels_nothing():
    """MassCancelRequestType 2-6 (underlying, product, CFICode, SecurityType, trading session)
    name scopes the engine cannot apply: the request is rejected (531=0, 532=0 "not
    supported") rather than treated as "cancel all orders"."""
    for request_type in ("2", "3", "4", "5", "6"):
        eng = make_engine()
        eng.process(new("B1", "1", 100, "99.00"))
        eng.process(new("B2", "1", 100, "50.00", symbol="VOD"))
        eng.process(new("O1", "1", 100, "99.00", session=S2))
        out = reports(eng.process(mass_cancel("M1", request_type)))
        assert [e["type"] for e in out] == [ev.MASS_CANCEL_DONE], (request_type, out)
        done = out[0]
        assert done["mass_cancel_response"] == "0" and done["rej_reason"] == 0 and done["affected"] == 0
        assert done["text"]
        assert len(eng.open_orders()) == 3


def test_mass_cancel_scopes_symbol_side_and_session():
    eng = make_engine()
    eng.process(new("B1", "1", 100, "99.00"))
    eng.process(new("S1", "2", 100, "101.00"))
    eng.process(new("B2", "1", 100, "50.00", symbol="VOD"))
    eng.process(new("O1", "1", 100, "99.00", session=S2))
    out = reports(eng.process(mass_cancel("M1", "1", symbol="AAPL", side="1")))
    assert [(e["type"], e.get("cl_ord_id")) for e in out] == [(ev.ORDER_CANCELED, "B1"), (ev.MASS_CANCEL_DONE, "M1")]
    assert out[-1]["mass_cancel_response"] == "1" and out[-1]["affected"] == 1
    out = reports(eng.process(mass_cancel("M2", "7")))
    assert sorted(e["cl_ord_id"] for e in out[:-1]) == ["B2", "S1"] and out[-1]["affected"] == 2
    assert [o.cl_ord_id for o in eng.open_orders()] == ["O1"]


def test_mass_cancel_of_the_sell_side_includes_short_sells():
    """Side 2 on an OrderMassCancelRequest names the sell side of the market: sell short (5)
    and sell short exempt (6) orders rest on it too and must not be left working."""
    eng = make_engine()
    eng.process(new("S", "2", 10, "101.00"))
    eng.process(new("SS", "5", 10, "101.00"))
    eng.process(new("SX", "6", 10, "102.00"))
    eng.process(new("B", "1", 10, "99.00"))
    out = reports(eng.process(mass_cancel("M1", "7", side="2")))
    assert sorted(e["cl_ord_id"] for e in out if e["type"] == ev.ORDER_CANCELED) == ["S", "SS", "SX"]
    assert out[-1]["affected"] == 3
    assert [o.cl_ord_id for o in eng.open_orders()] == ["B"]
    assert eng.book_depth("AAPL")["asks"] == []


def test_a_wall_clock_step_back_is_counted_and_logged_the_times_kept(caplog):
    """Times are the gateway's wall clock: a step back is not hidden (the record keeps the time
    the clock gave, seq stays the order of record) but counted for /health and /metrics, with
    the largest step, and logged; a replay of the same journal counts nothing."""
    import logging

    from tests.test_engine_common import MemJournal, make_engine, new
    journal = MemJournal()
    eng = make_engine(journal=journal)
    with caplog.at_level(logging.WARNING, logger="oms_trading.engine.engine"):
        eng.process(new("a", "1", 1, "100.00", ts=5_000_000_000))
        eng.process(new("b", "1", 1, "100.00", ts=4_998_000_000))    # 2 ms back
        eng.process(new("c", "1", 1, "100.00", ts=4_999_000_000))    # forward again from there
        eng.process(new("d", "1", 1, "100.00", ts=4_000_000_000))    # 999 ms back
    assert eng.clock_steps_back == 2 and eng.clock_largest_step_back_ns == 999_000_000
    assert [r["ts"] for r in journal.records if r["type"] == "order_received"] == [
        5_000_000_000, 4_998_000_000, 4_999_000_000, 4_000_000_000]
    warnings = [r.getMessage() for r in caplog.records if "wall clock stepped back" in r.getMessage()]
    assert len(warnings) == 1 and "2.000 ms" in warnings[0]          # at most one a minute
    replayed = make_engine(journal=MemJournal())
    replayed.replay(journal.records)
    assert replayed.clock_steps_back == 0 and replayed.last_ts == 4_000_000_000


def test_a_cancel_whose_symbol_or_side_do_not_match_the_order_cancels_nothing():
    """FIX OrderCancelRequest: Symbol and Side must match the order. A request naming another
    instrument or side (the client's OrigClOrdID bookkeeping went wrong) is refused with an
    OrderCancelReject (434=1, 102=99) and the order keeps working; a matching one cancels."""
    from tests.test_engine_common import cancel
    eng = make_engine()
    eng.process(new("B1", "1", 10, "99.00"))
    for symbol, side in (("VOD", "1"), ("AAPL", "2"), ("VOD", "2")):
        out = reports(eng.process({**cancel(f"C-{symbol}-{side}", "B1"), "symbol": symbol, "side": side}))
        assert [e["type"] for e in out] == [ev.CANCEL_REJECTED], out
        assert out[0]["rej_reason"] == 99 and out[0]["response_to"] == "1" and out[0]["ord_status"] == "0"
        assert "do not match" in out[0]["text"]
    assert [o.cl_ord_id for o in eng.open_orders()] == ["B1"]
    out = reports(eng.process({**cancel("C-OK", "B1"), "symbol": "AAPL", "side": "1"}))
    assert [e["type"] for e in out] == [ev.ORDER_CANCELED]


def test_a_duplicate_cl_ord_id_is_rejected_with_the_working_orders_state_and_a_poss_resend_gets_its_status():
    """FIX 4.4 Vol 4 D29: a NewOrderSingle reusing a ClOrdID is rejected (103=6) with the
    OrdStatus, LeavesQty, CumQty and AvgPx of the working order (not 39=8 151=0, which tells a
    client keyed on ClOrdID its working order is dead); resent with PossResend=Y it is the same
    order again: answered with its status (ExecType I), nothing journaled but the command. A
    replay of the journal gives the journaled events back."""
    from tests.test_engine_common import MemJournal
    journal = MemJournal()
    eng = make_engine(journal=journal)
    order_id = reports(eng.process(new("B1", "1", 100, "99.00")))[0]["order_id"]
    eng.process(new("S1", "2", 40, "99.00", session=S2))                  # B1 partly filled: 40 of 100
    out = reports(eng.process(new("B1", "1", 200, "98.00")))
    assert [e["type"] for e in out] == [ev.ORDER_REJECTED]
    rej = out[0]
    assert (rej["rej_reason"], rej["rule"], rej["order_id"]) == (6, "duplicate_cl_ord_id", None)
    assert (rej["ord_status"], rej["leaves_qty"], rej["cum_qty"], rej["avg_px"]) == ("1", 60, 40, "99.00")
    assert rej["qty"] == 200 and rej["exec_type"] == "8"                   # what the second order asked for
    records = len(journal.records)
    out = eng.process({**new("B1", "1", 100, "99.00"), "poss_resend": "Y"})
    assert [e["type"] for e in out] == [ev.ORDER_RECEIVED, "order_status"]
    status = out[1]
    assert (status["exec_type"], status["ord_status"], status["order_id"], status["leaves_qty"]) == ("I", "1", order_id, 60)
    assert len(journal.records) == records + 1                            # the command record only
    # a PossResend of a ClOrdID not seen is a new order like any other
    assert reports(eng.process({**new("B2", "1", 10, "97.00"), "poss_resend": "Y"}))[0]["type"] == ev.ORDER_ACCEPTED
    replayed = make_engine(journal=MemJournal())
    replayed.replay(journal.records)
    assert replayed.replay_check.differences == 0, replayed.replay_check.first.describe()
    assert replayed.next_exec_id == eng.next_exec_id
    assert sorted(o.cl_ord_id for o in replayed.open_orders()) == ["B1", "B2"]


def test_replay_keeps_each_sessions_last_msg_seq_num_since_its_last_reset_and_who_was_logged_on():
    """What the FIX acceptor's crash recovery reads after the start-up replay: the MsgSeqNum
    of each session's last journaled command (a sequence reset forgets the old numbering's)
    and the sessions whose last session record is a logon."""
    from tests.test_engine_common import MemJournal
    journal = MemJournal()
    eng = make_engine(journal=journal)
    eng.record({"type": ev.SESSION_LOGON, "ts": 1, "session": S1, "text": "logon"})
    eng.record({"type": ev.SESSION_LOGON, "ts": 1, "session": S2, "text": "logon"})
    eng.process({**new("A", "1", 10, "99.00"), "msg_seq_num": 7})
    eng.process({**new("B", "1", 10, "99.00", session=S2), "msg_seq_num": 40})
    eng.record({"type": ev.SESSION_SEQ_RESET, "ts": 2, "session": S2, "text": "reset"})
    eng.record({"type": ev.SESSION_LOGOUT, "ts": 2, "session": S2, "text": "logout"})
    replayed = make_engine(journal=MemJournal())
    replayed.replay(journal.records)
    assert replayed.inbound_seqs == {S1: 7}
    assert replayed.sessions_logged_on == {S1}
    assert replayed.replay_check.differences == 0


def test_a_journal_of_the_rules_before_replays_by_them_and_new_commands_by_the_new_ones():
    """Reviewed: a journal written before this version's rule changes (no engine_rules record)
    replayed under them: a cancel the old rules took with another Side was refused at the
    replay and the order came back working. Each journal now says which rules decided what."""
    from oms_trading.engine.engine import RULES_VERSION
    from tests.test_engine_common import MemJournal, cancel
    old_journal = MemJournal()
    old = make_engine(journal=old_journal)
    old._set_rules(1)                    # an engine of the rules before versioning
    old._rules_journaled = True          # (which journaled no engine_rules record)
    old.process(new("B1", "1", 10, "99.00"))
    out = reports(old.process({**cancel("C1", "B1"), "symbol": "AAPL", "side": "2"}))
    assert [e["type"] for e in out] == [ev.ORDER_CANCELED]          # rules 1 took it
    assert not any(r["type"] == ev.ENGINE_RULES for r in old_journal.records)
    journal = MemJournal()
    journal.records = list(old_journal.records)
    now = make_engine(journal=journal)
    now.replay(list(journal.records))
    assert now.replay_check.differences == 0 and now.open_orders() == []
    now.process(new("B2", "1", 10, "99.00", ts=5))                  # the first command of these rules
    rules = [r for r in journal.records if r["type"] == ev.ENGINE_RULES]
    assert [r["version"] for r in rules] == [RULES_VERSION]
    out = reports(now.process({**cancel("C2", "B2", ts=6), "symbol": "AAPL", "side": "2"}))
    assert [e["type"] for e in out] == [ev.CANCEL_REJECTED]          # rules 2 refuse it
    again = make_engine(journal=MemJournal())
    again.replay(list(journal.records))
    assert again.replay_check.differences == 0, again.replay_check.first.describe()
    assert [o.cl_ord_id for o in again.open_orders()] == ["B2"]
