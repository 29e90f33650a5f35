"""Hostile input against a running acceptor: mutated real messages, driven by hypothesis.

Each example sends one mutated NewOrderSingle on a logged-on session, then a TestRequest.
What must hold: the server never crashes or drops the session, the TestRequest is answered
(so everything before it was processed in order), a well-framed message gets exactly the
answer the FIX rules prescribe (Reject, BusinessMessageReject or an ExecutionReport), a
garbled one (bad BodyLength or CheckSum, MsgType not the third field) gets nothing and
consumes no sequence number, and the server's memory stays bounded.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oms_trading.fix.codec import checksum
from tests.fixclient import FixClient, field, utc_now
from tests.server_process import ServerProcess

# more examples for a long hostile-input run: OMS_FUZZ_EXAMPLES=5000 (RELIABILITY.md)
FUZZ_EXAMPLES = int(os.environ.get("OMS_FUZZ_EXAMPLES", "120"))

SOH = b"\x01"
BODY = [(11, b"F1"), (55, b"AAPL"), (54, b"1"), (60, b"20260101-00:00:00.000"), (38, b"100"), (40, b"2"),
        (44, b"190.00"), (59, b"0")]

weird_values = st.one_of(
    st.binary(min_size=0, max_size=40).map(lambda b: b.replace(SOH, b"").replace(b"=", b"")),
    st.sampled_from([b"-1", b"0", b"-99999999999999999999", b"9" * 40, b"1e9", b"NaN", b"\xff\xfe", b"\xc3\xa9",
                     b"190.001", b"  1", b"0x10", b"1.5", b"Y", b"", b"A" * 5000]),
)


@st.composite
def mutated_body(draw) -> tuple[list[tuple[bytes, bytes]], str]:
    fields = [(str(t).encode(), v) for t, v in BODY]
    kind = draw(st.sampled_from(["value", "drop", "duplicate", "unknown_tag", "bad_tag", "embedded_soh",
                                 "huge", "reorder_header"]))
    i = draw(st.integers(0, len(fields) - 1))
    if kind == "value":
        fields[i] = (fields[i][0], draw(weird_values))
    elif kind == "drop":
        del fields[i]
    elif kind == "duplicate":
        fields.insert(i, fields[i])
    elif kind == "unknown_tag":
        fields.insert(i, (str(draw(st.integers(1, 4999))).encode(), b"X"))
    elif kind == "bad_tag":
        fields.insert(i, (draw(st.sampled_from([b"abc", b"-5", b"0", b"", b"99999999999999999999"])), b"1"))
    elif kind == "embedded_soh":
        fields[i] = (fields[i][0], fields[i][1] + SOH + b"9=1")
    elif kind == "huge":
        fields.insert(i, (b"58", b"x" * draw(st.integers(1000, 60000))))
    else:
        fields.insert(0, (b"49", b"FUZZ"))   # header field inside the body
    return fields, kind


def frame(client: FixClient, fields: list[tuple[bytes, bytes]], garble: str | None) -> bytes:
    header = [(b"35", b"D"), (b"49", client.sender.encode()), (b"56", b"OMS"), (b"34", str(client.seq).encode()),
              (b"52", utc_now())]
    if garble == "msgtype":
        header[0], header[1] = header[1], header[0]      # 8, 9, 49, 35: garbled (session spec)
    body = b"".join(t + b"=" + v + SOH for t, v in header + fields)
    length = len(body) + (3 if garble == "length" else 0)
    msg = b"8=FIX.4.4" + SOH + b"9=" + str(length).encode() + SOH + body
    total = checksum(msg)
    if garble == "checksum":
        total = (total + 1) % 256
    return msg + b"10=%03d" % total + SOH


def server_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@pytest.fixture(scope="module")
def fuzz_session(tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz")
    proc = ServerProcess(base / "data").start()
    client = FixClient("127.0.0.1", proc.fix_port, "BENCH", timeout=10)
    client.logon(reset=True)
    yield proc, client
    client.close()
    assert proc.stop() == 0


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(data=mutated_body(), garble=st.sampled_from([None, None, None, "length", "checksum", "msgtype"]))
def test_mutated_messages_get_the_prescribed_answer(fuzz_session, data, garble):
    proc, client = fuzz_session
    fields, kind = data
    client.send_raw(frame(client, fields, garble))
    if garble is None:
        client.seq += 1
    token = f"T{client.seq}"
    client.send("1", [(112, token)])
    answers = []
    while True:
        msg = client.recv(timeout=10)
        assert msg is not None, f"no answer to TestRequest after {kind}/{garble}: session lost"
        mt = field(msg, 35)
        assert mt != "5", f"server logged out after {kind}/{garble}: {field(msg, 58)}"
        if mt == "0" and field(msg, 112) == token:
            break
        answers.append(msg)
    kinds = [field(m, 35) for m in answers]
    if garble is not None:
        assert kinds == [], f"garbled message was answered: {[str(m) for m in answers]}"
        return
    assert kinds, f"well-framed {kind} message got no answer"
    first = answers[0]
    assert kinds[0] in ("3", "j", "8"), kinds
    if kinds[0] == "3":
        assert field(first, 45) is not None and field(first, 373) is not None and field(first, 58)
    if kinds[0] == "8" and field(first, 39) == "8":
        assert field(first, 58) and field(first, 103) is not None


def test_memory_stays_bounded_after_fuzzing(fuzz_session):
    proc, client = fuzz_session
    before = server_rss_kb(proc.proc.pid)
    big = [(b"58", b"x" * 60000)] + [(str(t).encode(), v) for t, v in BODY]
    for _ in range(200):            # bounded: 200 messages of ~60 KB
        client.send_raw(frame(client, big, None))
        client.seq += 1
    client.send("1", [(112, "MEM")])
    while True:
        msg = client.recv(timeout=20)
        assert msg is not None
        if field(msg, 35) == "0" and field(msg, 112) == "MEM":
            break
    after = server_rss_kb(proc.proc.pid)
    assert after - before < 200_000, f"server RSS grew by {after - before} KiB"
    assert os.path.exists(f"/proc/{proc.proc.pid}")
