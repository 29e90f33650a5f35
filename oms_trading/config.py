"""Configuration: TOML (stdlib tomllib) into typed, validated settings.

Every problem is reported as ``ConfigError`` naming the file, the key and what is wrong, so
`oms serve` can stop with one clear line instead of a traceback.
"""
from __future__ import annotations

import csv
import hashlib
import ssl
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any

from .compliance.limits import BUILTIN_DEFAULTS, INSTRUMENT_LIMITS, LimitValueError, parse_limits
from .model import STP_MODES, Account, Instrument

DEMO_CONFIG_NAME = "<built-in demo config>"
BEGIN_STRINGS = ("FIX.4.2", "FIX.4.4")
ROLES = ("risk", "compliance", "viewer")


DAY_NS = 86_400 * 10**9


def previous_utc_time_ns(time_of_day: str, now_ns: int) -> int:
    """The latest instant at or before ``now_ns`` whose UTC time of day is ``time_of_day``
    ("HH:MM" or "HH:MM:SS", as the config accepts)."""
    parts = [int(p) for p in time_of_day.split(":")] + [0]
    offset = (parts[0] * 3600 + parts[1] * 60 + parts[2]) * 10**9
    candidate = now_ns - now_ns % DAY_NS + offset
    return candidate if candidate <= now_ns else candidate - DAY_NS


class ConfigError(Exception):
    def __init__(self, source: str, key: str, problem: str) -> None:
        super().__init__(f"{source}: {key}: {problem}")
        self.source, self.key, self.problem = source, key, problem


@dataclass(frozen=True, slots=True)
class SessionConfig:
    sender_comp_id: str
    target_comp_id: str
    begin_string: str
    account: str | None = None
    accounts: tuple[str, ...] | None = None   # the accounts it may trade (tag 1); None: any configured
    password: str | None = None
    username: str | None = None    # Logon Username (553) required to match when set (4.2 too)
    heartbeat: int = 30            # 0: take HeartBtInt from the client's Logon
    reset_on_logon: bool = False
    cancel_on_disconnect: bool = False
    drop_copy: bool = False
    sending_time_tolerance_s: int | None = None   # None: the [fix] value
    validate: bool = True          # check messages against the data dictionary of begin_string

    @property
    def key(self) -> str:
        """The name used in the audit log and the store: the client's view, "CLIENT->OMS"."""
        return f"{self.target_comp_id}->{self.sender_comp_id}"


@dataclass(frozen=True, slots=True)
class HttpUser:
    name: str
    role: str
    token_sha256: str
    demo_token: str | None = None


@dataclass(slots=True)
class Config:
    source: str
    host: str = "127.0.0.1"
    fix_port: int = 9878
    http_port: int = 8080
    data_dir: Path = Path("./oms-data")
    fsync: str = "interval"
    fsync_interval_ms: int = 5
    rotate_mb: int = 256
    end_of_day: str = "21:00"
    finished_orders_in_memory: int = 100_000
    finished_ids_capacity: int = 2_000_000
    instruments: list[Instrument] = field(default_factory=list)
    accounts: list[Account] = field(default_factory=list)
    risk_defaults: dict[str, Any] = field(default_factory=dict)
    risk_accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    risk_instruments: dict[str, dict[str, Any]] = field(default_factory=dict)
    restricted: list[str] = field(default_factory=list)
    restricted_by_account: dict[str, list[str]] = field(default_factory=dict)
    # the credit limit sums exposure across instruments in one currency: the base currency,
    # reached from each instrument's currency by fx_rates[currency] (base units per unit)
    base_currency: str = "USD"
    fx_rates: dict[str, Decimal] = field(default_factory=dict)
    sending_time_precision: str = "ms"
    sending_time_tolerance_s: int = 120
    max_outbound_buffer_kb: int = 4096
    max_connections_before_logon: int = 64
    daily_reset: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    sessions: list[SessionConfig] = field(default_factory=list)
    users: list[HttpUser] = field(default_factory=list)
    four_eyes_factor: Decimal = Decimal("2")
    max_body_kb: int = 64
    idle_timeout_s: int = 15

    def instrument(self, symbol: str) -> Instrument | None:
        for inst in self.instruments:
            if inst.symbol == symbol:
                return inst
        return None


def demo_config_text() -> str:
    return resources.files("oms_trading").joinpath("demo_config.toml").read_text(encoding="utf-8")


