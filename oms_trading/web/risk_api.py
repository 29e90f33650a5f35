"""Risk desk and read API: limits, four-eyes approvals, kill switch, halts, positions, exposure,
open orders and books.

Every write becomes a control command (see compliance/risk.py) run through the engine's
sequencer on this (the engine's) loop thread: ``gateway.submit`` then ``gateway.end_batch``,
so it is journaled, audited with the user's name and applied in sequence with FIX orders.

Four eyes: raising a limit by more than ``http.four_eyes_factor`` (or switching a check off),
and releasing the global kill switch, only create a pending approval (202). A raise is judged
against the value in force and against the value two users last set (or the configured one,
``RiskEngine.four_eyes_ref``), so raises in steps, each within the factor, need a second user
once together they pass it. Another risk user
approves it (the command is then submitted with ``user`` = requester and ``approver`` = the
second user) or any risk user rejects it. Pending approvals live in memory: a restart drops
them (nothing was applied, so nothing is lost but the request).
"""
from __future__ import annotations

import secrets
import time
from decimal import Decimal
from typing import TYPE_CHECKING

from aiohttp import web

from ..audit import schema as ev
from ..compliance.limits import INSTRUMENT_LIMITS, LIMIT_DEFS, LimitValueError, limit_text
from .auth import USER_KEY
from .errors import BadRequest
from .routes import Param, Route
from .validate import MAX_NAME, choice, integer, json_body, json_response, query, text

if TYPE_CHECKING:
    from ..server import OmsServer

FLAGS = {"halted": ("instrument",), "restricted": ("instrument", "pair"), "reduce_only": ("account",)}
# limits where a *lower* value is the looser one (0 still means off)
LOOSER_WHEN_LOWER = frozenset({"duplicate_window_ms"})
APPROVAL_TTL_S = 3600
MAX_PENDING = 500
MAX_EXPIRES_S = 7 * 86_400
MAX_OPEN_ORDERS = 10_000


def _server(request: web.Request) -> "OmsServer":
    from .app import SERVER_KEY
    return request.app[SERVER_KEY]


def _risk(server: "OmsServer"):
    risk = getattr(server, "risk", None) or getattr(server.engine, "risk", None)
    if risk is None:
        raise BadRequest("risk controls are not configured on this server", status=503)
    return risk


def _user(request: web.Request) -> str:
    return request[USER_KEY].name


def submit(server: "OmsServer", command: dict) -> list[dict]:
    """Run one command through the sequencer and journal it; the events it caused."""
    events = server.gateway.submit(command)
    server.gateway.end_batch()
    if server.gateway.journal_failed is not None:
        raise BadRequest(f"audit journal unavailable, nothing was changed: {server.gateway.journal_failed}",
                         status=503)
    # a record the journal refused (JournalRecordError) drops the batch and rebuilds the engine
    # but leaves journal_failed unset: the events' seqs then never reached the journal
    last = max((e["seq"] for e in events if isinstance(e.get("seq"), int)), default=None)
    if last is not None and server.engine.journal.last_seq < last:
        raise BadRequest("audit journal refused the change (see the server log), nothing was changed", status=503)
    return events


def _outcome(events: list[dict], ok_types: tuple[str, ...]) -> tuple[dict | None, dict | None]:
    ok = next((e for e in events if e["type"] in ok_types), None)
    rejected = next((e for e in events if e["type"] == ev.LIMIT_CHANGE_REJECTED), None)
    return ok, rejected


# -- limit changes -----------------------------------------------------------------------------


