"""ReportWriter's ExecutionReport (one str template, encoded once) gives the same bytes as the
general encoder (ExecReportTemplate, field by field) for any event, and simplefix reads it back."""
from __future__ import annotations

import simplefix
from hypothesis import given, settings
from hypothesis import strategies as st

from oms_trading.config import SessionConfig
from oms_trading.fix.codec import checksum
from oms_trading.fix.reports import ReportWriter

TS0 = 1_764_000_000_000_000_000   # 2025-11-24, ns

texts = st.text(min_size=0, max_size=12)   # any unicode: ClOrdIDs decoded from latin-1, Text, ...
maybe_text = st.none() | texts
quantities = st.integers(min_value=0, max_value=10**12)
events = st.fixed_dictionaries({
    "type": st.sampled_from(["order_accepted", "order_rejected", "order_filled", "order_partially_filled",
                             "order_canceled", "order_replaced", "order_expired", "order_status"]),
    "ts": st.integers(min_value=TS0, max_value=TS0 + 5 * 10**9),
    "order_id": st.none() | st.integers(min_value=0, max_value=10**12),
    "cl_ord_id": maybe_text,
    "orig_cl_ord_id": maybe_text,
    "account": maybe_text,
    "symbol": maybe_text,
    "side": st.none() | st.sampled_from(["1", "2", "5"]),
    "ord_type": st.none() | st.sampled_from(["1", "2"]),
    "tif": st.none() | st.sampled_from(["0", "1", "3", "4"]),
    "price": st.none() | st.sampled_from(["", "187.25", "0.0001", "100"]),
    "qty": st.none() | quantities,
    "exec_id": st.integers(min_value=0, max_value=10**9).map(str),
    "exec_type": st.sampled_from(["0", "4", "5", "8", "C", "F", "I"]),
    "ord_status": st.sampled_from(["0", "1", "2", "4", "8", "C"]),
    "cum_qty": quantities,
    "leaves_qty": quantities,
    "avg_px": st.sampled_from(["0", "187.25", "187.2533333333"]),
}, optional={
    "last_qty": st.none() | quantities,
    "last_px": st.none() | st.sampled_from(["187.25", "1"]),
    "rej_reason": st.none() | st.integers(min_value=0, max_value=99),
    "text": maybe_text,
})


def writer(begin: str, precision: str) -> ReportWriter:
    return ReportWriter(SessionConfig("OMS", "CLIENT1", begin), precision)


@settings(max_examples=400, deadline=None)
@given(st.lists(events, min_size=1, max_size=6), st.sampled_from(["FIX.4.4", "FIX.4.2"]),
       st.sampled_from(["ms", "us", "ns", "s"]), st.integers(min_value=1, max_value=10**7))
def test_template_matches_the_general_encoder(evs, begin, precision, seq):
    w = writer(begin, precision)
    now = w.now(TS0)
    for k, event in enumerate(evs):   # several in a row: the cached SendingTime / TransactTime text
        exec_type = event["exec_type"]
        if begin == "FIX.4.2" and exec_type == "I":
            continue                  # FIX 4.2 status answers have their own layout (_status_42)
        if exec_type == "I" and event["order_id"] is None:
            continue                  # nor does FIX 4.4's for an unknown order (_unknown_order_status_44)
        if begin == "FIX.4.2" and exec_type == "F":
            exec_type = "2" if event["ord_status"] == "2" else "1"
        fast = w.execution_report(seq + k, now, event)
        assert fast == w._execution_report_general(seq + k, now, event, exec_type)


