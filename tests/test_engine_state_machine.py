"""Stateful property test of the engine (hypothesis RuleBasedStateMachine).

After every step: CumQty + LeavesQty = OrderQty for live orders, the book holds exactly the
open orders with their leaves, positions and resting exposure equal what the fills and open
orders say, each command got the reports FIX prescribes, a rejected command changed nothing
but the audit log, and replaying the journaled commands through a fresh engine gives the
identical events and state.
"""
from __future__ import annotations

from collections import defaultdict

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from oms_trading.audit import schema as ev
from oms_trading.engine.replay_check import NOT_FROM_COMMANDS
from oms_trading.engine.orders import CLOSED_STATUSES

from tests.test_engine_common import (S1, S2, S3, cancel, kill, limit, make_config, make_engine, new, replace,
                                      reports, strip)

SESSIONS = (S1, S2, S3)
EXTRA = """
[risk.instruments.AAPL]
max_long_position = 400
max_short_position = 400
"""
REJECT_TYPES = {ev.ORDER_REJECTED, ev.CANCEL_REJECTED, ev.REPLACE_REJECTED, ev.LIMIT_CHANGE_REJECTED}
ORDER_REPORT_TYPES = {ev.ORDER_ACCEPTED, ev.ORDER_PARTIALLY_FILLED, ev.ORDER_FILLED, ev.ORDER_CANCELED,
                      ev.ORDER_REPLACED, ev.ORDER_EXPIRED}

prices = st.integers(9500, 10500).map(lambda t: f"{t // 100}.{t % 100:02d}")
qtys = st.sampled_from([1, 5, 10, 50, 100, 150, 300])


def state_of(eng) -> tuple:
    """Everything a command may change, except counters that reports consume (ExecID)."""
    orders = tuple((o.order_id, o.cl_ord_id, o.status, o.qty, o.cum_qty, o.leaves_qty, o.price_ticks,
                    o.notional_ticks) for o in eng.orders.values())
    books = tuple(tuple(sorted(b.orders())) for b in eng.books)
    risk = eng.risk.snapshot() if eng.risk is not None else None
    return (orders, books, eng.pos.AI.tobytes(), eng.pos.A.tobytes(), eng.pos.I.tobytes(), repr(risk),
            tuple(sorted(eng.by_cl_ord_id.items())))


