"""The FIX message store on its own: sequence numbers survive reopening, one write per batch."""
from __future__ import annotations

import struct

from oms_trading.fix.store import MessageStore

HB = b"8=FIX.4.4\x019=5\x0135=0\x0110=000\x01"


def test_sent_messages_and_both_sequences_survive_reopening(tmp_path):
    store = MessageStore(tmp_path)
    store.next_target_seq = 7
    store.save_sent([(1, HB, 0), (2, HB + b"x", 11)])
    store.close()
    again = MessageStore(tmp_path)
    assert again.next_sender_seq == 3
    assert again.next_target_seq == 7          # carried by the frames: no inbound.seq write
    assert again.event_seq == 11
    assert list(again.get_sent(1, 2)) == [(1, HB), (2, HB + b"x")]


def test_a_batch_with_messages_does_not_rewrite_the_inbound_seq_file(tmp_path):
    store = MessageStore(tmp_path)
    store.next_target_seq = 5
    store.save_sent([(1, HB, 0)])
    store.save_target_seq()                    # nothing left to write
    assert not (tmp_path / "inbound.seq").read_bytes()
    store.next_target_seq = 9                  # a batch that sent nothing: the file holds it
    store.save_target_seq()
    assert struct.unpack("<Q", (tmp_path / "inbound.seq").read_bytes())[0] == 9
    store.close()
    assert MessageStore(tmp_path).next_target_seq == 9


def test_a_torn_last_frame_is_cut_off(tmp_path):
    store = MessageStore(tmp_path)
    store.next_target_seq = 4
    store.save_sent([(1, HB, 0), (2, HB, 0)])
    store.close()
    log = tmp_path / "outbound.log"
    log.write_bytes(log.read_bytes()[:-5])
    again = MessageStore(tmp_path)
    assert again.next_sender_seq == 2 and again.next_target_seq == 4
    assert list(again.get_sent(1, 5)) == [(1, HB)]


def test_a_log_of_the_first_format_is_converted(tmp_path):
    old = b"".join(struct.pack("<QIQ", seq, len(HB), seq * 10) + HB for seq in (1, 2, 3))
    (tmp_path / "outbound.log").write_bytes(old)
    (tmp_path / "inbound.seq").write_bytes(struct.pack("<Q", 12))
    store = MessageStore(tmp_path)
    assert store.next_sender_seq == 4 and store.next_target_seq == 12 and store.event_seq == 30
    assert [seq for seq, _ in store.get_sent(1, 3)] == [1, 2, 3]
    store.next_target_seq = 13
    store.save_sent([(4, HB, 0)])
    store.close()
    again = MessageStore(tmp_path)
    assert again.next_sender_seq == 5 and again.next_target_seq == 13
    assert [seq for seq, _ in again.get_sent(1, 4)] == [1, 2, 3, 4]


def test_reset_starts_both_sides_at_one_and_keeps_the_old_log(tmp_path):
    store = MessageStore(tmp_path)
    store.next_target_seq = 40
    store.save_sent([(seq, HB, 0) for seq in range(1, 31)])
    store.reset()
    store.next_target_seq = 2
    store.save_sent([(1, HB, 0)])
    store.close()
    again = MessageStore(tmp_path)
    assert again.next_sender_seq == 2 and again.next_target_seq == 2
    assert len(list(tmp_path.glob("outbound-*.log"))) == 1


def _msg(seq: int) -> bytes:
    body = b"35=8\x0134=%d\x01" % seq
    return b"8=FIX.4.4\x019=%d\x01%b10=000\x01" % (len(body), body)


def test_a_later_frame_for_a_seq_replaces_it_and_what_follows(tmp_path):
    store = MessageStore(tmp_path)
    store.save_sent([(seq, _msg(seq), 0) for seq in (1, 2, 3, 5, 6)])
    assert [s for s, _ in store.get_sent(2, 5)] == [2, 3, 5]
    assert list(store.get_sent(4, 4)) == []
    assert list(store.get_sent(6, 10**12)) == [(6, _msg(6))]
    assert list(store.get_sent(5, 4)) == []
    store.save_sent([(5, b"again", 0)])      # not expected: a later frame for a seq already there
    expected = [(1, _msg(1)), (2, _msg(2)), (3, _msg(3)), (5, b"again")]
    assert list(store.get_sent(1, 10)) == expected
    assert list(store.get_sent(5, 6)) == [(5, b"again")]
    store.close()
    again = MessageStore(tmp_path)             # the same read from the log on open
    assert list(again.get_sent(1, 10)) == expected
    assert again.next_sender_seq == 6


