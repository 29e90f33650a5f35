"""Uniform JSON error bodies: {"error": "...", "status": N}."""
from __future__ import annotations

import logging

from aiohttp import web

log = logging.getLogger(__name__)


class BadRequest(Exception):
    """Raised by input validation; becomes a 400 with the message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def json_error(status: int, message: str, headers: dict | None = None) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler):
    """Every failure becomes JSON: validation 400s, aiohttp's own 4xx, and a logged 500."""
    try:
        return await handler(request)
    except BadRequest as exc:
        return json_error(exc.status, str(exc))
    except web.HTTPException as exc:
        if exc.status >= 400 and exc.content_type != "application/json":
            reason = exc.reason if exc.status != 413 else "request body too large"
            return json_error(exc.status, reason, headers={k: v for k, v in exc.headers.items()
                                                           if k.lower() in ("allow", "www-authenticate")})
        raise
    except ConnectionResetError:
        # the client went away mid-request (aiohttp's "Connection lost" while reading the body):
        # nobody to answer and nothing of ours broken, so no "unhandled error" traceback
        log.info("%s %s: the client closed the connection before the request was read", request.method,
                 request.path)
        return json_error(400, "connection closed by the client")
    except Exception:
        # a bug, not bad input: log it with the request, answer JSON, leak no traceback
        log.exception("unhandled error in %s %s", request.method, request.path)
        return json_error(500, "internal error (logged on the server)")
