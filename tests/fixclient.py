"""A small blocking FIX initiator for tests, built on simplefix (an independent codec).

Using simplefix here, not our own codec, means the tests check our acceptor against a
second implementation of the wire format.
"""
from __future__ import annotations

import socket
import time
from datetime import datetime, timezone

import simplefix


def utc_now() -> bytes:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H:%M:%S.%f")[:-3].encode()


class FixClient:
    def __init__(self, host: str, port: int, sender: str, target: str = "OMS",
                 begin_string: str = "FIX.4.4", timeout: float = 5.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sender, self.target, self.begin_string = sender, target, begin_string
        self.parser = simplefix.FixParser()
        self.seq = 1
        self.timeout = timeout
        self.received: list[simplefix.FixMessage] = []
        self.eof = False            # the server closed (or reset) the connection

    def message(self, msg_type: str | bytes, fields: list[tuple[int, object]] = (),
                seq: int | None = None, sending_time: bytes | None = None) -> simplefix.FixMessage:
        msg = simplefix.FixMessage()
        msg.append_pair(8, self.begin_string, header=True)
        msg.append_pair(35, msg_type, header=True)
        msg.append_pair(49, self.sender, header=True)
        msg.append_pair(56, self.target, header=True)
        msg.append_pair(34, self.seq if seq is None else seq, header=True)
        msg.append_pair(52, sending_time or utc_now(), header=True)
        for tag, value in fields:
            msg.append_pair(tag, value)
        return msg

    def send(self, msg_type: str | bytes, fields: list[tuple[int, object]] = (), seq: int | None = None,
             **kwargs) -> None:
        msg = self.message(msg_type, fields, seq=seq, **kwargs)
        self.sock.sendall(msg.encode())
        if seq is None:
            self.seq += 1

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self, timeout: float | None = None) -> simplefix.FixMessage | None:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            msg = self.parser.get_message()
            if msg is not None:
                self.received.append(msg)
                return msg
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return None
            except OSError:
                self.eof = True
                return None
            if not data:
                self.eof = True
                return None
            self.parser.append_buffer(data)

    def expect(self, msg_type: str, timeout: float | None = None, skip_heartbeats: bool = True) -> simplefix.FixMessage:
        while True:
            msg = self.recv(timeout)
            if msg is None:
                raise AssertionError(f"{self.sender}: expected MsgType {msg_type}, got nothing")
            mt = msg.get(35).decode()
            if skip_heartbeats and mt == "0" and msg_type != "0":
                continue
            if mt != msg_type:
                raise AssertionError(f"{self.sender}: expected MsgType {msg_type}, got {msg}")
            return msg

    def logon(self, password: str | None = None, heartbeat: int = 30, reset: bool = False) -> simplefix.FixMessage:
        fields: list[tuple[int, object]] = [(98, 0), (108, heartbeat)]
        if reset:
            fields.append((141, "Y"))
        if password is not None:
            fields += [(553, self.sender), (554, password)]
        self.send("A", fields)
        return self.expect("A")

    def new_order(self, cl_ord_id: str, symbol: str, side: str, qty: int, price: str | None = None,
                  ord_type: str | None = None, tif: str = "0", account: str | None = None) -> None:
        fields: list[tuple[int, object]] = [(11, cl_ord_id)]
        if account:
            fields.append((1, account))
        if self.begin_string == "FIX.4.2":
            fields.append((21, "1"))
        fields += [(55, symbol), (54, side), (60, utc_now()), (38, qty),
                   (40, ord_type or ("2" if price is not None else "1"))]
        if price is not None:
            fields.append((44, price))
        fields.append((59, tif))
        self.send("D", fields)

    def build(self, msg_type: str, fields: list[tuple[object, object]] = (), seq: int | None = None,
              sending_time: bytes | None = None, sender: str | None = None, target: str | None = None,
              extra_header: list[tuple[object, object]] = (), begin_string: str | None = None,
              body_length: int | None = None, checksum: int | None = None, checksum_off_by: int = 0) -> bytes:
        """Raw bytes of a message built by hand (no codec), so tests can send what a codec
        would refuse to build: bad tag numbers, empty values, repeated tags, wrong lengths.
        ``checksum_off_by``: a CheckSum that many off the right one (never right by chance)."""
        parts = [(35, msg_type), (49, sender or self.sender), (56, target or self.target),
                 (34, self.seq if seq is None else seq), *extra_header, (52, sending_time or utc_now()),
                 *fields]
        body = b"".join(b"%s=%s\x01" % (_b(t), _b(v)) for t, v in parts)
        head = b"8=%s\x019=%d\x01" % ((begin_string or self.begin_string).encode(),
                                      len(body) if body_length is None else body_length)
        total = (sum(head + body) + checksum_off_by) % 256 if checksum is None else checksum
        return head + body + b"10=%03d\x01" % total

    def send_built(self, msg_type: str, fields: list[tuple[object, object]] = (), seq: int | None = None,
                   **kwargs) -> bytes:
        raw = self.build(msg_type, fields, seq=seq, **kwargs)
        self.sock.sendall(raw)
        if seq is None:
            self.seq += 1
        return raw

    def drain(self, timeout: float = 0.3) -> list[simplefix.FixMessage]:
        """Everything that arrives until ``timeout`` passes without a message."""
        out = []
        while (msg := self.recv(timeout)) is not None:
            out.append(msg)
        return out

    def wait_closed(self, timeout: float = 5.0) -> list[simplefix.FixMessage]:
        """Read until the server closes the connection; returns what arrived before."""
        deadline = time.monotonic() + timeout
        out = []
        while not self.eof and time.monotonic() < deadline:
            msg = self.recv(max(0.01, deadline - time.monotonic()))
            if msg is not None:
                out.append(msg)
        if not self.eof:
            raise AssertionError(f"{self.sender}: connection still open after {timeout}s; got {out}")
        return out

    def test_request(self, test_id: str = "PING", timeout: float | None = None) -> simplefix.FixMessage:
        """Send a TestRequest and return the Heartbeat that answers it (skipping others)."""
        self.send("1", [(112, test_id)])
        while True:
            msg = self.recv(timeout)
            if msg is None:
                raise AssertionError(f"{self.sender}: no Heartbeat for TestRequest {test_id}")
            if msg.get(35) == b"0" and msg.get(112) == test_id.encode():
                return msg

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def _b(value: object) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def field(msg: simplefix.FixMessage, tag: int) -> str | None:
    value = msg.get(tag)
    return value.decode("utf-8", "replace") if value is not None else None
