"""FIX messages <-> engine commands and events, in process: FIX 4.2/4.4 report fields, mass
cancel, cancel on disconnect and journal failures (the demo config's sessions)."""
from __future__ import annotations

import re
import time

import simplefix

from oms_trading.audit.journal import Journal, iter_records
from oms_trading.book import NumbaBook
from oms_trading.compliance.risk import RiskEngine
from oms_trading.config import SessionConfig, load_config
from oms_trading.engine.engine import Engine
from oms_trading.fix.gateway import Gateway
from oms_trading.fix.reports import ReportWriter
from oms_trading.fix.session import FixAcceptor, FixSession
from oms_trading.fix.timefmt import fix_timestamp
from tests.memtransport import MemoryTransport as Transport

TS0 = 1_764_000_000_000_000_000
BEGIN = {"CLIENT1": "FIX.4.4", "CLIENT2": "FIX.4.2", "BENCH": "FIX.4.4", "DROPCOPY": "FIX.4.4"}


def msg(sender: str, msg_type: str, seq: int, fields: list) -> bytes:
    m = simplefix.FixMessage()
    for tag, value in ((8, BEGIN[sender]), (35, msg_type), (49, sender), (56, "OMS"), (34, seq),
                       (52, fix_timestamp(time.time_ns()).decode())):
        m.append_pair(tag, value, header=True)
    for tag, value in fields:
        m.append_pair(tag, value)
    return m.encode()


def now() -> str:
    return fix_timestamp(time.time_ns()).decode()


def order(sender: str, cl: str, seq: int, side: str = "1", qty: int = 100, price: str = "185.00") -> bytes:
    extra = [(21, "1")] if BEGIN[sender] == "FIX.4.2" else []
    return msg(sender, "D", seq, [(11, cl)] + extra + [(55, "AAPL"), (54, side), (60, now()), (38, qty),
                                                      (40, "2"), (44, price), (59, "0")])


def fields_of(transport: Transport) -> list[dict[int, bytes]]:
    out = []
    for m in re.findall(rb"8=FIX.*?\x0110=\d{3}\x01", bytes(transport.out), re.S):
        out.append({int(f.split(b"=", 1)[0]): f.split(b"=", 1)[1] for f in m.split(b"\x01") if b"=" in f})
    return out


class Stack:
    def __init__(self, tmp_path) -> None:
        self.cfg = load_config()
        self.journal = Journal(tmp_path / "journal", fsync="os")
        self.engine = Engine(self.cfg, self.journal, lambda: NumbaBook(capacity=1 << 10), risk=RiskEngine(self.cfg))
        self.gateway = Gateway(self.engine)
        self.acceptor = FixAcceptor(self.cfg, self.gateway, tmp_path)

    def logon(self, sender: str, reset: str = "Y", seq: int = 1) -> tuple[FixSession, Transport]:
        session, transport = FixSession(self.acceptor), Transport()
        session.connection_made(transport)
        fields = [(98, 0), (108, 30), (141, reset)]
        if sender == "CLIENT1":
            fields += [(553, "CLIENT1"), (554, "demo1")]
        session.data_received(msg(sender, "A", seq, fields))
        assert session.logged_on
        return session, transport

    def disk_full(self):
        """An ``engine.flush`` that fails as the journal's own does when the disk is full: what
        was pending is rolled back (never written later), then the error."""
        def full():
            self.journal._discard_pending()
            raise OSError(28, "No space left on device")
        return full

    def close(self) -> None:
        self.journal.close()
        # whatever the test did, the journal replays as it was journaled (engine/replay_check)
        fresh = Engine(self.cfg, None, lambda: NumbaBook(capacity=1 << 10), risk=RiskEngine(self.cfg))
        fresh.replay(iter_records(self.journal.directory))
        assert fresh.replay_check.differences == 0, fresh.replay_check.first.describe()


