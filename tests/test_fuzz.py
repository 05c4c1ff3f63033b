"""Fuzzing the server over real sockets with hypothesis: random bytes, and valid requests
mutated byte by byte, sent cut at random points. Whatever arrives, the answer is never a 500,
the log never shows a traceback or the top-level guard at work (a client's bytes are
never our bug), and the server goes on answering normal requests.

Derandomized, with a bounded number of examples, so every CI run sends exactly the same bytes.
"""

from __future__ import annotations

import contextlib
import re
import socket
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import Reader, Running

HELLO = b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n"
# Valid requests to start from: every feature a mutation can break.
SEEDS = [
    b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: fuzz\r\nAccept: */*\r\n\r\n",
    b"HEAD /hello.txt HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n",
    b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\nRange: bytes=0-9,20-29,-5\r\n\r\n",
    b'GET /style.css HTTP/1.1\r\nHost: localhost\r\nIf-None-Match: "a", W/"b"\r\n'
    b"If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n",
    b'GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nIf-Range: "x"\r\nRange: bytes=-3\r\n'
    b"Accept-Encoding: gzip;q=0.5, br\r\n\r\n",
    b"GET /sub HTTP/1.0\r\n\r\n",
    b"GET /empty/?q=1 HTTP/1.1\r\nHost: [::1]\r\nAccept: application/json\r\n\r\n",
    b"GET http://localhost/sub/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"POST /x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello",
    b"GET / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n0\r\n\r\n",
    b"PUT /a HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n",
    HELLO + HELLO,
]
# Fragments that make parsers stumble: line-ending games, huge and signed numbers, odd
# methods and versions, encodings, and whole headers with framing in them.
TOKENS = [
    b"\r", b"\n", b"\r\n", b"\r\n\r\n", b"\n\n", b"\x00", b" ", b"\t", b":", b",", b";", b'"',
    b"%", b"%2e", b"%2E%2e", b"%2f", b"%5c", b"%00", b"%ff", b"%c0%ae", b"%e2%80%ae", b"..",
    b"../", b"//", b"\\", b"?", b"#", b"*", b"\xff", b"\xc3\xa9", b"\x1b[31m", b"\x9b",
    b"9" * 30, b"9" * 5000, b"-1", b"+5", b"0x10", b"1e3", b"18446744073709551616",
    b"GET", b"HEAD", b"get", b"PRI", b"CONNECT", b"M-SEARCH", b"G\x00T",
    b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.9", b"HTTP/0.9", b"http://", b"https://evil",
    b"Content-Length: 5\r\n", b"Content-Length: 99999999999\r\n", b"Transfer-Encoding: chunked\r\n",
    b"Transfer-Encoding:\r\n chunked\r\n", b"Connection: close\r\n", b"Expect: 100-continue\r\n",
    b"Range: bytes=0-0,-1,5-,9999999999999999999999-\r\n", b"If-Range: Sun, 06 Nov 1994\r\n",
    b"Host: evil.example\r\n", b"Accept-Encoding: br;q=1e9\r\n", b"X: " + b"a" * 17000 + b"\r\n",
]  # fmt: skip


def mutate(draw: st.DrawFn, data: bytearray, most: int) -> bytes:
    """Up to `most` insertions, deletions, replacements and duplications."""
    for _ in range(draw(st.integers(0, most))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["insert", "delete", "replace", "repeat"]))
        piece = draw(st.sampled_from(TOKENS) | st.binary(min_size=1, max_size=8))
        size = draw(st.integers(1, 12))
        if kind == "insert":
            data[at:at] = piece
        elif kind == "delete":
            del data[at : at + size]
        elif kind == "replace":
            data[at : at + len(piece)] = piece
        else:
            data[at:at] = data[at : at + size] * draw(st.integers(1, 3))
    return bytes(data)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid request, bent a few bytes at a time."""
    return mutate(draw, bytearray(draw(st.sampled_from(SEEDS))), most=6)


# The parts of a request, for requests that are well-formed but semantically hostile:
# odd methods, targets with every encoding trick, and headers whose values are edge cases.
METHODS = [b"GET", b"HEAD", b"OPTIONS", b"POST", b"PUT", b"DELETE", b"CONNECT", b"TRACE",
           b"PRI", b"get", b"M-SEARCH", b"BREW", b"G\x00T", b"", b"A" * 300]  # fmt: skip
SEGMENTS = [b"hello.txt", b"big.bin", b"sub", b"empty", b"index.html", b"", b".", b"..",
            b"%2e%2e", b"%2E.", b"%2f", b"%5c", b"%00", b"%ff", b"%c0%ae", b"%e2%80%ae",
            b"%ef%bc%8e", b".git", b".well-known", b".secret", b"~", b"%", b"%%41", b"%252e",
            b"a" * 300, b"\xc3\xa9", b"con", b"canary.txt"]  # fmt: skip
PREFIXES = [b"/", b"/", b"/", b"//", b"///", b"http://localhost/", b"HTTP://127.0.0.1:1/",
            b"https://evil.example/", b"ftp://x/", b"*", b""]  # fmt: skip
SUFFIXES = [b"", b"", b"/", b"?", b"?a=1&b=%0d%0a", b"#frag", b"?//evil.example", b";x"]
VERSIONS = [b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.2", b"HTTP/2.0", b"HTTP/0.9",
            b"HTTP/1.1x", b""]  # fmt: skip
HEADERS = {
    b"Host": [b"localhost", b"127.0.0.1:8000", b"[::1]", b"evil.example", b"", b"a.localhost",
              b"localhost:99999999999999999999", b"[::1"],
    b"Range": [b"bytes=0-0", b"bytes=-0", b"bytes=5-1", b"bytes=" + b"9" * 5000 + b"-",
               b"bytes=0-1," * 40, b"bytes=-1,-1,-1", b"bytes=--1", b"items=0-1", b"bytes="],
    b"If-Range": [b'"x"', b'W/"x"', b"Sun, 06 Nov 1994 08:49:37 GMT", b"Sun, 06 Nov 99999"],
    b"If-None-Match": [b"*", b'"a", W/"b"', b'"', b",,,", b"W/"],
    b"If-Match": [b"*", b'"a"', b'W/"a"'],
    b"If-Modified-Since": [b"Sun, 06 Nov 1994 08:49:37 GMT", b"Fri, 31 Dec 9999 23:59:59 GMT",
                           b"Mon, 01 Jan 10000 00:00:00 GMT", b"yesterday", b"-1"],
    b"If-Unmodified-Since": [b"Thu, 01 Jan 1970 00:00:00 GMT", b"0"],
    b"Accept": [b"application/json", b"text/html;q=0", b"*/*;q=9" + b"9" * 5000, b";;;"],
    b"Accept-Encoding": [b"gzip, br", b"br;q=0", b"*;q=1e9", b"gzip;q=nan", b"identity;q=0"],
    b"Content-Length": [b"0", b"5", b"-1", b"+1", b"9" * 25, b"1048577", b"1, 1"],
    b"Transfer-Encoding": [b"chunked", b"gzip, chunked", b"identity", b"chunked, chunked"],
    b"Connection": [b"close", b"keep-alive", b"upgrade", b"close, close"],
    b"Expect": [b"100-continue", b"200-ok"],
    b"Origin": [b"null", b"http://evil.example"],
    b"Access-Control-Request-Method": [b"GET", b"BREW"],
    b"User-Agent": [b"\x1b[2J", b"a\x9bb", b'"\\'],
}  # fmt: skip
BODIES = [b"", b"", b"hello", b"5\r\nhello\r\n0\r\n\r\n", b"0\r\n\r\n"]


