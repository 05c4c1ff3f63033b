"""HTTPS end to end: tinyhttp's whole server behind TLS, with real clients.

The server runs in a thread, on 127.0.0.1 port 0, with a context from tinyhttp.tls and a
certificate for localhost and 127.0.0.1 signed by a throwaway trustme CA. The clients are the
ones people use: requests, curl, `openssl s_client`, Python's ssl sockets (for what the
others cannot do: slow reads, pipelining, a request in 1-byte records, half a ClientHello),
the command line as a process, and headless Chromium. Every socket call has a timeout, and
every wait polls against a deadline.
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import itertools
import os
import random
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest
import requests
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tinyhttp.tls import server_context

from . import support
from .conftest import (
    BIG_SIZE,
    INDEX,
    Reader,
    Response,
    Running,
    send_in_pieces,
    servers,
    wait_until,
)

TIMEOUT = 10.0  # every socket call and every wait gives up after this long
PASSWORD = b"correct horse battery staple"
HUGE_SIZE = 8 * 1024 * 1024 + 5  # many TLS records, many sends, odd at the end
MEDIUM_SIZE = 200 * 1024 + 3  # over the small-file size: sent as a file, not with the head
ECHO = "/.well-known/tinyhttp/echo"
RELOAD = "/.well-known/tinyhttp/reload"

needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="no curl command")
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command")


# --- certificates --------------------------------------------------------------------------


@dataclass
class PKI:
    ca: Path  # the CA certificate, which clients trust
    cert: Path  # the server's certificate: localhost and 127.0.0.1
    key: Path
    other_key: Path  # the key of another certificate
    encrypted: Path  # `key`, encrypted with PASSWORD
    wrong_password: Path  # a password file whose first line is not PASSWORD
    spki: str  # base64 SHA-256 of the certificate's SubjectPublicKeyInfo (for Chromium)
    folder: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    folder = tmp_path_factory.mktemp("https-pki")
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    key_pem = leaf.private_key_pem.bytes()
    key = serialization.load_pem_private_key(key_pem, password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(PASSWORD),
    )
    cert_pem = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    files = {
        "ca": ca.cert_pem.bytes(),
        "cert": cert_pem,
        "key": key_pem,
        "other_key": ca.issue_cert("localhost").private_key_pem.bytes(),
        "encrypted": encrypted,
        "wrong_password": b"Tr0ub4dor&3\n",
    }
    paths = {name: folder / f"{name}.pem" for name in files}
    for name, data in files.items():
        paths[name].write_bytes(data)
    public = x509.load_pem_x509_certificate(cert_pem).public_key()
    spki = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    fingerprint = base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")
    return PKI(folder=folder, spki=fingerprint, **paths)


@pytest.fixture(scope="module")
def context(pki: PKI) -> ssl.SSLContext:
    """The server's context, as --tls-cert and --tls-key make it."""
    return server_context(str(pki.cert), str(pki.key))


