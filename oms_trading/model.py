"""Domain model: instruments, accounts, FIX-valued enums and exact price conversion.

Prices live as int64 ticks of the instrument's tick size on the hot path; decimal text exists
only at the edges. A price off the tick grid or outside int64 is rejected, never rounded.
"""
from __future__ import annotations

import enum
import functools
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

INT64_MAX = 2**63 - 1
# Prices and quantities are kept well inside int64 so that price * qty sums in Python ints and
# level totals in numba never overflow.
MAX_PRICE_TICKS = 2**52
MAX_QTY = 10**12


class FixEnum(enum.Enum):
    """An enum whose value is the FIX wire value (as str)."""

    @classmethod
    def from_fix(cls, value: str | bytes) -> "FixEnum":
        if isinstance(value, bytes):
            value = value.decode("ascii", "replace")
        return cls(value)

    @property
    def fix(self) -> str:
        return self.value


class Side(FixEnum):
    BUY = "1"
    SELL = "2"
    SELL_SHORT = "5"
    SELL_SHORT_EXEMPT = "6"

    @property
    def is_buy(self) -> bool:
        return self is Side.BUY


class OrdType(FixEnum):
    MARKET = "1"
    LIMIT = "2"


class TimeInForce(FixEnum):
    DAY = "0"
    GTC = "1"
    IOC = "3"
    FOK = "4"


class OrdStatus(FixEnum):
    NEW = "0"
    PARTIALLY_FILLED = "1"
    FILLED = "2"
    CANCELED = "4"
    REPLACED = "5"          # FIX 4.2 only; 4.4 reports the replacement's own status
    PENDING_CANCEL = "6"
    REJECTED = "8"
    PENDING_NEW = "A"
    EXPIRED = "C"
    PENDING_REPLACE = "E"


class ExecType(FixEnum):
    NEW = "0"
    PARTIAL_FILL = "1"      # FIX 4.2
    FILL = "2"              # FIX 4.2
    CANCELED = "4"
    REPLACED = "5"
    PENDING_CANCEL = "6"
    REJECTED = "8"
    PENDING_NEW = "A"
    EXPIRED = "C"
    PENDING_REPLACE = "E"
    TRADE = "F"             # FIX 4.4: every fill
    ORDER_STATUS = "I"      # FIX 4.4: answer to OrderStatusRequest


class OrdRejReason(enum.IntEnum):
    BROKER_OPTION = 0
    UNKNOWN_SYMBOL = 1
    EXCHANGE_CLOSED = 2
    ORDER_EXCEEDS_LIMIT = 3
    TOO_LATE_TO_ENTER = 4
    UNKNOWN_ORDER = 5
    DUPLICATE_ORDER = 6
    STALE_ORDER = 8
    UNSUPPORTED_ORDER_CHARACTERISTIC = 11
    INCORRECT_QUANTITY = 13
    UNKNOWN_ACCOUNT = 15
    # FIX 4.4 stops at 15 (+99). Off-tick prices ("invalid price increment", 18) and price
    # bands (16) only exist from FIX 5.0, so a 4.4 acceptor answers those with 99 and a Text.
    OTHER = 99


class CxlRejReason(enum.IntEnum):
    TOO_LATE_TO_CANCEL = 0
    UNKNOWN_ORDER = 1
    BROKER_OPTION = 2
    PENDING_CANCEL_OR_REPLACE = 3
    DUPLICATE_CLORDID = 6
    OTHER = 99


class PriceError(ValueError):
    """A price that cannot be represented exactly as ticks of the instrument."""


@dataclass(frozen=True, slots=True)
class Instrument:
    symbol: str
    tick_size: Decimal
    lot_size: int = 1
    reference_price: Decimal | None = None
    currency: str = "USD"
    index: int = 0  # dense id used by the engine's arrays; set by the registry

    def __post_init__(self) -> None:
        if self.tick_size <= 0:
            raise ValueError(f"{self.symbol}: tick_size must be positive")
        if self.lot_size <= 0:
            raise ValueError(f"{self.symbol}: lot_size must be positive")

    def to_ticks(self, text: str | bytes | Decimal) -> int:
        return price_to_ticks(text, self.tick_size)

    def format_price(self, ticks: int) -> str:
        return ticks_to_price(ticks, self.tick_size)

    @property
    def reference_ticks(self) -> int | None:
        if self.reference_price is None:
            return None
        return self.to_ticks(self.reference_price)


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    description: str = ""
    stp_mode: str = "cancel_resting"  # none | cancel_resting | cancel_incoming | cancel_both
    index: int = 0
    extra: dict = field(default_factory=dict, compare=False)


