"""One table per API module: each entry registers an aiohttp route *and* its OpenAPI entry,
so the description cannot drift from what is served (a test checks both ways)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from aiohttp import web

from .auth import requires

OPENAPI_KEY = web.AppKey("oms_openapi_routes", list)


@dataclass(frozen=True)
class Param:
    name: str
    where: str = "query"            # query | path
    type: str = "string"            # string | integer | boolean
    required: bool = False
    description: str = ""


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    summary: str
    roles: tuple[str, ...] = ()     # empty: no token needed
    params: tuple[Param, ...] = ()
    body: dict[str, Any] | None = None     # JSON schema of the request body
    produces: str = "application/json"
    tags: tuple[str, ...] = field(default=())


def register_routes(app: web.Application, routes: list[Route]) -> None:
    if OPENAPI_KEY not in app:
        app[OPENAPI_KEY] = []
    for route in routes:
        handler = requires(*route.roles)(route.handler) if route.roles else route.handler
        app.router.add_route(route.method, route.path, handler)
        app[OPENAPI_KEY].append(route)
