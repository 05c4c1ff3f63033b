"""Hostile and broken clients, and a stop while they are at it: an attack table of traversal,
open-redirect, smuggling and malformed-head shapes, each with its exact answer and never a
byte from outside the root; clients and files that change under a response; a crash in one
connection; and a download that a SIGTERM must let finish.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import re
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .conftest import BIG_SIZE, TIMEOUT, Reader, Response, Running, send_in_pieces, wait_until

CANARY = b"CANARY-OUTSIDE-THE-ROOT"  # conftest's `site` puts it in canary.txt, beside the root
HOST = b"Host: localhost\r\n"
HELLO = b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n"
MIB = 1024 * 1024


def get(target: bytes, *headers: bytes, method: bytes = b"GET") -> bytes:
    return b"%s %s HTTP/1.1\r\n%s%s\r\n" % (method, target, HOST, b"".join(headers))


def read_all(sock: socket.socket) -> bytes:
    """Everything until EOF; a reset counts as the end too."""
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def pieces(seed: int) -> Iterator[int]:
    rng = random.Random(seed)
    return iter(lambda: rng.randint(1, 40), None)


def clean_log(server: Running) -> None:
    log = server.log.getvalue()
    assert "Traceback" not in log, log
    assert "error while serving" not in log, log
    assert '" 500 ' not in log, log


# --- the attack table ----------------------------------------------------------------------

# (request, the statuses answered in order, then "close" or "alive"). "alive" means the
# connection is still usable afterwards: a normal request on it is answered with 200.
ATTACKS = {
    # Traversal: every spelling of "one folder up" is a 404, never the file beside the root.
    "dotdot": (get(b"/../canary.txt"), [404], "alive"),
    "dotdot-deep": (get(b"/" + b"../" * 40 + b"canary.txt"), [404], "alive"),
    "dotdot-in-sub": (get(b"/sub/../../canary.txt"), [404], "alive"),
    "dot-dotdot-dot": (get(b"/./.././canary.txt"), [404], "alive"),
    "encoded-dots": (get(b"/%2e%2e/canary.txt"), [404], "alive"),
    "encoded-dots-upper": (get(b"/%2E%2E/canary.txt"), [404], "alive"),
    "encoded-slash": (get(b"/..%2fcanary.txt"), [404], "alive"),
    "all-encoded": (get(b"/%2e%2e%2f%2e%2e%2fcanary.txt"), [404], "alive"),
    "double-encoded": (get(b"/%252e%252e/canary.txt"), [404], "alive"),  # decoded once only
    "overlong-utf8-dot": (get(b"/%c0%ae%c0%ae/canary.txt"), [400], "alive"),  # invalid UTF-8
    "fullwidth-dots": (get(b"/%ef%bc%8e%ef%bc%8e/canary.txt"), [404], "alive"),
    "backslash": (get(b"/..\\canary.txt"), [400], "alive"),
    "encoded-backslash": (get(b"/..%5ccanary.txt"), [400], "alive"),
    "nul-extension": (get(b"/canary.txt%00.html"), [400], "alive"),
    "tomcat-semicolon": (get(b"/..;/canary.txt"), [404], "alive"),
    "absolute-form-dotdot": (get(b"http://localhost/../canary.txt"), [404], "alive"),
    "https-absolute-dotdot": (get(b"https://localhost/%2e%2e/canary.txt"), [404], "alive"),
    "link-out-of-root": (get(b"/escape"), [404], "alive"),  # a symlink to ../canary.txt
    "link-in-sub": (get(b"/sub/escape-dir/canary.txt"), [404], "alive"),  # a link to ..
    "head-dotdot": (get(b"/../canary.txt", method=b"HEAD"), [404], "alive"),
    "range-dotdot": (get(b"/%2e%2e/canary.txt", b"Range: bytes=0-\r\n"), [404], "alive"),
    "dotfile": (get(b"/.secret"), [404], "alive"),
    "git": (get(b"/.git/config"), [404], "alive"),
    # Open redirects: /dir -> /dir/ is built from the normalised path (CPython gh-87389).
    "redirect-double-slash": (get(b"//evil.example/../sub"), [301], "alive"),
    "redirect-triple-slash": (get(b"///evil.example/../sub"), [301], "alive"),
    "redirect-encoded-slashes": (get(b"/%2f%2fevil.example/../sub"), [301], "alive"),
    "redirect-all-encoded": (get(b"/%2f%2fevil.example%2f..%2fsub"), [301], "alive"),
    "redirect-absolute-form": (get(b"http://localhost//evil.example/../sub"), [301], "alive"),
    "redirect-backslash": (get(b"/\\evil.example/../sub"), [400], "alive"),
    "redirect-encoded-backslash": (get(b"/%5cevil.example/../sub"), [400], "alive"),
    "redirect-tab": (get(b"/%09/evil.example/../sub"), [400], "alive"),
    "absolute-form-other-host": (get(b"http://evil.example/sub"), [400], "alive"),
    "header-injection-in-query": (get(b"/sub?%0d%0aSet-Cookie:%20a=b"), [301], "alive"),
    # Smuggling: two framings, or one that a proxy in front could read differently.
    "cl-and-te": (
        get(b"/", b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"),
        [400],
        "close",
    ),
    "te-and-cl": (
        get(b"/", b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"),
        [400],
        "close",
    ),
    "two-different-cl": (get(b"/", b"Content-Length: 4\r\nContent-Length: 5\r\n"), [400], "close"),
    "cl-list": (get(b"/", b"Content-Length: 4, 5\r\n"), [400], "close"),
    "cl-plus": (get(b"/", b"Content-Length: +4\r\n") + b"abcd", [400], "close"),
    "cl-negative": (get(b"/", b"Content-Length: -1\r\n"), [400], "close"),
    "cl-hex": (get(b"/", b"Content-Length: 0x4\r\n") + b"abcd", [400], "close"),
    "cl-huge": (get(b"/", b"Content-Length: " + b"9" * 5000 + b"\r\n"), [400], "close"),
    "cl-over-the-body-limit": (get(b"/", b"Content-Length: %d\r\n" % (MIB + 1)), [413], "close"),
    "te-obs-fold-with-cl": (
        get(b"/", b"Content-Length: 4\r\nTransfer-Encoding:\r\n chunked\r\n") + b"0\r\n\r\n",
        [400],
        "close",
    ),
    # RFC 9112 §6.3: a final coding other than chunked leaves the length unknowable: 400.
    "te-xchunked": (get(b"/", b"Transfer-Encoding: xchunked\r\n") + b"0\r\n\r\n", [400], "close"),
    "te-chunked-twice": (
        get(b"/", b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"),
        [400],
        "close",
    ),
    "te-identity": (get(b"/", b"Transfer-Encoding: identity\r\n"), [400], "close"),
    "te-chunked-then-gzip": (get(b"/", b"Transfer-Encoding: chunked, gzip\r\n"), [400], "close"),
    "te-chunked-and-identity-fields": (
        get(b"/", b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n"),
        [400],
        "close",
    ),
    "te-empty": (get(b"/", b"Transfer-Encoding:\r\n"), [400], "close"),
    "te-space-before-colon": (get(b"/", b"Transfer-Encoding : chunked\r\n"), [400], "close"),
    "te-folded-into-host": (get(b"/", b" Transfer-Encoding: chunked\r\n"), [400], "alive"),
    "bare-lf-cl-and-te": (
        b"GET / HTTP/1.1\nHost: localhost\nContent-Length: 4\nTransfer-Encoding: chunked\n\n",
        [400],
        "close",
    ),
    "bare-cr": (b"GET / HTTP/1.1\rHost: localhost\r\r\n\r\n", [400], "close"),
    # Framings RFC 9112 lets a server accept. A chunked body is not parsed only to be
    # dropped: the answer, then a close, so nothing after it is taken for a request.
    "te-obs-fold": (
        get(b"/", b"Transfer-Encoding:\r\n chunked\r\n") + b"0\r\n\r\n" + HELLO,
        [200],
        "close",
    ),
    "te-upper-case": (
        get(b"/", b"Transfer-Encoding: CHUNKED\r\n") + b"4\r\nGET \r\n0\r\n\r\n" + HELLO,
        [200],
        "close",
    ),
    # Framed exactly: what follows the body is the next request, never part of this one.
    "two-equal-cl": (
        get(b"/", b"Content-Length: 4\r\nContent-Length: 4\r\n") + b"GET " + HELLO,
        [200, 200],
        "alive",
    ),
    "bare-lf": (b"GET / HTTP/1.1\nHost: localhost\n\n" + HELLO, [200, 200], "alive"),
    "chunked-body-over-the-limit": (
        get(b"/", b"Transfer-Encoding: chunked\r\n") + b"200000\r\n" + b"x" * (MIB + 10),
        [200],
        "close",
    ),
    # Other methods, versions and hosts.
    "connect": (b"CONNECT 127.0.0.1:22 HTTP/1.1\r\n" + HOST + b"\r\n", [405], "alive"),
    "connect-with-body": (
        b"CONNECT 127.0.0.1:22 HTTP/1.1\r\n" + HOST + b"Content-Length: 3\r\n\r\nabc",
        [405],
        "close",
    ),
    "authority-form-get": (b"GET 127.0.0.1:22 HTTP/1.1\r\n" + HOST + b"\r\n", [400], "alive"),
    "trace": (get(b"/", b"Cookie: secret=XYZZY\r\n", method=b"TRACE"), [405], "alive"),
    "lower-case-method": (get(b"/", method=b"get"), [501], "alive"),
    "method-with-at": (get(b"/", method=b"G@T"), [400], "close"),
    "http2-preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", [505], "close"),
    "http-2": (b"GET / HTTP/2.0\r\n" + HOST + b"\r\n", [505], "close"),
    "http-0.9": (b"GET /\r\n\r\n", [400], "close"),
    "http-1.10": (b"GET / HTTP/1.10\r\n" + HOST + b"\r\n", [400], "close"),
    "lower-case-version": (b"GET / http/1.1\r\n" + HOST + b"\r\n", [400], "close"),
    "no-host": (b"GET / HTTP/1.1\r\n\r\n", [400], "close"),
    "two-hosts": (get(b"/", b"Host: evil.example\r\n"), [400], "close"),
    "rebinding-host": (b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n", [400], "alive"),
    "rebinding-suffix": (b"GET / HTTP/1.1\r\nHost: localhost.evil.example\r\n\r\n", [400], "alive"),
    # RFC 9112 §3.2.2: with an absolute-form target the server ignores Host and uses the
    # target's authority, which here names this machine.
    "host-ignored-for-absolute-form": (
        b"GET http://localhost/hello.txt HTTP/1.1\r\nHost: evil.example\r\n\r\n",
        [200],
        "alive",
    ),
    "absolute-form-names-other-host": (
        b"GET http://evil.example/hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n",
        [400],
        "alive",
    ),
    "http-1.0-absolute-other-host": (b"GET http://evil.example/ HTTP/1.0\r\n\r\n", [400], "close"),
    "star-with-get": (get(b"*"), [400], "alive"),
    # A Host that is not `host [":" port]` (RFC 3986 §3.2.2) is a 400 (RFC 9112 §3.2).
    "host-port-not-digits": (b"GET / HTTP/1.1\r\nHost: localhost:evil\r\n\r\n", [400], "alive"),
    "host-with-userinfo": (
        b"GET / HTTP/1.1\r\nHost: localhost:8000@evil.com\r\n\r\n",
        [400],
        "alive",
    ),
    "host-port-then-name": (
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1:80.evil.com\r\n\r\n",
        [400],
        "alive",
    ),
    "host-unclosed-bracket": (b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", [400], "alive"),
    "host-two-ports": (b"GET / HTTP/1.1\r\nHost: localhost:1:2\r\n\r\n", [400], "alive"),
    "absolute-form-with-userinfo": (
        b"GET http://localhost:8000@evil.com/hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n",
        [400],
        "alive",
    ),
    "absolute-form-empty-host": (get(b"http:///hello.txt"), [400], "alive"),
    "host-ipv6-with-port": (b"GET /hello.txt HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", [200], "alive"),
    # Paths normalise as RFC 3986 §5.2.4 says: /file/. is /file/, a folder that is not there.
    "file-then-dot": (get(b"/hello.txt/."), [404], "alive"),
    "file-then-dotdot": (get(b"/sub/x/.."), [200], "alive"),
    # A % not followed by two hex digits is not a URI (RFC 3986 §2.1).
    "percent-alone": (get(b"/100%.txt"), [400], "alive"),
    "percent-one-digit": (get(b"/a%2"), [400], "alive"),
    "percent-not-hex": (get(b"/a%zz"), [400], "alive"),
    "script-in-target": (get(b"/<script>alert(1)</script>"), [404], "alive"),
    "script-in-query": (get(b"/sub?<script>alert(1)</script>"), [301], "alive"),
    # Refusals of HEAD: the error page's headers, no body (h11 would refuse one).
    "head-http-2": (b"HEAD / HTTP/2.0\r\n" + HOST + b"\r\n", [505], "close"),
    "head-cl-and-te": (
        get(b"/", b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", method=b"HEAD"),
        [400],
        "close",
    ),
    "head-body-too-big": (
        get(b"/", b"Content-Length: %d\r\n" % (MIB + 1), method=b"HEAD"),
        [413],
        "close",
    ),
    "head-101-fields": (
        get(b"/", b"".join(b"X-%d: 1\r\n" % i for i in range(101)), method=b"HEAD"),
        [431],
        "close",
    ),
    # Oversized and malformed heads.
    "long-header-value": (get(b"/", b"X-Big: " + b"a" * 17000 + b"\r\n"), [431], "close"),
    "long-target": (get(b"/" + b"a" * 20000), [431], "close"),
    "long-method": (get(b"/", method=b"A" * 20000), [431], "close"),
    "101-header-fields": (
        get(b"/", b"".join(b"X-%d: 1\r\n" % i for i in range(101))),
        [431],
        "close",
    ),
    "10000-tiny-fields": (get(b"/", b"X:1\r\n" * 10000), [431], "close"),
    "space-in-name": (get(b"/", b"X Y: z\r\n"), [400], "close"),
    "no-colon": (get(b"/", b"Bad Header\r\n"), [400], "close"),
    "nul-in-value": (get(b"/", b"X: a\x00b\r\n"), [400], "close"),
    "cr-in-value": (get(b"/", b"X: a\rb\r\n"), [400], "close"),
    "whitespace-line": (b"GET / HTTP/1.1\r\n  \r\n" + HOST + b"\r\n", [400], "close"),
    "two-spaces-in-line": (b"GET  / HTTP/1.1\r\n" + HOST + b"\r\n", [400], "close"),
    "space-in-target": (get(b"/a b"), [400], "close"),
    "raw-high-bytes": (get(b"/\xff\xfe"), [400], "close"),
    "expect-100-too-big": (
        get(b"/", b"Expect: 100-continue\r\nContent-Length: %d\r\n" % (5 * MIB)),
        [413],
        "close",
    ),
}
# What a redirect in the table may point to: the normalised path, on this site.
LOCATIONS = {"/sub/", "/sub/?%0d%0aSet-Cookie:%20a=b", "/sub/?%3Cscript%3Ealert(1)%3C/script%3E"}


@pytest.fixture
def attacked(serve: Callable[..., Running], site: Path) -> Running:
    """A server whose site holds links out of the root and a dotfile, with short timeouts."""
    (site / "escape").symlink_to(site.parent / "canary.txt")
    (site / "sub" / "escape-dir").symlink_to(site.parent, target_is_directory=True)
    (site / ".secret").write_bytes(CANARY)
    return serve(linger_seconds=0.5)


def responses(reader: Reader, request: bytes, count: int) -> list[Response]:
    head_only = request.startswith(b"HEAD ")  # (the table has one request per HEAD)
    return [reader.response(head_only) for _ in range(count)]


@pytest.mark.parametrize("split", ["whole", "pieces"])
@pytest.mark.parametrize("name", list(ATTACKS))
def test_attack(attacked: Running, name: str, split: str) -> None:
    request, statuses, ending = ATTACKS[name]
    with attacked.connect() as sock:
        try:
            send_in_pieces(sock, request, pieces(len(name)) if split == "pieces" else None)
        except (BrokenPipeError, ConnectionResetError):
            # Answered and closed while the rest was still on its way: the server lingers
            # for a body it will not read only so long, and a slow sender (a megabyte in
            # 40-byte pieces on a busy machine) outlasts it. The answer is already here.
            assert ending == "close"
        reader = Reader(sock)
        answers = responses(reader, request, len(statuses))
        assert [answer.status for answer in answers] == statuses
        raw = b"".join(answer.raw_head + answer.body for answer in answers)
        if ending == "close":
            if answers[-1].status >= 400:  # (a 200 can be sent before the body is refused)
                assert answers[-1].headers["connection"] == "close"
            assert reader.closed()
        else:
            sock.sendall(HELLO)
            after = reader.response()
            assert after.status == 200, "the connection was not kept usable"
            raw += after.raw_head + after.body
        raw += bytes(reader.buffer)
    assert CANARY not in raw
    assert b"XYZZY" not in raw  # TRACE never echoes the request (cookies included)
    assert b"<script>" not in raw  # nothing from the request is echoed unescaped
    assert b"\r\nSet-Cookie" not in raw
    for answer in answers:
        if answer.status == 301:
            assert answer.headers["location"] in LOCATIONS, answer.headers["location"]
    clean_log(attacked)


def test_attack_table_leaves_the_server_serving(attacked: Running) -> None:
    """The whole table on one connection after another, as fast as it goes, then a normal
    request: nothing the table did has stuck to the server."""
    for request, _, _ in ATTACKS.values():
        with attacked.connect() as sock:
            sock.sendall(request)
            sock.shutdown(socket.SHUT_WR)
            assert CANARY not in read_all(sock)
    with attacked.connect() as sock:
        sock.sendall(HELLO)
        assert Reader(sock).response().body == b"hello, world\n"
    assert wait_until(lambda: not attacked.server.clients)
    clean_log(attacked)


# --- clients and files that change under a response ----------------------------------------


def small_window(server: Running) -> socket.socket:
    """A client with a small receive buffer, so a big answer stays in flight for a while."""
    sock = socket.socket()
    sock.settimeout(TIMEOUT)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    sock.connect(("127.0.0.1", server.port))
    return sock


def read_head(sock: socket.socket) -> tuple[dict[str, str], bytes]:
    """The response head as headers, and whatever part of the body came with it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed mid-head: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK", lines[0]
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return headers, body