def _parse_scope(server: "OmsServer", scope: str) -> tuple[str, str | None, str | None]:
    """-> (kind, account, symbol) for default | account:A | instrument:S | account:A/instrument:S."""
    accounts = server.engine.account_index
    instruments = server.engine.instruments
    if scope == "default":
        return "default", None, None
    parts = scope.split("/")
    if len(parts) == 2:
        k1, a = _parse_scope(server, parts[0])[:2]
        k2, _, s = _parse_scope(server, parts[1])
        if k1 != "account" or k2 != "instrument":
            raise BadRequest(f"scope {scope!r}: use account:NAME/instrument:SYMBOL")
        return "pair", a, s
    if len(parts) != 1:
        raise BadRequest(f"scope {scope!r} is not a scope")
    kind, sep, name = scope.partition(":")
    if kind == "account" and sep:
        if name not in accounts:
            raise BadRequest(f"scope {scope!r}: unknown account {name!r} (known: {', '.join(accounts)})")
        return "account", name, None
    if kind == "instrument" and sep:
        if name not in instruments:
            raise BadRequest(f"scope {scope!r}: unknown instrument {name!r} (known: {', '.join(instruments)})")
        return "instrument", None, name
    raise BadRequest(f"scope must be default, account:NAME, instrument:SYMBOL or account:NAME/instrument:SYMBOL; "
                     f"got {scope!r}")


def _flag_value(name: str, value) -> tuple[str, bool]:
    """A flag takes JSON true/false only: ``value in (True, ...)`` also let 1 and 0 through."""
    if value is True or value is False:
        return ("true" if value else "false"), value
    raise BadRequest(f"{name} must be true or false (a JSON boolean), got {value!r}")


def _limit_value(name: str, kind: str, value, scope: str, risk=None):
    """Validate a new value; returns (command text or None, parsed value or None)."""
    if name in FLAGS:
        if kind not in FLAGS[name]:
            raise BadRequest(f"{name} cannot be set at scope {scope!r} (only: {', '.join(FLAGS[name])})")
        return _flag_value(name, value)
    if name not in LIMIT_DEFS:
        known = ", ".join(sorted([*LIMIT_DEFS, *FLAGS]))
        raise BadRequest(f"unknown limit {name!r} (known: {known})")
    if kind == "pair" or (kind == "instrument" and name not in INSTRUMENT_LIMITS):
        raise BadRequest(f"{name} cannot be set at scope {scope!r}")
    if value is None or value == "":
        if kind == "default":
            raise BadRequest(f"the default {name} cannot be removed, only changed")
        return None, None
    if isinstance(value, Decimal):   # a JSON number with a fraction: exact; 1e3 -> "1E+3" is refused
        value = str(value)
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise BadRequest(f"value of {name} must be a number or decimal text, got {value!r}")
    try:
        parsed = LIMIT_DEFS[name].parse_input(value)
    except LimitValueError as exc:
        raise BadRequest(f"value: {exc}") from None
    if risk is not None and (too_fine := risk.too_fine(name, parsed)) is not None:
        raise BadRequest(f"value: {too_fine}")
    return limit_text(parsed), parsed


def _effective(risk, kind: str, account: str | None, symbol: str | None, name: str):
    return risk.value(name, account, symbol)


def _fallback(server: "OmsServer", risk, kind: str, account: str | None, symbol: str | None, name: str) -> list:
    """Values in force once the override at this scope is removed (per affected account)."""
    layers = risk.layers
    default = layers["default"].get(name)
    if kind == "account":
        return [default]
    # instrument scope: each account falls back to its own value
    return [layers.get(f"account:{a}", {}).get(name, default) for a in server.engine.account_index]