STP_MODES = ("none", "cancel_resting", "cancel_incoming", "cancel_both")


def parse_decimal(text: str | bytes | Decimal) -> Decimal:
    if isinstance(text, Decimal):
        value = text
    else:
        if isinstance(text, bytes):
            try:
                text = text.decode("ascii")
            except UnicodeDecodeError as exc:
                raise PriceError("price is not ASCII") from exc
        stripped = text.strip()
        # FIX Price is a plain decimal: no exponent, no sign tricks beyond a leading '-'
        if not stripped or any(c not in "0123456789.-" for c in stripped) or stripped.count(".") > 1:
            raise PriceError(f"price {text!r} is not a decimal number")
        try:
            value = Decimal(stripped)
        except InvalidOperation as exc:
            raise PriceError(f"price {text!r} is not a decimal number") from exc
    if not value.is_finite():
        raise PriceError(f"price {text!r} is not finite")
    return value


def price_to_ticks(text: str | bytes | Decimal, tick_size: Decimal) -> int:
    """Exact conversion of a decimal price to integer ticks; raises PriceError off the grid."""
    value = parse_decimal(text)
    try:
        ticks, remainder = divmod(value, tick_size)
    except InvalidOperation:   # quotient beyond the decimal context's precision
        raise PriceError(f"price {value} is out of range") from None
    if remainder != 0:
        raise PriceError(f"price {value} is not a multiple of the tick size {tick_size}")
    result = int(ticks)
    if abs(result) > MAX_PRICE_TICKS:
        raise PriceError(f"price {value} is out of range")
    return result


@functools.lru_cache(maxsize=1024)
def _tick_grid(tick_size: Decimal) -> tuple[int, int]:
    """(units per tick, scale): the tick as a whole number of 10**-scale units, scale being the
    digits after the point a price on this grid needs (once per tick size, not per price)."""
    scale = max(0, -int(tick_size.normalize().as_tuple().exponent))
    return int(tick_size.scaleb(scale)), scale


def _units_text(units: int, scale: int) -> str:
    """``units`` * 10**-scale as decimal text with exactly ``scale`` decimals (integers only:
    the same text as formatting the exact Decimal, without Decimal arithmetic per call)."""
    if not scale:
        return str(units)
    q, r = divmod(-units if units < 0 else units, 10 ** scale)
    return f"{'-' if units < 0 else ''}{q}.{r:0{scale}d}"


def ticks_to_price(ticks: int, tick_size: Decimal, scale: int | None = None) -> str:
    """Decimal text for a tick count, with exactly ``scale`` decimals (default: the tick's)."""
    mult, grid_scale = _tick_grid(tick_size)
    if scale is None or scale == grid_scale:
        return _units_text(ticks * mult, grid_scale)
    return f"{tick_size * ticks:.{scale}f}"


def format_avg_px(notional_ticks: int, qty: int, tick_size: Decimal, extra_digits: int = 6) -> str:
    """Exact average price text: sum(price*qty)/qty in ticks, to the tick's scale + extra digits.

    Computed with integers and Decimal so no float drift creeps in; the last digit is rounded
    half-even, which only matters when the average is not representable in that many digits.
    An average that falls on the tick grid (every fill at one price, the common case) is the
    price text itself, formatted with integers.
    """
    if qty <= 0:
        return "0"
    mult, base_scale = _tick_grid(tick_size)
    if notional_ticks % qty == 0:
        return _units_text(notional_ticks // qty * mult, base_scale)
    scale = base_scale + extra_digits
    value = (Decimal(notional_ticks) * tick_size) / Decimal(qty)
    text = f"{value:.{scale}f}"
    # trim trailing zeros but keep at least the tick scale so it reads like a price
    if "." in text:
        head, tail = text.split(".")
        tail = tail.rstrip("0")
        if len(tail) < base_scale:
            tail = tail + "0" * (base_scale - len(tail))
        text = head + ("." + tail if tail else "")
    return text