def read_exactly(sock: socket.socket, count: int) -> bytes:
    data = bytearray()
    while len(data) < count:
        chunk = sock.recv(min(65536, count - len(data)))
        assert chunk, f"closed after {len(data)} of {count} bytes"
        data += chunk
    return bytes(data)


@pytest.mark.parametrize("use_sendfile", [True, False], ids=["sendfile", "read-send"])
def test_client_reset_mid_file(serve: Callable[..., Running], use_sendfile: bool) -> None:
    server = serve(use_sendfile=use_sendfile)
    with small_window(server) as sock:
        sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
        read_head(sock)
        # SO_LINGER 0: close() sends RST instead of FIN, as a crashed client does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    assert wait_until(lambda: not server.server.clients), "the reset connection was kept"
    with server.connect() as sock:
        sock.sendall(HELLO)
        assert Reader(sock).response().status == 200
    clean_log(server)


@pytest.mark.parametrize("use_sendfile", [True, False], ids=["sendfile", "read-send"])
def test_file_truncated_while_sent(
    serve: Callable[..., Running], site: Path, use_sendfile: bool
) -> None:
    """The promised Content-Length can no longer be kept: the connection ends (the client
    sees a short body and EOF), quietly, and the server goes on serving."""
    original = random.Random(5).randbytes(8 * MIB)
    path = site / "shrinks.bin"
    path.write_bytes(original)
    server = serve(use_sendfile=use_sendfile)
    with small_window(server) as sock:
        sock.sendall(b"GET /shrinks.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
        headers, body = read_head(sock)
        assert headers["content-length"] == str(len(original))
        body += read_exactly(sock, 64 * 1024)
        with open(path, "r+b") as file:
            file.truncate(MIB)
        body += read_all(sock)  # ends early: EOF (or a reset), not a hang
    assert MIB <= len(body) < len(original)
    assert body == original[: len(body)]  # what came was the file's bytes, in order
    assert wait_until(lambda: not server.server.clients)
    with server.connect() as sock:
        sock.sendall(HELLO)
        assert Reader(sock).response().status == 200
    clean_log(server)


@pytest.mark.parametrize("use_sendfile", [True, False], ids=["sendfile", "read-send"])
def test_file_grown_while_sent_stops_at_the_promised_length(
    serve: Callable[..., Running], site: Path, use_sendfile: bool
) -> None:
    original = random.Random(6).randbytes(4 * MIB)
    path = site / "grows.bin"
    path.write_bytes(original)
    server = serve(use_sendfile=use_sendfile)
    with small_window(server) as sock:
        sock.sendall(b"GET /grows.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
        headers, body = read_head(sock)
        assert headers["content-length"] == str(len(original))
        with open(path, "ab") as file:
            file.write(b"Z" * MIB)
        body += read_exactly(sock, len(original) - len(body))
        assert body == original
        # Not one byte more: the next answer on this connection starts right after.
        sock.sendall(HELLO)
        assert Reader(sock).response().body == b"hello, world\n"
    clean_log(server)


def test_half_closed_client_gets_a_whole_big_file(server: Running, site: Path) -> None:
    expected = (site / "big.bin").read_bytes()
    with server.connect() as sock:
        sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n" + HELLO)
        sock.shutdown(socket.SHUT_WR)  # nothing more to say, but both answers are wanted
        reader = Reader(sock)
        assert reader.response().body == expected
        assert reader.response().body == b"hello, world\n"
        assert reader.closed()
    assert len(expected) == BIG_SIZE
    clean_log(server)


def test_a_crash_in_one_connection_leaves_the_others_served(
    server: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our bug, not the client's: 500 and a logged traceback for that connection only."""
    real = server.server.shared.respond

    def respond(request, *args, **kwargs):  # type: ignore[no-untyped-def]
        if request.target == "/boom":
            raise RuntimeError("a bug in the server")
        return real(request, *args, **kwargs)

    monkeypatch.setattr(server.server.shared, "respond", respond)
    with server.connect() as before:
        before.sendall(HELLO)
        reader = Reader(before)
        assert reader.response().status == 200
        with server.connect() as sock:
            sock.sendall(get(b"/boom"))
            crashed = Reader(sock)
            answer = crashed.response()
            assert answer.status == 500
            assert answer.headers["connection"] == "close"
            assert crashed.closed()
        before.sendall(HELLO)  # kept alive through someone else's crash
        assert reader.response().status == 200
    log = server.log.getvalue()
    assert log.count("Traceback") == 1, log
    assert "RuntimeError: a bug in the server" in log
    # Expected here, so taken out of the log the fixture checks for tracebacks.
    server.log.seek(0)
    server.log.truncate()


# --- graceful drain ------------------------------------------------------------------------


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT):
            return True
    except (ConnectionRefusedError, ConnectionResetError):
        return False


@pytest.mark.skipif(not hasattr(signal, "SIGTERM"), reason="no SIGTERM here")
def test_sigterm_lets_a_big_download_finish_byte_exact(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    data = random.Random(8).randbytes(16 * MIB)
    (root / "drain.bin").write_bytes(data)
    process = subprocess.Popen(
        [sys.executable, "-m", "tinyhttp", str(root), "--port", "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        match = re.search(rb"http://127\.0\.0\.1:(\d+)/", process.stdout.readline())
        assert match, process.stderr.read() if process.poll() is not None else b""
        port = int(match[1])
        with socket.socket() as sock:
            sock.settimeout(TIMEOUT)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            sock.connect(("127.0.0.1", port))
            sock.sendall(b"GET /drain.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
            headers, body = read_head(sock)
            assert headers["content-length"] == str(len(data))
            body += read_exactly(sock, MIB)  # well under way, and far from done
            process.send_signal(signal.SIGTERM)
            assert wait_until(lambda: not listening(port)), "still accepting after SIGTERM"
            assert process.poll() is None, "exited with a download in flight"
            body += read_all(sock)
        assert len(body) == len(data)
        assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(TIMEOUT)
    assert process.returncode == 0, stderr
    assert stdout.decode().splitlines()[-1] == "Stopped."
    assert b"Traceback" not in stderr, stderr.decode(errors="replace")
