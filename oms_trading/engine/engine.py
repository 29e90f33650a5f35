"""The single-writer engine: commands in, events out, in sequence.

Every command arrives as an event dict of a command type (see audit.schema.COMMAND_TYPES),
carrying its own timestamp: the engine never reads a clock, so replaying the journal's
commands through a fresh engine rebuilds exactly the same state. ``process`` appends the
command and every event it causes to the journal and returns the events; the caller flushes
the journal (``flush``) before any report about them leaves the process.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from typing import Callable, Iterable, Protocol

import orjson

from ..audit import schema as ev
from ..book import BUY, LIMIT, MARKET, SELL, STP_CANCEL_BOTH, STP_CANCEL_INCOMING, STP_CANCEL_RESTING, STP_NONE
from ..book import TIF_DAY, TIF_FOK, TIF_GTC, TIF_IOC
from ..book import OK as BOOK_OK
from ..config import Config
from ..model import MAX_QTY, CxlRejReason, Instrument, OrdRejReason, PriceError, format_avg_px
from .fingerprints import FingerprintSet
from .replay_check import JOURNAL_KEYS, ReplayCheck
from .orders import CANCELED, EXPIRED, FILLED, NEW, PARTIALLY_FILLED, REJECTED, Order
from .positions import ORDER_VALUE_CAP, Positions

log = logging.getLogger(__name__)

STP_CODES = {"none": STP_NONE, "cancel_resting": STP_CANCEL_RESTING,
             "cancel_incoming": STP_CANCEL_INCOMING, "cancel_both": STP_CANCEL_BOTH}
TIF_CODES = {"0": TIF_DAY, "1": TIF_GTC, "3": TIF_IOC, "4": TIF_FOK}
ORD_TYPE_CODES = {"1": MARKET, "2": LIMIT}
SIDE_CODES = {"1": BUY, "2": SELL, "5": SELL, "6": SELL}


TICKS_MEMO_SIZE = 65536    # distinct prices remembered per instrument before the memo starts over
EVICT_CHUNK = 4096        # finished orders past the bound leave memory this many at a time at most
CXL_BROKER_OPTION = 2     # CxlRejReason for a replace refused by a risk check
_SESSION_RECORDS = frozenset({ev.SESSION_LOGON, ev.SESSION_LOGOUT, ev.SESSION_SEQ_RESET})
# The rules the engine decides commands by. A change that would decide a journaled command
# otherwise gets a new version; each journal says which version decided what (an engine_rules
# record before the first command decided by it), so a replay decides every command as it was:
#   1  until 2026-11-26 (journals without an engine_rules record)
#   2  a cancel whose Symbol/Side differ from the order's is refused; where an account and an
#      instrument both set a limit, the stricter binds; a duplicate ClOrdID's reject carries
#      the working order's state, and a PossResend of it is answered with its status
#   3  a replace's credit check counts the new leaves of an order in another currency as the
#      exposure will (rounded up once): after a partial fill it was up to one money unit less
#   4  the duplicate-order window counts only an earlier order with an earlier time: after the
#      wall clock stepped back, every same order was a "duplicate" for as long as the step
RULES_VERSION = 4
RULES_BEFORE_VERSIONING = 1
CLOCK_WARN_EVERY_S = 60.0  # a wall clock stepping back is logged at most this often


class JournalLike(Protocol):
    def append(self, event: dict) -> dict: ...
    def flush(self) -> None: ...


class Rejection(Exception):
    """A command refused by validation or a risk check; carries what the audit must record."""

    def __init__(self, reason: int, text: str, rule: str, limit_value: str | None = None,
                 actual_value: str | None = None) -> None:
        super().__init__(text)
        self.reason, self.text, self.rule = int(reason), text, rule
        self.limit_value, self.actual_value = limit_value, actual_value


class Engine:
    def __init__(self, config: Config, journal: JournalLike | None, book_factory: Callable[[], object],
                 risk: object | None = None) -> None:
        self.config = config
        self.journal = journal
        self.instruments: dict[str, Instrument] = {i.symbol: i for i in config.instruments}
        self.account_index: dict[str, int] = {a.name: a.index for a in config.accounts}
        self.account_stp: list[int] = [STP_CODES[a.stp_mode] for a in config.accounts]
        # session key -> the accounts it may trade, only for sessions with an `accounts` list.
        # Read live only: a refusal is stamped on the journaled command (``_stamp_entitlement``),
        # so a replay decides by the record, whatever the config of the restart says
        self.session_accounts: dict[str, frozenset[str]] = {
            s.key: frozenset(s.accounts) for s in config.sessions if s.accounts is not None}
        self.book_factory = book_factory
        # per instrument: price text -> ticks for prices already seen valid. Traders repeat a
        # few hundred prices, so the exact Decimal conversion runs once per distinct price.
        self._ticks_memo: list[dict[str, int]] = [{} for _ in config.instruments]
        self.risk = risk
        self.replaying = False
        self.replay_check: ReplayCheck | None = None   # what the last replay found
        self.limits_loaded: dict | None = None   # the last limits_loaded record (audit/config_limits.py)
        self.rules = RULES_VERSION                # the rules commands are decided by (RULES_VERSION)
        self._rules_journaled = False             # an engine_rules record says so before the next command
        self._rules_seen = False                  # the journal replayed holds one for this version
        # the wall clock stepped back under a command (NTP step, VM migration): how often since
        # the start, the largest step, and when it was last logged (at most one warning a minute)
        self.clock_steps_back = 0
        self.clock_largest_step_back_ns = 0
        self._clock_warned_at = -CLOCK_WARN_EVERY_S
        if risk is not None and hasattr(risk, "bind"):
            risk.bind(self)
        self._init_state()

    def _init_state(self) -> None:
        """Empty books and orders: the state before the first command of the journal."""
        self.books = [self.book_factory() for _ in self.config.instruments]
        self.orders: dict[int, Order] = {}
        # (session, ClOrdID) -> order id, for every ClOrdID of the orders held in memory
        self.by_cl_ord_id: dict[tuple[str, str], int] = {}
        # finished orders in the order they finished; past config.finished_orders_in_memory the
        # oldest leave memory and only hash((session, ClOrdID)) of each of their ClOrdIDs and
        # hash((session, OrderID)) stay (duplicates refused, the owner's cancels answered "too
        # late") until the end of the day
        self._finished: deque[int] = deque()
        self._gone_ids = FingerprintSet(self.config.finished_ids_capacity)
        # finished orders leave memory in chunks (one compiled call for their fingerprints,
        # not one per order): up to 1/16 of the bound (at most EVICT_CHUNK) more stay meanwhile
        keep = self.config.finished_orders_in_memory
        self._evict_above = keep + min(EVICT_CHUNK, keep // 16)
        self.next_order_id = 1
        self.next_exec_id = 1
        self.last_ts = 0          # the ts of the last journaled record (a later one earlier: the clock went back)
        # ts of the first command replayed since the last end of day (None: none since): a start
        # after an end of day the server was down for rolls the day if this is before it
        self.day_first_ts: int | None = None
        # ts of the last end of day's roll (None: none yet): one after an end of day's time says
        # that day rolled, whatever time the commands after it carry (a clock stepped back)
        self.day_rolled_ts: int | None = None
        # FIX session facts the replay finds, for the acceptor's recovery after a crash: the
        # MsgSeqNum of each session's last journaled command since its last sequence reset (the
        # store's inbound seq may lag it: it is written after the journal), and the sessions
        # whose last session record is a logon (logged on when the server stopped)
        self.inbound_seqs: dict[str, int] = {}
        self.sessions_logged_on: set[str] = set()
        self.next_trade_id = 1
        self.last_trade_ticks: list[int | None] = [None] * len(self.config.instruments)
        self.pos = Positions(self.config)
        if self.risk is not None:
            self.risk.reset()

    # -- plumbing ---------------------------------------------------------------------

    def _emit(self, out: list[dict], event: dict) -> None:
        if self.journal is not None and not self.replaying:
            event = self.journal.append(event)
        out.append(event)

    def flush(self) -> None:
        if self.journal is not None:
            self.journal.flush()

    def process(self, command: dict) -> list[dict]:
        """Run one command; returns the command record followed by the events it caused."""
        out: list[dict] = []
        kind = command["type"]
        if not self._rules_journaled and kind != ev.STATUS_REQUESTED:
            self._journal_rules(command.get("ts"))   # journaled, not returned: the command record comes first
        handler = self._handlers.get(kind)
        if handler is None:
            raise ValueError(f"not a command type: {kind!r}")
        self._track_ts(command)
        if self.session_accounts and (kind == ev.ORDER_RECEIVED or kind == ev.REPLACE_REQUESTED):
            command = self._stamp_entitlement(command)
        if kind != ev.STATUS_REQUESTED:   # a status query changes nothing: not journaled
            self._emit(out, command)
        handler(self, command, out)
        if len(self._finished) > self._evict_above:
            self._let_go_of_finished()
        return out

    def _stamp_entitlement(self, command: dict) -> dict:
        """A new order naming an account its session may not trade carries the session's
        accounts in force, ``account_not_permitted``, on its journaled command record: the
        refusal is then decided by the record, so a replay under a config whose ``accounts``
        changed since still refuses it, and accepts what was accepted (``_validate_new``)."""
        entitled = self.session_accounts.get(command.get("session"))
        if entitled is None:
            return command
        if command["type"] == ev.REPLACE_REQUESTED:
            # a replace acts on the order's account (it cannot change it): one the session was
            # entitled to when the order was entered may have been taken off its list since.
            # A cancel is never refused for this (taking an order off the market lowers risk).
            order = self._find(command)
            account = order.account if order is not None else None
        else:
            account = command.get("account")
        if not account or account in entitled:
            return command
        return {**command, "account_not_permitted": ",".join(sorted(entitled))}

    # -- finished orders leave memory ---------------------------------------------------

    def _finished_order(self, order: Order) -> None:
        self._finished.append(order.order_id)

    def _let_go_of_finished(self) -> None:
        """The oldest finished orders past the bound leave memory (``process`` calls this once
        the bound is passed by a chunk, see ``_evict_above``); their ClOrdIDs and OrderID, each
        with its session, stay known as fingerprints (a 64-bit hash: a false duplicate is
        ~n / 2**64 per order), added in one compiled call."""
        keep = self.config.finished_orders_in_memory
        gone: list[int] = []
        while len(self._finished) > keep:
            order = self.orders.pop(self._finished.popleft(), None)
            if order is None:
                continue
            for cl_ord_id in (order.cl_ord_id, *(order.aliases or ())):
                key = (order.session, cl_ord_id)
                if self.by_cl_ord_id.get(key) == order.order_id:
                    del self.by_cl_ord_id[key]
                    gone.append(hash(key))
            # its OrderID too, tied to its session: another session naming it stays "unknown"
            gone.append(hash((order.session, order.order_id)))
        self._gone_ids.add_many(gone)

    def _cl_ord_id_used(self, key: tuple) -> bool:
        return key in self.by_cl_ord_id or (self._gone_ids.count > 0 and hash(key) in self._gone_ids)

    def _let_go(self, cmd: dict, cl_key: str) -> bool:
        """The command names an order that finished and left memory (by OrderID or ClOrdID)."""
        gone = self._gone_ids
        if gone.count == 0:
            return False
        order_id = cmd.get("order_id")
        if type(order_id) is int and order_id not in self.orders and hash((cmd.get("session"), order_id)) in gone:
            return True
        return hash((cmd.get("session"), cmd.get(cl_key))) in gone

    def record(self, event: dict) -> dict:
        """Journal an event that changes no engine state (session logon/logout/rejects)."""
        if self.journal is not None and not self.replaying:
            self._track_ts(event)
            event = self.journal.append(event)
        kind = event.get("type")
        if kind in _SESSION_RECORDS:      # as the replay would see it (a reset after the replay)
            self._session_record(kind, event.get("session"))
        return event

    def journal_rules(self) -> None:
        """At start-up, after the replay: journal the rules that decide from now on (see
        ``_journal_rules``) and flush, so the read side (limits in effect) follows them too."""
        if not self._rules_journaled:
            self._journal_rules(None)
            self.flush()

    def _journal_rules(self, ts: object) -> dict | None:
        """Before the first command this engine decides: say in the journal which rules decide
        it (RULES_VERSION), unless the journal says so already. Returns the record journaled."""
        record = None
        if self.rules != RULES_VERSION or not self._rules_seen:
            if self.journal is not None:
                record = self.journal.append({
                    "type": ev.ENGINE_RULES, "ts": ts if type(ts) is int else time.time_ns(),
                    "version": RULES_VERSION, "text": f"commands from here on are decided by engine rules {RULES_VERSION}"})
            self._set_rules(RULES_VERSION)
        self._rules_journaled = True
        return record

    def _set_rules(self, version: int) -> None:
        if version != self.rules:
            self.rules = version
            if self.risk is not None and hasattr(self.risk, "rules_changed"):
                self.risk.rules_changed()

    def _session_record(self, kind: str, session: str | None) -> None:
        """A FIX session's logon, logout or sequence reset, replayed (see ``inbound_seqs``)."""
        if kind == ev.SESSION_LOGON:
            self.sessions_logged_on.add(session)
        elif kind == ev.SESSION_LOGOUT:
            self.sessions_logged_on.discard(session)
        else:                       # its numbering starts again: earlier MsgSeqNums are of the old one
            self.inbound_seqs.pop(session, None)

    def apply_limits_loaded(self, record: dict) -> None:
        """The configuration's limits a ``limits_loaded`` record journaled (audit/
        config_limits.py) are in force from it on: the risk engine takes them beneath the
        desk's changes (``RiskEngine.apply_baseline``), in a replay where it was journaled."""
        self.limits_loaded = record
        if self.risk is not None and hasattr(self.risk, "apply_baseline"):
            self.risk.apply_baseline(orjson.loads(record["new_value"]))

    def _track_ts(self, record: dict) -> None:
        """``last_ts`` follows the records journaled; one earlier than it: the clock went back."""
        ts = record.get("ts")
        if type(ts) is int:
            if ts >= self.last_ts:
                self.last_ts = ts
            else:
                self._clock_went_back(record, ts)

    def _clock_went_back(self, record: dict, ts: int) -> None:
        """The wall clock stepped back (an NTP step, a VM migration): the record keeps the time
        the clock gave (holding journal time at the last one would freeze it for as long as the
        step, an hour for a time-zone mistake, and skew every rate window meanwhile); the
        journal's seq stays the order of record. Told rather than hidden: counted, with the
        largest step, on /health and /metrics, and logged at most once a minute, since clock
        traceability is a regulatory duty (e.g. MiFID II RTS 25) a compliance officer checks."""
        step = self.last_ts - ts
        self.clock_steps_back += 1
        if step > self.clock_largest_step_back_ns:
            self.clock_largest_step_back_ns = step
        self.last_ts = ts
        now = time.monotonic()
        if now - self._clock_warned_at >= CLOCK_WARN_EVERY_S:
            self._clock_warned_at = now
            log.warning("wall clock stepped back %.3f ms (a %s at seq order after a later time); "
                        "%d such steps since the start: check the host's clock synchronisation",
                        step / 1e6, record.get("type"), self.clock_steps_back)

    def rebuild_from_journal(self) -> int:
        """Drop all state and fold the journal again (after a failed journal write)."""
        from ..audit.journal import iter_records
        self._init_state()
        return self.replay(iter_records(self.journal.directory))

    def replay(self, records: Iterable[dict]) -> int:
        """Fold the journal's command records into state without journaling again. The events
        each command makes now are compared with those journaled then (``replay_check``: a
        configuration or code change that alters past decisions shows there)."""
        self.replaying = True
        count = 0
        check = self.replay_check = ReplayCheck()
        self._set_rules(RULES_BEFORE_VERSIONING)   # until the journal's engine_rules record says otherwise
        self._rules_seen = False
        try:
            for record in records:
                kind = record["type"]
                ts = record.get("ts")
                if type(ts) is int:
                    self.last_ts = ts
                if kind in ev.COMMAND_TYPES:
                    if self.day_first_ts is None:
                        self.day_first_ts = ts      # (an end of day's own handler sets it back)
                    msg_seq = record.get("msg_seq_num")
                    if msg_seq is not None:
                        self.inbound_seqs[record["session"]] = msg_seq
                    command = {k: v for k, v in record.items() if k not in JOURNAL_KEYS}
                    made: list[dict] = []
                    self._handlers[kind](self, command, made)
                    check.command(record.get("seq", 0), made)
                    if len(self._finished) > self._evict_above:
                        self._let_go_of_finished()     # as process() does, so replay ends equal
                    count += 1
                else:
                    if kind in _SESSION_RECORDS:
                        self._session_record(kind, record.get("session"))
                    elif kind == ev.LIMITS_LOADED:
                        self.apply_limits_loaded(record)
                    elif kind == ev.ENGINE_RULES:
                        self._set_rules(int(record.get("version") or RULES_BEFORE_VERSIONING))
                        self._rules_seen = True
                    check.record(record)
            check.finish()
        finally:
            self.replaying = False
        # the next command is decided by this version's rules: journaled before it (process)
        self._rules_journaled = False
        return count

    # -- reports ----------------------------------------------------------------------

    def _exec_id(self) -> str:
        exec_id = self.next_exec_id
        self.next_exec_id += 1
        return str(exec_id)

    def _report(self, order: Order, kind: str, exec_type: str, ts: int, **extra: object) -> dict:
        inst = order.instrument
        event = {
            "type": kind, "ts": ts, "order_id": order.order_id, "cl_ord_id": order.cl_ord_id,
            "orig_cl_ord_id": order.orig_cl_ord_id, "session": order.session, "account": order.account,
            "symbol": inst.symbol, "side": order.side, "ord_type": order.ord_type, "tif": order.tif,
            "price": order.price_text, "qty": order.qty, "exec_id": self._exec_id(),
            "exec_type": exec_type, "ord_status": order.status, "cum_qty": order.cum_qty,
            "leaves_qty": order.leaves_qty,
            "avg_px": format_avg_px(order.notional_ticks, order.cum_qty, inst.tick_size) if order.cum_qty else "0",
        }
        if extra:
            event.update(extra)
        return event

    def _reject_new(self, cmd: dict, rej: Rejection, out: list[dict], current: Order | None = None) -> None:
        """An order rejected; ``current``: the working order of the same ClOrdID (a duplicate),
        whose state the reject carries (see ``_on_duplicate``)."""
        event = {
            "type": ev.ORDER_REJECTED, "ts": cmd["ts"], "order_id": None, "cl_ord_id": cmd.get("cl_ord_id"),
            "session": cmd.get("session"), "account": cmd.get("account"), "symbol": cmd.get("symbol"),
            "side": cmd.get("side"), "ord_type": cmd.get("ord_type"), "tif": cmd.get("tif"),
            "price": cmd.get("price"), "qty": cmd.get("qty"), "exec_id": self._exec_id(), "exec_type": "8",
            "ord_status": REJECTED, "cum_qty": 0, "leaves_qty": 0, "avg_px": "0", "text": rej.text,
            "rej_reason": rej.reason, "rule": rej.rule, "limit_value": rej.limit_value,
            "actual_value": rej.actual_value,
        }
        if current is not None:
            event["ord_status"], event["cum_qty"], event["leaves_qty"] = current.status, current.cum_qty, current.leaves_qty
            if current.cum_qty:
                event["avg_px"] = format_avg_px(current.notional_ticks, current.cum_qty, current.instrument.tick_size)
        self._emit(out, event)

    def _cancel_reject(self, cmd: dict, response_to: str, reason: int, text: str, out: list[dict],
                       order: Order | None = None, rej: Rejection | None = None) -> None:
        event = {
            "type": ev.CANCEL_REJECTED if response_to == "1" else ev.REPLACE_REJECTED, "ts": cmd["ts"],
            "order_id": order.order_id if order else None, "cl_ord_id": cmd.get("cl_ord_id"),
            "orig_cl_ord_id": cmd.get("orig_cl_ord_id"), "session": cmd.get("session"),
            "account": order.account if order else cmd.get("account"),
            "symbol": order.instrument.symbol if order else cmd.get("symbol"),
            "ord_status": order.status if order else REJECTED, "rej_reason": int(reason), "text": text,
            "response_to": response_to,
        }
        if rej is not None:
            event["rule"], event["limit_value"], event["actual_value"] = rej.rule, rej.limit_value, rej.actual_value
        self._emit(out, event)

    # -- validation -------------------------------------------------------------------

    def _validate_new(self, cmd: dict) -> tuple[Instrument, int, int]:
        """Reference-data checks shared by new orders and replaces; returns (inst, acct, price)."""
        symbol = cmd.get("symbol")
        inst = self.instruments.get(symbol) if symbol else None
        if inst is None:
            raise Rejection(OrdRejReason.UNKNOWN_SYMBOL, f"Unknown symbol {symbol!r}", "unknown_symbol")
        account = cmd.get("account")
        account_idx = self.account_index.get(account) if account else None
        # before "unknown account": a restricted session must not learn which other accounts exist.
        # Decided by the stamp ``process`` puts on the command record (not by the config, which
        # may have changed by the time the record is replayed). Replaces carry none: their
        # account is the order's, checked when it was entered.
        not_permitted = cmd.get("account_not_permitted")
        if not_permitted is not None and account:
            raise Rejection(OrdRejReason.BROKER_OPTION,
                            f"Account {account} is not permitted on session {cmd.get('session')}",
                            "account_entitlement", not_permitted, account)
        if account_idx is None:
            raise Rejection(OrdRejReason.UNKNOWN_ACCOUNT, f"Unknown account {account!r}", "unknown_account")
        if cmd.get("side") not in SIDE_CODES:
            raise Rejection(OrdRejReason.UNSUPPORTED_ORDER_CHARACTERISTIC, f"Unsupported side {cmd.get('side')!r}", "bad_side")
        ord_type = cmd.get("ord_type")
        if ord_type not in ORD_TYPE_CODES:
            raise Rejection(OrdRejReason.UNSUPPORTED_ORDER_CHARACTERISTIC, f"Unsupported order type {ord_type!r}", "bad_ord_type")
        if cmd.get("tif") not in TIF_CODES:
            raise Rejection(OrdRejReason.UNSUPPORTED_ORDER_CHARACTERISTIC, f"Unsupported time in force {cmd.get('tif')!r}", "bad_tif")
        qty = cmd.get("qty")
        if qty is None:
            raise Rejection(OrdRejReason.INCORRECT_QUANTITY, "Order quantity (38) missing, not a whole number, "
                            "or out of range", "bad_qty")
        if not isinstance(qty, int) or qty <= 0:
            raise Rejection(OrdRejReason.INCORRECT_QUANTITY, f"Order quantity must be a positive whole number, got {qty!r}",
                            "bad_qty")
        if qty > MAX_QTY:
            raise Rejection(OrdRejReason.INCORRECT_QUANTITY, f"Order quantity {qty} is out of range", "bad_qty")
        if qty % inst.lot_size:
            raise Rejection(OrdRejReason.INCORRECT_QUANTITY, f"Order quantity {qty} is not a multiple of the lot size "
                            f"{inst.lot_size}", "lot_size", str(inst.lot_size), str(qty))
        price_ticks = 0
        if ord_type == "2":
            price = cmd.get("price")
            if price is None:
                raise Rejection(OrdRejReason.OTHER, "Limit order without a price", "missing_price")
            memo = self._ticks_memo[inst.index]
            price_ticks = memo.get(price) if type(price) is str else None
            if price_ticks is None:
                try:
                    price_ticks = inst.to_ticks(price)
                except PriceError as exc:
                    reason = OrdRejReason.OTHER   # FIX 4.4 has no "invalid price increment" value
                    raise Rejection(reason, f"Invalid price: {exc}", "price_grid", str(inst.tick_size),
                                    str(price)) from None
                if type(price) is str:
                    if len(memo) >= TICKS_MEMO_SIZE:
                        memo.clear()
                    memo[price] = price_ticks
            if price_ticks <= 0:
                raise Rejection(OrdRejReason.OTHER, f"Price must be positive, got {price}", "bad_price")
            if qty * price_ticks * self.pos.mult[inst.index] > ORDER_VALUE_CAP:
                raise Rejection(OrdRejReason.ORDER_EXCEEDS_LIMIT, f"Order value {qty} x {price} is out of range",
                                "order_value_cap", self.pos.money_text(ORDER_VALUE_CAP),
                                self.pos.money_text(qty * price_ticks * self.pos.mult[inst.index]))
        elif cmd.get("tif") in ("0", "1"):
            raise Rejection(OrdRejReason.UNSUPPORTED_ORDER_CHARACTERISTIC, "A market order must be IOC or FOK here (it never rests)",
                            "market_tif")
        return inst, account_idx, price_ticks

    # -- commands ---------------------------------------------------------------------

    def _on_new_order(self, cmd: dict, out: list[dict]) -> None:
        session = cmd.get("session")
        cl_ord_id = cmd.get("cl_ord_id")
        key = (session, cl_ord_id)
        try:
            if not cl_ord_id:
                raise Rejection(OrdRejReason.OTHER, "Missing ClOrdID", "missing_cl_ord_id")
            if self._cl_ord_id_used(key):
                self._on_duplicate(cmd, key, out)
                return
            inst, account_idx, price_ticks = self._validate_new(cmd)
        except Rejection as rej:
            if self.risk is not None:   # still counted for the rate window; over the rate, that is the answer
                rej = self.risk.on_message(cmd) or rej
            self._reject_new(cmd, rej, out)
            return
        if self.risk is not None:
            try:   # rate window + every check, one numba call
                self.risk.new_order(cmd, inst, account_idx, price_ticks)
            except Rejection as rej:
                self._reject_new(cmd, rej, out)
                return
        order_id = self.next_order_id
        self.next_order_id += 1
        order = Order(order_id, cmd["cl_ord_id"], session, cmd["account"], account_idx, inst, cmd["side"],
                      cmd["ord_type"], cmd["tif"], price_ticks, cmd.get("price") if cmd["ord_type"] == "2" else None,
                      cmd["qty"], cmd["ts"])
        self.orders[order_id] = order
        self.by_cl_ord_id[key] = order_id
        self._emit(out, self._report(order, ev.ORDER_ACCEPTED, "0", cmd["ts"]))
        self.pos.open_add(order)
        book = self.books[inst.index]
        status, n_fills, n_stp, rested, killed = book.add(
            order_id, account_idx, SIDE_CODES[order.side], ORD_TYPE_CODES[order.ord_type], TIF_CODES[order.tif],
            price_ticks, order.qty, cmd["ts"], self.account_stp[account_idx])
        if status != BOOK_OK:   # validated above, so this is a bug worth shouting about
            raise RuntimeError(f"book refused validated order {order_id}: status {status}")
        self._after_match(order, book, n_fills, n_stp, killed, cmd["ts"], out)

    def _on_duplicate(self, cmd: dict, key: tuple, out: list[dict]) -> None:
        """A NewOrderSingle whose ClOrdID the session used today (FIX 4.4 Vol 4, D29 "Poss
        resend and duplicate ClOrdID"). Resent with PossResend=Y and the order still held: the
        same order sent again, answered with its status (ExecType I), nothing new. Otherwise a
        reject, OrdRejReason 6, whose OrdStatus, LeavesQty, CumQty and AvgPx are the existing
        order's (the spec's combination: the second order rejected, the first one's state told),
        so a client keyed on ClOrdID does not take its working order for a dead one."""
        oid = self.by_cl_ord_id.get(key)
        existing = self.orders.get(oid) if oid is not None else None
        if self.risk is not None:
            rate = self.risk.on_message(cmd)    # counted for the rate window either way
        else:
            rate = None
        if self.rules < 2:
            existing = None          # rules 1: a plain reject (39=8 151=0)
        if existing is not None and cmd.get("poss_resend") == "Y":
            if not self.replaying:              # an answer for the client only: nothing journaled
                report = self._report(existing, "order_status", "I", cmd["ts"])
                report["exec_id"] = "0"          # status reports are not executions
                self.next_exec_id -= 1
                out.append(report)
            return
        rej = rate or Rejection(OrdRejReason.DUPLICATE_ORDER, f"Duplicate ClOrdID {cmd['cl_ord_id']!r}",
                                "duplicate_cl_ord_id")
        self._reject_new(cmd, rej, out, existing if rate is None else None)

    def _after_match(self, order: Order, book: object, n_fills: int, n_stp: int, killed: int, ts: int,
                     out: list[dict]) -> None:
        """Turn the book's fills and cancels into reports for both sides."""
        inst = order.instrument
        for resting_id, _acct, price, qty, _leaves in book.fills(n_fills) if n_fills else ():
            trade_id = self.next_trade_id
            self.next_trade_id += 1
            px_text = inst.format_price(price)
            self.last_trade_ticks[inst.index] = price
            self.pos.trade_price(inst.index, price)
            for party, contra, liquidity in ((self.orders[resting_id], order.order_id, "P"),
                                             (order, resting_id, "A")):
                party.cum_qty += qty
                party.leaves_qty -= qty
                party.notional_ticks += price * qty
                if party.leaves_qty == 0:
                    party.status = FILLED
                    self._finished_order(party)
                else:
                    party.status = PARTIALLY_FILLED
                kind = ev.ORDER_FILLED if party.leaves_qty == 0 else ev.ORDER_PARTIALLY_FILLED
                self.pos.fill(party, qty, price)
                self._emit(out, self._report(party, kind, "F", ts, last_px=px_text, last_qty=qty,
                                             trade_id=trade_id, contra_order_id=contra, liquidity=liquidity))
        for resting_id, qty in book.stp_cancels(n_stp) if n_stp else ():
            resting = self.orders[resting_id]
            self._close(resting, CANCELED, ev.ORDER_CANCELED, "4", ts, out,
                        text="Self-trade prevention: canceled resting order", reason_rule="stp")
        if killed:
            # The book says why the incoming order stopped: self-trade prevention (cancel_incoming /
            # cancel_both met a resting order of the same account; for a FOK, its fill check stopped
            # there, so the whole FOK is killed) or, for IOC/FOK/market, no more crossing quantity.
            # A DAY/GTC limit rests its remainder: a kill of one is always STP.
            ioc_like = order.tif in ("3", "4") or order.ord_type == "1"
            if book.killed_by_stp or not ioc_like:
                # Canceled (150=4, 39=4), not Expired, also for IOC/FOK: the order did not run out
                # its time in force, the firm's STP rule canceled it, as it does a resting order;
                # rule "stp" tells compliance why.
                self._close(order, CANCELED, ev.ORDER_CANCELED, "4", ts, out,
                            text="Self-trade prevention: canceled incoming order", reason_rule="stp")
            elif order.tif in ("3", "4"):
                self._close(order, EXPIRED, ev.ORDER_EXPIRED, "C", ts, out,
                            text="Unfilled quantity canceled (IOC/FOK/market)")
            else:   # a market order of another time in force
                self._close(order, CANCELED, ev.ORDER_CANCELED, "4", ts, out,
                            text="Unfilled quantity canceled (IOC/FOK/market)")

    def _close(self, order: Order, status: str, kind: str, exec_type: str, ts: int, out: list[dict],
               text: str | None = None, reason_rule: str | None = None, **extra: object) -> None:
        """Order leaves the market with LeavesQty 0 (canceled, expired)."""
        self.pos.open_remove(order)
        order.leaves_qty = 0
        order.status = status
        self._finished_order(order)
        fields = dict(extra)
        if text:
            fields["text"] = text
        if reason_rule:
            fields["rule"] = reason_rule
        self._emit(out, self._report(order, kind, exec_type, ts, **fields))

    def _find(self, cmd: dict) -> Order | None:
        order_id = cmd.get("order_id")
        if order_id is not None:
            order = self.orders.get(order_id)
            if order is not None and order.session == cmd.get("session"):
                return order
            if order is not None and cmd.get("session") is None:   # risk desk / internal
                return order
        oid = self.by_cl_ord_id.get((cmd.get("session"), cmd.get("orig_cl_ord_id")))
        return self.orders.get(oid) if oid is not None else None

    def _target_of(self, cmd: dict, response_to: str, out: list[dict]) -> Order | None:
        """The open order a cancel ("1") or replace ("2") acts on; None once rejected."""
        order = self._find(cmd)
        if order is None:
            if self._let_go(cmd, "orig_cl_ord_id"):
                verb = "cancel" if response_to == "1" else "replace"
                self._cancel_reject(cmd, response_to, CxlRejReason.TOO_LATE_TO_CANCEL,
                                    f"Too late to {verb}: order finished earlier today", out)
            else:
                self._cancel_reject(cmd, response_to, CxlRejReason.UNKNOWN_ORDER, "Unknown order", out)
            return None
        cl_ord_id = cmd.get("cl_ord_id")
        if not cl_ord_id:
            self._cancel_reject(cmd, response_to, CxlRejReason.OTHER, "Missing ClOrdID", out, order)
            return None
        if self._cl_ord_id_used((cmd.get("session"), cl_ord_id)):
            self._cancel_reject(cmd, response_to, CxlRejReason.DUPLICATE_CLORDID,
                                f"Duplicate ClOrdID {cl_ord_id!r}", out, order)
            return None
        if not order.is_open:
            verb = "cancel" if response_to == "1" else "replace"
            self._cancel_reject(cmd, response_to, CxlRejReason.TOO_LATE_TO_CANCEL,
                                f"Too late to {verb}: order is {_STATUS_NAMES[order.status]}", out, order)
            return None
        return order

    def _on_cancel(self, cmd: dict, out: list[dict]) -> None:
        if self.risk is not None:
            self.risk.on_message(cmd)      # counted for the rate window; a cancel always passes
        order = self._target_of(cmd, "1", out)
        if order is None:
            return
        symbol, side = cmd.get("symbol"), cmd.get("side")
        if self.rules >= 2 and ((symbol is not None and symbol != order.instrument.symbol)
                                or (side is not None and side != order.side)):
            # FIX: the request's Symbol and Side must match the order's; a mismatch means the
            # client's OrigClOrdID bookkeeping went wrong, so nothing is canceled (as a replace)
            self._cancel_reject(cmd, "1", CxlRejReason.OTHER,
                                f"Cancel request Symbol {symbol} / Side {side} do not match the order's "
                                f"({order.instrument.symbol} / {order.side})", out, order)
            return
        status, _qty = self.books[order.instrument.index].cancel(order.order_id)
        if status != BOOK_OK:
            raise RuntimeError(f"book lost open order {order.order_id}")
        self.by_cl_ord_id[(cmd.get("session"), cmd.get("cl_ord_id"))] = order.order_id
        order.rename(cmd["cl_ord_id"])
        self._close(order, CANCELED, ev.ORDER_CANCELED, "4", cmd["ts"], out)

    def _on_replace(self, cmd: dict, out: list[dict]) -> None:
        rate = self.risk.on_message(cmd) if self.risk is not None else None
        order = self._target_of(cmd, "2", out)
        if order is None:
            return
        session = cmd.get("session")
        if rate is not None:
            self._cancel_reject(cmd, "2", CXL_BROKER_OPTION, rate.text, out, order, rate)
            return
        not_permitted = cmd.get("account_not_permitted")   # decided by the journaled stamp, as for new orders
        if not_permitted is not None:
            rej = Rejection(CXL_BROKER_OPTION, f"Account {order.account} is not permitted on session {session}",
                            "account_entitlement", not_permitted, order.account)
            self._cancel_reject(cmd, "2", CXL_BROKER_OPTION, rej.text, out, order, rej)
            return
        # the replacement keeps what it does not say otherwise; side, symbol and account are fixed
        merged = {"symbol": order.instrument.symbol, "account": order.account, "side": order.side,
                  "ord_type": cmd.get("ord_type") or order.ord_type, "tif": cmd.get("tif") or order.tif,
                  "qty": cmd.get("qty") if cmd.get("qty") is not None else order.qty, "price": cmd.get("price") if cmd.get("price") is not None else order.price_text}
        if cmd.get("side") not in (None, order.side) or cmd.get("symbol") not in (None, order.instrument.symbol):
            self._cancel_reject(cmd, "2", CxlRejReason.OTHER, "Replace cannot change side or symbol", out, order)
            return
        if merged["ord_type"] != order.ord_type or merged["tif"] != order.tif:
            self._cancel_reject(cmd, "2", CxlRejReason.OTHER, "Replace cannot change order type or time in force",
                                out, order)
            return
        if merged["ord_type"] != "2":
            self._cancel_reject(cmd, "2", CxlRejReason.OTHER, "Only resting limit orders can be replaced", out, order)
            return
        try:
            inst, account_idx, price_ticks = self._validate_new(merged)
        except Rejection as rej:
            self._cancel_reject(cmd, "2", CxlRejReason.OTHER, rej.text, out, order, rej)
            return
        if self.risk is not None:
            try:
                self.risk.check_replace(order, price_ticks, merged["qty"], session)
            except Rejection as rej:
                self._cancel_reject(cmd, "2", CXL_BROKER_OPTION, rej.text, out, order, rej)
                return
        new_qty = merged["qty"]
        book = self.books[inst.index]
        self.by_cl_ord_id[(session, cmd["cl_ord_id"])] = order.order_id
        order.rename(cmd["cl_ord_id"])
        ts = cmd["ts"]
        if new_qty <= order.cum_qty:
            # FIX: replacing to a quantity at or below CumQty leaves nothing working: the order is Filled
            book.cancel(order.order_id)
            self.pos.open_remove(order)
            order.qty = order.cum_qty
            order.leaves_qty = 0
            order.status = FILLED
            self._finished_order(order)
            self._emit(out, self._report(order, ev.ORDER_REPLACED, "5", ts,
                                         text=f"OrderQty {new_qty} at or below CumQty: order is complete"))
            return
        self.pos.open_remove(order)
        order.qty = new_qty
        order.leaves_qty = new_qty - order.cum_qty
        order.price_ticks = price_ticks
        order.price_text = merged["price"]
        status, n_fills, n_stp, _rested, killed = book.replace(order.order_id, price_ticks, order.leaves_qty, ts,
                                                                self.account_stp[account_idx])
        if status != BOOK_OK:
            raise RuntimeError(f"book refused replace of open order {order.order_id}: status {status}")
        self.pos.open_add(order)
        self._emit(out, self._report(order, ev.ORDER_REPLACED, "5", ts))
        self._after_match(order, book, n_fills, n_stp, killed, ts, out)

    def _on_status(self, cmd: dict, out: list[dict]) -> None:
        order = self._find(cmd)
        if order is None:
            oid = self.by_cl_ord_id.get((cmd.get("session"), cmd.get("cl_ord_id")))
            order = self.orders.get(oid) if oid is not None else None
        if order is None:
            text = "Order finished earlier today and is no longer held in memory (see the audit trail)" \
                if self._let_go(cmd, "cl_ord_id") else "Unknown order"
            out.append({"type": "order_status", "ts": cmd["ts"], "order_id": None, "cl_ord_id": cmd.get("cl_ord_id"),
                        "session": cmd.get("session"), "symbol": cmd.get("symbol"), "side": cmd.get("side"),
                        "exec_id": "0", "exec_type": "I", "ord_status": REJECTED, "cum_qty": 0, "leaves_qty": 0,
                        "avg_px": "0", "qty": 0, "rej_reason": int(OrdRejReason.UNKNOWN_ORDER),
                        "text": text})
            return
        report = self._report(order, "order_status", "I", cmd["ts"])
        report["exec_id"] = "0"          # status reports are not executions
        self.next_exec_id -= 1
        out.append(report)

    def _on_mass_cancel(self, cmd: dict, out: list[dict]) -> None:
        if self.risk is not None:
            self.risk.on_message(cmd)
        symbol = cmd.get("symbol")
        side = cmd.get("side")
        session = cmd.get("session")
        account = cmd.get("account")
        request_type = cmd.get("mass_cancel_type", "7")
        if request_type not in ("1", "7"):
            # underlying, product, CFICode, SecurityType, trading session: scopes we cannot apply,
            # so refuse (532=0 "not supported") rather than cancel every order of the session
            self._emit(out, {"type": ev.MASS_CANCEL_DONE, "ts": cmd["ts"], "session": session,
                             "cl_ord_id": cmd.get("cl_ord_id"), "symbol": symbol, "mass_cancel_type": request_type,
                             "mass_cancel_response": "0", "affected": 0, "rej_reason": 0,
                             "text": f"Mass cancel type {request_type!r} is not supported (only 1 and 7)"})
            return
        if request_type == "1" and (symbol is None or symbol not in self.instruments):
            self._emit(out, {"type": ev.MASS_CANCEL_DONE, "ts": cmd["ts"], "session": session,
                             "cl_ord_id": cmd.get("cl_ord_id"), "symbol": symbol, "mass_cancel_type": request_type,
                             "mass_cancel_response": "0", "affected": 0, "rej_reason": 1,
                             "text": f"Unknown symbol {symbol!r}"})
            return
        victims = [o for o in self.orders.values() if o.is_open
                   and (session is None or o.session == session)
                   and (account is None or o.account == account)
                   and (request_type != "1" or o.instrument.symbol == symbol)
                   and (side is None or o.side == side or (side == "2" and SIDE_CODES[o.side] == SELL))]
        self.cancel_orders(victims, cmd["ts"], out, "Mass cancel")
        self._emit(out, {"type": ev.MASS_CANCEL_DONE, "ts": cmd["ts"], "session": session,
                         "cl_ord_id": cmd.get("cl_ord_id"), "symbol": symbol, "mass_cancel_type": request_type,
                         "mass_cancel_response": request_type, "affected": len(victims)})

    def _on_clock(self, cmd: dict, out: list[dict]) -> None:
        if cmd.get("end_of_day"):
            for order in [o for o in self.orders.values() if o.is_open and o.tif == "0"]:
                self.books[order.instrument.index].cancel(order.order_id)
                self._close(order, EXPIRED, ev.ORDER_EXPIRED, "C", cmd["ts"], out, text="Day order expired")
            self.pos.end_of_day()     # the credit limit counts fills of the day
            self._forget_finished_orders()
            self.day_first_ts = None
            self.day_rolled_ts = cmd["ts"]
        if self.risk is not None:
            self.risk.on_clock(cmd, out)

    def _forget_finished_orders(self) -> None:
        """A new trading day: finished orders leave memory (the journal and DuckDB keep them).

        ClOrdIDs are unique per session and day, so those of finished orders may be used again;
        open GTC orders stay, with every ClOrdID of their replace chain. Without this the
        engine's memory would grow with every order ever sent."""
        self.orders = {oid: o for oid, o in self.orders.items() if o.is_open}
        self.by_cl_ord_id = {key: oid for key, oid in self.by_cl_ord_id.items() if oid in self.orders}
        self._finished.clear()
        self._gone_ids = FingerprintSet(self.config.finished_ids_capacity)

    def _on_control(self, cmd: dict, out: list[dict]) -> None:
        if self.risk is None:
            self._emit(out, {"type": ev.LIMIT_CHANGE_REJECTED, "ts": cmd["ts"], "user": cmd.get("user"),
                             "approver": cmd.get("approver"), "reason": cmd.get("reason"), "scope": cmd.get("scope"),
                             "request_id": cmd.get("request_id"), "text": "Risk controls are not configured"})
            return
        self.risk.on_control(cmd, out)

    def cancel_orders(self, orders: Iterable[Order], ts: int, out: list[dict], text: str,
                      rule: str | None = None) -> int:
        """Cancel open orders now (mass cancel, kill switch); each owner gets its Canceled report."""
        count = 0
        for order in orders:
            if not order.is_open:
                continue
            status, _qty = self.books[order.instrument.index].cancel(order.order_id)
            if status != BOOK_OK:
                raise RuntimeError(f"book lost open order {order.order_id}")
            self._close(order, CANCELED, ev.ORDER_CANCELED, "4", ts, out, text=text, reason_rule=rule)
            count += 1
        return count

    _handlers = {
        ev.ORDER_RECEIVED: _on_new_order,
        ev.CANCEL_REQUESTED: _on_cancel,
        ev.REPLACE_REQUESTED: _on_replace,
        ev.STATUS_REQUESTED: _on_status,
        ev.MASS_CANCEL_REQUESTED: _on_mass_cancel,
        ev.CLOCK: _on_clock,
        ev.LIMIT_CHANGE_REQUESTED: _on_control,
        ev.KILL_SWITCH_REQUESTED: _on_control,
    }

    # -- read side (HTTP API, tests) ---------------------------------------------------

    def positions(self, account: str | None = None) -> list[dict]:
        """Per account and instrument: filled position, bought/sold qty and notional, resting
        buy/sell qty and notional, worst-case long/short. Money is decimal text."""
        return self.pos.rows(account)

    def exposures(self, account: str | None = None) -> list[dict]:
        """Per account: resting notional, filled notional of the day, gross exposure, credit limit."""
        return self.pos.exposure_rows(account)

    def next_due_ns(self) -> int | None:
        """When the next CLOCK command is due (a temporary limit expires), or None."""
        return self.risk.next_due_ns() if self.risk is not None else None

    def open_orders(self, account: str | None = None) -> list[Order]:
        return [o for o in self.orders.values() if o.is_open and (account is None or o.account == account)]

    def book_depth(self, symbol: str, levels: int = 5) -> dict:
        inst = self.instruments[symbol]
        bids, asks = self.books[inst.index].depth(levels)
        fmt = inst.format_price
        return {"symbol": symbol,
                "bids": [{"price": fmt(p), "qty": q, "orders": n} for p, q, n in bids],
                "asks": [{"price": fmt(p), "qty": q, "orders": n} for p, q, n in asks]}


_STATUS_NAMES = {NEW: "New", PARTIALLY_FILLED: "PartiallyFilled", FILLED: "Filled", CANCELED: "Canceled",
                 REJECTED: "Rejected", EXPIRED: "Expired"}