@st.composite
def crafted(draw: st.DrawFn) -> bytes:
    """A request built from hostile parts, then perhaps bent a little too."""
    segments = draw(st.lists(st.sampled_from(SEGMENTS), max_size=6))
    target = draw(st.sampled_from(PREFIXES)) + b"/".join(segments)
    target += draw(st.sampled_from(SUFFIXES))
    line = b" ".join([draw(st.sampled_from(METHODS)), target, draw(st.sampled_from(VERSIONS))])
    names = draw(st.lists(st.sampled_from(sorted(HEADERS)), max_size=6))
    fields = [b"%s: %s" % (name, draw(st.sampled_from(HEADERS[name]))) for name in names]
    if draw(st.booleans()):
        fields.insert(0, b"Host: localhost")
    end = draw(st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n"]))
    head = end.join([line, *fields]) + end + end
    return mutate(draw, bytearray(head + draw(st.sampled_from(BODIES))), most=2)


BENT = st.one_of(
    mutated(),
    st.binary(max_size=300),  # pure noise
    st.lists(st.sampled_from(TOKENS), max_size=12).map(b"".join),  # plausible noise
    st.tuples(mutated(), mutated()).map(b"".join),  # pipelined mutants
)
CUTS = st.lists(st.integers(1, 64), max_size=8)  # where the bytes are split between sends
FUZZ = settings(
    derandomize=True,  # the same examples on every run: CI is repeatable
    max_examples=1000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3}) ")


