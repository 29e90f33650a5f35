"""FIX codec tests; simplefix is the oracle."""

from __future__ import annotations

import calendar
import time

import pytest
import simplefix
from simplefix.data import RAW_DATA
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oms_trading.fix.codec import (
    RAW_DATA_PAIRS,
    ExecReportTemplate,
    FixMessage,
    FixParser,
    Garbled,
    checksum,
    encode,
    split_message,
    with_poss_dup,
)
from oms_trading.fix.timefmt import fix_timestamp, parse_fix_timestamp

SET = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# simplefix treats every FIX 5.0 SP2 EP data tag as raw data (a longer list than ours, which
# stops at the FIX 4.x / 5.0 ones); keep random tags clear of both.
_RAW_TAGS = (set(RAW_DATA_PAIRS) | set(RAW_DATA_PAIRS.values()) | {t for p in RAW_DATA for t in p})
tags = st.integers(min_value=1, max_value=20000).filter(
    lambda t: t not in (8, 9, 10, 34, 35, 49, 52, 56) and t not in _RAW_TAGS)
# Printable ASCII without SOH; '=' allowed in values.
values = st.binary(min_size=1, max_size=20).map(lambda b: bytes((c % 94) + 33 for c in b))
bodies = st.lists(st.tuples(tags, values), min_size=0, max_size=25)
TS = b"20240102-03:04:05.678"


def sf_encode(bs, mt, body, seq=7):
    m = simplefix.FixMessage()
    m.append_pair(8, bs)
    m.append_pair(35, mt)
    m.append_pair(49, b"SND")
    m.append_pair(56, b"TGT")
    m.append_pair(34, seq)
    m.append_pair(52, TS)
    for t, v in body:
        m.append_pair(t, v)
    return m.encode()


def sf_parse(raw):
    p = simplefix.FixParser()
    p.append_buffer(raw)
    m = p.get_message()
    assert m is not None
    return [(int(t), v) for t, v in m.pairs]


def parse_all(data, chunks=None, **kw):
    p = FixParser(**kw)
    out = []
    if chunks is None:
        p.feed(data)
        out.extend(p.messages())
    else:
        pos = 0
        for c in chunks:
            p.feed(data[pos:pos + c])
            pos += c
            out.extend(p.messages())
        p.feed(data[pos:])
        out.extend(p.messages())
    return out


def key(m):
    if isinstance(m, Garbled):
        return ("G", m.reason, m.raw)
    return ("M", m.raw, tuple(m.fields), m.bad_tags, m.empty_tags, m.repeated_tags)


@SET
@given(bs=st.sampled_from([b"FIX.4.2", b"FIX.4.4"]), mt=st.sampled_from([b"D", b"8", b"0", b"R"]),
       body=bodies)
def test_simplefix_encoded_parses_identically(bs, mt, body):
    raw = sf_encode(bs, mt, body)
    msgs = parse_all(raw)
    assert len(msgs) == 1 and isinstance(msgs[0], FixMessage)
    m = msgs[0]
    assert m.fields == sf_parse(raw)
    assert m.raw == raw and m.begin_string == bs and m.msg_type == mt and m.seq_num == 7
    assert not m.bad_tags and not m.empty_tags
    seen = {}
    for t, v in m.fields:
        seen.setdefault(t, v)
    for t, v in seen.items():
        assert m.get(t) == v


@SET
@given(bs=st.sampled_from([b"FIX.4.2", b"FIX.4.4"]), mt=st.sampled_from([b"D", b"8", b"AB"]),
       body=bodies, seq=st.integers(1, 10**9))
def test_our_encode_matches_simplefix(bs, mt, body, seq):
    ours = encode(bs, mt, b"SND", b"TGT", seq, TS, body)
    assert ours == sf_encode(bs, mt, body, seq)
    assert sf_parse(ours)[-1] == (10, b"%03d" % (sum(ours[:-7]) % 256))


@SET
@given(st.binary(max_size=600))
def test_random_bytes_never_raise(data):
    for m in parse_all(data):
        assert isinstance(m, (FixMessage, Garbled))
    split_message(data)


def _stream(n=3):
    return b"".join(sf_encode(b"FIX.4.4", b"D", [(11, b"ID%d" % i), (55, b"X=Y"), (38, b"100")], i + 1)
                    for i in range(n))


