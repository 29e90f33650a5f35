"""The aiohttp application served on the HTTP port: operations endpoints for now.

Risk-desk and compliance routes are added by their packages (compliance/, audit/) as they grow.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .server import OmsServer

SERVER_KEY = web.AppKey("oms_server", object)


async def health(request: web.Request) -> web.Response:
    server: "OmsServer" = request.app[SERVER_KEY]
    lag = server.projection.lag()
    journal_ok = server.gateway.journal_failed is None
    body = {
        "status": "ok" if journal_ok else "degraded",
        "live": True,
        "ready": journal_ok,
        "journal_last_seq": server.journal.last_seq,
        "journal_error": server.gateway.journal_failed,
        "audit_projection_lag": lag,
        "fix_sessions": sorted(server.gateway.sessions),
    }
    return web.json_response(body, status=200 if journal_ok else 503)


def build_app(server: "OmsServer") -> web.Application:
    app = web.Application(client_max_size=server.config.max_body_kb * 1024)
    app[SERVER_KEY] = server
    app.router.add_get("/health", health)
    return app
