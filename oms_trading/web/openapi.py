"""/api/openapi.json, generated from the route tables (see routes.py)."""
from __future__ import annotations

from aiohttp import web

from .. import __version__
from .routes import OPENAPI_KEY, Route

ERROR_SCHEMA = {"type": "object", "properties": {"error": {"type": "string"}, "status": {"type": "integer"}},
                "required": ["error", "status"]}


def build_spec(routes: list[Route]) -> dict:
    paths: dict[str, dict] = {}
    for route in routes:
        op: dict = {"summary": route.summary, "operationId": route.handler.__name__,
                    "tags": list(route.tags) or ["ops"]}
        params = [{"name": p.name, "in": p.where, "required": p.required or p.where == "path",
                   "description": p.description, "schema": {"type": p.type}} for p in route.params]
        if params:
            op["parameters"] = params
        if route.body is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": route.body}}}
        responses = {"200": {"description": "OK", "content": {route.produces: {}}}}
        error = {"description": "error", "content": {"application/json": {"schema": ERROR_SCHEMA}}}
        if route.params or route.body is not None:
            responses["400"] = error
        if route.roles:
            op["security"] = [{"bearer": []}]
            op["x-roles"] = list(route.roles)
            responses["401"] = error
            responses["403"] = error
        op["responses"] = responses
        paths.setdefault(route.path, {})[route.method.lower()] = op
    return {
        "openapi": "3.0.3",
        "info": {"title": "oms_trading API", "version": __version__,
                 "description": "Risk desk, compliance and operations API of oms_trading."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": paths,
    }


async def openapi_json(request: web.Request) -> web.Response:
    """The OpenAPI 3 description of this API."""
    return web.json_response(build_spec(request.app[OPENAPI_KEY]))


def register(app: web.Application) -> None:
    from .routes import register_routes
    register_routes(app, [Route("GET", "/api/openapi.json", openapi_json, "OpenAPI description of this API")])