@SET
@given(data=st.data())
def test_mutations_never_raise_and_chunking_is_invariant(data):
    raw = bytearray(_stream())
    for _ in range(data.draw(st.integers(0, 6))):
        op = data.draw(st.sampled_from(["set", "del", "ins"]))
        i = data.draw(st.integers(0, len(raw) - 1))
        b = data.draw(st.sampled_from([0, 1, 48, 49, 56, 57, 61, 255]))
        if op == "set":
            raw[i] = b
        elif op == "del":
            del raw[i]
        else:
            raw.insert(i, b)
    raw = bytes(raw)
    whole = [key(m) for m in parse_all(raw)]
    chunks = data.draw(st.lists(st.integers(1, 50), max_size=30))
    assert [key(m) for m in parse_all(raw, chunks)] == whole


@SET
@given(chunks=st.lists(st.integers(1, 40), max_size=40),
       garbage=st.binary(max_size=30).filter(lambda b: b"8=" not in b))
def test_chunked_valid_stream(chunks, garbage):
    raw = garbage + _stream(4)
    whole = parse_all(raw)
    assert [m.seq_num for m in whole] == [1, 2, 3, 4]
    assert [key(m) for m in parse_all(raw, chunks)] == [key(m) for m in whole]


def test_garbled_length_and_checksum_detected_and_resync():
    good = sf_encode(b"FIX.4.4", b"0", [])
    bad_ck = good[:-4] + (b"%03d" % ((int(good[-4:-1]) + 1) % 256)) + b"\x01"
    bad_len = good.replace(b"9=%d" % (len(good) - good.index(b"35=") - 7), b"9=7", 1)
    out = parse_all(b"xx" + bad_ck + good + bad_len + good)
    kinds = [type(m).__name__ for m in out]
    assert kinds == ["Garbled", "FixMessage", "Garbled", "FixMessage"], out
    assert "CheckSum" in out[0].reason and "BodyLength" in out[2].reason


def _reframed(bs: bytes, body: bytes) -> bytes:
    """``body`` (the fields after 9) framed with the right BodyLength and CheckSum."""
    msg = b"8=%b\x019=%d\x01%b" % (bs, len(body), body)
    return msg + b"10=%03d\x01" % checksum(msg)


def test_msgtype_not_third_is_garbled_and_skipped_whole():
    """The FIX session spec counts "MsgType (35) is not the third tag" as garbled: such a
    frame (CheckSum right) is yielded as Garbled, not as a message, and framing goes on."""
    good = sf_encode(b"FIX.4.4", b"0", [])
    late = _reframed(b"FIX.4.4", b"49=SND\x0135=1\x0156=TGT\x0134=7\x0152=" + TS + b"\x01112=X\x01")
    absent = _reframed(b"FIX.4.4", b"49=SND\x0156=TGT\x0134=7\x0152=" + TS + b"\x01")
    out = parse_all(late + good + absent + good)
    assert [type(m).__name__ for m in out] == ["Garbled", "FixMessage", "Garbled", "FixMessage"], out
    assert out[0].raw == late and out[2].raw == absent
    assert all(m.reason == "MsgType (35) is not the third field" for m in (out[0], out[2]))
    assert [key(m) for m in parse_all(late + good, [3] * 100)] == [key(m) for m in out[:2]]


def test_other_begin_strings_are_framed():
    raw = sf_encode(b"FIXT.1.1", b"0", [])
    (m,) = parse_all(raw)
    assert isinstance(m, FixMessage) and m.begin_string == b"FIXT.1.1"


def test_buffer_is_bounded():
    p = FixParser(max_message_bytes=1000)
    p.feed(b"8=FIX.4.4\x019=999999\x01")
    (g,) = list(p.messages())
    assert isinstance(g, Garbled) and "limit" in g.reason
    for _ in range(100):
        p.feed(b"A" * 1000)
        assert list(p.messages()) == []
        assert p.buffered() < 2000
    # Length within bound but frame never completes correctly: garbled once data arrives.
    p.feed(b"8=FIX.4.4\x019=900\x01" + b"B" * 1000)
    out = list(p.messages())
    assert len(out) == 1 and isinstance(out[0], Garbled)
    good = sf_encode(b"FIX.4.4", b"0", [])
    p.feed(good)
    assert [m.raw for m in p.messages()] == [good]


