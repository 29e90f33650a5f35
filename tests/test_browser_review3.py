"""Review of the web console in real headless Chromium against a real `oms serve` subprocess
(the set-up of tests/test_browser_console.py): each test is a defect the review found.

Needs /usr/bin/chromium (or $OMS_CHROMIUM) and the playwright package; without them the tests
skip and say why.
"""
from __future__ import annotations

import json
import time
import urllib.request

import pytest

from tests.fixclient import FixClient, field

# the same Chromium, flags and skips as the console's own tests (a module skip there skips here)
from tests.test_browser_console import browser, server, sign_in, sync_api, url  # noqa: E402,F401 (fixtures, helpers)


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.set_default_timeout(10_000)
    yield pg
    context.close()
    assert not errors, f"browser errors: {errors}"


def get_json(server, path: str, token: str) -> dict:
    req = urllib.request.Request(url(server) + path.lstrip("/"), headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)


def test_audit_times_are_shown_as_recorded_to_the_nanosecond(page, server):
    """The audit trail's times are UTC ns: the console parsed the JSON number `ts` (a double
    keeps ns since 1970 only to ~256 ns) and showed 6 digits of it, so an event at
    .645836938 read .645837 (a microsecond late) and two events in one microsecond looked
    simultaneous. The rows carry `time`, the exact ISO 8601 text with all nine digits."""
    fix = FixClient("127.0.0.1", server.fix_port, "CLIENT1")
    try:
        fix.logon(password="demo1")
        for i in range(20):
            fix.new_order(f"NS-{i}", "AAPL", "1", 10, "189.00")
            assert field(fix.expect("8"), 39) == "0"
    finally:
        fix.close()
    sign_in(page, server, "demo-compliance1-token")
    page.fill("#search-form input[name=limit]", "1000")
    page.click("#search-form button[type=submit]")
    page.wait_for_selector("#search-results tr:has-text('NS-19')")
    shown = {int(r[0]): r[1] for r in page.eval_on_selector_all(
        "#search-results tr", "rows => rows.map(r => [r.cells[0].textContent, r.cells[1].textContent])")}
    rows = get_json(server, "/api/audit/search?limit=1000", "demo-compliance1-token")["rows"]
    assert len(rows) >= 40
    expected = {r["seq"]: r["time"].replace("T", " ").rstrip("Z") for r in rows}
    assert all(len(t) == 29 for t in expected.values())      # 2026-11-26 14:22:31.645836938
    assert shown == expected

    # the order's timeline the same
    order = next(r for r in rows if r["cl_ord_id"] == "NS-7" and r["order_id"])
    page.select_option("#life-by", "order_id")
    page.fill("#life-id", str(order["order_id"]))
    page.click("#life-form button[type=submit]")
    page.wait_for_selector("#timeline li:has-text('order accepted')")
    events = get_json(server, f"/api/audit/lifecycle?order_id={order['order_id']}", "demo-compliance1-token")["events"]
    times = page.eval_on_selector_all("#timeline li .t", "ts => ts.map(t => t.textContent)")
    assert times == [f"{e['time'].replace('T', ' ').rstrip('Z')} · seq {e['seq']}" for e in events]


def _api_requests(page) -> list:
    seen: list = []
    page.on("request", lambda r: seen.append((time.monotonic(), r.url.split("/", 3)[3], r.headers.get("authorization")))
            if "/api/" in r.url else None)
    return seen


def _hold_first(page, pattern: str) -> list:
    held: list = []

    def hold(route):
        if held:
            route.continue_()
        else:
            held.append(route)
    page.route(pattern, hold)
    return held


def _wait_held(page, held: list) -> None:
    deadline = time.monotonic() + 10
    while not held and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert held, "the console never asked for the limits"


def test_logging_out_while_the_risk_desk_loads_starts_no_refresh(page, server):
    """The risk desk started its refresh timers after its first limits load returned: a log-out
    (or another tab) while that load was under way cleared the timers before they existed, so
    they started afterwards. After a log-out they polled with 'Bearer null', and the 401 said
    'Your token is no longer accepted' to a user who had just logged out."""
    seen = _api_requests(page)
    held = _hold_first(page, "**/api/risk/limits*")
    sign_in(page, server, "demo-risk1-token")
    _wait_held(page, held)
    page.click("#logout")
    logged_out = time.monotonic()
    held[0].continue_()
    page.wait_for_timeout(5_500)          # past the 2 s exposure and the 5 s limits refresh
    after = [(path, auth) for t, path, auth in seen if t > logged_out]
    assert after == []
    assert page.locator("#login-error").is_hidden()
    assert page.locator("#login").is_visible()


def test_leaving_the_risk_desk_while_it_loads_stops_its_refresh(page, server):
    seen = _api_requests(page)
    held = _hold_first(page, "**/api/risk/limits*")
    sign_in(page, server, "demo-risk1-token")
    _wait_held(page, held)
    page.click(".tab[data-page=positions]")
    left = time.monotonic()
    held[0].continue_()
    page.wait_for_timeout(5_500)
    after = sorted({path.split("?")[0] for t, path, _ in seen if t > left})
    assert after and all(p.startswith(("api/positions", "api/orders", "api/books/")) for p in after), after


def put_json(server, path: str, token: str, body: dict) -> dict:
    req = urllib.request.Request(url(server) + path.lstrip("/"), data=json.dumps(body).encode(), method="PUT",
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)


def test_an_account_on_a_globally_restricted_instrument_is_shown_restricted_in_force(page, server):
    """At the scope 'Account ACC2 on VOD.L' the restricted row's 'In force' read only the pair's
    own flag: with VOD.L on the global restricted list (instrument scope) it said 'no' while
    every ACC2 order in VOD.L was rejected as restricted. The numeric rows show the value in
    force, wherever it is set; the flag now does too, and says where it is set."""
    put_json(server, "/api/risk/limits", "demo-risk1-token",
             {"scope": "instrument:VOD.L", "limit": "restricted", "value": True, "reason": "review3: global list"})
    try:
        fix = FixClient("127.0.0.1", server.fix_port, "CLIENT2", begin_string="FIX.4.2")
        try:
            fix.logon(reset=True)
            fix.new_order("GLOBAL-R", "VOD.L", "1", 100, "70.00")
            rej = fix.expect("8")
            assert field(rej, 39) == "8" and "restricted" in field(rej, 58).lower()
        finally:
            fix.close()
        sign_in(page, server, "demo-risk1-token")
        page.wait_for_selector("#limits tr[data-row=max_order_qty]")
        page.select_option("#lim-scope", "account:ACC2/instrument:VOD.L")
        row = page.locator("#limits tr[data-row=restricted]")
        sync_api.expect(row.locator("td:nth-child(3)")).to_have_text("yes")
        sync_api.expect(row.locator("td:nth-child(4)")).to_have_text("instrument:VOD.L")
        assert row.locator("select").input_value() == "false"       # the pair's own flag stays unset
    finally:
        put_json(server, "/api/risk/limits", "demo-risk1-token",
                 {"scope": "instrument:VOD.L", "limit": "restricted", "value": False, "reason": "review3: undo"})
