"""FIX data dictionary / validator: one real message per SessionRejectReason."""

from __future__ import annotations

import pytest

from oms_trading.fix.codec import FixParser, encode, split_message
from oms_trading.fix.dictionary import FIELDS, MESSAGES, field_name, validate

TS = b"20240102-03:04:05.678"
NOS = [(11, b"C1"), (21, b"1"), (55, b"AAPL"), (54, b"1"), (60, TS), (38, b"100"), (40, b"2"),
       (44, b"10.5"), (59, b"0")]


def msg(body, mt=b"D", bs=b"FIX.4.4", extra_header=()):
    raw = encode(bs, mt, b"CLI", b"OMS", 5, TS, body, extra_header)
    p = FixParser()
    p.feed(raw)
    (m,) = list(p.messages())
    return m


def raw_msg(raw_body: bytes, bs=b"FIX.4.4"):
    """Frame a hand-written body (from 35= up to the trailer) with correct 9 and 10."""
    head = b"8=%b\x019=%d\x01" % (bs, len(raw_body))
    m = head + raw_body
    return split_message(m + b"10=%03d\x01" % (sum(m) % 256))


def check(m, bs, reason, tag):
    p = validate(m, bs)
    assert p is not None, "expected reason %d" % reason
    assert (p.reason, p.tag) == (reason, tag), p
    assert p.text and not p.business
    return p


@pytest.mark.parametrize("bs", [b"FIX.4.2", b"FIX.4.4"])
def test_valid_messages_pass(bs):
    assert validate(msg(NOS, bs=bs), bs) is None
    assert validate(msg([(98, 0), (108, 30), (141, b"Y")], b"A", bs), bs) is None
    assert validate(msg([], b"0", bs), bs) is None
    assert validate(msg([(112, b"T")], b"1", bs), bs) is None
    assert validate(msg([(7, 1), (16, 0)], b"2", bs), bs) is None
    assert validate(msg([(45, 3), (373, 1), (58, b"x")], b"3", bs), bs) is None
    assert validate(msg([(123, b"Y"), (36, 10)], b"4", bs), bs) is None
    assert validate(msg([(58, b"bye")], b"5", bs), bs) is None
    assert validate(msg([(372, b"D"), (380, 3)], b"j", bs), bs) is None
    assert validate(msg([(41, b"C1"), (11, b"C2"), (55, b"AAPL"), (54, b"1"), (60, TS)], b"F", bs), bs) is None
    assert validate(msg([(41, b"C1"), (11, b"C2"), (21, 1), (55, b"AAPL"), (54, b"1"), (60, TS),
                         (38, 50), (40, 2), (44, b"10")], b"G", bs), bs) is None
    assert validate(msg([(11, b"C1"), (55, b"AAPL"), (54, b"1")], b"H", bs), bs) is None
    assert validate(msg([(11, b"M1"), (530, 7), (60, TS)], b"q", bs), bs) is None


def test_groups_pass():
    body = NOS + [(453, 2), (448, b"P1"), (447, b"D"), (452, 1), (802, 1), (523, b"s"), (803, 1),
                  (448, b"P2"), (447, b"D"), (452, 3), (78, 1), (79, b"A1"), (80, 100)]
    m = msg(body)
    assert m.repeated_tags == ()
    assert validate(m, b"FIX.4.4") is None


def test_0_invalid_tag_number():
    m = raw_msg(b"35=0\x0149=CLI\x0156=OMS\x0134=5\x0152=" + TS + b"\x01x1=2\x01")
    p = validate(m, b"FIX.4.4")
    assert p.reason == 0 and "x1" in p.text


def test_1_required_tag_missing():
    p = check(msg([t for t in NOS if t[0] != 38]), b"FIX.4.4", 1, 38)
    assert p.text == "Required tag missing: 38 (OrderQty)"
    check(msg([t for t in NOS if t[0] != 21], bs=b"FIX.4.2"), b"FIX.4.2", 1, 21)
    assert validate(msg([t for t in NOS if t[0] != 21]), b"FIX.4.4") is None  # optional in 4.4
    check(msg([t for t in NOS if t[0] != 60]), b"FIX.4.4", 1, 60)
    check(msg([], b"1"), b"FIX.4.4", 1, 112)
    m = raw_msg(b"35=0\x0149=CLI\x0156=OMS\x0134=5\x01")
    check(m, b"FIX.4.4", 1, 52)


def test_2_tag_not_defined_for_message_type():
    check(msg(NOS + [(112, b"x")]), b"FIX.4.4", 2, 112)
    check(msg([(108, 30)], b"0"), b"FIX.4.4", 2, 108)


F_BODY = [(41, b"C1"), (11, b"C2"), (55, b"AAPL"), (54, b"1"), (60, TS)]
G_BODY = [(41, b"C1"), (11, b"C2"), (21, 1), (55, b"AAPL"), (54, b"1"), (60, TS), (38, 50), (40, 2),
          (44, b"10")]
