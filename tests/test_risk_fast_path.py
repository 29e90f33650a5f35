"""The risk engine's fast paths give the same answers as the plain algorithms they replace:
the message-rate window kept in a numba ring per session (grown when full) and counted in
the same kernel call as the order's checks, the kernel's context word (array shape and
global kill switch kept in Positions.mem), and the cold path taken only while a session kill
switch or a duplicate window is in use."""
from __future__ import annotations

from collections import deque
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from oms_trading.audit import schema as ev
from oms_trading.compliance import kernels as K
from oms_trading.compliance import risk as risk_module
from oms_trading.engine.engine import Rejection
from oms_trading.engine.positions import OUT_COLS

from tests.test_engine_common import (S1, S2, S3, SESSION_ACCOUNT, cancel, kill, limit, make_engine, new, replace,
                                      reports)

SECOND = 1_000_000_000


class ReferenceRate:
    """The rate window as first written: trim every message, count, append."""

    def __init__(self) -> None:
        self.windows: dict[str, deque] = {}
        self.trimmed: dict[str, int] = {}    # session -> ts of its last trim

    def on_message(self, session: str, kind: str, ts: int, limit: int):
        if not limit:
            return None
        window = self.windows.setdefault(session, deque())
        self.trimmed[session] = ts
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
                 st.sampled_from(["A1", "A3", "NOPE", None]),
                 # a new order of a known account: through new_order (the engine's accept path)
                 st.booleans())


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 5), st.sampled_from([1, 2, 4, 256]), st.sampled_from([1, 3, 64]),
       st.lists(step, min_size=1, max_size=120))
def test_rate_window_matches_reference(first_limit, ring_start, pending, steps):
    # small rings grow while in use; small pending buffers fill up
    with mock.patch.object(risk_module, "_RING_START", ring_start), mock.patch.object(risk_module, "_PENDING", pending):
        _rate_window_matches_reference(first_limit, steps)


def _rate_window_matches_reference(first_limit, steps):
    eng = make_engine()
    risk = eng.risk
    eng.process(limit("default", "max_messages_per_second", str(first_limit)))
    limits = {"default": first_limit}          # scope -> value in force there
    ref = ReferenceRate()
    ts = 10 * SECOND
    inst = eng.instruments["AAPL"]
    price = inst.to_ticks("100.00")
    for session, kind, dt, change, s3_account, via_new_order in steps:
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
        if via_new_order and kind == ev.ORDER_RECEIVED and account in ("A1", "A3"):
            cmd.update(side="1", qty=1)
            try:
                got = risk.new_order(cmd, inst, eng.account_index[account], price)
            except Rejection as rej:
                got = rej
        else:
            got = risk.on_message(cmd)
        want = ref.on_message(session, kind, ts, current)
        if want is None:
            assert got is None, (session, kind, ts)
        else:
            assert got is not None and got.rule == "message_rate", (session, kind, ts)
            assert (got.limit_value, got.actual_value) == want
            assert f"more than {current} messages per second on session {session}" in got.text
        # the same window, once trimmed where the reference last trimmed (the times of
        # cancels wait in a pending buffer, untrimmed, until the next kernel call)
        horizon = ref.trimmed.get(session, 0) - SECOND
        assert [t for t in risk.window_times(session) if t > horizon] == list(ref.windows.get(session, ()))


def test_rate_window_stays_small_under_a_high_limit():
    """A high limit does not let the window keep every time: it is trimmed as it grows."""
    eng = make_engine()
    risk = eng.risk
    eng.process(limit("account:A1", "max_messages_per_second", "1000000"))
    ts = 10 * SECOND
    for _ in range(20_000):
        ts += 1_000_000                         # 1,000 messages per second
        assert risk.on_message({"type": ev.ORDER_RECEIVED, "ts": ts, "session": S1}) is None
    assert len(risk.window_times(S1)) == 1_000         # exact: the times of the last second
    assert risk._window_arrays[S1].shape[0] - K.W_RING == 1_024


def test_rate_window_grows_and_counts_exactly():
    """Cancels always pass and count, so a window can hold far more than the limit: its ring
    grows, keeps the times in order, and a refused order reports the exact count."""
    eng = make_engine()
    risk = eng.risk
    eng.process(limit("account:A1", "max_messages_per_second", "3"))
    ts = 10 * SECOND
    for k in range(1_000):
        assert risk.on_message({"type": ev.CANCEL_REQUESTED, "ts": ts + k, "session": S1}) is None
    assert risk.window_times(S1) == [ts + k for k in range(1_000)]
    rej = risk.on_message({"type": ev.REPLACE_REQUESTED, "ts": ts + 1_000, "session": S1})
    assert (rej.rule, rej.limit_value, rej.actual_value) == ("message_rate", "3", "1001")
    r = reports(eng.process(new("o", "1", 1, ts=ts + 1_001)))[0]
    assert (r["type"], r["rule"], r["actual_value"], r["rej_reason"]) == (ev.ORDER_REJECTED, "message_rate", "1001", 0)
    # one second after the cancels, their times have left the window
    r = reports(eng.process(new("p", "1", 1, ts=ts + SECOND + 999)))[0]
    assert r["type"] == ev.ORDER_ACCEPTED, r
    assert risk.window_times(S1) == [ts + SECOND + 999]