def client_context(pki: PKI, version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """A client that trusts the test CA and offers ALPN http/1.1; `version` pins the TLS
    version."""
    context = ssl.create_default_context(cafile=str(pki.ca))
    if version is not None:
        context.minimum_version = context.maximum_version = version
    context.set_alpn_protocols(["http/1.1"])
    return context


def client_hello(pki: PKI) -> bytes:
    """A real ClientHello: the first bytes an ssl.SSLObject client writes, over memory BIOs."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = client_context(pki).wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    assert hello[0] == 0x16 and len(hello) > 100, hello[:16]
    return hello


# --- the server, and clients ---------------------------------------------------------------


@pytest.fixture
def serve_tls(site: Path, context: ssl.SSLContext) -> Iterator[Callable[..., Running]]:
    """conftest's `serve`, over HTTPS."""
    with servers(site, tls=context) as start:
        yield start


@pytest.fixture
def https(serve_tls: Callable[..., Running]) -> Running:
    """An HTTPS server with the default configuration."""
    return serve_tls()


@pytest.fixture
def huge(site: Path) -> bytes:
    """huge.bin in the site: 8 MiB of random bytes."""
    data = random.Random(8).randbytes(HUGE_SIZE)
    (site / "huge.bin").write_bytes(data)
    return data


def tcp_connect(port: int, rcvbuf: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:  # before connect(), so the window is small from the start
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # each small write goes at once
    sock.settimeout(TIMEOUT)
    sock.connect(("127.0.0.1", port))
    return sock


def tls_connect(
    run: Running, pki: PKI, rcvbuf: int = 0, context: ssl.SSLContext | None = None
) -> ssl.SSLSocket:
    """A TLS client socket to the server, handshake done, verified as localhost."""
    context = context or client_context(pki)
    return context.wrap_socket(tcp_connect(run.port, rcvbuf), server_hostname="localhost")


def head(target: str, *headers: str) -> bytes:
    """A GET request's head for `target` on localhost, with more header lines."""
    extra = "".join(f"{h}\r\n" for h in headers)
    return f"GET {target} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n".encode("latin-1")


def fetch(run: Running, pki: PKI, target: str, *headers: str) -> Response:
    """One request over its own TLS connection."""
    with tls_connect(run, pki) as tls:
        tls.sendall(head(target, *headers))
        return Reader(tls).response()


def read_to_end(sock: socket.socket) -> bytes:
    """Everything until the server closes (EOF, or a reset: both are a close)."""
    received = bytearray()
    try:
        while piece := sock.recv(65536):
            received += piece
    except ConnectionResetError:
        pass
    return bytes(received)


def https_url(run: Running, path: str = "/") -> str:
    return f"https://127.0.0.1:{run.port}{path}"


def site_bytes(site: Path, name: str) -> bytes:
    return (site / name).read_bytes()


# --- 1. requests ---------------------------------------------------------------------------


def test_requests_gets_exact_bytes_over_one_kept_alive_connection(
    serve_tls: Callable[..., Running], pki: PKI, site: Path
) -> None:
    run = serve_tls(trace=True)  # the tracer counts accepted connections
    with requests.Session() as session:
        # verify= on each call: a session's own `verify` loses to $REQUESTS_CA_BUNDLE.
        for path, name in [
            ("/", "index.html"),
            ("/hello.txt", "hello.txt"),
            ("/big.bin", "big.bin"),
            ("/sub/", "sub/index.html"),
            ("/style.css", "style.css"),
        ]:
            answer = session.get(https_url(run, path), verify=str(pki.ca), timeout=TIMEOUT)
            assert answer.status_code == 200, path
            assert answer.content == site_bytes(site, name), path
            assert answer.headers["Content-Length"] == str(len(answer.content))
        assert len(site_bytes(site, "big.bin")) == BIG_SIZE
    assert run.server.tracer is not None
    assert run.server.tracer.count == 1, "requests did not reuse its one connection"


# --- 2. curl -------------------------------------------------------------------------------


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", str(TIMEOUT), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=TIMEOUT + 5,
    )


@needs_curl
def test_curl_by_address_and_by_name(https: Running, pki: PKI, site: Path) -> None:
    by_address = curl("--cacert", str(pki.ca), https_url(https, "/hello.txt"))
    assert by_address.returncode == 0, by_address.stderr
    assert by_address.stdout == b"hello, world\n"
    # --resolve: the name, its certificate check and its Host header, without a try at ::1.
    url = f"https://localhost:{https.port}/"
    resolve = f"localhost:{https.port}:127.0.0.1"
    by_name = curl("--cacert", str(pki.ca), "--resolve", resolve, url)
    assert by_name.returncode == 0, by_name.stderr
    assert by_name.stdout == INDEX


@needs_curl
def test_curl_with_a_wrong_host_gets_the_400_plain_http_gets(
    https: Running, serve: Callable[..., Running], pki: PKI
) -> None:
    plain = serve()
    answers = []
    for url, tls in [(https_url(https), ["--cacert", str(pki.ca)]), (plain.url, [])]:
        result = curl(*tls, "-H", "Host: attacker.example", "-w", "\n%{http_code}", url)
        assert result.returncode == 0, result.stderr
        body, _, status = result.stdout.rpartition(b"\n")
        answers.append((status, body))
    assert answers[0][0] == b"400"
    assert answers[0] == answers[1]


# --- 3. openssl s_client -------------------------------------------------------------------


def read_until(stream: IO[bytes], wanted: bytes, deadline: float) -> bytes:
    """A process's output until `wanted` shows up, each wait bounded by the deadline."""
    seen = b""
    while wanted not in seen:
        left = deadline - time.monotonic()
        assert left > 0 and select.select([stream], [], [], left)[0], f"no {wanted!r}: {seen!r}"
        piece = os.read(stream.fileno(), 65536)
        assert piece, f"the output ended before {wanted!r}: {seen!r}"
        seen += piece
    return seen


@needs_openssl
def test_openssl_s_client_tls13_alpn_and_a_request(https: Running, pki: PKI) -> None:
    command = ["openssl", "s_client", "-connect", f"127.0.0.1:{https.port}"]
    command += ["-servername", "localhost", "-tls1_3", "-alpn", "http/1.1"]
    command += ["-CAfile", str(pki.ca), "-verify_return_error"]
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdin and process.stdout and process.stderr
    try:
        deadline = time.monotonic() + TIMEOUT
        out = read_until(process.stdout, b"\n---\n", deadline)  # the session's summary
        process.stdin.write(head("/hello.txt"))  # kept alive: s_client leaves, not the server
        process.stdin.flush()
        out += read_until(process.stdout, b"\r\n\r\nhello, world\n", deadline)
        process.stdin.close()  # end of input: s_client sends close_notify and exits
        status = process.wait(TIMEOUT)
        err = process.stderr.read()  # a few lines; the process has exited
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(TIMEOUT)
        for pipe in (process.stdin, process.stdout, process.stderr):
            pipe.close()
    text = out.decode("latin-1")
    assert status == 0, text + err.decode("latin-1")
    assert re.search(r"^New, TLSv1\.3, Cipher is TLS_\w+$", text, re.MULTILINE), text
    assert "ALPN protocol: http/1.1" in text, text
    assert "Verify return code: 0 (ok)" in text, text
    answer = text[text.index("HTTP/1.1 ") :]
    assert answer.startswith("HTTP/1.1 200 OK\r\n"), answer
    assert "\r\nContent-Length: 13\r\n" in answer
    assert answer.endswith("\r\n\r\nhello, world\n"), answer


# --- the end of a connection: close_notify -------------------------------------------------


# RFC 8446 §6.1: "Each party MUST send a close_notify alert before closing its write side
# of the connection, unless it has already sent some error alert." However the server ends
# a connection -- the lingering close, or closing outright after `Connection: close`, an
# HTTP/1.0 answer, the idle timeout, the client's own close_notify -- the session ends with
# one. (OpenSSL 3 clients call a bare FIN an error: `openssl s_client` exits 1 with
# "unexpected eof while reading"; Python's ssl raises SSLEOFError from unwrap().)
@pytest.mark.parametrize(
    "ending",
    [
        "connection-close",
        "http-1.0",
        "idle-timeout",
        "the-client-closes-first",
        "malformed-request",  # refused with a 400, then the lingering close
    ],
)
def test_the_server_ends_a_connection_with_close_notify(
    serve_tls: Callable[..., Running], pki: PKI, ending: str
) -> None:
    run = serve_tls(idle_timeout=0.3)
    request = {
        "connection-close": head("/hello.txt", "Connection: close"),
        "http-1.0": b"GET /hello.txt HTTP/1.0\r\nHost: localhost\r\n\r\n",
        "idle-timeout": head("/hello.txt"),
        "the-client-closes-first": head("/hello.txt"),
        "malformed-request": b"GET /hello.txt HTTP/1.1\r\nHost localhost\r\n\r\n",
    }[ending]
    sock = tcp_connect(run.port)
    context = client_context(pki)
    with context.wrap_socket(sock, server_hostname="localhost", suppress_ragged_eofs=False) as tls:
        tls.sendall(request)
        reader = Reader(tls)
        assert reader.response().status in (200, 400)
        try:
            if ending == "the-client-closes-first":
                tls.unwrap()  # ours, then it waits for the server's
            else:
                assert reader.closed()  # b"" only after the server's close_notify
        except ssl.SSLEOFError as error:
            pytest.fail(f"a TCP end without close_notify: {error}")


# --- 4. protocol versions ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["TLSv1", "TLSv1_1"])
def test_tls_1_0_and_1_1_clients_are_refused(https: Running, pki: PKI, name: str) -> None:
    context = client_context(pki)
    try:  # a client that speaks this version only, if this OpenSSL still can
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        with warnings.catch_warnings():  # deprecated indeed: that is the point
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = context.maximum_version = ssl.TLSVersion[name]
    except (ValueError, ssl.SSLError):
        pytest.skip(f"this OpenSSL cannot make a {name} client")
    with pytest.raises(ssl.SSLError) as refused:
        tls_connect(https, pki, context=context).close()
    if "NO_PROTOCOLS_AVAILABLE" in str(refused.value):
        pytest.skip(f"this OpenSSL will not send a {name} ClientHello")
    # The server's alert, not the client's own refusal: the server said no.
    assert "TLSV1_ALERT_PROTOCOL_VERSION" in str(refused.value), refused.value
    assert wait_until(lambda: not https.server.clients)
    assert fetch(https, pki, "/hello.txt").body == b"hello, world\n"


def test_a_tls_1_2_client_works(https: Running, pki: PKI) -> None:
    with tls_connect(https, pki, context=client_context(pki, ssl.TLSVersion.TLSv1_2)) as tls:
        assert tls.version() == "TLSv1.2"
        assert tls.selected_alpn_protocol() == "http/1.1"
        cipher = tls.cipher()
        assert cipher is not None and cipher[0].startswith("ECDHE-"), cipher
        assert "GCM" in cipher[0] or "CHACHA20" in cipher[0], cipher
        tls.sendall(head("/hello.txt"))
        answer = Reader(tls).response()
    assert (answer.status, answer.body) == (200, b"hello, world\n")


# --- 5. large files, ranges, HEAD ----------------------------------------------------------


def test_8_mib_with_requests_and_head(https: Running, pki: PKI, huge: bytes) -> None:
    answer = requests.get(https_url(https, "/huge.bin"), verify=str(pki.ca), timeout=TIMEOUT)
    assert answer.status_code == 200
    assert len(answer.content) == HUGE_SIZE and answer.content == huge
    headed = requests.head(https_url(https, "/huge.bin"), verify=str(pki.ca), timeout=TIMEOUT)
    assert headed.status_code == 200
    assert headed.headers["Content-Length"] == str(HUGE_SIZE)
    assert headed.headers["Accept-Ranges"] == "bytes"
    assert headed.content == b""
    assert headed.headers["ETag"] == answer.headers["ETag"]


def test_8_mib_read_slowly_through_a_small_window(https: Running, pki: PKI, huge: bytes) -> None:
    with tls_connect(https, pki, rcvbuf=8192) as tls:
        tls.sendall(head("/huge.bin"))
        reader = Reader(tls)
        while b"\r\n\r\n" not in reader.buffer:
            assert reader._fill(), "EOF before the head"
        top, _, received = bytes(reader.buffer).partition(b"\r\n\r\n")
        assert top.startswith(b"HTTP/1.1 200 OK\r\n")
        assert f"\r\nContent-Length: {HUGE_SIZE}".encode() in top
        body = bytearray(received)
        while len(body) < HUGE_SIZE:
            piece = tls.recv(4096)  # a small read at a time
            assert piece, f"EOF after {len(body)} of {HUGE_SIZE} bytes"
            body += piece
        assert bytes(body) == huge
        # Kept alive after all that: the next request on the same connection is answered.
        tls.sendall(head("/hello.txt"))
        assert Reader(tls).response().body == b"hello, world\n"


def test_a_file_truncated_during_a_download_is_cut_cleanly(
    https: Running, pki: PKI, huge: bytes, site: Path
) -> None:
    # The outbox reads the file afresh on each try, and a TLS send() must be retried with
    # the same bytes: a file cut short under it must end the answer, not trip that rule.
    with tls_connect(https, pki, rcvbuf=8192) as tls:
        tls.sendall(head("/huge.bin"))
        received = tls.recv(4096)
        assert received.startswith(b"HTTP/1.1 200 OK\r\n")
        os.truncate(site / "huge.bin", 0)
        received += read_to_end(tls)
    assert len(received) < HUGE_SIZE
    assert wait_until(lambda: "cut:" in https.log.getvalue())
    assert "Traceback" not in https.log.getvalue() and "error while" not in https.log.getvalue()


def test_a_range_over_tls(https: Running, pki: PKI, huge: bytes) -> None:
    for first, last in [(0, 0), (1000, 1999), (123_456, 5_000_000), (HUGE_SIZE - 10, HUGE_SIZE)]:
        answer = requests.get(
            https_url(https, "/huge.bin"),
            headers={"Range": f"bytes={first}-{last}"},
            verify=str(pki.ca),
            timeout=TIMEOUT,
        )
        end = min(last, HUGE_SIZE - 1)
        assert answer.status_code == 206
        assert answer.headers["Content-Range"] == f"bytes {first}-{end}/{HUGE_SIZE}"
        assert answer.content == huge[first : end + 1]


def parse_byteranges(body: bytes, boundary: str) -> list[tuple[dict[str, str], int, int, bytes]]:
    """Each part of a multipart/byteranges body: its headers, first and last byte, its bytes.
    Strict: the lengths come from Content-Range, so the boundary may appear in the data."""
    parts, at = [], 0
    delimiter = f"--{boundary}".encode()
    while True:
        if at:
            assert body[at : at + 2] == b"\r\n", body[at : at + 40]
            at += 2
        assert body[at : at + len(delimiter)] == delimiter, body[at : at + 40]
        at += len(delimiter)
        if body[at:] == b"--\r\n":
            return parts
        assert body[at : at + 2] == b"\r\n"
        end_of_head = body.index(b"\r\n\r\n", at)
        headers = dict(
            (name.strip().lower(), value.strip())
            for name, _, value in (
                line.partition(":") for line in body[at + 2 : end_of_head].decode().split("\r\n")
            )
        )
        match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", headers["content-range"])
        assert match, headers
        first, last = int(match[1]), int(match[2])
        at = end_of_head + 4
        parts.append((headers, first, last, body[at : at + last - first + 1]))
        at += last - first + 1


def test_a_multipart_range_over_tls(https: Running, pki: PKI, huge: bytes) -> None:
    answer = requests.get(
        https_url(https, "/huge.bin"),
        headers={"Range": "bytes=0-99,4000000-4100000,-50"},
        verify=str(pki.ca),
        timeout=TIMEOUT,
    )
    assert answer.status_code == 206
    kind, _, boundary = answer.headers["Content-Type"].partition("; boundary=")
    assert kind == "multipart/byteranges" and boundary, answer.headers["Content-Type"]
    assert answer.headers["Content-Length"] == str(len(answer.content))
    parts = parse_byteranges(answer.content, boundary)
    wanted = [(0, 99), (4_000_000, 4_100_000), (HUGE_SIZE - 50, HUGE_SIZE - 1)]
    assert [(first, last) for _, first, last, _ in parts] == wanted
    for headers, first, last, data in parts:
        assert headers["content-type"] == "application/octet-stream"
        assert headers["content-range"] == f"bytes {first}-{last}/{HUGE_SIZE}"
        assert data == huge[first : last + 1]


# --- 6. pipelining, and requests cut into records ------------------------------------------


def test_pipelined_requests_in_one_write_are_answered_in_order(
    https: Running, pki: PKI, site: Path
) -> None:
    wanted = [
        ("/", INDEX),
        ("/hello.txt", b"hello, world\n"),
        ("/big.bin", site_bytes(site, "big.bin")),
        ("/style.css", site_bytes(site, "style.css")),
        ("/sub/", site_bytes(site, "sub/index.html")),
        ("/hello.txt", b"hello, world\n"),
    ]
    with tls_connect(https, pki) as tls:
        tls.sendall(b"".join(head(path) for path, _ in wanted))  # one write: one TLS record
        reader = Reader(tls)
        for path, body in wanted:
            answer = reader.response()
            assert (answer.status, answer.body) == (200, body), path


def _one_byte() -> Iterator[int]:
    return itertools.repeat(1)


def _random_sizes(seed: int) -> Callable[[], Iterator[int]]:
    def sizes() -> Iterator[int]:
        rng = random.Random(seed)  # the same cuts on every run
        return iter(lambda: rng.randint(1, 30), None)

    return sizes


@pytest.mark.parametrize(
    "sizes",
    [_one_byte, _random_sizes(1), _random_sizes(2), _random_sizes(3)],
    ids=["1-byte", "random-1", "random-2", "random-3"],
)
def test_a_request_in_many_small_records_is_answered(
    https: Running, pki: PKI, sizes: Callable[[], Iterator[int]]
) -> None:
    requests_ = head("/hello.txt", "User-Agent: pieces") + head("/", "Accept: */*")
    with tls_connect(https, pki) as tls:
        send_in_pieces(tls, requests_, sizes())  # each sendall() of an SSLSocket: one record
        reader = Reader(tls)
        assert reader.response().body == b"hello, world\n"
        assert reader.response().body == INDEX


def test_a_request_body_over_tls_is_read_and_dropped(https: Running, pki: PKI) -> None:
    body = random.Random(6).randbytes(600_000)  # dozens of records from the client
    with tls_connect(https, pki) as tls:
        tls.sendall(head("/hello.txt", f"Content-Length: {len(body)}") + body + head("/"))
        reader = Reader(tls)
        assert reader.response().body == b"hello, world\n"
        assert reader.response().body == INDEX  # the next request, after the whole body


# --- 7. the head timeout bounds a silent client and a stalled handshake --------------------


def _trickle(sock: socket.socket, data: bytes, pause: float) -> None:
    """Send a byte at a time, each after `pause` seconds, until all is sent or the server
    closes: the pause is a select() for the close, never a bare sleep."""
    for byte in data:
        try:
            sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            return
        if select.select([sock], [], [], pause)[0]:
            return  # readable: the server closed (or, wrongly, said something)


@pytest.mark.parametrize("sends", ["nothing", "half-a-client-hello", "a-byte-at-a-time"])
def test_a_client_that_stalls_is_cut_at_the_head_timeout(
    serve_tls: Callable[..., Running], pki: PKI, sends: str
) -> None:
    run = serve_tls(head_timeout=0.5)
    hello = client_hello(pki)
    start = time.monotonic()
    with tcp_connect(run.port) as sock:
        assert wait_until(lambda: len(run.server.clients) == 1)
        if sends == "half-a-client-hello":
            sock.sendall(hello[: len(hello) // 2])
        elif sends == "a-byte-at-a-time":
            # A slowloris handshake: each byte is progress, but the deadline is absolute.
            assert len(hello) * 0.05 > 5
            _trickle(sock, hello, 0.05)
        assert read_to_end(sock) == b""  # closed, with nothing said
        elapsed = time.monotonic() - start
    assert 0.45 <= elapsed < 0.5 + 4, elapsed
    assert wait_until(lambda: not run.server.clients)
    assert fetch(run, pki, "/hello.txt").body == b"hello, world\n"


# --- 8. plain HTTP to the HTTPS port -------------------------------------------------------


def test_plain_http_to_the_https_port_gets_a_400_that_says_https(https: Running) -> None:
    with tcp_connect(https.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        answer = read_to_end(sock)
    top, _, body = answer.partition(b"\r\n\r\n")
    assert top.startswith(b"HTTP/1.1 400 ") and b"\r\nConnection: close" in top
    assert b"\r\nDate: " in top and b"\r\nServer: tinyhttp/" in top
    assert b"https://" in body
    assert wait_until(lambda: not https.server.clients)


@needs_curl
def test_curl_http_to_the_https_port(https: Running) -> None:
    result = curl("-w", "\n%{http_code}", f"http://127.0.0.1:{https.port}/")
    assert result.returncode == 0, result.stderr
    body, _, status = result.stdout.rpartition(b"\n")
    assert status == b"400"
    assert b"https://" in body


# --- 9. garbage instead of a ClientHello ---------------------------------------------------


def _garbage(kind: str, pki: PKI) -> bytes:
    rng = random.Random(kind)
    if kind == "handshake-byte-then-random":
        return b"\x16" + rng.randbytes(700)
    if kind == "random":
        return bytes([rng.randrange(0x17, 0x100)]) + rng.randbytes(999)
    if kind == "zeros":
        return bytes(300)
    if kind == "truncated-record":
        hello = client_hello(pki)
        return hello[: 5 + 30]  # the header promises more than follows
    if kind == "record-too-long":
        return b"\x16\x03\x01\xff\xff" + rng.randbytes(2000)
    if kind == "hello-with-a-wrong-length":
        hello = bytearray(client_hello(pki))
        hello[6:9] = (len(hello) + 1000).to_bytes(3, "big")  # the handshake message's length
        return bytes(hello)
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "handshake-byte-then-random",
        "random",
        "zeros",
        "truncated-record",
        "record-too-long",
        "hello-with-a-wrong-length",
    ],
)
def test_garbage_instead_of_a_client_hello(https: Running, pki: PKI, kind: str) -> None:
    garbage = _garbage(kind, pki)
    with tcp_connect(https.port) as sock:
        sock.sendall(garbage)
        sock.shutdown(socket.SHUT_WR)
        answer = read_to_end(sock)
    if garbage[0] == 0x16:
        assert answer == b"" or answer[0] == 0x15, answer[:40]  # nothing, or a TLS alert
    else:
        assert answer.startswith(b"HTTP/1.1 400 ")  # taken for plain HTTP
    assert wait_until(lambda: not https.server.clients)
    assert "Traceback" not in https.log.getvalue()
    assert fetch(https, pki, "/hello.txt").body == b"hello, world\n"


# --- 10. a hundred clients at once ---------------------------------------------------------


def test_a_hundred_concurrent_clients(https: Running, pki: PKI, site: Path) -> None:
    data = random.Random(10).randbytes(MEDIUM_SIZE)
    (site / "medium.bin").write_bytes(data)
    count = 100
    open_at_once: list[int] = []
    # Every client finishes its handshake, then all send at once: 100 open TLS connections.
    barrier = threading.Barrier(
        count, action=lambda: open_at_once.append(len(https.server.clients))
    )
    context = client_context(pki)

    def client(number: int) -> tuple[int, bytes]:
        with tls_connect(https, pki, context=context) as tls:
            barrier.wait(TIMEOUT * 2)
            tls.sendall(head("/medium.bin", f"X-Client: {number}"))
            answer = Reader(tls).response()
        return answer.status, answer.body

    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        results = list(pool.map(client, range(count), timeout=TIMEOUT * 4))
    assert len(results) == count
    assert all(status == 200 for status, _ in results)
    assert all(body == data for _, body in results)
    assert open_at_once == [count]


# --- 11. the echo --------------------------------------------------------------------------


@pytest.mark.parametrize("version", [None, ssl.TLSVersion.TLSv1_2], ids=["default", "TLSv1.2"])
def test_the_echo_names_the_tls_version_and_cipher(
    https: Running, pki: PKI, version: ssl.TLSVersion | None
) -> None:
    request = head(ECHO, "User-Agent: test_https", "X-Secret-Handshake: yes")
    with tls_connect(https, pki, context=client_context(pki, version)) as tls:
        tls.sendall(request)
        answer = Reader(tls).response()
        cipher = tls.cipher()
        assert cipher is not None
        over = f"(received over {tls.version()} {cipher[0]})\r\n".encode()
    assert answer.status == 200
    assert answer.body == request + over
    assert (b"TLSv1.2" if version else b"TLSv1.3") in over


# --- 12. a graceful drain ------------------------------------------------------------------


def test_a_slow_download_finishes_byte_exact_during_the_drain(
    serve_tls: Callable[..., Running], pki: PKI, huge: bytes
) -> None:
    run = serve_tls(drain_timeout=8.0)
    with tls_connect(run, pki, rcvbuf=16384) as tls:
        tls.sendall(head("/huge.bin"))
        reader = Reader(tls)
        while len(reader.buffer) < 1024 * 1024:
            assert reader._fill()
        top, _, received = bytes(reader.buffer).partition(b"\r\n\r\n")
        assert top.startswith(b"HTTP/1.1 200 OK\r\n")
        body = bytearray(received)
        run.server.stop()
        stopped = time.monotonic()
        # The drain has begun (no more listening) while most of the answer is still to come.
        assert wait_until(lambda: run.server.listener.fileno() == -1)
        assert len(body) < HUGE_SIZE // 2, "the download was nearly over: nothing to drain"
        while len(body) < HUGE_SIZE:
            piece = tls.recv(16384)
            assert piece, f"cut after {len(body)} of {HUGE_SIZE} bytes"
            body += piece
        took = time.monotonic() - stopped
        assert bytes(body) == huge
        assert tls.recv(1) == b""  # then the server closes
    assert took < run.server.config.drain_timeout, took
    run.thread.join(TIMEOUT)
    assert not run.thread.is_alive()
    assert run.server.cut == 0
    assert '"GET /huge.bin HTTP/1.1" 200 ' in run.log.getvalue()
    assert " cut:" not in run.log.getvalue()


# --- 13. --reload --------------------------------------------------------------------------


def test_the_reload_stream_over_tls_hears_a_change_within_a_second(
    serve_tls: Callable[..., Running], pki: PKI, site: Path
) -> None:
    run = serve_tls(reload=True, cache_settle_seconds=0)
    with tls_connect(run, pki) as tls:
        tls.sendall(head(RELOAD, "Accept: text/event-stream"))
        seen = b""
        while b"retry: " not in seen:
            piece = tls.recv(4096)
            assert piece, seen
            seen += piece
        assert seen.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"\r\nContent-Type: text/event-stream\r\n" in seen
        (site / "sub" / "new.html").write_bytes(b"<p>new</p>\n")
        changed = time.monotonic()
        tls.settimeout(1.0)
        while b"event: reload\n" not in seen:
            piece = tls.recv(4096)  # socket.timeout past a second: the test fails
            assert piece, seen
            seen += piece
        assert time.monotonic() - changed < 1.0


# --- 14. the command line ------------------------------------------------------------------

URL_LINE = re.compile(r"^Serving .+ at https://127\.0\.0\.1:(\d+)/ \(Ctrl-C to stop\)$")


def test_the_cli_serves_https(pki: PKI, site: Path) -> None:
    args = [str(site), "--port", "0", "--tls-cert", str(pki.cert), "--tls-key", str(pki.key)]
    with support.running("-m", "tinyhttp", *args, "-q") as process:
        line = process.next_line()
        match = URL_LINE.match(line)
        assert match, line
        url = f"https://127.0.0.1:{match[1]}/hello.txt"
        answer = requests.get(url, verify=str(pki.ca), timeout=TIMEOUT)
        assert (answer.status_code, answer.content) == (200, b"hello, world\n")
        assert process.stop() == 0
        assert process.stdout[-1] == "Stopped."
        assert not any("Traceback" in text for text in process.stderr), process.stderr


@pytest.mark.parametrize(
    "case", ["key-does-not-match", "missing-certificate", "wrong-password", "key-without-cert"]
)
def test_the_cli_refuses_unusable_tls_files_in_one_line(pki: PKI, site: Path, case: str) -> None:
    missing = pki.folder / "no-such-cert.pem"
    args, wanted = {
        "key-does-not-match": (
            ["--tls-cert", str(pki.cert), "--tls-key", str(pki.other_key)],
            f"--tls-key {pki.other_key}: this key does not match",
        ),
        "missing-certificate": (
            ["--tls-cert", str(missing), "--tls-key", str(pki.key)],
            f"--tls-cert {missing}: cannot read it (No such file",
        ),
        "wrong-password": (
            [
                *("--tls-cert", str(pki.cert), "--tls-key", str(pki.encrypted)),
                *("--tls-password-file", str(pki.wrong_password)),
            ],
            f"--tls-password-file {pki.wrong_password}: its first line does not decrypt",
        ),
        "key-without-cert": (
            ["--tls-key", str(pki.key)],
            "--tls-key and --tls-password-file go with --tls-cert",
        ),
    }[case]
    result = support.run("-m", "tinyhttp", str(site), "--port", "0", *args)
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 2, stderr
    assert result.stdout == b""  # it never said it was serving
    lines = stderr.splitlines()
    assert len(lines) == 1 and stderr.endswith("\n"), stderr
    assert lines[0].startswith("tinyhttp: ") and wanted in lines[0], lines[0]
    assert "Traceback" not in stderr


def _children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in path.read_text().split()} if path.exists() else set()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads workers from /proc")
def test_the_cli_with_two_workers_serves_https(pki: PKI, site: Path) -> None:
    args = [str(site), "--port", "0", "--tls-cert", str(pki.cert), "--tls-key", str(pki.key)]
    with support.running("-m", "tinyhttp", *args, "--workers", "2", "-q") as process:
        line = process.next_line()
        match = URL_LINE.match(line)
        assert match, line
        assert wait_until(lambda: len(_children(process.popen.pid)) == 2)
        url = f"https://127.0.0.1:{match[1]}/hello.txt"
        for _ in range(6):  # each on a new connection, to whichever worker the kernel picks
            answer = requests.get(url, verify=str(pki.ca), timeout=TIMEOUT)
            assert (answer.status_code, answer.content) == (200, b"hello, world\n")
        assert process.stop(signal.SIGTERM) == 0
        assert not any("Traceback" in text for text in process.stderr), process.stderr


# --- 15. --trace ---------------------------------------------------------------------------


def test_trace_shows_the_handshake_and_wire_bytes_against_plaintext(
    serve_tls: Callable[..., Running], pki: PKI
) -> None:
    run = serve_tls(trace=True)
    request = head("/hello.txt")
    with tls_connect(run, pki) as tls:
        # The handshake ends when the server reads the client's Finished: wait for that, so
        # the request comes in a recv() of its own.
        assert wait_until(lambda: "tls: handshake done" in run.log.getvalue())
        tls.sendall(request)  # one record
        answer = Reader(tls).response()
        version, cipher = tls.version(), tls.cipher()
    assert cipher is not None and version == "TLSv1.3"
    assert answer.body == b"hello, world\n"
    assert wait_until(lambda: "[#1] close:" in run.log.getvalue())
    lines = [line for line in run.log.getvalue().splitlines() if line.startswith("[#1] ")]
    text = "\n".join(lines)
    assert lines[0] == "[#1] accept: a new connection from 127.0.0.1"
    assert re.search(r"tls: recv [\d,]+ wire bytes -> 0 plaintext \(handshake\); ", text), text
    assert f"[#1] tls: handshake done: {version} {cipher[0]}, ALPN http/1.1" in lines
    # TLS 1.3 with an AEAD cipher: 5 bytes of record header, 1 of content type, a 16-byte tag.
    size = len(request)
    assert f"[#1] tls: recv {size + 22:,} wire bytes -> {size:,} plaintext" in lines, text
    sent = len(answer.raw_head) + 4 + len(answer.body)
    assert f"[#1] tls: send {sent:,} plaintext -> {sent + 22:,} wire bytes" in lines, text
    assert any(line.startswith(f"[#1] recv -> {size} bytes: GET /hello.txt") for line in lines)


# --- 16. headless Chromium -----------------------------------------------------------------


def test_chromium_loads_the_demo_site_over_https(
    serve_tls: Callable[..., Running],
    pki: PKI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from . import test_browser
    from .test_browser import WWW, Tab, chromium_devtools

    root = tmp_path / "www-copy"
    shutil.copytree(WWW, root)
    run = serve_tls(root=root)
    # Trust this one certificate (its public key), with no NSS database. A shared hook would
    # be an `extra_flags` argument to DevTools() and chromium_devtools().
    flag = f"--ignore-certificate-errors-spki-list={pki.spki}"
    monkeypatch.setattr(test_browser, "FLAGS", [*test_browser.FLAGS, flag])
    with chromium_devtools(tmp_path) as devtools:
        tab = Tab(devtools)
        url = f"https://localhost:{run.port}/"
        tab.load(url)
        assert not tab.problems(), tab.problems()
        responses = [p["response"] for p in tab.mine("Network.responseReceived")]
        assert responses, "no responses seen"
        assert all(r["url"].startswith(url) for r in responses), [r["url"] for r in responses]
        assert all(r["protocol"] == "http/1.1" for r in responses), responses
        documents = [p for p in tab.mine("Network.responseReceived") if p["type"] == "Document"]
        assert [p["response"]["status"] for p in documents] == [200]
        assert tab.evaluate("location.protocol") == "https:"
        assert tab.evaluate("window.isSecureContext") is True
        # The front page fetches the echo and shows it: over TLS, it names the session.
        echo = "document.getElementById('echo').textContent"
        assert devtools.wait_for(lambda: "(received over TLS" in tab.evaluate(echo), timeout=5)
        text = tab.evaluate(echo)
        assert text.startswith(f"GET {ECHO} HTTP/1.1"), text
        assert f"Host: localhost:{run.port}" in text, text
        assert not tab.problems(), tab.problems()
