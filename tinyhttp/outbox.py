"""Bytes and file slices waiting to go out, sent as fast as the client takes them."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from .log import Trace

__all__ = ["FileShrank", "FileSlice", "Outbox"]

# Bytes per os.sendfile() call: nginx's sendfile_max_chunk default. Fewer calls per file,
# and one call still returns within about a millisecond on loopback.
SENDFILE_CHUNK = 2 * 1024 * 1024
# The read+send fallback holds this much of the file in memory per call.
READ_CHUNK = 256 * 1024
# At most this much goes to one client per loop turn; then the others get their turn (a fast
# reader on loopback may never fill its socket, and would otherwise keep the loop to itself).
TURN_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class FileSlice:
    """`length` bytes of an open file from `offset`, for the outbox to send and close."""

    fd: int
    offset: int
    length: int

    def __len__(self) -> int:
        # h11 frames a body by len(); this lets the slice stand in for the bytes it holds.
        return self.length


class FileShrank(OSError):
    """The file ended before the bytes its Content-Length promised (it was truncated)."""


class Outbox:
    """A queue of bytes and file slices; `flush()` sends what the socket will take now."""

    __slots__ = ("_items", "_use_sendfile", "pending", "trace")

    def __init__(self, use_sendfile: bool = True, trace: Trace | None = None) -> None:
        # A list, not a deque: it rarely holds more than a head and a file, and an empty
        # deque costs 600 bytes, which 10,000 idle connections would each pay.
        self._items: list[bytearray | FileSlice] = []
        self._use_sendfile = use_sendfile and hasattr(os, "sendfile")
        self.pending = 0  # bytes queued and not yet sent
        self.trace = trace

    def __bool__(self) -> bool:
        return bool(self._items)

    def write(self, data: bytes) -> None:
        """Queue bytes; they join the previous bytes so one send() can carry both."""
        if not data:
            return
        if self._items and isinstance(self._items[-1], bytearray):
            self._items[-1] += data
        else:
            self._items.append(bytearray(data))
        self.pending += len(data)

    def add_file(self, piece: FileSlice) -> None:
        """Queue a file slice; the outbox closes the file once the slice is sent."""
        self._items.append(piece)
        self.pending += piece.length

    def flush(self, sock: socket.socket) -> int:
        """Send until the queue is empty or the socket is full; return the bytes sent.

        Raises OSError when the client is gone, FileShrank when a file came up short.
        """
        sent = 0
        while self._items and sent < TURN_BYTES:
            item = self._items[0]
            try:
                if isinstance(item, bytearray):
                    n = self._send_bytes(sock, item)
                else:
                    n = self._send_file(sock, item)
            except BlockingIOError:
                break  # the socket buffer is full: wait for the next writable event
            sent += n
            self.pending -= n
        return sent

    def _send_bytes(self, sock: socket.socket, buffer: bytearray) -> int:
        n = sock.send(buffer)
        if self.trace:
            self.trace.say(f"send({len(buffer)} bytes) -> {n} taken by the kernel")
        del buffer[:n]
        if not buffer:
            del self._items[0]
        return n

    def _send_file(self, sock: socket.socket, piece: FileSlice) -> int:
        if self._use_sendfile:
            count = min(piece.length, SENDFILE_CHUNK)
            # Zero-copy: the kernel moves file pages to the socket. (socket.sendfile()
            # cannot be used: it refuses non-blocking sockets.)
            n = os.sendfile(sock.fileno(), piece.fd, piece.offset, count)
        else:
            count = min(piece.length, READ_CHUNK)
            os.lseek(piece.fd, piece.offset, os.SEEK_SET)  # portable, unlike os.pread
            n = sock.send(os.read(piece.fd, count))
        if self.trace:
            how = "sendfile" if self._use_sendfile else "read+send"
            self.trace.say(f"{how}({count} bytes from offset {piece.offset}) -> {n} taken")
        if n == 0:
            raise FileShrank(f"file ended {piece.length} bytes early")
        rest = FileSlice(piece.fd, piece.offset + n, piece.length - n)
        self._items[0] = rest
        if not rest.length:
            del self._items[0]
            os.close(piece.fd)
        return n

    def close(self) -> None:
        """Drop everything queued and close the files it held."""
        for item in self._items:
            if isinstance(item, FileSlice):
                os.close(item.fd)
        self._items.clear()
        self.pending = 0