def test_fix42_reject_reasons_stay_within_the_fix42_enumerations():
    """FIX 4.2 OrdRejReason (103) stops at 8 and CxlRejReason (102) at 3: the engine's FIX 4.4
    codes (99 Other, 11, 13, 15; 6 duplicate ClOrdID) would be refused by a 4.2 counterparty's
    data dictionary (value out of range)."""
    w42 = ReportWriter(SessionConfig("OMS", "CLIENT2", "FIX.4.2"), "ms")
    w44 = ReportWriter(SessionConfig("OMS", "CLIENT1", "FIX.4.4"), "ms")
    rejected = {"type": "order_rejected", "ts": TS0, "order_id": None, "cl_ord_id": "A", "symbol": "AAPL",
                "side": "1", "ord_type": "2", "qty": 10, "price": "190.005", "exec_id": "3", "exec_type": "8",
                "ord_status": "8", "cum_qty": 0, "leaves_qty": 0, "avg_px": "0", "text": "Invalid price"}
    for reason, want42 in ((99, b"0"), (13, b"0"), (15, b"0"), (11, b"0"), (1, b"1"), (6, b"6"), (8, b"8")):
        event = dict(rejected, rej_reason=reason)
        raw = w42.execution_report(5, w42.now(TS0), event)
        assert b"\x01103=" + want42 + b"\x01" in raw
        assert raw == w42._execution_report_general(5, w42.now(TS0), event, "8")
        assert b"\x01103=%d\x01" % reason in w44.execution_report(5, w44.now(TS0), event)
    cxl = {"type": "cancel_rejected", "ts": TS0, "order_id": 7, "cl_ord_id": "B", "orig_cl_ord_id": "A",
           "ord_status": "0", "response_to": "1", "text": "Duplicate ClOrdID"}
    for reason, want42 in ((6, b"2"), (99, b"2"), (0, b"0"), (1, b"1"), (2, b"2"), (3, b"3")):
        event = dict(cxl, rej_reason=reason)
        assert b"\x01102=" + want42 + b"\x01" in w42.cancel_reject(5, w42.now(TS0), event)
        assert b"\x01102=%d\x01" % reason in w44.cancel_reject(5, w44.now(TS0), event)


def test_fix42_session_gets_a_fix42_reject_reason_for_an_off_tick_price(tmp_path):
    s = Stack(tmp_path)
    try:
        _session, transport = s.logon("CLIENT2")
        _session.data_received(order("CLIENT2", "S1", 2, price="190.005"))
        rej = [f for f in fields_of(transport) if f[35] == b"8"][-1]
        assert rej[39] == b"8" and int(rej[103]) <= 8 and b"Invalid price" in rej[58]
    finally:
        s.close()


def test_order_qty_with_a_tiny_fraction_is_not_rounded_to_a_whole_number(tmp_path):
    """OrderQty 100.000000000000000001 is not a whole number: float() rounded it to 100.0 and the
    order was accepted for 100 (on the fast path too, which hands such a value to ``_int``)."""
    from oms_trading.fix.gateway import _int
    assert _int(b"100.000000000000000001") is None
    assert _int(b"100.0000000000000000000") == 100 and _int(b"0100.00") == 100
    s = Stack(tmp_path)
    try:
        session, transport = s.logon("BENCH")
        raw = msg("BENCH", "D", 2, [(11, "Q1"), (55, "AAPL"), (54, "1"), (60, now()),
                                    (38, "100.000000000000000001"), (40, "2"), (44, "185.00"), (59, "0")])
        session.data_received(raw)
        rep = [f for f in fields_of(transport) if f[35] == b"8"][-1]
        assert rep[11] == b"Q1" and rep[39] == b"8" and rep[103] == b"13"
    finally:
        s.close()


def mass_cancel(sender: str, cl: str, seq: int) -> bytes:
    return msg(sender, "q", seq, [(11, cl), (530, "7"), (60, now())])


