"""The aiohttp application served on the HTTP port.

Routes: operations (/health, /metrics), the risk desk (/api/risk/...), compliance
(/api/audit/...), the OpenAPI description (/api/openapi.json) and the web console (/).
Handlers run on the engine's event-loop thread, so reads of engine state are consistent and
writes go through the same sequencer as FIX commands (gateway.submit + end_batch).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from .auth import AUTH_KEY, USER_KEY, TokenAuth
from .errors import error_middleware, json_error
from .routes import Route, register_routes

SERVER_KEY = web.AppKey("oms_server", object)

if TYPE_CHECKING:
    from ..server import OmsServer

STATIC_DIR = Path(__file__).parent / "static"


async def health(request: web.Request) -> web.Response:
    """Liveness and readiness: journal writable, audit projection lag, FIX sessions."""
    server: "OmsServer" = request.app[SERVER_KEY]
    journal_ok = server.gateway.journal_ok()
    # the projection (DuckDB, audit queries) is not on the order path: a dead one makes the
    # server degraded, not unready (the supervisor starts a new one within a second or so)
    projection_ok = server.projection.running()
    body = {
        "status": "ok" if journal_ok and projection_ok else "degraded",
        "live": True,
        "ready": journal_ok,
        "journal_last_seq": server.journal.last_seq,
        "journal_error": server.gateway.journal_failed,
        "audit_projection_lag": server.projection.lag(),
        "audit_projection_running": projection_ok,
        "audit_projection_restarts": server.projection.restarts,
        "fix_sessions": sorted(server.gateway.sessions),
    }
    check = server.engine.replay_check
    if check is not None and check.differences:
        # the start-up replay did not give the events journaled then (config or code changed);
        # /health needs no token: where and which keys, the values are in the server log
        body["replay_differences"] = check.differences
        body["replay_first_difference"] = check.first.summary()
    if server.engine.clock_steps_back:
        # journal times out of seq order: the host's clock synchronisation needs a look
        body["clock_steps_back"] = server.engine.clock_steps_back
        body["clock_largest_step_back_ms"] = round(server.engine.clock_largest_step_back_ns / 1e6, 3)
    return web.json_response(body, status=200 if journal_ok else 503)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition."""
    server: "OmsServer" = request.app[SERVER_KEY]
    return web.Response(body=server.metrics.render(server),
                        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


async def me(request: web.Request) -> web.Response:
    """Who the token belongs to (the console's login check), with the reference data names."""
    principal = request[USER_KEY]
    server: "OmsServer" = request.app[SERVER_KEY]
    return web.json_response({"user": principal.name, "role": principal.role,
                              "accounts": [a.name for a in server.config.accounts],
                              "instruments": [i.symbol for i in server.config.instruments]})


async def index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


@web.middleware
async def security_headers(request: web.Request, handler):
    started = time.perf_counter()
    try:
        response = await handler(request)
    finally:
        server = request.app[SERVER_KEY]
        if hasattr(server, "metrics"):
            route = request.match_info.route.resource
            server.metrics.http_latency.labels(route.canonical if route is not None else "unmatched").observe(
                time.perf_counter() - started)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    if not request.path.startswith("/api/") and request.path not in ("/health", "/metrics"):
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Content-Security-Policy",
                                    "default-src 'self'; style-src 'self'; script-src 'self'; img-src 'self' data:")
    return response


STATIC_KEY = web.AppKey("oms_static", object)


@web.middleware
async def static_not_found(request: web.Request, handler):
    """aiohttp's static route finds out that a file is missing (or is a folder: "/static/x/")
    only while sending it, past the middlewares, and answers an empty application/octet-stream
    404: checked here first, so a missing file gets the JSON 404 of every other path. This
    only refuses; what is served, and the traversal checks, stay aiohttp's."""
    if request.match_info.route.resource is request.app[STATIC_KEY]:
        filename = request.match_info.get("filename", "")
        if not filename or not (STATIC_DIR / filename).is_file():
            return json_error(404, "Not Found")
    return await handler(request)


async def not_found(request: web.Request) -> web.Response:
    return json_error(404, f"no such path: {request.path}")


def build_app(server: "OmsServer") -> web.Application:
    from . import audit_api, risk_api
    app = web.Application(client_max_size=server.config.max_body_kb * 1024,
                          middlewares=[security_headers, error_middleware, static_not_found])
    app[SERVER_KEY] = server
    app[AUTH_KEY] = TokenAuth(server.config.users)
    app[risk_api.APPROVALS_KEY] = {}
    register_routes(app, [
        Route("GET", "/health", health, "Liveness and readiness, with the audit projection's lag"),
        Route("GET", "/metrics", metrics, "Prometheus metrics", produces="text/plain"),
        Route("GET", "/api/me", me, "The user and role of the bearer token", ("risk", "compliance", "viewer")),
    ])
    register_routes(app, risk_api.ROUTES)
    register_routes(app, audit_api.ROUTES)
    from . import openapi
    openapi.register(app)
    register_routes(app, [Route("GET", "/", index, "The web console (risk desk, compliance)", produces="text/html",
                                tags=("console",))])
    app[STATIC_KEY] = app.router.add_static("/static/", STATIC_DIR, show_index=False, follow_symlinks=False)
    return app
