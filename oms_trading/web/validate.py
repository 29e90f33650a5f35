"""Input validation for the JSON API: every failure raises BadRequest (a 400 with a message
that names the field and says what is wrong)."""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Iterable

from aiohttp import web

from .errors import BadRequest

MAX_TEXT = 500           # reason, free text
MAX_NAME = 64            # account, symbol, ClOrdID, scope parts
MAX_TS = 4_102_444_800 * 10**9   # 2100-01-01, in ns
# the seconds' fraction of an ISO 8601 time: datetime keeps 6 digits and drops the rest
_FRACTION = re.compile(r"(:\d{2}[.,])(\d+)")


MAX_INT_DIGITS = 40     # far above any limit value; int() refuses past 4,300 digits, naming sys internals


def _json_int(digits: str) -> int:
    """A JSON integer, at most MAX_INT_DIGITS digits (json.loads' ValueError becomes the 400's text)."""
    if len(digits) > MAX_INT_DIGITS + 1:
        raise ValueError(f"a number of {len(digits.lstrip('-'))} digits (at most {MAX_INT_DIGITS})")
    return int(digits)


async def json_body(request: web.Request, allowed: Iterable[str], required: Iterable[str] = ()) -> dict:
    """The request's JSON object body, with unknown and missing keys reported by name."""
    if request.content_type != "application/json":
        raise BadRequest(f"send a JSON body with Content-Type: application/json (got {request.content_type!r})")
    raw = await request.read()          # bounded by the app's client_max_size (413 beyond)
    try:
        body = json.loads(raw or b"null", parse_float=Decimal, parse_int=_json_int)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("request body is nested too deeply") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    allowed = set(allowed)
    unknown = sorted(k for k in body if k not in allowed)
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")
    missing = [k for k in required if body.get(k) is None]
    if missing:
        raise BadRequest(f"missing required field(s): {', '.join(missing)}")
    return body


def text(value: Any, name: str, *, max_len: int = MAX_TEXT, required: bool = True) -> str | None:
    if value is None:
        if required:
            raise BadRequest(f"{name} is required")
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string, got {type(value).__name__}")
    value = value.strip()
    if required and not value:
        raise BadRequest(f"{name} must not be empty")
    if len(value) > max_len:
        raise BadRequest(f"{name} is too long ({len(value)} characters, at most {max_len})")
    if any(ord(c) < 32 for c in value):
        raise BadRequest(f"{name} must not contain control characters")
    return value


def integer(value: Any, name: str, *, lo: int, hi: int, required: bool = False) -> int | None:
    """An int from JSON (int) or a query string (digits)."""
    if value is None or value == "":
        if required:
            raise BadRequest(f"{name} is required")
        return None
    if isinstance(value, str):
        v = value.strip()
        # ASCII only: str.isdigit() is also true for "²", which int() refuses
        if not v.isascii() or not (v.isdigit() or (v.startswith("-") and v[1:].isdigit())) or len(v) > 20:
            raise BadRequest(f"{name} must be a whole number, got {value!r}")
        value = int(v)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{name} must be a whole number, got {value!r}")
    if not lo <= value <= hi:
        raise BadRequest(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def timestamp(value: str | None, name: str) -> int | None:
    """UTC nanoseconds from a query parameter: integer ns since the epoch, or ISO 8601
    ("2025-01-31", "2025-01-31T14:00:00Z", "2025-01-31T14:00:00+01:00"; no zone means UTC)."""
    if value is None or value.strip() == "":
        return None
    v = value.strip()
    if v.isascii() and v.isdigit():
        ns = int(v) if len(v) <= 20 else MAX_TS + 1
    else:
        # the audit trail's times are ns (its own ``time`` fields carry 9 digits): digits past
        # the microsecond are added here, or a from/to/at copied from an event lands before it
        extra_ns = 0
        m = _FRACTION.search(v)
        if m is not None and len(m.group(2)) > 6:
            extra_ns = int(m.group(2)[6:9].ljust(3, "0"))
            v = v[:m.start(2)] + m.group(2)[:6] + v[m.end(2):]
        try:
            dt = datetime.fromisoformat(v.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise BadRequest(f"{name} must be UTC nanoseconds or an ISO 8601 time like "
                             f"2025-01-31T14:00:00Z, got {value!r}") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        delta = dt - datetime(1970, 1, 1, tzinfo=timezone.utc)
        ns = (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1000 + extra_ns
    if not 0 <= ns <= MAX_TS:
        raise BadRequest(f"{name} is out of range (1970..2100), got {value!r}")
    return ns


def choice(value: Any, name: str, options: Iterable[str], *, required: bool = True) -> str | None:
    options = list(options)
    if value is None or value == "":
        if required:
            raise BadRequest(f"{name} is required (one of: {', '.join(options)})")
        return None
    if value not in options:
        raise BadRequest(f"{name} must be one of: {', '.join(options)}; got {value!r}")
    return value


def query(request: web.Request, allowed: Iterable[str]) -> dict[str, str]:
    """Query parameters, each at most once, none unknown."""
    allowed = set(allowed)
    out: dict[str, str] = {}
    for key, value in request.query.items():
        if key not in allowed:
            raise BadRequest(f"unknown query parameter {key!r} (allowed: {', '.join(sorted(allowed)) or 'none'})")
        if key in out:
            raise BadRequest(f"query parameter {key!r} given more than once")
        if len(value) > 200:
            raise BadRequest(f"query parameter {key!r} is too long")
        out[key] = value
    return out


def json_default(value: Any) -> Any:
    """For values DuckDB hands back that JSON has no type for."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def dumps(body: Any) -> str:
    return json.dumps(body, default=json_default)


def json_response(body: Any, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers, dumps=dumps)
