"""--reload over real sockets: injected pages as their own representation, an event stream that
hears a change within a second, heartbeats, drain, and nothing at all without the flag."""

from __future__ import annotations

import contextlib
import gzip
import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from tinyhttp import reload
from tinyhttp.files import etag

from .conftest import INDEX, TIMEOUT, Reader, Running, wait_until

STREAM = b"GET /.well-known/tinyhttp/reload HTTP/1.1\r\nHost: localhost\r\n\r\n"


def get(
    server: Running, target: str, *headers: str, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    with server.connect() as sock:
        extra = "".join(f"{h}\r\n" for h in headers)
        sock.sendall(f"{method} {target} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n".encode())
        answer = Reader(sock).response(head_only=method == "HEAD")
    return answer.status, answer.headers, answer.body


def file_etag(path: Path) -> str:
    info = path.stat()
    return etag(info.st_size, info.st_mtime_ns, None)


class Stream:
    """A client of the event stream: reads chunks until an event (or a comment) shows up."""

    def __init__(self, server: Running) -> None:
        self.sock = server.connect()
        self.sock.sendall(STREAM)
        self.seen = b""
        self.until(b"retry: ")

    def until(self, wanted: bytes, timeout: float = TIMEOUT) -> float:
        """Read until `wanted` arrives; the seconds it took."""
        self.sock.settimeout(timeout)
        start = os.times().elapsed
        while wanted not in self.seen:
            chunk = self.sock.recv(4096)
            assert chunk, f"the stream ended before {wanted!r}: {self.seen!r}"
            self.seen += chunk
        self.seen = self.seen[self.seen.index(wanted) + len(wanted) :]
        return os.times().elapsed - start

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def reloading(serve: Callable[..., Running]) -> Running:
    return serve(reload=True, cache_settle_seconds=0)


def test_without_reload_nothing_is_injected_and_the_stream_is_404(server: Running) -> None:
    status, headers, body = get(server, "/")
    assert (status, body) == (200, INDEX)
    assert headers["etag"] == file_etag(Path(server.server.config.root) / "index.html")
    assert get(server, reload.PATH)[0] == 404


def test_a_page_is_its_own_representation(reloading: Running, site: Path) -> None:
    status, headers, body = get(reloading, "/")
    assert status == 200
    assert body == reload.inject(INDEX)
    assert int(headers["content-length"]) == len(body)
    plain = file_etag(site / "index.html")
    assert headers["etag"] == reload.injected_etag(plain) != plain
    assert "accept-ranges" not in headers
    # Its own tag revalidates it; the file's own tag does not.
    assert get(reloading, "/", f"If-None-Match: {headers['etag']}")[0] == 304
    assert get(reloading, "/", f"If-None-Match: {plain}")[0] == 200
    head = get(reloading, "/", method="HEAD")
    assert (head[0], head[1]["content-length"], head[2]) == (200, str(len(body)), b"")


def test_a_range_of_a_page_gets_the_whole_page(reloading: Running) -> None:
    status, headers, body = get(reloading, "/index.html", "Range: bytes=0-9")
    assert (status, body) == (200, reload.inject(INDEX))
    assert "content-range" not in headers
    # Other files keep their ranges.
    assert get(reloading, "/hello.txt", "Range: bytes=0-4")[:3:2] == (206, b"hello")


def test_a_compressed_sibling_is_not_served_for_a_page(reloading: Running, site: Path) -> None:
    (site / "index.html.gz").write_bytes(gzip.compress(INDEX))
    status, headers, body = get(reloading, "/", "Accept-Encoding: gzip")
    assert (status, body) == (200, reload.inject(INDEX))
    assert "content-encoding" not in headers


def test_a_large_page_is_injected_whole(reloading: Running, site: Path) -> None:
    page = b"<!doctype html><body>" + b"<p>lots</p>\n" * 20_000 + b"</body></html>\n"
    (site / "large.html").write_bytes(page)  # beyond the small-file size: a file slice
    status, headers, body = get(reloading, "/large.html")
    assert (status, body) == (200, reload.inject(page))
    assert int(headers["content-length"]) == len(body)


def test_a_404_page_gets_the_script_too(reloading: Running) -> None:
    status, _, body = get(reloading, "/missing.html")
    assert status == 404 and reload.SCRIPT.encode() in body


def test_a_stream_hears_a_change_within_a_second(reloading: Running, site: Path) -> None:
    stream = Stream(reloading)
    try:
        (site / "sub" / "new.html").write_bytes(b"<p>new</p>")
        assert stream.until(b"event: reload\n", timeout=1.0) < 1.0
        (site / "style.css").write_bytes(b"body { color: red; }\n")
        assert stream.until(b"event: css\n", timeout=1.0) < 1.0
        (site / "hello.txt").unlink()
        assert stream.until(b"event: reload\n", timeout=1.0) < 1.0
    finally:
        stream.close()


def test_every_stream_hears_it(reloading: Running, site: Path) -> None:
    streams = [Stream(reloading) for _ in range(5)]
    try:
        (site / "index.html").write_bytes(b"<p>changed</p>")
        for stream in streams:
            stream.until(b"event: reload\n", timeout=2.0)
    finally:
        for stream in streams:
            stream.close()


def test_a_quiet_stream_sends_heartbeats_and_outlives_the_idle_timeout(
    serve: Callable[..., Running],
) -> None:
    server = serve(reload=True, heartbeat_seconds=0.3, idle_timeout=0.2)
    stream = Stream(server)
    try:
        for _ in range(3):
            assert stream.until(reload.HEARTBEAT, timeout=2.0) < 2.0
    finally:
        stream.close()


def test_streams_are_never_evicted_at_the_connection_limit(serve: Callable[..., Running]) -> None:
    server = serve(reload=True, max_connections=4, evict_after=0.0)
    streams = [Stream(server) for _ in range(2)]
    idle = [server.connect() for _ in range(2)]
    try:
        for sock in idle:  # kept alive after one answer: idle, so a place to give up
            sock.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert Reader(sock).response().status == 200
        for _ in range(2):  # each newcomer takes an idle connection's place, not a stream's
            assert get(server, "/hello.txt")[0] == 200
        server.server.stop()  # the streams were still open: the drain ends each of them
        for stream in streams:
            stream.until(b"0\r\n\r\n")
    finally:
        for stream in streams:
            stream.close()
        for sock in idle:
            sock.close()


def test_streams_may_hold_half_the_places(serve: Callable[..., Running]) -> None:
    # Never evicted, so without a cap a few clients could fill every place with streams
    # and shut everyone else out.
    server = serve(reload=True, max_connections=4)
    streams = [Stream(server) for _ in range(2)]
    try:
        assert get(server, reload.PATH)[0] == 503
        assert get(server, "/hello.txt")[0] == 200
        streams.pop().close()  # a tab closes: its stream's place is free again
        assert wait_until(lambda: len(server.server.clients) == 1)
        streams.append(Stream(server))
    finally:
        for stream in streams:
            stream.close()


def test_a_drain_ends_the_stream(serve: Callable[..., Running]) -> None:
    server = serve(reload=True)
    stream = Stream(server)
    try:
        server.server.stop()
        stream.until(b"0\r\n\r\n")  # the chunked body's last chunk: the answer ended
        stream.sock.settimeout(TIMEOUT)
        assert stream.sock.recv(1) == b""
    finally:
        stream.close()
    assert wait_until(lambda: not server.thread.is_alive())


def test_bytes_sent_over_a_stream_close_it_and_are_not_kept(reloading: Running) -> None:
    # h11 would buffer them without bound behind an answer that never ends.
    stream = Stream(reloading)
    try:
        assert wait_until(lambda: len(reloading.server.clients) == 1)
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            for _ in range(64):
                stream.sock.sendall(b"X" * 65536)
        assert wait_until(lambda: not reloading.server.clients)
    finally:
        stream.close()


def test_a_byte_behind_the_stream_request_then_a_hang_up_frees_the_place(
    reloading: Running,
) -> None:
    # The stray byte sits in h11's buffer, so h11 never reports the close itself: the
    # connection used to stay open, its socket readable at EOF on every turn of the loop.
    with reloading.connect() as sock:
        sock.sendall(STREAM + b"X")
        seen = b""
        while b"retry: " not in seen:  # the stream has begun
            chunk = sock.recv(4096)
            assert chunk, seen
            seen += chunk
    assert wait_until(lambda: not reloading.server.clients)


@pytest.mark.parametrize(
    "extra",
    [b"Content-Length: 4\r\n", b"Transfer-Encoding: chunked\r\n"],
    ids=["content-length", "chunked"],
)
def test_a_stream_asked_for_with_a_body_is_400(reloading: Running, extra: bytes) -> None:
    # Any byte from a stream's client ends the stream, so a body (even one arriving later)
    # cannot go with one.
    with reloading.connect() as sock:
        sock.sendall(STREAM.replace(b"\r\n\r\n", b"\r\n" + extra + b"\r\n"))
        response = Reader(sock).response()
    assert (response.status, response.headers["connection"]) == (400, "close")


def test_a_stream_asked_for_while_stopping_ends_at_once(serve: Callable[..., Running]) -> None:
    server = serve(reload=True, drain_timeout=30.0)
    with server.connect() as sock:
        sock.sendall(STREAM[:20])  # a request under way: the stop waits for it
        assert wait_until(lambda: len(server.server.clients) == 1)
        server.server.stop()
        sock.sendall(STREAM[20:])
        seen = b""
        while not seen.endswith(b"0\r\n\r\n"):  # the chunked body's last chunk
            chunk = sock.recv(4096)
            assert chunk, seen
            seen += chunk
    # 200, with or without Connection: close: the loop may take the rest of the request
    # before it takes the stop. Either way the stream ends at once.
    assert seen.startswith(b"HTTP/1.1 200 OK\r\n")
    assert wait_until(lambda: not server.thread.is_alive())  # long before the 30 s drain


def test_a_byte_behind_a_closing_stream_request_does_not_pin_it(
    serve: Callable[..., Running],
) -> None:
    # h11 refuses a byte after a request that said close; that refusal used to leave the
    # stream deaf to its client's hang-up, and to the drain.
    server = serve(reload=True, drain_timeout=30.0)
    with server.connect() as sock:
        sock.sendall(STREAM.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n") + b"X")
        assert Reader(sock).response().status == 200  # the stream, ended at once
    assert wait_until(lambda: not server.server.clients)


def test_a_stream_behind_a_download_ends_when_the_server_stops(
    serve: Callable[..., Running],
) -> None:
    server = serve(reload=True, drain_timeout=30.0)
    hello = b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n"
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the download stays in flight
        sock.settimeout(TIMEOUT)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n" + STREAM + hello)
        reader = Reader(sock)
        assert reader._fill() and reader.buffer.startswith(b"HTTP/1.1 200 OK")
        server.server.stop()
        assert wait_until(lambda: server.server.shared.stopping)  # draining, before we read
        assert reader.response().status == 200  # the rest of the download
        stream = reader.response()  # the stream: its last chunk, and the end
        assert (stream.status, stream.headers["connection"]) == (200, "close")
    assert wait_until(lambda: not server.thread.is_alive())  # long before the 30 s drain


def test_with_one_place_a_stream_is_refused_rather_than_hold_it(
    serve: Callable[..., Running],
) -> None:
    # A stream that held the only place would keep the page it reloads from ever loading.
    server = serve(reload=True, max_connections=1)
    assert get(server, reload.PATH)[0] == 503
    assert get(server, "/hello.txt")[0] == 200


def test_a_closed_tab_frees_its_connection(reloading: Running) -> None:
    stream = Stream(reloading)
    assert wait_until(lambda: len(reloading.server.clients) == 1)
    stream.sock.shutdown(socket.SHUT_RDWR)
    stream.close()
    assert wait_until(lambda: not reloading.server.clients)
