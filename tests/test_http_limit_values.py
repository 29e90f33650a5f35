"""PUT /api/risk/limits over a real in-process server: flags take JSON booleans only and every
numeric limit takes one grammar (ASCII digits, decimal text), journaled in plain notation."""
from __future__ import annotations

import json

import pytest
import pytest_asyncio

from tests.test_http_api import serve_demo

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def api(tmp_path_factory):
    async for client in serve_demo(tmp_path_factory, "http-limit-values"):
        yield client


def _body(limit: str, value, scope="account:ACC1") -> dict:
    return {"scope": scope, "limit": limit, "value": value, "reason": "grammar"}


@pytest.mark.parametrize("body", [
    _body("reduce_only", 1),
    _body("reduce_only", 0),
    _body("reduce_only", "true"),
    _body("max_order_notional", "1_000"),
    _body("max_order_notional", "\u0661\u0660\u0660"),
    _body("max_order_notional", "1e3"),
    _body("max_order_notional", "-5"),
    _body("max_order_notional", "NaN"),
    _body("price_collar_pct", "1e1"),
    _body("max_order_qty", "\u0663"),
    _body("max_order_qty", "1_000"),
    _body("max_order_qty", "1" * 5000),
])
async def test_a_value_outside_the_grammar_is_a_400_naming_the_limit(api, body):
    before = api.server.journal.last_seq
    status, out, _ = await api.call("PUT", "/api/risk/limits", body=body)
    assert status == 400 and body["limit"] in out["error"], (status, out)
    assert api.server.journal.last_seq == before          # nothing journaled
    assert not api.server.engine.risk.layers.get("account:ACC1", {}).get("reduce_only")


async def test_a_json_number_with_an_exponent_is_a_400(api):
    raw = b'{"scope": "account:ACC1", "limit": "max_order_notional", "value": 1e3, "reason": "r"}'
    status, out, _ = await api.call("PUT", "/api/risk/limits", raw=raw, headers={"Content-Type": "application/json"})
    assert status == 400 and "max_order_notional" in out["error"], out


async def test_flags_take_json_booleans(api):
    status, out, _ = await api.call("PUT", "/api/risk/limits", body=_body("reduce_only", True))
    assert status == 200 and out["event"]["new_value"] == "true", out
    assert api.server.engine.risk.layers["account:ACC1"]["reduce_only"]
    status, out, _ = await api.call("PUT", "/api/risk/limits", body=_body("reduce_only", False))
    assert status == 200 and out["event"]["new_value"] is None, out      # false: the flag is absent
    assert "reduce_only" not in api.server.engine.risk.layers["account:ACC1"]


async def test_decimal_text_is_journaled_and_shown_as_given(api):
    status, out, _ = await api.call("PUT", "/api/risk/limits", body=_body("max_order_notional", " 4000000.50 "))
    assert status == 200 and out["event"]["new_value"] == "4000000.50", out
    status, out, _ = await api.call("GET", "/api/risk/limits?account=ACC1")
    row = next(r for r in out["effective"]["limits"] if r["limit"] == "max_order_notional")
    assert (row["value"], row["source"]) == ("4000000.50", "account:ACC1")
    assert out["layers"]["account:ACC1"]["max_order_notional"] == "4000000.50"
    # switching the check off with many decimals: "0", never "0E-7"
    status, out, _ = await api.call("PUT", "/api/risk/limits", body=_body("max_order_notional", "0.0000000"))
    assert status == 202 and out["approval"]["request"]["new_value"] == "0", out
    command = json.dumps(out)
    assert "E-" not in command and "E+" not in command
