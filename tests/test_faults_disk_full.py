"""A full disk under the FIX message stores (alone, or with the journal and DuckDB beside
them): nothing leaves unstored, nothing journaled is lost to the client, the store stays a
log a restart can read, and a new session's Logon is refused cleanly."""
from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest

from oms_trading.fix import store as store_mod
from oms_trading.fix.store import MessageStore
from tests.fixclient import FixClient, field
from tests.server_process import ServerProcess, audit_verify_ok
from tests.test_faults import tiny_disk  # noqa: F401  (the fixture)


def _msg(seq: int) -> bytes:
    body = b"35=8\x0134=%d\x01" % seq
    return b"8=FIX.4.4\x019=%d\x01%b10=000\x01" % (len(body), body)


def _disk_full_after(monkeypatch, nbytes: int) -> None:
    """The next os.write of the store writes ``nbytes`` then the disk is full (ENOSPC)."""
    real = os.write
    state = {"left": nbytes}

    def write(fd, data):
        if state["left"] is None:
            return real(fd, data)
        if state["left"] <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = real(fd, bytes(data[:state["left"]]))
        state["left"] -= n
        return n
    monkeypatch.setattr(store_mod.os, "write", write)
    return state


def test_a_write_refused_by_a_full_disk_leaves_the_log_whole_and_keeps_the_messages(tmp_path, monkeypatch):
    store = MessageStore(tmp_path)
    store.save_sent([(1, _msg(1), 5)])
    size = (tmp_path / "outbound.log").stat().st_size
    state = _disk_full_after(monkeypatch, 10)                 # half a frame, then ENOSPC
    with pytest.raises(OSError):
        store.save_sent([(2, _msg(2), 6)])
    assert (tmp_path / "outbound.log").stat().st_size == size  # no torn frame left behind
    assert list(store.get_sent(1, 10)) == [(1, _msg(1))]
    assert store.next_sender_seq == 3                          # seq 2 is taken: kept, not reused
    store.mark_events(9)                                       # not past a report still unsaved
    state["left"] = None                                       # space returns
    store.save_sent([(3, _msg(3), 7)])                         # the kept message goes first
    assert list(store.get_sent(1, 10)) == [(1, _msg(1)), (2, _msg(2)), (3, _msg(3))]
    store.close()
    again = MessageStore(tmp_path)
    assert list(again.get_sent(1, 10)) == [(1, _msg(1)), (2, _msg(2)), (3, _msg(3))]
    assert again.next_sender_seq == 4 and again.event_seq == 7


def test_a_crash_while_messages_wait_unsaved_rebuilds_them_from_the_journal(tmp_path, monkeypatch):
    store = MessageStore(tmp_path)
    store.save_sent([(1, _msg(1), 5)])
    _disk_full_after(monkeypatch, 0)
    with pytest.raises(OSError):
        store.save_sent([(2, _msg(2), 6)])
    store.mark_events(6)       # a clean stop's mark must not claim the unsaved report was stored
    store.close()
    again = MessageStore(tmp_path)    # (the restart rebuilds journal events past this mark)
    assert again.event_seq == 5 and again.next_sender_seq == 2


def _fill(disk: Path, leave: int = 8 * 1024) -> Path:
    filler = disk / "filler"
    st = os.statvfs(disk)
    with filler.open("wb") as handle:
        handle.write(b"\0" * max(0, st.f_bavail * st.f_frsize - leave))
    return filler


def _until_silent(client: FixClient, prefix: str, limit: int = 400) -> tuple[int, str]:
    """Send orders until one gets no answer (the store is full); (answered, the unanswered ClOrdID)."""
    for i in range(limit):                                   # bounded: the disk fills long before
        client.new_order(f"{prefix}{i}", "AAPL", "1", 10, "189.00")
        report = client.recv(3)
        if report is None:
            return i, f"{prefix}{i}"
        assert field(report, 35) == "8" and field(report, 39) == "0", report
    raise AssertionError("the store never filled")


