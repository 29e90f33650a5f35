"""Hostile input found by the third security review of the network edges, against a running
`oms serve` over real sockets (FIX through tests/fixclient.py, HTTP through http.client).

Each test names what the server did wrong before its fix. FIX tests use the demo config's BENCH
session (FIX.4.4, reset on logon), so every test starts from MsgSeqNum 1 on both sides.
"""
from __future__ import annotations

import pytest

from tests.fixclient import FixClient, field
from tests.server_process import ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    proc = ServerProcess(tmp_path_factory.mktemp("hostile3") / "data").start()
    yield proc
    assert proc.stop() == 0


def _bench(server) -> FixClient:
    c = FixClient("127.0.0.1", server.fix_port, "BENCH")
    c.logon(reset=True)
    return c


def _get(server, path: str):
    """GET ``path`` on the server's HTTP port: (the response, its body)."""
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp, resp.read()
    finally:
        conn.close()


def _tracebacks(server) -> list[str]:
    return [line for line in server.stderr_lines if "Traceback" in line]


def _still_in_session(c: FixClient) -> None:
    """The session goes on, with its sequence numbers as they should be: a TestRequest with
    the next MsgSeqNum is answered by a Heartbeat."""
    hb = c.test_request("ALIVE", timeout=5)
    assert field(hb, 112) == "ALIVE"


# -- FIX: whole numbers of more digits than any int the session can hold ------------------

HUGE = "1" * 5000            # past the 4,300 digits int() of Python 3.11 refuses with ValueError
OVER_64_BITS = str(2**64)    # 20 digits: what the message store packs into 64 bits refuses


@pytest.mark.parametrize("count", [HUGE])
def test_a_repeating_group_count_beyond_64_bits_is_a_reject_not_a_dropped_connection(server, count):
    """NoPartyIDs (453) of 5,000 digits made the dictionary's group check call int() on it:
    ValueError, the connection dropped with a traceback and the order unanswered. A NumInGroup
    that no int can hold is an incorrect data format (373=6), answered like any other."""
    before = len(_tracebacks(server))
    c = _bench(server)
    try:
        c.send_built("D", [(11, "GRP1"), (453, count), (448, "X"), (447, "D"), (452, "1"), (55, "AAPL"),
                           (54, "1"), (60, "20260101-00:00:00"), (38, 100), (40, "2"), (44, "190")])
        rej = c.expect("3")
        assert (field(rej, 45), field(rej, 371), field(rej, 372), field(rej, 373)) == ("2", "453", "D", "6")
        _still_in_session(c)
    finally:
        c.close()
    assert len(_tracebacks(server)) == before, "".join(server.stderr_lines[-40:])


@pytest.mark.parametrize("new_seq", [HUGE, OVER_64_BITS])
def test_a_sequence_reset_to_a_number_beyond_64_bits_is_rejected_and_changes_nothing(server, new_seq):
    """SequenceReset-Reset (taken whatever its MsgSeqNum, before the dictionary's checks) with
    NewSeqNo 2^64 set the expected MsgSeqNum to it: every later store write of the session
    failed (struct.error), the connection dropped with a traceback, and the session's next
    logons could only fail. With 5,000 digits int() raised. Both are an incorrect data format
    (373=6) for NewSeqNo; the expected MsgSeqNum stays as it was."""
    before = len(_tracebacks(server))
    c = _bench(server)
    try:
        c.send_built("4", [(36, new_seq)])
        rej = c.expect("3")
        assert (field(rej, 371), field(rej, 372), field(rej, 373)) == ("36", "4", "6")
        c.seq = 2          # a rejected SequenceReset-Reset moves nothing: 2 is still expected
        _still_in_session(c)
    finally:
        c.close()
    assert len(_tracebacks(server)) == before, "".join(server.stderr_lines[-40:])


@pytest.mark.parametrize("fields", [
    [(123, "Y"), (36, HUGE)],               # GapFill: NewSeqNo
    [(123, "Y"), (36, OVER_64_BITS)],
    [(7, HUGE), (16, "0")],                 # ResendRequest: BeginSeqNo
    [(7, "1"), (16, HUGE)],                 # ResendRequest: EndSeqNo
], ids=["gapfill-5000", "gapfill-2^64", "resend-begin-5000", "resend-end-5000"])
def test_sequence_number_fields_beyond_64_bits_are_rejected_in_order(server, fields):
    """GapFill and ResendRequest with a 5,000-digit (or 2^64) sequence number field: int()
    raised (or the store's write did) and the connection dropped with a traceback. They are
    an incorrect data format (373=6) for that field; the message's MsgSeqNum is consumed."""
    before = len(_tracebacks(server))
    c = _bench(server)
    try:
        tag = fields[-1][0] if fields[-1][1] in (HUGE, OVER_64_BITS) else fields[0][0]
        c.send_built("4" if fields[0][0] == 123 else "2", fields)
        rej = c.expect("3")
        assert (field(rej, 45), field(rej, 371), field(rej, 373)) == ("2", str(tag), "6")
        _still_in_session(c)
    finally:
        c.close()
    assert len(_tracebacks(server)) == before, "".join(server.stderr_lines[-40:])