def four_eyes_reason(server: "OmsServer", scope: str, name: str, new_value) -> str | None:
    """Why this limit change needs a second risk user, or None when it does not."""
    if name in FLAGS or name not in LIMIT_DEFS:
        return None
    risk = _risk(server)
    kind, account, symbol = _parse_scope(server, scope)
    factor = Decimal(server.config.four_eyes_factor)
    if kind == "instrument":
        olds = [(Decimal(str(risk.value(name, a, symbol))), "") for a in server.engine.account_index]
    else:
        olds = [(Decimal(str(risk.value(name, account, None))), "")]
    if (scope, name) in risk.pending:
        # a temporary value is in force: judge the change against what the scope returns to as
        # well, or one user could make an approved temporary raise permanent (or extend it)
        restore = risk.pending[(scope, name)][1]
        olds += [(Decimal(str(v)), "") for v in ([restore] if restore is not None
                                                 else _fallback(server, risk, kind, account, symbol, name))]
    if (scope, name) in risk.four_eyes_ref:
        # and against the value two users last set (or the configured one): raises in steps,
        # each within the factor of the one before, need a second user once they add up past it
        ref = risk.four_eyes_ref[(scope, name)]
        olds += [(Decimal(str(v)), " (the value last set by two risk users or configured)")
                 for v in ([ref] if ref is not None else _fallback(server, risk, kind, account, symbol, name))]
    if new_value is None:
        news = [Decimal(str(v)) for v in _fallback(server, risk, kind, account, symbol, name)]
    else:
        news = [Decimal(str(new_value))]
    for old, which in olds:
        if old == 0:
            continue        # the check is off already: any value tightens it
        for new in news:
            if new == 0:
                return f"{name} would be switched off (0) at {scope}, from {old}{which}"
            if name in LOOSER_WHEN_LOWER:
                if new * factor < old:
                    return (f"{name} at {scope} lowered from {old}{which} to {new}, more than the four-eyes "
                            f"factor {factor}")
            elif new > old * factor:
                return f"{name} at {scope} raised from {old}{which} to {new}, more than the four-eyes factor {factor}"
    return None


async def _limit_request(request: web.Request) -> tuple[dict, str | None]:
    """Validated limit change body -> (command without ts, four-eyes reason)."""
    server = _server(request)
    _risk(server)
    body = await json_body(request, ("scope", "limit", "value", "reason", "expires_in_s", "action"),
                           required=("scope", "limit", "reason"))
    body.pop("action", None)
    if "value" not in body:
        raise BadRequest("value is required (null removes the override at this scope)")
    scope = text(body["scope"], "scope", max_len=2 * MAX_NAME + 24)
    kind, _a, _s = _parse_scope(server, scope)
    name = text(body["limit"], "limit", max_len=MAX_NAME)
    value_text, parsed = _limit_value(name, kind, body["value"], scope, _risk(server))
    reason = text(body["reason"], "reason")
    expires_in = integer(body.get("expires_in_s"), "expires_in_s", lo=1, hi=MAX_EXPIRES_S)
    command = {"type": ev.LIMIT_CHANGE_REQUESTED, "user": _user(request), "approver": None, "reason": reason,
               "scope": scope, "limit": name, "new_value": value_text, "expires_ts": None, "request_id": None,
               "expires_in_s": expires_in}
    return command, four_eyes_reason(server, scope, name, parsed)


def _finish_limit_command(server: "OmsServer", command: dict) -> dict:
    cmd = dict(command)
    expires_in = cmd.pop("expires_in_s", None)
    cmd["ts"] = server.gateway.clock_ns()
    if expires_in:
        cmd["expires_ts"] = cmd["ts"] + expires_in * 1_000_000_000
    return cmd


def _apply(server: "OmsServer", command: dict) -> tuple[int, dict]:
    """Submit a prepared command; (HTTP status, body)."""
    if command["type"] == ev.LIMIT_CHANGE_REQUESTED:
        cmd = _finish_limit_command(server, command)
        events = submit(server, cmd)
        ok, rejected = _outcome(events, (ev.LIMIT_CHANGED,))
    else:
        cmd = dict(command, ts=server.gateway.clock_ns())
        events = submit(server, cmd)
        ok, rejected = _outcome(events, (ev.KILL_SWITCH_ENGAGED, ev.KILL_SWITCH_RELEASED))
    if ok is None:
        message = rejected["text"] if rejected else "the engine did not apply the command"
        return 409, {"error": message, "status": 409, "command_seq": events[0].get("seq") if events else None,
                     "event": rejected}
    body = {"status": "applied", "event": ok, "command_seq": events[0].get("seq")}
    if ok["type"] == ev.KILL_SWITCH_ENGAGED:
        body["canceled_orders"] = [e["order_id"] for e in events if e["type"] == ev.ORDER_CANCELED]
    return 200, body


