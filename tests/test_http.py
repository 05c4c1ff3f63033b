"""The server over real sockets: requests whole, byte by byte and in random pieces."""

from __future__ import annotations

import itertools
import random
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from .conftest import BIG_SIZE, INDEX, TIMEOUT, Reader, Running, send_in_pieces, wait_until

GET_INDEX = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: test\r\nAccept: */*\r\n\r\n"


def splits(kind: str) -> Iterator[int] | None:
    """How a request is cut: whole, one byte at a time, or at seeded random points."""
    if kind == "whole":
        return None
    if kind == "bytes":
        return itertools.repeat(1)
    rng = random.Random(kind)  # seeded by name, so every run cuts the same way
    return iter(lambda: rng.randint(1, 9), None)


PIECES = ["whole", "bytes", "random-1", "random-2", "random-3"]


def exchange(server: Running, request: bytes, pieces: str = "whole", head_only: bool = False):
    with server.connect() as sock:
        send_in_pieces(sock, request, splits(pieces))
        return Reader(sock).response(head_only)


# --- the basics ----------------------------------------------------------------------------


def test_front_page_with_requests(server: Running) -> None:
    r = requests.get(server.url, timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.reason == "OK"
    assert r.content == INDEX
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert r.headers["Content-Length"] == str(len(INDEX))
    assert r.headers["Server"].startswith("tinyhttp/")
    assert r.headers["Date"].endswith(" GMT")
    assert r.headers["Last-Modified"].endswith(" GMT")
    assert r.headers["Cache-Control"] == "no-cache"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["ETag"].startswith('"')


@pytest.mark.parametrize("pieces", PIECES)
def test_request_in_pieces(server: Running, pieces: str) -> None:
    response = exchange(server, GET_INDEX, pieces)
    assert response.status == 200
    assert response.body == INDEX


@pytest.mark.parametrize("pieces", PIECES)
def test_pipelined_pair_answered_in_order(server: Running, pieces: str) -> None:
    pair = (
        b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n"
        b"GET /style.css HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    with server.connect() as sock:
        send_in_pieces(sock, pair, splits(pieces))
        reader = Reader(sock)
        first, second = reader.response(), reader.response()
    assert first.body == b"hello, world\n"
    assert second.body == b"body { color: black; }\n"
    assert second.headers["content-type"] == "text/css; charset=utf-8"


def test_many_pipelined_requests_in_one_send(server: Running) -> None:
    names = ["/hello.txt", "/style.css", "/", "/missing"] * 25
    batch = b"".join(b"GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % n.encode() for n in names)
    with server.connect() as sock:
        sock.sendall(batch)
        reader = Reader(sock)
        statuses = [reader.response().status for _ in names]
    assert statuses == [404 if n == "/missing" else 200 for n in names]


def test_keep_alive_reuses_one_connection(server: Running) -> None:
    with server.connect() as sock:
        reader = Reader(sock)
        for _ in range(3):
            sock.sendall(GET_INDEX)
            response = reader.response()
            assert response.status == 200
            assert "connection" not in response.headers


def test_head_has_get_headers_and_no_body(server: Running) -> None:
    with server.connect() as sock:
        reader = Reader(sock)
        sock.sendall(GET_INDEX.replace(b"GET", b"HEAD", 1) + GET_INDEX)
        head = reader.response(head_only=True)
        get = reader.response()  # parses only if HEAD sent no body bytes
    assert head.status == get.status == 200
    assert head.body == b""
    assert {k: v for k, v in head.headers.items() if k != "date"} == {
        k: v for k, v in get.headers.items() if k != "date"
    }


def test_head_of_missing_file_has_no_body(server: Running) -> None:
    with server.connect() as sock:
        reader = Reader(sock)
        sock.sendall(b"HEAD /nope HTTP/1.1\r\nHost: localhost\r\n\r\n" + GET_INDEX)
        missing = reader.response(head_only=True)
        assert missing.status == 404
        assert int(missing.headers["content-length"]) > 0
        assert reader.response().status == 200


@pytest.mark.parametrize("use_sendfile", [True, False])
def test_big_file_byte_exact(serve, site: Path, use_sendfile: bool) -> None:
    server = serve(use_sendfile=use_sendfile)
    r = requests.get(server.url + "big.bin", timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.headers["Content-Length"] == str(BIG_SIZE)
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert r.content == (site / "big.bin").read_bytes()


def test_big_file_then_small_on_one_connection(server: Running, site: Path) -> None:
    with server.connect() as sock:
        sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n" + GET_INDEX)
        reader = Reader(sock)
        assert reader.response().body == (site / "big.bin").read_bytes()
        assert reader.response().body == INDEX


# --- statuses ------------------------------------------------------------------------------


def test_missing_file_is_404_html(server: Running) -> None:
    r = requests.get(server.url + "missing.txt", timeout=TIMEOUT)
    assert r.status_code == 404
    assert r.reason == "Not Found"
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "404 Not Found" in r.text


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "TRACE"])
def test_known_methods_get_405_with_allow(server: Running, method: str) -> None:
    r = requests.request(method, server.url, timeout=TIMEOUT)
    assert r.status_code == 405
    assert r.headers["Allow"] == "GET, HEAD, OPTIONS"


def test_unknown_method_is_501(server: Running) -> None:
    response = exchange(server, b"BREW / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert response.status == 501


def test_options_star_is_204_with_allow(server: Running) -> None:
    response = exchange(server, b"OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert response.status == 204
    assert response.headers["allow"] == "GET, HEAD, OPTIONS"
    assert "content-length" not in response.headers


def test_directory_redirect_never_leaves_the_site(server: Running) -> None:
    # CPython gh-87389: a `//host/..` target must not become `Location: //host/...`.
    response = exchange(
        server, b"GET //evil.example/%2e%2e/sub?x=1 HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    assert response.status == 301
    assert response.headers["location"] == "/sub/?x=1"


def test_traversal_over_the_wire_is_404(server: Running) -> None:
    for target in [b"/../canary.txt", b"/%2e%2e/canary.txt", b"/sub/../../canary.txt"]:
        response = exchange(server, b"GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % target)
        assert response.status == 404
        assert b"CANARY" not in response.body


def test_host_check_names_the_flag(server: Running) -> None:
    response = exchange(server, b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n")
    assert response.status == 400
    assert b"--allow-host" in response.body


def test_allow_host_permits_a_name(serve) -> None:
    server = serve(allow_hosts=("evil.example",))
    response = exchange(server, b"GET / HTTP/1.1\r\nHost: evil.example:8000\r\n\r\n")
    assert response.status == 200


# --- what h11 lets through and we refuse ---------------------------------------------------


def refused(server: Running, request: bytes, pieces: str = "whole") -> int:
    """Send a bad request; return its status after checking the server then closes."""
    with server.connect() as sock:
        send_in_pieces(sock, request, splits(pieces))
        reader = Reader(sock)
        response = reader.response()
        assert response.headers.get("connection") == "close"
        assert reader.closed()
        return response.status


@pytest.mark.parametrize("pieces", ["whole", "bytes", "random-4"])
def test_content_length_with_transfer_encoding_is_400(server: Running, pieces: str) -> None:
    smuggle = (
        b"GET / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    )
    assert refused(server, smuggle, pieces) == 400


@pytest.mark.parametrize(
    "request_line",
    [b"GET / HTTP/2.0", b"GET / HTTP/3.0", b"PRI * HTTP/2.0"],
)
def test_other_major_versions_are_505(server: Running, request_line: bytes) -> None:
    assert refused(server, request_line + b"\r\nHost: localhost\r\n\r\n") == 505


def test_http2_preface_is_505(server: Running) -> None:
    assert refused(server, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") == 505


def test_http_1_2_is_served_as_1_1(server: Running) -> None:
    with server.connect() as sock:
        reader = Reader(sock)
        for _ in range(2):  # and kept alive, as 1.1 would be
            sock.sendall(b"GET / HTTP/1.2\r\nHost: localhost\r\n\r\n")
            assert reader.response().status == 200


def test_http_0_9_is_400(server: Running) -> None:
    assert refused(server, b"GET /\r\n\r\n") == 400


@pytest.mark.parametrize("pieces", ["whole", "random-5"])
def test_oversized_head_is_431(server: Running, pieces: str) -> None:
    # Whole, it arrives in one recv(): h11's own size check would not see it.
    big = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * 17000 + b"\r\n\r\n"
    assert refused(server, big, pieces) == 431


def test_too_many_header_fields_is_431(server: Running) -> None:
    fields = b"".join(b"X-%d: 1\r\n" % i for i in range(101))
    assert refused(server, b"GET / HTTP/1.1\r\nHost: localhost\r\n" + fields + b"\r\n") == 431


def test_malformed_head_is_400(server: Running) -> None:
    assert refused(server, b"GET / HTTP/1.1\r\nHost: localhost\r\nBad Header\r\n\r\n") == 400


def test_missing_host_on_1_1_is_400(server: Running) -> None:
    assert refused(server, b"GET / HTTP/1.1\r\n\r\n") == 400


# --- bodies, closes and half-closes --------------------------------------------------------


def test_small_body_on_get_is_read_and_dropped(server: Running) -> None:
    with server.connect() as sock:
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello" + GET_INDEX
        )
        reader = Reader(sock)
        assert reader.response().body == INDEX
        assert reader.response().body == INDEX  # the body was not taken for a request


def test_declared_body_over_the_limit_is_413(serve) -> None:
    server = serve(max_body_bytes=1000)
    request = b"GET / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1001\r\n\r\n"
    assert refused(server, request) == 413


def test_huge_content_length_does_not_crash(server: Running) -> None:
    request = b"GET / HTTP/1.1\r\nHost: localhost\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n"
    assert refused(server, request) in (400, 413)  # h11 refuses it first; never a 500


def test_post_with_body_is_refused_and_closed(server: Running) -> None:
    request = b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\n0123456789"
    assert refused(server, request) == 405


def test_post_without_body_keeps_the_connection(server: Running) -> None:
    with server.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n" + GET_INDEX)
        reader = Reader(sock)
        assert reader.response().status == 405
        assert reader.response().status == 200


def test_expect_100_continue_refused_at_once(server: Running) -> None:
    request = (
        b"PUT /x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n"
        b"Expect: 100-continue\r\n\r\n"
    )
    assert refused(server, request) == 405  # before the client sends a byte of the body


def test_connection_close_is_honoured(server: Running) -> None:
    request = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" + GET_INDEX
    with server.connect() as sock:
        sock.sendall(request)
        reader = Reader(sock)
        response = reader.response()
        assert response.headers["connection"] == "close"
        assert reader.closed()  # the second request is not answered


def test_http_1_0_gets_one_response_and_a_close(server: Running) -> None:
    with server.connect() as sock:
        sock.sendall(b"GET /hello.txt HTTP/1.0\r\n\r\n")
        reader = Reader(sock)
        assert reader.response().body == b"hello, world\n"
        assert reader.closed()


def test_half_closed_client_still_gets_its_answer(server: Running) -> None:
    with server.connect() as sock:
        sock.sendall(GET_INDEX)
        sock.shutdown(socket.SHUT_WR)
        reader = Reader(sock)
        assert reader.response().body == INDEX
        assert reader.closed()


def test_reset_client_does_not_disturb_others(server: Running) -> None:
    with server.connect() as sock:
        sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
        sock.recv(1000)
        # SO_LINGER 0: close() sends RST instead of FIN, as a crashed client would.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    assert requests.get(server.url, timeout=TIMEOUT).content == INDEX


# --- timeouts ------------------------------------------------------------------------------


def test_slow_head_gets_408(serve) -> None:
    server = serve(head_timeout=0.3)
    with server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: loc")
        reader = Reader(sock)
        response = reader.response()
        assert response.status == 408
        assert reader.closed()


def test_idle_keep_alive_is_closed(serve) -> None:
    server = serve(idle_timeout=0.3)
    with server.connect() as sock:
        sock.sendall(GET_INDEX)
        reader = Reader(sock)
        assert reader.response().status == 200
        assert reader.closed()  # nothing more was sent: an idle close, no 408


def test_connection_count_returns_to_zero(server: Running) -> None:
    for _ in range(5):
        requests.get(server.url, headers={"Connection": "close"}, timeout=TIMEOUT)
    assert wait_until(lambda: not server.server.clients)


# --- the access log ------------------------------------------------------------------------


def test_access_log_escapes_the_request(server: Running) -> None:
    agent = b'a"b\\c\x1b[31m\x9b2J'
    exchange(server, b'GET /"q\\ HTTP/1.1\r\nHost: localhost\r\nUser-Agent: ' + agent + b"\r\n\r\n")
    assert wait_until(lambda: "\\x1b" in server.log.getvalue())
    line = server.log.getvalue().splitlines()[-1]
    assert '"GET /\\x22q\\x5c HTTP/1.1" 400' in line
    assert '"a\\x22b\\x5cc\\x1b[31m\\x9b2J"' in line
    assert "\x1b" not in server.log.getvalue()
    assert "\x9b" not in server.log.getvalue()


def test_closed_connections_are_not_kept_by_the_deadline_heap(server: Running) -> None:
    # Each connection leaves a heap entry behind; thousands of short connections must
    # neither keep their Connection objects alive nor grow the heap without bound.
    for _ in range(1500):
        with server.connect() as sock:
            sock.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            reader = Reader(sock)
            assert reader.response().status == 200
            assert reader.closed()
    assert wait_until(lambda: not server.server.clients)
    entries = server.server.deadlines
    assert len(entries) <= 1024 + 2
    assert all(slot.conn is None for _, _, slot in entries)


def test_access_log_as_json(serve) -> None:
    import json

    server = serve(log_json=True)
    server.server.log.as_json = True  # the fixture hands the server its own AccessLog
    agent = b'a"b\\c\x1b[31m'
    exchange(
        server, b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nUser-Agent: " + agent + b"\r\n\r\n"
    )
    assert wait_until(lambda: "hello.txt" in server.log.getvalue())
    line = server.log.getvalue().splitlines()[-1]
    assert "\x1b" not in line
    record = json.loads(line)
    assert record["request"] == "GET /hello.txt HTTP/1.1"
    assert record["status"] == 200
    assert record["bytes"] == 13
    assert record["user_agent"] == 'a"b\\c\x1b[31m'
