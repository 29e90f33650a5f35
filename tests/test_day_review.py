"""Day boundaries at start-up: a server down across the end of day, a temporary limit that
expired while it was down, and a wall clock that stepped back across an end of day."""
from __future__ import annotations

import asyncio
import io
import time

from oms_trading.audit import schema as ev
from oms_trading.audit.journal import Journal, iter_records
from oms_trading.audit.paths import journal_dir
from oms_trading.book import ReferenceBook
from oms_trading.compliance.risk import RiskEngine
from oms_trading.config import load_config, previous_utc_time_ns
from oms_trading.engine.engine import Engine
from tests.test_engine_common import limit, new

C1, C2 = "CLIENT1->OMS", "CLIENT2->OMS"
S = 10**9


def _write_journal(data, commands) -> None:
    cfg = load_config(None)
    journal = Journal(journal_dir(data), fsync="os")
    eng = Engine(cfg, journal, lambda: ReferenceBook(capacity=256), risk=RiskEngine(cfg))
    for cmd in commands:
        eng.process(cmd)
    eng.flush()
    journal.close()


def _start(data, probe=None):
    """Start `oms serve` in process on loopback (ports 0); ``probe(server)`` runs the moment the
    FIX port has opened (a client may connect from then on); returns what it and the engine
    said, after a clean stop."""
    from oms_trading.fix.session import FixAcceptor
    from oms_trading.server import OmsServer, ServeOptions

    seen: dict = {}

    async def scenario() -> None:
        server = OmsServer(load_config(None), ServeOptions(data, "127.0.0.1", 0, 0, book="reference"),
                           out=io.StringIO())
        real_start = FixAcceptor.start

        async def start(acceptor, *args, **kwargs):
            address = await real_start(acceptor, *args, **kwargs)
            if probe is not None:
                seen["at_listen"] = probe(server)
            return address

        FixAcceptor.start = start
        try:
            await server.start()
        finally:
            FixAcceptor.start = real_start
        try:
            await asyncio.sleep(0.3)        # the clock loop's first turns
            seen["after"] = probe(server) if probe is not None else None
        finally:
            await server.stop()

    asyncio.run(scenario())
    return seen


def _open(server) -> list[str]:
    return sorted(o.cl_ord_id for o in server.engine.open_orders())


def test_the_day_rolls_before_the_fix_port_opens_after_downtime_across_an_end_of_day(tmp_path):
    """Down across an end of day: the DAY order of that day must be expired, and the day's
    fills stop counting against credit, before any client can send an order. The roll was
    submitted by the clock task, which first ran after the FIX and HTTP ports were listening
    (and start() had returned): an order taken in between was decided against the old day's
    credit, and a DAY order of the new day entered then was expired at once by the late roll."""
    data = tmp_path / "data"
    t = time.time_ns() - 2 * 86_400 * S
    _write_journal(data, [new("D1", "1", 10, "180.00", session=C1, account="ACC1", ts=t, tif="0"),
                          new("G1", "1", 10, "180.00", session=C1, account="ACC1", ts=t + 1, tif="1")])
    seen = _start(data, _open)
    assert seen["at_listen"] == ["G1"]
    assert seen["after"] == ["G1"]
    rolls = [r for r in iter_records(journal_dir(data)) if r["type"] == ev.CLOCK and r.get("end_of_day")]
    assert len(rolls) == 1


def test_a_temporary_limit_that_expired_while_down_is_back_before_the_fix_port_opens(tmp_path):
    """A temporary limit (here a halt of ACC1) that expired while the server was down: the
    value from before it must be in force before a client can trade, audited once."""
    data = tmp_path / "data"
    now = time.time_ns()
    last_eod = previous_utc_time_ns(load_config(None).end_of_day, now)
    t = max(last_eod + 1, now - 60 * S)        # after the last end of day: no roll at the start
    _write_journal(data, [limit("account:ACC1", "max_order_qty", "5", ts=t, expires_ts=t + S)])

    def max_qty(server):
        return server.risk.value("max_order_qty", "ACC1")

    seen = _start(data, max_qty)
    assert seen["at_listen"] != 5 and seen["after"] == seen["at_listen"]
    expired = [r for r in iter_records(journal_dir(data)) if r["type"] == ev.LIMIT_EXPIRED]
    assert len(expired) == 1 and expired[0]["expires_ts"] == t + S and expired[0]["ts"] >= now