def test_mass_cancel_is_refused_with_a_report_when_the_journal_cannot_be_written(tmp_path):
    """A mass cancel whose events the journal could not take was dropped without any answer
    (only D/F/G got a refusal); within the retry window it even ran on the engine again."""
    s = Stack(tmp_path)
    try:
        session, transport = s.logon("BENCH")
        session.data_received(order("BENCH", "O1", 2))
        real_flush = s.engine.flush

        full = s.disk_full()
        s.engine.flush = full
        session.data_received(mass_cancel("BENCH", "MC1", 3))
        s.engine.flush = real_flush
        session.data_received(mass_cancel("BENCH", "MC2", 4))   # within the retry window: refused at once
        got = fields_of(transport)
        reports = [f for f in got if f[35] == b"r"]
        assert [r[11] for r in reports] == [b"MC1", b"MC2"]
        for r in reports:
            assert r[531] == b"0" and r[533] == b"0" and b"audit journal unavailable" in r[58]
        assert not [f for f in got if f[35] == b"8" and f[39] == b"4"]     # nothing canceled
        assert [o.cl_ord_id for o in s.engine.open_orders()] == ["O1"]
    finally:
        s.close()


def test_cancel_on_disconnect_sends_the_cancels_but_no_unrequested_mass_cancel_report(tmp_path):
    """CLIENT2 (FIX 4.2, cancel on disconnect) leaves with a resting order: it gets the Canceled
    ExecutionReport at its next logon, but no OrderMassCancelReport answering a request it never
    sent (11=NONE; and 35=r does not even exist in FIX 4.2)."""
    s = Stack(tmp_path)
    try:
        session, transport = s.logon("CLIENT2")
        session.data_received(order("CLIENT2", "S1", 2, side="2", price="195.00"))
        session.connection_lost(None)
        assert not s.engine.open_orders()
        store = s.acceptor.store_for(next(c for c in s.cfg.sessions if c.target_comp_id == "CLIENT2"))
        kept = [raw for _seq, raw in store.get_sent(1, store.next_sender_seq - 1)]
        assert [raw for raw in kept if b"\x0135=8\x01" in raw and b"\x0139=4\x01" in raw and b"\x0111=S1\x01" in raw]
        assert not [raw for raw in kept if b"\x0135=r\x01" in raw]
    finally:
        s.close()


def status(sender: str, cl: str, seq: int) -> bytes:
    return msg(sender, "H", seq, [(11, cl), (55, "AAPL"), (54, "1")])


def test_status_answer_never_reports_state_the_journal_did_not_keep(tmp_path):
    """An order and a status request for it in one read, the journal write failing: the order is
    refused (nothing of it journaled, the engine rebuilt without it), so the status answer must
    not report it New with an OrderID (an id the next accepted order then gets again)."""
    s = Stack(tmp_path)
    try:
        session, transport = s.logon("BENCH")
        real_flush = s.engine.flush

        full = s.disk_full()
        s.engine.flush = full
        session.data_received(order("BENCH", "O1", 2) + status("BENCH", "O1", 3))
        s.engine.flush = real_flush
        reports = [f for f in fields_of(transport) if f[35] == b"8"]
        assert [(r[11], r[150], r[39]) for r in reports] == [(b"O1", b"8", b"8"), (b"O1", b"I", b"8")]
        assert reports[1][37] == b"NONE" and reports[1][103] == b"5"
    finally:
        s.close()