def test_a_resend_request_ahead_of_the_sequence_with_a_huge_end_is_served_not_a_traceback(server):
    """A ResendRequest above the expected MsgSeqNum is answered at once, before the dictionary
    checks it: its 5,000-digit EndSeqNo made int() raise there. It is "beyond our last": the
    resend is served up to the last message sent (the Logon: a GapFill), then the gap it opened
    is asked for and the session goes on."""
    before = len(_tracebacks(server))
    c = _bench(server)
    try:
        c.send_built("2", [(7, "1"), (16, HUGE)], seq=5)
        got = c.drain(1.0)
        types = [field(m, 35) for m in got]
        assert "4" in types and "2" in types, got      # the GapFill answering it, our ResendRequest
        assert not c.eof
    finally:
        c.close()
    assert len(_tracebacks(server)) == before, "".join(server.stderr_lines[-40:])


@pytest.mark.parametrize("heartbeat", ["1" * 400, HUGE])
def test_a_logon_with_a_heartbeat_interval_beyond_64_bits_is_refused_without_a_traceback(server, heartbeat):
    """HeartBtInt of 400 digits was taken: the Logon was answered, then the session's timer
    failed with OverflowError every 100 ms (a traceback each time in the log, no heartbeat nor
    TestRequest ever again). Of 5,000 digits, int() raised and the connection dropped with a
    traceback. Such a Logon is invalid (HeartBtInt not an int): refused, as other bad Logons."""
    before = len(_tracebacks(server))
    c = FixClient("127.0.0.1", server.fix_port, "BENCH")
    try:
        c.send_built("A", [(98, 0), (108, heartbeat), (141, "Y")])
        got = c.wait_closed(5)
        assert not [m for m in got if field(m, 35) == "A"], got
    finally:
        c.close()
    c = _bench(server)      # and the session logs on normally afterwards
    try:
        _still_in_session(c)
    finally:
        c.close()
    assert len(_tracebacks(server)) == before, "".join(server.stderr_lines[-40:])



def test_messages_held_behind_a_sequence_gap_are_bounded_in_bytes_not_only_in_count(server):
    """Messages above the expected MsgSeqNum wait in memory for the resend that fills the gap,
    up to 10,000 of them, whatever their size: 10,000 frames of 60 KB held about 1.2 GB of the
    server (2,000 of them grew its RSS by 240 MB), from one session that needs no password in
    the demo config. Past 32 MiB held, the session is logged out as it is past 10,000 messages."""
    c = _bench(server)
    pad = "x" * 60000
    try:
        try:
            for first in range(10, 10 + 1000, 50):          # 2..9 never come: all of it waits
                c.send_raw(b"".join(c.build("1", [(112, "T%d" % seq), (58, pad)], seq=seq)
                                    for seq in range(first, first + 50)))
        except OSError:
            pass                                            # cut off while sending: fine
        got = c.wait_closed(10)
        logouts = [m for m in got if field(m, 35) == "5"]
        assert logouts and "Too many messages queued" in field(logouts[-1], 58), got
    finally:
        c.close()



def test_frames_of_thousands_of_repeated_tags_do_not_stall_the_event_loop(server):
    """The codec listed repeated tags in a list and checked each repeat with 'in' on it: a
    64 KB frame of ~4,500 distinct tags each sent twice cost ~250 ms of the one event loop
    every session shares (quadratic; a frame as long of distinct tags costs ~25 ms), so twenty
    such frames took about five seconds to answer, and each read of them held every other
    session's messages for ~0.5 s. Each is still answered with Reject 373=13, in well under that."""
    import time

    body = []
    size, tag = 0, 5000
    while size < 63000:
        body += [(tag, "x"), (tag, "x")]
        size += 2 * len(b"%d=x\x01" % tag)
        tag += 1
    attacker = _bench(server)
    other = FixClient("127.0.0.1", server.fix_port, "CLIENT2", begin_string="FIX.4.2")
    try:
        other.logon()
        frames = b"".join(attacker.build("1", body, seq=seq) for seq in range(2, 22))
        started = time.monotonic()
        attacker.send_raw(frames)
        rejects = []
        while len(rejects) < 20:
            msg = attacker.expect("3", timeout=15)
            rejects.append((field(msg, 45), field(msg, 373)))
        took = time.monotonic() - started
        assert rejects == [(str(seq), "13") for seq in range(2, 22)]
        assert took < 2.5, f"twenty frames took {took:.2f} s of the event loop"
        other.test_request("OTHER", timeout=5)      # the other session goes on
    finally:
        attacker.close()
        other.close()


