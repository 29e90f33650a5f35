"""End of the trading day: DAY orders expire, finished orders leave memory, GTC orders stay."""
from __future__ import annotations

from oms_trading.audit import schema as ev
from tests.test_engine_common import S2, MemJournal, cancel, make_engine, new, reports


def test_day_roll_forgets_finished_orders_keeps_gtc_and_frees_their_cl_ord_ids():
    journal = MemJournal()
    eng = make_engine(journal=journal)
    eng.process(new("GTC1", "1", 10, "99.00", tif="1"))            # stays open over night
    eng.process(new("DAY1", "1", 10, "98.00", tif="0"))            # expires at the roll
    eng.process(new("F1", "1", 10, "100.00"))                      # filled by S2 below
    eng.process(new("S1", "2", 10, "100.00", session=S2))
    eng.process(new("C1", "1", 10, "97.00"))
    eng.process(cancel("C1X", "C1"))
    assert len(eng.orders) == 5
    events = reports(eng.process({"type": ev.CLOCK, "ts": 5, "end_of_day": 1}))
    assert [(e["type"], e["cl_ord_id"]) for e in events if e["type"] == ev.ORDER_EXPIRED] == [
        (ev.ORDER_EXPIRED, "DAY1")]
    assert [o.cl_ord_id for o in eng.orders.values()] == ["GTC1"]
    # the GTC order still answers a cancel by its ClOrdID, a finished one is unknown now
    assert reports(eng.process(cancel("GTC1X", "GTC1", ts=6)))[0]["type"] == ev.ORDER_CANCELED
    rejected = reports(eng.process(cancel("F1X", "F1", ts=6)))[0]
    assert rejected["type"] == ev.CANCEL_REJECTED and rejected["rej_reason"] == 1
    # ClOrdIDs are unique per day: yesterday's may be used again
    accepted = reports(eng.process(new("F1", "1", 10, "99.00", ts=7)))
    assert accepted[0]["type"] == ev.ORDER_ACCEPTED
    # the roll is a journaled command, so a replay forgets the same orders
    replayed = make_engine(journal=MemJournal())
    replayed.replay(journal.records)
    assert sorted(o.cl_ord_id for o in replayed.orders.values()) == sorted(o.cl_ord_id for o in eng.orders.values())
