"""Session-layer defects found in the second review, driven through FixSession in memory on the
demo config's BENCH session (FIX.4.4, reset on logon) unless a test says otherwise."""
from __future__ import annotations

import re

from oms_trading.fix import session as session_mod
from tests.memtransport import MemoryTransport
from tests.test_fix_fastpath import Stack, frame, logon, now_ts
from tests.test_fix_review import _logged_on


class FlowTransport(MemoryTransport):
    """A transport whose buffer fills: what the session writes waits in ``buffered`` until the
    counterparty reads it (``read``); past ``high`` bytes the protocol is paused, and resumed
    once the buffer is down to ``low``, as asyncio's transports do."""

    def __init__(self, protocol, high: int = 4096, low: int = 1024) -> None:
        super().__init__()
        self.protocol = protocol
        self.buffered = bytearray()
        self.high, self.low = high, low
        self.paused = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.buffered += data
        if not self.paused and len(self.buffered) > self.high:
            self.paused = True
            self.protocol.pause_writing()

    def get_write_buffer_size(self) -> int:
        return len(self.buffered)

    def abort(self) -> None:
        self.closed = self.aborted = True

    def read(self, n: int | None = None) -> int:
        n = len(self.buffered) if n is None else n
        self.out += self.buffered[:n]
        del self.buffered[:n]
        if self.paused and len(self.buffered) <= self.low:
            self.paused = False
            self.protocol.resume_writing()
        return n


def _msg(msg_type: bytes, seq: int, fields=(), begin: bytes = b"FIX.4.4", sender: bytes = b"BENCH") -> bytes:
    return frame(begin, [(b"35", msg_type), (b"49", sender), (b"56", b"OMS"), (b"34", str(seq).encode()),
                         (b"52", now_ts())] + list(fields))


def _order(seq: int, cl: bytes) -> bytes:
    return _msg(b"D", seq, [(b"11", cl), (b"55", b"AAPL"), (b"54", b"1"), (b"60", now_ts()), (b"38", b"100"),
                            (b"40", b"2"), (b"44", b"190.00")])


def _sent(data: bytes) -> list[dict[int, bytes]]:
    msgs = re.findall(rb"8=FIX.*?\x0110=\d{3}\x01", data, re.S)
    return [{int(t): v for t, v in (f.split(b"=", 1) for f in m.split(b"\x01")[:-1])} for m in msgs]


def _flow_stack(tmp_path, monkeypatch, orders: int) -> tuple[Stack, FlowTransport]:
    """Logged on through a FlowTransport with ``orders`` orders acknowledged (and read)."""
    monkeypatch.setattr(session_mod, "RESEND_CHUNK_BYTES", 2000)
    s = Stack(tmp_path, False)
    monkeypatch.setattr(s.acceptor.config, "max_outbound_buffer_kb", 16)
    t = FlowTransport(s.session)
    s.transport = t
    s.session.connection_made(t)
    s.feed(logon(b"FIX.4.4"))
    for i in range(orders):
        s.feed(_order(i + 2, b"O%d" % i))
        t.read()
    assert s.session.logged_on and not t.closed
    return s, t


def test_resend_larger_than_the_buffer_bound_follows_flow_control(tmp_path, monkeypatch):
    """A resend far larger than max_outbound_buffer_kb is served as the counterparty reads it,
    and what the session sends meanwhile (an ExecutionReport, a Heartbeat) follows it."""
    s, t = _flow_stack(tmp_path, monkeypatch, 150)
    try:
        start = len(t.out)
        s.feed(_msg(b"2", 152, [(b"7", b"1"), (b"16", b"0")]))
        assert not t.closed, "a resend the counterparty reads slowly must not abort the connection"
        assert t.paused and len(t.buffered) < t.high + 2 * session_mod.RESEND_CHUNK_BYTES
        s.feed(_order(153, b"LATE") + _msg(b"1", 154, [(b"112", b"PING")]))
        rounds = 0
        while t.buffered:
            t.read(1500)
            rounds += 1
        assert not t.closed and rounds > 20
        sent = _sent(bytes(t.out[start:]))
        assert [(m[34], m[35], m.get(43)) for m in sent] == \
            [(b"1", b"4", b"Y")] + [(b"%d" % q, b"8", b"Y") for q in range(2, 152)] + \
            [(b"152", b"8", None), (b"153", b"0", None)]
        assert sent[-2][11] == b"LATE" and sent[-1][112] == b"PING"
        s.feed(_order(155, b"AFTER"))            # afterwards, writes go straight out again
        assert _sent(bytes(t.buffered))[-1][11] == b"AFTER"
    finally:
        s.close()


