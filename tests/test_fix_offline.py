"""Reports for a session that is not logged on: a drop-copy session that never logged on has no
store, so nothing is queued or stored for it; once it has logged on and gone away, its copies go
to its store, to be resent at its next logon (in process, the demo config's DROPCOPY session)."""
from __future__ import annotations

import time

from oms_trading.audit.journal import Journal
from oms_trading.book import NumbaBook
from oms_trading.compliance.risk import RiskEngine
from oms_trading.config import load_config
from oms_trading.engine.engine import Engine
from oms_trading.fix.gateway import Gateway
from oms_trading.fix.session import FixAcceptor, FixSession
from oms_trading.fix.timefmt import fix_timestamp
from benchmarks.inproc_path import message
from tests.memtransport import MemoryTransport as Transport


def msg(sender: str, msg_type: str, seq: int, fields: list) -> bytes:
    return message(msg_type, seq, fields, sender)


def order(cl: str, seq: int) -> bytes:
    return msg("BENCH", "D", seq, [(11, cl), (55, "AAPL"), (54, "1"), (60, fix_timestamp(time.time_ns()).decode()),
                                   (38, 100), (40, "2"), (44, "185.00"), (59, "0")])


def test_drop_copy_reports_are_stored_only_for_a_session_that_has_a_store(tmp_path):
    cfg = load_config()
    journal = Journal(tmp_path / "journal", fsync="os")
    engine = Engine(cfg, journal, lambda: NumbaBook(capacity=1 << 10), risk=RiskEngine(cfg))
    gateway = Gateway(engine)
    acceptor = FixAcceptor(cfg, gateway, tmp_path)
    trader = FixSession(acceptor)
    trader.connection_made(Transport())
    trader.data_received(msg("BENCH", "A", 1, [(98, 0), (108, 30), (141, "Y")]))
    assert trader.logged_on
    dc_key = next(s.key for s in cfg.sessions if s.drop_copy)
    trader.data_received(order("O1", 2))
    trader.data_received(order("O2", 3))
    assert dc_key in gateway.no_offline                      # never logged on: nothing kept for it
    assert not (tmp_path / "fix" / "DROPCOPY-OMS").exists()

    copy = FixSession(acceptor)
    copy.connection_made(Transport())
    copy.data_received(msg("DROPCOPY", "A", 1, [(98, 0), (108, 30), (141, "N")]))
    assert copy.logged_on and dc_key not in gateway.no_offline
    copy.connection_lost(None)                               # gone: copies go to its store now
    before = acceptor.store_for(next(s for s in cfg.sessions if s.drop_copy)).next_sender_seq
    trader.data_received(order("O3", 4))
    store = acceptor.store_for(next(s for s in cfg.sessions if s.drop_copy))
    assert store.next_sender_seq == before + 1
    (seq, raw), = list(store.get_sent(before, before))
    assert b"\x0111=O3\x01" in raw and b"\x0135=8\x01" in raw
    journal.close()
