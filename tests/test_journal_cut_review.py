"""Review of the cut of a failed multi-segment flush (Journal._cut_batch): what the journal holds,
in memory and on disk, when a cut is only partly done, and whether the cut itself is durable."""
from __future__ import annotations

import errno
import os

import pytest

from oms_trading.audit import journal as jmod
from oms_trading.audit.journal import Journal, JournalWriteError, iter_records, list_segments
from oms_trading.audit.verify import verify_journal

from .test_audit_journal import check_chain, ev


def _fail_write(monkeypatch, nth: int):
    """os.write fails (ENOSPC) at its ``nth`` call (1-based) from now on."""
    real = os.write
    calls = {"n": 0}

    def write(fd, data):
        calls["n"] += 1
        if calls["n"] == nth:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)
    monkeypatch.setattr(jmod.os, "write", write)
    return calls


@pytest.mark.parametrize("native", [False, True])
@pytest.mark.parametrize("at_switch", [False, True])
def test_a_cut_whose_second_delete_fails_leaves_the_journal_writing_where_it_reads(tmp_path, monkeypatch,
                                                                                  native, at_switch):
    """A batch spans four segments (the one it began in, B, C, D) and fails at D (its write, or
    the switch to it after C). The cut deletes the segments it started newest first; the delete
    of D (or C) works and the next one fails. Before the fix ``_cut_batch`` then said 'nothing
    changed' (False): the journal kept the records up to the end of the chunk before the failed
    one, which a delete had just removed, and went on writing into the fd of the deleted
    segment: records acknowledged after that were in no file, and a reopen came back at a lower
    seq than the one the journal had reported."""
    j = Journal(tmp_path, fsync="os", rotate_bytes=1200, native=native)
    for i in range(1, 3):
        j.append(ev(i))
    j.flush()
    for i in range(3, 30):        # ~8 records per 1,200-byte segment: the batch spans 4 segments
        j.append(ev(i))
    nsegs = 3 if at_switch else 4   # writes before the failure: chunk 0, B, C (and D's when it fails)
    real_open, real_unlink = os.open, os.unlink
    if at_switch:                 # the switch to D fails (its open), after the writes to A, B, C
        opened = {"n": 0}

        def op(path, flags, *a):
            if str(path).endswith(".log") and flags & os.O_CREAT:
                opened["n"] += 1
                if opened["n"] == 3:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_open(path, flags, *a)
        monkeypatch.setattr(jmod.os, "open", op)
    else:
        _fail_write(monkeypatch, nsegs)
    unlinks = {"n": 0}

    def unlink(path, *a, **kw):   # the second delete of the cut fails
        unlinks["n"] += 1
        if unlinks["n"] == 2:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_unlink(path, *a, **kw)
    monkeypatch.setattr(jmod.os, "unlink", unlink)
    with pytest.raises(JournalWriteError) as ei:
        j.flush()
    monkeypatch.undo()
    assert unlinks["n"] == 2, "the batch did not start 2+ segments"
    on_disk = [r["seq"] for r in iter_records(tmp_path)]
    # what the journal says it kept is what its files hold
    assert ei.value.last_seq == j.last_seq == j.written_seq == on_disk[-1]
    for i in range(50, 55):
        j.append(ev(i))
    j.flush()
    j.close()
    got = list(iter_records(tmp_path))
    check_chain(got)
    assert [r["order_id"] for r in got][-5:] == list(range(50, 55))
    assert verify_journal(tmp_path).ok
    with Journal(tmp_path, native=native) as j2:
        assert j2.last_seq == len(got)


@pytest.mark.parametrize("policy", ["batch", "interval"])
def test_the_cut_of_the_first_segment_is_fsynced(tmp_path, monkeypatch, policy):
    """Under fsync 'batch' and 'interval' the switch to a new segment fsyncs the one before, so
    the failed batch's first chunk is durable in it; the deletes of the segments the batch
    started are made durable (directory fsync) but the truncation of the first segment was not
    fsynced: a power cut after the cut could bring the refused batch's first records back (in a
    journal that otherwise looks whole), and with them the refused orders at the next start."""
    j = Journal(tmp_path, fsync=policy, rotate_bytes=1200, native=False)
    for i in range(1, 3):
        j.append(ev(i))
    j.flush()
    for i in range(3, 20):
        j.append(ev(i))
    log: list = []
    real_trunc, real_fsync = os.ftruncate, os.fsync

    def ftruncate(fd, size):
        log.append(("truncate", fd, size))
        return real_trunc(fd, size)

    def fsync(fd):
        log.append(("fsync", fd))
        return real_fsync(fd)
    _fail_write(monkeypatch, 2)
    monkeypatch.setattr(jmod.os, "ftruncate", ftruncate)
    monkeypatch.setattr(jmod.os, "fsync", fsync)
    with pytest.raises(JournalWriteError):
        j.flush()
    monkeypatch.undo()
    cut = [k for k, e in enumerate(log) if e[0] == "truncate"]
    assert cut, "no truncation"
    k = cut[-1]
    fd = log[k][1]
    assert ("fsync", fd) in log[k + 1:], f"the truncation of the first segment was not fsynced: {log}"
    j.close()