async def put_limit(request: web.Request) -> web.Response:
    """Change one limit or flag at a scope (four eyes when raised beyond the factor)."""
    server = _server(request)
    command, why = await _limit_request(request)
    if why is not None:
        return _create_approval(request, command, why)
    status, body = _apply(server, command)
    return json_response(body, status=status)


def _effective_rows(server: "OmsServer", risk, account: str | None, symbol: str | None) -> list[dict]:
    rows = []
    for name, d in LIMIT_DEFS.items():
        sym = symbol if name in INSTRUMENT_LIMITS else None
        value, source = risk.effective(name, account, sym)
        rows.append({"limit": name, "kind": d.kind, "value": None if value is None else limit_text(value),
                     "source": source})
    return rows


async def get_limits(request: web.Request) -> web.Response:
    """Limits and flags per scope, the effective values for an account (and instrument),
    kill switches, halts and pending expiries."""
    server = _server(request)
    risk = _risk(server)
    q = query(request, ("account", "symbol"))
    account = q.get("account") or None
    symbol = q.get("symbol") or None
    if account is not None and account not in server.engine.account_index:
        raise BadRequest(f"unknown account {account!r}")
    if symbol is not None and symbol not in server.engine.instruments:
        raise BadRequest(f"unknown symbol {symbol!r}")
    snap = risk.snapshot()
    layers = snap["layers"]
    if account is not None or symbol is not None:
        layers = {s: v for s, v in layers.items()
                  if s == "default"
                  or (account and (s == f"account:{account}" or s.startswith(f"account:{account}/")))
                  or (symbol and s.endswith(f"instrument:{symbol}") and (s.startswith("instrument:") or
                                                                          (account and s.startswith(f"account:{account}/"))))}
    return json_response({
        "catalog": [{"limit": n, "kind": d.kind, "description": d.description,
                     "scopes": ["default", "account"] + (["instrument"] if n in INSTRUMENT_LIMITS else [])}
                    for n, d in LIMIT_DEFS.items()]
        + [{"limit": n, "kind": "bool", "description": f"flag ({', '.join(s)} scope)", "scopes": list(s)}
           for n, s in FLAGS.items()],
        "layers": layers,
        "effective": {"account": account, "symbol": symbol, "limits": _effective_rows(server, risk, account, symbol)},
        "kill_switches": snap["kill_switches"],
        "halted": sorted(s[len("instrument:"):] for s, v in snap["layers"].items()
                         if s.startswith("instrument:") and v.get("halted") == "true"),
        "pending_expiries": snap["pending_expiries"],
        "accounts": list(server.engine.account_index),
        "instruments": list(server.engine.instruments),
        "sessions": [s.key for s in server.config.sessions],
        "four_eyes_factor": str(server.config.four_eyes_factor),
    })


# -- kill switch and halts ------------------------------------------------------------------------


async def post_kill_switch(request: web.Request) -> web.Response:
    """Engage or release a kill switch (global/all, account:X, session:KEY, instrument:S)."""
    server = _server(request)
    risk = _risk(server)
    body = await json_body(request, ("scope", "action", "reason"), required=("scope", "action", "reason"))
    scope = text(body["scope"], "scope", max_len=2 * MAX_NAME + 16)
    if scope == "all":
        scope = "global"
    kind, _, name = scope.partition(":")
    if scope != "global":
        known = {"account": server.engine.account_index, "instrument": server.engine.instruments,
                 "session": [s.key for s in server.config.sessions]}.get(kind)
        if known is None or not name:
            raise BadRequest(f"scope must be all (global), account:NAME, session:KEY or instrument:SYMBOL; got {scope!r}")
        if name not in known:
            raise BadRequest(f"scope {scope!r}: unknown {kind} {name!r} (known: {', '.join(known)})")
    action = choice(body["action"], "action", ("engage", "release"))
    reason = text(body["reason"], "reason")
    engaged = scope in risk.snapshot()["kill_switches"]
    if action == "release" and not engaged:
        return json_response({"error": f"kill switch {scope} is not engaged", "status": 409}, status=409)
    command = {"type": ev.KILL_SWITCH_REQUESTED, "user": _user(request), "approver": None, "reason": reason,
               "scope": scope, "action": action, "request_id": None}
    if scope == "global" and action == "release":
        return _create_approval(request, command, "releasing the global kill switch needs a second risk user")
    status, out = _apply(server, command)
    return json_response(out, status=status)


