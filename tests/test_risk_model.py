"""The risk engine checked against an independent model (hypothesis RuleBasedStateMachine).

The real Engine with its RiskEngine and numba book, journaling to a directory, runs random
streams of new orders (limit DAY/GTC/IOC/FOK, market IOC/FOK; buy, sell, sell short) on three
accounts and three instruments in three currencies, crossing orders, cancels, replaces (qty
up/down, price changes, after partial fills), mass cancels, end of day, and risk-desk changes
between them (order size, notional, collars, credit, position limits, halts, restricted,
reduce-only, temporary changes that expire, kill switches engaged and released).

A plain Python model keeps, from the commands and the reports' fills alone, each order's
open quantity and price, each account's positions and fills, and the limits in force, with
the rules of compliance/risk.py's table and engine/positions.py's doc: open exposure per
account and instrument at the limit price in the instrument's currency; credit used =
resting notional + filled notional of the day, each amount converted to the base currency
and rounded up to the money unit; limits: the account's and the instrument's own values
stand in for the default, where both are set the stricter binds (0: off).

After every step: ``engine.positions()``, ``engine.exposures()`` and the HTTP /api/exposure
answer equal the model; every new order or replace the engine accepted passes every limit
the model has in force, and every risk rejection names the first rule the model finds
breached (with its limit and value); kill switches, mass cancels and the end of day cancel
exactly the orders the model expects. The replay rule and the end of each run rebuild an
engine from the journal on disk and compare its positions and exposures.

More examples: OMS_FUZZ_EXAMPLES=2000 (default 150, about 30 s).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import hypothesis.strategies as st
import orjson
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from oms_trading.audit import schema as ev
from oms_trading.audit.journal import Journal, iter_records
from oms_trading.book import NumbaBook
from oms_trading.compliance.limits import BUILTIN_DEFAULTS, INSTRUMENT_LIMITS, LIMIT_DEFS
from oms_trading.compliance.risk import RiskEngine
from oms_trading.config import parse_config
from oms_trading.engine.engine import Engine
from oms_trading.web.app import SERVER_KEY
from oms_trading.web.risk_api import get_exposure

FUZZ_EXAMPLES = int(os.environ.get("OMS_FUZZ_EXAMPLES", "150"))

CONFIG = """
[[instruments]]
symbol = "AAPL"
tick_size = "0.01"
reference_price = "100.00"

[[instruments]]
symbol = "VOD"
tick_size = "0.02"
lot_size = 10
reference_price = "50.00"
currency = "GBP"

[[instruments]]
symbol = "SAP"
tick_size = "0.05"
currency = "EUR"

[[accounts]]
name = "A1"
stp_mode = "cancel_resting"

[[accounts]]
name = "A2"
stp_mode = "none"

[[accounts]]
name = "A3"
stp_mode = "cancel_both"

[risk]
base_currency = "USD"

[risk.fx_rates]
GBP = "1.27"
EUR = "1.08567"

[risk.defaults]
max_order_qty = 600
max_order_notional = "60000"
price_collar_pct = "10"
price_collar_ticks = 0
credit_limit = "80000"
max_long_position = 900
max_short_position = 900
max_messages_per_second = 0
duplicate_window_ms = 0

[risk.accounts.A2]
max_order_notional = "30000"

[risk.instruments.VOD]
price_collar_pct = "5"

[risk.instruments.SAP]
price_collar_pct = "0"

[[fix.sessions]]
sender_comp_id = "OMS"
target_comp_id = "S1"
begin_string = "FIX.4.4"
account = "A1"

