"""What a FIX 4.2 client gets, checked against the FIX 4.2 specification and QuickFIX's FIX42.xml
data dictionary (the one a QuickFIX or QuickFIX/J 4.2 initiator validates our messages with),
driven in process on the demo config's FIX 4.2 session CLIENT2."""
from __future__ import annotations

from oms_trading.fix.codec import split_message
from oms_trading.fix.dictionary import validate
from tests.test_gateway_review import Stack, fields_of, msg, order


def test_fix42_status_request_without_symbol_is_rejected_not_answered_with_an_empty_symbol(tmp_path):
    """FIX 4.2 makes Symbol (55) required in OrderStatusRequest (H), and in the ExecutionReport
    that answers it. An H without Symbol for an order we do not know was answered with "55=" (a
    tag without a value): a QuickFIX 4.2 client rejects that report (373=4) and never learns the
    order is unknown. The request gets the session Reject the 4.2 dictionary prescribes instead
    (373=1, 371=55); with Symbol it is answered as before."""
    raw = msg("CLIENT2", "H", 2, [(11, "NOPE"), (54, "1")])
    problem = validate(split_message(raw), b"FIX.4.2")
    assert problem is not None and (problem.reason, problem.tag) == (1, 55)
    s = Stack(tmp_path)
    try:
        session, transport = s.logon("CLIENT2")
        session.data_received(raw)
        session.data_received(msg("CLIENT2", "H", 3, [(11, "NOPE"), (55, "AAPL"), (54, "1")]))
        sent = fields_of(transport)[1:]
        assert [(m[35], m.get(373), m.get(371)) for m in sent] == [(b"3", b"1", b"55"), (b"8", None, None)]
        assert sent[1][55] == b"AAPL" and sent[1][20] == b"3" and sent[1][103] == b"5"
        assert all(v != b"" for m in sent for v in m.values())
    finally:
        s.close()


def test_fix44_unknown_order_status_leaves_out_an_absent_symbol(tmp_path):
    """The same request on FIX 4.4, where Symbol is optional in H and in the ExecutionReport
    (inside the Instrument component): the answer leaves 55 out rather than sending it empty."""
    s = Stack(tmp_path)
    try:
        session, transport = s.logon("CLIENT1")
        session.data_received(msg("CLIENT1", "H", 2, [(11, "NOPE"), (54, "1")]))
        rep = fields_of(transport)[-1]
        assert rep[35] == b"8" and rep[150] == b"I" and rep[39] == b"8" and 55 not in rep, rep
    finally:
        s.close()


def test_orders_refused_while_the_journal_is_down_get_unique_exec_ids(tmp_path):
    """FIX 4.2 ExecID (17): unique per execution message, "0" only for ExecTransType 3 (Status).
    Orders refused because the journal could not be written all went out with ExecID 0 and
    ExecTransType 0: a client that drops reports whose ExecID it has seen (the usual guard
    against resent duplicates) dropped every refusal after the first, and its orders stayed
    pending for ever. Each refusal now has its own ExecID, apart from the engine's numbers."""
    s = Stack(tmp_path)
    try:
        session, transport = s.logon("CLIENT2")
        session.data_received(order("CLIENT2", "O1", 2))
        real_flush = s.engine.flush
        s.engine.flush = s.disk_full()
        session.data_received(order("CLIENT2", "O2", 3) + order("CLIENT2", "O3", 4))
        session.data_received(order("CLIENT2", "O4", 5))      # refused at once (journal retry wait)
        s.engine.flush = real_flush
        reports = [m for m in fields_of(transport) if m[35] == b"8"]
        assert [(m[11], m[39], m[20]) for m in reports] == [(b"O1", b"0", b"0")] + [
            (cl, b"8", b"0") for cl in (b"O2", b"O3", b"O4")]
        ids = [m[17] for m in reports]
        assert b"0" not in ids and len(set(ids)) == len(ids), ids
    finally:
        s.close()
