"""The floor: a bare uvloop TCP server that answers FIX like the OMS would, doing nothing else.

Each NewOrderSingle (D) is answered with an ExecutionReport New, each OrderCancelRequest
(F) with one Canceled, each OrderCancelReplaceRequest (G) with one Replaced: pre-encoded
messages of the OMS's ExecutionReport size in which only the ClOrdID (and so BodyLength
and CheckSum) changes. A Logon gets a Logon back, a Logout a Logout. Framing is a
``find`` of the CheckSum field; no validation, no sequence numbers, no state. So the load
generator's path (encode, write, read, FixParser, match by ClOrdID) is identical against
this server and against ``oms serve``, and the difference between the two is the OMS.

    python -m benchmarks.echo_server [--host 127.0.0.1] [--port 0]

prints ``ECHO <port>`` once listening; runs until SIGTERM/SIGINT.
"""
from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import sys
from zlib import adler32

from oms_trading.fix.codec import ExecReportTemplate, checksum

_MARK = b"\x02CLORDID\x02"


def _er_parts(exec_type: bytes, ord_status: bytes) -> tuple[bytes, bytes]:
    """Body before and after the ClOrdID value of a realistic ExecutionReport."""
    t = ExecReportTemplate(b"FIX.4.4", b"OMS", b"BENCH")
    raw = t.encode(123456, b"20250101-12:00:00.000", b"1234567", _MARK, b"2345678", exec_type, ord_status,
                   b"MSFT", b"1", 100, b"2", 0, b"0", 100, 0, b"0", b"20250101-12:00:00.000",
                   price=b"399.99", time_in_force=b"0", account=b"BENCH",
                   orig_cl_ord_id=_MARK + b"0" if exec_type == b"5" or exec_type == b"4" else None)
    body = raw[raw.index(b"\x0135=") + 1:raw.rindex(b"10=")]
    if exec_type in (b"4", b"5"):
        body = body.replace(_MARK + b"0", b"ORIGCLORDID0000")
    before, after = body.split(_MARK)
    return before, after


_PARTS = {b"D": _er_parts(b"0", b"0"), b"F": _er_parts(b"4", b"4"), b"G": _er_parts(b"5", b"0")}
_LOGON = b"35=A\x0149=OMS\x0156=BENCH\x0134=1\x0152=20250101-12:00:00.000\x0198=0\x01108=30\x01141=Y\x01"
_LOGOUT = b"35=5\x0149=OMS\x0156=BENCH\x0134=2\x0152=20250101-12:00:00.000\x01"


def _frame(body: bytes) -> bytes:
    msg = b"8=FIX.4.4\x019=%d\x01%b" % (len(body), body)
    if len(msg) <= 256:
        return b"%b10=%03d\x01" % (msg, adler32(msg, 0) & 0xFF)
    return b"%b10=%03d\x01" % (msg, checksum(msg))


class EchoFix(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = b""
        self.t: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.t = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        out = []
        pos = 0
        find = buf.find
        parts = _PARTS
        while True:
            end = find(b"\x0110=", pos)
            if end < 0 or len(buf) < end + 8:
                break
            at = find(b"\x0135=", pos, end)
            nxt = end + 8
            if at >= 0:
                mt = buf[at + 4:find(b"\x01", at + 4)]
                p = parts.get(mt)
                if p is not None:
                    c = find(b"\x0111=", at, end)
                    if c >= 0:
                        cl = buf[c + 4:find(b"\x01", c + 4)]
                        out.append(_frame(p[0] + cl + p[1]))
                elif mt == b"A":
                    out.append(_frame(_LOGON))
                elif mt == b"5":
                    out.append(_frame(_LOGOUT))
            pos = nxt
        self.buf = buf[pos:]
        if out:
            self.t.write(b"".join(out))


async def serve(host: str = "127.0.0.1", port: int = 0) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(EchoFix, host, port)
    print(f"ECHO {server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        import uvloop
        uvloop.run(serve(args.host, args.port))
    except ImportError:
        asyncio.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