def test_client_ids_are_echoed_as_the_bytes_the_client_sent(tmp_path):
    """ClOrdID (and OrigClOrdID, Symbol... in rejects) are decoded from the wire as latin-1; the
    reports encoded them back as UTF-8, so any byte above 0x7F came back as two different bytes
    and the client could not match the report to its order (FIX 4.4 and 4.2, 35=8 and 35=9)."""
    s = Stack(tmp_path)
    try:
        for sender in ("BENCH", "CLIENT2"):
            session, transport = s.logon(sender)
            extra = [(21, "1")] if BEGIN[sender] == "FIX.4.2" else []
            session.data_received(msg(sender, "D", 2, [(11, b"A\xe9B")] + extra + [
                (55, "AAPL"), (54, "1"), (60, now()), (38, 100), (40, "2"), (44, "185.00"), (59, "0")]))
            session.data_received(msg(sender, "F", 3, [(41, b"\xff1"), (11, b"C\xe9"), (55, "AAPL"), (54, "1"),
                                                       (60, now())]))
            session.data_received(msg(sender, "H", 4, [(11, b"A\xe9B"), (55, "AAPL"), (54, "1")]))
            session.data_received(msg(sender, "D", 5, [(11, b"R\xe9")] + extra + [
                (55, b"N\xe9PE"), (54, "1"), (60, now()), (38, 100), (40, "2"), (44, "185.00"), (59, "0")]))
            got = fields_of(transport)
            ack, cxl, stat, rej = [f for f in got if f[35] in (b"8", b"9")]
            assert ack[11] == b"A\xe9B" and ack[39] == b"0"
            assert cxl[35] == b"9" and cxl[11] == b"C\xe9" and cxl[41] == b"\xff1"
            assert stat[11] == b"A\xe9B" and stat[39] == b"0"
            assert rej[11] == b"R\xe9" and rej[55] == b"N\xe9PE" and rej[39] == b"8"
            session.connection_lost(None)
    finally:
        s.close()


def test_order_qty_not_a_plain_whole_number_in_range_is_rejected_with_a_report(tmp_path):
    """OrderQty is read as FIX spells a number (digits, an optional fraction of zeros): what
    int()/float() would also take (exponent, spaces, '+', '_') is not a quantity, and one of more
    than 18 digits, which the journal could not keep as a 64-bit int, is answered with a rejected
    ExecutionReport (it was a BusinessMessageReject 'Integer exceeds 64-bit range')."""
    from oms_trading.fix.gateway import _int
    assert _int(b"9" * 18) == int("9" * 18) and _int(b"0" * 30 + b"7") == 7 and _int(b"-5") == -5
    for bad in (b"9" * 19, b"1e5", b" 100", b"100 ", b"1_000", b"+5", b".5", b"inf", b"nan", b"\xd9\xa1"):
        assert _int(bad) is None, bad
    s = Stack(tmp_path)
    try:
        session, transport = s.logon("BENCH")
        session.data_received(msg("BENCH", "D", 2, [(11, "HUGE"), (55, "AAPL"), (54, "1"), (60, now()),
                                                    (38, "9" * 21), (40, "2"), (44, "185.00"), (59, "0")]))
        got = fields_of(transport)
        assert not [f for f in got if f[35] in (b"j", b"3")]
        rep = [f for f in got if f[35] == b"8"][-1]
        assert rep[11] == b"HUGE" and rep[39] == b"8" and rep[103] == b"13" and b"quantity" in rep[58]
        assert not s.engine.open_orders()
    finally:
        s.close()


def test_reports_rebuilt_after_a_crash_leave_out_the_cancel_on_disconnect_mass_cancel_report(tmp_path):
    """Reports journaled but not stored (a crash between the two) are rebuilt at start; the
    cancel on disconnect's mass cancel (no ClOrdID) is not answered with a 35=r there either."""
    s = Stack(tmp_path)
    try:
        session, transport = s.logon("CLIENT2")
        session.data_received(order("CLIENT2", "S1", 2, side="2", price="195.00"))
        s.gateway.offline_sink = lambda offline: None      # the crash: journaled, never stored
        session.connection_lost(None)
        assert not s.engine.open_orders()
        store = s.acceptor.store_for(next(c for c in s.cfg.sessions if c.target_comp_id == "CLIENT2"))
        before = store.next_sender_seq
        assert s.acceptor.recover_reports() >= 1
        kept = [raw for _seq, raw in store.get_sent(before, store.next_sender_seq - 1)]
        assert [raw for raw in kept if b"\x0139=4\x01" in raw and b"\x0111=S1\x01" in raw]
        assert not [raw for raw in kept if b"\x0135=r\x01" in raw]
    finally:
        s.close()


