"""CAT-style export reviewed field by field against the CAT Reporting Technical Specifications
for Industry Members (v4.0.0); each test shows a defect a filer would have seen, on data written
by a real engine (helpers of test_audit_queries / test_audit_review)."""
from __future__ import annotations

import json

import pytest

from oms_trading.audit import queries as Q

from .test_audit_queries import MIN, S2, T0, _cancel, _new, _replace
from .test_audit_review import DAY_NS, _clock_eod, _open, _run


def _cat(con, path, **kw):
    Q.export(con, "cat", path, **kw)
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def replaced(tmp_path_factory):
    """Day 1: ACC2 sells S-1 100 and rests S-2 (GTC); ACC1's B-1 rests, is replaced up into S-1
    (trades 100), replaced again, and canceled. S-2 is replaced on day 2 and canceled."""
    data = tmp_path_factory.mktemp("catreplaced")
    _run(data, [
        _new("S-1", "2", 100, "190.00", session=S2, account="ACC2", ts=T0),
        _new("S-2", "2", 300, "195.00", session=S2, account="ACC2", tif="1", ts=T0 + 1),
        _new("B-1", "1", 500, "189.50", ts=T0 + MIN),
        _replace("B-1a", "B-1", 400, "190.00", ts=T0 + 2 * MIN),      # trades 100 with S-1
        _replace("B-1b", "B-1a", 300, "189.00", ts=T0 + 3 * MIN),
        _cancel("B-1c", "B-1b", ts=T0 + 4 * MIN),
        _clock_eod(T0 + 7 * 3600 * 10**9),
        _replace("S-2a", "S-2", 250, "194.00", session=S2, ts=T0 + DAY_NS),
        _cancel("S-2b", "S-2a", session=S2, ts=T0 + DAY_NS + MIN),
    ])
    proj, con = _open(data)
    yield con
    con.close()
    proj.close()


def test_meom_keeps_the_order_key_when_the_order_id_stays(replaced, tmp_path):
    """CAT 4.0.0, Order Modified (MEOM): "If the orderID remains the same during the modification,
    the priorOrderID must remain blank", and orderKeyDate + orderID (+ symbol) is the Order Key
    every later event links to. Our OrderID is kept across a replace: the MEOM, the MEOT and the
    MEOC of a replaced order must carry the MENO's orderKeyDate, and no priorOrderID /
    priorOrderKeyDate (the export restated orderID with a new orderKeyDate, priorOrderID equal
    to orderID: an Order Key CAT has no MENO for, and linkage errors on every later event)."""
    lines = _cat(replaced, tmp_path / "all.jsonl")
    meno = {x["clOrdID"]: x for x in lines if x["type"] == "MENO"}
    key = meno["B-1"]["orderKeyDate"], meno["B-1"]["orderID"]
    meom = [x for x in lines if x["type"] == "MEOM" and x["orderID"] == key[1]]
    assert [x["clOrdID"] for x in meom] == ["B-1a", "B-1b"]
    for x in meom:
        assert (x["orderKeyDate"], x["orderID"]) == key
        assert "priorOrderID" not in x and "priorOrderKeyDate" not in x
        assert x["eventTimestamp"] != x["orderKeyDate"]                 # the modification's own time
    trade = [x for x in lines if x["type"] == "MEOT"][0]
    assert (trade["buyDetails"]["orderKeyDate"], trade["buyDetails"]["orderID"]) == key
    meoc = [x for x in lines if x["type"] == "MEOC" and x["clOrdID"] == "B-1c"][0]
    assert (meoc["orderKeyDate"], meoc["orderID"]) == key and meoc["cancelQty"] == 200


def test_order_key_of_an_order_modified_on_a_later_day(replaced, tmp_path):
    """S-2 (GTC) accepted on day 1, replaced and canceled on day 2: the day-2 export's MEOM and
    MEOC keep day 1's orderKeyDate, the same as in an export of both days."""
    full = _cat(replaced, tmp_path / "all.jsonl")
    day2 = _cat(replaced, tmp_path / "d2.jsonl", ts_from="2026-11-26")
    meno = [x for x in full if x["type"] == "MENO" and x["clOrdID"] == "S-2"][0]
    assert meno["orderKeyDate"].startswith("20261125 ")
    assert [x["type"] for x in day2] == ["MEOM", "MEOC"]
    for x in day2:
        assert (x["orderKeyDate"], x["orderID"]) == (meno["orderKeyDate"], meno["orderID"])
        assert "priorOrderID" not in x
    assert day2 == [x for x in full if x["seq"] >= day2[0]["seq"]]
