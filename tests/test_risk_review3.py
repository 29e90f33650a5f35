"""Third review of the pre-trade risk controls and the risk desk's HTTP API: each finding
against the engine driven directly or a real in-process server (engine, journal, DuckDB
projection, aiohttp on a loopback port)."""
from __future__ import annotations

import pytest
import pytest_asyncio

from oms_trading.audit import schema as ev
from tests.test_http_api import serve_demo
from tests.test_http_review import Api, control

from tests.test_engine_common import S1, S2, kill, limit, make_engine, new, reports

ASYNC = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def api(tmp_path_factory):
    async for client in serve_demo(tmp_path_factory, "risk-review3", Api):
        yield client


# -- a limit change whose flush the journal refused was answered 200 "applied" -------------------


@ASYNC
async def test_a_limit_change_the_journal_refused_is_not_answered_applied(api, monkeypatch):
    """A record the journal refuses at flush (JournalRecordError: a value of a type it does not
    take) makes the gateway drop the batch and rebuild the engine from the journal, but leaves
    ``journal_failed`` unset (the journal itself is fine). The HTTP API looked only at that
    flag, so it answered 200 "applied" for a limit change that was neither journaled nor in
    force: the risk desk believed a limit was set that the engine did not apply."""
    server = api.server
    risk = server.engine.risk
    journal = server.journal
    before_value = risk.value("max_order_qty", "ACC2")
    before_seq = journal.last_seq
    real_append = journal.append

    def append(event):   # a bug upstream: a float slips into the limit_changed event
        if event["type"] == ev.LIMIT_CHANGED:
            event = {**event, "ratio": 0.5}
        return real_append(event)

    monkeypatch.setattr(journal, "append", append)
    status, out = await api.call("PUT", "/api/risk/limits", body={
        "scope": "account:ACC2", "limit": "max_order_qty", "value": 10, "reason": "tighten"})
    monkeypatch.undo()
    assert server.engine.risk.value("max_order_qty", "ACC2") == before_value    # not in force
    assert journal.last_seq == before_seq                                        # not journaled
    assert status == 503, (status, out)
    assert "nothing was changed" in out["error"]
    # the journal goes on: the same change applies now
    status, out = await api.call("PUT", "/api/risk/limits", body={
        "scope": "account:ACC2", "limit": "max_order_qty", "value": 10, "reason": "tighten"})
    assert status == 200 and server.engine.risk.value("max_order_qty", "ACC2") == 10, out
    control(server, "account:ACC2", "max_order_qty", None)


def kinds(events: list[dict]) -> list[tuple]:
    return [(e["type"], e.get("rule")) for e in reports(events)]


# -- the duplicate-order window: one account's short window pruned another's memory ----------------


def test_pruning_the_duplicate_memory_keeps_every_accounts_window():
    """Past 100000 remembered orders the memory was pruned with the window of the account whose
    order was being checked: an account with a 1 ms window dropped every other account's
    orders, so A2 (60 s window) could send the same order again 3 ms later and it passed."""
    eng = make_engine()
    ms = 1_000_000
    eng.process(limit("account:A1", "duplicate_window_ms", "1"))
    eng.process(limit("account:A2", "duplicate_window_ms", "60000"))
    # A1's earlier orders, long out of its window, fill the memory to its bound
    for k in range(100_001):
        eng.risk.last_orders[(0, 0, "1", "2", k + 1, 10_000)] = 1
    assert kinds(eng.process(new("x1", "1", 10, "100.00", session=S2, ts=1000 * ms))) == [(ev.ORDER_ACCEPTED, None)]
    assert kinds(eng.process(new("a1", "1", 7, "100.00", session=S1, ts=1002 * ms))) == [(ev.ORDER_ACCEPTED, None)]
    assert kinds(eng.process(new("x2", "1", 10, "100.00", session=S2, ts=1003 * ms))) == [
        (ev.ORDER_REJECTED, "duplicate_order")]
    assert len(eng.risk.last_orders) < 100    # A1's old orders did go


# -- the console's login form put the token into the URL when its script had not taken over -------


