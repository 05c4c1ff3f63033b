"""One Connection driven over a socket.socketpair(), with no server and no selector: the test
plays the loop, calling on_readable / on_writable / on_timeout itself with the time it
chooses. Requests go in whole, a byte at a time and pipelined; answers back up; deadlines move.
"""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tinyhttp.app import App
from tinyhttp.config import Config
from tinyhttp.connection import Connection, Phase, Shared, Wait
from tinyhttp.httpdate import DateClock
from tinyhttp.log import AccessLog
from tinyhttp.outbox import MAX_FILES
from tinyhttp.wire import Heads

from .conftest import BIG_SIZE, TIMEOUT, Reader, Response

HELLO = b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n"
BIG = b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n"
T0 = 1000.0  # the time the connection is accepted, in the tests' own clock


class Pair:
    """A Connection on one end of a socket pair, a client on the other."""

    def __init__(self, site: Path, **overrides: object) -> None:
        self.config = Config(root=site, cache_settle_seconds=0, **overrides)  # type: ignore[arg-type]
        self.log = io.StringIO()
        access = AccessLog(self.log)
        shared = Shared(self.config, access, Heads(DateClock()), App(self.config).respond)
        self.server_end, self.client = socket.socketpair()
        self.server_end.setblocking(False)
        self.client.settimeout(TIMEOUT)
        self.conn = Connection(self.server_end, "test", shared, T0, None)
        self.reader = Reader(self.client)

    def send(self, data: bytes, now: float = T0) -> None:
        """The client sends; the connection reads everything that arrived."""
        self.client.sendall(data)
        self.readable(now)

    def readable(self, now: float = T0) -> None:
        while True:
            before = self.conn.incoming.fed, self.conn.phase
            self.conn.on_readable(now)
            if (self.conn.incoming.fed, self.conn.phase) == before or not self.conn.wants_read:
                return

    def response(self, now: float = T0, head_only: bool = False) -> Response:
        """The next response, letting the connection write whenever the client has read."""
        self.client.setblocking(False)
        try:
            while b"\r\n\r\n" not in self.reader.buffer or not self._whole(head_only):
                self.conn.on_writable(now)
                try:
                    self.reader.buffer += self.client.recv(1 << 20)
                except BlockingIOError:
                    if not self.conn.wants_write:
                        break
        finally:
            self.client.settimeout(TIMEOUT)
        return self.reader.response(head_only)

    def _whole(self, head_only: bool) -> bool:
        head, _, body = bytes(self.reader.buffer).partition(b"\r\n\r\n")
        if head_only:
            return True
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                return len(body) >= int(line.split(b":")[1])
        return True

    def close(self) -> None:
        self.conn.close()
        self.server_end.close()
        self.client.close()


@pytest.fixture
def pair(site: Path) -> Iterator[Pair]:
    made = Pair(site)
    yield made
    made.close()


def test_a_request_whole(pair: Pair) -> None:
    pair.send(HELLO)
    response = pair.response()
    assert (response.status, response.body) == (200, b"hello, world\n")
    assert pair.conn.phase is Phase.OPEN and pair.conn.waiting is Wait.IDLE


def test_a_request_a_byte_at_a_time(pair: Pair) -> None:
    for i, byte in enumerate(HELLO):
        pair.send(bytes([byte]), now=T0 + i * 0.001)
        assert pair.conn.outbox.queued == 0 or i == len(HELLO) - 1
    assert pair.response().body == b"hello, world\n"


def test_pipelined_requests_are_answered_in_order(pair: Pair) -> None:
    pair.send(HELLO + BIG + HELLO)
    assert pair.response().body == b"hello, world\n"
    assert len(pair.response().body) == BIG_SIZE
    assert pair.response().body == b"hello, world\n"


