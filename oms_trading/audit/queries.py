"""Read side of the audit trail: the queries compliance runs on the DuckDB projection.

Every function takes an open DuckDB connection (or cursor) on the projection and returns plain
JSON-able Python values (dict/list/str/int/None; prices stay decimal *text*, timestamps int ns
with an ISO-8601 ``time`` beside them). All SQL is parameterized: user input is only ever bound
with ``?``, never formatted into the statement (column and table names come from constants).

Time ranges are ``[ts_from, ts_to)``: ``ts_from`` inclusive, ``ts_to`` exclusive, UTC ns.

``lifecycle``
    Every event of one order in seq order. By ``order_id`` (ART index) plus the command rows
    that started its requests (the engine writes a command record immediately before the first
    event it causes, so the ``order_received`` / ``cancel_requested`` / ``replace_requested``
    rows are the ones at ``seq - 1`` of the order's accepted/canceled/replaced/reject events).
    An order canceled by a mass cancel (the client's 35=q, a cancel on disconnect) or a kill
    switch also shows that command (session, ClOrdID, reason; user for a kill switch): the
    nearest command record before its ``order_canceled``.
    By ``cl_ord_id`` (optionally within a ``session``): any ClOrdID of the order's replace chain
    finds it (the order keeps its order_id across replaces), and so do command and reject rows
    that never got an order_id (an order rejected on receipt, a cancel of an unknown order).

``search``
    Filtered event list (account, symbol, event types as a comma list, time range, ids) with
    paging; rows carry the risk columns (rule, limit_value, actual_value) so breaches show why.
    A cancel or replace request usually names no account nor symbol (FIX F/G need not repeat
    them): an account or symbol filter also matches it through its answer at ``seq + 1``; and
    the risk desk's limit and kill-switch rows whose ``scope`` names the account or symbol.

``export``
    CSV, Parquet or CAT-style JSON lines of a time range to a path or binary file object.

``limits_at``
    Point-in-time limits of an account: a caller-supplied baseline (config defaults + account
    and instrument overrides; the journal does not carry the config) folded with every
    ``limit_changed`` / ``limit_expired`` up to the moment, plus kill switches in force.

``eod_report``
    End-of-day blotter per account, fills, positions and exceptions, as CSV or HTML.

CAT-style export (``fmt="cat"``)
--------------------------------
One JSON object per line, reportable order events only, field names from the CAT Reporting
Technical Specifications for Industry Members where one applies. Firm identifiers (CAT reporter
IMID, submitter ID, FDID registration) are added by the firm's CAT submission layer; we give
``firmDesignatedID`` = our account. Mapping:

======================  =====  ==========================================================
audit event             type   notes
======================  =====  ==========================================================
order_accepted          MENO   new order accepted (orderKeyDate = acceptance time)
order_replaced          MEOM   the Order Key does not change: orderID stays our order_id
                               (FIX OrderID 37 is kept across a replace) and orderKeyDate
                               stays the acceptance time, on this and every later event of
                               the order; priorOrderID/priorOrderKeyDate are left out (the
                               spec: blank when the orderID remains the same)
order_canceled          MEOC   cancelQty = quantity that was still open; initiator
                               from the command that caused it (the nearest command
                               record before the cancel): C for the client's own cancel
                               request or OrderMassCancelRequest (35=q: a ClOrdID from a
                               session), F for the firm's (kill switch, self-trade
                               prevention, cancel on disconnect, risk desk)
order_expired           MEOC   IOC/FOK remainder or DAY order at end of day, initiator F
                               (CAT does not require a cancel for a TIF expiry; it is
                               reported so leavesQty reconciles; drop if not wanted)
order_(partially_)      MEOT   one per tradeID (both sides of an internal cross are in
filled                         this OMS): buyDetails / sellDetails with each side's
                               orderKeyDate, orderID, side, firmDesignatedID, leavesQty
======================  =====  ==========================================================

Field values: ``eventTimestamp`` / ``orderKeyDate`` are CAT timestamp text in US Eastern time
at nanosecond precision, ``YYYYMMDD HHMMSS.CCCNNNNNN``; ``side`` B (FIX 1), SL (2), SS (5),
SX (6, short exempt); ``orderType`` MKT (FIX 40=1) / LMT (40=2); ``price`` decimal text
(absent for MKT); ``quantity`` int; ``timeInForce`` a CAT name/value pair as a JSON object:
DAY -> ``{"DAY": YYYYMMDD}`` (the trade date), GTC -> ``{"GTC": YYYYMMDD}`` (the entry date),
IOC -> ``{"IOC": true}``, FOK -> ``{"IOC": true}`` with ``handlingInstructions`` "FOK";
``tradeID`` our trade id as text; ``deptType`` "A" (agency), ``manualFlag`` false,
``electronicTimestamp`` omitted (orders are electronic). Extra keys not in CAT: ``seq``
(the audit record), ``clOrdID``.
"""
from __future__ import annotations

import csv
import html
import io
import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, BinaryIO, Iterable

import orjson

from . import schema as ev
from .projection import COLUMNS_SQL, TABLE, column_sql

NS = 1_000_000_000
NS_PER_DAY = 86_400 * NS
MAX_SEARCH_LIMIT = 100_000
_COLS_SQL = COLUMNS_SQL   # every column, hashes as hex text
_REJECT_TYPES = (ev.ORDER_REJECTED, ev.CANCEL_REJECTED, ev.REPLACE_REJECTED, ev.LIMIT_CHANGE_REJECTED)
# event-type aliases accepted by ``search(event=...)``
EVENT_ALIASES = {
    "rejects": _REJECT_TYPES,
    "fills": (ev.ORDER_PARTIALLY_FILLED, ev.ORDER_FILLED),
    "limits": (ev.LIMIT_CHANGE_REQUESTED, ev.LIMIT_CHANGED, ev.LIMIT_CHANGE_REJECTED, ev.LIMIT_EXPIRED,
               ev.LIMITS_LOADED),
    "kill_switch": (ev.KILL_SWITCH_REQUESTED, ev.KILL_SWITCH_ENGAGED, ev.KILL_SWITCH_RELEASED),
}
# events an order's requests answer with, right after the command record (seq - 1)
_ANSWER_TYPES = (ev.ORDER_ACCEPTED, ev.ORDER_CANCELED, ev.ORDER_REPLACED, ev.CANCEL_REJECTED,
                 ev.REPLACE_REJECTED)
_ORDER_COMMANDS = (ev.ORDER_RECEIVED, ev.CANCEL_REQUESTED, ev.REPLACE_REQUESTED)
# commands that cancel orders without naming them: part of the lifecycle of each one they cancel
_MASS_COMMANDS = (ev.MASS_CANCEL_REQUESTED, ev.KILL_SWITCH_REQUESTED)
_COMMANDS = tuple(sorted(ev.COMMAND_TYPES))
# requests on an existing order, whose command row may lack its account and symbol (a status
# request would belong here too, but it is answered without being journaled)
_REQUEST_COMMANDS = (ev.CANCEL_REQUESTED, ev.REPLACE_REQUESTED)
_loads = orjson.loads


