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


def test_sent_index_finds_ranges_and_a_later_frame_wins():
    from oms_trading.fix.store import SentIndex
    index = SentIndex()
    assert not index and list(index.between(1, 10)) == []
    for seq in (1, 2, 3, 5, 6):
        index.add(seq, seq * 100, seq)
    assert len(index) == 5
    assert [s for s, _, _ in index.between(2, 5)] == [2, 3, 5]
    assert [s for s, _, _ in index.between(4, 4)] == []
    assert list(index.between(6, 10**12)) == [(6, 600, 6)]
    index.add(5, 999, 9)                       # a frame for a seq already there replaces it and what follows
    assert list(index.between(1, 10)) == [(1, 100, 1), (2, 200, 2), (3, 300, 3), (5, 999, 9)]
    index.clear()
    assert not index