def test_client_that_stops_reading_during_a_resend_is_still_cut_off(tmp_path, monkeypatch):
    """What waits behind a stalled resend is bounded by max_outbound_buffer_kb as well."""
    s, t = _flow_stack(tmp_path, monkeypatch, 150)
    try:
        s.feed(_msg(b"2", 152, [(b"7", b"1"), (b"16", b"0")]))
        assert not t.closed
        seq = 153
        while not t.closed and seq < 400:
            s.feed(_order(seq, b"N%d" % seq))
            seq += 1
        assert t.aborted, "the session kept queueing for a client that does not read"
    finally:
        s.close()


def test_client_that_stops_reading_normal_traffic_is_still_cut_off(tmp_path, monkeypatch):
    s, t = _flow_stack(tmp_path, monkeypatch, 0)
    try:
        seq = 2
        while not t.closed and seq < 400:
            s.feed(_order(seq, b"N%d" % seq))
            seq += 1
        assert t.aborted and len(t.buffered) > 16 * 1024
    finally:
        s.close()


def test_orig_sending_time_malformed_is_6_missing_is_1_empty_is_4(tmp_path):
    """PossDupFlag=Y: a missing OrigSendingTime (122) is reason 1, one in the wrong format 6
    (incorrect data format), an empty one 4, as for SendingTime; the session goes on."""
    s = _logged_on(tmp_path)
    try:
        cases = [(None, b"1"), (b"2026x101-00:00:00.000", b"6"), (b"yesterday", b"6"), (b"", b"4")]
        for seq, (orig, reason) in enumerate(cases, start=2):
            start = len(s.transport.out)
            fields = [(b"43", b"Y")] + ([(b"122", orig)] if orig is not None else []) + [(b"112", b"T%d" % seq)]
            s.feed(_msg(b"1", seq, fields))
            sent = _sent(bytes(s.transport.out[start:]))
            assert [(m[35], m[373], m[371], m[45]) for m in sent] == [(b"3", reason, b"122", b"%d" % seq)], orig
            assert not s.transport.closed
        assert s.session.store.next_target_seq == 2 + len(cases)
    finally:
        s.close()


def test_in_session_reset_logon_seq_above_1_is_the_new_numbering_with_a_gap(tmp_path):
    """An in-session Logon with ResetSeqNumFlag=Y must carry MsgSeqNum 1. As QuickFIX/J does,
    both sides start again at 1 whatever its seq, and one above 1 is a gap in the new
    numbering: the Logon is answered (seq 1, 141=Y) and 1.. is asked for, instead of taking
    the Logon as seq 1 and expecting 2 next (it used to, for any seq below the expected one)."""
    s = _logged_on(tmp_path)
    try:
        for seq in range(2, 6):
            s.feed(_msg(b"1", seq, [(b"112", b"T%d" % seq)]))
        start = len(s.transport.out)
        s.feed(_msg(b"A", 3, [(b"98", b"0"), (b"108", b"30"), (b"141", b"Y")]))
        sent = _sent(bytes(s.transport.out[start:]))
        assert [(m[35], m[34]) for m in sent] == [(b"A", b"1"), (b"2", b"2")], sent
        assert sent[0][141] == b"Y" and (sent[1][7], sent[1][16]) == (b"1", b"0")
        assert s.session.store.next_target_seq == 1 and not s.transport.closed
        s.feed(_msg(b"4", 1, [(b"43", b"Y"), (b"122", now_ts()), (b"123", b"Y"), (b"36", b"3")]))
        assert s.session.store.next_target_seq == 4          # 1..2 filled, the Logon was 3
        start = len(s.transport.out)
        s.feed(_msg(b"1", 4, [(b"112", b"AFTER")]))
        assert [(m[35], m[34], m[112]) for m in _sent(bytes(s.transport.out[start:]))] == [(b"0", b"3", b"AFTER")]
    finally:
        s.close()