def load_config(path: str | Path | None = None) -> Config:
    """Load ``path``, or the built-in demo config when None."""
    if path is None:
        return parse_config(demo_config_text(), DEMO_CONFIG_NAME, base_dir=Path.cwd())
    path = Path(path)
    try:
        # utf-8-sig: a byte order mark (Windows editors) is not "Invalid statement" at line 1
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(str(path), "(file)", f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:   # a ValueError: it was a traceback from `oms serve`
        raise ConfigError(str(path), "(file)", _not_utf8(exc)) from None
    return parse_config(text, str(path), base_dir=path.parent)


def parse_config(text: str, source: str, base_dir: Path) -> Config:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "(syntax)", str(exc)) from None
    return _Reader(raw, source, base_dir).read()


class _Reader:
    """Walks the raw TOML dict, checking each key's type; one method per section."""

    KNOWN_TOP = {"server", "journal", "trading", "reference_data", "instruments", "accounts",
                 "risk", "fix", "http"}

    def __init__(self, raw: dict, source: str, base_dir: Path) -> None:
        self.raw, self.source, self.base_dir = raw, source, base_dir

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.source, key, problem)

    def table(self, parent: dict, name: str, key: str) -> dict:
        value = parent.get(name, {})
        if not isinstance(value, dict):
            raise self.fail(key, "must be a table")
        return value

    def get(self, table: dict, name: str, key: str, kind: type | tuple, default: Any) -> Any:
        if name not in table:
            return default
        value = table[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            raise self.fail(f"{key}.{name}", f"must be {_kind_name(kinds)}, got {value!r}")
        if not isinstance(value, kinds):
            raise self.fail(f"{key}.{name}", f"must be {_kind_name(kinds)}, got {value!r}")
        return value

    def check_unknown(self, table: dict, allowed: set[str], key: str) -> None:
        for name in table:
            if name not in allowed:
                where = f"{key}.{name}" if key else name
                raise self.fail(where, f"unknown key (allowed: {', '.join(sorted(allowed))})")

    def read(self) -> Config:
        raw = self.raw
        self.check_unknown(raw, self.KNOWN_TOP, "")
        cfg = Config(source=self.source)
        self.read_server(cfg)
        self.read_journal(cfg)
        trading = self.table(raw, "trading", "trading")
        self.check_unknown(trading, {"end_of_day", "finished_orders_in_memory", "finished_ids_capacity"}, "trading")
        cfg.end_of_day = self.hhmm(trading, "end_of_day", "trading", "21:00")
        cfg.finished_orders_in_memory = self.get(trading, "finished_orders_in_memory", "trading", int, 100_000)
        if cfg.finished_orders_in_memory < 1:
            raise self.fail("trading.finished_orders_in_memory", "must be >= 1")
        cfg.finished_ids_capacity = self.get(trading, "finished_ids_capacity", "trading", int, 2_000_000)
        if not 1 <= cfg.finished_ids_capacity <= 2**34:
            raise self.fail("trading.finished_ids_capacity", "must be between 1 and 2**34")
        self.read_instruments(cfg)
        self.read_accounts(cfg)
        self.read_risk(cfg)
        self.read_fix(cfg)
        self.read_http(cfg)
        return cfg

    def read_server(self, cfg: Config) -> None:
        server = self.table(self.raw, "server", "server")
        self.check_unknown(server, {"host", "fix_port", "http_port", "data_dir"}, "server")
        cfg.host = self.get(server, "host", "server", str, cfg.host)
        cfg.fix_port = self.port(server, "fix_port", cfg.fix_port)
        cfg.http_port = self.port(server, "http_port", cfg.http_port)
        data_dir = self.get(server, "data_dir", "server", str, None)
        if data_dir is not None:
            path = Path(data_dir)
            cfg.data_dir = path if path.is_absolute() or self.source == DEMO_CONFIG_NAME else self.base_dir / path

    def port(self, table: dict, name: str, default: int) -> int:
        value = self.get(table, name, "server", int, default)
        if not 0 <= value <= 65535:
            raise self.fail(f"server.{name}", f"must be a TCP port 0..65535, got {value}")
        return value

    def read_journal(self, cfg: Config) -> None:
        journal = self.table(self.raw, "journal", "journal")
        self.check_unknown(journal, {"fsync", "fsync_interval_ms", "rotate_mb"}, "journal")
        cfg.fsync = self.get(journal, "fsync", "journal", str, cfg.fsync)
        if cfg.fsync not in ("interval", "batch", "os"):
            raise self.fail("journal.fsync", f"must be \"interval\", \"batch\" or \"os\", got {cfg.fsync!r}")
        cfg.fsync_interval_ms = self.get(journal, "fsync_interval_ms", "journal", int, cfg.fsync_interval_ms)
        if not 1 <= cfg.fsync_interval_ms <= 10_000:
            raise self.fail("journal.fsync_interval_ms", "must be between 1 and 10000")
        cfg.rotate_mb = self.get(journal, "rotate_mb", "journal", int, cfg.rotate_mb)
        if cfg.rotate_mb < 1:
            raise self.fail("journal.rotate_mb", "must be >= 1")

    def hhmm(self, table: dict, name: str, key: str, default: str | None) -> str | None:
        value = self.get(table, name, key, str, default)
        if value is None:
            return None
        parts = value.split(":")
        # ASCII digits only: str.isdigit() takes "²", which int() then refuses with a traceback
        if len(parts) not in (2, 3) or not all(p.isascii() and p.isdigit() and len(p) == 2 for p in parts) \
                or int(parts[0]) > 23 or any(int(p) > 59 for p in parts[1:]):
            raise self.fail(f"{key}.{name}", f"must be a UTC time \"HH:MM\" or \"HH:MM:SS\", got {value!r}")
        return value

    # -- reference data ---------------------------------------------------------------

    def read_instruments(self, cfg: Config) -> None:
        ref = self.table(self.raw, "reference_data", "reference_data")
        self.check_unknown(ref, {"instruments_csv", "accounts_csv"}, "reference_data")
        rows = self.reference_rows("instruments")
        seen: set[str] = set()
        for key, entry in rows:
            if not isinstance(entry, dict):
                raise self.fail(key, "must be a table")
            self.check_unknown(entry, {"symbol", "tick_size", "lot_size", "reference_price", "currency"}, key)
            symbol = entry.get("symbol")
            if not isinstance(symbol, str) or not symbol.strip():
                raise self.fail(f"{key}.symbol", "required: a non-empty string")
            symbol = symbol.strip()
            if symbol in seen:
                raise self.fail(f"{key}.symbol", f"duplicate instrument {symbol!r}")
            seen.add(symbol)
            tick = self.decimal(entry, "tick_size", key, required=True)
            if tick <= 0:
                raise self.fail(f"{key}.tick_size", f"must be > 0, got {tick}")
            lot = entry.get("lot_size", 1)
            if isinstance(lot, str) and lot.strip().isdigit():
                lot = int(lot)
            if isinstance(lot, bool) or not isinstance(lot, int) or lot < 1:
                raise self.fail(f"{key}.lot_size", f"must be a whole number >= 1, got {lot!r}")
            ref_price = self.decimal(entry, "reference_price", key, required=False)
            try:
                off_tick = ref_price is not None and ref_price % tick != 0
            except ArithmeticError:      # a quotient past the decimal precision: no multiple of it
                off_tick = True
            if ref_price is not None and (ref_price <= 0 or off_tick):
                raise self.fail(f"{key}.reference_price",
                                f"must be a positive multiple of the tick size {tick}, got {ref_price}")
            currency = entry.get("currency") or "USD"
            if not isinstance(currency, str):
                raise self.fail(f"{key}.currency", "must be a string")
            cfg.instruments.append(Instrument(symbol, tick, lot, ref_price, currency, index=len(cfg.instruments)))
        if not cfg.instruments:
            raise self.fail("instruments", "at least one instrument is required")

    def read_accounts(self, cfg: Config) -> None:
        rows = self.reference_rows("accounts")
        seen: set[str] = set()
        for key, entry in rows:
            if not isinstance(entry, dict):
                raise self.fail(key, "must be a table")
            self.check_unknown(entry, {"name", "description", "stp_mode"}, key)
            name = entry.get("name")
            if not isinstance(name, str) or not name.strip():
                raise self.fail(f"{key}.name", "required: a non-empty string")
            name = name.strip()
            if name in seen:
                raise self.fail(f"{key}.name", f"duplicate account {name!r}")
            seen.add(name)
            stp = entry.get("stp_mode") or "cancel_resting"
            if stp not in STP_MODES:
                raise self.fail(f"{key}.stp_mode", f"must be one of {', '.join(STP_MODES)}, got {stp!r}")
            cfg.accounts.append(Account(name, str(entry.get("description") or ""), stp, index=len(cfg.accounts)))
        if not cfg.accounts:
            raise self.fail("accounts", "at least one account is required")

    def reference_rows(self, section: str) -> list[tuple[str, dict]]:
        """(where, entry) of ``[[section]]`` tables, then of the rows of ``section_csv``."""
        entries = self.raw.get(section, [])
        if not isinstance(entries, list):
            raise self.fail(section, f"must be an array of tables ([[{section}]])")
        rows = [(f"{section}[{i}]", entry) for i, entry in enumerate(entries)]
        ref = self.table(self.raw, "reference_data", "reference_data")
        csv_path = self.get(ref, f"{section}_csv", "reference_data", str, None)
        if csv_path:
            rows.extend(self.csv_rows(csv_path, f"reference_data.{section}_csv"))
        return rows

    def csv_rows(self, name: str, key: str) -> list[tuple[str, dict]]:
        path = Path(name)
        if not path.is_absolute():
            path = self.base_dir / path
        try:
            # utf-8-sig: Excel's "CSV UTF-8" starts with a byte order mark, which would make
            # the first column's name "\ufeffsymbol", an unknown key that reads as "symbol"
            with path.open(newline="", encoding="utf-8-sig") as handle:
                reader = csv.DictReader(handle)
                rows = []
                for line_no, row in enumerate(reader, start=2):
                    clean = {k.strip(): (v.strip() if isinstance(v, str) else v)
                             for k, v in row.items() if k is not None and v not in (None, "")}
                    rows.append((f"{path}:{line_no}", clean))
                return rows
        except OSError as exc:
            raise self.fail(key, f"cannot read {path}: {exc.strerror or exc}") from None
        except csv.Error as exc:
            raise self.fail(key, f"bad CSV in {path}: {exc}") from None
        except UnicodeDecodeError as exc:   # e.g. saved as Windows-1252: was a traceback
            raise self.fail(key, f"cannot read {path}: {_not_utf8(exc)}") from None

    def decimal(self, entry: dict, name: str, key: str, required: bool) -> Decimal | None:
        value = entry.get(name)
        if value is None:
            if required:
                raise self.fail(f"{key}.{name}", "required: decimal text such as \"0.01\"")
            return None
        if isinstance(value, float) or isinstance(value, bool):
            raise self.fail(f"{key}.{name}", f"write it as decimal text (\"{value}\"), floats are not exact")
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            raise self.fail(f"{key}.{name}", f"not a decimal number: {value!r}") from None
        if not number.is_finite():
            raise self.fail(f"{key}.{name}", f"not a finite number: {value!r}")
        return number

    # -- risk ---------------------------------------------------------------------------

    def read_risk(self, cfg: Config) -> None:
        risk = self.table(self.raw, "risk", "risk")
        self.check_unknown(risk, {"defaults", "accounts", "instruments", "restricted",
                                  "restricted_by_account", "base_currency", "fx_rates"}, "risk")
        symbols = {i.symbol for i in cfg.instruments}
        accounts = {a.name for a in cfg.accounts}
        try:
            cfg.risk_defaults = dict(BUILTIN_DEFAULTS)
            cfg.risk_defaults.update(parse_limits(self.table(risk, "defaults", "risk.defaults"), "risk.defaults"))
            for name, values in self.table(risk, "accounts", "risk.accounts").items():
                if name not in accounts:
                    raise self.fail(f"risk.accounts.{name}", "no such account")
                if not isinstance(values, dict):
                    raise self.fail(f"risk.accounts.{name}", "must be a table")
                cfg.risk_accounts[name] = parse_limits(values, f"risk.accounts.{name}")
            for symbol, values in self.table(risk, "instruments", "risk.instruments").items():
                if symbol not in symbols:
                    raise self.fail(f"risk.instruments.{symbol}", "no such instrument")
                if not isinstance(values, dict):
                    raise self.fail(f"risk.instruments.{symbol}", "must be a table")
                bad = set(values) - INSTRUMENT_LIMITS
                if bad:
                    raise self.fail(f"risk.instruments.{symbol}.{sorted(bad)[0]}",
                                    f"not a per-instrument limit (allowed: {', '.join(sorted(INSTRUMENT_LIMITS))})")
                cfg.risk_instruments[symbol] = parse_limits(values, f"risk.instruments.{symbol}")
        except LimitValueError as exc:
            text = str(exc)
            key, _, problem = text.partition(": ")
            raise ConfigError(self.source, key, problem) from None
        restricted = self.get(risk, "restricted", "risk", list, [])
        for symbol in restricted:
            if not isinstance(symbol, str) or symbol not in symbols:
                raise self.fail("risk.restricted", f"no such instrument {symbol!r}")
        cfg.restricted = list(restricted)
        for name, symbols_list in self.table(risk, "restricted_by_account", "risk.restricted_by_account").items():
            if name not in accounts:
                raise self.fail(f"risk.restricted_by_account.{name}", "no such account")
            if not isinstance(symbols_list, list) or any(not isinstance(s, str) or s not in symbols
                                                         for s in symbols_list):
                raise self.fail(f"risk.restricted_by_account.{name}", "must be a list of known symbols")
            cfg.restricted_by_account[name] = list(symbols_list)
        self.read_fx(cfg, risk)

    def read_fx(self, cfg: Config, risk: dict) -> None:
        """Base currency and FX rates for the credit limit; every instrument currency needs one."""
        base = self.get(risk, "base_currency", "risk", str, "USD").strip()
        if not base:
            raise self.fail("risk.base_currency", "must be a currency code such as \"USD\"")
        cfg.base_currency = base
        rates: dict[str, Decimal] = {base: Decimal(1)}
        for currency, text in self.table(risk, "fx_rates", "risk.fx_rates").items():
            key = f"risk.fx_rates.{currency}"
            if not isinstance(text, str):
                raise self.fail(key, "must be decimal text (\"1.27\"), not a float")
            try:
                rate = Decimal(text)
            except ArithmeticError:
                raise self.fail(key, f"not a decimal number: {text!r}") from None
            if not rate.is_finite() or rate <= 0 or -int(rate.as_tuple().exponent) > 8:
                raise self.fail(key, f"must be positive with at most 8 decimals, got {text!r}")
            if currency == base and rate != 1:
                raise self.fail(key, f"the base currency {base} has rate 1")
            rates[currency] = rate
        for inst in cfg.instruments:
            if inst.currency not in rates:
                raise self.fail("risk.fx_rates", f"instrument {inst.symbol} is in {inst.currency}: the credit limit "
                                f"(in {base}) needs a rate for it, e.g. {inst.currency} = \"1.0\"")
        cfg.fx_rates = rates

    # -- FIX ----------------------------------------------------------------------------

    def read_fix(self, cfg: Config) -> None:
        fix = self.table(self.raw, "fix", "fix")
        self.check_unknown(fix, {"sending_time_precision", "sending_time_tolerance_s", "max_outbound_buffer_kb",
                                 "max_connections_before_logon", "daily_reset", "tls_cert", "tls_key", "sessions"},
                           "fix")
        cfg.sending_time_precision = self.get(fix, "sending_time_precision", "fix", str, "ms")
        if cfg.sending_time_precision not in ("ms", "us"):
            raise self.fail("fix.sending_time_precision", "must be \"ms\" or \"us\"")
        cfg.sending_time_tolerance_s = self.get(fix, "sending_time_tolerance_s", "fix", int, 120)
        if cfg.sending_time_tolerance_s < 1:
            raise self.fail("fix.sending_time_tolerance_s", "must be >= 1")
        cfg.max_outbound_buffer_kb = self.get(fix, "max_outbound_buffer_kb", "fix", int, 4096)
        if cfg.max_outbound_buffer_kb < 16:
            raise self.fail("fix.max_outbound_buffer_kb", "must be >= 16")
        cfg.max_connections_before_logon = self.get(fix, "max_connections_before_logon", "fix", int, 64)
        if cfg.max_connections_before_logon < 1:
            raise self.fail("fix.max_connections_before_logon", "must be >= 1")   # 0 would refuse every logon
        cfg.daily_reset = self.hhmm(fix, "daily_reset", "fix", None)
        for name in ("tls_cert", "tls_key"):
            value = self.get(fix, name, "fix", str, None)
            if value is not None:
                path = Path(value)
                setattr(cfg, name, path if path.is_absolute() else self.base_dir / path)
        if (cfg.tls_cert is None) != (cfg.tls_key is None):
            raise self.fail("fix.tls_cert", "tls_cert and tls_key must be set together")
        if cfg.tls_cert is not None:
            self.check_tls(cfg.tls_cert, cfg.tls_key)
        entries = fix.get("sessions", [])
        if not isinstance(entries, list):
            raise self.fail("fix.sessions", "must be an array of tables ([[fix.sessions]])")
        accounts = {a.name for a in cfg.accounts}
        seen: set[tuple[str, str]] = set()
        folders: dict[str, str] = {}       # the store folder DATA/fix/<TARGET>-<SENDER> of each session
        names: dict[str, int] = {}         # the session name TARGET->SENDER (SessionConfig.key) -> its index
        allowed = {"sender_comp_id", "target_comp_id", "begin_string", "account", "accounts", "password", "username",
                   "heartbeat",
                   "reset_on_logon", "cancel_on_disconnect", "drop_copy", "sending_time_tolerance_s", "validate"}
        for i, entry in enumerate(entries):
            key = f"fix.sessions[{i}]"
            if not isinstance(entry, dict):
                raise self.fail(key, "must be a table")
            self.check_unknown(entry, allowed, key)
            values = {}
            for name in ("sender_comp_id", "target_comp_id", "begin_string"):
                value = entry.get(name)
                if not isinstance(value, str) or not value.strip():
                    raise self.fail(f"{key}.{name}", "required: a non-empty string")
                values[name] = value.strip()
                if name != "begin_string" and any(c == "/" or c < " " or c == "\x7f" for c in values[name]):
                    raise self.fail(f"{key}.{name}", f"no '/' or control characters (it names the session's "
                                    f"message store folder and goes into every message), got {value!r}")
            if values["begin_string"] not in BEGIN_STRINGS:
                raise self.fail(f"{key}.begin_string", f"must be FIX.4.2 or FIX.4.4, got {values['begin_string']!r}")
            pair = (values["sender_comp_id"], values["target_comp_id"])
            if pair in seen:
                raise self.fail(f"{key}.target_comp_id", f"duplicate session {pair[1]}->{pair[0]}")
            seen.add(pair)
            folder = f"{pair[1]}-{pair[0]}"
            if folder in folders:
                raise self.fail(f"{key}.target_comp_id", f"the message store folder fix/{folder} is already "
                                f"that of session {folders[folder]}")
            folders[folder] = f"{pair[1]}->{pair[0]}"
            # the name TARGET->SENDER is the session's identity everywhere after the logon (order
            # ownership, report routing, journal records): "A->B" + "OMS" and "A" + "B->OMS" are
            # two pairs but one name, so each could cancel the other's orders and get its reports
            name = f"{pair[1]}->{pair[0]}"
            if name in names:
                raise self.fail(f"{key}.target_comp_id", f"the session name {name} is already that of session "
                                f"fix.sessions[{names[name]}] (a '->' inside a CompID)")
            names[name] = i
            account = self.get(entry, "account", key, str, None)
            if account is not None and account not in accounts:
                raise self.fail(f"{key}.account", f"no such account {account!r}")
            entitled = self.session_accounts(entry, key, accounts, account)
            heartbeat = self.get(entry, "heartbeat", key, int, 30)
            if not 0 <= heartbeat <= 3600:
                raise self.fail(f"{key}.heartbeat", "must be 0..3600 seconds")
            tolerance = self.get(entry, "sending_time_tolerance_s", key, int, None)
            if tolerance is not None and tolerance < 1:
                raise self.fail(f"{key}.sending_time_tolerance_s", "must be >= 1")
            cfg.sessions.append(SessionConfig(
                account=account,
                accounts=entitled,
                password=self.get(entry, "password", key, str, None),
                username=self.get(entry, "username", key, str, None),
                heartbeat=heartbeat,
                reset_on_logon=self.get(entry, "reset_on_logon", key, bool, False),
                cancel_on_disconnect=self.get(entry, "cancel_on_disconnect", key, bool, False),
                drop_copy=self.get(entry, "drop_copy", key, bool, False),
                sending_time_tolerance_s=tolerance,
                validate=self.get(entry, "validate", key, bool, True),
                **values,
            ))

    def session_accounts(self, entry: dict, key: str, known: set[str],
                         default: str | None) -> tuple[str, ...] | None:
        """The session's ``accounts`` list (its entitlement), or None when absent (any account)."""
        if "accounts" not in entry:
            return None
        names = entry["accounts"]
        if not isinstance(names, list) or not names or any(not isinstance(n, str) for n in names):
            raise self.fail(f"{key}.accounts", f"must be a non-empty list of account names, got {names!r}")
        for name in names:
            if name not in known:
                raise self.fail(f"{key}.accounts", f"no such account {name!r}")
        if default is not None and default not in names:
            raise self.fail(f"{key}.accounts", f"the session's default account {default!r} must be in accounts")
        if entry.get("drop_copy") is True:
            # a drop copy is sent every account's reports (fix.gateway): the list would limit only
            # what it may trade, while reading as what it may see
            raise self.fail(f"{key}.accounts", "not allowed on a drop_copy session: it receives the reports "
                                               "of every account, which accounts does not limit")
        return tuple(names)

    def check_tls(self, cert: Path, key: Path) -> None:
        """Load the pair now: ssl's own errors name neither the file nor the key."""
        for name, path in (("tls_cert", cert), ("tls_key", key)):
            try:
                path.open("rb").close()
            except OSError as exc:
                raise self.fail(f"fix.{name}", f"cannot read {path}: {exc.strerror or exc}") from None
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(str(cert), str(key))
        except (ssl.SSLError, OSError) as exc:
            raise self.fail("fix.tls_cert", f"{cert} and {key} are not a PEM certificate and its key: {exc}") from None

    # -- HTTP ---------------------------------------------------------------------------

    def read_http(self, cfg: Config) -> None:
        http = self.table(self.raw, "http", "http")
        self.check_unknown(http, {"four_eyes_factor", "max_body_kb", "idle_timeout_s", "users"}, "http")
        factor = self.decimal(http, "four_eyes_factor", "http", required=False)
        if factor is not None:
            if factor < 1:
                raise self.fail("http.four_eyes_factor", "must be >= 1")
            cfg.four_eyes_factor = factor
        cfg.max_body_kb = self.get(http, "max_body_kb", "http", int, 64)
        if cfg.max_body_kb < 1:
            raise self.fail("http.max_body_kb", "must be >= 1")     # 0 would refuse every request body
        cfg.idle_timeout_s = self.get(http, "idle_timeout_s", "http", int, 15)
        if cfg.idle_timeout_s < 1:
            raise self.fail("http.idle_timeout_s", "must be >= 1")  # 0 would mean never (aiohttp)
        entries = http.get("users", [])
        if not isinstance(entries, list):
            raise self.fail("http.users", "must be an array of tables ([[http.users]])")
        names: set[str] = set()
        by_digest: dict[str, str] = {}
        for i, entry in enumerate(entries):
            key = f"http.users[{i}]"
            if not isinstance(entry, dict):
                raise self.fail(key, "must be a table")
            self.check_unknown(entry, {"name", "role", "token_sha256", "demo_token"}, key)
            name = entry.get("name")
            if not isinstance(name, str) or not name:
                raise self.fail(f"{key}.name", "required: a non-empty string")
            if name in names:
                raise self.fail(f"{key}.name", f"duplicate user {name!r}")
            names.add(name)
            role = entry.get("role")
            if role not in ROLES:
                raise self.fail(f"{key}.role", f"must be one of {', '.join(ROLES)}, got {role!r}")
            digest = entry.get("token_sha256")
            if not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise self.fail(f"{key}.token_sha256", "required: 64 lowercase hex digits (sha256 of the token)")
            if digest in by_digest:
                # one token would authenticate as one of them only: requests audited under the wrong name
                raise self.fail(f"{key}.token_sha256", f"the same token as user {by_digest[digest]!r}")
            by_digest[digest] = name
            demo = self.get(entry, "demo_token", key, str, None)
            if demo is not None and hashlib.sha256(demo.encode()).hexdigest() != digest:
                raise self.fail(f"{key}.demo_token", "does not match token_sha256")
            cfg.users.append(HttpUser(name, role, digest, demo))


def _not_utf8(exc: UnicodeDecodeError) -> str:
    return f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}): save it as UTF-8"


def _kind_name(kinds: tuple) -> str:
    names = {str: "a string", int: "a whole number", bool: "true or false", list: "a list", dict: "a table"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)