def test_rate_counts_an_order_that_fails_validation():
    """A new order refused before risk (missing/duplicate ClOrdID, bad price) still counts in
    its session's window, and when over the rate the answer is message_rate, as it was when
    the rate was checked first."""
    eng = make_engine()
    risk = eng.risk
    eng.process(limit("account:A1", "max_messages_per_second", "2"))
    ts = 10 * SECOND
    assert reports(eng.process(new("a", "1", 1, ts=ts)))[0]["type"] == ev.ORDER_ACCEPTED
    r = reports(eng.process(new("a", "1", 1, ts=ts + 1)))[0]
    assert r["rule"] == "duplicate_cl_ord_id", r
    assert risk.window_times(S1) == [ts, ts + 1]
    r = reports(eng.process(new("a", "1", 1, ts=ts + 2)))[0]
    assert (r["rule"], r["limit_value"], r["actual_value"]) == ("message_rate", "2", "3"), r
    r = reports(eng.process(new("b", "1", 1, "100.001", ts=ts + 3)))[0]
    assert r["rule"] == "message_rate", r
    assert risk.window_times(S1) == [ts, ts + 1]
    r = reports(eng.process(new("c", "1", 1, "100.001", ts=ts + SECOND)))[0]
    assert r["rule"] == "price_grid", r
    assert risk.window_times(S1) == [ts + 1, ts + SECOND]


def test_windows_follow_reset_and_limit_changes():
    """A replay starts from empty windows; headers follow new arrays and limit changes."""
    eng = make_engine()
    risk = eng.risk
    eng.process(limit("default", "max_messages_per_second", "1"))
    assert reports(eng.process(new("a", "1", 1, session=S3, account="A3", ts=5)))[0]["type"] == ev.ORDER_ACCEPTED
    r = reports(eng.process(new("b", "1", 1, session=S3, account="A3", ts=6)))[0]
    assert r["rule"] == "message_rate", r
    eng.process(limit("account:A3", "max_messages_per_second", "2", ts=7))   # applies to the next order
    assert reports(eng.process(new("c", "1", 1, session=S3, account="A3", ts=8)))[0]["type"] == ev.ORDER_ACCEPTED
    eng._init_state()
    assert risk.window_times(S3) == []
    window = risk._window_arrays[None]
    assert window[K.W_MEM] == eng.pos.mem.ctypes.data and window[K.W_LIMIT] == 0
    assert reports(eng.process(new("a", "1", 1, session=S3, account="A3", ts=9)))[0]["type"] == ev.ORDER_ACCEPTED


def test_kernel_context_word_and_fail_closed():
    eng = make_engine()
    risk, pos = eng.risk, eng.pos
    kernel_new, kernel_replace, kernel_order, _kernel_rate, kernel_replace_order = K.compiled()
    window = risk._waddr[None]                    # the window of session-less orders (no rate)
    mem = pos.mem
    inst = eng.instruments["AAPL"]
    price = inst.to_ticks("100.00")
    ctx = int(mem[-OUT_COLS + K.O_CTX])
    assert ctx == K.context_word(pos.n_acct, pos.n_inst, False)
    assert kernel_new(mem, 0, inst.index, True, price, 10) == K.R_OK
    assert kernel_replace(mem, 0, inst.index, True, price, 10, 5, 0) == K.R_OK
    assert kernel_replace_order(window, 0, inst.index, True, price, 10, 5, 0) == K.R_OK
    # an index outside the arrays fails closed instead of reading past them
    for a, i in ((pos.n_acct, inst.index), (-1, inst.index), (0, pos.n_inst), (0, -1)):
        assert kernel_new(mem, a, i, True, price, 10) == K.R_NO_CONTEXT
        assert kernel_order(window, 1, a, i, True, price, 10) == K.R_NO_CONTEXT
        assert kernel_replace_order(window, a, i, True, price, 10, 5, 0) == K.R_NO_CONTEXT
    # no context word (arrays not prepared by a RiskEngine): fails closed
    mem[-OUT_COLS + K.O_CTX] = 0
    assert kernel_new(mem, 0, inst.index, True, price, 10) == K.R_NO_CONTEXT
    assert kernel_order(window, 1, 0, inst.index, True, price, 10) == K.R_NO_CONTEXT
    risk._write_context()
    assert kernel_order(window, 1, 0, inst.index, True, price, 10) == K.R_OK
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

    def flags(session):   # what new_order's kernel sees in the session's window
        risk._open_window(session)
        return int(risk._window_arrays[session][K.W_FLAGS])
    assert not risk._slow_new and flags(S1) == flags(S2) == 0
    eng.process(kill(f"session:{S1}", "engage"))
    assert risk._slow_new
    assert flags(S1) == K.WF_KILLED and flags(S2) == 0
    r = reports(eng.process(new("a", "1", 10)))[0]
    assert r["type"] == ev.ORDER_REJECTED and r["rule"] == "kill_switch"
    assert reports(eng.process(new("b", "1", 10, session=S2)))[0]["type"] == ev.ORDER_ACCEPTED
    eng.process(kill(f"session:{S1}", "release"))
    assert not risk._slow_new and flags(S1) == 0
    assert reports(eng.process(new("c", "1", 10)))[0]["type"] == ev.ORDER_ACCEPTED
    eng.process(limit("account:A2", "duplicate_window_ms", "100"))
    assert risk._slow_new and flags(S1) == flags(S2) == flags(S3) == K.WF_DUPLICATES
    assert reports(eng.process(new("d", "1", 10, session=S2, ts=5)))[0]["type"] == ev.ORDER_ACCEPTED
    r = reports(eng.process(new("e", "1", 10, session=S2, ts=6)))[0]
    assert r["type"] == ev.ORDER_REJECTED and r["rule"] == "duplicate_order"
    eng.process(limit("account:A2", "duplicate_window_ms", "0"))
    assert not risk._slow_new and flags(S2) == flags(S3) == 0
    assert reports(eng.process(new("f", "1", 10, session=S2, ts=7)))[0]["type"] == ev.ORDER_ACCEPTED
    assert reports(eng.process(cancel("x", "f", session=S2, ts=8)))[0]["type"] == ev.ORDER_CANCELED