class EngineMachine(RuleBasedStateMachine):
    numba = False

    def __init__(self) -> None:
        super().__init__()
        self.cfg = make_config(EXTRA)
        self.eng = make_engine(numba=self.numba, config=self.cfg)
        self.ts = 1_000
        self.n = 0
        self.cl_ids: dict[str, list[str]] = {s: [] for s in SESSIONS}
        self.last_exec_id = 0

    # -- driving -------------------------------------------------------------------------

    def run(self, cmd: dict) -> list[dict]:
        self.ts += 1_000_000
        cmd["ts"] = self.ts
        before = state_of(self.eng)
        events = self.eng.process(cmd)
        assert cmd["type"] == ev.STATUS_REQUESTED or events[0]["type"] == cmd["type"]
        rs = reports(events)
        self.check_reports(cmd, rs)
        if rs and all(e["type"] in REJECT_TYPES for e in rs):
            assert state_of(self.eng) == before, f"rejected {cmd['type']} changed state"
        return rs

    def next_cl(self, session: str) -> str:
        self.n += 1
        cl = f"c{self.n}"
        self.cl_ids[session].append(cl)
        return cl

    @rule(session=st.sampled_from(SESSIONS), side=st.sampled_from("12"), qty=qtys, price=prices,
          tif=st.sampled_from("0134"), market=st.booleans(), dup=st.booleans())
    def new_order(self, session, side, qty, price, tif, market, dup):
        if dup and self.cl_ids[session]:
            cl = self.cl_ids[session][-1]
        else:
            cl = self.next_cl(session)
        ord_type = "1" if market and tif in "34" else "2"
        rs = self.run(new(cl, side, qty, price, session=session, tif=tif, ord_type=ord_type))
        if dup and len(self.cl_ids[session]) and cl == self.cl_ids[session][-1] and rs[0]["type"] == ev.ORDER_REJECTED \
                and rs[0]["rule"] == "duplicate_cl_ord_id":
            assert rs[0]["rej_reason"] == 6

    @precondition(lambda self: any(self.cl_ids.values()))
    @rule(data=st.data(), session=st.sampled_from(SESSIONS))
    def cancel_order(self, data, session):
        ids = self.cl_ids[session] or ["nope"]
        orig = data.draw(st.sampled_from(ids))
        self.run(cancel(self.next_cl(session), orig, session=session))

    @precondition(lambda self: any(self.cl_ids.values()))
    @rule(data=st.data(), session=st.sampled_from(SESSIONS), qty=qtys, price=st.none() | prices)
    def replace_order(self, data, session, qty, price):
        ids = self.cl_ids[session] or ["nope"]
        orig = data.draw(st.sampled_from(ids))
        self.run(replace(self.next_cl(session), orig, qty, price, session=session))

    @rule(session=st.sampled_from(SESSIONS))
    def mass_cancel(self, session):
        self.run({"type": ev.MASS_CANCEL_REQUESTED, "ts": 0, "session": session, "cl_ord_id": self.next_cl(session),
                  "mass_cancel_type": "7", "symbol": None, "side": None, "account": None})

    @rule(eod=st.booleans())
    def clock(self, eod):
        self.run({"type": ev.CLOCK, "ts": 0, "end_of_day": int(eod)})

    @rule(scope=st.sampled_from(["account:A1", "account:A2", "instrument:AAPL", "default"]),
          name=st.sampled_from(["max_order_qty", "max_long_position", "credit_limit", "price_collar_ticks"]),
          value=st.sampled_from(["0", "100", "200", "60000", "x"]), temporary=st.booleans())
    def change_limit(self, scope, name, value, temporary):
        expires = self.ts + 3_000_000 if temporary else None
        self.run(limit(scope, name, value, expires_ts=expires))

    @rule(scope=st.sampled_from(["global", "account:A2", f"session:{S1}", "instrument:AAPL"]),
          action=st.sampled_from(["engage", "release"]))
    def kill_switch(self, scope, action):
        self.run(kill(scope, action=action))

    @rule(session=st.sampled_from(SESSIONS))
    def status(self, session):
        ids = self.cl_ids[session]
        cmd = {"type": ev.STATUS_REQUESTED, "ts": 0, "session": session, "cl_ord_id": ids[-1] if ids else "x",
               "order_id": None, "symbol": None, "side": None}
        before = len(self.eng.journal.records)
        rs = self.run(cmd)
        assert len(rs) == 1 and rs[0]["exec_type"] == "I"
        assert len(self.eng.journal.records) == before   # a status query is not journaled

    # -- what FIX prescribes per command ----------------------------------------------------

    def check_reports(self, cmd: dict, rs: list[dict]) -> None:
        kind = cmd["type"]
        for e in rs:
            if e["type"] in ORDER_REPORT_TYPES or e["type"] == ev.ORDER_REJECTED:
                exec_id = int(e["exec_id"])
                assert exec_id > self.last_exec_id, "ExecIDs are unique and increasing"
                self.last_exec_id = exec_id
                if e["type"] != ev.ORDER_REJECTED and e["ord_status"] not in CLOSED_STATUSES:
                    assert e["cum_qty"] + e["leaves_qty"] == e["qty"], e
                if e["type"] in (ev.ORDER_FILLED, ev.ORDER_PARTIALLY_FILLED):
                    assert e["exec_type"] == "F" and e["last_qty"] > 0 and e["last_px"]
                    assert e["ord_status"] == ("2" if e["leaves_qty"] == 0 else "1")
                if e["type"] in (ev.ORDER_CANCELED, ev.ORDER_EXPIRED):
                    assert e["leaves_qty"] == 0 and e["ord_status"] == e["exec_type"]
        if kind == ev.ORDER_RECEIVED:
            first = rs[0]
            if first["type"] == ev.ORDER_REJECTED:
                assert len(rs) == 1 and first["rej_reason"] is not None and first["text"] and first["rule"]
            else:
                assert first["type"] == ev.ORDER_ACCEPTED and first["exec_type"] == "0" and first["ord_status"] == "0"
                mine = [e for e in rs if e["order_id"] == first["order_id"]]
                last = mine[-1]
                if cmd["tif"] in "34" or cmd["ord_type"] == "1":   # IOC/FOK/market: never rests
                    assert last["ord_status"] in ("2", "4", "C"), last
                    if last["ord_status"] == "4":                   # canceled, not expired: only by STP
                        assert last["rule"] == "stp" and last["text"].startswith("Self-trade prevention"), last
                if cmd["tif"] == "4":                               # FOK: all or nothing
                    assert last["ord_status"] in ("2", "C") or last.get("rule") == "stp"
                    if last["ord_status"] == "C":
                        assert last["cum_qty"] == 0
        elif kind == ev.CANCEL_REQUESTED:
            assert len(rs) == 1
            e = rs[0]
            if e["type"] == ev.CANCEL_REJECTED:
                assert e["response_to"] == "1" and e["rej_reason"] in (0, 1, 6, 99)
                if e["order_id"] is None:
                    assert e["rej_reason"] == 1
            else:
                # OrigClOrdID: the ClOrdID of the last accepted link of the chain (FIX 4.4)
                assert e["type"] == ev.ORDER_CANCELED and e["cl_ord_id"] == cmd["cl_ord_id"]
                assert e["orig_cl_ord_id"] is not None
        elif kind == ev.REPLACE_REQUESTED:
            e = rs[0]
            if e["type"] == ev.REPLACE_REJECTED:
                assert len(rs) == 1 and e["response_to"] == "2" and e["rej_reason"] in (0, 1, 2, 6, 99)
            else:
                assert e["type"] == ev.ORDER_REPLACED and e["exec_type"] == "5"
                assert e["cl_ord_id"] == cmd["cl_ord_id"] and e["orig_cl_ord_id"] is not None
        elif kind == ev.KILL_SWITCH_REQUESTED:
            if rs[0]["type"] == ev.KILL_SWITCH_ENGAGED:
                assert rs[0]["affected"] == len(rs) - 1
                assert all(e["type"] == ev.ORDER_CANCELED for e in rs[1:])

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def quantities(self):
        for o in self.eng.orders.values():
            if o.is_open:
                assert o.leaves_qty > 0 and o.cum_qty + o.leaves_qty == o.qty, vars
            else:
                assert o.leaves_qty == 0

    @invariant()
    def book_matches_open_orders(self):
        for inst in self.cfg.instruments:
            book = {(oid, qty) for oid, _s, _p, qty, _a, _t in self.eng.books[inst.index].orders()}
            open_ = {(o.order_id, o.leaves_qty) for o in self.eng.orders.values()
                     if o.is_open and o.instrument.index == inst.index}
            assert book == open_

    @invariant()
    def positions_equal_fills(self):
        pos = defaultdict(int)
        open_buy = defaultdict(int)
        open_sell = defaultdict(int)
        for e in self.eng.journal.records:
            if e["type"] in (ev.ORDER_FILLED, ev.ORDER_PARTIALLY_FILLED):
                pos[(e["account"], e["symbol"])] += e["last_qty"] if e["side"] == "1" else -e["last_qty"]
        for o in self.eng.orders.values():
            if o.is_open:
                (open_buy if o.is_buy else open_sell)[(o.account, o.symbol)] += o.leaves_qty
        rows = {(r["account"], r["symbol"]): r for r in self.eng.positions()}
        for key in set(pos) | set(rows) | set(open_buy) | set(open_sell):
            r = rows.get(key, {"position": 0, "open_buy_qty": 0, "open_sell_qty": 0})
            assert r["position"] == pos[key] and r["open_buy_qty"] == open_buy[key] \
                and r["open_sell_qty"] == open_sell[key], (key, r)

    @invariant()
    def replay_reproduces(self):
        records = self.eng.journal.records
        fresh = make_engine(numba=self.numba, config=self.cfg)
        events = []
        for cmd in self.eng.journal.commands():
            events.extend(fresh.process(strip(cmd)))
        assert [strip(e) for e in events] == [strip(e) for e in records if e["type"] != ev.ENGINE_RULES]
        assert state_of(fresh) == state_of(self.eng)
        folded = make_engine(numba=self.numba, config=self.cfg)
        folded.journal = None
        folded.replay(records)
        assert state_of(folded) == state_of(self.eng)
        assert folded.replay_check.differences == 0, folded.replay_check.first.describe()
        assert folded.replay_check.events_checked == sum(1 for r in records if r["type"] not in ev.COMMAND_TYPES
                                                         and r["type"] not in NOT_FROM_COMMANDS)