[[fix.sessions]]
sender_comp_id = "OMS"
target_comp_id = "S2"
begin_string = "FIX.4.4"
account = "A2"
"""
S1, S2, S3 = "S1->OMS", "S2->OMS", "S3->OMS"
SESSIONS = (S1, S2, S3)
ACCOUNTS = ("A1", "A2", "A3")
SESSION_ACCOUNT = {S1: "A1", S2: "A2", S3: "A3"}
SYMBOLS = ("AAPL", "VOD", "SAP")
TICK = {"AAPL": Decimal("0.01"), "VOD": Decimal("0.02"), "SAP": Decimal("0.05")}
CONF_REF = {"AAPL": 10_000, "VOD": 2_500, "SAP": 0}      # configured reference price, ticks
RATE = {"AAPL": Fraction(1), "VOD": Fraction("1.27"), "SAP": Fraction("1.08567")}
UNIT = Decimal("0.01")                                     # money unit: the finest tick's decimals
# price in ticks around each reference (SAP has none: around 100.00)
CENTER = {"AAPL": 10_000, "VOD": 2_500, "SAP": 2_000}
RISK_RULES = {"kill_switch", "trading_halt", "restricted_instrument", "max_order_qty", "no_reference_price",
              "price_collar_pct", "price_collar_ticks", "max_order_notional", "reduce_only", "max_long_position",
              "max_short_position", "credit_limit", "duplicate_order", "message_rate"}
LIMIT_VALUES = {
    "max_order_qty": ["0", "50", "150", "300", "600"],
    "max_order_notional": ["0", "4000.50", "12000", "30000", "60000"],
    "price_collar_pct": ["0", "1.5", "4", "10"],
    "price_collar_ticks": ["0", "20", "150", "600"],
    "credit_limit": ["0", "9000", "25000.75", "60000", "200000"],
    "max_long_position": ["0", "40", "150", "400", "900"],
    "max_short_position": ["0", "40", "150", "400", "900"],
}
LIMIT_SCOPES = ["default", "account:A1", "account:A2", "account:A3", "instrument:AAPL", "instrument:VOD",
                "instrument:SAP"]
KILL_SCOPES = ["global", "account:A1", "account:A3", "instrument:AAPL", "instrument:VOD", f"session:{S2}"]
FILL_TYPES = {ev.ORDER_FILLED, ev.ORDER_PARTIALLY_FILLED}
# a limit set right at what the next order makes of it, or none (see RiskModelMachine.tighten)
TIGHT = st.none() | st.none() | st.tuples(st.sampled_from(["credit_limit", "credit_limit", "position",
                                                            "max_order_notional", "max_order_qty"]),
                                          st.sampled_from([0, -1, 1]))
CLOSE_TYPES = {ev.ORDER_CANCELED, ev.ORDER_EXPIRED}


def ceil_units(amount: Fraction) -> int:
    """An amount of money in money units, rounded up (the credit limit's sums)."""
    q = amount / Fraction(UNIT)
    return -((-q.numerator) // q.denominator)


def floor_units(amount: Decimal) -> int:
    return int(amount / UNIT)


def money(units: int) -> str:
    return f"{Decimal(units) * UNIT:.2f}"


def parse_value(name: str, text: str | None):
    if text is None:
        return None
    return Decimal(text) if LIMIT_DEFS[name].kind == "decimal" else int(text)


class Model:
    """What the risk desk expects, from the commands and the fills reported."""

    def __init__(self, cfg) -> None:
        default = dict(BUILTIN_DEFAULTS)
        default.update(cfg.risk_defaults or {})
        self.layers: dict[str, dict] = {"default": default}
        for name, values in (cfg.risk_accounts or {}).items():
            self.layers[f"account:{name}"] = dict(values)
        for symbol, values in (cfg.risk_instruments or {}).items():
            self.layers[f"instrument:{symbol}"] = dict(values)
        self.pending: dict[tuple[str, str], tuple[int, object]] = {}   # (scope, limit) -> (expires, restore)
        self.killed: set[str] = set()
        self.halted: set[str] = set()
        self.restricted: set[str] = set()
        self.restricted_pair: set[tuple[str, str]] = set()
        self.reduce_only: set[str] = set()
        self.orders: dict[int, dict] = {}        # open orders by OrderID
        self.last_trade: dict[str, int] = {}
        self.pos = {(a, s): 0 for a in ACCOUNTS for s in SYMBOLS}
        self.bought = dict.fromkeys(self.pos, 0)
        self.sold = dict.fromkeys(self.pos, 0)
        self.bought_amt = dict.fromkeys(self.pos, Decimal(0))
        self.sold_amt = dict.fromkeys(self.pos, Decimal(0))
        self.filled_units = dict.fromkeys(ACCOUNTS, 0)   # base currency, fills of the day

    # -- limits --------------------------------------------------------------------------

    def eff(self, name: str, acct: str | None = None, sym: str | None = None):
        own = self.layers.get(f"account:{acct}", {}) if acct else {}
        inst = self.layers.get(f"instrument:{sym}", {}) if sym and name in INSTRUMENT_LIMITS else {}
        if name in own and name in inst:
            a, b = own[name], inst[name]
            return b if not a else a if not b else min(a, b)
        if name in inst:
            return inst[name]
        if name in own:
            return own[name]
        return self.layers["default"][name]

    def set_limit(self, scope: str, name: str, value, expires: int | None) -> None:
        layer = self.layers.setdefault(scope, {})
        key = (scope, name)
        if expires is not None:
            restore = self.pending[key][1] if key in self.pending else layer.get(name)
            self.pending[key] = (expires, restore)
        else:
            self.pending.pop(key, None)
        if value is None:
            layer.pop(name, None)
        else:
            layer[name] = value

    def expire(self, ts: int) -> list[tuple[str, str]]:
        due = sorted((exp, key) for key, (exp, _r) in self.pending.items() if exp <= ts)
        for _exp, key in due:
            _, restore = self.pending.pop(key)
            layer = self.layers.setdefault(key[0], {})
            if restore is None:
                layer.pop(key[1], None)
            else:
                layer[key[1]] = restore
        return [key for _e, key in due]

    # -- exposure ------------------------------------------------------------------------

    def ref(self, sym: str) -> int:
        return self.last_trade.get(sym) or CONF_REF[sym]

    def open_qty(self, acct: str, sym: str, buy: bool) -> int:
        return sum(o["leaves"] for o in self.orders.values()
                   if o["account"] == acct and o["symbol"] == sym and o["buy"] == buy)

    def open_amount(self, acct: str, sym: str, buy: bool) -> Decimal:
        return sum((o["leaves"] * o["price"] * TICK[sym] for o in self.orders.values()
                    if o["account"] == acct and o["symbol"] == sym and o["buy"] == buy), Decimal(0))

    @staticmethod
    def order_open_units(o: dict) -> int:
        return ceil_units(Fraction(o["leaves"] * o["price"]) * Fraction(TICK[o["symbol"]]) * RATE[o["symbol"]])

    def open_units(self, acct: str) -> int:
        return sum(self.order_open_units(o) for o in self.orders.values() if o["account"] == acct)

    # -- the pre-trade verdict -------------------------------------------------------------

    def verdict(self, session: str, acct: str, sym: str, buy: bool, price: int, qty: int,
                replaced: dict | None = None) -> tuple | None:
        """The first rule (risk.py's table, in its order) the order breaches, as (rule, limit,
        actual) or (rule, scopes) for the kill switch; None: passes. price 0: market order.
        ``replaced``: the open order a replace takes out."""
        scopes = {s for s in ("global", f"account:{acct}", f"instrument:{sym}", f"session:{session}")
                  if s in self.killed}
        if scopes:
            return ("kill_switch", scopes)
        if sym in self.halted:
            return ("trading_halt", None, None)
        if sym in self.restricted or (acct, sym) in self.restricted_pair:
            return ("restricted_instrument", None, None)
        lim = self.eff("max_order_qty", acct, sym)
        if lim and qty > lim:
            return ("max_order_qty", str(lim), str(qty))
        market = price == 0
        ref = self.ref(sym)
        notional = self.eff("max_order_notional", acct, sym)
        credit = self.eff("credit_limit", acct)
        pct = self.eff("price_collar_pct", acct, sym)
        ticks = self.eff("price_collar_ticks", acct, sym)
        if not ref and ((market and (notional or credit)) or (not market and (pct or ticks))):
            return ("no_reference_price", None, None)
        if not market and ref:
            dev = abs(price - ref)
            if pct and dev * 100 > pct * ref:
                return ("price_collar_pct", f"{pct.normalize():f}", None)
            if ticks and dev > ticks:
                return ("price_collar_ticks", str(ticks), str(dev))
        worst, used, amount = self.probe(acct, sym, buy, price, qty, replaced)
        if notional and amount > notional:
            return ("max_order_notional", money(floor_units(notional)), f"{amount:.2f}")
        if acct in self.reduce_only and worst > 0:
            return ("reduce_only", "0", str(worst if buy else -worst))
        lim = self.eff("max_long_position" if buy else "max_short_position", acct, sym)
        if lim and worst > lim:
            return ("max_long_position" if buy else "max_short_position", str(lim), str(worst))
        if credit and used > floor_units(credit):
            return ("credit_limit", money(floor_units(credit)), money(used))
        return None

    def probe(self, acct: str, sym: str, buy: bool, price: int, qty: int, replaced: dict | None = None):
        """What the order would make of the limits' quantities: (worst-case long (buy) or short
        (sell) position with it, the account's credit used with it (base-currency money units),
        its notional (instrument currency); a market order at the reference price). A replace
        takes the replaced order's leaves out and puts its new leaves (qty - cum) in."""
        px = price or self.ref(sym)
        amount = px * qty * TICK[sym]
        old_leaves = replaced["leaves"] if replaced else 0
        adds = qty - (replaced["cum"] if replaced else 0)
        pos = self.pos[(acct, sym)]
        worst = (pos if buy else -pos) + self.open_qty(acct, sym, buy) - old_leaves + adds
        used = self.open_units(acct) + self.filled_units[acct]
        if replaced:
            used -= self.order_open_units(replaced)
        used += ceil_units(Fraction(px * adds) * Fraction(TICK[sym]) * RATE[sym])
        return worst, used, amount

    # -- the reports ---------------------------------------------------------------------

    def fill(self, e: dict) -> None:
        o = self.orders[e["order_id"]]
        sym, acct, qty = o["symbol"], o["account"], e["last_qty"]
        px = int(Decimal(e["last_px"]) / TICK[sym])
        assert 0 < qty <= o["leaves"], (e, o)
        if o["price"]:   # a fill never trades through the order's limit price
            assert (px <= o["price"]) if o["buy"] else (px >= o["price"]), (e, o)
        o["leaves"] -= qty
        o["cum"] += qty
        key = (acct, sym)
        amount = qty * px * TICK[sym]
        if o["buy"]:
            self.pos[key] += qty
            self.bought[key] += qty
            self.bought_amt[key] += amount
        else:
            self.pos[key] -= qty
            self.sold[key] += qty
            self.sold_amt[key] += amount
        self.filled_units[acct] += ceil_units(Fraction(amount) * RATE[sym])
        self.last_trade[sym] = px
        assert e["leaves_qty"] == o["leaves"] and e["cum_qty"] == o["cum"], (e, o)
        if o["leaves"] == 0:
            del self.orders[e["order_id"]]

    def close(self, e: dict) -> None:
        self.orders.pop(e["order_id"])


class RiskModelMachine(RuleBasedStateMachine):

    def __init__(self) -> None:
        super().__init__()
        self.cfg = parse_config(CONFIG, "<test>", Path("."))
        self.dir = Path(tempfile.mkdtemp(prefix="oms-risk-model-"))
        self.journal = Journal(self.dir / "journal", fsync="os")
        self.eng = self.make_engine(self.journal)
        self.model = Model(self.cfg)
        self.ts = 1_000_000_000
        self.n = 0
        self.cl: dict[int, tuple[str, str]] = {}     # open OrderID -> (session, current ClOrdID)
        self._exposure_request = None

    def make_engine(self, journal):
        return Engine(self.cfg, journal, lambda: NumbaBook(capacity=128), risk=RiskEngine(self.cfg))

    def teardown(self) -> None:
        try:
            self.check_replay()
        finally:
            self.journal.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- driving -------------------------------------------------------------------------

    def run(self, cmd: dict) -> list[dict]:
        self.ts += 10_000_000
        cmd["ts"] = self.ts
        events = self.eng.process(cmd)
        self.eng.flush()
        return [e for e in events if e["type"] not in ev.COMMAND_TYPES and e["type"] != ev.ENGINE_RULES]

    def next_cl(self) -> str:
        self.n += 1
        return f"c{self.n}"

    def apply_order_reports(self, rs: list[dict], accepted_cmd: dict | None = None) -> None:
        """Fold fills, cancels and expiries into the model (STP and IOC/FOK outcomes are the
        book's to decide; their effect on exposure is the model's)."""
        for e in rs:
            kind = e["type"]
            if kind == ev.ORDER_ACCEPTED:
                c = accepted_cmd
                sym = c["symbol"]
                price = int(Decimal(c["price"]) / TICK[sym]) if c["ord_type"] == "2" else 0
                self.model.orders[e["order_id"]] = {
                    "account": c["account"], "symbol": sym, "buy": c["side"] == "1", "price": price,
                    "qty": c["qty"], "cum": 0, "leaves": c["qty"], "session": c["session"], "tif": c["tif"],
                    "market": c["ord_type"] == "1"}
                self.cl[e["order_id"]] = (c["session"], c["cl_ord_id"])
            elif kind in FILL_TYPES:
                self.model.fill(e)
            elif kind in CLOSE_TYPES:
                self.model.close(e)
        for oid in [oid for oid in self.cl if oid not in self.model.orders]:
            del self.cl[oid]
        for o in self.model.orders.values():
            assert not o["market"] and o["tif"] in "01", f"an IOC/FOK/market order rests: {o}"

    # -- rules ---------------------------------------------------------------------------

    @rule(session=st.sampled_from(SESSIONS), symbol=st.sampled_from(SYMBOLS), side=st.sampled_from("1125"),
          kind=st.sampled_from(["day", "gtc", "gtc", "ioc", "fok", "mkt_ioc", "mkt_fok"]),
          qty=st.sampled_from([10, 20, 50, 100, 150, 300, 600, 700]), offset=st.integers(-700, 700), tight=TIGHT)
    def new_order(self, session, symbol, side, kind, qty, offset, tight):
        center = self.model.ref(symbol) or CENTER[symbol]
        self.send_new(session, symbol, side, kind, qty, max(1, center + offset // (1 if symbol == "AAPL" else 4)),
                      tight)

    @precondition(lambda self: self.cl)
    @rule(data=st.data(), session=st.sampled_from(SESSIONS), kind=st.sampled_from(["day", "gtc", "ioc", "fok",
                                                                                   "mkt_ioc", "mkt_fok"]),
          part=st.sampled_from([1, 2, 3]), through=st.sampled_from([0, 0, 1, 10]), tight=TIGHT)
    def cross_order(self, data, session, kind, part, through, tight):
        """An order against a resting one: part 1 takes half of it, 2 all, 3 more than it holds."""
        o = self.model.orders[data.draw(st.sampled_from(sorted(self.cl)))]
        qty = max(10, {1: o["leaves"] // 20 * 10, 2: o["leaves"], 3: o["leaves"] + 50}[part])
        price = max(1, o["price"] + (through if not o["buy"] else -through))
        side = data.draw(st.sampled_from("25")) if o["buy"] else "1"
        self.send_new(session, o["symbol"], side, kind, qty, price, tight)

    def send_new(self, session, symbol, side, kind, qty, price, tight) -> None:
        acct = SESSION_ACCOUNT[session]
        market = kind.startswith("mkt")
        self.tighten(tight, acct, symbol, side == "1", 0 if market else price, qty)
        tif = {"day": "0", "gtc": "1", "ioc": "3", "fok": "4", "mkt_ioc": "3", "mkt_fok": "4"}[kind]
        cmd = {"type": ev.ORDER_RECEIVED, "ts": 0, "session": session, "cl_ord_id": self.next_cl(),
               "account": acct, "symbol": symbol, "side": side, "ord_type": "1" if market else "2", "tif": tif,
               "price": None if market else f"{price * TICK[symbol]:f}", "qty": qty}
        expected = self.model.verdict(session, acct, symbol, side == "1", 0 if market else price, qty)
        rs = self.run(dict(cmd))
        first = rs[0]
        if expected is None:
            assert first["type"] == ev.ORDER_ACCEPTED, (cmd, first, self.context(acct, symbol))
        else:
            assert first["type"] == ev.ORDER_REJECTED, (cmd, expected, first, self.context(acct, symbol))
            self.check_rejection(first, expected)
            assert len(rs) == 1
            return
        self.apply_order_reports(rs, cmd)

    @precondition(lambda self: self.cl)
    @rule(data=st.data())
    def cancel_order(self, data):
        oid = data.draw(st.sampled_from(sorted(self.cl)))
        session, orig = self.cl[oid]
        cl = self.next_cl()
        rs = self.run({"type": ev.CANCEL_REQUESTED, "ts": 0, "session": session, "cl_ord_id": cl,
                       "orig_cl_ord_id": orig, "order_id": None, "symbol": None, "side": None})
        assert [e["type"] for e in rs] == [ev.ORDER_CANCELED] and rs[0]["order_id"] == oid, rs
        self.apply_order_reports(rs)

    @precondition(lambda self: self.cl)
    @rule(data=st.data(), qty_change=st.sampled_from([-50, -20, -10, 0, 10, 50, 200]),
          price_move=st.sampled_from([0, 0, -30, -5, 5, 30, 400]), tight=TIGHT)
    def replace_order(self, data, qty_change, price_move, tight):
        oid = data.draw(st.sampled_from(sorted(self.cl)))
        session, orig = self.cl[oid]
        o = self.model.orders[oid]
        sym = o["symbol"]
        new_qty = max(10, o["qty"] + qty_change)
        price = max(1, o["price"] + price_move)
        self.tighten(tight, o["account"], sym, o["buy"], price, new_qty, replaced=o)
        cl = self.next_cl()
        cmd = {"type": ev.REPLACE_REQUESTED, "ts": 0, "session": session, "cl_ord_id": cl, "orig_cl_ord_id": orig,
               "order_id": None, "symbol": None, "side": None, "ord_type": None, "tif": None,
               "price": f"{price * TICK[sym]:f}", "qty": new_qty}
        if price == o["price"] and new_qty <= o["qty"]:
            expected = None   # a pure reduction always passes
        else:
            expected = self.model.verdict(o["session"], o["account"], sym, o["buy"], price, new_qty, replaced=o)
        rs = self.run(cmd)
        first = rs[0]
        if expected is not None:
            assert first["type"] == ev.REPLACE_REJECTED, (cmd, o, expected, first, self.context(o["account"], sym))
            self.check_rejection(first, expected)
            return
        assert first["type"] == ev.ORDER_REPLACED, (cmd, o, first, self.context(o["account"], sym))
        self.cl[oid] = (session, cl)
        if new_qty <= o["cum"]:
            del self.model.orders[oid]     # nothing left working: the order is complete
        else:
            o.update(qty=new_qty, price=price, leaves=new_qty - o["cum"])
        assert first["leaves_qty"] == (o["leaves"] if oid in self.model.orders else 0), (first, o)
        self.apply_order_reports(rs[1:])

    @rule(data=st.data(), what=st.sampled_from(["limit", "limit", "limit", "flag", "kill", "clock", "mass"]))
    def control(self, data, what):
        """Risk-desk changes, mass cancels and the clock, between orders (one rule: orders
        stay most of each run)."""
        if what == "limit":
            self.change_limit(data.draw(st.sampled_from(LIMIT_SCOPES)), data.draw(st.sampled_from(sorted(LIMIT_VALUES))),
                              data, data.draw(st.booleans()), data.draw(st.booleans()))
        elif what == "flag":
            self.change_flag(data.draw(st.sampled_from(["halted", "restricted", "restricted_pair", "reduce_only"])),
                             data.draw(st.sampled_from(SYMBOLS)), data.draw(st.sampled_from(ACCOUNTS)),
                             data.draw(st.sampled_from([True, False, False])))
        elif what == "kill":
            self.kill_switch(data.draw(st.sampled_from(KILL_SCOPES)), data.draw(st.sampled_from([True, False, False])))
        elif what == "clock":
            self.clock(data.draw(st.booleans()), data.draw(st.integers(0, 5)))
        else:
            self.mass_cancel(data.draw(st.sampled_from(SESSIONS)), data.draw(st.none() | st.sampled_from(SYMBOLS)),
                             data.draw(st.none() | st.sampled_from("12")))

    def tighten(self, tight, acct, sym, buy, price, qty, replaced=None) -> None:
        """The desk sets a limit of the order's account right at what the order would make of
        it (``slack`` 0: exactly at the limit, passes; -1: one unit over, refused)."""
        if tight is None:
            return
        name, slack = tight
        worst, used, amount = self.model.probe(acct, sym, buy, price, qty, replaced)
        if name == "credit_limit":
            value = money(used + slack)
        elif name == "max_order_notional":
            value = f"{amount + slack * UNIT:.2f}"
        elif name == "position":
            name, value = ("max_long_position" if buy else "max_short_position"), str(worst + slack)
        else:
            value = str(qty + slack)
        if Decimal(value) > 0:
            self.change_limit(f"account:{acct}", name, None, False, False, text=value)

    def mass_cancel(self, session, symbol, side):
        expected = {oid for oid, o in self.model.orders.items() if o["session"] == session
                    and (symbol is None or o["symbol"] == symbol) and (side is None or o["buy"] == (side == "1"))}
        rs = self.run({"type": ev.MASS_CANCEL_REQUESTED, "ts": 0, "session": session, "cl_ord_id": self.next_cl(),
                       "mass_cancel_type": "7" if symbol is None else "1", "symbol": symbol, "side": side,
                       "account": None})
        assert {e["order_id"] for e in rs if e["type"] == ev.ORDER_CANCELED} == expected
        self.apply_order_reports(rs)

    def change_limit(self, scope, name, data, remove, temporary, text=None):
        if scope.startswith("instrument:") and name not in INSTRUMENT_LIMITS:
            scope = "account:A1"
        if data is not None:
            text = None if remove and scope != "default" else data.draw(st.sampled_from(LIMIT_VALUES[name]))
        expires = self.ts + 10_000_000 * data.draw(st.integers(2, 6)) if temporary else None
        rs = self.run({"type": ev.LIMIT_CHANGE_REQUESTED, "ts": 0, "user": "risk1", "approver": None,
                       "reason": "model", "scope": scope, "limit": name, "new_value": text, "expires_ts": expires})
        assert [e["type"] for e in rs] == [ev.LIMIT_CHANGED], rs
        self.model.set_limit(scope, name, parse_value(name, text), expires)

    def change_flag(self, flag, symbol, acct, on):
        m = self.model
        if flag == "halted":
            scope, target, key = f"instrument:{symbol}", m.halted, symbol
        elif flag == "restricted":
            scope, target, key = f"instrument:{symbol}", m.restricted, symbol
        elif flag == "restricted_pair":
            flag, scope, target, key = "restricted", f"account:{acct}/instrument:{symbol}", m.restricted_pair, (acct, symbol)
        else:
            scope, target, key = f"account:{acct}", m.reduce_only, acct
        rs = self.run({"type": ev.LIMIT_CHANGE_REQUESTED, "ts": 0, "user": "risk1", "approver": None,
                       "reason": "model", "scope": scope, "limit": flag, "new_value": "true" if on else "false",
                       "expires_ts": None})
        assert [e["type"] for e in rs] == [ev.LIMIT_CHANGED], rs
        (target.add if on else target.discard)(key)

    def kill_switch(self, scope, engage):
        m = self.model
        rs = self.run({"type": ev.KILL_SWITCH_REQUESTED, "ts": 0, "user": "risk1", "approver": None,
                       "reason": "model", "scope": scope, "action": "engage" if engage else "release"})
        if not engage:
            if scope in m.killed:
                assert [e["type"] for e in rs] == [ev.KILL_SWITCH_RELEASED], rs
                m.killed.discard(scope)
            else:
                assert [e["type"] for e in rs] == [ev.LIMIT_CHANGE_REJECTED], rs
            return
        kind, _, name = scope.partition(":")
        expected = {oid for oid, o in m.orders.items() if kind == "global"
                    or (kind == "account" and o["account"] == name) or (kind == "instrument" and o["symbol"] == name)
                    or (kind == "session" and o["session"] == name)}
        assert rs[0]["type"] == ev.KILL_SWITCH_ENGAGED and rs[0]["affected"] == len(expected), rs
        assert {e["order_id"] for e in rs[1:] if e["type"] == ev.ORDER_CANCELED} == expected
        m.killed.add(scope)
        self.apply_order_reports(rs[1:])

    def clock(self, eod, wait):
        self.ts += 10_000_000 * wait
        m = self.model
        day = {oid for oid, o in m.orders.items() if o["tif"] == "0"} if eod else set()
        rs = self.run({"type": ev.CLOCK, "ts": 0, "end_of_day": int(eod)})
        assert {e["order_id"] for e in rs if e["type"] == ev.ORDER_EXPIRED} == day
        self.apply_order_reports([e for e in rs if e["type"] == ev.ORDER_EXPIRED])
        if eod:
            m.filled_units = dict.fromkeys(ACCOUNTS, 0)
        expired = m.expire(self.ts)
        assert sorted((e["scope"], e["limit"]) for e in rs if e["type"] == ev.LIMIT_EXPIRED) == sorted(expired)

    @rule()
    def replay(self):
        self.check_replay()

    # -- checks --------------------------------------------------------------------------

    def context(self, acct: str, sym: str) -> dict:
        m = self.model
        return {"model_pos": m.pos[(acct, sym)], "model_open_buy": m.open_qty(acct, sym, True),
                "model_open_sell": m.open_qty(acct, sym, False), "model_ref": m.ref(sym),
                "model_credit_used": m.open_units(acct) + m.filled_units[acct],
                "limits": {n: str(m.eff(n, acct, sym)) for n in LIMIT_VALUES},
                "engine": [r for r in self.eng.positions(acct) if r["symbol"] == sym],
                "engine_exposure": self.eng.exposures(acct)}

    @staticmethod
    def check_rejection(e: dict, expected: tuple) -> None:
        assert e["rule"] in RISK_RULES, e
        assert e["rule"] == expected[0], (expected, e)
        if expected[0] == "kill_switch":
            assert e["limit_value"] in expected[1], (expected, e)
            return
        _, limit, actual = expected
        if limit is not None:
            assert e["limit_value"] == limit, (expected, e)
        if actual is not None:
            assert e["actual_value"] == actual, (expected, e)

    @invariant()
    def exposures_equal_model(self):
        m = self.model
        rows = {(r["account"], r["symbol"]): r for r in self.eng.positions()}
        for acct in ACCOUNTS:
            for sym in SYMBOLS:
                key = (acct, sym)
                want = {"position": m.pos[key], "bought_qty": m.bought[key], "sold_qty": m.sold[key],
                        "bought_notional": m.bought_amt[key], "sold_notional": m.sold_amt[key],
                        "open_buy_qty": m.open_qty(acct, sym, True), "open_sell_qty": m.open_qty(acct, sym, False),
                        "open_buy_notional": m.open_amount(acct, sym, True),
                        "open_sell_notional": m.open_amount(acct, sym, False)}
                want["worst_case_long"] = want["position"] + want["open_buy_qty"]
                want["worst_case_short"] = want["open_sell_qty"] - want["position"]
                row = rows.get(key)
                if row is None:
                    assert not any(want.values()), (key, want)
                    continue
                got = {k: (Decimal(row[k]) if isinstance(want[k], Decimal) else row[k]) for k in want}
                assert got == want, (key, got, want)
        exposure = {r["account"]: r for r in self.eng.exposures()}
        http = self.http_exposure()
        for acct in ACCOUNTS:
            open_units = m.open_units(acct)
            credit = floor_units(m.eff("credit_limit", acct))
            want = {"account": acct, "currency": "USD", "open_notional": money(open_units),
                    "filled_notional_today": money(m.filled_units[acct]),
                    "gross_exposure": money(open_units + m.filled_units[acct]),
                    "credit_limit": money(credit) if credit else None, "reduce_only": acct in m.reduce_only,
                    "kill_switch": f"account:{acct}" in m.killed}
            assert exposure[acct] == want, (exposure[acct], want)
            assert http[acct] == dict(want, kill_switch=want["kill_switch"] or "global" in m.killed)

    def http_exposure(self) -> dict:
        """GET /api/exposure, through its handler (which awaits nothing: run to its return)."""
        if self._exposure_request is None:
            app = web.Application()
            app[SERVER_KEY] = SimpleNamespace(engine=self.eng, risk=self.eng.risk)
            self._exposure_request = make_mocked_request("GET", "/api/exposure", app=app)
        coro = get_exposure(self._exposure_request)
        try:
            coro.send(None)
        except StopIteration as stop:
            response = stop.value
        else:
            raise AssertionError("get_exposure awaited something")
        return {r["account"]: r for r in orjson.loads(response.body)["exposure"]}

    def check_replay(self) -> None:
        """An engine rebuilt from the journal on disk has the same positions and exposures."""
        self.journal.flush()
        fresh = self.make_engine(None)
        fresh.replay(iter_records(self.dir / "journal"))
        assert fresh.positions() == self.eng.positions()
        assert fresh.exposures() == self.eng.exposures()
        assert (fresh.pos.mem == self.eng.pos.mem).all()
        assert fresh.replay_check.differences == 0, fresh.replay_check.first.describe()


TestRiskModel = RiskModelMachine.TestCase
TestRiskModel.settings = settings(max_examples=FUZZ_EXAMPLES, stateful_step_count=50, deadline=None,
                                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


# -- what the model found, each as a plain test ----------------------------------------------------

def _engine():
    from tests.test_engine_common import MemJournal
    cfg = parse_config(CONFIG, "<test>", Path("."))
    return Engine(cfg, MemJournal(), lambda: NumbaBook(capacity=16), risk=RiskEngine(cfg))


def _reports(events):
    return [e for e in events if e["type"] not in ev.COMMAND_TYPES and e["type"] != ev.ENGINE_RULES]


def _vod(cl, session, side, qty, price):
    return {"type": ev.ORDER_RECEIVED, "ts": 1, "session": session, "cl_ord_id": cl,
            "account": SESSION_ACCOUNT[session], "symbol": "VOD", "side": side, "ord_type": "2", "tif": "1",
            "price": price, "qty": qty}


def _partly_filled_gbp_buy(eng):
    """A1 buys 20 VOD (GBP, 1.27 USD) at 50.02, 10 of them filled: 635.26 USD filled + 635.26 resting."""
    assert _reports(eng.process(_vod("B", S1, "1", 20, "50.02")))[0]["type"] == ev.ORDER_ACCEPTED
    assert [e["type"] for e in _reports(eng.process(_vod("S", S2, "2", 10, "50.02")))][-1] == ev.ORDER_FILLED
    eng.process({"type": ev.LIMIT_CHANGE_REQUESTED, "ts": 1, "user": "risk1", "approver": None, "reason": "t",
                 "scope": "account:A1", "limit": "credit_limit", "new_value": "2541.02", "expires_ts": None})
    return {"type": ev.REPLACE_REQUESTED, "ts": 1, "session": S1, "cl_ord_id": "B2", "orig_cl_ord_id": "B",
            "order_id": None, "symbol": None, "side": None, "ord_type": None, "tif": None, "price": "50.02",
            "qty": 40}


def test_replace_after_a_partial_fill_in_another_currency_is_checked_at_the_exposure_it_makes():
    """Replacing the partly filled GBP buy up to 40 leaves 30 resting: 30 x 50.02 x 1.27 =
    1905.762 -> 1905.77 USD (rounded up, as the exposure counts it) + 635.26 filled = 2541.03, over
    a credit limit of 2541.02. The check converted the whole order (40: 2541.016 -> 2541.02) and
    took the filled part out converted on its own (635.254 -> 635.26), one cent less than the
    exposure, and accepted it: /api/exposure then showed gross 2541.03 against 2541.02."""
    eng = _engine()
    out = _reports(eng.process(_partly_filled_gbp_buy(eng)))
    assert [e["type"] for e in out] == [ev.REPLACE_REJECTED], out
    assert (out[0]["rule"], out[0]["limit_value"], out[0]["actual_value"]) == ("credit_limit", "2541.02", "2541.03")
    assert eng.exposures("A1")[0]["gross_exposure"] == "1270.52"
    # one cent more of limit: accepted, and the exposure is what the check said
    eng.process({"type": ev.LIMIT_CHANGE_REQUESTED, "ts": 1, "user": "risk1", "approver": None, "reason": "t",
                 "scope": "account:A1", "limit": "credit_limit", "new_value": "2541.03", "expires_ts": None})
    out = _reports(eng.process({"type": ev.REPLACE_REQUESTED, "ts": 1, "session": S1, "cl_ord_id": "B3",
                                "orig_cl_ord_id": "B", "order_id": None, "symbol": None, "side": None,
                                "ord_type": None, "tif": None, "price": "50.02", "qty": 40}))
    assert [e["type"] for e in out] == [ev.ORDER_REPLACED], out
    assert eng.exposures("A1")[0]["gross_exposure"] == "2541.03"


def test_replace_rounding_of_a_journal_of_engine_rules_2_replays_as_it_ran():
    """A journal decided by engine rules 2 accepted that replace: its replay still does."""
    eng = _engine()
    replace = _partly_filled_gbp_buy(eng)
    eng._set_rules(2)
    assert [e["type"] for e in _reports(eng.process(replace))] == [ev.ORDER_REPLACED]