def test_cancel_on_disconnect_refused_by_the_journal_runs_once_it_takes_writes(tmp_path):
    """CLIENT2 (cancel on disconnect) leaves while the journal cannot be written: its mass cancel
    is refused, so its orders would keep working after the disk came back. It is tried again by
    the acceptor's timer once the journal takes writes, unless the session logged on again."""
    s = Stack(tmp_path)
    try:
        session, _ = s.logon("CLIENT2")
        session.data_received(order("CLIENT2", "S1", 2, side="2", price="195.00"))
        real_flush = s.engine.flush

        full = s.disk_full()
        s.engine.flush = full
        session.connection_lost(None)
        assert [o.cl_ord_id for o in s.engine.open_orders()] == ["S1"]       # refused: still working
        assert s.gateway.retry_cancel_on_disconnect() == 0                      # the journal is still down
        s.engine.flush = real_flush
        s.gateway._journal_failed_at -= 1.0                                     # past the retry pause
        assert s.gateway.retry_cancel_on_disconnect() == 1
        assert not s.engine.open_orders()
        assert s.gateway.retry_cancel_on_disconnect() == 0                      # done once
        store = s.acceptor.store_for(next(c for c in s.cfg.sessions if c.target_comp_id == "CLIENT2"))
        kept = [raw for _seq, raw in store.get_sent(1, store.next_sender_seq - 1)]
        assert [raw for raw in kept if b"\x0139=4\x01" in raw and b"\x0111=S1\x01" in raw]

        # the same, but the session is back before the journal is: its orders are its own again
        session, _ = s.logon("CLIENT2")
        session.data_received(order("CLIENT2", "S2", 2, side="2", price="195.00"))
        s.engine.flush = full
        session.connection_lost(None)
        s.engine.flush = real_flush
        s.gateway._journal_failed_at -= 1.0
        s.logon("CLIENT2")
        assert s.gateway.retry_cancel_on_disconnect() == 0
        assert [o.cl_ord_id for o in s.engine.open_orders()] == ["S2"]
    finally:
        s.close()


def test_fix42_status_answer_for_an_unknown_order_carries_ord_rej_reason(tmp_path):
    """FIX 4.4 answers a status request for an unknown order with OrdRejReason 5; the FIX 4.2
    answer left 103 out (5 'Unknown order' exists in FIX 4.2 too)."""
    s = Stack(tmp_path)
    try:
        for sender in ("CLIENT2", "CLIENT1"):
            session, transport = s.logon(sender)
            session.data_received(status(sender, "NOPE", 2))
            rep = [f for f in fields_of(transport) if f[35] == b"8"][-1]
            assert rep[11] == b"NOPE" and rep[39] == b"8" and rep[103] == b"5", (sender, rep)
    finally:
        s.close()


def test_a_poss_resend_duplicate_in_a_batch_the_journal_refuses_keeps_its_status_answer(tmp_path):
    """Reviewed: a NewOrderSingle resent with PossResend=Y for a working order is answered with
    its status; when the journal refused that batch, the client got the status and also a
    rejected report (39=8) for the same ClOrdID, telling it the working order was dead."""
    s = Stack(tmp_path)
    try:
        session, transport = s.logon("BENCH")
        session.data_received(order("BENCH", "O1", 2))
        real_flush = s.engine.flush
        s.engine.flush = s.disk_full()
        resent = order("BENCH", "O1", 3).replace(b"\x0152=", b"\x0197=Y\x0152=", 1)
        resent = _fix_lengths(resent)
        session.data_received(resent)
        s.engine.flush = real_flush
        answers = [f for f in fields_of(transport) if f[35] == b"8" and f[11] == b"O1"]
        assert [(a[150], a[39]) for a in answers] == [(b"0", b"0"), (b"I", b"0")], answers
        assert [o.cl_ord_id for o in s.engine.open_orders()] == ["O1"]
    finally:
        s.close()


def _fix_lengths(raw: bytes) -> bytes:
    """BodyLength and CheckSum of a message edited by hand, made right again."""
    body = raw[raw.index(b"\x01", raw.index(b"9=")) + 1:raw.rindex(b"10=")]
    head = raw[:raw.index(b"9=")] + b"9=%d\x01" % len(body)
    return head + body + b"10=%03d\x01" % (sum(head + body) % 256)
