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


def test_finished_orders_past_the_bound_leave_memory_but_their_cl_ord_ids_stay_known():
    from tests.test_engine_common import make_config, replace
    cfg = make_config("\n[trading]\nfinished_orders_in_memory = 2\n")
    journal = MemJournal()
    eng = make_engine(journal=journal, config=cfg)
    eng.process(new("A", "1", 10, "97.00"))
    eng.process(replace("A2", "A", 20, "97.00"))                    # A -> A2
    eng.process(cancel("A3", "A2"))                                 # finished: A, A2, A3 are its ClOrdIDs
    eng.process(new("B", "1", 10, "96.00"))
    eng.process(cancel("B2", "B"))                                  # finished
    eng.process(new("C", "1", 10, "100.00"))
    eng.process(new("CS", "2", 10, "100.00", session=S2))           # C and CS filled
    eng.process(new("OPEN", "1", 10, "95.00"))
    # four finished, two kept: the oldest (A..., B...) left memory, the open order stays
    assert sorted(o.cl_ord_id for o in eng.orders.values()) == ["C", "CS", "OPEN"]
    assert not any(k[1] in ("A", "A2", "A3", "B", "B2") for k in eng.by_cl_ord_id)
    # their ClOrdIDs are still refused as duplicates, cancels of them are "too late"
    for cl in ("A", "A2", "A3", "B2"):
        dup = reports(eng.process(new(cl, "1", 10, "99.00")))[0]
        assert dup["type"] == ev.ORDER_REJECTED and "Duplicate ClOrdID" in dup["text"], dup
    late = reports(eng.process(cancel("X1", "A3")))[0]
    assert late["type"] == ev.CANCEL_REJECTED and late["rej_reason"] == 0 and "finished earlier" in late["text"]
    by_id = reports(eng.process({**cancel("X2", None), "order_id": 1}))[0]
    assert by_id["type"] == ev.CANCEL_REJECTED and by_id["rej_reason"] == 0
    # another session naming that OrderID learns nothing: unknown, as before it left memory
    other = reports(eng.process({**cancel("X4", None, session=S2), "order_id": 1}))[0]
    assert other["type"] == ev.CANCEL_REJECTED and other["rej_reason"] == 1
    assert reports(eng.process(cancel("X3", "NEVER")))[0]["rej_reason"] == 1
    status = eng.process({"type": ev.STATUS_REQUESTED, "ts": 9, "session": "S1->OMS", "cl_ord_id": "B2",
                          "order_id": None, "symbol": "AAPL", "side": "1"})[0]
    assert "no longer held in memory" in status["text"]
    # replay keeps exactly the same orders and ClOrdIDs
    replayed = make_engine(journal=MemJournal(), config=cfg)
    replayed.replay(journal.records)
    assert sorted(replayed.orders) == sorted(eng.orders) and replayed.by_cl_ord_id == eng.by_cl_ord_id
    assert replayed._gone_ids == eng._gone_ids
    # the end of the day forgets them: ClOrdIDs may be used again
    eng.process({"type": ev.CLOCK, "ts": 10, "end_of_day": 1})
    assert reports(eng.process(new("A", "1", 10, "99.00", ts=11)))[0]["type"] == ev.ORDER_ACCEPTED


def test_fingerprint_set_matches_a_python_set():
    import random
    from hypothesis import given, settings, strategies as st
    from oms_trading.engine.fingerprints import FingerprintSet

    @settings(max_examples=60, deadline=None)
    @given(st.lists(st.integers(min_value=-2**63, max_value=2**63 - 1), max_size=3000), st.randoms())
    def check(values, rnd):
        fps, ref = FingerprintSet(), set()
        for v in values + [0, 1, -1]:
            fps.add(v)
            ref.add(v if v != 0 else 1)
        assert len(fps) == len(ref)
        assert all(v in fps for v in ref)
        probes = [rnd.randrange(-2**63, 2**63) for _ in range(200)]
        assert all((p in fps) == ((p if p != 0 else 1) in ref) for p in probes)
    check()


def test_fingerprint_set_past_its_capacity_grows_and_keeps_every_entry(caplog):
    """A table sized for a few entries: it doubles (with a warning) and loses nothing."""
    import random
    from oms_trading.engine.fingerprints import FingerprintSet, slots_for
    assert slots_for(2_000_000) == 1 << 22 and slots_for(1) == 1 << 12
    rnd = random.Random(7)
    fps, ref = FingerprintSet(capacity=10), set()
    first = fps.nbytes
    for _ in range(20_000):
        v = rnd.randrange(-2**63, 2**63)
        fps.add(v)
        ref.add(v if v != 0 else 1)
    assert len(fps) == len(ref) and all(v in fps for v in ref)
    assert fps.nbytes > first and "past the capacity of 10" in caplog.text
    big = FingerprintSet(capacity=20_000)      # sized for them: allocated once, never grows
    size = big.nbytes
    for v in ref:
        big.add(v)
    assert big.nbytes == size and big == fps


