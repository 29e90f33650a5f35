"""Where does `oms serve` memory go per order? An in-process probe (no sockets, no event loop).

    python -m benchmarks.mem_probe [--sessions 10] [--ops 300000] [--warmup-ops 150000]
                                   [--keep 20000] [--mix passive=45,cross=5,cancel=45,replace=5]
                                   [--top 25] [--frames 1]

Builds what `oms serve` builds (Journal, numba books, risk engine, Engine, Gateway,
FixAcceptor with its message stores, the metrics hook) in a temp folder, logs on ``--sessions``
FixSessions over fake transports (writes are counted and dropped), and feeds them the load
generator's operations (benchmarks/loadgen.py: passive buys, crossing IOC sells, cancels and
replaces of resting orders, round robin over the sessions) in batches of 10 per session, like
the server's reads. The server's gc policy (automatic collection off, ``collect(1)`` +
``freeze()`` every few thousand operations) is applied too.

After ``--warmup-ops`` (choose it past the point where ``[trading] finished_orders_in_memory``
= ``--keep`` is reached) it starts tracemalloc, runs ``--ops`` operations, takes a snapshot and
counts the gc-tracked objects by type; after ``--ops`` more it does it again and prints

* bytes per operation by allocation site (tracemalloc, grouped by file:line), the top ones;
* object count growth by type;
* the sizes of the long-lived structures (SentIndex arrays, fingerprint table, engine dicts);
* process RSS growth per operation (VmRSS; includes what tracemalloc does not see: mmaps);
* cyclic garbage kept alive by the freeze policy (``gc.unfreeze(); gc.collect()`` at the end).

Numbers are per *operation* (one inbound application message and its reports).
"""
from __future__ import annotations

import argparse
import collections
import gc
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from benchmarks import loadgen
from benchmarks.bench_fix import bench_config_text


def rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class FakeTransport:
    def __init__(self) -> None:
        self.bytes = 0
        self.closed = False

    def write(self, data: bytes) -> None:
        self.bytes += len(data)

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name, default=None):
        return default

    def close(self) -> None:
        self.closed = True

    abort = close


def build(tmp: Path, sessions: int, keep: int):
    import re
    from oms_trading.config import parse_config
    from oms_trading.server import make_book_factory, make_risk
    from oms_trading.audit.journal import Journal
    from oms_trading.audit.paths import journal_dir
    from oms_trading.engine.engine import Engine
    from oms_trading.fix.gateway import Gateway
    from oms_trading.fix.session import FixAcceptor
    from oms_trading.web.metrics import Metrics

    text = bench_config_text(sessions)
    text = re.sub(r"^finished_orders_in_memory = .*$", f"finished_orders_in_memory = {keep}", text, flags=re.M)
    cfg = parse_config(text, "mem_probe", tmp)
    journal = Journal(journal_dir(tmp), fsync="os", rotate_bytes=cfg.rotate_mb * 1024 * 1024)
    risk = make_risk(cfg)
    engine = Engine(cfg, journal, make_book_factory("numba"), risk=risk)
    gateway = Gateway(engine)
    metrics = Metrics()
    gateway.on_events.append(metrics.observe_events)
    acceptor = FixAcceptor(cfg, gateway, tmp)
    return cfg, journal, engine, gateway, acceptor