def test_refused_logons_are_journaled_at_once_in_records_of_bounded_size(server):
    """A refused logon (no password needed: an unknown CompID will do) is journaled as a
    session_reject whose text echoed the client's CompIDs whole, and session records were only
    written out with the next batch of orders: on a server nobody traded on, they all stayed in
    the journal's memory. 400 refused logons with a 60 KB TargetCompID grew the server by
    330 MB in four seconds, none of it on disk. Now each record keeps at most 1,000 characters
    of text and the acceptor's timer writes session records out within about 100 ms."""
    import time

    journal = server.data_dir / "journal"

    def on_disk() -> int:
        return sum(p.stat().st_size for p in journal.glob("*.log"))

    def rss_mb() -> float:
        with open(f"/proc/{server.proc.pid}/status") as f:
            return int(f.read().split("VmRSS:")[1].split()[0]) / 1024

    disk, rss = on_disk(), rss_mb()
    refused = 300
    for _ in range(refused):
        c = FixClient("127.0.0.1", server.fix_port, "BENCH", timeout=3)
        try:
            c.send_built("A", [(98, 0), (108, 30)], target="\x02" * 60000)
            c.wait_closed(3)
        finally:
            c.close()
    time.sleep(0.5)
    grown = on_disk() - disk
    assert grown > refused * 200, f"only {grown} bytes of {refused} refused logons reached the journal"
    assert grown < refused * 5000, f"{grown} bytes journaled for {refused} refused logons"
    assert rss_mb() - rss < 25, f"server grew from {rss:.0f} to {rss_mb():.0f} MB"


# -- HTTP: idle connections ------------------------------------------------------------------

def test_an_http_connection_that_never_sends_a_request_is_closed_after_the_idle_timeout(tmp_path):
    """An HTTP connection that sent nothing (or half a request line) stayed open for aiohttp's
    default keep-alive of 3,630 s: anyone reaching the port, no token needed, could hold every
    file descriptor of the process with idle connections, and the FIX acceptor then could not
    accept a Logon (seen with the process's descriptor limit lowered to 150: 200 idle HTTP
    connections, the next FIX Logon went unanswered). [http] idle_timeout_s closes them."""
    import socket
    import time
    from importlib.resources import files

    config = tmp_path / "oms.toml"
    demo = files("oms_trading").joinpath("demo_config.toml").read_text(encoding="utf-8")
    config.write_text(demo.replace("idle_timeout_s = 15", "idle_timeout_s = 1"), encoding="utf-8")
    proc = ServerProcess(tmp_path / "data", config=config).start()
    socks = []
    try:
        for first in (b"", b"GET /api/me HTTP/1.1\r\nHost: x\r\n"):
            s = socket.create_connection(("127.0.0.1", proc.http_port))
            s.sendall(first)
            s.settimeout(0.2)
            socks.append(s)
        deadline = time.monotonic() + 6
        open_ = list(socks)
        while open_ and time.monotonic() < deadline:
            for s in list(open_):
                try:
                    if s.recv(100) == b"":
                        open_.remove(s)
                except socket.timeout:
                    pass
                except OSError:
                    open_.remove(s)
        assert not open_, f"{len(open_)} idle HTTP connection(s) still open after 6 s"
    finally:
        for s in socks:
            s.close()
        assert proc.stop() == 0


# -- HTTP: static files ------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/static/x/", "/static/.x", "/static/a//b", "/static/....//app.py",
                                  "/static/nope.js"])
def test_a_missing_static_file_is_a_json_404(server, path):
    """A missing file under /static/ (a trailing slash, a dot name, a doubled slash) was answered
    with aiohttp's own empty application/octet-stream 404, not the JSON error of every other
    path: aiohttp only finds the file missing while sending it, past the error middleware."""
    import json

    resp, body = _get(server, path)
    assert resp.status == 404, (path, resp.status, body)
    assert resp.getheader("Content-Type", "").startswith("application/json"), (path, resp.getheaders())
    assert json.loads(body) == {"error": "Not Found", "status": 404}


def test_static_console_files_are_still_served(server):
    for path, kind in (("/static/app.js", "javascript"), ("/static/app.css", "text/css"),
                       ("/static/index.html", "text/html")):
        resp, body = _get(server, path)
        assert resp.status == 200 and kind in resp.getheader("Content-Type", "") and body, path