async def _halt(request: web.Request, on: bool) -> web.Response:
    server = _server(request)
    _risk(server)
    symbol = request.match_info["symbol"]
    if symbol not in server.engine.instruments:
        return json_response({"error": f"unknown instrument {symbol!r}", "status": 404}, status=404)
    body = await json_body(request, ("reason",), required=("reason",))
    reason = text(body["reason"], "reason")
    command = {"type": ev.LIMIT_CHANGE_REQUESTED, "user": _user(request), "approver": None, "reason": reason,
               "scope": f"instrument:{symbol}", "limit": "halted", "new_value": "true" if on else "false",
               "expires_ts": None, "request_id": None}
    status, out = _apply(server, command)
    return json_response(out, status=status)


async def post_halt(request: web.Request) -> web.Response:
    """Halt trading in an instrument (new orders rejected with trading_halt)."""
    return await _halt(request, True)


async def post_resume(request: web.Request) -> web.Response:
    """Resume trading in a halted instrument."""
    return await _halt(request, False)


# -- approvals ---------------------------------------------------------------------------------------

APPROVALS_KEY = web.AppKey("oms_approvals", dict)


def _approvals(request: web.Request) -> dict:
    store = request.app[APPROVALS_KEY]
    now = time.time()
    for a in store.values():
        if a["status"] == "pending" and now > a["expires_at"]:
            a["status"] = "expired"
    return store


def _public(a: dict) -> dict:
    cmd = a["command"]
    what = {k: cmd.get(k) for k in ("scope", "limit", "new_value", "expires_in_s", "action", "reason")
            if cmd.get(k) is not None}
    return {"id": a["id"], "kind": "limit_change" if cmd["type"] == ev.LIMIT_CHANGE_REQUESTED else "kill_switch",
            "status": a["status"], "requested_by": a["requested_by"], "requested_at": a["requested_at"],
            "expires_at": a["expires_at"], "why": a["why"], "request": what,
            "decided_by": a.get("decided_by"), "decided_at": a.get("decided_at"),
            "decision_reason": a.get("decision_reason"), "result": a.get("result")}


def _same_request(command: dict) -> tuple:
    """What makes two requests the same (who asked, when and why aside)."""
    return tuple(sorted((k, str(v)) for k, v in command.items()
                        if k not in ("ts", "expires_ts", "user", "reason", "request_id", "approver")))


def _create_approval(request: web.Request, command: dict, why: str) -> web.Response:
    store = _approvals(request)
    same = _same_request(command)
    for a in store.values():
        if a["status"] == "pending" and _same_request(a["command"]) == same:
            raise BadRequest(f"the same request is already waiting for approval (request {a['id']}, "
                             f"by {a['requested_by']})", status=409)
    if sum(1 for a in store.values() if a["status"] == "pending") >= MAX_PENDING:
        raise BadRequest(f"too many pending approvals (at most {MAX_PENDING}); approve or reject some first",
                         status=429)
    if len(store) > 5 * MAX_PENDING:     # forget the oldest decided ones
        for key in [k for k, a in store.items() if a["status"] != "pending"][:MAX_PENDING]:
            del store[key]
    approval_id = secrets.token_hex(6)
    now = time.time()
    command = dict(command, request_id=approval_id)
    store[approval_id] = {"id": approval_id, "command": command, "status": "pending",
                          "requested_by": command["user"], "requested_at": now,
                          "expires_at": now + APPROVAL_TTL_S, "why": why}
    body = {"status": "pending_approval", "approval": _public(store[approval_id]),
            "message": f"{why}: another risk user must approve it (POST /api/risk/approvals/{approval_id}/approve)"}
    return json_response(body, status=202, headers={"Location": f"/api/risk/approvals/{approval_id}"})


