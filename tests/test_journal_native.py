"""The journal's native hash chain (chain_native) writes exactly what the pure-Python path writes.

Random event streams (keys and values of the allowed types, unicode, None, ints up to the 64-bit
limits, the journal's own keys inside events, day boundaries, rotation by size) go through a
native and a Python journal side by side: the same records are returned (filled in at flush),
the same errors raised, the same ``last_hash`` reported, and the segment files are identical.

Values outside the contract: the Python path refuses them at ``append``; the native path at
``append`` when orjson cannot encode them, else at ``flush``, dropping the whole batch
(``JournalRecordError``). The Python path is then run on the stream without the refused batches
and must write the same bytes.
"""
from __future__ import annotations

import datetime
import decimal
import enum
import errno
import math
import os
import uuid

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oms_trading.audit import chain_native
from oms_trading.audit import journal as jmod
from oms_trading.audit.chain import GENESIS_HASH, record_hash
from oms_trading.audit.journal import (NS_PER_DAY, Journal, JournalRecordError, JournalWriteError, iter_records,
                                       list_segments)
from oms_trading.audit.verify import verify_journal

T0 = 1_700_000_000_000_000_000
MIDNIGHT = (T0 // NS_PER_DAY + 1) * NS_PER_DAY


def test_native_kernel_loads_here():
    """On this build (libcrypto present, numba) the native path must be in use, not the fallback."""
    assert chain_native.load() is not None, chain_native.error


def _files(d) -> dict:
    return {p.name: p.read_bytes() for _, p in list_segments(d)}


def _items(recs):
    return [list(r.items()) for r in recs]


class _Str(str):
    pass


class _Int(int):
    pass


ints = st.one_of(st.integers(-2**63, 2**64 - 1), st.integers(-1000, 1000))
values = st.one_of(st.none(), ints, st.text(max_size=40),
                   st.sampled_from(["", '"}', "\\", '","prev_hash":"', "\u20ac\U0001F600", "1.5", "-1e5", "true",
                                    "null", "[1]", '{"a":1}', '\\"', "\\\\", '":1.5,"x":[', "\x00\x1f"]))
keys = st.one_of(st.sampled_from(["type", "order_id", "text", "seq", "hash", "prev_hash", "ts", "x", '"', "\\", "t:s"]),
                 st.text(min_size=1, max_size=12))
ts_values = st.one_of(st.integers(MIDNIGHT - 3, MIDNIGHT + 3), st.integers(-3 * NS_PER_DAY, 3 * NS_PER_DAY),
                      st.integers(2**63, 2**64 - 1), st.none(), st.just("123"), st.just(1.5))
# refused by both paths (the native one at append or at flush)
bad_values = st.sampled_from([1.5, -2.5e300, 0.0, True, False, [1], (), {"a": 1}, {"a": [1.5]}, b"x", 2**64,
                              -2**63 - 1, datetime.datetime(2020, 1, 1), datetime.date(2020, 1, 1),
                              decimal.Decimal("1.5"), {1}, _Str("s"), _Int(3), object(), 1j])


@st.composite
def events(draw):
    e = {}
    if draw(st.booleans()):
        e["type"] = draw(st.sampled_from(["order_accepted", "clock", "x" * 300]))
    if draw(st.integers(0, 9)):
        e["ts"] = draw(ts_values)
    e.update(draw(st.dictionaries(keys, values, max_size=8)))
    if draw(st.integers(0, 24)) == 0:
        e[draw(keys)] = draw(bad_values)    # refused by both paths, nothing of it written
    return e


ops = st.lists(st.one_of(events(), st.just("flush"), st.just("hash")), min_size=1, max_size=40)


def _run(d, stream, native, **kw):
    """Feed ``stream`` to a journal: ``(what it did, the stream without the batches a flush
    refused)``. A refused flush (native path only) drops its batch: its appends, ``last_hash``
    reads and the flush itself leave no trace, and the journal is back at its last written
    record, which is checked here."""
    got, kept = [], []
    with Journal(d, fsync="os", native=native, **kw) as j:
        assert j.native == native
        recs = []
        batch_got, batch_ops, batch_recs = [], [], []

        def flush():
            before = j.written_seq
            try:
                j.flush()
            except JournalRecordError as e:
                assert native, "the Python path refuses at append"
                seqs = [r["seq"] for r in batch_recs]
                assert e.seq in seqs and e.last_seq == before == j.last_seq == j.written_seq
                assert any(type(v) not in (int, str, type(None)) for v in batch_recs[seqs.index(e.seq)].values())
                batch_got.clear(), batch_ops.clear(), batch_recs.clear()
                return False
            recs.extend(batch_recs)
            got.extend(batch_got)
            kept.extend(batch_ops)
            batch_got.clear(), batch_ops.clear(), batch_recs.clear()
            return True

        for op in stream:
            if op == "flush":
                if flush():
                    kept.append("flush")
                    got.append(("flushed", j.last_seq, j.last_hash, _items(recs)))
            elif op == "hash":
                batch_ops.append(op)
                batch_got.append(("head", j.last_seq, j.last_hash))   # between appends: computed
            else:
                batch_ops.append(op)
                try:
                    batch_recs.append(j.append(op))
                    batch_got.append(("seq", batch_recs[-1]["seq"]))
                except TypeError:
                    batch_got.append(("raised", j.last_seq))
        flush()
        got.append(("end", j.last_seq, j.last_hash, _items(recs)))
    return got, kept


@settings(max_examples=int(os.environ.get("OMS_FUZZ_EXAMPLES", "150")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(stream=ops, rotate=st.one_of(st.just(256 * 1024 * 1024), st.integers(200, 3000)),
       daily=st.booleans(), prior=st.integers(0, 3))
def test_native_and_python_write_the_same_bytes(tmp_path_factory, stream, rotate, daily, prior):
    base = tmp_path_factory.mktemp("j")
    a, b = base / "native", base / "python"
    for d in (a, b):   # an existing journal to continue (same records written by the Python path)
        with Journal(d, fsync="os", native=False) as j:
            for i in range(prior):
                j.append({"type": "seed", "ts": T0 + i, "i": i})
    kw = {"rotate_bytes": rotate, "rotate_daily": daily}
    ra, kept = _run(a, stream, True, **kw)
    rb, kept_b = _run(b, kept, False, **kw)
    assert kept_b == kept     # the Python path refuses no flush of what the native path kept
    assert ra == rb
    fa, fb = _files(a), _files(b)
    assert fa == fb
    # what was returned is what was written, and the chain verifies
    assert [list(r.items()) for r in iter_records(a)][prior:] == ra[-1][3]
    for d in (a, b):
        with Journal(d, fsync="os") as j:
            assert (j.last_seq, j.last_hash) == ra[-1][1:3]
    assert verify_journal(a).ok


@pytest.mark.parametrize("bad", [1.5, 2.0, -1e-300, True, [1, 2], ("a",), {"k": "v"}])
@pytest.mark.parametrize("rotate", [256 << 20, 600])
def test_refused_flush_writes_nothing_and_the_journal_goes_on(tmp_path, bad, rotate):
    """A value the native path refuses at flush, in the middle of a batch that would also cross
    a segment boundary: the batch is dropped whole, the error names seq, key and problem, the
    journal continues from its last written record (into the right segment), verifies, and
    reopens intact, with the same files as the Python path given the same kept records."""
    d, ref = tmp_path / "native", tmp_path / "python"
    with Journal(d, fsync="os", native=True, rotate_bytes=rotate) as j, \
            Journal(ref, fsync="os", native=False, rotate_bytes=rotate) as p:
        for i in range(3):
            j.append({"type": "ok", "ts": T0 + i, "i": i})
            p.append({"type": "ok", "ts": T0 + i, "i": i})
        j.flush()
        size = sum(len(b) for b in _files(d).values())
        recs = [j.append({"type": "lost", "ts": T0 + 10 + i, "i": i, "pad": "p" * 50}) for i in range(4)]
        recs.append(j.append({"type": "lost", "ts": T0 + 20, "px": bad}))
        recs.append(j.append({"type": "lost", "ts": MIDNIGHT}))
        with pytest.raises(JournalRecordError) as ei:
            j.flush()
        e = ei.value
        assert isinstance(e, TypeError) and (e.seq, e.key, e.last_seq) == (8, "px", 3)
        assert "seq 8" in str(e) and "'px'" in str(e) and e.problem in str(e)
        assert (j.last_seq, j.written_seq, j.last_hash) == (3, 3, p.last_hash)
        assert sum(len(b) for b in _files(d).values()) == size and recs[0]["hash"] == chain_native.PENDING
        j.flush()   # nothing pending any more
        for i in range(30):   # goes on: the same rotation, the same chain
            ev = {"type": "after", "ts": MIDNIGHT - 5 + i, "i": i}
            assert j.append(ev)["seq"] == p.append(ev)["seq"] == 4 + i
            if i % 7 == 6:
                j.flush()
                p.flush()
        assert j.last_hash == p.last_hash
    assert _files(d) == _files(ref)
    assert verify_journal(d).ok
    with Journal(d, fsync="os") as j:
        assert j.last_seq == 33
        j.append({"type": "reopened"})
    assert [r["seq"] for r in iter_records(d)] == list(range(1, 35))
    assert verify_journal(d).ok


def test_journal_record_error_is_what_the_gateway_handles(tmp_path):
    """The error of a refused flush is a JournalError (the gateway's ``end_batch`` refuses the
    batch's commands and rebuilds the engine on it) and a TypeError (what ``append`` raised)."""
    assert issubclass(JournalRecordError, jmod.JournalError) and issubclass(JournalRecordError, TypeError)
    with Journal(tmp_path, fsync="os", native=True) as j:
        j.append({"type": "x", "bad": {"nested": 1}})
        with pytest.raises(jmod.JournalError, match="nested"):
            j.flush()


class _Color(enum.Enum):
    RED = "r"


class _Level(enum.IntEnum):
    HIGH = 3


def test_native_path_journals_these_by_value(tmp_path):
    """orjson encodes these as allowed JSON values, so the native path (which does not look at
    types at append) journals them by value: Enum members (IntEnum too) as their value, a UUID
    as its string, a float NaN or infinity as null. The Python path refuses them at append."""
    u = uuid.UUID(int=7)
    vals = {"color": _Color.RED, "level": _Level.HIGH, "id": u, "nan": math.nan, "inf": -math.inf}
    with Journal(tmp_path / "n", fsync="os", native=True) as j:
        r = j.append({"type": "x", **vals})
    assert r["color"] is _Color.RED   # the returned record keeps the objects
    (rec,) = iter_records(tmp_path / "n")
    assert [rec[k] for k in vals] == ["r", 3, str(u), None, None]
    assert verify_journal(tmp_path / "n").ok
    with Journal(tmp_path / "p", fsync="os", native=False) as j:
        for k, v in vals.items():
            with pytest.raises(TypeError):
                j.append({"type": "x", k: v})
        assert j.last_seq == 0


def test_records_are_filled_at_flush_and_match_the_file(tmp_path):
    with Journal(tmp_path, fsync="os", native=True) as j:
        r1 = j.append({"type": "a", "ts": T0})
        assert r1["prev_hash"] == GENESIS_HASH   # known at once: nothing was pending
        r2 = j.append({"type": "b", "ts": T0 + 1})
        assert r1["hash"] == r2["prev_hash"] == r2["hash"] == chain_native.PENDING
        head = j.last_hash                        # computed in Python while records are pending
        j.flush()
        assert j.last_hash == head == r2["hash"] and r2["prev_hash"] == r1["hash"]
        assert r1["hash"] == record_hash(r1) and r2["hash"] == record_hash(r2)
        r3 = j.append({"type": "c"})
        assert r3["prev_hash"] == r2["hash"]
    (_, path), = list_segments(tmp_path)
    data = path.read_bytes()
    assert data.endswith(orjson.dumps(r3)) and orjson.dumps(r1) in data


def test_env_var_forces_the_python_path(tmp_path, monkeypatch):
    monkeypatch.setenv("OMS_JOURNAL_NATIVE", "0")
    with Journal(tmp_path / "a") as j:
        assert not j.native and j.append({"type": "x"})["hash"] != chain_native.PENDING
    monkeypatch.setenv("OMS_JOURNAL_NATIVE", "1")
    with Journal(tmp_path / "b") as j:
        assert j.native
    with Journal(tmp_path / "c", native=False) as j:
        assert not j.native


def test_tap_payloads_are_the_written_payloads(tmp_path):
    got = {}
    for native in (True, False):
        d = tmp_path / str(native)
        with Journal(d, fsync="os", native=native, rotate_bytes=700) as j:
            tap = j.tap()
            for i in range(30):
                j.append({"type": "t", "ts": T0 + i * NS_PER_DAY // 7, "i": i, "s": "\u00e9" * (i % 5)})
                if i % 4 == 3:
                    j.flush()
            j.flush()
            first, payloads = tap.take()
        assert first == 1 and len(payloads) == 30
        assert [orjson.loads(p) for p in payloads] == list(iter_records(d))
        got[native] = payloads
    assert got[True] == got[False]


@pytest.mark.parametrize("partial", [0, 1, 150, 10_000])
def test_failed_write_rolls_back_the_same_way(tmp_path, monkeypatch, partial):
    """A failed write (optionally after ``partial`` bytes) across a segment switch: both paths
    keep the same whole records, report the same head, and continue identically."""
    results = {}
    for native in (True, False):
        d = tmp_path / str(native)
        j = Journal(d, fsync="os", native=native, rotate_bytes=900)
        for i in range(3):
            j.append({"type": "ok", "i": i})
        j.flush()
        real = os.write
        state = {"left": 1, "partial": partial}

        def failing(fd, data, state=state, real=real):
            if state["left"]:
                if state["partial"]:
                    n = real(fd, bytes(data[:state["partial"]]))
                    state["partial"] = 0
                    return n
                state["left"] = 0
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(fd, data)

        monkeypatch.setattr(jmod.os, "write", failing)
        for i in range(3, 12):
            j.append({"type": "lost?", "i": i, "pad": "p" * 80})
        with pytest.raises(JournalWriteError):
            j.flush()
        monkeypatch.setattr(jmod.os, "write", real)
        head = (j.last_seq, j.last_hash)
        r = j.append({"type": "after", "i": 99})
        assert r["prev_hash"] == head[1]
        j.close()
        results[native] = (head, _files(d), [list(x.items()) for x in iter_records(d)])
    assert results[True] == results[False]


def test_failed_fsync_with_batch_policy_cuts_the_batch_off_the_same_way(tmp_path, monkeypatch):
    """fsync="batch": a flush whose fsync fails keeps nothing of its batch (not known durable),
    on both paths alike, and the journal goes on."""
    results = {}
    for native in (True, False):
        d = tmp_path / str(native)
        j = Journal(d, fsync="batch", native=native)
        for i in range(3):
            j.append({"type": "ok", "i": i})
        j.flush()
        size = sum(map(len, _files(d).values()))
        real = os.fsync
        calls = {"n": 0}

        def failing(fd, real=real, calls=calls):
            calls["n"] += 1
            if calls["n"] == 1:
                raise OSError(errno.EIO, "Input/output error")
            return real(fd)

        monkeypatch.setattr(jmod.os, "fsync", failing)
        for i in range(3, 6):
            j.append({"type": "lost", "i": i})
        with pytest.raises(JournalWriteError) as ei:
            j.flush()
        monkeypatch.setattr(jmod.os, "fsync", real)
        assert ei.value.last_seq == j.last_seq == j.written_seq == 3
        assert sum(map(len, _files(d).values())) == size
        j.append({"type": "after", "i": 99})
        j.close()
        results[native] = (_files(d), [list(x.items()) for x in iter_records(d)])
    assert results[True] == results[False]
    assert [r[1][1] for r in results[True][1]] == [0, 1, 2, 99]


def test_big_flushes_grow_the_buffers(tmp_path):
    """More records in one flush than the kernel's workspaces hold at first, and a record larger
    than its output buffer: the buffers grow, the bytes stay those of the Python path."""
    stream = [{"type": "bulk", "ts": T0 + i, "i": i} for i in range(3000)]
    stream[1500]["text"] = "\u00e9" * 300_000
    for native in (True, False):
        with Journal(tmp_path / str(native), fsync="os", native=native, rotate_bytes=1 << 20) as j:
            recs = [j.append(e) for e in stream]
            j.flush()
            recs += [j.append(e) for e in stream[:5]]
        assert [list(r.items()) for r in iter_records(tmp_path / str(native))] == _items(recs)
    assert _files(tmp_path / "True") == _files(tmp_path / "False")
    assert len(_files(tmp_path / "True")) > 1
