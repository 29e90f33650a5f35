"""The limits a configuration file sets, journaled when they change.

The risk desk's changes over HTTP are journaled commands (who, when, old, new, why). Limits
set in the config file were not: someone could raise a default in ``oms.toml``, restart, and
the audit trail showed neither the change nor who made it, while ``oms audit limits --at T``
read every moment through today's file. Now every start whose configured limits differ from
the last ones journaled writes one ``limits_loaded`` record before trading:

- ``new_value``: the configured layers as canonical JSON text (``queries.baseline_from_config``:
  defaults, accounts, instruments, restricted lists), what ``limits_at`` takes as its baseline
  from that record on;
- ``old_value``: the layers of the previous such record (None for the first);
- ``text``: what changed, one ``scope limit old -> new`` per limit, for people (the EOD report);
- ``user`` "config", ``reason`` naming the file.

The start-up replay applies each record where it was journaled (``Engine.apply_limits_loaded``,
``RiskEngine.apply_baseline``): past orders are decided again under the limits of the file
that ran then, not today's, and the desk's changes keep winning over any file (as they did
when every start replayed them over the file running now).
"""
from __future__ import annotations

import orjson

from . import schema as ev

USER = "config"


def layers_text(layers: dict[str, dict[str, str]]) -> str:
    """Canonical JSON of configured layers (sorted keys, compact): equal text, equal limits."""
    return orjson.dumps(layers, option=orjson.OPT_SORT_KEYS).decode()


def describe_changes(old: dict[str, dict[str, str]] | None, new: dict[str, dict[str, str]]) -> str:
    """``scope limit old -> new`` for each limit that differs, ``; ``-separated, in scope order
    (``(none)`` for a limit one side does not set)."""
    old = old or {}
    parts = []
    for scope in sorted(set(old) | set(new)):
        before, after = old.get(scope, {}), new.get(scope, {})
        for name in sorted(set(before) | set(after)):
            a, b = before.get(name), after.get(name)
            if a != b:
                parts.append(f"{scope} {name} {'(none)' if a is None else a} -> {'(none)' if b is None else b}")
    return "; ".join(parts)


def limits_loaded_record(layers: dict[str, dict[str, str]], previous: dict | None, source: str,
                         ts: int) -> dict | None:
    """The record to journal for a start configured with ``layers``, or None when the last
    one journaled (``previous``) already says the same."""
    text = layers_text(layers)
    old_text = previous.get("new_value") if previous else None
    if old_text == text:
        return None
    old = orjson.loads(old_text) if old_text else None
    changes = describe_changes(old, layers) if old is not None else "first configuration journaled"
    return {"type": ev.LIMITS_LOADED, "ts": ts, "user": USER, "reason": f"limits configured in {source} at start-up",
            "old_value": old_text, "new_value": text, "text": changes}
