"""One grammar for limit values typed by a user (config file, HTTP API): flags are booleans,
numbers are integers or ASCII decimal text, and the value is kept in plain decimal notation."""
from __future__ import annotations

from decimal import Decimal

import pytest

from oms_trading.compliance.limits import LIMIT_DEFS, LimitDef, LimitValueError, limit_text, parse_limits

QTY = LIMIT_DEFS["max_order_qty"]
NOTIONAL = LIMIT_DEFS["max_order_notional"]
FLAG = LimitDef("some_flag", "bool", "a flag")


@pytest.mark.parametrize("definition, value, expected", [
    (QTY, 500, 500),
    (QTY, "500", 500),
    (QTY, " 500\n", 500),
    (QTY, "0", 0),
    (NOTIONAL, "1000", Decimal("1000")),
    (NOTIONAL, "1000.50", Decimal("1000.50")),
    (NOTIONAL, " 1000.50 ", Decimal("1000.50")),
    (NOTIONAL, 2000, Decimal("2000")),
    (FLAG, True, True),
    (FLAG, False, False),
])
def test_parse_input_takes_integers_and_ascii_decimal_text(definition, value, expected):
    parsed = definition.parse_input(value)
    assert parsed == expected and type(parsed) is type(expected)


@pytest.mark.parametrize("definition, value, needle", [
    (FLAG, 1, "true or false"),
    (FLAG, 0, "true or false"),
    (FLAG, "true", "true or false"),
    (QTY, "\u0663", "whole number"),            # Arabic-Indic 3
    (QTY, "1_000", "whole number"),
    (QTY, "1e3", "whole number"),
    (QTY, "1.0", "whole number"),
    (QTY, "+5", "whole number"),
    (QTY, True, "whole number"),
    (QTY, "1" * 5000, "too long"),              # int() would raise a plain ValueError on it
    (NOTIONAL, "\u0661\u0660\u0660", "decimal text"),
    (NOTIONAL, "1_000", "decimal text"),
    (NOTIONAL, "1e3", "decimal text"),
    (NOTIONAL, "1E+3", "decimal text"),
    (NOTIONAL, "-5", "decimal text"),
    (NOTIONAL, "+5", "decimal text"),
    (NOTIONAL, "1.", "decimal text"),
    (NOTIONAL, ".5", "decimal text"),
    (NOTIONAL, "Infinity", "decimal text"),
    (NOTIONAL, "NaN", "decimal text"),
    (NOTIONAL, "", "decimal text"),
    (NOTIONAL, 1.5, "decimal text"),            # floats are not exact money
    (NOTIONAL, -5, ">= 0"),
    (NOTIONAL, "1" * 17, "too large"),
])
def test_parse_input_refuses_other_text_naming_the_limit(definition, value, needle):
    with pytest.raises(LimitValueError) as info:
        definition.parse_input(value)
    assert definition.name in str(info.value) and needle in str(info.value), str(info.value)


def test_values_print_in_plain_decimal_notation():
    assert limit_text(NOTIONAL.parse_input("0.0000000")) == "0" and str(NOTIONAL.parse_input("0.0000000")) == "0"
    assert limit_text(Decimal("1E-7")) == "0.0000001" and limit_text(Decimal("1E+3")) == "1000"
    assert limit_text(NOTIONAL.parse_input("1000.50")) == "1000.50" and limit_text(500) == "500"
    assert limit_text(True) == "true"


def test_the_journal_reader_still_takes_what_earlier_versions_journaled():
    # "1E+3" was journaled before the grammar: a replay must apply it as it did then
    assert NOTIONAL.parse("1E+3") == Decimal("1000")


def test_config_limits_follow_the_grammar():
    assert parse_limits({"max_order_notional": "1000.50", "max_order_qty": 7}, "risk.defaults") == {
        "max_order_notional": Decimal("1000.50"), "max_order_qty": 7}
    with pytest.raises(LimitValueError, match=r"^risk.defaults.max_order_notional: .*decimal text"):
        parse_limits({"max_order_notional": "1_000"}, "risk.defaults")