async def list_approvals(request: web.Request) -> web.Response:
    """Approval requests (pending by default; status=all for every one still remembered)."""
    q = query(request, ("status",))
    status = choice(q.get("status") or "pending", "status", ("pending", "approved", "rejected", "expired",
                                                             "failed", "all"))
    store = _approvals(request)
    rows = [_public(a) for a in store.values() if status == "all" or a["status"] == status]
    rows.sort(key=lambda a: a["requested_at"], reverse=True)
    return json_response({"approvals": rows})


async def create_approval(request: web.Request) -> web.Response:
    """Ask a second risk user to approve a limit change or kill-switch action (always 202)."""
    server = _server(request)
    risk = _risk(server)
    peek = await json_body(request, ("kind", "scope", "limit", "value", "reason", "expires_in_s", "action"),
                           required=("kind",))
    kind = choice(peek.get("kind"), "kind", ("limit_change", "kill_switch"))
    body = {k: v for k, v in peek.items() if k != "kind"}
    if kind == "limit_change":
        if "action" in body:
            raise BadRequest("action belongs to kind kill_switch")
        for key in ("scope", "limit", "reason"):
            if body.get(key) is None:
                raise BadRequest(f"missing required field(s): {key}")
        if "value" not in body:
            raise BadRequest("value is required (null removes the override at this scope)")
        scope = text(body["scope"], "scope", max_len=2 * MAX_NAME + 24)
        skind, _a, _s = _parse_scope(server, scope)
        name = text(body["limit"], "limit", max_len=MAX_NAME)
        value_text, parsed = _limit_value(name, skind, body["value"], scope, risk)
        command = {"type": ev.LIMIT_CHANGE_REQUESTED, "user": _user(request), "approver": None,
                   "reason": text(body["reason"], "reason"), "scope": scope, "limit": name,
                   "new_value": value_text, "expires_ts": None, "request_id": None,
                   "expires_in_s": integer(body.get("expires_in_s"), "expires_in_s", lo=1, hi=MAX_EXPIRES_S)}
        why = four_eyes_reason(server, scope, name, parsed) or "second pair of eyes requested"
    else:
        extra = sorted(set(body) - {"scope", "action", "reason"})
        if extra:
            raise BadRequest(f"unknown field(s) for kind kill_switch: {', '.join(extra)}")
        for key in ("scope", "action", "reason"):
            if body.get(key) is None:
                raise BadRequest(f"missing required field(s): {key}")
        scope = text(body["scope"], "scope", max_len=2 * MAX_NAME + 16)
        scope = "global" if scope == "all" else scope
        if scope != "global":
            skind, _, sname = scope.partition(":")
            known = {"account": server.engine.account_index, "instrument": server.engine.instruments,
                     "session": [s.key for s in server.config.sessions]}.get(skind)
            if known is None or sname not in known:
                raise BadRequest(f"scope must be all (global), account:NAME, session:KEY or instrument:SYMBOL; "
                                 f"got {scope!r}")
        action = choice(body["action"], "action", ("engage", "release"))
        if action == "release" and scope not in risk.snapshot()["kill_switches"]:
            raise BadRequest(f"kill switch {scope} is not engaged", status=409)
        command = {"type": ev.KILL_SWITCH_REQUESTED, "user": _user(request), "approver": None,
                   "reason": text(body["reason"], "reason"), "scope": scope, "action": action, "request_id": None}
        why = ("releasing the global kill switch needs a second risk user" if scope == "global" and action == "release"
               else "second pair of eyes requested")
    return _create_approval(request, command, why)


def _get_pending(request: web.Request) -> dict:
    approval_id = request.match_info["id"]
    if len(approval_id) > 32 or not approval_id.isalnum():
        raise BadRequest(f"not an approval id: {approval_id!r}")
    store = _approvals(request)
    a = store.get(approval_id)
    if a is None:
        raise BadRequest(f"no approval request {approval_id!r}", status=404)
    if a["status"] != "pending":
        raise BadRequest(f"approval request {approval_id} is {a['status']}, not pending", status=409)
    return a


