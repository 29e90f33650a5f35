"""The aiohttp application served on the HTTP port.

Routes: operations (/health, /metrics), the risk desk (/api/risk/...), compliance
(/api/audit/...), the OpenAPI description (/api/openapi.json) and the web console (/).
Handlers run on the engine's event-loop thread, so reads of engine state are consistent and
writes go through the same sequencer as FIX commands (gateway.submit + end_batch).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from .auth import AUTH_KEY, TokenAuth
from .errors import error_middleware, json_error
from .routes import Route, register_routes

SERVER_KEY = web.AppKey("oms_server", object)

if TYPE_CHECKING:
    from ..server import OmsServer

STATIC_DIR = Path(__file__).parent / "static"


async def health(request: web.Request) -> web.Response:
    """Liveness and readiness: journal writable, audit projection lag, FIX sessions."""
    server: "OmsServer" = request.app[SERVER_KEY]
    journal_ok = server.gateway.journal_failed is None
    body = {
        "status": "ok" if journal_ok else "degraded",
        "live": True,
        "ready": journal_ok,
        "journal_last_seq": server.journal.last_seq,
        "journal_error": server.gateway.journal_failed,
        "audit_projection_lag": server.projection.lag(),
        "fix_sessions": sorted(server.gateway.sessions),
    }
    return web.json_response(body, status=200 if journal_ok else 503)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition."""
    server: "OmsServer" = request.app[SERVER_KEY]
    return web.Response(body=server.metrics.render(server),
                        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


async def index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC_DIR / "index.html")


async def not_found(request: web.Request) -> web.Response:
    return json_error(404, f"no such path: {request.path}")


def build_app(server: "OmsServer") -> web.Application:
    app = web.Application(client_max_size=server.config.max_body_kb * 1024, middlewares=[error_middleware])
    app[SERVER_KEY] = server
    app[AUTH_KEY] = TokenAuth(server.config.users)
    register_routes(app, [
        Route("GET", "/health", health, "Liveness and readiness, with the audit projection's lag"),
        Route("GET", "/metrics", metrics, "Prometheus metrics", produces="text/plain"),
    ])
    from . import openapi
    openapi.register(app)
    app.router.add_get("/", index)
    app.router.add_static("/static/", STATIC_DIR, show_index=False, follow_symlinks=False)
    return app
