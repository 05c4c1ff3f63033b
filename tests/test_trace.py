"""--trace: a reader sees each connection's recv()s, h11 events, sends and close."""

from __future__ import annotations

import re

from .conftest import INDEX, Reader, wait_until


def test_trace_shows_a_request_arriving_in_pieces(serve) -> None:
    server = serve(trace=True)
    pieces = [b"GET / HTTP/1.1\r\n", b"Host: localhost\r\n", b"\r\n"]
    with server.connect() as sock:
        reader = Reader(sock)
        for piece in pieces:
            sock.sendall(piece)
            # Wait for the server to take each piece, so each is its own recv().
            count = len(piece)
            assert wait_until(lambda n=count: f"recv -> {n} bytes" in server.log.getvalue())
        assert reader.response().body == INDEX
    assert wait_until(lambda: "close:" in server.log.getvalue())
    lines = [line for line in server.log.getvalue().splitlines() if line.startswith("[#1]")]
    text = "\n".join(lines)
    assert lines[0] == "[#1] accept: a new connection from 127.0.0.1"
    assert "recv -> 16 bytes: GET / HTTP/1.1\\r\\n" in text
    assert "h11 -> NEED_DATA" in text  # the head was not complete after the first piece
    assert "h11 -> Request 'GET / HTTP/1.1' with 1 header fields" in text
    assert re.search(r"send(msg\(\d buffers, |\()\d+ bytes\) -> \d+ taken by the kernel", text)
    assert "keep-alive: both sides are done" in text
    assert "recv -> 0 bytes: the client closed its side (EOF)" in text
    assert lines[-1].startswith("[#1] close: ")


def test_trace_numbers_connections_and_shows_sendfile(serve) -> None:
    server = serve(trace=True)
    for _ in range(2):
        with server.connect() as sock:
            sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            Reader(sock).response()
    assert wait_until(lambda: "[#2] close:" in server.log.getvalue())
    assert re.search(
        r"\[#2\] sendfile\(\d+ bytes from offset 0\) -> \d+ taken", server.log.getvalue()
    )


def test_no_trace_by_default(serve) -> None:
    server = serve()
    with server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        Reader(sock).response()
    assert "[#1]" not in server.log.getvalue()
