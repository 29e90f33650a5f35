"""The shape of an audit event: the contract between the engine, the journal and DuckDB.

An event is a flat dict. Keys are strings; values are ``int``, ``str`` or ``None`` (no floats:
prices and AvgPx are decimal *text*, exact as sent on FIX; quantities and timestamps are ints).
The engine fills ``type`` and ``ts`` (UTC nanoseconds, taken from the command, never read in
the engine) plus whichever fields apply. The journal adds ``seq``, ``prev_hash`` and ``hash``.

Keys listed in ``EVENT_COLUMNS`` become typed DuckDB columns; any other key is kept in the
``details`` JSON column so nothing is lost and the hash can be recomputed from a row.
"""
from __future__ import annotations

# (name, DuckDB type). Order is the column order of the audit table.
EVENT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("seq", "BIGINT"),            # gap-free, assigned by the journal
    ("ts", "BIGINT"),             # UTC nanoseconds since the epoch
    ("type", "VARCHAR"),          # one of EVENT_TYPES
    ("order_id", "BIGINT"),
    ("cl_ord_id", "VARCHAR"),
    ("orig_cl_ord_id", "VARCHAR"),
    ("session", "VARCHAR"),       # "SENDER->TARGET" of the owning FIX session, e.g. "CLIENT1->OMS"
    ("msg_seq_num", "BIGINT"),    # MsgSeqNum (34) of the FIX message a command came in (its FIX log line)
    ("account", "VARCHAR"),
    ("symbol", "VARCHAR"),
    ("side", "VARCHAR"),          # FIX Side value: "1" buy, "2" sell, "5" sell short, ...
    ("ord_type", "VARCHAR"),      # FIX OrdType value
    ("tif", "VARCHAR"),           # FIX TimeInForce value
    ("price", "VARCHAR"),         # decimal text
    ("qty", "BIGINT"),            # OrderQty
    ("exec_id", "VARCHAR"),
    ("exec_type", "VARCHAR"),     # FIX ExecType value
    ("ord_status", "VARCHAR"),    # FIX OrdStatus value
    ("cum_qty", "BIGINT"),
    ("leaves_qty", "BIGINT"),
    ("avg_px", "VARCHAR"),        # decimal text, exact
    ("last_px", "VARCHAR"),
    ("last_qty", "BIGINT"),
    ("trade_id", "BIGINT"),
    ("contra_order_id", "BIGINT"),
    ("liquidity", "VARCHAR"),     # "A" aggressor, "P" passive
    ("text", "VARCHAR"),          # FIX Text (58) for rejects
    ("rej_reason", "INTEGER"),    # OrdRejReason (103) or CxlRejReason (102)
    ("rule", "VARCHAR"),          # risk check that failed, e.g. "max_notional"
    ("limit_value", "VARCHAR"),   # the limit in force at the time
    ("actual_value", "VARCHAR"),  # the value that breached it
    ("user", "VARCHAR"),          # who did a control action (HTTP user)
    ("approver", "VARCHAR"),      # second user of a four-eyes action
    ("reason", "VARCHAR"),        # why a control action was taken
    ("scope", "VARCHAR"),         # kill switch / limit scope, e.g. "account:ACC1"
    ("old_value", "VARCHAR"),
    ("new_value", "VARCHAR"),
    ("details", "JSON"),          # every other key of the event, as a JSON object
    ("prev_hash", "VARCHAR"),     # hex SHA-256 of the previous record ("0"*64 for the first)
    ("hash", "VARCHAR"),          # hex SHA-256 of this record's canonical encoding
)

COLUMN_NAMES: tuple[str, ...] = tuple(name for name, _ in EVENT_COLUMNS)

# Event types. Those marked (cmd) are the engine's *inputs*: replaying them in order through a
# fresh engine rebuilds every book, order, position, limit and kill switch exactly.
ORDER_RECEIVED = "order_received"            # (cmd) NewOrderSingle as received
ORDER_ACCEPTED = "order_accepted"            # PendingNew -> New
ORDER_REJECTED = "order_rejected"            # rule/limit_value/actual_value say why
ORDER_PARTIALLY_FILLED = "order_partially_filled"
ORDER_FILLED = "order_filled"
CANCEL_REQUESTED = "cancel_requested"        # (cmd)
ORDER_CANCELED = "order_canceled"
CANCEL_REJECTED = "cancel_rejected"
REPLACE_REQUESTED = "replace_requested"      # (cmd)
ORDER_REPLACED = "order_replaced"
REPLACE_REJECTED = "replace_rejected"
ORDER_EXPIRED = "order_expired"
STATUS_REQUESTED = "status_requested"        # (cmd) answered, changes nothing
MASS_CANCEL_REQUESTED = "mass_cancel_requested"  # (cmd)
MASS_CANCEL_DONE = "mass_cancel_done"
LIMIT_CHANGE_REQUESTED = "limit_change_requested"  # (cmd)
LIMIT_CHANGED = "limit_changed"
LIMIT_CHANGE_REJECTED = "limit_change_rejected"
LIMIT_EXPIRED = "limit_expired"              # a temporary limit went back to its previous value
KILL_SWITCH_REQUESTED = "kill_switch_requested"  # (cmd)
KILL_SWITCH_ENGAGED = "kill_switch_engaged"
KILL_SWITCH_RELEASED = "kill_switch_released"
CLOCK = "clock"                              # (cmd) time passing: limit expiry, end of day
SESSION_LOGON = "session_logon"
SESSION_LOGOUT = "session_logout"
SESSION_REJECT = "session_reject"
JOURNAL_TORN_TAIL = "journal_torn_tail"      # a start found the last command's events cut by a crash
SESSION_SEQ_RESET = "session_seq_reset"      # a FIX session's sequence numbers start again at 1 (before its store resets)
ENGINE_RULES = "engine_rules"                # the engine's rules version, journaled before the first command it decides
LIMITS_LOADED = "limits_loaded"              # a start whose config file sets other limits than the last one (config_limits.py)

COMMAND_TYPES = frozenset({
    ORDER_RECEIVED, CANCEL_REQUESTED, REPLACE_REQUESTED, STATUS_REQUESTED,
    MASS_CANCEL_REQUESTED, LIMIT_CHANGE_REQUESTED, KILL_SWITCH_REQUESTED, CLOCK,
})