def test_the_logon_password_is_compared_as_before_in_constant_time():
    """Password (554) was compared with ``!=`` (time depends on the matching prefix); now
    hmac.compare_digest, with the same answers: the value read as latin-1 equals the configured
    password, and a password no latin-1 bytes spell never matches."""
    from oms_trading.fix.session import _password_ok
    assert _password_ok(b"secret", "secret") and _password_ok("caf\u00e9".encode("latin-1"), "caf\u00e9")
    for given in (b"", b"secre", b"secret!", b"SECRET", "caf\u00e9".encode("utf-8")):
        assert not _password_ok(given, "secret" if b"caf" not in given else "caf\u00e9"), given
    assert not _password_ok("\u20ac".encode("utf-8"), "\u20ac") and not _password_ok(b"?", "\u20ac")


def test_connections_not_logged_on_are_capped_and_a_logon_gets_through_once_one_goes(tmp_path):
    """Each FIX connection that never logs on holds a descriptor for the logon timeout before any
    credential is checked; with no cap anyone could use up the process's descriptors (the review
    left this open). Past ``[fix] max_connections_before_logon`` a new connection is closed at
    once, logged once a second; logged-on sessions do not count, and room comes back as the
    waiting ones go."""
    import socket
    import time
    from tests.test_fix_session import write_test_config
    config = write_test_config(tmp_path / "oms.toml", extra_fix={"max_connections_before_logon": "3"},
                               sessions={"CAPA": "", "CAPB": ""})
    server = ServerProcess(tmp_path / "data", config=config).start()
    idle: list[socket.socket] = []
    try:
        a = FixClient("127.0.0.1", server.fix_port, "CAPA", begin_string="FIX.4.4", timeout=5.0)
        a.logon(heartbeat=30, reset=True)                  # logged on: not counted
        idle = [socket.create_connection(("127.0.0.1", server.fix_port), timeout=5) for _ in range(3)]
        time.sleep(0.3)
        extra = socket.create_connection(("127.0.0.1", server.fix_port), timeout=5)
        assert extra.recv(100) == b""                      # closed at once, not after 10 s
        extra.close()
        refused = "refused: 3 connections not logged on yet (max_connections_before_logon)"
        deadline = time.monotonic() + 10                   # stderr is read by a thread
        while refused not in "".join(server.stderr_lines) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert refused in "".join(server.stderr_lines)
        idle.pop().close()
        time.sleep(0.3)
        b = FixClient("127.0.0.1", server.fix_port, "CAPB", begin_string="FIX.4.4", timeout=5.0)
        b.logon(heartbeat=30, reset=True)
        b.close()
        a.close()
    finally:
        for s in idle:
            s.close()
        server.kill()


def test_max_connections_before_logon_must_be_positive():
    from pathlib import Path
    from oms_trading.config import ConfigError, demo_config_text, parse_config
    text = demo_config_text().replace("max_connections_before_logon = 64", "max_connections_before_logon = 0", 1)
    with pytest.raises(ConfigError, match="fix.max_connections_before_logon: must be >= 1"):
        parse_config(text, "t.toml", Path("."))
    assert parse_config(demo_config_text(), "t.toml", Path(".")).max_connections_before_logon == 64


def test_a_client_gone_mid_body_is_not_logged_as_an_internal_error(server):
    """A client (with a valid token) that closes its connection halfway through a request body
    was logged as "unhandled error ... " with a traceback and answered 500 (to nobody): a client
    going away is not a bug of ours (left by the review)."""
    import socket
    import time
    before = len(server.stderr_lines)
    s = socket.create_connection(("127.0.0.1", server.http_port), timeout=5)
    s.sendall(b"PUT /api/risk/limits HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer demo-risk1-token\r\n"
              b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"scope\": ")
    time.sleep(0.3)
    s.close()
    time.sleep(0.5)
    logged = "".join(server.stderr_lines[before:])
    assert "unhandled error" not in logged and "Traceback" not in logged, logged


def test_a_json_number_too_long_is_a_400_that_names_no_python_internals(server):
    """A JSON number of 5,000 digits got a 400 quoting Python's "use sys.set_int_max_str_digits()"."""
    import http.client
    import json
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=10)
    body = b'{"scope": "default", "limit": "max_order_qty", "value": ' + b"9" * 5000 + b', "reason": "x"}'
    conn.request("PUT", "/api/risk/limits", body=body, headers={"Authorization": "Bearer demo-risk1-token",
                                                                "Content-Type": "application/json"})
    resp = conn.getresponse()
    out = json.loads(resp.read())
    conn.close()
    assert resp.status == 400 and "sys." not in out["error"] and "digits" in out["error"], out
