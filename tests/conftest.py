"""Shared fixtures: a small site on disk, servers run in threads, and a raw HTTP reader."""

from __future__ import annotations

import io
import random
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tinyhttp.app import App
from tinyhttp.cache import FileCache
from tinyhttp.config import Config
from tinyhttp.log import AccessLog
from tinyhttp.message import Reply, Request
from tinyhttp.server import Server

TIMEOUT = 5.0  # every socket call in the tests gives up after this long

# A shell starts a background job (`pytest &`) with SIGINT ignored, and every child inherits
# that: a program the tests stop with Ctrl-C's signal would then never see it. A handler of
# our own is reset to the default at exec(), so children start with Ctrl-C working.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def respond(request: Request, config: Config, cache: FileCache | None = None) -> Reply:
    """The app's whole answer to one request: no socket, no h11, no server."""
    return App(config, cache).respond(request)


def host_allowed(request: Request, config: Config) -> bool:
    """Whether the Host check lets this request through."""
    from tinyhttp.checks import host_refusal

    return host_refusal(request, config) is None


INDEX = b"<!doctype html><title>home</title><p>Hello from the test site.</p>\n"
BIG_SIZE = 3 * 1024 * 1024 + 17  # over the small-file size, so it goes out by sendfile


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A small site: an index, a text file, a big binary file and two subfolders."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.html").write_bytes(INDEX)
    (root / "hello.txt").write_bytes(b"hello, world\n")
    (root / "style.css").write_bytes(b"body { color: black; }\n")
    (root / "big.bin").write_bytes(random.Random(7).randbytes(BIG_SIZE))
    (root / "sub").mkdir()
    (root / "sub" / "index.html").write_bytes(b"<p>sub</p>\n")
    (root / "empty").mkdir()
    (tmp_path / "canary.txt").write_bytes(b"CANARY-OUTSIDE-THE-ROOT\n")
    return root


@dataclass
class Running:
    """A server running in a thread, and what it logged."""

    server: Server
    thread: threading.Thread
    log: io.StringIO

    @property
    def port(self) -> int:
        return self.server.config.port

    @property
    def url(self) -> str:
        return self.server.url

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT)
        sock.settimeout(TIMEOUT)
        return sock


@contextmanager
def servers(site: Path, tls: ssl.SSLContext | None = None) -> Iterator[Callable[..., Running]]:
    """Start servers in threads on 127.0.0.1, port 0 (over TLS with a `tls` context); stop
    them on the way out and check that their logs hold no traceback."""
    running: list[Running] = []

    def start(**overrides: Any) -> Running:
        options: dict[str, Any] = {"root": site, "port": 0}
        options.update(overrides)
        log = io.StringIO()
        server = Server(Config(**options), AccessLog(log), tls=tls)
        thread = threading.Thread(target=server.serve, daemon=True)
        thread.start()
        running.append(Running(server, thread, log))
        return running[-1]

    yield start
    for run in running:
        run.server.stop()
        run.thread.join(TIMEOUT + 5)
        assert not run.thread.is_alive(), "the server did not stop"
        assert "Traceback" not in run.log.getvalue(), run.log.getvalue()


@pytest.fixture
def serve(site: Path) -> Iterator[Callable[..., Running]]:
    """Start servers on 127.0.0.1, port 0; stop them and check their logs afterwards."""
    with servers(site) as start:
        yield start


@pytest.fixture
def server(serve: Callable[..., Running]) -> Running:
    """A server with the default configuration."""
    return serve()


@dataclass
class Response:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes
    raw_head: bytes = b""


@dataclass
class Reader:
    """Reads whole HTTP responses from a socket, one after another (pipelining)."""

    sock: socket.socket
    buffer: bytearray = field(default_factory=bytearray)

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buffer += data
        return bool(data)

    def response(self, head_only: bool = False) -> Response:
        """The next response; `head_only` for answers to HEAD (no body follows)."""
        while b"\r\n\r\n" not in self.buffer:
            if not self._fill():
                raise EOFError(f"connection closed mid-head: {bytes(self.buffer)!r}")
        head, _, rest = bytes(self.buffer).partition(b"\r\n\r\n")
        self.buffer = bytearray(rest)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        _, status, reason = status_line.split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            assert name.lower() not in headers, f"repeated header {name}"
            headers[name.lower()] = value.strip()
        length = 0 if head_only else int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            if not self._fill():
                raise EOFError("connection closed mid-body")
        body = bytes(self.buffer[:length])
        del self.buffer[:length]
        return Response(int(status), reason, headers, body, head)

    def closed(self) -> bool:
        """Whether the server closes the connection (EOF) with nothing more sent."""
        try:
            while self._fill():
                pass
        except ConnectionResetError:
            pass
        return not self.buffer


def send_in_pieces(sock: socket.socket, data: bytes, sizes: Iterator[int] | None) -> None:
    """Send `data` whole (sizes None) or cut into pieces of the given sizes."""
    if sizes is None:
        sock.sendall(data)
        return
    view = memoryview(data)
    while view:
        size = max(1, next(sizes))
        sock.sendall(view[:size])
        view = view[size:]


def wait_until(condition: Callable[[], bool], timeout: float = TIMEOUT) -> bool:
    """Poll `condition` until it holds or the deadline passes (never a bare sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()
