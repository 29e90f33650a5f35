"""The risk engine's fast paths give the same answers as the plain algorithms they replace:
the lazily trimmed message-rate window, the kernel's context word (array shape and global
kill switch kept in Positions.mem), and the cold path taken only while a session kill
switch or a duplicate window is in use."""
from __future__ import annotations

from collections import deque
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from oms_trading.audit import schema as ev
from oms_trading.compliance import kernels as K
from oms_trading.compliance import risk as risk_module
from oms_trading.engine.positions import OUT_COLS

from tests.test_engine_common import S1, S2, S3, SESSION_ACCOUNT, cancel, kill, limit, make_engine, new, reports

SECOND = 1_000_000_000


class ReferenceRate:
    """The rate window as first written: trim every message, count, append."""

    def __init__(self) -> None:
        self.windows: dict[str, deque] = {}

    def on_message(self, session: str, kind: str, ts: int, limit: int):
        if not limit:
            return None
        window = self.windows.setdefault(session, deque())
        while window and window[0] <= ts - SECOND:
            window.popleft()
        if len(window) >= limit and kind in (ev.ORDER_RECEIVED, ev.REPLACE_REQUESTED):
            return (str(limit), str(len(window) + 1))
        window.append(ts)
        return None


step = st.tuples(st.sampled_from([S1, S2, S3]),
                 st.sampled_from([ev.ORDER_RECEIVED, ev.REPLACE_REQUESTED, ev.CANCEL_REQUESTED]),
                 st.sampled_from([0, 0, 1, 1_000, 50_000_000, 300_000_000, SECOND, 2 * SECOND]),
                 # a limit change before this message: scope, value ("" removes an override)
                 st.one_of(st.none(), st.tuples(st.sampled_from(["default", "account:A1", "account:A3"]),
                                                st.sampled_from(["", "0", "1", "2", "3", "5"]))),
                 # the message's account on S3 (a session with no configured account)
                 st.sampled_from(["A1", "A3", "NOPE", None]))


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 5), st.sampled_from([1, 2, 3, 256]), st.lists(step, min_size=1, max_size=120))
def test_rate_window_matches_reference(first_limit, trim_at, steps):
    with mock.patch.object(risk_module, "_TRIM_AT", trim_at):   # small: lazy trimming below the limit
        _rate_window_matches_reference(first_limit, steps)


def _rate_window_matches_reference(first_limit, steps):
    eng = make_engine()
    risk = eng.risk
    eng.process(limit("default", "max_messages_per_second", str(first_limit)))
    limits = {"default": first_limit}          # scope -> value in force there
    ref = ReferenceRate()
    ts = 10 * SECOND
    for session, kind, dt, change, s3_account in steps:
        if change is not None:
            scope, value = change
            if value == "" and scope == "default":
                value = "0"
            eng.process(limit(scope, "max_messages_per_second", value, ts=ts))
            if value == "":
                limits.pop(scope, None)
            else:
                limits[scope] = int(value)
        ts += dt
        account = SESSION_ACCOUNT[session] if session != S3 else s3_account
        cmd = {"type": kind, "ts": ts, "session": session, "account": account}
        current = limits.get(f"account:{account}", limits["default"])
        got = risk.on_message(cmd)
        want = ref.on_message(session, kind, ts, current)
        if want is None:
            assert got is None, (session, kind, ts)
        else:
            assert got is not None and got.rule == "message_rate", (session, kind, ts)
            assert (got.limit_value, got.actual_value) == want
            assert f"more than {current} messages per second on session {session}" in got.text


def test_rate_window_stays_small_under_a_high_limit():
    """A high limit does not let the window keep every time: it is trimmed as it grows."""
    eng = make_engine()
    risk = eng.risk
    eng.process(limit("account:A1", "max_messages_per_second", "1000000"))
    ts = 10 * SECOND
    for _ in range(20_000):
        ts += 1_000_000                         # 1,000 messages per second
        assert risk.on_message({"type": ev.ORDER_RECEIVED, "ts": ts, "session": S1}) is None
    assert len(risk.windows[S1]) <= 1_000 + 256 + 1


