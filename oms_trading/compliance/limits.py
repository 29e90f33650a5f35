"""The pre-trade limits a risk desk can set, their kinds and how their text is parsed.

One table describes every limit so the config loader and the HTTP API validate the same way
(``LimitDef.parse_input``: one grammar) and say the same thing when a value is wrong; the
engine reads the journaled text back with ``LimitDef.parse``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

# The grammar of a limit typed by a user (config file, HTTP API): ASCII digits, for a decimal
# limit with an optional fraction. int(), Decimal() and str.isdigit() also take other scripts'
# digits, "_", signs and exponents, so each kind would otherwise accept different text.
WHOLE_TEXT = re.compile(r"[0-9]+")
DECIMAL_TEXT = re.compile(r"[0-9]+(?:\.[0-9]+)?")
MAX_TEXT = 64       # far beyond any limit; keeps int() off text it refuses (over 4300 digits)


class LimitValueError(ValueError):
    """A limit value of the wrong kind or out of range."""


@dataclass(frozen=True, slots=True)
class LimitDef:
    name: str
    kind: str          # "int" (quantities, ticks, counts) | "decimal" (money, percent) | "bool"
    description: str

    def parse_input(self, value: object) -> int | Decimal | bool:
        """Parse a value given by a user (config file, HTTP API) in the one grammar of limits:
        a flag is true/false, a number an integer or text that ``text_problem`` passes.
        Raises LimitValueError with a clear message."""
        if isinstance(value, str):
            problem = self.text_problem(value)
            if problem is not None:
                raise LimitValueError(f"{self.name} {problem}, got {value!r}")
            value = value.strip()
        number = self.parse(value)
        if isinstance(number, Decimal) and not number and "E" in str(number):
            number = Decimal(0)     # 0.0000000 would print as 0E-7: zero needs no decimals
        return number

    def text_problem(self, value: str) -> str | None:
        """What is wrong with a limit written as text, or None."""
        text = value.strip()
        if self.kind == "bool":
            return "must be true or false"
        if len(text) > MAX_TEXT:
            return f"is too long ({len(text)} characters)"
        if self.kind == "int" and not WHOLE_TEXT.fullmatch(text):
            return "must be a whole number (ASCII digits)"
        if self.kind == "decimal" and not DECIMAL_TEXT.fullmatch(text):
            return "must be decimal text like \"1000000.00\" (ASCII digits; no sign, exponent or _)"
        return None

    def parse(self, value: object) -> int | Decimal | bool:
        """Parse a value as journaled. Looser than ``parse_input`` (it takes what earlier
        versions journaled, e.g. "1E+3") so that old journals replay as they ran; new input
        goes through ``parse_input``. Raises LimitValueError with a clear message."""
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            raise LimitValueError(f"{self.name} must be true or false, got {value!r}")
        if self.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
                    value = int(value.strip())
                else:
                    raise LimitValueError(f"{self.name} must be a whole number, got {value!r}")
            if value < 0:
                raise LimitValueError(f"{self.name} must be >= 0, got {value}")
            if value > 10**15:
                raise LimitValueError(f"{self.name} is too large: {value}")
            return value
        # decimal: accept text or int, never float (floats are not exact money)
        if isinstance(value, bool) or isinstance(value, float):
            raise LimitValueError(f"{self.name} must be decimal text like \"1000000.00\", got {value!r}")
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            raise LimitValueError(f"{self.name} must be a decimal number, got {value!r}") from None
        if not number.is_finite() or number < 0:
            raise LimitValueError(f"{self.name} must be a finite number >= 0, got {value!r}")
        if number > Decimal(10) ** 15:
            raise LimitValueError(f"{self.name} is too large: {value}")
        return number


LIMIT_DEFS: dict[str, LimitDef] = {d.name: d for d in (
    LimitDef("max_order_qty", "int", "largest OrderQty of one order (0: off)"),
    LimitDef("max_order_notional", "decimal", "largest price*qty of one order (0: off)"),
    LimitDef("price_collar_pct", "decimal", "max % distance of a limit price from the reference (0: off)"),
    LimitDef("price_collar_ticks", "int", "max tick distance of a limit price from the reference (0: off)"),
    LimitDef("credit_limit", "decimal", "gross exposure per account: open orders + fills of the day, in the base currency (0: off)"),
    LimitDef("max_long_position", "int", "long position per instrument incl. resting buys (0: off)"),
    LimitDef("max_short_position", "int", "short position per instrument incl. resting sells (0: off)"),
    LimitDef("max_messages_per_second", "int", "messages per second per FIX session (0: off)"),
    LimitDef("duplicate_window_ms", "int", "reject an identical order within this window (0: off)"),
)}

# Limits that make sense per instrument (they stand in for the default on it; with an account's
# own value too, the stricter binds: RiskEngine.effective).
INSTRUMENT_LIMITS = frozenset({
    "max_order_qty", "max_order_notional", "price_collar_pct", "price_collar_ticks",
    "max_long_position", "max_short_position",
})

BUILTIN_DEFAULTS: dict[str, int | Decimal] = {
    "max_order_qty": 100_000,
    "max_order_notional": Decimal("5000000"),
    "price_collar_pct": Decimal("10"),
    "price_collar_ticks": 0,
    "credit_limit": Decimal("50000000"),
    "max_long_position": 1_000_000,
    "max_short_position": 1_000_000,
    "max_messages_per_second": 5_000,
    "duplicate_window_ms": 0,
}


def parse_limits(values: dict, where: str) -> dict[str, int | Decimal]:
    """Validate a mapping of limit name -> value; ``where`` names it in error messages."""
    parsed: dict[str, int | Decimal] = {}
    for name, value in values.items():
        definition = LIMIT_DEFS.get(name)
        if definition is None:
            known = ", ".join(sorted(LIMIT_DEFS))
            raise LimitValueError(f"{where}.{name}: unknown limit (known: {known})")
        try:
            parsed[name] = definition.parse_input(value)
        except LimitValueError as exc:
            raise LimitValueError(f"{where}.{name}: {exc}") from None
    return parsed


def limit_text(value: int | Decimal | bool) -> str:
    """A limit as journaled and shown: plain decimal notation (str() of a Decimal below 1E-6
    has an exponent)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)
