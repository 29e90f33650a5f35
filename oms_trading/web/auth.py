"""Bearer-token authentication and role checks.

Tokens are configured as SHA-256 hashes; a request's token is hashed and looked up, so the
server never holds a clear token (the demo config's clear tokens are printed, not used here).
Missing or unknown token: 401. Known token with the wrong role: 403.
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Awaitable, Callable, Iterable

from aiohttp import web

from ..config import HttpUser
from .errors import json_error

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: str


class TokenAuth:
    def __init__(self, users: Iterable[HttpUser]) -> None:
        self._by_hash = {u.token_sha256: Principal(u.name, u.role) for u in users}

    def authenticate(self, header: str | None) -> Principal | None:
        if not header or not header.startswith("Bearer "):
            return None
        token = header[7:].strip()
        if not token or len(token) > 512:
            return None
        digest = hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()
        for known, principal in self._by_hash.items():
            # constant-time compare per entry: the number of users is small
            if hmac.compare_digest(known, digest):
                return principal
        return None


AUTH_KEY = web.AppKey("oms_auth", TokenAuth)
# the authenticated Principal of a request (RequestKey from aiohttp 3.12; a str key before)
USER_KEY = web.RequestKey("oms_user", Principal) if hasattr(web, "RequestKey") else "oms_user"


def requires(*roles: str) -> Callable[[Handler], Handler]:
    """Decorator: the route needs a valid token whose role is one of ``roles``."""
    allowed = frozenset(roles)

    def wrap(handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            auth: TokenAuth = request.app[AUTH_KEY]
            principal = auth.authenticate(request.headers.get("Authorization"))
            if principal is None:
                return json_error(401, "missing or unknown bearer token (send 'Authorization: Bearer <token>')",
                                  headers={"WWW-Authenticate": 'Bearer realm="oms"'})
            if principal.role not in allowed:
                return json_error(403, f"role {principal.role!r} may not do this (needs one of: "
                                       f"{', '.join(sorted(allowed))})")
            request[USER_KEY] = principal
            return await handler(request)

        guarded.__name__ = handler.__name__
        guarded.__doc__ = handler.__doc__
        guarded.roles = allowed  # type: ignore[attr-defined]  # read by the OpenAPI builder
        return guarded

    return wrap
