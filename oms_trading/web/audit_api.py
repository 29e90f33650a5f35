"""Compliance API (read-only): audit search, order lifecycle, exports, chain verification and
limits in force at a time.

The projection's process owns the DuckDB file (audit/projector.py); each request sends its
query function there from a worker thread, so the engine's loop is never blocked. The process
catches up with the journal before it runs the query; whatever lag is left (catch-up failed or
raced new events) is reported as ``projection_lag``.

The queries themselves live in ``oms_trading.audit.queries`` (parameterized SQL only) and are
imported lazily, so the server starts even where that module is missing.
"""
from __future__ import annotations

import asyncio
import os
import tempfile
from typing import TYPE_CHECKING, Callable

from aiohttp import web

from ..audit import schema as ev
from ..audit.projector import ProjectorError
from .errors import BadRequest
from .routes import Param, Route
from .validate import MAX_NAME, choice, integer, json_response, query, text, timestamp

if TYPE_CHECKING:
    from ..server import OmsServer

EXPORT_MAX_ROWS = 2_000_000      # an export over this many rows answers 413 (narrow it with from/to)
SEARCH_MAX = 1000
EVENT_TYPES = sorted({v for k, v in vars(ev).items() if k.isupper() and isinstance(v, str)
                      and k not in ("DECIMAL_VIEW",)} | {"order_status"})
EXPORTS = {"csv": ("text/csv; charset=utf-8", "csv"),
           "parquet": ("application/vnd.apache.parquet", "parquet"),
           "cat": ("application/x-ndjson", "jsonl")}


def _server(request: web.Request) -> "OmsServer":
    from .app import SERVER_KEY
    return request.app[SERVER_KEY]


def _queries():
    try:
        from ..audit import queries
    except ImportError as exc:
        raise BadRequest(f"audit queries are not available on this server ({exc})", status=503) from None
    return queries


async def run_query(server: "OmsServer", fn: Callable, *args, **kwargs):
    """``fn(cursor, ...)`` where the projection's DuckDB connection is (its process catches up
    with the journal first), from a worker thread; returns (result, lag)."""
    projection = server.projection

    def work():
        try:
            return projection.run(fn, *args, **kwargs)
        except ValueError as exc:     # queries.QueryError and friends: the argument is unusable
            raise BadRequest(str(exc)) from None
        except ProjectorError as exc:
            raise BadRequest(f"audit trail unavailable: {exc}", status=503) from None

    result = await asyncio.get_running_loop().run_in_executor(None, work)
    return result, projection.lag()


def _order_id(value, name="order_id") -> int | None:
    return integer(value, name, lo=1, hi=(1 << 63) - 1)


def _range(q: dict) -> tuple[int | None, int | None]:
    ts_from = timestamp(q.get("from"), "from")
    ts_to = timestamp(q.get("to"), "to")
    if ts_from is not None and ts_to is not None and ts_to < ts_from:
        raise BadRequest("to must not be before from")
    return ts_from, ts_to


def _events(value: str | None) -> str | None:
    if not value:
        return None
    try:
        from ..audit.queries import EVENT_ALIASES
    except ImportError:
        EVENT_ALIASES = {}
    for kind in value.split(","):
        choice(kind.strip(), "event", [*EVENT_TYPES, *sorted(EVENT_ALIASES)])
    return ",".join(k.strip() for k in value.split(","))


async def search(request: web.Request) -> web.Response:
    """Audit events matching every given filter, in sequence order."""
    server = _server(request)
    q = query(request, ("account", "symbol", "event", "from", "to", "cl_ord_id", "order_id", "limit", "offset"))
    ts_from, ts_to = _range(q)
    kwargs = {
        "account": text(q.get("account") or None, "account", max_len=MAX_NAME, required=False),
        "symbol": text(q.get("symbol") or None, "symbol", max_len=MAX_NAME, required=False),
        "event": _events(q.get("event")),
        "ts_from": ts_from, "ts_to": ts_to,
        "cl_ord_id": text(q.get("cl_ord_id") or None, "cl_ord_id", max_len=MAX_NAME, required=False),
        "order_id": _order_id(q.get("order_id")),
        "limit": integer(q.get("limit"), "limit", lo=1, hi=SEARCH_MAX) or 100,
        "offset": integer(q.get("offset"), "offset", lo=0, hi=10**9) or 0,
    }
    queries = _queries()
    rows, lag = await run_query(server, queries.search, **kwargs)
    return json_response({"rows": rows, "count": len(rows), "limit": kwargs["limit"], "offset": kwargs["offset"],
                          "more": len(rows) == kwargs["limit"], "projection_lag": lag})


async def lifecycle(request: web.Request) -> web.Response:
    """Every event of one order (by order_id, or by a ClOrdID it had), in order."""
    server = _server(request)
    q = query(request, ("order_id", "cl_ord_id", "session"))
    order_id = _order_id(q.get("order_id"))
    cl_ord_id = text(q.get("cl_ord_id") or None, "cl_ord_id", max_len=MAX_NAME, required=False)
    session = text(q.get("session") or None, "session", max_len=2 * MAX_NAME + 2, required=False)
    if (order_id is None) == (cl_ord_id is None):
        raise BadRequest("give exactly one of order_id or cl_ord_id")
    try:
        from ..audit import queries
        fn, kwargs = queries.lifecycle, {"order_id": order_id, "cl_ord_id": cl_ord_id, "session": session}
    except ImportError:     # fall back on the projection's own lookup
        from ..audit.projection import order_lifecycle
        fn, kwargs = order_lifecycle, {"order_id": order_id, "cl_ord_id": cl_ord_id}
    events, lag = await run_query(server, fn, **kwargs)
    if not events:
        what = f"order_id {order_id}" if order_id is not None else f"cl_ord_id {cl_ord_id!r}"
        return json_response({"error": f"no audit events for {what}", "status": 404, "projection_lag": lag},
                             status=404)
    return json_response({"order_id": order_id, "cl_ord_id": cl_ord_id, "events": events, "count": len(events),
                          "projection_lag": lag})