class Client:
    """One initiator: encodes loadgen's operations, keeps the pool of resting ClOrdIDs."""

    def __init__(self, index: int, sender: str, session) -> None:
        self.index = index
        self.sender = sender.encode()
        self.session = session
        self.seq = 1
        self.live: collections.OrderedDict[bytes, None] = collections.OrderedDict()
        self.hdr = {mt: b"35=" + mt + b"\x0149=%b\x0156=OMS\x0134=" % self.sender for mt in (b"A", b"D", b"F", b"G")}

    def encode(self, mt: bytes, body: bytes) -> bytes:
        seq = self.seq
        self.seq += 1
        return loadgen.frame(b"FIX.4.4", b"%b%d\x0152=%b\x01%b" % (self.hdr[mt], seq, loadgen.sending_time(), body))

    def op(self, kind: int, i: int) -> bytes:
        cl = b"P%d" % i
        if kind in (loadgen.CANCEL, loadgen.REPLACE):
            if not self.live:
                kind = loadgen.NEW
            else:
                orig, _ = self.live.popitem(last=False)
        price = loadgen._price(loadgen.PASSIVE_LO + (i * 7919) % loadgen.PASSIVE_SPAN)
        if kind == loadgen.NEW:
            self.live[cl] = None
            return self.encode(b"D", b"11=%b\x011=BENCH\x0155=MSFT\x0154=1\x0160=%b\x0138=100\x0140=2\x0144=%b\x0159=0\x01"
                               % (cl, loadgen.sending_time(), price))
        if kind == loadgen.CROSS:
            return self.encode(b"D", b"11=%b\x011=BENCH\x0155=MSFT\x0154=2\x0160=%b\x0138=1\x0140=2\x0144=%b\x0159=3\x01"
                               % (cl, loadgen.sending_time(), loadgen.CROSS_PRICE))
        if kind == loadgen.CANCEL:
            return self.encode(b"F", b"41=%b\x0111=%b\x011=BENCH\x0155=MSFT\x0154=1\x0160=%b\x0138=100\x01"
                               % (orig, cl, loadgen.sending_time()))
        self.live[cl] = None
        return self.encode(b"G", b"41=%b\x0111=%b\x011=BENCH\x0155=MSFT\x0154=1\x0160=%b\x0138=100\x0140=2\x0144=%b"
                           b"\x0159=0\x01" % (orig, cl, loadgen.sending_time(), price))


def drive(clients, kinds: bytes, start: int, count: int, batch: int, gc_every: int) -> None:
    n = len(clients)
    i = start
    end = start + count
    pending = [[] for _ in clients]
    while i < end:
        for _ in range(batch * n):
            if i >= end:
                break
            c = clients[i % n]
            pending[c.index].append(c.op(kinds[i % len(kinds)], i))
            i += 1
        for c in clients:
            if pending[c.index]:
                c.session.data_received(b"".join(pending[c.index]))
                pending[c.index].clear()
        if gc_every and i % gc_every < batch * n:
            gc.collect(1)
            gc.freeze()


def type_counts() -> collections.Counter:
    return collections.Counter(type(o).__name__ for o in gc.get_objects())


