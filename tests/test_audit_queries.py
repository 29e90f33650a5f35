"""Audit query functions (oms_trading.audit.queries) on a trading day produced by a real engine:
Engine + RiskEngine + ReferenceBook writing a real Journal in a tmp data dir, projected into
DuckDB by the Projection, then queried."""
from __future__ import annotations

import csv
import io
import json

import duckdb
import pyarrow.parquet as pq
import pytest

from oms_trading.audit import queries as Q
from oms_trading.audit import schema as ev
from oms_trading.audit.journal import Journal
from oms_trading.audit.paths import duckdb_path, journal_dir
from oms_trading.audit.projection import Projection
from oms_trading.book import ReferenceBook
from oms_trading.compliance.risk import RiskEngine
from oms_trading.config import load_config
from oms_trading.engine.engine import Engine

DAY = "2026-11-25"
T0 = Q.parse_ts("2026-11-25T14:00:00Z")
S1, S2 = "CLIENT1->OMS", "CLIENT2->OMS"
MIN = 60 * 10**9


def _new(cl, side, qty, price, session=S1, account="ACC1", symbol="AAPL", tif="0", ord_type="2", ts=T0):
    return {"type": ev.ORDER_RECEIVED, "ts": ts, "session": session, "cl_ord_id": cl, "account": account,
            "symbol": symbol, "side": side, "ord_type": ord_type, "tif": tif,
            "price": price if ord_type == "2" else None, "qty": qty}


def _cancel(cl, orig, session=S1, ts=T0):
    return {"type": ev.CANCEL_REQUESTED, "ts": ts, "session": session, "cl_ord_id": cl, "orig_cl_ord_id": orig,
            "order_id": None, "symbol": None, "side": None}


def _replace(cl, orig, qty, price=None, session=S1, ts=T0):
    return {"type": ev.REPLACE_REQUESTED, "ts": ts, "session": session, "cl_ord_id": cl, "orig_cl_ord_id": orig,
            "order_id": None, "symbol": None, "side": None, "ord_type": None, "tif": None, "price": price, "qty": qty}


def _limit(scope, name, value, ts, user="risk1", reason="desk request", expires_ts=None):
    return {"type": ev.LIMIT_CHANGE_REQUESTED, "ts": ts, "user": user, "approver": None, "reason": reason,
            "scope": scope, "limit": name, "new_value": value, "expires_ts": expires_ts, "request_id": None}


def _kill(scope, action, ts, reason="runaway algo"):
    return {"type": ev.KILL_SWITCH_REQUESTED, "ts": ts, "user": "risk2", "approver": None, "reason": reason,
            "scope": scope, "action": action, "request_id": None}


def _mass_cancel(session, ts, cl=None, symbol=None, reason=None):
    """An OrderMassCancelRequest as the gateway journals it: a client's own (35=q: a ClOrdID,
    type 1 = one symbol, 7 = all) or the session's cancel on disconnect (no ClOrdID, a reason)."""
    cmd = {"type": ev.MASS_CANCEL_REQUESTED, "ts": ts, "session": session, "cl_ord_id": cl,
           "mass_cancel_type": "1" if symbol else "7", "symbol": symbol, "side": None, "account": None}
    if reason is not None:
        cmd["reason"] = reason
    return cmd


