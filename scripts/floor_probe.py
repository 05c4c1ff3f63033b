"""A measuring stick, not a server: the least a selectors loop and h11 do per GET (for bench.py)."""

# python scripts/floor_probe.py FOLDER [--port N]
#
# It reads the small files of FOLDER into memory and answers every GET for one of them with a
# cached h11.Response carrying the nine headers tinyhttp sends. Per request it does what a
# tinyhttp cache hit cannot avoid: one os.stat() (is the file unchanged?), two os.access()
# (has a .br or .gz sibling appeared?) and one send() of head and body. Keep-alive, and
# nothing else: no ranges, no conditionals, no log, no limits, no timeouts. Anything
# unexpected (an unknown path, a method other than GET, a protocol error) closes the
# connection. Never serve anything with it: it exists to show how far tinyhttp is from what
# h11 itself costs.

from __future__ import annotations

import argparse
import contextlib
import mimetypes
import os
import selectors
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import h11

HOST = "127.0.0.1"
SERVER = "floor-probe/1"
LARGEST = 1024 * 1024  # bigger files are not read, so not served
BACKLOG = 4096  # wrk -c1000 connects all at once
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(timestamp: float) -> str:
    """An IMF-fixdate (RFC 9110 §5.6.7)."""
    t = time.gmtime(timestamp)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


@dataclass(frozen=True)
class File:
    """One file held in memory, and its headers after Date, Server and nosniff."""

    path: str
    body: bytes
    fields: tuple[tuple[str, str], ...]


def read_files(root: Path) -> dict[bytes, File]:
    """Every regular file of `root` up to LARGEST bytes, by request target (`/name`)."""
    files = {}
    for path in sorted(root.iterdir()):
        info = path.stat()
        if path.is_file() and info.st_size <= LARGEST:
            kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            fields = (
                ("Content-Type", kind),
                ("Content-Length", str(info.st_size)),
                ("Last-Modified", http_date(info.st_mtime)),
                ("ETag", f'"{info.st_size:x}-{info.st_mtime_ns:x}"'),
                ("Accept-Ranges", "bytes"),
                ("Cache-Control", "no-cache"),
            )
            files[f"/{path.name}".encode()] = File(str(path), path.read_bytes(), fields)
    return files


class Heads:
    """Each file's h11.Response, built once a second (when the Date changes)."""

    def __init__(self, files: dict[bytes, File]) -> None:
        self.files = files
        self.second = -1
        self.made: dict[bytes, h11.Response] = {}

    def response(self, target: bytes) -> h11.Response:
        second = int(time.time())
        if second != self.second:
            self.second, date = second, http_date(second)
            first = (("Date", date), ("Server", SERVER), ("X-Content-Type-Options", "nosniff"))
            self.made = {
                name: h11.Response(status_code=200, headers=[*first, *file.fields], reason=b"OK")
                for name, file in self.files.items()
            }
        return self.made[target]


class Client:
    """One connection: its h11 state and the bytes the kernel has not taken yet."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.h11 = h11.Connection(h11.SERVER)
        self.pending = b""


class Probe:
    """The loop: accept, read, answer; a connection that does anything else is closed."""

    def __init__(self, listener: socket.socket, files: dict[bytes, File]) -> None:
        self.listener = listener
        self.files = files
        self.heads = Heads(files)
        self.selector = selectors.DefaultSelector()
        self.selector.register(listener, selectors.EVENT_READ, None)

    def run(self) -> None:
        while True:
            for key, events in self.selector.select():
                if key.data is None:
                    self.accept()
                elif events & selectors.EVENT_WRITE:
                    self.flush(key.data)
                else:
                    self.read(key.data)

    def accept(self) -> None:
        """Every connection waiting: one per turn would leave a burst's last one waiting
        for dozens of turns of answers (wrk opens all of its connections at once)."""
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return  # BlockingIOError: none left
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.selector.register(sock, selectors.EVENT_READ, Client(sock))

    def read(self, client: Client) -> None:
        try:
            data = client.sock.recv(65536)
            client.h11.receive_data(data)
            self.answer(client)
        except (OSError, h11.ProtocolError, KeyError):
            self.close(client)

    def answer(self, client: Client) -> None:
        """Answer each whole request that has arrived, then wait for more or close."""
        while True:
            event = client.h11.next_event()
            if isinstance(event, h11.Request) and event.method == b"GET":
                self.send(client, event.target)
            elif event is h11.NEED_DATA or event is h11.PAUSED:
                break
            elif not isinstance(event, h11.EndOfMessage):
                raise KeyError(event)  # ConnectionClosed, another method: close
            if client.h11.our_state is h11.DONE and client.h11.their_state is h11.DONE:
                client.h11.start_next_cycle()
        if client.h11.our_state is h11.MUST_CLOSE and not client.pending:
            self.close(client)

    def send(self, client: Client, target: bytes) -> None:
        file = self.files[target]
        os.stat(file.path)
        os.access(file.path + ".br", os.F_OK)
        os.access(file.path + ".gz", os.F_OK)
        conn = client.h11
        head = conn.send(self.heads.response(target)) or b""
        wire = head + (conn.send(h11.Data(data=file.body)) or b"")
        self.write(client, wire + (conn.send(h11.EndOfMessage()) or b""))

    def write(self, client: Client, wire: bytes) -> None:
        if client.pending:  # a pipelined request while the last answer waits: queue it
            client.pending += wire
            return
        sent = client.sock.send(wire)
        if sent < len(wire):
            client.pending = wire[sent:]
            self.selector.modify(client.sock, selectors.EVENT_WRITE, client)

    def flush(self, client: Client) -> None:
        try:
            sent = client.sock.send(client.pending)
        except OSError:
            self.close(client)
            return
        client.pending = client.pending[sent:]
        if not client.pending:
            if client.h11.our_state is h11.MUST_CLOSE:
                self.close(client)
            else:
                self.selector.modify(client.sock, selectors.EVENT_READ, client)

    def close(self, client: Client) -> None:
        self.selector.unregister(client.sock)
        client.sock.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("folder", type=Path, help="the folder whose small files are served")
    p.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any free one)")
    args = p.parse_args(argv)
    files = read_files(args.folder)
    listener = socket.create_server((HOST, args.port), backlog=BACKLOG)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    print(f"floor probe at http://{HOST}:{port}/ ({len(files)} files)", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        Probe(listener, files).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
