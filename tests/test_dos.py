"""Denial of service from outside: what a few connections could pin or burn, each over real
sockets against a tinyhttp process, with the server's descriptors and CPU read from /proc.

Each test is the reproducer of an attack that once worked: descriptors pinned by pipelined
range requests, CPU burnt by deep targets and huge listings, a head limit that depended on how
the bytes were split, and a burst of connections at the connection limit.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import selectors
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tinyhttp.config import Config
from tinyhttp.log import AccessLog
from tinyhttp.server import Server

from .conftest import TIMEOUT, Reader, send_in_pieces, wait_until
from .support import Process, running
from .test_limits import (
    HELLO,
    PROMPT,
    connect,
    enough_descriptors,  # noqa: F401  (an autouse fixture: used by pytest)
    get_hello,
)

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads the server's descriptors from /proc"
)


@contextlib.contextmanager
def start(site: Path, *flags: str) -> Iterator[tuple[Process, int]]:
    """tinyhttp as its own process (its descriptors and CPU are then its own)."""
    with running("-m", "tinyhttp", str(site), "--port", "0", "-q", *flags) as process:
        line = process.next_line()
        found = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert found, line
        yield process, int(found[1])


def descriptors(process: Process) -> int:
    return len(os.listdir(f"/proc/{process.popen.pid}/fd"))


def cpu_seconds(process: Process) -> float:
    """utime + stime of the process, from /proc/PID/stat."""
    fields = Path(f"/proc/{process.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def push(sock: socket.socket, data: bytes) -> int:
    """Send as much of `data` as the connection takes without blocking."""
    sock.setblocking(False)
    sent = 0
    with contextlib.suppress(BlockingIOError):
        while sent < len(data):
            sent += sock.send(data[sent : sent + 65536])
    return sent


# --- descriptors ---------------------------------------------------------------------------


def test_pipelined_range_requests_pin_a_few_descriptors(site: Path) -> None:
    # Sixteen one-byte ranges of a small file, three thousand times on each of three
    # connections that never read: each queued answer used to hold a descriptor per part.
    ranges = ",".join(f"{n}-{n}" for n in range(0, 32, 2))
    request = f"GET /index.html HTTP/1.1\r\nHost: localhost\r\nRange: bytes={ranges}\r\n\r\n"
    with start(site) as (server, port):
        before = descriptors(server)
        socks = [connect(port, rcvbuf=4096) for _ in range(3)]
        for sock in socks:
            assert push(sock, request.encode() * 3000) > 0
        most = 0
        watch_until = time.monotonic() + 1.5  # a window to watch, not a wait for an event
        while time.monotonic() < watch_until:
            most = max(most, descriptors(server))
        assert most <= before + 3 * 4, f"{most - before} descriptors for 3 connections"
        assert max(get_hello(port) for _ in range(50)) < PROMPT
        for sock in socks:
            sock.close()


# --- CPU per request -----------------------------------------------------------------------


def test_a_deep_target_is_refused_cheaply(site: Path) -> None:
    # 7,900 segments: realpath() used to lstat() each of them, 45-180 ms a request.
    deep = b"GET /" + b"a/" * 7900 + b"b HTTP/1.1\r\nHost: localhost\r\n\r\n"
    many = b"GET " + b"/a" * 4000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n"  # under 8 KiB
    with start(site) as (server, port):
        get_hello(port)
        cpu = cpu_seconds(server)
        for request in [deep] * 50 + [many] * 50:
            with connect(port) as sock:
                sock.sendall(request)
                assert Reader(sock).response().status == 414
        per_request = (cpu_seconds(server) - cpu) / 100
        assert per_request < 0.005, f"{per_request * 1000:.1f} ms of CPU per refused target"
        assert get_hello(port) < PROMPT


def test_a_long_path_that_does_not_exist_costs_one_lookup(site: Path) -> None:
    # Within the limits, a missing path is found missing at its first missing folder.
    target = b"/" + b"/".join([b"nothere"] * 120)
    with start(site) as (server, port):
        get_hello(port)
        cpu = cpu_seconds(server)
        with connect(port) as sock:
            reader = Reader(sock)
            for _ in range(100):
                sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: localhost\r\n\r\n")
                assert reader.response().status == 404
        assert (cpu_seconds(server) - cpu) / 100 < 0.002


def test_a_huge_listing_is_cheap_the_second_time(site: Path) -> None:
    folder = site / "many"
    folder.mkdir()
    for n in range(10_000):
        (folder / f"file-{n:05}.txt").write_bytes(b"")
    request = b"GET /many/ HTTP/1.1\r\nHost: localhost\r\n\r\n"
    with start(site) as (server, port):
        get_hello(port)
        cpu = cpu_seconds(server)
        with connect(port) as sock:
            sock.sendall(request)
            first = Reader(sock).response()
        assert first.status == 200 and b"file-09999.txt" in first.body
        scan = cpu_seconds(server) - cpu
        cpu = cpu_seconds(server)
        socks = [connect(port) for _ in range(8)]
        for sock in socks:
            sock.sendall(request)
        assert get_hello(port) < PROMPT  # not stuck behind eight scans
        for sock in socks:
            assert Reader(sock).response().body == first.body
            sock.close()
        repeated = (cpu_seconds(server) - cpu) / 8
        assert repeated < scan / 3, (repeated, scan)


def test_a_body_of_tiny_chunks_is_not_parsed(site: Path) -> None:
    # 170,000 one-byte chunks behind a GET: each was an h11 event, parsed only to be
    # dropped, and one such client kept the core to itself. Now: the answer, then a close,
    # and the body dropped unparsed while the connection lingers.
    body = b"1\r\na\r\n" * 170_000 + b"0\r\n\r\n"
    head = b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
    with start(site) as (server, port):
        get_hello(port)
        cpu = cpu_seconds(server)
        for _ in range(3):
            with connect(port) as sock:
                with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                    sock.sendall(head + body)
                response = Reader(sock).response()
                assert (response.status, response.headers["connection"]) == (200, "close")
        per_request = (cpu_seconds(server) - cpu) / 3
        assert per_request < 0.05, f"{per_request * 1000:.0f} ms of CPU per chunked body"
        assert get_hello(port) < PROMPT


# --- the head limit ------------------------------------------------------------------------

# Both 30 KB as sent, both a few bytes once h11 has stripped the padding and unfolded the
# continuation lines (RFC 9112 §5.2 obs-fold).
PADDED = b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nX-Pad:" + b" " * 30_000 + b"a\r\n\r\n"
FOLDED = b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nX-Fold: a" + b"\r\n " * 10_000
FOLDED += b"\r\n\r\n"


@pytest.mark.parametrize("head", [PADDED, FOLDED], ids=["spaces", "obs-fold"])
@pytest.mark.parametrize("split", ["whole", "1000", "random", "1"])
def test_the_head_limit_does_not_depend_on_the_split(site: Path, head: bytes, split: str) -> None:
    # h11 strips whitespace and unfolds lines before tinyhttp used to measure the head; the
    # same 30 KB head was served whole and refused in 1,000-byte pieces.
    sizes: Iterator[int] | None = None
    if split == "random":
        rng = random.Random(len(head))
        sizes = iter(lambda: rng.randint(1, 3000), -1)
    elif split != "whole":
        sizes = iter(lambda: int(split), -1)
    with start(site) as (_, port), connect(port) as sock:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            send_in_pieces(sock, head, sizes)
        assert Reader(sock).response().status == 431


# --- the connection limit ------------------------------------------------------------------


def test_a_burst_over_the_connection_limit_is_all_answered(site: Path) -> None:
    # 2,000 clients connect at once and each send one request, against a limit of 1,024:
    # connections accepted a moment ago, their request not yet read, used to be closed to
    # make room, as if idle. Newcomers now wait in the kernel's backlog instead.
    request = b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    with start(site) as (_, port), selectors.DefaultSelector() as selector:
        answers: dict[socket.socket, bytearray] = {}
        for _ in range(2000):  # each client sends its request as soon as it is connected
            sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
            sock.sendall(request)
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
            answers[sock] = bytearray()
        done = 0
        deadline = time.monotonic() + 30
        while done < len(answers) and time.monotonic() < deadline:
            for key, _ in selector.select(1.0):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                answers[sock] += chunk
                if not chunk:
                    selector.unregister(sock)
                    done += 1
        for sock in answers:
            sock.close()
    answered = sum(answer.startswith(b"HTTP/1.1 200 OK\r\n") for answer in answers.values())
    assert answered == 2000, f"only {answered} of 2000 answered"


# --- stopping ------------------------------------------------------------------------------


def test_the_signal_handler_wakes_the_loop_after_setting_its_flag(site: Path) -> None:
    # If set_wakeup_fd's byte is read before the Python handler has run, the flag was set
    # with nothing left to wake select(): the handler writes its own byte after the flag.
    server = Server(Config(root=site, port=0), AccessLog(open(os.devnull, "w")))  # noqa: SIM115
    thread = threading.Thread(target=server.serve, daemon=True)
    try:
        wakeup = server.wakeup
        wakeup.drain(selectors.EVENT_READ)  # nothing waiting: the race's starting point
        wakeup._on_signal(signal.SIGTERM, None)
        assert wakeup.stop_requested
        assert wakeup.reader.recv(1) == b"\0"
        wakeup.stop()  # put a byte back for the loop to find
        thread.start()
        thread.join(TIMEOUT)
        assert not thread.is_alive(), "the loop never saw the stop"
    finally:
        server.log.stream.close()


def test_sigterm_at_any_moment_stops_the_server(site: Path) -> None:
    # Signals delivered at random points of a busy loop: every one is honoured.
    rng = random.Random(15)
    for _ in range(8):
        with start(site) as (server, port):
            stop_at = time.monotonic() + rng.uniform(0.0, 0.2)
            with connect(port) as sock:
                reader = Reader(sock)
                while time.monotonic() < stop_at:
                    sock.sendall(HELLO)
                    assert reader.response().status == 200
                server.popen.send_signal(signal.SIGTERM)
            assert server.finish(timeout=TIMEOUT) == 0
            assert wait_until(lambda: "Stopped." in server.stdout, timeout=TIMEOUT)