def test_answers_back_up_and_reading_stops(pair: Pair) -> None:
    # The client asks for the big file again and again and does not read: the connection
    # stops taking requests (and reading) while it holds MAX_FILES files for it.
    pair.send(BIG * 20)
    assert pair.conn.outbox.full() and not pair.conn.wants_read
    assert pair.conn.outbox._files <= MAX_FILES
    answered = 0
    while answered < 20:
        assert len(pair.response().body) == BIG_SIZE
        answered += 1
        pair.readable()  # what the loop does once the socket is readable again
    assert not pair.conn.outbox and pair.conn.wants_read


def test_deadlines_follow_the_request(pair: Pair) -> None:
    conn, config = pair.conn, pair.config
    assert (conn.waiting, conn.deadline) == (Wait.HEAD, T0 + config.head_timeout)
    pair.send(b"GET /hello.txt HTTP/1.1\r\n", now=T0 + 2)  # the first byte starts the clock
    assert (conn.waiting, conn.deadline) == (Wait.HEAD, T0 + 2 + config.head_timeout)
    pair.send(b"Host: localhost\r\n", now=T0 + 3)  # trickling buys nothing
    assert conn.deadline == T0 + 2 + config.head_timeout
    pair.send(b"\r\n", now=T0 + 4)  # answered and all sent: kept alive
    assert (conn.waiting, conn.deadline) == (Wait.IDLE, T0 + 4 + config.idle_timeout)
    assert pair.response().status == 200


def test_a_stalled_head_gets_408_and_a_close(pair: Pair) -> None:
    pair.send(b"GET /hello.txt HTTP/1.1\r\nHost: loc", now=T0 + 1)
    pair.conn.on_timeout(T0 + 1 + pair.config.head_timeout)
    response = pair.response()
    assert response.status == 408 and response.headers["connection"] == "close"
    assert pair.conn.phase is Phase.LINGERING


def test_a_silent_connection_is_closed_without_an_answer(pair: Pair) -> None:
    pair.conn.on_timeout(T0 + pair.config.head_timeout)
    assert pair.conn.phase is Phase.CLOSED
    assert pair.conn.outbox.queued == 0  # not a byte was written: no 408 for nobody


def test_an_idle_connection_times_out(pair: Pair) -> None:
    pair.send(HELLO, now=T0)
    pair.response()
    pair.conn.on_timeout(pair.conn.deadline)
    assert pair.conn.phase is Phase.CLOSED


def test_a_reader_that_stops_is_cut_and_logged_as_cut(pair: Pair) -> None:
    pair.send(BIG)
    assert pair.conn.waiting is Wait.SEND and pair.conn.outbox
    pair.conn.on_timeout(pair.conn.deadline)
    assert pair.conn.phase is Phase.CLOSED
    pair.conn.shared.log.flush()
    line = pair.log.getvalue().splitlines()[-1]
    assert '"GET /big.bin HTTP/1.1" 200 ' in line and line.endswith("cut:send-timeout")
    sent = int(line.split('" 200 ')[1].split()[0])
    assert 0 < sent < BIG_SIZE


@pytest.mark.parametrize("piece", [None, 1000, 7])
def test_the_head_limit_counts_raw_bytes_however_they_arrive(pair: Pair, piece: int | None) -> None:
    # 30,000 spaces inside a header value: h11 strips them, the limit must not.
    head = b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nX-Pad: a" + b" " * 30_000 + b"b\r\n\r\n"
    size = piece or len(head)
    for start in range(0, len(head), size):
        pair.send(head[start : start + size])
        if pair.conn.phase is not Phase.OPEN:
            break
    assert pair.response().status == 431


def test_a_refused_request_lingers_then_closes(pair: Pair) -> None:
    pair.send(b"GET / HTTP/2.0\r\nHost: localhost\r\n\r\n")
    assert pair.response().status == 505
    assert pair.conn.phase is Phase.LINGERING and pair.conn.waiting is Wait.LINGER
    pair.client.shutdown(socket.SHUT_WR)
    pair.readable()
    assert pair.conn.phase is Phase.CLOSED
