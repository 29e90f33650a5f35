"""FIX session layer over real sockets against one running `oms serve` (issue 5).

One server process for the module, with a test config holding one session per test (so the
tests do not share sequence numbers). Tests that stop or kill the server, or need other
[fix] options, are in tests/test_fix_session_restart.py.
"""
from __future__ import annotations

import re
import socket
import time
from datetime import datetime, timedelta, timezone

import pytest

from oms_trading.config import demo_config_text
from tests.fixclient import FixClient, _b, field, utc_now
from tests.server_process import ServerProcess

# name -> extra TOML lines of its [[fix.sessions]] entry (all accept the client's HeartBtInt)
SESSIONS = {
    "GOOD": 'password = "pw"', "PWD": 'password = "secret"\nusername = "PWD"', "TWICE": "", "RESET": "", "INRESET": "",
    "HB": "", "HB2": "", "GAP": "", "RESEND": "", "RESEND42": None, "SEQRESET": "", "REJ": "",
    "REJ42": None, "COMPID": "", "STIME": "", "GARBLE": "", "LOGOUT": "", "LOW": "", "BUYER": "",
    "SELLER": "", "COD": "cancel_on_disconnect = true", "SLOW": "", "BMR": "", "DAILY": "",
    "FIRSTD": "", "FIXEDHB": None, "DC": "drop_copy = true",
    "LOOSE": "sending_time_tolerance_s = 3600\nvalidate = false", "DUP": "",
    "OPT": "", "OPT42": None, "MT3": "", "AWAY": "",
}


def _session_toml(name: str, extra: str | None) -> str:
    begin = "FIX.4.2" if name.endswith("42") else "FIX.4.4"
    hb = 2 if name == "FIXEDHB" else 0
    account = "BENCH" if name in ("SLOW", "BUYER", "SELLER", "COD", "GAP", "RESEND", "RESEND42", "OPT",
                                  "OPT42") else "ACC1"
    return (f'\n[[fix.sessions]]\nsender_comp_id = "OMS"\ntarget_comp_id = "{name}"\nbegin_string = "{begin}"\n'
            f'account = "{account}"\nheartbeat = {hb}\n{extra or ""}\n')


def write_test_config(path, extra_fix: dict[str, str] | None = None, sessions: dict | None = None):
    text = demo_config_text()
    # a daily reset an hour ago: every store this run creates is younger, so none resets,
    # except the one test_daily_reset ages on purpose
    an_hour_ago = (datetime.now(timezone.utc) - timedelta(hours=1)).strftime("%H:%M")
    fix_opts = {"max_outbound_buffer_kb": "64", "daily_reset": f'"{an_hour_ago}"'}
    fix_opts.update(extra_fix or {})
    for key in fix_opts:          # drop the demo's own line for a key we set
        text = re.sub(rf"^{key} = .*$", "", text, flags=re.M)
    text = text.replace("[fix]\n", "[fix]\n" + "".join(f"{k} = {v}\n" for k, v in fix_opts.items()), 1)
    text += "".join(_session_toml(n, e) for n, e in (sessions if sessions is not None else SESSIONS).items())
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("fixsrv")
    config = write_test_config(base / "oms.toml")
    proc = ServerProcess(base / "data", config=config).start()
    proc.base = base
    yield proc
    proc.kill()


def connect(server, name: str, begin: str | None = None, **kw) -> FixClient:
    begin = begin or ("FIX.4.2" if name.endswith("42") else "FIX.4.4")
    return FixClient("127.0.0.1", server.fix_port, name, begin_string=begin, timeout=kw.pop("timeout", 5.0), **kw)


def logged_on(server, name: str, heartbeat: int = 30, reset: bool = True, **kw) -> FixClient:
    client = connect(server, name)
    client.logon(heartbeat=heartbeat, reset=reset, **kw)
    return client


def log_text(server) -> str:
    return "".join(server.stderr_lines)


