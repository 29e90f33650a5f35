"""Crash recovery: kill -9 `oms serve` at random moments while two FIX sessions stream orders,
restart it on the same data dir each time, and check that

- every order that got an ExecutionReport is still known, in the state the client last saw
  (OrderStatusRequest (H) after each restart; the DuckDB projection after the final clean stop);
- orders rejected with an ExecutionReport are in the audit trail as rejected;
- the FIX sessions recover by normal resend (no ResetSeqNumFlag, no session Reject);
- the hash chain verifies (`oms audit verify` exit 0) and the projection has every journal record.

Bounded: 5 rounds, each a few hundred messages per session at a modest rate, seeded RNG.
"""
from __future__ import annotations

import json
import os
import random
import re
import threading
import time
import urllib.request

import duckdb

from oms_trading.audit.paths import duckdb_path
from oms_trading.config import demo_config_text
from tests.fixclient import FixClient, field, utc_now
from tests.server_process import ServerProcess, audit_verify_ok

SEED = int(os.environ.get("OMS_CRASH_SEED", "20261125"))
ROUNDS = int(os.environ.get("OMS_CRASH_ROUNDS", "5"))   # the soak: OMS_CRASH_ROUNDS=20
MSGS_PER_ROUND = 220          # per session
RATE = 250                    # messages per second per session
SESSIONS = (("CRASHA", "ACC1"), ("CRASHB", "BENCH"))
# the book is not what this test is about; the reference book starts faster and does not depend
# on the numba kernels (under rework while this was written: warm_up hung in run_batch)
SERVER_ARGS = ["--book", "reference"]


def write_config(path):
    text = demo_config_text()
    for name, account in SESSIONS:
        text += (f'\n[[fix.sessions]]\nsender_comp_id = "OMS"\ntarget_comp_id = "{name}"\n'
                 f'begin_string = "FIX.4.4"\naccount = "{account}"\nheartbeat = 30\n')
    path.write_text(text, encoding="utf-8")
    return path