def test_kernel_context_word_and_fail_closed():
    eng = make_engine()
    risk, pos = eng.risk, eng.pos
    kernel_new, kernel_replace = K.compiled()
    mem = pos.mem
    inst = eng.instruments["AAPL"]
    price = inst.to_ticks("100.00")
    ctx = int(mem[-OUT_COLS + K.O_CTX])
    assert ctx == K.context_word(pos.n_acct, pos.n_inst, False)
    assert kernel_new(mem, 0, inst.index, True, price, 10) == K.R_OK
    assert kernel_replace(mem, 0, inst.index, True, price, 10, 5, 0) == K.R_OK
    # an index outside the arrays fails closed instead of reading past them
    for a, i in ((pos.n_acct, inst.index), (-1, inst.index), (0, pos.n_inst), (0, -1)):
        assert kernel_new(mem, a, i, True, price, 10) == K.R_NO_CONTEXT
    # no context word (arrays not prepared by a RiskEngine): fails closed
    mem[-OUT_COLS + K.O_CTX] = 0
    assert kernel_new(mem, 0, inst.index, True, price, 10) == K.R_NO_CONTEXT
    risk._write_context()
    # the global kill switch lives in the context word
    eng.process(kill("global", "engage"))
    assert int(mem[-OUT_COLS + K.O_CTX]) & 1 and risk.global_killed
    assert kernel_new(mem, 0, inst.index, True, price, 10) == K.R_KILL_GLOBAL
    eng.process(kill("global", "release"))
    assert not int(mem[-OUT_COLS + K.O_CTX]) & 1 and not risk.global_killed
    assert kernel_new(mem, 0, inst.index, True, price, 10) == K.R_OK


def test_context_survives_reset_and_replay():
    eng = make_engine()
    eng.process(kill("global", "engage"))
    eng._init_state()                             # a fresh Positions, as before a replay
    mem = eng.pos.mem
    assert int(mem[-OUT_COLS + K.O_CTX]) == K.context_word(eng.pos.n_acct, eng.pos.n_inst, False)
    r = reports(eng.process(new("a", "1", 10)))[0]
    assert r["type"] == ev.ORDER_ACCEPTED, r


def test_every_rule_code_has_a_rejection():
    eng = make_engine()
    risk = eng.risk
    inst = eng.instruments["AAPL"]
    codes = [v for k, v in vars(K).items() if k.startswith("R_") and v]
    risk.pos.OUT[:3] = (1, 2, 100)
    for code in codes:
        rej = risk._rejection(code, inst, "A1", inst.to_ticks("100.00"), False)
        assert rej.rule and rej.text, code


def test_cold_path_only_while_needed():
    """The session kill switch and the duplicate window switch the cold path on and off."""
    eng = make_engine()
    risk = eng.risk
    assert not risk._slow_new
    eng.process(kill(f"session:{S1}", "engage"))
    assert risk._slow_new
    r = reports(eng.process(new("a", "1", 10)))[0]
    assert r["type"] == ev.ORDER_REJECTED and r["rule"] == "kill_switch"
    assert reports(eng.process(new("b", "1", 10, session=S2)))[0]["type"] == ev.ORDER_ACCEPTED
    eng.process(kill(f"session:{S1}", "release"))
    assert not risk._slow_new
    assert reports(eng.process(new("c", "1", 10)))[0]["type"] == ev.ORDER_ACCEPTED
    eng.process(limit("account:A2", "duplicate_window_ms", "100"))
    assert risk._slow_new
    assert reports(eng.process(new("d", "1", 10, session=S2, ts=5)))[0]["type"] == ev.ORDER_ACCEPTED
    r = reports(eng.process(new("e", "1", 10, session=S2, ts=6)))[0]
    assert r["type"] == ev.ORDER_REJECTED and r["rule"] == "duplicate_order"
    eng.process(limit("account:A2", "duplicate_window_ms", "0"))
    assert not risk._slow_new
    assert reports(eng.process(new("f", "1", 10, session=S2, ts=7)))[0]["type"] == ev.ORDER_ACCEPTED
    assert reports(eng.process(cancel("x", "f", session=S2, ts=8)))[0]["type"] == ev.ORDER_CANCELED