def wait_log(server, pattern: str, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log_text(server)
        m = re.search(pattern, text)
        if m:
            return m.group(0)
        time.sleep(0.05)
    raise AssertionError(f"no log line matching {pattern!r}; log tail:\n{log_text(server)[-2000:]}")


TS_MS = re.compile(r"^\d{8}-\d{2}:\d{2}:\d{2}\.\d{3}$")


# -- logon -------------------------------------------------------------------------------------

def test_logon_good_with_password_and_ms_timestamps(server):
    c = connect(server, "GOOD")
    try:
        ack = c.logon(password="pw", heartbeat=30)
        assert field(ack, 98) == "0" and field(ack, 108) == "30" and field(ack, 34) == "1"
        assert field(ack, 141) is None
        assert TS_MS.match(field(ack, 52)), field(ack, 52)
        c.new_order("G1", "AAPL", "1", 10, "185.00")
        er = c.expect("8")
        assert field(er, 39) == "0" and TS_MS.match(field(er, 60)) and TS_MS.match(field(er, 52))
    finally:
        c.close()


@pytest.mark.parametrize("case", ["wrong_password", "no_password", "wrong_username", "no_username",
                                  "unknown_compid", "wrong_begin_string",
                                  "stale_sending_time", "not_a_logon", "bad_checksum", "bad_body_length"])
def test_bad_first_message_closes_connection_and_processes_nothing(server, case):
    name = "PWD"
    c = connect(server, name)
    logon = [(98, 0), (108, 30), (553, name), (554, "secret")]
    try:
        if case == "wrong_password":
            c.send_built("A", [(98, 0), (108, 30), (553, name), (554, "nope")])
        elif case == "no_password":
            c.send_built("A", [(98, 0), (108, 30)])
        elif case == "wrong_username":
            c.send_built("A", [(98, 0), (108, 30), (553, "SOMEONE"), (554, "secret")])
        elif case == "no_username":
            c.send_built("A", [(98, 0), (108, 30), (554, "secret")])
        elif case == "unknown_compid":
            c.send_built("A", logon, sender="NOBODY")
        elif case == "wrong_begin_string":
            c.send_built("A", logon[:2], begin_string="FIX.4.2")
        elif case == "stale_sending_time":
            stale = (datetime.now(timezone.utc) - timedelta(minutes=10)).strftime("%Y%m%d-%H:%M:%S.000").encode()
            c.send_built("A", logon, sending_time=stale)
        elif case == "not_a_logon":
            # an order first, then a good logon in the same write: neither is processed
            c.sock.sendall(c.build("D", [(11, "X1"), (55, "AAPL"), (54, "1"), (60, utc_now()), (38, 1),
                                         (40, "2"), (44, "190.00")], seq=1)
                           + c.build("A", logon, seq=2))
        elif case == "bad_checksum":
            c.send_built("A", logon, checksum_off_by=7)
        elif case == "bad_body_length":
            # BodyLength shorter than the body: CheckSum is not where it says
            raw = c.build("A", logon)
            c.send_raw(c.build("A", logon, body_length=int(raw.split(b"\x01")[1][2:]) - 5))
        got = c.wait_closed(5)
        assert got == [], f"{case}: expected no answer, got {got}"
    finally:
        c.close()
    # the refused attempt consumed nothing: a good logon with seq 1 works and we also start at 1
    good = connect(server, name)
    try:
        ack = good.logon(password="secret", reset=True)
        assert field(ack, 34) == "1" and field(ack, 141) == "Y"
    finally:
        # log out cleanly and reset next time so each case starts from seq 1
        good.send("5")
        good.wait_closed()
        good.close()
    wait_log(server, r"(logon refused|garbled)")


def test_second_connection_for_a_logged_on_session_is_refused(server):
    first = logged_on(server, "TWICE", heartbeat=30)
    second = connect(server, "TWICE")
    try:
        second.send("A", [(98, 0), (108, 30)])
        assert second.wait_closed(5) == []
        wait_log(server, r"logon refused from .*session TWICE->OMS is already logged on")
        # the first connection is untouched and keeps its sequence numbers
        hb = first.test_request("STILL")
        assert field(hb, 34) == "2"
    finally:
        first.close()
        second.close()


def test_reset_seq_num_flag_both_ways(server):
    c = logged_on(server, "RESET", heartbeat=30, reset=False)
    c.test_request("A1")
    c.send("5")
    c.expect("5")
    c.wait_closed()
    c.close()
    # without 141: sequence numbers continue on both sides
    c2 = connect(server, "RESET")
    c2.seq = 4
    ack = c2.logon(heartbeat=30)
    assert field(ack, 34) == "4" and field(ack, 141) is None
    c2.send("5")
    c2.expect("5")
    c2.wait_closed()
    c2.close()
    # with 141=Y and seq 1: both sides start again at 1, and the answer carries 141=Y
    c3 = connect(server, "RESET")
    try:
        ack = c3.logon(heartbeat=30, reset=True)
        assert field(ack, 34) == "1" and field(ack, 141) == "Y"
        hb = c3.test_request("A2")
        assert field(hb, 34) == "2"
    finally:
        c3.close()


def test_in_session_reset_logon(server):
    c = logged_on(server, "INRESET", heartbeat=30)
    try:
        c.test_request("X")
        c.test_request("Y")
        c.seq = 1
        c.send("A", [(98, 0), (108, 30), (141, "Y")])
        ack = c.expect("A")
        assert field(ack, 34) == "1" and field(ack, 141) == "Y"
        hb = c.test_request("Z")
        assert field(hb, 34) == "2"
    finally:
        c.close()


def test_logon_with_seq_too_low_gets_logout_with_reason(server):
    c = logged_on(server, "LOW", heartbeat=30, reset=False)
    c.test_request("1")
    c.test_request("2")
    c.close()
    c2 = connect(server, "LOW")
    try:
        c2.send("A", [(98, 0), (108, 30)])          # seq 1 but 4 expected
        msgs = c2.wait_closed(5)
        assert [m.get(35) for m in msgs] == [b"5"]
        assert "MsgSeqNum too low, expecting 4 but received 1" in field(msgs[0], 58)
    finally:
        c2.close()


# -- heartbeat / test request ------------------------------------------------------------------

def test_heartbeats_test_request_and_disconnect_when_unanswered(server):
    c = connect(server, "HB")
    try:
        ack = c.logon(heartbeat=1)
        assert field(ack, 108) == "1"
        started = time.monotonic()
        msgs = c.wait_closed(10)             # we never answer anything
        elapsed = time.monotonic() - started
        kinds = [m.get(35) for m in msgs]
        assert b"0" in kinds, kinds
        test_requests = [m for m in msgs if m.get(35) == b"1"]
        assert len(test_requests) == 1 and test_requests[0].get(112)
        assert kinds[-1] == b"5" and "Test request not answered" in field(msgs[-1], 58)
        assert 1.5 < elapsed < 8, elapsed
    finally:
        c.close()


def test_answered_test_requests_keep_the_session_alive(server):
    c = connect(server, "HB2")
    try:
        c.logon(heartbeat=1)
        deadline = time.monotonic() + 4.0
        seen_test_request = False
        while time.monotonic() < deadline:
            msg = c.recv(0.5)
            assert not c.eof, "session was dropped although we answered"
            if msg is not None and msg.get(35) == b"1":
                seen_test_request = True
                c.send("0", [(112, msg.get(112).decode())])
        assert seen_test_request
        hb = c.test_request("ALIVE")
        assert field(hb, 112) == "ALIVE"
    finally:
        c.close()


def test_fixed_heartbeat_from_config_overrides_logon(server):
    c = connect(server, "FIXEDHB")
    try:
        ack = c.logon(heartbeat=30)
        assert field(ack, 108) == "2"
        t0 = time.monotonic()
        hb = c.expect("0", timeout=5, skip_heartbeats=False)
        assert field(hb, 112) is None and time.monotonic() - t0 < 4
    finally:
        c.close()


# -- sequence numbers --------------------------------------------------------------------------

def _order_fields(cl: str, price: str = "400.00", side: str = "1") -> list:
    return [(11, cl), (55, "MSFT"), (54, side), (60, utc_now()), (38, 5), (40, "2"), (44, price), (59, "0")]


def test_gap_triggers_resend_request_and_queued_messages_run_in_order(server):
    c = logged_on(server, "GAP", heartbeat=30)
    try:
        c.send("D", _order_fields("GAP2"))                         # seq 2
        assert field(c.expect("8"), 11) == "GAP2"
        c.send("D", _order_fields("GAP5"), seq=5)                  # 3 and 4 missing
        c.send("D", _order_fields("GAP6"), seq=6)
        rr = c.expect("2")
        assert field(rr, 7) == "3" and field(rr, 16) == "0"
        assert c.drain(0.5) == []                                  # 5 and 6 wait
        # the resend: seq 3 an order (PossDup), seq 4 an admin message gap-filled
        c.send_built("D", _order_fields("GAP3"), seq=3, extra_header=[(43, "Y"), (122, utc_now())])
        c.send_built("4", [(123, "Y"), (36, 5)], seq=4, extra_header=[(43, "Y"), (122, utc_now())])
        ids = [field(c.expect("8"), 11) for _ in range(3)]
        assert ids == ["GAP3", "GAP5", "GAP6"]
        c.seq = 7
        assert field(c.test_request("AFTER"), 112) == "AFTER"
    finally:
        c.close()


def test_seq_too_low_without_possdup_logs_out_and_possdup_duplicate_is_ignored(server):
    c = logged_on(server, "SEQRESET", heartbeat=30)
    try:
        c.test_request("T2")                                       # seq 2
        # a duplicate already seen, flagged PossDup: ignored
        c.send_built("1", [(112, "DUP")], seq=2, extra_header=[(43, "Y"), (122, utc_now())])
        assert c.drain(0.5) == []
        # SequenceReset-Reset: jumps forward whatever its own seq
        c.send_built("4", [(36, 20)], seq=1)
        c.seq = 20
        assert field(c.test_request("T20"), 112) == "T20"          # 20 accepted
        # Reset to a lower number is refused: value out of range
        c.send_built("4", [(36, 5)], seq=99)
        rej = c.expect("3")
        assert field(rej, 373) == "5" and field(rej, 371) == "36"
        # SequenceReset-GapFill at the expected seq moves the expected seq to NewSeqNo
        c.send_built("4", [(123, "Y"), (36, 30)], seq=21)
        c.seq = 30
        assert field(c.test_request("T30"), 112) == "T30"
        # too low, no PossDup: Logout with the reason, then disconnect
        c.send("1", [(112, "LOW")], seq=25)
        msgs = c.wait_closed(5)
        assert msgs and msgs[-1].get(35) == b"5"
        assert "MsgSeqNum too low, expecting 31 but received 25" in field(msgs[-1], 58)
    finally:
        c.close()


def _resend_check(c: FixClient, end: object) -> None:
    # our side: 1 logon, 2 ER, 3 heartbeat (answer to test request), 4 ER, 5 heartbeat
    sent_at = []
    c.new_order("RS1", "MSFT", "1", 5, "401.00")
    sent_at.append(field(c.expect("8"), 52))
    c.test_request("T1")
    c.new_order("RS2", "MSFT", "1", 5, "402.00")
    sent_at.append(field(c.expect("8"), 52))
    c.test_request("T2")
    c.send("2", [(7, 1), (16, end)])
    msgs = c.drain(1.0)
    summary = [(field(m, 35), field(m, 34), field(m, 36), field(m, 43), field(m, 11)) for m in msgs]
    assert summary == [("4", "1", "2", "Y", None), ("8", "2", None, "Y", "RS1"),
                       ("4", "3", "4", "Y", None), ("8", "4", None, "Y", "RS2"),
                       ("4", "5", "6", "Y", None)], summary
    assert all(field(m, 123) == "Y" for m in msgs if m.get(35) == b"4")
    ers = [m for m in msgs if m.get(35) == b"8"]
    assert [field(m, 122) for m in ers] == sent_at          # OrigSendingTime = first SendingTime
    assert all(field(m, 52) >= field(m, 122) for m in ers)
    # a partial range
    c.send("2", [(7, 4), (16, 4)])
    part = c.drain(0.7)
    assert [(field(m, 35), field(m, 34), field(m, 11)) for m in part] == [("8", "4", "RS2")]


def test_resend_request_served_from_store_44(server):
    c = logged_on(server, "RESEND", heartbeat=30)
    try:
        _resend_check(c, 0)
    finally:
        c.close()


def test_resend_request_served_from_store_42_end_999999(server):
    c = logged_on(server, "RESEND42", heartbeat=30)
    try:
        _resend_check(c, 999999)
    finally:
        c.close()


# -- session rejects ---------------------------------------------------------------------------

REJECT_CASES = {
    # name: (msg type, fields, expected 373, expected 371)
    "invalid_tag": ("1", [(112, "X"), ("12a", "1")], "0", None),
    "required_tag_missing": ("D", [(11, "R1"), (54, "1"), (60, "NOW"), (38, 5), (40, "2"), (44, "1.00")], "1", "55"),
    "tag_not_defined_for_type": ("1", [(112, "X"), (44, "1.00")], "2", "44"),
    "undefined_tag": ("1", [(112, "X"), (4999, "1")], "3", "4999"),
    "tag_without_value": ("1", [(112, "")], "4", "112"),
    "value_out_of_range": ("D", [(11, "R2"), (55, "MSFT"), (54, "Z"), (60, "NOW"), (38, 5), (40, "2"),
                                 (44, "1.00")], "5", "54"),
    "incorrect_data_format": ("D", [(11, "R3"), (55, "MSFT"), (54, "1"), (60, "NOW"), (38, "abc"), (40, "2"),
                                    (44, "1.00")], "6", "38"),
    "tag_repeated": ("1", [(112, "X"), (112, "Y")], "13", "112"),
    "invalid_msg_type": ("ZZ", [], "11", "35"),
}


@pytest.mark.parametrize("begin", ["FIX.4.4", "FIX.4.2"])
def test_session_rejects_each_reason_and_consume_the_seq(server, begin):
    name = "REJ" if begin == "FIX.4.4" else "REJ42"
    c = logged_on(server, name, heartbeat=30)
    try:
        for case, (mt, fields, reason, tag) in REJECT_CASES.items():
            fields = [(t, utc_now() if v == "NOW" else v) for t, v in fields]
            if begin == "FIX.4.2" and mt == "D":
                fields.insert(1, (21, "1"))
            if begin == "FIX.4.2" and case == "tag_repeated":
                reason = None       # 4.2 has no SessionRejectReason 13: 373 is left out
            seq = c.seq
            c.send_built(mt, fields)
            rej = c.expect("3")
            assert field(rej, 45) == str(seq), case
            assert field(rej, 373) == reason, (case, str(rej))
            assert field(rej, 371) == tag, (case, str(rej))
            assert field(rej, 372) == mt, case
            assert field(rej, 58), case
        # every rejected message consumed its seq: the next one is in sequence
        assert field(c.test_request("OK"), 112) == "OK"
        assert c.drain(0.3) == []          # and no ResendRequest came
    finally:
        c.close()


def test_compid_problem_rejects_and_logs_out(server):
    c = logged_on(server, "COMPID", heartbeat=30)
    try:
        c.send_built("1", [(112, "X")], sender="SOMEONE")
        c.seq += 1
        msgs = c.wait_closed(5)
        assert [m.get(35) for m in msgs] == [b"3", b"5"]
        assert field(msgs[0], 373) == "9" and field(msgs[0], 45) == "2"
    finally:
        c.close()


def test_sending_time_accuracy_problem_rejects_and_logs_out(server):
    c = logged_on(server, "STIME", heartbeat=30)
    try:
        stale = (datetime.now(timezone.utc) - timedelta(minutes=10)).strftime("%Y%m%d-%H:%M:%S.000").encode()
        c.send_built("1", [(112, "X")], sending_time=stale)
        msgs = c.wait_closed(5)
        assert [m.get(35) for m in msgs] == [b"3", b"5"]
        assert field(msgs[0], 373) == "10" and field(msgs[0], 371) == "52"
    finally:
        c.close()


def test_garbled_messages_are_ignored_without_consuming_a_seq(server):
    c = logged_on(server, "GARBLE", heartbeat=30)
    try:
        c.send_raw(c.build("1", [(112, "BAD1")], checksum_off_by=1))
        raw = c.build("1", [(112, "BAD2")])
        c.send_raw(c.build("1", [(112, "BAD2")], body_length=int(raw.split(b"\x01")[1][2:]) - 3))  # BodyLength
        hb = c.test_request("GOOD")                                            # same seq 2
        assert field(hb, 112) == "GOOD"
        assert c.drain(0.3) == []
        wait_log(server, r"GARBLE->OMS .*garbled message ignored")
    finally:
        c.close()


def _msgtype_after_sender(c: FixClient, msg_type: str, fields: list) -> bytes:
    """A message framed 8, 9, 49, 35, 56, ... with BodyLength and CheckSum right."""
    parts = [(49, c.sender), (35, msg_type), (56, c.target), (34, c.seq), (52, utc_now()), *fields]
    body = b"".join(b"%d=%s\x01" % (t, _b(v)) for t, v in parts)
    msg = b"8=%s\x019=%d\x01" % (c.begin_string.encode(), len(body)) + body
    return msg + b"10=%03d\x01" % (sum(msg) % 256)


def test_msgtype_not_third_is_garbled_and_ignored_without_consuming_a_seq(server):
    """MsgType (35) not the third field, CheckSum right: garbled by the session spec, so no
    Reject (373=14) and its MsgSeqNum is not consumed; the gap it leaves is resent for."""
    c = logged_on(server, "MT3", heartbeat=30)
    try:
        c.send_raw(_msgtype_after_sender(c, "1", [(112, "LATE35")]))     # seq 2, ignored
        assert field(c.test_request("SAME-SEQ"), 112) == "SAME-SEQ"          # seq 2 again: in sequence
        assert c.drain(0.3) == []
        wait_log(server, r"MT3->OMS .*garbled message ignored \(MsgType \(35\) is not the third field\)")
        c.send_raw(_msgtype_after_sender(c, "1", [(112, "LATE35")]))     # seq 3, ignored
        c.seq += 1
        c.send("1", [(112, "AFTER")])                                         # seq 4: 3 is missing
        rr = c.expect("2")
        assert (field(rr, 7), field(rr, 16)) == ("3", "0")
    finally:
        c.close()


def test_standard_optional_fields_are_accepted(server):
    """Optional fields of the FIX 4.4 F / G and FIX 4.2 H layouts reach the engine instead of a
    Reject 373=2: ListID (66), OrigOrdModTime (586), Account (1) in a 4.2 status request."""
    c = logged_on(server, "OPT", heartbeat=30)
    try:
        c.new_order("OPT1", "AAPL", "1", 10, "180.00")
        assert field(c.expect("8"), 39) == "0"
        c.send("G", [(41, "OPT1"), (11, "OPT2"), (66, "L1"), (586, utc_now()), (55, "AAPL"), (54, "1"),
                     (60, utc_now()), (38, 20), (40, "2"), (44, "180.00")])
        rep = c.expect("8")
        assert (field(rep, 11), field(rep, 150)) == ("OPT2", "5"), str(rep)
        c.send("F", [(41, "OPT2"), (11, "OPT3"), (66, "L1"), (586, utc_now()), (55, "AAPL"), (54, "1"),
                     (60, utc_now()), (38, 20)])
        rep = c.expect("8")
        assert (field(rep, 11), field(rep, 150)) == ("OPT3", "4"), str(rep)
    finally:
        c.close()
    c = logged_on(server, "OPT42", heartbeat=30)
    try:
        c.send("H", [(11, "NOSUCH"), (1, "BENCH"), (55, "AAPL"), (54, "1")])
        assert field(c.expect("8"), 11) == "NOSUCH"
        assert field(c.test_request("OK"), 112) == "OK"
    finally:
        c.close()


def test_first_message_order_not_processed(server):
    c = connect(server, "FIRSTD")
    try:
        c.send("D", _order_fields("NOPE"))
        assert c.wait_closed(5) == []
        wait_log(server, r"first message is MsgType b'D', not Logon")
    finally:
        c.close()


# -- logout, application -----------------------------------------------------------------------

def test_logout_initiated_by_client(server):
    c = logged_on(server, "LOGOUT", heartbeat=30)
    try:
        c.send("5", [(58, "bye")])
        msgs = c.wait_closed(5)
        assert [m.get(35) for m in msgs] == [b"5"]
    finally:
        c.close()


def test_business_message_reject_for_unsupported_type(server):
    c = logged_on(server, "BMR", heartbeat=30)
    try:
        c.send_built("R", [(131, "Q1"), (146, 1), (55, "MSFT")])
        j = c.expect("j")
        assert field(j, 380) == "3" and field(j, 372) == "R" and field(j, 45) == "2"
        assert field(c.test_request("OK"), 112) == "OK"
    finally:
        c.close()


def test_two_clients_trade_with_each_other_and_drop_copy_sees_both(server):
    dc = logged_on(server, "DC", heartbeat=30)
    buyer = logged_on(server, "BUYER", heartbeat=30)
    seller = logged_on(server, "SELLER", heartbeat=30)
    try:
        buyer.new_order("TB1", "SPY", "1", 50, "560.00")
        assert field(buyer.expect("8"), 39) == "0"
        seller.new_order("TS1", "SPY", "2", 50, "560.00")
        s_ack, s_fill = seller.expect("8"), seller.expect("8")
        assert field(s_ack, 39) == "0" and field(s_fill, 39) == "2" and field(s_fill, 32) == "50"
        b_fill = buyer.expect("8")
        assert field(b_fill, 39) == "2" and field(b_fill, 31) == "560.00"
        copies = [dc.expect("8") for _ in range(4)]
        assert sorted((field(m, 11), field(m, 39)) for m in copies) == [
            ("TB1", "0"), ("TB1", "2"), ("TS1", "0"), ("TS1", "2")]
    finally:
        for c in (dc, buyer, seller):
            c.close()


def test_drop_copy_session_cannot_send_orders(server):
    """A drop copy receives reports only: its order and cancel are refused with a
    BusinessMessageReject (380=6 Not authorized), nothing reaches the engine, the session goes on."""
    dc = logged_on(server, "DC", heartbeat=30)
    try:
        dc.new_order("DCX1", "SPY", "1", 10, "1.00")
        j = dc.expect("j")
        assert (field(j, 380), field(j, 372), field(j, 379)) == ("6", "D", "DCX1")
        assert "drop-copy session" in field(j, 58)
        dc.send_built("F", [(41, "DCX1"), (11, "DCX2"), (55, "SPY"), (54, "1"), (60, utc_now()), (38, 10)])
        assert field(dc.expect("j"), 380) == "6"
        dc.send("1", [(112, "OK")])
        assert field(dc.expect("0"), 112) == "OK"     # strictly next: no ExecutionReport came between
    finally:
        dc.close()
    wait_log(server, r"DC->OMS: D message seq \d+ refused \(drop-copy session\)")


def test_duplicate_cl_ord_id_and_poss_resend_answers_keep_the_working_order_alive(server):
    """FIX 4.4 Vol 4 D29 over the wire: the order resent with PossResend=Y (97) gets its status
    (150=I, its OrderID and state); a new order reusing the ClOrdID is rejected 103=6 carrying the
    working order's OrdStatus and LeavesQty, so the client does not mark it dead."""
    c = logged_on(server, "DUP", heartbeat=30)
    try:
        body = [(11, "DUP1"), (55, "AAPL"), (54, "1"), (60, utc_now()), (38, 100), (40, "2"), (44, "185.00"),
                (59, "0")]
        c.send_built("D", body)
        ack = c.expect("8")
        assert (field(ack, 150), field(ack, 39)) == ("0", "0")
        c.send_built("D", body, extra_header=[(97, "Y")])
        status = c.expect("8")
        assert (field(status, 150), field(status, 39), field(status, 37), field(status, 151)) == (
            "I", "0", field(ack, 37), "100")
        c.send_built("D", [(38 if t == 38 else t, 200 if t == 38 else v) for t, v in body])
        rej = c.expect("8")
        assert (field(rej, 150), field(rej, 39), field(rej, 103), field(rej, 151), field(rej, 14)) == (
            "8", "0", "6", "100", "0")
        assert field(rej, 38) == "200" and field(rej, 11) == "DUP1"
    finally:
        c.close()


def test_cancel_on_disconnect(server):
    dc = logged_on(server, "DC", heartbeat=30)
    c = logged_on(server, "COD", heartbeat=30)
    try:
        c.new_order("COD1", "TSLA", "1", 10, "249.00")
        assert field(c.expect("8"), 39) == "0"
        assert field(dc.expect("8"), 11) == "COD1"
        c.close()                                 # no logout: the connection just drops
        canceled = dc.expect("8", timeout=5)
        assert field(canceled, 11) == "COD1" and field(canceled, 39) == "4" and field(canceled, 150) == "4"
    finally:
        c.close()
        dc.close()


def test_client_that_never_reads_is_cut_off_and_others_keep_trading(server):
    slow = connect(server, "SLOW")
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.logon(heartbeat=30)
    other = logged_on(server, "BUYER", heartbeat=30)
    try:
        start = time.monotonic()
        sent = 0
        cut = False
        for round_no in range(400):              # at most 80,000 requests
            try:
                slow.sock.settimeout(5)
                slow.sock.sendall(b"".join(slow.build("H", [(37, "999999999"), (11, "NOPE"), (55, "MSFT"),
                                                            (54, "1")], seq=slow.seq + sent + i)
                                           for i in range(200)))
            except OSError:
                cut = True
                break
            sent += 200
            if round_no % 20 == 0:                # meanwhile another session trades normally
                other.new_order(f"OT{round_no}", "AAPL", "1", 1, "180.00")
                assert field(other.expect("8", timeout=5), 39) == "0"
            if "outbound buffer over" in log_text(server):
                cut = True
                break
        assert cut, f"sent {sent} requests without being cut off"
        wait_log(server, r"SLOW->OMS .*outbound buffer over 64 KiB \(client not reading\): disconnecting")
        other.new_order("OT-END", "AAPL", "1", 1, "180.00")
        assert field(other.expect("8", timeout=5), 39) == "0"
        assert time.monotonic() - start < 60
    finally:
        slow.close()
        other.close()


def test_daily_reset_resets_an_old_store_on_logon(server):
    from oms_trading.fix.store import MessageStore
    import os
    folder = server.base / "data" / "fix" / "DAILY-OMS"
    store = MessageStore(folder)
    store.save_sent([(i, b"8=FIX.4.4\x019=5\x0135=0\x0110=000\x01", 0) for i in range(1, 41)])
    store.next_target_seq = 50
    store.save_target_seq()
    store.close()
    two_days_ago = time.time() - 2 * 86400
    for f in folder.iterdir():
        os.utime(f, (two_days_ago, two_days_ago))
    c = connect(server, "DAILY")
    try:
        ack = c.logon(heartbeat=30)              # seq 1, no 141: the daily reset applies
        assert field(ack, 34) == "1" and field(ack, 141) == "Y"
        assert field(c.test_request("D"), 34) == "2"
    finally:
        c.close()


def test_reports_stored_while_away_over_a_daily_reset_reach_the_next_logon(server):
    """Reviewed: a fill of a GTC order while its session was logged off past the daily reset
    time went into the old day's store, which the next logon then reset away (the resend found
    nothing). The store now resets before the new day's first report, as QuickFIX resets
    every session's store at its start time, connected or not."""
    import os
    c = connect(server, "AWAY")
    c.logon(heartbeat=30, reset=True)
    c.new_order("AWAY1", "VOD.L", "1", 100, "70.00", tif="1")
    assert field(c.expect("8"), 39) == "0"
    c.close()
    wait_log(server, r"FIX session AWAY->OMS ended")
    two_days_ago = time.time() - 2 * 86400          # the reset time passed while it was away
    for f in (server.base / "data" / "fix" / "AWAY-OMS").iterdir():
        os.utime(f, (two_days_ago, two_days_ago))
    seller = logged_on(server, "SELLER", heartbeat=30)
    try:
        seller.new_order("AWAYS1", "VOD.L", "2", 100, "70.00", tif="3")
        assert field(seller.expect("8"), 39) == "0" and field(seller.expect("8"), 39) == "2"
    finally:
        seller.close()
    wait_log(server, r"AWAY->OMS: daily reset time .* passed while logged off")
    c = connect(server, "AWAY")
    try:
        logon = c.logon(heartbeat=30)                # seq 1: the new day's numbering
        assert field(logon, 141) is None and field(logon, 34) == "2"     # the fill holds 1
        c.send("2", [(7, 1), (16, 0)])
        fill = c.expect("8")
        assert (field(fill, 34), field(fill, 43), field(fill, 11), field(fill, 39)) == ("1", "Y", "AWAY1", "2")
    finally:
        c.close()


def test_most_recent_reset_time_unit():
    from oms_trading.config import previous_utc_time_ns as most_recent_reset_ns
    day = 86400 * 10**9
    base = 20000 * day                                     # a UTC midnight
    at = base + (21 * 3600 + 5 * 60) * 10**9
    assert most_recent_reset_ns("21:05", at) == at
    assert most_recent_reset_ns("21:05", at + 1) == at
    assert most_recent_reset_ns("21:05", at - 1) == at - day
    assert most_recent_reset_ns("00:00", base + 5) == base
    assert most_recent_reset_ns("21:05:30", at + 30 * 10**9) == at + 30 * 10**9
    assert most_recent_reset_ns("21:05:30", at + 29 * 10**9) == at + 30 * 10**9 - day


def test_per_session_sending_time_tolerance_and_validation_off(server):
    c = connect(server, "LOOSE")
    try:
        stale = (datetime.now(timezone.utc) - timedelta(minutes=10)).strftime("%Y%m%d-%H:%M:%S.000").encode()
        c.send_built("A", [(98, 0), (108, 30)], sending_time=stale)          # 10 min off: within 3600 s
        assert field(c.expect("A"), 98) == "0"
        c.send_built("1", [(112, "U"), (4999, "x")], sending_time=stale)    # undefined tag: not checked
        hb = c.expect("0")
        assert field(hb, 112) == "U"
        c.send_built("R", [(131, "Q1")])                                     # unsupported type: still j
        assert field(c.expect("j"), 380) == "3"
    finally:
        c.close()
