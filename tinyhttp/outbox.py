"""Bytes and file slices waiting to go out, sent as fast as the client takes them.

The outbox owns every file descriptor queued in it: it closes each file once its last slice
is sent, or when the connection closes. It also knows where each answer ends in the stream
of bytes, so an answer is logged when its last byte reaches the kernel, with what was sent.
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING

from .log import Exchange, Ledger, Trace
from .message import FileSlice

if TYPE_CHECKING:
    from .tls import TLSStream

__all__ = ["FileShrank", "Outbox"]

# Stop taking new requests while this much answer waits to go out: a client that
# pipelines without reading must not make us buffer without bound.
HIGH_WATER = 256 * 1024
# Nor while this many files are open for it, or this many answers wait: each queued file
# is a descriptor, and descriptors are what a few hostile connections could exhaust.
MAX_FILES = 2
MAX_ANSWERS = 64
# Bytes per os.sendfile() call: nginx's sendfile_max_chunk default. Fewer calls per file,
# and one call still returns within about a millisecond on loopback.
SENDFILE_CHUNK = 2 * 1024 * 1024
# The read+send fallback holds this much of the file in memory per call.
READ_CHUNK = 256 * 1024
# At most this much goes to one client per loop turn; then the others get their turn (a fast
# reader on loopback may never fill its socket, and would otherwise keep the loop to itself).
TURN_BYTES = 8 * 1024 * 1024
# Byte strings handed to one sendmsg() at most (Linux's IOV_MAX is 1,024).
GATHER = 64


class FileShrank(OSError):
    """The file ended before the bytes its Content-Length promised (it was truncated)."""


class Outbox:
    """A queue of bytes and file slices; `flush()` sends what the socket will take now."""

    __slots__ = ("_files", "_items", "answers", "gather", "queued", "sendfile", "sent", "trace")

    def __init__(
        self, sendfile: bool = True, trace: Trace | None = None, gather: bool = True
    ) -> None:
        # A list, not a deque: it rarely holds more than a head and a file, and an empty
        # deque costs 600 bytes, which 10,000 idle connections would each pay.
        self._items: list[bytes | memoryview | FileSlice] = []
        self.answers = Ledger()  # the answers queued, for the log once each is all sent
        self._files = 0  # descriptors held by the queued slices
        self.queued = 0  # bytes ever queued on this connection
        self.sent = 0  # bytes ever taken by the kernel
        self.sendfile = sendfile
        self.gather = gather  # whether sock.sendmsg() can send several buffers at once
        self.trace = trace

    def __bool__(self) -> bool:
        return bool(self._items)

    def full(self) -> bool:
        """Whether to stop taking requests until the client has read some answers."""
        return (
            self.queued - self.sent >= HIGH_WATER
            or self._files >= MAX_FILES
            or len(self.answers) >= MAX_ANSWERS
        )

    def write(self, data: bytes) -> None:
        """Queue bytes, as they are: no copy (one sendmsg() carries a head and its body)."""
        if data:
            self._items.append(data)
            self.queued += len(data)

    def add_file(self, piece: FileSlice) -> None:
        """Queue a file slice; its last slice closes the file once sent."""
        self._items.append(piece)
        self._files += piece.last
        self.queued += piece.length

    def flush(self, sock: socket.socket | TLSStream) -> int:
        """Send until the queue is empty or the socket is full; return the bytes sent.

        Raises OSError when the client is gone, FileShrank when a file came up short.
        """
        sent = 0
        while self._items and sent < TURN_BYTES:
            item = self._items[0]
            try:
                if isinstance(item, FileSlice):
                    n = self._send_file(sock, item)
                else:
                    n = self._send_bytes(sock)
            except BlockingIOError:
                break  # the socket buffer is full: wait for the next writable event
            sent += n
            self.sent += n
        return sent

    def _send_bytes(self, sock: socket.socket | TLSStream) -> int:
        """Send the byte strings at the head of the queue in one system call."""
        run: list[bytes | memoryview] = []
        for item in self._items[:GATHER]:
            if isinstance(item, FileSlice):
                break
            run.append(item)
        if len(run) == 1:
            n = sock.send(run[0])
        elif self.gather:
            n = sock.sendmsg(run)  # scatter-gather: the kernel reads each buffer in place
        else:
            n = sock.send(b"".join(run))
        if self.trace:
            what = f"{sum(map(len, run))} bytes"
            call = f"send({what})" if len(run) == 1 else f"sendmsg({len(run)} buffers, {what})"
            self.trace.say(f"{call} -> {n} taken by the kernel")
        taken = 0  # drop what the kernel took: whole strings, then the start of one
        while taken < len(run) and len(run[taken]) <= n:
            n -= len(run[taken])
            taken += 1
        del self._items[:taken]
        if n:
            self._items[0] = memoryview(run[taken])[n:]
        return sum(map(len, run[:taken])) + n

    def _send_file(self, sock: socket.socket | TLSStream, piece: FileSlice) -> int:
        if self.sendfile:
            count = min(piece.length, SENDFILE_CHUNK)
            # Zero-copy: the kernel moves file pages to the socket. (socket.sendfile()
            # cannot be used: it refuses non-blocking sockets.)
            n = os.sendfile(sock.fileno(), piece.fd, piece.offset, count)
        else:
            count = min(piece.length, READ_CHUNK)
            os.lseek(piece.fd, piece.offset, os.SEEK_SET)  # portable, unlike os.pread
            data = os.read(piece.fd, count)  # short only at the file's end: it shrank
            # A TLS stream must be given again the bytes it holds (tls.py): stop here.
            shrank = len(data) < count and not isinstance(sock, socket.socket)
            n = 0 if shrank else sock.send(data)
        if self.trace:
            how = "sendfile" if self.sendfile else "read+send"
            self.trace.say(f"{how}({count} bytes from offset {piece.offset}) -> {n} taken")
        if n == 0:
            raise FileShrank(f"file ended {piece.length} bytes early")
        if n < piece.length:
            self._items[0] = FileSlice(piece.fd, piece.offset + n, piece.length - n, piece.last)
        else:
            del self._items[0]
            self._release(piece)
        return n

    def _release(self, piece: FileSlice) -> None:
        if piece.last:
            os.close(piece.fd)
            self._files -= 1

    def close(self) -> list[Exchange]:
        """Drop everything queued, close the files it held, and return the answers that
        were cut short."""
        for item in self._items:
            if isinstance(item, FileSlice):
                self._release(item)
        self._items.clear()
        self.queued = self.sent  # nothing pending any more
        return self.answers.take(Ledger.NEVER)