def run_trading_day(data_dir) -> dict:
    """Run a small but complete trading day through a real engine writing a real journal in
    ``data_dir``; returns facts the tests check against (times, ids)."""
    cfg = load_config(None)
    journal = Journal(journal_dir(data_dir), fsync="os")
    engine = Engine(cfg, journal, lambda: ReferenceBook(capacity=256), risk=RiskEngine(cfg))
    t = T0
    facts: dict = {}

    def go(cmd):
        out = engine.process(cmd)
        engine.flush()
        return out
    # a resting sell on ACC2, bought in two pieces by ACC1
    go(_new("S-1", "2", 300, "190.00", session=S2, account="ACC2", ts=t))
    go(_new("B-1", "1", 100, "190.00", ts=t + 1 * MIN))                       # fill 100
    facts["buy_order"] = go(_new("B-2", "1", 500, "189.50", ts=t + 2 * MIN))[1]["order_id"]
    go(_replace("B-2a", "B-2", 400, "190.00", ts=t + 3 * MIN))                 # replace: trades 200
    go(_replace("B-2b", "B-2a", 300, "189.00", ts=t + 4 * MIN))                # second replace
    go(_cancel("B-2c", "B-2b", ts=t + 5 * MIN))                                # canceled, partly filled
    facts["limit_ts"] = t + 6 * MIN
    go(_limit("account:ACC1", "max_order_notional", "10000", facts["limit_ts"]))
    go(_new("B-3", "1", 100, "190.00", ts=t + 7 * MIN))                        # rejected: notional
    go(_new("B-4", "1", 10, "185.00", ts=t + 8 * MIN))                         # rests, left open
    go(_new("B-5", "1", 10, "100.00", ts=t + 9 * MIN))                         # rejected: collar
    go(_cancel("X-1", "NOPE", ts=t + 10 * MIN))                                # cancel reject: unknown
    go(_new("M-1", "2", 10, "420.00", session=S2, account="ACC2", symbol="MSFT", tif="1", ts=t + 11 * MIN))
    facts["kill_ts"] = t + 12 * MIN
    go(_kill("account:ACC2", "engage", facts["kill_ts"]))                      # cancels M-1
    go(_kill("account:ACC2", "release", t + 13 * MIN))
    facts["limit2_ts"] = t + 14 * MIN
    go(_limit("account:ACC1", "max_order_notional", "20000", facts["limit2_ts"], user="risk2",
              reason="raised after review"))
    go(_new("I-1", "1", 10, "250.00", symbol="TSLA", tif="3", ts=t + 15 * MIN))  # IOC, no liquidity: expires
    # the client's own mass cancel of its MSFT orders (B-4 on AAPL stays open), then S2's
    # cancel on disconnect
    go(_new("Q-1", "1", 5, "415.00", symbol="MSFT", ts=t + 15 * MIN + 1))
    go(_new("Q-2", "1", 5, "414.00", symbol="MSFT", ts=t + 15 * MIN + 2))
    go(_mass_cancel(S1, t + 15 * MIN + 3, cl="Q-MC", symbol="MSFT"))          # cancels
    go(_new("D-1", "2", 10, "430.00", session=S2, account="ACC2", symbol="MSFT", ts=t + 15 * MIN + 4))
    go(_mass_cancel(S2, t + 15 * MIN + 5, reason="cancel on disconnect"))     # cancels D-1
    facts["end"] = t + 16 * MIN
    facts["last_seq"] = journal.last_seq
    journal.close()
    return facts


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    data = tmp_path_factory.mktemp("auditday")
    facts = run_trading_day(data)
    proj = Projection(duckdb_path(data), journal_dir(data))
    assert proj.catch_up() == facts["last_seq"]
    con = proj.cursor()
    yield data, con, facts
    con.close()
    proj.close()


def test_lifecycle_by_order_id_includes_commands_and_replaces(day):
    _, con, facts = day
    rows = Q.lifecycle(con, order_id=facts["buy_order"])
    types = [r["type"] for r in rows]
    assert types == ["order_received", "order_accepted", "replace_requested", "order_replaced",
                     "order_partially_filled", "replace_requested", "order_replaced", "cancel_requested",
                     "order_canceled"]
    assert [r["seq"] for r in rows] == sorted(r["seq"] for r in rows)
    assert rows[-1]["ord_status"] == "4" and rows[-1]["cum_qty"] == 200
    json.dumps(rows)  # plain JSON-able values


@pytest.mark.parametrize("cl", ["B-2", "B-2a", "B-2b", "B-2c"])
def test_lifecycle_by_any_cl_ord_id_of_the_chain(day, cl):
    _, con, facts = day
    by_id = Q.lifecycle(con, order_id=facts["buy_order"])
    assert Q.lifecycle(con, cl_ord_id=cl) == by_id
    assert Q.lifecycle(con, cl_ord_id=cl, session=S1) == by_id
    assert Q.lifecycle(con, cl_ord_id=cl, session=S2) == []