def _relogon_and_recover(server: ServerProcess, old: FixClient, expected_in: int) -> list:
    """Log on again with the next seq; ask for the gap the Logon shows; return what the resend brings."""
    client = FixClient("127.0.0.1", server.fix_port, "CLIENT1", timeout=10)
    client.seq = old.seq
    logon = client.logon(password="demo1")
    assert field(logon, 141) is None                         # no sequence reset
    got = int(field(logon, 34))
    assert got >= expected_in, f"Logon {got} below the next seq the client expects ({expected_in})"
    resent = []
    if got > expected_in:
        client.send("2", [(7, expected_in), (16, 0)])
        for _ in range(got - expected_in + 1):               # bounded: the gap and the Logon's own seq
            msg = client.recv(5)
            assert msg is not None, "the resend stopped short"
            resent.append(msg)
            if field(msg, 35) == "4":
                assert field(msg, 123) == "Y"                # a gap fill, never a reset
            if int(field(msg, 34)) >= got:
                break
    return client, resent


def test_a_full_store_disk_drops_the_session_and_its_next_logon_resends_the_report(tmp_path, tiny_disk):
    """The journal is fine, the FIX store's disk is full: the order is journaled, its report
    cannot be stored, so it may not leave. Before the fix the store forgot it (the next Logon
    reused its seq), so the client never heard of a working order."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "fix").symlink_to(tiny_disk)                     # only the FIX stores live on the tiny disk
    server = ServerProcess(data).start()
    client = FixClient("127.0.0.1", server.fix_port, "CLIENT1", timeout=10)
    again = None
    try:
        client.logon(password="demo1")
        filler = _fill(tiny_disk)
        answered, silent = _until_silent(client, "S")
        assert answered > 0
        client.wait_closed(10)                               # dropped, not left hanging
        last_seen = max(int(field(m, 34)) for m in client.received)
        filler.unlink()                                      # space returns
        again, resent = _relogon_and_recover(server, client, last_seen + 1)
        reports = [m for m in resent if field(m, 35) == "8"]
        assert [field(m, 11) for m in reports] == [silent], resent
        assert field(reports[0], 43) == "Y" and field(reports[0], 39) == "0"
        again.new_order("AFTER", "AAPL", "1", 10, "189.00")  # trading goes on
        assert field(again.expect("8"), 39) == "0"
    finally:
        client.close()
        if again is not None:
            again.close()
        assert server.stop() == 0
    restarted = ServerProcess(data).start()                  # and a restart reads the store
    try:
        c3 = FixClient("127.0.0.1", restarted.fix_port, "CLIENT1", timeout=10)
        c3.seq = again.seq
        logon = c3.logon(password="demo1")
        assert int(field(logon, 34)) == max(int(field(m, 34)) for m in again.received) + 1
        c3.close()
    finally:
        assert restarted.stop() == 0


def test_a_first_logon_while_the_disk_is_full_leaves_no_half_made_store(tmp_path, tiny_disk):
    """A drop-copy session's first Logon fails while the disk is full. Before the fix the
    failed attempt left a store folder without its watermark: after its later first logon and
    a crash, the restart rebuilt every report journaled before that session ever logged on."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "fix").symlink_to(tiny_disk)
    server = ServerProcess(data).start()
    trader = FixClient("127.0.0.1", server.fix_port, "CLIENT1", timeout=10)
    try:
        trader.logon(password="demo1")
        for i in range(5):                                   # reports from before the drop copy's time
            trader.new_order(f"B{i}", "AAPL", "1", 10, "189.00")
            assert field(trader.expect("8"), 39) == "0"
        filler = _fill(tiny_disk, leave=0)
        copy = FixClient("127.0.0.1", server.fix_port, "DROPCOPY", timeout=10)
        copy.send("A", [(98, 0), (108, 0)])
        copy.wait_closed(10)                                 # refused: no store to number a Logon in
        assert not any(field(m, 35) == "A" for m in copy.received)
        copy.close()
        filler.unlink()
        copy = FixClient("127.0.0.1", server.fix_port, "DROPCOPY", timeout=10)
        assert field(copy.logon(heartbeat=0), 34) == "1"
        copy.close()
        time.sleep(0.3)
    finally:
        trader.close()
    server.kill()                                            # kill -9
    restarted = ServerProcess(data).start()
    try:
        copy = FixClient("127.0.0.1", restarted.fix_port, "DROPCOPY", timeout=10)
        copy.seq = 2
        logon = copy.logon(heartbeat=0)
        assert field(logon, 34) == "2", "reports from before its first logon were stored for it"
        copy.close()
    finally:
        assert restarted.stop() == 0
    log = "".join(restarted.stderr_lines) + "".join(server.stderr_lines)
    assert "Traceback" not in log, log[-3000:]


