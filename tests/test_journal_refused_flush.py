"""A record the native journal refuses at flush, through the FIX gateway: the batch's command is
refused with a clear reject (nothing journaled, nothing acknowledged), the engine is rebuilt from
the journal, and the next order goes through onto an intact, verifiable journal."""
from __future__ import annotations

import itertools
import re
import time
from datetime import datetime, timezone

from oms_trading.audit.journal import Journal, iter_records
from oms_trading.audit.verify import verify_journal
from oms_trading.book import NumbaBook
from oms_trading.compliance.risk import RiskEngine
from oms_trading.config import load_config
from oms_trading.engine.engine import Engine
from oms_trading.fix.codec import checksum
from oms_trading.fix.gateway import Gateway
from oms_trading.fix.session import FixAcceptor, FixSession
from tests.memtransport import MemoryTransport as Transport

SOH = b"\x01"
CFG = load_config()


def now_ts() -> bytes:
    return datetime.fromtimestamp(time.time(), timezone.utc).strftime("%Y%m%d-%H:%M:%S.%f")[:-3].encode()


def frame(fields: list[tuple[bytes, bytes]]) -> bytes:
    body = b"".join(t + b"=" + v + SOH for t, v in fields)
    msg = b"8=FIX.4.4" + SOH + b"9=" + str(len(body)).encode() + SOH + body
    return msg + b"10=%03d" % checksum(msg) + SOH


def header(kind: bytes, seq: int) -> list:
    return [(b"35", kind), (b"49", b"BENCH"), (b"56", b"OMS"), (b"34", str(seq).encode()), (b"52", now_ts())]


def order(cl: bytes, seq: int) -> bytes:
    return frame(header(b"D", seq) + [(b"11", cl), (b"55", b"AAPL"), (b"54", b"1"), (b"60", now_ts()),
                                      (b"38", b"100"), (b"40", b"2"), (b"44", b"190.00"), (b"59", b"0")])


def reports(transport: Transport) -> list[dict]:
    msgs = re.findall(rb"8=FIX.*?\x0110=\d{3}\x01", bytes(transport.out), re.S)
    out = []
    for m in msgs:
        fields = dict(f.split(b"=", 1) for f in m.split(SOH) if b"=" in f)
        if fields.get(b"35") == b"8":
            out.append(fields)
    return out


def connected(tmp_path, journal: Journal) -> tuple[Engine, FixSession, Transport]:
    """An engine on ``journal`` and a FIX session of the demo config on a memory transport."""
    clock = itertools.count(1_800_000_000_000_000_000, 1000)
    engine = Engine(CFG, journal, lambda: NumbaBook(capacity=1 << 10), risk=RiskEngine(CFG))
    gateway = Gateway(engine, clock_ns=lambda: next(clock))
    acceptor = FixAcceptor(CFG, gateway, tmp_path)
    transport = Transport()
    session = FixSession(acceptor)
    session.connection_made(transport)
    return engine, session, transport


def test_refused_flush_rejects_the_batch_and_the_journal_goes_on(tmp_path):
    journal = Journal(tmp_path / "journal", fsync="os", native=True)
    assert journal.native
    engine, session, transport = connected(tmp_path, journal)
    real_append = journal.append

    def append(event):   # a bug upstream: a float slips into the accepted event of order BAD
        if event.get("cl_ord_id") == "BAD" and event["type"] == "order_accepted":
            event = {**event, "fill_ratio": 0.5}
        return real_append(event)

    journal.append = append
    session.data_received(frame(header(b"A", 1) + [(b"98", b"0"), (b"108", b"30"), (b"141", b"Y")]))
    session.data_received(order(b"GOOD1", 2))
    session.data_received(order(b"BAD", 3))
    session.data_received(order(b"GOOD2", 4))
    got = {r[b"11"]: r for r in reports(transport)}
    assert got[b"GOOD1"][b"39"] == b"0" and got[b"GOOD2"][b"39"] == b"0"
    bad = got[b"BAD"]
    assert bad[b"39"] == b"8" and b"could not be journaled (see the server log)" in bad[b"58"]
    assert b"fill_ratio" not in bad[b"58"] and b"journal" in bad[b"58"]   # details go to the log only
    journal.flush()
    recs = list(iter_records(journal.directory))
    assert [r["seq"] for r in recs] == list(range(1, len(recs) + 1))
    assert not any(r.get("cl_ord_id") == b"BAD".decode() for r in recs)
    assert sum(r.get("cl_ord_id") in ("GOOD1", "GOOD2") and r["type"] == "order_accepted" for r in recs) == 2
    assert session.gateway.journal_failed is None    # cleared by the next good flush
    journal.close()
    assert verify_journal(tmp_path / "journal").ok
    with Journal(tmp_path / "journal", fsync="os") as j:
        assert j.last_seq == len(recs)


def test_a_batch_failing_after_a_segment_rotation_leaves_none_of_its_orders_live(tmp_path, monkeypatch):
    """A read of several orders whose journal flush crosses into a new segment, and the new
    segment's write fails (disk full): every order of the read is refused, and after the engine's
    rebuild from the journal none of them rests -- the records the batch wrote into the earlier
    segment are cut too (before, they stayed, and the rebuild brought refused orders to life)."""
    import errno
    import os

    from oms_trading.audit import journal as jmod
    journal = Journal(tmp_path / "journal", fsync="os", rotate_bytes=4096, native=True)
    engine, session, transport = connected(tmp_path, journal)
    session.data_received(frame(header(b"A", 1) + [(b"98", b"0"), (b"108", b"30"), (b"141", b"Y")]))
    session.data_received(order(b"FIRST", 2))
    real = os.write
    calls = {"n": 0}

    def write(fd, data):          # the batch's second write (its second segment) fails
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)
    segments = len(jmod.list_segments(tmp_path / "journal"))
    monkeypatch.setattr(jmod.os, "write", write)
    session.data_received(b"".join(order(b"B%d" % k, 3 + k) for k in range(12)))   # > 4 KiB of records
    monkeypatch.setattr(jmod.os, "write", real)
    assert calls["n"] >= 2, "the batch did not cross into a new segment"
    got = {r[b"11"]: r for r in reports(transport)}
    refused = [b"B%d" % k for k in range(12)]
    assert all(got[cl][b"39"] == b"8" for cl in refused)
    assert {o.cl_ord_id for o in engine.open_orders()} == {"FIRST"}
    assert len(jmod.list_segments(tmp_path / "journal")) == segments
    assert not [r for r in iter_records(tmp_path / "journal") if r.get("cl_ord_id", "").startswith("B")]
    from oms_trading.fix import gateway as gateway_mod
    monkeypatch.setattr(gateway_mod, "JOURNAL_RETRY_S", 0.0)   # (no pause before the journal is tried again)
    session.data_received(order(b"AFTER", 15))          # space is back: the next order goes through
    assert {o.cl_ord_id for o in engine.open_orders()} == {"FIRST", "AFTER"}
    journal.close()
    assert verify_journal(tmp_path / "journal").ok
