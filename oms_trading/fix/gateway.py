"""FIX application messages <-> engine commands and events; batching and routing.

The gateway is the engine's only caller on the FIX side. Commands from a batch of received
bytes (or an HTTP request) are run through the engine one by one; at the end of the batch the
journal is flushed once, and only then are the resulting reports encoded and handed to the
sessions that own the orders (and to drop-copy sessions), each session writing its share with
one store write and one socket write.
"""
from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING, Callable

from ..audit import schema as ev
from ..audit.journal import JournalError, JournalRecordError
from ..engine.engine import Engine

if TYPE_CHECKING:
    from .session import FixSession

log = logging.getLogger(__name__)

from .reports import CANCEL_REJECT_TYPES, EXEC_REPORT_TYPES

# After a failed journal write, commands are refused outright for this long, then one is let
# through to try the journal again: trading resumes by itself when space returns, without a
# rebuild of the engine from the journal on every message while the disk stays full.
JOURNAL_RETRY_S = 0.5
COD_REASON = "cancel on disconnect"     # the reason of the mass cancel a session's disconnect runs


def _text(value: bytes | None) -> str | None:
    if value is None:
        return None
    return value.decode("latin-1")


_WORDS: dict[bytes, str] = {}
WORDS_CACHE_SIZE = 4096


def _word(value: bytes | None) -> str | None:
    """A short field that repeats (account, symbol, side, type, price) as one shared str, so
    the orders kept for the day hold one copy of each value; ClOrdIDs go through ``_text``."""
    if value is None:
        return None
    text = _WORDS.get(value)
    if text is None:
        text = value.decode("latin-1")
        if len(value) <= 32:          # hostile long values are not kept
            if len(_WORDS) >= WORDS_CACHE_SIZE:
                _WORDS.clear()
            _WORDS[value] = text
    return text


# a FIX Qty/Int value as a whole number: optional minus, ASCII digits, an optional fraction of
# zeros (FIX has no exponent, spaces, '+' or '_', which int()/float() would take)
_WHOLE = re.compile(rb"(-?)0*(\d{1,18})(?:\.(\d*))?")


def _int(value: bytes | None) -> int | None:
    """The whole number ``value`` spells, or None: not a plain decimal number, a fraction that is
    not all zeros (100.000000000000000001 too), or more than 18 digits (it could not be journaled
    as a 64-bit int; the engine answers None as an unusable quantity)."""
    if value is None:
        return None
    m = _WHOLE.fullmatch(value)
    if m is None:
        return None
    sign, digits, fraction = m.groups()
    if fraction and fraction.strip(b"0"):
        return None
    number = int(digits)
    return -number if sign else number


def _unavailable(why: str) -> str:
    return f"Not accepted: audit journal unavailable ({why})"


def _order_id(value: bytes | None) -> int | None:
    return _int(value) if value is not None and value.isdigit() else None