def test_lifecycle_of_rejected_order_and_unknown_cancel(day):
    _, con, _ = day
    rows = Q.lifecycle(con, cl_ord_id="B-3")
    assert [r["type"] for r in rows] == ["order_received", "order_rejected"]
    assert rows[1]["rule"] == "max_order_notional" and rows[1]["limit_value"] and rows[1]["actual_value"]
    rows = Q.lifecycle(con, cl_ord_id="X-1")
    assert [r["type"] for r in rows] == ["cancel_requested", "cancel_rejected"]
    assert Q.lifecycle(con, cl_ord_id="nope") == []
    assert Q.lifecycle(con, order_id=999999) == []
    with pytest.raises(Q.QueryError):
        Q.lifecycle(con)


def test_lifecycle_of_an_order_canceled_by_a_mass_cancel_or_kill_switch_shows_the_cause(day):
    """The order's cancel says "Mass cancel" / "Kill switch engaged": its lifecycle also shows
    the command that did it (who asked, from where, why), in seq order; no other command."""
    _, con, _ = day
    rows = Q.lifecycle(con, cl_ord_id="Q-2")
    assert [r["type"] for r in rows] == ["order_received", "order_accepted", "mass_cancel_requested",
                                         "order_canceled"]
    mc = rows[2]
    assert (mc["cl_ord_id"], mc["session"], mc["symbol"], mc["seq"]) == ("Q-MC", S1, "MSFT", rows[3]["seq"] - 2)
    assert Q.lifecycle(con, order_id=rows[-1]["order_id"], session=S1) == rows
    rows = Q.lifecycle(con, cl_ord_id="D-1", session=S2)
    assert [r["type"] for r in rows] == ["order_received", "order_accepted", "mass_cancel_requested",
                                         "order_canceled"]
    assert (rows[2]["cl_ord_id"], rows[2]["session"], rows[2]["reason"]) == (None, S2, "cancel on disconnect")
    rows = Q.lifecycle(con, cl_ord_id="M-1")
    assert [r["type"] for r in rows] == ["order_received", "order_accepted", "kill_switch_requested",
                                         "order_canceled"]
    assert (rows[2]["user"], rows[2]["reason"], rows[2]["scope"]) == ("risk2", "runaway algo", "account:ACC2")
    # an open order, an expired one: nothing else
    assert [r["type"] for r in Q.lifecycle(con, cl_ord_id="B-4")] == ["order_received", "order_accepted"]
    assert [r["type"] for r in Q.lifecycle(con, cl_ord_id="I-1")] == ["order_received", "order_accepted",
                                                                       "order_expired"]


def test_lifecycle_finds_a_mass_cancel_many_records_back():
    """A mass cancel of many orders: its last cancel is hundreds of records after the command."""
    from oms_trading.audit.projection import create_table_sql
    con = duckdb.connect()
    con.execute(create_table_sql())
    con.execute("INSERT INTO audit_events (seq, ts, type, session, cl_ord_id, reason, prev_hash, hash) "
                "VALUES (1, ?, 'order_received', ?, 'Z-1', NULL, '0', '1'), "
                "(2, ?, 'mass_cancel_requested', ?, NULL, 'cancel on disconnect', '0', '1')", [T0, S1, T0, S1])
    con.execute("INSERT INTO audit_events (seq, ts, type, order_id, session, text, prev_hash, hash) "
                "SELECT 2 + i, ?, 'order_canceled', i, ?, 'Mass cancel', '0', '1' FROM range(1, 501) t(i)",
                [T0, S1])
    rows = Q.lifecycle(con, order_id=500)
    assert [(r["seq"], r["type"]) for r in rows] == [(2, "mass_cancel_requested"), (502, "order_canceled")]


