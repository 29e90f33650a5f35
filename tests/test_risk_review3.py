"""Third review of the pre-trade risk controls and the risk desk's HTTP API: each finding
against the engine driven directly or a real in-process server (engine, journal, DuckDB
projection, aiohttp on a loopback port)."""
from __future__ import annotations

import pytest
import pytest_asyncio

from oms_trading.audit import schema as ev
from tests.test_http_api import Api as BaseApi, serve_demo
from tests.test_http_review import control

pytestmark = pytest.mark.asyncio(loop_scope="module")


class Api(BaseApi):
    """test_http_api's client, answering (status, body) without the headers."""

    async def call(self, method: str, path: str, user: str | None = "risk1", body=None):
        status, parsed, _headers = await super().call(method, path, user, body)
        return status, parsed


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def api(tmp_path_factory):
    async for client in serve_demo(tmp_path_factory, "risk-review3", Api):
        yield client


# -- a limit change whose flush the journal refused was answered 200 "applied" -------------------


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
