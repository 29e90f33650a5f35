"""What a FIX 4.2 client gets, checked against the FIX 4.2 specification and QuickFIX's FIX42.xml
data dictionary (the one a QuickFIX or QuickFIX/J 4.2 initiator validates our messages with),
driven in process on the demo config's FIX 4.2 session CLIENT2."""
from __future__ import annotations

from oms_trading.fix.codec import split_message
from oms_trading.fix.dictionary import validate
from tests.test_gateway_review import Stack, fields_of, msg, order


def _sent(transport) -> list[dict[int, bytes]]:
    return fields_of(transport)


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
        sent = _sent(transport)[1:]
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
        rep = _sent(transport)[-1]
        assert rep[35] == b"8" and rep[150] == b"I" and rep[39] == b"8" and 55 not in rep, rep
    finally:
        s.close()
