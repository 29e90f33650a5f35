"""FIX UTCTimestamp formatting and parsing.

``fix_timestamp(ns, precision)`` formats integer nanoseconds since the Unix epoch as a
FIX UTCTimestamp (``YYYYMMDD-HH:MM:SS[.sss|.ssssss|.sssssssss]``). The
``YYYYMMDD-HH:MM:SS`` prefix is cached for the last second seen, so in a busy session only
the fraction is formatted per call.

``parse_fix_timestamp(b)`` is the inverse: bytes -> int ns, or ``None`` if malformed.
Accepted fractions: none, 3, 6 or 9 digits. Seconds 60 (leap second) is accepted, as the
FIX specification allows; it maps onto the next second.
"""

from __future__ import annotations

import time

__all__ = ["fix_timestamp", "is_fix_timestamp", "parse_fix_timestamp"]

_NS = 1_000_000_000

# (second, prefix bytes) for the last second formatted. A tuple is replaced atomically,
# so concurrent callers at worst format the prefix twice.
_cache: tuple[int, bytes] = (-1, b"")


def _prefix(sec: int) -> bytes:
    global _cache
    t = time.gmtime(sec)
    p = b"%04d%02d%02d-%02d:%02d:%02d" % (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)
    _cache = (sec, p)
    return p


def fix_timestamp(ns: int, precision: str = "ms") -> bytes:
    """Format ``ns`` (int nanoseconds since the epoch, UTC) as a FIX UTCTimestamp.

    ``precision`` is ``"ms"`` (default, ``.sss``), ``"us"`` (``.ssssss``), ``"ns"``
    (``.sssssssss``) or ``"s"`` (no fraction).
    """
    sec, frac = divmod(ns, _NS)
    c = _cache
    p = c[1] if c[0] == sec else _prefix(sec)
    if precision == "ms":
        return b"%b.%03d" % (p, frac // 1_000_000)
    if precision == "us":
        return b"%b.%06d" % (p, frac // 1_000)
    if precision == "ns":
        return b"%b.%09d" % (p, frac)
    if precision == "s":
        return p
    raise ValueError(f"precision must be 's', 'ms', 'us' or 'ns', not {precision!r}")


# Days before each month in a non-leap year.
_CUM_DAYS = (0, 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334)
_DIM = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_FRAC_MUL = {3: 1_000_000, 6: 1_000, 9: 1}
_day_cache: dict[bytes, int] = {}


def _days_from_civil(y: int, m: int, d: int) -> int:
    # Howard Hinnant's algorithm: days since 1970-01-01 of a proleptic Gregorian date.
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def parse_fix_timestamp(b: bytes) -> int | None:
    """Parse a FIX UTCTimestamp to int nanoseconds since the epoch; None if malformed."""
    try:
        n = len(b)
        if n < 17 or b[8] != 45 or b[11] != 58 or b[14] != 58:  # '-' ':' ':'
            return None
        date = b[:8]
        days = _day_cache.get(date)
        if days is None:
            if not date.isdigit():
                return None
            y = int(date[:4])
            m = int(date[4:6])
            d = int(date[6:8])
            if not 1 <= m <= 12 or d < 1:
                return None
            dim = _DIM[m] + (m == 2 and (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)))
            if d > dim:
                return None
            days = _days_from_civil(y, m, d)
            if len(_day_cache) < 4096:
                _day_cache[bytes(date)] = days
        hh = b[9:11]
        mm = b[12:14]
        ss = b[15:17]
        if not (hh.isdigit() and mm.isdigit() and ss.isdigit()):
            return None
        h = int(hh)
        mi = int(mm)
        s = int(ss)
        if h > 23 or mi > 59 or s > 60:
            return None
        ns = ((days * 24 + h) * 60 + mi) * 60 + s
        ns *= _NS
        if n == 17:
            return ns
        if b[17] != 46:  # '.'
            return None
        frac = b[18:]
        mul = _FRAC_MUL.get(len(frac))
        if mul is None or not frac.isdigit():
            return None
        return ns + int(frac) * mul
    except (TypeError, IndexError, ValueError):
        return None


# The last whole-second prefix (YYYYMMDD-HH:MM:SS) found valid: a session's timestamps share
# it for a second at a time, so most checks only look at the fraction.
_valid_prefix: bytes = b""


def is_fix_timestamp(b: bytes) -> bool:
    """True if ``b`` is a well-formed UTCTimestamp (same rules as parse_fix_timestamp)."""
    global _valid_prefix
    if len(b) >= 17 and b[:17] == _valid_prefix:
        n = len(b)
        if n == 17:
            return True
        frac = b[18:]
        return b[17] == 46 and len(frac) in _FRAC_MUL and frac.isdigit()
    if parse_fix_timestamp(b) is None:
        return False
    _valid_prefix = bytes(b[:17])
    return True