def send_cut(sock: socket.socket, data: bytes, cuts: list[int]) -> None:
    """Send `data` in pieces of the given sizes (the rest in one go), then half-close."""
    view = memoryview(data)
    for size in cuts:
        if not view:
            break
        sock.sendall(view[:size])
        view = view[size:]
    # The server may already have hung up (a reset, or ENOTCONN from shutdown() after one).
    with contextlib.suppress(OSError):
        sock.sendall(view)
        sock.shutdown(socket.SHUT_WR)  # so every partial request ends now, not at a deadline


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    with contextlib.suppress(ConnectionResetError):  # a refusal with bytes still unread
        while chunk := sock.recv(1 << 20):
            chunks.append(chunk)
    return b"".join(chunks)


def check_answer(server: Running, request: bytes, cuts: list[int]) -> None:
    with server.connect() as sock:
        send_cut(sock, request, cuts)
        answer = read_all(sock)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 "), answer[:200]
    statuses = [int(s) for s in STATUS_LINE.findall(answer)]
    assert 500 not in statuses, answer[:500]
    log = server.log.getvalue()
    assert "Traceback" not in log and "error while serving" not in log, (request, log[-3000:])


def still_serving(server: Running) -> None:
    with server.connect() as sock:
        sock.sendall(HELLO)
        assert Reader(sock).response().body == b"hello, world\n"


@pytest.fixture
def fuzzed(serve: Callable[..., Running]) -> Running:
    # A partial request is ended by the half-close; the deadlines only bound what slips by.
    return serve(head_timeout=2.0, idle_timeout=2.0, linger_seconds=0.2)


@FUZZ
@given(request=BENT, cuts=CUTS)
def test_bent_requests_never_crash_the_server(
    fuzzed: Running, request: bytes, cuts: list[int]
) -> None:
    check_answer(fuzzed, request, cuts)
    still_serving(fuzzed)


@settings(FUZZ, max_examples=2000)
@given(request=crafted(), cuts=CUTS)
def test_crafted_requests_never_crash_the_server(
    fuzzed: Running, request: bytes, cuts: list[int]
) -> None:
    check_answer(fuzzed, request, cuts)
    still_serving(fuzzed)


@settings(FUZZ, max_examples=300)
@given(request=st.one_of(BENT, crafted()), cuts=CUTS)
def test_fuzzed_requests_on_a_kept_alive_connection(
    fuzzed: Running, request: bytes, cuts: list[int]
) -> None:
    """After a good request on the same connection: h11's state after a keep-alive cycle is
    a different starting point than a fresh connection's."""
    check_answer(fuzzed, HELLO + request, cuts)
    still_serving(fuzzed)
