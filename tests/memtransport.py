"""An in-memory stand-in for a FIX session's asyncio transport (tests that drive FixSession
directly, without sockets): it keeps what the session wrote and whether it closed."""
from __future__ import annotations


class MemoryTransport:
    def __init__(self) -> None:
        self.out = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.out += data

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, key):
        return None

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:      # as asyncio's: closed at once, buffered data dropped
        self.closed = True