def test_fingerprint_add_many_keeps_the_same_entries_as_add():
    import random
    from oms_trading.engine.fingerprints import FingerprintSet
    rnd = random.Random(11)
    values = [rnd.randrange(-2**63, 2**63) for _ in range(5000)] + [0, 1, 0]
    one, many = FingerprintSet(capacity=100), FingerprintSet(capacity=100)
    for v in values:
        one.add(v)
    for i in range(0, len(values), 700):
        many.add_many(values[i:i + 700])
    many.add_many([])
    assert len(one) == len(many) and all(v in many for v in values) and 0 in many


def test_finished_orders_leave_memory_in_chunks_and_replay_ends_equal():
    """With a bound of 160, finished orders leave memory once 10 more (1/16) have finished,
    down to the bound, all at once; a replay of the journal ends with the same state."""
    from tests.test_engine_common import make_config
    cfg = make_config("\n[trading]\nfinished_orders_in_memory = 160\n")
    journal = MemJournal()
    eng = make_engine(journal=journal, config=cfg)
    for i in range(170):
        eng.process(new(f"N{i}", "1", 10, "97.00", ts=i))
        eng.process(cancel(f"X{i}", f"N{i}", ts=i))
    assert len(eng._finished) == 170 and eng._gone_ids.count == 0       # 170 <= 160 + 10
    eng.process(new("N170", "1", 10, "97.00", ts=999))
    eng.process(cancel("X170", "N170", ts=999))                       # the 171st: 11 leave at once
    assert len(eng._finished) == 160 and eng._gone_ids.count == 11 * 3
    dup = reports(eng.process(new("N0", "1", 10, "97.00", ts=1000)))[0]
    assert "Duplicate ClOrdID" in dup["text"]
    replayed = make_engine(journal=MemJournal(), config=cfg)
    replayed.replay(journal.records)
    assert sorted(replayed.orders) == sorted(eng.orders) and replayed.by_cl_ord_id == eng.by_cl_ord_id
    assert replayed._gone_ids == eng._gone_ids


def test_a_start_after_an_end_of_day_the_server_was_down_for_rolls_the_day(tmp_path):
    """Trading two days ago, no end of day journaled since, no DAY order left open (the fills
    alone): the start rolls the day (fills of that day stop counting against credit, its
    finished ClOrdIDs are free again), once; a GTC order rests on. Before, only an open DAY
    order older than the end of day made the start roll it."""
    import time

    from oms_trading.audit.journal import Journal, iter_records
    from oms_trading.audit.paths import journal_dir
    from oms_trading.book import ReferenceBook
    from oms_trading.compliance.risk import RiskEngine
    from oms_trading.config import load_config
    from oms_trading.engine.engine import Engine
    from tests.server_process import ServerProcess

    data = tmp_path / "data"
    cfg = load_config(None)
    journal = Journal(journal_dir(data), fsync="os")
    eng = Engine(cfg, journal, lambda: ReferenceBook(capacity=256), risk=RiskEngine(cfg))
    t = time.time_ns() - 2 * 86_400 * 10**9
    day = [new("S1", "2", 400, "190.00", session="CLIENT2->OMS", account="ACC2", ts=t, tif="0"),
           new("B1", "1", 400, "190.00", session="CLIENT1->OMS", account="ACC1", ts=t + 1, tif="0"),
           new("G1", "1", 10, "180.00", session="CLIENT1->OMS", account="ACC1", ts=t + 2, tif="1")]
    for cmd in day:
        eng.process(cmd)
    eng.flush()
    assert not [o for o in eng.open_orders() if o.tif == "0"]
    journal.close()
    started = time.time_ns()
    for _ in range(2):
        server = ServerProcess(data).start()
        assert server.stop() == 0
    rolls = [r for r in iter_records(journal_dir(data)) if r["type"] == ev.CLOCK and r.get("end_of_day")]
    assert len(rolls) == 1 and rolls[0]["ts"] >= started      # the first start rolled; the second had nothing to
    again = Engine(cfg, Journal(journal_dir(data), fsync="os"), lambda: ReferenceBook(capacity=256),
                   risk=RiskEngine(cfg))
    again.replay(iter_records(journal_dir(data)))
    assert [o.cl_ord_id for o in again.open_orders()] == ["G1"]
    assert again.day_first_ts is None
    acc1 = next(e for e in again.exposures("ACC1"))
    assert acc1["filled_notional_today"] in ("0", "0.00")
    again.journal.close()