def structures(engine, acceptor) -> dict:
    out = {}
    total = 0
    for store in acceptor._stores.values():
        idx = store._index
        if hasattr(idx, "nbytes"):
            total += idx.nbytes
        else:                                  # the index of one entry per message (before)
            total += sum(a.buffer_info()[1] * a.itemsize for a in (idx._offsets, idx._lengths))
    out["store index bytes (all sessions)"] = total
    gone = engine._gone_ids
    out["fingerprints count"] = len(gone)
    out["fingerprint table bytes"] = int(gone._table.nbytes)
    out["engine.orders"] = len(engine.orders)
    out["engine.by_cl_ord_id"] = len(engine.by_cl_ord_id)
    out["engine._finished"] = len(engine._finished)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=10)
    ap.add_argument("--warmup-ops", type=int, default=150_000)
    ap.add_argument("--ops", type=int, default=300_000, help="measured operations after the warm-up")
    ap.add_argument("--keep", type=int, default=20_000, help="[trading] finished_orders_in_memory")
    ap.add_argument("--mix", default="passive=45,cross=5,cancel=45,replace=5")
    ap.add_argument("--batch", type=int, default=10, help="operations per session per read")
    ap.add_argument("--gc-every", type=int, default=5000, help="collect(1)+freeze every N operations (0: off)")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--frames", type=int, default=1, help="tracemalloc frames (grouping by the innermost)")
    ap.add_argument("--no-tracemalloc", action="store_true", help="RSS only (faster)")
    args = ap.parse_args(argv)

    from oms_trading.fix.session import FixSession

    probs = loadgen.parse_mix(args.mix)
    kinds = loadgen.schedule_kinds(1 << 20, probs, 1)
    with tempfile.TemporaryDirectory(prefix="oms-mem-probe-") as tmpname:
        tmp = Path(tmpname)
        cfg, journal, engine, gateway, acceptor = build(tmp, args.sessions, args.keep)
        clients = []
        for k in range(args.sessions):
            name = "BENCH" if k == 0 else f"BENCH{k + 1}"
            session = FixSession(acceptor)
            session.connection_made(FakeTransport())
            client = Client(k, name, session)
            session.data_received(client.encode(b"A", b"98=0\x01108=0\x01141=Y\x01"))
            assert session.logged_on, f"{name} did not log on"
            clients.append(client)
        gc.collect()
        gc.freeze()
        gc.disable()
        t0 = time.perf_counter()
        drive(clients, kinds, 0, args.warmup_ops, args.batch, args.gc_every)
        print(f"warm-up: {args.warmup_ops:,} ops in {time.perf_counter() - t0:.1f} s; {structures(engine, acceptor)}",
              flush=True)
        gc.collect(1)
        gc.freeze()
        counts0 = type_counts()
        rss0 = rss_kib()
        if not args.no_tracemalloc:
            # traced from here, compared between two later points: blocks allocated and freed
            # between them (the churn of finished orders) cancel out, only what stays counts
            tracemalloc.start(args.frames)
            drive(clients, kinds, args.warmup_ops, args.ops, args.batch, args.gc_every)
            gc.collect(1)
            gc.freeze()
            counts0 = type_counts()
            rss0 = rss_kib()
            snap0 = tracemalloc.take_snapshot()
        t0 = time.perf_counter()
        drive(clients, kinds, args.warmup_ops + (0 if args.no_tracemalloc else args.ops), args.ops, args.batch,
              args.gc_every)
        elapsed = time.perf_counter() - t0
        gc.collect(1)
        gc.freeze()
        rss1 = rss_kib()
        if not args.no_tracemalloc:
            snap1 = tracemalloc.take_snapshot()
            tracemalloc.stop()
        counts1 = type_counts()
        n = args.ops
        print(f"measured: {n:,} ops in {elapsed:.1f} s; {structures(engine, acceptor)}")
        print(f"RSS {rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MiB: {(rss1 - rss0) * 1024 / n:+.1f} bytes per operation"
              f" (RSS includes tracemalloc's own bookkeeping when it is on)")
        if not args.no_tracemalloc:
            stats = snap1.compare_to(snap0, "traceback" if args.frames > 1 else "lineno")
            total = sum(s.size_diff for s in stats)
            print(f"\ntracemalloc: {total / n:+.1f} bytes per operation in all; top sites:")
            for s in stats[:args.top]:
                if args.frames > 1:
                    where = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in s.traceback)
                else:
                    f = s.traceback[0]
                    where = f"{f.filename.replace(str(Path.cwd()) + '/', '')}:{f.lineno}"
                print(f"  {s.size_diff / n:+9.2f} B/op  {s.count_diff / n:+7.3f} blocks/op  {where}")
        diff = {k: counts1[k] - counts0.get(k, 0) for k in counts1}
        grown = sorted(((v, k) for k, v in diff.items() if v), reverse=True)[:15]
        print("\ngc-tracked objects, growth over the measured ops:")
        for v, k in grown:
            print(f"  {v:+9,d}  {k}")
        gc.unfreeze()
        found = gc.collect()
        print(f"\ncyclic garbage held by the freeze policy at the end: {found:,} objects")
        for c in clients:
            c.session.connection_lost(None)
        journal.close()
        for store in acceptor._stores.values():
            store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