H_BODY = [(11, b"C1"), (55, b"AAPL"), (54, b"1")]
BODIES = {b"D": NOS, b"F": F_BODY, b"G": G_BODY, b"H": H_BODY}
FINANCING = [(913, b"GMRA"), (914, b"A1"), (915, b"20240101"), (918, b"USD"), (788, 2), (916, b"20240102"),
             (917, b"20240201"), (919, 0), (898, b"0.5")]


@pytest.mark.parametrize("bs,mt,extra", [
    # optional fields of the specification's layouts (QuickFIX/J FIX44.xml / FIX42.xml)
    (b"FIX.4.4", b"F", [(66, b"L1")]), (b"FIX.4.4", b"F", [(586, TS)]),
    (b"FIX.4.4", b"G", [(66, b"L1")]), (b"FIX.4.4", b"G", [(586, TS)]),
    (b"FIX.4.4", b"H", [(583, b"LINK")]), (b"FIX.4.4", b"H", [(790, b"R1"), (1, b"A"), (660, 99)]),
    (b"FIX.4.2", b"H", [(1, b"ACC")]), (b"FIX.4.2", b"F", [(377, b"Y")]), (b"FIX.4.2", b"F", [(66, b"L1")]),
    (b"FIX.4.4", b"D", FINANCING), (b"FIX.4.4", b"F", FINANCING), (b"FIX.4.4", b"G", FINANCING),
    (b"FIX.4.4", b"H", FINANCING)])
def test_standard_optional_fields_pass(bs, mt, extra):
    assert validate(msg(BODIES[mt] + extra, mt, bs), bs) is None


@pytest.mark.parametrize("bs,mt,tag,value", [
    # fields the specification does not put in these messages stay refused
    (b"FIX.4.2", b"F", 586, TS), (b"FIX.4.2", b"G", 586, TS), (b"FIX.4.2", b"H", 66, b"L1"),
    (b"FIX.4.4", b"H", 66, b"L1"), (b"FIX.4.4", b"H", 586, TS), (b"FIX.4.2", b"D", 913, b"GMRA")])
def test_fields_outside_the_layout_stay_refused(bs, mt, tag, value):
    check(msg(BODIES[mt] + [(tag, value)], mt, bs), bs, 2, tag)


def test_new_optional_fields_are_type_checked():
    check(msg(F_BODY + [(586, b"20240102")], b"F"), b"FIX.4.4", 6, 586)
    check(msg(H_BODY + [(915, b"2024-01-01")], b"H"), b"FIX.4.4", 6, 915)
    check(msg(G_BODY + [(898, b"half")], b"G"), b"FIX.4.4", 6, 898)


def test_3_undefined_tag():
    check(msg(NOS + [(4999, b"x")]), b"FIX.4.4", 3, 4999)
    assert validate(msg(NOS + [(5001, b"x")]), b"FIX.4.4") is None  # user-defined range


def test_4_tag_without_value():
    check(msg(NOS + [(58, b"")]), b"FIX.4.4", 4, 58)


@pytest.mark.parametrize("tag,value,bs", [
    (54, b"X", b"FIX.4.4"), (54, b"B", b"FIX.4.2"), (40, b"Z", b"FIX.4.4"), (40, b"5", b"FIX.4.4"),
    (59, b"7", b"FIX.4.2"), (59, b"9", b"FIX.4.4")])
def test_5_value_out_of_range(tag, value, bs):
    body = [(t, value if t == tag else v) for t, v in NOS]
    check(msg(body, bs=bs), bs, 5, tag)


def test_5_enums_session():
    check(msg([(98, 9), (108, 30)], b"A"), b"FIX.4.4", 5, 98)
    check(msg([(98, 0), (108, 30), (141, b"X")], b"A"), b"FIX.4.4", 5, 141)
    check(msg([(123, b"y"), (36, 10)], b"4"), b"FIX.4.4", 5, 123)
    check(msg([], b"0", extra_header=[(43, b"Q")]), b"FIX.4.4", 5, 43)
    check(msg([(11, b"M1"), (530, 9), (60, TS)], b"q"), b"FIX.4.4", 5, 530)


@pytest.mark.parametrize("tag,value", [(38, b"1x"), (44, b"1.2.3"), (60, b"2024-01-02"),
                                       (38, b"."), (54, b"12")])
def test_6_incorrect_data_format(tag, value):
    body = [(t, value if t == tag else v) for t, v in NOS]
    check(msg(body), b"FIX.4.4", 6, tag)


def test_6_header_format():
    check(msg([(7, b"a"), (16, 0)], b"2"), b"FIX.4.4", 6, 7)
    check(msg([(98, 0), (108, b"3.5")], b"A"), b"FIX.4.4", 6, 108)