def test_search_filters_and_paging(day):
    _, con, facts = day
    rejects = Q.search(con, event="rejects")
    assert {r["type"] for r in rejects} == {"order_rejected", "cancel_rejected"}
    breaches = [r for r in rejects if r["rule"]]
    assert {r["rule"] for r in breaches} >= {"max_order_notional", "price_collar_pct"}
    assert all(r["limit_value"] is not None and r["actual_value"] is not None for r in breaches
               if r["rule"] != "unknown_order")
    fills = Q.search(con, event="order_filled,order_partially_filled", account="ACC1")
    assert sum(r["last_qty"] for r in fills) == 300 and all(r["account"] == "ACC1" for r in fills)
    msft = Q.search(con, symbol="MSFT")
    assert {r["type"] for r in msft} >= {"order_accepted", "order_canceled"}
    window = Q.search(con, ts_from=facts["kill_ts"], ts_to=facts["kill_ts"] + 1)
    assert window and all(r["ts"] == facts["kill_ts"] for r in window)
    assert [r["seq"] for r in Q.search(con, limit=3, offset=2)] == [3, 4, 5]
    assert Q.search(con, cl_ord_id="B-2a", event="order_replaced")[0]["orig_cl_ord_id"] == "B-2"
    # user input is bound, never spliced into SQL
    assert Q.search(con, account="x' OR '1'='1") == []
    with pytest.raises(Q.QueryError):
        Q.search(con, limit=0)
    with pytest.raises(Q.QueryError):
        Q.search(con, ts_from=10, ts_to=5)


def test_search_by_account_or_symbol_finds_cancel_and_replace_requests(day):
    """A cancel or replace (35=F/G) normally carries no Account (1) nor Symbol (55): its command
    row has neither. A search by account or symbol still finds it, by its answer (the record
    right after it), and every other filter still applies."""
    _, con, _ = day
    asked = "replace_requested,cancel_requested"
    reqs = Q.search(con, event=asked, account="ACC1")
    assert [r["cl_ord_id"] for r in reqs] == ["B-2a", "B-2b", "B-2c"]
    assert all(r["account"] is None for r in reqs)                 # rows as journaled
    assert [r["cl_ord_id"] for r in Q.search(con, event=asked, symbol="AAPL")] == ["B-2a", "B-2b", "B-2c"]
    assert [r["cl_ord_id"] for r in Q.search(con, event=asked, account="ACC1", symbol="AAPL")] == [
        "B-2a", "B-2b", "B-2c"]
    assert Q.search(con, event=asked, account="ACC2") == [] and Q.search(con, event=asked, symbol="MSFT") == []
    assert [r["cl_ord_id"] for r in Q.search(con, event=asked, account="ACC1", limit=1, offset=1)] == ["B-2b"]
    at = Q.search(con, account="ACC1", ts_from=T0 + 5 * MIN, ts_to=T0 + 5 * MIN + 1)
    assert [(r["type"], r["cl_ord_id"]) for r in at] == [("cancel_requested", "B-2c"), ("order_canceled", "B-2c")]
    # without an event filter: the account's rows plus its requests, nothing of another account;
    # a cancel of an unknown order (its reject names no account) is nobody's
    acc1 = Q.search(con, account="ACC1")
    assert {r["cl_ord_id"] for r in acc1 if r["account"] is None and r["scope"] is None} == {"B-2a", "B-2b", "B-2c"}
    assert {r["scope"] for r in acc1 if r["scope"] is not None} == {"account:ACC1"}   # its limit changes
    assert all(r["account"] in ("ACC1", None) for r in acc1) and "X-1" not in {r["cl_ord_id"] for r in acc1}
    assert "B-2c" not in {r["cl_ord_id"] for r in Q.search(con, account="ACC2")}


