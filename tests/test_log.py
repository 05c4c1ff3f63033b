"""The access log tells the truth: each line is written when its answer is done, with the bytes
the kernel really took and the time from the request's first byte to the answer's last, and an
answer cut short says so. Over real sockets, against servers in threads."""

from __future__ import annotations

import json
import re
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import TIMEOUT, Reader, Running, wait_until

LINE = re.compile(
    r'(?P<peer>\S+) - - \[[^\]]+\] "(?P<request>[^"]*)" (?P<status>\d{3}) (?P<size>\d+) '
    r'"[^"]*" "[^"]*" (?P<ms>\d+\.\d\d)ms(?: cut:(?P<cut>[\w-]+))?'
)
MB = 1_000_000


def lines_for(server: Running, path: str) -> list[re.Match[str]]:
    found = (LINE.fullmatch(line) for line in server.log.getvalue().splitlines())
    return [match for match in found if match and f" {path} " in match["request"]]


def connect(server: Running, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", server.port))
    return sock


def read_at(sock: socket.socket, rate: float, limit: int, seconds: float) -> int:
    """Read at about `rate` bytes a second, until `limit` bytes or `seconds` have passed."""
    received, started = 0, time.monotonic()
    while received < limit and time.monotonic() - started < seconds:
        chunk = sock.recv(min(64 * 1024, limit - received))
        if not chunk:
            break
        received += len(chunk)
        ahead = received / rate - (time.monotonic() - started)
        if ahead > 0:
            threading.Event().wait(ahead)  # pacing the reader, not waiting for a condition
    return received


@pytest.fixture
def files(site: Path) -> Path:
    (site / "twenty.bin").write_bytes(bytes(20 * MB))
    with open(site / "fifty.bin", "wb") as big:
        big.truncate(50 * MB)  # sparse: costs no disk
    return site


def test_a_download_at_20_mb_a_second_logs_its_bytes_and_its_second(
    serve: Callable[..., Running], files: Path
) -> None:
    server = serve()
    with connect(server, rcvbuf=256 * 1024) as sock:
        sock.sendall(b"GET /twenty.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
        head = Reader(sock)
        while b"\r\n\r\n" not in head.buffer:
            head._fill()
        body = len(head.buffer) - head.buffer.index(b"\r\n\r\n") - 4
        body += read_at(sock, 20 * MB, 20 * MB - body, seconds=10)
    assert body == 20 * MB
    assert wait_until(lambda: bool(lines_for(server, "/twenty.bin")))
    line = lines_for(server, "/twenty.bin")[0]
    assert (line["status"], line["size"], line["cut"]) == ("200", str(20 * MB), None)
    # The last byte reached the kernel a little before the reader took it, never at once.
    assert 0.5 < float(line["ms"]) / 1000 < 2.0, line.group(0)


def test_a_range_is_logged_with_its_own_length_when_done(
    serve: Callable[..., Running], files: Path
) -> None:
    server = serve()
    with connect(server, rcvbuf=256 * 1024) as sock:
        sock.sendall(
            b"GET /fifty.bin HTTP/1.1\r\nHost: localhost\r\nRange: bytes=0-9999999\r\n\r\n"
        )
        reader = Reader(sock)
        while b"\r\n\r\n" not in reader.buffer:
            reader._fill()
        body = len(reader.buffer) - reader.buffer.index(b"\r\n\r\n") - 4
        body += read_at(sock, 20 * MB, 10 * MB - body, seconds=10)
    assert body == 10 * MB
    assert wait_until(lambda: bool(lines_for(server, "/fifty.bin")))
    line = lines_for(server, "/fifty.bin")[0]
    assert (line["status"], line["size"]) == ("206", str(10 * MB))
    assert float(line["ms"]) > 250  # half a second of reading, not the time to queue it


def test_a_client_gone_after_a_second_is_logged_as_cut_with_what_was_sent(
    serve: Callable[..., Running], files: Path
) -> None:
    server = serve()
    with connect(server, rcvbuf=64 * 1024) as sock:
        sock.sendall(b"GET /fifty.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
        received = read_at(sock, 5 * MB, 50 * MB, seconds=1.0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    # Closed with a reset, as a killed client's kernel does; the server finds out mid-send.
    assert wait_until(lambda: bool(lines_for(server, "/fifty.bin")))
    line = lines_for(server, "/fifty.bin")[0]
    assert line["status"] == "200" and line["cut"] == "client-gone", line.group(0)
    sent = int(line["size"])
    # Everything the client read was sent; what was sent beyond it sat in socket buffers.
    assert received - 300 <= sent < received + 16 * MB, (received, sent)
    assert sent < 50 * MB
    assert 0.9 < float(line["ms"]) / 1000 < 5.0


def test_pipelined_answers_are_logged_in_order_when_each_is_done(
    serve: Callable[..., Running], files: Path
) -> None:
    server = serve()
    paths = [b"/hello.txt", b"/twenty.bin", b"/style.css", b"/missing", b"/hello.txt"]
    with connect(server) as sock:
        sock.sendall(b"".join(b"GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % p for p in paths))
        reader = Reader(sock)
        for _ in paths:
            reader.response()
    wanted = [p.decode() for p in paths]
    assert wait_until(lambda: len(server.log.getvalue().splitlines()) >= len(paths))
    logged = [LINE.fullmatch(line) for line in server.log.getvalue().splitlines()]
    assert [m["request"].split()[1] for m in logged if m] == wanted
    assert [m["status"] for m in logged if m] == ["200", "200", "200", "404", "200"]


def test_the_json_log_marks_a_cut_answer(serve: Callable[..., Running], files: Path) -> None:
    server = serve(log_json=True)
    server.server.log.as_json = True  # the fixture hands the server its own AccessLog
    with connect(server, rcvbuf=64 * 1024) as sock:
        sock.sendall(b"GET /fifty.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert read_at(sock, 10 * MB, MB, seconds=5) == MB
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    assert wait_until(lambda: "fifty.bin" in server.log.getvalue())
    record = json.loads(server.log.getvalue().splitlines()[-1])
    assert record["cut"] == "client-gone" and 0 < record["bytes"] < 50 * MB
    assert wait_until(lambda: not server.server.clients)
