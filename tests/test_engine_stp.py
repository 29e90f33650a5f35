"""An IOC/FOK/market order stopped by self-trade prevention (cancel_incoming / cancel_both)
is reported as an STP cancel (rule "stp", the STP text, 150=4 39=4), not as an IOC expiry."""
from __future__ import annotations

import pytest
import simplefix

from oms_trading.audit import schema as ev
from tests.test_engine_common import S2, S3, make_config, make_engine, new, reports
from tests.test_fix_reports import TS0, writer

STP_TEXT = "Self-trade prevention: canceled incoming order"
IOC_TEXT = "Unfilled quantity canceled (IOC/FOK/market)"

# A3 (cancel_both) is in the shared config; A4 adds cancel_incoming
CONFIG = make_config('\n[[accounts]]\nname = "A4"\nstp_mode = "cancel_incoming"\n')


def engine(numba):
    eng = make_engine(numba=numba, config=CONFIG)
    eng.process(new("o1", "2", 3, "100.00", session=S2))               # another account's ask
    return eng


def own_ask(eng, account):
    eng.process(new("own", "2", 5, "100.00", session=S3, account=account))


def final(rs, cl):
    return [e for e in reports(rs) if e.get("cl_ord_id") == cl][-1]


def fix_fields(event):
    """The ExecutionReport the gateway renders for the event, read back by simplefix."""
    w = writer("FIX.4.4", "ms")
    parser = simplefix.FixParser()
    parser.append_buffer(w.execution_report(7, w.now(TS0), event))
    msg = parser.get_message()
    return {tag: msg.get(tag) for tag in (35, 150, 39, 58, 151)}


ORDERS = {   # (ord_type, tif, price): what stops at the own resting order
    "ioc": ("2", "3", "100.00"),
    "fok": ("2", "4", "100.00"),
    "market_ioc": ("1", "3", None),
    "market_fok": ("1", "4", None),   # (a market order must be IOC or FOK here)
}


@pytest.mark.parametrize("numba", [False, True], ids=["reference", "numba"])
@pytest.mark.parametrize("account", ["A3", "A4"], ids=["cancel_both", "cancel_incoming"])
@pytest.mark.parametrize("kind", list(ORDERS))
def test_incoming_killed_by_stp_is_an_stp_cancel(kind, account, numba):
    eng = engine(numba)
    own_ask(eng, account)
    ord_type, tif, price = ORDERS[kind]
    rs = eng.process(new("in", "1", 10, price, session=S3, account=account, tif=tif, ord_type=ord_type))
    last = final(rs, "in")
    assert last["type"] == ev.ORDER_CANCELED
    assert (last["exec_type"], last["ord_status"]) == ("4", "4")
    assert last["rule"] == "stp" and last["text"] == STP_TEXT and last["leaves_qty"] == 0
    # a FOK is killed whole (nothing traded); the others traded the 3 ahead of the own order
    fok = tif == "4"
    assert last["cum_qty"] == (0 if fok else 3)
    own = [e for e in reports(rs) if e.get("cl_ord_id") == "own"]
    if account == "A3" and not fok:   # cancel_both also cancels the resting order
        assert [e["rule"] for e in own] == ["stp"]
    else:
        assert own == [] and eng.books[0].get(eng.by_cl_ord_id[(S3, "own")]) is not None
    assert fix_fields(last) == {35: b"8", 150: b"4", 39: b"4", 58: STP_TEXT.encode(), 151: b"0"}


@pytest.mark.parametrize("numba", [False, True], ids=["reference", "numba"])
@pytest.mark.parametrize("tif", ["3", "4"], ids=["ioc", "fok"])
def test_plain_ioc_fok_remainder_still_expires(tif, numba):
    """No same-account order met: the remainder expires as before (C/C, no rule)."""
    eng = engine(numba)
    own_ask(eng, "A4")                                                # behind the other ask at 100.00
    rs = eng.process(new("in", "1", 10, "99.00", session=S3, account="A4", tif=tif))   # does not cross
    last = final(rs, "in")
    assert last["type"] == ev.ORDER_EXPIRED and (last["exec_type"], last["ord_status"]) == ("C", "C")
    assert last["text"] == IOC_TEXT and "rule" not in last
    assert fix_fields(last)[150] == b"C" and fix_fields(last)[58] == IOC_TEXT.encode()
    # enough quantity before the own order: a FOK fills, an IOC fills what it can and expires
    rs = eng.process(new("in2", "1", 2, "100.00", session=S3, account="A4", tif=tif))
    assert final(rs, "in2")["ord_status"] == "2"
