"""Third review of the compliance read side (lifecycle, exports, the HTTP compliance API): each
test shows a defect a compliance officer would have hit, on data written by a real engine
(helpers of test_audit_queries / test_audit_review)."""
from __future__ import annotations

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