class QueryError(ValueError):
    """A query argument that cannot be used (bad time, bad format...); the message says why."""


# ---------------------------------------------------------------------------------------------
# helpers


def parse_ts(value: Any) -> int | None:
    """UTC ns from an int, a digit string (ns), or ISO-8601 text ("2026-11-25T14:00:00Z",
    "2026-11-25T14:00:00.123456789+00:00", "2026-11-25" = midnight UTC). None stays None."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise QueryError(f"not a time: {value!r}")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if re.fullmatch(r"-?\d+", text) and len(text) > 8:
        return int(text)
    m = re.fullmatch(r"(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
                     r"\s*(Z|[+-]\d{2}:?\d{2})?", text)
    if not m:
        raise QueryError(f"not a time: {value!r} (use ISO-8601 UTC like 2026-11-25T14:00:00Z or ns since the epoch)")
    day, hh, mi, ss, frac, tz = m.groups()
    try:
        base = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=timezone.utc)
    except ValueError:
        raise QueryError(f"not a date: {day!r}") from None
    secs = int(hh or 0) * 3600 + int(mi or 0) * 60 + int(ss or 0)
    if int(hh or 0) > 23 or int(mi or 0) > 59 or int(ss or 0) > 60:
        raise QueryError(f"not a time of day: {value!r}")
    offset = 0
    if tz and tz != "Z":
        sign = -1 if tz[0] == "-" else 1
        digits = tz[1:].replace(":", "")
        offset = sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    ns = (int(base.timestamp()) + secs - offset) * NS
    if frac:
        ns += int(frac.ljust(9, "0"))
    return ns


def iso_ns(ts: int | None) -> str | None:
    """ISO-8601 UTC text with all nine digits of the ns: 2026-11-25T14:00:00.123456789Z."""
    if ts is None:
        return None
    s, ns = divmod(int(ts), NS)
    return datetime.fromtimestamp(s, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{ns:09d}Z"


def _rows(cur) -> list[dict]:
    names = [d[0] for d in cur.description]
    out = []
    for r in cur.fetchall():
        d = dict(zip(names, r))
        det = d.get("details")
        if isinstance(det, str):
            try:
                d["details"] = _loads(det)
            except orjson.JSONDecodeError:  # pragma: no cover - the projection writes valid JSON
                pass
        if "ts" in d:
            d["time"] = iso_ns(d["ts"])
        out.append(d)
    return out


def _detail(row: dict, key: str) -> Any:
    det = row.get("details")
    if isinstance(det, dict):
        return det.get(key)
    return None


def _check_range(ts_from, ts_to) -> tuple[int | None, int | None]:
    a, b = parse_ts(ts_from), parse_ts(ts_to)
    if a is not None and b is not None and b < a:
        raise QueryError(f"time range ends ({iso_ns(b)}) before it starts ({iso_ns(a)})")
    return a, b


# ---------------------------------------------------------------------------------------------
# lifecycle


def _order_rows(con, order_ids: Iterable[int]) -> list[dict]:
    rows: dict[int, dict] = {}
    for oid in order_ids:
        cur = con.execute(f"SELECT {_COLS_SQL} FROM {TABLE} WHERE order_id = ?", [oid])
        # a command's order_id is the OrderID (37) its client wrote, maybe another session's
        # order: the order's commands are the ones its answers follow (seq - 1), below
        own = [r for r in _rows(cur) if r["type"] not in ev.COMMAND_TYPES]
        for r in own:
            rows[r["seq"]] = r
        want = sorted(r["seq"] - 1 for r in own if r["type"] in _ANSWER_TYPES)
        if want:
            # the command record of each request is the row just before its answer; a range
            # filter on seq (zone maps) keeps this a narrow scan
            ph = ", ".join("?" * len(want))
            cur = con.execute(
                f"SELECT {_COLS_SQL} FROM {TABLE} WHERE seq BETWEEN ? AND ? AND seq IN ({ph}) "
                f"AND type IN (?, ?, ?)", [want[0], want[-1], *want, *_ORDER_COMMANDS])
            for r in _rows(cur):
                rows[r["seq"]] = r
        for r in own:
            cause = _command_before(con, r["seq"]) if r["type"] == ev.ORDER_CANCELED else None
            # an ordinary cancel's cause is its own cancel_requested (above); a self-trade
            # prevention cancel's is another order's command, not this order's story
            if cause is not None and cause["type"] in _MASS_COMMANDS:
                rows[cause["seq"]] = cause
    return [rows[s] for s in sorted(rows)]


def _command_before(con, seq: int) -> dict | None:
    """The nearest command record before ``seq``: the one whose processing wrote that record
    (a command's events follow it in consecutive seqs). Searched in a window of seqs that
    widens until it holds one, so each try stays a narrow scan (zone maps) although a mass
    cancel's last cancel is as many records after its command as it canceled orders."""
    span = 64
    while True:
        lo = max(seq - span, 0)
        cur = con.execute(
            f"SELECT {_COLS_SQL} FROM {TABLE} WHERE seq >= ? AND seq < ? "
            f"AND type IN ({', '.join('?' * len(_COMMANDS))}) ORDER BY seq DESC LIMIT 1",
            [lo, seq, *_COMMANDS])
        found = _rows(cur)
        if found or lo == 0:
            return found[0] if found else None
        span *= 16


def lifecycle(con, *, order_id: int | None = None, cl_ord_id: str | None = None,
              session: str | None = None) -> list[dict]:
    """Every event of an order in seq order (see the module docstring). Give ``order_id`` or
    ``cl_ord_id`` (any ClOrdID of the order's chain; ``session`` narrows it to one FIX session,
    since a ClOrdID is unique only per session). Returns [] when nothing matches; QueryError
    when the ClOrdID names more than one order."""
    if order_id is not None:
        if isinstance(order_id, bool) or not isinstance(order_id, int):
            raise QueryError(f"order_id must be an integer, got {order_id!r}")
        rows = _order_rows(con, [order_id])
        if session is not None:
            rows = [r for r in rows if r.get("session") in (session, None)]
        return rows
    if not cl_ord_id:
        raise QueryError("order_id or cl_ord_id is required")
    sql = f"SELECT {_COLS_SQL} FROM {TABLE} WHERE cl_ord_id = ?"
    params: list[Any] = [cl_ord_id]
    if session is not None:
        sql += " AND session = ?"
        params.append(session)
    hits = _rows(con.execute(sql, params))
    order_ids = sorted({r["order_id"] for r in hits if r["order_id"] is not None and r["type"] not in ev.COMMAND_TYPES})
    loose = [r for r in hits if r["order_id"] is None or r["type"] in ev.COMMAND_TYPES]
    if len(order_ids) > 1:
        # one ClOrdID, several orders (other sessions, or reused on another day): not one lifecycle
        found = sorted({(r["order_id"], r["session"]) for r in hits if r["order_id"] in order_ids})
        raise QueryError(f"ClOrdID {cl_ord_id!r} names {len(order_ids)} orders ("
                         + ", ".join(f"order_id {o} on {s}" for o, s in found)
                         + "): give the session, or the order_id")
    if session is None:
        # rows without an order (a NewOrderSingle rejected on receipt, a request answered as
        # unknown) from a session none of the found orders belongs to are another session's
        # use of the ClOrdID, not events of this order: as ambiguous as two orders
        own = {r["session"] for r in hits if r["order_id"] in order_ids and r["type"] not in ev.COMMAND_TYPES}
        others = sorted({r["session"] for r in loose if r["session"] is not None} - own)
        if len(others) > (0 if order_ids else 1):
            found = sorted({(r["order_id"], r["session"]) for r in hits if r["order_id"] in order_ids})
            raise QueryError(f"ClOrdID {cl_ord_id!r} was used on {len(own) + len(others)} sessions ("
                             + ", ".join([*(f"order_id {o} on {s}" for o, s in found),
                                          *(f"requests without an order on {s}" for s in others)])
                             + "): give the session, or the order_id")
    if not order_ids and loose:
        # a request that never reached an order (say a cancel rejected as unknown whose
        # OrigClOrdID named an order on the session): follow OrigClOrdID back to it
        seen = {cl_ord_id}
        todo = [r.get("orig_cl_ord_id") for r in loose if r.get("orig_cl_ord_id")]
        while todo and len(seen) < 100:
            orig = todo.pop()
            if orig in seen:
                continue
            seen.add(orig)
            q = f"SELECT order_id, orig_cl_ord_id FROM {TABLE} WHERE cl_ord_id = ?"
            p: list[Any] = [orig]
            sess = session or loose[0].get("session")
            if sess is not None:
                q += " AND session = ?"
                p.append(sess)
            for oid, o2 in con.execute(q, p).fetchall():
                if oid is not None:
                    order_ids.append(oid)
                elif o2:
                    todo.append(o2)
        order_ids = sorted(set(order_ids))
    rows = {r["seq"]: r for r in loose}
    for r in _order_rows(con, order_ids):
        rows[r["seq"]] = r
    return [rows[s] for s in sorted(rows)]


# ---------------------------------------------------------------------------------------------
# search


def _event_types(event) -> list[str] | None:
    if event is None or event == "":
        return None
    items = event if isinstance(event, (list, tuple)) else str(event).split(",")
    out: list[str] = []
    for item in items:
        item = str(item).strip()
        if not item:
            continue
        out.extend(EVENT_ALIASES.get(item, (item,)))
    return out or None


def _range_clauses(a: int | None, b: int | None) -> tuple[list[str], list]:
    """SQL conditions and parameters for ``a <= ts < b`` (either end open when None)."""
    where, params = [], []
    if a is not None:
        where.append("ts >= ?")
        params.append(a)
    if b is not None:
        where.append("ts < ?")
        params.append(b)
    return where, params


def _own_or_answer(column: str, value: Any) -> tuple[str, list]:
    """SQL condition and parameters for rows whose ``column`` is ``value``, plus the cancel and
    replace requests answered by a row that has it: a 35=F/G normally repeats neither Account
    nor Symbol, so the command row has NULL there; its answer (the record right after it)
    names the order's. ``column`` is one of our constant column names, never user input."""
    answers = ", ".join("?" * len(_ANSWER_TYPES))
    requests = ", ".join("?" * len(_REQUEST_COMMANDS))
    sql = (f"({column} = ? OR (type IN ({requests}) AND seq IN "
           f"(SELECT seq - 1 FROM {TABLE} WHERE {column} = ? AND type IN ({answers}))))")
    return sql, [value, *_REQUEST_COMMANDS, value, *_ANSWER_TYPES]


def _scoped_to(column: str, value: str) -> tuple[str, list]:
    """SQL condition and parameters for the risk desk's rows (limit changes and their rejects,
    expiries, kill switches) whose ``scope`` names account / symbol ``value``: they have no
    account nor symbol column, so the column filter alone left out the limit that was lowered
    on the account, or the instrument's halt, beside the rejects it caused."""
    if column == "account":     # account:X, account:X/instrument:S
        return "(scope = ? OR starts_with(scope, ?))", [f"account:{value}", f"account:{value}/"]
    return "(scope = ? OR suffix(scope, ?))", [f"instrument:{value}", f"/instrument:{value}"]


def search(con, *, account: str | None = None, symbol: str | None = None, event: str | None = None,
           ts_from: int | None = None, ts_to: int | None = None, cl_ord_id: str | None = None,
           order_id: int | None = None, limit: int = 1000, offset: int = 0) -> list[dict]:
    """Events matching every given filter, in seq order, ``limit`` rows from ``offset``.

    ``event`` is a type or a comma list of types (aliases: rejects, fills, limits, kill_switch);
    ``account`` / ``symbol`` also match the cancel and replace requests of the account's /
    symbol's orders (see ``_own_or_answer``) and the risk desk's rows scoped to it
    (``_scoped_to``); ``cl_ord_id`` matches ClOrdID or OrigClOrdID.
    Rows have every column (``details`` parsed)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_SEARCH_LIMIT:
        raise QueryError(f"limit must be between 1 and {MAX_SEARCH_LIMIT}, got {limit!r}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise QueryError(f"offset must be a whole number >= 0, got {offset!r}")
    a, b = _check_range(ts_from, ts_to)
    where, params = [], []
    for column, value in (("account", account), ("symbol", symbol)):
        if value is not None:
            clause, values = _own_or_answer(column, value)
            scoped, scope_values = _scoped_to(column, value)
            where.append(f"({clause} OR {scoped})")
            params += values + scope_values
    types = _event_types(event)
    if types:
        where.append(f"type IN ({', '.join('?' * len(types))})")
        params.extend(types)
    clauses, values = _range_clauses(a, b)
    where += clauses
    params += values
    if cl_ord_id is not None:
        where.append("(cl_ord_id = ? OR orig_cl_ord_id = ?)")
        params += [cl_ord_id, cl_ord_id]
    if order_id is not None:
        if isinstance(order_id, bool) or not isinstance(order_id, int):
            raise QueryError(f"order_id must be an integer, got {order_id!r}")
        where.append("order_id = ?")
        params.append(order_id)
    sql = f"SELECT {_COLS_SQL} FROM {TABLE}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY seq LIMIT ? OFFSET ?"
    return _rows(con.execute(sql, [*params, limit, offset]))


# ---------------------------------------------------------------------------------------------
# export

EXPORT_FORMATS = ("csv", "parquet", "cat")


def _range_sql(a, b) -> tuple[str, list]:
    where, params = _range_clauses(a, b)
    return (" WHERE " + " AND ".join(where)) if where else "", params


def export(con, fmt: str, out: str | Path | BinaryIO, *, ts_from: int | None = None,
           ts_to: int | None = None) -> int:
    """Write the events of ``[ts_from, ts_to)`` as ``fmt`` (csv | parquet | cat) to ``out`` (a
    path or a binary file object). Returns the number of rows (CAT: JSON lines) written."""
    if fmt not in EXPORT_FORMATS:
        raise QueryError(f"format must be one of {', '.join(EXPORT_FORMATS)}, not {fmt!r}")
    a, b = _check_range(ts_from, ts_to)
    if fmt == "cat":
        return _export_cat(con, out, a, b)
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq
    where, params = _range_sql(a, b)
    rel = con.sql(f"SELECT {_COLS_SQL} FROM {TABLE}{where} ORDER BY seq", params=params)
    reader = rel.to_arrow_reader(100_000)
    sink = str(out) if isinstance(out, (str, Path)) else out
    n = 0
    if fmt == "csv":
        with pa_csv.CSVWriter(sink, reader.schema) as w:
            for batch in reader:
                w.write_batch(_csv_safe(batch))
                n += batch.num_rows
    else:
        with pq.ParquetWriter(sink, reader.schema, compression="zstd") as w:
            for batch in reader:
                w.write_batch(batch)
                n += batch.num_rows
    return n


def _csv_safe(batch):
    """``batch`` with text a spreadsheet would run as a formula (a ClOrdID, Account or Text
    from a client starting with = + - @ TAB or CR) prefixed with ' as ``_csv_cell`` does for
    the EOD report: the CSV export is opened in a spreadsheet just the same. Parquet keeps
    the values as they are (no spreadsheet evaluates it)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    cols = []
    for col in batch.columns:
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            risky = pc.and_(pc.match_substring_regex(col, r"^[=+\-@\t\r]"),
                            pc.invert(pc.match_substring_regex(col, _NUMBER.pattern.join("^$"))))
            col = pc.if_else(risky, pc.binary_join_element_wise("'", col, ""), col)
        cols.append(col)
    return pa.RecordBatch.from_arrays(cols, schema=batch.schema)


_CAT_SIDE = {"1": "B", "2": "SL", "5": "SS", "6": "SX"}
_CAT_TYPE = {"1": "MKT", "2": "LMT"}


def _eastern():
    try:
        from zoneinfo import ZoneInfo
        return ZoneInfo("America/New_York")
    except Exception:  # pragma: no cover - no tz database: fall back to UTC, say so in the value
        return None


_ET = _eastern()


def cat_timestamp(ts: int) -> str:
    """CAT timestamp text, US Eastern time, ns: ``YYYYMMDD HHMMSS.CCCNNNNNN``."""
    s, ns = divmod(int(ts), NS)
    dt = datetime.fromtimestamp(s, _ET or timezone.utc)
    return dt.strftime("%Y%m%d %H%M%S") + f".{ns:09d}"


def _cat_date(ts: int) -> int:
    return int(datetime.fromtimestamp(int(ts) // NS, _ET or timezone.utc).strftime("%Y%m%d"))


def _cat_tif(tif: str | None, ts: int) -> tuple[dict | None, str | None]:
    if tif == "0":
        return {"DAY": _cat_date(ts)}, None
    if tif == "1":
        return {"GTC": _cat_date(ts)}, None
    if tif == "3":
        return {"IOC": True}, None
    if tif == "4":
        return {"IOC": True}, "FOK"
    return None, None


def _cat_order_fields(r: dict, key_ts: int, tif_ts: int | None = None) -> dict:
    tif, handling = _cat_tif(r.get("tif"), key_ts if tif_ts is None else tif_ts)
    d = {"orderKeyDate": cat_timestamp(key_ts), "orderID": str(r["order_id"]), "symbol": r.get("symbol"),
         "eventTimestamp": cat_timestamp(r["ts"]), "side": _CAT_SIDE.get(r.get("side"), r.get("side")),
         "orderType": _CAT_TYPE.get(r.get("ord_type"), r.get("ord_type"))}
    if r.get("ord_type") == "2" and r.get("price") is not None:
        d["price"] = r["price"]
    d["quantity"] = r.get("qty")
    if tif is not None:
        d["timeInForce"] = tif
    if handling:
        d["handlingInstructions"] = handling
    return d


def cat_events(rows: Iterable[dict], key_ts: dict[int, int] | None = None) -> Iterable[dict]:
    """CAT-style events of audit rows (dicts with the table's columns), in seq order.
    ``key_ts``: order_id -> orderKeyDate (ts) of orders accepted before the first row.
    Give the command records too (with ``session``, ``cl_ord_id``, ``reason``): a cancel's
    initiator is decided by the nearest one before it (``_by_client``)."""
    key_ts = dict(key_ts or {})       # order_id -> orderKeyDate (ts): its acceptance
    cause: dict | None = None         # the last command record: what the events after it answer
    fills: dict[int, dict] = {}       # trade_id -> first side seen
    for r in rows:
        kind = r["type"]
        if kind in ev.COMMAND_TYPES:
            cause = r
            continue
        oid = r.get("order_id")
        if oid is None:
            continue
        if kind == ev.ORDER_ACCEPTED:
            key_ts[oid] = r["ts"]
            d = {"type": "MENO", **_cat_order_fields(r, r["ts"]), "deptType": "A",
                 "firmDesignatedID": r.get("account"), "manualFlag": False}
        elif kind == ev.ORDER_REPLACED:
            # same orderID, so the same Order Key: the acceptance's orderKeyDate, no prior* fields
            d = {"type": "MEOM", **_cat_order_fields(r, key_ts.get(oid, r["ts"]), r["ts"]),
                 "leavesQty": r.get("leaves_qty"), "initiator": "C",
                 "firmDesignatedID": r.get("account"), "manualFlag": False}
        elif kind in (ev.ORDER_CANCELED, ev.ORDER_EXPIRED):
            qty, cum = r.get("qty") or 0, r.get("cum_qty") or 0
            d = {"type": "MEOC", "orderKeyDate": cat_timestamp(key_ts.get(oid, r["ts"])), "orderID": str(oid),
                 "symbol": r.get("symbol"), "eventTimestamp": cat_timestamp(r["ts"]),
                 "side": _CAT_SIDE.get(r.get("side"), r.get("side")), "cancelQty": max(0, qty - cum),
                 "leavesQty": 0,
                 "initiator": "C" if kind == ev.ORDER_CANCELED and _by_client(cause) else "F",
                 "manualFlag": False}
        elif kind in (ev.ORDER_FILLED, ev.ORDER_PARTIALLY_FILLED):
            tid = r.get("trade_id")
            if tid is None:
                continue
            first = fills.pop(tid, None)
            if first is None:
                fills[tid] = r
                continue
            buy, sell = (first, r) if first.get("side") == "1" else (r, first)
            d = {"type": "MEOT", "tradeID": str(tid), "symbol": r.get("symbol"),
                 "eventTimestamp": cat_timestamp(r["ts"]), "price": r.get("last_px"), "quantity": r.get("last_qty"),
                 "marketCenterID": "O", "sideDetailsInd": "BOTH",
                 "buyDetails": _cat_side(buy, key_ts), "sellDetails": _cat_side(sell, key_ts)}
        else:
            continue
        d["seq"] = r["seq"]
        if kind != ev.ORDER_FILLED and kind != ev.ORDER_PARTIALLY_FILLED:
            d["clOrdID"] = r.get("cl_ord_id")
        yield d


def _by_client(command: dict | None) -> bool:
    """Whether the cancels that follow ``command`` were asked for by the customer: its cancel
    request, or its own OrderMassCancelRequest (a ClOrdID from a session). The firm's mass
    cancels (cancel on disconnect) have no ClOrdID, or say why in ``reason``; any other command
    cancels by the firm's rules (kill switch, self-trade prevention after a new order)."""
    if command is None:
        return False
    if command["type"] == ev.CANCEL_REQUESTED:
        return True
    return (command["type"] == ev.MASS_CANCEL_REQUESTED and command.get("cl_ord_id") is not None
            and command.get("session") is not None and command.get("reason") is None)


def _cat_side(r: dict, key_ts: dict) -> dict:
    oid = r["order_id"]
    return {"orderKeyDate": cat_timestamp(key_ts.get(oid, r["ts"])), "orderID": str(oid),
            "side": _CAT_SIDE.get(r.get("side"), r.get("side")), "firmDesignatedID": r.get("account"),
            "leavesQty": r.get("leaves_qty")}


_CAT_REPORTED_TYPES = (ev.ORDER_ACCEPTED, ev.ORDER_REPLACED, ev.ORDER_CANCELED, ev.ORDER_EXPIRED,
                       ev.ORDER_FILLED, ev.ORDER_PARTIALLY_FILLED)
# every command too: the nearest one before a cancel says who initiated it (cat_events); with
# only some kinds, a client's earlier cancel would stand for a later firm cancel
_CAT_SOURCE_TYPES = (*_CAT_REPORTED_TYPES, *_COMMANDS)


def _types_where(where: str, types: tuple[str, ...]) -> str:
    cond = f"type IN ({', '.join('?' * len(types))})"
    return (where + " AND " + cond) if where else " WHERE " + cond


def _export_cat(con, out, a, b) -> int:
    where, params = _range_sql(a, b)
    # orderKeyDate of an order accepted before the range: its acceptance (a replace keeps the key)
    key_ts: dict[int, int] = {}
    if a is not None:
        key_ts = dict(con.execute(
            f"SELECT order_id, min(ts) FROM {TABLE} WHERE ts < ? AND type = ? "
            f"AND order_id IN (SELECT order_id FROM {TABLE}{_types_where(where, _CAT_REPORTED_TYPES)}) "
            f"GROUP BY order_id",
            [a, ev.ORDER_ACCEPTED, *params, *_CAT_REPORTED_TYPES]).fetchall())
    cols = ("seq", "ts", "type", "order_id", "cl_ord_id", "session", "reason", "account", "symbol", "side",
            "ord_type", "tif", "price", "qty", "cum_qty", "leaves_qty", "last_px", "last_qty", "trade_id")
    sel = ", ".join(f'"{c}"' for c in cols)
    cur = con.execute(f"SELECT {sel} FROM {TABLE}{_types_where(where, _CAT_SOURCE_TYPES)} ORDER BY seq",
                      [*params, *_CAT_SOURCE_TYPES])
    close = False
    if isinstance(out, (str, Path)):
        fh = open(out, "wb")
        close = True
    else:
        fh = out
    n = 0
    dumps = orjson.dumps
    try:
        def gen():
            while True:
                batch = cur.fetchmany(50_000)
                if not batch:
                    return
                for row in batch:
                    yield dict(zip(cols, row))
        buf = []
        for d in cat_events(gen(), key_ts):
            buf.append(dumps(d))
            n += 1
            if len(buf) >= 10_000:
                fh.write(b"\n".join(buf) + b"\n")
                buf = []
        if buf:
            fh.write(b"\n".join(buf) + b"\n")
    finally:
        if close:
            fh.close()
    return n


# ---------------------------------------------------------------------------------------------
# limits at a point in time


def baseline_from_config(config) -> dict[str, dict[str, str]]:
    """The configured limit layers as text: {"default": {...}, "account:ACC1": {...},
    "instrument:TSLA": {...}, "account:ACC1/instrument:TSLA": {"restricted": "true"}}; the
    ``baseline`` that ``limits_at`` wants (the journal does not carry the config)."""
    from ..compliance.limits import BUILTIN_DEFAULTS

    def text(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        return str(v)
    layers: dict[str, dict[str, str]] = {"default": {k: text(v) for k, v in BUILTIN_DEFAULTS.items()}}
    layers["default"].update({k: text(v) for k, v in (config.risk_defaults or {}).items()})
    for name, values in (config.risk_accounts or {}).items():
        layers.setdefault(f"account:{name}", {}).update({k: text(v) for k, v in values.items()})
    for sym, values in (config.risk_instruments or {}).items():
        layers.setdefault(f"instrument:{sym}", {}).update({k: text(v) for k, v in values.items()})
    for sym in config.restricted or ():
        layers.setdefault(f"instrument:{sym}", {})["restricted"] = "true"
    for name, syms in (config.restricted_by_account or {}).items():
        for sym in syms:
            layers.setdefault(f"account:{name}/instrument:{sym}", {})["restricted"] = "true"
    return layers


def _applies(scope: str, account: str) -> str | None:
    """How ``scope`` bears on ``account``: 'default', 'account', 'instrument', 'pair' or None."""
    if scope == "default":
        return "default"
    if scope == f"account:{account}":
        return "account"
    if scope.startswith(f"account:{account}/instrument:"):
        return "pair"
    if scope.startswith("instrument:") and "/" not in scope:
        return "instrument"
    return None


def limits_at(con, *, account: str, at: int | None = None, baseline: dict | None = None) -> list[dict]:
    """The limits in force for ``account`` at ``at`` (UTC ns; None = after the last event).

    The configured layers in force at ``at`` are those of the last ``limits_loaded`` record
    journaled by then (a start whose config file set other limits; config_limits.py), with
    ``set_by`` "config", the time it took effect, its reason and seq. Before any such record,
    ``baseline``: the configured layers, as ``baseline_from_config`` gives them (scope ->
    {limit: value text}; the file now, the best knowledge for a journal older than those
    records); a flat {limit: value} is taken as the account's own values. Without either
    only values set by journaled changes are known. The desk's changes (all of them up to
    ``at``, also those before the record) apply on top, as the engine replays them.

    One row per limit that bears on the account: the account's effective value of every
    account-wide limit (its own override, else the default), then instrument-wide overrides
    (an instrument's own check, standing in for the default there; where the account has its
    own value too, the stricter binds: ``RiskEngine.effective``), per-account-and-
    instrument flags, and kill switches engaged. Each row says the ``scope`` the value came
    from, ``source`` ("config", "change" or "expiry"), ``set_by``, ``approver``, ``set_at``
    (ns, None for config), ``reason`` and ``seq`` of the event, ``expires_ts`` if temporary.
    """
    if not account:
        raise QueryError("account is required")
    at = parse_ts(at)
    base = baseline or {}
    if base and not any(k == "default" or ":" in k for k in base):
        base = {f"account:{account}": base}
    configured = {"source": "config", "set_by": "config", "approver": None, "set_at": None, "reason": "config",
                  "seq": None, "expires_ts": None}
    sql = f"SELECT seq, ts, reason, new_value FROM {TABLE} WHERE type = ?"
    params: list[Any] = [ev.LIMITS_LOADED]
    if at is not None:
        sql += " AND ts <= ?"
        params.append(at)
    loaded = con.execute(sql + " ORDER BY seq DESC LIMIT 1", params).fetchall()
    if loaded:
        seq, ts, reason, text = loaded[0]
        try:
            base = _loads(text)
        except orjson.JSONDecodeError:
            raise QueryError(f"limits_loaded record seq {seq} does not hold configured layers") from None
        configured.update(set_at=ts, reason=reason, seq=seq)
    # scope -> name -> info
    layers: dict[str, dict[str, dict]] = {}
    for scope, values in base.items():
        for name, value in (values or {}).items():
            layers.setdefault(scope, {})[name] = {"value": None if value is None else str(value), **configured}
    kills: dict[str, dict] = {}
    types = (ev.LIMIT_CHANGED, ev.LIMIT_EXPIRED, ev.KILL_SWITCH_ENGAGED, ev.KILL_SWITCH_RELEASED)
    sql = (f'SELECT seq, ts, type, scope, "user", approver, reason, old_value, new_value, details FROM {TABLE} '
           f"WHERE type IN (?, ?, ?, ?)")
    params = list(types)
    if at is not None:
        sql += " AND ts <= ?"
        params.append(at)
    sql += " ORDER BY seq"
    for seq, ts, kind, scope, user, approver, reason, _old, new, details in con.execute(sql, params).fetchall():
        det = _loads(details) if details else {}
        if kind in (ev.KILL_SWITCH_ENGAGED, ev.KILL_SWITCH_RELEASED):
            if kind == ev.KILL_SWITCH_ENGAGED:
                kills[scope] = {"seq": seq, "ts": ts, "user": user, "approver": approver, "reason": reason}
            else:
                kills.pop(scope, None)
            continue
        name = det.get("limit")
        if not scope or not name:
            continue
        layer = layers.setdefault(scope, {})
        if new is None or new == "false":
            layer.pop(name, None)
            if new == "false":
                continue
        if new is None:
            continue
        layer[name] = {"value": new, "source": "change" if kind == ev.LIMIT_CHANGED else "expiry",
                       "set_by": user, "approver": approver, "set_at": ts, "reason": reason, "seq": seq,
                       "expires_ts": det.get("expires_ts") if kind == ev.LIMIT_CHANGED else None}
    try:
        from ..compliance.limits import INSTRUMENT_LIMITS, LIMIT_DEFS
        account_names = list(LIMIT_DEFS)
    except ImportError:  # pragma: no cover
        INSTRUMENT_LIMITS, account_names = frozenset(), []
    out: list[dict] = []

    def row(name, scope, info, applies_to):
        d = {"limit": name, "value": info["value"], "scope": scope, "applies_to": applies_to, **info}
        d["set_at_time"] = iso_ns(info.get("set_at"))
        return d
    acct_scope = f"account:{account}"
    names = list(dict.fromkeys([*account_names, *layers.get("default", {}), *layers.get(acct_scope, {})]))
    for name in names:
        for scope in (acct_scope, "default"):
            info = layers.get(scope, {}).get(name)
            if info is not None:
                out.append(row(name, scope, info, "all instruments"))
                break
    for scope in sorted(layers):
        kind = _applies(scope, account)
        if kind in ("instrument", "pair"):
            for name, info in sorted(layers[scope].items()):
                if kind == "instrument" and name not in INSTRUMENT_LIMITS and name not in ("halted", "restricted"):
                    continue
                out.append(row(name, scope, info, scope.split("/")[-1]))
    for scope, k in sorted(kills.items()):
        if scope == "global" or scope == acct_scope or scope.startswith("instrument:") or scope.startswith("session:"):
            out.append(row("kill_switch", scope, {"value": "engaged", "source": "change", "set_by": k["user"],
                                                   "approver": k["approver"], "set_at": k["ts"], "reason": k["reason"],
                                                   "seq": k["seq"], "expires_ts": None},
                           "all instruments" if scope in ("global", acct_scope) else scope))
    return out


# ---------------------------------------------------------------------------------------------
# end-of-day report

_OPEN_STATUSES = ("0", "1", "A", "E", "6")
_ENDED = {"2": "filled", "4": "canceled", "C": "expired", "8": "rejected", "0": "open", "1": "partly filled, open"}


def _day_bounds(con, date: str | None) -> tuple[str, int, int]:
    if date is None:
        mx = con.execute(f"SELECT max(ts) FROM {TABLE}").fetchall()[0][0]
        start = (mx // NS_PER_DAY) * NS_PER_DAY if mx is not None else (
            int(datetime.now(timezone.utc).timestamp()) * NS // NS_PER_DAY * NS_PER_DAY)
    else:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(date)):
            raise QueryError(f"date must be YYYY-MM-DD, got {date!r}")
        start = parse_ts(date)
    day = datetime.fromtimestamp(start // NS, timezone.utc).strftime("%Y-%m-%d")
    return day, start, start + NS_PER_DAY


def _dec(v) -> Decimal:
    try:
        return Decimal(v) if v is not None else Decimal(0)
    except InvalidOperation:
        return Decimal(0)


def eod_data(con, *, date: str | None = None) -> dict:
    """The end-of-day report as data (what ``eod_report`` renders): day, blotter, fills,
    positions and exceptions; a UTC day ``[00:00, 24:00)``."""
    day, a, b = _day_bounds(con, date)
    # orders whose state changed during the day, and orders still open when it began (a GTC
    # order resting from an earlier day with no event today); their state as of the end of the
    # day. Not any row naming an order_id: a command's is the OrderID (37) its client wrote and
    # a too-late cancel's reject names the order, both maybe of an order that ended days ago
    states = (ev.ORDER_ACCEPTED, ev.ORDER_PARTIALLY_FILLED, ev.ORDER_FILLED, ev.ORDER_CANCELED,
              ev.ORDER_REPLACED, ev.ORDER_EXPIRED, "order_status")
    rows = _rows(con.execute(
        f"""WITH ids AS (SELECT DISTINCT order_id FROM {TABLE} WHERE ts >= ? AND ts < ? AND type IN (?, ?, ?, ?, ?, ?, ?)
                         UNION
                         SELECT order_id FROM {TABLE} WHERE ts < ? AND type IN (?, ?, ?, ?, ?, ?, ?)
                         GROUP BY order_id HAVING arg_max(ord_status, seq) IN (?, ?, ?, ?, ?)),
                 last AS (SELECT t.*, row_number() OVER (PARTITION BY t.order_id ORDER BY t.seq DESC) AS rn
                          FROM {TABLE} t JOIN ids USING (order_id)
                          WHERE t.ts < ? AND t.type IN (?, ?, ?, ?, ?, ?, ?)),
                 firsts AS (SELECT order_id, min(ts) AS first_ts FROM {TABLE} t JOIN ids USING (order_id)
                            WHERE t.type = ? GROUP BY order_id)
            SELECT last.account, last.session, last.order_id, last.cl_ord_id, last.symbol, last.side, last.ord_type,
                   last.tif, last.price, last.qty, last.cum_qty, last.leaves_qty, last.avg_px, last.ord_status,
                   last.type, last.text, last.ts, firsts.first_ts
            FROM last LEFT JOIN firsts USING (order_id) WHERE rn = 1 ORDER BY last.account, last.order_id""",
        [a, b, *states, a, *states, *_OPEN_STATUSES, b, *states, ev.ORDER_ACCEPTED]))
    blotter = []
    for r in rows:
        st = r["ord_status"]
        ended = _ENDED.get(st, st)
        if st in ("4", "C") and (r["cum_qty"] or 0) > 0:
            ended = f"partly filled, {ended}"
        blotter.append({"account": r["account"], "order_id": r["order_id"], "cl_ord_id": r["cl_ord_id"],
                        "session": r["session"], "symbol": r["symbol"], "side": r["side"], "ord_type": r["ord_type"],
                        "tif": r["tif"], "price": r["price"], "qty": r["qty"], "cum_qty": r["cum_qty"],
                        "leaves_qty": r["leaves_qty"], "avg_px": r["avg_px"], "ord_status": st, "ended": ended,
                        "last_event": r["type"], "last_time": iso_ns(r["ts"]), "entered": iso_ns(r["first_ts"]),
                        "text": r["text"]})
    rejects = _rows(con.execute(
        f"""SELECT seq, ts, account, session, cl_ord_id, symbol, side, ord_type, tif, price, qty, rej_reason, rule,
                   limit_value, actual_value, text
            FROM {TABLE} WHERE ts >= ? AND ts < ? AND type = ? ORDER BY account, seq""", [a, b, ev.ORDER_REJECTED]))
    for r in rejects:
        blotter.append({"account": r["account"], "order_id": None, "cl_ord_id": r["cl_ord_id"],
                        "session": r["session"], "symbol": r["symbol"], "side": r["side"], "ord_type": r["ord_type"],
                        "tif": r["tif"], "price": r["price"], "qty": r["qty"], "cum_qty": 0, "leaves_qty": 0,
                        "avg_px": "0", "ord_status": "8", "ended": "rejected", "last_event": ev.ORDER_REJECTED,
                        "last_time": r["time"], "entered": r["time"], "text": r["text"]})
    blotter.sort(key=lambda x: (x["account"] or "", x["entered"] or "", x["order_id"] or 0))
    fills = _rows(con.execute(
        f"""SELECT seq, ts, account, order_id, cl_ord_id, symbol, side, last_px, last_qty, trade_id, contra_order_id,
                   liquidity, cum_qty, leaves_qty
            FROM {TABLE} WHERE ts >= ? AND ts < ? AND type IN (?, ?) ORDER BY seq""",
        [a, b, ev.ORDER_PARTIALLY_FILLED, ev.ORDER_FILLED]))
    pos: dict[tuple, dict] = {}
    for acct, sym, side, px, qty, before in con.execute(
            f"""SELECT account, symbol, side, last_px, last_qty, ts < ? FROM {TABLE}
                WHERE ts < ? AND type IN (?, ?) ORDER BY seq""",
            [a, b, ev.ORDER_PARTIALLY_FILLED, ev.ORDER_FILLED]).fetchall():
        p = pos.setdefault((acct, sym), {"account": acct, "symbol": sym, "start_position": 0, "bought": 0,
                                         "sold": 0, "buy_notional": Decimal(0), "sell_notional": Decimal(0)})
        signed = qty if side == "1" else -qty
        if before:
            p["start_position"] += signed
        elif side == "1":
            p["bought"] += qty
            p["buy_notional"] += _dec(px) * qty
        else:
            p["sold"] += qty
            p["sell_notional"] += _dec(px) * qty
    positions = []
    for (acct, sym), p in sorted(pos.items(), key=lambda kv: (kv[0][0] or "", kv[0][1] or "")):
        p["end_position"] = p["start_position"] + p["bought"] - p["sold"]
        if not (p["bought"] or p["sold"] or p["start_position"]):
            continue
        p["avg_buy_px"] = str((p["buy_notional"] / p["bought"]).quantize(Decimal("0.000001"))) if p["bought"] else None
        p["avg_sell_px"] = str((p["sell_notional"] / p["sold"]).quantize(Decimal("0.000001"))) if p["sold"] else None
        p["buy_notional"], p["sell_notional"] = str(p["buy_notional"]), str(p["sell_notional"])
        positions.append(p)
    pending = [o for o in blotter if o["ord_status"] in _OPEN_STATUSES]
    reject_counts = _rows(con.execute(
        f"""SELECT type, coalesce(rule, '') AS rule, rej_reason, count(*) AS count, min(text) AS example
            FROM {TABLE} WHERE ts >= ? AND ts < ? AND type IN (?, ?, ?, ?)
            GROUP BY ALL ORDER BY count DESC, type, rule""", [a, b, *_REJECT_TYPES]))
    controls = _rows(con.execute(
        f"""SELECT seq, ts, type, scope, "user", approver, reason, old_value, new_value, text, details
            FROM {TABLE} WHERE ts >= ? AND ts < ? AND type IN (?, ?, ?, ?, ?, ?) ORDER BY seq""",
        [a, b, ev.LIMIT_CHANGED, ev.LIMIT_CHANGE_REJECTED, ev.LIMIT_EXPIRED, ev.KILL_SWITCH_ENGAGED,
         ev.KILL_SWITCH_RELEASED, ev.LIMITS_LOADED]))
    for c in controls:
        if c["type"] == ev.LIMITS_LOADED:      # whole layers as JSON: the text says what changed
            c["old_value"] = c["new_value"] = None
        det = c.pop("details", None) or {}
        c["limit"] = det.get("limit") if isinstance(det, dict) else None
        c["affected"] = det.get("affected") if isinstance(det, dict) else None
    # a start that found the last command's events cut by a crash (none of its reports left)
    cuts = _rows(con.execute(f"SELECT seq, ts, text FROM {TABLE} WHERE ts >= ? AND ts < ? AND type = ? ORDER BY seq",
                             [a, b, ev.JOURNAL_TORN_TAIL]))
    # the day's last record as an anchor: kept with the report, `oms audit verify --anchor`
    # later proves the journal still holds it unchanged (a chain alone cannot tell its end cut)
    anchor = _rows(con.execute(f"SELECT seq, {column_sql('hash')}, ts FROM {TABLE} WHERE ts < ? "
                               f"ORDER BY seq DESC LIMIT 1", [b]))
    for r in anchor:
        r["time"] = iso_ns(r.pop("ts"))
        r["verify"] = f"oms audit verify --anchor {r['seq']}:{r['hash']}"
    return {"date": day, "from": iso_ns(a), "to": iso_ns(b), "blotter": blotter, "fills": fills,
            "positions": positions, "exceptions": {"pending": pending, "rejects": reject_counts,
                                                   "controls": controls, "journal_cuts": cuts},
            "anchor": anchor}


_BLOTTER_COLS = ("account", "order_id", "cl_ord_id", "symbol", "side", "ord_type", "tif", "price", "qty", "cum_qty",
                 "leaves_qty", "avg_px", "ended", "entered", "last_time", "text")
_FILL_COLS = ("time", "account", "order_id", "cl_ord_id", "symbol", "side", "last_px", "last_qty", "trade_id",
              "liquidity", "cum_qty", "leaves_qty")
_POS_COLS = ("account", "symbol", "start_position", "bought", "sold", "end_position", "buy_notional",
             "sell_notional", "avg_buy_px", "avg_sell_px")
_PENDING_COLS = ("account", "order_id", "cl_ord_id", "symbol", "side", "price", "qty", "cum_qty", "leaves_qty",
                 "ended", "entered")
_REJECT_COLS = ("type", "rule", "rej_reason", "count", "example")
_CONTROL_COLS = ("time", "type", "scope", "limit", "old_value", "new_value", "user", "approver", "reason",
                 "affected", "text")
_CUT_COLS = ("time", "seq", "text")
_ANCHOR_COLS = ("seq", "hash", "time", "verify")


def _sections(data: dict) -> list[tuple[str, tuple, list[dict]]]:
    ex = data["exceptions"]
    return [("Blotter", _BLOTTER_COLS, data["blotter"]), ("Fills", _FILL_COLS, data["fills"]),
            ("Positions", _POS_COLS, data["positions"]),
            ("Exceptions: orders left open", _PENDING_COLS, ex["pending"]),
            ("Exceptions: rejects by reason", _REJECT_COLS, ex["rejects"]),
            ("Exceptions: limit changes and kill switch", _CONTROL_COLS, ex["controls"]),
            ("Exceptions: journal cut by a crash", _CUT_COLS, ex["journal_cuts"]),
            ("Journal anchor (keep with this report)", _ANCHOR_COLS, data["anchor"])]


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _csv_cell(v) -> Any:
    """A CSV value that a spreadsheet will not run: text from clients (ClOrdID, Account, Price
    as sent...) starting with = + - @ TAB or CR gets a leading ' (OWASP CSV injection);
    numbers, and decimal text like -5, stay as they are."""
    if v is None:
        return ""
    if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r") and not _NUMBER.fullmatch(v):
        return "'" + v
    return v


def eod_report(con, *, date: str | None = None, fmt: str = "csv") -> str:
    """End-of-day report of a UTC ``date`` (YYYY-MM-DD; default: the day of the latest event):
    blotter per account (every order and how it ended), fills, positions, and exceptions (orders
    left open, rejects by reason, limit changes and kill-switch actions), as ``fmt`` csv or html.

    CSV: one section after another, each a ``section,<name>`` line, a header line and its
    rows, a blank line between sections; text that a spreadsheet would take for a formula
    starts with ``'``."""
    if fmt not in ("csv", "html"):
        raise QueryError(f"format must be csv or html, not {fmt!r}")
    data = eod_data(con, date=date)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["report", f"end of day {data['date']}", data["from"], data["to"]])
        for name, cols, rows in _sections(data):
            w.writerow([])
            w.writerow(["section", name])
            w.writerow(cols)
            for r in rows:
                w.writerow([_csv_cell(r.get(c)) for c in cols])
        return buf.getvalue()
    return _html(data)


_CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1b1f24}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px;border-bottom:1px solid #d0d7de}
h3{font-size:14px;margin:16px 0 6px}p.meta{color:#57606a;margin:0 0 12px}
table{border-collapse:collapse;margin:4px 0 12px;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d0d7de;padding:3px 8px;text-align:left;white-space:nowrap}
th{background:#f6f8fa}td.n{text-align:right}tr:nth-child(even) td{background:#fbfcfd}
.empty{color:#57606a;font-style:italic}.s-filled{color:#116329}.s-rejected{color:#a40e26}
.s-canceled,.s-expired{color:#6e7781}
@media print{body{margin:8mm}}
"""
_NUMERIC = {"order_id", "qty", "cum_qty", "leaves_qty", "last_qty", "trade_id", "start_position", "bought", "sold",
            "end_position", "count", "rej_reason", "affected", "price", "avg_px", "last_px", "buy_notional",
            "sell_notional", "avg_buy_px", "avg_sell_px"}


def _html_table(cols, rows) -> str:
    if not rows:
        return '<p class="empty">none</p>'
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in cols)
    body = []
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c)
            cls = []
            if c in _NUMERIC:
                cls.append("n")
            if c == "ended" and v:
                cls.append("s-" + str(v).split(",")[-1].strip().split(" ")[0])
            attr = f' class="{" ".join(cls)}"' if cls else ""
            cells.append(f"<td{attr}>{'' if v is None else e(str(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _html(data: dict) -> str:
    e = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>End of day report {e(data['date'])}</title>",
             f"<style>{_CSS}</style></head><body>",
             f"<h1>End of day report {e(data['date'])}</h1>",
             f'<p class="meta">UTC {e(data["from"])} to {e(data["to"])}; {len(data["blotter"])} orders, '
             f'{len(data["fills"])} fills. Generated from the audit trail.</p>']
    accounts = sorted({o["account"] or "" for o in data["blotter"]})
    parts.append("<h2>Blotter</h2>")
    if not accounts:
        parts.append('<p class="empty">no orders</p>')
    for acct in accounts:
        rows = [o for o in data["blotter"] if (o["account"] or "") == acct]
        counts: dict[str, int] = {}
        for o in rows:
            counts[o["ended"]] = counts.get(o["ended"], 0) + 1
        summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        parts.append(f"<h3>Account {e(acct or '(none)')} <small>({e(summary)})</small></h3>")
        parts.append(_html_table([c for c in _BLOTTER_COLS if c != "account"], rows))
    for name, cols, rows in _sections(data)[1:]:
        parts.append(f"<h2>{e(name)}</h2>")
        parts.append(_html_table(cols, rows))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