clean = st.text(alphabet="ABCXYZ0123456789-_.", min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(events, clean, clean, st.sampled_from(["FIX.4.4", "FIX.4.2"]))
def test_simplefix_reads_it(event, cl_ord_id, symbol, begin):
    event = dict(event, cl_ord_id=cl_ord_id, symbol=symbol, exec_type="0", text=None, account="ACC1",
                 orig_cl_ord_id=None, price="187.25")
    w = writer(begin, "ms")
    raw = w.execution_report(42, w.now(TS0), event)
    parser = simplefix.FixParser()
    parser.append_buffer(raw)
    msg = parser.get_message()
    assert msg is not None and msg.get(35) == b"8" and msg.get(34) == b"42"
    assert msg.get(11) == cl_ord_id.encode() and msg.get(55) == symbol.encode() and msg.get(44) == b"187.25"
    assert int(msg.get(9)) == len(raw) - raw.index(b"35=") - len(b"10=000\x01")
    assert int(msg.get(10)) == checksum(raw[:raw.rindex(b"10=")])


def test_non_int_quantity_is_not_truncated():
    w = writer("FIX.4.4", "ms")
    event = {"type": "order_accepted", "ts": TS0, "order_id": 1, "cl_ord_id": "A", "exec_id": "1",
             "exec_type": "0", "ord_status": "0", "symbol": "AAPL", "side": "1", "qty": 100.5,
             "leaves_qty": 100, "cum_qty": 0, "avg_px": "0"}
    raw = w.execution_report(7, w.now(TS0), event)
    assert b"\x0138=100.5\x01" in raw


def test_order_qty_text_never_raises_out_of_the_gateway():
    """OrderQty (38) text becomes an int or None (the engine then rejects it with a reason):
    a float too large for int() (inf) included."""
    from oms_trading.fix.gateway import _int
    assert _int(b"100") == 100 and _int(b"100.0") == 100
    assert _int(b"1.5") is None and _int(b"abc") is None and _int(b"") is None
    assert _int(b"9" * 400 + b".0") is None


def test_the_fix44_status_answer_for_an_unknown_order_invents_no_order_fields():
    """Reviewed: it carried 40=2 and 38=0, the template's defaults, for an order that does not
    exist; FIX 4.4's ExecutionReport requires neither."""
    w = writer("FIX.4.4", "ms")
    event = {"type": "order_status", "ts": TS0, "order_id": None, "cl_ord_id": "NOPE", "session": "CLIENT1->OMS",
             "symbol": "AAPL", "side": "1", "exec_id": "0", "exec_type": "I", "ord_status": "8", "cum_qty": 0,
             "leaves_qty": 0, "avg_px": "0", "qty": 0, "rej_reason": 5, "text": "Unknown order"}
    raw = w.execution_report(9, w.now(TS0), event)
    parser = simplefix.FixParser()
    parser.append_buffer(raw)
    msg = parser.get_message()
    assert msg.get(38) is None and msg.get(40) is None
    assert [msg.get(t) for t in (35, 34, 37, 11, 150, 39, 103, 58, 55, 54)] == [
        b"8", b"9", b"NONE", b"NOPE", b"I", b"8", b"5", b"Unknown order", b"AAPL", b"1"]
    assert int(msg.get(10)) == checksum(raw[:raw.rindex(b"10=")])


def test_common_reports_take_the_one_format_path(monkeypatch):
    """Accepted, canceled (with OrigClOrdID), replaced and filled reports as the engine makes them
    are rendered by ``execution_report``'s own format, not ``_execution_report_any`` (which the
    test above holds the bytes of both to): the order path's reports stay on the short path."""
    w = writer("FIX.4.4", "ms")
    base = {"type": "order_accepted", "ts": TS0, "order_id": 7, "cl_ord_id": "C7", "orig_cl_ord_id": None,
            "session": "FIX.4.4:OMS->CLIENT1", "account": "ACC1", "symbol": "MSFT", "side": "1", "ord_type": "2",
            "tif": "0", "price": "187.25", "qty": 100, "exec_id": "12", "exec_type": "0", "ord_status": "0",
            "cum_qty": 0, "leaves_qty": 100, "avg_px": "0", "seq": 5, "prev_hash": "0" * 64, "hash": "1" * 64}
    shapes = [base, dict(base, type="order_canceled", exec_type="4", ord_status="4", cl_ord_id="C8",
                         orig_cl_ord_id="C7", leaves_qty=0),
              dict(base, type="order_replaced", exec_type="5", cl_ord_id="C9", orig_cl_ord_id="C8", price="187.5"),
              dict(base, type="order_filled", exec_type="F", ord_status="2", cum_qty=100, leaves_qty=0,
                   avg_px="187.25", last_px="187.25", last_qty=100, trade_id=3, contra_order_id=2, liquidity="A")]
    general = [w._execution_report_general(40 + k, w.now(TS0), e, e["exec_type"]) for k, e in enumerate(shapes)]

    def refuse(*_args):
        raise AssertionError("left the one-format path")
    monkeypatch.setattr(w, "_execution_report_any", refuse)
    assert [w.execution_report(40 + k, w.now(TS0), e) for k, e in enumerate(shapes)] == general