class Gateway:
    """Turns FIX messages into commands and events into FIX messages, in batches."""

    def __init__(self, engine: Engine, clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.engine = engine
        self.clock_ns = clock_ns
        self.sessions: dict[str, "FixSession"] = {}     # session key -> live session
        self.drop_copies: set[str] = set()               # keys of drop-copy sessions
        self._events: list[dict] = []
        self._asked: list[tuple[int, dict]] = []        # status requests of the batch: (index in _events, command)
        self._resent: set[int] = set()                  # ids of command records answered by a status (PossResend)
        # cancels on disconnect the journal could not take: session key -> the command, tried
        # again once the journal takes writes (``retry_cancel_on_disconnect``)
        self._cod_retry: dict[str, dict] = {}
        self._refusals = 0                              # orders refused unjournaled (their ExecIDs)
        self._dirty: set["FixSession"] = set()
        self.journal_failed: str | None = None
        self._journal_failed_at = 0.0
        self._journal_failed_seq = 0                    # the journal's written seq when it failed
        self.on_events: list[Callable[[list[dict]], None]] = []   # metrics, projection wake-up
        # reports for sessions that are not logged on, stored for their next logon's resend
        self.offline_sink: Callable[[dict[str, list[dict]]], None] | None = None
        # sessions whose offline reports the sink would drop (never logged on: no store to
        # resend from); the acceptor shares its set, so a first logon takes a key out of it
        self.no_offline: set[str] = set()
        self._offline: dict[str, list[dict]] = {}

    # -- inbound --------------------------------------------------------------------------

    def command_from_fix(self, session_key: str, default_account: str | None, msg) -> dict | None:
        """NewOrderSingle & co. as a command dict; None for a message type we don't route."""
        get = msg._d.get      # the parsed fields (first occurrence of each tag) without a method hop
        mt = msg.msg_type
        seq = msg.seq_num     # journaled: a restart knows which messages its commands came in
        ts = self.clock_ns()
        if mt == b"D":
            command = {"type": ev.ORDER_RECEIVED, "ts": ts, "session": session_key, "msg_seq_num": seq,
                       "cl_ord_id": _text(get(11)),
                       "account": _word(get(1)) or default_account, "symbol": _word(get(55)), "side": _word(get(54)),
                       "ord_type": _word(get(40)), "tif": _word(get(59)) or "0", "price": _word(get(44)),
                       "qty": _int(get(38))}
            if get(97) == b"Y":   # PossResend: maybe an order already taken (the engine's _on_duplicate)
                command["poss_resend"] = "Y"
            return command
        if mt == b"F":
            return {"type": ev.CANCEL_REQUESTED, "ts": ts, "session": session_key, "msg_seq_num": seq,
                    "cl_ord_id": _text(get(11)),
                    "orig_cl_ord_id": _text(get(41)), "order_id": _order_id(get(37)), "symbol": _word(get(55)),
                    "side": _word(get(54))}
        if mt == b"G":
            return {"type": ev.REPLACE_REQUESTED, "ts": ts, "session": session_key, "msg_seq_num": seq,
                    "cl_ord_id": _text(get(11)),
                    "orig_cl_ord_id": _text(get(41)), "order_id": _order_id(get(37)), "symbol": _word(get(55)),
                    "side": _word(get(54)), "ord_type": _word(get(40)), "tif": _word(get(59)),
                    "price": _word(get(44)), "qty": _int(get(38))}
        if mt == b"H":
            return {"type": ev.STATUS_REQUESTED, "ts": ts, "session": session_key, "msg_seq_num": seq,
                    "cl_ord_id": _text(get(11)),
                    "order_id": _order_id(get(37)), "symbol": _word(get(55)), "side": _word(get(54))}
        if mt == b"q":
            return {"type": ev.MASS_CANCEL_REQUESTED, "ts": ts, "session": session_key, "msg_seq_num": seq,
                    "cl_ord_id": _text(get(11)), "mass_cancel_type": _word(get(530)), "symbol": _word(get(55)),
                    "side": _word(get(54)), "account": _word(get(1))}
        return None

    def command_from_row(self, session_key: str, default_account: str | None, buf: bytes, row: list) -> dict:
        """The command ``command_from_fix`` makes, from a fast-path row (fastpath.py): the
        message's MsgType index and the offsets of its fields in ``buf``. Same keys, same
        order, same values."""
        (mt, seq, _start, _end, a11, b11, a1, b1, _a21, _b21, a38, b38, a40, b40, a44, b44, a54, b54,
         a55, b55, a59, b59, _a60, _b60, a41, b41, a37, b37, qty) = row
        ts = self.clock_ns()
        words = _WORDS
        symbol = buf[a55:b55] if a55 >= 0 else None
        symbol = words.get(symbol) or _word(symbol)
        side = buf[a54:b54] if a54 >= 0 else None
        side = words.get(side) or _word(side)
        cl = buf[a11:b11].decode("latin-1") if a11 >= 0 else None
        if mt == 0 or mt == 2:
            if qty == -1:
                qty = None
            elif qty == -2:
                qty = _int(buf[a38:b38])
            ord_type = buf[a40:b40] if a40 >= 0 else None
            tif = buf[a59:b59] if a59 >= 0 else None
            price = buf[a44:b44] if a44 >= 0 else None
            if mt == 0:
                account = buf[a1:b1] if a1 >= 0 else None
                return {"type": ev.ORDER_RECEIVED, "ts": ts, "session": session_key, "msg_seq_num": seq,
                        "cl_ord_id": cl, "account": (words.get(account) or _word(account)) or default_account,
                        "symbol": symbol,
                        "side": side, "ord_type": words.get(ord_type) or _word(ord_type),
                        "tif": (words.get(tif) or _word(tif)) or "0", "price": words.get(price) or _word(price),
                        "qty": qty}
        orig = buf[a41:b41].decode("latin-1") if a41 >= 0 else None
        order_id = _order_id(buf[a37:b37]) if a37 >= 0 else None
        if mt == 1:
            return {"type": ev.CANCEL_REQUESTED, "ts": ts, "session": session_key, "msg_seq_num": seq, "cl_ord_id": cl,
                    "orig_cl_ord_id": orig, "order_id": order_id, "symbol": symbol, "side": side}
        if mt == 2:
            return {"type": ev.REPLACE_REQUESTED, "ts": ts, "session": session_key, "msg_seq_num": seq, "cl_ord_id": cl,
                    "orig_cl_ord_id": orig, "order_id": order_id, "symbol": symbol, "side": side,
                    "ord_type": words.get(ord_type) or _word(ord_type), "tif": words.get(tif) or _word(tif),
                    "price": words.get(price) or _word(price), "qty": qty}
        return {"type": ev.STATUS_REQUESTED, "ts": ts, "session": session_key, "msg_seq_num": seq, "cl_ord_id": cl,
                "order_id": order_id, "symbol": symbol, "side": side}

    def submit(self, command: dict) -> list[dict]:
        """Run one command now; its reports go out at ``end_batch``."""
        if self.journal_failed is not None and command["type"] in (ev.ORDER_RECEIVED, ev.CANCEL_REQUESTED,
                                                                    ev.REPLACE_REQUESTED, ev.MASS_CANCEL_REQUESTED) \
                and time.monotonic() - self._journal_failed_at < JOURNAL_RETRY_S:
            # the journal cannot be written: acknowledge nothing, refuse clearly
            event = self._refusal(command, _unavailable(self.journal_failed))
            self._keep_cancel_on_disconnect(command)
            self._events.append(event)
            return [event]
        events = self.engine.process(command)
        if command["type"] == ev.STATUS_REQUESTED:
            self._asked.append((len(self._events), command))
        elif len(events) == 2 and events[1]["type"] == "order_status":
            # a NewOrderSingle resent with PossResend=Y for an order already taken: answered with
            # the order's status, which is asked again if the journal refuses the batch
            self._asked.append((len(self._events) + 1, {
                "type": ev.STATUS_REQUESTED, "ts": command["ts"], "session": command.get("session"),
                "cl_ord_id": command.get("cl_ord_id"), "order_id": None, "symbol": command.get("symbol"),
                "side": command.get("side")}))
            self._resent.add(id(events[0]))
        self._events.extend(events)
        return events

    def _refusal(self, command: dict, text: str) -> dict:
        """An unjournaled reject (with ``text``) for a command the journal could not take."""
        if command["type"] == ev.ORDER_RECEIVED:
            # an ExecID of its own: "0" is the status answers' (FIX 4.2: ExecTransType 3) and a
            # client drops a report whose ExecID it has seen; the engine's are digits, this never
            self._refusals += 1
            return {"type": ev.ORDER_REJECTED, "ts": command["ts"], "order_id": None,
                    "cl_ord_id": command.get("cl_ord_id"), "session": command.get("session"),
                    "account": command.get("account"), "symbol": command.get("symbol"),
                    "side": command.get("side"), "ord_type": command.get("ord_type"), "tif": command.get("tif"),
                    "price": command.get("price"), "qty": command.get("qty"),
                    "exec_id": f"R{command['ts']}-{self._refusals}", "exec_type": "8", "ord_status": "8",
                    "cum_qty": 0, "leaves_qty": 0, "avg_px": "0", "rej_reason": 0, "text": text}
        if command["type"] == ev.MASS_CANCEL_REQUESTED:   # OrderMassCancelReport: rejected, 532=99 Other
            return {"type": ev.MASS_CANCEL_DONE, "ts": command["ts"], "session": command.get("session"),
                    "cl_ord_id": command.get("cl_ord_id"), "symbol": command.get("symbol"),
                    "mass_cancel_type": command.get("mass_cancel_type"), "mass_cancel_response": "0",
                    "affected": 0, "rej_reason": 99, "text": text}
        replace = command["type"] == ev.REPLACE_REQUESTED
        return {"type": ev.REPLACE_REJECTED if replace else ev.CANCEL_REJECTED, "ts": command["ts"],
                "order_id": command.get("order_id"), "cl_ord_id": command.get("cl_ord_id"),
                "orig_cl_ord_id": command.get("orig_cl_ord_id"), "session": command.get("session"),
                "ord_status": "8", "rej_reason": 2, "text": text, "response_to": "2" if replace else "1"}

    def end_batch(self) -> None:
        """Journal first, then reports: nothing leaves before its event reached the journal."""
        events = self._events
        if not events and not self._dirty:
            return
        self._events = []
        asked, self._asked = self._asked, []
        resent, self._resent = self._resent, set()
        try:
            self.engine.flush()
            if self.journal_failed is not None:
                self._journal_writes_again()
        except (OSError, JournalError) as exc:
            if isinstance(exc, JournalRecordError):
                # a record the journal refused (a bug upstream, not the disk): this batch is
                # refused, the journal itself is fine, so the next command is tried as usual
                text = "Not accepted: an event of this batch could not be journaled (see the server log)"
                log.error("journal refused a record: %d events not acknowledged, their commands refused: %s",
                          len(events), exc)
            else:
                self.journal_failed = str(exc)
                text = _unavailable(self.journal_failed)
                self._journal_failed_at = time.monotonic()
                self._journal_failed_seq = getattr(self.engine.journal, "written_seq", 0)
                log.error("journal write failed: %d events not acknowledged, their commands refused: %s",
                          len(events), exc)
            self._recover_after_journal_failure()
            # status answers of the batch saw what the journal did not keep: asked again of the
            # rebuilt engine (a status request changes nothing and is not journaled)
            for i, command in asked:
                events[i:i + 1] = self.engine.process(command)
            for e in events:
                if "seq" in e:
                    self._keep_cancel_on_disconnect(e)
            # nothing journaled leaves; each refused command gets a clear reject instead, but an
            # order resent with PossResend=Y keeps its status answer alone (a reject of it would
            # tell the client its working order is dead)
            events = [e if "seq" not in e else self._refusal(e, text) for e in events
                      if "seq" not in e or (e["type"] in (ev.ORDER_RECEIVED, ev.CANCEL_REQUESTED,
                                                          ev.REPLACE_REQUESTED, ev.MASS_CANCEL_REQUESTED)
                                            and id(e) not in resent)]
        deliver = self._deliver
        drop_copies = self.drop_copies
        for event in events:
            kind = event["type"]
            if kind in EXEC_REPORT_TYPES:
                key = event.get("session")
                deliver(key, event)
                if drop_copies and kind != "order_status":
                    for copy_key in drop_copies:
                        if copy_key != key:
                            deliver(copy_key, event)
            elif kind in CANCEL_REJECT_TYPES or (kind == ev.MASS_CANCEL_DONE and event.get("cl_ord_id") is not None):
                # a mass cancel without ClOrdID is the session's cancel on disconnect: its owner
                # gets the Canceled reports, not an OrderMassCancelReport to a request never sent
                deliver(event.get("session"), event)
        if self._offline:
            offline, self._offline = self._offline, {}
            if self.offline_sink is not None:
                self.offline_sink(offline)
        for hook in self.on_events:
            hook(events)
        dirty, self._dirty = self._dirty, set()
        for session in dirty:
            session.flush()

    def journal_ok(self) -> bool:
        """False while the last journal write failed. Any record written since clears it, not
        only a batch of this gateway's: session records (a logon, a logout) and the server's
        own records are flushed past ``end_batch``, and after a full disk had space again
        /health kept answering 503 "journal write failed" over a journal taking writes, until
        the next order came (which a readiness probe keeping clients away may never let come)."""
        if self.journal_failed is not None \
                and getattr(self.engine.journal, "written_seq", 0) > self._journal_failed_seq:
            self._journal_writes_again()
        return self.journal_failed is None

    def _journal_writes_again(self) -> None:
        log.warning("journal writes again (seq %s) after: %s", getattr(self.engine.journal, "written_seq", "?"),
                    self.journal_failed)
        self.journal_failed = None

    def _keep_cancel_on_disconnect(self, command: dict) -> None:
        """A session's cancel on disconnect the journal refused: kept to be tried again, so its
        orders do not stay working once the journal takes writes again."""
        if command["type"] == ev.MASS_CANCEL_REQUESTED and command.get("reason") == COD_REASON \
                and command.get("session") is not None:
            self._cod_retry[command["session"]] = command
            log.error("cancel on disconnect of %s refused by the journal: tried again when it takes writes",
                      command["session"])

    def retry_cancel_on_disconnect(self) -> int:
        """Run the cancels on disconnect the journal refused (the acceptor's timer calls this),
        unless the session logged on again meanwhile (its trader is back and sees its orders).
        Returns how many ran; one the journal refuses again stays for the next try."""
        if not self._cod_retry or (self.journal_failed is not None
                                   and time.monotonic() - self._journal_failed_at < JOURNAL_RETRY_S):
            return 0
        pending, self._cod_retry = self._cod_retry, {}
        ran = 0
        for key, command in pending.items():
            target = self.sessions.get(key)
            if target is not None and target.logged_on:
                log.info("cancel on disconnect of %s dropped: the session logged on again", key)
                continue
            self.submit({"type": ev.MASS_CANCEL_REQUESTED, "ts": self.clock_ns(), "session": key, "cl_ord_id": None,
                         "mass_cancel_type": "7", "symbol": None, "side": None, "account": None,
                         "reason": COD_REASON})
            ran += 1
        if ran:
            self.end_batch()
        return ran

    def _recover_after_journal_failure(self) -> None:
        """The engine applied changes the journal did not keep: rebuild it from the journal."""
        rebuild = getattr(self.engine, "rebuild_from_journal", None)
        if rebuild is not None:
            rebuild()

    # -- outbound -------------------------------------------------------------------------

    def _deliver(self, key: str | None, event: dict) -> None:
        target = self.sessions.get(key)
        if target is not None and target.logged_on:
            target.queue_report(event)
            self._dirty.add(target)
        elif key is not None and "seq" in event and key not in self.no_offline:
            self._offline.setdefault(key, []).append(event)

    def has_pending(self) -> bool:
        """Events of this batch not yet journaled and routed."""
        return bool(self._events)

    def mark_dirty(self, session: "FixSession") -> None:
        self._dirty.add(session)
