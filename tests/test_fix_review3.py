"""Session-layer defects found in the third FIX review, each driven through FixSession in memory
(tests/memtransport.py) on the demo config's BENCH session (FIX.4.4, reset on logon), with the
helpers of tests/test_fix_review.py."""
from __future__ import annotations

from tests.test_fix_fastpath import now_ts
from tests.test_fix_review import _logged_on, _msg, _sent


def _order(seq: int, cl: bytes, header=(), sending_time: bytes | None = None) -> bytes:
    return _msg(b"D", seq, list(header) + [(b"11", cl), (b"55", b"AAPL"), (b"54", b"1"), (b"60", now_ts()),
                                           (b"38", b"100"), (b"40", b"2"), (b"44", b"190.00")],
                sending_time=sending_time)


def test_poss_dup_message_with_a_stale_sending_time_is_a_sending_time_accuracy_problem(tmp_path):
    """PossDupFlag=Y does not exempt a message from the SendingTime check: on a resend,
    SendingTime is the time of the retransmission (OrigSendingTime carries the original one),
    so one far from now is a SendingTime accuracy problem as on any message: Reject 373=10,
    Logout, disconnect (FIX 4.4 Vol 2 session test case 2; QuickFIX/J checks it before the
    PossDup rules). An order replayed hours later with PossDupFlag=Y must not trade."""
    s = _logged_on(tmp_path)
    try:
        start = len(s.transport.out)
        s.feed(_order(2, b"REPLAYED", header=[(b"43", b"Y"), (b"122", now_ts(-7200))], sending_time=now_ts(-3600)))
        sent = _sent(s, start)
        assert [m[35] for m in sent] == [b"3", b"5"], sent
        assert (sent[0][373], sent[0][371], sent[0][45]) == (b"10", b"52", b"2")
        assert s.transport.closed
        assert not [r for r in s.journaled() if r.get("cl_ord_id") == "REPLAYED"]
    finally:
        s.close()


def test_poss_dup_message_with_a_current_sending_time_is_still_taken(tmp_path):
    """The check above leaves a proper resend alone: new SendingTime, old OrigSendingTime."""
    s = _logged_on(tmp_path)
    try:
        start = len(s.transport.out)
        s.feed(_order(2, b"RESENT", header=[(b"43", b"Y"), (b"122", now_ts(-3600))]))
        sent = _sent(s, start)
        assert [(m[35], m[39]) for m in sent] == [(b"8", b"0")], sent
        assert not s.transport.closed
    finally:
        s.close()


def test_business_message_reject_from_the_counterparty_is_not_answered_with_one(tmp_path):
    """A BusinessMessageReject (35=j) the counterparty sends (its application could not take one
    of our reports) is a valid inbound message (the dictionary takes it): it is logged and its
    seq consumed, as a session Reject (35=3) is, never answered with a BusinessMessageReject of
    our own ("Unsupported message type j" for a type the dictionary accepts). A reject answered
    with a reject loops with any counterparty that does the same; QuickFIX's MessageCracker
    handles BusinessMessageReject with an empty default for that reason."""
    s = _logged_on(tmp_path)
    try:
        start = len(s.transport.out)
        s.feed(_msg(b"j", 2, [(b"45", b"3"), (b"372", b"8"), (b"380", b"3"), (b"58", b"Unsupported Message Type")]))
        assert _sent(s, start) == []
        assert s.session.store.next_target_seq == 3 and not s.transport.closed
        s.feed(_msg(b"1", 3, [(b"112", b"AFTER")]))
        assert [(m[35], m.get(112)) for m in _sent(s, start)] == [(b"0", b"AFTER")]
    finally:
        s.close()


def test_stale_in_session_reset_logon_and_sequence_reset_change_no_sequence_number(tmp_path):
    """The two messages taken whatever their MsgSeqNum, an in-session Logon with
    ResetSeqNumFlag=Y (both numberings start again at 1) and a SequenceReset in reset mode (the
    expected inbound seq jumps), skipped the SendingTime check every other message gets, so a
    stale or replayed one still reset the session's numbering. SendingTime accuracy applies to
    every message (Reject 373=10, Logout, disconnect; QuickFIX/J verifies it on both)."""
    reset_logon = _msg(b"A", 1, [(b"98", b"0"), (b"108", b"30"), (b"141", b"Y")], sending_time=now_ts(-3600))
    sequence_reset = _msg(b"4", 9, [(b"36", b"50")], sending_time=now_ts(-3600))
    for i, stale in enumerate((reset_logon, sequence_reset)):
        s = _logged_on(tmp_path / str(i))
        try:
            s.feed(_order(2, b"BEFORE"))
            store = s.session.store
            seqs = (store.next_target_seq, store.next_sender_seq)
            start = len(s.transport.out)
            s.feed(stale)
            sent = _sent(s, start)
            assert [m[35] for m in sent] == [b"3", b"5"], sent
            assert (sent[0][373], sent[0][371]) == (b"10", b"52")
            assert s.transport.closed
            assert store.next_target_seq == seqs[0]                  # neither reset nor jumped
            assert [m[34] for m in sent] == [b"%d" % seqs[1], b"%d" % (seqs[1] + 1)]   # old numbering
        finally:
            s.close()


def test_resend_requests_piling_up_behind_an_unread_resend_are_bounded(tmp_path):
    """A client that does not read what we resend but keeps sending ResendRequests: each one
    waited behind the first as a resend job, uncounted by the outbound byte bound, so their
    number (and memory) grew with every request (left by the hostile-input review). Past
    MAX_RESENDS_WAITING the session is cut off, as a client not reading is."""
    from oms_trading.fix.session import MAX_RESENDS_WAITING
    s = _logged_on(tmp_path)
    try:
        s.feed(_order(2, b"O1"))
        s.session.pause_writing()                 # the transport's buffer is full: nothing drains
        for i in range(MAX_RESENDS_WAITING):
            s.feed(_msg(b"2", 3 + i, [(b"7", b"1"), (b"16", b"0")]))
        assert not s.transport.closed
        s.feed(_msg(b"2", 3 + MAX_RESENDS_WAITING, [(b"7", b"1"), (b"16", b"0")]))
        assert s.transport.closed
    finally:
        s.close()


def test_garbled_frames_are_logged_once_a_second_with_a_count(tmp_path, caplog):
    """Every garbled frame of a logged-on session wrote a warning (about ten times the bytes
    the client sent, left by the hostile-input review): one line a second per session now, the
    rest counted in the next one; the frames are still ignored without consuming a seq."""
    import logging
    s = _logged_on(tmp_path)
    try:
        good = _msg(b"0", 2)
        bad = good[:-4] + (b"000" if good[-4:-1] != b"000" else b"001") + b"\x01"    # wrong CheckSum
        with caplog.at_level(logging.WARNING, logger="oms_trading.fix.session"):
            s.feed(bad * 50)
        lines = [r.getMessage() for r in caplog.records if "garbled message ignored" in r.getMessage()]
        assert len(lines) == 1, lines
        s.session._garbled_logged_at -= 2                  # a second later
        with caplog.at_level(logging.WARNING, logger="oms_trading.fix.session"):
            s.feed(bad)
        lines = [r.getMessage() for r in caplog.records if "garbled message ignored" in r.getMessage()]
        assert len(lines) == 2 and "49 more in the last second not logged" in lines[1], lines
        assert s.session.store.next_target_seq == 2 and not s.transport.closed
    finally:
        s.close()
