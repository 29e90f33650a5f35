"""Does the journal replay as it was journaled?

At start-up the engine folds the journaled *commands* under the configuration and code it
runs now. If either changed in a way that touches past decisions (a lot size or a collar in
the config file, an account removed, a matching rule changed by an upgrade), the state it
rebuilds is not the state the clients were told about: an order acknowledged then may be
rejected now and be missing from the book. ``ReplayCheck`` compares each event the replay
makes with the event journaled at the time, so such a difference is reported at start-up
(``oms serve`` logs it) instead of being found later by a client.

The journal holds, after each command record, exactly the events ``Engine.process`` made for
it (the engine journals them as it makes them); the only other records are session events
(logon, logout, session rejects), which no command makes.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..audit import schema as ev

JOURNAL_KEYS = frozenset({"seq", "prev_hash", "hash"})
NOT_FROM_COMMANDS = frozenset({ev.SESSION_LOGON, ev.SESSION_LOGOUT, ev.SESSION_REJECT, ev.SESSION_SEQ_RESET,
                               ev.LIMITS_LOADED, ev.ENGINE_RULES})
# Journaled by ``oms serve`` at the start that found a torn tail, before anything else: the
# journal goes on after the cut, so without it every later start would count the events the
# crash cut off as missing (a false alarm at every start). ``command_seq`` names the command.
TORN_TAIL = ev.JOURNAL_TORN_TAIL


def torn_tail_record(check: "ReplayCheck", ts: int) -> dict:
    """The record that says the events of ``check``'s last command were cut by a crash."""
    return {"type": TORN_TAIL, "ts": ts, "session": None, "command_seq": check.torn_command_seq,
            "text": f"the journal ended inside the events of command seq {check.torn_command_seq} "
                    f"(a write cut short by a crash); that command was not acknowledged"}


def same_event(journaled: dict, replayed: dict) -> bool:
    """The journaled record and the replayed event are the same event, the keys the journal
    adds aside. Copies those keys into ``replayed`` (the replay's own dict, not kept) so that
    one dict comparison in C decides: a per-key loop here doubled the start-up replay."""
    for key in JOURNAL_KEYS:
        if key in journaled:
            replayed[key] = journaled[key]
    return journaled == replayed


@dataclass
class ReplayDifference:
    """The first event where the replay and the journal part."""
    seq: int                    # the journal record's seq (for a missing record: its command's)
    command_seq: int
    journaled: dict | None      # None: the replay made an event the journal does not have
    replayed: dict | None       # None: the journal has an event the replay did not make

    def _one_sided(self) -> str | None:
        """The text when only one side has the event (no values in it), else None."""
        if self.replayed is None:
            return (f"seq {self.seq}: the journal's {self.journaled.get('type')} event is not made "
                    f"by the replay of command seq {self.command_seq}")
        if self.journaled is None:
            return (f"after seq {self.seq}: the replay of command seq {self.command_seq} makes a "
                    f"{self.replayed.get('type')} event the journal does not have")
        return None

    def describe(self) -> str:
        one_sided = self._one_sided()
        if one_sided is not None:
            return one_sided
        keys = sorted({*self.journaled, *self.replayed} - JOURNAL_KEYS,
                      key=lambda k: (k != "type", k))
        parts = [f"{k} {self.journaled.get(k)!r} -> {self.replayed.get(k)!r}" for k in keys
                 if self.journaled.get(k) != self.replayed.get(k)]
        return f"seq {self.seq} (command seq {self.command_seq}): journaled -> replayed: " + ", ".join(parts[:6])

    def summary(self) -> str:
        """``describe`` without the values (accounts, ClOrdIDs, prices, limits, texts): for the
        unauthenticated /health; the server log has ``describe``."""
        one_sided = self._one_sided()
        if one_sided is not None:
            return one_sided
        keys = sorted(k for k in {*self.journaled, *self.replayed} - JOURNAL_KEYS - {"type"}
                      if self.journaled.get(k) != self.replayed.get(k))
        return (f"seq {self.seq} (command seq {self.command_seq}): journaled {self.journaled.get('type')}, "
                f"replayed {self.replayed.get('type')}; keys that differ: {', '.join(keys) or 'none'} "
                f"(values in the server log)")


class ReplayCheck:
    """Fed by ``Engine.replay``: ``command`` with the events the replay made for each command
    record, ``record`` with every other journal record, ``finish`` at the end."""

    def __init__(self) -> None:
        self.events_checked = 0
        self.differences = 0          # events that differ, are missing or are extra
        self.first: ReplayDifference | None = None
        self.torn_tail = False        # the journal ends inside the last command's events
        self.torn_command_seq: int | None = None   # that command's seq
        self._expected: list[dict] = []
        self._at = 0
        self._command_seq = 0

    def command(self, seq: int, made: list[dict]) -> None:
        self._left_over()
        self._expected, self._at, self._command_seq = made, 0, seq

    def record(self, record: dict) -> None:
        kind = record.get("type")
        if kind in NOT_FROM_COMMANDS:
            return
        if kind == TORN_TAIL:
            # a crash cut the events of this command and the server went on after it: the
            # events it cut are not missing (nothing of them was acknowledged)
            if record.get("command_seq") == self._command_seq:
                del self._expected[self._at:]
            return
        seq = record.get("seq", 0)
        if self._at < len(self._expected):
            want = self._expected[self._at]
            self._at += 1
            self.events_checked += 1
            if not same_event(record, want):
                self._differ(ReplayDifference(seq, self._command_seq, record, want))
        else:
            self._differ(ReplayDifference(seq, self._command_seq, record, None))

    def finish(self) -> None:
        # events of the last command missing at the very end: a write cut short by a crash (the
        # reader cut that torn tail off, and nothing in it was acknowledged): not a difference
        self.torn_tail = self._at < len(self._expected)
        self.torn_command_seq = self._command_seq if self.torn_tail else None
        self._expected, self._at = [], 0

    def _left_over(self) -> None:
        if self._at < len(self._expected):
            missing = len(self._expected) - self._at
            self._differ(ReplayDifference(self._command_seq, self._command_seq, None, self._expected[self._at]),
                         count=missing)

    def _differ(self, diff: ReplayDifference, count: int = 1) -> None:
        self.differences += count
        if self.first is None:
            self.first = diff
