"""Limits and timeouts under attack: slowloris, slow readers, the connection limit,
running out of file descriptors, and no descriptor leaked afterwards.

Every limit is shortened through Config so each test takes a second or two; every wait polls
with a deadline, and every socket call has a timeout.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .conftest import TIMEOUT, Reader, Running, wait_until

HELLO = b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n"
# A slowloris head: it starts like a real request and never ends (no blank line ever comes).
TRICKLE = b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: slowloris\r\nX-a: " + b"b" * 4096
PROMPT = 1.0  # a normal client must be answered within this long, whatever else goes on
LINUX = sys.platform.startswith("linux")


@pytest.fixture(autouse=True, scope="module")
def enough_descriptors() -> Iterator[None]:
    """Hundreds of connections, counted twice (client and in-process server): raise the soft
    open-files limit, which is 1024 on many CI machines."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 8192 if hard == resource.RLIM_INFINITY else min(hard, 8192)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def connect(port: int, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    if rcvbuf is not None:
        # Before connect(), so the small window is what the handshake announces.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    return sock


def get_hello(port: int) -> float:
    """A normal client: connect, GET a small file, read all of it; the seconds it took."""
    started = time.monotonic()
    with connect(port) as sock:
        sock.sendall(HELLO)
        response = Reader(sock).response()
    assert response.status == 200
    assert response.body == b"hello, world\n"
    return time.monotonic() - started