def test_parse_ts():
    assert Q.parse_ts("2026-11-25T14:00:00Z") == T0
    assert Q.parse_ts("2026-11-25T15:00:00+01:00") == T0
    assert Q.parse_ts("2026-11-25T14:00:00.000000001Z") == T0 + 1
    assert Q.parse_ts(str(T0)) == T0 and Q.parse_ts(T0) == T0
    assert Q.parse_ts("2026-11-25") == T0 - 14 * 3600 * 10**9
    assert Q.iso_ns(T0 + 5) == "2026-11-25T14:00:00.000000005Z"
    with pytest.raises(Q.QueryError):
        Q.parse_ts("yesterday")


def test_export_csv_parquet_roundtrip(day, tmp_path):
    _, con, facts = day
    n = Q.export(con, "csv", tmp_path / "a.csv")
    assert n == facts["last_seq"]
    rows = list(csv.DictReader(open(tmp_path / "a.csv", newline="")))
    assert len(rows) == n and rows[0]["seq"] == "1" and rows[-1]["hash"]
    buf = io.BytesIO()
    n2 = Q.export(con, "parquet", buf, ts_from=facts["limit_ts"])
    t = pq.read_table(io.BytesIO(buf.getvalue()))
    assert t.num_rows == n2 and 0 < n2 < n and min(t.column("ts").to_pylist()) >= facts["limit_ts"]
    with pytest.raises(Q.QueryError):
        Q.export(con, "xml", buf)


def test_export_cat(day, tmp_path):
    _, con, facts = day
    n = Q.export(con, "cat", tmp_path / "cat.jsonl")
    lines = [json.loads(x) for x in (tmp_path / "cat.jsonl").read_text().splitlines()]
    assert len(lines) == n
    kinds = [x["type"] for x in lines]
    assert set(kinds) == {"MENO", "MEOM", "MEOC", "MEOT"}
    assert kinds.count("MEOT") == 2          # two trades, each reported once with both sides
    meno = [x for x in lines if x["type"] == "MENO" and x["clOrdID"] == "B-2"][0]
    assert meno["side"] == "B" and meno["orderType"] == "LMT" and meno["price"] == "189.50"
    assert meno["quantity"] == 500 and meno["timeInForce"] == {"DAY": 20261125}
    assert meno["eventTimestamp"] == "20261125 090200.000000000"   # 14:02 UTC = 09:02 New York
    meom = [x for x in lines if x["type"] == "MEOM"]
    # the orderID stays, so the Order Key stays: no prior* fields (tests/test_cat_review.py)
    assert all((x["orderKeyDate"], x["orderID"]) == (meno["orderKeyDate"], meno["orderID"]) for x in meom)
    assert not any("priorOrderID" in x or "priorOrderKeyDate" in x for x in meom)
    meoc = {x["clOrdID"]: x for x in lines if x["type"] == "MEOC"}
    assert meoc["B-2c"]["initiator"] == "C" and meoc["B-2c"]["cancelQty"] == 100
    assert meoc["M-1"]["initiator"] == "F"                          # kill switch
    assert meoc["I-1"]["initiator"] == "F"                          # IOC expired
    t = [x for x in lines if x["type"] == "MEOT"][0]
    assert t["buyDetails"]["side"] == "B" and t["sellDetails"]["side"] == "SL"
    assert isinstance(t["tradeID"], str) and t["price"] == "190.00"


def test_export_cat_mass_cancel_initiator(day, tmp_path):
    """The client's own OrderMassCancelRequest cancels for the customer (C); the session's
    cancel on disconnect and the kill switch are the firm's (F)."""
    _, con, facts = day
    Q.export(con, "cat", tmp_path / "cat.jsonl")
    lines = [json.loads(x) for x in (tmp_path / "cat.jsonl").read_text().splitlines()]
    meoc = {x["clOrdID"]: x["initiator"] for x in lines if x["type"] == "MEOC"}
    assert (meoc["Q-1"], meoc["Q-2"]) == ("C", "C")                 # 35=q from CLIENT1
    assert meoc["D-1"] == "F"                                       # cancel on disconnect
    assert meoc["M-1"] == "F" and meoc["B-2c"] == "C"
    # a range starting at the mass cancel still sees the command that caused the cancels
    buf = io.BytesIO()
    Q.export(con, "cat", buf, ts_from=T0 + 15 * MIN + 3)
    later = {x["clOrdID"]: x["initiator"] for x in map(json.loads, buf.getvalue().splitlines())
             if x["type"] == "MEOC"}
    assert later == {"Q-1": "C", "Q-2": "C", "D-1": "F"}