async def approve(request: web.Request) -> web.Response:
    """Approve a pending request: applied now, audited with user (requester) and approver."""
    server = _server(request)
    _risk(server)
    if request.can_read_body:
        await json_body(request, ("comment",))
    a = _get_pending(request)
    me = _user(request)
    if me == a["requested_by"]:
        raise BadRequest("four eyes: you cannot approve your own request; another risk user must", status=403)
    command = dict(a["command"], approver=me)
    status, body = _apply(server, command)
    a["decided_by"], a["decided_at"] = me, time.time()
    a["status"] = "approved" if status == 200 else "failed"
    a["result"] = body.get("event")
    body["approval"] = _public(a)
    return json_response(body, status=status)


async def reject(request: web.Request) -> web.Response:
    """Reject (or, by its requester, withdraw) a pending request; nothing is applied."""
    body = await json_body(request, ("reason",)) if request.can_read_body else {}
    a = _get_pending(request)
    a["decision_reason"] = text(body.get("reason"), "reason", required=False)
    a["decided_by"], a["decided_at"] = _user(request), time.time()
    a["status"] = "rejected"
    return json_response({"status": "rejected", "approval": _public(a)})


# -- reads -------------------------------------------------------------------------------------------


def _account_param(server: "OmsServer", request: web.Request, allowed=("account",)) -> str | None:
    q = query(request, allowed)
    account = q.get("account") or None
    if account is not None and account not in server.engine.account_index:
        raise BadRequest(f"unknown account {account!r} (known: {', '.join(server.engine.account_index)})")
    return account


async def get_positions(request: web.Request) -> web.Response:
    """Positions and resting quantity per account and instrument."""
    server = _server(request)
    account = _account_param(server, request)
    return json_response({"account": account, "positions": server.engine.positions(account)})


async def get_exposure(request: web.Request) -> web.Response:
    """Gross exposure per account against its credit limit."""
    server = _server(request)
    account = _account_param(server, request)
    rows = server.engine.exposures(account)
    if getattr(server.risk, "global_killed", False):   # the global switch stops every account too
        rows = [dict(r, kill_switch=True) for r in rows]
    return json_response({"account": account, "exposure": rows})


async def get_orders(request: web.Request) -> web.Response:
    """Open orders (of one account, or all)."""
    server = _server(request)
    account = _account_param(server, request)
    orders = server.engine.open_orders(account)
    rows = [{"order_id": o.order_id, "cl_ord_id": o.cl_ord_id, "session": o.session, "account": o.account,
             "symbol": o.instrument.symbol, "side": o.side, "ord_type": o.ord_type, "tif": o.tif,
             "price": o.price_text, "qty": o.qty, "cum_qty": o.cum_qty, "leaves_qty": o.leaves_qty,
             "ord_status": o.status, "ts": o.ts} for o in orders[:MAX_OPEN_ORDERS]]
    return json_response({"account": account, "orders": rows, "count": len(orders),
                          "truncated": len(orders) > MAX_OPEN_ORDERS})


async def get_book(request: web.Request) -> web.Response:
    """The top N price levels of an instrument's book."""
    server = _server(request)
    symbol = request.match_info["symbol"]
    q = query(request, ("levels",))
    levels = integer(q.get("levels"), "levels", lo=1, hi=100) or 5
    if symbol not in server.engine.instruments:
        return json_response({"error": f"unknown instrument {symbol!r}", "status": 404}, status=404)
    book = server.engine.book_depth(symbol, levels)
    book["levels"] = levels
    book["halted"] = bool(server.engine.risk and
                          server.engine.risk.layers.get(f"instrument:{symbol}", {}).get("halted"))
    return json_response(book)