def test_the_index_holds_checkpoints_not_an_entry_per_message(tmp_path):
    """Resends of any range come from the log; memory is a checkpoint per block of seqs."""
    from oms_trading.fix.store import CHECKPOINT_EVERY
    store = MessageStore(tmp_path)
    n = CHECKPOINT_EVERY * 12 + 37
    for first in range(1, n + 1, 100):         # batches, as the session writes them
        store.save_sent([(seq, _msg(seq), seq * 3) for seq in range(first, min(first + 100, n + 1))])
    assert store._index.nbytes <= 16 * (n // CHECKPOINT_EVERY + 1)
    for begin, end in ((1, 1), (1, n), (CHECKPOINT_EVERY - 1, CHECKPOINT_EVERY + 1), (n - 3, n + 50),
                       (2 * CHECKPOINT_EVERY, 2 * CHECKPOINT_EVERY), (777, 1555)):
        assert list(store.get_sent(begin, end)) == [(s, _msg(s)) for s in range(begin, min(end, n) + 1)]
    store.close()
    again = MessageStore(tmp_path)             # restart: the same index from a scan of the log
    assert again.next_sender_seq == n + 1 and again.event_seq == n * 3
    assert again._index.nbytes == store._index.nbytes
    assert list(again.get_sent(300, 900)) == [(s, _msg(s)) for s in range(300, 901)]
    again.save_sent([(n + 1, _msg(n + 1), 0)])
    assert list(again.get_sent(n, n + 1)) == [(n, _msg(n)), (n + 1, _msg(n + 1))]


def test_a_log_larger_than_the_read_piece_is_scanned_whole(tmp_path, monkeypatch):
    from oms_trading.fix import store as store_mod
    monkeypatch.setattr(store_mod, "_READ_CHUNK", 64)     # frames straddle every piece
    store = MessageStore(tmp_path)
    store.next_target_seq = 9
    store.save_sent([(seq, _msg(seq) * (seq % 5 + 1), 0) for seq in range(1, 301)])
    store.close()
    log = tmp_path / "outbound.log"
    log.write_bytes(log.read_bytes()[:-7])     # and a torn last frame
    again = MessageStore(tmp_path)
    assert again.next_sender_seq == 300 and again.next_target_seq == 9
    assert list(again.get_sent(1, 400)) == [(s, _msg(s) * (s % 5 + 1)) for s in range(1, 300)]


def test_a_store_with_a_gap_serves_what_it_has(tmp_path):
    store = MessageStore(tmp_path)
    store.save_sent([(seq, _msg(seq), 0) for seq in range(1, 11)])
    store.save_sent([(seq, _msg(seq), 0) for seq in range(600, 611)])   # a gap (not expected)
    assert [s for s, _ in store.get_sent(5, 605)] == [*range(5, 11), *range(600, 606)]
    assert [s for s, _ in store.get_sent(300, 599)] == []
    assert [s for s, _ in store.get_sent(512, 700)] == list(range(600, 611))


class _Killed(Exception):
    """Stands for a kill -9 at that point: the store's files are left as they are."""


def _stored_with_history(tmp_path) -> None:
    store = MessageStore(tmp_path)
    store.next_target_seq = 40
    store.save_sent([(seq, HB, 0) for seq in range(1, 31)])
    store.next_target_seq = 57                 # a batch that sent nothing: inbound.seq holds it
    store.save_target_seq()
    store.close()


def _reset_killed_then_reopened(store: MessageStore, tmp_path, monkeypatch) -> MessageStore:
    """``store.reset()`` stopped by the kill the test patched in, then the store opened again."""
    try:
        store.reset()
    except _Killed:
        pass
    monkeypatch.undo()
    return MessageStore(tmp_path)


def test_a_reset_cut_short_after_the_log_moved_is_finished_on_open(tmp_path, monkeypatch):
    _stored_with_history(tmp_path)
    store = MessageStore(tmp_path)

    def killed() -> None:
        raise _Killed
    monkeypatch.setattr(store, "save_target_seq", killed)   # after the rename, before inbound.seq = 1
    again = _reset_killed_then_reopened(store, tmp_path, monkeypatch)
    # not an empty log with the old inbound seq: the counterparty, reset too, sends 1 next
    assert again.next_sender_seq == 1 and again.next_target_seq == 1
    assert len(list(tmp_path.glob("outbound-*.log"))) == 1
    again.close()
    assert MessageStore(tmp_path).next_target_seq == 1


def test_a_reset_cut_short_before_the_log_moved_is_finished_on_open(tmp_path, monkeypatch):
    from pathlib import Path
    _stored_with_history(tmp_path)
    store = MessageStore(tmp_path)

    def killed(self, target):
        raise _Killed
    monkeypatch.setattr(Path, "rename", killed)
    again = _reset_killed_then_reopened(store, tmp_path, monkeypatch)
    # the reset was decided (ResetSeqNumFlag, daily reset): it is carried out, both sides at 1
    assert again.next_sender_seq == 1 and again.next_target_seq == 1
    assert len(list(tmp_path.glob("outbound-*.log"))) == 1
    assert not (tmp_path / "reset.pending").exists()


def test_cutting_a_torn_tail_is_not_activity_a_daily_reset_still_sees(tmp_path):
    """Reviewed: the repair of a torn last frame (a crash mid-write) set the log's mtime to the
    restart, so a daily reset due since was skipped and the client's new-day Logon (34=1) was
    refused as too low. The cut keeps the file's times."""
    import os
    import time as _time
    store = MessageStore(tmp_path)
    store.save_sent([(1, b"8=FIX.4.4\x019=5\x0135=0\x0110=000\x01", 0)])
    store.close()
    out = tmp_path / "outbound.log"
    with open(out, "ab") as f:
        f.write(b"\x02\x00\x00\x00\x00\x00\x00\x00\x10\x00")      # a frame header cut short
    two_days_ago = _time.time() - 2 * 86400
    for f in tmp_path.iterdir():
        os.utime(f, (two_days_ago, two_days_ago))
    before = out.stat().st_size
    store = MessageStore(tmp_path)
    assert out.stat().st_size == before - 10                         # the torn frame was cut
    assert abs(store.last_activity_ns() / 1e9 - two_days_ago) < 1
    store.close()