def test_cat_initiator_is_decided_by_the_nearest_command():
    """A client's cancel earlier does not make a later firm cancel (self-trade prevention after a
    new order, a kill switch) the customer's."""
    def row(seq, kind, oid=None, **kw):
        return {"seq": seq, "ts": T0 + seq, "type": kind, "order_id": oid, "cl_ord_id": kw.pop("cl", None),
                "session": kw.pop("session", None), "qty": 10, "cum_qty": 0, **kw}
    rows = [row(1, ev.CANCEL_REQUESTED, cl="C-1", session=S1), row(2, ev.ORDER_CANCELED, 1),
            row(3, ev.ORDER_RECEIVED, cl="N-1", session=S1), row(4, ev.ORDER_CANCELED, 2, rule="stp"),
            row(5, ev.KILL_SWITCH_REQUESTED, user="risk2", reason="runaway algo"),
            row(6, ev.KILL_SWITCH_ENGAGED), row(7, ev.ORDER_CANCELED, 3), row(8, ev.ORDER_CANCELED, 4),
            row(9, ev.MASS_CANCEL_REQUESTED, cl="Q-1", session=S1), row(10, ev.ORDER_CANCELED, 5),
            row(11, ev.ORDER_CANCELED, 6), row(12, ev.MASS_CANCEL_DONE, cl="Q-1", session=S1)]
    got = [(d["seq"], d["initiator"]) for d in Q.cat_events(rows) if d["type"] == "MEOC"]
    assert got == [(2, "C"), (4, "F"), (7, "F"), (8, "F"), (10, "C"), (11, "C")]


def test_limits_at_point_in_time(day):
    _, con, facts = day
    base = Q.baseline_from_config(load_config(None))
    before = {r["limit"]: r for r in Q.limits_at(con, account="ACC1", at=facts["limit_ts"] - 1, baseline=base)}
    assert before["max_order_notional"]["value"] == "5000000"
    assert before["max_order_notional"]["source"] == "config" and before["max_order_notional"]["scope"] == "default"
    mid = {r["limit"]: r for r in Q.limits_at(con, account="ACC1", at=facts["limit_ts"], baseline=base)}
    r = mid["max_order_notional"]
    assert (r["value"], r["scope"], r["set_by"], r["reason"], r["set_at"]) == (
        "10000", "account:ACC1", "risk1", "desk request", facts["limit_ts"])
    after = {r["limit"]: r for r in Q.limits_at(con, account="ACC1", baseline=base)}
    assert after["max_order_notional"]["value"] == "20000" and after["max_order_notional"]["set_by"] == "risk2"
    # ACC2's own config override; instrument override TSLA collar applies too
    acc2 = Q.limits_at(con, account="ACC2", at=facts["kill_ts"], baseline=base)
    by = {(r["limit"], r["scope"]): r for r in acc2}
    assert by[("max_order_notional", "account:ACC2")]["value"] == "1000000"
    assert by[("price_collar_pct", "instrument:TSLA")]["value"] == "5"
    assert by[("kill_switch", "account:ACC2")]["value"] == "engaged"
    assert ("kill_switch", "account:ACC2") not in {(r["limit"], r["scope"]) for r in
                                                     Q.limits_at(con, account="ACC2", baseline=base)}
    # without a baseline only journaled changes are known
    only = Q.limits_at(con, account="ACC1")
    assert [r["limit"] for r in only] == ["max_order_notional"]