class Trader:
    """One FIX session's client side and what it has been told, surviving server restarts."""

    def __init__(self, name: str, rng: random.Random):
        self.name = name
        self.rng = rng
        self.seq = 1                 # our next MsgSeqNum
        self.last_in = 0             # highest MsgSeqNum received from the server
        self.orders: dict[str, dict] = {}     # OrderID -> last ER seen (by server seq)
        self.cl_to_oid: dict[str, str] = {}
        self.logon_seq = 1
        self.rejected: set[str] = set()       # ClOrdIDs rejected by an ExecutionReport
        self.session_rejects: list = []
        self.resets: list = []
        self.counter = 0
        self.client: FixClient | None = None
        self.lock = threading.Lock()
        self.log: list[str] = []              # last messages, for a failure message
        self.full: list[str] = []
        self.sent: list[str] = []
        self.dump_dir = None
        self.exec_ids: set[str] = set()

    # -- connection
    def connect(self, port: int) -> None:
        c = FixClient("127.0.0.1", port, self.name, timeout=10.0)
        c.seq = self.seq
        self.client = c
        self.logon_seq = self.seq
        c.send("A", [(98, 0), (108, 30)])
        self.seq = c.seq
        expected = self.last_in + 1
        ack = self._read_until(lambda m: m.get(35) == b"A", 15.0)
        if field(ack, 141) == "Y":
            self.resets.append(ack)
        if int(field(ack, 34)) > expected:
            # we missed messages the server sent before the crash: ask for them (normal resend)
            self.send("2", [(7, expected), (16, 0)])

    def send(self, msg_type: str, fields) -> None:
        with self.lock:
            self.client.seq = self.seq
            self.sent.append(f"{self.seq} {msg_type} {fields[:2]}")
            self.client.send(msg_type, fields)
            self.seq = self.client.seq

    def barrier(self, timeout: float = 20.0) -> None:
        """TestRequest/Heartbeat round trip: everything the server sent before is processed."""
        tid = f"B{self.seq}"
        self.send("1", [(112, tid)])
        self._read_until(lambda m: m.get(35) == b"0" and field(m, 112) == tid, timeout)

    def _read_until(self, pred, timeout: float):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = self.client.recv(max(0.05, deadline - time.monotonic()))
            if m is None:
                if self.client.eof:
                    raise AssertionError(f"{self.name}: connection closed while waiting")
                continue
            self.handle(m)
            if pred(m):
                return m
        raise AssertionError(f"{self.name}: timed out waiting; next seq {self.seq}, last in {self.last_in}; "
                             f"last messages: {self.log[-8:]}")

    def dump(self) -> None:
        """Every message received and sent, next to the test's data dir, for a post-mortem."""
        if self.dump_dir is not None:
            (self.dump_dir / f"{self.name}-messages.txt").write_text(
                "\n".join(self.full) + "\n=== sent\n" + "\n".join(self.sent) + "\n")

    # -- incoming
    def handle(self, m) -> None:
        self.log = self.log[-30:] + [str(m).replace("\x01", "|")]
        self.full.append(str(m).replace("\x01", "|"))
        mt = m.get(35)
        seq = int(field(m, 34))
        if mt == b"4" and field(m, 123) == "Y":
            self.last_in = max(self.last_in, int(field(m, 36)) - 1)
            return
        self.last_in = max(self.last_in, seq)
        if mt == b"8":
            oid, cl, status = field(m, 37), field(m, 11), field(m, 39)
            if field(m, 150) == "I":          # status answer: checked by the caller, not state
                return
            self.exec_ids.add(field(m, 17))
            if oid and oid.isdigit():
                prev = self.orders.get(oid)
                if prev is None or prev["seq"] < seq:
                    self.orders[oid] = {"seq": seq, "cl": cl, "status": status, "cum": int(field(m, 14)),
                                        "exec": field(m, 17),
                                        "leaves": int(field(m, 151)), "side": field(m, 54),
                                        "symbol": field(m, 55)}
                self.cl_to_oid[cl] = oid
            elif status == "8":
                self.rejected.add(cl)
        elif mt == b"2":
            # the server lost messages we sent before it died: gap-fill them up to our Logon (what
            # it did journal it answers by its own resend; stale orders are not sent again)
            begin = int(field(m, 7))
            new_seq = self.logon_seq if begin < self.logon_seq else self.seq
            raw = self.client.build("4", [(123, "Y"), (36, new_seq)], seq=begin,
                                    extra_header=[(43, "Y"), (122, utc_now())])
            with self.lock:
                self.client.send_raw(raw)
        elif mt == b"1":
            self.send("0", [(112, field(m, 112))])
        elif mt == b"3":
            self.session_rejects.append(str(m))
        elif mt == b"A" and field(m, 141) == "Y":
            self.resets.append(str(m))

    # -- the stream
    def open_orders(self) -> list[dict]:
        return [o for o in self.orders.values() if o["status"] in ("0", "1")]

    def next_message(self):
        rng = self.rng
        self.counter += 1
        cl = f"{self.name}-{self.counter}"
        r = rng.random()
        live = self.open_orders()
        if r < 0.12 and live:
            o = rng.choice(live)
            return "F", [(41, o["cl"]), (11, cl), (55, o["symbol"]), (54, o["side"]), (60, utc_now())]
        if r < 0.20 and live:
            o = rng.choice(live)
            return "G", [(41, o["cl"]), (11, cl), (55, o["symbol"]), (54, o["side"]), (60, utc_now()),
                         (38, o["cum"] + rng.randint(1, 20)), (40, "2"),
                         (44, f"{rng.randint(41500, 42500) / 100:.2f}"), (59, "0")]
        side = rng.choice("12")
        price = f"{rng.randint(41500, 42500) / 100:.2f}"
        if rng.random() < 0.03:
            price = "1000.00"                 # outside the collar: rejected by risk
        tif = "3" if rng.random() < 0.15 else "0"
        return "D", [(11, cl), (55, "MSFT"), (54, side), (60, utc_now()), (38, rng.randint(1, 20)), (40, "2"),
                     (44, price), (59, tif)]

    def stream(self, n: int, stop: threading.Event) -> None:
        """Send ``n`` messages at RATE/s, reading what comes back, until done or the server dies."""
        gap = 1.0 / RATE
        nxt = time.monotonic()
        try:
            for _ in range(n):
                if stop.is_set():
                    return
                mt, fields = self.next_message()
                self.send(mt, fields)
                nxt += gap
                while True:
                    m = self.client.recv(max(0.0005, nxt - time.monotonic()))
                    if m is not None:
                        self.handle(m)
                    elif self.client.eof:
                        return
                    if time.monotonic() >= nxt:
                        break
        except (OSError, AssertionError):
            return

    def check_status(self, sample: int) -> int:
        """OrderStatusRequest for some known orders: the server's answer equals what we last saw."""
        oids = sorted(self.orders, key=int)
        picked = self.rng.sample(oids, min(sample, len(oids)))
        for oid in picked:
            o = self.orders[oid]
            self.send("H", [(37, oid), (11, o["cl"]), (55, o["symbol"]), (54, o["side"])])
            ans = self._read_until(lambda m: m.get(35) == b"8" and field(m, 150) == "I", 10.0)
            got = (field(ans, 37), field(ans, 39), int(field(ans, 14)), int(field(ans, 151)))
            # the server may be ahead of us: an event journaled just before a kill whose report
            # never reached the FIX store (see the final check); never behind, never different
            ok = got == (oid, o["status"], o["cum"], o["leaves"]) or (
                o["status"] in ("0", "1") and got[2] >= o["cum"] and got[1] != "0")
            if not ok:
                self.dump()
            assert ok, (self.name, got, o)
        return len(picked)