def test_the_login_form_cannot_put_the_token_into_a_url():
    """The sign-in form was a plain GET form whose password field had name="token": pressed
    Enter before app.js (deferred) had bound its submit handler, or with app.js failing to load,
    the browser navigated to /?token=<the bearer token>, leaving it in the address bar, the
    history and the log of any proxy in between. A field without a name is never submitted."""
    from html.parser import HTMLParser

    from oms_trading.web.app import STATIC_DIR

    class Forms(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.method: str | None = None
            self.leaks: list[dict] = []

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == "form":
                self.method = (a.get("method") or "get").lower()
            elif tag == "input" and self.method == "get" and a.get("type") == "password" and a.get("name"):
                self.leaks.append(a)

        def handle_endtag(self, tag):
            if tag == "form":
                self.method = None

    forms = Forms()
    forms.feed((STATIC_DIR / "index.html").read_text())
    assert forms.leaks == []


# -- the duplicate-order window after the wall clock stepped back ----------------------------------


def test_the_duplicate_window_after_the_clock_is_set_back():
    """Commands carry the gateway's wall-clock time, which a clock step can set back (the
    engine keeps those times, see Engine._clock_went_back). The duplicate check compared
    ts - last < window: after a step back of an hour every same order (account, symbol, side,
    qty, price) was rejected as a duplicate "within 100 ms" for the whole hour, its
    actual_value a negative number of ms. The rate window was mended for the same step; a
    journal of the rules before replays as it ran."""
    from oms_trading.engine.engine import RULES_VERSION

    second = 1_000_000_000

    def run(rules: int) -> list[tuple]:
        eng = make_engine()
        eng.process(limit("account:A1", "duplicate_window_ms", "100"))
        eng._set_rules(rules)
        out = kinds(eng.process(new("a", "1", 10, "100.00", ts=3600 * second)))
        for k, t in enumerate((5, 10, 60)):          # the clock set back an hour
            out += kinds(eng.process(new(f"b{k}", "1", 10, "100.00", ts=t * second)))
        out += kinds(eng.process(new("c", "1", 10, "100.00", ts=60 * second + 50_000_000)))   # 50 ms later
        return out

    assert run(RULES_VERSION) == [(ev.ORDER_ACCEPTED, None)] * 4 + [(ev.ORDER_REJECTED, "duplicate_order")]
    assert run(3) == [(ev.ORDER_ACCEPTED, None)] + [(ev.ORDER_REJECTED, "duplicate_order")] * 4


# -- four eyes: one user could raise a limit in steps, each within the factor --------------------


@ASYNC
async def test_four_eyes_judges_a_raise_against_the_value_two_users_last_set_too(api):
    """The factor was applied to the value in force only: with factor 2 one risk user took
    ACC1's max_order_qty 100,000 -> 190,000 -> 380,000 -> 760,000 alone. A raise is also judged
    against the value before the desk's first change (or the one two users last set): past the
    factor of that, a second user approves; a replay of the journal gives the same reference."""
    risk = api.server.engine.risk
    body = {"scope": "account:ACC1", "limit": "max_order_qty", "reason": "steps"}
    try:
        status, out = await api.call("PUT", "/api/risk/limits", body=dict(body, value=190_000))
        assert status == 200, out
        status, out = await api.call("PUT", "/api/risk/limits", body=dict(body, value=380_000))
        assert status == 202, out
        assert "100000 (the value last set by two risk users or configured)" in out["approval"]["why"]
        aid = out["approval"]["id"]
        assert risk.value("max_order_qty", "ACC1") == 190_000
        # lower and back up within the factor of the reference: one user is enough
        for value in (50_000, 100_000, 200_000):
            status, out = await api.call("PUT", "/api/risk/limits", body=dict(body, value=value))
            assert status == 200, (value, out)
        # the second user approves the 380,000: the new reference, from which one user may go to 760,000
        status, out = await api.call("POST", f"/api/risk/approvals/{aid}/approve", user="risk2")
        assert status == 200 and out["event"]["approver"] == "risk2", out
        status, out = await api.call("PUT", "/api/risk/limits", body=dict(body, value=700_000))
        assert status == 200, out
        assert {"scope": "account:ACC1", "limit": "max_order_qty", "value": "380000"} \
            in risk.snapshot()["four_eyes_references"]
        before = dict(risk.four_eyes_ref)
        api.server.engine.rebuild_from_journal()
        assert api.server.engine.risk.four_eyes_ref == before
    finally:
        control(api.server, "account:ACC1", "max_order_qty", None)