def test_eod_report_csv_and_html(day):
    _, con, facts = day
    data = Q.eod_data(con, date=DAY)
    ended = {o["cl_ord_id"]: o["ended"] for o in data["blotter"]}
    assert ended["B-1"] == "filled"
    assert ended["B-2c"] == "partly filled, canceled"
    assert ended["S-1"] == "filled"
    assert ended["B-3"] == "rejected" and ended["B-5"] == "rejected"
    assert ended["B-4"] == "open"
    assert ended["M-1"] == "canceled" and ended["I-1"] == "expired"
    assert [o["cl_ord_id"] for o in data["exceptions"]["pending"]] == ["B-4"]
    pos = {(p["account"], p["symbol"]): p for p in data["positions"]}
    assert pos[("ACC1", "AAPL")]["end_position"] == 300 and pos[("ACC2", "AAPL")]["end_position"] == -300
    rules = {r["rule"] for r in data["exceptions"]["rejects"]}
    assert {"max_order_notional", "price_collar_pct"} <= rules
    controls = [c["type"] for c in data["exceptions"]["controls"]]
    assert controls == ["limit_changed", "kill_switch_engaged", "kill_switch_released", "limit_changed"]
    text = Q.eod_report(con, date=DAY, fmt="csv")
    assert "section,Blotter" in text and "section,Positions" in text and "B-2c" in text
    page = Q.eod_report(con, fmt="html")          # default date: the day of the last event
    assert page.startswith("<!DOCTYPE html>") and "Account ACC1" in page and "<script" not in page
    # the day's last record as an anchor for `oms audit verify --anchor`
    last_seq, last_hash = con.execute(f"SELECT seq, lower(hex(hash)) FROM {Q.TABLE} ORDER BY seq DESC LIMIT 1").fetchall()[0]
    assert [(a["seq"], a["hash"]) for a in data["anchor"]] == [(last_seq, last_hash)]
    assert data["anchor"][0]["verify"] == f"oms audit verify --anchor {last_seq}:{last_hash}"
    assert "section,Journal anchor (keep with this report)" in text and last_hash in text
    empty = Q.eod_report(con, date="2026-11-24", fmt="csv")
    assert "B-1" not in empty
    with pytest.raises(Q.QueryError):
        Q.eod_report(con, date="25/11/2026")


def test_html_escapes_values(tmp_path):
    con = duckdb.connect()
    from oms_trading.audit.projection import create_table_sql
    con.execute(create_table_sql())
    con.execute("INSERT INTO audit_events (seq, ts, type, session, cl_ord_id, account, symbol, text, prev_hash, "
                "hash, ord_status, qty) VALUES (1, ?, 'order_rejected', 'S', '<b>x</b>', 'A&B', 'AAPL', "
                "'<script>alert(1)</script>', '0', '1', '8', 1)", [T0])
    page = Q.eod_report(con, date=DAY, fmt="html")
    assert "<script>" not in page and "&lt;script&gt;" in page and "A&amp;B" in page


def test_eod_lists_a_journal_cut_by_a_crash():
    """A start that found the last command's events cut by a crash journals a mark
    (replay_check.torn_tail_record); the day's report lists it among the exceptions."""
    from oms_trading.audit.projection import create_table_sql
    from oms_trading.engine.replay_check import ReplayCheck, torn_tail_record
    check = ReplayCheck()
    check.command(41, [{"type": "order_accepted"}])
    check.finish()
    mark = torn_tail_record(check, T0 + 5)
    con = duckdb.connect()
    con.execute(create_table_sql())
    con.execute("INSERT INTO audit_events (seq, ts, type, text, details, prev_hash, hash) "
                "VALUES (42, ?, ?, ?, ?, '\\x00', '\\x01')",
                [mark["ts"], mark["type"], mark["text"], '{"command_seq": 41}'])
    data = Q.eod_data(con, date=DAY)
    assert [(c["seq"], c["text"]) for c in data["exceptions"]["journal_cuts"]] == [(42, mark["text"])]
    assert "command seq 41" in mark["text"]
    text = Q.eod_report(con, date=DAY, fmt="csv")
    assert "section,Exceptions: journal cut by a crash" in text and "command seq 41" in text
    assert "journal cut by a crash" in Q.eod_report(con, date=DAY, fmt="html")