def test_partial_message_stays_buffered():
    raw = _stream(1)
    p = FixParser()
    p.feed(raw[:-1])
    assert list(p.messages()) == []
    p.feed(raw[-1:])
    assert [m.raw for m in p.messages()] == [raw]


def test_problem_lists():
    raw = encode(b"FIX.4.4", b"D", b"S", b"T", 3, TS,
                 [(11, b"A"), (55, b""), (58, b"x"), (58, b"y")])
    raw = raw.replace(b"\x0158=x", b"\x01abc=x")
    m = split_message(raw)
    assert m.bad_tags == [b"abc"]
    assert m.empty_tags == [55]
    assert m.repeated_tags == ()


def test_repeated_tags_and_groups():
    body = [(11, b"A"), (453, 2), (448, b"P1"), (447, b"D"), (452, 1), (448, b"P2"), (447, b"D"),
            (452, 3), (55, b"X"), (54, 1), (54, 2)]
    m = split_message(encode(b"FIX.4.4", b"D", b"S", b"T", 3, TS, body))
    assert m.repeated_tags == [54]
    assert m.get(448) == b"P1" and m.get_all(448) == [b"P1", b"P2"]
    assert m.fields[7:9] == [(11, b"A"), (453, b"2")]


def test_raw_data_with_soh_matches_simplefix():
    data = b"ab\x01c=d\x0155=EVIL"
    body = [(95, len(data)), (96, data), (58, b"t")]
    raw = encode(b"FIX.4.2", b"A", b"S", b"T", 1, TS, [(98, 0), (108, 30)] + body)
    m = split_message(raw)
    assert m.get(96) == data and m.get(55) is None
    assert m.fields == sf_parse(raw)


def test_seq_num_invalid():
    raw = encode(b"FIX.4.4", b"0", b"S", b"T", 3, TS, []).replace(b"34=3", b"34=x")
    assert split_message(raw).seq_num == -1


def test_checksum_long():
    b = bytes(range(256)) * 7 + b"xyz"
    assert checksum(b) == sum(b) % 256


def _sf_fields(raw):
    return dict(sf_parse(raw))


@pytest.mark.parametrize("bs", [b"FIX.4.2", b"FIX.4.4"])
def test_exec_report_template(bs):
    t = ExecReportTemplate(bs, b"OMS", b"CLI")
    raw = t.encode(42, TS, b"O1", b"C1", b"E1", b"F", b"1", b"AAPL", b"1", 100, b"2", 40,
                   b"187.25", 60, 40, b"187.25", TS, orig_cl_ord_id=b"C0", price=b"187.25",
                   time_in_force=b"0", account=b"ACC", ord_rej_reason=None, text=b"hello")
    f = _sf_fields(raw)
    assert raw.endswith(b"10=%03d\x01" % (sum(raw[:-7]) % 256))
    assert f[8] == bs and f[35] == b"8" and f[49] == b"OMS" and f[56] == b"CLI" and f[34] == b"42"
    want = {37: b"O1", 11: b"C1", 41: b"C0", 17: b"E1", 150: b"F", 39: b"1", 55: b"AAPL",
            54: b"1", 38: b"100", 40: b"2", 44: b"187.25", 59: b"0", 1: b"ACC", 32: b"40",
            31: b"187.25", 151: b"60", 14: b"40", 6: b"187.25", 60: TS, 58: b"hello"}
    for k, v in want.items():
        assert f[k] == v, k
    assert 103 not in f
    assert (f.get(20) == b"0") == (bs == b"FIX.4.2") and ((20 in f) == (bs == b"FIX.4.2"))
    (m,) = parse_all(raw)
    assert isinstance(m, FixMessage) and int(m.get(9)) == len(raw) - raw.index(b"35=") - 7