def test_11_invalid_msg_type_and_business_reject():
    check(msg([], b"ZZ"), b"FIX.4.4", 11, 35)
    p = validate(msg([(11, b"x")], b"R"), b"FIX.4.4")
    assert p.business and p.business_reason == 3 and p.tag == 35 and "R" in p.text
    p = validate(msg([], b"8"), b"FIX.4.4")  # defined, outgoing only
    assert p.business
    p = validate(msg([], b"AE"), b"FIX.4.2")  # 4.4-only type on a 4.2 session
    assert p.reason == 11 and not p.business


def test_13_tag_more_than_once():
    check(msg(NOS + [(54, b"2")]), b"FIX.4.4", 13, 54)


def test_14_out_of_order():
    # a frame with 35 not third never gets here from FixParser (garbled: test_fix_codec.py);
    # split on its own, it is still answered 14
    m = raw_msg(b"49=CLI\x0135=0\x0156=OMS\x0134=5\x0152=" + TS + b"\x01")
    check(m, b"FIX.4.4", 14, 35)
    check(msg([(112, b"T"), (43, b"Y")], b"1"), b"FIX.4.4", 14, 43)


def test_15_group_order():
    body = NOS + [(453, 1), (447, b"D"), (448, b"P1"), (452, 1)]
    check(msg(body), b"FIX.4.4", 15, 447)
    body = NOS + [(448, b"P1")]
    check(msg(body), b"FIX.4.4", 15, 448)


def test_16_num_in_group():
    body = NOS + [(453, 3), (448, b"P1"), (447, b"D"), (452, 1), (448, b"P2"), (447, b"D"), (452, 3)]
    p = check(msg(body), b"FIX.4.4", 16, 453)
    assert "3" in p.text and "2 instance" in p.text


def test_dictionary_consistency():
    for bs, msgs in MESSAGES.items():
        assert {b"A", b"0", b"1", b"2", b"3", b"4", b"5", b"j", b"D", b"F", b"G", b"H", b"q",
                b"8", b"9", b"r"} <= set(msgs)
    assert field_name(32, b"FIX.4.2") == "LastShares" and field_name(32) == "LastQty"
    assert FIELDS[52] == ("SendingTime", "UTCTIMESTAMP")


def test_validate_never_raises_on_mutations():
    import random

    rnd = random.Random(7)
    base = encode(b"FIX.4.4", b"D", b"CLI", b"OMS", 5, TS, NOS + [(453, 1), (448, b"P"), (447, b"D"), (452, 1)])
    for _ in range(2000):
        b = bytearray(base)
        for _ in range(rnd.randint(1, 4)):
            b[rnd.randrange(len(b))] = rnd.choice(b"0123456789=\x01AYN.-")
        m = split_message(bytes(b))
        validate(m, b"FIX.4.4")
        validate(m, b"FIX.4.2")


def test_a_known_shape_checks_values_as_the_full_validation_does():
    """Once a shape passed, later messages of that shape take the value-only path: every
    value problem must still be found, with the same reason, tag and text."""
    from hypothesis import given, settings, strategies as st

    from oms_trading.fix import dictionary

    values = st.one_of(st.sampled_from([b"1", b"2", b"9", b"Z", b"0", b"-1", b"10.5", b"1.2.3", b"x", b"Y",
                                        b"20240102-03:04:05", b"20241302-03:04:05.678", TS, b"AAPL"]),
                       st.binary(min_size=1, max_size=6).filter(lambda v: b"\x01" not in v and b"=" not in v))

    @settings(max_examples=300, deadline=None)
    @given(bs=st.sampled_from([b"FIX.4.2", b"FIX.4.4"]), changes=st.dictionaries(
        st.sampled_from([tag for tag, _ in NOS] + [34, 52]), values, max_size=3))
    def check_same(bs, changes):
        assert validate(msg(NOS, bs=bs), bs) is None          # the shape is now known
        header = {34: b"5", 52: TS}
        body = [(tag, changes.get(tag, value)) for tag, value in NOS]
        raw = encode(bs, b"D", b"CLI", b"OMS", 5, TS, body)
        for tag in (34, 52):                                    # header values mutated in place
            if tag in changes:
                raw = raw.replace(b"\x01%d=%b\x01" % (tag, header[tag]), b"\x01%d=%b\x01" % (tag, changes[tag]), 1)
                head, _, rest = raw.partition(b"\x0135=")
                body_part = b"35=" + rest[:rest.rindex(b"10=")]
                raw = b"8=%b\x019=%d\x01%b" % (bs, len(body_part), body_part)
                raw += b"10=%03d\x01" % (sum(raw) % 256)
        m = split_message(raw)
        fast = validate(m, bs)
        full = dictionary._validate_full(m, bs)
        assert fast == full, (fast, full)

    check_same()