def _journal_seq(srv) -> int:
    for line in srv.lines:
        m = re.search(r"journal seq (\d+)", line)
        if m:
            return int(m.group(1))
    raise AssertionError(f"no journal seq in {srv.lines}")


def _replayed_as_journaled(srv) -> None:
    """The start-up replay made every event the journal holds (engine/replay_check): a kill -9
    leaves at most a torn tail, never a different history."""
    with urllib.request.urlopen(f"http://127.0.0.1:{srv.http_port}/health", timeout=10) as r:
        health = json.loads(r.read())
    assert "replay_differences" not in health, health.get("replay_first_difference")


def test_kill_9_at_random_moments_then_recover(tmp_path):
    rng = random.Random(SEED)
    config = write_config(tmp_path / "oms.toml")
    data = tmp_path / "data"
    traders = [Trader(name, random.Random(rng.random())) for name, _ in SESSIONS]
    for t in traders:
        t.dump_dir = tmp_path
    checked = 0
    starts: list[int] = []                    # journal last seq at each server start
    started = time.monotonic()
    srv = None
    try:
        for rnd in range(ROUNDS):
            srv = ServerProcess(data, config=config, extra=SERVER_ARGS).start(timeout=60)
            starts.append(_journal_seq(srv))
            _replayed_as_journaled(srv)
            for t in traders:
                t.connect(srv.fix_port)
            for t in traders:                 # resent reports are in, then ask about some orders
                t.barrier()
                if rnd:
                    checked += t.check_status(15)
            stop = threading.Event()
            threads = [threading.Thread(target=t.stream, args=(MSGS_PER_ROUND, stop)) for t in traders]
            for th in threads:
                th.start()
            time.sleep(rng.uniform(0.15, 0.9) * MSGS_PER_ROUND / RATE)
            srv.kill()                        # SIGKILL: no goodbye, no flush beyond what was written
            stop.set()
            for th in threads:
                th.join(10)
            for t in traders:
                t.client.close()
        # final: restart, collect everything by resend, then stop cleanly
        srv = ServerProcess(data, config=config, extra=SERVER_ARGS).start(timeout=60)
        starts.append(_journal_seq(srv))
        _replayed_as_journaled(srv)
        for t in traders:
            t.connect(srv.fix_port)
            t.barrier()
            checked += t.check_status(15)
        for t in traders:
            t.client.close()
        assert srv.stop() == 0
    except AssertionError as exc:
        log = "".join(srv.stderr_lines[-40:]) if srv is not None else ""
        raise AssertionError(f"{exc}\n--- server log (last lines) ---\n{log}") from None
    finally:
        if srv is not None:
            srv.kill()
    for t in traders:
        assert not t.resets, f"{t.name}: sequence reset: {t.resets}"
        assert not t.session_rejects, f"{t.name}: session rejects: {t.session_rejects}"
    total = sum(len(t.orders) for t in traders)
    assert total > ROUNDS * 100 and checked >= ROUNDS * 20
    # every acknowledged order is in the projection, in the state its owner last saw
    con = duckdb.connect(str(duckdb_path(data)), read_only=True)
    try:
        last = {str(oid): (st, cum, leaves) for oid, st, cum, leaves in con.execute(
            """SELECT order_id, arg_max(ord_status, seq), arg_max(cum_qty, seq), arg_max(leaves_qty, seq)
               FROM audit_events WHERE order_id IS NOT NULL AND exec_id IS NOT NULL GROUP BY order_id""").fetchall()}
        rejected = {r[0] for r in con.execute(
            "SELECT cl_ord_id FROM audit_events WHERE type = 'order_rejected'").fetchall()}
        n_rows = con.execute("SELECT count(*) FROM audit_events").fetchall()[0][0]
        con_rows = {}
        for name, _ in SESSIONS:
            con_rows[f"{name}->OMS"] = con.execute(
                "SELECT seq, order_id, exec_id FROM audit_events WHERE session = ? AND exec_id IS NOT NULL "
                "ORDER BY seq", [f"{name}->OMS"]).fetchall()
        for t, (name, _) in zip(traders, SESSIONS):      # journal seq of the last report seen
            by_exec = {e[2]: e[0] for e in con_rows[f"{name}->OMS"]}
            for o in t.orders.values():
                o["jseq"] = by_exec[o["exec"]]
    finally:
        con.close()
    # a report can be lost only in the tail of a round: events journaled after the last report
    # the FIX store kept before the kill (the store is written after the journal flush)
    unreported = 0
    for t, (name, _acct) in zip(traders, SESSIONS):
        events = con_rows[f"{name}->OMS"]
        windows = [(lo, hi) for lo, hi in zip(starts, starts[1:])]
        got = [e for e in events if e[2] in t.exec_ids]
        missing = {e[0] for e in events if e[2] not in t.exec_ids}
        for lo, hi in windows:
            last_got = max((e[0] for e in got if lo < e[0] <= hi), default=lo)
            holes = [q for q in missing if lo < q <= last_got]
            assert not holes, f"{name}: reports missing in the middle of a round: journal seqs {sorted(holes)[:10]}"
        unreported += len(missing)
        for oid, o in t.orders.items():
            if last.get(oid) == (o["status"], o["cum"], o["leaves"]):
                continue
            later = [e for e in events if e[1] == int(oid) and e[0] > o["jseq"]]
            assert later and all(e[0] in missing for e in later), (t.name, oid, o, last.get(oid))
        assert t.rejected <= rejected
    print(f"crash test: {total} orders, {checked} status checks, {unreported} reports never received")
    # reports journaled but lost with the process before reaching the FIX store are rebuilt at
    # restart and recovered by the client's resend: none may be missing
    assert unreported == 0, f"{unreported} journaled reports never reached their session"
    out = audit_verify_ok(data, timeout=60)
    assert f"{n_rows} journal records, {n_rows} DuckDB rows" in out, out
    assert time.monotonic() - started < 90 * max(1, ROUNDS // 5)