def _count(con, ts_from, ts_to) -> int:
    from ..audit.projection import TABLE
    sql = f"SELECT count(*) FROM {TABLE} WHERE (CAST(? AS BIGINT) IS NULL OR ts >= ?) " \
          f"AND (CAST(? AS BIGINT) IS NULL OR ts < ?)"
    return con.execute(sql, [ts_from, ts_from, ts_to, ts_to]).fetchone()[0]


async def export(request: web.Request) -> web.StreamResponse:
    """Download the audit trail (CSV, Parquet or CAT-style JSON lines) for a time range."""
    server = _server(request)
    q = query(request, ("format", "from", "to"))
    fmt = choice(q.get("format"), "format", tuple(EXPORTS))
    ts_from, ts_to = _range(q)
    queries = _queries()
    cap = EXPORT_MAX_ROWS
    rows, lag = await run_query(server, _count, ts_from, ts_to)
    if rows > cap:
        raise BadRequest(f"export would hold {rows} rows, more than the limit of {cap}; narrow it with from/to",
                         status=413)
    fd, path = tempfile.mkstemp(prefix="oms-export-", suffix="." + EXPORTS[fmt][1])
    os.close(fd)
    try:
        written, lag = await run_query(server, queries.export, fmt, path, ts_from=ts_from, ts_to=ts_to)
        ctype, ext = EXPORTS[fmt]
        name = f"oms-audit-{ts_from or 'start'}-{ts_to or 'now'}.{ext}"
        resp = web.StreamResponse(headers={
            "Content-Type": ctype, "Content-Disposition": f'attachment; filename="{name}"',
            "Content-Length": str(os.path.getsize(path)), "X-Rows": str(written), "X-Projection-Lag": str(lag)})
        await resp.prepare(request)
        loop = asyncio.get_running_loop()
        with open(path, "rb") as f:
            while chunk := await loop.run_in_executor(None, f.read, 1 << 20):
                await resp.write(chunk)
        await resp.write_eof()
        return resp
    finally:
        os.unlink(path)


async def verify(request: web.Request) -> web.Response:
    """Recompute the hash chain of the journal and check the DuckDB table against it."""
    server = _server(request)
    q = query(request, ("anchor",))
    anchors = {}
    if q.get("anchor"):
        from ..audit.verify import parse_anchor
        try:
            anchors = dict(parse_anchor(a) for a in q["anchor"].split(","))
        except ValueError as exc:
            raise BadRequest(f"anchor: {exc}") from None

    def work():
        try:
            return server.projection.verify(server.options.data_dir, anchors or None)
        except ProjectorError as exc:
            raise BadRequest(f"audit trail unavailable: {exc}", status=503) from None

    result = await asyncio.get_running_loop().run_in_executor(None, work)
    return json_response({"ok": result.ok, "checked_journal": result.checked_journal,
                          "checked_table": result.checked_table, "first_bad_seq": result.first_bad_seq,
                          "where": result.where or None, "reason": result.reason or None, "summary": str(result),
                          "projection_lag": server.projection.lag()})


async def limits_at(request: web.Request) -> web.Response:
    """The limits in force for an account at a time (now when omitted), from the audit trail."""
    server = _server(request)
    q = query(request, ("account", "at"))
    account = text(q.get("account") or None, "account", max_len=MAX_NAME)
    if account not in server.engine.account_index:
        raise BadRequest(f"unknown account {account!r}")
    at = timestamp(q.get("at"), "at")
    queries = _queries()
    rows, lag = await run_query(server, queries.limits_at, account=account, at=at,
                                baseline=queries.baseline_from_config(server.config))
    return json_response({"account": account, "at": at, "limits": rows, "projection_lag": lag})


COMPLIANCE = ("compliance",)
FROM = Param("from", description="UTC ns or ISO 8601 time (inclusive)")
TO = Param("to", description="UTC ns or ISO 8601 time (exclusive)")

ROUTES = [
    Route("GET", "/api/audit/search", search, "Search the audit trail", COMPLIANCE, (
        Param("account"), Param("symbol"), Param("event", description="event type(s), comma separated, e.g. order_rejected"), FROM, TO,
        Param("cl_ord_id"), Param("order_id", type="integer"),
        Param("limit", type="integer", description=f"1..{SEARCH_MAX}, default 100"),
        Param("offset", type="integer")), tags=("compliance",)),
    Route("GET", "/api/audit/lifecycle", lifecycle, "Every event of one order", COMPLIANCE, (
        Param("order_id", type="integer"), Param("cl_ord_id"), Param("session")), tags=("compliance",)),
    Route("GET", "/api/audit/export", export, "Export the audit trail as a download", COMPLIANCE, (
        Param("format", required=True, description="csv | parquet | cat"), FROM, TO),
        produces="application/octet-stream", tags=("compliance",)),
    Route("GET", "/api/audit/verify", verify, "Verify the audit hash chain", COMPLIANCE,
          (Param("anchor", description="SEQ:HASH[,SEQ:HASH...]: records the journal must still hold "
                                        "with those hashes (the EOD report prints the day's last)"),),
          tags=("compliance",)),
    Route("GET", "/api/audit/limits", limits_at, "Limits in force for an account at a time", COMPLIANCE, (
        Param("account", required=True), Param("at", description="UTC ns or ISO 8601; now when omitted")),
        tags=("compliance",)),
]