def test_in_session_reset_logon_at_the_expected_seq_resets(tmp_path):
    """141=Y on a Logon at (or above) the expected seq resets as well, rather than being
    rejected as 'Already logged on' or queued behind a gap."""
    s = _logged_on(tmp_path)
    try:
        s.feed(_msg(b"1", 2, [(b"112", b"T2")]))
        start = len(s.transport.out)
        s.feed(_msg(b"A", 3, [(b"98", b"0"), (b"108", b"30"), (b"141", b"Y")]))
        sent = _sent(bytes(s.transport.out[start:]))
        assert [(m[35], m[34]) for m in sent] == [(b"A", b"1"), (b"2", b"2")], sent
    finally:
        s.close()


def _configure(s: Stack, **changes) -> None:
    """The demo's FIX 4.2 session CLIENT2 with ``changes`` (SessionConfig is frozen)."""
    import dataclasses
    pair = (b"CLIENT2", b"OMS")
    s.acceptor._configs[pair] = dataclasses.replace(s.acceptor._configs[pair], **changes)


def test_fix42_logon_with_username_and_password_is_accepted(tmp_path):
    """553/554 are not in the FIX 4.2 Logon, but many 4.2 counterparties send them and a 4.2
    session configured with a password has no other way to log on: the 4.2 Logon takes them."""
    from oms_trading.fix.dictionary import validate
    from oms_trading.fix.codec import split_message
    raw = _msg(b"A", 1, [(b"98", b"0"), (b"108", b"30"), (b"553", b"CLIENT2"), (b"554", b"pw42")],
               begin=b"FIX.4.2", sender=b"CLIENT2")
    assert validate(split_message(raw), b"FIX.4.2") is None
    s = Stack(tmp_path, False)
    try:
        _configure(s, password="pw42", username="CLIENT2")
        s.feed(raw)
        assert s.session.logged_on and not s.transport.closed
        assert [(m[35], m[34]) for m in _sent(bytes(s.transport.out))] == [(b"A", b"1")]
    finally:
        s.close()
    s = Stack(tmp_path / "wrong", False)
    try:
        _configure(s, password="other")
        s.feed(raw)
        assert not s.session.logged_on and s.transport.closed
    finally:
        s.close()
    # elsewhere than the Logon they stay undefined for 4.2
    hb = _msg(b"0", 2, [(b"553", b"CLIENT2")], begin=b"FIX.4.2", sender=b"CLIENT2")
    assert validate(split_message(hb), b"FIX.4.2").reason == 2


def test_reports_stored_while_logged_off_do_not_postpone_the_daily_reset(tmp_path, monkeypatch):
    """The daily reset is decided from the store's last activity (file modification times).
    A report stored for a session that is logged off (a fill after it left) is not activity of
    the session: it used to count, so a session last active before the reset time that got a
    report stored after it was not reset at its next logon and, logging on with MsgSeqNum 1 as
    a counterparty does after its own daily reset, was refused as 'MsgSeqNum too low'. Now the
    store resets before storing a report past the reset time (test_fix_session: the report then
    reaches the next logon's resend)."""
    import os
    import time
    from datetime import datetime, timezone
    s = Stack(tmp_path, False)
    try:
        cfg = s.acceptor.find_config(b"CLIENT2", b"OMS")
        store = s.acceptor.store_for(cfg)
        store.save_sent([(i, _msg(b"0", i), 0) for i in (1, 2, 3)])
        store.next_target_seq = 4
        store.save_target_seq()
        two_hours_ago = time.time_ns() - 2 * 3600 * 10**9
        for name in ("outbound.log", "inbound.seq"):
            os.utime(store.directory / name, ns=(two_hours_ago, two_hours_ago))
        an_hour_ago = datetime.fromtimestamp(time.time() - 3600, timezone.utc).strftime("%H:%M")
        monkeypatch.setattr(s.acceptor.config, "daily_reset", an_hour_ago)
        assert s.acceptor.daily_reset_due(store)
        events = []
        s.gateway.on_events.append(events.extend)
        s.feed(logon(b"FIX.4.4"))
        s.feed(_order(2, b"FILLME"))
        report = next(e for e in events if e.get("seq"))
        s.acceptor.store_offline({cfg.key: [dict(report, session=cfg.key)]})
        # the reset came first (the store resets before the new day's first report), the report
        # is seq 1 of the new numbering, and a Logon with MsgSeqNum 1 is what the store expects
        assert (store.next_sender_seq, store.next_target_seq) == (2, 1)
        assert [seq for seq, _raw in store.get_sent(1, 1)] == [1]
    finally:
        s.close()