LIMIT_BODY = {"type": "object", "required": ["scope", "limit", "value", "reason"], "additionalProperties": False,
              "properties": {
                  "scope": {"type": "string", "example": "account:ACC1",
                            "description": "default | account:NAME | instrument:SYMBOL | account:NAME/instrument:SYMBOL"},
                  "limit": {"type": "string", "example": "max_order_qty"},
                  "value": {"oneOf": [{"type": "string"}, {"type": "integer"}, {"type": "boolean"}],
                            "nullable": True, "description": "null removes the override at this scope"},
                  "reason": {"type": "string", "maxLength": 500},
                  "expires_in_s": {"type": "integer", "minimum": 1, "maximum": MAX_EXPIRES_S}}}
KILL_BODY = {"type": "object", "required": ["scope", "action", "reason"], "additionalProperties": False,
             "properties": {"scope": {"type": "string", "example": "account:ACC1",
                                      "description": "all | global | account:NAME | session:KEY | instrument:SYMBOL"},
                            "action": {"type": "string", "enum": ["engage", "release"]},
                            "reason": {"type": "string", "maxLength": 500}}}
REASON_BODY = {"type": "object", "required": ["reason"], "additionalProperties": False,
               "properties": {"reason": {"type": "string", "maxLength": 500}}}
APPROVAL_BODY = {"type": "object", "required": ["kind"], "additionalProperties": False,
                 "properties": {"kind": {"type": "string", "enum": ["limit_change", "kill_switch"]},
                                **LIMIT_BODY["properties"], **KILL_BODY["properties"]}}
DECISION_BODY = {"type": "object", "additionalProperties": False,
                 "properties": {"reason": {"type": "string"}, "comment": {"type": "string"}}}

ACCOUNT = Param("account", description="account name; all accounts when omitted")
RISK = ("risk",)
READERS = ("risk", "viewer")

ROUTES = [
    Route("GET", "/api/risk/limits", get_limits, "Limits per scope, effective values, kill switches, halts",
          RISK, (ACCOUNT, Param("symbol", description="instrument for per-instrument overrides")), tags=("risk",)),
    Route("PUT", "/api/risk/limits", put_limit, "Change a limit or flag (202 + approval when four eyes apply)",
          RISK, body=LIMIT_BODY, tags=("risk",)),
    Route("GET", "/api/risk/approvals", list_approvals, "Four-eyes approval requests", RISK,
          (Param("status", description="pending (default) | approved | rejected | expired | failed | all"),),
          tags=("risk",)),
    Route("POST", "/api/risk/approvals", create_approval, "Create an approval request (202)", RISK,
          body=APPROVAL_BODY, tags=("risk",)),
    Route("POST", "/api/risk/approvals/{id}/approve", approve, "Approve another user's request (applies it)", RISK,
          (Param("id", "path"),), body=None, tags=("risk",)),
    Route("POST", "/api/risk/approvals/{id}/reject", reject, "Reject or withdraw a pending request", RISK,
          (Param("id", "path"),), tags=("risk",)),
    Route("POST", "/api/risk/kill-switch", post_kill_switch, "Engage or release a kill switch (global release: 202)",
          RISK, body=KILL_BODY, tags=("risk",)),
    Route("POST", "/api/risk/instruments/{symbol}/halt", post_halt, "Halt an instrument", RISK,
          (Param("symbol", "path"),), body=REASON_BODY, tags=("risk",)),
    Route("POST", "/api/risk/instruments/{symbol}/resume", post_resume, "Resume a halted instrument", RISK,
          (Param("symbol", "path"),), body=REASON_BODY, tags=("risk",)),
    Route("GET", "/api/positions", get_positions, "Positions per account and instrument", READERS, (ACCOUNT,),
          tags=("positions",)),
    Route("GET", "/api/exposure", get_exposure, "Exposure per account", READERS, (ACCOUNT,), tags=("positions",)),
    Route("GET", "/api/orders", get_orders, "Open orders", READERS, (ACCOUNT,), tags=("positions",)),
    Route("GET", "/api/books/{symbol}", get_book, "Top N levels of a book", READERS,
          (Param("symbol", "path"), Param("levels", type="integer", description="1..100, default 5")),
          tags=("positions",)),
]