def test_a_clock_stepped_back_across_the_end_of_day_does_not_roll_the_day_again_at_a_restart(tmp_path):
    """The end of day rolled (a clock command stamped just after it); the wall clock then
    stepped back a second (NTP) and the next day's first orders were stamped before the end
    of day's time. A restart the same evening took their time for "traded before the end of
    day, never rolled" and rolled again: the new day's DAY order expired, its fills stopped
    counting against credit. The roll journaled after the end of day says the day rolled."""
    data = tmp_path / "data"
    cfg = load_config(None)
    now = time.time_ns()
    last_eod = previous_utc_time_ns(cfg.end_of_day, now)
    if now - last_eod < 10 * S:        # too close to the end of day for the scenario below
        time.sleep((10 * S - (now - last_eod)) / 1e9)
        now = time.time_ns()
    _write_journal(data, [
        new("OLD", "1", 10, "180.00", session=C1, account="ACC1", ts=last_eod - 60 * S, tif="0"),
        {"type": ev.CLOCK, "ts": last_eod + S // 2, "end_of_day": 1},     # the roll, as the clock loop does
        # the clock stepped back 1.5 s: the new day's orders carry a time before the end of day
        new("S1", "2", 10, "190.00", session=C2, account="ACC2", ts=last_eod - S, tif="0"),
        new("B1", "1", 10, "190.00", session=C1, account="ACC1", ts=last_eod - S + 1, tif="0"),
        new("NEW", "1", 10, "180.00", session=C1, account="ACC1", ts=last_eod - S + 2, tif="0"),
    ])
    seen = _start(data, lambda server: (_open(server), next(
        e["filled_notional_today"] for e in server.engine.exposures("ACC1"))))
    assert seen["after"][0] == ["NEW"]
    assert seen["after"][1] not in ("0", "0.00")
    rolls = [r for r in iter_records(journal_dir(data)) if r["type"] == ev.CLOCK and r.get("end_of_day")]
    assert len(rolls) == 1


def test_a_reset_stores_the_old_fix_log_under_its_utc_time_not_the_hosts_local_time(tmp_path, monkeypatch):
    """The daily reset keeps the old day's outbound log beside the new one, named by the time of
    the reset. The name was local time (time.strftime) while the reset time, the journal and
    every report are UTC: on a host not set to UTC the log of the FIX day that ended at 21:05
    UTC carried another hour (and date) in its name."""
    import datetime

    from oms_trading.fix.store import MessageStore

    monkeypatch.setenv("TZ", "Asia/Kolkata")      # UTC+05:30, no DST
    time.tzset()
    try:
        store = MessageStore(tmp_path)
        store.save_sent([(1, b"8=FIX.4.4\x019=5\x0135=0\x0110=000\x01", 0)])
        store.reset()
        store.close()
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    [old] = list(tmp_path.glob("outbound-*.log"))
    stamp, ns = old.name[len("outbound-"):-len(".log")].split("-")
    named = datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%S").replace(tzinfo=datetime.timezone.utc)
    assert named.timestamp() == int(ns) // S


def test_a_logon_that_straddles_the_daily_reset_instant_still_ends_its_fix_day_at_it(tmp_path, monkeypatch):
    """A Logon processed across the daily reset time: the store was found not due (the clock
    read just before the reset), then the session's day end was computed from a second reading
    just after it, i.e. tomorrow's. The session kept the old numbering through the reset, for a
    whole day. One reading of the clock now decides both."""
    from datetime import datetime, timezone

    from oms_trading.fix import session as session_mod
    from tests.test_fix_fastpath import Stack, frame, now_ts

    real = time.time_ns()
    reset_ns = (real // S + 2) * S                   # a whole second just ahead of the real clock
    reset_at = datetime.fromtimestamp(reset_ns // S, timezone.utc).strftime("%H:%M:%S")
    s = Stack(tmp_path, False)
    try:
        monkeypatch.setattr(s.acceptor.config, "daily_reset", reset_at)
        passed = {"reset": False}                    # the clock reads past the reset from here on
        real_due = s.acceptor.daily_reset_due

        def due(store, now_ns=None):
            answer = real_due(store, now_ns)
            passed["reset"] = True
            return answer

        class Clock:                                 # the module's `time`, its wall clock moved
            def __getattr__(self, name):
                return getattr(time, name)

            @staticmethod
            def time_ns() -> int:
                return reset_ns + (10**6 if passed["reset"] else -10**6)

        monkeypatch.setattr(s.acceptor, "daily_reset_due", due)
        monkeypatch.setattr(session_mod, "time", Clock())
        s.feed(frame(b"FIX.4.2", [(b"35", b"A"), (b"49", b"CLIENT2"), (b"56", b"OMS"), (b"34", b"1"),
                                  (b"52", now_ts()), (b"98", b"0"), (b"108", b"0")]))
        assert s.session.logged_on and not s.transport.closed
        s.session.tick(time.monotonic())             # a timer turn after the reset time
        assert s.transport.closed                    # logged out: the FIX day ended
        store = s.acceptor.store_for(s.acceptor.find_config(b"CLIENT2", b"OMS"))
        assert (store.next_sender_seq, store.next_target_seq) == (1, 1)
        assert b"35=5\x01" in bytes(s.transport.out)
    finally:
        s.close()
