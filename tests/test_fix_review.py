"""Session-layer defects found in review, each driven through FixSession in memory
(tests/memtransport.py) on the demo config's BENCH session (FIX.4.4, reset on logon)."""
from __future__ import annotations

import re

from oms_trading.fix import session as session_mod
from tests.test_fix_fastpath import Stack, frame, logon, now_ts


def _msg(msg_type: bytes, seq: int, fields=(), target: bytes = b"OMS", sending_time: bytes | None = None) -> bytes:
    header = [(b"35", msg_type), (b"49", b"BENCH"), (b"56", target), (b"34", str(seq).encode())]
    if sending_time is not False:
        header.append((b"52", sending_time or now_ts()))
    return frame(b"FIX.4.4", header + list(fields))


def _sent(stack: Stack, start: int = 0) -> list[dict[int, bytes]]:
    """What the session wrote from byte ``start`` on, each message as {tag: value}."""
    msgs = re.findall(rb"8=FIX.*?\x0110=\d{3}\x01", bytes(stack.transport.out[start:]), re.S)
    return [{int(t): v for t, v in (f.split(b"=", 1) for f in m.split(b"\x01")[:-1])} for m in msgs]


def _logged_on(tmp_path) -> Stack:
    s = Stack(tmp_path, False)
    s.feed(logon(b"FIX.4.4"))
    assert s.session.logged_on
    return s


def test_compid_problem_on_a_message_past_a_gap_does_not_skip_the_gap(tmp_path):
    """A CompID problem on a message whose seq is not the expected one must not move the
    expected inbound seq (QuickFIX/J QFJ-557): the gap behind it was never filled."""
    s = _logged_on(tmp_path)
    try:
        s.feed(_msg(b"1", 5, [(b"112", b"T5")]))                       # 2..4 missing: queued
        assert s.session.store.next_target_seq == 2
        start = len(s.transport.out)
        s.feed(_msg(b"1", 9, [(b"112", b"T9")], target=b"SOMEONE"))    # wrong TargetCompID
        sent = _sent(s, start)
        assert [m[35] for m in sent] == [b"3", b"5"] and sent[0][373] == b"9"
        assert s.transport.closed
        assert s.session.store.next_target_seq == 2                     # still waiting for 2
    finally:
        s.close()


def test_compid_problem_on_a_too_low_seq_does_not_lower_the_expected_seq(tmp_path):
    s = _logged_on(tmp_path)
    try:
        for seq in range(2, 6):
            s.feed(_msg(b"1", seq, [(b"112", b"T%d" % seq)]))
        assert s.session.store.next_target_seq == 6
        s.feed(_msg(b"1", 3, [(b"112", b"X")], target=b"SOMEONE"))
        assert s.transport.closed
        assert s.session.store.next_target_seq == 6
    finally:
        s.close()


def test_queue_overflow_logout_reaches_the_counterparty(tmp_path, monkeypatch):
    monkeypatch.setattr(session_mod, "MAX_QUEUED", 3)
    s = _logged_on(tmp_path)
    try:
        start = len(s.transport.out)
        for seq in range(5, 10):                                        # 2..4 never come
            s.feed(_msg(b"1", seq, [(b"112", b"T%d" % seq)]))
        assert s.transport.closed
        sent = _sent(s, start)
        assert [m[35] for m in sent] == [b"2", b"5"], sent
        assert b"Too many messages queued" in sent[-1][58]
    finally:
        s.close()


def test_missing_sending_time_is_a_required_tag_reject_not_an_accuracy_logout(tmp_path):
    s = _logged_on(tmp_path)
    try:
        start = len(s.transport.out)
        s.feed(_msg(b"1", 2, [(b"112", b"NO52")], sending_time=False))
        sent = _sent(s, start)
        assert [m[35] for m in sent] == [b"3"], sent
        assert (sent[0][373], sent[0][371], sent[0][45]) == (b"1", b"52", b"2")
        assert not s.transport.closed
        s.feed(_msg(b"1", 3, [(b"112", b"NEXT")]))                      # the seq was consumed
        assert _sent(s, start)[-1][112] == b"NEXT"
    finally:
        s.close()


def test_malformed_sending_time_is_a_format_reject_not_an_accuracy_logout(tmp_path):
    s = _logged_on(tmp_path)
    try:
        start = len(s.transport.out)
        s.feed(_msg(b"1", 2, [(b"112", b"BAD52")], sending_time=b"2026x101-00:00:00.000"))
        sent = _sent(s, start)
        assert [m[35] for m in sent] == [b"3"], sent
        assert (sent[0][373], sent[0][371]) == (b"6", b"52")
        assert not s.transport.closed
        start = len(s.transport.out)
        s.feed(frame(b"FIX.4.4", [(b"35", b"1"), (b"49", b"BENCH"), (b"56", b"OMS"), (b"34", b"3"), (b"52", b""),
                                  (b"112", b"EMPTY52")]))
        sent = _sent(s, start)
        assert [(m[35], m[373], m[371]) for m in sent] == [(b"3", b"4", b"52")], sent
        assert not s.transport.closed
    finally:
        s.close()


def _order(seq: int, cl: bytes) -> bytes:
    return _msg(b"D", seq, [(b"11", cl), (b"55", b"AAPL"), (b"54", b"1"), (b"60", now_ts()), (b"38", b"100"),
                            (b"40", b"2"), (b"44", b"190.00")])


def test_in_session_reset_answer_is_seq_1_even_after_an_order_in_the_same_read(tmp_path):
    """An order and an in-session reset Logon (141=Y, seq 1) in one read: the order's report
    belongs to the old numbering; the Logon answer is the first message of the new one."""
    s = _logged_on(tmp_path)
    try:
        start = len(s.transport.out)
        s.feed(_order(2, b"BEFORE") + _msg(b"A", 1, [(b"98", b"0"), (b"108", b"30"), (b"141", b"Y")]))
        sent = [(m[35], m[34]) for m in _sent(s, start)]
        assert sent == [(b"8", b"2"), (b"A", b"1")], sent
        s.feed(_msg(b"1", 2, [(b"112", b"AFTER")]))
        assert [(m[35], m[34], m.get(112)) for m in _sent(s, start)][-1] == (b"0", b"2", b"AFTER")
    finally:
        s.close()