class NumbaEngineMachine(EngineMachine):
    numba = True


TestEngineReference = EngineMachine.TestCase
TestEngineReference.settings = settings(max_examples=60, stateful_step_count=30, deadline=None,
                                        suppress_health_check=[HealthCheck.too_slow])
TestEngineNumba = NumbaEngineMachine.TestCase
TestEngineNumba.settings = settings(max_examples=15, stateful_step_count=25, deadline=None,
                                    suppress_health_check=[HealthCheck.too_slow])


def test_order_value_beyond_the_sanity_cap_is_rejected_and_changes_nothing():
    """Limits off, an order whose value would not fit the int64 sums (2**53 money units) gets a
    rejected ExecutionReport with a reason; the positions stay as they were, and a replace to
    such a value is refused the same way."""
    from oms_trading.engine.positions import ORDER_VALUE_CAP
    from tests.test_engine_common import make_engine, new, replace, reports
    eng = make_engine(risk=False, numba=True)
    before = eng.pos.mem.copy()
    out = reports(eng.process(new("HUGE", "1", 10**6, price="50000000000.00")))
    assert len(out) == 1 and out[0]["ord_status"] == "8" and out[0]["rej_reason"] == 3
    assert out[0]["rule"] == "order_value_cap" and "out of range" in out[0]["text"]
    assert (eng.pos.mem == before).all()
    assert reports(eng.process(new("OK", "1", 10, price="100.00")))[0]["ord_status"] == "0"
    out = reports(eng.process(replace("OK2", "OK", 10**6, price="50000000000.00")))
    assert out[0]["type"] == "replace_rejected" and "out of range" in out[0]["text"]
    assert 10**6 * 5 * 10**12 * eng.pos.mult[0] > ORDER_VALUE_CAP