def test_exec_report_template_slow_types_and_minimal():
    t = ExecReportTemplate("FIX.4.4", "OMS", "CLI")
    a = t.encode(1, TS, "O1", b"C1", b"E1", b"8", b"8", b"AAPL", b"1", 100.0, b"2", 0, 0, 0, 0,
                 0, TS, ord_rej_reason=3, text="bad price")
    f = _sf_fields(a)
    assert f[38] == b"100.0" and f[103] == b"3" and f[58] == b"bad price" and f[31] == b"0"
    b = t.encode(1, TS, b"O1", b"C1", b"E1", b"0", b"0", b"AAPL", b"1", 100, b"1", 0, b"0", 100,
                 0, b"0", TS)
    f = _sf_fields(b)
    assert not ({41, 44, 59, 1, 103, 58} & set(f))


def test_encode_value_types_and_extra_header():
    raw = encode("FIX.4.4", "j", "S", "T", 9, TS, [(58, "text"), (380, 3), (1, 1.5), (43, True)],
                 extra_header=[(43, b"Y"), (122, TS)])
    f = sf_parse(raw)
    assert [t for t, _ in f][:9] == [8, 9, 35, 49, 56, 34, 52, 43, 122]
    assert dict(f)[380] == b"3" and (1, b"1.5") in f and f[-1][0] == 10


def test_with_poss_dup():
    raw = encode(b"FIX.4.4", b"8", b"S", b"T", 9, TS, [(37, b"O"), (58, b"a=b")])
    new = with_poss_dup(raw, b"20250101-00:00:00.000")
    f = sf_parse(new)
    tags_ = [t for t, _ in f]
    assert tags_[:9] == [8, 9, 35, 49, 56, 34, 43, 122, 52]
    d = dict(f)
    assert d[43] == b"Y" and d[122] == TS and d[52] == b"20250101-00:00:00.000" and d[58] == b"a=b"
    (m,) = parse_all(new)
    assert isinstance(m, FixMessage)
    again = with_poss_dup(new, b"20250101-00:00:01.000")
    d2 = dict(sf_parse(again))
    assert d2[122] == TS and d2[52] == b"20250101-00:00:01.000"
    assert [t for t, _ in sf_parse(again)].count(43) == 1


# --- timestamps -------------------------------------------------------------------------

@SET
@given(ns=st.integers(0, 4102444800 * 10**9 - 1), prec=st.sampled_from(["s", "ms", "us", "ns"]))
def test_timestamp_round_trip(ns, prec):
    b = fix_timestamp(ns, prec)
    unit = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}[prec]
    assert parse_fix_timestamp(b) == ns - ns % unit
    t = time.gmtime(ns // 10**9)
    assert b[:17] == time.strftime("%Y%m%d-%H:%M:%S", t).encode()


def test_timestamp_formats():
    ns = calendar.timegm((2024, 2, 29, 23, 59, 58)) * 10**9 + 123456789
    assert fix_timestamp(ns) == b"20240229-23:59:58.123"
    assert fix_timestamp(ns, "us") == b"20240229-23:59:58.123456"
    assert parse_fix_timestamp(b"20240229-23:59:58") == ns - 123456789
    for bad in [b"", b"2024022-23:59:58", b"20240230-23:59:58", b"20240229-24:00:00",
                b"20240229-23:59:58.1", b"20240229-23:59:58.12a", b"20240229 23:59:58",
                b"2024+229-23:59:58", b"20241301-00:00:00", b"20240229-23:59:58.1234"]:
        assert parse_fix_timestamp(bad) is None, bad
    with pytest.raises(ValueError):
        fix_timestamp(ns, "xs")


@SET
@given(st.binary(max_size=30))
def test_parse_timestamp_never_raises(b):
    r = parse_fix_timestamp(b)
    assert r is None or isinstance(r, int)


@given(st.binary(max_size=40), st.sampled_from([b"20261125-15:00:00", b"20261125-15:00:01", b"20240229-23:59:60"]))
def test_is_fix_timestamp_agrees_with_the_parser(tail, prefix):
    from oms_trading.fix.timefmt import is_fix_timestamp, parse_fix_timestamp
    for value in (prefix, prefix + tail, prefix + b"." + tail, tail):
        # twice: the second call takes the cached-prefix path
        assert is_fix_timestamp(value) == (parse_fix_timestamp(value) is not None)
        assert is_fix_timestamp(value) == (parse_fix_timestamp(value) is not None)