def read_all(sock: socket.socket) -> bytes:
    """Everything until EOF; a reset counts as the end too."""
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def read_head(sock: socket.socket) -> bytes:
    """Read until the end of a 200 response's head; return the part of the body read with it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed mid-head: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n"), head
    return body


def reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN (SO_LINGER 0), as a crashed client does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# --- slowloris -----------------------------------------------------------------------------


class Slowloris:
    """`count` connections, each sending one more byte of a never-ending head every `pace`
    seconds from a thread. With a `reconnect_rate` (per second, as slowhttptest's -r), a
    connection the server cuts is opened again, so the pressure never lets up."""

    def __init__(self, port: int, count: int, pace: float, reconnect_rate: float = 0) -> None:
        self.port = port
        self.pace = pace
        self.reconnect_budget = reconnect_rate * pace  # reconnections per round
        self.socks: list[socket.socket | None] = [self._open() for _ in range(count)]
        self.sent = [0] * count
        self.first_byte = [0.0] * count
        self.answers: list[bytes] = []  # what each cut connection received before its end
        self.lifetimes: list[float] = []  # from its first byte to when it was seen cut
        self.reconnects = 0
        self._budget = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _open(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT)
        sock.setblocking(False)
        return sock

    def __enter__(self) -> Slowloris:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT)
        for sock in self.socks:
            if sock is not None:
                sock.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._budget = self.reconnect_budget
            for i in range(len(self.socks)):
                self._step(i)
            self._stop.wait(self.pace)  # pacing the trickle, not waiting for a condition

    def _step(self, i: int) -> None:
        sock = self.socks[i]
        if sock is None:
            self._reopen(i)
            return
        try:
            answer = sock.recv(65536)
        except BlockingIOError:
            answer = None  # still open, nothing said: trickle one more byte
        except OSError:
            answer = b""  # reset
        if answer is None:
            with contextlib.suppress(BlockingIOError, OSError):
                if self.sent[i] == 0:
                    self.first_byte[i] = time.monotonic()
                self.sent[i] += sock.send(TRICKLE[self.sent[i] : self.sent[i] + 1])
            return
        if self.sent[i]:
            self.lifetimes.append(time.monotonic() - self.first_byte[i])
        sock.setblocking(True)
        sock.settimeout(TIMEOUT)
        self.answers.append(answer + read_all(sock))
        sock.close()
        self.socks[i] = None
        self._reopen(i)

    def _reopen(self, i: int) -> None:
        if self._budget >= 1 and not self._stop.is_set():
            self._budget -= 1
            self.socks[i] = self._open()
            self.sent[i] = 0
            self.reconnects += 1

    def cut(self) -> int:
        return len(self.answers)


def normal_clients_during(condition: Callable[[], bool], port: int, limit: float) -> list[float]:
    """Time a normal client again and again (about every 0.1 s) until `condition` holds."""
    times: list[float] = []
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"still not done after {limit} s; times {times}"
        times.append(get_hello(port))
        threading.Event().wait(0.1)  # pacing the measurements
    return times


@pytest.mark.timeout(30)
def test_slowloris_under_the_connection_limit(serve: Callable[..., Running]) -> None:
    """300 tricklers, room for 400: each is cut at the head deadline with 408, while a
    normal client is answered promptly the whole time."""
    head_timeout = 1.5
    server = serve(head_timeout=head_timeout, max_connections=400, linger_seconds=0.3)
    with Slowloris(server.port, 300, pace=0.1) as attack:
        assert wait_until(lambda: len(server.server.clients) >= 300), "tricklers not accepted"
        times = normal_clients_during(lambda: attack.cut() == 300, server.port, limit=10)
        assert max(times) < PROMPT, times
        assert len(times) >= 5, "the attack ended before it was measured"
    for answer in attack.answers:
        assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer[:100]
        assert b"\r\nConnection: close\r\n" in answer
    # Cut at the deadline from the first byte, not before: a byte every 0.1 s buys nothing.
    assert head_timeout - 0.05 < min(attack.lifetimes), min(attack.lifetimes)
    assert max(attack.lifetimes) < head_timeout + 1.5, max(attack.lifetimes)
    assert wait_until(lambda: not server.server.clients)


@pytest.mark.timeout(30)
def test_slowloris_over_the_connection_limit(serve: Callable[..., Running]) -> None:
    """300 tricklers for 150 places, reconnecting at 200 a second when cut (slowhttptest's
    default rate): the oldest half-sent heads make room for newcomers, so a normal client
    is still answered promptly, and no trickler outlives the head deadline."""
    limit, head_timeout = 150, 1.5
    server = serve(head_timeout=head_timeout, max_connections=limit, linger_seconds=0.3)
    most = 0

    def attack_has_lasted() -> bool:
        nonlocal most
        most = max(most, len(server.server.clients))
        return time.monotonic() > started + 2 * head_timeout

    with Slowloris(server.port, 300, pace=0.05, reconnect_rate=200) as attack:
        started = time.monotonic()
        times = normal_clients_during(attack_has_lasted, server.port, limit=10)
    assert max(times) < PROMPT, times
    assert most <= limit
    assert attack.reconnects > 300  # the attack really churned
    # Those cut to make room were closed without an answer (they had not finished a
    # request); those that reached the deadline first got a 408.
    for answer in attack.answers:
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408 "), answer[:100]
    assert max(attack.lifetimes) < head_timeout + 1.5, max(attack.lifetimes)
    assert wait_until(lambda: not server.server.clients, timeout=TIMEOUT)


# --- the connection limit ------------------------------------------------------------------


def partial_heads(server: Running, count: int) -> list[socket.socket]:
    """`count` connections that have sent part of a head, once the server has read it."""
    socks = []
    for _ in range(count):
        sock = server.connect()
        sock.sendall(b"GET /hello.txt HTTP/1.1\r\n")
        socks.append(sock)
        assert wait_until(
            lambda: sum(c.incoming.fed > 0 for c in list(server.server.clients)) == len(socks)
        )
    return socks


def test_idle_keep_alive_is_closed_first_when_full(serve: Callable[..., Running]) -> None:
    server = serve(max_connections=4)
    heads = partial_heads(server, 3)  # older than the idle one below
    idle = server.connect()
    idle.sendall(HELLO)
    assert Reader(idle).response().status == 200
    with idle, contextlib.ExitStack() as stack:
        for sock in heads:
            stack.enter_context(sock)
        assert get_hello(server.port) < PROMPT  # the fifth: room is made for it
        assert read_all(idle) == b""  # the idle keep-alive connection was the one closed
        for sock in heads:  # the requests in progress were not touched
            sock.sendall(b"Host: localhost\r\n\r\n")
            assert Reader(sock).response().status == 200


def test_oldest_partial_head_is_closed_when_full_and_none_idle(
    serve: Callable[..., Running],
) -> None:
    server = serve(max_connections=3)
    oldest, *others = partial_heads(server, 3)
    with oldest, others[0], others[1]:
        assert get_hello(server.port) < PROMPT
        assert read_all(oldest) == b""  # cut without an answer: it had asked nothing yet
        for sock in others:
            sock.sendall(b"Host: localhost\r\n\r\n")
            assert Reader(sock).response().status == 200


def busy_connection(server: Running) -> socket.socket:
    """A connection being served: its request body is still arriving (not idle, no head)."""
    sock = server.connect()
    sock.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n")
    assert Reader(sock).response().status == 200  # answered at once; the body is still due
    sock.sendall(b"x" * 10)
    return sock


def test_listener_paused_when_full_and_resumed_when_one_closes(
    serve: Callable[..., Running],
) -> None:
    server = serve(max_connections=3, idle_timeout=30)
    busy = [busy_connection(server) for _ in range(3)]
    with contextlib.ExitStack() as stack:
        for sock in busy:
            stack.enter_context(sock)
        waiting = stack.enter_context(server.connect())  # queued by the kernel, not accepted
        waiting.sendall(HELLO)
        waiting.settimeout(0.5)
        cpu = time.process_time()
        with pytest.raises(TimeoutError):
            waiting.recv(1)  # nobody to answer: every place is taken by a busy connection
        # Paused means unregistered: a listener left in a level-triggered selector would spin.
        assert time.process_time() - cpu < 0.25
        assert len(server.server.clients) == 3
        waiting.settimeout(TIMEOUT)
        started = time.monotonic()
        busy[0].close()  # one place frees up: the listener is resumed
        response = Reader(waiting).response()
        assert response.status == 200
        assert time.monotonic() - started < PROMPT
        for sock in busy[1:]:  # the others were not disturbed
            sock.sendall(b"y" * 90 + HELLO)
            assert Reader(sock).response().body == b"hello, world\n"


# --- slow readers --------------------------------------------------------------------------


@pytest.fixture
def huge(site: Path) -> Path:
    """A 32 MiB file (sparse, so it costs no disk): far more than every socket buffer holds."""
    path = site / "huge.bin"
    with open(path, "wb") as file:
        file.truncate(32 * 1024 * 1024)
    return path


def test_reader_that_stops_is_cut_after_the_send_timeout(
    serve: Callable[..., Running], huge: Path
) -> None:
    server = serve(send_timeout=0.5, idle_timeout=30)
    with connect(server.port, rcvbuf=4096) as sock:
        sock.sendall(b"GET /huge.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
        read_head(sock)  # and then not one byte more
        started = time.monotonic()
        assert wait_until(lambda: not server.server.clients, timeout=TIMEOUT)
        waited = time.monotonic() - started
        assert 0.3 < waited < 0.5 + 2, waited
        received = len(read_all(sock))
    assert received < huge.stat().st_size / 2  # cut, not finished


def test_slow_but_steady_reader_is_not_cut(serve: Callable[..., Running], huge: Path) -> None:
    """The send timeout measures progress, not the whole download: a reader that keeps
    taking bytes (32 KiB every 50 ms) for three times the timeout is served to the end, even
    though the kernel's send buffer would hold seconds of what it reads."""
    server = serve(send_timeout=0.5, idle_timeout=30)
    size = huge.stat().st_size
    with connect(server.port, rcvbuf=16384) as sock:
        sock.sendall(b"GET /huge.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
        received = len(read_head(sock))
        slow_until = time.monotonic() + 3 * 0.5
        while time.monotonic() < slow_until:
            want = 32 * 1024
            while want > 0:
                chunk = sock.recv(want)
                assert chunk, f"cut after {received} of {size} bytes while reading steadily"
                received += len(chunk)
                want -= len(chunk)
            threading.Event().wait(0.05)  # pacing: a slow reader
        while received < size:  # then fast, to the end
            chunk = sock.recv(1 << 20)
            assert chunk, f"cut after {received} of {size} bytes"
            received += len(chunk)
        assert received == size
        sock.sendall(HELLO)  # still kept alive after the whole file
        assert Reader(sock).response().status == 200


# --- running out of file descriptors -------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def limit_open_files(count: int) -> Callable[[], None]:
    def preexec() -> None:  # in the child, before exec: soft and hard, so it can't be raised
        resource.setrlimit(resource.RLIMIT_NOFILE, (count, count))

    return preexec


@pytest.mark.skipif(not LINUX, reason="reads /proc/PID/stat and /proc/PID/fd")
@pytest.mark.timeout(40)
def test_out_of_descriptors_backs_off_and_recovers(site: Path) -> None:
    """A server with 64 descriptors, flooded: it stays under 10 % CPU while it cannot
    accept, never answers 500 (a file it cannot open is 503, not 404), and serves again
    once the flood is gone."""
    files = 64
    process = subprocess.Popen(
        [sys.executable, "-m", "tinyhttp", str(site), "--port", "0", "--head-timeout", "60"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=limit_open_files(files),
    )
    flood: list[socket.socket] = []
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, (line, process.stderr.read() if process.poll() is not None else "")
        port = int(match[1])
        get_hello(port)
        descriptors = Path(f"/proc/{process.pid}/fd")
        for _ in range(3 * files):
            sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
            sock.settimeout(TIMEOUT)
            sock.sendall(HELLO)
            flood.append(sock)
        # Every descriptor taken: the rest of the flood waits in the kernel's accept queue.
        assert wait_until(lambda: len(list(descriptors.iterdir())) >= files - 1)
        before, started = cpu_seconds(process.pid), time.monotonic()
        threading.Event().wait(2.0)  # the window over which the CPU time is measured
        used = cpu_seconds(process.pid) - before
        elapsed = time.monotonic() - started
        assert used / elapsed < 0.10, f"{used:.2f} s of CPU in {elapsed:.2f} s"
        statuses = []  # of the flood's requests that were accepted (long since answered)
        for sock in flood:
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                statuses.append(int(sock.recv(65536)[9:12]))
        # Once every descriptor is a socket, a file cannot be opened: 503, never a 404 that
        # a cache could keep, and never a 500.
        assert statuses and set(statuses) <= {200, 503}, statuses
        assert 503 in statuses, statuses
        for sock in flood:
            reset(sock)
        flood.clear()
        assert wait_until(lambda: _serves(port), timeout=TIMEOUT), "not serving after the flood"
        assert max(get_hello(port) for _ in range(5)) < PROMPT
    finally:
        for sock in flood:
            sock.close()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            _, stderr = process.communicate(timeout=TIMEOUT)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(TIMEOUT)
    assert process.returncode == 0, stderr
    assert b"Traceback" not in stderr, stderr.decode(errors="replace")
    assert b'" 500 ' not in stderr


def _serves(port: int) -> bool:
    try:
        return get_hello(port) < TIMEOUT
    except (OSError, EOFError):
        return False


# --- no descriptor leaks -------------------------------------------------------------------


def storm(server: Running, rounds: int) -> list[socket.socket]:
    """Every way a connection can end: answered, kept alive, aborted mid-file by RST or FIN,
    refused, cut at a deadline, half-closed, pipelined and dropped; every way a reply can
    hold a file: whole, ranges (one descriptor per part), HEAD, 304, 412, 416. Returns the
    connections left for the server to cut at its deadlines."""
    port = server.port
    big = b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\n"
    left: list[socket.socket] = []
    for i in range(rounds):
        with connect(port) as sock:  # answered, kept alive, then closed by us
            sock.sendall(HELLO + b"HEAD /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
            reader = Reader(sock)
            reader.response()
            reader.response(head_only=True)
        with connect(port) as sock:  # files opened, then answered without their body
            sock.sendall(
                big
                + b"If-None-Match: *\r\n\r\n"  # 304
                + big
                + b'If-Match: "nope"\r\n\r\n'  # 412
                + big
                + b"Range: bytes=99999999-\r\n\r\n"  # 416
                + big
                + b"Range: bytes=0-1,5-6,-3\r\nConnection: close\r\n\r\n"  # multipart
            )
            assert b"multipart/byteranges" in read_all(sock)
        sock = connect(port, rcvbuf=4096)  # aborted mid-sendfile with a reset
        sock.sendall(big + b"\r\n")
        sock.recv(1000)
        reset(sock)
        with connect(port, rcvbuf=4096) as sock:  # aborted mid-multipart with a FIN
            sock.sendall(big + b"Range: bytes=0-5,9-\r\n\r\n")
            sock.recv(1000)
        with connect(port) as sock:  # a bad request: 400 and a lingering close
            sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nBad Header\r\n\r\n")
            read_all(sock)
        with connect(port) as sock:  # a partial head, then gone
            sock.sendall(b"GET / HTTP/1.1\r\nHo")
        with connect(port) as sock:  # half-closed after a full request
            sock.sendall(HELLO)
            sock.shutdown(socket.SHUT_WR)
            read_all(sock)
        with connect(port) as sock:  # pipelined, and closed before reading the answers
            sock.sendall(HELLO * 5 + big + b"\r\n")
        with connect(port) as sock:  # a body over the limit, refused
            sock.sendall(b"PUT /x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 99999999\r\n\r\n")
            read_all(sock)
        if i % 4 == 0:
            left.append(connect(port))  # silent: cut at the head deadline
            left.append(connect(port))  # a partial head: cut with a 408
            left[-1].sendall(b"GET / HTTP/1.1\r\n")
            left.append(connect(port, rcvbuf=4096))  # a reader that stopped: send timeout
            left[-1].sendall(big + b"\r\n")
    return left


@pytest.mark.skipif(not LINUX, reason="counts /proc/self/fd")
def test_no_descriptor_leaks_after_a_storm(serve: Callable[..., Running]) -> None:
    server = serve(head_timeout=0.5, idle_timeout=0.5, linger_seconds=0.2, send_timeout=1.0)
    get_hello(server.port)  # anything opened lazily on the first request is opened now
    assert wait_until(lambda: not server.server.clients)
    before = open_fds()
    left = storm(server, rounds=20)
    # Everything ends by itself: closes, timeouts, lingering closes.
    assert wait_until(lambda: not server.server.clients, timeout=TIMEOUT), len(
        server.server.clients
    )
    for sock in left:
        sock.close()
    assert wait_until(lambda: open_fds() == before, timeout=TIMEOUT), (before, open_fds())
    assert get_hello(server.port) < PROMPT
