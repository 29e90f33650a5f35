"""HTTP API of a real in-process server (engine, journal, DuckDB projection, aiohttp on a free
port): every route's success, 400, 401 and 403, four eyes, and the OpenAPI description
checked against the served routes in both directions."""
from __future__ import annotations

import csv
import io
import json
import time

import aiohttp
import pyarrow.parquet as pq
import pytest
import pytest_asyncio

from oms_trading.config import load_config
from oms_trading.server import OmsServer, ServeOptions
from oms_trading.web import audit_api

pytestmark = pytest.mark.asyncio(loop_scope="module")

TOKENS = {"risk1": "demo-risk1-token", "risk2": "demo-risk2-token", "compliance1": "demo-compliance1-token",
          "viewer1": "demo-viewer1-token"}
ROLE_USER = {"risk": "risk1", "compliance": "compliance1", "viewer": "viewer1"}


class Api:
    def __init__(self, server: OmsServer, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session
        host, port = server.http_address
        self.base = f"http://{host}:{port}"

    async def call(self, method: str, path: str, user: str | None = "risk1", body=None, raw: bytes | None = None,
                   headers: dict | None = None, token: str | None = None):
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        elif user is not None:
            h["Authorization"] = f"Bearer {TOKENS[user]}"
        kwargs = {}
        if body is not None:
            kwargs["json"] = body
        elif raw is not None:
            kwargs["data"] = raw
        async with self.session.request(method, self.base + path, headers=h, **kwargs) as resp:
            data = await resp.read()
            ctype = resp.headers.get("Content-Type", "")
            parsed = json.loads(data) if ctype.startswith("application/json") else data
            return resp.status, parsed, resp.headers


async def serve_demo(tmp_path_factory, name: str, api_class: type = Api):
    """An in-process server on the demo config with a fresh data dir, and an HTTP client on it
    (``api_class``); stopped when the generator is closed."""
    config = load_config(None)
    data = tmp_path_factory.mktemp(name) / "data"
    server = OmsServer(config, ServeOptions(data, "127.0.0.1", 0, 0, book="reference"), out=io.StringIO())
    await server.start()
    async with aiohttp.ClientSession() as session:
        yield api_class(server, session)
    await server.stop()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def api(tmp_path_factory):
    async for client in serve_demo(tmp_path_factory, "http"):
        yield client


def order(server: OmsServer, cl_ord_id: str, symbol="AAPL", side="1", qty=100, price="190.00",
          account="ACC1", session="CLIENT1->OMS") -> list[dict]:
    """A new order straight into the sequencer, as the FIX gateway would submit it."""
    events = server.gateway.submit({"type": "order_received", "ts": time.time_ns(), "session": session,
                                    "cl_ord_id": cl_ord_id, "account": account, "symbol": symbol, "side": side,
                                    "ord_type": "2", "tif": "1", "price": price, "qty": qty})
    server.gateway.end_batch()
    return events


# -- auth, generically over every described route ----------------------------------------------------


async def test_every_protected_route_answers_401_without_or_with_unknown_token_and_403_for_wrong_role(api):
    status, spec, _ = await api.call("GET", "/api/openapi.json", user=None)
    assert status == 200
    checked = 0
    for path, ops in spec["paths"].items():
        concrete = path.replace("{symbol}", "AAPL").replace("{id}", "abc123")
        for method, op in ops.items():
            roles = op.get("x-roles")
            if not roles:
                continue
            status, body, headers = await api.call(method.upper(), concrete, user=None)
            assert status == 401, (method, path, body)
            assert "bearer" in body["error"].lower() and headers["WWW-Authenticate"].startswith("Bearer")
            status, body, _ = await api.call(method.upper(), concrete, token="not-a-token")
            assert status == 401, (method, path)
            status, body, _ = await api.call(method.upper(), concrete, headers={"Authorization": "Basic eDp5"},
                                             user=None)
            assert status == 401, (method, path)
            for role, user in ROLE_USER.items():
                if role not in roles:
                    status, body, _ = await api.call(method.upper(), concrete, user=user)
                    assert status == 403, (method, path, role, body)
                    assert role in body["error"]
                    checked += 1
    assert checked >= 20


async def test_me(api):
    _, body, _ = await api.call("GET", "/api/me", user="viewer1")
    assert body["user"] == "viewer1" and body["role"] == "viewer" and "VOD.L" in body["instruments"]
    _, body, _ = await api.call("GET", "/api/me", user="risk2")
    assert (body["user"], body["role"]) == ("risk2", "risk") and "ACC1" in body["accounts"]


# -- OpenAPI ------------------------------------------------------------------------------------------


async def test_openapi_describes_exactly_the_served_routes(api):
    _, spec, _ = await api.call("GET", "/api/openapi.json", user=None)
    described = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    served = set()
    for route in api.server.app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if path is None:
            assert info.get("prefix") == "/static", info   # the console's static files
            continue
        if route.method == "HEAD":
            continue
        served.add((route.method, path))
    assert served - described == set(), "served but not described"
    assert described - served == set(), "described but not served"
    assert {("PUT", "/api/risk/limits"), ("POST", "/api/risk/kill-switch"), ("GET", "/api/audit/export"),
            ("POST", "/api/risk/approvals/{id}/approve"), ("GET", "/api/books/{symbol}")} <= described
    assert spec["openapi"].startswith("3.")
    put = spec["paths"]["/api/risk/limits"]["put"]
    assert put["x-roles"] == ["risk"] and "requestBody" in put and "400" in put["responses"]


# -- ops ----------------------------------------------------------------------------------------------


async def test_health_and_metrics(api):
    order(api.server, "M1", price="150.00", qty=1, side="1", account="ACC1")   # rejected by the collar
    status, body, _ = await api.call("GET", "/health", user=None)
    assert status == 200 and body["ready"] and "audit_projection_lag" in body
    status, text, headers = await api.call("GET", "/metrics", user=None)
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    text = text.decode()
    for name in ("oms_orders_total", "oms_order_rejects_total{rule=\"price_collar_pct\"}", "oms_fix_sessions",
                 "oms_audit_projection_lag", "oms_order_round_trip_seconds_bucket", "oms_http_request_seconds"):
        assert name in text, name


async def test_static_console_is_served(api):
    status, html, headers = await api.call("GET", "/", user=None)
    assert status == 200 and b"<title>" in html and "Content-Security-Policy" in headers
    for asset in ("/static/app.js", "/static/app.css"):
        assert (await api.call("GET", asset, user=None))[0] == 200
    assert (await api.call("GET", "/static/../app.py", user=None))[0] in (403, 404)
    status, body, _ = await api.call("GET", "/no/such/path", user=None)
    assert status == 404 and body["error"]


# -- limits -------------------------------------------------------------------------------------------


async def test_get_limits(api):
    status, body, _ = await api.call("GET", "/api/risk/limits?account=ACC2&symbol=TSLA")
    assert status == 200
    eff = {r["limit"]: r for r in body["effective"]["limits"]}
    assert eff["max_order_notional"]["value"] == "1000000" and eff["max_order_notional"]["source"] == "account:ACC2"
    assert eff["price_collar_pct"] == {"limit": "price_collar_pct", "kind": "decimal", "value": "5",
                                       "source": "instrument:TSLA"}
    assert body["layers"]["default"]["max_order_qty"] == "100000"
    assert "ACC1" in body["accounts"] and "CLIENT1->OMS" in body["sessions"]
    assert (await api.call("GET", "/api/risk/limits"))[0] == 200
    for bad in ("?account=NOPE", "?symbol=NOPE", "?bogus=1", "?account=ACC1&account=ACC2"):
        status, body, _ = await api.call("GET", "/api/risk/limits" + bad)
        assert status == 400 and body["error"] and body["status"] == 400, bad


async def test_lower_a_limit_applies_at_once_and_is_audited_with_the_user(api):
    body = {"scope": "account:ACC1", "limit": "max_order_qty", "value": 500, "reason": "client request 1"}
    status, out, _ = await api.call("PUT", "/api/risk/limits", body=body)
    assert status == 200, out
    ev = out["event"]
    assert ev["type"] == "limit_changed" and ev["user"] == "risk1" and ev["approver"] is None
    assert ev["new_value"] == "500" and ev["reason"] == "client request 1" and ev["seq"] > out["command_seq"] - 1
    assert api.server.engine.risk.value("max_order_qty", "ACC1") == 500
    rej = order(api.server, "Q1", qty=600)
    assert rej[-1]["type"] == "order_rejected" and rej[-1]["rule"] == "max_order_qty"
    # temporary change with expiry, and removing the override again (lowering back to 100000: no four eyes)
    status, out, _ = await api.call("PUT", "/api/risk/limits", body={
        "scope": "account:ACC1", "limit": "max_order_qty", "value": "400", "reason": "intraday", "expires_in_s": 600})
    assert status == 200 and out["event"]["expires_ts"] > out["event"]["ts"]
    # removing the override takes ACC1 from 400 back to the default 100000: a raise, four eyes
    status, out, _ = await api.call("PUT", "/api/risk/limits", body={
        "scope": "account:ACC1", "limit": "max_order_qty", "value": None, "reason": "back to default"})
    assert status == 202 and "raised from 400 to 100000" in out["approval"]["why"]
    status, out, _ = await api.call("POST", f"/api/risk/approvals/{out['approval']['id']}/approve", user="risk2")
    assert status == 200 and out["event"]["new_value"] is None and out["event"]["approver"] == "risk2"
    assert api.server.engine.risk.value("max_order_qty", "ACC1") == 100000


@pytest.mark.parametrize("body, needle", [
    ({"scope": "account:NOPE", "limit": "max_order_qty", "value": 1, "reason": "r"}, "unknown account"),
    ({"scope": "galaxy", "limit": "max_order_qty", "value": 1, "reason": "r"}, "scope must be"),
    ({"scope": "default", "limit": "max_fun", "value": 1, "reason": "r"}, "unknown limit"),
    ({"scope": "default", "limit": "max_order_qty", "value": -5, "reason": "r"}, ">= 0"),
    ({"scope": "default", "limit": "max_order_qty", "value": "lots", "reason": "r"}, "whole number"),
    ({"scope": "account:HOUSE", "limit": "max_order_notional", "value": 1.5, "reason": "r"}, None),
    ({"scope": "default", "limit": "max_order_qty", "value": None, "reason": "r"}, "cannot be removed"),
    ({"scope": "instrument:AAPL", "limit": "credit_limit", "value": "1", "reason": "r"}, "cannot be set"),
    ({"scope": "default", "limit": "max_order_qty", "value": 1, "reason": "  "}, "reason must not be empty"),
    ({"scope": "default", "limit": "max_order_qty", "value": 1}, "missing required"),
    ({"scope": "default", "limit": "max_order_qty", "reason": "r"}, "value is required"),
    ({"scope": "default", "limit": "max_order_qty", "value": 1, "reason": "r", "x": 1}, "unknown field"),
    ({"scope": "default", "limit": "max_order_qty", "value": 1, "reason": "r", "expires_in_s": 0}, "expires_in_s"),
    ({"scope": "default", "limit": "max_order_qty", "value": 1, "reason": "x" * 501}, "too long"),
    ({"scope": "instrument:AAPL", "limit": "halted", "value": "maybe", "reason": "r"}, "true or false"),
    (["not", "an", "object"], "JSON object"),
])
async def test_put_limit_rejects_bad_input_with_400(api, body, needle):
    before = api.server.journal.last_seq
    status, out, _ = await api.call("PUT", "/api/risk/limits", body=body)
    if needle is None:          # 1.5 for a money limit is fine as exact decimal text (HOUSE is unused)
        assert status in (200, 202)
        return
    assert status == 400, out
    assert needle in out["error"], out
    assert api.server.journal.last_seq == before       # nothing journaled


async def test_put_limit_body_not_json_and_too_large(api):
    status, out, _ = await api.call("PUT", "/api/risk/limits", raw=b"{nope", headers={"Content-Type": "application/json"})
    assert status == 400 and "not valid JSON" in out["error"]
    status, out, _ = await api.call("PUT", "/api/risk/limits", raw=b"scope=x", headers={"Content-Type": "text/plain"})
    assert status == 400 and "Content-Type" in out["error"]
    big = json.dumps({"scope": "default", "limit": "max_order_qty", "value": 1, "reason": "x" * 70_000}).encode()
    status, out, _ = await api.call("PUT", "/api/risk/limits", raw=big, headers={"Content-Type": "application/json"})
    assert status == 413 and out["status"] == 413


# -- four eyes ----------------------------------------------------------------------------------------


async def test_four_eyes_raise_needs_a_second_risk_user(api):
    risk = api.server.engine.risk
    body = {"scope": "account:ACC2", "limit": "credit_limit", "value": "30000000", "reason": "year end"}
    status, out, headers = await api.call("PUT", "/api/risk/limits", body=body)
    assert status == 202, out
    approval = out["approval"]
    assert approval["status"] == "pending" and approval["requested_by"] == "risk1"
    assert "four-eyes factor" in approval["why"] and headers["Location"].endswith(approval["id"])
    assert str(risk.value("credit_limit", "ACC2")) == "10000000"          # not applied yet
    # the same request again (another reason, or by the other risk user) while one waits: refused
    status, out, _ = await api.call("PUT", "/api/risk/limits", body=dict(body, reason="again"), user="risk2")
    assert status == 409 and approval["id"] in out["error"], out
    _, listing, _ = await api.call("GET", "/api/risk/approvals", user="risk2")
    assert approval["id"] in [a["id"] for a in listing["approvals"]]
    # the requester cannot approve their own request
    status, out, _ = await api.call("POST", f"/api/risk/approvals/{approval['id']}/approve", user="risk1")
    assert status == 403 and "own request" in out["error"]
    status, out, _ = await api.call("POST", f"/api/risk/approvals/{approval['id']}/approve", user="risk2")
    assert status == 200, out
    ev = out["event"]
    assert ev["type"] == "limit_changed" and ev["user"] == "risk1" and ev["approver"] == "risk2"
    assert ev["request_id"] == approval["id"] and ev["new_value"] == "30000000"
    assert str(risk.value("credit_limit", "ACC2")) == "30000000"
    status, out, _ = await api.call("POST", f"/api/risk/approvals/{approval['id']}/approve", user="risk2")
    assert status == 409 and "approved" in out["error"]
    # a small raise (within the factor) applies at once
    status, out, _ = await api.call("PUT", "/api/risk/limits", body=dict(body, value="35000000"))
    assert status == 200 and out["event"]["approver"] is None
    # switching a check off (0) is a raise beyond any factor
    status, out, _ = await api.call("PUT", "/api/risk/limits", body=dict(body, value="0"))
    assert status == 202 and "switched off" in out["approval"]["why"]


async def test_four_eyes_reject_and_explicit_requests(api):
    body = {"scope": "instrument:MSFT", "limit": "max_order_qty", "value": 900000, "reason": "block trade"}
    status, out, _ = await api.call("PUT", "/api/risk/limits", body=body, user="risk2")
    assert status == 202
    aid = out["approval"]["id"]
    status, out, _ = await api.call("POST", f"/api/risk/approvals/{aid}/reject", user="risk1",
                                    body={"reason": "too big"})
    assert status == 200 and out["approval"]["status"] == "rejected" and out["approval"]["decided_by"] == "risk1"
    assert api.server.engine.risk.value("max_order_qty", "ACC1", "MSFT") == 100000
    status, out, _ = await api.call("POST", f"/api/risk/approvals/{aid}/approve", user="risk1")
    assert status == 409
    _, listing, _ = await api.call("GET", "/api/risk/approvals?status=rejected")
    assert aid in [a["id"] for a in listing["approvals"]]
    # explicit request for a second pair of eyes, kill switch kind
    status, out, _ = await api.call("POST", "/api/risk/approvals", body={
        "kind": "kill_switch", "scope": "instrument:SPY", "action": "engage", "reason": "check with desk"})
    assert status == 202 and out["approval"]["kind"] == "kill_switch"
    status, out, _ = await api.call("POST", f"/api/risk/approvals/{out['approval']['id']}/reject")
    assert status == 200     # the requester may withdraw
    for bad, needle in (({"kind": "party"}, "kind must be"), ({"scope": "default"}, "missing required"),
                        ({"kind": "limit_change", "scope": "default", "limit": "max_order_qty", "reason": "r"},
                         "value is required"),
                        ({"kind": "kill_switch", "scope": "moon", "action": "engage", "reason": "r"}, "scope")):
        status, out, _ = await api.call("POST", "/api/risk/approvals", body=bad)
        assert status == 400 and needle in out["error"], (bad, out)
    assert (await api.call("POST", "/api/risk/approvals/zzz999/approve", user="risk2"))[0] == 404
    assert (await api.call("POST", "/api/risk/approvals/bad-id!/approve", user="risk2"))[0] == 400
    assert (await api.call("GET", "/api/risk/approvals?status=maybe"))[0] == 400


# -- kill switch and halts ----------------------------------------------------------------------------


async def test_kill_switch_engage_release_and_global_four_eyes(api):
    server = api.server
    order(server, "K1", account="ACC2", session="CLIENT2->OMS", price="189.00", qty=10)
    status, out, _ = await api.call("POST", "/api/risk/kill-switch",
                                    body={"scope": "account:ACC2", "action": "engage", "reason": "runaway algo"})
    assert status == 200 and out["event"]["type"] == "kill_switch_engaged" and out["event"]["user"] == "risk1"
    assert len(out["canceled_orders"]) >= 1
    assert order(server, "K2", account="ACC2", session="CLIENT2->OMS")[-1]["rule"] == "kill_switch"
    status, out, _ = await api.call("POST", "/api/risk/kill-switch",
                                    body={"scope": "account:ACC2", "action": "release", "reason": "fixed"})
    assert status == 200 and out["event"]["type"] == "kill_switch_released"
    status, out, _ = await api.call("POST", "/api/risk/kill-switch",
                                    body={"scope": "account:ACC2", "action": "release", "reason": "again"})
    assert status == 409 and "not engaged" in out["error"]
    # global: engage at once ("all" is an alias), release needs a second user
    status, out, _ = await api.call("POST", "/api/risk/kill-switch",
                                    body={"scope": "all", "action": "engage", "reason": "market event"})
    assert status == 200 and out["event"]["scope"] == "global"
    status, out, _ = await api.call("POST", "/api/risk/kill-switch",
                                    body={"scope": "global", "action": "release", "reason": "all clear"})
    assert status == 202 and "global kill switch" in out["approval"]["why"]
    assert server.engine.risk.global_killed
    # every account shows the global switch in its exposure flags
    _, exposure, _ = await api.call("GET", "/api/exposure")
    assert exposure["exposure"] and all(x["kill_switch"] for x in exposure["exposure"])
    # pressing Release again while the first request waits: refused, not a second request
    status, again, _ = await api.call("POST", "/api/risk/kill-switch",
                                      body={"scope": "global", "action": "release", "reason": "all clear!"})
    assert status == 409 and out["approval"]["id"] in again["error"], again
    status, out, _ = await api.call("POST", f"/api/risk/approvals/{out['approval']['id']}/approve", user="risk2")
    assert status == 200 and out["event"]["type"] == "kill_switch_released"
    assert out["event"]["user"] == "risk1" and out["event"]["approver"] == "risk2"
    assert not server.engine.risk.global_killed
    for scope in ("session:CLIENT1->OMS", "instrument:TSLA"):
        for action in ("engage", "release"):
            status, out, _ = await api.call("POST", "/api/risk/kill-switch",
                                            body={"scope": scope, "action": action, "reason": "drill"})
            assert status == 200, out


@pytest.mark.parametrize("body, needle", [
    ({"scope": "account:NOPE", "action": "engage", "reason": "r"}, "unknown account"),
    ({"scope": "session:X->Y", "action": "engage", "reason": "r"}, "unknown session"),
    ({"scope": "planet:earth", "action": "engage", "reason": "r"}, "scope must be"),
    ({"scope": "global", "action": "explode", "reason": "r"}, "action must be one of"),
    ({"scope": "global", "action": "engage"}, "missing required"),
    ({"scope": "global", "action": "engage", "reason": 5}, "reason must be a string"),
])
async def test_kill_switch_bad_input(api, body, needle):
    status, out, _ = await api.call("POST", "/api/risk/kill-switch", body=body)
    assert status == 400 and needle in out["error"], out


async def test_halt_and_resume(api):
    server = api.server
    status, out, _ = await api.call("POST", "/api/risk/instruments/MSFT/halt", body={"reason": "news pending"})
    assert status == 200 and out["event"]["limit"] == "halted" and out["event"]["new_value"] == "true"
    assert order(server, "H1", symbol="MSFT", price="420.00")[-1]["rule"] == "trading_halt"
    _, book, _ = await api.call("GET", "/api/books/MSFT", user="viewer1")
    assert book["halted"] is True
    _, limits, _ = await api.call("GET", "/api/risk/limits")
    assert "MSFT" in limits["halted"]
    status, out, _ = await api.call("POST", "/api/risk/instruments/MSFT/resume", body={"reason": "news out"})
    assert status == 200 and out["event"]["new_value"] is None
    accepted = order(server, "H2", symbol="MSFT", price="420.00")[-1]
    assert accepted["type"] == "order_accepted", accepted
    status, out, _ = await api.call("POST", "/api/risk/instruments/MSFT/halt", body={})
    assert status == 400 and "reason" in out["error"]
    status, out, _ = await api.call("POST", "/api/risk/instruments/NOPE/halt", body={"reason": "r"})
    assert status == 404


# -- reads --------------------------------------------------------------------------------------------


async def test_positions_exposure_orders_books(api):
    server = api.server
    order(server, "P1", symbol="SPY", side="2", qty=50, price="561.00", account="ACC1")
    order(server, "P2", symbol="SPY", side="2", qty=20, price="562.00", account="ACC1")
    order(server, "P3", symbol="SPY", side="1", qty=30, price="561.00", account="ACC2", session="CLIENT2->OMS")
    status, out, _ = await api.call("GET", "/api/positions?account=ACC1", user="viewer1")
    assert status == 200
    spy = next(r for r in out["positions"] if r["symbol"] == "SPY")
    assert spy["position"] == -30 and spy["open_sell_qty"] == 40
    status, out, _ = await api.call("GET", "/api/exposure", user="viewer1")
    assert status == 200 and {r["account"] for r in out["exposure"]} >= {"ACC1", "ACC2"}
    status, out, _ = await api.call("GET", "/api/orders?account=ACC1", user="risk1")
    assert status == 200 and {"P1", "P2"} <= {o["cl_ord_id"] for o in out["orders"]}
    p1 = next(o for o in out["orders"] if o["cl_ord_id"] == "P1")
    assert p1["leaves_qty"] == 20 and p1["cum_qty"] == 30
    status, out, _ = await api.call("GET", "/api/books/SPY?levels=1", user="viewer1")
    assert status == 200 and out["asks"] == [{"price": "561.00", "qty": 20, "orders": 1}] and out["bids"] == []
    for path in ("/api/positions?account=NOPE", "/api/exposure?account=NOPE", "/api/orders?account=NOPE",
                 "/api/orders?acct=ACC1", "/api/books/SPY?levels=0", "/api/books/SPY?levels=abc",
                 "/api/books/SPY?levels=101"):
        status, out, _ = await api.call("GET", path, user="viewer1")
        assert status == 400 and out["error"], path
    assert (await api.call("GET", "/api/books/NOPE", user="viewer1"))[0] == 404


# -- compliance ---------------------------------------------------------------------------------------


async def test_audit_search_and_lifecycle(api):
    server = api.server
    order(server, "AUD-1", symbol="AAPL", side="1", qty=7, price="189.50", account="ACC1")
    order(server, "AUD-2", symbol="AAPL", side="1", qty=7, price="100.00", account="ACC1")   # collar reject
    status, out, _ = await api.call("GET", "/api/audit/search?account=ACC1&event=order_rejected&limit=1000",
                                    user="compliance1")
    assert status == 200, out
    assert "projection_lag" in out
    assert "AUD-2" in [r["cl_ord_id"] for r in out["rows"]]
    assert all(r["type"] == "order_rejected" for r in out["rows"])
    status, out, _ = await api.call("GET", "/api/audit/search?cl_ord_id=AUD-1&from=2020-01-01T00:00:00Z",
                                    user="compliance1")
    assert status == 200 and {r["type"] for r in out["rows"]} >= {"order_received", "order_accepted"}
    status, out, _ = await api.call("GET", "/api/audit/search?event=limit_changed", user="compliance1")
    assert any(r["user"] == "risk1" and r["approver"] == "risk2" for r in out["rows"])
    status, out, _ = await api.call("GET", "/api/audit/lifecycle?cl_ord_id=AUD-1", user="compliance1")
    assert status == 200 and [e["type"] for e in out["events"]][:2] == ["order_received", "order_accepted"]
    oid = out["events"][1]["order_id"]
    status, out, _ = await api.call("GET", f"/api/audit/lifecycle?order_id={oid}", user="compliance1")
    assert status == 200 and out["events"][-1]["order_id"] == oid
    assert (await api.call("GET", "/api/audit/lifecycle?order_id=99999999", user="compliance1"))[0] == 404
    for path, needle in (("/api/audit/search?event=party", "event must be one of"),
                         ("/api/audit/search?from=yesterday", "ISO 8601"),
                         ("/api/audit/search?from=2025-02-01&to=2025-01-01", "before"),
                         ("/api/audit/search?limit=0", "limit"),
                         ("/api/audit/search?order_id=abc", "whole number"),
                         ("/api/audit/search?account=ACC1';DROP TABLE audit_events;--", None),
                         ("/api/audit/lifecycle", "exactly one"),
                         ("/api/audit/lifecycle?order_id=1&cl_ord_id=x", "exactly one")):
        status, out, _ = await api.call("GET", path, user="compliance1")
        if needle is None:       # parameterized: just no match, and the table is still there
            assert status == 200 and out["rows"] == []
            continue
        assert status == 400 and needle in out["error"], (path, out)


async def test_audit_export_verify_and_limits(api, monkeypatch):
    order(api.server, "EXP-1", symbol="AAPL", qty=3, price="189.00")
    for fmt in ("csv", "parquet", "cat"):
        status, data, headers = await api.call("GET", f"/api/audit/export?format={fmt}", user="compliance1")
        assert status == 200, data
        assert "attachment" in headers["Content-Disposition"] and int(headers["X-Rows"]) > 0
        if fmt == "csv":
            rows = list(csv.DictReader(io.StringIO(data.decode())))
            assert "EXP-1" in {r.get("cl_ord_id") for r in rows}
        elif fmt == "parquet":
            assert pq.read_table(io.BytesIO(data)).num_rows > 10
        else:
            lines = [json.loads(line) for line in data.decode().splitlines() if line]
            assert lines
    monkeypatch.setattr(audit_api, "EXPORT_MAX_ROWS", 5)
    status, out, _ = await api.call("GET", "/api/audit/export?format=csv", user="compliance1")
    assert status == 413 and "more than the limit of 5" in out["error"]
    status, data, headers = await api.call("GET", f"/api/audit/export?format=csv&from={time.time_ns()}",
                                           user="compliance1")
    assert status == 200 and headers["X-Rows"] == "0"
    monkeypatch.undo()
    for path in ("/api/audit/export", "/api/audit/export?format=xls", "/api/audit/export?format=csv&to=soon"):
        status, out, _ = await api.call("GET", path, user="compliance1")
        assert status == 400, path
    status, out, _ = await api.call("GET", "/api/audit/verify", user="compliance1")
    assert status == 200 and out["ok"] is True and out["checked_journal"] > 10, out
    assert (await api.call("GET", "/api/audit/verify?x=1", user="compliance1"))[0] == 400
    status, rows, _ = await api.call("GET", "/api/audit/search?limit=1", user="compliance1")
    first = rows["rows"][0]
    status, out, _ = await api.call("GET", f"/api/audit/verify?anchor={first['seq']}:{first['hash']}", user="compliance1")
    assert status == 200 and out["ok"] is True and "1 anchor(s) matched" in out["reason"], out
    status, out, _ = await api.call("GET", f"/api/audit/verify?anchor={first['seq']}:{'0' * 64}", user="compliance1")
    assert status == 200 and out["ok"] is False and out["first_bad_seq"] == first["seq"], out
    assert (await api.call("GET", "/api/audit/verify?anchor=nonsense", user="compliance1"))[0] == 400
    status, out, _ = await api.call("GET", "/api/audit/limits?account=ACC2", user="compliance1")
    assert status == 200 and out["limits"], out
    for path in ("/api/audit/limits", "/api/audit/limits?account=NOPE", "/api/audit/limits?account=ACC1&at=never"):
        status, out, _ = await api.call("GET", path, user="compliance1")
        assert status == 400, path