def test_a_reset_refused_by_a_full_disk_leaves_the_store_as_it_was(tmp_path, monkeypatch):
    """Before the fix the reset moved the log away, then failed writing the new one's tag: the
    store went on with the old numbering in memory over an untagged file and a reset marker
    that the next open obeyed (a reset the counterparty never agreed to)."""
    store = MessageStore(tmp_path)
    store.save_sent([(seq, _msg(seq), 0) for seq in (1, 2, 3)])
    store.next_target_seq = 7
    store.save_target_seq()
    store.mark_events(0)                       # its watermark is on disk (as from its first logon)
    real = Path.write_bytes

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(store_mod.os, "write", lambda fd, data: full(None, data))
    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(OSError):
        store.reset()
    monkeypatch.setattr(Path, "write_bytes", real)
    monkeypatch.undo()
    assert not (tmp_path / "reset.pending").exists()
    assert list(store.get_sent(1, 10)) == [(1, _msg(1)), (2, _msg(2)), (3, _msg(3))]
    store.save_sent([(4, _msg(4), 0)])
    store.close()
    again = MessageStore(tmp_path)
    assert again.next_sender_seq == 5 and again.next_target_seq == 7


def test_an_order_refused_by_a_full_journal_is_not_live_after_the_rebuild(tmp_path, tiny_disk):
    """The journal disk fills mid-batch: a write that got part of the batch to the OS kept
    the whole records of it (the order's command without its acceptance), the gateway refused
    the order ("audit journal unavailable") and the engine's rebuild replayed the command:
    before the fix about half of such refused orders were resting in the book, able to trade."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "journal").symlink_to(tiny_disk)
    server = ServerProcess(data).start()
    client = FixClient("127.0.0.1", server.fix_port, "CLIENT1", timeout=10)
    refused = []
    try:
        client.logon(password="demo1")
        for rnd in range(12):                    # a different slack each round: the cut falls anywhere
            filler = _fill(tiny_disk, leave=(8 + 3 * rnd) * 1024 - 101 * rnd)
            for i in range(400):                 # bounded: the disk fills long before
                client.new_order(f"R{rnd}-{i}", "AAPL", "1", 10, "189.00")
                report = client.expect("8")
                if field(report, 39) == "8":
                    assert "audit journal unavailable" in field(report, 58)
                    refused.append(f"R{rnd}-{i}")
                    break
            filler.unlink()
            time.sleep(0.7)                      # past the gateway's retry pause
        assert len(refused) == 12
        live = []
        for cl in refused:
            client.send("H", [(11, cl), (55, "AAPL"), (54, "1")])
            status = client.expect("8")
            if field(status, 39) != "8":
                live.append((cl, field(status, 39)))
        assert live == [], f"orders refused to the client yet live in the engine: {live}"
    finally:
        client.close()
        assert server.stop() == 0
    audit_verify_ok(data)
