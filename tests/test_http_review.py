"""Review findings on the HTTP API and the pre-trade limits behind it, each against a real
in-process server (engine, journal, DuckDB projection, aiohttp on a free port)."""
from __future__ import annotations

import time

import pytest
import pytest_asyncio

from oms_trading.server import OmsServer
from tests.test_http_api import Api as BaseApi, serve_demo
from tests.test_http_api import order  # noqa: F401  (a new order straight into the sequencer)

pytestmark = pytest.mark.asyncio(loop_scope="module")

class Api(BaseApi):
    """test_http_api's client, answering (status, body) without the headers."""

    async def call(self, method: str, path: str, user: str | None = "risk1", body=None):
        status, parsed, _headers = await super().call(method, path, user, body)
        return status, parsed


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def api(tmp_path_factory):
    async for client in serve_demo(tmp_path_factory, "http-review", Api):
        yield client


def control(server: OmsServer, scope: str, limit: str, value, **extra) -> list[dict]:
    """A limit change straight into the sequencer (no four eyes), as the HTTP API submits it."""
    events = server.gateway.submit({"type": "limit_change_requested", "ts": time.time_ns(), "user": "test",
                                    "approver": None, "reason": "test", "scope": scope, "limit": limit,
                                    "new_value": value, "expires_ts": None, "request_id": None, **extra})
    server.gateway.end_batch()
    return events


# -- non-ASCII digits: str.isdigit() is true for "²", int() refuses it -> 500 --------------------


@pytest.mark.parametrize("path, user", [
    ("/api/books/AAPL?levels=%C2%B2", "viewer1"),
    ("/api/audit/search?limit=%C2%B2", "compliance1"),
    ("/api/audit/search?order_id=1%C2%B2", "compliance1"),
    ("/api/audit/search?from=%C2%B2", "compliance1"),
    ("/api/audit/limits?account=ACC1&at=%C2%B2", "compliance1"),
])
async def test_superscript_digits_in_query_parameters_are_a_400(api, path, user):
    status, out = await api.call("GET", path, user=user)
    assert status == 400, (path, status, out)
    assert out["error"]


async def test_superscript_digits_as_an_integer_limit_value_are_a_400(api):
    before = api.server.journal.last_seq
    status, out = await api.call("PUT", "/api/risk/limits", body={
        "scope": "account:ACC1", "limit": "max_order_qty", "value": "\u00b2", "reason": "r"})
    assert status == 400 and "whole number" in out["error"], (status, out)
    assert api.server.journal.last_seq == before


# -- a positive limit below the engine's resolution became 0 (= check off) in the kernel's arrays ---


@pytest.mark.parametrize("limit, value, rule, kwargs", [
    ("max_order_notional", "0.001", "max_order_notional", {}),
    ("credit_limit", "0.000001", "credit_limit", {}),
    ("price_collar_pct", "0.00001", "price_collar_pct", {"price": "199.00"}),
])
async def test_a_limit_too_small_for_the_engine_does_not_switch_the_check_off(api, limit, value, rule, kwargs):
    """The API said the limit was set (200, no four eyes since it is a *lowering*), while the
    engine's integer arrays held 0, which means "off": every order passed that check."""
    server = api.server
    risk = server.engine.risk
    before = risk.value(limit, "ACC1")
    status, out = await api.call("PUT", "/api/risk/limits", body={
        "scope": "account:ACC1", "limit": limit, "value": value, "reason": "tighten"})
    if status == 200:       # applied: the engine must then enforce it (not treat it as off)
        events = order(server, f"TINY-{limit}", qty=1, **kwargs)
        assert events[-1]["type"] == "order_rejected" and events[-1]["rule"] == rule, events[-1]
        control(server, "account:ACC1", limit, None)
    else:
        assert status == 400 and "smallest" in out["error"], out
        assert risk.value(limit, "ACC1") == before


async def test_the_engine_refuses_a_limit_too_small_for_its_arrays(api):
    risk = api.server.engine.risk
    before = risk.value("max_order_notional", "ACC2")
    events = control(api.server, "account:ACC2", "max_order_notional", "0.001")
    assert events[-1]["type"] == "limit_change_rejected" and "smallest money unit 0.01" in events[-1]["text"]
    assert risk.value("max_order_notional", "ACC2") == before
    events = control(api.server, "account:ACC2", "max_order_notional", "0.01")     # one unit: fine
    assert events[-1]["type"] == "limit_changed"
    control(api.server, "account:ACC2", "max_order_notional", str(before))


# -- four eyes: a temporary raise could be made permanent (or extended) by one user ----------------


async def test_a_temporary_raise_cannot_be_made_permanent_or_extended_without_four_eyes(api):
    server = api.server
    risk = server.engine.risk
    # an approved temporary raise of HOUSE's max_order_qty: 100000 -> 1000000 for ten minutes
    events = control(server, "account:HOUSE", "max_order_qty", "1000000",
                     expires_ts=time.time_ns() + 600 * 10**9)
    assert events[-1]["type"] == "limit_changed"
    assert risk.value("max_order_qty", "HOUSE") == 1_000_000
    try:
        for extra in ({}, {"expires_in_s": 7 * 86_400}):
            status, out = await api.call("PUT", "/api/risk/limits", body={
                "scope": "account:HOUSE", "limit": "max_order_qty", "value": 1_000_000, "reason": "keep it", **extra})
            assert status == 202, (extra, status, out)
            assert "100000" in out["approval"]["why"]
        assert [(p["scope"], p["restore_value"]) for p in risk.snapshot()["pending_expiries"]
                if p["limit"] == "max_order_qty"] == [("account:HOUSE", None)]
        # a change within the factor of what the scope returns to still applies at once
        status, out = await api.call("PUT", "/api/risk/limits", body={
            "scope": "account:HOUSE", "limit": "max_order_qty", "value": 150_000, "reason": "smaller"})
        assert status == 200, out
    finally:
        control(server, "account:HOUSE", "max_order_qty", None)


# -- GET /api/risk/limits?account=ACC1 also listed the layers of ACC10, ACC1X, ... ---------------


async def test_limits_of_one_account_do_not_list_another_accounts_layers(api):
    risk = api.server.engine.risk
    # an account whose name starts with ACC1 (the demo config has none: a layer stands in for it)
    risk.layers["account:ACC10"] = {"max_order_qty": 7}
    risk.layers["account:ACC10/instrument:AAPL"] = {"restricted": True}
    control(api.server, "account:ACC1/instrument:TSLA", "restricted", "true")
    try:
        status, out = await api.call("GET", "/api/risk/limits?account=ACC1")
        assert status == 200
        assert "account:ACC1/instrument:TSLA" in out["layers"]
        assert not any(s.startswith("account:ACC10") for s in out["layers"]), sorted(out["layers"])
    finally:
        del risk.layers["account:ACC10"], risk.layers["account:ACC10/instrument:AAPL"]
        control(api.server, "account:ACC1/instrument:TSLA", "restricted", "false")