def test_fastcall_passes_every_int64_and_refuses_the_rest():
    """The METH_FASTCALL builtin hands each int64 to the C function unchanged (-1, the C
    API's error value, included) and raises as a builtin would on anything else."""
    import numba
    from numba import types

    from oms_trading.compliance import fastcall

    def mix(a, b, c):
        return a ^ (b * 3) ^ (c * 7)
    c = numba.cfunc(types.int64(types.int64, types.int64, types.int64))(mix)
    f = fastcall.fastcall(c.address, 3, "mix")
    if f is None:
        assert not fastcall.enabled()
        return
    jit = numba.njit(mix)
    values = [0, 1, -1, 2, -2, 2**30 - 1, 2**30, 2**31, 2**60 + 5, 2**63 - 1, -2**63, True, False]
    for a in values:
        for b in values[:6]:
            assert f(a, b, ~a) == jit(a, b, ~a), (a, b)
    for args, exc in (((1, 2), TypeError), ((1, 2, 3, 4), TypeError), ((1, 2, "3"), TypeError),
                      ((1, 2.0, 3), TypeError), ((2**63, 1, 1), OverflowError), ((1, 1, -2**63 - 1), OverflowError)):
        try:
            f(*args)
        except exc:
            continue
        raise AssertionError(f"{args} did not raise {exc.__name__}")
    try:
        f(1, 2, c=3)
    except TypeError:
        pass
    else:
        raise AssertionError("keyword argument accepted")


def _engine_outputs(numba_entries: bool, commands) -> list:
    eng = make_engine()
    if numba_entries:
        _n, _r, eng.risk._new_order, eng.risk._rate, eng.risk._replace_order = K.numba_entries()
    out = []
    for cmd in commands:
        out.append(eng.process(dict(cmd)))
    return out


def test_fastcall_entries_answer_as_numba_entries():
    """An engine whose risk calls the kernels through the fastcall builtins produces exactly
    the events of one calling numba's own entry points: orders that pass and fail every
    check, over the rate, cancels and replaces on three sessions."""
    import random
    rng = random.Random(5)
    commands = [limit("account:A1", "max_messages_per_second", "40"),
                limit("default", "max_messages_per_second", "25"),
                limit("account:A2", "max_order_qty", "300")]
    live = []
    ts = 10 * SECOND
    for k in range(1_500):
        ts += rng.choice([1, 1_000, 5_000_000, 20_000_000])
        session = rng.choice([S1, S2, S3])
        r = rng.random()
        if r < 0.2 and live:
            s, cl = live.pop(rng.randrange(len(live)))
            commands.append(cancel(f"x{k}", cl, session=s, ts=ts))
        elif r < 0.3 and live:
            s, cl = live[rng.randrange(len(live))]
            commands.append(replace(f"r{k}", cl, rng.choice([1, 50, 400, 5_000]),
                                    rng.choice(["99.00", "100.00", "130.00"]), session=s, ts=ts))
        else:
            cl = f"n{k}"
            commands.append(new(cl, rng.choice("12"), rng.choice([1, 10, 200, 900, 2_000]),
                                rng.choice(["95.00", "100.00", "100.50", "120.00"]), session=session,
                                symbol=rng.choice(["AAPL", "AAPL", "VOD", "NOREF"]), ts=ts,
                                account=rng.choice(["A1", "A3"]) if session == S3 else None))
            live.append((session, cl))
    fast, slow = _engine_outputs(False, commands), _engine_outputs(True, commands)
    assert fast == slow
    rules = {e.get("rule") for events in fast for e in events if e["type"] == ev.ORDER_REJECTED}
    assert {"message_rate", "max_order_qty", "price_collar_pct", "no_reference_price"} <= rules, rules
